"""What the reliability suites share: sizes, figures on disk, process readings, a tiny spool folder.

Sizes are small by default, so the suite runs in CI; ``UFOP_RELIABILITY_FULL=1``
runs the full-size loads. Figures go to ``test-artifacts/reliability/<name>.json``
for docs/RELIABILITY.md.
"""

import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from support import REPO, Server, children_of, clean_environment, open_files

PROJECT = Path(__file__).resolve().parent / "project"
FULL = os.environ.get("UFOP_RELIABILITY_FULL") == "1"
ARTIFACTS = REPO / "test-artifacts" / "reliability"
LEAKS = ("Traceback", 'File "', ".py", "/work/", "/tmp/", "/root/", "site-packages", "SECRET-DETAIL",
         "/etc/shadow")


def sized(fast, full):
    """`full` under UFOP_RELIABILITY_FULL=1, else `fast`."""
    return full if FULL else fast


def record(name, figures):
    """Merge `figures` into ``test-artifacts/reliability/<name>.json``, with the machine and the date.

    A figure that is a dict is merged key by key, so parametrized tests can add to one.
    """
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.json"
    recorded = json.loads(path.read_text()) if path.exists() else {}
    for key, value in figures.items():
        if isinstance(value, dict) and isinstance(recorded.get(key), dict):
            recorded[key].update(value)
        else:
            recorded[key] = value
    recorded["machine"] = machine()
    recorded["recorded"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    path.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "kernel": platform.release(), "mode": "full" if FULL else "fast"}


# Reading processes from /proc.

def rss_kib(pid):
    """The resident set size of `pid` in KiB (VmRSS)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)[1])


def cpu_seconds(pid):
    """User plus system CPU seconds `pid` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descriptor_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


# /proc/net/tcp states whose socket a server still holds: ESTABLISHED, CLOSE_WAIT
_HELD_STATES = {"01", "08"}


def held_connections(port):
    """Connections on local `port` the server has not closed yet, from /proc/net/tcp."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                local, state = row.split()[1], row.split()[3]
                count += state in _HELD_STATES and int(local.rpartition(":")[2], 16) == port
    return count


def files_under(server, folder):
    """What the server and its workers hold open under `folder` (unnamed temp files included)."""
    pids = [server.process.pid, *children_of(server.process.pid)]
    return [target for pid in pids for target in open_files(pid) if target.startswith(str(folder))]


def assert_unharmed(server):
    """The server is alive, healthy, answers, and has logged no traceback."""
    assert server.process.poll() is None, f"the server exited:\n{server.output()[-3000:]}"
    status, payload = server.health()
    assert status == 200, payload
    assert server.post("t/echo", b"still here", timeout=10)[::2] == (200, b"still here")
    assert "Traceback" not in server.output(), server.output()[-5000:]


def assert_no_leak(text):
    """No traceback, source path or secret in an answer that reaches a client."""
    for leak in LEAKS:
        assert leak not in text, f"{leak!r} in {text[:500]!r}"


# A spool folder with almost no room.

class TinySpool:
    """A folder of `size` bytes for UFOP_SPOOL_DIR, and how that limit is made.

    A tmpfs of that size when this process may mount one (``method == "tmpfs"``:
    a full disk, ENOSPC, 507); otherwise RLIMIT_FSIZE on the server, set by a
    wrapper that also ignores SIGXFSZ before it execs ``ufop-sdk`` (``"rlimit"``:
    a file may not grow past `size`, EFBIG, 503). UFOP_RELIABILITY_SPOOL=rlimit
    forces the second, to try it where mounting works.
    """

    def __init__(self, size):
        self.size = size
        self.folder = Path(tempfile.mkdtemp(prefix="ufop-tiny-spool-"))
        self.method = "rlimit"
        if os.environ.get("UFOP_RELIABILITY_SPOOL") != "rlimit" and shutil.which("mount"):
            command = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(self.folder)]
            mounted = subprocess.run(command, capture_output=True, timeout=10)
            if mounted.returncode == 0:
                self.method = "tmpfs"

    @property
    def full_status(self):
        """What a request whose input cannot be stored gets: 507 on a full disk, 503 otherwise."""
        return 507 if self.method == "tmpfs" else 503

    def used_bytes(self):
        return shutil.disk_usage(self.folder).used if self.method == "tmpfs" else sum(
            path.stat().st_size for path in self.folder.rglob("*") if path.is_file())

    def server(self, project, *args, env=None, **options):
        """A Server spooling here, limited by this folder's method."""
        env = {"UFOP_SPOOL_DIR": str(self.folder), **(env or {})}
        if self.method == "tmpfs":
            return Server(project, *args, env=env, **options)
        return FileSizeLimitedServer(self.size, project, *args, env=env, **options)

    def close(self):
        if self.method == "tmpfs":
            subprocess.run(["umount", str(self.folder)], capture_output=True, timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)


class FileSizeLimitedServer(Server):
    """A Server whose process (and so its workers) may not write a file past `limit` bytes."""

    WRAPPER = ("import os, resource, signal, sys; limit = int(sys.argv[1]); "
               "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)); "
               "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
               "os.execv(sys.executable, [sys.executable, '-m', 'ufop_sdk', *sys.argv[2:]])")

    def __init__(self, limit, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.limit = limit

    def __enter__(self):
        self.process = subprocess.Popen([sys.executable, "-c", self.WRAPPER, str(self.limit), *self.args],
                                        env=clean_environment(self.env), stdout=self.log,
                                        stderr=subprocess.STDOUT)
        self.wait_until(lambda: self._health_status() == 200, 20, "the server to start")
        return self

