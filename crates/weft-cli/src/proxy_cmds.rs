//! `weft proxy-status`, `weft proxy-config` and `weft x route-check`: what the control plane
//! serves each proxy, in istioctl's shapes.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::Value;
use weft_control::model::{Environment, MeshSettings, Proxy};
use weft_control::server::admin::ProxyInfo;
use weft_control::server::client::encode;
use weft_control::server::route_check::{
    Request, RouteReport, resources_from_config_dump, route_check,
};
use weft_control::server::store::ConfigStore;
use weft_control::translate::Resources;
use weft_xds::envoy::config::cluster::v3 as cluster;
use weft_xds::envoy::config::core::v3 as core;
use weft_xds::envoy::config::listener::v3 as listener;
use weft_xds::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use weft_xds::envoy::extensions::filters::network::tcp_proxy::v3 as tcp;

use crate::config_cmds::{Target, block_on};
use crate::table;

/// Arguments of `weft proxy-status`.
#[derive(clap::Args)]
pub struct StatusArgs {
    /// One proxy (node id, or a unique part of it such as `reviews-v1.default`).
    pub proxy: Option<String>,
    /// Output format: a table (default) or `json`.
    #[arg(short, long, value_parser = ["json"])]
    pub output: Option<String>,
    #[command(flatten)]
    pub target: Target,
}

async fn fetch_proxies(target: &Target) -> anyhow::Result<Vec<ProxyInfo>> {
    let a = target.client()?.get("/proxies").await?;
    if !a.ok() {
        bail!("{}", a.error_message());
    }
    serde_json::from_str(&a.body).context("unexpected answer from GET /proxies")
}

