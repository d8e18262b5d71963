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
use std::time::Duration;

use serde::Deserialize;

use crate::generated::glacier2::RouterDispatcher;
use crate::generated::ice::RouterFinderDispatcher;
use crate::runtime::ObjectAdapter;

pub use manager::{BackendSession, SessionManager};
pub use servant::{FinderServant, GlacierRouter, RouterConfig, RouterLocator, RouterServant};

/// The `[router]` section of the configuration file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterFileConfig {
    /// Glacier2.SessionTimeout in seconds (default 600); 0 disables the inactivity timeout.
    pub session_timeout_s: Option<u64>,
    /// What getACMTimeout reports (default 60 s).
    pub acm_timeout_s: Option<i32>,
    /// Category of the router identity (default `OMERO.Glacier2`).
    pub instance_name: Option<String>,
}

impl RouterConfig {
    pub fn from_file(f: &RouterFileConfig) -> Self {
        let d = RouterConfig::default();
        RouterConfig {
            instance_name: f.instance_name.clone().unwrap_or(d.instance_name),
            session_timeout: match f.session_timeout_s {
                None => d.session_timeout,
                Some(0) => None,
                Some(s) => Some(Duration::from_secs(s)),
            },
            acm_timeout_s: f.acm_timeout_s.unwrap_or(d.acm_timeout_s),
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_sections_parse() {
        let file: RouterFileConfig = toml::from_str("session_timeout_s = 30\n").unwrap();
        let router = RouterConfig::from_file(&file);
        assert_eq!(router.session_timeout, Some(Duration::from_secs(30)));
        assert_eq!(router.instance_name, "OMERO.Glacier2");
        let sessions: crate::services::SessionsFileConfig =
            toml::from_str("time_to_idle_ms = 2000\nreaper_interval_ms = 200\n").unwrap();
        assert_eq!(sessions.session_config().default_time_to_idle, 2000);
        assert_eq!(sessions.reaper_interval(), Duration::from_millis(200));
        let never = RouterConfig::from_file(&RouterFileConfig {
            session_timeout_s: Some(0),
            ..RouterFileConfig::default()
        });
        assert_eq!(never.session_timeout, None);
        assert_eq!(
            RouterConfig::from_file(&RouterFileConfig::default()).session_timeout,
            Some(Duration::from_secs(600))
        );
        assert!(toml::from_str::<RouterFileConfig>("bogus = 1\n").is_err());
    }
}
