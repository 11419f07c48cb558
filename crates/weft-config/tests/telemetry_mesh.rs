//! Telemetry, WasmPlugin, EnvoyFilter, ProxyConfig and MeshConfig: parsing and the Istio
//! validation rules the conformance data does not cover.

use std::path::PathBuf;

use weft_config::document::parse_mesh_config;
use weft_config::validate::{Path, Report, validate_resource};
use weft_config::{Severity, Spec, parse_str};

fn conformance_dir() -> PathBuf {
    if let Ok(d) = std::env::var("WEFT_CONFORMANCE_DIR") {
        return PathBuf::from(d);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/istio")
}

/// Parses one resource and returns (errors, warnings) as display strings.
fn check(yaml: &str) -> (Vec<String>, Vec<String>) {
    let parsed = parse_str(yaml, "t.yaml");
    let mut errs: Vec<String> = parsed.diagnostics.iter().map(|d| d.to_string()).collect();
    let mut warns = Vec::new();
    assert!(
        !parsed.resources.is_empty() || !errs.is_empty(),
        "no resource parsed"
    );
    for r in &parsed.resources {
        for d in validate_resource(r) {
            match d.severity {
                Severity::Error => errs.push(d.to_string()),
                Severity::Warning => warns.push(d.to_string()),
            }
        }
    }
    (errs, warns)
}

fn assert_err(yaml: &str, want: &str) {
    let (errs, _) = check(yaml);
    assert!(
        errs.iter().any(|e| e.contains(want)),
        "expected an error containing {want:?}, got {errs:#?}"
    );
}

fn assert_ok(yaml: &str) {
    let (errs, _) = check(yaml);
    assert!(errs.is_empty(), "expected no error, got {errs:#?}");
}

fn telemetry(spec: &str) -> String {
    format!(
        "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: t, namespace: default}}\nspec:\n{spec}"
    )
}

fn wasm(spec: &str) -> String {
    format!(
        "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {{name: w, namespace: default}}\nspec:\n{spec}"
    )
}

fn envoy_filter(spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {{name: e, namespace: default}}\nspec:\n{spec}"
    )
}

fn mesh_issues(yaml: &str) -> Report {
    let mc = parse_mesh_config(yaml, "mesh.yaml").unwrap_or_else(|d| panic!("{d}"));
    let mut report = Report::default();
    mc.validate_at(&Path::root(""), &mut report);
    report
}

fn mesh_errors(yaml: &str) -> Vec<String> {
    mesh_issues(yaml)
        .issues
        .into_iter()
        .filter(|i| i.severity == Severity::Error)
        .map(|i| format!("{}: {}", i.path, i.message))
        .collect()
}

#[test]
fn analyzer_meshconfig_files_parse_and_validate() {
    let dir = conformance_dir().join("analyzers/testdata");
    let mut files = vec![dir.join("common/meshconfig.yaml")];
    for e in std::fs::read_dir(&dir).expect("testdata") {
        let p = e.expect("entry").path();
        if p.file_name()
            .is_some_and(|n| n.to_string_lossy().contains("mesh"))
            && p.is_file()
        {
            files.push(p);
        }
    }
    let cases: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(conformance_dir().join("analyzers/cases.json")).expect("cases"),
    )
    .expect("json");
    let mut mesh_files = Vec::new();
    for c in cases.as_array().expect("list") {
        if let Some(m) = c.get("mesh").and_then(|m| m.as_str()) {
            mesh_files.push(conformance_dir().join("analyzers").join(m));
        }
    }
    assert!(!mesh_files.is_empty());
    for f in mesh_files.iter().chain(files.iter().take(1)) {
        let text = std::fs::read_to_string(f).expect("read");
        let mc = parse_mesh_config(&text, &f.display().to_string())
            .unwrap_or_else(|d| panic!("{}: {d}", f.display()));
        let mut report = Report::default();
        mc.validate_at(&Path::root(""), &mut report);
        assert!(!report.has_errors(), "{}: {:?}", f.display(), report.issues);
    }
    let text = std::fs::read_to_string(dir.join("common/meshconfig.yaml")).expect("read");
    let mc = parse_mesh_config(&text, "m").expect("parse");
    let image = mc.default_config.and_then(|d| d.image).expect("image");
    assert_eq!(image.image_type, "distroless");
}

