//! Istio's standard metrics across a real mesh hop: a client calls an outbound sidecar
//! (productpage), which calls an inbound sidecar (reviews-v2), which calls the application.
//! Both proxies exchange workload metadata in Istio's headers, strip them before the
//! application and the client see them, and count the request with Istio's labels. Debian's
//! `prometheus` scrapes both proxies and PromQL finds the series.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;

fn node(name: &str, workload: &str, app: &str, version: &str) -> String {
    format!(
        r#"
node:
  id: sidecar~127.0.0.1~{name}.default~default.svc.cluster.local
  cluster: {app}.default
  metadata:
    NAME: {name}
    NAMESPACE: default
    WORKLOAD_NAME: {workload}
    CLUSTER_ID: Kubernetes
    SERVICE_ACCOUNT: bookinfo-{app}
    LABELS: {{app: {app}, version: {version}}}
"#
    )
}

const STATS_FILTER: &str = r#"          - name: istio.stats
            typed_config:
              "@type": type.googleapis.com/google.protobuf.Struct
              value: {}
"#;

fn sidecar(node: &str, direction: &str, cluster_name: &str, cluster_yaml: &str) -> String {
    format!(
        r#"{node}
static_resources:
  listeners:
  - name: {direction}
    traffic_direction: {direction}
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {direction}_9080
          route_config:
            name: "9080"
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: /}}
                route: {{cluster: "{cluster_name}"}}
          http_filters:
{STATS_FILTER}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{cluster_yaml}
"#
    )
}

/// The application behind the inbound sidecar: 200, or 503 for `/fail`; records what it saw.
async fn app() -> Scripted {
    Scripted::start(|_, seen| {
        if seen.path == "/fail" {
            status(503)
        } else {
            ok()
        }
    })
    .await
}

struct Mesh {
    app: Scripted,
    inbound: weft_proxy::ProxyHandle,
    outbound: weft_proxy::ProxyHandle,
    entry: SocketAddr,
}

async fn mesh() -> Mesh {
    let app = app().await;
    let inbound_cluster = cluster(
        "inbound|9080||",
        &[app.addr],
        "    metadata:\n      filter_metadata:\n        istio:\n          services: [{host: reviews.default.svc.cluster.local, name: reviews, namespace: default}]\n",
    );
    let inbound = start(&sidecar(
        &node("reviews-v2-7d4c", "reviews-v2", "reviews", "v2"),
        "INBOUND",
        "inbound|9080||",
        &inbound_cluster,
    ));
    let inbound_addr = inbound.listener_addr("INBOUND").expect("inbound listener");
    // The outbound cluster names its service only by Istio's cluster name.
    let outbound_cluster = cluster(
        "outbound|9080||reviews.default.svc.cluster.local",
        &[inbound_addr],
        "",
    );
    let outbound = start(&sidecar(
        &node("productpage-v1-5f9c", "productpage-v1", "productpage", "v1"),
        "OUTBOUND",
        "outbound|9080||reviews.default.svc.cluster.local",
        &outbound_cluster,
    ));
    let entry = outbound
        .listener_addr("OUTBOUND")
        .expect("outbound listener");
    Mesh {
        app,
        inbound,
        outbound,
        entry,
    }
}

/// `istio_requests_total` samples from a scrape: label sets and values.
fn samples(text: &str, metric: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        let Some(rest) = rest.strip_prefix('{') else {
            continue;
        };
        let (labels, value) = rest.rsplit_once("} ").expect("sample line");
        let mut m = BTreeMap::new();
        for kv in labels.split("\",") {
            let (k, v) = kv.split_once("=\"").expect("label");
            m.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
        }
        out.push((m, value.trim().parse().expect("value")));
    }
    out
}

fn find<'a>(
    s: &'a [(BTreeMap<String, String>, f64)],
    want: &[(&str, &str)],
) -> Option<&'a (BTreeMap<String, String>, f64)> {
    s.iter().find(|(l, _)| {
        want.iter()
            .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
    })
}

