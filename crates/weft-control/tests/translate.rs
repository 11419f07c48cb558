//! Translation of a bookinfo-like mesh: names, EDS localities, DestinationRule mapping, routes,
//! and that every generated resource transcodes to proto3 JSON (all typed configs known).

use weft_control::model::{Environment, MeshSettings, Proxy};
use weft_control::simulate::{Call, simulate};
use weft_control::translate::{Resources, translate};
use weft_xds::envoy::config::cluster::v3::cluster::ClusterDiscoveryType;
use weft_xds::envoy::config::route::v3::route::Action;
use weft_xds::envoy::config::route::v3::route_action::ClusterSpecifier;

const MESH: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec:
  clusterIP: 10.0.0.5
  ports: [{name: http, port: 9080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: reviews-1, namespace: bookinfo, labels: {kubernetes.io/service-name: reviews}}
addressType: IPv4
endpoints:
- addresses: [10.1.0.1]
  zone: zone-a
- addresses: [10.1.0.2]
ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-v1, namespace: bookinfo, labels: {app: reviews, version: v1, security.istio.io/tlsMode: istio}}
spec: {containers: [{name: app, image: reviews}]}
status: {podIP: 10.1.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-v2, namespace: bookinfo, labels: {app: reviews, version: v2}}
spec: {containers: [{name: app, image: reviews}]}
status: {podIP: 10.1.0.2}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 7}, http: {http1MaxPendingRequests: 3}}
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: v2
    labels: {version: v2}
    trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new}
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 80}
    - {destination: {host: reviews, subset: v2}, weight: 20}
    retries: {attempts: 3, retryOn: "5xx,503"}
    timeout: 2s
"#;

fn resources() -> Resources {
    let parsed = weft_config::parse_str(MESH, "mesh.yaml");
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    let env = Environment::from_resources(&parsed.resources, MeshSettings::default());
    let proxy =
        Proxy::from_node_id("sidecar~10.1.0.9~productpage.bookinfo~bookinfo.svc.cluster.local")
            .expect("node id");
    translate(&env, &proxy)
}

#[test]
fn clusters_and_endpoints() {
    let r = resources();
    let names: Vec<&str> = r.clusters.iter().map(|c| c.name.as_str()).collect();
    for want in [
        "BlackHoleCluster",
        "InboundPassthroughCluster",
        "PassthroughCluster",
        "outbound|9080||reviews.bookinfo.svc.cluster.local",
        "outbound|9080|v1|reviews.bookinfo.svc.cluster.local",
        "outbound|9080|v2|reviews.bookinfo.svc.cluster.local",
    ] {
        assert!(names.contains(&want), "missing {want} in {names:?}");
    }
    let c = r
        .cluster("outbound|9080|v1|reviews.bookinfo.svc.cluster.local")
        .expect("v1");
    assert!(
        matches!(c.cluster_discovery_type, Some(ClusterDiscoveryType::Type(t)) if t == 3 /* EDS */)
    );
    let t = &c.circuit_breakers.as_ref().expect("breakers").thresholds[0];
    assert_eq!(t.max_connections.as_ref().map(|v| v.value), Some(7));
    assert_eq!(t.max_pending_requests.as_ref().map(|v| v.value), Some(3));
    let od = c.outlier_detection.as_ref().expect("outlier detection");
    assert_eq!(od.consecutive_5xx.as_ref().map(|v| v.value), Some(5));

    // EDS: subsets select by pod labels, and every endpoint group has a locality.
    let v1 = r
        .endpoints
        .iter()
        .find(|e| e.cluster_name == "outbound|9080|v1|reviews.bookinfo.svc.cluster.local")
        .expect("v1 endpoints");
    assert_eq!(
        v1.endpoints
            .iter()
            .map(|g| g.lb_endpoints.len())
            .sum::<usize>(),
        1
    );
    for cla in &r.endpoints {
        for g in &cla.endpoints {
            assert!(
                g.locality.is_some(),
                "{} has an endpoint without locality",
                cla.cluster_name
            );
        }
    }
    let all = r
        .endpoints
        .iter()
        .find(|e| e.cluster_name == "outbound|9080||reviews.bookinfo.svc.cluster.local")
        .expect("endpoints");
    let zones: Vec<&str> = all
        .endpoints
        .iter()
        .map(|g| g.locality.as_ref().map(|l| l.zone.as_str()).unwrap_or(""))
        .collect();
    assert_eq!(zones, vec!["", "zone-a"]);
}

