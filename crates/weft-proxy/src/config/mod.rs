//! Envoy resources compiled into plain, immutable runtime tables.
//!
//! Compiling happens off the request path: listeners, routes and clusters become a
//! [`Snapshot`] held in an `ArcSwap`. A request takes the snapshot current when it starts and
//! finishes on it, even if a new one is stored meanwhile. Every field or extension the compiler
//! does not implement is reported as an [`Unsupported`] finding, by name.

pub mod filters;
pub mod policy;
pub mod route;
pub mod supported;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use weft_xds::envoy::config::bootstrap::v3::Bootstrap;
use weft_xds::envoy::config::listener::v3 as ls;
use weft_xds::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use weft_xds::envoy::extensions::filters::network::tcp_proxy::v3 as tcp;

use crate::cluster::{self, Cluster, socket_addr};
use crate::stats::{HttpStats, ListenerStats, Stats};
pub use route::RouteTable;
pub use supported::Unsupported;

/// Why configuration could not be compiled. Messages name the resource and the field.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// A field has a value weft cannot use.
    #[error("{resource}: {field}: {reason}")]
    Invalid {
        /// The resource, e.g. `listener "http"`.
        resource: String,
        /// The field path inside it.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A `typed_config` does not decode as the type it names.
    #[error("{resource}: {field}: typed_config {type_url} does not decode: {source}")]
    Decode {
        /// The resource.
        resource: String,
        /// The field path of the filter.
        field: String,
        /// The `@type`.
        type_url: String,
        /// The protobuf error.
        source: prost::DecodeError,
    },
    /// Strict mode: the configuration uses things weft does not implement.
    #[error("{}", unsupported_list(.0))]
    Unsupported(Vec<Unsupported>),
}

fn unsupported_list(list: &[Unsupported]) -> String {
    let mut s = format!(
        "{} configuration item(s) are not supported by weft:",
        list.len()
    );
    for u in list {
        s.push_str("\n  ");
        s.push_str(&u.to_string());
    }
    s
}

/// Converts a protobuf duration (negative values become zero).
pub fn duration(d: &weft_xds::google::protobuf::Duration) -> Duration {
    if d.seconds < 0 || d.nanos < 0 {
        return Duration::ZERO;
    }
    Duration::new(d.seconds as u64, d.nanos as u32)
}

/// Everything the data plane serves from, immutable once built.
#[derive(Debug)]
pub struct Snapshot {
    /// Listeners, in configuration order.
    pub listeners: Vec<Arc<Listener>>,
    /// Clusters by name.
    pub clusters: HashMap<String, Arc<Cluster>>,
    /// Route tables by name (inline route configurations included).
    pub routes: HashMap<String, Arc<RouteTable>>,
    /// The bootstrap this snapshot was compiled from (for `/config_dump`).
    pub bootstrap: Arc<Bootstrap>,
    /// When it was compiled (for `/config_dump`'s `last_updated`).
    pub compiled_at: std::time::SystemTime,
    /// Most downstream connections open at once over all listeners (the runtime key
    /// `overload.global_downstream_max_connections`).
    pub global_connection_limit: Option<u64>,
}

/// A compiled listener.
#[derive(Debug)]
pub struct Listener {
    /// Listener name.
    pub name: String,
    /// The address to bind.
    pub addr: SocketAddr,
    /// False for `bind_to_port: false` (a listener only reached by redirection).
    pub bind: bool,
    /// Filter chains, matched by `filter_chain_match`.
    pub chains: Vec<FilterChain>,
    /// Used when no chain matches.
    pub default_chain: Option<FilterChain>,
    /// Peek at the first bytes for a TLS ClientHello (SNI, ALPN) before choosing a chain.
    pub inspect_tls: bool,
    /// Peek at the first bytes to tell HTTP/1.1 from h2c (`application_protocols`).
    pub inspect_http: bool,
    /// `listener.<addr>.*` counters.
    pub stats: Arc<ListenerStats>,
    /// Read the original destination of redirected connections (`SO_ORIGINAL_DST`): the
    /// `original_dst` listener filter or `use_original_dst`.
    pub original_dst: bool,
    /// `use_original_dst`: hand a redirected connection to the listener bound (or not bound,
    /// `bind_to_port: false`) to its original destination, when there is one.
    pub hand_off: bool,
    /// `traffic_direction` (0 unspecified, 1 inbound, 2 outbound). A redirected connection is
    /// handed off only to a listener of the same direction (or an unspecified one), so that
    /// inbound traffic to a workload port never lands on the sidecar's outbound listener of
    /// that port (Istio's `virtualInbound` sets `use_original_dst` too).
    pub direction: i32,
    /// `listener_filters_timeout` (default 15 s; `None` when set to 0): how long the first
    /// bytes may take for TLS/HTTP inspection.
    pub inspect_timeout: Option<Duration>,
    /// `continue_on_listener_filters_timeout`: on timeout, choose a chain without the facts
    /// instead of closing the connection.
    pub continue_on_timeout: bool,
    /// Most downstream connections open at once (the runtime key
    /// `envoy.resource_limits.listener.<name>.connection_limit`); extra ones are closed at
    /// once.
    pub connection_limit: Option<u64>,
}

