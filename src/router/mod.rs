//! The Glacier2-compatible router: one Glacier2 session per connection, login and join,
//! what each connection may reach, and the end of a session on connection loss,
//! `destroySession` or inactivity.
//!
//! OMERO runs Glacier2 in front of its servers; here router and backend are one process, so
//! a routed request is dispatched directly to the servant of its identity once the
//! [`RouterLocator`] has checked that the request's connection may reach it: the router
//! itself, `Ice/RouterFinder`, the connection's own ServiceFactory
//! (`session-<clientUuid>/<sessionUuid>`) and the services its own client opened (category
//! `<sessionUuid>`). Anything else is ObjectNotExist.
//!
//! The session of a connection hangs in that connection's slot, so a routed request takes
//! no process-wide lock: one read of the slot, atomics for activity and liveness (the
//! [`SessionManager`] pushes deaths to the sessions it made), one lookup of the object.

pub mod manager;
pub mod proxy;
pub mod servant;
pub mod state;

use std::sync::Arc;

use crate::generated::glacier2::RouterDispatcher;
use crate::generated::ice::RouterFinderDispatcher;
use crate::runtime::ObjectAdapter;

pub use manager::{BackendSession, SessionManager};
pub use servant::{FinderServant, GlacierRouter, RouterConfig, RouterLocator, RouterServant};

/// Registers `<instance>/router` and `Ice/RouterFinder` on `adapter`, makes the router
/// decide what every request may reach, and starts the background jobs (inactivity
/// timeout; the manager's news of dying sessions). Call inside a tokio runtime.
pub fn install(
    adapter: &ObjectAdapter,
    config: RouterConfig,
    manager: impl Into<Arc<dyn SessionManager>>,
) -> Arc<GlacierRouter> {
    let router = GlacierRouter::new(config, manager.into());
    adapter.add(
        router.router_identity(),
        Arc::new(RouterDispatcher(Arc::new(RouterServant(router.clone())))),
    );
    adapter.add(
        GlacierRouter::finder_identity(),
        Arc::new(RouterFinderDispatcher(Arc::new(FinderServant(
            router.clone(),
        )))),
    );
    adapter.set_locator(Arc::new(RouterLocator(router.clone())));
    router.spawn_idle_reaper();
    router.manager.start();
    router
}
