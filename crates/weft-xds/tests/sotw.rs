//! State-of-the-world ADS over real gRPC on loopback: the weft client against the weft server,
//! and raw streams for protocol details.

mod support;

use std::time::Duration;

use support::*;
use weft_xds::cache::{Cache, Snapshot};
use weft_xds::client::Subscription;
use weft_xds::envoy::service::discovery::v3::DiscoveryRequest;
use weft_xds::google::rpc::Status as RpcStatus;
use weft_xds::server::{SyncState, serve};
use weft_xds::type_url::{
    CLUSTER, CLUSTER_LOAD_ASSIGNMENT as EDS, LISTENER, ROUTE_CONFIGURATION as RDS,
};

#[tokio::test]
async fn sotw_initial_fetch_and_ack_recorded() {
    let cache = Cache::new();
    let v = cache.set_snapshot("n1", full_snapshot()).expect("valid");
    let server = start(cache).await;
    let (c, rec) = client(
        server.local_addr(),
        "n1",
        false,
        &[
            (CLUSTER, Subscription::Wildcard),
            (LISTENER, Subscription::Wildcard),
        ],
    );
    let st = client_has(&c, CLUSTER, v.version(CLUSTER).expect("cds")).await;
    client_has(&c, LISTENER, v.version(LISTENER).expect("lds")).await;
    assert_eq!(st.get(CLUSTER).map(|t| t.resources), Some(2));
    assert_eq!(
        rec.last(CLUSTER).map(|s| s.names),
        Some(strings(&["a", "b"]))
    );

    within(
        "server to record the ACK",
        server
            .status()
            .wait_acked("n1", CLUSTER, v.version(CLUSTER).expect("cds")),
    )
    .await;
    let ns = server.status().node("n1").expect("connected");
    assert_eq!(ns.cluster, "test");
    assert!(!ns.delta);
    let t = &ns.types[CLUSTER];
    assert_eq!(t.state(), SyncState::Synced);
    assert_eq!(t.sent_version.as_deref(), v.version(CLUSTER));
    assert_eq!(t.acked_version.as_deref(), v.version(CLUSTER));
    assert_eq!(t.acked_nonce, t.sent_nonce);
    assert!(t.wildcard);
    // Types not subscribed are not sent.
    assert!(!ns.types.contains_key(EDS));
}

#[tokio::test]
async fn sotw_raw_ack_with_version_and_nonce() {
    let cache = Cache::new();
    let v = cache.set_snapshot("raw", full_snapshot()).expect("valid");
    let server = start(cache).await;
    let mut s = RawSotw::connect(server.local_addr()).await;
    s.send(DiscoveryRequest {
        node: Some(node("raw")),
        type_url: CLUSTER.into(),
        ..Default::default()
    });
    let r = s.recv().await;
    assert_eq!(r.version_info, v.version(CLUSTER).expect("cds"));
    assert_eq!(names(&r), strings(&["a", "b"]));
    assert!(!r.nonce.is_empty());
    within(
        "sent",
        server.status().wait_for("raw", |n| {
            n.types
                .get(CLUSTER)
                .is_some_and(|t| t.state() == SyncState::Stale)
        }),
    )
    .await;
    s.send(DiscoveryRequest {
        version_info: r.version_info.clone(),
        type_url: CLUSTER.into(),
        response_nonce: r.nonce.clone(),
        ..Default::default()
    });
    within(
        "ack",
        server.status().wait_acked("raw", CLUSTER, &r.version_info),
    )
    .await;
    let t = server.status().node("raw").expect("connected").types[CLUSTER].clone();
    assert_eq!(t.acked_nonce.as_deref(), Some(r.nonce.as_str()));
    // An ACK triggers no new response.
    s.nothing_for(200).await;
}

