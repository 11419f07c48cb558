//! Push: from an accepted config change to new snapshots in the xDS cache.
//!
//! The [`Pusher`] keeps the current [`Environment`] and the proxies that are connected. On a
//! change it rebuilds the environment, works out which proxies the change can affect (a
//! Gateway change touches gateways only, a Sidecar in a namespace the proxies of that namespace,
//! config that translation does not read touches nobody), recomputes those proxies' resources
//! and stores them in the cache; the ADS server pushes what changed. Versions are content
//! hashes, so a type whose resources did not change is not pushed: an endpoint-only change
//! reaches proxies as EDS only.
//!
//! Proxies that translate identically share one computation and one copy of their resources:
//! the translation is keyed by everything of the proxy that translation reads (kind, namespace,
//! DNS domain, labels, and the IP when some endpoint or Sidecar ingress refers to it).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use weft_config::{Kind, Resource};
use weft_xds::cache::{Cache, Resource as XdsResource, Snapshot, TypeResources};
use weft_xds::envoy::config::core::v3::Node;
use weft_xds::google::protobuf::{Struct, Value as PbValue, value::Kind as PbKind};
use weft_xds::server::StatusRegistry;
use weft_xds::type_url;

use super::metrics::Metrics;
use super::store::{ResourceId, endpoint_addresses, is_endpoint_kind};
use crate::model::{Environment, MeshSettings, NodeMetadata, Proxy, ProxyKind};
use crate::translate::{Resources, translate};

/// How long a convergence watcher waits for a proxy's ACK before giving up.
const CONVERGENCE_TIMEOUT: Duration = Duration::from_secs(120);

/// The proxies a change can affect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Nobody: the change is to config translation does not read.
    None,
    /// Gateways (routers) only.
    Routers,
    /// Proxies whose config namespace is one of these.
    Namespaces(BTreeSet<String>),
    /// Every proxy.
    All,
}

impl Scope {
    fn covers(&self, p: &Proxy) -> bool {
        match self {
            Scope::None => false,
            Scope::Routers => p.is_router(),
            Scope::Namespaces(ns) => ns.contains(&p.config_namespace),
            Scope::All => true,
        }
    }

    fn union(self, other: Scope) -> Scope {
        match (self, other) {
            (Scope::None, o) | (o, Scope::None) => o,
            (Scope::All, _) | (_, Scope::All) => Scope::All,
            (Scope::Routers, Scope::Routers) => Scope::Routers,
            (Scope::Namespaces(mut a), Scope::Namespaces(b)) => {
                a.extend(b);
                Scope::Namespaces(a)
            }
            _ => Scope::All,
        }
    }
}

/// What changed between two versions of the config.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeSet {
    /// Resources added, changed or removed.
    pub changed: BTreeSet<ResourceId>,
    /// Whether every changed resource is an endpoint (Pod, EndpointSlice, WorkloadEntry).
    pub endpoints_only: bool,
    /// Endpoint addresses in the old or new versions of changed endpoint resources.
    pub endpoint_addresses: BTreeSet<String>,
}

/// Compares two config versions.
pub fn diff(old: &HashMap<ResourceId, Resource>, new: &HashMap<ResourceId, Resource>) -> ChangeSet {
    let mut cs = ChangeSet {
        endpoints_only: true,
        ..Default::default()
    };
    let same = |a: &Resource, b: &Resource| {
        a.metadata == b.metadata && a.spec == b.spec && a.api_version == b.api_version
    };
    let note = |id: &ResourceId, rs: [Option<&Resource>; 2], cs: &mut ChangeSet| {
        cs.changed.insert(id.clone());
        if !is_endpoint_kind(id.kind) {
            cs.endpoints_only = false;
        }
        for r in rs.into_iter().flatten() {
            cs.endpoint_addresses.extend(endpoint_addresses(r));
        }
    };
    for (id, r) in new {
        match old.get(id) {
            Some(o) if same(o, r) => {}
            o => note(id, [o, Some(r)], &mut cs),
        }
    }
    for (id, o) in old {
        if !new.contains_key(id) {
            note(id, [Some(o), None], &mut cs);
        }
    }
    if cs.changed.is_empty() {
        cs.endpoints_only = false;
    }
    cs
}

