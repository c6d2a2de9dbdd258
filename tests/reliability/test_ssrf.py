"""The SSRF guard in `serve` as deployed: every spelling of an internal address is refused, and so is
a redirect to one. What each got goes to test-artifacts/reliability/security.json."""

import urllib.request

import pytest
from harness import PROJECT, record
from hostile import SECRET, assert_every_internal_address_refused, error_of
from support import Origin, Server, post_concurrently

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def secret_origin():
    """What an attacker is after: an internal service on loopback."""
    with Origin() as origin:
        origin.serve("/secret", SECRET)
        yield origin


@pytest.fixture(scope="module")
def embedded():
    """serve as deployed: UFOP_BLOCKED_NETWORKS unset."""
    with Server(PROJECT, "--host", "127.0.0.1", env={"UFOP_FETCH_TIMEOUT": "3"}) as server:
        yield server


def test_every_form_of_an_internal_address_is_refused(embedded, secret_origin):
    assert_every_internal_address_refused(embedded, secret_origin, "ssrf_refused_in_serve")


@pytest.fixture(scope="module")
def internal_origin():
    """An internal service on 127.0.0.2, which the redirecting server below may not reach."""
    with Origin(host="127.0.0.2") as origin:
        origin.serve("/secret", SECRET)
        yield origin


@pytest.fixture(scope="module")
def redirecting():
    """A server that may fetch from 127.0.0.1 (the allowed origin) but not from 127.0.0.2."""
    with Server(PROJECT, "--host", "127.0.0.1", env={"UFOP_BLOCKED_NETWORKS": "127.0.0.2/32"}) as server:
        yield server


def test_a_redirect_to_an_internal_address_is_refused_in_every_form(redirecting, internal_origin):
    port = internal_origin.port
    with urllib.request.urlopen(internal_origin.url("/secret"), timeout=5) as reachable:
        assert reachable.read() == SECRET, "the internal origin must be reachable, or the test means nothing"
    targets = [f"http://127.0.0.2:{port}/secret", f"http://[::ffff:127.0.0.2]:{port}/secret",
               f"http://2130706434:{port}/secret", f"http://0x7f000002:{port}/secret",
               f"http://127.0.2:{port}/secret", f"//127.0.0.2:{port}/secret"]
    asked = len(internal_origin.requests)
    got = {}
    with Origin() as allowed:
        allowed.serve("/fine", b"fine")
        requests = [("t/echo", allowed.url("/fine"))]
        for number, target in enumerate(targets):
            for code in (301, 302, 303, 307, 308):
                allowed.redirect(f"/to/{number}/{code}", target, status=code)
                requests.append(("t/echo", allowed.url(f"/to/{number}/{code}")))
            allowed.redirect(f"/hop/{number}", f"/to/{number}/302")  # two hops: allowed, allowed, internal
            requests.append(("t/echo", allowed.url(f"/hop/{number}")))
        answers = post_concurrently(redirecting, requests, timeout=15, as_url=True)
    assert answers[0][::2] == (200, b"fine"), "fetching from the allowed origin works"
    for (_, url), (status, headers, body) in zip(requests[1:], answers[1:], strict=True):
        got[url.split("/", 3)[3]] = status
        assert SECRET not in body and status == 403, (url, status, body[:300])
        assert "127.0.0.2" in error_of(status, headers, body)
    assert len(internal_origin.requests) == asked, "the internal origin was reached"
    record("security", {"redirects_to_internal_refused": {"targets": targets, "answers": got}})
