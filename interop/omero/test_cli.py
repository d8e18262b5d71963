"""omero-py's own CLI (`omero login`, `omero sessions ...`) driven through omero.cli.argv.

The `omero` script refuses to run as root (as CI does), so the plugins run in-process. The
CLI prints some server errors and still exits 0, so every effect is read back through the API.
"""
import os
import tempfile

import Ice
import pytest

import omero
import omero.cli
import omero.cmd
from omero.rtypes import rlong, unwrap

from conftest import ENCODING, PASSWORDS, join, login, wait_until


@pytest.fixture(scope="module")
def cli_env(server):
    """A sessions directory and OMERODIR of the module's own; ICE_CONFIG for the encoding."""
    tmp = tempfile.mkdtemp(prefix="omero-cli-")
    saved = {k: os.environ.get(k) for k in ("OMERO_SESSIONDIR", "OMERODIR", "ICE_CONFIG")}
    os.environ["OMERO_SESSIONDIR"] = os.path.join(tmp, "sessions")
    os.environ["OMERODIR"] = tmp
    if ENCODING == "1.0":
        cfg = os.path.join(tmp, "ice.config")
        with open(cfg, "w") as f:
            f.write("Ice.Default.EncodingVersion=1.0\n")
        os.environ["ICE_CONFIG"] = cfg
    yield tmp
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def omero_cli(*args):
    """Runs one CLI command in-process; returns its exit code (0 even for some errors)."""
    try:
        return omero.cli.argv(["omero", *args])
    except omero.cli.NonZeroReturnCode as e:
        return e.rv


def cli_login(server, user, secure=True):
    pw = server.root_pw if user == "root" else PASSWORDS[user]
    port = server.ssl_port if secure else server.tcp_port
    host = "127.0.0.1" if secure else "tcp://127.0.0.1"
    rc = omero_cli("login", "-s", host, "-p", str(port), "-u", user, "-w", pw)
    assert rc == 0


def current_uuid(server, user):
    """The session the CLI stored as current, as the store reads it."""
    from omero.util.sessions import SessionsStore
    store = SessionsStore(os.environ["OMERO_SESSIONDIR"])
    host, name, uuid, port = store.get_current()
    assert name == user
    return uuid


def test_login_and_sessions_timeout(server, cli_env, clients, capsys):
    cli_login(server, "alice")
    uuid = current_uuid(server, "alice")
    c, sf = join(server, clients, uuid)
    assert sf.getAdminService().getEventContext().userName == "alice"
    capsys.readouterr()
    assert omero_cli("sessions", "timeout") == 0
    out = capsys.readouterr().out
    idle = sf.getSessionService().getSession(uuid).timeToIdle.val
    assert float(out.strip().splitlines()[-1]) == idle / 1000.0
    assert omero_cli("sessions", "timeout", "1200") == 0
    assert sf.getSessionService().getSession(uuid).timeToIdle.val == 1200 * 1000


def test_sessions_timeout_refused_for_a_user_disabling_it(server, cli_env, clients):
    cli_login(server, "bob")
    uuid = current_uuid(server, "bob")
    c, sf = join(server, clients, uuid)
    before = sf.getSessionService().getSession(uuid).timeToIdle.val
    rc = omero_cli("sessions", "timeout", "0")
    assert rc != 0
    assert sf.getSessionService().getSession(uuid).timeToIdle.val == before


def test_sessions_who_as_user_and_admin(server, cli_env, clients, capsys):
    cli_login(server, "carol")
    capsys.readouterr()
    assert omero_cli("sessions", "who") == 0
    out = capsys.readouterr().out
    assert "carol" in out
    assert "root" not in out
    cli_login(server, "root")
    capsys.readouterr()
    assert omero_cli("sessions", "who") == 0
    out = capsys.readouterr().out
    for name in ("carol", "root"):
        assert name in out


def test_login_with_key_joins_the_session(server, cli_env, clients, capsys):
    c, sf = login(server, clients, user="dave")
    uuid = c.getSessionId()
    capsys.readouterr()
    rc = omero_cli("login", "-s", "127.0.0.1", "-p", str(server.ssl_port), "-k", uuid)
    assert rc == 0
    # A key that no CLI login stored leaves the CLI's current session alone (ticket 5975).
    assert "Joined session for dave" in capsys.readouterr().err
    # The CLI detached: the session lives on for its first client.
    assert sf.getSessionService().getReferenceCount(uuid) == 1
    assert sf.getAdminService().getEventContext().userName == "dave"


def test_sessions_list_group_and_logout(server, cli_env, clients, capsys):
    cli_login(server, "dave")
    uuid = current_uuid(server, "dave")
    c, sf = join(server, clients, uuid)
    capsys.readouterr()
    assert omero_cli("sessions", "list") == 0
    assert uuid in capsys.readouterr().out
    # Other commands may pick another stored session; name this one explicitly.
    assert omero_cli("sessions", "-s", "127.0.0.1", "-p", str(server.ssl_port), "-k", uuid,
                     "group", "lab") == 0
    assert sf.getAdminService().getEventContext().groupName == "lab"
    assert omero_cli("sessions", "logout") == 0
    # The session is gone: its objects no longer exist for the joined client.
    with pytest.raises((omero.RemovedSessionException, Ice.ObjectNotExistException)):
        sf.getAdminService().getEventContext()


