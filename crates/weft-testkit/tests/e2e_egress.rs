//! Outbound traffic policy from the MeshConfig: REGISTRY_ONLY answers a host the registry does
//! not know with 502 from the `block_all` virtual host; ALLOW_ANY sends it on to
//! `PassthroughCluster` (the original destination) instead. On loopback without capture the
//! original destination is the sidecar's own listener, so the passthrough itself has nowhere to
//! go (the proxy answers 503): what is checked is that ALLOW_ANY does not block and routes to
//! `PassthroughCluster`, as the proxy's counters and `weft x route-check` show.

use std::time::Duration;

use weft_testkit::process::binary;
use weft_testkit::{Behavior, Mesh, MeshOptions, http};

/// `weft x route-check` for a request from productpage's sidecar, as JSON.
fn route_check(mesh: &Mesh, host: &str) -> anyhow::Result<String> {
    let out = std::process::Command::new(binary("weft")?)
        .args(["x", "route-check", "productpage-v1.default", "--host", host])
        .args(["--control-plane", &format!("http://{}", mesh.admin)])
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("route-check {host}: {text}");
    Ok(text)
}

/// A counter from the proxy's `/stats` (0 when absent).
async fn stat(mesh: &Mesh, name: &str) -> anyhow::Result<u64> {
    let admin = mesh.workload("productpage-v1").admin;
    let r = http::get(admin, "admin", "/stats", &[], Duration::from_secs(5)).await?;
    Ok(r.body
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

async fn mesh_with(mode: &str) -> anyhow::Result<Mesh> {
    let mut mesh = Mesh::start(MeshOptions {
        mesh_config: Some(format!("outboundTrafficPolicy:\n  mode: {mode}\n")),
        ..Default::default()
    })
    .await?;
    mesh.add_workloads(&[
        ("productpage", "v1", Behavior::Ok),
        ("details", "v1", Behavior::Ok),
    ])
    .await?;
    Ok(mesh)
}

const PASSTHROUGH: &str = "cluster.PassthroughCluster.upstream_rq_total";
const PASSTHROUGH_NONE_HEALTHY: &str = "cluster.PassthroughCluster.upstream_cx_none_healthy";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_only_blocks_an_unknown_host_and_allow_any_passes_it_on() -> anyhow::Result<()> {
    let mesh = mesh_with("REGISTRY_ONLY").await?;
    let r = mesh
        .call("productpage-v1", "details", "/details/0", &[])
        .await?;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "details-v1"),
        "a known host passes"
    );
    let r = mesh
        .call("productpage-v1", "unknown.example.com", "/", &[])
        .await?;
    assert_eq!(r.status, 502, "REGISTRY_ONLY: {r:?}");
    assert_eq!(r.body, "", "the proxy answers itself");
    let passthrough =
        stat(&mesh, PASSTHROUGH).await? + stat(&mesh, PASSTHROUGH_NONE_HEALTHY).await?;
    assert_eq!(passthrough, 0, "nothing went to PassthroughCluster");
    assert_eq!(mesh.workload("details-v1").backend.hits(), 1);
    let check = route_check(&mesh, "unknown.example.com:9080")?;
    assert!(check.contains("block_all"), "{check}");
    drop(mesh);

    let mesh = mesh_with("ALLOW_ANY").await?;
    let r = mesh
        .call("productpage-v1", "details", "/details/0", &[])
        .await?;
    assert_eq!((r.status, r.body.as_str()), (200, "details-v1"));
    let r = mesh
        .call("productpage-v1", "unknown.example.com", "/", &[])
        .await?;
    eprintln!("ALLOW_ANY: {} {:?}", r.status, r.body);
    assert_ne!(r.status, 502, "ALLOW_ANY does not block: {r:?}");
    let passthrough =
        stat(&mesh, PASSTHROUGH).await? + stat(&mesh, PASSTHROUGH_NONE_HEALTHY).await?;
    assert!(passthrough >= 1, "the request went to PassthroughCluster");
    let check = route_check(&mesh, "unknown.example.com:9080")?;
    assert!(check.contains("PassthroughCluster"), "{check}");
    Ok(())
}
