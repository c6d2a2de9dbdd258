"""A first look at a real server: answers, errors and health over real HTTP."""

import json

from support import PROJECTS, Server


def test_serve_answers_health_echo_and_errors():
    with Server(PROJECTS / "server") as server:
        status, body = server.health()
        assert status == 200 and body["status"] == "ok"
        status, headers, body = server.post("t/echo", b"hello")
        assert (status, body) == (200, b"hello")
        assert headers["X-Request-Id"]
        status, headers, body = server.post("t/empty")
        assert status == 204 and body == b""
        status, _, body = server.post("t/nothing")
        assert status == 404 and "no processor matches" in json.loads(body)["error"]
