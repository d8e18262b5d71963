//! Glacier2 login: OMERO's permissions verifier and session manager in one step
//! (spec omero-sessions §4.1, §5.1). A password logs in; a live session uuid given as both
//! user and password joins that session.

use std::sync::Arc;

use crate::auth::context::{check_group_usable, login_group};
use crate::auth::{AuthError, Password};
use crate::facade::{Current, DispatchError};
use crate::generated::glacier2::PermissionDeniedException;
use crate::services::errors::create_failed;
use crate::services::{Factory, Services};
use crate::sessions::{java_timestamp, normalize_event_type, NewSession, SessionInfo};

/// Context keys read at login.
pub const CTX_CLIENT_UUID: &str = "omero.client.uuid";
pub const CTX_GROUP: &str = "omero.group";
pub const CTX_AGENT: &str = "omero.agent";
pub const CTX_EVENT: &str = "omero.event";
pub const CTX_IP: &str = "omero.ip";

fn denied(reason: String) -> DispatchError {
    PermissionDeniedException { reason }.into()
}

/// The verifier's refusal. It names the user but never the password, and reads the same
/// for an unknown user and a wrong password.
async fn password_check_failed(services: &Services, user: &str, why: &str) -> DispatchError {
    let info = match services.sessions.find_row(user).await {
        // A closed session's uuid: say whose it was and when it ended, as OMERO does.
        Some(row) => {
            let owner = services
                .directory
                .experimenter(row.owner_id)
                .map(|u| u.ome_name)
                .unwrap_or_default();
            let closed = row.closed.map(java_timestamp).unwrap_or_default();
            format!(
                "user={owner}, created={}, closed={closed}",
                java_timestamp(row.started)
            )
        }
        None => why.to_string(),
    };
    denied(format!("Password check failed for '{user}': [{info}]"))
}

/// How the verifier accepted the caller.
enum Verified {
    /// Join of this live session (reference already taken).
    Joined(SessionInfo),
    /// Password login of this user id.
    Password(crate::auth::ExperimenterInfo),
}

async fn verify(
    services: &Services,
    user: &str,
    password: String,
    current: &Current,
) -> Result<Verified, DispatchError> {
    let sessions = &services.sessions;
    if sessions.is_live(&password) || sessions.is_live(user) {
        if user != password {
            return Err(denied(
                "username and password must be equal; use joinSession".to_string(),
            ));
        }
        return match sessions.join(user).await {
            Ok(info) => Ok(Verified::Joined(info)),
            Err(_) => Err(password_check_failed(services, user, "").await),
        };
    }
    // A session this node has not cached (made on another node sharing the store).
    if user == password && uuid::Uuid::parse_str(user).is_ok() {
        if let Ok(info) = sessions.join(user).await {
            return Ok(Verified::Joined(info));
        }
    }
    let addr = current.connection.remote.map(|a| a.ip());
    let checked = services
        .auth
        .login(user, Password::new(password), addr)
        .await;
    services.metrics.record_login(&checked);
    match checked {
        Ok(found) => Ok(Verified::Password(found)),
        Err(AuthError::BadCredentials) => Err(password_check_failed(services, user, "").await),
        Err(AuthError::Throttled(delay)) => Err(password_check_failed(
            services,
            user,
            &format!(
                "too many failed logins; retry in {} s",
                delay.retry_after.as_secs().max(1)
            ),
        )
        .await),
        Err(AuthError::Busy) => Err(denied(crate::auth::BUSY_REASON.to_string())),
        Err(AuthError::Internal(m)) => {
            tracing::error!(error = %m, "password check failed internally");
            Err(denied(format!(
                "Internal error. Please contact your administrator:\n{m}"
            )))
        }
    }
}

/// A new session for a password login, per the login context.
async fn create(
    services: &Services,
    user: &crate::auth::ExperimenterInfo,
    current: &Current,
) -> Result<SessionInfo, DispatchError> {
    let dir = &services.directory;
    let wanted = current.ctx.get(CTX_GROUP).map(String::as_str);
    let group = login_group(dir, user, wanted)
        .map_err(|e| create_failed("ApiUsageException", e.message()))?;
    check_group_usable(user, &group)
        .map_err(|e| create_failed("SecurityViolation", e.message()))?;
    let event = current.ctx.get(CTX_EVENT).map_or("", String::as_str);
    let event_type = normalize_event_type(event)
        .map_err(|_| create_failed("ApiUsageException", &format!("Unknown event type: {event}")))?;
    let mut new = NewSession::new(user.id, group.id);
    new.event_type = event_type;
    new.agent = current.ctx.get(CTX_AGENT).cloned();
    new.ip = current.ctx.get(CTX_IP).cloned();
    services.sessions.create(new).await.map_err(|e| {
        // The short Java class name: a cap reached is ApiUsageException, a store failure
        // InternalException.
        let class = e.server_exception_class();
        create_failed(class.rsplit('.').next().unwrap_or(class), e.message())
    })
}

/// Verifies `user`/`password` and makes the ServiceFactory for this connection's client.
pub async fn login(
    services: &Services,
    user: &str,
    password: String,
    current: &Current,
) -> Result<Arc<Factory>, DispatchError> {
    let verified = verify(services, user, password, current).await?;
    let client_uuid = current
        .ctx
        .get(CTX_CLIENT_UUID)
        .filter(|c| !c.is_empty())
        .cloned();
    let Some(client_uuid) = client_uuid else {
        undo(services, &verified).await;
        return Err(create_failed(
            "ApiUsageException",
            "No omero.client.uuid key provided in context.",
        ));
    };
    if matches!(verified, Verified::Joined(_)) {
        services.metrics.record_join();
    }
    let (info, joined) = match verified {
        Verified::Joined(info) => (info, true),
        Verified::Password(found) => (create(services, &found, current).await?, false),
    };
    let factory = Arc::new(Factory::new(&client_uuid, &info.uuid, !joined));
    if !services.registry.add_factory(&factory) {
        services
            .sessions
            .release(&info.uuid, crate::sessions::DestroyMode::Detach)
            .await;
        return Err(create_failed(
            "ApiUsageException",
            &format!("client {client_uuid} is already attached to this session"),
        ));
    }
    tracing::info!(
        session = info.id,
        client = %client_uuid,
        owner = info.owner_id,
        joined,
        "glacier2 session created"
    );
    Ok(factory)
}

/// Gives back the reference a join took when the login fails afterwards.
async fn undo(services: &Services, verified: &Verified) {
    if let Verified::Joined(info) = verified {
        services
            .sessions
            .release(&info.uuid, crate::sessions::DestroyMode::Detach)
            .await;
    }
}
