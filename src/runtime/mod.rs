//! The runtime: listeners, connections, dispatch and the object adapter.

pub mod dispatch;

pub use dispatch::{ConnectionInfo, Current, Dispatch, DispatchError, OperationMode};
