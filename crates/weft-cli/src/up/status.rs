//! `weft status`: what runs, where, whether each proxy is ready and SYNCED; and the readiness
//! check `weft up` waits on.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use weft_control::server::admin::ProxyInfo;
use weft_control::server::client::AdminClient;

use super::state::{self, State};

/// Arguments of `weft status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// State directory of the mesh.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Output: `table` (default) or `json`.
    #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
    pub output: String,
}

const PROBE: Duration = Duration::from_secs(1);

async fn get(url: &str, path: &str) -> Option<(u16, String)> {
    let client = AdminClient::new(url).ok()?;
    match tokio::time::timeout(PROBE, client.get(path)).await {
        Ok(Ok(a)) => Some((a.status, a.body)),
        _ => None,
    }
}

/// The control plane's view of the proxies.
async fn proxies(admin_url: &str) -> Option<Vec<ProxyInfo>> {
    let (code, body) = get(admin_url, "/proxies").await?;
    if code != 200 {
        return None;
    }
    serde_json::from_str(&body).ok()
}

/// A proxy's sync state: `SYNCED` when every type sent is acknowledged, else the first other
/// state, `NOT CONNECTED` when the control plane does not know it.
fn sync_state(list: &[ProxyInfo], node_id: &str) -> String {
    let Some(p) = list.iter().find(|p| p.id == node_id) else {
        return "NOT CONNECTED".into();
    };
    for t in ["cds", "lds"] {
        match p.types.get(t) {
            Some(s) if s.state == "SYNCED" => {}
            Some(s) => return format!("{} {}", t.to_uppercase(), s.state),
            None => return format!("{} NOT SENT", t.to_uppercase()),
        }
    }
    for (t, s) in &p.types {
        if s.state != "SYNCED" && s.state != "NOT SENT" {
            return format!("{} {}", t.to_uppercase(), s.state);
        }
    }
    "SYNCED".into()
}

async fn proxy_ready(admin: SocketAddr) -> bool {
    matches!(
        get(&format!("http://{admin}"), "/ready").await,
        Some((200, _))
    )
}

/// `Ok` when the control plane answers, every node is SYNCED and its proxy ready, and the
/// gateway answers `probe_path` (2xx for `/productpage`); else what is missing.
pub async fn readiness(
    admin_url: &str,
    nodes: &[(String, SocketAddr)],
    gateway_url: Option<&str>,
    probe_path: &str,
) -> Result<(), String> {
    let list = proxies(admin_url)
        .await
        .ok_or_else(|| format!("the control plane at {admin_url} is not answering"))?;
    for (id, port) in nodes {
        let s = sync_state(&list, id);
        if s != "SYNCED" {
            return Err(format!("proxy {id}: {s}"));
        }
        if !proxy_ready(*port).await {
            return Err(format!("proxy {id}: /ready on {port} is not 200"));
        }
    }
    if let Some(url) = gateway_url {
        match get(url, probe_path).await {
            Some((code, _)) if probe_path == "/" || (200..300).contains(&code) => {}
            Some((code, _)) => return Err(format!("the gateway answers {probe_path} with {code}")),
            None => return Err(format!("the gateway at {url} is not answering")),
        }
    }
    Ok(())
}

