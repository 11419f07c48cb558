//! The model built from YAML: services, ports and protocols, endpoints, visibility, sidecar
//! scoping, PeerAuthentication and DestinationRule resolution.

use weft_control::model::{Environment, MeshSettings, MtlsMode, Protocol, Proxy, Resolution};

fn env(yaml: &str) -> Environment {
    let parsed = weft_config::parse_str(yaml, "test.yaml");
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    Environment::from_resources(&parsed.resources, MeshSettings::default())
}

fn sidecar(ns: &str, ip: &str) -> Proxy {
    Proxy::from_node_id(&format!("sidecar~{ip}~app.{ns}~{ns}.svc.cluster.local")).expect("node id")
}

const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec:
  clusterIP: 10.0.0.5
  selector: {app: reviews}
  ports:
  - {name: http-web, port: 9080, targetPort: 8080}
  - {name: grpc, port: 9090}
  - {name: db, port: 5432, appProtocol: tcp}
  - {name: auto, port: 7000}
  - {name: dns, port: 53, protocol: UDP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: reviews-abc
  namespace: bookinfo
  labels: {kubernetes.io/service-name: reviews}
addressType: IPv4
endpoints:
- addresses: [10.1.0.1]
  zone: us-east-1a
ports:
- {name: http-web, port: 8080}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: bookinfo}
spec:
  clusterIP: None
  ports: [{name: tcp, port: 3306}]
---
apiVersion: v1
kind: Service
metadata: {name: alias, namespace: bookinfo}
spec:
  type: ExternalName
  externalName: reviews.bookinfo.svc.cluster.local
"#;

#[test]
fn kubernetes_services_ports_and_protocols() {
    let e = env(SERVICES);
    let reviews = e
        .service_for_host("reviews.bookinfo.svc.cluster.local", "bookinfo")
        .expect("reviews");
    assert_eq!(reviews.addresses, vec!["10.0.0.5"]);
    assert_eq!(reviews.resolution, Resolution::ClientSideLb);
    let protocols: Vec<(u32, Protocol)> =
        reviews.ports.iter().map(|p| (p.port, p.protocol)).collect();
    assert_eq!(
        protocols,
        vec![
            (9080, Protocol::Http),
            (9090, Protocol::Grpc),
            (5432, Protocol::Tcp),
            (7000, Protocol::Unsupported),
            (53, Protocol::Udp),
        ]
    );
    assert_eq!(reviews.aliases, vec!["alias.bookinfo.svc.cluster.local"]);
    let eps = e.registry.endpoints(&reviews);
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0].port, 8080);
    assert_eq!(eps[0].service_port, 9080);
    assert_eq!(eps[0].locality.zone, "us-east-1a");

    let db = e
        .service_for_host("db.bookinfo.svc.cluster.local", "bookinfo")
        .expect("db");
    assert_eq!(db.resolution, Resolution::Passthrough);
    assert_eq!(db.address(), "0.0.0.0");
    let alias = e
        .service_for_host("alias.bookinfo.svc.cluster.local", "bookinfo")
        .expect("alias");
    assert_eq!(alias.resolution, Resolution::Alias);
}

#[test]
fn service_entries_and_workload_entries() {
    let e = env(r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: [api.example.com, www.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 443, name: https, protocol: HTTPS}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vm, namespace: default}
spec:
  hosts: [vm.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 8080}]
  workloadSelector: {labels: {app: vm}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1, namespace: default}
spec: {address: 10.9.0.1, labels: {app: vm, version: v1}, locality: us/east/a}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: other, namespace: default}
spec: {address: 10.9.0.2, labels: {app: other}}
"#);
    let api = e
        .service_for_host("api.example.com", "default")
        .expect("api");
    assert!(api.mesh_external);
    assert_eq!(api.resolution, Resolution::DnsLb);
    let eps = e.registry.endpoints(&api);
    assert_eq!(
        eps[0].address, "api.example.com",
        "DNS services resolve their own host"
    );
    assert!(e.service_for_host("www.example.com", "default").is_some());

    let vm = e.service_for_host("vm.internal", "default").expect("vm");
    let eps = e.registry.endpoints(&vm);
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0].address, "10.9.0.1");
    assert_eq!(eps[0].port, 8080);
    assert_eq!(eps[0].locality.region, "us");
    assert_eq!(eps[0].locality.sub_zone, "a");
}

