//! The `omero-sessiond` command: parses the command line and configuration, sets up logging
//! and runs the server.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use omero_sessiond::auth::cli::{self as auth_cli, AuthCommand};
use omero_sessiond::auth::{AuthConfig, Directory};
use omero_sessiond::config::{
    listener_address, section, FileConfig, ServerConfig, TlsSource, DEFAULT_DATA_DIR, DEFAULT_SSL,
    DEFAULT_TCP,
};
use omero_sessiond::http::{HttpConfig, HttpDeps, HttpService};
use omero_sessiond::router::RouterConfig;
use omero_sessiond::runtime::{ObjectAdapter, Server};
use omero_sessiond::services::setup::open_services_on;
use omero_sessiond::sessions::SessionConfig;
use omero_sessiond::store::DataDirLock;

#[derive(Parser)]
#[command(
    name = "omero-sessiond",
    version,
    about = "OMERO-compatible Glacier2 router and session service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Manage experimenters and groups in the data directory.
    #[command(flatten)]
    Auth(AuthCommand),
    /// List or close the sessions of the data directory.
    #[command(subcommand)]
    Sessions(omero_sessiond::sessions_cli::SessionsCommand),
}

#[derive(Args)]
struct ServeArgs {
    /// TOML configuration file; options given here win over it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (default ./omero-sessiond-data).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Database for users, groups and sessions: postgres://USER@HOST:PORT/DB (default: the
    /// embedded database in the data directory).
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Plain Ice listener, host:port (default 0.0.0.0:4063); "off" disables it.
    #[arg(long, value_name = "ADDR")]
    tcp: Option<String>,
    /// Ice over TLS listener, host:port (default 0.0.0.0:4064); "off" disables it.
    #[arg(long, value_name = "ADDR")]
    ssl: Option<String>,
    /// Ice over WebSocket listener, host:port (OMERO's port is 4065); off unless given.
    #[arg(long, value_name = "ADDR")]
    ws: Option<String>,
    /// Ice over secure WebSocket listener, host:port (OMERO's port is 4066), with the ssl
    /// listener's certificate; off unless given.
    #[arg(long, value_name = "ADDR")]
    wss: Option<String>,
    /// HTTPS session endpoint (POST /omero/session/create), host:port (default
    /// 0.0.0.0:4080, with the ssl listener's certificate); "off" disables it.
    #[arg(long, value_name = "ADDR")]
    https: Option<String>,
    /// The same endpoint over plain HTTP, only for loopback behind a TLS-terminating proxy;
    /// off unless given.
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// Prometheus metrics (GET /metrics, plain HTTP), host:port; off unless given.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long)]
    json_logs: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Auth(cmd) => match auth_cli::run(cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("omero-sessiond: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Sessions(cmd) => match omero_sessiond::sessions_cli::run(cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("omero-sessiond: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let mut file = match args.config.as_deref().map(FileConfig::load).transpose() {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => {
            eprintln!("omero-sessiond: {e}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(args.json_logs || file.json_logs.unwrap_or(false));
    file.database = args.database.clone().or(file.database.take());
    let data = data_dir(&args, &file);
    // Held until the process exits: a second server on the same directory would overwrite
    // the session log and race this one's directory writes.
    let _data_lock = match DataDirLock::acquire(&data) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("omero-sessiond: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = match server_config(&args, &file, &data) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("omero-sessiond: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = announce_root_password(&data, file.database.as_deref()) {
        eprintln!("omero-sessiond: {e}");
        return ExitCode::FAILURE;
    }
    let endpoints = HttpEndpoints {
        https: listener_address(
            args.https
                .as_deref()
                .or(file.https.as_deref())
                .unwrap_or(DEFAULT_HTTPS),
        ),
        http: args
            .http
            .as_deref()
            .or(file.http.as_deref())
            .and_then(listener_address),
        metrics: args
            .metrics
            .as_deref()
            .or(file.metrics.as_deref())
            .and_then(listener_address),
    };
    match runtime.block_on(run(config, file, data, endpoints)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "omero-sessiond failed");
            eprintln!("omero-sessiond: {e}");
            ExitCode::FAILURE
        }
    }
}

fn data_dir(args: &ServeArgs, file: &FileConfig) -> PathBuf {
    args.data
        .clone()
        .or_else(|| file.data.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
}

/// Opens (or creates) the directory and, at the very first start, gives `root` a random
/// password and says where to find it: the newcomer's way in.
fn announce_root_password(data: &Path, database: Option<&str>) -> anyhow::Result<()> {
    let directory = Directory::open_database(data, database)?;
    if let Some(path) = directory.ensure_root_password()? {
        tracing::info!(path = %path.display(), "created the administrator root");
        println!(
            "omero-sessiond: first start: log in as root with the password in {}",
            path.display()
        );
    }
    Ok(())
}

fn server_config(args: &ServeArgs, file: &FileConfig, data: &Path) -> Result<ServerConfig, String> {
    let pick = |cli: &Option<String>, file: &Option<String>, default: &str| {
        listener_address(cli.as_deref().or(file.as_deref()).unwrap_or(default))
    };
    let tls = match (&file.tls.cert, &file.tls.key) {
        (Some(cert), Some(key)) => TlsSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        (None, None) => TlsSource::SelfSigned {
            dir: data.to_path_buf(),
        },
        _ => return Err("[tls] needs both cert and key, or neither".into()),
    };
    Ok(ServerConfig {
        tcp: pick(&args.tcp, &file.tcp, DEFAULT_TCP),
        ssl: pick(&args.ssl, &file.ssl, DEFAULT_SSL),
        ws: pick(&args.ws, &file.ws, "off"),
        wss: pick(&args.wss, &file.wss, "off"),
        tls,
        connection: file.connection.clone(),
    })
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr so that stdout carries only the startup lines scripts wait for.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Where the session endpoint listens; `None` = off.
struct HttpEndpoints {
    https: Option<String>,
    http: Option<String>,
    metrics: Option<String>,
}

const DEFAULT_HTTPS: &str = "0.0.0.0:4080";

async fn run(
    config: ServerConfig,
    file: FileConfig,
    data: PathBuf,
    endpoints: HttpEndpoints,
) -> anyhow::Result<()> {
    let database = file.database.clone();
    // Before any listener opens: a SIGTERM sent as soon as the server says it listens must
    // find the handler in place, or the process dies without closing its connections.
    let mut shutdown = Shutdown::install()?;
    let sessions_config: SessionConfig = section("sessions", &file.sessions)?;
    let auth_config: AuthConfig = section("auth", &file.auth)?;
    let router_config: RouterConfig = section("router", &file.router)?;
    let services = tokio::task::spawn_blocking(move || {
        open_services_on(&data, database.as_deref(), &sessions_config, &auth_config)
    })
    .await??;
    let live = services.sessions.load().await?;
    println!("omero-sessiond: {live} sessions restored");
    services.sessions.spawn_tasks();
    let adapter = ObjectAdapter::new();
    if let Some(addr) = endpoints.metrics.as_deref() {
        serve_metrics(addr, &services, &adapter).await?;
    }
    omero_sessiond::router::install(&adapter, router_config, services.clone());
    let http = HttpService::new(
        HttpDeps {
            sessions: services.sessions.clone(),
            auth: services.auth.clone(),
        },
        section::<HttpConfig>("http_limits", &file.http_limits)?,
    );
    let tls = omero_sessiond::runtime::tls::server_config(&config.tls)?;
    let server = Server::bind(config, adapter).await?;
    services.config.set_router_ports(
        server.tcp_addr().map(|a| a.port()),
        server.ssl_addr().map(|a| a.port()),
    );
    if let Some(a) = server.tcp_addr() {
        tracing::info!(
            "listening on tcp {a} (Ice endpoint: tcp -h {} -p {})",
            a.ip(),
            a.port()
        );
        println!("omero-sessiond: listening on tcp {a}");
    }
    if let Some(a) = server.ssl_addr() {
        tracing::info!(
            "listening on ssl {a} (Ice endpoint: ssl -h {} -p {})",
            a.ip(),
            a.port()
        );
        println!("omero-sessiond: listening on ssl {a}");
    }
    if let Some(a) = server.ws_addr() {
        tracing::info!(
            "listening on ws {a} (Ice endpoint: ws -h {} -p {})",
            a.ip(),
            a.port()
        );
        println!("omero-sessiond: listening on ws {a}");
    }
    if let Some(a) = server.wss_addr() {
        tracing::info!(
            "listening on wss {a} (Ice endpoint: wss -h {} -p {})",
            a.ip(),
            a.port()
        );
        println!("omero-sessiond: listening on wss {a}");
    }
    if let Some(addr) = endpoints.https.as_deref() {
        let listener = omero_sessiond::http::bind(addr).await?;
        let a = listener.local_addr()?;
        println!("omero-sessiond: listening on https {a}");
        let http = http.clone();
        tokio::spawn(async move {
            http.serve_https(listener, tls, std::future::pending())
                .await
        });
    }
    if let Some(addr) = endpoints.http.as_deref() {
        let listener = omero_sessiond::http::bind(addr).await?;
        let a = listener.local_addr()?;
        if !a.ip().is_loopback() {
            tracing::warn!("plain HTTP endpoint on {a}: passwords cross the network in clear");
        }
        println!("omero-sessiond: listening on http {a}");
        let http = http.clone();
        tokio::spawn(async move { http.serve_http(listener, std::future::pending()).await });
    }
    shutdown.wait().await;
    tracing::info!("shutting down");
    // Connections closed by the shutdown are not clients leaving: their sessions stay open.
    services.sessions.begin_shutdown();
    http.stop_keep_alives();
    server.shutdown(Duration::from_secs(10)).await;
    if let Err(e) = services.sessions.flush_accesses().await {
        tracing::warn!(error = %e, "last session access times not written");
    }
    Ok(())
}

/// Wires the metrics into the adapter and the session feed and serves them on `addr`.
async fn serve_metrics(
    addr: &str,
    services: &omero_sessiond::services::Services,
    adapter: &ObjectAdapter,
) -> anyhow::Result<()> {
    let metrics = services.metrics.clone();
    omero_sessiond::metrics::attach(&metrics, adapter, services.sessions.clone());
    let listener = omero_sessiond::http::bind(addr).await?;
    let a = listener.local_addr()?;
    println!("omero-sessiond: listening on metrics {a}");
    tokio::spawn(async move {
        if let Err(e) = omero_sessiond::metrics::serve(listener, metrics).await {
            tracing::error!(error = %e, "metrics endpoint failed");
        }
    });
    Ok(())
}

/// SIGINT and SIGTERM, caught from the moment `install` returns.
struct Shutdown {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Shutdown {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Shutdown {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
