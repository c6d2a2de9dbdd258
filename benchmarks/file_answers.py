"""A large file answer through `serve`, against a bare Python server sending the same file with sendfile.

    python benchmarks/file_answers.py [--size-mib 1024] [--rounds 3]

Both servers run in every round, back to back, over loopback; curl takes
each answer to /dev/null. Prints a Markdown table: medians of the rounds'
throughput and of their ratios, and the `serve` process's peak RSS growth.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from run import Process, free_port, machine, rss_kib, serve

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
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
