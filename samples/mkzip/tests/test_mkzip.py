"""The mkzip sample, run in-process exactly as the server runs it, on sources from a local origin."""

import base64
import importlib.util
import io
import json
import zipfile
from pathlib import Path

import pytest

from ufop_sdk.testing import run

PROJECT = Path(__file__).resolve().parent.parent
UTF8_FLAG = 0x800


def b64(text, encoding="utf-8"):
    """URL-safe base64 without padding, as Qiniu's tools write it."""
    return base64.urlsafe_b64encode(text.encode(encoding)).decode().rstrip("=")


def entries_cmd(*entries):
    """``/url/<b64>[/alias/<b64>]`` for each (url, alias or None)."""
    return "".join(f"/url/{b64(url)}" + (f"/alias/{b64(alias)}" if alias is not None else "")
                   for url, alias in entries)


def unzipped(response, gbk=False):
    """The zip's entries as {name: bytes}, in the zip's order."""
    assert (response.status, response.content_type) == (200, "application/zip"), response.body[:300]
    with zipfile.ZipFile(io.BytesIO(response.body)) as archive:
        assert archive.testzip() is None
        # A name without zip's UTF-8 flag is read as cp437, the format's own code page (Python 3.10 has no
        # metadata_encoding): its bytes are the GBK the sample wrote.
        return {(info.filename.encode("cp437").decode("gbk") if gbk else info.filename): archive.read(info)
                for info in archive.infolist()}


def error_of(response, status):
    assert response.status == status, response.body[:300]
    return json.loads(response.body)["error"]


def test_mkzip_2_names_each_entry_by_its_alias_or_its_urls_last_segment(origin):
    first = origin.add("photos/a.jpg", b"first")
    second = origin.add("docs/b.txt", b"second")
    third = origin.add("文件 1.txt", "第三".encode())
    response = run("mkzip/2" + entries_cmd((first, None), (second, "renamed/b.txt"), (third, None)),
                   b"", project=PROJECT)
    assert unzipped(response) == {"a.jpg": b"first", "renamed/b.txt": b"second",
                                  "文件 1.txt": "第三".encode()}


def test_base64_with_padding_and_in_the_standard_alphabet_is_taken_too(origin):
    url = origin.add("padded.txt", b"x")
    encoded = base64.b64encode(url.encode()).decode()
    assert encoded.endswith("=") or len(url) % 3 == 0
    assert unzipped(run(f"mkzip/2/url/{encoded}", b"", project=PROJECT)) == {"padded.txt": b"x"}


def test_mkzip_4_reads_an_index_of_one_url_a_line(origin):
    urls = [origin.add(f"{number}.bin", bytes([number]) * number) for number in range(1, 6)]
    index = "\r\n".join(entries_cmd((url, f"n{number}.bin" if number % 2 else None))
                        for number, url in enumerate(urls, 1)) + "\n\n"
    assert unzipped(run("mkzip/4", index.encode(), project=PROJECT)) == {
        "n1.bin": b"\1", "2.bin": b"\2" * 2, "n3.bin": b"\3" * 3, "4.bin": b"\4" * 4, "n5.bin": b"\5" * 5}


def test_names_are_utf8_flagged_by_default_and_written_in_gbk_for_windows_when_asked(origin):
    url = origin.add("x.txt", b"data")
    index = (entries_cmd((url, "报告.txt")) + "\n").encode()
    default = zipfile.ZipFile(io.BytesIO(run("mkzip/4", index, project=PROJECT).body))
    assert [(info.filename, info.flag_bits & UTF8_FLAG) for info in default.infolist()] == [
        ("报告.txt", UTF8_FLAG)]
    gbk = run(f"mkzip/4/encoding/{b64('gbk')}", index, project=PROJECT)
    assert "报告.txt".encode("gbk") in gbk.body and "报告.txt".encode() not in gbk.body
    assert unzipped(gbk, gbk=True) == {"报告.txt": b"data"}
    assert not zipfile.ZipFile(io.BytesIO(gbk.body)).infolist()[0].flag_bits & UTF8_FLAG
    in_cmd = run(f"mkzip/2/encoding/{b64('gbk')}" + entries_cmd((url, "报告.txt")), b"", project=PROJECT)
    assert unzipped(in_cmd, gbk=True) == {"报告.txt": b"data"}


def test_a_duplicate_entry_name_is_400_naming_it_and_nothing_is_fetched(origin):
    first, second = origin.add("a/same.txt", b"1"), origin.add("b/same.txt", b"2")
    message = error_of(run("mkzip/2" + entries_cmd((first, None), (second, None)), b"", project=PROJECT), 400)
    assert message == f"duplicate entry name 'same.txt': for {first} and {second}"
    message = error_of(run("mkzip/2" + entries_cmd((first, "x"), (second, "x")), b"", project=PROJECT), 400)
    assert message.startswith("duplicate entry name 'x'")
    assert origin.requested == []


