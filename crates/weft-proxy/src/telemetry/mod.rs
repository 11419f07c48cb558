//! Telemetry: Istio's standard metrics, access logs and tracing, fed from two hooks in
//! the HTTP connection manager (request start, response end) and one in the TCP proxy.
//!
//! What the control plane asks for arrives in Envoy's own shapes: the `istio.stats` HTTP and
//! network filter (its `stats.PluginConfig` inside an `xds.type.v3.TypedStruct`, as istiod
//! writes it), `access_log` on the HTTP connection manager and the TCP proxy. A connection
//! manager with none of them has no telemetry state and pays nothing.

pub mod access_log;
pub mod cel;
pub mod metrics;
pub mod peer;
pub mod tracer;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Method, Request, Response, Version};
use http_body::{Body as _, Frame};
use prost::Message;
use weft_xds::envoy::config::cluster::v3 as cl;
use weft_xds::google::protobuf::{Any, Struct, value::Kind};

use crate::config::{CompileError, Unsupported};
use crate::http::RequestCtx;
use crate::http::body::{Body, BodyError};
use crate::http::flags::ResponseFlags;
use metrics::{Key, Labels, Registry, Reporter, Security, SeriesCache, Service};
use peer::{Node, PEER_METADATA, PEER_METADATA_ID, PeerCache, UNKNOWN, Workload};

/// Per-proxy telemetry state, shared by every configuration version: the node's identity,
/// the metric series, decoded peers and the access log writers.
#[derive(Debug)]
pub struct Telemetry {
    node: RwLock<Arc<Node>>,
    /// Decoded `x-envoy-peer-metadata` values.
    pub peers: PeerCache,
    /// Istio's standard metrics.
    pub metrics: Arc<Registry>,
    /// Access log writers by path.
    pub sinks: access_log::Sinks,
    /// Span exporters by collector.
    pub tracers: tracer::Tracers,
    unknown_principal: Arc<str>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            node: RwLock::new(Arc::new(Node::from_node(None))),
            peers: PeerCache::default(),
            metrics: Arc::default(),
            sinks: access_log::Sinks::default(),
            tracers: tracer::Tracers::default(),
            unknown_principal: Arc::from(UNKNOWN),
        }
    }
}

impl Telemetry {
    /// Takes this proxy's identity from the bootstrap `node` (at each compile; it does not
    /// change while the proxy runs, but a reload may bring it).
    pub fn set_node(&self, node: Option<&weft_xds::envoy::config::core::v3::Node>) {
        let n = Node::from_node(node);
        let mut cur = self.node.write().unwrap_or_else(|p| p.into_inner());
        if cur.id != n.id || cur.workload != n.workload || cur.header != n.header {
            *cur = Arc::new(n);
        }
    }

