//! The Glacier2 router and the services over real sockets on 127.0.0.1: login, join,
//! reference counts, what a connection may reach, and the end of a session when its
//! connection goes, on destroySession and on inactivity.

use std::time::Duration;

use omero_sessiond::auth::{NewExperimenter, Password};
use omero_sessiond::config::ServerConfig;
use omero_sessiond::encoding::{Encoding, Endpoint, Identity, InputStream, OutputStream};
use omero_sessiond::protocol::ReplyBody;
use omero_sessiond::router::{install, RouterConfig};
use omero_sessiond::runtime::{ObjectAdapter, Server};
use omero_sessiond::services::{open_services, Services};
use omero_sessiond::sessions::SessionConfig;

mod router_client;
use router_client::{proxy_of, router_id, Client};

struct Fixture {
    server: Server,
    services: Services,
    _dir: tempfile::TempDir,
}

async fn start(router: RouterConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let services = open_services(dir.path(), &SessionConfig::default()).unwrap();
    for (name, pw) in [("alice", "alicepw"), ("bob", "bobpw")] {
        services
            .directory
            .add_experimenter(NewExperimenter {
                ome_name: name.into(),
                first_name: None,
                last_name: None,
                email: None,
                password: Password::new(pw),
                admin: false,
                groups: Vec::new(),
                owner_of: Vec::new(),
            })
            .unwrap();
    }
    let adapter = ObjectAdapter::new();
    install(&adapter, router, services.clone());
    let server = Server::bind(ServerConfig::local(dir.path()), adapter)
        .await
        .unwrap();
    Fixture {
        server,
        services,
        _dir: dir,
    }
}

/// The type id and, for the Glacier2 exceptions, the reason of a user exception reply.
fn exception_of(body: &ReplyBody) -> (String, String) {
    let ReplyBody::UserException { payload, .. } = body else {
        panic!("expected a user exception, got {body:?}");
    };
    let mut r = InputStream::new(payload, Encoding::V1_1);
    r.set_factories(omero_sessiond::generated::FACTORIES);
    let e = r.read_exception().unwrap();
    let reason = e
        .find("::Glacier2::PermissionDeniedException")
        .and_then(|a| a.downcast_ref::<omero_sessiond::generated::glacier2::PermissionDeniedException>())
        .map(|p| p.reason.clone())
        .or_else(|| {
            e.find("::Glacier2::CannotCreateSessionException")
                .and_then(|a| {
                    a.downcast_ref::<omero_sessiond::generated::glacier2::CannotCreateSessionException>()
                })
                .map(|c| c.reason.clone())
        })
        .unwrap_or_default();
    (e.ice_id().to_string(), reason)
}

fn is_ok(body: &ReplyBody) -> bool {
    matches!(body, ReplyBody::Ok { .. })
}

fn is_one(body: &ReplyBody) -> bool {
    matches!(body, ReplyBody::ObjectNotExist(_))
}

async fn wait_for(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    check()
}

#[tokio::test]
async fn login_reaches_only_its_own_objects() {
    let f = start(RouterConfig::default()).await;
    let mut a = Client::connect(f.server.tcp_addr().unwrap(), "client-a").await;
    let sf = a.session("alice", "alicepw").await;
    assert_eq!(sf.identity.category, "session-client-a");
    let uuid = sf.identity.name.clone();
    assert!(is_ok(&a.call(&sf.identity, "ice_ping", Vec::new()).await));
    let admin = proxy_of(a.call(&sf.identity, "getAdminService", Vec::new()).await);
    assert_eq!(
        admin.identity,
        Identity::new(uuid.clone(), "client-aomero.api.IAdmin")
    );
    assert!(is_ok(
        &a.call(&admin.identity, "getEventContext", Vec::new()).await
    ));
    assert!(is_one(
        &a.call(&Identity::new("x", "y"), "ice_ping", Vec::new())
            .await
    ));

    // A connection without a session reaches nothing but the router.
    let mut b = Client::connect(f.server.tcp_addr().unwrap(), "client-b").await;
    assert!(is_one(&b.call(&sf.identity, "ice_ping", Vec::new()).await));
    assert!(is_ok(&b.call(&router_id(), "ice_ping", Vec::new()).await));
    // Nor does another user's connection reach alice's objects.
    b.session("bob", "bobpw").await;
    assert!(is_one(&b.call(&sf.identity, "ice_ping", Vec::new()).await));
    assert!(is_one(
        &b.call(&admin.identity, "getEventContext", Vec::new()).await
    ));
}

