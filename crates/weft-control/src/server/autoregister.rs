//! WorkloadGroup auto-registration, as Istio does it for VMs.
//!
//! A proxy whose node metadata carries `AUTO_REGISTER_GROUP: <group>` is a member of the
//! WorkloadGroup of that name in its namespace (`NAMESPACE` metadata, else the node id's). When
//! its first stream opens, the control plane writes a WorkloadEntry for it into the config store
//! (a real object: `weft get workloadentries` lists it, and the registry serves it like any other
//! entry, so services selecting its labels get the endpoint at the next push):
//!
//! - name `<group>-<ip>` (`:` of IPv6 written as `-`), `-<network>` appended when the proxy
//!   names a `NETWORK`; longer than 253 characters, it is cut from the front;
//! - spec from the group's `template`, with the proxy's IP (first of `INSTANCE_IPS`, else the
//!   node id's) as `address`, labels merged as template < group `metadata.labels` < the proxy's
//!   `LABELS`, `network` from `NETWORK` and `locality` from the node's locality when set;
//! - annotations: the group's `metadata.annotations`, `istio.io/autoRegistrationGroup`,
//!   `istio.io/workloadController` (this control plane instance) and `istio.io/connectedAt`;
//!   an owner reference to the group.
//!
//! When its last stream closes, `istio.io/connectedAt` gives way to `istio.io/disconnectedAt`
//! and the entry is deleted after the grace period (Istio's `PILOT_WORKLOAD_ENTRY_GRACE_PERIOD`,
//! 10 s by default) unless the proxy has reconnected meanwhile. Deleting the group deletes its
//! entries (the owner reference, as Kubernetes' garbage collector would). A group that does not
//! exist is an error in the log and in the proxy's status (`GET /proxies`); the proxy is still
//! served, and is registered as soon as the group is applied. After a restart, the control plane
//! gives every auto-registered entry it finds one grace period for its proxy to reconnect.
//!
//! The ADS hooks only queue events; one task applies them in order, so the store writes never
//! run on a stream's task.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use weft_config::meta::ObjectMeta;
use weft_config::networking::{WorkloadEntry, WorkloadGroup};
use weft_config::{Kind, Resource, Spec};
use weft_xds::envoy::config::core::v3::Node;

use super::Shared;
use super::push::node_metadata;
use super::store::{ResourceId, StoreError, resource_to_value};

/// Node metadata naming the WorkloadGroup a proxy registers into.
pub const AUTO_REGISTER_GROUP: &str = "AUTO_REGISTER_GROUP";
/// Annotation naming the WorkloadGroup an entry was created from.
pub const AUTO_REGISTRATION_GROUP_ANNOTATION: &str = "istio.io/autoRegistrationGroup";
/// Annotation naming the control plane instance the workload is (or was last) connected to.
pub const WORKLOAD_CONTROLLER_ANNOTATION: &str = "istio.io/workloadController";
/// Annotation with the time (RFC 3339) the workload connected.
pub const CONNECTED_AT_ANNOTATION: &str = "istio.io/connectedAt";
/// Annotation with the time (RFC 3339) the workload disconnected.
pub const DISCONNECTED_AT_ANNOTATION: &str = "istio.io/disconnectedAt";
/// How long an entry outlives its proxy's last stream (Istio's default).
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);
/// Longest Kubernetes object name.
const MAX_NAME_LEN: usize = 253;

/// Why a proxy could not be registered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    /// The node names no usable IP.
    #[error(
        "auto-registration of {node} failed: no IP address (the node id's second part or the first of INSTANCE_IPS must be an IP), got {got:?}"
    )]
    NoIp {
        /// The node id.
        node: String,
        /// What was found.
        got: String,
    },
    /// The node names no namespace.
    #[error(
        "auto-registration of {node} failed: no namespace (set NAMESPACE metadata or use a node id of the form sidecar~IP~name.namespace~domain)"
    )]
    NoNamespace {
        /// The node id.
        node: String,
    },
    /// The group does not exist.
    #[error(
        "auto-registration of {node} failed: cannot find WorkloadGroup {namespace}/{group} (AUTO_REGISTER_GROUP names a WorkloadGroup in the proxy's namespace); it registers once the group is applied"
    )]
    NoGroup {
        /// The node id.
        node: String,
        /// The namespace looked in.
        namespace: String,
        /// The group asked for.
        group: String,
    },
    /// The entry built from the group is not valid.
    #[error("auto-registration of {node} failed: WorkloadEntry {entry} is invalid: {errors}")]
    Invalid {
        /// The node id.
        node: String,
        /// `namespace/name` of the entry.
        entry: String,
        /// The validation errors, with their fields.
        errors: String,
    },
    /// The store could not be written.
    #[error("auto-registration of {node} failed: {message}")]
    Store {
        /// The node id.
        node: String,
        /// The store's error.
        message: String,
    },
}