/// The proxies a change can affect, from the kinds and namespaces it touches.
pub fn scope_of(change: &ChangeSet, root_namespace: &str) -> Scope {
    let mut scope = Scope::None;
    for id in &change.changed {
        let s = match id.kind {
            Kind::Gateway => Scope::Routers,
            // Namespace-scoped policies: their namespace's proxies, or every proxy from the
            // root namespace (the inbound RBAC and JWT filters come from the security ones).
            Kind::Sidecar
            | Kind::PeerAuthentication
            | Kind::AuthorizationPolicy
            | Kind::RequestAuthentication
                if id.namespace != root_namespace =>
            {
                Scope::Namespaces([id.namespace.clone()].into())
            }
            Kind::VirtualService
            | Kind::DestinationRule
            | Kind::ServiceEntry
            | Kind::WorkloadEntry
            | Kind::WorkloadGroup
            | Kind::Sidecar
            | Kind::PeerAuthentication
            | Kind::AuthorizationPolicy
            | Kind::RequestAuthentication
            | Kind::Service
            | Kind::Pod
            | Kind::EndpointSlice => Scope::All,
            // Read by nothing that translation produces today.
            _ => Scope::None,
        };
        scope = scope.union(s);
    }
    scope
}

/// Reads Istio's node metadata (`LABELS`, `NAMESPACE`, ...) from an Envoy node.
pub fn node_metadata(node: &Node) -> NodeMetadata {
    node.metadata
        .as_ref()
        .map(|s| NodeMetadata::from_json(&struct_to_json(s)))
        .unwrap_or_default()
}

/// A protobuf `Struct` as JSON.
pub fn struct_to_json(s: &Struct) -> serde_json::Value {
    serde_json::Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), pb_value_to_json(v)))
            .collect(),
    )
}

