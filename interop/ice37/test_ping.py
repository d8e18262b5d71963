"""Ice 3.7 (Debian's python3-zeroc-ice) against omero-sessiond: built-in operations over tcp
and ssl, encodings 1.0 and 1.1, compressed and not, and ACM heartbeats."""

import threading
import time

import Ice
import pytest

ROUTER_IDS = ["::Glacier2::Router", "::Ice::Object", "::Ice::Router"]


def communicator(**extra):
    data = Ice.InitializationData()
    data.properties = Ice.createProperties()
    props = {
        "Ice.Plugin.IceSSL": "IceSSL:createIceSSL",
        "IceSSL.VerifyPeer": "0",
        "Ice.Override.ConnectTimeout": "5000",
        "Ice.RetryIntervals": "-1",
    }
    props.update(extra)
    for k, v in props.items():
        data.properties.setProperty(k, v)
    return Ice.initialize(data)


def proxy(ic, server, transport, identity="OMERO.Glacier2/router", encoding="1.1", compress=False):
    z = " -z" if compress else ""
    text = f'"{identity}" -e {encoding}:{transport} -h 127.0.0.1 -p {server.port(transport)}{z}'
    return ic.stringToProxy(text)


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "bzip2"])
@pytest.mark.parametrize("encoding", ["1.0", "1.1"])
@pytest.mark.parametrize("transport", ["tcp", "ssl"])
def test_router_builtins(server, transport, encoding, compress):
    ic = communicator()
    try:
        prx = proxy(ic, server, transport, encoding=encoding, compress=compress)
        prx.ice_ping()
        assert prx.ice_isA("::Glacier2::Router")
        assert prx.ice_isA("::Ice::Router")
        assert not prx.ice_isA("::omero::api::ServiceFactory")
        # A request above 100 bytes goes out bzip2-compressed with -z.
        assert not prx.ice_isA("::Not::There" + "x" * 300)
        assert prx.ice_ids() == ROUTER_IDS
        assert prx.ice_id() == "::Glacier2::Router"
        ctx = {"omero.client.uuid": "u" * 200}
        prx.ice_ping(ctx)
        assert prx.ice_getConnection().type() == transport
    finally:
        ic.destroy()


@pytest.mark.parametrize("encoding", ["1.0", "1.1"])
@pytest.mark.parametrize("transport", ["tcp", "ssl"])
def test_unknown_identity(server, transport, encoding):
    ic = communicator()
    try:
        prx = proxy(ic, server, transport, identity="nobody/xyz", encoding=encoding)
        with pytest.raises(Ice.ObjectNotExistException) as e:
            prx.ice_ping()
        assert e.value.id == Ice.Identity("xyz", "nobody")
        assert e.value.operation == "ice_ping"
    finally:
        ic.destroy()


@pytest.mark.parametrize("transport", ["tcp", "ssl"])
def test_compressed_reply_is_understood(server, transport):
    # An ObjectNotExist reply repeats the identity: with a long name it passes 100 bytes
    # and goes back bzip2-compressed to a -z client.
    ic = communicator()
    try:
        name = "n" * 400
        prx = proxy(ic, server, transport, identity=f"cat/{name}", compress=True)
        with pytest.raises(Ice.ObjectNotExistException) as e:
            prx.ice_ping()
        assert e.value.id == Ice.Identity(name, "cat")
    finally:
        ic.destroy()


def test_oneway_and_batch(server):
    ic = communicator()
    try:
        prx = proxy(ic, server, "tcp")
        for _ in range(50):
            prx.ice_oneway().ice_ping()
        batch = prx.ice_batchOneway()
        batch.ice_ping()
        batch.ice_ping()
        batch.ice_flushBatchRequests()
        prx.ice_ping()
    finally:
        ic.destroy()


def watch_close(conn):
    closed = threading.Event()
    conn.setCloseCallback(lambda c: closed.set())
    return closed


@pytest.mark.parametrize("transport", ["tcp", "ssl"])
def test_client_heartbeats_keep_the_connection(server, transport):
    ic = communicator(**{
        "Ice.ACM.Client.Heartbeat": "3",
        "Ice.ACM.Client.Timeout": "2",
    })
    try:
        prx = proxy(ic, server, transport)
        prx.ice_ping()
        conn = prx.ice_getConnection()
        closed = watch_close(conn)
        time.sleep(5)
        assert not closed.is_set()
        prx.ice_ping()
        assert prx.ice_getConnection() is conn or prx.ice_getConnection() == conn
    finally:
        ic.destroy()


def test_server_heartbeats_keep_an_idle_client(make_server):
    # The client neither heartbeats nor calls: only the server's heartbeats count as
    # activity, and its default ACM (close on idle) must not fire.
    s = make_server("[connection]\nheartbeat_secs = 1\n")
    ic = communicator(**{
        "Ice.ACM.Client.Heartbeat": "0",
        "Ice.ACM.Client.Timeout": "3",
    })
    try:
        prx = proxy(ic, s, "tcp")
        prx.ice_ping()
        closed = watch_close(prx.ice_getConnection())
        time.sleep(7)
        assert not closed.is_set()
    finally:
        ic.destroy()


def test_idle_client_without_server_heartbeats_is_closed_by_its_acm(make_server):
    # The control for the test above: same client, server heartbeats off.
    s = make_server("[connection]\nheartbeat_secs = 0\n")
    ic = communicator(**{
        "Ice.ACM.Client.Heartbeat": "0",
        "Ice.ACM.Client.Timeout": "2",
    })
    try:
        prx = proxy(ic, s, "tcp")
        prx.ice_ping()
        closed = watch_close(prx.ice_getConnection())
        assert closed.wait(30)
    finally:
        ic.destroy()


def test_sigterm_closes_connections_gracefully(make_server):
    # The server sends CloseConnection; the Ice client closes its end at once, so the server
    # exits well within its 10 s grace period, and the next call reconnects... to nothing.
    s = make_server()
    ic = communicator()
    try:
        prx = proxy(ic, s, "ssl")
        prx.ice_ping()
        closed = watch_close(prx.ice_getConnection())
        s.proc.terminate()
        assert s.proc.wait(timeout=30) == 0
        assert closed.wait(10)
        with pytest.raises(Ice.ConnectionRefusedException):
            prx.ice_ping()
    finally:
        ic.destroy()