const ISTIO_LABELS: [&str; 25] = [
    "reporter",
    "source_workload",
    "source_canonical_service",
    "source_canonical_revision",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_service_name",
    "destination_service_namespace",
    "destination_cluster",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_metrics_on_both_sides_of_a_hop() {
    let m = mesh().await;
    for _ in 0..3 {
        let got = get(m.entry, "reviews:9080", "/reviews/0").await;
        assert_eq!(got.status, 200);
        // The client never sees the exchange headers.
        assert_eq!(got.header("x-envoy-peer-metadata"), None);
        assert_eq!(got.header("x-envoy-peer-metadata-id"), None);
    }
    let got = get(m.entry, "reviews:9080", "/fail").await;
    assert_eq!(got.status, 503);
    // Neither does the application.
    for seen in m.app.seen.lock().unwrap().iter() {
        assert_eq!(seen.header("x-envoy-peer-metadata"), None, "{seen:?}");
        assert_eq!(seen.header("x-envoy-peer-metadata-id"), None, "{seen:?}");
    }
    // Metrics are recorded when the response body ends, just after the client has it.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let out_text = admin_get(&m.outbound, "/stats/prometheus").await.text();
    let out = samples(&out_text, "istio_requests_total");
    let ok = find(&out, &[("response_code", "200")]).unwrap_or_else(|| panic!("{out_text}"));
    let labels: Vec<&str> = ok.0.keys().map(String::as_str).collect();
    let mut want: Vec<&str> = ISTIO_LABELS.to_vec();
    want.sort();
    assert_eq!(labels, want, "Istio's label set");
    assert_eq!(ok.1, 3.0);
    for (k, v) in [
        ("reporter", "source"),
        ("source_workload", "productpage-v1"),
        ("source_workload_namespace", "default"),
        ("source_app", "productpage"),
        ("source_version", "v1"),
        ("source_canonical_service", "productpage"),
        ("source_canonical_revision", "v1"),
        ("source_cluster", "Kubernetes"),
        // Learned from the response's metadata headers.
        ("destination_workload", "reviews-v2"),
        ("destination_app", "reviews"),
        ("destination_version", "v2"),
        ("destination_workload_namespace", "default"),
        ("destination_cluster", "Kubernetes"),
        // From the cluster name.
        ("destination_service", "reviews.default.svc.cluster.local"),
        ("destination_service_name", "reviews"),
        ("destination_service_namespace", "default"),
        ("request_protocol", "http"),
        ("response_flags", "-"),
        ("grpc_response_status", ""),
        ("connection_security_policy", "unknown"),
    ] {
        assert_eq!(
            ok.0.get(k).map(String::as_str),
            Some(v),
            "{k} in {:?}",
            ok.0
        );
    }
    let failed = find(&out, &[("response_code", "503"), ("reporter", "source")])
        .unwrap_or_else(|| panic!("{out_text}"));
    assert_eq!(failed.1, 1.0);

    let in_text = admin_get(&m.inbound, "/stats/prometheus").await.text();
    let inb = samples(&in_text, "istio_requests_total");
    let ok = find(&inb, &[("response_code", "200")]).unwrap_or_else(|| panic!("{in_text}"));
    assert_eq!(ok.1, 3.0);
    for (k, v) in [
        ("reporter", "destination"),
        // Learned from the request's metadata headers.
        ("source_workload", "productpage-v1"),
        ("source_app", "productpage"),
        ("destination_workload", "reviews-v2"),
        ("destination_version", "v2"),
        // From the inbound cluster's istio metadata.
        ("destination_service", "reviews.default.svc.cluster.local"),
        ("destination_service_name", "reviews"),
        ("connection_security_policy", "none"),
    ] {
        assert_eq!(
            ok.0.get(k).map(String::as_str),
            Some(v),
            "{k} in {:?}",
            ok.0
        );
    }

    // The histograms, with Envoy's buckets.
    let d = samples(&out_text, "istio_request_duration_milliseconds_bucket");
    let inf = find(&d, &[("response_code", "200"), ("le", "+Inf")])
        .unwrap_or_else(|| panic!("{out_text}"));
    assert_eq!(inf.1, 3.0);
    assert!(find(&d, &[("le", "0.5")]).is_some());
    assert!(find(&d, &[("le", "3600000.0")]).is_some(), "{out_text}");
    let count = samples(&out_text, "istio_response_bytes_count");
    assert_eq!(
        find(&count, &[("response_code", "200")]).map(|s| s.1),
        Some(3.0)
    );
    let sum = samples(&out_text, "istio_response_bytes_sum");
    let bytes = find(&sum, &[("response_code", "200")]).map_or(0.0, |s| s.1);
    // Three responses of headers plus the 2-byte body each.
    assert!(bytes > 3.0 * 2.0, "response bytes sum {bytes}");
    assert!(
        out_text.contains("# TYPE istio_requests counter")
            || out_text.contains("# TYPE istio_requests_total counter")
    );
    assert!(out_text.contains("# TYPE istio_request_duration_milliseconds histogram"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_counted_with_its_flag() {
    let m = mesh().await;
    // A local reply before any cluster: 404 NR, destination service from the authority.
    let bootstrap = sidecar(
        &node("productpage-v1-5f9c", "productpage-v1", "productpage", "v1"),
        "OUTBOUND",
        "missing",
        &cluster("other", &[m.app.addr], ""),
    );
    let p = start(&bootstrap);
    let addr = p.listener_addr("OUTBOUND").unwrap();
    let got = get(addr, "ratings.default.svc.cluster.local:9080", "/").await;
    assert_eq!(got.status, 503);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let text = admin_get(&p, "/stats/prometheus").await.text();
    let s = samples(&text, "istio_requests_total");
    let nc = find(
        &s,
        &[
            ("response_code", "503"),
            ("response_flags", "NC"),
            ("destination_service", "ratings.default.svc.cluster.local"),
            ("destination_service_name", "ratings"),
            ("destination_workload", "unknown"),
        ],
    );
    assert_eq!(nc.map(|s| s.1), Some(1.0), "{text}");
}

/// Runs Debian's prometheus against both proxies' admin `/stats/prometheus` and asks it
/// `istio_requests_total` over its HTTP API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_and_promql_finds_the_series() {
    let bin = std::env::var("WEFT_PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
    let m = mesh().await;
    for _ in 0..5 {
        assert_eq!(get(m.entry, "reviews:9080", "/").await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let dir = std::env::temp_dir().join(format!("weft-prom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let targets = format!(
        "\"{}\", \"{}\"",
        m.outbound.admin_addr().unwrap(),
        m.inbound.admin_addr().unwrap()
    );
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n- job_name: weft\n  metrics_path: /stats/prometheus\n  static_configs:\n  - targets: [{targets}]\n"
        ),
    )
    .unwrap();
    let web = dead_port();
    let mut child = std::process::Command::new(&bin)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {bin:?} ({e}); install Debian's prometheus (scripts/test.sh does)")
        });
    let query = "/api/v1/query?query=istio_requests_total";
    let mut last = String::new();
    let mut found = None;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Ok(stream) = tokio::net::TcpStream::connect(web).await else {
            continue;
        };
        drop(stream);
        last = get(web, "prometheus", query).await.text();
        let v: serde_json::Value = match serde_json::from_str(&last) {
            Ok(v) => v,
            Err(_) => continue,
        };
        let results = v["data"]["result"].as_array().cloned().unwrap_or_default();
        if results.len() >= 2 {
            found = Some(results);
            break;
        }
    }
    let _ = child.kill();
    let stderr = {
        use std::io::Read;
        let mut s = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    };
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let results = found.unwrap_or_else(|| panic!("no series from prometheus: {last}\n{stderr}"));
    let series = |reporter: &str| {
        results
            .iter()
            .find(|r| r["metric"]["reporter"] == reporter)
            .unwrap_or_else(|| panic!("no {reporter} series in {results:?}"))
            .clone()
    };
    for (reporter, job_side) in [("source", "productpage-v1"), ("destination", "reviews-v2")] {
        let s = series(reporter);
        let metric = &s["metric"];
        assert_eq!(metric["__name__"], "istio_requests_total");
        assert_eq!(metric["source_workload"], "productpage-v1", "{s}");
        assert_eq!(metric["destination_workload"], "reviews-v2", "{s}");
        assert_eq!(
            metric["destination_service"], "reviews.default.svc.cluster.local",
            "{s}"
        );
        assert_eq!(metric["response_code"], "200", "{s}");
        assert_eq!(s["value"][1], "5", "{s}");
        let _ = job_side;
    }
}

/// Istio's agent ports: 15020 serves the merged metrics and readiness, 15021 readiness only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_ports_serve_metrics_and_readiness() {
    let app = app().await;
    let yaml = sidecar(
        &node("reviews-v2-7d4c", "reviews-v2", "reviews", "v2"),
        "INBOUND",
        "inbound|9080||",
        &cluster("inbound|9080||", &[app.addr], ""),
    );
    let p = start_with(
        &yaml,
        weft_proxy::Options {
            stats_addr: Some("127.0.0.1:0".parse().unwrap()),
            health_addr: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        },
    );
    let entry = p.listener_addr("INBOUND").unwrap();
    assert_eq!(get(entry, "reviews:9080", "/").await.status, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = p.stats_addr().expect("15020");
    let health = p.health_addr().expect("15021");
    let merged = get(stats, "x", "/stats/prometheus").await;
    assert_eq!(merged.status, 200);
    let text = merged.text();
    assert!(text.contains("istio_requests_total{"), "{text}");
    assert!(text.contains("envoy_cluster_upstream_rq_total"), "{text}");
    assert_eq!(get(stats, "x", "/healthz/ready").await.status, 200);
    assert_eq!(get(health, "x", "/healthz/ready").await.status, 200);
    // Only those paths: the admin interface is not exposed there.
    assert_eq!(get(health, "x", "/stats/prometheus").await.status, 404);
    assert_eq!(get(stats, "x", "/config_dump").await.status, 404);
    // Draining: not ready.
    let _ = admin_post(&p, "/drain_listeners").await;
    assert_eq!(get(health, "x", "/healthz/ready").await.status, 503);
}

/// `stats.PluginConfig.metrics`: a label upserted from an expression, a label removed, a metric
/// dropped (what the Telemetry API's `metrics.overrides` become).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_overrides_upsert_remove_and_drop() {
    let app = app().await;
    let filter = r#"          - name: istio.stats
            typed_config:
              "@type": type.googleapis.com/google.protobuf.Struct
              value:
                metrics:
                - name: requests_total
                  dimensions: {request_host: "request.host", method: "request.method"}
                  tags_to_remove: [source_version, source_cluster]
                - name: request_bytes
                  drop: true
"#;
    let yaml = sidecar(
        &node("reviews-v2-7d4c", "reviews-v2", "reviews", "v2"),
        "INBOUND",
        "inbound|9080||",
        &cluster(
            "inbound|9080||",
            &[app.addr],
            "    metadata:\n      filter_metadata:\n        istio:\n          services: [{host: reviews.default.svc.cluster.local}]\n",
        ),
    )
    .replace(STATS_FILTER, filter);
    let p = start(&yaml);
    let entry = p.listener_addr("INBOUND").unwrap();
    for host in ["a.example:9080", "b.example:9080", "a.example:9080"] {
        assert_eq!(get(entry, host, "/").await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let text = admin_get(&p, "/stats/prometheus").await.text();
    let s = samples(&text, "istio_requests_total");
    assert_eq!(s.len(), 2, "{text}");
    let a = find(&s, &[("request_host", "a.example:9080"), ("method", "GET")])
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(a.1, 2.0);
    assert!(!a.0.contains_key("source_version") && !a.0.contains_key("source_cluster"));
    assert!(a.0.contains_key("destination_version"));
    // Other metrics keep Istio's labels and do not split by host.
    let d = samples(&text, "istio_response_bytes_count");
    assert_eq!(d.len(), 1, "{text}");
    assert_eq!(d[0].1, 3.0);
    assert!(!d[0].0.contains_key("request_host") && d[0].0.contains_key("source_version"));
    assert!(!text.contains("istio_request_bytes"), "dropped: {text}");
}
