//! An ISession dispatcher on a fresh session, as the server runs it, for the tests that send
//! it raw parameters (`mod isession_fixture;` in each).

use std::sync::Arc;

use omero_sessiond::auth::{Authenticator, Directory, Throttle, ThrottleConfig};
use omero_sessiond::encoding::{Context, Encoding, Identity};
use omero_sessiond::generated::omero::api::ISessionDispatcher;
use omero_sessiond::runtime::{ConnectionInfo, Current, OperationMode};
use omero_sessiond::services::session::SessionService;
use omero_sessiond::services::{Factory, Services};
use omero_sessiond::sessions::{
    ManualClock, MemorySessionStore, NewSession, SessionConfig, SessionManager,
};

/// An ISession dispatcher on a fresh session, and that session's uuid.
pub async fn session(dir: &tempfile::TempDir) -> (ISessionDispatcher<SessionService>, String) {
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

/// The request context of `operation` on that session, in `encoding`.
pub fn current(operation: &str, encoding: Encoding) -> Current {
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
        received: std::time::Instant::now(),
    }
}
