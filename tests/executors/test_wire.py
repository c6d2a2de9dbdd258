"""A Job and a Reply cross both executors' wires whole: each field, present and future, arrives as sent.

The samples are drawn from the classes' own fields, so a field added to Job
or Reply is checked here as soon as it has a sample (and the test says so
until it does). End to end, every field reaching the processor in both modes
is test_celery.py's test_answers_are_the_same_as_embedded_mode (Describe).
"""

import socket

import attrs
import msgpack
import pytest
from kombu.serialization import dumps, loads

from ufop_sdk.app.jobs import Job, Reply
from ufop_sdk.executors.celery.task import task_message
from ufop_sdk.executors.local import protocol

# A value for each field, unlike any default, so a field left out or swapped shows.
SAMPLES = {
    "cmd": "myufop/thumb/200x100", "processor": "Thumbnail", "groups": {"width": "200", "height": "100"},
    "timeout": 12.5, "request_id": "req-7f", "declared_content_type": "image/png; q=1",
    "url": "https://example.com/a.png", "status": 201, "content_type": "image/webp",
    "headers": {"X-Thumb": "yes"},
}


def sample(cls, **beside):
    missing = [name for name in cls.WIRE if name not in SAMPLES]
    assert not missing, f"give {cls.__name__}'s new field(s) {missing} a sample in SAMPLES"
    return cls(**{name: SAMPLES[name] for name in cls.WIRE}, **beside)


def through_a_local_frame(header, body):
    """`header` and `body` sent as the pool sends a frame and received as a worker receives it."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        protocol.send(ours, header, body)
        received_header, received_body, _ = protocol.FrameReceiver(theirs).next()
    return received_header, received_body


def test_every_field_but_the_input_and_the_schedulers_concurrency_travels():
    """A worker goes by the frame's id, not by a processor's concurrency, which only the server's
    scheduler reads."""
    assert set(Job.WIRE) == {field.name for field in attrs.fields(Job)} - {"body", "file", "concurrency"}
    assert set(Reply.WIRE) == {field.name for field in attrs.fields(Reply)} - {
        "body", "queued_seconds", "processing_seconds"}


def test_a_job_crosses_the_local_frame_whole():
    job = sample(Job, body=b"\x89PNG input")
    header, body = through_a_local_frame(protocol.job_header(job), job.body)
    assert (header["op"], header["fd"]) == ("run", False)
    assert Job.from_wire(header, body=body) == job


def test_an_async_jobs_frame_and_its_answers_carry_its_id():
    job = sample(Job, body=b"input")
    header, body = through_a_local_frame(protocol.async_job_header(job, 7), job.body)
    assert (header["op"], header["id"], Job.from_wire(header, body=body)) == ("run", 7, job)
    reply = sample(Reply, body=b"answer")
    header, body = through_a_local_frame(protocol.async_reply_header(reply, 7), reply.body)
    assert (header["id"], Reply.from_wire(header, body=body)) == (7, reply)
    assert through_a_local_frame(protocol.cancel_header(7), b"")[0] == {"op": "cancel", "id": 7}


def test_a_job_crosses_the_celery_message_whole():
    job = sample(Job)
    sent = task_message(job, "reply-1", "ufop:replies:s1")
    content_type, encoding, payload = dumps(sent, serializer="msgpack")
    message = loads(payload, content_type, encoding, accept=[content_type])  # msgpack, as the worker accepts
    assert (message["reply_id"], message["reply_to"]) == ("reply-1", "ufop:replies:s1")
    assert Job.from_wire(message) == job


def test_a_reply_crosses_the_local_frame_whole():
    reply = sample(Reply, body=b"\x00answer")
    header, body = through_a_local_frame(protocol.reply_header(reply), reply.body)
    assert Reply.from_wire(header, body=body) == reply


def test_a_reply_crosses_the_celery_reply_list_whole():
    reply = sample(Reply, body=b"answer")
    packed = msgpack.packb({**reply.to_wire(), "body": reply.body}, use_bin_type=True)  # as task.py pushes it
    item = msgpack.unpackb(packed, raw=False)  # as the server's reader takes it
    assert Reply.from_wire(item, body=item["body"]) == reply


def test_a_newer_senders_extra_keys_are_ignored_and_a_missing_field_is_refused():
    wire = sample(Job).to_wire()
    assert Job.from_wire({**wire, "trace_id": "t-1"}) == sample(Job)
    del wire["processor"]
    with pytest.raises(KeyError, match="processor"):
        Job.from_wire(wire)
