"""ServiceFactory operations (spec §5.3)."""
import Ice
import pytest

import omero

from conftest import PASSWORDS, join, login


def test_other_services_fail_late_and_clearly(server, clients):
    c, sf = login(server, clients)
    # As OMERO does, the getters hand out proxies; only their operations fail.
    query = sf.getQueryService()
    assert query.ice_isA("::omero::api::IQuery")
    with pytest.raises(omero.ApiUsageException) as exc:
        query.findAllByQuery("select e from Experimenter e", None)
    assert "IQuery.findAllByQuery" in exc.value.message
    with pytest.raises(omero.ApiUsageException) as exc:
        sf.getUpdateService().saveObject(omero.model.ExperimenterI())
    assert "IUpdate.saveObject" in exc.value.message
    for make in (sf.createRawPixelsStore, sf.createRenderingEngine, sf.createRawFileStore):
        store = make()
        assert store.ice_getIdentity().category == c.getSessionId()
        with pytest.raises(omero.ApiUsageException) as exc:
            store.close()
        assert "not available" in exc.value.message
    assert sf.getByName("omero.api.IQuery").ice_getIdentity() == query.ice_getIdentity()
    with pytest.raises(omero.ApiUsageException):
        sf.getByName("omero.api.NoSuchService")
    # the factory still works afterwards
    assert sf.getAdminService().getEventContext().userName == "alice"


def test_other_clients_cannot_reach_a_clients_service(server, clients):
    c, sf = login(server, clients)
    query = sf.getQueryService()
    c2, sf2 = login(server, clients, user="bob")
    foreign = omero.api.IQueryPrx.uncheckedCast(
        c2.getRouter(c2.getCommunicator()).ice_identity(query.ice_getIdentity()))
    with pytest.raises(Ice.ObjectNotExistException):
        foreign.findAllByQuery("x", None)
    # Nor can another client joined to the same session.
    j, jsf = join(server, clients, c.getSessionId())
    jsf.setSecurityPassword(PASSWORDS["alice"])
    joined = omero.api.IQueryPrx.uncheckedCast(
        j.getRouter(j.getCommunicator()).ice_identity(query.ice_getIdentity()))
    with pytest.raises(Ice.ObjectNotExistException):
        joined.findAllByQuery("x", None)
    store = sf.createRawFileStore()
    joined_store = omero.api.RawFileStorePrx.uncheckedCast(
        j.getRouter(j.getCommunicator()).ice_identity(store.ice_getIdentity()))
    with pytest.raises(Ice.ObjectNotExistException):
        joined_store.close()


def test_service_proxies(server, clients):
    c, sf = login(server, clients)
    uuid = c.getSessionId()
    admin = sf.getAdminService()
    session = sf.getSessionService()
    assert admin.ice_getIdentity().category == uuid
    assert session.ice_getIdentity().category == uuid
    assert admin.ice_isA("::omero::api::IAdmin")
    assert session.ice_isA("::omero::api::ISession")
    # the same proxy on repeated calls
    assert sf.getAdminService().ice_getIdentity() == admin.ice_getIdentity()
    assert sf.getByName("omero.api.ISession").ice_getIdentity() == session.ice_getIdentity()


def test_keep_alive_and_active_services(server, clients):
    c, sf = login(server, clients)
    admin = sf.getAdminService()
    sf.getSessionService()
    assert sf.keepAlive(None) is False
    assert sf.keepAlive(admin) is True
    names = sf.activeServices()
    assert admin.ice_getIdentity().name in names
    assert sf.keepAllAlive([]) == -1
    # ServiceList holds ServiceInterface proxies; omero-py refuses to marshal a plain
    # Ice.ObjectPrx in it, so the unknown proxy is cast first.
    bogus = omero.api.ServiceInterfacePrx.uncheckedCast(
        c.getCommunicator().stringToProxy("x/unknown-service"))
    assert sf.keepAllAlive([admin, bogus]) == 0b10


def test_set_callback_and_subscribe(server, clients):
    c, sf = login(server, clients)
    sf.setCallback(None)
    with pytest.raises(omero.ApiUsageException):
        sf.subscribe("/private/x", None)


def test_security_contexts(server, clients):
    c, sf = login(server, clients, user="dave")
    ctxs = sf.getSecurityContexts()
    names = sorted(g.getName().getValue() for g in ctxs)
    assert names == ["lab", "user"]
    user_group = [g for g in ctxs if g.getName().getValue() == "user"][0]
    previous = sf.setSecurityContext(user_group)
    assert isinstance(previous, omero.model.ExperimenterGroup)
    assert sf.getAdminService().getEventContext().groupName == "user"
    sf.setSecurityContext(previous)
    assert sf.getAdminService().getEventContext().groupName == "lab"
    with pytest.raises(omero.ApiUsageException):
        sf.setSecurityContext(omero.model.ExperimenterGroupI())
    with pytest.raises(omero.SecurityViolation):
        sf.setSecurityContext(omero.model.ExperimenterGroupI(0, False))


def test_destroy_on_the_factory(server, clients):
    c, sf = login(server, clients)
    uuid = c.getSessionId()
    watcher, wsf = login(server, clients, user="bob")
    sf.destroy()
    with pytest.raises(omero.RemovedSessionException):
        wsf.getSessionService().getReferenceCount(uuid)
    with pytest.raises(Ice.ObjectNotExistException):
        sf.getAdminService()
