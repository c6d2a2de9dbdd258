"""Arguments: a route's named groups become ``req.args``, typed and checked by the processor's Args."""

from decimal import Decimal

import attrs
import pytest

from ufop_sdk import BadRequest, choice, integer
from ufop_sdk.arguments import build_args


@attrs.frozen
class ThumbnailArgs:
    width: int = integer(1, 4096)
    height: int = integer(0, 4096, default=0)  # 0 keeps the aspect ratio
    format: str = choice("jpeg", "png", default="jpeg")


def test_without_args_class_the_groups_are_a_read_only_mapping():
    args = build_args(None, {"name": "qq"})
    assert args["name"] == "qq"
    assert args.get("missing", "world") == "world"
    with pytest.raises(TypeError):
        args["name"] = "changed"


@pytest.mark.parametrize(("groups", "expected"), [
    ({"width": "200"}, ThumbnailArgs(200, 0, "jpeg")),
    ({"width": "1", "height": "4096", "format": "png"}, ThumbnailArgs(1, 4096, "png")),
    ({"width": "4096", "height": "0"}, ThumbnailArgs(4096, 0, "jpeg")),
    ({"width": "0200"}, ThumbnailArgs(200, 0, "jpeg")),
])
def test_integer_and_choice_type_the_groups(groups, expected):
    assert build_args(ThumbnailArgs, groups) == expected


@pytest.mark.parametrize(("groups", "message"), [
    ({"width": "abc"}, "invalid argument 'width': expected an integer 1-4096, got 'abc'"),
    ({"width": "0"}, "invalid argument 'width': expected an integer 1-4096, got '0'"),
    ({"width": "4097"}, "invalid argument 'width': expected an integer 1-4096, got '4097'"),
    ({"width": "-5"}, "invalid argument 'width': expected an integer 1-4096, got '-5'"),
    ({"width": "٣"}, "invalid argument 'width': expected an integer 1-4096, got '٣'"),
    ({"width": "200", "height": "1e3"}, "invalid argument 'height': expected an integer 0-4096, got '1e3'"),
    ({"width": "200", "format": "gif"}, "invalid argument 'format': expected one of jpeg, png, got 'gif'"),
    ({"height": "200"}, "missing argument 'width'"),
])
def test_a_bad_argument_is_a_400_naming_it(groups, message):
    with pytest.raises(BadRequest) as caught:
        build_args(ThumbnailArgs, groups)
    assert caught.value.status == 400
    assert caught.value.message == message


@attrs.frozen
class ConvertedArgs:
    angle: float = attrs.field(converter=float, default=0.0)
    price: Decimal = attrs.field(converter=Decimal, default=Decimal(0))
    mode: str = attrs.field(validator=attrs.validators.in_(["fit", "fill"]), default="fit")
    quality: int = attrs.field(converter=int, validator=attrs.validators.le(100), default=75)


def test_attrs_converters_and_validators_type_the_groups():
    args = build_args(ConvertedArgs, {"angle": "90.5", "price": "9.99", "mode": "fill", "quality": "80"})
    assert args == ConvertedArgs(90.5, Decimal("9.99"), "fill", 80)


@pytest.mark.parametrize(("groups", "field"), [
    ({"angle": "right"}, "angle"),
    ({"price": "cheap"}, "price"),
    ({"mode": "stretch"}, "mode"),
    ({"quality": "101"}, "quality"),
    ({"quality": "best"}, "quality"),
])
def test_any_attrs_converter_or_validator_failure_is_a_400_naming_the_field(groups, field):
    with pytest.raises(BadRequest) as caught:
        build_args(ConvertedArgs, groups)
    assert caught.value.status == 400
    assert caught.value.message.startswith(f"invalid argument {field!r}: ")
    assert caught.value.message.endswith(f"got {groups[field]!r}")