#[tokio::test]
async fn refusals_and_one_session_per_connection() {
    let f = start(RouterConfig::default()).await;
    let mut a = Client::connect(f.server.tcp_addr().unwrap(), "client-a").await;
    let (id, reason) = exception_of(&a.login("alice", "wrong-secret").await);
    assert_eq!(id, "::Glacier2::PermissionDeniedException");
    assert!(!reason.contains("wrong-secret"));
    let (_, unknown) = exception_of(&a.login("nobody", "wrong-secret").await);
    assert_eq!(unknown.replace("nobody", "X"), reason.replace("alice", "X"));

    a.session("alice", "alicepw").await;
    let (id, reason) = exception_of(&a.login("alice", "alicepw").await);
    assert_eq!(id, "::Glacier2::CannotCreateSessionException");
    assert_eq!(reason, "session exists");

    let body = a
        .call(
            &router_id(),
            "createSessionFromSecureConnection",
            Vec::new(),
        )
        .await;
    let (id, reason) = exception_of(&body);
    assert_eq!(id, "::Glacier2::PermissionDeniedException");
    assert!(!reason.is_empty());

    // Without omero.client.uuid no ServiceFactory can be made.
    let mut c = Client::connect(f.server.tcp_addr().unwrap(), "client-c").await;
    c.ctx.remove("omero.client.uuid");
    let (id, reason) = exception_of(&c.login("bob", "bobpw").await);
    assert_eq!(id, "::omero::WrappedCreateSessionException");
    assert!(reason.contains("omero.client.uuid"));
}

#[tokio::test]
async fn a_joined_client_cannot_reach_another_clients_services() {
    let f = start(RouterConfig::default()).await;
    let mut a = Client::connect(f.server.tcp_addr().unwrap(), "client-a").await;
    let uuid = a.session("alice", "alicepw").await.identity.name;
    let sf_a = Identity::new("session-client-a", uuid.clone());
    let admin_a = proxy_of(a.call(&sf_a, "getAdminService", Vec::new()).await);
    // b knows the session uuid (leaked) and so joins it; a's IAdmin stays a's.
    let mut b = Client::connect(f.server.tcp_addr().unwrap(), "client-b").await;
    let sf_b = b.session(&uuid, &uuid).await;
    assert!(is_one(
        &b.call(&admin_a.identity, "getEventContext", Vec::new())
            .await
    ));
    assert!(is_one(&b.call(&sf_a, "ice_ping", Vec::new()).await));
    // b's own IAdmin works, and a's is untouched.
    let admin_b = proxy_of(b.call(&sf_b.identity, "getAdminService", Vec::new()).await);
    assert_eq!(admin_b.identity.name, "client-bomero.api.IAdmin");
    assert!(is_ok(
        &b.call(&admin_b.identity, "getEventContext", Vec::new())
            .await
    ));
    assert!(is_ok(
        &a.call(&admin_a.identity, "getEventContext", Vec::new())
            .await
    ));
}

