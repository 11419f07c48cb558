//! Shared helpers for the ADS tests: resources, a recording callback, raw protocol clients.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Streaming;
use weft_xds::cache::{Cache, Resource, Snapshot};
use weft_xds::client::{AdsClient, ClientConfig, ClientStatus, Subscription, Update};
use weft_xds::envoy::config::cluster::v3::Cluster;
use weft_xds::envoy::config::core::v3::Node;
use weft_xds::envoy::config::endpoint::v3::ClusterLoadAssignment;
use weft_xds::envoy::config::listener::v3::Listener;
use weft_xds::envoy::config::route::v3::RouteConfiguration;
use weft_xds::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use weft_xds::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use weft_xds::google::protobuf::{Any, Duration as PbDuration};
use weft_xds::server::{ServerHandle, serve};
use weft_xds::type_url;

pub const WAIT: Duration = Duration::from_secs(10);

/// Fails the test instead of hanging when `f` does not finish in time.
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

pub fn node(id: &str) -> Node {
    Node {
        id: id.into(),
        cluster: "test".into(),
        ..Default::default()
    }
}

pub fn cluster(name: &str, timeout_ms: i32) -> Resource {
    Resource::from_message(&Cluster {
        name: name.into(),
        connect_timeout: Some(PbDuration {
            seconds: 0,
            nanos: timeout_ms * 1_000_000,
        }),
        ..Default::default()
    })
    .expect("named")
}

pub fn listener(name: &str, tag: u32) -> Resource {
    Resource::from_message(&Listener {
        name: name.into(),
        stat_prefix: format!("v{tag}"),
        ..Default::default()
    })
    .expect("named")
}

pub fn route(name: &str, tag: u32) -> Resource {
    Resource::from_message(&RouteConfiguration {
        name: name.into(),
        internal_only_headers: vec![format!("x-v{tag}")],
        ..Default::default()
    })
    .expect("named")
}

pub fn cla(name: &str, tag: u32) -> Resource {
    Resource::from_message(&ClusterLoadAssignment {
        cluster_name: name.into(),
        endpoints: (0..tag).map(|_| Default::default()).collect(),
        ..Default::default()
    })
    .expect("named")
}

/// A snapshot with all four types: clusters a, b; endpoints a, b, c; listener l; route r1, r2.
pub fn full_snapshot() -> Snapshot {
    Snapshot::new()
        .with(type_url::CLUSTER, [cluster("a", 1), cluster("b", 1)])
        .with(
            type_url::CLUSTER_LOAD_ASSIGNMENT,
            [cla("a", 1), cla("b", 1), cla("c", 1)],
        )
        .with(type_url::LISTENER, [listener("l", 1)])
        .with(
            type_url::ROUTE_CONFIGURATION,
            [route("r1", 1), route("r2", 1)],
        )
}

pub async fn start(cache: Cache) -> ServerHandle {
    serve("127.0.0.1:0".parse().expect("addr"), cache)
        .await
        .expect("server starts")
}

/// One update as the callback saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub type_url: String,
    pub version: String,
    pub names: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
}

/// A callback that records every update and rejects clusters named `bad`.
#[derive(Clone, Default)]
pub struct Recorder {
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    pub fn handler(&self) -> impl FnMut(&Update<'_>) -> Result<(), String> + Send + 'static {
        let seen = self.seen.clone();
        move |u: &Update<'_>| {
            seen.lock().expect("lock").push(Seen {
                type_url: u.type_url.to_string(),
                version: u.version.to_string(),
                names: u.resources.keys().cloned().collect(),
                updated: u.updated.to_vec(),
                removed: u.removed.to_vec(),
            });
            if u.resources.contains_key("bad") {
                return Err("cluster bad: connect_timeout must be positive".into());
            }
            Ok(())
        }
    }

    pub fn of_type(&self, type_url: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|s| s.type_url == type_url)
            .cloned()
            .collect()
    }

    pub fn last(&self, type_url: &str) -> Option<Seen> {
        self.of_type(type_url).pop()
    }
}

