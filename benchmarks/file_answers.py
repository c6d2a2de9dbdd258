"""A big file answer end to end: throughput, and what the server (and Redis) hold meanwhile.

    python benchmarks/file_answers.py --celery [--size-mib 1024] [--rounds 3]

``curl -o /dev/null`` downloads a `size` MiB answer of the big_answers
project (its ``file`` processor answers a path, ``stream`` a generator) while
a sampler reads, every 20 ms, the server's RSS and Redis's used_memory. A
mode is one function returning table rows; medians of the rounds.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis as redis_client
from run import Redis, free_port, rss_kib, serve

HERE = Path(__file__).resolve().parent
BIG_ANSWERS = HERE / "projects" / "big_answers"
NAME = "bench-ufop"  # serve() gives the server this UFOP_NAME; the worker needs the same


class Peaks:
    """Samples, every 20 ms until stopped, each of `probes` ({name: () -> bytes}); keeps the peaks."""

    def __init__(self, probes):
        self.probes = probes
        self.peaks = {name: probe() for name, probe in probes.items()}
        self.before = dict(self.peaks)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stopped.set()
        self.thread.join()

    def growth_mib(self, name):
        return (self.peaks[name] - self.before[name]) / (1 << 20)

    def _sample(self):
        while not self.stopped.wait(0.02):
            for name, probe in self.probes.items():
                self.peaks[name] = max(self.peaks[name], probe())


def download(port, cmd):
    """curl's figures for one answer: (MiB/s, bytes); raises unless it is a whole 200."""
    command = ["curl", "-s", "-o", "/dev/null", "-X", "POST", "-w",
               "%{http_code} %{size_download} %{speed_download}", f"http://127.0.0.1:{port}/handler?cmd={NAME}/{cmd}"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    status, size, speed = output.split()
    if status != "200":
        raise RuntimeError(f"curl got {status}")
    return float(speed) / (1 << 20), int(size)


def big_file(size_mib):
    """A `size_mib` MiB file of random bytes (written once), in the page cache."""
    path = Path(tempfile.gettempdir()) / f"ufop-bench-answer-{size_mib}MiB.bin"
    if not path.exists() or path.stat().st_size != size_mib << 20:
        with open(path, "wb") as file:
            block = os.urandom(1 << 20)
            for index in range(size_mib):
                file.write(index.to_bytes(8, "big") + block[8:])
    return path


def start_worker(env):
    return subprocess.Popen([sys.executable, "-m", "ufop_sdk", "worker", "--project", str(BIG_ANSWERS),
                             "--concurrency", "1"], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for_answer(port, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            download(port, "file")
            return
        except (RuntimeError, subprocess.CalledProcessError):
            time.sleep(0.2)
    raise RuntimeError("no answer from the server")


def celery_rows(size_mib, rounds):
    """The `file` and `stream` answers through Celery mode: MiB/s, and the peak growth of the server's
    RSS and Redis's used_memory during each download."""
    figures = {cmd: {"speed": [], "server": [], "redis": []} for cmd in ("file", "stream")}
    with Redis() as broker, redis_client.Redis.from_url(broker.url) as client:
        env = {"UFOP_BROKER_URL": broker.url, "UFOP_NAME": NAME, "BENCH_FILE": str(big_file(size_mib))}
        worker, port = start_worker(env), free_port()
        try:
            with serve(BIG_ANSWERS, port, env=env) as server:
                wait_for_answer(port)
                for _ in range(rounds):
                    for cmd, figure in figures.items():
                        probes = {"server": lambda: rss_kib(server.pid, "VmRSS") << 10,
                                  "redis": lambda: client.info("memory")["used_memory"]}
                        with Peaks(probes) as peaks:
                            speed, size = download(port, cmd)
                        assert size == size_mib << 20, size
                        figure["speed"].append(speed)
                        figure["server"].append(peaks.growth_mib("server"))
                        figure["redis"].append(peaks.growth_mib("redis"))
        finally:
            worker.terminate()
            worker.wait(30)
    return [row for cmd, figure in figures.items()
            for row in _rows(f"Celery: {size_mib} MiB {cmd} answer", figure)]


def _rows(what, figure):
    speed, server, redis = (statistics.median(figure[key]) for key in ("speed", "server", "redis"))
    return [(f"{what}, curl: MiB/s", f"{speed:,.0f}", "", "", "", True),
            (f"{what}: server peak RSS growth (MiB)", f"{server:.1f}", "", "", "< 64", server < 64),
            (f"{what}: Redis peak used_memory growth (MiB)", f"{redis:.1f}", "", "", "< 64", redis < 64)]


def table(rows):
    lines = ["| measure | ufop-sdk | reference | ratio | target | met |", "|---|---|---|---|---|---|"]
    lines += [f"| {what} | {ours} | {theirs} | {ratio} | {target} | {'yes' if met else 'NO'} |"
              for what, ours, theirs, ratio, target, met in rows]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--celery", action="store_true", help="through Celery mode (starts a redis-server)")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    rows = []
    if options.celery:
        rows += celery_rows(options.size_mib, options.rounds)
    if not rows:
        parser.error("choose a mode: --celery")
    print(table(rows))


if __name__ == "__main__":
    main()
