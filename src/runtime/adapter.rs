//! The object adapter: finds the servant for a request and turns its outcome into a reply.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, OnceLock, RwLock};

use bytes::Bytes;
use futures_util::FutureExt;

use super::dispatch::{ConnectionInfo, Current, Dispatch, DispatchError};
use super::exception::encode_user_exception;
use crate::encoding::{Identity, InputStream, OutputStream};
use crate::protocol::{NotExist, ReplyBody};

/// What a [`Locator`] decided for one request.
pub enum Located {
    /// Dispatch to this servant.
    Servant(Arc<dyn Dispatch>),
    /// The connection may not reach this object: ObjectNotExist, whatever the table holds.
    Denied,
    /// No opinion: look in the adapter's table.
    Pass,
}

/// A hook consulted before the adapter's table, per request; the Glacier2 router uses it to
/// decide which identities each connection may reach.
pub trait Locator: Send + Sync {
    fn find(&self, current: &Current) -> Located;

    /// Called once when a connection has gone, whatever the reason.
    fn connection_closed(&self, _connection: &ConnectionInfo) {}

    /// Called when the peer sends a heartbeat (ValidateConnection); Glacier2 counts it as
    /// session activity.
    fn heartbeat(&self, _connection: &ConnectionInfo) {}
}

/// Watches connections and dispatches (the metrics endpoint); installed once, read without
/// a lock.
pub trait Observer: Send + Sync {
    fn connection_opened(&self, _connection: &ConnectionInfo) {}
    fn connection_closed(&self, _connection: &ConnectionInfo) {}
    /// A request on `operation` got its reply body after `elapsed`.
    fn dispatched(&self, _operation: &str, _elapsed: std::time::Duration) {}
}

#[derive(Default)]
struct Table {
    /// (identity, facet) → servant.
    servants: HashMap<(Identity, String), Arc<dyn Dispatch>>,
    /// Category → servant for every identity of that category; "" serves any category.
    defaults: HashMap<String, Arc<dyn Dispatch>>,
}

/// Identity (+ facet) → servant, default servants per category, and an optional locator.
#[derive(Default)]
pub struct ObjectAdapter {
    table: RwLock<Table>,
    /// Set once and read without a lock: every request consults it first, and a routed
    /// request needs nothing else from the adapter.
    locator: OnceLock<Arc<dyn Locator>>,
    observer: OnceLock<Arc<dyn Observer>>,
}

enum Lookup {
    Found(Arc<dyn Dispatch>),
    NoObject,
    NoFacet,
}

impl ObjectAdapter {
    pub fn new() -> Arc<Self> {
        Arc::new(ObjectAdapter::default())
    }

    pub fn add(&self, id: Identity, servant: Arc<dyn Dispatch>) {
        self.add_facet(id, "", servant);
    }

    pub fn add_facet(&self, id: Identity, facet: &str, servant: Arc<dyn Dispatch>) {
        self.write()
            .servants
            .insert((id, facet.to_string()), servant);
    }

    pub fn remove(&self, id: &Identity, facet: &str) -> Option<Arc<dyn Dispatch>> {
        self.write()
            .servants
            .remove(&(id.clone(), facet.to_string()))
    }

    /// Serves every identity of `category` that has no servant of its own; "" = any category.
    pub fn add_default_servant(&self, category: &str, servant: Arc<dyn Dispatch>) {
        self.write().defaults.insert(category.to_string(), servant);
    }

    pub fn remove_default_servant(&self, category: &str) -> Option<Arc<dyn Dispatch>> {
        self.write().defaults.remove(category)
    }

    /// Installs the locator; an adapter has at most one for its whole life, so a second
    /// one is refused (false).
    pub fn set_locator(&self, locator: Arc<dyn Locator>) -> bool {
        let installed = self.locator.set(locator).is_ok();
        if !installed {
            tracing::error!("the object adapter already has a locator; the new one is ignored");
        }
        installed
    }