    /// This proxy's identity.
    pub fn node(&self) -> Arc<Node> {
        Arc::clone(&self.node.read().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The `istio.stats` filter's settings (`stats.PluginConfig`).
#[derive(Clone, Debug)]
pub struct StatsConfig {
    /// Which side this connection manager reports as.
    pub reporter: Reporter,
    /// Use the authority as `destination_service` when the cluster does not name a service
    /// (`disable_host_header_fallback: false`).
    pub host_fallback: bool,
    /// `metrics`: per-metric label overrides and drops.
    pub overrides: Option<Arc<metrics::Overrides>>,
}

/// The filter name istiod gives its stats filter.
pub const STATS_FILTER: &str = "istio.stats";
/// `stats.PluginConfig`, the stats filter's configuration type.
pub const PLUGIN_CONFIG: &str = "stats.PluginConfig";
const TYPED_STRUCT: [&str; 2] = ["xds.type.v3.TypedStruct", "udpa.type.v1.TypedStruct"];
const STRUCT: &str = "google.protobuf.Struct";

/// `xds.type.v3.TypedStruct` (and `udpa.type.v1.TypedStruct`, the same message): how istiod
/// wraps configuration whose type Envoy's API does not define. Not in the Envoy type set.
#[derive(Clone, PartialEq, prost::Message)]
struct TypedStruct {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(message, optional, tag = "2")]
    value: Option<Struct>,
}

/// Reads an `istio.stats` filter (HTTP or network). `None` when the filter is not the stats
/// filter. Its `stats.PluginConfig` comes as istiod writes it (inside a `TypedStruct`), or, as
/// weft's control plane writes it, as a `google.protobuf.Struct` in a filter named
/// `istio.stats` (a type every xDS tool can render, unlike `stats.PluginConfig`). The reporter follows the listener's `traffic_direction` (`INBOUND`: destination),
/// unless the config says `reporter: SERVER_GATEWAY` (source, as Istio's gateways report).
pub fn stats_filter(
    name: &str,
    any: Option<&Any>,
    inbound: bool,
    resource: &str,
    field: &str,
) -> Result<Option<StatsConfig>, CompileError> {
    let type_name = any.map_or("", |a| crate::config::type_name(&a.type_url));
    let config = if TYPED_STRUCT.contains(&type_name) {
        let a = any.map(|a| a.value.as_slice()).unwrap_or_default();
        let ts = TypedStruct::decode(a).map_err(|source| CompileError::Decode {
            resource: resource.to_owned(),
            field: field.to_owned(),
            type_url: type_name.to_owned(),
            source,
        })?;
        if crate::config::type_name(&ts.type_url) != PLUGIN_CONFIG {
            return Ok(None);
        }
        ts.value.unwrap_or_default()
    } else if name == STATS_FILTER && type_name == STRUCT {
        let a = any.map(|a| a.value.as_slice()).unwrap_or_default();
        Struct::decode(a).map_err(|source| CompileError::Decode {
            resource: resource.to_owned(),
            field: field.to_owned(),
            type_url: type_name.to_owned(),
            source,
        })?
    } else if name == STATS_FILTER && (type_name.is_empty() || type_name == PLUGIN_CONFIG) {
        Struct::default()
    } else {
        return Ok(None);
    };
    let text = |k: &str| match config.fields.get(k).and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(s)) => Some(s.as_str()),
        _ => None,
    };
    let flag = |k: &str| {
        matches!(
            config.fields.get(k).and_then(|v| v.kind.as_ref()),
            Some(Kind::BoolValue(true))
        )
    };
    let reporter = match text("reporter") {
        Some("SERVER_GATEWAY") => Reporter::Source,
        Some("UNSPECIFIED") | Some("") | None => {
            if inbound {
                Reporter::Destination
            } else {
                Reporter::Source
            }
        }
        Some(other) => {
            return Err(CompileError::Invalid {
                resource: resource.to_owned(),
                field: format!("{field}.typed_config.value.reporter"),
                reason: format!("{other:?} is not UNSPECIFIED or SERVER_GATEWAY"),
            });
        }
    };
    let overrides = match config.fields.get("metrics").and_then(|v| v.kind.as_ref()) {
        Some(Kind::ListValue(l)) => Some(Arc::new(metric_overrides(
            &l.values,
            resource,
            &format!("{field}.typed_config.value.metrics"),
        )?)),
        _ => None,
    };
    Ok(Some(StatsConfig {
        reporter,
        host_fallback: !flag("disable_host_header_fallback"),
        overrides,
    }))
}

