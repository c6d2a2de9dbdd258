"""Tests of the processors, run in-process exactly as the server runs them."""

import hashlib
import json
from pathlib import Path

from ufop_sdk.testing import run

PROJECT = Path(__file__).resolve().parent.parent


def test_info_describes_the_input():
    data = b"hello, ufop"
    response = run("", data, project=PROJECT)
    assert response.status == 200
    info = json.loads(response.body)
    assert info == {"content_type": "text/plain", "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest()}


def test_hello_greets_by_name():
    assert run("hello/qq", b"", project=PROJECT).body == b"hello qq"
    assert run("hello", b"", project=PROJECT).body == b"hello world"


def test_unknown_cmd_is_404():
    response = run("no/such/cmd", b"", project=PROJECT)
    assert response.status == 404
    assert "error" in json.loads(response.body)
