//! Experimenters, groups, password checks and login throttling, without Ice.
//!
//! [`Directory`] is the user directory (in the embedded database by default);
//! [`Authenticator`] joins it with the [`Throttle`] for logins; [`cli`] holds the
//! `user`/`group` administration commands.
//! Password checks cost tens of milliseconds and 12 MiB (argon2id): every login, whether the
//! Glacier2 router, the HTTPS endpoint, ISession.createSession or setSecurityPassword, goes
//! through [`Authenticator::login`], which throttles first and then admits the check to the
//! bounded [`PasswordChecker`].

pub mod checker;
pub mod cli;
pub mod context;
pub mod directory;
pub mod password;
pub mod permissions;
pub mod throttle;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub use checker::{CheckError, CheckerConfig, HashMemory, PasswordChecker};
pub use context::{
    check_group_usable, event_context, login_group, EventContextData, ADMIN_PRIVILEGES,
};
pub use directory::{
    Directory, DirectoryError, ExperimenterInfo, GroupInfo, NewExperimenter,
    INITIAL_ROOT_PASSWORD_FILE,
};
pub use password::Password;
pub use throttle::{Attempt, Delay, Throttle, ThrottleConfig};

/// The refusal text when password checks are saturated; clients may retry.
pub const BUSY_REASON: &str = "server busy, retry";

/// Why a login failed. Messages never contain the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Unknown user, user without password, or wrong password: deliberately indistinguishable.
    #[error("Authentication exception.")]
    BadCredentials,
    /// Too many recent failures for this user or address.
    #[error("Too many failed logins; try again in {} s", .0.retry_after.as_secs().max(1))]
    Throttled(Delay),
    /// Every password worker and queue place is taken: nothing was checked.
    #[error("server busy, retry")]
    Busy,
    #[error("{0}")]
    Internal(String),
}

/// The auth layer's settings. The `[auth]` section of the config file deserializes straight
/// into them (times in milliseconds, as the key names say); keys left out keep the
/// `Default`, the one place the defaults are written: [`CheckerConfig`] and
/// [`ThrottleConfig`] take theirs from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// argon2id checks running at once, each holding 12 MiB; at least one.
    #[serde(deserialize_with = "at_least_one")]
    pub max_concurrent_password_checks: usize,
    /// Checks allowed to wait for a free worker; more are refused as busy.
    pub password_check_queue: usize,
    /// How long a check may wait for a worker before it is refused as busy.
    #[serde(rename = "password_check_max_wait_ms", deserialize_with = "millis")]
    pub password_check_max_wait: Duration,
    /// Failed logins per user name allowed without delay.
    pub free_failures_per_user: u32,
    /// Failed logins per client address allowed without delay (higher: addresses may be
    /// shared by NAT).
    pub free_failures_per_addr: u32,
    /// The rest of the throttle's settings, not in the file.
    #[serde(skip)]
    pub throttle_window: Duration,
    #[serde(skip)]
    pub throttle_base_delay: Duration,
    #[serde(skip)]
    pub throttle_max_delay: Duration,
    #[serde(skip)]
    pub throttle_max_entries: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            // argon2 is CPU-bound: more checks than cores at once only share the cores and
            // hold more memory.
            max_concurrent_password_checks: std::thread::available_parallelism()
                .map_or(1, usize::from),
            password_check_queue: 32,
            password_check_max_wait: Duration::from_secs(5),
            free_failures_per_user: 5,
            free_failures_per_addr: 20,
            throttle_window: Duration::from_secs(15 * 60),
            throttle_base_delay: Duration::from_secs(1),
            throttle_max_delay: Duration::from_secs(5 * 60),
            throttle_max_entries: 100_000,
        }
    }
}

impl AuthConfig {
    pub fn checker(&self) -> CheckerConfig {
        CheckerConfig {
            workers: self.max_concurrent_password_checks,
            queue: self.password_check_queue,
            max_wait: self.password_check_max_wait,
        }
    }

