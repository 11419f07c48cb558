//! The proxy as an xDS client: `dynamic_resources.ads_config` in the bootstrap makes the proxy
//! subscribe to CDS and LDS over ADS, then to the EDS and RDS names those resources use.
//!
//! Every response is compiled together with the bootstrap's static resources (static first, as
//! Envoy does) into a new [`Snapshot`] that is swapped in whole. A resource that does not compile
//! makes the callback return `Err` with the compiler's message, so the client NACKs and the
//! snapshot in effect stays. EDS-only responses replace endpoint sets in place
//! ([`crate::cluster::Cluster::replace_endpoints`]) without recompiling anything else; RDS-only responses rebuild
//! the route tables only. Listeners that appear are bound (a bind failure is a NACK), listeners
//! that disappear stop accepting and drain their connections, and a listener whose address
//! changes is replaced. `/ready` turns LIVE once LDS and CDS and the RDS and EDS names they use
//! have all arrived. While the control plane is away the last accepted configuration keeps
//! serving; the client reconnects with backoff and resyncs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use prost::{Message, Name};
use tokio::sync::watch;
use weft_xds::client::{AdsClient, ClientConfig, ClientStatus, Subscriber, Subscription, Update};
use weft_xds::envoy::admin::v3 as admin;
use weft_xds::envoy::config::bootstrap::v3::Bootstrap;
use weft_xds::envoy::config::cluster::v3::{
    Cluster as ClusterProto, cluster::ClusterDiscoveryType,
};
use weft_xds::envoy::config::core::v3::{
    ApiConfigSource, ConfigSource, GrpcService, api_config_source::ApiType,
    config_source::ConfigSourceSpecifier, grpc_service::TargetSpecifier,
};
use weft_xds::envoy::config::endpoint::v3::ClusterLoadAssignment;
use weft_xds::envoy::config::listener::v3::{Listener as ListenerProto, filter::ConfigType};
use weft_xds::envoy::config::route::v3::RouteConfiguration;
use weft_xds::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use weft_xds::envoy::extensions::transport_sockets::tls::v3::{
    DownstreamTlsContext, SdsSecretConfig, Secret, UpstreamTlsContext,
    common_tls_context::ValidationContextType,
};
use weft_xds::google::protobuf::{Any, Timestamp};
use weft_xds::type_url::{
    CLUSTER, CLUSTER_LOAD_ASSIGNMENT as EDS, LISTENER, ROUTE_CONFIGURATION as RDS, SECRET as SDS,
};

use crate::cluster::endpoint_specs;
use crate::config::{self, CompileError, CompileOptions, Compiled, Snapshot, Unsupported};
use crate::stats::Stats;
use crate::{ProxyHandle, Shared};

/// How the bootstrap asks for ADS: where the server is and which types come from it.
#[derive(Clone, Debug)]
pub struct AdsSettings {
    /// The client configuration (server URI, node, SotW or delta, backoff).
    pub client: ClientConfig,
    /// `lds_config` is `ads: {}`: subscribe to listeners.
    pub lds: bool,
    /// `cds_config` is `ads: {}`: subscribe to clusters.
    pub cds: bool,
}

fn invalid(field: &str, reason: impl Into<String>) -> CompileError {
    CompileError::Invalid {
        resource: "bootstrap".into(),
        field: field.into(),
        reason: reason.into(),
    }
}

fn is_ads(cs: Option<&ConfigSource>) -> bool {
    matches!(
        cs.and_then(|c| c.config_source_specifier.as_ref()),
        Some(ConfigSourceSpecifier::Ads(_))
    )
}

impl AdsSettings {
    /// Reads `dynamic_resources`: `None` when the bootstrap has no `ads_config` (static only).
    pub fn from_bootstrap(b: &Bootstrap) -> Result<Option<AdsSettings>, CompileError> {
        let Some(dr) = &b.dynamic_resources else {
            return Ok(None);
        };
        let Some(ads) = &dr.ads_config else {
            return Ok(None);
        };
        let mode_delta = match ApiType::try_from(ads.api_type) {
            Ok(ApiType::Grpc | ApiType::AggregatedGrpc) => false,
            Ok(ApiType::DeltaGrpc | ApiType::AggregatedDeltaGrpc) => true,
            _ => {
                return Err(invalid(
                    "dynamic_resources.ads_config.api_type",
                    "must be GRPC or DELTA_GRPC",
                ));
            }
        };
        let server = ads_server(b, ads)?;
        for (field, cs) in [
            ("lds_config", dr.lds_config.as_ref()),
            ("cds_config", dr.cds_config.as_ref()),
        ] {
            if cs.is_some() && !is_ads(cs) {
                return Err(invalid(
                    &format!("dynamic_resources.{field}"),
                    "only `ads: {}` is supported (the ADS stream of ads_config)",
                ));
            }
        }
        let node = b.node.clone().unwrap_or_default();
        let mut client = ClientConfig::new(server, node);
        if mode_delta {
            client = client.delta();
        }
        if let Some((base, max)) = backoff(&ads.grpc_services[0]) {
            client = client.backoff(base, max);
        }
        Ok(Some(AdsSettings {
            client,
            lds: dr.lds_config.is_some(),
            cds: dr.cds_config.is_some(),
        }))
    }
}

