//! The checks OMERO's security interceptor makes before every service call: the caller's
//! session (refreshed), its roles, and the "HasPassword" pseudo-role.

use crate::auth::context::check_group_usable;
use crate::sessions::{SessionError, SessionInfo};

use super::context::{Factory, Services};
use super::errors::{to_dispatch, OrOmero, Outcome};

/// The caller's session, refreshed; fails as OMERO's interceptor does, including for a
/// session (made by sudo) in a group its owner may not use.
pub fn caller(services: &Services, factory: &Factory) -> Outcome<SessionInfo> {
    let info = services
        .sessions
        .lookup(&factory.session_uuid, false)
        .or_omero()?;
    let dir = &services.directory;
    if let (Some(user), Some(group)) = (dir.experimenter(info.owner_id), dir.group(info.group_id)) {
        check_group_usable(&user, &group).or_omero()?;
    }
    Ok(info)
}

/// `@RolesAllowed`: the caller must belong to one of the named groups.
pub fn require_role(services: &Services, info: &SessionInfo, allowed: &[&str]) -> Outcome<()> {
    let roles = services.directory.role_names(info.owner_id);
    if roles.iter().any(|r| allowed.contains(&r.as_str())) {
        return Ok(());
    }
    Err(to_dispatch(SessionError::SecurityViolation(format!(
        "No matching roles found in {:?} for session {} (allowed: {:?})",
        roles, info.uuid, allowed
    ))))
}

/// The "HasPassword" pseudo-role: refused on a joined ServiceFactory until
/// setSecurityPassword has succeeded.
pub fn require_password(factory: &Factory) -> Outcome<()> {
    if factory.has_password() {
        return Ok(());
    }
    Err(to_dispatch(SessionError::SecurityViolation(
        "Bad authentication credentials for this action.\nSee setSecurityPassword for more information"
            .to_string(),
    )))
}
