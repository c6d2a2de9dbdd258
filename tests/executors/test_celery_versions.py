"""Celery mode refuses a Celery or kombu outside the series its patches of their internals are tested with."""

import re

import pytest
from support import PROJECTS, REPO, free_port, run_cli

from ufop_sdk.executors.celery.versions import TESTED_SERIES, untested_versions

UNREACHABLE_BROKER = "redis://127.0.0.1:9/0"  # never dialled: the check comes first


@pytest.mark.parametrize(("installed", "untested"), [
    ({"celery": "5.7.0", "kombu": "5.7.0"}, []),
    ({"celery": "5.7.12", "kombu": "5.7.0rc1"}, []),
    ({"celery": "5.7.0", "kombu": "5.8.0"}, ["kombu 5.8.0"]),
    ({"celery": "5.3.6", "kombu": "5.3.4"}, ["celery 5.3.6", "kombu 5.3.4"]),
    ({"celery": "6.7.0", "kombu": "5.70.0"}, ["celery 6.7.0", "kombu 5.70.0"]),
    ({"celery": "5.7.0", "kombu": "(not installed)"}, ["kombu (not installed)"]),
])
def test_untested_versions_are_those_outside_the_tested_series(installed, untested):
    assert untested_versions(installed) == untested


def test_setup_py_pins_the_tested_series():
    setup = (REPO / "setup.py").read_text()
    for name, series in TESTED_SERIES.items():
        major, minor = map(int, series.split("."))
        assert re.search(rf'"{name}>={series},<{major}\.{minor + 1}"', setup), name


@pytest.fixture
def kombu_5_99(tmp_path):
    """A directory that, first on PYTHONPATH, makes the installed kombu's metadata say 5.99.0."""
    info = tmp_path / "kombu-5.99.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: kombu\nVersion: 5.99.0\n")
    return f"{tmp_path}:{REPO}"


@pytest.mark.parametrize("command", [["worker"], ["serve", "--port", str(free_port())]])
def test_celery_mode_with_an_untested_kombu_exits_2_saying_so(kombu_5_99, command):
    result = run_cli(*command, "--project", PROJECTS / "celery", timeout=30,
                     env={"PYTHONPATH": kombu_5_99, "UFOP_BROKER_URL": UNREACHABLE_BROKER})
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert "Celery mode is tested with celery 5.7.x, kombu 5.7.x, found kombu 5.99.0" in stderr
    assert "Traceback" not in stderr


def test_serve_without_a_broker_ignores_the_celery_versions(kombu_5_99):
    result = run_cli("routes", "--project", PROJECTS / "celery", env={"PYTHONPATH": kombu_5_99})
    assert result.returncode == 0, result.stderr.decode()
