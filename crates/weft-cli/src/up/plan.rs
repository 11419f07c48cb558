//! Where everything goes in loopback mode: one loopback address per workload for its inbound
//! listeners (the WorkloadEntry address), a second one for its outbound listeners (Sidecar
//! `egress[].bind`, `captureMode: NONE`), a free port for each app port and proxy admin, and the
//! registry and Sidecar resources that tell the control plane so.
//!
//! Workload `i` (from 1) gets `127.0.1.i` (inbound) and `127.0.2.i` (outbound); an address whose
//! service ports are taken on this machine (another mesh running) is skipped.
//!
//! In namespaces mode ([`super::netns`]) the workload has its own address and its app listens on
//! the service ports; calls are captured, so no Sidecar is generated, and services get virtual
//! IPs that the namespaces' hosts files name.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use serde::{Deserialize, Serialize};

use super::netns;
use super::spec::{MeshSpec, WorkloadSpec};

/// How workloads are wired to their sidecars.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Loopback addresses and ports, no capture (any user).
    Loopback,
    /// A network namespace per workload with iptables capture (root on Linux).
    Namespaces,
}

/// Label on every generated WorkloadEntry and proxy: the workload's name, selected by its
/// generated Sidecar.
pub const WORKLOAD_LABEL: &str = "weft.io/workload";
/// Label selecting a service's workloads in its generated ServiceEntry.
pub const SERVICE_LABEL: &str = "weft.io/service";
/// The file in the config directory that holds the generated resources.
pub const GENERATED_FILE: &str = "weft-up-workloads.yaml";

/// A workload with its addresses and ports.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadPlan {
    /// The workload's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Short service name.
    pub service: String,
    /// Labels, with the generated ones.
    pub labels: BTreeMap<String, String>,
    /// Service account.
    pub service_account: String,
    /// Where its sidecar accepts inbound calls (the WorkloadEntry address).
    pub ip: Ipv4Addr,
    /// Where its sidecar listens for the app's outbound calls.
    pub outbound_ip: Ipv4Addr,
    /// Port name to (service port, protocol, app port on 127.0.0.1).
    pub ports: Vec<PlannedPort>,
    /// The proxy's admin port.
    pub proxy_admin_port: u16,
    /// Where the proxy's admin listener is reached from the host.
    pub admin_ip: Ipv4Addr,
    /// The workload's network namespace (namespaces mode).
    pub netns: Option<String>,
    /// The app's command line, placeholders expanded (first word not yet resolved).
    pub command: Vec<String>,
    /// The app's extra environment, placeholders expanded.
    pub env: BTreeMap<String, String>,
}

/// One port of a workload.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlannedPort {
    /// Port name.
    pub name: String,
    /// Service port (and the sidecar's inbound port on the workload address).
    pub number: u16,
    /// Istio protocol.
    pub protocol: String,
    /// Where the app listens (on 127.0.0.1 in loopback mode; the service port, on every
    /// address, in namespaces mode).
    pub app_port: u16,
}

/// A gateway with its admin port.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayPlan {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The proxy's admin port.
    pub proxy_admin_port: u16,
}

impl WorkloadPlan {
    /// Istio's node id of the workload's sidecar.
    pub fn node_id(&self) -> String {
        format!(
            "sidecar~{}~{}.{}~{}.svc.cluster.local",
            self.ip, self.name, self.namespace, self.namespace
        )
    }
}

impl GatewayPlan {
    /// Istio's node id of the gateway.
    pub fn node_id(&self) -> String {
        format!(
            "router~127.0.0.1~{}.{}~{}.svc.cluster.local",
            self.name, self.namespace, self.namespace
        )
    }
}

/// Why addresses could not be assigned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// No free port.
    #[error("cannot find a free port on 127.0.0.1: {0}")]
    NoPort(std::io::Error),
    /// Every candidate address was busy.
    #[error(
        "no free loopback address for workload {0}: 127.0.1.1-254 all have a service port taken"
    )]
    NoAddress(String),
    /// Too many workloads for one /24.
    #[error("{0} workloads: loopback mode supports at most 254")]
    TooMany(usize),
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> Result<u16, PlanError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(PlanError::NoPort)
}

/// Whether `addr` can be listened on now.
pub fn is_free(addr: SocketAddr) -> bool {
    TcpListener::bind(addr).is_ok()
}

fn addresses_free(ip: Ipv4Addr, ports: &[u16]) -> bool {
    ports.iter().all(|p| is_free(SocketAddr::from((ip, *p))))
}