/// One filter chain: when it applies and the network filter that handles the connection.
#[derive(Debug)]
pub struct FilterChain {
    /// Chain name (may be empty).
    pub name: String,
    /// `filter_chain_match`.
    pub matcher: ChainMatch,
    /// The terminal network filter.
    pub filter: NetworkFilter,
    /// `transport_socket` with a `DownstreamTlsContext`: TLS is terminated before the filter.
    pub tls: Option<Arc<crate::tls::DownstreamTls>>,
    /// `envoy.filters.network.rbac` filters before it, evaluated when a connection arrives.
    pub rbac: Vec<Arc<crate::http::rbac::RbacFilter>>,
}

/// A compiled `filter_chain_match`. Empty lists match anything.
#[derive(Debug, Default)]
pub struct ChainMatch {
    /// Local port the connection arrived on.
    pub destination_port: Option<u16>,
    /// Prefixes of the local (destination) address.
    pub prefix_ranges: Vec<Cidr>,
    /// Prefixes of the peer address (`source_prefix_ranges` and `direct_source_prefix_ranges`).
    pub source_prefix_ranges: Vec<Cidr>,
    /// Peer ports.
    pub source_ports: Vec<u16>,
    /// `raw_buffer` or `tls`.
    pub transport_protocol: Option<String>,
    /// Lower-cased server names; `*.x` entries match subdomains.
    pub server_names: Vec<String>,
    /// ALPN (TLS) or detected HTTP version (`http/1.1`, `h2c`).
    pub application_protocols: Vec<String>,
}

/// An IP prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// Network address.
    pub addr: IpAddr,
    /// Prefix length in bits.
    pub len: u8,
}

impl Cidr {
    /// Whether `ip` is inside the prefix (IPv4 never matches an IPv6 prefix and vice versa,
    /// except IPv4-mapped IPv6 addresses, which are compared as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = if self.len == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.len.min(32)))
                };
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = if self.len == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.len.min(128)))
                };
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

/// What handles a connection.
#[derive(Debug)]
pub enum NetworkFilter {
    /// `envoy.filters.network.http_connection_manager`.
    Http(Arc<HttpManager>),
    /// `envoy.filters.network.tcp_proxy`.
    Tcp(Arc<TcpProxy>),
}

/// Which HTTP versions the downstream side accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// HTTP/1.1 or h2c, detected per connection.
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 (h2c prior knowledge) only.
    Http2,
}