def test_submit_from_the_api(server, clients):
    c, sf = login(server, clients, user="alice")
    cb = c.submit(omero.cmd.CurrentSessionsRequest())
    handle_rsp = cb.getResponse()
    assert isinstance(handle_rsp, omero.cmd.CurrentSessionsResponse)
    names = [ctx.userName for ctx in handle_rsp.contexts]
    assert "alice" in names
    req = omero.cmd.UpdateSessionTimeoutRequest()
    req.session = c.getSessionId()
    req.timeToIdle = rlong(900 * 1000)
    assert isinstance(c.submit(req).getResponse(), omero.cmd.OK)
    assert unwrap(sf.getSessionService().getSession(c.getSessionId()).timeToIdle) == 900000
    with pytest.raises(omero.CmdError) as exc:
        c.submit(omero.cmd.Timing())
    assert exc.value.err.name == "unsupported-request"


def test_config_service(server, clients):
    c, sf = login(server, clients, user="alice")
    cfg = sf.getConfigService()
    version = cfg.getVersion()
    assert tuple(int(x) for x in version.split(".")) >= (5, 0, 0)
    assert cfg.getConfigValue("omero.router.insecure") == \
        "OMERO.Glacier2/router:tcp -p %d -h @omero.host@" % server.tcp_port
    assert int(cfg.getConfigValue("omero.sessions.timeout")) == 600000
    assert cfg.getConfigValue("omero.no.such.key") == ""
    assert "omero.sessions.timeout" in cfg.getConfigValues("^omero\\.sessions\\.")
    assert all(k.startswith("omero.client.") for k in cfg.getClientConfigValues())
    assert cfg.getClientConfigDefaults()
    assert cfg.getDatabaseUuid()
    assert cfg.getServerTime().val > 0 and cfg.getDatabaseTime().val > 0
    with pytest.raises(omero.SecurityViolation):
        cfg.setConfigValue("omero.client.test", "1")
    with pytest.raises(omero.SecurityViolation):
        cfg.getConfigDefaults()
    r, rsf = login(server, clients, user="root")
    rsf.getConfigService().setConfigValue("omero.client.test", "1")
    assert cfg.getConfigValue("omero.client.test") == "1"
    assert rsf.getConfigService().getConfigDefaults()["omero.sessions.timeout"] == "600000"


def test_create_client_over_the_insecure_router(server, clients):
    """omero.client.createClient(secure=False) reads omero.router.insecure to join over tcp."""
    c, sf = login(server, clients, user="alice")
    plain = c.createClient(secure=False)
    clients.append(plain)
    assert plain.getSession().getAdminService().getEventContext().userName == "alice"
    assert plain.getSessionId() == c.getSessionId()


def test_user_and_group_listings(server, cli_env, clients, capsys):
    cli_login(server, "root")
    capsys.readouterr()
    assert omero_cli("user", "list") == 0
    out = capsys.readouterr().out
    for name in ("root", "alice", "dave"):
        assert name in out
    assert omero_cli("user", "info", "dave") == 0
    out = capsys.readouterr().out
    row = [line for line in out.splitlines() if "| dave " in line]
    assert len(row) == 1
    dave_member_of = row[0].split("|")[8].strip()
    assert omero_cli("group", "list") == 0
    out = capsys.readouterr().out
    for name in ("system", "user", "lab"):
        assert name in out
    assert omero_cli("group", "info", "lab") == 0
    out = capsys.readouterr().out
    assert "lab" in out and "rwr---" in out
    # What the listings show is what IAdmin answers.
    c, sf = login(server, clients, user="alice")
    admin = sf.getAdminService()
    lab = admin.lookupGroup("lab")
    members = [m.child.omeName.val for m in lab.copyGroupExperimenterMap()]
    assert members == ["dave"]
    dave = admin.lookupExperimenter("dave")
    assert [m.parent.name.val for m in dave.copyGroupExperimenterMap()] == ["lab", "user"]
    assert [e.omeName.val for e in admin.containedExperimenters(lab.id.val)] == ["dave"]
    # The CLI's "member of" column lists the group ids other than "user": lab's.
    assert dave_member_of == str(lab.id.val)
    assert {g.name.val for g in admin.lookupGroups()} >= {"system", "user", "guest", "lab"}


