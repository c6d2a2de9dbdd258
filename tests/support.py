"""Helpers shared by the tests: running the real ``ufop-sdk`` command."""

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
PROJECTS = Path(__file__).resolve().parent / "projects"


def clean_environment(extra=None):
    """This process's environment without ufop-sdk's settings, plus `extra`."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("UFOP_", "CPU_COUNT", "FLAVOR"))}
    environment.update(extra or {})
    return environment


def run_cli(*args, cwd=None, env=None, input=None, timeout=60):
    """Run ``ufop-sdk ARGS`` in a real subprocess; returns the CompletedProcess (bytes)."""
    environment = clean_environment(env)
    return subprocess.run([sys.executable, "-m", "ufop_sdk", *map(str, args)], cwd=cwd, env=environment,
                          input=input, capture_output=True, timeout=timeout)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A real ``ufop-sdk serve`` (or ``dev``) subprocess on a free port.

        with Server(PROJECT) as server:
            response = server.post("t/echo", b"hello")
    """

    def __init__(self, project, *args, command="serve", env=None, workers=2, wait_healthy=True):
        self.project = Path(project)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [command, "--project", str(project), "--port", str(self.port), *args]
        if workers is not None:
            self.args += ["--workers", str(workers)]
        self.env = env or {}
        self.wait_healthy = wait_healthy
        self.log = tempfile.NamedTemporaryFile(prefix="ufop-server-", suffix=".log", delete=False)

    def __enter__(self):
        environment = clean_environment(self.env)
        self.process = subprocess.Popen([sys.executable, "-m", "ufop_sdk", *self.args], env=environment,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_until(lambda: self._health_status() == 200 if self.wait_healthy
                        else self._health_status() is not None, 20, "the server to start")
        return self

    def __exit__(self, *exc_info):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        os.unlink(self.log.name)

    def output(self):
        """What the server printed so far (stdout and stderr)."""
        return Path(self.log.name).read_text(errors="replace")

    def request(self, method, path, body=None, headers=None, timeout=30):
        """One HTTP request on a new connection; returns (status, headers, body)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def post(self, cmd, body=b"", url=None, headers=None, timeout=30):
        query = {"cmd": cmd, **({"url": url} if url is not None else {})}
        return self.request("POST", "/handler?" + urllib.parse.urlencode(query), body, headers, timeout)

    def health(self):
        status, _, body = self.request("GET", "/health")
        return status, json.loads(body)

    def _health_status(self):
        if self.process.poll() is not None:
            raise AssertionError(f"the server exited with {self.process.returncode}:\n{self.output()}")
        try:
            return self.request("GET", "/health", timeout=2)[0]
        except OSError:
            return None

    def wait_until(self, condition, seconds, what):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n{self.output()}")
