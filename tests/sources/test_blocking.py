"""req.fetch and req.fetch_all in `serve` workers (real HTTP, a real server, real local origins),
then the same in Celery workers, `ufop-sdk test` and ufop_sdk.testing.run.

The server may fetch from 127.0.0.1 but not from 127.0.0.2 (UFOP_BLOCKED_NETWORKS=127.0.0.2/32),
though both hosts are allowed by name: the blocked address is refused whatever the host list says.
"""

import json
import time

import pytest
from redis_support import Worker
from support import PROJECTS, Origin, Server, run_cli

from ufop_sdk.testing import run

FETCHING = PROJECTS / "fetching"
GUARD = {"UFOP_BLOCKED_NETWORKS": "127.0.0.2/32", "UFOP_ALLOWED_SOURCE_HOSTS": "127.0.0.1,127.0.0.2",
         "UFOP_MAX_SOURCE_BYTES": "2MiB"}


@pytest.fixture(scope="module")
def server():
    with Server(FETCHING, "--host", "127.0.0.1", env=GUARD, workers=1) as server:
        yield server


@pytest.fixture
def origin():
    with Origin() as origin:
        yield origin


@pytest.fixture
def internal():
    """An origin on the blocked address."""
    with Origin(host="127.0.0.2") as origin:
        origin.serve("/secret.txt", b"internal", content_type="text/plain")
        yield origin


def lines(*urls):
    return "\n".join(urls).encode()


def error_of(body):
    return json.loads(body)["error"]


def test_fetch_gives_the_body_its_sniffed_and_declared_types_and_the_url_after_redirects(server, origin, png):
    origin.serve("/photo", png, content_type="application/octet-stream")
    origin.redirect("/moved", "/photo")
    status, _, body = server.post("t/fetch", lines(origin.url("/moved")))
    assert status == 200, body
    [fetched] = json.loads(body)
    assert fetched["url"] == origin.url("/photo")
    assert (fetched["size"], fetched["content_type"]) == (len(png), "image/png")
    assert fetched["declared_content_type"] == "application/octet-stream"
    assert (fetched["position"], fetched["seekable"]) == (0, True)


def test_a_fetch_larger_than_the_memory_spool_arrives_whole_from_disk(server, origin):
    data = bytes(range(256)) * 6000  # 1.5 MiB: past the spool's 1 MiB in memory, under the 2 MiB limit
    origin.serve("/large.bin", data)
    status, _, body = server.post("t/fetch", lines(origin.url("/large.bin")))
    assert status == 200, body
    assert json.loads(body)[0]["size"] == len(data)


def test_fetched_files_are_closed_when_the_request_ends(server, origin):
    origin.serve("/a.txt", b"a")
    origin.serve("/b.txt", b"b" * (3 << 19))  # 1.5 MiB: a file on disk
    assert server.post("t/keep", lines(origin.url("/a.txt"), origin.url("/b.txt")))[::2] == (200, b"kept")
    status, _, body = server.post("t/kept")
    assert (status, json.loads(body)) == (200, {"closed": [True, True]})


def test_an_origin_404_is_a_502_naming_the_url(server, origin):
    status, _, body = server.post("t/fetch", lines(origin.url("/missing.png")))
    assert status == 502
    assert origin.url("/missing.png") in error_of(body) and "404" in error_of(body)


def test_an_unreachable_origin_is_a_502_naming_the_url(server, origin):
    url = f"http://127.0.0.1:{origin.port}/gone"
    origin.__exit__(None, None, None)  # nothing listens there any more
    status, _, body = server.post("t/fetch", lines(url))
    assert status == 502
    assert url in error_of(body)


def test_a_fetch_over_ufop_max_source_bytes_is_413(server, origin):
    origin.serve("/huge.bin", b"x" * ((2 << 20) + 1))
    status, _, body = server.post("t/fetch", lines(origin.url("/huge.bin")))
    assert status == 413
    assert origin.url("/huge.bin") in error_of(body)


