"""What a file is: ``fileinfo`` (or the bare name) answers JSON.

    ufop-sdk test photo.jpg
    {"content_type": "image/jpeg", "size": 233114, "md5": "...", "sha1": "...", "sha256": "...",
     "image": {"width": 1600, "height": 1200, "format": "JPEG", "mode": "RGB", "orientation": 1}}
"""

import hashlib

from PIL import Image, UnidentifiedImageError

from ufop_sdk import Processor

EXIF_ORIENTATION = 0x0112
CHUNK = 1 << 20


class FileInfo(Processor):
    route = r"(?:fileinfo)?"

    def process(self, req):
        digests = {name: hashlib.new(name) for name in ("md5", "sha1", "sha256")}
        for chunk in iter(lambda: req.buffer.read(CHUNK), b""):
            for digest in digests.values():
                digest.update(chunk)
        info = {"content_type": req.content_type, "size": req.size,
                **{name: digest.hexdigest() for name, digest in digests.items()}}
        if req.content_type.startswith("image/"):
            req.buffer.seek(0)
            info["image"] = describe_image(req.buffer)
        return info


def describe_image(buffer):
    """Width, height, format, mode and EXIF orientation, from the header (nothing is decoded)."""
    try:
        with Image.open(buffer) as image:
            return {"width": image.width, "height": image.height, "format": image.format,
                    "mode": image.mode, "orientation": image.getexif().get(EXIF_ORIENTATION)}
    except (UnidentifiedImageError, OSError) as exc:
        return {"error": f"not a readable image: {exc}"}
