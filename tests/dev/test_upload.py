"""``POST /`` in ``ufop-sdk dev --bucket``: Qiniu's form upload, driven by the official SDK (`qiniu`).

Every test uploads to a real ``ufop-sdk dev`` subprocess over real HTTP,
mostly with ``qiniu.put_data`` pointed at it, as a user's code would. The
bucket folder has a symlink to a folder outside it, so a write that escapes
shows up there.
"""

import hashlib
import http.client
import io
import json
import os
import socket
import threading
import zlib

import pytest
import qiniu
import qiniu.utils
import requests
from support import SAMPLES, Server, rss_bytes

THUMBNAIL = SAMPLES / "thumbnail"
BUCKET = "photos"
ACCESS_KEY, SECRET_KEY = "dev-access-key", "dev-secret-key"
SDK = qiniu.Auth(ACCESS_KEY, SECRET_KEY)
CREDENTIALS = {"QINIU_ACCESS_KEY": ACCESS_KEY, "QINIU_SECRET_KEY": SECRET_KEY}
NO_CREDENTIALS = {"QINIU_ACCESS_KEY": "", "QINIU_SECRET_KEY": ""}
UNSIGNED_WARNING = ("QINIU_ACCESS_KEY and QINIU_SECRET_KEY are unset: pfop, status and upload requests "
                    "are accepted with any signature")
DATA = b"the bytes of an upload\n" * 1000


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A folder holding the bucket folder and `outside/`, which `bucket/link-out` points to."""
    root = tmp_path_factory.mktemp("upload-root")
    (root / "outside").mkdir()
    (root / "bucket").mkdir()
    (root / "bucket" / "link-out").symlink_to(root / "outside", target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def bucket(root):
    return root / "bucket"


@pytest.fixture(scope="module")
def server(bucket):
    """dev with the account's credentials: uploads must carry its signature."""
    with Server(THUMBNAIL, "--bucket", f"{BUCKET}={bucket}", command="dev", env=CREDENTIALS) as server:
        yield server


def put(server, key, data=DATA, token=None, **options):
    """``qiniu.put_data`` to `server`'s up host; `token` defaults to one for `key` in the bucket."""
    token = SDK.upload_token(BUCKET, key, 3600) if token is None else token
    region = qiniu.Region(up_host=server.url)
    return qiniu.put_data(token, key, data, regions=[region], **options)


def post_form(server, fields, data=DATA):
    """A form upload by hand (requests' multipart), for the forms the SDK never sends."""
    parts = {name: (None, value) for name, value in fields.items()}
    if data is not None:
        parts["file"] = ("upload.bin", data, "application/octet-stream")
    return requests.post(server.url + "/", files=parts, timeout=30)


def files_in(folder):
    """Every file under `folder` (links not followed), as relative paths."""
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if not path.is_dir()
                  or path.is_symlink())


def error_of(info):
    """The JSON error of a refused upload, checking the answer carries Qiniu's X-Reqid."""
    assert info.req_id, "every answer carries X-Reqid"
    return json.loads(info.text_body)["error"]


@pytest.mark.parametrize("key", ["cat.jpg", "2026/12/cat.jpg", "照片/ünïcode name.bin", "a b+c%20&d=e.txt"])
def test_an_upload_stores_the_bytes_under_the_key_and_answers_their_qiniu_etag(server, bucket, key):
    ret, info = put(server, key)
    assert info.status_code == 200, info.text_body
    assert ret == {"hash": qiniu.utils.etag_stream(io.BytesIO(DATA)), "key": key}
    assert info.req_id
    assert (bucket / key).read_bytes() == DATA


def test_a_second_upload_to_the_key_replaces_the_file(server, bucket):
    put(server, "replaced.txt", b"first")
    ret, info = put(server, "replaced.txt", b"second, longer")
    assert info.status_code == 200, info.text_body
    assert ret["hash"] == qiniu.utils.etag_stream(io.BytesIO(b"second, longer"))
    assert (bucket / "replaced.txt").read_bytes() == b"second, longer"


def test_a_token_for_the_whole_bucket_adds_a_file_but_replaces_none_614(server, bucket):
    whole_bucket = SDK.upload_token(BUCKET, None, 3600)
    assert put(server, "added-once.txt", b"first", token=whole_bucket)[1].status_code == 200
    ret, info = put(server, "added-once.txt", b"first", token=whole_bucket)
    assert info.status_code == 200, "the same contents again: Qiniu answers success"
    ret, info = put(server, "added-once.txt", b"other contents", token=whole_bucket)
    assert (ret, info.status_code) == (None, 614)
    assert "exists" in error_of(info)
    assert (bucket / "added-once.txt").read_bytes() == b"first"


