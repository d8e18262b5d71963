//! Server configuration: a TOML file, overridden by the command line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

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
    pub json_logs: Option<bool>,
    #[serde(default)]
    pub tls: TlsFileConfig,
    #[serde(default)]
    pub connection: ConnectionFileConfig,
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

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionFileConfig {
    /// Like `Ice.MessageSizeMax`, in KiB; 0 = no limit (2 GiB).
    pub max_message_size_kib: Option<u64>,
    /// Seconds without any write after which a ValidateConnection heartbeat is sent; 0 = off.
    pub heartbeat_secs: Option<u64>,
    /// Seconds without any inbound message after which a connection is dropped; 0 = never.
    pub idle_timeout_secs: Option<u64>,
    /// Seconds allowed to finish a message whose first bytes have arrived.
    pub message_timeout_secs: Option<u64>,
    pub tls_handshake_timeout_secs: Option<u64>,
    /// Seconds to wait for the peer's EOF after our CloseConnection, and bound on a write.
    pub close_timeout_secs: Option<u64>,
    /// Requests of one connection dispatched at the same time; more wait (backpressure).
    pub max_dispatches: Option<usize>,
    /// bzip2 level for compressed replies, 1..9.
    pub compression_level: Option<u32>,
    /// Open Ice connections (tcp and ssl together) at most; more are refused. 0 = no cap.
    pub max_connections: Option<usize>,
    /// Open Ice connections per client address (IPv6: per /64) at most. 0 = no cap.
    pub max_connections_per_address: Option<usize>,
    /// Seconds a connection has to log in (Glacier2 createSession) before it is closed;
    /// 0 = no deadline.
    pub login_timeout_secs: Option<u64>,
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

/// How every connection behaves.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    pub max_message_size: usize,
    pub heartbeat: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub message_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub close_timeout: Duration,
    pub max_dispatches: usize,
    pub compression_level: u32,
    /// Caps on open connections; `None` = no cap.
    pub max_connections: Option<usize>,
    pub max_connections_per_address: Option<usize>,
    /// A connection not logged in this long after it opened is closed; `None` = never.
    pub login_timeout: Option<Duration>,
}

/// Defaults generous enough for a web front end with many users behind one address.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 1024;
pub const DEFAULT_LOGIN_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            max_message_size: crate::protocol::DEFAULT_MAX_MESSAGE_SIZE,
            heartbeat: Some(Duration::from_secs(15)),
            idle_timeout: None,
            message_timeout: Duration::from_secs(30),
            tls_handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(10),
            max_dispatches: 100,
            compression_level: 1,
            max_connections: Some(DEFAULT_MAX_CONNECTIONS),
            max_connections_per_address: Some(DEFAULT_MAX_CONNECTIONS_PER_ADDRESS),
            login_timeout: Some(DEFAULT_LOGIN_TIMEOUT),
        }
    }
}

impl ConnectionConfig {
    pub fn from_file(f: &ConnectionFileConfig) -> Self {
        let d = ConnectionConfig::default();
        let secs = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_secs);
        let optional = |v: Option<u64>, default: Option<Duration>| match v {
            None => default,
            Some(0) => None,
            Some(s) => Some(Duration::from_secs(s)),
        };
        let cap = |v: Option<usize>, default: Option<usize>| match v {
            None => default,
            Some(0) => None,
            Some(n) => Some(n),
        };
        ConnectionConfig {
            max_message_size: match f.max_message_size_kib {
                None => d.max_message_size,
                Some(0) => i32::MAX as usize,
                Some(k) => usize::try_from(k.saturating_mul(1024))
                    .unwrap_or(i32::MAX as usize)
                    .min(i32::MAX as usize),
            },
            heartbeat: optional(f.heartbeat_secs, d.heartbeat),
            idle_timeout: optional(f.idle_timeout_secs, d.idle_timeout),
            message_timeout: secs(f.message_timeout_secs, d.message_timeout),
            tls_handshake_timeout: secs(f.tls_handshake_timeout_secs, d.tls_handshake_timeout),
            close_timeout: secs(f.close_timeout_secs, d.close_timeout),
            max_dispatches: f.max_dispatches.unwrap_or(d.max_dispatches).max(1),
            compression_level: f.compression_level.unwrap_or(1).clamp(1, 9),
            max_connections: cap(f.max_connections, d.max_connections),
            max_connections_per_address: cap(
                f.max_connections_per_address,
                d.max_connections_per_address,
            ),
            login_timeout: optional(f.login_timeout_secs, d.login_timeout),
        }
    }
}

/// Where the TLS certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// PEM files given by the operator.
    Files { cert: PathBuf, key: PathBuf },
    /// `cert.pem`/`key.pem` in this directory, generated (self-signed) when missing.
    SelfSigned { dir: PathBuf },
}

/// Everything [`crate::runtime::Server::bind`] needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// host:port; `None` = no such listener.
    pub tcp: Option<String>,
    pub ssl: Option<String>,
    pub ws: Option<String>,
    pub wss: Option<String>,
    pub tls: TlsSource,
    pub connection: ConnectionConfig,
}

impl ServerConfig {
    /// A server on 127.0.0.1 with ephemeral ports, for tests.
    pub fn local(data_dir: &Path) -> Self {
        ServerConfig {
            tcp: Some("127.0.0.1:0".into()),
            ssl: Some("127.0.0.1:0".into()),
            ws: None,
            wss: None,
            tls: TlsSource::SelfSigned {
                dir: data_dir.to_path_buf(),
            },
            connection: ConnectionConfig::default(),
        }
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
        let c = ConnectionConfig::from_file(&f.connection);
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
        let c = ConnectionConfig::from_file(&f.connection);
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
