"""``ufop-sdk dev --bucket DIR``: ``GET /<key>?<fop>|<fop>...`` answered as the Qiniu platform would.

Every test asks a real ``ufop-sdk dev`` subprocess over real HTTP, serving
the thumbnail sample's processors on a folder of images made with Pillow.
A file ``secret`` (and ``secret.jpg``) sits next to the bucket folder, so
a traversal that works shows up as its contents in an answer.
"""

import io
import json
import os
import re
import socket
import time
from pathlib import Path
from textwrap import dedent
from urllib.parse import quote

import pytest
from PIL import Image
from support import PROJECTS, SAMPLES, Server, save_image

THUMBNAIL = SAMPLES / "thumbnail"
SECRET = b"the secret next to the bucket, never to be served"
OWN_PATHS = ("handler", "health", "metrics")


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    """The bucket folder; `secret`, `secret.jpg` and `outside/secret` lie outside it."""
    root = tmp_path_factory.mktemp("bucket-root")
    (root / "secret").write_bytes(SECRET)
    save_image(root / "secret.jpg", (40, 30))
    (root / "outside").mkdir()
    (root / "outside" / "secret").write_bytes(SECRET)
    folder = root / "bucket"
    save_image(folder / "photo.jpg", (800, 600))
    save_image(folder / "photo.png", (120, 90), "PNG")
    save_image(folder / "square.jpg", (500, 500))
    (folder / "notes.txt").write_text("plain words, not an image\n", encoding="utf-8")
    (folder / "sub" / "deep").mkdir(parents=True)
    for key in ("my photo.jpg", "照片 ünïcode.jpg", "sub/deep/a b+c ü.jpg"):
        save_image(folder / key, (300, 200))
    for name in OWN_PATHS:
        (folder / name).write_bytes(f"the bucket's file named {name}".encode())
    (folder / "link-to-secret").symlink_to(root / "secret")
    (folder / "link-to-secret.jpg").symlink_to(root / "secret.jpg")
    (folder / "link-to-outside").symlink_to(root / "outside", target_is_directory=True)
    (folder / "loop").symlink_to(folder / "loop")
    (folder / "loop-a").symlink_to(folder / "loop-b")
    (folder / "loop-b").symlink_to(folder / "loop-a")
    return folder


@pytest.fixture(scope="module")
def server(bucket):
    with Server(THUMBNAIL, "--bucket", str(bucket), command="dev") as server:
        yield server


def get(server, key, query=None):
    """GET the bucket's `key` (percent-encoded here) with `query`; returns (status, headers, body)."""
    return server.request("GET", "/" + quote(key) + ("" if query is None else "?" + query))


def image_of(body):
    """(format, (width, height)) of an image answer."""
    with Image.open(io.BytesIO(body)) as image:
        return image.format, image.size


def error_of(status, body):
    """The "error" of a JSON error answer, checking that it is one."""
    assert status >= 400, body[:200]
    return json.loads(body)["error"]


@pytest.mark.parametrize("key, content_type", [
    ("photo.jpg", "image/jpeg"), ("photo.png", "image/png"), ("notes.txt", "text/plain")])
def test_a_key_without_a_query_is_the_file_itself(server, bucket, key, content_type):
    for query in (None, ""):
        status, headers, body = get(server, key, query)
        assert status == 200
        assert body == (bucket / key).read_bytes()
        assert headers["Content-Type"].split(";")[0] == content_type


def test_a_one_step_pipeline_answers_the_processors_output(server):
    status, headers, body = get(server, "photo.jpg", "thumbnail/thumbnail/64x64")
    assert status == 200, body[:300]
    assert headers["Content-Type"] == "image/jpeg"
    assert image_of(body) == ("JPEG", (64, 64))


@pytest.mark.parametrize("key, pipeline, expected", [
    ("square.jpg", "thumbnail/fit/640x640|thumbnail/fit/32x32/format/png", ("PNG", (32, 32))),
    # The PNG out of step 1 is step 2's input: step 2 keeps its input's format.
    ("photo.jpg", "thumbnail/fit/640x640/format/png|thumbnail/thumbnail/32x16", ("PNG", (32, 16))),
    # as a client that percent-encodes each step sends it: the literal | still separates them
    ("photo.jpg", quote("thumbnail/fit/640x640/format/png", safe="") + "|"
     + quote("thumbnail/thumbnail/32x16", safe=""), ("PNG", (32, 16))),
])
def test_a_two_step_pipeline_feeds_the_first_output_to_the_second_step(server, key, pipeline, expected):
    status, headers, body = get(server, key, pipeline)
    assert status == 200, body[:300]
    assert headers["Content-Type"] == "image/png"
    assert image_of(body) == expected


