//! What the router needs of the session layer, as Glacier2 needs a `SessionManager`: a login
//! that yields a backend session, and that session's objects. The services implement it
//! (`crate::services::glacier`); the router knows nothing else of them.

use std::sync::Arc;

use crate::facade::{async_trait, Current, Dispatch, DispatchError, Identity};

/// Glacier2's permissions verifier and session manager in one.
#[async_trait]
pub trait SessionManager: Send + Sync {
    /// Verifies `user`/`password` and creates (or joins) the backend session of the
    /// connection in `current`. Errors are the Glacier2 exceptions a client expects.
    async fn create(
        &self,
        user: &str,
        password: String,
        current: &Current,
    ) -> Result<Arc<dyn BackendSession>, DispatchError>;

    /// Starts whatever tells the sessions this manager made that their backend session
    /// died (see [`BackendSession::is_gone`]). Called once, inside a tokio runtime.
    fn start(&self) {}
}

/// One backend session as the router holds it: the object the client logged in to, and
/// the objects that client opened through it. Every method is called per routed request
/// and must not block.
#[async_trait]
pub trait BackendSession: Send + Sync {
    /// Identity of the session object (OMERO: the ServiceFactory).
    fn identity(&self) -> &Identity;
    /// The servant of [`Self::identity`].
    fn servant(&self) -> &Arc<dyn Dispatch>;
    /// Category of the objects the client opened through the session.
    fn category(&self) -> &str;
    /// An object the client opened, by identity name (category [`Self::category`]).
    fn object(&self, name: &str) -> Option<Arc<dyn Dispatch>>;
    /// The client destroyed the session object itself.
    fn is_destroyed(&self) -> bool;
    /// The backend session died (closed elsewhere, reaped): its objects no longer exist.
    /// Pushed by the manager when it happens, so asking costs an atomic load.
    fn is_gone(&self) -> bool;
    /// Ends the session the way the router ends it (connection loss, destroySession,
    /// inactivity); later calls do nothing. Returns once the session store has the change.
    async fn destroy(&self);
    /// For logs: the backend session's id and the client's.
    fn describe(&self) -> (&str, &str);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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

    /// A backend session with one object, `<client>svc`, whose death tests set by hand.
    pub(crate) struct FakeBackend {
        identity: Identity,
        client: String,
        servant: Arc<dyn Dispatch>,
        pub gone: AtomicBool,
        pub destroyed: AtomicUsize,
    }

    impl FakeBackend {
        pub(crate) fn new(client: &str) -> Arc<Self> {
            Arc::new(FakeBackend {
                identity: Identity::new(format!("session-{client}"), "sess-uuid"),
                client: client.to_string(),
                servant: Arc::new(Nothing),
                gone: AtomicBool::new(false),
                destroyed: AtomicUsize::new(0),
            })
        }
    }

    #[async_trait]
    impl BackendSession for FakeBackend {
        fn identity(&self) -> &Identity {
            &self.identity
        }
        fn servant(&self) -> &Arc<dyn Dispatch> {
            &self.servant
        }
        fn category(&self) -> &str {
            "sess-uuid"
        }
        fn object(&self, name: &str) -> Option<Arc<dyn Dispatch>> {
            (name == format!("{}svc", self.client)).then(|| self.servant.clone())
        }
        fn is_destroyed(&self) -> bool {
            self.destroyed.load(Ordering::SeqCst) > 0
        }
        fn is_gone(&self) -> bool {
            self.gone.load(Ordering::SeqCst)
        }
        async fn destroy(&self) {
            self.destroyed.fetch_add(1, Ordering::SeqCst);
        }
        fn describe(&self) -> (&str, &str) {
            ("sess-uuid", &self.client)
        }
    }
}
