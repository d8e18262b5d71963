//! The Glacier2 router object, `Ice/RouterFinder`, and the per-request routing decision.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::facade::{ConnectionInfo, Current, DispatchError, Identity, Proxy};
use crate::generated::glacier2::{
    CannotCreateSessionException, PermissionDeniedException, Router, SessionNotExistException,
};
use crate::generated::ice::RouterFinder;
use crate::runtime::config::de;
use crate::runtime::{Located, Locator};

use super::manager::SessionManager;
use super::proxy::{callback_endpoints, proxy_for};
use super::state::{Connections, RouterSession};

/// Router settings. The `[router]` section of the config file deserializes straight into
/// them, times in seconds, keys left out keeping the `Default`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterConfig {
    /// Category of the router's identity; OMERO clients use `OMERO.Glacier2`.
    pub instance_name: String,
    /// Glacier2.SessionTimeout: a session with no activity for this long is destroyed;
    /// `None` never (`session_timeout_s = 0`).
    #[serde(rename = "session_timeout_s", deserialize_with = "de::secs_or_off")]
    pub session_timeout: Option<Duration>,
    /// What getACMTimeout reports, in seconds.
    pub acm_timeout_s: i32,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            instance_name: "OMERO.Glacier2".to_string(),
            session_timeout: Some(Duration::from_secs(600)),
            acm_timeout_s: 60,
        }
    }
}

/// The router: state shared by the router servant, the RouterFinder and the locator.
pub struct GlacierRouter {
    pub config: RouterConfig,
    pub manager: Arc<dyn SessionManager>,
    /// Every connection's session, for what spans connections (logins, the inactivity
    /// timeout); a routed request reads its connection's slot instead.
    pub connections: Connections,
    router_identity: Identity,
    finder_identity: Identity,
}

impl GlacierRouter {
    pub fn new(config: RouterConfig, manager: Arc<dyn SessionManager>) -> Arc<Self> {
        Arc::new(GlacierRouter {
            router_identity: Identity::new(config.instance_name.clone(), "router"),
            finder_identity: Self::finder_identity(),
            config,
            manager,
            connections: Connections::default(),
        })
    }

    pub fn router_identity(&self) -> Identity {
        self.router_identity.clone()
    }

    pub fn finder_identity() -> Identity {
        Identity::new("Ice", "RouterFinder")
    }

    /// The live session of this connection. A session whose ServiceFactory was destroyed
    /// directly (`sf.destroy()`) ends its Glacier2 session too, as OMERO's SessionControl
    /// destroy does.
    fn session_of(&self, conn: &ConnectionInfo) -> Option<Arc<RouterSession>> {
        let session = conn.slot.get::<RouterSession>()?;
        if session.is_ended() {
            return None;
        }
        if session.backend.is_destroyed() {
            self.connections.remove_if(conn.id, &session);
            conn.slot.clear_if(&session);
            return None;
        }
        Some(session)
    }

    /// Ends the Glacier2 session of a connection, destroying its backend session.
    pub async fn end_session(&self, conn: &ConnectionInfo) -> bool {
        match self.detach(conn) {
            Some(session) => {
                session.backend.destroy().await;
                true
            }
            None => false,
        }
    }

    /// Takes the connection's Glacier2 session off the connection and the router; the
    /// caller destroys its backend session.
    fn detach(&self, conn: &ConnectionInfo) -> Option<Arc<RouterSession>> {
        conn.slot.set(None);
        self.connections.remove(conn.id)
    }

    /// Destroys the sessions idle longer than the session timeout; returns how many.
    pub async fn expire_idle(&self) -> usize {
        let Some(timeout) = self.config.session_timeout else {
            return 0;
        };
        let idle = self
            .connections
            .take_idle(std::time::Instant::now(), timeout);
        for session in &idle {
            let (backend, client) = session.backend.describe();
            tracing::info!(session = %backend, client, "glacier2 session timed out");
            session.backend.destroy().await;
        }
        idle.len()
    }

