"""ufop-sdk's benchmarks: every server started here, measured side by side in one run.

    python benchmarks/run.py [--rounds 3] [--seconds 5] [--only trivial thumbnail ...]

Needs wrk (Debian: apt-get install wrk). Prints a Markdown table; medians of
alternating rounds, since the machine is shared and noisy. Then, side by side,
what users would write instead (contenders.py): requests/s and the CPU a
request costs across all of each server's processes.
"""

import argparse
import contextlib
import dataclasses
import http.client
import io
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import contenders

HERE = Path(__file__).resolve().parent
TRIVIAL = HERE / "projects" / "trivial"
THUMBNAIL = HERE.parent / "samples" / "thumbnail"
SECTIONS = ["trivial", "upload", "thumbnail", "celery"]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A server subprocess listening on `port`, stopped on exit with every process it started."""

    def __init__(self, command, port, env=None, cwd=None):
        self.port = port
        environment = {**os.environ, **(env or {})}
        # A session of its own: stop() can then reach the children the server leaves behind.
        self.process = subprocess.Popen(command, env=environment, cwd=cwd, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.ready():
                return
            time.sleep(0.05)
        self.stop()
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
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(20)
        with contextlib.suppress(ProcessLookupError):  # thumbor's processes outlive their parent
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

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
            "requests": int(re.search(r"(\d+) requests in", output).group(1)),
            "p50": _milliseconds(re.search(r"50%\s+([\d.]+\w+)", output).group(1)),
            "p99": _milliseconds(re.search(r"99%\s+([\d.]+\w+)", output).group(1))}


def _milliseconds(text):
    number, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def cpu_seconds(pid):
    """User and system CPU of `pid` and its descendants, in seconds."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread that just ended
            stat = (task / "stat").read_text().rpartition(")")[2].split()
            total += (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
            for child in (task / "children").read_text().split():
                total += cpu_seconds(int(child))
    return total


def measured(server, path, seconds, **options):
    """wrk's figures for `server`, with "cpu": the CPU a request cost its processes, in µs."""
    before = cpu_seconds(server.pid)
    figures = wrk(server.port, path, seconds, **options)
    return {**figures, "cpu": (cpu_seconds(server.pid) - before) / figures["requests"] * 1e6}


@dataclasses.dataclass(frozen=True)
class Load:
    """What wrk sends a server: a POST of `body_file` (or of one byte) to `path`, or a GET."""

    path: str
    connections: int = 16
    body_file: Path | None = None
    method: str = "POST"

    def measure(self, server, seconds):
        return measured(server, self.path, seconds, connections=self.connections, body_file=self.body_file,
                        method=self.method)

    def answer(self, port):
        """The status and body of one answer, to check before timing (an error answered fast is no
        win)."""
        body = (self.body_file.read_bytes() if self.body_file else b"x") if self.method == "POST" else None
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request(self.method, self.path, body=body)
        response = connection.getresponse()
        return response.status, response.read()


def side_by_side(servers, rounds, seconds, check, loops=None):
    """All `servers` ({name: (start(port) -> Process, Load)}) started, each one's answer passed to
    `check`, then measured back to back in every round, followed by `loops` ({name: function giving a
    rate}): {name: {"rps": [...], "cpu": [...]}}, CPU in µs a request across the server's processes."""
    loops = loops or {}
    figures = {name: {"rps": [], "cpu": []} for name in [*servers, *loops]}
    with contextlib.ExitStack() as stack:
        running = {name: (stack.enter_context(start(free_port())), load)
                   for name, (start, load) in servers.items()}
        for name, (server, load) in running.items():
            status, answer = load.answer(server.port)
            if status != 200 or not check(answer):
                raise RuntimeError(f"{name} answered {status}: {answer[:300]!r}")
            load.measure(server, 1)  # warm-up
        # All in every round, so a noisy moment hits one round, not one contender.
        for _ in range(rounds):
            for name, (server, load) in running.items():
                measure = load.measure(server, seconds)
                figures[name]["rps"].append(measure["rps"])
                figures[name]["cpu"].append(measure["cpu"])
            for name, loop in loops.items():
                figures[name]["rps"].append(loop())
    return figures


def contender(definition, workers, cwd=None):
    """A start(port) for one of contenders.py's servers."""
    def start(port):
        command, env = definition(port, workers)
        return Process(command, port, env, cwd)
    return start


def contending(definitions, workers, load):
    """side_by_side()'s servers for contenders.py's `definitions`, named with their worker count."""
    return {name.format(workers=workers): (contender(definition, workers), load)
            for name, definition in definitions.items()}


def trivial(rounds, seconds):
    """The trivial processor through `serve`, bare Tornado and the contenders (16 connections)."""
    cores = os.cpu_count()
    load = Load("/handler?cmd=bench-ufop/hello")
    ours, bare = f"ufop-sdk `serve --workers {cores}`", "bare Tornado RequestHandler, 1 process"
    fastapi = contenders.FASTAPI.format(workers=cores)
    servers = {ours: (lambda port: serve(TRIVIAL, port, workers=cores), load), bare: (bare_tornado, load),
               **contending(contenders.TRIVIAL, cores, load)}
    figures = side_by_side(servers, rounds, seconds, lambda answer: answer == b"hello world")
    median, vs = compared(figures, ours, (bare, fastapi))
    rows = [("trivial processor, wrk 16 connections keep-alive: requests/s", median[ours],
             f"bare Tornado {median[bare]}", f"{vs[bare]:.0%}", ">= 70%", vs[bare] >= 0.70),
            ("... vs FastAPI on uvicorn (issue 19)", median[ours], f"FastAPI {median[fastapi]}",
             f"{vs[fastapi]:.2f}x", ">= 1.0x", vs[fastapi] >= 1.0)]
    return rows, [("trivial `hello world`, wrk 16 connections", figures)]


def bare_tornado(port):
    return Process([sys.executable, str(HERE / "bare_tornado.py"), str(port)], port)


def compared(figures, ours, references):
    """side_by_side()'s median requests/s of each server, as text, and `ours`' paired ratio to each
    of `references`."""
    median = {name: f"{statistics.median(figure['rps']):,.0f}" for name, figure in figures.items()}
    return median, {name: paired(figures[ours]["rps"], figures[name]["rps"]) for name in references}


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
    return [("Celery: trivial p50 from one client (ms)", f"{p50:.2f}", "qiniu-ufop 107", "", "<= 2 (#19)",
             p50 <= 2),
            ("Celery: trivial p99 from one client (ms)", f"{p99:.2f}", "", "", "", True),
            ("Celery: trivial requests/s from 8 clients", f"{rps:,.0f}", "", "", ">= 900 (#19)", rps >= 900),
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


def direct(mode, image, seconds, processes):
    """Thumbnails per second from `processes` tight loops side by side (one per core)."""
    runs = [subprocess.Popen([sys.executable, str(HERE / "thumbnail_direct.py"), mode, str(image),
                              str(seconds)], stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    return sum(float(run.communicate()[0]) for run in runs)


def thumbnails(rounds, seconds):
    """thumbnail/200x200 of a 1600x1200 JPEG (8 connections): serve vs thumbor, the contenders and the
    direct limits."""
    cores = os.cpu_count()
    with tempfile.TemporaryDirectory() as folder:
        image = Path(folder) / "photo.jpg"
        size_kib = photo(image) / 1024
        load = Load("/handler?cmd=thumbnail/thumbnail/200x200", connections=8, body_file=image)
        ours, thumbor = "ufop-sdk", f"thumbor, {cores} processes"
        fastapi = contenders.FASTAPI.format(workers=cores)
        sample = "the sample's process() in a tight loop per core"
        pillow = "the best plain-Pillow code per core"
        servers = {ours: (lambda port: serve(THUMBNAIL, port, workers=cores), load),
                   thumbor: (contender(contenders.thumbor, cores, cwd=folder),
                             Load("/unsafe/200x200/photo.jpg", connections=8, method="GET")),
                   **contending(contenders.THUMBNAIL, cores, load)}
        # The idle servers cost the direct loops nothing.
        figures = side_by_side(servers, rounds, seconds, is_thumbnail,
                               loops={sample: lambda: direct("sample", image, seconds, cores),
                                      pillow: lambda: direct("pillow", image, seconds, cores)})
    median, vs = compared(figures, ours, (thumbor, fastapi, sample, pillow))
    label = f"thumbnail/200x200 of a 1600x1200 JPEG ({size_kib:.0f} KiB), 8 connections: requests/s"
    rows = [(label, median[ours], f"thumbor {median[thumbor]}", f"{vs[thumbor]:.1f}x", ">= 5x (#19)",
             vs[thumbor] >= 5),
            ("... vs FastAPI on uvicorn, the same Pillow code (issue 19)", median[ours],
             f"FastAPI {median[fastapi]}", f"{vs[fastapi]:.2f}x", ">= 1.0x", vs[fastapi] >= 1.0),
            (f"... vs {sample}", median[ours], median[sample], f"{vs[sample]:.0%}", ">= 95% (#19)",
             vs[sample] >= 0.95),
            (f"... vs {pillow}", median[ours], median[pillow], f"{vs[pillow]:.0%}", ">= 80%",
             vs[pillow] >= 0.8)]
    title = f"thumbnail 1600x1200 JPEG ({size_kib:.0f} KiB) -> 200x200, 8 connections, the sample's code"
    return rows, [(title, figures)]


def is_thumbnail(answer):
    from PIL import Image

    with Image.open(io.BytesIO(answer)) as thumbnail:
        return thumbnail.format == "JPEG" and thumbnail.size == (200, 200)


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()}"


def sections(names, rounds, seconds):
    """The main table's rows and the side-by-side tables of the sections `names`, in that order."""
    run = {"trivial": lambda: trivial(rounds, seconds), "upload": lambda: (upload_peak_rss(), []),
           "thumbnail": lambda: thumbnails(rounds, seconds),
           "celery": lambda: (celery_mode(rounds, seconds), [])}
    rows, tables = [], []
    for name in names:
        more_rows, more_tables = run[name]()
        rows += more_rows
        tables += more_tables
    return rows, tables


def print_side_by_side(title, figures):
    print(f"\n| {title} | requests/s | CPU per request, all its processes (µs) |\n|---|---|---|")
    for name, figure in figures.items():
        cpu = f"{statistics.median(figure['cpu']):,.0f}" if figure["cpu"] else ""
        print(f"| {name} | {statistics.median(figure['rps']):,.0f} | {cpu} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=SECTIONS,
                        help="run only these sections, in this order")
    options = parser.parse_args()
    rows, tables = sections(options.only, options.rounds, options.seconds)
    print(f"Machine: {machine()}; {time.strftime('%Y-%m-%d')}; medians of {options.rounds} "
          f"alternating rounds of {options.seconds} s (ratios: the median of each round's ratio)\n")
    print("| measure | ufop-sdk | reference | ratio | target | met |")
    print("|---|---|---|---|---|---|")
    for name, value, reference, ratio, target, met in rows:
        print(f"| {name} | {value} | {reference} | {ratio} | {target} | {'yes' if met else 'NO'} |")
    for title, figures in tables:
        print_side_by_side(title, figures)


if __name__ == "__main__":
    main()