/// A compiled HTTP connection manager.
#[derive(Debug)]
pub struct HttpManager {
    /// `stat_prefix`.
    pub stat_prefix: String,
    /// Key of the route table in [`Snapshot::routes`].
    pub route_config: String,
    /// Downstream codec.
    pub codec: Codec,
    /// Append the peer address to `x-forwarded-for`.
    pub use_remote_address: bool,
    /// Do not touch `x-forwarded-for`.
    pub skip_xff_append: bool,
    /// Generate `x-request-id` when absent (default true).
    pub generate_request_id: bool,
    /// Replace any `x-request-id` from the client (edge proxy without
    /// `preserve_external_request_id`).
    pub regenerate_request_id: bool,
    /// Echo `x-request-id` in responses.
    pub always_set_request_id_in_response: bool,
    /// Pass `Upgrade: websocket` through.
    pub websocket: bool,
    /// `http.<stat_prefix>.*` counters.
    pub stats: Arc<HttpStats>,
    /// The HTTP filters before the router, in configuration order (empty costs nothing).
    pub filters: Vec<filters::ChainFilter>,
    /// `stream_idle_timeout` (default 5 minutes): a stream with no activity for this long is
    /// ended.
    pub stream_idle_timeout: Option<Duration>,
    /// `common_http_protocol_options.idle_timeout` (default 1 hour): a connection with no
    /// request in flight for this long is closed.
    pub idle_timeout: Option<Duration>,
    /// `request_headers_timeout`: a request head must be complete this long after its first
    /// byte (slowloris). Envoy leaves it off by default; weft bounds it to 30 s when unset.
    pub request_headers_timeout: Duration,
    /// `common_http_protocol_options.max_requests_per_connection`.
    pub max_requests_per_connection: Option<u32>,
    /// `max_request_headers_kb` (default 60): larger request headers get 431.
    pub max_request_headers_kb: u32,
    /// `common_http_protocol_options.max_headers_count` (default 100).
    pub max_headers_count: u32,
    /// `forward_client_cert_details` and `set_current_client_cert_details`
    /// (`x-forwarded-client-cert`).
    pub client_cert_details: crate::tls::ClientCertDetails,
    /// Metrics (`istio.stats`) and access logs; `None` costs nothing.
    pub telemetry: Option<Arc<crate::telemetry::HttpTelemetry>>,
}

/// A compiled `tcp_proxy`.
#[derive(Debug)]
pub struct TcpProxy {
    /// `stat_prefix`.
    pub stat_prefix: String,
    /// Cluster names with cumulative weights (one entry for `cluster`).
    pub clusters: Vec<(String, u64)>,
    /// `istio_tcp_*` metrics, when the chain has the `istio.stats` network filter.
    pub telemetry: Option<crate::telemetry::TcpTelemetry>,
}

impl TcpProxy {
    /// Picks the cluster for one connection.
    pub fn pick(&self) -> &str {
        let total = self.clusters.last().map_or(0, |c| c.1);
        if self.clusters.len() <= 1 || total == 0 {
            return self.clusters.first().map_or("", |c| c.0.as_str());
        }
        let draw = fastrand::u64(0..total);
        let i = self.clusters.partition_point(|c| c.1 <= draw);
        self.clusters.get(i).map_or("", |c| c.0.as_str())
    }
}

/// Knobs that shape compilation.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// Idle HTTP/1.1 connections kept per upstream endpoint.
    pub max_idle_per_endpoint: usize,
    /// Refuse configuration that uses anything weft does not implement.
    pub reject_unsupported: bool,
    /// Secrets by name (static, SDS, or set through the API), shared by every snapshot.
    pub secrets: Arc<crate::tls::SecretStore>,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            max_idle_per_endpoint: 64,
            reject_unsupported: false,
            secrets: Arc::default(),
        }
    }
}

/// A snapshot and what was found unsupported while building it.
#[derive(Debug)]
pub struct Compiled {
    /// The runtime tables.
    pub snapshot: Snapshot,
    /// Fields and extensions set in the configuration that weft does not implement.
    pub unsupported: Vec<Unsupported>,
}

const HCM: &str =
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const TCP_PROXY: &str = "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
const NETWORK_RBAC: &str = "envoy.extensions.filters.network.rbac.v3.RBAC";
const ROUTER: &str = "envoy.extensions.filters.http.router.v3.Router";
const TLS_INSPECTOR: &str = "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector";
const HTTP_INSPECTOR: &str = "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector";
const ORIGINAL_DST: &str = "envoy.extensions.filters.listener.original_dst.v3.OriginalDst";

pub(crate) fn type_name(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or(type_url)
}

