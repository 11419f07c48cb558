//! Runs child processes, restarts them when they exit (exponential back-off, 100 ms to 5 s,
//! reset after 10 s of running), appends their output to one log per process, records their
//! PIDs in `state.json`, and stops them (SIGTERM, SIGKILL after a grace period) on shutdown.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::state::{self, State, StateDir};

/// How a child is started.
#[derive(Clone, Debug)]
pub struct ChildSpec {
    /// Index in `State::processes`.
    pub index: usize,
    /// The program (resolved path).
    pub program: PathBuf,
    /// Arguments.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Log file (stdout and stderr, appended).
    pub log: PathBuf,
}

/// The state shared by every child task; each change is written to `state.json`.
#[derive(Clone)]
pub struct Shared {
    state: Arc<Mutex<State>>,
    dir: StateDir,
}

impl Shared {
    /// Wraps the initial state and writes it.
    pub fn new(state: State, dir: StateDir) -> std::io::Result<Shared> {
        dir.write(&state)?;
        Ok(Shared {
            state: Arc::new(Mutex::new(state)),
            dir,
        })
    }

    /// Changes the state and writes it.
    pub fn update(&self, f: impl FnOnce(&mut State)) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut s);
        if let Err(e) = self.dir.write(&s) {
            eprintln!(
                "weft up: cannot write {}: {e}",
                self.dir.state_file().display()
            );
        }
    }

    /// A copy of the state.
    pub fn get(&self) -> State {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Appends a line from the supervisor to a child's log.
fn note(log: &PathBuf, line: &str) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        let _ = writeln!(f, "--- weft up: {line}");
    }
}

fn spawn(spec: &ChildSpec) -> std::io::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)?;
    let err = log.try_clone()?;
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err))
        // Its own process group: a Ctrl-C in the terminal reaches the supervisor only, which
        // then stops the children in order.
        .process_group(0)
        .kill_on_drop(true);
    cmd.spawn()
}

/// Stops a child: SIGTERM, then SIGKILL after `grace`.
async fn terminate(child: &mut Child, grace: Duration) {
    if let Some(pid) = child.id() {
        state::signal(pid, rustix::process::Signal::TERM);
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

/// Runs one child until `stop` turns true, restarting it when it exits.
async fn run_child(spec: ChildSpec, shared: Shared, mut stop: watch::Receiver<bool>) {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);
    let mut backoff = FIRST;
    let mut first = true;
    loop {
        if *stop.borrow() {
            return;
        }
        let started = Instant::now();
        match spawn(&spec) {
            Ok(mut child) => {
                let pid = child.id();
                note(
                    &spec.log,
                    &format!(
                        "started {} (pid {})",
                        spec.program.display(),
                        pid.unwrap_or(0)
                    ),
                );
                let restarted = !first;
                shared.update(|s| {
                    if let Some(p) = s.processes.get_mut(spec.index) {
                        p.pid = pid;
                        if restarted {
                            p.restarts += 1;
                        }
                    }
                });
                let exited = tokio::select! {
                    status = child.wait() => Some(status),
                    _ = stop.wait_for(|s| *s) => None,
                };
                match exited {
                    Some(status) => {
                        let what = match status {
                            Ok(s) => s.to_string(),
                            Err(e) => format!("wait failed: {e}"),
                        };
                        shared.update(|s| {
                            if let Some(p) = s.processes.get_mut(spec.index) {
                                p.pid = None;
                            }
                        });
                        if *stop.borrow() {
                            return;
                        }
                        note(
                            &spec.log,
                            &format!("exited ({what}); restarting in {} ms", backoff.as_millis()),
                        );
                    }
                    None => {
                        terminate(&mut child, Duration::from_secs(5)).await;
                        note(&spec.log, "stopped");
                        shared.update(|s| {
                            if let Some(p) = s.processes.get_mut(spec.index) {
                                p.pid = None;
                            }
                        });
                        return;
                    }
                }
            }
            Err(e) => {
                note(
                    &spec.log,
                    &format!(
                        "cannot start {}: {e}; retrying in {} ms",
                        spec.program.display(),
                        backoff.as_millis()
                    ),
                );
            }
        }
        first = false;
        if started.elapsed() > Duration::from_secs(10) {
            backoff = FIRST;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(MAX);
    }
}

/// A group of children stopped together.
pub struct Group {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Group {
    /// Starts `specs`, each supervised.
    pub fn start(specs: Vec<ChildSpec>, shared: &Shared) -> Group {
        let (stop, rx) = watch::channel(false);
        let tasks = specs
            .into_iter()
            .map(|spec| tokio::spawn(run_child(spec, shared.clone(), rx.clone())))
            .collect();
        Group { stop, tasks }
    }

    /// Stops every child of the group and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