#[test]
fn meshconfig_full_example_parses() {
    let yaml = r#"
accessLogFile: /dev/stdout
accessLogEncoding: JSON
enableTracing: true
rootNamespace: istio-system
trustDomain: cluster.local
trustDomainAliases: [td2, "td3."]
connectTimeout: 10s
protocolDetectionTimeout: 0s
outboundTrafficPolicy: {mode: REGISTRY_ONLY}
inboundTrafficPolicy: {mode: LOCALHOST}
defaultServiceExportTo: ["*"]
localityLbSetting:
  enabled: true
  failover: [{from: us-east, to: us-west}]
defaultHttpRetryPolicy: {attempts: 3}
tcpKeepalive: {time: 10s}
caCertificates:
- pem: "-----BEGIN CERTIFICATE-----"
  trustDomains: [cluster.local]
serviceSettings:
- settings: {clusterLocal: true}
  hosts: ["*.foo.svc.cluster.local"]
meshMTLS: {minProtocolVersion: TLSV1_3}
tlsDefaults: {ecdhCurves: [P-256]}
pathNormalization: {normalization: MERGE_SLASHES}
discoverySelectors:
- matchLabels: {env: prod}
- matchExpressions: [{key: app, operator: In, values: [a, b]}]
defaultProviders: {tracing: [otel], accessLogging: [envoy]}
extensionProviders:
- name: otel
  opentelemetry:
    service: opentelemetry-collector.observability.svc.cluster.local
    port: 4317
    resourceDetectors: {environment: {}}
- name: envoy
  envoyFileAccessLog:
    path: /dev/stdout
    logFormat: {labels: {code: "%RESPONSE_CODE%"}}
- name: authz
  envoyExtAuthzHttp:
    service: ext-authz.foo.svc.cluster.local
    port: 8000
    includeRequestHeadersInCheck: [x-ext-authz]
    includeRequestBodyInCheck: {maxRequestBytes: 100}
- name: zipkin
  zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411, enable64bitTraceId: true}
- name: prom
  prometheus: {}
- name: grpc-als
  envoy_http_als: {service: "ns/als.example.com", port: 9000}
defaultConfig:
  discoveryAddress: istiod.istio-system.svc:15012
  drainDuration: 45s
  proxyMetadata: {ISTIO_META_DNS_CAPTURE: "true"}
  holdApplicationUntilProxyStarts: true
  tracing:
    zipkin: {address: "$(HOST_IP):9411"}
    sampling: 1.0
  proxyStatsMatcher: {inclusionRegexps: [".*circuit_breakers.*"]}
  privateKeyProvider: {cryptomb: {pollDelay: 10ms}}
  image: {imageType: distroless}
  gatewayTopology: {numTrustedProxies: 1}
"#;
    let errs = mesh_errors(yaml);
    assert!(errs.is_empty(), "{errs:#?}");
    let warnings = mesh_issues(yaml).issues;
    assert!(warnings.is_empty(), "{warnings:#?}");
    // The istio ConfigMap form carries the same text under data.mesh.
    let cm = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio}}\ndata:\n  mesh: |\n{}",
        yaml.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    );
    assert!(parse_mesh_config(&cm, "cm.yaml").is_ok());
}

#[test]
fn meshconfig_rejects_unknown_fields_and_enum_values() {
    assert!(parse_mesh_config("bogusField: 1\n", "m").is_err());
    assert!(parse_mesh_config("outboundTrafficPolicy: {mode: SOMETIMES}\n", "m").is_err());
    assert!(parse_mesh_config("defaultConfig: {bogus: 1}\n", "m").is_err());
    assert!(parse_mesh_config("connectTimeout: ten\n", "m").is_err());
    let err = parse_mesh_config(
        "extensionProviders: [{name: a, zipkin: {srvice: x}}]\n",
        "m",
    )
    .expect_err("unknown field");
    assert!(
        err.to_string().contains("extensionProviders[0].zipkin"),
        "{err}"
    );
}