/// The control plane's URI from `grpc_services[0]`: an `envoy_grpc` cluster (a static cluster
/// with a socket address) or a `google_grpc` target URI.
fn ads_server(b: &Bootstrap, ads: &ApiConfigSource) -> Result<String, CompileError> {
    let field = "dynamic_resources.ads_config.grpc_services[0]";
    let Some(gs) = ads.grpc_services.first() else {
        return Err(invalid(
            "dynamic_resources.ads_config.grpc_services",
            "ADS needs one grpc_services entry",
        ));
    };
    match &gs.target_specifier {
        Some(TargetSpecifier::EnvoyGrpc(e)) => {
            let empty = Default::default();
            let sr = b.static_resources.as_ref().unwrap_or(&empty);
            let Some(c) = sr.clusters.iter().find(|c| c.name == e.cluster_name) else {
                return Err(invalid(
                    &format!("{field}.envoy_grpc.cluster_name"),
                    format!("no static cluster is named {:?}", e.cluster_name),
                ));
            };
            let specs = match &c.load_assignment {
                Some(cla) => endpoint_specs(cla, &format!("cluster {:?}", c.name))?,
                None => Vec::new(),
            };
            let Some(first) = specs.first() else {
                return Err(invalid(
                    &format!("{field}.envoy_grpc.cluster_name"),
                    format!(
                        "static cluster {:?} has no endpoint for the xDS server",
                        c.name
                    ),
                ));
            };
            Ok(format!("http://{}", first.addr))
        }
        Some(TargetSpecifier::GoogleGrpc(g)) => {
            if g.target_uri.is_empty() {
                return Err(invalid(
                    &format!("{field}.google_grpc.target_uri"),
                    "is empty",
                ));
            }
            Ok(if g.target_uri.contains("://") {
                g.target_uri.clone()
            } else {
                format!("http://{}", g.target_uri)
            })
        }
        None => Err(invalid(field, "needs envoy_grpc or google_grpc")),
    }
}

/// `retry_policy.retry_back_off` of the gRPC service (or of its `envoy_grpc`).
fn backoff(gs: &GrpcService) -> Option<(Duration, Duration)> {
    let policy = gs.retry_policy.as_ref().or(match &gs.target_specifier {
        Some(TargetSpecifier::EnvoyGrpc(e)) => e.retry_policy.as_ref(),
        _ => None,
    })?;
    let b = policy.retry_back_off.as_ref()?;
    let base = b
        .base_interval
        .as_ref()
        .map_or(Duration::from_millis(100), config::duration)
        .max(Duration::from_millis(1));
    let max = b.max_interval.as_ref().map_or(base * 10, config::duration);
    Some((base, max))
}

/// Compiles the bootstrap's static resources for start-up. With ADS configured,
/// `dynamic_resources` and RDS references are not "unsupported": they are served from ADS.
pub(crate) fn compile_bootstrap(
    bootstrap: &Bootstrap,
    stats: &Stats,
    opts: &CompileOptions,
    ads: bool,
) -> Result<Compiled, CompileError> {
    if !ads {
        return config::compile(bootstrap, stats, opts);
    }
    let mut b = bootstrap.clone();
    b.dynamic_resources = None;
    let lax = CompileOptions {
        reject_unsupported: false,
        ..opts.clone()
    };
    let mut compiled = config::compile(&b, stats, &lax)?;
    compiled.snapshot.bootstrap = Arc::new(bootstrap.clone());
    compiled.unsupported.retain(|u| !served_by_ads(u));
    if opts.reject_unsupported && !compiled.unsupported.is_empty() {
        return Err(CompileError::Unsupported(compiled.unsupported));
    }
    Ok(compiled)
}

/// Findings that ADS makes moot: RDS route configurations and EDS endpoints arrive over ADS.
fn served_by_ads(u: &Unsupported) -> bool {
    u.what.ends_with(".typed_config.rds")
        || u.what.contains(".typed_config.rds (route configuration")
        || u.what == "type EDS without load_assignment (EDS over xDS)"
}

/// One accepted resource.
#[derive(Clone, Debug)]
struct Item<T> {
    msg: T,
    any: Any,
    version: String,
    updated: SystemTime,
}

/// The accepted resources of one type.
#[derive(Clone, Debug)]
struct Typed<T> {
    received: bool,
    version: String,
    items: BTreeMap<String, Item<T>>,
}

impl<T> Default for Typed<T> {
    fn default() -> Self {
        Typed {
            received: false,
            version: String::new(),
            items: BTreeMap::new(),
        }
    }
}

fn kind(type_url: &str) -> &'static str {
    match type_url {
        LISTENER => "listener",
        CLUSTER => "cluster",
        RDS => "route_configuration",
        EDS => "cluster_load_assignment",
        SDS => "secret",
        _ => "resource",
    }
}