/// Assigns addresses and ports to every workload and gateway of `spec`.
pub fn plan(
    spec: &MeshSpec,
    mode: Mode,
) -> Result<(Vec<WorkloadPlan>, Vec<GatewayPlan>), PlanError> {
    if spec.workloads.len() > 250 {
        return Err(PlanError::TooMany(spec.workloads.len()));
    }
    let services = service_names(spec);
    if mode == Mode::Namespaces {
        let mut workloads = Vec::new();
        for (i, w) in spec.workloads.iter().enumerate() {
            let index = u8::try_from(i + 1).map_err(|_| PlanError::TooMany(i + 1))?;
            let ip = netns::workload_ip(index);
            let mut p = plan_workload(spec, w, ip, ip, &services, mode)?;
            p.proxy_admin_port = 15000;
            p.admin_ip = ip;
            p.netns = Some(netns::namespace_name(&w.name));
            workloads.push(p);
        }
        let gateways = plan_gateways(spec)?;
        return Ok((workloads, gateways));
    }
    // Every service port: an outbound address must have them all free.
    let mut all_ports: Vec<u16> = spec
        .workloads
        .iter()
        .flat_map(|w| w.ports.iter().map(|p| p.number))
        .collect();
    all_ports.sort_unstable();
    all_ports.dedup();
    let mut workloads = Vec::new();
    let mut next: u8 = 1;
    for w in &spec.workloads {
        let own: Vec<u16> = w.ports.iter().map(|p| p.number).collect();
        let index = loop {
            if next == 255 {
                return Err(PlanError::NoAddress(w.name.clone()));
            }
            let i = next;
            next += 1;
            if addresses_free(Ipv4Addr::new(127, 0, 1, i), &own)
                && addresses_free(Ipv4Addr::new(127, 0, 2, i), &all_ports)
            {
                break i;
            }
        };
        workloads.push(plan_workload(
            spec,
            w,
            Ipv4Addr::new(127, 0, 1, index),
            Ipv4Addr::new(127, 0, 2, index),
            &services,
            mode,
        )?);
    }
    Ok((workloads, plan_gateways(spec)?))
}

fn plan_gateways(spec: &MeshSpec) -> Result<Vec<GatewayPlan>, PlanError> {
    let mut gateways = Vec::new();
    for g in &spec.gateways {
        gateways.push(GatewayPlan {
            name: g.name.clone(),
            namespace: g.namespace.clone(),
            labels: g.labels.clone(),
            proxy_admin_port: free_port()?,
        });
    }
    Ok(gateways)
}

/// The distinct services, in order of first mention: `(namespace, name)`.
fn service_names(spec: &MeshSpec) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for w in &spec.workloads {
        let key = (spec.namespace_of(w).to_string(), w.service.clone());
        if !out.contains(&key) {
            out.push(key);
        }
    }
    out
}

/// The `/etc/hosts` of a workload namespace: each service's virtual IP under its names.
pub fn hosts_file(spec: &MeshSpec) -> String {
    let mut out = String::from("127.0.0.1 localhost\n::1 localhost\n");
    for (i, (ns, svc)) in service_names(spec).iter().enumerate() {
        let vip = netns::service_ip(u8::try_from(i + 1).unwrap_or(u8::MAX));
        let _ = writeln!(
            out,
            "{vip} {svc} {svc}.{ns} {svc}.{ns}.svc {svc}.{ns}.svc.cluster.local"
        );
    }
    out
}

fn plan_workload(
    spec: &MeshSpec,
    w: &WorkloadSpec,
    ip: Ipv4Addr,
    outbound_ip: Ipv4Addr,
    services: &[(String, String)],
    mode: Mode,
) -> Result<WorkloadPlan, PlanError> {
    let namespace = spec.namespace_of(w).to_string();
    let mut ports = Vec::new();
    for p in &w.ports {
        ports.push(PlannedPort {
            name: p.name.clone(),
            number: p.number,
            protocol: p.protocol(),
            app_port: match mode {
                Mode::Loopback => free_port()?,
                Mode::Namespaces => p.number,
            },
        });
    }
    let mut labels = w.labels.clone();
    labels.insert(WORKLOAD_LABEL.to_string(), w.name.clone());
    labels.insert(SERVICE_LABEL.to_string(), w.service.clone());
    let mut plan = WorkloadPlan {
        name: w.name.clone(),
        namespace,
        service: w.service.clone(),
        labels,
        service_account: w
            .service_account
            .clone()
            .unwrap_or_else(|| "default".to_string()),
        ip,
        outbound_ip,
        ports,
        proxy_admin_port: free_port()?,
        admin_ip: Ipv4Addr::LOCALHOST,
        netns: None,
        command: Vec::new(),
        env: BTreeMap::new(),
    };
    let names: Vec<&str> = services
        .iter()
        .filter(|(ns, _)| *ns == plan.namespace)
        .map(|(_, s)| s.as_str())
        .collect();
    plan.command = w
        .command
        .iter()
        .map(|a| expand(a, &plan, mode, &names))
        .collect();
    plan.env = w
        .env
        .iter()
        .map(|(k, v)| (k.clone(), expand(v, &plan, mode, &names)))
        .collect();
    Ok(plan)
}

