"""Finding 6 of issue 8: bearer tokens in the log.

A server logging at TRACE, in JSON, serves real omero-py clients through every path that
carries a secret: password logins over ssl and tcp, a wrong password, a join with the session
uuid as the password, changePassword, the HTTPS endpoint, closeSession. Afterwards its log
must hold no password at any level, and no whole session uuid at INFO or above.
"""
import json
import os
import ssl
import urllib.request

import omero

from conftest import PASSWORDS, make_server

SECRET_NEW = "N3w-Secret-For-Alice"
WRONG = "Wr0ng-Guess-Zz9"


def post_json(port, body):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    req = urllib.request.Request(
        "https://127.0.0.1:%d/omero/session/create" % port,
        data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json"})
    with urllib.request.urlopen(req, context=ctx, timeout=60) as resp:
        return json.loads(resp.read())


def test_no_password_and_no_whole_session_key_in_the_log(clients):
    old = os.environ.get("RUST_LOG")
    os.environ["RUST_LOG"] = "trace"
    try:
        srv = make_server("json_logs = true\n")
    finally:
        if old is None:
            del os.environ["RUST_LOG"]
        else:
            os.environ["RUST_LOG"] = old
    keys = []
    try:
        for secure in (True, False):
            c = srv.client(secure=secure)
            clients.append(c)
            sf = c.createSession("bob", PASSWORDS["bob"])
            keys.append(sf.ice_getIdentity().name)
            c.closeSession()
        bad = srv.client()
        clients.append(bad)
        try:
            bad.createSession("bob", WRONG)
            raise AssertionError("a wrong password logged in")
        except Exception as e:  # PermissionDeniedException through omero-py's wrapper
            assert "Password check failed" in str(e) or "PermissionDenied" in type(e).__name__
        c = srv.client()
        clients.append(c)
        sf = c.createSession("carol", PASSWORDS["carol"])
        uuid = sf.ice_getIdentity().name
        keys.append(uuid)
        c.getSession().detachOnDestroy()
        joiner = srv.client()
        clients.append(joiner)
        sf2 = joiner.joinSession(uuid)
        sf2.setSecurityPassword(PASSWORDS["carol"])
        sf2.getAdminService().changePassword(omero.rtypes.rstring(SECRET_NEW))
        sf2.getSessionService().closeSession(sf2.getSessionService().getSession(uuid))
        key = post_json(srv.https_port, {"omeroHost": "127.0.0.1", "username": "alice",
                                         "password": PASSWORDS["alice"]})["sessionKey"]
        keys.append(key)
    finally:
        srv.stop()
    raw = srv.log.name and open(srv.log.name, encoding="utf-8", errors="replace").read()
    assert raw.count("\n") > 20, "the log was captured at trace level"
    for secret in (PASSWORDS["bob"], PASSWORDS["carol"], PASSWORDS["alice"], WRONG, SECRET_NEW):
        assert secret not in raw, "a password (%r) is in the log" % secret
    loud = [line for line in raw.splitlines()
            if '"level":"INFO"' in line or '"level":"WARN"' in line or '"level":"ERROR"' in line]
    assert loud, "INFO lines were logged"
    assert any(k[:8] in line for k in keys for line in loud), "sessions are still named by prefix"
    for key in keys:
        for line in loud:
            assert key not in line, "a whole session key at INFO or above: %s" % line
