//! Delta (incremental) ADS over real gRPC on loopback: the weft client against the weft server,
//! and raw streams for protocol details.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::*;
use weft_xds::cache::Cache;
use weft_xds::client::Subscription;
use weft_xds::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use weft_xds::google::rpc::Status as RpcStatus;
use weft_xds::server::{SyncState, serve};
use weft_xds::type_url::{
    CLUSTER, CLUSTER_LOAD_ASSIGNMENT as EDS, LISTENER, ROUTE_CONFIGURATION as RDS,
};

#[tokio::test]
async fn delta_initial_fetch_and_ack_recorded() {
    let cache = Cache::new();
    let v = cache.set_snapshot("n1", full_snapshot()).expect("valid");
    let server = start(cache).await;
    let (c, rec) = client(
        server.local_addr(),
        "n1",
        true,
        &[
            (CLUSTER, Subscription::Wildcard),
            (LISTENER, Subscription::Wildcard),
        ],
    );
    let st = client_has(&c, CLUSTER, v.version(CLUSTER).expect("cds")).await;
    assert_eq!(st.get(CLUSTER).map(|t| t.resources), Some(2));
    let first = rec.last(CLUSTER).expect("seen");
    assert_eq!(first.names, strings(&["a", "b"]));
    assert_eq!(first.updated, strings(&["a", "b"]));
    within(
        "ack",
        server
            .status()
            .wait_acked("n1", CLUSTER, v.version(CLUSTER).expect("cds")),
    )
    .await;
    within(
        "ack",
        server
            .status()
            .wait_acked("n1", LISTENER, v.version(LISTENER).expect("lds")),
    )
    .await;
    let ns = server.status().node("n1").expect("connected");
    assert!(ns.delta);
    let t = &ns.types[CLUSTER];
    assert_eq!(t.state(), SyncState::Synced);
    assert_eq!(t.acked_nonce, t.sent_nonce);
}

#[tokio::test]
async fn delta_raw_ack_nack_and_stale_nonce() {
    let cache = Cache::new();
    let v1 = cache.set_snapshot("n", full_snapshot()).expect("valid");
    let server = start(cache.clone()).await;
    let mut s = RawDelta::connect(server.local_addr()).await;
    s.send(DeltaDiscoveryRequest {
        node: Some(node("n")),
        type_url: CLUSTER.into(),
        ..Default::default()
    });
    let r1 = s.recv().await;
    assert_eq!(delta_names(&r1), strings(&["a", "b"]));
    assert_eq!(r1.system_version_info, v1.version(CLUSTER).expect("cds"));
    assert!(r1.resources.iter().all(|r| !r.version.is_empty()));

    // Only the changed resource is sent.
    let v2 = cache
        .update_resources("n", CLUSTER, [cluster("a", 7)], [] as [&str; 0])
        .expect("valid");
    let r2 = s.recv().await;
    assert_eq!(delta_names(&r2), strings(&["a"]));
    assert!(r2.removed_resources.is_empty());

    // r1's nonce is stale now: not an ACK.
    s.send(DeltaDiscoveryRequest {
        type_url: CLUSTER.into(),
        response_nonce: r1.nonce.clone(),
        ..Default::default()
    });
    s.nothing_for(300).await;
    let t = server.status().node("n").expect("connected").types[CLUSTER].clone();
    assert_eq!(t.acked_nonce, None, "stale nonce must not ACK");

    // NACK of the latest response.
    s.send(DeltaDiscoveryRequest {
        type_url: CLUSTER.into(),
        response_nonce: r2.nonce.clone(),
        error_detail: Some(RpcStatus {
            code: 3,
            message: "cluster a: bad timeout".into(),
            details: vec![],
        }),
        ..Default::default()
    });
    within(
        "nack",
        server.status().wait_for("n", |n| {
            n.types.get(CLUSTER).is_some_and(|t| t.nack.is_some())
        }),
    )
    .await;
    let t = server.status().node("n").expect("connected").types[CLUSTER].clone();
    let nack = t.nack.clone().expect("nack");
    assert_eq!(nack.error, "cluster a: bad timeout");
    assert_eq!(nack.rejected_version, v2.version(CLUSTER).expect("cds"));
    assert_eq!(t.state(), SyncState::Stale);

    // A fix is sent and ACKed.
    let v3 = cache
        .update_resources("n", CLUSTER, [cluster("a", 8)], [] as [&str; 0])
        .expect("valid");
    let r3 = s.recv().await;
    s.send(DeltaDiscoveryRequest {
        type_url: CLUSTER.into(),
        response_nonce: r3.nonce.clone(),
        ..Default::default()
    });
    within(
        "ack",
        server
            .status()
            .wait_acked("n", CLUSTER, v3.version(CLUSTER).expect("cds")),
    )
    .await;
    let t = server.status().node("n").expect("connected").types[CLUSTER].clone();
    assert_eq!(t.acked_nonce.as_deref(), Some(r3.nonce.as_str()));
    assert!(t.nack.is_none());
}

