//! The analyzers Istio's test data does not cover (deprecation, mesh networks, gateway
//! credentials, Lightstep), as a table: each row runs one analyzer by name over YAML written here
//! and compares the (code, `Kind namespace/name`) pairs it reports, as an unordered multiset.
//!
//! Rows run through `weft_config::analyze::analyze(.., Some(&[analyzer]))`; a row with mesh
//! networks builds its `Context` with `with_mesh_networks` and runs `analyze_context`, the same
//! loop over the same analyzers.

use weft_config::analyze::multicluster_mesh_networks::parse_mesh_networks;
use weft_config::analyze::{Context, Message, analyze, analyze_context};
use weft_config::document::parse_mesh_config;
use weft_config::mesh::MeshConfig;
use weft_config::parse_str;

struct Row {
    name: &'static str,
    analyzer: &'static str,
    inputs: String,
    mesh: Option<&'static str>,
    mesh_networks: Option<&'static str>,
    expected: &'static [(&'static str, &'static str)],
}

// Base64 of self-signed P-256 certificates made for these tests (valid 2020-2120; expired in
// 2001) and of their key.
const VALID_CERT: &str = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJKekNCejZBREFnRUNBZ0VCTUFvR0NDcUdTTTQ5QkFNQ01CMHhHekFaQmdOVkJBTU1FbmRsWm5RdGRtRnMKYVdRdVpYaGhiWEJzWlRBZ0Z3MHlNREF4TURFd01EQXdNREJhR0E4eU1USXdNREV3TVRBd01EQXdNRm93SFRFYgpNQmtHQTFVRUF3d1NkMlZtZEMxMllXeHBaQzVsZUdGdGNHeGxNRmt3RXdZSEtvWkl6ajBDQVFZSUtvWkl6ajBECkFRY0RRZ0FFY00zQnlrekdjZ3dpS2RKYzkySTNFOHlUQmN3emIyVlFCR1R4M1RmM3gzakFtTHlLN3ZWQ2YxZzEKV0NIOTc4WnhGaUJHZCtSenQyZTRaTmJBdXdCYlNEQUtCZ2dxaGtqT1BRUURBZ05IQURCRUFpQUhZRmg1YWpxZgp4WVEvN3BBaWFML3Q2d2toRkVEWkFDNWxWSzYyQ3JpSGp3SWdOUHlXTnFRRGpOSThTdC94M0x2VkFlYk1PWHFjCitUR1VuYmIrV2NYSDM4Zz0KLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=";
const EXPIRED_CERT: &str = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJLakNCMGFBREFnRUNBZ0VCTUFvR0NDcUdTTTQ5QkFNQ01COHhIVEFiQmdOVkJBTU1GSGRsWm5RdFpYaHcKYVhKbFpDNWxlR0Z0Y0d4bE1CNFhEVEF3TURFd01UQXdNREF3TUZvWERUQXhNREV3TVRBd01EQXdNRm93SHpFZApNQnNHQTFVRUF3d1VkMlZtZEMxbGVIQnBjbVZrTG1WNFlXMXdiR1V3V1RBVEJnY3Foa2pPUFFJQkJnZ3Foa2pPClBRTUJCd05DQUFSd3pjSEtUTVp5RENJcDBsejNZamNUekpNRnpETnZaVkFFWlBIZE4vZkhlTUNZdklydTlVSi8KV0RWWUlmM3Z4bkVXSUVaMzVITzNaN2hrMXNDN0FGdElNQW9HQ0NxR1NNNDlCQU1DQTBnQU1FVUNJUURSbGs1MwpjZEhVWlY5aHJjSThRejY4ekxMWDQzR1dyRFBpM3lCR1pPMnNwUUlnSU1BNHg5RUVIajZvNHdpM0s0RmRYVjVJCnFsZUlNTGNwZ210TmFYOHNLU1U9Ci0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K";
const KEY: &str = "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JR0hBZ0VBTUJNR0J5cUdTTTQ5QWdFR0NDcUdTTTQ5QXdFSEJHMHdhd0lCQVFRZzJRMjJ1ZFR4Y01pdUdyWmsKVHFKRWsvUTNyMkU5OFV1MWxMeGxaYmFGYVZxaFJBTkNBQVJ3emNIS1RNWnlEQ0lwMGx6M1lqY1R6Sk1GekROdgpaVkFFWlBIZE4vZkhlTUNZdklydTlVSi9XRFZZSWYzdnhuRVdJRVozNUhPM1o3aGsxc0M3QUZ0SQotLS0tLUVORCBQUklWQVRFIEtFWS0tLS0tCg==";