/// Reads `stats.PluginConfig.metrics`: `{name, dimensions: {label: expression},
/// tags_to_remove: [label], drop}`; an empty name applies to every metric.
fn metric_overrides(
    list: &[weft_xds::google::protobuf::Value],
    resource: &str,
    field: &str,
) -> Result<metrics::Overrides, CompileError> {
    let mut out = metrics::Overrides::default();
    for (i, v) in list.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let bad = |reason: String| CompileError::Invalid {
            resource: resource.to_owned(),
            field: f.clone(),
            reason,
        };
        let Some(Kind::StructValue(m)) = &v.kind else {
            return Err(bad("a metric override is an object".into()));
        };
        let get = |k: &str| m.fields.get(k).and_then(|v| v.kind.as_ref());
        let name = match get("name") {
            Some(Kind::StringValue(s)) => s.trim_start_matches("istio_").to_owned(),
            _ => String::new(),
        };
        let targets: Vec<usize> = if name.is_empty() {
            (0..metrics::METRIC_NAMES.len()).collect()
        } else {
            match metrics::METRIC_NAMES.iter().position(|n| *n == name) {
                Some(i) => vec![i],
                None => {
                    return Err(bad(format!(
                        "metric {name:?} is not one of Istio's standard metrics ({})",
                        metrics::METRIC_NAMES.join(", ")
                    )));
                }
            }
        };
        let drop = matches!(get("drop"), Some(Kind::BoolValue(true)));
        let mut remove = Vec::new();
        if let Some(Kind::ListValue(l)) = get("tags_to_remove") {
            for t in &l.values {
                if let Some(Kind::StringValue(s)) = &t.kind {
                    remove.push(s.clone());
                }
            }
        }
        let mut upsert = Vec::new();
        if let Some(Kind::StructValue(d)) = get("dimensions") {
            let mut keys: Vec<&String> = d.fields.keys().collect();
            keys.sort();
            for k in keys {
                let Some(Kind::StringValue(e)) = d.fields.get(k).and_then(|v| v.kind.as_ref())
                else {
                    return Err(bad(format!("dimensions.{k} must be an expression string")));
                };
                let expr = cel::parse(e)
                    .map_err(|err| bad(format!("dimensions.{k}: expression {e:?}: {err}")))?;
                upsert.push((k.clone(), expr));
            }
        }
        for t in targets {
            let m = &mut out.per[t];
            m.drop |= drop;
            m.remove.extend(remove.iter().cloned());
            m.upsert.extend(upsert.iter().cloned());
        }
    }
    Ok(out)
}

/// A cluster's part of the labels: the destination service from its `istio` metadata
/// (`filter_metadata.istio.services[0]`: host, name, namespace), else from an
/// `outbound|port|subset|host` name, and the cluster's cache of resolved series.
#[derive(Debug, Default)]
pub struct ClusterTelemetry {
    /// The service, when the cluster names one.
    pub service: Option<Arc<Service>>,
    /// Resolved HTTP series by per-request key.
    pub cache: SeriesCache,
}

impl ClusterTelemetry {
    /// Reads the cluster's metadata and name.
    pub fn new(c: &cl::Cluster) -> ClusterTelemetry {
        let from_md = c
            .metadata
            .as_ref()
            .and_then(|m| m.filter_metadata.get("istio"))
            .and_then(|s| match s.fields.get("services")?.kind.as_ref()? {
                Kind::ListValue(l) => match l.values.first()?.kind.as_ref()? {
                    Kind::StructValue(svc) => Some(svc.clone()),
                    _ => None,
                },
                _ => None,
            })
            .and_then(|svc| {
                let get = |k: &str| match svc.fields.get(k).and_then(|v| v.kind.as_ref()) {
                    Some(Kind::StringValue(s)) if !s.is_empty() => Some(s.clone()),
                    _ => None,
                };
                let host = get("host")?;
                let derived = Service::from_host(&host);
                Some(Service {
                    name: get("name").map_or(derived.name, Arc::from),
                    namespace: get("namespace").map_or(derived.namespace, Arc::from),
                    host: Arc::from(host.as_str()),
                })
            });
        let from_name = || {
            let mut parts = c.name.split('|');
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some("outbound" | "inbound"), Some(_), Some(_), Some(host))
                    if !host.is_empty() =>
                {
                    Some(Service::from_host(host))
                }
                _ => None,
            }
        };
        ClusterTelemetry {
            service: from_md.or_else(from_name).map(Arc::new),
            cache: SeriesCache::default(),
        }
    }
}

