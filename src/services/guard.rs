//! The checks OMERO's security interceptor makes before every service call: the caller's
//! session (refreshed), its effective rights, and the "HasPassword" pseudo-role.

use crate::auth::context::{rights, Rights};
use crate::sessions::{SessionError, SessionInfo};

use super::context::{Factory, Services};
use super::errors::{to_dispatch, OrOmero, Outcome};

/// The calling session and what it may do.
pub struct Caller {
    pub info: SessionInfo,
    pub rights: Rights,
}

/// The caller's session, refreshed, with its rights; fails as OMERO's interceptor does,
/// including for a session (made by sudo) in a group it may not use. The directory is
/// re-read first when the command line changed it, so a revoked ownership or admin role
/// stops counting at once.
pub fn caller(services: &Services, factory: &Factory) -> Outcome<Caller> {
    let info = services
        .sessions
        .lookup(&factory.session_uuid, false)
        .or_omero()?;
    services.directory.refresh();
    let rights = rights(&services.directory, &info).or_omero()?;
    Ok(Caller { info, rights })
}

/// `@RolesAllowed`: the caller must hold one of the named roles.
pub fn require_role(caller: &Caller, allowed: &[&str]) -> Outcome<()> {
    if allowed.iter().any(|r| caller.rights.roles.has_role(r)) {
        return Ok(());
    }
    Err(to_dispatch(SessionError::SecurityViolation(format!(
        "No matching roles found for session {} (allowed: {:?})",
        caller.info.id, allowed
    ))))
}

/// The "HasPassword" pseudo-role: refused on a joined ServiceFactory until
/// setSecurityPassword has succeeded. `factory` must be the calling connection's own.
pub fn require_password(factory: &Factory) -> Outcome<()> {
    if factory.has_password() {
        return Ok(());
    }
    Err(to_dispatch(SessionError::SecurityViolation(
        "Bad authentication credentials for this action.\nSee setSecurityPassword for more information"
            .to_string(),
    )))
}
