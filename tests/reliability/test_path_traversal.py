"""Path traversal in every path-taking option: ``dev --bucket`` keys, ``--project`` and ``--app``,
``ufop-sdk test``'s output folder, ``migrate -o``: refused, or kept inside where it belongs.
What each key got goes to test-artifacts/reliability/security.json."""

import shutil
import socket
from urllib.parse import quote

import pytest
from harness import PROJECT, record
from hostile import SECRET
from support import PROJECTS, Server, run_cli

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def bucket_tree(tmp_path_factory):
    """A bucket folder beside a secret, with symlinks pointing in and out of it."""
    root = tmp_path_factory.mktemp("traversal")
    (root / "secret.txt").write_bytes(SECRET)
    (root / "outside").mkdir()
    (root / "outside" / "secret.txt").write_bytes(SECRET)
    bucket = root / "bucket"
    (bucket / "sub").mkdir(parents=True)
    (bucket / "ok.txt").write_bytes(b"fine")
    (bucket / "sub" / "inner.txt").write_bytes(b"inner")
    (bucket / "link-in").symlink_to("ok.txt")
    (bucket / "link-out").symlink_to(root / "secret.txt")
    (bucket / "dir-out").symlink_to(root / "outside")
    return root


@pytest.fixture(scope="module")
def dev_bucket(bucket_tree):
    with Server(PROJECT, "--host", "127.0.0.1", "--bucket", bucket_tree / "bucket", command="dev",
                workers=1) as server:
        yield server


def raw_get(port, target):
    """GET `target` exactly as written (no client normalises it); returns (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % target.encode("latin-1"))
        answer = b""
        while piece := sock.recv(65536):
            answer += piece
    head, _, body = answer.partition(b"\r\n\r\n")
    return (int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.1 ") else None), body


def traversal_keys(root):
    absolute = str(root / "secret.txt")
    keys = ["/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt", "/%2e%2e%2fsecret.txt",
            "/.%2e/secret.txt",
            "/sub/../../secret.txt", "/sub/%2e%2e/%2e%2e/secret.txt", "/sub/..%2f..%2fsecret.txt",
            "/" + absolute, "/%2F" + quote(absolute.lstrip("/"), safe=""), "/..%5csecret.txt",
            "/....//secret.txt",
            "/%252e%252e/secret.txt", "/%c0%ae%c0%ae/secret.txt", "/link-out", "/dir-out/secret.txt",
            "/ok.txt%00.png", "/%00", "/sub/inner.txt/../../../secret.txt"]
    return keys + [key + "?t/echo" for key in keys] + [key + "?t/describe|t/echo" for key in keys[:4]]


def _without(root, key):
    """`key` with the test's own folder written <root>, as the figures show it."""
    return key.replace(quote(str(root).lstrip("/"), safe=""), "<root>").replace(str(root), "<root>")


def test_bucket_keys_cannot_leave_the_bucket(dev_bucket, bucket_tree):
    assert raw_get(dev_bucket.port, "/ok.txt") == (200, b"fine")
    assert raw_get(dev_bucket.port, "/link-in") == (200, b"fine"), "a symlink inside the bucket is fine"
    assert raw_get(dev_bucket.port, "/sub/inner.txt?t/echo") == (200, b"inner")
    got = {}
    for key in traversal_keys(bucket_tree):
        status, body = raw_get(dev_bucket.port, key)
        got[_without(bucket_tree, key)] = status
        assert SECRET not in body, key
        assert status in (400, 403, 404), (key, status, body[:300])
    assert "Traceback" not in dev_bucket.output()
    record("security", {"bucket_keys_refused": got})


@pytest.mark.parametrize("command", ["serve", "dev"])
def test_the_project_folder_is_never_served(command):
    with Server(PROJECT, "--host", "127.0.0.1", command=command, workers=1) as server:
        for target in ("/processors.py", "/../processors.py", "/%2e%2e/processors.py",
                       "/project/processors.py", "/handler/../processors.py", "/static/processors.py"):
            status, body = raw_get(server.port, target)
            assert status == 404, (target, status)
            assert b"class Echo" not in body and b"import" not in body


@pytest.mark.parametrize("app", ["../processors", "/etc/passwd", "..processors", "processors/../x", "..", ".",
                                 "processors.py/../../etc", "os.path", "", " "])
