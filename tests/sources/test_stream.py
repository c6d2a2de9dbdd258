"""Streamed sources (``prefetch = False``) over real HTTP: a ``serve`` subprocess whose workers read
a local origin only as far as the processor reads, within the guard and limits of a source."""

import gzip
import hashlib
import json
import ssl
import subprocess
import time

import pytest
from support import PROJECTS, Origin, Server, open_files

STREAMED = PROJECTS / "streamed"
MAX_SOURCE = 3 << 20
LARGE = 64 << 20


@pytest.fixture(scope="module")
def origin():
    with Origin() as origin:
        yield origin


@pytest.fixture(scope="module")
def server():
    """One worker (so every request meets the same process), loopback allowed, a 1 s fetch timeout."""
    env = {"UFOP_BLOCKED_NETWORKS": "none", "UFOP_FETCH_TIMEOUT": "1", "UFOP_MAX_SOURCE_BYTES": str(LARGE)}
    with Server(STREAMED, "--host", "127.0.0.1", env=env, workers=1) as server:
        yield server


@pytest.fixture(scope="module")
def limited_server():
    """A 3 MiB source limit and the default fetch timeout (longer than HastyDigest's 1 s)."""
    env = {"UFOP_BLOCKED_NETWORKS": "none", "UFOP_MAX_SOURCE_BYTES": str(MAX_SOURCE)}
    with Server(STREAMED, "--host", "127.0.0.1", env=env, workers=1) as server:
        yield server


def error_of(body):
    return json.loads(body)["error"]


def sockets_of(pid):
    return [target for target in open_files(pid) if target.startswith("socket:")]


# Reading only what is needed.

def test_reading_the_first_kib_of_64_mib_closes_the_connection_long_before_the_end(server, origin):
    source = origin.stream("/large-head", LARGE)
    began = time.monotonic()
    status, _, body = server.post("s/head/1024", url=origin.url("/large-head"))
    assert status == 200, body
    assert time.monotonic() - began < 10
    assert json.loads(body)["sha256"] == hashlib.sha256(source.sent[:1024]).hexdigest()
    assert source.ended.wait(10), "the origin still sends: the worker kept the connection open"
    assert source.written < 8 << 20, f"the origin sent {source.written} bytes for 1 KiB read"


def test_a_processor_that_never_reads_downloads_almost_nothing(server, origin):
    source = origin.stream("/large-untouched", LARGE)
    assert server.post("s/untouched", url=origin.url("/large-untouched"))[::2] == (200, b"not read")
    assert source.ended.wait(10)
    assert source.written < 8 << 20


def test_a_stream_read_to_its_end_gives_the_source_bytes(server, origin):
    source = origin.stream("/whole", 5 << 20)
    status, _, body = server.post("s/echo", url=origin.url("/whole"))
    assert status == 200 and body == source.sent


def test_a_streamed_answer_can_relay_the_stream_as_it_reads_it(server, origin):
    source = origin.stream("/relayed", 8 << 20)
    status, headers, body = server.post("s/relay", url=origin.url("/relayed"))
    assert status == 200 and body == source.sent
    assert headers.get("Transfer-Encoding") == "chunked"


def test_readinto_a_chunk_at_a_time_reads_every_byte(server, origin):
    source = origin.stream("/digest", 5 << 20)
    status, _, body = server.post("s/digest", url=origin.url("/digest"))
    assert status == 200
    assert json.loads(body) == {"length": 5 << 20, "sha256": hashlib.sha256(source.sent).hexdigest()}


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_every_framing_of_the_origin_streams_whole(server, origin, framing):
    data = bytes(range(256)) * 2000
    origin.serve(f"/framed-{framing}", data, framing=framing)
    assert server.post("s/echo", url=origin.url(f"/framed-{framing}"))[::2] == (200, data)


def test_the_request_has_no_size_a_forward_only_buffer_and_the_sniffed_and_declared_types(
        server, origin, png):
    origin.serve("/picture", png, content_type="image/x-declared")
    status, _, body = server.post("s/head/8", url=origin.url("/picture"))
    assert status == 200
    described = json.loads(body)
    assert (described["size"], described["seekable"]) == (None, False)
    assert described["content_type"] == "image/png"
    assert described["declared_content_type"] == "image/x-declared"
    assert described["url"] == origin.url("/picture")
    assert described["sha256"] == hashlib.sha256(png[:8]).hexdigest()


