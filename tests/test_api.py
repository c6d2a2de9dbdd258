"""The public API: what ``ufop_sdk`` exports, what its layers import, and the hello sample end to end."""

import ast
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

import ufop_sdk
from ufop_sdk.testing import run

HELLO = Path(__file__).resolve().parent.parent / "samples" / "hello"

# What a user imports, and the loaded project's layer: none of it may pull in the server's, the
# executors' or the CLI's libraries.
PUBLIC_MODULES = ["errors", "processor", "request", "response", "arguments", "testing", "compat", "qiniu",
                  "key_values"]
PACKAGE = Path(ufop_sdk.__file__).parent


def modules_in(package):
    paths = (PACKAGE / package).glob("*.py")
    return sorted(f"{package}.{path.stem}" for path in paths if path.stem != "__init__")


def test_all_lists_every_public_name_and_each_is_importable():
    public = {name for name, value in vars(ufop_sdk).items()
              if not name.startswith("_") and not inspect.ismodule(value)}
    assert public == set(ufop_sdk.__all__) - {"__version__"}
    namespace = {}
    exec("from ufop_sdk import *", namespace)
    assert set(ufop_sdk.__all__) <= set(namespace)


def test_the_public_api_and_the_app_layer_import_neither_tornado_nor_celery_nor_click():
    core = PUBLIC_MODULES + modules_in("app")
    assert "app.runner" in core and "app.settings" in core
    imports = "; ".join(f"import ufop_sdk.{name}" for name in core)
    script = f"{imports}; import sys, json; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    loaded = json.loads(result.stdout)
    assert {name.partition(".")[0] for name in loaded} & {"tornado", "celery", "click"} == set()
    upper_layers = ("ufop_sdk.http", "ufop_sdk.executors", "ufop_sdk.cli")
    assert not [name for name in loaded if name.startswith(upper_layers)]


def imported_modules(path, package):
    """The absolute names of the modules `path`, a module of `package`, imports from."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1])
            names.update([f"{base}.{node.module}"] if node.module else
                         [f"{base}.{alias.name}" for alias in node.names])
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_http_layer_knows_the_executors_only_through_their_interface():
    imports = {name for path in (PACKAGE / "http").glob("*.py")
               for name in imported_modules(path, "ufop_sdk.http")}
    assert "ufop_sdk.executors.base" in imports
    assert {name for name in imports if name.startswith(("ufop_sdk.executors", "ufop_sdk.cli"))} == {
        "ufop_sdk.executors.base"}


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
