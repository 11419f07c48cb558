//! Timeouts and hostile input: route timeouts that cover the body, idle timeouts, request
//! limits per connection, request smuggling, oversized headers, slowloris, upstream resets and
//! connection floods. Each test also shows that other traffic keeps flowing meanwhile.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn vhost(routes: &[&str]) -> String {
    let mut s = String::from(
        "            - name: vh\n              domains: ['*']\n              routes:\n",
    );
    for r in routes {
        s.push_str(&format!("              - {r}\n"));
    }
    s
}

/// Sends a request and returns the response head and whether the body ended cleanly.
async fn head_then_body(addr: SocketAddr, path: &str) -> (u16, Result<Bytes, String>, Duration) {
    let t = Instant::now();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(req("GET", "x", path, &[]))
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect())
        .await
        .expect("the body must not hang")
        .map(|c| c.to_bytes())
        .map_err(|e| e.to_string());
    (status, body, t.elapsed())
}

/// Writes raw bytes on a fresh connection and returns everything read until the proxy closes.
async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    String::from_utf8_lossy(&read_to_end(&mut s).await).into_owned()
}

/// True when the proxy closes `s` within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline.into(), s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_and_stream_idle_timeout_cover_the_response_body() {
    let b = Scripted::start(|_, s| match s.path.as_str() {
        "/slow-headers" => Reply::After(Duration::from_secs(3), Box::new(ok())),
        _ => Reply::StallBody(Duration::from_secs(3)),
    })
    .await;
    let routes = [
        "{match: {prefix: /route}, route: {cluster: a, timeout: 0.5s}}",
        "{match: {prefix: /idle}, route: {cluster: a, timeout: 0s, idle_timeout: 0.3s}}",
        "{match: {prefix: /slow-headers}, route: {cluster: a, timeout: 0s, idle_timeout: 0.3s}}",
    ];
    let proxy = start(&http_bootstrap(
        "",
        &vhost(&routes),
        &cluster("a", &[b.addr], ""),
    ));
    let addr = proxy.listener_addr("http").unwrap();
    let (status, body, took) = head_then_body(addr, "/route").await;
    assert_eq!(status, 200, "headers came in time");
    assert!(
        body.is_err(),
        "the body was cut by the route timeout: {body:?}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    let (status, body, took) = head_then_body(addr, "/idle").await;
    assert_eq!(status, 200);
    assert!(body.is_err(), "stream idle timeout: {body:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    let g = get(addr, "x", "/slow-headers").await;
    assert_eq!(
        (g.status.as_u16(), g.text().as_str()),
        (408, "stream timeout")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_and_max_requests_per_connection() {
    let b = Scripted::start(|_, _| ok()).await;
    let hcm = "          common_http_protocol_options: {idle_timeout: 0.3s, max_requests_per_connection: 2}\n";
    let proxy = start(&http_bootstrap_with(
        hcm,
        "",
        &vhost(&["{match: {prefix: /}, route: {cluster: a}}"]),
        &cluster("a", &[b.addr], ""),
    ));
    let addr = proxy.listener_addr("http").unwrap();

    // Two requests on one connection: the second answer says close, then the proxy closes.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&read_to_end(&mut s).await).into_owned();
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    assert_eq!(
        stat(&proxy, "http.ingress.downstream_cx_max_requests_reached").await,
        1
    );

    // An idle connection is closed after idle_timeout.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let t = Instant::now();
    assert!(
        closed_within(&mut s, Duration::from_secs(3)).await,
        "idle connection closed"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        stat(&proxy, "http.ingress.downstream_cx_idle_timeout").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_pool_limits_requests_per_connection_and_closes_idle_connections() {
    let once = Scripted::start(|_, _| ok()).await;
    let idle = Scripted::start(|_, _| ok()).await;
    let opts = |common: &str| {
        format!(
            "    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        '@type': type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: {{http_protocol_options: {{}}}}\n        common_http_protocol_options: {common}\n"
        )
    };
    let clusters = cluster(
        "once",
        &[once.addr],
        &opts("{max_requests_per_connection: 1}"),
    ) + &cluster("idle", &[idle.addr], &opts("{idle_timeout: 0.2s}"));
    let routes = [
        "{match: {prefix: /once}, route: {cluster: once}}",
        "{match: {prefix: /idle}, route: {cluster: idle}}",
    ];
    let proxy = start(&http_bootstrap("", &vhost(&routes), &clusters));
    let mut c = H1::connect(proxy.listener_addr("http").unwrap()).await;
    for _ in 0..3 {
        assert_eq!(c.get("x", "/once").await.status, 200);
    }
    assert_eq!(
        once.connections.load(std::sync::atomic::Ordering::SeqCst),
        3
    );
    assert_eq!(c.get("x", "/idle").await.status, 200);
    assert_eq!(c.get("x", "/idle").await.status, 200);
    assert_eq!(
        idle.connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "reused while fresh"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        idle.closed.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "closed when idle"
    );
    assert_eq!(c.get("x", "/idle").await.status, 200);
    assert_eq!(
        idle.connections.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_smuggling_shapes_are_refused_while_other_traffic_flows() {
    let b = Scripted::start(|_, _| ok()).await;
    let proxy = start(&http_bootstrap(
        "",
        &vhost(&["{match: {prefix: /}, route: {cluster: a}}"]),
        &cluster("a", &[b.addr], ""),
    ));
    let addr = proxy.listener_addr("http").unwrap();
    let mut good = H1::connect(addr).await;
    let attacks: [&[u8]; 6] = [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 11\r\n\r\nhelloGET /x",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ];
    for (i, a) in attacks.iter().enumerate() {
        let (text, g) = tokio::join!(raw(addr, a), good.get("x", "/fine"));
        assert!(
            text.starts_with("HTTP/1.1 400") || text.starts_with("HTTP/1.1 501"),
            "attack {i}: {text:?}"
        );
        assert_eq!(
            text.matches("HTTP/1.1").count(),
            1,
            "attack {i}: one answer, then closed: {text:?}"
        );
        assert_eq!(g.status, 200, "other traffic flows");
    }
    let seen = b.seen();
    assert!(
        seen.iter().all(|s| s.path == "/fine"),
        "nothing smuggled reached the upstream: {:?}",
        seen.iter().map(|s| &s.path).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431() {
    let b = Scripted::start(|_, _| ok()).await;
    let routes = vhost(&["{match: {prefix: /}, route: {cluster: a}}"]);
    let proxy = start(&http_bootstrap("", &routes, &cluster("a", &[b.addr], "")));
    let small = start(&http_bootstrap_with(
        "          max_request_headers_kb: 10\n",
        "",
        &routes,
        &cluster("a", &[b.addr], ""),
    ));
    let big = "a".repeat(70 * 1024);
    let text = raw(
        proxy.listener_addr("http").unwrap(),
        format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(
        text.starts_with("HTTP/1.1 431"),
        "default 60 KiB limit: {:?}",
        &text[..text.len().min(80)]
    );
    let mid = "a".repeat(12 * 1024);
    let text = raw(
        small.listener_addr("http").unwrap(),
        format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {mid}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(
        text.starts_with("HTTP/1.1 431"),
        "10 KiB limit: {:?}",
        &text[..text.len().min(80)]
    );
    let ok_size = "a".repeat(5 * 1024);
    let g = send(
        small.listener_addr("http").unwrap(),
        req("GET", "x", "/", &[("x-big", &ok_size)]),
    )
    .await;
    assert_eq!(g.status, 200);
    assert_eq!(b.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_off_after_request_headers_timeout() {
    let b = Scripted::start(|_, _| ok()).await;
    let proxy = start(&http_bootstrap_with(
        "          request_headers_timeout: 0.4s\n",
        "",
        &vhost(&["{match: {prefix: /}, route: {cluster: a}}"]),
        &cluster("a", &[b.addr], ""),
    ));
    let addr = proxy.listener_addr("http").unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let t = Instant::now();
    let trickle = async {
        for i in 0..40 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if s.write_all(format!("X-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                return true;
            }
            let mut buf = [0u8; 256];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await
            {
                return true;
            }
        }
        false
    };
    let (cut, g) = tokio::join!(trickle, get(addr, "x", "/meanwhile"));
    assert_eq!(g.status, 200, "other traffic flows");
    assert!(cut, "slow headers were cut off");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(b.count(), 1);
    assert_eq!(
        stat(&proxy, "http.ingress.downstream_rq_header_timeout").await,
        1
    );
    // The timer runs from a head's first byte: an idle keep-alive connection is not cut.
    let mut ka = H1::connect(addr).await;
    assert_eq!(ka.get("x", "/1").await.status, 200);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(ka.get("x", "/2").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_reset_mid_body_is_a_reset_not_a_hang() {
    let b = Scripted::start(|_, s| {
        if s.path == "/reset" {
            Reply::ResetMidBody
        } else {
            ok()
        }
    })
    .await;
    let proxy = start(&http_bootstrap(
        "",
        &vhost(&["{match: {prefix: /}, route: {cluster: a}}"]),
        &cluster("a", &[b.addr], ""),
    ));
    let addr = proxy.listener_addr("http").unwrap();
    let (status, body, took) = head_then_body(addr, "/reset").await;
    assert_eq!(status, 200);
    assert!(body.is_err(), "{body:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(get(addr, "x", "/after").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_listener_limit_are_refused_promptly() {
    let b = Scripted::start(|_, _| ok()).await;
    let yaml = http_bootstrap(
        "",
        &vhost(&["{match: {prefix: /}, route: {cluster: a}}"]),
        &cluster("a", &[b.addr], ""),
    ) + "layered_runtime:\n  layers:\n  - name: static\n    static_layer:\n      envoy.resource_limits.listener.http.connection_limit: 2\n";
    let proxy = start(&yaml);
    let addr = proxy.listener_addr("http").unwrap();
    let mut c1 = H1::connect(addr).await;
    let mut c2 = H1::connect(addr).await;
    assert_eq!(c1.get("x", "/").await.status, 200);
    assert_eq!(c2.get("x", "/").await.status, 200);
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let t = Instant::now();
    assert!(
        closed_within(&mut extra, Duration::from_secs(1)).await,
        "third connection closed"
    );
    assert!(t.elapsed() < Duration::from_millis(500));
    assert_eq!(
        c1.get("x", "/").await.status,
        200,
        "admitted connections keep working"
    );
    assert_eq!(
        stat(&proxy, "listener.127.0.0.1_0.downstream_cx_overflow").await
            + stat(
                &proxy,
                &format!("listener.127.0.0.1_{}.downstream_cx_overflow", addr.port())
            )
            .await,
        1
    );
    drop(c2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c3 = H1::connect(addr).await;
    assert_eq!(c3.get("x", "/").await.status, 200, "a slot freed up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_connection_limit_counts_every_listener() {
    let b = Scripted::start(|_, _| ok()).await;
    let yaml = http_bootstrap(
        "",
        &vhost(&["{match: {prefix: /}, route: {cluster: a}}"]),
        &cluster("a", &[b.addr], ""),
    ) + "layered_runtime:\n  layers:\n  - name: static\n    static_layer:\n      overload: {global_downstream_max_connections: 1}\n";
    let proxy = start(&yaml);
    let addr = proxy.listener_addr("http").unwrap();
    let mut c1 = H1::connect(addr).await;
    assert_eq!(c1.get("x", "/").await.status, 200);
    let mut extra = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_within(&mut extra, Duration::from_secs(1)).await,
        "second connection closed"
    );
    assert_eq!(c1.get("x", "/").await.status, 200);
}
