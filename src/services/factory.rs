//! The ServiceFactory servant (spec §5.3): the Glacier2 session object of one client.

use std::sync::Arc;

use crate::auth::context::rights;
use crate::auth::{AuthError, Password};
use crate::facade::{async_trait, Current, Dispatch, DispatchError, Identity, Proxy, ValueRef};
use crate::generated::omero::api::{
    IAdminDispatcher, IConfigDispatcher, ISessionDispatcher, ServiceFactory,
    ServiceFactoryDispatcher,
};
use crate::generated::omero::model::ExperimenterGroup;
use crate::sessions::{DestroyMode, SessionError};

use super::admin::AdminService;
use super::cmd;
use super::config::ConfigService;
use super::context::{Factory, Services};
use super::errors::{to_dispatch, OrOmero, Outcome};
use super::model;
use super::proxy::proxy_for;
use super::session::SessionService;
use super::unprovided::{self, Kind, UnprovidedService};
use crate::store::directory::GUEST_USER_ID;

pub const ADMIN_SERVICE: &str = "omero.api.IAdmin";
pub const SESSION_SERVICE: &str = "omero.api.ISession";
pub const CONFIG_SERVICE: &str = "omero.api.IConfig";

/// Identity of a client's ServiceFactory: `session-<clientUuid>/<sessionUuid>`.
pub fn factory_identity(client_uuid: &str, session_uuid: &str) -> Identity {
    Identity::new(format!("session-{client_uuid}"), session_uuid)
}

/// The servant behind `session-<clientUuid>/<sessionUuid>`.
pub struct FactoryServant {
    services: Services,
    factory: Arc<Factory>,
}

impl FactoryServant {
    pub fn new(services: Services, factory: Arc<Factory>) -> Self {
        FactoryServant { services, factory }
    }

    /// The dispatcher the router puts in front of this servant.
    pub fn dispatcher(services: Services, factory: Arc<Factory>) -> Arc<dyn Dispatch> {
        Arc::new(ServiceFactoryDispatcher(Arc::new(FactoryServant::new(
            services, factory,
        ))))
    }

    /// Registers (once per client) and returns the proxy of a stateless service.
    fn stateless(&self, service: &str, current: &Current) -> Outcome<Option<Proxy>> {
        let name = self.factory.service_name(service);
        let make = self.maker(service)?;
        self.factory.service_or_insert(&name, make);
        let id = Identity::new(self.factory.session_uuid.clone(), name);
        Ok(Some(proxy_for(id, &current.connection)))
    }

    /// Registers a new instance of a stateful service under `<random uuid><service>`, owned
    /// by this client, and returns its proxy.
    fn stateful(&self, service: &str, current: &Current) -> Outcome<Option<Proxy>> {
        let make = self.maker(service)?;
        self.factory.check_servant_limit()?;
        let name = format!("{}{service}", uuid::Uuid::new_v4());
        self.factory.service_or_insert(&name, make);
        let id = Identity::new(self.factory.session_uuid.clone(), name);
        Ok(Some(proxy_for(id, &current.connection)))
    }

    /// How the servant of `service` is made; unknown names are refused as OMERO does.
    fn maker(&self, service: &str) -> Outcome<Box<dyn FnOnce() -> Arc<dyn Dispatch>>> {
        let services = self.services.clone();
        let factory = self.factory.clone();
        Ok(match service {
            ADMIN_SERVICE => Box::new(move || {
                Arc::new(IAdminDispatcher(Arc::new(AdminService::new(
                    services, factory,
                ))))
            }),
            SESSION_SERVICE => Box::new(move || {
                Arc::new(ISessionDispatcher(Arc::new(SessionService::new(
                    services, factory,
                ))))
            }),
            CONFIG_SERVICE => Box::new(move || {
                Arc::new(IConfigDispatcher(Arc::new(ConfigService::new(
                    services, factory,
                ))))
            }),
            other => match unprovided::find(other) {
                Some(missing) => {
                    Box::new(move || Arc::new(UnprovidedService::new(missing, services, factory)))
                }
                None => return Err(unknown_service(other)),
            },
        })
    }

    /// A service other than admin, config and session: refused for the guest user, as
    /// OMERO's factory does, after the session is checked.
    fn guarded(&self, service: &str, current: &Current) -> Prx {
        self.refuse_guest(service)?;
        match unprovided::find(service) {
            Some(m) if m.kind == Kind::Stateful => Err(unknown_service(service)),
            _ => self.stateless(service, current),
        }
    }

    fn guarded_stateful(&self, service: &str, current: &Current) -> Prx {
        self.refuse_guest(service)?;
        match unprovided::find(service) {
            Some(m) if m.kind == Kind::Stateful => self.stateful(service, current),
            _ => Err(unknown_service(service)),
        }
    }