impl<T: Message + Name + Default + Clone> Typed<T> {
    /// The state after `u`: unchanged resources keep their version and time.
    fn next(&self, u: &Update<'_>) -> Result<Typed<T>, String> {
        let now = SystemTime::now();
        let mut items = BTreeMap::new();
        for (name, any) in u.resources {
            if let Some(old) = self.items.get(name)
                && old.any == *any
            {
                items.insert(name.clone(), old.clone());
                continue;
            }
            if any.type_url != T::type_url() {
                return Err(format!(
                    "{} {name:?}: has type {}, expected {}",
                    kind(u.type_url),
                    any.type_url,
                    T::type_url()
                ));
            }
            let msg = T::decode(any.value.as_slice())
                .map_err(|e| format!("{} {name:?}: does not decode: {e}", kind(u.type_url)))?;
            items.insert(
                name.clone(),
                Item {
                    msg,
                    any: any.clone(),
                    version: u.version.to_string(),
                    updated: now,
                },
            );
        }
        Ok(Typed {
            received: true,
            version: u.version.to_string(),
            items,
        })
    }
}

/// Everything accepted from the control plane.
#[derive(Clone, Debug, Default)]
struct DynState {
    listeners: Typed<ListenerProto>,
    clusters: Typed<ClusterProto>,
    routes: Typed<RouteConfiguration>,
    endpoints: Typed<ClusterLoadAssignment>,
    secrets: Typed<Secret>,
}

/// A dynamic listener's socket and accept loop.
struct Bound {
    /// The configured address (port 0 stays 0).
    configured: SocketAddr,
    /// The real address.
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    drain: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Bound {
    /// Stops accepting and drains the connections; returns the accept loop to await.
    fn close(self) -> tokio::task::JoinHandle<()> {
        self.stop.send_replace(true);
        self.drain.send_replace(true);
        self.task
    }
}

#[derive(Default)]
struct Inner {
    client: Option<AdsClient>,
    listeners: BTreeMap<String, Bound>,
    dump: Option<Arc<DynState>>,
}

/// xDS state shared with the data plane and the admin interface (a field of [`Shared`]).
#[derive(Default)]
pub(crate) struct XdsShared {
    inner: Mutex<Inner>,
}

impl XdsShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The bound address of dynamic listener `name`.
    pub(crate) fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.lock().listeners.get(name).map(|b| b.addr)
    }

    /// Dynamic listeners and their bound addresses.
    pub(crate) fn listener_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.lock()
            .listeners
            .iter()
            .map(|(n, b)| (n.clone(), b.addr))
            .collect()
    }
}

/// The drain signal for a connection accepted on listener `name`: that listener's own when it
/// came from LDS (it fires when the listener is removed or replaced, and on a global drain), the
/// global one otherwise.
pub(crate) fn drain_signal(shared: &Shared, name: &str) -> watch::Receiver<bool> {
    match shared.xds.lock().listeners.get(name) {
        Some(b) => b.drain.subscribe(),
        None => shared.draining.subscribe(),
    }
}

impl ProxyHandle {
    /// The ADS client's status (connection, per type versions, ACKs and NACKs); `None` without
    /// `dynamic_resources.ads_config`.
    pub fn xds_status(&self) -> Option<ClientStatus> {
        self.shared.xds.lock().client.as_ref().map(|c| c.status())
    }
}

/// Starts the ADS client on the workers runtime.
pub(crate) fn start(
    settings: AdsSettings,
    shared: &Arc<Shared>,
    rt: &tokio::runtime::Handle,
    bootstrap: &Bootstrap,
    opts: CompileOptions,
) -> Result<(), CompileError> {
    let _guard = rt.enter();
    let mut client = AdsClient::new(settings.client.clone()).map_err(|e| {
        invalid(
            "dynamic_resources.ads_config.grpc_services[0]",
            e.to_string(),
        )
    })?;
    let base = Arc::new(bootstrap.clone());
    let mut applier = Applier {
        shared: Arc::clone(shared),
        rt: rt.clone(),
        subs: client.subscriber(),
        base: Arc::clone(&base),
        opts,
        settings,
        state: DynState::default(),
        rds_keys: BTreeSet::new(),
        eds_sub: BTreeSet::new(),
        rds_sub: BTreeSet::new(),
        sds_sub: BTreeSet::new(),
    };
    // Types are resubscribed in the order first subscribed: CDS, EDS, LDS, RDS.
    if applier.settings.cds {
        client.subscribe(CLUSTER, Subscription::Wildcard);
    }
    applier.eds_sub = applier.eds_names();
    client.subscribe(EDS, Subscription::names(&applier.eds_sub));
    if applier.settings.lds {
        client.subscribe(LISTENER, Subscription::Wildcard);
    }
    applier.rds_sub = applier.rds_names();
    client.subscribe(RDS, Subscription::names(&applier.rds_sub));
    applier.sds_sub = applier.sds_names();
    client.subscribe(SDS, Subscription::names(&applier.sds_sub));
    applier.check_ready();
    client
        .start(move |u: &Update<'_>| {
            let r = applier.on_update(u);
            match &r {
                Ok(()) => tracing::info!(
                    type_url = u.type_url,
                    version = u.version,
                    "xDS update applied"
                ),
                Err(e) => tracing::warn!(
                    type_url = u.type_url,
                    version = u.version,
                    "xDS update rejected: {e}"
                ),
            }
            r
        })
        .map_err(|e| invalid("dynamic_resources.ads_config", e.to_string()))?;
    shared.xds.lock().client = Some(client);

    // A global drain or stop reaches the dynamic listeners too.
    let s = Arc::clone(shared);
    rt.spawn(async move {
        let mut stop = s.stop_accepting.subscribe();
        let _ = stop.wait_for(|v| *v).await;
        for b in s.xds.lock().listeners.values() {
            b.stop.send_replace(true);
        }
    });
    let s = Arc::clone(shared);
    rt.spawn(async move {
        let mut drain = s.draining.subscribe();
        let _ = drain.wait_for(|v| *v).await;
        for b in s.xds.lock().listeners.values() {
            b.drain.send_replace(true);
        }
    });
    Ok(())
}

