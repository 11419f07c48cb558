//! Counters with Envoy's stat names, kept in atomics so that the request path never locks, and
//! rendered for `/stats` (Envoy's text form) and `/stats/prometheus` (prometheus-client).
//!
//! Counter sets live in a [`Stats`] store keyed by name, so that a cluster or HTTP connection
//! manager keeps its counters when a new snapshot replaces its configuration.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Counts a response status into the `1xx`..`5xx` slot of `classes`.
fn count_class(classes: &[AtomicU64; 5], status: u16) {
    let i = (status / 100).clamp(1, 5) as usize - 1;
    classes[i].fetch_add(1, Ordering::Relaxed);
}

/// `cluster.<name>.*`.
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Requests sent upstream.
    pub upstream_rq_total: AtomicU64,
    /// `upstream_rq_1xx` .. `upstream_rq_5xx`.
    pub upstream_rq_xx: [AtomicU64; 5],
    /// Requests that hit the route timeout.
    pub upstream_rq_timeout: AtomicU64,
    /// Requests refused by the circuit breaker (`max_requests`).
    pub upstream_rq_pending_overflow: AtomicU64,
    /// Upstream connections opened.
    pub upstream_cx_total: AtomicU64,
    /// Upstream connections that failed.
    pub upstream_cx_connect_fail: AtomicU64,
    /// Requests or connections with no healthy endpoint.
    pub upstream_cx_none_healthy: AtomicU64,
    /// Times `max_connections` was reached.
    pub upstream_cx_overflow: AtomicU64,
    /// Requests that waited for a connection.
    pub upstream_rq_pending_total: AtomicU64,
    /// Retries sent.
    pub upstream_rq_retry: AtomicU64,
    /// Retries that got a response that was not retried again.
    pub upstream_rq_retry_success: AtomicU64,
    /// Retries refused by the `max_retries` circuit breaker.
    pub upstream_rq_retry_overflow: AtomicU64,
    /// Requests that still failed after `num_retries`.
    pub upstream_rq_retry_limit_exceeded: AtomicU64,
    /// Attempts that hit `per_try_timeout`.
    pub upstream_rq_per_try_timeout: AtomicU64,
    /// Requests reset or failed by the upstream.
    pub upstream_rq_tx_reset: AtomicU64,
    /// Hosts ejected by outlier detection (`outlier_detection.ejections_enforced_total`).
    pub outlier_ejections_enforced_total: AtomicU64,
    /// Ejections for `consecutive_5xx`.
    pub outlier_ejections_enforced_consecutive_5xx: AtomicU64,
    /// Ejections for `consecutive_gateway_failure`.
    pub outlier_ejections_enforced_consecutive_gateway_failure: AtomicU64,
    /// Ejections for `consecutive_local_origin_failure`.
    pub outlier_ejections_enforced_consecutive_local_origin_failure: AtomicU64,
    /// Ejections refused by `max_ejection_percent`.
    pub outlier_ejections_overflow: AtomicU64,
    /// Hosts ejected now (a gauge).
    pub outlier_ejections_active: AtomicU64,
}

impl ClusterStats {
    /// Records a response from upstream.
    pub fn response(&self, status: u16) {
        count_class(&self.upstream_rq_xx, status);
    }
}

/// `http.<stat_prefix>.*` (one HTTP connection manager).
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Requests received.
    pub downstream_rq_total: AtomicU64,
    /// `downstream_rq_1xx` .. `downstream_rq_5xx`.
    pub downstream_rq_xx: [AtomicU64; 5],
    /// Requests in progress.
    pub downstream_rq_active: AtomicU64,
    /// Requests with no matching route (404).
    pub no_route: AtomicU64,
    /// Requests whose cluster does not exist.
    pub no_cluster: AtomicU64,
    /// Requests answered with `direct_response`.
    pub rq_direct_response: AtomicU64,
    /// Requests answered with a redirect.
    pub rq_redirect: AtomicU64,
    /// Connections upgraded (WebSocket).
    pub downstream_cx_upgrades_total: AtomicU64,
    /// Requests the fault filter delayed.
    pub fault_delays_injected: AtomicU64,
    /// Requests the fault filter aborted.
    pub fault_aborts_injected: AtomicU64,
    /// Faults skipped because `max_active_faults` were active.
    pub fault_faults_overflow: AtomicU64,
    /// Requests the local rate limit looked at.
    pub ratelimit_enabled: AtomicU64,
    /// Requests under the local rate limit.
    pub ratelimit_ok: AtomicU64,
    /// Requests over the local rate limit.
    pub ratelimit_rate_limited: AtomicU64,
    /// Requests refused by the local rate limit.
    pub ratelimit_enforced: AtomicU64,
    /// Connections closed by the idle timeout.
    pub downstream_cx_idle_timeout: AtomicU64,
    /// Connections closed by `max_requests_per_connection`.
    pub downstream_cx_max_requests_reached: AtomicU64,
    /// Connections closed because request headers did not arrive within
    /// `request_headers_timeout`.
    pub downstream_rq_header_timeout: AtomicU64,
    /// Streams ended by the stream idle timeout.
    pub downstream_rq_idle_timeout: AtomicU64,
    /// Requests that hit the route timeout.
    pub downstream_rq_timeout: AtomicU64,
    /// Malformed requests refused (request smuggling shapes).
    pub downstream_rq_rejected: AtomicU64,
}

