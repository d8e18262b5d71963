"""omero.testlib.ITest, OMERO's own test harness, sets itself up against this server
unchanged: root login, new_group/new_user, the user's login, getUpdateService/getQueryService.
It reads omero.host, omero.port and omero.rootpass from the ICE_CONFIG file, and needs
OMERODIR set to some directory."""
import os
import tempfile

import pytest

import omero
from omero.testlib import ITest

from conftest import ENCODING


@pytest.fixture(scope="module")
def itest_env(server):
    tmp = tempfile.mkdtemp(prefix="omero-itest-")
    cfg = os.path.join(tmp, "ice.config")
    with open(cfg, "w") as f:
        f.write("omero.host=127.0.0.1\n")
        f.write("omero.port=%d\n" % server.ssl_port)
        f.write("omero.rootpass=%s\n" % server.root_pw)
        if ENCODING == "1.0":
            f.write("Ice.Default.EncodingVersion=1.0\n")
    saved = {k: os.environ.get(k) for k in ("ICE_CONFIG", "OMERODIR")}
    os.environ["ICE_CONFIG"] = cfg
    os.environ["OMERODIR"] = tmp
    yield tmp
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


class Harness(ITest):
    """Named so pytest does not collect ITest's own machinery twice."""


@pytest.fixture(scope="module")
def harness(itest_env):
    Harness.setup_class()
    yield Harness
    Harness.teardown_class()


def test_setup_class_runs(harness, server):
    ctx = harness.ctx
    assert ctx.userName == harness.user.omeName.val
    assert ctx.groupName == harness.group.name.val
    assert not ctx.isAdmin
    # The group ITest made has the permissions it asked for (DEFAULT_PERMS).
    perms = harness.group.details.permissions
    assert str(perms) == harness.DEFAULT_PERMS
    # Persisted: visible to this server's own command line.
    assert harness.user.omeName.val in server.cli("user", "list")
    # Services ITest takes up front exist; only their operations are refused.
    with pytest.raises(omero.ApiUsageException):
        harness.query.findAllByQuery("select e from Experimenter e", None)
    with pytest.raises(omero.ApiUsageException):
        harness.update.saveObject(omero.model.ExperimenterI())


def test_new_user_owner_and_system(harness):
    owner = harness.new_user(group=harness.group, owner=True)
    admin = harness.root.sf.getAdminService()
    assert harness.group.id.val in admin.getLeaderOfGroupIds(owner)
    system = harness.new_user(system=True)
    assert 0 in admin.getMemberOfGroupIds(system)
    client, user = harness().new_client_and_user(group=harness.group)
    assert client.sf.getAdminService().getEventContext().userName == user.omeName.val
