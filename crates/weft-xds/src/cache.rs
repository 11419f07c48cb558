//! The versioned resource store that the control plane writes and the ADS server reads.
//!
//! The control plane translates its model into Envoy resources and stores them here under a
//! *snapshot key*: a node's own id (per-proxy config) or the name of a group of nodes that share
//! the same config. The server resolves each connecting node to its key ([`Cache::key_for`]) and
//! watches that key only, so an update that affects one proxy costs O(that proxy's resources),
//! whatever the number of connected proxies.
//!
//! Versions are content hashes: a resource's version is the hash of its encoded bytes, and a
//! type's version is derived from the (name, version) pairs of its resources. So an update bumps
//! versions only for what changed, and a restarted control plane that computes the same config
//! produces the same versions, which lets a reconnecting proxy that already has them skip the
//! resend.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, Weak};

use bytes::Bytes;
use prost::Message;
use tokio::sync::watch;

use crate::envoy::config::core::v3::Node;
use crate::envoy::service::discovery::v3::Resource as DeltaResource;
use crate::google::protobuf::Any;
use crate::type_url;

/// Why a resource could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The cache derives names only for the xDS types it knows; others need an explicit name.
    #[error(
        "cannot derive the name of a resource of type {0}: build it with Resource::new(name, body)"
    )]
    UnknownNameField(String),
    /// The resource bytes did not decode far enough to read the name.
    #[error("resource of type {type_url} does not decode: {error}")]
    Decode {
        /// The resource's type URL.
        type_url: String,
        /// The protobuf decoder's message.
        error: String,
    },
    /// A resource's `Any.type_url` differs from the type it is stored under.
    #[error("resource {name} has type {actual} but was stored under {expected}")]
    TypeMismatch {
        /// The resource's name.
        name: String,
        /// The type URL the caller stored it under.
        expected: String,
        /// The type URL inside the resource.
        actual: String,
    },
}

/// The first field of every named xDS resource type weft serves (`Listener.name`,
/// `Cluster.name`, `RouteConfiguration.name`, `ClusterLoadAssignment.cluster_name`,
/// `Secret.name`, ...): decoding only it skips the rest of the message cheaply.
#[derive(Clone, PartialEq, prost::Message)]
struct NameOnly {
    #[prost(string, tag = "1")]
    name: String,
}

/// Types whose field 1 is the resource name.
const NAME_IN_FIELD_1: &[&str] = &[
    type_url::LISTENER,
    type_url::CLUSTER,
    type_url::ROUTE_CONFIGURATION,
    type_url::CLUSTER_LOAD_ASSIGNMENT,
    type_url::SECRET,
    "type.googleapis.com/envoy.config.route.v3.ScopedRouteConfiguration",
    "type.googleapis.com/envoy.config.route.v3.VirtualHost",
    "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
    "type.googleapis.com/envoy.service.runtime.v3.Runtime",
];

const DISCOVERY_RESOURCE: &str = "type.googleapis.com/envoy.service.discovery.v3.Resource";

/// Reads the name of an xDS resource from its encoded form, as a client must for
/// state-of-the-world responses (which carry bare `Any`s). A resource wrapped in
/// `envoy.service.discovery.v3.Resource` (TTL wrappers) gives the wrapper's name.
pub fn resource_name(any: &Any) -> Result<String, CacheError> {
    if any.type_url == DISCOVERY_RESOURCE {
        let r = DeltaResource::decode(any.value.as_slice()).map_err(|e| CacheError::Decode {
            type_url: any.type_url.clone(),
            error: e.to_string(),
        })?;
        return Ok(r.name);
    }
    if !NAME_IN_FIELD_1.contains(&any.type_url.as_str()) {
        return Err(CacheError::UnknownNameField(any.type_url.clone()));
    }
    NameOnly::decode(any.value.as_slice())
        .map(|n| n.name)
        .map_err(|e| CacheError::Decode {
            type_url: any.type_url.clone(),
            error: e.to_string(),
        })
}

