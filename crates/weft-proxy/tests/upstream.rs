//! Clusters, load balancing, connection pooling, bodies, upgrades, TCP proxying, failures.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn one_route(cluster: &str, extra_route: &str) -> String {
    format!(
        "            - name: vh\n              domains: ['*']\n              routes:\n              - match: {{prefix: /}}\n                route: {{cluster: {cluster}{extra_route}}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_is_504() {
    let a = Backend::start("a").await;
    let proxy = start(&http_bootstrap(
        "",
        &one_route("a", ", timeout: 0.2s"),
        &cluster("a", &[a.addr], ""),
    ));
    let addr = proxy.listener_addr("http").unwrap();
    let t = Instant::now();
    let g = get(addr, "x", "/?delay_ms=3000").await;
    assert_eq!(g.status, 504);
    assert_eq!(g.text(), "upstream request timeout");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(get(addr, "x", "/?delay_ms=10").await.status, 200);
    let stats = admin_get(&proxy, "/stats").await.text();
    assert!(
        stats.contains("cluster.a.upstream_rq_timeout: 1"),
        "{stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_upstream_is_503_and_unhealthy_endpoints_are_skipped() {
    // A port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let a = Backend::start("a").await;
    let unhealthy = format!(
        "  - name: sick\n    connect_timeout: 1s\n    common_lb_config: {{healthy_panic_threshold: {{value: 0}}}}\n    load_assignment:\n      cluster_name: sick\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}\n          health_status: UNHEALTHY\n",
        a.addr.port()
    );
    let vhosts = "            - name: vh\n              domains: ['*']\n              routes:\n              - {match: {prefix: /dead}, route: {cluster: dead}}\n              - {match: {prefix: /sick}, route: {cluster: sick}}\n              - {match: {prefix: /none}, route: {cluster: nosuch}}\n";
    let clusters = cluster("dead", &[dead], "") + &unhealthy;
    let proxy = start(&http_bootstrap("", vhosts, &clusters));
    let addr = proxy.listener_addr("http").unwrap();
    let g = get(addr, "x", "/dead").await;
    assert_eq!(g.status, 503);
    assert!(g.text().contains("connection failure"), "{}", g.text());
    let g = get(addr, "x", "/sick").await;
    assert_eq!(g.status, 503);
    assert_eq!(g.text(), "no healthy upstream");
    assert_eq!(a.requests.load(Ordering::SeqCst), 0);
    assert_eq!(get(addr, "x", "/none").await.status, 503, "unknown cluster");
    let stats = admin_get(&proxy, "/stats").await.text();
    assert!(
        stats.contains("cluster.dead.upstream_cx_connect_fail: 1"),
        "{stats}"
    );
    assert!(
        stats.contains("cluster.sick.upstream_cx_none_healthy: 1"),
        "{stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_weights_random_and_keep_alive_reuse() {
    let bs = [
        Backend::start("b0").await,
        Backend::start("b1").await,
        Backend::start("b2").await,
    ];
    let addrs: Vec<_> = bs.iter().map(|b| b.addr).collect();
    let weighted = format!(
        "  - name: weighted\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: weighted\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}\n          load_balancing_weight: 3\n        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}\n          load_balancing_weight: 1\n",
        addrs[0].port(),
        addrs[1].port()
    );
    let vhosts = "            - name: vh\n              domains: ['*']\n              routes:\n              - {match: {prefix: /rr}, route: {cluster: rr}}\n              - {match: {prefix: /w}, route: {cluster: weighted}}\n              - {match: {prefix: /random}, route: {cluster: random}}\n";
    let clusters = cluster("rr", &addrs, "")
        + &weighted
        + &cluster("random", &addrs, "    lb_policy: RANDOM\n");
    let proxy = start(&http_bootstrap("", vhosts, &clusters));
    let addr = proxy.listener_addr("http").unwrap();
    let mut c = H1::connect(addr).await;
    let mut seen = Vec::new();
    for _ in 0..9 {
        seen.push(c.get("x", "/rr").await.echo().backend);
    }
    for b in ["b0", "b1", "b2"] {
        assert_eq!(seen.iter().filter(|s| *s == b).count(), 3, "{seen:?}");
    }
    assert_ne!(seen[0], seen[1], "round robin alternates: {seen:?}");
    // Keep-alive: nine sequential requests, one upstream connection per endpoint.
    for b in &bs {
        assert_eq!(
            b.connections.load(Ordering::SeqCst),
            1,
            "{} connections to {}",
            b.connections.load(Ordering::SeqCst),
            b.name
        );
    }
    let stats = admin_get(&proxy, "/stats").await.text();
    assert!(stats.contains("cluster.rr.upstream_cx_total: 3"), "{stats}");
    assert!(stats.contains("cluster.rr.upstream_rq_total: 9"), "{stats}");

    let mut w = [0; 2];
    for _ in 0..40 {
        match c.get("x", "/w").await.echo().backend.as_str() {
            "b0" => w[0] += 1,
            _ => w[1] += 1,
        }
    }
    assert_eq!(w, [30, 10], "weights 3:1");

    let mut r = [0; 3];
    for _ in 0..300 {
        let b = c.get("x", "/random").await.echo().backend;
        r[b[1..].parse::<usize>().unwrap()] += 1;
    }
    assert!(
        r.iter().all(|n| (50..=150).contains(n)),
        "random spread {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_and_large_bodies_stream_both_ways() {
    let a = Backend::start("a").await;
    let proxy = start(&http_bootstrap(
        "",
        &one_route("a", ""),
        &cluster("a", &[a.addr], ""),
    ));
    let addr = proxy.listener_addr("http").unwrap();

    // Chunked upload: a streamed body with no content-length.
    let (tx, rx) = tokio::sync::mpsc::channel::<
        Result<hyper::body::Frame<Bytes>, std::convert::Infallible>,
    >(4);
    let body = http_body_util::StreamBody::new(ReceiverStream(rx));
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut expected = Vec::new();
    let producer = tokio::spawn(async move {
        for i in 0..50u8 {
            let chunk = vec![i; 1000 + i as usize];
            tx.send(Ok(hyper::body::Frame::data(Bytes::from(chunk))))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    for i in 0..50u8 {
        expected.extend(std::iter::repeat_n(i, 1000 + i as usize));
    }
    let req = Request::post("/upload")
        .header("host", "x")
        .body(body)
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let g = collect(resp).await;
    producer.await.unwrap();
    let e = g.echo();
    assert_eq!(
        e.header("transfer-encoding"),
        Some("chunked"),
        "re-chunked upstream"
    );
    assert_eq!(e.body_len, expected.len());
    assert_eq!(e.body_sum, checksum(&expected));

    // Large upload with content-length (8 MiB) and a large chunked download (32 MiB).
    let big: Vec<u8> = (0..8 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let g = send(
        addr,
        Request::post("/up")
            .header("host", "x")
            .body(Full::new(Bytes::from(big.clone())))
            .unwrap(),
    )
    .await;
    let e = g.echo();
    assert_eq!(e.body_len, big.len());
    assert_eq!(e.body_sum, checksum(&big));
    assert_eq!(e.header("content-length"), Some("8388608"));

    let g = get(addr, "x", &format!("/big?n={}", 32 * 1024 * 1024)).await;
    assert_eq!(g.status, 200);
    assert_eq!(g.body.len(), 32 * 1024 * 1024);
    assert!(g.body.iter().all(|b| *b == b'x'));
}

/// `tokio::sync::mpsc::Receiver` as a `futures_core::Stream` for `StreamBody`.
struct ReceiverStream<T>(tokio::sync::mpsc::Receiver<T>);

impl<T> futures_core::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_echoes_through() {
    let a = Backend::start("a").await;
    let proxy = start(&http_bootstrap(
        "",
        &one_route("a", ""),
        &cluster("a", &[a.addr], ""),
    ));
    let addr = proxy.listener_addr("http").unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("upgrade: websocket") && head.contains("connection: upgrade"),
        "{head}"
    );
    for msg in [
        &b"hello"[..],
        b"over the upgraded connection",
        &[0x81, 0x05, 1, 2, 3, 4, 5],
    ] {
        s.write_all(msg).await.unwrap();
        let mut buf = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(buf, msg);
    }
    let stats = admin_get(&proxy, "/stats").await.text();
    assert!(
        stats.contains("http.ingress.downstream_cx_upgrades_total: 1"),
        "{stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_downstream_and_http2_upstream() {
    let a = Backend::start("a").await;
    let explicit_h2 = "    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: {http2_protocol_options: {}}\n";
    let proxy = start(&http_bootstrap(
        "",
        &one_route("a", ""),
        &cluster("a", &[a.addr], explicit_h2),
    ));
    let addr = proxy.listener_addr("http").unwrap();
    let mut c = H2::connect(addr).await;
    for i in 0..10 {
        let g = c.get("svc.local", &format!("/h2/{i}")).await;
        assert_eq!(g.status, 200);
        let e = g.echo();
        assert_eq!(e.version, "HTTP/2.0");
        assert_eq!(e.path, format!("/h2/{i}"));
    }
    assert_eq!(
        a.connections.load(Ordering::SeqCst),
        1,
        "one multiplexed upstream connection"
    );
    // HTTP/1.1 downstream to the same HTTP/2 upstream.
    let e = get(addr, "svc.local", "/from-h1").await.echo();
    assert_eq!(e.version, "HTTP/2.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_breaker_max_requests_overflows_with_503() {
    let a = Backend::start("a").await;
    let cb = "    circuit_breakers: {thresholds: [{max_requests: 1}]}\n";
    let proxy = start(&http_bootstrap(
        "",
        &one_route("a", ""),
        &cluster("a", &[a.addr], cb),
    ));
    let addr = proxy.listener_addr("http").unwrap();
    let slow = tokio::spawn(async move { get(addr, "x", "/?delay_ms=1500").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let g = get(addr, "x", "/").await;
    assert_eq!(g.status, 503);
    assert!(g.text().contains("overflow"));
    assert_eq!(slow.await.unwrap().status, 200);
    assert_eq!(get(addr, "x", "/").await.status, 200, "slot released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_proxy_echo_with_half_close_and_sni_chain_selection() {
    let (echo_a, _ta) = tcp_echo().await;
    let (echo_b, _tb) = tcp_echo().await;
    let yaml = format!(
        r#"
static_resources:
  listeners:
  - name: tcp
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}}
    filter_chains:
    - filter_chain_match: {{server_names: ["a.example.com"], transport_protocol: tls}}
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: sni_a, cluster: echo_a}}
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: plain, cluster: echo_b}}
  clusters:
{}{}"#,
        cluster("echo_a", &[echo_a], ""),
        cluster("echo_b", &[echo_b], "")
    );
    let proxy = start(&yaml);
    assert!(proxy.unsupported().is_empty(), "{:?}", proxy.unsupported());
    let addr = proxy.listener_addr("tcp").unwrap();

    // Plain bytes: default chain; half-close from the client still lets the reply through.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 256) as u8).collect();
    s.write_all(&payload).await.unwrap();
    s.shutdown().await.unwrap();
    let got = read_to_end(&mut s).await;
    assert_eq!(got.len(), payload.len() + 3);
    assert_eq!(&got[..payload.len()], &payload[..]);
    assert_eq!(
        &got[payload.len()..],
        b"bye",
        "upstream saw the half-close and could still answer"
    );

    // A TLS ClientHello for a.example.com goes to echo_a, which echoes the hello back.
    let hello = client_hello("a.example.com");
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&hello).await.unwrap();
    s.shutdown().await.unwrap();
    let got = read_to_end(&mut s).await;
    assert_eq!(&got[..hello.len()], &hello[..]);
    let clusters = admin_get(&proxy, "/stats").await.text();
    assert!(
        clusters.contains("cluster.echo_a.upstream_cx_total: 1"),
        "{clusters}"
    );
    assert!(
        clusters.contains("cluster.echo_b.upstream_cx_total: 1"),
        "{clusters}"
    );

    // Another server name falls back to the catch-all chain.
    let hello = client_hello("b.example.com");
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&hello).await.unwrap();
    s.shutdown().await.unwrap();
    read_to_end(&mut s).await;
    let clusters = admin_get(&proxy, "/stats").await.text();
    assert!(
        clusters.contains("cluster.echo_b.upstream_cx_total: 2"),
        "{clusters}"
    );
}

/// A minimal TLS 1.2 ClientHello record carrying SNI.
fn client_hello(sni: &str) -> Vec<u8> {
    let name = sni.as_bytes();
    let mut ext = vec![0, 0];
    let list_len = 3 + name.len();
    ext.extend_from_slice(&((list_len + 2) as u16).to_be_bytes());
    ext.extend_from_slice(&(list_len as u16).to_be_bytes());
    ext.push(0);
    ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
    ext.extend_from_slice(name);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7u8; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01]);
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1, 0];
    hs.extend_from_slice(&(body.len() as u16).to_be_bytes());
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}
