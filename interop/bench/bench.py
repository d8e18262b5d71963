#!/usr/bin/env python3
"""Runs the benchmark: ZeroC's C++ ping server, glacier2router in front of it, and
omero-sessiond, side by side on loopback; prints the ping table and the footprint figures.

Started by interop/bench/run, which builds the programs and passes their paths. Runs under
Debian's python3 with Ice 3.7 (`import Ice`); the footprint clients load the repository's
slice/ for ISession.
"""
import argparse
import concurrent.futures
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import Glacier2
import Ice

REPO = Path(__file__).resolve().parents[2]
# ISession and the classes a Session reply carries (with --all, their includes come along).
SLICE = ["API.ice", "api/ISession.ice"] + ["model/%s.ice" % n for n in (
    "Session", "Permissions", "Details", "Experimenter", "ExperimenterGroup", "Node", "Event",
    "EventType", "GroupExperimenterMap", "Share", "Format", "ExternalInfo", "Namespace",
    "SessionAnnotationLink")]
Ice.loadSlice("--all -I%s %s" % (REPO / "slice", " ".join(
    str(REPO / "slice/omero" / n) for n in SLICE)))
import omero  # noqa: E402
import omero.api  # noqa: E402
import omero.sys  # noqa: E402

USER = "bench"
PASSWORD = "bench-pw"
IN_FLIGHT = (1, 16, 64)
SSL_PASSWORD = "bench"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %s" % (what, proc.returncode))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("%s did not listen on %d" % (what, port))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for pid %d" % pid)


def settled_rss_kib(pid):
    # Lets the server finish the replies and frees of the last requests first.
    time.sleep(0.5)
    return rss_kib(pid)


def load_average():
    # Other work on the machine moves every figure; the run says how busy it was.
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def make_cert(work):
    """A self-signed RSA certificate for every TLS listener: PEM for ours, PKCS#12 for IceSSL."""
    key, cert, p12 = work / "key.pem", work / "cert.pem", work / "cert.p12"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "pkcs12", "-export", "-inkey", str(key), "-in", str(cert),
                    "-out", str(p12), "-passout", "pass:" + SSL_PASSWORD],
                   check=True, capture_output=True)
    return key, cert, p12


def icessl_args(p12):
    return ["--IceSSL.CertFile=%s" % p12, "--IceSSL.Password=%s" % SSL_PASSWORD,
            "--IceSSL.VerifyPeer=0"]


class Processes:
    """Every process the run starts, stopped at the end whatever happens."""

    def __init__(self, work):
        self.work = work
        self.procs = []

    def start(self, name, args, env=None):
        log = open(self.work / ("%s.log" % name), "wb")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env)
        self.procs.append((name, proc, log))
        return proc

    def stop_all(self):
        for _, proc, _ in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for name, proc, log in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


