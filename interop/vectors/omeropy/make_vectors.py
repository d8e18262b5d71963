#!/usr/bin/env python3
"""Encoding vectors from omero-py 5.23 on Ice 3.6.5, and the check of the reverse direction.

Ice 3.6's Python mapping has no public stream API, so the bytes are taken off the wire:

* request vectors (`setInput`, `closeSession`, `createSessionWithTimeouts`): an omero-py proxy
  calls a tiny socket server in this script (`WireServer`), which keeps the parameters'
  encapsulation and answers with a well-formed reply;
* reply vectors (`getEventContext`, the only way an EventContext travels on its own): a raw
  socket client (`call_raw`) calls an omero-py servant, which returns the value; the reply
  encapsulation is the vector.

`--check FILE` runs the other way: FILE maps vector names to {"encoding", "params"} written by
another implementation. Request vectors are sent by the raw client to the omero-py servant,
reply vectors are served by the socket server to an omero-py proxy; either way omero-py
decodes them, and the decoded values must describe exactly as the vectors' "value" in
vectors.json (which is omero-py's own decoding of its own bytes).

Run with the venv's python: `interop/.venv/bin/python interop/vectors/omeropy/make_vectors.py`
writes vectors.json next to this file (see README.md).
"""

import argparse
import json
import os
import socket
import struct
import sys
import threading

import Ice
import omero
import omero.clients  # noqa: F401  (loads every generated type)
import omero.ObjectFactoryRegistrar
import omero.api
import omero.rtypes as R
import omero.sys
from omero.model import (
    DetailsI,
    ExperimenterGroupI,
    ExperimenterI,
    ImageI,
    PermissionsI,
    SessionI,
)

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(HERE, "vectors.json")
# Name suffix: (encoding, class format). 1.0 has one format only; 1.1 compact is the default.
VARIANTS = {"1_0": ((1, 0), "compact"), "1_1": ((1, 1), "compact"),
            "1_1_sliced": ((1, 1), "sliced")}
TIMEOUT = 10.0

# Ice protocol message types and operation modes used here.
REQUEST, REPLY, VALIDATE, CLOSE = 0, 2, 3, 4
NORMAL, IDEMPOTENT = 0, 2


# --- the values -------------------------------------------------------------------------


def permissions(text, restrictions=None, extended=None):
    p = PermissionsI(text)
    if restrictions is not None:
        p._restrictions = restrictions
    if extended is not None:
        p._extendedRestrictions = extended
    return p


def event_context():
    ec = omero.sys.EventContext()
    ec.shareId = -1
    ec.sessionId = 11
    ec.sessionUuid = "5b2f9c6e-8d1a-4f3b-9e7c-0a1b2c3d4e5f"
    ec.userId = 2
    ec.userName = "alice"
    ec.sudoerId = R.rlong(0)
    ec.sudoerName = None
    ec.groupId = 3
    ec.groupName = "lab"
    ec.isAdmin = False
    ec.adminPrivileges = ["ModifyUser", "Sudo"]
    ec.eventId = -1
    ec.eventType = "User"
    ec.memberOfGroups = [3, 1]
    ec.leaderOfGroups = [3]
    ec.groupPermissions = permissions("rwr---")
    return ec


def session():
    owner = ExperimenterI(2, True)
    owner.omeName = R.rstring("alice")
    owner.firstName = R.rstring("Alice")
    owner.lastName = R.rstring("Liddell")
    group = ExperimenterGroupI(3, True)
    group.name = R.rstring("lab")
    details = DetailsI()
    details.owner = owner
    details.group = group
    details.permissions = permissions("rwra--", [True, False, False, True], ["x.y"])
    details._call = {"omero.group": "3"}
    details._event = event_context()
    s = SessionI(11, True)
    s.version = R.rint(1)
    s.uuid = R.rstring("5b2f9c6e-8d1a-4f3b-9e7c-0a1b2c3d4e5f")
    # The same Experimenter instance as details.owner: sharing must survive the trip.
    s.owner = owner
    s.timeToIdle = R.rlong(600000)
    s.timeToLive = R.rlong(0)
    s.started = R.rtime(1700000000000)
    s.userAgent = R.rstring("OMERO.py")
    s.defaultEventType = R.rstring("User")
    s._annotationLinksCountPerOwner = {2: 1}
    s._details = details
    return s


