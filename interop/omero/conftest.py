"""Fixtures for the omero-py interop suite: a real omero-sessiond process and omero-py clients.

The suite runs under the virtualenv that interop/setup makes (omero-py 5.23 on Ice 3.6.5).
OMERO_TEST_ENCODING=1.0 makes every client use Ice.Default.EncodingVersion=1.0, as OMERO
clients up to 5.4 did; the default is omero-py's own (1.1).
"""
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import omero  # noqa: F401  (loads the generated types)
import omero.clients  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("OMERO_SESSIOND_BIN", ROOT / "target" / "debug" / "omero-sessiond"))
ENCODING = os.environ.get("OMERO_TEST_ENCODING", "1.1")
PASSWORDS = {"alice": "alicepw", "bob": "bobpw", "carol": "carolpw"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("omero-sessiond exited with %s" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("omero-sessiond did not listen on %d" % port)


class Server:
    """One omero-sessiond process with its own data directory and ports."""

    def __init__(self, workdir, config=""):
        self.data = Path(workdir) / "data"
        self.tcp_port = free_port()
        self.ssl_port = free_port()
        self.https_port = free_port()
        self.config_path = Path(workdir) / "config.toml"
        self.config_path.write_text(config)
        self.log = open(Path(workdir) / "server.log", "wb")
        for name in ("alice", "bob", "carol"):
            self.cli("user", "add", name, "--password-stdin", stdin=PASSWORDS[name])
        self.cli("group", "add", "lab", "--perms", "rwr---")
        self.cli("user", "add", "dave", "--group", "lab", "--first", "Dave", "--last", "Lab",
                 "--email", "dave@example.org", "--password-stdin", stdin="davepw")
        PASSWORDS["dave"] = "davepw"
        self.start()
        # Each server generates its own root password: keep it per server, since the
        # session-wide server and the module-scoped fast_server run side by side.
        self.root_pw = self.root_password()

    def start(self):
        """Starts the server process on this data directory and these ports."""
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--config", str(self.config_path), "--data", str(self.data),
             "--tcp", "127.0.0.1:%d" % self.tcp_port, "--ssl", "127.0.0.1:%d" % self.ssl_port,
             "--https", "127.0.0.1:%d" % self.https_port],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for_port(self.ssl_port, self.proc)
        wait_for_port(self.tcp_port, self.proc)

    def kill9(self):
        """SIGKILL: no shutdown code runs, as in a crash."""
        self.proc.kill()
        self.proc.wait()

    def restart(self, crash=False):
        """Stops (gracefully, or with SIGKILL when `crash`) and starts again."""
        if crash:
            self.kill9()
        else:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.start()

    def cli(self, *args, stdin=None):
        res = subprocess.run([str(BIN), *args, "--data", str(self.data)], input=stdin,
                             capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            raise RuntimeError("%s failed: %s %s" % (args, res.stdout, res.stderr))
        return res.stdout

    def root_password(self):
        path = self.data / "initial-root-password"
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return path.read_text().strip()

    def client(self, secure=True, **props):
        pmap = {"Ice.Default.EncodingVersion": ENCODING} if ENCODING == "1.0" else {}
        pmap.update(props)
        if secure:
            return omero.client(host="127.0.0.1", port=self.ssl_port, pmap=pmap)
        return omero.client(host="tcp://127.0.0.1:%d" % self.tcp_port, pmap=pmap)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def make_server(config=""):
    tmp = tempfile.mkdtemp(prefix="omero-sessiond-interop-")
    return Server(tmp, config)


@pytest.fixture(scope="session")
def server():
    srv = make_server()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def fast_server():
    """A server whose sessions idle out after 2 s and are reaped every 200 ms."""
    srv = make_server(
        "[sessions]\ntime_to_idle_ms = 2000\nreaper_interval_ms = 200\n")
    yield srv
    srv.stop()


@pytest.fixture
def clients():
    """Closes every omero-py client a test made, whatever happened."""
    made = []
    yield made
    for c in made:
        try:
            c.__del__()
        except Exception:
            pass


def login(srv, clients, user="alice", secure=True):
    c = srv.client(secure=secure)
    clients.append(c)
    sf = c.createSession(user, srv.root_pw if user == "root" else PASSWORDS[user])
    return c, sf


def join(srv, clients, uuid, secure=True):
    c = srv.client(secure=secure)
    clients.append(c)
    sf = c.joinSession(uuid)
    return c, sf


def wait_until(predicate, timeout=20.0, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def python():
    return sys.executable
