//! Admin interface, unsupported configuration, live reload, graceful drain, the real binary.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

fn simple(cluster_name: &str, addr: std::net::SocketAddr) -> String {
    http_bootstrap(
        "",
        &format!(
            "            - {{name: vh, domains: ['*'], routes: [{{match: {{prefix: /}}, route: {{cluster: {cluster_name}}}}}]}}\n"
        ),
        &cluster(cluster_name, &[addr], ""),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints() {
    let a = Backend::start("a").await;
    let log = Arc::new(RecordingLog::default());
    let options = weft_proxy::Options {
        log_control: Some(log.clone()),
        ..Default::default()
    };
    let proxy = start_with(&simple("backend", a.addr), options);
    let addr = proxy.listener_addr("http").unwrap();
    for _ in 0..3 {
        assert_eq!(get(addr, "x", "/").await.status, 200);
    }
    assert_eq!(get(addr, "x", "/?status=503").await.status, 503);

    let g = admin_get(&proxy, "/ready").await;
    assert_eq!((g.status.as_u16(), g.text().as_str()), (200, "LIVE\n"));
    assert_eq!(admin_get(&proxy, "/healthz").await.status, 200);

    let g = admin_get(&proxy, "/config_dump").await;
    assert_eq!(g.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&g.body).unwrap();
    let types: Vec<&str> = v["configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["@type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
            "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
            "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
            "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
        ]
    );
    assert_eq!(
        v["configs"][1]["static_clusters"][0]["cluster"]["name"],
        "backend"
    );
    assert_eq!(
        v["configs"][1]["static_clusters"][0]["cluster"]["connect_timeout"],
        "1s"
    );
    assert_eq!(
        v["configs"][2]["static_listeners"][0]["listener"]["name"],
        "http"
    );
    assert_eq!(
        v["configs"][3]["static_route_configs"][0]["route_config"]["name"],
        "local"
    );

    let clusters = admin_get(&proxy, "/clusters").await.text();
    assert!(
        clusters.contains(&format!("backend::{}::health_flags::healthy", a.addr)),
        "{clusters}"
    );
    assert!(
        clusters.contains(&format!("backend::{}::rq_total::4", a.addr)),
        "{clusters}"
    );

    let listeners = admin_get(&proxy, "/listeners").await.text();
    assert_eq!(listeners, format!("http::{addr}\n"));

    let stats = admin_get(&proxy, "/stats").await.text();
    for line in [
        "cluster.backend.upstream_rq_total: 4",
        "cluster.backend.upstream_rq_2xx: 3",
        "cluster.backend.upstream_rq_5xx: 1",
        "http.ingress.downstream_rq_total: 4",
        "http.ingress.downstream_rq_2xx: 3",
        "listener.127.0.0.1_0.downstream_cx_total: 4",
    ] {
        assert!(stats.contains(line), "missing {line:?} in\n{stats}");
    }
    let prom = admin_get(&proxy, "/stats/prometheus").await.text();
    for line in [
        "# TYPE envoy_cluster_upstream_rq counter",
        "envoy_cluster_upstream_rq_total{envoy_cluster_name=\"backend\"} 4",
        "envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix=\"ingress\"} 4",
    ] {
        assert!(prom.contains(line), "missing {line:?} in\n{prom}");
    }

    assert_eq!(
        admin_get(&proxy, "/logging?level=debug").await.status,
        405,
        "mutations need POST"
    );
    let g = admin_post(&proxy, "/logging?level=debug").await;
    assert_eq!(g.status, 200, "{}", g.text());
    assert_eq!(admin_post(&proxy, "/logging?level=loud").await.status, 400);
    assert_eq!(*log.0.lock().unwrap(), vec!["debug".to_owned()]);

    // drain_listeners: no new connections, /ready turns DRAINING.
    assert_eq!(admin_post(&proxy, "/drain_listeners").await.status, 200);
    let g = admin_get(&proxy, "/ready").await;
    assert_eq!((g.status.as_u16(), g.text().as_str()), (503, "DRAINING\n"));
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let refused = match tokio::net::TcpStream::connect(addr).await {
            Err(_) => true,
            Ok(mut s) => {
                use tokio::io::AsyncWriteExt;
                let _ = s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
                read_to_end(&mut s).await.is_empty()
            }
        };
        if refused {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "listener still serving after drain_listeners"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    assert_eq!(admin_post(&proxy, "/quitquitquit").await.status, 200);
    tokio::time::timeout(Duration::from_secs(10), proxy.stopped())
        .await
        .expect("stopped after /quitquitquit");
}

const UNSUPPORTED: &str = r#"
static_resources:
  listeners:
  - name: http
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    listener_filters:
    - name: envoy.filters.listener.proxy_protocol
      typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol}
    per_connection_buffer_limit_bytes: 1024
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          server_name: weft
          route_config:
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - match: {prefix: /}
                route: {cluster: c, max_grpc_timeout: 1s}
          http_filters:
          - name: envoy.filters.http.buffer
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer, max_request_bytes: 10}
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: c
    type: STATIC
    lb_policy: CLUSTER_PROVIDED
    outlier_detection: {success_rate_minimum_hosts: 5}
    load_assignment:
      cluster_name: c
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 9}}}}]}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_configuration_is_reported_by_name() {
    let proxy = start(UNSUPPORTED);
    let found: Vec<String> = proxy.unsupported().iter().map(|u| u.to_string()).collect();
    for expected in [
        r#"listener "http": listener_filters envoy.filters.listener.proxy_protocol is not supported by weft"#,
        r#"listener "http": per_connection_buffer_limit_bytes is not supported by weft"#,
        r#"listener "http": filter_chains[0].filters[0].typed_config.server_name is not supported by weft"#,
        r#"listener "http": filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].route.max_grpc_timeout is not supported by weft"#,
        r#"listener "http": filter_chains[0].filters[0].typed_config.http_filters[0] envoy.filters.http.buffer is not supported by weft"#,
        r#"cluster "c": lb_policy CLUSTER_PROVIDED (round robin is used) is not supported by weft"#,
        r#"cluster "c": outlier_detection.success_rate_minimum_hosts is not supported by weft"#,
    ] {
        assert!(
            found.iter().any(|f| f == expected),
            "missing {expected:?} in {found:#?}"
        );
    }
    assert_eq!(found.len(), 7, "{found:#?}");
    let admin = admin_get(&proxy, "/unsupported").await.text();
    assert!(admin.contains("proxy_protocol"), "{admin}");

    // Strict mode refuses the same configuration, listing everything.
    let bootstrap = weft_proxy::bootstrap::parse(UNSUPPORTED, "test").unwrap();
    let mut options = weft_proxy::Options::default();
    options.compile.reject_unsupported = true;
    let err = weft_proxy::run(&bootstrap, options)
        .expect_err("strict mode refuses")
        .to_string();
    assert!(
        err.starts_with("7 configuration item(s) are not supported by weft"),
        "{err}"
    );
    assert!(
        err.contains("envoy.filters.listener.proxy_protocol"),
        "{err}"
    );

    // Invalid configuration names the resource and field.
    let bad = UNSUPPORTED.replace("{prefix: /}", "{safe_regex: {regex: \"(\"}}");
    let bootstrap = weft_proxy::bootstrap::parse(&bad, "test").unwrap();
    let err = weft_proxy::run(&bootstrap, weft_proxy::Options::default())
        .expect_err("bad regex")
        .to_string();
    assert!(
        err.contains("listener \"http\"")
            && err.contains("virtual_hosts[0].routes[0].match.safe_regex.regex"),
        "{err}"
    );

    // Unknown fields are refused by the bootstrap parser with their name.
    let err = weft_proxy::bootstrap::parse(&UNSUPPORTED.replace("lb_policy", "lb_polcy"), "test")
        .expect_err("typo")
        .to_string();
    assert!(err.contains("lb_polcy"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_drain_finishes_in_flight_requests() {
    let a = Backend::start("a").await;
    let options = weft_proxy::Options {
        drain_time: Duration::from_secs(10),
        ..Default::default()
    };
    let proxy = start_with(&simple("a", a.addr), options);
    let addr = proxy.listener_addr("http").unwrap();
    let mut keepalive = H1::connect(addr).await;
    assert_eq!(keepalive.get("x", "/").await.status, 200);
    let slow = tokio::spawn(async move { get(addr, "x", "/?delay_ms=1500").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    proxy.shutdown();
    let g = slow.await.unwrap();
    assert_eq!(g.status, 200, "in-flight request finished during the drain");
    assert_eq!(g.echo().backend, "a");
    tokio::time::timeout(Duration::from_secs(5), proxy.stopped())
        .await
        .expect("stopped once idle");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "did not wait for the whole drain time: {:?}",
        t.elapsed()
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_routes_while_in_flight_requests_finish_on_the_old_snapshot() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let clusters = cluster("a", &[a.addr], "") + &cluster("b", &[b.addr], "");
    let vh = |c: &str| {
        format!(
            "            - {{name: vh, domains: ['*'], routes: [{{match: {{prefix: /}}, route: {{cluster: {c}}}}}]}}\n"
        )
    };
    let proxy = start(&http_bootstrap("", &vh("a"), &clusters));
    let addr = proxy.listener_addr("http").unwrap();
    let slow = tokio::spawn(async move { get(addr, "x", "/?delay_ms=1000").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let new =
        weft_proxy::bootstrap::parse(&http_bootstrap("", &vh("b"), &clusters), "reload").unwrap();
    proxy.reload(&new).expect("reload");
    assert_eq!(
        get(addr, "x", "/").await.echo().backend,
        "b",
        "new requests use the new routes"
    );
    let g = slow.await.unwrap();
    assert_eq!((g.status.as_u16(), g.echo().backend.as_str()), (200, "a"));

    // Endpoints can be replaced live (what EDS will do).
    let c = Backend::start("c").await;
    let snapshot = proxy.snapshot();
    let cluster_b = snapshot.clusters.get("b").unwrap();
    cluster_b.replace_endpoints(&[weft_proxy::cluster::EndpointSpec::new(c.addr)]);
    assert_eq!(get(addr, "x", "/").await.echo().backend, "c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_a_bootstrap_file_and_drains_on_sigterm() {
    let a = Backend::start("a").await;
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (listen, admin) = (free_port(), free_port());
    let yaml = simple("a", a.addr).replace("port_value: 0", &format!("port_value: {listen}"))
        + &format!(
            "admin:\n  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}\n"
        );
    let dir = std::env::temp_dir().join(format!("weft-proxy-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("envoy.yaml");
    std::fs::write(&file, yaml).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weft-proxy"))
        .args([
            "-c",
            file.to_str().unwrap(),
            "--concurrency",
            "1",
            "--log-level",
            "warning",
            "--drain-time-s",
            "3",
            "--base-id",
            "1",
        ])
        .spawn()
        .expect("start weft-proxy");
    let deadline = Instant::now() + Duration::from_secs(10);
    let curl = |args: &[&str]| {
        std::process::Command::new("curl")
            .args(["-s", "--max-time", "5"])
            .args(args)
            .output()
            .expect("curl")
    };
    loop {
        let out = curl(&[&format!("http://127.0.0.1:{admin}/ready")]);
        if String::from_utf8_lossy(&out.stdout) == "LIVE\n" {
            break;
        }
        assert!(Instant::now() < deadline, "weft-proxy did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = curl(&[
        "-H",
        "x-test: curl",
        &format!("http://127.0.0.1:{listen}/via-curl"),
    ]);
    let e = Echo::parse(&out.stdout);
    assert_eq!((e.backend.as_str(), e.path.as_str()), ("a", "/via-curl"));
    assert_eq!(e.header("x-test"), Some("curl"));
    assert!(
        e.header("user-agent")
            .is_some_and(|u| u.starts_with("curl/"))
    );

    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let t = Instant::now();
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "weft-proxy did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "{exit:?}");
    let _ = std::fs::remove_dir_all(dir);

    // A bad file is reported with its name and a non-zero exit.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weft-proxy"))
        .args(["-c", "/nonexistent/envoy.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/envoy.yaml"));
}
