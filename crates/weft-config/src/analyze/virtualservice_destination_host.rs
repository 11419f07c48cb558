//! `virtualservice.DestinationHostAnalyzer`: every route and mirror destination of a
//! VirtualService names a host that exists (a Kubernetes Service or a ServiceEntry host visible
//! from the VirtualService's namespace), with a port that host exposes, and names the port when
//! the host exposes several. A subset-less destination on a gateway-bound VirtualService is
//! reported when another VirtualService splits the same host by subset (those subsets have no
//! effect on gateway traffic).

use std::collections::BTreeMap;

use super::messages::{
    INGRESS_ROUTE_RULES_NOT_AFFECTED, REFERENCED_RESOURCE_NOT_FOUND,
    VIRTUAL_SERVICE_DESTINATION_PORT_SELECTOR_REQUIRED,
};
use super::util::{
    EXPORT_TO_ALL, EXPORT_TO_LOCAL, full_name, namespaced_name, scoped_fqdn, split_scoped,
};
use super::{Analyzer, Arg, Context, Message};
use crate::networking::virtual_service::{Destination, VirtualService};
use crate::resource::{Kind, Resource, Spec};

/// Annotation restricting the visibility of a Kubernetes Service.
const EXPORT_TO_ANNOTATION: &str = "networking.istio.io/exportTo";

/// Checks the destination hosts associated with each VirtualService.
pub struct DestinationHostAnalyzer;

/// A destination of a VirtualService with where it sits.
pub(crate) struct AnnotatedDestination<'a> {
    /// `tcp`, `tls`, `http`, `http.mirror` or `http.mirrors`.
    pub rule: &'static str,
    /// Index of the rule.
    pub rule_index: usize,
    /// Index of the destination within the rule.
    pub dest_index: usize,
    /// The destination (`None` when a route entry has none).
    pub destination: Option<&'a Destination>,
}

impl AnnotatedDestination<'_> {
    /// The field path of the destination's host.
    pub fn path(&self) -> String {
        match self.rule {
            "http.mirror" => format!("spec.http[{}].mirror.host", self.rule_index),
            "http.mirrors" => format!(
                "spec.http[{}].mirrors[{}].destination.host",
                self.rule_index, self.dest_index
            ),
            r => format!(
                "spec.{r}[{}].route[{}].destination.host",
                self.rule_index, self.dest_index
            ),
        }
    }

    /// The destination host, `""` when there is no destination.
    pub fn host(&self) -> &str {
        self.destination.map_or("", |d| d.host.as_str())
    }
}

/// Istio's `getRouteDestinations`: TCP, then TLS, then HTTP route destinations.
pub(crate) fn route_destinations(vs: &VirtualService) -> Vec<AnnotatedDestination<'_>> {
    let mut out = Vec::new();
    for (i, r) in vs.tcp.iter().enumerate() {
        for (j, d) in r.route.iter().enumerate() {
            out.push(AnnotatedDestination {
                rule: "tcp",
                rule_index: i,
                dest_index: j,
                destination: d.destination.as_ref(),
            });
        }
    }
    for (i, r) in vs.tls.iter().enumerate() {
        for (j, d) in r.route.iter().enumerate() {
            out.push(AnnotatedDestination {
                rule: "tls",
                rule_index: i,
                dest_index: j,
                destination: d.destination.as_ref(),
            });
        }
    }
    for (i, r) in vs.http.iter().enumerate() {
        for (j, d) in r.route.iter().enumerate() {
            out.push(AnnotatedDestination {
                rule: "http",
                rule_index: i,
                dest_index: j,
                destination: d.destination.as_ref(),
            });
        }
    }
    out
}

/// Istio's `getHTTPMirrorDestinations`: `mirror` and `mirrors` of each HTTP rule.
pub(crate) fn mirror_destinations(vs: &VirtualService) -> Vec<AnnotatedDestination<'_>> {
    let mut out = Vec::new();
    for (i, r) in vs.http.iter().enumerate() {
        if let Some(m) = &r.mirror {
            out.push(AnnotatedDestination {
                rule: "http.mirror",
                rule_index: i,
                dest_index: 0,
                destination: Some(m),
            });
        }
        for (j, m) in r.mirrors.iter().enumerate() {
            out.push(AnnotatedDestination {
                rule: "http.mirrors",
                rule_index: i,
                dest_index: j,
                destination: m.destination.as_ref(),
            });
        }
    }
    out
}

/// Istio's `util.InitServiceEntryHostMap`: `scope/fqdn` -> the port numbers of the
/// ServiceEntry or Service that defines that host, for every scope it is visible in.
fn service_entry_hosts(ctx: &Context<'_>) -> BTreeMap<String, Vec<u32>> {
    let mut out = BTreeMap::new();
    for r in ctx.of_kind(Kind::ServiceEntry) {
        let Spec::ServiceEntry(se) = &r.spec else {
            continue;
        };
        let ns = r.namespace();
        let ports: Vec<u32> = se.ports.iter().map(|p| p.number).collect();
        let mut exports_to_all = false;
        for h in &se.hosts {
            if se.export_to.is_empty() || exports_to_all {
                out.insert(scoped_fqdn(EXPORT_TO_ALL, ns, h), ports.clone());
                continue;
            }
            for e in &se.export_to {
                let scope = match e.as_str() {
                    EXPORT_TO_ALL => {
                        exports_to_all = true;
                        EXPORT_TO_ALL
                    }
                    EXPORT_TO_LOCAL => ns,
                    other => other,
                };
                out.insert(scoped_fqdn(scope, ns, h), ports.clone());
                if exports_to_all {
                    break;
                }
            }
        }
    }
    for r in ctx.of_kind(Kind::Service) {
        let Spec::Service(svc) = &r.spec else {
            continue;
        };
        let ns = r.namespace();
        let ports: Vec<u32> = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .map(|p| p.port as u32)
            .collect();
        let scopes: Vec<String> = match r.metadata.annotations.get(EXPORT_TO_ANNOTATION) {
            None => vec![EXPORT_TO_ALL.to_string()],
            Some(a) if a.is_empty() => vec![EXPORT_TO_ALL.to_string()],
            Some(a) => a
                .split(',')
                .map(|s| {
                    if s == EXPORT_TO_LOCAL {
                        ns.to_string()
                    } else {
                        s.to_string()
                    }
                })
                .collect(),
        };
        for scope in scopes {
            out.insert(scoped_fqdn(&scope, ns, r.name()), ports.clone());
        }
    }
    out
}

