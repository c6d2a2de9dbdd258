"""samples/mkzip's concurrency gain: a zip of 100 sources against fetching them one by one.

    python benchmarks/mkzip.py [--sources 100] [--mib 1] [--latency 0.05] [--rounds 3]

A local origin answers each source after `--latency` seconds. The sum of the
sources' download times (one by one, as a client would fetch them) is set
against one mkzip/2 of them all through ``ufop-sdk serve``, measured until the
whole zip is received. Prints a Markdown table of the medians.
"""

import argparse
import asyncio
import base64
import http.client
import statistics
import threading
import time
import zipfile
from io import BytesIO
from pathlib import Path

from run import free_port, machine, serve

MKZIP = Path(__file__).resolve().parent.parent / "samples" / "mkzip"


class SlowOrigin:
    """An HTTP origin on loopback: GET /<n> answers `size` bytes after `latency` seconds.

    On asyncio in a thread of its own: a thread per connection (http.server's)
    is what slows down with 16 transfers at once here, not the client.
    """

    def __init__(self, size, latency):
        self.body = bytes(range(256)) * (size // 256)
        self.latency = latency
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        server = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._answer, "127.0.0.1", 0),
                                                  self.loop).result()
        self.port = server.sockets[0].getsockname()[1]

    def url(self, number):
        return f"http://127.0.0.1:{self.port}/{number}"

    async def _answer(self, reader, writer):
        try:
            while (await reader.readuntil(b"\r\n\r\n")).startswith(b"GET "):
                await asyncio.sleep(self.latency)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(self.body) + self.body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def downloads_one_by_one(origin, sources):
    """Seconds to download every source in turn, each on a new connection."""
    began = time.perf_counter()
    for number in range(sources):
        connection = http.client.HTTPConnection("127.0.0.1", origin.port, timeout=60)
        connection.request("GET", f"/{number}")
        connection.getresponse().read()
        connection.close()
    return time.perf_counter() - began


def mkzip_through_serve(port, cmd, sources):
    """Seconds for one mkzip, until the whole zip is in; checks it holds every source."""
    began = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    connection.request("POST", "/handler?cmd=" + cmd, body=b"")
    response = connection.getresponse()
    body = response.read()
    seconds = time.perf_counter() - began
    connection.close()
    if response.status != 200:
        raise RuntimeError(f"mkzip answered {response.status}: {body[:300]!r}")
    with zipfile.ZipFile(BytesIO(body)) as archive:
        assert len(archive.namelist()) == sources
    return seconds, len(body)


def b64(text):
    return base64.urlsafe_b64encode(text.encode()).decode()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=100)
    parser.add_argument("--mib", type=float, default=1.0)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    origin = SlowOrigin(int(options.mib * (1 << 20)), options.latency)
    entries = "".join(f"/url/{b64(origin.url(n))}/alias/{b64(f'{n:04d}.bin')}"
                      for n in range(options.sources))
    port = free_port()
    sums, zips = [], []
    with serve(MKZIP, port, env={"UFOP_BLOCKED_NETWORKS": "none"}):
        for _ in range(options.rounds):  # alternating, since the machine is shared and noisy
            sums.append(downloads_one_by_one(origin, options.sources))
            zips.append(mkzip_through_serve(port, "bench-ufop/mkzip/2" + entries, options.sources))
    one_by_one = statistics.median(sums)
    zipped, size = statistics.median(seconds for seconds, _ in zips), zips[0][1]
    print(f"{machine()}; median of {options.rounds} rounds\n")
    print("| sources | each | origin latency | downloads one by one (sum) | mkzip through serve | gain "
          "| zip |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {options.sources} | {options.mib:g} MiB | {options.latency * 1000:g} ms | {one_by_one:.2f} s "
          f"| {zipped:.2f} s | {one_by_one / zipped:.1f}x | {size / (1 << 20):.1f} MiB |")


if __name__ == "__main__":
    main()
