"""File and streamed answers through `serve` (the local pool): sent from disk or as the client takes them.

A path or an open file is sent with its Content-Length from the descriptor
the worker hands the server; an iterator of bytes is sent chunked, paced by
the client. `req.workdir` is gone once the answer is out, whatever happened.
"""

import http.client
import json
import os
import textwrap
import time
from pathlib import Path

import pytest
from support import Server, access_line, children_of, rss_bytes, send_request

PROCESSORS = textwrap.dedent("""
    import os
    import time
    from pathlib import Path

    from ufop_sdk import Processor, Response

    MARKERS = Path(os.environ["MARKERS"])


    def pattern(size):
        block = bytes(range(256)) * 4096  # 1 MiB
        return (block * (size // len(block) + 1))[:size]


    class File(Processor):
        route = r"file/(?P<size>[0-9]+)(?P<typed>/typed)?"

        def process(self, req):
            path = req.workdir / "out.bin"
            with open(path, "wb") as out:
                for start in range(0, int(req.args["size"]), 1 << 20):
                    out.write(pattern(min(1 << 20, int(req.args["size"]) - start)))
            (MARKERS / f"workdir-{req.request_id}").write_text(str(req.workdir))
            return (path, "application/x-test") if req.args.get("typed") else path


    class Png(Processor):
        route = r"png"

        def process(self, req):
            path = req.workdir / "picture"
            path.write_bytes(bytes.fromhex("89504e470d0a1a0a0000000d49484452") + bytes(64))
            return Response(path, headers={"X-Kind": "picture"})


    class OpenFile(Processor):
        route = r"open/(?P<skip>[0-9]+)"

        def process(self, req):
            path = req.workdir / "out.bin"
            path.write_bytes(b"0123456789")
            file = open(path, "rb")
            file.seek(int(req.args["skip"]))
            return file


    class Echo(Processor):
        route = r"echo"

        def process(self, req):
            return req.buffer, req.content_type


    class Failing(Processor):
        route = r"failing"

        def process(self, req):
            (req.workdir / "half.bin").write_bytes(b"x")
            (MARKERS / f"workdir-{req.request_id}").write_text(str(req.workdir))
            raise RuntimeError("failed after writing")


    class Late(Processor):
        \"\"\"Writes into its workdir, then runs past its timeout: its worker is killed.\"\"\"

        route = r"late"
        timeout = 1

        def process(self, req):
            (req.workdir / "partial.bin").write_bytes(b"x" * 1000)
            (MARKERS / f"workdir-{req.request_id}").write_text(str(req.workdir))
            time.sleep(30)


    class Chunks(Processor):
        \"\"\"Yields `count` chunks of `size` bytes, noting how many it made; its finally leaves one.\"\"\"

        route = r"chunks/(?P<count>[0-9]+)/(?P<size>[0-9]+)"
        timeout = 5

        def process(self, req):
            count, size = int(req.args["count"]), int(req.args["size"])
            made = MARKERS / f"made-{req.request_id}"

            def chunks():
                try:
                    for number in range(count):
                        made.write_text(str(number + 1))
                        yield pattern(size)
                finally:
                    (MARKERS / f"closed-{req.request_id}").touch()
            return chunks()


    class Raising(Processor):
        route = r"raising"

        def process(self, req):
            def chunks():
                yield b"a" * 1000
                raise ValueError("the source went away")
            return chunks()


    class Stalling(Processor):
        route = r"stalling"
        timeout = 1

        def process(self, req):
            def chunks():
                yield b"first"
                time.sleep(30)
                yield b"never"
            return chunks()


    class TooBig(Processor):
        route = r"too-big/(?P<kind>bytes|file)"

        def process(self, req):
            if req.args["kind"] == "bytes":
                return b"x" * (2 << 20)
            path = req.workdir / "big"
            path.write_bytes(b"x" * (2 << 20))
            return path
""")

MIB = 1 << 20


