"""The serve process: start-up, SIGTERM drain, a busy port, bad settings, the access log."""

import contextlib
import json
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from support import PROJECTS, Server, children_of, free_port, run_cli

SERVER = PROJECTS / "server"


def says_stopping(server):
    status, headers, body = server.request("GET", "/health", timeout=5)
    return status == 503 and json.loads(body)["status"] == "stopping" and headers["Connection"] == "close"


def test_sigterm_lets_requests_in_flight_finish_then_exits_0():
    server = Server(SERVER, "--host", "127.0.0.1", workers=2)
    with server:
        answers = []

        def send():
            answers.append(server.post("t/sleep/1.5", timeout=15))

        senders = [threading.Thread(target=send) for _ in range(3)]  # two run, one queues
        for sender in senders:
            sender.start()
        server.wait_until(lambda: server.health()[1]["pending"] == 3, 5, "three requests in")
        workers = children_of(server.process.pid)
        server.process.send_signal(signal.SIGTERM)
        server.wait_until(lambda: says_stopping(server), 2, "/health to say it is stopping")
        assert any(sender.is_alive() for sender in senders), "the requests were over before the check"
        for sender in senders:
            sender.join(20)
        assert [(status, body) for status, _, body in answers] == [(200, b"slept 1.5")] * 3
        assert server.process.wait(10) == 0
        output = server.output()
        server.wait_until(lambda: not any(map(is_running, workers)), 5, "the workers to stop")
    assert "Traceback" not in output, output


def read_answer(sock):
    """One HTTP answer from a raw socket: (status, headers, body); None if the server closed first."""
    received = b""
    while b"\r\n\r\n" not in received:
        piece = sock.recv(65536)
        if not piece:
            return None
        received += piece
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    while len(body) < int(headers.get("Content-Length", 0)):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


def closed_by_server(sock, within):
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_after_sigterm_clients_are_told_the_server_is_stopping():
    with Server(SERVER, "--host", "127.0.0.1", workers=1) as server:
        idle = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        idle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(idle)[0] == 200  # now an idle keep-alive connection
        in_flight = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        in_flight.sendall(b"POST /handler?cmd=t/sleep/1.5 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        server.wait_until(lambda: server.health()[1]["busy"] == 1, 5, "the worker to be busy")
        server.process.send_signal(signal.SIGTERM)
        server.wait_until(lambda: says_stopping(server), 2, "/health to say it is stopping")
        assert closed_by_server(idle, 2), "the idle keep-alive connection was left open"
        status, headers, body = server.post("t/echo", b"new work")
        assert (status, headers["Connection"]) == (503, "close")
        assert "stopping" in json.loads(body)["error"]
        status, headers, body = read_answer(in_flight)
        assert (status, body, headers["Connection"]) == (200, b"slept 1.5", "close")
        assert closed_by_server(in_flight, 2)
        assert server.process.wait(10) == 0
        idle.close()
        in_flight.close()


def is_running(pid):
    """True while `pid` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_past_the_grace_period_serve_exits_0_and_stops_its_workers():
    with Server(SERVER, "--host", "127.0.0.1", env={"UFOP_GRACE": "0.3"}, workers=1) as server:
        def send():
            with contextlib.suppress(OSError):  # cut off at the end of the grace period
                server.post("t/sleep/30", timeout=40, headers={"X-Request-Id": "cut-off"})

        sender = threading.Thread(target=send)
        sender.start()
        server.wait_until(lambda: server.health()[1]["busy"] == 1, 5, "the worker to be busy")
        workers = children_of(server.process.pid)
        began = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(10) == 0
        assert time.monotonic() - began < 10, "serve waited past its 0.3 s grace period"
        still_running = [pid for pid in workers if is_running(pid)]
        sender.join(10)
        assert still_running == [], "workers outlived the server"
        cut_off = [json.loads(line)["status"] for line in server.output().splitlines()
                   if '"request_id":"cut-off"' in line]
        assert cut_off == [503], "the request cut off by the stop is not logged 503"


def test_sigterm_with_nothing_in_flight_exits_0_at_once():
    with Server(SERVER, "--host", "127.0.0.1", workers=1) as server:
        began = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(20) == 0
        assert time.monotonic() - began < 10, "serve waited as if a request were in flight (grace 30 s)"


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A server logging to a folder, and how long it took to become healthy."""
    log_dir = tmp_path_factory.mktemp("logs")
    began = time.monotonic()
    with Server(SERVER, "--host", "127.0.0.1", env={"UFOP_LOG_DIR": str(log_dir)}, workers=2) as server:
        yield server, log_dir, time.monotonic() - began


def test_serve_is_healthy_within_10_seconds_of_start(logged):
    _, _, startup_seconds = logged
    assert startup_seconds < 10, startup_seconds


def test_the_log_dir_gets_one_json_line_per_request(logged):
    server, log_dir, _ = logged
    requests = {"log-echo": ("t/echo", b"hello", 200, "Echo"), "log-bad": ("t/fail/bad", b"abc", 400, "Fail"),
                "log-none": ("t/nothing", b"", 404, None)}
    for request_id, (cmd, body, status, _) in requests.items():
        assert server.post(cmd, body, headers={"X-Request-Id": request_id})[0] == status

    def access_lines():
        path = log_dir / "ufop.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [json.loads(line) for line in lines if line.startswith("{")]

    server.wait_until(lambda: {line["request_id"] for line in access_lines()} >= set(requests), 5,
                      "the access lines in the log file")
    lines = [line for line in access_lines() if line["request_id"] in requests]
    assert sorted(line["request_id"] for line in lines) == sorted(requests)
    for line in lines:
        cmd, body, status, processor = requests[line["request_id"]]
        assert (line["cmd"], line["status"], line["processor"] or None) == (cmd, status, processor)
        assert line["bytes_in"] == len(body) and line["bytes_out"] > 0
        assert line["ms"]["total"] >= 0
    echo = next(line for line in lines if line["request_id"] == "log-echo")
    assert echo["bytes_out"] == len(b"hello")
    assert {"queue", "process", "total"} <= set(echo["ms"])


def test_a_busy_port_exits_1_with_a_clear_message():
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = run_cli("serve", "--project", SERVER, "--host", "127.0.0.1", "--port", port, "--workers", 1,
                         timeout=20)
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert f"cannot serve on 127.0.0.1:{port}" in stderr
    assert "in use" in stderr.lower()
    assert "Traceback" not in stderr


@pytest.mark.parametrize("variable, value", [("UFOP_PORT", "abc"), ("UFOP_WORKERS", "0"),
                                             ("UFOP_MAX_BODY_BYTES", "lots"),
                                             ("UFOP_BLOCKED_NETWORKS", "10.0.0.0/33")])
def test_an_invalid_setting_exits_2_naming_it(variable, value):
    result = run_cli("serve", "--project", SERVER, "--host", "127.0.0.1", env={variable: value}, timeout=20)
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert variable in stderr and value in stderr
    assert "Traceback" not in stderr
