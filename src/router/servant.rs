//! The Glacier2 router object, `Ice/RouterFinder`, and the per-request routing decision.

use std::sync::Arc;
use std::time::Duration;

use crate::facade::{async_trait, ConnectionInfo, Current, DispatchError, Identity, Proxy};
use crate::generated::glacier2::{
    CannotCreateSessionException, PermissionDeniedException, Router, SessionNotExistException,
};
use crate::generated::ice::RouterFinder;
use crate::runtime::{Located, Locator};
use crate::services::proxy::{callback_endpoints, proxy_for};
use crate::services::{FactoryServant, Services};
use crate::sessions::short;

use super::login::login;
use super::state::{Connections, RouterSession};

/// Router settings.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Category of the router's identity; OMERO clients use `OMERO.Glacier2`.
    pub instance_name: String,
    /// Glacier2.SessionTimeout: a session with no activity for this long is destroyed;
    /// `None` never.
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
    pub services: Services,
    pub connections: Connections,
}

impl GlacierRouter {
    pub fn new(config: RouterConfig, services: Services) -> Arc<Self> {
        Arc::new(GlacierRouter {
            config,
            services,
            connections: Connections::default(),
        })
    }

    pub fn router_identity(&self) -> Identity {
        Identity::new(self.config.instance_name.clone(), "router")
    }

    pub fn finder_identity() -> Identity {
        Identity::new("Ice", "RouterFinder")
    }

    /// The live session of this connection. A session whose ServiceFactory was destroyed
    /// directly (`sf.destroy()`) ends its Glacier2 session too, as OMERO's SessionControl
    /// destroy does.
    fn session_of(&self, conn: &ConnectionInfo) -> Option<Arc<RouterSession>> {
        let session = self.connections.get(conn.id)?;
        if session.factory.is_destroyed() {
            self.connections.remove_if(conn.id, &session);
            return None;
        }
        Some(session)
    }

    /// Ends the Glacier2 session of a connection, destroying its ServiceFactory.
    pub async fn end_session(&self, conn: u64) -> bool {
        match self.connections.remove(conn) {
            Some(session) => {
                session.factory.destroy(&self.services).await;
                true
            }
            None => false,
        }
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
            tracing::info!(
                session = %short(&session.factory.session_uuid),
                client = %session.factory.client_uuid,
                "glacier2 session timed out"
            );
            session.factory.destroy(&self.services).await;
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

#[async_trait]
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
        let conn = current.connection.id;
        // A session whose factory was destroyed frees the connection for a new one.
        let _ = router.session_of(&current.connection);
        if router.connections.begin_create(conn).is_err() {
            return Err(CannotCreateSessionException {
                reason: "session exists".to_string(),
            }
            .into());
        }
        let factory = match login(&router.services, &user_id, password, current).await {
            Ok(f) => f,
            Err(e) => {
                router.connections.abort_create(conn);
                return Err(e);
            }
        };
        let servant = FactoryServant::dispatcher(router.services.clone(), factory.clone());
        let session = Arc::new(RouterSession::new(factory, servant));
        let identity = session.factory_identity.clone();
        if !router.connections.finish_create(conn, session.clone()) {
            session.factory.destroy(&router.services).await;
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
        let uuid = &session.factory.session_uuid;
        if matches!(
            router.services.sessions.lookup(uuid, true),
            Err(crate::sessions::SessionError::Removed(_))
        ) {
            router.end_session(current.connection.id).await;
            return Err(session_not_exist());
        }
        session.touch();
        Ok(())
    }

    async fn destroy_session(&self, current: &Current) -> Result<(), DispatchError> {
        let _ = self.0.session_of(&current.connection);
        if self.0.end_session(current.connection.id).await {
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

#[async_trait]
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
    fn find(&self, current: &Current) -> Located {
        let router = &self.0;
        if current.id == router.router_identity() || current.id == GlacierRouter::finder_identity()
        {
            return Located::Pass;
        }
        let Some(session) = router.session_of(&current.connection) else {
            return Located::Denied;
        };
        session.touch();
        let uuid = &session.factory.session_uuid;
        // Once the OMERO session is gone (closed, reaped) its objects no longer exist;
        // while it is merely expired they answer SessionTimeoutException.
        if matches!(
            router.services.sessions.lookup(uuid, true),
            Err(crate::sessions::SessionError::Removed(_))
        ) {
            return Located::Denied;
        }
        if current.id == session.factory_identity {
            return Located::Servant(session.factory_servant.clone());
        }
        // Only the services this connection's own client opened: another client of the same
        // session (a leaked uuid joined) must not reach them, nor borrow its HasPassword.
        if current.id.category == *uuid {
            if let Some(servant) = session.factory.service(&current.id.name) {
                return Located::Servant(servant);
            }
        }
        Located::Denied
    }

    fn heartbeat(&self, connection: &ConnectionInfo) {
        // Glacier2 counts heartbeats as activity, so idle but connected clients keep their
        // session (spec ice-protocol §7.6).
        if let Some(session) = self.0.connections.get(connection.id) {
            session.touch();
        }
    }

    fn connection_closed(&self, connection: &ConnectionInfo) {
        // Nobody waits for an answer here; the session store's write finishes on its own.
        let router = Arc::clone(&self.0);
        let id = connection.id;
        tokio::spawn(async move {
            if router.end_session(id).await {
                tracing::info!(
                    connection = id,
                    "glacier2 session ended with its connection"
                );
            }
        });
    }
}
