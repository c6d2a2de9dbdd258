"""``ufop-sdk migrate``: a qiniu-ufop app.py rewritten as a processors.py that answers exactly as it did.

The app is tests/projects/oldstyle/app.py; OLDSTYLE_CASES (support.py) is
what it answers, before migrating and after.
"""

import ast
import json
import re
import shutil
import textwrap

import pytest
from support import (
    OLDSTYLE,
    OLDSTYLE_CASE_IDS,
    OLDSTYLE_CASES,
    QUICKSTART,
    SINGLE_PROCESSOR,
    Server,
    cli_answer,
    cli_answers,
    http_answer,
    run_cli,
)

from ufop_sdk.compat import search_route
from ufop_sdk.tools.migrate import convert_route


def write_app(folder, source):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return folder / "app.py"


def route_table(folder, app):
    """``ufop-sdk routes`` as rows of (processor, route, timeout)."""
    result = run_cli("routes", "--app", app, "--project", folder)
    assert result.returncode == 0, result.stderr
    return [(row[1], row[2], row[-1]) for row in map(str.split, result.stdout.decode().splitlines()[1:])]


# --- the oldstyle app, migrated ---

@pytest.fixture(scope="module")
def migrated(tmp_path_factory):
    """A folder holding the oldstyle app.py and the processors.py `migrate -o` wrote from it."""
    folder = tmp_path_factory.mktemp("migrated")
    shutil.copy(OLDSTYLE / "app.py", folder / "app.py")
    result = run_cli("migrate", "app.py", "-o", "processors.py", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().startswith("wrote processors.py")
    return folder


@pytest.fixture(scope="module")
def migrated_source(migrated):
    return (migrated / "processors.py").read_text()


def test_the_migrated_file_is_class_style_and_loads(migrated, migrated_source):
    tree = ast.parse(migrated_source)
    classes = [node.name for node in tree.body if isinstance(node, ast.ClassDef)]
    assert classes == ["Hello", "Describe", "Created", "Buffered", "Upper", "Png", "Echo"]
    assert "qiniu_ufop" not in migrated_source and "QiniuUFOP" not in migrated_source
    assert "TODO(migrate)" not in migrated_source  # every route here converts exactly
    assert [name for name, *_ in route_table(migrated, "processors")] == classes


@pytest.mark.parametrize("line", [
    r'route = r"hello(?:/(?P<name>\w+)/?)?"',
    'route = r"json.*"',
    r'route = r"created/(?P<id>\d+)"',
    'route = r"buffered"',
    'route = r"png"',
    'route = r".*"',
])
def test_routes_are_rewritten_for_fullmatch_without_the_leading_slash(migrated_source, line):
    assert f"    {line}\n" in migrated_source


def test_a_function_using_bytesio_methods_gets_a_bytesio(migrated_source):
    assert " upper(io.BytesIO(req.buffer.read()), dict(req.args)," in migrated_source
    assert " echo(req.buffer, dict(req.args)," in migrated_source  # only where needed


def test_the_migrated_file_imports_each_name_once(migrated_source):
    """The app imported io itself; the migrated file must not import it a second time (ruff F811)."""
    imported = [alias.asname or alias.name for node in ast.parse(migrated_source).body
                if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names]
    assert sorted(imported) == sorted(set(imported))


@pytest.fixture(scope="module")
def servers(migrated):
    """(before, after): a real ``ufop-sdk serve`` of the app, and of its migrated processors."""
    with Server(OLDSTYLE, "--app", "app") as before, Server(migrated, "--app", "processors") as after:
        yield before, after


@pytest.mark.parametrize("params, body, content_type, expected", OLDSTYLE_CASES, ids=OLDSTYLE_CASE_IDS)
def test_answers_over_http_are_the_same_after_migrate(servers, params, body, content_type, expected):
    before, after = servers
    assert http_answer(after, params, body, content_type) == http_answer(before, params, body, content_type)
    assert http_answer(after, params, body, content_type) == expected


def test_params_with_a_newline_are_refused_before_and_after_migrate(servers):
    """qiniu-ufop's ``$`` matched before a final newline, where a fullmatch route does not: a cmd
    holding a control character (%0A) is refused with 400 either way, so the difference never shows."""
    before, after = servers
    for params in ("json\nx", "hello\n", "anything\nelse", "tab\there"):
        old, new = http_answer(before, params, b"text\n"), http_answer(after, params, b"text\n")
        assert old.status == new.status == 400, params


@pytest.fixture(scope="module")
def answers_through_cli(migrated, tmp_path_factory):
    """(before, after): the answers ``ufop-sdk test`` gives for OLDSTYLE_CASES, app and migrated."""
    folder = tmp_path_factory.mktemp("cli")
    return (cli_answers(OLDSTYLE, "app", OLDSTYLE_CASES, folder),
            cli_answers(migrated, "processors", OLDSTYLE_CASES, folder))


@pytest.mark.parametrize("index", range(len(OLDSTYLE_CASES)), ids=OLDSTYLE_CASE_IDS)
def test_answers_through_ufop_sdk_test_are_the_same_after_migrate(answers_through_cli, index):
    before, after = answers_through_cli
    assert after[index] == before[index] == OLDSTYLE_CASES[index][3]._replace(custom=None)


# --- the older README's routes for the bare name ---

@pytest.mark.parametrize("source, route", [
    (QUICKSTART, r'route = r"(?:(?P<name>\w+))?"'),
    (SINGLE_PROCESSOR, 'route = r""'),
], ids=["quickstart", "single"])
def test_the_bare_name_routes_migrate_exactly(tmp_path, source, route):
    write_app(tmp_path, source)
    result = run_cli("migrate", "app.py", "-o", "processors.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    migrated = (tmp_path / "processors.py").read_text()
    assert f"    {route}\n" in migrated and "TODO(migrate)" not in migrated
    cmds = ["qiniu", "qiniu/bob", "qiniu/bob/x", "qiniu/b-c"]
    with Server(tmp_path, "--app", "app") as before, Server(tmp_path, "--app", "processors") as after:
        old = [outcome(before.post(cmd, b"input")) for cmd in cmds]
        new = [outcome(after.post(cmd, b"input")) for cmd in cmds]
    assert new == old and old[0][0] == 200  # the bare name is answered, before and after
    bare_name = cli_answer(tmp_path, "processors", "", b"input", None, tmp_path)
    assert (bare_name.status, bare_name.body) == old[0]


def outcome(answer):
    """(status, body) of a server's answer; an error's body, holding its request id, as None."""
    status, _, body = answer
    return status, body if status == 200 else None


# --- bind=True ---

BOUND = '''
    from qiniu_ufop import QiniuUFOP, Task

    ufop = QiniuUFOP()

    @ufop.task(route=r"^/bound(?:/(?P<n>\\d+))?$", bind=True)
    def bound(self, buffer, args, content_type):
        assert isinstance(self, Task)
        return {"task": self.name.rpartition(".")[2], "route": self.route, "request": self.request.id,
                "args": args, "body": buffer.read().decode()}
'''


def test_a_bound_task_migrates_to_a_process_passing_the_same_task(tmp_path):
    write_app(tmp_path, BOUND)
    result = run_cli("migrate", "app.py", "-o", "processors.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    migrated = (tmp_path / "processors.py").read_text()
    assert "from ufop_sdk.compat import Task, older_response\n" in migrated
    assert "TODO(migrate)" not in migrated
    headers = {"X-Request-Id": "req-7"}
    with Server(tmp_path, "--app", "app") as before, Server(tmp_path, "--app", "processors") as after:
        answers = [(server.post("qiniu/bound/3", b"in", headers=headers)[::2]) for server in (before, after)]
    assert answers[0] == answers[1]
    assert answers[0][0] == 200 and json.loads(answers[0][1]) == {
        "task": "bound", "route": r"^/bound(?:/(?P<n>\d+))?$", "request": "req-7", "args": {"n": "3"},
        "body": "in"}


# --- routes that cannot be rewritten exactly ---

UNCONVERTIBLE = '''
    from qiniu_ufop import QiniuUFOP

    ROUTE = r"^/const$"
    ufop = QiniuUFOP()


    @ufop.task(route=r"abc")
    def anywhere(buffer, args, content_type):
        return "anywhere " + content_type


    @ufop.task(route=r"^/a|b$")
    def either(buffer, args, content_type):
        return "either"


    @ufop.task(route=ROUTE)
    def constant(buffer, args, content_type):
        return "constant"


    @ufop.task(route=r"^/(?P<rest>.*)$")
    def rest(buffer, args, content_type):
        return "rest " + args["rest"]
'''


@pytest.fixture(scope="module")
def unconvertible(tmp_path_factory):
    """(folder, migrate's result) for an app whose routes cannot all be rewritten."""
    app = write_app(tmp_path_factory.mktemp("unconvertible"), UNCONVERTIBLE)
    return app.parent, run_cli("migrate", app)


def class_lines(source, name):
    """The lines of class `name` in `source`."""
    node = next(node for node in ast.parse(source).body
                if isinstance(node, ast.ClassDef) and node.name == name)
    return source.splitlines()[node.lineno - 1:node.end_lineno]


@pytest.mark.parametrize("class_name, route", [("Anywhere", r"abc"), ("Either", r"^/a|b$")])
def test_a_route_not_rewritable_is_kept_with_search_route_marked_todo(unconvertible, class_name, route):
    folder, result = unconvertible
    assert result.returncode == 0, result.stderr
    lines = class_lines((folder / "processors.py").read_text(), class_name)
    at = lines.index(f'    route = search_route(r"{route}")')
    assert any(line.strip().startswith("# TODO(migrate)") for line in lines[:at])


def test_a_route_that_is_not_a_string_literal_is_marked_todo(unconvertible):
    folder, result = unconvertible
    source = (folder / "processors.py").read_text()
    marked = "    route = None  # TODO(migrate): the route was not a string literal"
    assert marked in class_lines(source, "Constant")
    assert "# TODO(migrate): constant(): its route is not a string literal" in source
    assert "needs a look: constant()" in result.stderr.decode()


def test_routes_kept_through_search_route_answer_as_before(unconvertible, tmp_path):
    folder, _ = unconvertible
    cases = [(params, b"plain words\n", None)
             for params in ("abc", "xabcx", "q/abc/", "a", "ax/y", "zzb", "b/q")]
    before = cli_answers(folder, "app", cases, tmp_path)
    after = cli_answers(folder, "processors", cases, tmp_path)
    assert [answer.body for answer in before] == ([b"anywhere text/plain"] * 3 + [b"either"] * 3
                                                  + [b"rest b/q"])
    assert after == before


def test_a_tasks_time_limit_is_kept(tmp_path):
    """qiniu-ufop's Celery ``time_limit`` is the processor's timeout under compat; migrate must keep it."""
    write_app(tmp_path, '''
        from qiniu_ufop import QiniuUFOP

        ufop = QiniuUFOP()


        @ufop.task(route=r"^/slow$", time_limit=5)
        def slow(buffer, args, content_type):
            return "slow"
    ''')
    assert run_cli("migrate", tmp_path / "app.py").returncode == 0
    assert route_table(tmp_path, "app") == [("slow", "search_route('^/slow$')", "5s")]
    assert route_table(tmp_path, "processors") == [("Slow", "slow", "5s")]


# --- where it writes, and what it refuses ---

def test_it_writes_processors_py_beside_the_app_by_default(tmp_path):
    app = write_app(tmp_path / "project", (OLDSTYLE / "app.py").read_text())
    result = run_cli("migrate", app, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "project" / "processors.py").is_file()
    assert not (tmp_path / "processors.py").exists()
    assert len(route_table(tmp_path / "project", "processors")) == 7


@pytest.mark.parametrize("output", [None, "existing.py"])
def test_it_never_overwrites_a_file(tmp_path, output):
    app = write_app(tmp_path, (OLDSTYLE / "app.py").read_text())
    target = tmp_path / (output or "processors.py")
    target.write_text("# mine\n")
    result = run_cli("migrate", app, *(["-o", target] if output else []))
    assert result.returncode != 0
    assert target.read_text() == "# mine\n"
    assert b"already exists" in result.stderr and b"Traceback" not in result.stderr


@pytest.mark.parametrize("source, message", [
    ("def broken(:\n    pass\n", b"is not valid Python"),
    ("from qiniu_ufop import QiniuUFOP\nufop = QiniuUFOP(\n", b"is not valid Python"),
])
def test_invalid_python_is_a_clean_error(tmp_path, source, message):
    app = tmp_path / "app.py"
    app.write_text(source)
    result = run_cli("migrate", app)
    assert result.returncode == 1
    assert message in result.stderr and b"Traceback" not in result.stderr
    assert not (tmp_path / "processors.py").exists()


def test_a_missing_app_file_is_a_usage_error(tmp_path):
    result = run_cli("migrate", tmp_path / "app.py")
    assert result.returncode == 2
    assert b"does not exist" in result.stderr and b"Traceback" not in result.stderr
    assert not (tmp_path / "processors.py").exists()


# --- convert_route ---

CONVERTIBLE = [
    (r"^/hello$", "hello"),
    (r"^/hello(?:/(?P<name>\w+)/?)?$", r"hello(?:/(?P<name>\w+)/?)?"),
    (r"^/json", "json.*"),
    (r"^/thumb/(?P<w>\d+)(?:x(?P<h>\d+))?", r"thumb/(?P<w>\d+)(?:x(?P<h>\d+))?.*"),
    (r"\A/hello\Z", "hello"),
    (r"\A/hello", "hello.*"),
    (r"^/hello\Z", "hello"),
    (r"^/price\$", r"price\$.*"),  # an escaped $ is a character, not an anchor
    (r"^/a\\$", r"a\\"),  # an escaped backslash, then the anchor
    (r"^/(?P<op>[a|b]+)/(?P<v>\d+)$", r"(?P<op>[a|b]+)/(?P<v>\d+)"),  # | inside a class
    (r"^/[\]|]x$", r"[\]|]x"),
    (r"^/(?:x|y)/z$", r"(?:x|y)/z"),  # | inside a group
    (r"^/[^/]+$", r"[^/]+"),
    (r"^/(?i:abc)$", r"(?i:abc)"),
    (r".*", ".*"),
    (r"", ".*"),
    (r"^/", ".+"),  # qiniu-ufop's slash was not there in the bare name's ""
    (r"^/.*", ".+"),
    (r"^/(?P<n>\w*)$", r"(?=.)(?P<n>\w*)"),
    (r"^$", ""),  # the older README's route for a single processor: the bare name
    (r"\A\Z", ""),
    (r"^(?:/(?P<name>\w+))?$", r"(?:(?P<name>\w+))?"),  # the older README's quickstart
    (r"^(?:/(?P<name>\w+))?", r"(?:(?P<name>\w+))?.*"),
    (r"\A(?:/(?:x|y)(?P<n>\d))?\Z", r"(?:(?:x|y)(?P<n>\d))?"),
]

NOT_CONVERTIBLE = [
    r"abc",  # unanchored: it matched anywhere
    r"hello$",
    r"^/a|b$",  # top-level alternation: the anchors apply to one branch each
    r"^/a$|^/b$",
    r"x|^/y",
    r"^/[](]|b",  # a class opening with ] holds the ( ; the | is top-level
    r"(?<=/)abc",  # lookbehind: it may need the slash
    r"^/(?<!x)abc",
    r"^/a(b$)",  # an anchor not at the end
    r"^/a^b",
    r"^(?:/a|b)?$",  # the b branch has no slash
    r"^(?:/a)?/b$",  # what follows the optional group could match the slash
    r"^(?:/a)$",
]

SAMPLES = ["", "hello", "hello/", "hello/bob", "hello/bob/", "hello/bob/x", "xhello", "HELLO", "json",
           "json/extra", "jsonx", "x/json", "thumb/200", "thumb/200x300", "thumb/", "thumb/200x", "price$",
           "price$x", "price", "a\\", "a", "b", "ab", "ba", "a|b/1", "ab/22", "c/1", "]x", "|x", "x/z", "y/z",
           "xy/z", "abc", "ABC", "q/abc", "y", "const", "caf\u00e9", "a/b/c", "///",
           "bob", "bob/x", "x1", "y2", "x", "_"]
NEWLINE_SAMPLES = ["hello\n", "json\nx", "thumb/200\n", "price$\n", "abc\n", "\n", "a\nb"]


def cmd_rest(params):
    """What qiniu-ufop's ``re.sub(r"^[^/]+", "", cmd)`` left of ``name/params``, or of the bare name."""
    return "/" + params if params else ""


def agree(original, converted, params):
    """True if fullmatch of `converted` on params routes exactly as qiniu-ufop's search did."""
    old, new = re.search(original, cmd_rest(params)), re.fullmatch(converted, params)
    return (old is None) == (new is None) and (old is None or old.groupdict() == new.groupdict())


@pytest.mark.parametrize("original, converted", CONVERTIBLE)
def test_convert_route(original, converted):
    assert convert_route(original) == converted


@pytest.mark.parametrize("original", [original for original, _ in CONVERTIBLE])
def test_a_converted_route_routes_as_the_original_did(original):
    converted = convert_route(original)
    assert converted is not None
    assert [params for params in SAMPLES if not agree(original, converted, params)] == []


@pytest.mark.parametrize("original", NOT_CONVERTIBLE)
def test_a_route_that_cannot_be_converted_exactly_gives_none(original):
    assert convert_route(original) is None


@pytest.mark.parametrize("original", NOT_CONVERTIBLE)
def test_search_route_keeps_an_unconverted_route_working(original):
    route = search_route(original)
    for params in SAMPLES + NEWLINE_SAMPLES:
        old, new = re.search(original, cmd_rest(params)), route.fullmatch(params)
        assert (old and old.groupdict()) == (new and new.groupdict()), params
