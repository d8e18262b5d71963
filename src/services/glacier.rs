//! The router's session manager: a Glacier2 login makes a ServiceFactory, and the death of
//! an OMERO session is pushed to the ServiceFactories attached to it, so the router never
//! asks the session cache on a routed request.

use std::sync::{Arc, Weak};

use tokio::sync::broadcast::error::RecvError;

use super::context::{Factory, Registry, Services, Sessions};
use super::factory::{factory_identity, FactoryServant};
use super::login::login;
use crate::facade::{async_trait, Current, Dispatch, DispatchError, Identity};
use crate::router::{BackendSession, SessionManager};
use crate::sessions::{short, SessionError, SessionEvent};

/// [`SessionManager`] over the services.
pub struct GlacierManager {
    services: Services,
}

impl GlacierManager {
    pub fn new(services: Services) -> Self {
        GlacierManager { services }
    }
}

impl From<Services> for Arc<dyn SessionManager> {
    fn from(services: Services) -> Self {
        Arc::new(GlacierManager::new(services))
    }
}

#[async_trait]
impl SessionManager for GlacierManager {
    async fn create(
        &self,
        user: &str,
        password: String,
        current: &Current,
    ) -> Result<Arc<dyn BackendSession>, DispatchError> {
        let services = &self.services;
        let factory = login(services, user, password, current).await?;
        // A joined session may have died between the join and the registration; the news
        // went to nobody, so look once.
        if is_removed(&services.sessions, &factory.session_uuid) {
            factory.mark_gone();
        }
        let servant = FactoryServant::dispatcher(services.clone(), factory.clone());
        Ok(Arc::new(GlacierSession {
            identity: factory_identity(&factory.client_uuid, &factory.session_uuid),
            servant,
            factory,
            services: services.clone(),
        }))
    }

    fn start(&self) {
        spawn_death_listener(&self.services);
    }
}

/// One connection's ServiceFactory as the router holds it.
struct GlacierSession {
    identity: Identity,
    servant: Arc<dyn Dispatch>,
    factory: Arc<Factory>,
    services: Services,
}

#[async_trait]
impl BackendSession for GlacierSession {
    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn servant(&self) -> &Arc<dyn Dispatch> {
        &self.servant
    }

    fn category(&self) -> &str {
        &self.factory.session_uuid
    }

    fn object(&self, name: &str) -> Option<Arc<dyn Dispatch>> {
        self.factory.service(name)
    }

    fn is_destroyed(&self) -> bool {
        self.factory.is_destroyed()
    }

    fn is_gone(&self) -> bool {
        self.factory.is_gone()
    }

    async fn destroy(&self) {
        self.factory.destroy(&self.services).await;
    }

    fn describe(&self) -> (&str, &str) {
        (short(&self.factory.session_uuid), &self.factory.client_uuid)
    }
}

fn is_removed(sessions: &Sessions, uuid: &str) -> bool {
    matches!(sessions.lookup(uuid, true), Err(SessionError::Removed(_)))
}

/// When an OMERO session dies (closed, reaped), its ServiceFactories and servants go with
/// it. Closes made through the services drop them at once; this covers the rest (the
/// reaper, the HTTP endpoint, the command line).
fn spawn_death_listener(services: &Services) {
    let mut events = services.sessions.subscribe();
    let registry: Weak<Registry> = Arc::downgrade(&services.registry);
    let sessions: Weak<Sessions> = Arc::downgrade(&services.sessions);
    tokio::spawn(async move {
        loop {
            let event = events.recv().await;
            let Some(registry) = registry.upgrade() else {
                return;
            };
            match event {
                Ok(SessionEvent::Closed { uuid, reason }) => {
                    tracing::debug!(
                        session = short(&uuid),
                        ?reason,
                        "dropping servants of a dead session"
                    );
                    registry.drop_session(&uuid);
                }
                Err(RecvError::Lagged(missed)) => {
                    // Some deaths were missed: ask the cache about every attached session.
                    let Some(sessions) = sessions.upgrade() else {
                        return;
                    };
                    let dropped = registry.drop_dead(|uuid| is_removed(&sessions, uuid));
                    tracing::warn!(
                        missed,
                        dropped,
                        "session events lagged; attached sessions rechecked"
                    );
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::NewSession;

    #[tokio::test]
    async fn a_death_reaches_the_attached_factories() {
        let tmp = tempfile::tempdir().unwrap();
        let svc = super::super::context::tests::services(tmp.path());
        GlacierManager::new(svc.clone()).start();
        let info = svc.sessions.create(NewSession::new(0, 0)).await.unwrap();
        let factory = Arc::new(Factory::new("c1", &info.uuid, true));
        assert!(svc.registry.add_factory(&factory));
        let session = GlacierSession {
            identity: factory_identity("c1", &info.uuid),
            servant: FactoryServant::dispatcher(svc.clone(), factory.clone()),
            factory: factory.clone(),
            services: svc.clone(),
        };
        assert!(!session.is_gone());
        // Closed behind the services' back, as the reaper or the HTTP endpoint does.
        assert_eq!(svc.sessions.close_session(&info.uuid).await.unwrap(), -2);
        while !session.is_gone() {
            tokio::task::yield_now().await;
        }
        assert!(!session.is_destroyed());
    }

    #[tokio::test]
    async fn lost_news_is_recovered_by_asking() {
        let tmp = tempfile::tempdir().unwrap();
        let svc = super::super::context::tests::services(tmp.path());
        let live = svc.sessions.create(NewSession::new(0, 0)).await.unwrap();
        let dead = svc.sessions.create(NewSession::new(0, 0)).await.unwrap();
        let (a, b) = (
            Arc::new(Factory::new("c1", &live.uuid, true)),
            Arc::new(Factory::new("c2", &dead.uuid, true)),
        );
        assert!(svc.registry.add_factory(&a) && svc.registry.add_factory(&b));
        svc.sessions.close_session(&dead.uuid).await.unwrap();
        let dropped = svc
            .registry
            .drop_dead(|uuid| is_removed(&svc.sessions, uuid));
        assert_eq!(dropped, 1);
        assert!(!a.is_gone());
        assert!(b.is_gone());
    }
}
