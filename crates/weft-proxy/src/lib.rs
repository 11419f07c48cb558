#![warn(missing_docs)]
//! weft-proxy: weft's data plane, an L4/L7 proxy configured by Envoy v3 resources.
//!
//! Start here: [`run`] compiles a [`Bootstrap`](weft_xds::envoy::config::bootstrap::v3::Bootstrap)
//! into a [`config::Snapshot`], binds the listeners, and serves them on a multi-thread tokio
//! runtime with `concurrency` workers, while the admin interface runs on its own small runtime.
//! The returned [`ProxyHandle`] gives the bound addresses (tests bind port 0), swaps
//! configuration and shuts the proxy down gracefully.

pub mod admin;
pub mod bootstrap;
pub mod cluster;
pub mod config;
pub mod http;
pub mod identity;
mod listener;
pub mod stats;
mod tcp;
pub mod telemetry;
pub mod tls;
pub mod xds;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{Notify, watch};
use weft_xds::envoy::config::bootstrap::v3::Bootstrap;

use config::{CompileError, CompileOptions, Snapshot, Unsupported};
use stats::Stats;

pub use listener::{Facts, parse_first_bytes};

/// How the proxy runs (the command line's settings, for embedding and tests).
#[derive(Clone)]
pub struct Options {
    /// Worker threads for the data plane (Envoy's `--concurrency`; Istio uses 2).
    pub concurrency: usize,
    /// How long a graceful shutdown waits for in-flight requests (`--drain-time-s`).
    pub drain_time: Duration,
    /// Admin address overriding the bootstrap's `admin.address` (tests use port 0).
    pub admin_addr: Option<SocketAddr>,
    /// Compilation knobs.
    pub compile: CompileOptions,
    /// Changes the log level for `/logging?level=`; the binary passes its subscriber's handle.
    pub log_control: Option<Arc<dyn LogControl>>,
    /// Where to fetch the proxy's own certificate (SDS `default` and `ROOTCA`); not ready
    /// until it is in.
    pub identity: Option<identity::IdentityConfig>,
    /// Where to serve the merged Prometheus metrics (`/stats/prometheus`) and readiness,
    /// Istio's 15020; `None`: not served.
    pub stats_addr: Option<SocketAddr>,
    /// Where to serve readiness (`/healthz/ready`), Istio's 15021; `None`: not served.
    pub health_addr: Option<SocketAddr>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            concurrency: 2,
            drain_time: Duration::from_secs(5),
            admin_addr: None,
            compile: CompileOptions::default(),
            log_control: None,
            identity: None,
            stats_addr: None,
            health_addr: None,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("concurrency", &self.concurrency)
            .field("drain_time", &self.drain_time)
            .field("admin_addr", &self.admin_addr)
            .field("compile", &self.compile)
            .finish_non_exhaustive()
    }
}

/// Sets the log level at run time (`/logging?level=debug`). The library does not install a
/// global logger; whoever does implements this.
pub trait LogControl: Send + Sync {
    /// Applies `level` (`trace`, `debug`, `info`, `warn`, `error`, `off`, or a filter directive).
    fn set_level(&self, level: &str) -> Result<(), String>;
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration does not compile.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// The bootstrap could not be read.
    #[error(transparent)]
    Bootstrap(#[from] bootstrap::BootstrapError),
    /// A listener address could not be bound.
    #[error("listener {listener:?}: cannot bind {addr}: {source}")]
    Bind {
        /// The listener's name.
        listener: String,
        /// The address.
        addr: SocketAddr,
        /// The bind error.
        source: std::io::Error,
    },
    /// The admin address could not be bound.
    #[error("admin: cannot bind {addr}: {source}")]
    AdminBind {
        /// The address.
        addr: SocketAddr,
        /// The bind error.
        source: std::io::Error,
    },
    /// A runtime or thread could not be created.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

/// Why a configuration update was refused; the running configuration stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new configuration does not compile.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// The set of listeners changed.
    #[error("listener {0:?} was added or removed; listener changes need a restart until LDS lands")]
    Listeners(String),
}

/// Counts open downstream connections so that a drain knows when it is done.
#[derive(Debug, Default)]
pub(crate) struct ConnCounter {
    active: AtomicUsize,
    zero: Notify,
}

/// One open connection; dropping it may complete a drain.
pub(crate) struct ConnGuard<'a>(&'a ConnCounter);