#[test]
fn auto_mtls_for_workloads_with_sidecars() {
    let r = resources();
    let c = r
        .cluster("outbound|9080||reviews.bookinfo.svc.cluster.local")
        .expect("cluster");
    let names: Vec<&str> = c
        .transport_socket_matches
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(names, vec!["tlsMode-istio", "tlsMode-disabled"]);
    let cla = r
        .endpoints
        .iter()
        .find(|e| e.cluster_name == "outbound|9080||reviews.bookinfo.svc.cluster.local")
        .expect("endpoints");
    let marked: usize = cla
        .endpoints
        .iter()
        .flat_map(|g| g.lb_endpoints.iter())
        .filter(|e| {
            e.metadata.as_ref().is_some_and(|m| {
                m.filter_metadata
                    .contains_key("envoy.transport_socket_match")
            })
        })
        .count();
    assert_eq!(marked, 1, "only the injected pod is marked for Istio mTLS");
}

#[test]
fn routes_follow_the_virtual_service() {
    let r = resources();
    let rc = r.route("9080").expect("route config 9080");
    let vh = rc
        .virtual_hosts
        .iter()
        .find(|v| v.name == "reviews.bookinfo.svc.cluster.local:9080")
        .expect("reviews vhost");
    for d in [
        "reviews",
        "reviews.bookinfo",
        "reviews.bookinfo.svc",
        "10.0.0.5",
    ] {
        assert!(
            vh.domains.iter().any(|x| x == d),
            "missing domain {d}: {:?}",
            vh.domains
        );
    }
    assert_eq!(vh.routes.len(), 3);
    assert!(matches!(vh.routes[0].action, Some(Action::Redirect(_))));
    let Some(Action::Route(weighted)) = &vh.routes[2].action else {
        panic!("route action expected");
    };
    let Some(ClusterSpecifier::WeightedClusters(w)) = &weighted.cluster_specifier else {
        panic!("weighted clusters expected");
    };
    let split: Vec<(String, u32)> = w
        .clusters
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                c.weight.as_ref().map(|w| w.value).unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        split,
        vec![
            (
                "outbound|9080|v1|reviews.bookinfo.svc.cluster.local".to_string(),
                80
            ),
            (
                "outbound|9080|v2|reviews.bookinfo.svc.cluster.local".to_string(),
                20
            ),
        ]
    );
    let retry = weighted.retry_policy.as_ref().expect("retries");
    assert_eq!(retry.num_retries.as_ref().map(|n| n.value), Some(3));
    assert_eq!(retry.retriable_status_codes, vec![503]);
    assert_eq!(weighted.timeout.as_ref().map(|t| t.seconds), Some(2));

    let hit = simulate(&r, &Call::http("reviews:9080", 9080)).expect("routed");
    assert_eq!(hit.listener, "0.0.0.0_9080");
    assert_eq!(hit.route_config, "9080");
    // Istio's simulator matches paths only (header matches are ignored), so the `end-user`
    // route is the first that matches.
    assert_eq!(
        hit.cluster,
        "outbound|9080|v2|reviews.bookinfo.svc.cluster.local"
    );
    let old = simulate(
        &r,
        &Call {
            path: "/old/x".to_string(),
            ..Call::http("reviews", 9080)
        },
    )
    .expect("redirected");
    assert_eq!(old.cluster, "");
}

#[test]
fn resources_transcode_to_json() {
    let r = resources();
    for l in &r.listeners {
        let v = weft_xds::json::to_value(l).unwrap_or_else(|e| panic!("{}: {e}", l.name));
        assert!(v.get("name").is_some());
    }
    for c in &r.clusters {
        weft_xds::json::to_value(c).unwrap_or_else(|e| panic!("{}: {e}", c.name));
    }
    for rc in &r.routes {
        weft_xds::json::to_value(rc).unwrap_or_else(|e| panic!("{}: {e}", rc.name));
    }
    for e in &r.endpoints {
        weft_xds::json::to_value(e).unwrap_or_else(|err| panic!("{}: {err}", e.cluster_name));
    }
}

#[test]
fn delegate_virtual_services_merge_into_the_root() {
    let yaml = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: front}
