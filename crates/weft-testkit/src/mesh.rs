//! A mesh on loopback: `weft control-plane`, a `weft-proxy` sidecar per workload and an ingress
//! gateway, configured through the control plane's admin API with `weft apply -f`.
//!
//! Addressing (no traffic capture, `INTERCEPTION_MODE: NONE`): a mesh picks a free second
//! octet `x`; workload `n` is the WorkloadEntry at `127.x.1.n` (its sidecar's inbound listener
//! `127.x.1.n:9080`, sending to the workload's backend through the Sidecar's
//! `defaultEndpoint`), and its application calls other services through its sidecar's outbound
//! listeners bound at `127.x.2.n` (Sidecar `egress[].bind` with `captureMode: NONE`). Services
//! are bookinfo's own Kubernetes Services ([`Mesh::apply_bookinfo_platform`]) or else
//! ServiceEntries (`<app>.default.svc.cluster.local`, port 9080); either selects the
//! WorkloadEntries by `app`, and Istio's short host names (`reviews`) resolve as in Kubernetes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use weft_control::bootstrap::WorkloadBootstrap;

use crate::backend::{Backend, Behavior};
use crate::http::{self, Reply};
use crate::process::{Proc, binary, free_port};

/// The port every bookinfo service listens on.
pub const SERVICE_PORT: u16 = 9080;

/// How a mesh is started.
#[derive(Clone, Debug)]
pub struct MeshOptions {
    /// MeshConfig YAML, if any (e.g. `outboundTrafficPolicy: {mode: REGISTRY_ONLY}`).
    pub mesh_config: Option<String>,
    /// The control plane's debounce.
    pub debounce_ms: u64,
    /// Every other sidecar uses delta (incremental) xDS instead of state-of-the-world.
    pub delta: bool,
    /// More `weft control-plane` arguments (e.g. `--workload-entry-grace-period 2s`).
    pub control_plane_args: Vec<String>,
    /// Every sidecar gets a workload identity: a bootstrap token per workload from the
    /// control plane's admin API (`POST /ca/tokens`), the CA settings in its bootstrap, and a
    /// WorkloadEntry labelled `security.istio.io/tlsMode: istio`, so that sidecars talk mTLS.
    pub identity: bool,
    /// The service account of workload `app` is this prefix followed by `app`.
    pub service_account_prefix: String,
}

impl Default for MeshOptions {
    fn default() -> Self {
        MeshOptions {
            mesh_config: None,
            debounce_ms: 20,
            delta: true,
            control_plane_args: Vec::new(),
            identity: false,
            service_account_prefix: "bookinfo-".to_string(),
        }
    }
}

/// One workload: its backend and its sidecar.
#[derive(Debug)]
pub struct Workload {
    /// `app-version`, the WorkloadEntry's name.
    pub name: String,
    /// The `app` label (the service name).
    pub app: String,
    /// The `version` label.
    pub version: String,
    /// The workload IP (WorkloadEntry address, inbound listener).
    pub ip: String,
    /// Where its sidecar's outbound listeners are bound.
    pub egress_ip: String,
    /// The application.
    pub backend: Backend,
    /// The sidecar's admin address.
    pub admin: SocketAddr,
    /// The sidecar's node id.
    pub node_id: String,
    proxy: Proc,
}

impl Workload {
    /// The sidecar's outbound listener for `port`, which the application calls.
    pub fn egress(&self, port: u16) -> SocketAddr {
        SocketAddr::new(
            self.egress_ip.parse().unwrap_or([127, 0, 0, 1].into()),
            port,
        )
    }
}

/// The ingress gateway.
#[derive(Debug)]
pub struct Gateway {
    /// The address of its HTTP listener (Gateway server port 8080, mapped by the gateway
    /// service's `targetPort`).
    pub http: SocketAddr,
    /// Its admin address.
    pub admin: SocketAddr,
    /// Its node id.
    pub node_id: String,
    proxy: Proc,
}

