"""A large file answer through `serve`, against a bare Python server sending the same file with sendfile.

    python benchmarks/file_answers.py [--size-mib 1024] [--rounds 3] [--celery]

Both servers run in every round, back to back, over loopback; curl takes
each answer to /dev/null. Prints a Markdown table: medians of the rounds'
throughput and of their ratios, and the `serve` process's peak RSS growth.

With ``--celery``: the same file as a file answer and as a generator's
stream, through Celery mode (a redis-server and a worker of one child are
started); a sampler reads the server's RSS and Redis's used_memory every
20 ms during each download, and their peak growth is reported.
"""

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import redis
from run import Process, Redis, free_port, machine, rss_kib, serve

HERE = Path(__file__).resolve().parent
PROJECT = HERE / "projects" / "file_answer"


def bare_sendfile_server(port, path):
    """Answers every request on `port` with the file at `path`, sent by os.sendfile (a process of its own)."""
    listener = socket.create_server(("127.0.0.1", port))
    size = os.path.getsize(path)
    head = (f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nContent-Type: application/octet-stream\r\n"
            "Connection: close\r\n\r\n").encode()
    while True:
        connection, _ = listener.accept()
        with connection, open(path, "rb") as file:
            request = connection.recv(65536)
            if request.startswith(b"GET /health"):
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                continue
            connection.sendall(head)
            offset = 0
            while offset < size:
                offset += os.sendfile(connection.fileno(), file.fileno(), offset, size - offset)


def download(url):
    """Bytes per second of one download to /dev/null, as curl counts them; the request is a POST."""
    command = ["curl", "-s", "-X", "POST", "-o", "/dev/null", "-w", "%{http_code} %{speed_download}", url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    status, speed = output.split()
    if status != "200":
        raise RuntimeError(f"{url} answered {status}")
    return float(speed)


def local_rounds(path, rounds):
    """(ufop MB/s per round, bare MB/s per round, serve's peak RSS growth in MiB)."""
    ours, theirs, growth = [], [], []
    bare_port, port = free_port(), free_port()
    bare = [sys.executable, __file__, "--bare-server", str(bare_port), str(path)]
    with Process(bare, bare_port), serve(PROJECT, port, workers=2, env={"BENCH_FILE": str(path)}) as server:
        download(f"http://127.0.0.1:{port}/handler?cmd=bench-ufop/file")  # warm: the page cache, the workers
        for _ in range(rounds):
            before = rss_kib(server.pid, "VmRSS")
            ours.append(download(f"http://127.0.0.1:{port}/handler?cmd=bench-ufop/file"))
            growth.append((rss_kib(server.pid, "VmHWM") - before) / 1024)
            theirs.append(download(f"http://127.0.0.1:{bare_port}/file"))
    return ours, theirs, max(growth)


class Peaks:
    """Samples each of `probes` ({name: () -> bytes}) every 20 ms while entered; keeps the peaks."""

    def __init__(self, probes):
        self.probes = probes
        self.before = {name: probe() for name, probe in probes.items()}
        self.peaks = dict(self.before)
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


@contextlib.contextmanager
def celery_mode(path):
    """`serve` in Celery mode and a worker of one child, on a redis-server of their own:
    yields (the server, its port, a Redis client)."""
    with Redis() as broker, redis.Redis.from_url(broker.url) as client:
        env = {"UFOP_BROKER_URL": broker.url, "UFOP_NAME": "bench-ufop", "BENCH_FILE": str(path)}
        worker = subprocess.Popen([sys.executable, "-m", "ufop_sdk", "worker", "--project", str(PROJECT),
                                   "--concurrency", "1"], env={**os.environ, **env},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = free_port()
        try:
            with serve(PROJECT, port, env=env) as server:
                yield server, port, client
        finally:
            worker.terminate()
            worker.wait(30)


def celery_rounds(path, rounds):
    """{cmd: {"speed": B/s, "server": MiB, "redis": MiB} per round} for the file and stream answers
    through Celery mode; server and redis are the peak growth of RSS and used_memory during each."""
    figures = {cmd: {"speed": [], "server": [], "redis": []} for cmd in ("file", "stream")}
    with celery_mode(path) as (server, port, client):
        download(f"http://127.0.0.1:{port}/handler?cmd=bench-ufop/file")  # warm, and the worker is up
        probes = {"server": lambda: rss_kib(server.pid, "VmRSS") << 10,
                  "redis": lambda: client.info("memory")["used_memory"]}
        for _ in range(rounds):
            for cmd, figure in figures.items():
                with Peaks(probes) as peaks:
                    figure["speed"].append(download(f"http://127.0.0.1:{port}/handler?cmd=bench-ufop/{cmd}"))
                figure["server"].append(peaks.growth_mib("server"))
                figure["redis"].append(peaks.growth_mib("redis"))
    return figures


def print_celery(size_mib, figures):
    print("| Celery mode | throughput (MB/s) | server peak RSS growth (MiB) | Redis peak used_memory growth "
          "(MiB) | target | met |")
    print("|---|---|---|---|---|---|")
    for cmd, figure in figures.items():
        speed = statistics.median(figure["speed"]) / 1e6
        server, held = max(figure["server"]), max(figure["redis"])
        met = server < 64 and held < 64
        print(f"| {size_mib} MiB {cmd} answer | {speed:,.0f} | {server:.1f} | {held:.1f} | each < 64 "
              f"| {'yes' if met else 'no'} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--celery", action="store_true", help="through Celery mode (starts a redis-server)")
    parser.add_argument("--bare-server", nargs=2, metavar=("PORT", "FILE"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.bare_server:
        bare_sendfile_server(int(options.bare_server[0]), options.bare_server[1])
        return
    with tempfile.NamedTemporaryFile(prefix="ufop-bench-", suffix=".bin") as file:
        block = os.urandom(1 << 20)
        for _ in range(options.size_mib):
            file.write(block)
        file.flush()
        if options.celery:
            print(f"{options.size_mib} MiB answers, {options.rounds} rounds; {machine()}\n")
            print_celery(options.size_mib, celery_rounds(file.name, options.rounds))
            return
        ours, theirs, growth = local_rounds(file.name, options.rounds)
    ratio = statistics.median(a / b for a, b in zip(ours, theirs, strict=True))
    print(f"{options.size_mib} MiB file answer, {options.rounds} rounds; {machine()}\n")
    print("| measure | ufop-sdk serve | bare sendfile server | ratio | target | met |")
    print("|---|---|---|---|---|---|")
    ours_mb, theirs_mb = statistics.median(ours) / 1e6, statistics.median(theirs) / 1e6
    print(f"| throughput (MB/s) | {ours_mb:,.0f} | {theirs_mb:,.0f} | {ratio:.2f} | >= 0.8 "
          f"| {'yes' if ratio >= 0.8 else 'no'} |")
    print(f"| serve's peak RSS growth (MiB) | {growth:.1f} | | | <= 64 | {'yes' if growth <= 64 else 'no'} |")


if __name__ == "__main__":
    main()
