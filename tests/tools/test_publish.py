"""``ufop-sdk publish``: build, push, release and deploy, against stand-in ``docker`` and ``qdoractl``.

The stand-ins are small Python scripts put first on PATH. Each appends its
argv to a log (one JSON list a line), prints a line, and exits with the code
``FAKE_<TOOL>_FAIL=<subcommand>:<code>`` gives it (0 otherwise).
"""

import json
import os
import re
import shlex
import sys

import pytest
from support import run_cli

import ufop_sdk

try:
    import yaml
except ImportError:  # pragma: no cover - the [test] extras install it
    pytest.fail("these tests parse dora.yml with PyYAML: pip install pyyaml (it is in the [test] extras)",
                pytrace=False)

STAND_IN = """#!{python}
import json, os, sys
tool = os.path.basename(sys.argv[0])
with open(os.environ["FAKE_TOOLS_LOG"], "a", encoding="utf-8") as log:
    log.write(json.dumps([tool, *sys.argv[1:]]) + "\\n")
subcommand = sys.argv[1] if len(sys.argv) > 1 else ""
failures = dict(item.split(":") for item in os.environ.get("FAKE_" + tool.upper() + "_FAIL", "").split(",")
                if item)
print(f"fake {{tool}} {{subcommand}}: working", flush=True)
if subcommand in failures:
    print(f"fake {{tool}} {{subcommand}}: error: it failed on purpose", file=sys.stderr)
    sys.exit(int(failures[subcommand]))
print(f"fake {{tool}} {{subcommand}}: done")
"""
WHERE = {"docker": "docs.docker.com", "qdoractl": "developer.qiniu.com"}


class Tools:
    """Stand-in tools in their own bin folder, and the log of their calls."""

    def __init__(self, root, names=("docker", "qdoractl")):
        self.bin = root / "bin"
        self.bin.mkdir()
        self.log = root / "calls.jsonl"
        for name in names:
            script = self.bin / name
            script.write_text(STAND_IN.format(python=sys.executable), encoding="utf-8")
            script.chmod(0o755)

    def env(self, path=None, **failures):
        """The environment for run_cli: the stand-ins first on PATH (or `path`), `failures` per tool."""
        return {"PATH": path or f"{self.bin}{os.pathsep}{os.environ['PATH']}",
                "FAKE_TOOLS_LOG": str(self.log),
                **{f"FAKE_{tool.upper()}_FAIL": rule for tool, rule in failures.items()}}

    def calls(self):
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def tools(tmp_path):
    return Tools(tmp_path)


