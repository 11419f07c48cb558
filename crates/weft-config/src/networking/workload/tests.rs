//! Unit tests for rules the conformance data does not cover.

use super::*;
use crate::{Severity, parse_str, validate::validate_resource};

fn errors(kind: &str, spec: &str) -> Vec<String> {
    let doc = format!(
        "apiVersion: networking.istio.io/v1\nkind: {kind}\nmetadata:\n  name: w\nspec:\n{spec}"
    );
    let parsed = parse_str(&doc, "w.yaml");
    let mut out: Vec<String> = parsed.diagnostics.iter().map(|d| d.to_string()).collect();
    for r in &parsed.resources {
        out.extend(
            validate_resource(r)
                .into_iter()
                .filter(|d| d.severity == Severity::Error)
                .map(|d| d.to_string()),
        );
    }
    out
}

#[track_caller]
fn assert_error(kind: &str, spec: &str, want: &str) {
    let errs = errors(kind, spec);
    assert!(
        errs.iter().any(|e| e.contains(want)),
        "want an error containing {want:?}, got {errs:?}"
    );
}

#[track_caller]
fn assert_valid(kind: &str, spec: &str) {
    let errs = errors(kind, spec);
    assert!(errs.is_empty(), "{errs:?}");
}

#[test]
fn workload_entry_addresses_and_ports() {
    assert_valid(
        "WorkloadEntry",
        "  address: 2001:db8::1\n  ports: {http: 8080}\n",
    );
    assert_error(
        "WorkloadEntry",
        "  address: bad_host\n",
        "is not a valid FQDN or an IP address",
    );
    assert_error(
        "WorkloadEntry",
        "  address: 1.1.1.1\n  ports: {http: 0}\n",
        "port must be between 1-65535",
    );
    assert_error(
        "WorkloadEntry",
        "  address: 1.1.1.1\n  labels: {'a b': c}\n",
        "invalid label key",
    );
    assert_valid(
        "WorkloadEntry",
        "  address: 1.1.1.1\n  service_account: sa\n",
    );
}

#[test]
fn workload_group_needs_template_and_one_probe_method() {
    assert_error(
        "WorkloadGroup",
        "  probe: {tcpSocket: {port: 80}}\n",
        "spec.template: Required value",
    );
    assert_error(
        "WorkloadGroup",
        "  template: {}\n  probe: {tcpSocket: {port: 80}, exec: {command: ['true']}}\n",
        "only one of httpGet, tcpSocket, exec or grpc",
    );
    assert_error(
        "WorkloadGroup",
        "  template: {}\n  probe: {periodSeconds: -1, grpc: {port: 9000}}\n",
        "periodSeconds must be non-negative",
    );
    assert_error(
        "WorkloadGroup",
        "  template: {}\n  probe: {grpc: {}}\n",
        "spec.probe.grpc.port",
    );
    assert_valid(
        "WorkloadGroup",
        "  template: {}\n  probe: {grpc: {port: 9000, service: health}}\n",
    );
}

#[test]
fn http_probe_scheme_and_headers() {
    assert_error(
        "WorkloadGroup",
        "  template: {}\n  probe: {httpGet: {port: 80, scheme: FTP}}\n",
        "scheme must be one of [HTTP, HTTPS]",
    );
    assert_error(
        "WorkloadGroup",
        "  template: {}\n  probe: {httpGet: {port: 80, httpHeaders: [{name: 'bad header', value: x}]}}\n",
        "is not a valid header name",
    );
    assert_error(
        "WorkloadGroup",
        "  template: {}\n  probe: {exec: {command: ['']}}\n",
        "at least 1 chars long",
    );
}

#[test]
fn workload_group_template_keeps_schema_rules_but_not_address() {
    assert_valid("WorkloadGroup", "  template: {ports: {http: 80}}\n");
    assert_error(
        "WorkloadGroup",
        "  template: {address: 'unix:///s', ports: {http: 80}}\n",
        "UDS may not include ports",
    );
    assert_error(
        "WorkloadGroup",
        "  metadata: {labels: {'-bad': x}}\n  template: {}\n",
        "invalid label key",
    );
}

#[test]
fn round_trip() {
    let g = WorkloadGroup {
        template: Some(WorkloadEntry {
            service_account: "sa".into(),
            ..Default::default()
        }),
        probe: Some(ReadinessProbe {
            http_get: Some(HttpHealthCheckConfig {
                port: 80,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let json = serde_json::to_value(&g).expect("serialize");
    assert_eq!(
        json,
        serde_json::json!({"template": {"serviceAccount": "sa"}, "probe": {"httpGet": {"port": 80}}})
    );
    let back: WorkloadGroup = serde_json::from_value(json).expect("deserialize");
    assert_eq!(back, g);
}