/// A running mesh; every process is killed and every backend stopped when it is dropped.
pub struct Mesh {
    dir: PathBuf,
    net: u8,
    opts: MeshOptions,
    cp: Option<Proc>,
    /// The control plane's xDS address (kept across restarts).
    pub xds: SocketAddr,
    /// The control plane's admin API.
    pub admin: SocketAddr,
    /// The control plane's secure port (certificate service), when it serves one.
    pub secure: Option<SocketAddr>,
    workloads: BTreeMap<String, Workload>,
    gateway: Option<Gateway>,
    services: BTreeSet<String>,
    next_host: u8,
    applied: AtomicU32,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("dir", &self.dir)
            .field("xds", &self.xds)
            .field("admin", &self.admin)
            .finish()
    }
}

/// Picks a second octet for a mesh's 127.x.0.0/16 that no other mesh of this machine is using
/// (a lock file per octet in the temp directory, created exclusively).
fn claim_net() -> anyhow::Result<(u8, PathBuf)> {
    let base = std::env::temp_dir().join("weft-testkit");
    std::fs::create_dir_all(&base)?;
    let start = (std::process::id() as u64 ^ Instant::now().elapsed().as_nanos() as u64) % 200;
    for i in 0..200u64 {
        let net = 20 + ((start + i) % 200) as u8;
        let dir = base.join(format!("net-{net}"));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok((net, dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // A directory left by a killed test run: reuse it once it is old.
                let stale = std::fs::metadata(&dir)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > Duration::from_secs(600));
                if stale {
                    let _ = std::fs::remove_dir_all(&dir);
                    if std::fs::create_dir(&dir).is_ok() {
                        return Ok((net, dir));
                    }
                }
            }
            Err(e) => return Err(e).context("cannot create the mesh directory"),
        }
    }
    bail!("no free 127.x.0.0/16 block for a test mesh")
}

/// Reads the control plane's first stdout line (`weft control plane: xds A admin http://B`).
fn read_addresses(p: &mut Proc) -> anyhow::Result<(SocketAddr, SocketAddr, Option<SocketAddr>)> {
    let stdout = p
        .child_mut()
        .and_then(|c| c.stdout.take())
        .context("control plane stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(first)) = lines.next() {
            let _ = tx.send(first);
        }
        // Keep draining so that the process never blocks on a full pipe.
        for _ in lines {}
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| anyhow!("the control plane did not start:\n{}", p.log_tail(30)))?;
    let xds = line
        .split_whitespace()
        .skip_while(|w| *w != "xds")
        .nth(1)
        .context("no xds address")?;
    let secure = match line
        .split_whitespace()
        .skip_while(|w| *w != "secure")
        .nth(1)
    {
        Some(s) => Some(
            s.parse()
                .with_context(|| format!("secure address in {line:?}"))?,
        ),
        None => None,
    };
    let admin = line
        .rsplit("http://")
        .next()
        .context("no admin address")?
        .trim();
    Ok((
        xds.parse()
            .with_context(|| format!("xds address in {line:?}"))?,
        admin
            .parse()
            .with_context(|| format!("admin address in {line:?}"))?,
        secure,
    ))
}

