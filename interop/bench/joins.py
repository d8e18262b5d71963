#!/usr/bin/env python3
"""Logins and joins over the network, one new connection each, on the embedded store and,
with --database, on PostgreSQL (issue 9). A benchmark: it prints figures, asserts nothing.

    interop/bench/joins.py --server BIN                        # embedded SQLite store
    interop/pg run interop/bench/joins.py --server BIN --postgres   # and PostgreSQL too

Each login is Glacier2 createSession(user, password) (an argon2id check and a session
commit); each join is createSession(uuid, uuid) on a fresh connection (a reference count
commit), timed at the client from the connection's first byte to the reply. Runs under
Debian's python3 with Ice 3.7.
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import Glacier2
import Ice

USER, PASSWORD = "bench", "bench-password"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("omero-sessiond exited with %s" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("omero-sessiond did not listen on %d" % port)


def start_server(binary, work, database):
    data = work / "data"
    extra = ["--database", database] if database else []
    add = subprocess.run([binary, "user", "add", USER, "--password-stdin", "--data", str(data),
                          *extra], input=PASSWORD, capture_output=True, text=True, timeout=120)
    if add.returncode != 0:
        raise RuntimeError("user add failed: %s" % add.stderr)
    port = free_port()
    env = dict(os.environ, RUST_LOG="warn")
    proc = subprocess.Popen([binary, "serve", "--data", str(data), "--tcp", "127.0.0.1:%d" % port,
                             "--ssl", "off", "--https", "off", *extra], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    wait_for_port(port, proc)
    return proc, port


def communicator():
    init = Ice.InitializationData()
    init.properties = Ice.createProperties()
    init.properties.setProperty("Ice.ACM.Client.Close", "0")
    init.properties.setProperty("Ice.ACM.Client.Heartbeat", "0")
    return Ice.initialize(init)


def timed_sessions(ic, port, count, credentials):
    """Seconds per createSession, each on its own connection (closed after)."""
    base = ic.stringToProxy("OMERO.Glacier2/router:tcp -h 127.0.0.1 -p %d" % port)
    times = []
    for i in range(count):
        router = Glacier2.RouterPrx.uncheckedCast(base.ice_connectionId("c%d" % i))
        user, password = credentials()
        started = time.perf_counter()
        router.createSession(user, password, {"omero.client.uuid": str(uuid.uuid4())})
        times.append(time.perf_counter() - started)
        router.ice_getCachedConnection().close(Ice.ConnectionClose.GracefullyWithWait)
    return times


def report(name, what, times):
    times = sorted(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print("| %s | %s | %.0f/s | %.2f ms | %.2f ms |" % (
        name, what, len(times) / sum(times), statistics.median(times) * 1e3, p99 * 1e3))


def measure(name, binary, database, logins, joins):
    with tempfile.TemporaryDirectory(prefix="omero-sessiond-joins-") as tmp:
        proc, port = start_server(binary, Path(tmp), database)
        ic = communicator()
        try:
            report(name, "password login", timed_sessions(ic, port, logins,
                                                        lambda: (USER, PASSWORD)))
            # The session every join attaches to, held by this first connection.
            base = ic.stringToProxy("OMERO.Glacier2/router:tcp -h 127.0.0.1 -p %d" % port)
            holder = Glacier2.RouterPrx.uncheckedCast(base.ice_connectionId("holder"))
            sf = holder.createSession(USER, PASSWORD, {"omero.client.uuid": str(uuid.uuid4())})
            key = sf.ice_getIdentity().name
            report(name, "join (uuid as password)",
                   timed_sessions(ic, port, joins, lambda: (key, key)))
        finally:
            ic.destroy()
            proc.terminate()
            proc.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", required=True, help="the omero-sessiond binary (release)")
    ap.add_argument("--postgres", action="store_true",
                    help="also on PostgreSQL at $OMERO_TEST_POSTGRES (interop/pg run ...)")
    ap.add_argument("--logins", type=int, default=200)
    ap.add_argument("--joins", type=int, default=2000)
    args = ap.parse_args()
    print("| store | operation (new connection each) | rate | p50 | p99 |")
    print("|---|---|---|---|---|")
    measure("embedded SQLite", args.server, None, args.logins, args.joins)
    if args.postgres:
        url = os.environ.get("OMERO_TEST_POSTGRES")
        if not url:
            sys.exit("--postgres needs OMERO_TEST_POSTGRES (run under interop/pg run)")
        measure("PostgreSQL", args.server, url, args.logins, args.joins)


if __name__ == "__main__":
    main()