impl ConnCounter {
    pub(crate) fn guard(&self) -> ConnGuard<'_> {
        self.active.fetch_add(1, Ordering::AcqRel);
        ConnGuard(self)
    }

    /// Connections open now.
    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    async fn wait_idle(&self) {
        loop {
            let notified = self.zero.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.active.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for ConnGuard<'_> {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.zero.notify_waiters();
        }
    }
}

/// State shared by the data plane and the admin interface.
pub(crate) struct Shared {
    /// The configuration requests are served from; swapped whole.
    pub snapshot: ArcSwap<Snapshot>,
    /// Counters.
    pub stats: Arc<Stats>,
    /// `/ready` says LIVE once the listeners accept.
    pub ready: AtomicBool,
    /// False until the proxy's own certificate is installed (true when it fetches none).
    pub identity_ready: Arc<AtomicBool>,
    /// True: close downstream connections gracefully (drain).
    pub draining: watch::Sender<bool>,
    /// True: stop accepting connections.
    pub stop_accepting: watch::Sender<bool>,
    /// True: drain and exit.
    pub exit: watch::Sender<bool>,
    /// Open downstream connections.
    pub conns: ConnCounter,
    /// Log level control for `/logging`.
    pub log_control: Option<Arc<dyn LogControl>>,
    /// Bound listener addresses, by listener name.
    pub listener_addrs: Vec<(String, SocketAddr)>,
    /// What the current configuration uses that weft does not implement.
    pub unsupported: ArcSwap<Vec<Unsupported>>,
    /// Dynamic (xDS) listeners and state for `/config_dump`.
    pub xds: xds::XdsShared,
    /// Named secrets (for `/certs`).
    pub secrets: Arc<tls::SecretStore>,
}

impl Shared {
    /// Starts a graceful exit: stop accepting, close connections as their requests finish.
    pub(crate) fn request_exit(&self) {
        self.stop_accepting.send_replace(true);
        self.draining.send_replace(true);
        self.exit.send_replace(true);
    }
}

/// A running proxy.
pub struct ProxyHandle {
    shared: Arc<Shared>,
    admin: Option<SocketAddr>,
    agent: Vec<(admin::AgentPort, SocketAddr)>,
    compile: CompileOptions,
    done: watch::Receiver<bool>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for ProxyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyHandle")
            .field("listeners", &self.shared.listener_addrs)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

impl ProxyHandle {
    /// The address listener `name` is bound to (port 0 in config becomes the real port here).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.shared
            .listener_addrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .or_else(|| self.shared.xds.listener_addr(name))
    }

    /// The proxy's secrets by name: set `default` and `ROOTCA` (or any SDS name) here to feed
    /// the proxy's identity; new TLS handshakes use the new values, open connections are kept.
    pub fn secrets(&self) -> Arc<tls::SecretStore> {
        Arc::clone(&self.compile.secrets)
    }

    /// The admin interface's address, when there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// Where the merged metrics are served (Istio's 15020), when they are.
    pub fn stats_addr(&self) -> Option<SocketAddr> {
        self.agent_addr(admin::AgentPort::Stats)
    }

