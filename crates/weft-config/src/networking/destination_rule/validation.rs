//! DestinationRule validation: the CRD schema (required fields, bounds, CEL rules) and Istio's
//! `ValidateDestinationRule` with everything it calls, field by field.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::validate::addresses::is_valid_ip;
use crate::validate::durations::validate_duration;
use crate::validate::hosts::{is_dns1123_label, validate_fqdn, validate_wildcard_domain};
use crate::validate::labels::{report_labels, validate_workload_selector};
use crate::validate::policy::{report_export_to, validate_export_to};
use crate::validate::ports::validate_port_crd;
use crate::validate::{Context, Path, Report, Validate};

/// Kubernetes node labels Istio treats as the locality hierarchy.
const LABEL_TOPOLOGY_REGION: &str = "topology.kubernetes.io/region";
const LABEL_TOPOLOGY_ZONE: &str = "topology.kubernetes.io/zone";
const LABEL_TOPOLOGY_SUBZONE: &str = "topology.istio.io/subzone";

impl Validate for DestinationRule {
    fn validate(&self, ctx: &Context<'_>, path: &Path, report: &mut Report) {
        let host = path.field("host");
        if self.host.is_empty() {
            report.error(
                &host,
                "Required value: the destination host must be set (empty domain name not allowed)",
            );
        } else if let Err(e) = validate_wildcard_domain(&self.host) {
            report.error(&host, e);
        }

        if let Some(tp) = &self.traffic_policy {
            validate_traffic_policy(tp, &path.field("trafficPolicy"), report);
        }

        let mut names = BTreeSet::new();
        for (i, subset) in self.subsets.iter().enumerate() {
            let p = path.field("subsets").index(i);
            if !subset.name.is_empty() && !names.insert(subset.name.as_str()) {
                report.error(
                    &p.field("name"),
                    format!(
                        "Duplicate value: duplicate subset names: {}; subset names must be unique",
                        subset.name
                    ),
                );
            }
            validate_subset(subset, &p, report);
        }

        report_export_to(
            validate_export_to(
                ctx.namespace(),
                &self.export_to,
                false,
                self.workload_selector.is_some(),
            ),
            &path.field("exportTo"),
            report,
        );
        validate_workload_selector(
            self.workload_selector.as_ref(),
            &path.field("workloadSelector"),
            report,
        );
    }
}

fn validate_subset(subset: &Subset, path: &Path, report: &mut Report) {
    if subset.name.is_empty() {
        report.error(
            &path.field("name"),
            "Required value: subset name cannot be empty",
        );
    } else if !is_dns1123_label(&subset.name) {
        report.error(
            &path.field("name"),
            format!(
                "subset name is invalid: {:?}: must be a DNS label (1-63 letters, digits or '-', not starting or ending with '-')",
                subset.name
            ),
        );
    }
    report_labels(&subset.labels, &path.field("labels"), report);
    if let Some(tp) = &subset.traffic_policy {
        validate_traffic_policy(tp, &path.field("trafficPolicy"), report);
    }
}

/// Istio's `validateTrafficPolicy`: a policy must set something, `tunnel` and `proxyProtocol`
/// exclude each other, and every part is validated.
pub fn validate_traffic_policy(tp: &TrafficPolicy, path: &Path, report: &mut Report) {
    if tp.outlier_detection.is_none()
        && tp.connection_pool.is_none()
        && tp.load_balancer.is_none()
        && tp.tls.is_none()
        && tp.port_level_settings.is_empty()
        && tp.tunnel.is_none()
        && tp.proxy_protocol.is_none()
        && tp.retry_budget.is_none()
    {
        report.error(path, "traffic policy must have at least one field");
        return;
    }
    if tp.tunnel.is_some() && tp.proxy_protocol.is_some() {
        report.error(path, "tunnel and proxyProtocol must not be set together");
    }
    if let Some(od) = &tp.outlier_detection {
        validate_outlier_detection(od, &path.field("outlierDetection"), report);
    }
    if let Some(cp) = &tp.connection_pool {
        validate_connection_pool(cp, &path.field("connectionPool"), report);
    }
    if let Some(lb) = &tp.load_balancer {
        validate_load_balancer(
            lb,
            tp.outlier_detection.is_some(),
            &path.field("loadBalancer"),
            report,
        );
    }
    if let Some(tls) = &tp.tls {
        validate_client_tls_settings(tls, &path.field("tls"), report);
    }
    if tp.port_level_settings.len() > 4096 {
        report.error(
            &path.field("portLevelSettings"),
            format!(
                "Too many: {}: must have at most 4096 items",
                tp.port_level_settings.len()
            ),
        );
    }
    for (i, pls) in tp.port_level_settings.iter().enumerate() {
        validate_port_traffic_policy(pls, &path.field("portLevelSettings").index(i), report);
    }
    if let Some(t) = &tp.tunnel {
        validate_tunnel(t, &path.field("tunnel"), report);
    }
    if let Some(rb) = &tp.retry_budget {
        validate_retry_budget(rb, &path.field("retryBudget"), report);
    }
}

