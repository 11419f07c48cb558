//! Config changes (routes, clusters, listeners) under load drop nothing; proxies keep serving
//! while the control plane is down, resync when it returns, and then take new changes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use weft_testkit::mesh::{BOOKINFO, bookinfo_file, eventually};
use weft_testkit::{Behavior, Mesh, MeshOptions, http};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_changes_under_load_drop_nothing() -> anyhow::Result<()> {
    let mut mesh = Mesh::start(MeshOptions::default()).await?;
    mesh.add_workloads(&BOOKINFO[..5]).await?;
    mesh.apply_file(&bookinfo_file("destination-rule-all.yaml")?)
        .await?;
    mesh.apply_file(&bookinfo_file("virtual-service-all-v1.yaml")?)
        .await?;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let addr = mesh.workload("productpage-v1").egress(9080);
    let mut clients = Vec::new();
    // Two clients open a connection per request, two keep one connection for the whole run.
    for i in 0..4 {
        let (stop, ok, errors) = (stop.clone(), ok.clone(), errors.clone());
        clients.push(tokio::spawn(async move {
            let mut conn = if i % 2 == 0 {
                Some(http::Conn::connect(addr).await?)
            } else {
                None
            };
            let timeout = Duration::from_secs(5);
            while !stop.load(Ordering::Relaxed) {
                let reply = match &mut conn {
                    Some(c) => c.get("reviews:9080", "/reviews/0", timeout).await,
                    None => http::get(addr, "reviews:9080", "/reviews/0", &[], timeout).await,
                };
                let errs = || errors.lock().unwrap_or_else(|e| e.into_inner());
                match reply {
                    Ok(r) if r.status == 200 && r.body.starts_with("reviews-") => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => errs().push(format!("{} {}", r.status, r.body)),
                    Err(e) => errs().push(format!("{e:#}")),
                }
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for file in [
        "virtual-service-reviews-90-10.yaml",
        "virtual-service-reviews-v3.yaml",
        // A cluster change (RANDOM load balancing for every reviews cluster).
        "destination-rule-reviews.yaml",
        "virtual-service-reviews-50-v3.yaml",
        "virtual-service-reviews-jason-v2-v3.yaml",
        "virtual-service-reviews-v2-v3.yaml",
        "virtual-service-reviews-v3.yaml",
    ] {
        mesh.apply_file(&bookinfo_file(file)?).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A listener change: a new service on a new port gives the sidecar a new listener.
    mesh.apply(
        "new-service",
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: extra, namespace: default}
spec:
  hosts: [extra.example.com]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 9091, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1}]
",
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await??;
    }
    let errors = errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let served = ok.load(Ordering::Relaxed);
    assert!(
        errors.is_empty(),
        "{} errors of {}: {:?}",
        errors.len(),
        served + errors.len(),
        &errors[..errors.len().min(10)]
    );
    assert!(
        served >= 200,
        "the clients kept sending ({served} requests)"
    );
    eprintln!("{served} requests during 8 config changes, 0 errors");
    let listeners = http::get(
        mesh.workload("productpage-v1").admin,
        "admin",
        "/listeners",
        &[],
        Duration::from_secs(5),
    )
    .await?;
    assert!(
        listeners.body.contains("_9091::"),
        "the new listener is in place: {}",
        listeners.body
    );
    // The last change (all v3) is in effect.
    let t = mesh.tally("productpage-v1", "reviews", 50, 2).await?;
    assert_eq!(t.get("200 reviews-v3"), Some(&50), "{t:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_keep_serving_without_the_control_plane_and_resync() -> anyhow::Result<()> {
    let mut mesh = Mesh::start(MeshOptions::default()).await?;
    mesh.add_workloads(&[
        ("productpage", "v1", Behavior::Ok),
        ("reviews", "v1", Behavior::Ok),
        ("reviews", "v2", Behavior::Ok),
    ])
    .await?;
    let gw = mesh.add_ingress_gateway().await?;
    mesh.apply_file(&bookinfo_file("bookinfo-gateway.yaml")?)
        .await?;
    mesh.apply_file(&bookinfo_file("destination-rule-reviews.yaml")?)
        .await?;
    mesh.apply_file(&bookinfo_file("virtual-service-all-v1.yaml")?)
        .await?;

    mesh.kill_control_plane();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = mesh.tally("productpage-v1", "reviews", 100, 2).await?;
    assert_eq!(
        t.get("200 reviews-v1"),
        Some(&100),
        "served while the control plane is down: {t:?}"
    );
    let r = http::get(gw, "bookinfo", "/productpage", &[], Duration::from_secs(5)).await?;
    assert_eq!((r.status, r.body.as_str()), (200, "productpage-v1"));
    for w in mesh.workloads() {
        let r = http::get(w.admin, "admin", "/ready", &[], Duration::from_secs(2)).await?;
        assert_eq!(r.body.trim(), "LIVE", "{} stays ready", w.name);
    }

    mesh.restart_control_plane().await?;
    let status = mesh.proxy_status().await?;
    let list = status.as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 4, "every proxy reconnected: {status}");
    for p in &list {
        for t in ["cds", "lds", "eds"] {
            assert_eq!(p["types"][t]["state"], "SYNCED", "{p}");
        }
    }
    // A change after the restart reaches the proxies.
    mesh.apply_file(&bookinfo_file("virtual-service-reviews-test-v2.yaml")?)
        .await?;
    eventually(Duration::from_secs(5), || async {
        let r = mesh
            .call("productpage-v1", "reviews", "/", &[("end-user", "jason")])
            .await?;
        anyhow::ensure!(r.body == "reviews-v2", "jason got {r:?}");
        Ok(())
    })
    .await?;
    let t = mesh.tally("productpage-v1", "reviews", 20, 1).await?;
    assert_eq!(t.get("200 reviews-v1"), Some(&20), "{t:?}");
    Ok(())
}
