//! Tracing across a mesh hop: a client with its own trace context calls an outbound sidecar,
//! which calls an inbound sidecar, which calls the application. Each proxy makes one span
//! (CLIENT, then SERVER) in the caller's trace, propagates W3C and B3 headers, and exports to
//! a real collector: a Zipkin v2 HTTP receiver written here, and an OTLP gRPC receiver built on
//! the OpenTelemetry project's Python protos.

mod common;

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// A Zipkin v2 collector: stores every span posted to `/api/v2/spans`.
struct Zipkin {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<serde_json::Value>>>,
}

async fn zipkin() -> Zipkin {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let spans = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::clone(&spans);
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let store = Arc::clone(&store);
                    async move {
                        let ok = req.method() == "POST"
                            && req.uri().path() == "/api/v2/spans"
                            && req.headers()["content-type"] == "application/json";
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        store
                            .lock()
                            .unwrap()
                            .extend(v.as_array().cloned().unwrap_or_default());
                        let mut r = http::Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = if ok { 202 } else { 400 }.try_into().unwrap();
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    Zipkin { addr, spans }
}

fn zipkin_provider(cluster: &str) -> String {
    format!(
        r#"            provider:
              name: envoy.tracers.zipkin
              typed_config:
                "@type": type.googleapis.com/envoy.config.trace.v3.ZipkinConfig
                collector_cluster: {cluster}
                collector_endpoint: /api/v2/spans
                collector_endpoint_version: HTTP_JSON
"#
    )
}

fn otel_provider(cluster: &str) -> String {
    format!(
        r#"            provider:
              name: envoy.tracers.opentelemetry
              typed_config:
                "@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig
                grpc_service: {{envoy_grpc: {{cluster_name: {cluster}}}}}
"#
    )
}

fn sidecar(
    workload: &str,
    app: &str,
    direction: &str,
    sampling: f64,
    provider: &str,
    upstream: &str,
    collector: SocketAddr,
) -> String {
    let clusters = format!(
        "{}{}",
        cluster("upstream", &[upstream.parse().unwrap()], ""),
        cluster("collector", &[collector], "")
    );
    format!(
        r#"
node:
  id: sidecar~127.0.0.1~{workload}-1.default~default.svc.cluster.local
  metadata:
    NAMESPACE: default
    WORKLOAD_NAME: {workload}
    LABELS: {{app: {app}, version: v1}}
static_resources:
  listeners:
  - name: {direction}
    traffic_direction: {direction}
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {direction}
          tracing:
            random_sampling: {{value: {sampling}}}
            custom_tags:
            - tag: team
              literal: {{value: bookinfo}}
            - tag: region
              environment: {{name: WEFT_TEST_NO_SUCH_VARIABLE, default_value: nowhere}}
            - tag: user
              request_header: {{name: end-user, default_value: anonymous}}
{provider}          route_config:
            name: r
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: /}}
                route: {{cluster: upstream}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{clusters}
"#
    )
}

struct Hop {
    app: Scripted,
    _inbound: weft_proxy::ProxyHandle,
    _outbound: weft_proxy::ProxyHandle,
    entry: SocketAddr,
}

