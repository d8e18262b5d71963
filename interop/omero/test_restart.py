"""Sessions outlive the server process (issue 9): unchanged omero-py clients rejoin with the
session uuid after a graceful restart and after kill -9, with the same reference count and
input map, over tcp and ssl, and keys made by the HTTPS endpoint."""
import Glacier2
import pytest

import omero
from omero.rtypes import rstring, unwrap

from conftest import join, login, make_server


@pytest.fixture(scope="module")
def restart_server():
    srv = make_server()
    yield srv
    srv.stop()


def refcount(sf, uuid):
    return sf.getSessionService().getReferenceCount(uuid)


def bare_session(uuid):
    s = omero.model.SessionI()
    s.uuid = rstring(uuid)
    return s


def detach(client, sf):
    sf.detachOnDestroy()
    client.closeSession()


def test_seed_scenario_across_a_graceful_restart(restart_server, clients):
    srv = restart_server
    c, sf = login(srv, clients)
    uuid = c.getSessionId()
    sf.getSessionService().setInput(uuid, "job", rstring("segment-42"))
    detach(c, sf)

    srv.restart()

    c2, sf2 = join(srv, clients, uuid)
    assert c2.getSessionId() == uuid
    svc = sf2.getSessionService()
    assert unwrap(svc.getInput(uuid, "job")) == "segment-42"
    # The detach left no reference; this join holds one.
    assert refcount(sf2, uuid) == 1
    assert sf2.getAdminService().getEventContext().userName == "alice"
    assert svc.closeSession(bare_session(uuid)) == -2

    srv.restart()

    with pytest.raises(Glacier2.PermissionDeniedException) as refused:
        join(srv, clients, uuid)
    assert "closed=" in refused.value.reason


def test_counts_and_maps_survive_kill_9_on_every_listener(restart_server, clients):
    srv = restart_server
    c1, sf1 = login(srv, clients)
    uuid = c1.getSessionId()
    join(srv, clients, uuid, secure=False)
    svc = sf1.getSessionService()
    svc.setInput(uuid, "a", rstring("1"))
    svc.setInput(uuid, "b", omero.rtypes.rlong(7))
    svc.setInput(uuid, "b", omero.rtypes.rlong(8))
    svc.setOutput(uuid, "out", rstring("done"))
    assert refcount(sf1, uuid) == 2

    srv.restart(crash=True)

    # Neither client detached: both references are still held, and this join adds one.
    c3, sf3 = join(srv, clients, uuid, secure=False)
    svc3 = sf3.getSessionService()
    assert refcount(sf3, uuid) == 3
    assert unwrap(svc3.getInputs(uuid)) == {"a": "1", "b": 8}
    assert unwrap(svc3.getOutput(uuid, "out")) == "done"
    c4, sf4 = join(srv, clients, uuid, secure=True)
    assert refcount(sf4, uuid) == 4
    for expected in (3, 2, 1, -2):
        assert svc3.closeSession(bare_session(uuid)) == expected


def test_a_key_made_over_https_survives_kill_9(restart_server, clients):
    from test_http import create

    srv = restart_server
    key = create(srv, user="alice")

    srv.restart(crash=True)

    c, sf = join(srv, clients, key)
    assert c.getSessionId() == key
    svc = sf.getSessionService()
    assert unwrap(svc.getSession(key).getUserAgent()) == "omero-sessiond.rest"
    # The endpoint's reference plus this join.
    assert refcount(sf, key) == 2
    for expected in (1, -2):
        assert svc.closeSession(bare_session(key)) == expected


def test_a_damaged_database_stops_the_server_naming_the_file(tmp_path):
    import subprocess

    from conftest import BIN

    data = tmp_path / "data"
    data.mkdir()
    db = data / "omero-sessiond.db"
    db.write_bytes(b"not a database" * 1000)
    res = subprocess.run(
        [str(BIN), "serve", "--data", str(data), "--tcp", "127.0.0.1:0", "--ssl", "127.0.0.1:0",
         "--https", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert res.returncode != 0
    assert str(db) in res.stderr + res.stdout
    # Never a silent reset: the bytes are still there.
    assert db.read_bytes() == b"not a database" * 1000
