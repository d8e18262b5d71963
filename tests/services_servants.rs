//! The ServiceFactory, ISession and IAdmin servants called directly through their generated
//! traits, with a manual clock for expiry.

use std::collections::HashMap;
use std::sync::Arc;

use omero_sessiond::auth::{
    Authenticator, Directory, NewExperimenter, Password, Throttle, ThrottleConfig,
};
use omero_sessiond::encoding::{Context, Encoding, Identity, Proxy, ValueRef};
use omero_sessiond::generated::omero::api::{IAdmin, ISession, ServiceFactory};
use omero_sessiond::generated::omero::model::Session as SessionModel;
use omero_sessiond::generated::omero::model::{
    Experimenter, ExperimenterGroup, GroupExperimenterMap,
};
use omero_sessiond::generated::omero::sys::{EventContext, Principal};
use omero_sessiond::generated::omero::{RLong, RMap, RString, RType, ServerError};
use omero_sessiond::runtime::{ConnectionInfo, Current, DispatchError, OperationMode};
use omero_sessiond::services::admin::AdminService;
use omero_sessiond::services::model::{rlong, rstring};
use omero_sessiond::services::session::SessionService;
use omero_sessiond::services::{Factory, FactoryServant, Services};
use omero_sessiond::sessions::{
    ManualClock, MemorySessionStore, NewSession, SessionConfig, SessionManager,
};

const T0: i64 = 1_700_000_000_000;

struct World {
    services: Services,
    clock: ManualClock,
    alice: i64,
    _dir: tempfile::TempDir,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let directory = Directory::open(dir.path()).unwrap();
    directory
        .set_password("root", &Password::new("rootpw"))
        .unwrap();
    let alice = directory
        .add_experimenter(NewExperimenter {
            ome_name: "alice".into(),
            first_name: Some("Alice".into()),
            last_name: Some("Liddell".into()),
            email: None,
            password: Password::new("alicepw"),
            admin: false,
            groups: Vec::new(),
            owner_of: Vec::new(),
        })
        .unwrap()
        .id;
    let throttle = Throttle::new(ThrottleConfig::default(), Arc::new(clock.clone()));
    let auth = Authenticator::new(directory, Arc::new(throttle));
    let config = SessionConfig::default();
    let sessions = SessionManager::new(
        config,
        Arc::new(clock.clone()),
        Arc::new(MemorySessionStore::default()),
    );
    World {
        services: Services::new(auth, Arc::new(sessions)),
        clock,
        alice,
        _dir: dir,
    }
}

fn current(ctx: &[(&str, &str)]) -> Current {
    Current {
        id: Identity::new("x", "y"),
        facet: String::new(),
        operation: "op".into(),
        mode: OperationMode::Normal,
        ctx: ctx
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Context>(),
        request_id: 1,
        encoding: Encoding::V1_1,
        connection: Arc::new(ConnectionInfo::detached(1, "tcp")),
        received: std::time::Instant::now(),
    }
}

struct Client {
    factory: Arc<Factory>,
    session: SessionService,
    admin: AdminService,
    sf: FactoryServant,
}

impl World {
    /// A ServiceFactory on a new session of `owner` (or joined to `uuid` when given).
    async fn client(&self, owner: i64, join: Option<&str>) -> Client {
        let (uuid, fresh) = match join {
            Some(u) => (self.services.sessions.join(u).await.unwrap().uuid, false),
            None => (
                self.services
                    .sessions
                    .create(NewSession::new(owner, 1))
                    .await
                    .unwrap()
                    .uuid,
                true,
            ),
        };
        let client_uuid = uuid::Uuid::new_v4().to_string();
        let factory = Arc::new(Factory::new(&client_uuid, &uuid, fresh));
        assert!(self.services.registry.add_factory(&factory));
        Client {
            session: SessionService::new(self.services.clone(), factory.clone()),
            admin: AdminService::new(self.services.clone(), factory.clone()),
            sf: FactoryServant::new(self.services.clone(), factory.clone()),
            factory,
        }
    }
}

