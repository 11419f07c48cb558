//! Many proxies at once: 200 weft clients on one server converge after one update, and an
//! update for one proxy reaches only that proxy. Prints the times (run with `--nocapture`);
//! timing goals belong to benchmarks, so only convergence is asserted.

mod support;

use std::time::{Duration, Instant};

use support::*;
use weft_xds::cache::Cache;
use weft_xds::client::{AdsClient, Subscription};
use weft_xds::server::StatusRegistry;
use weft_xds::type_url::{
    CLUSTER, CLUSTER_LOAD_ASSIGNMENT as EDS, LISTENER, ROUTE_CONFIGURATION as RDS,
};

/// 200 by default; `WEFT_XDS_SCALE_CLIENTS=2000` measures a bigger mesh by hand.
fn clients() -> usize {
    std::env::var("WEFT_XDS_SCALE_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

fn subs() -> Vec<(&'static str, Subscription)> {
    vec![
        (CLUSTER, Subscription::Wildcard),
        (EDS, Subscription::names(["a", "b"])),
        (LISTENER, Subscription::Wildcard),
        (RDS, Subscription::names(["r1", "r2"])),
    ]
}

async fn all_acked(status: &StatusRegistry, ids: &[String], type_url: &str, version: &str) {
    for id in ids {
        within(
            &format!("{id} to ack {type_url}"),
            status.wait_acked(id, type_url, version),
        )
        .await;
    }
}

async fn converge(delta: bool) {
    let mode = if delta { "delta" } else { "sotw" };
    // All proxies share one snapshot (grouped by node.cluster).
    let cache = Cache::with_key_fn(|n| n.cluster.clone());
    let v = cache.set_snapshot("test", full_snapshot()).expect("valid");
    let server = start(cache.clone()).await;
    let ids: Vec<String> = (0..clients()).map(|i| format!("{mode}-{i}")).collect();

    let t0 = Instant::now();
    let clients: Vec<(AdsClient, Recorder)> = ids
        .iter()
        .map(|id| client(server.local_addr(), id, delta, &subs()))
        .collect();
    for t in [CLUSTER, EDS, LISTENER, RDS] {
        all_acked(server.status(), &ids, t, v.version(t).expect("type")).await;
    }
    let initial = t0.elapsed();

    let t1 = Instant::now();
    let upd = cache
        .update_resources("test", CLUSTER, [cluster("a", 9)], [] as [&str; 0])
        .expect("valid");
    all_acked(
        server.status(),
        &ids,
        CLUSTER,
        upd.version(CLUSTER).expect("cds"),
    )
    .await;
    let update = t1.elapsed();
    println!(
        "{mode}: {} clients x 4 types: initial sync {:.1} ms, one CDS update to all ACKed {:.1} ms",
        ids.len(),
        initial.as_secs_f64() * 1e3,
        update.as_secs_f64() * 1e3
    );
    assert_eq!(server.status().nodes().len(), ids.len());
    for (c, _) in clients {
        c.shutdown().await;
    }
    server.shutdown().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_200_clients_converge_after_one_update() {
    converge(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_200_clients_converge_after_one_update() {
    converge(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_for_one_proxy_reaches_only_that_proxy() {
    // Per-node snapshots (the default key is the node id).
    let cache = Cache::new();
    let ids: Vec<String> = (0..clients()).map(|i| format!("p{i}")).collect();
    for id in &ids {
        cache.set_snapshot(id, full_snapshot()).expect("valid");
    }
    let v = full_snapshot();
    let server = start(cache.clone()).await;
    let clients: Vec<(AdsClient, Recorder)> = ids
        .iter()
        .map(|id| client(server.local_addr(), id, false, &subs()))
        .collect();
    for t in [CLUSTER, EDS, LISTENER, RDS] {
        all_acked(server.status(), &ids, t, v.version(t).expect("type")).await;
    }
    let t = Instant::now();
    let upd = cache
        .update_resources("p7", EDS, [cla("a", 3)], [] as [&str; 0])
        .expect("valid");
    within(
        "p7 ack",
        server
            .status()
            .wait_acked("p7", EDS, upd.version(EDS).expect("eds")),
    )
    .await;
    println!(
        "one proxy of {} with per-node snapshots: its EDS update ACKed in {:.2} ms",
        ids.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    for ns in server.status().nodes() {
        let expected = if ns.node_id == "p7" { 2 } else { 1 };
        assert_eq!(ns.types[EDS].responses, expected, "{}", ns.node_id);
        assert_eq!(ns.types[CLUSTER].responses, 1, "{}", ns.node_id);
    }
    for (c, _) in clients {
        c.shutdown().await;
    }
}