    /// Where readiness is served (Istio's 15021), when it is.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.agent_addr(admin::AgentPort::Health)
    }

    fn agent_addr(&self, port: admin::AgentPort) -> Option<SocketAddr> {
        self.agent.iter().find(|(p, _)| *p == port).map(|(_, a)| *a)
    }

    /// What the configuration uses that weft does not implement (also logged at start-up).
    pub fn unsupported(&self) -> Vec<Unsupported> {
        self.shared.unsupported.load().as_ref().clone()
    }

    /// The current snapshot (tests and embedding: e.g. to replace a cluster's endpoints).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot.load_full()
    }

    /// Compiles `bootstrap` and swaps it in. Requests in flight finish on the snapshot they
    /// started with. The listeners must stay the same (names); their filter chains, routes and
    /// clusters may change.
    pub fn reload(&self, bootstrap: &Bootstrap) -> Result<Vec<Unsupported>, ReloadError> {
        let compiled = config::compile(bootstrap, &self.shared.stats, &self.compile)?;
        let current = self.shared.snapshot.load();
        for l in &compiled.snapshot.listeners {
            if !current.listeners.iter().any(|c| c.name == l.name) {
                return Err(ReloadError::Listeners(l.name.clone()));
            }
        }
        for c in &current.listeners {
            if !compiled.snapshot.listeners.iter().any(|l| l.name == c.name) {
                return Err(ReloadError::Listeners(c.name.clone()));
            }
        }
        self.shared.snapshot.store(Arc::new(compiled.snapshot));
        self.shared
            .unsupported
            .store(Arc::new(compiled.unsupported.clone()));
        Ok(compiled.unsupported)
    }

    /// Starts a graceful shutdown (as SIGTERM or `/quitquitquit` do) and returns at once.
    pub fn shutdown(&self) {
        self.shared.request_exit();
    }

    /// A function that starts a graceful shutdown from anywhere (signal handlers).
    pub fn shutdown_trigger(&self) -> impl Fn() + Send + Sync + 'static {
        let shared = Arc::clone(&self.shared);
        move || shared.request_exit()
    }

    /// Waits until the proxy has stopped (after [`ProxyHandle::shutdown`], a signal handled by
    /// the embedder, or `/quitquitquit`).
    pub async fn stopped(&self) {
        let mut done = self.done.clone();
        let _ = done.wait_for(|d| *d).await;
    }

    /// Waits, blocking the thread, until the proxy has stopped; for `main`.
    pub fn join(mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.shared.request_exit();
    }
}