    /// Runs [`Self::expire_idle`] a few times per timeout until the router is dropped.
    pub fn spawn_idle_reaper(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let timeout = self.config.session_timeout?;
        let weak = Arc::downgrade(self);
        let period = (timeout / 4).max(Duration::from_millis(250));
        Some(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(router) = weak.upgrade() else {
                    return;
                };
                router.expire_idle().await;
            }
        }))
    }
}

fn session_not_exist() -> DispatchError {
    SessionNotExistException {}.into()
}

/// The servant of `<instance>/router`.
pub struct RouterServant(pub Arc<GlacierRouter>);

impl Router for RouterServant {
    async fn get_client_proxy(
        &self,
        _current: &Current,
    ) -> Result<(Option<Proxy>, Option<bool>), DispatchError> {
        // Null: clients keep using the router's own connection for every routed call.
        Ok((None, Some(true)))
    }

    async fn get_server_proxy(&self, current: &Current) -> Result<Option<Proxy>, DispatchError> {
        let session = self
            .0
            .session_of(&current.connection)
            .ok_or(DispatchError::ObjectNotExist)?;
        let id = Identity::new(session.category.clone(), "dummy");
        let mut proxy = proxy_for(id, &current.connection);
        proxy.endpoints = callback_endpoints(&current.connection);
        Ok(Some(proxy))
    }

    async fn add_proxies(
        &self,
        _proxies: Vec<Option<Proxy>>,
        _current: &Current,
    ) -> Result<Vec<Option<Proxy>>, DispatchError> {
        // No routing table: requests are dispatched by identity, nothing is ever evicted.
        Ok(Vec::new())
    }

    async fn get_category_for_client(&self, current: &Current) -> Result<String, DispatchError> {
        let session = self
            .0
            .session_of(&current.connection)
            .ok_or(DispatchError::ObjectNotExist)?;
        Ok(session.category.clone())
    }

    async fn create_session(
        &self,
        user_id: String,
        password: String,
        current: &Current,
    ) -> Result<Option<Proxy>, DispatchError> {
        let router = &self.0;
        let info = &current.connection;
        // A session whose factory was destroyed frees the connection for a new one.
        let _ = router.session_of(info);
        if router.connections.begin_create(info.id).is_err() {
            return Err(CannotCreateSessionException {
                reason: "session exists".to_string(),
            }
            .into());
        }
        let backend = match router.manager.create(&user_id, password, current).await {
            Ok(b) => b,
            Err(e) => {
                router.connections.abort_create(info.id);
                return Err(e);
            }
        };
        let session = Arc::new(RouterSession::new(backend));
        let identity = session.backend.identity().clone();
        // In the slot before the map: a close that comes in between empties the slot, and
        // then the map refuses the session below.
        info.slot.set(Some(session.clone()));
        if !router.connections.finish_create(info.id, session.clone()) {
            info.slot.clear_if(&session);
            session.backend.destroy().await;
            return Err(CannotCreateSessionException {
                reason: "the connection closed during login".to_string(),
            }
            .into());
        }
        current.connection.handle.mark_logged_in();
        Ok(Some(proxy_for(identity, &current.connection)))
    }

    async fn create_session_from_secure_connection(
        &self,
        _current: &Current,
    ) -> Result<Option<Proxy>, DispatchError> {
        Err(PermissionDeniedException {
            reason: "certificate logins are not supported; use createSession with a user name and password".to_string(),
        }
        .into())
    }

    async fn refresh_session(&self, current: &Current) -> Result<(), DispatchError> {
        let router = &self.0;
        let session = router
            .session_of(&current.connection)
            .ok_or_else(session_not_exist)?;
        // Glacier2 pings the backend session here; once the OMERO session is gone that
        // ping fails, and the Glacier2 session is destroyed with it.
        if session.backend.is_gone() {
            router.end_session(&current.connection).await;
            return Err(session_not_exist());
        }
        session.touch();
        Ok(())
    }

    async fn destroy_session(&self, current: &Current) -> Result<(), DispatchError> {
        let _ = self.0.session_of(&current.connection);
        if self.0.end_session(&current.connection).await {
            Ok(())
        } else {
            Err(session_not_exist())
        }
    }