/// What a proxy that asks to be auto-registered says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registrant {
    /// The node id.
    pub node_id: String,
    /// `AUTO_REGISTER_GROUP`.
    pub group: String,
    /// `NAMESPACE`, else the node id's.
    pub namespace: String,
    /// The first of `INSTANCE_IPS`, else the node id's IP.
    pub ip: String,
    /// `NETWORK`.
    pub network: String,
    /// The node's locality as `region/zone/subzone`.
    pub locality: String,
    /// `LABELS`.
    pub labels: BTreeMap<String, String>,
}

impl Registrant {
    /// The registrant a node describes: `None` when it does not ask for auto-registration.
    pub fn of(node: &Node) -> Option<Result<Registrant, RegistrationError>> {
        let md = node_metadata(node);
        let group = md
            .raw
            .get(AUTO_REGISTER_GROUP)?
            .as_str()?
            .trim()
            .to_string();
        if group.is_empty() {
            return None;
        }
        Some(Registrant::from_parts(node, &md, group))
    }

    fn from_parts(
        node: &Node,
        md: &crate::model::NodeMetadata,
        group: String,
    ) -> Result<Registrant, RegistrationError> {
        let parts: Vec<&str> = node.id.split('~').collect();
        let str_md = |k: &str| {
            md.raw
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .trim()
                .to_string()
        };
        let instance_ips = str_md("INSTANCE_IPS");
        let ip = instance_ips
            .split(',')
            .map(str::trim)
            .find(|s| !s.is_empty())
            .or_else(|| parts.get(1).and_then(|s| s.split(',').next()))
            .unwrap_or("")
            .to_string();
        if ip.parse::<std::net::IpAddr>().is_err() {
            return Err(RegistrationError::NoIp {
                node: node.id.clone(),
                got: ip,
            });
        }
        let namespace = if md.namespace.is_empty() {
            parts
                .get(2)
                .and_then(|id| id.split_once('.'))
                .map(|(_, ns)| ns.to_string())
                .unwrap_or_default()
        } else {
            md.namespace.clone()
        };
        if namespace.is_empty() {
            return Err(RegistrationError::NoNamespace {
                node: node.id.clone(),
            });
        }
        let locality = node
            .locality
            .as_ref()
            .map(|l| {
                let mut s = l.region.clone();
                if !l.zone.is_empty() {
                    s = format!("{s}/{}", l.zone);
                    if !l.sub_zone.is_empty() {
                        s = format!("{s}/{}", l.sub_zone);
                    }
                }
                s
            })
            .unwrap_or_default();
        Ok(Registrant {
            node_id: node.id.clone(),
            group,
            namespace,
            ip,
            network: str_md("NETWORK"),
            locality,
            labels: md.labels.clone(),
        })
    }

    /// The entry's name: `<group>-<ip>[-<network>]`, as Istio names it.
    pub fn entry_name(&self) -> String {
        entry_name(&self.group, &self.ip, &self.network)
    }

    fn key(&self) -> EntryKey {
        (self.namespace.clone(), self.entry_name())
    }
}

/// `<group>-<ip>[-<network>]` with IPv6 colons as dashes, cut from the front to 253 characters.
pub fn entry_name(group: &str, ip: &str, network: &str) -> String {
    let mut name = format!("{group}-{}", ip.replace(':', "-"));
    if !network.is_empty() {
        name = format!("{name}-{network}");
    }
    if name.len() > MAX_NAME_LEN {
        let mut cut = name.len() - MAX_NAME_LEN;
        while !name.is_char_boundary(cut) {
            cut += 1;
        }
        name = name[cut..].to_string();
    }
    name
}