#[tokio::test]
async fn delta_nack_client_keeps_last_good_state() {
    let cache = Cache::new();
    let good = cache.set_snapshot("n", full_snapshot()).expect("valid");
    let server = start(cache.clone()).await;
    let (c, rec) = client(
        server.local_addr(),
        "n",
        true,
        &[(CLUSTER, Subscription::Wildcard)],
    );
    let good_v = good.version(CLUSTER).expect("cds").to_string();
    client_has(&c, CLUSTER, &good_v).await;
    // The ACK must reach the server before the next push, or it is stale there.
    within("ack", server.status().wait_acked("n", CLUSTER, &good_v)).await;

    cache
        .update_resources("n", CLUSTER, [cluster("bad", 0)], ["a"])
        .expect("valid");
    within(
        "NACK",
        server.status().wait_for("n", |s| {
            s.types.get(CLUSTER).is_some_and(|t| t.nack.is_some())
        }),
    )
    .await;
    let nack = server.status().node("n").expect("connected").types[CLUSTER]
        .nack
        .clone()
        .expect("nack");
    assert!(
        nack.error.contains("connect_timeout must be positive"),
        "{nack:?}"
    );
    let st = c.status();
    let ct = st.get(CLUSTER).expect("cds");
    assert_eq!(ct.version, good_v);
    assert_eq!(ct.resources, 2, "rolled back: a restored, bad dropped");
    assert_eq!(ct.nacks, 1);

    // The next good update applies on top of the last good state.
    let fixed = cache
        .update_resources("n", CLUSTER, [cluster("c", 1)], ["bad"])
        .expect("valid");
    client_has(&c, CLUSTER, fixed.version(CLUSTER).expect("cds")).await;
    assert_eq!(rec.last(CLUSTER).expect("seen").names, strings(&["b", "c"]));
}

