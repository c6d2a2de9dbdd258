"""ufop-sdk's benchmarks: every server started here, measured side by side in one run.

    python benchmarks/run.py [--rounds 3] [--seconds 5]

Needs wrk (Debian: apt-get install wrk). Prints a Markdown table; medians of
alternating rounds, since the machine is shared and noisy.
"""

import argparse
import http.client
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRIVIAL = HERE / "projects" / "trivial"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A server subprocess listening on `port`, stopped on exit."""

    def __init__(self, command, port, env=None):
        self.port = port
        environment = {**os.environ, **(env or {})}
        self.process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.ready():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{command} did not start")

    def ready(self):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            connection.request("GET", "/health")
            status = connection.getresponse().status
            return status in (200, 404, 405)
        except OSError:
            return False

    @property
    def pid(self):
        return self.process.pid

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()


def serve(project, port, workers=None, env=None):
    command = [sys.executable, "-m", "ufop_sdk", "serve", "--project", str(project), "--port", str(port),
               "--host", "127.0.0.1"]
    if workers:
        command += ["--workers", str(workers)]
    return Process(command, port, {"UFOP_NAME": "bench-ufop", **(env or {})})


def wrk(port, path, seconds, connections=16, body="x"):
    """Requests per second from wrk, keep-alive, POSTing `body` to `path`."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f'wrk.method = "POST"\nwrk.body = "{body}"\n')
    try:
        output = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", script.name,
                                 f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True,
                                check=True).stdout
    finally:
        os.unlink(script.name)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} error responses:\n{output}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def trivial_vs_bare_tornado(rounds, seconds):
    """A trivial processor through `serve` vs a bare Tornado handler: requests/s, medians."""
    bare_port, serve_port = free_port(), free_port()
    bare_rates, serve_rates = [], []
    with Process([sys.executable, str(HERE / "bare_tornado.py"), str(bare_port)], bare_port), \
            serve(TRIVIAL, serve_port):
        wrk(bare_port, "/handler", 1)
        wrk(serve_port, "/handler?cmd=bench-ufop/hello", 1)
        for _ in range(rounds):
            bare_rates.append(wrk(bare_port, "/handler", seconds))
            serve_rates.append(wrk(serve_port, "/handler?cmd=bench-ufop/hello", seconds))
    bare, served = statistics.median(bare_rates), statistics.median(serve_rates)
    return [("trivial processor, wrk 16 connections keep-alive: requests/s", f"{served:,.0f}",
             f"bare Tornado {bare:,.0f}", f"{served / bare:.0%}", ">= 70%", served / bare >= 0.70)]


def rss_kib(pid, field):
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", status).group(1))


def upload_peak_rss(size_mib=512):
    """Peak RSS growth of the server process while a `size_mib` MiB body streams in."""
    port = free_port()
    with serve(TRIVIAL, port, env={"UFOP_MAX_BODY_BYTES": f"{size_mib + 1}MiB"}) as server:
        before = rss_kib(server.pid, "VmHWM")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        chunk = b"\0" * (1 << 20)
        connection.putrequest("POST", "/handler?cmd=bench-ufop/size")
        connection.putheader("Content-Length", str(size_mib << 20))
        connection.endheaders()
        for _ in range(size_mib):
            connection.send(chunk)
        response = connection.getresponse()
        answer = response.read()
        assert response.status == 200 and str(size_mib << 20).encode() in answer, answer
        growth = (rss_kib(server.pid, "VmHWM") - before) / 1024
    return [(f"{size_mib} MiB body upload: server peak RSS growth (MiB)", f"{growth:.1f}", "",
             "", "<= 64", growth <= 64)]


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    options = parser.parse_args()
    rows = trivial_vs_bare_tornado(options.rounds, options.seconds) + upload_peak_rss()
    print(f"Machine: {machine()}; {time.strftime('%Y-%m-%d')}; medians of {options.rounds} "
          f"alternating rounds of {options.seconds} s\n")
    print("| measure | ufop-sdk | reference | ratio | target | met |")
    print("|---|---|---|---|---|---|")
    for name, value, reference, ratio, target, met in rows:
        print(f"| {name} | {value} | {reference} | {ratio} | {target} | {'yes' if met else 'NO'} |")


if __name__ == "__main__":
    main()
