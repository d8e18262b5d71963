//! Experimenters, groups, password checks and login throttling, without Ice.
//!
//! [`Directory`] is the user directory kept in `<data>/directory.json`; [`Authenticator`] joins
//! it with the [`Throttle`] for logins; [`cli`] holds the `user`/`group` administration commands.
//! Password checks cost tens of milliseconds (argon2id): async code uses the `_async` methods,
//! which run them on the blocking pool.

pub mod cli;
pub mod context;
pub mod directory;
pub mod password;
pub mod permissions;
pub mod throttle;
pub mod verifier;

use std::net::IpAddr;
use std::sync::Arc;

pub use context::{
    check_group_usable, event_context, login_group, password_check_failure_reason,
    EventContextData, ADMIN_PRIVILEGES,
};
pub use directory::{
    Directory, DirectoryError, ExperimenterInfo, GroupInfo, NewExperimenter,
    INITIAL_ROOT_PASSWORD_FILE,
};
pub use password::Password;
pub use throttle::{Delay, Throttle, ThrottleConfig};
pub use verifier::{check_permissions, check_security_password, Verified, JOIN_MISUSE_REASON};

/// Why a login failed. Messages never contain the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Unknown user, user without password, or wrong password: deliberately indistinguishable.
    #[error("Authentication exception.")]
    BadCredentials,
    /// Too many recent failures for this user or address.
    #[error("Too many failed logins; try again in {} s", .0.retry_after.as_secs().max(1))]
    Throttled(Delay),
    #[error("{0}")]
    Internal(String),
}

/// Password logins with throttling.
#[derive(Debug, Clone)]
pub struct Authenticator {
    directory: Directory,
    throttle: Arc<Throttle>,
}

impl Authenticator {
    pub fn new(directory: Directory, throttle: Arc<Throttle>) -> Self {
        Authenticator {
            directory,
            throttle,
        }
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    pub fn throttle(&self) -> &Throttle {
        &self.throttle
    }

    /// Checks `name`/`password` from `addr`: refused at once while throttled, otherwise verified
    /// on the blocking pool and the outcome recorded.
    pub async fn login(
        &self,
        name: &str,
        password: Password,
        addr: Option<IpAddr>,
    ) -> Result<ExperimenterInfo, AuthError> {
        if let Err(delay) = self.throttle.check(name, addr) {
            tracing::warn!(user = %name, ?addr, ?delay, "login refused: throttled");
            return Err(AuthError::Throttled(delay));
        }
        let result = self
            .directory
            .verify_password_async(name.to_string(), password)
            .await;
        match &result {
            Ok(_) => self.throttle.record_success(name, addr),
            Err(AuthError::BadCredentials) => {
                tracing::info!(user = %name, ?addr, "login failed");
                self.throttle.record_failure(name, addr);
            }
            Err(_) => {}
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::clock::ManualClock;

    #[tokio::test]
    async fn login_throttles_and_resets() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Directory::open(tmp.path()).unwrap();
        dir.set_password("root", &Password::new("secret")).unwrap();
        let clock = ManualClock::new(0);
        let config = ThrottleConfig {
            free_failures_per_user: 2,
            ..ThrottleConfig::default()
        };
        let auth = Authenticator::new(
            dir,
            Arc::new(Throttle::new(config, Arc::new(clock.clone()))),
        );
        let addr = Some(IpAddr::from([127, 0, 0, 1]));
        for _ in 0..2 {
            assert_eq!(
                auth.login("root", Password::new("bad"), addr).await,
                Err(AuthError::BadCredentials)
            );
        }
        let refused = auth.login("root", Password::new("secret"), addr).await;
        assert!(matches!(refused, Err(AuthError::Throttled(_))));
        assert!(!refused.unwrap_err().to_string().contains("secret"));
        clock.advance(1000);
        assert!(auth
            .login("root", Password::new("secret"), addr)
            .await
            .is_ok());
        assert!(auth.throttle().check("root", None).is_ok());
    }
}
