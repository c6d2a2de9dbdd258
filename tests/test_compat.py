"""qiniu-ufop apps run unchanged: the older API and route semantics, over HTTP and through ``ufop-sdk test``.

The app under test is tests/projects/oldstyle/app.py, written exactly as a
qiniu-ufop 0.1.x user wrote one; OLDSTYLE_CASES (support.py) is what it answers.
"""

import io
import json
import os
import subprocess
import sys
import textwrap

import pytest
from support import (
    OLDER_JSON,
    OLDSTYLE,
    OLDSTYLE_CASE_IDS,
    OLDSTYLE_CASES,
    OLDSTYLE_PNG,
    QUICKSTART,
    SINGLE_PROCESSOR,
    TEXT,
    Server,
    cli_answer,
    cli_answers,
    http_answer,
    run_cli,
)

import qiniu_ufop
from ufop_sdk import Processor, compat
from ufop_sdk.compat import QiniuUFOP, SearchRoute, search_route


def answer(runner, params, body=b"", content_type=None):
    """(status, content type, body, processor) for `params` run in-process."""
    cmd = f"oldufop/{params}" if params else "oldufop"
    outcome = runner.process_cmd(cmd, io.BytesIO(body), declared_content_type=content_type)
    response = outcome.response
    return response.status, response.content_type, response.body, outcome.processor


def test_the_older_import_name_gives_the_compat_api():
    assert qiniu_ufop.QiniuUFOP is QiniuUFOP
    assert qiniu_ufop.Response is compat.Response
    assert qiniu_ufop.Task is compat.Task
    assert sorted(qiniu_ufop.__all__) == ["HTTPHeaders", "QiniuUFOP", "Response", "Task"]


def test_the_four_names_the_older_package_exported_import_in_a_fresh_interpreter():
    code = ("from qiniu_ufop import QiniuUFOP, Response, Task, HTTPHeaders; import tornado.httputil; "
            "assert HTTPHeaders is tornado.httputil.HTTPHeaders")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()


def test_each_task_becomes_a_processor_with_a_search_route():
    ufop = QiniuUFOP()

    @ufop.task(route=r"^/hello$")
    def hello(buffer, args, content_type):
        return "hi"

    assert hello(io.BytesIO(), {}, "text/plain") == "hi"  # the function itself stays callable
    [processor] = ufop.ufop_processors
    assert issubclass(processor, Processor)
    assert processor.__name__ == "hello"
    assert isinstance(processor.route, SearchRoute)
    assert repr(processor.route) == "search_route('^/hello$')"