def test_accepts_is_enforced_on_the_first_bytes(server, origin, png):
    origin.serve("/text", b"plain words, not a picture")
    origin.serve("/png", png)
    status, _, body = server.post("s/picture", url=origin.url("/text"))
    assert status == 415 and "image/*" in error_of(body)
    assert server.post("s/picture", url=origin.url("/png"))[::2] == (200, b"image/png")


def test_redirects_are_followed(server, origin):
    origin.serve("/target", b"moved here")
    origin.redirect("/moved", "/target")
    assert server.post("s/echo", url=origin.url("/moved"))[::2] == (200, b"moved here")


def test_a_gzip_encoded_source_is_decoded_as_it_is_read(server, origin):
    text = b"plain text " * 100_000
    origin.serve("/gzipped", gzip.compress(text), headers={"Content-Encoding": "gzip"}, framing="chunked")
    assert server.post("s/echo", url=origin.url("/gzipped"))[::2] == (200, text)
    status, _, body = server.post("s/head/11", url=origin.url("/gzipped"))
    assert status == 200 and json.loads(body)["sha256"] == hashlib.sha256(b"plain text ").hexdigest()


def test_a_body_is_a_forward_only_stream_too(server):
    status, _, body = server.post("s/head/5", b"hello body")
    assert status == 200
    described = json.loads(body)
    assert (described["read"], described["size"], described["seekable"]) == (5, None, False)
    assert described["sha256"] == hashlib.sha256(b"hello").hexdigest()
    assert server.post("s/echo", b"x" * (3 << 20))[::2] == (200, b"x" * (3 << 20))


# Failures: the errors of a prefetched source.

def test_an_origin_404_is_a_502_naming_the_status(server, origin):
    status, _, body = server.post("s/echo", url=origin.url("/nowhere"))
    assert status == 502 and "404" in error_of(body)


def test_an_unreachable_origin_is_a_502_naming_its_host(server):
    with Origin() as gone:
        url = gone.url("/x")
    status, _, body = server.post("s/echo", url=url)
    assert status == 502 and "127.0.0.1" in error_of(body)


def test_an_origin_that_breaks_off_mid_stream_is_a_502(server, origin):
    origin.serve("/cut", b"x" * (100 << 10), headers={"Content-Length": str(1 << 20)}, framing="close")
    status, _, body = server.post("s/digest", url=origin.url("/cut"))
    assert status == 502 and "broke off" in error_of(body), body


def test_an_origin_slow_to_answer_is_a_504_after_the_fetch_timeout(server, origin):
    origin.serve("/slow", b"late", delay=5)
    began = time.monotonic()
    status, _, body = server.post("s/echo", url=origin.url("/slow"))
    assert status == 504, body
    assert time.monotonic() - began < 4


def answer_to_a_stall(server, origin, cmd, path):
    """POST `cmd` on a source that stalls after 256 KiB: its status, error and seconds."""
    origin.stream(path, 1 << 20, stall_after=256 << 10)
    began = time.monotonic()
    status, _, body = server.post(cmd, url=origin.url(path))
    return status, error_of(body), time.monotonic() - began


def test_an_origin_that_stalls_mid_stream_is_a_504_after_the_fetch_timeout(server, origin):
    status, error, seconds = answer_to_a_stall(server, origin, "s/digest", "/stalls")
    assert (status, error) == (504, "the source sent nothing for 1s")
    assert seconds < 4


def test_a_stalled_source_is_cut_at_the_processors_timeout_when_it_comes_first(limited_server, origin):
    status, error, seconds = answer_to_a_stall(limited_server, origin, "s/hasty-digest", "/stalls-long")
    assert status == 504 and "timeout of 1s" in error
    assert seconds < 5


def test_reading_past_the_limit_is_413(limited_server, origin):
    origin.serve("/unsized", b"x" * (MAX_SOURCE + 1), framing="chunked")
    status, _, body = limited_server.post("s/digest", url=origin.url("/unsized"))
    assert status == 413 and str(MAX_SOURCE) in error_of(body)


def test_a_gzip_bomb_is_413_on_the_bytes_it_expands_to(limited_server, origin):
    origin.serve("/bomb", gzip.compress(bytes(MAX_SOURCE + 1)), headers={"Content-Encoding": "gzip"})
    status, _, body = limited_server.post("s/digest", url=origin.url("/bomb"))
    assert status == 413 and str(MAX_SOURCE) in error_of(body)


def test_reading_up_to_the_limit_is_fine_and_a_longer_source_read_only_that_far_too(limited_server, origin):
    origin.serve("/exact", b"x" * MAX_SOURCE, framing="chunked")
    assert json.loads(limited_server.post("s/digest", url=origin.url("/exact"))[2])["length"] == MAX_SOURCE
    origin.serve("/long", b"x" * (MAX_SOURCE + 1), framing="chunked")
    assert limited_server.post("s/head/10", url=origin.url("/long"))[0] == 200