fn validate_port_traffic_policy(p: &PortTrafficPolicy, path: &Path, report: &mut Report) {
    match &p.port {
        None => report.error(
            &path.field("port"),
            "Required value: portTrafficPolicy must have valid port",
        ),
        Some(sel) => {
            if let Err(e) = validate_port_crd(sel.number) {
                report.error(&path.field("port").field("number"), e);
            }
        }
    }
    if p.outlier_detection.is_none()
        && p.connection_pool.is_none()
        && p.load_balancer.is_none()
        && p.tls.is_none()
    {
        report.error(path, "port traffic policy must have at least one field");
        return;
    }
    if let Some(od) = &p.outlier_detection {
        validate_outlier_detection(od, &path.field("outlierDetection"), report);
    }
    if let Some(cp) = &p.connection_pool {
        validate_connection_pool(cp, &path.field("connectionPool"), report);
    }
    if let Some(lb) = &p.load_balancer {
        validate_load_balancer(
            lb,
            p.outlier_detection.is_some(),
            &path.field("loadBalancer"),
            report,
        );
    }
    if let Some(tls) = &p.tls {
        validate_client_tls_settings(tls, &path.field("tls"), report);
    }
}

fn validate_tunnel(t: &TunnelSettings, path: &Path, report: &mut Report) {
    if !t.protocol.is_empty() && t.protocol != "CONNECT" && t.protocol != "POST" {
        report.error(
            &path.field("protocol"),
            format!(
                "Unsupported value: {:?}: tunnel protocol must be \"CONNECT\" or \"POST\"",
                t.protocol
            ),
        );
    }
    if t.target_host.is_empty() {
        report.error(
            &path.field("targetHost"),
            "Required value: tunnel target host must be a valid FQDN or IP address",
        );
    } else if let Err(e) = validate_fqdn(&t.target_host)
        && !is_valid_ip(&t.target_host)
    {
        report.error(
            &path.field("targetHost"),
            format!(
                "tunnel target host must be valid FQDN or IP address: {e}; {} is not a valid IP",
                t.target_host
            ),
        );
    }
    if t.target_port == 0 {
        report.error(
            &path.field("targetPort"),
            "Required value: tunnel target port must be set (1-65535)",
        );
    } else if let Err(e) = validate_port_crd(t.target_port) {
        report.error(
            &path.field("targetPort"),
            format!("tunnel target port is invalid: {e}"),
        );
    }
}

fn validate_retry_budget(rb: &RetryBudget, path: &Path, report: &mut Report) {
    if let Some(p) = rb.percent
        && !(0.0..=100.0).contains(&p)
    {
        report.error(
            &path.field("percent"),
            format!("Invalid value: {p}: must be between 0 and 100"),
        );
    }
    if let Some(d) = rb.budget_interval
        && let Err(e) = validate_duration(d)
    {
        report.error(&path.field("budgetInterval"), e);
    }
}

fn percent_check(v: i32, path: &Path, report: &mut Report) {
    if !(0..=100).contains(&v) {
        report.error(
            path,
            format!("Invalid value: {v}: percentage {v} is not in range 0..100"),
        );
    }
}