class Setup:
    def __init__(self, args, work, procs):
        self.args = args
        self.work = work
        key, cert, p12 = make_cert(work)
        self.p12 = p12

        self.ps_tcp, self.ps_ssl = free_port(), free_port()
        self.pingserver = procs.start("pingserver", [
            args.pingserver,
            "--Bench.Endpoints=tcp -h 127.0.0.1 -p %d:ssl -h 127.0.0.1 -p %d"
            % (self.ps_tcp, self.ps_ssl)] + icessl_args(p12))

        self.g2_tcp, self.g2_ssl = free_port(), free_port()
        self.glacier2 = procs.start("glacier2router", [
            "glacier2router",
            "--Glacier2.Client.Endpoints=tcp -h 127.0.0.1 -p %d:ssl -h 127.0.0.1 -p %d"
            % (self.g2_tcp, self.g2_ssl),
            "--Glacier2.PermissionsVerifier=Glacier2/NullPermissionsVerifier",
            "--Ice.Plugin.IceSSL=IceSSL:createIceSSL"] + icessl_args(p12))

        data = work / "data"
        config = work / "omero-sessiond.toml"
        config.write_text(
            '[tls]\ncert = "%s"\nkey = "%s"\n\n'
            "[sessions]\nmax_sessions_per_user = 10000000\n\n"
            "[connection]\nmax_connections = 0\nmax_connections_per_address = 0\n"
            % (cert, key))
        add = subprocess.run([args.server, "user", "add", USER, "--password-stdin",
                              "--data", str(data)],
                             input=PASSWORD, capture_output=True, text=True, timeout=120)
        if add.returncode != 0:
            raise RuntimeError("user add failed: %s %s" % (add.stdout, add.stderr))
        self.ours_tcp, self.ours_ssl = free_port(), free_port()
        env = dict(os.environ)
        # Per-request logging would be measured along with the server otherwise.
        env.setdefault("RUST_LOG", "warn")
        self.ours = procs.start("omero-sessiond", [
            args.server, "serve", "--config", str(config), "--data", str(data),
            "--tcp", "127.0.0.1:%d" % self.ours_tcp, "--ssl", "127.0.0.1:%d" % self.ours_ssl,
            "--https", "off"], env=env)

        for port, proc, what in ((self.ps_tcp, self.pingserver, "pingserver"),
                                 (self.ps_ssl, self.pingserver, "pingserver"),
                                 (self.g2_tcp, self.glacier2, "glacier2router"),
                                 (self.g2_ssl, self.glacier2, "glacier2router"),
                                 (self.ours_tcp, self.ours, "omero-sessiond"),
                                 (self.ours_ssl, self.ours, "omero-sessiond")):
            wait_for_port(port, proc, what)
        self.root_password = (data / "initial-root-password").read_text().strip()
        self.start_rss = {"ours": settled_rss_kib(self.ours.pid),
                          "g2": settled_rss_kib(self.glacier2.pid)}

    def endpoint(self, proto, port):
        return "%s -h 127.0.0.1 -p %d" % (proto, port)

    def ping_args(self, row, proto):
        port = {"tcp": (self.ps_tcp, self.g2_tcp, self.ours_tcp),
                "ssl": (self.ps_ssl, self.g2_ssl, self.ours_ssl)}[proto]
        if row == "direct":
            return ["--Bench.Proxy=pinger:" + self.endpoint(proto, port[0])]
        if row == "glacier2":
            # The router's client side speaks `proto`; its hop to the server is plain tcp.
            return ["--Bench.Proxy=pinger:" + self.endpoint("tcp", self.ps_tcp),
                    "--Bench.Router=Glacier2/router:" + self.endpoint(proto, port[1]),
                    "--Bench.User=" + USER, "--Bench.Password=" + PASSWORD]
        return ["--Bench.Router=OMERO.Glacier2/router:" + self.endpoint(proto, port[2]),
                "--Bench.User=" + USER, "--Bench.Password=" + PASSWORD]


