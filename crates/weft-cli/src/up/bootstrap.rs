//! The Envoy bootstrap of each proxy `weft up` starts, written to `bootstrap/NAME.yaml`
//! (built by `weft_control::bootstrap`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use weft_control::bootstrap::WorkloadBootstrap;

use super::plan::{GatewayPlan, WorkloadPlan};
use super::state::StateDir;

fn write(dir: &StateDir, name: &str, b: &WorkloadBootstrap) -> anyhow::Result<PathBuf> {
    let path = dir.bootstrap().join(format!("{name}.yaml"));
    let yaml = b
        .to_yaml()
        .with_context(|| format!("bootstrap of {name}"))?;
    std::fs::write(&path, yaml).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Writes the bootstrap of a workload's sidecar; returns its path.
pub fn write_sidecar(dir: &StateDir, w: &WorkloadPlan, xds: SocketAddr) -> anyhow::Result<PathBuf> {
    let mut b = WorkloadBootstrap::sidecar(&w.name, &w.namespace, &w.ip.to_string())
        .xds(xds)
        .admin_port(w.proxy_admin_port)
        .labels(w.labels.clone());
    b.service_account = w.service_account.clone();
    debug_assert_eq!(b.node_id(), w.node_id());
    write(dir, &format!("{}-proxy", w.name), &b)
}

/// Writes the bootstrap of a gateway; returns its path.
pub fn write_gateway(dir: &StateDir, g: &GatewayPlan, xds: SocketAddr) -> anyhow::Result<PathBuf> {
    let b = WorkloadBootstrap::gateway(&g.name, &g.namespace, "127.0.0.1")
        .xds(xds)
        .admin_port(g.proxy_admin_port)
        .labels(g.labels.clone());
    debug_assert_eq!(b.node_id(), g.node_id());
    write(dir, &g.name, &b)
}
