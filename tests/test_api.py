"""The public API: what ``ufop_sdk`` exports, what its core imports, and the hello sample end to end."""

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

import ufop_sdk
from ufop_sdk.testing import run

HELLO = Path(__file__).resolve().parent.parent / "samples" / "hello"

CORE_MODULES = ["errors", "processor", "request", "response", "routing", "settings", "project", "runner",
                "arguments", "media", "testing"]


def test_all_lists_every_public_name_and_each_is_importable():
    public = {name for name, value in vars(ufop_sdk).items()
              if not name.startswith("_") and not inspect.ismodule(value)}
    assert public == set(ufop_sdk.__all__) - {"__version__"}
    namespace = {}
    exec("from ufop_sdk import *", namespace)
    assert set(ufop_sdk.__all__) <= set(namespace)


def test_the_core_imports_neither_tornado_nor_celery_nor_click():
    imports = "; ".join(f"import ufop_sdk.{name}" for name in CORE_MODULES)
    script = f"{imports}; import sys, json; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    loaded = {name.partition(".")[0] for name in json.loads(result.stdout)}
    assert "ufop_sdk" in loaded
    assert loaded & {"tornado", "celery", "click"} == set()


@pytest.mark.parametrize(("cmd", "body"), [
    ("qq", b"hello qq"),
    ("", b"hello world"),
    ("七牛", "hello 七牛".encode()),
])
def test_hello_says_hello(cmd, body):
    response = run(cmd, b"any input", project=HELLO)
    assert (response.status, response.content_type, response.body) == (200, "text/plain; charset=utf-8", body)


def test_echo_answers_with_the_input_and_its_sniffed_type(png, tmp_path):
    response = run("echo", png, project=HELLO)
    assert (response.status, response.content_type, response.body) == (200, "image/png", png)
    text_file = tmp_path / "note.txt"
    text_file.write_text("hello file\n")
    response = run("echo", text_file, project=HELLO)
    assert (response.status, response.content_type, response.body) == (200, "text/plain", b"hello file\n")


def test_errors_come_back_as_responses_under_the_name_from_the_projects_dotenv():
    response = run("a/b", b"", project=HELLO)
    assert response.status == 404
    assert json.loads(response.body)["error"] == "no processor matches 'a/b' (cmd 'qiniu/a/b')"
