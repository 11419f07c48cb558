//! Telemetry translation: the stats filter on every HTTP connection manager and TCP proxy,
//! access logs from the Telemetry API (providers from MeshConfig, CEL filters, CLIENT/SERVER
//! modes) and from MeshConfig's `accessLogFile`, and the `istio` service metadata on clusters.

use weft_control::model::{Environment, MeshSettings, Proxy};
use weft_control::translate::{Resources, translate};
use weft_xds::envoy::config::accesslog::v3 as al;
use weft_xds::envoy::config::listener::v3::Listener;
use weft_xds::envoy::config::listener::v3::filter::ConfigType;
use weft_xds::envoy::extensions::access_loggers::file::v3 as file;
use weft_xds::envoy::extensions::access_loggers::filters::cel::v3::ExpressionFilter;
use weft_xds::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use weft_xds::google::protobuf::value::Kind;

const MESH: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec:
  clusterIP: 10.0.0.5
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: mysql, namespace: bookinfo}
spec:
  clusterIP: 10.0.0.6
  ports: [{name: tcp, port: 3306}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: reviews-1, namespace: bookinfo, labels: {kubernetes.io/service-name: reviews}}
addressType: IPv4
endpoints:
- addresses: [10.1.0.1]
ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-v1, namespace: bookinfo, labels: {app: reviews, version: v1}}
spec: {containers: [{name: app, image: reviews}]}
status: {podIP: 10.1.0.1}
"#;

