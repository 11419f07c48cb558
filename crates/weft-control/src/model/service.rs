//! The service registry: services, their ports and endpoints, built from Kubernetes Services
//! and EndpointSlices, ServiceEntries and WorkloadEntries, behind the [`ServiceDiscovery`] trait
//! so that a live Kubernetes source can slot in beside the in-memory one.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1 as k8s;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weft_config::networking::service_entry::{Location, Resolution as SeResolution};
use weft_config::{Resource, Spec};

use super::protocol::Protocol;
use super::visibility::Visibility;

/// How the endpoints of a service are found, as Istio's `model.Resolution`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resolution {
    /// Endpoints are sent by EDS and load-balanced by the proxy.
    ClientSideLb,
    /// The proxy resolves hostnames with DNS (STRICT_DNS).
    DnsLb,
    /// The proxy resolves one hostname and round-robins its answers (LOGICAL_DNS).
    DnsRoundRobin,
    /// Traffic goes to the original destination (headless services, resolution NONE).
    Passthrough,
    /// A Kubernetes ExternalName service: an alias of another service, with no config of its own.
    Alias,
    /// Hosts are resolved per request (dynamic forward proxy).
    DynamicDns,
}

/// Which registry a service came from; some of Istio's rules differ by source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegistryKind {
    /// A Kubernetes Service.
    Kubernetes,
    /// A ServiceEntry.
    External,
}

/// One port of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// Port name (may be empty).
    pub name: String,
    /// Port number clients use.
    pub port: u32,
    /// Inferred protocol.
    pub protocol: Protocol,
    /// Declared target port (0 when not declared).
    pub target_port: u32,
}

/// A locality (`region/zone/subzone`) of an endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Locality {
    /// Region.
    pub region: String,
    /// Zone.
    pub zone: String,
    /// Sub-zone.
    pub sub_zone: String,
}

impl Locality {
    /// Parses Istio's `region/zone/subzone` form (missing parts are empty).
    pub fn parse(s: &str) -> Locality {
        let mut it = s.split('/');
        Locality {
            region: it.next().unwrap_or("").to_string(),
            zone: it.next().unwrap_or("").to_string(),
            sub_zone: it.next().unwrap_or("").to_string(),
        }
    }
}

/// One endpoint of one service port.
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    /// IP address, hostname (DNS services) or `unix://` path.
    pub address: String,
    /// Port the workload listens on.
    pub port: u32,
    /// The service port this endpoint serves.
    pub service_port: u32,
    /// Workload labels (subsets select on them).
    pub labels: BTreeMap<String, String>,
    /// Locality, for locality-aware load balancing (and required by gRPC clients).
    pub locality: Locality,
    /// Network the endpoint is on (empty: the proxy's).
    pub network: String,
    /// Service account of the workload (its SPIFFE identity).
    pub service_account: String,
    /// Load-balancing weight (0 means unset).
    pub weight: u32,
    /// False when the workload is not ready.
    pub healthy: bool,
}

/// A service as the mesh sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    /// Fully qualified hostname (`reviews.default.svc.cluster.local`, `api.example.com`).
    pub hostname: String,
    /// Namespace of the Service or ServiceEntry.
    pub namespace: String,
    /// Virtual IPs or CIDRs; empty when the service has none.
    pub addresses: Vec<String>,
    /// Ports.
    pub ports: Vec<ServicePort>,
    /// Endpoint resolution.
    pub resolution: Resolution,
    /// Source registry.
    pub registry: RegistryKind,
    /// True for ServiceEntries with `location: MESH_EXTERNAL`.
    pub mesh_external: bool,
    /// Namespaces that can see the service.
    pub export_to: Visibility,
    /// Labels of the Service/ServiceEntry object.
    pub labels: BTreeMap<String, String>,
    /// Hostnames of ExternalName services that alias this one.
    pub aliases: Vec<String>,
    /// For an alias (`Resolution::Alias`): the hostname it points to.
    pub alias_target: Option<String>,
    /// Creation timestamp as written (RFC 3339), for Istio's oldest-first ordering.
    pub creation_timestamp: String,
}