    pub fn throttle(&self) -> ThrottleConfig {
        ThrottleConfig {
            free_failures_per_user: self.free_failures_per_user,
            free_failures_per_addr: self.free_failures_per_addr,
            window: self.throttle_window,
            base_delay: self.throttle_base_delay,
            max_delay: self.throttle_max_delay,
            max_entries: self.throttle_max_entries,
        }
    }
}

/// The auth layer knows only the sessions layer, so these two are its own rather than the
/// runtime's.
fn at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    usize::deserialize(d).map(|n| n.max(1))
}

fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

/// Password logins with throttling and bounded checks.
#[derive(Debug, Clone)]
pub struct Authenticator {
    directory: Directory,
    throttle: Arc<Throttle>,
    checker: Arc<PasswordChecker>,
}

impl Authenticator {
    /// With the default [`CheckerConfig`].
    pub fn new(directory: Directory, throttle: Arc<Throttle>) -> Self {
        let checker = PasswordChecker::new(CheckerConfig::default());
        Self::with_checker(directory, throttle, Arc::new(checker))
    }

    pub fn with_checker(
        directory: Directory,
        throttle: Arc<Throttle>,
        checker: Arc<PasswordChecker>,
    ) -> Self {
        Authenticator {
            directory,
            throttle,
            checker,
        }
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    pub fn throttle(&self) -> &Throttle {
        &self.throttle
    }

    /// The one login check. `name`/`password` from `addr` is refused at once while throttled;
    /// otherwise a failure is reserved before the check is admitted to a password worker, and
    /// settled by the outcome. Refused with [`AuthError::Busy`] when no worker frees up in time.
    pub async fn login(
        &self,
        name: &str,
        password: Password,
        addr: Option<IpAddr>,
    ) -> Result<ExperimenterInfo, AuthError> {
        let attempt = match self.throttle.reserve(name, addr) {
            Ok(attempt) => attempt,
            Err(delay) => {
                tracing::warn!(user = %name, ?addr, ?delay, "login refused: throttled");
                return Err(AuthError::Throttled(delay));
            }
        };
        let directory = self.directory.clone();
        let user = name.to_string();
        let checked = self
            .checker
            .run(move |memory| directory.verify_password_with(memory, &user, &password))
            .await;
        match checked {
            Ok(Ok(found)) => {
                attempt.succeeded();
                Ok(found)
            }
            Ok(Err(AuthError::BadCredentials)) => {
                attempt.failed();
                tracing::info!(user = %name, ?addr, "login failed");
                Err(AuthError::BadCredentials)
            }
            Ok(Err(other)) => {
                attempt.not_checked();
                Err(other)
            }
            Err(CheckError::Busy) => {
                attempt.not_checked();
                tracing::warn!(user = %name, ?addr, "login refused: password checks busy");
                Err(AuthError::Busy)
            }
            Err(CheckError::Internal(m)) => {
                attempt.not_checked();
                Err(AuthError::Internal(m))
            }
        }
    }
}

impl Authenticator {
    /// changePassword / changeUserPassword: hashes on a password worker (the same bounded,
    /// memory-reusing admission as logins) and stores the hash.
    pub async fn set_password(&self, name: &str, password: Password) -> Result<(), DirectoryError> {
        let directory = self.directory.clone();
        let user = name.to_string();
        match self
            .checker
            .run(move |memory| directory.set_password_with(memory, &user, &password))
            .await
        {
            Ok(stored) => stored,
            Err(e) => Err(DirectoryError::Internal(e.to_string())),
        }
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

    #[tokio::test]
    async fn a_saturated_checker_refuses_as_busy_without_counting_a_failure() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Directory::open(tmp.path()).unwrap();
        dir.set_password("root", &Password::new("secret")).unwrap();
        let checker = Arc::new(PasswordChecker::new(CheckerConfig {
            workers: 1,
            queue: 0,
            max_wait: std::time::Duration::from_secs(600),
        }));
        let throttle = Arc::new(Throttle::new(
            ThrottleConfig {
                free_failures_per_user: 1,
                ..ThrottleConfig::default()
            },
            Arc::new(ManualClock::new(0)),
        ));
        let auth = Authenticator::with_checker(dir, throttle, checker.clone());
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let blocker = tokio::spawn(async move {
            checker
                .run(move |_| {
                    let _ = started_tx.send(());
                    let _ = hold.recv();
                })
                .await
        });
        started.await.unwrap();
        let refused = auth.login("root", Password::new("secret"), None).await;
        assert_eq!(refused, Err(AuthError::Busy));
        assert_eq!(refused.unwrap_err().to_string(), BUSY_REASON);
        release.send(()).unwrap();
        blocker.await.unwrap().unwrap();
        // The busy refusal took its reservation back: the one free failure is still there.
        assert!(auth.throttle().check("root", None).is_ok());
        assert!(auth
            .login("root", Password::new("secret"), None)
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn password_changes_hash_on_the_workers() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Directory::open(tmp.path()).unwrap();
        let throttle = Arc::new(Throttle::new(
            ThrottleConfig::default(),
            Arc::new(ManualClock::new(0)),
        ));
        let auth = Authenticator::new(dir, throttle);
        auth.set_password("root", Password::new("fresh"))
            .await
            .unwrap();
        assert!(auth
            .login("root", Password::new("fresh"), None)
            .await
            .is_ok());
        assert!(matches!(
            auth.set_password("nobody", Password::new("x")).await,
            Err(DirectoryError::UnknownUser(_))
        ));
        assert!(matches!(
            auth.set_password("root", Password::new("")).await,
            Err(DirectoryError::EmptyPassword)
        ));
    }

    fn parse(text: &str) -> AuthConfig {
        match toml::from_str(text) {
            Ok(c) => c,
            Err(e) => panic!("{text:?}: {e}"),
        }
    }

    #[test]
    fn missing_auth_keys_keep_the_defaults() {
        let d = AuthConfig::default();
        assert_eq!(parse(""), d);
        assert!(d.max_concurrent_password_checks >= 1);
        assert_eq!(d.checker(), CheckerConfig::default());
        assert_eq!(d.throttle(), ThrottleConfig::default());
        let c = parse("free_failures_per_addr = 1000\n");
        assert_eq!(c.throttle().free_failures_per_addr, 1000);
        assert_eq!(c.throttle().free_failures_per_user, 5);
        assert_eq!(c.checker(), CheckerConfig::default());
    }

    #[test]
    fn auth_keys_mean_what_the_file_says() {
        let c = parse(
            "max_concurrent_password_checks = 3\npassword_check_queue = 0\n\
             password_check_max_wait_ms = 250\nfree_failures_per_user = 2\n\
             free_failures_per_addr = 1000\n",
        );
        assert_eq!(
            c.checker(),
            CheckerConfig {
                workers: 3,
                queue: 0,
                max_wait: Duration::from_millis(250),
            }
        );
        assert_eq!(
            c.throttle(),
            ThrottleConfig {
                free_failures_per_user: 2,
                free_failures_per_addr: 1000,
                ..ThrottleConfig::default()
            }
        );
        assert_eq!(
            parse("max_concurrent_password_checks = 0")
                .checker()
                .workers,
            1
        );
    }

    #[test]
    fn unknown_and_mistyped_auth_keys_are_refused() {
        for text in [
            "bogus = 1",
            "password_check_max_wait = 250",
            "throttle_window = 60",
            "throttle_max_entries = 10",
            "max_concurrent_password_checks = -1",
            "password_check_queue = \"32\"",
            "free_failures_per_user = 5000000000",
        ] {
            assert!(toml::from_str::<AuthConfig>(text).is_err(), "{text}");
        }
    }
}
