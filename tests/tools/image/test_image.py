"""The image, built and run for real: ``ufop-sdk publish --no-deploy`` through the Docker CLI on podman.

Two projects, each built once: one written by ``ufop-sdk init``, one written by
``ufop-sdk migrate`` from a qiniu-ufop app (it has no .dockerignore of its own).
Both get a processor that leaves orphans and one that takes a while, a ``.env``
and a ``.env.production`` with a secret, a ``.git`` folder and tests. Only
``qdoractl`` is a stand-in, recording its arguments.
"""

import http.client
import importlib.metadata
import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest
from image_harness import BASE_IMAGE, Container, DockerService, Podman, make_base_image, require_tools
from support import OLDSTYLE, clean_environment, free_port, run_cli

import ufop_sdk

pytestmark = pytest.mark.image

NAME = "imagetest"
SECRET = "SECRET_TOKEN=do-not-ship-me\n"
QDORACTL = """#!{python}
import json, os, sys
with open(os.environ["QDORACTL_LOG"], "a", encoding="utf-8") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
"""
NEW_STYLE_EXTRAS = '''

import os as _os
import time as _time


class Orphans(Processor):
    """Starts `sleep 1 &` five times and never waits: the shell exits, the sleeps are orphans."""

    route = r"orphans"

    def process(self, req):
        for _ in range(5):
            _os.system("sleep 1 &")
        return "left 5"


class Slow(Processor):
    route = r"slow/(?P<seconds>\\d+)"

    def process(self, req):
        _time.sleep(int(req.args["seconds"]))
        return "slept"
'''
OLD_STYLE_EXTRAS = '''
@ufop.task(route=r"^/orphans$")
def orphans(buffer, args, content_type):
    import os
    for _ in range(5):
        os.system("sleep 1 &")
    return "left 5"


@ufop.task(route=r"^/slow/(?P<seconds>\\d+)$")
def slow(buffer, args, content_type):
    import time
    time.sleep(int(args["seconds"]))
    return "slept"


@ufop.task(route=r".*")
'''
# (cmd, wanted body) each project answers
GREETINGS = {"init": (f"{NAME}/hello/qq", b"hello qq"), "migrate": (f"{NAME}/hello/bob", b"hello bob")}


def write_init_project(folder):
    assert run_cli("init", "--name", NAME, folder).returncode == 0
    with (folder / "processors.py").open("a", encoding="utf-8") as source:
        source.write(NEW_STYLE_EXTRAS)


def write_migrated_project(folder):
    folder.mkdir()
    app = (OLDSTYLE / "app.py").read_text(encoding="utf-8")
    assert app.count('@ufop.task(route=r".*")\n') == 1, "the catch-all route comes last"
    app = app.replace('@ufop.task(route=r".*")\n', OLD_STYLE_EXTRAS)
    (folder / "app.py").write_text(app, encoding="utf-8")
    migrated = run_cli("migrate", "app.py", "-o", "processors.py", cwd=folder)
    assert migrated.returncode == 0, migrated.stderr
    (folder / ".env").write_text(f"UFOP_NAME={NAME}\n", encoding="utf-8")


def add_what_must_stay_out(folder):
    with (folder / ".env").open("a", encoding="utf-8") as env:
        env.write(SECRET)
    (folder / ".env.production").write_text(SECRET, encoding="utf-8")
    (folder / ".git").mkdir()
    (folder / ".git" / "config").write_text("[core]\n", encoding="utf-8")
    (folder / "tests").mkdir(exist_ok=True)
    (folder / "tests" / "test_more.py").write_text("def test_nothing():\n    pass\n", encoding="utf-8")


@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    require_tools()
    return Podman(tmp_path_factory.mktemp("podman"))


@pytest.fixture(scope="module")
def docker_host(podman, tmp_path_factory):
    seconds = make_base_image(podman)
    if seconds:
        print(f"made {BASE_IMAGE} by debootstrap in {seconds:.0f} s")
    service = DockerService(podman, tmp_path_factory.mktemp("service"))
    yield service.docker_host
    service.close()
    podman("image", "prune", "-f", check=False)  # the builds' layers: runs on one machine must not pile up


