//! omero.cmd: `ServiceFactory.submit(request)` and the Handle it returns. The requests served
//! (CurrentSessionsRequest, UpdateSessionTimeoutRequest, Chmod2 of groups) are quick, so a
//! request runs to the end inside submit; the handle then only reports the outcome, and tells
//! callbacks added later that it has finished, as OMERO's HandleI does for a finished
//! command. Any other request finishes with an ERR named `unsupported-request`.

use std::sync::Arc;

use crate::auth::context::event_context;
use crate::facade::{async_trait, Current, HashMap, Identity, Proxy, ValueRef};
use crate::generated::omero::cmd::{
    Chmod2, Chmod2Response, CmdCallbackPrx, CurrentSessionsRequest, CurrentSessionsResponse,
    Handle, HandleDispatcher, State, Status, UpdateSessionTimeoutRequest, ERR, OK,
};
use crate::generated::omero::sys::EventContext;
use crate::generated::omero::RLong;
use crate::sessions::{SessionInfo, TimeoutUpdateError};

use super::context::{Factory, Services};
use super::errors::Outcome;
use super::guard::{caller, Caller};
use super::model;
use super::proxy::proxy_for;
use crate::store::directory::USER_GROUP_ID;

/// Runs `request` as the caller and registers the handle that reports it; returns the
/// handle's proxy (`<session uuid>/IHandle<uuid>`).
pub async fn submit(
    services: &Services,
    factory: &Arc<Factory>,
    request: Option<ValueRef>,
    current: &Current,
) -> Outcome<Option<Proxy>> {
    let who = caller(services, factory)?;
    factory.check_servant_limit()?;
    let started = services.sessions.now_ms();
    let response = run(services, &who, request.as_ref()).await;
    let stopped = services.sessions.now_ms();
    let name = format!("IHandle{}", uuid::Uuid::new_v4());
    let id = Identity::new(factory.session_uuid.clone(), name.clone());
    let proxy = proxy_for(id, &current.connection);
    let status = status(&proxy, &response, started, stopped);
    let servant = HandleServant {
        factory: factory.clone(),
        name: name.clone(),
        request,
        response: response.value,
        status,
    };
    factory.service_or_insert(&name, || Arc::new(HandleDispatcher(Arc::new(servant))));
    Ok(Some(proxy))
}

/// The response of a finished request and whether it is an ERR.
struct Finished {
    value: Option<ValueRef>,
    failed: bool,
}

fn ok(value: ValueRef) -> Finished {
    Finished {
        value: Some(value),
        failed: false,
    }
}

fn err(category: &str, name: &str, parameters: &[(&str, String)]) -> Finished {
    Finished {
        value: Some(ValueRef::new(ERR {
            category: category.to_string(),
            name: name.to_string(),
            parameters: parameters
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            ..Default::default()
        })),
        failed: true,
    }
}

const UPDATE_TIMEOUT: &str = "::omero::cmd::UpdateSessionTimeoutRequest";

async fn run(services: &Services, who: &Caller, request: Option<&ValueRef>) -> Finished {
    let Some(request) = request else {
        return err("::omero::cmd::Request", "null-request", &[]);
    };
    if request.get::<CurrentSessionsRequest>().is_some() {
        return current_sessions(services, who);
    }
    if let Some(update) = request.get::<UpdateSessionTimeoutRequest>() {
        return update_timeout(services, who, update).await;
    }
    if let Some(chmod) = request.get::<Chmod2>() {
        if let Some(done) = chmod_groups(services, who, chmod) {
            return done;
        }
    }
    let kind = request.ice_id();
    err(
        kind,
        "unsupported-request",
        &[(
            "message",
            format!("omero-sessiond does not run {kind} requests"),
        )],
    )
}

