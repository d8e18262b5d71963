//! What a servant sees of a request, and how its outcome is told back to the runtime.

use std::any::Any;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use crate::encoding::{Context, Encoding, Identity, UserException};
pub use crate::runtime::handle::ConnectionHandle;

/// How the caller declared the operation; built-ins and `["nonmutating"]` operations arrive
/// as `Nonmutating`, which servants treat like `Idempotent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperationMode {
    Normal = 0,
    Nonmutating = 1,
    Idempotent = 2,
}

impl OperationMode {
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(OperationMode::Normal),
            1 => Some(OperationMode::Nonmutating),
            2 => Some(OperationMode::Idempotent),
            _ => None,
        }
    }
}

/// Facts about the connection a request arrived on. The router keys its sessions by `id`.
#[derive(Debug)]
pub struct ConnectionInfo {
    /// Unique for the life of the process.
    pub id: u64,
    pub remote: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
    /// "tcp", "ssl", "ws" or "wss".
    pub transport: &'static str,
    /// Lets a servant (or the router) end this connection.
    pub handle: ConnectionHandle,
    /// What a layer above keeps for this connection (the router: its Glacier2 session).
    pub slot: ConnectionSlot,
}

impl ConnectionInfo {
    /// Facts about a connection not driven by the runtime (tests, tools): closing it does
    /// nothing.
    pub fn detached(id: u64, transport: &'static str) -> Self {
        ConnectionInfo {
            id,
            remote: None,
            local: None,
            transport,
            handle: ConnectionHandle::detached(),
            slot: ConnectionSlot::default(),
        }
    }
}

type SlotValue = Arc<dyn Any + Send + Sync>;

/// State a layer above the runtime hangs on one connection, so that a request reaches it
/// through its own connection instead of a process-wide map. The lock is the connection's
/// own: only that connection's requests (and whoever ends its session) ever take it.
#[derive(Default)]
pub struct ConnectionSlot(RwLock<Option<SlotValue>>);

impl ConnectionSlot {
    /// The value, if there is one and it is a `T`.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let value = self.0.read().unwrap_or_else(|p| p.into_inner()).clone()?;
        value.downcast::<T>().ok()
    }

    /// Replaces the value; returns the previous one.
    pub fn set(&self, value: Option<SlotValue>) -> Option<SlotValue> {
        let mut slot = self.0.write().unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *slot, value)
    }

    /// Empties the slot only if it still holds `value` (compared by address).
    pub fn clear_if<T: Any + Send + Sync>(&self, value: &Arc<T>) -> bool {
        let mut slot = self.0.write().unwrap_or_else(|p| p.into_inner());
        let same = slot
            .as_ref()
            .is_some_and(|v| std::ptr::addr_eq(Arc::as_ptr(v), Arc::as_ptr(value)));
        if same {
            *slot = None;
        }
        same
    }
}

impl fmt::Debug for ConnectionSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = self.0.read().map(|s| s.is_some()).unwrap_or(false);
        f.debug_struct("ConnectionSlot")
            .field("full", &full)
            .finish()
    }
}

/// The request being dispatched (`Ice::Current`).
#[derive(Debug, Clone)]
pub struct Current {
    pub id: Identity,
    /// "" when the request named no facet.
    pub facet: String,
    pub operation: String,
    pub mode: OperationMode,
    pub ctx: Context,
    /// 0 for oneway and batch requests.
    pub request_id: i32,
    /// The encoding of the request's parameters; the reply uses the same.
    pub encoding: Encoding,
    pub connection: Arc<ConnectionInfo>,
    /// When the request had been read: the time its handling counts from (activity,
    /// latency), read once for everything that arrived together.
    pub received: std::time::Instant,
}

/// Why a dispatch produced no normal result. Each variant is one Ice reply status.
pub enum DispatchError {
    /// Reply status 1: a Slice user exception, encoded by the runtime in the request's encoding.
    User(Box<dyn UserException>),
    ObjectNotExist,
    FacetNotExist,
    OperationNotExist,
    /// Reply status 5; the text reaches the client as `UnknownLocalException.unknown`.
    UnknownLocal(String),
    /// Reply status 6.
    UnknownUser(String),
    /// Reply status 7.
    Unknown(String),
}

impl fmt::Debug for DispatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DispatchError::User(e) => write!(f, "User({})", e.ice_id()),
            DispatchError::ObjectNotExist => write!(f, "ObjectNotExist"),
            DispatchError::FacetNotExist => write!(f, "FacetNotExist"),
            DispatchError::OperationNotExist => write!(f, "OperationNotExist"),
            DispatchError::UnknownLocal(s) => write!(f, "UnknownLocal({s})"),
            DispatchError::UnknownUser(s) => write!(f, "UnknownUser({s})"),
            DispatchError::Unknown(s) => write!(f, "Unknown({s})"),
        }
    }
}

impl<E: UserException> From<E> for DispatchError {
    fn from(e: E) -> Self {
        DispatchError::User(Box::new(e))
    }
}

impl From<crate::encoding::DecodeError> for DispatchError {
    fn from(e: crate::encoding::DecodeError) -> Self {
        DispatchError::UnknownLocal(e.to_string())
    }
}

/// A servant as the object adapter sees it. Generated code implements this for a wrapper
/// around each interface's servant trait; the runtime answers `ice_ping`, `ice_isA`, `ice_id`
/// and `ice_ids` itself from `type_ids`.
#[async_trait]
pub trait Dispatch: Send + Sync {
    /// Every type id of the object, sorted, including `::Ice::Object`; the most-derived one
    /// is `type_ids()[most_derived_index]`.
    fn type_ids(&self) -> &'static [&'static str];
    fn most_derived_type_id(&self) -> &'static str;
    /// Decodes `params` (the payload of the request's encapsulation, without its 6-byte
    /// header, in `current.encoding`), runs the operation and returns the payload of the reply
    /// encapsulation (out-parameters, return value, optionals, pending classes), without header.
    async fn dispatch(&self, current: &Current, params: &[u8]) -> Result<Vec<u8>, DispatchError>;
}
