"""``ufop-sdk init``: a new project that works as generated, and never clobbers files."""

import json
import subprocess
import sys

import pytest
from support import run_cli

GENERATED = ["processors.py", "tests/test_processors.py", ".env", "requirements.txt",
             ".dockerignore", "README.md"]


def test_init_writes_a_project_that_works(tmp_path):
    result = run_cli("init", "demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    project = tmp_path / "demo"
    for name in GENERATED:
        assert (project / name).is_file(), name
    assert "UFOP_NAME=demo-ufop" in (project / ".env").read_text()

    info = run_cli("test", "processors.py", cwd=project)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["size"] == (project / "processors.py").stat().st_size
    assert run_cli("test", "README.md", "hello/qq", cwd=project).stdout == b"hello qq"

    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project,
                           capture_output=True, text=True, timeout=120)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "3 passed" in tests.stdout


def test_init_uses_the_given_name(tmp_path):
    assert run_cli("init", "--name", "my_resizer", cwd=tmp_path).returncode == 0
    assert "UFOP_NAME=my_resizer" in (tmp_path / ".env").read_text()


@pytest.mark.parametrize("name", ["abc", "UPPER-case", "has space", "x" * 21, "dots.not.allowed"])
def test_init_refuses_an_invalid_name(tmp_path, name):
    result = run_cli("init", "--name", name, cwd=tmp_path)
    assert result.returncode == 2
    assert b"5-20 of lowercase letters" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_init_never_overwrites_without_force(tmp_path):
    (tmp_path / "processors.py").write_text("# mine\n")
    result = run_cli("init", "--name", "myufop", cwd=tmp_path)
    assert result.returncode == 1
    assert b"processors.py" in result.stderr and b"--force" in result.stderr
    assert (tmp_path / "processors.py").read_text() == "# mine\n"
    assert not (tmp_path / ".env").exists(), "nothing is written when there is a conflict"

    forced = run_cli("init", "--name", "myufop", "--force", cwd=tmp_path)
    assert forced.returncode == 0
    assert "class Hello(Processor)" in (tmp_path / "processors.py").read_text()