/// OMERO 5.x: an admin sees every session in full; anyone else sees their own sessions in
/// full and, for sessions of others whose current group they are a member of, only who and
/// which group (no Session object, no data).
fn current_sessions(services: &Services, who: &Caller) -> Finished {
    let dir = &services.directory;
    let admin = who.rights.roles.is_admin;
    let me = who.info.owner_id;
    // Everyone is in "user": sharing it says nothing, so it shows nobody's sessions.
    let shares = |g: i64| g != USER_GROUP_ID && who.rights.roles.is_member(g);
    let mut rsp = CurrentSessionsResponse::default();
    for s in services.sessions.live_sessions() {
        if admin || s.owner_id == me {
            let Ok(ec) = event_context(dir, &s) else {
                continue;
            };
            rsp.sessions.push(Some(model::session(&s, dir)));
            rsp.contexts.push(Some(model::event_context(ec)));
            rsp.data.push(session_data(&s));
        } else if shares(s.group_id) {
            rsp.sessions.push(None);
            rsp.contexts
                .push(Some(ValueRef::new(limited_context(services, &s))));
            rsp.data.push(HashMap::new());
        }
    }
    ok(ValueRef::new(rsp))
}

fn limited_context(services: &Services, s: &SessionInfo) -> EventContext {
    let dir = &services.directory;
    EventContext {
        session_id: -1,
        share_id: -1,
        event_id: -1,
        user_id: s.owner_id,
        user_name: dir
            .experimenter(s.owner_id)
            .map(|u| u.ome_name)
            .unwrap_or_default(),
        group_id: s.group_id,
        group_name: dir.group(s.group_id).map(|g| g.name).unwrap_or_default(),
        ..Default::default()
    }
}

fn session_data(s: &SessionInfo) -> HashMap<String, Option<ValueRef>> {
    let mut data = HashMap::new();
    data.insert("lastAccessTime".to_string(), model::rtime(s.last_access));
    data.insert("hits".to_string(), model::rlong(s.hits));
    data
}

async fn update_timeout(
    services: &Services,
    who: &Caller,
    req: &UpdateSessionTimeoutRequest,
) -> Finished {
    let admin = who.rights.roles.is_admin;
    let info = &who.info;
    // The Session row is private to its owner: others (but admins) do not see it at all.
    let visible = services
        .sessions
        .find_row(&req.session)
        .await
        .is_some_and(|row| admin || row.owner_id == info.owner_id);
    let long = |v: &Option<ValueRef>| v.as_ref().and_then(|v| v.get::<RLong>()).map(|l| l.val);
    let result = if visible {
        services
            .sessions
            .update_timeouts(
                &req.session,
                long(&req.time_to_live),
                long(&req.time_to_idle),
                admin,
            )
            .await
    } else {
        Err(TimeoutUpdateError::NoSession)
    };
    match result {
        Ok(updated) => {
            tracing::info!(
                session = %updated.uuid,
                by = info.owner_id,
                time_to_live = updated.time_to_live,
                time_to_idle = updated.time_to_idle,
                "session timeouts updated"
            );
            ok(ValueRef::new(OK::default()))
        }
        Err(e) => {
            let mut params = vec![("message", e.to_string())];
            if let TimeoutUpdateError::NonAdminDisabling {
                field,
                target,
                current,
            } = &e
            {
                params.push(("field", field.to_string()));
                params.push(("target", target.to_string()));
                params.push(("current", current.to_string()));
            }
            err(UPDATE_TIMEOUT, e.name(), &params)
        }
    }
}

const CHMOD: &str = "::omero::cmd::Chmod2";