@pytest.fixture
def project(tmp_path):
    """A project folder without a Dockerfile or dora.yml."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "processors.py").write_text("from ufop_sdk import Processor\n", encoding="utf-8")
    (folder / "requirements.txt").write_text("ufop-sdk\n", encoding="utf-8")
    return folder


def publish(tools, project, *args, **failures):
    return run_cli("publish", "--project", project, *args, env=tools.env(**failures), timeout=30)


def expected_calls(project, name="myufop", version="1.0.0", tag=None, region="z0", expect="1",
                   base_image="python:3.12-slim"):
    """The calls of a run; `base_image` None for a Dockerfile that takes none."""
    tag = tag or f"{name}:{version}"
    base = ["--build-arg", f"BASE_IMAGE={base_image}"] if base_image else []
    return [["docker", "build", "--platform", "linux/amd64", *base, "-t", tag, str(project)],
            ["qdoractl", "push", tag],
            ["qdoractl", "release", "--config", str(project)],
            ["qdoractl", "deploy", name, version, "--region", region, "--expect", expect]]


def progress(result):
    """The step numbers of the ``[n/6]`` lines on stderr, in order."""
    return [int(n) for n in re.findall(rb"^\[(\d)/6\]", result.stderr, re.MULTILINE)]


def dora(project):
    return yaml.safe_load((project / "dora.yml").read_text(encoding="utf-8"))


def files_in(folder):
    return sorted(path.name for path in folder.iterdir())


# --- the happy path ----------------------------------------------------------------------------------------

def test_publish_runs_the_four_commands_in_order(tools, project):
    result = publish(tools, project, "--name", "myufop", "--version", "1.0.0")
    assert result.returncode == 0, result.stderr
    assert tools.calls() == expected_calls(project)
    assert progress(result) == [1, 2, 3, 4, 5, 6]
    assert b"fake qdoractl deploy: done" in result.stdout, "the tools' own output is shown"
    assert b"published myufop 1.0.0" in result.stdout
    assert files_in(project) == [".dockerignore", ".ufop", "Dockerfile", "dora.yml", "processors.py",
                                 "requirements.txt"]
    assert (project / "Dockerfile").read_bytes() == run_cli("dockerfile", cwd=project.parent).stdout


def test_publish_uses_the_current_folder_by_default(tools, project):
    result = run_cli("publish", "--name", "myufop", "--version", "1.0.0", cwd=project, env=tools.env())
    assert result.returncode == 0, result.stderr
    assert tools.calls() == expected_calls(".")
    assert (project / "dora.yml").is_file()


def test_the_options_reach_the_commands_and_dora_yml(tools, project):
    result = publish(tools, project, "--name", "my_resizer-2", "--version", "2.1.0-rc.1",
                     "--tag", "registry.example.com/team/resizer:build-7", "--flavor", "C2M4",
                     "--region", "nb", "--expect", "3", "--desc", "Resizes images")
    assert result.returncode == 0, result.stderr
    assert tools.calls() == expected_calls(project, "my_resizer-2", "2.1.0-rc.1",
                                           tag="registry.example.com/team/resizer:build-7",
                                           region="nb", expect="3")
    assert dora(project) == {
        "ufopname": "my_resizer-2",
        "verstr": "2.1.0-rc.1",
        "image": "registry.example.com/team/resizer:build-7",
        "desc": "Resizes images",
        "flavor": "C2M4",
        "health_check": {"path": "/health", "timeout": 3},
        "env": {"global": [{"key": "FLAVOR", "value": "C2M4"}]},
        "log_file_paths": ["/var/log/ufop/"],
    }


def test_dora_yml_has_the_platform_defaults(tools, project):
    assert publish(tools, project, "--name", "myufop", "--version", "1.0").returncode == 0
    assert dora(project) == {
        "ufopname": "myufop",
        "verstr": "1.0",  # a string, though it reads like a number
        "image": "myufop:1.0",
        "desc": "",
        "flavor": "C1M1",
        "health_check": {"path": "/health", "timeout": 3},
        "env": {"global": [{"key": "FLAVOR", "value": "C1M1"}]},
        "log_file_paths": ["/var/log/ufop/"],
    }


@pytest.mark.parametrize("desc", [
    'Says "hello": to anyone, at 10:30 # not a comment',
    "first line\nsecond line: ünïcödé 中文, 'single' quotes, {braces} [brackets] & *star",
    "emoji outside the BMP: 😀 🎉",
    "- starts like a list item",
])
def test_desc_survives_the_round_trip_through_dora_yml(tools, project, desc):
    result = publish(tools, project, "--name", "myufop", "--version", "1.0.0", "--desc", desc, "--no-deploy")
    assert result.returncode == 0, result.stderr
    assert dora(project)["desc"] == desc


def test_no_deploy_stops_after_the_release(tools, project):
    result = publish(tools, project, "--name", "myufop", "--version", "1.0.0", "--no-deploy")
    assert result.returncode == 0, result.stderr
    assert tools.calls() == expected_calls(project)[:3]
    assert progress(result) == [1, 2, 3, 4, 5, 6]
    assert b"[6/6] deploy skipped" in result.stderr


# --- failures ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("failures", "code", "calls_made", "step"), [
    ({"docker": "build:5"}, 5, 1, 3),
    ({"qdoractl": "push:4"}, 4, 2, 4),
    ({"qdoractl": "release:3"}, 3, 3, 5),
    ({"qdoractl": "deploy:7"}, 7, 4, 6),
])
def test_publish_stops_at_the_first_failing_step(tools, project, failures, code, calls_made, step):
    result = publish(tools, project, "--name", "myufop", "--version", "1.0.0", **failures)
    assert result.returncode == code
    assert tools.calls() == expected_calls(project)[:calls_made]
    assert progress(result) == list(range(1, step + 1))
    (tool, rule), = failures.items()
    subcommand = rule.split(":")[0]
    assert f"fake {tool} {subcommand}: working".encode() in result.stdout
    assert f"fake {tool} {subcommand}: error: it failed on purpose".encode() in result.stderr
    assert f"step {step} failed with exit code {code}".encode() in result.stderr
    assert b"published" not in result.stdout


# --- dry run -----------------------------------------------------------------------------------------------

def dry_run_sections(stdout):
    """{header: text} for each ``--- header ---`` block of a dry run's output."""
    parts = re.split(r"^--- (.+) ---\n", stdout.decode(), flags=re.MULTILINE)
    return {header: text.rstrip("\n") for header, text in zip(parts[1::2], parts[2::2], strict=True)}