/// The WorkloadEntry for `who` from `group` (a WorkloadGroup resource), without the
/// connection annotations.
pub fn entry_from_group(who: &Registrant, group: &Resource) -> Option<Resource> {
    let Spec::WorkloadGroup(wg) = &group.spec else {
        return None;
    };
    let WorkloadGroup {
        metadata, template, ..
    } = wg;
    let mut entry: WorkloadEntry = template.clone().unwrap_or_default();
    entry.address = who.ip.clone();
    if let Some(m) = metadata {
        entry.labels.extend(m.labels.clone());
    }
    entry.labels.extend(who.labels.clone());
    if !who.network.is_empty() {
        entry.network = who.network.clone();
    }
    if !who.locality.is_empty() {
        entry.locality = who.locality.clone();
    }
    let mut annotations = BTreeMap::new();
    annotations.insert(
        AUTO_REGISTRATION_GROUP_ANNOTATION.to_string(),
        group.name().to_string(),
    );
    if let Some(m) = metadata {
        annotations.extend(m.annotations.clone());
    }
    let mut owner = serde_json::json!({
        "apiVersion": group.api_version,
        "kind": Kind::WorkloadGroup.name(),
        "name": group.name(),
        "controller": true,
    });
    if let Some(uid) = &group.metadata.uid {
        owner["uid"] = serde_json::Value::String(uid.clone());
    }
    Some(Resource {
        api_version: "networking.istio.io/v1".to_string(),
        kind: Kind::WorkloadEntry,
        metadata: ObjectMeta {
            name: who.entry_name(),
            namespace: Some(who.namespace.clone()),
            labels: entry.labels.clone(),
            annotations,
            owner_references: vec![owner],
            ..Default::default()
        },
        spec: Spec::WorkloadEntry(entry),
        status: None,
        source: Default::default(),
    })
}

/// Whether a resource is a WorkloadEntry created by auto-registration.
pub fn is_auto_registered(r: &Resource) -> bool {
    r.kind == Kind::WorkloadEntry
        && r.metadata
            .annotations
            .get(AUTO_REGISTRATION_GROUP_ANNOTATION)
            .is_some_and(|g| !g.is_empty())
}

/// A proxy's auto-registration, as `GET /proxies` reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyRegistration {
    /// `namespace/name` of its WorkloadEntry, once written.
    pub workload_entry: Option<String>,
    /// Why it is not registered.
    pub error: Option<String>,
}

/// istiod's auto-registration counters (`auto_registration_success_total`, ...).
#[derive(Clone, Debug, Default)]
pub struct AutoRegistrationMetrics {
    /// Entries created.
    pub success: Counter,
    /// Existing entries marked connected again.
    pub updates: Counter,
    /// Entries marked disconnected.
    pub unregister: Counter,
    /// Entries deleted (grace period over, group deleted).
    pub deletes: Counter,
    /// Registrations that failed.
    pub errors: Counter,
}

impl AutoRegistrationMetrics {
    /// Creates the counters and registers them under istiod's names.
    pub fn register(registry: &mut Registry) -> AutoRegistrationMetrics {
        let m = AutoRegistrationMetrics::default();
        for (name, help, c) in [
            (
                "auto_registration_success",
                "Total number of successful auto registrations.",
                &m.success,
            ),
            (
                "auto_registration_updates",
                "Total number of auto registration updates.",
                &m.updates,
            ),
            (
                "auto_registration_unregister",
                "Total number of unregistrations.",
                &m.unregister,
            ),
            (
                "auto_registration_deletes",
                "Total number of auto registration cleaned up.",
                &m.deletes,
            ),
            (
                "auto_registration_errors",
                "Total number of auto registration errors.",
                &m.errors,
            ),
        ] {
            registry.register(name, help, c.clone());
        }
        m
    }
}

/// Namespace and name of an entry.
type EntryKey = (String, String);

enum Event {
    Connect(Box<Registrant>),
    Disconnect(String, EntryKey),
    Expire(EntryKey, u64),
    ConfigChanged,
}