def test_user_and_group_management(server, cli_env, clients, capsys):
    """`group add`, `user add`, joingroup/leavegroup, adduser/removeuser, owners, password:
    each change read back through IAdmin, through new logins and through our own CLI."""
    cli_login(server, "root")
    assert omero_cli("group", "add", "mgmt", "--perms", "rwra--") == 0
    assert omero_cli("group", "add", "mgmt2") == 0
    assert omero_cli("user", "add", "erin", "Erin", "Ex", "-P", "erinpw",
                     "--group-name", "mgmt") == 0
    r, rsf = login(server, clients, user="root")
    admin = rsf.getAdminService()
    mgmt = admin.lookupGroup("mgmt")
    assert mgmt.details.permissions.isGroupAnnotate()
    erin = admin.lookupExperimenter("erin")
    assert (erin.firstName.val, erin.lastName.val) == ("Erin", "Ex")
    assert admin.getDefaultGroup(erin.id.val).name.val == "mgmt"
    # Visible to our own command line at once.
    assert "erin" in server.cli("user", "list")
    # A new login works with the password given.
    PASSWORDS["erin"] = "erinpw"
    e, esf = login(server, clients, user="erin")
    assert esf.getAdminService().getEventContext().groupName == "mgmt"

    assert omero_cli("user", "joingroup", "--name", "erin", "mgmt2") == 0
    assert "mgmt2" in [g.name.val for g in admin.containedGroups(erin.id.val)]
    assert omero_cli("user", "leavegroup", "--name", "erin", "mgmt2") == 0
    assert "mgmt2" not in [g.name.val for g in admin.containedGroups(erin.id.val)]
    assert omero_cli("group", "adduser", "--name", "mgmt2", "erin", "--as-owner") == 0
    mgmt2 = admin.lookupGroup("mgmt2")
    assert mgmt2.id.val in admin.getLeaderOfGroupIds(erin)
    assert omero_cli("group", "removeuser", "--name", "mgmt2", "erin", "--as-owner") == 0
    assert mgmt2.id.val not in admin.getLeaderOfGroupIds(erin)
    assert mgmt2.id.val in admin.getMemberOfGroupIds(erin)
    assert omero_cli("group", "removeuser", "--name", "mgmt2", "erin") == 0
    assert mgmt2.id.val not in admin.getMemberOfGroupIds(erin)

    # `group perms` submits a Chmod2 of the group.
    assert omero_cli("group", "perms", "--name", "mgmt2", "--perms", "rwr---") == 0
    assert str(admin.lookupGroup("mgmt2").details.permissions) == "rwr---"
    assert "rwr---" in [line for line in server.cli("group", "list").splitlines()
                        if "mgmt2" in line][0]

    # A non-admin may not manage others.
    ea = esf.getAdminService()
    with pytest.raises(omero.SecurityViolation):
        ea.createGroup(omero.model.ExperimenterGroupI())
    with pytest.raises(omero.SecurityViolation):
        ea.addGroups(omero.model.ExperimenterI(erin.id.val, False),
                     [omero.model.ExperimenterGroupI(mgmt2.id.val, False)])
    assert mgmt2.id.val not in admin.getMemberOfGroupIds(erin)
    chmod = omero.cmd.Chmod2(targetObjects={"ExperimenterGroup": [mgmt2.id.val]},
                             permissions="rwrw--")
    with pytest.raises(omero.CmdError) as exc:
        e.submit(chmod)
    assert exc.value.err.name == "not-permitted"


def test_user_password(server, cli_env, clients, monkeypatch):
    """`user password`: the CLI asks for the caller's own password (setSecurityPassword),
    then the new one twice; answered here through getpass."""
    import getpass
    cli_login(server, "root")
    answers = iter([server.root_pw, "carolpw2", "carolpw2"])
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": next(answers))
    assert omero_cli("user", "password", "carol") == 0
    assert next(answers, None) is None
    c = server.client()
    clients.append(c)
    c.createSession("carol", "carolpw2")
    # Put it back for the other tests, through the API this time.
    r, rsf = login(server, clients, user="root")
    rsf.getAdminService().changeUserPassword("carol", omero.rtypes.rstring(PASSWORDS["carol"]))


def test_handle_calls_the_clients_callback(server, clients):
    """The server calls CmdCallback.step and finished back over the client's connection;
    the handle answers getRequest/getStatus, cancel (too late) and close."""
    import threading
    import Ice

    c, sf = login(server, clients, user="alice")

    class Callback(omero.cmd.CmdCallback):
        def __init__(self):
            self.steps = []
            self.done = threading.Event()
            self.rsp = None

        def step(self, complete, total, current=None):
            self.steps.append((complete, total))

        def finished(self, rsp, status, current=None):
            self.rsp = rsp
            self.done.set()

    handle = sf.submit(omero.cmd.CurrentSessionsRequest())
    assert isinstance(handle.getRequest(), omero.cmd.CurrentSessionsRequest)
    status = handle.getStatus()
    assert omero.cmd.State.SUCCESS in status.flags
    assert status.source.ice_getIdentity() == handle.ice_getIdentity()
    cb = Callback()
    ident = Ice.Identity(str(__import__("uuid").uuid4()), c.getCategory())
    prx = omero.cmd.CmdCallbackPrx.uncheckedCast(c.getAdapter().add(cb, ident))
    handle.addCallback(prx)
    assert wait_until(cb.done.is_set)
    assert cb.steps == [(1, 1)]
    assert isinstance(cb.rsp, omero.cmd.CurrentSessionsResponse)
    assert handle.cancel() is False
    handle.close()
    with pytest.raises(Ice.ObjectNotExistException):
        handle.getResponse()