/// Finds a proxy by exact id, else by a unique substring.
fn find_proxy<'a>(list: &'a [ProxyInfo], want: &str) -> anyhow::Result<&'a ProxyInfo> {
    if let Some(p) = list.iter().find(|p| p.id == want) {
        return Ok(p);
    }
    let hits: Vec<&ProxyInfo> = list.iter().filter(|p| p.id.contains(want)).collect();
    match hits.as_slice() {
        [one] => Ok(one),
        [] => bail!("proxy {want} is not connected to the control plane"),
        many => bail!(
            "{want} matches {} proxies: {}",
            many.len(),
            many.iter()
                .map(|p| p.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn state(p: &ProxyInfo, t: &str) -> String {
    p.types
        .get(t)
        .map(|s| s.state.clone())
        .unwrap_or_else(|| "NOT SENT".to_string())
}

/// `weft proxy-status [PROXY]`.
pub fn status(args: StatusArgs) -> anyhow::Result<u8> {
    let list = block_on(fetch_proxies(&args.target))?;
    let list: Vec<ProxyInfo> = match &args.proxy {
        Some(want) => vec![find_proxy(&list, want)?.clone()],
        None => list,
    };
    if args.output.is_some() {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            vec![
                p.id.clone(),
                p.cluster.clone(),
                state(p, "cds"),
                state(p, "lds"),
                state(p, "eds"),
                state(p, "rds"),
                p.istiod.clone(),
                if p.version.is_empty() {
                    "-".to_string()
                } else {
                    p.version.clone()
                },
            ]
        })
        .collect();
    table::print(
        &[
            "NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "ISTIOD", "VERSION",
        ],
        &rows,
    );
    if args.proxy.is_some() {
        for p in &list {
            println!();
            if let Some(we) = &p.workload_entry {
                println!("WorkloadEntry: {we} (auto-registered)");
            }
            if let Some(e) = &p.registration_error {
                println!("Auto-registration: {e}");
            }
            for (t, s) in &p.types {
                println!(
                    "{}: {} (sent {}, acked {}){}",
                    t.to_uppercase(),
                    s.state,
                    s.sent_version.as_deref().unwrap_or("-"),
                    s.acked_version.as_deref().unwrap_or("-"),
                    s.nack
                        .as_ref()
                        .map(|e| format!("\n  NACK: {e}"))
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(0)
}

/// What `proxy-config` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    /// CDS.
    #[value(alias = "clusters")]
    Cluster,
    /// LDS.
    #[value(alias = "listeners")]
    Listener,
    /// RDS.
    #[value(alias = "routes")]
    Route,
    /// EDS.
    #[value(alias = "endpoints")]
    Endpoint,
    /// The proxy's certificates and trusted roots (read from the proxy's own admin
    /// `/config_dump`; PROXY is then its admin address, e.g. `127.0.0.1:15000`).
    #[value(alias = "secrets")]
    Secret,
    /// Everything.
    All,
}

/// Arguments of `weft proxy-config`.
#[derive(clap::Args)]
pub struct ConfigArgs {
    /// What to show.
    pub section: Section,
    /// The proxy (node id, or a unique part of it).
    pub proxy: String,
    /// Output format: a table (default), `json` or `yaml` (Envoy's proto3 JSON).
    #[arg(short, long, value_parser = ["json", "yaml"])]
    pub output: Option<String>,
    #[command(flatten)]
    pub target: Target,
}

pub(crate) async fn fetch_dump(target: &Target, want: &str) -> anyhow::Result<(String, Value)> {
    let list = fetch_proxies(target).await?;
    let id = find_proxy(&list, want)?.id.clone();
    let a = target
        .client()?
        .get(&format!("/proxies/{}/config", encode(&id)))
        .await?;
    if !a.ok() {
        bail!("{}", a.error_message());
    }
    Ok((id, a.json()?))
}

/// The parts of a config dump that a section shows, as proto3 JSON.
fn dump_section(dump: &Value, section: Section) -> Value {
    if matches!(section, Section::All | Section::Secret) {
        return dump.clone();
    }
    let (ty, list, inner) = match section {
        Section::Cluster => ("ClustersConfigDump", "dynamic_active_clusters", "cluster"),
        Section::Listener => ("ListenersConfigDump", "dynamic_listeners", "active_state"),
        Section::Route => ("RoutesConfigDump", "dynamic_route_configs", "route_config"),
        Section::Endpoint => (
            "EndpointsConfigDump",
            "dynamic_endpoint_configs",
            "endpoint_config",
        ),
        Section::All | Section::Secret => unreachable!("handled above"),
    };
    let items: Vec<Value> = dump
        .get("configs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| {
            c.get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with(ty))
        })
        .flat_map(|c| {
            c.get(list)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|x| {
            let v = x.get(inner)?;
            if inner == "active_state" {
                v.get("listener").cloned()
            } else {
                Some(v.clone())
            }
        })
        .collect();
    Value::Array(items)
}

fn socket(a: Option<&core::Address>) -> (String, String) {
    match a.and_then(|a| a.address.as_ref()) {
        Some(core::address::Address::SocketAddress(s)) => {
            let port = match &s.port_specifier {
                Some(core::socket_address::PortSpecifier::PortValue(p)) => p.to_string(),
                Some(core::socket_address::PortSpecifier::NamedPort(n)) => n.clone(),
                None => "-".to_string(),
            };
            (s.address.clone(), port)
        }
        Some(core::address::Address::Pipe(p)) => (format!("unix://{}", p.path), "-".to_string()),
        _ => ("-".to_string(), "-".to_string()),
    }
}

fn cluster_rows(r: &Resources) -> Vec<Vec<String>> {
    r.clusters
        .iter()
        .map(|c| {
            let ty = match &c.cluster_discovery_type {
                Some(cluster::cluster::ClusterDiscoveryType::Type(t)) => {
                    cluster::cluster::DiscoveryType::try_from(*t)
                        .map(|d| d.as_str_name().to_string())
                        .unwrap_or_else(|_| t.to_string())
                }
                Some(cluster::cluster::ClusterDiscoveryType::ClusterType(t)) => t.name.clone(),
                None => "STATIC".to_string(),
            };
            let parts: Vec<&str> = c.name.split('|').collect();
            let (fqdn, port, subset, dir) = match parts.as_slice() {
                [dir @ ("outbound" | "inbound"), port, subset, host] => (
                    host.to_string(),
                    port.to_string(),
                    if subset.is_empty() { "-" } else { subset }.to_string(),
                    dir.to_string(),
                ),
                _ => (c.name.clone(), "-".into(), "-".into(), "-".into()),
            };
            vec![
                fqdn,
                port,
                subset,
                dir,
                ty,
                destination_rule(c.metadata.as_ref()),
            ]
        })
        .collect()
}

/// istiod's `istio.config` metadata (`/apis/.../namespaces/NS/destination-rule/NAME`) as
/// `NAME.NS`, as istioctl shows it.
fn destination_rule(md: Option<&core::Metadata>) -> String {
    config_ref(md).unwrap_or_else(|| "-".to_string())
}

fn config_ref(md: Option<&core::Metadata>) -> Option<String> {
    let s = md?.filter_metadata.get("istio")?;
    let v = s.fields.get("config")?;
    let Some(weft_xds::google::protobuf::value::Kind::StringValue(path)) = &v.kind else {
        return None;
    };
    let parts: Vec<&str> = path.split('/').collect();
    let n = parts.len();
    (n >= 4).then(|| format!("{}.{}", parts[n - 1], parts[n - 3]))
}

fn chain_match(fc: &listener::FilterChain) -> String {
    let Some(m) = &fc.filter_chain_match else {
        return "ALL".to_string();
    };
    let mut parts = Vec::new();
    if !m.prefix_ranges.is_empty() {
        let addrs: Vec<String> = m
            .prefix_ranges
            .iter()
            .map(|r| {
                format!(
                    "{}/{}",
                    r.address_prefix,
                    r.prefix_len.as_ref().map(|p| p.value).unwrap_or(0)
                )
            })
            .collect();
        parts.push(format!("Addr: {}", addrs.join(",")));
    }
    if let Some(p) = &m.destination_port {
        parts.push(format!("Port: {}", p.value));
    }
    if !m.server_names.is_empty() {
        parts.push(format!("SNI: {}", m.server_names.join(",")));
    }
    if !m.transport_protocol.is_empty() {
        parts.push(format!("Trans: {}", m.transport_protocol));
    }
    if !m.application_protocols.is_empty() {
        parts.push(format!("App: {}", m.application_protocols.join(",")));
    }
    if parts.is_empty() {
        "ALL".to_string()
    } else {
        parts.join("; ")
    }
}

fn chain_destination(fc: &listener::FilterChain) -> String {
    use weft_control::translate::envoy::unpack;
    for f in &fc.filters {
        let Some(listener::filter::ConfigType::TypedConfig(any)) = &f.config_type else {
            continue;
        };
        if let Some(m) = unpack::<hcm::HttpConnectionManager>(any) {
            return match m.route_specifier {
                Some(hcm::http_connection_manager::RouteSpecifier::Rds(r)) => {
                    format!("Route: {}", r.route_config_name)
                }
                Some(hcm::http_connection_manager::RouteSpecifier::RouteConfig(rc)) => {
                    let domains: Vec<String> = rc
                        .virtual_hosts
                        .iter()
                        .flat_map(|v| v.domains.first().cloned())
                        .collect();
                    format!("Inline Route: {}", domains.join(","))
                }
                _ => "HTTP".to_string(),
            };
        }
        if let Some(t) = unpack::<tcp::TcpProxy>(any) {
            return match t.cluster_specifier {
                Some(tcp::tcp_proxy::ClusterSpecifier::Cluster(c)) => format!("Cluster: {c}"),
                Some(tcp::tcp_proxy::ClusterSpecifier::WeightedClusters(w)) => format!(
                    "Clusters: {}",
                    w.clusters
                        .iter()
                        .map(|c| c.name.clone())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                None => "TCP".to_string(),
            };
        }
    }
    "Non-HTTP/Non-TCP".to_string()
}

fn listener_rows(r: &Resources) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for l in &r.listeners {
        let (addr, port) = socket(l.address.as_ref());
        for fc in l.filter_chains.iter().chain(l.default_filter_chain.iter()) {
            rows.push(vec![
                addr.clone(),
                port.clone(),
                chain_match(fc),
                chain_destination(fc),
            ]);
        }
    }
    rows
}

fn route_rows(r: &Resources) -> Vec<Vec<String>> {
    use weft_xds::envoy::config::route::v3::route_match::PathSpecifier;
    let mut rows = Vec::new();
    for rc in &r.routes {
        for vh in &rc.virtual_hosts {
            for route in &vh.routes {
                let m = match route
                    .r#match
                    .as_ref()
                    .and_then(|m| m.path_specifier.as_ref())
                {
                    Some(PathSpecifier::Prefix(p)) => format!("{p}*"),
                    Some(PathSpecifier::Path(p)) => p.clone(),
                    Some(PathSpecifier::SafeRegex(re)) => re.regex.clone(),
                    Some(PathSpecifier::PathSeparatedPrefix(p)) => format!("{p}/*"),
                    _ => "-".to_string(),
                };
                let domain = vh
                    .domains
                    .iter()
                    .min_by_key(|d| d.len())
                    .cloned()
                    .unwrap_or_default();
                rows.push(vec![
                    rc.name.clone(),
                    vh.name.clone(),
                    domain,
                    m,
                    config_ref(route.metadata.as_ref()).unwrap_or_else(|| "-".to_string()),
                ]);
            }
        }
    }
    rows
}

fn endpoint_rows(r: &Resources) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for cla in &r.endpoints {
        for le in &cla.endpoints {
            for e in &le.lb_endpoints {
                use weft_xds::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
                let addr = match &e.host_identifier {
                    Some(HostIdentifier::Endpoint(ep)) => {
                        let (a, p) = socket(ep.address.as_ref());
                        format!("{a}:{p}")
                    }
                    _ => "-".to_string(),
                };
                let status = match core::HealthStatus::try_from(e.health_status) {
                    Ok(core::HealthStatus::Unknown) | Ok(core::HealthStatus::Healthy) => "HEALTHY",
                    Ok(core::HealthStatus::Draining) => "DRAINING",
                    Ok(core::HealthStatus::Degraded) => "DEGRADED",
                    _ => "UNHEALTHY",
                };
                rows.push(vec![
                    addr,
                    status.to_string(),
                    "OK".to_string(),
                    cla.cluster_name.clone(),
                ]);
            }
        }
    }
    rows
}

/// The tables of `proxy-config` for one section.
pub fn render_section(r: &Resources, section: Section) -> String {
    let cluster = || {
        table::render(
            &[
                "SERVICE FQDN",
                "PORT",
                "SUBSET",
                "DIRECTION",
                "TYPE",
                "DESTINATION RULE",
            ],
            &cluster_rows(r),
        )
    };
    let listener = || {
        table::render(
            &["ADDRESSES", "PORT", "MATCH", "DESTINATION"],
            &listener_rows(r),
        )
    };
    let route = || {
        table::render(
            &["NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE"],
            &route_rows(r),
        )
    };
    let endpoint = || {
        table::render(
            &["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"],
            &endpoint_rows(r),
        )
    };
    match section {
        Section::Cluster => cluster(),
        Section::Listener => listener(),
        Section::Route => route(),
        Section::Endpoint => endpoint(),
        Section::Secret => String::new(),
        Section::All => [cluster(), listener(), route(), endpoint()].join("\n"),
    }
}

/// `weft proxy-config cluster|listener|route|endpoint|all PROXY [-o json|yaml]`.
pub fn config(args: ConfigArgs) -> anyhow::Result<u8> {
    if args.section == Section::Secret {
        return secret(&args);
    }
    let (_, dump) = block_on(fetch_dump(&args.target, &args.proxy))?;
    match args.output.as_deref() {
        Some("json") => {
            println!(
                "{}",
                serde_json::to_string_pretty(&dump_section(&dump, args.section))?
            );
        }
        Some(_) => print!(
            "{}",
            serde_norway::to_string(&dump_section(&dump, args.section))?
        ),
        None => {
            let r = resources_from_config_dump(&dump)?;
            print!("{}", render_section(&r, args.section));
        }
    }
    Ok(0)
}

/// Arguments of `weft x route-check`.
#[derive(clap::Args)]
pub struct RouteCheckArgs {
    /// The proxy (node id, or a unique part of it when asking a control plane).
    pub proxy: Option<String>,
    /// Host header of the request.
    #[arg(long)]
    pub host: String,
    /// Path of the request.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// A request header, `name=value` (repeatable).
    #[arg(long = "header", value_name = "NAME=VALUE")]
    pub headers: Vec<String>,
    /// Destination port (default: the port in --host, else 80).
    #[arg(long)]
    pub port: Option<u32>,
    /// Offline: read config from this directory instead of asking a control plane.
    #[arg(long)]
    pub config_dir: Option<PathBuf>,
    /// Offline: MeshConfig file.
    #[arg(long)]
    pub mesh_config: Option<PathBuf>,
    /// Offline: the proxy's Istio node id (`sidecar~10.0.0.1~productpage-v1.default~default.svc.cluster.local`).
    #[arg(long)]
    pub proxy_id: Option<String>,
    /// Offline: a workload label of the proxy, `key=value` (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Output format: text (default) or `json`.
    #[arg(short, long, value_parser = ["json"])]
    pub output: Option<String>,
    #[command(flatten)]
    pub target: Target,
}

fn kv(s: &str, what: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .or_else(|| s.split_once(':'))
        .with_context(|| format!("{what} {s:?} is not NAME=VALUE"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

fn offline_resources(args: &RouteCheckArgs, dir: &PathBuf) -> anyhow::Result<Resources> {
    let id = args
        .proxy_id
        .as_deref()
        .or(args.proxy.as_deref())
        .context("offline mode needs --proxy-id (an Istio node id)")?;
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let store = ConfigStore::open(dir)?;
    for r in store.rejected() {
        for e in &r.errors {
            eprintln!("warning: ignoring {}: {e}", r.file);
        }
    }
    let mesh = match &args.mesh_config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            let m = weft_config::document::parse_mesh_config(&text, &p.display().to_string())
                .map_err(|d| anyhow::anyhow!("{d}"))?;
            MeshSettings::from_mesh_config(&m)
        }
        None => MeshSettings::default(),
    };
    let resources: Vec<_> = store.resources().into_iter().map(|r| r.resource).collect();
    // As the control plane does: Services written without an address get one.
    let resources = weft_control::server::push::allocate_cluster_ips(resources);
    let env = Environment::from_resources(&resources, mesh);
    let mut proxy = Proxy::from_node_id(id)?;
    for l in &args.labels {
        let (k, v) = kv(l, "label")?;
        proxy.labels.insert(k, v);
    }
    proxy.metadata.labels = proxy.labels.clone();
    Ok(weft_control::translate::translate(&env, &proxy))
}

fn print_report(r: &RouteReport) {
    let mut lines: Vec<(&str, String)> = vec![
        ("LISTENER", r.listener.clone()),
        ("FILTER CHAIN", r.filter_chain.clone()),
        ("ROUTE CONFIG", r.route_config.clone()),
        ("VIRTUAL HOST", r.virtual_host.clone()),
        ("ROUTE", r.route.clone()),
        ("MATCH", r.matched.clone()),
    ];
    if !r.cluster.is_empty() {
        lines.push(("CLUSTER", r.cluster.clone()));
    }
    if !r.action.is_empty() {
        lines.push(("ACTION", r.action.clone()));
    }
    for (k, v) in lines {
        println!(
            "{:<14}{}",
            format!("{k}:"),
            if v.is_empty() { "-" } else { &v }
        );
    }
    if !r.weighted.is_empty() {
        println!("WEIGHTED CLUSTERS:");
        for w in &r.weighted {
            println!("  {:>5}  {}", w.weight, w.cluster);
        }
    }
}

/// `weft x route-check PROXY --host H --path P [--header k=v] [--port N]`, against a control
/// plane or offline (`--config-dir DIR --proxy-id ID`).
pub fn route_check_cmd(args: RouteCheckArgs) -> anyhow::Result<u8> {
    let (host, port_in_host) = match args.host.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty() => {
            (h.to_string(), p.parse::<u32>().ok())
        }
        _ => (args.host.clone(), None),
    };
    let port = args.port.or(port_in_host).unwrap_or(80);
    let mut headers = Vec::new();
    for h in &args.headers {
        headers.push(kv(h, "header")?);
    }
    let resources = match &args.config_dir {
        Some(dir) => offline_resources(&args, dir)?,
        None => {
            let want = args
                .proxy
                .as_deref()
                .context("name the PROXY (or use --config-dir and --proxy-id offline)")?;
            let (_, dump) = block_on(fetch_dump(&args.target, want))?;
            resources_from_config_dump(&dump)?
        }
    };
    let req = Request {
        host: if port_in_host.is_some() && args.port.is_none() {
            args.host.clone()
        } else {
            host
        },
        port,
        path: args.path.clone(),
        headers,
    };
    match route_check(&resources, &req) {
        Ok(report) => {
            if args.output.is_some() {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_report(&report);
            }
            Ok(0)
        }
        Err(e) => {
            eprintln!("no route: {e}");
            Ok(1)
        }
    }
}

/// One row of `proxy-config secret`.
#[derive(Debug, serde::Serialize)]
pub struct SecretRow {
    /// The SDS name (`default`, `ROOTCA`, ...).
    pub resource_name: String,
    /// `Cert Chain` or `CA`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `ACTIVE` (dynamic active secrets) or `STATIC`.
    pub status: String,
    /// Whether the certificate is within its validity now.
    pub valid_cert: bool,
    /// Serial number, lower-case hex.
    pub serial_number: String,
    /// End of validity (RFC 3339, UTC).
    pub not_after: String,
    /// Start of validity (RFC 3339, UTC).
    pub not_before: String,
    /// URI SANs (the SPIFFE id of a workload certificate).
    pub identities: Vec<String>,
}

fn rfc3339(t: x509_parser::time::ASN1Time) -> String {
    let secs = t.timestamp();
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The certificates of one secret (the first is the one shown, as istioctl does).
fn secret_rows(entry: &Value, status: &str) -> anyhow::Result<Vec<SecretRow>> {
    use base64::Engine as _;
    let name = entry["name"].as_str().unwrap_or_default().to_string();
    let secret = &entry["secret"];
    let (kind, data) = if let Some(c) = secret.get("tls_certificate") {
        ("Cert Chain", &c["certificate_chain"])
    } else if let Some(v) = secret.get("validation_context") {
        ("CA", &v["trusted_ca"])
    } else {
        return Ok(Vec::new());
    };
    let pem = if let Some(b) = data.get("inline_bytes").and_then(Value::as_str) {
        base64::engine::general_purpose::STANDARD
            .decode(b)
            .with_context(|| format!("secret {name}: inline_bytes is not base64"))?
    } else if let Some(s) = data.get("inline_string").and_then(Value::as_str) {
        s.as_bytes().to_vec()
    } else {
        return Ok(Vec::new());
    };
    let mut rows = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(&pem) {
        let block = block.with_context(|| format!("secret {name}: bad PEM"))?;
        let cert = block
            .parse_x509()
            .with_context(|| format!("secret {name}: not an X.509 certificate"))?;
        let identities = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        rows.push(SecretRow {
            resource_name: name.clone(),
            kind: kind.to_string(),
            status: status.to_string(),
            valid_cert: cert.validity().is_valid(),
            serial_number: cert.raw_serial_as_string().replace(':', ""),
            not_after: rfc3339(cert.validity().not_after),
            not_before: rfc3339(cert.validity().not_before),
            identities,
        });
        if kind == "Cert Chain" {
            break;
        }
    }
    Ok(rows)
}

/// The rows of `proxy-config secret` from a proxy's `/config_dump`.
pub fn secrets_from_config_dump(dump: &Value) -> anyhow::Result<Vec<SecretRow>> {
    let mut rows = Vec::new();
    for c in dump
        .get("configs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| {
            c.get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("SecretsConfigDump"))
        })
    {
        for (list, status) in [
            ("dynamic_active_secrets", "ACTIVE"),
            ("static_secrets", "STATIC"),
        ] {
            for e in c.get(list).and_then(Value::as_array).into_iter().flatten() {
                rows.extend(secret_rows(e, status)?);
            }
        }
    }
    Ok(rows)
}

/// `weft proxy-config secret ADMIN [-o json]`: the proxy's certificates from its admin API.
fn secret(args: &ConfigArgs) -> anyhow::Result<u8> {
    let url = if args.proxy.contains("://") {
        args.proxy.clone()
    } else if args.proxy.parse::<std::net::SocketAddr>().is_ok() {
        format!("http://{}", args.proxy)
    } else {
        bail!(
            "proxy-config secret reads the proxy's own admin API: give its address as PROXY, e.g. 127.0.0.1:15000 (got {:?})",
            args.proxy
        );
    };
    let dump: Value = block_on(async {
        let a = weft_control::server::client::AdminClient::new(&url)?
            .get("/config_dump")
            .await?;
        if !a.ok() {
            bail!("{url}/config_dump: {}", a.error_message());
        }
        Ok(a.json()?)
    })?;
    match args.output.as_deref() {
        Some("json") => {
            let section: Vec<&Value> = dump
                .get("configs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|c| {
                    c.get("@type")
                        .and_then(Value::as_str)
                        .is_some_and(|t| t.ends_with("SecretsConfigDump"))
                })
                .collect();
            let rows = secrets_from_config_dump(&dump)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "secrets": rows,
                    "config_dump": section.first(),
                }))?
            );
        }
        Some(_) => print!(
            "{}",
            serde_norway::to_string(&secrets_from_config_dump(&dump)?)?
        ),
        None => {
            let rows: Vec<Vec<String>> = secrets_from_config_dump(&dump)?
                .into_iter()
                .map(|r| {
                    vec![
                        r.resource_name,
                        r.kind,
                        r.status,
                        r.valid_cert.to_string(),
                        r.serial_number,
                        r.not_after,
                        r.not_before,
                    ]
                })
                .collect();
            table::print(
                &[
                    "RESOURCE NAME",
                    "TYPE",
                    "STATUS",
                    "VALID CERT",
                    "SERIAL NUMBER",
                    "NOT AFTER",
                    "NOT BEFORE",
                ],
                &rows,
            );
        }
    }
    Ok(0)
}
