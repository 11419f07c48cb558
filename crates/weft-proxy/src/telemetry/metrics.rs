//! Istio's standard metrics: `istio_requests_total`, `istio_request_duration_milliseconds`,
//! `istio_request_bytes`, `istio_response_bytes` and the `istio_tcp_*` counters, with Istio's
//! names, types, buckets and labels.
//!
//! Cost: a label set is interned once (a mutex and a hash map, on the first request with that
//! combination); each cluster keeps a small lock-free cache from the per-request key (peer,
//! status, flags, ...) to the interned series, so a request costs a cache probe and a few
//! relaxed atomic additions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;

use super::peer::{UNKNOWN, Workload};
use crate::http::flags::ResponseFlags;

/// Envoy's default histogram buckets, which Istio's standard histograms use (milliseconds for
/// durations, bytes for sizes).
pub const BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// The destination service of a request, from the cluster's `istio` metadata or the
/// authority.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Service {
    /// `destination_service` (the host).
    pub host: Arc<str>,
    /// `destination_service_name`.
    pub name: Arc<str>,
    /// `destination_service_namespace`.
    pub namespace: Arc<str>,
}

impl Default for Service {
    fn default() -> Self {
        let u: Arc<str> = Arc::from(UNKNOWN);
        Service {
            host: u.clone(),
            name: u.clone(),
            namespace: u,
        }
    }
}

impl Service {
    /// A service known only by host name: `name.namespace.svc...` gives the name and namespace
    /// (Kubernetes naming), any other host is its own name.
    pub fn from_host(host: &str) -> Service {
        let host = crate::config::route::strip_port(host);
        if host.is_empty() {
            return Service::default();
        }
        let mut parts = host.split('.');
        let (name, namespace) = match (parts.next(), parts.next(), parts.next()) {
            (Some(n), Some(ns), Some("svc")) => (n, ns),
            _ => (host, UNKNOWN),
        };
        Service {
            host: Arc::from(host),
            name: Arc::from(name),
            namespace: Arc::from(namespace),
        }
    }
}

/// `reporter`: which side of the call this proxy is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reporter {
    /// The client side (outbound sidecar, gateway).
    Source,
    /// The server side (inbound sidecar).
    Destination,
}

impl Reporter {
    fn as_str(self) -> &'static str {
        match self {
            Reporter::Source => "source",
            Reporter::Destination => "destination",
        }
    }
}

/// `connection_security_policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Security {
    /// The client side does not know (`unknown`).
    Unknown,
    /// Plaintext (`none`).
    None,
    /// Mutual TLS (`mutual_tls`).
    MutualTls,
}

impl Security {
    fn as_str(self) -> &'static str {
        match self {
            Security::Unknown => "unknown",
            Security::None => "none",
            Security::MutualTls => "mutual_tls",
        }
    }
}

/// Istio's metric names as `stats.PluginConfig` names them (without the `istio_` prefix), in
/// [`Overrides`] order.
pub const METRIC_NAMES: [&str; 8] = [
    "requests_total",
    "request_duration_milliseconds",
    "request_bytes",
    "response_bytes",
    "tcp_sent_bytes_total",
    "tcp_received_bytes_total",
    "tcp_connections_opened_total",
    "tcp_connections_closed_total",
];

/// One metric's overrides (`stats.PluginConfig.metrics[]`, from the Telemetry API's
/// `metrics.overrides`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct MetricOverride {
    /// Not reported at all (`disabled: true`).
    pub drop: bool,
    /// Labels left out (`REMOVE`).
    pub remove: Vec<String>,
    /// Labels added or replaced by an expression's value (`UPSERT`).
    pub upsert: Vec<(String, super::cel::Expr)>,
}

/// The overrides of every standard metric, by [`METRIC_NAMES`] index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Overrides {
    /// Per metric.
    pub per: [MetricOverride; 8],
}

impl Overrides {
    /// Whether any HTTP metric computes labels per request.
    pub fn http_upserts(&self) -> bool {
        self.per[..4].iter().any(|m| !m.upsert.is_empty())
    }
}

