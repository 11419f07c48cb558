//! WorkloadGroup auto-registration with real gRPC: the control plane in-process on 127.0.0.1:0,
//! a weft-xds `AdsClient` as a VM's proxy that names its group in `AUTO_REGISTER_GROUP`, and
//! another as a sidecar that calls the group's service. What is asserted is what the admin API
//! (`weft get workloadentries`, `weft proxy-status`) and the calling sidecar's EDS show.

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
use weft_xds::envoy::config::core::v3::address::Address as AddressKind;
use weft_xds::envoy::config::endpoint::v3::ClusterLoadAssignment;
use weft_xds::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use weft_xds::google::protobuf::{Any, Struct, Value as PbValue, value::Kind as PbKind};
use weft_xds::type_url::{CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER};

const WAIT: Duration = Duration::from_secs(20);
const CALLER: &str = "sidecar~10.2.0.1~caller.vm~vm.svc.cluster.local";
const VM: &str = "sidecar~10.2.0.9~ratings-vm-1.vm~vm.svc.cluster.local";
const VM_IP: &str = "10.2.0.9";
const ENTRY: &str = "ratings-10.2.0.9";
const RATINGS: &str = "outbound|9080||ratings.vm.svc.cluster.local";

const SERVICE: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: vm}
spec:
  hosts: [ratings.vm.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: ratings}}
";

const GROUP: &str = "apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: ratings, namespace: vm}
spec:
  metadata:
    labels: {app: ratings}
    annotations: {owner: team-ratings}
  template:
    serviceAccount: ratings-vm
    ports: {http: 9080}
    labels: {version: v1}
";

type Held = Arc<Mutex<BTreeMap<String, BTreeMap<String, Any>>>>;

fn config_dir(name: &str, with_group: bool) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weft-autoreg-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    std::fs::write(d.join("service.yaml"), SERVICE).expect("write service");
    if with_group {
        std::fs::write(d.join("group.yaml"), GROUP).expect("write group");
    }
    d
}

fn options(dir: &Path, grace: Duration) -> Options {
    let mut o = Options::new(dir).ephemeral();
    o.debounce = Duration::from_millis(20);
    o.poll_interval = Duration::from_millis(50);
    o.workload_entry_grace_period = grace;
    o
}

fn metadata(fields: &[(&str, &str)]) -> Struct {
    let s = |v: &str| PbValue {
        kind: Some(PbKind::StringValue(v.to_string())),
    };
    Struct {
        fields: fields.iter().map(|(k, v)| (k.to_string(), s(v))).collect(),
    }
}

/// An Envoy-like client: CDS and LDS wildcard, then EDS for the EDS clusters.
fn start_client(xds: std::net::SocketAddr, id: &str, md: Struct) -> (AdsClient, Held) {
    let node = Node {
        id: id.to_string(),
        metadata: Some(md),
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
            h.lock()
                .expect("lock")
                .insert(u.type_url.to_string(), u.resources.clone());
            Ok(())
        })
        .expect("start");
    (client, held)
}

fn caller(cp: &ControlPlane) -> (AdsClient, Held) {
    start_client(
        cp.xds_addr(),
        CALLER,
        metadata(&[("NAMESPACE", "vm"), ("ISTIO_VERSION", "1.24.0")]),
    )
}

fn vm(cp: &ControlPlane) -> (AdsClient, Held) {
    start_client(
        cp.xds_addr(),
        VM,
        metadata(&[
            ("NAMESPACE", "vm"),
            ("AUTO_REGISTER_GROUP", "ratings"),
            ("ISTIO_VERSION", "1.24.0"),
        ]),
    )
}

/// `ip:port` of every endpoint of a cluster the client holds.
fn endpoints(held: &Held, cluster: &str) -> Vec<String> {
    let Some(cla) = held
        .lock()
        .expect("lock")
        .get(CLUSTER_LOAD_ASSIGNMENT)
        .and_then(|m| m.get(cluster))
        .and_then(unpack::<ClusterLoadAssignment>)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for l in &cla.endpoints {
        for e in &l.lb_endpoints {
            let Some(HostIdentifier::Endpoint(ep)) = &e.host_identifier else {
                continue;
            };
            if let Some(AddressKind::SocketAddress(sa)) =
                ep.address.as_ref().and_then(|a| a.address.as_ref())
            {
                let port = match sa.port_specifier {
                    Some(
                        weft_xds::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(
                            p,
                        ),
                    ) => p,
                    _ => 0,
                };
                out.push(format!("{}:{port}", sa.address));
            }
        }
    }
    out
}

fn has_cluster(held: &Held, name: &str) -> bool {
    held.lock()
        .expect("lock")
        .get(CLUSTER)
        .is_some_and(|m| m.contains_key(name))
}