/// The numeric keys of the bootstrap's static runtime layers (`layered_runtime`), flattened
/// to dotted names; later layers win.
fn static_runtime(bootstrap: &Bootstrap) -> HashMap<String, u64> {
    use weft_xds::envoy::config::bootstrap::v3::runtime_layer::LayerSpecifier;
    use weft_xds::google::protobuf::value::Kind;
    fn flatten(
        prefix: &str,
        v: &weft_xds::google::protobuf::Value,
        out: &mut HashMap<String, u64>,
    ) {
        match &v.kind {
            Some(Kind::NumberValue(n)) if *n >= 0.0 => {
                out.insert(prefix.to_owned(), *n as u64);
            }
            Some(Kind::StringValue(s)) => {
                if let Ok(n) = s.parse() {
                    out.insert(prefix.to_owned(), n);
                }
            }
            Some(Kind::StructValue(st)) => {
                for (k, v) in &st.fields {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(&key, v, out);
                }
            }
            _ => {}
        }
    }
    let mut out = HashMap::new();
    for layer in bootstrap
        .layered_runtime
        .as_ref()
        .map(|r| r.layers.as_slice())
        .unwrap_or_default()
    {
        if let Some(LayerSpecifier::StaticLayer(st)) = &layer.layer_specifier {
            for (k, v) in &st.fields {
                flatten(k, v, &mut out);
            }
        }
    }
    out
}

/// Compiles a bootstrap's static resources.
pub fn compile(
    bootstrap: &Bootstrap,
    stats: &Stats,
    opts: &CompileOptions,
) -> Result<Compiled, CompileError> {
    let mut warnings = Vec::new();
    supported::check(bootstrap, "bootstrap", "", &mut warnings);
    // Listeners and clusters are checked per resource below, with their own names.
    warnings.retain(|u| {
        !u.what.starts_with("static_resources.listeners")
            && !u.what.starts_with("static_resources.clusters")
    });
    let empty = Default::default();
    let sr = bootstrap.static_resources.as_ref().unwrap_or(&empty);
    let runtime = static_runtime(bootstrap);
    stats.telemetry.set_node(bootstrap.node.as_ref());

    // Static secrets are checked first and stored once everything compiled.
    let mut static_secrets = Vec::new();
    for (i, s) in sr.secrets.iter().enumerate() {
        let resource = format!("secret {:?}", s.name);
        supported::check(s, &resource, "", &mut warnings);
        let value = crate::tls::secrets::compile_secret(s, &resource).map_err(|e| {
            CompileError::Invalid {
                resource: resource.clone(),
                field: format!("static_resources.secrets[{i}]"),
                reason: e.0,
            }
        })?;
        static_secrets.push((s.name.clone(), value));
    }

    let mut clusters = HashMap::new();
    for c in &sr.clusters {
        let resource = format!("cluster {:?}", c.name);
        supported::check(c, &resource, "", &mut warnings);
        let stat_name = if c.alt_stat_name.is_empty() {
            &c.name
        } else {
            &c.alt_stat_name
        };
        let compiled = cluster::compile_cluster(
            c,
            stats.cluster(stat_name),
            opts.max_idle_per_endpoint,
            &opts.secrets,
            &mut warnings,
        )?;
        if clusters
            .insert(c.name.clone(), Arc::new(compiled))
            .is_some()
        {
            return Err(CompileError::Invalid {
                resource,
                field: "name".into(),
                reason: "two clusters have this name".into(),
            });
        }
    }

    stats
        .telemetry
        .tracers
        .clusters
        .store(Arc::new(clusters.clone()));
    let mut routes = HashMap::new();
    let mut listeners = Vec::new();
    for l in &sr.listeners {
        let resource = format!("listener {:?}", l.name);
        supported::check(l, &resource, "", &mut warnings);
        let mut compiled = compile_listener(
            l,
            &resource,
            stats,
            &opts.secrets,
            &mut routes,
            &mut warnings,
        )?;
        compiled.connection_limit = runtime
            .get(&format!(
                "envoy.resource_limits.listener.{}.connection_limit",
                l.name
            ))
            .copied();
        listeners.push(Arc::new(compiled));
    }
    let mut names: Vec<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(CompileError::Invalid {
            resource: format!("listener {:?}", w[0]),
            field: "name".into(),
            reason: "two listeners have this name".into(),
        });
    }
    if opts.reject_unsupported && !warnings.is_empty() {
        return Err(CompileError::Unsupported(warnings));
    }
    for (name, value) in static_secrets {
        opts.secrets.set(&name, value);
    }
    Ok(Compiled {
        snapshot: Snapshot {
            listeners,
            clusters,
            routes,
            bootstrap: Arc::new(bootstrap.clone()),
            compiled_at: std::time::SystemTime::now(),
            global_connection_limit: runtime
                .get("overload.global_downstream_max_connections")
                .copied(),
        },
        unsupported: warnings,
    })
}