def test_a_pipeline_of_thirty_steps_runs_every_step(server):
    steps = [f"thumbnail/thumbnail/{300 - 5 * step}x{200 - 3 * step}" for step in range(30)]
    steps[-1] += "/format/png"
    status, headers, body = get(server, "photo.jpg", "|".join(steps))
    assert status == 200, body[:300]
    assert headers["Content-Type"] == "image/png"
    assert image_of(body) == ("PNG", (155, 113))


def test_a_pipeline_of_thirty_one_steps_is_refused(server):
    status, _, body = get(server, "photo.jpg", "|".join(["thumbnail/fit/64x64"] * 31))
    assert status == 400
    error = error_of(status, body)
    assert "30" in error and "31" in error


@pytest.mark.parametrize("pipeline, number", [
    ("imageView2/1/w/100", 1),
    ("thumbnail/fit/100x100|imageView2/1/w/100", 2),
])
def test_a_step_naming_another_ufop_is_not_implemented(server, pipeline, number):
    status, _, body = get(server, "photo.jpg", pipeline)
    assert status == 501
    error = error_of(status, body)
    assert error.startswith(f"step {number} (imageView2/1/w/100): ")
    assert "'imageView2' is another ufop" in error and "'thumbnail'" in error


@pytest.mark.parametrize("key, pipeline, status, number, words", [
    ("photo.jpg", "thumbnail/thumbnail/abcx10", 400, 1, "'width'"),
    ("notes.txt", "thumbnail/thumbnail/10x10", 415, 1, "text/plain"),
    ("photo.jpg", "thumbnail/fit/100x100|thumbnail/nope", 404, 2, "'nope'"),
    ("photo.jpg", "thumbnail/fit/100x100|thumbnail/fit/50x50|thumbnail/thumbnail/0x10", 400, 3,
     "invalid argument 'width'"),
])
def test_an_error_at_step_k_is_answered_with_its_status_step_and_cmd(server, key, pipeline, status, number,
                                                                      words):
    answer_status, headers, body = get(server, key, pipeline)
    assert answer_status == status
    assert headers["Content-Type"].startswith("application/json")
    error = error_of(answer_status, body)
    cmd = pipeline.split("|")[number - 1]
    assert error.startswith(f"step {number} ({cmd}): "), error
    assert words in error


@pytest.mark.parametrize("key", ["my photo.jpg", "照片 ünïcode.jpg", "sub/deep/a b+c ü.jpg"])
def test_keys_with_spaces_and_unicode_are_served_and_processed(server, bucket, key):
    status, _, body = get(server, key)
    assert (status, body) == (200, (bucket / key).read_bytes())
    status, _, body = get(server, key, "thumbnail/thumbnail/30x20")
    assert status == 200, body[:300]
    assert image_of(body) == ("JPEG", (30, 20))


@pytest.mark.parametrize("path", ["/nothing.jpg", "/nothing.jpg?thumbnail/thumbnail/10x10",
                                  "/sub/deep/nothing.jpg", "/sub", "/sub/", "/photo.jpg/more"])
def test_a_missing_key_is_404(server, path):
    status, _, body = server.request("GET", path)
    assert status == 404
    assert "no such key" in error_of(status, body)


@pytest.mark.parametrize("path", [
    "/loop", "/loop-a", "/loop/photo.jpg", "/loop-a?thumbnail/thumbnail/10x10",
    pytest.param("/" + "n" * 300, id="name-over-NAME_MAX"),
    pytest.param("/sub/" + "n" * 300 + "/photo.jpg", id="folder-name-over-NAME_MAX"),
    pytest.param("/" + "/".join(["long-path"] * 500), id="path-over-PATH_MAX"),
])
def test_a_key_that_cannot_name_a_file_is_refused_not_an_internal_error(server, path):
    status, _, body = server.request("GET", path)
    error = json.loads(body)
    cause = error.get("traceback", "").strip().splitlines()[-1:]  # dev answers a 500 with its traceback
    assert status in (403, 404), (status, error["error"], cause)
    assert "no such key" in error["error"] or "outside the bucket" in error["error"]