#[test]
fn meshconfig_validation_rules() {
    let e = mesh_errors("proxyListenPort: 70000\n");
    assert!(
        e.iter().any(|m| m.contains("invalid proxy listen port")),
        "{e:?}"
    );
    let e = mesh_errors("connectTimeout: 2h\n");
    assert!(
        e.iter().any(|m| m.contains("invalid connect timeout")),
        "{e:?}"
    );
    let e = mesh_errors("connectTimeout: 0.5ms\n");
    assert!(e.iter().any(|m| m.contains("greater than 1ms")), "{e:?}");
    let e = mesh_errors("protocolDetectionTimeout: 1.5ms\n");
    assert!(e.iter().any(|m| m.contains("ms precision")), "{e:?}");
    let e = mesh_errors("trustDomain: Bad_Domain\n");
    assert!(
        e.iter().any(|m| m.starts_with("trustDomain: trustDomain:")),
        "{e:?}"
    );
    let e = mesh_errors("trustDomainAliases: [good.example, \"bad..example\"]\n");
    assert!(
        e.iter().any(|m| m.contains("trustDomainAliases[1]")),
        "{e:?}"
    );
    let e = mesh_errors("serviceSettings: [{hosts: [\"foo.*.com\"]}]\n");
    assert!(
        e.iter().any(|m| m.contains("serviceSettings[0], host")),
        "{e:?}"
    );
    let e = mesh_errors("meshMTLS: {ecdhCurves: [P-256]}\n");
    assert!(
        e.iter().any(|m| m.contains("does not support ECDH")),
        "{e:?}"
    );
    let e = mesh_errors("defaultConfig: {drainDuration: 1.5s}\n");
    assert!(e.iter().any(|m| m.contains("seconds precision")), "{e:?}");
    let e = mesh_errors("defaultConfig: {discoveryAddress: istiod}\n");
    assert!(
        e.iter().any(|m| m.contains("invalid discovery address")),
        "{e:?}"
    );
    let e = mesh_errors("defaultConfig: {proxyAdminPort: 0, statusPort: 99999}\n");
    assert!(e.iter().any(|m| m.contains("invalid status port")), "{e:?}");
    let e = mesh_errors("defaultConfig: {controlPlaneAuthPolicy: INHERIT}\n");
    assert!(
        e.iter()
            .any(|m| m.contains("unrecognized control plane auth policy")),
        "{e:?}"
    );
    let e = mesh_errors("defaultConfig: {tracing: {lightstep: {address: \"ls:8080\"}}}\n");
    assert!(
        e.iter().any(|m| m.contains("access token is required")),
        "{e:?}"
    );
    let e = mesh_errors("defaultConfig: {privateKeyProvider: {qat: {}}}\n");
    assert!(
        e.iter().any(|m| m.contains("pollDelay is required")),
        "{e:?}"
    );
    let e = mesh_errors("defaultConfig: {privateKeyProvider: {cryptomb: {pollDelay: 0s}}}\n");
    assert!(
        e.iter().any(|m| m.contains("pollDelay must be non zero")),
        "{e:?}"
    );
    let e = mesh_errors(
        "defaultConfig: {serviceCluster: a, tracingServiceName: CANONICAL_NAME_ONLY}\n",
    );
    assert!(
        e.iter().any(|m| m.contains("only one of serviceCluster")),
        "{e:?}"
    );
    let e = mesh_errors("caCertificates: [{pem: a, spiffeBundleUrl: b}]\n");
    assert!(e.iter().any(|m| m.contains("only one of pem")), "{e:?}");
}

#[test]
fn meshconfig_locality_lb_rules() {
    let e = mesh_errors(
        "localityLbSetting: {distribute: [{from: a/b/c, to: {x: 100}}], failover: [{from: a, to: b}]}\n",
    );
    assert!(
        e.iter().any(|m| m.contains("'distribute' and 'failover'")),
        "{e:?}"
    );
    let e = mesh_errors("localityLbSetting: {distribute: [{from: a/*, to: {x: 60, y: 30}}]}\n");
    assert!(
        e.iter()
            .any(|m| m.contains("total locality weight 90 != 100")),
        "{e:?}"
    );
    let e = mesh_errors("localityLbSetting: {failover: [{from: a, to: a}]}\n");
    assert!(e.iter().any(|m| m.contains("different regions")), "{e:?}");
    let e = mesh_errors(
        "localityLbSetting: {failover: [{from: a, to: b}], failoverPriority: [topology.kubernetes.io/zone]}\n",
    );
    assert!(e.iter().any(|m| m.contains("topology label")), "{e:?}");
    let e = mesh_errors(
        "localityLbSetting: {distribute: [{from: \"a/*\", to: {x: 100}}, {from: a/b, to: {y: 100}}]}\n",
    );
    assert!(e.iter().any(|m| m.contains("overlap")), "{e:?}");
    assert!(mesh_errors("localityLbSetting: {distribute: [{from: \"us/*\", to: {\"us/a/*\": 80, \"us/b/*\": 20}}]}\n").is_empty());
}

