//! The running control plane: a watched config directory ([`store`]), translation and push to
//! an ADS server ([`push`]), and the admin API ([`admin`]) that the CLI talks to.
//!
//! ```no_run
//! # async fn f() -> Result<(), weft_control::server::ControlPlaneError> {
//! use weft_control::server::{ControlPlane, Options};
//!
//! let cp = ControlPlane::start(Options::new("/etc/weft/config")).await?;
//! println!("xDS on {}, admin on {}", cp.xds_addr(), cp.admin_addr());
//! cp.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Flow: the watcher polls the directory (every 200 ms by default) and the admin API writes to
//! it; an accepted change is signalled to the push loop, which waits for the change to settle
//! (`debounce`), rebuilds the model and updates the cache for the proxies it can affect. The
//! ADS server pushes what changed and records the ACKs that `GET /proxies` reports.

pub mod admin;
pub mod autoregister;
pub mod ca;
pub mod client;
pub mod grpc;
pub mod metrics;
pub mod push;
pub mod route_check;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use weft_xds::cache::Cache;
use weft_xds::server::{AdsServer, ServerHandle, StatusRegistry, serve_with};

use crate::model::MeshSettings;
use autoregister::AutoRegistrar;
use metrics::Metrics;
use push::Pusher;
use store::{ConfigStore, StoreError};

/// How the control plane runs (the flags of `weft control-plane`).
#[derive(Clone, Debug)]
pub struct Options {
    /// The config directory (created if missing).
    pub config_dir: PathBuf,
    /// A MeshConfig file (bare MeshConfig YAML, or Istio's `istio` ConfigMap).
    pub mesh_config: Option<PathBuf>,
    /// ADS listen address.
    pub xds_addr: SocketAddr,
    /// Admin API listen address.
    pub admin_addr: SocketAddr,
    /// Debounce period. A change that comes after a quiet period (no push within it) is pushed
    /// at once; changes that follow a push closer than this are gathered until the config has
    /// been quiet for this long (at most 10 periods) and pushed together.
    pub debounce: Duration,
    /// How often the directory is polled.
    pub poll_interval: Duration,
    /// How long an auto-registered WorkloadEntry outlives its proxy's last stream (Istio's
    /// `PILOT_WORKLOAD_ENTRY_GRACE_PERIOD`).
    pub workload_entry_grace_period: Duration,
    /// The secure port (Istio's CA API and ADS over TLS); `None`: no certificate service.
    pub secure_addr: Option<SocketAddr>,
    /// The CA directory (self-signed root, or Istio's `cacerts`); default `CONFIG_DIR/.ca`.
    pub ca_dir: Option<PathBuf>,
    /// Lifetime of workload certificates when a request names none.
    pub workload_cert_ttl: Duration,
}

impl Options {
    /// Istio's ports (15010 xDS, 15014 admin), 100 ms debounce, 200 ms polling.
    pub fn new(config_dir: impl Into<PathBuf>) -> Options {
        Options {
            config_dir: config_dir.into(),
            mesh_config: None,
            xds_addr: SocketAddr::from(([127, 0, 0, 1], 15010)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 15014)),
            debounce: Duration::from_millis(100),
            poll_interval: Duration::from_millis(200),
            workload_entry_grace_period: autoregister::DEFAULT_GRACE_PERIOD,
            secure_addr: Some(SocketAddr::from(([127, 0, 0, 1], 15012))),
            ca_dir: None,
            workload_cert_ttl: weft_identity::ca::DEFAULT_WORKLOAD_TTL,
        }
    }

    /// Every server on `127.0.0.1:0` (tests).
    pub fn ephemeral(mut self) -> Options {
        self.xds_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        self.admin_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        if self.secure_addr.is_some() {
            self.secure_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        }
        self
    }
}

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// The config directory could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The MeshConfig file could not be read or parsed.
    #[error("mesh config {path}: {message}")]
    MeshConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The xDS server could not start.
    #[error(transparent)]
    Xds(#[from] weft_xds::server::ServerError),
    /// The certificate service could not start.
    #[error(transparent)]
    Ca(#[from] ca::CaServiceError),
    /// The admin API could not listen.
    #[error("cannot listen for the admin API on {addr}: {source}")]
    AdminBind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// State shared by the watcher, the push loop, the ADS hooks and the admin API.
pub(crate) struct Shared {
    /// The config directory; locked for scans and writes, never across an await.
    store: Mutex<ConfigStore>,
    pusher: Arc<Pusher>,
    metrics: Arc<Metrics>,
    ads: AdsServer,
    /// Sends "config changed, first seen at" to the push loop.
    changes: mpsc::UnboundedSender<Instant>,
    /// The last revision the push loop finished pushing.
    pushed: AtomicU64,
    /// Name of this instance (istioctl's ISTIOD column).
    instance: String,
    /// WorkloadGroup auto-registration.
    autoreg: Arc<AutoRegistrar>,
}

impl Shared {
    fn lock_store(&self) -> MutexGuard<'_, ConfigStore> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn changed(&self, at: Instant) {
        let _ = self.changes.send(at);
    }

    fn pushed_revision(&self) -> u64 {
        self.pushed.load(Ordering::SeqCst)
    }
}

/// A running control plane.
pub struct ControlPlane {
    shared: Arc<Shared>,
    xds: Option<ServerHandle>,
    admin_addr: SocketAddr,
    admin_stop: Option<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
    /// The certificate service on the secure port, when enabled.
    ca: Option<Arc<ca::CaService>>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("xds", &self.xds_addr())
            .field("admin", &self.admin_addr)
            .finish()
    }
}