impl Mesh {
    /// Starts the control plane on free ports with an empty config directory.
    pub async fn start(opts: MeshOptions) -> anyhow::Result<Mesh> {
        let (net, dir) = claim_net()?;
        for sub in ["config", "inputs", "logs"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let mut mesh = Mesh {
            dir,
            net,
            opts,
            cp: None,
            xds: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            secure: None,
            workloads: BTreeMap::new(),
            gateway: None,
            services: BTreeSet::new(),
            next_host: 1,
            applied: AtomicU32::new(0),
        };
        mesh.start_control_plane(false)?;
        Ok(mesh)
    }

    /// The mesh's working directory (config, inputs, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn start_control_plane(&mut self, same_ports: bool) -> anyhow::Result<()> {
        let mut cmd = Command::new(binary("weft")?);
        let (xds, admin) = if same_ports {
            (self.xds.to_string(), self.admin.to_string())
        } else {
            ("127.0.0.1:0".to_string(), "127.0.0.1:0".to_string())
        };
        cmd.arg("control-plane")
            .arg("--config-dir")
            .arg(self.dir.join("config"))
            .args(["--xds-addr", &xds, "--admin-addr", &admin])
            .args(["--debounce-ms", &self.opts.debounce_ms.to_string()])
            .args(["--poll-ms", "50"])
            .args(&self.opts.control_plane_args);
        if let Some(text) = &self.opts.mesh_config {
            let path = self.dir.join("mesh.yaml");
            std::fs::write(&path, text)?;
            cmd.arg("--mesh-config").arg(path);
        }
        let mut p = Proc::spawn(
            "weft control-plane",
            cmd,
            &self.dir.join("logs/control-plane.log"),
            true,
        )?;
        let (x, a, s) = read_addresses(&mut p)?;
        self.xds = x;
        self.admin = a;
        self.secure = s;
        self.cp = Some(p);
        Ok(())
    }

    /// Kills the control plane (SIGKILL): proxies keep their last configuration.
    pub fn kill_control_plane(&mut self) {
        if let Some(mut p) = self.cp.take() {
            p.kill();
        }
    }