/// Istio's `validateOutlierDetection` (plus the CRD's 1ms minimum on durations).
pub fn validate_outlier_detection(od: &OutlierDetection, path: &Path, report: &mut Report) {
    if let Some(d) = od.base_ejection_time
        && let Err(e) = validate_duration(d)
    {
        report.error(&path.field("baseEjectionTime"), e);
    }
    if od.consecutive_errors != 0 {
        report.warning(
            &path.field("consecutiveErrors"),
            "outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors or consecutive5xxErrors instead",
        );
    }
    if !od.split_external_local_origin_errors
        && od.consecutive_local_origin_failures.unwrap_or(0) > 0
    {
        report.error(
            &path.field("consecutiveLocalOriginFailures"),
            "outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false",
        );
    }
    if let Some(d) = od.interval
        && let Err(e) = validate_duration(d)
    {
        report.error(&path.field("interval"), e);
    }
    percent_check(
        od.max_ejection_percent,
        &path.field("maxEjectionPercent"),
        report,
    );
    percent_check(
        od.min_health_percent,
        &path.field("minHealthPercent"),
        report,
    );
}

fn non_negative(v: i32, name: &str, what: &str, path: &Path, report: &mut Report) {
    if v < 0 {
        report.error(
            &path.field(name),
            format!("Invalid value: {v}: {what} must be non-negative"),
        );
    }
}

fn duration_check(d: Option<crate::duration::Duration>, path: &Path, report: &mut Report) {
    if let Some(d) = d
        && let Err(e) = validate_duration(d)
    {
        report.error(path, e);
    }
}

/// Istio's `validateConnectionPool` (used by DestinationRule and Sidecar).
pub fn validate_connection_pool(cp: &ConnectionPoolSettings, path: &Path, report: &mut Report) {
    if cp.http.is_none() && cp.tcp.is_none() {
        report.error(path, "connection pool must have at least one field");
        return;
    }
    if let Some(h) = &cp.http {
        let p = path.field("http");
        non_negative(
            h.http1_max_pending_requests,
            "http1MaxPendingRequests",
            "http1 max pending requests",
            &p,
            report,
        );
        non_negative(
            h.http2_max_requests,
            "http2MaxRequests",
            "http2 max requests",
            &p,
            report,
        );
        non_negative(
            h.max_requests_per_connection,
            "maxRequestsPerConnection",
            "max requests per connection",
            &p,
            report,
        );
        non_negative(h.max_retries, "maxRetries", "max retries", &p, report);
        duration_check(h.idle_timeout, &p.field("idleTimeout"), report);
        if h.h2_upgrade_policy == H2UpgradePolicy::Upgrade && h.use_client_protocol {
            report.error(
                &p.field("useClientProtocol"),
                "use client protocol must not be true when H2UpgradePolicy is UPGRADE",
            );
        }
        non_negative(
            h.max_concurrent_streams,
            "maxConcurrentStreams",
            "max concurrent streams",
            &p,
            report,
        );
        if let Some(ka) = &h.http2_keep_alive {
            let kp = p.field("http2KeepAlive");
            match ka.interval {
                None => report.error(
                    &kp.field("interval"),
                    "Required value: http2 keepalive interval must be set",
                ),
                Some(d) => duration_check(Some(d), &kp.field("interval"), report),
            }
            duration_check(ka.timeout, &kp.field("timeout"), report);
        }
    }
    if let Some(t) = &cp.tcp {
        let p = path.field("tcp");
        non_negative(
            t.max_connections,
            "maxConnections",
            "max connections",
            &p,
            report,
        );
        duration_check(t.connect_timeout, &p.field("connectTimeout"), report);
        duration_check(
            t.max_connection_duration,
            &p.field("maxConnectionDuration"),
            report,
        );
        // `0s` turns the TCP idle timeout off.
        if let Some(d) = t.idle_timeout
            && !d.get().is_zero()
        {
            duration_check(Some(d), &p.field("idleTimeout"), report);
        }
        if let Some(ka) = &t.tcp_keepalive {
            let kp = p.field("tcpKeepalive");
            duration_check(ka.time, &kp.field("time"), report);
            duration_check(ka.interval, &kp.field("interval"), report);
        }
    }
}