fn compile_listener(
    l: &ls::Listener,
    resource: &str,
    stats: &Stats,
    secrets: &crate::tls::SecretStore,
    routes: &mut HashMap<String, Arc<RouteTable>>,
    warnings: &mut Vec<Unsupported>,
) -> Result<Listener, CompileError> {
    if l.name.is_empty() {
        return Err(CompileError::Invalid {
            resource: resource.to_owned(),
            field: "name".into(),
            reason: "a listener needs a name".into(),
        });
    }
    let addr = socket_addr(l.address.as_ref(), resource, "address")?;
    let mut inspect_tls = false;
    let mut inspect_http = false;
    let mut original_dst = false;
    for lf in &l.listener_filters {
        let type_url = match &lf.config_type {
            Some(ls::listener_filter::ConfigType::TypedConfig(a)) => type_name(&a.type_url),
            _ => "",
        };
        match type_url {
            TLS_INSPECTOR => inspect_tls = true,
            HTTP_INSPECTOR => inspect_http = true,
            ORIGINAL_DST => original_dst = true,
            _ => warnings.push(Unsupported {
                resource: resource.to_owned(),
                what: format!(
                    "listener_filters {}",
                    if lf.name.is_empty() {
                        type_url
                    } else {
                        &lf.name
                    }
                ),
            }),
        }
    }
    let mut chains = Vec::with_capacity(l.filter_chains.len());
    for (ci, fc) in l.filter_chains.iter().enumerate() {
        chains.push(compile_chain(
            fc,
            l,
            resource,
            &format!("filter_chains[{ci}]"),
            stats,
            secrets,
            routes,
            warnings,
        )?);
    }
    let default_chain = match &l.default_filter_chain {
        Some(fc) => Some(compile_chain(
            fc,
            l,
            resource,
            "default_filter_chain",
            stats,
            secrets,
            routes,
            warnings,
        )?),
        None => None,
    };
    // Matching on SNI/ALPN needs the first bytes whether or not the inspector filters are listed
    // (Envoy would refuse such a listener without them; weft inspects on its own).
    for c in &chains {
        let m = &c.matcher;
        if !m.server_names.is_empty() || m.transport_protocol.as_deref() == Some("tls") {
            inspect_tls = true;
        }
        if !m.application_protocols.is_empty() {
            inspect_tls = true;
            inspect_http = true;
        }
    }
    let stat_name = if l.stat_prefix.is_empty() {
        format!("{}_{}", addr.ip(), addr.port())
    } else {
        l.stat_prefix.clone()
    };
    let hand_off = l.use_original_dst.as_ref().is_some_and(|b| b.value);
    Ok(Listener {
        original_dst: original_dst || hand_off,
        hand_off,
        direction: l.traffic_direction,
        inspect_timeout: match &l.listener_filters_timeout {
            Some(d) => Some(duration(d)).filter(|d| !d.is_zero()),
            None => Some(Duration::from_secs(15)),
        },
        continue_on_timeout: l.continue_on_listener_filters_timeout,
        name: l.name.clone(),
        addr,
        bind: l.bind_to_port.as_ref().is_none_or(|b| b.value),
        chains,
        default_chain,
        inspect_tls,
        inspect_http,
        stats: stats.listener(&stat_name),
        connection_limit: None,
    })
}