/// Whether a type is subscribed to as a whole when a client names no resources (LDS and CDS in
/// Envoy's terms), rather than resource by resource (RDS, EDS, SDS).
pub fn is_wildcard_type(type_url: &str) -> bool {
    !matches!(
        type_url,
        type_url::ROUTE_CONFIGURATION | type_url::CLUSTER_LOAD_ASSIGNMENT | type_url::SECRET
    )
}

fn hash_hex(h: u64) -> String {
    format!("{h:016x}")
}

/// One named resource with its version, as stored and served.
///
/// A resource is encoded for the wire once, on first use, and the bytes are shared by every
/// stream that sends it (see [`Resource::sotw_entry`]).
#[derive(Clone)]
pub struct Resource {
    /// The resource name clients subscribe to (`outbound|9080||reviews...`, `9080`, ...).
    pub name: String,
    /// Opaque version; by default a hash of `body`, so equal content has equal versions.
    pub version: String,
    /// The encoded resource.
    pub body: Any,
    /// `DiscoveryResponse.resources` entry (field 2: tag, length, `Any`), made on first use.
    sotw_wire: OnceLock<Bytes>,
    /// `DeltaDiscoveryResponse.resources` entry (field 2: tag, length, `Resource`).
    delta_wire: OnceLock<Bytes>,
}

impl PartialEq for Resource {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.version == other.version && self.body == other.body
    }
}

impl fmt::Debug for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resource")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("type_url", &self.body.type_url)
            .field("bytes", &self.body.value.len())
            .finish()
    }
}

impl Resource {
    /// A resource named explicitly, versioned by the hash of its content.
    pub fn new(name: impl Into<String>, body: Any) -> Self {
        let mut h = DefaultHasher::new();
        body.type_url.hash(&mut h);
        body.value.hash(&mut h);
        Resource {
            name: name.into(),
            version: hash_hex(h.finish()),
            body,
            sotw_wire: OnceLock::new(),
            delta_wire: OnceLock::new(),
        }
    }

    /// A resource whose name is read from its body (see [`resource_name`]).
    pub fn from_any(body: Any) -> Result<Self, CacheError> {
        let name = resource_name(&body)?;
        Ok(Resource::new(name, body))
    }

    /// A resource from a typed Envoy message (`Cluster`, `Listener`, ...), named from its body.
    pub fn from_message<M: prost::Name>(msg: &M) -> Result<Self, CacheError> {
        Resource::from_any(Any {
            type_url: M::type_url(),
            value: msg.encode_to_vec(),
        })
    }

    /// A resource with a version chosen by the caller (e.g. a config revision).
    pub fn with_version(name: impl Into<String>, version: impl Into<String>, body: Any) -> Self {
        Resource {
            name: name.into(),
            version: version.into(),
            body,
            sotw_wire: OnceLock::new(),
            delta_wire: OnceLock::new(),
        }
    }

    /// The delta-xDS wire form of this resource.
    pub fn to_delta(&self) -> DeltaResource {
        DeltaResource {
            name: self.name.clone(),
            version: self.version.clone(),
            resource: Some(self.body.clone()),
            ..Default::default()
        }
    }

    /// This resource as one entry of `DiscoveryResponse.resources` (field 2), encoded once and
    /// shared: a state-of-the-world response is its own fields followed by such entries.
    pub fn sotw_entry(&self) -> Bytes {
        self.sotw_wire
            .get_or_init(|| {
                let mut buf = Vec::with_capacity(self.body.encoded_len() + 8);
                prost::encoding::message::encode(2, &self.body, &mut buf);
                Bytes::from(buf)
            })
            .clone()
    }

    /// This resource as one entry of `DeltaDiscoveryResponse.resources` (field 2), encoded
    /// once and shared.
    pub fn delta_entry(&self) -> Bytes {
        self.delta_wire
            .get_or_init(|| {
                let d = self.to_delta();
                let mut buf = Vec::with_capacity(d.encoded_len() + 8);
                prost::encoding::message::encode(2, &d, &mut buf);
                Bytes::from(buf)
            })
            .clone()
    }

