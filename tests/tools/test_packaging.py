"""The image: the Dockerfile ``ufop-sdk dockerfile`` prints and ``init`` writes, read instruction by
instruction, and its CMD run locally the way the platform would run it."""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from support import clean_environment, free_port, run_cli

LOG_DIR = "/var/log/ufop"


def instructions(text):
    """The Dockerfile's instructions as ``(KEYWORD, arguments)``: continuations joined, comments dropped."""
    found, pending = [], None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue  # Docker skips these inside a continuation too
        if stripped.endswith("\\"):
            pending = (pending or "") + stripped[:-1].rstrip() + " "
            continue
        keyword, _, arguments = ((pending or "") + stripped).partition(" ")
        found.append((keyword.upper(), arguments.strip()))
        pending = None
    assert pending is None, f"the Dockerfile ends inside a continuation: {pending!r}"
    return found


def arguments_of(steps, keyword):
    return [arguments for found, arguments in steps if found == keyword]


def environment_of(steps):
    """The variables the ENV instructions set, in both ``ENV K=V ...`` and ``ENV K V`` forms."""
    variables = {}
    for arguments in arguments_of(steps, "ENV"):
        words = shlex.split(arguments)
        if "=" in words[0]:
            variables.update(word.split("=", 1) for word in words)
        else:
            variables[words[0]] = arguments.split(None, 1)[1]
    return variables


def exec_form(arguments):
    """A ``["a", "b"]`` instruction argument as a list; fails on the shell form."""
    try:
        command = json.loads(arguments)
    except ValueError:
        command = None
    assert isinstance(command, list) and all(isinstance(word, str) for word in command), \
        f"expected the exec form [\"...\"], got {arguments!r}"
    return command


def copy_sources(arguments):
    words = [word for word in shlex.split(arguments) if not word.startswith("--")]
    return words[:-1]


def health_check_command(steps):
    """The command of the (last) HEALTHCHECK, as an argv list."""
    checks = arguments_of(steps, "HEALTHCHECK")
    assert checks, "no HEALTHCHECK"
    found = re.fullmatch(r"((?:--\S+\s+)*)CMD\s+(.+)", checks[-1], re.DOTALL)
    assert found, f"HEALTHCHECK without CMD: {checks[-1]!r}"
    return exec_form(found[2])


@pytest.fixture(scope="module")
def dockerfiles(tmp_path_factory):
    """{"printed": what `ufop-sdk dockerfile` prints, "init": what `ufop-sdk init` writes}."""
    empty = tmp_path_factory.mktemp("empty")
    printed = run_cli("dockerfile", cwd=empty)
    assert printed.returncode == 0, printed.stderr
    project = tmp_path_factory.mktemp("project")
    made = run_cli("init", "--name", "myufop", cwd=project)
    assert made.returncode == 0, made.stderr
    return {"printed": printed.stdout.decode(), "init": (project / "Dockerfile").read_text(),
            "project": project}


@pytest.fixture(params=["printed", "init"])
def steps(request, dockerfiles):
    return instructions(dockerfiles[request.param])


def test_init_writes_the_dockerfile_that_is_printed(dockerfiles):
    assert dockerfiles["init"] == dockerfiles["printed"]


def test_the_base_is_a_build_argument_defaulting_to_a_current_slim_python(steps):
    """``ARG BASE_IMAGE=...`` then ``FROM ${BASE_IMAGE}``: ``publish --base-image`` passes another."""
    assert [keyword for keyword, _ in steps[:2]] == ["ARG", "FROM"], "ARG BASE_IMAGE, then FROM"
    name, _, default = steps[0][1].partition("=")
    assert name == "BASE_IMAGE"
    assert steps[1][1] == "${BASE_IMAGE}"
    found = re.fullmatch(r"python:3\.(\d+)(?:\.\d+)?-slim(?:-[a-z]+)?", default)
    assert found, f"expected a python:3.x-slim base, got {default!r}"
    assert int(found[1]) >= 11


