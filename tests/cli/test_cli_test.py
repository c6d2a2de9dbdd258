"""``ufop-sdk test``: one file or a folder, run in-process as the server would."""

import json
import textwrap
from pathlib import Path

import pytest
from support import SAMPLES, run_cli

HELLO = SAMPLES / "hello"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"


@pytest.fixture
def project(tmp_path):
    (tmp_path / "processors.py").write_text(textwrap.dedent('''
        import attrs
        from ufop_sdk import BadRequest, Processor, integer

        class Size(Processor):
            route = r"size/(?P<width>[^/]+)"

            @attrs.frozen
            class Args:
                width: int = integer(1, 4096)

            def process(self, req):
                return {"width": req.args.width, "type": req.content_type,
                        "declared": req.declared_content_type}

        class Fail(Processor):
            route = r"fail/(?P<name>.+)"

            def process(self, req):
                if req.args["name"].startswith("bad"):
                    raise BadRequest(f"{req.args['name']} is bad")
                return req.buffer.read()

        class Boom(Processor):
            route = r"boom"

            def process(self, req):
                raise ZeroDivisionError("secret detail")

        class Copy(Processor):
            route = r"copy"

            def process(self, req):
                path = req.workdir / "copy"
                path.write_bytes(req.buffer.read())
                return path

        class Lines(Processor):
            route = r"lines/(?P<count>[0-9]+)"

            def process(self, req):
                return (b"line %d\\n" % n for n in range(int(req.args["count"])))
    '''))
    (tmp_path / ".env").write_text("UFOP_NAME=tester\n")
    return tmp_path


def test_text_goes_to_stdout():
    result = run_cli("test", HELLO / "processors.py", "qq", "--project", HELLO)
    assert (result.returncode, result.stdout) == (0, b"hello qq")


def test_bare_name_and_the_app_from_the_project(tmp_path):
    data = tmp_path / "data.bin"
    data.write_bytes(b"x")
    assert run_cli("test", data, cwd=HELLO).stdout == b"hello world"


def test_binary_output_written_with_o(tmp_path):
    source, output = tmp_path / "in.png", tmp_path / "out.png"
    source.write_bytes(PNG)
    result = run_cli("test", source, "echo", "-o", output, "--project", HELLO)
    assert result.returncode == 0, result.stderr
    assert output.read_bytes() == PNG
    assert b"200 image/png" in result.stderr


def test_binary_output_to_a_pipe_is_written_as_it_is(tmp_path):
    source = tmp_path / "in.png"
    source.write_bytes(PNG)
    assert run_cli("test", source, "echo", "--project", HELLO).stdout == PNG


def test_json_with_typed_args_and_declared_type(project):
    result = run_cli("test", project / ".env", "size/640", "--content-type", "text/x-env", cwd=project)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"width": 640, "type": "text/plain", "declared": "text/x-env"}


@pytest.mark.parametrize("cmd, status, message", [
    ("size/abc", 400, "invalid argument 'width': expected an integer 1-4096, got 'abc'"),
    ("size/0", 400, "invalid argument 'width'"),
    ("fail/bad-input", 400, "bad-input is bad"),
    ("nothing/here", 404, "no processor matches 'nothing/here'"),
    ("boom", 500, "internal error in processor 'Boom'"),
])
def test_an_error_prints_status_and_json_and_exits_1(project, cmd, status, message):
    result = run_cli("test", project / ".env", cmd, cwd=project)
    assert result.returncode == 1
    assert result.stdout == b""
    first_line = result.stderr.decode().splitlines()[0]
    code, body = first_line.split(" ", 1)
    assert int(code) == status
    assert message in json.loads(body)["error"]


def test_a_crash_shows_its_traceback_locally(project):
    stderr = run_cli("test", project / ".env", "boom", cwd=project).stderr.decode()
    assert "ZeroDivisionError: secret detail" in stderr
    assert "Traceback" in stderr


