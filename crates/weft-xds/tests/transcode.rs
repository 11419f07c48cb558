//! YAML/JSON to Envoy types and back, through the descriptor pool, with `typed_config`.

use weft_xds::envoy::config::bootstrap::v3::Bootstrap;
use weft_xds::envoy::config::cluster::v3::Cluster;
use weft_xds::json::{TranscodeError, from_yaml, to_value};

const BOOTSTRAP: &str = r#"
node: {id: "sidecar~10.1.2.3~reviews-v1-abc.default~default.svc.cluster.local", cluster: reviews}
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 15000}}
static_resources:
  listeners:
  - name: http
    address: {socket_address: {address: 127.0.0.1, port_value: 10000}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            name: local
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                route: {cluster: backend, timeout: 1.5s}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 0.25s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8080}}}
"#;

#[test]
fn bootstrap_yaml_with_typed_config_decodes() {
    let b: Bootstrap = from_yaml(BOOTSTRAP).expect("bootstrap decodes");
    let node = b.node.as_ref().expect("node");
    assert_eq!(node.cluster, "reviews");
    let sr = b.static_resources.as_ref().expect("static_resources");
    assert_eq!(sr.listeners.len(), 1);
    let filter = &sr.listeners[0].filter_chains[0].filters[0];
    let any = match filter.config_type.as_ref().expect("typed_config") {
        weft_xds::envoy::config::listener::v3::filter::ConfigType::TypedConfig(a) => a,
        other => panic!("unexpected config type {other:?}"),
    };
    assert!(any.type_url.ends_with("HttpConnectionManager"));
    assert!(
        !any.value.is_empty(),
        "typed_config was encoded into the Any"
    );
    assert_eq!(sr.clusters[0].name, "backend");
    let ct = sr.clusters[0]
        .connect_timeout
        .as_ref()
        .expect("connect_timeout");
    assert_eq!((ct.seconds, ct.nanos), (0, 250_000_000));
}

#[test]
fn round_trip_uses_proto_field_names() {
    let b: Bootstrap = from_yaml(BOOTSTRAP).expect("bootstrap decodes");
    let v = to_value(&b).expect("encode");
    let cluster = &v["static_resources"]["clusters"][0];
    assert_eq!(cluster["connect_timeout"], "0.250s");
    let hcm =
        &v["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    assert_eq!(hcm["stat_prefix"], "ingress");
    assert_eq!(
        hcm["@type"],
        "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
    );
}

#[test]
fn errors_name_the_field_and_type() {
    let err = from_yaml::<Cluster>("name: x\nconect_timeout: 1s\n").expect_err("typo refused");
    let msg = err.to_string();
    assert!(
        msg.contains("envoy.config.cluster.v3.Cluster") && msg.contains("conect_timeout"),
        "{msg}"
    );
    let err = from_yaml::<Cluster>(
        "name: x\ntyped_extension_protocol_options:\n  a:\n    \"@type\": type.googleapis.com/no.such.Type\n",
    )
    .expect_err("unknown Any type refused");
    assert!(err.to_string().contains("no.such.Type"), "{err}");
    assert!(matches!(
        from_yaml::<Cluster>("[1, 2"),
        Err(TranscodeError::Yaml(_))
    ));
}
