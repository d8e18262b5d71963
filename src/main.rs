//! The `omero-sessiond` command: parses the command line and configuration, sets up logging
//! and runs the server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use omero_sessiond::config::{
    listener_address, ConnectionConfig, FileConfig, ServerConfig, TlsSource, DEFAULT_DATA_DIR,
    DEFAULT_SSL, DEFAULT_TCP,
};
use omero_sessiond::encoding::Identity;
use omero_sessiond::runtime::{Current, Dispatch, DispatchError, ObjectAdapter, Server};

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
}

#[derive(Args)]
struct ServeArgs {
    /// TOML configuration file; options given here win over it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (default ./omero-sessiond-data).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Plain Ice listener, host:port (default 0.0.0.0:4063); "off" disables it.
    #[arg(long, value_name = "ADDR")]
    tcp: Option<String>,
    /// Ice over TLS listener, host:port (default 0.0.0.0:4064); "off" disables it.
    #[arg(long, value_name = "ADDR")]
    ssl: Option<String>,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long)]
    json_logs: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let file = match args.config.as_deref().map(FileConfig::load).transpose() {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => {
            eprintln!("omero-sessiond: {e}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(args.json_logs || file.json_logs.unwrap_or(false));
    let config = server_config(&args, &file);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "omero-sessiond failed");
            eprintln!("omero-sessiond: {e}");
            ExitCode::FAILURE
        }
    }
}

fn server_config(args: &ServeArgs, file: &FileConfig) -> ServerConfig {
    let data = args
        .data
        .clone()
        .or_else(|| file.data.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let pick = |cli: &Option<String>, file: &Option<String>, default: &str| {
        listener_address(cli.as_deref().or(file.as_deref()).unwrap_or(default))
    };
    let tls = match (&file.tls.cert, &file.tls.key) {
        (Some(cert), Some(key)) => TlsSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        _ => TlsSource::SelfSigned { dir: data },
    };
    ServerConfig {
        tcp: pick(&args.tcp, &file.tcp, DEFAULT_TCP),
        ssl: pick(&args.ssl, &file.ssl, DEFAULT_SSL),
        tls,
        connection: ConnectionConfig::from_file(&file.connection),
    }
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

async fn run(config: ServerConfig) -> anyhow::Result<()> {
    let adapter = ObjectAdapter::new();
    adapter.add(
        Identity::new("OMERO.Glacier2", "router"),
        Arc::new(PlaceholderRouter),
    );
    let server = Server::bind(config, adapter).await?;
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
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown(Duration::from_secs(10)).await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// PLACEHOLDER until the Glacier2 router exists (replaced by src/router): answers only the
/// built-in operations, with the type ids of `::Glacier2::Router`.
struct PlaceholderRouter;

#[async_trait::async_trait]
impl Dispatch for PlaceholderRouter {
    fn type_ids(&self) -> &'static [&'static str] {
        &["::Glacier2::Router", "::Ice::Object", "::Ice::Router"]
    }

    fn most_derived_type_id(&self) -> &'static str {
        "::Glacier2::Router"
    }

    async fn dispatch(&self, _: &Current, _: &[u8]) -> Result<Vec<u8>, DispatchError> {
        Err(DispatchError::OperationNotExist)
    }
}
