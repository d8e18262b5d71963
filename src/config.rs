//! Server configuration: a TOML file, overridden by the command line.

use std::path::{Path, PathBuf};

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
}

/// The config file as written; every key is optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data: Option<PathBuf>,
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
    pub json_logs: Option<bool>,
    #[serde(default)]
    pub tls: TlsFileConfig,
    /// The runtime's connection settings, as the runtime reads them.
    #[serde(default)]
    pub connection: ConnectionConfig,
    /// Glacier2 router settings (`session_timeout_s`, ...).
    #[serde(default)]
    pub router: crate::router::RouterFileConfig,
    /// Session defaults (`time_to_idle_ms`, `reaper_interval_ms`, ...).
    #[serde(default)]
    pub sessions: crate::services::SessionsFileConfig,
    /// Login settings (`max_concurrent_password_checks`, ...).
    #[serde(default)]
    pub auth: crate::auth::AuthFileConfig,
    /// Limits of the HTTPS/HTTP session endpoint.
    #[serde(default)]
    pub http_limits: HttpLimitsFileConfig,
}

/// `[http_limits]`: what the session endpoint accepts; every key optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpLimitsFileConfig {
    /// Largest request body in bytes; larger ones get 413.
    pub max_body_bytes: Option<usize>,
    /// Seconds a client has to send a request's headers (at least 1).
    pub header_read_timeout_secs: Option<u64>,
    /// Seconds a client has to send a request's body (at least 1); slower ones get 408.
    pub body_read_timeout_secs: Option<u64>,
    /// Connections served at once per listener; further ones wait in the accept queue.
    pub max_connections: Option<usize>,
    /// Connections from one client address (IPv6: one /64) at once; more are closed at
    /// once. 0 = no cap.
    pub max_connections_per_address: Option<usize>,
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
    fn auth_section_maps_to_checker_and_throttle_settings() {
        let f: FileConfig = toml::from_str(
            r#"
            [auth]
            max_concurrent_password_checks = 3
            password_check_queue = 0
            password_check_max_wait_ms = 250
            free_failures_per_addr = 1000
            "#,
        )
        .unwrap();
        let checker = f.auth.checker_config();
        assert_eq!(checker.workers, 3);
        assert_eq!(checker.queue, 0);
        assert_eq!(checker.max_wait, Duration::from_millis(250));
        let throttle = f.auth.throttle_config();
        assert_eq!(throttle.free_failures_per_addr, 1000);
        assert_eq!(throttle.free_failures_per_user, 5);
        let defaults = FileConfig::default().auth.checker_config();
        assert!(defaults.workers >= 1);
        assert!(toml::from_str::<FileConfig>("[auth]\nbogus = 1").is_err());
    }
}
