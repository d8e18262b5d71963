//! The ISession servant (spec §1, §8). Every operation first looks the caller's own session
//! up (refreshing it), as OMERO's security interceptor does; the target session of an
//! operation is a capability: whoever knows its uuid may use it.

use std::sync::Arc;

use crate::auth::context::login_group;
use crate::auth::{AuthError, ExperimenterInfo, GroupInfo, Password};
use crate::encoding::{Encoding, InputStream, OutputStream};
use crate::facade::{Current, ValueRef};
use crate::generated::omero::api::ISession;
use crate::generated::omero::model::Session;
use crate::generated::omero::sys::Principal;
use crate::sessions::manager::{AGENT_CREATE_SESSION, AGENT_SUDO};
use crate::sessions::{
    normalize_event_type, AgentFilter, Env, NewSession, SessionError, SudoerFilter,
};

use super::context::{Factory, Services};
use super::errors::{to_dispatch, OrOmero, Outcome};
use super::guard::{caller, require_password, require_role, Caller};
use super::model;

/// What a value costs to keep: its size in the compact 1.1 encoding. Encoding is bounded by
/// the request that carried the value, which was at most one message.
fn encoded_size(value: &ValueRef) -> usize {
    let mut out = OutputStream::new(Encoding::V1_1);
    out.write_value(Some(value));
    out.write_pending_values();
    out.len()
}

/// Environment values are stored as one 1.1 encapsulation holding the value and its graph,
/// the form a client sends them in, read back with the generated class factories.
impl crate::sessions::EnvValue for ValueRef {
    fn encode(&self) -> Vec<u8> {
        let mut out = OutputStream::new(Encoding::V1_1);
        out.start_encapsulation(Encoding::V1_1);
        out.write_value(Some(self));
        out.write_pending_values();
        out.end_encapsulation();
        out.into_bytes()
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut input = InputStream::new(bytes, Encoding::V1_1);
        input.set_factories(crate::generated::FACTORIES);
        let value = read_stored_value(&mut input).map_err(|e| e.to_string())?;
        value.ok_or_else(|| "a stored value is null".to_string())
    }
}

fn read_stored_value(
    input: &mut InputStream<'_>,
) -> Result<Option<ValueRef>, crate::encoding::DecodeError> {
    input.start_encapsulation()?;
    let value = input.read_value()?;
    input.read_pending_values()?;
    input.end_encapsulation()?;
    Ok(value)
}

/// Context key that makes getSession leave the target's idle time alone.
const QUIETLY: &str = "quietly";

pub struct SessionService {
    services: Services,
    factory: Arc<Factory>,
}

fn creation_error() -> SessionError {
    SessionError::Authentication("Error creating session.".to_string())
}

fn principal(p: &Option<ValueRef>, operation: &str) -> Outcome<Principal> {
    p.as_ref()
        .and_then(|v| v.get::<Principal>())
        .cloned()
        .ok_or_else(|| {
            to_dispatch(SessionError::ApiUsage(format!(
                "Argument 1 to {operation} may not be null."
            )))
        })
}

impl SessionService {
    pub fn new(services: Services, factory: Arc<Factory>) -> Self {
        SessionService { services, factory }
    }

    fn caller(&self) -> Outcome<Caller> {
        let caller = caller(&self.services, &self.factory)?;
        require_role(&caller, &["user", "guest"])?;
        Ok(caller)
    }

    fn model(&self, info: &crate::sessions::SessionInfo) -> Option<ValueRef> {
        Some(model::session(info, &self.services.directory))
    }

    /// The group a new session of `user` starts in: `name`, or the default group when empty
    /// or "user".
    fn target_group(&self, user: &ExperimenterInfo, name: &str) -> Result<GroupInfo, SessionError> {
        login_group(&self.services.directory, user, Some(name)).map_err(|_| creation_error())
    }

    fn agent(current: &Current, default: &str) -> Option<String> {
        Some(
            current
                .ctx
                .get("omero.agent")
                .cloned()
                .unwrap_or_else(|| default.to_string()),
        )
    }

    /// createSessionWithTimeouts: sudo by an admin, or by the owner of the target group.
    async fn sudo(
        &self,
        p: &Option<ValueRef>,
        time_to_live: i64,
        time_to_idle: i64,
        operation: &str,
        current: &Current,
    ) -> Outcome<Option<ValueRef>> {
        let caller = self.caller()?;
        require_role(&caller, &["user"])?;
        let p = principal(p, operation)?;
        let user = self
            .services
            .directory
            .experimenter_by_name(&p.name)
            .ok_or_else(|| to_dispatch(creation_error()))?;
        let group = self.target_group(&user, &p.group).or_omero()?;
        let grant = caller.rights.authorize_sudo(&user, &group).or_omero()?;
        let mut new = NewSession::new(user.id, group.id);
        new.event_type = normalize_event_type(&p.event_type).or_omero()?;
        new.agent = Self::agent(current, AGENT_SUDO);
        new.ip = current.ctx.get("omero.ip").cloned();
        new.sudoer_id = Some(grant.sudoer_id);
        new.group_sudo = grant.group_sudo;
        new.time_to_live = Some(time_to_live);
        new.time_to_idle = Some(time_to_idle);
        let created = self.services.sessions.create(new).await.or_omero()?;
        Ok(self.model(&created))
    }
}

