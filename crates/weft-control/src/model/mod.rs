//! The model translation works from: the service registry, the config that applies to each
//! proxy (VirtualServices, DestinationRules, Gateways, Sidecars, PeerAuthentications), mesh-wide
//! settings, and the proxy itself.

pub mod host;
pub mod ingress;
pub mod protocol;
pub mod proxy;
pub mod service;
pub mod visibility;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use weft_config::mesh::{MeshConfig, OutboundTrafficPolicyMode};
use weft_config::meta::selector_matches;
use weft_config::networking::destination_rule::{Subset, TrafficPolicy};
use weft_config::networking::sidecar::{CaptureMode, SidecarPort};
use weft_config::networking::{DestinationRule, Gateway, Sidecar, VirtualService};
use weft_config::security::PeerAuthentication;
use weft_config::security::peer_authentication::Mode as PaMode;
use weft_config::{Resource, Spec};

pub use protocol::{ListenerProtocol, Protocol};
pub use proxy::{NodeIdError, NodeMetadata, Proxy, ProxyKind};
pub use service::{
    Endpoint, Locality, Registry, RegistryKind, Resolution, Service, ServiceDiscovery, ServicePort,
    ServiceTarget,
};
pub use visibility::Visibility;

/// A config object with the metadata translation needs (ordering, namespace, annotations).
#[derive(Clone, Debug, PartialEq)]
pub struct Cfg<T> {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.creationTimestamp` as written (empty when unset).
    pub creation_timestamp: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// The spec.
    pub spec: T,
}

impl<T> Cfg<T> {
    fn from_resource(r: &Resource, spec: T) -> Cfg<T> {
        Cfg {
            name: r.name().to_string(),
            namespace: r.namespace().to_string(),
            creation_timestamp: r.metadata.creation_timestamp.clone().unwrap_or_default(),
            labels: r.metadata.labels.clone(),
            annotations: r.metadata.annotations.clone(),
            spec,
        }
    }

    /// Istio's config order: oldest first, then by name, then namespace.
    fn order_key(&self) -> (&str, &str, &str) {
        (&self.creation_timestamp, &self.name, &self.namespace)
    }
}

/// What a sidecar does with traffic to destinations not in the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutboundMode {
    /// Block it (`BlackHoleCluster`, 502 for HTTP).
    RegistryOnly,
    /// Pass it through to the original destination (`PassthroughCluster`).
    AllowAny,
    /// Like `AllowAny`, but plaintext HTTP is resolved per request by Host
    /// (`AllowAnyDynamicDNSCluster`).
    AllowAnyDynamicDns,
}

/// Mesh-wide settings used by translation, from MeshConfig.
#[derive(Clone, Debug, PartialEq)]
pub struct MeshSettings {
    /// Outbound traffic policy (Istio's default is `ALLOW_ANY`).
    pub outbound_mode: OutboundMode,
    /// Namespace of mesh-wide config (`istio-system`).
    pub root_namespace: String,
    /// SPIFFE trust domain.
    pub trust_domain: String,
    /// DNS suffix of Kubernetes service hostnames (`cluster.local`).
    pub domain_suffix: String,
    /// Suffix appended (as `.svc.<suffix>`) when resolving short host names written in config.
    /// Istio's config store sets it to the cluster domain; Istio's own test harness leaves it
    /// empty (so `reviews` in namespace `default` becomes `reviews.default`).
    pub config_domain: String,
    /// Upstream connect timeout (MeshConfig `connectTimeout`, 10s by default).
    pub connect_timeout: Duration,
    /// Whether clients send Istio mTLS automatically to workloads that have a sidecar.
    pub enable_auto_mtls: bool,
    /// Other trust domains whose identities count as this one (MeshConfig `trustDomainAliases`).
    pub trust_domain_aliases: Vec<String>,
    /// External authorizers and other providers (MeshConfig `extensionProviders`).
    pub extension_providers: Vec<weft_config::mesh::providers::ExtensionProvider>,
    /// The whole MeshConfig, for what translation reads directly (telemetry: access log
    /// settings, extension providers, default providers).
    pub config: Arc<MeshConfig>,
}

impl Default for MeshSettings {
    fn default() -> Self {
        MeshSettings {
            outbound_mode: OutboundMode::AllowAny,
            root_namespace: "istio-system".to_string(),
            trust_domain: "cluster.local".to_string(),
            domain_suffix: "cluster.local".to_string(),
            config_domain: "cluster.local".to_string(),
            connect_timeout: Duration::from_secs(10),
            enable_auto_mtls: true,
            trust_domain_aliases: Vec::new(),
            extension_providers: Vec::new(),
            config: Arc::default(),
        }
    }
}

impl MeshSettings {
    /// Reads the settings from a MeshConfig, applying Istio's defaults for unset fields.
    pub fn from_mesh_config(mesh: &MeshConfig) -> MeshSettings {
        let mut s = MeshSettings::default();
        if let Some(p) = &mesh.outbound_traffic_policy
            && let Some(mode) = p.mode
        {
            s.outbound_mode = match mode {
                OutboundTrafficPolicyMode::RegistryOnly => OutboundMode::RegistryOnly,
                OutboundTrafficPolicyMode::AllowAny => OutboundMode::AllowAny,
            };
        }
        if !mesh.root_namespace.is_empty() {
            s.root_namespace = mesh.root_namespace.clone();
        }
        if !mesh.trust_domain.is_empty() {
            s.trust_domain = mesh.trust_domain.clone();
        }
        if let Some(t) = mesh.connect_timeout {
            s.connect_timeout = t.get();
        }
        if let Some(a) = mesh.enable_auto_mtls {
            s.enable_auto_mtls = a;
        }
        s.trust_domain_aliases = mesh.trust_domain_aliases.clone();
        s.extension_providers = mesh.extension_providers.clone();
        s.config = Arc::new(mesh.clone());
        s
    }
}

/// Effective mTLS mode for a workload port (PeerAuthentication resolved).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MtlsMode {
    /// Plaintext only.
    Disable,
    /// Plaintext and mTLS.
    Permissive,
    /// mTLS only.
    Strict,
}

/// One egress listener of a proxy's sidecar scope, with what it imports.
#[derive(Clone, Debug)]
pub struct EgressListener {
    /// The listener port, or none for the catch-all listener.
    pub port: Option<SidecarPort>,
    /// Bind address (empty: the default).
    pub bind: String,
    /// `captureMode: NONE`: the listener binds a real port.
    pub capture_none: bool,
    /// Services imported by this listener.
    pub services: Vec<Arc<Service>>,
    /// VirtualServices imported by this listener, in Istio order.
    pub virtual_services: Vec<Arc<Cfg<VirtualService>>>,
}

/// What a sidecar proxy imports: its egress listeners and ingress ports (Istio's SidecarScope).
#[derive(Clone, Debug)]
pub struct SidecarScope {
    /// The Sidecar resource in effect (`namespace/name`), if any.
    pub sidecar: Option<Arc<Cfg<Sidecar>>>,
    /// Egress listeners; the last may be the catch-all.
    pub egress: Vec<EgressListener>,
    /// Outbound traffic mode (the Sidecar's `outboundTrafficPolicy` over the mesh's).
    pub outbound_mode: OutboundMode,
}

impl SidecarScope {
    /// Every service imported by any egress listener, deduplicated by hostname and namespace.
    pub fn services(&self) -> Vec<Arc<Service>> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for l in &self.egress {
            for s in &l.services {
                if seen.insert((s.hostname.clone(), s.namespace.clone())) {
                    out.push(s.clone());
                }
            }
        }
        out
    }

    /// The egress listener that serves a port: the one declaring it, else the catch-all.
    pub fn egress_for_port(&self, port: u32) -> Option<&EgressListener> {
        self.egress
            .iter()
            .find(|l| l.port.as_ref().is_some_and(|p| p.number == port))
            .or_else(|| self.egress.iter().find(|l| l.port.is_none()))
    }
}

/// A DestinationRule merged for one host, as seen from one namespace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MergedDestinationRule {
    /// Top-level traffic policy.
    pub traffic_policy: Option<TrafficPolicy>,
    /// Subsets (unique names).
    pub subsets: Vec<Subset>,
    /// `namespace/name` of the rules merged.
    pub sources: Vec<String>,
}

/// Everything translation reads: registry, config and mesh settings.
#[derive(Clone)]
pub struct Environment {
    /// The service registry.
    pub registry: Arc<dyn ServiceDiscovery>,
    /// Mesh-wide settings.
    pub mesh: MeshSettings,
    /// VirtualServices, oldest first.
    pub virtual_services: Vec<Arc<Cfg<VirtualService>>>,
    /// DestinationRules, oldest first.
    pub destination_rules: Vec<Arc<Cfg<DestinationRule>>>,
    /// Gateways, oldest first.
    pub gateways: Vec<Arc<Cfg<Gateway>>>,
    /// Sidecars, oldest first.
    pub sidecars: Vec<Arc<Cfg<Sidecar>>>,
    /// PeerAuthentications, oldest first.
    pub peer_authentications: Vec<Arc<Cfg<PeerAuthentication>>>,
    /// AuthorizationPolicies, oldest first.
    pub authorization_policies: Vec<Arc<Cfg<weft_config::security::AuthorizationPolicy>>>,
    /// RequestAuthentications, oldest first.
    pub request_authentications: Vec<Arc<Cfg<weft_config::security::RequestAuthentication>>>,
    /// Telemetry resources, oldest first.
    pub telemetries: Vec<Arc<Cfg<weft_config::telemetry::Telemetry>>>,
    services: Vec<Arc<Service>>,
    /// Services by hostname (one hostname may exist in several namespaces), for the lookups
    /// every route destination makes.
    by_host: std::collections::HashMap<String, Vec<Arc<Service>>>,
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Environment")
            .field("mesh", &self.mesh)
            .field("services", &self.services.len())
            .field("virtual_services", &self.virtual_services.len())
            .field("destination_rules", &self.destination_rules.len())
            .field("gateways", &self.gateways.len())
            .field("sidecars", &self.sidecars.len())
            .finish()
    }
}

fn sorted<T>(mut v: Vec<Arc<Cfg<T>>>) -> Vec<Arc<Cfg<T>>> {
    v.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    v
}

impl Environment {
    /// Builds the environment from parsed resources, with the in-memory [`Registry`].
    pub fn from_resources(resources: &[Resource], mesh: MeshSettings) -> Environment {
        let registry = Registry::from_resources(resources, &mesh.domain_suffix);
        Environment::new(Arc::new(registry), resources, mesh)
    }

    /// Builds the environment from a registry and the Istio config among `resources`.
    pub fn new(
        registry: Arc<dyn ServiceDiscovery>,
        resources: &[Resource],
        mesh: MeshSettings,
    ) -> Environment {
        let mut vs = Vec::new();
        let mut dr = Vec::new();
        let mut gw = Vec::new();
        let mut sc = Vec::new();
        let mut pa = Vec::new();
        let mut authz = Vec::new();
        let mut authn = Vec::new();
        let mut tm = Vec::new();
        for r in resources {
            match &r.spec {
                Spec::VirtualService(s) => vs.push(Arc::new(Cfg::from_resource(r, s.clone()))),
                Spec::DestinationRule(s) => dr.push(Arc::new(Cfg::from_resource(r, s.clone()))),
                Spec::Gateway(s) => gw.push(Arc::new(Cfg::from_resource(r, s.clone()))),
                Spec::Sidecar(s) => sc.push(Arc::new(Cfg::from_resource(r, s.clone()))),
                Spec::PeerAuthentication(s) => pa.push(Arc::new(Cfg::from_resource(r, s.clone()))),
                Spec::AuthorizationPolicy(s) => {
                    authz.push(Arc::new(Cfg::from_resource(r, s.clone())))
                }
                Spec::RequestAuthentication(s) => {
                    authn.push(Arc::new(Cfg::from_resource(r, s.clone())))
                }
                Spec::Telemetry(s) => tm.push(Arc::new(Cfg::from_resource(r, s.clone()))),
                _ => {}
            }
        }
        let services = registry.services();
        let mut by_host: std::collections::HashMap<String, Vec<Arc<Service>>> =
            std::collections::HashMap::new();
        for s in &services {
            by_host
                .entry(s.hostname.clone())
                .or_default()
                .push(s.clone());
        }
        Environment {
            registry,
            mesh,
            virtual_services: sorted(vs),
            destination_rules: sorted(dr),
            gateways: sorted(gw),
            sidecars: sorted(sc),
            peer_authentications: sorted(pa),
            authorization_policies: sorted(authz),
            request_authentications: sorted(authn),
            telemetries: sorted(tm),
            services,
            by_host,
        }
    }

    /// Adds Kubernetes Ingresses of class `istio`, converted to Gateways (in the root
    /// namespace) and VirtualServices as Istio converts them.
    pub fn add_ingresses(&mut self, ingresses: &[k8s_openapi::api::networking::v1::Ingress]) {
        let (gateways, vses) = ingress::convert(
            ingresses,
            &self.mesh.root_namespace,
            &self.mesh.domain_suffix,
        );
        let mut gw = std::mem::take(&mut self.gateways);
        gw.extend(gateways);
        self.gateways = sorted(gw);
        let mut vs = std::mem::take(&mut self.virtual_services);
        vs.extend(vses);
        self.virtual_services = sorted(vs);
    }

    /// Every service in the registry.
    pub fn services(&self) -> &[Arc<Service>] {
        &self.services
    }

    /// Services visible from a namespace (by `exportTo`), aliases excluded.
    pub fn visible_services(&self, namespace: &str) -> Vec<Arc<Service>> {
        self.services
            .iter()
            .filter(|s| s.export_to.visible_to(&s.namespace, namespace))
            .cloned()
            .collect()
    }

    /// Finds a service by hostname as seen from a namespace (own namespace preferred).
    pub fn service_for_host(&self, hostname: &str, namespace: &str) -> Option<Arc<Service>> {
        let mut candidates = self
            .by_host
            .get(hostname)?
            .iter()
            .filter(|s| s.export_to.visible_to(&s.namespace, namespace));
        let first = candidates.next()?;
        if first.namespace == namespace {
            return Some(first.clone());
        }
        Some(
            candidates
                .find(|s| s.namespace == namespace)
                .unwrap_or(first)
                .clone(),
        )
    }

    fn vs_visible(&self, vs: &Cfg<VirtualService>, namespace: &str) -> bool {
        Visibility::parse(vs.spec.export_to.iter().map(String::as_str))
            .visible_to(&vs.namespace, namespace)
    }

    /// The Sidecar resource that applies to a proxy: a selector match in its namespace, else
    /// the namespace's selector-less Sidecar, else the root namespace's.
    pub fn sidecar_for(&self, proxy: &Proxy) -> Option<Arc<Cfg<Sidecar>>> {
        let ns = &proxy.config_namespace;
        let with_selector = self.sidecars.iter().find(|s| {
            &s.namespace == ns
                && s.spec.workload_selector.as_ref().is_some_and(|sel| {
                    !sel.labels.is_empty() && selector_matches(&sel.labels, &proxy.labels)
                })
        });
        if let Some(s) = with_selector {
            return Some(s.clone());
        }
        let no_selector = |s: &&Arc<Cfg<Sidecar>>| {
            s.spec
                .workload_selector
                .as_ref()
                .is_none_or(|sel| sel.labels.is_empty())
        };
        self.sidecars
            .iter()
            .filter(no_selector)
            .find(|s| &s.namespace == ns)
            .or_else(|| {
                self.sidecars
                    .iter()
                    .filter(no_selector)
                    .find(|s| s.namespace == self.mesh.root_namespace)
            })
            .cloned()
    }

    /// Computes what a proxy imports (Istio's SidecarScope). Without a Sidecar resource the
    /// proxy imports every visible service and VirtualService.
    pub fn sidecar_scope(&self, proxy: &Proxy) -> SidecarScope {
        let ns = proxy.config_namespace.as_str();
        let visible = self.visible_services(ns);
        let visible_vs: Vec<Arc<Cfg<VirtualService>>> = self
            .virtual_services
            .iter()
            .filter(|v| self.vs_visible(v, ns) && is_mesh_bound(v))
            .cloned()
            .collect();
        let sidecar = if proxy.is_router() {
            None
        } else {
            self.sidecar_for(proxy)
        };
        let mut outbound_mode = self.mesh.outbound_mode;
        let Some(sc) = sidecar.clone().filter(|s| !s.spec.egress.is_empty()) else {
            if let Some(sc) = &sidecar
                && let Some(p) = &sc.spec.outbound_traffic_policy
            {
                outbound_mode = sidecar_mode(p.mode);
            }
            return SidecarScope {
                sidecar,
                egress: vec![EgressListener {
                    port: None,
                    bind: String::new(),
                    capture_none: false,
                    services: visible,
                    virtual_services: visible_vs,
                }],
                outbound_mode,
            };
        };
        if let Some(p) = &sc.spec.outbound_traffic_policy {
            outbound_mode = sidecar_mode(p.mode);
        }
        let mut egress = Vec::new();
        for l in &sc.spec.egress {
            let hosts: Vec<(String, String)> = l
                .hosts
                .iter()
                .filter_map(|h| {
                    let (hns, name) = h.split_once('/')?;
                    let hns = if hns == "." {
                        ns.to_string()
                    } else {
                        hns.to_string()
                    };
                    Some((hns, name.to_string()))
                })
                .collect();
            let imports = |obj_ns: &str, host: &str| {
                hosts.iter().any(|(hns, name)| {
                    hns != "~" && (hns == "*" || hns == obj_ns) && host::matches(name, host)
                })
            };
            let services = visible
                .iter()
                .filter(|s| imports(&s.namespace, &s.hostname))
                .cloned()
                .collect();
            let virtual_services = visible_vs
                .iter()
                .filter(|v| v.spec.hosts.iter().any(|h| imports(&v.namespace, h)))
                .cloned()
                .collect();
            egress.push(EgressListener {
                port: l.port.clone(),
                bind: l.bind.clone(),
                capture_none: l.capture_mode == CaptureMode::None,
                services,
                virtual_services,
            });
        }
        SidecarScope {
            sidecar,
            egress,
            outbound_mode,
        }
    }

    /// The DestinationRule for a host as seen from a namespace: rules in the client's namespace
    /// first, then the service's, then the root namespace; rules of the chosen namespace for
    /// the same host are merged (first traffic policy wins, subsets are appended).
    pub fn destination_rule(
        &self,
        proxy: &Proxy,
        hostname: &str,
        service_namespace: &str,
    ) -> Option<MergedDestinationRule> {
        let client_ns = proxy.config_namespace.as_str();
        let candidates: Vec<&Arc<Cfg<DestinationRule>>> = self
            .destination_rules
            .iter()
            .filter(|d| {
                let h =
                    host::resolve_short_name(&d.spec.host, &d.namespace, &self.mesh.config_domain);
                host::matches(&h, hostname)
                    && Visibility::parse(d.spec.export_to.iter().map(String::as_str))
                        .visible_to(&d.namespace, client_ns)
                    && d.spec.workload_selector.as_ref().is_none_or(|sel| {
                        d.namespace == client_ns
                            && selector_matches(&sel.match_labels, &proxy.labels)
                    })
            })
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let pick_ns = [
            client_ns,
            service_namespace,
            self.mesh.root_namespace.as_str(),
        ]
        .into_iter()
        .find(|n| candidates.iter().any(|d| d.namespace == *n))
        .unwrap_or(candidates[0].namespace.as_str())
        .to_string();
        // Most specific host first (exact over wildcard), then Istio order.
        let mut chosen: Vec<&&Arc<Cfg<DestinationRule>>> = candidates
            .iter()
            .filter(|d| d.namespace == pick_ns)
            .collect();
        chosen.sort_by_key(|d| host::is_wildcard(&d.spec.host));
        let exact_host = chosen
            .first()
            .map(|d| d.spec.host.clone())
            .unwrap_or_default();
        let mut merged = MergedDestinationRule::default();
        for d in chosen.into_iter().filter(|d| d.spec.host == exact_host) {
            if merged.traffic_policy.is_none() {
                merged.traffic_policy = d.spec.traffic_policy.clone();
            }
            for s in &d.spec.subsets {
                if !merged.subsets.iter().any(|m| m.name == s.name) {
                    merged.subsets.push(s.clone());
                }
            }
            merged.sources.push(format!("{}/{}", d.namespace, d.name));
        }
        Some(merged)
    }

    /// The service ports this proxy serves: endpoints whose address is one of the proxy's IPs.
    pub fn proxy_targets(&self, proxy: &Proxy) -> Vec<ServiceTarget> {
        let mut out: Vec<ServiceTarget> = Vec::new();
        for svc in &self.services {
            if svc.resolution == Resolution::Alias {
                continue;
            }
            for ep in self.registry.endpoints(svc) {
                if !proxy.ip_addresses.contains(&ep.address) {
                    continue;
                }
                let Some(port) = svc.port(ep.service_port) else {
                    continue;
                };
                if out
                    .iter()
                    .any(|t| t.service.hostname == svc.hostname && t.port.port == port.port)
                {
                    continue;
                }
                out.push(ServiceTarget {
                    service: svc.clone(),
                    port: port.clone(),
                    target_port: ep.port,
                });
            }
        }
        out
    }

    /// The effective mTLS mode of a workload port (PeerAuthentication: workload over namespace
    /// over mesh; port-level settings of the workload policy win; PERMISSIVE by default).
    pub fn mtls_mode(&self, proxy: &Proxy, port: Option<u32>) -> MtlsMode {
        let (workload, namespace, mesh) = self.peer_authn_policies(proxy);
        if let (Some(w), Some(port)) = (workload, port)
            && let Some(m) = w.spec.port_level_mtls.get(&port.to_string())
            && let Some(mode) = convert_mode(m.mode)
        {
            return mode;
        }
        [workload, namespace, mesh]
            .into_iter()
            .flatten()
            .find_map(|p| convert_mode(p.spec.mtls.as_ref().and_then(|m| m.mode)))
            .unwrap_or(MtlsMode::Permissive)
    }

    /// Port numbers that the workload PeerAuthentication sets explicitly.
    pub fn mtls_port_overrides(&self, proxy: &Proxy) -> Vec<u32> {
        let (workload, _, _) = self.peer_authn_policies(proxy);
        workload
            .map(|w| {
                w.spec
                    .port_level_mtls
                    .iter()
                    .filter(|(_, m)| convert_mode(m.mode).is_some())
                    .filter_map(|(k, _)| k.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[allow(clippy::type_complexity)]
    fn peer_authn_policies(
        &self,
        proxy: &Proxy,
    ) -> (
        Option<&Arc<Cfg<PeerAuthentication>>>,
        Option<&Arc<Cfg<PeerAuthentication>>>,
        Option<&Arc<Cfg<PeerAuthentication>>>,
    ) {
        let ns = proxy.config_namespace.as_str();
        let has_selector = |p: &Cfg<PeerAuthentication>| {
            p.spec
                .selector
                .as_ref()
                .is_some_and(|s| !s.match_labels.is_empty())
        };
        let workload = self.peer_authentications.iter().find(|p| {
            p.namespace == ns
                && has_selector(p)
                && p.spec
                    .selector
                    .as_ref()
                    .is_some_and(|s| selector_matches(&s.match_labels, &proxy.labels))
        });
        let namespace = self
            .peer_authentications
            .iter()
            .find(|p| p.namespace == ns && !has_selector(p) && ns != self.mesh.root_namespace);
        let mesh = self
            .peer_authentications
            .iter()
            .find(|p| p.namespace == self.mesh.root_namespace && !has_selector(p));
        (workload, namespace, mesh)
    }

    /// Gateways that select this proxy by labels, in Istio order.
    pub fn gateways_for(&self, proxy: &Proxy) -> Vec<Arc<Cfg<Gateway>>> {
        self.gateways
            .iter()
            .filter(|g| selector_matches(&g.spec.selector, &proxy.labels))
            .cloned()
            .collect()
    }
}

fn sidecar_mode(mode: weft_config::networking::sidecar::OutboundTrafficPolicyMode) -> OutboundMode {
    use weft_config::networking::sidecar::OutboundTrafficPolicyMode as M;
    match mode {
        M::RegistryOnly => OutboundMode::RegistryOnly,
        M::AllowAny => OutboundMode::AllowAny,
    }
}

fn convert_mode(mode: Option<PaMode>) -> Option<MtlsMode> {
    match mode? {
        PaMode::Unset => None,
        PaMode::Disable => Some(MtlsMode::Disable),
        PaMode::Permissive => Some(MtlsMode::Permissive),
        PaMode::Strict => Some(MtlsMode::Strict),
    }
}

/// True when a VirtualService applies to sidecars (`gateways` empty or containing `mesh`).
pub fn is_mesh_bound(vs: &Cfg<VirtualService>) -> bool {
    vs.spec.gateways.is_empty() || vs.spec.gateways.iter().any(|g| g == "mesh")
}

/// The gateways a VirtualService is bound to, as `namespace/name` (plus `mesh`).
pub fn vs_gateways(vs: &Cfg<VirtualService>) -> Vec<String> {
    if vs.spec.gateways.is_empty() {
        return vec!["mesh".to_string()];
    }
    vs.spec
        .gateways
        .iter()
        .map(|g| resolve_gateway_name(g, &vs.namespace))
        .collect()
}

/// Resolves a gateway reference (`name`, `ns/name`, `mesh`) to `namespace/name`.
pub fn resolve_gateway_name(g: &str, namespace: &str) -> String {
    if g == "mesh" || g.contains('/') {
        g.to_string()
    } else {
        format!("{namespace}/{g}")
    }
}
