"""A file or streamed answer in Celery mode: chunks through Redis, paced by the client, both sides.

The worker's reply item says ``"stream": {"length": N or None, "key": ...,
"credit": ..., "answered": ...}``; then the worker RPUSHes the answer on the ``key`` list in
chunks of about a MiB, each tagged ``d``, and ends with one tagged ``e``
(msgpack ``{"error": None or why it was cut off, "bytes": n}``). The
server BLPOPs them (`RedisStream`, on a Redis client of its own: a BLPOP
holds its connection) and hands them to the HTTP writer.

Backpressure: at most WINDOW bytes are pushed and not yet taken by the
client. The server RPUSHes what its client took, by QUANTUM, on the
``credit`` list; past the window the worker BLPOPs it. So Redis holds a few
MiB of an answer, whatever its size, and a slow client paces the producer.
A client that leaves puts ``cancel`` on the credit list: the worker sees it
between chunks (or while it waits for credit), stops, and deletes both keys.

A stream can outlive the broker's visibility timeout (its task is
acknowledged only when it ends), and then be delivered again: the worker
keeps the ``answered`` key (names.py) alive while it streams, and a delivery
that finds it runs nothing.

Time: the task's time limits (the processor's timeout) cover process().
The stream then lasts as long as it makes progress, however slow its
client: while it streams the worker holds a lease (leases.py) that the
pool honours instead of the time limits. Each chunk must come from the
producer within the processor's timeout, else the worker is killed as past
its hard limit; a worker that gets no credit for UFOP_WRITE_TIMEOUT +
CREDIT_MARGIN seconds (its server died, or stopped reading) stops and
deletes its keys; a server that gets no chunk for the processor's timeout
plus margins cuts the answer off. Nothing waits forever.
"""

import asyncio
import logging
import time

import attrs
import msgpack
import redis
import redis.asyncio
from celery.exceptions import SoftTimeLimitExceeded
from redis._parsers import Encoder
from redis.connection import PythonRespSerializer

from ...app.bodies import CHUNK, AnswerCut
from .leases import Lease
from .names import KEY_TTL

log = logging.getLogger("ufop_sdk.celery")

WINDOW = 4 << 20  # bytes pushed and not yet taken by the client
QUANTUM = 1 << 20  # the server gives credit back by this much
CANCEL = b"cancel"
CANCEL_TTL = 60  # a cancel that crosses the end is left for nobody: it goes soon
CREDIT_MARGIN = 10.0  # past the server's UFOP_WRITE_TIMEOUT, before a worker gives up on credit
POLL_SECONDS = 2  # the longest single BLPOP, for a chunk or for credit
DRAIN = 1000  # credit items a worker takes at once: far more than can be in flight
DATA, END = b"d", b"e"
PACKER_CUTOFF = 6000  # redis-py's: a value longer than this is sent apart, not copied into the command


class Cancelled(Exception):
    """The server cancelled the stream: its client left."""


class Stalled(Exception):
    """No credit came back in time: the server died or stopped reading."""


class _AnswerTooLarge(Exception):
    """The answer grew past UFOP_MAX_OUTPUT_BYTES."""


# The worker's side

def stream_fields(names, reply_id, body):
    """The reply item's ``stream`` map for `body` (a FileBody or StreamBody)."""
    return {"length": getattr(body, "length", None), "key": names.chunks(reply_id),
            "credit": names.credit(reply_id), "answered": names.answered(reply_id)}


def stream_client(url):
    """A worker's Redis client for pushing chunks. It packs commands with redis-py's own packer,
    which sends a large value as it is: hiredis's copies it, slowly (measured: 2.3 ms of CPU a
    MiB pushed, against 0.6, the worker's share of a Celery file answer's throughput)."""
    encode = Encoder("utf-8", "strict", False).encode
    return redis.Redis.from_url(url, command_packer=PythonRespSerializer(PACKER_CUTOFF, encode))


def stream_reader(url, connect_seconds):
    """The server's Redis client for streams (an asyncio one): each BLPOP returns within POLL_SECONDS,
    and a chunk is read in one go rather than by 64 KiB."""
    return redis.asyncio.Redis.from_url(url, socket_connect_timeout=connect_seconds,
                                        socket_timeout=POLL_SECONDS + 2, socket_read_size=CHUNK)


@attrs.frozen
class Pace:
    """How long a stream may wait: for its producer's next chunk, and for credit."""

    chunk_seconds: float
    credit_seconds: float

    @classmethod
    def of(cls, timeout, settings):
        """A chunk within the processor's `timeout`; credit within UFOP_WRITE_TIMEOUT and a margin."""
        return cls(timeout, settings.write_timeout + CREDIT_MARGIN)


def send_stream(client, fields, body, limit, pace):
    """Push `body`'s chunks on ``fields["key"]``, paced by credit, then the end marker.

    Returns the bytes pushed. On a cancel or a stall, pushes nothing more and
    deletes both keys. The caller closes `body` afterwards (the producer stops).
    """
    sent, error = 0, None
    lease = Lease()
    try:
        sent = _push_chunks(client, fields, body, limit, pace, lease)
    except (Cancelled, Stalled) as exc:
        log.info("a streamed answer stopped after its server %s",
                 "cancelled it" if isinstance(exc, Cancelled) else "gave no credit in time")
        client.delete(fields["key"], fields["credit"])
        return sent
    except _AnswerTooLarge as exc:
        error = str(exc)
    except SoftTimeLimitExceeded:  # it came just as process() returned, before the lease was taken
        error = "the processor ran past its timeout as its answer began to be sent"
    except redis.RedisError as exc:  # nothing more can be pushed: the server cuts the answer off
        log.error("a streamed answer stopped: the broker failed: %s", exc)
        return sent
    except Exception as exc:  # noqa: BLE001 - the processor's iterator (or its file) failed mid-answer
        log.exception("the streamed answer failed")
        error = f"the streamed answer failed: {type(exc).__name__}: {exc}"
    finally:
        lease.end()
    _push_end(client, fields, error, sent)
    return sent