/// Chmod2 of groups only (what `omero group perms` submits): for holders of ModifyGroup and
/// the groups' owners. `None` when the request names other objects too: those are not run.
fn chmod_groups(services: &Services, who: &Caller, req: &Chmod2) -> Option<Finished> {
    let targets = &req.base.base.target_objects;
    let groups = targets.get("ExperimenterGroup")?;
    if targets.len() != 1 {
        return None;
    }
    let roles = &who.rights.roles;
    let allowed = roles.has_privilege("ModifyGroup") || groups.iter().all(|g| roles.leads(*g));
    if !allowed {
        let message = format!(
            "user {} may not change these groups' permissions",
            who.info.owner_id
        );
        return Some(err(CHMOD, "not-permitted", &[("message", message)]));
    }
    if !crate::auth::permissions::is_valid(&req.permissions) {
        let message = format!("invalid permissions {:?}", req.permissions);
        return Some(err(CHMOD, "bad-permissions", &[("message", message)]));
    }
    if !req.base.dry_run {
        for gid in groups {
            let changed = services
                .directory
                .update_group(*gid, None, Some(&req.permissions));
            if let Err(e) = changed {
                return Some(err(CHMOD, "chmod-failed", &[("message", e.to_string())]));
            }
        }
    }
    let mut included = HashMap::new();
    included.insert("ExperimenterGroup".to_string(), groups.clone());
    Some(ok(ValueRef::new(Chmod2Response {
        included_objects: included,
        ..Default::default()
    })))
}

fn status(source: &Proxy, rsp: &Finished, started: i64, stopped: i64) -> Status {
    Status {
        source: Some(source.clone()),
        flags: vec![if rsp.failed {
            State::FAILURE
        } else {
            State::SUCCESS
        }],
        current_step: 1,
        steps: 1,
        start_time: started,
        step_start_times: vec![started],
        step_stop_times: vec![stopped],
        stop_time: stopped,
        ..Default::default()
    }
}

/// The handle of one submitted request, already finished.
struct HandleServant {
    /// The client that submitted: the handle is one of its servants.
    factory: Arc<Factory>,
    name: String,
    request: Option<ValueRef>,
    response: Option<ValueRef>,
    status: Status,
}

impl HandleServant {
    /// Tells a callback that the command is done, on the client's own connection; the reply
    /// to addCallback does not wait for it.
    fn notify(&self, cb: Proxy, current: &Current) {
        let prx = CmdCallbackPrx {
            proxy: cb,
            invoker: Arc::new(current.connection.handle.clone()),
        };
        let response = self.response.clone();
        let status = Some(ValueRef::new(self.status.clone()));
        let handle = self.name.clone();
        tokio::spawn(async move {
            let ctx = Default::default();
            let steps = 1;
            let result = match prx.step(steps, steps, &ctx).await {
                Ok(()) => prx.finished(response, status, &ctx).await,
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::debug!(%handle, error = %e, "command callback not reached");
            }
        });
    }
}

#[async_trait]
impl Handle for HandleServant {
    async fn add_callback(&self, cb: Option<Proxy>, current: &Current) -> Outcome<()> {
        // The command has already finished, so the callback is told at once and need not
        // be kept for later.
        if let Some(cb) = cb {
            self.notify(cb, current);
        }
        Ok(())
    }

    async fn remove_callback(&self, _cb: Option<Proxy>, _c: &Current) -> Outcome<()> {
        Ok(())
    }

    async fn get_request(&self, _c: &Current) -> Outcome<Option<ValueRef>> {
        Ok(self.request.clone())
    }

    async fn get_response(&self, _c: &Current) -> Outcome<Option<ValueRef>> {
        Ok(self.response.clone())
    }

    async fn get_status(&self, _c: &Current) -> Outcome<Option<ValueRef>> {
        Ok(Some(ValueRef::new(self.status.clone())))
    }

    async fn cancel(&self, _c: &Current) -> Outcome<bool> {
        // Already finished: as in OMERO, a finished command cannot be cancelled.
        Ok(false)
    }