def test_dry_run_prints_the_files_and_commands_and_does_nothing(tools, project):
    before = files_in(project)
    dry = publish(tools, project, "--name", "myufop", "--version", "1.0.0", "--desc", "A: b", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert tools.calls() == [], "a dry run runs nothing"
    assert files_in(project) == before, "a dry run writes nothing"
    sections = dry_run_sections(dry.stdout)
    assert list(sections) == [f"would write {project / name}" for name in
                              ("Dockerfile", ".dockerignore", "dora.yml", ".ufop")] + ["would run"]
    assert sections["would run"].splitlines() == [shlex.join(call) for call in expected_calls(project)]
    printed = run_cli("dockerfile", cwd=project.parent).stdout.decode()
    assert sections[f"would write {project / 'Dockerfile'}"] == printed.rstrip("\n")

    real = publish(tools, project, "--name", "myufop", "--version", "1.0.0", "--desc", "A: b")
    assert real.returncode == 0, real.stderr
    assert sections[f"would write {project / 'dora.yml'}"] == (project / "dora.yml").read_text().rstrip("\n")


def test_dry_run_leaves_out_an_existing_dockerfile_and_the_skipped_deploy(tools, project):
    (project / "Dockerfile").write_text("FROM mine\n")
    dry = publish(tools, project, "--name", "myufop", "--version", "1.0.0", "--dry-run", "--no-deploy")
    assert dry.returncode == 0, dry.stderr
    sections = dry_run_sections(dry.stdout)
    written = [f"would write {project / name}" for name in (".dockerignore", "dora.yml", ".ufop")]
    assert list(sections) == [*written, "would run"]
    assert sections["would run"].splitlines() == [shlex.join(call) for call in
                                                  expected_calls(project, base_image=None)[:3]]
    assert tools.calls() == [] and not (project / "dora.yml").exists()


def test_dry_run_commands_are_the_ones_a_real_run_executes(tools, tmp_path):
    """Each printed line, split as a shell would, is the argv the real run uses, spaces and all."""
    project = tmp_path / "my project"
    project.mkdir()
    dry = publish(tools, project, "--name", "myufop", "--version", "1.0.0", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert publish(tools, project, "--name", "myufop", "--version", "1.0.0").returncode == 0
    printed = [shlex.split(line) for line in dry_run_sections(dry.stdout)["would run"].splitlines()]
    assert printed == tools.calls()


# --- validation: nothing runs and nothing is written -------------------------------------------------------

@pytest.mark.parametrize(("args", "mentions"), [
    (["--name", "abc"], b"name"),
    (["--name", "UPPER"], b"name"),
    (["--name", "has space"], b"name"),
    (["--name", "x" * 21], b"name"),
    (["--name", "a.b"], b"name"),
    (["--version", ""], b"version"),
    (["--version", "1.0 beta"], b"version"),
    (["--version", "1.0/2"], b"version"),
    (["--flavor", "big"], b"flavor"),
    (["--region", "Z0!"], b"region"),
    (["--region", ""], b"region"),
    (["--expect", "-1"], b"expect"),
    (["--base-image", "two words"], b"base image"),
])
@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_invalid_input_exits_2_before_anything_runs(tools, project, args, mentions, dry_run):
    given = dict(zip(args[::2], args[1::2], strict=True))
    options = {"--name": "myufop", "--version": "1.0.0", **given}
    result = publish(tools, project, *[item for pair in options.items() for item in pair],
                     *(["--dry-run"] if dry_run else []))
    assert result.returncode == 2, result.stderr
    assert mentions in result.stderr.lower()
    assert b"Traceback" not in result.stderr
    assert progress(result) == []
    assert result.stdout == b"", "not even a dry run's output"
    assert tools.calls() == []
    assert files_in(project) == ["processors.py", "requirements.txt"]


def test_a_name_error_says_what_the_platform_allows(tools, project):
    result = publish(tools, project, "--name", "UPPER", "--version", "1.0.0")
    assert result.returncode == 2
    assert b"5-20 of lowercase letters" in result.stderr


# --- missing tools -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("present", "missing"), [
    (["qdoractl"], ["docker"]),
    (["docker"], ["qdoractl"]),
    ([], ["docker", "qdoractl"]),
])
def test_missing_tools_exit_2_saying_where_to_get_them(tmp_path, project, present, missing):
    tools = Tools(tmp_path, names=present)
    result = run_cli("publish", "--project", project, "--name", "myufop", "--version", "1.0.0",
                     env=tools.env(path=str(tools.bin)))
    assert result.returncode == 2, result.stderr
    for tool in missing:
        assert f"{tool} is not on PATH".encode() in result.stderr
        assert WHERE[tool].encode() in result.stderr
    for tool in present:
        assert f"{tool} is not on PATH".encode() not in result.stderr
    assert tools.calls() == []
    assert files_in(project) == ["processors.py", "requirements.txt"], "nothing is written"


