//! WorkloadGroup auto-registration end to end, with real processes: a `weft-proxy` started with
//! `AUTO_REGISTER_GROUP: ratings` joins the mesh as a WorkloadEntry that `weft get
//! workloadentries` lists, and productpage's sidecar reaches the workload behind it through EDS;
//! killed, it is gone after the grace period; restarted within the grace period, it stays.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use weft_control::bootstrap::WorkloadBootstrap;
use weft_testkit::mesh::{SERVICE_PORT, eventually};
use weft_testkit::process::{Proc, binary, free_port};
use weft_testkit::{Backend, Behavior, Mesh, MeshOptions, http};

const GRACE: Duration = Duration::from_secs(4);

/// `weft get workloadentries -n default [-o yaml]` against the mesh's control plane.
fn weft_get_entries(mesh: &Mesh, yaml: bool) -> anyhow::Result<String> {
    let mut cmd = Command::new(binary("weft")?);
    cmd.args(["get", "workloadentries", "-n", "default"])
        .arg("--control-plane")
        .arg(format!("http://{}", mesh.admin));
    if yaml {
        cmd.args(["-o", "yaml"]);
    }
    let out = cmd.output().context("cannot run weft get")?;
    if !out.status.success() {
        bail!(
            "weft get workloadentries failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Starts the VM's proxy from its bootstrap; returns it once its admin says LIVE.
async fn start_vm_proxy(mesh: &Mesh, b: &WorkloadBootstrap, run: u32) -> anyhow::Result<Proc> {
    let path = mesh.dir().join(format!("ratings-vm-{run}.bootstrap.yaml"));
    std::fs::write(&path, b.to_yaml()?)?;
    let mut cmd = Command::new(binary("weft-proxy")?);
    cmd.arg("-c")
        .arg(&path)
        .args(["--concurrency", "1", "-l", "info"]);
    let p = Proc::spawn(
        "ratings-vm",
        cmd,
        &mesh.dir().join(format!("logs/ratings-vm-{run}.log")),
        false,
    )?;
    let admin = b.admin_addr;
    eventually(Duration::from_secs(20), || async move {
        let r = http::get(admin, "admin", "/ready", &[], Duration::from_secs(1)).await?;
        if r.status == 200 && r.body.trim() == "LIVE" {
            Ok(())
        } else {
            bail!("not ready: {} {}", r.status, r.body)
        }
    })
    .await
    .with_context(|| p.log_tail(30))?;
    Ok(p)
}

/// productpage's call to `ratings` through its sidecar: the answering workload's name.
async fn call_ratings(mesh: &Mesh) -> anyhow::Result<http::Reply> {
    mesh.call("productpage-v1", "ratings", "/ratings/0", &[])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_proxy_registers_serves_and_leaves() -> anyhow::Result<()> {
    let mut mesh = Mesh::start(MeshOptions {
        control_plane_args: vec![
            "--workload-entry-grace-period".to_string(),
            format!("{}ms", GRACE.as_millis()),
        ],
        ..Default::default()
    })
    .await?;
    mesh.add_workloads(&[("productpage", "v1", Behavior::Ok)])
        .await?;

    // The VM: its application, and the config an operator writes for it (the service, the
    // group, and a Sidecar that binds its listeners on its own loopback addresses).
    let backend = Backend::start("ratings-vm", Behavior::Ok).await?;
    let vm_ip = mesh.ip(1, 100);
    let vm_egress = mesh.ip(2, 100);
    mesh.apply(
        "ratings-vm",
        &format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ratings, namespace: default}}
spec:
  hosts: [ratings.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {SERVICE_PORT}, name: http, protocol: HTTP}}]
  workloadSelector: {{labels: {{app: ratings}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {{name: ratings, namespace: default}}
spec:
  metadata:
    labels: {{app: ratings}}
  template:
    serviceAccount: bookinfo-ratings
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: ratings-vm, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: ratings}}}}
  ingress:
  - port: {{number: {SERVICE_PORT}, protocol: HTTP, name: http}}
    defaultEndpoint: {}
  egress:
  - bind: {vm_egress}
    captureMode: NONE
    hosts: [\"./*\"]
",
            backend.addr
        ),
    )
    .await?;
    // No workload yet: nothing answers for ratings.
    assert!(!weft_get_entries(&mesh, false)?.contains("ratings-"));
    let r = call_ratings(&mesh).await?;
    assert_eq!(r.status, 503, "{} {}", r.status, r.body);

    let mut labels = BTreeMap::new();
    labels.insert("app".to_string(), "ratings".to_string());
    labels.insert("version".to_string(), "v1".to_string());
    let mut b = WorkloadBootstrap::sidecar("ratings-vm-1", "default", &vm_ip)
        .labels(labels)
        .auto_register("ratings")
        .xds(mesh.xds)
        .admin_port(free_port()?);
    b.backoff_ms = (50, 300);
    let entry_name = format!("ratings-{vm_ip}");

    // 1. The proxy connects: the entry is there, and productpage reaches the VM through EDS.
    let mut vm = start_vm_proxy(&mesh, &b, 1).await?;
    let listed = eventually(Duration::from_secs(10), || async {
        let out = weft_get_entries(&mesh, false)?;
        if out.contains(&entry_name) {
            Ok(out)
        } else {
            bail!("{entry_name} not listed:\n{out}")
        }
    })
    .await?;
    assert!(listed.contains(&vm_ip), "{listed}");
    let yaml = weft_get_entries(&mesh, true)?;
    for want in [
        "istio.io/autoRegistrationGroup: ratings",
        "istio.io/workloadController: weft-",
        "istio.io/connectedAt:",
        "serviceAccount: bookinfo-ratings",
    ] {
        assert!(yaml.contains(want), "{want:?} missing from\n{yaml}");
    }
    let reply = eventually(Duration::from_secs(10), || async {
        let r = call_ratings(&mesh).await?;
        if r.status == 200 {
            Ok(r)
        } else {
            bail!("{} {}", r.status, r.body)
        }
    })
    .await
    .with_context(|| mesh.logs(20))?;
    assert_eq!(reply.body, "ratings-vm");
    let hits = backend.hits();
    assert!(hits >= 1, "the VM's application saw {hits} requests");
    let status = mesh.proxy_status().await?;
    let me = status
        .as_array()
        .and_then(|l| l.iter().find(|p| p["id"] == b.node_id()))
        .with_context(|| format!("{} not in proxy-status: {status}", b.node_id()))?;
    assert_eq!(me["workload_entry"], format!("default/{entry_name}"));

    // 2. Killed and restarted within the grace period: the entry stays, traffic resumes.
    vm.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(weft_get_entries(&mesh, false)?.contains(&entry_name));
    let mut vm = start_vm_proxy(&mesh, &b, 2).await?;
    tokio::time::sleep(GRACE + Duration::from_secs(1)).await;
    let yaml = weft_get_entries(&mesh, true)?;
    assert!(yaml.contains(&entry_name), "the entry went:\n{yaml}");
    assert!(yaml.contains("istio.io/connectedAt:"), "{yaml}");
    assert!(!yaml.contains("istio.io/disconnectedAt:"), "{yaml}");
    let r = call_ratings(&mesh).await?;
    assert_eq!((r.status, r.body.as_str()), (200, "ratings-vm"));

    // 3. Killed for good: the entry stays for the grace period, then it and the endpoint go.
    vm.kill();
    let killed = Instant::now();
    eventually(Duration::from_secs(5), || async {
        let yaml = weft_get_entries(&mesh, true)?;
        if yaml.contains("istio.io/disconnectedAt:") {
            Ok(())
        } else {
            bail!("not marked disconnected:\n{yaml}")
        }
    })
    .await?;
    assert!(
        killed.elapsed() < GRACE,
        "marked too late to check the grace period"
    );
    eventually(GRACE + Duration::from_secs(10), || async {
        let out = weft_get_entries(&mesh, false)?;
        if out.contains(&entry_name) {
            bail!("{entry_name} still listed")
        } else {
            Ok(())
        }
    })
    .await?;
    assert!(
        killed.elapsed() >= GRACE,
        "removed {:?} after the kill, before the grace period",
        killed.elapsed()
    );
    let before = backend.hits();
    let r = eventually(Duration::from_secs(10), || async {
        let r = call_ratings(&mesh).await?;
        if r.status == 503 && r.body.contains("no healthy upstream") {
            Ok(r)
        } else {
            bail!("{} {}", r.status, r.body)
        }
    })
    .await?;
    assert_eq!(r.status, 503);
    assert_eq!(backend.hits(), before, "the VM's application was reached");
    Ok(())
}
