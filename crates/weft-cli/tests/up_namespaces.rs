//! `weft up --demo bookinfo --mode namespaces` (root on Linux): each workload in its own network
//! namespace with iptables capture; the apps call plain service names (`details:9080`), resolved
//! by the namespace's hosts file. Checked through the gateway on the productpage, in the
//! namespaces' iptables counters, and after `weft down`: no namespace, veth, bridge, hosts file,
//! iptables rule or process left.
//!
//! Needs root, `ip`, `iptables` and `setpriv`, the binaries built (`cargo build --workspace
//! --bins`) and port 8080 free. Not being root is a failure, not a skip.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

mod up_common;
use up_common::{conformance, stop_mesh, weft};

fn sh(args: &[&str]) -> (bool, String) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", args[0]));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

struct Mesh(PathBuf);

impl Mesh {
    fn weft(&self, args: &[&str]) -> std::process::Output {
        Command::new(weft())
            .args(args)
            .arg("--state-dir")
            .arg(&self.0)
            .env("WEFT_CONFORMANCE_DIR", conformance())
            .output()
            .expect("run weft")
    }

    fn status(&self) -> Value {
        let out = self.weft(&["status", "-o", "json"]);
        serde_json::from_slice(&out.stdout).expect("status json")
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        stop_mesh(&self.0);
    }
}

fn page(headers: &[(&str, &str)]) -> Option<String> {
    let addr: SocketAddr = "127.0.0.1:8080".parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut req =
        "GET /productpage HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n".to_string();
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    if !text.starts_with("HTTP/1.1 200") {
        return None;
    }
    Some(text)
}

fn served_by(page: &str) -> Option<String> {
    let rest = page.split("Reviews served by: ").nth(1)?;
    let v = rest
        .split('<')
        .next()?
        .strip_prefix("reviews-")?
        .split('-')
        .next()?;
    Some(v.to_string())
}

fn wait_all(want: &str, headers: &[(&str, &str)]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let seen: Vec<Option<String>> = (0..10)
            .map(|_| page(headers).and_then(|p| served_by(&p)))
            .collect();
        if seen.iter().all(|v| v.as_deref() == Some(want)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "expected reviews-{want} ({headers:?}), saw {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Packets the nat chain `chain` of namespace `ns` redirected (first rule's counter).
fn redirected(ns: &str, chain: &str) -> u64 {
    let (ok, out) = sh(&[
        "ip", "netns", "exec", ns, "iptables", "-t", "nat", "-L", chain, "-v", "-n", "-x",
    ]);
    assert!(ok, "{out}");
    // "    pkts      bytes target     prot ..." rows: the REDIRECT rule's packet count.
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.get(2) == Some(&"REDIRECT"))
        .and_then(|w| w[0].parse().ok())
        .unwrap_or(0)
}

fn weft_namespaces() -> Vec<String> {
    let (_, out) = sh(&["ip", "netns", "list"]);
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("weft-"))
        .map(str::to_string)
        .collect()
}