#[test]
fn export_to_limits_visibility() {
    let e = env(r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: private, namespace: a}
spec:
  hosts: [private.example.com]
  exportTo: ["."]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
---
apiVersion: v1
kind: Service
metadata:
  name: shared
  namespace: a
  annotations: {networking.istio.io/exportTo: "b"}
spec:
  clusterIP: 10.0.0.9
  ports: [{name: http, port: 80}]
"#);
    assert!(e.service_for_host("private.example.com", "a").is_some());
    assert!(e.service_for_host("private.example.com", "b").is_none());
    assert!(
        e.service_for_host("shared.a.svc.cluster.local", "b")
            .is_some()
    );
    assert!(
        e.service_for_host("shared.a.svc.cluster.local", "c")
            .is_none()
    );
    assert!(
        e.service_for_host("shared.a.svc.cluster.local", "a")
            .is_none()
    );
}

#[test]
fn sidecar_scope_imports_by_namespace_and_host() {
    let mut yaml = SERVICES.to_string();
    yaml.push_str(
        r#"
---
apiVersion: v1
kind: Service
metadata: {name: other, namespace: other}
spec: {clusterIP: 10.0.0.7, ports: [{name: http, port: 80}]}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: bookinfo}
spec:
  egress:
  - hosts: ["./reviews.bookinfo.svc.cluster.local", "other/*"]
"#,
    );
    let e = env(&yaml);
    let scope = e.sidecar_scope(&sidecar("bookinfo", "10.1.0.9"));
    let mut hosts: Vec<String> = scope
        .services()
        .iter()
        .map(|s| s.hostname.clone())
        .collect();
    hosts.sort();
    assert_eq!(
        hosts,
        vec![
            "other.other.svc.cluster.local",
            "reviews.bookinfo.svc.cluster.local"
        ]
    );
    // A proxy elsewhere has no Sidecar and imports everything.
    let scope = e.sidecar_scope(&sidecar("default", "10.1.0.10"));
    assert_eq!(scope.services().len(), 4);
}

#[test]
fn peer_authentication_precedence() {
    let e = env(r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: ns, namespace: relaxed}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: wl, namespace: relaxed}
spec:
  selector: {matchLabels: {app: legacy}}
  mtls: {mode: DISABLE}
  portLevelMtls: {"8443": {mode: STRICT}}
"#);
    assert_eq!(
        e.mtls_mode(&sidecar("default", "1.1.1.1"), Some(80)),
        MtlsMode::Strict
    );
    let relaxed = sidecar("relaxed", "1.1.1.2");
    assert_eq!(e.mtls_mode(&relaxed, Some(80)), MtlsMode::Permissive);
    let mut legacy = sidecar("relaxed", "1.1.1.3");
    legacy.labels.insert("app".into(), "legacy".into());
    assert_eq!(e.mtls_mode(&legacy, Some(80)), MtlsMode::Disable);
    assert_eq!(e.mtls_mode(&legacy, Some(8443)), MtlsMode::Strict);
    assert_eq!(e.mtls_port_overrides(&legacy), vec![8443]);
}

#[test]
fn destination_rules_prefer_client_namespace_and_merge() {
    let e = env(r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a, namespace: bookinfo, creationTimestamp: "2020-01-01T00:00:00Z"}
spec:
  host: reviews
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: b, namespace: bookinfo, creationTimestamp: "2021-01-01T00:00:00Z"}
spec:
  host: reviews
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
  subsets: [{name: v1, labels: {version: other}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: client, namespace: frontend}
spec:
  host: reviews.bookinfo.svc.cluster.local
  subsets: [{name: mine, labels: {version: v3}}]
"#);
    let host = "reviews.bookinfo.svc.cluster.local";
    let dr = e
        .destination_rule(&sidecar("bookinfo", "1.1.1.1"), host, "bookinfo")
        .expect("rule");
    let subsets: Vec<&str> = dr.subsets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(subsets, vec!["v1", "v2"]);
    assert_eq!(dr.sources, vec!["bookinfo/a", "bookinfo/b"]);
    let dr = e
        .destination_rule(&sidecar("frontend", "1.1.1.2"), host, "bookinfo")
        .expect("rule");
    assert_eq!(dr.sources, vec!["frontend/client"]);
}