    pub(crate) fn heartbeat(&self, info: &ConnectionInfo) {
        if let Some(locator) = self.locator.get() {
            locator.heartbeat(info);
        }
    }

    /// Installs the observer; like the locator, at most one for the adapter's life.
    pub fn set_observer(&self, observer: Arc<dyn Observer>) -> bool {
        let installed = self.observer.set(observer).is_ok();
        if !installed {
            tracing::error!("the object adapter already has an observer; the new one is ignored");
        }
        installed
    }

    pub(crate) fn connection_opened(&self, info: &ConnectionInfo) {
        if let Some(observer) = self.observer.get() {
            observer.connection_opened(info);
        }
    }

    pub(crate) fn dispatched(&self, operation: &str, started: std::time::Instant) {
        if let Some(observer) = self.observer.get() {
            observer.dispatched(operation, started.elapsed());
        }
    }

    pub(crate) fn connection_closed(&self, info: &ConnectionInfo) {
        if let Some(observer) = self.observer.get() {
            observer.connection_closed(info);
        }
        if let Some(locator) = self.locator.get() {
            locator.connection_closed(info);
        }
    }

    /// Finds the servant, answers built-ins or dispatches, and maps every outcome (panics
    /// included) to a reply body in the request's encoding.
    pub async fn dispatch(&self, current: &Current, params: &[u8]) -> ReplyBody {
        let started = std::time::Instant::now();
        let body = match self.prepare(current, params) {
            Prepared::Done(body) => body,
            Prepared::Run(servant) => run(servant.as_ref(), current, params).await,
        };
        self.dispatched(&current.operation, started);
        body
    }

