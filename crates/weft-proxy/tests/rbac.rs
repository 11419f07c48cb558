//! The RBAC filters with real traffic. Policies are Istio AuthorizationPolicies translated by
//! weft-control (Istio's own builder cases from `conformance/istio/authz/http`, and policies
//! written here for paths with `*`, `{*}`, `{**}`, headers and IP blocks), put into a proxy
//! bootstrap, and exercised with requests whose verdicts the translated `-out` rules imply:
//! allowed requests reach the upstream, denied ones get `403 RBAC: access denied` and never
//! reach it. The network RBAC filter closes denied connections.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_control::model::{Environment, MeshSettings, Proxy};
use weft_control::translate::{authn, authz};

fn conformance_dir() -> PathBuf {
    let base = std::env::var("WEFT_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/istio")
        });
    assert!(
        base.join("authz").is_dir(),
        "conformance data missing: {} (set WEFT_CONFORMANCE_DIR)",
        base.display()
    );
    base
}

fn env_for(yaml: &str) -> (Environment, Proxy) {
    let parsed = weft_config::parse_str(yaml, "policies.yaml");
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    let env = Environment::from_resources(&parsed.resources, MeshSettings::default());
    let mut proxy = Proxy::from_node_id("sidecar~10.0.0.1~httpbin-1.foo~foo.svc.cluster.local")
        .expect("node id");
    proxy.labels = [("app", "httpbin"), ("version", "v1")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (env, proxy)
}

/// The workload's translated HTTP filters (jwt_authn, then RBAC) as bootstrap YAML list items.
pub fn translated_http_filters(yaml: &str) -> String {
    let (env, proxy) = env_for(yaml);
    let mut out = String::new();
    for f in authn::http_filters(&env, &proxy)
        .iter()
        .chain(authz::http_filters(&env, &proxy).iter())
    {
        let v = weft_xds::json::to_value(f).expect("filter to JSON");
        out.push_str(&format!("          - {v}\n"));
    }
    out
}

const ANY_VHOST: &str = "            - name: vh\n              domains: ['*']\n              routes:\n              - {match: {prefix: /}, route: {cluster: app}}\n";

struct Check {
    method: &'static str,
    host: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    status: u16,
}

const fn get(path: &'static str, status: u16) -> Check {
    Check {
        method: "GET",
        host: "x",
        path,
        headers: &[],
        status,
    }
}

const fn call(method: &'static str, host: &'static str, path: &'static str, status: u16) -> Check {
    Check {
        method,
        host,
        path,
        headers: &[],
        status,
    }
}

/// Runs the checks against a proxy whose HTTP filters are the translation of `yaml`.
async fn exercise(name: &str, yaml: &str, checks: &[Check]) {
    let backend = Scripted::start(|_, _| ok()).await;
    let filters = translated_http_filters(yaml);
    let proxy = start(&http_bootstrap_with(
        "",
        &filters,
        ANY_VHOST,
        &cluster("app", &[backend.addr], ""),
    ));
    let addr = proxy.listener_addr("http").expect("listener");
    let mut reached = 0;
    for c in checks {
        let g = send(addr, req(c.method, c.host, c.path, c.headers)).await;
        assert_eq!(
            g.status.as_u16(),
            c.status,
            "{name}: {} {} {} (filters:\n{filters})",
            c.method,
            c.host,
            c.path
        );
        if c.status == 403 {
            assert_eq!(g.text(), "RBAC: access denied", "{name}: {}", c.path);
        } else {
            reached += 1;
        }
    }
    assert_eq!(
        backend.count(),
        reached,
        "{name}: only allowed requests reach the upstream"
    );
}

/// Istio's builder cases, applied to a sidecar and exercised over plaintext (no peer identity,
/// no JWT). Verdicts follow from each case's `-out` rules: a `not*` list holding `*` excludes
/// every request; principals need mutual TLS; dry-run rules never enforce.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_authz_cases_enforced_by_the_proxy() {
    let dir = conformance_dir().join("authz/http");
    let cases: &[(&str, &[Check])] = &[
        (
            "allow-empty-rule-in.yaml",
            &[get("/", 200), get("/any/path", 200)],
        ),
        ("allow-nil-rule-in.yaml", &[get("/", 403)]),
        (
            "allow-path-in.yaml",
            &[get("/exact", 403), get("/prefix/a", 403)],
        ),
        ("allow-full-rule-in.yaml", &[get("/exact", 403)]),
        ("audit-full-rule-in.yaml", &[get("/", 200)]),
        ("deny-and-allow-in.yaml", &[get("/", 403)]),
        ("deny-empty-rule-in.yaml", &[get("/", 403)]),
        (
            "dry-run-allow-in.yaml",
            &[get("/exact", 200), get("/other", 200)],
        ),
        (
            "dry-run-allow-and-deny-in.yaml",
            &[get("/allow", 200), get("/deny", 200)],
        ),
        (
            "dry-run-mix-in.yaml",
            &[get("/another", 200), get("/allow", 403)],
        ),
        (
            "multiple-policies-in.yaml",
            &[
                call("GET", "x", "/anything", 200),
                call("POST", "x", "/anything", 200),
                call("DELETE", "x", "/v1", 200),
                call("DELETE", "x", "/v2", 200),
                call("DELETE", "google.com", "/other", 200),
                call("DELETE", "HTTPBIN.org", "/other", 200),
                call("DELETE", "x", "/other", 403),
                call("PUT", "example.com", "/v3", 403),
            ],
        ),
        ("single-policy-in.yaml", &[get("/", 403)]),
        ("simple-policy-td-aliases-in.yaml", &[get("/", 403)]),
        (
            "simple-policy-multiple-td-aliases-in.yaml",
            &[get("/", 403)],
        ),
        (
            "simple-policy-principal-with-wildcard-in.yaml",
            &[get("/", 403)],
        ),
        ("td-aliases-source-principal-in.yaml", &[get("/", 403)]),
        // The second source only excludes trust domains: a request with no identity passes.
        ("trust-domains-in.yaml", &[get("/", 200)]),
    ];
    for (file, checks) in cases {
        let yaml = std::fs::read_to_string(dir.join(file)).expect("read case");
        exercise(file, &yaml, checks).await;
    }
}

