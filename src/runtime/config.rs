//! The runtime's own settings. `main.rs` hands them over; the `[connection]` section of the
//! config file deserializes straight into [`ConnectionConfig`], whose `Default` is the one
//! place the defaults are written (keys left out keep them).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Defaults generous enough for a web front end with many users behind one address.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 1024;
pub const DEFAULT_LOGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// How every connection behaves. In the file, sizes are in KiB and times in seconds (the
/// key names say which), and 0 turns an optional limit off.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionConfig {
    /// Like `Ice.MessageSizeMax`; `max_message_size_kib`, 0 = no limit (2 GiB).
    #[serde(rename = "max_message_size_kib", deserialize_with = "de::kib")]
    pub max_message_size: usize,
    /// A ValidateConnection heartbeat after this long without any write.
    #[serde(rename = "heartbeat_secs", deserialize_with = "de::secs_or_off")]
    pub heartbeat: Option<Duration>,
    /// A connection without any inbound message this long is dropped.
    #[serde(rename = "idle_timeout_secs", deserialize_with = "de::secs_or_off")]
    pub idle_timeout: Option<Duration>,
    /// Time allowed to finish a message whose first bytes have arrived.
    #[serde(rename = "message_timeout_secs", deserialize_with = "de::secs")]
    pub message_timeout: Duration,
    #[serde(rename = "tls_handshake_timeout_secs", deserialize_with = "de::secs")]
    pub tls_handshake_timeout: Duration,
    /// Wait for the peer's EOF after our CloseConnection, and bound on a write.
    #[serde(rename = "close_timeout_secs", deserialize_with = "de::secs")]
    pub close_timeout: Duration,
    /// Requests of one connection dispatched at the same time; more wait (backpressure).
    #[serde(deserialize_with = "de::at_least_one")]
    pub max_dispatches: usize,
    /// bzip2 level for compressed replies, 1..9.
    #[serde(deserialize_with = "de::compression_level")]
    pub compression_level: u32,
    /// Caps on open connections (tcp and ssl together, and per client address, IPv6 per
    /// /64); `None` = no cap.
    #[serde(deserialize_with = "de::cap_or_off")]
    pub max_connections: Option<usize>,
    #[serde(deserialize_with = "de::cap_or_off")]
    pub max_connections_per_address: Option<usize>,
    /// A connection not logged in this long after it opened is closed; `None` = never.
    #[serde(rename = "login_timeout_secs", deserialize_with = "de::secs_or_off")]
    pub login_timeout: Option<Duration>,
}

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

/// The file's units and "0 = off" turned into typed settings; out-of-range values are
/// brought into range rather than refused. Shared with the layers above, whose sections
/// follow the same conventions.
pub mod de {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    /// The largest message Ice can frame (its size field is an `i32`).
    const MAX_FRAME: usize = i32::MAX as usize;

    pub fn kib<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
        Ok(match u64::deserialize(d)? {
            0 => MAX_FRAME,
            k => usize::try_from(k.saturating_mul(1024))
                .unwrap_or(MAX_FRAME)
                .min(MAX_FRAME),
        })
    }

    pub fn secs<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }

    /// Seconds, at least one (a zero deadline would refuse everything).
    pub fn secs_at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(|s| Duration::from_secs(s.max(1)))
    }

    pub fn secs_or_off<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(match u64::deserialize(d)? {
            0 => None,
            s => Some(Duration::from_secs(s)),
        })
    }

    pub fn cap_or_off<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
        Ok(match usize::deserialize(d)? {
            0 => None,
            n => Some(n),
        })
    }

    pub fn at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
        usize::deserialize(d).map(|n| n.max(1))
    }

    pub fn compression_level<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        u32::deserialize(d).map(|n| n.clamp(1, 9))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ConnectionConfig {
        match toml::from_str(text) {
            Ok(c) => c,
            Err(e) => panic!("{text:?}: {e}"),
        }
    }

    #[test]
    fn missing_keys_keep_the_defaults() {
        let c = parse("");
        let d = ConnectionConfig::default();
        assert_eq!(c.max_message_size, d.max_message_size);
        assert_eq!(c.heartbeat, d.heartbeat);
        assert_eq!(c.max_connections, Some(DEFAULT_MAX_CONNECTIONS));
        assert_eq!(c.login_timeout, Some(DEFAULT_LOGIN_TIMEOUT));
        assert_eq!(c.compression_level, 1);
    }

    #[test]
    fn units_and_zero_mean_what_the_file_says() {
        let c = parse(
            "max_message_size_kib = 0\nheartbeat_secs = 0\nidle_timeout_secs = 60\n\
             max_connections = 0\nmax_connections_per_address = 3\nlogin_timeout_secs = 0\n\
             max_dispatches = 0\ncompression_level = 12\nclose_timeout_secs = 2\n",
        );
        assert_eq!(c.max_message_size, i32::MAX as usize);
        assert_eq!(c.heartbeat, None);
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(60)));
        assert_eq!(c.max_connections, None);
        assert_eq!(c.max_connections_per_address, Some(3));
        assert_eq!(c.login_timeout, None);
        assert_eq!(c.max_dispatches, 1);
        assert_eq!(c.compression_level, 9);
        assert_eq!(c.close_timeout, Duration::from_secs(2));
        assert_eq!(parse("max_message_size_kib = 64").max_message_size, 65536);
    }

    #[test]
    fn unknown_and_mistyped_keys_are_refused() {
        assert!(toml::from_str::<ConnectionConfig>("bogus = 1").is_err());
        assert!(toml::from_str::<ConnectionConfig>("heartbeat_secs = \"x\"").is_err());
        assert!(toml::from_str::<ConnectionConfig>("heartbeat_secs = -1").is_err());
    }
}
