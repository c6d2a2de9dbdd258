"""Apps written for qiniu-ufop 0.1.x, run unchanged.

    from qiniu_ufop import QiniuUFOP, Response      # or: from ufop_sdk.compat import ...

    ufop = QiniuUFOP()

    @ufop.task(route=r"^/hello(?:/(?P<name>\\w+))?$")
    def hello(buffer, args, content_type):
        return "hello " + args.get("name", "world")

The older semantics are kept: the ufop name is cut from the cmd as
``re.sub(r"^[^/]+", "", cmd)`` did, leaving ``/<params>`` with its leading
slash (``""`` for the bare name, ``"/"`` for ``"name/"``), and each route is
tried with ``re.search`` in registration order. So are its answers (see
`older_response`): a dict or list is ``json.dumps(value)`` as qiniu-ufop wrote it
(``", "`` and ``": "`` separators, non-ASCII escaped) with ``application/json;
charset=utf-8``, a str is ``text/plain; charset=utf-8``, None is an empty 200, and a
``(value, content_type)`` tuple sets the content type. Its bugs are not: a group
that did not take part is left out of ``args`` rather than None, ``bytes`` get a
sniffed content type rather than Tornado's ``text/html``, and the ``content_type``
given to a task is sniffed when the request declared none. Each decorated
function becomes a `Processor`, so the server, ``ufop-sdk test``, both executors
and publish work with it.
"""

import inspect
import io
import json
import re
import types
import warnings

import attrs

from .errors import ProjectError
from .processor import Processor
from .response import TEXT, json_response, to_response
from .response import Response as _Response

OLDER_JSON = "application/json; charset=utf-8"


class SearchRoute:
    """qiniu-ufop's matching: ``re.search`` on the cmd after the ufop name.

    RouteTable calls `match_cmd_rest` with that rest (``""``, ``"/"`` or
    ``"/<params>"``); `fullmatch` is the Router's interface, for params alone.
    """

    def __init__(self, pattern):
        self.regex = re.compile(pattern)
        self.pattern = pattern
        self.groupindex = self.regex.groupindex

    def match_cmd_rest(self, rest):
        return self.regex.search(rest)

    def fullmatch(self, params):
        return self.match_cmd_rest("/" + params if params else "")

    def __repr__(self):
        return f"search_route({self.pattern!r})"


def search_route(pattern):
    """A route matched as qiniu-ufop did; `migrate` writes it where it cannot rewrite one."""
    return SearchRoute(pattern)


class IgnoredCeleryConfigurationWarning(UserWarning):
    """An app configured Celery (``conf.update``, ``config_from_object``...), which ufop-sdk does not use."""


class Task:
    """What a ``bind=True`` task gets as its first argument, standing for qiniu-ufop's Celery task.

    qiniu-ufop's ``Task`` was a Celery Task with a `route` and a no-op
    `health()`; this keeps those, the task's `name` (``module.function``, as
    Celery named it) and ``request.id`` (the request's id in logs).
    """

    route = None

    def __init__(self, name=None, route=None, request_id=None):
        self.name = name
        self.route = route
        self.request = types.SimpleNamespace(id=request_id)

    def health(self):
        pass

    def __repr__(self):
        return f"<qiniu_ufop Task {self.name} route={self.route!r}>"


class IgnoredConfiguration(dict):
    """``app.conf``: takes what a Celery app's conf took, keeps it, and uses none of it."""

    def __init__(self, warn):
        super().__init__()
        object.__setattr__(self, "_warn", warn)

    def __setattr__(self, name, value):
        self[name] = value

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setitem__(self, name, value):
        self._warn(f"conf[{name!r}]")
        super().__setitem__(name, value)

    def update(self, *args, **values):
        self._warn("conf.update()")
        dict.update(self, *args, **values)

    def setdefault(self, name, default=None):
        self._warn("conf.setdefault()")
        return dict.setdefault(self, name, default)


