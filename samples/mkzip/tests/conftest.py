"""A local origin for the sources, and the setting that lets the sample fetch from it."""

import functools
import http.server
import os
import threading
import urllib.parse

import pytest


@pytest.fixture(scope="module", autouse=True)
def loopback_origins_allowed():
    """The sample fetches under the project's settings, which refuse loopback like a server does;
    the origins here are on loopback. Set before the project is first loaded in this process."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UFOP_BLOCKED_NETWORKS", "none")
        yield


class FolderOrigin:
    """Serves the files of `folder` over HTTP on loopback; `requested` lists the paths asked for."""

    def __init__(self, folder):
        self.folder = folder
        self.requested = []
        origin = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                origin.requested.append(self.path)

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=os.fspath(folder)))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def add(self, name, data):
        """Serve `data` at /<name> (a name may hold folders); returns its URL."""
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return self.url(name)

    def url(self, name):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{urllib.parse.quote(name)}"


@pytest.fixture
def origin(tmp_path):
    folder = tmp_path / "origin"
    folder.mkdir()
    origin = FolderOrigin(folder)
    origin.thread.start()
    yield origin
    origin.httpd.shutdown()
    origin.httpd.server_close()