def test_without_a_key_the_file_is_stored_under_its_etag(server, bucket):
    ret, info = put(server, None, b"named by its etag", token=SDK.upload_token(BUCKET))
    etag = qiniu.utils.etag_stream(io.BytesIO(b"named by its etag"))
    assert ret == {"hash": etag, "key": etag}, info.text_body
    assert (bucket / etag).read_bytes() == b"named by its etag"


def test_without_a_key_the_policys_save_key_names_the_file(server, bucket):
    token = SDK.upload_token(BUCKET, None, 3600, {"saveKey": "saved/by-policy.txt"})
    ret, info = put(server, None, b"saved", token=token)
    assert ret == {"hash": qiniu.utils.etag_stream(io.BytesIO(b"saved")), "key": "saved/by-policy.txt"}
    assert (bucket / "saved" / "by-policy.txt").read_bytes() == b"saved"


@pytest.mark.parametrize("token, key, complaint", [
    (qiniu.Auth(ACCESS_KEY, "another-secret").upload_token(BUCKET, "refused.txt"), "refused.txt",
     "signature does not match"),
    (qiniu.Auth("another-access-key", SECRET_KEY).upload_token(BUCKET, "refused.txt"), "refused.txt",
     "another access key"),
    (SDK.upload_token(BUCKET, "refused.txt", -60), "refused.txt", "expired"),
    (SDK.upload_token(BUCKET, "other.txt"), "refused.txt", "does not cover"),
    (SDK.upload_token(BUCKET, "2026/", 3600, {"isPrefixalScope": 1}), "2025/refused.txt", "does not cover"),
], ids=["secret-key", "access-key", "expired", "scope-key", "scope-prefix"])
def test_a_token_that_does_not_let_the_upload_in_is_401_and_stores_nothing(server, bucket, token, key,
                                                                          complaint):
    before = files_in(bucket)
    ret, info = put(server, key, token=token)
    assert (ret, info.status_code) == (None, 401)
    assert complaint in error_of(info)
    assert files_in(bucket) == before


@pytest.mark.parametrize("token, complaint", [
    ("not-a-token", "not '<AccessKey>:<sign>:<policy>'"),
    (f"{ACCESS_KEY}:c2lnbg==:bm90IGpzb24=", "not URL-safe base64 of JSON"),
    (f"{ACCESS_KEY}:c2lnbg==:WzFd", "not a JSON object"),
    (f"{ACCESS_KEY}:c2lnbg==:eyJkZWFkbGluZSI6IDF9", "names no scope")])
def test_a_token_that_is_not_an_upload_token_is_401_and_stores_nothing(server, bucket, token, complaint):
    before = files_in(bucket)
    answer = post_form(server, {"token": token, "key": "refused.txt"})
    assert answer.status_code == 401
    assert complaint in answer.json()["error"]
    assert files_in(bucket) == before


def test_a_form_without_a_token_is_401_and_without_a_file_400(server, bucket):
    before = files_in(bucket)
    answer = post_form(server, {"key": "no-token.txt"})
    assert (answer.status_code, answer.json()["error"].split(":")[0]) == (401, "token not specified")
    answer = post_form(server, {"token": SDK.upload_token(BUCKET, "no-file.txt"), "key": "no-file.txt"}, None)
    assert (answer.status_code, answer.json()["error"].split(":")[0]) == (400, "file not specified")
    assert answer.headers["X-Reqid"]
    assert files_in(bucket) == before


def test_a_bucket_dev_does_not_serve_is_631_and_stores_nothing(server, bucket):
    before = files_in(bucket)
    ret, info = put(server, "cat.jpg", token=SDK.upload_token("no-such-bucket", "cat.jpg"))
    assert (ret, info.status_code) == (None, 631)
    assert "no such bucket 'no-such-bucket'" in error_of(info)
    assert files_in(bucket) == before


@pytest.mark.parametrize("key, status", [
    ("../escaped.txt", 400), ("a/../../escaped.txt", 400), ("/escaped.txt", 400),
    ("link-out/escaped.txt", 403), (".ufop-dev/escaped.txt", 403)])
def test_a_key_that_would_leave_the_bucket_is_refused_and_nothing_is_written(server, root, key, status):
    before = files_in(root)
    ret, info = put(server, key)
    assert (ret, info.status_code) == (None, status), info.text_body
    assert files_in(root) == before
    assert os.listdir(root / "outside") == []


def test_an_upload_to_a_key_that_links_out_replaces_the_link_never_the_file_outside(server, root, bucket):
    (root / "outside-secret").write_bytes(b"outside")
    (bucket / "linked-key").symlink_to(root / "outside-secret")
    ret, info = put(server, "linked-key", b"uploaded")
    assert info.status_code == 200, info.text_body
    assert not (bucket / "linked-key").is_symlink()
    assert (bucket / "linked-key").read_bytes() == b"uploaded"
    assert (root / "outside-secret").read_bytes() == b"outside"


