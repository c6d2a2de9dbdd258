"""samples/mkzip through a real ``ufop-sdk serve`` and its workers, on sources from a local origin."""

import base64
import io
import json
import zipfile

import pytest
from redis_support import Worker
from support import SAMPLES, Origin, Server

MKZIP = SAMPLES / "mkzip"
# The origins are on loopback, which servers and workers refuse to fetch from by default.
LOOPBACK_ALLOWED = {"UFOP_BLOCKED_NETWORKS": "none"}


@pytest.fixture(scope="module")
def spool_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("spool")


@pytest.fixture(scope="module")
def server(spool_dir):
    env = {**LOOPBACK_ALLOWED, "UFOP_SPOOL_DIR": str(spool_dir)}
    with Server(MKZIP, "--host", "127.0.0.1", env=env) as server:
        yield server


@pytest.fixture
def origin():
    with Origin() as origin:
        yield origin


def b64(text, encoding="utf-8"):
    return base64.urlsafe_b64encode(text.encode(encoding)).decode()


def entries_cmd(*entries):
    return "".join(f"/url/{b64(url)}" + (f"/alias/{b64(alias)}" if alias else "") for url, alias in entries)


def unzipped(answer, gbk=False):
    status, headers, body = answer
    assert (status, headers["Content-Type"]) == (200, "application/zip"), body[:300]
    assert int(headers["Content-Length"]) == len(body)
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        # A name without zip's UTF-8 flag is read as cp437, the format's own code page (Python 3.10 has no
        # metadata_encoding): its bytes are the GBK the sample wrote.
        return {(info.filename.encode("cp437").decode("gbk") if gbk else info.filename): archive.read(info)
                for info in archive.infolist()}


def error_of(answer, status):
    assert answer[0] == status, answer[2][:300]
    assert answer[1]["Content-Type"].startswith("application/json")
    return json.loads(answer[2])["error"]


def test_mkzip_2_names_entries_by_alias_and_by_the_urls_last_segment(server, origin):
    origin.serve("/photos/cat.jpg", b"\xff\xd8 a cat")
    origin.serve("/docs/%E8%AF%B4%E6%98%8E.txt", "说明".encode())
    cmd = "mkzip-ufop/mkzip/2" + entries_cmd((origin.url("/photos/cat.jpg"), "animals/猫.jpg"),
                                             (origin.url("/docs/%E8%AF%B4%E6%98%8E.txt"), None),
                                             (origin.url("/photos/cat.jpg"), None))
    assert unzipped(server.post(cmd)) == {"animals/猫.jpg": b"\xff\xd8 a cat", "说明.txt": "说明".encode(),
                                          "cat.jpg": b"\xff\xd8 a cat"}


def test_mkzip_2_takes_1000_urls_in_one_cmd(server, origin):
    entries = []
    for number in range(1000):
        origin.serve(f"/files/{number:04d}.txt", b"%d" % number)
        entries.append((origin.url(f"/files/{number:04d}.txt"), f"n/{number}.txt" if number % 2 else None))
    cmd = "mkzip-ufop/mkzip/2" + entries_cmd(*entries)
    assert len(cmd) > 64 << 10
    files = unzipped(server.post(cmd, timeout=120))
    assert list(files) == [f"n/{n}.txt" if n % 2 else f"{n:04d}.txt" for n in range(1000)]
    assert all(data == b"%d" % n for n, data in enumerate(files.values()))


def test_mkzip_4_takes_an_index_as_the_body_or_from_the_url_with_names_in_utf8_or_gbk(server, origin):
    origin.serve("/a.txt", b"alpha")
    origin.serve("/b.txt", b"beta")
    lines = [entries_cmd((origin.url("/a.txt"), "甲.txt")), entries_cmd((origin.url("/b.txt"), None))]
    index = "\n".join(lines) + "\n"
    origin.serve("/index.txt", index.encode(), content_type="text/plain")
    expected = {"甲.txt": b"alpha", "b.txt": b"beta"}
    assert unzipped(server.post("mkzip-ufop/mkzip/4", index.encode())) == expected
    assert unzipped(server.post("mkzip-ufop/mkzip/4", url=origin.url("/index.txt"))) == expected
    gbk = server.post(f"mkzip-ufop/mkzip/4/encoding/{b64('gbk')}", index.encode())
    assert "甲.txt".encode("gbk") in gbk[2]
    assert unzipped(gbk, gbk=True) == expected


def test_a_duplicate_name_is_400_naming_it_before_anything_is_fetched(server, origin):
    origin.serve("/x/same.txt", b"1")
    origin.serve("/y/same.txt", b"2")
    first, second = origin.url("/x/same.txt"), origin.url("/y/same.txt")
    cmd = "mkzip-ufop/mkzip/2" + entries_cmd((first, None), (second, None))
    assert error_of(server.post(cmd), 400) == f"duplicate entry name 'same.txt': for {first} and {second}"
    assert origin.requests == []


def test_bad_base64_is_400_naming_the_key(server):
    assert error_of(server.post("mkzip-ufop/mkzip/2/url/not*base64"), 400) == (
        "invalid argument 'url': expected URL-safe base64, got 'not*base64'")
    assert error_of(server.post("mkzip-ufop/mkzip/4", b"/url/aGk/alias/%%\n"), 400) == (
        "index line 1: invalid argument 'alias': expected URL-safe base64, got '%%'")


def test_an_unreachable_source_is_502_naming_it_with_no_byte_of_the_zip_and_nothing_left(server, origin,
                                                                                          spool_dir):
    # Twenty sources of 1 MiB are written into the zip while the last, missing one is awaited.
    entries = []
    for number in range(20):
        origin.serve(f"/big/{number}.bin", bytes([number]) * (1 << 20))
        entries.append((origin.url(f"/big/{number}.bin"), None))
    origin.serve("/late/missing.bin", b"gone", status=404, delay=0.5)
    entries.append((origin.url("/late/missing.bin"), None))
    answer = server.post("mkzip-ufop/mkzip/2" + entries_cmd(*entries))
    assert error_of(answer, 502).startswith(f"fetching {origin.url('/late/missing.bin')}: ")
    assert b"PK" not in answer[2]
    assert "/late/missing.bin" in origin.requests
    server.wait_until(lambda: not list(spool_dir.glob("*/ufop-work-*")), 5, "the workdir to be removed")


def test_mkzip_runs_on_a_celery_worker(redis_server, origin):
    origin.serve("/one.txt", b"1")
    origin.serve("/two.txt", b"22")
    entries = entries_cmd((origin.url("/one.txt"), None), (origin.url("/two.txt"), "2/two.txt"))
    broker = {"UFOP_BROKER_URL": redis_server.url(0)}
    with Worker(MKZIP, redis_server.url(0), env=LOOPBACK_ALLOWED), \
            Server(MKZIP, "--host", "127.0.0.1", env={**LOOPBACK_ALLOWED, **broker}) as server:
        assert unzipped(server.post("mkzip-ufop/mkzip/2" + entries)) == {"one.txt": b"1", "2/two.txt": b"22"}
        missing = entries + entries_cmd((origin.url("/three.txt"), None))
        assert error_of(server.post("mkzip-ufop/mkzip/2" + missing), 502).startswith(
            f"fetching {origin.url('/three.txt')}: ")