# --- re-running --------------------------------------------------------------------------------------------

def test_publishing_again_is_safe(tools, project):
    args = ("--name", "myufop", "--version", "1.0.0", "--desc", "same")
    assert publish(tools, project, *args).returncode == 0
    first = {name: (project / name).read_bytes() for name in ("Dockerfile", "dora.yml")}
    again = publish(tools, project, *args)
    assert again.returncode == 0, again.stderr
    assert {name: (project / name).read_bytes() for name in first} == first
    assert b"[2/6] writing dora.yml, .ufop/" in again.stderr, "the Dockerfile is not written twice"
    assert tools.calls() == expected_calls(project) * 2


def test_a_customized_dockerfile_is_never_overwritten(tools, project):
    mine = "FROM python:3.13-slim\n# my own\nCMD [\"ufop-sdk\", \"serve\"]\n"
    (project / "Dockerfile").write_text(mine)
    for version in ("1.0.0", "1.1.0"):
        result = publish(tools, project, "--name", "myufop", "--version", version)
        assert result.returncode == 0, result.stderr
        assert (project / "Dockerfile").read_text() == mine
    assert dora(project)["verstr"] == "1.1.0", "an update writes the new version"
    assert dora(project)["image"] == "myufop:1.1.0"


def test_a_failed_run_can_be_run_again(tools, project):
    failed = publish(tools, project, "--name", "myufop", "--version", "1.0.0", qdoractl="push:4")
    assert failed.returncode == 4
    written = (project / "dora.yml").read_bytes()
    retried = publish(tools, project, "--name", "myufop", "--version", "1.0.0")
    assert retried.returncode == 0, retried.stderr
    assert (project / "dora.yml").read_bytes() == written
    assert tools.calls() == expected_calls(project)[:2] + expected_calls(project)



# --- the build context: what goes into the image -----------------------------------------------------------

def test_publish_puts_one_wheel_of_the_running_ufop_sdk_and_the_constraints_in_dot_ufop(tools, project):
    for version in ("1.0.0", "1.0.1"):
        assert publish(tools, project, "--name", "myufop", "--version", version).returncode == 0
    wheels = sorted(path.name for path in (project / ".ufop" / "wheels").iterdir())
    assert wheels == [f"ufop_sdk-{ufop_sdk.__version__}-py3-none-any.whl"], "replaced, not added"
    assert (project / ".ufop" / "constraints.txt").read_text().startswith("# The versions installed")


def test_publish_writes_a_complete_dockerignore_when_the_project_has_none(tools, project):
    assert publish(tools, project, "--name", "myufop", "--version", "1.0.0").returncode == 0
    ignored = (project / ".dockerignore").read_text().split()
    for entry in ("**/.env", "**/.env.*", ".git", ".venv/", "venv/", "tests/", "dist/", "build/", "dora.yml"):
        assert entry in ignored, entry


def test_publish_keeps_the_projects_own_dockerignore_and_requirements(tools, project):
    (project / ".dockerignore").write_text("**/.env*\nnotes/\n")
    assert publish(tools, project, "--name", "myufop", "--version", "1.0.0").returncode == 0
    assert (project / ".dockerignore").read_text() == "**/.env*\nnotes/\n"
    assert (project / "requirements.txt").read_text() == "ufop-sdk\n"


def test_publish_writes_requirements_when_the_project_has_none(tools, project):
    """A migrated or hand-written project may have none; the Dockerfile copies it."""
    (project / "requirements.txt").unlink()
    assert publish(tools, project, "--name", "myufop", "--version", "1.0.0").returncode == 0
    assert (project / "requirements.txt").read_text() == "ufop-sdk\n"


