//! Cyclic class graphs in request parameters: the generated dispatcher refuses them with an
//! UnknownLocalException (an `Arc` cycle would never be freed), and still takes shared,
//! acyclic graphs.

use std::sync::Arc;

use omero_sessiond::auth::{Authenticator, Directory, Throttle, ThrottleConfig};
use omero_sessiond::encoding::{
    Context, Encode, Encoding, Format, Identity, OutputStream, ValueRef,
};
use omero_sessiond::generated::omero::api::{ISession, ISessionDispatcher};
use omero_sessiond::generated::omero::{RCollection, RList, RType};
use omero_sessiond::runtime::{ConnectionInfo, Current, Dispatch, DispatchError, OperationMode};
use omero_sessiond::services::model::rlong;
use omero_sessiond::services::session::SessionService;
use omero_sessiond::services::{Factory, Services};
use omero_sessiond::sessions::{
    ManualClock, MemorySessionStore, NewSession, SessionConfig, SessionManager,
};

const FORMATS: [(Encoding, Format); 3] = [
    (Encoding::V1_0, Format::Compact),
    (Encoding::V1_1, Format::Compact),
    (Encoding::V1_1, Format::Sliced),
];

/// An ISession dispatcher on a fresh session, and that session's uuid.
async fn session(dir: &tempfile::TempDir) -> (ISessionDispatcher<SessionService>, String) {
    omero_sessiond::generated::register();
    let clock = ManualClock::new(1_700_000_000_000);
    let directory = Directory::open(dir.path()).unwrap();
    let throttle = Throttle::new(ThrottleConfig::default(), Arc::new(clock.clone()));
    let auth = Authenticator::new(directory, Arc::new(throttle));
    let sessions = SessionManager::new(
        SessionConfig::default(),
        Arc::new(clock),
        Arc::new(MemorySessionStore::default()),
    );
    let services = Services::new(auth, Arc::new(sessions));
    let uuid = services
        .sessions
        .create(NewSession::new(0, 0))
        .await
        .unwrap()
        .uuid;
    let factory = Arc::new(Factory::new("client", &uuid, true));
    let servant = SessionService::new(services, factory);
    (ISessionDispatcher(Arc::new(servant)), uuid)
}

fn current(operation: &str, encoding: Encoding) -> Current {
    Current {
        id: Identity::new("session", "x"),
        facet: String::new(),
        operation: operation.into(),
        // ISession's setInput and getInput are idempotent; the dispatcher checks the mode.
        mode: match operation {
            "setInput" | "getInput" => OperationMode::Idempotent,
            _ => OperationMode::Normal,
        },
        ctx: Context::new(),
        request_id: 1,
        encoding,
        connection: Arc::new(ConnectionInfo::detached(1, "tcp")),
    }
}

fn rlist(items: Vec<Option<ValueRef>>) -> RList {
    RList {
        base: RCollection {
            base: RType::default(),
            val: items,
        },
    }
}

/// `setInput(sess, key, value)` parameters.
fn set_input(encoding: Encoding, format: Format, sess: &str, value: &ValueRef) -> Vec<u8> {
    let mut w = OutputStream::new(encoding);
    w.set_format(format);
    sess.encode(&mut w);
    "k".encode(&mut w);
    w.write_value(Some(value));
    w.write_pending_values();
    w.into_bytes()
}

#[tokio::test]
async fn a_list_holding_itself_is_unknown_local_and_shared_graphs_pass() {
    let dir = tempfile::tempdir().unwrap();
    let (d, uuid) = session(&dir).await;
    // a list that holds itself (never freed: this test leaks it on purpose)
    let looped = ValueRef::empty();
    looped.fill_with(rlist(vec![Some(looped.clone()), rlong(1)]));
    // the same rlong twice, and a list shared by two lists: acyclic
    let one = rlong(1);
    let inner = ValueRef::new(rlist(vec![one.clone(), one]));
    let shared = ValueRef::new(rlist(vec![
        Some(inner.clone()),
        Some(ValueRef::new(rlist(vec![Some(inner)]))),
    ]));
    for (encoding, format) in FORMATS {
        let cur = current("setInput", encoding);
        let params = set_input(encoding, format, &uuid, &looped);
        match d.dispatch(&cur, &params).await {
            Err(DispatchError::UnknownLocal(text)) => assert_eq!(
                text,
                "MarshalException: cyclic class graphs are not accepted by this server"
            ),
            other => panic!("{encoding:?} {format:?}: {other:?}"),
        }
        let params = set_input(encoding, format, &uuid, &shared);
        d.dispatch(&cur, &params).await.unwrap();
        let stored = d.0.get_input(uuid.clone(), "k".into(), &cur).await.unwrap();
        assert_eq!(stored, Some(shared.clone()));
    }
}