#[tokio::test]
async fn sotw_nack_recorded_and_client_keeps_last_good_version() {
    let cache = Cache::new();
    let good = cache.set_snapshot("n", full_snapshot()).expect("valid");
    let server = start(cache.clone()).await;
    let (c, rec) = client(
        server.local_addr(),
        "n",
        false,
        &[(CLUSTER, Subscription::Wildcard)],
    );
    let good_v = good.version(CLUSTER).expect("cds").to_string();
    client_has(&c, CLUSTER, &good_v).await;
    // The ACK must reach the server before the next push, or it is stale there.
    within("ack", server.status().wait_acked("n", CLUSTER, &good_v)).await;

    let bad = cache
        .update_resources("n", CLUSTER, [cluster("bad", 0)], [] as [&str; 0])
        .expect("valid");
    let bad_v = bad.version(CLUSTER).expect("cds").to_string();
    within(
        "NACK",
        server.status().wait_for("n", |s| {
            s.types.get(CLUSTER).is_some_and(|t| t.nack.is_some())
        }),
    )
    .await;
    let t = server.status().node("n").expect("connected").types[CLUSTER].clone();
    let nack = t.nack.clone().expect("nack");
    assert!(
        nack.error.contains("connect_timeout must be positive"),
        "{nack:?}"
    );
    assert_eq!(nack.rejected_version, bad_v);
    assert_eq!(nack.kept_version, good_v);
    assert_eq!(t.acked_version.as_deref(), Some(good_v.as_str()));
    assert_eq!(t.state(), SyncState::Stale);

    let st = c.status();
    let ct = st.get(CLUSTER).expect("cds");
    assert_eq!(ct.version, good_v, "client keeps its last good version");
    assert_eq!(ct.resources, 2, "client keeps its last good resources");
    assert_eq!(ct.nacks, 1);
    assert!(ct.last_error.as_deref().is_some_and(|e| e.contains("bad")));

    // Fixing the config gets an ACK again and clears the NACK.
    let fixed = cache
        .update_resources("n", CLUSTER, [cluster("c", 2)], ["bad"])
        .expect("valid");
    let fixed_v = fixed.version(CLUSTER).expect("cds");
    within(
        "ack after fix",
        server.status().wait_acked("n", CLUSTER, fixed_v),
    )
    .await;
    assert!(
        server.status().node("n").expect("connected").types[CLUSTER]
            .nack
            .is_none()
    );
    assert_eq!(
        rec.last(CLUSTER).expect("seen").names,
        strings(&["a", "b", "c"])
    );
}

