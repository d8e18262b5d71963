"""A login storm from one address must not grow the server's memory nor stall open sessions.

Every argon2id check needs 12 MiB. The server runs at most a few at once on long-lived
workers that reuse their memory; the rest are refused as throttled (the failure is reserved
before the hash) or as busy (the bounded queue is full or its deadline passed).
"""
import threading
from concurrent.futures import ThreadPoolExecutor

import Glacier2
import Ice
import pytest

import omero  # noqa: F401

from conftest import PASSWORDS, make_server

FLOOD = 200
MIB = 1024 * 1024
# Generous: two idle workers hold 12 MiB each; a storm without admission grew by ~1 GiB.
MAX_FLOOD_GROWTH = 300 * MIB
MAX_SEQUENTIAL_GROWTH = 100 * MIB
THROTTLED = "too many failed logins"
BUSY = "server busy, retry"


def rss(srv):
    with open("/proc/%d/status" % srv.proc.pid) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for the server process")


@pytest.fixture
def ice():
    props = Ice.createProperties()
    # Replies of 200 parallel calls arrive on this pool; a hung server fails the test
    # through the invocation timeout instead of hanging it.
    props.setProperty("Ice.ThreadPool.Client.Size", "4")
    props.setProperty("Ice.ThreadPool.Client.SizeMax", "16")
    data = Ice.InitializationData()
    data.properties = props
    communicator = Ice.initialize(data)
    yield communicator
    communicator.destroy()


def router(communicator, srv, connection):
    """The Glacier2 router on its own connection: one login attempt per connection."""
    prx = communicator.stringToProxy(
        "OMERO.Glacier2/router:tcp -h 127.0.0.1 -p %d" % srv.tcp_port)
    prx = prx.ice_connectionId("flood-%d" % connection).ice_invocationTimeout(300000)
    return Glacier2.RouterPrx.uncheckedCast(prx)


def attempt(communicator, srv, n):
    """One wrong-password createSession; returns the refusal reason."""
    try:
        router(communicator, srv, n).createSession("alice", "wrong-%d" % n)
    except Glacier2.PermissionDeniedException as e:
        return e.reason
    raise AssertionError("a wrong password was accepted")


class Busy:
    """A logged-in client calling the server over and over until told to stop."""

    def __init__(self, srv):
        self.client = srv.client(secure=False)
        sf = self.client.createSession("bob", PASSWORDS["bob"])
        self.admin = sf.getAdminService()
        self.stop = threading.Event()
        self.calls = 0
        self.errors = []
        self.thread = threading.Thread(target=self.run)

    def run(self):
        while not self.stop.is_set():
            try:
                ec = self.admin.getEventContext()
                assert ec.userName == "bob"
                self.calls += 1
            except Exception as e:  # every failure is reported by the test
                self.errors.append(repr(e))
                return

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=300)
        self.client.__del__()


def flood(srv, communicator):
    """Fires FLOOD wrong-password logins at once while bob keeps working; returns the
    refusal reasons and the RSS growth over the idle server."""
    with Busy(srv) as bob:
        idle = rss(srv)
        with ThreadPoolExecutor(max_workers=FLOOD) as pool:
            reasons = list(pool.map(lambda n: attempt(communicator, srv, n), range(FLOOD)))
        grown = rss(srv) - idle
        calls_during_flood = bob.calls
    print("flood: idle %d MiB, grown %d MiB, %d calls of the open session, refusals %s" % (
        idle // MIB, grown // MIB, calls_during_flood,
        sorted({r[:60]: reasons.count(r) for r in reasons}.items())))
    assert not bob.errors, bob.errors
    assert calls_during_flood > 0
    assert all("wrong-" not in r for r in reasons), "a password reached a refusal"
    return reasons, grown


def test_flood_of_wrong_passwords_is_mostly_throttled(ice):
    srv = make_server()
    try:
        reasons, grown = flood(srv, ice)
        refused_early = [r for r in reasons if THROTTLED in r or BUSY in r]
        checked = [r for r in reasons if r == "Password check failed for 'alice': []"]
        assert len(refused_early) + len(checked) == FLOOD, set(reasons)
        # The user's five free failures (and the address's twenty) are reserved before any
        # hash runs, so nearly every attempt is refused without hashing.
        assert len(checked) <= 20, len(checked)
        assert grown < MAX_FLOOD_GROWTH, "server grew by %d MiB" % (grown // MIB)
    finally:
        srv.stop()


def test_flood_without_throttle_is_bounded_by_the_password_workers(ice):
    srv = make_server(
        "[auth]\nmax_concurrent_password_checks = 1\npassword_check_queue = 4\n"
        "password_check_max_wait_ms = 2000\n"
        "free_failures_per_user = 100000\nfree_failures_per_addr = 100000\n")
    try:
        reasons, grown = flood(srv, ice)
        busy = [r for r in reasons if BUSY in r]
        checked = [r for r in reasons if r == "Password check failed for 'alice': []"]
        assert len(busy) + len(checked) == FLOOD, set(reasons)
        assert busy, "a queue of four never filled under 200 parallel logins"
        assert checked, "no login was checked at all"
        assert grown < MAX_FLOOD_GROWTH, "server grew by %d MiB" % (grown // MIB)
    finally:
        srv.stop()


def test_flood_that_waits_its_turn_keeps_memory_flat(ice):
    """Every one of the 200 checks runs (queue and deadline large enough), two at a time."""
    srv = make_server(
        "[auth]\nmax_concurrent_password_checks = 2\npassword_check_queue = 1000\n"
        "password_check_max_wait_ms = 600000\n"
        "free_failures_per_user = 100000\nfree_failures_per_addr = 100000\n")
    try:
        reasons, grown = flood(srv, ice)
        assert set(reasons) == {"Password check failed for 'alice': []"}
        assert grown < MAX_FLOOD_GROWTH, "server grew by %d MiB" % (grown // MIB)
    finally:
        srv.stop()


def test_sequential_good_logins_keep_memory_flat():
    srv = make_server()
    try:
        def login_once():
            c = srv.client(secure=False)
            try:
                c.createSession("carol", PASSWORDS["carol"])
                c.closeSession()
            finally:
                c.__del__()

        login_once()
        idle = rss(srv)
        for _ in range(20):
            login_once()
        grown = rss(srv) - idle
        print("sequential logins: idle %d MiB, grown %d MiB" % (idle // MIB, grown // MIB))
        assert grown < MAX_SEQUENTIAL_GROWTH, "server grew by %d MiB" % (grown // MIB)
    finally:
        srv.stop()