@pytest.mark.parametrize("params, processor, body", [
    ("hello", "hello", b"hello world"),
    ("hello/bob", "hello", b"hello bob"),
    ("hello/bob/", "hello", b"hello bob"),
    ("hello/bob/extra", "echo", b"input"),  # the $ anchors it
    ("json", "describe", None),
    ("json/extra", "describe", None),  # no $: search() ignores what follows
    ("jsonish", "describe", None),
    ("xhello", "echo", b"input"),  # ^ anchors it: the leading slash is there to match
    ("x/json", "echo", b"input"),
    ("created/7", "created", b"<p>created 7</p>"),
    ("created/seven", "echo", b"input"),
    ("png", "png", OLDSTYLE_PNG),
    ("pngs", "echo", b"input"),
    ("", "echo", b"input"),
])
def test_routes_are_searched_on_the_slashed_params_in_order(load_runner, params, processor, body):
    status, _, answered, processor_name = answer(load_runner(OLDSTYLE, app="app"), params, b"input")
    assert (status // 100, processor_name) == (2, processor)
    if body is not None:
        assert answered == body


def test_a_route_searched_anywhere_matches_anywhere_and_the_first_registered_wins(make_project, load_runner):
    folder = make_project(app='''
        from qiniu_ufop import QiniuUFOP

        ufop = QiniuUFOP()

        @ufop.task(route=r"abc")
        def anywhere(buffer, args, content_type):
            return "anywhere"

        @ufop.task(route=r"^/abc$")
        def exact(buffer, args, content_type):
            return "exact"
    ''')
    runner = load_runner(folder, app="app")
    for params in ("abc", "xabcx", "a/abc/"):
        assert answer(runner, params)[2:] == (b"anywhere", "anywhere")
    assert answer(runner, "ab")[0] == 404


def test_a_group_that_did_not_take_part_is_left_out_of_args(make_project, load_runner):
    folder = make_project(app='''
        from qiniu_ufop import QiniuUFOP

        ufop = QiniuUFOP()

        @ufop.task(route=r"^/args/(?P<first>\\w+)(?:/(?P<second>\\w+))?(?:/(?P<empty>x*))?$")
        def show(buffer, args, content_type):
            return args
    ''')
    runner = load_runner(folder, app="app")
    assert json.loads(answer(runner, "args/a")[2]) == {"first": "a"}  # qiniu-ufop gave "second": None
    assert json.loads(answer(runner, "args/a/b")[2]) == {"first": "a", "second": "b"}
    assert json.loads(answer(runner, "args/a/b/")[2]) == {"first": "a", "second": "b", "empty": ""}
    assert answer(load_runner(OLDSTYLE, app="app"), "hello")[2] == b"hello world"  # args.get's default


@pytest.mark.parametrize("body, declared, seen", [
    (b"abc", "text/x-declared", "text/x-declared"),
    (OLDSTYLE_PNG, "application/octet-stream", "application/octet-stream"),  # declared wins over sniffed
    (OLDSTYLE_PNG, None, "image/png"),
    (b"plain words\n", None, "text/plain"),
])
def test_the_content_type_given_is_the_declared_one_else_the_sniffed_one(load_runner, body, declared, seen):
    status, content_type, answered, _ = answer(load_runner(OLDSTYLE, app="app"), "json", body, declared)
    assert (status, content_type) == (200, OLDER_JSON)
    assert json.loads(answered) == {"args": {}, "content_type": seen, "size": len(body)}


@pytest.mark.parametrize("params, status, content_type, body", [
    ("png", 200, "image/png", OLDSTYLE_PNG),  # bytes: sniffed, not application/octet-stream
    ("upper", 200, "text/x-upper", b"INPUT"),  # (value, content_type)
    ("hello", 200, "text/plain; charset=utf-8", b"hello world"),  # str
    ("json", 200, OLDER_JSON, b'{"args": {}, "content_type": "text/plain", "size": 5}'),  # json.dumps(dict)
    ("created/3", 201, "text/html; charset=utf-8", b"<p>created 3</p>"),  # Response with headers
    ("buffered", 200, "text/plain", b"buffered: input"),  # Response(buffer=...), sniffed
])
def test_each_kind_of_return_value(load_runner, params, status, content_type, body):
    assert answer(load_runner(OLDSTYLE, app="app"), params, b"input")[:3] == (status, content_type, body)


def test_a_response_with_http_headers_keeps_them_and_its_status(load_runner):
    outcome = load_runner(OLDSTYLE, app="app").process_cmd("oldufop/created/9", io.BytesIO(b""))
    assert outcome.response.status == 201
    assert outcome.response.headers == {"X-Custom": "made-9"}  # Content-Type became the content type
    assert outcome.response.content_type == "text/html; charset=utf-8"


@pytest.mark.parametrize("value, expected", [
    ({"name": "caf\u00e9", "n": [1, 2.5]}, (200, OLDER_JSON, b'{"name": "caf\\u00e9", "n": [1, 2.5]}')),
    ([1, "a"], (200, OLDER_JSON, b'[1, "a"]')),
    ({"x": float("nan")}, (200, OLDER_JSON, b'{"x": NaN}')),  # json.dumps' default, so qiniu-ufop's
    ("caf\u00e9", (200, TEXT, "caf\u00e9".encode())),
    (({"a": 1}, "text/x-json"), (200, "text/x-json", b'{"a": 1}')),
    (("text", "text/html"), (200, "text/html", b"text")),
    (("text", ""), (200, TEXT, b"text")),  # qiniu-ufop set the content type only `if content_type`
    ((OLDSTYLE_PNG, None), (200, "image/png", OLDSTYLE_PNG)),  # bytes: sniffed
    ((qiniu_ufop.Response(code=201, body="x"), "text/csv"), (201, "text/csv", b"x")),
    (None, (200, "application/x-empty", b"")),  # qiniu-ufop answered None with an empty 200
])
def test_return_values_are_answered_by_qiniu_ufops_rules(value, expected):
    response = compat.older_response(value, "task")
    assert (response.status, response.content_type, response.body) == expected


def test_a_dict_that_is_not_json_is_a_500_naming_the_task(make_project, load_runner):
    folder = make_project(app='''
        import datetime

        from qiniu_ufop import QiniuUFOP

        ufop = QiniuUFOP()

        @ufop.task(route=r"^/when$")
        def when(buffer, args, content_type):
            return {"at": datetime.date(2020, 1, 1)}
    ''')
    status, content_type, body, _ = answer(load_runner(folder, app="app"), "when")
    assert (status, content_type) == (500, "application/json")
    assert json.loads(body)["error"] == ("processor 'when' returned a dict that is not JSON: "
                                         "Object of type date is not JSON serializable")


@pytest.mark.parametrize("arguments, expected", [
    ({"code": 202, "body": b"\x89PNG\r\n\x1a\nrest"}, (202, None, {}, b"\x89PNG\r\n\x1a\nrest")),
    ({"headers": {"content-type": "text/csv", "X-A": 1}, "body": "a,b"},
     (200, "text/csv", {"X-A": "1"}, b"a,b")),
    ({"body": "caf\u00e9", "reason": "Fine"}, (200, "text/plain; charset=utf-8", {}, "caf\u00e9".encode())),
    ({"buffer": io.BytesIO(b"from a buffer")}, (200, None, {}, b"from a buffer")),
    ({"code": 204}, (204, None, {}, b"")),
])
def test_the_older_response_arguments(arguments, expected):
    """A content type of None is sniffed from the body when the Response is sent."""
    response = qiniu_ufop.Response(**arguments)
    assert (response.status, response.content_type, response.headers, response.body) == expected


def test_the_older_app_arguments_are_accepted_and_ignored(make_project):
    folder = make_project(app='''
        from qiniu_ufop import QiniuUFOP

        ufop = QiniuUFOP(main="app", broker="redis://127.0.0.1:6379/0", backend="redis://127.0.0.1:6379/1",
                         include=["app"])

        @ufop.task(route=r"^/slow$", time_limit=5, bind=False)
        def slow(buffer, args, content_type):
            return "slow"

        @ufop.task(route=r".*")
        def rest(buffer, args, content_type):
            return "rest"
    ''')
    environment_before = dict(os.environ)
    QiniuUFOP(main="app", broker="redis://127.0.0.1:6379/0")
    assert dict(os.environ) == environment_before  # qiniu-ufop wrote its broker settings here
    result = run_cli("routes", "--app", "app", "--project", folder)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.decode().splitlines()[1:]]
    assert rows == [["1", "slow", "search_route('^/slow$')", "*/*", "5s"],
                    ["2", "rest", "search_route('.*')", "*/*", "30s"]]


