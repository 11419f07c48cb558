//! The proxy as an ADS client, against weft-xds's ADS server over real gRPC on loopback: a
//! listener with RDS, route configurations, EDS clusters and endpoints for real hyper backends.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_xds::cache::{Cache, Resource, Snapshot};
use weft_xds::envoy::config::cluster::v3::Cluster;
use weft_xds::envoy::config::endpoint::v3::ClusterLoadAssignment;
use weft_xds::envoy::config::listener::v3::Listener;
use weft_xds::envoy::config::route::v3::RouteConfiguration;
use weft_xds::server::{ServerHandle, serve};
use weft_xds::type_url::{
    CLUSTER, CLUSTER_LOAD_ASSIGNMENT as EDS, LISTENER, ROUTE_CONFIGURATION as RDS,
};

const NODE: &str = "sidecar~127.0.0.1~proxy-1.default~default.svc.cluster.local";
const WAIT: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// Polls `check` every 20 ms until it returns true (10 s at most).
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within(what, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

fn yaml<T: prost::Message + prost::Name + Default>(text: &str) -> Resource {
    let msg: T = weft_xds::json::from_yaml(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    Resource::from_message(&msg).expect("named")
}

/// A listener with an HTTP connection manager that takes route configuration `route` from RDS.
fn listener(name: &str, ip: &str, route: &str) -> Resource {
    yaml::<Listener>(&format!(
        r#"
name: {name}
address: {{socket_address: {{address: {ip}, port_value: 0}}}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: {name}
      rds: {{route_config_name: {route}, config_source: {{ads: {{}}}}}}
      http_filters:
      - name: envoy.filters.http.router
        typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"#
    ))
}

/// A route configuration sending everything to `cluster` (weighted 100%).
fn route(name: &str, cluster: &str) -> Resource {
    yaml::<RouteConfiguration>(&format!(
        r#"
name: {name}
virtual_hosts:
- name: all
  domains: ["*"]
  routes:
  - match: {{prefix: /}}
    route: {{weighted_clusters: {{clusters: [{{name: {cluster}, weight: 100}}]}}}}
"#
    ))
}

/// A route configuration whose regex does not compile.
fn bad_route(name: &str) -> Resource {
    yaml::<RouteConfiguration>(&format!(
        r#"
name: {name}
virtual_hosts:
- name: all
  domains: ["*"]
  routes:
  - match: {{safe_regex: {{regex: "/(unclosed"}}}}
    route: {{cluster: a}}
"#
    ))
}

fn eds_cluster(name: &str) -> Resource {
    yaml::<Cluster>(&format!(
        r#"
name: {name}
type: EDS
connect_timeout: 1s
eds_cluster_config: {{eds_config: {{ads: {{}}}}}}
"#
    ))
}

fn cla(name: &str, addrs: &[SocketAddr]) -> Resource {
    let mut eps = String::new();
    for a in addrs {
        eps.push_str(&format!(
            "  - endpoint: {{address: {{socket_address: {{address: {}, port_value: {}}}}}}}\n",
            a.ip(),
            a.port()
        ));
    }
    yaml::<ClusterLoadAssignment>(&format!(
        "cluster_name: {name}\nendpoints:\n- lb_endpoints:\n{eps}"
    ))
}

/// A bootstrap with only the control plane as a static cluster and everything else from ADS.
fn bootstrap(xds: SocketAddr) -> String {
    bootstrap_with(xds, "GRPC")
}

fn bootstrap_with(xds: SocketAddr, api_type: &str) -> String {
    format!(
        r#"
node: {{id: "{NODE}", cluster: proxy}}
dynamic_resources:
  ads_config:
    api_type: {api_type}
    grpc_services:
    - envoy_grpc: {{cluster_name: xds-grpc}}
      retry_policy: {{retry_back_off: {{base_interval: 0.05s, max_interval: 0.5s}}}}
  lds_config: {{ads: {{}}}}
  cds_config: {{ads: {{}}}}
static_resources:
  clusters:
  - name: xds-grpc
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: xds-grpc
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: {}, port_value: {}}}}}}}
"#,
        xds.ip(),
        xds.port()
    )
}