/// One connection manager's telemetry: its stats filter, its access logs.
#[derive(Debug)]
pub struct HttpTelemetry {
    shared: Arc<Telemetry>,
    node: Arc<Node>,
    /// `istio.stats`, when configured.
    pub stats: Option<StatsConfig>,
    /// `access_log`, in order.
    pub logs: Vec<access_log::AccessLog>,
    /// `tracing`, when configured.
    pub tracing: Option<tracer::Tracing>,
    /// Request headers the logs print (`%REQ(...)%`), captured at request start.
    req_headers: Vec<HeaderName>,
    /// Response headers the logs print.
    resp_headers: Vec<HeaderName>,
    /// Series of requests that reached no cluster (no route, direct responses).
    no_cluster: SeriesCache,
}

impl HttpTelemetry {
    /// Assembles a connection manager's telemetry; `None` when there is nothing to do.
    pub fn new(
        shared: &Arc<Telemetry>,
        stats: Option<StatsConfig>,
        logs: Vec<access_log::AccessLog>,
        tracing: Option<tracer::Tracing>,
    ) -> Option<HttpTelemetry> {
        if stats.is_none() && logs.is_empty() && tracing.is_none() {
            return None;
        }
        let mut req_headers = Vec::new();
        let mut resp_headers = Vec::new();
        for l in &logs {
            l.format.headers(&mut req_headers, &mut resp_headers);
            l.filter_headers(&mut req_headers);
        }
        if let Some(t) = &tracing {
            t.headers(&mut req_headers);
        }
        if let Some(o) = stats.as_ref().and_then(|s| s.overrides.as_ref()) {
            let mut names = Vec::new();
            for m in &o.per {
                for (_, e) in &m.upsert {
                    e.request_headers(&mut names);
                }
            }
            for n in names {
                if let Ok(h) = HeaderName::from_bytes(n.as_bytes())
                    && !req_headers.contains(&h)
                {
                    req_headers.push(h);
                }
            }
        }
        Some(HttpTelemetry {
            shared: Arc::clone(shared),
            node: shared.node(),
            stats,
            logs,
            tracing,
            req_headers,
            resp_headers,
            no_cluster: SeriesCache::default(),
        })
    }

    /// At request start: reads and strips the peer's metadata headers (server side), adds
    /// this node's (client side), and notes what the metrics and logs need.
    pub fn start<B>(&self, req: &mut Request<B>, downstream: SocketAddr) -> Box<Exchange> {
        let mut peer = None;
        if let Some(s) = &self.stats {
            let h = req.headers_mut();
            match s.reporter {
                Reporter::Destination => {
                    if let Some(v) = h.remove(PEER_METADATA) {
                        peer = self.shared.peers.lookup(&v);
                    }
                    h.remove(PEER_METADATA_ID);
                }
                Reporter::Source => {
                    h.insert(PEER_METADATA, self.node.header.clone());
                    h.insert(PEER_METADATA_ID, self.node.header_id.clone());
                }
            }
        }
        let trace = self.tracing.as_ref().map(|t| t.start(req.headers_mut()));
        let headers = req.headers();
        let grpc = headers
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let mut head_bytes = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
        for (k, v) in headers {
            head_bytes += k.as_str().len() + v.len() + 4;
        }
        let body_bytes = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let captured = self
            .req_headers
            .iter()
            .map(|n| headers.get(n).cloned())
            .collect();
        let log = !self.logs.is_empty() || trace.is_some_and(|t| t.sampled);
        Box::new(Exchange {
            start: Instant::now(),
            start_time: SystemTime::now(),
            method: req.method().clone(),
            path: if log {
                req.uri().path_and_query().map(|p| p.as_str().to_owned())
            } else {
                None
            },
            authority: authority(req),
            version: req.version(),
            grpc,
            downstream,
            request_bytes: head_bytes as u64 + body_bytes,
            request_body_bytes: body_bytes,
            req_headers: captured,
            resp_headers: Vec::new(),
            peer,
            code: 0,
            flags: ResponseFlags::default(),
            grpc_status: None,
            cluster: None,
            upstream_host: None,
            request_id: None,
            response_bytes: 0,
            response_body_bytes: 0,
            ended: None,
            trace,
        })
    }

