"""SIGTERM as soon as the server says it listens: it must shut down gracefully (exit 0)."""

import pytest

from conftest import Server

ROUNDS = 40


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "server bug: src/main.rs registers its SIGTERM handler (shutdown_signal) only after the "
    "'listening on tcp/ssl' lines are printed and the listeners accept, so a SIGTERM in that "
    "window kills the process by the default disposition (exit -15, no graceful close); "
    "seen in about 1 of 5 starts, and it makes test_ping::test_sigterm_closes_connections_"
    "gracefully flaky under load. Install the handler before binding."))
def test_sigterm_right_after_listening_is_graceful():
    codes = []
    for _ in range(ROUNDS):
        s = Server()
        try:
            s.proc.terminate()
            codes.append(s.proc.wait(timeout=30))
        finally:
            s.stop()
    assert codes == [0] * ROUNDS
