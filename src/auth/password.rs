//! Passwords: a wrapper that never prints, argon2id hashing, and random initial passwords.

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::distributions::Alphanumeric;
use rand::rngs::OsRng;
use rand::Rng;

/// A plain-text password. `Debug` and `Display` are not derived so it cannot reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(plain: impl Into<String>) -> Self {
        Password(plain.into())
    }

    /// The secret itself; keep the borrow short and out of any formatting.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Memory cost of new hashes in KiB: 12 MiB.
pub const HASH_MEMORY_KIB: u32 = 12 * 1024;
/// Passes over that memory.
pub const HASH_ITERATIONS: u32 = 3;

/// The argon2id parameters of new hashes: OWASP's m=12 MiB, t=3, p=1, which it rates as strong
/// as the crate's default m=19 MiB, t=2. Each password worker keeps one block of this size for
/// the life of the process, so the smaller block keeps logins from growing the server by more
/// than 32 MiB on a 2-core machine. Stored hashes keep their own parameters.
pub fn hash_params() -> Params {
    Params::new(HASH_MEMORY_KIB, HASH_ITERATIONS, 1, None).unwrap_or_default()
}

/// Hashes with argon2id ([`hash_params`]) into a PHC string.
/// Takes tens of milliseconds: call from blocking context.
pub fn hash_password(password: &Password) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, hash_params())
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash password: {e}"))
}

/// Checks `password` against a PHC string; a malformed hash never matches.
/// Takes tens of milliseconds: call from blocking context.
pub fn verify_hash(phc: &str, password: &Password) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        tracing::warn!("stored password hash is malformed; refusing login");
        return false;
    };
    Argon2::default()
        .verify_password(password.expose().as_bytes(), &parsed)
        .is_ok()
}

/// A well-formed hash with [`hash_params`] that no password matches (its output is all
/// zero bytes): checking against it spends the same work as a real check, so unknown user
/// names answer as slowly as known ones.
pub const DUMMY_HASH: &str = "$argon2id$v=19$m=12288,t=3,p=1$c29tZXNhbHRzb21lc2FsdA$\
                              AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// A random password of `len` letters and digits from the OS-seeded thread generator.
pub fn generate_password(len: usize) -> Password {
    let plain: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect();
    Password(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_argon2id_phc_and_verifies() {
        let pw = Password::new("correct horse");
        let phc = hash_password(&pw).unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify_hash(&phc, &pw));
        assert!(!verify_hash(&phc, &Password::new("wrong")));
        assert!(!verify_hash("garbage", &pw));
    }

    #[test]
    fn the_dummy_hash_parses_and_matches_nothing() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!verify_hash(DUMMY_HASH, &Password::new("")));
        assert!(!verify_hash(
            DUMMY_HASH,
            &Password::new("not a real password")
        ));
    }

    #[test]
    fn unknown_users_cost_what_new_hashes_cost() {
        let dummy = PasswordHash::new(DUMMY_HASH).unwrap();
        let made = hash_password(&Password::new("pw")).unwrap();
        let made = PasswordHash::new(&made).unwrap();
        let costs = |p: Params| (p.m_cost(), p.t_cost(), p.p_cost());
        assert_eq!(
            costs(Params::try_from(&dummy).unwrap()),
            costs(hash_params())
        );
        assert_eq!(
            costs(Params::try_from(&made).unwrap()),
            costs(hash_params())
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let pw = Password::new("hunter2");
        assert_eq!(format!("{pw:?}"), "Password(<redacted>)");
    }

    #[test]
    fn generated_passwords_differ() {
        let a = generate_password(24);
        assert_eq!(a.expose().len(), 24);
        assert!(a.expose().chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, generate_password(24));
    }
}