def test_a_folder_is_processed_into_the_output_folder(project, tmp_path):
    inputs = tmp_path / "inputs"
    (inputs / "sub").mkdir(parents=True)
    (inputs / "good.txt").write_bytes(b"good")
    (inputs / "sub" / "also-good.txt").write_bytes(b"also good")
    (inputs / "bad-one.txt").write_bytes(b"never returned")
    output = tmp_path / "out"
    result = run_cli("test", inputs, "fail/ok", "-o", output, cwd=project)
    assert result.returncode == 0, result.stderr
    assert (output / "good.txt").read_bytes() == b"good"
    assert (output / "sub" / "also-good.txt").read_bytes() == b"also good"
    assert b"3 ok, 0 failed" in result.stderr


def test_a_folder_with_failures_reports_them_and_exits_1(project, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "a.txt").write_bytes(b"a")
    (inputs / "b.txt").write_bytes(b"b")
    result = run_cli("test", inputs, "size/99999", "-o", tmp_path / "out", cwd=project)
    assert result.returncode == 1
    assert b"0 ok, 2 failed" in result.stderr
    assert b"a.txt: 400" in result.stderr and b"b.txt: 400" in result.stderr


def test_a_folder_needs_an_output_folder(project, tmp_path):
    result = run_cli("test", tmp_path, "fail/ok", cwd=project)
    assert result.returncode == 2
    assert b"-o DIR" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["missing.png"], b"does not exist"),
    (["processors.py", "--app", "nowhere"], b"cannot find module 'nowhere'"),
])
def test_usage_errors_exit_2_without_a_traceback(project, args, message):
    result = run_cli("test", *args, cwd=project)
    assert result.returncode == 2
    assert message in result.stderr
    assert b"Traceback" not in result.stderr


def test_an_invalid_setting_names_the_variable(project):
    result = run_cli("test", "processors.py", "boom", cwd=project, env={"UFOP_TIMEOUT": "soon"})
    assert result.returncode == 2
    assert b"UFOP_TIMEOUT" in result.stderr and b"'soon'" in result.stderr


def test_an_error_answer_that_is_not_json_prints_its_status_and_body_and_exits_1(tmp_path):
    (tmp_path / "processors.py").write_text(textwrap.dedent('''
        from ufop_sdk import Processor, Response

        class Teapot(Processor):
            route = r"teapot"

            def process(self, req):
                return Response(b"nope", status=418, content_type="text/plain")
    '''))
    result = run_cli("test", tmp_path / "processors.py", "teapot", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.decode().splitlines() == ["418 text/plain: nope"]


QINIU = Path(__file__).resolve().parent.parent / "projects" / "qiniu"


def test_headers_given_with_h_reach_the_processor_and_req_qiniu(tmp_path):
    source = tmp_path / "input.txt"
    source.write_bytes(b"x")
    result = run_cli("test", source, "headers", "-H", "X-Custom: a", "--header", "x-custom:b",
                     "-H", "X-Qiniu-Uid: MTM0OTg1Nw==", "--project", QINIU)
    answer = json.loads(result.stdout)
    assert answer["x-custom"] == "a, b" and answer["qiniu"]["uid"] == 1349857


def test_a_header_without_a_name_is_a_usage_error(tmp_path):
    result = run_cli("test", QINIU / "processors.py", "headers", "-H", "no colon", "--project", QINIU)
    assert result.returncode == 2
    assert b"expected 'Name: value', got 'no colon'" in result.stderr and b"Traceback" not in result.stderr


def test_a_file_answer_is_written_with_o_and_its_workdir_removed(project, tmp_path):
    data = tmp_path / "data.bin"
    data.write_bytes(bytes(range(256)) * 5000)
    (tmp_path / "spool").mkdir()
    result = run_cli("test", data, "copy", "-o", tmp_path / "out.bin", "--project", project,
                     env={"UFOP_SPOOL_DIR": str(tmp_path / "spool")})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.bin").read_bytes() == data.read_bytes()
    assert b"1280000 bytes" in result.stderr
    assert list((tmp_path / "spool").iterdir()) == [], "req.workdir is removed once the answer is written"


def test_a_streamed_answer_goes_to_stdout(project, tmp_path):
    data = tmp_path / "data.txt"
    data.write_text("x")
    result = run_cli("test", data, "lines/3", "--project", project)
    assert (result.returncode, result.stdout) == (0, b"line 0\nline 1\nline 2\n"), result.stderr