/// Istio's `isPrime`, as Envoy checks Maglev table sizes.
fn is_prime(x: u64) -> bool {
    if x != 0 && x < 4 {
        return true;
    }
    if x & 1 == 0 {
        return false;
    }
    let mut f = 3u64;
    while f.saturating_mul(f) <= x {
        if x.is_multiple_of(f) {
            return false;
        }
        f += 2;
    }
    true
}

/// Istio's `validateLoadBalancer` plus the CRD's oneof rules and the warmup schema.
pub fn validate_load_balancer(
    lb: &LoadBalancerSettings,
    has_outlier_detection: bool,
    path: &Path,
    report: &mut Report,
) {
    if lb.simple.is_some() && lb.consistent_hash.is_some() {
        report.error(
            path,
            "only one of simple or consistentHash can be set (oneof lb_policy)",
        );
    }
    if let Some(ch) = &lb.consistent_hash {
        validate_consistent_hash(ch, &path.field("consistentHash"), report);
    }
    if lb.locality_lb_setting.is_some() && lb.zone_aware_lb_setting.is_some() {
        report.error(
            path,
            "only one of localityLbSetting or zoneAwareLbSetting can be set",
        );
    }
    if let Some(l) = &lb.locality_lb_setting {
        validate_locality_lb_setting(
            l,
            has_outlier_detection,
            &path.field("localityLbSetting"),
            report,
        );
    }
    if let Some(z) = &lb.zone_aware_lb_setting {
        validate_zone_aware_lb_setting(
            z,
            has_outlier_detection,
            &path.field("zoneAwareLbSetting"),
            report,
        );
    }
    duration_check(
        lb.warmup_duration_secs,
        &path.field("warmupDurationSecs"),
        report,
    );
    if let Some(w) = &lb.warmup {
        let p = path.field("warmup");
        match w.duration {
            None => report.error(
                &p.field("duration"),
                "Required value: warmup duration must be set",
            ),
            Some(d) => duration_check(Some(d), &p.field("duration"), report),
        }
        if let Some(m) = w.minimum_percent {
            if m < 0.0 {
                report.error(
                    &p.field("minimumPercent"),
                    format!("Invalid value: {m}: must be greater than or equal to 0"),
                );
            } else if m > 100.0 {
                report.error(
                    &p.field("minimumPercent"),
                    format!("Invalid value: {m}: must be less than or equal to 100"),
                );
            }
        }
        if let Some(a) = w.aggression
            && a < 0.0
        {
            report.error(
                &p.field("aggression"),
                format!("Invalid value: {a}: must be greater than or equal to 0"),
            );
        }
    }
}

fn validate_consistent_hash(ch: &ConsistentHashLb, path: &Path, report: &mut Report) {
    let keys = [
        ch.http_header_name.is_some(),
        ch.http_cookie.is_some(),
        ch.use_source_ip.is_some(),
        ch.http_query_parameter_name.is_some(),
    ];
    if keys.iter().filter(|k| **k).count() > 1 {
        report.error(
            path,
            "only one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName can be set (oneof hash_key)",
        );
    }
    if ch.ring_hash.is_some() && ch.maglev.is_some() {
        report.error(
            path,
            "only one of ringHash or maglev can be set (oneof hash_algorithm)",
        );
    }
    if let Some(c) = &ch.http_cookie {
        let p = path.field("httpCookie");
        if c.name.is_empty() {
            report.error(
                &p.field("name"),
                "Required value: name required for HttpCookie",
            );
        }
        let mut seen = BTreeSet::new();
        for (i, a) in c.attributes.iter().enumerate() {
            let ap = p.field("attributes").index(i);
            if a.name.is_empty() {
                report.error(
                    &ap.field("name"),
                    "Required value: cookie attribute name must be set",
                );
            } else if !seen.insert(a.name.as_str()) {
                report.error(
                    &ap.field("name"),
                    format!(
                        "Duplicate value: cookie attribute {:?} is set more than once",
                        a.name
                    ),
                );
            }
        }
    }
    if ch.minimum_ring_size != 0 {
        report.warning(
            &path.field("minimumRingSize"),
            "consistent hash MinimumRingSize is deprecated, use ConsistentHashLB's RingHash configuration instead",
        );
        if ch.ring_hash.is_some() || ch.maglev.is_some() {
            report.error(
                &path.field("minimumRingSize"),
                "only one of MinimumRingSize or Maglev/Ringhash can be specified",
            );
        }
    }
    if let Some(m) = &ch.maglev {
        let p = path.field("maglev").field("tableSize");
        if m.table_size == 0 {
            report.error(&p, "Required value: tableSize must be set for maglev");
        }
        if m.table_size >= 5_000_011 {
            report.error(
                &p,
                format!(
                    "Invalid value: {}: tableSize must be less than 5000011 for maglev",
                    m.table_size
                ),
            );
        }
        if !is_prime(m.table_size) {
            report.error(
                &p,
                format!(
                    "Invalid value: {}: tableSize must be a prime number for maglev",
                    m.table_size
                ),
            );
        }
    }
}