#[test]
fn meshconfig_extension_provider_problems_are_warnings() {
    let r = mesh_issues(
        r#"
extensionProviders:
- name: a
  zipkin: {service: "zipkin", port: 0}
- name: a
  prometheus: {}
- name: ""
  envoyExtAuthzGrpc: {service: ext.foo.svc.cluster.local, port: 9000, statusOnError: "999"}
- name: none
- name: both
  prometheus: {}
  stackdriver: {}
- name: otel
  opentelemetry: {service: otel.x.svc, port: 4317, http: {path: /v1/traces}, grpc: {}}
- name: http
  envoyExtAuthzHttp: {service: "ns/ext.example.com", port: 80, pathPrefix: check}
"#,
    );
    assert!(!r.has_errors(), "{:?}", r.issues);
    let text: Vec<String> = r.issues.iter().map(|i| i.message.clone()).collect();
    for want in [
        "invalid extension provider a: invalid service port: port number 0",
        "duplicate extension provider name a",
        "empty extension provider name",
        "unsupported statusOnError value 999",
        "invalid extension provider none: unsupported provider",
        "only one provider kind may be set",
        "cannot specify both grpc and http",
        "pathPrefix should begin with `/`",
    ] {
        assert!(
            text.iter().any(|t| t.contains(want)),
            "{want:?} not in {text:#?}"
        );
    }
}

#[test]
fn meshconfig_resource_form_validates() {
    let (errs, _) = check(
        "apiVersion: mesh.weft.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: mesh}\nspec:\n  proxyListenPort: -1\n",
    );
    assert!(
        errs.iter().any(|e| e.contains("spec.proxyListenPort")),
        "{errs:?}"
    );
}

#[test]
fn mesh_networks_rules() {
    use weft_config::mesh::MeshNetworks;
    let nets: MeshNetworks = serde_norway::from_str(
        r#"
networks:
  n1:
    endpoints: [{fromCidr: 10.0.0.0/8}, {fromRegistry: Kubernetes}]
    gateways: [{address: 1.2.3.4, port: 0}, {registryServiceName: "gw.istio-system.svc.cluster.local", port: 15443}]
"#,
    )
    .expect("parse");
    let mut r = Report::default();
    nets.validate_at(&Path::root("meshNetworks"), &mut r);
    let msgs: Vec<String> = r
        .issues
        .iter()
        .map(|i| format!("{}: {}", i.path, i.message))
        .collect();
    assert!(
        msgs.iter()
            .any(|m| m.contains("invalid registry name: Kubernetes")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("gateways[0].port")),
        "{msgs:?}"
    );
    assert_eq!(msgs.len(), 2, "{msgs:?}");
}

