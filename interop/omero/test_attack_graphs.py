"""Hostile class graphs from a logged-in omero-py user (issue 8, items 3 and 5).

- A chain of 20 000 nested RLists stored with setInput in encoding 1.0 (a flat instance list)
  and read back in 1.1 (nested as deep as the chain is long) must not kill the server.
- One sliced 1.1 instance naming a long type id by index in thousands of slices (sent as raw
  bytes with ice_invoke: a real client cannot craft it) must not make the server grow.

Both run against a server of their own, so a crash here cannot take other tests with it.
"""
import struct
import subprocess
import sys
import textwrap

import pytest

import Ice
import omero
from omero.rtypes import rlist, rlong

from conftest import PASSWORDS, make_server

DEPTH = 20000


@pytest.fixture(scope="module")
def own_server():
    srv = make_server()
    yield srv
    srv.stop()


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for %d" % pid)


def assert_alive_and_answering(srv, clients):
    assert srv.proc.poll() is None, "omero-sessiond exited with %s" % srv.proc.returncode
    c = srv.client()
    clients.append(c)
    sf = c.createSession("bob", PASSWORDS["bob"])
    uuid = c.getSessionId()
    assert sf.getSessionService().getSession(uuid).getUuid().getValue() == uuid


def deep_chain(depth):
    v = rlong(7)
    for _ in range(depth):
        v = rlist([v])
    return v


# Reads the chain back in a process of its own, so that whatever the client's decoder makes
# of a graph this deep cannot take pytest down with it. Ice 3.6.5 for Python decodes a 1.1
# graph recursively, once per level, with no depth limit: on a default 8 MiB stack it
# overflows at 20 000 levels. The reader therefore makes the call on a thread with a 1 GiB
# stack (and gives Ice's own threads as much), and keeps no reference to the chain when it
# exits (CPython frees a chain recursively too).
READER = textwrap.dedent("""
    import sys, threading
    import omero, omero.clients
    host, port, uuid = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    sys.setrecursionlimit(1000000)
    threading.stack_size(1 << 30)
    c = omero.client(host="tcp://%s:%d" % (host, port),
                     pmap={"Ice.Default.EncodingVersion": "1.1",
                           "Ice.ThreadPool.Client.StackSize": str(1 << 30)})
    def read():
        try:
            sf = c.joinSession(uuid)
            v = sf.getSessionService().getInput(uuid, "deep")
            n = 0
            while isinstance(v, omero.RList):
                n += 1
                v = v.getValue()[0]
            print("read", n, flush=True)
        except Exception as e:
            print("raised", type(e).__name__, str(e)[:200].replace("\\n", " "), flush=True)
    t = threading.Thread(target=read)
    t.start()
    t.join()
    sys.stdout.flush()
    import os
    os._exit(0)
""")


def test_deep_rlist_chain_in_1_0_read_back_in_1_1(own_server, clients):
    # omero-py marshals classes in 1.0 as a flat list, so building and sending the chain
    # needs no deep recursion on the client; dropping it in CPython is recursive, hence
    # the raised recursion limit for this test
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old_limit, 4 * DEPTH))
    try:
        writer = own_server.client(secure=False, **{"Ice.Default.EncodingVersion": "1.0"})
        clients.append(writer)
        sf = writer.createSession("alice", PASSWORDS["alice"])
        uuid = writer.getSessionId()
        svc = sf.getSessionService()
        svc.setInput(uuid, "deep", deep_chain(DEPTH))
        # read back in 1.0 by the writer: the whole chain
        v = svc.getInput(uuid, "deep")
        n = 0
        while isinstance(v, omero.RList):
            n += 1
            v = v.getValue()[0]
        assert n == DEPTH and v.getValue() == 7
        del v

        res = subprocess.run(
            [sys.executable, "-c", READER, "127.0.0.1", str(own_server.tcp_port), uuid],
            capture_output=True, text=True, timeout=600)
        out = res.stdout.strip()
        print("1.1 reader:", res.returncode, out, res.stderr[-500:])
        # the server wrote the whole chain, nested, and ZeroC's decoder read it back
        assert out == "read %d" % DEPTH, (res.returncode, out, res.stderr[-2000:])
        assert_alive_and_answering(own_server, clients)
        # and the stored value is still there for the writer
        assert svc.getInputKeys(uuid) == ["deep"]
    finally:
        sys.setrecursionlimit(old_limit)


def ice_string(s):
    b = s.encode()
    if len(b) < 255:
        return bytes([len(b)]) + b
    return b"\xff" + struct.pack("<i", len(b)) + b


def ice_size(n):
    return bytes([n]) if n < 255 else b"\xff" + struct.pack("<i", n)


def amplifying_set_input(uuid, type_id_len, slices):
    """setInput(uuid, "k", v) in 1.1, `v` one instance of unknown type in the sliced
    format: the type id written once, then named by index in every further slice."""
    string, index, has_size, is_last = 0x01, 0x02, 0x10, 0x20
    body = bytearray(ice_string(uuid) + ice_string("k") + ice_size(1))
    last = lambda i: is_last if i + 1 == slices else 0  # noqa: E731
    body += bytes([string | has_size | last(0)])
    body += ice_string("::X" + "x" * (type_id_len - 3)) + struct.pack("<i", 4)
    for i in range(1, slices):
        body += bytes([index | has_size | last(i)]) + ice_size(1) + struct.pack("<i", 4)
    return struct.pack("<i", len(body) + 6) + b"\x01\x01" + bytes(body)


def test_sliced_type_id_amplification_stays_bounded(own_server, clients):
    c = own_server.client(secure=False)
    clients.append(c)
    sf = c.createSession("alice", PASSWORDS["alice"])
    uuid = c.getSessionId()
    svc = sf.getSessionService()
    pid = own_server.proc.pid
    before = rss_kib(pid)
    # the request of the finding (212 kB): 382 MiB on the server that had the bug
    attack = amplifying_set_input(uuid, 200000, 2000)
    assert 200000 < len(attack) < 220000
    for _ in range(5):
        with pytest.raises(Ice.UnknownLocalException) as exc:
            svc.ice_invoke("setInput", Ice.OperationMode.Idempotent, attack)
        assert "type id of 200000 bytes" in exc.value.unknown
    # a short id in too many slices
    with pytest.raises(Ice.UnknownLocalException) as exc:
        svc.ice_invoke("setInput", Ice.OperationMode.Idempotent,
                       amplifying_set_input(uuid, 1000, 2000))
    assert "more than 100 slices" in exc.value.unknown
    # within the limits it is a value like any other, and comes back whole
    ok, _ = svc.ice_invoke("setInput", Ice.OperationMode.Idempotent,
                           amplifying_set_input(uuid, 1000, 100))
    assert ok
    after = rss_kib(pid)
    print("VmRSS before %d KiB, after %d KiB" % (before, after))
    assert after - before < 64 * 1024, (before, after)
    assert_alive_and_answering(own_server, clients)