    fn entry_hash(name: &str, version: &str) -> u64 {
        let mut h = DefaultHasher::new();
        name.hash(&mut h);
        version.hash(&mut h);
        h.finish()
    }
}

/// All resources of one type for one snapshot key, with the type's version.
///
/// The type version is derived from a sum of per-entry hashes, so replacing one resource updates
/// it in O(1) and equal sets give equal versions whatever the order they were built in.
///
/// A set is shared (`Arc`) by every node whose config holds it; what streams derive from it
/// (the resources sorted by name, the difference from the set they last sent) is computed once
/// and kept with it.
#[derive(Default)]
pub struct TypeResources {
    version: String,
    sum: u64,
    resources: HashMap<String, Arc<Resource>>,
    /// The resources sorted by name, made on first use.
    sorted: OnceLock<Vec<Arc<Resource>>>,
    /// The difference from the set most recently asked about: when a change reaches many
    /// streams that all held the same previous set, it is computed once.
    diff: Mutex<Option<(Weak<TypeResources>, Arc<Diff>)>>,
}

impl Clone for TypeResources {
    fn clone(&self) -> Self {
        TypeResources {
            version: self.version.clone(),
            sum: self.sum,
            resources: self.resources.clone(),
            sorted: OnceLock::new(),
            diff: Mutex::new(None),
        }
    }
}

impl fmt::Debug for TypeResources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypeResources")
            .field("version", &self.version)
            .field("resources", &self.resources.len())
            .finish()
    }
}

/// What differs between two resource sets of one type.
#[derive(Debug, Default)]
pub struct Diff {
    /// Names added or whose version changed.
    pub changed: Vec<String>,
    /// Names no longer present.
    pub removed: Vec<String>,
}

impl TypeResources {
    /// Builds the set; a later resource with the same name replaces an earlier one.
    pub fn new(resources: impl IntoIterator<Item = Resource>) -> Self {
        let mut t = TypeResources::default();
        for r in resources {
            t.insert(Arc::new(r));
        }
        t.refresh_version();
        t
    }

    fn insert(&mut self, r: Arc<Resource>) {
        let h = Resource::entry_hash(&r.name, &r.version);
        if let Some(old) = self.resources.insert(r.name.clone(), r) {
            self.sum = self
                .sum
                .wrapping_sub(Resource::entry_hash(&old.name, &old.version));
        }
        self.sum = self.sum.wrapping_add(h);
    }

    fn remove(&mut self, name: &str) -> bool {
        match self.resources.remove(name) {
            Some(old) => {
                self.sum = self
                    .sum
                    .wrapping_sub(Resource::entry_hash(&old.name, &old.version));
                true
            }
            None => false,
        }
    }

    fn refresh_version(&mut self) {
        let mut h = DefaultHasher::new();
        self.sum.hash(&mut h);
        self.resources.len().hash(&mut h);
        self.version = hash_hex(h.finish());
    }

    /// The type's version: changes exactly when a resource is added, removed or changed.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The resource called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Resource>> {
        self.resources.get(name)
    }

    /// Number of resources.
    pub fn len(&self) -> usize {
        self.resources.len()
    }

    /// Whether there are no resources (a valid state: "no listeners").
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// All resources, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Resource>> {
        self.resources.values()
    }

    /// All resources sorted by name (computed once per set).
    pub fn sorted(&self) -> &[Arc<Resource>] {
        self.sorted.get_or_init(|| {
            let mut v: Vec<Arc<Resource>> = self.resources.values().cloned().collect();
            v.sort_by(|a, b| a.name.cmp(&b.name));
            v
        })
    }

    /// What changed from `base` to this set. Computed once for a given `base` and shared by
    /// every caller that asks with the same one (all the streams a change reaches).
    pub fn diff_from(&self, base: &Arc<TypeResources>) -> Arc<Diff> {
        let mut memo = self.diff.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((w, d)) = memo.as_ref()
            && std::ptr::eq(w.as_ptr(), Arc::as_ptr(base))
        {
            return d.clone();
        }
        let mut d = Diff::default();
        for r in self.resources.values() {
            if base.get(&r.name).is_none_or(|o| o.version != r.version) {
                d.changed.push(r.name.clone());
            }
        }
        for name in base.resources.keys() {
            if !self.resources.contains_key(name) {
                d.removed.push(name.clone());
            }
        }
        let d = Arc::new(d);
        *memo = Some((Arc::downgrade(base), d.clone()));
        d
    }
}