/// Path templates, wildcards, headers and IP blocks; DENY before ALLOW.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_templates_headers_and_deny_before_allow() {
    let yaml = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules:
  - to: [{operation: {methods: [GET], paths: ["/api/*", "/files/{*}/meta", "/{**}/download", "*.png"]}}]
  - to: [{operation: {paths: [/env]}}]
    when: [{key: "request.headers[x-env]", values: ["prod*"]}]
  - from: [{source: {ipBlocks: ["10.0.0.0/8"]}}]
    to: [{operation: {paths: [/internal]}}]
  - from: [{source: {ipBlocks: ["127.0.0.0/8"], notIpBlocks: ["127.0.0.2"]}}]
    to: [{operation: {paths: [/local]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: foo}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/api/admin*"]}}]
"#;
    let checks = [
        get("/api/users", 200),
        get("/api/users?x=1", 200),
        call("POST", "x", "/api/users", 403),
        get("/api/admin/keys", 403),
        get("/files/a/meta", 200),
        get("/files/a/b/meta", 403),
        get("/files//meta", 403),
        get("/a/b/c/download", 200),
        get("/x/download", 200),
        get("/download", 403),
        get("/img/logo.png", 200),
        get("/env", 403),
        Check {
            method: "GET",
            host: "x",
            path: "/env",
            headers: &[("x-env", "production")],
            status: 200,
        },
        Check {
            method: "GET",
            host: "x",
            path: "/env",
            headers: &[("x-env", "staging")],
            status: 403,
        },
        get("/internal", 403),
        get("/local", 200),
    ];
    exercise("templates", yaml, &checks).await;
}

/// The network RBAC filter on a TCP chain: a denied connection is closed before any byte
/// reaches the upstream; an allowed one is proxied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_rbac_closes_denied_connections() {
    let (echo, _task) = tcp_echo().await;
    let tcp_bootstrap = |filters: &str| {
        format!(
            r#"
static_resources:
  listeners:
  - name: tcp
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
{filters}      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: echo
  clusters:
{}
"#,
            cluster("echo", &[echo], "")
        )
    };
    let tcp_filters = |yaml: &str| {
        let (env, proxy) = env_for(yaml);
        let mut out = String::new();
        for f in authz::tcp_filters(&env, &proxy) {
            let v = weft_xds::json::to_value(&f).expect("filter to JSON");
            out.push_str(&format!("      - {v}\n"));
        }
        assert!(!out.is_empty(), "no network filters for {yaml}");
        out
    };
    let deny = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-local, namespace: foo}
spec:
  action: DENY
  rules:
  - from: [{source: {ipBlocks: ["127.0.0.1"]}}]
    to: [{operation: {methods: [GET]}}]
"#;
    let allow_other_port = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-9999, namespace: foo}
spec:
  rules:
  - to: [{operation: {ports: ["9999"]}}]
"#;
    let allow_local = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-local, namespace: foo}
spec:
  rules:
  - from: [{source: {ipBlocks: ["127.0.0.0/8"]}}]
