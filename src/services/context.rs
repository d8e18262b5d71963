//! State shared by the servants: the dependencies, the servants registered per session, and
//! the state of each ServiceFactory (one per Glacier2 session).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::config::ConfigValues;
use crate::auth::{Authenticator, Directory};
use crate::facade::{Dispatch, ValueRef};
pub use crate::sessions::short;
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
    /// Counters the login path moves (the server exposes them with `--metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
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
            metrics: crate::metrics::Metrics::new(),
        }
    }
}

/// The ServiceFactories attached to each session, so that a session's death reaches them and
/// a client attaches only once. The servants themselves hang off each [`Factory`].
#[derive(Default)]
pub struct Registry {
    sessions: Mutex<HashMap<String, Vec<Weak<Factory>>>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<Weak<Factory>>>> {
        // Each update is a single insert or remove, so a poisoned map is still consistent.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a ServiceFactory; false when its client already has a live one on this session
    /// (OMERO refuses the second one: its identity would collide).
    pub fn add_factory(&self, factory: &Arc<Factory>) -> bool {
        let mut map = self.lock();
        let list = map.entry(factory.session_uuid.clone()).or_default();
        list.retain(|f| f.upgrade().is_some_and(|f| !f.is_destroyed()));
        if list
            .iter()
            .filter_map(Weak::upgrade)
            .any(|f| f.client_uuid == factory.client_uuid)
        {
            return false;
        }
        list.push(Arc::downgrade(factory));
        true
    }

    fn factories(&self, session_uuid: &str) -> Vec<Arc<Factory>> {
        self.lock()
            .get(session_uuid)
            .map(|list| list.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default()
    }

    /// Identity names of every servant of the session (all its clients), sorted. Only names:
    /// each servant answers only its own client's connection.
    pub fn service_names(&self, session_uuid: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .factories(session_uuid)
            .iter()
            .flat_map(|f| f.service_names())
            .collect();
        names.sort();
        names
    }

    /// A ServiceFactory went away: forget it.
    fn remove_factory(&self, factory: &Factory) {
        let mut map = self.lock();
        let Some(list) = map.get_mut(&factory.session_uuid) else {
            return;
        };
        list.retain(|f| f.upgrade().is_some_and(|f| !std::ptr::eq(&*f, factory)));
        if list.is_empty() {
            map.remove(&factory.session_uuid);
        }
    }

    /// The session died: every client's servants go, and the router stops routing to
    /// its ServiceFactories.
    pub fn drop_session(&self, session_uuid: &str) {
        let list = self.lock().remove(session_uuid).unwrap_or_default();
        for factory in list.iter().filter_map(Weak::upgrade) {
            factory.mark_gone();
            factory.clear_services();
        }
    }

    /// Drops every session `is_dead` names; for when news of deaths was lost.
    pub fn drop_dead(&self, is_dead: impl Fn(&str) -> bool) -> usize {
        let uuids: Vec<String> = self.lock().keys().cloned().collect();
        let dead: Vec<&String> = uuids.iter().filter(|u| is_dead(u)).collect();
        for uuid in &dead {
            self.drop_session(uuid);
        }
        dead.len()
    }
}

/// One ServiceFactory: a client (its `omero.client.uuid`) attached to an OMERO session, with
/// the services that client opened. It belongs to the connection that logged in, so those
/// services and its HasPassword answer that connection only.
pub struct Factory {
    pub client_uuid: String,
    pub session_uuid: String,
    /// False after a join until setSecurityPassword succeeds (the "HasPassword" pseudo-role).
    has_password: AtomicBool,
    mode: Mutex<DestroyMode>,
    destroyed: AtomicBool,
    /// The OMERO session died; set when the news arrives, read on every routed request.
    gone: AtomicBool,
    /// Identity name (`<clientUuid><service>`, category = session uuid) → servant. The
    /// servants hold this factory; [`Factory::destroy`] empties the map to end that cycle.
    services: Mutex<BTreeMap<String, Arc<dyn Dispatch>>>,
}

impl std::fmt::Debug for Factory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Factory")
            .field("client_uuid", &self.client_uuid)
            .field("session", &short(&self.session_uuid))
            .field("has_password", &self.has_password())
            .field("destroyed", &self.is_destroyed())
            .finish_non_exhaustive()
    }
}

