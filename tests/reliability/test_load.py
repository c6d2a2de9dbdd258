"""`serve` under load: a mix of good, refused and failing requests at 64 keep-alive connections.

Every answer is checked against what its request should get, the server's own
count must agree with the client's, and the server's memory must stay flat
once warmed up. The figures go to test-artifacts/reliability/load.json.
"""

import dataclasses
import random

import pytest
from harness import PROJECT, cpu_seconds, record, rss_kib, sized
from loadgen import Call, describe, echo, fails, run_load
from prometheus_client.parser import text_string_to_metric_families
from support import Server, children_of

pytestmark = pytest.mark.reliability

LIMIT = 64 << 10  # UFOP_MAX_BODY_BYTES
CONNECTIONS = 64
WARM_UP = sized(1_000, 2_000)  # requests before memory is first read
REQUESTS = sized(3_000, 20_000)  # requests measured after the warm-up
RSS_GROWTH_LIMIT = 0.10


def health_check(answer):
    healthy = answer.status == 200 and b'"ok"' in answer.body
    return None if healthy else f"health {answer.status} {answer.body!r}"


# kind -> (weight, a function of a Random giving the call)
MIX = {
    "echo": (34, lambda rng: echo(rng.randbytes(rng.randint(0, 4096)))),
    "echo-chunked": (5, lambda rng: echo(rng.randbytes(rng.randint(1, 40 << 10)), chunked=True)),
    "describe": (20, lambda rng: describe(rng.randbytes(rng.randint(0, 2048)),
                                          label=f"n{rng.randint(0, 99)}")),
    "404": (10, lambda rng: fails(f"t/nothing-{rng.randint(0, 9)}", 404, "no processor matches")),
    "413-length": (4, lambda rng: fails("t/echo", 413, f"limit of {LIMIT} bytes",
                                        body=b"\0" * (LIMIT + rng.randint(1, 64 << 10)))),
    "413-chunked": (2, lambda rng: fails("t/echo", 413, f"limit of {LIMIT} bytes",
                                         body=b"\0" * (LIMIT + rng.randint(1, 64 << 10)), chunked=True)),
    "400-processor": (6, lambda rng: fails("t/fail/bad", 400, "this input is bad", body=b"x")),
    "400-argument": (4, lambda rng: fails(f"t/typed/{rng.choice(['abc', '0', '99999', '-1'])}/png", 400,
                                          "invalid argument 'width'")),
    "400-query": (3, lambda rng: fails("", 400, "not valid UTF-8", target="/handler?cmd=t/%ff")),
    "405": (3, lambda rng: fails("t/echo", 405, "method GET is not allowed", method="GET")),
    "500-processor": (6, lambda rng: fails("t/fail/crash", 500, "internal error in processor 'Fail'")),
    "health": (3, lambda rng: Call("health", "/health", health_check, method="GET")),
}


def mixed_calls(count, seed):
    """`count` calls drawn from MIX by weight, the same ones for the same seed."""
    rng = random.Random(seed)
    kinds = list(MIX)
    weights = [MIX[kind][0] for kind in kinds]
    for _ in range(count):
        kind = rng.choices(kinds, weights)[0]
        yield dataclasses.replace(MIX[kind][1](rng), kind=kind)


def counted_by_server(server):
    """/handler answers by status, from the server's /metrics."""
    text = server.request("GET", "/metrics")[2].decode()
    counts = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ufop_requests_total":
                status = sample.labels["status"]
                counts[status] = counts.get(status, 0) + int(sample.value)
    return counts


def counted_by_client(reports):
    counts = {}
    for report in reports:
        for answer in report.answers:
            if answer.call.target.startswith("/handler"):
                counts[str(answer.status)] = counts.get(str(answer.status), 0) + 1
    return counts


@pytest.fixture(scope="module")
def server():
    with Server(PROJECT, "--host", "127.0.0.1", env={"UFOP_MAX_BODY_BYTES": str(LIMIT)}, workers=2) as server:
        yield server


@pytest.mark.expect_traceback  # the mix has t/fail/crash, which raises on purpose
def test_serve_holds_a_mixed_load_with_every_answer_right_and_flat_memory(server):
    pid = server.process.pid
    workers = sorted(children_of(pid))
    warm_up = run_load(server.port, mixed_calls(WARM_UP, seed=1), CONNECTIONS)
    assert warm_up.problems() == []
    rss_before, workers_before, cpu_before = rss_kib(pid), {w: rss_kib(w) for w in workers}, cpu_seconds(pid)

    measured = run_load(server.port, mixed_calls(REQUESTS, seed=2), CONNECTIONS,
                        limit=sized(120, 600))

    rss_after, workers_after = rss_kib(pid), {w: rss_kib(w) for w in workers}
    server_cpu = cpu_seconds(pid) - cpu_before
    figures = measured.figures()
    growth = (rss_after - rss_before) / rss_before
    figures.update({
        "warm_up_requests": len(warm_up.answers),
        "total_requests": len(warm_up.answers) + len(measured.answers),
        "server_rss_kib": {"after_warm_up": rss_before, "after_load": rss_after, "growth": round(growth, 4)},
        "worker_rss_kib": {str(w): {"after_warm_up": workers_before[w], "after_load": workers_after[w]}
                           for w in workers},
        "server_cpu_us_per_request": round(server_cpu / len(measured.answers) * 1e6),
        "body_limit_bytes": LIMIT,
    })
    record("load", {"load": figures})

    assert measured.problems() == []
    assert figures["connection_errors"] == 0
    assert len(measured.answers) == REQUESTS
    assert set(measured.statuses()) >= {"200", "400", "404", "405", "413", "500"}
    assert growth <= RSS_GROWTH_LIMIT, figures["server_rss_kib"]
    assert sorted(children_of(pid)) == workers, "a worker was replaced: none of these requests kills one"
    server.wait_until(lambda: counted_by_server(server) == counted_by_client([warm_up, measured]), 5,
                      "the server's count of answers to agree with the client's: "
                      f"{counted_by_server(server)} vs {counted_by_client([warm_up, measured])}")