async fn hop(sampling: f64, provider: fn(&str) -> String, collector: SocketAddr) -> Hop {
    let app = Scripted::start(|_, _| ok()).await;
    let inbound = start(&sidecar(
        "reviews-v1",
        "reviews",
        "INBOUND",
        sampling,
        &provider("collector"),
        &app.addr.to_string(),
        collector,
    ));
    let in_addr = inbound.listener_addr("INBOUND").unwrap();
    let outbound = start(&sidecar(
        "productpage-v1",
        "productpage",
        "OUTBOUND",
        sampling,
        &provider("collector"),
        &in_addr.to_string(),
        collector,
    ));
    let entry = outbound.listener_addr("OUTBOUND").unwrap();
    Hop {
        app,
        _inbound: inbound,
        _outbound: outbound,
        entry,
    }
}

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// Waits up to 20 s for `n` spans: the exporter batches for 200 ms, and a collector that is a
/// separate (Python) process can be slow to answer on a loaded machine.
async fn wait_for(spans: &Mutex<Vec<serde_json::Value>>, n: usize) -> Vec<serde_json::Value> {
    for _ in 0..400 {
        let s = spans.lock().unwrap().clone();
        if s.len() >= n {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = spans.lock().unwrap().clone();
    panic!("{} spans, want {n}: {s:?}", s.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zipkin_gets_client_and_server_spans_linked_to_the_callers_trace() {
    let z = zipkin().await;
    let h = hop(100.0, zipkin_provider, z.addr).await;
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let got = send(
        h.entry,
        req(
            "GET",
            "reviews.default.svc.cluster.local:9080",
            "/reviews/0?u=1",
            &[
                ("traceparent", traceparent.as_str()),
                ("tracestate", "vendor=opaque"),
                ("end-user", "jason"),
                ("user-agent", "curl/8"),
            ],
        ),
    )
    .await;
    assert_eq!(got.status, 200);
    let spans = wait_for(&z.spans, 2).await;
    assert_eq!(spans.len(), 2, "{spans:?}");
    let client = spans
        .iter()
        .find(|s| s["kind"] == "CLIENT")
        .expect("CLIENT span");
    let server = spans
        .iter()
        .find(|s| s["kind"] == "SERVER")
        .expect("SERVER span");
    for s in [client, server] {
        assert_eq!(s["traceId"], CLIENT_TRACE, "{s}");
        assert_eq!(s["tags"]["team"], "bookinfo", "{s}");
        assert_eq!(s["tags"]["region"], "nowhere", "{s}");
        assert_eq!(s["tags"]["user"], "jason", "{s}");
        assert_eq!(s["tags"]["http.method"], "GET", "{s}");
        assert_eq!(s["tags"]["http.status_code"], "200", "{s}");
        assert_eq!(s["tags"]["component"], "proxy", "{s}");
        assert_eq!(s["tags"]["upstream_cluster"], "upstream", "{s}");
        assert_eq!(s["tags"]["user_agent"], "curl/8", "{s}");
        assert_eq!(
            s["tags"]["http.url"], "http://reviews.default.svc.cluster.local:9080/reviews/0?u=1",
            "{s}"
        );
        assert!(s["duration"].as_u64().unwrap() > 0, "{s}");
        assert!(
            s["timestamp"].as_u64().unwrap() > 1_600_000_000_000_000,
            "{s}"
        );
    }
    // The client span is a child of the caller's span, the server span of the client span.
    assert_eq!(client["parentId"], CLIENT_SPAN);
    assert_eq!(server["parentId"], client["id"]);
    assert_eq!(
        client["localEndpoint"]["serviceName"],
        "productpage.default"
    );
    assert_eq!(server["localEndpoint"]["serviceName"], "reviews.default");
    assert_eq!(client["tags"]["istio.canonical_service"], "productpage");

    // The application sees the server span as its parent, in both header families.
    let seen = h.app.seen.lock().unwrap()[0].clone();
    let server_id = server["id"].as_str().unwrap();
    assert_eq!(
        seen.header("traceparent"),
        Some(format!("00-{CLIENT_TRACE}-{server_id}-01").as_str())
    );
    assert_eq!(seen.header("tracestate"), Some("vendor=opaque"));
    assert_eq!(seen.header("x-b3-traceid"), Some(CLIENT_TRACE));
    assert_eq!(seen.header("x-b3-spanid"), Some(server_id));
    assert_eq!(seen.header("x-b3-parentspanid"), client["id"].as_str());
    assert_eq!(seen.header("x-b3-sampled"), Some("1"));
    assert!(seen.header("x-request-id").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b3_callers_and_sampling_decisions() {
    let z = zipkin().await;
    // No random sampling: only forced or caller-sampled requests are recorded.
    let h = hop(0.0, zipkin_provider, z.addr).await;
    // Not sampled: propagated with sampled=0, nothing exported.
    let got = get(h.entry, "reviews", "/quiet").await;
    assert_eq!(got.status, 200);
    let seen = h.app.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.header("x-b3-sampled"), Some("0"));
    // A Zipkin tracer writes B3; W3C only when the caller sent it.
    assert_eq!(seen.header("traceparent"), None);
    // x-client-trace-id forces sampling (client_sampling 100%).
    let got = send(
        h.entry,
        req("GET", "reviews", "/forced", &[("x-client-trace-id", "abc")]),
    )
    .await;
    assert_eq!(got.status, 200);
    // A B3 single-header caller that sampled: followed, and the single header is rewritten.
    let got = send(
        h.entry,
        req(
            "GET",
            "reviews",
            "/b3",
            &[("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")],
        ),
    )
    .await;
    assert_eq!(got.status, 200);
    let spans = wait_for(&z.spans, 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let spans_now = z.spans.lock().unwrap().clone();
    assert_eq!(
        spans_now.len(),
        4,
        "only the two sampled requests: {spans_now:?}"
    );
    let b3: Vec<_> = spans
        .iter()
        .filter(|s| s["traceId"] == "80f198ee56343ba864fe8b2a57d3eff7")
        .collect();
    assert_eq!(b3.len(), 2);
    let client = b3.iter().find(|s| s["kind"] == "CLIENT").unwrap();
    assert_eq!(client["parentId"], "e457b5a2e4d86bd1");
    let seen = h.app.seen.lock().unwrap().clone();
    let b3_seen = seen.iter().find(|s| s.path == "/b3").unwrap();
    let single = b3_seen.header("b3").unwrap();
    assert!(
        single.starts_with("80f198ee56343ba864fe8b2a57d3eff7-"),
        "{single}"
    );
    assert!(single.ends_with("-1"), "{single}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_never_holds_requests() {
    let h = hop(100.0, zipkin_provider, dead_port()).await;
    let started = Instant::now();
    for i in 0..200 {
        let got = get(h.entry, "reviews", &format!("/r/{i}")).await;
        assert_eq!(got.status, 200);
    }
    // The spans go nowhere; the requests do not wait for them (a generous bound: 200
    // requests over two proxies on loopback take well under this even in a debug build).
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(h.app.seen.lock().unwrap().len(), 200);
}

/// Runs the OTLP receiver from `tests/peers/otlp_receiver.py` with the venv's Python.
struct Otlp {
    child: std::process::Child,
    port: u16,
    lines: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Drop for Otlp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn otlp_receiver() -> Otlp {
    let python = std::env::var("WEFT_PYTHON").unwrap_or_else(|_| {
        let venv = std::env::var("WEFT_VENV").unwrap_or_else(|_| {
            format!(
                "{}/.cache/weft-venv",
                std::env::var("HOME").unwrap_or_default()
            )
        });
        format!("{venv}/bin/python3")
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/otlp_receiver.py");
    let mut child = std::process::Command::new(&python)
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {python} ({e}): scripts/test.sh creates the venv with grpcio and opentelemetry-proto")
        });
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let v: serde_json::Value = serde_json::from_str(&first).unwrap_or_else(|e| {
        panic!("receiver did not start ({e}): {first:?} (is opentelemetry-proto installed?)")
    });
    let port = v["port"].as_u64().unwrap() as u16;
    let lines = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in out.lines() {
            let Ok(line) = line else { return };
            if let Ok(v) = serde_json::from_str(&line) {
                store.lock().unwrap().push(v);
            }
        }
    });
    let _ = child.stdin.as_mut().map(|s| s.flush());
    Otlp { child, port, lines }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_receiver_gets_the_spans_with_their_links() {
    let r = otlp_receiver();
    let collector: SocketAddr = format!("127.0.0.1:{}", r.port).parse().unwrap();
    let h = hop(100.0, otel_provider, collector).await;
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let got = send(
        h.entry,
        req(
            "GET",
            "reviews",
            "/otlp",
            &[("traceparent", traceparent.as_str())],
        ),
    )
    .await;
    assert_eq!(got.status, 200);
    let spans = wait_for(&r.lines, 2).await;
    let client = spans
        .iter()
        .find(|s| s["kind"] == 3)
        .expect("SPAN_KIND_CLIENT");
    let server = spans
        .iter()
        .find(|s| s["kind"] == 2)
        .expect("SPAN_KIND_SERVER");
    for s in [client, server] {
        assert_eq!(s["trace_id"], CLIENT_TRACE, "{s}");
        assert_eq!(s["scope"], "weft-proxy", "{s}");
        assert_eq!(s["attributes"]["team"], "bookinfo", "{s}");
        assert_eq!(s["attributes"]["user"], "anonymous", "{s}");
    }
    assert_eq!(client["parent_span_id"], CLIENT_SPAN);
    assert_eq!(server["parent_span_id"], client["span_id"]);
    assert_eq!(client["service"], "productpage.default");
    assert_eq!(server["service"], "reviews.default");
    let seen = h.app.seen.lock().unwrap()[0].clone();
    let server_id = server["span_id"].as_str().unwrap();
    assert_eq!(
        seen.header("traceparent"),
        Some(format!("00-{CLIENT_TRACE}-{server_id}-01").as_str())
    );
}