def test_dockerfile_base_image_sets_the_arguments_default(tmp_path):
    printed = run_cli("dockerfile", "--base-image", "registry.example.com/mirror/python:3.12-slim",
                      cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    steps = instructions(printed.stdout.decode())
    assert steps[:2] == [("ARG", "BASE_IMAGE=registry.example.com/mirror/python:3.12-slim"),
                         ("FROM", "${BASE_IMAGE}")]


def test_dockerfile_base_image_warns_about_an_own_dockerfile_without_the_argument(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM python:3.11-slim\n")
    printed = run_cli("dockerfile", "--base-image", "other:1", "--project", tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == b"FROM python:3.11-slim\n"
    assert b"no `ARG BASE_IMAGE`" in printed.stderr


def test_dockerfile_refuses_a_base_image_that_is_not_an_image_name(tmp_path):
    printed = run_cli("dockerfile", "--base-image", "two words", cwd=tmp_path)
    assert printed.returncode == 2
    assert b"invalid base image 'two words'" in printed.stderr


def test_ufop_sdk_comes_from_the_wheel_and_every_version_from_the_constraints(steps):
    """The version pinned in requirements.txt may not be on the package index; the wheel always is there."""
    installs = [arguments for arguments in arguments_of(steps, "RUN") if "pip install" in arguments]
    assert len(installs) == 1, installs
    assert re.search(r"--constraint \.ufop/constraints\.txt\b", installs[0]), installs
    assert re.search(r"\s\.ufop/wheels/\*\.whl\b", installs[0]), installs


def test_a_new_projects_requirements_pin_no_ufop_sdk_version(dockerfiles):
    requirements = (dockerfiles["project"] / "requirements.txt").read_text().splitlines()
    assert [line for line in requirements if line and not line.startswith("#")] == ["ufop-sdk"]


def test_the_code_is_copied_owned_by_root(steps):
    """Only the log folder and the spool are the server's to write: it cannot change its own code."""
    copies = arguments_of(steps, "COPY")
    assert copies and not any("--chown" in arguments for arguments in copies), copies
    last_copy = max(i for i, (keyword, _) in enumerate(steps) if keyword == "COPY")
    users = [i for i, (keyword, _) in enumerate(steps) if keyword == "USER"]
    assert users and users[-1] > last_copy, "the server's user comes after the code"


def test_a_stop_signals_sigterm_and_the_grace_fits_dockers_stop_window(steps):
    """``docker stop`` kills 10 s after SIGTERM: the drain (UFOP_GRACE) must end before."""
    assert arguments_of(steps, "STOPSIGNAL") == ["SIGTERM"]
    grace = float(environment_of(steps)["UFOP_GRACE"])
    assert 3 <= grace <= 9, grace


def test_libmagic_is_installed(steps):
    installs = [arguments for arguments in arguments_of(steps, "RUN") if "apt-get install" in arguments]
    assert any(re.search(r"\blibmagic1\b", arguments) for arguments in installs), installs


def test_requirements_are_installed_before_the_code_is_copied(steps):
    def index(condition, what):
        matches = [i for i, step in enumerate(steps) if condition(*step)]
        assert matches, f"no {what}"
        return matches[0]

    requirements = index(lambda keyword, arguments: keyword == "COPY"
                         and copy_sources(arguments) == ["requirements.txt"], "COPY requirements.txt")
    install = index(lambda keyword, arguments: keyword == "RUN"
                    and re.search(r"pip install\b.*-r requirements\.txt", arguments), "pip install -r")
    project = index(lambda keyword, arguments: keyword == "COPY" and "." in copy_sources(arguments),
                    "COPY of the project")
    assert requirements < install < project


def test_the_files_it_copies_are_in_a_new_project(dockerfiles):
    steps = instructions(dockerfiles["init"])
    ignored = (dockerfiles["project"] / ".dockerignore").read_text().split()
    for arguments in arguments_of(steps, "COPY"):
        for source in copy_sources(arguments):
            if source != ".ufop/":  # publish writes it before each build (test_publish.py)
                assert (dockerfiles["project"] / source).exists(), source
            assert source not in ignored


def test_it_runs_as_a_user_other_than_root(steps):
    users = arguments_of(steps, "USER")
    assert users, "no USER: the server would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_it_exposes_9100_and_serves_from_cmd(steps):
    assert any("9100" in re.split(r"[\s/]", arguments) for arguments in arguments_of(steps, "EXPOSE"))
    assert exec_form(arguments_of(steps, "CMD")[-1]) == ["ufop-sdk", "serve"]


def test_tini_is_installed_and_runs_cmd_as_pid_1_to_reap_orphans(steps):
    """Checked as text: building the image is for a test of its own."""
    installs = [arguments for arguments in arguments_of(steps, "RUN") if "apt-get install" in arguments]
    assert any(re.search(r"\btini\b", arguments) for arguments in installs), installs
    assert [exec_form(arguments) for arguments in arguments_of(steps, "ENTRYPOINT")] == [["tini", "--"]]


def test_the_health_check_asks_for_health(steps):
    command = " ".join(health_check_command(steps))
    assert re.search(r"//(127\.0\.0\.1|localhost):9100/health\b", command), command


def test_logs_go_to_the_platforms_log_dir(steps):
    assert environment_of(steps)["UFOP_LOG_DIR"] == LOG_DIR


def test_no_redis_or_supervisor(steps):
    """The embedded executor needs neither (the comments may say so)."""
    for keyword, arguments in steps:
        assert "redis" not in arguments.lower(), (keyword, arguments)
        assert "supervisor" not in arguments.lower(), (keyword, arguments)


def test_dockerfile_prints_the_projects_own(tmp_path):
    mine = "FROM python:3.13-slim\n# my own\nCMD [\"ufop-sdk\", \"serve\"]\n"
    (tmp_path / "Dockerfile").write_text(mine)
    result = run_cli("dockerfile", "--project", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == mine


# --- the CMD, run locally ----------------------------------------------------------------------------------

def health_status(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
            return answer.status
    except OSError:
        return None


def wait_for(condition, seconds, what, output):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; the server printed:\n{output.read_text()[-4000:]}")


def test_the_images_cmd_serves_a_new_project(tmp_path):
    project = tmp_path / "myufop"
    assert run_cli("init", "--name", "myufop", project).returncode == 0
    steps = instructions((project / "Dockerfile").read_text())
    command = exec_form(arguments_of(steps, "CMD")[-1])
    logs, port = tmp_path / "logs", free_port()
    environment = clean_environment({
        **environment_of(steps),
        "FLAVOR": "C1M1",  # as dora.yml's env.global sets it on the platform
        "UFOP_LOG_DIR": str(logs), "UFOP_PORT": str(port), "UFOP_HOST": "127.0.0.1",
        # where `pip install` put the ufop-sdk script, as in the image
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
    })
    executable = shutil.which(command[0], path=environment["PATH"])
    assert executable, f"{command[0]} is not on PATH"
    output = tmp_path / "server.out"
    with output.open("wb") as sink:
        server = subprocess.Popen([executable, *command[1:]], cwd=project, env=environment,
                                  stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: server.poll() is not None or health_status(port) == 200, 20, "GET /health", output)
        assert server.poll() is None, f"the server exited with {server.returncode}:\n{output.read_text()}"
        wait_for(lambda: any(path.is_file() and path.stat().st_size for path in logs.glob("**/*")), 5,
                 f"a log file under {logs}", output)

        check = health_check_command(steps)
        check = [word.replace(":9100/", f":{port}/") for word in check]
        healthy = subprocess.run(check, env=environment, capture_output=True, timeout=10)
        assert healthy.returncode == 0, healthy.stderr

        server.send_signal(signal.SIGTERM)
        assert server.wait(15) == 0, output.read_text()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    unhealthy = subprocess.run(check, env=environment, capture_output=True, timeout=10)
    assert unhealthy.returncode != 0, "the health check fails when nothing answers"
