"""Helpers shared by the tests: running the real ``ufop-sdk`` command."""

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
PROJECTS = Path(__file__).resolve().parent / "projects"


def clean_environment(extra=None):
    """This process's environment without ufop-sdk's settings, plus `extra`."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("UFOP_", "CPU_COUNT", "FLAVOR"))}
    environment.update(extra or {})
    return environment


def run_cli(*args, cwd=None, env=None, input=None, timeout=60):
    """Run ``ufop-sdk ARGS`` in a real subprocess; returns the CompletedProcess (bytes)."""
    environment = clean_environment(env)
    return subprocess.run([sys.executable, "-m", "ufop_sdk", *map(str, args)], cwd=cwd, env=environment,
                          input=input, capture_output=True, timeout=timeout)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


TRACEBACK = "Traceback (most recent call last)"


class Server:
    """A real ``ufop-sdk serve`` (or ``dev``) subprocess on a free port.

        with Server(PROJECT) as server:
            response = server.post("t/echo", b"hello")

    A traceback in what the server or its workers print fails the test it
    was printed during (a traceback in a server's log is a bug until shown
    otherwise): tests/conftest.py checks every running Server after each
    test, and the ``with`` block checks when it ends. A test that provokes
    one on purpose (a processor that raises, a project that fails to import,
    a setup() that fails) says so, either for the whole server:

        with Server(PROJECT, expect_traceback=True) as server:

    or, for a test using a shared server (a module-scoped fixture), with:

        @pytest.mark.expect_traceback
        def test_a_crash_is_a_500(server):
    """

    running = []  # servers up now, for conftest's check after each test
    # set by conftest while a test marked expect_traceback runs
    traceback_expected_by_test = False

    def __init__(self, project, *args, command="serve", env=None, workers=2, wait_healthy=True,
                 expect_traceback=False, python=sys.executable):
        self.project = Path(project)
        self.python = str(python)  # the interpreter of the server, and so of its workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [command, "--project", str(project), "--port", str(self.port), *args]
        if workers is not None:
            self.args += ["--workers", str(workers)]
        self.env = env or {}
        self.wait_healthy = wait_healthy
        self.expect_traceback = expect_traceback
        self.checked_up_to = 0  # of the output, already checked for tracebacks
        self.log = tempfile.NamedTemporaryFile(prefix="ufop-server-", suffix=".log", delete=False)

    def __enter__(self):
        environment = clean_environment(self.env)
        self.process = subprocess.Popen([self.python, "-m", "ufop_sdk", *self.args], env=environment,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        Server.running.append(self)
        self.wait_until(lambda: self._health_status() == 200 if self.wait_healthy
                        else self._health_status() is not None, 20, "the server to start")
        return self

    def __exit__(self, exc_type, *exc_info):
        Server.running.remove(self)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        try:
            if exc_type is None:  # a failing test's own error says more
                self.check_tracebacks()
        finally:
            self.log.close()
            os.unlink(self.log.name)

    def check_tracebacks(self, expected=False):
        """Fail if a traceback was printed since the last check, unless one is `expected`."""
        output = self.output()
        found = output.find(TRACEBACK, self.checked_up_to)
        self.checked_up_to = len(output)
        if found >= 0 and not (expected or self.expect_traceback or Server.traceback_expected_by_test):
            raise AssertionError(
                "the server logged a traceback; if the test provokes it on purpose, mark the test "
                "@pytest.mark.expect_traceback or pass expect_traceback=True to Server:\n"
                f"{output[max(found - 1000, 0):found + 4000]}")

    def output(self):
        """What the server printed so far (stdout and stderr)."""
        return Path(self.log.name).read_text(errors="replace")

    def request(self, method, path, body=None, headers=None, timeout=30):
        """One HTTP request on a new connection; returns (status, headers, body)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def post(self, cmd, body=b"", url=None, headers=None, timeout=30):
        query = {"cmd": cmd, **({"url": url} if url is not None else {})}
        return self.request("POST", "/handler?" + urllib.parse.urlencode(query), body, headers, timeout)

    def health(self):
        status, _, body = self.request("GET", "/health")
        return status, json.loads(body)

    def _health_status(self):
        if self.process.poll() is not None:
            raise AssertionError(f"the server exited with {self.process.returncode}:\n{self.output()}")
        try:
            return self.request("GET", "/health", timeout=2)[0]
        except OSError:
            return None

    def wait_until(self, condition, seconds, what):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n{self.output()}")


