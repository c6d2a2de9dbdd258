"""The hello sample: the older qiniu-ufop quickstart."""

import struct
import zlib
from pathlib import Path

from ufop_sdk.testing import run

PROJECT = Path(__file__).resolve().parent.parent


def test_hello_by_name_and_bare():
    assert run("qq", b"", project=PROJECT).body == b"hello qq"
    assert run("", b"", project=PROJECT).body == b"hello world"


def test_echo_gives_the_input_back_with_its_type():
    header = b"IHDR" + struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + header + struct.pack(">I", zlib.crc32(header))
    response = run("echo", png, project=PROJECT)
    assert (response.body, response.content_type) == (png, "image/png")
