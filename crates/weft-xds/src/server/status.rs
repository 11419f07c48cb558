//! What the server knows about each connected node: what it sent, what was ACKed or NACKed.
//! This is what `weft proxy-status` prints and what benchmarks and tests await.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use tokio::sync::watch;

use crate::envoy::config::core::v3::Node;
use crate::google::protobuf::Struct;

/// A node's sync state for one type, as `istioctl proxy-status` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncState {
    /// The latest response was ACKed.
    Synced,
    /// A response was sent and is not ACKed yet (or was NACKed).
    Stale,
    /// Nothing was sent for this type.
    NotSent,
}

impl fmt::Display for SyncState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SyncState::Synced => "SYNCED",
            SyncState::Stale => "STALE",
            SyncState::NotSent => "NOT SENT",
        })
    }
}

/// A rejected response, kept so that an operator can see why a proxy is stale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nack {
    /// The version the node rejected.
    pub rejected_version: String,
    /// The nonce of the rejected response.
    pub nonce: String,
    /// The version the node says it still runs.
    pub kept_version: String,
    /// The node's error message (`error_detail.message`).
    pub error: String,
}

/// Per node and type: the latest exchange.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TypeStatus {
    /// Version of the latest response sent (`version_info`, or `system_version_info` in delta).
    pub sent_version: Option<String>,
    /// Nonce of the latest response sent. Empty when the node reconnected with the current
    /// version and nothing needed sending.
    pub sent_nonce: Option<String>,
    /// Version of the latest response the node ACKed.
    pub acked_version: Option<String>,
    /// Nonce of the latest response the node ACKed.
    pub acked_nonce: Option<String>,
    /// The latest NACK, cleared by the next ACK.
    pub nack: Option<Nack>,
    /// Responses sent for this type on this connection.
    pub responses: u64,
    /// Whether the node subscribes to the whole type.
    pub wildcard: bool,
    /// Number of resource names the node subscribed to explicitly.
    pub subscribed_names: usize,
}

impl TypeStatus {
    /// SYNCED, STALE or NOT SENT, as istioctl computes it (sent nonce against acked nonce).
    pub fn state(&self) -> SyncState {
        match &self.sent_nonce {
            None => SyncState::NotSent,
            Some(n) if self.acked_nonce.as_ref() == Some(n) => SyncState::Synced,
            Some(_) => SyncState::Stale,
        }
    }
}

/// What the server knows about one node's ADS connection.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeStatus {
    /// `node.id` from the first request.
    pub node_id: String,
    /// `node.cluster` from the first request.
    pub cluster: String,
    /// `node.metadata` from the first request.
    pub metadata: Option<Struct>,
    /// The snapshot key the node reads.
    pub snapshot_key: String,
    /// Whether the stream is delta (incremental) rather than state of the world.
    pub delta: bool,
    /// Whether the stream is open.
    pub connected: bool,
    /// Server-wide connection number; a reconnect gets a new one.
    pub connection_id: u64,
    /// When the stream opened.
    pub connected_at: SystemTime,
    /// Per type URL.
    pub types: BTreeMap<String, TypeStatus>,
}

impl NodeStatus {
    fn empty(node_id: &str) -> Self {
        NodeStatus {
            node_id: node_id.to_string(),
            cluster: String::new(),
            metadata: None,
            snapshot_key: String::new(),
            delta: false,
            connected: false,
            connection_id: 0,
            connected_at: SystemTime::UNIX_EPOCH,
            types: BTreeMap::new(),
        }
    }

    /// Whether the node ACKed `version` of `type_url` as its latest response.
    pub fn acked(&self, type_url: &str, version: &str) -> bool {
        self.connected
            && self.types.get(type_url).is_some_and(|t| {
                t.state() == SyncState::Synced && t.acked_version.as_deref() == Some(version)
            })
    }
}

/// One node's status, shared by its stream (writer) and by readers and waiters.
struct NodeSlot {
    /// The status of the node's latest connection; waiters subscribe to it.
    tx: watch::Sender<NodeStatus>,
}

#[derive(Default)]
struct Registry {
    /// Node id to slot. Locked only to find, insert or remove a slot, never across an await.
    nodes: Mutex<HashMap<String, Arc<NodeSlot>>>,
    next_connection: AtomicU64,
}

