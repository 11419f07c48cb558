//! The `weft-proxy` binary: Envoy's command line where it overlaps.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use tracing_subscriber::{EnvFilter, reload};

/// weft's data plane, configured by an Envoy v3 bootstrap file.
#[derive(Debug, Parser)]
#[command(name = "weft-proxy", version)]
struct Cli {
    /// Bootstrap file (YAML or JSON).
    #[arg(short = 'c', long = "config-path")]
    config: PathBuf,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Log level: trace, debug, info, warning/warn, error, critical, off.
    #[arg(short = 'l', long = "log-level", default_value = "info")]
    log_level: String,
    /// Seconds a graceful shutdown waits for open connections.
    #[arg(long = "drain-time-s", default_value_t = 5)]
    drain_time_s: u64,
    /// Accepted for Envoy compatibility; ignored (weft needs no shared memory).
    #[arg(long = "base-id")]
    base_id: Option<u64>,
    /// Refuse configuration that uses anything weft does not implement.
    #[arg(long)]
    reject_unsupported: bool,
    /// The control plane's secure port (host:port): fetch this proxy's certificate there
    /// (overrides the bootstrap's CA_ADDR node metadata).
    #[arg(long, conflicts_with = "identity_dir")]
    ca_addr: Option<String>,
    /// PEM file of the roots the secure port's certificate chains to (CA_ROOT_CA).
    #[arg(long)]
    ca_root_cert: Option<PathBuf>,
    /// File with the bootstrap token from `weft x token` (CA_TOKEN_FILE).
    #[arg(long)]
    ca_token_file: Option<PathBuf>,
    /// Requested certificate lifetime, e.g. 24h or 90s (SECRET_TTL).
    #[arg(long)]
    secret_ttl: Option<String>,
    /// Directory with the proxy's identity (`cert-chain.pem`, `key.pem`, `root-cert.pem`, as
    /// Istio's file-mounted certificates): served as the SDS secrets `default` and `ROOTCA`,
    /// and reloaded when the files change.
    #[arg(long = "identity-dir")]
    identity_dir: Option<PathBuf>,
    /// Serve merged Prometheus metrics and readiness here (Istio's agent port 15020), e.g.
    /// `0.0.0.0:15020`.
    #[arg(long = "stats-addr")]
    stats_addr: Option<std::net::SocketAddr>,
    /// Serve `/healthz/ready` here (Istio's 15021), e.g. `0.0.0.0:15021`.
    #[arg(long = "health-addr")]
    health_addr: Option<std::net::SocketAddr>,
}

/// Envoy's level names to tracing's.
fn level(l: &str) -> String {
    match l {
        "warning" => "warn".into(),
        "critical" => "error".into(),
        other => other.into(),
    }
}

struct Logging(reload::Handle<EnvFilter, tracing_subscriber::Registry>);

impl weft_proxy::LogControl for Logging {
    fn set_level(&self, l: &str) -> Result<(), String> {
        let filter =
            EnvFilter::try_new(level(l)).map_err(|e| format!("invalid level {l:?}: {e}"))?;
        self.0.reload(filter).map_err(|e| e.to_string())
    }
}

fn main() -> anyhow::Result<()> {
    use tracing_subscriber::prelude::*;
    let cli = Cli::parse();
    let filter = EnvFilter::try_new(level(&cli.log_level)).context("--log-level")?;
    let (filter, handle) = reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    let _ = cli.base_id;

    let bootstrap = weft_proxy::bootstrap::load(&cli.config)?;
    let identity = weft_proxy::identity::IdentityConfig::from_bootstrap(
        &bootstrap,
        &weft_proxy::identity::IdentityOverrides {
            ca_addr: cli.ca_addr.clone(),
            root_cert: cli.ca_root_cert.clone(),
            token_file: cli.ca_token_file.clone(),
            ttl: cli.secret_ttl.clone(),
        },
    )?;
    let options = weft_proxy::Options {
        identity,
        concurrency: cli.concurrency,
        drain_time: Duration::from_secs(cli.drain_time_s),
        compile: weft_proxy::config::CompileOptions {
            reject_unsupported: cli.reject_unsupported,
            ..Default::default()
        },
        log_control: Some(Arc::new(Logging(handle))),
        stats_addr: cli.stats_addr,
        health_addr: cli.health_addr,
        ..Default::default()
    };
    if let Some(dir) = &cli.identity_dir {
        weft_proxy::tls::files::watch_identity_dir(
            Arc::clone(&options.compile.secrets),
            dir.clone(),
            Duration::from_secs(1),
        )
        .context("--identity-dir")?;
    }
    let proxy = weft_proxy::run(&bootstrap, options)?;
    if let Some(a) = proxy.admin_addr() {
        tracing::info!("admin listening on {a}");
    }
    for l in &bootstrap
        .static_resources
        .as_ref()
        .map(|s| s.listeners.clone())
        .unwrap_or_default()
    {
        if let Some(a) = proxy.listener_addr(&l.name) {
            tracing::info!("listener {:?} on {a}", l.name);
        }
    }

    // Signals: SIGTERM and SIGINT start a graceful drain, as in Envoy.
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("signal runtime")?;
    let shutdown = proxy_shutdown_fn(&proxy);
    std::thread::Builder::new()
        .name("weft-signals".into())
        .spawn(move || {
            signals.block_on(async {
                let mut term =
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::error!("cannot watch SIGTERM: {e}");
                            return;
                        }
                    };
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: draining"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
                }
                shutdown();
            });
        })
        .context("signal thread")?;
    proxy.join();
    tracing::info!("exited");
    Ok(())
}

/// A closure that starts the proxy's graceful shutdown from another thread.
fn proxy_shutdown_fn(proxy: &weft_proxy::ProxyHandle) -> impl FnOnce() + Send + 'static {
    let trigger = proxy.shutdown_trigger();
    move || trigger()
}
