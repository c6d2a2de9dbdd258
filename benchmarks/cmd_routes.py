"""How long routing takes on the longest cmd UFOP_MAX_CMD_BYTES lets through: routes run on the event loop.

    python benchmarks/cmd_routes.py [--slow]

Each sample's route table resolves a cmd of mkzip's 1000 URLs with aliases,
padded to the limit (the first route that matches, or all of them for a cmd
that matches none), and so do a few single routes. A route that backtracks
quadratically is timed at 4 and 64 KiB (with --slow, at the limit too: minutes).
"""

import argparse
import base64
import re
import time
from pathlib import Path

from ufop_sdk.app.project import load_app
from ufop_sdk.app.settings import Settings

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
URL = "http://7xkv1q.com1.z0.glb.clouddn.com/photos/2024/05/IMG_20240501_{:06d}.jpg"
SINGLE_ROUTES = [r"(?P<x>.*)", r"(?P<a>[^/]+)/(?P<b>.*)", r"mkzip/2(?P<options>(?:/[^/]+/[^/]+)*)"]
QUADRATIC = r"(?P<a>.+)/(?P<b>.+)x"


def b64(text):
    return base64.urlsafe_b64encode(text.encode()).decode()


def mkzip_params(size):
    """mkzip/2 with 1000 URLs and aliases, padded with more URLs to `size` characters (0: as it is)."""
    entries, number = ["mkzip/2"], 0
    while sum(map(len, entries)) < size or number < 1000:
        entries.append(f"/url/{b64(URL.format(number))}/alias/{b64(f'photo-{number:06d}.jpg')}")
        number += 1
    return "".join(entries)[:size or None]


def milliseconds(match, text, rounds=20):
    began = time.perf_counter()
    for _ in range(rounds):
        match(text)
    return (time.perf_counter() - began) / rounds * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", action="store_true", help="time the quadratic route at the limit too")
    options = parser.parse_args()
    limit = Settings().max_cmd_bytes
    params = mkzip_params(limit)
    print(f"a cmd of {len(params)} characters (UFOP_MAX_CMD_BYTES's default; 1000 URLs with aliases make "
          f"{len(mkzip_params(0))})\n")
    print("| routes | ms to match |\n|---|---|")
    for project in sorted(path for path in SAMPLES.iterdir() if (path / "processors.py").exists()):
        routes = load_app(Settings.load(project, environ={})).routes
        print(f"| samples/{project.name} (all its routes) | {milliseconds(routes.match, params):.3f} |")
    for route in SINGLE_ROUTES:
        print(f"| `{route}` | {milliseconds(re.compile(route).fullmatch, params):.3f} |")
    for size in (4 << 10, 64 << 10, *([limit] if options.slow else [])):
        text = ("a/" * size)[:size]
        print(f"| `{QUADRATIC}`, {size >> 10} KiB, no match | "
              f"{milliseconds(re.compile(QUADRATIC).fullmatch, text, rounds=1):.0f} |")


if __name__ == "__main__":
    main()