/// The address a proxy connects to when it has no VIP.
pub const UNSPECIFIED_IP: &str = "0.0.0.0";

impl Service {
    /// The first address (VIP or CIDR), or `0.0.0.0` when the service has none.
    pub fn address(&self) -> &str {
        self.addresses
            .first()
            .map(String::as_str)
            .unwrap_or(UNSPECIFIED_IP)
    }

    /// The port with this number.
    pub fn port(&self, number: u32) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.port == number)
    }

    /// The short name (first label of the hostname).
    pub fn short_name(&self) -> &str {
        self.hostname.split('.').next().unwrap_or(&self.hostname)
    }
}

/// A service port of the proxy itself: what inbound listeners and clusters are built from.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceTarget {
    /// The service.
    pub service: Arc<Service>,
    /// The service port.
    pub port: ServicePort,
    /// The port the workload listens on.
    pub target_port: u32,
}

/// A source of services and endpoints. The in-memory [`Registry`] is built from parsed
/// resources; a live Kubernetes source implements the same trait.
pub trait ServiceDiscovery: Send + Sync {
    /// Every service, in a stable order.
    fn services(&self) -> Vec<Arc<Service>>;
    /// The endpoints of a service (all ports).
    fn endpoints(&self, service: &Service) -> Vec<Endpoint>;
}

/// In-memory registry built from Kubernetes Services, EndpointSlices, Pods, ServiceEntries and
/// WorkloadEntries.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    services: Vec<Arc<Service>>,
    /// Endpoints by (hostname, namespace).
    endpoints: BTreeMap<(String, String), Vec<Endpoint>>,
}

impl ServiceDiscovery for Registry {
    fn services(&self) -> Vec<Arc<Service>> {
        self.services.clone()
    }

    fn endpoints(&self, service: &Service) -> Vec<Endpoint> {
        self.endpoints
            .get(&(service.hostname.clone(), service.namespace.clone()))
            .cloned()
            .unwrap_or_default()
    }
}

struct PodInfo {
    ip: String,
    namespace: String,
    labels: BTreeMap<String, String>,
    service_account: String,
    ready: bool,
}

impl Registry {
    /// Builds the registry from resources. `domain` is the cluster's DNS suffix
    /// (`cluster.local`) used for Kubernetes service hostnames.
    pub fn from_resources(resources: &[Resource], domain: &str) -> Registry {
        let mut reg = Registry::default();
        let pods: Vec<PodInfo> = resources.iter().filter_map(pod_info).collect();
        let workload_entries: Vec<&Resource> = resources
            .iter()
            .filter(|r| matches!(r.spec, Spec::WorkloadEntry(_)))
            .collect();
        for r in resources {
            match &r.spec {
                Spec::Service(svc) => reg.add_kubernetes_service(
                    r,
                    svc,
                    resources,
                    (&pods, &workload_entries),
                    domain,
                ),
                Spec::ServiceEntry(se) => reg.add_service_entry(r, se, &workload_entries, &pods),
                _ => {}
            }
        }
        // ExternalName aliases: record them on their targets.
        let aliases: Vec<(String, String)> = reg
            .services
            .iter()
            .filter_map(|s| s.alias_target.clone().map(|t| (t, s.hostname.clone())))
            .collect();
        for (target, alias) in aliases {
            for s in reg.services.iter_mut() {
                if s.hostname == target && s.resolution != Resolution::Alias {
                    Arc::make_mut(s).aliases.push(alias.clone());
                }
            }
        }
        reg.services.sort_by(|a, b| {
            (&a.creation_timestamp, &a.hostname, &a.namespace).cmp(&(
                &b.creation_timestamp,
                &b.hostname,
                &b.namespace,
            ))
        });
        reg
    }