def principal():
    p = omero.sys.Principal()
    p.name = "alice"
    p.group = "lab"
    p.eventType = "User"
    p.umask = permissions("rw----")
    return p


def image():
    img = ImageI(7, True)
    img.name = R.rstring("img")
    return img


def list_with_null():
    # rlist() refuses None, but a Slice sequence of class references may hold null.
    lst = R.rlist([])
    lst._val = [R.rstring("a"), None, R.rlong(3)]
    return lst


def big_list():
    # From 1: rint(0) is one cached instance in omero-py.
    ints = [R.rint(i) for i in range(1, 301)]
    return R.rlist([R.rstring("x" * 300)] + ints + [ints[0], ints[-1]])


def rtypes():
    shared = R.rstring("same")
    return {
        "null": None,
        "bool": R.rbool(True),
        "double": R.rdouble(3.141592653589793),
        "float": R.rfloat(1.5),
        "int": R.rint(-7),
        "long": R.rlong(1 << 40),
        "string": R.rstring("h\u00e9llo \u2713"),
        "class": R.rclass("Image"),
        "time": R.rtime(1700000000123),
        "array": R.rarray([R.rint(1), R.rint(2)]),
        "list": list_with_null(),
        "set": R.rset([R.rbool(False)]),
        "map": R.rmap({"k": R.rint(1)}),
        "object": R.robject(image()),
        "internal": R.rinternal(omero.Point(3, 4)),
        "nested": R.rmap(
            {
                "list": R.rlist(
                    [
                        R.rmap({"inner": R.rlist([R.rint(1), R.rstring("x")])}),
                        R.rlist([]),
                        R.rarray([R.rdouble(0.5)]),
                        shared,
                        shared,
                    ]
                )
            }
        ),
        # Sizes, instance indexes and 1.0 instance ids past 254.
        "big": big_list(),
        # Several keys: a receiver may write them back in any order.
        "map_multi": R.rmap({"a": R.rint(1), "b": R.rstring("two"), "c": R.rlist([])}),
    }


def calls():
    """Every vector but its encoding: (name, direction, operation, named params)."""
    out = [
        ("session", "request", "closeSession", [("sess", session())]),
        (
            "principal",
            "request",
            "createSessionWithTimeouts",
            [("principal", principal()), ("timeToLive", 600000), ("timeToIdle", 120000)],
        ),
        ("event_context", "reply", "getEventContext", [("return", event_context())]),
    ]
    for kind, value in rtypes().items():
        params = [("sess", "u"), ("key", "k"), ("value", value)]
        out.append(("rtype_" + kind, "request", "setInput", params))
    return out


MODES = {"closeSession": NORMAL, "createSessionWithTimeouts": NORMAL, "setInput": IDEMPOTENT,
         "getEventContext": IDEMPOTENT}


# --- describing values --------------------------------------------------------------------


