"""The thumbnail path without a server, in a tight loop: prints thumbnails per second.

    python thumbnail_direct.py sample|pillow IMAGE SECONDS

`sample` calls the sample's own process() through ufop_sdk.testing.run (the
serving path's limit); `pillow` is the best plain-Pillow code for the same
output (JPEG draft at the target scale, centre-crop fill, encode at q85).
"""

import io
import math
import sys
import time
from pathlib import Path

from PIL import Image

SIZE = (200, 200)


def pillow(data):
    with Image.open(io.BytesIO(data)) as image:
        scale = max(SIZE[0] / image.width, SIZE[1] / image.height)
        image.draft("RGB", (math.ceil(image.width * scale), math.ceil(image.height * scale)))
        width, height = image.size
        ratio = SIZE[0] / SIZE[1]
        if width / height > ratio:
            box = ((width - height * ratio) / 2, 0, (width + height * ratio) / 2, height)
        else:
            box = (0, (height - width / ratio) / 2, width, (height + width / ratio) / 2)
        thumb = image.resize(SIZE, Image.Resampling.BICUBIC, box=box, reducing_gap=2.0)
        output = io.BytesIO()
        thumb.save(output, "jpeg", quality=85)
        return output.getvalue()


def main():
    mode, image, seconds = sys.argv[1], Path(sys.argv[2]).read_bytes(), float(sys.argv[3])
    if mode == "sample":
        from ufop_sdk.testing import run

        project = Path(__file__).resolve().parent.parent / "samples" / "thumbnail"

        def once(data):
            response = run("thumbnail/200x200", data, project=project)
            assert response.status == 200, response.body
    else:
        once = pillow
    once(image)
    count, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        once(image)
        count += 1
    print(count / seconds)


if __name__ == "__main__":
    main()