def test_a_fetch_over_its_own_max_bytes_is_413(server, origin):
    origin.serve("/small.bin", b"x" * 1001, framing="chunked")
    assert server.post("t/fetch/max/1001", lines(origin.url("/small.bin")))[0] == 200
    status, _, body = server.post("t/fetch/max/1000", lines(origin.url("/small.bin")))
    assert status == 413, body


def test_leaving_fetch_all_early_cancels_the_fetches_not_yet_read(server, origin):
    origin.serve("/first", b"first")
    for number in range(10):
        origin.serve(f"/slow{number}", b"late", delay=3)
    began = time.monotonic()
    urls = [origin.url("/first"), *(origin.url(f"/slow{number}") for number in range(10))]
    assert server.post("t/first_of", lines(*urls))[::2] == (200, b"first")
    assert time.monotonic() - began < 2.5, "the answer waited for fetches it did not read"
    assert len(origin.requests) <= 2, "with concurrency 1, at most one fetch runs ahead"


def test_a_fetch_past_its_own_timeout_is_504(server, origin):
    origin.serve("/slow", b"late", delay=5)
    began = time.monotonic()
    status, _, body = server.post("t/fetch/timeout/0.5", lines(origin.url("/slow")))
    assert status == 504 and origin.url("/slow") in error_of(body)
    assert time.monotonic() - began < 3


def test_a_processor_waiting_on_a_fetch_past_its_timeout_is_504(server, origin):
    origin.serve("/slow", b"late", delay=10)
    began = time.monotonic()
    status, _, body = server.post("t/fetch_past_timeout", lines(origin.url("/slow")))
    assert status == 504, body
    assert time.monotonic() - began < 5


def test_a_blocked_address_is_403_though_its_host_is_allowed(server, internal):
    status, _, body = server.post("t/fetch", lines(internal.url("/secret.txt")))
    assert status == 403
    assert "127.0.0.2" in error_of(body) and "UFOP_BLOCKED_NETWORKS" in error_of(body)
    assert internal.requests == []


def test_a_redirect_to_a_blocked_address_is_refused(server, origin, internal):
    origin.redirect("/outward", internal.url("/secret.txt"))
    status, _, body = server.post("t/fetch", lines(origin.url("/outward")))
    assert status == 403
    assert "127.0.0.2" in error_of(body)
    assert (origin.requests, internal.requests) == (["/outward"], [])


def test_a_host_not_allowed_is_403(server):
    status, _, body = server.post("t/fetch", lines("http://localhost:1/x"))
    assert status == 403
    assert "UFOP_ALLOWED_SOURCE_HOSTS" in error_of(body)


def test_fetch_all_of_100_origins_of_50_ms_each_is_in_order_and_far_faster_than_one_by_one(server, origin):
    urls = [origin.url(f"/{number}.txt") for number in range(100)]
    for number in range(100):
        origin.serve(f"/{number}.txt", str(number).encode() * (number + 1), delay=0.05)
    began = time.monotonic()
    status, _, body = server.post("t/fetch_all/8", lines(*urls))
    seconds = time.monotonic() - began
    assert status == 200, body
    answer = json.loads(body)
    assert answer["results"] == [[url, len(str(n)) * (n + 1)] for n, url in enumerate(urls)]
    # one by one the origins' delays alone add up to 5 s
    assert seconds < 2, f"100 fetches took {seconds:.2f}s (in the processor {answer['seconds']:.2f}s)"
    print(f"fetch_all of 100 x 50 ms: {answer['seconds']:.3f}s in the processor, {seconds:.3f}s the request")


