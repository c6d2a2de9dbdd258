"""url mode over real HTTP: fetching from a local origin within limits, and the SSRF guard."""

import gzip
import json
import os
import socket
import threading
import time

import pytest
from support import PROJECTS, Origin, Server, free_port, open_files, post_concurrently

SERVER = PROJECTS / "server"
MAX_SOURCE = 3 << 20  # over the 1 MiB a spool keeps in memory, so large sources go to disk


@pytest.fixture(scope="module")
def origin():
    with Origin() as origin:
        yield origin


@pytest.fixture(scope="module")
def spool_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("spool")


@pytest.fixture(scope="module")
def server(spool_dir):
    """A server that may fetch from loopback (UFOP_BLOCKED_NETWORKS=none)."""
    env = {"UFOP_BLOCKED_NETWORKS": "none", "UFOP_FETCH_TIMEOUT": "1",
           "UFOP_MAX_SOURCE_BYTES": str(MAX_SOURCE), "UFOP_SPOOL_DIR": str(spool_dir)}
    with Server(SERVER, "--host", "127.0.0.1", env=env) as server:
        yield server


def error_of(body):
    return json.loads(body)["error"]


# Fetching.

def test_the_url_wins_over_the_body(server, origin):
    origin.serve("/wins.txt", b"from the origin", content_type="text/plain")
    status, _, body = server.post("t/echo", b"from the body", url=origin.url("/wins.txt"))
    assert (status, body) == (200, b"from the origin")


@pytest.mark.parametrize("host", ["photos.localhost", "A.B.LocalHost."])
def test_a_name_under_localhost_is_the_loopback_though_the_system_resolver_knows_it_not(server, origin,
                                                                                      host):
    # RFC 6761: glibc's resolver answers nothing for these names (dev serves its second bucket so)
    with pytest.raises(OSError):
        socket.getaddrinfo(host, origin.port)
    origin.serve("/named.txt", b"from the loopback")
    status, _, body = server.post("t/echo", url=f"http://{host}:{origin.port}/named.txt")
    assert (status, body) == (200, b"from the loopback")


def test_the_request_sees_the_url_as_received_and_the_origin_content_type(server, origin, png):
    origin.serve("/picture", png, content_type="image/x-declared")
    url = origin.url("/picture") + "?a=1&b=%20x"
    origin.serve("/picture?a=1&b=%20x", png, content_type="image/x-declared")
    status, _, body = server.post("t/describe", url=url)
    assert status == 200
    described = json.loads(body)
    assert described["url"] == url
    assert described["declared_content_type"] == "image/x-declared"
    assert (described["content_type"], described["size"]) == ("image/png", len(png))


def test_a_large_source_arrives_whole_through_the_disk_spool(server, origin):
    data = os.urandom(2 << 20)
    origin.serve("/large.bin", data, framing="chunked")
    status, _, body = server.post("t/echo", url=origin.url("/large.bin"))
    assert status == 200 and body == data


def test_a_source_of_exactly_the_limit_is_fetched(server, origin):
    origin.serve("/limit.bin", b"\0" * MAX_SOURCE)
    status, _, body = server.post("t/describe", url=origin.url("/limit.bin"))
    assert status == 200 and json.loads(body)["size"] == MAX_SOURCE


def test_concurrent_fetches_each_get_their_own_source(server, origin):
    for number in range(20):
        origin.serve(f"/many/{number}", f"source {number}".encode() * (number + 1), delay=0.1)
    answers = post_concurrently(server, [("t/echo", origin.url(f"/many/{number}")) for number in range(20)],
                                as_url=True)
    assert [(status, body) for status, _, body in answers] == \
        [(200, f"source {number}".encode() * (number + 1)) for number in range(20)]


def test_a_fetch_is_timed_in_the_metrics(server, origin):
    def fetch_count():
        text = server.request("GET", "/metrics")[2].decode()
        return float(next(line.split()[-1] for line in text.splitlines()
                          if line.startswith('ufop_request_seconds_count{stage="fetch"}')))

    origin.serve("/timed.txt", b"timed")
    before = fetch_count()
    assert server.post("t/echo", url=origin.url("/timed.txt"))[0] == 200
    assert fetch_count() == before + 1


# Fetch failures.

def test_an_origin_404_is_a_502_naming_the_status(server, origin):
    status, _, body = server.post("t/echo", url=origin.url("/not/there"))
    assert status == 502
    assert "404" in error_of(body)


def test_an_origin_500_is_a_502_naming_the_status(server, origin):
    origin.serve("/broken", b"oops", status=500)
    status, _, body = server.post("t/echo", url=origin.url("/broken"))
    assert status == 502 and "500" in error_of(body)


def test_a_refused_connection_is_a_502(server):
    status, _, body = server.post("t/echo", url=f"http://127.0.0.1:{free_port()}/x")
    assert status == 502
    assert "127.0.0.1" in error_of(body)


