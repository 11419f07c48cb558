//! A peer nobody here wrote: Python grpcio as a proxyless xDS client (`xds:///` target) against
//! the weft ADS server. It fetches LDS, RDS, CDS and EDS over SotW ADS, ACKs them, and routes an
//! RPC to a backend found through EDS.
//!
//! Needs `python3` with `grpcio` on PATH: `scripts/test.sh` installs it in a virtualenv and puts
//! that first on PATH. Without it the test fails (a missing prerequisite is never a pass).

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use support::*;
use weft_xds::cache::{Cache, Resource, Snapshot};
use weft_xds::envoy::config::cluster::v3::Cluster;
use weft_xds::envoy::config::endpoint::v3::ClusterLoadAssignment;
use weft_xds::envoy::config::listener::v3::Listener;
use weft_xds::envoy::config::route::v3::RouteConfiguration;
use weft_xds::json::from_yaml;
use weft_xds::server::SyncState;
use weft_xds::type_url::{CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION};

const BACKEND: &str = r#"
import sys, grpc
from concurrent import futures
def echo(req, ctx):
    return b"echo:" + req
h = grpc.method_handlers_generic_handler("test.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)})
s = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
s.add_generic_rpc_handlers((h,))
port = s.add_insecure_port("127.0.0.1:0")
s.start()
print(port, flush=True)
sys.stdin.read()
"#;

const CLIENT: &str = r#"
import sys, grpc
with grpc.insecure_channel("xds:///echo.test:50051") as ch:
    call = ch.unary_unary("/test.Echo/Echo")
    print(call(b"hi", timeout=20).decode(), flush=True)
    sys.stdin.read()  # keep the xDS stream open until the test has looked at it
"#;

fn resources(backend_port: u16) -> Snapshot {
    let listener: Listener = from_yaml(
        r#"
name: "echo.test:50051"
api_listener:
  api_listener:
    "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
    rds:
      route_config_name: route-echo
      config_source: { ads: {}, resource_api_version: V3 }
    http_filters:
    - name: router
      typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
"#,
    )
    .expect("listener");
    let route: RouteConfiguration = from_yaml(
        r#"
name: route-echo
virtual_hosts:
- name: echo
  domains: ["*"]
  routes:
  - match: { prefix: "" }
    route: { cluster: cluster-echo }
"#,
    )
    .expect("route");
    let cluster: Cluster = from_yaml(
        r#"
name: cluster-echo
type: EDS
eds_cluster_config: { eds_config: { ads: {}, resource_api_version: V3 } }
lb_policy: ROUND_ROBIN
"#,
    )
    .expect("cluster");
    let cla: ClusterLoadAssignment = from_yaml(&format!(
        r#"
cluster_name: cluster-echo
endpoints:
- locality: {{ region: r1, zone: z1 }}
  load_balancing_weight: 1
  lb_endpoints:
  - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {backend_port} }} }} }}
"#
    ))
    .expect("cla");
    let r = |m: Result<Resource, _>| m.expect("named");
    Snapshot::new()
        .with(LISTENER, [r(Resource::from_message(&listener))])
        .with(ROUTE_CONFIGURATION, [r(Resource::from_message(&route))])
        .with(CLUSTER, [r(Resource::from_message(&cluster))])
        .with(CLUSTER_LOAD_ASSIGNMENT, [r(Resource::from_message(&cla))])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_proxyless_client_routes_through_weft_xds() {
    let probe = Command::new("python3").args(["-c", "import grpc"]).output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "python3 with grpcio is required (scripts/test.sh installs it): {probe:?}"
    );
    let mut backend = Command::new("python3")
        .args(["-c", BACKEND])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    BufReader::new(backend.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("backend prints its port");
    let port: u16 = line.trim().parse().expect("a port (is grpcio installed?)");

    let cache = Cache::with_key_fn(|_| "grpc".to_string());
    cache.set_snapshot("grpc", resources(port)).expect("valid");
    let server = start(cache).await;

    let dir = std::env::temp_dir().join(format!("weft-grpcio-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bootstrap = dir.join("bootstrap.json");
    std::fs::write(
        &bootstrap,
        format!(
            r#"{{"xds_servers":[{{"server_uri":"{}","channel_creds":[{{"type":"insecure"}}],"server_features":["xds_v3"]}}],
               "node":{{"id":"grpc-proxyless","cluster":"grpc","locality":{{"zone":"z1"}}}}}}"#,
            server.local_addr()
        ),
    )
    .expect("bootstrap");
    let mut client = Command::new("python3")
        .args(["-c", CLIENT])
        .env("GRPC_XDS_BOOTSTRAP", &bootstrap)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let stdout = client.stdout.take().expect("stdout");
    let reply = within(
        "the grpcio client's reply",
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            line
        }),
    )
    .await
    .expect("joined");
    if reply.trim() != "echo:hi" {
        let _ = client.kill();
        let out = client.wait_with_output().expect("client output");
        let _ = backend.kill();
        panic!(
            "grpcio client got {reply:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The proxyless client ACKed all four types (what `proxy-status` shows as SYNCED).
    within(
        "grpcio to be SYNCED",
        server.status().wait_for("grpc-proxyless", |n| {
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
                        .is_some_and(|s| s.state() == SyncState::Synced)
                })
        }),
    )
    .await;
    let ns = server.status().node("grpc-proxyless").expect("connected");
    assert_eq!(ns.cluster, "grpc");
    assert!(!ns.delta);
    drop(client.stdin.take());
    let _ = client.wait();
    let _ = backend.kill();
    let _ = backend.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
