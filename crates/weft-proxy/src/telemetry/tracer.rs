//! Distributed tracing: W3C `traceparent`/`tracestate` and B3 (multi and single header)
//! propagation, sampling (`random_sampling`, `client_sampling` for `x-client-trace-id`,
//! `x-envoy-force-trace`, `overall_sampling`), one span per request and proxy (CLIENT on an
//! outbound listener, SERVER on an inbound one) with Istio's attributes and custom tags,
//! exported in batches to Zipkin (v2 JSON over HTTP) or OpenTelemetry (OTLP over gRPC).
//!
//! Spans leave the request path through a bounded queue (`try_send`): when the collector is
//! slow or down, spans are dropped and counted, requests never wait. Each collector has one
//! exporter thread with its own small runtime.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use prost::Message;
use weft_xds::envoy::config::trace::v3 as trace;
use weft_xds::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use weft_xds::envoy::r#type::tracing::v3::custom_tag;
use weft_xds::envoy_types::pb::opentelemetry::proto::common::v1 as otel_common;

use crate::cluster::Cluster;
use crate::config::{CompileError, Unsupported};

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
const B3: HeaderName = HeaderName::from_static("b3");
const B3_TRACE: HeaderName = HeaderName::from_static("x-b3-traceid");
const B3_SPAN: HeaderName = HeaderName::from_static("x-b3-spanid");
const B3_PARENT: HeaderName = HeaderName::from_static("x-b3-parentspanid");
const B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
const B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");
const CLIENT_TRACE_ID: HeaderName = HeaderName::from_static("x-client-trace-id");
const FORCE_TRACE: HeaderName = HeaderName::from_static("x-envoy-force-trace");

/// Spans queued per collector before new ones are dropped.
const QUEUE: usize = 8192;
/// Spans per export call at most.
const BATCH: usize = 512;
/// How long spans wait for a batch to fill.
const FLUSH: Duration = Duration::from_millis(200);
/// How long one export may take before it is abandoned.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Spans dropped because a collector's queue was full (all collectors).
pub static DROPPED_SPANS: AtomicU64 = AtomicU64::new(0);
/// Spans exported successfully (all collectors).
pub static EXPORTED_SPANS: AtomicU64 = AtomicU64::new(0);

/// The trace context a request carries and the span this proxy makes for it.
#[derive(Clone, Copy, Debug)]
pub struct TraceCtx {
    /// 128-bit trace id.
    pub trace_id: u128,
    /// This proxy's span.
    pub span_id: u64,
    /// The caller's span, when the request carried one.
    pub parent: Option<u64>,
    /// Whether the span is recorded.
    pub sampled: bool,
}

fn hex_u128(s: &str) -> Option<u128> {
    if s.is_empty() || s.len() > 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(s, 16).ok().filter(|v| *v != 0)
}

fn hex_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok().filter(|v| *v != 0)
}

/// The incoming context: (trace id, parent span id, sampled if decided).
fn incoming(h: &HeaderMap) -> Option<(u128, u64, Option<bool>)> {
    let text = |n: &HeaderName| h.get(n).and_then(|v| v.to_str().ok());
    if let Some(tp) = text(&TRACEPARENT) {
        let parts: Vec<&str> = tp.trim().split('-').collect();
        if parts.len() >= 4
            && parts[0].len() == 2
            && parts[0] != "ff"
            && parts[1].len() == 32
            && let (Some(t), Some(s), Ok(flags)) = (
                hex_u128(parts[1]),
                hex_u64(parts[2]),
                u8::from_str_radix(parts[3], 16),
            )
        {
            return Some((t, s, Some(flags & 1 == 1)));
        }
    }
    if let (Some(t), Some(s)) = (text(&B3_TRACE), text(&B3_SPAN))
        && let (Some(t), Some(s)) = (hex_u128(t), hex_u64(s))
    {
        let sampled = if text(&B3_FLAGS) == Some("1") {
            Some(true)
        } else {
            match text(&B3_SAMPLED) {
                Some("1") | Some("true") => Some(true),
                Some("0") | Some("false") => Some(false),
                _ => None,
            }
        };
        return Some((t, s, sampled));
    }
    if let Some(b3) = text(&B3) {
        let parts: Vec<&str> = b3.trim().split('-').collect();
        if parts.len() >= 2
            && let (Some(t), Some(s)) = (hex_u128(parts[0]), hex_u64(parts[1]))
        {
            let sampled = match parts.get(2) {
                Some(&"1") | Some(&"d") => Some(true),
                Some(&"0") => Some(false),
                _ => None,
            };
            return Some((t, s, sampled));
        }
    }
    None
}

