//! The Envoy bootstrap of each proxy `weft up` starts, written to `bootstrap/NAME.yaml`
//! (built by `weft_control::bootstrap`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use weft_control::bootstrap::WorkloadBootstrap;

use super::plan::{GatewayPlan, Mode, WorkloadPlan};

fn write(dir: &Path, name: &str, b: &WorkloadBootstrap) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{name}.yaml"));
    let yaml = b
        .to_yaml()
        .with_context(|| format!("bootstrap of {name}"))?;
    std::fs::write(&path, yaml).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Writes the bootstrap of a workload's sidecar into `dir`; returns its path. In namespaces
/// mode the proxy captures traffic (`REDIRECT`) and its admin listens on every address of its
/// namespace, so that the host reaches it.
pub fn write_sidecar(
    dir: &Path,
    w: &WorkloadPlan,
    xds: SocketAddr,
    mode: Mode,
) -> anyhow::Result<PathBuf> {
    let mut b = WorkloadBootstrap::sidecar(&w.name, &w.namespace, &w.ip.to_string())
        .xds(xds)
        .admin_port(w.proxy_admin_port)
        .labels(w.labels.clone());
    b.service_account = w.service_account.clone();
    if mode == Mode::Namespaces {
        b.interception_mode = "REDIRECT".to_string();
        b.admin_addr = SocketAddr::from(([0, 0, 0, 0], w.proxy_admin_port));
    }
    debug_assert_eq!(b.node_id(), w.node_id());
    write(dir, &format!("{}-proxy", w.name), &b)
}

/// Writes the bootstrap of a gateway; returns its path.
pub fn write_gateway(dir: &Path, g: &GatewayPlan, xds: SocketAddr) -> anyhow::Result<PathBuf> {
    let b = WorkloadBootstrap::gateway(&g.name, &g.namespace, "127.0.0.1")
        .xds(xds)
        .admin_port(g.proxy_admin_port)
        .labels(g.labels.clone());
    debug_assert_eq!(b.node_id(), g.node_id());
    write(dir, &g.name, &b)
}
