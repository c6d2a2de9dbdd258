"""Thumbnails with Pillow: ``thumbnail/<w>x<h>`` fills and centre-crops, ``fit/<w>x<h>`` fits inside.

    ufop-sdk test photo.jpg thumbnail/200x200 -o thumb.jpg
    ufop-sdk test photo.png fit/640x480/format/webp/q/80 -o small.webp

Either takes ``/format/<jpeg|png|webp>`` (default: the input's format) and
``/q/<1-100>`` (default 85). JPEG (MPO: its first picture), PNG, WebP and GIF
(its first frame) in.
"""

import io
import math
import os

import attrs
from PIL import Image, ImageOps, UnidentifiedImageError

from ufop_sdk import BadRequest, PayloadTooLarge, Processor, choice, integer

# Checked from the header, before decoding: a small file can declare a huge image.
MAX_PIXELS = int(os.environ.get("THUMBNAIL_MAX_PIXELS", 50_000_000))
# Pillow's own check would raise its error (a 500) for the largest bombs;
# the one above answers 413 for every size over the limit.
Image.MAX_IMAGE_PIXELS = None
EXIF_ORIENTATION = 0x0112
# MPO is the multi-picture JPEG phones take (libmagic says image/jpeg): a JPEG of its first picture.
OUTPUT_FORMATS = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "WEBP": "webp", "GIF": "png"}
SAVE_OPTIONS = {"jpeg": {"optimize": False, "progressive": False}, "png": {"compress_level": 6},
                "webp": {"method": 4}}


class Thumbnail(Processor):
    route = (r"(?P<mode>thumbnail|fit)/(?P<width>[^/x]+)x(?P<height>[^/]+)"
             r"(?:/format/(?P<format>[^/]+))?(?:/q/(?P<quality>[^/]+))?")
    accepts = ("image/jpeg", "image/png", "image/webp", "image/gif")
    timeout = 20

    @attrs.frozen
    class Args:
        mode: str
        width: int = integer(1, 4096)
        height: int = integer(1, 4096)
        format: str = choice("jpeg", "png", "webp", default=None)
        quality: int = integer(1, 100, default=85)

    def process(self, req):
        args = req.args
        try:
            with Image.open(req.buffer) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise PayloadTooLarge(f"the image is {image.width}x{image.height} pixels, over the "
                                          f"limit of {MAX_PIXELS}")
                target = args.format or OUTPUT_FORMATS[image.format]
                scaled = resize(image, (args.width, args.height), fill=args.mode == "thumbnail")
                return encode(scaled, target, args.quality), f"image/{target}"
        except (UnidentifiedImageError, OSError) as exc:
            raise BadRequest(f"cannot read the image: {exc}") from None


def resize(image, size, fill):
    """`image` scaled to cover `size` and centre-cropped (fill), or to fit inside it."""
    scale = (max if fill else min)(size[0] / image.width, size[1] / image.height)
    if image.format in ("JPEG", "MPO"):
        # Decode at the smallest power-of-two reduction still at least the scaled size.
        image.draft("RGB", (math.ceil(image.width * scale), math.ceil(image.height * scale)))
    if image.getexif().get(EXIF_ORIENTATION, 1) != 1:  # most photos need no turn: skip the copy
        image = ImageOps.exif_transpose(image)
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGBA" if "transparency" in image.info or image.mode in ("P", "PA") else "RGB")
    if fill:
        return image.resize(size, Image.Resampling.BICUBIC, box=centre_crop(image.size, size),
                            reducing_gap=2.0)
    image.thumbnail(size, Image.Resampling.BICUBIC, reducing_gap=2.0)
    return image


def centre_crop(source, target):
    """The centred box of `source` with `target`'s aspect ratio."""
    width, height = source
    ratio = target[0] / target[1]
    if width / height > ratio:
        crop = height * ratio
        return ((width - crop) / 2, 0, (width + crop) / 2, height)
    crop = width / ratio
    return (0, (height - crop) / 2, width, (height + crop) / 2)


def encode(image, target, quality):
    if target == "jpeg" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    output = io.BytesIO()
    image.save(output, target, quality=quality, **SAVE_OPTIONS[target])
    return output.getvalue()