def test_fetch_all_raises_the_first_failure_at_once_and_cancels_the_rest(server, origin):
    for number in range(20):
        origin.serve(f"/slow{number}", b"late", delay=3)
    urls = [origin.url("/missing"), *(origin.url(f"/slow{number}") for number in range(20))]
    began = time.monotonic()
    status, _, body = server.post("t/fetch_all/2", lines(*urls))
    assert status == 502 and origin.url("/missing") in error_of(body)
    assert time.monotonic() - began < 2.5, "the failure did not wait for the slow fetches"
    assert len(origin.requests) <= 4, "no fetch starts after the failure"


# The other paths: each gives its fetcher the project's settings.

def test_by_default_serve_workers_refuse_loopback_and_dev_workers_fetch_it(origin):
    origin.serve("/a.txt", b"hello")
    with Server(FETCHING, "--host", "127.0.0.1", workers=1) as server:
        status, _, body = server.post("t/fetch", lines(origin.url("/a.txt")))
        assert status == 403 and "127.0.0.1" in error_of(body)
    assert origin.requests == []
    with Server(FETCHING, command="dev", workers=1) as server:
        status, _, body = server.post("t/fetch", lines(origin.url("/a.txt")))
        assert status == 200 and json.loads(body)[0]["size"] == 5, body


def test_celery_workers_fetch_under_the_same_guard(redis_server, origin, internal, png):
    origin.serve("/photo", png, content_type="image/png")
    broker = {"UFOP_BROKER_URL": redis_server.url(0)}
    with Worker(FETCHING, redis_server.url(0), env=GUARD), \
            Server(FETCHING, "--host", "127.0.0.1", env={**GUARD, **broker}) as server:
        status, _, body = server.post("t/fetch", lines(origin.url("/photo")), timeout=15)
        assert status == 200, body
        assert (json.loads(body)[0]["size"], json.loads(body)[0]["content_type"]) == (len(png), "image/png")
        status, _, body = server.post("t/fetch_all/8", lines(*[origin.url("/photo")] * 3), timeout=15)
        assert (status, json.loads(body)["results"]) == (200, [[origin.url("/photo"), len(png)]] * 3)
        status, _, body = server.post("t/fetch", lines(internal.url("/secret.txt")), timeout=15)
        assert status == 403 and "127.0.0.2" in error_of(body)
        origin.serve("/slow", b"late", delay=10)
        began = time.monotonic()
        status, _, body = server.post("t/fetch_past_timeout", lines(origin.url("/slow")), timeout=15)
        assert status == 504 and time.monotonic() - began < 5, body
        assert server.post("t/fetch", lines(origin.url("/photo")), timeout=15)[0] == 200
    assert internal.requests == []


def test_ufop_sdk_test_fetches_under_the_project_settings(tmp_path, origin, internal):
    origin.serve("/a.txt", b"hello", content_type="text/plain")
    (tmp_path / "urls.txt").write_bytes(lines(origin.url("/a.txt")))
    (tmp_path / "blocked.txt").write_bytes(lines(internal.url("/secret.txt")))
    result = run_cli("test", tmp_path / "urls.txt", "fetch", "--project", FETCHING, env=GUARD)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["declared_content_type"] == "text/plain"
    result = run_cli("test", tmp_path / "blocked.txt", "fetch", "--project", FETCHING, env=GUARD)
    assert (result.returncode, result.stderr.split()[0]) == (1, b"403"), result.stderr
    assert internal.requests == []


def test_testing_run_fetches_under_the_project_settings(monkeypatch, origin, internal):
    for name, value in GUARD.items():
        monkeypatch.setenv(name, value)
    origin.serve("/a.txt", b"hello", content_type="text/plain")
    response = run("fetch", lines(origin.url("/a.txt")), project=FETCHING)
    assert response.status == 200, response.body
    assert json.loads(response.body)[0]["size"] == 5
    assert run("fetch", lines(internal.url("/secret.txt")), project=FETCHING).status == 403
    assert run("fetch", lines(origin.url("/gone")), project=FETCHING).status == 502
    assert internal.requests == []