/// The server's view of all nodes; cheap to clone.
#[derive(Clone, Default)]
pub struct StatusRegistry {
    inner: Arc<Registry>,
}

impl fmt::Debug for StatusRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusRegistry")
            .field("nodes", &self.lock().len())
            .finish()
    }
}

impl StatusRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<NodeSlot>>> {
        self.inner
            .nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn slot(&self, node_id: &str) -> Arc<NodeSlot> {
        self.lock()
            .entry(node_id.to_string())
            .or_insert_with(|| {
                Arc::new(NodeSlot {
                    tx: watch::channel(NodeStatus::empty(node_id)).0,
                })
            })
            .clone()
    }

    /// Connected nodes, sorted by id.
    pub fn nodes(&self) -> Vec<NodeStatus> {
        let slots: Vec<Arc<NodeSlot>> = self.lock().values().cloned().collect();
        let mut v: Vec<NodeStatus> = slots
            .iter()
            .map(|s| s.tx.borrow().clone())
            .filter(|s| s.connected)
            .collect();
        v.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        v
    }

    /// One node's status, if it is connected.
    pub fn node(&self, node_id: &str) -> Option<NodeStatus> {
        let slot = self.lock().get(node_id).cloned()?;
        let s = slot.tx.borrow().clone();
        s.connected.then_some(s)
    }

    /// Waits until `pred` holds for node `node_id` (which need not be connected yet). Wrap in
    /// `tokio::time::timeout` to bound the wait.
    pub async fn wait_for(&self, node_id: &str, mut pred: impl FnMut(&NodeStatus) -> bool) {
        let mut rx = {
            // Subscribe under the registry lock so that a disconnect cannot drop the slot between
            // our lookup and our subscription (see `Connection::drop`).
            let mut nodes = self.lock();
            let slot = nodes
                .entry(node_id.to_string())
                .or_insert_with(|| {
                    Arc::new(NodeSlot {
                        tx: watch::channel(NodeStatus::empty(node_id)).0,
                    })
                })
                .clone();
            slot.tx.subscribe()
        };
        // The sender lives in the registry (or a stream) as long as we hold a receiver.
        let _ = rx.wait_for(|s| pred(s)).await;
    }

    /// Waits until node `node_id` has ACKed `version` of `type_url` as its latest response. If the
    /// node's subscription does not cover the change (e.g. an EDS update for a cluster it does
    /// not watch), nothing is pushed and this keeps waiting: use the version the node should get.
    pub async fn wait_acked(&self, node_id: &str, type_url: &str, version: &str) {
        self.wait_for(node_id, |s| s.acked(type_url, version)).await
    }

    /// Registers a new stream of `node`.
    pub(crate) fn connect(&self, node: &Node, snapshot_key: &str, delta: bool) -> Connection {
        let id = self.inner.next_connection.fetch_add(1, Ordering::Relaxed) + 1;
        let slot = self.slot(&node.id);
        slot.tx.send_replace(NodeStatus {
            node_id: node.id.clone(),
            cluster: node.cluster.clone(),
            metadata: node.metadata.clone(),
            snapshot_key: snapshot_key.to_string(),
            delta,
            connected: true,
            connection_id: id,
            connected_at: SystemTime::now(),
            types: BTreeMap::new(),
        });
        Connection {
            registry: self.clone(),
            slot,
            id,
            node_id: node.id.clone(),
        }
    }
}

/// A stream's handle on its node's status; marks the node disconnected when dropped.
pub(crate) struct Connection {
    registry: StatusRegistry,
    slot: Arc<NodeSlot>,
    id: u64,
    pub(crate) node_id: String,
}

impl Connection {
    /// Updates this connection's status of `type_url` (ignored if a newer connection of the
    /// same node took over).
    pub(crate) fn update(&self, type_url: &str, f: impl FnOnce(&mut TypeStatus)) {
        self.slot.tx.send_if_modified(|s| {
            if s.connection_id != self.id {
                return false;
            }
            f(s.types.entry(type_url.to_string()).or_default());
            true
        });
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut nodes = self.registry.lock();
        let mine = self.slot.tx.send_if_modified(|s| {
            if s.connection_id != self.id {
                return false;
            }
            s.connected = false;
            true
        });
        // Keep the slot while someone waits on it, so that a reconnect reaches the waiter.
        if mine && self.slot.tx.receiver_count() == 0 {
            nodes.remove(&self.node_id);
        }
    }
}
