//! The state directory of a running mesh: `state.json` (what runs, its PIDs and ports; what
//! `weft status` and `weft down` read), `logs/NAME.log` (one per process, appended across
//! restarts), `config/` (the control plane's config store) and `bootstrap/` (proxy bootstraps).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::plan::{GatewayPlan, WorkloadPlan};

/// Where the state directory is when `--state-dir` is not given: `$WEFT_STATE_DIR`, else
/// `$XDG_STATE_HOME/weft/up`, else `~/.local/state/weft/up`, else `.weft/up`.
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WEFT_STATE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("weft").join("up");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(h).join(".local/state/weft/up");
    }
    PathBuf::from(".weft/up")
}

/// Paths inside a state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    /// The directory.
    pub root: PathBuf,
}

impl StateDir {
    /// The state directory at `root` (not created).
    pub fn new(root: PathBuf) -> StateDir {
        // Absolute, so that children started elsewhere and `weft down` agree.
        let root = std::path::absolute(&root).unwrap_or(root);
        StateDir { root }
    }

    /// `state.json`.
    pub fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }

    /// `logs/`.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// `config/`: the control plane's config store.
    pub fn config(&self) -> PathBuf {
        self.root.join("config")
    }

    /// `bootstrap/`.
    pub fn bootstrap(&self) -> PathBuf {
        self.root.join("bootstrap")
    }

    /// The log of one process.
    pub fn log(&self, name: &str) -> PathBuf {
        self.logs().join(format!("{name}.log"))
    }

    /// Reads `state.json`; `None` when there is none.
    pub fn read(&self) -> anyhow::Result<Option<State>> {
        let path = self.state_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display())),
        };
        let state = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: not a weft up state file: {e}", path.display()))?;
        Ok(Some(state))
    }

    /// Writes `state.json` atomically (temporary file, then rename).
    pub fn write(&self, state: &State) -> std::io::Result<()> {
        let path = self.state_file();
        let tmp = self.root.join(".state.json.tmp");
        let text = serde_json::to_string_pretty(state).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text + "\n")?;
        std::fs::rename(&tmp, &path)
    }

    /// Removes `state.json`.
    pub fn remove(&self) {
        let _ = std::fs::remove_file(self.state_file());
    }
}

/// The phase of the mesh.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Processes started; not every proxy synced or the gateway not answering yet.
    Starting,
    /// Every proxy SYNCED and the gateway answering.
    Ready,
    /// Shutting down.
    Stopping,
    /// Start-up failed (see the logs).
    Failed,
}

/// What a process is.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ProcessKind {
    /// `weft control-plane`.
    ControlPlane,
    /// A workload's sidecar.
    Sidecar,
    /// A gateway.
    Gateway,
    /// A workload's app.
    App,
}

/// One supervised process.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProcessState {
    /// Unique name (`control-plane`, `NAME-proxy`, `NAME-app`, gateway name).
    pub name: String,
    /// What it is.
    pub kind: ProcessKind,
    /// The workload or gateway it belongs to.
    pub workload: Option<String>,
    /// Its PID while it runs.
    pub pid: Option<u32>,
    /// How many times it was restarted.
    pub restarts: u32,
    /// Its log file.
    pub log: PathBuf,
    /// Its command line.
    pub command: Vec<String>,
}

/// The control plane's addresses.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlaneState {
    /// ADS (gRPC) `host:port`.
    pub xds: String,
    /// Admin API URL (what `weft apply --control-plane` takes).
    pub admin: String,
    /// The config store directory.
    pub config_dir: PathBuf,
}

/// `state.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// PID of the supervising `weft up`.
    pub supervisor_pid: u32,
    /// `loopback`.
    pub mode: String,
    /// The phase.
    pub phase: Phase,
    /// The state directory.
    pub state_dir: PathBuf,
    /// When the supervisor started (Unix milliseconds).
    pub started_at_ms: u64,
    /// Milliseconds from start to ready (every proxy SYNCED, the gateway answering).
    pub ready_after_ms: Option<u64>,
    /// The ingress gateway's URL, when a gateway serves HTTP.
    pub gateway_url: Option<String>,
    /// The dashboard's URL (none yet: weft has no dashboard to serve).
    pub dashboard_url: Option<String>,
    /// The control plane.
    pub control_plane: ControlPlaneState,
    /// The workloads.
    pub workloads: Vec<WorkloadPlan>,
    /// The gateways.
    pub gateways: Vec<GatewayPlan>,
    /// Every supervised process.
    pub processes: Vec<ProcessState>,
    /// Why start-up failed, when it did.
    pub error: Option<String>,
    /// The namespaces and bridge made (namespaces mode).
    #[serde(default)]
    pub network: Option<super::netns::Network>,
    /// A directory every user can read (namespaces mode: the proxy binary and bootstraps for
    /// the proxies' uid); removed at shutdown.
    #[serde(default)]
    pub runtime_dir: Option<PathBuf>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Whether a process with this PID exists (signal 0).
pub fn alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    if rustix::process::test_kill_process(pid).is_err() {
        return false;
    }
    // A zombie (exited, not yet reaped) is not running.
    match std::fs::read_to_string(format!("/proc/{pid}/stat", pid = pid.as_raw_nonzero())) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => true,
    }
}

/// Sends a signal to a PID; false if there is no such process.
pub fn signal(pid: u32, sig: rustix::process::Signal) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    rustix::process::kill_process(pid, sig).is_ok()
}

/// Whether the process `pid` runs one of the programs of `command` (guards against a reused
/// PID; `ip netns exec NS setpriv ... PROGRAM` ends up as PROGRAM).
pub fn runs(pid: u32, command: &[String]) -> bool {
    let base = |p: &str| {
        Path::new(p)
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
    };
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(bytes) => {
            let argv0 = bytes.split(|b| *b == 0).next().unwrap_or(&[]);
            let argv0 = base(&String::from_utf8_lossy(argv0));
            !argv0.is_empty() && command.iter().any(|c| base(c) == argv0)
        }
        // No /proc: trust the PID.
        Err(_) => alive(pid),
    }
}
