//! Sidecar rules beyond Istio's conformance cases.

use crate::networking::virtual_service::tests::check_kind;

fn check(spec: &str) -> (Vec<String>, Vec<String>) {
    check_kind("Sidecar", "default", spec)
}

fn assert_ok(spec: &str) {
    let (e, _) = check(spec);
    assert!(e.is_empty(), "unexpected errors: {e:#?}");
}

fn assert_err(spec: &str, want: &str) {
    let (e, _) = check(spec);
    assert!(
        e.iter().any(|m| m.contains(want)),
        "expected an error containing {want:?}, got {e:#?}"
    );
}

#[test]
fn workload_selector() {
    assert_err(
        "workloadSelector: {labels: {app: '*'}}\negress:\n- hosts: ['./*']\n",
        "wildcard is not supported in selector: \"app=*\"",
    );
    let long = "v".repeat(64);
    assert_err(
        &format!("workloadSelector: {{labels: {{app: {long}}}}}\negress:\n- hosts: ['./*']\n"),
        "may not be more than 63 bytes",
    );
    assert_ok(
        "workload_selector: {labels: {app: ratings}}\negress:\n- hosts: ['./*', 'istio-system/*']\n",
    );
}

#[test]
fn egress_listeners() {
    assert_ok(
        "egress:\n- port: {number: 0, name: uds, protocol: HTTP}\n  bind: unix:///var/run/a.sock\n  captureMode: NONE\n  hosts: ['./*']\n- port: {number: 9080, protocol: HTTP}\n  bind: 127.0.0.1\n  captureMode: NONE\n  hosts: ['./*']\n- hosts: ['*/*']\n",
    );
    assert_err(
        "egress:\n- port: {number: 0}\n  bind: unix:///a.sock\n  hosts: ['./*']\n- port: {number: 0}\n  bind: unix:///a.sock\n  hosts: ['./*']\n",
        "unix domain socket values for listeners must be unique",
    );
    assert_err(
        "egress:\n- hosts: ['./*']\n- hosts: ['*/*']\n",
        "the egress listener with empty port should be the last listener in the list",
    );
    assert_err(
        "egress:\n- port: {number: 80, targetPort: 8080}\n  hosts: ['./*']\n",
        "targetPort has no impact on Sidecars",
    );
    assert_err(
        "egress:\n- port: {number: 80}\n  bind: not-an-ip\n  hosts: ['./*']\n",
        "not-an-ip is not a valid IP",
    );
    assert_err(
        "egress:\n- port: {number: 80, name: Bad_Name}\n  hosts: ['./*']\n",
        "invalid port name: Bad_Name",
    );
    assert_err(
        "egress:\n- port: {number: 80}\n",
        "egress listener must contain at least one host",
    );
    assert_err(
        "egress:\n- hosts: [ns/shortname]\n",
        "short names (non FQDN) are not allowed",
    );
}

#[test]
fn ingress_listeners() {
    assert_ok(
        "ingress:\n- port: {number: 9080, protocol: HTTP, name: http}\n  defaultEndpoint: unix:///var/run/app.sock\n- port: {number: 9443, protocol: HTTPS, name: https}\n  defaultEndpoint: 127.0.0.1:9443\n  tls: {mode: SIMPLE, serverCertificate: /c, privateKey: /k}\n",
    );
    assert_err(
        "ingress:\n- port: {number: 9080}\n  defaultEndpoint: 127.0.0.1:0\n",
        "port number 0 must be in the range 1..65535",
    );
    assert_err(
        "ingress:\n- port: {number: 9080}\n  defaultEndpoint: localhost\n",
        "missing port in address",
    );
    let (e, w) = check(
        "ingress:\n- port: {number: 3306, protocol: TCP}\n  connectionPool: {http: {maxRetries: 3}}\n",
    );
    assert!(e.is_empty(), "{e:?}");
    assert!(
        w.iter()
            .any(|m| m.contains("HTTP connection pool settings are configured for port 3306")),
        "{w:?}"
    );
    assert_err(
        "ingress:\n- port: {number: 3306, protocol: TCP}\n  connectionPool: {}\n",
        "connection pool must have at least one field",
    );
}

#[test]
fn outbound_traffic_policy() {
    assert_ok(
        "outboundTrafficPolicy:\n  mode: ALLOW_ANY\n  egressProxy: {host: egress.istio-system.svc.cluster.local, port: {number: 80}}\n",
    );
    assert_ok("outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n");
    assert_err(
        "outboundTrafficPolicy: {mode: DENY_ALL}\n",
        "unknown variant `DENY_ALL`",
    );
}

#[test]
fn round_trip() {
    let spec = "ingress:\n- port: {number: 9080, protocol: HTTP, name: http}\n  captureMode: IPTABLES\n  connectionPool: {tcp: {maxConnections: 10}}\negress:\n- hosts: ['./*']\noutboundTrafficPolicy: {mode: ALLOW_ANY}\n";
    let v: serde_json::Value = serde_norway::from_str(spec).expect("yaml");
    let s: super::Sidecar = serde_json::from_value(v).expect("typed");
    assert_eq!(s.ingress[0].capture_mode, super::CaptureMode::Iptables);
    let json = serde_json::to_value(&s).expect("serialize");
    assert_eq!(json["outboundTrafficPolicy"]["mode"], "ALLOW_ANY");
    let back: super::Sidecar = serde_json::from_value(json).expect("reparse");
    assert_eq!(back, s);
}