/// Listener `web` (RDS `r`), EDS clusters `a` and `b`, `r` routing to `a`.
fn initial(a: &Backend, b: &Backend) -> Snapshot {
    Snapshot::new()
        .with(LISTENER, [listener("web", "127.0.0.1", "r")])
        .with(CLUSTER, [eds_cluster("a"), eds_cluster("b")])
        .with(RDS, [route("r", "a")])
        .with(EDS, [cla("a", &[a.addr]), cla("b", &[b.addr])])
}

async fn start_server(addr: &str, cache: &Cache) -> ServerHandle {
    serve(addr.parse().expect("addr"), cache.clone())
        .await
        .expect("xDS server starts")
}

/// The proxy's `web` listener once `/ready` says LIVE.
async fn ready(proxy: &weft_proxy::ProxyHandle) -> SocketAddr {
    until("/ready to say LIVE", || async {
        admin_get(proxy, "/ready").await.status == 200
    })
    .await;
    proxy.listener_addr("web").expect("listener web is bound")
}

async fn backend_of(addr: SocketAddr) -> String {
    let g = get(addr, "example.com", "/").await;
    assert_eq!(g.status, 200, "{}", g.text());
    g.echo().backend
}

async fn wait_acked(server: &ServerHandle, type_url: &str, version: &str) {
    within(
        &format!("the node to ACK {type_url} {version}"),
        server.status().wait_acked(NODE, type_url, version),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ads_initial_config_serves_traffic_after_ready() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let cache = Cache::new();
    let server = start_server("127.0.0.1:0", &cache).await;
    let proxy = start(&bootstrap(server.local_addr()));

    // Nothing pushed yet: not ready, no listener.
    let g = admin_get(&proxy, "/ready").await;
    assert_eq!(g.status, 503, "{}", g.text());
    assert!(proxy.listener_addr("web").is_none());

    let v = cache.set_snapshot(NODE, initial(&a, &b)).expect("valid");
    let addr = ready(&proxy).await;
    assert_eq!(backend_of(addr).await, "a");
    for t in [CLUSTER, EDS, LISTENER, RDS] {
        wait_acked(&server, t, v.version(t).expect("version")).await;
    }
    assert!(proxy.unsupported().is_empty(), "{:?}", proxy.unsupported());
    let listeners = admin_get(&proxy, "/listeners").await.text();
    assert!(listeners.contains(&format!("web::{addr}")), "{listeners}");

    // /config_dump shows the dynamic resources with their versions.
    let g = admin_get(&proxy, "/config_dump").await;
    let dump: serde_json::Value = serde_json::from_slice(&g.body).expect("json");
    let configs = dump["configs"].as_array().expect("configs");
    let of = |t: &str| {
        configs
            .iter()
            .find(|c| c["@type"].as_str().is_some_and(|s| s.ends_with(t)))
            .unwrap_or_else(|| panic!("{t} in {dump}"))
    };
    let clusters = of("ClustersConfigDump");
    assert_eq!(clusters["version_info"], v.version(CLUSTER).unwrap());
    assert_eq!(
        clusters["static_clusters"][0]["cluster"]["name"],
        "xds-grpc"
    );
    let dynamic = clusters["dynamic_active_clusters"]
        .as_array()
        .expect("dynamic clusters");
    assert_eq!(dynamic.len(), 2);
    assert_eq!(dynamic[0]["cluster"]["name"], "a");
    assert_eq!(dynamic[0]["version_info"], v.version(CLUSTER).unwrap());
    let l = of("ListenersConfigDump");
    assert_eq!(l["dynamic_listeners"][0]["name"], "web");
    assert_eq!(
        l["dynamic_listeners"][0]["active_state"]["version_info"],
        v.version(LISTENER).unwrap()
    );
    let r = of("RoutesConfigDump");
    assert_eq!(r["dynamic_route_configs"][0]["route_config"]["name"], "r");
    assert_eq!(
        r["dynamic_route_configs"][0]["version_info"],
        v.version(RDS).unwrap()
    );
    let e = of("EndpointsConfigDump");
    assert_eq!(
        e["dynamic_endpoint_configs"][1]["endpoint_config"]["cluster_name"],
        "b"
    );

    let st = proxy.xds_status().expect("ADS client");
    assert!(st.connected);
    assert_eq!(st.get(RDS).map(|t| t.acks), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ads_route_update_nack_and_endpoint_change() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let cache = Cache::new();
    let server = start_server("127.0.0.1:0", &cache).await;
    let proxy = start(&bootstrap(server.local_addr()));
    let v = cache.set_snapshot(NODE, initial(&a, &b)).expect("valid");
    let addr = ready(&proxy).await;
    assert_eq!(backend_of(addr).await, "a");
    wait_acked(&server, RDS, v.version(RDS).unwrap()).await;

    // A new route: 100% to cluster b.
    let good = cache
        .update_resources(NODE, RDS, [route("r", "b")], [] as [&str; 0])
        .expect("valid");
    let good_v = good.version(RDS).unwrap().to_string();
    wait_acked(&server, RDS, &good_v).await;
    for _ in 0..5 {
        assert_eq!(backend_of(addr).await, "b");
    }
    // A keep-alive connection opened before sees later route changes too.
    let mut keep = H1::connect(addr).await;
    assert_eq!(keep.get("x", "/").await.echo().backend, "b");

    // An invalid route is NACKed with the compiler's message; traffic keeps the old route.
    let bad = cache
        .update_resources(NODE, RDS, [bad_route("r")], [] as [&str; 0])
        .expect("valid");
    let bad_v = bad.version(RDS).unwrap().to_string();
    within(
        "the NACK",
        server.status().wait_for(NODE, |n| {
            n.types
                .get(RDS)
                .and_then(|t| t.nack.as_ref())
                .is_some_and(|k| k.rejected_version == bad_v)
        }),
    )
    .await;
    let t = server.status().node(NODE).expect("connected").types[RDS].clone();
    let nack = t.nack.expect("nack");
    assert!(
        nack.error.contains("route_configuration \"r\"") && nack.error.contains("regex"),
        "{nack:?}"
    );
    assert_eq!(nack.kept_version, good_v);
    assert_eq!(t.acked_version.as_deref(), Some(good_v.as_str()));
    for _ in 0..5 {
        assert_eq!(backend_of(addr).await, "b");
    }
    assert_eq!(keep.get("x", "/").await.echo().backend, "b");
    let st = proxy.xds_status().expect("client");
    assert_eq!(st.get(RDS).map(|t| t.nacks), Some(1));

    // An endpoint change moves traffic without touching routes.
    let routes_before = proxy.snapshot().routes.get("r").cloned().expect("route r");
    let eds = cache
        .update_resources(NODE, EDS, [cla("b", &[c.addr])], [] as [&str; 0])
        .expect("valid");
    wait_acked(&server, EDS, eds.version(EDS).unwrap()).await;
    for _ in 0..5 {
        assert_eq!(backend_of(addr).await, "c");
    }
    assert_eq!(keep.get("x", "/").await.echo().backend, "c");
    let routes_after = proxy.snapshot().routes.get("r").cloned().expect("route r");
    assert!(
        std::sync::Arc::ptr_eq(&routes_before, &routes_after),
        "an EDS update must not recompile routes"
    );
    let clusters = admin_get(&proxy, "/clusters").await.text();
    assert!(clusters.contains(&format!("b::{}::", c.addr)), "{clusters}");
    assert!(
        !clusters.contains(&format!("b::{}::", b.addr)),
        "{clusters}"
    );

    // Fixing the route is ACKed again.
    let fixed = cache
        .update_resources(NODE, RDS, [route("r", "a")], [] as [&str; 0])
        .expect("valid");
    wait_acked(&server, RDS, fixed.version(RDS).unwrap()).await;
    assert_eq!(backend_of(addr).await, "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ads_invalid_cluster_and_listener_are_nacked() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let cache = Cache::new();
    let server = start_server("127.0.0.1:0", &cache).await;
    let proxy = start(&bootstrap(server.local_addr()));
    cache.set_snapshot(NODE, initial(&a, &b)).expect("valid");
    let addr = ready(&proxy).await;

    // A dynamic cluster may not take the static cluster's name.
    let dup = yaml::<Cluster>("name: xds-grpc\ntype: EDS\nconnect_timeout: 1s\n");
    let bad = cache
        .update_resources(NODE, CLUSTER, [dup], [] as [&str; 0])
        .expect("valid");
    let bad_v = bad.version(CLUSTER).unwrap().to_string();
    within(
        "the CDS NACK",
        server.status().wait_for(NODE, |n| {
            n.types
                .get(CLUSTER)
                .and_then(|t| t.nack.as_ref())
                .is_some_and(|k| k.rejected_version == bad_v)
        }),
    )
    .await;
    let nack = server.status().node(NODE).unwrap().types[CLUSTER]
        .nack
        .clone()
        .unwrap();
    assert!(
        nack.error
            .contains("cluster \"xds-grpc\": name: two clusters have this name"),
        "{nack:?}"
    );
    assert_eq!(backend_of(addr).await, "a");

    // A listener on an address that is taken cannot bind: NACK, and the others keep serving.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let l = yaml::<Listener>(&format!(
        r#"
name: clash
address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
filter_chains:
- filters:
  - name: tcp
    typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: a}}
"#
    ));
    let bad = cache
        .update_resources(NODE, LISTENER, [l], [] as [&str; 0])
        .expect("valid");
    let bad_v = bad.version(LISTENER).unwrap().to_string();
    within(
        "the LDS NACK",
        server.status().wait_for(NODE, |n| {
            n.types
                .get(LISTENER)
                .and_then(|t| t.nack.as_ref())
                .is_some_and(|k| k.rejected_version == bad_v)
        }),
    )
    .await;
    let nack = server.status().node(NODE).unwrap().types[LISTENER]
        .nack
        .clone()
        .unwrap();
    assert!(
        nack.error.contains("listener \"clash\": cannot bind"),
        "{nack:?}"
    );
    assert!(proxy.listener_addr("clash").is_none());
    assert_eq!(backend_of(addr).await, "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ads_listeners_added_removed_and_moved() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let cache = Cache::new();
    let server = start_server("127.0.0.1:0", &cache).await;
    let proxy = start(&bootstrap(server.local_addr()));
    cache.set_snapshot(NODE, initial(&a, &b)).expect("valid");
    let web = ready(&proxy).await;

    // A second listener appears: bound and serving (its own route to b).
    cache
        .update_resources(NODE, RDS, [route("r2", "b")], [] as [&str; 0])
        .expect("valid");
    let v = cache
        .update_resources(
            NODE,
            LISTENER,
            [listener("api", "127.0.0.1", "r2")],
            [] as [&str; 0],
        )
        .expect("valid");
    wait_acked(&server, LISTENER, v.version(LISTENER).unwrap()).await;
    let api = proxy.listener_addr("api").expect("api bound");
    until("api to route to b", || async {
        get(api, "x", "/").await.status == 200
    })
    .await;
    assert_eq!(backend_of(api).await, "b");
    assert_eq!(backend_of(web).await, "a");

    // A keep-alive connection on `api` is drained when `api` goes away.
    let mut held = tokio::net::TcpStream::connect(api).await.unwrap();
    held.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"}") {
        let n = within("the response", held.read(&mut buf)).await.unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).contains("\"backend\":\"b\""));
    let v = cache
        .update_resources(NODE, LISTENER, [] as [Resource; 0], ["api"])
        .expect("valid");
    wait_acked(&server, LISTENER, v.version(LISTENER).unwrap()).await;
    assert!(proxy.listener_addr("api").is_none());
    let n = within("the held connection to be closed", held.read(&mut buf))
        .await
        .unwrap_or(0);
    assert_eq!(n, 0, "{}", String::from_utf8_lossy(&buf[..n]));
    until("api to stop accepting", || async {
        tokio::net::TcpStream::connect(api).await.is_err()
    })
    .await;
    assert_eq!(backend_of(web).await, "a");

    // `web` moves to another address: the old socket closes, the new one serves.
    let v = cache
        .update_resources(
            NODE,
            LISTENER,
            [listener("web", "127.0.0.2", "r")],
            [] as [&str; 0],
        )
        .expect("valid");
    wait_acked(&server, LISTENER, v.version(LISTENER).unwrap()).await;
    let moved = proxy.listener_addr("web").expect("web bound");
    assert_eq!(moved.ip().to_string(), "127.0.0.2");
    assert_eq!(backend_of(moved).await, "a");
    until("the old web socket to close", || async {
        tokio::net::TcpStream::connect(web).await.is_err()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ads_listener_updated_in_place_drains_its_connections() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let cache = Cache::new();
    let server = start_server("127.0.0.1:0", &cache).await;
    let proxy = start(&bootstrap(server.local_addr()));
    cache.set_snapshot(NODE, initial(&a, &b)).expect("valid");
    let web = ready(&proxy).await;
    assert_eq!(backend_of(web).await, "a");

    // A keep-alive connection served under the first definition of `web` (route `r` to a).
    let mut held = tokio::net::TcpStream::connect(web).await.unwrap();
    held.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"}") {
        let n = within("the response", held.read(&mut buf)).await.unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).contains("\"backend\":\"a\""));

    // `web` changes in place (same address, another route): the held connection is drained
    // (closed once idle), new connections get the new definition on the same socket.
    cache
        .update_resources(NODE, RDS, [route("r2", "b")], [] as [&str; 0])
        .expect("valid");
    let v = cache
        .update_resources(
            NODE,
            LISTENER,
            [listener("web", "127.0.0.1", "r2")],
            [] as [&str; 0],
        )
        .expect("valid");
    wait_acked(&server, LISTENER, v.version(LISTENER).unwrap()).await;
    assert_eq!(proxy.listener_addr("web"), Some(web));
    let n = within("the held connection to be closed", held.read(&mut buf))
        .await
        .unwrap_or(0);
    assert_eq!(n, 0, "{}", String::from_utf8_lossy(&buf[..n]));
    until("web to route to b", || async {
        get(web, "x", "/").await.status == 200 && backend_of(web).await == "b"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ads_keeps_serving_while_control_plane_is_away_and_resyncs() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let cache = Cache::new();
    let server = start_server("127.0.0.1:0", &cache).await;
    let xds = server.local_addr();
    let proxy = start(&bootstrap(xds));
    let v = cache.set_snapshot(NODE, initial(&a, &b)).expect("valid");
    let addr = ready(&proxy).await;
    wait_acked(&server, RDS, v.version(RDS).unwrap()).await;
    assert_eq!(backend_of(addr).await, "a");

    server.shutdown().await.expect("server stops");
    until("the client to notice", || async {
        proxy.xds_status().is_some_and(|s| !s.connected)
    })
    .await;
    for _ in 0..5 {
        assert_eq!(backend_of(addr).await, "a");
    }
    assert_eq!(admin_get(&proxy, "/ready").await.status, 200);

    // The control plane changed its mind while it was away; on restart the proxy resyncs.
    let connects = proxy.xds_status().unwrap().connects;
    let changed = cache
        .update_resources(NODE, RDS, [route("r", "b")], [] as [&str; 0])
        .expect("valid");
    let server = start_server(&xds.to_string(), &cache).await;
    wait_acked(&server, RDS, changed.version(RDS).unwrap()).await;
    assert!(proxy.xds_status().unwrap().connects > connects);
    for _ in 0..5 {
        assert_eq!(backend_of(addr).await, "b");
    }
    let eds = cache
        .update_resources(NODE, EDS, [cla("b", &[a.addr])], [] as [&str; 0])
        .expect("valid");
    wait_acked(&server, EDS, eds.version(EDS).unwrap()).await;
    assert_eq!(backend_of(addr).await, "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ads_delta_grpc() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let cache = Cache::new();
    let server = start_server("127.0.0.1:0", &cache).await;
    let proxy = start(&bootstrap_with(server.local_addr(), "DELTA_GRPC"));
    cache.set_snapshot(NODE, initial(&a, &b)).expect("valid");
    let addr = ready(&proxy).await;
    assert_eq!(backend_of(addr).await, "a");
    assert!(server.status().node(NODE).expect("connected").delta);
    let v = cache
        .update_resources(NODE, RDS, [route("r", "b")], [] as [&str; 0])
        .expect("valid");
    wait_acked(&server, RDS, v.version(RDS).unwrap()).await;
    assert_eq!(backend_of(addr).await, "b");
    let v = cache
        .update_resources(NODE, EDS, [cla("b", &[a.addr])], [] as [&str; 0])
        .expect("valid");
    wait_acked(&server, EDS, v.version(EDS).unwrap()).await;
    assert_eq!(backend_of(addr).await, "a");
}
