//! `weft up --demo bookinfo` end to end, in loopback mode: the built `weft`, `weft-proxy` and
//! `weft-bookinfo` binaries as real processes; the productpage fetched through the ingress
//! gateway (bookinfo-gateway.yaml) and checked for which reviews version answered, as Istio's
//! VirtualServices are applied with `weft apply`; `weft status -o json`; a killed sidecar, app
//! and control plane healed by the supervisor; `weft down` leaving no process behind.
//!
//! Needs the binaries built (`cargo build --workspace --bins`; the suite's `cargo test
//! --workspace` builds them) and port 8080 free (the port bookinfo-gateway.yaml serves).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

mod up_common;
use up_common::{conformance, require_binaries, stop_mesh, weft};

fn networking(file: &str) -> PathBuf {
    conformance().join("bookinfo/networking").join(file)
}

/// Stops the mesh (by its state directory) when the test ends, even on failure.
struct Mesh {
    state_dir: PathBuf,
}

impl Mesh {
    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new(weft())
            .args(args)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .env("WEFT_CONFORMANCE_DIR", conformance())
            .output()
            .expect("run weft")
    }

    fn status(&self) -> Value {
        let out = self.run(&["status", "-o", "json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "weft status -o json: {e}\n{}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        if let Ok(rd) = std::fs::read_dir(self.state_dir.join("logs")) {
            for e in rd.flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(8).collect();
                out.push_str(&format!("== {}\n", e.path().display()));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        stop_mesh(&self.state_dir);
    }
}

/// One HTTP/1.1 GET (connection closed after), returning status and body.
fn http_get(url: &str, path: &str, headers: &[(&str, &str)]) -> Option<(u16, String)> {
    let authority = url.strip_prefix("http://")?.trim_end_matches('/');
    let addr: SocketAddr = authority.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// The reviews version named on the page ("Reviews served by: reviews-v2-..."), if any.
fn served_by(page: &str) -> Option<String> {
    let rest = page.split("Reviews served by: ").nth(1)?;
    let name = rest.split('<').next()?;
    let v = name.strip_prefix("reviews-")?.split('-').next()?;
    Some(v.to_string())
}

/// Fetches the productpage `n` times; returns the versions seen, in order.
fn versions(gateway: &str, n: usize, headers: &[(&str, &str)]) -> Vec<String> {
    (0..n)
        .map(|_| match http_get(gateway, "/productpage", headers) {
            Some((200, body)) => served_by(&body).unwrap_or_else(|| "none".into()),
            Some((code, _)) => format!("HTTP {code}"),
            None => "no answer".into(),
        })
        .collect()
}

/// Waits until 10 pages in a row are served by `want`.
fn wait_all(mesh: &Mesh, gateway: &str, want: &str, headers: &[(&str, &str)]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let seen = versions(gateway, 10, headers);
        if seen.iter().all(|v| v == want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "expected every page served by reviews-{want} (headers {headers:?}), saw {seen:?}\n{}",
            mesh.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn apply(mesh: &Mesh, admin: &str, file: &str) {
    let out = Command::new(weft())
        .args(["apply", "--control-plane", admin, "-f"])
        .arg(networking(file))
        .output()
        .expect("weft apply");
    assert!(
        out.status.success(),
        "weft apply -f {file}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = mesh;
}

fn pid_alive(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .map(|(_, r)| r.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

fn kill(pid: u64) {
    let st = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(st.success(), "kill -KILL {pid}");
}

/// The PID of a process in `weft status -o json` (`workloads[].app|proxy`, `controlPlane`).
fn pid_of(status: &Value, pointer: &str) -> Option<u64> {
    let p = status.pointer(pointer)?;
    if p["running"] != true {
        return None;
    }
    p["pid"].as_u64()
}

fn workload_pointer(status: &Value, name: &str, what: &str) -> String {
    let i = status["workloads"]
        .as_array()
        .expect("workloads")
        .iter()
        .position(|w| w["name"] == name)
        .unwrap_or_else(|| panic!("workload {name} in {status}"));
    format!("/workloads/{i}/{what}")
}

/// Kills the process at `pointer` and waits for the supervisor to run a new one, and for every
/// proxy to be SYNCED again.
fn kill_and_wait_healed(mesh: &Mesh, pointer: &str) {
    let before = mesh.status();
    let pid = pid_of(&before, pointer).unwrap_or_else(|| panic!("{pointer} not running: {before}"));
    kill(pid);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = mesh.status();
        let synced = s["workloads"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(s["gateways"].as_array().into_iter().flatten())
            .all(|w| w["sync"] == "SYNCED" && w["proxyReady"] == true);
        if let Some(new) = pid_of(&s, pointer)
            && new != pid
            && synced
            && s["controlPlane"]["answering"] == true
        {
            let restarts = s
                .pointer(&format!("{pointer}/restarts"))
                .and_then(Value::as_u64);
            assert!(restarts >= Some(1), "restarts counted: {s}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{pointer} (pid {pid}) not healed: {s}\n{}",
            mesh.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The tests of this file share the gateway's port 8080: one mesh at a time.
static GATEWAY_PORT: Mutex<()> = Mutex::new(());

/// Starts the bookinfo demo, detached, in a fresh state directory; returns once every proxy
/// is SYNCED and the page answers, with `weft up`'s output.
fn start_bookinfo(name: &str) -> (Mesh, String) {
    require_binaries();
    assert!(
        std::net::TcpListener::bind("0.0.0.0:8080").is_ok(),
        "port 8080 (bookinfo-gateway.yaml's server port) is taken on this machine"
    );
    let state_dir = std::env::temp_dir().join(format!("weft-up-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state_dir);
    let mesh = Mesh { state_dir };
    let out = mesh.run(&[
        "up",
        "--demo",
        "bookinfo",
        "-d",
        "--xds-port",
        "0",
        "--admin-port",
        "0",
        "--timeout",
        "30",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "weft up -d: {stdout}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        mesh.logs()
    );
    assert!(
        stdout.contains("http://127.0.0.1:8080/productpage"),
        "{stdout}"
    );
    (mesh, stdout)
}

#[test]
fn bookinfo_through_the_gateway() {
    let _port = GATEWAY_PORT.lock().unwrap_or_else(|e| e.into_inner());
    let (mesh, _) = start_bookinfo("bookinfo");

    // Status: what scripts need to drive the mesh.
    let status = mesh.status();
    assert_eq!(status["running"], true, "{status}");
    assert_eq!(status["phase"], "ready", "{status}");
    assert_eq!(status["mode"], "loopback");
    assert_eq!(status["gatewayUrl"], "http://127.0.0.1:8080", "{status}");
    assert!(status.get("dashboardUrl").is_some(), "{status}");
    assert!(status["readyAfterMs"].as_u64().is_some(), "{status}");
    let admin = status["controlPlane"]["admin"]
        .as_str()
        .expect("controlPlane.admin")
        .to_string();
    assert!(admin.starts_with("http://127.0.0.1:"), "{status}");
    assert!(
        status["controlPlane"]["xds"]
            .as_str()
            .is_some_and(|x| x.starts_with("127.0.0.1:"))
    );
    let workloads = status["workloads"].as_array().expect("workloads");
    let mut names: Vec<&str> = workloads
        .iter()
        .map(|w| w["name"].as_str().unwrap_or(""))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "details-v1",
            "productpage-v1",
            "ratings-v1",
            "reviews-v1",
            "reviews-v2",
            "reviews-v3"
        ]
    );
    for w in workloads
        .iter()
        .chain(status["gateways"].as_array().expect("gateways"))
    {
        assert_eq!(w["sync"], "SYNCED", "{w}");
        assert_eq!(w["proxyReady"], true, "{w}");
        let port = w["proxyAdminPort"].as_u64().expect("proxyAdminPort");
        let (code, _) = http_get(&format!("http://127.0.0.1:{port}"), "/ready", &[])
            .unwrap_or_else(|| panic!("proxy admin of {} answers", w["name"]));
        assert_eq!(code, 200);
    }
    let gateway = "http://127.0.0.1:8080";

    // No VirtualService for reviews: round robin over v1, v2, v3.
    let seen = versions(gateway, 30, &[]);
    for v in ["v1", "v2", "v3"] {
        assert!(seen.iter().any(|s| s == v), "{v} not seen in {seen:?}");
    }
    // The page shows the book, details and the JSON API works.
    let (code, page) = http_get(gateway, "/productpage", &[]).expect("page");
    assert_eq!(code, 200);
    assert!(page.contains("The Comedy of Errors"), "{page}");
    let (code, api) = http_get(gateway, "/api/v1/products/0/reviews", &[]).expect("api");
    assert_eq!(code, 200, "{api}");
    let api: Value = serde_json::from_str(&api).expect("reviews JSON");
    assert!(
        api["reviews"].as_array().is_some_and(|r| r.len() == 2),
        "{api}"
    );

    // Istio's task, step by step.
    apply(&mesh, &admin, "virtual-service-all-v1.yaml");
    wait_all(&mesh, gateway, "v1", &[]);
    apply(&mesh, &admin, "virtual-service-reviews-v3.yaml");
    wait_all(&mesh, gateway, "v3", &[]);
    apply(&mesh, &admin, "virtual-service-reviews-jason-v2-v3.yaml");
    // Signed in as jason (the session cookie; productpage sends end-user: jason) -> v2.
    wait_all(&mesh, gateway, "v2", &[("Cookie", "session=jason")]);
    wait_all(&mesh, gateway, "v3", &[]);

    // The supervisor heals a killed sidecar, app and control plane.
    let s = mesh.status();
    kill_and_wait_healed(&mesh, &workload_pointer(&s, "productpage-v1", "proxy"));
    wait_all(&mesh, gateway, "v2", &[("Cookie", "session=jason")]);
    kill_and_wait_healed(&mesh, &workload_pointer(&s, "reviews-v2", "app"));
    wait_all(&mesh, gateway, "v2", &[("Cookie", "session=jason")]);
    kill_and_wait_healed(&mesh, "/controlPlane/process");
    // The new control plane pushes a new change.
    apply(&mesh, &admin, "virtual-service-all-v1.yaml");
    wait_all(&mesh, gateway, "v1", &[("Cookie", "session=jason")]);

    // Down: nothing left running.
    let s = mesh.status();
    let mut pids = vec![s["supervisorPid"].as_u64().expect("supervisor pid")];
    pids.extend(pid_of(&s, "/controlPlane/process"));
    for w in s["workloads"].as_array().into_iter().flatten() {
        pids.extend(w["app"]["pid"].as_u64());
        pids.extend(w["proxy"]["pid"].as_u64());
    }
    for g in s["gateways"].as_array().into_iter().flatten() {
        pids.extend(g["proxy"]["pid"].as_u64());
    }
    assert_eq!(pids.len(), 1 + 1 + 12 + 1, "{s}");
    let out = mesh.run(&["down"]);
    assert!(out.status.success());
    let alive: Vec<u64> = pids.iter().copied().filter(|p| pid_alive(*p)).collect();
    assert!(alive.is_empty(), "still running after weft down: {alive:?}");
    assert!(!mesh.state_dir.join("state.json").exists());
    assert!(http_get(gateway, "/productpage", &[]).is_none());
    let out = mesh.run(&["status", "-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["running"], false);
}

#[test]
fn chromium_renders_the_productpage() {
    let _port = GATEWAY_PORT.lock().unwrap_or_else(|e| e.into_inner());
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("Debian's chromium is not installed (scripts/test.sh installs it: apt-get install chromium)");
    let (mesh, _) = start_bookinfo("chromium");
    let url = "http://127.0.0.1:8080/productpage";
    let profile = mesh.state_dir.join("chromium-profile");
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("weft-up-bookinfo-productpage.png");
    let _ = std::fs::remove_file(&shot);
    let headless = |extra: &[String]| {
        let out = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--window-size=1280,1400",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(url)
            .output()
            .expect("run chromium");
        assert!(
            out.status.success(),
            "chromium {extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let dom = headless(&["--dump-dom".to_string()]);
    assert!(dom.contains("<title>"), "{dom}");
    assert!(dom.contains("The Comedy of Errors"), "{dom}");
    assert!(dom.contains("Reviews served by: reviews-v"), "{dom}");
    assert!(dom.contains("Reviewer1"), "{dom}");
    assert!(dom.contains("Sign in"), "the login button: {dom}");
    headless(&[format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    assert!(png.len() > 10_000, "screenshot of {} bytes", png.len());
    eprintln!("screenshot: {}", shot.display());
}