#[test]
fn bookinfo_in_network_namespaces() {
    let (_, id) = sh(&["id", "-u"]);
    assert_eq!(
        id.trim(),
        "0",
        "namespaces mode needs root (CI runs as root); run this test as root"
    );
    for tool in ["ip", "iptables", "iptables-restore", "setpriv"] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success()),
            "{tool} is not installed (iproute2, iptables, util-linux)"
        );
    }
    let dir = weft().parent().expect("bin dir").to_path_buf();
    for b in ["weft-proxy", "weft-bookinfo"] {
        assert!(
            dir.join(b).is_file(),
            "{b} is not built: run `cargo build --workspace --bins` first"
        );
    }
    assert!(
        std::net::TcpListener::bind("0.0.0.0:8080").is_ok(),
        "port 8080 (bookinfo-gateway.yaml's server port) is taken"
    );
    assert!(
        weft_namespaces().is_empty(),
        "weft namespaces exist already: {:?}",
        weft_namespaces()
    );

    let state = std::env::temp_dir().join(format!("weft-up-netns-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let mesh = Mesh(state);
    let out = mesh.weft(&[
        "up",
        "--demo",
        "bookinfo",
        "--mode",
        "namespaces",
        "-d",
        "--xds-port",
        "0",
        "--admin-port",
        "0",
        "--timeout",
        "30",
    ]);
    assert!(
        out.status.success(),
        "weft up --mode namespaces: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let status = mesh.status();
    assert_eq!(status["mode"], "namespaces", "{status}");
    let admin = status["controlPlane"]["admin"]
        .as_str()
        .expect("admin")
        .to_string();
    let workloads = status["workloads"].as_array().expect("workloads").clone();
    assert_eq!(workloads.len(), 6);
    for w in &workloads {
        assert_eq!(w["sync"], "SYNCED", "{w}");
        assert_eq!(w["proxyReady"], true, "{w}");
        assert!(
            w["address"]
                .as_str()
                .is_some_and(|a| a.starts_with("10.77.0.")),
            "{w}"
        );
    }
    let mut namespaces = weft_namespaces();
    namespaces.sort();
    assert_eq!(
        namespaces,
        [
            "weft-details-v1",
            "weft-productpage-v1",
            "weft-ratings-v1",
            "weft-reviews-v1",
            "weft-reviews-v2",
            "weft-reviews-v3"
        ]
    );
    // Names resolve in the namespace; the app listens on the plain service port; the sidecar
    // runs as the excluded uid.
    let (ok, out) = sh(&[
        "ip",
        "netns",
        "exec",
        "weft-productpage-v1",
        "getent",
        "hosts",
        "reviews",
    ]);
    assert!(ok && out.starts_with("10.78.0."), "{out}");
    let (_, listening) = sh(&["ip", "netns", "exec", "weft-productpage-v1", "ss", "-ltnp"]);
    assert!(listening.contains("0.0.0.0:9080"), "{listening}");
    assert!(listening.contains("0.0.0.0:15001"), "{listening}");
    assert!(listening.contains("0.0.0.0:15006"), "{listening}");
    let proxy_pid = workloads
        .iter()
        .find(|w| w["name"] == "productpage-v1")
        .and_then(|w| w["proxy"]["pid"].as_u64())
        .expect("proxy pid");
    let proc_status =
        std::fs::read_to_string(format!("/proc/{proxy_pid}/status")).expect("proc status");
    assert!(
        proc_status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("1337")),
        "{proc_status}"
    );

    // Traffic: the page through the gateway, captured on both sides (connections are pooled,
    // so the counters count connections, not requests).
    let p = page(&[]).expect("the productpage answers through the gateway");
    assert!(p.contains("The Comedy of Errors"), "{p}");
    assert!(p.contains("ISBN-10"), "details reached: {p}");
    assert!(served_by(&p).is_some(), "reviews reached: {p}");
    assert!(redirected("weft-productpage-v1", "ISTIO_REDIRECT") > 0);
    assert!(redirected("weft-productpage-v1", "ISTIO_IN_REDIRECT") > 0);
    assert!(redirected("weft-details-v1", "ISTIO_IN_REDIRECT") > 0);
    assert_eq!(
        redirected("weft-details-v1", "ISTIO_REDIRECT"),
        0,
        "details calls no one"
    );

    // Istio's routing applies.
    for file in [
        "virtual-service-all-v1.yaml",
        "virtual-service-reviews-jason-v2-v3.yaml",
    ] {
        let out = Command::new(weft())
            .args(["apply", "--control-plane", &admin, "-f"])
            .arg(conformance().join("bookinfo/networking").join(file))
            .output()
            .expect("apply");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if file.contains("all-v1") {
            wait_all("v1", &[]);
        }
    }
    wait_all("v2", &[("Cookie", "session=jason")]);
    wait_all("v3", &[]);

    // A killed sidecar comes back, captured traffic flows again.
    let _ = sh(&["kill", "-KILL", &proxy_pid.to_string()]);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = mesh.status();
        let w = s["workloads"]
            .as_array()
            .and_then(|a| a.iter().find(|w| w["name"] == "productpage-v1").cloned())
            .expect("productpage");
        if w["proxy"]["running"] == true
            && w["proxy"]["pid"].as_u64() != Some(proxy_pid)
            && w["sync"] == "SYNCED"
            && w["proxyReady"] == true
        {
            break;
        }
        assert!(Instant::now() < deadline, "sidecar not healed: {w}");
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_all("v2", &[("Cookie", "session=jason")]);

    // Down: nothing left.
    let mut pids: Vec<u64> = vec![status["supervisorPid"].as_u64().expect("pid")];
    let s = mesh.status();
    for w in s["workloads"].as_array().into_iter().flatten() {
        pids.extend(w["app"]["pid"].as_u64());
        pids.extend(w["proxy"]["pid"].as_u64());
    }
    let out = mesh.weft(&["down"]);
    assert!(out.status.success());
    assert!(weft_namespaces().is_empty(), "{:?}", weft_namespaces());
    let (bridge, _) = sh(&["ip", "link", "show", "weft-br0"]);
    assert!(!bridge, "the bridge is left");
    let (_, links) = sh(&["ip", "-o", "link", "show"]);
    assert!(!links.contains("weftv"), "veth left: {links}");
    for n in &namespaces {
        assert!(
            !Path::new("/etc/netns").join(n).exists(),
            "hosts of {n} left"
        );
    }
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z")),
            "pid {pid} still running"
        );
    }
    assert!(page(&[]).is_none());
}