    /// When the response head is ready: notes the outcome, swaps the metadata headers, and
    /// wraps the body so that its end records the request.
    pub fn finish(
        self: &Arc<Self>,
        mut ex: Box<Exchange>,
        resp: Response<Body>,
        rq: &mut RequestCtx,
    ) -> Response<Body> {
        let (mut parts, body) = resp.into_parts();
        if let Some(s) = &self.stats {
            match s.reporter {
                Reporter::Source => {
                    if let Some(v) = parts.headers.remove(PEER_METADATA) {
                        ex.peer = self.shared.peers.lookup(&v);
                    }
                    parts.headers.remove(PEER_METADATA_ID);
                }
                Reporter::Destination => {
                    parts
                        .headers
                        .insert(PEER_METADATA, self.node.header.clone());
                    parts
                        .headers
                        .insert(PEER_METADATA_ID, self.node.header_id.clone());
                }
            }
        }
        ex.code = parts.status.as_u16();
        ex.flags = rq.flags;
        ex.grpc_status = crate::config::policy::grpc_status(&parts.headers).map(|g| g as u16);
        ex.cluster = rq.cluster.take();
        ex.upstream_host = rq.upstream_host;
        ex.request_id = rq.request_id.take();
        let mut head = 0;
        for (k, v) in &parts.headers {
            head += k.as_str().len() + v.len() + 4;
        }
        ex.response_bytes = head as u64;
        ex.resp_headers = self
            .resp_headers
            .iter()
            .map(|n| parts.headers.get(n).cloned())
            .collect();
        let observed = Observed {
            body,
            ex: Some(ex),
            telemetry: Arc::clone(self),
        };
        Response::from_parts(parts, Body::Observed(Box::new(observed)))
    }

    fn record(&self, ex: &Exchange) {
        let end = ex.ended.unwrap_or_else(Instant::now);
        let duration_us = end.saturating_duration_since(ex.start).as_micros() as u64;
        if let Some(s) = &self.stats {
            let key = Key {
                manager: self as *const Self as usize,
                peer: ex.peer.as_ref().map_or(0, |p| Arc::as_ptr(p) as usize),
                principal: 0,
                code: ex.code,
                grpc: ex.grpc_status,
                flags: ex.flags,
                grpc_protocol: ex.grpc,
                security: self.security(s),
            };
            let resolve = || self.shared.metrics.http(self.labels(s, ex, key));
            let upserts = s.overrides.as_ref().is_some_and(|o| o.http_upserts());
            let series = match ex.cluster.as_ref().map(|c| &c.telemetry) {
                // Labels computed per request: interned each time.
                _ if upserts => {
                    let mut labels = self.labels(s, ex, key);
                    labels.extra = self.upserts(s, ex, duration_us / 1000);
                    self.shared.metrics.http(labels)
                }
                Some(t) if t.service.is_some() || !s.host_fallback => t.cache.get(key, resolve),
                Some(_) => resolve(),
                None if !s.host_fallback => self.no_cluster.get(key, resolve),
                None => resolve(),
            };
            series.record(duration_us, ex.request_bytes, ex.response_bytes);
        }
        for log in &self.logs {
            log.log(ex, self, duration_us);
        }
        if let (Some(t), Some(ctx)) = (&self.tracing, &ex.trace)
            && ctx.sampled
        {
            let header = |n: &HeaderName| self.captured(ex, n);
            t.finish(
                ctx,
                self.span(ex, end.saturating_duration_since(ex.start)),
                &header,
            );
        }
    }