def describe(value, seen=None):
    """A JSON tree of a value: classes as {"type", "@": n, "fields"}, a repeated instance as
    {"@ref": n}; fields are the Slice data members (omero-py's `_name` spelling undone,
    mangled private attributes of the `I` classes left out)."""
    if seen is None:
        seen = {}
    if isinstance(value, Ice.Object):
        if id(value) in seen:
            return {"@ref": seen[id(value)]}
        seen[id(value)] = n = len(seen)
        fields = {}
        for k in sorted(vars(value)):
            if "__" in k:
                continue
            fields[k.lstrip("_")] = describe(getattr(value, k), seen)
        return {"type": value.ice_id(), "@": n, "fields": fields}
    if isinstance(value, dict):
        return {str(k): describe(value[k], seen) for k in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [describe(v, seen) for v in value]
    if isinstance(value, bytes):
        return list(value)
    if isinstance(value, float):
        return {"float": repr(value)}
    return value


def describe_params(params):
    seen = {}
    return {name: describe(v, seen) for name, v in params}


# --- the wire ----------------------------------------------------------------------------


def size(n):
    return bytes([n]) if n < 255 else b"\xff" + struct.pack("<i", n)


def string(s):
    b = s.encode("utf-8")
    return size(len(b)) + b


def encaps(encoding, payload):
    return struct.pack("<i", 6 + len(payload)) + bytes(encoding) + payload


def message(kind, body):
    return b"IceP\x01\x00\x01\x00" + bytes([kind, 0]) + struct.pack("<i", 14 + len(body)) + body


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("truncated message")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def byte(self):
        return self.take(1)[0]

    def int(self):
        return struct.unpack("<i", self.take(4))[0]

    def size(self):
        n = self.byte()
        return self.int() if n == 255 else n

    def string(self):
        return self.take(self.size()).decode("utf-8")

    def encaps(self):
        n = self.int()
        encoding = (self.byte(), self.byte())
        return encoding, self.take(n - 6)


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed the connection")
        buf += chunk
    return buf


def read_message(sock):
    header = recv_exact(sock, 14)
    if header[:4] != b"IceP":
        raise ValueError("not an Ice message: %r" % header)
    total = struct.unpack("<i", header[10:14])[0]
    return header[8], recv_exact(sock, total - 14)


class WireServer:
    """Accepts Ice connections, keeps each request's parameters and replies with what
    `answer(operation, encoding)` gives: (status, payload of the reply encapsulation)."""

    def __init__(self, answer):
        self.answer = answer
        self.requests = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        with conn:
            conn.settimeout(TIMEOUT)
            conn.sendall(message(VALIDATE, b""))
            while True:
                try:
                    kind, body = read_message(conn)
                except (ConnectionError, OSError):
                    return
                if kind == CLOSE:
                    return
                if kind != REQUEST:
                    continue
                r = Reader(body)
                request_id = r.int()
                r.string(), r.string()  # identity
                for _ in range(r.size()):
                    r.string()  # facet
                operation = r.string()
                r.byte()  # mode
                for _ in range(r.size()):
                    r.string(), r.string()  # context
                encoding, params = r.encaps()
                self.requests.append((operation, encoding, params))
                status, payload = self.answer(operation, encoding)
                reply = struct.pack("<i", request_id) + bytes([status]) + encaps(encoding, payload)
                conn.sendall(message(REPLY, reply))

    def close(self):
        self.sock.close()


def call_raw(port, operation, encoding, params):
    """One request to the omero-py servant `s`; returns (status, encoding, reply payload)."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        kind, _ = read_message(sock)
        if kind != VALIDATE:
            raise ValueError("expected ValidateConnection, got message type %d" % kind)
        body = (struct.pack("<i", 1) + string("s") + string("") + size(0) + string(operation)
                + bytes([MODES[operation]]) + size(0) + encaps(encoding, params))
        sock.sendall(message(REQUEST, body))
        while True:
            kind, body = read_message(sock)
            if kind == REPLY:
                break
        sock.sendall(message(CLOSE, b""))
    r = Reader(body)
    r.int()
    status = r.byte()
    if status in (0, 1):
        encoding, payload = r.encaps()
        return status, encoding, payload
    return status, None, body[r.pos:]


# --- omero-py on both ends ---------------------------------------------------------------


def communicator(fmt):
    data = Ice.InitializationData()
    data.properties = Ice.createProperties()
    data.properties.setProperty("Ice.Default.SlicedFormat", "1" if fmt == "sliced" else "0")
    ic = Ice.initialize(data)
    omero.ObjectFactoryRegistrar.registerObjectFactory(ic)
    for factory in omero.rtypes.ObjectFactories.values():
        factory.register(ic)
    return ic


class Received:
    """What the servant decoded, by operation."""

    def __init__(self):
        self.params = None
        self.to_return = None


class SessionServant(omero.api.ISession):
    def __init__(self, received):
        self.received = received

    def setInput_async(self, cb, sess, key, value, current=None):
        self.received.params = [("sess", sess), ("key", key), ("value", value)]
        cb.ice_response()

    def closeSession_async(self, cb, sess, current=None):
        self.received.params = [("sess", sess)]
        cb.ice_response(0)

    def createSessionWithTimeouts_async(self, cb, principal, ttl, tti, current=None):
        self.received.params = [("principal", principal), ("timeToLive", ttl),
                                ("timeToIdle", tti)]
        cb.ice_response(None)


class AdminServant(omero.api.IAdmin):
    def __init__(self, received):
        self.received = received

    def getEventContext_async(self, cb, current=None):
        cb.ice_response(self.received.to_return)


class Harness:
    def __init__(self, fmt="compact"):
        self.ic = communicator(fmt)
        self.received = Received()
        self.adapter = self.ic.createObjectAdapterWithEndpoints("V", "tcp -h 127.0.0.1 -p 0")
        self.adapter.add(SessionServant(self.received), Ice.stringToIdentity("s"))
        self.adapter.activate()
        self.servant_port = self.adapter.getEndpoints()[0].getInfo().port
        self.reply_bytes = {}
        self.wire = WireServer(self.answer)

    def admin_servant(self):
        # One servant per identity; getEventContext goes to "s" as well, so swap servants.
        self.adapter.remove(Ice.stringToIdentity("s"))
        self.adapter.add(AdminServant(self.received), Ice.stringToIdentity("s"))

    def session_servant(self):
        self.adapter.remove(Ice.stringToIdentity("s"))
        self.adapter.add(SessionServant(self.received), Ice.stringToIdentity("s"))

    def answer(self, operation, encoding):
        if operation in self.reply_bytes:
            return 0, self.reply_bytes[operation]
        v10 = encoding == (1, 0)
        empty = {
            "setInput": b"",
            "closeSession": struct.pack("<i", 0),
            # A null Session: a 1.0 reference is an int, followed by no pending instances.
            "createSessionWithTimeouts": b"\x00\x00\x00\x00\x00" if v10 else b"\x00",
        }
        return 0, empty[operation]

    def proxy(self, cls, encoding):
        endpoint = "tcp -h 127.0.0.1 -p %d -t %d" % (self.wire.port, TIMEOUT * 1000)
        prx = self.ic.stringToProxy("s:" + endpoint)
        return cls.uncheckedCast(prx.ice_encodingVersion(Ice.EncodingVersion(*encoding)))

    # omero-py encodes -------------------------------------------------------------------

    def encode_request(self, operation, params, encoding):
        prx = self.proxy(omero.api.ISessionPrx, encoding)
        getattr(prx, operation)(*[v for _, v in params])
        op, enc, payload = self.wire.requests.pop()
        assert (op, enc) == (operation, encoding), (op, enc)
        return payload

    def encode_reply(self, operation, params, encoding):
        self.admin_servant()
        try:
            self.received.to_return = params[0][1]
            status, enc, payload = call_raw(self.servant_port, operation, encoding, b"")
        finally:
            self.session_servant()
        assert status == 0 and enc == encoding, (status, enc, payload)
        return payload

    # omero-py decodes -------------------------------------------------------------------

    def decode_request(self, operation, payload, encoding):
        self.received.params = None
        status, _, reply = call_raw(self.servant_port, operation, encoding, payload)
        if status != 0:
            raise AssertionError("omero-py refused the request: status %d, %r" % (status, reply))
        return self.received.params

    def decode_reply(self, operation, payload, encoding):
        self.reply_bytes[operation] = payload
        try:
            value = getattr(self.proxy(omero.api.IAdminPrx, encoding), operation)()
        finally:
            del self.reply_bytes[operation]
        return [("return", value)]

    def encode(self, direction, operation, params, encoding):
        f = self.encode_request if direction == "request" else self.encode_reply
        return f(operation, params, encoding)

    def decode(self, direction, operation, payload, encoding):
        f = self.decode_request if direction == "request" else self.decode_reply
        return f(operation, payload, encoding)

    def close(self):
        self.wire.close()
        self.ic.destroy()


# --- modes -------------------------------------------------------------------------------


def generate():
    harnesses = {fmt: Harness(fmt) for fmt in ("compact", "sliced")}
    vectors = {}
    try:
        for name, direction, operation, params in calls():
            for suffix, (encoding, fmt) in VARIANTS.items():
                h = harnesses[fmt]
                payload = h.encode(direction, operation, params, encoding)
                # omero-py must read its own bytes back as the values it was given.
                decoded = describe_params(h.decode(direction, operation, payload, encoding))
                expected = describe_params(params)
                if not same_modulo_empty(decoded, expected):
                    raise AssertionError(
                        "%s_%s: omero-py decodes its own bytes differently:\n%s\n%s"
                        % (name, suffix, json.dumps(decoded), json.dumps(expected)))
                vectors["%s_%s" % (name, suffix)] = {
                    "encoding": "%d.%d" % encoding,
                    "format": fmt,
                    "direction": direction,
                    "operation": operation,
                    "params": payload.hex(),
                    "value": decoded,
                }
    finally:
        for h in harnesses.values():
            h.close()
    out = {
        "about": "Written by make_vectors.py with omero-py %s on Ice %s. 'params' is the payload "
                 "of the request (or, for direction 'reply', the reply) encapsulation of "
                 "'operation' in 'encoding', as omero-py wrote it with classes in 'format'; "
                 "'value' describes the parameters as omero-py decodes them."
                 % (omero_version(), Ice.stringVersion()),
        "vectors": vectors,
    }
    with open(VECTORS + ".tmp", "w") as f:
        json.dump(out, f, indent=1, sort_keys=True, ensure_ascii=False)
        f.write("\n")
    os.replace(VECTORS + ".tmp", VECTORS)
    print("wrote %d vectors to %s" % (len(vectors), VECTORS))


def same_modulo_empty(a, b):
    """Equal, where the sender's None for a sequence or dictionary is the receiver's empty one."""
    if a in (None, [], {}) and b in (None, [], {}):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_modulo_empty(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_modulo_empty(x, y) for x, y in zip(a, b))
    return a == b


def check(path):
    with open(VECTORS) as f:
        known = json.load(f)["vectors"]
    with open(path) as f:
        theirs = json.load(f)
    h = Harness()
    failed = 0
    try:
        for name in sorted(theirs):
            v = known.get(name)
            if v is None:
                print("FAIL %s: no such vector" % name)
                failed += 1
                continue
            encoding = tuple(int(x) for x in theirs[name]["encoding"].split("."))
            payload = bytes.fromhex(theirs[name]["params"])
            try:
                got = describe_params(h.decode(v["direction"], v["operation"], payload, encoding))
            except Exception as e:  # noqa: BLE001  (any failure of omero-py is the finding)
                print("FAIL %s: %s: %s" % (name, type(e).__name__, e))
                failed += 1
                continue
            if got != v["value"]:
                print("FAIL %s: omero-py decoded\n  %s\nexpected\n  %s"
                      % (name, json.dumps(got, sort_keys=True),
                         json.dumps(v["value"], sort_keys=True)))
                failed += 1
            else:
                print("ok %s" % name)
    finally:
        h.close()
    missing = sorted(set(known) - set(theirs))
    for name in missing:
        print("missing %s" % name)
    print("%d checked, %d failed, %d missing" % (len(theirs), failed, len(missing)))
    return 1 if failed or missing else 0


def omero_version():
    try:
        from importlib.metadata import version
        return version("omero-py")
    except Exception:  # noqa: BLE001
        return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", metavar="FILE",
                    help="decode another implementation's encodings with omero-py")
    args = ap.parse_args()
    if args.check:
        sys.exit(check(args.check))
    generate()


if __name__ == "__main__":
    main()
