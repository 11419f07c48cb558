//! The ADS client the proxy uses to receive its config.
//!
//! The caller says what to subscribe to (CDS and LDS as wildcards, then EDS and RDS for the
//! names it learned from them) and hands every response to a callback. The callback compiles
//! the resources; `Ok` ACKs them, `Err(message)` NACKs them and the client keeps its previous
//! state and version. When the stream breaks the client reconnects with exponential backoff and
//! jitter, and resubscribes with the versions it has, so a server that still has the same
//! config need not resend it.
//!
//! ```no_run
//! # async fn f() -> Result<(), weft_xds::client::ClientError> {
//! use weft_xds::client::{AdsClient, ClientConfig, Subscription, Update};
//! use weft_xds::envoy::config::core::v3::Node;
//! use weft_xds::type_url;
//!
//! let node = Node { id: "sidecar~10.0.0.1~reviews-v1.default~default.svc.cluster.local".into(), ..Default::default() };
//! let mut client = AdsClient::new(ClientConfig::new("http://127.0.0.1:15010", node))?;
//! let subs = client.subscriber();
//! client.subscribe(type_url::CLUSTER, Subscription::Wildcard);
//! client.subscribe(type_url::LISTENER, Subscription::Wildcard);
//! client.start(move |u: &Update<'_>| {
//!     if u.type_url == type_url::CLUSTER {
//!         // EDS for the clusters just learned (a real proxy subscribes only EDS clusters).
//!         subs.subscribe(type_url::CLUSTER_LOAD_ASSIGNMENT, Subscription::names(u.resources.keys()));
//!     }
//!     Ok(()) // or Err("why the config is invalid".into()) to NACK it
//! })?;
//! # Ok(()) }
//! ```

mod delta;
mod sotw;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, info};

use crate::cache::is_wildcard_type;
use crate::envoy::config::core::v3::Node;
use crate::google::protobuf::Any;
use crate::google::rpc::Status as RpcStatus;

/// Why the client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server address is not a valid URI.
    #[error("invalid xDS server address {addr:?}: {error} (expected e.g. http://127.0.0.1:15010)")]
    InvalidAddress {
        /// The address given.
        addr: String,
        /// The parser's message.
        error: String,
    },
    /// [`AdsClient::start`] was called twice.
    #[error("the ADS client is already started")]
    AlreadyStarted,
}

/// Which ADS variant to speak.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// `StreamAggregatedResources`: every response carries all subscribed resources of a type.
    #[default]
    Sotw,
    /// `DeltaAggregatedResources`: responses carry only changed and removed resources.
    Delta,
}

/// What to subscribe to for one type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subscription {
    /// Every resource of the type (LDS and CDS).
    Wildcard,
    /// The named resources only (RDS route names, EDS cluster names, SDS secret names).
    Names(BTreeSet<String>),
}

impl Subscription {
    /// An explicit subscription to `names`.
    pub fn names<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Self {
        Subscription::Names(names.into_iter().map(|s| s.as_ref().to_string()).collect())
    }

    /// Whether resource `name` is in scope.
    pub fn covers(&self, name: &str) -> bool {
        match self {
            Subscription::Wildcard => true,
            Subscription::Names(n) => n.contains(name),
        }
    }

    /// Whether everything `other` covers is covered by `self`.
    fn includes(&self, other: &Subscription) -> bool {
        match (self, other) {
            (Subscription::Wildcard, _) => true,
            (Subscription::Names(_), Subscription::Wildcard) => false,
            (Subscription::Names(a), Subscription::Names(b)) => b.is_subset(a),
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Subscription::Names(n) if n.is_empty())
    }

    /// The names a request carries: a wildcard is "no names" for LDS/CDS (understood by every
    /// server) and `*` for other types.
    fn wire_names(&self, type_url: &str) -> Vec<String> {
        match self {
            Subscription::Wildcard if is_wildcard_type(type_url) => Vec::new(),
            Subscription::Wildcard => vec!["*".to_string()],
            Subscription::Names(n) => n.iter().cloned().collect(),
        }
    }
}

