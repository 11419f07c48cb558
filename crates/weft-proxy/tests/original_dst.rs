//! Original destination with real iptables interception: inside a network namespace the test
//! creates, `iptables -t nat ... -j REDIRECT` sends a client's connections to the proxy's
//! capture listener (`use_original_dst`), which reads `SO_ORIGINAL_DST`, hands the connection to
//! the listener of the original port (`bind_to_port: false`), or passes it through an
//! `ORIGINAL_DST` cluster. Needs root, `ip` and `iptables`; a missing one fails the test.
//!
//! The outer test creates the namespace and runs this test binary again inside it
//! (`ip netns exec`), selecting the inner test, which does the real work in-process.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::Backend;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const INNER_ENV: &str = "WEFT_ORIGINAL_DST_NETNS";
/// The source address whose connections the namespace's iptables rule redirects.
const CLIENT_IP: &str = "127.0.0.6";

fn run(program: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("`{program}` is required (apt-get install iproute2 iptables): {e}")
        });
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Deletes the namespace when the test ends, pass or fail.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn original_dst_redirect_in_netns() {
    let name = format!("weft-od-{}-{}", std::process::id(), fastrand::u32(..));
    run("ip", &["netns", "add", &name]);
    let ns = Netns(name);
    run(
        "ip",
        &["netns", "exec", &ns.0, "ip", "link", "set", "lo", "up"],
    );
    run("ip", &["netns", "exec", &ns.0, "iptables", "--version"]);
    let exe = std::env::current_exe().expect("test binary path");
    let exe = exe.to_string_lossy();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            &exe,
            "inner_original_dst",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(INNER_ENV, &ns.0)
        .output()
        .expect("run the inner test in the namespace");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "inner test failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "the inner test did not run:\n{text}"
    );
}

/// A connection from [`CLIENT_IP`], which the namespace's rule redirects to the proxy.
async fn redirected_connect(dst: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(CLIENT_IP.parse().unwrap(), 0))
        .unwrap();
    socket.connect(dst).await.expect("connect")
}

async fn http_get(dst: SocketAddr, path: &str, extra: &str) -> String {
    let mut s = redirected_connect(dst).await;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: svc\r\n{extra}connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("response in time")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the network namespace of original_dst_redirect_in_netns"]
async fn inner_original_dst() {
    let ns = std::env::var(INNER_ENV)
        .expect("run by original_dst_redirect_in_netns inside its network namespace");
    assert!(ns.starts_with("weft-od-"));
    let svc = Backend::start("svc").await;
    let by_header = Backend::start("by-header").await;
    let (echo, _echo_task) = common::tcp_echo().await;
    let svc_port = svc.addr.port();
    let route_all =
        |cluster: &str| json!({"match": {"prefix": "/"}, "route": {"cluster": cluster}});
    let bootstrap = json!({"static_resources": {
        "listeners": [
            {"name": "virtualOutbound", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
             "use_original_dst": true,
             "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                "stat_prefix": "PassthroughCluster", "cluster": "PassthroughCluster"}}]}]},
            {"name": format!("0.0.0.0_{svc_port}"),
             "address": {"socket_address": {"address": "0.0.0.0", "port_value": svc_port}},
             "bind_to_port": false,
             "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "outbound_svc",
                "route_config": {"name": "svc", "request_headers_to_add": [{"header": {"key": "x-handed-off", "value": "0.0.0.0_svc"}}],
                    "virtual_hosts": [{"name": "svc", "domains": ["*"], "routes": [
                        {"match": {"prefix": "/by-header"}, "route": {"cluster": "by_header"}},
                        route_all("original")]}]},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}
        ],
        "clusters": [
            {"name": "PassthroughCluster", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED", "connect_timeout": "1s"},
            {"name": "original", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED", "connect_timeout": "1s"},
            {"name": "by_header", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED", "connect_timeout": "1s",
             "original_dst_lb_config": {"use_http_header": true}}
        ]
    }});
    let proxy = common::start(&bootstrap.to_string());
    assert!(proxy.unsupported().is_empty(), "{:?}", proxy.unsupported());
    let capture = proxy.listener_addr("virtualOutbound").unwrap();
    run(
        "iptables",
        &[
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "-s",
            CLIENT_IP,
            "-j",
            "REDIRECT",
            "--to-ports",
            &capture.port().to_string(),
        ],
    );

    // HTTP to the service's address: redirected, handed to the listener of port `svc_port`,
    // routed, and sent to the original destination.
    let resp = http_get(svc.addr, "/hello", "").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let body = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
    let echo_seen = common::Echo::parse(body.as_bytes());
    assert_eq!(echo_seen.backend, "svc");
    assert_eq!(echo_seen.path, "/hello");
    assert_eq!(
        echo_seen.header("x-handed-off"),
        Some("0.0.0.0_svc"),
        "the hand-off listener's route ran"
    );
    assert_eq!(svc.requests.load(Ordering::SeqCst), 1);

    // `use_http_header`: the header names the host.
    let resp = http_get(
        svc.addr,
        "/by-header",
        &format!("x-envoy-original-dst-host: {}\r\n", by_header.addr),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let body = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
    assert_eq!(common::Echo::parse(body.as_bytes()).backend, "by-header");
    assert_eq!(svc.requests.load(Ordering::SeqCst), 1);

    // A port no listener claims: tcp_proxy to PassthroughCluster, the original destination.
    let mut s = redirected_connect(echo).await;
    s.write_all(b"opaque bytes").await.unwrap();
    let mut buf = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(&buf, b"opaque bytes");
    drop(s);
    assert_eq!(
        common::stat(&proxy, "cluster.PassthroughCluster.upstream_cx_total").await,
        1,
        "the echo connection went through the proxy"
    );
    // A connection that was not redirected (from 127.0.0.1) reaches the service directly.
    let direct = common::get(svc.addr, "svc", "/direct").await;
    assert_eq!(direct.echo().header("x-handed-off"), None);
    proxy.shutdown();
}