    /// What can be decided without waiting: the lookup, and the answer of a built-in
    /// operation or a missing object. Cheap and never blocks, so the connection task calls
    /// it inline and spawns a task only for a servant's own operation.
    pub(crate) fn prepare(&self, current: &Current, params: &[u8]) -> Prepared {
        let looked_up = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let servant = match self.lookup(current) {
                Lookup::Found(s) => s,
                Lookup::NoObject => {
                    return Prepared::Done(ReplyBody::ObjectNotExist(not_exist(current)))
                }
                Lookup::NoFacet => {
                    return Prepared::Done(ReplyBody::FacetNotExist(not_exist(current)))
                }
            };
            match builtin(servant.as_ref(), current, params) {
                Some(result) => Prepared::Done(reply_body(current, result)),
                None => Prepared::Run(servant),
            }
        }));
        looked_up.unwrap_or_else(|_| Prepared::Done(panicked(current, "the object's lookup")))
    }

    fn lookup(&self, current: &Current) -> Lookup {
        if let Some(locator) = self.locator.get() {
            match locator.find(current) {
                Located::Servant(s) => return Lookup::Found(s),
                Located::Denied => return Lookup::NoObject,
                Located::Pass => {}
            }
        }
        let table = self.read();
        let key = (current.id.clone(), current.facet.clone());
        if let Some(s) = table.servants.get(&key) {
            return Lookup::Found(s.clone());
        }
        if !current.facet.is_empty() && table.servants.keys().any(|(id, _)| *id == current.id) {
            return Lookup::NoFacet;
        }
        table
            .defaults
            .get(&current.id.category)
            .or_else(|| table.defaults.get(""))
            .map_or(Lookup::NoObject, |s| Lookup::Found(s.clone()))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// What [`ObjectAdapter::prepare`] decided.
pub(crate) enum Prepared {
    /// The reply, decided inline.
    Done(ReplyBody),
    /// The servant's operation must run: [`run`] it.
    Run(Arc<dyn Dispatch>),
}

/// Runs a servant's own operation, mapping its outcome (panics included) to a reply body.
pub(crate) async fn run(servant: &dyn Dispatch, current: &Current, params: &[u8]) -> ReplyBody {
    let outcome = AssertUnwindSafe(servant.dispatch(current, params))
        .catch_unwind()
        .await;
    match outcome {
        Ok(result) => reply_body(current, result),
        Err(_) => panicked(current, "servant"),
    }
}

fn panicked(current: &Current, what: &str) -> ReplyBody {
    tracing::error!(
        operation = %current.operation,
        id = %super::redact::short_uuids(&current.id.to_string()),
        "{what} panicked"
    );
    ReplyBody::Unknown(format!(
        "{what} panicked in {} on {}",
        current.operation, current.id
    ))
}

fn not_exist(current: &Current) -> NotExist {
    NotExist {
        id: current.id.clone(),
        facet: current.facet.clone(),
        operation: current.operation.clone(),
    }
}

/// `ice_ping`, `ice_isA`, `ice_id` and `ice_ids`, answered from the servant's type ids.
fn builtin(
    servant: &dyn Dispatch,
    current: &Current,
    params: &[u8],
) -> Option<Result<Vec<u8>, DispatchError>> {
    let mut w = OutputStream::new(current.encoding);
    match current.operation.as_str() {
        "ice_ping" => {}
        "ice_isA" => {
            let mut r = InputStream::new(params, current.encoding);
            let type_id = match r.read_string() {
                Ok(t) => t,
                Err(e) => return Some(Err(e.into())),
            };
            w.write_bool(type_ids(servant).iter().any(|t| *t == type_id));
        }
        "ice_id" => w.write_string(servant.most_derived_type_id()),
        "ice_ids" => {
            let ids = type_ids(servant);
            w.write_size(ids.len());
            for id in ids {
                w.write_string(id);
            }
        }
        _ => return None,
    }
    Some(Ok(w.into_bytes()))
}

/// Sorted, without duplicates, and always with `::Ice::Object`.
fn type_ids(servant: &dyn Dispatch) -> Vec<&'static str> {
    let mut ids: Vec<&'static str> = servant.type_ids().to_vec();
    ids.push("::Ice::Object");
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn reply_body(current: &Current, result: Result<Vec<u8>, DispatchError>) -> ReplyBody {
    let encoding = current.encoding.into();
    match result {
        Ok(payload) => ReplyBody::Ok {
            encoding,
            payload: Bytes::from(payload),
        },
        Err(DispatchError::User(e)) => ReplyBody::UserException {
            encoding,
            payload: Bytes::from(encode_user_exception(current.encoding, e.as_ref())),
        },
        Err(DispatchError::ObjectNotExist) => ReplyBody::ObjectNotExist(not_exist(current)),
        Err(DispatchError::FacetNotExist) => ReplyBody::FacetNotExist(not_exist(current)),
        Err(DispatchError::OperationNotExist) => ReplyBody::OperationNotExist(not_exist(current)),
        Err(DispatchError::UnknownLocal(s)) => ReplyBody::UnknownLocal(s),
        Err(DispatchError::UnknownUser(s)) => ReplyBody::UnknownUser(s),
        Err(DispatchError::Unknown(s)) => ReplyBody::Unknown(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::{Context, Decode, Encoding};
    use crate::runtime::OperationMode;
    use async_trait::async_trait;

    struct Thing;

    #[async_trait]
    impl Dispatch for Thing {
        fn type_ids(&self) -> &'static [&'static str] {
            &["::Ice::Object", "::Test::Thing"]
        }
        fn most_derived_type_id(&self) -> &'static str {
            "::Test::Thing"
        }
        async fn dispatch(&self, current: &Current, _: &[u8]) -> Result<Vec<u8>, DispatchError> {
            match current.operation.as_str() {
                "boom" => panic!("boom"),
                "fail" => Err(DispatchError::UnknownLocal("nope".into())),
                _ => Err(DispatchError::OperationNotExist),
            }
        }
    }

    fn current(category: &str, name: &str, facet: &str, op: &str) -> Current {
        Current {
            id: Identity::new(category, name),
            facet: facet.into(),
            operation: op.into(),
            mode: OperationMode::Nonmutating,
            ctx: Context::new(),
            request_id: 1,
            encoding: Encoding::V1_1,
            connection: Arc::new(ConnectionInfo::detached(1, "tcp")),
            received: std::time::Instant::now(),
        }
    }

    fn ok_payload(body: ReplyBody) -> Bytes {
        match body {
            ReplyBody::Ok { payload, .. } => payload,
            other => panic!("not ok: {other:?}"),
        }
    }

    #[tokio::test]
    async fn builtins_and_errors() {
        let a = ObjectAdapter::new();
        a.add(Identity::new("c", "t"), Arc::new(Thing));
        let p = ok_payload(a.dispatch(&current("c", "t", "", "ice_ping"), &[]).await);
        assert!(p.is_empty());
        let p = ok_payload(a.dispatch(&current("c", "t", "", "ice_ids"), &[]).await);
        let ids = Vec::<String>::decode(&mut InputStream::new(&p, Encoding::V1_1)).unwrap();
        assert_eq!(ids, vec!["::Ice::Object", "::Test::Thing"]);
        let p = ok_payload(a.dispatch(&current("c", "t", "", "ice_id"), &[]).await);
        assert_eq!(&p[1..], b"::Test::Thing");
        let mut arg = OutputStream::new(Encoding::V1_1);
        arg.write_string("::Test::Thing");
        let p = ok_payload(
            a.dispatch(&current("c", "t", "", "ice_isA"), arg.as_slice())
                .await,
        );
        assert_eq!(&p[..], &[1]);
        assert!(matches!(
            a.dispatch(&current("c", "t", "", "ice_isA"), &[9]).await,
            ReplyBody::UnknownLocal(_)
        ));
        assert!(matches!(
            a.dispatch(&current("c", "x", "", "ice_ping"), &[]).await,
            ReplyBody::ObjectNotExist(n) if n.operation == "ice_ping" && n.id.name == "x"
        ));
        assert!(matches!(
            a.dispatch(&current("c", "t", "f", "ice_ping"), &[]).await,
            ReplyBody::FacetNotExist(n) if n.facet == "f"
        ));
        assert!(matches!(
            a.dispatch(&current("c", "t", "", "other"), &[]).await,
            ReplyBody::OperationNotExist(n) if n.operation == "other"
        ));
        assert!(matches!(
            a.dispatch(&current("c", "t", "", "boom"), &[]).await,
            ReplyBody::Unknown(_)
        ));
        assert_eq!(
            a.dispatch(&current("c", "t", "", "fail"), &[]).await,
            ReplyBody::UnknownLocal("nope".into())
        );
    }

    struct DenyAll;
    impl Locator for DenyAll {
        fn find(&self, current: &Current) -> Located {
            if current.id.category == "open" {
                Located::Servant(Arc::new(Thing))
            } else {
                Located::Denied
            }
        }
    }

    #[tokio::test]
    async fn default_servants_and_locator() {
        let a = ObjectAdapter::new();
        a.add_default_servant("cat", Arc::new(Thing));
        assert!(matches!(
            a.dispatch(&current("cat", "any", "", "ice_ping"), &[])
                .await,
            ReplyBody::Ok { .. }
        ));
        assert!(matches!(
            a.dispatch(&current("dog", "any", "", "ice_ping"), &[])
                .await,
            ReplyBody::ObjectNotExist(_)
        ));
        a.add_default_servant("", Arc::new(Thing));
        assert!(matches!(
            a.dispatch(&current("dog", "any", "", "ice_ping"), &[])
                .await,
            ReplyBody::Ok { .. }
        ));
        a.set_locator(Arc::new(DenyAll));
        assert!(matches!(
            a.dispatch(&current("dog", "any", "", "ice_ping"), &[])
                .await,
            ReplyBody::ObjectNotExist(_)
        ));
        assert!(matches!(
            a.dispatch(&current("open", "x", "", "ice_ping"), &[]).await,
            ReplyBody::Ok { .. }
        ));
    }
}