/// One response, as the callback sees it.
#[derive(Debug)]
pub struct Update<'a> {
    /// The type URL of the resources.
    pub type_url: &'a str,
    /// The response's version (`version_info`, or `system_version_info` in delta).
    pub version: &'a str,
    /// The complete state of the type after this response, by resource name (in delta too:
    /// the client applies the changes for the callback).
    pub resources: &'a BTreeMap<String, Any>,
    /// Names added or changed by this response.
    pub updated: &'a [String],
    /// Names removed by this response (in delta, also names the server says do not exist).
    pub removed: &'a [String],
}

/// The client's view of one type, for status pages and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientTypeStatus {
    /// The type URL.
    pub type_url: String,
    /// What the caller subscribed to.
    pub subscription: Subscription,
    /// The version of the state the client accepted last (empty before the first).
    pub version: String,
    /// The nonce of the latest response on the current stream.
    pub nonce: String,
    /// Number of resources held.
    pub resources: usize,
    /// Responses received, over all streams.
    pub responses: u64,
    /// Responses ACKed.
    pub acks: u64,
    /// Responses NACKed.
    pub nacks: u64,
    /// The callback's error for the latest NACK, cleared by the next ACK.
    pub last_error: Option<String>,
}

/// The client's connection and per-type state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientStatus {
    /// Whether a stream is open.
    pub connected: bool,
    /// Streams opened so far (1 + reconnects).
    pub connects: u64,
    /// Per type, in subscription order.
    pub types: Vec<ClientTypeStatus>,
}

impl ClientStatus {
    /// The status of one type.
    pub fn get(&self, type_url: &str) -> Option<&ClientTypeStatus> {
        self.types.iter().find(|t| t.type_url == type_url)
    }
}

/// How to reach the server and how to behave.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The server URI, e.g. `http://127.0.0.1:15010`.
    pub server: String,
    /// Who this proxy is (sent on the first request of every stream).
    pub node: Node,
    /// State of the world (default) or delta.
    pub mode: Mode,
    /// First wait after a broken stream; doubles up to `max_backoff`, with jitter.
    pub initial_backoff: Duration,
    /// Longest wait between reconnects.
    pub max_backoff: Duration,
    /// Limit for one connection attempt.
    pub connect_timeout: Duration,
    /// Largest response accepted.
    pub max_message_size: usize,
}

impl ClientConfig {
    /// State of the world, backoff from 100 ms to 15 s, 5 s connect timeout.
    pub fn new(server: impl Into<String>, node: Node) -> Self {
        ClientConfig {
            server: server.into(),
            node,
            mode: Mode::Sotw,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            max_message_size: crate::server::MAX_MESSAGE_SIZE,
        }
    }

    /// Speak delta xDS.
    pub fn delta(mut self) -> Self {
        self.mode = Mode::Delta;
        self
    }

    /// Sets the reconnect backoff range.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }
}

/// The callback that receives responses; `Err` NACKs with its message.
pub type Handler = Box<dyn FnMut(&Update<'_>) -> Result<(), String> + Send>;

enum Command {
    Subscribe(String, Subscription),
    Shutdown,
}

/// A cloneable handle to change subscriptions, usable inside the callback (changes are sent
/// after the current response is ACKed, as Envoy orders them).
#[derive(Clone, Debug)]
pub struct Subscriber {
    tx: mpsc::UnboundedSender<Command>,
}

impl Subscriber {
    /// Sets the subscription of `type_url` (replacing the previous one).
    pub fn subscribe(&self, type_url: &str, sub: Subscription) {
        // The task is gone only after shutdown, when nothing needs subscribing.
        let _ = self.tx.send(Command::Subscribe(type_url.to_string(), sub));
    }

    /// Drops every resource name of `type_url`.
    pub fn unsubscribe(&self, type_url: &str) {
        self.subscribe(type_url, Subscription::Names(BTreeSet::new()));
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Subscribe(t, s) => write!(f, "Subscribe({t}, {s:?})"),
            Command::Shutdown => f.write_str("Shutdown"),
        }
    }
}