def pattern(size):
    block = bytes(range(256)) * 4096
    return (block * (size // len(block) + 1))[:size]


@pytest.fixture(scope="module")
def markers(tmp_path_factory):
    return tmp_path_factory.mktemp("markers")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    folder = tmp_path_factory.mktemp("answers")
    (folder / "processors.py").write_text(PROCESSORS)
    return folder


@pytest.fixture(scope="module")
def server(project, markers, tmp_path_factory):
    spool = tmp_path_factory.mktemp("spool")
    env = {"MARKERS": str(markers), "UFOP_SPOOL_DIR": str(spool), "UFOP_MAX_OUTPUT_BYTES": "512MiB"}
    with Server(project, "--host", "127.0.0.1", workers=1, env=env) as server:
        server.spool = spool
        yield server


def post(server, cmd, body=b"", request_id=None):
    """(status, headers, body) of one request, with its framing: Content-Length or chunked."""
    headers = {"X-Request-Id": request_id} if request_id else {}
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("POST", f"/handler?cmd=t/{cmd}", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_a_path_answer_is_sent_whole_with_its_length_and_the_type_it_was_given(server):
    status, headers, body = post(server, f"file/{5 * MIB + 3}/typed")
    assert status == 200
    assert headers["content-length"] == str(5 * MIB + 3) and "transfer-encoding" not in headers
    assert headers["content-type"] == "application/x-test"
    assert body == pattern(5 * MIB + 3)


def test_a_path_answer_without_a_type_gets_the_type_sniffed_from_its_first_bytes(server):
    status, headers, body = post(server, "png")
    assert (status, headers["content-type"], headers["x-kind"]) == (200, "image/png", "picture")
    assert body.startswith(b"\x89PNG")


def test_an_open_file_answer_is_sent_from_where_it_stands(server):
    status, headers, body = post(server, "open/4")
    assert (status, headers["content-length"], body) == (200, "6", b"456789")


def test_the_input_returned_as_it_is_comes_back_intact(server):
    data = os.urandom(3 * MIB)
    status, headers, body = post(server, "echo", data)
    assert (status, headers["content-length"]) == (200, str(len(data)))
    assert body == data


def test_the_workdir_is_removed_once_the_answer_is_sent(server, markers):
    assert post(server, "file/1000", request_id="workdir-sent")[0] == 200
    workdir = Path((markers / "workdir-workdir-sent").read_text())
    assert workdir.parent.parent == server.spool, "req.workdir is under UFOP_SPOOL_DIR"
    server.wait_until(lambda: not workdir.exists(), 5, "the workdir to be removed")


@pytest.mark.expect_traceback
def test_the_workdir_is_removed_when_the_processor_fails(server, markers):
    status, _, body = post(server, "failing", request_id="workdir-failed")
    assert status == 500 and "Failing" in json.loads(body)["error"]
    workdir = Path((markers / "workdir-workdir-failed").read_text())
    server.wait_until(lambda: not workdir.exists(), 5, "the workdir to be removed")


def test_the_workdir_of_a_worker_killed_at_its_timeout_is_removed(server, markers):
    status, _, _ = post(server, "late", request_id="workdir-late")
    assert status == 504
    workdir = Path((markers / "workdir-workdir-late").read_text())
    server.wait_until(lambda: not workdir.parent.exists(), 5,
                      "the killed worker's folder, its request's workdir in it, to be removed")


def test_a_generator_answer_is_sent_chunked_and_intact(server):
    status, headers, body = post(server, f"chunks/10/{100_000}")
    assert (status, headers["transfer-encoding"], headers["content-type"]) == (
        200, "chunked", "application/octet-stream")
    assert "content-length" not in headers
    assert body == pattern(100_000) * 10


def test_a_client_that_does_not_read_holds_the_generator_back(server, markers):
    sock = send_request(server, f"t/chunks/1000/{MIB}", "paced", receive_buffer=64 << 10)
    made = markers / "made-paced"
    server.wait_until(made.exists, 10, "the generator to start")
    time.sleep(3)  # it stays about where it is: the server does not take more than its client does
    assert int(made.read_text()) < 32, f"{made.read_text()} MiB made for a client that read nothing"
    for pid in [server.process.pid, *children_of(server.process.pid)]:
        assert rss_bytes(pid) < 200 * MIB
    sock.close()
    server.wait_until((markers / "closed-paced").exists, 10, "the generator to be closed")
    assert int(made.read_text()) < 40
    assert access_line(server, "paced")["status"] == 499


def test_a_client_that_leaves_mid_stream_closes_the_generator_and_frees_the_worker(server, markers):
    sock = send_request(server, f"t/chunks/1000/{MIB}", "leaves")
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    sock.close()
    server.wait_until((markers / "closed-leaves").exists, 10, "the generator's finally to run")
    assert access_line(server, "leaves")["status"] == 499
    assert post(server, "chunks/2/10")[2] == pattern(10) * 2, "the worker takes the next job"


def read_until_closed(sock):
    data = b""
    while chunk := sock.recv(1 << 16):
        data += chunk
    return data


@pytest.mark.expect_traceback
def test_a_generator_that_raises_mid_stream_is_cut_off_and_logged_500(server):
    sock = send_request(server, "t/raising", "raising")
    answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200") and not answer.endswith(b"0\r\n\r\n"), \
        "the chunked answer must not look complete"
    assert access_line(server, "raising")["status"] == 500
    assert "the source went away" in server.output()
    assert post(server, "chunks/1/5")[0] == 200


def test_a_generator_that_stalls_past_its_timeout_is_cut_off_and_its_worker_replaced(server):
    sock = send_request(server, "t/stalling", "stalling")
    began = time.monotonic()
    answer = read_until_closed(sock)
    assert time.monotonic() - began < 10
    assert b"first" in answer and not answer.endswith(b"0\r\n\r\n")
    assert access_line(server, "stalling")["status"] == 500
    assert post(server, "chunks/1/5")[0] == 200


@pytest.mark.parametrize("kind", ["bytes", "file"])
def test_an_answer_of_known_length_over_the_output_limit_is_a_json_500_before_anything_is_sent(
        project, markers, kind):
    env = {"MARKERS": str(markers), "UFOP_MAX_OUTPUT_BYTES": "1MiB"}
    with Server(project, "--host", "127.0.0.1", workers=1, env=env) as small:
        status, _, body = post(small, f"too-big/{kind}")
        assert status == 500
        assert "UFOP_MAX_OUTPUT_BYTES" in json.loads(body)["error"]


def test_a_stream_that_grows_past_the_output_limit_is_cut_off(project, markers):
    env = {"MARKERS": str(markers), "UFOP_MAX_OUTPUT_BYTES": "1MiB"}
    with Server(project, "--host", "127.0.0.1", workers=1, env=env) as small:
        sock = send_request(small, f"t/chunks/4/{512 << 10}", "over-limit")
        answer = read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 200") and not answer.endswith(b"0\r\n\r\n")
        assert len(answer) < 1 * MIB + 4096
        assert access_line(small, "over-limit")["status"] == 500
        assert "UFOP_MAX_OUTPUT_BYTES" in small.output()


def test_a_file_answer_larger_than_the_memory_it_may_take_passes_through_no_process_whole(server):
    size = 256 * MIB
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    connection.request("POST", f"/handler?cmd=t/file/{size}")
    response = connection.getresponse()
    peak = {}
    received = 0
    while chunk := response.read(4 * MIB):
        received += len(chunk)
        for pid in [server.process.pid, *children_of(server.process.pid)]:
            peak[pid] = max(peak.get(pid, 0), rss_bytes(pid))
    connection.close()
    assert received == size
    assert max(peak.values()) < 160 * MIB, {pid: rss >> 20 for pid, rss in peak.items()}