def first_answer(server, cmd, wanted, *, since, within, interval=0.02):
    """POST `cmd` every `interval` s until `wanted(status, body)` holds; returns (seconds, status, body).

    The seconds are counted from `since`, a ``time.monotonic()`` value taken
    just before the change being waited for. Raises AssertionError with the
    last answer and the server's output when `within` seconds pass first.
    """
    deadline = since + within
    last = None
    while time.monotonic() < deadline:
        try:
            status, _, body = server.post(cmd, timeout=max(deadline - time.monotonic(), 0.1))
        except OSError as exc:
            last = exc
        else:
            if wanted(status, body):
                return time.monotonic() - since, status, body
            last = (status, body)
        time.sleep(interval)
    raise AssertionError(f"no wanted answer to {cmd!r} within {within}s; last {last!r}; "
                         f"the server's output ends:\n{server.output()[-4000:]}")

# Helpers for the server suites (origin, /proc, concurrency); imported here so the code above stays as it was.
import threading  # noqa: E402
from collections import namedtuple  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402


class _QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops connections when many fetches start at once

    def handle_error(self, request, client_address):
        """A client that hung up mid-answer (a refused or timed-out fetch) is expected here."""


class Origin:
    """A local HTTP origin for url mode: a ThreadingHTTPServer on `host` in a thread.

        with Origin() as origin:
            origin.serve("/a.txt", b"hello", content_type="text/plain")
            server.post("t/echo", url=origin.url("/a.txt"))

    A path not set up answers 404. `requests` lists the paths asked for, in order.
    With `tls` (a server-side ssl.SSLContext) it answers HTTPS.

    It takes POSTs too (a notify callback's receiver): `receive(path, status)`
    sets what POST `path` is answered, and `posted` lists every POST, in order.
    """

    def __init__(self, host="127.0.0.1", tls=None):
        self.host = host
        self.tls = tls
        self.answers = {}
        self.requests = []
        self.receiving = {}
        self.posted = []
        self.closing = threading.Event()

    def __enter__(self):
        self.httpd = _QuietHTTPServer((self.host, 0), self._handler_class())
        self.port = self.httpd.server_address[1]
        if self.tls is not None:
            self.httpd.socket = self.tls.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.closing.set()  # releases answers still waiting out a delay
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def url(self, path, host=None):
        return f"{'https' if self.tls else 'http'}://{host or self.host}:{self.port}{path}"

    def serve(self, path, body=b"", *, status=200, content_type=None, headers=None, delay=0.0,
              framing="length"):
        """Answer GET `path` with `body` after `delay` seconds.

        `framing` is how the body's end is told: ``"length"`` (Content-Length),
        ``"chunked"``, or ``"close"`` (no length: the connection closes).
        """
        def answer(handler):
            if delay and self.closing.wait(delay):
                return
            handler.send_response(status)
            for name, value in {**({"Content-Type": content_type} if content_type else {}),
                                **(headers or {})}.items():
                handler.send_header(name, value)
            _send_body(handler, body, framing)

        self.answers[path] = answer

    def receive(self, path, status=200):
        """Answer POST `path` with `status` and ``{}``; each POST is kept in `posted` as a Posted."""
        self.receiving[path] = status

    def redirect(self, path, location, status=302):
        self.serve(path, status=status, headers={"Location": location})

    def stream(self, path, size, *, stall_after=None):
        """Answer GET `path` with `size` random bytes (a Content-Length), 64 KiB a write, pausing for
        good after `stall_after` bytes if given; returns the CountedAnswer that tells what was sent."""
        answer = CountedAnswer(size, stall_after, self.closing)
        self.answers[path] = answer
        return answer

    def _handler_class(self):
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                origin.requests.append(self.path)
                answer = origin.answers.get(self.path)
                if answer is None:
                    self.send_response(404)
                    _send_body(self, b"no such file", "length")
                else:
                    answer(self)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                origin.posted.append(Posted(self.path, dict(self.headers), body))
                self.send_response(origin.receiving.get(self.path, 404))
                _send_body(self, b"{}", "length")

            def log_message(self, *args):
                pass

        return Handler


Posted = namedtuple("Posted", "path headers body")
Posted.__doc__ = "A POST an Origin received: its path, headers (a dict) and body (bytes)."


