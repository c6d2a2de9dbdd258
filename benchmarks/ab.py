"""Two checkouts of ufop-sdk served alternately in one run: what did a change cost?

    git worktree add /tmp/before <commit>
    python benchmarks/ab.py /tmp/before . [--rounds 4] [--seconds 5]

Each round measures, back to back, bare Tornado and both checkouts' ``serve``
on the trivial processor (16 connections), then both on thumbnail/200x200 of
a 1600x1200 JPEG (8 connections). Both serve this checkout's projects; only
the library differs. Prints a Markdown table: medians of the rounds, ratios
as the median of each round's own ratio, and CPU per request (server and
workers together, from /proc) for the trivial processor.
"""

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
from pathlib import Path

from run import HERE, THUMBNAIL, TRIVIAL, Process, free_port, machine, measured, paired, photo, wrk

TRIVIAL_PATH = "/handler?cmd=bench-ufop/hello"
THUMBNAIL_PATH = "/handler?cmd=thumbnail/thumbnail/200x200"


@contextlib.contextmanager
def serving(checkout, project, workers):
    """``serve`` of `project` running `checkout`'s ufop_sdk (its folder first on the path, and the
    working folder, which ``python -m`` puts first)."""
    port = free_port()
    command = [sys.executable, "-m", "ufop_sdk", "serve", "--project", str(project), "--port", str(port),
               "--host", "127.0.0.1", "--workers", str(workers)]
    here = os.getcwd()
    os.chdir(checkout)
    try:
        server = Process(command, port, {"PYTHONPATH": str(checkout), "UFOP_NAME": "bench-ufop"})
    finally:
        os.chdir(here)
    with server:
        yield server


def trivial(before, after, rounds, seconds, workers):
    bare_port = free_port()
    rates = {"bare": [], "before": [], "after": []}
    cpu = {"before": [], "after": []}
    with Process([sys.executable, str(HERE / "bare_tornado.py"), str(bare_port)], bare_port), \
            serving(before, TRIVIAL, workers) as old, serving(after, TRIVIAL, workers) as new:
        servers = {"before": old, "after": new}
        for server in servers.values():
            wrk(server.port, TRIVIAL_PATH, 1)
        for _ in range(rounds):
            rates["bare"].append(wrk(bare_port, "/handler", seconds)["rps"])
            for name, server in servers.items():
                figures = measured(server, TRIVIAL_PATH, seconds)
                rates[name].append(figures["rps"])
                cpu[name].append(figures["cpu"])
    return [
        ("trivial, 16 connections: requests/s", *_rates(rates)),
        ("... as a share of bare Tornado", f"{paired(rates['before'], rates['bare']):.0%}",
         f"{paired(rates['after'], rates['bare']):.0%}", ""),
        ("trivial: CPU per request, server and workers (µs)", f"{statistics.median(cpu['before']):.0f}",
         f"{statistics.median(cpu['after']):.0f}", ""),
    ]


def thumbnails(before, after, rounds, seconds, workers):
    rates = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as folder:
        image = Path(folder) / "photo.jpg"
        photo(image)
        with serving(before, THUMBNAIL, workers) as old, serving(after, THUMBNAIL, workers) as new:
            servers = {"before": old, "after": new}
            for server in servers.values():
                wrk(server.port, THUMBNAIL_PATH, 1, connections=8, body_file=image)
            for _ in range(rounds):
                for name, server in servers.items():
                    rates[name].append(wrk(server.port, THUMBNAIL_PATH, seconds, connections=8,
                                           body_file=image)["rps"])
    return [("thumbnail/200x200, 8 connections: requests/s", *_rates(rates))]


def _rates(rates):
    return (f"{statistics.median(rates['before']):,.0f}", f"{statistics.median(rates['after']):,.0f}",
            f"{paired(rates['after'], rates['before']):.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--trivial-only", action="store_true", help="skip the thumbnails")
    options = parser.parse_args()
    workers = os.cpu_count()
    before, after = options.before.resolve(), options.after.resolve()
    rows = trivial(before, after, options.rounds, options.seconds, workers)
    if not options.trivial_only:
        rows += thumbnails(before, after, options.rounds, options.seconds, workers)
    print(f"Machine: {machine()}; before {before}, after {after}; {workers} workers; medians of "
          f"{options.rounds} alternating rounds of {options.seconds} s\n")
    print("| measure | before | after | after / before |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
