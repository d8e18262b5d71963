//! The Glacier2 permission check (spec §4.1) and setSecurityPassword (§4.4), as plain logic
//! over the [`Authenticator`] and the session cache. The router turns a refusal reason into
//! `Glacier2::PermissionDeniedException(reason)`.

use std::net::IpAddr;

use crate::sessions::{SessionError, SessionManager};

use super::context::password_check_failure_reason;
use super::{AuthError, Authenticator, ExperimenterInfo, Password};

/// Reason given when a session uuid is presented without being both name and password.
pub const JOIN_MISUSE_REASON: &str = "username and password must be equal; use joinSession";

/// An accepted Glacier2 login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// `userId == password ==` a session uuid: join that session (the router then calls
    /// `SessionManager::join`, which may still fail if it expired in between).
    Join { uuid: String },
    /// A password login for this user.
    User(ExperimenterInfo),
}

/// `PermissionsVerifier.checkPermissions(userId, password)`; `Err` holds the refusal reason.
///
/// OMERO's quirk of accepting any cached (expired) session uuid as a password for any user is
/// deliberately not reproduced.
pub async fn check_permissions<V: Clone + Send + Sync + 'static>(
    auth: &Authenticator,
    sessions: &SessionManager<V>,
    user_id: &str,
    password: Password,
    addr: Option<IpAddr>,
) -> Result<Verified, String> {
    let open_row = |uuid: &str| {
        sessions
            .find_row(uuid)
            .is_some_and(|row| row.closed.is_none())
    };
    let names_session =
        sessions.is_live(password.expose()) || sessions.is_live(user_id) || open_row(user_id);
    if names_session {
        return if user_id == password.expose() {
            Ok(Verified::Join {
                uuid: user_id.to_string(),
            })
        } else {
            Err(JOIN_MISUSE_REASON.to_string())
        };
    }
    match auth.login(user_id, password, addr).await {
        Ok(user) => Ok(Verified::User(user)),
        Err(AuthError::BadCredentials) => {
            let row = sessions.find_row(user_id);
            Err(password_check_failure_reason(
                auth.directory(),
                user_id,
                row.as_ref(),
            ))
        }
        Err(AuthError::Throttled(delay)) => Err(AuthError::Throttled(delay).to_string()),
        Err(AuthError::Internal(msg)) => Err(format!(
            "Internal error. Please contact your administrator:\n{msg}"
        )),
    }
}

/// `ServiceFactory.setSecurityPassword`: the owner's password must match, else
/// SecurityViolation "Bad password for <user>".
pub async fn check_security_password(
    auth: &Authenticator,
    user_name: &str,
    password: Password,
    addr: Option<IpAddr>,
) -> Result<(), SessionError> {
    match auth.login(user_name, password, addr).await {
        Ok(_) => Ok(()),
        Err(AuthError::Internal(msg)) => Err(SessionError::Internal(msg)),
        Err(_) => Err(SessionError::SecurityViolation(format!(
            "Bad password for {user_name}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Directory, Throttle, ThrottleConfig};
    use crate::sessions::{
        ManualClock, MemorySessionStore, NewSession, SessionConfig, SystemClock,
    };
    use std::sync::Arc;

    fn setup() -> (tempfile::TempDir, Authenticator, SessionManager<()>) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Directory::open(tmp.path()).unwrap();
        dir.set_password("root", &Password::new("rootpw")).unwrap();
        let throttle = Throttle::new(ThrottleConfig::default(), Arc::new(SystemClock));
        let auth = Authenticator::new(dir, Arc::new(throttle));
        let clock = ManualClock::new(1_700_000_000_000);
        let manager = SessionManager::new(
            SessionConfig::default(),
            Arc::new(clock),
            Arc::new(MemorySessionStore::default()),
        );
        (tmp, auth, manager)
    }

    #[tokio::test]
    async fn password_login() {
        let (_t, auth, m) = setup();
        let ok = check_permissions(&auth, &m, "root", Password::new("rootpw"), None)
            .await
            .unwrap();
        assert!(matches!(ok, Verified::User(u) if u.id == 0));
        assert_eq!(
            check_permissions(&auth, &m, "root", Password::new("x"), None).await,
            Err("Password check failed for 'root': [id=0]".to_string())
        );
        assert_eq!(
            check_permissions(&auth, &m, "nobody", Password::new("x"), None).await,
            Err("Password check failed for 'nobody': []".to_string())
        );
    }

    #[tokio::test]
    async fn join_requires_equal_name_and_password() {
        let (_t, auth, m) = setup();
        let s = m.create(NewSession::new(0, 0)).unwrap();
        assert_eq!(
            check_permissions(&auth, &m, &s.uuid, Password::new(s.uuid.clone()), None).await,
            Ok(Verified::Join {
                uuid: s.uuid.clone()
            })
        );
        assert_eq!(
            check_permissions(&auth, &m, "root", Password::new(s.uuid.clone()), None).await,
            Err(JOIN_MISUSE_REASON.to_string())
        );
        assert_eq!(
            check_permissions(&auth, &m, &s.uuid, Password::new("rootpw"), None).await,
            Err(JOIN_MISUSE_REASON.to_string())
        );
    }

    #[tokio::test]
    async fn closed_session_join_is_refused_with_details() {
        let (_t, auth, m) = setup();
        let s = m.create(NewSession::new(0, 0)).unwrap();
        assert_eq!(m.close_session(&s.uuid), -2);
        let reason = check_permissions(&auth, &m, &s.uuid, Password::new(s.uuid.clone()), None)
            .await
            .unwrap_err();
        assert_eq!(
            reason,
            format!(
                "Password check failed for '{}': [user=root, created=2023-11-14 22:13:20.0, \
                 closed=2023-11-14 22:13:20.0]",
                s.uuid
            )
        );
    }

    #[tokio::test]
    async fn security_password() {
        let (_t, auth, _) = setup();
        assert!(
            check_security_password(&auth, "root", Password::new("rootpw"), None)
                .await
                .is_ok()
        );
        assert_eq!(
            check_security_password(&auth, "root", Password::new("no"), None).await,
            Err(SessionError::SecurityViolation(
                "Bad password for root".into()
            ))
        );
    }
}