fn sample(per_million: u32) -> bool {
    per_million >= 1_000_000 || (per_million > 0 && fastrand::u32(0..1_000_000) < per_million)
}

fn percent(p: Option<&weft_xds::envoy::r#type::v3::Percent>, default: f64) -> u32 {
    let v = p.map_or(default, |p| p.value).clamp(0.0, 100.0);
    (v * 10_000.0).round() as u32
}

/// Where a custom tag's value comes from.
#[derive(Clone, Debug)]
enum TagSource {
    Literal(String),
    Header(HeaderName, String),
}

/// Which header families a tracer writes to the upstream request (besides the family the
/// request arrived with): B3 for Zipkin, W3C for OpenTelemetry, as Envoy's tracers do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    W3c,
    B3,
}

/// Lower-case hex of `v` in `N` digits, without the formatting machinery.
fn hex<const N: usize>(v: u128) -> [u8; N] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'0'; N];
    for (i, slot) in out.iter_mut().enumerate() {
        let shift = 4 * (N - 1 - i);
        *slot = DIGITS[((v >> shift) & 0xF) as usize];
    }
    out
}

fn header_value(bytes: &[u8]) -> Option<HeaderValue> {
    HeaderValue::from_bytes(bytes).ok()
}

/// A connection manager's tracing settings (`HttpConnectionManager.tracing`).
#[derive(Debug)]
pub struct Tracing {
    family: Family,
    random: u32,
    client: u32,
    overall: u32,
    server: bool,
    tags: Vec<(String, TagSource)>,
    max_path: usize,
    tracer: Arc<Tracer>,
}