@pytest.mark.parametrize("path", [
    "/../secret", "/%2e%2e/secret", "/%2E%2E%2Fsecret", "/sub/../../secret", "/sub/%2e%2e/%2e%2e/secret",
    "/../secret.jpg?thumbnail/thumbnail/8x8", "//etc/passwd", "/%2Fetc%2Fpasswd",
    "/link-to-secret", "/link-to-secret.jpg?thumbnail/thumbnail/8x8",
    "/link-to-outside/secret", "/link-to-outside", "/link-to-outside/../secret",
])
def test_a_key_escaping_the_bucket_is_refused(server, path):
    status, _, body = server.request("GET", path)  # sent as it is: http.client does not normalise paths
    assert status in (403, 404), (status, body[:200])
    error_of(status, body)
    assert SECRET not in body and b"root:" not in body


@pytest.mark.parametrize("name", OWN_PATHS)
def test_the_servers_own_paths_win_over_keys_of_the_same_name(server, bucket, name):
    status, headers, body = server.request("GET", f"/{name}")
    assert body != (bucket / name).read_bytes()
    if name == "health":
        assert (status, json.loads(body)["status"]) == (200, "ok")
    elif name == "metrics":
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
    else:  # the platform's POST /handler, which a GET cannot use
        assert status == 405 and "POST /handler" in error_of(status, body)