async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f().await {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn admin_of(cp: &ControlPlane) -> AdminClient {
    AdminClient::new(&format!("http://{}", cp.admin_addr())).expect("admin client")
}

/// What `weft get workloadentries -n vm` lists.
async fn workload_entries(admin: &AdminClient) -> Vec<serde_json::Value> {
    let a = admin
        .get("/resources?kind=workloadentries&namespace=vm")
        .await
        .expect("GET /resources");
    assert!(a.ok(), "{a:?}");
    let v: serde_json::Value = a.json().expect("json");
    v["items"].as_array().cloned().unwrap_or_default()
}

async fn entry(admin: &AdminClient) -> Option<serde_json::Value> {
    workload_entries(admin)
        .await
        .into_iter()
        .find(|e| e["metadata"]["name"] == ENTRY)
}

async fn proxy(admin: &AdminClient, id: &str) -> Option<ProxyInfo> {
    let a = admin.get("/proxies").await.expect("GET /proxies");
    assert!(a.ok(), "{a:?}");
    let list: Vec<ProxyInfo> = serde_json::from_str(&a.body).expect("proxy list");
    list.into_iter().find(|p| p.id == id)
}

fn annotation<'a>(e: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    e["metadata"]["annotations"][key].as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_registers_from_its_group_and_goes_after_the_grace_period() {
    let dir = config_dir("lifecycle", true);
    let grace = Duration::from_secs(3);
    let cp = ControlPlane::start(options(&dir, grace))
        .await
        .expect("start");
    let admin = admin_of(&cp);
    let (caller_client, caller_held) = caller(&cp);
    eventually("the caller's ratings cluster", || {
        let h = caller_held.clone();
        async move { has_cluster(&h, RATINGS) }
    })
    .await;
    assert!(endpoints(&caller_held, RATINGS).is_empty());

    let (vm_client, _vm_held) = vm(&cp);
    eventually("the auto-registered WorkloadEntry", || async {
        entry(&admin).await.is_some()
    })
    .await;
    let e = entry(&admin).await.expect("entry");
    // From the template and the group's metadata, at the proxy's IP, annotated as Istio does.
    assert_eq!(e["spec"]["address"], VM_IP);
    assert_eq!(e["spec"]["serviceAccount"], "ratings-vm");
    assert_eq!(e["spec"]["ports"]["http"], 9080);
    assert_eq!(e["spec"]["labels"]["app"], "ratings");
    assert_eq!(e["spec"]["labels"]["version"], "v1");
    assert_eq!(e["metadata"]["labels"]["app"], "ratings");
    assert_eq!(
        annotation(&e, "istio.io/autoRegistrationGroup"),
        Some("ratings")
    );
    assert_eq!(annotation(&e, "owner"), Some("team-ratings"));
    assert!(
        annotation(&e, "istio.io/workloadController").is_some_and(|c| c.starts_with("weft-")),
        "{e}"
    );
    assert!(annotation(&e, "istio.io/connectedAt").is_some(), "{e}");
    assert_eq!(e["metadata"]["ownerReferences"][0]["kind"], "WorkloadGroup");
    assert_eq!(e["metadata"]["ownerReferences"][0]["name"], "ratings");
    // The entry is a file of the config directory like any other.
    assert!(dir.join("workloadentry-vm-ratings-10.2.0.9.yaml").is_file());
    // The service selecting the group's labels has the endpoint; the caller gets it by EDS.
    eventually("the VM's endpoint in the caller's EDS", || {
        let h = caller_held.clone();
        async move { endpoints(&h, RATINGS) == vec![format!("{VM_IP}:9080")] }
    })
    .await;
    let p = proxy(&admin, VM).await.expect("the VM in proxy-status");
    assert_eq!(p.workload_entry.as_deref(), Some("vm/ratings-10.2.0.9"));
    assert_eq!(p.registration_error, None);
    assert_eq!(
        proxy(&admin, CALLER).await.expect("caller").workload_entry,
        None
    );

    // The proxy leaves: the entry stays, marked disconnected, for the grace period.
    let left = tokio::time::Instant::now();
    vm_client.shutdown().await;
    eventually("istio.io/disconnectedAt", || async {
        entry(&admin)
            .await
            .is_some_and(|e| annotation(&e, "istio.io/disconnectedAt").is_some())
    })
    .await;
    let e = entry(&admin).await.expect("still there");
    assert_eq!(annotation(&e, "istio.io/connectedAt"), None, "{e}");
    assert!(
        left.elapsed() < grace,
        "the entry was marked too late to check"
    );
    assert_eq!(
        endpoints(&caller_held, RATINGS),
        vec![format!("{VM_IP}:9080")]
    );
    // Then it goes, and with it the endpoint.
    eventually("the entry removed after the grace period", || async {
        entry(&admin).await.is_none()
    })
    .await;
    assert!(
        left.elapsed() >= grace,
        "removed after {:?}, before the grace period",
        left.elapsed()
    );
    assert!(!dir.join("workloadentry-vm-ratings-10.2.0.9.yaml").exists());
    eventually("the endpoint gone from the caller's EDS", || {
        let h = caller_held.clone();
        async move { endpoints(&h, RATINGS).is_empty() }
    })
    .await;
    let m = admin.get("/metrics").await.expect("metrics");
    for line in [
        "auto_registration_success_total 1",
        "auto_registration_unregister_total 1",
        "auto_registration_deletes_total 1",
        "auto_registration_errors_total 0",
    ] {
        assert!(m.body.contains(line), "{line:?} missing from\n{}", m.body);
    }
    caller_client.shutdown().await;
    cp.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_within_the_grace_period_keeps_the_entry() {
    let dir = config_dir("reconnect", true);
    let grace = Duration::from_secs(2);
    let cp = ControlPlane::start(options(&dir, grace))
        .await
        .expect("start");
    let admin = admin_of(&cp);
    let (c, _) = vm(&cp);
    eventually("the entry", || async { entry(&admin).await.is_some() }).await;
    c.shutdown().await;
    eventually("istio.io/disconnectedAt", || async {
        entry(&admin)
            .await
            .is_some_and(|e| annotation(&e, "istio.io/disconnectedAt").is_some())
    })
    .await;
    let (c, _) = vm(&cp);
    eventually("connected again", || async {
        entry(&admin).await.is_some_and(|e| {
            annotation(&e, "istio.io/connectedAt").is_some()
                && annotation(&e, "istio.io/disconnectedAt").is_none()
        })
    })
    .await;
    // Well past the first disconnect's grace period, the entry is still there.
    tokio::time::sleep(grace + Duration::from_millis(700)).await;
    let e = entry(&admin).await.expect("kept");
    assert!(annotation(&e, "istio.io/connectedAt").is_some(), "{e}");
    assert_eq!(
        proxy(&admin, VM)
            .await
            .expect("listed")
            .workload_entry
            .as_deref(),
        Some("vm/ratings-10.2.0.9")
    );
    c.shutdown().await;
    cp.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_group_is_reported_and_registration_follows_when_it_is_applied() {
    let dir = config_dir("missing", false);
    let cp = ControlPlane::start(options(&dir, Duration::from_secs(1)))
        .await
        .expect("start");
    let admin = admin_of(&cp);
    let (c, held) = vm(&cp);
    eventually("the registration error in proxy-status", || async {
        proxy(&admin, VM)
            .await
            .and_then(|p| p.registration_error)
            .is_some_and(|e| e.contains("cannot find WorkloadGroup vm/ratings"))
    })
    .await;
    // The proxy is served all the same.
    eventually("the VM's clusters", || {
        let h = held.clone();
        async move { has_cluster(&h, RATINGS) }
    })
    .await;
    assert!(entry(&admin).await.is_none());
    // The group is applied: the waiting proxy is registered.
    let a = admin
        .post("/apply", GROUP.to_string())
        .await
        .expect("apply");
    assert!(a.ok(), "{a:?}");
    eventually("the entry once the group exists", || async {
        entry(&admin).await.is_some()
    })
    .await;
    let p = proxy(&admin, VM).await.expect("listed");
    assert_eq!(p.registration_error, None);
    assert_eq!(p.workload_entry.as_deref(), Some("vm/ratings-10.2.0.9"));
    // Deleting the group deletes the entries it owns.
    let d = admin
        .delete("/resources/workloadgroups/vm/ratings")
        .await
        .expect("delete");
    assert!(d.ok(), "{d:?}");
    eventually("the entry removed with its group", || async {
        entry(&admin).await.is_none()
    })
    .await;
    c.shutdown().await;
    cp.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_control_plane_removes_entries_whose_proxy_does_not_return() {
    let dir = config_dir("restart", true);
    let cp = ControlPlane::start(options(&dir, Duration::from_secs(30)))
        .await
        .expect("start");
    let admin = admin_of(&cp);
    let (c, _) = vm(&cp);
    eventually("the entry", || async { entry(&admin).await.is_some() }).await;
    // The control plane goes away while the proxy is connected (no disconnect is recorded).
    cp.shutdown().await;
    c.shutdown().await;
    let grace = Duration::from_millis(1500);
    let cp = ControlPlane::start(options(&dir, grace))
        .await
        .expect("restart");
    let started = tokio::time::Instant::now();
    let admin = admin_of(&cp);
    assert!(
        entry(&admin).await.is_some(),
        "the entry survives a restart"
    );
    eventually(
        "the entry removed one grace period after the restart",
        || async { entry(&admin).await.is_none() },
    )
    .await;
    assert!(
        started.elapsed() >= grace,
        "removed after {:?}",
        started.elapsed()
    );
    cp.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