def test_a_crc32_that_matches_is_accepted_and_one_that_does_not_is_406(server, bucket):
    token = SDK.upload_token(BUCKET, "checked.txt")
    right = zlib.crc32(DATA)
    answer = post_form(server, {"token": token, "key": "checked.txt", "crc32": str(right)})
    assert answer.status_code == 200, answer.text
    answer = post_form(server, {"token": token, "key": "checked.txt", "crc32": str(right ^ 1)}, b"changed")
    assert answer.status_code == 406
    assert "crc32" in answer.json()["error"]
    assert (bucket / "checked.txt").read_bytes() == DATA


def test_custom_variables_are_taken(server, bucket):
    ret, info = put(server, "with-vars.txt", params={"x:album": "holidays", "x:who": "我"})
    assert info.status_code == 200, info.text_body
    assert (bucket / "with-vars.txt").read_bytes() == DATA


def test_get_slash_stays_the_playground_while_post_slash_uploads(server):
    status, headers, body = server.request("GET", "/")
    assert (status, headers["Content-Type"]) == (200, "text/html; charset=utf-8")
    assert b"<html" in body.lower()
    assert put(server, "beside-the-playground.txt")[1].status_code == 200


def test_only_post_slash_takes_a_body_over_64_kib(server, bucket):
    assert put(server, "over-64-kib.bin", b"o" * (1 << 20))[1].status_code == 200
    for path in ("/cat.jpg", "/health", "/"):
        status, _, body = server.request("PUT" if path == "/" else "POST", path, b"x" * (65 << 10))
        assert status == 413, path
        assert "takes no body over 65536 bytes" in json.loads(body)["error"]


@pytest.fixture
def nine_mib_file(tmp_path):
    """A file over the SDK's default_upload_threshold (8 MiB), past which put_file uploads in parts."""
    path = tmp_path / "nine.bin"
    path.write_bytes(os.urandom(9 << 20))
    return path


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_put_file_past_the_sdks_threshold_is_501_saying_how_to_upload_it_in_one_form(server, bucket,
                                                                                    nine_mib_file, version):
    ret, info = qiniu.put_file_v2(SDK.upload_token(BUCKET, "nine.bin"), "nine.bin", str(nine_mib_file),
                               regions=[qiniu.Region(up_host=server.url)], version=version)
    assert (ret, info.status_code) == (None, 501)
    assert "default_upload_threshold" in error_of(info)
    assert not (bucket / "nine.bin").exists()


def test_put_file_with_the_threshold_raised_uploads_in_one_form(server, bucket, nine_mib_file):
    threshold = qiniu.config.get_default("default_upload_threshold")
    qiniu.config.set_default(default_upload_threshold=1 << 30)
    try:
        ret, info = qiniu.put_file_v2(SDK.upload_token(BUCKET, "nine.bin"), "nine.bin", str(nine_mib_file),
                                   regions=[qiniu.Region(up_host=server.url)])
    finally:
        qiniu.config.set_default(default_upload_threshold=threshold)
    assert ret == {"hash": qiniu.utils.etag(str(nine_mib_file)), "key": "nine.bin"}, info.text_body
    assert (bucket / "nine.bin").read_bytes() == nine_mib_file.read_bytes()


class Generated:
    """`size` bytes made as they are read (never held whole), with their SHA-1."""

    BLOCK = hashlib.sha512(b"seed").digest() * 16384  # 1 MiB

    def __init__(self, size):
        self.size = size
        self.sha1 = hashlib.sha1()

    def __iter__(self):
        for index in range(0, self.size, len(self.BLOCK)):
            block = index.to_bytes(8, "big") + self.BLOCK[8: self.size - index]
            self.sha1.update(block)
            yield block


BOUNDARY = "----ufop-test-boundary"
FORM_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def form_head(token, key):
    """A multipart form's fields `token` and `key`, and the start of its file part."""
    head = "".join(f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                   for name, value in (("token", token), ("key", key)))
    head += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big\"\r\n"
             "Content-Type: application/octet-stream\r\n\r\n")
    return head.encode()


def stream_form(server, token, key, content, size):
    """POST a multipart form whose file part is `content` (an iterable of `size` bytes), with a
    Content-Length, or chunked when `size` is None; returns (status, headers, JSON body)."""
    head, tail = form_head(token, key), f"\r\n--{BOUNDARY}--\r\n".encode()
    headers = {"Content-Type": FORM_TYPE}
    if size is not None:
        headers["Content-Length"] = str(len(head) + size + len(tail))
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    try:
        connection.request("POST", "/", body=_chained([head], content, [tail]), headers=headers,
                           encode_chunked=size is None)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        connection.close()


