//! `weft x bootstrap --workload-entry FILE` gives a bootstrap with which a hand-started
//! weft-proxy joins the mesh: it becomes ready, `weft proxy-status` shows it SYNCED, and it
//! serves its workload inbound and its outbound listener.

use std::process::Command;
use std::time::Duration;

use weft_testkit::mesh::eventually;
use weft_testkit::process::{Proc, binary, free_port};
use weft_testkit::{Backend, Behavior, Mesh, MeshOptions, http};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_started_from_weft_x_bootstrap_syncs_and_serves() -> anyhow::Result<()> {
    let mesh = Mesh::start(MeshOptions::default()).await?;
    let backend = Backend::start("ratings-v1", Behavior::Ok).await?;
    let (ip, egress) = (mesh.ip(1, 1), mesh.ip(2, 1));
    let entry = format!(
        "apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: ratings-v1, namespace: bookinfo}}
spec:
  address: {ip}
  serviceAccount: bookinfo-ratings
  labels: {{app: ratings, version: v1}}
"
    );
    let entry_file = mesh.dir().join("ratings-v1.yaml");
    std::fs::write(&entry_file, &entry)?;
    mesh.apply(
        "ratings",
        &format!(
            "{entry}---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ratings, namespace: bookinfo}}
spec:
  hosts: [ratings.bookinfo.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  workloadSelector: {{labels: {{app: ratings}}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: ratings, namespace: bookinfo}}
spec:
  ingress:
  - port: {{number: 9080, protocol: HTTP, name: http}}
    defaultEndpoint: {}
  egress:
  - bind: {egress}
    captureMode: NONE
    hosts: [\"./*\"]
",
            backend.addr
        ),
    )
    .await?;

    let admin_port = free_port()?;
    let out = Command::new(binary("weft")?)
        .args(["x", "bootstrap", "--workload-entry"])
        .arg(&entry_file)
        .args(["--xds", &mesh.xds.to_string()])
        .args(["--admin-port", &admin_port.to_string()])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout)?;
    let node_id = format!("sidecar~{ip}~ratings-v1.bookinfo~bookinfo.svc.cluster.local");
    assert!(yaml.contains(&format!("id: {node_id}")), "{yaml}");
    assert!(yaml.contains("SERVICE_ACCOUNT: bookinfo-ratings"), "{yaml}");
    assert!(yaml.contains("INTERCEPTION_MODE: NONE"), "{yaml}");
    let boot = mesh.dir().join("ratings-v1.bootstrap.yaml");
    std::fs::write(&boot, &yaml)?;

    let mut cmd = Command::new(binary("weft-proxy")?);
    cmd.arg("-c").arg(&boot);
    let proxy = Proc::spawn(
        "ratings-v1",
        cmd,
        &mesh.dir().join("logs/ratings-v1.log"),
        false,
    )?;
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], admin_port));
    eventually(Duration::from_secs(15), || async {
        let r = http::get(admin, "admin", "/ready", &[], Duration::from_secs(1)).await?;
        anyhow::ensure!(r.body.trim() == "LIVE", "not ready: {}", r.body);
        Ok(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", proxy.log_tail(30)))?;

    // `weft proxy-status` shows it in sync on every type.
    let status = eventually(Duration::from_secs(10), || async {
        let out = Command::new(binary("weft")?)
            .arg("proxy-status")
            .args(["--control-plane", &format!("http://{}", mesh.admin)])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let row = text
            .lines()
            .find(|l| l.starts_with(&node_id))
            .ok_or_else(|| anyhow::anyhow!("no row for {node_id}:\n{text}"))?
            .to_string();
        anyhow::ensure!(row.matches("SYNCED").count() == 4, "{row}");
        Ok(row)
    })
    .await?;
    eprintln!("{status}");

    // Inbound: the workload address reaches the application through the sidecar.
    let inbound: std::net::SocketAddr = format!("{ip}:9080").parse()?;
    let r = http::get(
        inbound,
        "ratings:9080",
        "/ratings/1",
        &[],
        Duration::from_secs(5),
    )
    .await?;
    assert_eq!((r.status, r.body.as_str()), (200, "ratings-v1"));
    // Outbound: the egress listener routes `ratings` to the service's endpoint (itself).
    let outbound: std::net::SocketAddr = format!("{egress}:9080").parse()?;
    let r = http::get(
        outbound,
        "ratings:9080",
        "/ratings/2",
        &[],
        Duration::from_secs(5),
    )
    .await?;
    assert_eq!((r.status, r.body.as_str()), (200, "ratings-v1"));
    assert_eq!(backend.hits(), 2);
    drop(proxy);
    Ok(())
}

fn weft_x_bootstrap(args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let out = Command::new(binary("weft")?)
        .args(["x", "bootstrap"])
        .args(args)
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn weft_x_bootstrap_flags() -> anyhow::Result<()> {
    let (ok, yaml, err) = weft_x_bootstrap(&[
        "--gateway",
        "--name",
        "istio-ingressgateway",
        "--namespace",
        "istio-system",
        "--ip",
        "127.0.0.1",
        "--labels",
        "istio=ingressgateway",
        "--xds",
        "127.0.0.1:4000",
        "--admin-port",
        "4001",
    ])?;
    assert!(ok, "{err}");
    assert!(
        yaml.contains(
            "id: router~127.0.0.1~istio-ingressgateway.istio-system~istio-system.svc.cluster.local"
        ),
        "{yaml}"
    );
    assert!(yaml.contains("istio: ingressgateway"), "{yaml}");
    assert!(yaml.contains("port_value: 4000"), "{yaml}");
    assert!(yaml.contains("port_value: 4001"), "{yaml}");

    let (ok, _, err) = weft_x_bootstrap(&["--name", "a"])?;
    assert!(!ok && err.contains("--ip"), "{err}");
    let (ok, _, err) = weft_x_bootstrap(&["--name", "a", "--ip", "1.2.3"])?;
    assert!(!ok && err.contains("--ip \"1.2.3\""), "{err}");
    let (ok, _, err) = weft_x_bootstrap(&["--name", "a", "--ip", "127.0.0.1", "--labels", "app"])?;
    assert!(
        !ok && err.contains("labels") && err.contains("\"app\""),
        "{err}"
    );
    Ok(())
}