const TELEMETRY: &str = r#"
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging:
  - providers: [{name: otel-file}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: reviews-errors, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  accessLogging:
  - providers: [{name: json-file}]
    match: {mode: SERVER}
    filter: {expression: "response.code >= 400"}
"#;

const MESH_CONFIG: &str = r#"
extensionProviders:
- name: json-file
  envoyFileAccessLog:
    path: /var/log/weft/access.json
    logFormat:
      labels: {code: "%RESPONSE_CODE%", path: "%REQ(:PATH)%"}
- name: otel-file
  envoyFileAccessLog:
    path: /dev/stdout
"#;

fn env(extra: &str, mesh: &str) -> Environment {
    let parsed = weft_config::parse_str(&format!("{MESH}{extra}"), "mesh.yaml");
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    let mc: weft_config::mesh::MeshConfig = serde_norway::from_str(mesh).expect("mesh config");
    Environment::from_resources(&parsed.resources, MeshSettings::from_mesh_config(&mc))
}

fn reviews_proxy() -> Proxy {
    let mut p =
        Proxy::from_node_id("sidecar~10.1.0.1~reviews-v1.bookinfo~bookinfo.svc.cluster.local")
            .expect("node id");
    p.labels.insert("app".into(), "reviews".into());
    p.labels.insert("version".into(), "v1".into());
    p
}

fn managers(l: &Listener) -> Vec<hcm::HttpConnectionManager> {
    let mut out = Vec::new();
    for fc in l.filter_chains.iter().chain(l.default_filter_chain.iter()) {
        for f in &fc.filters {
            if let Some(ConfigType::TypedConfig(a)) = &f.config_type
                && let Ok(m) =
                    <hcm::HttpConnectionManager as prost::Message>::decode(a.value.as_slice())
                && f.name == "envoy.filters.network.http_connection_manager"
            {
                out.push(m);
            }
        }
    }
    out
}

fn log_paths(m: &hcm::HttpConnectionManager) -> Vec<(String, Option<String>)> {
    m.access_log
        .iter()
        .map(|l| {
            let Some(al::access_log::ConfigType::TypedConfig(a)) = &l.config_type else {
                panic!("typed access log")
            };
            let f: file::FileAccessLog = prost::Message::decode(a.value.as_slice()).unwrap();
            let expr = l.filter.as_ref().map(|f| match &f.filter_specifier {
                Some(al::access_log_filter::FilterSpecifier::ExtensionFilter(e)) => {
                    let Some(al::extension_filter::ConfigType::TypedConfig(a)) = &e.config_type
                    else {
                        panic!()
                    };
                    let x: ExpressionFilter = prost::Message::decode(a.value.as_slice()).unwrap();
                    x.expression
                }
                other => panic!("{other:?}"),
            });
            (f.path, expr)
        })
        .collect()
}

fn resources(env: &Environment, proxy: &Proxy) -> Resources {
    let r = translate(env, proxy);
    // Everything still transcodes to proto3 JSON (config_dump, proxy-config).
    for l in &r.listeners {
        weft_xds::json::to_value(l).unwrap_or_else(|e| panic!("listener {}: {e}", l.name));
    }
    for c in &r.clusters {
        weft_xds::json::to_value(c).unwrap_or_else(|e| panic!("cluster {}: {e}", c.name));
    }
    r
}

#[test]
fn stats_filter_before_the_router_and_before_tcp_proxy() {
    let e = env("", "{}");
    let r = resources(&e, &reviews_proxy());
    let mut http = 0;
    let mut tcp = 0;
    for l in &r.listeners {
        for m in managers(l) {
            http += 1;
            let names: Vec<&str> = m.http_filters.iter().map(|f| f.name.as_str()).collect();
            let stats = names.iter().position(|n| *n == "istio.stats");
            let router = names.iter().position(|n| *n == "envoy.filters.http.router");
            assert!(stats.is_some() && stats < router, "{}: {names:?}", l.name);
            // No access log unless asked for.
            assert!(m.access_log.is_empty(), "{}", l.name);
        }
        for fc in &l.filter_chains {
            let names: Vec<&str> = fc.filters.iter().map(|f| f.name.as_str()).collect();
            if let Some(i) = names
                .iter()
                .position(|n| *n == "envoy.filters.network.tcp_proxy")
            {
                tcp += 1;
                assert_eq!(
                    names.get(i.wrapping_sub(1)),
                    Some(&"istio.stats"),
                    "{}: {names:?}",
                    l.name
                );
            }
        }
    }
    assert!(http > 0 && tcp > 0, "http {http} tcp {tcp}");
}

#[test]
fn clusters_carry_their_service_for_metric_labels() {
    let e = env("", "{}");
    let r = resources(&e, &reviews_proxy());
    let services = |name: &str| {
        let c = r.cluster(name).unwrap_or_else(|| panic!("no {name}"));
        let md = c.metadata.as_ref().expect("metadata");
        let istio = &md.filter_metadata["istio"];
        let Some(Kind::ListValue(l)) = &istio.fields["services"].kind else {
            panic!()
        };
        let Some(Kind::StructValue(s)) = &l.values[0].kind else {
            panic!()
        };
        let get = |k: &str| match &s.fields[k].kind {
            Some(Kind::StringValue(v)) => v.clone(),
            _ => panic!(),
        };
        (get("host"), get("name"), get("namespace"))
    };
    let want = (
        "reviews.bookinfo.svc.cluster.local".to_string(),
        "reviews".to_string(),
        "bookinfo".to_string(),
    );
    assert_eq!(
        services("outbound|9080||reviews.bookinfo.svc.cluster.local"),
        want
    );
    assert_eq!(services("inbound|9080||"), want);
}

#[test]
fn telemetry_api_access_logs_with_providers_modes_and_filters() {
    let e = env(TELEMETRY, MESH_CONFIG);
    let r = resources(&e, &reviews_proxy());
    let inbound = r.listener("virtualInbound").expect("virtualInbound");
    let ms = managers(inbound);
    assert!(!ms.is_empty());
    for m in &ms {
        // The workload's Telemetry wins over the mesh-wide one, on the server side only.
        assert_eq!(
            log_paths(m),
            vec![(
                "/var/log/weft/access.json".to_string(),
                Some("response.code >= 400".to_string())
            )]
        );
    }
    let outbound = r
        .listeners
        .iter()
        .find(|l| l.name == "0.0.0.0_9080")
        .expect("0.0.0.0_9080");
    for m in managers(outbound) {
        // SERVER-only entry: nothing on the client side from it.
        assert!(m.access_log.is_empty(), "{:?}", log_paths(&m));
    }
    // Another workload gets the mesh-wide provider on both sides.
    let other =
        Proxy::from_node_id("sidecar~10.1.0.7~ratings-v1.bookinfo~bookinfo.svc.cluster.local")
            .expect("node id");
    let r = resources(&e, &other);
    let outbound = r
        .listeners
        .iter()
        .find(|l| l.name == "0.0.0.0_9080")
        .unwrap();
    for m in managers(outbound) {
        assert_eq!(log_paths(&m), vec![("/dev/stdout".to_string(), None)]);
    }
}

#[test]
fn mesh_config_access_log_file() {
    let e = env("", "accessLogFile: /dev/stdout\naccessLogEncoding: JSON\n");
    let r = resources(&e, &reviews_proxy());
    let outbound = r
        .listeners
        .iter()
        .find(|l| l.name == "0.0.0.0_9080")
        .unwrap();
    let ms = managers(outbound);
    assert!(!ms.is_empty());
    for m in ms {
        assert_eq!(log_paths(&m), vec![("/dev/stdout".to_string(), None)]);
        let Some(al::access_log::ConfigType::TypedConfig(a)) = &m.access_log[0].config_type else {
            panic!()
        };
        let f: file::FileAccessLog = prost::Message::decode(a.value.as_slice()).unwrap();
        let Some(file::file_access_log::AccessLogFormat::LogFormat(sf)) = f.access_log_format
        else {
            panic!()
        };
        let Some(
            weft_xds::envoy::config::core::v3::substitution_format_string::Format::JsonFormat(st),
        ) = sf.format
        else {
            panic!("JSON encoding gives a json_format")
        };
        assert!(st.fields.contains_key("response_code"));
        assert!(st.fields.contains_key("upstream_cluster"));
    }
}

#[test]
fn metrics_disabled_for_clients_drops_the_client_side_filter() {
    let t = r#"
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: no-client-metrics, namespace: bookinfo}
spec:
  metrics:
  - providers: [{name: prometheus}]
    overrides:
    - match: {mode: CLIENT}
      disabled: true
"#;
    let e = env(t, "{}");
    let r = resources(&e, &reviews_proxy());
    let has_stats = |l: &Listener| {
        managers(l)
            .iter()
            .any(|m| m.http_filters.iter().any(|f| f.name == "istio.stats"))
    };
    assert!(has_stats(r.listener("virtualInbound").unwrap()));
    assert!(!has_stats(
        r.listeners
            .iter()
            .find(|l| l.name == "0.0.0.0_9080")
            .unwrap()
    ));
}

