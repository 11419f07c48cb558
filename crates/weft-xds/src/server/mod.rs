//! The ADS server: `StreamAggregatedResources` (state of the world) and
//! `DeltaAggregatedResources` (incremental) over a [`Cache`].
//!
//! One task per stream. It learns the node from the first request, watches the node's snapshot
//! key in the cache, and wakes on either a request or a new snapshot of that key only. Pushes are
//! computed per type from what the node last received, so a type is pushed only when the node's
//! view of it changed. Debouncing config changes is the control plane's job, not this one's.
//!
//! ```no_run
//! # async fn f(clusters: Vec<weft_xds::cache::Resource>) -> Result<(), Box<dyn std::error::Error>> {
//! use weft_xds::cache::{Cache, Snapshot};
//! use weft_xds::server::{AdsServer, serve_with};
//! use weft_xds::type_url;
//!
//! let cache = Cache::new(); // one snapshot per node id; Cache::with_key_fn to share
//! let translate = cache.clone();
//! let ads = AdsServer::new(cache.clone())
//!     // Compute a node's config when it connects, so its first request is answered at once.
//!     .on_connect(move |node| {
//!         let _ = translate.set_snapshot(&node.id, Snapshot::new().with(type_url::CLUSTER, []));
//!     });
//! let server = serve_with("0.0.0.0:15010".parse()?, ads).await?;
//!
//! // Later, after a debounced config change:
//! let summary = cache.set_resources("sidecar~10.0.0.1~a.default~default.svc.cluster.local",
//!     type_url::CLUSTER, clusters)?;
//! if let Some(v) = summary.version(type_url::CLUSTER) {
//!     server.status().wait_acked("sidecar~10.0.0.1~a.default~default.svc.cluster.local",
//!         type_url::CLUSTER, v).await;
//! }
//! for n in server.status().nodes() {
//!     for (t, s) in &n.types {
//!         println!("{} {} {} {:?}", n.node_id, t, s.state(), s.nack.as_ref().map(|x| &x.error));
//!     }
//! }
//! server.shutdown().await?;
//! # Ok(()) }
//! ```

mod delta;
mod sotw;
pub mod status;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Status, Streaming};
use tracing::{debug, info};

use crate::cache::{Cache, Snapshot};
use crate::envoy::config::core::v3::Node;
use crate::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use status::Connection;
pub use status::{Nack, NodeStatus, StatusRegistry, SyncState, TypeStatus};
pub use wire::AdsService;
use wire::Wire;

/// Largest message the server accepts or sends; config for a big mesh exceeds gRPC's 4 MiB.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// Responses queued per stream before the stream's task waits for the node to read.
const STREAM_BUFFER: usize = 16;

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen for xDS on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("xDS gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The server task panicked or was cancelled.
    #[error("xDS server task ended abnormally: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Called with a node's identity when its stream opens or closes.
pub type NodeHook = Arc<dyn Fn(&Node) + Send + Sync>;

/// The ADS service over a cache; register it in a tonic server with [`AdsServer::into_service`]
/// or start a whole server with [`serve`].
#[derive(Clone)]
pub struct AdsServer {
    cache: Cache,
    status: StatusRegistry,
    /// Runs when a node's first request arrives, before its snapshot is read: the control plane
    /// can compute and store the node's config here, so the first response goes out at once.
    /// It runs on the stream's task: keep it short or hand heavy work to another task.
    on_connect: Option<NodeHook>,
    /// Runs when a node's stream ends (e.g. to drop a per-node snapshot).
    on_disconnect: Option<NodeHook>,
    /// Bumped to end every stream open at that moment (server shutdown, forced reconnects);
    /// streams opened later are unaffected.
    shutdown: watch::Receiver<u64>,
    shutdown_tx: Arc<watch::Sender<u64>>,
}

impl std::fmt::Debug for AdsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdsServer")
            .field("cache", &self.cache)
            .field("status", &self.status)
            .field("on_connect", &self.on_connect.is_some())
            .field("on_disconnect", &self.on_disconnect.is_some())
            .finish()
    }
}

impl AdsServer {
    /// A server over `cache`.
    pub fn new(cache: Cache) -> Self {
        let (tx, rx) = watch::channel(0u64);
        AdsServer {
            cache,
            status: StatusRegistry::default(),
            on_connect: None,
            on_disconnect: None,
            shutdown: rx,
            shutdown_tx: Arc::new(tx),
        }
    }

    /// Sets the hook run with the node of every new stream (from its first request), before
    /// the node's snapshot is read.
    pub fn on_connect(mut self, f: impl Fn(&Node) + Send + Sync + 'static) -> Self {
        self.on_connect = Some(Arc::new(f));
        self
    }

    /// Sets the hook run with the node of every stream that ends.
    pub fn on_disconnect(mut self, f: impl Fn(&Node) + Send + Sync + 'static) -> Self {
        self.on_disconnect = Some(Arc::new(f));
        self
    }

    /// The per-node status (what `proxy-status` shows; `wait_acked` for tests and benchmarks).
    pub fn status(&self) -> &StatusRegistry {
        &self.status
    }

