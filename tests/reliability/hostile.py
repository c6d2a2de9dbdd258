"""Hostile inputs the security suites share: a secret to steal, internal addresses in every spelling,
a pickle that runs a command when loaded, and the check that an error answer leaks nothing."""

import base64
import ipaddress
import json
import os
import socket
import uuid
from pathlib import Path

from harness import assert_no_leak, record
from support import post_concurrently

SECRET = b"TOP-SECRET internal data"


def error_of(status, headers, body):
    """The public message of a JSON error answer, checked for shape and leaks."""
    assert headers["Content-Type"] == "application/json", headers
    payload = json.loads(body)
    assert set(payload) == {"error", "request_id"}, payload
    assert payload["request_id"] == headers["X-Request-Id"], payload
    assert_no_leak(body.decode())
    return payload["error"]


def loopback_names():
    """Host names that resolve here, and only to loopback: /etc/hosts' and this machine's own name."""
    names = {"localhost", "LocalHost", socket.gethostname()}
    for line in Path("/etc/hosts").read_text().splitlines():
        address, *aliases = line.split("#")[0].split() or [""]
        if address and ipaddress.ip_address(address).is_loopback:
            names.update(aliases)
    return sorted(name for name in names if _resolves_only_to_loopback(name))


def _resolves_only_to_loopback(name):
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, 80, proto=socket.IPPROTO_TCP)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


INTERNAL_HOSTS = [
    "127.0.0.1", "127.0.0.2", "127.255.255.254", "[::1]", "[0:0:0:0:0:0:0:1]",
    "169.254.169.254", "169.254.0.1", "0.0.0.0", "0", "[::]",
    "2130706433", "017700000001", "0x7f000001", "0177.0.0.1", "0x7f.0.0.1", "127.000.000.001",
    "127.1", "127.0.1",
    "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[0:0:0:0:0:ffff:127.0.0.1]", "[::ffff:169.254.169.254]",
    "[::ffff:0.0.0.0]", "[fe80::1]",
    *loopback_names(),
]


def assert_every_internal_address_refused(server, origin, name):
    """POST t/echo with `origin`'s /secret under each spelling of INTERNAL_HOSTS: each must be 403,
    and `origin` never asked. What each got is recorded under `name` in security.json."""
    asked = len(origin.requests)
    urls = [f"http://{host}:{origin.port}/secret" for host in INTERNAL_HOSTS]
    answers = post_concurrently(server, [("t/echo", url) for url in urls], timeout=15, as_url=True)
    got = {host: status for host, (status, _, _) in zip(INTERNAL_HOSTS, answers, strict=True)}
    record("security", {name: got})
    for host, (status, headers, body) in zip(INTERNAL_HOSTS, answers, strict=True):
        assert SECRET not in body, host
        assert status == 403, (host, status, body[:300])
        assert "blocked address" in error_of(status, headers, body), host
    assert len(origin.requests) == asked, "the internal origin was reached"


class Exploit:
    """Unpickling it runs a shell command that leaves a file; pickling it runs nothing."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def celery_message(task, content_type, body):
    """A Celery protocol 2 message as kombu's Redis transport stores it, with `body` in `content_type`."""
    task_id = str(uuid.uuid4())
    return json.dumps({
        "body": base64.b64encode(body).decode(), "content-encoding": "binary", "content-type": content_type,
        "headers": {"lang": "py", "task": task, "id": task_id, "root_id": task_id, "parent_id": None,
                    "group": None, "retries": 0, "eta": None, "expires": None, "timelimit": [None, None],
                    "argsrepr": "()", "kwargsrepr": "{}", "origin": "attacker"},
        "properties": {"correlation_id": task_id, "reply_to": "", "delivery_mode": 2, "priority": 0,
                       "delivery_info": {"exchange": "", "routing_key": "ufop"}, "body_encoding": "base64",
                       "delivery_tag": str(uuid.uuid4())},
    })