    fn refuse_guest(&self, service: &str) -> Outcome<()> {
        let info = self.touch()?;
        if info.owner_id == GUEST_USER_ID {
            return Err(to_dispatch(SessionError::SecurityViolation(format!(
                "Access denied to guest user: {service}"
            ))));
        }
        Ok(())
    }

    /// A call made as the session: refreshes it, fails when it is gone or expired.
    fn touch(&self) -> Outcome<crate::sessions::SessionInfo> {
        self.services
            .sessions
            .lookup(&self.factory.session_uuid, false)
            .or_omero()
    }

    /// Whether `proxy` is a live service of this client (the only ones it may reach).
    fn registered(&self, proxy: &Proxy) -> bool {
        proxy.identity.category == self.factory.session_uuid
            && self.factory.has_service(&proxy.identity.name)
    }
}

type Prx = Outcome<Option<Proxy>>;

fn unknown_service(name: &str) -> DispatchError {
    to_dispatch(SessionError::ApiUsage(format!(
        "{name} is an unknown service. Please check Constants.ice or the documentation for a \
         list of valid names."
    )))
}

#[async_trait]
impl ServiceFactory for FactoryServant {
    async fn destroy(&self, _current: &Current) -> Outcome<()> {
        self.factory.destroy(&self.services).await;
        Ok(())
    }

    async fn submit(&self, req: Option<ValueRef>, current: &Current) -> Prx {
        cmd::submit(&self.services, &self.factory, req, current).await
    }

    async fn get_security_contexts(&self, _current: &Current) -> Outcome<Vec<Option<ValueRef>>> {
        let info = self.touch()?;
        let dir = &self.services.directory;
        let rights = rights(dir, &info).or_omero()?;
        Ok(rights
            .roles
            .member_of
            .iter()
            .filter_map(|id| dir.group(*id))
            .map(|g| Some(model::group(&g)))
            .collect())
    }

    async fn set_security_context(
        &self,
        obj: Option<ValueRef>,
        _current: &Current,
    ) -> Outcome<Option<ValueRef>> {
        let info = self.touch()?;
        let Some(id) = model::id_of(&obj) else {
            return Err(to_dispatch(SessionError::ApiUsage(
                "Security context must be managed!".to_string(),
            )));
        };
        let is_group = obj
            .as_ref()
            .is_some_and(|o| o.get::<ExperimenterGroup>().is_some());
        if !is_group {
            let kind = obj.as_ref().map_or("null", |o| o.ice_id());
            return Err(to_dispatch(SessionError::ApiUsage(format!(
                "Unknown security context:{kind}"
            ))));
        }
        let allowed = rights(&self.services.directory, &info).is_ok_and(|r| r.may_switch_to(id))
            && self.services.directory.group(id).is_some();
        let previous = self
            .services
            .sessions
            .switch_group(&self.factory.session_uuid, id, allowed)
            .await
            .or_omero()?;
        Ok(Some(model::group_ref(previous)))
    }

    async fn set_security_password(&self, password: String, current: &Current) -> Outcome<()> {
        let info = self.touch()?;
        let Some(user) = self.services.directory.experimenter(info.owner_id) else {
            return Err(to_dispatch(SessionError::Internal(format!(
                "unknown owner of session {}",
                info.uuid
            ))));
        };
        let addr = current.connection.remote.map(|a| a.ip());
        match self
            .services
            .auth
            .login(&user.ome_name, Password::new(password), addr)
            .await
        {
            Ok(_) => {
                self.factory.set_has_password();
                Ok(())
            }
            Err(AuthError::Internal(m)) => Err(to_dispatch(SessionError::Internal(m))),
            Err(e @ AuthError::Busy) => Err(to_dispatch(SessionError::Internal(e.to_string()))),
            Err(_) => Err(to_dispatch(SessionError::SecurityViolation(format!(
                "Bad password for {}",
                user.ome_name
            )))),
        }
    }

    async fn get_admin_service(&self, current: &Current) -> Prx {
        self.stateless(ADMIN_SERVICE, current)
    }

    async fn get_config_service(&self, current: &Current) -> Prx {
        self.stateless(CONFIG_SERVICE, current)
    }

    async fn get_container_service(&self, current: &Current) -> Prx {
        self.guarded("omero.api.IContainer", current)
    }

    async fn get_ldap_service(&self, current: &Current) -> Prx {
        self.guarded("omero.api.ILdap", current)
    }

    async fn get_pixels_service(&self, current: &Current) -> Prx {
        self.guarded("omero.api.IPixels", current)
    }

    async fn get_projection_service(&self, current: &Current) -> Prx {
        self.guarded("omero.api.IProjection", current)
    }

    async fn get_query_service(&self, current: &Current) -> Prx {
        self.guarded("omero.api.IQuery", current)
    }

