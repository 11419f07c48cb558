//! `weft control-plane`: runs the control plane (config directory, xDS, admin API) until
//! Ctrl-C or SIGTERM. The logic lives in `weft_control::server`; this is the command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use weft_control::server::{ControlPlane, Options};

/// Arguments of `weft control-plane`.
#[derive(clap::Args)]
pub struct Args {
    /// Directory of Istio YAML: the config store (created if missing; watched for changes).
    #[arg(long)]
    pub config_dir: PathBuf,
    /// MeshConfig file (bare MeshConfig YAML, or Istio's `istio` ConfigMap).
    #[arg(long)]
    pub mesh_config: Option<PathBuf>,
    /// Address of the xDS (ADS) server.
    #[arg(long, default_value = "127.0.0.1:15010")]
    pub xds_addr: SocketAddr,
    /// Address of the admin API (HTTP + JSON), which the other commands talk to.
    #[arg(long, default_value = "127.0.0.1:15014")]
    pub admin_addr: SocketAddr,
    /// Quiet time in milliseconds after a change before pushing; changes within it go together.
    #[arg(long, default_value_t = 100)]
    pub debounce_ms: u64,
    /// How often the config directory is polled, in milliseconds.
    #[arg(long, default_value_t = 200, hide = true)]
    pub poll_ms: u64,
    /// How long an auto-registered WorkloadEntry outlives its proxy's last connection (a
    /// duration such as `10s`; default `$PILOT_WORKLOAD_ENTRY_GRACE_PERIOD`, else 10s).
    #[arg(long, value_parser = parse_grace)]
    pub workload_entry_grace_period: Option<Duration>,
}

fn parse_grace(s: &str) -> Result<Duration, String> {
    weft_config::duration::parse_duration(s).map_err(|e| e.to_string())
}

/// The grace period from `PILOT_WORKLOAD_ENTRY_GRACE_PERIOD`, as Istio reads it.
fn grace_from_env() -> anyhow::Result<Option<Duration>> {
    match std::env::var("PILOT_WORKLOAD_ENTRY_GRACE_PERIOD") {
        Ok(v) if !v.trim().is_empty() => parse_grace(&v)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("PILOT_WORKLOAD_ENTRY_GRACE_PERIOD: {e}")),
        _ => Ok(None),
    }
}

/// Runs the control plane; returns the exit code when stopped.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("weft-cp")
        .build()
        .context("cannot start the tokio runtime")?;
    rt.block_on(async {
        let mut opts = Options::new(args.config_dir);
        opts.mesh_config = args.mesh_config;
        opts.xds_addr = args.xds_addr;
        opts.admin_addr = args.admin_addr;
        opts.debounce = Duration::from_millis(args.debounce_ms);
        opts.poll_interval = Duration::from_millis(args.poll_ms.max(10));
        if let Some(g) = args.workload_entry_grace_period.or(grace_from_env()?) {
            opts.workload_entry_grace_period = g;
        }
        let cp = ControlPlane::start(opts).await?;
        // One line on stdout that scripts can wait for.
        println!(
            "weft control plane: xds {} admin http://{}",
            cp.xds_addr(),
            cp.admin_addr()
        );
        cp.run_until_signal().await;
        anyhow::Ok(0)
    })
}
