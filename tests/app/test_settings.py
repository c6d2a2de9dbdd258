"""Settings: flag > environment > .env > default, each value parsed or a ConfigError naming it.

Every test passes ``environ`` so that the host's environment cannot leak in.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import Server, clean_environment, run_cli

from ufop_sdk import ConfigError
from ufop_sdk.app.settings import Settings, read_env_file


def test_defaults(tmp_path):
    assert Settings.load(tmp_path, environ={}) == Settings(
        project_dir=tmp_path, name=None, app="processors", port=9100, workers=None, cpu_count=None,
        flavor_cores=None, timeout=30.0, max_body_bytes=100 * 2**20, max_source_bytes=100 * 2**20,
        broker_url=None,
    )
    assert Settings.load(environ={}).project_dir == Path(".")


@pytest.mark.parametrize(("variable", "text", "field", "value"), [
    ("UFOP_NAME", "my-ufop_01", "name", "my-ufop_01"),
    ("UFOP_APP", " myprocs ", "app", "myprocs"),
    ("UFOP_APP", "services.image", "app", "services.image"),
    ("UFOP_PORT", "8080", "port", 8080),
    ("UFOP_WORKERS", "4", "workers", 4),
    ("CPU_COUNT", "2", "cpu_count", 2),
    ("FLAVOR", "C2M4", "flavor_cores", 2),
    ("FLAVOR", "M4C2", "flavor_cores", 2),
    ("FLAVOR", "c16m32", "flavor_cores", 16),
    ("UFOP_TIMEOUT", "2.5", "timeout", 2.5),
    ("UFOP_TIMEOUT", "600", "timeout", 600.0),
    ("UFOP_MAX_BODY_BYTES", "1048576", "max_body_bytes", 2**20),
    ("UFOP_MAX_BODY_BYTES", "100MiB", "max_body_bytes", 100 * 2**20),
    ("UFOP_MAX_BODY_BYTES", "100M", "max_body_bytes", 100 * 2**20),
    ("UFOP_MAX_BODY_BYTES", "512k", "max_body_bytes", 512 * 2**10),
    ("UFOP_MAX_SOURCE_BYTES", "1G", "max_source_bytes", 2**30),
    ("UFOP_MAX_SOURCE_BYTES", "2 GiB", "max_source_bytes", 2 * 2**30),
    ("UFOP_BROKER_URL", "redis://redis:6379/0", "broker_url", "redis://redis:6379/0"),
    ("UFOP_BROKER_URL", "", "broker_url", None),
    ("UFOP_MAX_CMD_BYTES", "64KiB", "max_cmd_bytes", 64 * 2**10),
])
def test_each_variable_is_parsed(tmp_path, variable, text, field, value):
    settings = Settings.load(tmp_path, environ={variable: text})
    assert getattr(settings, field) == value


def test_a_flag_beats_the_environment_which_beats_dotenv_which_beats_the_default(make_project):
    folder = make_project(env="""\
        UFOP_PORT=9001
        UFOP_TIMEOUT=5
        UFOP_NAME=from-dotenv
    """)
    environ = {"UFOP_PORT": "9002", "UFOP_TIMEOUT": "6"}

    settings = Settings.load(folder, environ=environ, port=9003, timeout=None)

    assert settings.port == 9003
    assert settings.timeout == 6.0
    assert settings.name == "from-dotenv"
    assert settings.max_body_bytes == 100 * 2**20


def test_a_bad_dotenv_value_hidden_by_the_environment_is_not_read(make_project):
    folder = make_project(env="UFOP_PORT=not-a-port\n")
    assert Settings.load(folder, environ={"UFOP_PORT": "9002"}).port == 9002


@pytest.mark.parametrize(("environ", "concurrency"), [
    ({"UFOP_WORKERS": "3", "CPU_COUNT": "2", "FLAVOR": "C8M16"}, 3),
    ({"CPU_COUNT": "2", "FLAVOR": "C8M16"}, 2),
    ({"FLAVOR": "M16C8"}, 8),
    ({}, os.cpu_count() or 1),
])
def test_concurrency_is_workers_then_cpu_count_then_flavor_then_the_cpus(tmp_path, environ, concurrency):
    assert Settings.load(tmp_path, environ=environ).concurrency == concurrency


@pytest.mark.parametrize(("variable", "text"), [
    ("UFOP_NAME", "MyUfop"),
    ("UFOP_NAME", "abcd"),
    ("UFOP_NAME", "a" * 21),
    ("UFOP_NAME", "my.ufop"),
    ("UFOP_NAME", ""),
    ("UFOP_APP", ""),
    ("UFOP_APP", "   "),
    ("UFOP_PORT", "0"),
    ("UFOP_PORT", "65536"),
    ("UFOP_PORT", "-1"),
    ("UFOP_PORT", "http"),
    ("UFOP_PORT", ""),
    ("UFOP_WORKERS", "0"),
    ("UFOP_WORKERS", "1.5"),
    ("UFOP_WORKERS", "two"),
    ("CPU_COUNT", "-2"),
    ("FLAVOR", "C0M4"),
    ("FLAVOR", "M4C0"),
    ("FLAVOR", "C2"),
    ("FLAVOR", "large"),
    ("UFOP_TIMEOUT", "0"),
    ("UFOP_TIMEOUT", "-1"),
    ("UFOP_TIMEOUT", "nan"),
    ("UFOP_TIMEOUT", "inf"),
    ("UFOP_TIMEOUT", "soon"),
    ("UFOP_MAX_BODY_BYTES", "0"),
    ("UFOP_MAX_BODY_BYTES", "1.5G"),
    ("UFOP_MAX_BODY_BYTES", "-1"),
    ("UFOP_MAX_BODY_BYTES", "100TB"),
    ("UFOP_MAX_SOURCE_BYTES", "lots"),
    ("UFOP_MAX_CMD_BYTES", "0"),
])
def test_an_invalid_value_is_a_config_error_naming_the_variable_and_the_value(tmp_path, variable, text):
    with pytest.raises(ConfigError) as caught:
        Settings.load(tmp_path, environ={variable: text})
    message = str(caught.value)
    assert message.startswith(f"invalid {variable}: expected ")
    assert message.endswith(f", got {text!r}")


def test_an_invalid_dotenv_value_names_the_variable(make_project):
    folder = make_project(env="UFOP_WORKERS=many\n")
    with pytest.raises(ConfigError, match=r"^invalid UFOP_WORKERS: expected a positive integer, got 'many'$"):
        Settings.load(folder, environ={})


def test_an_invalid_flag_names_the_flag(tmp_path):
    with pytest.raises(ConfigError, match=r"^invalid --max-body-bytes: .*, got '0'$"):
        Settings.load(tmp_path, environ={}, max_body_bytes=0)


def test_an_unreadable_dotenv_is_a_config_error(tmp_path):
    (tmp_path / ".env").write_bytes(b"UFOP_NAME=\xff\xfe\n")
    with pytest.raises(ConfigError, match=r"^cannot read .*\.env"):
        Settings.load(tmp_path, environ={})


# .env in every process: serve, dev, test, routes and ufop_sdk.testing.run import the project
# with it, under the real environment. Each runs as a real subprocess.

READS_DOTENV_AT_IMPORT = """\
    import os

    from ufop_sdk import Processor

    GREETING = os.environ["GREETING"]  # read at import, as module-level configuration is

    class Greet(Processor):
        route = r"greet"

        def process(self, req):
            return GREETING
