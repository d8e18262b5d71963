"""The HTTPS session endpoint (spec §9, OME Smuggler's POST /omero/session/create), used the
way a service acting later for a user would: get a key over HTTPS, let the server keep the
session alive, join it with omero-py, close it with killSession()."""
import json
import ssl
import time
import urllib.error
import urllib.request

import Glacier2
import pytest

import omero

from conftest import PASSWORDS, join, wait_for_port, wait_until

PATH = "/omero/session/create"
JSON = {"Content-Type": "application/json", "Accept": "application/json"}


def request(srv, body, headers=JSON, method="POST", path=PATH):
    """One HTTPS request; returns (status, headers, parsed JSON body)."""
    wait_for_port(srv.https_port, srv.proc)
    if not isinstance(body, bytes):
        body = json.dumps(body).encode("utf-8")
    req = urllib.request.Request(
        "https://127.0.0.1:%d%s" % (srv.https_port, path),
        data=body if method != "GET" else None, headers=dict(headers), method=method)
    # The server's certificate is self-signed.
    ctx = ssl._create_unverified_context()
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            return resp.status, resp.headers, json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, err.headers, json.loads(raw.decode("utf-8")) if raw else None


def create(srv, user="alice", keep_alive=None, password=None):
    body = {"omeroHost": "127.0.0.1", "omeroPort": str(srv.ssl_port), "username": user,
            "password": PASSWORDS[user] if password is None else password}
    if keep_alive is not None:
        body["keepAliveDuration"] = str(keep_alive)
    status, _, answer = request(srv, body)
    assert status == 200, answer
    assert list(answer) == ["sessionKey"]
    return answer["sessionKey"]


def login_root(srv, clients):
    # PASSWORDS["root"] holds the root password of whichever server started last; read this
    # server's own.
    c = srv.client()
    clients.append(c)
    return c, c.createSession("root", srv.root_password())


def quiet_lookup(sf, uuid):
    return sf.getSessionService().ice_context({"quietly": "true"}).getSession(uuid)


def is_removed(sf, uuid):
    try:
        quiet_lookup(sf, uuid)
    except omero.RemovedSessionException:
        return True
    except omero.SessionTimeoutException:
        return False
    return False


def test_key_joins_as_the_user_in_a_fresh_unheld_session(server, clients):
    key = create(server, user="dave")
    c, sf = join(server, clients, key)
    ec = sf.getAdminService().getEventContext()
    assert ec.userName == "dave"
    assert ec.sessionUuid == key
    assert ec.groupName == "lab"
    svc = sf.getSessionService()
    s = svc.getSession(key)
    assert s.getTimeToLive().getValue() == 0
    assert s.getTimeToIdle().getValue() == 600000
    assert s.getUserAgent().getValue() == "omero-sessiond.rest"
    # The endpoint's reference plus this join.
    assert svc.getReferenceCount(key) == 2
    # Leaving in close mode drops only the join's reference: the session survives.
    c.closeSession()
    root, rsf = login_root(server, clients)
    assert quiet_lookup(rsf, key).getUuid().getValue() == key
    assert rsf.getSessionService().getReferenceCount(key) == 1
    again, asf = join(server, clients, key)
    again.killSession()
    assert wait_until(lambda: is_removed(rsf, key))


def test_kill_session_ends_it_and_the_key_is_refused(server, clients):
    key = create(server, keep_alive=600000)
    c, sf = join(server, clients, key)
    sf.getAdminService().getEventContext()
    c.killSession()
    root, rsf = login_root(server, clients)
    assert wait_until(lambda: is_removed(rsf, key))
    late = server.client()
    clients.append(late)
    with pytest.raises(Glacier2.PermissionDeniedException):
        late.joinSession(key)