/// The label values of one series, interned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Labels {
    /// `reporter`.
    pub reporter: Reporter,
    /// `source_*`.
    pub source: Arc<Workload>,
    /// `source_principal`.
    pub source_principal: Arc<str>,
    /// `destination_*` (workload side).
    pub destination: Arc<Workload>,
    /// `destination_principal`.
    pub destination_principal: Arc<str>,
    /// `destination_service*`.
    pub service: Arc<Service>,
    /// `request_protocol`: `http`, `grpc` or `tcp`.
    pub protocol: &'static str,
    /// `response_code` (0 for TCP).
    pub code: u16,
    /// `grpc_response_status` (None: empty).
    pub grpc: Option<u16>,
    /// `response_flags`.
    pub flags: ResponseFlags,
    /// `connection_security_policy`.
    pub security: Security,
    /// The overrides the reporting filter was configured with.
    pub overrides: Option<Arc<Overrides>>,
    /// Upserted label values of this request: (metric index, label, value).
    pub extra: Vec<(u8, Arc<str>, Arc<str>)>,
}

impl Labels {
    /// The labels of metric `index` with the overrides applied; `None` when it is dropped.
    fn for_metric(&self, index: usize, http: bool) -> Option<Vec<(String, String)>> {
        let base = self.encode(http);
        let Some(o) = self.overrides.as_ref().map(|o| &o.per[index]) else {
            return Some(base.into_iter().map(|(k, v)| (k.to_owned(), v)).collect());
        };
        if o.drop {
            return None;
        }
        let mut v: Vec<(String, String)> = base
            .into_iter()
            .filter(|(k, _)| !o.remove.iter().any(|r| r == k))
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        for (i, tag, value) in &self.extra {
            if usize::from(*i) != index {
                continue;
            }
            match v.iter_mut().find(|(k, _)| **k == **tag) {
                Some(slot) => slot.1 = value.to_string(),
                None => v.push((tag.to_string(), value.to_string())),
            }
        }
        Some(v)
    }

    fn encode(&self, http: bool) -> Vec<(&'static str, String)> {
        let s = &self.source;
        let d = &self.destination;
        let mut v: Vec<(&'static str, String)> = vec![
            ("reporter", self.reporter.as_str().into()),
            ("source_workload", s.workload.to_string()),
            ("source_canonical_service", s.canonical_service.to_string()),
            (
                "source_canonical_revision",
                s.canonical_revision.to_string(),
            ),
            ("source_workload_namespace", s.namespace.to_string()),
            ("source_principal", self.source_principal.to_string()),
            ("source_app", s.app.to_string()),
            ("source_version", s.version.to_string()),
            ("source_cluster", s.cluster.to_string()),
            ("destination_workload", d.workload.to_string()),
            ("destination_workload_namespace", d.namespace.to_string()),
            (
                "destination_principal",
                self.destination_principal.to_string(),
            ),
            ("destination_app", d.app.to_string()),
            ("destination_version", d.version.to_string()),
            ("destination_service", self.service.host.to_string()),
            (
                "destination_canonical_service",
                d.canonical_service.to_string(),
            ),
            (
                "destination_canonical_revision",
                d.canonical_revision.to_string(),
            ),
            ("destination_service_name", self.service.name.to_string()),
            (
                "destination_service_namespace",
                self.service.namespace.to_string(),
            ),
            ("destination_cluster", d.cluster.to_string()),
            ("request_protocol", self.protocol.into()),
        ];
        if http {
            v.push(("response_code", self.code.to_string()));
            v.push((
                "grpc_response_status",
                self.grpc.map(|g| g.to_string()).unwrap_or_default(),
            ));
        }
        v.push(("response_flags", self.flags.to_string()));
        v.push(("connection_security_policy", self.security.as_str().into()));
        v
    }
}