/// The auto-registration controller's handle, called from the ADS hooks and the push loop.
#[derive(Debug)]
pub struct AutoRegistrar {
    tx: mpsc::UnboundedSender<Event>,
    /// Per node id: its entry or its error (read by the admin API).
    status: Mutex<HashMap<String, ProxyRegistration>>,
    /// Per node id: its entry, for the disconnect hook.
    keys: Mutex<HashMap<String, EntryKey>>,
    grace: Duration,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Connect(r) => write!(f, "Connect({})", r.node_id),
            Event::Disconnect(n, _) => write!(f, "Disconnect({n})"),
            Event::Expire(k, e) => write!(f, "Expire({}/{}, {e})", k.0, k.1),
            Event::ConfigChanged => f.write_str("ConfigChanged"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The queue of events [`run`] reads.
pub(crate) struct Events(mpsc::UnboundedReceiver<Event>);

impl AutoRegistrar {
    /// A registrar deleting entries `grace` after their proxy's last stream closed, and the
    /// event queue its task reads.
    pub(crate) fn new(grace: Duration) -> (Arc<AutoRegistrar>, Events) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Arc::new(AutoRegistrar {
                tx,
                status: Mutex::new(HashMap::new()),
                keys: Mutex::new(HashMap::new()),
                grace,
            }),
            Events(rx),
        )
    }

    /// The ADS connect hook: queues the registration of a proxy that asks for one.
    pub fn on_connect(&self, node: &Node) {
        match Registrant::of(node) {
            None => {}
            Some(Ok(r)) => {
                lock(&self.keys).insert(node.id.clone(), r.key());
                let _ = self.tx.send(Event::Connect(Box::new(r)));
            }
            Some(Err(e)) => {
                tracing::error!(node = %node.id, "{e}");
                lock(&self.status).insert(
                    node.id.clone(),
                    ProxyRegistration {
                        workload_entry: None,
                        error: Some(e.to_string()),
                    },
                );
            }
        }
    }

    /// The ADS disconnect hook: queues the end of a registered proxy's stream.
    pub fn on_disconnect(&self, node: &Node) {
        let key = lock(&self.keys).get(&node.id).cloned();
        if let Some(key) = key {
            let _ = self.tx.send(Event::Disconnect(node.id.clone(), key));
        } else {
            lock(&self.status).remove(&node.id);
        }
    }

    /// Called after every push: retries pending registrations, removes the entries of deleted
    /// groups.
    pub fn config_changed(&self) {
        let _ = self.tx.send(Event::ConfigChanged);
    }

    /// A proxy's registration (for `GET /proxies`).
    pub fn registration(&self, node_id: &str) -> Option<ProxyRegistration> {
        lock(&self.status).get(node_id).cloned()
    }

    fn set_status(&self, node_id: &str, st: ProxyRegistration) {
        lock(&self.status).insert(node_id.to_string(), st);
    }
}

/// One entry the controller looks after.
struct Tracked {
    /// Open streams of its proxies.
    streams: usize,
    /// The proxies connected now (node ids), and the last one, to retry with.
    nodes: Vec<String>,
    registrant: Option<Registrant>,
    /// Whether the entry is in the store.
    written: bool,
    /// Bumped on every connect and disconnect; an expiry timer of an older epoch is void.
    epoch: u64,
}