    async fn get_rendering_settings_service(&self, current: &Current) -> Prx {
        self.guarded("omero.api.IRenderingSettings", current)
    }

    async fn get_repository_info_service(&self, current: &Current) -> Prx {
        self.guarded("omero.api.IRepositoryInfo", current)
    }

    async fn get_roi_service(&self, current: &Current) -> Prx {
        self.guarded("omero.api.IRoi", current)
    }

    async fn get_script_service(&self, current: &Current) -> Prx {
        self.guarded("omero.api.IScript", current)
    }

    async fn get_session_service(&self, current: &Current) -> Prx {
        self.stateless(SESSION_SERVICE, current)
    }

    async fn get_share_service(&self, current: &Current) -> Prx {
        self.guarded("omero.api.IShare", current)
    }

    async fn get_timeline_service(&self, current: &Current) -> Prx {
        self.guarded("omero.api.ITimeline", current)
    }

    async fn get_types_service(&self, current: &Current) -> Prx {
        self.guarded("omero.api.ITypes", current)
    }

    async fn get_update_service(&self, current: &Current) -> Prx {
        self.guarded("omero.api.IUpdate", current)
    }

    async fn get_metadata_service(&self, current: &Current) -> Prx {
        self.guarded("omero.api.IMetadata", current)
    }

    async fn create_exporter(&self, current: &Current) -> Prx {
        self.guarded_stateful("omero.api.Exporter", current)
    }

    async fn create_job_handle(&self, current: &Current) -> Prx {
        self.guarded_stateful("omero.api.JobHandle", current)
    }

    async fn create_raw_file_store(&self, current: &Current) -> Prx {
        self.guarded_stateful("omero.api.RawFileStore", current)
    }

    async fn create_raw_pixels_store(&self, current: &Current) -> Prx {
        self.guarded_stateful("omero.api.RawPixelsStore", current)
    }

    async fn create_rendering_engine(&self, current: &Current) -> Prx {
        self.guarded_stateful("omero.api.RenderingEngine", current)
    }

    async fn create_search_service(&self, current: &Current) -> Prx {
        self.guarded_stateful("omero.api.Search", current)
    }

    async fn create_thumbnail_store(&self, current: &Current) -> Prx {
        self.guarded_stateful("omero.api.ThumbnailStore", current)
    }

    async fn shared_resources(&self, current: &Current) -> Prx {
        self.guarded("omero.grid.SharedResources", current)
    }

    async fn get_by_name(&self, name: String, current: &Current) -> Prx {
        match name.as_str() {
            ADMIN_SERVICE | SESSION_SERVICE | CONFIG_SERVICE => self.stateless(&name, current),
            _ => self.guarded(&name, current),
        }
    }

    async fn create_by_name(&self, name: String, current: &Current) -> Prx {
        self.guarded_stateful(&name, current)
    }

    async fn subscribe(
        &self,
        topic_name: String,
        _prx: Option<Proxy>,
        _c: &Current,
    ) -> Outcome<()> {
        self.touch()?;
        if !topic_name.starts_with("/public/") {
            return Err(to_dispatch(SessionError::ApiUsage(
                "Currently only \"/public/\" topics allowed.".to_string(),
            )));
        }
        // OMERO publishes only /public/HeartBeat (every 3 min, nothing reacts to it); this
        // server publishes nothing, so a subscription has no effect.
        Ok(())
    }

    async fn set_callback(&self, _callback: Option<Proxy>, _current: &Current) -> Outcome<()> {
        // OMERO itself ignores the callback since ticket 2558.
        Ok(())
    }

    async fn close_on_destroy(&self, _current: &Current) -> Outcome<()> {
        self.factory.set_mode(DestroyMode::Close);
        Ok(())
    }

    async fn detach_on_destroy(&self, _current: &Current) -> Outcome<()> {
        self.factory.set_mode(DestroyMode::Detach);
        Ok(())
    }

    async fn active_services(&self, _current: &Current) -> Outcome<Vec<String>> {
        Ok(self
            .services
            .registry
            .service_names(&self.factory.session_uuid))
    }

    async fn keep_all_alive(
        &self,
        proxies: Vec<Option<Proxy>>,
        _current: &Current,
    ) -> Outcome<i64> {
        self.touch()?;
        if proxies.is_empty() {
            return Ok(-1);
        }
        let mut missing = 0i64;
        for (i, proxy) in proxies.iter().enumerate().take(64) {
            if let Some(p) = proxy {
                if !self.registered(p) {
                    missing |= 1i64 << i;
                }
            }
        }
        Ok(missing)
    }

    async fn keep_alive(&self, proxy: Option<Proxy>, _current: &Current) -> Outcome<bool> {
        self.touch()?;
        Ok(proxy.as_ref().is_some_and(|p| self.registered(p)))
    }
}