"""
DOTENV = "UFOP_NAME=greeter\nGREETING=from-dotenv\n"


def greeting_from_ufop_sdk_test(folder, env):
    result = run_cli("test", folder / "processors.py", "greet", cwd=folder, env=env)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def greeting_from_testing_run(folder, env):
    script = "from ufop_sdk.testing import run; print(run('greet', b'').body.decode(), end='')"
    result = subprocess.run([sys.executable, "-c", script], cwd=folder, env=clean_environment(env),
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def greeting_from_serve(folder, env):
    with Server(folder, env=env, workers=1) as server:
        status, _, body = server.post("greeter/greet")
    assert status == 200, body
    return body.decode()


@pytest.mark.parametrize("greeting_from", [greeting_from_ufop_sdk_test, greeting_from_testing_run,
                                           greeting_from_serve])
def test_a_variable_only_in_dotenv_is_seen_by_a_module_reading_it_at_import(make_project, greeting_from):
    folder = make_project(READS_DOTENV_AT_IMPORT, env=DOTENV)
    assert greeting_from(folder, {}) == "from-dotenv"


@pytest.mark.parametrize("greeting_from", [greeting_from_ufop_sdk_test, greeting_from_testing_run,
                                           greeting_from_serve])
def test_the_real_environment_beats_dotenv_in_every_process(make_project, greeting_from):
    folder = make_project(READS_DOTENV_AT_IMPORT, env=DOTENV)
    assert greeting_from(folder, {"GREETING": "from-environment"}) == "from-environment"


def test_routes_imports_a_module_reading_a_dotenv_variable_at_import(make_project):
    folder = make_project(READS_DOTENV_AT_IMPORT, env=DOTENV)
    result = run_cli("routes", cwd=folder)
    assert result.returncode == 0, result.stderr.decode()
    assert "Greet" in result.stdout.decode()


BARE_KEY_DOTENV = "UFOP_NAME=greeter\n# flags\nFEATURE_FLAG\nGREETING=from-dotenv\n"
BARE_KEY_WARNING = ".env line 3: 'FEATURE_FLAG' has no '=' and is ignored"


@pytest.mark.parametrize("command", ["serve", "dev"])
def test_a_bare_key_in_dotenv_is_ignored_with_a_warning_and_the_workers_start(make_project, command):
    folder = make_project(READS_DOTENV_AT_IMPORT, env=BARE_KEY_DOTENV)
    with Server(folder, command=command, workers=1) as server:
        status, _, body = server.post("greeter/greet")
        output = server.output()
    assert (status, body) == (200, b"from-dotenv")
    assert output.count(BARE_KEY_WARNING) == 1, output


def test_a_bare_key_in_dotenv_is_ignored_with_a_warning_by_ufop_sdk_test(make_project):
    folder = make_project(READS_DOTENV_AT_IMPORT, env=BARE_KEY_DOTENV)
    result = run_cli("test", folder / "processors.py", "greet", cwd=folder)
    assert (result.returncode, result.stdout) == (0, b"from-dotenv")
    assert BARE_KEY_WARNING in result.stderr.decode()


def test_a_bare_key_in_dotenv_is_left_out_of_the_variables_read(make_project):
    folder = make_project(env="FEATURE_FLAG\nEMPTY=\n")
    assert read_env_file(folder) == {"EMPTY": ""}


@pytest.mark.parametrize("command", ["serve", "test"])
def test_a_dotenv_value_no_environment_can_hold_exits_2_naming_the_file_and_key(make_project, command):
    # a NUL byte in the file
    folder = make_project(READS_DOTENV_AT_IMPORT, env="GREETING=from-dotenv\nNUL=a\x00b\n")
    args = ["--project", folder] if command == "serve" else [folder / "processors.py", "greet"]
    result = run_cli(command, *args, cwd=folder, timeout=30)
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert ".env" in stderr and "'NUL'" in stderr and "Traceback" not in stderr, stderr