def test_two_apps_never_share_tasks():
    first, second = QiniuUFOP(), QiniuUFOP()  # qiniu-ufop kept one class-level list for every app
    first.task(route=r"^/one$")(lambda buffer, args, content_type: "one")
    assert (len(first.ufop_processors), second.ufop_processors) == (1, [])


def test_apps_in_two_projects_loaded_in_one_process_do_not_see_each_others_tasks(make_project, load_runner):
    source = '''
        from qiniu_ufop import QiniuUFOP

        ufop = QiniuUFOP()

        @ufop.task(route=r"^/{name}$")
        def {name}(buffer, args, content_type):
            return "{name}"
    '''
    alpha = load_runner(make_project(app=source.format(name="alpha")), app="app")
    beta = load_runner(make_project(app=source.format(name="beta")), app="app")
    alpha_again = load_runner(make_project(app=source.format(name="alpha")), app="app")
    assert [route.name for route in alpha.app.routes] == ["alpha"]
    assert [route.name for route in beta.app.routes] == ["beta"]
    assert [route.name for route in alpha_again.app.routes] == ["alpha"]
    assert answer(beta, "alpha")[0] == 404
    assert answer(alpha, "alpha")[2] == b"alpha"


def test_search_route_matches_as_qiniu_ufop_did():
    route = search_route(r"^/a|b$")
    assert route.groupindex == {}
    for params, matched in [("a", True), ("ax", True), ("xb", True), ("x/b", True), ("ba", False),
                            ("", False)]:
        assert bool(route.fullmatch(params)) is matched, params
    named = search_route(r"item-(?P<n>\d)")
    assert named.groupindex == {"n": 1}
    assert named.fullmatch("q/item-7x").groupdict() == {"n": "7"}