@pytest.fixture(scope="module", params=["init", "migrate"])
def built(request, podman, docker_host, tmp_path_factory):
    """{"kind", "project", "image", "publish" (its result), "qdoractl" (its calls)} of one real build."""
    root = tmp_path_factory.mktemp(request.param)
    project = root / "project"
    {"init": write_init_project, "migrate": write_migrated_project}[request.param](project)
    add_what_must_stay_out(project)
    tools = root / "bin"
    tools.mkdir()
    (tools / "qdoractl").write_text(QDORACTL.format(python=sys.executable), encoding="utf-8")
    (tools / "qdoractl").chmod(0o755)
    image = f"localhost/{NAME}-{request.param}-{os.getpid()}:1.0.0"  # two runs at once do not collide
    began = time.monotonic()
    result = run_cli("publish", "--name", NAME, "--version", "1.0.0", "--tag", image, "--no-deploy",
                     "--base-image", BASE_IMAGE, "--project", project, timeout=600,
                     env={"PATH": f"{tools}:{clean_environment()['PATH']}", "DOCKER_HOST": docker_host,
                          "QDORACTL_LOG": str(root / "qdoractl.jsonl")})
    print(f"publish of the {request.param} project took {time.monotonic() - began:.0f} s")
    assert result.returncode == 0, (result.stdout + result.stderr).decode(errors="replace")[-5000:]
    calls = [json.loads(line) for line in (root / "qdoractl.jsonl").read_text().splitlines()]
    yield {"kind": request.param, "project": project, "image": image, "publish": result, "qdoractl": calls}
    podman("rmi", "-f", image, check=False)


def start(podman, built, suffix):
    name = f"{NAME}-{built['kind']}-{suffix}-{os.getpid()}"
    container = Container(podman, built["image"], free_port(), name)
    try:
        container.wait_healthy()
    except BaseException:
        container.remove()
        raise
    return container


@pytest.fixture(scope="module")
def container(podman, built):
    running = start(podman, built, "main")
    yield running
    running.remove()


# --- the build ---------------------------------------------------------------------------------------------

def test_publish_builds_with_the_docker_cli_for_amd64_on_the_base_image(built):
    steps = built["publish"].stderr.decode()
    assert (f"[3/6] docker build --platform linux/amd64 --build-arg BASE_IMAGE={BASE_IMAGE} "
            f"-t {built['image']} {built['project']}") in steps
    assert b"Successfully tagged" in built["publish"].stdout
    assert built["qdoractl"] == [["push", built["image"]], ["release", "--config", str(built["project"])]]


def test_the_image_is_amd64_stops_with_sigterm_and_keeps_its_health_check(podman, built):
    image = podman.inspect_image(built["image"])
    assert image["Architecture"] == "amd64"
    assert image["Config"]["StopSignal"] == "SIGTERM"
    assert image["Healthcheck"]["Test"][:2] == ["CMD", "python"], "built in Docker's format, which keeps it"
    assert image["Config"]["Entrypoint"] == ["tini", "--"]


def test_the_image_runs_the_ufop_sdk_that_published_it(container):
    """Not the package index's: the wheel publish packed from the running code."""
    shipped = container.exec("python", "-c", "import inspect, ufop_sdk.tools.packaging; "
                                             "print(inspect.getsource(ufop_sdk.tools.packaging))")
    local = Path(ufop_sdk.__file__).parent / "tools" / "packaging.py"
    assert shipped.stdout.decode() == local.read_text() + "\n"
    version = container.exec("python", "-c", "import importlib.metadata as m; print(m.version('ufop-sdk'))")
    assert version.stdout.decode().strip() == ufop_sdk.__version__


def test_the_image_has_the_versions_installed_here(container):
    listed = json.loads(container.exec("python", "-m", "pip", "list", "--format", "json").stdout)
    in_image = {package["name"].lower(): package["version"] for package in listed}
    for name in ("tornado", "celery", "kombu", "redis", "click", "attrs", "msgpack"):
        assert in_image[name] == importlib.metadata.version(name), name


# --- the running container ---------------------------------------------------------------------------------

def test_handler_answers(container, built):
    cmd, wanted = GREETINGS[built["kind"]]
    assert container.post(cmd) == (200, wanted)


def test_health_is_200_and_the_images_own_health_check_passes(podman, container):
    assert container.health() == 200
    check = podman("healthcheck", "run", container.name, check=False)
    assert check.returncode == 0, (check.stdout + check.stderr).decode(errors="replace")


