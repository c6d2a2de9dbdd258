"""The test helpers themselves: a Server fails its test on a traceback it did not expect."""

import pytest
from support import PROJECTS, Server

SERVER = PROJECTS / "server"


def test_a_server_that_logs_a_traceback_fails_the_test():
    with pytest.raises(AssertionError, match=r"the server logged a traceback; .*expect_traceback"):
        with Server(SERVER, workers=1) as server:
            assert server.post("t/fail/crash")[0] == 500


def test_a_server_expected_to_log_a_traceback_passes():
    with Server(SERVER, workers=1, expect_traceback=True) as server:
        assert server.post("t/fail/crash")[0] == 500


@pytest.mark.expect_traceback
def test_a_test_marked_expect_traceback_may_make_a_server_log_one():
    with Server(SERVER, workers=1) as server:
        assert server.post("t/fail/crash")[0] == 500


def test_a_shared_server_blames_only_the_test_during_which_the_traceback_was_printed():
    with Server(SERVER, workers=1) as server:
        assert server.post("t/fail/crash")[0] == 500
        with pytest.raises(AssertionError, match="RuntimeError: secret detail"):
            server.check_tracebacks()  # what conftest does after each test
        assert server.post("t/echo", b"fine")[0] == 200
        server.check_tracebacks()