class CountedAnswer:
    """A large answer that counts the bytes the kernel took from it (`written`) until the client
    closed the connection or all was sent (`ended`, an Event), and keeps what it sends (`sent`).
    Both tell of the latest request for it.

    Its socket's send buffer is fixed at 1 MiB, so that what the kernels hold for a client
    that stopped reading (this buffer and the client's receive buffer) does not depend on the
    machine's TCP autotuning limits.
    """

    PIECE = 64 << 10

    def __init__(self, size, stall_after, closing):
        self.size = size
        self.stall_after = stall_after
        self.closing = closing
        self.sent = os.urandom(size)
        self.written = 0
        self.ended = threading.Event()

    def __call__(self, handler):
        self.written = 0
        self.ended.clear()
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(self.size))
        handler.end_headers()
        try:
            while self.written < self.size:
                if self.stall_after is not None and self.written >= self.stall_after:
                    self.closing.wait()
                    return
                piece = self.sent[self.written:self.written + self.PIECE]
                handler.wfile.write(piece)
                self.written += len(piece)
        except OSError:
            handler.close_connection = True  # the client hung up: what this answer is here to show
        finally:
            self.ended.set()


def _send_body(handler, body, framing):
    pieces = [body[i:i + (64 << 10)] for i in range(0, len(body), 64 << 10)]
    if framing == "length":
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    elif framing == "chunked":
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for piece in pieces:
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        handler.wfile.write(b"0\r\n\r\n")
    else:
        handler.send_header("Connection", "close")
        handler.end_headers()
        for piece in pieces:
            handler.wfile.write(piece)
        handler.close_connection = True


def children_of(pid):
    """The pids of a process's children (a server's workers), from /proc."""
    pids = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        pids += [int(child) for child in children.read_text().split()]
    return pids


def open_files(pid):
    """What a process's file descriptors point at, e.g. ``/tmp/x/#123 (deleted)``."""
    targets = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            targets.append(os.readlink(fd))
        except OSError:  # closed since listed
            pass
    return targets


def post_concurrently(server, requests, timeout=30, as_url=False):
    """POST each ``(cmd, body)`` of `requests` at once, one thread each; returns the answers in order.

    With `as_url`, the second item of each pair is a source url rather than a body.
    """
    def post(cmd, source):
        return server.post(cmd, url=source, timeout=timeout) if as_url else server.post(cmd, source,
                                                                                          timeout=timeout)

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        futures = [pool.submit(post, cmd, source) for cmd, source in requests]
        return [future.result(timeout + 5) for future in futures]