    /// The cache this server reads.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Ends every open stream; nodes then reconnect (to this server or another). Streams
    /// opened afterwards are served as usual.
    pub fn close_streams(&self) {
        self.shutdown_tx.send_modify(|g| *g += 1);
    }

    /// The gRPC service (`AggregatedDiscoveryService`), with message limits raised to
    /// [`MAX_MESSAGE_SIZE`].
    pub fn into_service(self) -> AdsService {
        AdsService::new(self)
    }
}

/// The node of a stream's first request, which must name itself.
fn node_of(first: Option<&Node>) -> Result<Node, Status> {
    match first {
        Some(n) if !n.id.is_empty() => Ok(n.clone()),
        _ => Err(Status::invalid_argument(
            "the first xDS request on a stream must carry node.id",
        )),
    }
}

/// Distinct type URLs one stream may use; Envoy uses at most a dozen. Bounds what a
/// misbehaving client can make a stream remember.
const MAX_TYPES_PER_STREAM: usize = 64;

fn check_type_url(type_url: &str, known: bool, count: usize) -> Result<(), Status> {
    if type_url.is_empty() {
        return Err(Status::invalid_argument(
            "ADS requests must set type_url (xDS aggregated discovery)",
        ));
    }
    if !known && count >= MAX_TYPES_PER_STREAM {
        return Err(Status::invalid_argument(format!(
            "more than {MAX_TYPES_PER_STREAM} resource types on one ADS stream"
        )));
    }
    Ok(())
}

/// A stream's wait for its next event.
enum Event<R> {
    Request(R),
    Snapshot,
    End,
}

async fn next_event<R>(
    inbound: &mut Streaming<R>,
    snapshots: &mut watch::Receiver<Option<Arc<Snapshot>>>,
    shutdown: &mut watch::Receiver<u64>,
    node_id: &str,
) -> Event<R> {
    tokio::select! {
        // Any bump after the stream started (its receiver marked the start value seen) ends it.
        _ = shutdown.changed() => Event::End,
        msg = inbound.message() => match msg {
            Ok(Some(r)) => Event::Request(r),
            Ok(None) => Event::End,
            Err(e) => {
                debug!(node = node_id, error = %e, "xDS stream broke");
                Event::End
            }
        },
        changed = snapshots.changed() => match changed {
            Ok(()) => Event::Snapshot,
            Err(_) => Event::End,
        },
    }
}

/// What differs between a state-of-the-world and a delta stream: the message types and the
/// per-stream protocol state. [`run_stream`] is the one loop both share.
trait StreamProtocol: Send + 'static {
    type Request: Send + 'static;
    type Response: Send + 'static;
    /// `"SotW"` or `"delta"`, for logs.
    const NAME: &'static str;
    /// Whether the status registry records the stream as delta.
    const DELTA: bool;
    fn new() -> Self;
    fn node(req: &Self::Request) -> Option<&Node>;
    fn type_url(req: &Self::Request) -> &str;
    fn has_type(&self, type_url: &str) -> bool;
    fn type_count(&self) -> usize;
    fn on_request(
        &mut self,
        req: Self::Request,
        snapshot: Option<&Snapshot>,
        conn: &Connection,
    ) -> Option<Self::Response>;
    fn on_snapshot(&mut self, snapshot: &Snapshot, conn: &Connection) -> Vec<Self::Response>;
}

impl StreamProtocol for sotw::SotwStream {
    type Request = DiscoveryRequest;
    type Response = Wire;
    const NAME: &'static str = "SotW";
    const DELTA: bool = false;
    fn new() -> Self {
        sotw::SotwStream::new()
    }
    fn node(req: &DiscoveryRequest) -> Option<&Node> {
        req.node.as_ref()
    }
    fn type_url(req: &DiscoveryRequest) -> &str {
        &req.type_url
    }
    fn has_type(&self, type_url: &str) -> bool {
        sotw::SotwStream::has_type(self, type_url)
    }
    fn type_count(&self) -> usize {
        sotw::SotwStream::type_count(self)
    }
    fn on_request(
        &mut self,
        req: DiscoveryRequest,
        snapshot: Option<&Snapshot>,
        conn: &Connection,
    ) -> Option<Wire> {
        sotw::SotwStream::on_request(self, req, snapshot, conn)
    }
    fn on_snapshot(&mut self, snapshot: &Snapshot, conn: &Connection) -> Vec<Wire> {
        sotw::SotwStream::on_snapshot(self, snapshot, conn)
    }
}

