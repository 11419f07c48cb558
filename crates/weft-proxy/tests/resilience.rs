//! Retries, outlier detection and circuit breakers, against scripted backends that fail on
//! purpose and report what they saw.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;

/// A virtual host for every domain with `extra` (already indented) and flow-style routes.
pub fn vhost(extra: &str, routes: &[&str]) -> String {
    let mut s = String::from("            - name: vh\n              domains: ['*']\n");
    s.push_str(extra);
    s.push_str("              routes:\n");
    for r in routes {
        s.push_str(&format!("              - {r}\n"));
    }
    s
}

fn post(body: &'static str) -> Request<Full<Bytes>> {
    Request::post("/p")
        .header("host", "x")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_backend_is_retried_until_it_succeeds_with_the_body_replayed() {
    // Fails twice with 503, then answers.
    let b = Scripted::start(|n, _| if n < 2 { status(503) } else { ok() }).await;
    let vh = vhost(
        "              include_request_attempt_count: true\n              include_attempt_count_in_response: true\n",
        &[
            "{match: {prefix: /}, route: {cluster: a, retry_policy: {retry_on: 5xx, num_retries: 3, retry_back_off: {base_interval: 0.01s}}}}",
        ],
    );
    let proxy = start(&http_bootstrap("", &vh, &cluster("a", &[b.addr], "")));
    let addr = proxy.listener_addr("http").unwrap();
    let g = send(addr, post("hello")).await;
    assert_eq!(g.status, 200, "{}", g.text());
    assert_eq!(g.text(), "ok");
    assert_eq!(g.header("x-envoy-attempt-count"), Some("3"));
    let seen = b.seen();
    assert_eq!(seen.len(), 3);
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s.body, Bytes::from_static(b"hello"), "attempt {i} body");
        assert_eq!(
            s.header("x-envoy-attempt-count"),
            Some(&*(i + 1).to_string())
        );
    }
    assert_eq!(stat(&proxy, "cluster.a.upstream_rq_retry").await, 2);
    assert_eq!(stat(&proxy, "cluster.a.upstream_rq_retry_success").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_return_the_last_response() {
    let b = Scripted::start(|n, _| Reply::Status(503, vec![("x-n", n.to_string())], Bytes::new()))
        .await;
    let vh = vhost(
        "",
        &[
            "{match: {prefix: /}, route: {cluster: a, retry_policy: {retry_on: gateway-error, num_retries: 2, retry_back_off: {base_interval: 0.001s}}}}",
        ],
    );
    let proxy = start(&http_bootstrap("", &vh, &cluster("a", &[b.addr], "")));
    let g = get(proxy.listener_addr("http").unwrap(), "x", "/").await;
    assert_eq!(g.status, 503);
    assert_eq!(g.header("x-n"), Some("2"), "the third answer comes back");
    assert_eq!(b.count(), 3);
    assert_eq!(
        stat(&proxy, "cluster.a.upstream_rq_retry_limit_exceeded").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_on_conditions_are_honoured_one_by_one() {
    // Each path fails once in its own way, then succeeds; the route decides whether that
    // failure is retried.
    let counts: Arc<[AtomicUsize; 8]> = Arc::new(Default::default());
    let c = Arc::clone(&counts);
    let b = Scripted::start(move |_, s| {
        let (i, fail) = match s.path.as_str() {
            "/409" => (0, status(409)),
            "/418" => (1, status(418)),
            "/hdr" => (
                2,
                Reply::Status(200, vec![("x-upstream-retry", "yes".into())], Bytes::new()),
            ),
            "/500-gw" => (3, status(500)),
            "/reset" => (4, Reply::Reset),
            "/grpc" => (
                5,
                Reply::Status(
                    200,
                    vec![
                        ("content-type", "application/grpc".into()),
                        ("grpc-status", "14".into()),
                    ],
                    Bytes::new(),
                ),
            ),
            "/grpc-internal" => (
                6,
                Reply::Status(
                    200,
                    vec![
                        ("content-type", "application/grpc".into()),
                        ("grpc-status", "13".into()),
                    ],
                    Bytes::new(),
                ),
            ),
            _ => (7, status(500)),
        };
        // Path 7 fails twice: once for an unmarked request, once for a marked one.
        if c[i].fetch_add(1, Ordering::SeqCst) < if i == 7 { 2 } else { 1 } {
            fail
        } else {
            ok()
        }
    })
    .await;
    let r = |path: &str, retry: &str| {
        format!(
            "{{match: {{path: {path}}}, route: {{cluster: a, retry_policy: {{num_retries: 1, retry_back_off: {{base_interval: 0.001s}}, {retry}}}}}}}"
        )
    };
    let routes = [
        r("/409", "retry_on: retriable-4xx"),
        r(
            "/418",
            "retry_on: retriable-status-codes, retriable_status_codes: [418]",
        ),
        r(
            "/hdr",
            "retry_on: retriable-headers, retriable_headers: [{name: x-upstream-retry, string_match: {exact: 'yes'}}]",
        ),
        r("/500-gw", "retry_on: gateway-error"),
        r("/reset", "retry_on: reset"),
        r("/grpc", "retry_on: unavailable"),
        r(
            "/grpc-internal",
            "retry_on: 'cancelled,deadline-exceeded,resource-exhausted,unavailable'",
        ),
        r(
            "/only-marked",
            "retry_on: 5xx, retriable_request_headers: [{name: x-retry-me, present_match: true}]",
        ),
    ];
    let routes: Vec<&str> = routes.iter().map(String::as_str).collect();
    let proxy = start(&http_bootstrap(
        "",
        &vhost("", &routes),
        &cluster("a", &[b.addr], ""),
    ));
    let addr = proxy.listener_addr("http").unwrap();
    assert_eq!(
        get(addr, "x", "/409").await.status,
        200,
        "retriable-4xx retries 409"
    );
    assert_eq!(
        get(addr, "x", "/418").await.status,
        200,
        "retriable-status-codes"
    );
    let g = get(addr, "x", "/hdr").await;
    assert_eq!(
        (g.status, g.text().as_str()),
        (http::StatusCode::OK, "ok"),
        "retriable-headers"
    );
    assert_eq!(
        get(addr, "x", "/500-gw").await.status,
        500,
        "gateway-error does not cover 500"
    );
    assert_eq!(get(addr, "x", "/reset").await.status, 200, "reset");
    assert_eq!(
        get(addr, "x", "/grpc").await.text(),
        "ok",
        "grpc unavailable"
    );
    let g = get(addr, "x", "/grpc-internal").await;
    assert_eq!(
        g.header("grpc-status"),
        Some("13"),
        "internal is not in retry_on"
    );
    // retriable_request_headers: an unmarked request is not retried, a marked one is.
    assert_eq!(get(addr, "x", "/only-marked").await.status, 500);
    let g = send(
        addr,
        req("GET", "x", "/only-marked", &[("x-retry-me", "1")]),
    )
    .await;
    assert_eq!(g.status, 200);
    let n: Vec<usize> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    assert_eq!(n, [2, 2, 2, 1, 2, 2, 1, 3], "attempts per condition");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_status_in_trailers_is_retried_over_h2() {
    let b = Scripted::start(|n, _| {
        if n == 0 {
            Reply::GrpcTrailers(14)
        } else {
            Reply::GrpcTrailers(0)
        }
    })
    .await;
    let vh = vhost(
        "",
        &[
            "{match: {prefix: /}, route: {cluster: a, retry_policy: {retry_on: unavailable, num_retries: 2, retry_back_off: {base_interval: 0.001s}}}}",
        ],
    );
    let proxy = start(&http_bootstrap(
        "",
        &vh,
        &cluster("a", &[b.addr], "    http2_protocol_options: {}\n"),
    ));
    let mut c = H2::connect(proxy.listener_addr("http").unwrap()).await;
    let g = c.get("x", "/svc/Method").await;
    assert_eq!(g.status, 200);
    assert_eq!(b.count(), 2, "the trailers said UNAVAILABLE once");
    assert_eq!(stat(&proxy, "cluster.a.upstream_rq_retry").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_goes_to_another_host_with_previous_hosts() {
    let b = Scripted::start(|_, _| ok()).await;
    let dead = dead_port();
    let vh = vhost(
        "",
        &[
            "{match: {prefix: /}, route: {cluster: a, retry_policy: {retry_on: connect-failure, num_retries: 1, retry_back_off: {base_interval: 0.001s}, retry_host_predicate: [{name: envoy.retry_host_predicates.previous_hosts, typed_config: {'@type': type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate}}], host_selection_retry_max_attempts: 5}}}",
        ],
    );
    let proxy = start(&http_bootstrap("", &vh, &cluster("a", &[dead, b.addr], "")));
    let addr = proxy.listener_addr("http").unwrap();
    for _ in 0..10 {
        assert_eq!(get(addr, "x", "/").await.status, 200);
    }
    assert_eq!(b.count(), 10);
    assert!(stat(&proxy, "cluster.a.upstream_cx_connect_fail").await >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_try_timeout_retries_a_slow_attempt() {
    let b = Scripted::start(|n, _| {
        if n == 0 {
            Reply::After(Duration::from_secs(3), Box::new(ok()))
        } else {
            ok()
        }
    })
    .await;
    let vh = vhost(
        "",
        &[
            "{match: {prefix: /}, route: {cluster: a, timeout: 5s, retry_policy: {retry_on: 5xx, num_retries: 1, per_try_timeout: 0.2s, retry_back_off: {base_interval: 0.001s}}}}",
        ],
    );
    let proxy = start(&http_bootstrap("", &vh, &cluster("a", &[b.addr], "")));
    let t = Instant::now();
    let g = get(proxy.listener_addr("http").unwrap(), "x", "/").await;
    assert_eq!(g.status, 200);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(
        stat(&proxy, "cluster.a.upstream_rq_per_try_timeout").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_host_retry_policy_and_the_max_retries_breaker() {
    let b = Scripted::start(|_, s| {
        if s.path.ends_with("/always") {
            status(503)
        } else {
            ok()
        }
    })
    .await;
    let fail_then_ok = Scripted::start(|n, _| if n % 2 == 0 { status(503) } else { ok() }).await;
    let vh = vhost(
        "              retry_policy: {retry_on: 5xx, num_retries: 1, retry_back_off: {base_interval: 0.001s}}\n",
        &[
            "{match: {prefix: /nobudget}, route: {cluster: nobudget}}",
            "{match: {prefix: /}, route: {cluster: a}}",
        ],
    );
    let clusters = cluster("a", &[fail_then_ok.addr], "")
        + &cluster(
            "nobudget",
            &[b.addr],
            "    circuit_breakers: {thresholds: [{max_retries: 0}]}\n",
        );
    let proxy = start(&http_bootstrap("", &vh, &clusters));
    let addr = proxy.listener_addr("http").unwrap();
    assert_eq!(
        get(addr, "x", "/").await.status,
        200,
        "virtual host policy retried"
    );
    assert_eq!(fail_then_ok.count(), 2);
    assert_eq!(get(addr, "x", "/nobudget/always").await.status, 503);
    assert_eq!(b.count(), 1, "max_retries 0: no retry");
    assert_eq!(
        stat(&proxy, "cluster.nobudget.upstream_rq_retry_overflow").await,
        1
    );
}

fn outlier_cluster(name: &str, addrs: &[std::net::SocketAddr], od: &str) -> String {
    cluster(name, addrs, &format!("    outlier_detection: {od}\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_is_ejected_then_returns() {
    let good1 = Scripted::start(|_, _| ok()).await;
    let good2 = Scripted::start(|_, _| ok()).await;
    let bad = Scripted::start(|_, _| status(500)).await;
    let addrs = [good1.addr, bad.addr, good2.addr];
    let vh = vhost("", &["{match: {prefix: /}, route: {cluster: a}}"]);
    let clusters = outlier_cluster(
        "a",
        &addrs,
        "{consecutive_5xx: 3, interval: 1s, base_ejection_time: 1s, max_ejection_percent: 50}",
    );
    let proxy = start(&http_bootstrap("", &vh, &clusters));
    let addr = proxy.listener_addr("http").unwrap();
    let mut c = H1::connect(addr).await;
    // Round robin: the bad host gets every third request until its third 500.
    let mut fails = 0;
    for _ in 0..9 {
        if c.get("x", "/").await.status == 500 {
            fails += 1;
        }
    }
    assert_eq!(fails, 3);
    assert_eq!(bad.count(), 3);
    let clusters_text = admin_get(&proxy, "/clusters").await.text();
    assert!(
        clusters_text.contains(&format!(
            "a::{}::health_flags::/failed_outlier_check",
            bad.addr
        )),
        "{clusters_text}"
    );
    for _ in 0..20 {
        assert_eq!(
            c.get("x", "/").await.status,
            200,
            "ejected host gets nothing"
        );
    }
    assert_eq!(bad.count(), 3);
    assert_eq!(good1.count() + good2.count(), 26);
    assert_eq!(
        stat(
            &proxy,
            "cluster.a.outlier_detection.ejections_enforced_consecutive_5xx"
        )
        .await,
        1
    );
    assert_eq!(
        stat(&proxy, "cluster.a.outlier_detection.ejections_active").await,
        1
    );
    // Back after base_ejection_time × 1.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let clusters_text = admin_get(&proxy, "/clusters").await.text();
    assert!(
        clusters_text.contains(&format!("a::{}::health_flags::healthy", bad.addr)),
        "{clusters_text}"
    );
    for _ in 0..6 {
        c.get("x", "/").await;
    }
    assert!(bad.count() > 3, "returned host gets traffic again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_origin_failures_eject_when_split_and_gateway_failures_are_enforced() {
    let good = Scripted::start(|_, _| ok()).await;
    let dead = dead_port();
    let vh = vhost("", &["{match: {prefix: /}, route: {cluster: a}}"]);
    let clusters = outlier_cluster(
        "a",
        &[good.addr, dead],
        "{split_external_local_origin_errors: true, consecutive_local_origin_failure: 2, consecutive_5xx: 100, base_ejection_time: 30s, max_ejection_percent: 50}",
    );
    let proxy = start(&http_bootstrap("", &vh, &clusters));
    let addr = proxy.listener_addr("http").unwrap();
    let mut failed = 0;
    for _ in 0..20 {
        if get(addr, "x", "/").await.status == 503 {
            failed += 1;
        }
    }
    assert_eq!(
        failed, 2,
        "two connect failures, then the dead host is ejected"
    );
    assert_eq!(
        stat(
            &proxy,
            "cluster.a.outlier_detection.ejections_enforced_consecutive_local_origin_failure"
        )
        .await,
        1
    );

    // Gateway failures eject only with enforcing_consecutive_gateway_failure.
    let gw = Scripted::start(|_, _| status(502)).await;
    let good2 = Scripted::start(|_, _| ok()).await;
    let clusters = outlier_cluster(
        "a",
        &[good2.addr, gw.addr],
        "{consecutive_gateway_failure: 2, enforcing_consecutive_gateway_failure: 100, consecutive_5xx: 100, max_ejection_percent: 50}",
    );
    let proxy = start(&http_bootstrap("", &vh, &clusters));
    let addr = proxy.listener_addr("http").unwrap();
    for _ in 0..20 {
        get(addr, "x", "/").await;
    }
    assert_eq!(gw.count(), 2);
    assert_eq!(
        stat(
            &proxy,
            "cluster.a.outlier_detection.ejections_enforced_consecutive_gateway_failure"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_breakers_overflow_with_uo_and_x_envoy_overloaded() {
    let slow =
        Scripted::start(|_, _| Reply::After(Duration::from_millis(600), Box::new(ok()))).await;
    let vh = vhost(
        "",
        &[
            "{match: {prefix: /high}, route: {cluster: cx, priority: HIGH}}",
            "{match: {prefix: /cx}, route: {cluster: cx}}",
            "{match: {prefix: /rq}, route: {cluster: rq}}",
        ],
    );
    let clusters = cluster(
        "cx",
        &[slow.addr],
        "    circuit_breakers: {thresholds: [{max_connections: 1, max_pending_requests: 1}, {priority: HIGH, max_connections: 5}]}\n",
    ) + &cluster(
        "rq",
        &[slow.addr],
        "    circuit_breakers: {thresholds: [{max_requests: 1}]}\n",
    );
    let proxy = start(&http_bootstrap("", &vh, &clusters));
    let addr = proxy.listener_addr("http").unwrap();

    // max_connections 1 + max_pending_requests 1: one in flight, one waiting, the third is
    // refused at once.
    let mut tasks = Vec::new();
    for i in 0..3 {
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(i * 100)).await;
            get(addr, "x", "/cx").await
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let codes: Vec<u16> = statuses.iter().map(|g| g.status.as_u16()).collect();
    assert_eq!(codes, vec![200, 200, 503], "{codes:?}");
    assert_eq!(statuses[2].header("x-envoy-overloaded"), Some("true"));
    assert!(statuses[2].text().contains("overflow"));
    assert_eq!(
        stat(&proxy, "cluster.cx.upstream_rq_pending_overflow").await,
        1
    );
    assert!(stat(&proxy, "cluster.cx.upstream_cx_overflow").await >= 2);

    // HIGH priority has its own thresholds.
    let mut tasks = Vec::new();
    for _ in 0..3 {
        tasks.push(tokio::spawn(
            async move { get(addr, "x", "/high").await.status },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }

    // max_requests 1.
    let first = tokio::spawn(async move { get(addr, "x", "/rq").await.status });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let g = get(addr, "x", "/rq").await;
    assert_eq!(g.status, 503);
    assert_eq!(g.header("x-envoy-overloaded"), Some("true"));
    assert_eq!(first.await.unwrap(), 200);
    let clusters_text = admin_get(&proxy, "/clusters").await.text();
    assert!(
        clusters_text.contains("cx::default_priority::max_connections::1"),
        "{clusters_text}"
    );
    assert!(
        clusters_text.contains("cx::high_priority::max_connections::5"),
        "{clusters_text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_with_no_connection_may_open_one_over_max_connections() {
    // max_connections 1 and two hosts: the idle connection to one host must not starve the
    // other (Envoy lets a host with no connection open one, counting upstream_cx_overflow).
    let a = Scripted::start(|_, _| ok()).await;
    let b = Scripted::start(|_, _| ok()).await;
    let clusters = cluster(
        "two",
        &[a.addr, b.addr],
        "    circuit_breakers: {thresholds: [{max_connections: 1}]}\n",
    );
    let proxy = start(&http_bootstrap(
        "",
        &vhost(
            "",
            &["{match: {prefix: /}, route: {cluster: two, timeout: 2s}}"],
        ),
        &clusters,
    ));
    let mut c = H1::connect(proxy.listener_addr("http").unwrap()).await;
    let t = Instant::now();
    for _ in 0..6 {
        assert_eq!(c.get("x", "/").await.status, 200);
    }
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!((a.count(), b.count()), (3, 3));
    assert!(stat(&proxy, "cluster.two.upstream_cx_overflow").await >= 1);
}

/// A request body streamed by the client in `chunks` pieces, `gap` apart.
fn slow_body(
    chunks: usize,
    gap: Duration,
) -> (
    http_body_util::StreamBody<ChunkStream>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let producer = tokio::spawn(async move {
        for i in 0..chunks {
            tokio::time::sleep(gap).await;
            let _ = tx
                .send(Ok(hyper::body::Frame::data(Bytes::from(format!(
                    "chunk{i};"
                )))))
                .await;
        }
    });
    (http_body_util::StreamBody::new(ChunkStream(rx)), producer)
}

pub struct ChunkStream(
    tokio::sync::mpsc::Receiver<Result<hyper::body::Frame<Bytes>, std::convert::Infallible>>,
);

impl futures_core::Stream for ChunkStream {
    type Item = Result<hyper::body::Frame<Bytes>, std::convert::Infallible>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_stream_at_once_under_a_retry_policy_and_replay_after_an_early_failure() {
    // The first attempt is refused before its body is read; the retry gets the whole body.
    let b = Scripted::start(|n, _| if n == 0 { status(503) } else { ok() }).await;
    let vh = vhost(
        "",
        &[
            "{match: {prefix: /}, route: {cluster: a, retry_policy: {retry_on: 5xx, num_retries: 2, retry_back_off: {base_interval: 0.001s}}}}",
        ],
    );
    let proxy = start(&http_bootstrap("", &vh, &cluster("a", &[b.addr], "")));
    let addr = proxy.listener_addr("http").unwrap();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let (body, producer) = slow_body(4, Duration::from_millis(150));
    let t0 = Instant::now();
    let resp = sender
        .send_request(
            Request::post("/early/upload")
                .header("host", "x")
                .body(body)
                .unwrap(),
        )
        .await
        .unwrap();
    let g = collect(resp).await;
    producer.await.unwrap();
    assert_eq!(g.status, 200, "{}", g.text());
    let seen = b.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        seen[0].arrived - t0 < Duration::from_millis(140),
        "the first attempt went upstream before the body was complete: {:?}",
        seen[0].arrived - t0
    );

    // A body read by the upstream, then a 503: the retry replays every byte.
    let b2 = Scripted::start(|n, _| if n == 0 { status(503) } else { ok() }).await;
    let proxy2 = start(&http_bootstrap("", &vh, &cluster("a", &[b2.addr], "")));
    let addr2 = proxy2.listener_addr("http").unwrap();
    let stream = tokio::net::TcpStream::connect(addr2).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let (body, producer) = slow_body(4, Duration::from_millis(50));
    let resp = sender
        .send_request(
            Request::post("/upload")
                .header("host", "x")
                .body(body)
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(collect(resp).await.status, 200);
    producer.await.unwrap();
    let seen = b2.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s.body, Bytes::from_static(b"chunk0;chunk1;chunk2;chunk3;"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_headers_ask_for_retries_and_timeouts() {
    let b = Scripted::start(|n, s| {
        if s.path == "/slow" {
            Reply::After(Duration::from_secs(2), Box::new(ok()))
        } else if n == 0 {
            status(503)
        } else {
            ok()
        }
    })
    .await;
    // The route has no retry policy and a long timeout; the client asks for more.
    let vh = vhost(
        "",
        &["{match: {prefix: /}, route: {cluster: a, timeout: 10s}}"],
    );
    let proxy = start(&http_bootstrap("", &vh, &cluster("a", &[b.addr], "")));
    let addr = proxy.listener_addr("http").unwrap();
    let g = send(
        addr,
        req(
            "GET",
            "x",
            "/",
            &[("x-envoy-retry-on", "5xx"), ("x-envoy-max-retries", "2")],
        ),
    )
    .await;
    assert_eq!(g.status, 200, "retried on the client's word");
    let seen = b.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|s| s.header("x-envoy-retry-on").is_none()
                && s.header("x-envoy-max-retries").is_none()),
        "control headers are consumed"
    );
    let t = Instant::now();
    let g = send(
        addr,
        req(
            "GET",
            "x",
            "/slow",
            &[("x-envoy-upstream-rq-timeout-ms", "200")],
        ),
    )
    .await;
    assert_eq!(g.status, 504);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_server_streams_are_not_held_by_the_trailer_check() {
    let b = Scripted::start(|_, _| Reply::GrpcStream(Duration::from_millis(800))).await;
    let vh = vhost(
        "",
        &[
            "{match: {prefix: /}, route: {cluster: a, retry_policy: {retry_on: 'unavailable,cancelled', num_retries: 2}}}",
        ],
    );
    let proxy = start(&http_bootstrap(
        "",
        &vh,
        &cluster("a", &[b.addr], "    http2_protocol_options: {}\n"),
    ));
    let stream = tokio::net::TcpStream::connect(proxy.listener_addr("http").unwrap())
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let t = Instant::now();
    let resp = sender
        .send_request(
            Request::post("http://x/svc/Watch")
                .header("content-type", "application/grpc")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = resp.into_body();
    use http_body_util::BodyExt;
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(
        first.into_data().unwrap(),
        Bytes::from_static(b"\0\0\0\0\x01a")
    );
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "the first message is forwarded before the stream ends: {:?}",
        t.elapsed()
    );
    let mut rest = Vec::new();
    let mut trailers = None;
    while let Some(f) = body.frame().await {
        let f = f.unwrap();
        match f.into_data() {
            Ok(d) => rest.extend_from_slice(&d),
            Err(f) => trailers = f.into_trailers().ok(),
        }
    }
    assert_eq!(rest, b"\0\0\0\0\x01b");
    assert_eq!(
        trailers.and_then(|t| t.get("grpc-status").cloned()),
        Some(http::HeaderValue::from_static("0"))
    );
    assert_eq!(b.count(), 1);
}