    fn add_kubernetes_service(
        &mut self,
        r: &Resource,
        svc: &k8s::Service,
        resources: &[Resource],
        (pods, workload_entries): (&[PodInfo], &[&Resource]),
        domain: &str,
    ) {
        let ns = r.namespace().to_string();
        let name = r.name().to_string();
        let hostname = format!("{name}.{ns}.svc.{domain}");
        let Some(spec) = svc.spec.as_ref() else {
            return;
        };
        let export_to = r
            .metadata
            .annotations
            .get("networking.istio.io/exportTo")
            .map(|v| Visibility::parse(v.split(',').map(str::trim)))
            .unwrap_or_default();
        let mut ports = Vec::new();
        for p in spec.ports.iter().flatten() {
            let pname = p.name.clone().unwrap_or_default();
            let target_port = match &p.target_port {
                Some(IntOrString::Int(i)) => u32::try_from(*i).unwrap_or(0),
                _ => 0,
            };
            ports.push(ServicePort {
                protocol: Protocol::from_kubernetes(
                    &pname,
                    p.app_protocol.as_deref(),
                    p.protocol.as_deref(),
                ),
                name: pname,
                port: u32::try_from(p.port).unwrap_or(0),
                target_port,
            });
        }
        let cluster_ip = spec.cluster_ip.clone().unwrap_or_default();
        let (resolution, addresses, alias_target) = if spec.type_.as_deref() == Some("ExternalName")
        {
            (Resolution::Alias, Vec::new(), spec.external_name.clone())
        } else if cluster_ip == "None" || cluster_ip.is_empty() {
            (Resolution::Passthrough, Vec::new(), None)
        } else {
            (Resolution::ClientSideLb, vec![cluster_ip], None)
        };
        let service = Service {
            hostname: hostname.clone(),
            namespace: ns.clone(),
            addresses,
            ports: ports.clone(),
            resolution,
            registry: RegistryKind::Kubernetes,
            mesh_external: false,
            export_to,
            labels: r.metadata.labels.clone(),
            aliases: Vec::new(),
            alias_target,
            creation_timestamp: r.metadata.creation_timestamp.clone().unwrap_or_default(),
        };
        // Endpoints: EndpointSlices of the service, else pods selected by the selector.
        let mut eps = Vec::new();
        let mut have_slices = false;
        for es in resources.iter().filter(|x| x.namespace() == ns) {
            let Spec::EndpointSlice(slice) = &es.spec else {
                continue;
            };
            if es.metadata.labels.get("kubernetes.io/service-name") != Some(&name) {
                continue;
            }
            have_slices = true;
            for ep in &slice.endpoints {
                let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                for addr in &ep.addresses {
                    let pod = pods.iter().find(|p| &p.ip == addr && p.namespace == ns);
                    for sp in slice.ports.iter().flatten() {
                        let sname = sp.name.clone().unwrap_or_default();
                        let Some(svc_port) = ports.iter().find(|p| p.name == sname) else {
                            continue;
                        };
                        let target = sp
                            .port
                            .and_then(|p| u32::try_from(p).ok())
                            .unwrap_or(svc_port.port);
                        eps.push(Endpoint {
                            address: addr.clone(),
                            port: target,
                            service_port: svc_port.port,
                            labels: pod.map(|p| p.labels.clone()).unwrap_or_default(),
                            locality: Locality {
                                zone: ep.zone.clone().unwrap_or_default(),
                                ..Default::default()
                            },
                            network: String::new(),
                            service_account: pod
                                .map(|p| p.service_account.clone())
                                .unwrap_or_default(),
                            weight: 0,
                            healthy: ready,
                        });
                    }
                }
            }
        }
        if !have_slices && let Some(selector) = spec.selector.as_ref() {
            let selector: BTreeMap<String, String> = selector.clone().into_iter().collect();
            if !selector.is_empty() {
                for pod in pods.iter().filter(|p| {
                    p.namespace == ns && weft_config::meta::selector_matches(&selector, &p.labels)
                }) {
                    for sp in &ports {
                        eps.push(Endpoint {
                            address: pod.ip.clone(),
                            port: if sp.target_port != 0 {
                                sp.target_port
                            } else {
                                sp.port
                            },
                            service_port: sp.port,
                            labels: pod.labels.clone(),
                            locality: Locality::default(),
                            network: String::new(),
                            service_account: pod.service_account.clone(),
                            weight: 0,
                            healthy: pod.ready,
                        });
                    }
                }
                // WorkloadEntries in the namespace are selected too, as Istio does
                // (PILOT_ENABLE_K8S_SELECT_WORKLOAD_ENTRIES, on by default): a VM or a loopback
                // workload joins a Kubernetes Service by its labels.
                for wr in workload_entries.iter().filter(|w| w.namespace() == ns) {
                    let Spec::WorkloadEntry(we) = &wr.spec else {
                        continue;
                    };
                    let mut labels = wr.metadata.labels.clone();
                    labels.extend(we.labels.clone());
                    if !weft_config::meta::selector_matches(&selector, &labels) {
                        continue;
                    }
                    for sp in &ports {
                        let target =
                            we.ports
                                .get(&sp.name)
                                .copied()
                                .unwrap_or(if sp.target_port != 0 {
                                    sp.target_port
                                } else {
                                    sp.port
                                });
                        eps.push(Endpoint {
                            address: we.address.clone(),
                            port: target,
                            service_port: sp.port,
                            labels: labels.clone(),
                            locality: Locality::parse(&we.locality),
                            network: we.network.clone(),
                            service_account: we.service_account.clone(),
                            weight: we.weight,
                            healthy: true,
                        });
                    }
                }
            }
        }
        self.endpoints.insert((hostname, ns), eps);
        self.services.push(Arc::new(service));
    }