#[tokio::test]
async fn sotw_update_pushes_only_the_changed_type() {
    let cache = Cache::new();
    let v = cache.set_snapshot("n", full_snapshot()).expect("valid");
    let server = start(cache.clone()).await;
    let (c, rec) = client(
        server.local_addr(),
        "n",
        false,
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
        .update_resources("n", CLUSTER, [cluster("a", 5)], [] as [&str; 0])
        .expect("valid");
    assert_eq!(upd.changed, strings(&[CLUSTER]));
    within(
        "cds ack",
        server
            .status()
            .wait_acked("n", CLUSTER, upd.version(CLUSTER).expect("cds")),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = c.status();
    for t in [EDS, LISTENER, RDS] {
        assert_eq!(
            after.get(t).map(|s| s.responses),
            before.get(t).map(|s| s.responses),
            "{t} was pushed"
        );
    }
    assert_eq!(
        after.get(CLUSTER).map(|s| s.responses),
        before.get(CLUSTER).map(|s| s.responses + 1)
    );
    assert_eq!(rec.last(CLUSTER).expect("seen").updated, strings(&["a"]));
}

#[tokio::test]
async fn sotw_stale_nonce_is_ignored() {
    let cache = Cache::new();
    let v1 = cache.set_snapshot("n", full_snapshot()).expect("valid");
    let server = start(cache.clone()).await;
    let mut s = RawSotw::connect(server.local_addr()).await;
    s.send(DiscoveryRequest {
        node: Some(node("n")),
        type_url: EDS.into(),
        resource_names: strings(&["a"]),
        ..Default::default()
    });
    let r1 = s.recv().await;
    assert_eq!(names(&r1), strings(&["a"]));
    // The config changes before the node ACKs r1: r2 crosses the node's next request.
    let v2 = cache
        .update_resources("n", EDS, [cla("a", 2)], [] as [&str; 0])
        .expect("valid");
    let r2 = s.recv().await;
    assert_eq!(r2.version_info, v2.version(EDS).expect("eds"));
    // A request carrying r1's nonce is stale: neither an ACK nor a subscription change.
    s.send(DiscoveryRequest {
        version_info: r1.version_info.clone(),
        type_url: EDS.into(),
        resource_names: strings(&["a", "b"]),
        response_nonce: r1.nonce.clone(),
        ..Default::default()
    });
    s.nothing_for(300).await;
    let t = server.status().node("n").expect("connected").types[EDS].clone();
    assert_eq!(t.acked_version, None, "stale ACK must not count");
    assert_eq!(t.sent_nonce.as_deref(), Some(r2.nonce.as_str()));
    assert_ne!(v1.version(EDS), v2.version(EDS));
    // The ACK of the latest nonce counts.
    s.send(DiscoveryRequest {
        version_info: r2.version_info.clone(),
        type_url: EDS.into(),
        resource_names: strings(&["a"]),
        response_nonce: r2.nonce.clone(),
        ..Default::default()
    });
    within(
        "ack",
        server.status().wait_acked("n", EDS, &r2.version_info),
    )
    .await;
}

#[tokio::test]
async fn sotw_raw_nack_with_error_detail() {
    let cache = Cache::new();
    cache.set_snapshot("n", full_snapshot()).expect("valid");
    let server = start(cache).await;
    let mut s = RawSotw::connect(server.local_addr()).await;
    s.send(DiscoveryRequest {
        node: Some(node("n")),
        type_url: LISTENER.into(),
        ..Default::default()
    });
    let r = s.recv().await;
    s.send(DiscoveryRequest {
        version_info: String::new(),
        type_url: LISTENER.into(),
        response_nonce: r.nonce.clone(),
        error_detail: Some(RpcStatus {
            code: 3,
            message: "listener l: no filter chains".into(),
            details: vec![],
        }),
        ..Default::default()
    });
    within(
        "nack",
        server.status().wait_for("n", |n| {
            n.types.get(LISTENER).is_some_and(|t| t.nack.is_some())
        }),
    )
    .await;
    let t = server.status().node("n").expect("connected").types[LISTENER].clone();
    let nack = t.nack.clone().expect("nack");
    assert_eq!(nack.error, "listener l: no filter chains");
    assert_eq!(nack.nonce, r.nonce);
    assert_eq!(t.acked_version, None);
    assert_eq!(t.state(), SyncState::Stale);
    // The server does not resend the rejected config.
    s.nothing_for(200).await;
}

#[tokio::test]
async fn sotw_explicit_subscriptions_get_only_named_resources() {
    let cache = Cache::new();
    cache.set_snapshot("n", full_snapshot()).expect("valid");
    let server = start(cache.clone()).await;
    let (c, rec) = client(
        server.local_addr(),
        "n",
        false,
        &[(EDS, Subscription::names(["a"]))],
    );
    within(
        "eds a",
        c.wait_for(|s| s.get(EDS).is_some_and(|t| t.acks == 1)),
    )
    .await;
    assert_eq!(rec.last(EDS).expect("seen").names, strings(&["a"]));

    c.subscribe(EDS, Subscription::names(["a", "b"]));
    within(
        "eds a b",
        c.wait_for(|s| s.get(EDS).is_some_and(|t| t.resources == 2)),
    )
    .await;
    assert_eq!(rec.last(EDS).expect("seen").names, strings(&["a", "b"]));

    // A change to an unsubscribed resource is not pushed.
    let responses = c.status().get(EDS).expect("eds").responses;
    cache
        .update_resources("n", EDS, [cla("c", 3)], [] as [&str; 0])
        .expect("valid");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.status().get(EDS).expect("eds").responses, responses);

    // Unsubscribing b stops its updates.
    c.subscribe(EDS, Subscription::names(["a"]));
    within(
        "server sees a only",
        server.status().wait_for("n", |n| {
            n.types.get(EDS).is_some_and(|t| t.subscribed_names == 1)
        }),
    )
    .await;
    let responses = c.status().get(EDS).expect("eds").responses;
    cache
        .update_resources("n", EDS, [cla("b", 3)], [] as [&str; 0])
        .expect("valid");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        c.status().get(EDS).expect("eds").responses,
        responses,
        "b is unsubscribed"
    );

    let upd = cache
        .update_resources("n", EDS, [cla("a", 4)], [] as [&str; 0])
        .expect("valid");
    client_has(&c, EDS, upd.version(EDS).expect("eds")).await;
    assert_eq!(rec.last(EDS).expect("seen").names, strings(&["a"]));
}