/// Compiles `bootstrap`, binds its listeners and admin address, and starts serving.
///
/// Returns once every listener is bound: connections made after this call are accepted.
pub fn run(bootstrap: &Bootstrap, options: Options) -> Result<ProxyHandle, StartError> {
    let stats = Arc::new(Stats::default());
    let ads = xds::AdsSettings::from_bootstrap(bootstrap)?;
    let compiled = xds::compile_bootstrap(bootstrap, &stats, &options.compile, ads.is_some())?;
    for u in &compiled.unsupported {
        tracing::warn!("{u}");
    }

    let mut bound = Vec::new();
    for l in compiled.snapshot.listeners.iter().filter(|l| l.bind) {
        let std_listener = bind(l.addr).map_err(|source| StartError::Bind {
            listener: l.name.clone(),
            addr: l.addr,
            source,
        })?;
        let addr = std_listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                listener: l.name.clone(),
                addr: l.addr,
                source,
            })?;
        bound.push((l.name.clone(), addr, std_listener));
    }
    let admin_addr = match options.admin_addr {
        Some(a) => Some(a),
        None => bootstrap::admin_address(bootstrap)?,
    };
    let admin_listener = match admin_addr {
        Some(addr) => Some(bind(addr).map_err(|source| StartError::AdminBind { addr, source })?),
        None => None,
    };
    let admin_bound = match &admin_listener {
        Some(l) => Some(l.local_addr().map_err(|source| StartError::AdminBind {
            addr: admin_addr.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
            source,
        })?),
        None => None,
    };

    let mut agent = Vec::new();
    for (port, addr) in [
        (admin::AgentPort::Stats, options.stats_addr),
        (admin::AgentPort::Health, options.health_addr),
    ] {
        let Some(addr) = addr else { continue };
        let l = bind(addr).map_err(|source| StartError::AdminBind { addr, source })?;
        let bound = l
            .local_addr()
            .map_err(|source| StartError::AdminBind { addr, source })?;
        agent.push((port, bound, l));
    }
    let agent_addrs: Vec<(admin::AgentPort, SocketAddr)> =
        agent.iter().map(|(p, a, _)| (*p, *a)).collect();

    let (exit_tx, mut exit_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        snapshot: ArcSwap::from_pointee(compiled.snapshot),
        stats,
        ready: AtomicBool::new(false),
        identity_ready: Arc::new(AtomicBool::new(options.identity.is_none())),
        draining: watch::channel(false).0,
        stop_accepting: watch::channel(false).0,
        exit: exit_tx,
        conns: ConnCounter::default(),
        log_control: options.log_control.clone(),
        listener_addrs: bound.iter().map(|(n, a, _)| (n.clone(), *a)).collect(),
        unsupported: ArcSwap::from_pointee(compiled.unsupported),
        xds: xds::XdsShared::default(),
        secrets: Arc::clone(&options.compile.secrets),
    });

    let workers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.concurrency.max(1))
        .thread_name("weft-worker")
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
    let (done_tx, done_rx) = watch::channel(false);
    let mut threads = Vec::new();

    // Accept loops start now; the listen sockets already queue connections.
    for (name, _, std_listener) in bound {
        let _guard = workers.enter();
        let listener =
            tokio::net::TcpListener::from_std(std_listener).map_err(StartError::Runtime)?;
        let stop = shared.stop_accepting.subscribe();
        workers.spawn(listener::accept_loop(
            listener,
            Arc::from(name.as_str()),
            Arc::clone(&shared),
            stop,
        ));
    }
    // With ADS, ready once the first full set from the control plane is applied.
    shared.ready.store(ads.is_none(), Ordering::Release);
    if let Some(ads) = ads {
        xds::start(
            ads,
            &shared,
            workers.handle(),
            bootstrap,
            options.compile.clone(),
        )?;
    }

    if let Some(cfg) = options.identity.clone() {
        workers.spawn(identity::run(
            cfg,
            Arc::clone(&options.compile.secrets),
            Arc::clone(&shared.identity_ready),
        ));
    }

    if admin_listener.is_some() || !agent.is_empty() {
        let admin_rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(StartError::Runtime)?;
        let shared = Arc::clone(&shared);
        let done = done_rx.clone();
        let t = std::thread::Builder::new()
            .name("weft-admin".into())
            .spawn(move || {
                admin_rt.block_on(async move {
                    for (port, _, l) in agent {
                        tokio::spawn(admin::serve_agent(
                            l,
                            port,
                            Arc::clone(&shared),
                            done.clone(),
                        ));
                    }
                    if let Some(l) = admin_listener {
                        admin::serve(l, shared, done).await;
                    } else {
                        let mut done = done;
                        let _ = done.wait_for(|d| *d).await;
                    }
                })
            })
            .map_err(StartError::Runtime)?;
        threads.push(t);
    }

    let drain_time = options.drain_time;
    let main_shared = Arc::clone(&shared);
    let t = std::thread::Builder::new()
        .name("weft-main".into())
        .spawn(move || {
            workers.block_on(async {
                let _ = exit_rx.wait_for(|e| *e).await;
                tracing::info!("draining: waiting up to {drain_time:?} for open connections");
                if tokio::time::timeout(drain_time, main_shared.conns.wait_idle())
                    .await
                    .is_err()
                {
                    tracing::warn!("drain time over; closing the remaining connections");
                }
            });
            workers.shutdown_timeout(Duration::from_millis(100));
            done_tx.send_replace(true);
        })
        .map_err(StartError::Runtime)?;
    threads.push(t);

    Ok(ProxyHandle {
        shared,
        admin: admin_bound,
        agent: agent_addrs,
        compile: options.compile,
        done: done_rx,
        threads,
    })
}

/// Binds a listening socket the way a proxy needs it: `SO_REUSEADDR` (restart without waiting
/// for TIME_WAIT), non-blocking, a deep accept backlog.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}
