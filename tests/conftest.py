"""Fixtures shared by the tests: project folders on disk, and a small real PNG."""

import itertools
import struct
import sys
import zlib
from textwrap import dedent

import pytest
from support import Server

from ufop_sdk.app.project import load_app
from ufop_sdk.app.runner import ProcessorRunner
from ufop_sdk.app.settings import Settings


def pytest_configure(config):
    config.addinivalue_line("markers", "expect_traceback: the test makes a Server log a traceback on "
                                       "purpose (see tests/support.py's Server)")


@pytest.fixture(autouse=True)
def no_unexpected_traceback(request):
    """Fail a test during which a running Server printed a traceback, unless it is marked expect_traceback.

    Set up before any function-scoped fixture and torn down after, so a
    Server a test's own fixture starts is checked as part of that test.
    """
    Server.traceback_expected_by_test = request.node.get_closest_marker("expect_traceback") is not None
    failures_before = request.session.testsfailed
    try:
        yield
        failed = request.session.testsfailed > failures_before  # its own error says more
        for server in list(Server.running):
            server.check_tracebacks(expected=failed)
    finally:
        Server.traceback_expected_by_test = False


@pytest.fixture
def make_project(tmp_path):
    """``make_project(source, env=None, **modules)`` writes a project folder and returns it.

    `source` becomes ``processors.py`` (None: no such file), each keyword another
    module (``steps="..."`` -> ``steps.py``) and `env` the ``.env``; all are dedented.
    """
    numbers = itertools.count(1)

    def make(source=None, *, env=None, **modules):
        folder = tmp_path / f"project{next(numbers)}"
        folder.mkdir()
        if source is not None:
            modules["processors"] = source
        for name, text in modules.items():
            (folder / f"{name}.py").write_text(dedent(text), encoding="utf-8")
        if env is not None:
            (folder / ".env").write_text(dedent(env), encoding="utf-8")
        return folder

    return make


@pytest.fixture
def load_runner():
    """``load_runner(folder, app="processors", debug=False)``: its ProcessorRunner (``.app``: its App).

    The host environment is kept out: only the folder's ``.env`` is read.
    """

    def load(folder, app="processors", debug=False):
        settings = Settings.load(folder, environ={}, app=app)
        return ProcessorRunner(load_app(settings), debug=debug)

    return load


@pytest.fixture(autouse=True)
def forget_loaded_projects(tmp_path, monkeypatch):
    """Each test starts with the sys.path and project modules it found, not the last test's."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]


@pytest.fixture(scope="session")
def png():
    """A valid 1x1 grey PNG image."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00\x80")) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def redis_server():
    """A real redis-server on a free loopback port, for one test module (see redis_support).

    Without redis-server installed this fails in CI (CI=true) and skips elsewhere.
    """
    from redis_support import RedisServer

    with RedisServer() as server:
        yield server
