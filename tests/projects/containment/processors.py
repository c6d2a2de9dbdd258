"""Processors that start processes of their own: each writes its child's pid to $MARKER_DIR/<name>.pid."""

import os
import subprocess
import time
from pathlib import Path

from ufop_sdk import Processor


def _marker(name):
    return Path(os.environ["MARKER_DIR"]) / f"{name}.pid"


class Spawn(Processor):
    """Runs `sleep 30` three ways and waits for it: past its timeout of 1 s."""

    route = r"spawn/(?P<how>popen|system|fork)/(?P<name>[a-z0-9-]+)"
    timeout = 1

    def process(self, req):
        how, marker = req.args["how"], _marker(req.args["name"])
        if how == "popen":
            child = subprocess.Popen(["sleep", "30"])
            marker.write_text(str(child.pid))
            child.wait()
        elif how == "system":
            os.system(f"echo $$ > {marker}; exec sleep 30")
        else:
            _fork_sleeping(marker, then=lambda pid: os.waitpid(pid, 0))
        return "the child ended"


class Background(Processor):
    """Leaves `sleep 30 &` behind and answers at once, with the sleep's pid."""

    route = r"background/(?P<name>[a-z0-9-]+)"

    def process(self, req):
        marker = _marker(req.args["name"])
        os.system(f"sleep 30 >/dev/null 2>&1 & echo $! > {marker}")
        return marker.read_text().strip()


class CrashBesideChild(Processor):
    """Forks a child that sleeps (holding the worker's socket, as a fork does), then the worker dies."""

    route = r"crash-beside-child/(?P<name>[a-z0-9-]+)"

    def process(self, req):
        _fork_sleeping(_marker(req.args["name"]), then=lambda pid: os._exit(7))


class Helper(Processor):
    """Starts a helper process in setup() and keeps it across requests; answers its pid."""

    route = r"helper"

    def setup(self):
        self.helper = subprocess.Popen(["sleep", "300"])

    def process(self, req):
        return f"{self.helper.pid} {'alive' if self.helper.poll() is None else 'gone'}"


def _fork_sleeping(marker, then):
    """Fork a child that writes its pid to `marker` and sleeps; once it has, call `then(pid)`."""
    pid = os.fork()
    if pid == 0:
        written = marker.with_suffix(".tmp")
        written.write_text(str(os.getpid()))
        written.rename(marker)
        time.sleep(30)
        os._exit(0)
    while not marker.exists():
        time.sleep(0.01)
    then(pid)


class ChildsDescriptors(Processor):
    """What a child exec'd with every inheritable descriptor (close_fds=False) holds open."""

    route = r"childs-descriptors"

    def process(self, req):
        listing = subprocess.run(["sh", "-c", "for fd in /proc/$$/fd/*; do readlink $fd; done; true"],
                                 close_fds=False, capture_output=True, check=True)
        return listing.stdout
