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
THUMBNAIL = HERE.parent / "samples" / "thumbnail"
THUMBOR_VENV = HERE / ".venv-thumbor"


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
            connection.getresponse()
            return True  # any answer: it listens (thumbor says 400 to /health)
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


def wrk(port, path, seconds, connections=16, body_bytes=1, body_file=None, method="POST"):
    """wrk's figures, keep-alive, sending `body_bytes` bytes (or `body_file`'s) to `path`:
    {"rps": requests/s, "p50": ms, "p99": ms}."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        body = (f'io.open("{body_file}", "rb"):read("*a")' if body_file
                else f'string.rep("x", {body_bytes})')
        script.write(f'wrk.method = "{method}"\n' + (f"wrk.body = {body}\n" if method == "POST" else ""))
    try:
        output = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s",
                                 script.name, f"http://127.0.0.1:{port}{path}"], capture_output=True,
                                text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} error responses:\n{output}")
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
            "p50": _milliseconds(re.search(r"50%\s+([\d.]+\w+)", output).group(1)),
            "p99": _milliseconds(re.search(r"99%\s+([\d.]+\w+)", output).group(1))}


def _milliseconds(text):
    number, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def trivial_vs_bare_tornado(rounds, seconds):
    """A trivial processor through `serve` vs a bare Tornado handler: requests/s, medians."""
    bare_port, serve_port = free_port(), free_port()
    bare_rates, serve_rates = [], []
    with Process([sys.executable, str(HERE / "bare_tornado.py"), str(bare_port)], bare_port), \
            serve(TRIVIAL, serve_port):
        wrk(bare_port, "/handler", 1)
        wrk(serve_port, "/handler?cmd=bench-ufop/hello", 1)
        for _ in range(rounds):
            bare_rates.append(wrk(bare_port, "/handler", seconds)["rps"])
            serve_rates.append(wrk(serve_port, "/handler?cmd=bench-ufop/hello", seconds)["rps"])
    bare, served = statistics.median(bare_rates), statistics.median(serve_rates)
    ratio = paired(serve_rates, bare_rates)
    return [("trivial processor, wrk 16 connections keep-alive: requests/s", f"{served:,.0f}",
             f"bare Tornado {bare:,.0f}", f"{ratio:.0%}", ">= 70%", ratio >= 0.70)]


def paired(ours, theirs):
    """The median of the rounds' ratios: each round's pair was measured back to back."""
    return statistics.median(a / b for a, b in zip(ours, theirs, strict=True))


class Redis:
    """A throw-away redis-server on a free port."""

    def __init__(self):
        self.port = free_port()
        self.process = subprocess.Popen(["redis-server", "--port", str(self.port), "--save", "",
                                         "--appendonly", "no", "--bind", "127.0.0.1"],
                                        stdout=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True,
                             text=True).stdout.strip() != "PONG":
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.process.terminate()
        self.process.wait(10)


def celery_mode(rounds, seconds):
    """Trivial p50/p99 from one client, requests/s from 8, 1 MiB echo p50 from one: medians."""
    port = free_port()
    figures = {"p50": [], "p99": [], "rps": [], "echo": []}
    with Redis() as redis:
        # One UFOP_NAME for both: it names the queue the worker consumes (serve() sets it too).
        env = {"UFOP_BROKER_URL": redis.url, "UFOP_MAX_BODY_BYTES": "2MiB", "UFOP_NAME": "bench-ufop"}
        worker = subprocess.Popen([sys.executable, "-m", "ufop_sdk", "worker", "--project", str(TRIVIAL)],
                                  env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            with serve(TRIVIAL, port, env=env):
                path = "/handler?cmd=bench-ufop/hello"
                _wait_for_answers(port, path)
                wrk(port, path, 1, connections=1)
                for _ in range(rounds):
                    one = wrk(port, path, seconds, connections=1)
                    figures["p50"].append(one["p50"])
                    figures["p99"].append(one["p99"])
                    figures["rps"].append(wrk(port, path, seconds, connections=8)["rps"])
                    figures["echo"].append(wrk(port, "/handler?cmd=bench-ufop/echo", seconds,
                                               connections=1, body_bytes=1 << 20)["p50"])
        finally:
            worker.terminate()
            worker.wait(30)
    p50, p99, rps, echo = (statistics.median(figures[k]) for k in ("p50", "p99", "rps", "echo"))
    return [("Celery: trivial p50 from one client (ms)", f"{p50:.2f}", "qiniu-ufop 107", "", "<= 4",
             p50 <= 4),
            ("Celery: trivial p99 from one client (ms)", f"{p99:.2f}", "", "", "", True),
            ("Celery: trivial requests/s from 8 clients", f"{rps:,.0f}", "", "", ">= 400", rps >= 400),
            ("Celery: 1 MiB echo p50 from one client (ms)", f"{echo:.2f}", "", "", "<= 15", echo <= 15)]


def _wait_for_answers(port, path, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("POST", path, body=b"x")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the Celery worker never answered")


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


def photo(path):
    """A 1600x1200 JPEG with a photo's detail (a Mandelbrot set, gradients and sensor-like noise)."""
    from PIL import Image

    size = (1600, 1200)
    noise = Image.effect_noise(size, 14)
    fractal = Image.effect_mandelbrot(size, (-2.2, -1.2, 1.0, 1.2), 80)
    image = Image.merge("RGB", (Image.blend(fractal, noise, 0.25),
                                Image.blend(Image.linear_gradient("L").resize(size), noise, 0.3),
                                Image.radial_gradient("L").resize(size)))
    image.save(path, "JPEG", quality=85)
    return path.stat().st_size