impl ISession for SessionService {
    async fn create_session(
        &self,
        p: Option<ValueRef>,
        credentials: String,
        current: &Current,
    ) -> Outcome<Option<ValueRef>> {
        self.caller()?;
        let p = principal(&p, "createSession")?;
        if let Ok(joined) = self.services.sessions.join(&credentials).await {
            return Ok(self.model(&joined));
        }
        let addr = current.connection.remote.map(|a| a.ip());
        let user = match self
            .services
            .auth
            .login(&p.name, Password::new(credentials), addr)
            .await
        {
            Ok(user) => user,
            Err(AuthError::BadCredentials) => {
                return Err(to_dispatch(SessionError::Authentication(
                    "Authentication exception.".to_string(),
                )))
            }
            Err(e) => return Err(to_dispatch(SessionError::Authentication(e.to_string()))),
        };
        let group = self.target_group(&user, &p.group).or_omero()?;
        if !user.is_member(group.id) {
            return Err(to_dispatch(creation_error()));
        }
        let mut new = NewSession::new(user.id, group.id);
        new.event_type = normalize_event_type(&p.event_type).or_omero()?;
        new.agent = Self::agent(current, AGENT_CREATE_SESSION);
        new.ip = current.ctx.get("omero.ip").cloned();
        let created = self.services.sessions.create(new).await.or_omero()?;
        Ok(self.model(&created))
    }

    async fn create_user_session(
        &self,
        time_to_live_milliseconds: i64,
        time_to_idle_milliseconds: i64,
        default_group: String,
        current: &Current,
    ) -> Outcome<Option<ValueRef>> {
        let caller = self.caller()?;
        require_role(&caller, &["user"])?;
        require_password(&self.factory)?;
        let user = &caller.rights.user;
        let group = self.target_group(user, &default_group).or_omero()?;
        let mut new = NewSession::new(user.id, group.id);
        new.agent = Self::agent(current, AGENT_CREATE_SESSION);
        new.ip = current.ctx.get("omero.ip").cloned();
        new.sudoer_id = caller.info.sudoer_id;
        // A copy of a group-sudo session stays as limited as its original.
        new.group_sudo = caller.info.group_sudo;
        let created = self
            .services
            .sessions
            .create_user_session(new, time_to_live_milliseconds, time_to_idle_milliseconds)
            .await
            .or_omero()?;
        Ok(self.model(&created))
    }

    async fn create_session_with_timeout(
        &self,
        principal: Option<ValueRef>,
        time_to_live_milliseconds: i64,
        current: &Current,
    ) -> Outcome<Option<ValueRef>> {
        // OMERO disables idle expiry here (timeToIdle 0), as clients have come to expect.
        self.sudo(
            &principal,
            time_to_live_milliseconds,
            0,
            "createSessionWithTimeout",
            current,
        )
        .await
    }

    async fn create_session_with_timeouts(
        &self,
        principal: Option<ValueRef>,
        time_to_live_milliseconds: i64,
        time_to_idle_milliseconds: i64,
        current: &Current,
    ) -> Outcome<Option<ValueRef>> {
        self.sudo(
            &principal,
            time_to_live_milliseconds,
            time_to_idle_milliseconds,
            "createSessionWithTimeouts",
            current,
        )
        .await
    }

    async fn get_session(
        &self,
        session_uuid: String,
        current: &Current,
    ) -> Outcome<Option<ValueRef>> {
        self.caller()?;
        let quiet = current.ctx.get(QUIETLY).is_some_and(|v| v == "true");
        let info = self
            .services
            .sessions
            .lookup(&session_uuid, quiet)
            .or_omero()?;
        Ok(self.model(&info))
    }

    async fn get_reference_count(&self, session_uuid: String, _current: &Current) -> Outcome<i32> {
        self.caller()?;
        let count = self
            .services
            .sessions
            .current_reference_count(&session_uuid)
            .await
            .or_omero()?;
        Ok(i32::try_from(count).unwrap_or(i32::MAX))
    }