def test_a_content_length_over_the_limit_is_413_before_the_processor_runs(limited_server, origin):
    origin.stream("/declared-large", MAX_SOURCE + 1)
    status, _, body = limited_server.post("s/untouched", url=origin.url("/declared-large"))
    assert status == 413 and str(MAX_SOURCE + 1) in error_of(body)


@pytest.fixture(scope="module")
def guarded_server():
    """serve as deployed: UFOP_BLOCKED_NETWORKS unset."""
    with Server(STREAMED, "--host", "127.0.0.1", workers=1) as server:
        yield server


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "169.254.169.254", "0.0.0.0",
                                  "2130706433", "0x7f.1", "[::ffff:127.0.0.1]", "bucket.localhost"])
def test_a_blocked_address_is_403_and_never_asked(guarded_server, origin, host):
    origin.serve("/secret", b"internal data")
    asked = len(origin.requests)
    status, _, body = guarded_server.post("s/untouched", url=f"http://{host}:{origin.port}/secret")
    assert status == 403 and "blocked address" in error_of(body), body
    assert host.strip("[]") in error_of(body)
    assert len(origin.requests) == asked


def test_a_redirect_to_a_blocked_address_is_403(origin):
    origin.serve("/internal", b"internal data")
    origin.redirect("/outward", f"http://127.0.0.2:{origin.port}/internal")
    with Server(STREAMED, "--host", "127.0.0.1", workers=1,
                env={"UFOP_BLOCKED_NETWORKS": "127.0.0.2/32"}) as server:
        status, _, body = server.post("s/echo", url=origin.url("/outward"))
        assert status == 403 and "127.0.0.2" in error_of(body)


def test_a_host_not_allowed_is_403(origin):
    env = {"UFOP_BLOCKED_NETWORKS": "none", "UFOP_ALLOWED_SOURCE_HOSTS": "127.0.0.1"}
    with Server(STREAMED, "--host", "127.0.0.1", workers=1, env=env) as server:
        status, _, body = server.post("s/echo", url=f"http://localhost:{origin.port}/secret")
        assert status == 403 and "UFOP_ALLOWED_SOURCE_HOSTS" in error_of(body)


# HTTPS: the guarded socket is the one TLS runs on, checked against the URL's host name.

@pytest.fixture(scope="module")
def tls_origin(tmp_path_factory):
    """An HTTPS origin whose certificate names localhost only, and that certificate (to trust)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with Origin(tls=context) as origin:
        yield origin, cert


def test_an_https_source_streams_when_its_certificate_names_the_host(tls_origin):
    origin, cert = tls_origin
    origin.serve("/secure", b"over tls")
    env = {"UFOP_BLOCKED_NETWORKS": "none", "SSL_CERT_FILE": str(cert)}
    with Server(STREAMED, "--host", "127.0.0.1", workers=1, env=env) as server:
        assert server.post("s/echo", url=origin.url("/secure", host="localhost"))[::2] == (200, b"over tls")
        status, _, body = server.post("s/echo", url=origin.url("/secure", host="127.0.0.1"))
        assert status == 502 and "certificate" in error_of(body), body


# Nothing is left open.

def test_the_worker_holds_no_connection_after_streamed_requests_however_they_ended(server, origin):
    pid = json.loads(server.post("s/head/1", b"x")[2])["pid"]
    before = len(sockets_of(pid))
    origin.stream("/partly", 4 << 20)
    origin.stream("/stalling", 1 << 20, stall_after=64 << 10)
    for cmd, path, status in [("s/head/100", "/partly", 200), ("s/untouched", "/partly", 200),
                              ("s/digest", "/stalling", 504), ("s/echo", "/nowhere", 502),
                              ("s/picture", "/partly", 415)]:
        assert server.post(cmd, url=origin.url(path))[0] == status
    assert json.loads(server.post("s/head/1", b"x")[2])["pid"] == pid
    assert len(sockets_of(pid)) == before


@pytest.mark.parametrize(("cmd", "status"), [("s/keep", 200), ("s/keep/fail", 400)])
def test_a_stream_the_processor_keeps_is_closed_when_the_request_ends(server, origin, cmd, status):
    source = origin.stream(f"/kept-{status}", 16 << 20)
    assert server.post(cmd, url=origin.url(f"/kept-{status}"))[0] == status
    assert source.ended.wait(10), "the worker still holds the connection"
    assert source.written < 8 << 20