    /// A request header captured at the start.
    fn captured(&self, ex: &Exchange, n: &HeaderName) -> Option<String> {
        self.req_header_index(n)
            .and_then(|i| ex.req_headers.get(i))
            .and_then(|v| v.as_ref())
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// The span of one request: Istio's name and attributes.
    fn span(&self, ex: &Exchange, duration: std::time::Duration) -> tracer::SpanParts {
        let w = &self.node.workload;
        let path = ex.path.as_deref().unwrap_or("/");
        let cluster = ex.cluster.as_ref();
        let name = match cluster.map(|c| (&c.telemetry.service, c.name.split('|').nth(1))) {
            Some((Some(svc), Some(port))) if !port.is_empty() => format!("{}:{port}/*", svc.host),
            _ => format!("{}{}", ex.authority, path.split('?').next().unwrap_or("/")),
        };
        let mut tags: Vec<(String, String)> = vec![
            ("component".into(), "proxy".into()),
            ("node_id".into(), self.node.id.clone()),
            (
                "guid:x-request-id".into(),
                ex.request_id
                    .as_ref()
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned(),
            ),
            ("http.url".into(), format!("http://{}{path}", ex.authority)),
            ("http.method".into(), ex.method.as_str().to_owned()),
            ("http.protocol".into(), format!("{:?}", ex.version)),
            ("http.status_code".into(), ex.code.to_string()),
            ("downstream_cluster".into(), "-".into()),
            ("peer.address".into(), ex.downstream.ip().to_string()),
            ("request_size".into(), ex.request_bytes.to_string()),
            ("response_size".into(), ex.response_bytes.to_string()),
            ("response_flags".into(), ex.flags.to_string()),
            (
                "istio.canonical_service".into(),
                w.canonical_service.to_string(),
            ),
            (
                "istio.canonical_revision".into(),
                w.canonical_revision.to_string(),
            ),
            ("istio.namespace".into(), w.namespace.to_string()),
        ];
        if let Some(ua) = self.captured(ex, &http::header::USER_AGENT) {
            tags.push(("user_agent".into(), ua));
        }
        if let Some(c) = cluster {
            tags.push(("upstream_cluster".into(), c.name.clone()));
            tags.push(("upstream_cluster.name".into(), c.name.clone()));
        }
        if let Some(g) = ex.grpc_status {
            tags.push(("grpc.status_code".into(), g.to_string()));
        }
        tracer::SpanParts {
            name,
            start: ex.start_time,
            duration,
            service: format!("{}.{}", w.canonical_service, w.namespace),
            local_ip: None,
            error: ex.code >= 500,
            tags,
        }
    }

    /// The per-request label values of the overrides' `UPSERT` expressions (an expression
    /// that does not evaluate gives `unknown`).
    fn upserts(
        &self,
        s: &StatsConfig,
        ex: &Exchange,
        duration_ms: u64,
    ) -> Vec<(u8, Arc<str>, Arc<str>)> {
        let Some(o) = &s.overrides else {
            return Vec::new();
        };
        let attrs = access_log::Attrs {
            ex,
            t: self,
            duration_ms,
        };
        let mut out = Vec::new();
        for (i, m) in o.per.iter().enumerate().take(4) {
            for (tag, e) in &m.upsert {
                let v = e
                    .eval(&attrs)
                    .map_or_else(|| UNKNOWN.to_owned(), |v| v.label());
                out.push((i as u8, Arc::from(tag.as_str()), Arc::from(v.as_str())));
            }
        }
        out
    }

    fn security(&self, s: &StatsConfig) -> Security {
        match s.reporter {
            Reporter::Source => Security::Unknown,
            Reporter::Destination => Security::None,
        }
    }

    fn labels(&self, s: &StatsConfig, ex: &Exchange, key: Key) -> Labels {
        let me = Arc::clone(&self.node.workload);
        let peer = ex
            .peer
            .clone()
            .unwrap_or_else(|| Arc::new(Workload::default()));
        let (source, destination) = match s.reporter {
            Reporter::Source => (me, peer),
            Reporter::Destination => (peer, me),
        };
        let service = match ex
            .cluster
            .as_ref()
            .and_then(|c| c.telemetry.service.clone())
        {
            Some(svc) => svc,
            None if s.host_fallback => Arc::new(Service::from_host(&ex.authority)),
            None => Arc::new(Service::default()),
        };
        let unknown = Arc::clone(&self.shared.unknown_principal);
        Labels {
            reporter: s.reporter,
            source,
            source_principal: unknown.clone(),
            destination,
            destination_principal: unknown,
            service,
            protocol: if ex.grpc { "grpc" } else { "http" },
            code: key.code,
            grpc: key.grpc,
            flags: key.flags,
            security: key.security,
            overrides: s.overrides.clone(),
            extra: Vec::new(),
        }
    }

    /// The index of a captured request header.
    pub(crate) fn req_header_index(&self, name: &HeaderName) -> Option<usize> {
        self.req_headers.iter().position(|n| n == name)
    }

    /// The index of a captured response header.
    pub(crate) fn resp_header_index(&self, name: &HeaderName) -> Option<usize> {
        self.resp_headers.iter().position(|n| n == name)
    }
}

fn authority<B>(req: &Request<B>) -> String {
    match req.uri().authority() {
        Some(a) => a.as_str().to_owned(),
        None => req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_owned(),
    }
}

/// What one request did, gathered at its start and at its response, for metrics and logs.
#[derive(Debug)]
pub struct Exchange {
    /// When the request arrived.
    pub start: Instant,
    /// The same, as wall-clock time (`%START_TIME%`).
    pub start_time: SystemTime,
    /// `:method`.
    pub method: Method,
    /// `:path` (only kept when a log prints it).
    pub path: Option<String>,
    /// `:authority` or `Host`.
    pub authority: String,
    /// The downstream HTTP version.
    pub version: Version,
    /// A gRPC request (`content-type: application/grpc*`).
    pub grpc: bool,
    /// The downstream peer.
    pub downstream: SocketAddr,
    /// Request head and body size (body from `content-length`): Istio's `request.total_size`.
    pub request_bytes: u64,
    /// Request body size (`%BYTES_RECEIVED%`).
    pub request_body_bytes: u64,
    /// Captured request headers, in [`HttpTelemetry`]'s order.
    pub req_headers: Vec<Option<HeaderValue>>,
    /// Captured response headers.
    pub resp_headers: Vec<Option<HeaderValue>>,
    /// The peer workload (from its metadata headers).
    pub peer: Option<Arc<Workload>>,
    /// Response status.
    pub code: u16,
    /// Response flags.
    pub flags: ResponseFlags,
    /// `grpc-status` (headers or trailers).
    pub grpc_status: Option<u16>,
    /// The cluster the request went to.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// The endpoint of the last attempt.
    pub upstream_host: Option<SocketAddr>,
    /// `x-request-id`.
    pub request_id: Option<HeaderValue>,
    /// Response head and body bytes sent: Istio's `response.total_size`.
    pub response_bytes: u64,
    /// Response body bytes sent (`%BYTES_SENT%`).
    pub response_body_bytes: u64,
    /// When the last byte of the response went out.
    pub ended: Option<Instant>,
    /// The trace context, when tracing is configured.
    pub trace: Option<tracer::TraceCtx>,
}

/// A response body that records its request when it ends or is dropped.
#[derive(Debug)]
pub struct Observed {
    /// The body sent downstream.
    pub body: Body,
    ex: Option<Box<Exchange>>,
    telemetry: Arc<HttpTelemetry>,
}

impl Observed {
    /// Polls the body, counting bytes and noting the end and any gRPC status in trailers.
    pub fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let r = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        if let Some(ex) = self.ex.as_mut() {
            match &r {
                Poll::Ready(Some(Ok(f))) => {
                    if let Some(d) = f.data_ref() {
                        ex.response_bytes += d.len() as u64;
                        ex.response_body_bytes += d.len() as u64;
                    } else if let Some(t) = f.trailers_ref()
                        && let Some(g) = crate::config::policy::grpc_status(t)
                    {
                        ex.grpc_status = Some(g as u16);
                    }
                    if self.body.is_end_stream() {
                        ex.ended = Some(Instant::now());
                    }
                }
                Poll::Ready(None) => ex.ended = Some(Instant::now()),
                Poll::Ready(Some(Err(_))) => {
                    ex.ended = Some(Instant::now());
                    ex.flags.set(ResponseFlags::UPSTREAM_CONNECTION_TERMINATION);
                }
                Poll::Pending => {}
            }
        }
        r
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        if let Some(mut ex) = self.ex.take() {
            if ex.ended.is_none() && !self.body.is_end_stream() {
                ex.flags
                    .set(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION);
            }
            self.telemetry.record(&ex);
        }
    }
}