/// The controller task: applies events in order.
pub(crate) async fn run(shared: Arc<Shared>, Events(mut rx): Events) {
    let reg = shared.autoreg.clone();
    let mut tracked: HashMap<EntryKey, Tracked> = HashMap::new();
    // Entries left by an earlier run: their proxies get one grace period to reconnect.
    match with_store(&shared, |s| Ok(auto_entries(&s.resources_only()))).await {
        Ok(found) => {
            for r in found {
                let key = (r.namespace().to_string(), r.name().to_string());
                tracing::info!(entry = %format!("{}/{}", key.0, key.1), "auto-registered WorkloadEntry found; removed unless its proxy reconnects within {:?}", reg.grace);
                tracked.insert(
                    key.clone(),
                    Tracked {
                        streams: 0,
                        nodes: Vec::new(),
                        registrant: None,
                        written: true,
                        epoch: 0,
                    },
                );
                schedule_expiry(&reg, key, 0);
            }
        }
        Err(e) => tracing::warn!("cannot read auto-registered WorkloadEntries: {e}"),
    }
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Connect(who) => {
                let key = who.key();
                let t = tracked.entry(key.clone()).or_insert_with(|| Tracked {
                    streams: 0,
                    nodes: Vec::new(),
                    registrant: None,
                    written: false,
                    epoch: 0,
                });
                t.streams += 1;
                t.epoch += 1;
                t.nodes.push(who.node_id.clone());
                t.registrant = Some((*who).clone());
                if t.streams == 1 || !t.written {
                    let ok = register(&shared, &who).await;
                    if let Some(t) = tracked.get_mut(&key) {
                        t.written |= ok;
                    }
                } else {
                    reg.set_status(
                        &who.node_id,
                        ProxyRegistration {
                            workload_entry: Some(format!("{}/{}", key.0, key.1)),
                            error: None,
                        },
                    );
                }
            }
            Event::Disconnect(node_id, key) => {
                let Some(t) = tracked.get_mut(&key) else {
                    continue;
                };
                t.streams = t.streams.saturating_sub(1);
                if let Some(i) = t.nodes.iter().position(|n| n == &node_id) {
                    t.nodes.remove(i);
                }
                if !t.nodes.contains(&node_id) {
                    lock(&reg.status).remove(&node_id);
                    lock(&reg.keys).remove(&node_id);
                }
                if t.streams > 0 {
                    continue;
                }
                t.epoch += 1;
                let epoch = t.epoch;
                if !t.written {
                    tracked.remove(&key);
                    continue;
                }
                mark_disconnected(&shared, &key).await;
                schedule_expiry(&reg, key, epoch);
            }
            Event::Expire(key, epoch) => {
                let due = tracked
                    .get(&key)
                    .is_some_and(|t| t.epoch == epoch && t.streams == 0);
                if !due {
                    continue;
                }
                tracked.remove(&key);
                remove_entry(
                    &shared,
                    &key,
                    "its proxy did not reconnect within the grace period",
                )
                .await;
            }
            Event::ConfigChanged => {
                if tracked.is_empty() {
                    continue;
                }
                let snapshot = match with_store(&shared, |s| Ok(s.resources_only())).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!("auto-registration: cannot read the store: {e}");
                        continue;
                    }
                };
                // Entries whose group is gone go with it (the owner reference).
                for r in auto_entries(&snapshot) {
                    let group = r
                        .metadata
                        .annotations
                        .get(AUTO_REGISTRATION_GROUP_ANNOTATION)
                        .cloned()
                        .unwrap_or_default();
                    if find(&snapshot, Kind::WorkloadGroup, r.namespace(), &group).is_none() {
                        let key = (r.namespace().to_string(), r.name().to_string());
                        if let Some(t) = tracked.get_mut(&key) {
                            t.written = false;
                        }
                        remove_entry(&shared, &key, &format!("WorkloadGroup {group} was deleted"))
                            .await;
                    }
                }
                // Connected proxies without an entry: their group may exist now.
                let pending: Vec<(EntryKey, Registrant)> = tracked
                    .iter()
                    .filter(|(_, t)| t.streams > 0 && !t.written)
                    .filter_map(|(k, t)| t.registrant.clone().map(|r| (k.clone(), r)))
                    .filter(|(_, r)| {
                        find(&snapshot, Kind::WorkloadGroup, &r.namespace, &r.group).is_some()
                    })
                    .collect();
                for (key, who) in pending {
                    let ok = register(&shared, &who).await;
                    if let Some(t) = tracked.get_mut(&key) {
                        t.written |= ok;
                    }
                }
            }
        }
    }
}

fn schedule_expiry(reg: &Arc<AutoRegistrar>, key: EntryKey, epoch: u64) {
    let tx = reg.tx.clone();
    let grace = reg.grace;
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        let _ = tx.send(Event::Expire(key, epoch));
    });
}

/// The resources of the store (without their files).
trait ResourcesOnly {
    fn resources_only(&self) -> Vec<Resource>;
}

impl ResourcesOnly for super::store::ConfigStore {
    fn resources_only(&self) -> Vec<Resource> {
        self.resources().into_iter().map(|r| r.resource).collect()
    }
}

fn auto_entries(all: &[Resource]) -> Vec<Resource> {
    all.iter()
        .filter(|r| is_auto_registered(r))
        .cloned()
        .collect()
}