/// Turns responses into snapshots; owned by the client's callback.
struct Applier {
    shared: Arc<Shared>,
    rt: tokio::runtime::Handle,
    subs: Subscriber,
    base: Arc<Bootstrap>,
    opts: CompileOptions,
    settings: AdsSettings,
    state: DynState,
    /// Keys of [`Snapshot::routes`] that came from RDS.
    rds_keys: BTreeSet<String>,
    eds_sub: BTreeSet<String>,
    rds_sub: BTreeSet<String>,
    /// Secret names fetched over ADS (SDS with `sds_config: {ads: {}}`).
    sds_sub: BTreeSet<String>,
}

/// Adds the SDS names of `common` whose config source is ADS.
fn common_sds_names(
    common: Option<&weft_xds::envoy::extensions::transport_sockets::tls::v3::CommonTlsContext>,
    out: &mut BTreeSet<String>,
) {
    let Some(c) = common else {
        return;
    };
    let mut add = |s: &SdsSecretConfig| {
        if !s.name.is_empty()
            && is_ads(s.sds_config.as_ref())
            && !crate::tls::is_local_secret(&s.name)
        {
            out.insert(s.name.clone());
        }
    };
    for s in &c.tls_certificate_sds_secret_configs {
        add(s);
    }
    match &c.validation_context_type {
        Some(ValidationContextType::ValidationContextSdsSecretConfig(s)) => add(s),
        Some(ValidationContextType::CombinedValidationContext(cv)) => {
            if let Some(s) = &cv.validation_context_sds_secret_config {
                add(s);
            }
        }
        _ => {}
    }
}

fn socket_sds_names(
    ts: Option<&weft_xds::envoy::config::core::v3::TransportSocket>,
    out: &mut BTreeSet<String>,
) {
    use weft_xds::envoy::config::core::v3::transport_socket::ConfigType as T;
    let Some(T::TypedConfig(any)) = ts.and_then(|t| t.config_type.as_ref()) else {
        return;
    };
    if any.type_url.ends_with(".DownstreamTlsContext") {
        if let Ok(ctx) = DownstreamTlsContext::decode(any.value.as_slice()) {
            common_sds_names(ctx.common_tls_context.as_ref(), out);
        }
    } else if any.type_url.ends_with(".UpstreamTlsContext")
        && let Ok(ctx) = UpstreamTlsContext::decode(any.value.as_slice())
    {
        common_sds_names(ctx.common_tls_context.as_ref(), out);
    }
}

fn listener_sds_names(l: &ListenerProto, out: &mut BTreeSet<String>) {
    for fc in l.filter_chains.iter().chain(l.default_filter_chain.iter()) {
        socket_sds_names(fc.transport_socket.as_ref(), out);
    }
}

fn cluster_sds_names(c: &ClusterProto, out: &mut BTreeSet<String>) {
    socket_sds_names(c.transport_socket.as_ref(), out);
    for m in &c.transport_socket_matches {
        socket_sds_names(m.transport_socket.as_ref(), out);
    }
}

fn eds_service_name(c: &ClusterProto) -> Option<String> {
    if c.cluster_discovery_type != Some(ClusterDiscoveryType::Type(3)) {
        return None;
    }
    let eds = c.eds_cluster_config.as_ref();
    // Only EDS over ADS (or a cluster with no eds_config at all) is fetched here.
    if let Some(cs) = eds.and_then(|e| e.eds_config.as_ref())
        && !is_ads(Some(cs))
    {
        return None;
    }
    Some(
        eds.map(|e| e.service_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| c.name.clone()),
    )
}

fn listener_rds_names(l: &ListenerProto, out: &mut BTreeSet<String>) {
    for fc in l.filter_chains.iter().chain(l.default_filter_chain.iter()) {
        for f in &fc.filters {
            let Some(ConfigType::TypedConfig(a)) = &f.config_type else {
                continue;
            };
            if !a.type_url.ends_with(".HttpConnectionManager") {
                continue;
            }
            if let Ok(hcm) = HttpConnectionManager::decode(a.value.as_slice())
                && let Some(RouteSpecifier::Rds(r)) = hcm.route_specifier
            {
                out.insert(r.route_config_name);
            }
        }
    }
}

impl Applier {
    fn static_clusters(&self) -> &[ClusterProto] {
        self.base
            .static_resources
            .as_ref()
            .map_or(&[], |s| s.clusters.as_slice())
    }

    fn static_listeners(&self) -> &[ListenerProto] {
        self.base
            .static_resources
            .as_ref()
            .map_or(&[], |s| s.listeners.as_slice())
    }

