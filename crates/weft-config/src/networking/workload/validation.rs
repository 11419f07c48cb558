//! WorkloadEntry / WorkloadGroup validation: the CRD schema and CEL rules, and Istio's
//! `validateWorkloadEntry` / `ValidateWorkloadGroup`. The WorkloadEntry checks are shared with
//! ServiceEntry endpoints.

use std::collections::BTreeSet;

use super::*;
use crate::validate::addresses::{is_valid_ip, validate_unix_address};
use crate::validate::hosts::{is_dns1123_label, validate_fqdn};
use crate::validate::labels::report_labels;
use crate::validate::ports::validate_port_crd;
use crate::validate::{Context, Path, Report, Validate};

/// Prefix marking a Unix domain socket address.
pub(crate) const UNIX_ADDRESS_PREFIX: &str = "unix://";

/// The CRD's rule for endpoint port names: `^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$`, shorter
/// than 63 characters (Istio's `ValidatePortName` also wants a DNS label).
fn is_valid_endpoint_port_name(name: &str) -> bool {
    name.len() < 63 && is_dns1123_label(name)
}

fn max_len(value: &str, max: usize, path: &Path, report: &mut Report) {
    if value.len() > max {
        report.error(
            path,
            format!(
                "Too long: may not be more than {max} bytes (value is {} bytes)",
                value.len()
            ),
        );
    }
}

fn max_items(n: usize, max: usize, path: &Path, report: &mut Report) {
    if n > max {
        report.error(
            path,
            format!("Too many: {n}: must have at most {max} items"),
        );
    }
}

/// The CRD schema and CEL rules of a WorkloadEntry (top-level, ServiceEntry endpoint or
/// WorkloadGroup template). `require_address`: the "Address is required" rule (an address or a
/// network must be set), which WorkloadGroup templates skip.
pub(crate) fn validate_entry_schema(
    we: &WorkloadEntry,
    path: &Path,
    report: &mut Report,
    require_address: bool,
) {
    let addr = &we.address;
    max_len(addr, 256, &path.field("address"), report);
    if require_address && addr.is_empty() && we.network.is_empty() {
        report.error(
            &path.field("address"),
            "Required value: Address is required (set address, or network for a workload reached through a network gateway)",
        );
    }
    if let Some(uds) = addr.strip_prefix(UNIX_ADDRESS_PREFIX) {
        if let Err(e) = validate_unix_address(uds) {
            // The CRD's rule names the message; Istio's check says what is wrong.
            let rule = if uds.starts_with('/') && uds.ends_with('/') {
                "UDS may not be a dir"
            } else {
                "UDS must be an absolute path or abstract socket"
            };
            report.error(&path.field("address"), format!("{rule}: {e}"));
        }
        if !we.ports.is_empty() {
            report.error(
                &path.field("ports"),
                format!("UDS may not include ports: unix endpoint {addr} must not include ports"),
            );
        }
    }
    max_items(we.ports.len(), 128, &path.field("ports"), report);
    let bad_names: Vec<&str> = we
        .ports
        .keys()
        .map(String::as_str)
        .filter(|n| !is_valid_endpoint_port_name(n))
        .collect();
    if !bad_names.is_empty() {
        report.error(
            &path.field("ports"),
            format!(
                "Invalid value: port name must be valid: {bad_names:?} (a DNS label of 1-62 letters, digits or '-', not starting or ending with '-')"
            ),
        );
    }
    for (name, port) in &we.ports {
        if let Err(e) = validate_port_crd(*port) {
            report.error(&path.field("ports").key(name), e);
        }
    }
    max_items(we.labels.len(), 256, &path.field("labels"), report);
    max_len(&we.network, 2048, &path.field("network"), report);
    max_len(&we.locality, 2048, &path.field("locality"), report);
    max_len(
        &we.service_account,
        253,
        &path.field("serviceAccount"),
        report,
    );
}

/// Istio's `validateWorkloadEntry`. `service_ports`: the names of the enclosing ServiceEntry's
/// ports (endpoint ports must name one of them); `allow_fqdn`: whether the address may be a
/// host name (not for STATIC resolution).
pub(crate) fn validate_entry_istio(
    we: &WorkloadEntry,
    path: &Path,
    report: &mut Report,
    service_ports: Option<&BTreeSet<String>>,
    allow_fqdn: bool,
) {
    let addr = &we.address;
    if addr.is_empty() {
        if we.network.is_empty() {
            // Reported by the schema check ("Address is required").
            return;
        }
        report.warning(
            &path.field("address"),
            format!("address is unset with network {:?}", we.network),
        );
    }
    let unix = addr.starts_with(UNIX_ADDRESS_PREFIX);
    if !unix && !addr.is_empty() && !is_valid_ip(addr) {
        if !allow_fqdn {
            report.error(
                &path.field("address"),
                format!("endpoint address {addr:?} is not a valid IP address"),
            );
        } else if validate_fqdn(addr).is_err() {
            report.error(
                &path.field("address"),
                format!("endpoint address {addr:?} is not a valid FQDN or an IP address"),
            );
        }
    }
    if let Some(sp) = service_ports {
        for (name, port) in &we.ports {
            if !sp.contains(name) {
                report.error(
                    &path.field("ports").key(name),
                    format!(
                        "endpoint port {port} is not defined by the service entry: no service port is named {name:?}"
                    ),
                );
            }
        }
    }
    report_labels(&we.labels, &path.field("labels"), report);
    if unix
        && let Some(sp) = service_ports
        && sp.len() != 1
    {
        report.error(
            &path.field("address"),
            format!(
                "exactly 1 service port required for unix endpoints (the service entry has {})",
                sp.len()
            ),
        );
    }
}

