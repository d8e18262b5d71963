//! Passwords: a wrapper that never prints, argon2id hashing, and random initial passwords.

use std::fmt;
use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
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

/// Hashes with argon2id (the crate's default parameters) into a PHC string.
/// Takes tens of milliseconds: call from blocking context.
pub fn hash_password(password: &Password) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
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

/// Spends the same work as a real check, so unknown user names answer as slowly as known ones.
pub fn verify_against_dummy(password: &Password) {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_password(&Password::new("not a real password")).ok());
    if let Some(phc) = dummy {
        let _ = verify_hash(phc, password);
    }
}

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
