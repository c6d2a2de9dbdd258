"""A Celery worker gives processors the project's .env, as serve's local workers do."""

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