/// Replaces the placeholders of [`super::spec`] in `s`; `services` are the service names of the
/// workload's namespace (for `{svc.NAME}`).
pub fn expand(s: &str, w: &WorkloadPlan, mode: Mode, services: &[&str]) -> String {
    let mut out = s.to_string();
    if let Some(first) = w.ports.first() {
        let host = match mode {
            Mode::Loopback => "127.0.0.1",
            Mode::Namespaces => "0.0.0.0",
        };
        out = out
            .replace("{app}", &format!("{host}:{}", first.app_port))
            .replace("{app_port}", &first.app_port.to_string());
    }
    for svc in services {
        let to = match mode {
            Mode::Loopback => w.outbound_ip.to_string(),
            Mode::Namespaces => svc.to_string(),
        };
        out = out.replace(&format!("{{svc.{svc}}}"), &to);
    }
    for p in &w.ports {
        out = out.replace(&format!("{{app_port.{}}}", p.name), &p.app_port.to_string());
    }
    out.replace("{outbound}", &w.outbound_ip.to_string())
        .replace("{ip}", &w.ip.to_string())
        .replace("{name}", &w.name)
        .replace("{namespace}", &w.namespace)
}

fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

fn yaml_labels(labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{}: {}", yaml_str(k), yaml_str(v)))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

/// The registry and Sidecar resources of the workloads: a ServiceEntry per service (selecting
/// its WorkloadEntries), a WorkloadEntry per workload, and a Sidecar per workload that binds
/// its inbound listeners on the workload address and its outbound listeners on the outbound
/// address, without traffic capture.
pub fn generated_config(workloads: &[WorkloadPlan], mode: Mode) -> String {
    let mut out = String::from(
        "# Generated by `weft up`: the workloads it runs, as Istio resources. Rewritten at each start.\n",
    );
    // Services: the union of their workloads' ports.
    let mut services: BTreeMap<(String, String), BTreeMap<u16, (String, String)>> = BTreeMap::new();
    for w in workloads {
        let ports = services
            .entry((w.namespace.clone(), w.service.clone()))
            .or_default();
        for p in &w.ports {
            ports
                .entry(p.number)
                .or_insert((p.name.clone(), p.protocol.clone()));
        }
    }
    // Virtual IPs in the order hosts_file gives them.
    let mut order: Vec<(String, String)> = Vec::new();
    for w in workloads {
        let key = (w.namespace.clone(), w.service.clone());
        if !order.contains(&key) {
            order.push(key);
        }
    }
    for ((ns, svc), ports) in &services {
        let addresses = match mode {
            Mode::Loopback => String::new(),
            Mode::Namespaces => {
                let i = order
                    .iter()
                    .position(|k| k.0 == *ns && k.1 == *svc)
                    .unwrap_or(0);
                format!(
                    "\n  addresses: [{}]",
                    netns::service_ip(u8::try_from(i + 1).unwrap_or(u8::MAX))
                )
            }
        };
        let _ = writeln!(
            out,
            "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {svc}\n  namespace: {ns}\nspec:\n  hosts: [{svc}.{ns}.svc.cluster.local]{addresses}\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports:"
        );
        for (number, (name, protocol)) in ports {
            let _ = writeln!(
                out,
                "  - {{number: {number}, name: {}, protocol: {protocol}}}",
                yaml_str(name)
            );
        }
        let _ = writeln!(
            out,
            "  workloadSelector:\n    labels: {{{SERVICE_LABEL}: {svc}}}"
        );
    }
    for w in workloads {
        let ports: Vec<String> = w
            .ports
            .iter()
            .map(|p| format!("{}: {}", yaml_str(&p.name), p.number))
            .collect();
        let _ = writeln!(
            out,
            "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  address: {ip}\n  labels: {labels}\n  serviceAccount: {sa}\n  ports: {{{ports}}}",
            name = w.name,
            ns = w.namespace,
            ip = w.ip,
            labels = yaml_labels(&w.labels),
            sa = yaml_str(&w.service_account),
            ports = ports.join(", "),
        );
        if mode == Mode::Namespaces {
            continue;
        }
        let _ = writeln!(
            out,
            "---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  workloadSelector:\n    labels: {{{WORKLOAD_LABEL}: {name}}}\n  ingress:",
            name = w.name,
            ns = w.namespace,
        );
        for p in &w.ports {
            let _ = writeln!(
                out,
                "  - port: {{number: {}, protocol: {}, name: {}}}\n    bind: {}\n    captureMode: NONE\n    defaultEndpoint: 127.0.0.1:{}",
                p.number,
                p.protocol,
                yaml_str(&p.name),
                w.ip,
                p.app_port
            );
        }
        let _ = writeln!(
            out,
            "  egress:\n  - bind: {}\n    captureMode: NONE\n    hosts: [\"*/*\"]",
            w.outbound_ip
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::up::spec::BOOKINFO;

    #[test]
    fn bookinfo_plan_and_config_validate() {
        let spec = MeshSpec::parse(BOOKINFO, "bookinfo").expect("valid");
        let (w, g) = plan(&spec, Mode::Loopback).expect("plan");
        assert_eq!(w.len(), 6);
        assert_eq!(g.len(), 1);
        let pp = w
            .iter()
            .find(|w| w.name == "productpage-v1")
            .expect("productpage");
        assert!(
            pp.command
                .contains(&format!("http://{}:9080", pp.outbound_ip))
        );
        assert!(
            pp.command
                .contains(&format!("127.0.0.1:{}", pp.ports[0].app_port))
        );
        assert_eq!(
            pp.node_id(),
            format!(
                "sidecar~{}~productpage-v1.default~default.svc.cluster.local",
                pp.ip
            )
        );
        // Distinct addresses and ports.
        let mut ips: Vec<_> = w.iter().map(|w| w.ip).collect();
        ips.dedup();
        assert_eq!(ips.len(), 6);
        let text = generated_config(&w, Mode::Loopback);
        let parsed = weft_config::parse_str(&text, GENERATED_FILE);
        assert!(
            parsed.diagnostics.is_empty(),
            "{:?}\n{text}",
            parsed.diagnostics
        );
        // 4 ServiceEntries, 6 WorkloadEntries, 6 Sidecars, all valid by Istio's rules.
        assert_eq!(parsed.resources.len(), 16);
        for r in &parsed.resources {
            let report = weft_config::validate::validate_resource(r);
            assert!(
                report
                    .iter()
                    .all(|d| d.severity != weft_config::Severity::Error),
                "{report:?}"
            );
        }
    }

    #[test]
    fn placeholders() {
        let w = WorkloadPlan {
            name: "a".into(),
            namespace: "ns".into(),
            service: "s".into(),
            labels: BTreeMap::new(),
            service_account: "default".into(),
            ip: Ipv4Addr::new(127, 0, 1, 3),
            outbound_ip: Ipv4Addr::new(127, 0, 2, 3),
            ports: vec![
                PlannedPort {
                    name: "http".into(),
                    number: 80,
                    protocol: "HTTP".into(),
                    app_port: 1234,
                },
                PlannedPort {
                    name: "grpc".into(),
                    number: 90,
                    protocol: "GRPC".into(),
                    app_port: 1235,
                },
            ],
            proxy_admin_port: 1,
            admin_ip: Ipv4Addr::LOCALHOST,
            netns: None,
            command: vec![],
            env: BTreeMap::new(),
        };
        assert_eq!(
            expand(
                "{app} {app_port} {app_port.grpc} {outbound} {ip} {name}.{namespace} {svc.b}",
                &w,
                Mode::Loopback,
                &["b"]
            ),
            "127.0.0.1:1234 1234 1235 127.0.2.3 127.0.1.3 a.ns 127.0.2.3"
        );
        assert_eq!(
            expand("{app} http://{svc.b}:80", &w, Mode::Namespaces, &["b"]),
            "0.0.0.0:1234 http://b:80"
        );
    }

    #[test]
    fn namespaces_plan() {
        let spec = MeshSpec::parse(BOOKINFO, "bookinfo").expect("valid");
        let (w, _) = plan(&spec, Mode::Namespaces).expect("plan");
        let pp = w.iter().find(|w| w.name == "productpage-v1").expect("pp");
        assert_eq!(pp.ip, Ipv4Addr::new(10, 77, 0, 7));
        assert_eq!(pp.netns.as_deref(), Some("weft-productpage-v1"));
        assert!(
            pp.command.contains(&"http://details:9080".to_string()),
            "{:?}",
            pp.command
        );
        assert!(
            pp.command.contains(&"0.0.0.0:9080".to_string()),
            "{:?}",
            pp.command
        );
        let text = generated_config(&w, Mode::Namespaces);
        let parsed = weft_config::parse_str(&text, GENERATED_FILE);
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        // 4 ServiceEntries with virtual IPs, 6 WorkloadEntries, no Sidecar.
        assert_eq!(parsed.resources.len(), 10);
        assert!(text.contains("addresses: [10.78.0.1]"), "{text}");
        let hosts = hosts_file(&spec);
        assert!(
            hosts.contains("10.78.0.1 details details.default"),
            "{hosts}"
        );
    }
}
