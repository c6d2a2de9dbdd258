"""``ufop-sdk dev``: hot reload of code and ``.env``, load errors served as 500s, dev's defaults.

Every test drives a real ``ufop-sdk dev`` subprocess over real HTTP and edits
its project on disk as an editor would. Reload latencies are measured from
the write to the first answer carrying the new code.
"""

import json
import os
import time
from textwrap import dedent

import pytest
from support import Origin, Server, first_answer, run_cli

# Typically well under 1 s (the reload latency printed below); the bound is wide because this
# machine is slow and shared, and a stale reload would never answer at all.
RELOAD_SECONDS = 5.0
WAIT_SECONDS = 10.0  # keep polling past that, so a slow reload is measured rather than cut off

GREETER = """
    from ufop_sdk import Processor


    class Greet(Processor):
        route = r"greet"

        def process(self, req):
            return {word!r}
"""

GREETER_FROM_SIBLING = """
    from greeting import WORD
    from ufop_sdk import Processor


    class Greet(Processor):
        route = r"greet"

        def process(self, req):
            return WORD
"""

GREETER_FROM_ENVIRONMENT = """
    import os

    from ufop_sdk import Processor


    class Greet(Processor):
        route = r"greet"

        def process(self, req):
            return os.environ.get("GREETING", "unset")
"""

FAILING = """
    from ufop_sdk import Processor


    class Boom(Processor):
        route = r"boom"

        def process(self, req):
            raise RuntimeError("the processor broke")


    class Copy(Processor):
        route = r"copy"

        def process(self, req):
            return req.buffer.read(), "application/octet-stream"
"""


def save(path, text):
    """Write `text` (dedented) to `path` whole, as an editor's save does (a file beside it, renamed
    over it): a worker starting for the last reload never reads it half-written. Returns the
    ``time.monotonic()`` taken just before."""
    began = time.monotonic()
    partial = path.with_name(f".{path.name}.saving")
    partial.write_text(dedent(text), encoding="utf-8")
    os.replace(partial, path)
    return began


def reload_seconds(server, expected, since):
    """Seconds from `since` until ``t/greet`` answers 200 `expected`, polling every 20 ms."""
    seconds, _, _ = first_answer(server, "t/greet", lambda status, body: (status, body) == (200, expected),
                                 since=since, within=WAIT_SECONDS)
    print(f"reload latency: {seconds:.3f}s")
    return seconds


def first_error(server, cmd="t/greet"):
    """The first answer to `cmd` that is not a 200, as (status, parsed JSON body)."""
    _, status, body = first_answer(server, cmd, lambda status, body: status != 200,
                                   since=time.monotonic(), within=WAIT_SECONDS)
    return status, json.loads(body)


def health_problem(server, part):
    """What /health says is wrong with `part` ("project", "workers", a processor); "" if nothing."""
    return server.health()[1].get("problems", {}).get(part, "")


def wait_for_every_worker(server):
    """Wait until every worker has started, so that a reload is measured from the save.

    A worker still starting when a file is saved would load the new file and
    answer before the reloader has even seen the change.
    """

    def every_worker_ready():
        status, health = server.health()
        return status == 200 and health["workers"] == health["size"]

    server.wait_until(every_worker_ready, WAIT_SECONDS, "every worker to be ready")


def test_an_edit_to_processors_py_is_served_within_5_seconds(make_project):
    project = make_project(GREETER.format(word="v1"))
    with Server(project, command="dev") as server:
        wait_for_every_worker(server)
        assert server.post("t/greet")[::2] == (200, b"v1")
        since = save(project / "processors.py", GREETER.format(word="v2"))
        assert reload_seconds(server, b"v2", since) < RELOAD_SECONDS
        wait_for_every_worker(server)
        since = save(project / "processors.py", GREETER.format(word="version 3"))
        assert reload_seconds(server, b"version 3", since) < RELOAD_SECONDS


def test_two_saves_within_one_second_are_both_served(make_project):
    # Python's bytecode cache checks a source's size and its mtime in whole
    # seconds: a same-size save within the second of the last import must
    # still not be served from a stale .pyc. This test environment sets
    # PYTHONDONTWRITEBYTECODE; a user's shell usually does not, so clear it.
    project = make_project(GREETER.format(word="v1"))
    source = project / "processors.py"
    with Server(project, command="dev", env={"PYTHONDONTWRITEBYTECODE": ""}) as server:
        wait_for_every_worker(server)
        time.sleep(1.02 - time.time() % 1)  # both saves below fall in this fresh second
        since = save(source, GREETER.format(word="v2"))
        v2_saved_at = source.stat().st_mtime
        assert reload_seconds(server, b"v2", since) < RELOAD_SECONDS
        since = save(source, GREETER.format(word="v3"))
        assert int(source.stat().st_mtime) == int(v2_saved_at), "the saves were meant to share a second"
        assert reload_seconds(server, b"v3", since) < RELOAD_SECONDS


