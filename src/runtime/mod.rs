//! The runtime: listeners, connections, dispatch and the object adapter.

pub mod adapter;
pub mod admission;
pub mod codegen;
pub mod config;
mod connection;
pub mod dispatch;
mod exception;
mod handle;
mod invoke;
pub mod redact;
mod server;
pub mod tls;
mod ws;

pub use adapter::{Located, Locator, ObjectAdapter, Observer};
pub use admission::{Admission, AdmissionLimits, Admitted, Refusal};
pub use dispatch::{
    ConnectionInfo, ConnectionSlot, Current, Dispatch, DispatchError, OperationMode,
};
pub use handle::{ConnectionHandle, InvokeError};
pub use invoke::{InvokeReply, Invoker};
pub use server::{Server, ServerError};