def test_a_slow_origin_is_a_504_after_the_fetch_timeout(server, origin):
    origin.serve("/slow", b"late", delay=30)
    began = time.monotonic()
    status, _, body = server.post("t/echo", url=origin.url("/slow"), timeout=40)
    assert status == 504 and "1s" in error_of(body)
    assert 0.8 < time.monotonic() - began < 10


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_a_source_over_the_limit_is_413(server, origin, framing):
    origin.serve(f"/huge-{framing}", b"\0" * (MAX_SOURCE + 1), framing=framing)
    status, _, body = server.post("t/echo", url=origin.url(f"/huge-{framing}"))
    assert status == 413, body
    assert str(MAX_SOURCE) in error_of(body)


def test_a_source_over_the_limit_behind_a_short_content_length_is_413_or_refused(server, origin):
    """An origin that lies low about its length: only the bytes it declared may be used."""
    origin.answers["/liar"] = lambda handler: (
        handler.send_response(200), handler.send_header("Content-Length", "5"), handler.end_headers(),
        handler.wfile.write(b"\0" * (MAX_SOURCE + 1)))
    status, _, body = server.post("t/describe", url=origin.url("/liar"))
    assert status == 413 or (status == 200 and json.loads(body)["size"] == 5), (status, body[:200])


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/file", "file:///etc/passwd", "gopher://127.0.0.1/",
                                 "http:///no-host", "not a url"])
def test_a_url_that_is_not_http_is_400(server, url):
    status, _, body = server.post("t/echo", url=url)
    assert status == 400
    assert "http" in error_of(body)


# Redirects.

def redirect_chain(origin, name, hops):
    """/<name>/<hops> redirects to /<name>/<hops - 1> ... /<name>/0, which answers."""
    origin.serve(f"/{name}/0", b"arrived", content_type="text/plain")
    for hop in range(1, hops + 1):
        origin.redirect(f"/{name}/{hop}", f"/{name}/{hop - 1}", status=(301, 302, 303, 307, 308)[hop % 5])
    return origin.url(f"/{name}/{hops}")


def test_three_redirects_are_followed(server, origin):
    url = redirect_chain(origin, "three", 3)
    status, _, body = server.post("t/describe", url=url)
    assert status == 200
    described = json.loads(body)
    assert described["url"] == url and described["size"] == len(b"arrived")
    assert described["declared_content_type"] == "text/plain"


def test_four_redirects_are_a_502(server, origin):
    status, _, body = server.post("t/echo", url=redirect_chain(origin, "four", 4))
    assert status == 502
    assert "redirect" in error_of(body)


def test_a_redirect_to_an_absolute_url_is_followed(server, origin):
    origin.serve("/target", b"absolute")
    origin.redirect("/absolute", origin.url("/target"))
    assert server.post("t/echo", url=origin.url("/absolute"))[::2] == (200, b"absolute")


# The SSRF guard with serve's defaults.

@pytest.fixture(scope="module")
def guarded_server():
    """serve as deployed: UFOP_BLOCKED_NETWORKS unset."""
    with Server(SERVER, "--host", "127.0.0.1", env={"UFOP_FETCH_TIMEOUT": "3"}) as server:
        yield server


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "169.254.169.254", "0.0.0.0",
                                  "2130706433", "0x7f.1", "127.1", "0177.0.0.1", "[::ffff:127.0.0.1]",
                                  "[::]", "[0:0:0:0:0:0:0:1]", "LOCALHOST", "bucket.localhost"])
def test_serve_refuses_internal_addresses_by_default(guarded_server, origin, host):
    origin.serve("/secret", b"internal data")
    asked = len(origin.requests)
    status, _, body = guarded_server.post("t/echo", url=f"http://{host}:{origin.port}/secret")
    assert status == 403, body
    assert host.strip("[]").lower() in error_of(body).lower()
    assert len(origin.requests) == asked


def test_serve_refuses_a_redirect_to_an_internal_address(origin):
    origin.serve("/internal", b"internal data")
    origin.redirect("/outward", f"http://127.0.0.2:{origin.port}/internal")
    with Server(SERVER, "--host", "127.0.0.1", env={"UFOP_BLOCKED_NETWORKS": "127.0.0.2/32"}) as server:
        status, _, body = server.post("t/echo", url=origin.url("/outward"))
        assert status == 403, body
        assert "127.0.0.2" in error_of(body)
        assert server.post("t/echo", url=origin.url("/internal"))[::2] == (200, b"internal data")


@pytest.mark.parametrize("value", ["default", "default,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16"])
def test_blocked_networks_naming_default_keeps_the_default_list(origin, value):
    origin.serve("/kept", b"internal data")
    with Server(SERVER, "--host", "127.0.0.1", env={"UFOP_BLOCKED_NETWORKS": value}) as server:
        status, _, body = server.post("t/echo", url=origin.url("/kept"))
    assert status == 403 and "blocked address" in error_of(body)


def test_an_empty_blocked_networks_blocks_nothing_and_warns_to_say_none(origin):
    origin.serve("/empty", b"fetched")
    with Server(SERVER, "--host", "127.0.0.1", env={"UFOP_BLOCKED_NETWORKS": ""}) as server:
        assert server.post("t/echo", url=origin.url("/empty"))[::2] == (200, b"fetched")
        warnings = [line for line in server.output().splitlines() if "UFOP_BLOCKED_NETWORKS is empty" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0] and "'none'" in warnings[0], warnings


