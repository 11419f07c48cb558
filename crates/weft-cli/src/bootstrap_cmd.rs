//! `weft x bootstrap`: prints the Envoy v3 bootstrap with which a weft-proxy joins the mesh as a
//! workload's sidecar (or as a gateway), so that `weft-proxy -c FILE` can be started by hand.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use weft_control::bootstrap::{WorkloadBootstrap, parse_labels};

/// Arguments of `weft x bootstrap`.
#[derive(clap::Args)]
pub struct Args {
    /// A WorkloadEntry file: name, namespace, address, labels and service account come from it.
    #[arg(long, conflicts_with_all = ["name", "ip"])]
    pub workload_entry: Option<PathBuf>,
    /// Workload (pod) name.
    #[arg(long)]
    pub name: Option<String>,
    /// Workload namespace.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Workload IP (for loopback workloads 127.0.0.1 or another 127.0.0.x).
    #[arg(long)]
    pub ip: Option<String>,
    /// Workload labels, `k=v,k2=v2` (added to those of the WorkloadEntry).
    #[arg(long)]
    pub labels: Option<String>,
    /// Service account (default: the WorkloadEntry's, else `default`).
    #[arg(long)]
    pub service_account: Option<String>,
    /// The control plane's xDS address.
    #[arg(long, default_value = "127.0.0.1:15010")]
    pub xds: SocketAddr,
    /// The proxy's admin port on 127.0.0.1.
    #[arg(long, default_value_t = 15000)]
    pub admin_port: u16,
    /// A gateway (`router~...` node id) instead of a sidecar.
    #[arg(long)]
    pub gateway: bool,
    /// Use delta (incremental) xDS.
    #[arg(long)]
    pub delta: bool,
    /// Output format: `yaml` (default) or `json`.
    #[arg(short, long, default_value = "yaml")]
    pub output: String,
}

/// Builds the bootstrap the arguments describe.
pub fn build(args: &Args) -> anyhow::Result<WorkloadBootstrap> {
    let mut b = if let Some(path) = &args.workload_entry {
        let file = path.display().to_string();
        let parsed = weft_config::parse_file(path);
        if let Some(d) = parsed.diagnostics.first() {
            bail!("{d}");
        }
        let entries: Vec<_> = parsed
            .resources
            .iter()
            .filter(|r| r.kind == weft_config::Kind::WorkloadEntry)
            .collect();
        let [entry] = entries.as_slice() else {
            bail!(
                "{file}: expected exactly one WorkloadEntry, found {}",
                entries.len()
            );
        };
        let mut b = WorkloadBootstrap::from_workload_entry(entry, &file)?;
        if let Some(ns) = &args.namespace
            && entry.namespace().is_empty()
        {
            b.namespace = ns.clone();
        }
        if args.gateway {
            b.kind = weft_control::model::ProxyKind::Router;
        }
        b
    } else {
        let (Some(name), Some(ip)) = (&args.name, &args.ip) else {
            bail!("--name and --ip are required without --workload-entry");
        };
        ip.parse::<std::net::IpAddr>()
            .with_context(|| format!("--ip {ip:?} is not an IP address"))?;
        let ns = args.namespace.as_deref().unwrap_or("default");
        if args.gateway {
            WorkloadBootstrap::gateway(name, ns, ip)
        } else {
            WorkloadBootstrap::sidecar(name, ns, ip)
        }
    };
    if let Some(l) = &args.labels {
        b.labels.extend(parse_labels(l)?);
    }
    if let Some(sa) = &args.service_account {
        b.service_account = sa.clone();
    }
    b.delta = args.delta;
    Ok(b.xds(args.xds).admin_port(args.admin_port))
}

/// Runs `weft x bootstrap`.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let b = build(&args)?;
    let text = match args.output.as_str() {
        "yaml" => b.to_yaml()?,
        "json" => serde_json::to_string_pretty(&b.to_json()?)? + "\n",
        other => {
            eprintln!("error: --output {other:?}: expected yaml or json");
            return Ok(crate::EXIT_USAGE);
        }
    };
    print!("{text}");
    Ok(0)
}
