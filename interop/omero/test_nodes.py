"""Two omero-sessiond nodes on one PostgreSQL database, driven by unchanged omero-py.

Needs the throw-away cluster of interop/pg: interop/run starts it and exports
OMERO_TEST_POSTGRES (plus OMERO_TEST_PGDATA and OMERO_TEST_PGBIN, with which the last test
stops and restarts the database). Without it these tests fail; they never pass silently.
By hand: interop/pg run env OMERO_SESSIOND_BIN=... VENV/bin/python -m pytest interop/omero/test_nodes.py
"""
import os
import signal
import subprocess
import tempfile
import time
import uuid as uuidlib
from pathlib import Path

import Glacier2
import Ice
import omero
import omero.rtypes
import pytest

from conftest import BIN, ENCODING, PASSWORDS, free_port, wait_for_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
# The idle timeout of the expiry test; the others keep the default, so nothing idles out
# while a slow machine stops and starts the database.
IDLE_MS = 3000
# Every test makes its users in its own database; the nodes share it.
USERS = ("alice", "bob")


def cluster():
    url = os.environ.get("OMERO_TEST_POSTGRES")
    bindir = os.environ.get("OMERO_TEST_PGBIN")
    if not url or not bindir:
        pytest.fail("needs PostgreSQL: interop/run starts one (OMERO_TEST_POSTGRES, "
                    "OMERO_TEST_PGBIN); by hand, run pytest under `interop/pg run`")
    return url, Path(bindir)


def fresh_database():
    """A new database in the test cluster; returns its URL."""
    url, bindir = cluster()
    name = "nodes_%s" % uuidlib.uuid4().hex
    subprocess.run([str(bindir / "psql"), url, "-q", "-c", "CREATE DATABASE %s" % name],
                   check=True, capture_output=True, timeout=60)
    return url.rsplit("/", 1)[0] + "/" + name


def pg_ctl(action):
    subprocess.run([str(ROOT / "interop" / "pg"), "ctl", action], check=True, timeout=120)


class Node:
    """One omero-sessiond process on the shared database, with its own data directory."""

    def __init__(self, database, name, idle_ms):
        self.database = database
        work = Path(tempfile.mkdtemp(prefix="omero-sessiond-%s-" % name))
        self.data = work / "data"
        self.tcp_port, self.ssl_port, self.https_port = free_port(), free_port(), free_port()
        config = work / "config.toml"
        config.write_text("[sessions]\nreaper_interval_ms = 200\n"
                          + ("time_to_idle_ms = %d\n" % idle_ms if idle_ms else ""))
        self.log_path = work / "server.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--config", str(config), "--data", str(self.data),
             "--database", database,
             "--tcp", "127.0.0.1:%d" % self.tcp_port, "--ssl", "127.0.0.1:%d" % self.ssl_port,
             "--https", "127.0.0.1:%d" % self.https_port],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for_port(self.ssl_port, self.proc)

    def client(self, **props):
        pmap = {"Ice.Default.EncodingVersion": ENCODING} if ENCODING == "1.0" else {}
        # A hang becomes a failure instead of a stuck suite.
        pmap["Ice.Default.InvocationTimeout"] = "60000"
        pmap.update(props)
        return omero.client(host="127.0.0.1", port=self.ssl_port, pmap=pmap)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def start_nodes():
    """start_nodes(idle_ms=None) -> (a, b): two nodes on a fresh database with two users."""
    made = []

    def start(idle_ms=None):
        a, b = make_nodes(idle_ms)
        made.extend((a, b))
        return a, b

    yield start
    for node in made:
        node.stop()


@pytest.fixture
def nodes(start_nodes):
    return start_nodes()