const TRACING_SERVICES: &str = r#"
---
apiVersion: v1
kind: Service
metadata: {name: zipkin, namespace: istio-system}
spec:
  clusterIP: 10.0.0.9
  ports: [{name: http, port: 9411}]
---
apiVersion: v1
kind: Service
metadata: {name: otel-collector, namespace: observability}
spec:
  clusterIP: 10.0.0.10
  ports: [{name: grpc, port: 4317}]
"#;

const TRACING_MESH: &str = r#"
defaultProviders:
  tracing: [zipkin]
extensionProviders:
- name: zipkin
  zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}
- name: otel
  opentelemetry: {service: observability/otel-collector.observability.svc.cluster.local, port: 4317}
"#;

fn tracing_of(l: &Listener) -> Vec<hcm::http_connection_manager::Tracing> {
    managers(l).into_iter().filter_map(|m| m.tracing).collect()
}

#[test]
fn tracing_from_default_providers_and_the_telemetry_api() {
    use weft_xds::envoy::config::trace::v3 as trace;
    // Mesh default: Zipkin at Istio's 1% sampling, on both sides.
    let e = env(TRACING_SERVICES, TRACING_MESH);
    let r = resources(&e, &reviews_proxy());
    let outbound = r
        .listeners
        .iter()
        .find(|l| l.name == "0.0.0.0_9080")
        .unwrap();
    let t = tracing_of(outbound);
    assert!(!t.is_empty());
    for t in &t {
        assert_eq!(t.random_sampling.as_ref().map(|p| p.value), Some(1.0));
        let p = t.provider.as_ref().unwrap();
        assert_eq!(p.name, "envoy.tracers.zipkin");
        let Some(trace::tracing::http::ConfigType::TypedConfig(a)) = &p.config_type else {
            panic!()
        };
        let z: trace::ZipkinConfig = prost::Message::decode(a.value.as_slice()).unwrap();
        assert_eq!(
            z.collector_cluster,
            "outbound|9411||zipkin.istio-system.svc.cluster.local"
        );
        assert_eq!(z.collector_endpoint, "/api/v2/spans");
    }
    assert!(!tracing_of(r.listener("virtualInbound").unwrap()).is_empty());
    // The collector cluster is one the proxy has.
    assert!(
        r.cluster("outbound|9411||zipkin.istio-system.svc.cluster.local")
            .is_some()
    );

    // A Telemetry for the workload: OTLP, 25%, custom tags, client side only.
    let t = r#"
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: reviews-tracing, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  tracing:
  - providers: [{name: otel}]
    match: {mode: CLIENT}
    randomSamplingPercentage: 25
    customTags:
      team: {literal: {value: bookinfo}}
      user: {header: {name: end-user, defaultValue: anonymous}}
"#;
    let e = env(&format!("{TRACING_SERVICES}{t}"), TRACING_MESH);
    let r = resources(&e, &reviews_proxy());
    let outbound = r
        .listeners
        .iter()
        .find(|l| l.name == "0.0.0.0_9080")
        .unwrap();
    for t in tracing_of(outbound) {
        assert_eq!(t.random_sampling.as_ref().map(|p| p.value), Some(25.0));
        let p = t.provider.as_ref().unwrap();
        assert_eq!(p.name, "envoy.tracers.opentelemetry");
        let Some(trace::tracing::http::ConfigType::TypedConfig(a)) = &p.config_type else {
            panic!()
        };
        let o: trace::OpenTelemetryConfig = prost::Message::decode(a.value.as_slice()).unwrap();
        let Some(weft_xds::envoy::config::core::v3::grpc_service::TargetSpecifier::EnvoyGrpc(g)) =
            o.grpc_service.and_then(|g| g.target_specifier)
        else {
            panic!()
        };
        assert_eq!(
            g.cluster_name,
            "outbound|4317||otel-collector.observability.svc.cluster.local"
        );
        let tags: Vec<&str> = t.custom_tags.iter().map(|c| c.tag.as_str()).collect();
        assert_eq!(tags, vec!["team", "user"]);
    }
    // SERVER side: the entry does not apply, so no tracing there.
    assert!(tracing_of(r.listener("virtualInbound").unwrap()).is_empty());
}