fn pb_value_to_json(v: &PbValue) -> serde_json::Value {
    match &v.kind {
        None | Some(PbKind::NullValue(_)) => serde_json::Value::Null,
        Some(PbKind::NumberValue(n)) => serde_json::Number::from_f64(*n)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Some(PbKind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(PbKind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(PbKind::StructValue(s)) => struct_to_json(s),
        Some(PbKind::ListValue(l)) => {
            serde_json::Value::Array(l.values.iter().map(pb_value_to_json).collect())
        }
    }
}

/// The proxy a node describes: kind, IP and namespace from its Istio node id, labels and
/// namespace (when set) from its metadata.
pub fn proxy_of(node: &Node) -> Result<Proxy, crate::model::NodeIdError> {
    let mut p = Proxy::from_node_id(&node.id)?;
    let md = node_metadata(node);
    if !md.namespace.is_empty() {
        p.config_namespace = md.namespace.clone();
    }
    p.labels = md.labels.clone();
    p.metadata = NodeMetadata {
        namespace: p.config_namespace.clone(),
        ..md
    };
    Ok(p)
}

/// The range cluster IPs are allocated from (Kubernetes' default service range starts here).
const CLUSTER_IP_PREFIX: [u8; 2] = [10, 96];

/// Gives every Kubernetes Service that has no `clusterIP` one, as the API server would when the
/// Service is created: the config directory is the whole platform, and a Service written without
/// an address (as bookinfo's are) is a ClusterIP Service, not a headless one (`clusterIP: None`).
/// Addresses come from a hash of namespace and name in 10.96.0.0/16, probing past collisions in
/// (namespace, name) order, so they are stable across restarts.
pub fn allocate_cluster_ips(mut resources: Vec<Resource>) -> Vec<Resource> {
    use std::hash::{Hash, Hasher};
    let mut taken: HashSet<String> = HashSet::new();
    let mut wanting: Vec<(String, String, usize)> = Vec::new();
    for (i, r) in resources.iter().enumerate() {
        let weft_config::Spec::Service(svc) = &r.spec else {
            continue;
        };
        let spec = svc.spec.as_ref();
        match spec.and_then(|s| s.cluster_ip.as_deref()) {
            Some(ip) if !ip.is_empty() => {
                taken.insert(ip.to_string());
            }
            _ if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") => {}
            _ => wanting.push((r.namespace().to_string(), r.name().to_string(), i)),
        }
    }
    wanting.sort();
    for (ns, name, i) in wanting {
        let mut h = std::hash::DefaultHasher::new();
        (&ns, &name).hash(&mut h);
        let mut n = (h.finish() % 65_534) as u32 + 1;
        let mut found = None;
        for _ in 0..65_534 {
            let ip = format!(
                "{}.{}.{}.{}",
                CLUSTER_IP_PREFIX[0],
                CLUSTER_IP_PREFIX[1],
                n / 256,
                n % 256
            );
            if !n.is_multiple_of(256) && n % 256 != 255 && taken.insert(ip.clone()) {
                found = Some(ip);
                break;
            }
            n = n % 65_534 + 1;
        }
        let Some(ip) = found else {
            tracing::warn!(service = %name, namespace = %ns, "no cluster IP left in 10.96.0.0/16");
            continue;
        };
        if let weft_config::Spec::Service(svc) = &mut resources[i].spec {
            let spec = svc.spec.get_or_insert_with(Default::default);
            spec.cluster_ip = Some(ip.clone());
            spec.cluster_ips = Some(vec![ip]);
        }
    }
    resources
}

/// Everything of a proxy that translation reads, so that equal keys translate equally.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ClassKey {
    router: bool,
    namespace: String,
    dns_domain: String,
    labels: BTreeMap<String, String>,
    ipv6_only: bool,
    /// A proxyless gRPC client (its config takes another shape).
    grpc: bool,
    /// No traffic capture (`INTERCEPTION_MODE: NONE`): listeners bind their own ports.
    interception_none: bool,
    /// The IPs, when the environment refers to one of them (endpoints, Sidecar ingress).
    ips: Option<Vec<String>>,
}

/// One config version and the translations made from it.
struct EnvState {
    env: Environment,
    /// Bumped per rebuild; a proxy computed at this generation is current.
    generation: u64,
    /// Every endpoint address, to tell whether a proxy's IP matters to its translation.
    endpoint_ips: HashSet<String>,
    /// Whether any Sidecar has an ingress listener (those bind to the proxy IP).
    sidecar_ingress: bool,
    /// Whether any Sidecar or DestinationRule selects workloads by label: only then do a
    /// proxy's labels matter to its clusters' endpoints.
    workload_selectors: bool,
    /// Translations by class, shared by the proxies of a class.
    memo: Mutex<HashMap<ClassKey, Arc<Translated>>>,
    /// Endpoint (EDS) resources by endpoint class, for endpoint-only pushes: one set shared
    /// by every proxy of the class (stored in the cache as is, never copied per proxy).
    eds_memo: Mutex<HashMap<ClassKey, Arc<TypeResources>>>,
}

/// One translation, encoded for the cache; its type sets are shared by every proxy of the class.
/// (Only the encoded form is kept: decoded Envoy structs are several times larger.)
pub struct Translated {
    /// The resources, ready for the cache.
    pub snapshot: Snapshot,
}

impl EnvState {
    fn new(env: Environment, generation: u64) -> EnvState {
        let mut endpoint_ips = HashSet::new();
        for s in env.services() {
            for e in env.registry.endpoints(s) {
                endpoint_ips.insert(e.address);
            }
        }
        let sidecar_ingress = env.sidecars.iter().any(|s| !s.spec.ingress.is_empty());
        let workload_selectors = env.sidecars.iter().any(|s| {
            s.spec
                .workload_selector
                .as_ref()
                .is_some_and(|w| !w.labels.is_empty())
        }) || env
            .destination_rules
            .iter()
            .any(|d| d.spec.workload_selector.is_some());
        EnvState {
            env,
            generation,
            endpoint_ips,
            sidecar_ingress,
            workload_selectors,
            memo: Mutex::new(HashMap::new()),
            eds_memo: Mutex::new(HashMap::new()),
        }
    }

    fn class_of(&self, p: &Proxy) -> ClassKey {
        let ip_matters = self.sidecar_ingress
            || p.ip_addresses
                .iter()
                .any(|ip| self.endpoint_ips.contains(ip));
        ClassKey {
            router: p.kind == ProxyKind::Router,
            namespace: p.config_namespace.clone(),
            dns_domain: p.dns_domain.clone(),
            labels: p.labels.clone(),
            ipv6_only: p.ipv6_only(),
            grpc: super::grpc::is_grpc(p),
            interception_none: p.interception_none(),
            ips: ip_matters.then(|| p.ip_addresses.clone()),
        }
    }

    /// What a proxy's EDS resources depend on: the clusters it sees (namespace, Sidecar) and
    /// their DestinationRules, never its IP; its labels only when some config selects by them.
    fn eds_class_of(&self, p: &Proxy) -> ClassKey {
        let mut k = self.class_of(p);
        k.ips = None;
        if !self.workload_selectors {
            k.labels.clear();
        }
        k
    }

    /// The EDS resources of a proxy, computed once per endpoint class.
    fn endpoints(&self, p: &Proxy) -> Arc<TypeResources> {
        let key = self.eds_class_of(p);
        if let Some(e) = lock(&self.eds_memo).get(&key) {
            return e.clone();
        }
        let from_memo = self.memo_get(&self.class_of(p)).and_then(|t| {
            t.snapshot
                .resources(type_url::CLUSTER_LOAD_ASSIGNMENT)
                .cloned()
        });
        let e = match from_memo {
            Some(tr) => tr,
            None => {
                let mut r = translate(&self.env, p);
                if key.grpc {
                    r = super::grpc::for_grpc(&r);
                }
                Arc::new(TypeResources::new(r.endpoints.iter().map(|c| {
                    XdsResource::new(&c.cluster_name, crate::translate::envoy::any(c))
                })))
            }
        };
        lock(&self.eds_memo).entry(key).or_insert(e).clone()
    }

    fn memo_get(&self, k: &ClassKey) -> Option<Arc<Translated>> {
        lock(&self.memo).get(k).cloned()
    }

    fn translated(&self, p: &Proxy) -> Arc<Translated> {
        let key = self.class_of(p);
        if let Some(t) = lock(&self.memo).get(&key) {
            return t.clone();
        }
        // Computed outside the lock: two proxies of a new class may both compute it once.
        let mut resources = translate(&self.env, p);
        if key.grpc {
            resources = super::grpc::for_grpc(&resources);
        }
        let t = Arc::new(Translated {
            snapshot: to_snapshot(&resources),
        });
        drop(resources);
        lock(&self.memo).entry(key).or_insert(t).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The cache snapshot of translated resources.
pub fn to_snapshot(r: &Resources) -> Snapshot {
    fn res<M: prost::Name>(name: &str, m: &M) -> XdsResource {
        XdsResource::new(name, crate::translate::envoy::any(m))
    }
    Snapshot::new()
        .with(
            type_url::CLUSTER,
            r.clusters.iter().map(|c| res(&c.name, c)),
        )
        .with(
            type_url::CLUSTER_LOAD_ASSIGNMENT,
            r.endpoints.iter().map(|c| res(&c.cluster_name, c)),
        )
        .with(
            type_url::LISTENER,
            r.listeners.iter().map(|l| res(&l.name, l)),
        )
        .with(
            type_url::ROUTE_CONFIGURATION,
            r.routes.iter().map(|c| res(&c.name, c)),
        )
}

/// A connected proxy.
struct ProxyEntry {
    proxy: Proxy,
    /// Open streams of this node id (a reconnect may open before the old stream closes).
    streams: usize,
    /// The generation last stored for it; guards against an older computation overwriting a
    /// newer one when a connect races a push.
    generation: Arc<Mutex<u64>>,
}

/// What a push did, for logs, tests and the bench.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushSummary {
    /// Config revision pushed.
    pub revision: u64,
    /// Proxies recomputed.
    pub proxies: usize,
    /// Distinct translations computed.
    pub translations: usize,
    /// Proxies that had at least one type change, with the changed type URLs.
    pub changed: BTreeMap<String, Vec<String>>,
    /// Whether only endpoints changed.
    pub endpoints_only: bool,
    /// Time to rebuild the model, translate and store the snapshots.
    pub elapsed: Duration,
}

/// The translation and push engine shared by the config watcher, the ADS hooks and the admin API.
pub struct Pusher {
    cache: Cache,
    mesh: MeshSettings,
    metrics: Arc<Metrics>,
    env: RwLock<Arc<EnvState>>,
    /// The config the environment was built from, for diffs.
    config: Mutex<(u64, HashMap<ResourceId, Resource>)>,
    proxies: Mutex<HashMap<String, ProxyEntry>>,
    status: OnceLock<StatusRegistry>,
    generation: AtomicU64,
}

impl std::fmt::Debug for Pusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pusher")
            .field("proxies", &lock(&self.proxies).len())
            .finish()
    }
}

