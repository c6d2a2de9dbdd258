"""What ``publish`` adds to the build context: the wheel of the running ufop-sdk, the constraints, and
the .dockerignore rules that keep ``.env`` files out."""

import importlib.metadata
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import ufop_sdk
from ufop_sdk.tools.build_context import DockerIgnore, constraints, copied_secrets, write_sdk_wheel
from ufop_sdk.tools.packaging import dockerignore

PACKAGE = Path(ufop_sdk.__file__).parent


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    """The folder pip installed the packed wheel into (no dependencies, no index: just the file)."""
    folder = tmp_path_factory.mktemp("wheel")
    wheel = write_sdk_wheel(folder)
    target = folder / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--target", str(target), str(wheel)], check=True, capture_output=True, timeout=120)
    return wheel, target


def test_the_wheel_installs_the_running_code_file_for_file(installed_wheel):
    _, target = installed_wheel
    ours = {path.relative_to(PACKAGE) for path in PACKAGE.rglob("*")
            if path.is_file() and "__pycache__" not in path.parts}
    theirs = {path.relative_to(target / "ufop_sdk") for path in (target / "ufop_sdk").rglob("*")
              if path.is_file() and "__pycache__" not in path.parts}
    assert theirs == ours
    assert {path: (target / "ufop_sdk" / path).read_bytes() for path in ours} == \
        {path: (PACKAGE / path).read_bytes() for path in ours}
    assert (target / "qiniu_ufop" / "__init__.py").is_file(), "the qiniu-ufop compatibility package too"


def test_the_wheel_has_the_version_dependencies_and_command(installed_wheel):
    wheel, target = installed_wheel
    assert wheel.name == f"ufop_sdk-{ufop_sdk.__version__}-py3-none-any.whl"
    installed = importlib.metadata.PathDistribution(target / f"ufop_sdk-{ufop_sdk.__version__}.dist-info")
    assert installed.version == ufop_sdk.__version__
    assert any(requirement.startswith("tornado") for requirement in installed.requires)
    commands = [entry.value for entry in installed.entry_points if entry.name == "ufop-sdk"]
    assert commands == ["ufop_sdk.cli:main"]
    assert (target / "bin" / "ufop-sdk").is_file()


def test_the_wheels_record_matches_its_files(installed_wheel):
    wheel, _ = installed_wheel
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        record = archive.read(f"ufop_sdk-{ufop_sdk.__version__}.dist-info/RECORD").decode().splitlines()
    assert {line.split(",")[0] for line in record} == names


def test_the_constraints_pin_the_versions_installed_here():
    pins = [line for line in constraints().splitlines() if not line.startswith("#")]
    for name in ("tornado", "celery", "kombu", "redis", "click", "attrs"):
        assert f"{name}=={importlib.metadata.version(name)}" in pins, name
    assert not any(line.lower().startswith("ufop-sdk==") for line in pins), "the wheel is ufop-sdk"
    assert len({line.split("==")[0].lower() for line in pins}) == len(pins), "one pin a distribution"


@pytest.mark.parametrize(("rules", "path", "excluded"), [
    (".env", ".env", True),
    (".env", "config/.env", False),  # a rule is anchored at the context's root
    ("/.env", ".env", True),
    ("**/.env", "config/deep/.env", True),
    ("**/.env", ".env", True),
    (".env.*", ".env.production", True),
    (".env.*", ".env", False),
    ("*.pyc", "a.pyc", True),
    ("*.pyc", "pkg/a.pyc", False),  # * stays within one segment
    ("**/*.pyc", "pkg/sub/a.pyc", True),
    ("tests/", "tests/test_a.py", True),  # a folder's rule covers what is inside it
    ("tests", "tests/data/x", True),
    ("te?ts", "tests/x", True),
    ("[abc].txt", "b.txt", True),
    ("[abc].txt", "d.txt", False),
    ("**/.env*\n!keep/.env", "keep/.env", False),  # the last matching rule wins
    ("!keep/.env\n**/.env*", "keep/.env", True),
    ("# .env\n\n", ".env", False),  # comments and blank lines
    ("./build", "build/x", True),
])
def test_dockerignore_rules_match_as_docker_matches_them(rules, path, excluded):
    assert DockerIgnore(rules).excludes(path) is excluded


def test_the_written_dockerignore_keeps_secrets_environments_and_history_out():
    rules = DockerIgnore(dockerignore())
    for path in (".env", ".env.production", "conf/.env", "conf/.env.local", ".git/config", ".venv/bin/python",
                 "venv/lib/x.py", "tests/test_a.py", "dist/x.whl", "build/lib/x", "dora.yml",
                 "pkg/__pycache__/a.cpython-311.pyc"):
        assert rules.excludes(path), path
    for path in ("processors.py", "requirements.txt", ".ufop/constraints.txt", ".ufop/wheels/x.whl",
                 "pkg/module.py"):
        assert not rules.excludes(path), path


def test_copied_secrets_skips_nothing_a_rule_lets_back_in(tmp_path):
    for path in ("data/.env", "data/keep/.env.local", ".env"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("X=1\n")
    assert copied_secrets(tmp_path, DockerIgnore("data/\n!data/keep/\n.env\n")) == ["data/keep/.env.local"]
    assert copied_secrets(tmp_path, DockerIgnore("data/\n")) == [".env"]