#[test]
fn telemetry_rules() {
    assert_err(
        &telemetry("  tracing:\n  - randomSamplingPercentage: 100.5\n"),
        "should be less than or equal to 100",
    );
    assert_err(
        &telemetry(
            "  tracing:\n  - customTags:\n      t:\n        literal: {value: a}\n        header: {name: b}\n",
        ),
        "only one of literal, environment or header",
    );
    assert_err(
        &telemetry("  tracing:\n  - customTags:\n      t:\n        header: {defaultValue: b}\n"),
        "header tag name may not be empty",
    );
    assert_err(
        &telemetry("  metrics:\n  - reportingInterval: 0s\n"),
        "must be a valid duration greater than 1ms",
    );
    assert_err(
        &telemetry(
            "  metrics:\n  - overrides:\n    - match: {metric: REQUEST_COUNT, customMetric: foo}\n",
        ),
        "only one of metric or customMetric",
    );
    assert_err(
        &telemetry("  accessLogging:\n  - filter: {expression: \"response.code >=\"}\n"),
        "must be a valid CEL expression",
    );
    assert_err(
        &telemetry(
            "  targetRefs:\n  - {kind: Gateway, group: gateway.networking.k8s.io, name: gw, namespace: other}\n",
        ),
        "cross namespace referencing is not currently supported",
    );
    assert_err(
        &telemetry("  selector:\n    matchLabels: {\"app*\": x}\n"),
        "wildcard not allowed in label key match",
    );
    assert_err(
        &telemetry("  metrics:\n  - overrides:\n    - match: {metric: NOT_A_METRIC}\n"),
        "unknown variant `NOT_A_METRIC`",
    );
    assert_err(&telemetry("  tracing:\n  - bogus: 1\n"), "spec.tracing[0]");
    assert_ok(&telemetry(
        "  targetRefs:\n  - {kind: Service, name: svc}\n  - {kind: ServiceEntry, group: networking.istio.io, name: se}\n  tracing:\n  - providers: [{name: otel}]\n    match: {mode: SERVER}\n    enableIstioTags: false\n  access_logging:\n  - providers: [{name: envoy}]\n    filter: {expression: \"response.code >= 400 || xds.cluster_name.startsWith('outbound')\"}\n",
    ));
    let (_, warns) = check(&telemetry(
        "  tracing:\n  - providers: [{name: a}, {name: b}]\n",
    ));
    assert!(
        warns.iter().any(|w| w.contains("multiple providers")),
        "{warns:?}"
    );
    let (_, warns) = check(&telemetry("  selector: {matchLabels: {}}\n"));
    assert!(
        warns.iter().any(|w| w.contains("without labels")),
        "{warns:?}"
    );
}

#[test]
fn telemetry_round_trips() {
    let text = telemetry(
        "  metrics:\n  - providers: [{name: prometheus}]\n    reportingInterval: 5s\n    overrides:\n    - match: {metric: REQUEST_COUNT, mode: CLIENT}\n      tagOverrides:\n        response_code: {operation: REMOVE}\n",
    );
    let parsed = parse_str(&text, "t.yaml");
    let Spec::Telemetry(t) = &parsed.resources[0].spec else {
        panic!("not a Telemetry")
    };
    let json = serde_json::to_value(t).expect("serialize");
    assert_eq!(json["metrics"][0]["reportingInterval"], "5s");
    let back: weft_config::telemetry::Telemetry = serde_json::from_value(json).expect("back");
    assert_eq!(&back, t);
}

#[test]
fn wasm_rules() {
    assert_err(
        &wasm("  url: localhost:5000/plugin\n"),
        "url must have schema one of [http, https, file, oci]",
    );
    assert_ok(&wasm(
        "  url: oci://localhost:5000/plugin:v1\n  imagePullPolicy: Always\n  failStrategy: FAIL_OPEN\n  type: NETWORK\n  priority: 10\n",
    ));
    assert_ok(&wasm(
        "  url: ghcr.io/istio/plugin:latest\n  match:\n  - mode: SERVER\n    ports: [{number: 8080}]\n",
    ));
    assert_err(
        &wasm("  url: oci://x/y\n  match:\n  - ports: [{number: 80}, {number: 80}]\n"),
        "Duplicate value",
    );
    assert_err(
        &wasm("  url: oci://x/y\n  match:\n  - ports: [{number: 70000}]\n"),
        "should be less than or equal to 65535",
    );
    assert_err(
        &wasm("  url: oci://x/y\n  imagePullSecret: \"\"\n"),
        "spec.imagePullSecret in body should be at least 1 chars long",
    );
    assert_err(
        &wasm(
            "  url: oci://x/y\n  selector: {matchLabels: {app: a}}\n  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]\n",
        ),
        "only one of targetRefs or workloadSelector can be set",
    );
    assert_err(
        &wasm("  url: oci://x/y\n  targetRef: {kind: Deployment, group: apps, name: d}\n"),
        "targetRef must be to one of",
    );
    assert_err(
        &wasm("  url: oci://x/y\n  phase: LATE\n"),
        "unknown variant `LATE`",
    );
    assert_err(&wasm("  sha256: abc\n"), "spec.url");
}