spec: {clusterIP: 10.0.0.8, ports: [{name: http, port: 80}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root, namespace: front}
spec:
  hosts: [web]
  http:
  - name: api
    match: [{uri: {prefix: /api}}]
    delegate: {name: api-routes, namespace: team}
    timeout: 5s
  - route: [{destination: {host: web}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api-routes, namespace: team}
spec:
  http:
  - name: v2
    match: [{uri: {prefix: /api/v2}}]
    route: [{destination: {host: api-v2}}]
  - name: other
    match: [{uri: {prefix: /elsewhere}}]
    route: [{destination: {host: nowhere}}]
  - route: [{destination: {host: api-v1}}]
"#;
    let parsed = weft_config::parse_str(yaml, "delegate.yaml");
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    let env = Environment::from_resources(&parsed.resources, MeshSettings::default());
    let proxy =
        Proxy::from_node_id("sidecar~10.1.0.9~app.front~front.svc.cluster.local").expect("node id");
    let r = translate(&env, &proxy);
    let route_to = |path: &str| {
        simulate(
            &r,
            &Call {
                path: path.to_string(),
                ..Call::http("web", 80)
            },
        )
        .map(|o| (o.route, o.cluster))
        .expect("routed")
    };
    assert_eq!(
        route_to("/api/v2/x"),
        (
            "api-v2".to_string(),
            "outbound|80||api-v2.team.svc.cluster.local".to_string()
        )
    );
    // The delegate's catch-all inherits the root's /api match.
    assert_eq!(
        route_to("/api/v1"),
        (
            "api".to_string(),
            "outbound|80||api-v1.team.svc.cluster.local".to_string()
        )
    );
    // A delegate match outside the root's prefix is dropped.
    assert_eq!(
        route_to("/elsewhere").1,
        "outbound|80||web.front.svc.cluster.local"
    );
}

#[test]
fn gateway_servers_translate_and_transcode() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [secure.example.com]
    tls: {mode: SIMPLE, credentialName: secure-cert}
  - port: {number: 443, name: tls-pass, protocol: TLS}
    hosts: [pass.example.com]
    tls: {mode: PASSTHROUGH}
  - port: {number: 15443, name: tls-auto, protocol: TLS}
    hosts: ["*.local"]
    tls: {mode: AUTO_PASSTHROUGH}
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs, namespace: default}
spec:
  hosts: [secure.example.com, pass.example.com, "*"]
  gateways: [istio-system/gw]
  http:
  - route: [{destination: {host: web, port: {number: 8080}}}]
  tls:
  - match: [{sniHosts: [pass.example.com]}]
    route: [{destination: {host: pass, port: {number: 443}}}]
  tcp:
  - route: [{destination: {host: db, port: {number: 5432}}}]
"#;
    let parsed = weft_config::parse_str(yaml, "gw.yaml");
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    let env = Environment::from_resources(&parsed.resources, MeshSettings::default());
    let mut proxy =
        Proxy::from_node_id("router~10.0.0.1~gw.istio-system~istio-system.svc.cluster.local")
            .expect("node id");
    proxy.labels.insert("istio".into(), "ingressgateway".into());
    let r = translate(&env, &proxy);
    let names: Vec<&str> = r.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, vec!["0.0.0.0_15443", "0.0.0.0_31400", "0.0.0.0_443"]);
    for l in &r.listeners {
        weft_xds::json::to_value(l).unwrap_or_else(|e| panic!("{}: {e}", l.name));
    }
    let https = simulate(
        &r,
        &Call {
            tls: weft_control::simulate::CallTls::Tls,
            ..Call::http("secure.example.com", 443)
        },
    )
    .expect("https routed");
    assert_eq!(https.route_config, "https.443.https.gw.istio-system");
    assert_eq!(
        https.cluster,
        "outbound|8080||web.default.svc.cluster.local"
    );
    let pass = simulate(
        &r,
        &Call {
            tls: weft_control::simulate::CallTls::Tls,
            protocol: weft_control::simulate::CallProtocol::Tcp,
            ..Call::http("pass.example.com", 443)
        },
    )
    .expect("passthrough routed");
    assert_eq!(pass.cluster, "outbound|443||pass.default.svc.cluster.local");
    let tcp = simulate(&r, &Call::tcp("1.2.3.4", 31400)).expect("tcp routed");
    assert_eq!(tcp.cluster, "outbound|5432||db.default.svc.cluster.local");
}