/// The ServerError part of an OMERO exception, and its type id.
fn server_error(e: DispatchError) -> (String, ServerError) {
    let DispatchError::User(e) = e else {
        panic!("not a user exception: {e:?}");
    };
    let base = e
        .find("::omero::ServerError")
        .and_then(|a| a.downcast_ref::<ServerError>())
        .expect("a ServerError")
        .clone();
    (e.ice_id().to_string(), base)
}

fn uuid_of(session: &Option<ValueRef>) -> String {
    let s = session.as_ref().unwrap().get::<SessionModel>().unwrap();
    s.uuid
        .as_ref()
        .unwrap()
        .get::<RString>()
        .unwrap()
        .val
        .clone()
}

fn bare(uuid: &str) -> Option<ValueRef> {
    Some(ValueRef::new(SessionModel {
        uuid: rstring(uuid),
        ..Default::default()
    }))
}

#[tokio::test]
async fn environment_holds_any_rtype() {
    let w = world();
    let c = w.client(w.alice, None).await;
    let uuid = c.factory.session_uuid.clone();
    let cur = current(&[]);
    let mut nested = HashMap::new();
    nested.insert("n".to_string(), rlong(7));
    let map = Some(ValueRef::new(RMap {
        base: RType::default(),
        val: nested,
    }));
    c.session
        .set_input(uuid.clone(), "m".into(), map.clone(), &cur)
        .await
        .unwrap();
    c.session
        .set_input(uuid.clone(), "s".into(), rstring("v"), &cur)
        .await
        .unwrap();
    let back = c
        .session
        .get_input(uuid.clone(), "m".into(), &cur)
        .await
        .unwrap();
    assert_eq!(back, map);
    assert_eq!(
        c.session.get_input_keys(uuid.clone(), &cur).await.unwrap(),
        vec!["m".to_string(), "s".to_string()]
    );
    c.session
        .set_input(uuid.clone(), "s".into(), None, &cur)
        .await
        .unwrap();
    assert_eq!(
        c.session
            .get_input(uuid.clone(), "s".into(), &cur)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        c.session
            .get_inputs(uuid.clone(), &cur)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(c
        .session
        .get_outputs(uuid.clone(), &cur)
        .await
        .unwrap()
        .is_empty());
    let err = c
        .session
        .get_input("nope".into(), "k".into(), &cur)
        .await
        .unwrap_err();
    let (id, base) = server_error(err);
    assert_eq!(id, "::omero::RemovedSessionException");
    assert_eq!(base.message, "No context for nope");
    assert_eq!(
        base.server_exception_class,
        "ome.conditions.RemovedSessionException"
    );
    assert_eq!(base.server_stack_trace, "");
}

#[tokio::test]
async fn close_session_counts_down() {
    let w = world();
    let a = w.client(w.alice, None).await;
    let uuid = a.factory.session_uuid.clone();
    let b = w.client(w.alice, Some(&uuid)).await;
    let cur = current(&[]);
    assert_eq!(
        b.session
            .get_reference_count(uuid.clone(), &cur)
            .await
            .unwrap(),
        2
    );
    assert_eq!(b.session.close_session(bare(&uuid), &cur).await.unwrap(), 1);
    assert_eq!(
        b.session
            .close_session(bare("unknown"), &cur)
            .await
            .unwrap(),
        -1
    );
    let (id, base) = server_error(
        b.session
            .close_session(bare_without_uuid(), &cur)
            .await
            .unwrap_err(),
    );
    assert_eq!(id, "::omero::ApiUsageException");
    assert_eq!(base.message, "Uuid cannot be null.");
    assert_eq!(
        b.session.close_session(bare(&uuid), &cur).await.unwrap(),
        -2
    );
    // The caller's own session is gone now.
    let (id, _) = server_error(a.session.get_session(uuid, &cur).await.unwrap_err());
    assert_eq!(id, "::omero::RemovedSessionException");
}

fn bare_without_uuid() -> Option<ValueRef> {
    Some(ValueRef::new(SessionModel::default()))
}

#[tokio::test]
async fn quiet_lookups_leave_the_idle_time_alone() {
    let w = world();
    let watcher = w.client(0, None).await;
    let target = w.client(w.alice, None).await;
    let uuid = target.factory.session_uuid.clone();
    let quiet = current(&[("quietly", "true")]);
    w.clock.advance(400_000);
    watcher
        .session
        .get_session(uuid.clone(), &quiet)
        .await
        .unwrap();
    w.clock.advance(300_000);
    // 700 s idle > 600 s: the quiet lookup did not refresh it.
    let (id, base) = server_error(
        watcher
            .session
            .get_session(uuid.clone(), &quiet)
            .await
            .unwrap_err(),
    );
    assert_eq!(id, "::omero::SessionTimeoutException");
    assert!(base.message.contains("exceeded timeToIdle (600000)"));
    // Every call of the expired session itself fails the same way.
    let (id, _) = server_error(target.sf.keep_alive(None, &current(&[])).await.unwrap_err());
    assert_eq!(id, "::omero::SessionTimeoutException");
}

#[tokio::test]
async fn a_joined_factory_needs_its_password() {
    let w = world();
    let a = w.client(w.alice, None).await;
    let j = w.client(w.alice, Some(&a.factory.session_uuid)).await;
    let cur = current(&[]);
    let (id, base) = server_error(
        j.session
            .create_user_session(0, 1000, String::new(), &cur)
            .await
            .unwrap_err(),
    );
    assert_eq!(id, "::omero::SecurityViolation");
    assert!(base.message.contains("setSecurityPassword"));
    let (id, base) = server_error(
        j.sf.set_security_password("wrong".into(), &cur)
            .await
            .unwrap_err(),
    );
    assert_eq!(id, "::omero::SecurityViolation");
    assert_eq!(base.message, "Bad password for alice");
    j.sf.set_security_password("alicepw".into(), &cur)
        .await
        .unwrap();
    let s = j
        .session
        .create_user_session(0, 1000, String::new(), &cur)
        .await
        .unwrap();
    let info = w.services.sessions.lookup(&uuid_of(&s), true).unwrap();
    assert_eq!(
        (info.time_to_live, info.time_to_idle, info.refcount),
        (0, 1000, 1)
    );
    assert_eq!(info.agent.as_deref(), Some("createSession"));
}

#[tokio::test]
async fn only_admins_sudo() {
    let w = world();
    let alice = w.client(w.alice, None).await;
    let root = w.client(0, None).await;
    let p = |name: &str| {
        Some(ValueRef::new(Principal {
            name: name.into(),
            ..Default::default()
        }))
    };
    let cur = current(&[]);
    let (id, _) = server_error(
        alice
            .session
            .create_session_with_timeouts(p("root"), 0, 0, &cur)
            .await
            .unwrap_err(),
    );
    assert_eq!(id, "::omero::SecurityViolation");
    let s = root
        .session
        .create_session_with_timeout(p("alice"), 5000, &cur)
        .await
        .unwrap();
    let info = w.services.sessions.lookup(&uuid_of(&s), true).unwrap();
    assert_eq!((info.time_to_live, info.time_to_idle), (5000, 0));
    assert_eq!(info.sudoer_id, Some(0));
    assert_eq!(info.agent.as_deref(), Some("OMERO.sudo"));
}

#[tokio::test]
async fn event_context_and_refusals() {
    let w = world();
    let c = w.client(w.alice, None).await;
    let cur = current(&[]);
    let ec = c.admin.get_event_context(&cur).await.unwrap().unwrap();
    let ec = ec.get::<EventContext>().unwrap();
    assert_eq!(ec.user_name, "alice");
    assert_eq!((ec.share_id, ec.event_id), (-1, -1));
    assert_eq!(ec.session_uuid, c.factory.session_uuid);
    assert!(!ec.is_admin && ec.admin_privileges.is_empty());
    assert!(ec.sudoer_id.is_none() && ec.sudoer_name.is_none());
    // Lookups carry the memberships (groupExperimenterMap) tools read.
    let users = c.admin.lookup_experimenters(&cur).await.unwrap();
    let alice = users
        .iter()
        .flatten()
        .filter_map(|u| u.get::<Experimenter>())
        .find(|u| {
            u.base
                .id
                .as_ref()
                .and_then(|i| i.get::<RLong>())
                .map(|l| l.val)
                == Some(w.alice)
        })
        .expect("alice listed");
    assert!(alice.group_experimenter_map_loaded);
    let parents: Vec<String> = alice
        .group_experimenter_map_seq
        .iter()
        .flatten()
        .filter_map(|m| m.get::<GroupExperimenterMap>())
        .filter_map(|m| m.parent.as_ref()?.get::<ExperimenterGroup>()?.name.clone())
        .filter_map(|n| n.get::<RString>().map(|s| s.val.clone()))
        .collect();
    assert_eq!(parents, vec!["user".to_string()]);
    let (id, _) = server_error(
        c.admin
            .change_user_password("root".into(), rstring("x"), &cur)
            .await
            .unwrap_err(),
    );
    assert_eq!(id, "::omero::SecurityViolation");
}

/// What a client gets calling `operation` on the servant behind `proxy`.
async fn call(c: &Client, proxy: &Proxy, operation: &str) -> Result<Vec<u8>, DispatchError> {
    assert_eq!(proxy.identity.category, c.factory.session_uuid);
    let servant = c
        .factory
        .service(&proxy.identity.name)
        .expect("a servant of this client");
    let mut cur = current(&[]);
    cur.id = proxy.identity.clone();
    cur.operation = operation.to_string();
    servant.dispatch(&cur, &[]).await
}

#[tokio::test]
async fn missing_services_fail_late_naming_the_operation() {
    let w = world();
    let c = w.client(w.alice, None).await;
    let cur = current(&[]);
    let query = c.sf.get_query_service(&cur).await.unwrap().unwrap();
    assert_eq!(query.identity.category, c.factory.session_uuid);
    assert_eq!(
        query.identity.name,
        format!("{}omero.api.IQuery", c.factory.client_uuid)
    );
    // One per client, as for every stateless service.
    let again = c.sf.get_query_service(&cur).await.unwrap().unwrap();
    assert_eq!(again.identity, query.identity);
    let (id, base) = server_error(call(&c, &query, "findAllByQuery").await.unwrap_err());
    assert_eq!(id, "::omero::ApiUsageException");
    assert!(
        base.message.contains("IQuery.findAllByQuery"),
        "{}",
        base.message
    );
    // Stateful services are new on every call.
    let store = c.sf.create_raw_file_store(&cur).await.unwrap().unwrap();
    let other = c.sf.create_raw_file_store(&cur).await.unwrap().unwrap();
    assert_ne!(store.identity, other.identity);
    assert!(store.identity.name.ends_with("omero.api.RawFileStore"));
    let (_, base) = server_error(call(&c, &store, "setFileId").await.unwrap_err());
    assert!(base.message.contains("RawFileStore.setFileId"));
    // By name as well; unknown names are refused at once, as OMERO does.
    let upd =
        c.sf.get_by_name("omero.api.IUpdate".into(), &cur)
            .await
            .unwrap()
            .unwrap();
    assert!(upd.identity.name.ends_with("omero.api.IUpdate"));
    let (id, base) = server_error(
        c.sf.get_by_name("omero.api.Nope".into(), &cur)
            .await
            .unwrap_err(),
    );
    assert_eq!(id, "::omero::ApiUsageException");
    assert!(base.message.contains("unknown service"));
    let (id, _) = server_error(
        c.sf.create_by_name("omero.api.IQuery".into(), &cur)
            .await
            .unwrap_err(),
    );
    assert_eq!(id, "::omero::ApiUsageException");
    // Closing the session makes the proxies fail as the session does.
    w.services
        .sessions
        .close_session(&c.factory.session_uuid)
        .await
        .unwrap();
    let (id, _) = server_error(call(&c, &query, "findAllByQuery").await.unwrap_err());
    assert_eq!(id, "::omero::RemovedSessionException");
}

#[tokio::test]
async fn the_guest_gets_no_data_services() {
    let w = world();
    let guest = omero_sessiond::store::directory::GUEST_USER_ID;
    let c = w.client(guest, None).await;
    let cur = current(&[]);
    let (id, base) = server_error(c.sf.get_query_service(&cur).await.unwrap_err());
    assert_eq!(id, "::omero::SecurityViolation");
    assert!(base.message.contains("omero.api.IQuery"));
    assert!(c.sf.get_config_service(&cur).await.unwrap().is_some());
}

#[tokio::test]
async fn keep_alive_knows_the_registered_services() {
    let w = world();
    let c = w.client(w.alice, None).await;
    let cur = current(&[]);
    let admin: Proxy = c.sf.get_admin_service(&cur).await.unwrap().unwrap();
    assert_eq!(admin.identity.category, c.factory.session_uuid);
    let by_name =
        c.sf.get_by_name("omero.api.IAdmin".into(), &cur)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(by_name.identity, admin.identity);
    assert!(c.sf.keep_alive(Some(admin.clone()), &cur).await.unwrap());
    assert!(!c.sf.keep_alive(None, &cur).await.unwrap());
    assert_eq!(c.sf.keep_all_alive(Vec::new(), &cur).await.unwrap(), -1);
    let bogus = Proxy::new(Identity::new("x", "unknown"));
    assert_eq!(
        c.sf.keep_all_alive(vec![Some(admin.clone()), None, Some(bogus)], &cur)
            .await
            .unwrap(),
        0b100
    );
    assert_eq!(
        c.sf.active_services(&cur).await.unwrap(),
        vec![admin.identity.name]
    );
    let (id, _) = server_error(
        c.sf.subscribe("/private/x".into(), None, &cur)
            .await
            .unwrap_err(),
    );
    assert_eq!(id, "::omero::ApiUsageException");
}

#[tokio::test]
async fn a_session_in_a_foreign_group_is_unusable() {
    let w = world();
    let lab = w.services.directory.add_group("lab", "rw----").unwrap();
    let root = w.client(0, None).await;
    let p = Some(ValueRef::new(Principal {
        name: "alice".into(),
        group: "lab".into(),
        ..Default::default()
    }));
    let s = root
        .session
        .create_session_with_timeouts(p, 0, 0, &current(&[]))
        .await
        .unwrap();
    let uuid = uuid_of(&s);
    assert_eq!(
        w.services.sessions.lookup(&uuid, true).unwrap().group_id,
        lab.id
    );
    let alice = w.client(w.alice, Some(&uuid)).await;
    let (id, base) = server_error(
        alice
            .admin
            .get_event_context(&current(&[]))
            .await
            .unwrap_err(),
    );
    assert_eq!(id, "::omero::SecurityViolation");
    assert!(base.message.contains("cannot login"));
}

#[tokio::test]
async fn a_client_holds_a_bounded_number_of_servants() {
    let w = world();
    let c = w.client(w.alice, None).await;
    let cur = current(&[]);
    let limit = omero_sessiond::services::errors::MAX_SERVANTS_PER_CLIENT;
    for _ in 0..limit {
        c.sf.create_raw_file_store(&cur).await.unwrap();
    }
    let (id, _) = server_error(c.sf.create_raw_file_store(&cur).await.unwrap_err());
    assert_eq!(id, "::omero::OverUsageException");
    let (id, _) = server_error(c.sf.submit(None, &cur).await.unwrap_err());
    assert_eq!(id, "::omero::OverUsageException");
}
