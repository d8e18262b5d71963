//! Server configuration: a TOML file, overridden by the command line.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use thiserror::Error;

pub use crate::runtime::config::{
    ConnectionConfig, ServerConfig, TlsSource, DEFAULT_LOGIN_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
};

pub const DEFAULT_TCP: &str = "0.0.0.0:4063";
pub const DEFAULT_SSL: &str = "0.0.0.0:4064";
pub const DEFAULT_DATA_DIR: &str = "./omero-sessiond-data";

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid [{section}] section of the config file: {source}")]
    Section {
        section: String,
        source: toml::de::Error,
    },
}

/// A section of the file as the settings type of the layer that owns it (which keeps its
/// defaults and refuses keys it does not know); an absent section is an empty one.
pub fn section<T: DeserializeOwned>(name: &str, table: &toml::Table) -> Result<T, ConfigError> {
    T::deserialize(toml::Value::Table(table.clone())).map_err(|source| ConfigError::Section {
        section: name.to_string(),
        source,
    })
}

/// The config file as written; every key is optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data: Option<PathBuf>,
    /// Where users, groups and sessions live: unset for the embedded database in the data
    /// directory, `postgres://USER@HOST:PORT/DB` for PostgreSQL shared by several nodes.
    pub database: Option<String>,
    /// host:port, or "" / "off" to disable the listener.
    pub tcp: Option<String>,
    pub ssl: Option<String>,
    /// Ice over WebSocket (OMERO uses 4065), host:port; off unless given.
    pub ws: Option<String>,
    /// Ice over secure WebSocket (OMERO uses 4066), with the ssl certificate; off unless given.
    pub wss: Option<String>,
    /// The HTTPS session endpoint, host:port, or "off".
    pub https: Option<String>,
    /// The same endpoint over plain HTTP (loopback behind a TLS-terminating proxy); off
    /// unless given.
    pub http: Option<String>,
    /// Prometheus text endpoint (`GET /metrics`), host:port; off unless given.
    pub metrics: Option<String>,
    pub json_logs: Option<bool>,
    #[serde(default)]
    pub tls: TlsFileConfig,
    /// The runtime's connection settings, as the runtime reads them.
    #[serde(default)]
    pub connection: ConnectionConfig,
    /// Sections that layers above read into their own settings types with [`section`]
    /// (`main.rs` does): Glacier2 router settings (`session_timeout_s`, ...),
    #[serde(default)]
    pub router: toml::Table,
    /// session defaults (`time_to_idle_ms`, `reaper_interval_ms`, ...),
    #[serde(default)]
    pub sessions: toml::Table,
    /// login settings (`max_concurrent_password_checks`, ...).
    #[serde(default)]
    pub auth: toml::Table,
    /// and the limits of the HTTPS/HTTP session endpoint.
    #[serde(default)]
    pub http_limits: toml::Table,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFileConfig {
    /// PEM certificate chain; without it a self-signed certificate is generated in the data
    /// directory at first start.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// "" and "off" disable a listener.
pub fn listener_address(value: &str) -> Option<String> {
    let v = value.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("off") {
        None
    } else {
        Some(v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn file_config_parses_and_maps() {
        let f: FileConfig = toml::from_str(
            r#"
            tcp = "127.0.0.1:1"
            ssl = "off"
            ws = "127.0.0.1:4065"
            [tls]
            cert = "/c.pem"
            key = "/k.pem"
            [connection]
            max_message_size_kib = 0
            heartbeat_secs = 0
            idle_timeout_secs = 60
            "#,
        )
        .unwrap();
        assert_eq!(listener_address(f.ssl.as_deref().unwrap()), None);
        assert_eq!(f.ws.as_deref(), Some("127.0.0.1:4065"));
        assert_eq!(f.wss, None);
        let c = &f.connection;
        assert_eq!(c.max_message_size, i32::MAX as usize);
        assert_eq!(c.heartbeat, None);
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(60)));
        assert_eq!(c.max_connections, Some(DEFAULT_MAX_CONNECTIONS));
        assert_eq!(c.login_timeout, Some(DEFAULT_LOGIN_TIMEOUT));
        let f: FileConfig = toml::from_str(
            r#"
            [connection]
            max_connections = 0
            max_connections_per_address = 3
            login_timeout_secs = 0
            "#,
        )
        .unwrap();
        let c = &f.connection;
        assert_eq!(c.max_connections, None);
        assert_eq!(c.max_connections_per_address, Some(3));
        assert_eq!(c.login_timeout, None);
        assert!(toml::from_str::<FileConfig>("bogus = 1").is_err());
    }

    #[test]
    fn sections_of_upper_layers_deserialize_into_their_own_types() {
        #[derive(Debug, Default, Deserialize, PartialEq)]
        #[serde(default, deny_unknown_fields)]
        struct Router {
            session_timeout_s: u64,
        }
        let f: FileConfig = toml::from_str("[router]\nsession_timeout_s = 30\n").unwrap();
        let r: Router = section("router", &f.router).unwrap();
        assert_eq!(r.session_timeout_s, 30);
        let r: Router = section("router", &FileConfig::default().router).unwrap();
        assert_eq!(r, Router::default());
        let f: FileConfig = toml::from_str("[router]\nbogus = 1\n").unwrap();
        let e = section::<Router>("router", &f.router).unwrap_err();
        assert!(e.to_string().contains("[router]"), "{e}");
        assert!(e.to_string().contains("bogus"), "{e}");
        assert!(toml::from_str::<FileConfig>("router = 1").is_err());
    }
}
