"""The data directory is shared safely: one server per directory, and the command line and the
server never lose each other's changes to the user directory."""
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import omero
from omero.rtypes import rstring

from conftest import BIN, ROOT, free_port, make_server, wait_for_port


def test_a_second_server_on_the_same_directory_is_refused():
    srv = make_server()
    try:
        res = subprocess.run(
            [str(BIN), "serve", "--data", str(srv.data), "--tcp", "127.0.0.1:0",
             "--ssl", "127.0.0.1:0", "--https", "off"],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert res.returncode != 0, res.stdout
        assert str(srv.data) in res.stderr, res.stderr
        assert "in use by another omero-sessiond" in res.stderr, res.stderr
        # The first server is unaffected.
        assert srv.proc.poll() is None
    finally:
        srv.stop()


def test_cli_user_adds_and_server_password_changes_lose_nothing(clients):
    srv = make_server()
    try:
        c = srv.client(secure=False)
        clients.append(c)
        admin = c.createSession("root", srv.root_pw).getAdminService()
        changes = 15
        failures = []

        def change_passwords():
            try:
                for i in range(changes):
                    admin.changeUserPassword("alice", rstring("alice-pw-%d" % i))
            except Exception as e:  # reported below
                failures.append(repr(e))

        def add_user(n):
            srv.cli("user", "add", "newcomer%d" % n, "--password-stdin",
                    stdin="newcomer-pw-%d" % n)

        changer = threading.Thread(target=change_passwords)
        changer.start()
        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(add_user, range(12)))
        changer.join(timeout=300)
        assert not changer.is_alive()
        assert not failures, failures

        listed = srv.cli("user", "list")
        names = {line.split("\t")[1] for line in listed.splitlines()[1:]}
        missing = {"newcomer%d" % n for n in range(12)} - names
        assert not missing, listed
        # The server's last change survived every command-line write, and the server sees
        # the command line's users.
        last = srv.client(secure=False)
        clients.append(last)
        last.createSession("alice", "alice-pw-%d" % (changes - 1))
        newcomer = srv.client(secure=False)
        clients.append(newcomer)
        newcomer.createSession("newcomer7", "newcomer-pw-7")
    finally:
        srv.stop()


def _serve(data, log):
    """Starts a server on `data` as it is (no users added); returns it with its tcp port."""
    tcp, ssl = free_port(), free_port()
    proc = subprocess.Popen(
        [str(BIN), "serve", "--data", str(data), "--tcp", "127.0.0.1:%d" % tcp,
         "--ssl", "127.0.0.1:%d" % ssl, "--https", "off"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    wait_for_port(tcp, proc)
    return proc, tcp


def _stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_an_old_directory_json_is_imported_and_kept_across_restarts(clients):
    """A data directory of the JSON-file version: its users log in, the file is kept renamed,
    and changes made through the admin service after the import survive a restart."""
    work = Path(tempfile.mkdtemp(prefix="omero-sessiond-import-"))
    data = work / "data"
    data.mkdir(mode=0o700)
    shutil.copy(ROOT / "tests" / "data" / "directory-v1" / "directory.json",
                data / "directory.json")
    with open(work / "server.log", "wb") as log:
        proc, tcp = _serve(data, log)
        try:
            assert not (data / "directory.json").exists()
            assert (data / "directory.json.imported").exists()
            assert not (data / "initial-root-password").exists(), "root kept its password"
            c = omero.client(host="tcp://127.0.0.1:%d" % tcp)
            clients.append(c)
            ec = c.createSession("alice", "alice-pw").getAdminService().getEventContext()
            assert (ec.userName, ec.groupName) == ("alice", "lab")
            assert ec.leaderOfGroups == [3]
            root = omero.client(host="tcp://127.0.0.1:%d" % tcp)
            clients.append(root)
            admin = root.createSession("root", "root-pw").getAdminService()
            admin.changeUserPassword("carol", rstring("carol-new"))
        finally:
            _stop(proc)
        proc, tcp = _serve(data, log)
        try:
            c = omero.client(host="tcp://127.0.0.1:%d" % tcp)
            clients.append(c)
            ec = c.createSession("carol", "carol-new").getAdminService().getEventContext()
            assert ec.userName == "carol"
            assert not (data / "directory.json").exists(), "not imported twice"
        finally:
            _stop(proc)
