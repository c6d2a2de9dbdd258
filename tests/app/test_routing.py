"""Routing: a cmd's params are matched, with re.fullmatch, against each processor's route in order."""

import attrs
import pytest

from ufop_sdk import BadRequest, Processor, ProjectError
from ufop_sdk.app.routing import DuplicateRouteWarning, RouteTable, join_cmd, split_cmd


def processor(name="Thumbnail", **attributes):
    """A Processor subclass called `name` with the given class attributes."""
    return type(name, (Processor,), attributes)


def groups_for(route, params):
    """The groups a table holding only `route` gives for `params`, or None for no match."""
    match = RouteTable([processor(route=route)], default_timeout=30).match(params)
    return None if match is None else match.groups


@pytest.mark.parametrize(("cmd", "expected"), [
    ("myufop", ("myufop", "")),
    ("myufop/", ("myufop", "")),
    ("myufop/thumbnail/200x100", ("myufop", "thumbnail/200x100")),
    ("hello/七牛", ("hello", "七牛")),
])
def test_split_cmd(cmd, expected):
    assert split_cmd(cmd) == expected


@pytest.mark.parametrize("cmd", ["", "/thumbnail/200x100"])
def test_split_cmd_refuses_a_cmd_without_a_name(cmd):
    with pytest.raises(BadRequest) as caught:
        split_cmd(cmd)
    assert caught.value.status == 400
    assert "expected <ufop-name>[/<params>]" in caught.value.message


@pytest.mark.parametrize(("name", "params", "cmd"), [
    ("myufop", "thumbnail/200x100", "myufop/thumbnail/200x100"),
    ("myufop", "", "myufop"),
    (None, "thumbnail/200x100", "ufop/thumbnail/200x100"),
    (None, "", "ufop"),
])
def test_join_cmd_is_the_inverse_of_split_cmd(name, params, cmd):
    assert join_cmd(name, params) == cmd
    assert split_cmd(cmd) == (name or "ufop", params)


@pytest.mark.parametrize(("route", "params", "matches"), [
    ("a", "a", True),
    ("a", "ab", False),
    ("a", "xa", False),
    ("a", "", False),
    ("png|jpe?g", "jpeg", True),
    ("png|jpe?g", "pngx", False),
    ("png|jpe?g", "xjpg", False),
])
def test_a_route_must_match_the_whole_params(route, params, matches):
    assert (groups_for(route, params) is not None) is matches


def test_the_first_route_in_order_wins():
    admin = processor("Admin", route=r"hello/admin")
    anyone = processor("Anyone", route=r"hello/.*")

    assert RouteTable([admin, anyone], 30).match("hello/admin").route.processor is admin
    assert RouteTable([anyone, admin], 30).match("hello/admin").route.processor is anyone
    assert RouteTable([admin, anyone], 30).match("goodbye") is None


def test_named_groups_that_did_not_take_part_are_left_out():
    assert groups_for(r"(?P<name>[^/]+)?", "qq") == {"name": "qq"}
    assert groups_for(r"(?P<name>[^/]+)?", "") == {}


def test_unnamed_groups_are_ignored():
    assert groups_for(r"(\d+)x(?P<height>\d+)(/(png|jpeg))?", "200x100/png") == {"height": "100"}


@pytest.mark.parametrize(("params", "text"), [
    ("text/a|b", "a|b"),
    ("text/50%25", "50%25"),
    ("text/七牛", "七牛"),
    ("text/a/b", "a/b"),
])
def test_params_reach_the_groups_as_received(params, text):
    assert groups_for(r"text/(?P<text>.+)", params) == {"text": text}


def test_route_settings_are_normalised():
    [route] = RouteTable([processor(route="a", accepts="image/*", timeout=5)], default_timeout=30)
    assert (route.accepts, route.timeout) == (("image/*",), 5.0)
    [route] = RouteTable([processor(route="a", accepts=["image/*", "text/plain"])], default_timeout=30)
    assert (route.accepts, route.timeout) == (("image/*", "text/plain"), 30.0)


