"""What travels between the server and a worker: a Job (a request in flight) and its Reply.

Each has one serializer that both executors use: `to_wire()` gives the plain
map that a local frame's header or a Celery message carries (msgpack, never
pickle), and `from_wire()` builds the object again on the other side. Every
field travels unless its metadata says ``travels=False`` (an input or body,
which goes beside the map in a form each executor picks; timings, which the
server measures), so adding a field, a trace id say, is one edit here (among
the fields that travel, which come first).

Plain attrs classes: the public API and ``app/`` import them without Tornado,
Celery or click.
"""

import operator

import attrs

STAYS = {"travels": False}


def _wire_names(cls):
    """The fields of `cls` that travel in its map, in order."""
    return tuple(field.name for field in attrs.fields(cls) if field.metadata.get("travels", True))


class _Travels:
    """`to_wire` and `from_wire` over a class's `WIRE` names (set by `_travelling` once the class exists).

    The fields that travel come first, in order, so that `from_wire` passes them by position:
    attrgetter, itemgetter and positions cost about 1.5 us a job less than comprehensions over
    the names and keywords, on the local hot path (measured in the note of issue #16).
    """

    __slots__ = ()
    WIRE = ()
    _wire_values = _wire_items = None

    def to_wire(self):
        """The fields that travel, as a map of plain values."""
        return self.wire_of(self)

    @classmethod
    def wire_of(cls, thing):
        """`to_wire` of any object with these fields (a Response, for a Reply), without making one."""
        return dict(zip(cls.WIRE, cls._wire_values(thing), strict=True))

    @classmethod
    def from_wire(cls, fields, **beside):
        """The object a map from `to_wire` describes, with `beside` (what travels apart, e.g. the body).

        Keys it does not know are ignored (a newer sender); a missing one raises KeyError,
        and a map that is not one TypeError.
        """
        return cls(*cls._wire_items(fields), **beside)


@attrs.frozen
class Job(_Travels):
    """One routed request, ready to run. Only small values and one input travel.

    The input is either `body` (bytes, for small inputs) or `file` (an open
    binary file whose descriptor is handed over); never both. Neither is in
    the map: each executor sends it its own way.
    """

    cmd: str
    processor: str
    groups: dict
    timeout: float
    request_id: str
    declared_content_type: str | None = None  # the client's Content-Type, or a fetched source's
    url: str | None = None  # a source the server fetched, or the worker fetches (Celery)
    body: bytes | None = attrs.field(default=None, metadata=STAYS, repr=False)
    file: object = attrs.field(default=None, metadata=STAYS, repr=False)


@attrs.frozen
class Reply(_Travels):
    """What a processor answered, and how long the request queued and ran (measured by the server)."""

    status: int
    content_type: str | None
    headers: dict
    body: bytes = attrs.field(metadata=STAYS, repr=False)
    queued_seconds: float = attrs.field(default=0.0, metadata=STAYS)
    processing_seconds: float = attrs.field(default=0.0, metadata=STAYS)


def _travelling(cls):
    cls.WIRE = _wire_names(cls)
    if [field.name for field in attrs.fields(cls)][:len(cls.WIRE)] != list(cls.WIRE):
        raise TypeError(f"{cls.__name__}: the fields that travel must come first")
    # more than one name: the getters return tuples
    cls._wire_values = operator.attrgetter(*cls.WIRE)
    cls._wire_items = operator.itemgetter(*cls.WIRE)


_travelling(Job)
_travelling(Reply)