    async fn get_session_timeout(&self, _current: &Current) -> Result<i64, DispatchError> {
        let secs = self.0.config.session_timeout.map_or(0, |t| t.as_secs());
        Ok(i64::try_from(secs).unwrap_or(i64::MAX))
    }

    async fn get_acm_timeout(&self, _current: &Current) -> Result<i32, DispatchError> {
        Ok(self.0.config.acm_timeout_s)
    }
}

/// The servant of `Ice/RouterFinder`.
pub struct FinderServant(pub Arc<GlacierRouter>);

impl RouterFinder for FinderServant {
    async fn get_router(&self, current: &Current) -> Result<Option<Proxy>, DispatchError> {
        Ok(Some(proxy_for(
            self.0.router_identity(),
            &current.connection,
        )))
    }
}

/// Per request: a connection reaches the router, its own ServiceFactory, and the services
/// its own client opened; everything else is ObjectNotExist.
pub struct RouterLocator(pub Arc<GlacierRouter>);

impl Locator for RouterLocator {
    /// The hot path: everything it reads hangs off the request's own connection.
    fn find(&self, current: &Current) -> Located {
        let router = &self.0;
        if current.id == router.router_identity || current.id == router.finder_identity {
            return Located::Pass;
        }
        let Some(session) = current.connection.slot.get::<RouterSession>() else {
            return Located::Denied;
        };
        // Once the OMERO session is gone (closed, reaped) its objects no longer exist;
        // while it is merely expired they answer SessionTimeoutException.
        if !session.is_routable() {
            return Located::Denied;
        }
        session.touch_at(current.received);
        let backend = &session.backend;
        if current.id == *backend.identity() {
            return Located::Servant(backend.servant().clone());
        }
        // Only the services this connection's own client opened: another client of the same
        // session (a leaked uuid joined) must not reach them, nor borrow its HasPassword.
        if current.id.category == backend.category() {
            if let Some(servant) = backend.object(&current.id.name) {
                return Located::Servant(servant);
            }
        }
        Located::Denied
    }

    fn heartbeat(&self, connection: &ConnectionInfo) {
        // Glacier2 counts heartbeats as activity, so idle but connected clients keep their
        // session (spec ice-protocol §7.6).
        if let Some(session) = connection.slot.get::<RouterSession>() {
            session.touch();
        }
    }

