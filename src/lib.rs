//! omero-sessiond: an OMERO-compatible Glacier2 router and session service speaking ZeroC Ice.
//!
//! Layers, bottom up (see `shared/design.md`): [`encoding`] (pure Ice encodings),
//! `protocol` (framing and messages, no IO), `runtime` (sockets and dispatch), the code
//! generated from `slice/`, and the services on top.

pub mod auth;
pub mod config;
pub mod encoding;
pub mod facade;
#[doc(hidden)]
pub mod fuzzing;
pub mod generated;
pub mod http;
pub mod metrics;
pub mod protocol;
pub mod router;
pub mod runtime;
pub mod services;
pub mod sessions;
pub mod sessions_cli;
pub mod store;