#[tokio::test]
async fn sotw_wildcard_and_removal() {
    let cache = Cache::new();
    cache.set_snapshot("n", full_snapshot()).expect("valid");
    let server = start(cache.clone()).await;
    let (c, rec) = client(
        server.local_addr(),
        "n",
        false,
        &[(CLUSTER, Subscription::Wildcard)],
    );
    within(
        "cds",
        c.wait_for(|s| s.get(CLUSTER).is_some_and(|t| t.acks == 1)),
    )
    .await;
    assert_eq!(rec.last(CLUSTER).expect("seen").names, strings(&["a", "b"]));

    // Wildcard: a new cluster arrives without subscribing to it.
    let add = cache
        .update_resources("n", CLUSTER, [cluster("z", 1)], [] as [&str; 0])
        .expect("valid");
    client_has(&c, CLUSTER, add.version(CLUSTER).expect("cds")).await;
    assert_eq!(
        rec.last(CLUSTER).expect("seen").names,
        strings(&["a", "b", "z"])
    );

    // Removal: absent from the next response.
    let rm = cache
        .update_resources("n", CLUSTER, [], ["b"])
        .expect("valid");
    client_has(&c, CLUSTER, rm.version(CLUSTER).expect("cds")).await;
    let last = rec.last(CLUSTER).expect("seen");
    assert_eq!(last.names, strings(&["a", "z"]));
    assert_eq!(last.removed, strings(&["b"]));
}

#[tokio::test]
async fn sotw_empty_wildcard_type_is_answered() {
    let cache = Cache::new();
    cache
        .set_snapshot("n", Snapshot::new().with(LISTENER, []))
        .expect("valid");
    let server = start(cache).await;
    let mut s = RawSotw::connect(server.local_addr()).await;
    s.send(DiscoveryRequest {
        node: Some(node("n")),
        type_url: LISTENER.into(),
        ..Default::default()
    });
    let r = s.recv().await;
    assert!(r.resources.is_empty());
}

#[tokio::test]
async fn sotw_first_request_without_node_is_rejected() {
    let server = start(Cache::new()).await;
    let mut s = RawSotw::connect(server.local_addr()).await;
    s.send(DiscoveryRequest {
        type_url: CLUSTER.into(),
        ..Default::default()
    });
    let err = within("error", s.rx.message()).await.expect_err("rejected");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn sotw_server_restart_client_reconnects_and_resyncs() {
    let cache = Cache::new();
    let v1 = cache.set_snapshot("n", full_snapshot()).expect("valid");
    let server = start(cache.clone()).await;
    let addr = server.local_addr();
    let (c, rec) = client(
        addr,
        "n",
        false,
        &[
            (CLUSTER, Subscription::Wildcard),
            (LISTENER, Subscription::Wildcard),
        ],
    );
    client_has(&c, CLUSTER, v1.version(CLUSTER).expect("cds")).await;
    server.shutdown().await.expect("stops");
    within("client notices", c.wait_for(|s| !s.connected)).await;

    // The config changes while the server is down; a new server (new cache) comes up.
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
        "server2 ack",
        server2
            .status()
            .wait_acked("n", CLUSTER, v2.version(CLUSTER).expect("cds")),
    )
    .await;
    let last = rec.last(CLUSTER).expect("seen");
    assert_eq!(last.names, strings(&["a", "new"]));
    assert_eq!(last.removed, strings(&["b"]));
    assert!(c.status().connects >= 2);
    // Listeners did not change: the client said it had them, and nothing was resent.
    let ns = server2.status().node("n").expect("connected");
    assert_eq!(ns.types[LISTENER].responses, 0);
    assert_eq!(ns.types[LISTENER].state(), SyncState::Synced);
}