/// The live status of a mesh, as `weft status -o json` prints it.
pub async fn live_status(s: &State) -> Value {
    let supervisor = state::alive(s.supervisor_pid);
    let list = proxies(&s.control_plane.admin).await;
    let process = |name: &str| s.processes.iter().find(|p| p.name == name);
    let proc_json = |name: &str| {
        process(name).map(|p| {
            json!({
                "pid": p.pid,
                "running": p.pid.map(state::alive).unwrap_or(false),
                "restarts": p.restarts,
                "log": p.log,
            })
        })
    };
    let mut workloads = Vec::new();
    for w in &s.workloads {
        let id = w.node_id();
        workloads.push(json!({
            "name": w.name,
            "namespace": w.namespace,
            "service": w.service,
            "labels": w.labels,
            "serviceAccount": w.service_account,
            "address": w.ip.to_string(),
            "outboundAddress": w.outbound_ip.to_string(),
            "ports": w.ports,
            "nodeId": id,
            "proxyAdmin": format!("http://{}:{}", w.admin_ip, w.proxy_admin_port),
            "proxyAdminPort": w.proxy_admin_port,
            "proxyReady": proxy_ready(SocketAddr::from((w.admin_ip, w.proxy_admin_port))).await,
            "netns": w.netns,
            "sync": list.as_ref().map(|l| sync_state(l, &id)),
            "app": proc_json(&format!("{}-app", w.name)),
            "proxy": proc_json(&format!("{}-proxy", w.name)),
        }));
    }
    let mut gateways = Vec::new();
    for g in &s.gateways {
        let id = g.node_id();
        gateways.push(json!({
            "name": g.name,
            "namespace": g.namespace,
            "labels": g.labels,
            "nodeId": id,
            "proxyAdmin": format!("http://127.0.0.1:{}", g.proxy_admin_port),
            "proxyAdminPort": g.proxy_admin_port,
            "proxyReady": proxy_ready(SocketAddr::from(([127, 0, 0, 1], g.proxy_admin_port))).await,
            "sync": list.as_ref().map(|l| sync_state(l, &id)),
            "proxy": proc_json(&g.name),
        }));
    }
    json!({
        "running": supervisor,
        "phase": s.phase,
        "mode": s.mode,
        "supervisorPid": s.supervisor_pid,
        "stateDir": s.state_dir,
        "readyAfterMs": s.ready_after_ms,
        "gatewayUrl": s.gateway_url,
        "dashboardUrl": s.dashboard_url,
        "controlPlane": {
            "xds": s.control_plane.xds,
            "admin": s.control_plane.admin,
            "configDir": s.control_plane.config_dir,
            "answering": list.is_some(),
            "process": proc_json("control-plane"),
        },
        "workloads": workloads,
        "gateways": gateways,
        "error": s.error,
        "network": s.network,
    })
}

/// `weft status`.
pub fn status(args: StatusArgs) -> anyhow::Result<u8> {
    let dir = super::state_dir(&args.state_dir);
    let Some(s) = dir.read()? else {
        if args.output == "json" {
            println!("{}", json!({ "running": false, "stateDir": dir.root }));
        } else {
            println!("no mesh running from {}", dir.root.display());
        }
        return Ok(1);
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let v = rt.block_on(live_status(&s));
    if args.output == "json" {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(if v["running"] == true { 0 } else { 1 });
    }
    let running = v["running"] == true;
    println!(
        "weft mesh: {} ({} mode, {}), state {}",
        if running {
            "running"
        } else {
            "NOT RUNNING (supervisor gone; run weft down)"
        },
        s.mode,
        serde_json::to_string(&s.phase)
            .unwrap_or_default()
            .trim_matches('"'),
        s.state_dir.display()
    );
    if let Some(u) = &s.gateway_url {
        println!("gateway:        {u}");
    }
    println!(
        "control plane:  admin {} xds {} ({})",
        s.control_plane.admin,
        s.control_plane.xds,
        if v["controlPlane"]["answering"] == true {
            "answering"
        } else {
            "NOT ANSWERING"
        }
    );
    println!(
        "dashboard:      {}",
        s.dashboard_url.as_deref().unwrap_or("(not available yet)")
    );
    let headers = [
        "NAME",
        "ADDRESS",
        "APP PID",
        "PROXY PID",
        "RESTARTS",
        "PROXY ADMIN",
        "READY",
        "SYNC",
    ];
    let mut rows: Vec<Vec<String>> = Vec::new();
    let pid = |p: &Value| {
        if p["running"] == true {
            p["pid"].to_string()
        } else {
            "-".into()
        }
    };
    let restarts = |a: &Value, b: &Value| {
        (a["restarts"].as_u64().unwrap_or(0) + b["restarts"].as_u64().unwrap_or(0)).to_string()
    };
    for w in v["workloads"].as_array().into_iter().flatten() {
        rows.push(vec![
            w["name"].as_str().unwrap_or("").into(),
            w["address"].as_str().unwrap_or("").into(),
            pid(&w["app"]),
            pid(&w["proxy"]),
            restarts(&w["app"], &w["proxy"]),
            w["proxyAdmin"].as_str().unwrap_or("").into(),
            w["proxyReady"].to_string(),
            w["sync"].as_str().unwrap_or("-").into(),
        ]);
    }
    for g in v["gateways"].as_array().into_iter().flatten() {
        rows.push(vec![
            g["name"].as_str().unwrap_or("").into(),
            "-".into(),
            "-".into(),
            pid(&g["proxy"]),
            restarts(&g["proxy"], &Value::Null),
            g["proxyAdmin"].as_str().unwrap_or("").into(),
            g["proxyReady"].to_string(),
            g["sync"].as_str().unwrap_or("-").into(),
        ]);
    }
    crate::table::print(&headers, &rows);
    Ok(if running { 0 } else { 1 })
}