impl Tracing {
    /// Compiles the `tracing` block; `None` (with a finding) for a provider weft does not
    /// export to.
    pub fn compile(
        t: &hcm::http_connection_manager::Tracing,
        inbound: bool,
        tracers: &Tracers,
        resource: &str,
        field: &str,
        warnings: &mut Vec<Unsupported>,
    ) -> Result<Option<Tracing>, CompileError> {
        let Some(provider) = &t.provider else {
            warnings.push(Unsupported {
                resource: resource.to_owned(),
                what: format!("{field} without a provider (nothing to export to)"),
            });
            return Ok(None);
        };
        let Some(trace::tracing::http::ConfigType::TypedConfig(any)) = &provider.config_type else {
            return Ok(None);
        };
        let decode = |source| CompileError::Decode {
            resource: resource.to_owned(),
            field: format!("{field}.provider"),
            type_url: any.type_url.clone(),
            source,
        };
        let bad = |reason: String| CompileError::Invalid {
            resource: resource.to_owned(),
            field: format!("{field}.provider.typed_config"),
            reason,
        };
        let family = if crate::config::type_name(&any.type_url)
            == "envoy.config.trace.v3.OpenTelemetryConfig"
        {
            Family::W3c
        } else {
            Family::B3
        };
        let target = match crate::config::type_name(&any.type_url) {
            "envoy.config.trace.v3.ZipkinConfig" => {
                let z = trace::ZipkinConfig::decode(any.value.as_slice()).map_err(decode)?;
                if z.collector_cluster.is_empty() {
                    return Err(bad("collector_cluster is required".into()));
                }
                // 0: deprecated HTTP_JSON_V1, 1: HTTP_JSON, 2: HTTP_PROTO, 3: GRPC.
                if !matches!(z.collector_endpoint_version, 0 | 1) {
                    return Err(bad(
                        "only collector_endpoint_version HTTP_JSON (Zipkin v2 JSON) is supported by weft".into(),
                    ));
                }
                Collector::Zipkin {
                    cluster: z.collector_cluster,
                    path: if z.collector_endpoint.is_empty() {
                        "/api/v2/spans".into()
                    } else {
                        z.collector_endpoint
                    },
                    host: z.collector_hostname,
                }
            }
            "envoy.config.trace.v3.OpenTelemetryConfig" => {
                let o = trace::OpenTelemetryConfig::decode(any.value.as_slice()).map_err(decode)?;
                use weft_xds::envoy::config::core::v3::grpc_service::TargetSpecifier;
                let cluster = match o.grpc_service.and_then(|g| g.target_specifier) {
                    Some(TargetSpecifier::EnvoyGrpc(e)) if !e.cluster_name.is_empty() => {
                        e.cluster_name
                    }
                    _ => {
                        return Err(bad(
                            "grpc_service.envoy_grpc.cluster_name is required (OTLP over gRPC; http_service is not supported by weft)"
                                .into(),
                        ));
                    }
                };
                Collector::Otlp {
                    cluster,
                    service_name: o.service_name,
                }
            }
            other => {
                warnings.push(Unsupported {
                    resource: resource.to_owned(),
                    what: format!("{field}.provider tracer {other}"),
                });
                return Ok(None);
            }
        };
        let mut tags = Vec::new();
        for (i, c) in t.custom_tags.iter().enumerate() {
            let src = match &c.r#type {
                Some(custom_tag::Type::Literal(l)) => TagSource::Literal(l.value.clone()),
                Some(custom_tag::Type::Environment(e)) => TagSource::Literal(
                    std::env::var(&e.name).unwrap_or_else(|_| e.default_value.clone()),
                ),
                Some(custom_tag::Type::RequestHeader(h)) => TagSource::Header(
                    HeaderName::from_bytes(h.name.to_ascii_lowercase().as_bytes()).map_err(
                        |_| CompileError::Invalid {
                            resource: resource.to_owned(),
                            field: format!("{field}.custom_tags[{i}].request_header.name"),
                            reason: format!("{:?} is not a header name", h.name),
                        },
                    )?,
                    h.default_value.clone(),
                ),
                _ => {
                    warnings.push(Unsupported {
                        resource: resource.to_owned(),
                        what: format!("{field}.custom_tags[{i}] (metadata and value tags)"),
                    });
                    continue;
                }
            };
            tags.push((c.tag.clone(), src));
        }
        Ok(Some(Tracing {
            family,
            random: percent(t.random_sampling.as_ref(), 100.0),
            client: percent(t.client_sampling.as_ref(), 100.0),
            overall: percent(t.overall_sampling.as_ref(), 100.0),
            server: inbound,
            tags,
            max_path: t
                .max_path_tag_length
                .as_ref()
                .map_or(256, |v| v.value as usize),
            tracer: tracers.get(target),
        }))
    }

    /// Request headers the custom tags read.
    pub fn headers(&self, out: &mut Vec<HeaderName>) {
        for (_, s) in &self.tags {
            if let TagSource::Header(n, _) = s
                && !out.contains(n)
            {
                out.push(n.clone());
            }
        }
        if !out.contains(&http::header::USER_AGENT) {
            out.push(http::header::USER_AGENT);
        }
    }

    /// Decides sampling, makes this proxy's span, and rewrites the propagation headers for the
    /// upstream (W3C and B3).
    pub fn start(&self, h: &mut HeaderMap) -> TraceCtx {
        let inc = incoming(h);
        let sampled = match inc.and_then(|i| i.2) {
            Some(s) => s,
            None if h.contains_key(FORCE_TRACE) => true,
            None if h.contains_key(CLIENT_TRACE_ID) => sample(self.client),
            None => sample(self.random),
        } && sample(self.overall);
        let ctx = TraceCtx {
            trace_id: inc.map_or_else(|| fastrand::u128(1..), |i| i.0),
            span_id: fastrand::u64(1..),
            parent: inc.map(|i| i.1),
            sampled,
        };
        let came_w3c = h.contains_key(TRACEPARENT);
        let came_b3 = h.contains_key(B3_TRACE) || h.contains_key(B3);
        let trace_hex = hex::<32>(ctx.trace_id);
        let span_hex = hex::<16>(u128::from(ctx.span_id));
        if self.family == Family::W3c || came_w3c {
            let mut tp = [0u8; 55];
            tp[..3].copy_from_slice(b"00-");
            tp[3..35].copy_from_slice(&trace_hex);
            tp[35] = b'-';
            tp[36..52].copy_from_slice(&span_hex);
            tp[52..].copy_from_slice(if sampled { b"-01" } else { b"-00" });
            if let Some(v) = header_value(&tp) {
                h.insert(TRACEPARENT, v);
            }
        }
        if self.family == Family::B3 || came_b3 {
            if let Some(v) = header_value(&trace_hex) {
                h.insert(B3_TRACE, v);
            }
            if let Some(v) = header_value(&span_hex) {
                h.insert(B3_SPAN, v);
            }
            match ctx
                .parent
                .and_then(|p| header_value(&hex::<16>(u128::from(p))))
            {
                Some(v) => {
                    h.insert(B3_PARENT, v);
                }
                None => {
                    h.remove(B3_PARENT);
                }
            }
            h.insert(
                B3_SAMPLED,
                HeaderValue::from_static(if sampled { "1" } else { "0" }),
            );
            h.remove(B3_FLAGS);
            if h.contains_key(B3) {
                let mut single = Vec::with_capacity(51);
                single.extend_from_slice(&trace_hex);
                single.push(b'-');
                single.extend_from_slice(&span_hex);
                single.extend_from_slice(if sampled { b"-1" } else { b"-0" });
                if let Some(v) = header_value(&single) {
                    h.insert(B3, v);
                }
            }
        }
        // `tracestate` travels on unchanged.
        let _ = &TRACESTATE;
        ctx
    }

    /// Queues the finished span.
    pub(crate) fn finish(
        &self,
        ctx: &TraceCtx,
        span: SpanParts,
        header: &dyn Fn(&HeaderName) -> Option<String>,
    ) {
        if !ctx.sampled {
            return;
        }
        let mut tags = span.tags;
        for (k, src) in &self.tags {
            let v = match src {
                TagSource::Literal(v) => v.clone(),
                TagSource::Header(n, default) => header(n).unwrap_or_else(|| default.clone()),
            };
            tags.push((k.clone(), v));
        }
        for (k, v) in &mut tags {
            if k == "http.url" && v.len() > self.max_path {
                let mut cut = self.max_path;
                while !v.is_char_boundary(cut) {
                    cut -= 1;
                }
                v.truncate(cut);
            }
        }
        self.tracer.send(Span {
            trace_id: ctx.trace_id,
            span_id: ctx.span_id,
            parent: ctx.parent,
            name: span.name,
            server: self.server,
            start: span.start,
            duration: span.duration,
            service: span.service,
            local_ip: span.local_ip,
            error: span.error,
            tags,
        });
    }
}

