//! `weft up`, `weft down`, `weft status`: a whole mesh on one machine.
//!
//! `weft up` is a supervisor: it starts `weft control-plane` on a config directory in the state
//! directory, then every workload's app and its `weft-proxy` sidecar, and the gateways, keeps
//! them running (restart with back-off), and stops them all on Ctrl-C or SIGTERM. With `-d` it
//! starts itself in the background and returns once the mesh is ready. `weft down` signals the
//! supervisor and removes what is left; `weft status` reads `state.json` and asks the control
//! plane and the proxies how they are.
//!
//! Loopback mode: see [`plan`] for the addresses; [`spec`] for `weft.yaml`.

pub mod netns;
pub mod plan;
pub mod spec;
pub mod state;
pub mod supervisor;

mod bootstrap;
mod status;

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use weft_config::Spec;

use plan::{GatewayPlan, Mode, WorkloadPlan};
use spec::MeshSpec;
use state::{ControlPlaneState, Phase, ProcessKind, ProcessState, State, StateDir};
use supervisor::{ChildSpec, Group, Shared};

pub use status::{StatusArgs, status};

/// The demos `weft up --demo` knows.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Demo {
    /// Istio's bookinfo: productpage, details, reviews v1/v2/v3, ratings, an ingress gateway.
    Bookinfo,
}

/// Arguments of `weft up`.
#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// A directory of Istio YAML with a `weft.yaml` declaring the workloads to run.
    pub dir: Option<PathBuf>,
    /// Istio YAML files (a file named `weft.yaml` declares the workloads).
    #[arg(short = 'f', long = "filename", num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Run a demo mesh.
    #[arg(long, value_enum)]
    pub demo: Option<Demo>,
    /// Where bookinfo's networking YAML is (default: `$WEFT_CONFORMANCE_DIR/bookinfo/networking`,
    /// else `../shared/conformance/istio/bookinfo/networking` from the repository).
    #[arg(long)]
    pub bookinfo_dir: Option<PathBuf>,
    /// Start in the background and return once the mesh is ready.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// `loopback` (any user) or `namespaces` (root on Linux: a network namespace per workload,
    /// iptables capture).
    #[arg(long, value_enum, default_value = "loopback")]
    pub mode: Mode,
    /// State directory: state.json, logs, config store (default `$WEFT_STATE_DIR`, else
    /// `~/.local/state/weft/up`).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Port of the control plane's xDS server (default 15010 when free; 0: any free port).
    #[arg(long)]
    pub xds_port: Option<u16>,
    /// Port of the control plane's admin API (default 15014 when free; 0: any free port).
    #[arg(long)]
    pub admin_port: Option<u16>,
    /// How long to wait for the mesh to be ready, in seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Internal: the background supervisor of `-d`.
    #[arg(long, hide = true)]
    pub supervise: bool,
}

/// Arguments of `weft down`.
#[derive(clap::Args, Debug)]
pub struct DownArgs {
    /// State directory of the mesh to stop.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

fn state_dir(arg: &Option<PathBuf>) -> StateDir {
    StateDir::new(arg.clone().unwrap_or_else(state::default_dir))
}

/// A program beside the running `weft`, else on `PATH`.
pub fn find_program(name: &str) -> anyhow::Result<PathBuf> {
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    bail!(
        "{name} not found beside weft or on PATH (build it: cargo build --bins, or install it next to weft)"
    )
}

/// The inputs of `weft up`: Istio YAML files to load and the workloads to run.
struct Inputs {
    files: Vec<PathBuf>,
    spec: MeshSpec,
    /// Path the gateway answers on when ready (`/productpage` for bookinfo).
    probe_path: String,
}

fn bookinfo_dir(arg: &Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(d) = arg {
        candidates.push(d.clone());
    }
    if let Some(d) = std::env::var_os("WEFT_CONFORMANCE_DIR") {
        candidates.push(PathBuf::from(d).join("bookinfo/networking"));
    }
    // From the repository: target/<profile>/weft -> <repo>/../shared/...
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1) {
            candidates.push(dir.join("../shared/conformance/istio/bookinfo/networking"));
            if dir.join("Cargo.toml").is_file() {
                break;
            }
        }
    }
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            candidates.push(dir.join("../shared/conformance/istio/bookinfo/networking"));
        }
    }
    if arg.is_some() {
        candidates.truncate(1);
    }
    candidates
        .into_iter()
        .find(|d| d.join(spec::BOOKINFO_FILES[0]).is_file())
        .and_then(|d| std::path::absolute(&d).ok())
        .with_context(|| {
            format!(
                "bookinfo's networking YAML ({}) not found: pass --bookinfo-dir DIR or set WEFT_CONFORMANCE_DIR",
                spec::BOOKINFO_FILES[0]
            )
        })
}