def test_routes_lists_the_tasks_in_registration_order():
    result = run_cli("routes", "--app", "app", "--project", OLDSTYLE)
    assert result.returncode == 0, result.stderr
    rows = [line.split()[:3] for line in result.stdout.decode().splitlines()[1:]]
    # qiniu-ufop's routes are shown as what they are: search_route(...), matched with re.search
    assert rows == [
        ["1", "hello", repr(search_route(r"^/hello(?:/(?P<name>\w+)/?)?$"))],
        ["2", "describe", repr(search_route("^/json"))],
        ["3", "created", repr(search_route(r"^/created/(?P<id>\d+)$"))],
        ["4", "buffered", repr(search_route("^/buffered$"))],
        ["5", "upper", repr(search_route("^/upper$"))],
        ["6", "png", repr(search_route("^/png$"))],
        ["7", "echo", repr(search_route(".*"))],
    ]


@pytest.fixture(scope="module")
def oldstyle_server():
    with Server(OLDSTYLE, "--app", "app") as server:
        yield server


@pytest.mark.parametrize("params, body, content_type, expected", OLDSTYLE_CASES, ids=OLDSTYLE_CASE_IDS)
def test_answers_over_http(oldstyle_server, params, body, content_type, expected):
    assert http_answer(oldstyle_server, params, body, content_type) == expected


@pytest.fixture(scope="module")
def oldstyle_cli_answers(tmp_path_factory):
    return cli_answers(OLDSTYLE, "app", OLDSTYLE_CASES, tmp_path_factory.mktemp("cli"))


@pytest.mark.parametrize("index", range(len(OLDSTYLE_CASES)), ids=OLDSTYLE_CASE_IDS)
def test_answers_through_ufop_sdk_test(oldstyle_cli_answers, index):
    expected = OLDSTYLE_CASES[index][3]
    assert oldstyle_cli_answers[index] == expected._replace(custom=None)  # headers are not shown


# --- the bare name: qiniu-ufop cut it with re.sub(r"^[^/]+", "", cmd), "" for "name", "/" for "name/" ---

# (project source, cmd, status, body), body None for the JSON error; the server does not check the name.
# "name/" leaves "/", which neither route matches.
BARE_NAME_CASES = [
    (QUICKSTART, "qiniu", 200, b"hello world"),
    (QUICKSTART, "qiniu/bob", 200, b"hello bob"),
    (QUICKSTART, "qiniu/", 404, None),
    (QUICKSTART, "qiniu/bob/x", 404, None),
    (SINGLE_PROCESSOR, "qiniu", 200, b"only"),
    (SINGLE_PROCESSOR, "qiniu/", 404, None),
    (SINGLE_PROCESSOR, "qiniu/x", 404, None),
]


@pytest.fixture(scope="module")
def bare_name_projects(tmp_path_factory):
    folders = {}
    for source in (QUICKSTART, SINGLE_PROCESSOR):
        folder = tmp_path_factory.mktemp("bare")
        (folder / "app.py").write_text(textwrap.dedent(source), encoding="utf-8")
        folders[source] = folder
    return folders


