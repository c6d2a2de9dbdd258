"""dev's bucket folders: naming them, reading keys, and writing keys without ever leaving the folder.

Real folders, files and symlinks under tmp_path; the CLI's refusals through a
real ``ufop-sdk dev`` subprocess. A file ``secret`` next to the bucket shows
any write or read that escapes it.
"""

import io
import os
from types import SimpleNamespace

import pytest
import qiniu.utils
from support import SAMPLES, run_cli

from ufop_sdk.dev.buckets import STATE_FOLDER, Bucket, Buckets, NoSuchBucket
from ufop_sdk.dev.qiniu_auth import Etag
from ufop_sdk.errors import BadRequest, Forbidden, NotFound

SECRET = b"the secret next to the bucket"


@pytest.fixture
def bucket(tmp_path):
    (tmp_path / "secret").write_bytes(SECRET)
    (tmp_path / "outside").mkdir()
    folder = tmp_path / "photos"
    (folder / "cats").mkdir(parents=True)
    (folder / "cats" / "tom.jpg").write_bytes(b"tom")
    (folder / "link-to-secret").symlink_to(tmp_path / "secret")
    (folder / "link-to-outside").symlink_to(tmp_path / "outside", target_is_directory=True)
    return Bucket("photos", folder)


def write(bucket, key, data):
    with bucket.incoming() as file:
        file.write(data)
        bucket.commit(file, key)


def leftovers(bucket):
    """Files being written that were never made keys."""
    return sorted(path.name for path in (bucket.root / STATE_FOLDER).glob("incoming-*"))


def test_a_bucket_option_is_named_after_its_folder_or_by_name_equals(tmp_path):
    assert Bucket.from_option(str(tmp_path)).name == tmp_path.name
    named = Bucket.from_option(f"media={tmp_path}")
    assert (named.name, named.root) == ("media", tmp_path.resolve())


@pytest.mark.parametrize("value, message", [
    ("{dir}/missing", "is not a folder"), ("=/{dir}", "cannot be empty"),
    ("a/b={dir}", "cannot be empty or hold")])
def test_a_bad_bucket_option_says_what_is_wrong(tmp_path, value, message):
    with pytest.raises(ValueError, match=message):
        Bucket.from_option(value.format(dir=tmp_path))


def test_buckets_refuse_two_of_one_name_and_name_the_served_ones_for_an_unknown_one(tmp_path):
    with pytest.raises(ValueError, match="two buckets are named 'a'"):
        Buckets([Bucket("a", tmp_path), Bucket("a", tmp_path)])
    with pytest.raises(NoSuchBucket, match="no such bucket 'c': dev serves 'a', 'b'") as refused:
        Buckets([Bucket("a", tmp_path), Bucket("b", tmp_path)])["c"]
    assert refused.value.status == 631


@pytest.mark.parametrize("host, name", [
    ("127.0.0.1:9100", "a"), ("b.localhost:9100", "b"), ("b.localhost", "b"), ("c.localhost:9100", "a")])
def test_the_host_name_localhost_chooses_the_bucket_a_get_reads(tmp_path, host, name):
    assert Buckets([Bucket("a", tmp_path), Bucket("b", tmp_path)]).for_host(host).name == name


def test_a_source_url_names_the_bucket_by_host_unless_it_is_the_default(tmp_path):
    buckets = Buckets([Bucket("a", tmp_path), Bucket("b", tmp_path)])
    request = SimpleNamespace(protocol="http", host="127.0.0.1:9100")
    assert buckets.url(buckets["a"], "x y.jpg", request) == "http://127.0.0.1:9100/x%20y.jpg"
    assert buckets.url(buckets["b"], "k", request) == "http://b.localhost:9100/k"


def test_a_key_reads_its_file_and_nothing_outside_or_in_the_state_folder(bucket):
    assert bucket.file("cats/tom.jpg").read_bytes() == b"tom"
    write(bucket, "new.txt", b"x")  # makes the state folder
    for key, refusal in [("link-to-secret", Forbidden), ("../secret", Forbidden), ("missing", NotFound),
                         (f"{STATE_FOLDER}/jobs", Forbidden), ("a\0b", BadRequest)]:
        with pytest.raises(refusal):
            bucket.file(key)


def test_a_written_key_creates_its_folders_and_replaces_an_older_file(bucket):
    write(bucket, "a/b/c.txt", b"first")
    write(bucket, "a/b/c.txt", b"second")
    assert (bucket.root / "a" / "b" / "c.txt").read_bytes() == b"second"
    assert leftovers(bucket) == []


def test_writing_over_a_symlink_replaces_the_link_not_the_file_it_points_to(bucket):
    write(bucket, "link-to-secret", b"new")
    assert (bucket.root.parent / "secret").read_bytes() == SECRET
    assert not (bucket.root / "link-to-secret").is_symlink()
    assert (bucket.root / "link-to-secret").read_bytes() == b"new"


@pytest.mark.parametrize("key, refusal", [
    ("../x", BadRequest), ("a/../../x", BadRequest), ("a//b", BadRequest), ("./a", BadRequest),
    ("", BadRequest),
    ("link-to-outside/x", Forbidden), (f"{STATE_FOLDER}/jobs/x.json", Forbidden), ("cats", BadRequest)])
def test_a_key_that_would_write_outside_the_bucket_or_over_a_folder_is_refused(bucket, key, refusal):
    assert bucket.state.is_dir()  # made before the write, which would make it
    before = sorted(bucket.root.parent.rglob("*"))
    with pytest.raises(refusal):
        write(bucket, key, b"escaped")
    assert sorted(bucket.root.parent.rglob("*")) == before
    assert (bucket.root.parent / "secret").read_bytes() == SECRET
    assert leftovers(bucket) == []


def test_a_write_that_fails_midway_leaves_neither_the_key_nor_its_partial_file(bucket):
    with pytest.raises(OSError), bucket.incoming() as file:
        file.write(b"half")
        raise OSError("the producer failed")
    assert not (bucket.root / "half.txt").exists()
    assert leftovers(bucket) == []


@pytest.mark.parametrize("size, piece", [(0, 1), (5, 2), (4 << 20, 65537), ((9 << 20) + 3, 1 << 20)])
def test_the_etag_fed_in_pieces_is_the_sdks(size, piece):
    data = os.urandom(size)
    etag = Etag()
    for start in range(0, size, piece):
        etag.update(data[start:start + piece])
    assert etag.value() == qiniu.utils.etag_stream(io.BytesIO(data))


@pytest.mark.parametrize("args, message", [
    (["--bucket", "photos=/no/such/folder"], "'/no/such/folder' is not a folder"),
    (["--bucket", "a={dir}", "--bucket", "a={dir}"], "two buckets are named 'a'")])
def test_dev_refuses_a_bad_bucket_option_with_a_message_and_exit_2(tmp_path, args, message):
    options = [arg.format(dir=tmp_path) for arg in args]
    done = run_cli("dev", "--project", SAMPLES / "hello", *options, timeout=30)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr.decode()
    assert b"Traceback" not in done.stderr
