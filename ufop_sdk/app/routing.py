"""Matching a cmd's parameters to a processor.

Routes are compiled once when the table is built; a cmd that matches none
gives None, which the runner turns into NotFound.
"""

import math
import re
import warnings
from numbers import Real

import attrs

from ..arguments import check_args_class
from ..errors import BadRequest, NotFound, ProjectError, UfopError

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class DuplicateRouteWarning(UserWarning):
    """Two processors have the same route, so the second is never reached."""


def split_cmd(cmd):
    """Split ``"<ufop-name>[/<params>]"`` into ``(name, params)``.

    The platform routes by the name before calling us, so it is not checked;
    ``params`` is ``""`` for a bare name. Raises BadRequest for an empty cmd.
    """
    if not cmd:
        raise BadRequest("missing cmd: expected <ufop-name>[/<params>]")
    if _CONTROL.search(cmd):
        raise BadRequest("the cmd contains a control character")
    name, _, params = cmd.partition("/")
    if not name:
        raise BadRequest(f"invalid cmd {cmd!r}: expected <ufop-name>[/<params>]")
    return name, params


# Local runs need some name before the params; the platform sends the real one.
PLACEHOLDER_UFOP_NAME = "ufop"


def join_cmd(name, params):
    """The cmd the platform would send for `params` under the ufop `name` (None: a placeholder)."""
    name = name or PLACEHOLDER_UFOP_NAME
    return f"{name}/{params}" if params else name


@attrs.frozen
class Route:
    """One processor's compiled route and the settings that go with it."""

    processor: type
    pattern: re.Pattern
    accepts: tuple
    timeout: float
    max_cmd_bytes: int = 4096
    prefetch: bool = True

    @property
    def name(self):
        return self.processor.__qualname__

    def __repr__(self):
        streamed = "" if self.prefetch else ", prefetch=False"
        return (f"Route({self.name}, {self.pattern.pattern!r}, accepts={self.accepts!r}, "
                f"timeout={self.timeout!r}{streamed})")


@attrs.frozen
class RouteMatch:
    """A route that matched, and the named groups that took part."""

    route: Route
    groups: dict


class RouteTable:
    """The project's routes in order; the first full match wins."""

    def __init__(self, processors, default_timeout):
        self.routes = tuple(compile_route(cls, default_timeout) for cls in processors)
        _warn_on_duplicates(self.routes)
        self._by_name = {}
        for route in self.routes:
            if self._by_name.setdefault(route.name, route) is not route:
                raise ProjectError(f"two processors are named {route.name}: rename one")

    def match(self, params, rest=None, cmd_bytes=0):
        """The first route that fully matches `params`, or None; a route is tried only on a
        cmd of at most its processor's `max_cmd_bytes` (`cmd_bytes`: the cmd's length).

        `rest` is the cmd after the ufop name (``""`` for a bare name, ``"/"``
        for ``"name/"``), which qiniu-ufop routes (ufop_sdk.compat) match
        instead; without it, a bare name is assumed when `params` is empty.
        """
        if rest is None:
            rest = "/" + params if params else ""
        for route in self.routes:
            if cmd_bytes > route.max_cmd_bytes:
                continue
            found = _match_route(route.pattern, params, rest)
            if found:
                groups = {k: v for k, v in found.groupdict().items() if v is not None}
                return RouteMatch(route, groups)
        return None

    def resolve(self, cmd):
        """The RouteMatch for a full cmd; raises BadRequest (no cmd), NotFound, or a 414 for a cmd
        longer than the processors that might match it take."""
        name, params = split_cmd(cmd)
        cmd_bytes = len(cmd) if cmd.isascii() else len(cmd.encode())
        match = self.match(params, rest=cmd[len(name):], cmd_bytes=cmd_bytes)
        if match is None:
            if any(cmd_bytes > route.max_cmd_bytes for route in self.routes):
                raise UfopError(f"the cmd is {cmd_bytes} bytes, and no processor that takes a cmd this long "
                                f"matches it (a processor takes at most its max_cmd_bytes, 4096 unless "
                                f"it says more)", 414)
            raise NotFound(f"no processor matches {_shown(params)} (cmd {_shown(cmd)})")
        return match

    def route_named(self, name):
        """The route of the processor called `name` (its class's qualname)."""
        return self._by_name[name]

    def __iter__(self):
        return iter(self.routes)

    def __len__(self):
        return len(self.routes)

    def __repr__(self):
        return f"RouteTable({list(self.routes)!r})"


def _shown(text, most=200):
    """`text` quoted for a message, cut to its first `most` characters: an error echoes no 256 KiB cmd."""
    return repr(text) if len(text) <= most else f"{text[:most]!r}... ({len(text)} characters)"


def _match_route(pattern, params, rest):
    # qiniu-ufop cut the name with re.sub(r"^[^/]+", "", cmd): its routes see the slash, and tell
    # a bare name ("") from "name/" ("/"), which `params` cannot.
    if hasattr(pattern, "match_cmd_rest"):
        return pattern.match_cmd_rest(rest)
    return pattern.fullmatch(params)


def compile_route(cls, default_timeout):
    """Check a processor's declaration and compile its route, or raise ProjectError."""
    name = cls.__qualname__
    if hasattr(cls.route, "fullmatch") and not isinstance(cls.route, str):
        pattern = cls.route  # a compiled pattern, or a matcher with its interface (ufop_sdk.compat)
    elif not isinstance(cls.route, str):
        raise ProjectError(f"processor {name}: route must be a regex string, got {cls.route!r}")
    else:
        try:
            pattern = re.compile(cls.route)
        except re.error as exc:
            raise ProjectError(f"processor {name}: invalid route regex {cls.route!r}: {exc}") from None
    accepts = (cls.accepts,) if isinstance(cls.accepts, str) else cls.accepts or ()
    if not isinstance(accepts, (tuple, list, set, frozenset)) or \
            not all(isinstance(a, str) and "/" in a for a in accepts):
        raise ProjectError(f"processor {name}: accepts must be media-type patterns like 'image/*', "
                           f"got {cls.accepts!r}")
    timeout = default_timeout if cls.timeout is None else cls.timeout
    if isinstance(timeout, bool) or not isinstance(timeout, Real) or not 0 < timeout < math.inf:
        raise ProjectError(f"processor {name}: timeout must be a positive number of seconds, "
                           f"got {cls.timeout!r}")
    if cls.Args is not None:
        problem = check_args_class(cls.Args, pattern.groupindex)
        if problem:
            raise ProjectError(f"processor {name}: {problem}")
    limit = getattr(cls, "max_cmd_bytes", 4096)  # qiniu-ufop's processors have none
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ProjectError(f"processor {name}: max_cmd_bytes must be a positive number of bytes, "
                           f"got {limit!r}")
    prefetch = getattr(cls, "prefetch", True)
    if not isinstance(prefetch, bool):
        raise ProjectError(f"processor {name}: prefetch must be True or False, got {prefetch!r}")
    return Route(cls, pattern, tuple(accepts), float(timeout), max_cmd_bytes=limit, prefetch=prefetch)


def _warn_on_duplicates(routes):
    seen = {}
    for route in routes:
        first = seen.setdefault(route.pattern.pattern, route)
        if first is not route:
            warnings.warn(f"processors {first.name} and {route.name} have the same route "
                          f"{route.pattern.pattern!r}: {route.name} is never reached",
                          DuplicateRouteWarning, stacklevel=3)
