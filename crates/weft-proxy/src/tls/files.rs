//! Identity from files, as Istio's file-mounted certificates: a directory with
//! `cert-chain.pem`, `key.pem` and `root-cert.pem` feeds the `default` and `ROOTCA` secrets, and
//! is read again when a file changes (a rotation reaches new handshakes; open connections stay).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{SecretStore, TlsConfigError};

/// The certificate chain file (leaf first).
pub const CERT_CHAIN: &str = "cert-chain.pem";
/// The private key file.
pub const KEY: &str = "key.pem";
/// The trusted roots file.
pub const ROOT_CERT: &str = "root-cert.pem";

fn read(dir: &Path, name: &str) -> Result<String, TlsConfigError> {
    std::fs::read_to_string(dir.join(name))
        .map_err(|e| TlsConfigError(format!("{}: {e}", dir.join(name).display())))
}

/// Loads the three files of `dir` into `default` and `ROOTCA` once.
pub fn load_identity_dir(store: &SecretStore, dir: &Path) -> Result<(), TlsConfigError> {
    let chain = read(dir, CERT_CHAIN)?;
    let key = read(dir, KEY)?;
    let roots = read(dir, ROOT_CERT)?;
    let roots = super::secrets::parse_certs(roots.as_bytes(), ROOT_CERT)?;
    // Roots first: a new certificate is never presented before its CA is trusted.
    store.set_trusted_ca("ROOTCA", roots)?;
    store.set_tls_certificate_pem("default", &chain, &key)
}

fn stamp(dir: &Path) -> Vec<Option<SystemTime>> {
    [CERT_CHAIN, KEY, ROOT_CERT]
        .iter()
        .map(|f| {
            std::fs::metadata(dir.join(f))
                .and_then(|m| m.modified())
                .ok()
        })
        .collect()
}

/// Loads `dir` now (an error is returned, and the proxy should not start), then checks it
/// every `interval` on a thread of its own and reloads it when a file changed. A reload that
/// fails (a half-written file) is logged and retried at the next check; the previous identity
/// stays in use.
pub fn watch_identity_dir(
    store: Arc<SecretStore>,
    dir: PathBuf,
    interval: Duration,
) -> Result<std::thread::JoinHandle<()>, TlsConfigError> {
    load_identity_dir(&store, &dir)?;
    let mut seen = stamp(&dir);
    std::thread::Builder::new()
        .name("weft-identity-files".into())
        .spawn(move || {
            loop {
                std::thread::sleep(interval);
                let now = stamp(&dir);
                if now == seen {
                    continue;
                }
                match load_identity_dir(&store, &dir) {
                    Ok(()) => {
                        tracing::info!(dir = %dir.display(), "identity files changed: reloaded");
                        seen = now;
                    }
                    Err(e) => tracing::warn!("identity files: {e} (keeping the previous identity)"),
                }
            }
        })
        .map_err(|e| TlsConfigError(format!("cannot start the identity file watcher: {e}")))
}
