"""Celery mode as one ufop among others: its .env reaches the workers, its name keeps its requests its own."""

import contextlib
import textwrap

from redis_support import Worker
from support import Server

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
