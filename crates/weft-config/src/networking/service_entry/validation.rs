//! ServiceEntry validation: the CRD schema and CEL rules, and Istio's `ValidateServiceEntry`.

use std::collections::BTreeSet;

use super::*;
use crate::networking::workload::validation::{
    UNIX_ADDRESS_PREFIX, validate_entry_istio, validate_entry_schema,
};
use crate::validate::addresses::{is_valid_ip, validate_ip_subnet};
use crate::validate::hosts::{validate_fqdn, validate_partial_wildcard, validate_wildcard_domain};
use crate::validate::labels::{report_labels, validate_labels_selector};
use crate::validate::messages::required;
use crate::validate::policy::{report_export_to, validate_export_to};
use crate::validate::ports::{Protocol, validate_port_crd, validate_port_name, validate_protocol};
use crate::validate::{Context, Path, Report, Validate};

impl Validate for ServiceEntry {
    fn validate(&self, ctx: &Context<'_>, path: &Path, report: &mut Report) {
        if let Some(sel) = &self.workload_selector {
            validate_labels_selector(
                &sel.labels,
                &path.field("workloadSelector"),
                report,
                "service entry",
            );
            if !self.endpoints.is_empty() {
                report.error(
                    path,
                    "only one of WorkloadSelector or Endpoints can be set (only one of WorkloadSelector or Endpoints is allowed in Service Entry)",
                );
            }
        }

        self.validate_hosts(path, report);
        self.validate_addresses(path, report);
        let service_ports = self.validate_ports(path, report);

        for (i, ep) in self.endpoints.iter().enumerate() {
            validate_entry_schema(ep, &path.field("endpoints").index(i), report, true);
        }
        if self.endpoints.len() > 4096 {
            report.error(
                &path.field("endpoints"),
                format!(
                    "Too many: {}: must have at most 4096 items",
                    self.endpoints.len()
                ),
            );
        }

        match self.resolution {
            Resolution::None => {
                if !self.endpoints.is_empty() {
                    report.error(
                        &path.field("endpoints"),
                        "NONE mode cannot set endpoints: no endpoints should be provided for resolution type NONE",
                    );
                }
                if self.workload_selector.is_some() {
                    report.warning(
                        &path.field("workloadSelector"),
                        "workloadSelector should not be set when resolution mode is NONE",
                    );
                }
            }
            Resolution::Static => {
                for (i, ep) in self.endpoints.iter().enumerate() {
                    validate_entry_istio(
                        ep,
                        &path.field("endpoints").index(i),
                        report,
                        Some(&service_ports),
                        false,
                    );
                }
            }
            Resolution::Dns | Resolution::DnsRoundRobin => {
                self.validate_dns(path, report, &service_ports);
            }
            Resolution::DynamicDns => self.validate_dynamic_dns(path, report),
        }

        // Plain TCP cannot tell several hosts apart, unless the hosts are ignored (NONE).
        if self.resolution != Resolution::None
            && self.hosts.len() > 1
            && let Some(i) = self.ports.iter().position(|p| {
                let proto = Protocol::parse(&p.protocol);
                !proto.is_http() && !proto.is_tls()
            })
        {
            report.error(
                &path.field("ports").index(i),
                "multiple hosts provided with non-HTTP, non-TLS ports",
            );
        }

        report_export_to(
            validate_export_to(ctx.namespace(), &self.export_to, true, false),
            &path.field("exportTo"),
            report,
        );
    }
}

impl ServiceEntry {
    fn validate_hosts(&self, path: &Path, report: &mut Report) {
        let p = path.field("hosts");
        if self.hosts.is_empty() {
            report.error(
                &p,
                "Required value: service entry must have at least one host",
            );
        }
        if self.hosts.len() > 256 {
            report.error(
                &p,
                format!(
                    "Too many: {}: must have at most 256 items",
                    self.hosts.len()
                ),
            );
        }
        for (i, host) in self.hosts.iter().enumerate() {
            if host == "*" {
                report.error(
                    &p.index(i),
                    "Invalid value: \"*\": hostname cannot be wildcard (invalid host *)",
                );
                continue;
            }
            if let Err(e) = validate_wildcard_domain(host) {
                report.error(&p.index(i), e);
            }
            if let Err(w) = validate_partial_wildcard(host) {
                report.warning(&p.index(i), w);
            }
        }
    }

    fn validate_addresses(&self, path: &Path, report: &mut Report) {
        let p = path.field("addresses");
        if self.addresses.len() > 256 {
            report.error(
                &p,
                format!(
                    "Too many: {}: must have at most 256 items",
                    self.addresses.len()
                ),
            );
        }
        let mut cidr = false;
        for (i, a) in self.addresses.iter().enumerate() {
            cidr |= a.contains('/');
            if a.len() > 64 {
                report.error(
                    &p.index(i),
                    format!(
                        "Too long: may not be more than 64 bytes (value is {} bytes)",
                        a.len()
                    ),
                );
            }
            if let Err(e) = validate_ip_subnet(a) {
                report.error(&p.index(i), e);
            }
        }
        if cidr && !matches!(self.resolution, Resolution::None | Resolution::Static) {
            report.error(
                &p,
                "CIDR addresses are allowed only for NONE/STATIC resolution types",
            );
        }
    }

