"""Qiniu's /key/value parameters: key_values, repeated, records and base64_text, as tables of inputs."""

import base64

import attrs
import pytest

from ufop_sdk import BadRequest, base64_text, choice, integer, key_values, records, repeated
from ufop_sdk.arguments import build_args


def b64(text, padded=False):
    encoded = base64.urlsafe_b64encode(text.encode()).decode()
    return encoded if padded else encoded.rstrip("=")


@attrs.frozen
class Entry:
    url: str = base64_text()
    alias: str | None = base64_text(default=None)


@attrs.frozen
class Options:
    entries: list = records(Entry)
    encoding: str = base64_text(default="utf-8", choices=("utf-8", "gbk"))
    level: int = integer(0, 9, default=6)
    tag: list = repeated(base64_text())
    mode: str = choice("fast", "small", default="fast")


@attrs.frozen
class Args:
    options: Options = key_values(Options)


A, B = "http://a.example/x.jpg", "http://b.example/y?z=1"


DEFAULTS = {"entries": [], "encoding": "utf-8", "level": 6, "tag": [], "mode": "fast"}


def parsed(groups):
    """The options `groups` give, as plain values: entries as (url, alias) pairs."""
    options = attrs.asdict(build_args(Args, groups).options, recurse=False)
    return {**options, "entries": [(entry.url, entry.alias) for entry in options["entries"]]}


@pytest.mark.parametrize(("text", "expected"), [
    ("", {}),
    (f"/url/{b64(A)}", {"entries": [(A, None)]}),
    (f"/url/{b64(A, padded=True)}/alias/{b64('one.jpg')}/url/{b64(B)}",
     {"entries": [(A, "one.jpg"), (B, None)]}),
    (f"/url/{b64(A)}/url/{b64(B)}/alias/{b64('二.jpg')}", {"entries": [(A, None), (B, "二.jpg")]}),
    (f"/level/1/url/{b64(A)}/mode/small/encoding/{b64('gbk')}",
     {"entries": [(A, None)], "level": 1, "mode": "small", "encoding": "gbk"}),
    (f"/tag/{b64('x')}/level/0/tag/{b64('y')}", {"level": 0, "tag": ["x", "y"]}),
    ("level/3", {"level": 3}),
])
def test_pairs_in_any_order_parse_into_typed_options(text, expected):
    assert parsed({"options": text}) == {**DEFAULTS, **expected}


def test_without_the_group_the_options_defaults_apply():
    assert parsed({}) == DEFAULTS


@pytest.mark.parametrize(("text", "message"), [
    ("/url/!!", "invalid argument 'url': expected URL-safe base64, got '!!'"),
    (f"/url/{b64(A)}/alias/a", "invalid argument 'alias': expected URL-safe base64, got 'a'"),
    ("/url/_w", "invalid argument 'url': expected URL-safe base64 of utf-8 text, got '_w'"),
    (f"/alias/{b64('x')}", "invalid argument 'alias': expected after a 'url'"),
    (f"/url/{b64(A)}/alias/{b64('x')}/alias/{b64('y')}",
     "invalid argument 'alias': given more than once for one 'url'"),
    ("/size/9", "unknown argument 'size': expected one of alias, encoding, level, mode, tag, url"),
    ("/level/10", "invalid argument 'level': expected an integer 0-9, got '10'"),
    ("/level/1/level/2", "invalid argument 'level': given more than once"),
    ("/mode/big", "invalid argument 'mode': expected one of fast, small, got 'big'"),
    (f"/encoding/{b64('latin-1')}",
     f"invalid argument 'encoding': expected URL-safe base64 of one of utf-8, gbk, got '{b64('latin-1')}'"),
    (f"/tag/{b64('x')}/tag/%", "invalid argument 'tag': expected URL-safe base64, got '%'"),
    ("/level", "invalid argument 'level': expected a value after it"),
    (f"/url/{b64(A)}/", "invalid argument '': expected a value after it"),
])
def test_a_bad_pair_is_a_400_naming_its_key(text, message):
    with pytest.raises(BadRequest) as caught:
        build_args(Args, {"options": text})
    assert caught.value.status == 400
    assert caught.value.message == message


def test_a_required_key_that_is_missing_is_named():
    @attrs.frozen
    class Frame:
        offset: int = integer(0, 60)

    with pytest.raises(BadRequest, match="missing argument 'offset'"):
        build_args(attrs.make_class("FrameArgs", {"options": key_values(Frame)}), {"options": ""})


def test_keys_that_clash_are_refused_when_the_class_is_declared():
    @attrs.frozen
    class Clash:
        entries: list = records(Entry)
        url: str = "x"

    with pytest.raises(TypeError, match="the key 'url' is declared twice"):
        key_values(Clash)