A_URL = b64("http://h/a")
NOT_AN_ENCODING = "invalid argument 'encoding': expected URL-safe base64 of one of utf-8, utf8, gbk, got "


@pytest.mark.parametrize("cmd, message", [
    ("mkzip/2/url/%%%", "invalid argument 'url': expected URL-safe base64, got '%%%'"),
    (f"mkzip/2/url/{A_URL}/alias/a*b", "invalid argument 'alias': expected URL-safe base64, got 'a*b'"),
    ("mkzip/2/url/_w", "invalid argument 'url': expected URL-safe base64 of utf-8 text, got '_w'"),
    (f"mkzip/2/alias/{b64('a')}", "invalid argument 'alias': expected after a 'url'"),
    (f"mkzip/2/encoding/{b64('latin-1')}/url/{A_URL}", NOT_AN_ENCODING + f"'{b64('latin-1')}'"),
    (f"mkzip/2/level/9/url/{A_URL}", "unknown argument 'level': expected one of alias, encoding, url"),
    (f"mkzip/4/encoding/{b64('big5')}", NOT_AN_ENCODING + f"'{b64('big5')}'"),
])
def test_bad_arguments_are_400_naming_the_argument(cmd, message):
    assert error_of(run(cmd, b"", project=PROJECT), 400) == message


@pytest.mark.parametrize("index, message", [
    (f"/url/{A_URL}\n/url/***\n",
     "index line 2: invalid argument 'url': expected URL-safe base64, got '***'"),
    (f"/url/{A_URL}/alias/{b64('a')}/alias/{b64('b')}",
     "index line 1: invalid argument 'alias': given more than once"),
    (f"/url/{A_URL}/url/{A_URL}", "index line 1: invalid argument 'url': given more than once"),
    ("\n\n", "the index has no URL: expected one /url/<base64>[/alias/<base64>] a line"),
    ("/url/é", "index line 1: expected /url/<base64>[/alias/<base64>], got bytes that are not ASCII"),
])
def test_a_bad_index_is_400_naming_the_line(index, message):
    assert error_of(run("mkzip/4", index.encode(), project=PROJECT), 400) == message


@pytest.mark.parametrize("alias", ["../escape.txt", "/etc/passwd", "a//b", "folder/", "./a", "a\0b"])
def test_an_entry_name_must_be_a_relative_file_path(origin, alias):
    url = origin.add("a.txt", b"a")
    message = error_of(run("mkzip/2" + entries_cmd((url, alias)), b"", project=PROJECT), 400)
    assert message.startswith(f"entry name {alias!r} (for {url}) must be a relative file path")


def test_a_url_without_a_file_name_needs_an_alias(origin):
    url = origin.url("folder/")
    assert error_of(run("mkzip/2" + entries_cmd((url, None)), b"", project=PROJECT), 400) == (
        f"no entry name for {url}: its path ends without a file name; give it an alias")


def test_a_name_gbk_cannot_write_is_400_when_gbk_is_asked():
    cmd = f"mkzip/2/encoding/{b64('gbk')}" + entries_cmd(("http://h/a", "emoji-😀.txt"))
    assert error_of(run(cmd, b"", project=PROJECT), 400) == (
        "entry name 'emoji-😀.txt' (for http://h/a) cannot be written in gbk")


def test_more_than_1000_urls_in_a_cmd_is_400():
    cmd = "mkzip/2" + entries_cmd(*[(f"http://h/{number}", None) for number in range(1001)])
    assert error_of(run(cmd, b"", project=PROJECT), 400) == "invalid argument 'url': 1001 given, at most 1000"


def test_an_unreachable_source_is_502_naming_it(origin):
    good = origin.add("good.txt", b"fine")
    missing = origin.url("missing.txt")
    message = error_of(run("mkzip/2" + entries_cmd((good, None), (missing, None)), b"", project=PROJECT), 502)
    assert message.startswith(f"fetching {missing}: ")


def test_write_zip_uses_zip64_past_65535_entries():
    spec = importlib.util.spec_from_file_location("mkzip_processors", PROJECT / "processors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    output = io.BytesIO()
    module.write_zip(output, ((f"{number}.txt", io.BytesIO(b"%d" % number), len(b"%d" % number))
                       for number in range(70_000)))
    assert b"PK\x06\x06" in output.getvalue()[-200:]  # the ZIP64 end of central directory record
    with zipfile.ZipFile(output) as archive:
        assert len(archive.infolist()) == 70_000
        assert archive.read("69999.txt") == b"69999"