#[tokio::test]
async fn delta_update_pushes_only_the_changed_type_and_resource() {
    let cache = Cache::new();
    let v = cache.set_snapshot("n", full_snapshot()).expect("valid");
    let server = start(cache.clone()).await;
    let (c, rec) = client(
        server.local_addr(),
        "n",
        true,
        &[
            (CLUSTER, Subscription::Wildcard),
            (EDS, Subscription::names(["a", "b"])),
            (LISTENER, Subscription::Wildcard),
            (RDS, Subscription::names(["r1"])),
        ],
    );
    for t in [CLUSTER, EDS, LISTENER, RDS] {
        within(
            "initial sync",
            server
                .status()
                .wait_acked("n", t, v.version(t).expect("type")),
        )
        .await;
    }
    let before = c.status();
    let upd = cache
        .update_resources("n", EDS, [cla("b", 4)], [] as [&str; 0])
        .expect("valid");
    within(
        "eds ack",
        server
            .status()
            .wait_acked("n", EDS, upd.version(EDS).expect("eds")),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = c.status();
    for t in [CLUSTER, LISTENER, RDS] {
        assert_eq!(
            after.get(t).map(|s| s.responses),
            before.get(t).map(|s| s.responses),
            "{t} was pushed"
        );
    }
    let last = rec.last(EDS).expect("seen");
    assert_eq!(last.updated, strings(&["b"]));
    assert_eq!(
        last.names,
        strings(&["a", "b"]),
        "full state handed to the callback"
    );
}

#[tokio::test]
async fn delta_explicit_subscriptions_and_unsubscribe() {
    let cache = Cache::new();
    cache.set_snapshot("n", full_snapshot()).expect("valid");
    let server = start(cache.clone()).await;
    let mut s = RawDelta::connect(server.local_addr()).await;
    s.send(DeltaDiscoveryRequest {
        node: Some(node("n")),
        type_url: EDS.into(),
        resource_names_subscribe: strings(&["a"]),
        ..Default::default()
    });
    let r = s.recv().await;
    assert_eq!(delta_names(&r), strings(&["a"]));
    s.send(DeltaDiscoveryRequest {
        type_url: EDS.into(),
        response_nonce: r.nonce.clone(),
        ..Default::default()
    });

    // Subscribing b and a missing name: b is sent, the missing one reported as not existing.
    s.send(DeltaDiscoveryRequest {
        type_url: EDS.into(),
        resource_names_subscribe: strings(&["b", "missing"]),
        ..Default::default()
    });
    let r = s.recv().await;
    assert_eq!(delta_names(&r), strings(&["b"]));
    assert_eq!(r.removed_resources, strings(&["missing"]));
    s.send(DeltaDiscoveryRequest {
        type_url: EDS.into(),
        response_nonce: r.nonce.clone(),
        ..Default::default()
    });

    // c is not subscribed: its change is not pushed.
    cache
        .update_resources("n", EDS, [cla("c", 5)], [] as [&str; 0])
        .expect("valid");
    s.nothing_for(300).await;

    // Unsubscribe b: its updates stop, a's continue.
    s.send(DeltaDiscoveryRequest {
        type_url: EDS.into(),
        resource_names_unsubscribe: strings(&["b"]),
        ..Default::default()
    });
    within(
        "unsubscribed",
        server.status().wait_for("n", |n| {
            n.types.get(EDS).is_some_and(|t| t.subscribed_names == 2)
        }),
    )
    .await;
    cache
        .update_resources("n", EDS, [cla("b", 5)], [] as [&str; 0])
        .expect("valid");
    s.nothing_for(300).await;
    cache
        .update_resources("n", EDS, [cla("a", 5)], [] as [&str; 0])
        .expect("valid");
    let r = s.recv().await;
    assert_eq!(delta_names(&r), strings(&["a"]));

    // The missing resource appears: it is sent.
    cache
        .update_resources("n", EDS, [cla("missing", 1)], [] as [&str; 0])
        .expect("valid");
    let r = s.recv().await;
    assert_eq!(delta_names(&r), strings(&["missing"]));
}

#[tokio::test]
async fn delta_client_explicit_subscriptions() {
    let cache = Cache::new();
    cache.set_snapshot("n", full_snapshot()).expect("valid");
    let server = start(cache.clone()).await;
    let (c, rec) = client(
        server.local_addr(),
        "n",
        true,
        &[(RDS, Subscription::names(["r1"]))],
    );
    within(
        "rds",
        c.wait_for(|s| s.get(RDS).is_some_and(|t| t.acks == 1)),
    )
    .await;
    assert_eq!(rec.last(RDS).expect("seen").names, strings(&["r1"]));
    c.subscribe(RDS, Subscription::names(["r2"]));
    within(
        "r2",
        c.wait_for(|s| s.get(RDS).is_some_and(|t| t.acks == 2)),
    )
    .await;
    let last = rec.last(RDS).expect("seen");
    assert_eq!(last.names, strings(&["r2"]));
    within(
        "server sees r2 only",
        server.status().wait_for("n", |n| {
            n.types.get(RDS).is_some_and(|t| t.subscribed_names == 1)
        }),
    )
    .await;
    let responses = c.status().get(RDS).expect("rds").responses;
    cache
        .update_resources("n", RDS, [route("r1", 9)], [] as [&str; 0])
        .expect("valid");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        c.status().get(RDS).expect("rds").responses,
        responses,
        "r1 is unsubscribed"
    );
}

