"""What processors log in worker processes: JSON lines with the request id, on stderr and in ufop.log."""

import json

import pytest
from support import PROJECTS, Server

POOL = PROJECTS / "pool"


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    log_dir, markers = tmp_path_factory.mktemp("logs"), tmp_path_factory.mktemp("markers")
    env = {"UFOP_LOG_DIR": str(log_dir), "MARKER_DIR": str(markers)}
    # t/talk logs an exception with its traceback on purpose
    with Server(POOL, "--host", "127.0.0.1", env=env, workers=1, expect_traceback=True) as server:
        yield server, log_dir / "ufop.log"


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def worker_lines(text, request_id):
    return {line["message"]: line for line in json_lines(text)
            if line.get("request_id") == request_id and "message" in line}


def talk(server, word, request_id):
    assert server.post(f"t/talk/{word}", headers={"X-Request-Id": request_id})[::2] == (200, b"talked")


def test_a_processors_log_lines_are_json_with_the_request_id_on_stderr_and_in_the_file(logged):
    server, log_file = logged
    talk(server, "hello", "talk-1")
    expected = {"info hello": "INFO", "warning hello": "WARNING", "exception hello": "ERROR"}
    server.wait_until(lambda: log_file.exists() and worker_lines(log_file.read_text(), "talk-1").keys()
                      >= expected.keys(), 5, "the worker's lines in ufop.log")
    for text in (log_file.read_text(), server.output()):
        lines = worker_lines(text, "talk-1")
        assert {message: lines[message]["level"] for message in expected} == expected
        assert all(line["logger"] == "processors" and line["pid"] != server.process.pid
                   for line in lines.values())
        assert "ValueError: oops hello" in lines["exception hello"]["exception"]


def test_after_the_log_file_is_moved_away_server_and_worker_lines_go_to_a_new_one(logged):
    server, log_file = logged
    talk(server, "before", "talk-before")
    server.wait_until(lambda: any(line.get("request_id") == "talk-before" and "status" in line
                                  for line in json_lines(log_file.read_text())), 5, "the access line")
    rotated = log_file.with_name("ufop.log.1")
    log_file.rename(rotated)
    talk(server, "after", "talk-after")

    def both_logged():
        lines = json_lines(log_file.read_text()) if log_file.exists() else []
        mine = [line for line in lines if line.get("request_id") == "talk-after"]
        return any("status" in line for line in mine) and any("message" in line for line in mine)

    server.wait_until(both_logged, 5, "the access and worker lines in a new ufop.log")
    assert "talk-after" not in rotated.read_text()