/// Istio's `ValidateLocalityLbSetting` (DestinationRule and MeshConfig). `has_outlier_detection`
/// says whether the enclosing policy sets outlier detection (MeshConfig passes true).
pub fn validate_locality_lb_setting(
    lb: &LocalityLoadBalancerSetting,
    has_outlier_detection: bool,
    path: &Path,
    report: &mut Report,
) {
    if !lb.distribute.is_empty() && !lb.failover.is_empty() {
        report.error(
            path,
            "can not simultaneously specify 'distribute' and 'failover'",
        );
        return;
    }
    if !lb.failover.is_empty() {
        for (i, label) in lb.failover_priority.iter().enumerate() {
            if matches!(
                label.as_str(),
                LABEL_TOPOLOGY_REGION | LABEL_TOPOLOGY_ZONE | LABEL_TOPOLOGY_SUBZONE
            ) {
                report.error(
                    &path.field("failoverPriority").index(i),
                    format!(
                        "can not simultaneously set 'failover' and topology label '{label}' in 'failover_priority'"
                    ),
                );
                return;
            }
        }
    }

    let mut src = Vec::with_capacity(lb.distribute.len());
    for (i, d) in lb.distribute.iter().enumerate() {
        let p = path.field("distribute").index(i);
        src.push(d.from.as_str());
        let mut total: u64 = 0;
        for (loc, w) in &d.to {
            if *w == 0 || *w > 100 {
                report.error(
                    &p.field("to").key(loc),
                    format!("Invalid value: {w}: locality weight must be in range [1, 100]"),
                );
                return;
            }
            total += u64::from(*w);
        }
        if total != 100 {
            report.error(
                &p.field("to"),
                format!("total locality weight {total} != 100"),
            );
            return;
        }
        let dst: Vec<&str> = d.to.keys().map(String::as_str).collect();
        if let Err(e) = validate_localities(&dst) {
            report.error(&p.field("to"), e);
        }
    }
    if let Err(e) = validate_localities(&src) {
        report.error(&path.field("distribute"), e);
    }

    if (!lb.failover.is_empty() || !lb.failover_priority.is_empty()) && !has_outlier_detection {
        report.warning(
            path,
            "outlier detection policy must be provided for failover",
        );
    }
    for (i, f) in lb.failover.iter().enumerate() {
        validate_region_failover(&f.from, &f.to, &path.field("failover").index(i), report);
    }
}

fn validate_region_failover(from: &str, to: &str, path: &Path, report: &mut Report) {
    if from == to {
        report.error(
            path,
            "locality lb failover settings must specify different regions",
        );
    }
    if from.contains('/') || to.contains('/') {
        report.error(path, "locality lb failover only specify region");
    }
    if from.contains('*') || to.contains('*') {
        report.error(
            path,
            "locality lb failover region should not contain '*' wildcard",
        );
    }
}

fn validate_zone_aware_lb_setting(
    z: &ZoneAwareLoadBalancerSetting,
    has_outlier_detection: bool,
    path: &Path,
    report: &mut Report,
) {
    for (i, label) in z.failover_priority.iter().enumerate() {
        if matches!(label.as_str(), LABEL_TOPOLOGY_REGION | LABEL_TOPOLOGY_ZONE) {
            report.error(
                &path.field("failoverPriority").index(i),
                format!(
                    "topology label '{label}' is not allowed in zone-aware 'failoverPriority': regions and zones are handled by zone-aware routing itself"
                ),
            );
        }
    }
    if (!z.failover.is_empty() || !z.failover_priority.is_empty()) && !has_outlier_detection {
        report.warning(
            path,
            "outlier detection policy must be provided for failover",
        );
    }
    for (i, f) in z.failover.iter().enumerate() {
        validate_region_failover(&f.from, &f.to, &path.field("failover").index(i), report);
    }
}