#[tokio::test]
async fn join_and_connection_loss_count_references() {
    let f = start(RouterConfig::default()).await;
    let sessions = f.services.sessions.clone();
    let mut a = Client::connect(f.server.tcp_addr().unwrap(), "client-a").await;
    let uuid = a.session("alice", "alicepw").await.identity.name;
    let mut b = Client::connect(f.server.tcp_addr().unwrap(), "client-b").await;
    let joined = b.session(&uuid, &uuid).await;
    assert_eq!(joined.identity.name, uuid);
    assert_eq!(sessions.reference_count(&uuid).unwrap(), 2);
    // Joining needs the uuid as both user and password.
    let mut c = Client::connect(f.server.tcp_addr().unwrap(), "client-c").await;
    let (_, reason) = exception_of(&c.login("alice", &uuid).await);
    assert!(reason.contains("joinSession"));

    drop(b);
    assert!(wait_for(|| sessions.reference_count(&uuid).ok() == Some(1)).await);
    drop(a);
    // closeOnDestroy is the default: the last reference going ends the session.
    assert!(wait_for(|| !sessions.is_live(&uuid)).await);
    let (id, reason) = exception_of(&c.login(&uuid, &uuid).await);
    assert_eq!(id, "::Glacier2::PermissionDeniedException");
    // A closed session's uuid is described: whose it was and when it started and ended.
    assert!(
        reason.starts_with(&format!(
            "Password check failed for '{uuid}': [user=alice, created="
        )),
        "{reason}"
    );
    assert!(reason.contains(", closed="), "{reason}");
}

#[tokio::test]
async fn detach_keeps_the_session_after_the_connection() {
    let f = start(RouterConfig::default()).await;
    let sessions = f.services.sessions.clone();
    let mut a = Client::connect(f.server.tcp_addr().unwrap(), "client-a").await;
    let sf = a.session("alice", "alicepw").await;
    assert!(is_ok(
        &a.call(&sf.identity, "detachOnDestroy", Vec::new()).await
    ));
    drop(a);
    let uuid = sf.identity.name;
    assert!(wait_for(|| sessions.lookup(&uuid, true).map(|i| i.refcount).ok() == Some(0)).await);
    let mut b = Client::connect(f.server.tcp_addr().unwrap(), "client-b").await;
    b.session(&uuid, &uuid).await;
    assert_eq!(sessions.reference_count(&uuid).unwrap(), 1);
}

#[tokio::test]
async fn destroy_session_then_no_session() {
    let f = start(RouterConfig::default()).await;
    let mut a = Client::connect(f.server.tcp_addr().unwrap(), "client-a").await;
    let sf = a.session("alice", "alicepw").await;
    assert!(is_ok(
        &a.call(&router_id(), "refreshSession", Vec::new()).await
    ));
    assert!(is_ok(
        &a.call(&router_id(), "destroySession", Vec::new()).await
    ));
    assert!(!f.services.sessions.is_live(&sf.identity.name));
    let (id, _) = exception_of(&a.call(&router_id(), "destroySession", Vec::new()).await);
    assert_eq!(id, "::Glacier2::SessionNotExistException");
    assert!(is_one(&a.call(&sf.identity, "ice_ping", Vec::new()).await));
    // The connection may log in again.
    a.session("alice", "alicepw").await;
}

#[tokio::test]
async fn inactivity_ends_the_glacier2_session() {
    let config = RouterConfig {
        session_timeout: Some(Duration::from_millis(300)),
        ..RouterConfig::default()
    };
    let f = start(config).await;
    let mut a = Client::connect(f.server.tcp_addr().unwrap(), "client-a").await;
    let sf = a.session("alice", "alicepw").await;
    let uuid = sf.identity.name.clone();
    assert!(wait_for(|| !f.services.sessions.is_live(&uuid)).await);
    assert!(is_one(&a.call(&sf.identity, "ice_ping", Vec::new()).await));
    let (id, _) = exception_of(&a.call(&router_id(), "refreshSession", Vec::new()).await);
    assert_eq!(id, "::Glacier2::SessionNotExistException");
}

