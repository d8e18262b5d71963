"""Bounded connections with real clients: Ice 3.7 (Debian's python3-zeroc-ice) hits the
per-address cap and is refused cleanly while an established client goes on; a connection that
never logs in is closed after the (test-sized) login deadline while a logged-in one stays;
urllib, requests and http.client against the HTTPS endpoint get 413 for an oversize body
(sent whole before reading) and 408 for a slow one. Time limits here are only upper bounds
for "it eventually happened"."""

import http.client
import json
import os
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import Glacier2
import Ice
import pytest

from conftest import binary, free_port
from test_ping import communicator, proxy

USERS = {"alice": "alicepw"}
EVENTUALLY = 30


def login_context():
    return {"omero.client.uuid": str(uuid.uuid4())}


def routed(server):
    endpoint = f"OMERO.Glacier2/router:tcp -h 127.0.0.1 -p {server.port('tcp')}"
    ic = communicator(**{"Ice.Default.Router": endpoint})
    router = Glacier2.RouterPrx.checkedCast(ic.stringToProxy(endpoint))
    return ic, router


def closed(connection):
    try:
        connection.throwException()
    except Ice.LocalException:
        return True
    return False


def wait_closed(connection):
    deadline = time.monotonic() + EVENTUALLY
    while time.monotonic() < deadline:
        if closed(connection):
            return True
        time.sleep(0.1)
    return False


def test_per_address_cap_refuses_cleanly_and_established_clients_go_on(make_server):
    s = make_server("[connection]\nmax_connections_per_address = 2\n", users=USERS)
    ic, router = routed(s)
    other = communicator()
    try:
        session = router.createSession("alice", USERS["alice"], login_context())
        session.ice_ping()
        second = proxy(other, s, "tcp").ice_connectionId("second")
        second.ice_ping()
        # The cap counts tcp and ssl together, and refuses before the TLS handshake.
        for transport in ("tcp", "ssl"):
            refused = proxy(other, s, transport).ice_connectionId(f"third-{transport}")
            with pytest.raises(Ice.SocketException):
                refused.ice_ping()
        session.ice_ping()
        router.ice_ping()
        second.ice_ping()
        assert "connection refused" in s.logs()

        # A freed place is taken again.
        second.ice_getConnection().close(Ice.ConnectionClose.Gracefully)
        deadline = time.monotonic() + EVENTUALLY
        while True:
            try:
                proxy(other, s, "tcp").ice_connectionId("again").ice_ping()
                break
            except Ice.SocketException:
                assert time.monotonic() < deadline, "the place was never freed"
                time.sleep(0.1)
        router.destroySession()
    finally:
        other.destroy()
        ic.destroy()


def test_a_connection_that_never_logs_in_is_closed_and_a_logged_in_one_stays(make_server):
    s = make_server("[connection]\nlogin_timeout_secs = 2\n", users=USERS)
    ic, router = routed(s)
    other = communicator()
    try:
        session = router.createSession("alice", USERS["alice"], login_context())
        logged_in = router.ice_getConnection()
        idle = proxy(other, s, "tcp")
        idle.ice_ping()
        assert wait_closed(idle.ice_getConnection()), "idle connection never closed"
        # The logged-in connection opened first, so its deadline has passed too.
        assert not closed(logged_in)
        session.ice_ping()
        assert router.ice_getConnection() == logged_in
        assert "no login before the deadline" in s.logs()
        router.destroySession()
    finally:
        other.destroy()
        ic.destroy()


class HttpsServer:
    """The binary with only the HTTPS endpoint on."""

    def __init__(self, config_text):
        self.dir = tempfile.TemporaryDirectory()
        self.port = free_port()
        config = os.path.join(self.dir.name, "config.toml")
        with open(config, "w") as f:
            f.write(config_text)
        self.log = open(os.path.join(self.dir.name, "server.log"), "w+")
        self.proc = subprocess.Popen(
            [str(binary()), "serve", "--data", os.path.join(self.dir.name, "data"),
             "--tcp", "off", "--ssl", "off", "--https", f"127.0.0.1:{self.port}",
             "--config", config],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        deadline = time.monotonic() + EVENTUALLY
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line or "listening on https" in line:
                break
        if "listening on https" not in (line or ""):
            self.stop()
            raise RuntimeError("the HTTPS endpoint did not start")

    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}/omero/session/create"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self.dir.cleanup()


@pytest.fixture(scope="module")
def https():
    s = HttpsServer("[http_limits]\nmax_body_bytes = 1024\nbody_read_timeout_secs = 1\nheader_read_timeout_secs = 1\n")
    yield s
    code = s.proc.poll()
    s.stop()
    assert code is None, "server died during the tests"


def unverified():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


JSON = {"Content-Type": "application/json", "Accept": "application/json"}
# One within what the server reads before answering, one far beyond it.
SIZES = [100 * 1024, 3 * 1024 * 1024]


@pytest.mark.parametrize("size", SIZES)
def test_urllib_gets_413_with_json_for_an_oversize_body(https, size):
    req = urllib.request.Request(https.url, data=b" " * size, headers=JSON, method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, context=unverified(), timeout=EVENTUALLY)
    assert e.value.code == 413
    assert "larger than 1024 bytes" in json.loads(e.value.read())["reason"]


@pytest.mark.parametrize("size", SIZES)
def test_requests_gets_413_with_json_for_an_oversize_body(https, size):
    requests = pytest.importorskip("requests", reason="requests is not installed")
    r = requests.post(https.url, data=b" " * size, headers=JSON, verify=False, timeout=EVENTUALLY)
    assert r.status_code == 413
    assert "larger than 1024 bytes" in r.json()["reason"]


def test_a_slow_body_gets_a_timely_408(https):
    conn = http.client.HTTPSConnection("127.0.0.1", https.port, context=unverified(),
                                       timeout=EVENTUALLY)
    try:
        conn.putrequest("POST", "/omero/session/create")
        for k, v in JSON.items():
            conn.putheader(k, v)
        conn.putheader("Content-Length", "100")
        conn.endheaders()
        conn.send(b'{"omeroHost"')
        # The answer comes by itself, with no more bytes sent; `timeout` bounds the wait.
        r = conn.getresponse()
        assert r.status == 408
        assert "did not arrive" in json.loads(r.read())["reason"]
    finally:
        conn.close()


def test_slow_headers_end_the_connection(https):
    raw = socket.create_connection(("127.0.0.1", https.port), timeout=EVENTUALLY)
    with unverified().wrap_socket(raw) as tls:
        tls.sendall(b"POST /omero/session/create HTTP/1.1\r\nHost: x\r\n")
        # Ended by the server's header deadline: EOF or a reset, never a hang.
        try:
            while tls.recv(4096):
                pass
        except (ConnectionError, ssl.SSLError):
            pass