# Allowed host names.

@pytest.fixture(scope="module")
def restricted_server():
    env = {"UFOP_BLOCKED_NETWORKS": "127.0.0.2/32", "UFOP_ALLOWED_SOURCE_HOSTS": "127.0.0.1, *.localhost"}
    with Server(SERVER, "--host", "127.0.0.1", env=env) as server:
        yield server


def test_an_allowed_host_is_fetched(restricted_server, origin):
    origin.serve("/allowed", b"allowed")
    assert restricted_server.post("t/echo", url=origin.url("/allowed"))[::2] == (200, b"allowed")


# Only names that resolve on this machine, and IP literals: nothing here may reach the network.
@pytest.mark.parametrize("host", ["localhost", "LocalHost", "127.0.0.3", "2130706433"])
def test_a_host_not_allowed_is_403_naming_it(restricted_server, origin, host):
    status, _, body = restricted_server.post("t/echo", url=f"http://{host}:{origin.port}/allowed")
    assert status == 403
    assert host.lower() in error_of(body).lower()
    assert "UFOP_ALLOWED_SOURCE_HOSTS" in error_of(body)


def test_a_redirect_to_a_host_not_allowed_is_403(restricted_server, origin):
    origin.redirect("/to-localhost", f"http://localhost:{origin.port}/allowed")
    status, _, body = restricted_server.post("t/echo", url=origin.url("/to-localhost"))
    assert status == 403 and "localhost" in error_of(body)


# Compressed sources, redirects out of bounds, the deadline across hops, a client that leaves.

def test_a_gzip_encoded_source_arrives_decompressed(server, origin):
    origin.serve("/gzipped", gzip.compress(b"plain text " * 1000), headers={"Content-Encoding": "gzip"})
    assert server.post("t/echo", url=origin.url("/gzipped"))[::2] == (200, b"plain text " * 1000)


def test_a_gzip_bomb_is_413_on_the_bytes_it_expands_to(server, origin):
    bomb = gzip.compress(b"\0" * (4 * MAX_SOURCE))
    assert len(bomb) < MAX_SOURCE
    origin.serve("/bomb", bomb, headers={"Content-Encoding": "gzip"})
    status, _, body = server.post("t/echo", url=origin.url("/bomb"))
    assert status == 413, body[:200]


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/x"])
def test_a_redirect_out_of_http_is_the_sources_fault_a_502(server, origin, location):
    origin.redirect("/to-" + location.split(":")[0], location)
    status, _, body = server.post("t/echo", url=origin.url("/to-" + location.split(":")[0]))
    assert status == 502 and location in error_of(body)


def test_the_fetch_timeout_covers_every_redirect_hop(server, origin):
    origin.serve("/late/0", b"late", delay=0.4)
    origin.answers["/late/1"] = lambda handler: (origin.closing.wait(0.4), handler.send_response(302),
                                                 handler.send_header("Location", "/late/0"),
                                                 handler.send_header("Content-Length", "0"),
                                                 handler.end_headers())
    origin.answers["/late/2"] = lambda handler: (origin.closing.wait(0.4), handler.send_response(302),
                                                 handler.send_header("Location", "/late/1"),
                                                 handler.send_header("Content-Length", "0"),
                                                 handler.end_headers())
    began = time.monotonic()
    status, _, body = server.post("t/echo", url=origin.url("/late/2"), timeout=10)
    assert status == 504, body  # each hop is under the 1 s timeout: only the whole chain is over it
    assert time.monotonic() - began < 5


def spooled(server, spool_dir):
    """The server's descriptors on files in `spool_dir` (unnamed temporary files included)."""
    return [target for target in open_files(server.process.pid) if target.startswith(str(spool_dir))]


def test_a_large_source_is_spooled_while_it_is_processed_then_released(server, origin, spool_dir):
    origin.serve("/to-process", os.urandom(2 << 20))
    url = origin.url("/to-process")
    answer = []
    sender = threading.Thread(target=lambda: answer.append(server.post("t/sleep/1", url=url)))
    sender.start()
    try:
        server.wait_until(lambda: spooled(server, spool_dir), 5, f"the source spooled under {spool_dir}")
    finally:
        sender.join(15)
    assert answer and answer[0][0] == 200
    server.wait_until(lambda: not spooled(server, spool_dir), 10, "the spool to be closed")


def test_a_client_leaving_during_a_fetch_leaves_the_server_well(server, origin, spool_dir):
    origin.serve("/slowish", os.urandom(2 << 20), delay=0.6)
    with pytest.raises(TimeoutError):
        server.post("t/echo", url=origin.url("/slowish"), timeout=0.2)
    server.wait_until(lambda: origin.requests.count("/slowish") == 1, 10, "the fetch to start")
    time.sleep(0.8)  # the fetch ends and the request finishes with nobody to answer
    assert server.post("t/echo", b"still fine")[::2] == (200, b"still fine")
    status, payload = server.health()
    assert status == 200 and payload["busy"] == 0 and payload["pending"] == 0
    assert spooled(server, spool_dir) == []