/// A node's (or group's) complete config: resources per type URL.
///
/// A type that is absent is "not computed yet" and nothing is sent for it; a type present with no
/// resources is "none exist" and a wildcard subscriber receives an empty response.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    types: HashMap<String, Arc<TypeResources>>,
}

impl Snapshot {
    /// An empty snapshot (no types known).
    pub fn new() -> Self {
        Snapshot::default()
    }

    /// Sets all resources of `type_url`, builder style.
    pub fn with(mut self, type_url: &str, resources: impl IntoIterator<Item = Resource>) -> Self {
        self.set(type_url, resources);
        self
    }

    /// Sets all resources of `type_url`.
    pub fn set(&mut self, type_url: &str, resources: impl IntoIterator<Item = Resource>) {
        self.types.insert(
            type_url.to_string(),
            Arc::new(TypeResources::new(resources)),
        );
    }

    /// Sets the resources of `type_url` to a set shared with other snapshots (no copy).
    pub fn set_shared(&mut self, type_url: &str, resources: Arc<TypeResources>) {
        self.types.insert(type_url.to_string(), resources);
    }

    /// The resources of one type, if that type is known.
    pub fn resources(&self, type_url: &str) -> Option<&Arc<TypeResources>> {
        self.types.get(type_url)
    }

    /// The version of one type, if that type is known.
    pub fn version(&self, type_url: &str) -> Option<&str> {
        self.types.get(type_url).map(|t| t.version())
    }

    /// The versions of all known types.
    pub fn versions(&self) -> BTreeMap<String, String> {
        self.types
            .iter()
            .map(|(k, v)| (k.clone(), v.version.clone()))
            .collect()
    }

    /// Checks that every resource has the type it is stored under.
    pub fn check(&self) -> Result<(), CacheError> {
        for (type_url, t) in &self.types {
            check_type(type_url, t.iter().map(|r| r.as_ref()))?;
        }
        Ok(())
    }
}

fn check_type<'a>(
    type_url: &str,
    resources: impl IntoIterator<Item = &'a Resource>,
) -> Result<(), CacheError> {
    for r in resources {
        if r.body.type_url != type_url && r.body.type_url != DISCOVERY_RESOURCE {
            return Err(CacheError::TypeMismatch {
                name: r.name.clone(),
                expected: type_url.to_string(),
                actual: r.body.type_url.clone(),
            });
        }
    }
    Ok(())
}

/// What an update did: the versions after it, and which types changed (and so will be pushed to
/// the nodes that subscribe to them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpdateSummary {
    /// Version per type URL after the update.
    pub versions: BTreeMap<String, String>,
    /// Type URLs whose version changed.
    pub changed: Vec<String>,
}

impl UpdateSummary {
    /// The version of `type_url` after the update.
    pub fn version(&self, type_url: &str) -> Option<&str> {
        self.versions.get(type_url).map(String::as_str)
    }
}

type KeyFn = dyn Fn(&Node) -> String + Send + Sync;

/// The snapshot of one key and the watchers (server streams) of that key.
struct Entry {
    /// `None` until the control plane sets a snapshot for this key. Streams of the nodes that map
    /// to this key hold receivers; sending notifies exactly them.
    tx: watch::Sender<Option<Arc<Snapshot>>>,
}

struct Inner {
    /// Snapshot per key. The lock is held only to find or insert an entry, never across an await.
    entries: RwLock<HashMap<String, Arc<Entry>>>,
    /// Node id to group key, for nodes that share a snapshot.
    groups: RwLock<HashMap<String, String>>,
    /// Key for a node not in `groups`; the node id by default.
    key_fn: Box<KeyFn>,
}