    /// Checks the ports and returns their names (endpoint ports must refer to them).
    fn validate_ports(&self, path: &Path, report: &mut Report) -> BTreeSet<String> {
        let pp = path.field("ports");
        if self.ports.len() > 256 {
            report.error(
                &pp,
                format!(
                    "Too many: {}: must have at most 256 items",
                    self.ports.len()
                ),
            );
        }
        let mut names = BTreeSet::new();
        let mut numbers = BTreeSet::new();
        for (i, port) in self.ports.iter().enumerate() {
            let p = pp.index(i);
            if !port.name.is_empty() && !names.insert(port.name.clone()) {
                report.error(
                    &p.field("name"),
                    format!(
                        "Duplicate value: service entry port name {:?} already defined",
                        port.name
                    ),
                );
            }
            if !numbers.insert(port.number) {
                report.error(
                    &p.field("number"),
                    format!(
                        "port number cannot be duplicated: service entry port {} already defined",
                        port.number
                    ),
                );
            }
            if port.target_port != 0 {
                if let Err(e) = validate_port_crd(port.target_port) {
                    report.error(&p.field("targetPort"), e);
                }
                if self.resolution == Resolution::None {
                    report.warning(
                        &p.field("targetPort"),
                        "targetPort has no effect when resolution mode is NONE",
                    );
                }
            }
            let proto = Protocol::parse(&port.protocol);
            if self.addresses.is_empty() && (port.protocol.is_empty() || proto == Protocol::Tcp) {
                report.warning(
                    &p,
                    "addresses are required for ports serving TCP (or unset) protocol when IP auto-allocation is not enabled",
                );
            }
            if port.name.len() > 256 {
                report.error(&p.field("name"), "Too long: may not be more than 256 bytes");
            }
            if port.name.is_empty() {
                // The CRD requires a port name.
                required(
                    report,
                    &p.field("name"),
                    "port name must be set (a DNS label)",
                );
            } else if let Err(e) = validate_port_name(&port.name) {
                report.error(&p.field("name"), e);
            }
            if port.protocol.len() > 256 {
                report.error(
                    &p.field("protocol"),
                    "Too long: may not be more than 256 bytes",
                );
            }
            if let Err(e) = validate_protocol(&port.protocol) {
                report.error(&p.field("protocol"), e);
            }
            if let Err(e) = validate_port_crd(port.number) {
                report.error(&p.field("number"), e);
            }
        }
        names
    }

    fn validate_dns(&self, path: &Path, report: &mut Report, service_ports: &BTreeSet<String>) {
        let mode = self.resolution;
        if self.endpoints.is_empty() {
            for (i, host) in self.hosts.iter().enumerate() {
                if validate_fqdn(host).is_err() {
                    report.error(
                        &path.field("hosts").index(i),
                        format!(
                            "hosts must be FQDN if no endpoints are provided for resolution mode {mode}: {host:?} is not a fully qualified domain name"
                        ),
                    );
                }
            }
        }
        if mode == Resolution::DnsRoundRobin && self.endpoints.len() > 1 {
            report.error(
                &path.field("endpoints"),
                "DNS_ROUND_ROBIN mode cannot have multiple endpoints: there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN",
            );
        }
        for (i, ep) in self.endpoints.iter().enumerate() {
            let p = path.field("endpoints").index(i);
            let addr = &ep.address;
            // Schema errors already cover empty and unix:// addresses.
            if !addr.is_empty()
                && !addr.starts_with(UNIX_ADDRESS_PREFIX)
                && !is_valid_ip(addr)
                && validate_fqdn(addr).is_err()
            {
                report.error(
                    &p.field("address"),
                    format!("endpoint address {addr:?} is not a valid FQDN or an IP address"),
                );
            }
            report_labels(&ep.labels, &p.field("labels"), report);
            for (name, port) in &ep.ports {
                if !service_ports.contains(name) {
                    report.error(
                        &p.field("ports").key(name),
                        format!(
                            "endpoint port {port} is not defined by the service entry: no service port is named {name:?}"
                        ),
                    );
                }
            }
        }
        if self.workload_selector.is_some() {
            report.warning(
                &path.field("workloadSelector"),
                format!("workloadSelector should not be set when resolution mode is {mode}"),
            );
        }
        if !self.addresses.is_empty()
            && self.hosts.len() > 1
            && self
                .ports
                .iter()
                .any(|p| Protocol::parse(&p.protocol).is_tcp())
        {
            report.warning(
                path,
                "service entry can not have more than one host specified simultaneously with address and tcp port",
            );
        }
    }

    /// DYNAMIC_DNS: the proxy resolves the requested name under a wildcard host, so hosts must
    /// be wildcards, no virtual IPs may be set, and ports must carry a name (HTTP Host or TLS
    /// SNI).
    fn validate_dynamic_dns(&self, path: &Path, report: &mut Report) {
        for (i, host) in self.hosts.iter().enumerate() {
            if !host.starts_with("*.") {
                report.error(
                    &path.field("hosts").index(i),
                    format!(
                        "hosts must be wildcard hosts (\"*.example.com\") for resolution mode DYNAMIC_DNS: {host:?}"
                    ),
                );
            }
        }
        if !self.addresses.is_empty() {
            report.error(
                &path.field("addresses"),
                "addresses cannot be set for resolution mode DYNAMIC_DNS",
            );
        }
        for (i, port) in self.ports.iter().enumerate() {
            let proto = Protocol::parse(&port.protocol);
            if !proto.is_http() && !proto.is_tls() {
                report.error(
                    &path.field("ports").index(i).field("protocol"),
                    format!(
                        "Unsupported value: {:?}: resolution mode DYNAMIC_DNS supports only HTTP and TLS (HTTPS, TLS) ports",
                        port.protocol
                    ),
                );
            }
        }
        if !self.endpoints.is_empty() {
            report.warning(
                &path.field("endpoints"),
                "endpoints are ignored for resolution mode DYNAMIC_DNS",
            );
        }
        if self.workload_selector.is_some() {
            report.warning(
                &path.field("workloadSelector"),
                "workloadSelector should not be set when resolution mode is DYNAMIC_DNS",
            );
        }
    }
}
