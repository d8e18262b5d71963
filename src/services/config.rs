//! IConfig: the server's configuration under OMERO's key names, so that tools reading
//! `omero.sessions.timeout`, `omero.router.insecure` or the `omero.client.*` keys find them.
//! Values set by an admin live as long as the process.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::facade::{Current, DispatchError, HashMap, ValueRef};
use crate::generated::omero::api::IConfig;
use crate::sessions::{SessionConfig, SessionError};

use super::context::{Factory, Services};
use super::errors::{to_dispatch, Outcome};
use super::guard::{caller, require_role};
use super::model;

/// The OMERO version this server answers: omero-py compares it numerically
/// (`omero.install.versions`, `omero.util.cleanse` split it on dots), so plain digits only.
pub const OMERO_VERSION: &str = "5.6.0";

/// Prefix of the keys clients may read as "client configuration".
const CLIENT_PREFIX: &str = "omero.client.";

/// Keys longer than this are refused rather than stored.
const MAX_KEY_LEN: usize = 1024;
const MAX_VALUE_LEN: usize = 64 * 1024;
const MAX_REGEX_LEN: usize = 1024;

/// The configuration IConfig serves: defaults fixed at start, values an admin changed on top.
#[derive(Debug, Default)]
pub struct ConfigValues {
    defaults: RwLock<BTreeMap<String, String>>,
    current: RwLock<BTreeMap<String, String>>,
    database_uuid: String,
}