    fn add_service_entry(
        &mut self,
        r: &Resource,
        se: &weft_config::networking::ServiceEntry,
        workload_entries: &[&Resource],
        pods: &[PodInfo],
    ) {
        let ns = r.namespace().to_string();
        let resolution = match se.resolution {
            SeResolution::None => Resolution::Passthrough,
            SeResolution::Static => Resolution::ClientSideLb,
            SeResolution::Dns => Resolution::DnsLb,
            SeResolution::DnsRoundRobin => Resolution::DnsRoundRobin,
            SeResolution::DynamicDns => Resolution::DynamicDns,
        };
        let ports: Vec<ServicePort> = se
            .ports
            .iter()
            .map(|p| ServicePort {
                name: p.name.clone(),
                port: p.number,
                protocol: Protocol::parse(&p.protocol),
                target_port: p.target_port,
            })
            .collect();
        let export_to = Visibility::parse(se.export_to.iter().map(String::as_str));
        for host in &se.hosts {
            let mut eps = Vec::new();
            let mut push_entry = |address: &str,
                                  named_ports: &BTreeMap<String, u32>,
                                  labels: &BTreeMap<String, String>,
                                  locality: &str,
                                  network: &str,
                                  sa: &str,
                                  weight: u32| {
                for p in &ports {
                    let target =
                        named_ports
                            .get(&p.name)
                            .copied()
                            .unwrap_or(if p.target_port != 0 {
                                p.target_port
                            } else {
                                p.port
                            });
                    eps.push(Endpoint {
                        address: address.to_string(),
                        port: target,
                        service_port: p.port,
                        labels: labels.clone(),
                        locality: Locality::parse(locality),
                        network: network.to_string(),
                        service_account: sa.to_string(),
                        weight,
                        healthy: true,
                    });
                }
            };
            for we in &se.endpoints {
                push_entry(
                    &we.address,
                    &we.ports,
                    &we.labels,
                    &we.locality,
                    &we.network,
                    &we.service_account,
                    we.weight,
                );
            }
            if let Some(sel) = &se.workload_selector {
                for wr in workload_entries.iter().filter(|w| w.namespace() == ns) {
                    let Spec::WorkloadEntry(we) = &wr.spec else {
                        continue;
                    };
                    let mut labels = wr.metadata.labels.clone();
                    labels.extend(we.labels.clone());
                    if weft_config::meta::selector_matches(&sel.labels, &labels) {
                        push_entry(
                            &we.address,
                            &we.ports,
                            &labels,
                            &we.locality,
                            &we.network,
                            &we.service_account,
                            we.weight,
                        );
                    }
                }
                for pod in pods.iter().filter(|p| {
                    p.namespace == ns && weft_config::meta::selector_matches(&sel.labels, &p.labels)
                }) {
                    push_entry(
                        &pod.ip,
                        &BTreeMap::new(),
                        &pod.labels,
                        "",
                        "",
                        &pod.service_account,
                        0,
                    );
                }
            }
            if se.endpoints.is_empty()
                && se.workload_selector.is_none()
                && matches!(resolution, Resolution::DnsLb | Resolution::DnsRoundRobin)
            {
                // DNS services without endpoints resolve their own hostname.
                push_entry(host, &BTreeMap::new(), &BTreeMap::new(), "", "", "", 0);
            }
            self.endpoints.insert((host.clone(), ns.clone()), eps);
            self.services.push(Arc::new(Service {
                hostname: host.clone(),
                namespace: ns.clone(),
                addresses: se.addresses.clone(),
                ports: ports.clone(),
                resolution,
                registry: RegistryKind::External,
                mesh_external: se.location == Location::MeshExternal,
                export_to: export_to.clone(),
                labels: r.metadata.labels.clone(),
                aliases: Vec::new(),
                alias_target: None,
                creation_timestamp: r.metadata.creation_timestamp.clone().unwrap_or_default(),
            }));
        }
    }
}