fn mesh_settings(path: Option<&PathBuf>) -> Result<MeshSettings, ControlPlaneError> {
    let Some(path) = path else {
        return Ok(MeshSettings::default());
    };
    let err = |message: String| ControlPlaneError::MeshConfig {
        path: path.clone(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let mesh = weft_config::document::parse_mesh_config(&text, &path.display().to_string())
        .map_err(|d| err(d.to_string()))?;
    Ok(MeshSettings::from_mesh_config(&mesh))
}

impl ControlPlane {
    /// Reads the config directory, computes the model, and starts the xDS server, the admin
    /// API, the directory watcher and the push loop on the current tokio runtime.
    pub async fn start(opts: Options) -> Result<ControlPlane, ControlPlaneError> {
        let mesh = mesh_settings(opts.mesh_config.as_ref())?;
        let trust_domain = mesh.trust_domain.clone();
        let store = ConfigStore::open(&opts.config_dir)?;
        let metrics = Arc::new(Metrics::new());
        let cache = Cache::new();
        let pusher = Arc::new(Pusher::new(cache.clone(), mesh, metrics.clone()));
        // The initial model, before any proxy can connect.
        {
            let resources = store.resources().into_iter().map(|r| r.resource).collect();
            pusher.update(store.revision(), resources, Instant::now());
        }
        let (on_connect, on_disconnect) = (pusher.clone(), pusher.clone());
        let (autoreg, autoreg_events) = AutoRegistrar::new(opts.workload_entry_grace_period);
        let (ar_connect, ar_disconnect) = (autoreg.clone(), autoreg.clone());
        let ads = AdsServer::new(cache)
            .on_connect(move |n| {
                on_connect.on_connect(n);
                ar_connect.on_connect(n);
            })
            .on_disconnect(move |n| {
                on_disconnect.on_disconnect(n);
                ar_disconnect.on_disconnect(n);
            });
        pusher.set_status(ads.status().clone());
        let (tx, rx) = mpsc::unbounded_channel();
        let revision = store.revision();
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            pusher: pusher.clone(),
            metrics,
            ads: ads.clone(),
            changes: tx,
            pushed: AtomicU64::new(revision),
            instance: format!("weft-{}", std::process::id()),
            autoreg,
        });
        let ca = match opts.secure_addr {
            Some(addr) => {
                let ca_opts = ca::CaOptions {
                    dir: opts
                        .ca_dir
                        .clone()
                        .unwrap_or_else(|| opts.config_dir.join(".ca")),
                    addr,
                    default_ttl: opts.workload_cert_ttl,
                    trust_domain,
                };
                Some(Arc::new(ca::CaService::start(&ca_opts, ads.clone()).await?))
            }
            None => None,
        };
        let xds = serve_with(opts.xds_addr, ads).await?;
        let bound = match tokio::net::TcpListener::bind(opts.admin_addr).await {
            Ok(l) => l.local_addr().map(|a| (l, a)),
            Err(e) => Err(e),
        };
        let (listener, admin_addr) = match bound {
            Ok(x) => x,
            Err(source) => {
                // Do not leave the xDS server running without its admin API.
                let _ = xds.shutdown().await;
                return Err(ControlPlaneError::AdminBind {
                    addr: opts.admin_addr,
                    source,
                });
            }
        };
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let mut app = admin::router(shared.clone());
        if let Some(ca) = &ca {
            app = app.merge(ca::router(ca.clone()));
        }
        let admin_task = tokio::spawn(async move {
            let r = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                })
                .await;
            if let Err(e) = r {
                tracing::error!("admin API failed: {e}");
            }
        });
        tracing::info!(xds = %xds.local_addr(), admin = %admin_addr, dir = %opts.config_dir.display(), "control plane started");
        // Connects that came meanwhile are queued; entries of an earlier run are read first.
        let autoreg_task = tokio::spawn(autoregister::run(shared.clone(), autoreg_events));
        let tasks = vec![
            admin_task,
            autoreg_task,
            tokio::spawn(watch_dir(shared.clone(), opts.poll_interval)),
            tokio::spawn(push_loop(shared.clone(), rx, opts.debounce)),
        ];
        Ok(ControlPlane {
            shared,
            xds: Some(xds),
            admin_addr,
            admin_stop: Some(stop_tx),
            tasks,
            ca,
        })
    }

    /// Where the ADS server listens.
    pub fn xds_addr(&self) -> SocketAddr {
        self.xds
            .as_ref()
            .map(|x| x.local_addr())
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Where the admin API listens.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Where the secure port (CA API and ADS over TLS) listens, when enabled.
    pub fn secure_addr(&self) -> Option<SocketAddr> {
        self.ca.as_ref().map(|c| c.addr())
    }

    /// The certificate service, when enabled.
    pub fn ca(&self) -> Option<&Arc<ca::CaService>> {
        self.ca.as_ref()
    }

    /// Per-proxy xDS status (for tests and benchmarks: `wait_acked`).
    pub fn status(&self) -> &StatusRegistry {
        self.shared.ads.status()
    }

    /// The push engine (the current translation of a proxy, for tests).
    pub fn pusher(&self) -> &Arc<Pusher> {
        &self.shared.pusher
    }

    /// The snapshot served to a connected node (what its next response is built from).
    pub fn snapshot(&self, node_id: &str) -> Option<Arc<weft_xds::cache::Snapshot>> {
        let key = self.shared.ads.status().node(node_id)?.snapshot_key;
        self.shared.ads.cache().snapshot(&key)
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// The config store revision.
    pub fn revision(&self) -> u64 {
        self.shared.lock_store().revision()
    }

    /// The last revision whose push finished.
    pub fn pushed_revision(&self) -> u64 {
        self.shared.pushed_revision()
    }

    /// Stops the servers and background tasks.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.admin_stop.take() {
            let _ = stop.send(());
        }
        if let Some(xds) = self.xds.take()
            && let Err(e) = xds.shutdown().await
        {
            tracing::warn!("xDS server shutdown: {e}");
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if let Some(ca) = self.ca.take() {
            ca.shutdown();
        }
    }

    /// Runs until Ctrl-C or SIGTERM, then shuts down.
    pub async fn run_until_signal(self) {
        wait_for_signal().await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(ca) = &self.ca {
            ca.shutdown();
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Polls the config directory and signals accepted changes.
async fn watch_dir(shared: Arc<Shared>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let s = shared.clone();
        let scanned = tokio::task::spawn_blocking(move || {
            let seen = Instant::now();
            let mut store = s.lock_store();
            let out = store.scan();
            s.metrics.config_errors.set(store.rejected().len() as i64);
            s.metrics.revision.set(store.revision() as i64);
            (out, seen)
        })
        .await;
        match scanned {
            Ok((Ok(out), seen)) => {
                if !out.rejected.is_empty() {
                    shared
                        .metrics
                        .config_rejections
                        .inc_by(out.rejected.len() as u64);
                }
                if out.changed() {
                    shared.changed(seen);
                }
            }
            Ok((Err(e), _)) => tracing::warn!("config directory scan failed: {e}"),
            Err(e) => tracing::warn!("config directory scan task failed: {e}"),
        }
    }
}

/// Debounces change signals and pushes.
///
/// Leading edge: the first change after a quiet period goes out at once (an isolated endpoint
/// or route change reaches proxies without waiting out the debounce period); a burst that
/// follows is gathered into the next push.
async fn push_loop(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Instant>,
    debounce: Duration,
) {
    let mut last_push: Option<Instant> = None;
    while let Some(first) = rx.recv().await {
        let quiet = last_push.is_none_or(|t| t.elapsed() >= debounce);
        if !debounce.is_zero() && !quiet {
            // Wait for a quiet period, but never longer than 10 debounce periods in all.
            let limit = first + debounce * 10;
            loop {
                let wait = debounce.min(limit.saturating_duration_since(Instant::now()));
                if wait.is_zero() {
                    break;
                }
                match tokio::time::timeout(wait, rx.recv()).await {
                    Ok(Some(_)) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
        }
        // Signals that arrived meanwhile are covered by this push.
        while rx.try_recv().is_ok() {}
        let s = shared.clone();
        let done = tokio::task::spawn_blocking(move || {
            let (revision, resources) = {
                let store = s.lock_store();
                (
                    store.revision(),
                    store
                        .resources()
                        .into_iter()
                        .map(|r| r.resource)
                        .collect::<Vec<_>>(),
                )
            };
            s.pusher.update(revision, resources, first);
            s.pushed.store(revision, Ordering::SeqCst);
            s.autoreg.config_changed();
        })
        .await;
        if let Err(e) = done {
            tracing::error!("push failed: {e}");
        }
        last_push = Some(Instant::now());
    }
}