const DEPRECATION: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage, namespace: foo}
spec:
  hosts: [productpage]
  http:
  - fault:
      delay: {percent: 50, fixedDelay: 5s}
    route: [{destination: {host: productpage}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: foo}
spec:
  hosts: [reviews]
  http:
  - fault:
      delay: {percentage: {value: 50}, fixedDelay: 5s}
    route: [{destination: {host: reviews}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: no-selector, namespace: default}
spec:
  egress:
  - hosts: ["./*"]
  outboundTrafficPolicy:
    mode: ALLOW_ANY
    egressProxy: {host: example, port: {number: 9080}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: registry-only, namespace: default}
spec:
  egress:
  - hosts: ["./*"]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"#;

const MULTICLUSTER_SECRETS: &str = r#"
apiVersion: v1
kind: Secret
metadata:
  name: istio-remote-secret-east
  namespace: istio-system
  labels: {istio/multiCluster: "true"}
data:
  cluster-east: a3ViZWNvbmZpZw==
---
apiVersion: v1
kind: Secret
metadata:
  name: istio-remote-secret-north
  namespace: istio-system
  labels: {istio/multiCluster: "true"}
stringData:
  cluster-north: "apiVersion: v1\nkind: Config\n"
---
apiVersion: v1
kind: Secret
metadata:
  name: unlabelled
  namespace: istio-system
data:
  cluster-west: a3ViZWNvbmZpZw==
"#;

const MESH_NETWORKS: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  meshNetworks: |
    networks:
      network1:
        endpoints:
        - fromRegistry: Kubernetes
        - fromCidr: 192.168.0.0/16
        gateways:
        - {address: 1.1.1.1, port: 15443}
      network2:
        endpoints:
        - fromRegistry: cluster-east
        - fromRegistry: cluster-north
        - fromRegistry: cluster-west
      network3:
        endpoints:
        - fromRegistry: cluster-south
"#;

const TELEMETRY: &str = r#"
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing:
  - providers: [{name: lightstep}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: otel, namespace: default}
spec:
  tracing:
  - providers: [{name: otel}]
"#;

const LIGHTSTEP_MESH: &str = r#"
extensionProviders:
- name: lightstep
  lightstep: {service: lightstep.istio-system.svc.cluster.local, port: 8080, accessToken: t}
- name: otel
  opentelemetry: {service: otel.istio-system.svc.cluster.local, port: 4317}
"#;

fn secret(name: &str, data: &[(&str, &str)]) -> String {
    let mut y = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: istio-system}}\ntype: kubernetes.io/tls\ndata:\n"
    );
    for (k, v) in data {
        y.push_str(&format!("  {k}: {v}\n"));
    }
    y + "---\n"
}

fn gateway(name: &str, credential: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: 443, name: https, protocol: HTTPS}}\n    hosts: [httpbin.example.com]\n    tls: {{mode: SIMPLE, credentialName: {credential}}}\n---\n"
    )
}

/// Istio's `gateway-secrets-validation` cases, with certificates of weft's own, plus a valid
/// Secret and a missing one.
fn gateway_credentials() -> String {
    [
        secret("valid", &[("tls.crt", VALID_CERT), ("tls.key", KEY)]),
        secret(
            "invalid-key",
            &[("cert", "aHVzaCBodXNoIGh1c2gK"), ("key", "c2VjcmV0Cg==")],
        ),
        secret("missing-key", &[("tls.cert", VALID_CERT)]),
        secret("invalid-cert", &[("tls.crt", KEY), ("tls.key", KEY)]),
        secret(
            "expired-secret",
            &[("tls.crt", EXPIRED_CERT), ("tls.key", KEY)],
        ),
        gateway("defaultgateway-valid", "valid"),
        gateway("defaultgateway-invalid-keys", "invalid-key"),
        gateway("defaultgateway-missing-keys", "missing-key"),
        gateway("defaultgateway-invalid-cert", "invalid-cert"),
        gateway("defaultgateway-expired", "expired-secret"),
        gateway("defaultgateway-bogus", "no-such-secret"),
    ]
    .concat()
}