def test_the_server_and_its_workers_run_as_a_user_other_than_root(container):
    processes = container.processes()
    serving = [process for process in processes if "ufop-sdk serve" in process["command"]
               or "ufop_sdk.executors.local.worker_main" in process["command"]]
    assert len(serving) >= 3, processes  # tini's argv names it too, the server, at least one worker
    assert {process["uid"] for process in serving} == {10001}, serving
    assert processes and [process["name"] for process in processes if process["pid"] == 1] == ["tini"]


def test_no_secrets_history_or_tests_in_the_image(container):
    listing = container.exec("ls", "-A", "/app").stdout.decode().split()
    for left_out in (".env", ".env.production", ".git", "tests", "dora.yml", "Dockerfile"):
        assert left_out not in listing, listing
    found = container.exec("grep", "-r", "-l", "do-not-ship-me", "/app", "/home", check=False)
    assert found.stdout == b"", found.stdout


def test_the_code_is_owned_by_root_and_only_logs_and_spool_are_writable(container):
    owners = container.exec("stat", "-c", "%U %n", "/app", "/app/processors.py").stdout.decode().splitlines()
    assert [line.split()[0] for line in owners] == ["root", "root"], owners
    assert container.exec("touch", "/app/processors.py", check=False).returncode != 0
    assert container.exec("touch", "/app/new.py", check=False).returncode != 0
    assert container.exec("touch", "/var/log/ufop/probe", "/tmp/probe").returncode == 0


def wait_for_no_sleeps_or_zombies(container, seconds=15):
    deadline = time.monotonic() + seconds
    while True:
        left = [process for process in container.processes() if process["name"] == "sleep"
                or process["state"] == "Z"]
        if not left:
            return
        assert time.monotonic() < deadline, f"still there {seconds} s later: {left}"
        time.sleep(0.5)


def test_no_zombie_after_a_processor_leaves_orphans(container):
    assert container.post(f"{NAME}/orphans") == (200, b"left 5")
    wait_for_no_sleeps_or_zombies(container)


def test_no_zombie_after_a_command_run_in_the_container_leaves_orphans(container):
    """As a health check or `docker exec` may: its orphans go to PID 1, which must reap them."""
    container.exec("sh", "-c", "for i in 1 2 3 4 5; do sleep 1 & done")
    wait_for_no_sleeps_or_zombies(container)


def stop_during(podman, built, cmd):
    """Start a container, send `cmd`, stop the container a second later (as Docker does: SIGTERM, and a
    kill 10 s later). Returns (the answers, the exit code, the seconds the stop took, the logs)."""
    container = start(podman, built, "stop")
    try:
        answers = []

        def send():
            try:
                answers.append(container.post(cmd, timeout=60))
            except (OSError, http.client.HTTPException) as error:  # the connection closed unanswered
                answers.append(error)

        request = threading.Thread(target=send)
        request.start()
        time.sleep(1)  # the request is in a worker
        began = time.monotonic()
        podman("stop", "-t", "10", container.name, timeout=60)
        stopped_in = time.monotonic() - began
        request.join(60)
        return answers, container.state()["ExitCode"], stopped_in, container.logs()
    finally:
        container.remove()


def test_a_stop_lets_the_request_in_flight_finish_and_exits_0(podman, built):
    answers, exit_code, stopped_in, logs = stop_during(podman, built, f"{NAME}/slow/3")
    assert answers == [(200, b"slept")], logs
    assert exit_code == 0, logs
    assert stopped_in < 9, f"stopped in {stopped_in:.1f} s: the drain, not the kill 10 s after SIGTERM"


def test_a_request_longer_than_the_stop_window_ends_with_the_grace_not_a_kill(podman, built):
    """UFOP_GRACE (8 s) ends the drain before Docker's kill (10 s): exit 0, not 137 (with a 30 s grace, the
    image's old default, the kill came first)."""
    _, exit_code, stopped_in, logs = stop_during(podman, built, f"{NAME}/slow/30")
    assert exit_code == 0, logs
    assert stopped_in > 6, f"stopped in {stopped_in:.1f} s: the grace was not waited for"
    assert "grace period over with 1 requests in flight" in logs