/// What the request path gives a span.
pub(crate) struct SpanParts {
    pub name: String,
    pub start: SystemTime,
    pub duration: Duration,
    pub service: String,
    pub local_ip: Option<std::net::IpAddr>,
    pub error: bool,
    pub tags: Vec<(String, String)>,
}

/// A finished span.
#[derive(Debug, Clone)]
pub struct Span {
    trace_id: u128,
    span_id: u64,
    parent: Option<u64>,
    name: String,
    server: bool,
    start: SystemTime,
    duration: Duration,
    service: String,
    local_ip: Option<std::net::IpAddr>,
    error: bool,
    tags: Vec<(String, String)>,
}

/// Where spans go.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Collector {
    Zipkin {
        cluster: String,
        path: String,
        host: String,
    },
    Otlp {
        cluster: String,
        service_name: String,
    },
}

/// One collector's queue.
#[derive(Debug)]
pub struct Tracer {
    tx: tokio::sync::mpsc::Sender<Span>,
}

impl Tracer {
    fn send(&self, s: Span) {
        if self.tx.try_send(s).is_err() {
            DROPPED_SPANS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The tracers of a proxy by collector, and the clusters they send to (current snapshot).
#[derive(Debug, Default)]
pub struct Tracers {
    by_collector: Mutex<HashMap<Collector, Arc<Tracer>>>,
    /// The clusters of the current configuration, for finding collector endpoints.
    pub clusters: Arc<ArcSwap<HashMap<String, Arc<Cluster>>>>,
}

impl Tracers {
    fn get(&self, c: Collector) -> Arc<Tracer> {
        let mut m = self.by_collector.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = m.get(&c) {
            return Arc::clone(t);
        }
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
        let clusters = Arc::clone(&self.clusters);
        let collector = c.clone();
        let started = std::thread::Builder::new()
            .name("weft-tracer".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(export_loop(rx, collector, clusters)),
                    Err(e) => tracing::error!("tracer runtime: {e}"),
                }
            });
        if let Err(e) = started {
            tracing::error!("tracer thread: {e}");
        }
        let t = Arc::new(Tracer { tx });
        m.insert(c, Arc::clone(&t));
        t
    }
}

async fn export_loop(
    mut rx: tokio::sync::mpsc::Receiver<Span>,
    c: Collector,
    clusters: Arc<ArcSwap<HashMap<String, Arc<Cluster>>>>,
) {
    let mut otlp: Option<(SocketAddr, tonic::client::Grpc<tonic::transport::Channel>)> = None;
    loop {
        let Some(first) = rx.recv().await else { return };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + FLUSH;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(s)) => batch.push(s),
                Ok(None) | Err(_) => break,
            }
        }
        let cluster_name = match &c {
            Collector::Zipkin { cluster, .. } | Collector::Otlp { cluster, .. } => cluster,
        };
        let Some(addr) = clusters
            .load()
            .get(cluster_name)
            .and_then(|cl| cl.pick().map(|l| l.endpoint.addr))
        else {
            tracing::debug!(
                "tracing: collector cluster {cluster_name:?} has no endpoint; {} spans dropped",
                batch.len()
            );
            DROPPED_SPANS.fetch_add(batch.len() as u64, Ordering::Relaxed);
            continue;
        };
        let n = batch.len() as u64;
        let result = match &c {
            Collector::Zipkin { path, host, .. } => {
                tokio::time::timeout(EXPORT_TIMEOUT, zipkin_post(addr, host, path, &batch))
                    .await
                    .unwrap_or_else(|_| Err("timed out".into()))
            }
            Collector::Otlp { service_name, .. } => tokio::time::timeout(
                EXPORT_TIMEOUT,
                otlp_export(&mut otlp, addr, service_name, &batch),
            )
            .await
            .unwrap_or_else(|_| Err("timed out".into())),
        };
        match result {
            Ok(()) => {
                EXPORTED_SPANS.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::debug!("tracing: export of {n} spans to {addr} failed: {e}");
                DROPPED_SPANS.fetch_add(n, Ordering::Relaxed);
                otlp = None;
            }
        }
    }
}