def test_app_names_that_are_paths_are_refused_cleanly(app):
    result = run_cli("routes", "--project", PROJECT, "--app", app, timeout=30)
    stderr = result.stderr.decode()
    assert result.returncode == 2, (app, result.returncode, stderr)
    assert "Traceback" not in stderr and "Error" in stderr, stderr


@pytest.mark.parametrize("project", ["/etc/passwd", "/nonexistent/../../etc", "/proc/self"])
def test_project_folders_that_are_not_projects_are_refused_cleanly(project):
    result = run_cli("routes", "--project", project, timeout=30)
    stderr = result.stderr.decode()
    assert result.returncode == 2, (project, result.returncode, stderr)
    assert "Traceback" not in stderr, stderr


def tree(folder):
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


def test_test_folder_mode_writes_only_inside_its_output_folder(tmp_path):
    inputs, outside = tmp_path / "in", tmp_path / "outside"
    (inputs / "a" / "b").mkdir(parents=True)
    outside.mkdir()
    (outside / "target.txt").write_bytes(b"untouched")
    for name in ("..\\..\\evil.txt", "...", "..hidden", "a/b/c.txt", "%2e%2e%2fescape.txt", "-o"):
        (inputs / name).write_bytes(name.encode())
    (inputs / "dir-out").symlink_to(outside)  # folders behind symlinks are not walked into
    before = tree(tmp_path)
    result = run_cli("test", inputs, "echo", "-o", tmp_path / "out", "--project", PROJECT, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    written = tree(tmp_path) - before
    assert written and all(path == "out" or path.startswith("out/") for path in written), written
    assert (outside / "target.txt").read_bytes() == b"untouched" and tree(outside) == {"target.txt"}
    assert (tmp_path / "out" / "..\\..\\evil.txt").read_bytes() == b"..\\..\\evil.txt"
    record("security", {"test_folder_outputs": sorted(written)})


def test_test_folder_mode_does_not_read_back_its_own_output_inside_the_input(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "one.txt").write_bytes(b"one")
    for _ in range(2):
        result = run_cli("test", inputs, "echo", "-o", inputs / "out", "--project", PROJECT, timeout=60)
        assert result.returncode == 0 and b"1 ok, 0 failed" in result.stderr, result.stderr.decode()
    assert tree(inputs) == {"one.txt", "out", "out/one.txt"}


@pytest.fixture
def app_py(tmp_path):
    shutil.copy(PROJECTS / "oldstyle" / "app.py", tmp_path / "app.py")
    return tmp_path / "app.py"


def test_migrate_never_overwrites_directly_or_through_a_symlink(app_py, tmp_path):
    victim = tmp_path / "victim.py"
    victim.write_text("precious")
    (tmp_path / "via-link.py").symlink_to(victim)
    for output in (victim, tmp_path / "via-link.py"):
        result = run_cli("migrate", app_py, "-o", output, timeout=30)
        assert result.returncode == 1 and b"already exists" in result.stderr, result.stderr.decode()
        assert victim.read_text() == "precious"
    (tmp_path / "sub").mkdir()
    before = tree(tmp_path)
    result = run_cli("migrate", app_py, "-o", tmp_path / "sub" / ".." / "new.py", timeout=30)
    assert result.returncode == 0 and tree(tmp_path) - before == {"new.py"}, (result.stderr, tree(tmp_path))


@pytest.mark.parametrize("command", [
    pytest.param(["migrate", "{app}", "-o", "{missing}/processors.py"],
                 id="migrate -o into a missing folder"),
    # (-o into a missing folder creates it; /proc is where no file can be made)
    pytest.param(["test", "{input}", "echo", "-o", "/proc/no-such-dir/out.txt"],
                 id="test -o where none can be"),
    pytest.param(["test", "{folder}", "echo", "-o", "/proc/no-such-dir"],
                 id="test folder -o where none can be"),
])
def test_an_output_path_that_cannot_be_written_is_a_clean_error(app_py, tmp_path, command):
    """A path the user gave that cannot be written: an error naming it, never a traceback."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "x.txt").write_bytes(b"x")
    (tmp_path / "input.txt").write_bytes(b"x")
    args = [part.format(app=app_py, missing=tmp_path / "missing", input=tmp_path / "input.txt",
                        folder=tmp_path / "folder") for part in command]
    result = run_cli(*args, "--project", PROJECT, cwd=tmp_path, timeout=30) if args[0] == "test" else \
        run_cli(*args, cwd=tmp_path, timeout=30)
    stderr = result.stderr.decode()
    assert result.returncode in (1, 2), stderr
    assert "Traceback" not in stderr, stderr