/// A histogram with [`BUCKETS`], counts per bucket kept non-cumulative (one increment per
/// observation) and summed up at scrape time.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per-bucket counts; the last slot is `+Inf`.
    buckets: [AtomicU64; 20],
    /// Sum of observations, in thousandths of the unit.
    sum_milli: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records `value_milli` thousandths of the unit (microseconds for a millisecond
    /// histogram).
    pub fn observe_milli(&self, value_milli: u64) {
        let v = value_milli as f64 / 1000.0;
        let i = BUCKETS.partition_point(|b| *b < v);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_milli.fetch_add(value_milli, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a whole value.
    pub fn observe(&self, value: u64) {
        self.observe_milli(value.saturating_mul(1000));
    }

    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        // Per-bucket counts: the encoder makes them cumulative.
        let mut total = 0;
        let mut out = Vec::with_capacity(BUCKETS.len() + 1);
        for (i, b) in self.buckets.iter().enumerate() {
            let n = b.load(Ordering::Relaxed);
            total += n;
            out.push((BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), n));
        }
        (
            self.sum_milli.load(Ordering::Relaxed) as f64 / 1000.0,
            total,
            out,
        )
    }
}

/// One HTTP label set's metrics.
#[derive(Debug, Default)]
pub struct HttpSeries {
    /// `istio_requests_total`.
    pub requests: AtomicU64,
    /// `istio_request_duration_milliseconds`.
    pub duration: Histogram,
    /// `istio_request_bytes`.
    pub request_bytes: Histogram,
    /// `istio_response_bytes`.
    pub response_bytes: Histogram,
}

impl HttpSeries {
    /// Records one request.
    pub fn record(&self, duration_us: u64, request_bytes: u64, response_bytes: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.duration.observe_milli(duration_us);
        self.request_bytes.observe(request_bytes);
        self.response_bytes.observe(response_bytes);
    }
}

/// One TCP label set's metrics.
#[derive(Debug, Default)]
pub struct TcpSeries {
    /// `istio_tcp_sent_bytes_total` (towards the downstream... as Istio counts: bytes sent
    /// to the destination).
    pub sent: AtomicU64,
    /// `istio_tcp_received_bytes_total`.
    pub received: AtomicU64,
    /// `istio_tcp_connections_opened_total`.
    pub opened: AtomicU64,
    /// `istio_tcp_connections_closed_total`.
    pub closed: AtomicU64,
}

/// Every series of the proxy, by interned label set.
#[derive(Debug, Default)]
pub struct Registry {
    http: Mutex<HashMap<Arc<Labels>, Arc<HttpSeries>>>,
    tcp: Mutex<HashMap<Arc<Labels>, Arc<TcpSeries>>>,
}

impl Registry {
    /// The HTTP series of `labels`, created on first use.
    pub fn http(&self, labels: Labels) -> Arc<HttpSeries> {
        let mut m = self.http.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(m.entry(Arc::new(labels)).or_default())
    }

    /// The TCP series of `labels`, created on first use.
    pub fn tcp(&self, labels: Labels) -> Arc<TcpSeries> {
        let mut m = self.tcp.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(m.entry(Arc::new(labels)).or_default())
    }

