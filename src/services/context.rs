//! State shared by the servants: the dependencies, the servants registered per session, and
//! the state of each ServiceFactory (one per Glacier2 session).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::config::ConfigValues;
use crate::auth::{Authenticator, Directory};
use crate::facade::{Dispatch, ValueRef};
use crate::sessions::{DestroyMode, ReleaseOutcome, SessionManager};

/// The session cache as the services use it: environments hold any `omero::RType`.
pub type Sessions = SessionManager<ValueRef>;

/// What the router and the servants need. Cheap to clone.
#[derive(Clone)]
pub struct Services {
    pub directory: Directory,
    pub auth: Authenticator,
    pub sessions: Arc<Sessions>,
    pub registry: Arc<Registry>,
    /// What IConfig serves.
    pub config: Arc<ConfigValues>,
}

impl Services {
    pub fn new(auth: Authenticator, sessions: Arc<Sessions>) -> Self {
        // Without a database of its own, the server names itself with a fresh uuid.
        let config = ConfigValues::new(sessions.config(), &uuid::Uuid::new_v4().to_string());
        Services {
            directory: auth.directory().clone(),
            auth,
            sessions,
            registry: Arc::new(Registry::default()),
            config: Arc::new(config),
        }
    }
}

struct Registered {
    client_uuid: String,
    servant: Arc<dyn Dispatch>,
}

#[derive(Default)]
struct SessionServants {
    /// Identity name → servant; the identity category is the session uuid.
    services: BTreeMap<String, Registered>,
    /// Client uuids with a live ServiceFactory on this session.
    factories: Vec<String>,
}