    /// EDS names in use: EDS clusters (static without endpoints, and dynamic).
    fn eds_names(&self) -> BTreeSet<String> {
        let statics = self
            .static_clusters()
            .iter()
            .filter(|c| c.load_assignment.is_none());
        let dynamics = self.state.clusters.items.values().map(|i| &i.msg);
        statics
            .chain(dynamics)
            .filter_map(eds_service_name)
            .collect()
    }

    /// RDS names in use by static and dynamic listeners.
    fn rds_names(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for l in self.static_listeners() {
            listener_rds_names(l, &mut out);
        }
        for i in self.state.listeners.items.values() {
            listener_rds_names(&i.msg, &mut out);
        }
        out
    }

    /// Secret names that static and dynamic listeners and clusters fetch over ADS, less the
    /// bootstrap's static secrets.
    fn sds_names(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for l in self.static_listeners() {
            listener_sds_names(l, &mut out);
        }
        for i in self.state.listeners.items.values() {
            listener_sds_names(&i.msg, &mut out);
        }
        for c in self.static_clusters() {
            cluster_sds_names(c, &mut out);
        }
        for i in self.state.clusters.items.values() {
            cluster_sds_names(&i.msg, &mut out);
        }
        if let Some(sr) = self.base.static_resources.as_ref() {
            for s in &sr.secrets {
                out.remove(&s.name);
            }
        }
        out
    }

    /// SDS changed: every secret must compile, then all are stored at once; new handshakes
    /// use them, open connections keep theirs.
    fn apply_secrets(&self, next: &Typed<Secret>) -> Result<(), String> {
        let mut compiled = Vec::new();
        for (name, i) in &next.items {
            let value = crate::tls::secrets::compile_secret(&i.msg, &format!("secret {name:?}"))
                .map_err(|e| e.to_string())?;
            compiled.push((name.clone(), value));
        }
        let store = &self.opts.secrets;
        for name in self.state.secrets.items.keys() {
            if !next.items.contains_key(name) {
                store.remove(name);
            }
        }
        for (name, value) in compiled {
            store.set(&name, value);
        }
        Ok(())
    }

    fn on_update(&mut self, u: &Update<'_>) -> Result<(), String> {
        match u.type_url {
            LISTENER => {
                let next = self.state.listeners.next(u)?;
                let old = std::mem::replace(&mut self.state.listeners, next);
                if let Err(e) = self.apply_full() {
                    self.state.listeners = old;
                    return Err(e);
                }
            }
            CLUSTER => {
                let next = self.state.clusters.next(u)?;
                let old = std::mem::replace(&mut self.state.clusters, next);
                if let Err(e) = self.apply_full() {
                    self.state.clusters = old;
                    return Err(e);
                }
            }
            RDS => {
                let next = self.state.routes.next(u)?;
                let old = std::mem::replace(&mut self.state.routes, next);
                if let Err(e) = self.apply_routes() {
                    self.state.routes = old;
                    return Err(e);
                }
            }
            EDS => {
                let next = self.state.endpoints.next(u)?;
                self.apply_endpoints(&next)?;
                self.state.endpoints = next;
            }
            SDS => {
                let next = self.state.secrets.next(u)?;
                self.apply_secrets(&next)?;
                self.state.secrets = next;
            }
            other => return Err(format!("unexpected type {other}")),
        }
        self.resubscribe();
        self.check_ready();
        self.shared.xds.lock().dump = Some(Arc::new(self.state.clone()));
        Ok(())
    }

    /// Subscribes EDS and RDS to the names the accepted clusters and listeners use.
    fn resubscribe(&mut self) {
        let eds = self.eds_names();
        if eds != self.eds_sub {
            self.subs.subscribe(EDS, Subscription::names(&eds));
            self.state.endpoints.items.retain(|n, _| eds.contains(n));
            self.eds_sub = eds;
        }
        let rds = self.rds_names();
        if rds != self.rds_sub {
            self.subs.subscribe(RDS, Subscription::names(&rds));
            self.state.routes.items.retain(|n, _| rds.contains(n));
            self.rds_sub = rds;
        }
        let sds = self.sds_names();
        if sds != self.sds_sub {
            self.subs.subscribe(SDS, Subscription::names(&sds));
            self.sds_sub = sds;
        }
    }

    /// `/ready` turns LIVE once the first full set is in.
    fn check_ready(&self) {
        if self.shared.ready.load(Ordering::Acquire) {
            return;
        }
        let complete = (!self.settings.lds || self.state.listeners.received)
            && (!self.settings.cds || self.state.clusters.received)
            && self
                .eds_sub
                .iter()
                .all(|n| self.state.endpoints.items.contains_key(n))
            && self
                .rds_sub
                .iter()
                .all(|n| self.state.routes.items.contains_key(n))
            && self
                .sds_sub
                .iter()
                .all(|n| self.state.secrets.items.contains_key(n));
        if complete {
            tracing::info!("xDS: initial configuration complete; ready");
            self.shared.ready.store(true, Ordering::Release);
        }
    }