"#;
    for (name, yaml, allowed) in [
        // The HTTP-only `methods` is dropped from a DENY rule on TCP: the rule widens.
        ("deny", deny, false),
        ("allow-9999", allow_other_port, false),
        ("allow-local", allow_local, true),
    ] {
        let proxy = start(&tcp_bootstrap(&tcp_filters(yaml)));
        let addr = proxy.listener_addr("tcp").expect("listener");
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let _ = s.write_all(b"ping").await;
        let _ = s.shutdown().await;
        let mut got = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut got))
            .await
            .expect("connection ends");
        if allowed {
            assert_eq!(got, b"pingbye", "{name}");
        } else {
            assert!(got.is_empty(), "{name}: denied connection got {got:?}");
        }
    }
}

/// CUSTOM: the shadow RBAC rules select the requests an HTTP external authorizer decides; its
/// allow adds headers upstream, its denial (status, body, headers) reaches the client; requests
/// outside the CUSTOM rules never reach it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_action_asks_the_http_authorizer() {
    let authz_server = Scripted::start(|_, seen| {
        if seen.header("x-user") == Some("alice") {
            Reply::Status(
                200,
                vec![("x-authz-user", "alice".to_string())],
                bytes::Bytes::new(),
            )
        } else {
            Reply::Status(
                401,
                vec![("x-reason", "unknown user".to_string())],
                bytes::Bytes::from_static(b"denied by authz"),
            )
        }
    })
    .await;
    let port = authz_server.addr.port();
    let yaml = format!(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: authz, namespace: foo}}
spec:
  hosts: [authz.foo.svc.cluster.local]
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ext, namespace: foo}}
spec:
  action: CUSTOM
  provider: {{name: my-authz}}
  rules: [{{to: [{{operation: {{paths: ["/secure/*"]}}}}]}}]
"#
    );
    let mesh_yaml = format!(
        r#"
extensionProviders:
- name: my-authz
  envoyExtAuthzHttp:
    service: foo/authz.foo.svc.cluster.local
    port: {port}
    pathPrefix: /check
    includeRequestHeadersInCheck: [x-user]
    headersToUpstreamOnAllow: [x-authz-*]
    headersToDownstreamOnDeny: [x-reason]
"#
    );
    let parsed = weft_config::parse_str(&yaml, "policies.yaml");
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    let mc: weft_config::mesh::MeshConfig = serde_norway::from_str(&mesh_yaml).expect("mesh");
    let mesh = MeshSettings {
        extension_providers: mc.extension_providers,
        ..MeshSettings::default()
    };
    let env = Environment::from_resources(&parsed.resources, mesh);
    let proxy = Proxy::from_node_id("sidecar~10.0.0.1~httpbin-1.foo~foo.svc.cluster.local")
        .expect("node id");
    let mut filters = String::new();
    for f in authz::http_filters(&env, &proxy) {
        let v = weft_xds::json::to_value(&f).expect("filter to JSON");
        filters.push_str(&format!("          - {v}\n"));
    }
    assert!(filters.contains("ext_authz"), "{filters}");
    let app = Scripted::start(|_, _| ok()).await;
    let clusters = format!(
        "{}{}",
        cluster("app", &[app.addr], ""),
        cluster(
            &format!("outbound|{port}||authz.foo.svc.cluster.local"),
            &[authz_server.addr],
            ""
        )
    );
    let proxy = start(&http_bootstrap_with("", &filters, ANY_VHOST, &clusters));
    let addr = proxy.listener_addr("http").expect("listener");

    assert_eq!(send(addr, req("GET", "x", "/open", &[])).await.status, 200);
    assert_eq!(
        authz_server.count(),
        0,
        "requests outside CUSTOM rules skip the authorizer"
    );

    let g = send(addr, req("GET", "x", "/secure/a", &[("x-user", "alice")])).await;
    assert_eq!(g.status, 200);
    let seen = app.seen();
    assert_eq!(
        seen.last().and_then(|s| s.header("x-authz-user")),
        Some("alice")
    );
    let asked = authz_server.seen();
    assert_eq!(asked[0].path, "/check/secure/a");
    assert_eq!(asked[0].header("x-user"), Some("alice"));

    let g = send(addr, req("GET", "x", "/secure/a", &[("x-user", "bob")])).await;
    assert_eq!(g.status, 401);
    assert_eq!(g.text(), "denied by authz");
    assert_eq!(g.header("x-reason"), Some("unknown user"));
    assert_eq!(
        app.count(),
        2,
        "the denied request never reached the upstream"
    );

    // The authorizer gone: fail closed with 403.
    drop(authz_server);
    let g = send(addr, req("GET", "x", "/secure/b", &[("x-user", "alice")])).await;
    assert_eq!(g.status, 403);
    assert_eq!(app.count(), 2);
}

