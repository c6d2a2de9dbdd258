"""The fileinfo sample, run in-process exactly as the server runs it."""

import hashlib
import io
import json
from pathlib import Path

from PIL import Image

from ufop_sdk.testing import run

PROJECT = Path(__file__).resolve().parent.parent


def test_any_file_gets_type_size_and_digests():
    data = b"hello, fileinfo"
    info = json.loads(run("", data, project=PROJECT).body)
    assert info == {"content_type": "text/plain", "size": len(data),
                    "md5": hashlib.md5(data).hexdigest(), "sha1": hashlib.sha1(data).hexdigest(),
                    "sha256": hashlib.sha256(data).hexdigest()}


def test_an_image_also_gets_its_geometry_and_orientation():
    exif = Image.Exif()
    exif[0x0112] = 6
    output = io.BytesIO()
    Image.new("RGB", (320, 240)).save(output, "JPEG", exif=exif)
    info = json.loads(run("fileinfo", output.getvalue(), project=PROJECT).body)
    assert info["content_type"] == "image/jpeg"
    assert info["image"] == {"width": 320, "height": 240, "format": "JPEG", "mode": "RGB",
                             "orientation": 6}


def test_a_png_without_exif_has_no_orientation():
    output = io.BytesIO()
    Image.new("RGBA", (5, 7)).save(output, "PNG")
    assert json.loads(run("", output.getvalue(), project=PROJECT).body)["image"] == {
        "width": 5, "height": 7, "format": "PNG", "mode": "RGBA", "orientation": None}
