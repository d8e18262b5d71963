//! OMERO exceptions as clients see them: every failure of a service call becomes the
//! `omero::*` exception an OMERO server would raise, with `message`, the Java class name in
//! `serverExceptionClass` and an empty `serverStackTrace`.

use crate::facade::DispatchError;
use crate::generated::glacier2::CannotCreateSessionException;
use crate::generated::omero::{
    ApiUsageException, AuthenticationException, InternalException, OverUsageException,
    RemovedSessionException, SecurityViolation, ServerError, SessionException,
    SessionTimeoutException, WrappedCreateSessionException,
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

/// Servants one client may hold at once (stateful services and command handles not yet
/// closed); beyond it the client gets OverUsageException, as from OMERO's servant limit.
pub const MAX_SERVANTS_PER_CLIENT: usize = 1000;

/// OMERO's answer when a client holds too many servants.
pub fn over_usage(count: usize) -> DispatchError {
    OverUsageException {
        base: ApiUsageException {
            base: server_error(
                "ome.conditions.OverUsageException",
                &format!(
                    "servant limit reached: {count} open services and command handles; close some"
                ),
            ),
        },
    }
    .into()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn user(e: DispatchError) -> Box<dyn crate::facade::UserException> {
        match e {
            DispatchError::User(u) => u,
            other => panic!("not a user exception: {other:?}"),
        }
    }

    #[test]
    fn session_errors_become_omero_exceptions() {
        let cases = [
            (
                SessionError::no_context("u"),
                "::omero::RemovedSessionException",
            ),
            (
                SessionError::Timeout("t".into()),
                "::omero::SessionTimeoutException",
            ),
            (
                SessionError::SecurityViolation("s".into()),
                "::omero::SecurityViolation",
            ),
            (
                SessionError::ApiUsage("a".into()),
                "::omero::ApiUsageException",
            ),
            (
                SessionError::Internal("i".into()),
                "::omero::InternalException",
            ),
        ];
        for (e, id) in cases {
            let class = e.server_exception_class();
            let message = e.message().to_string();
            let u = user(to_dispatch(e));
            assert_eq!(u.ice_id(), id);
            let base = u
                .find("::omero::ServerError")
                .and_then(|a| a.downcast_ref::<ServerError>())
                .unwrap();
            assert_eq!(base.message, message);
            assert_eq!(base.server_exception_class, class);
            assert_eq!(base.server_stack_trace, "");
        }
        let auth = user(to_dispatch(SessionError::Authentication("no".into())));
        assert_eq!(auth.ice_id(), "::omero::AuthenticationException");
        assert!(auth
            .find("::Glacier2::CannotCreateSessionException")
            .is_some());
    }

    #[test]
    fn refusals_name_the_operation() {
        let u = user(not_provided("getQueryService"));
        let base = u
            .find("::omero::ServerError")
            .and_then(|a| a.downcast_ref::<ServerError>())
            .unwrap();
        assert_eq!(
            base.message,
            "omero-sessiond provides the session and admin services only; getQueryService is not available"
        );
    }
}