impl Validate for WorkloadEntry {
    fn validate(&self, _ctx: &Context<'_>, path: &Path, report: &mut Report) {
        validate_entry_schema(self, path, report, true);
        validate_entry_istio(self, path, report, None, true);
    }
}

impl Validate for WorkloadGroup {
    fn validate(&self, _ctx: &Context<'_>, path: &Path, report: &mut Report) {
        match &self.template {
            None => report.error(
                &path.field("template"),
                "Required value: template is required",
            ),
            Some(t) => validate_entry_schema(t, &path.field("template"), report, false),
        }
        if let Some(m) = &self.metadata {
            let p = path.field("metadata");
            max_items(m.labels.len(), 256, &p.field("labels"), report);
            max_items(m.annotations.len(), 256, &p.field("annotations"), report);
            report_labels(&m.labels, &p.field("labels"), report);
        }
        if let Some(probe) = &self.probe {
            validate_readiness_probe(probe, &path.field("probe"), report);
        }
    }
}

fn non_negative(v: i32, name: &str, path: &Path, report: &mut Report) {
    if v < 0 {
        report.error(
            &path.field(name),
            format!("Invalid value: {v}: {name} must be non-negative"),
        );
    }
}

/// Header names Istio accepts (`^[-_A-Za-z0-9]+$`).
fn is_valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// Istio's `validateReadinessProbe` plus the CRD's oneof and port rules.
fn validate_readiness_probe(probe: &ReadinessProbe, path: &Path, report: &mut Report) {
    non_negative(probe.period_seconds, "periodSeconds", path, report);
    non_negative(
        probe.initial_delay_seconds,
        "initialDelaySeconds",
        path,
        report,
    );
    non_negative(probe.timeout_seconds, "timeoutSeconds", path, report);
    non_negative(probe.success_threshold, "successThreshold", path, report);
    non_negative(probe.failure_threshold, "failureThreshold", path, report);

    let methods = [
        probe.http_get.is_some(),
        probe.tcp_socket.is_some(),
        probe.exec.is_some(),
        probe.grpc.is_some(),
    ]
    .iter()
    .filter(|m| **m)
    .count();
    match methods {
        0 => report.error(
            path,
            "Required value: the probe must set one health check method: httpGet, tcpSocket, exec or grpc",
        ),
        1 => {}
        _ => report.error(
            path,
            "only one of httpGet, tcpSocket, exec or grpc can be set (oneof health_check_method)",
        ),
    }

    if let Some(h) = &probe.http_get {
        let p = path.field("httpGet");
        if let Err(e) = validate_port_crd(h.port) {
            report.error(&p.field("port"), e);
        }
        if !matches!(h.scheme.as_str(), "" | "HTTP" | "HTTPS") {
            report.error(
                &p.field("scheme"),
                format!(
                    "Unsupported value: {:?}: scheme must be one of [HTTP, HTTPS]",
                    h.scheme
                ),
            );
        }
        for (i, header) in h.http_headers.iter().enumerate() {
            if !is_valid_header_name(&header.name) {
                report.error(
                    &p.field("httpHeaders").index(i).field("name"),
                    format!(
                        "header name {:?} is not a valid header name: use letters, digits, '-' and '_'",
                        header.name
                    ),
                );
            }
        }
    }
    if let Some(t) = &probe.tcp_socket
        && let Err(e) = validate_port_crd(t.port)
    {
        report.error(&path.field("tcpSocket").field("port"), e);
    }
    if let Some(x) = &probe.exec {
        let p = path.field("exec").field("command");
        if x.command.is_empty() {
            report.error(&p, "Required value: exec.command is required");
        }
        for (i, c) in x.command.iter().enumerate() {
            if c.is_empty() {
                report.error(
                    &p.index(i),
                    "Invalid value: \"\": in body should be at least 1 chars long",
                );
            }
        }
    }
    if let Some(g) = &probe.grpc
        && let Err(e) = validate_port_crd(g.port)
    {
        report.error(&path.field("grpc").field("port"), e);
    }
}
