"""The thumbnail sample, run in-process exactly as the server runs it."""

import io
import json
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from ufop_sdk.testing import run

PROJECT = Path(__file__).resolve().parent.parent


def image_bytes(format, size=(1600, 1200), mode="RGB", **save):
    image = Image.new(mode, size, (200, 120, 40) if mode == "RGB" else None)
    output = io.BytesIO()
    image.save(output, format, **save)
    return output.getvalue()


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def decoded(response):
    return Image.open(io.BytesIO(response.body))


@pytest.mark.parametrize("format, content_type", [("JPEG", "image/jpeg"), ("PNG", "image/png"),
                                                  ("WEBP", "image/webp"), ("GIF", "image/png")])
def test_thumbnail_fills_and_keeps_the_format(format, content_type):
    response = run("thumbnail/200x100", image_bytes(format), project=PROJECT)
    assert response.status == 200, response.body
    assert response.content_type == content_type
    assert decoded(response).size == (200, 100)


def test_fit_keeps_the_aspect_ratio_inside_the_box():
    response = run("fit/200x200", image_bytes("JPEG"), project=PROJECT)
    assert decoded(response).size == (200, 150)


def test_fill_centre_crops():
    image = Image.new("RGB", (300, 100), (255, 0, 0))
    image.paste((0, 0, 255), (100, 0, 200, 100))  # blue in the middle third
    output = io.BytesIO()
    image.save(output, "PNG")
    thumb = decoded(run("thumbnail/50x50", output.getvalue(), project=PROJECT))
    assert thumb.size == (50, 50)
    assert thumb.convert("RGB").getpixel((25, 25))[2] > 200  # the centre stays blue


@pytest.mark.parametrize("format", ["jpeg", "png", "webp"])
def test_format_and_quality_can_be_asked_for(format):
    response = run(f"fit/64x64/format/{format}/q/50", image_bytes("PNG"), project=PROJECT)
    assert response.content_type == f"image/{format}"
    assert decoded(response).format == format.upper()


def test_quality_changes_the_size():
    source = Image.effect_noise((400, 400), 60).convert("RGB")
    output = io.BytesIO()
    source.save(output, "PNG")
    low = run("fit/300x300/format/jpeg/q/10", output.getvalue(), project=PROJECT).body
    high = run("fit/300x300/format/jpeg/q/95", output.getvalue(), project=PROJECT).body
    assert len(low) < len(high)


def test_a_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (40, 40), color) for color in ((255, 0, 0), (0, 255, 0))]
    output = io.BytesIO()
    frames[0].save(output, "GIF", save_all=True, append_images=frames[1:])
    thumb = decoded(run("fit/20x20", output.getvalue(), project=PROJECT)).convert("RGB")
    red, green, _ = thumb.getpixel((10, 10))
    assert red > 200 and green < 50


@pytest.mark.parametrize("cmd, message", [
    ("thumbnail/0x10", "invalid argument 'width': expected an integer 1-4096, got '0'"),
    ("thumbnail/4097x10", "invalid argument 'width': expected an integer 1-4096, got '4097'"),
    ("fit/10xabc", "invalid argument 'height': expected an integer 1-4096, got 'abc'"),
    ("fit/10x10/format/gif", "invalid argument 'format': expected one of jpeg, png, webp, got 'gif'"),
    ("fit/10x10/q/0", "invalid argument 'quality': expected an integer 1-100, got '0'"),
])
def test_bad_arguments_are_400_naming_the_argument(cmd, message):
    response = run(cmd, image_bytes("PNG", (20, 20)), project=PROJECT)
    assert response.status == 400
    assert json.loads(response.body)["error"] == message


def test_a_broken_image_is_400():
    response = run("fit/10x10", image_bytes("PNG")[:60], project=PROJECT)
    assert response.status == 400
    assert "cannot read the image" in json.loads(response.body)["error"]


def test_anything_but_an_image_is_415():
    response = run("fit/10x10", b"%PDF-1.4 not an image", project=PROJECT)
    assert response.status == 415


def test_a_decompression_bomb_is_413_before_decoding():
    # A valid PNG header declaring 30000 x 30000 pixels, with almost no data behind it.
    png = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)) \
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + png_chunk(b"IEND", b"")
    response = run("fit/10x10", png, project=PROJECT)
    assert response.status == 413
    assert "30000x30000" in json.loads(response.body)["error"]


def test_an_exif_rotated_photo_comes_out_upright():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to display
    output = io.BytesIO()
    Image.new("RGB", (400, 200)).save(output, "JPEG", exif=exif)
    assert decoded(run("fit/100x100", output.getvalue(), project=PROJECT)).size == (50, 100)


def mpo_bytes(size=(1600, 1200)):
    """A multi-picture JPEG as phones take (a second view after the first), made by Pillow."""
    left = Image.new("RGB", size, (250, 20, 20))
    right = Image.new("RGB", size, (20, 20, 250))
    output = io.BytesIO()
    left.save(output, "MPO", save_all=True, append_images=[right])
    return output.getvalue()


def test_a_multi_picture_jpeg_is_a_jpeg_of_its_first_picture():
    mpo = mpo_bytes()
    assert Image.open(io.BytesIO(mpo)).format == "MPO", "the source must be a real MPO"
    response = run("thumbnail/200x100", mpo, project=PROJECT)
    assert (response.status, response.content_type) == (200, "image/jpeg"), response.body[:300]
    thumb = decoded(response)
    assert (thumb.format, thumb.size) == ("JPEG", (200, 100))
    red, _, blue = thumb.getpixel((100, 50))
    assert red > 200 and blue < 60
