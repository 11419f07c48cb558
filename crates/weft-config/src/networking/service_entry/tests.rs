//! Unit tests for rules the conformance data does not cover.

use super::*;
use crate::{Severity, parse_str, validate::validate_resource};

/// Errors and warnings of a ServiceEntry with this spec (YAML, indented by two spaces).
fn check(spec: &str) -> (Vec<String>, Vec<String>) {
    let doc = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: se\n  namespace: ns\nspec:\n{spec}"
    );
    let parsed = parse_str(&doc, "se.yaml");
    let mut errors: Vec<String> = parsed.diagnostics.iter().map(|d| d.to_string()).collect();
    let mut warnings = Vec::new();
    for r in &parsed.resources {
        for d in validate_resource(r) {
            match d.severity {
                Severity::Error => errors.push(d.to_string()),
                Severity::Warning => warnings.push(d.to_string()),
            }
        }
    }
    (errors, warnings)
}

#[track_caller]
fn assert_error(spec: &str, want: &str) {
    let (errors, _) = check(spec);
    assert!(
        errors.iter().any(|e| e.contains(want)),
        "want an error containing {want:?}, got {errors:?}"
    );
}

#[track_caller]
fn assert_valid(spec: &str) {
    let (errors, _) = check(spec);
    assert!(errors.is_empty(), "{errors:?}");
}

const PORTS: &str = "  ports:\n  - {number: 80, name: http, protocol: HTTP}\n";

#[test]
fn parses_every_field() {
    let spec = "  hosts: [db.example.com]\n  addresses: [10.0.0.0/24]\n  ports:\n  - {number: 5432, name: tcp-db, protocol: TCP, targetPort: 15432}\n  location: MESH_INTERNAL\n  resolution: STATIC\n  endpoints:\n  - {address: 10.0.0.2, ports: {tcp-db: 5433}, labels: {app: db}, network: n1, locality: r/z, weight: 3, serviceAccount: db}\n  exportTo: [.]\n  subjectAltNames: [spiffe://cluster.local/ns/ns/sa/db]\n";
    assert_valid(spec);
    let doc = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: se}}\nspec:\n{spec}"
    );
    let parsed = parse_str(&doc, "se.yaml");
    let crate::Spec::ServiceEntry(se) = &parsed.resources[0].spec else {
        panic!("not a ServiceEntry");
    };
    assert_eq!(se.location, Location::MeshInternal);
    assert_eq!(se.resolution, Resolution::Static);
    assert_eq!(se.ports[0].target_port, 15432);
    assert_eq!(se.endpoints[0].ports["tcp-db"], 5433);
    assert_eq!(se.endpoints[0].service_account, "db");
    let json = serde_json::to_value(se).expect("serialize");
    assert_eq!(json["resolution"], "STATIC");
    assert_eq!(json["ports"][0]["targetPort"], 15432);
    let back: ServiceEntry = serde_json::from_value(json).expect("deserialize");
    assert_eq!(&back, se);
}

#[test]
fn snake_case_and_unknown_values() {
    assert_valid(&format!(
        "  hosts: [a.com]\n  workload_selector: {{labels: {{app: a}}}}\n  resolution: STATIC\n{PORTS}"
    ));
    assert_error(
        &format!("  hosts: [a.com]\n  resolution: MAGIC\n{PORTS}"),
        "Unsupported value: \"MAGIC\"",
    );
    assert_error(
        &format!("  hosts: [a.com]\n  workloadSelector: {{matchLabels: {{app: a}}}}\n{PORTS}"),
        "unknown field `matchLabels`",
    );
}

#[test]
fn cidr_needs_none_or_static() {
    assert_error(
        &format!("  hosts: [a.com]\n  addresses: [10.0.0.0/8]\n  resolution: DNS\n{PORTS}"),
        "CIDR addresses are allowed only for NONE/STATIC resolution types",
    );
    assert_error(
        &format!("  hosts: [a.com]\n  addresses: [not-an-ip]\n{PORTS}"),
        "is not a valid IP",
    );
}

#[test]
fn dns_round_robin_allows_one_endpoint() {
    assert_error(
        &format!(
            "  hosts: [a.com]\n  resolution: DNS_ROUND_ROBIN\n  endpoints: [{{address: b.com}}, {{address: c.com}}]\n{PORTS}"
        ),
        "DNS_ROUND_ROBIN mode cannot have multiple endpoints",
    );
    assert_valid(&format!(
        "  hosts: ['*.a.com']\n  resolution: DNS_ROUND_ROBIN\n  endpoints: [{{address: b.com}}]\n{PORTS}"
    ));
}

#[test]
fn dns_endpoint_addresses_must_be_ip_or_fqdn() {
    assert_error(
        &format!(
            "  hosts: [a.com]\n  resolution: DNS\n  endpoints: [{{address: 'bad_host'}}]\n{PORTS}"
        ),
        "is not a valid FQDN or an IP address",
    );
}

#[test]
fn multiple_hosts_need_http_or_tls_ports() {
    assert_error(
        "  hosts: [a.com, b.com]\n  resolution: DNS\n  ports:\n  - {number: 5432, name: tcp, protocol: TCP}\n",
        "multiple hosts provided with non-HTTP, non-TLS ports",
    );
    assert_valid(
        "  hosts: [a.com, b.com]\n  resolution: NONE\n  addresses: [10.1.1.1]\n  ports:\n  - {number: 5432, name: tcp, protocol: TCP}\n",
    );
}

#[test]
fn ports_need_a_known_protocol() {
    assert_error(
        "  hosts: [a.com]\n  ports:\n  - {number: 80, name: http, protocol: QUIC}\n",
        "unsupported protocol",
    );
}

#[test]
fn unix_endpoints() {
    assert_valid(
        "  hosts: [uds.local]\n  resolution: STATIC\n  ports:\n  - {number: 80, name: http, protocol: HTTP}\n  endpoints: [{address: 'unix://@abstract'}]\n",
    );
    assert_error(
        "  hosts: [uds.local]\n  resolution: STATIC\n  ports:\n  - {number: 80, name: http, protocol: HTTP}\n  endpoints: [{address: 'unix:///dir/'}]\n",
        "UDS may not be a dir",
    );
}

#[test]
fn export_to_allows_none_alone() {
    assert_error(
        &format!("  hosts: [a.com]\n  exportTo: ['~', '*']\n{PORTS}"),
        "cannot export service entry to no one (~) and someone",
    );
}

#[test]
fn dynamic_dns_warns_about_ignored_endpoints() {
    let (errors, warnings) = check(
        "  hosts: ['*.a.com']\n  resolution: DYNAMIC_DNS\n  ports:\n  - {number: 443, name: tls, protocol: TLS}\n  endpoints: [{address: 1.1.1.1}]\n",
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        warnings.iter().any(|w| w.contains("ignored")),
        "{warnings:?}"
    );
}

#[test]
fn partial_wildcards_are_warned() {
    let (errors, warnings) = check(&format!("  hosts: ['*x']\n{PORTS}"));
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        warnings.iter().any(|w| w.contains("partial wildcard")),
        "{warnings:?}"
    );
}