impl Pusher {
    /// A pusher writing to `cache`, starting from an empty config.
    pub fn new(cache: Cache, mesh: MeshSettings, metrics: Arc<Metrics>) -> Pusher {
        let env = Environment::from_resources(&[], mesh.clone());
        Pusher {
            cache,
            mesh,
            metrics,
            env: RwLock::new(Arc::new(EnvState::new(env, 0))),
            config: Mutex::new((0, HashMap::new())),
            proxies: Mutex::new(HashMap::new()),
            status: OnceLock::new(),
            generation: AtomicU64::new(0),
        }
    }

    /// Gives the pusher the ADS server's status, so that it can time convergence and count NACKs.
    pub fn set_status(&self, status: StatusRegistry) {
        let _ = self.status.set(status);
    }

    fn current(&self) -> Arc<EnvState> {
        self.env
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The current environment's translation for a proxy (shared with its class).
    pub fn translated(&self, proxy: &Proxy) -> Arc<Translated> {
        self.current().translated(proxy)
    }

    /// The connected proxy with this node id.
    pub fn proxy(&self, node_id: &str) -> Option<Proxy> {
        lock(&self.proxies).get(node_id).map(|e| e.proxy.clone())
    }

    /// The ADS `on_connect` hook: registers the proxy and stores its snapshot before the
    /// server reads it, so the first response goes out at once.
    pub fn on_connect(&self, node: &Node) {
        self.metrics.stream_delta(1);
        let proxy = match proxy_of(node) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(node = %node.id, "cannot serve this node: {e}");
                return;
            }
        };
        let generation = {
            let mut proxies = lock(&self.proxies);
            let e = proxies
                .entry(node.id.clone())
                .or_insert_with(|| ProxyEntry {
                    proxy: proxy.clone(),
                    streams: 0,
                    generation: Arc::new(Mutex::new(0)),
                });
            e.streams += 1;
            e.proxy = proxy.clone();
            e.generation.clone()
        };
        let started = Instant::now();
        if let Some(changed) = self.recompute(&node.id, &proxy, &generation, true, false) {
            self.watch_convergence(node.id.clone(), changed, started);
        }
    }

    /// The ADS `on_disconnect` hook.
    pub fn on_disconnect(&self, node: &Node) {
        self.metrics.stream_delta(-1);
        let mut proxies = lock(&self.proxies);
        if let Some(e) = proxies.get_mut(&node.id) {
            e.streams = e.streams.saturating_sub(1);
            if e.streams == 0 {
                proxies.remove(&node.id);
                self.cache.remove_snapshot(&node.id);
            }
        }
    }

    /// Computes and stores one proxy's snapshot from the current environment, unless a newer
    /// one is stored already. Returns the (type URL, version) pairs that changed.
    fn recompute(
        &self,
        node_id: &str,
        proxy: &Proxy,
        generation: &Mutex<u64>,
        force: bool,
        eds_only: bool,
    ) -> Option<Vec<(String, String)>> {
        let mut g = lock(generation);
        let state = self.current();
        if !force && *g >= state.generation && state.generation != 0 {
            return None;
        }
        // EDS only when the proxy is current up to this change (its other types are right).
        let eds_only = eds_only && !force && *g + 1 == state.generation;
        // The resources are built from typed Envoy messages (`to_snapshot`), so their types
        // are right by construction: stored without re-checking them per proxy.
        let summary = if eds_only {
            let eds = state.endpoints(proxy);
            self.cache
                .set_shared_unchecked(node_id, type_url::CLUSTER_LOAD_ASSIGNMENT, eds)
        } else {
            let t = state.translated(proxy);
            self.cache
                .set_snapshot_unchecked(node_id, t.snapshot.clone())
        };
        *g = state.generation;
        let changed: Vec<(String, String)> = summary
            .changed
            .iter()
            .filter_map(|t| summary.version(t).map(|v| (t.clone(), v.to_string())))
            .collect();
        for (t, _) in &changed {
            self.metrics.pushed(t);
        }
        Some(changed)
    }

    /// Times a proxy's ACK of `changed` and counts NACKs, off the caller's path.
    fn watch_convergence(&self, node_id: String, changed: Vec<(String, String)>, t0: Instant) {
        let Some(status) = self.status.get().cloned() else {
            return;
        };
        if changed.is_empty() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let metrics = self.metrics.clone();
        rt.spawn(async move {
            let mut nacked: Vec<String> = Vec::new();
            let wait = status.wait_for(&node_id, |s| {
                if !s.connected {
                    return false;
                }
                let mut done = true;
                for (t, v) in &changed {
                    let Some(ts) = s.types.get(t) else {
                        done = false;
                        continue;
                    };
                    if ts.nack.as_ref().is_some_and(|n| &n.rejected_version == v) {
                        if !nacked.contains(t) {
                            nacked.push(t.clone());
                        }
                        continue;
                    }
                    // A type the node does not subscribe to (nothing sent) does not hold it up.
                    if ts.sent_version.is_none() {
                        continue;
                    }
                    if !s.acked(t, v) {
                        done = false;
                    }
                }
                done
            });
            if tokio::time::timeout(CONVERGENCE_TIMEOUT, wait)
                .await
                .is_ok()
            {
                metrics.convergence.observe(t0.elapsed().as_secs_f64());
            }
            for t in nacked {
                metrics.rejected(&t);
            }
        });
    }

    /// Takes in a new config version: rebuilds the environment, then recomputes the proxies
    /// the change can affect. `t0` is when the change was first seen (for convergence time).
    pub fn update(&self, revision: u64, resources: Vec<Resource>, t0: Instant) -> PushSummary {
        let new: HashMap<ResourceId, Resource> = resources
            .iter()
            .map(|r| (ResourceId::of(r), r.clone()))
            .collect();
        let change = {
            let mut cfg = lock(&self.config);
            let change = diff(&cfg.1, &new);
            *cfg = (revision, new);
            change
        };
        let mut summary = PushSummary {
            revision,
            endpoints_only: change.endpoints_only,
            ..Default::default()
        };
        if change.changed.is_empty() {
            return summary;
        }
        let started = Instant::now();
        let scope = scope_of(&change, &self.mesh.root_namespace);
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let resources = allocate_cluster_ips(resources);
        let env = Environment::from_resources(&resources, self.mesh.clone());
        let state = Arc::new(EnvState::new(env, generation));
        *self.env.write().unwrap_or_else(PoisonError::into_inner) = state.clone();
        self.metrics.push_triggers.inc();
        // The proxies to recompute; with endpoint-only changes, a proxy whose own address is
        // among the changed endpoints may also change its inbound config (that needs no special
        // case: its whole snapshot is recomputed and only what differs is pushed).
        let targets: Vec<(String, Proxy, Arc<Mutex<u64>>)> = lock(&self.proxies)
            .iter()
            .filter(|(_, e)| scope.covers(&e.proxy))
            .map(|(id, e)| (id.clone(), e.proxy.clone(), e.generation.clone()))
            .collect();
        summary.proxies = targets.len();
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 8)
            .min(targets.len().max(1));
        let chunk = targets.len().div_ceil(threads).max(1);
        let change = &change;
        let results: Vec<(String, Vec<(String, String)>)> = std::thread::scope(|s| {
            let handles: Vec<_> = targets
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        part.iter()
                            .filter_map(|(id, p, g)| {
                                let eds_only = change.endpoints_only
                                    && !p
                                        .ip_addresses
                                        .iter()
                                        .any(|ip| change.endpoint_addresses.contains(ip));
                                self.recompute(id, p, g, false, eds_only)
                                    .map(|c| (id.clone(), c))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        summary.translations = lock(&state.memo).len();
        summary.elapsed = started.elapsed();
        for (id, changed) in results {
            if changed.is_empty() {
                continue;
            }
            summary
                .changed
                .insert(id.clone(), changed.iter().map(|(t, _)| t.clone()).collect());
            self.watch_convergence(id, changed, t0);
        }
        tracing::info!(
            revision,
            proxies = summary.proxies,
            translations = summary.translations,
            pushed = summary.changed.len(),
            endpoints_only = summary.endpoints_only,
            elapsed_ms = summary.elapsed.as_secs_f64() * 1000.0,
            since_change_ms = t0.elapsed().as_secs_f64() * 1000.0,
            "config pushed"
        );
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(kind: Kind, namespace: &str) -> ChangeSet {
        ChangeSet {
            changed: [ResourceId {
                kind,
                namespace: namespace.to_string(),
                name: "p".to_string(),
            }]
            .into(),
            ..Default::default()
        }
    }

    #[test]
    fn security_policies_reach_the_proxies_they_select() {
        for kind in [
            Kind::PeerAuthentication,
            Kind::AuthorizationPolicy,
            Kind::RequestAuthentication,
        ] {
            match scope_of(&change(kind, "default"), "istio-system") {
                Scope::Namespaces(ns) => {
                    assert_eq!(ns, BTreeSet::from(["default".to_string()]), "{kind:?}")
                }
                other => panic!("{kind:?} in default: {other:?}"),
            }
            assert!(
                matches!(
                    scope_of(&change(kind, "istio-system"), "istio-system"),
                    Scope::All
                ),
                "{kind:?} in the root namespace"
            );
        }
    }
}