fn micros(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// Zipkin v2 JSON for a batch.
pub fn zipkin_json(batch: &[Span]) -> serde_json::Value {
    let spans: Vec<serde_json::Value> = batch
        .iter()
        .map(|s| {
            let mut tags = serde_json::Map::new();
            for (k, v) in &s.tags {
                tags.insert(k.clone(), serde_json::Value::String(v.clone()));
            }
            if s.error {
                tags.insert("error".into(), "true".into());
            }
            let mut local = serde_json::Map::new();
            local.insert("serviceName".into(), s.service.clone().into());
            match s.local_ip {
                Some(std::net::IpAddr::V4(ip)) => {
                    local.insert("ipv4".into(), ip.to_string().into());
                }
                Some(std::net::IpAddr::V6(ip)) => {
                    local.insert("ipv6".into(), ip.to_string().into());
                }
                None => {}
            }
            let mut span = serde_json::json!({
                "traceId": format!("{:032x}", s.trace_id),
                "id": format!("{:016x}", s.span_id),
                "name": s.name,
                "kind": if s.server { "SERVER" } else { "CLIENT" },
                "timestamp": micros(s.start),
                "duration": s.duration.as_micros().max(1) as u64,
                "localEndpoint": local,
                "tags": tags,
            });
            if let Some(p) = s.parent {
                span["parentId"] = format!("{p:016x}").into();
            }
            span
        })
        .collect();
    serde_json::Value::Array(spans)
}

async fn zipkin_post(
    addr: SocketAddr,
    host: &str,
    path: &str,
    batch: &[Span],
) -> Result<(), String> {
    use http_body_util::{BodyExt, Full};
    let body = serde_json::to_vec(&zipkin_json(batch)).map_err(|e| e.to_string())?;
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let host = if host.is_empty() {
        addr.to_string()
    } else {
        host.to_owned()
    };
    let req = http::Request::post(path)
        .header(http::header::HOST, host)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("collector answered {status}"))
    }
}

// OTLP trace messages (opentelemetry/proto/trace/v1, collector/trace/v1); the common types come
// from envoy-types.

#[derive(Clone, PartialEq, prost::Message)]
struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<ResourceSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ExportTraceServiceResponse {}