#[test]
fn metric_overrides_become_plugin_config_metrics() {
    let t = r#"
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: tags, namespace: bookinfo}
spec:
  metrics:
  - providers: [{name: prometheus}]
    overrides:
    - match: {metric: REQUEST_COUNT, mode: CLIENT}
      tagOverrides:
        request_host: {value: "request.host"}
        source_version: {operation: REMOVE}
    - match: {metric: REQUEST_SIZE}
      disabled: true
"#;
    let e = env(t, "{}");
    let r = resources(&e, &reviews_proxy());
    let plugin = |l: &Listener| -> Vec<String> {
        let m = &managers(l)[0];
        let f = m
            .http_filters
            .iter()
            .find(|f| f.name == "istio.stats")
            .expect("istio.stats");
        let Some(hcm::http_filter::ConfigType::TypedConfig(a)) = &f.config_type else {
            panic!()
        };
        let st: weft_xds::google::protobuf::Struct =
            prost::Message::decode(a.value.as_slice()).unwrap();
        let Some(Kind::ListValue(l)) = st.fields.get("metrics").and_then(|v| v.kind.clone()) else {
            return Vec::new();
        };
        l.values
            .iter()
            .map(|v| serde_json::to_string(&weft_xds::json::to_value(v).unwrap()).unwrap())
            .collect()
    };
    let client = plugin(
        r.listeners
            .iter()
            .find(|l| l.name == "0.0.0.0_9080")
            .unwrap(),
    );
    assert_eq!(client.len(), 2, "{client:?}");
    assert!(
        client[0].contains("\"name\":\"requests_total\""),
        "{client:?}"
    );
    assert!(
        client[0].contains("\"request_host\":\"request.host\""),
        "{client:?}"
    );
    assert!(
        client[0].contains("\"tags_to_remove\":[\"source_version\"]"),
        "{client:?}"
    );
    assert!(
        client[1].contains("\"name\":\"request_bytes\"") && client[1].contains("\"drop\":true")
    );
    let server = plugin(r.listener("virtualInbound").unwrap());
    assert_eq!(server.len(), 1, "{server:?}");
    assert!(server[0].contains("request_bytes"));
}