#[test]
fn envoy_filter_rules() {
    assert_err(
        &envoy_filter("  configPatches:\n  - patch: {operation: MERGE, value: {}}\n"),
        "missing applyTo",
    );
    assert_err(
        &envoy_filter("  configPatches:\n  - applyTo: CLUSTER\n"),
        "missing patch",
    );
    assert_err(
        &envoy_filter("  configPatches:\n  - applyTo: CLUSTER\n    patch: {operation: MERGE}\n"),
        "missing patch value for non-remove operation",
    );
    assert_err(
        &envoy_filter("  configPatches:\n  - applyTo: CLUSTER\n    patch: {value: {}}\n"),
        "missing patch operation",
    );
    assert_err(
        &envoy_filter(
            "  configPatches:\n  - applyTo: CLUSTER\n    match: {proxy: {proxyVersion: \"1.(\"}}\n    patch: {operation: MERGE, value: {}}\n",
        ),
        "invalid regex for proxy version",
    );
    assert_err(
        &envoy_filter(
            "  configPatches:\n  - applyTo: CLUSTER\n    match: {listener: {portNumber: 80}}\n    patch: {operation: MERGE, value: {}}\n",
        ),
        "applyTo for cluster class objects cannot have non cluster match",
    );
    assert_err(
        &envoy_filter(
            "  configPatches:\n  - applyTo: HTTP_ROUTE\n    match: {cluster: {name: x}}\n    patch: {operation: MERGE, value: {}}\n",
        ),
        "http route class objects cannot have non route configuration match",
    );
    assert_err(
        &envoy_filter(
            "  configPatches:\n  - applyTo: NETWORK_FILTER\n    match: {routeConfiguration: {name: x}}\n    patch: {operation: MERGE, value: {}}\n",
        ),
        "listener class objects cannot have non listener match",
    );
    assert_err(
        &envoy_filter(
            "  configPatches:\n  - applyTo: HTTP_FILTER\n    match: {listener: {filterChain: {filter: {name: envoy.filters.network.tcp_proxy, subFilter: {name: x}}}}}\n    patch: {operation: REMOVE}\n",
        ),
        "subfilter match requires filter match with envoy.filters.network.http_connection_manager",
    );
    assert_err(
        &envoy_filter(
            "  configPatches:\n  - applyTo: NETWORK_FILTER\n    match: {listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager, subFilter: {name: x}}}}}\n    patch: {operation: REMOVE}\n",
        ),
        "subfilter match can be used with applyTo HTTP_FILTER only",
    );
    assert_err(
        &envoy_filter(
            "  configPatches:\n  - applyTo: NETWORK_FILTER\n    match: {listener: {filterChain: {filter: {subFilter: {name: x}}}}}\n    patch: {operation: REMOVE}\n",
        ),
        "filter match has no name to match on",
    );
    assert_err(
        &envoy_filter(
            "  configPatches:\n  - applyTo: HTTP_FILTER\n    patch:\n      operation: ADD\n      value: {name: x, typed_config: {\"@type\": type.googleapis.com/envoy.config.filter.http.lua.v2.Lua}}\n",
        ),
        "try using the v3 XDS API",
    );
    assert_err(
        &envoy_filter(
            "  configPatches:\n  - applyTo: CLUSTER\n    match: {cluster: {name: a}, listener: {name: b}}\n    patch: {operation: REMOVE}\n",
        ),
        "must validate one and only one schema",
    );
    assert_err(
        &envoy_filter("  workloadSelector: {labels: {app: \"a*\"}}\n  configPatches: []\n"),
        "wildcard is not supported in selector",
    );
    assert_err(
        &envoy_filter(
            "  workloadSelector: {labels: {app: a}}\n  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]\n",
        ),
        "only one of targetRefs or workloadSelector can be set",
    );
    let (errs, warns) = check(&envoy_filter(
        "  priority: -10\n  configPatches:\n  - applyTo: LISTENER\n    match:\n      context: GATEWAY\n      listener: {portNumber: 443, filterChain: {filter: {name: envoy.http_connection_manager}}}\n    patch: {operation: MERGE, value: {per_connection_buffer_limit_bytes: 1024}}\n",
    ));
    assert!(errs.is_empty(), "{errs:?}");
    assert!(
        warns
            .iter()
            .any(|w| w.contains("filter match has no effect when used with LISTENER")),
        "{warns:?}"
    );
    assert!(
        warns.iter().any(|w| w.contains("deprecated filter name")),
        "{warns:?}"
    );
    assert!(
        warns
            .iter()
            .any(|w| w.contains("exposes internal implementation details")),
        "{warns:?}"
    );
}