fn inputs(args: &UpArgs) -> anyhow::Result<Inputs> {
    if let Some(Demo::Bookinfo) = args.demo {
        if args.dir.is_some() || !args.files.is_empty() {
            bail!("--demo runs its own config; give either --demo or DIR/-f FILES");
        }
        let dir = bookinfo_dir(&args.bookinfo_dir)?;
        return Ok(Inputs {
            files: spec::BOOKINFO_FILES.iter().map(|f| dir.join(f)).collect(),
            spec: MeshSpec::parse(spec::BOOKINFO, "the bookinfo demo")?,
            probe_path: "/productpage".to_string(),
        });
    }
    let mut files = Vec::new();
    let mut workload_file = None;
    if let Some(dir) = &args.dir {
        if !dir.is_dir() {
            bail!(
                "{}: not a directory (weft up DIR | -f FILES | --demo bookinfo)",
                dir.display()
            );
        }
        for input in crate::files::collect(std::slice::from_ref(dir), false)? {
            if let crate::files::Input::File(p) = input {
                files.push(p);
            }
        }
    }
    for f in &args.files {
        if !f.is_file() {
            bail!("{}: no such file", f.display());
        }
        files.push(f.clone());
    }
    files.retain(|f| {
        if f.file_name().and_then(|n| n.to_str()) == Some(spec::WORKLOADS_FILE) {
            workload_file = Some(f.clone());
            false
        } else {
            true
        }
    });
    if args.dir.is_none() && args.files.is_empty() {
        bail!("nothing to run: give a directory with a weft.yaml, -f FILES, or --demo bookinfo");
    }
    let spec = match workload_file {
        Some(p) => MeshSpec::read(&p)?,
        None => bail!(
            "no {} among the inputs: declare the workloads to run there (see `weft up --help` and the README)",
            spec::WORKLOADS_FILE
        ),
    };
    Ok(Inputs {
        files,
        spec,
        probe_path: "/".to_string(),
    })
}

/// Reads the config files, failing on any parse or validation error (named by file and field).
fn check_config(files: &[PathBuf]) -> anyhow::Result<Vec<weft_config::Resource>> {
    let mut resources = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        let parsed = weft_config::parse_file(f);
        errors.extend(parsed.diagnostics.iter().map(|d| d.to_string()));
        for r in parsed.resources {
            for d in weft_config::validate::validate_resource(&r) {
                if d.severity == weft_config::Severity::Error {
                    errors.push(d.to_string());
                }
            }
            resources.push(r);
        }
    }
    if !errors.is_empty() {
        bail!("the config has errors:\n  {}", errors.join("\n  "));
    }
    Ok(resources)
}

/// The gateway URL: the first HTTP server port of a Gateway that selects one of `gateways`.
fn gateway_url(resources: &[weft_config::Resource], gateways: &[GatewayPlan]) -> Option<String> {
    for r in resources {
        let Spec::Gateway(gw) = &r.spec else { continue };
        let selected = gateways
            .iter()
            .any(|g| gw.selector.iter().all(|(k, v)| g.labels.get(k) == Some(v)));
        if !selected {
            continue;
        }
        for s in &gw.servers {
            if let Some(p) = &s.port
                && matches!(p.protocol.to_ascii_uppercase().as_str(), "HTTP" | "HTTP2")
            {
                return Some(format!("http://127.0.0.1:{}", p.number));
            }
        }
    }
    None
}

/// Every server port of the Gateways in the config (the gateway proxies bind them).
fn gateway_ports(resources: &[weft_config::Resource]) -> Vec<u16> {
    let mut out: Vec<u16> = resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::Gateway(gw) => Some(gw),
            _ => None,
        })
        .flat_map(|gw| gw.servers.iter())
        .filter_map(|s| s.port.as_ref().and_then(|p| u16::try_from(p.number).ok()))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn pick_port(asked: Option<u16>, default: u16) -> anyhow::Result<u16> {
    match asked {
        Some(0) => Ok(plan::free_port()?),
        Some(p) => Ok(p),
        None if plan::is_free(SocketAddr::from((Ipv4Addr::LOCALHOST, default))) => Ok(default),
        None => Ok(plan::free_port()?),
    }
}

