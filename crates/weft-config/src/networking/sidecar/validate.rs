//! Istio's Sidecar validation (`ValidateSidecar` and its port, bind and egress-host rules),
//! plus the CRD schema's workload selector limits.

use std::collections::{BTreeMap, BTreeSet};

use super::types::*;
use crate::networking::destination_rule::validate_connection_pool;
use crate::networking::gateway::{UNIX_ADDRESS_PREFIX, validate_tls_options};
use crate::networking::virtual_service::validate_destination;
use crate::validate::addresses::{split_host_port, validate_ip_address, validate_unix_address};
use crate::validate::go::go_atoi;
use crate::validate::hosts::{validate_fqdn, validate_namespace_slash_wildcard_hostname};
use crate::validate::labels::validate_labels_selector;
use crate::validate::ports::{Protocol, validate_port, validate_port_name, validate_protocol};
use crate::validate::{Path, Report};

/// Validates a Sidecar spec found at `path` in namespace `namespace`.
pub(super) fn validate_sidecar(sc: &Sidecar, namespace: &str, path: &Path, report: &mut Report) {
    if let Some(sel) = &sc.workload_selector {
        let before = report.issues.len();
        validate_labels_selector(
            &sel.labels,
            &path.field("workloadSelector"),
            report,
            "sidecar",
        );
        if report.issues[before..]
            .iter()
            .any(|i| i.severity == crate::diag::Severity::Error)
        {
            // Istio stops at a bad selector.
            return;
        }
    }
    if sc.egress.is_empty()
        && sc.ingress.is_empty()
        && sc.outbound_traffic_policy.is_none()
        && sc.inbound_connection_pool.is_none()
    {
        report.error(path, "sidecar: empty configuration provided");
        return;
    }

    let mut ports = BTreeSet::new();
    for (i, ing) in sc.ingress.iter().enumerate() {
        validate_ingress(ing, &mut ports, &path.field("ingress").index(i), report);
    }
    if let Some(pool) = &sc.inbound_connection_pool {
        validate_connection_pool(pool, &path.field("inboundConnectionPool"), report);
    }

    let mut ports = BTreeSet::new();
    let mut sockets = BTreeSet::new();
    let mut catch_all_found = false;
    for (i, eg) in sc.egress.iter().enumerate() {
        let at = path.field("egress").index(i);
        match &eg.port {
            None => {
                if catch_all_found {
                    report.error(
                        &at.field("port"),
                        "sidecar: egress can have only one listener with empty port",
                    );
                    continue;
                }
                if i == sc.egress.len() - 1 {
                    catch_all_found = true;
                } else {
                    report.error(
                        &at.field("port"),
                        "sidecar: the egress listener with empty port should be the last listener in the list",
                    );
                }
            }
            Some(port) => {
                if port.target_port > 0 {
                    report.error(
                        &at.field("port").field("targetPort"),
                        "targetPort has no impact on Sidecars",
                    );
                }
                validate_egress_port_bind_capture(port, &eg.bind, eg.capture_mode, &at, report);
                if port.number == 0 {
                    if !sockets.insert(eg.bind.as_str()) {
                        report.error(
                            &at.field("bind"),
                            "sidecar: unix domain socket values for listeners must be unique",
                        );
                    }
                } else if !ports.insert(port.number) {
                    report.error(
                        &at.field("port").field("number"),
                        "sidecar: ports on IP bound listeners must be unique",
                    );
                }
            }
        }
        validate_egress_hosts(&eg.hosts, namespace, &at.field("hosts"), report);
    }

    if let Some(otp) = &sc.outbound_traffic_policy {
        validate_outbound_traffic_policy(otp, &path.field("outboundTrafficPolicy"), report);
    }
}

fn validate_ingress(
    ing: &IstioIngressListener,
    ports: &mut BTreeSet<u32>,
    path: &Path,
    report: &mut Report,
) {
    let Some(port) = &ing.port else {
        report.error(
            &path.field("port"),
            "sidecar: port is required for ingress listeners",
        );
        return;
    };
    let pp = path.field("port");
    if port.target_port > 0 {
        report.error(
            &pp.field("targetPort"),
            "targetPort has no impact on Sidecars",
        );
    }
    if !port.name.is_empty()
        && let Err(e) = validate_port_name(&port.name)
    {
        report.error(&pp.field("name"), e);
    }
    if let Err(e) = validate_protocol(&port.protocol) {
        report.error(&pp.field("protocol"), e);
    }
    if let Err(e) = validate_port(i64::from(port.number)) {
        report.error(&pp.field("number"), e);
    }
    if !ing.bind.is_empty()
        && let Err(e) = validate_ip_address(&ing.bind)
    {
        report.error(&path.field("bind"), e);
    }
    if !ports.insert(port.number) {
        report.error(
            &pp.field("number"),
            "sidecar: ports on IP bound listeners must be unique",
        );
    }
    if !ing.default_endpoint.is_empty() {
        validate_default_endpoint(
            &ing.default_endpoint,
            &path.field("defaultEndpoint"),
            report,
        );
    }
    if let Some(tls) = &ing.tls {
        let tp = path.field("tls");
        if !tls.subject_alt_names.is_empty() {
            report.error(
                &tp.field("subjectAltNames"),
                "sidecar: subjectAltNames is not supported in ingress tls",
            );
        }
        if tls.https_redirect {
            report.error(
                &tp.field("httpsRedirect"),
                "sidecar: httpsRedirect is not supported",
            );
        }
        if !tls.credential_name.is_empty() {
            report.error(
                &tp.field("credentialName"),
                "sidecar: credentialName is not currently supported",
            );
        }
        if !tls.credential_names.is_empty() {
            report.error(
                &tp.field("credentialNames"),
                "sidecar: credentialNames is not currently supported",
            );
        }
        if !tls.tls_certificates.is_empty() {
            report.error(
                &tp.field("tlsCertificates"),
                "sidecar: tls_certificates is not currently supported",
            );
        }
        use crate::networking::gateway::TlsMode;
        if matches!(tls.mode, TlsMode::IstioMutual | TlsMode::AutoPassthrough) {
            report.error(
                &tp.field("mode"),
                format!(
                    "configuration is invalid: cannot set mode to {} in sidecar ingress tls",
                    tls.mode.as_str()
                ),
            );
        }
        if !Protocol::parse(&port.protocol).is_tls() {
            report.error(
                &tp,
                "server cannot have TLS settings for non HTTPS/TLS ports",
            );
        }
        validate_tls_options(tls, &tp, report);
    }
    if let Some(pool) = &ing.connection_pool {
        let at = path.field("connectionPool");
        validate_connection_pool(pool, &at, report);
        if pool.http.is_some() && !Protocol::parse(&port.protocol).is_http() {
            report.warning(
                &at.field("http"),
                format!(
                    "sidecar: HTTP connection pool settings are configured for port {} ({:?}) but its protocol is not HTTP ({}); only TCP settings will apply",
                    port.number, port.name, port.protocol
                ),
            );
        }
    }
}