#[test]
fn proxy_config_rules() {
    let pc = |spec: &str| {
        format!(
            "apiVersion: networking.istio.io/v1beta1\nkind: ProxyConfig\nmetadata: {{name: p, namespace: default}}\nspec:\n{spec}"
        )
    };
    assert_err(
        &pc("  selector: {matchLabels: {app: \"a*\"}}\n"),
        "wildcard not allowed in label value match",
    );
    assert_err(&pc("  image: {type: debug}\n"), "unknown field `type`");
    assert_ok(&pc(
        "  concurrency: 0\n  environment_variables: {A: b}\n  image: {image_type: debug}\n",
    ));
}

fn analyze_text(yaml: &str, mesh: &str, analyzer: &str) -> Vec<String> {
    let parsed = parse_str(yaml, "a.yaml");
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    let mesh = parse_mesh_config(mesh, "mesh.yaml").expect("mesh");
    weft_config::analyze::analyze(&parsed.resources, &mesh, Some(&[analyzer]))
        .iter()
        .map(|m| m.to_string())
        .collect()
}

#[test]
fn provider_analyzer_respects_mesh_default_providers() {
    let t = telemetry("  accessLogging:\n  - disabled: false\n");
    let msgs = analyze_text(&t, "", "telemetry.ProviderAnalyzer");
    assert_eq!(
        msgs,
        vec![
            "Warning [IST0157] (Telemetry default/t) The Telemetry t in namespace \"default\" with empty providers will be ignored."
        ]
    );
    let msgs = analyze_text(
        &t,
        "defaultProviders: {accessLogging: [envoy]}\n",
        "telemetry.ProviderAnalyzer",
    );
    assert!(msgs.is_empty(), "{msgs:?}");
}

#[test]
fn telemetry_selector_messages() {
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: p1, namespace: default, labels: {app: a, v: '1'}}\n---\n"
        .to_string()
        + &telemetry("  selector: {matchLabels: {app: a}}\n").replace("name: t,", "name: t1,")
        + "\n---\n"
        + &telemetry("  selector: {matchLabels: {v: '1'}}\n").replace("name: t,", "name: t2,")
        + "\n---\n"
        + &telemetry("  selector: {matchLabels: {app: b, v: '2'}}\n").replace("name: t,", "name: t3,");
    let msgs = analyze_text(&yaml, "", "telemetry.SelectorAnalyzer");
    assert!(
        msgs.contains(
            &"Error [IST0101] (Telemetry default/t3) Referenced selector not found: \"app=b,v=2\""
                .to_string()
        ),
        "{msgs:#?}"
    );
    assert!(msgs.contains(&"Error [IST0159] (Telemetry default/t1) The Telemetries [t1 t2] in namespace \"default\" select the same workload pod \"p1\", which can lead to undefined behavior.".to_string()), "{msgs:#?}");
    assert_eq!(msgs.len(), 3, "{msgs:#?}");
}

#[test]
fn k8s_gateway_selector_analyzer_on_telemetry_and_wasm() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: gw-1, namespace: default, labels: {gateway.networking.k8s.io/gateway-name: gw}}\n---\n";
    let yaml = pod.to_string()
        + &telemetry("  selector: {matchLabels: {gateway.networking.k8s.io/gateway-name: gw}}\n")
        + "\n---\n"
        + &wasm("  url: oci://x/y\n  selector: {matchLabels: {gateway.networking.k8s.io/gateway-name: gw}}\n")
        + "\n---\n"
        + &telemetry("  selector: {matchLabels: {gateway.networking.k8s.io/gateway-name: gw}}\n  targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: gw}\n").replace("name: t,", "name: t-ok,");
    let msgs = analyze_text(&yaml, "", "k8sgateway.SelectorAnalyzer");
    assert_eq!(
        msgs,
        vec![
            "Warning [IST0166] (Telemetry default/t) Ineffective selector on Kubernetes Gateway gw. Use the TargetRef field instead.",
            "Warning [IST0166] (WasmPlugin default/w) Ineffective selector on Kubernetes Gateway gw. Use the TargetRef field instead.",
        ]
    );
}