/// Istio's `validateLocalities`: `region/zone/subzone`, at most one `*` and only at the end,
/// and no locality overlapping an earlier one.
fn validate_localities(localities: &[&str]) -> Result<(), String> {
    // region -> zone -> subzones
    let mut map: BTreeMap<&str, BTreeMap<&str, BTreeSet<&str>>> = BTreeMap::new();
    let overlap = |l: &str| format!("locality {l} overlap with previous specified ones");
    for &locality in localities {
        let stars = locality.matches('*').count();
        if stars > 1 || (stars == 1 && !locality.ends_with('*')) {
            return Err(format!(
                "locality {locality} wildcard '*' number can not exceed 1 and must be in the end"
            ));
        }
        if map.contains_key("*") {
            return Err(overlap(locality));
        }
        let items: Vec<&str> = locality.splitn(3, '/').collect();
        if items.iter().any(|s| s.is_empty()) {
            return Err(format!(
                "locality {locality} must not contain empty region/zone/subzone info"
            ));
        }
        let region = items[0];
        match items.len() {
            1 => {
                if map.contains_key(region) {
                    return Err(overlap(locality));
                }
                let mut zones = BTreeMap::new();
                zones.insert("*", BTreeSet::from(["*"]));
                map.insert(region, zones);
            }
            2 => {
                let zone = items[1];
                let zones = map.entry(region).or_default();
                if zones.contains_key("*") || zones.contains_key(zone) {
                    return Err(overlap(locality));
                }
                zones.insert(zone, BTreeSet::from(["*"]));
            }
            _ => {
                let (zone, subzone) = (items[1], items[2]);
                let zones = map.entry(region).or_default();
                if zones.contains_key("*") {
                    return Err(overlap(locality));
                }
                let subzones = zones.entry(zone).or_default();
                if subzones.contains("*") || subzones.contains(subzone) {
                    return Err(overlap(locality));
                }
                subzones.insert(subzone);
            }
        }
    }
    Ok(())
}

/// Istio's `ValidateTLS` for client TLS settings (DestinationRule, Sidecar, MeshConfig).
pub fn validate_client_tls_settings(tls: &ClientTlsSettings, path: &Path, report: &mut Report) {
    if tls.insecure_skip_verify == Some(true) {
        if tls.mode == TlsMode::Simple
            && (!tls.ca_certificates.is_empty()
                || !tls.credential_name.is_empty()
                || !tls.subject_alt_names.is_empty())
        {
            report.error(
                path,
                "cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true",
            );
        }
        if tls.mode == TlsMode::Mutual
            && (!tls.ca_certificates.is_empty() || !tls.subject_alt_names.is_empty())
        {
            report.error(
                path,
                "cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true",
            );
        }
    }
    if matches!(tls.mode, TlsMode::Simple | TlsMode::Mutual) && !tls.credential_name.is_empty() {
        if !tls.client_certificate.is_empty()
            || !tls.ca_certificates.is_empty()
            || !tls.private_key.is_empty()
            || !tls.ca_crl.is_empty()
        {
            report.error(
                path,
                "cannot specify client certificates or CA certificate or CA CRL If credentialName is set",
            );
        }
        return;
    }
    if tls.mode == TlsMode::Mutual {
        if tls.client_certificate.is_empty() {
            report.error(
                &path.field("clientCertificate"),
                "Required value: client certificate required for mutual tls",
            );
        }
        if tls.private_key.is_empty() {
            report.error(
                &path.field("privateKey"),
                "Required value: private key required for mutual tls",
            );
        }
    }
}

#[cfg(test)]
pub(super) fn localities_for_test(l: &[&str]) -> Result<(), String> {
    validate_localities(l)
}

#[cfg(test)]
pub(super) fn is_prime_for_test(x: u64) -> bool {
    is_prime(x)
}