/// The loopback or Unix socket endpoint an ingress listener forwards to.
fn validate_default_endpoint(ep: &str, path: &Path, report: &mut Report) {
    if let Some(uds) = ep.strip_prefix(UNIX_ADDRESS_PREFIX) {
        if let Err(e) = validate_unix_address(uds) {
            report.error(path, e);
        }
        return;
    }
    let (host, port) = match split_host_port(ep) {
        Ok(hp) => hp,
        Err(e) => {
            report.error(path, e);
            ("", "")
        }
    };
    if !host.is_empty() && !matches!(host, "127.0.0.1" | "0.0.0.0" | "::1" | "::") {
        report.error(
            path,
            "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,[::]:port,unix://filepath or unset",
        );
    }
    match go_atoi(port) {
        Some(n) => {
            if let Err(e) = validate_port(n) {
                report.error(path, e);
            }
        }
        None => report.error(
            path,
            format!("sidecar: defaultEndpoint port ({port}) is not a number"),
        ),
    }
}

fn validate_egress_port_bind_capture(
    port: &SidecarPort,
    bind: &str,
    capture: CaptureMode,
    path: &Path,
    report: &mut Report,
) {
    let pp = path.field("port");
    if !port.name.is_empty()
        && let Err(e) = validate_port_name(&port.name)
    {
        report.error(&pp.field("name"), e);
    }
    if let Err(e) = validate_protocol(&port.protocol) {
        report.error(&pp.field("protocol"), e);
    }
    if port.number == 0 {
        match bind.strip_prefix(UNIX_ADDRESS_PREFIX) {
            None => report.error(
                &path.field("bind"),
                "sidecar: ports with 0 value must have a unix domain socket bind address",
            ),
            Some(uds) => {
                if let Err(e) = validate_unix_address(uds) {
                    report.error(&path.field("bind"), e);
                }
            }
        }
        if !matches!(capture, CaptureMode::Default | CaptureMode::None) {
            report.error(
                &path.field("captureMode"),
                "sidecar: captureMode must be DEFAULT/NONE for unix domain socket listeners",
            );
        }
    } else {
        if let Err(e) = validate_port(i64::from(port.number)) {
            report.error(&pp.field("number"), e);
        }
        if !bind.is_empty()
            && let Err(e) = validate_ip_address(bind)
        {
            report.error(&path.field("bind"), e);
        }
    }
}

fn validate_egress_hosts(hosts: &[String], namespace: &str, path: &Path, report: &mut Report) {
    if hosts.is_empty() {
        report.error(
            path,
            "sidecar: egress listener must contain at least one host",
        );
        return;
    }
    let mut by_ns: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (i, host) in hosts.iter().enumerate() {
        let at = path.index(i);
        if let Some((ns, svc)) = host.split_once('/') {
            let ns = if ns == "." { namespace } else { ns };
            let svcs = by_ns.entry(ns.to_string()).or_default();
            let duplicate = if svc != "*" {
                svcs.contains(svc) || svcs.contains("*")
            } else {
                !svcs.is_empty()
            };
            if duplicate {
                report.warning(&at, format!("duplicated egress host: {host}"));
            }
            svcs.insert(svc.to_string());
        }
        for e in validate_namespace_slash_wildcard_hostname(host, false) {
            report.error(&at, e);
        }
    }
    if by_ns.get("*").is_some_and(|s| s.contains("*")) && by_ns.len() != 1 {
        report.warning(
            path,
            "`*/*` host select all resources, no other hosts can be added",
        );
    }
}

fn validate_outbound_traffic_policy(otp: &OutboundTrafficPolicy, path: &Path, report: &mut Report) {
    let Some(proxy) = &otp.egress_proxy else {
        return;
    };
    let at = path.field("egressProxy");
    if otp.mode != OutboundTrafficPolicyMode::AllowAny {
        report.error(
            &at,
            "sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode",
        );
        return;
    }
    if let Err(e) = validate_fqdn(&proxy.host) {
        report.error(&at.field("host"), e);
    }
    if proxy.port.is_none() {
        report.error(
            &at.field("port"),
            "sidecar: egress_proxy port must be non-nil",
        );
        return;
    }
    validate_destination(proxy, &at, report);
}
