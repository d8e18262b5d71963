//! OMERO exceptions as clients see them: every failure of a service call becomes the
//! `omero::*` exception an OMERO server would raise, with `message`, the Java class name in
//! `serverExceptionClass` and an empty `serverStackTrace`.

use crate::facade::DispatchError;
use crate::generated::glacier2::CannotCreateSessionException;
use crate::generated::omero::{
    ApiUsageException, AuthenticationException, InternalException, RemovedSessionException,
    SecurityViolation, ServerError, SessionException, SessionTimeoutException,
    WrappedCreateSessionException,
};
use crate::sessions::SessionError;

/// The message every refused service operation carries; clients and tests look for it.
pub const ONLY_SESSION_AND_ADMIN: &str =
    "omero-sessiond provides the session and admin services only";

/// ApiUsageException for an operation this server does not provide.
pub fn not_provided(operation: &str) -> DispatchError {
    to_dispatch(SessionError::ApiUsage(format!(
        "{ONLY_SESSION_AND_ADMIN}; {operation} is not available"
    )))
}

fn server_error(class: &str, message: &str) -> ServerError {
    ServerError {
        server_stack_trace: String::new(),
        server_exception_class: class.to_string(),
        message: message.to_string(),
    }
}

/// Maps a session-layer failure to the OMERO exception of the same name.
pub fn to_dispatch(e: SessionError) -> DispatchError {
    let class = e.server_exception_class();
    let base = server_error(class, e.message());
    match e {
        SessionError::Removed(_) => RemovedSessionException {
            base: SessionException { base },
        }
        .into(),
        SessionError::Timeout(_) => SessionTimeoutException {
            base: SessionException { base },
        }
        .into(),
        SessionError::SecurityViolation(_) => SecurityViolation { base }.into(),
        SessionError::ApiUsage(_) => ApiUsageException { base }.into(),
        SessionError::Internal(_) => InternalException { base }.into(),
        SessionError::Authentication(reason) => AuthenticationException {
            base: CannotCreateSessionException { reason },
        }
        .into(),
    }
}

/// The CannotCreateSessionException OMERO's session manager raises for a failed login step
/// (`type` is the short Java class name, e.g. "ApiUsageException").
pub fn create_failed(kind: &str, reason: &str) -> DispatchError {
    WrappedCreateSessionException {
        base: CannotCreateSessionException {
            reason: reason.to_string(),
        },
        concurrency: false,
        back_off: -1,
        r#type: kind.to_string(),
    }
    .into()
}

/// A result type for servant code.
pub type Outcome<T> = Result<T, DispatchError>;

/// Shorthand: run a session-layer result through [`to_dispatch`].
pub trait OrOmero<T> {
    fn or_omero(self) -> Outcome<T>;
}

impl<T> OrOmero<T> for Result<T, SessionError> {
    fn or_omero(self) -> Outcome<T> {
        self.map_err(to_dispatch)
    }
}
