//! The control plane end to end, with real sockets: a config directory of Istio's bookinfo, the
//! control plane in-process on 127.0.0.1:0, and a weft-xds `AdsClient` as the productpage
//! sidecar (node id in Istio's form), which subscribes as Envoy does (CDS and LDS, then EDS and
//! RDS for the names they carry) and ACKs what it gets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weft_control::server::admin::ProxyInfo;
use weft_control::server::client::AdminClient;
use weft_control::server::{ControlPlane, Options};
use weft_control::translate::envoy::unpack;
use weft_xds::client::{AdsClient, ClientConfig, Subscription, Update};
use weft_xds::envoy::config::cluster::v3::Cluster;
use weft_xds::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use weft_xds::envoy::config::core::v3::Node;
use weft_xds::envoy::config::endpoint::v3::ClusterLoadAssignment;
use weft_xds::envoy::config::listener::v3::Listener;
use weft_xds::envoy::config::listener::v3::filter::ConfigType;
use weft_xds::envoy::config::route::v3::RouteConfiguration;
use weft_xds::envoy::config::route::v3::route::Action;
use weft_xds::envoy::config::route::v3::route_action::ClusterSpecifier;
use weft_xds::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use weft_xds::google::protobuf::{Any, Struct, Value, value::Kind as PbKind};
use weft_xds::type_url::{CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION};

const WAIT: Duration = Duration::from_secs(20);
const NODE: &str = "sidecar~10.1.0.1~productpage-v1-abc.default~default.svc.cluster.local";
const REVIEWS_V1: &str = "outbound|9080|v1|reviews.default.svc.cluster.local";
const REVIEWS_V2: &str = "outbound|9080|v2|reviews.default.svc.cluster.local";
const REVIEWS_V3: &str = "outbound|9080|v3|reviews.default.svc.cluster.local";

fn bookinfo() -> PathBuf {
    let base = std::env::var("WEFT_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/istio")
        });
    base.join("bookinfo")
}

fn pod(name: &str, app: &str, version: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\n  labels: {{app: {app}, version: {version}}}\nspec:\n  serviceAccountName: bookinfo-{app}\n  containers: [{{name: app, image: x}}]\nstatus:\n  podIP: {ip}\n"
    )
}

/// A temp config dir with bookinfo's platform, its DestinationRules and one pod per workload.
fn config_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weft-cp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    let b = bookinfo();
    for (from, to) in [
        ("platform/bookinfo.yaml", "bookinfo.yaml"),
        (
            "networking/destination-rule-all.yaml",
            "destination-rule-all.yaml",
        ),
    ] {
        std::fs::copy(b.join(from), d.join(to))
            .unwrap_or_else(|e| panic!("copy {from} from {}: {e}", b.display()));
    }
    let pods = [
        pod("productpage-v1-abc", "productpage", "v1", "10.1.0.1"),
        pod("details-v1-abc", "details", "v1", "10.1.0.2"),
        pod("ratings-v1-abc", "ratings", "v1", "10.1.0.3"),
        pod("reviews-v1-abc", "reviews", "v1", "10.1.0.4"),
        pod("reviews-v2-abc", "reviews", "v2", "10.1.0.5"),
        pod("reviews-v3-abc", "reviews", "v3", "10.1.0.6"),
    ]
    .join("---\n");
    std::fs::write(d.join("pods.yaml"), pods).expect("write pods");
    d
}

fn options(dir: &Path) -> Options {
    let mut o = Options::new(dir).ephemeral();
    o.debounce = Duration::from_millis(20);
    o.poll_interval = Duration::from_millis(50);
    o
}

/// What the fake proxy holds, by type and name.
type Held = Arc<Mutex<BTreeMap<String, BTreeMap<String, Any>>>>;

fn labels_metadata() -> Struct {
    let s = |v: &str| Value {
        kind: Some(PbKind::StringValue(v.to_string())),
    };
    let labels = Struct {
        fields: [
            ("app".to_string(), s("productpage")),
            ("version".to_string(), s("v1")),
        ]
        .into(),
    };
    Struct {
        fields: [
            (
                "LABELS".to_string(),
                Value {
                    kind: Some(PbKind::StructValue(labels)),
                },
            ),
            ("ISTIO_VERSION".to_string(), s("1.24.0")),
        ]
        .into(),
    }
}

