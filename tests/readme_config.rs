//! The README's example configuration, with every commented-out key switched on, is a file
//! the server accepts: each section parses into the type of the layer that reads it, and
//! the values it shows are the ones the server uses.

use std::path::Path;
use std::time::Duration;

use omero_sessiond::auth::AuthConfig;
use omero_sessiond::config::{section, ConnectionConfig, FileConfig};
use omero_sessiond::http::HttpConfig;
use omero_sessiond::router::RouterConfig;
use omero_sessiond::sessions::SessionConfig;

/// The first ```toml block of the README, with `# key = value` lines uncommented.
fn readme_example() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md is readable");
    let block = readme
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README.md has a ```toml example");
    block
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if rest.contains(" = ") => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_readme_example_is_a_valid_config_file() {
    let text = readme_example();
    let file: FileConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(
        file.database.is_some(),
        "the commented database key is read"
    );
    assert!(file.metrics.is_some());
    assert!(file.tls.cert.is_some() && file.tls.key.is_some());

    let sessions: SessionConfig = section("sessions", &file.sessions).unwrap();
    let auth: AuthConfig = section("auth", &file.auth).unwrap();
    let router: RouterConfig = section("router", &file.router).unwrap();
    let http: HttpConfig = section("http_limits", &file.http_limits).unwrap();
    let connection: ConnectionConfig = file.connection;

    // The example shows the defaults (except where a comment says otherwise), so a default
    // changed in the code without the README is caught here.
    let d = SessionConfig::default();
    assert_eq!(sessions.default_time_to_idle, d.default_time_to_idle);
    assert_eq!(sessions.max_env_bytes, d.max_env_bytes);
    assert_eq!(sessions.reaper_interval, d.reaper_interval);
    assert_eq!(sessions.max_keep_alive_ms, d.max_keep_alive_ms);
    let d = RouterConfig::default();
    assert_eq!(router.session_timeout, d.session_timeout);
    assert_eq!(router.instance_name, d.instance_name);
    assert_eq!(router.acm_timeout_s, d.acm_timeout_s);
    assert_eq!(auth.checker().queue, AuthConfig::default().checker().queue);
    assert_eq!(
        auth.checker().max_wait,
        AuthConfig::default().checker().max_wait
    );
    let d = ConnectionConfig::default();
    assert_eq!(connection.heartbeat, Some(Duration::from_secs(15)));
    assert_eq!(connection.max_connections, d.max_connections);
    assert_eq!(connection.login_timeout, d.login_timeout);
    assert_eq!(connection.max_dispatches, d.max_dispatches);
    assert_eq!(connection.max_message_size, d.max_message_size);
    let d = HttpConfig::default();
    assert_eq!(http.body_limit, d.body_limit);
}
