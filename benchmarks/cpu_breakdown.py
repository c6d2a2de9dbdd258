"""Where a trivial request's CPU goes, process by process and thread by thread: local pool or Celery mode.

    python benchmarks/cpu_breakdown.py [--celery] [--seconds 5] [--connections 8]

wrk drives `bench-ufop/hello` (benchmarks/projects/trivial) through `serve`;
the CPU of every thread of the server, its workers (and in Celery mode the
worker's processes and redis-server) is read from /proc before and after,
and divided by the requests wrk counted. CPU per request is far less
sensitive to a noisy machine than requests/s.
"""

import argparse
import contextlib
import os
import subprocess
import sys
from pathlib import Path

from run import TRIVIAL, Redis, _wait_for_answers, free_port, serve, wrk

PATH = "/handler?cmd=bench-ufop/hello"


def thread_cpu(pid):
    """{(pid, thread id, thread name): CPU seconds} of every thread of `pid`."""
    seconds = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread that just ended
            stat = task.joinpath("stat").read_text()
            fields = stat.rpartition(")")[2].split()
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            ticks = int(fields[11]) + int(fields[12])
            seconds[(pid, int(task.name), name)] = ticks / os.sysconf("SC_CLK_TCK")
    return seconds


def process_tree(pid):
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(child) for child in task.joinpath("children").read_text().split()]
    return [pid] + [descendant for child in children for descendant in process_tree(child)]


def breakdown(groups, port, seconds, connections):
    """Print µs of CPU per request for each thread of each group ({name: [pids]})."""
    def snapshot():
        return {(group, *key): value for group, pids in groups.items() for pid in pids
                for key, value in thread_cpu(pid).items()}

    before = snapshot()
    figures = wrk(port, PATH, seconds, connections=connections)
    after = snapshot()
    per_request = {key: (after[key] - before.get(key, 0.0)) / figures["requests"] * 1e6 for key in after}
    print(f"{figures['rps']:,.0f} requests/s, p50 {figures['p50']:.2f} ms, {connections} connections\n")
    print("| process group | pid | thread | µs of CPU per request |")
    print("|---|---|---|---|")
    for key, micros in sorted(per_request.items(), key=lambda item: -item[1]):
        if micros >= 1:
            group, pid, thread, name = key
            print(f"| {group} | {pid} | {thread} ({name}) | {micros:.0f} |")
    for group in groups:
        print(f"| {group}, all | | | {sum(v for k, v in per_request.items() if k[0] == group):.0f} |")
    print(f"| total | | | {sum(per_request.values()):.0f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--celery", action="store_true", help="Celery mode (a throw-away redis-server)")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    options = parser.parse_args()
    port = free_port()
    if not options.celery:
        with serve(TRIVIAL, port, workers=2) as server:
            _wait_for_answers(port, PATH)
            wrk(port, PATH, 2, connections=options.connections)
            breakdown({"server": process_tree(server.pid)}, port, options.seconds, options.connections)
        return
    with Redis() as redis:
        env = {"UFOP_BROKER_URL": redis.url, "UFOP_NAME": "bench-ufop"}
        worker = subprocess.Popen([sys.executable, "-m", "ufop_sdk", "worker", "--project", str(TRIVIAL)],
                                  env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            with serve(TRIVIAL, port, env=env) as server:
                _wait_for_answers(port, PATH)
                wrk(port, PATH, 2, connections=options.connections)
                groups = {"server": process_tree(server.pid), "worker": process_tree(worker.pid),
                          "redis": [redis.process.pid]}
                breakdown(groups, port, options.seconds, options.connections)
        finally:
            worker.terminate()
            worker.wait(30)


if __name__ == "__main__":
    main()
