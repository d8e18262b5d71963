"""BlitzGateway's session side, unchanged, over ssl and tcp."""
import os
import tempfile

import pytest

import omero

from omero.gateway import BlitzGateway

from conftest import ENCODING, PASSWORDS


@pytest.fixture(params=["ssl", "tcp"])
def endpoint(request, server):
    if request.param == "ssl":
        return "127.0.0.1", server.ssl_port
    return "tcp://127.0.0.1", server.tcp_port


def ice_config():
    """BlitzGateway takes extra Ice configuration as files: one that sets the encoding."""
    if ENCODING != "1.0":
        return None
    fd, path = tempfile.mkstemp(suffix=".config")
    with os.fdopen(fd, "w") as f:
        f.write("Ice.Default.EncodingVersion=1.0\n")
    return [path]


def gateway(server, endpoint, user, **kw):
    host, port = endpoint
    pw = server.root_pw if user == "root" else PASSWORDS[user]
    conn = BlitzGateway(user, pw, host=host, port=port, extra_config=ice_config(), **kw)
    assert conn.connect(), "connect failed"
    return conn


def test_connect_context_and_groups(server, endpoint):
    conn = gateway(server, endpoint, "dave", useragent="gateway-test")
    try:
        ec = conn.getEventContext()
        assert ec.userName == "dave"
        # getUser() and getGroupsMemberOf() read through IQuery: see test_helpers_that_query.
        assert "lab" in [g.getName() for g in conn.listGroups()]
        assert conn.getGroupFromContext().getName() == "lab"
        assert not conn.isAdmin()
        assert not conn.isLeader()
        assert conn.keepAlive()
        assert conn.getConfigService().getVersion().startswith("5.")
        uuid = conn.getSession().getUuid().getValue()
        agent = conn.c.sf.getSessionService().getSession(uuid).userAgent.val
        assert agent == "gateway-test"
    finally:
        conn.close(hard=True)


def test_rejoin_with_session_key(server, endpoint):
    conn = gateway(server, endpoint, "alice")
    key = conn.getSession().getUuid().getValue()
    conn.c.sf.detachOnDestroy()
    conn.close(hard=False)
    host, port = endpoint
    again = BlitzGateway(host=host, port=port, extra_config=ice_config())
    try:
        assert again.connect(sUuid=key)
        assert again.getEventContext().sessionUuid == key
        assert again.getEventContext().userName == "alice"
    finally:
        again.close(hard=True)


def test_set_group_for_session_and_admin(server, endpoint):
    conn = gateway(server, endpoint, "root")
    try:
        assert conn.isAdmin()
        lab_id = conn.getAdminService().lookupGroup("lab").id.val
        assert conn.setGroupForSession(lab_id)
        assert conn.getEventContext().groupId == lab_id
        assert conn.getGroupFromContext().getId() == lab_id
    finally:
        conn.close(hard=True)


@pytest.mark.xfail(strict=True, raises=omero.ApiUsageException,
                   reason="omero-py 5.23 reads these through IQuery (HQL), which this server "
                          "does not provide")
@pytest.mark.parametrize("call", ["getGroupsMemberOf", "getUser"])
def test_helpers_that_query(server, call):
    conn = gateway(server, ("127.0.0.1", server.ssl_port), "dave")
    try:
        result = getattr(conn, call)()
        list(result) if call != "getUser" else result.getName()
    finally:
        conn.close(hard=True)
