//! The `weft` binary against a running `weft control-plane` child process: apply, get, delete,
//! proxy-status and proxy-config with a real xDS client connected, and `x route-check` both
//! through the control plane and offline on the bookinfo files.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use weft_xds::client::{AdsClient, ClientConfig, Subscription, Update};
use weft_xds::envoy::config::cluster::v3::Cluster;
use weft_xds::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use weft_xds::envoy::config::core::v3::Node;
use weft_xds::envoy::config::listener::v3::Listener;
use weft_xds::envoy::config::listener::v3::filter::ConfigType;
use weft_xds::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use weft_xds::google::protobuf::Any;
use weft_xds::type_url::{CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION};

const NODE: &str = "sidecar~10.1.0.1~productpage-v1-abc.default~default.svc.cluster.local";

fn bookinfo() -> PathBuf {
    let base = std::env::var("WEFT_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/istio")
        });
    base.join("bookinfo")
}

fn networking(f: &str) -> String {
    bookinfo().join("networking").join(f).display().to_string()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weft-cpcli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn pods() -> String {
    [
        ("productpage-v1-abc", "productpage", "v1", "10.1.0.1"),
        ("details-v1-abc", "details", "v1", "10.1.0.2"),
        ("ratings-v1-abc", "ratings", "v1", "10.1.0.3"),
        ("reviews-v1-abc", "reviews", "v1", "10.1.0.4"),
        ("reviews-v2-abc", "reviews", "v2", "10.1.0.5"),
        ("reviews-v3-abc", "reviews", "v3", "10.1.0.6"),
    ]
    .iter()
    .map(|(name, app, v, ip)| {
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\n  labels: {{app: {app}, version: {v}}}\nspec:\n  containers: [{{name: app, image: x}}]\nstatus:\n  podIP: {ip}\n")
    })
    .collect::<Vec<_>>()
    .join("---\n")
}

fn weft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .output()
        .expect("run weft")
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The `weft control-plane` child, stopped when dropped.
struct ControlPlane {
    child: Child,
    admin: String,
    xds: String,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_control_plane(dir: &Path) -> ControlPlane {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args([
            "control-plane",
            "--config-dir",
            &dir.display().to_string(),
            "--xds-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            "--debounce-ms",
            "20",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start weft control-plane");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the ready line");
    // "weft control plane: xds 127.0.0.1:N admin http://127.0.0.1:M"
    let words: Vec<&str> = line.split_whitespace().collect();
    let xds = words
        .iter()
        .position(|w| *w == "xds")
        .and_then(|i| words.get(i + 1))
        .unwrap_or_else(|| panic!("no xds address in {line:?}"))
        .to_string();
    let admin = words
        .iter()
        .position(|w| *w == "admin")
        .and_then(|i| words.get(i + 1))
        .unwrap_or_else(|| panic!("no admin address in {line:?}"))
        .to_string();
    ControlPlane { child, admin, xds }
}

fn rds_names(l: &Listener) -> Vec<String> {
    let mut out = Vec::new();
    for fc in l.filter_chains.iter().chain(l.default_filter_chain.iter()) {
        for f in &fc.filters {
            if let Some(ConfigType::TypedConfig(any)) = &f.config_type
                && let Some(m) =
                    weft_control::translate::envoy::unpack::<hcm::HttpConnectionManager>(any)
                && let Some(hcm::http_connection_manager::RouteSpecifier::Rds(r)) =
                    m.route_specifier
            {
                out.push(r.route_config_name);
            }
        }
    }
    out
}

fn unpack<T: prost::Message + prost::Name + Default>(a: &Any) -> Option<T> {
    weft_control::translate::envoy::unpack(a)
}

/// An Envoy-like xDS client for the productpage sidecar.
fn start_proxy(xds: &str) -> AdsClient {
    let node = Node {
        id: NODE.to_string(),
        ..Default::default()
    };
    let mut client = AdsClient::new(
        ClientConfig::new(format!("http://{xds}"), node)
            .backoff(Duration::from_millis(50), Duration::from_millis(200)),
    )
    .expect("client");
    let subs = client.subscriber();
    client.subscribe(CLUSTER, Subscription::Wildcard);
    client.subscribe(LISTENER, Subscription::Wildcard);
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
            Ok(())
        })
        .expect("start client");
    client
}

/// Runs `weft ARGS` until its output satisfies `ok` (config changes take a push to show).
fn eventually(args: &[&str], ok: impl Fn(&Output) -> bool) -> Output {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = weft(args);
        if ok(&o) {
            return o;
        }
        if Instant::now() > deadline {
            panic!(
                "weft {} never gave the expected output:\n{}",
                args.join(" "),
                out(&o)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn apply_get_delete_proxy_status_and_proxy_config() {
    let dir = temp_dir("cp");
    let cp = start_control_plane(&dir);
    let url = cp.admin.clone();
    let cpf = ["--control-plane", url.as_str()];
    let with = |args: &[&str]| -> Vec<String> {
        args.iter()
            .chain(cpf.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let run = |args: &[&str]| weft(&with(args).iter().map(String::as_str).collect::<Vec<_>>());

    // apply: the platform, endpoints and DestinationRules.
    let work = temp_dir("files");
    std::fs::write(work.join("pods.yaml"), pods()).expect("write pods");
    let platform = bookinfo()
        .join("platform/bookinfo.yaml")
        .display()
        .to_string();
    let o = run(&[
        "apply",
        "-f",
        &platform,
        &work.join("pods.yaml").display().to_string(),
        &networking("destination-rule-all.yaml"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(
        out(&o).contains("Service default/reviews applied"),
        "{}",
        out(&o)
    );
    assert!(dir.join("service-default-reviews.yaml").is_file());

    // A file with errors is refused, with the field named.
    std::fs::write(
        work.join("bad.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: bad}\nspec:\n  hosts: [reviews]\n  htttp: []\n",
    )
    .expect("write");
    let o = run(&["apply", "-f", &work.join("bad.yaml").display().to_string()]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("htttp"), "{}", out(&o));

    // get: table, yaml, json.
    let o = run(&["get", "destinationrules"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let table = out(&o);
    assert!(table.starts_with("NAMESPACE"), "{table}");
    assert!(
        table.contains("reviews") && table.contains("DestinationRule"),
        "{table}"
    );
    let o = run(&[
        "apply",
        "-f",
        &networking("virtual-service-reviews-90-10.yaml"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let o = run(&["get", "vs", "reviews", "-n", "default", "-o", "yaml"]);
    assert!(out(&o).contains("weight: 90"), "{}", out(&o));
    let o = run(&["get", "virtualservice", "reviews", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["spec"]["http"][0]["route"][1]["weight"], 10);

    // A proxy connects: proxy-status shows it SYNCED in istioctl's columns.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let client = rt.block_on(async { start_proxy(&cp.xds) });
    let o = eventually(
        &with(&["proxy-status"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        |o| {
            let s = out(o);
            s.lines()
                .any(|l| l.starts_with(NODE) && l.matches("SYNCED").count() == 4)
        },
    );
    let s = out(&o);
    let header: Vec<&str> = s.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "ISTIOD", "VERSION"
        ],
        "{s}"
    );
    let o = run(&["proxy-status", "productpage-v1-abc"]);
    assert!(out(&o).contains("RDS: SYNCED"), "{}", out(&o));

    // proxy-config: tables and Envoy JSON.
    let o = run(&["proxy-config", "cluster", "productpage-v1-abc.default"]);
    let s = out(&o);
    assert_eq!(o.status.code(), Some(0), "{s}");
    assert!(
        s.starts_with("SERVICE FQDN") && s.contains("DESTINATION RULE"),
        "{s}"
    );
    assert!(
        s.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() >= 5
                && w[..5]
                    == [
                        "reviews.default.svc.cluster.local",
                        "9080",
                        "v2",
                        "outbound",
                        "EDS",
                    ]
        }),
        "{s}"
    );
    let o = run(&["proxy-config", "listener", NODE]);
    assert!(out(&o).contains("Route: 9080"), "{}", out(&o));
    let o = run(&["proxy-config", "endpoint", NODE]);
    assert!(
        out(&o).contains("10.1.0.5:9080") && out(&o).contains("HEALTHY"),
        "{}",
        out(&o)
    );
    let o = run(&["proxy-config", "route", NODE]);
    assert!(
        out(&o).contains("reviews.default.svc.cluster.local:9080"),
        "{}",
        out(&o)
    );
    let o = run(&["proxy-config", "route", NODE, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let r9080 = v
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == "9080"))
        .expect("route 9080");
    assert_eq!(
        r9080["@type"],
        "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
    );
    let o = run(&["proxy-config", "all", NODE, "-o", "yaml"]);
    assert!(out(&o).contains("ClustersConfigDump"), "{}", out(&o));

    // route-check through the control plane: the 90/10 split.
    let o = run(&[
        "x",
        "route-check",
        "productpage-v1-abc",
        "--host",
        "reviews:9080",
        "--path",
        "/reviews/0",
    ]);
    let s = out(&o);
    assert!(
        s.contains("90  outbound|9080|v1|reviews.default.svc.cluster.local"),
        "{s}"
    );
    assert!(
        s.contains("10  outbound|9080|v2|reviews.default.svc.cluster.local"),
        "{s}"
    );

    // delete by file, then by name.
    let o = run(&[
        "delete",
        "-f",
        &networking("virtual-service-reviews-90-10.yaml"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(
        out(&o).contains("VirtualService default/reviews deleted"),
        "{}",
        out(&o)
    );
    let o = run(&["get", "vs", "reviews"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let o = run(&["delete", "dr", "ratings", "-n", "default"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let o = run(&["delete", "dr", "ratings", "-n", "default"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("not found"), "{}", out(&o));

    rt.block_on(client.shutdown());
    drop(cp);
}

#[test]
fn route_check_offline_on_bookinfo_files() {
    let dir = temp_dir("offline");
    std::fs::copy(
        bookinfo().join("platform/bookinfo.yaml"),
        dir.join("bookinfo.yaml"),
    )
    .expect("copy");
    std::fs::copy(
        bookinfo().join("networking/destination-rule-all.yaml"),
        dir.join("dr.yaml"),
    )
    .expect("copy");
    std::fs::copy(
        bookinfo().join("networking/virtual-service-reviews-90-10.yaml"),
        dir.join("vs.yaml"),
    )
    .expect("copy");
    let d = dir.display().to_string();
    let check = |extra: &[&str]| {
        let mut args = vec![
            "x",
            "route-check",
            "--config-dir",
            &d,
            "--proxy-id",
            NODE,
            "--host",
            "reviews:9080",
            "--path",
            "/reviews/0",
        ];
        args.extend_from_slice(extra);
        weft(&args)
    };
    let o = check(&[]);
    let s = out(&o);
    assert_eq!(o.status.code(), Some(0), "{s}");
    assert!(s.contains("LISTENER:     0.0.0.0_9080"), "{s}");
    assert!(s.contains("ROUTE CONFIG: 9080"), "{s}");
    assert!(
        s.contains("VIRTUAL HOST: reviews.default.svc.cluster.local:9080"),
        "{s}"
    );
    assert!(
        s.contains("90  outbound|9080|v1|reviews.default.svc.cluster.local"),
        "{s}"
    );
    assert!(
        s.contains("10  outbound|9080|v2|reviews.default.svc.cluster.local"),
        "{s}"
    );

    std::fs::copy(
        bookinfo().join("networking/virtual-service-reviews-jason-v2-v3.yaml"),
        dir.join("vs.yaml"),
    )
    .expect("copy");
    let o = check(&["--header", "end-user=jason", "-o", "json"]);
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", out(&o)));
    assert_eq!(
        v["cluster"], "outbound|9080|v2|reviews.default.svc.cluster.local",
        "{v}"
    );
    assert!(
        v["matched"]
            .as_str()
            .is_some_and(|m| m.contains("end-user=jason")),
        "{v}"
    );
    let o = check(&[]);
    assert!(
        out(&o).contains("CLUSTER:      outbound|9080|v3|reviews.default.svc.cluster.local"),
        "{}",
        out(&o)
    );
    // A host no service has: ALLOW_ANY sends it through the passthrough route, as in Istio.
    let o = weft(&[
        "x",
        "route-check",
        "--config-dir",
        &d,
        "--proxy-id",
        NODE,
        "--host",
        "nowhere.example:9080",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(out(&o).contains("VIRTUAL HOST: allow_any"), "{}", out(&o));
    assert!(
        out(&o).contains("CLUSTER:      PassthroughCluster"),
        "{}",
        out(&o)
    );
    // With REGISTRY_ONLY from a MeshConfig file, the same request is dropped.
    let mesh = dir.join("../mesh-offline.yaml");
    std::fs::write(&mesh, "outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\n").expect("write mesh");
    let o = weft(&[
        "x",
        "route-check",
        "--config-dir",
        &d,
        "--proxy-id",
        NODE,
        "--host",
        "nowhere.example:9080",
        "--mesh-config",
        &mesh.display().to_string(),
    ]);
    assert!(out(&o).contains("VIRTUAL HOST: block_all"), "{}", out(&o));
    assert!(
        out(&o).contains("ACTION:       direct response 502"),
        "{}",
        out(&o)
    );
    assert!(!out(&o).contains("PassthroughCluster"), "{}", out(&o));
    // Offline mode needs a node id.
    let o = weft(&["x", "route-check", "--config-dir", &d, "--host", "reviews"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
}