    /// The bootstrap with the dynamic listeners and clusters added after the static ones, EDS
    /// endpoints inlined as `load_assignment`.
    fn merged(&self) -> Bootstrap {
        let mut b = self.base.as_ref().clone();
        b.dynamic_resources = None;
        let sr = b.static_resources.get_or_insert_with(Default::default);
        for c in sr
            .clusters
            .iter_mut()
            .filter(|c| c.load_assignment.is_none())
        {
            if let Some(cla) = eds_service_name(c).and_then(|n| self.state.endpoints.items.get(&n))
            {
                c.load_assignment = Some(cla.msg.clone());
            }
        }
        for i in self.state.clusters.items.values() {
            let mut c = i.msg.clone();
            if c.load_assignment.is_none()
                && let Some(cla) =
                    eds_service_name(&c).and_then(|n| self.state.endpoints.items.get(&n))
            {
                c.load_assignment = Some(cla.msg.clone());
            }
            sr.clusters.push(c);
        }
        sr.listeners
            .extend(self.state.listeners.items.values().map(|i| i.msg.clone()));
        b
    }

    /// Compiles the RDS route configurations into `snapshot.routes`.
    fn add_routes(
        &self,
        snapshot: &mut Snapshot,
        warnings: &mut Vec<Unsupported>,
    ) -> Result<BTreeSet<String>, String> {
        let mut keys = BTreeSet::new();
        for (name, i) in &self.state.routes.items {
            let resource = format!("route_configuration {name:?}");
            config::supported::check(&i.msg, &resource, "", warnings);
            let table = config::route::compile_route_config(&i.msg, &resource, warnings)
                .map_err(|e| e.to_string())?;
            if snapshot.routes.contains_key(name) {
                return Err(format!(
                    "{resource}: name: an inline route_config of a static listener has this name"
                ));
            }
            snapshot.routes.insert(name.clone(), Arc::new(table));
            keys.insert(name.clone());
        }
        Ok(keys)
    }

    fn finish_warnings(&self, warnings: &mut Vec<Unsupported>) -> Result<(), String> {
        warnings.retain(|u| !served_by_ads(u));
        if self.opts.reject_unsupported && !warnings.is_empty() {
            return Err(CompileError::Unsupported(std::mem::take(warnings)).to_string());
        }
        Ok(())
    }

    /// RDS changed: same listeners and clusters, new route tables.
    fn apply_routes(&mut self) -> Result<(), String> {
        let cur = self.shared.snapshot.load_full();
        let mut routes = cur.routes.clone();
        routes.retain(|k, _| !self.rds_keys.contains(k));
        let mut snapshot = Snapshot {
            listeners: cur.listeners.clone(),
            clusters: cur.clusters.clone(),
            routes,
            bootstrap: Arc::clone(&cur.bootstrap),
            compiled_at: SystemTime::now(),
            global_connection_limit: cur.global_connection_limit,
        };
        let mut warnings: Vec<Unsupported> = self
            .shared
            .unsupported
            .load()
            .iter()
            .filter(|u| !u.resource.starts_with("route_configuration "))
            .cloned()
            .collect();
        let keys = self.add_routes(&mut snapshot, &mut warnings)?;
        self.finish_warnings(&mut warnings)?;
        self.shared.snapshot.store(Arc::new(snapshot));
        self.shared.unsupported.store(Arc::new(warnings));
        self.rds_keys = keys;
        Ok(())
    }

    /// EDS changed: validate every assignment, then replace endpoint sets in place.
    fn apply_endpoints(&self, next: &Typed<ClusterLoadAssignment>) -> Result<(), String> {
        let mut specs = HashMap::new();
        for (name, i) in &next.items {
            let s = endpoint_specs(&i.msg, &format!("cluster_load_assignment {name:?}"))
                .map_err(|e| e.to_string())?;
            specs.insert(name.clone(), s);
        }
        let cur = self.shared.snapshot.load_full();
        let statics = self
            .static_clusters()
            .iter()
            .filter(|c| c.load_assignment.is_none());
        let dynamics = self.state.clusters.items.values().map(|i| &i.msg);
        for c in statics.chain(dynamics) {
            let Some(service) = eds_service_name(c) else {
                continue;
            };
            let (Some(compiled), Some(s)) = (cur.clusters.get(&c.name), specs.get(&service)) else {
                continue;
            };
            compiled.replace_endpoints(s);
        }
        Ok(())
    }

