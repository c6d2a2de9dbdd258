"""Running a server process: listen, start the executor, stop gracefully on SIGTERM.

The ``ufop-sdk serve`` process runs the event loop itself, so it is the PID
Docker signals. SIGTERM (or Ctrl-C) lets requests in flight finish within the
grace period, answering any new one 503 and closing every connection after
its answer, then stops listening and stops the workers.
"""

import asyncio
import logging
import signal

from tornado.ioloop import PeriodicCallback

from ..app.gc_tuning import settle_garbage_collector
from ..app.logs import FLUSH_SECONDS
from .connection import HTTPServer
from .handlers import make_dispatcher

log = logging.getLogger("ufop_sdk.server")

MAX_HEADER_BYTES = 64 << 10


def header_limit(settings):
    """Bytes a request's line and headers may take: room for the largest cmd (UFOP_MAX_CMD_BYTES),
    percent-encoded (at worst three bytes each), so a cmd over the limit gets its JSON 414."""
    return MAX_HEADER_BYTES + 3 * settings.max_cmd_bytes


async def serve_until_stopped(server, host, port, *, background=(), extra_routes=()):
    """Serve `server` (a ServerState) until SIGTERM or SIGINT; returns once everything has stopped.

    `background` are coroutines to run alongside (the dev reloader), and
    `extra_routes` more paths to serve (see make_dispatcher). Raises
    OSError when the port cannot be bound.
    """
    dispatcher = make_dispatcher(server, extra_routes)
    http_server = HTTPServer(dispatcher, header_limit(server.settings), dispatcher.answer_malformed)
    await http_server.listen(port, host)
    settle_garbage_collector()
    stop = _stop_on_signals()
    timers = [PeriodicCallback(server.access_log.flush, FLUSH_SECONDS * 1000),
              PeriodicCallback(dispatcher.close_slow_clients, 1000)]
    for timer in timers:
        timer.start()
    tasks = [asyncio.ensure_future(coroutine) for coroutine in background]
    tasks.append(asyncio.ensure_future(server.executor.start()))
    log.info("serving on http://%s:%s with %s", host, port, type(server.executor).__name__)
    await stop.wait()
    await _drain(server, http_server, dispatcher)
    for task in tasks:
        task.cancel()
    dispatcher.close_all()
    await http_server.close_all_connections()
    await server.executor.close()
    server.fetcher.close()
    for timer in timers:
        timer.stop()
    server.access_log.flush()
    log.info("stopped")


def _stop_on_signals():
    """An Event set on SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def _drain(server, http_server, dispatcher):
    """Let the requests in flight finish within the grace period, then stop listening."""
    log.info("stopping: waiting up to %gs for %d requests in flight",
             server.settings.grace, server.in_flight)
    # Until they are done, new requests are answered 503 (and /health says "stopping"),
    # and every connection closes after its answer.
    http_server.no_keep_alive = True
    dispatcher.stop()
    try:
        await asyncio.wait_for(server.idle.wait(), server.settings.grace)
    except asyncio.TimeoutError:
        log.warning("grace period over with %d requests in flight", server.in_flight)
    http_server.stop()