fn rows() -> Vec<Row> {
    vec![
        Row {
            name: "deprecated fields",
            analyzer: "deprecation.DeprecationAnalyzer",
            inputs: DEPRECATION.to_string(),
            mesh: None,
            mesh_networks: None,
            expected: &[
                ("IST0002", "VirtualService foo/productpage"),
                ("IST0002", "Sidecar default/no-selector"),
            ],
        },
        Row {
            name: "unknown service registries in mesh networks",
            analyzer: "meshnetworks.MeshNetworksAnalyzer",
            inputs: MULTICLUSTER_SECRETS.to_string(),
            mesh: None,
            mesh_networks: Some(MESH_NETWORKS),
            expected: &[
                ("IST0126", "MeshNetworks istio-system/meshnetworks"),
                ("IST0126", "MeshNetworks istio-system/meshnetworks"),
            ],
        },
        Row {
            name: "mesh networks default to none, as istioctl on files",
            analyzer: "meshnetworks.MeshNetworksAnalyzer",
            inputs: MULTICLUSTER_SECRETS.to_string(),
            mesh: None,
            mesh_networks: None,
            expected: &[],
        },
        Row {
            name: "invalid gateway credentials",
            analyzer: "gateway.SecretAnalyzer",
            inputs: gateway_credentials(),
            mesh: None,
            mesh_networks: None,
            expected: &[
                ("IST0161", "Gateway defaultgateway-invalid-keys"),
                ("IST0161", "Gateway defaultgateway-missing-keys"),
                ("IST0161", "Gateway defaultgateway-invalid-cert"),
                ("IST0161", "Gateway defaultgateway-expired"),
                ("IST0101", "Gateway defaultgateway-bogus"),
            ],
        },
        Row {
            name: "lightstep tracing provider",
            analyzer: "telemetry.LightstepAnalyzer",
            inputs: TELEMETRY.to_string(),
            mesh: Some(LIGHTSTEP_MESH),
            mesh_networks: None,
            expected: &[("IST0002", "Telemetry istio-system/mesh-default")],
        },
        Row {
            name: "lightstep analyzer without lightstep providers",
            analyzer: "telemetry.LightstepAnalyzer",
            inputs: TELEMETRY.to_string(),
            mesh: None,
            mesh_networks: None,
            expected: &[],
        },
    ]
}

fn run(row: &Row) -> Vec<Message> {
    let parsed = parse_str(&row.inputs, row.name);
    assert!(
        parsed.diagnostics.is_empty(),
        "{}: {:?}",
        row.name,
        parsed.diagnostics
    );
    let mesh = match row.mesh {
        Some(m) => parse_mesh_config(m, "mesh.yaml").expect("mesh config parses"),
        None => MeshConfig::default(),
    };
    let only: &[&str] = &[row.analyzer];
    match row.mesh_networks {
        Some(n) => {
            let networks = parse_mesh_networks(n).expect("mesh networks parse");
            let ctx = Context::new(&parsed.resources, &mesh).with_mesh_networks(&networks);
            analyze_context(&ctx, Some(only))
        }
        None => analyze(&parsed.resources, &mesh, Some(only)),
    }
}

#[test]
fn extra_analyzer_cases() {
    let mut failures = Vec::new();
    for row in rows() {
        let msgs = run(&row);
        let mut got: Vec<(String, String)> = msgs
            .iter()
            .map(|m| (m.ty.code.to_string(), m.origin.clone()))
            .collect();
        let mut want: Vec<(String, String)> = row
            .expected
            .iter()
            .map(|(c, o)| (c.to_string(), o.to_string()))
            .collect();
        got.sort();
        want.sort();
        if got != want {
            let text: Vec<String> = msgs.iter().map(|m| m.to_string()).collect();
            failures.push(format!(
                "{} ({}):\n  want {want:?}\n  got  {got:?}\n  {}",
                row.name,
                row.analyzer,
                text.join("\n  ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn extra_analyzer_texts() {
    let rows = rows();
    let text = |i: usize| -> Vec<String> { run(&rows[i]).iter().map(|m| m.to_string()).collect() };
    assert_eq!(
        text(0),
        vec![
            "Warning [IST0002] (Sidecar default/no-selector) Deprecated: OutboundTrafficPolicy.EgressProxy ignored",
            "Warning [IST0002] (VirtualService foo/productpage) Deprecated: HTTPRoute.fault.delay.percent is deprecated; use HTTPRoute.fault.delay.percentage",
        ]
    );
    assert_eq!(
        text(1),
        vec![
            "Error [IST0126] (MeshNetworks istio-system/meshnetworks) Unknown service registry cluster-south in network network3",
            "Error [IST0126] (MeshNetworks istio-system/meshnetworks) Unknown service registry cluster-west in network network2",
        ]
    );
    assert!(text(3).contains(
        &"Error [IST0161] (Gateway defaultgateway-expired) The credential referenced by the Gateway defaultgateway-expired in namespace istio-system is invalid, which can cause the traffic not to work as expected.".to_string()
    ));
    assert_eq!(
        text(4),
        vec![
            "Warning [IST0002] (Telemetry istio-system/mesh-default) Deprecated: The Lightstep provider lightstep is deprecated, please migrate to OpenTelemetry provider.",
        ]
    );
}