    /// LDS or CDS changed: compile everything, bind new listeners, swap, close old listeners.
    fn apply_full(&mut self) -> Result<(), String> {
        let stats = Arc::clone(&self.shared.stats);
        let lax = CompileOptions {
            reject_unsupported: false,
            ..self.opts.clone()
        };
        let merged = self.merged();
        let Compiled {
            mut snapshot,
            unsupported: mut warnings,
        } = config::compile(&merged, &stats, &lax).map_err(|e| e.to_string())?;
        snapshot.bootstrap = Arc::clone(&self.base);
        let rds_keys = self.add_routes(&mut snapshot, &mut warnings)?;
        self.finish_warnings(&mut warnings)?;

        // Clusters whose definition did not change keep their compiled form: connection pools,
        // endpoint state and circuit-breaker counts carry over.
        let cur = self.shared.snapshot.load_full();
        let prev = self.shared.xds.lock().dump.clone();
        for (name, c) in snapshot.clusters.iter_mut() {
            let Some(old) = cur.clusters.get(name) else {
                continue;
            };
            let unchanged = match self.state.clusters.items.get(name) {
                None => self.static_clusters().iter().any(|s| s.name == *name),
                Some(i) => prev
                    .as_ref()
                    .and_then(|p| p.clusters.items.get(name))
                    .is_some_and(|p| p.any == i.any),
            };
            if unchanged {
                *c = Arc::clone(old);
            }
        }

        // Listeners updated in place (same address, new definition): their connections
        // drain, as Envoy drains the connections of changed filter chains, so that a new
        // policy (RBAC, mTLS mode) reaches requests on kept-alive connections too.
        let updated: Vec<String> = self
            .state
            .listeners
            .items
            .iter()
            .filter(|(name, i)| {
                prev.as_ref()
                    .and_then(|p| p.listeners.items.get(*name))
                    .is_some_and(|p| p.any != i.any)
            })
            .map(|(name, _)| name.clone())
            .collect();
        let opened = self.bind_listeners(&snapshot)?;
        self.shared.snapshot.store(Arc::new(snapshot));
        self.shared.unsupported.store(Arc::new(warnings));
        self.rds_keys = rds_keys;
        self.start_listeners(opened);
        self.drain_updated(&updated);
        Ok(())
    }

    /// Binds the dynamic listeners that are new or whose address changed; closes the ones that
    /// are gone or replaced once their address is needed. Nothing is swapped yet.
    fn bind_listeners(&self, snapshot: &Snapshot) -> Result<Vec<Opened>, String> {
        let stopped = *self.shared.stop_accepting.borrow();
        let wanted: Vec<_> = snapshot
            .listeners
            .iter()
            .filter(|l| l.bind && self.state.listeners.items.contains_key(&l.name))
            .collect();
        let (keep, outgoing): (BTreeSet<String>, Vec<(String, SocketAddr, SocketAddr)>) = {
            let inner = self.shared.xds.lock();
            let keep: BTreeSet<String> = wanted
                .iter()
                .filter(|l| {
                    inner
                        .listeners
                        .get(&l.name)
                        .is_some_and(|b| b.configured == l.addr)
                })
                .map(|l| l.name.clone())
                .collect();
            let outgoing = inner
                .listeners
                .iter()
                .filter(|(n, _)| !keep.contains(*n))
                .map(|(n, b)| (n.clone(), b.configured, b.addr))
                .collect();
            (keep, outgoing)
        };
        let mut opened = Vec::new();
        let mut conflicting = Vec::new();
        for l in wanted.iter().filter(|l| !keep.contains(&l.name)) {
            if stopped {
                continue;
            }
            let conflict = l.addr.port() != 0
                && outgoing
                    .iter()
                    .any(|(_, configured, addr)| *configured == l.addr || *addr == l.addr);
            if conflict {
                conflicting.push(*l);
                continue;
            }
            opened.push(open(&l.name, l.addr)?);
        }
        if !conflicting.is_empty() {
            // The old sockets must close before their address can be bound again.
            let names: BTreeSet<&str> = conflicting.iter().map(|l| l.name.as_str()).collect();
            let mut tasks = Vec::new();
            {
                let mut inner = self.shared.xds.lock();
                for (n, configured, addr) in &outgoing {
                    if conflicting
                        .iter()
                        .any(|l| l.addr == *configured || l.addr == *addr)
                        && let Some(b) = inner.listeners.remove(n)
                    {
                        tasks.push(b.close());
                    }
                }
            }
            self.wait(tasks);
            for l in conflicting {
                opened.push(open(&l.name, l.addr).map_err(|e| {
                    format!("{e} (listeners {names:?} replace one that was closed)")
                })?);
            }
        }
        Ok(opened)
    }

    /// Waits (at most a second) for accept loops to end and drop their sockets.
    fn wait(&self, tasks: Vec<tokio::task::JoinHandle<()>>) {
        if tasks.is_empty() {
            return;
        }
        let rt = self.rt.clone();
        tokio::task::block_in_place(move || {
            rt.block_on(async move {
                for t in tasks {
                    let _ = tokio::time::timeout(Duration::from_secs(1), t).await;
                }
            })
        });
    }

    /// Drains the connections accepted before an in-place update of these listeners; the
    /// connections accepted from now on get a fresh drain signal.
    fn drain_updated(&self, names: &[String]) {
        let mut inner = self.shared.xds.lock();
        for n in names {
            if let Some(b) = inner.listeners.get_mut(n) {
                let (fresh, _) = watch::channel(false);
                let old = std::mem::replace(&mut b.drain, fresh);
                old.send_replace(true);
                tracing::debug!(listener = %n, "listener updated: draining its connections");
            }
        }
    }