impl ConfigValues {
    /// The defaults that follow from the session settings; the router's keys are added once
    /// the listeners are bound ([`ConfigValues::set_router_ports`]).
    pub fn new(sessions: &SessionConfig, database_uuid: &str) -> Self {
        let mut defaults = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            defaults.insert(k.to_string(), v);
        };
        put("omero.version", OMERO_VERSION.to_string());
        put(
            "omero.sessions.timeout",
            sessions.default_time_to_idle.to_string(),
        );
        put(
            "omero.sessions.maximum",
            sessions.default_time_to_live.to_string(),
        );
        put(
            "omero.sessions.max_user_time_to_idle",
            sessions.max_user_time_to_idle.to_string(),
        );
        put(
            "omero.sessions.max_user_time_to_live",
            sessions.max_user_time_to_live.to_string(),
        );
        put("omero.security.password_required", "true".to_string());
        put("omero.security.ignore_case", "false".to_string());
        put("omero.db.uuid", database_uuid.to_string());
        put("omero.client.ui.menu.dropdown.everyone", "true".to_string());
        put("omero.client.ui.menu.dropdown.leaders", "true".to_string());
        put(
            "omero.client.ui.menu.dropdown.colleagues",
            "true".to_string(),
        );
        put("omero.client.ui.tree.type_order", "false".to_string());
        put("omero.client.viewer.roi_limit", "2000".to_string());
        put("omero.client.viewer.initial_zoom_level", "0".to_string());
        put("omero.client.viewer.interpolate_pixels", "true".to_string());
        put("omero.client.download_as.max_size", "144000000".to_string());
        put("omero.pixeldata.max_plane_width", "3192".to_string());
        put("omero.pixeldata.max_plane_height", "3192".to_string());
        ConfigValues {
            defaults: RwLock::new(defaults),
            current: RwLock::new(BTreeMap::new()),
            database_uuid: database_uuid.to_string(),
        }
    }

    /// Adds the router keys in OMERO's form: `@omero.host@` stands for the host the client
    /// connected to, which omero-py substitutes itself (`client.createClient(secure=False)`).
    pub fn set_router_ports(&self, tcp: Option<u16>, ssl: Option<u16>) {
        let mut defaults = self.defaults.write().unwrap_or_else(|e| e.into_inner());
        if let Some(port) = tcp {
            defaults.insert(
                "omero.router.insecure".to_string(),
                format!("OMERO.Glacier2/router:tcp -p {port} -h @omero.host@"),
            );
            defaults.insert("omero.ports.tcp".to_string(), port.to_string());
        }
        if let Some(port) = ssl {
            defaults.insert("omero.ports.ssl".to_string(), port.to_string());
        }
    }

    pub fn database_uuid(&self) -> &str {
        &self.database_uuid
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, String>> {
        // Each write is one insert, so a poisoned map is still consistent.
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Defaults overlaid with what an admin set.
    pub fn values(&self) -> BTreeMap<String, String> {
        let mut all = self.defaults();
        all.extend(self.read().iter().map(|(k, v)| (k.clone(), v.clone())));
        all
    }

    pub fn get(&self, key: &str) -> Option<String> {
        let set = self.read().get(key).cloned();
        set.or_else(|| self.defaults().get(key).cloned())
    }

    pub fn defaults(&self) -> BTreeMap<String, String> {
        self.defaults
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sets `key`; with `test`, only when the current value equals it (empty = unset).
    pub fn set(&self, key: &str, value: &str, test: Option<&str>) -> Result<bool, SessionError> {
        check_key(key)?;
        if value.len() > MAX_VALUE_LEN {
            return Err(SessionError::ApiUsage(format!(
                "value of {key} longer than {MAX_VALUE_LEN} bytes"
            )));
        }
        let defaults = self.defaults();
        let mut map = self.current.write().unwrap_or_else(|e| e.into_inner());
        if let Some(test) = test {
            let now = map.get(key).or_else(|| defaults.get(key));
            if now.map_or("", String::as_str) != test {
                return Ok(false);
            }
        }
        map.insert(key.to_string(), value.to_string());
        Ok(true)
    }
}

fn check_key(key: &str) -> Result<(), SessionError> {
    let ok = !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(SessionError::ApiUsage(format!("Illegal key: {key:?}")))
    }
}

fn only_client(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter()
        .filter(|(k, _)| k.starts_with(CLIENT_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The IConfig servant of one client.
pub struct ConfigService {
    services: Services,
    factory: Arc<Factory>,
}

impl ConfigService {
    pub fn new(services: Services, factory: Arc<Factory>) -> Self {
        ConfigService { services, factory }
    }

    fn values(&self) -> &ConfigValues {
        &self.services.config
    }

    fn set(&self, key: &str, value: &str, test: Option<&str>) -> Outcome<bool> {
        let who = caller(&self.services, &self.factory)?;
        require_role(&who, &["system"])?;
        let changed = self.values().set(key, value, test).map_err(to_dispatch)?;
        if changed {
            tracing::info!(key, by = who.info.owner_id, "configuration value set");
        }
        Ok(changed)
    }
}

type Map = Outcome<HashMap<String, String>>;

impl IConfig for ConfigService {
    async fn get_version(&self, _c: &Current) -> Outcome<String> {
        Ok(OMERO_VERSION.to_string())
    }

    async fn get_config_value(&self, key: String, _c: &Current) -> Outcome<String> {
        caller(&self.services, &self.factory)?;
        Ok(self.values().get(&key).unwrap_or_default())
    }

    async fn get_config_values(&self, key_regex: String, _c: &Current) -> Map {
        caller(&self.services, &self.factory)?;
        if key_regex.len() > MAX_REGEX_LEN {
            return Err(api_usage(format!(
                "regular expression longer than {MAX_REGEX_LEN} bytes"
            )));
        }
        let re = regex::Regex::new(&key_regex)
            .map_err(|e| api_usage(format!("Bad regular expression {key_regex:?}: {e}")))?;
        Ok(self
            .values()
            .values()
            .into_iter()
            .filter(|(k, _)| re.is_match(k))
            .collect())
    }

    async fn get_config_defaults(&self, _c: &Current) -> Map {
        let who = caller(&self.services, &self.factory)?;
        require_role(&who, &["system"])?;
        Ok(self
            .values()
            .defaults()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn get_client_config_values(&self, _c: &Current) -> Map {
        caller(&self.services, &self.factory)?;
        Ok(only_client(&self.values().values()))
    }

    async fn get_client_config_defaults(&self, _c: &Current) -> Map {
        caller(&self.services, &self.factory)?;
        Ok(only_client(&self.values().defaults()))
    }

    async fn set_config_value(&self, key: String, value: String, _c: &Current) -> Outcome<()> {
        self.set(&key, &value, None).map(|_| ())
    }

    async fn set_config_value_if_equals(
        &self,
        key: String,
        value: String,
        test: String,
        _c: &Current,
    ) -> Outcome<bool> {
        self.set(&key, &value, Some(&test))
    }

    async fn get_database_uuid(&self, _c: &Current) -> Outcome<String> {
        caller(&self.services, &self.factory)?;
        Ok(self.values().database_uuid().to_string())
    }

    async fn get_database_time(&self, _c: &Current) -> Outcome<Option<ValueRef>> {
        caller(&self.services, &self.factory)?;
        Ok(model::rtime(self.services.sessions.now_ms()))
    }

    async fn get_server_time(&self, _c: &Current) -> Outcome<Option<ValueRef>> {
        caller(&self.services, &self.factory)?;
        Ok(model::rtime(self.services.sessions.now_ms()))
    }
}

fn api_usage(message: String) -> DispatchError {
    to_dispatch(SessionError::ApiUsage(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> ConfigValues {
        let v = ConfigValues::new(&SessionConfig::default(), "db-uuid");
        v.set_router_ports(Some(4063), None);
        v
    }

    #[test]
    fn router_key_has_omero_form() {
        assert_eq!(
            values().get("omero.router.insecure").as_deref(),
            Some("OMERO.Glacier2/router:tcp -p 4063 -h @omero.host@")
        );
        let no_tcp = ConfigValues::new(&SessionConfig::default(), "x");
        no_tcp.set_router_ports(None, Some(4064));
        assert_eq!(no_tcp.get("omero.router.insecure"), None);
        assert_eq!(no_tcp.get("omero.ports.ssl").as_deref(), Some("4064"));
    }

    #[test]
    fn session_keys_follow_the_session_settings() {
        let c = SessionConfig::default();
        let v = values();
        assert_eq!(
            v.get("omero.sessions.timeout"),
            Some(c.default_time_to_idle.to_string())
        );
        assert_eq!(
            v.get("omero.sessions.maximum"),
            Some(c.default_time_to_live.to_string())
        );
    }

    #[test]
    fn set_overlays_defaults_and_tests_current_value() {
        let v = values();
        assert!(v.set("omero.client.x", "1", None).unwrap());
        assert_eq!(v.get("omero.client.x").as_deref(), Some("1"));
        assert!(!v.set("omero.client.x", "2", Some("0")).unwrap());
        assert!(v.set("omero.client.x", "2", Some("1")).unwrap());
        assert!(v.set("omero.new", "a", Some("")).unwrap());
        assert_eq!(v.defaults().get("omero.client.x"), None);
        assert_eq!(
            v.values().get("omero.client.x").map(String::as_str),
            Some("2")
        );
        assert!(only_client(&v.values()).contains_key("omero.client.x"));
        assert!(!only_client(&v.values()).contains_key("omero.new"));
    }

    #[test]
    fn bad_keys_are_refused() {
        let v = values();
        for key in ["", "a b", "x\n", &"k".repeat(MAX_KEY_LEN + 1)] {
            assert!(matches!(
                v.set(key, "v", None),
                Err(SessionError::ApiUsage(_))
            ));
        }
    }

    #[test]
    fn version_is_numeric() {
        assert!(OMERO_VERSION.split('.').all(|p| p.parse::<u32>().is_ok()));
    }
}
