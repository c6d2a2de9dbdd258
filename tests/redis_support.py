"""Helpers for the Celery suites: a real ``redis-server`` and real ``ufop-sdk worker`` subprocesses."""

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import redis
from support import children_of, clean_environment, free_port


def require_redis_server():
    """The path of ``redis-server``; without one, fail in CI (CI=true) and skip elsewhere."""
    path = shutil.which("redis-server")
    if path is None:
        message = "redis-server is not installed: the Celery tests need a real one (apt install redis-server)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"{message}; in CI it must be there (.ci/run installs it)", pytrace=False)
        pytest.skip(message)
    return path


def wait_until(condition, seconds, what, output=lambda: ""):
    """Poll `condition` every 20 ms until it is true; AssertionError naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}\n{output()[-4000:]}")


class RedisServer:
    """A real ``redis-server`` on a free loopback port, keeping nothing on disk.

        with RedisServer() as broker:
            url = broker.url(db=1)
            broker.stop()
            broker.start()  # the same port again, empty

    """

    def __init__(self):
        self.executable = require_redis_server()
        self.port = free_port()
        self.folder = tempfile.mkdtemp(prefix="ufop-redis-")
        self.process = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def start(self):
        """Start it on this port and wait until it answers PING (bounded)."""
        with open(Path(self.folder) / "redis.log", "ab") as log:
            self.process = subprocess.Popen(
                [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", self.folder],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until(self._answers, 10, f"redis-server to answer PING on port {self.port}", self.output)

    def stop(self):
        """Stop it (SIGTERM, then SIGKILL) and wait until the port is closed."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def url(self, db=0):
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db=0):
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=5)

    def keys(self, pattern, db=0):
        with self.client(db) as client:
            return sorted(key.decode() for key in client.keys(pattern))

    def output(self):
        return (Path(self.folder) / "redis.log").read_text(errors="replace")

    def _answers(self):
        if self.process.poll() is not None:
            raise AssertionError(f"redis-server exited with {self.process.returncode}:\n{self.output()}")
        try:
            with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.5) as client:
                return client.ping()
        except redis.RedisError:
            return False


class Worker:
    """A real ``ufop-sdk worker`` subprocess for `project`, taking tasks from `broker_url`.

        with Worker(PROJECT, broker.url(), concurrency=1) as worker:
            worker.pid, worker.children()

    Entering waits until Celery says the worker is ready and its `concurrency`
    children are up. `start` and `wait_ready` do the two halves, so several
    workers can start at once.
    """

    names = itertools.count(1)

    def __init__(self, project, broker_url, *, concurrency=1, env=None, args=()):
        self.project = Path(project)
        self.concurrency = concurrency
        self.args = list(args)  # more arguments for `celery worker`
        self.env = {"UFOP_BROKER_URL": broker_url, **(env or {})}
        self.name = f"ufop-test-{os.getpid()}-{next(self.names)}@127.0.0.1"
        self.log = tempfile.NamedTemporaryFile(prefix="ufop-worker-", suffix=".log", delete=False)
        self.process = None

    def __enter__(self):
        self.start()
        self.wait_ready()
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        """Stop it and remove its log."""
        self.stop()
        self.log.close()
        os.unlink(self.log.name)

    @property
    def pid(self):
        return self.process.pid

    def start(self):
        # "ready." is logged at INFO; the worker's own default level is WARNING.
        command = [sys.executable, "-m", "ufop_sdk", "worker", "--project", str(self.project),
                   "--concurrency", str(self.concurrency), "--", "--loglevel=INFO", f"--hostname={self.name}",
                   *self.args]
        self.process = subprocess.Popen(command, env=clean_environment(self.env), stdout=self.log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait_ready(self, seconds=30):
        wait_until(self._ready, seconds, f"worker {self.name} to be ready", self.output)

    def children(self):
        """The pids of its pool's live child processes (not one dead but not yet noticed)."""
        return [child for child in children_of(self.pid) if not _is_zombie(child)]

    def wait_for_children(self, seconds=15):
        """Wait until the pool is full again (after a child was killed)."""
        wait_until(lambda: len(self.children()) == self.concurrency, seconds,
                   f"worker {self.name} to have {self.concurrency} children", self.output)

    def output(self):
        return Path(self.log.name).read_text(errors="replace")

    def stop(self):
        """SIGTERM, then SIGKILL after 5 s; children left behind are killed too."""
        if self.process is None:
            return
        children = self.children() if self.process.poll() is None else []
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for child in children:  # a pool child outliving its parent, still running ufop-sdk
            try:
                if b"ufop_sdk" in Path(f"/proc/{child}/cmdline").read_bytes():
                    os.kill(child, signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError):
                pass

    def _ready(self):
        if self.process.poll() is not None:
            raise AssertionError(f"the worker exited with {self.process.returncode}:\n{self.output()}")
        return " ready." in self.output() and len(self.children()) == self.concurrency


def _is_zombie(pid):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


@contextlib.contextmanager
def running_workers(count, project, broker_url, **options):
    """`count` Workers (same `options`) started at once; yields their list once all are ready."""
    with contextlib.ExitStack() as stack:
        workers = []
        for _ in range(count):
            worker = Worker(project, broker_url, **options)
            stack.callback(worker.close)
            worker.start()
            workers.append(worker)
        for worker in workers:
            worker.wait_ready()
        yield workers
