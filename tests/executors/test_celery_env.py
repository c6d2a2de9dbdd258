"""Celery mode as one ufop among others: its .env reaches the workers, its name keeps its requests its own."""

import contextlib
import json
import textwrap
import time

from redis_support import Worker
from support import Origin, Server

PROCESSORS = textwrap.dedent("""
    import os

    from ufop_sdk import Processor


    class Variable(Processor):
        \"\"\"Answers an environment variable as the processor sees it when it runs.\"\"\"

        route = r"variable/(?P<name>[A-Z_]+)"

        def process(self, req):
            return os.environ.get(req.args["name"], "<unset>")
""")


def test_a_processor_on_a_celery_worker_reads_a_variable_set_only_in_dotenv(redis_server, tmp_path):
    (tmp_path / "processors.py").write_text(PROCESSORS)
    (tmp_path / ".env").write_text("GREETING=from-dotenv\n")
    url = redis_server.url(4)
    celery_mode = {"UFOP_BROKER_URL": url}
    with Worker(tmp_path, url), Server(tmp_path, "--host", "127.0.0.1", env=celery_mode) as server:
        status, _, body = server.post("t/variable/GREETING", timeout=20)
    assert (status, body) == (200, b"from-dotenv")


SAME_CLASS_NAME = textwrap.dedent("""
    from ufop_sdk import Processor


    class Who(Processor):
        route = r"who"

        def process(self, req):
            return {answer!r}
""")


def test_two_ufops_sharing_a_redis_database_never_take_each_others_requests(redis_server, tmp_path):
    """Each has a processor class of the same name; UFOP_NAME keeps their queues and keys apart."""
    url, stack = redis_server.url(5), contextlib.ExitStack()
    servers = {}
    with stack:
        for name in ("alpha-ufop", "beta-ufop"):
            folder = tmp_path / name
            folder.mkdir()
            (folder / "processors.py").write_text(SAME_CLASS_NAME.format(answer=name))
            env = {"UFOP_BROKER_URL": url, "UFOP_NAME": name}
            stack.enter_context(Worker(folder, url, env=env))
            servers[name] = stack.enter_context(Server(folder, "--host", "127.0.0.1", env=env))
        answers = {name: {server.post(f"{name}/who", timeout=20)[2] for _ in range(20)}
                   for name, server in servers.items()}
    assert answers == {"alpha-ufop": {b"alpha-ufop"}, "beta-ufop": {b"beta-ufop"}}


QUICK = textwrap.dedent("""
    import time

    from ufop_sdk import Processor


    class Quick(Processor):
        \"\"\"Two seconds to run; its source may take longer to arrive.\"\"\"

        route = r"quick(?:/(?P<sleep>[0-9.]+))?"
        timeout = 2

        def process(self, req):
            time.sleep(float(req.args.get("sleep", 0)))
            return req.buffer.read()
""")


@contextlib.contextmanager
def quick_on_a_worker(redis_server, folder, db):
    """An origin, and the Quick project served in Celery mode with a 10 s UFOP_FETCH_TIMEOUT."""
    (folder / "processors.py").write_text(QUICK)
    url = redis_server.url(db)
    env = {"UFOP_BROKER_URL": url, "UFOP_BLOCKED_NETWORKS": "none", "UFOP_FETCH_TIMEOUT": "10"}
    with Origin() as origin, Worker(folder, url, env=env), \
            Server(folder, "--host", "127.0.0.1", env=env) as server:
        yield origin, server


def test_the_source_fetch_does_not_count_against_the_processors_timeout_on_a_worker(redis_server, tmp_path):
    """The same rule as serve's local workers: the fetch has UFOP_FETCH_TIMEOUT, the processor its timeout."""
    with quick_on_a_worker(redis_server, tmp_path, 6) as (origin, server):
        origin.serve("/slow", b"worth the wait", delay=3.5)
        status, _, body = server.post("t/quick", url=origin.url("/slow"), timeout=30)
    assert (status, body) == (200, b"worth the wait")


def test_a_processor_running_past_its_timeout_after_a_fetch_is_504_at_its_own_timeout(redis_server, tmp_path):
    """Not at the task's soft limit, which also covers UFOP_FETCH_TIMEOUT (10 s here)."""
    with quick_on_a_worker(redis_server, tmp_path, 7) as (origin, server):
        origin.serve("/source", b"x", delay=0.5)
        began = time.monotonic()
        status, _, body = server.post("t/quick/8", url=origin.url("/source"), timeout=30)
        elapsed = time.monotonic() - began
    assert status == 504, body
    assert "timeout of 2s" in json.loads(body)["error"]
    assert elapsed < 7, f"answered after {elapsed:.1f} s, not at the processor's own 2 s"
