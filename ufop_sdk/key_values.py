"""Qiniu's parameter style: ``/key/value`` pairs in any order, some keys repeated, values often base64.

A route captures the pairs in one named group, and that group's ``Args``
field is a `key_values` field: it parses them into an attrs class of options
whose fields are the keys, typed and checked like any ``Args`` (a failure is
a 400 naming the key). `repeated` makes a key that may come many times (a
list), `records` a run of keys that belong together (a list of entries, each
begun by its class's first field)::

    @attrs.frozen
    class Entry:
        url: str = base64_text()
        alias: str | None = base64_text(default=None)

    @attrs.frozen
    class ZipOptions:
        entries: list = records(Entry)  # /url/<b64>[/alias/<b64>], again and again

    class Mkzip(Processor):
        route = r"mkzip/2(?P<options>/.+)"

        @attrs.frozen
        class Args:
            options: ZipOptions = key_values(ZipOptions)
"""

import attrs

from .arguments import explain_failure, field_problem
from .errors import BadRequest

SINGLE, MANY, RECORD_START, RECORD_PART = "single", "many", "record start", "record part"


def key_values(options_class, default=""):
    """An attrs field parsing its group (``/key/value/key/value...``) into an `options_class` instance.

    Without the group, `default` ("": no pairs) is parsed, so the options' own defaults apply.
    Raises TypeError at once when `options_class` cannot be a grammar (its keys clash).
    """
    return attrs.field(default=default, converter=KeyValueGrammar(options_class).parse)


def repeated(field):
    """An options field for a key that may come many times: the list of its values, each converted
    and checked by `field` (an attrs field, e.g. ``base64_text()``), in order; [] without any."""
    item_class = attrs.make_class("Item", {"value": field})
    item_field = attrs.fields(item_class).value

    def convert(values):
        return [item_class(value).value for value in values]

    def problem(name, values):
        return next(filter(None, (field_problem(item_field, value, name) for value in values)), None)

    return attrs.field(factory=list, converter=convert, metadata={"problem": problem, "kind": MANY})


def records(entry_class):
    """An options field for runs of keys that belong together: a list of `entry_class` instances.

    The first field of `entry_class` (an attrs class) begins an entry; its other fields' keys fill
    the entry begun last. mkzip's ``/url/<b64>/alias/<b64>/url/<b64>`` is two entries.
    """

    def convert(entries):
        return [entry_class(**entry) for entry in entries]

    def problem(_name, entries):
        for entry in entries:
            try:
                entry_class(**entry)
            except Exception as exc:  # noqa: BLE001 - any failure names the key
                return explain_failure(entry_class, entry, exc)
        return None

    return attrs.field(factory=list, converter=convert, metadata={"problem": problem, "records": entry_class})


class KeyValueGrammar:
    """The keys of an options class, compiled once: `parse` turns ``/k/v/k/v`` into an instance."""

    def __init__(self, options_class):
        if not attrs.has(options_class):
            raise TypeError(f"key_values needs an attrs class, got {options_class!r}")
        self.options_class = options_class
        self.keys = {}  # key -> (options field, SINGLE | MANY | RECORD_START | RECORD_PART, first key)
        for field in attrs.fields(options_class):
            entry_class = field.metadata.get("records")
            if entry_class is None:
                self._add(field.name, (field.name, field.metadata.get("kind", SINGLE), None))
                continue
            first, *others = [entry_field.name for entry_field in attrs.fields(entry_class)]
            self._add(first, (field.name, RECORD_START, first))
            for key in others:
                self._add(key, (field.name, RECORD_PART, first))
        self.expected = ", ".join(sorted(self.keys))

    def __repr__(self):
        return f"KeyValueGrammar({self.options_class.__qualname__})"

    def _add(self, key, meaning):
        if key in self.keys:
            raise TypeError(f"{self.options_class.__qualname__}: the key {key!r} is declared twice")
        self.keys[key] = meaning

    def parse(self, text):
        """The options `text` (``/k/v/k/v``, "" for none) gives; BadRequest naming the bad key."""
        if isinstance(text, self.options_class):
            return text
        fields = {}
        for key, value in _pairs(text):
            self._take(fields, key, value)
        try:
            return self.options_class(**fields)
        except Exception as exc:  # noqa: BLE001 - a converter may raise anything
            raise BadRequest(explain_failure(self.options_class, fields, exc)) from None

    def _take(self, fields, key, value):
        if key not in self.keys:
            raise BadRequest(f"unknown argument {key!r}: expected one of {self.expected}")
        name, kind, first = self.keys[key]
        if kind == SINGLE:
            if name in fields:
                raise BadRequest(f"invalid argument {key!r}: given more than once")
            fields[name] = value
        elif kind == MANY:
            fields.setdefault(name, []).append(value)
        elif kind == RECORD_START:
            fields.setdefault(name, []).append({key: value})
        else:
            entries = fields.get(name)
            if not entries:
                raise BadRequest(f"invalid argument {key!r}: expected after a {first!r}")
            if key in entries[-1]:
                raise BadRequest(f"invalid argument {key!r}: given more than once for one {first!r}")
            entries[-1][key] = value


def _pairs(text):
    """(key, value) pairs of ``/k/v/k/v`` (the leading slash optional); BadRequest for a key without value."""
    if not text:
        return []
    parts = text.removeprefix("/").split("/")
    if len(parts) % 2:
        raise BadRequest(f"invalid argument {parts[-1]!r}: expected a value after it")
    return zip(parts[0::2], parts[1::2], strict=True)
