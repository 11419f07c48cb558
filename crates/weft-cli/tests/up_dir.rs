//! `weft up DIR`: workloads declared in `weft.yaml` beside Istio YAML, run with sidecars in
//! loopback mode; a call from one workload's outbound address through both sidecars to the
//! other app, shaped by the directory's VirtualService. Also the errors a user gets.
//!
//! Needs the binaries built (`cargo build --workspace --bins`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

mod up_common;
use up_common::{require_binaries, stop_mesh, weft};

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weft-up-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

struct Down(PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        stop_mesh(&self.0);
    }
}

/// Removes a temporary directory when dropped.
struct Temp(PathBuf);

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// GET with a Host header; returns status, headers (lowercased) and body.
fn get(addr: SocketAddr, host: &str, path: &str) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, head.to_ascii_lowercase(), body.to_string()))
}

const WEFT_YAML: &str = r#"
namespace: shop
workloads:
  - name: ratings-v1
    service: ratings
    labels: {app: ratings, version: v1}
    ports: [{name: http, number: 9080}]
    command: [weft-bookinfo, ratings, --listen, "{app}"]
  - name: front
    service: front
    labels: {app: front}
    serviceAccount: front
    ports: [{name: http-web, number: 9080}]
    command: [weft-bookinfo, details, --listen, "{app}"]
"#;

const VIRTUAL_SERVICE: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
  namespace: shop
spec:
  hosts: [ratings]
  http:
  - headers:
      response:
        add:
          x-shaped-by: weft-up-dir
    route:
    - destination:
        host: ratings
"#;

#[test]
fn workloads_from_weft_yaml() {
    require_binaries();
    let dir = temp("dir-config");
    let _dir = Temp(dir.clone());
    std::fs::write(dir.join("weft.yaml"), WEFT_YAML).expect("write");
    std::fs::write(dir.join("ratings-vs.yaml"), VIRTUAL_SERVICE).expect("write");
    let state = temp("dir-state");
    let _down = Down(state.clone());
    let out = Command::new(weft())
        .arg("up")
        .arg(&dir)
        .args([
            "-d",
            "--xds-port",
            "0",
            "--admin-port",
            "0",
            "--timeout",
            "30",
        ])
        .arg("--state-dir")
        .arg(&state)
        .output()
        .expect("weft up");
    assert!(
        out.status.success(),
        "weft up DIR: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(weft())
        .args(["status", "-o", "json", "--state-dir"])
        .arg(&state)
        .output()
        .expect("status");
    let status: Value = serde_json::from_slice(&out.stdout).expect("status json");
    assert_eq!(status["gatewayUrl"], Value::Null, "no gateway declared");
    let w = |name: &str| {
        status["workloads"]
            .as_array()
            .and_then(|a| a.iter().find(|w| w["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {status}"))
    };
    let front = w("front");
    let ratings = w("ratings-v1");
    assert_eq!(front["namespace"], "shop");
    assert_eq!(front["labels"]["app"], "front");
    assert_eq!(front["serviceAccount"], "front");
    assert_eq!(
        front["nodeId"],
        format!(
            "sidecar~{}~front.shop~shop.svc.cluster.local",
            front["address"].as_str().expect("address")
        )
    );

    // From front's outbound address (its sidecar) to ratings: through both sidecars.
    let outbound: SocketAddr = format!("{}:9080", front["outboundAddress"].as_str().expect("out"))
        .parse()
        .expect("addr");
    let deadline = Instant::now() + Duration::from_secs(10);
    let (code, head, body) = loop {
        let r = get(outbound, "ratings:9080", "/ratings/0");
        if let Some(r) = &r
            && r.0 == 200
        {
            break r.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no answer through the sidecars: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, 200);
    assert!(body.contains("\"ratings\""), "{body}");
    assert!(head.contains("x-shaped-by: weft-up-dir"), "{head}");
    // The workload address is its sidecar's inbound listener.
    let inbound: SocketAddr = format!("{}:9080", ratings["address"].as_str().expect("address"))
        .parse()
        .expect("addr");
    let (code, _, _) = get(inbound, "ratings:9080", "/ratings/0").expect("inbound answers");
    assert_eq!(code, 200);

    let out = Command::new(weft())
        .args(["down", "--state-dir"])
        .arg(&state)
        .output()
        .expect("down");
    assert!(out.status.success());
    assert!(get(inbound, "ratings:9080", "/ratings/0").is_none());
}

#[test]
fn bad_input_is_named() {
    let dir = temp("dir-bad");
    let _dir = Temp(dir.clone());
    std::fs::write(
        dir.join("weft.yaml"),
        "workloads:\n- name: a\n  service: s\n  ports: [{name: http, number: 80}]\n",
    )
    .expect("write");
    let state = temp("dir-bad-state");
    let _state = Temp(state.clone());
    let out = Command::new(weft())
        .arg("up")
        .arg(&dir)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .expect("weft up");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("weft.yaml"), "{err}");
    assert!(err.contains("missing field `command`"), "{err}");
    assert!(!state.join("state.json").exists());

    // A directory without weft.yaml.
    let empty = temp("dir-empty");
    let _empty = Temp(empty.clone());
    let out = Command::new(weft())
        .arg("up")
        .arg(&empty)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .expect("weft up");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no weft.yaml"), "{err}");

    // A Gateway whose port is taken: refused before anything starts.
    let held = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
    let port = held.local_addr().expect("addr").port();
    let gw = temp("dir-gw");
    let _gw = Temp(gw.clone());
    std::fs::write(gw.join("weft.yaml"), WEFT_YAML).expect("write");
    std::fs::write(
        gw.join("gateway.yaml"),
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: {port}, name: http, protocol: HTTP}}\n    hosts: [\"*\"]\n"
        ),
    )
    .expect("write");
    let out = Command::new(weft())
        .arg("up")
        .arg(&gw)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .expect("weft up");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("port {port}")), "{err}");
    assert!(err.contains("is taken"), "{err}");
    drop(held);

    // Nothing runs: status says so.
    let out = Command::new(weft())
        .args(["status", "-o", "json", "--state-dir"])
        .arg(&state)
        .output()
        .expect("status");
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["running"], false);
}
