"""OMERO Java's client sequence (SessionClientTest.java) over every transport, in both encodings.

The Java program runs all its scenarios in one JVM per transport and encoding; each scenario is
one test here, so a failure names the scenario and carries the program's reason.
"""
import re
import subprocess

import pytest

from conftest import USERS, Server, serve_supports

SCENARIOS = [
    "login_with_agent_and_client_uuid",
    "callback_adapter_through_router",
    "event_context",
    "keep_alive",
    "security_context",
    "session_model_object",
    "inputs_round_trip_rtypes",
    "robject_holding_an_image",
    "detach_drop_connection_rejoin",
    "lost_connection_in_close_mode_ends_session",
    "close_session_then_join_refused",
    "wrong_password_refused",
    "join_with_username_not_uuid_refused",
]
TRANSPORTS = ["tcp", "ssl", "ws", "wss"]
ENCODINGS = ["1.0", "1.1"]
_runs = {}


def java_run(classpath, transport, encoding):
    """Runs the Java program once per transport and encoding against a server of its own: the
    login throttle counts every refused login from 127.0.0.1, and the scenarios refuse a few on
    purpose each time."""
    key = (transport, encoding)
    if key not in _runs:
        server = Server()
        try:
            cmd = ["java", "-cp", classpath, "SessionClientTest", transport, "127.0.0.1",
                   str(server.ports[transport]), encoding, "alice", USERS["alice"], "bob", USERS["bob"]]
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            log = server.log_text()
        finally:
            server.stop()
        results = {}
        for line in res.stdout.splitlines():
            m = re.match(r"^(PASS|FAIL) (\w+)(?:: (.*))?$", line)
            if m:
                results[m.group(2)] = (m.group(1), m.group(3) or "")
        _runs[key] = (res, results, log)
    return _runs[key]


def skip_unless_served(transport):
    if transport.startswith("ws") and not serve_supports("--ws"):
        pytest.skip(f"this omero-sessiond has no {transport} listener (serve --{transport})")


def params():
    for transport in TRANSPORTS:
        for encoding in ENCODINGS:
            for name in SCENARIOS:
                yield pytest.param(transport, encoding, name, id=f"{transport}-{encoding}-{name}")


@pytest.mark.parametrize("transport,encoding,name", params())
def test_java_client(java_classpath, transport, encoding, name):
    skip_unless_served(transport)
    res, results, log = java_run(java_classpath, transport, encoding)
    if name not in results:
        pytest.fail(f"no result for {name} (exit {res.returncode}):\n{res.stdout}\n{res.stderr[-4000:]}")
    status, reason = results[name]
    assert status == "PASS", f"{reason}\n--- server log tail ---\n{log}"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_java_program_runs_exactly_these_scenarios(java_classpath, transport):
    skip_unless_served(transport)
    res, results, _ = java_run(java_classpath, transport, "1.1")
    assert sorted(results) == sorted(SCENARIOS), res.stdout
    passed = sum(1 for s, _ in results.values() if s == "PASS")
    assert f"{passed} passed, {len(results) - passed} failed" in res.stdout