/// A gRPC authorizer (`envoy.service.auth.v3.Authorization/Check`) for CUSTOM policies.
struct GrpcAuthz {
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl weft_xds::envoy::service::auth::v3::authorization_server::Authorization for GrpcAuthz {
    async fn check(
        &self,
        request: tonic::Request<weft_xds::envoy::service::auth::v3::CheckRequest>,
    ) -> Result<tonic::Response<weft_xds::envoy::service::auth::v3::CheckResponse>, tonic::Status>
    {
        use weft_xds::envoy::service::auth::v3 as auth;
        let http = request
            .into_inner()
            .attributes
            .and_then(|a| a.request)
            .and_then(|r| r.http)
            .unwrap_or_default();
        if let Ok(mut s) = self.seen.lock() {
            s.push(format!("{} {}", http.method, http.path));
        }
        let allowed = http.headers.get("x-user").map(String::as_str) == Some("alice");
        let header = |k: &str, v: &str| weft_xds::envoy::config::core::v3::HeaderValueOption {
            header: Some(weft_xds::envoy::config::core::v3::HeaderValue {
                key: k.into(),
                value: v.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let resp = if allowed {
            auth::CheckResponse {
                status: Some(weft_xds::google::rpc::Status::default()),
                http_response: Some(auth::check_response::HttpResponse::OkResponse(
                    auth::OkHttpResponse {
                        headers: vec![header("x-checked-by", "grpc")],
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }
        } else {
            auth::CheckResponse {
                status: Some(weft_xds::google::rpc::Status {
                    code: 7,
                    ..Default::default()
                }),
                http_response: Some(auth::check_response::HttpResponse::DeniedResponse(
                    auth::DeniedHttpResponse {
                        status: Some(weft_xds::envoy::r#type::v3::HttpStatus { code: 451 }),
                        headers: vec![header("x-why", "policy")],
                        body: "grpc says no".into(),
                    },
                )),
                ..Default::default()
            }
        };
        Ok(tonic::Response::new(resp))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_action_asks_the_grpc_authorizer() {
    use weft_xds::envoy::service::auth::v3::authorization_server::AuthorizationServer;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let authz_addr = listener.local_addr().expect("addr");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let svc = AuthorizationServer::new(GrpcAuthz { seen: seen.clone() });
    let server = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await;
    });
    let port = authz_addr.port();
    let yaml = format!(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: authz, namespace: foo}}
spec:
  hosts: [authz.foo.svc.cluster.local]
  ports: [{{number: {port}, name: grpc, protocol: GRPC}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ext, namespace: foo}}
spec:
  action: CUSTOM
  provider: {{name: grpc-authz}}
  rules: [{{to: [{{operation: {{methods: [POST]}}}}]}}]
"#
    );
    let mesh_yaml = format!(
        "extensionProviders:\n- name: grpc-authz\n  envoyExtAuthzGrpc: {{service: authz.foo.svc.cluster.local, port: {port}, timeout: 2s}}\n"
    );
    let parsed = weft_config::parse_str(&yaml, "policies.yaml");
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    let mc: weft_config::mesh::MeshConfig = serde_norway::from_str(&mesh_yaml).expect("mesh");
    let mesh = MeshSettings {
        extension_providers: mc.extension_providers,
        ..MeshSettings::default()
    };
    let env = Environment::from_resources(&parsed.resources, mesh);
    let proxy = Proxy::from_node_id("sidecar~10.0.0.1~httpbin-1.foo~foo.svc.cluster.local")
        .expect("node id");
    let mut filters = String::new();
    for f in authz::http_filters(&env, &proxy) {
        let v = weft_xds::json::to_value(&f).expect("filter to JSON");
        filters.push_str(&format!("          - {v}\n"));
    }
    let app = Scripted::start(|_, _| ok()).await;
    let clusters = format!(
        "{}{}",
        cluster("app", &[app.addr], ""),
        cluster(
            &format!("outbound|{port}||authz.foo.svc.cluster.local"),
            &[authz_addr],
            ""
        )
    );
    let proxy = start(&http_bootstrap_with("", &filters, ANY_VHOST, &clusters));
    let addr = proxy.listener_addr("http").expect("listener");

    assert_eq!(send(addr, req("GET", "x", "/r", &[])).await.status, 200);
    let g = send(addr, req("POST", "x", "/r", &[("x-user", "alice")])).await;
    assert_eq!(g.status, 200);
    assert_eq!(
        app.seen().last().and_then(|s| s.header("x-checked-by")),
        Some("grpc")
    );
    let g = send(addr, req("POST", "x", "/r", &[("x-user", "eve")])).await;
    assert_eq!(g.status.as_u16(), 451);
    assert_eq!(g.text(), "grpc says no");
    assert_eq!(g.header("x-why"), Some("policy"));
    assert_eq!(app.count(), 2);
    let asked = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(asked, vec!["POST /r".to_string(), "POST /r".to_string()]);
    server.abort();
}