#[tokio::test]
async fn sotw_client_with_current_versions_gets_no_resend() {
    let cache = Cache::new();
    let v = cache.set_snapshot("n", full_snapshot()).expect("valid");
    let server = start(cache.clone()).await;
    let addr = server.local_addr();
    let subs = [
        (CLUSTER, Subscription::Wildcard),
        (EDS, Subscription::names(["a", "b"])),
        (LISTENER, Subscription::Wildcard),
        (RDS, Subscription::names(["r1", "r2"])),
    ];
    let (c, rec) = client(addr, "n", false, &subs);
    for t in [CLUSTER, EDS, LISTENER, RDS] {
        client_has(&c, t, v.version(t).expect("type")).await;
    }
    let seen = rec.seen.lock().expect("lock").len();
    server.shutdown().await.expect("stops");

    // A restarted control plane that computes the same config.
    let cache2 = Cache::new();
    cache2.set_snapshot("n", full_snapshot()).expect("valid");
    let server2 = serve(addr, cache2).await.expect("rebinds");
    for t in [CLUSTER, EDS, LISTENER, RDS] {
        within(
            "in sync",
            server2
                .status()
                .wait_acked("n", t, v.version(t).expect("type")),
        )
        .await;
    }
    let ns = server2.status().node("n").expect("connected");
    for t in [CLUSTER, EDS, LISTENER, RDS] {
        assert_eq!(ns.types[t].responses, 0, "{t} was resent");
        assert_eq!(ns.types[t].state(), SyncState::Synced);
    }
    assert_eq!(
        rec.seen.lock().expect("lock").len(),
        seen,
        "callback ran again"
    );
    within(
        "client reconnected",
        c.wait_for(|s| s.connects == 2 && s.connected),
    )
    .await;
}