fn pod_info(r: &Resource) -> Option<PodInfo> {
    let Spec::Pod(pod) = &r.spec else {
        return None;
    };
    let status = pod.status.as_ref()?;
    let ip = status.pod_ip.clone()?;
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status == "True")
        .unwrap_or(true);
    Some(PodInfo {
        ip,
        namespace: r.namespace().to_string(),
        labels: r.metadata.labels.clone(),
        service_account: pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".to_string()),
        ready,
    })
}

#[cfg(test)]
mod tests {
    use crate::model::{Environment, MeshSettings};

    #[test]
    fn kubernetes_service_selects_workload_entries() {
        let yaml = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  clusterIP: 10.0.0.9
  selector: {app: reviews}
  ports: [{name: http, port: 9080, targetPort: 8080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: default}
spec:
  address: 127.0.1.3
  labels: {app: reviews, version: v1}
  serviceAccount: bookinfo-reviews
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-vm, namespace: default}
spec:
  address: 10.1.1.1
  ports: {http: 9999}
  labels: {app: reviews, version: v2}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: elsewhere, namespace: other}
spec:
  address: 10.2.2.2
  labels: {app: reviews}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings, namespace: default}
spec:
  address: 10.3.3.3
  labels: {app: ratings}
"#;
        let parsed = weft_config::parse_str(yaml, "t.yaml");
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        let env = Environment::from_resources(&parsed.resources, MeshSettings::default());
        let svc = env
            .service_for_host("reviews.default.svc.cluster.local", "default")
            .expect("reviews");
        let mut eps: Vec<(String, u32, String)> = env
            .registry
            .endpoints(&svc)
            .into_iter()
            .map(|e| (e.address, e.port, e.service_account))
            .collect();
        eps.sort();
        assert_eq!(
            eps,
            vec![
                ("10.1.1.1".to_string(), 9999, String::new()),
                (
                    "127.0.1.3".to_string(),
                    8080,
                    "bookinfo-reviews".to_string()
                ),
            ],
            "same-namespace entries matching the selector, with their named port overrides"
        );
    }
}
