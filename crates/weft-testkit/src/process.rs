//! The built binaries and child processes that are killed when dropped.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};

/// The directory cargo puts binaries in for this test build: the test executable lives in
/// `target/<profile>/deps/`, the binaries in `target/<profile>/`. `WEFT_BIN_DIR` overrides it.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("WEFT_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("cannot find the test executable")?;
    let mut dir = exe
        .parent()
        .context("the test executable has no directory")?
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    Ok(dir)
}

/// The path of a workspace binary (`weft`, `weft-proxy`); an error that says how to build it
/// when it is missing.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir()?.join(name);
    if !path.is_file() {
        bail!(
            "{name} not found at {}: build the binaries first with `cargo build --workspace --bins` \
             (`cargo test --workspace` builds them)",
            path.display()
        );
    }
    Ok(path)
}

/// A free TCP port on 127.0.0.1 (free when asked; a short race with other processes remains).
pub fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A free TCP address on 127.0.0.1.
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(SocketAddr::from(([127, 0, 0, 1], free_port()?)))
}

/// A child process, killed (by its PID) and reaped when dropped. Its standard error goes to a
/// log file whose tail [`Proc::log_tail`] shows when a test fails.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stderr (and stdout unless already set) appended to `log`.
    pub fn spawn(
        name: &str,
        mut cmd: Command,
        log: &Path,
        stdout_piped: bool,
    ) -> anyhow::Result<Proc> {
        let file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open log {}", log.display()))?;
        let out = if stdout_piped {
            Stdio::piped()
        } else {
            Stdio::from(file.try_clone()?)
        };
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::from(file));
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name} ({cmd:?})"))?;
        Ok(Proc {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The child, for its piped stdout.
    pub fn child_mut(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The last `lines` lines of the process's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let from = all.len().saturating_sub(lines);
        format!(
            "--- {} ({}) ---\n{}",
            self.name,
            self.log.display(),
            all[from..].join("\n")
        )
    }

    /// Kills the process (SIGKILL to its PID) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}