    /// After the swap: starts accept loops for the opened sockets and closes the listeners that
    /// are no longer wanted (or were replaced).
    fn start_listeners(&self, opened: Vec<Opened>) {
        let dynamic: BTreeSet<&String> = self.state.listeners.items.keys().collect();
        let mut inner = self.shared.xds.lock();
        let mut closing = Vec::new();
        let gone: Vec<String> = inner
            .listeners
            .keys()
            .filter(|n| !dynamic.contains(n) || opened.iter().any(|o| o.name == **n))
            .cloned()
            .collect();
        for n in gone {
            if let Some(b) = inner.listeners.remove(&n) {
                tracing::info!(listener = %n, addr = %b.addr, "listener removed or replaced: draining");
                closing.push(b.close());
            }
        }
        for o in opened {
            let _guard = self.rt.enter();
            let listener = match tokio::net::TcpListener::from_std(o.socket) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(listener = %o.name, "cannot register listener: {e}");
                    continue;
                }
            };
            let (stop, stop_rx) = watch::channel(false);
            let (drain, _) = watch::channel(false);
            let task = self.rt.spawn(crate::listener::accept_loop(
                listener,
                Arc::from(o.name.as_str()),
                Arc::clone(&self.shared),
                stop_rx,
            ));
            tracing::info!(listener = %o.name, addr = %o.addr, "listener added");
            inner.listeners.insert(
                o.name,
                Bound {
                    configured: o.configured,
                    addr: o.addr,
                    stop,
                    drain,
                    task,
                },
            );
        }
        drop(closing);
    }
}

/// A freshly bound socket, not accepting yet.
struct Opened {
    name: String,
    configured: SocketAddr,
    addr: SocketAddr,
    socket: std::net::TcpListener,
}

fn open(name: &str, configured: SocketAddr) -> Result<Opened, String> {
    let err = |e: std::io::Error| format!("listener {name:?}: cannot bind {configured}: {e}");
    let socket = crate::bind(configured).map_err(err)?;
    let addr = socket.local_addr().map_err(err)?;
    Ok(Opened {
        name: name.to_owned(),
        configured,
        addr,
        socket,
    })
}

fn ts(t: SystemTime) -> Timestamp {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// Adds the dynamic resources (Envoy's `dynamic_active_clusters`, `dynamic_listeners`,
/// `dynamic_route_configs`, and an `EndpointsConfigDump`) to `/config_dump`.
pub(crate) fn extend_config_dump(
    shared: &Shared,
    mut v: serde_json::Value,
) -> Result<serde_json::Value, weft_xds::json::TranscodeError> {
    let Some(d) = shared.xds.lock().dump.clone() else {
        return Ok(v);
    };
    let clusters = admin::ClustersConfigDump {
        version_info: d.clusters.version.clone(),
        dynamic_active_clusters: d
            .clusters
            .items
            .values()
            .map(|i| admin::clusters_config_dump::DynamicCluster {
                version_info: i.version.clone(),
                cluster: Some(i.any.clone()),
                last_updated: Some(ts(i.updated)),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let listeners = admin::ListenersConfigDump {
        version_info: d.listeners.version.clone(),
        dynamic_listeners: d
            .listeners
            .items
            .iter()
            .map(|(n, i)| admin::listeners_config_dump::DynamicListener {
                name: n.clone(),
                active_state: Some(admin::listeners_config_dump::DynamicListenerState {
                    version_info: i.version.clone(),
                    listener: Some(i.any.clone()),
                    last_updated: Some(ts(i.updated)),
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let routes = admin::RoutesConfigDump {
        dynamic_route_configs: d
            .routes
            .items
            .values()
            .map(|i| admin::routes_config_dump::DynamicRouteConfig {
                version_info: i.version.clone(),
                route_config: Some(i.any.clone()),
                last_updated: Some(ts(i.updated)),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let endpoints = admin::EndpointsConfigDump {
        dynamic_endpoint_configs: d
            .endpoints
            .items
            .values()
            .map(|i| admin::endpoints_config_dump::DynamicEndpointConfig {
                version_info: i.version.clone(),
                endpoint_config: Some(i.any.clone()),
                last_updated: Some(ts(i.updated)),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let parts = [
        (
            admin::ClustersConfigDump::type_url(),
            weft_xds::json::to_value(&clusters)?,
        ),
        (
            admin::ListenersConfigDump::type_url(),
            weft_xds::json::to_value(&listeners)?,
        ),
        (
            admin::RoutesConfigDump::type_url(),
            weft_xds::json::to_value(&routes)?,
        ),
    ];
    if let Some(configs) = v.get_mut("configs").and_then(|c| c.as_array_mut()) {
        for (type_url, part) in parts {
            let Some(target) = configs
                .iter_mut()
                .find(|c| c["@type"] == type_url.as_str())
                .and_then(|c| c.as_object_mut())
            else {
                continue;
            };
            if let serde_json::Value::Object(fields) = part {
                // Only what the dynamic part has: never clobber the static lists.
                target.extend(fields.into_iter().filter(|(_, v)| {
                    !(v.as_array().is_some_and(|a| a.is_empty())
                        || v.as_str().is_some_and(str::is_empty))
                }));
            }
        }
        let mut e = weft_xds::json::to_value(&endpoints)?;
        if let Some(o) = e.as_object_mut() {
            o.insert(
                "@type".into(),
                serde_json::Value::String(admin::EndpointsConfigDump::type_url()),
            );
        }
        configs.push(e);
    }
    Ok(v)
}