/// Empties `dir` of files (not subdirectories), creating it if needed; keeps `keep`.
fn reset_dir(dir: &Path, keep: Option<&str>) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let e = e?;
        if e.file_type()?.is_file() && Some(e.file_name().to_string_lossy().as_ref()) != keep {
            std::fs::remove_file(e.path())
                .with_context(|| format!("cannot remove {}", e.path().display()))?;
        }
    }
    Ok(())
}

/// `weft up`.
pub fn up(args: UpArgs) -> anyhow::Result<u8> {
    let dir = state_dir(&args.state_dir);
    if let Some(s) = dir.read()?
        && s.supervisor_pid != std::process::id()
        && state::alive(s.supervisor_pid)
    {
        bail!(
            "a mesh is already running from {} (weft up pid {}); stop it with `weft down{}` or use another --state-dir",
            dir.root.display(),
            s.supervisor_pid,
            args.state_dir
                .as_ref()
                .map(|d| format!(" --state-dir {}", d.display()))
                .unwrap_or_default()
        );
    }
    // Fail early, in the foreground, on bad input or a taken gateway port.
    let inputs = inputs(&args)?;
    let resources = check_config(&inputs.files)?;
    for port in gateway_ports(&resources) {
        if !plan::is_free(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))) {
            bail!(
                "port {port}, where a Gateway of the config listens, is taken on this machine; stop what uses it (or a running mesh: weft down)"
            );
        }
    }
    if args.detach {
        return detach(&args, &dir);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("weft-up")
        .build()
        .context("cannot start the tokio runtime")?;
    rt.block_on(supervise(args, dir, inputs, resources))
}

