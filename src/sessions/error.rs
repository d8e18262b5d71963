//! Errors of the session layer, one variant per OMERO exception a client can see.

/// A failure carrying the exact message OMERO would send.
///
/// The servant layer maps each variant to the `omero.*` exception of the same name
/// (`Authentication` to `omero.AuthenticationException`, a `Glacier2::CannotCreateSessionException`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Unknown or already destroyed session (`omero.RemovedSessionException`).
    #[error("{0}")]
    Removed(String),
    /// Session known but expired and not yet reaped (`omero.SessionTimeoutException`).
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    SecurityViolation(String),
    #[error("{0}")]
    ApiUsage(String),
    #[error("{0}")]
    Authentication(String),
    #[error("{0}")]
    Internal(String),
}

impl SessionError {
    /// "No context for <uuid>", the message for a session not in the cache.
    pub fn no_context(uuid: &str) -> Self {
        SessionError::Removed(format!("No context for {uuid}"))
    }

    /// closeSession with a null uuid.
    pub fn uuid_null() -> Self {
        SessionError::ApiUsage("Uuid cannot be null.".to_string())
    }

    pub fn message(&self) -> &str {
        match self {
            SessionError::Removed(m)
            | SessionError::Timeout(m)
            | SessionError::SecurityViolation(m)
            | SessionError::ApiUsage(m)
            | SessionError::Authentication(m)
            | SessionError::Internal(m) => m,
        }
    }

    /// The Java class name OMERO puts in `ServerError.serverExceptionClass`.
    pub fn server_exception_class(&self) -> &'static str {
        match self {
            SessionError::Removed(_) => "ome.conditions.RemovedSessionException",
            SessionError::Timeout(_) => "ome.conditions.SessionTimeoutException",
            SessionError::SecurityViolation(_) => "ome.conditions.SecurityViolation",
            SessionError::ApiUsage(_) => "ome.conditions.ApiUsageException",
            SessionError::Authentication(_) => "ome.conditions.AuthenticationException",
            SessionError::Internal(_) => "ome.conditions.InternalException",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_classes() {
        let e = SessionError::no_context("abc");
        assert_eq!(e.to_string(), "No context for abc");
        assert_eq!(e.message(), "No context for abc");
        assert_eq!(
            e.server_exception_class(),
            "ome.conditions.RemovedSessionException"
        );
        assert_eq!(SessionError::uuid_null().message(), "Uuid cannot be null.");
    }
}