@pytest.mark.parametrize(("dockerignore", "secrets", "copied"), [
    (None, [".env", ".env.production", "config/.env.local"], []),
    ("**/.env\n", [".env"], []),
    ("", [".env"], [".env"]),
    (".env\n", [".env", ".env.production"], [".env.production"]),
    (".env\n.env.*\n", [".env", "config/.env"], ["config/.env"]),
    ("**/.env*\n!keep/.env\n", [".env", "keep/.env"], ["keep/.env"]),
    ("config/\n", ["config/.env", ".env.staging"], [".env.staging"]),
], ids=["written-by-publish", "ignored", "empty", "root-only", "nested", "let-back-in", "other-folder"])
@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_publish_refuses_to_build_while_env_files_would_be_copied(tools, project, dockerignore, secrets,
                                                                   copied, dry_run):
    if dockerignore is not None:
        (project / ".dockerignore").write_text(dockerignore)
    for secret in secrets:
        (project / secret).parent.mkdir(parents=True, exist_ok=True)
        (project / secret).write_text("TOKEN=secret\n")
    before = files_in(project)
    dry = ["--dry-run"] if dry_run else []
    result = publish(tools, project, "--name", "myufop", "--version", "1.0.0", *dry)
    if not copied:
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 2, result.stderr
    assert f"the image would contain {', '.join(copied)}".encode() in result.stderr
    assert b"Add `**/.env` and `**/.env.*` to .dockerignore" in result.stderr
    assert b"Traceback" not in result.stderr
    assert tools.calls() == [] and files_in(project) == before, "nothing run or written"


def test_publish_refuses_a_dockerignore_that_leaves_out_the_wheel(tools, project):
    (project / ".dockerignore").write_text(".*\n")
    result = publish(tools, project, "--name", "myufop", "--version", "1.0.0")
    assert result.returncode == 2, result.stderr
    assert b"add the line `!.ufop`" in result.stderr
    assert tools.calls() == []
    (project / ".dockerignore").write_text(".*\n!.ufop\n")
    assert publish(tools, project, "--name", "myufop", "--version", "1.0.0").returncode == 0


def test_the_image_is_built_for_the_platforms_amd64_machines(tools, project):
    assert publish(tools, project, "--name", "myufop", "--version", "1.0.0", "--no-deploy").returncode == 0
    build = tools.calls()[0]
    assert build[:4] == ["docker", "build", "--platform", "linux/amd64"]


def test_base_image_reaches_the_build_as_a_build_argument(tools, project):
    result = publish(tools, project, "--name", "myufop", "--version", "1.0.0", "--base-image",
                     "registry.example.com/mirror/python:3.12-slim")
    assert result.returncode == 0, result.stderr
    assert tools.calls() == expected_calls(project, base_image="registry.example.com/mirror/python:3.12-slim")
    assert (project / "Dockerfile").read_bytes() == run_cli("dockerfile", cwd=project.parent).stdout, \
        "the written Dockerfile keeps the default: the build argument chooses"


def test_base_image_works_with_the_dockerfile_init_wrote(tools, tmp_path):
    project = tmp_path / "project"
    assert run_cli("init", "--name", "myufop", project).returncode == 0
    result = publish(tools, project, "--name", "myufop", "--version", "1.0.0", "--base-image", "mine:1")
    assert result.returncode == 0, result.stderr
    assert tools.calls() == expected_calls(project, base_image="mine:1")


def test_base_image_for_a_dockerfile_without_the_argument_exits_2_saying_what_to_change(tools, project):
    (project / "Dockerfile").write_text("FROM python:3.12-slim\nCMD [\"ufop-sdk\", \"serve\"]\n")
    result = publish(tools, project, "--name", "myufop", "--version", "1.0.0", "--base-image", "mine:1")
    assert result.returncode == 2, result.stderr
    assert b"does not take a base image" in result.stderr
    assert b"ARG BASE_IMAGE=python:3.12-slim\n    FROM ${BASE_IMAGE}" in result.stderr
    assert tools.calls() == [] and files_in(project) == ["Dockerfile", "processors.py", "requirements.txt"]


def test_a_dockerfile_without_the_argument_builds_on_its_own_base_without_one(tools, project):
    (project / "Dockerfile").write_text("FROM python:3.12-slim\nCMD [\"ufop-sdk\", \"serve\"]\n")
    result = publish(tools, project, "--name", "myufop", "--version", "1.0.0")
    assert result.returncode == 0, result.stderr
    assert tools.calls() == expected_calls(project, base_image=None)
    assert b"does not install from .ufop/" in result.stderr, "it is told how to get ufop-sdk into the image"


def test_build_only_builds_and_needs_no_qdoractl(tmp_path, project):
    tools = Tools(tmp_path, names=["docker"])
    result = run_cli("publish", "--project", project, "--name", "myufop", "--version", "1.0.0",
                     "--build-only", env=tools.env(path=f"{tools.bin}{os.pathsep}/usr/bin:/bin"))
    assert result.returncode == 0, result.stderr
    assert tools.calls() == expected_calls(project)[:1]
    assert progress(result) == [1, 2, 3]
    assert b"built myufop:1.0.0" in result.stdout
