//! What the `weft up` tests share: the binaries, the conformance data, and stopping a mesh a
//! failed test left behind.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn weft() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_weft"))
}

pub fn conformance() -> PathBuf {
    let dir = std::env::var_os("WEFT_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/istio")
        });
    assert!(
        dir.join("bookinfo/networking/bookinfo-gateway.yaml")
            .is_file(),
        "Istio conformance data not found at {} (set WEFT_CONFORMANCE_DIR)",
        dir.display()
    );
    dir
}

pub fn require_binaries() {
    let dir = weft().parent().expect("bin dir").to_path_buf();
    for b in ["weft-proxy", "weft-bookinfo"] {
        assert!(
            dir.join(b).is_file(),
            "{b} is not built in {}: run `cargo build --workspace --bins` first",
            dir.display()
        );
    }
}

/// Stops a mesh left behind by a failed test: `weft down`, then SIGTERM to the supervisor
/// recorded in `state.json` if it still runs (its children and namespaces go with it).
pub fn stop_mesh(state_dir: &Path) {
    let supervisor = std::fs::read_to_string(state_dir.join("state.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["supervisorPid"].as_u64());
    let _ = Command::new(weft())
        .args(["down", "--state-dir"])
        .arg(state_dir)
        .output();
    if let Some(pid) = supervisor {
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        if proc_dir.exists() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while proc_dir.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    let _ = std::fs::remove_dir_all(state_dir);
}
