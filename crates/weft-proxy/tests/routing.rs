//! HTTP routing, actions, rewrites and header manipulation, through real sockets.

mod common;

use common::*;

fn indent(s: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    s.lines().map(|l| format!("{pad}{l}\n")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_path_header_and_query() {
    let (a, b, c, d) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
        Backend::start("d").await,
    );
    let vhosts = indent(
        r#"
- name: exact
  domains: ["api.example.com", "api.example.com:8080"]
  routes:
  - match: {path: /exact}
    route: {cluster: a}
  - match:
      prefix: /
      headers:
      - name: x-version
        string_match: {exact: v2}
    route: {cluster: b}
  - match:
      prefix: /
      query_parameters:
      - name: debug
        string_match: {exact: "1"}
    route: {cluster: c}
  - match: {safe_regex: {regex: "/items/[0-9]+"}}
    route: {cluster: c}
  - match: {path_separated_prefix: /sep}
    route: {cluster: b}
  - match: {prefix: /ci, case_sensitive: false}
    route: {cluster: c}
  - match:
      prefix: /inv
      headers:
      - name: x-user
        string_match: {prefix: admin}
        invert_match: true
    route: {cluster: b}
  - match:
      prefix: /present
      headers:
      - {name: x-flag, present_match: true}
    route: {cluster: b}
  - match:
      prefix: /hdr
      headers:
      - name: x-h
        string_match: {suffix: "-end"}
      - name: x-i
        string_match: {contains: mid}
      - name: x-j
        string_match: {safe_regex: {regex: "[a-z]+"}}
    route: {cluster: c}
  - match: {prefix: /}
    route: {cluster: a}
- name: wildcard-suffix
  domains: ["*.wild.com"]
  routes: [{match: {prefix: /}, route: {cluster: b}}]
- name: wildcard-prefix
  domains: ["pre.*"]
  routes: [{match: {prefix: /}, route: {cluster: c}}]
- name: longest-suffix
  domains: ["*.deep.wild.com"]
  routes: [{match: {prefix: /}, route: {cluster: d}}]
- name: default
  domains: ["*"]
  routes: [{match: {prefix: /}, route: {cluster: d}}]
"#,
        12,
    );
    let clusters = [("a", &a), ("b", &b), ("c", &c), ("d", &d)]
        .iter()
        .map(|(n, be)| cluster(n, &[be.addr], ""))
        .collect::<String>();
    let proxy = start(&http_bootstrap("", &vhosts, &clusters));
    let addr = proxy.listener_addr("http").unwrap();

    let who = |g: Got| {
        assert_eq!(g.status, 200, "{}", g.text());
        g.echo().backend
    };
    let h = "api.example.com";
    assert_eq!(who(get(addr, h, "/exact").await), "a");
    assert_eq!(
        who(get(addr, "API.Example.com:8080", "/exact").await),
        "a",
        "exact with port, case-insensitive"
    );
    assert_eq!(
        who(get(addr, "api.example.com:9999", "/exact").await),
        "a",
        "port stripped"
    );
    assert_eq!(
        who(get(addr, h, "/exact/more").await),
        "a",
        "path is exact; falls to /"
    );
    assert_eq!(
        who(send(addr, req("GET", h, "/x", &[("x-version", "v2")])).await),
        "b"
    );
    assert_eq!(
        who(send(addr, req("GET", h, "/x", &[("x-version", "v3")])).await),
        "a"
    );
    assert_eq!(who(get(addr, h, "/x?debug=1").await), "c");
    assert_eq!(who(get(addr, h, "/x?a=2&debug=1").await), "c");
    assert_eq!(who(get(addr, h, "/x?debug=10").await), "a");
    assert_eq!(who(get(addr, h, "/items/42").await), "c");
    assert_eq!(
        who(get(addr, h, "/items/42x").await),
        "a",
        "regex is a full match"
    );
    assert_eq!(who(get(addr, h, "/sep").await), "b");
    assert_eq!(who(get(addr, h, "/sep/x").await), "b");
    assert_eq!(who(get(addr, h, "/separate").await), "a");
    assert_eq!(who(get(addr, h, "/CI/thing").await), "c");
    assert_eq!(
        who(send(addr, req("GET", h, "/inv", &[("x-user", "bob")])).await),
        "b"
    );
    assert_eq!(
        who(send(addr, req("GET", h, "/inv", &[("x-user", "admin-1")])).await),
        "a"
    );
    assert_eq!(
        who(send(addr, req("GET", h, "/present", &[("x-flag", "")])).await),
        "b"
    );
    assert_eq!(who(get(addr, h, "/present").await), "a");
    assert_eq!(
        who(send(
            addr,
            req(
                "GET",
                h,
                "/hdr",
                &[("x-h", "a-end"), ("x-i", "amidb"), ("x-j", "abc")]
            )
        )
        .await),
        "c"
    );
    assert_eq!(
        who(send(
            addr,
            req(
                "GET",
                h,
                "/hdr",
                &[("x-h", "a-end"), ("x-i", "amidb"), ("x-j", "ab1")]
            )
        )
        .await),
        "a"
    );
    assert_eq!(who(get(addr, "x.wild.com", "/").await), "b");
    assert_eq!(
        who(get(addr, "x.deep.wild.com", "/").await),
        "d",
        "longest suffix wins"
    );
    assert_eq!(
        who(get(addr, "wild.com", "/").await),
        "d",
        "*.wild.com needs a subdomain"
    );
    assert_eq!(who(get(addr, "pre.anything", "/").await), "c");
    assert_eq!(who(get(addr, "other", "/").await), "d");

    let mut h2 = H2::connect(addr).await;
    let g = h2.get("api.example.com", "/items/7").await;
    assert_eq!(g.status, 200);
    assert_eq!(g.echo().backend, "c", "h2c routes on :authority");
    assert_eq!(g.echo().version, "HTTP/1.1", "HTTP/1.1 upstream by default");
    assert_eq!(g.echo().header("host"), Some("api.example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_404_and_direct_response_and_redirects() {
    let a = Backend::start("a").await;
    let vhosts = indent(
        r#"
- name: only
  domains: ["known"]
  routes:
  - match: {path: /teapot}
    direct_response: {status: 418, body: {inline_string: "short and stout"}}
    response_headers_to_add: [{header: {key: x-route, value: teapot}}]
  - match: {path: /https}
    redirect: {https_redirect: true}
  - match: {prefix: /old/}
    redirect: {prefix_rewrite: /new/, response_code: FOUND}
  - match: {path: /elsewhere}
    redirect: {host_redirect: other.example.com, port_redirect: 8443, path_redirect: /landing, strip_query: true, response_code: PERMANENT_REDIRECT}
  - match: {prefix: /re/}
    redirect: {regex_rewrite: {pattern: {regex: "^/re/([a-z]+)$"}, substitution: "/moved/\\1"}}
  - match: {prefix: /a}
    route: {cluster: a}
"#,
        12,
    );
    let proxy = start(&http_bootstrap("", &vhosts, &cluster("a", &[a.addr], "")));
    let addr = proxy.listener_addr("http").unwrap();

    assert_eq!(
        get(addr, "unknown", "/a").await.status,
        404,
        "no virtual host"
    );
    assert_eq!(get(addr, "known", "/zzz").await.status, 404, "no route");
    assert_eq!(a.requests.load(std::sync::atomic::Ordering::SeqCst), 0);

    let g = get(addr, "known", "/teapot").await;
    assert_eq!(g.status, 418);
    assert_eq!(g.text(), "short and stout");
    assert_eq!(g.header("x-route"), Some("teapot"));

    let g = get(addr, "known:8080", "/https?x=1").await;
    assert_eq!(g.status, 301);
    assert_eq!(g.header("location"), Some("https://known/https?x=1"));

    let g = get(addr, "known", "/old/path/x?q=2").await;
    assert_eq!(g.status, 302);
    assert_eq!(g.header("location"), Some("http://known/new/path/x?q=2"));

    let g = get(addr, "known", "/elsewhere?drop=me").await;
    assert_eq!(g.status, 308);
    assert_eq!(
        g.header("location"),
        Some("http://other.example.com:8443/landing")
    );

    let g = get(addr, "known", "/re/abc").await;
    assert_eq!(g.status, 301);
    assert_eq!(g.header("location"), Some("http://known/moved/abc"));
    assert_eq!(
        a.requests.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "local replies never reach upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrites_and_header_manipulation_at_every_level() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let rc_extra = indent(
        r#"request_headers_to_add: [{header: {key: x-level, value: config}, append_action: APPEND_IF_EXISTS_OR_ADD}]
response_headers_to_add: [{header: {key: x-resp-level, value: config}}]
response_headers_to_remove: [x-backend]
request_headers_to_remove: [x-drop-config]
"#,
        12,
    );
    let vhosts = indent(
        r#"
- name: vh
  domains: ["*"]
  request_headers_to_add:
  - {header: {key: x-level, value: vhost}, append_action: APPEND_IF_EXISTS_OR_ADD}
  - {header: {key: x-only-if-absent, value: vhost}, append_action: ADD_IF_ABSENT}
  response_headers_to_add: [{header: {key: x-resp-level, value: vhost}}]
  routes:
  - match: {prefix: /api/}
    route: {cluster: a, prefix_rewrite: /v2/, host_rewrite_literal: upstream.internal}
    request_headers_to_add:
    - {header: {key: x-level, value: route}, append_action: APPEND_IF_EXISTS_OR_ADD}
    - {header: {key: x-overwrite, value: route}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
    request_headers_to_remove: [x-drop-me]
    response_headers_to_add: [{header: {key: x-resp-route, value: "yes"}}]
  - match: {safe_regex: {regex: "/users/([0-9]+)/profile"}}
    route:
      cluster: a
      regex_rewrite: {pattern: {regex: "^/users/([0-9]+)/profile$"}, substitution: "/profile?id=\\1"}
  - match: {prefix: /split}
    route:
      weighted_clusters:
        clusters:
        - name: b
          weight: 100
          request_headers_to_add: [{header: {key: x-level, value: weighted}}]
          response_headers_to_add: [{header: {key: x-resp-weighted, value: b}}]
          host_rewrite_literal: b.internal
"#,
        12,
    );
    let clusters = cluster("a", &[a.addr], "") + &cluster("b", &[b.addr], "");
    let proxy = start(&http_bootstrap(&rc_extra, &vhosts, &clusters));
    let addr = proxy.listener_addr("http").unwrap();

    let g = send(
        addr,
        req(
            "GET",
            "front.example.com",
            "/api/items?x=1",
            &[
                ("x-drop-me", "1"),
                ("x-drop-config", "1"),
                ("x-overwrite", "client"),
                ("x-only-if-absent", "client"),
            ],
        ),
    )
    .await;
    assert_eq!(g.status, 200, "{}", g.text());
    let e = g.echo();
    assert_eq!(
        e.path, "/v2/items?x=1",
        "prefix_rewrite keeps the rest and the query"
    );
    assert_eq!(e.header("host"), Some("upstream.internal"));
    assert_eq!(
        e.headers["x-level"],
        vec!["route", "vhost", "config"],
        "most specific first"
    );
    assert_eq!(e.headers["x-overwrite"], vec!["route"]);
    assert_eq!(e.headers["x-only-if-absent"], vec!["client"]);
    assert!(e.header("x-drop-me").is_none() && e.header("x-drop-config").is_none());
    assert_eq!(g.header("x-resp-route"), Some("yes"));
    let levels: Vec<_> = g
        .headers
        .get_all("x-resp-level")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(levels, vec!["vhost", "config"]);
    assert!(
        g.header("x-backend").is_none(),
        "removed at route-config level"
    );
    assert!(
        g.header("x-backend-secret").is_none(),
        "named in Connection: hop-by-hop"
    );
    assert!(g.header("x-envoy-upstream-service-time").is_some());

    let e = get(addr, "front", "/users/42/profile").await.echo();
    assert_eq!(e.path, "/profile?id=42");

    let g = get(addr, "front", "/split").await;
    let e = g.echo();
    assert_eq!(e.backend, "b");
    assert_eq!(e.header("host"), Some("b.internal"));
    assert_eq!(e.headers["x-level"], vec!["weighted", "vhost", "config"]);
    assert_eq!(g.header("x-resp-weighted"), Some("b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_split_follows_weights() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let vhosts = indent(
        r#"
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route:
      weighted_clusters:
        clusters:
        - {name: a, weight: 80}
        - {name: b, weight: 20}
"#,
        12,
    );
    let clusters = cluster("a", &[a.addr], "") + &cluster("b", &[b.addr], "");
    let proxy = start(&http_bootstrap("", &vhosts, &clusters));
    let mut c = H1::connect(proxy.listener_addr("http").unwrap()).await;
    let n = 1000;
    let mut to_a = 0;
    for _ in 0..n {
        if c.get("x", "/").await.echo().backend == "a" {
            to_a += 1;
        }
    }
    // Binomial(1000, 0.8): sd ~ 12.6; +-6 sd.
    assert!((725..=875).contains(&to_a), "a got {to_a} of {n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_forwarding_headers_and_hop_by_hop() {
    let a = Backend::start("a").await;
    let vhosts = indent(
        "- {name: vh, domains: ['*'], routes: [{match: {prefix: /}, route: {cluster: a}}]}\n",
        12,
    );
    let proxy = start(&http_bootstrap("", &vhosts, &cluster("a", &[a.addr], "")));
    let addr = proxy.listener_addr("http").unwrap();
    let e = send(
        addr,
        req(
            "GET",
            "x",
            "/",
            &[
                ("connection", "x-secret"),
                ("x-secret", "1"),
                ("keep-alive", "timeout=5"),
                ("te", "gzip"),
            ],
        ),
    )
    .await
    .echo();
    let id = e.header("x-request-id").expect("x-request-id generated");
    assert_eq!(id.len(), 36);
    assert_eq!(e.header("x-forwarded-proto"), Some("http"));
    for h in ["x-secret", "keep-alive", "te", "proxy-connection"] {
        assert!(e.header(h).is_none(), "{h} must not be forwarded");
    }
    let e = send(addr, req("GET", "x", "/", &[("x-request-id", "given-id")]))
        .await
        .echo();
    assert_eq!(e.header("x-request-id"), Some("given-id"), "propagated");
}