def test_keep_alive_holds_it_past_the_idle_timeout_then_it_expires(fast_server, clients):
    # fast_server: time_to_idle 2 s, reaper every 200 ms.
    keep_alive_ms = 5000
    t0 = time.monotonic()
    key = create(fast_server, keep_alive=keep_alive_ms)
    time.sleep(3.0)
    # Nobody used it for longer than its idle timeout; the keep-alive held it.
    c, sf = join(fast_server, clients, key)
    ec = sf.getAdminService().getEventContext()
    assert ec.sessionUuid == key and ec.userName == "alice"
    c.closeSession()
    watcher, wsf = login_root(fast_server, clients)
    # Watch with quiet lookups only, so the watcher itself refreshes nothing.
    assert quiet_lookup(wsf, key).getUuid().getValue() == key
    # Past the keep-alive plus one idle timeout, it dies of idleness.
    assert wait_until(lambda: is_removed(wsf, key), timeout=30.0, step=0.1)
    died = time.monotonic() - t0
    assert died >= keep_alive_ms / 1000.0, died
    assert died < keep_alive_ms / 1000.0 + 2.0 + 5.0, died
    late = fast_server.client()
    clients.append(late)
    with pytest.raises(Glacier2.PermissionDeniedException):
        late.joinSession(key)


def test_a_short_keep_alive_lets_it_idle_out(fast_server, clients):
    key = create(fast_server, keep_alive=1)
    watcher, wsf = login_root(fast_server, clients)
    assert wait_until(lambda: is_removed(wsf, key), timeout=15.0, step=0.1)


def test_kill_session_stops_the_keep_alive(fast_server, clients):
    key = create(fast_server, keep_alive=600000)
    c, sf = join(fast_server, clients, key)
    c.killSession()
    watcher, wsf = login_root(fast_server, clients)
    assert wait_until(lambda: is_removed(wsf, key))
    # Well past an idle timeout, the key is still dead: nothing revived or held it. (A new
    # watcher: the first one idled out meanwhile.)
    time.sleep(2.5)
    later, lsf = login_root(fast_server, clients)
    assert is_removed(lsf, key)


REFUSALS = [
    ({}, "omeroHost, omeroPort: no input\nusername: no input\npassword: no input\n"),
    ({"omeroHost": "h", "omeroPort": "0", "username": "alice", "password": "x"},
     "omeroHost, omeroPort: not a positive integer: 0\n"),
    ({"omeroHost": "h", "omeroPort": "abc", "username": "alice", "password": "x"},
     'omeroHost, omeroPort: For input string: "abc"\n'),
    ({"omeroHost": "h", "username": "", "password": "x"}, "username: no input\n"),
    ({"omeroHost": "h", "username": "alice", "password": ""}, "password: no input\n"),
    ({"omeroHost": "h", "username": "alice", "password": "x", "keepAliveDuration": "0"},
     "keepAliveDuration: not a positive integer: 0\n"),
    ({"omeroHost": "h", "username": "alice", "password": "x", "keepAliveDuration": "soon"},
     'keepAliveDuration: For input string: "soon"\n'),
    (None, "no create session request"),
]


@pytest.mark.parametrize("body,reason", REFUSALS)
def test_malformed_requests_get_smugglers_reasons(server, body, reason):
    status, _, answer = request(server, body)
    assert status == 400
    assert answer == {"reason": reason}


def test_wrong_credentials_look_the_same(fast_server):
    # On this module's own server, so the failures count against no other test's logins.
    wrong = request(fast_server, {"omeroHost": "h", "username": "bob", "password": "nope"})
    unknown = request(fast_server, {"omeroHost": "h", "username": "zed", "password": "nope"})
    for status, _, answer in (wrong, unknown):
        assert status == 400
        assert answer == {"reason": "cannot create session"}


def test_http_level_refusals_are_json(server):
    body = {"omeroHost": "h", "username": "alice", "password": PASSWORDS["alice"]}
    status, _, answer = request(server, body, headers={"Content-Type": "application/json",
                                                        "Accept": "text/html"})
    assert status == 406 and answer["reason"]
    status, _, answer = request(server, body, headers={"Content-Type": "text/plain"})
    assert status == 415 and answer["reason"]
    status, _, answer = request(server, b"{" + b" " * 20000 + b"}")
    assert status == 413 and answer["reason"]
    status, headers, answer = request(server, b"", method="GET")
    assert status == 405 and headers["Allow"] == "POST" and answer["reason"]
    status, _, answer = request(server, body, path="/omero/nothing")
    assert status == 404 and answer["reason"]
    status, _, answer = request(server, b"")
    assert status == 400 and answer["reason"]