/// A TCP proxy's telemetry: its stats filter and access logs.
#[derive(Debug)]
pub struct TcpTelemetry {
    shared: Arc<Telemetry>,
    node: Arc<Node>,
    stats: StatsConfig,
}

impl TcpTelemetry {
    /// `None` without a stats filter.
    pub fn new(shared: &Arc<Telemetry>, stats: Option<StatsConfig>) -> Option<TcpTelemetry> {
        Some(TcpTelemetry {
            shared: Arc::clone(shared),
            node: shared.node(),
            stats: stats?,
        })
    }

    /// A connection to `cluster` opened: returns its series, with `opened` counted.
    pub fn opened(&self, cluster: &crate::cluster::Cluster) -> Arc<metrics::TcpSeries> {
        let me = Arc::clone(&self.node.workload);
        let peer = Arc::new(Workload::default());
        let (source, destination) = match self.stats.reporter {
            Reporter::Source => (me, peer),
            Reporter::Destination => (peer, me),
        };
        let unknown = Arc::clone(&self.shared.unknown_principal);
        let labels = Labels {
            reporter: self.stats.reporter,
            source,
            source_principal: unknown.clone(),
            destination,
            destination_principal: unknown,
            service: cluster.telemetry.service.clone().unwrap_or_default(),
            protocol: "tcp",
            code: 0,
            grpc: None,
            flags: ResponseFlags::default(),
            security: match self.stats.reporter {
                Reporter::Source => Security::Unknown,
                Reporter::Destination => Security::None,
            },
            overrides: self.stats.overrides.clone(),
            extra: Vec::new(),
        };
        let s = self.shared.metrics.tcp(labels);
        s.opened.fetch_add(1, Ordering::Relaxed);
        s
    }
}

/// Counts a TCP connection's bytes and its close into its series.
pub fn tcp_closed(s: &metrics::TcpSeries, sent: u64, received: u64) {
    s.sent.fetch_add(sent, Ordering::Relaxed);
    s.received.fetch_add(received, Ordering::Relaxed);
    s.closed.fetch_add(1, Ordering::Relaxed);
}

/// Log lines dropped because a writer fell behind (all sinks).
pub static DROPPED_LOG_LINES: AtomicU64 = AtomicU64::new(0);

/// Compiles a connection manager's or TCP proxy's `access_log` list.
pub fn compile_access_logs(
    logs: &[weft_xds::envoy::config::accesslog::v3::AccessLog],
    shared: &Telemetry,
    resource: &str,
    field: &str,
    warnings: &mut Vec<Unsupported>,
) -> Result<Vec<access_log::AccessLog>, CompileError> {
    let mut out = Vec::new();
    for (i, l) in logs.iter().enumerate() {
        let f = format!("{field}[{i}]");
        if let Some(log) = access_log::AccessLog::compile(l, shared, resource, &f, warnings)? {
            out.push(log);
        }
    }
    Ok(out)
}