impl StreamProtocol for delta::DeltaStream {
    type Request = DeltaDiscoveryRequest;
    type Response = Wire;
    const NAME: &'static str = "delta";
    const DELTA: bool = true;
    fn new() -> Self {
        delta::DeltaStream::new()
    }
    fn node(req: &DeltaDiscoveryRequest) -> Option<&Node> {
        req.node.as_ref()
    }
    fn type_url(req: &DeltaDiscoveryRequest) -> &str {
        &req.type_url
    }
    fn has_type(&self, type_url: &str) -> bool {
        delta::DeltaStream::has_type(self, type_url)
    }
    fn type_count(&self) -> usize {
        delta::DeltaStream::type_count(self)
    }
    fn on_request(
        &mut self,
        req: DeltaDiscoveryRequest,
        snapshot: Option<&Snapshot>,
        conn: &Connection,
    ) -> Option<Wire> {
        delta::DeltaStream::on_request(self, req, snapshot, conn)
    }
    fn on_snapshot(&mut self, snapshot: &Snapshot, conn: &Connection) -> Vec<Wire> {
        delta::DeltaStream::on_snapshot(self, snapshot, conn)
    }
}

/// One ADS stream: identify the node from its first request, watch its snapshot, and answer
/// requests and snapshot changes until the client, the server or a protocol error ends it.
async fn run_stream<P: StreamProtocol>(
    server: AdsServer,
    mut inbound: Streaming<P::Request>,
    tx: mpsc::Sender<Result<P::Response, Status>>,
) {
    let first = match inbound.message().await {
        Ok(Some(r)) => r,
        _ => return,
    };
    let node = match node_of(P::node(&first)) {
        Ok(n) => n,
        Err(s) => {
            let _ = tx.send(Err(s)).await;
            return;
        }
    };
    if let Some(hook) = &server.on_connect {
        hook(&node);
    }
    let key = server.cache.key_for(&node);
    let mut snapshots = server.cache.watch(&key);
    let mut shutdown = server.shutdown.clone();
    shutdown.mark_unchanged();
    let conn = server.status.connect(&node, &key, P::DELTA);
    info!(node = %node.id, cluster = %node.cluster, key = %key, "xDS stream opened ({})", P::NAME);
    let mut state = P::new();
    let mut next = Some(first);
    loop {
        let out: Vec<P::Response> = if let Some(req) = next.take() {
            if let Err(s) = check_type_url(
                P::type_url(&req),
                state.has_type(P::type_url(&req)),
                state.type_count(),
            ) {
                let _ = tx.send(Err(s)).await;
                break;
            }
            let snap = snapshots.borrow().clone();
            state
                .on_request(req, snap.as_deref(), &conn)
                .into_iter()
                .collect()
        } else {
            match next_event(&mut inbound, &mut snapshots, &mut shutdown, &node.id).await {
                Event::Request(r) => {
                    next = Some(r);
                    continue;
                }
                Event::Snapshot => {
                    let snap = snapshots.borrow_and_update().clone();
                    match snap {
                        Some(s) => state.on_snapshot(&s, &conn),
                        None => Vec::new(),
                    }
                }
                Event::End => break,
            }
        };
        for r in out {
            if tx.send(Ok(r)).await.is_err() {
                break;
            }
        }
    }
    drop(conn);
    server.cache.unwatch(&key, snapshots);
    if let Some(hook) = &server.on_disconnect {
        hook(&node);
    }
    info!(node = %node.id, "xDS stream closed ({})", P::NAME);
}

/// A running xDS server started by [`serve`].
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    server: AdsServer,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl ServerHandle {
    /// The address the server listens on (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's per-node status.
    pub fn status(&self) -> &StatusRegistry {
        self.server.status()
    }

    /// The ADS service (its cache and status).
    pub fn server(&self) -> &AdsServer {
        &self.server
    }

    /// Stops listening, ends every stream, and waits (at most 5 s, then aborts) for the server
    /// to finish.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        self.server.close_streams();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match tokio::time::timeout(Duration::from_secs(5), &mut self.task).await {
            Ok(r) => Ok(r??),
            Err(_) => {
                self.task.abort();
                Ok(())
            }
        }
    }
}

/// Starts an ADS server over `cache` on `addr` (`127.0.0.1:0` in tests; the real port is
/// [`ServerHandle::local_addr`]).
pub async fn serve(addr: SocketAddr, cache: Cache) -> Result<ServerHandle, ServerError> {
    serve_with(addr, AdsServer::new(cache)).await
}

/// Like [`serve`], with a server built by the caller.
pub async fn serve_with(addr: SocketAddr, server: AdsServer) -> Result<ServerHandle, ServerError> {
    let bind = |source| ServerError::Bind { addr, source };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(bind)?;
    // A restarted server rebinds its port while old connections sit in TIME_WAIT.
    socket.set_reuseaddr(true).map_err(bind)?;
    socket.bind(addr).map_err(bind)?;
    let listener = socket.listen(1024).map_err(bind)?;
    let local = listener.local_addr().map_err(bind)?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let svc = server.clone().into_service();
    // xDS responses are small bursts that should leave at once.
    let incoming = TcpListenerStream::new(listener).map(|s| {
        if let Ok(s) = &s {
            let _ = s.set_nodelay(true);
        }
        s
    });
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .add_service(svc)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop_rx.await;
            })
            .await
    });
    info!(addr = %local, "xDS server listening");
    Ok(ServerHandle {
        addr: local,
        server,
        stop: Some(stop_tx),
        task,
    })
}