fn cidrs(
    ranges: &[weft_xds::envoy::config::core::v3::CidrRange],
    resource: &str,
    field: &str,
) -> Result<Vec<Cidr>, CompileError> {
    ranges
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let addr: IpAddr = r
                .address_prefix
                .parse()
                .map_err(|_| CompileError::Invalid {
                    resource: resource.to_owned(),
                    field: format!("{field}[{i}].address_prefix"),
                    reason: format!("{:?} is not an IP address", r.address_prefix),
                })?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let len = r.prefix_len.as_ref().map_or(max, |p| p.value.min(max)) as u8;
            Ok(Cidr { addr, len })
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn compile_chain(
    fc: &ls::FilterChain,
    l: &ls::Listener,
    resource: &str,
    path: &str,
    stats: &Stats,
    secrets: &crate::tls::SecretStore,
    routes: &mut HashMap<String, Arc<RouteTable>>,
    warnings: &mut Vec<Unsupported>,
) -> Result<FilterChain, CompileError> {
    let tls = match &fc.transport_socket {
        Some(ts) => crate::tls::compile_downstream(
            ts,
            secrets,
            resource,
            &format!("{path}.transport_socket"),
            warnings,
        )?,
        None => None,
    };
    let mut matcher = ChainMatch::default();
    if let Some(m) = &fc.filter_chain_match {
        matcher.destination_port = match &m.destination_port {
            Some(p) => Some(u16::try_from(p.value).map_err(|_| CompileError::Invalid {
                resource: resource.to_owned(),
                field: format!("{path}.filter_chain_match.destination_port"),
                reason: format!("{} is not a port", p.value),
            })?),
            None => None,
        };
        matcher.prefix_ranges = cidrs(
            &m.prefix_ranges,
            resource,
            &format!("{path}.filter_chain_match.prefix_ranges"),
        )?;
        matcher.source_prefix_ranges = cidrs(
            &m.source_prefix_ranges,
            resource,
            &format!("{path}.filter_chain_match.source_prefix_ranges"),
        )?;
        matcher.source_prefix_ranges.extend(cidrs(
            &m.direct_source_prefix_ranges,
            resource,
            &format!("{path}.filter_chain_match.direct_source_prefix_ranges"),
        )?);
        matcher.source_ports = m
            .source_ports
            .iter()
            .filter_map(|p| u16::try_from(*p).ok())
            .collect();
        matcher.transport_protocol =
            (!m.transport_protocol.is_empty()).then(|| m.transport_protocol.clone());
        matcher.server_names = m
            .server_names
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        matcher.application_protocols = m.application_protocols.clone();
    }
    let mut terminal = None;
    let mut rbac = Vec::new();
    let mut tcp_stats = None;
    for (fi, f) in fc.filters.iter().enumerate() {
        let fpath = format!("{path}.filters[{fi}]");
        let any = match &f.config_type {
            Some(ls::filter::ConfigType::TypedConfig(a)) => a,
            _ => {
                warnings.push(Unsupported {
                    resource: resource.to_owned(),
                    what: format!("{fpath} {} without typed_config", f.name),
                });
                continue;
            }
        };
        let decode_err = |source| CompileError::Decode {
            resource: resource.to_owned(),
            field: fpath.clone(),
            type_url: any.type_url.clone(),
            source,
        };
        if terminal.is_none()
            && let Some(s) = crate::telemetry::stats_filter(
                &f.name,
                Some(any),
                l.traffic_direction == 1,
                resource,
                &fpath,
            )?
        {
            tcp_stats = Some(s);
            continue;
        }
        match type_name(&any.type_url) {
            HCM if terminal.is_none() => {
                let m =
                    hcm::HttpConnectionManager::decode(any.value.as_slice()).map_err(decode_err)?;
                supported::check(&m, resource, &format!("{fpath}.typed_config"), warnings);
                terminal = Some(NetworkFilter::Http(Arc::new(compile_hcm(
                    &m, l, resource, &fpath, stats, routes, warnings,
                )?)));
            }
            TCP_PROXY if terminal.is_none() => {
                let t = tcp::TcpProxy::decode(any.value.as_slice()).map_err(decode_err)?;
                supported::check(&t, resource, &format!("{fpath}.typed_config"), warnings);
                let clusters = match &t.cluster_specifier {
                    Some(tcp::tcp_proxy::ClusterSpecifier::Cluster(c)) => vec![(c.clone(), 1)],
                    Some(tcp::tcp_proxy::ClusterSpecifier::WeightedClusters(w)) => {
                        let mut total = 0;
                        w.clusters
                            .iter()
                            .filter(|c| c.weight > 0)
                            .map(|c| {
                                total += u64::from(c.weight);
                                (c.name.clone(), total)
                            })
                            .collect()
                    }
                    None => {
                        return Err(CompileError::Invalid {
                            resource: resource.to_owned(),
                            field: format!("{fpath}.typed_config.cluster"),
                            reason: "tcp_proxy needs a cluster".into(),
                        });
                    }
                };
                terminal = Some(NetworkFilter::Tcp(Arc::new(TcpProxy {
                    stat_prefix: t.stat_prefix.clone(),
                    clusters,
                    telemetry: crate::telemetry::TcpTelemetry::new(
                        &stats.telemetry,
                        tcp_stats.take(),
                    ),
                })));
            }
            NETWORK_RBAC if terminal.is_none() => {
                let r = weft_xds::envoy::extensions::filters::network::rbac::v3::Rbac::decode(
                    any.value.as_slice(),
                )
                .map_err(decode_err)?;
                supported::check(&r, resource, &format!("{fpath}.typed_config"), warnings);
                rbac.push(Arc::new(crate::http::rbac::RbacFilter::compile_network(
                    any,
                    resource,
                    &format!("{fpath}.typed_config"),
                )?));
            }
            other => warnings.push(Unsupported {
                resource: resource.to_owned(),
                what: format!("{fpath} network filter {} ({other})", f.name),
            }),
        }
    }
    let filter = terminal.ok_or_else(|| CompileError::Invalid {
        resource: resource.to_owned(),
        field: format!("{path}.filters"),
        reason: "a filter chain needs http_connection_manager or tcp_proxy".into(),
    })?;
    Ok(FilterChain {
        name: fc.name.clone(),
        matcher,
        filter,
        tls,
        rbac,
    })
}

#[allow(clippy::too_many_arguments)]
fn compile_hcm(
    m: &hcm::HttpConnectionManager,
    l: &ls::Listener,
    resource: &str,
    path: &str,
    stats: &Stats,
    routes: &mut HashMap<String, Arc<RouteTable>>,
    warnings: &mut Vec<Unsupported>,
) -> Result<HttpManager, CompileError> {
    let route_config = match &m.route_specifier {
        Some(hcm::http_connection_manager::RouteSpecifier::RouteConfig(rc)) => {
            let table = route::compile_route_config(
                rc,
                &format!("{resource} route_config {:?}", rc.name),
                warnings,
            )?;
            let key = if rc.name.is_empty() || routes.contains_key(&rc.name) {
                format!("{}#{}/{path}", rc.name, l.name)
            } else {
                rc.name.clone()
            };
            routes.insert(key.clone(), Arc::new(table));
            key
        }
        Some(hcm::http_connection_manager::RouteSpecifier::Rds(rds)) => {
            warnings.push(Unsupported {
                resource: resource.to_owned(),
                what: format!(
                    "{path}.typed_config.rds (route configuration {:?} from RDS)",
                    rds.route_config_name
                ),
            });
            rds.route_config_name.clone()
        }
        Some(hcm::http_connection_manager::RouteSpecifier::ScopedRoutes(_)) => {
            warnings.push(Unsupported {
                resource: resource.to_owned(),
                what: format!("{path}.typed_config.scoped_routes"),
            });
            String::new()
        }
        None => {
            return Err(CompileError::Invalid {
                resource: resource.to_owned(),
                field: format!("{path}.typed_config.route_config"),
                reason: "an HTTP connection manager needs route_config".into(),
            });
        }
    };
    let mut has_router = false;
    let mut http_filters = Vec::new();
    let mut istio_stats = None;
    for (i, f) in m.http_filters.iter().enumerate() {
        let any = match &f.config_type {
            Some(hcm::http_filter::ConfigType::TypedConfig(a)) => Some(a),
            _ => None,
        };
        let type_url = any.map_or("", |a| type_name(&a.type_url));
        let field = format!("{path}.typed_config.http_filters[{i}]");
        if let Some(s) = crate::telemetry::stats_filter(
            &f.name,
            any,
            l.traffic_direction == 1,
            resource,
            &field,
        )? {
            istio_stats = Some(s);
            continue;
        }
        if type_url == ROUTER || (type_url.is_empty() && f.name == "envoy.filters.http.router") {
            has_router = true;
            continue;
        }
        let compiled = match any {
            Some(a) => filters::compile_http_filter(type_url, a, resource, &field, warnings)?,
            None if f.name == "envoy.filters.http.cors" => Some(filters::HttpFilter::Cors),
            None => None,
        };
        match compiled {
            Some(c) if !has_router => http_filters.push(filters::ChainFilter {
                name: f.name.clone(),
                filter: c,
                disabled: f.disabled,
            }),
            Some(_) => {}
            // A filter disabled by default is inert until a route enables it.
            None if f.disabled => {}
            None => warnings.push(Unsupported {
                resource: resource.to_owned(),
                what: format!(
                    "{field} {}",
                    if f.name.is_empty() { type_url } else { &f.name }
                ),
            }),
        }
    }
    if !has_router {
        return Err(CompileError::Invalid {
            resource: resource.to_owned(),
            field: format!("{path}.typed_config.http_filters"),
            reason: "the HTTP filter chain must end with envoy.filters.http.router".into(),
        });
    }
    let mut websocket = false;
    for (i, u) in m.upgrade_configs.iter().enumerate() {
        if u.upgrade_type.eq_ignore_ascii_case("websocket") {
            websocket = u.enabled.as_ref().is_none_or(|b| b.value);
        } else {
            warnings.push(Unsupported {
                resource: resource.to_owned(),
                what: format!(
                    "{path}.typed_config.upgrade_configs[{i}] upgrade type {}",
                    u.upgrade_type
                ),
            });
        }
    }
    let codec = match m.codec_type {
        1 => Codec::Http1,
        2 => Codec::Http2,
        3 => {
            warnings.push(Unsupported {
                resource: resource.to_owned(),
                what: format!("{path}.typed_config.codec_type HTTP3"),
            });
            Codec::Auto
        }
        _ => Codec::Auto,
    };
    let stat_prefix = m.stat_prefix.clone();
    let common = m.common_http_protocol_options.as_ref();
    let opt_duration = |d: Option<&weft_xds::google::protobuf::Duration>,
                        default: Option<Duration>| match d {
        Some(d) => Some(duration(d)).filter(|d| !d.is_zero()),
        None => default,
    };
    let logs = crate::telemetry::compile_access_logs(
        &m.access_log,
        &stats.telemetry,
        resource,
        &format!("{path}.typed_config.access_log"),
        warnings,
    )?;
    let tracing = match &m.tracing {
        Some(t) => crate::telemetry::tracer::Tracing::compile(
            t,
            l.traffic_direction == 1,
            &stats.telemetry.tracers,
            resource,
            &format!("{path}.typed_config.tracing"),
            warnings,
        )?,
        None => None,
    };
    let telemetry =
        crate::telemetry::HttpTelemetry::new(&stats.telemetry, istio_stats, logs, tracing)
            .map(Arc::new);
    let set_current = m.set_current_client_cert_details.as_ref();
    Ok(HttpManager {
        client_cert_details: crate::tls::ClientCertDetails {
            mode: m.forward_client_cert_details,
            subject: set_current.is_some_and(|s| s.subject.as_ref().is_some_and(|b| b.value)),
            uri: set_current.is_some_and(|s| s.uri),
            dns: set_current.is_some_and(|s| s.dns),
        },
        telemetry,
        filters: http_filters,
        stream_idle_timeout: opt_duration(
            m.stream_idle_timeout.as_ref(),
            Some(Duration::from_secs(300)),
        ),
        idle_timeout: opt_duration(
            common.and_then(|c| c.idle_timeout.as_ref()),
            Some(Duration::from_secs(3600)),
        ),
        request_headers_timeout: opt_duration(m.request_headers_timeout.as_ref(), None)
            .unwrap_or(Duration::from_secs(30)),
        max_requests_per_connection: common
            .and_then(|c| c.max_requests_per_connection.as_ref())
            .map(|v| v.value)
            .filter(|v| *v > 0),
        max_request_headers_kb: m
            .max_request_headers_kb
            .as_ref()
            .map_or(60, |v| v.value.clamp(1, 8192)),
        max_headers_count: common
            .and_then(|c| c.max_headers_count.as_ref())
            .map_or(100, |v| v.value.max(1)),
        stats: stats.http(&stat_prefix),
        stat_prefix,
        route_config,
        codec,
        use_remote_address: m.use_remote_address.as_ref().is_some_and(|b| b.value),
        skip_xff_append: m.skip_xff_append,
        generate_request_id: m.generate_request_id.as_ref().is_none_or(|b| b.value),
        always_set_request_id_in_response: m.always_set_request_id_in_response,
        regenerate_request_id: m.use_remote_address.as_ref().is_some_and(|b| b.value)
            && !m.preserve_external_request_id,
        websocket,
    })
}
