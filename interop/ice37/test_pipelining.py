"""Ice 3.7 against omero-sessiond: many requests outstanding on one connection at once, and
bursts of oneways, all on the connection the first call opened."""

import os
import tempfile
import threading

import Ice
import pytest

from test_ping import proxy

# Hang guard per future; the calls themselves take milliseconds.
GUARD = 60


class NetworkLog:
    """The client's network traces, written by Ice to a file, so a test can count the
    connections its client opened. (A Python Ice.Logger can deadlock against Ice's own
    threads; a log file cannot.)"""

    def __init__(self):
        fd, self.path = tempfile.mkstemp(prefix="ice37-net-", suffix=".log")
        os.close(fd)

    def established(self):
        with open(self.path) as f:
            return sum(1 for line in f if line.startswith("-- ") and "established" in line)

    def remove(self):
        os.unlink(self.path)


@pytest.fixture
def netlog():
    log = NetworkLog()
    yield log
    log.remove()


def communicator(netlog):
    data = Ice.InitializationData()
    data.properties = Ice.createProperties()
    for k, v in {
        "Ice.Plugin.IceSSL": "IceSSL:createIceSSL",
        "IceSSL.VerifyPeer": "0",
        "Ice.Override.ConnectTimeout": "5000",
        "Ice.RetryIntervals": "-1",
        "Ice.Trace.Network": "1",
        "Ice.LogFile": netlog.path,
    }.items():
        data.properties.setProperty(k, v)
    return Ice.initialize(data)


def same_connection(a, b):
    return a is b or a == b


def watch_close(conn):
    closed = threading.Event()
    conn.setCloseCallback(lambda c: closed.set())
    return closed


@pytest.mark.parametrize("encoding", ["1.0", "1.1"])
@pytest.mark.parametrize("transport", ["tcp", "ssl"])
def test_200_pipelined_pings(server, netlog, transport, encoding):
    ic = communicator(netlog)
    try:
        prx = proxy(ic, server, transport, encoding=encoding)
        conn = prx.ice_getConnection()
        closed = watch_close(conn)
        # More than the server's 100 concurrent dispatches per connection: the rest wait
        # for a slot, and every one must still be answered.
        futures = [prx.ice_pingAsync() for _ in range(200)]
        for f in futures:
            assert f.result(GUARD) is None
        assert not closed.is_set()
        assert netlog.established() == 1
        prx.ice_ping()
        assert same_connection(prx.ice_getConnection(), conn)
        assert netlog.established() == 1
    finally:
        ic.destroy()


@pytest.mark.parametrize("transport", ["tcp", "ssl"])
def test_pipelined_replies_match_their_requests(server, netlog, transport):
    # Answers differ by request, so a reply paired with the wrong request id shows up.
    ic = communicator(netlog)
    try:
        prx = proxy(ic, server, transport)
        conn = prx.ice_getConnection()
        ids = ["::Glacier2::Router" if i % 3 == 0 else f"::Not::There{i}" for i in range(200)]
        futures = [prx.ice_isAAsync(type_id) for type_id in ids]
        # Unknown identities in between: ObjectNotExist replies interleave with OK ones.
        missing = [
            proxy(ic, server, transport, identity=f"nobody/n{i}").ice_pingAsync()
            for i in range(50)
        ]
        got = [f.result(GUARD) for f in futures]
        assert got == [i % 3 == 0 for i in range(200)]
        for i, f in enumerate(missing):
            e = f.exception(GUARD)
            assert isinstance(e, Ice.ObjectNotExistException)
            assert e.id == Ice.Identity(f"n{i}", "nobody")
        assert netlog.established() == 1
        assert same_connection(prx.ice_getCachedConnection(), conn)
    finally:
        ic.destroy()


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "bzip2"])
@pytest.mark.parametrize("transport", ["tcp", "ssl"])
def test_oneway_burst_then_twoway(server, netlog, transport, compress):
    ic = communicator(netlog)
    try:
        prx = proxy(ic, server, transport, compress=compress)
        conn = prx.ice_getConnection()
        closed = watch_close(conn)
        oneway = prx.ice_oneway()
        assert same_connection(oneway.ice_getConnection(), conn)
        # Oneways to an unknown object as well: the server must not answer those either,
        # not even with ObjectNotExist.
        lost = proxy(ic, server, transport, identity="nobody/oneway", compress=compress)
        lost = lost.ice_oneway()
        for i in range(500):
            oneway.ice_ping()
            if i % 5 == 0:
                lost.ice_ping()
        assert prx.ice_isA("::Glacier2::Router")
        assert same_connection(prx.ice_getConnection(), conn)
        assert not closed.is_set()
        assert netlog.established() == 1
    finally:
        ic.destroy()


def test_async_oneway_burst_interleaved_with_twoways(server, netlog):
    ic = communicator(netlog)
    try:
        prx = proxy(ic, server, "tcp")
        conn = prx.ice_getConnection()
        oneway = prx.ice_oneway()
        sent = []
        twoways = []
        for i in range(500):
            sent.append(oneway.ice_pingAsync())
            if i % 50 == 0:
                twoways.append(prx.ice_pingAsync())
        for f in sent:
            # A oneway future completes once the request is written.
            assert f.result(GUARD) is None
        for f in twoways:
            assert f.result(GUARD) is None
        prx.ice_ping()
        assert netlog.established() == 1
        assert same_connection(prx.ice_getCachedConnection(), conn)
    finally:
        ic.destroy()


def test_batch_of_300_oneways_then_twoway(server, netlog):
    ic = communicator(netlog)
    try:
        prx = proxy(ic, server, "tcp")
        conn = prx.ice_getConnection()
        batch = prx.ice_batchOneway()
        for _ in range(300):
            batch.ice_ping()
        batch.ice_flushBatchRequests()
        prx.ice_ping()
        assert same_connection(prx.ice_getConnection(), conn)
        assert netlog.established() == 1
    finally:
        ic.destroy()