def test_an_edit_to_a_sibling_module_is_served(make_project):
    project = make_project(GREETER_FROM_SIBLING, greeting="WORD = 'v1'\n")
    with Server(project, command="dev") as server:
        wait_for_every_worker(server)
        assert server.post("t/greet")[::2] == (200, b"v1")
        since = save(project / "greeting.py", "WORD = 'v2'\n")
        assert reload_seconds(server, b"v2", since) < RELOAD_SECONDS


def test_an_edit_to_dot_env_reaches_the_workers_environment(make_project):
    project = make_project(GREETER_FROM_ENVIRONMENT, env="GREETING=hi\n")
    with Server(project, command="dev") as server:
        wait_for_every_worker(server)
        assert server.post("t/greet")[::2] == (200, b"hi")
        since = save(project / ".env", "GREETING=hello\n")
        assert reload_seconds(server, b"hello", since) < RELOAD_SECONDS


@pytest.mark.expect_traceback
def test_a_syntax_error_is_answered_as_a_500_with_its_traceback_until_fixed(make_project):
    project = make_project(GREETER.format(word="v1"))
    with Server(project, command="dev") as server:
        wait_for_every_worker(server)
        save(project / "processors.py", "from ufop_sdk import Processor\n\nclass Greet(Processor:\n")
        status, error = first_error(server)
        assert status == 500
        assert "SyntaxError" in error["error"]
        assert "SyntaxError" in error["traceback"] and "processors.py" in error["traceback"]
        assert server.health()[0] == 503 and "SyntaxError" in health_problem(server, "project")
        assert server.process.poll() is None

        since = save(project / "processors.py", GREETER.format(word="fixed"))
        assert reload_seconds(server, b"fixed", since) < RELOAD_SECONDS
        assert server.health()[0] == 200


@pytest.mark.expect_traceback
def test_an_import_error_at_startup_is_served_as_a_500_until_fixed(make_project):
    project = make_project("import a_module_that_is_not_there\n" + dedent(GREETER.format(word="v1")))
    with Server(project, command="dev", wait_healthy=False) as server:
        status, error = first_error(server)
        assert status == 500
        assert "ModuleNotFoundError" in error["error"]
        assert "a_module_that_is_not_there" in error["traceback"]
        server.wait_until(lambda: "cannot load the project" in health_problem(server, "workers"),
                          WAIT_SECONDS, "/health to report that no worker can load the project")
        assert server.health()[0] == 503
        # A person reads the error before fixing it; the pool keeps retrying its
        # workers meanwhile, and the fix must still be served within a second.
        time.sleep(2)

        since = save(project / "processors.py", GREETER.format(word="fixed"))
        assert reload_seconds(server, b"fixed", since) < RELOAD_SECONDS
        assert server.health()[0] == 200


@pytest.mark.parametrize("command, shows_traceback", [("dev", True), ("serve", False)])
@pytest.mark.expect_traceback  # the processor raises on purpose; the log shows it in both
def test_a_processor_exception_carries_its_traceback_in_dev_only(make_project, command, shows_traceback):
    with Server(make_project(FAILING), command=command) as server:
        status, _, body = server.post("t/boom")
        error = json.loads(body)
        assert status == 500 and error["error"] == "internal error in processor 'Boom'"
        assert ("traceback" in error) is shows_traceback
        if shows_traceback:
            assert "RuntimeError: the processor broke" in error["traceback"]
        else:
            assert "the processor broke" not in body.decode()


@pytest.mark.parametrize("command, expected_status", [("dev", 200), ("serve", 403)])
def test_dev_fetches_loopback_sources_that_serve_refuses(make_project, command, expected_status):
    source = b"bytes from a loopback origin"
    with Origin() as origin, Server(make_project(FAILING), command=command) as server:
        origin.serve("/source.bin", source, content_type="application/octet-stream")
        status, _, body = server.post("t/copy", url=origin.url("/source.bin"))
    assert status == expected_status
    if status == 200:
        assert body == source
    else:
        assert "127.0.0.1" in json.loads(body)["error"]


def test_dev_help_lists_its_options():
    result = run_cli("dev", "--help")
    assert result.returncode == 0, result.stderr
    help_text = result.stdout.decode()
    for option in ("--port", "--project", "--app"):
        assert option in help_text