def thumbor_executable():
    """thumbor from PyPI in its own venv (made on first use)."""
    executable = THUMBOR_VENV / "bin" / "thumbor"
    if not executable.exists():
        subprocess.run([sys.executable, "-m", "venv", str(THUMBOR_VENV)], check=True)
        subprocess.run([str(THUMBOR_VENV / "bin" / "pip"), "install", "-q", "thumbor"], check=True)
    return executable


def direct(mode, image, seconds, processes):
    """Thumbnails per second from `processes` tight loops side by side (one per core)."""
    runs = [subprocess.Popen([sys.executable, str(HERE / "thumbnail_direct.py"), mode, str(image),
                              str(seconds)], stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    return sum(float(run.communicate()[0]) for run in runs)


def thumbnails(rounds, seconds):
    """thumbnail/200x200 of a 1600x1200 JPEG: serve vs thumbor vs the direct limits."""
    cores = os.cpu_count()
    with tempfile.TemporaryDirectory() as folder:
        image = Path(folder) / "photo.jpg"
        size_kib = photo(image) / 1024
        serve_port, thumbor_port = free_port(), free_port()
        figures = {"serve": [], "thumbor": [], "sample": [], "pillow": []}
        thumbor = [str(thumbor_executable()), "-p", str(thumbor_port), "-c",
                   str(HERE / "thumbor" / "thumbor.conf"), "--processes", str(cores), "-l", "error"]
        path = "/handler?cmd=thumbnail/thumbnail/200x200"
        with serve(THUMBNAIL, serve_port, workers=cores), _in(folder, thumbor, thumbor_port):
            wrk(serve_port, path, 1, connections=8, body_file=image)
            wrk(thumbor_port, "/unsafe/200x200/photo.jpg", 1, connections=8, method="GET")
            # All four in every round, so a noisy moment hits one round, not one contender.
            # The idle servers cost the direct loops nothing.
            for _ in range(rounds):
                figures["serve"].append(wrk(serve_port, path, seconds, connections=8, body_file=image)["rps"])
                figures["thumbor"].append(wrk(thumbor_port, "/unsafe/200x200/photo.jpg", seconds,
                                              connections=8, method="GET")["rps"])
                figures["sample"].append(direct("sample", image, seconds, cores))
                figures["pillow"].append(direct("pillow", image, seconds, cores))
    served, thumbor_rate, sample, pillow = (statistics.median(figures[k])
                                            for k in ("serve", "thumbor", "sample", "pillow"))
    vs_thumbor, vs_sample, vs_pillow = (paired(figures["serve"], figures[k])
                                        for k in ("thumbor", "sample", "pillow"))
    label = f"thumbnail/200x200 of a 1600x1200 JPEG ({size_kib:.0f} KiB), 8 connections: requests/s"
    return [(label, f"{served:,.0f}", f"thumbor {thumbor_rate:,.0f}", f"{vs_thumbor:.1f}x",
             ">= 3x", vs_thumbor >= 3),
            ("... vs the sample's process() in a tight loop per core", f"{served:,.0f}", f"{sample:,.0f}",
             f"{vs_sample:.0%}", ">= 90%", vs_sample >= 0.9),
            ("... vs the best plain-Pillow code per core", f"{served:,.0f}", f"{pillow:,.0f}",
             f"{vs_pillow:.0%}", ">= 80%", vs_pillow >= 0.8)]


class _in:
    """A server started in `folder` (thumbor's file loader reads from its working folder)."""

    def __init__(self, folder, command, port):
        self.folder, self.command, self.port = folder, command, port

    def __enter__(self):
        here = os.getcwd()
        os.chdir(self.folder)
        try:
            self.process = Process(self.command, self.port)
        finally:
            os.chdir(here)
        return self.process

    def __exit__(self, *exc_info):
        self.process.stop()


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    options = parser.parse_args()
    rows = trivial_vs_bare_tornado(options.rounds, options.seconds) + upload_peak_rss() + \
        thumbnails(options.rounds, options.seconds) + celery_mode(options.rounds, options.seconds)
    print(f"Machine: {machine()}; {time.strftime('%Y-%m-%d')}; medians of {options.rounds} "
          f"alternating rounds of {options.seconds} s (ratios: the median of each round's ratio)\n")
    print("| measure | ufop-sdk | reference | ratio | target | met |")
    print("|---|---|---|---|---|---|")
    for name, value, reference, ratio, target, met in rows:
        print(f"| {name} | {value} | {reference} | {ratio} | {target} | {'yes' if met else 'NO'} |")


if __name__ == "__main__":
    main()
