"""Building and running real images on this machine: podman as the engine, the Docker CLI on its socket.

Nothing here is made by hand beforehand: the containers.conf this machine needs
is written under the session's temp folder, and the base image is made by
debootstrap when podman's own store does not have it yet (it keeps it between
runs, so that costs about a minute once per machine).
"""

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

BASE_IMAGE = "localhost/ufop-test-base:bookworm"
DEBIAN_PACKAGES = "python3,python3-venv,python3-pip,python-is-python3,libmagic1,ca-certificates"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# crun refuses this machine's hybrid cgroups, and the default ulimits (1048576) exceed what it may set.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
"""
TOOLS = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap", "docker": "docker.io"}
# Prints the container's processes as JSON: ps is not in a slim image.
PROCESSES = """
import json, os
found = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status") if ":" in line)
        command = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\\0", b" ").decode().strip()
    except OSError:
        continue
    found.append({"pid": int(pid), "ppid": int(status["PPid"]), "uid": int(status["Uid"].split()[0]),
                  "state": status["State"].split()[0], "name": status["Name"].strip(), "command": command})
print(json.dumps(found))
"""


def require_tools():
    """Fail (never skip: CI must run this suite) when a tool is missing, naming the fix."""
    missing = [package for tool, package in TOOLS.items() if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"the image suite needs {', '.join(missing)}: apt-get install -y {' '.join(missing)} "
                    "(.ci/run installs them)", pytrace=False)


class Podman:
    """The podman CLI with this machine's containers.conf."""

    def __init__(self, folder):
        self.folder = Path(folder)
        conf = self.folder / "containers.conf"
        conf.write_text(CONTAINERS_CONF, encoding="utf-8")
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}

    def __call__(self, *args, check=True, timeout=120, **options):
        result = subprocess.run(["podman", *args], env=self.env, capture_output=True, timeout=timeout,
                                **options)
        if check and result.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stderr.decode(errors='replace')[-3000:]}")
        return result

    def image_exists(self, image):
        return self("image", "exists", image, check=False).returncode == 0

    def inspect_image(self, image):
        return json.loads(self("image", "inspect", image).stdout)[0]


def debian_mirror():
    """The Debian mirror this machine's apt uses (its sources), else Debian's own."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
        found = re.search(r"^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+/debian)/?\s", text, re.MULTILINE)
        if found:
            return found[1]
    return DEFAULT_MIRROR


def make_base_image(podman):
    """A small Debian with Python, pip and libmagic as BASE_IMAGE, by debootstrap; reused when present.

    Returns the seconds spent making it (0 when reused).
    """
    if podman.image_exists(BASE_IMAGE):
        return 0.0
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ufop-rootfs-") as root:
        rootfs = Path(root) / "rootfs"
        subprocess.run(["debootstrap", "--variant=minbase", f"--include={DEBIAN_PACKAGES}", "bookworm",
                        str(rootfs), debian_mirror()], check=True, capture_output=True, timeout=900)
        _fit_rootfs(rootfs)
        archive = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        podman("import", "-", BASE_IMAGE, stdin=archive.stdout, timeout=300)
        assert archive.wait() == 0
    return time.monotonic() - began


def _fit_rootfs(rootfs):
    """Make the debootstrapped system build the way python:3.12-slim does here.

    The host's own CA certificates go in, or pip cannot verify the package index
    through this machine's network; and Debian's EXTERNALLY-MANAGED marker goes,
    which the official Python images do not have and which makes pip refuse.
    """
    local = Path("/usr/local/share/ca-certificates")
    for certificate in local.glob("*.crt") if local.is_dir() else []:
        shutil.copy(certificate, rootfs / "usr/local/share/ca-certificates" / certificate.name)
    subprocess.run(["chroot", str(rootfs), "update-ca-certificates"], check=True, capture_output=True)
    for marker in rootfs.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    index = os.environ.get("PIP_INDEX_URL")  # the same package index as this machine's pip, when it sets one
    if index:
        (rootfs / "etc/pip.conf").write_text(f"[global]\nindex-url = {index}\n", encoding="utf-8")


class DockerService:
    """``podman system service`` on a socket of its own: what ``DOCKER_HOST`` points the Docker CLI at."""

    def __init__(self, podman, folder):
        self.socket = Path(folder) / "podman.sock"
        self.log = Path(folder) / "podman-service.log"
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{self.socket}"],
                                            env=podman.env, stdout=sink, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not self._answers():
            assert self.process.poll() is None, f"podman system service exited:\n{self.log.read_text()}"
            assert time.monotonic() < deadline, f"podman system service is silent:\n{self.log.read_text()}"
            time.sleep(0.1)

    @property
    def docker_host(self):
        return f"unix://{self.socket}"

    def _answers(self):
        try:
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(str(self.socket))
            return True
        except OSError:
            return False

    def close(self):
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Container:
    """One container of an image, its port 9100 published on a free local port."""

    def __init__(self, podman, image, port, name):
        self.podman, self.name, self.port = podman, name, port
        podman("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:9100", image)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def post(self, cmd, body=b"", timeout=30):
        """(status, body) of ``POST /handler?cmd=<cmd>``."""
        request = urllib.request.Request(self.url(f"/handler?cmd={cmd}"), data=body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def health(self):
        try:
            with urllib.request.urlopen(self.url("/health"), timeout=2) as answer:
                return answer.status
        except OSError:
            return None

    def wait_healthy(self, seconds=30):
        deadline = time.monotonic() + seconds
        while self.health() != 200:
            assert time.monotonic() < deadline, f"no 200 from /health in {seconds} s:\n{self.logs()}"
            assert self.state()["Running"], f"the container stopped:\n{self.logs()}"
            time.sleep(0.2)

    def exec(self, *command, user=None, check=True):
        return self.podman("exec", *(["--user", user] if user else []), self.name, *command, check=check)

    def processes(self):
        return json.loads(self.exec("python", "-c", PROCESSES).stdout)

    def state(self):
        return json.loads(self.podman("inspect", self.name).stdout)[0]["State"]

    def logs(self):
        result = self.podman("logs", self.name, check=False)
        return (result.stdout + result.stderr).decode(errors="replace")[-4000:]

    def remove(self):
        self.podman("rm", "-f", "-t", "0", self.name, check=False)