def run_loadclient(args, mode, extra):
    cmd = [args.loadclient, mode] + extra + ["--IceSSL.VerifyPeer=0"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise RuntimeError("%s failed: %s %s" % (" ".join(cmd), res.stdout, res.stderr))
    return res.stdout.split()


def cpu_pids(setup, row):
    """The server processes a call on `row` runs through."""
    return {"direct": [setup.pingserver.pid],
            "glacier2": [setup.glacier2.pid, setup.pingserver.pid],
            "ours": [setup.ours.pid]}[row]


def ping_run(setup, row, proto, n):
    """(calls/s of the measured window, every call made (warm-up included), server CPU
    microseconds per call in the window)."""
    words = run_loadclient(setup.args, "ping", setup.ping_args(row, proto) + [
        "--Bench.InFlight=%d" % n, "--Bench.Seconds=%d" % setup.args.seconds,
        "--Bench.CpuPids=%s" % ",".join(str(p) for p in cpu_pids(setup, row))])
    return int(words[1]), int(words[3]), float(words[5])


def ping_rate_total(setup, row, proto, n):
    rate, total, _ = ping_run(setup, row, proto, n)
    return rate, total


ROWS = (("direct", "ZeroC C++ 3.7 server, called directly"),
        ("glacier2", "ZeroC glacier2router -> that C++ server"),
        ("ours", "ours: our router -> the session's ServiceFactory"))


def fmt_rate(r):
    return "%.1fk/s" % (r / 1000.0) if r < 100000 else "%.0fk/s" % (r / 1000.0)


def ping_table(setup, out):
    """Every cell measured `rounds` times, rounds interleaved so that a burst of load from
    elsewhere on the machine hits all paths alike; a cell shows its best round (highest rate,
    lowest CPU per call)."""
    rates, cpu = {}, {}
    for _ in range(setup.args.rounds):
        for proto in ("tcp", "ssl"):
            for key, _ in ROWS:
                for n in IN_FLIGHT:
                    r, _, c = ping_run(setup, key, proto, n)
                    cell = (proto, key, n)
                    rates[cell] = max(r, rates.get(cell, 0))
                    if c >= 0:
                        cpu[cell] = min(c, cpu.get(cell, c))
    out("| calls/s | " + " | ".join("%d in flight" % n for n in IN_FLIGHT) + " |")
    out("|---|" + "---|" * len(IN_FLIGHT))
    for proto in ("tcp", "ssl"):
        for key, label in ROWS:
            out("| %s, %s | %s |" % (label, proto, " | ".join(
                fmt_rate(rates[(proto, key, n)]) for n in IN_FLIGHT)))
    for proto in ("tcp", "ssl"):
        for other, label in (("direct", "ours / direct"), ("glacier2", "ours / glacier2router")):
            out("| %s, %s | %s |" % (label, proto, " | ".join(
                "%.2fx" % (rates[(proto, "ours", n)] / max(rates[(proto, other, n)], 1))
                for n in IN_FLIGHT)))
    out("")
    out("| server CPU per call (user+system, every server process of the path) | "
        + " | ".join("%d in flight" % n for n in IN_FLIGHT) + " |")
    out("|---|" + "---|" * len(IN_FLIGHT))
    for proto in ("tcp", "ssl"):
        for key, label in ROWS:
            out("| %s, %s | %s |" % (label, proto, " | ".join(
                "%.1f us" % cpu[(proto, key, n)] if (proto, key, n) in cpu else "n/a"
                for n in IN_FLIGHT)))
    for proto in ("tcp", "ssl"):
        out("| CPU per call, ours / direct, %s (lower is better) | %s |" % (proto, " | ".join(
            "%.2fx" % (cpu[(proto, "ours", n)] / cpu[(proto, "direct", n)])
            if cpu.get((proto, "direct", n)) and (proto, "ours", n) in cpu else "n/a"
            for n in IN_FLIGHT)))
    return rates


def communicator(extra=()):
    init = Ice.InitializationData()
    init.properties = Ice.createProperties()
    # No client-side ACM: the connections must stay open for as long as they are measured.
    init.properties.setProperty("Ice.ACM.Client.Close", "0")
    init.properties.setProperty("Ice.ACM.Client.Heartbeat", "0")
    init.properties.setProperty("Ice.MessageSizeMax", "0")
    for k, v in extra:
        init.properties.setProperty(k, v)
    return Ice.initialize(init)


def router_at(ic, setup, port, name="OMERO.Glacier2/router"):
    return Glacier2.RouterPrx.uncheckedCast(
        ic.stringToProxy("%s:%s" % (name, setup.endpoint("tcp", port))))


def admin_session_service(ic, setup):
    router = router_at(ic, setup, setup.ours_tcp)
    ic.setDefaultRouter(router)
    sf = omero.api.ServiceFactoryPrx.uncheckedCast(router.createSession("root", setup.root_password, login_context()))
    return sf.getSessionService()


def login_context():
    # OMERO's routers refuse a login without the client's uuid; Glacier2's ignores it.
    return {"omero.client.uuid": str(uuid.uuid4())}


def principal():
    p = omero.sys.Principal()
    p.name = USER
    p.group = "user"
    p.eventType = "User"
    return p


def session_uuid(session):
    # ["protected"] members: Python names them with a leading underscore.
    return session._uuid._val


def create_sessions(isession, count, window=64):
    """`count` sessions of USER through ISession.createSessionWithTimeouts; their uuids."""
    uuids = []
    pending = []
    p = principal()
    for _ in range(count):
        pending.append(isession.createSessionWithTimeoutsAsync(p, 0, 0))
        if len(pending) >= window:
            uuids.extend(session_uuid(f.result()) for f in pending)
            pending = []
    uuids.extend(session_uuid(f.result()) for f in pending)
    return uuids


def open_idle(port, count):
    """`count` raw TCP connections, each past the server's ValidateConnection."""
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        got = b""
        while len(got) < 14:
            chunk = s.recv(14 - len(got))
            if not chunk:
                raise RuntimeError("connection closed before ValidateConnection")
            got += chunk
        if got[:4] != b"IceP" or got[8] != 3:
            raise RuntimeError("no ValidateConnection: %r" % got)
        socks.append(s)
    return socks


def login_connections(ic, router, credentials, window=64):
    """One Glacier2 createSession per (user, password), each on a connection of its own."""
    proxies = []
    pending = []
    for i, (user, password) in enumerate(credentials):
        prx = router.ice_connectionId("bench-%d" % i)
        proxies.append(prx)
        pending.append(prx.createSessionAsync(user, password, login_context()))
        if len(pending) >= window:
            for f in pending:
                f.result()
            pending = []
    for f in pending:
        f.result()
    return proxies


def password_logins(setup, count, threads=4):
    """`count` password logins, each on its own connection, session destroyed after."""
    ic = communicator()
    try:
        router = router_at(ic, setup, setup.ours_tcp)

        def one(i):
            prx = router.ice_connectionId("login-%d" % i)
            prx.createSession(USER, PASSWORD, login_context())
            prx.destroySession()
            con = prx.ice_getCachedConnection()
            if con is not None:
                con.close(Ice.ConnectionClose.Gracefully)

        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            for f in [pool.submit(one, i) for i in range(count)]:
                f.result()
    finally:
        ic.destroy()


def login_growth(setup):
    """RSS growth of our fresh server over the password logins: first thing after start-up,
    so that it includes whatever the password hashing keeps (its workers' memory)."""
    a = setup.args
    before = settled_rss_kib(setup.ours.pid)
    t0 = time.monotonic()
    password_logins(setup, a.logins)
    secs = time.monotonic() - t0
    after = settled_rss_kib(setup.ours.pid)
    return ("RSS growth over %d password logins from start-up (%.0f logins/s from 4 threads; "
            "each on its own connection, session destroyed after)" % (a.logins, a.logins / secs),
            "%.1f MiB" % ((after - before) / 1024.0), "-")


def footprint(setup, out):
    """Each figure is the growth of the process while the thing measured is alive, measured
    on top of the previous ones (connections stay open until both kinds are measured), so
    memory freed by an earlier step cannot hide a later step's cost."""
    a = setup.args
    ours, g2 = setup.ours.pid, setup.glacier2.pid
    rows = [("RSS after start-up",
             "%.1f MiB" % (setup.start_rss["ours"] / 1024.0),
             "%.1f MiB" % (setup.start_rss["g2"] / 1024.0))]

    rows.append(setup.login_growth)

    ic = communicator()
    held = []
    try:
        isession = admin_session_service(ic, setup)
        before = settled_rss_kib(ours)
        t0 = time.monotonic()
        uuids = create_sessions(isession, a.sessions)
        secs = time.monotonic() - t0
        after = settled_rss_kib(ours)
        rows.append(("live session (%d created with createSessionWithTimeouts, %.0f/s)"
                     % (a.sessions, a.sessions / secs),
                     "%.0f bytes" % ((after - before) * 1024.0 / a.sessions), "-"))

        logged_in, idle = {}, {}
        for who, pid, port, name, creds in (
                ("ours", ours, setup.ours_tcp, "OMERO.Glacier2/router",
                 [(u, u) for u in uuids[:a.logged_in]]),
                ("g2", g2, setup.g2_tcp, "Glacier2/router",
                 [(USER, PASSWORD)] * a.logged_in)):
            if len(creds) < a.logged_in:
                raise RuntimeError("--logged-in %d needs as many --sessions" % a.logged_in)
            joiner = communicator()
            held.append(joiner)
            before = settled_rss_kib(pid)
            login_connections(joiner, router_at(joiner, setup, port, name), creds)
            after = settled_rss_kib(pid)
            logged_in[who] = (after - before) / float(a.logged_in)

            before = settled_rss_kib(pid)
            held.extend(open_idle(port, a.idle))
            after = settled_rss_kib(pid)
            idle[who] = (after - before) / float(a.idle)
        rows.append(("logged-in connection (%d; ours: each joins a live session, "
                     "glacier2router: a login)" % a.logged_in,
                     "%.1f KiB" % logged_in["ours"], "%.1f KiB" % logged_in["g2"]))
        rows.append(("idle connection (%d open and validated, no login)" % a.idle,
                     "%.1f KiB" % idle["ours"], "%.1f KiB" % idle["g2"]))
    finally:
        for h in held:
            if isinstance(h, socket.socket):
                h.close()
            else:
                h.destroy()
        ic.destroy()

    accepts = {}
    for _ in range(a.rounds):
        for who, port in (("ours", setup.ours_tcp), ("g2", setup.g2_tcp)):
            r = int(run_loadclient(a, "accept", [
                "--Bench.Port=%d" % port, "--Bench.Seconds=%d" % a.seconds,
                "--Bench.Threads=4"])[1])
            accepts[who] = max(r, accepts.get(who, 0))
    rows.append(("connections accepted and validated per second (tcp, 4 client threads, "
                 "best of %d)" % a.rounds,
                 "%d/s" % accepts["ours"], "%d/s" % accepts["g2"]))
    rows.append(("accept rate, ours / glacier2router",
                 "%.2fx" % (accepts["ours"] / max(accepts["g2"], 1)), ""))
    rows.append(("RSS at the end", "%.1f MiB" % (rss_kib(ours) / 1024.0),
                 "%.1f MiB" % (rss_kib(g2) / 1024.0)))

    out("| footprint | ours | glacier2router |")
    out("|---|---|---|")
    for r in rows:
        out("| %s | %s | %s |" % r)


STAT_EVENTS = ["task-clock", "context-switches", "cpu-migrations"] + [
    "syscalls:sys_enter_" + s for s in (
        "read", "recvfrom", "recvmsg", "write", "writev", "sendto", "sendmsg",
        "epoll_wait", "futex")]


def perf_stat(setup, pid, row, in_flight):
    """Counters of process `pid` during one tcp ping run on `row`, per call."""
    path = setup.work / ("stat-%s.csv" % row)
    stat = subprocess.Popen(["perf", "stat", "-x", ",", "-o", str(path), "-e",
                             ",".join(STAT_EVENTS), "-p", str(pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        rate, total = ping_rate_total(setup, row, "tcp", in_flight)
    finally:
        stat.send_signal(signal.SIGINT)
        stat.wait(timeout=60)
    counts = {}
    for line in path.read_text().splitlines():
        fields = line.split(",")
        if len(fields) < 3 or line.startswith("#"):
            continue
        try:
            counts[fields[2]] = float(fields[0])
        except ValueError:
            counts[fields[2]] = float("nan")
    return rate, total, counts


def perf_record(setup, data, in_flight):
    rec = subprocess.Popen(["perf", "record", "-F", "999", "--call-graph", "dwarf,16384",
                            "-o", str(data), "-p", str(setup.ours.pid)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        rate, _ = ping_rate_total(setup, "ours", "tcp", in_flight)
    finally:
        rec.send_signal(signal.SIGINT)
        rec.wait(timeout=120)
    return rate


def perf_report(data, *args):
    text = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "-g", "none"]
                          + list(args), capture_output=True, text=True, check=True).stdout
    # Squeezes perf's wide padding and its empty trailing columns.
    lines = (" ".join(l.split()).removesuffix(" - -") for l in text.splitlines())
    return "\n".join(l for l in lines if l and not l.startswith("#"))


def profile(setup, out_path, in_flight):
    """Where a routed ice_ping's time goes: perf stat counters per call for the three paths,
    then a perf record (DWARF call graphs) of our server, both at `in_flight` over tcp."""
    if shutil.which("perf") is None:
        raise RuntimeError("perf not found (Debian package linux-perf)")
    report = ["== perf stat per call, %d in flight, tcp (server process only; " % in_flight +
              "glacier2router's row excludes the C++ server behind it)",
              "| counter | " + " | ".join(label for _, label in ROWS) + " |",
              "|---|---|---|---|"]
    per_row = {}
    for row, pid in (("direct", setup.pingserver.pid), ("glacier2", setup.glacier2.pid),
                     ("ours", setup.ours.pid)):
        per_row[row] = perf_stat(setup, pid, row, in_flight)
    report.append("| calls/s during the count | %s |" % " | ".join(
        "%d" % per_row[r][0] for r, _ in ROWS))
    for ev in STAT_EVENTS:
        cells = []
        for r, _ in ROWS:
            _, total, counts = per_row[r]
            v = counts.get(ev, float("nan")) / max(total, 1)
            # task-clock is in milliseconds: per call, microseconds read better.
            cells.append("%.1f us" % (v * 1000.0) if ev == "task-clock" else "%.2f" % v)
        report.append("| %s | %s |" % (ev.replace("syscalls:sys_enter_", ""), " | ".join(cells)))

    data = setup.work / "perf.data"
    rate = perf_record(setup, data, in_flight)
    report += ["", "== perf record of our server (%d calls/s while recorded)" % rate,
               "", "-- by shared object", perf_report(data, "--no-children", "--sort", "dso",
                                                      "--percent-limit", "1"),
               "", "-- by symbol, self time >= 0.7%",
               perf_report(data, "--no-children", "--sort", "dso,symbol",
                           "--percent-limit", "0.7"),
               "", "-- by symbol, including callees, >= 4%",
               perf_report(data, "--children", "--sort", "symbol", "--percent-limit", "4"),
               "", "-- our own functions (omero_sessiond::), including callees, >= 0.5%",
               "\n".join(l for l in perf_report(data, "--children", "--sort", "symbol",
                                                 "--percent-limit", "0.5").splitlines()
                         if "omero_sessiond::" in l)]
    Path(out_path).write_text("\n".join(report) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--server", required=True, help="the omero-sessiond binary")
    ap.add_argument("--pingserver", required=True)
    ap.add_argument("--loadclient", required=True)
    ap.add_argument("--seconds", type=int, default=2, help="length of each measured run")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each ping cell (best shown)")
    ap.add_argument("--sessions", type=int, default=50000)
    ap.add_argument("--idle", type=int, default=4000)
    ap.add_argument("--logged-in", type=int, default=2000)
    ap.add_argument("--logins", type=int, default=1000)
    ap.add_argument("--skip-table", action="store_true")
    ap.add_argument("--skip-footprint", action="store_true")
    ap.add_argument("--profile-in-flight", type=int, default=64,
                    help="calls in flight while profiling (default 64)")
    ap.add_argument("--profile", metavar="FILE",
                    help="instead of the figures, perf-record our server at --profile-in-flight")
    a = ap.parse_args()

    def out(line):
        print(line, flush=True)

    work = Path(tempfile.mkdtemp(prefix="omero-sessiond-bench-"))
    procs = Processes(work)
    ok = False
    t0 = time.monotonic()
    try:
        out("machine: %d cores, load average %s at the start"
            % (os.cpu_count() or 0, load_average()))
        setup = Setup(a, work, procs)
        if a.profile:
            profile(setup, a.profile, a.profile_in_flight)
            out("profile written to %s" % a.profile)
            ok = True
            return 0
        if not a.skip_footprint:
            setup.login_growth = login_growth(setup)
        out("== calls/s of twoway ice_ping, one ZeroC C++ 3.7 client (best of %d runs of %d s)"
            % (a.rounds, a.seconds))
        if not a.skip_table:
            ping_table(setup, out)
        out("")
        out("== footprint (VmRSS deltas of the server process)")
        if not a.skip_footprint:
            footprint(setup, out)
        out("")
        out("run took %.0f s; load average %s at the end" % (time.monotonic() - t0, load_average()))
        ok = True
        return 0
    except Exception as e:
        print("bench: %s (logs in %s)" % (e, work), file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
        if ok:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