/// An ADS client: create, subscribe, start with a callback.
#[derive(Debug)]
pub struct AdsClient {
    config: ClientConfig,
    endpoint: Endpoint,
    subscriber: Subscriber,
    /// Taken by `start`.
    commands: Option<mpsc::UnboundedReceiver<Command>>,
    status_tx: watch::Sender<ClientStatus>,
    status: watch::Receiver<ClientStatus>,
    task: Option<JoinHandle<()>>,
}

impl AdsClient {
    /// A client for `config.server`; nothing connects until [`AdsClient::start`].
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let endpoint = Endpoint::from_shared(config.server.clone())
            .map_err(|e| ClientError::InvalidAddress {
                addr: config.server.clone(),
                error: e.to_string(),
            })?
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        let (tx, rx) = mpsc::unbounded_channel();
        let (status_tx, status) = watch::channel(ClientStatus::default());
        Ok(AdsClient {
            config,
            endpoint,
            subscriber: Subscriber { tx },
            commands: Some(rx),
            status_tx,
            status,
            task: None,
        })
    }

    /// A handle for changing subscriptions from elsewhere (e.g. the callback).
    pub fn subscriber(&self) -> Subscriber {
        self.subscriber.clone()
    }

    /// Sets the subscription of `type_url`. Types are (re)subscribed in the order they were
    /// first subscribed: subscribe CDS before EDS and LDS before RDS.
    pub fn subscribe(&self, type_url: &str, sub: Subscription) {
        self.subscriber.subscribe(type_url, sub)
    }

    /// Connects and keeps the stream up on the current tokio runtime, calling `handler` for
    /// every response.
    pub fn start(
        &mut self,
        handler: impl FnMut(&Update<'_>) -> Result<(), String> + Send + 'static,
    ) -> Result<(), ClientError> {
        let commands = self.commands.take().ok_or(ClientError::AlreadyStarted)?;
        let worker = Worker {
            config: self.config.clone(),
            endpoint: self.endpoint.clone(),
            commands,
            handler: Box::new(handler),
            status: self.status_tx.clone(),
            types: Vec::new(),
        };
        self.task = Some(tokio::spawn(worker.run()));
        Ok(())
    }

    /// The current status.
    pub fn status(&self) -> ClientStatus {
        self.status.borrow().clone()
    }

    /// Waits until `pred` holds for the status (wrap in `tokio::time::timeout` to bound it).
    pub async fn wait_for(&self, mut pred: impl FnMut(&ClientStatus) -> bool) {
        let mut rx = self.status.clone();
        // The sender lives in `self`, so this ends only when `pred` holds.
        let _ = rx.wait_for(|s| pred(s)).await;
    }

    /// Closes the stream and stops reconnecting.
    pub async fn shutdown(mut self) {
        let _ = self.subscriber.tx.send(Command::Shutdown);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for AdsClient {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Per type state, kept across streams.
struct TypeState {
    type_url: String,
    /// What the caller wants.
    sub: Subscription,
    /// The accepted resources.
    resources: BTreeMap<String, Any>,
    /// Delta: the version of each accepted resource.
    versions: HashMap<String, String>,
    /// The accepted version.
    version: String,
    /// The subscription `version` was accepted under (SotW reconnects send `version` only
    /// when it still covers what is asked).
    accepted_sub: Option<Subscription>,
    /// Current stream: latest nonce received.
    nonce: String,
    /// Current stream: the subscription the server knows.
    server_sub: Option<Subscription>,
    stats: ClientTypeStatus,
}

impl TypeState {
    fn new(type_url: &str, sub: Subscription) -> Self {
        TypeState {
            type_url: type_url.to_string(),
            sub: sub.clone(),
            resources: BTreeMap::new(),
            versions: HashMap::new(),
            version: String::new(),
            accepted_sub: None,
            nonce: String::new(),
            server_sub: None,
            stats: ClientTypeStatus {
                type_url: type_url.to_string(),
                subscription: sub,
                version: String::new(),
                nonce: String::new(),
                resources: 0,
                responses: 0,
                acks: 0,
                nacks: 0,
                last_error: None,
            },
        }
    }

    /// Drops what the caller no longer subscribes to.
    fn retain_subscribed(&mut self) {
        let sub = &self.sub;
        self.resources.retain(|n, _| sub.covers(n));
        self.versions.retain(|n, _| sub.covers(n));
    }

    fn error_detail(message: &str) -> RpcStatus {
        RpcStatus {
            // INVALID_ARGUMENT, as Envoy reports rejected config.
            code: 3,
            message: message.to_string(),
            details: Vec::new(),
        }
    }
}

/// How a stream ended.
enum StreamEnd {
    /// The caller shut the client down.
    Shutdown,
    /// The stream broke; `healthy` if it received at least one response (resets the backoff).
    Broken { healthy: bool },
}

/// The background task: owns the subscriptions and the accepted state.
struct Worker {
    config: ClientConfig,
    endpoint: Endpoint,
    commands: mpsc::UnboundedReceiver<Command>,
    handler: Handler,
    status: watch::Sender<ClientStatus>,
    types: Vec<TypeState>,
}

impl Worker {
    async fn run(mut self) {
        let mut backoff = self.config.initial_backoff;
        loop {
            // Apply queued subscriptions first, so the first requests carry them.
            while let Ok(cmd) = self.commands.try_recv() {
                if self.apply(cmd).is_err() {
                    return;
                }
            }
            let end = match self.endpoint.connect().await {
                Ok(channel) => match self.config.mode {
                    Mode::Sotw => self.sotw_stream(channel).await,
                    Mode::Delta => self.delta_stream(channel).await,
                },
                Err(e) => {
                    debug!(server = %self.config.server, error = %e, "xDS connect failed");
                    StreamEnd::Broken { healthy: false }
                }
            };
            self.status.send_modify(|s| s.connected = false);
            match end {
                StreamEnd::Shutdown => return,
                StreamEnd::Broken { healthy } => {
                    if healthy {
                        backoff = self.config.initial_backoff;
                    }
                }
            }
            let wait = jitter(backoff);
            debug!(server = %self.config.server, wait_ms = wait.as_millis() as u64, "xDS reconnect after backoff");
            let sleep = tokio::time::sleep(wait);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    cmd = self.commands.recv() => match cmd {
                        Some(cmd) => if self.apply(cmd).is_err() { return },
                        None => return,
                    },
                }
            }
            backoff = (backoff * 2).min(self.config.max_backoff);
        }
    }

    /// Applies a command to the local state; `Err` means shut down.
    fn apply(&mut self, cmd: Command) -> Result<Option<usize>, ()> {
        match cmd {
            Command::Shutdown => Err(()),
            Command::Subscribe(type_url, sub) => {
                let idx = match self.types.iter().position(|t| t.type_url == type_url) {
                    Some(i) => {
                        let t = &mut self.types[i];
                        if t.sub == sub {
                            return Ok(None);
                        }
                        t.sub = sub;
                        t.retain_subscribed();
                        i
                    }
                    None => {
                        self.types.push(TypeState::new(&type_url, sub));
                        self.types.len() - 1
                    }
                };
                self.publish();
                Ok(Some(idx))
            }
        }
    }

    fn publish(&self) {
        let types: Vec<ClientTypeStatus> = self
            .types
            .iter()
            .map(|t| {
                let mut s = t.stats.clone();
                s.subscription = t.sub.clone();
                s.version = t.version.clone();
                s.nonce = t.nonce.clone();
                s.resources = t.resources.len();
                s
            })
            .collect();
        self.status.send_modify(|s| s.types = types);
    }

    fn on_connected(&self) {
        info!(server = %self.config.server, node = %self.config.node.id, mode = ?self.config.mode, "xDS stream open");
        self.status.send_modify(|s| {
            s.connected = true;
            s.connects += 1;
        });
    }

    fn grpc(
        &self,
        channel: Channel,
    ) -> crate::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient<Channel>
    {
        crate::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(self.config.max_message_size)
            .max_encoding_message_size(self.config.max_message_size)
    }
}

/// A wait in [d/2, d]: spreads the reconnects of many proxies after a control-plane restart.
fn jitter(d: Duration) -> Duration {
    let r = RandomState::new().hash_one(std::time::Instant::now());
    let half = d / 2;
    let extra = half.as_nanos() as u64;
    half + Duration::from_nanos(if extra == 0 { 0 } else { r % (extra + 1) })
}