@pytest.mark.parametrize("source", [QUICKSTART, SINGLE_PROCESSOR], ids=["quickstart", "single"])
def test_the_bare_name_and_a_trailing_slash_are_told_apart_over_http(bare_name_projects, source):
    with Server(bare_name_projects[source], "--app", "app") as server:
        for _, cmd, status, body in (case for case in BARE_NAME_CASES if case[0] is source):
            answered_status, _, answered = server.post(cmd, b"input")
            assert answered_status == status, cmd
            if body is not None:
                assert answered == body, cmd


@pytest.mark.parametrize("source, params, body", [
    (QUICKSTART, "", b"hello world"), (QUICKSTART, "bob", b"hello bob"), (SINGLE_PROCESSOR, "", b"only"),
], ids=["quickstart bare name", "quickstart name", "single bare name"])
def test_the_bare_name_through_ufop_sdk_test(bare_name_projects, tmp_path, source, params, body):
    answered = cli_answer(bare_name_projects[source], "app", params, b"input", None, tmp_path)
    assert (answered.status, answered.body) == (200, body)


# --- bind=True and the Celery app's configuration calls ---

BOUND_AND_CONFIGURED = '''
    from qiniu_ufop import QiniuUFOP, Task

    ufop = QiniuUFOP(main="app")
    ufop.conf.update(task_serializer="pickle", result_expires=60)
    ufop.conf.task_default_queue = "old"
    ufop.conf["worker_prefetch_multiplier"] = 1
    ufop.config_from_object("celeryconfig")
    ufop.autodiscover_tasks(["app"])

    @ufop.task(route=r"^/bound$", bind=True)
    def bound(self, buffer, args, content_type):
        assert isinstance(self, Task) and self.health() is None
        return {"name": self.name, "route": self.route, "request": self.request.id,
                "body": buffer.read().decode(), "content_type": content_type}

    @ufop.task(route=r"^/configured$")
    def configured(buffer, args, content_type):
        return {"conf": dict(ufop.conf), "queue": ufop.conf.task_default_queue}
'''


@pytest.fixture(scope="module")
def bound_project(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bound")
    (folder / "app.py").write_text(textwrap.dedent(BOUND_AND_CONFIGURED), encoding="utf-8")
    return folder


def test_a_bound_task_gets_a_task_standing_for_itself_first(bound_project):
    with Server(bound_project, "--app", "app") as server:
        status, headers, body = server.post("qiniu/bound", b"input", headers={"Content-Type": "text/x-in"})
    assert status == 200, body
    assert json.loads(body) == {"name": "app.bound", "route": "^/bound$", "request": headers["X-Request-Id"],
                                "body": "input", "content_type": "text/x-in"}


def test_a_bound_task_through_ufop_sdk_test(bound_project, tmp_path):
    answered = cli_answer(bound_project, "app", "bound", b"input", "text/x-in", tmp_path)
    assert answered.status == 200, answered.body
    assert json.loads(answered.body)["name"] == "app.bound"


def test_celery_configuration_calls_are_kept_ignored_and_warned_about_once(bound_project):
    result = run_cli("routes", "--app", "app", "--project", bound_project)
    assert result.returncode == 0, result.stderr
    assert result.stderr.decode().count("IgnoredCeleryConfigurationWarning") == 1
    assert "conf.update() and the app's other Celery configuration are ignored" in result.stderr.decode()
    with Server(bound_project, "--app", "app") as server:
        status, _, body = server.post("qiniu/configured")
    assert status == 200, body
    assert json.loads(body) == {"conf": {"task_serializer": "pickle", "result_expires": 60,
                                         "task_default_queue": "old", "worker_prefetch_multiplier": 1},
                                "queue": "old"}


def test_an_async_task_is_a_project_error_naming_it_when_the_project_loads(make_project):
    folder = make_project(app='''
        from qiniu_ufop import QiniuUFOP

        ufop = QiniuUFOP()

        @ufop.task(route=r"^/hello$")
        async def hello(buffer, args, content_type):
            return "hello"
    ''')
    result = run_cli("routes", "--app", "app", "--project", folder)
    assert result.returncode == 2
    assert result.stderr.decode().strip() == (
        "Error: qiniu-ufop task app.hello is async def, which qiniu-ufop tasks cannot be: write it as an "
        "ufop_sdk.Processor with `async def process(self, req)`")