fn find<'a>(all: &'a [Resource], kind: Kind, ns: &str, name: &str) -> Option<&'a Resource> {
    all.iter()
        .find(|r| r.kind == kind && r.namespace() == ns && r.name() == name)
}

/// Runs `f` on the locked store off the async threads.
async fn with_store<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&mut super::store::ConfigStore) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, String> {
    let s = shared.clone();
    match tokio::task::spawn_blocking(move || f(&mut s.lock_store())).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Writes `r` through the store (atomic write, validation, revision bump).
fn write_entry(store: &mut super::store::ConfigStore, r: &Resource) -> Result<(), StoreError> {
    let yaml =
        serde_norway::to_string(&resource_to_value(r)).map_err(|e| StoreError::Serialize {
            key: r.key(),
            error: e.to_string(),
        })?;
    store.apply(&yaml, &format!("auto-registration of {}", r.key()))?;
    Ok(())
}

/// Creates the proxy's entry, or marks the existing one connected. Returns whether the entry
/// is in the store.
async fn register(shared: &Arc<Shared>, who: &Registrant) -> bool {
    let reg = shared.autoreg.clone();
    let instance = shared.instance.clone();
    let w = who.clone();
    let now = rfc3339(SystemTime::now());
    let result = with_store(shared, move |store| {
        let all: Vec<Resource> = store.resources_only();
        let name = w.entry_name();
        let mut entry = match find(&all, Kind::WorkloadEntry, &w.namespace, &name) {
            Some(existing) => existing.clone(),
            None => {
                let Some(group) = find(&all, Kind::WorkloadGroup, &w.namespace, &w.group) else {
                    return Ok(Err(RegistrationError::NoGroup {
                        node: w.node_id.clone(),
                        namespace: w.namespace.clone(),
                        group: w.group.clone(),
                    }));
                };
                match entry_from_group(&w, group) {
                    Some(e) => e,
                    None => {
                        return Ok(Err(RegistrationError::NoGroup {
                            node: w.node_id.clone(),
                            namespace: w.namespace.clone(),
                            group: w.group.clone(),
                        }));
                    }
                }
            }
        };
        let created = !all
            .iter()
            .any(|r| ResourceId::of(r) == ResourceId::of(&entry));
        let a = &mut entry.metadata.annotations;
        a.insert(WORKLOAD_CONTROLLER_ANNOTATION.to_string(), instance);
        a.insert(CONNECTED_AT_ANNOTATION.to_string(), now);
        a.remove(DISCONNECTED_AT_ANNOTATION);
        match write_entry(store, &entry) {
            Ok(()) => Ok(Ok(created)),
            Err(StoreError::Invalid(d)) => Ok(Err(RegistrationError::Invalid {
                node: w.node_id.clone(),
                entry: format!("{}/{}", w.namespace, name),
                errors: d
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            })),
            Err(e) => Err(e),
        }
    })
    .await;
    let entry = format!("{}/{}", who.namespace, who.entry_name());
    let outcome = match result {
        Ok(Ok(created)) => {
            let m = &shared.metrics.auto_registration;
            if created {
                m.success.inc();
                tracing::info!(node = %who.node_id, "auto-registered WorkloadEntry {entry}");
            } else {
                m.updates.inc();
                tracing::info!(node = %who.node_id, "updated auto-registered WorkloadEntry {entry}");
            }
            shared.changed(Instant::now());
            Ok(())
        }
        Ok(Err(e)) => Err(e),
        Err(message) => Err(RegistrationError::Store {
            node: who.node_id.clone(),
            message,
        }),
    };
    match outcome {
        Ok(()) => {
            reg.set_status(
                &who.node_id,
                ProxyRegistration {
                    workload_entry: Some(entry),
                    error: None,
                },
            );
            true
        }
        Err(e) => {
            shared.metrics.auto_registration.errors.inc();
            tracing::error!(node = %who.node_id, "{e}");
            reg.set_status(
                &who.node_id,
                ProxyRegistration {
                    workload_entry: None,
                    error: Some(e.to_string()),
                },
            );
            false
        }
    }
}

/// Replaces `connectedAt` by `disconnectedAt` on an auto-registered entry.
async fn mark_disconnected(shared: &Arc<Shared>, key: &EntryKey) {
    let k = key.clone();
    let now = rfc3339(SystemTime::now());
    let result = with_store(shared, move |store| {
        let all = store.resources_only();
        let Some(existing) = find(&all, Kind::WorkloadEntry, &k.0, &k.1) else {
            return Ok(false);
        };
        if !is_auto_registered(existing) {
            return Ok(false);
        }
        let mut entry = existing.clone();
        let a = &mut entry.metadata.annotations;
        a.remove(CONNECTED_AT_ANNOTATION);
        a.insert(DISCONNECTED_AT_ANNOTATION.to_string(), now);
        write_entry(store, &entry)?;
        Ok(true)
    })
    .await;
    match result {
        Ok(true) => {
            shared.metrics.auto_registration.unregister.inc();
            tracing::info!(entry = %format!("{}/{}", key.0, key.1), "auto-registered workload disconnected; its WorkloadEntry goes unless it reconnects within {:?}", shared.autoreg.grace);
            shared.changed(Instant::now());
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(entry = %format!("{}/{}", key.0, key.1), "cannot mark the WorkloadEntry disconnected: {e}")
        }
    }
}

/// Deletes an auto-registered entry (never one a user wrote without the annotation).
async fn remove_entry(shared: &Arc<Shared>, key: &EntryKey, why: &str) {
    let k = key.clone();
    let result = with_store(shared, move |store| {
        let all = store.resources_only();
        let Some(existing) = find(&all, Kind::WorkloadEntry, &k.0, &k.1) else {
            return Ok(false);
        };
        if !is_auto_registered(existing) {
            return Ok(false);
        }
        let id = ResourceId::of(existing);
        match store.delete(&[id]) {
            Ok(_) | Err(StoreError::NotFound(_)) => Ok(true),
            Err(e) => Err(e),
        }
    })
    .await;
    match result {
        Ok(true) => {
            shared.metrics.auto_registration.deletes.inc();
            tracing::info!(entry = %format!("{}/{}", key.0, key.1), "removed auto-registered WorkloadEntry: {why}");
            shared.changed(Instant::now());
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(entry = %format!("{}/{}", key.0, key.1), "cannot remove the auto-registered WorkloadEntry: {e}")
        }
    }
}

/// A time as RFC 3339 in UTC with nanoseconds (Go's `RFC3339Nano`, which Istio writes).
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut frac = format!("{:09}", d.subsec_nanos());
    while frac.ends_with('0') {
        frac.pop();
    }
    let frac = if frac.is_empty() {
        String::new()
    } else {
        format!(".{frac}")
    };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{frac}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_xds::envoy::config::core::v3::Locality;
    use weft_xds::google::protobuf::{Struct, Value, value::Kind as PbKind};

    fn node(id: &str, fields: &[(&str, &str)]) -> Node {
        let s = |v: &str| Value {
            kind: Some(PbKind::StringValue(v.to_string())),
        };
        Node {
            id: id.to_string(),
            metadata: Some(Struct {
                fields: fields.iter().map(|(k, v)| (k.to_string(), s(v))).collect(),
            }),
            ..Default::default()
        }
    }

    fn group(yaml: &str) -> Resource {
        let mut p = weft_config::parse_str(yaml, "wg.yaml");
        assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
        p.resources.remove(0)
    }

    #[test]
    fn names_entries_as_istio_does() {
        assert_eq!(entry_name("vm", "10.0.0.1", ""), "vm-10.0.0.1");
        assert_eq!(entry_name("vm", "fd00::1", "net1"), "vm-fd00--1-net1");
        let long = "g".repeat(260);
        let n = entry_name(&long, "10.0.0.1", "");
        assert_eq!(n.len(), 253);
        assert!(n.ends_with("-10.0.0.1"));
    }

    #[test]
    fn registrant_from_node() {
        let n = node(
            "sidecar~10.0.0.9~vm1.ns1~ns1.svc.cluster.local",
            &[(AUTO_REGISTER_GROUP, "ratings"), ("NETWORK", "vm-net")],
        );
        let r = Registrant::of(&n).expect("asks").expect("valid");
        assert_eq!(r.namespace, "ns1");
        assert_eq!(r.ip, "10.0.0.9");
        assert_eq!(r.entry_name(), "ratings-10.0.0.9-vm-net");
        // INSTANCE_IPS wins over the node id; NAMESPACE over the id's namespace.
        let n = node(
            "sidecar~10.0.0.9~vm1.ns1~ns1.svc.cluster.local",
            &[
                (AUTO_REGISTER_GROUP, "ratings"),
                ("INSTANCE_IPS", "10.1.1.1,fd00::2"),
                ("NAMESPACE", "other"),
            ],
        );
        let r = Registrant::of(&n).expect("asks").expect("valid");
        assert_eq!((r.ip.as_str(), r.namespace.as_str()), ("10.1.1.1", "other"));
        assert!(Registrant::of(&node("sidecar~10.0.0.9~a.b~b.svc", &[])).is_none());
        let bad = node("sidecar~nope~a.b~b.svc", &[(AUTO_REGISTER_GROUP, "g")]);
        assert!(matches!(
            Registrant::of(&bad),
            Some(Err(RegistrationError::NoIp { .. }))
        ));
    }

    #[test]
    fn entry_from_template_merges_labels_and_annotations() {
        let g = group(
            "apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: ratings, namespace: ns1, uid: abc}
spec:
  metadata:
    labels: {app: ratings, tier: a}
    annotations: {team: x}
  template:
    ports: {http: 9080}
    serviceAccount: ratings-sa
    labels: {version: v1, tier: template}
    network: tmpl-net
    weight: 3
",
        );
        let mut n = node(
            "sidecar~10.0.0.9~vm1.ns1~ns1.svc.cluster.local",
            &[(AUTO_REGISTER_GROUP, "ratings")],
        );
        n.locality = Some(Locality {
            region: "eu".into(),
            zone: "z1".into(),
            sub_zone: String::new(),
        });
        let who = Registrant::of(&n).expect("asks").expect("valid");
        let e = entry_from_group(&who, &g).expect("a group");
        assert_eq!(e.name(), "ratings-10.0.0.9");
        assert_eq!(e.namespace(), "ns1");
        let Spec::WorkloadEntry(we) = &e.spec else {
            panic!("not an entry")
        };
        assert_eq!(we.address, "10.0.0.9");
        assert_eq!(we.ports.get("http"), Some(&9080));
        assert_eq!(we.service_account, "ratings-sa");
        assert_eq!(we.network, "tmpl-net");
        assert_eq!(we.locality, "eu/z1");
        assert_eq!(we.weight, 3);
        assert_eq!(we.labels.get("tier").map(String::as_str), Some("a"));
        assert_eq!(we.labels.get("version").map(String::as_str), Some("v1"));
        assert_eq!(e.metadata.labels, we.labels);
        assert_eq!(
            e.metadata
                .annotations
                .get(AUTO_REGISTRATION_GROUP_ANNOTATION)
                .map(String::as_str),
            Some("ratings")
        );
        assert_eq!(
            e.metadata.annotations.get("team").map(String::as_str),
            Some("x")
        );
        assert_eq!(e.metadata.owner_references[0]["uid"], "abc");
        assert_eq!(e.metadata.owner_references[0]["kind"], "WorkloadGroup");
        assert!(is_auto_registered(&e));
        // What the store will accept.
        assert!(
            weft_config::validate::validate_resource(&e)
                .iter()
                .all(|d| d.severity != weft_config::Severity::Error)
        );
    }

    #[test]
    fn bootstrap_group_reads_back() {
        let b = crate::bootstrap::WorkloadBootstrap::sidecar("vm1", "ns1", "10.0.0.7")
            .auto_register("ratings");
        let node = b.build().node.expect("node");
        let r = Registrant::of(&node).expect("asks").expect("valid");
        assert_eq!(
            (r.group.as_str(), r.namespace.as_str(), r.ip.as_str()),
            ("ratings", "ns1", "10.0.0.7")
        );
        let plain = crate::bootstrap::WorkloadBootstrap::sidecar("vm1", "ns1", "10.0.0.7");
        assert!(Registrant::of(&plain.build().node.expect("node")).is_none());
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::new(1_764_000_000, 120_000_000);
        assert_eq!(rfc3339(t), "2025-11-24T16:00:00.12Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // leap day
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00Z");
    }
}