    fn http_all(&self) -> Vec<(Arc<Labels>, Arc<HttpSeries>)> {
        let m = self.http.lock().unwrap_or_else(|p| p.into_inner());
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn tcp_all(&self) -> Vec<(Arc<Labels>, Arc<TcpSeries>)> {
        let m = self.tcp.lock().unwrap_or_else(|p| p.into_inner());
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// What varies per request within one cluster and one connection manager: the key of a
/// cluster's series cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    /// The connection manager's telemetry (reporter and this node), by address.
    pub manager: usize,
    /// The peer workload, by address of its interned value (0: unknown).
    pub peer: usize,
    /// The peer principal, by address (0: unknown).
    pub principal: usize,
    /// `response_code`.
    pub code: u16,
    /// `grpc_response_status`.
    pub grpc: Option<u16>,
    /// `response_flags`.
    pub flags: ResponseFlags,
    /// gRPC or HTTP.
    pub grpc_protocol: bool,
    /// `connection_security_policy`.
    pub security: Security,
}

/// Most keys a cluster caches; further combinations go to the registry each time.
const CACHE_MAX: usize = 64;

/// A cluster's pre-resolved series, keyed by [`Key`]. Reads are lock-free.
#[derive(Debug, Default)]
pub struct SeriesCache {
    entries: ArcSwap<Vec<(Key, Arc<HttpSeries>)>>,
    grow: Mutex<()>,
}

impl SeriesCache {
    /// The series for `key`, resolving (and caching) it with `resolve` on a miss.
    pub fn get(&self, key: Key, resolve: impl FnOnce() -> Arc<HttpSeries>) -> Arc<HttpSeries> {
        if let Some((_, s)) = self.entries.load().iter().find(|(k, _)| *k == key) {
            return Arc::clone(s);
        }
        let _g = self.grow.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.entries.load_full();
        if let Some((_, s)) = current.iter().find(|(k, _)| *k == key) {
            return Arc::clone(s);
        }
        let s = resolve();
        if current.len() < CACHE_MAX {
            let mut next = current.as_ref().clone();
            next.push((key, Arc::clone(&s)));
            self.entries.store(Arc::new(next));
        }
        s
    }
}

/// Renders the registry in Prometheus' text format on each scrape. Series whose labels become
/// equal once overrides remove labels are summed.
#[derive(Debug)]
pub struct IstioCollector(pub Arc<Registry>);

#[derive(Default)]
struct Acc {
    value: u64,
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl Acc {
    fn add_hist(&mut self, h: &Histogram) {
        let (sum, count, buckets) = h.snapshot();
        self.sum += sum;
        self.count += count;
        if self.buckets.is_empty() {
            self.buckets = buckets;
        } else {
            for (a, b) in self.buckets.iter_mut().zip(buckets) {
                a.1 += b.1;
            }
        }
    }
}

type Groups = std::collections::BTreeMap<Vec<(String, String)>, Acc>;

fn encode_counters(
    encoder: &mut DescriptorEncoder,
    name: &str,
    groups: &Groups,
) -> Result<(), std::fmt::Error> {
    if groups.is_empty() {
        return Ok(());
    }
    let mut me = encoder.encode_descriptor(name, "", None, MetricType::Counter)?;
    for (l, acc) in groups {
        ConstCounter::new(acc.value).encode(me.encode_family(l)?)?;
    }
    Ok(())
}

impl Collector for IstioCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let http = self.0.http_all();
        let tcp = self.0.tcp_all();
        // istio_requests_total
        let mut groups = Groups::new();
        for (l, s) in &http {
            if let Some(k) = l.for_metric(0, true) {
                groups.entry(k).or_default().value += s.requests.load(Ordering::Relaxed);
            }
        }
        encode_counters(&mut encoder, "istio_requests", &groups)?;
        type Pick = fn(&HttpSeries) -> &Histogram;
        let hists: [(usize, &str, Pick); 3] = [
            (1, "istio_request_duration_milliseconds", |s| &s.duration),
            (2, "istio_request_bytes", |s| &s.request_bytes),
            (3, "istio_response_bytes", |s| &s.response_bytes),
        ];
        for (index, name, pick) in hists {
            let mut groups = Groups::new();
            for (l, s) in &http {
                if let Some(k) = l.for_metric(index, true) {
                    groups.entry(k).or_default().add_hist(pick(s));
                }
            }
            if groups.is_empty() {
                continue;
            }
            let mut me = encoder.encode_descriptor(name, "", None, MetricType::Histogram)?;
            for (l, acc) in &groups {
                me.encode_family(l)?.encode_histogram::<NoLabelSet>(
                    acc.sum,
                    acc.count,
                    &acc.buckets,
                    None,
                )?;
            }
        }
        type PickTcp = fn(&TcpSeries) -> &AtomicU64;
        let counters: [(usize, &str, PickTcp); 4] = [
            (4, "istio_tcp_sent_bytes", |s| &s.sent),
            (5, "istio_tcp_received_bytes", |s| &s.received),
            (6, "istio_tcp_connections_opened", |s| &s.opened),
            (7, "istio_tcp_connections_closed", |s| &s.closed),
        ];
        for (index, name, pick) in counters {
            let mut groups = Groups::new();
            for (l, s) in &tcp {
                if let Some(k) = l.for_metric(index, false) {
                    groups.entry(k).or_default().value += pick(s).load(Ordering::Relaxed);
                }
            }
            encode_counters(&mut encoder, name, &groups)?;
        }
        Ok(())
    }
}
