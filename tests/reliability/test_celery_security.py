"""Celery mode against hostile input: the worker's SSRF guard, and messages it must never deserialize
(pickle, YAML). Real redis-server, ``ufop-sdk worker`` and ``ufop-sdk serve``."""

import pickle
import time

import pytest
from harness import PROJECT, record
from hostile import SECRET, Exploit, assert_every_internal_address_refused, celery_message
from redis_support import Worker, wait_until
from support import Origin, Server

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def celery_mode(redis_server, tmp_path_factory):
    """serve in Celery mode, as deployed, and its worker: the worker fetches sources."""
    url, markers = redis_server.url(1), tmp_path_factory.mktemp("markers")
    env = {"UFOP_FETCH_TIMEOUT": "3", "MARKER_DIR": str(markers)}
    with Worker(PROJECT, url, concurrency=2, env=env) as worker, \
            Server(PROJECT, "--host", "127.0.0.1", env={"UFOP_BROKER_URL": url, **env}) as server:
        yield server, worker, markers


def test_the_worker_refuses_every_form_of_an_internal_address(celery_mode):
    with Origin() as origin:
        origin.serve("/secret", SECRET)
        assert_every_internal_address_refused(celery_mode[0], origin, "ssrf_refused_by_celery_workers")


def test_celery_workers_refuse_pickle_and_yaml_messages_and_keep_working(celery_mode, redis_server):
    server, worker, markers = celery_mode
    pickled, yamled = markers / "unpickled", markers / "unyamled"
    messages = {
        "pickle": celery_message("ufop.Echo", "application/x-python-serialize", pickle.dumps(
            ((Exploit(pickled),), {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}))),
        "yaml": celery_message("ufop.Echo", "application/x-yaml",
                               f"!!python/object/apply:os.system ['touch {yamled}']".encode()),
    }
    with redis_server.client(1) as client:
        for message in messages.values():
            client.lpush("ufop", message)
        wait_until(lambda: client.llen("ufop") == 0, 10, "the workers to take the messages", worker.output)
    wait_until(lambda: worker.output().count("Refusing to deserialize") >= 2, 10,
               "the worker to refuse both", worker.output)
    time.sleep(0.5)
    assert not pickled.exists() and not yamled.exists(), "a worker deserialized a message"
    assert worker.process.poll() is None
    assert server.post("t/echo", b"after the attack", timeout=15)[::2] == (200, b"after the attack")
    record("security", {"celery_hostile_messages": {kind: "refused (Refusing to deserialize), nothing ran"
                                                    for kind in messages}})