impl Factory {
    pub fn new(client_uuid: &str, session_uuid: &str, has_password: bool) -> Self {
        Factory {
            client_uuid: client_uuid.to_string(),
            session_uuid: session_uuid.to_string(),
            has_password: AtomicBool::new(has_password),
            mode: Mutex::new(DestroyMode::Close),
            destroyed: AtomicBool::new(false),
            gone: AtomicBool::new(false),
            services: Mutex::new(BTreeMap::new()),
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

    /// Whether its OMERO session died (closed, reaped).
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    pub(crate) fn mark_gone(&self) {
        self.gone.store(true, Ordering::Release);
    }

    /// Identity name of a stateless service of this client: `<clientUuid><serviceName>`.
    pub fn service_name(&self, service: &str) -> String {
        format!("{}{}", self.client_uuid, service)
    }

    fn servants(&self) -> MutexGuard<'_, BTreeMap<String, Arc<dyn Dispatch>>> {
        // Single inserts and removes: a poisoned map is still consistent.
        self.services.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The servant registered under `name`, registering `make()` first if there is none.
    /// Nothing is registered once the factory is destroyed.
    pub fn service_or_insert(
        &self,
        name: &str,
        make: impl FnOnce() -> Arc<dyn Dispatch>,
    ) -> Arc<dyn Dispatch> {
        let mut map = self.servants();
        if let Some(s) = map.get(name) {
            return s.clone();
        }
        let servant = make();
        if !self.is_destroyed() {
            map.insert(name.to_string(), servant.clone());
        }
        servant
    }

    /// A servant this client opened.
    pub fn service(&self, name: &str) -> Option<Arc<dyn Dispatch>> {
        self.servants().get(name).cloned()
    }

    pub fn has_service(&self, name: &str) -> bool {
        self.servants().contains_key(name)
    }

    pub fn service_names(&self) -> Vec<String> {
        self.servants().keys().cloned().collect()
    }

    /// How many servants this client holds.
    pub fn service_count(&self) -> usize {
        self.servants().len()
    }

    /// Fails with OverUsageException when this client may not hold another servant.
    pub fn check_servant_limit(&self) -> Result<(), crate::facade::DispatchError> {
        let count = self.service_count();
        if count >= super::errors::MAX_SERVANTS_PER_CLIENT {
            return Err(super::errors::over_usage(count));
        }
        Ok(())
    }

    /// Removes one servant (a closed command handle); false when there was none.
    pub fn remove_service(&self, name: &str) -> bool {
        self.servants().remove(name).is_some()
    }

    fn clear_services(&self) {
        let old = std::mem::take(&mut *self.servants());
        // Dropped outside the lock: a servant's drop may come back here.
        drop(old);
    }

    /// Destroys this ServiceFactory once (spec §2.3): gives its reference back and drops
    /// the servants the outcome calls for. Later calls do nothing.
    pub async fn destroy(&self, services: &Services) -> Option<ReleaseOutcome> {
        if self.destroyed.swap(true, Ordering::SeqCst) {
            return None;
        }
        let outcome = services
            .sessions
            .release(&self.session_uuid, self.mode())
            .await;
        self.clear_services();
        services.registry.remove_factory(self);
        if matches!(
            outcome,
            ReleaseOutcome::Destroyed | ReleaseOutcome::AlreadyGone
        ) {
            services.registry.drop_session(&self.session_uuid);
        }
        tracing::info!(
            session = %short(&self.session_uuid),
            client = %self.client_uuid,
            ?outcome,
            "service factory destroyed"
        );
        Some(outcome)
    }
}

#[cfg(test)]
pub(crate) mod tests {
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

    /// Services over a fresh directory in `dir` and an in-memory session store, on a manual
    /// clock: the fixture of this layer's unit tests.
    pub(crate) fn services(dir: &std::path::Path) -> Services {
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
    fn servants_belong_to_their_client() {
        let tmp = tempfile::tempdir().unwrap();
        let svc = services(tmp.path());
        let r = &svc.registry;
        let c1 = Arc::new(Factory::new("c1", "s", true));
        let c2 = Arc::new(Factory::new("c2", "s", true));
        assert!(r.add_factory(&c1));
        assert!(!r.add_factory(&Arc::new(Factory::new("c1", "s", true))));
        assert!(r.add_factory(&c2));
        c1.service_or_insert("c1omero.api.IAdmin", || Arc::new(Nothing));
        c2.service_or_insert("c2omero.api.IAdmin", || Arc::new(Nothing));
        // Registered once: a second request returns the first servant.
        let first = c1.service("c1omero.api.IAdmin").unwrap();
        let again = c1.service_or_insert("c1omero.api.IAdmin", || Arc::new(Nothing));
        assert!(Arc::ptr_eq(&first, &again));
        // Another client's servant is not reachable through this one.
        assert!(c1.service("c2omero.api.IAdmin").is_none());
        assert_eq!(
            r.service_names("s"),
            vec!["c1omero.api.IAdmin", "c2omero.api.IAdmin"]
        );
        assert!(!c1.is_gone());
        r.drop_session("s");
        assert!(r.service_names("s").is_empty());
        assert!(!c2.has_service("c2omero.api.IAdmin"));
        assert!(c1.is_gone() && c2.is_gone());
    }

    #[tokio::test]
    async fn destroy_follows_the_mode_and_runs_once() {
        let tmp = tempfile::tempdir().unwrap();
        let svc = services(tmp.path());
        let info = svc.sessions.create(NewSession::new(0, 0)).await.unwrap();
        svc.sessions.join(&info.uuid).await.unwrap();
        let detached = Arc::new(Factory::new("c1", &info.uuid, true));
        detached.set_mode(DestroyMode::Detach);
        assert!(svc.registry.add_factory(&detached));
        detached.service_or_insert("c1x", || Arc::new(Nothing));
        assert_eq!(
            detached.destroy(&svc).await,
            Some(ReleaseOutcome::Detached { remaining: 1 })
        );
        assert!(detached.is_destroyed());
        assert_eq!(detached.destroy(&svc).await, None);
        assert!(!detached.has_service("c1x"));
        assert!(svc.registry.service_names(&info.uuid).is_empty());
        // The same client may attach again once its first factory is gone.
        let closing = Arc::new(Factory::new("c1", &info.uuid, false));
        assert!(svc.registry.add_factory(&closing));
        assert!(!closing.has_password());
        assert_eq!(closing.destroy(&svc).await, Some(ReleaseOutcome::Destroyed));
        assert!(!svc.sessions.is_live(&info.uuid));
    }
}
