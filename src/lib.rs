//! omero-sessiond library.

pub mod auth;
pub mod sessions;
pub mod store;