#[tokio::test]
async fn sotw_connect_hook_sets_the_snapshot_before_the_first_response() {
    let cache = Cache::new();
    let hook_cache = cache.clone();
    let (tx, mut gone) = tokio::sync::mpsc::unbounded_channel::<String>();
    let ads = weft_xds::server::AdsServer::new(cache.clone())
        .on_connect(move |n| {
            // What a control plane does: compute the node's config when it connects.
            hook_cache
                .set_snapshot(&n.id, full_snapshot())
                .expect("valid");
        })
        .on_disconnect(move |n| {
            let _ = tx.send(n.id.clone());
        });
    let server = weft_xds::server::serve_with("127.0.0.1:0".parse().expect("addr"), ads)
        .await
        .expect("starts");
    let mut s = RawSotw::connect(server.local_addr()).await;
    s.send(DiscoveryRequest {
        node: Some(node("hooked")),
        type_url: CLUSTER.into(),
        ..Default::default()
    });
    assert_eq!(names(&s.recv().await), strings(&["a", "b"]));
    drop(s);
    assert_eq!(
        within("disconnect hook", gone.recv()).await.as_deref(),
        Some("hooked")
    );
    within("status drops the node", async {
        while server.status().node("hooked").is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn sotw_closed_streams_reconnect_to_the_same_server_without_resend() {
    let cache = Cache::new();
    let v = cache.set_snapshot("n", full_snapshot()).expect("valid");
    let server = start(cache).await;
    let (c, _rec) = client(
        server.local_addr(),
        "n",
        false,
        &[(CLUSTER, Subscription::Wildcard)],
    );
    let cds = v.version(CLUSTER).expect("cds");
    within("ack", server.status().wait_acked("n", CLUSTER, cds)).await;
    let first = server.status().node("n").expect("connected").connection_id;
    server.server().close_streams();
    within(
        "reconnect",
        server
            .status()
            .wait_for("n", |n| n.connected && n.connection_id != first),
    )
    .await;
    within("in sync", server.status().wait_acked("n", CLUSTER, cds)).await;
    let ns = server.status().node("n").expect("connected");
    assert_eq!(
        ns.types[CLUSTER].responses, 0,
        "the client had this version"
    );
    within(
        "client reconnected",
        c.wait_for(|s| s.connects == 2 && s.connected),
    )
    .await;
}

#[tokio::test]
async fn sotw_bounds_the_types_one_stream_may_use() {
    let server = start(Cache::new()).await;
    let mut s = RawSotw::connect(server.local_addr()).await;
    for i in 0..65 {
        s.send(DiscoveryRequest {
            node: Some(node("greedy")),
            type_url: format!("type.googleapis.com/x.T{i}"),
            ..Default::default()
        });
    }
    let err = within("error", s.rx.message()).await.expect_err("rejected");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("resource types"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn sotw_named_types_carry_only_changed_resources_and_wildcard_types_everything() {
    let cache = Cache::new();
    cache.set_snapshot("part", full_snapshot()).expect("valid");
    let server = start(cache.clone()).await;
    let mut s = RawSotw::connect(server.local_addr()).await;
    s.send(DiscoveryRequest {
        node: Some(node("part")),
        type_url: EDS.into(),
        resource_names: strings(&["a", "b"]),
        ..Default::default()
    });
    let first = s.recv().await;
    assert_eq!(names(&first), strings(&["a", "b"]));
    s.send(DiscoveryRequest {
        version_info: first.version_info.clone(),
        type_url: EDS.into(),
        resource_names: strings(&["a", "b"]),
        response_nonce: first.nonce.clone(),
        ..Default::default()
    });
    s.send(DiscoveryRequest {
        type_url: CLUSTER.into(),
        ..Default::default()
    });
    let cds = s.recv().await;
    assert_eq!(names(&cds), strings(&["a", "b"]));
    s.send(DiscoveryRequest {
        version_info: cds.version_info.clone(),
        type_url: CLUSTER.into(),
        response_nonce: cds.nonce.clone(),
        ..Default::default()
    });
    within(
        "acks",
        server
            .status()
            .wait_acked("part", CLUSTER, &cds.version_info),
    )
    .await;

    // One endpoint changes: the EDS response carries it alone, under the new type version.
    let upd = cache
        .update_resources("part", EDS, [cla("b", 2)], [] as [&str; 0])
        .expect("valid");
    let r = s.recv().await;
    assert_eq!(r.type_url, EDS);
    assert_eq!(names(&r), strings(&["b"]));
    assert_eq!(r.version_info, upd.version(EDS).expect("eds"));
    assert_eq!(r.resources[0], cla("b", 2).body);
    // A change outside the subscription sends nothing.
    s.send(DiscoveryRequest {
        version_info: r.version_info.clone(),
        type_url: EDS.into(),
        resource_names: strings(&["a", "b"]),
        response_nonce: r.nonce.clone(),
        ..Default::default()
    });
    cache
        .update_resources("part", EDS, [cla("c", 2)], [] as [&str; 0])
        .expect("valid");
    s.nothing_for(200).await;

    // A subscribed resource that disappears: the full state (a alone) tells the node.
    cache
        .update_resources("part", EDS, [], ["b"])
        .expect("valid");
    let r = s.recv().await;
    assert_eq!(names(&r), strings(&["a"]));

    // Clusters are all sent whatever changed (LDS and CDS responses are the whole state).
    cache
        .update_resources("part", CLUSTER, [cluster("b", 9)], [] as [&str; 0])
        .expect("valid");
    let r = s.recv().await;
    assert_eq!(r.type_url, CLUSTER);
    assert_eq!(names(&r), strings(&["a", "b"]));
}

#[tokio::test]
async fn sotw_client_keeps_named_resources_a_partial_response_leaves_out() {
    let cache = Cache::new();
    cache.set_snapshot("keep", full_snapshot()).expect("valid");
    let server = start(cache.clone()).await;
    let (c, rec) = client(
        server.local_addr(),
        "keep",
        false,
        &[(EDS, Subscription::names(["a", "b"]))],
    );
    within(
        "eds",
        c.wait_for(|s| s.get(EDS).is_some_and(|t| t.acks == 1)),
    )
    .await;
    let upd = cache
        .update_resources("keep", EDS, [cla("a", 5)], [] as [&str; 0])
        .expect("valid");
    client_has(&c, EDS, upd.version(EDS).expect("eds")).await;
    let last = rec.last(EDS).expect("seen");
    // The response carried a alone; the client still has both, and reports a as updated.
    assert_eq!(last.names, strings(&["a", "b"]));
    assert_eq!(last.updated, strings(&["a"]));
    assert!(last.removed.is_empty());
    assert_eq!(c.status().get(EDS).expect("eds").resources, 2);
    within(
        "server sees the ack",
        server
            .status()
            .wait_acked("keep", EDS, upd.version(EDS).expect("eds")),
    )
    .await;
}