impl HttpStats {
    /// Records a response sent downstream.
    pub fn response(&self, status: u16) {
        count_class(&self.downstream_rq_xx, status);
    }
}

/// `listener.<address>.*`.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections accepted.
    pub downstream_cx_total: AtomicU64,
    /// Connections open.
    pub downstream_cx_active: AtomicU64,
    /// Connections no filter chain matched (closed).
    pub no_filter_chain_match: AtomicU64,
    /// Connections refused because the listener's connection limit was reached.
    pub downstream_cx_overflow: AtomicU64,
    /// Connections closed because the first bytes did not arrive within
    /// `listener_filters_timeout`.
    pub downstream_pre_cx_timeout: AtomicU64,
    /// TLS handshakes completed (`ssl.handshake`).
    pub ssl_handshake: AtomicU64,
    /// TLS handshakes that failed (`ssl.connection_error`).
    pub ssl_connection_error: AtomicU64,
}

/// All counter sets of the proxy, by name. The lock is taken when configuration is compiled
/// and when stats are read, never per request.
#[derive(Debug, Default)]
pub struct Stats {
    clusters: Mutex<BTreeMap<String, Arc<ClusterStats>>>,
    http: Mutex<BTreeMap<String, Arc<HttpStats>>>,
    listeners: Mutex<BTreeMap<String, Arc<ListenerStats>>>,
    /// Istio's standard metrics, access log writers and this node's identity.
    pub telemetry: Arc<crate::telemetry::Telemetry>,
}

fn get<T: Default>(map: &Mutex<BTreeMap<String, Arc<T>>>, name: &str) -> Arc<T> {
    let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
    Arc::clone(m.entry(name.to_owned()).or_default())
}

fn all<T>(map: &Mutex<BTreeMap<String, Arc<T>>>) -> Vec<(String, Arc<T>)> {
    let m = map.lock().unwrap_or_else(|p| p.into_inner());
    m.iter().map(|(k, v)| (k.clone(), Arc::clone(v))).collect()
}