#[derive(Clone, PartialEq, prost::Message)]
struct ResourceSpans {
    #[prost(message, optional, tag = "1")]
    resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<ScopeSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Resource {
    #[prost(message, repeated, tag = "1")]
    attributes: Vec<otel_common::KeyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ScopeSpans {
    #[prost(message, optional, tag = "1")]
    scope: Option<otel_common::InstrumentationScope>,
    #[prost(message, repeated, tag = "2")]
    spans: Vec<OtlpSpan>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct OtlpSpan {
    #[prost(bytes = "vec", tag = "1")]
    trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    span_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    parent_span_id: Vec<u8>,
    #[prost(string, tag = "5")]
    name: String,
    /// 2: SERVER, 3: CLIENT.
    #[prost(int32, tag = "6")]
    kind: i32,
    #[prost(fixed64, tag = "7")]
    start_time_unix_nano: u64,
    #[prost(fixed64, tag = "8")]
    end_time_unix_nano: u64,
    #[prost(message, repeated, tag = "9")]
    attributes: Vec<otel_common::KeyValue>,
    #[prost(message, optional, tag = "15")]
    status: Option<Status>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Status {
    #[prost(string, tag = "2")]
    message: String,
    /// 0: UNSET, 1: OK, 2: ERROR.
    #[prost(int32, tag = "3")]
    code: i32,
}

fn kv(k: &str, v: &str) -> otel_common::KeyValue {
    otel_common::KeyValue {
        key: k.to_owned(),
        value: Some(otel_common::AnyValue {
            value: Some(otel_common::any_value::Value::StringValue(v.to_owned())),
        }),
        ..Default::default()
    }
}

fn otlp_request(service_name: &str, batch: &[Span]) -> ExportTraceServiceRequest {
    let mut by_service: Vec<(String, Vec<OtlpSpan>)> = Vec::new();
    for s in batch {
        let nanos = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64
        };
        let span = OtlpSpan {
            trace_id: s.trace_id.to_be_bytes().to_vec(),
            span_id: s.span_id.to_be_bytes().to_vec(),
            parent_span_id: s
                .parent
                .map(|p| p.to_be_bytes().to_vec())
                .unwrap_or_default(),
            name: s.name.clone(),
            kind: if s.server { 2 } else { 3 },
            start_time_unix_nano: nanos(s.start),
            end_time_unix_nano: nanos(s.start + s.duration),
            attributes: s.tags.iter().map(|(k, v)| kv(k, v)).collect(),
            status: s.error.then(|| Status {
                message: String::new(),
                code: 2,
            }),
        };
        let service = if service_name.is_empty() {
            s.service.clone()
        } else {
            service_name.to_owned()
        };
        match by_service.iter_mut().find(|(n, _)| *n == service) {
            Some((_, v)) => v.push(span),
            None => by_service.push((service, vec![span])),
        }
    }
    ExportTraceServiceRequest {
        resource_spans: by_service
            .into_iter()
            .map(|(service, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", &service)],
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(otel_common::InstrumentationScope {
                        name: "weft-proxy".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans,
                }],
            })
            .collect(),
    }
}

async fn otlp_export(
    client: &mut Option<(SocketAddr, tonic::client::Grpc<tonic::transport::Channel>)>,
    addr: SocketAddr,
    service_name: &str,
    batch: &[Span],
) -> Result<(), String> {
    if client.as_ref().is_none_or(|(a, _)| *a != addr) {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        *client = Some((addr, tonic::client::Grpc::new(channel)));
    }
    let Some((_, grpc)) = client.as_mut() else {
        return Err("no client".into());
    };
    grpc.ready().await.map_err(|e| e.to_string())?;
    let path = http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    );
    let codec: tonic_prost::ProstCodec<ExportTraceServiceRequest, ExportTraceServiceResponse> =
        tonic_prost::ProstCodec::default();
    grpc.unary(
        tonic::Request::new(otlp_request(service_name, batch)),
        path,
        codec,
    )
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_w3c_then_b3_multi_then_b3_single() {
        let mut h = HeaderMap::new();
        h.insert(
            TRACEPARENT,
            HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        );
        let (t, s, sampled) = incoming(&h).unwrap();
        assert_eq!(t, 0x0af7651916cd43dd8448eb211c80319c);
        assert_eq!(s, 0xb7ad6b7169203331);
        assert_eq!(sampled, Some(true));
        let mut h = HeaderMap::new();
        h.insert(B3_TRACE, HeaderValue::from_static("463ac35c9f6413ad"));
        h.insert(B3_SPAN, HeaderValue::from_static("a2fb4a1d1a96d312"));
        h.insert(B3_SAMPLED, HeaderValue::from_static("0"));
        assert_eq!(
            incoming(&h),
            Some((0x463ac35c9f6413ad, 0xa2fb4a1d1a96d312, Some(false)))
        );
        let mut h = HeaderMap::new();
        h.insert(
            B3,
            HeaderValue::from_static(
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
            ),
        );
        assert_eq!(
            incoming(&h),
            Some((
                0x80f198ee56343ba864fe8b2a57d3eff7,
                0xe457b5a2e4d86bd1,
                Some(true)
            ))
        );
        // Malformed: ignored.
        let mut h = HeaderMap::new();
        h.insert(
            TRACEPARENT,
            HeaderValue::from_static("00-xyz-b7ad6b7169203331-01"),
        );
        assert_eq!(incoming(&h), None);
    }
}
