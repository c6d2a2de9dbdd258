"""Turning a route's named groups into a processor's typed ``Args``.

A processor may declare ``Args``, an attrs class whose fields are the route's
named groups. Its converters and validators type and check them, and any
failure is a 400 naming the argument. `integer` and `choice` build fields
whose messages read well to the client::

    @attrs.frozen
    class Args:
        width: int = integer(1, 4096)
        format: str = choice("jpeg", "png", default="jpeg")

Qiniu's own grammar (``/key/value`` pairs, values in URL-safe base64) is
parsed by `ufop_sdk.key_values`, with `base64_text` fields.
"""

from types import MappingProxyType

import attrs

from .errors import BadRequest
from .qiniu import decode_base64_text


def integer(low, high, default=attrs.NOTHING):
    """An attrs field taking a decimal integer string within ``low..high``."""

    def convert(value):
        if value is default:
            return value
        if isinstance(value, int):
            number = value
        elif isinstance(value, str) and value.isascii() and value.isdecimal():
            number = int(value)
        else:
            raise ValueError(f"expected an integer {low}-{high}")
        if not low <= number <= high:
            raise ValueError(f"expected an integer {low}-{high}")
        return number

    return attrs.field(default=default, converter=convert)


def choice(*values, default=attrs.NOTHING):
    """An attrs field taking one of `values` (strings)."""

    def check(instance, attribute, value):
        if value not in values and value is not default:
            raise ValueError(f"expected one of {', '.join(values)}")

    return attrs.field(default=default, validator=check)


def base64_text(default=attrs.NOTHING, *, encoding="utf-8", choices=None):
    """An attrs field taking URL-safe base64 (padding optional) of `encoding` text, giving the text.

    With `choices` (strings), the decoded text must be one of them.
    """

    def convert(value):
        if value is default:
            return value
        text = decode_base64_text(value, encoding)
        if choices is not None and text not in choices:
            raise ValueError(f"expected URL-safe base64 of one of {', '.join(choices)}")
        return text

    return attrs.field(default=default, converter=convert)


def build_args(args_class, groups):
    """Build the processor's ``Args`` from `groups`, or a read-only mapping.

    Raises BadRequest naming the argument when a converter or validator fails.
    """
    if args_class is None:
        return MappingProxyType(groups)
    try:
        return args_class(**groups)
    except BadRequest:  # already naming its argument (key_values)
        raise
    except Exception as exc:  # noqa: BLE001 - a converter may raise anything (Decimal, dates)
        raise BadRequest(explain_failure(args_class, groups, exc)) from None


def check_args_class(args_class, group_names):
    """Why `args_class` cannot take the route's groups, or None if it can."""
    if not attrs.has(args_class):
        return "Args must be an attrs class"
    fields = attrs.fields_dict(args_class)
    unknown = sorted(set(group_names) - set(fields))
    if unknown:
        return f"the route's groups {unknown} are not fields of Args"
    required = [name for name, field in fields.items()
                if field.default is attrs.NOTHING and name not in group_names]
    if required:
        return f"Args fields {required} have no default and no group in the route"
    return None


def explain_failure(args_class, groups, exc):
    """Find which argument failed by checking each one alone (error path only): the 400's message."""
    for field in attrs.fields(args_class):
        if field.name in groups:
            problem = field_problem(field, groups[field.name])
            if problem:
                return problem
    missing = [f.name for f in attrs.fields(args_class)
               if f.default is attrs.NOTHING and f.name not in groups]
    if missing:
        return f"missing argument {missing[0]!r}"
    return f"invalid arguments: {_reason(exc)}"


def field_problem(field, raw, name=None):
    """Why `raw` does not convert and validate as `field` (an attrs Attribute), named as `name`
    (the field's own name by default), or None. A field of many values says which one (its
    metadata's "problem")."""
    name = name or field.name
    nested = field.metadata.get("problem")
    if nested is not None:
        return nested(name, raw)
    try:
        value = field.converter(raw) if field.converter else raw
        if field.validator:
            field.validator(None, field, value)
    except Exception as field_exc:  # noqa: BLE001 - any failure names the field
        return f"invalid argument {name!r}: {_reason(field_exc)}, got {raw!r}"
    return None


def _reason(exc):
    # attrs' built-in validators put the message first and details after it.
    return str(exc.args[0]) if exc.args else type(exc).__name__