class QiniuUFOP:
    """qiniu-ufop's app: ``@ufop.task(route=...)`` turns a function into a Processor.

    Keyword arguments the older Celery app took (broker settings and the like)
    are accepted and ignored: ufop-sdk takes its settings from UFOP_* variables.
    So are its configuration calls (``conf.update()``, ``config_from_object()``,
    ``autodiscover_tasks()``...), with one IgnoredCeleryConfigurationWarning per app.
    """

    def __init__(self, *args, **options):
        self.ufop_processors = []
        self._warned = False
        self.conf = IgnoredConfiguration(self._ignore)

    def task(self, *args, route=None, **options):
        def register(function):
            if route is not None:
                self.ufop_processors.append(_processor_for(function, route, options))
            return function

        if args and callable(args[0]) and len(args) == 1:  # @ufop.task without parentheses
            return register(args[0])
        return register

    def config_from_object(self, *args, **kwargs):
        self._ignore("config_from_object()")

    def config_from_envvar(self, *args, **kwargs):
        self._ignore("config_from_envvar()")

    def autodiscover_tasks(self, *args, **kwargs):
        self._ignore("autodiscover_tasks()")

    def add_defaults(self, *args, **kwargs):
        self._ignore("add_defaults()")

    def _ignore(self, call):
        if not self._warned:
            self._warned = True
            warnings.warn(f"{call} and the app's other Celery configuration are ignored: ufop-sdk takes "
                          f"its settings from UFOP_* variables",
                          IgnoredCeleryConfigurationWarning, stacklevel=3)


def _processor_for(function, route, options):
    task_name = f"{function.__module__}.{function.__name__}"
    if inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function):
        raise ProjectError(f"qiniu-ufop task {task_name} is async def, which qiniu-ufop tasks cannot be: "
                           "write it as an ufop_sdk.Processor with `async def process(self, req)`")

    def process(self, req):
        content_type = req.declared_content_type or req.content_type
        arguments = (io.BytesIO(req.buffer.read()), dict(req.args), content_type)
        if options.get("bind"):
            arguments = (Task(task_name, route, req.request_id), *arguments)
        return older_response(function(*arguments), type(self).__qualname__)

    attributes = {"route": SearchRoute(route), "process": process, "__module__": function.__module__,
                  "__doc__": function.__doc__, "__qualname__": function.__qualname__}
    if options.get("time_limit") or options.get("soft_time_limit"):
        attributes["timeout"] = options.get("soft_time_limit") or options["time_limit"]
    return type(function.__name__, (Processor,), attributes)


def older_response(value, processor_name):
    """The Response qiniu-ufop's ResultHandler made of a task's return `value`.

    A two-item tuple is ``(value, content_type)``, the content type (when not
    empty) replacing the one below. A dict or list becomes qiniu-ufop's
    ``json.dumps(value)`` with ``application/json; charset=utf-8``, a str
    ``text/plain; charset=utf-8``, None an empty 200; bytes and a Response are
    answered as ufop-sdk answers them. Raises UfopError naming `processor_name`
    for a value that cannot be sent, as `to_response` does.
    """
    content_type = None
    if isinstance(value, tuple) and len(value) == 2:
        value, content_type = value
    if isinstance(value, (dict, list)):
        value = json_response(value, processor_name, _older_json, OLDER_JSON)
    elif isinstance(value, str):
        value = _Response.text(value)
    elif value is None:
        value = _Response(b"")
    response = to_response(value, processor_name)
    return attrs.evolve(response, content_type=content_type) if content_type else response


def _older_json(value):
    return json.dumps(value).encode("utf-8")  # qiniu-ufop's defaults: ", " and ": ", ASCII, NaN allowed


def Response(code=200, headers=None, body=None, buffer=None, reason=None):  # noqa: N802 - the older API's name
    """qiniu-ufop's ``Response(code, headers, body, buffer, reason)``, as a ufop-sdk Response.

    The Content-Type header, when given, becomes the content type; otherwise
    the body is sniffed. `reason` is accepted and ignored: the status's own
    reason phrase is sent.
    """
    headers = {str(name): str(value) for name, value in dict(headers or {}).items()}
    content_type = next((headers.pop(name) for name in list(headers) if name.lower() == "content-type"),
                        None)
    if body is None:
        body = buffer.getvalue() if buffer is not None else b""
    if isinstance(body, str):
        body = body.encode("utf-8")
        content_type = content_type or TEXT
    return _Response(bytes(body), code, headers, content_type)