    /// Starts the control plane again on the same xDS and admin addresses and the same config
    /// directory, and waits until every proxy has reconnected and is in sync.
    pub async fn restart_control_plane(&mut self) -> anyhow::Result<()> {
        self.kill_control_plane();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.start_control_plane(true) {
                Ok(()) => break,
                // The old sockets may linger for a moment.
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
        self.wait_synced().await
    }

    /// Runs `weft apply -f` with this YAML (written to a file in the mesh directory), then waits
    /// until every proxy has the result.
    pub async fn apply(&self, name: &str, yaml: &str) -> anyhow::Result<()> {
        let n = self.applied.fetch_add(1, Ordering::SeqCst);
        let path = self.dir.join("inputs").join(format!("{n:03}-{name}.yaml"));
        std::fs::write(&path, yaml)?;
        self.apply_file(&path).await
    }

    /// Runs `weft apply -f FILE` against the control plane, then waits until every proxy is in
    /// sync with the result.
    pub async fn apply_file(&self, path: &Path) -> anyhow::Result<()> {
        self.apply_file_nowait(path)?;
        self.wait_synced().await
    }

    /// Runs `weft apply -f FILE` without waiting for the push.
    pub fn apply_file_nowait(&self, path: &Path) -> anyhow::Result<()> {
        let out = Command::new(binary("weft")?)
            .arg("apply")
            .arg("-f")
            .arg(path)
            .arg("--control-plane")
            .arg(format!("http://{}", self.admin))
            .output()
            .context("cannot run weft apply")?;
        if !out.status.success() {
            bail!(
                "weft apply -f {} failed ({}): {}{}",
                path.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Runs `weft delete -f FILE` and waits for the push.
    pub async fn delete_file(&self, path: &Path) -> anyhow::Result<()> {
        let out = Command::new(binary("weft")?)
            .arg("delete")
            .arg("-f")
            .arg(path)
            .arg("--control-plane")
            .arg(format!("http://{}", self.admin))
            .output()
            .context("cannot run weft delete")?;
        if !out.status.success() {
            bail!(
                "weft delete -f {} failed: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.wait_synced().await
    }

    async fn admin_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let r = http::get(self.admin, "cp", path, &[], Duration::from_secs(5)).await?;
        if r.status != 200 {
            bail!("control plane {path}: {} {}", r.status, r.body);
        }
        serde_json::from_str(&r.body).with_context(|| format!("control plane {path}: {}", r.body))
    }

    fn proxy_count(&self) -> usize {
        self.workloads.len() + usize::from(self.gateway.is_some())
    }

    /// Waits until the control plane has pushed its latest revision and every proxy of the
    /// mesh shows SYNCED for CDS, LDS, EDS and RDS (as `weft proxy-status` shows them).
    pub async fn wait_synced(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut stable = 0;
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.sync_state().await {
                Ok(()) => {
                    // Twice in a row, so that a push that was being sent is seen too.
                    stable += 1;
                    if stable >= 2 {
                        return Ok(());
                    }
                }
                Err(e) => {
                    stable = 0;
                    last = e.to_string();
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!("proxies not in sync after 20 s: {last}\n{}", self.logs(20))
    }

    async fn sync_state(&self) -> anyhow::Result<()> {
        let status = self.admin_json("/status").await?;
        let rev = status["revision"].as_u64().unwrap_or(0);
        let pushed = status["pushed_revision"].as_u64().unwrap_or(0);
        if pushed < rev {
            bail!("revision {rev} not pushed yet (pushed {pushed})");
        }
        let proxies = self.admin_json("/proxies").await?;
        let list = proxies.as_array().cloned().unwrap_or_default();
        if list.len() < self.proxy_count() {
            bail!("{} of {} proxies connected", list.len(), self.proxy_count());
        }
        for p in &list {
            for t in ["cds", "lds", "eds", "rds"] {
                let state = p["types"][t]["state"].as_str().unwrap_or("");
                // RDS is NOT SENT for a proxy with no HTTP listener; CDS/LDS must be in sync.
                let ok = state == "SYNCED" || (t != "cds" && t != "lds" && state == "NOT SENT");
                if !ok {
                    bail!(
                        "{} {t} is {state} (nack: {})",
                        p["id"],
                        p["types"][t]["nack"]
                    );
                }
            }
        }
        Ok(())
    }

    /// The `GET /proxies` answer of the control plane (what `weft proxy-status` prints).
    pub async fn proxy_status(&self) -> anyhow::Result<serde_json::Value> {
        self.admin_json("/proxies").await
    }

    /// An address of this mesh's block: `127.x.block.host` (workloads use block 1 for their
    /// own address and block 2 for their sidecar's outbound listeners, hosts from 1 up; the
    /// gateway is host 250).
    pub fn ip(&self, block: u8, host: u8) -> String {
        format!("127.{}.{block}.{host}", self.net)
    }

    /// Applies bookinfo's own Kubernetes manifest (`platform/bookinfo.yaml`: Services,
    /// ServiceAccounts, Deployments) with `weft apply -f`: the workloads added afterwards join
    /// those Services (a Service selects WorkloadEntries by label) instead of getting
    /// ServiceEntries.
    pub async fn apply_bookinfo_platform(&mut self) -> anyhow::Result<()> {
        let path = conformance_dir()?.join("bookinfo/platform/bookinfo.yaml");
        self.apply_file(&path).await?;
        for app in ["productpage", "details", "reviews", "ratings"] {
            self.services.insert(app.to_string());
        }
        Ok(())
    }

    /// Adds workloads (`app`, `version`, behaviour): a backend each, their WorkloadEntry,
    /// ServiceEntry (once per app) and Sidecar through `weft apply`, and a sidecar process each;
    /// returns when every proxy is ready and in sync.
    pub async fn add_workloads(&mut self, specs: &[(&str, &str, Behavior)]) -> anyhow::Result<()> {
        let mut docs = Vec::new();
        let mut pending = Vec::new();
        for (app, version, behavior) in specs {
            let name = format!("{app}-{version}");
            let host = self.next_host;
            self.next_host = self
                .next_host
                .checked_add(1)
                .context("too many workloads")?;
            let ip = self.ip(1, host);
            let egress_ip = self.ip(2, host);
            let egress_addr = SocketAddr::new(egress_ip.parse()?, SERVICE_PORT);
            let backend = Backend::start_with_sidecar(&name, *behavior, Some(egress_addr)).await?;
            let sa = format!("{}{app}", self.opts.service_account_prefix);
            let tls_label = if self.opts.identity {
                ", security.istio.io/tlsMode: istio"
            } else {
                ""
            };
            if self.services.insert(app.to_string()) {
                docs.push(format!(
                    "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {app}, namespace: default}}
spec:
  hosts: [{app}.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {SERVICE_PORT}, name: http, protocol: HTTP}}]
  workloadSelector: {{labels: {{app: {app}}}}}
"
                ));
            }
            docs.push(format!(
                "apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: default}}
spec:
  address: {ip}
  serviceAccount: {sa}
  labels: {{app: {app}, version: {version}{tls_label}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: {name}, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: {app}, version: {version}}}}}
  ingress:
  - port: {{number: {SERVICE_PORT}, protocol: HTTP, name: http}}
    defaultEndpoint: {}
  egress:
  - bind: {egress_ip}
    captureMode: NONE
    hosts: [\"./*\"]
",
                backend.addr,
            ));
            pending.push((
                name,
                app.to_string(),
                version.to_string(),
                ip,
                egress_ip,
                backend,
            ));
        }
        self.apply("workloads", &docs.join("---\n")).await?;
        for (name, app, version, ip, egress_ip, backend) in pending {
            let mut labels = BTreeMap::new();
            labels.insert("app".to_string(), app.clone());
            labels.insert("version".to_string(), version.clone());
            let mut b = WorkloadBootstrap::sidecar(&name, "default", &ip)
                .labels(labels)
                .xds(self.xds);
            b.service_account = format!("{}{app}", self.opts.service_account_prefix);
            b.backoff_ms = (50, 500);
            if self.opts.identity {
                let ca = self.ca_settings(&name, &b.service_account).await?;
                b = b.ca(ca);
            }
            // Every other sidecar speaks delta xDS, so both protocols run end to end.
            b.delta = self.opts.delta && self.workloads.len() % 2 == 1;
            let (proxy, admin) = self.start_proxy(&name, b.clone())?;
            self.workloads.insert(
                name.clone(),
                Workload {
                    name,
                    app,
                    version,
                    ip,
                    egress_ip,
                    backend,
                    admin,
                    node_id: b.node_id(),
                    proxy,
                },
            );
        }
        for w in self.workloads.values() {
            wait_ready(w.admin, &w.proxy).await?;
        }
        self.wait_synced().await
    }

    /// Adds the ingress gateway: a `router` proxy labelled `istio: ingressgateway` in
    /// istio-system, and the gateway service that maps the Gateway server port 8080 to a free
    /// port (`targetPort`), where the gateway's listener binds.
    pub async fn add_ingress_gateway(&mut self) -> anyhow::Result<SocketAddr> {
        let ip = self.ip(1, 250);
        let port = free_port()?;
        let yaml = format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: istio-ingressgateway, namespace: istio-system}}
spec:
  hosts: [istio-ingressgateway.istio-system.svc.cluster.local]
  exportTo: [\".\"]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 8080, name: http2, protocol: HTTP, targetPort: {port}}}]
  workloadSelector: {{labels: {{istio: ingressgateway}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: istio-ingressgateway, namespace: istio-system}}
spec:
  address: {ip}
  labels: {{istio: ingressgateway, app: istio-ingressgateway}}
  serviceAccount: istio-ingressgateway-service-account
"
        );
        self.apply("ingress-gateway", &yaml).await?;
        let mut labels = BTreeMap::new();
        labels.insert("istio".to_string(), "ingressgateway".to_string());
        labels.insert("app".to_string(), "istio-ingressgateway".to_string());
        let mut b = WorkloadBootstrap::gateway("istio-ingressgateway", "istio-system", &ip)
            .labels(labels)
            .xds(self.xds);
        b.service_account = "istio-ingressgateway-service-account".to_string();
        b.backoff_ms = (50, 500);
        let (proxy, admin) = self.start_proxy("istio-ingressgateway", b.clone())?;
        wait_ready(admin, &proxy).await?;
        let http = SocketAddr::from(([127, 0, 0, 1], port));
        self.gateway = Some(Gateway {
            http,
            admin,
            node_id: b.node_id(),
            proxy,
        });
        self.wait_synced().await?;
        Ok(http)
    }

    /// The CA settings of a sidecar: the control plane's secure port, its root (`GET
    /// /ca/root`) and a fresh bootstrap token for `default/<service_account>` (`POST
    /// /ca/tokens`), written to files in the mesh directory.
    async fn ca_settings(
        &self,
        name: &str,
        service_account: &str,
    ) -> anyhow::Result<weft_control::bootstrap::CaSettings> {
        let addr = self
            .secure
            .context("the control plane serves no secure port (certificate service)")?;
        let root = http::get(self.admin, "cp", "/ca/root", &[], Duration::from_secs(5)).await?;
        if root.status != 200 || !root.body.contains("BEGIN CERTIFICATE") {
            bail!("control plane /ca/root: {} {}", root.status, root.body);
        }
        let root_cert = self.dir.join("root-cert.pem");
        std::fs::write(&root_cert, &root.body)?;
        let body = serde_json::json!({"namespace": "default", "serviceAccount": service_account});
        let r = http::post(
            self.admin,
            "cp",
            "/ca/tokens",
            &body.to_string(),
            Duration::from_secs(5),
        )
        .await?;
        if r.status != 200 {
            bail!("control plane /ca/tokens: {} {}", r.status, r.body);
        }
        let answer: serde_json::Value =
            serde_json::from_str(&r.body).with_context(|| format!("/ca/tokens: {}", r.body))?;
        let token = answer["token"]
            .as_str()
            .with_context(|| format!("/ca/tokens answered no token: {}", r.body))?;
        let token_file = self.dir.join(format!("{name}.token"));
        std::fs::write(&token_file, token)?;
        Ok(weft_control::bootstrap::CaSettings {
            addr,
            root_cert,
            token_file: Some(token_file),
        })
    }

    fn start_proxy(&self, name: &str, b: WorkloadBootstrap) -> anyhow::Result<(Proc, SocketAddr)> {
        let port = free_port()?;
        let b = b.admin_port(port);
        let path = self.dir.join(format!("{name}.bootstrap.yaml"));
        std::fs::write(&path, b.to_yaml()?)?;
        let mut cmd = Command::new(binary("weft-proxy")?);
        cmd.arg("-c")
            .arg(&path)
            .args(["--concurrency", "1", "-l", "info"]);
        let p = Proc::spawn(name, cmd, &self.dir.join(format!("logs/{name}.log")), false)?;
        Ok((p, b.admin_addr))
    }

    /// A workload by name (`reviews-v1`).
    pub fn workload(&self, name: &str) -> &Workload {
        match self.workloads.get(name) {
            Some(w) => w,
            None => panic!("no workload {name} in this mesh"),
        }
    }

    /// Every workload.
    pub fn workloads(&self) -> impl Iterator<Item = &Workload> {
        self.workloads.values()
    }

    /// The ingress gateway, once added.
    pub fn gateway(&self) -> Option<&Gateway> {
        self.gateway.as_ref()
    }

    /// Calls `host:9080` from workload `from` through its sidecar.
    pub async fn call(
        &self,
        from: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        let w = self.workload(from);
        http::get(
            w.egress(SERVICE_PORT),
            &format!("{host}:{SERVICE_PORT}"),
            path,
            headers,
            Duration::from_secs(5),
        )
        .await
    }

    /// Calls `host:9080` from `from` `n` times (`concurrency` at once) and counts the answers
    /// by `status body`.
    pub async fn tally(
        &self,
        from: &str,
        host: &str,
        n: usize,
        concurrency: usize,
    ) -> anyhow::Result<BTreeMap<String, usize>> {
        let addr = self.workload(from).egress(SERVICE_PORT);
        let authority = format!("{host}:{SERVICE_PORT}");
        let per = n.div_ceil(concurrency.max(1));
        let mut tasks = Vec::new();
        for i in 0..concurrency.max(1) {
            let count = per.min(n.saturating_sub(i * per));
            let authority = authority.clone();
            tasks.push(tokio::spawn(async move {
                let mut out: BTreeMap<String, usize> = BTreeMap::new();
                for _ in 0..count {
                    let r = http::get(addr, &authority, "/", &[], Duration::from_secs(5)).await?;
                    *out.entry(format!("{} {}", r.status, r.body)).or_default() += 1;
                }
                anyhow::Ok(out)
            }));
        }
        let mut total = BTreeMap::new();
        for t in tasks {
            for (k, v) in t.await.context("tally task")?? {
                *total.entry(k).or_default() += v;
            }
        }
        Ok(total)
    }

    /// The tails of every log, for failure messages.
    pub fn logs(&self, lines: usize) -> String {
        let mut out = Vec::new();
        if let Some(cp) = &self.cp {
            out.push(cp.log_tail(lines));
        }
        for w in self.workloads.values() {
            out.push(w.proxy.log_tail(lines));
        }
        if let Some(g) = &self.gateway {
            out.push(g.proxy.log_tail(lines));
        }
        out.join("\n")
    }
}

/// Waits until a proxy's `/ready` says LIVE.
async fn wait_ready(admin: SocketAddr, p: &Proc) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(r) = http::get(admin, "admin", "/ready", &[], Duration::from_secs(1)).await
            && r.status == 200
            && r.body.trim() == "LIVE"
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err(anyhow!("proxy not ready after 20 s:\n{}", p.log_tail(30)))
}

/// Polls `check` until it returns `Ok`, for at most `within`; the last error otherwise.
pub async fn eventually<F, Fut, T>(within: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("still failing after {within:?}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        for w in self.workloads.values_mut() {
            w.proxy.kill();
        }
        if let Some(g) = &mut self.gateway {
            g.proxy.kill();
        }
        self.kill_control_plane();
        if std::env::var_os("WEFT_TESTKIT_KEEP").is_some() {
            eprintln!("mesh files kept in {}", self.dir.display());
        } else if std::thread::panicking() {
            eprintln!("mesh files kept in {}", self.dir.display());
            // Release the address block anyway: the directory is renamed, not reused.
            let _ = std::fs::rename(
                &self.dir,
                self.dir
                    .with_extension(format!("failed-{}", std::process::id())),
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Istio's conformance data: `$WEFT_CONFORMANCE_DIR`, else `../shared/conformance/istio` next
/// to the repository. Missing data is an error (tests fail, never skip).
pub fn conformance_dir() -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("WEFT_CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/istio"),
    };
    if !dir.is_dir() {
        bail!(
            "Istio conformance data not found at {} (set WEFT_CONFORMANCE_DIR)",
            dir.display()
        );
    }
    Ok(dir)
}

/// A bookinfo file from the conformance data (`networking/virtual-service-all-v1.yaml`).
pub fn bookinfo_file(name: &str) -> anyhow::Result<PathBuf> {
    let path = conformance_dir()?.join("bookinfo/networking").join(name);
    if !path.is_file() {
        bail!("bookinfo file {} is missing", path.display());
    }
    Ok(path)
}

/// The bookinfo workloads: productpage-v1 (which calls reviews through its sidecar, passing
/// `end-user` on), details-v1, reviews-v1/v2/v3 and ratings-v1, answering 200 with their name.
pub const BOOKINFO: &[(&str, &str, Behavior)] = &[
    ("productpage", "v1", Behavior::Calls("reviews")),
    ("details", "v1", Behavior::Ok),
    ("reviews", "v1", Behavior::Ok),
    ("reviews", "v2", Behavior::Ok),
    ("reviews", "v3", Behavior::Ok),
    ("ratings", "v1", Behavior::Ok),
];
