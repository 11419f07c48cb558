//! The Envoy bootstrap of each proxy `weft up` starts, written to `bootstrap/NAME.yaml`.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::plan::{GatewayPlan, WorkloadPlan};
use super::state::StateDir;

/// Writes the bootstrap of a workload's sidecar; returns its path.
pub fn write_sidecar(dir: &StateDir, w: &WorkloadPlan, xds: SocketAddr) -> anyhow::Result<PathBuf> {
    let _ = (dir, w, xds);
    anyhow::bail!("bootstrap generation is not available yet")
}

/// Writes the bootstrap of a gateway; returns its path.
pub fn write_gateway(dir: &StateDir, g: &GatewayPlan, xds: SocketAddr) -> anyhow::Result<PathBuf> {
    let _ = (dir, g, xds);
    anyhow::bail!("bootstrap generation is not available yet")
}