/// Istio's `util.GetDestinationHost`: the ports of the service `host` resolves to from
/// `source_ns` (using the VirtualService's `exportTo` as the scopes to look in), if any.
fn destination_host<'m>(
    source_ns: &str,
    export_to: &[String],
    host: &str,
    hosts: &'m BTreeMap<String, Vec<u32>>,
) -> Option<&'m Vec<u32>> {
    if let Some(p) = hosts.get(&scoped_fqdn(EXPORT_TO_ALL, source_ns, host)) {
        return Some(p);
    }
    if export_to.is_empty() {
        if let Some(p) = hosts.get(&scoped_fqdn(source_ns, source_ns, host)) {
            return Some(p);
        }
    } else {
        for e in export_to {
            let scope = if e == EXPORT_TO_LOCAL {
                source_ns
            } else {
                e.as_str()
            };
            if let Some(p) = hosts.get(&scoped_fqdn(scope, source_ns, host)) {
                return Some(p);
            }
        }
    }
    let host_suffix = host.strip_prefix('*').unwrap_or(host);
    for (key, ports) in hosts {
        let (scope, se_host) = split_scoped(key);
        let Some(se_suffix) = se_host.strip_prefix('*') else {
            continue;
        };
        if scope != EXPORT_TO_ALL && scope != source_ns {
            continue;
        }
        if host_suffix.ends_with(se_suffix) {
            return Some(ports);
        }
    }
    None
}

fn check_ports(r: &Resource, d: &AnnotatedDestination<'_>, ports: &[u32], out: &mut Vec<Message>) {
    let Some(dest) = d.destination else {
        return;
    };
    match &dest.port {
        None => {
            if ports.len() > 1 {
                out.push(
                    Message::new(
                        &VIRTUAL_SERVICE_DESTINATION_PORT_SELECTOR_REQUIRED,
                        r,
                        vec![
                            dest.host.as_str().into(),
                            Arg::IntList(ports.iter().map(|p| i64::from(*p)).collect()),
                        ],
                    )
                    .at(d.path()),
                );
            }
        }
        Some(p) => {
            if !ports.contains(&p.number) {
                out.push(
                    Message::new(
                        &REFERENCED_RESOURCE_NOT_FOUND,
                        r,
                        vec![
                            "host:port".into(),
                            format!("{}:{}", dest.host, p.number).into(),
                        ],
                    )
                    .at(d.path()),
                );
            }
        }
    }
}

/// VirtualService -> its subset-qualified destinations whose host is one of its own hosts.
fn subset_destinations<'a>(ctx: &Context<'a>) -> BTreeMap<String, Vec<&'a Destination>> {
    let mut out: BTreeMap<String, Vec<&'a Destination>> = BTreeMap::new();
    for r in ctx.of_kind(Kind::VirtualService) {
        let Spec::VirtualService(vs) = &r.spec else {
            continue;
        };
        for http in &vs.http {
            for route in &http.route {
                let Some(d) = &route.destination else {
                    continue;
                };
                if d.subset.is_empty() {
                    continue;
                }
                for h in &vs.hosts {
                    if &d.host == h {
                        out.entry(full_name(r)).or_default().push(d);
                    }
                }
            }
        }
    }
    out
}

impl Analyzer for DestinationHostAnalyzer {
    fn name(&self) -> &'static str {
        "virtualservice.DestinationHostAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks the destination hosts associated with each virtual service"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        let hosts = service_entry_hosts(ctx);
        let with_subsets = subset_destinations(ctx);
        for r in ctx.of_kind(Kind::VirtualService) {
            let Spec::VirtualService(vs) = &r.spec else {
                continue;
            };
            let ns = r.namespace();
            for (reftype, dests) in [
                ("host", route_destinations(vs)),
                ("mirror host", mirror_destinations(vs)),
            ] {
                for d in &dests {
                    match destination_host(ns, &vs.export_to, d.host(), &hosts) {
                        None => out.push(
                            Message::new(
                                &REFERENCED_RESOURCE_NOT_FOUND,
                                r,
                                vec![reftype.into(), d.host().into()],
                            )
                            .at(d.path()),
                        ),
                        Some(ports) => check_ports(r, d, ports, out),
                    }
                }
            }

            // Subsets have no effect on requests arriving through a gateway.
            if vs.gateways.is_empty() {
                continue;
            }
            for (i, http) in vs.http.iter().enumerate() {
                for (j, route) in http.route.iter().enumerate() {
                    let Some(d) = &route.destination else {
                        continue;
                    };
                    if !d.subset.is_empty() {
                        continue;
                    }
                    for (other, dests) in &with_subsets {
                        for od in dests {
                            if od.host == d.host {
                                out.push(
                                    Message::new(
                                        &INGRESS_ROUTE_RULES_NOT_AFFECTED,
                                        r,
                                        vec![
                                            other.clone().into(),
                                            namespaced_name(ns, r.name()).into(),
                                        ],
                                    )
                                    .at(format!("spec.http[{i}].route[{j}].destination.host")),
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
