//! HTTP filters: fault injection, CORS, local rate limit; and request mirroring.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn vhost(extra: &str, routes: &[&str]) -> String {
    let mut s = String::from("            - name: vh\n              domains: ['*']\n");
    s.push_str(extra);
    s.push_str("              routes:\n");
    for r in routes {
        s.push_str(&format!("              - {r}\n"));
    }
    s
}

const FAULT: &str = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_filter_aborts_and_delays() {
    let b = Scripted::start(|_, _| ok()).await;
    let filters = format!(
        "          - name: envoy.filters.http.fault\n            typed_config:\n              '@type': {FAULT}\n              abort: {{header_abort: {{}}, percentage: {{numerator: 100}}}}\n              delay: {{header_delay: {{}}, percentage: {{numerator: 100}}}}\n              max_active_faults: 1\n"
    );
    let routes = [
        format!(
            "{{match: {{prefix: /abort}}, route: {{cluster: a}}, typed_per_filter_config: {{envoy.filters.http.fault: {{'@type': {FAULT}, abort: {{http_status: 503, percentage: {{numerator: 100}}}}}}}}}}"
        ),
        format!(
            "{{match: {{prefix: /grpc}}, route: {{cluster: a}}, typed_per_filter_config: {{envoy.filters.http.fault: {{'@type': {FAULT}, abort: {{grpc_status: 14, percentage: {{numerator: 100}}}}}}}}}}"
        ),
        format!(
            "{{match: {{prefix: /delay}}, route: {{cluster: a}}, typed_per_filter_config: {{envoy.filters.http.fault: {{'@type': {FAULT}, delay: {{fixed_delay: 0.3s, percentage: {{numerator: 100}}}}}}}}}}"
        ),
        format!(
            "{{match: {{prefix: /never}}, route: {{cluster: a}}, typed_per_filter_config: {{envoy.filters.http.fault: {{'@type': {FAULT}, abort: {{http_status: 500, percentage: {{numerator: 0}}}}}}}}}}"
        ),
        "{match: {prefix: /}, route: {cluster: a}}".to_owned(),
    ];
    let routes: Vec<&str> = routes.iter().map(String::as_str).collect();
    let proxy = start(&http_bootstrap_with(
        "",
        &filters,
        &vhost("", &routes),
        &cluster("a", &[b.addr], ""),
    ));
    let addr = proxy.listener_addr("http").unwrap();

    let g = get(addr, "x", "/abort").await;
    assert_eq!(g.status, 503);
    assert_eq!(g.text(), "fault filter abort");
    let g = get(addr, "x", "/grpc").await;
    assert_eq!(
        (g.status.as_u16(), g.header("grpc-status")),
        (200, Some("14"))
    );
    assert_eq!(b.count(), 0, "aborted requests never reach the upstream");
    assert_eq!(get(addr, "x", "/never").await.status, 200);

    let t = Instant::now();
    assert_eq!(get(addr, "x", "/delay").await.status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );

    // Header-controlled faults on the listener-level config.
    let g = send(
        addr,
        req("GET", "x", "/", &[("x-envoy-fault-abort-request", "429")]),
    )
    .await;
    assert_eq!(g.status, 429);
    let g = send(
        addr,
        req(
            "GET",
            "x",
            "/",
            &[("x-envoy-fault-abort-grpc-request", "8")],
        ),
    )
    .await;
    assert_eq!(g.header("grpc-status"), Some("8"));
    assert_eq!(get(addr, "x", "/").await.status, 200, "no header, no fault");
    let g = send(
        addr,
        req(
            "GET",
            "x",
            "/",
            &[
                ("x-envoy-fault-abort-request", "429"),
                ("x-envoy-fault-abort-request-percentage", "0"),
            ],
        ),
    )
    .await;
    assert_eq!(
        g.status, 200,
        "a percentage header of 0 turns the abort off"
    );

    // max_active_faults 1: while one request is delayed, another is not faulted.
    let slow = tokio::spawn(async move {
        let t = Instant::now();
        let g = send(
            addr,
            req("GET", "x", "/", &[("x-envoy-fault-delay-request", "600")]),
        )
        .await;
        (g.status, t.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let t = Instant::now();
    let g = send(
        addr,
        req("GET", "x", "/", &[("x-envoy-fault-delay-request", "600")]),
    )
    .await;
    assert_eq!(g.status, 200);
    assert!(
        t.elapsed() < Duration::from_millis(450),
        "second fault skipped: {:?}",
        t.elapsed()
    );
    let (s, took) = slow.await.unwrap();
    assert_eq!(s, 200);
    assert!(took >= Duration::from_millis(600));
    assert_eq!(stat(&proxy, "http.ingress.fault.faults_overflow").await, 1);
    assert!(stat(&proxy, "http.ingress.fault.aborts_injected").await >= 4);
    assert_eq!(b.count(), 6);
}

const CORS_POLICY: &str = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_and_actual_requests() {
    let b = Scripted::start(|_, _| ok()).await;
    let filters = "          - name: envoy.filters.http.cors\n            typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors}\n";
    let vh_policy = format!(
        "              typed_per_filter_config:\n                envoy.filters.http.cors:\n                  '@type': {CORS_POLICY}\n                  allow_origin_string_match: [{{exact: 'https://app.example'}}, {{suffix: '.trusted.example'}}]\n                  allow_methods: 'GET, PUT'\n                  allow_headers: x-custom\n                  expose_headers: x-exposed\n                  max_age: '600'\n                  allow_credentials: true\n"
    );
    let legacy = "            - name: legacy\n              domains: ['legacy']\n              cors: {allow_origin_string_match: [{exact: 'https://old.example'}], allow_methods: POST}\n              routes:\n              - {match: {prefix: /}, route: {cluster: a}}\n";
    let vhosts = vhost(&vh_policy, &["{match: {prefix: /}, route: {cluster: a}}"]) + legacy;
    let proxy = start(&http_bootstrap_with(
        "",
        filters,
        &vhosts,
        &cluster("a", &[b.addr], ""),
    ));
    let addr = proxy.listener_addr("http").unwrap();

    // Preflight: answered by the proxy.
    let g = send(
        addr,
        req(
            "OPTIONS",
            "x",
            "/r",
            &[
                ("origin", "https://app.example"),
                ("access-control-request-method", "PUT"),
            ],
        ),
    )
    .await;
    assert_eq!(g.status, 200);
    assert_eq!(
        g.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(g.header("access-control-allow-methods"), Some("GET, PUT"));
    assert_eq!(g.header("access-control-allow-headers"), Some("x-custom"));
    assert_eq!(g.header("access-control-max-age"), Some("600"));
    assert_eq!(g.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(b.count(), 0, "preflight never goes upstream");

    // Actual request from an allowed origin: forwarded, CORS headers added.
    let g = send(
        addr,
        req("GET", "x", "/r", &[("origin", "https://a.trusted.example")]),
    )
    .await;
    assert_eq!(g.status, 200);
    assert_eq!(
        g.header("access-control-allow-origin"),
        Some("https://a.trusted.example")
    );
    assert_eq!(g.header("access-control-expose-headers"), Some("x-exposed"));
    assert_eq!(b.count(), 1);
    assert_eq!(
        b.seen()[0].header("origin"),
        Some("https://a.trusted.example")
    );

    // Not allowed: no CORS headers; a preflight from it is forwarded.
    let g = send(
        addr,
        req("GET", "x", "/r", &[("origin", "https://evil.example")]),
    )
    .await;
    assert!(g.header("access-control-allow-origin").is_none());
    let g = send(
        addr,
        req(
            "OPTIONS",
            "x",
            "/r",
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "PUT"),
            ],
        ),
    )
    .await;
    assert!(g.header("access-control-allow-origin").is_none());
    assert_eq!(b.count(), 3);

    // The legacy virtual host `cors` field.
    let g = send(
        addr,
        req(
            "OPTIONS",
            "legacy",
            "/",
            &[
                ("origin", "https://old.example"),
                ("access-control-request-method", "POST"),
            ],
        ),
    )
    .await;
    assert_eq!(g.header("access-control-allow-methods"), Some("POST"));
    assert_eq!(b.count(), 3);
}

const LRL: &str =
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_rate_limit_per_route_with_x_ratelimit_headers() {
    let b = Scripted::start(|_, _| ok()).await;
    // Listener level: no bucket (pass-through); routes bring their own.
    let filters = format!(
        "          - name: envoy.filters.http.local_ratelimit\n            typed_config: {{'@type': {LRL}, stat_prefix: rl}}\n"
    );
    let limited = format!(
        "{{match: {{prefix: /limited}}, route: {{cluster: a}}, typed_per_filter_config: {{envoy.filters.http.local_ratelimit: {{'@type': {LRL}, stat_prefix: rl, token_bucket: {{max_tokens: 2, tokens_per_fill: 2, fill_interval: 60s}}, filter_enabled: {{default_value: {{numerator: 100}}}}, filter_enforced: {{default_value: {{numerator: 100}}}}, enable_x_ratelimit_headers: DRAFT_VERSION_03, response_headers_to_add: [{{header: {{key: x-limited, value: 'yes'}}}}]}}}}}}"
    );
    let shadow = format!(
        "{{match: {{prefix: /shadow}}, route: {{cluster: a}}, typed_per_filter_config: {{envoy.filters.http.local_ratelimit: {{'@type': {LRL}, stat_prefix: rl, token_bucket: {{max_tokens: 1, fill_interval: 60s}}, filter_enabled: {{default_value: {{numerator: 100}}}}, request_headers_to_add_when_not_enforced: [{{header: {{key: x-would-limit, value: '1'}}}}]}}}}}}"
    );
    let routes = [
        limited.as_str(),
        shadow.as_str(),
        "{match: {prefix: /}, route: {cluster: a}}",
    ];
    let proxy = start(&http_bootstrap_with(
        "",
        &filters,
        &vhost("", &routes),
        &cluster("a", &[b.addr], ""),
    ));
    let addr = proxy.listener_addr("http").unwrap();
    let mut c = H1::connect(addr).await;
    let g = c.get("x", "/limited").await;
    assert_eq!(g.status, 200);
    assert_eq!(g.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(g.header("x-ratelimit-remaining"), Some("1"));
    assert_eq!(
        c.get("x", "/limited").await.header("x-ratelimit-remaining"),
        Some("0")
    );
    let g = c.get("x", "/limited").await;
    assert_eq!(g.status, 429);
    assert_eq!(g.text(), "local_rate_limited");
    assert_eq!(g.header("x-limited"), Some("yes"));
    assert_eq!(g.header("x-ratelimit-remaining"), Some("0"));
    let reset: u64 = g.header("x-ratelimit-reset").unwrap().parse().unwrap();
    assert!((1..=60).contains(&reset), "{reset}");
    assert_eq!(b.count(), 2);
    for _ in 0..5 {
        assert_eq!(
            c.get("x", "/other").await.status,
            200,
            "other routes are not limited"
        );
    }
    // Enabled but not enforced: passes, marked.
    assert_eq!(c.get("x", "/shadow").await.status, 200);
    assert_eq!(c.get("x", "/shadow").await.status, 200);
    let seen = b.seen();
    assert!(seen[seen.len() - 2].header("x-would-limit").is_none());
    assert_eq!(seen[seen.len() - 1].header("x-would-limit"), Some("1"));
    assert_eq!(
        stat(&proxy, "http.ingress.local_rate_limit.enforced").await,
        1
    );
    assert_eq!(
        stat(&proxy, "http.ingress.local_rate_limit.rate_limited").await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_level_rate_limit_applies_to_every_route() {
    let b = Scripted::start(|_, _| ok()).await;
    let filters = format!(
        "          - name: envoy.filters.http.local_ratelimit\n            typed_config: {{'@type': {LRL}, stat_prefix: rl, token_bucket: {{max_tokens: 1, fill_interval: 0.3s}}, filter_enabled: {{default_value: {{numerator: 100}}}}, filter_enforced: {{default_value: {{numerator: 100}}}}}}\n"
    );
    let proxy = start(&http_bootstrap_with(
        "",
        &filters,
        &vhost("", &["{match: {prefix: /}, route: {cluster: a}}"]),
        &cluster("a", &[b.addr], ""),
    ));
    let addr = proxy.listener_addr("http").unwrap();
    assert_eq!(get(addr, "x", "/a").await.status, 200);
    assert_eq!(get(addr, "x", "/b").await.status, 429);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(get(addr, "x", "/b").await.status, 200, "refilled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrored_requests_go_to_the_shadow_cluster_without_delaying_the_response() {
    let main = Scripted::start(|_, _| ok()).await;
    let shadow =
        Scripted::start(|_, _| Reply::After(Duration::from_secs(2), Box::new(status(500)))).await;
    let routes = [
        "{match: {prefix: /half}, route: {cluster: main, request_mirror_policies: [{cluster: shadow, runtime_fraction: {default_value: {numerator: 0}}}]}}",
        "{match: {prefix: /}, route: {cluster: main, request_mirror_policies: [{cluster: shadow}]}}",
    ];
    let clusters = cluster("main", &[main.addr], "") + &cluster("shadow", &[shadow.addr], "");
    let proxy = start(&http_bootstrap("", &vhost("", &routes), &clusters));
    let addr = proxy.listener_addr("http").unwrap();
    let t = Instant::now();
    let g = send(
        addr,
        http::Request::post("/m?q=1")
            .header("host", "api.example:8080")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                b"payload",
            )))
            .unwrap(),
    )
    .await;
    assert_eq!((g.status.as_u16(), g.text().as_str()), (200, "ok"));
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "mirror must not delay: {:?}",
        t.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    while shadow.count() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = &shadow.seen()[0];
    assert_eq!(s.header("host"), Some("api.example-shadow:8080"));
    assert_eq!(s.path, "/m?q=1");
    assert_eq!(s.body, bytes::Bytes::from_static(b"payload"));
    assert_eq!(main.seen()[0].header("host"), Some("api.example:8080"));
    assert_eq!(main.seen()[0].body, bytes::Bytes::from_static(b"payload"));
    // runtime_fraction 0%: never mirrored.
    get(addr, "x", "/half").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(shadow.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_are_switched_per_route_with_filter_config() {
    let b = Scripted::start(|_, _| ok()).await;
    // The fault filter aborts everything, except where a route disables it; the rate limit
    // filter is disabled by default and one route enables it.
    let filters = format!(
        "          - name: envoy.filters.http.fault\n            typed_config: {{'@type': {FAULT}, abort: {{http_status: 418, percentage: {{numerator: 100}}}}}}\n          - name: envoy.filters.http.local_ratelimit\n            disabled: true\n            typed_config: {{'@type': {LRL}, stat_prefix: rl, token_bucket: {{max_tokens: 1, fill_interval: 60s}}, filter_enabled: {{default_value: {{numerator: 100}}}}, filter_enforced: {{default_value: {{numerator: 100}}}}}}\n"
    );
    let off = "{match: {prefix: /nofault}, route: {cluster: a}, typed_per_filter_config: {envoy.filters.http.fault: {'@type': type.googleapis.com/envoy.config.route.v3.FilterConfig, disabled: true}}}";
    let limited = format!(
        "{{match: {{prefix: /limited}}, route: {{cluster: a}}, typed_per_filter_config: {{envoy.filters.http.fault: {{'@type': type.googleapis.com/envoy.config.route.v3.FilterConfig, disabled: true}}, envoy.filters.http.local_ratelimit: {{'@type': type.googleapis.com/envoy.config.route.v3.FilterConfig, config: {{'@type': {LRL}, stat_prefix: rl, token_bucket: {{max_tokens: 1, fill_interval: 60s}}, filter_enabled: {{default_value: {{numerator: 100}}}}, filter_enforced: {{default_value: {{numerator: 100}}}}}}}}}}}}"
    );
    let routes = [
        off,
        limited.as_str(),
        "{match: {prefix: /}, route: {cluster: a}}",
    ];
    let proxy = start(&http_bootstrap_with(
        "",
        &filters,
        &vhost("", &routes),
        &cluster("a", &[b.addr], ""),
    ));
    assert!(proxy.unsupported().is_empty(), "{:?}", proxy.unsupported());
    let addr = proxy.listener_addr("http").unwrap();
    assert_eq!(get(addr, "x", "/").await.status, 418);
    for _ in 0..3 {
        assert_eq!(
            get(addr, "x", "/nofault").await.status,
            200,
            "fault off, limit off"
        );
    }
    assert_eq!(get(addr, "x", "/limited").await.status, 200);
    assert_eq!(
        get(addr, "x", "/limited").await.status,
        429,
        "limit on for this route"
    );
}