#[tokio::test]
async fn a_closed_session_ends_the_glacier2_session_on_refresh() {
    let f = start(RouterConfig::default()).await;
    let mut a = Client::connect(f.server.tcp_addr().unwrap(), "client-a").await;
    let sf = a.session("alice", "alicepw").await;
    let admin = proxy_of(a.call(&sf.identity, "getAdminService", Vec::new()).await);
    assert_eq!(
        f.services.sessions.close_session(&sf.identity.name).await,
        Ok(-2)
    );
    assert!(is_one(&a.call(&sf.identity, "ice_ping", Vec::new()).await));
    assert!(is_one(
        &a.call(&admin.identity, "getEventContext", Vec::new()).await
    ));
    let (id, _) = exception_of(&a.call(&router_id(), "refreshSession", Vec::new()).await);
    assert_eq!(id, "::Glacier2::SessionNotExistException");
    let (id, _) = exception_of(&a.call(&router_id(), "destroySession", Vec::new()).await);
    assert_eq!(id, "::Glacier2::SessionNotExistException");
}

#[tokio::test]
async fn router_proxies_and_timeouts() {
    let f = start(RouterConfig::default()).await;
    let mut a = Client::connect(f.server.tcp_addr().unwrap(), "client-a").await;
    a.session("alice", "alicepw").await;
    match a.call(&router_id(), "getClientProxy", Vec::new()).await {
        ReplyBody::Ok { payload, .. } => {
            let mut r = InputStream::new(&payload, Encoding::V1_1);
            assert!(r.read_proxy().unwrap().is_none());
            assert_eq!(r.read_optional::<bool>(1).unwrap(), Some(true));
        }
        other => panic!("{other:?}"),
    }
    let server = proxy_of(a.call(&router_id(), "getServerProxy", Vec::new()).await);
    assert_eq!(server.identity.name, "dummy");
    assert_eq!(server.identity.category.len(), 20);
    assert!(!server.endpoints.is_empty());
    // Never the router's own endpoint, or Ice clients would treat routed proxies as collocated.
    assert!(server
        .endpoints
        .iter()
        .all(|e| matches!(e, Endpoint::Tcp { port: 0, .. })));
    match a
        .call(&router_id(), "getCategoryForClient", Vec::new())
        .await
    {
        ReplyBody::Ok { payload, .. } => {
            let category = InputStream::new(&payload, Encoding::V1_1)
                .read_string()
                .unwrap();
            assert_eq!(category, server.identity.category);
        }
        other => panic!("{other:?}"),
    }
    let mut w = OutputStream::new(Encoding::V1_1);
    w.write_size(1);
    w.write_proxy(Some(&server));
    match a.call(&router_id(), "addProxies", w.into_bytes()).await {
        ReplyBody::Ok { payload, .. } => assert_eq!(&payload[..], &[0]),
        other => panic!("{other:?}"),
    }
    match a.call(&router_id(), "getSessionTimeout", Vec::new()).await {
        ReplyBody::Ok { payload, .. } => {
            let t = InputStream::new(&payload, Encoding::V1_1)
                .read_i64()
                .unwrap();
            assert_eq!(t, 600);
        }
        other => panic!("{other:?}"),
    }
    let finder = proxy_of(
        a.call(
            &Identity::new("Ice", "RouterFinder"),
            "getRouter",
            Vec::new(),
        )
        .await,
    );
    assert_eq!(finder.identity, router_id());
}

#[tokio::test]
async fn repeated_failures_are_throttled() {
    let f = start(RouterConfig::default()).await;
    let mut a = Client::connect(f.server.tcp_addr().unwrap(), "client-a").await;
    for _ in 0..5 {
        let (_, reason) = exception_of(&a.login("alice", "guess").await);
        assert_eq!(reason, "Password check failed for 'alice': []");
    }
    // Over the free allowance even the right password waits, and the answer says so.
    let (id, reason) = exception_of(&a.login("alice", "alicepw").await);
    assert_eq!(id, "::Glacier2::PermissionDeniedException");
    assert!(reason.contains("too many failed logins"), "{reason}");
    assert!(!reason.contains("alicepw"));
    // Other users are not affected.
    a.session("bob", "bobpw").await;
}