def add_user(database, name):
    res = subprocess.run(
        [str(BIN), "user", "add", name, "--password-stdin", "--data",
         tempfile.mkdtemp(prefix="omero-sessiond-cli-"), "--database", database],
        input=PASSWORDS[name], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


def make_nodes(idle_ms):
    database = fresh_database()
    for name in USERS:
        add_user(database, name)
    a = Node(database, "a", idle_ms)
    try:
        return a, Node(database, "b", idle_ms)
    except Exception:
        a.stop()
        raise


def login(node, clients, user="alice"):
    c = node.client()
    clients.append(c)
    return c, c.createSession(user, PASSWORDS[user])


def join(node, clients, uuid):
    c = node.client()
    clients.append(c)
    return c, c.joinSession(uuid)


def refcount(sf, uuid):
    return sf.getSessionService().getReferenceCount(uuid)


def bare_session(uuid):
    s = omero.model.SessionI()
    s.uuid = omero.rtypes.rstring(uuid)
    return s


def refused(node, uuid):
    """True once a join of uuid on node is refused."""
    c = node.client()
    try:
        c.joinSession(uuid)
    except (Glacier2.PermissionDeniedException, Glacier2.CannotCreateSessionException):
        return True
    finally:
        c.__del__()
    return False


def works(sf):
    try:
        sf.getAdminService().getEventContext()
        return True
    except (Ice.Exception, omero.ServerError) as e:
        print("call failed: %r" % (e,))
        return False


def test_made_on_a_joined_on_b_after_a_is_killed(nodes, clients):
    a, b = nodes
    ca, sfa = login(a, clients)
    uuid = ca.getSessionId()
    sfa.getSessionService().setInput(uuid, "k", omero.rtypes.rstring("v"))
    sfa.detachOnDestroy()
    a.kill9()
    cb, sfb = join(b, clients, uuid)
    assert cb.getSessionId() == uuid
    assert sfb.getSessionService().getInput(uuid, "k").getValue() == "v"
    assert sfb.getAdminService().getEventContext().userName == "alice"
    cb.killSession()
    assert refused(b, uuid)


def test_a_user_added_elsewhere_logs_in_on_every_node(nodes, clients):
    a, b = nodes
    add_user(a.database, "carol")  # the command line on a third machine, say
    for node in (a, b):
        c, sf = login(node, clients, user="carol")
        assert sf.getAdminService().getEventContext().userName == "carol"


def test_reference_counts_are_global(nodes, clients):
    a, b = nodes
    ca, sfa = login(a, clients)
    uuid = ca.getSessionId()
    cb1, sfb1 = join(b, clients, uuid)
    cb2, sfb2 = join(b, clients, uuid)
    assert refcount(sfb1, uuid) == 3
    assert wait_until(lambda: refcount(sfa, uuid) == 3), refcount(sfa, uuid)
    cb2.closeSession()  # close mode, two references remain
    assert wait_until(lambda: refcount(sfa, uuid) == 2), refcount(sfa, uuid)
    assert refcount(sfb1, uuid) == 2


def test_closed_on_b_is_refused_on_a(nodes, clients):
    a, b = nodes
    ca, sfa = login(a, clients)
    uuid = ca.getSessionId()
    cb, sfb = join(b, clients, uuid)
    assert works(sfa)
    closed_at = time.monotonic()
    cb.killSession()
    # A hears of the close by notification; polled, never slept on as an assertion.
    assert wait_until(lambda: not works(sfa), timeout=30, step=0.05)
    print("closed on B, refused on A after %.3f s" % (time.monotonic() - closed_at))
    assert refused(a, uuid)


def sessions_cli(database, *args):
    res = subprocess.run(
        [str(BIN), "sessions", *args, "--data",
         tempfile.mkdtemp(prefix="omero-sessiond-cli-"), "--database", database],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_the_sessions_command_lists_and_closes_on_the_shared_database(nodes, clients):
    a, b = nodes
    ca, sfa = login(a, clients)
    uuid = ca.getSessionId()
    cb, sfb = join(b, clients, uuid)
    listed = sessions_cli(a.database, "list", "--user", "alice")
    line = next(l for l in listed.splitlines() if uuid[:8] in l)
    assert "alice" in line and uuid not in listed
    sessions_cli(a.database, "close", uuid)
    # Both nodes hear of it through the database; polled, never slept on as an assertion.
    assert wait_until(lambda: not works(sfa) and not works(sfb), timeout=30, step=0.05)
    assert refused(a, uuid) and refused(b, uuid)


def test_idle_expiry_counts_access_on_the_other_node(start_nodes, clients):
    a, b = start_nodes(idle_ms=IDLE_MS)
    ca, sfa = login(a, clients)
    uuid = ca.getSessionId()
    cb, sfb = join(b, clients, uuid)
    # Only B sees use, for three idle periods: A must not reap the session meanwhile.
    deadline = time.monotonic() + 3 * IDLE_MS / 1000.0
    while time.monotonic() < deadline:
        sfb.keepAlive(None)
        time.sleep(0.3)
    assert works(sfa), "A closed a session B kept using"
    # Unused everywhere, it idles out. Bob watches with quiet lookups, which do not count as
    # use (a join or a call on the session itself would).
    cw, sfw = login(b, clients, user="bob")
    quiet = sfw.getSessionService().ice_context({"quietly": "true"})
    assert wait_until(lambda: removed(quiet, uuid), timeout=60, step=0.5)
    assert wait_until(lambda: not works(sfa), timeout=60, step=0.5)


def removed(quiet_sessions, uuid):
    try:
        quiet_sessions.getSession(uuid)
    except omero.RemovedSessionException:
        return True
    except omero.SessionTimeoutException:
        return False  # expired, not reaped yet
    return False


def test_database_down_and_back(nodes, clients):
    a, b = nodes
    ca, sfa = login(a, clients)
    uuid = ca.getSessionId()
    pg_ctl("stop")
    try:
        with pytest.raises(Glacier2.CannotCreateSessionException) as refusal:
            login(a, clients, user="bob")
        assert "unavailable" in refusal.value.reason, refusal.value.reason
        print("login refused while the database is down: %s" % refusal.value.reason)
        # A join B's cache cannot answer needs the database too.
        with pytest.raises((Glacier2.CannotCreateSessionException,
                            Glacier2.PermissionDeniedException)):
            join(b, clients, uuid)
        # The session A already serves keeps working from its cache.
        assert works(sfa)
        assert sfa.getSessionService().getSession(uuid).getUuid().getValue() == uuid
    finally:
        pg_ctl("start")
    # Both nodes recover without a restart.
    assert wait_until(lambda: try_login(b), timeout=60, step=0.5)
    assert wait_until(lambda: try_login(a), timeout=60, step=0.5)
    cb, sfb = join(b, clients, uuid)
    assert works(sfb)


def try_login(node):
    c = node.client()
    try:
        c.createSession("bob", PASSWORDS["bob"])
        return True
    except Glacier2.CannotCreateSessionException:
        return False
    finally:
        c.__del__()