@pytest.mark.parametrize(("attributes", "complaint"), [
    ({"route": "(unclosed"}, "invalid route regex '(unclosed'"),
    ({"route": b"thumbnail"}, "route must be a regex string"),
    ({"route": 42}, "route must be a regex string"),
    ({"route": "a", "accepts": "image"}, "accepts must be media-type patterns"),
    ({"route": "a", "accepts": ("image/*", 3)}, "accepts must be media-type patterns"),
    ({"route": "a", "accepts": 42}, "accepts must be media-type patterns"),
    ({"route": "a", "timeout": 0}, "timeout must be a positive number of seconds, got 0"),
    ({"route": "a", "timeout": -1}, "timeout must be a positive number of seconds, got -1"),
    ({"route": "a", "timeout": True}, "timeout must be a positive number of seconds, got True"),
    ({"route": "a", "timeout": "10"}, "timeout must be a positive number of seconds, got '10'"),
    ({"route": "a", "max_cmd_bytes": 0}, "max_cmd_bytes must be a positive number of bytes, got 0"),
    ({"route": "a", "max_cmd_bytes": 1.5}, "max_cmd_bytes must be a positive number of bytes, got 1.5"),
    ({"route": "a", "timeout": float("nan")}, "timeout must be a positive number of seconds, got nan"),
    ({"route": "a", "prefetch": "no"}, "prefetch must be True or False, got 'no'"),
    ({"route": "a", "prefetch": 0}, "prefetch must be True or False, got 0"),
], ids=lambda value: ", ".join(f"{k}={v!r}" for k, v in value.items()) if isinstance(value, dict) else None)
def test_an_invalid_declaration_is_a_project_error_naming_the_processor(attributes, complaint):
    with pytest.raises(ProjectError, match="^processor Thumbnail: ") as caught:
        RouteTable([processor("Thumbnail", **attributes)], default_timeout=30)
    assert complaint in str(caught.value)


@attrs.frozen
class Size:
    width: int
    height: int = 0


@pytest.mark.parametrize(("route", "args_class", "complaint"), [
    (r"(?P<width>\d+)x(?P<depth>\d+)", Size, "the route's groups ['depth'] are not fields of Args"),
    (r"x(?P<height>\d+)", Size, "Args fields ['width'] have no default and no group in the route"),
    (r"(?P<width>\d+)", dict, "Args must be an attrs class"),
])
def test_args_must_fit_the_route(route, args_class, complaint):
    with pytest.raises(ProjectError) as caught:
        RouteTable([processor("Thumbnail", route=route, Args=args_class)], default_timeout=30)
    assert str(caught.value) == f"processor Thumbnail: {complaint}"


def test_identical_routes_warn_naming_both_processors():
    first, second = processor("First", route=r"a/\d+"), processor("Second", route=r"a/\d+")
    with pytest.warns(DuplicateRouteWarning, match=r"processors First and Second .* Second is never reached"):
        table = RouteTable([first, second], default_timeout=30)
    assert table.match("a/1").route.processor is first


def test_two_processors_with_the_same_name_are_a_project_error():
    with pytest.raises(ProjectError, match="two processors are named Thumbnail: rename one"):
        RouteTable([processor("Thumbnail", route="a"), processor("Thumbnail", route="b")], 30)


def test_route_named_finds_a_route_by_its_processor_name():
    table = RouteTable([processor("First", route="a"), processor("Second", route="b")], 30)
    assert table.route_named("Second").pattern.pattern == "b"
    assert len(table) == 2


def test_the_table_repr_shows_each_route_as_declared():
    table = RouteTable([processor("Thumbnail", route=r"thumbnail/(?P<width>\d+)", accepts="image/*")], 30)
    assert repr(table) == (
        r"RouteTable([Route(Thumbnail, 'thumbnail/(?P<width>\\d+)', accepts=('image/*',), timeout=30.0)])"
    )


def test_a_streamed_processor_says_so_in_its_route():
    [route] = RouteTable([processor("Head", route="head", prefetch=False)], 30)
    assert route.prefetch is False
    assert repr(route) == "Route(Head, 'head', accepts=(), timeout=30.0, prefetch=False)"
    assert RouteTable([processor("Whole", route="whole")], 30).route_named("Whole").prefetch is True