    async fn close_session(&self, sess: Option<ValueRef>, _current: &Current) -> Outcome<i32> {
        self.caller()?;
        let Some(session) = sess.as_ref().and_then(|s| s.get::<Session>()) else {
            return Err(to_dispatch(SessionError::ApiUsage(
                "Argument 1 to closeSession may not be null.".to_string(),
            )));
        };
        let Some(uuid) = model::string_of(&session.uuid) else {
            return Err(to_dispatch(SessionError::uuid_null()));
        };
        let result = self
            .services
            .sessions
            .close_session(&uuid)
            .await
            .or_omero()?;
        if result == -2 {
            self.services.registry.drop_session(&uuid);
        }
        Ok(i32::try_from(result).unwrap_or(i32::MAX))
    }

    async fn get_my_open_sessions(&self, _current: &Current) -> Outcome<Vec<Option<ValueRef>>> {
        self.open_sessions(AgentFilter::Any)
    }

    async fn get_my_open_agent_sessions(
        &self,
        agent: String,
        _current: &Current,
    ) -> Outcome<Vec<Option<ValueRef>>> {
        self.open_sessions(AgentFilter::Exactly(Some(agent)))
    }

    async fn get_my_open_client_sessions(
        &self,
        _current: &Current,
    ) -> Outcome<Vec<Option<ValueRef>>> {
        self.open_sessions(AgentFilter::clients())
    }

    async fn get_input(
        &self,
        sess: String,
        key: String,
        _current: &Current,
    ) -> Outcome<Option<ValueRef>> {
        self.env_get(&sess, Env::Input, &key)
    }

    async fn get_output(
        &self,
        sess: String,
        key: String,
        _current: &Current,
    ) -> Outcome<Option<ValueRef>> {
        self.env_get(&sess, Env::Output, &key)
    }

    async fn set_input(
        &self,
        sess: String,
        key: String,
        value: Option<ValueRef>,
        _current: &Current,
    ) -> Outcome<()> {
        self.env_set(&sess, Env::Input, &key, value).await
    }

    async fn set_output(
        &self,
        sess: String,
        key: String,
        value: Option<ValueRef>,
        _current: &Current,
    ) -> Outcome<()> {
        self.env_set(&sess, Env::Output, &key, value).await
    }

    async fn get_input_keys(&self, sess: String, _current: &Current) -> Outcome<Vec<String>> {
        self.env_keys(&sess, Env::Input)
    }

    async fn get_output_keys(&self, sess: String, _current: &Current) -> Outcome<Vec<String>> {
        self.env_keys(&sess, Env::Output)
    }

    async fn get_inputs(
        &self,
        sess: String,
        _current: &Current,
    ) -> Outcome<std::collections::HashMap<String, Option<ValueRef>>> {
        self.env_all(&sess, Env::Input)
    }

    async fn get_outputs(
        &self,
        sess: String,
        _current: &Current,
    ) -> Outcome<std::collections::HashMap<String, Option<ValueRef>>> {
        self.env_all(&sess, Env::Output)
    }
}

/// The environments: the caller's own session is checked (and refreshed) first; what each
/// call does to the target session is the session manager's rule (spec §8).
impl SessionService {
    fn env_get(&self, sess: &str, env: Env, key: &str) -> Outcome<Option<ValueRef>> {
        self.caller()?;
        self.services.sessions.get_env(sess, env, key).or_omero()
    }

    async fn env_set(
        &self,
        sess: &str,
        env: Env,
        key: &str,
        value: Option<ValueRef>,
    ) -> Outcome<()> {
        self.caller()?;
        let size = value.as_ref().map_or(0, encoded_size);
        self.services
            .sessions
            .set_env(sess, env, key, value, size)
            .await
            .or_omero()
    }

    fn env_keys(&self, sess: &str, env: Env) -> Outcome<Vec<String>> {
        self.caller()?;
        self.services.sessions.env_keys(sess, env).or_omero()
    }

    fn env_all(
        &self,
        sess: &str,
        env: Env,
    ) -> Outcome<std::collections::HashMap<String, Option<ValueRef>>> {
        self.caller()?;
        let map = self.services.sessions.env_copy(sess, env).or_omero()?;
        Ok(map.into_iter().map(|(k, v)| (k, Some(v))).collect())
    }

    fn open_sessions(&self, agent: AgentFilter) -> Outcome<Vec<Option<ValueRef>>> {
        let caller = self.caller()?;
        require_role(&caller, &["user"])?;
        let sudoer = if caller.rights.reads_all_own_sessions() {
            SudoerFilter::Any
        } else {
            SudoerFilter::Equals(caller.info.sudoer_id)
        };
        Ok(self
            .services
            .sessions
            .open_sessions(caller.info.owner_id, sudoer, &agent)
            .iter()
            .map(|s| self.model(s))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_size_grows_with_the_value() {
        let small = model::rstring("a").unwrap();
        let large = model::rstring(&"x".repeat(10_000)).unwrap();
        let (s, l) = (encoded_size(&small), encoded_size(&large));
        assert!(s > 0);
        assert!(l >= 10_000 && l > s, "{s} {l}");
    }
}