    async fn close(&self, _c: &Current) -> Outcome<()> {
        self.factory.remove_service(&self.name);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{NewExperimenter, Password};
    use crate::services::context::tests::services;
    use crate::sessions::NewSession;
    use crate::store::directory::ROOT_USER_ID;

    fn user(svc: &Services, name: &str) -> i64 {
        member(svc, name, &[])
    }

    fn member(svc: &Services, name: &str, groups: &[&str]) -> i64 {
        svc.directory
            .add_experimenter(NewExperimenter {
                ome_name: name.into(),
                first_name: None,
                last_name: None,
                email: None,
                password: Password::new("pw"),
                admin: false,
                groups: groups.iter().map(|g| g.to_string()).collect(),
                owner_of: Vec::new(),
            })
            .unwrap()
            .id
    }

    async fn session(svc: &Services, owner: i64) -> SessionInfo {
        let group = svc.directory.default_group(owner).map_or(1, |g| g.id);
        svc.sessions
            .create(NewSession::new(owner, group))
            .await
            .unwrap()
    }

    fn as_caller(svc: &Services, info: &SessionInfo) -> Caller {
        svc.directory.refresh();
        let rights = crate::auth::context::rights(&svc.directory, info).unwrap();
        Caller {
            info: info.clone(),
            rights,
        }
    }

    async fn sessions_seen(svc: &Services, who: &SessionInfo) -> (Vec<bool>, Vec<String>) {
        let rsp = run(
            svc,
            &as_caller(svc, who),
            Some(&ValueRef::new(CurrentSessionsRequest::default())),
        )
        .await;
        assert!(!rsp.failed);
        let value = rsp.value.unwrap();
        let rsp = value.get::<CurrentSessionsResponse>().unwrap();
        assert_eq!(rsp.sessions.len(), rsp.contexts.len());
        assert_eq!(rsp.sessions.len(), rsp.data.len());
        let full = rsp.sessions.iter().map(Option::is_some).collect();
        let names = rsp
            .contexts
            .iter()
            .map(|c| {
                let c = c.as_ref().unwrap();
                c.get::<EventContext>().unwrap().user_name.clone()
            })
            .collect();
        (full, names)
    }

    fn update(uuid: &str, ttl: Option<i64>, tti: Option<i64>) -> ValueRef {
        ValueRef::new(UpdateSessionTimeoutRequest {
            session: uuid.to_string(),
            time_to_live: ttl.and_then(model::rlong),
            time_to_idle: tti.and_then(model::rlong),
            ..Default::default()
        })
    }

    fn err_name(f: &Finished) -> String {
        assert!(f.failed);
        let v = f.value.as_ref().unwrap();
        v.get::<ERR>().unwrap().name.clone()
    }

    #[tokio::test]
    async fn admins_see_every_session_users_their_own() {
        let tmp = tempfile::tempdir().unwrap();
        let svc = services(tmp.path());
        let alice = user(&svc, "alice");
        let bob = user(&svc, "bob");
        let a = session(&svc, alice).await;
        session(&svc, bob).await;
        let root = session(&svc, ROOT_USER_ID).await;
        let (full, names) = sessions_seen(&svc, &root).await;
        assert_eq!(full, vec![true, true, true]);
        assert_eq!(names.len(), 3);
        // alice and bob share only the "user" group, which is not their current one.
        let (full, names) = sessions_seen(&svc, &a).await;
        assert_eq!((full, names), (vec![true], vec!["alice".to_string()]));
        // In a group carol is a member of, dave's session shows who, not what.
        svc.directory.add_group("lab", "rw----").unwrap();
        let carol = member(&svc, "carol", &["lab"]);
        let dave = member(&svc, "dave", &["lab"]);
        let c = session(&svc, carol).await;
        session(&svc, dave).await;
        let (full, names) = sessions_seen(&svc, &c).await;
        assert_eq!(full, vec![true, false]);
        assert_eq!(names, vec!["carol".to_string(), "dave".to_string()]);
    }

    #[tokio::test]
    async fn users_set_their_timeouts_within_limits() {
        let tmp = tempfile::tempdir().unwrap();
        let svc = services(tmp.path());
        let alice = user(&svc, "alice");
        let bob = user(&svc, "bob");
        let a = session(&svc, alice).await;
        let b = session(&svc, bob).await;
        let r = run(
            &svc,
            &as_caller(&svc, &a),
            Some(&update(&a.uuid, None, Some(1_200_000))),
        )
        .await;
        assert!(!r.failed);
        assert_eq!(
            svc.sessions.lookup(&a.uuid, true).unwrap().time_to_idle,
            1_200_000
        );
        assert_eq!(
            err_name(
                &run(
                    &svc,
                    &as_caller(&svc, &a),
                    Some(&update(&a.uuid, None, Some(0)))
                )
                .await
            ),
            "non-admin-disabling"
        );
        assert_eq!(
            err_name(
                &run(
                    &svc,
                    &as_caller(&svc, &a),
                    Some(&update(&a.uuid, None, None))
                )
                .await
            ),
            "no-update-performed"
        );
        // Someone else's session is invisible to a user, not to an admin.
        assert_eq!(
            err_name(
                &run(
                    &svc,
                    &as_caller(&svc, &a),
                    Some(&update(&b.uuid, None, Some(5)))
                )
                .await
            ),
            "no-session"
        );
        let root = session(&svc, ROOT_USER_ID).await;
        assert!(
            !run(
                &svc,
                &as_caller(&svc, &root),
                Some(&update(&b.uuid, Some(0), None))
            )
            .await
            .failed
        );
        assert_eq!(svc.sessions.lookup(&b.uuid, true).unwrap().time_to_live, 0);
    }

    #[tokio::test]
    async fn chmod_of_a_group_by_an_admin_only() {
        let tmp = tempfile::tempdir().unwrap();
        let svc = services(tmp.path());
        let lab = svc.directory.add_group("lab", "rw----").unwrap().id;
        let alice = member(&svc, "alice", &["lab"]);
        let a = session(&svc, alice).await;
        let root = session(&svc, ROOT_USER_ID).await;
        let chmod = |perms: &str, dry_run: bool| {
            let mut req = Chmod2 {
                permissions: perms.to_string(),
                ..Default::default()
            };
            req.base.dry_run = dry_run;
            req.base
                .base
                .target_objects
                .insert("ExperimenterGroup".to_string(), vec![lab]);
            ValueRef::new(req)
        };
        let f = run(&svc, &as_caller(&svc, &a), Some(&chmod("rwr---", false))).await;
        assert_eq!(err_name(&f), "not-permitted");
        let f = run(&svc, &as_caller(&svc, &root), Some(&chmod("rwr---", true))).await;
        assert!(!f.failed);
        assert_eq!(svc.directory.group(lab).unwrap().permissions, "rw----");
        let f = run(&svc, &as_caller(&svc, &root), Some(&chmod("rwr---", false))).await;
        assert!(!f.failed);
        assert_eq!(svc.directory.group(lab).unwrap().permissions, "rwr---");
        let f = run(&svc, &as_caller(&svc, &root), Some(&chmod("nope", false))).await;
        assert_eq!(err_name(&f), "bad-permissions");
        // Other targets are not run.
        let mut other = Chmod2::default();
        other
            .base
            .base
            .target_objects
            .insert("Image".into(), vec![1]);
        let f = run(&svc, &as_caller(&svc, &root), Some(&ValueRef::new(other))).await;
        assert_eq!(err_name(&f), "unsupported-request");
    }

    #[tokio::test]
    async fn other_requests_end_in_err_naming_them() {
        let tmp = tempfile::tempdir().unwrap();
        let svc = services(tmp.path());
        let root = session(&svc, ROOT_USER_ID).await;
        let req = ValueRef::new(crate::generated::omero::cmd::Timing::default());
        let f = run(&svc, &as_caller(&svc, &root), Some(&req)).await;
        assert_eq!(err_name(&f), "unsupported-request");
        let v = f.value.unwrap();
        let e = v.get::<ERR>().unwrap();
        assert_eq!(e.category, "::omero::cmd::Timing");
        assert!(e.parameters["message"].contains("Timing"));
        assert_eq!(
            err_name(&run(&svc, &as_caller(&svc, &root), None).await),
            "null-request"
        );
    }
}