def save_image(path, size, image_format="JPEG"):
    """Write a real image of `size` to `path` with Pillow; returns its bytes.

    A gradient with a red block, so encoders have work and crops show. Pillow
    is imported here: most suites never draw an image.
    """
    from PIL import Image

    width, height = size
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    image.paste((200, 40, 40), (width // 4, height // 4, width // 2, height // 2))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, image_format)
    return path.read_bytes()


# The qiniu-ufop suites (test_compat, test_migrate): an app in the older style, and what it answers.
import re  # noqa: E402

OLDSTYLE = PROJECTS / "oldstyle"
# What the oldstyle app's png task returns: a PNG signature and header chunk.
OLDSTYLE_PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"

Answer = namedtuple("Answer", "status content_type custom body")
Answer.__doc__ = ("What a cmd got: status, Content-Type, a header of the app's own (X-Custom unless said "
                  "otherwise; None over the CLI) and body.")

TEXT = "text/plain; charset=utf-8"
OLDER_JSON = "application/json; charset=utf-8"  # qiniu-ufop's json.dumps(value), with its ", " and ": "
# params, body, declared Content-Type (None: none), and the Answer the oldstyle app gives.
OLDSTYLE_CASES = [
    ("hello", b"", None, Answer(200, TEXT, None, b"hello world")),
    ("hello/bob", b"", None, Answer(200, TEXT, None, b"hello bob")),
    ("hello/bob/", b"", None, Answer(200, TEXT, None, b"hello bob")),
    ("hello/bob/extra", b"plain words\n", None, Answer(200, "text/plain", None, b"plain words\n")),
    ("xhello", b"plain words\n", None, Answer(200, "text/plain", None, b"plain words\n")),
    ("json", b"abc", "text/x-declared",
     Answer(200, OLDER_JSON, None, b'{"args": {}, "content_type": "text/x-declared", "size": 3}')),
    ("json/extra", OLDSTYLE_PNG, None,
     Answer(200, OLDER_JSON, None, b'{"args": {}, "content_type": "image/png", "size": 29}')),
    ("created/42", b"", None, Answer(201, "text/html; charset=utf-8", "made-42", b"<p>created 42</p>")),
    ("created/x", OLDSTYLE_PNG, None, Answer(200, "image/png", None, OLDSTYLE_PNG)),
    ("buffered", b"some data", None, Answer(200, "text/plain", None, b"buffered: some data")),
    ("upper", b"shout", None, Answer(200, "text/x-upper", None, b"SHOUT")),
    ("png", b"", None, Answer(200, "image/png", None, OLDSTYLE_PNG)),
    ("", b"bare name\n", None, Answer(200, "text/plain", None, b"bare name\n")),
    ("any/thing", OLDSTYLE_PNG, "image/x-declared", Answer(200, "image/png", None, OLDSTYLE_PNG)),
]
# Test ids for OLDSTYLE_CASES.
OLDSTYLE_CASE_IDS = [params or "<bare name>" for params, *_ in OLDSTYLE_CASES]


# The older README's apps: its quickstart, and its route for a single processor; both answer the bare name.
QUICKSTART = '''
    from qiniu_ufop import QiniuUFOP

    ufop = QiniuUFOP()

    @ufop.task(route=r"^(?:/(?P<name>\\w+))?$")
    def hello(buffer, args, content_type):
        return "hello " + args.get("name", "world")
'''

SINGLE_PROCESSOR = '''
    from qiniu_ufop import QiniuUFOP

    ufop = QiniuUFOP()

    @ufop.task(route=r"^$")
    def only(buffer, args, content_type):
        return "only"
'''


def http_answer(server, params, body=b"", content_type=None, name="oldufop", header="X-Custom"):
    """The Answer a running server gives `params` (the cmd after the ufop `name`), `header` as its custom."""
    cmd = f"{name}/{params}" if params else name
    headers = {"Content-Type": content_type} if content_type else {}
    status, response_headers, response_body = server.post(cmd, body, headers=headers)
    return Answer(status, response_headers.get("Content-Type"), response_headers.get(header), response_body)


_WRITTEN = re.compile(r"(\d{3}) (.*), \d+ bytes -> ")


def cli_answer(project, app, params, body, content_type, folder):
    """The Answer ``ufop-sdk test FILE PARAMS --app APP`` gives; FILE holds `body`, in `folder`.

    The status and content type come from what ``-o`` prints; an error's
    JSON, printed on stderr, is its body.
    """
    folder = Path(tempfile.mkdtemp(dir=folder))
    source, output = folder / "input", folder / "output"
    source.write_bytes(body)
    declared = ["--content-type", content_type] if content_type else []
    result = run_cli("test", source, params, "-o", output, "--project", project, "--app", app, *declared,
                     timeout=30)
    stderr = result.stderr.decode()
    written = _WRITTEN.search(stderr)
    if result.returncode == 0 and written:
        return Answer(int(written[1]), written[2], None, output.read_bytes())
    status, _, error = stderr.partition(" ")
    assert status.isdigit(), f"ufop-sdk test exited {result.returncode}:\n{stderr}"
    return Answer(int(status), "application/json", None, error.splitlines()[0].encode())


def cli_answers(project, app, cases, folder):
    """`cli_answer` for each ``(params, body, content_type, ...)`` of `cases`, run at once, in order."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(cli_answer, project, app, params, body, content_type, folder)
                   for params, body, content_type, *_ in cases]
        return [future.result(60) for future in futures]


def access_line(server, request_id, within=5):
    """The access log line of `request_id`, waiting for the buffered log to be flushed."""
    lines = []

    def logged():
        lines[:] = [json.loads(line) for line in server.output().splitlines()
                    if line.startswith("{") and f'"request_id":"{request_id}"' in line]
        return lines

    server.wait_until(logged, within, f"the access line of {request_id}")
    assert len(lines) == 1, lines
    return lines[0]


def rss_bytes(pid):
    """A process's resident memory, from /proc/<pid>/status."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) << 10
    raise AssertionError(f"no VmRSS for {pid}")


def send_request(server, cmd, request_id, receive_buffer=None):
    """A raw socket that has sent ``POST /handler?cmd=CMD`` with an empty body and reads nothing yet."""
    sock = socket.socket()
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(f"POST /handler?cmd={cmd} HTTP/1.1\r\nHost: x\r\nX-Request-Id: {request_id}\r\n"
                 f"Content-Length: 0\r\n\r\n".encode())
    return sock