    fn connection_closed(&self, connection: &ConnectionInfo) {
        if let Some(session) = self.0.detach(connection) {
            tracing::info!(
                connection = connection.id,
                "glacier2 session ended with its connection"
            );
            // Nobody waits for an answer here; the session store's write finishes on its own.
            tokio::spawn(async move { session.backend.destroy().await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::{Context, Encoding};
    use crate::router::manager::tests::FakeBackend;
    use crate::router::manager::BackendSession;
    use crate::runtime::OperationMode;
    use std::sync::atomic::Ordering;

    fn parse(text: &str) -> RouterConfig {
        match toml::from_str(text) {
            Ok(c) => c,
            Err(e) => panic!("{text:?}: {e}"),
        }
    }

    #[test]
    fn missing_router_keys_keep_the_defaults() {
        let c = parse("");
        assert_eq!(c.instance_name, "OMERO.Glacier2");
        assert_eq!(c.session_timeout, Some(Duration::from_secs(600)));
        assert_eq!(c.acm_timeout_s, 60);
        let c = parse("acm_timeout_s = 5\n");
        assert_eq!(c.acm_timeout_s, 5);
        assert_eq!(c.session_timeout, RouterConfig::default().session_timeout);
    }

    #[test]
    fn router_seconds_and_zero_mean_what_the_file_says() {
        let c = parse("session_timeout_s = 30\ninstance_name = \"Other\"\n");
        assert_eq!(c.session_timeout, Some(Duration::from_secs(30)));
        assert_eq!(c.instance_name, "Other");
        assert_eq!(parse("session_timeout_s = 0").session_timeout, None);
    }

    #[test]
    fn unknown_and_mistyped_router_keys_are_refused() {
        for text in [
            "bogus = 1",
            "session_timeout = 30",
            "session_timeout_s = -1",
            "session_timeout_s = \"30\"",
            "acm_timeout_s = 1.5",
            "instance_name = 1",
        ] {
            assert!(toml::from_str::<RouterConfig>(text).is_err(), "{text}");
        }
    }

    struct NoLogins;

    #[crate::facade::async_trait]
    impl SessionManager for NoLogins {
        async fn create(
            &self,
            _: &str,
            _: String,
            _: &Current,
        ) -> Result<Arc<dyn BackendSession>, DispatchError> {
            Err(DispatchError::ObjectNotExist)
        }
    }

    fn request(conn: &Arc<ConnectionInfo>, id: Identity) -> Current {
        Current {
            id,
            facet: String::new(),
            operation: "ice_ping".into(),
            mode: OperationMode::Idempotent,
            ctx: Context::new(),
            request_id: 1,
            encoding: Encoding::V1_1,
            connection: conn.clone(),
            received: std::time::Instant::now(),
        }
    }

    fn routed(locator: &RouterLocator, current: &Current) -> bool {
        matches!(locator.find(current), Located::Servant(_))
    }

    /// A connection with a session installed as createSession installs it.
    fn logged_in(router: &Arc<GlacierRouter>, backend: Arc<FakeBackend>) -> Arc<ConnectionInfo> {
        let conn = Arc::new(ConnectionInfo::detached(7, "tcp"));
        let session = Arc::new(RouterSession::new(backend));
        conn.slot.set(Some(session.clone()));
        router.connections.begin_create(conn.id).unwrap();
        assert!(router.connections.finish_create(conn.id, session));
        conn
    }

    #[test]
    fn a_connection_reaches_its_own_objects_only() {
        let router = GlacierRouter::new(RouterConfig::default(), Arc::new(NoLogins));
        let locator = RouterLocator(router.clone());
        let backend = FakeBackend::new("a");
        let conn = logged_in(&router, backend.clone());
        let other = Arc::new(ConnectionInfo::detached(8, "tcp"));
        let factory = backend.identity().clone();
        assert!(routed(&locator, &request(&conn, factory.clone())));
        assert!(routed(
            &locator,
            &request(&conn, Identity::new("sess-uuid", "asvc"))
        ));
        assert!(!routed(
            &locator,
            &request(&conn, Identity::new("sess-uuid", "bsvc"))
        ));
        assert!(!routed(&locator, &request(&other, factory.clone())));
        assert!(matches!(
            locator.find(&request(&other, router.router_identity())),
            Located::Pass
        ));
        // Pushed death: the next request is refused without asking anyone.
        backend.gone.store(true, Ordering::SeqCst);
        assert!(!routed(&locator, &request(&conn, factory)));
    }

    #[tokio::test]
    async fn a_timed_out_session_stops_routing_though_its_slot_still_holds_it() {
        let config = RouterConfig {
            session_timeout: Some(Duration::ZERO),
            ..RouterConfig::default()
        };
        let router = GlacierRouter::new(config, Arc::new(NoLogins));
        let locator = RouterLocator(router.clone());
        let backend = FakeBackend::new("a");
        let conn = logged_in(&router, backend.clone());
        let factory = backend.identity().clone();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(router.expire_idle().await, 1);
        assert_eq!(backend.destroyed.load(Ordering::SeqCst), 1);
        assert!(conn.slot.get::<RouterSession>().is_some());
        assert!(!routed(&locator, &request(&conn, factory)));
        // The connection may log in again.
        assert!(router.connections.begin_create(conn.id).is_ok());
    }

    #[tokio::test]
    async fn closing_the_connection_empties_its_slot_and_destroys_once() {
        let router = GlacierRouter::new(RouterConfig::default(), Arc::new(NoLogins));
        let locator = RouterLocator(router.clone());
        let backend = FakeBackend::new("a");
        let conn = logged_in(&router, backend.clone());
        locator.connection_closed(&conn);
        locator.connection_closed(&conn);
        // Routing stops at once; the backend session is destroyed by a spawned task.
        assert!(conn.slot.get::<RouterSession>().is_none());
        assert!(router.connections.is_empty());
        while backend.destroyed.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(backend.destroyed.load(Ordering::SeqCst), 1);
    }
}
