"""Ice 3.7 (Debian's python3-zeroc-ice) over the ws and wss listeners: built-in operations in
both encodings, a Glacier2 login through Ice.Default.Router with a callback adapter, and
graceful closes from either side."""

import Glacier2
import Ice
import pytest

from conftest import Server, free_port
from test_glacier2 import login_context, same_connection
from test_ping import ROUTER_IDS, communicator

USERS = {"alice": "alicepw"}


@pytest.fixture(scope="module")
def websocket_server():
    ports = {"ws": free_port(), "wss": free_port()}
    s = Server(
        f'ws = "127.0.0.1:{ports["ws"]}"\nwss = "127.0.0.1:{ports["wss"]}"\n',
        users=USERS,
    )
    s.ws_ports = ports
    yield s
    code = s.proc.poll()
    s.stop()
    assert code is None, "server died during the tests"


def endpoint(server, transport, resource=None):
    r = f" -r {resource}" if resource else ""
    return f"{transport} -h 127.0.0.1 -p {server.ws_ports[transport]}{r}"


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "bzip2"])
@pytest.mark.parametrize("encoding", ["1.0", "1.1"])
@pytest.mark.parametrize("transport", ["ws", "wss"])
def test_router_builtins(websocket_server, transport, encoding, compress):
    ic = communicator()
    try:
        z = " -z" if compress else ""
        prx = ic.stringToProxy(
            f'"OMERO.Glacier2/router" -e {encoding}:{endpoint(websocket_server, transport)}{z}')
        prx.ice_ping()
        assert prx.ice_isA("::Glacier2::Router")
        assert prx.ice_ids() == ROUTER_IDS
        # Bigger than one WebSocket frame of the server's output and of Ice's write buffer.
        assert not prx.ice_isA("::Not::There" + "x" * 100000)
        assert prx.ice_getConnection().type() == transport
        prx.ice_getConnection().close(Ice.ConnectionClose.GracefullyWithWait)
        # A new connection after the graceful close works too.
        prx.ice_ping()
    finally:
        ic.destroy()


def test_any_resource_path_is_served(websocket_server):
    ic = communicator()
    try:
        prx = ic.stringToProxy(
            f'"OMERO.Glacier2/router":{endpoint(websocket_server, "ws", "/omero-ws")}')
        prx.ice_ping()
    finally:
        ic.destroy()


@pytest.mark.parametrize("encoding", ["1.0", "1.1"])
@pytest.mark.parametrize("transport", ["ws", "wss"])
def test_glacier2_login_through_the_default_router(websocket_server, transport, encoding):
    router_text = f"OMERO.Glacier2/router:{endpoint(websocket_server, transport)}"
    ic = communicator(**{
        "Ice.Default.Router": router_text,
        "Ice.Default.EncodingVersion": encoding,
    })
    try:
        router = Glacier2.RouterPrx.checkedCast(ic.stringToProxy(router_text))
        assert router is not None
        session = router.createSession("alice", USERS["alice"], login_context())
        assert session is not None
        assert session.ice_getRouter() is not None, "the session proxy is not routed"

        # The server proxy's endpoints are published in callback proxies: they must be
        # of this transport and not the router's own (or Ice would think them local).
        server_proxy = router.getServerProxy()
        assert server_proxy is not None
        ends = server_proxy.ice_getEndpoints()
        assert ends and all(e.getInfo().type() == router.ice_getEndpoints()[0].getInfo().type()
                            for e in ends)

        adapter = ic.createObjectAdapterWithRouter("callbacks", router)
        category = router.getCategoryForClient()
        callback = adapter.createProxy(Ice.Identity("cb", category))
        assert callback.ice_getEndpoints()
        adapter.activate()

        session.ice_ping()
        assert session.ice_isA("::omero::api::ServiceFactory")
        assert same_connection(session.ice_getConnection(), router.ice_getConnection())
        assert session.ice_getConnection().type() == transport
        router.destroySession()
        with pytest.raises(Ice.ObjectNotExistException):
            session.ice_ping()
    finally:
        ic.destroy()


def test_server_shutdown_closes_websocket_clients_gracefully(make_server):
    port = free_port()
    s = make_server(f'ws = "127.0.0.1:{port}"\n')
    ic = communicator()
    try:
        prx = ic.stringToProxy(f'"OMERO.Glacier2/router":ws -h 127.0.0.1 -p {port}')
        prx.ice_ping()
        s.proc.terminate()
        assert s.proc.wait(timeout=30) == 0
        # The client saw an orderly close: its next call fails to connect, not mid-reply.
        with pytest.raises(Ice.ConnectFailedException):
            prx.ice_ping()
    finally:
        ic.destroy()
