"""Property-based fuzzing with hypothesis: cmd parsing, route matching, argument conversion, and
cmds, query strings, headers and bodies sent over real HTTP to a real ``serve``.

The served app (project/wellbehaved.py) answers every input with 2xx or 4xx,
so any 5xx, unhandled exception or traceback in the server's output is a bug.
Over HTTP the in-process ProcessorRunner is the oracle: the server must answer each cmd
with the status ``ufop-sdk test`` would give it. Inputs tried go to
test-artifacts/reliability/fuzz.json.
"""

import collections
import http.client
import io
import json
import re
import string
from urllib.parse import quote

import pytest
from harness import PROJECT, assert_unharmed, record, sized
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import Server

from ufop_sdk.app.routing import split_cmd
from ufop_sdk.arguments import build_args
from ufop_sdk.errors import BadRequest, NotFound

pytestmark = pytest.mark.reliability

EXAMPLES = sized(200, 1000)
BOUNDED = settings(max_examples=EXAMPLES, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
PREFIXES = ["", "t", "t/", "/", "t//", "t/echo", "t/describe", "t/describe/", "t/typed/", "t/typed/12/",
            "t/picture", "t/nothing", "other-ufop/echo"]
cmds = st.one_of(st.text(max_size=80),
                 st.builds(str.__add__, st.sampled_from(PREFIXES), st.text(max_size=40)))
group_text = st.text(st.characters(blacklist_characters="/", blacklist_categories=("Cc", "Cs")), max_size=12)
widths = st.one_of(group_text, st.integers(-10, 5000).map(str),
                   st.from_regex(r"0*[0-9]{1,5}", fullmatch=True))
formats = st.one_of(group_text, st.sampled_from(["jpeg", "png", "JPEG", "jpg", " png", "png\u200b"]))

tried = collections.Counter()
statuses = collections.defaultdict(collections.Counter)


@pytest.fixture(scope="module", autouse=True)
def figures():
    yield
    record("fuzz", {"examples_per_property": EXAMPLES, "inputs_tried": dict(tried),
                    "statuses_over_http": {name: dict(sorted(counts.items()))
                                           for name, counts in statuses.items()}})


@pytest.fixture
def app(load_runner):
    """The wellbehaved app, loaded in this process: the oracle."""
    return load_runner(PROJECT, app="wellbehaved")


# Properties of the parts, in this process.

def test_split_cmd_splits_every_cmd_or_refuses_it_with_400():
    @BOUNDED
    @given(cmds)
    def split(cmd):
        tried["split_cmd"] += 1
        try:
            name, params = split_cmd(cmd)
        except BadRequest:
            assert cmd == "" or cmd.startswith("/") or CONTROL.search(cmd)
        else:
            assert name and "/" not in name and not CONTROL.search(cmd)
            assert cmd in (name, f"{name}/{params}")

    split()


def test_resolve_gives_the_first_route_that_fully_matches_or_400_or_404(app):
    routes = list(app.app.routes)

    @BOUNDED
    @given(cmds)
    def resolve(cmd):
        tried["RouteTable.resolve"] += 1
        try:
            match = app.app.routes.resolve(cmd)
        except BadRequest:
            assert cmd == "" or cmd.startswith("/") or CONTROL.search(cmd)
        except NotFound as exc:
            params = split_cmd(cmd)[1]
            assert not any(route.pattern.fullmatch(params) for route in routes)
            assert repr(params) in exc.message
        else:
            params = split_cmd(cmd)[1]
            first = next(route for route in routes if route.pattern.fullmatch(params))
            assert match.route is first
            assert match.groups == {k: v for k, v in first.pattern.fullmatch(params).groupdict().items()
                                    if v is not None}

    resolve()


def test_route_groups_arrive_exactly_as_sent(app):
    @BOUNDED
    @given(widths, formats)
    def round_trip(width, format_):
        tried["route groups"] += 1
        match = app.app.routes.resolve(f"t/typed/{width}/{format_}")
        assert (match.route.name, match.groups) == ("Typed", {"width": width, "format": format_})

    round_trip()


def valid_width(width):
    return width.isascii() and width.isdecimal() and len(width) <= 4300 and 1 <= int(width) <= 4096


def test_integer_and_choice_fields_convert_exactly_the_valid_inputs(app):
    args_class = app.app.routes.route_named("Typed").processor.Args

    @BOUNDED
    @given(widths, formats)
    def convert(width, format_):
        tried["build_args"] += 1
        try:
            args = build_args(args_class, {"width": width, "format": format_})
        except BadRequest as exc:
            wrong = "width" if not valid_width(width) else "format"
            assert exc.message.startswith(f"invalid argument '{wrong}': expected"), exc.message
            assert valid_width(width) is False or format_ not in ("jpeg", "png")
        else:
            assert valid_width(width) and format_ in ("jpeg", "png")
            assert (args.width, args.format) == (int(width), format_)

    convert()


# Over HTTP, against a real serve.

class Client:
    """One keep-alive HTTP connection to the server; a new one if the server closed it."""

    def __init__(self, port):
        self.port = port
        self.connection = None

    def request(self, method, target, body=b"", headers=()):
        if self.connection is None:
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        self.connection.putrequest(method, target, skip_accept_encoding=True)
        for name, value in (*headers, ("Content-Length", str(len(body)))):
            self.connection.putheader(name, value)
        self.connection.endheaders(body)
        response = self.connection.getresponse()
        answer = response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        if response.will_close:
            self.connection.close()
            self.connection = None
        return answer


@pytest.fixture(scope="module")
def server():
    # A fuzzed url= never leaves the machine: any other host is refused before it is resolved.
    env = {"UFOP_MAX_BODY_BYTES": "1MiB", "UFOP_ALLOWED_SOURCE_HOSTS": "127.0.0.1"}
    with Server(PROJECT, "--app", "wellbehaved", "--host", "127.0.0.1", workers=2, env=env) as server:
        yield server


@pytest.fixture
def client(server):
    return Client(server.port)


def assert_answer_is_sane(name, status, headers, body):
    """Never a 5xx; every error is the JSON error with the answer's request id."""
    statuses[name][str(status)] += 1
    assert status < 500, (status, body[:300])
    if status >= 400:
        payload = json.loads(body)
        assert set(payload) == {"error", "request_id"} and payload["request_id"] == headers["x-request-id"]


def test_any_cmd_over_http_gets_what_the_runner_gives_it(server, client, app):
    @BOUNDED
    @given(cmds, st.sampled_from([b"", b"plain text", b"\x89PNG\r\n\x1a\n" + b"\0" * 24]))
    def post(cmd, body):
        tried["cmd over HTTP"] += 1
        status, headers, answer = client.request("POST", "/handler?cmd=" + quote(cmd, safe=""), body)
        assert_answer_is_sane("cmd", status, headers, answer)
        assert status == app.process_cmd(cmd, io.BytesIO(body)).response.status, (cmd, answer[:300])

    post()
    assert_unharmed(server)


QUERY_CHARACTERS = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/?%[]|^{}`\"<>\\"
query_text = st.text(st.sampled_from(QUERY_CHARACTERS), max_size=60)
escapes = st.one_of(st.integers(0, 255).map("%{:02X}".format), st.sampled_from(["%", "%G1", "%e", "%%", "+"]))
queries = st.lists(st.one_of(query_text, escapes), max_size=12).map("".join)


def test_any_query_string_over_http_is_answered_without_a_5xx(server, client):
    @BOUNDED
    @given(queries, st.sampled_from(["", "cmd=t/echo&", "cmd=t/typed/", "url=", "cmd=t/describe/&cmd="]))
    def post(query, lead):
        tried["query string over HTTP"] += 1
        status, headers, answer = client.request("POST", "/handler?" + lead + query, b"q")
        assert_answer_is_sane("query", status, headers, answer)

    post()
    assert_unharmed(server)


FRAMING = {"content-length", "transfer-encoding", "host", "connection", "expect", "content-type",
           "x-request-id", "content-encoding", "upgrade", "te", "trailer"}
header_names = st.from_regex(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,30}", fullmatch=True).filter(
    lambda name: name.lower() not in FRAMING)
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                      blacklist_categories=("Cc",)), max_size=100)


def test_any_headers_over_http_reach_the_processor_and_the_request_id_is_kept_only_when_sane(server, client):
    @BOUNDED
    @given(st.lists(st.tuples(header_names, header_values), max_size=6), header_values, header_values)
    def post(extra, request_id, content_type):
        tried["headers over HTTP"] += 1
        headers = [*extra, ("X-Request-Id", request_id), ("Content-Type", content_type)]
        status, answered, body = client.request("POST", "/handler?cmd=t/describe/h", b"{}", headers)
        assert_answer_is_sane("headers", status, answered, body)
        assert status == 200
        described = json.loads(body)
        assert described["declared_content_type"] == content_type.strip(" ")
        if REQUEST_ID.fullmatch(request_id.strip(" ")):
            assert answered["x-request-id"] == described["request_id"] == request_id.strip(" ")
        else:
            assert REQUEST_ID.fullmatch(answered["x-request-id"]) and answered["x-request-id"] != request_id

    post()
    assert_unharmed(server)


def test_any_body_over_http_comes_back_whole(server, client):
    @BOUNDED
    @given(st.binary(max_size=70_000))
    def post(body):
        tried["body over HTTP"] += 1
        status, headers, answer = client.request("POST", "/handler?cmd=t/echo", body)
        assert_answer_is_sane("body", status, headers, answer)
        assert (status, answer) == (200, body)

    post()
    assert_unharmed(server)


def test_any_typed_arguments_over_http_are_converted_or_refused_naming_the_field(server, client):
    @BOUNDED
    @given(widths, formats)
    def post(width, format_):
        tried["typed arguments over HTTP"] += 1
        cmd = f"t/typed/{width}/{format_}"
        status, headers, answer = client.request("POST", "/handler?cmd=" + quote(cmd, safe=""))
        assert_answer_is_sane("typed", status, headers, answer)
        if valid_width(width) and format_ in ("jpeg", "png"):
            assert (status, json.loads(answer)) == (200, {"width": int(width), "format": format_})
        else:
            wrong = "width" if not valid_width(width) else "format"
            assert status == 400 and f"invalid argument '{wrong}'" in json.loads(answer)["error"]

    post()
    assert_unharmed(server)
