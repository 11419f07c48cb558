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
    /// Address of the secure port: Istio's CA API and ADS over TLS (default 127.0.0.1:15012
    /// with the default --xds-addr; with another xDS address an ephemeral port on its host,
    /// printed on the ready line).
    #[arg(long)]
    pub secure_addr: Option<SocketAddr>,
    /// Do not serve the secure port (no certificate authority).
    #[arg(long, conflicts_with = "secure_addr")]
    pub no_ca: bool,
    /// CA directory: a self-signed root is created here on first start, or Istio's `cacerts`
    /// (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem) are read from here
    /// (default: CONFIG_DIR/.ca).
    #[arg(long)]
    pub ca_dir: Option<PathBuf>,
    /// Lifetime of workload certificates when a request names none, e.g. `24h`, `90m`, `30s`.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub workload_cert_ttl: Duration,
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
        opts.secure_addr = if args.no_ca {
            None
        } else {
            Some(args.secure_addr.unwrap_or_else(|| {
                // Istio's 15012 beside the default 15010; beside any other xDS port an
                // ephemeral one (printed on the ready line), so that control planes started
                // on other ports never fight over 15012.
                let port = if args.xds_addr.port() == 15010 {
                    15012
                } else {
                    0
                };
                SocketAddr::new(args.xds_addr.ip(), port)
            }))
        };
        opts.ca_dir = args.ca_dir;
        opts.workload_cert_ttl = args.workload_cert_ttl;
        let cp = ControlPlane::start(opts).await?;
        // One line on stdout that scripts can wait for.
        let secure = cp
            .secure_addr()
            .map(|a| format!(" secure {a}"))
            .unwrap_or_default();
        println!(
            "weft control plane: xds {}{secure} admin http://{}",
            cp.xds_addr(),
            cp.admin_addr()
        );
        cp.run_until_signal().await;
        anyhow::Ok(0)
    })
}

/// Parses `24h`, `90m`, `30s`, `1h30m` (Go/Istio duration units h, m, s, ms).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err("empty duration; use e.g. 24h, 90m, 30s".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "{s:?}: expected a number before a unit (h, m, s, ms)"
            ));
        }
        let n: u64 = rest[..digits].parse().map_err(|e| format!("{s:?}: {e}"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        total += match unit {
            "h" => Duration::from_secs(n * 3600),
            "m" => Duration::from_secs(n * 60),
            "s" => Duration::from_secs(n),
            "ms" => Duration::from_millis(n),
            other => {
                return Err(format!("{s:?}: unknown unit {other:?}; use h, m, s or ms"));
            }
        };
    }
    if total.is_zero() {
        return Err(format!("{s:?}: must be above zero"));
    }
    Ok(total)
}

/// Arguments of `weft x token`.
#[derive(clap::Args)]
pub struct TokenArgs {
    /// The workload's namespace.
    #[arg(long, short = 'n')]
    pub namespace: String,
    /// The workload's service account.
    #[arg(long)]
    pub service_account: String,
    /// Write the token to this file (mode 0600) instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub target: crate::config_cmds::Target,
}

/// `weft x token`: asks the control plane for a bootstrap token proving a workload identity,
/// which the workload's proxy presents to the certificate service.
pub fn token(args: TokenArgs) -> anyhow::Result<u8> {
    let body = serde_json::json!({
        "namespace": args.namespace,
        "serviceAccount": args.service_account,
    })
    .to_string();
    let answer = crate::config_cmds::block_on(async {
        let a = args.target.client()?.post("/ca/tokens", body).await?;
        if !a.ok() {
            anyhow::bail!("{}", a.error_message());
        }
        Ok(a.json()?)
    })?;
    let token = answer
        .get("token")
        .and_then(|t| t.as_str())
        .context("the control plane's answer has no token")?;
    match &args.out {
        Some(path) => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            f.write_all(token.as_bytes())?;
            eprintln!(
                "token for {} written to {}",
                answer
                    .get("identity")
                    .and_then(|i| i.as_str())
                    .unwrap_or("?"),
                path.display()
            );
        }
        None => println!("{token}"),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("2d").unwrap_err().contains("unknown unit"));
    }
}