/// Starts an AdsClient with the given subscriptions and a recorder.
pub fn client(
    addr: std::net::SocketAddr,
    id: &str,
    delta: bool,
    subs: &[(&str, Subscription)],
) -> (AdsClient, Recorder) {
    let mut cfg = ClientConfig::new(format!("http://{addr}"), node(id))
        .backoff(Duration::from_millis(20), Duration::from_millis(200));
    if delta {
        cfg = cfg.delta();
    }
    let mut c = AdsClient::new(cfg).expect("valid address");
    for (t, s) in subs {
        c.subscribe(t, s.clone());
    }
    let rec = Recorder::default();
    c.start(rec.handler()).expect("starts once");
    (c, rec)
}

/// Waits until the client accepted `version` of `type_url`.
pub async fn client_has(c: &AdsClient, type_url: &str, version: &str) -> ClientStatus {
    within(&format!("client to accept {type_url} {version}"), async {
        c.wait_for(|s| s.get(type_url).is_some_and(|t| t.version == version))
            .await;
    })
    .await;
    c.status()
}

/// A raw SotW stream for protocol-level checks.
pub struct RawSotw {
    pub tx: mpsc::UnboundedSender<DiscoveryRequest>,
    pub rx: Streaming<DiscoveryResponse>,
}

impl RawSotw {
    pub async fn connect(addr: std::net::SocketAddr) -> Self {
        let mut c = AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connects");
        let (tx, rx) = mpsc::unbounded_channel();
        let rx = c
            .stream_aggregated_resources(UnboundedReceiverStream::new(rx))
            .await
            .expect("stream opens")
            .into_inner();
        RawSotw { tx, rx }
    }

    pub fn send(&self, req: DiscoveryRequest) {
        self.tx.send(req).expect("stream open");
    }

    pub async fn recv(&mut self) -> DiscoveryResponse {
        within("a SotW response", self.rx.message())
            .await
            .expect("no stream error")
            .expect("stream open")
    }

    /// Asserts that nothing arrives for `ms` milliseconds.
    pub async fn nothing_for(&mut self, ms: u64) {
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(ms), self.rx.message()).await {
            panic!("expected no response, got {r:?}");
        }
    }
}

/// A raw delta stream for protocol-level checks.
pub struct RawDelta {
    pub tx: mpsc::UnboundedSender<DeltaDiscoveryRequest>,
    pub rx: Streaming<DeltaDiscoveryResponse>,
}

impl RawDelta {
    pub async fn connect(addr: std::net::SocketAddr) -> Self {
        let mut c = AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connects");
        let (tx, rx) = mpsc::unbounded_channel();
        let rx = c
            .delta_aggregated_resources(UnboundedReceiverStream::new(rx))
            .await
            .expect("stream opens")
            .into_inner();
        RawDelta { tx, rx }
    }

    pub fn send(&self, req: DeltaDiscoveryRequest) {
        self.tx.send(req).expect("stream open");
    }

    pub async fn recv(&mut self) -> DeltaDiscoveryResponse {
        within("a delta response", self.rx.message())
            .await
            .expect("no stream error")
            .expect("stream open")
    }

    pub async fn nothing_for(&mut self, ms: u64) {
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(ms), self.rx.message()).await {
            panic!("expected no response, got {r:?}");
        }
    }
}

/// Names of the resources in a SotW response.
pub fn names(resp: &DiscoveryResponse) -> Vec<String> {
    let mut v: Vec<String> = resp
        .resources
        .iter()
        .map(|a: &Any| weft_xds::cache::resource_name(a).expect("named"))
        .collect();
    v.sort();
    v
}

/// Names of the resources in a delta response.
pub fn delta_names(resp: &DeltaDiscoveryResponse) -> Vec<String> {
    let mut v: Vec<String> = resp.resources.iter().map(|r| r.name.clone()).collect();
    v.sort();
    v
}

pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

pub fn versions(s: &Snapshot) -> BTreeMap<String, String> {
    s.versions()
}