def test_the_playground_wins_over_the_bucket_at_the_root(server):
    status, headers, body = server.request("GET", "/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert b"ufop-sdk playground" in body


def test_without_bucket_dev_serves_no_keys(tmp_path):
    save_image(tmp_path / "photo.jpg", (20, 20))
    with Server(THUMBNAIL, command="dev", workers=1) as server:
        for path in ("/photo.jpg", "/photo.jpg?thumbnail/thumbnail/10x10", "/../secret"):
            status, _, body = server.request("GET", path)
            assert status == 404 and "no such path" in error_of(status, body)


PROBE = """
    from ufop_sdk import Processor


    class Probe(Processor):
        route = r"where"

        def process(self, req):
            return {"url": req.url, "size": req.size, "cmd": req.cmd}
"""


def test_the_first_step_sees_the_files_url_and_later_steps_none(tmp_path):
    project = tmp_path / "probe"
    project.mkdir()
    (project / "processors.py").write_text(dedent(PROBE), encoding="utf-8")
    (project / ".env").write_text("UFOP_NAME=probe\n", encoding="utf-8")
    key = "a dir/ünï code.bin"
    content = os.urandom(3000)
    (tmp_path / "bucket" / "a dir").mkdir(parents=True)
    (tmp_path / "bucket" / key).write_bytes(content)

    with Server(project, "--bucket", str(tmp_path / "bucket"), command="dev", workers=1) as server:
        status, _, first = get(server, key, "probe/where")
        assert status == 200, first[:300]
        status, _, second = get(server, key, "probe/where|probe/where")
        assert status == 200, second[:300]
        url = f"{server.url}/{quote(key)}"
        assert json.loads(first) == {"url": url, "size": len(content), "cmd": "probe/where"}
        # step 2's input is step 1's output, which is not a file with a URL
        assert json.loads(second) == {"url": None, "size": len(first), "cmd": "probe/where"}
        # and that URL is the file
        assert get(server, key)[::2] == (200, content)


# A project that tells what reached it, on a bucket with a large file.

SAYS = """
    from ufop_sdk import Processor


    class Say(Processor):
        route = r"say/(?P<text>.+)"

        def process(self, req):
            return {"cmd": req.cmd, "text": req.args["text"], "size": req.size}


    class Copy(Processor):
        \"\"\"The input again, as a file in req.workdir.\"\"\"

        route = r"copy"

        def process(self, req):
            path = req.workdir / "copy"
            with open(path, "wb") as out:
                while chunk := req.buffer.read(1 << 20):
                    out.write(chunk)
            return path


    class Upper(Processor):
        \"\"\"The input in upper case, streamed a line at a time.\"\"\"

        route = r"upper"

        def process(self, req):
            return (line.upper() for line in req.buffer)
"""
LARGE_BYTES = 64 << 20


@pytest.fixture(scope="module")
def says(tmp_path_factory):
    """dev on a project named sayer whose bucket holds `large.bin`, LARGE_BYTES of zeros (a sparse file)."""
    root = tmp_path_factory.mktemp("says")
    (root / "processors.py").write_text(dedent(SAYS), encoding="utf-8")
    (root / ".env").write_text("UFOP_NAME=sayer\n", encoding="utf-8")
    (root / "bucket").mkdir()
    (root / "bucket" / "small.txt").write_text("small\n", encoding="utf-8")
    with open(root / "bucket" / "large.bin", "wb") as large:
        large.truncate(LARGE_BYTES)
    with Server(root, "--bucket", str(root / "bucket"), command="dev", workers=1) as server:
        yield server


@pytest.mark.parametrize("text", ["a|b", "|", "a%7Cb"])
def test_an_encoded_pipe_in_a_cmd_reaches_the_processor_as_one_cmd_with_a_literal_pipe(says, text):
    status, _, body = get(says, "small.txt", "sayer/say/" + quote(text, safe=""))
    assert status == 200, body[:300]
    assert json.loads(body) == {"cmd": f"sayer/say/{text}", "text": text, "size": 6}


def test_an_encoded_pipe_and_a_literal_one_make_two_steps_of_which_the_second_gets_the_first_output(says):
    status, _, body = get(says, "small.txt", "sayer/say/a%7Cb|sayer/say/c")
    assert status == 200, body[:300]
    first = json.dumps({"cmd": "sayer/say/a|b", "text": "a|b", "size": 6}, separators=(",", ":"))
    assert json.loads(body) == {"cmd": "sayer/say/c", "text": "c", "size": len(first.encode())}


def peak_rss(pid):
    """A process's peak resident memory (VmHWM) in bytes, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)[1]) << 10


@pytest.mark.parametrize("query", [None, "sayer/say/size"], ids=["the-file-itself", "through-a-pipeline"])
def test_a_large_file_is_served_without_the_dev_server_holding_it_in_memory(says, query):
    assert get(says, "small.txt", query)[0] == 200  # what any request costs, paid before measuring
    before = peak_rss(says.process.pid)
    status, headers, body = get(says, "large.bin", query)
    grown = peak_rss(says.process.pid) - before
    assert status == 200, body[:300]
    if query is None:
        assert (int(headers["Content-Length"]), len(body), body.count(0)) == (LARGE_BYTES,) * 3
    else:
        assert json.loads(body)["size"] == LARGE_BYTES
    assert grown < LARGE_BYTES // 4, f"the dev server's peak memory grew by {grown >> 20} MiB"


@pytest.mark.parametrize("pipeline", ["sayer/copy", "sayer/upper", "sayer/copy|sayer/upper",
                                      "sayer/upper|sayer/copy|sayer/say/x"])
def test_file_and_streamed_outputs_go_through_a_pipeline_and_out_to_the_client(says, pipeline):
    status, headers, body = get(says, "small.txt", pipeline)
    assert status == 200, body[:300]
    expected = {"sayer/copy": b"small\n", "sayer/upper": b"SMALL\n", "sayer/copy|sayer/upper": b"SMALL\n"}
    if pipeline in expected:
        assert body == expected[pipeline]
    else:
        assert json.loads(body) == {"cmd": "sayer/say/x", "text": "x", "size": 6}


def test_a_client_leaving_during_a_large_download_costs_no_error_and_the_next_request_is_served(says):
    with socket.create_connection(("127.0.0.1", says.port), timeout=10) as client:
        client.sendall(b"GET /large.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        assert client.recv(1 << 16).startswith(b"HTTP/1.1 200")
    assert get(says, "small.txt")[::2] == (200, b"small\n")
    time.sleep(0.5)  # time for a traceback, if one were coming, to reach the log
    assert "Traceback" not in says.output() and "ERROR" not in says.output()


def test_each_step_gets_the_requests_headers_and_the_platforms_bucket_key_and_pipeline(bucket):
    with Server(PROJECTS / "qiniu", "--bucket", str(bucket), command="dev") as server:
        status, _, body = server.request("GET", f"/{quote('sub/deep/a b+c ü.jpg')}?q/headers|q/headers",
                                         headers={"X-Custom": "kept"})
    assert status == 200, body
    answer = json.loads(body)
    assert answer["x-custom"] == "kept"
    assert answer["qiniu"] == {"uid": None, "bucket": bucket.name, "key": "sub/deep/a b+c ü.jpg",
                               "is_async": None, "pipeline": ["q/headers", "q/headers"]}
