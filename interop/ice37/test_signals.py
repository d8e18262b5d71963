"""SIGTERM as soon as the server says it listens: it must shut down gracefully (exit 0)."""

from conftest import Server

ROUNDS = 40


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
