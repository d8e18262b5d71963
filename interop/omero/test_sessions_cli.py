"""`omero-sessiond sessions list|close` on the data directory of a running server: a session
omero-py made is listed with its user, closed by the command line, and then refused to its
client and to a rejoin."""
import subprocess

import Glacier2
import omero
import pytest

from conftest import BIN, join, login, wait_until

def sessions_cli(srv, *args):
    res = subprocess.run([str(BIN), "sessions", *args, "--data", str(srv.data)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_list_and_close_a_live_session(server, clients):
    c, sf = login(server, clients, "bob")
    c.setAgent("cli-test")
    uuid = c.getSessionId()
    listed = sessions_cli(server, "list", "--user", "bob")
    line = next(l for l in listed.splitlines() if l.startswith(uuid[:8]))
    assert "\tbob\t" in line
    assert uuid not in listed, "only a prefix of the bearer token is printed"
    assert "bob" not in sessions_cli(server, "list", "--user", "alice")

    sessions_cli(server, "close", uuid)

    def refused():
        try:
            sf.getAdminService().getEventContext()
            return False
        except Exception:
            return True
    assert wait_until(refused, timeout=5)
    with pytest.raises((Glacier2.PermissionDeniedException, omero.RemovedSessionException)):
        join(server, clients, uuid)
    assert uuid[:8] not in sessions_cli(server, "list")
