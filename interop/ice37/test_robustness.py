"""Misbehaving raw sockets next to a real Ice 3.7 client: random bytes, absurd size headers
and many half-open connections (tcp, and ssl with the TLS handshake never started) are
closed by the server, or stall only themselves, while the Ice client keeps being answered.

Waits are hang guards only; nothing here asserts how fast the server is."""

import os
import select
import socket
import ssl
import struct
import threading
import time

import Ice
import pytest

from conftest import Server
from test_ping import communicator, proxy

VALIDATE = bytes.fromhex("49636550010001000300" "0e000000")
# Magic, protocol 1.0, protocol encoding 1.0; message type and the rest follow.
PREFIX = bytes.fromhex("4963655001000100")
# Hang guard for every wait on the server.
GUARD = 60
HALF_OPEN = 50


@pytest.fixture(scope="module")
def touchy():
    """A server that gives up on unfinished messages and TLS handshakes after 2 s, so the
    half-open tests see their sockets closed without waiting for the defaults."""
    s = Server("[connection]\nmessage_timeout_secs = 2\ntls_handshake_timeout_secs = 2\n")
    yield s
    code = s.proc.poll()
    s.stop()
    assert code is None, "server died during the tests"


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise AssertionError(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def raw(server, transport):
    """A validated connection: TCP (plus TLS for ssl) and the server's ValidateConnection."""
    sock = socket.create_connection(("127.0.0.1", server.port(transport)), timeout=GUARD)
    if transport == "ssl":
        sock = tls_context().wrap_socket(sock)
    assert recv_exact(sock, 14) == VALIDATE
    return sock


def closed_by_server(sock):
    """True once the server has closed the connection (EOF or reset); heartbeats it sends
    meanwhile are skipped. False if it is still open after the hang guard."""
    sock.settimeout(GUARD)
    try:
        while sock.recv(65536):
            pass
        return True
    except socket.timeout:
        return False
    except OSError:
        # A reset (we left bytes unread on its side) or an abrupt TLS end: closed too.
        return True


def header(message_type, size):
    return PREFIX + bytes([message_type, 0]) + struct.pack("<i", size)


class Pinger:
    """A real Ice 3.7 client pinging the router on its own connection from a thread."""

    def __init__(self, server, transport):
        self.ic = communicator()
        self.prx = proxy(self.ic, server, transport)
        self.prx.ice_ping()
        self.conn = self.prx.ice_getConnection()
        self.closed = threading.Event()
        self.conn.setCloseCallback(lambda c: self.closed.set())
        self.count = 0
        self.errors = []
        self.progress = threading.Condition()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping.is_set():
            try:
                self.prx.ice_ping()
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.errors.append(e)
                return
            with self.progress:
                self.count += 1
                self.progress.notify_all()

    def answered_more(self, n=20):
        """Waits (hang guard) until `n` more pings have been answered."""
        with self.progress:
            target = self.count + n
            return self.progress.wait_for(lambda: self.count >= target or self.errors, GUARD) \
                and not self.errors

    def finish(self):
        self.stopping.set()
        self.thread.join(GUARD)
        try:
            assert not self.thread.is_alive(), "the Ice client hung"
            assert self.errors == []
            assert not self.closed.is_set(), "the Ice client's connection was closed"
            same = self.prx.ice_getConnection()
            assert same is self.conn or same == self.conn
        finally:
            self.ic.destroy()


def fresh_client_answers(server, transport):
    """A new Ice client connects and is answered (the accept loop is not stuck)."""
    ic = communicator()
    try:
        prx = proxy(ic, server, transport)
        prx.ice_ping()
        return prx.ice_isA("::Glacier2::Router")
    finally:
        ic.destroy()


@pytest.mark.parametrize("transport", ["tcp", "ssl"])
def test_random_bytes_close_only_their_connection(server, transport):
    pinger = Pinger(server, transport)
    socks = []
    try:
        for i in range(10):
            sock = raw(server, transport)
            noise = bytearray(os.urandom(4096))
            noise[0] = ord("x")  # never the magic "IceP" by chance
            sock.sendall(bytes(noise))
            socks.append(sock)
        assert pinger.answered_more()
        for sock in socks:
            assert closed_by_server(sock)
        assert pinger.answered_more()
        assert fresh_client_answers(server, transport)
    finally:
        for sock in socks:
            sock.close()
        pinger.finish()


def test_random_bytes_instead_of_a_tls_handshake(server):
    pinger = Pinger(server, "ssl")
    socks = []
    try:
        for _ in range(10):
            sock = socket.create_connection(("127.0.0.1", server.ssl), timeout=GUARD)
            noise = bytearray(os.urandom(4096))
            noise[0] = 0x99  # not a TLS record type
            sock.sendall(bytes(noise))
            socks.append(sock)
        for sock in socks:
            assert closed_by_server(sock)
        assert pinger.answered_more()
        assert fresh_client_answers(server, "ssl")
    finally:
        for sock in socks:
            sock.close()
        pinger.finish()


# Sizes the header may not announce: 2 GiB - 1 and a negative size (above the 1 MiB
# default limit), just above that limit, and less than a header (spec ice-protocol §1.1, §1.6).
ABSURD = {
    "2GiB": 0x7FFFFFFF,
    "negative": -0x80000000,
    "1MiB+1": 1024 * 1024 + 1,
    "13": 13,
}


@pytest.mark.parametrize("size", ABSURD.values(), ids=ABSURD.keys())
@pytest.mark.parametrize("message_type", [0, 1], ids=["request", "batch"])
@pytest.mark.parametrize("transport", ["tcp", "ssl"])
def test_absurd_size_header_closes_the_connection(server, transport, message_type, size):
    pinger = Pinger(server, transport)
    sock = raw(server, transport)
    try:
        # Only the header: the server must refuse it without waiting for the body.
        sock.sendall(header(message_type, size))
        assert pinger.answered_more()
        assert closed_by_server(sock)
        assert pinger.answered_more()
    finally:
        sock.close()
        pinger.finish()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("transport", ["tcp", "ssl"])
def test_2gib_header_without_a_size_limit_reserves_no_memory(make_server, transport):
    # With no limit a 2 GiB message is allowed, but its memory must come with its bytes:
    # ten such headers must not make the server reserve 20 GiB (or 2 GiB).
    s = make_server("[connection]\nmax_message_size_kib = 0\nmessage_timeout_secs = 2\n")
    pinger = Pinger(s, transport)
    socks = []
    try:
        before = rss_kib(s.proc.pid)
        for _ in range(10):
            sock = raw(s, transport)
            sock.sendall(header(0, 0x7FFFFFFF) + b"\0" * 1000)
            socks.append(sock)
        assert pinger.answered_more()
        assert rss_kib(s.proc.pid) - before < 256 * 1024
        # Unfinished, so the message timeout ends them.
        for sock in socks:
            assert closed_by_server(sock)
        assert pinger.answered_more()
        assert s.proc.poll() is None
    finally:
        for sock in socks:
            sock.close()
        pinger.finish()


def half_open(server, transport, i):
    """Validated, then a message started and never finished: a partial header, or a whole
    header announcing 100 bytes followed by only part of them."""
    sock = raw(server, transport)
    if i % 2 == 0:
        sock.sendall(header(0, 100)[:7])
    else:
        sock.sendall(header(0, 100) + b"\x01\0\0\0")
    return sock


@pytest.mark.parametrize("transport", ["tcp", "ssl"])
def test_50_half_open_connections_stall_only_themselves(touchy, transport):
    pinger = Pinger(touchy, transport)
    socks = []
    try:
        for i in range(HALF_OPEN):
            socks.append(half_open(touchy, transport, i))
        assert pinger.answered_more()
        assert fresh_client_answers(touchy, transport)
        # The protocol gives an unfinished message no extra time: the server drops it
        # after its message timeout (2 s here).
        for sock in socks:
            assert closed_by_server(sock)
        assert pinger.answered_more()
        assert fresh_client_answers(touchy, transport)
    finally:
        for sock in socks:
            sock.close()
        pinger.finish()


TLS_RECORD_START = bytes.fromhex("1603010200")  # a handshake record of 512 bytes, no body


@pytest.mark.parametrize("start", [b"", TLS_RECORD_START[:3], TLS_RECORD_START],
                         ids=["nothing", "partial-record-header", "record-header"])
def test_50_tls_handshakes_never_finished_stall_only_themselves(touchy, start):
    pinger = Pinger(touchy, "ssl")
    socks = []
    try:
        for _ in range(HALF_OPEN):
            sock = socket.create_connection(("127.0.0.1", touchy.ssl), timeout=GUARD)
            if start:
                sock.sendall(start)
            socks.append(sock)
        assert pinger.answered_more()
        # New TLS clients are accepted and validated while the 50 handshakes hang.
        assert fresh_client_answers(touchy, "ssl")
        assert fresh_client_answers(touchy, "tcp")
        for sock in socks:
            assert closed_by_server(sock)
        assert pinger.answered_more()
    finally:
        for sock in socks:
            sock.close()
        pinger.finish()


def test_idle_connections_without_a_message_stay_open(touchy):
    # The contrast: validated connections that send nothing have no message in progress
    # and no idle timeout is configured, so the server keeps them (and keeps serving).
    # It may send them heartbeats, nothing else.
    socks = [raw(touchy, "tcp") for _ in range(10)]
    try:
        assert fresh_client_answers(touchy, "tcp")
        got = {sock: b"" for sock in socks}
        deadline = time.monotonic() + 4
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select(socks, [], [], left)
            for sock in readable:
                data = sock.recv(65536)
                assert data, "the server closed an idle connection"
                got[sock] += data
        for data in got.values():
            assert data == (VALIDATE * (len(data) // 14 + 1))[:len(data)]
        assert fresh_client_answers(touchy, "tcp")
    finally:
        for sock in socks:
            sock.close()


def test_misbehaving_sockets_and_ice_client_on_one_server(touchy):
    # Everything at once, the Ice client on tcp and on ssl.
    pingers = [Pinger(touchy, "tcp"), Pinger(touchy, "ssl")]
    socks = []
    try:
        for i in range(20):
            socks.append(half_open(touchy, "tcp", i))
            socks.append(half_open(touchy, "ssl", i))
            socks.append(socket.create_connection(("127.0.0.1", touchy.ssl), timeout=GUARD))
            s = raw(touchy, "tcp")
            s.sendall(b"x" * 100)
            socks.append(s)
            s = raw(touchy, "tcp")
            s.sendall(header(0, 0x7FFFFFFF))
            socks.append(s)
        for p in pingers:
            assert p.answered_more()
        for sock in socks:
            assert closed_by_server(sock)
        for p in pingers:
            assert p.answered_more()
    finally:
        for sock in socks:
            sock.close()
        for p in pingers:
            p.finish()
