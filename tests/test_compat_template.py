"""qiniu-ufop's own project template runs unchanged under serve, dev, test and worker, answering as it did.

tests/projects/template_0_1/app.py is ``qiniu_ufop/project/app.py`` of
github.com/Xavier-Lam/qiniu-ufop (the app its ``createproject`` wrote), byte
for byte. The answers expected are those of that project's
``ResultHandler.make_response`` (qiniu_ufop/web/result.py): a dict is
``json.dumps(value)`` with ``application/json; charset=utf-8``, a str is
``text/plain; charset=utf-8``, a Response is sent with its own status, headers
and Content-Type. Two documented deviations show here: the echoed bytes get a
sniffed content type (Tornado sent ``text/html``), and ``content_type`` is the
sniffed one when the request declared none.
"""

import contextlib
import json
from pathlib import Path

import pytest
from redis_support import Worker
from support import OLDER_JSON, PROJECTS, TEXT, Answer, Server, cli_answer, http_answer

TEMPLATE = PROJECTS / "template_0_1"
WORKER_LOG = Path("/var/log/worker/log")  # the absolute path the template's workerlog task reads
WORKER_LOG_TEXT = "worker started\n工作进程已启动\n"  # written there when the machine has no such file
READ_FROM_WORKER_LOG = object()  # an expected body: the worker log's text, whatever it holds here
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# params, body, declared Content-Type (None: none), and the Answer qiniu-ufop gave, its custom header
# being Content-Disposition.
CASES = [
    pytest.param("hello", b"", None, Answer(200, TEXT, None, b"hello world"), id="hello"),
    pytest.param("hello/bob", b"", None, Answer(200, TEXT, None, b"hello bob"), id="hello/bob"),
    pytest.param("json", PNG_SIGNATURE, "image/png",
                 Answer(200, OLDER_JSON, None,
                        b'{"msg": "this is a json response", "content_type": "image/png"}'), id="json"),
    pytest.param("workerlog", b"", None,
                 Answer(200, "text/plain", "attachment; filename=worker.log", READ_FROM_WORKER_LOG),
                 id="workerlog"),
    pytest.param("anything/else", b"echoed as it came\n", None,
                 Answer(200, "text/plain", None, b"echoed as it came\n"), id="echo"),
]


@pytest.fixture
def worker_log():
    """The text the workerlog task answers: the machine's /var/log/worker/log, or one written for the
    test (and removed after, with the folders made for it) when there is none."""
    if WORKER_LOG.exists():
        yield WORKER_LOG.read_text(encoding="utf-8").encode("utf-8")
        return
    made = [folder for folder in WORKER_LOG.parents if not folder.exists()]
    try:
        try:
            WORKER_LOG.parent.mkdir(parents=True, exist_ok=True)
            WORKER_LOG.write_text(WORKER_LOG_TEXT, encoding="utf-8")
        except OSError as exc:
            pytest.skip(f"this process cannot write {WORKER_LOG}, the absolute path the template's "
                        f"workerlog task reads: {exc}")
        yield WORKER_LOG_TEXT.encode("utf-8")
    finally:
        WORKER_LOG.unlink(missing_ok=True)
        for folder in made:  # the deepest first; those a failed mkdir did not make are gone already
            if folder.exists():
                folder.rmdir()


@contextlib.contextmanager
def template_served(mode, request):
    """The template behind real HTTP: ``serve``, ``dev``, or serve in Celery mode with a real worker."""
    if mode != "worker":
        with Server(TEMPLATE, "--app", "app", command=mode) as server:
            yield server
        return
    broker_url = request.getfixturevalue("redis_server").url()
    with Worker(TEMPLATE, broker_url, env={"UFOP_APP": "app"}), \
            Server(TEMPLATE, "--app", "app", env={"UFOP_BROKER_URL": broker_url}) as server:
        yield server


@pytest.fixture(scope="module", params=["serve", "dev", "test", "worker"])
def ask(request, tmp_path_factory):
    """``ask(params, body, declared)``: the Answer the template gives under one command, started once."""
    if request.param == "test":
        folder = tmp_path_factory.mktemp("cli")
        yield lambda params, body, declared: cli_answer(TEMPLATE, "app", params, body, declared, folder)
        return
    with template_served(request.param, request) as server:
        yield lambda params, body, declared: http_answer(server, params, body, declared,
                                                         header="Content-Disposition")


@pytest.mark.parametrize("params, body, declared, expected", CASES)
def test_the_template_answers_as_qiniu_ufop_did(ask, request, params, body, declared, expected):
    if expected.body is READ_FROM_WORKER_LOG:
        expected = expected._replace(body=request.getfixturevalue("worker_log"))
    if request.node.callspec.params["ask"] == "test":
        expected = expected._replace(custom=None)  # ufop-sdk test prints no headers
    assert ask(params, body, declared) == expected


def test_workerlog_without_its_file_is_a_json_500_naming_the_task_and_the_traceback_only_logged():
    if WORKER_LOG.exists():
        pytest.skip(f"{WORKER_LOG} exists on this machine, and is not the test's to remove")
    with Server(TEMPLATE, "--app", "app", expect_traceback=True) as server:
        status, headers, body = server.post("qiniu/workerlog")
        assert "FileNotFoundError" in server.output()
    assert (status, headers["Content-Type"]) == (500, "application/json")
    assert json.loads(body) == {"error": "internal error in processor 'workerlog'",
                                "request_id": headers["X-Request-Id"]}


def test_serve_takes_the_app_as_dash_a_as_qiniu_ufops_runserver_did():
    with Server(TEMPLATE, "-A", "app") as server:
        assert http_answer(server, "hello/bob") == Answer(200, TEXT, None, b"hello bob")