def _push_chunks(client, fields, body, limit, pace, lease):
    credit, sent = WINDOW, 0
    lease.hold(pace.chunk_seconds)
    for chunk in _pieces(body):
        sent += len(chunk)
        if sent > limit:
            raise _AnswerTooLarge(f"the answer grew past the limit of {limit} bytes (UFOP_MAX_OUTPUT_BYTES)")
        if credit <= 0:
            lease.hold(pace.credit_seconds + 1)
            credit += _await_credit(client, fields, pace.credit_seconds)
        told = (client.pipeline(transaction=False)
                .rpush(fields["key"], DATA + chunk).expire(fields["key"], KEY_TTL)
                .lpop(fields["credit"], DRAIN).expire(fields["answered"], KEY_TTL).execute())[2]
        credit += _credit_of(told or ()) - len(chunk)
        lease.hold(pace.chunk_seconds)
    return sent


def _pieces(body):
    """`body`'s chunks, none over CHUNK (a generator may yield more at once)."""
    for chunk in body.chunks(CHUNK):
        if len(chunk) <= CHUNK:
            yield chunk
            continue
        view = memoryview(chunk)
        for start in range(0, len(chunk), CHUNK):
            yield view[start:start + CHUNK]


def _await_credit(client, fields, seconds):
    """The credit the server gives next, waiting up to `seconds`; raises Cancelled or Stalled."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        _, item = (client.pipeline(transaction=False).expire(fields["answered"], KEY_TTL)
                   .blpop([fields["credit"]], timeout=_poll(left)).execute())
        if item is not None:
            return _credit_of([item[1]])
    raise Stalled()


def _poll(left):
    """One BLPOP's timeout: short enough for any client's socket timeout (redis-py's default is 5 s)."""
    return max(0.1, min(POLL_SECONDS, left))


def _credit_of(items):
    """The bytes that credit `items` give; raises Cancelled if one is a cancel."""
    if CANCEL in items:
        raise Cancelled()
    return sum(int(item) for item in items)


def _push_end(client, fields, error, sent):
    end = END + msgpack.packb({"error": error, "bytes": sent})
    client.pipeline(transaction=False).rpush(fields["key"], end).expire(fields["key"], KEY_TTL).execute()


# The server's side

class RedisStream:
    """The chunks of one answer a worker streams through Redis, for the HTTP writer (http/streamed.py).

    `client` is a redis.asyncio client of its own (a BLPOP holds its
    connection); `stall` the seconds a chunk may take to come before the
    answer is cut off.
    """

    def __init__(self, client, fields, stall):
        self.client = client
        self.key, self.credit = fields["key"], fields["credit"]
        self.length = fields["length"]
        self.stall = stall
        self.untold = 0  # taken by the client, not yet told to the worker
        self.ended = False
        self.cancelling = None

    async def next(self):
        """The next chunk; None at the end. Raises AnswerCut if the answer was cut off."""
        item = await self._pop()
        if item[:1] == DATA:
            return item[1:]
        self.ended = True
        await self._forget_credit()
        error = msgpack.unpackb(item[1:])["error"]
        if error:
            raise AnswerCut(error)
        return None

    def taken(self, nbytes):
        self.untold += nbytes

    def close(self):
        """The writer is done with it: if the worker still streams, its client left: cancel it."""
        if not self.ended:
            self.ended = True
            self.cancelling = asyncio.ensure_future(self._cancel())

    async def _pop(self):
        """The next item, credit going out in the same round trip once QUANTUM bytes were taken."""
        deadline = time.monotonic() + self.stall
        while (left := deadline - time.monotonic()) > 0:
            pipeline = self.client.pipeline(transaction=False)
            if self.untold >= QUANTUM:
                pipeline.rpush(self.credit, self.untold).expire(self.credit, KEY_TTL)
                self.untold = 0
            try:
                item = (await pipeline.blpop([self.key], timeout=_poll(left)).execute())[-1]
            except (redis.RedisError, OSError) as exc:
                raise AnswerCut(f"the broker failed while the answer was streamed: {exc}") from None
            if item is not None:
                return item[1]
        raise AnswerCut(f"no chunk of the answer came from the worker within {self.stall:g}s")

    async def _forget_credit(self):
        """After the end, credit given as the worker ended would stay (until its TTL): delete it."""
        try:
            await self.client.delete(self.credit)
        except (redis.RedisError, OSError) as exc:
            log.warning("could not delete a streamed answer's credit key (it expires): %s", exc)

    async def _cancel(self):
        try:
            await (self.client.pipeline(transaction=False).delete(self.key)
                   .rpush(self.credit, CANCEL).expire(self.credit, CANCEL_TTL).execute())
        except (redis.RedisError, OSError) as exc:  # the worker stops when it gets no credit
            log.warning("could not cancel a streamed answer: %s", exc)


async def cancel_stream(client, fields):
    """Cancel a stream nobody will read (its request timed out, or its client left first)."""
    await RedisStream(client, fields, 0)._cancel()
