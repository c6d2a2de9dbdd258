"""``ufop-sdk routes`` and the command group itself."""

import shutil
import subprocess

import pytest
from support import SAMPLES, run_cli

import ufop_sdk


def test_routes_prints_the_table_in_order(tmp_path):
    (tmp_path / "processors.py").write_text(
        "from ufop_sdk import Processor\n"
        "class Thumb(Processor):\n"
        "    route = r'thumbnail/(?P<w>\\d+)x(?P<h>\\d+)'\n"
        "    accepts = ('image/*', 'application/pdf')\n"
        "    timeout = 5\n"
        "    def process(self, req): return b''\n"
        "class Any(Processor):\n"
        "    route = r'.*'\n"
        "    def process(self, req): return b''\n")
    result = run_cli("routes", cwd=tmp_path, env={"UFOP_TIMEOUT": "12.5"})
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.decode().splitlines()]
    assert lines[0] == ["#", "processor", "route", "accepts", "timeout", "notes"]
    assert lines[1] == ["1", "Thumb", r"thumbnail/(?P<w>\d+)x(?P<h>\d+)", "image/*,", "application/pdf", "5s"]
    assert lines[2] == ["2", "Any", ".*", "*/*", "12.5s"]


def test_routes_note_streamed_sources_async_processors_and_long_cmds(tmp_path):
    (tmp_path / "processors.py").write_text(
        "from ufop_sdk import Processor\n"
        "class Stream(Processor):\n"
        "    route = r'stream'\n"
        "    prefetch = False\n"
        "    def process(self, req): return b''\n"
        "class Waits(Processor):\n"
        "    route = r'wait'\n"
        "    concurrency = 8\n"
        "    max_cmd_bytes = 65536\n"
        "    async def process(self, req): return b''\n"
        "class Plain(Processor):\n"
        "    route = r'plain'\n"
        "    def process(self, req): return b''\n")
    result = run_cli("routes", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[0].split()[-1] == "notes"
    assert lines[1].endswith("streams its source (prefetch=False)")
    assert lines[2].endswith("async, 8 at once per worker; cmds up to 65536 bytes")
    assert lines[3].endswith("s")  # the timeout column: nothing to note


def test_routes_of_the_hello_sample():
    result = run_cli("routes", "--project", SAMPLES / "hello")
    assert [line.split()[1] for line in result.stdout.decode().splitlines()[1:]] == ["Echo", "Hello"]


def test_an_invalid_route_fails_naming_the_processor(tmp_path):
    (tmp_path / "processors.py").write_text(
        "from ufop_sdk import Processor\n"
        "class Broken(Processor):\n"
        "    route = r'thumbnail/(?P<w>\\d+'\n")
    result = run_cli("routes", cwd=tmp_path)
    assert result.returncode == 2
    assert b"processor Broken: invalid route regex" in result.stderr
    assert b"Traceback" not in result.stderr


def test_a_project_without_processors_says_how_to_add_one(tmp_path):
    (tmp_path / "processors.py").write_text("x = 1\n")
    result = run_cli("routes", cwd=tmp_path)
    assert result.returncode == 2
    assert b"define a subclass of ufop_sdk.Processor" in result.stderr


def test_version():
    result = run_cli("--version")
    assert result.stdout.decode().strip() == f"ufop-sdk, version {ufop_sdk.__version__}"


@pytest.mark.parametrize("command", [[], ["init"], ["test"], ["routes"]])
def test_every_command_has_help(command):
    result = run_cli(*command, "--help")
    assert result.returncode == 0
    assert b"Usage: ufop-sdk" in result.stdout


def test_the_console_script_is_installed():
    executable = shutil.which("ufop-sdk")
    assert executable, "pip install -e . puts ufop-sdk on PATH"
    assert subprocess.run([executable, "--version"], capture_output=True).returncode == 0
