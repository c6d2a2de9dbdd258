"""The streaming Celery worker's lease folder: in the shared /tmp, only one the worker made itself is used."""

import os
import shutil

import pytest

from ufop_sdk.executors.celery import leases


@pytest.fixture
def folder():
    path = leases._folder(os.getpid())
    shutil.rmtree(path, ignore_errors=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_worker_makes_its_lease_folder_private(folder):
    leases.make_lease_folder()
    assert folder.stat().st_mode & 0o777 == 0o700


def test_a_lease_folder_others_may_write_to_is_refused(folder):
    folder.mkdir(mode=0o777)
    os.chmod(folder, 0o777)
    with pytest.raises(PermissionError, match="is not this worker's own"):
        leases.make_lease_folder()
