"""The issue's scenario, exactly as an omero-py user writes it, over TLS and plain TCP."""
import pytest

import Glacier2

from conftest import PASSWORDS


@pytest.mark.parametrize("secure", [True, False], ids=["ssl", "tcp"])
def test_login_detach_rejoin(server, secure):
    client = server.client(secure=secure)
    sf = client.createSession("alice", PASSWORDS["alice"])
    iadmin = sf.getAdminService()
    olduuid = iadmin.getEventContext().sessionUuid
    assert olduuid == client.getSessionId()
    sf.detachOnDestroy()
    client.__del__()

    client = server.client(secure=secure)
    try:
        sf = client.joinSession(olduuid)
        assert client.getSessionId() == olduuid
        session = sf.getSessionService().getSession(olduuid)
        assert session.getUuid().getValue() == olduuid
        assert session.getClosed() is None
    finally:
        client.killSession()


def test_session_proxy_identity(server, clients):
    client = server.client()
    clients.append(client)
    sf = client.createSession("alice", PASSWORDS["alice"])
    ident = sf.ice_getIdentity()
    assert ident.category.startswith("session-")
    assert ident.category[len("session-"):] == client.getImplicitContext().get("omero.client.uuid")
    assert sf.ice_isA("::omero::api::ServiceFactory")
    assert sf.ice_isA("::Glacier2::Session")


def test_close_session_kills_it(server):
    client = server.client()
    client.createSession("alice", PASSWORDS["alice"])
    uuid = client.getSessionId()
    client.closeSession()
    other = server.client()
    try:
        with pytest.raises(Glacier2.PermissionDeniedException) as exc:
            other.joinSession(uuid)
        assert uuid in exc.value.reason
    finally:
        other.__del__()