/// The resource store shared by the control plane (writer) and the ADS server (reader).
/// Cloning is cheap and shares the store.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = read(&self.inner.entries).len();
        f.debug_struct("Cache").field("keys", &n).finish()
    }
}

impl Default for Cache {
    fn default() -> Self {
        Cache::new()
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

impl Cache {
    /// A cache where every node has its own snapshot, keyed by node id.
    pub fn new() -> Self {
        Cache::with_key_fn(|node: &Node| node.id.clone())
    }

    /// A cache that maps nodes to snapshot keys with `key_fn` (for example by `node.cluster`, so
    /// all proxies of a workload share one snapshot). [`Cache::assign`] overrides it per node.
    pub fn with_key_fn(key_fn: impl Fn(&Node) -> String + Send + Sync + 'static) -> Self {
        Cache {
            inner: Arc::new(Inner {
                entries: RwLock::new(HashMap::new()),
                groups: RwLock::new(HashMap::new()),
                key_fn: Box::new(key_fn),
            }),
        }
    }

    /// Makes node `node_id` use the snapshot stored under `key` (a group shared by several
    /// nodes). Applies to streams that connect afterwards.
    pub fn assign(&self, node_id: impl Into<String>, key: impl Into<String>) {
        write(&self.inner.groups).insert(node_id.into(), key.into());
    }

    /// Undoes [`Cache::assign`].
    pub fn unassign(&self, node_id: &str) {
        write(&self.inner.groups).remove(node_id);
    }

    /// The snapshot key a node reads.
    pub fn key_for(&self, node: &Node) -> String {
        if let Some(k) = read(&self.inner.groups).get(&node.id) {
            return k.clone();
        }
        (self.inner.key_fn)(node)
    }

    fn entry(&self, key: &str) -> Arc<Entry> {
        if let Some(e) = read(&self.inner.entries).get(key) {
            return e.clone();
        }
        write(&self.inner.entries)
            .entry(key.to_string())
            .or_insert_with(|| {
                Arc::new(Entry {
                    tx: watch::channel(None).0,
                })
            })
            .clone()
    }

    /// A receiver that sees every new snapshot of `key` (the server's streams use this).
    /// Pass it back to [`Cache::unwatch`] when done, so that unused keys are forgotten.
    pub fn watch(&self, key: &str) -> watch::Receiver<Option<Arc<Snapshot>>> {
        // Subscribe under the write lock: `remove_snapshot` and `unwatch` decide whether to drop
        // an entry by its receiver count under the same lock.
        let mut entries = write(&self.inner.entries);
        entries
            .entry(key.to_string())
            .or_insert_with(|| {
                Arc::new(Entry {
                    tx: watch::channel(None).0,
                })
            })
            .tx
            .subscribe()
    }

    /// Returns a receiver from [`Cache::watch`]; the key is forgotten if it holds no snapshot
    /// and nobody else watches it.
    pub fn unwatch(&self, key: &str, rx: watch::Receiver<Option<Arc<Snapshot>>>) {
        let mut entries = write(&self.inner.entries);
        drop(rx);
        if entries
            .get(key)
            .is_some_and(|e| e.tx.borrow().is_none() && e.tx.receiver_count() == 0)
        {
            entries.remove(key);
        }
    }

    /// The current snapshot of `key`.
    pub fn snapshot(&self, key: &str) -> Option<Arc<Snapshot>> {
        let e = read(&self.inner.entries).get(key).cloned()?;
        e.tx.borrow().clone()
    }

    /// Replaces the whole snapshot of `key`. Types whose content is unchanged keep their version
    /// and are not pushed; types absent from `snapshot` are dropped.
    pub fn set_snapshot(&self, key: &str, snapshot: Snapshot) -> Result<UpdateSummary, CacheError> {
        snapshot.check()?;
        // Keeps the old Arc of an unchanged type: cheap equality for readers.
        Ok(self.set_snapshot_unchecked(key, snapshot))
    }

    /// [`Cache::set_snapshot`] for a snapshot whose resources are known to have the types they
    /// are stored under (built from typed messages, or checked once with [`Snapshot::check`]
    /// before being stored for many keys).
    pub fn set_snapshot_unchecked(&self, key: &str, snapshot: Snapshot) -> UpdateSummary {
        self.modify(key, |cur| {
            let mut next = Snapshot::default();
            for (type_url, t) in snapshot.types {
                let keep = cur
                    .and_then(|c| c.types.get(&type_url))
                    .filter(|old| old.version == t.version)
                    .cloned();
                next.types.insert(type_url, keep.unwrap_or(t));
            }
            Some(next)
        })
    }

    /// Replaces all resources of one type under `key`, leaving other types as they are.
    pub fn set_resources(
        &self,
        key: &str,
        type_url: &str,
        resources: impl IntoIterator<Item = Resource>,
    ) -> Result<UpdateSummary, CacheError> {
        let t = TypeResources::new(resources);
        check_type(type_url, t.iter().map(|r| r.as_ref()))?;
        Ok(self.modify(key, |cur| {
            let mut next = cur.cloned().unwrap_or_default();
            let unchanged = next
                .types
                .get(type_url)
                .is_some_and(|old| old.version == t.version);
            if !unchanged {
                next.types.insert(type_url.to_string(), Arc::new(t));
            }
            Some(next)
        }))
    }

    /// Replaces all resources of one type under `key` with a set shared with other keys (as
    /// the same set computed once for many nodes), leaving other types as they are. Costs
    /// O(1) per key beyond the check of the set's types.
    pub fn set_shared_resources(
        &self,
        key: &str,
        type_url: &str,
        resources: Arc<TypeResources>,
    ) -> Result<UpdateSummary, CacheError> {
        check_type(type_url, resources.iter().map(|r| r.as_ref()))?;
        Ok(self.set_shared_unchecked(key, type_url, resources))
    }

    /// [`Cache::set_shared_resources`] for a set whose types were checked already (once for
    /// all the keys it is stored under).
    pub fn set_shared_unchecked(
        &self,
        key: &str,
        type_url: &str,
        resources: Arc<TypeResources>,
    ) -> UpdateSummary {
        self.modify(key, |cur| {
            let unchanged = cur
                .and_then(|c| c.types.get(type_url))
                .is_some_and(|old| old.version == resources.version);
            let mut next = cur.cloned().unwrap_or_default();
            if !unchanged {
                next.types.insert(type_url.to_string(), resources);
            }
            Some(next)
        })
    }

    /// Adds or replaces `upserts` and removes `removals` in one type under `key`; costs
    /// O(resources of that type under that key).
    pub fn update_resources(
        &self,
        key: &str,
        type_url: &str,
        upserts: impl IntoIterator<Item = Resource>,
        removals: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<UpdateSummary, CacheError> {
        let upserts: Vec<Resource> = upserts.into_iter().collect();
        check_type(type_url, upserts.iter())?;
        let removals: Vec<String> = removals
            .into_iter()
            .map(|s| s.as_ref().to_string())
            .collect();
        Ok(self.modify(key, |cur| {
            let mut next = cur.cloned().unwrap_or_default();
            let mut t: TypeResources = next
                .types
                .get(type_url)
                .map(|t| (**t).clone())
                .unwrap_or_default();
            let mut changed = false;
            for r in upserts {
                if t.get(&r.name).is_some_and(|old| old.version == r.version) {
                    continue;
                }
                t.insert(Arc::new(r));
                changed = true;
            }
            for name in &removals {
                changed |= t.remove(name);
            }
            if changed || !next.types.contains_key(type_url) {
                t.refresh_version();
                next.types.insert(type_url.to_string(), Arc::new(t));
            }
            Some(next)
        }))
    }

    /// Forgets the snapshot of `key`. Connected nodes keep what they have; nothing more is
    /// pushed to them until a snapshot is set again (e.g. from `on_disconnect` for per-node
    /// keys: a node that reconnected meanwhile still gets its next snapshot).
    pub fn remove_snapshot(&self, key: &str) {
        let mut entries = write(&self.inner.entries);
        if let Some(e) = entries.get(key) {
            e.tx.send_replace(None);
            if e.tx.receiver_count() == 0 {
                entries.remove(key);
            }
        }
    }

    /// Number of keys held (with a snapshot or watched).
    pub fn len(&self) -> usize {
        read(&self.inner.entries).len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        read(&self.inner.entries).is_empty()
    }

    /// Keys that currently hold a snapshot.
    pub fn keys(&self) -> Vec<String> {
        read(&self.inner.entries)
            .iter()
            .filter(|(_, e)| e.tx.borrow().is_some())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Applies `f` to the current snapshot of `key` under the entry's own lock (so concurrent
    /// writers of one key do not lose updates) and notifies the watchers of that key only if a
    /// type's version changed. No lock is held across an await: `f` is synchronous.
    fn modify(
        &self,
        key: &str,
        f: impl FnOnce(Option<&Snapshot>) -> Option<Snapshot>,
    ) -> UpdateSummary {
        let entry = self.entry(key);
        let mut summary = UpdateSummary::default();
        entry.tx.send_if_modified(|cur| {
            let Some(next) = f(cur.as_deref()) else {
                return false;
            };
            let old = cur.as_deref();
            for (type_url, t) in &next.types {
                summary.versions.insert(type_url.clone(), t.version.clone());
                if old.and_then(|o| o.version(type_url)) != Some(t.version.as_str()) {
                    summary.changed.push(type_url.clone());
                }
            }
            if let Some(o) = old {
                for type_url in o.types.keys() {
                    if !next.types.contains_key(type_url) {
                        summary.changed.push(type_url.clone());
                    }
                }
            }
            summary.changed.sort();
            let modified = !summary.changed.is_empty() || old.is_none();
            if modified {
                *cur = Some(Arc::new(next));
            }
            modified
        });
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envoy::config::cluster::v3::Cluster;

    fn cluster(name: &str, ms: i64) -> Resource {
        let c = Cluster {
            name: name.into(),
            connect_timeout: Some(crate::google::protobuf::Duration {
                seconds: 0,
                nanos: (ms * 1_000_000) as i32,
            }),
            ..Default::default()
        };
        Resource::from_message(&c).expect("cluster has a name")
    }

    #[test]
    fn versions_follow_content() {
        let a = TypeResources::new([cluster("a", 1), cluster("b", 2)]);
        let b = TypeResources::new([cluster("b", 2), cluster("a", 1)]);
        assert_eq!(a.version(), b.version());
        let c = TypeResources::new([cluster("b", 2), cluster("a", 3)]);
        assert_ne!(a.version(), c.version());
        assert_eq!(
            a.get("b").map(|r| &r.version),
            c.get("b").map(|r| &r.version)
        );
    }

    #[test]
    fn update_bumps_only_changed_types() {
        let cache = Cache::new();
        let s = Snapshot::new()
            .with(type_url::CLUSTER, [cluster("a", 1)])
            .with(type_url::LISTENER, []);
        let first = cache.set_snapshot("n", s.clone()).expect("valid");
        assert_eq!(first.changed.len(), 2);
        let again = cache.set_snapshot("n", s).expect("valid");
        assert!(again.changed.is_empty());
        let upd = cache
            .update_resources("n", type_url::CLUSTER, [cluster("b", 1)], [] as [&str; 0])
            .expect("valid");
        assert_eq!(upd.changed, vec![type_url::CLUSTER.to_string()]);
        assert_eq!(
            upd.version(type_url::LISTENER),
            first.version(type_url::LISTENER)
        );
        let rm = cache
            .update_resources("n", type_url::CLUSTER, [], ["b"])
            .expect("valid");
        assert_eq!(
            rm.version(type_url::CLUSTER),
            first.version(type_url::CLUSTER)
        );
    }

    #[test]
    fn unused_keys_are_forgotten() {
        let cache = Cache::new();
        let rx = cache.watch("gone");
        cache
            .set_resources("kept", type_url::CLUSTER, [])
            .expect("valid");
        assert_eq!(cache.len(), 2);
        cache.unwatch("gone", rx);
        assert_eq!(cache.len(), 1);
        // A watched key survives removal of its snapshot and sees the next one.
        let mut rx = cache.watch("kept");
        cache.remove_snapshot("kept");
        assert_eq!(cache.len(), 1);
        cache
            .set_resources("kept", type_url::CLUSTER, [])
            .expect("valid");
        assert!(rx.has_changed().expect("open"));
        assert!(rx.borrow_and_update().is_some());
        cache.remove_snapshot("kept");
        cache.unwatch("kept", rx);
        assert!(cache.is_empty());
    }

    #[test]
    fn type_mismatch_is_rejected() {
        let cache = Cache::new();
        let err = cache
            .set_resources("n", type_url::LISTENER, [cluster("a", 1)])
            .expect_err("a cluster is not a listener");
        assert!(err.to_string().contains("has type"), "{err}");
    }

    #[test]
    fn names_are_read_from_bodies() {
        let r = cluster("outbound|9080||reviews", 1);
        assert_eq!(r.name, "outbound|9080||reviews");
        let err = Resource::from_any(Any {
            type_url: "type.googleapis.com/x.Y".into(),
            value: vec![],
        })
        .expect_err("unknown type");
        assert!(err.to_string().contains("x.Y"));
    }

    #[test]
    fn diff_is_computed_once_per_base() {
        let old = Arc::new(TypeResources::new([cluster("a", 1), cluster("b", 1)]));
        let new = TypeResources::new([cluster("a", 2), cluster("c", 1)]);
        let d = new.diff_from(&old);
        let mut changed = d.changed.clone();
        changed.sort();
        assert_eq!(changed, vec!["a".to_string(), "c".to_string()]);
        assert_eq!(d.removed, vec!["b".to_string()]);
        // Asked again with the same base: the same computation.
        assert!(Arc::ptr_eq(&d, &new.diff_from(&old)));
        // Another base with equal content is another computation, with an equal result.
        let other = Arc::new((*old).clone());
        let d2 = new.diff_from(&other);
        assert!(!Arc::ptr_eq(&d, &d2));
        assert_eq!(d2.removed, d.removed);
        assert!(new.diff_from(&Arc::new(new.clone())).changed.is_empty());
    }

    #[test]
    fn shared_sets_are_stored_without_copies() {
        let cache = Cache::new();
        let set = Arc::new(TypeResources::new([cluster("a", 1)]));
        for key in ["n1", "n2"] {
            let s = cache
                .set_shared_resources(key, type_url::CLUSTER, set.clone())
                .expect("valid");
            assert_eq!(s.changed, vec![type_url::CLUSTER.to_string()]);
        }
        let got = |k: &str| {
            cache
                .snapshot(k)
                .and_then(|s| s.resources(type_url::CLUSTER).cloned())
                .expect("stored")
        };
        assert!(Arc::ptr_eq(&got("n1"), &got("n2")));
        // The same content again changes nothing.
        let again = Arc::new(TypeResources::new([cluster("a", 1)]));
        let s = cache
            .set_shared_resources("n1", type_url::CLUSTER, again)
            .expect("valid");
        assert!(s.changed.is_empty());
        assert!(Arc::ptr_eq(&got("n1"), &set));
        let bad = Arc::new(TypeResources::new([cluster("a", 1)]));
        assert!(
            cache
                .set_shared_resources("n1", type_url::LISTENER, bad)
                .is_err()
        );
    }

    #[test]
    fn wire_entries_are_encoded_once_and_shared() {
        let r = Arc::new(cluster("a", 1));
        let e1 = r.sotw_entry();
        let copy = r.clone();
        let e2 = copy.sotw_entry();
        assert_eq!(e1.as_ptr(), e2.as_ptr());
        // Tag of field 2, length-delimited, then the Any.
        assert_eq!(e1[0], 0x12);
        let any = Any::decode(&e1[2..]).expect("an Any");
        assert_eq!(any, r.body);
        assert_eq!(r.delta_entry()[0], 0x12);
    }
}