fn rds_names(l: &Listener) -> Vec<String> {
    let mut out = Vec::new();
    for fc in l.filter_chains.iter().chain(l.default_filter_chain.iter()) {
        for f in &fc.filters {
            let Some(ConfigType::TypedConfig(any)) = &f.config_type else {
                continue;
            };
            if let Some(m) = unpack::<hcm::HttpConnectionManager>(any)
                && let Some(hcm::http_connection_manager::RouteSpecifier::Rds(r)) =
                    m.route_specifier
            {
                out.push(r.route_config_name);
            }
        }
    }
    out
}

/// Starts an Envoy-like client: wildcard CDS and LDS, then EDS for EDS clusters and RDS for
/// the route names in the listeners.
fn start_proxy(xds: std::net::SocketAddr) -> (AdsClient, Held) {
    start_proxy_as(xds, NODE)
}

/// [`start_proxy`] with another node id (same labels).
fn start_proxy_as(xds: std::net::SocketAddr, id: &str) -> (AdsClient, Held) {
    let node = Node {
        id: id.to_string(),
        cluster: "productpage.default".to_string(),
        metadata: Some(labels_metadata()),
        ..Default::default()
    };
    let cfg = ClientConfig::new(format!("http://{xds}"), node)
        .backoff(Duration::from_millis(50), Duration::from_millis(200));
    let mut client = AdsClient::new(cfg).expect("client");
    let subs = client.subscriber();
    client.subscribe(CLUSTER, Subscription::Wildcard);
    client.subscribe(LISTENER, Subscription::Wildcard);
    let held: Held = Arc::default();
    let h = held.clone();
    client
        .start(move |u: &Update<'_>| {
            if u.type_url == CLUSTER {
                let eds: Vec<String> = u
                    .resources
                    .values()
                    .filter_map(unpack::<Cluster>)
                    .filter(|c| {
                        c.cluster_discovery_type
                            == Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32))
                    })
                    .map(|c| c.name)
                    .collect();
                subs.subscribe(CLUSTER_LOAD_ASSIGNMENT, Subscription::names(eds));
            }
            if u.type_url == LISTENER {
                let names: Vec<String> = u
                    .resources
                    .values()
                    .filter_map(unpack::<Listener>)
                    .flat_map(|l| rds_names(&l))
                    .collect();
                subs.subscribe(ROUTE_CONFIGURATION, Subscription::names(names));
            }
            h.lock()
                .expect("lock")
                .insert(u.type_url.to_string(), u.resources.clone());
            Ok(())
        })
        .expect("start");
    (client, held)
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn eventually_async<F: std::future::Future<Output = bool>>(
    what: &str,
    mut f: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f().await {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

fn get<T: prost::Message + prost::Name + Default>(held: &Held, t: &str, name: &str) -> Option<T> {
    held.lock()
        .expect("lock")
        .get(t)
        .and_then(|m| m.get(name))
        .and_then(unpack::<T>)
}

/// The clusters (with weights) the `reviews` virtual host of route `9080` sends to.
fn reviews_route(held: &Held) -> Vec<(String, u32)> {
    let Some(rc) = get::<RouteConfiguration>(held, ROUTE_CONFIGURATION, "9080") else {
        return Vec::new();
    };
    let Some(vh) = rc
        .virtual_hosts
        .iter()
        .find(|v| v.name == "reviews.default.svc.cluster.local:9080")
    else {
        return Vec::new();
    };
    match vh
        .routes
        .first()
        .and_then(|r| r.action.as_ref())
        .and_then(|a| match a {
            Action::Route(r) => r.cluster_specifier.clone(),
            _ => None,
        }) {
        Some(ClusterSpecifier::Cluster(c)) => vec![(c, 100)],
        Some(ClusterSpecifier::WeightedClusters(w)) => w
            .clusters
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    c.weight.as_ref().map(|x| x.value).unwrap_or(0),
                )
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn endpoint_count(held: &Held, cluster: &str) -> usize {
    get::<ClusterLoadAssignment>(held, CLUSTER_LOAD_ASSIGNMENT, cluster)
        .map(|c| c.endpoints.iter().map(|l| l.lb_endpoints.len()).sum())
        .unwrap_or(0)
}

async fn proxies(admin: &AdminClient) -> Vec<ProxyInfo> {
    let a = admin.get("/proxies").await.expect("GET /proxies");
    assert!(a.ok(), "{a:?}");
    serde_json::from_str(&a.body).expect("proxy list")
}

async fn all_synced(admin: &AdminClient) -> bool {
    proxies(admin).await.iter().any(|p| {
        p.id == NODE
            && ["cds", "lds", "eds", "rds"]
                .iter()
                .all(|t| p.types.get(*t).is_some_and(|s| s.state == "SYNCED"))
    })
}

fn admin_of(cp: &ControlPlane) -> AdminClient {
    AdminClient::new(&format!("http://{}", cp.admin_addr())).expect("admin client")
}

async fn ready(cp: &ControlPlane) -> (AdsClient, Held, AdminClient) {
    let (client, held) = start_proxy(cp.xds_addr());
    let admin = admin_of(cp);
    eventually("bookinfo clusters, endpoints and routes", || {
        endpoint_count(&held, REVIEWS_V1) == 1
            && endpoint_count(&held, REVIEWS_V3) == 1
            && get::<Listener>(&held, LISTENER, "0.0.0.0_9080").is_some()
            && !reviews_route(&held).is_empty()
    })
    .await;
    eventually_async("proxy-status SYNCED", || all_synced(&admin)).await;
    (client, held, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookinfo_proxy_gets_every_type_and_is_synced() {
    let dir = config_dir("sync");
    let cp = ControlPlane::start(options(&dir)).await.expect("start");
    let (client, held, admin) = ready(&cp).await;
    // Istio's names: outbound clusters per subset, the inbound cluster of the proxy's own port,
    // the port listener, and route configuration 9080 with a virtual host per service.
    for c in [
        REVIEWS_V1,
        REVIEWS_V2,
        REVIEWS_V3,
        "inbound|9080||",
        "BlackHoleCluster",
    ] {
        assert!(get::<Cluster>(&held, CLUSTER, c).is_some(), "cluster {c}");
    }
    assert!(get::<Listener>(&held, LISTENER, "virtualOutbound").is_some());
    assert_eq!(endpoint_count(&held, REVIEWS_V2), 1);
    // Without a VirtualService, reviews goes to all its endpoints.
    assert_eq!(
        reviews_route(&held),
        vec![(
            "outbound|9080||reviews.default.svc.cluster.local".to_string(),
            100
        )]
    );
    let list = proxies(&admin).await;
    let p = list.iter().find(|p| p.id == NODE).expect("listed");
    assert_eq!(p.version, "1.24.0");
    // The config dump has the same resources, as Envoy JSON.
    let a = admin
        .get(&format!("/proxies/{NODE}/config"))
        .await
        .expect("config");
    assert!(a.ok(), "{a:?}");
    let dump: serde_json::Value = a.json().expect("json");
    let r = weft_control::server::route_check::resources_from_config_dump(&dump).expect("dump");
    assert!(r.cluster(REVIEWS_V1).is_some());
    assert!(r.route("9080").is_some());
    let m = admin.get("/metrics").await.expect("metrics");
    assert!(m.body.contains("pilot_xds 1"), "{}", m.body);
    assert!(
        m.body.contains("pilot_proxy_convergence_time_count"),
        "{}",
        m.body
    );
    client.shutdown().await;
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applying_reviews_90_10_pushes_weighted_clusters_and_is_acked() {
    let dir = config_dir("apply");
    let cp = ControlPlane::start(options(&dir)).await.expect("start");
    let (client, held, admin) = ready(&cp).await;
    let rds_acks = client
        .status()
        .get(ROUTE_CONFIGURATION)
        .map(|t| t.acks)
        .unwrap_or(0);
    let yaml =
        std::fs::read_to_string(bookinfo().join("networking/virtual-service-reviews-90-10.yaml"))
            .expect("read vs");
    let a = admin.post("/apply", yaml).await.expect("apply");
    assert!(a.ok(), "{a:?}");
    assert!(
        a.body.contains("VirtualService default/reviews"),
        "{}",
        a.body
    );
    assert!(dir.join("virtualservice-default-reviews.yaml").is_file());
    eventually("route 90/10", || {
        reviews_route(&held) == vec![(REVIEWS_V1.to_string(), 90), (REVIEWS_V2.to_string(), 10)]
    })
    .await;
    // The client ACKed the new RDS version and the server knows it.
    eventually("RDS ACK", || {
        client
            .status()
            .get(ROUTE_CONFIGURATION)
            .is_some_and(|t| t.acks > rds_acks && t.nacks == 0)
    })
    .await;
    let version = client
        .status()
        .get(ROUTE_CONFIGURATION)
        .map(|t| t.version.clone())
        .expect("rds status");
    tokio::time::timeout(
        WAIT,
        cp.status().wait_acked(NODE, ROUTE_CONFIGURATION, &version),
    )
    .await
    .expect("server saw the ACK");
    eventually_async("proxy-status SYNCED", || all_synced(&admin)).await;
    // GET and DELETE through the admin API; deleting goes back to the default route.
    let g = admin
        .get("/resources?kind=vs&namespace=default&name=reviews")
        .await
        .expect("get");
    assert!(g.body.contains("\"weight\":90"), "{}", g.body);
    let d = admin
        .delete("/resources/VirtualService/default/reviews")
        .await
        .expect("delete");
    assert!(d.ok(), "{d:?}");
    assert!(!dir.join("virtualservice-default-reviews.yaml").exists());
    eventually("default route again", || {
        reviews_route(&held).len() == 1 && reviews_route(&held)[0].0.contains("9080||reviews")
    })
    .await;
    let missing = admin
        .delete("/resources/VirtualService/default/reviews")
        .await
        .expect("delete");
    assert_eq!(missing.status, 404);
    client.shutdown().await;
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_file_is_rejected_and_last_good_config_keeps_serving() {
    let dir = config_dir("bad");
    let cp = ControlPlane::start(options(&dir)).await.expect("start");
    let (client, held, admin) = ready(&cp).await;
    let good =
        std::fs::read_to_string(bookinfo().join("networking/virtual-service-reviews-v3.yaml"))
            .expect("read vs");
    std::fs::write(dir.join("reviews.yaml"), &good).expect("write");
    eventually("route to v3", || {
        reviews_route(&held) == vec![(REVIEWS_V3.to_string(), 100)]
    })
    .await;
    let revision = cp.revision();
    // A typo in a field name and a weight over 100: both errors are reported, nothing changes.
    let bad = good.replace(
        "subset: v3",
        "subset: v2\n      weight: 400\n      colour: red",
    );
    std::fs::write(dir.join("reviews.yaml"), bad).expect("write");
    eventually_async("rejection in /status", || async {
        let s = admin
            .get("/status")
            .await
            .expect("status")
            .json()
            .expect("json");
        s["rejected"].as_array().is_some_and(|r| {
            r.iter().any(|f| {
                f["file"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("reviews.yaml"))
            })
        })
    })
    .await;
    let s = admin
        .get("/status")
        .await
        .expect("status")
        .json()
        .expect("json");
    let rejected = &s["rejected"][0];
    assert_eq!(rejected["serving_last_good"], true);
    assert!(
        rejected["errors"].to_string().contains("colour"),
        "{rejected}"
    );
    assert_eq!(cp.revision(), revision, "a refused file is no new revision");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(reviews_route(&held), vec![(REVIEWS_V3.to_string(), 100)]);
    // An apply with errors is refused whole and writes nothing.
    let a = admin
        .post(
            "/apply",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec:\n  hosts: [ratings]\n  http:\n  - route:\n    - destination: {host: ratings}\n      colour: red\n".to_string(),
        )
        .await
        .expect("apply");
    assert_eq!(a.status, 400, "{a:?}");
    assert!(a.body.contains("errors"), "{}", a.body);
    assert!(!dir.join("virtualservice-default-x.yaml").exists());
    let m = admin.get("/metrics").await.expect("metrics");
    assert!(
        m.body.contains("weft_config_rejected_files 1"),
        "{}",
        m.body
    );
    // Fixing the file takes it in again.
    std::fs::write(
        dir.join("reviews.yaml"),
        good.replace("subset: v3", "subset: v2"),
    )
    .expect("write");
    eventually("route to v2", || {
        reviews_route(&held) == vec![(REVIEWS_V2.to_string(), 100)]
    })
    .await;
    client.shutdown().await;
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_change_pushes_only_eds() {
    let dir = config_dir("eds");
    let cp = ControlPlane::start(options(&dir)).await.expect("start");
    let (client, held, admin) = ready(&cp).await;
    // Let the initial exchange settle completely.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = client.status();
    let count =
        |s: &weft_xds::client::ClientStatus, t: &str| s.get(t).map(|x| x.responses).unwrap_or(0);
    std::fs::write(
        dir.join("more-pods.yaml"),
        pod("reviews-v3-def", "reviews", "v3", "10.1.0.7"),
    )
    .expect("write");
    eventually("second v3 endpoint", || {
        endpoint_count(&held, REVIEWS_V3) == 2
    })
    .await;
    eventually_async("proxy-status SYNCED", || all_synced(&admin)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = client.status();
    assert!(count(&after, CLUSTER_LOAD_ASSIGNMENT) > count(&before, CLUSTER_LOAD_ASSIGNMENT));
    for t in [CLUSTER, LISTENER, ROUTE_CONFIGURATION] {
        assert_eq!(
            count(&after, t),
            count(&before, t),
            "{t} was pushed for an endpoint change"
        );
    }
    client.shutdown().await;
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_resyncs_after_control_plane_restart() {
    let dir = config_dir("restart");
    let cp = ControlPlane::start(options(&dir)).await.expect("start");
    let xds = cp.xds_addr();
    let (client, held, _) = ready(&cp).await;
    cp.shutdown().await;
    eventually("client sees the stream close", || {
        !client.status().connected
    })
    .await;
    // A change while the control plane is down; the restarted one reads it at start.
    std::fs::write(
        dir.join("reviews.yaml"),
        std::fs::read(bookinfo().join("networking/virtual-service-reviews-v3.yaml")).expect("read"),
    )
    .expect("write");
    let mut o = options(&dir);
    o.xds_addr = xds;
    let cp = ControlPlane::start(o)
        .await
        .expect("restart on the same port");
    eventually("reconnected with the new route", || {
        let s = client.status();
        s.connected
            && s.connects >= 2
            && reviews_route(&held) == vec![(REVIEWS_V3.to_string(), 100)]
    })
    .await;
    let admin = admin_of(&cp);
    eventually_async("proxy-status SYNCED after restart", || all_synced(&admin)).await;
    client.shutdown().await;
    cp.shutdown().await;
}

const GRPC_BACKEND: &str = r#"
import sys, grpc
from concurrent import futures
name = sys.argv[1].encode()
def echo(req, ctx):
    return name
h = grpc.method_handlers_generic_handler("test.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)})
s = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
s.add_generic_rpc_handlers((h,))
port = s.add_insecure_port("127.0.0.1:0")
s.start()
print(port, flush=True)
sys.stdin.read()
"#;

/// Makes `N` calls per `N` read on stdin and prints the count per backend as `v1=a v2=b`.
const GRPC_CLIENT: &str = r#"
import sys, grpc
with grpc.insecure_channel("xds:///echo.test:50051") as ch:
    call = ch.unary_unary("/test.Echo/Echo")
    for line in sys.stdin:
        counts = {"v1": 0, "v2": 0}
        for _ in range(int(line)):
            counts[call(b"hi", timeout=20).decode()] += 1
        print("v1=%d v2=%d" % (counts["v1"], counts["v2"]), flush=True)
"#;

fn echo_config(p1: u16, p2: u16, w1: u32) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: echo, namespace: default}}
spec:
  hosts: [echo.test]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 50051, name: grpc, protocol: GRPC}}]
  endpoints:
  - {{address: 127.0.0.1, ports: {{grpc: {p1}}}, labels: {{version: v1}}, locality: r1/z1}}
  - {{address: 127.0.0.1, ports: {{grpc: {p2}}}, labels: {{version: v2}}, locality: r1/z1}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: echo, namespace: default}}
spec:
  host: echo.test
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: echo, namespace: default}}
spec:
  hosts: [echo.test]
  http:
  - route:
    - destination: {{host: echo.test, subset: v1}}
      weight: {w1}
    - destination: {{host: echo.test, subset: v2}}
      weight: {}
"#,
        100 - w1
    )
}

/// Python grpcio as a proxyless client: an `xds:///echo.test:50051` channel fed by the control
/// plane, with a VirtualService splitting calls between two subsets, then moving them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_proxyless_client_follows_a_weighted_split() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let probe = Command::new("python3").args(["-c", "import grpc"]).output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "python3 with grpcio is required (scripts/test.sh installs it): {probe:?}"
    );
    let mut backends = Vec::new();
    let mut ports = Vec::new();
    for name in ["v1", "v2"] {
        let mut b = Command::new("python3")
            .args(["-c", GRPC_BACKEND, name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(b.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("backend prints its port");
        ports.push(line.trim().parse::<u16>().expect("a port"));
        backends.push(b);
    }
    let dir = std::env::temp_dir().join(format!("weft-cp-grpc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("echo.yaml"), echo_config(ports[0], ports[1], 50)).expect("write");
    let cp = ControlPlane::start(options(&dir)).await.expect("start");
    let node_id = "sidecar~10.9.9.9~grpc-client.default~default.svc.cluster.local";
    let bootstrap = dir.join("bootstrap.json");
    std::fs::write(
        &bootstrap,
        format!(
            r#"{{"xds_servers":[{{"server_uri":"{}","channel_creds":[{{"type":"insecure"}}],"server_features":["xds_v3"]}}],
               "node":{{"id":"{node_id}","metadata":{{"GENERATOR":"grpc","NAMESPACE":"default"}},"locality":{{"region":"r1","zone":"z1"}}}}}}"#,
            cp.xds_addr()
        ),
    )
    .expect("bootstrap");
    let mut client = Command::new("python3")
        .args(["-c", GRPC_CLIENT])
        .env("GRPC_XDS_BOOTSTRAP", &bootstrap)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut stdin = client.stdin.take().expect("stdin");
    let stdout = Arc::new(Mutex::new(BufReader::new(
        client.stdout.take().expect("stdout"),
    )));
    let mut calls = async |n: u32| -> (u32, u32) {
        writeln!(stdin, "{n}").expect("write to client");
        let out = stdout.clone();
        let line = tokio::time::timeout(
            WAIT,
            tokio::task::spawn_blocking(move || {
                let mut line = String::new();
                let _ = out.lock().expect("lock").read_line(&mut line);
                line
            }),
        )
        .await
        .expect("the grpcio client answers")
        .expect("joined");
        let mut v = (0, 0);
        for part in line.split_whitespace() {
            match part.split_once('=') {
                Some(("v1", n)) => v.0 = n.parse().unwrap_or(0),
                Some(("v2", n)) => v.1 = n.parse().unwrap_or(0),
                _ => {}
            }
        }
        assert_eq!(v.0 + v.1, n, "calls failed; client said {line:?}");
        v
    };
    let (v1, v2) = calls(60).await;
    assert!(v1 > 0 && v2 > 0, "50/50 split sent v1={v1} v2={v2}");
    // The gRPC client ACKed its four types: proxy-status shows it SYNCED.
    tokio::time::timeout(
        WAIT,
        cp.status().wait_for(node_id, |n| {
            n.connected
                && [
                    LISTENER,
                    ROUTE_CONFIGURATION,
                    CLUSTER,
                    CLUSTER_LOAD_ASSIGNMENT,
                ]
                .iter()
                .all(|t| {
                    n.types
                        .get(*t)
                        .is_some_and(|s| s.state() == weft_xds::server::SyncState::Synced)
                })
        }),
    )
    .await
    .expect("grpcio SYNCED");
    // Everything to v2: the client follows the pushed route.
    std::fs::write(dir.join("echo.yaml"), echo_config(ports[0], ports[1], 0)).expect("write");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (v1, v2) = calls(20).await;
        if v1 == 0 && v2 == 20 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still v1={v1} v2={v2}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(stdin);
    let _ = client.kill();
    let _ = client.wait();
    for mut b in backends {
        let _ = b.kill();
        let _ = b.wait();
    }
    cp.shutdown().await;
}

/// A proxy that refuses weighted routes: its NACK shows in proxy-status (STALE, with the
/// proxy's error) and in the metrics, and the next acceptable config is SYNCED again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_is_visible_in_proxy_status_and_metrics() {
    let dir = config_dir("nack");
    let cp = ControlPlane::start(options(&dir)).await.expect("start");
    let node = Node {
        id: NODE.to_string(),
        ..Default::default()
    };
    let mut client = AdsClient::new(
        ClientConfig::new(format!("http://{}", cp.xds_addr()), node)
            .backoff(Duration::from_millis(50), Duration::from_millis(200)),
    )
    .expect("client");
    let subs = client.subscriber();
    client.subscribe(CLUSTER, Subscription::Wildcard);
    client.subscribe(LISTENER, Subscription::Wildcard);
    client
        .start(move |u: &Update<'_>| {
            if u.type_url == LISTENER {
                let names: Vec<String> = u
                    .resources
                    .values()
                    .filter_map(unpack::<Listener>)
                    .flat_map(|l| rds_names(&l))
                    .collect();
                subs.subscribe(ROUTE_CONFIGURATION, Subscription::names(names));
            }
            if u.type_url == ROUTE_CONFIGURATION {
                let weighted = u
                    .resources
                    .values()
                    .filter_map(unpack::<RouteConfiguration>)
                    .flat_map(|rc| rc.virtual_hosts)
                    .flat_map(|vh| vh.routes)
                    .any(|r| {
                        matches!(
                            r.action,
                            Some(Action::Route(ref a))
                                if matches!(a.cluster_specifier, Some(ClusterSpecifier::WeightedClusters(_)))
                        )
                    });
                if weighted {
                    return Err("weighted clusters are not supported here".to_string());
                }
            }
            Ok(())
        })
        .expect("start");
    let admin = admin_of(&cp);
    let rds_state = |list: &[ProxyInfo]| {
        list.iter()
            .find(|p| p.id == NODE)
            .and_then(|p| p.types.get("rds").cloned())
    };
    eventually_async("RDS SYNCED", || async {
        rds_state(&proxies(&admin).await).is_some_and(|s| s.state == "SYNCED")
    })
    .await;
    let yaml =
        std::fs::read_to_string(bookinfo().join("networking/virtual-service-reviews-90-10.yaml"))
            .expect("read vs");
    assert!(admin.post("/apply", yaml).await.expect("apply").ok());
    eventually_async("RDS NACK in proxy-status", || async {
        rds_state(&proxies(&admin).await).is_some_and(|s| {
            s.state == "STALE"
                && s.nack.as_deref() == Some("weighted clusters are not supported here")
        })
    })
    .await;
    eventually_async("NACK counted", || async {
        admin
            .get("/metrics")
            .await
            .expect("metrics")
            .body
            .contains("pilot_total_xds_rejects_total{type=\"rds\"} 1")
    })
    .await;
    let yaml =
        std::fs::read_to_string(bookinfo().join("networking/virtual-service-reviews-v3.yaml"))
            .expect("read vs");
    assert!(admin.post("/apply", yaml).await.expect("apply").ok());
    eventually_async("RDS SYNCED again", || async {
        rds_state(&proxies(&admin).await).is_some_and(|s| s.state == "SYNCED" && s.nack.is_none())
    })
    .await;
    client.shutdown().await;
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_of_one_class_share_one_eds_set_after_an_endpoint_change() {
    let dir = config_dir("eds-shared");
    let cp = ControlPlane::start(options(&dir)).await.expect("start");
    // Two sidecars of one client-only workload (their IPs are nobody's endpoints): one class.
    let ids = [
        "sidecar~10.9.0.1~web-1.default~default.svc.cluster.local",
        "sidecar~10.9.0.2~web-2.default~default.svc.cluster.local",
    ];
    let proxies: Vec<(AdsClient, Held)> = ids
        .iter()
        .map(|id| start_proxy_as(cp.xds_addr(), id))
        .collect();
    for (_, held) in &proxies {
        eventually("endpoints", || endpoint_count(held, REVIEWS_V3) == 1).await;
    }
    std::fs::write(
        dir.join("more-pods.yaml"),
        pod("reviews-v3-def", "reviews", "v3", "10.1.0.7"),
    )
    .expect("write");
    for (_, held) in &proxies {
        eventually("second v3 endpoint", || {
            endpoint_count(held, REVIEWS_V3) == 2
        })
        .await;
    }
    let eds = |id: &str| {
        cp.snapshot(id)
            .and_then(|s| s.resources(CLUSTER_LOAD_ASSIGNMENT).cloned())
            .expect("a snapshot with endpoints")
    };
    // One set in memory, referenced by both proxies' snapshots.
    assert!(Arc::ptr_eq(&eds(ids[0]), &eds(ids[1])));
    // What each proxy holds is the whole set, although the response carried only the changed clusters.
    for (_, held) in &proxies {
        let n = held.lock().expect("lock")[CLUSTER_LOAD_ASSIGNMENT].len();
        assert_eq!(n, eds(ids[0]).len());
    }
    for (c, _) in proxies {
        c.shutdown().await;
    }
    cp.shutdown().await;
}