/// The servants of every session, as OMERO's per-session ServantHolder keeps them.
#[derive(Default)]
pub struct Registry {
    sessions: Mutex<HashMap<String, SessionServants>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, SessionServants>> {
        // Each update is a single insert or remove, so a poisoned map is still consistent.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a ServiceFactory; false when this client already has one on this session
    /// (OMERO refuses the second one: its identity would collide).
    pub fn add_factory(&self, session_uuid: &str, client_uuid: &str) -> bool {
        let mut map = self.lock();
        let entry = map.entry(session_uuid.to_string()).or_default();
        if entry.factories.iter().any(|c| c == client_uuid) {
            return false;
        }
        entry.factories.push(client_uuid.to_string());
        true
    }

    /// The servant registered under `name`, registering `make()` first if there is none.
    pub fn service_or_insert(
        &self,
        session_uuid: &str,
        client_uuid: &str,
        name: &str,
        make: impl FnOnce() -> Arc<dyn Dispatch>,
    ) -> Arc<dyn Dispatch> {
        let mut map = self.lock();
        let entry = map.entry(session_uuid.to_string()).or_default();
        entry
            .services
            .entry(name.to_string())
            .or_insert_with(|| Registered {
                client_uuid: client_uuid.to_string(),
                servant: make(),
            })
            .servant
            .clone()
    }

    pub fn service(&self, session_uuid: &str, name: &str) -> Option<Arc<dyn Dispatch>> {
        let map = self.lock();
        map.get(session_uuid)?
            .services
            .get(name)
            .map(|r| r.servant.clone())
    }

    pub fn has_service(&self, session_uuid: &str, name: &str) -> bool {
        self.service(session_uuid, name).is_some()
    }

    /// Identity names of every servant of the session (all its clients), sorted.
    pub fn service_names(&self, session_uuid: &str) -> Vec<String> {
        let map = self.lock();
        map.get(session_uuid)
            .map(|s| s.services.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Removes one servant (a closed command handle); false when there was none.
    pub fn remove_service(&self, session_uuid: &str, name: &str) -> bool {
        let mut map = self.lock();
        map.get_mut(session_uuid)
            .is_some_and(|entry| entry.services.remove(name).is_some())
    }

    /// A detached ServiceFactory went away: drop its client's (stateless) servants only.
    pub fn drop_client(&self, session_uuid: &str, client_uuid: &str) {
        let mut map = self.lock();
        let Some(entry) = map.get_mut(session_uuid) else {
            return;
        };
        entry.services.retain(|_, r| r.client_uuid != client_uuid);
        entry.factories.retain(|c| c != client_uuid);
        if entry.services.is_empty() && entry.factories.is_empty() {
            map.remove(session_uuid);
        }
    }

    /// The session died: drop every servant of it.
    pub fn drop_session(&self, session_uuid: &str) {
        self.lock().remove(session_uuid);
    }
}

/// One ServiceFactory: a client (its `omero.client.uuid`) attached to an OMERO session.
#[derive(Debug)]
pub struct Factory {
    pub client_uuid: String,
    pub session_uuid: String,
    /// False after a join until setSecurityPassword succeeds (the "HasPassword" pseudo-role).
    has_password: AtomicBool,
    mode: Mutex<DestroyMode>,
    destroyed: AtomicBool,
}

impl Factory {
    pub fn new(client_uuid: &str, session_uuid: &str, has_password: bool) -> Self {
        Factory {
            client_uuid: client_uuid.to_string(),
            session_uuid: session_uuid.to_string(),
            has_password: AtomicBool::new(has_password),
            mode: Mutex::new(DestroyMode::Close),
            destroyed: AtomicBool::new(false),
        }
    }

    pub fn has_password(&self) -> bool {
        self.has_password.load(Ordering::SeqCst)
    }

    pub fn set_has_password(&self) {
        self.has_password.store(true, Ordering::SeqCst);
    }

    pub fn set_mode(&self, mode: DestroyMode) {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner()) = mode;
    }

    pub fn mode(&self) -> DestroyMode {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_destroyed(&self) -> bool {
        self.destroyed.load(Ordering::SeqCst)
    }

    /// Identity name of a stateless service of this client: `<clientUuid><serviceName>`.
    pub fn service_name(&self, service: &str) -> String {
        format!("{}{}", self.client_uuid, service)
    }

    /// Destroys this ServiceFactory once (spec §2.3): gives its reference back and drops
    /// the servants the outcome calls for. Later calls do nothing.
    pub fn destroy(&self, services: &Services) -> Option<ReleaseOutcome> {
        if self.destroyed.swap(true, Ordering::SeqCst) {
            return None;
        }
        let outcome = services.sessions.release(&self.session_uuid, self.mode());
        match outcome {
            ReleaseOutcome::Destroyed | ReleaseOutcome::AlreadyGone => {
                services.registry.drop_session(&self.session_uuid)
            }
            ReleaseOutcome::Detached { .. } => services
                .registry
                .drop_client(&self.session_uuid, &self.client_uuid),
        }
        tracing::info!(
            session = %self.session_uuid,
            client = %self.client_uuid,
            ?outcome,
            "service factory destroyed"
        );
        Some(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Throttle, ThrottleConfig};
    use crate::facade::{async_trait, Current, DispatchError};
    use crate::sessions::{ManualClock, MemorySessionStore, NewSession, SessionConfig};

    struct Nothing;

    #[async_trait]
    impl Dispatch for Nothing {
        fn type_ids(&self) -> &'static [&'static str] {
            &["::Ice::Object"]
        }
        fn most_derived_type_id(&self) -> &'static str {
            "::Ice::Object"
        }
        async fn dispatch(&self, _: &Current, _: &[u8]) -> Result<Vec<u8>, DispatchError> {
            Err(DispatchError::OperationNotExist)
        }
    }

    fn services(dir: &std::path::Path) -> Services {
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let directory = Directory::open(dir).unwrap();
        let throttle = Throttle::new(ThrottleConfig::default(), clock.clone());
        let auth = Authenticator::new(directory, Arc::new(throttle));
        let sessions = SessionManager::new(
            SessionConfig::default(),
            clock,
            Arc::new(MemorySessionStore::default()),
        );
        Services::new(auth, Arc::new(sessions))
    }

    #[test]
    fn registry_tracks_servants_per_session_and_client() {
        let r = Registry::default();
        assert!(r.add_factory("s", "c1"));
        assert!(!r.add_factory("s", "c1"));
        assert!(r.add_factory("s", "c2"));
        r.service_or_insert("s", "c1", "c1omero.api.IAdmin", || Arc::new(Nothing));
        r.service_or_insert("s", "c2", "c2omero.api.IAdmin", || Arc::new(Nothing));
        // Registered once: a second request returns the first servant.
        let first = r.service("s", "c1omero.api.IAdmin").unwrap();
        let again = r.service_or_insert("s", "c1", "c1omero.api.IAdmin", || Arc::new(Nothing));
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(
            r.service_names("s"),
            vec!["c1omero.api.IAdmin", "c2omero.api.IAdmin"]
        );
        r.drop_client("s", "c1");
        assert!(!r.has_service("s", "c1omero.api.IAdmin"));
        assert!(r.has_service("s", "c2omero.api.IAdmin"));
        assert!(r.add_factory("s", "c1"));
        r.drop_session("s");
        assert!(r.service_names("s").is_empty());
    }

    #[test]
    fn destroy_follows_the_mode_and_runs_once() {
        let tmp = tempfile::tempdir().unwrap();
        let svc = services(tmp.path());
        let info = svc.sessions.create(NewSession::new(0, 0)).unwrap();
        svc.sessions.join(&info.uuid).unwrap();
        let detached = Factory::new("c1", &info.uuid, true);
        detached.set_mode(DestroyMode::Detach);
        svc.registry.add_factory(&info.uuid, "c1");
        svc.registry
            .service_or_insert(&info.uuid, "c1", "c1x", || Arc::new(Nothing));
        assert_eq!(
            detached.destroy(&svc),
            Some(ReleaseOutcome::Detached { remaining: 1 })
        );
        assert!(detached.is_destroyed());
        assert_eq!(detached.destroy(&svc), None);
        assert!(!svc.registry.has_service(&info.uuid, "c1x"));
        let closing = Factory::new("c2", &info.uuid, false);
        assert!(!closing.has_password());
        assert_eq!(closing.destroy(&svc), Some(ReleaseOutcome::Destroyed));
        assert!(!svc.sessions.is_live(&info.uuid));
    }
}