type Row = (&'static str, u64, MetricType);

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn cluster_rows(s: &ClusterStats) -> Vec<Row> {
    let mut v = vec![
        (
            "upstream_rq_total",
            load(&s.upstream_rq_total),
            MetricType::Counter,
        ),
        (
            "upstream_rq_timeout",
            load(&s.upstream_rq_timeout),
            MetricType::Counter,
        ),
        (
            "upstream_rq_pending_overflow",
            load(&s.upstream_rq_pending_overflow),
            MetricType::Counter,
        ),
        (
            "upstream_cx_total",
            load(&s.upstream_cx_total),
            MetricType::Counter,
        ),
        (
            "upstream_cx_connect_fail",
            load(&s.upstream_cx_connect_fail),
            MetricType::Counter,
        ),
        (
            "upstream_cx_none_healthy",
            load(&s.upstream_cx_none_healthy),
            MetricType::Counter,
        ),
        (
            "upstream_cx_overflow",
            load(&s.upstream_cx_overflow),
            MetricType::Counter,
        ),
        (
            "upstream_rq_pending_total",
            load(&s.upstream_rq_pending_total),
            MetricType::Counter,
        ),
        (
            "upstream_rq_retry",
            load(&s.upstream_rq_retry),
            MetricType::Counter,
        ),
        (
            "upstream_rq_retry_success",
            load(&s.upstream_rq_retry_success),
            MetricType::Counter,
        ),
        (
            "upstream_rq_retry_overflow",
            load(&s.upstream_rq_retry_overflow),
            MetricType::Counter,
        ),
        (
            "upstream_rq_retry_limit_exceeded",
            load(&s.upstream_rq_retry_limit_exceeded),
            MetricType::Counter,
        ),
        (
            "upstream_rq_per_try_timeout",
            load(&s.upstream_rq_per_try_timeout),
            MetricType::Counter,
        ),
        (
            "upstream_rq_tx_reset",
            load(&s.upstream_rq_tx_reset),
            MetricType::Counter,
        ),
        (
            "outlier_detection.ejections_enforced_total",
            load(&s.outlier_ejections_enforced_total),
            MetricType::Counter,
        ),
        (
            "outlier_detection.ejections_enforced_consecutive_5xx",
            load(&s.outlier_ejections_enforced_consecutive_5xx),
            MetricType::Counter,
        ),
        (
            "outlier_detection.ejections_enforced_consecutive_gateway_failure",
            load(&s.outlier_ejections_enforced_consecutive_gateway_failure),
            MetricType::Counter,
        ),
        (
            "outlier_detection.ejections_enforced_consecutive_local_origin_failure",
            load(&s.outlier_ejections_enforced_consecutive_local_origin_failure),
            MetricType::Counter,
        ),
        (
            "outlier_detection.ejections_overflow",
            load(&s.outlier_ejections_overflow),
            MetricType::Counter,
        ),
        (
            "outlier_detection.ejections_active",
            load(&s.outlier_ejections_active),
            MetricType::Gauge,
        ),
    ];
    const XX: [&str; 5] = [
        "upstream_rq_1xx",
        "upstream_rq_2xx",
        "upstream_rq_3xx",
        "upstream_rq_4xx",
        "upstream_rq_5xx",
    ];
    for (i, name) in XX.iter().enumerate() {
        v.push((name, load(&s.upstream_rq_xx[i]), MetricType::Counter));
    }
    v
}

fn http_rows(s: &HttpStats) -> Vec<Row> {
    let mut v = vec![
        (
            "downstream_rq_total",
            load(&s.downstream_rq_total),
            MetricType::Counter,
        ),
        (
            "downstream_rq_active",
            load(&s.downstream_rq_active),
            MetricType::Gauge,
        ),
        ("no_route", load(&s.no_route), MetricType::Counter),
        ("no_cluster", load(&s.no_cluster), MetricType::Counter),
        (
            "rq_direct_response",
            load(&s.rq_direct_response),
            MetricType::Counter,
        ),
        ("rq_redirect", load(&s.rq_redirect), MetricType::Counter),
        (
            "downstream_cx_upgrades_total",
            load(&s.downstream_cx_upgrades_total),
            MetricType::Counter,
        ),
        (
            "fault.delays_injected",
            load(&s.fault_delays_injected),
            MetricType::Counter,
        ),
        (
            "fault.aborts_injected",
            load(&s.fault_aborts_injected),
            MetricType::Counter,
        ),
        (
            "fault.faults_overflow",
            load(&s.fault_faults_overflow),
            MetricType::Counter,
        ),
        (
            "local_rate_limit.enabled",
            load(&s.ratelimit_enabled),
            MetricType::Counter,
        ),
        (
            "local_rate_limit.ok",
            load(&s.ratelimit_ok),
            MetricType::Counter,
        ),
        (
            "local_rate_limit.rate_limited",
            load(&s.ratelimit_rate_limited),
            MetricType::Counter,
        ),
        (
            "local_rate_limit.enforced",
            load(&s.ratelimit_enforced),
            MetricType::Counter,
        ),
        (
            "downstream_cx_idle_timeout",
            load(&s.downstream_cx_idle_timeout),
            MetricType::Counter,
        ),
        (
            "downstream_cx_max_requests_reached",
            load(&s.downstream_cx_max_requests_reached),
            MetricType::Counter,
        ),
        (
            "downstream_rq_header_timeout",
            load(&s.downstream_rq_header_timeout),
            MetricType::Counter,
        ),
        (
            "downstream_rq_idle_timeout",
            load(&s.downstream_rq_idle_timeout),
            MetricType::Counter,
        ),
        (
            "downstream_rq_timeout",
            load(&s.downstream_rq_timeout),
            MetricType::Counter,
        ),
        (
            "downstream_rq_rejected",
            load(&s.downstream_rq_rejected),
            MetricType::Counter,
        ),
    ];
    const XX: [&str; 5] = [
        "downstream_rq_1xx",
        "downstream_rq_2xx",
        "downstream_rq_3xx",
        "downstream_rq_4xx",
        "downstream_rq_5xx",
    ];
    for (i, name) in XX.iter().enumerate() {
        v.push((name, load(&s.downstream_rq_xx[i]), MetricType::Counter));
    }
    v
}

fn listener_rows(s: &ListenerStats) -> Vec<Row> {
    vec![
        (
            "downstream_cx_total",
            load(&s.downstream_cx_total),
            MetricType::Counter,
        ),
        (
            "downstream_cx_active",
            load(&s.downstream_cx_active),
            MetricType::Gauge,
        ),
        (
            "no_filter_chain_match",
            load(&s.no_filter_chain_match),
            MetricType::Counter,
        ),
        (
            "downstream_cx_overflow",
            load(&s.downstream_cx_overflow),
            MetricType::Counter,
        ),
        (
            "downstream_pre_cx_timeout",
            load(&s.downstream_pre_cx_timeout),
            MetricType::Counter,
        ),
        ("ssl.handshake", load(&s.ssl_handshake), MetricType::Counter),
        (
            "ssl.connection_error",
            load(&s.ssl_connection_error),
            MetricType::Counter,
        ),
    ]
}

impl Stats {
    /// The counters of cluster `name`, created on first use.
    pub fn cluster(&self, name: &str) -> Arc<ClusterStats> {
        get(&self.clusters, name)
    }

    /// The counters of the HTTP connection manager with `stat_prefix`.
    pub fn http(&self, stat_prefix: &str) -> Arc<HttpStats> {
        get(&self.http, stat_prefix)
    }

    /// The counters of a listener, by its stat name (`127.0.0.1_10000` or `stat_prefix`).
    pub fn listener(&self, name: &str) -> Arc<ListenerStats> {
        get(&self.listeners, name)
    }

    /// Every counter as (scope, scope name, stat, value, type), in a stable order.
    fn rows(&self) -> Vec<(&'static str, String, &'static str, u64, MetricType)> {
        let mut out = Vec::new();
        for (name, s) in all(&self.clusters) {
            out.extend(
                cluster_rows(&s)
                    .into_iter()
                    .map(|(k, v, t)| ("cluster", name.clone(), k, v, t)),
            );
        }
        for (name, s) in all(&self.http) {
            out.extend(
                http_rows(&s)
                    .into_iter()
                    .map(|(k, v, t)| ("http", name.clone(), k, v, t)),
            );
        }
        for (name, s) in all(&self.listeners) {
            out.extend(
                listener_rows(&s)
                    .into_iter()
                    .map(|(k, v, t)| ("listener", name.clone(), k, v, t)),
            );
        }
        out
    }

    /// Envoy's `/stats` text: `cluster.backend.upstream_rq_total: 3`, one per line, sorted.
    pub fn render_text(&self) -> String {
        let mut lines: Vec<String> = self
            .rows()
            .into_iter()
            .map(|(scope, name, stat, v, _)| format!("{scope}.{name}.{stat}: {v}"))
            .collect();
        lines.sort();
        let mut s = lines.join("\n");
        s.push('\n');
        s
    }

    /// Prometheus text exposition with Envoy's names and labels, e.g.
    /// `envoy_cluster_upstream_rq_total{envoy_cluster_name="backend"} 3`.
    pub fn render_prometheus(self: &Arc<Self>) -> Result<String, std::fmt::Error> {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(StatsCollector(Arc::clone(self))));
        registry.register_collector(Box::new(crate::telemetry::metrics::IstioCollector(
            Arc::clone(&self.telemetry.metrics),
        )));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry)?;
        Ok(out)
    }
}