def _chained(*parts):
    for part in parts:
        yield from part


class PeakRss:
    """The largest resident memory of `pid` seen while the block runs, sampled every 50 ms."""

    def __init__(self, pid):
        self.pid = pid
        self.peak = rss_bytes(pid)
        self.done = threading.Event()

    def __enter__(self):
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.done.set()
        self.thread.join()

    def _sample(self):
        while not self.done.wait(0.05):
            self.peak = max(self.peak, rss_bytes(self.pid))


def test_a_300_mib_upload_is_stored_whole_while_the_servers_memory_grows_far_less(server, bucket):
    size = 300 << 20
    content = Generated(size)
    before = rss_bytes(server.process.pid)
    with PeakRss(server.process.pid) as memory:
        status, headers, answer = stream_form(server, SDK.upload_token(BUCKET, "big/video.bin"),
                                              "big/video.bin", content, size)
    assert status == 200, answer
    stored = bucket / "big" / "video.bin"
    try:
        assert stored.stat().st_size == size
        assert answer == {"hash": qiniu.utils.etag(str(stored)), "key": "big/video.bin"}
        with open(stored, "rb") as file:
            assert hashlib.file_digest(file, "sha1").digest() == content.sha1.digest()
        assert memory.peak - before < 64 << 20, f"the server grew by {(memory.peak - before) >> 20} MiB"
    finally:
        stored.unlink()


def test_a_client_gone_mid_upload_leaves_nothing_and_the_server_answers_on(server, bucket):
    head = form_head(SDK.upload_token(BUCKET, "abandoned.bin"), "abandoned.bin")
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM_TYPE}\r\n"
                     f"Content-Length: {len(head) + (10 << 20)}\r\n\r\n".encode() + head)
        sock.sendall(b"a" * (2 << 20))
        server.wait_until(lambda: files_in(bucket / ".ufop-dev"), 10, "the incoming file")
    server.wait_until(lambda: not files_in(bucket / ".ufop-dev"), 10, "the incoming file to go")
    assert not (bucket / "abandoned.bin").exists()
    assert put(server, "after-the-abandoned.bin")[1].status_code == 200


@pytest.fixture(scope="module")
def small_limit_server(bucket):
    env = {**CREDENTIALS, "UFOP_MAX_UPLOAD_BYTES": "1MiB"}
    with Server(THUMBNAIL, "--bucket", f"{BUCKET}={bucket}", command="dev", env=env) as server:
        yield server


def test_an_upload_within_ufop_max_upload_bytes_is_stored_one_past_it_is_413(small_limit_server, bucket):
    ret, info = put(small_limit_server, "within-limit.bin", b"w" * (900 << 10))
    assert info.status_code == 200, info.text_body
    ret, info = put(small_limit_server, "past-limit.bin", b"p" * (1100 << 10))
    assert (ret, info.status_code) == (None, 413)
    assert "UFOP_MAX_UPLOAD_BYTES" in error_of(info)
    assert not (bucket / "past-limit.bin").exists()


def test_a_chunked_upload_past_ufop_max_upload_bytes_is_413_once_counted(small_limit_server, bucket):
    token = SDK.upload_token(BUCKET, "chunked-past-limit.bin")
    status, headers, answer = stream_form(small_limit_server, token, "chunked-past-limit.bin",
                                          Generated(2 << 20), None)
    assert status == 413, answer
    assert headers["X-Reqid"] == answer["request_id"]
    assert not (bucket / "chunked-past-limit.bin").exists()


def test_without_credentials_any_signature_is_accepted_and_dev_says_so_once(bucket):
    token = qiniu.Auth("any-access-key", "any-secret").upload_token(BUCKET, "unsigned.txt")
    with Server(THUMBNAIL, "--bucket", f"{BUCKET}={bucket}", command="dev", env=NO_CREDENTIALS) as server:
        ret, info = put(server, "unsigned.txt", token=token)
        assert info.status_code == 200, info.text_body
        assert (bucket / "unsigned.txt").read_bytes() == DATA
        assert server.output().count(UNSIGNED_WARNING) == 1
        # the policy still names the bucket and the key, and its deadline still counts
        expired = qiniu.Auth("any", "any").upload_token(BUCKET, "unsigned.txt", -60)
        assert put(server, "unsigned.txt", token=expired)[1].status_code == 401
        assert put(server, "other.txt", token=token)[1].status_code == 401
        assert post_form(server, {"token": "any:sign:not-base64-json", "key": "x.txt"}).status_code == 401
