"""samples/video through ``ufop-sdk serve`` against ffmpeg run by hand: the framework's overhead on a
child-process workload.

    python benchmarks/video.py [--rounds 9]

Makes a 10 s 640x360 H.264 and AAC clip (about 2 MiB) with ffmpeg's lavfi sources and serves
samples/video with one worker. Each cmd is timed as a client sees it (POST the clip, read the whole
answer) and against the very command line the sample builds (its own builder functions), run by hand
on the same file with its output in a temporary folder; the two alternate, one at a time. Prints a
Markdown table of the medians; the overhead and the ratio are the medians of each round's own.
"""

import argparse
import http.client
import importlib.util
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from run import HERE, free_port, paired, serve

VIDEO = HERE.parent / "samples" / "video"
CLIP = ["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=10", "-f", "lavfi", "-i",
        "sine=duration=10", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"]


def load_sample():
    spec = importlib.util.spec_from_file_location("video_processors", VIDEO / "processors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cases(sample, source, folder):
    """(cmd, the command line the sample runs for it on `source`)."""
    frame, transcode = sample.FrameOptions, sample.TranscodeOptions
    return [
        ("avinfo", sample.avinfo_command(source)),
        ("vframe/jpg/offset/5/w/320",
         sample.vframe_command("jpg", frame(offset="5", w="320"), source, folder / "frame.jpg")),
        ("avthumb/mp4/s/320x180",
         sample.avthumb_command("mp4", transcode(s="320x180"), source, folder / "out.mp4")),
        ("avthumb/webm/s/320x180",
         sample.avthumb_command("webm", transcode(s="320x180"), source, folder / "out.webm")),
    ]


def by_hand(command):
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def served(port, cmd, body):
    """Seconds for one POST of `body`, its whole answer read; checks it is a 200."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("POST", f"/handler?cmd=bench-ufop/{cmd}", body=body)
        response = connection.getresponse()
        answer = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"{cmd}: {response.status} {answer[:300]!r}")
    return time.perf_counter() - started


def measure(rounds):
    sample = load_sample()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        clip = folder / "clip.mp4"
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", *CLIP, "-y", str(clip)], check=True)
        body = clip.read_bytes()
        port = free_port()
        rows = []
        with serve(VIDEO, port, workers=1):
            for cmd, command in cases(sample, str(clip), folder):
                by_hand(command), served(port, cmd, body)  # warm both: page cache, the worker's setup
                hand, ours = [], []
                for _ in range(rounds):
                    hand.append(by_hand(command))
                    ours.append(served(port, cmd, body))
                rows.append((cmd, hand, ours))
        return rows, len(body)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    options = parser.parse_args()
    load_before = os.getloadavg()[0]
    rows, size = measure(options.rounds)
    print(f"samples/video on a 10 s 640x360 H.264/AAC clip ({size / 2**20:.1f} MiB) posted as the body; "
          f"medians of {options.rounds} alternating runs; load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after\n")
    print("| cmd | ffmpeg by hand (ms) | through `serve` (ms) | overhead (ms) | ratio |")
    print("|---|---|---|---|---|")
    for cmd, hand, ours in rows:
        # overhead and ratio: the medians of each round's own (its two runs were back to back)
        overhead = statistics.median(b - a for a, b in zip(hand, ours, strict=True))
        print(f"| `{cmd}` | {statistics.median(hand) * 1000:.0f} | {statistics.median(ours) * 1000:.0f} "
              f"| {overhead * 1000:+.0f} | {paired(ours, hand):.2f}x |")


if __name__ == "__main__":
    main()