/// One metric's type and its (label value, value) pairs.
type Series = (MetricType, Vec<(String, u64)>);

/// Renders the store on each scrape, so that counters of any cluster appear without per-cluster
/// registration.
#[derive(Debug)]
struct StatsCollector(Arc<Stats>);

impl Collector for StatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut by_metric: BTreeMap<(String, &'static str), Series> = BTreeMap::new();
        for (scope, name, stat, v, t) in self.0.rows() {
            // Counters get `_total` from the encoder (OpenMetrics); keep Envoy's name otherwise.
            let metric = match t {
                MetricType::Counter => {
                    format!(
                        "envoy_{scope}_{}",
                        stat.strip_suffix("_total").unwrap_or(stat)
                    )
                }
                _ => format!("envoy_{scope}_{stat}"),
            }
            .replace('.', "_");
            let label = match scope {
                "cluster" => "envoy_cluster_name",
                "http" => "envoy_http_conn_manager_prefix",
                _ => "envoy_listener_address",
            };
            by_metric
                .entry((metric, label))
                .or_insert_with(|| (t, Vec::new()))
                .1
                .push((name, v));
        }
        for ((metric, label), (t, series)) in &by_metric {
            let mut me = encoder.encode_descriptor(metric, "", None, *t)?;
            for (name, v) in series {
                let labels = [(*label, name.as_str())];
                let fam = me.encode_family(&labels)?;
                match t {
                    MetricType::Counter => ConstCounter::new(*v).encode(fam)?,
                    _ => ConstGauge::new(*v as i64).encode(fam)?,
                }
            }
        }
        Ok(())
    }
}
