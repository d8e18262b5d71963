//! The OMERO servants: ServiceFactory, ISession and IAdmin, the mapping of failures to
//! OMERO exceptions, and the `omero::model` values they return.
//!
//! Servants are thin: the rules live in `crate::sessions` (liveness, reference counts,
//! environments) and `crate::auth` (users, groups, passwords); this layer checks the
//! caller's session and roles, converts values, and names the exceptions.

pub mod admin;
pub mod cmd;
pub mod config;
pub mod context;
pub mod errors;
pub mod factory;
pub mod glacier;
pub mod guard;
pub mod login;
pub mod model;
/// Proxies handed out live with the router, which hands out the first of them.
pub use crate::router::proxy;
pub mod session;
pub mod setup;
pub mod unprovided;

pub use context::{Factory, Registry, Services, Sessions};
pub use errors::ONLY_SESSION_AND_ADMIN;
pub use factory::{factory_identity, FactoryServant, ADMIN_SERVICE, SESSION_SERVICE};
pub use glacier::GlacierManager;
pub use setup::{open_services, open_services_with, SetupError};