#[tokio::test]
async fn delta_wildcard_and_removal() {
    let cache = Cache::new();
    cache.set_snapshot("n", full_snapshot()).expect("valid");
    let server = start(cache.clone()).await;
    let mut s = RawDelta::connect(server.local_addr()).await;
    s.send(DeltaDiscoveryRequest {
        node: Some(node("n")),
        type_url: LISTENER.into(),
        resource_names_subscribe: strings(&["*"]),
        ..Default::default()
    });
    let r = s.recv().await;
    assert_eq!(delta_names(&r), strings(&["l"]));
    s.send(DeltaDiscoveryRequest {
        type_url: LISTENER.into(),
        response_nonce: r.nonce.clone(),
        ..Default::default()
    });
    cache
        .update_resources("n", LISTENER, [listener("m", 1)], [] as [&str; 0])
        .expect("valid");
    let r = s.recv().await;
    assert_eq!(delta_names(&r), strings(&["m"]));
    cache
        .update_resources("n", LISTENER, [], ["l"])
        .expect("valid");
    let r = s.recv().await;
    assert!(r.resources.is_empty());
    assert_eq!(r.removed_resources, strings(&["l"]));
}

#[tokio::test]
async fn delta_server_restart_client_reconnects_and_resyncs() {
    let cache = Cache::new();
    let v1 = cache.set_snapshot("n", full_snapshot()).expect("valid");
    let server = start(cache.clone()).await;
    let addr = server.local_addr();
    let (c, rec) = client(
        addr,
        "n",
        true,
        &[
            (CLUSTER, Subscription::Wildcard),
            (LISTENER, Subscription::Wildcard),
        ],
    );
    client_has(&c, CLUSTER, v1.version(CLUSTER).expect("cds")).await;
    client_has(&c, LISTENER, v1.version(LISTENER).expect("lds")).await;
    server.shutdown().await.expect("stops");
    within("client notices", c.wait_for(|s| !s.connected)).await;

    let cache2 = Cache::new();
    let v2 = cache2
        .set_snapshot(
            "n",
            full_snapshot().with(CLUSTER, [cluster("a", 1), cluster("new", 1)]),
        )
        .expect("valid");
    let server2 = serve(addr, cache2).await.expect("rebinds");
    client_has(&c, CLUSTER, v2.version(CLUSTER).expect("cds")).await;
    within(
        "ack",
        server2
            .status()
            .wait_acked("n", CLUSTER, v2.version(CLUSTER).expect("cds")),
    )
    .await;
    let last = rec.last(CLUSTER).expect("seen");
    assert_eq!(
        last.updated,
        strings(&["new"]),
        "only the difference is sent"
    );
    assert_eq!(last.removed, strings(&["b"]));
    assert_eq!(last.names, strings(&["a", "new"]));
    within(
        "listeners in sync",
        server2
            .status()
            .wait_acked("n", LISTENER, v1.version(LISTENER).expect("lds")),
    )
    .await;
    assert_eq!(
        server2.status().node("n").expect("connected").types[LISTENER].responses,
        0
    );
}

#[tokio::test]
async fn delta_client_with_current_versions_gets_no_resend() {
    let cache = Cache::new();
    let v = cache.set_snapshot("n", full_snapshot()).expect("valid");
    let server = start(cache.clone()).await;
    let mut s = RawDelta::connect(server.local_addr()).await;
    let have: HashMap<String, String> = ["a", "b"]
        .iter()
        .map(|n| (n.to_string(), cluster(n, 1).version))
        .collect();
    s.send(DeltaDiscoveryRequest {
        node: Some(node("n")),
        type_url: CLUSTER.into(),
        initial_resource_versions: have,
        ..Default::default()
    });
    s.nothing_for(300).await;
    let t = server.status().node("n").expect("connected").types[CLUSTER].clone();
    assert_eq!(t.state(), SyncState::Synced);
    assert_eq!(t.acked_version.as_deref(), v.version(CLUSTER));

    // A client with an outdated or extra resource gets just the difference.
    let mut s2 = RawDelta::connect(server.local_addr()).await;
    let have: HashMap<String, String> = [("a", "old"), ("gone", "x")]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    s2.send(DeltaDiscoveryRequest {
        node: Some(node("n2")),
        type_url: CLUSTER.into(),
        initial_resource_versions: have,
        ..Default::default()
    });
    // n2 has no snapshot yet: nothing until one is set.
    s2.nothing_for(100).await;
    cache.set_snapshot("n2", full_snapshot()).expect("valid");
    let r = s2.recv().await;
    assert_eq!(delta_names(&r), strings(&["a", "b"]));
    assert_eq!(r.removed_resources, strings(&["gone"]));
}
