"""dev's checks of the platform's signatures, against tokens and etags the official SDK (`qiniu`) makes."""

import io
import os

import pytest
import qiniu
import qiniu.utils
import requests
from qiniu.auth import RequestsAuth

from ufop_sdk.dev.qiniu_auth import Credentials, Unauthorized, etag

ACCESS_KEY, SECRET_KEY = "test-access-key", "test-secret-key"
OURS = Credentials(ACCESS_KEY, SECRET_KEY)
SDK = qiniu.Auth(ACCESS_KEY, SECRET_KEY)


def signed_by_the_sdk(method, url, data=None, auth=SDK):
    """A request as the SDK's PersistentFop sends it: (Authorization, path and query, body, content type)."""
    prepared = requests.Request(method, url, data=data, auth=RequestsAuth(auth)).prepare()
    path = prepared.path_url
    body = prepared.body.encode() if isinstance(prepared.body, str) else prepared.body or b""
    return prepared.headers["Authorization"], path, body, prepared.headers.get("Content-Type")


def test_a_pfop_call_signed_by_the_sdk_passes():
    form = {"bucket": "photos", "key": "cat.mp4", "fops": "video/avinfo;video/vframe/jpg/offset/1"}
    OURS.check_management(*signed_by_the_sdk("POST", "http://127.0.0.1:9100/pfop/", form))


def test_a_status_call_signed_by_the_sdk_passes():
    OURS.check_management(*signed_by_the_sdk("GET", "http://127.0.0.1:9100/status/get/prefop?id=z0.abc"))


@pytest.mark.parametrize("tamper, complaint", [
    (lambda a, p, b, t: (a, p, b.replace(b"cat", b"dog"), t), "signature does not match"),
    (lambda a, p, b, t: (a, p.replace("pfop", "pfop2"), b, t), "signature does not match"),
    (lambda a, p, b, t: (a.replace("QBox ", "Qiniu "), p, b, t), "expected an Authorization header"),
    (lambda a, p, b, t: (None, p, b, t), "expected an Authorization header"),
    (lambda a, p, b, t: (a.replace(ACCESS_KEY, "another-key"), p, b, t), "names another access key"),
], ids=["body", "path", "scheme", "missing", "access-key"])
def test_a_management_token_that_does_not_fit_the_request_is_401(tamper, complaint):
    signed = signed_by_the_sdk("POST", "http://127.0.0.1:9100/pfop/", {"bucket": "b", "key": "cat.mp4"})
    with pytest.raises(Unauthorized, match=complaint) as raised:
        OURS.check_management(*tamper(*signed))
    assert raised.value.status == 401


def test_a_token_signed_with_another_secret_key_is_401():
    signed = signed_by_the_sdk("POST", "http://127.0.0.1:9100/pfop", {"key": "x"},
                               auth=qiniu.Auth(ACCESS_KEY, "another-secret"))
    with pytest.raises(Unauthorized, match="signature does not match"):
        OURS.check_management(*signed)


def test_an_upload_token_for_the_key_passes_and_gives_its_policy():
    policy = OURS.check_upload_token(SDK.upload_token("photos", "cat.jpg", 3600, {"returnBody": "x"}),
                                     "photos", "cat.jpg")
    assert (policy["scope"], policy["returnBody"]) == ("photos:cat.jpg", "x")


def test_an_upload_token_for_the_bucket_covers_every_key():
    OURS.check_upload_token(SDK.upload_token("photos"), "photos", "any/key.jpg")


def test_a_prefixal_scope_covers_the_keys_under_it_only():
    token = SDK.upload_token("photos", "2026/", 3600, {"isPrefixalScope": 1})
    OURS.check_upload_token(token, "photos", "2026/cat.jpg")
    with pytest.raises(Unauthorized, match="does not cover"):
        OURS.check_upload_token(token, "photos", "2025/cat.jpg")


@pytest.mark.parametrize("bucket, key", [("photos", "dog.jpg"), ("videos", "cat.jpg")])
def test_an_upload_token_whose_scope_does_not_cover_the_upload_is_401(bucket, key):
    with pytest.raises(Unauthorized, match="does not cover"):
        OURS.check_upload_token(SDK.upload_token("photos", "cat.jpg"), bucket, key)


def test_an_expired_upload_token_is_401():
    token = SDK.upload_token("photos", "cat.jpg", 60)
    deadline = SDK.up_token_decode(token)[2]["deadline"]
    OURS.check_upload_token(token, "photos", "cat.jpg", now=deadline)
    with pytest.raises(Unauthorized, match="expired"):
        OURS.check_upload_token(token, "photos", "cat.jpg", now=deadline + 1)


@pytest.mark.parametrize("token", ["", "no-colons", f"{ACCESS_KEY}:sign:not*base64",
                                   f"{ACCESS_KEY}:{OURS.sign('bm90IGpzb24=')}:bm90IGpzb24="])
def test_a_malformed_upload_token_is_401(token):
    with pytest.raises(Unauthorized):
        OURS.check_upload_token(token, "photos", "cat.jpg")


def test_credentials_come_from_the_environment_or_not_at_all():
    both = {"QINIU_ACCESS_KEY": "a", "QINIU_SECRET_KEY": "s"}
    assert Credentials.from_environment(both) == Credentials("a", "s")
    assert Credentials.from_environment({"QINIU_ACCESS_KEY": "a"}) is None
    assert "secret" not in repr(Credentials("a", "secret"))


@pytest.mark.parametrize("size", [0, 1, 4 << 20, (4 << 20) + 1, 9 << 20])
def test_the_etag_is_the_sdks(size):
    data = os.urandom(size)
    assert etag(io.BytesIO(data)) == qiniu.utils.etag_stream(io.BytesIO(data))