/// Starts `weft up --supervise` in the background and waits until it reports ready.
fn detach(args: &UpArgs, dir: &StateDir) -> anyhow::Result<u8> {
    std::fs::create_dir_all(dir.logs())
        .with_context(|| format!("cannot create {}", dir.logs().display()))?;
    let log_path = dir.log("weft-up");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the weft executable")?;
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os()
        .skip(1)
        .filter(|a| a != "-d" && a != "--detach")
        .collect();
    argv.push("--supervise".into());
    if args.state_dir.is_none() {
        argv.push("--state-dir".into());
        argv.push(dir.root.clone().into_os_string());
    }
    let mut child = std::process::Command::new(exe)
        .args(argv)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("cannot start the background weft up")?;
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(args.timeout + 5);
    loop {
        if let Some(status) = child.try_wait()? {
            let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!(
                "weft up stopped during start-up ({status}); its log ({}):\n{tail}",
                log_path.display()
            );
        }
        if let Ok(Some(s)) = dir.read()
            && s.supervisor_pid == pid
        {
            match s.phase {
                Phase::Ready => {
                    print_summary(&s);
                    println!("Stop it with: weft down{}", state_dir_flag(args));
                    return Ok(0);
                }
                Phase::Failed => bail!(
                    "start-up failed: {}; logs in {}",
                    s.error.unwrap_or_default(),
                    dir.logs().display()
                ),
                _ => {}
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the mesh is not ready after {} s; it keeps trying in the background (pid {pid}): see `weft status{}`, logs in {}, stop it with `weft down{}`",
                args.timeout,
                state_dir_flag(args),
                dir.logs().display(),
                state_dir_flag(args)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn state_dir_flag(args: &UpArgs) -> String {
    args.state_dir
        .as_ref()
        .map(|d| format!(" --state-dir {}", d.display()))
        .unwrap_or_default()
}

/// Prints where everything is.
pub fn print_summary(s: &State) {
    let ready = s
        .ready_after_ms
        .map(|ms| format!(" (ready in {ms} ms)"))
        .unwrap_or_default();
    println!("weft mesh is up{ready}, {} mode", s.mode);
    if let Some(url) = &s.gateway_url {
        let page = if s.workloads.iter().any(|w| w.service == "productpage") {
            "/productpage"
        } else {
            ""
        };
        println!("  gateway:        {url}{page}");
    }
    println!(
        "  control plane:  admin {}  xds {}",
        s.control_plane.admin, s.control_plane.xds
    );
    println!(
        "  dashboard:      {}",
        s.dashboard_url.as_deref().unwrap_or("(not available yet)")
    );
    for w in &s.workloads {
        println!(
            "  {:<16} {}:{}  proxy admin http://{}:{}",
            w.name,
            w.ip,
            w.ports.first().map(|p| p.number).unwrap_or(0),
            w.admin_ip,
            w.proxy_admin_port
        );
    }
    for g in &s.gateways {
        println!(
            "  {:<16} proxy admin http://127.0.0.1:{}",
            g.name, g.proxy_admin_port
        );
    }
    println!("  state and logs: {}", s.state_dir.display());
    if s.control_plane.admin != "http://127.0.0.1:15014" {
        println!(
            "  (weft apply/get/proxy-status: add --control-plane {})",
            s.control_plane.admin
        );
    }
}

async fn wait_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn process(
    name: String,
    kind: ProcessKind,
    workload: Option<&str>,
    program: &Path,
    args: &[String],
    dir: &StateDir,
) -> ProcessState {
    let mut command = vec![program.display().to_string()];
    command.extend(args.iter().cloned());
    ProcessState {
        log: dir.log(&name),
        name,
        kind,
        workload: workload.map(str::to_string),
        pid: None,
        restarts: 0,
        command,
    }
}

fn child_spec(index: usize, p: &ProcessState, env: Vec<(String, String)>) -> ChildSpec {
    ChildSpec {
        index,
        program: PathBuf::from(&p.command[0]),
        args: p.command[1..].to_vec(),
        env,
        log: p.log.clone(),
    }
}

async fn supervise(
    args: UpArgs,
    dir: StateDir,
    inputs: Inputs,
    resources: Vec<weft_config::Resource>,
) -> anyhow::Result<u8> {
    let started = Instant::now();
    let weft = std::env::current_exe().context("cannot find the weft executable")?;
    let proxy_bin = find_program("weft-proxy")?;
    // Directories: a fresh config store, logs and bootstraps.
    reset_dir(&dir.config(), None)?;
    reset_dir(&dir.logs(), Some("weft-up.log"))?;
    reset_dir(&dir.bootstrap(), None)?;
    for (i, f) in inputs.files.iter().enumerate() {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| format!("file-{i}.yaml"));
        let to = dir.config().join(format!("{i:02}-{name}"));
        std::fs::copy(f, &to)
            .with_context(|| format!("cannot copy {} to {}", f.display(), to.display()))?;
    }
    let mode = args.mode;
    let (workloads, gateways) = plan::plan(&inputs.spec, mode)?;
    std::fs::write(
        dir.config().join(plan::GENERATED_FILE),
        plan::generated_config(&workloads, mode),
    )
    .context("cannot write the generated workload config")?;
    let xds_port = pick_port(args.xds_port, 15010)?;
    let admin_port = pick_port(args.admin_port, 15014)?;
    let admin_url = format!("http://127.0.0.1:{admin_port}");
    // Namespaces mode: the network first (the control plane listens on the bridge), and the
    // proxy binary and bootstraps where the proxies' uid can read them.
    let (xds, network, runtime_dir, proxy_bin, boot_dir) = match mode {
        Mode::Loopback => (
            SocketAddr::from((Ipv4Addr::LOCALHOST, xds_port)),
            None,
            None,
            proxy_bin,
            dir.bootstrap(),
        ),
        Mode::Namespaces => {
            let names: Vec<(String, Ipv4Addr)> = workloads
                .iter()
                .map(|w| (w.netns.clone().unwrap_or_default(), w.ip))
                .collect();
            let net = netns::setup(&names, &plan::hosts_file(&inputs.spec), |_| {})?;
            let rt = runtime_dir(&net)?;
            let bin = rt.join("weft-proxy");
            if let Err(e) = std::fs::copy(&proxy_bin, &bin) {
                netns::teardown(&net);
                bail!(
                    "cannot copy {} to {}: {e}",
                    proxy_bin.display(),
                    bin.display()
                );
            }
            (
                SocketAddr::from((netns::BRIDGE_IP, xds_port)),
                Some(net),
                Some(rt.clone()),
                bin,
                rt,
            )
        }
    };

    // The processes, in state.json order: control plane, then per workload app and sidecar,
    // then gateways. A failure here must not leave the namespaces behind.
    type Built = (Vec<ProcessState>, Vec<Vec<(String, String)>>);
    let built = (|| -> anyhow::Result<Built> {
        // The processes, in state.json order: control plane, then per workload app and sidecar,
        // then gateways.
        let mut processes = vec![process(
            "control-plane".into(),
            ProcessKind::ControlPlane,
            None,
            &weft,
            &[
                "control-plane".into(),
                "--config-dir".into(),
                dir.config().display().to_string(),
                "--xds-addr".into(),
                xds.to_string(),
                "--admin-addr".into(),
                format!("127.0.0.1:{admin_port}"),
                "--debounce-ms".into(),
                "20".into(),
                "--poll-ms".into(),
                "100".into(),
            ],
            &dir,
        )];
        let mut envs: Vec<Vec<(String, String)>> = vec![Vec::new()];
        for w in &workloads {
            let program = find_program(&w.command[0])?;
            let boot = bootstrap::write_sidecar(&boot_dir, w, xds, mode)?;
            let proxy_args = vec!["-c".to_string(), boot.display().to_string()];
            let (app_cmd, proxy_cmd) = match &w.netns {
                Some(ns) => (
                    netns::wrap(ns, None, &program.display().to_string(), &w.command[1..]),
                    netns::wrap(
                        ns,
                        Some(netns::PROXY_UID),
                        &proxy_bin.display().to_string(),
                        &proxy_args,
                    ),
                ),
                None => {
                    let mut app = vec![program.display().to_string()];
                    app.extend(w.command[1..].iter().cloned());
                    let mut proxy = vec![proxy_bin.display().to_string()];
                    proxy.extend(proxy_args);
                    (app, proxy)
                }
            };
            processes.push(process(
                format!("{}-app", w.name),
                ProcessKind::App,
                Some(&w.name),
                Path::new(&app_cmd[0]),
                &app_cmd[1..],
                &dir,
            ));
            envs.push(w.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
            processes.push(process(
                format!("{}-proxy", w.name),
                ProcessKind::Sidecar,
                Some(&w.name),
                Path::new(&proxy_cmd[0]),
                &proxy_cmd[1..],
                &dir,
            ));
            envs.push(Vec::new());
        }
        for g in &gateways {
            let boot = bootstrap::write_gateway(&boot_dir, g, xds)?;
            processes.push(process(
                g.name.clone(),
                ProcessKind::Gateway,
                Some(&g.name),
                &proxy_bin,
                &["-c".into(), boot.display().to_string()],
                &dir,
            ));
            envs.push(Vec::new());
        }
        Ok((processes, envs))
    })();
    let (processes, envs) = match built {
        Ok(b) => b,
        Err(e) => {
            cleanup(network.as_ref(), runtime_dir.as_deref());
            return Err(e);
        }
    };
    let state = State {
        supervisor_pid: std::process::id(),
        mode: match mode {
            Mode::Loopback => "loopback",
            Mode::Namespaces => "namespaces",
        }
        .into(),
        phase: Phase::Starting,
        state_dir: dir.root.clone(),
        started_at_ms: state::now_ms(),
        ready_after_ms: None,
        gateway_url: gateway_url(&resources, &gateways),
        dashboard_url: None,
        control_plane: ControlPlaneState {
            xds: xds.to_string(),
            admin: admin_url.clone(),
            config_dir: dir.config(),
        },
        workloads: workloads.clone(),
        gateways: gateways.clone(),
        processes: processes.clone(),
        error: None,
        network: network.clone(),
        runtime_dir: runtime_dir.clone(),
    };
    let shared = match Shared::new(state, dir.clone()) {
        Ok(s) => s,
        Err(e) => {
            cleanup(network.as_ref(), runtime_dir.as_deref());
            bail!("cannot write state.json: {e}");
        }
    };
    let cp = Group::start(vec![child_spec(0, &processes[0], Vec::new())], &shared);
    let rest = Group::start(
        processes
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, p)| child_spec(i, p, envs[i].clone()))
            .collect(),
        &shared,
    );
    let signal = wait_signal();
    tokio::pin!(signal);
    let gw_url = shared.get().gateway_url;
    let ready = wait_ready(
        &admin_url,
        &workloads,
        &gateways,
        gw_url.as_deref(),
        &inputs.probe_path,
        Duration::from_secs(args.timeout),
    );
    let mut interrupted = false;
    tokio::select! {
        r = ready => match r {
            Ok(()) => {
                let ms = started.elapsed().as_millis() as u64;
                shared.update(|s| {
                    s.phase = Phase::Ready;
                    s.ready_after_ms = Some(ms);
                });
                if !args.supervise {
                    print_summary(&shared.get());
                    println!("Press Ctrl-C to stop.");
                }
            }
            Err(e) => {
                let msg = format!("{e:#}");
                eprintln!("weft up: not ready after {} s: {msg}; still supervising (logs in {})", args.timeout, dir.logs().display());
                shared.update(|s| s.error = Some(msg));
            }
        },
        _ = &mut signal => interrupted = true,
    }
    if !interrupted {
        signal.await;
    }
    shared.update(|s| s.phase = Phase::Stopping);
    rest.stop().await;
    cp.stop().await;
    cleanup(network.as_ref(), runtime_dir.as_deref());
    dir.remove();
    if !args.supervise {
        println!("weft up: stopped");
    }
    Ok(0)
}

/// Waits until the control plane answers, every proxy is ready and SYNCED, and the gateway
/// answers `probe_path` (2xx for the demo's page, any answer otherwise).
async fn wait_ready(
    admin_url: &str,
    workloads: &[WorkloadPlan],
    gateways: &[GatewayPlan],
    gateway_url: Option<&str>,
    probe_path: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut nodes: Vec<(String, SocketAddr)> = workloads
        .iter()
        .map(|w| {
            (
                w.node_id(),
                SocketAddr::from((w.admin_ip, w.proxy_admin_port)),
            )
        })
        .collect();
    nodes.extend(gateways.iter().map(|g| {
        (
            g.node_id(),
            SocketAddr::from((Ipv4Addr::LOCALHOST, g.proxy_admin_port)),
        )
    }));
    loop {
        let last = match status::readiness(admin_url, &nodes, gateway_url, probe_path).await {
            Ok(()) => return Ok(()),
            Err(why) => why,
        };
        if Instant::now() > deadline {
            bail!("{last}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A directory under the system's temporary directory that the proxies' uid can read.
fn runtime_dir(net: &netns::Network) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let d = std::env::temp_dir().join(format!("weft-up-{}", std::process::id()));
    let made = std::fs::create_dir_all(&d)
        .and_then(|_| std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)));
    if let Err(e) = made {
        netns::teardown(net);
        bail!("cannot create {}: {e}", d.display());
    }
    Ok(d)
}

/// Removes the network and runtime directory of namespaces mode.
fn cleanup(network: Option<&netns::Network>, runtime_dir: Option<&Path>) {
    if let Some(net) = network {
        netns::teardown(net);
    }
    if let Some(d) = runtime_dir {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// `weft down`.
pub fn down(args: DownArgs) -> anyhow::Result<u8> {
    let dir = state_dir(&args.state_dir);
    let Some(s) = dir.read()? else {
        println!("no mesh running from {}", dir.root.display());
        return Ok(0);
    };
    let mut stopped = 0;
    if state::alive(s.supervisor_pid) {
        state::signal(s.supervisor_pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while state::alive(s.supervisor_pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if state::alive(s.supervisor_pid) {
            state::signal(s.supervisor_pid, rustix::process::Signal::KILL);
        }
        stopped += 1;
    }
    // Whatever the supervisor could not stop (it was killed, or timed out).
    let latest = dir.read().ok().flatten().unwrap_or(s);
    for p in &latest.processes {
        if let Some(pid) = p.pid
            && state::alive(pid)
            && state::runs(pid, &p.command)
        {
            state::signal(pid, rustix::process::Signal::KILL);
            stopped += 1;
        }
    }
    cleanup(latest.network.as_ref(), latest.runtime_dir.as_deref());
    dir.remove();
    println!(
        "weft down: stopped the mesh of {} ({} process{} signalled)",
        dir.root.display(),
        stopped,
        if stopped == 1 { "" } else { "es" }
    );
    Ok(0)
}
