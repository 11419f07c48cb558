//! Istio's AuthorizationPolicy builder cases (`conformance/istio/authz/http` and `/tcp`): each
//! `*-in.yaml` is translated for the workload `app=httpbin,version=v1` in namespace `foo` and
//! compared, message by message, with the RBAC / ext_authz filters in `*-out*.yaml`. The options
//! some cases need (trust domain aliases, extension providers) are those of Istio's
//! `builder_test.go`.

use std::path::{Path, PathBuf};

use prost::Message;
use weft_control::model::{Environment, MeshSettings, Proxy};
use weft_control::translate::authz;
use weft_xds::envoy::config::listener::v3 as listener;
use weft_xds::envoy::extensions::filters::http::ext_authz::v3 as ext_authz_http;
use weft_xds::envoy::extensions::filters::http::rbac::v3 as rbac_http;
use weft_xds::envoy::extensions::filters::network::ext_authz::v3 as ext_authz_tcp;
use weft_xds::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use weft_xds::envoy::extensions::filters::network::rbac::v3 as rbac_tcp;
use weft_xds::google::protobuf::Any;

fn conformance_dir() -> PathBuf {
    let base = std::env::var("WEFT_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/istio")
        });
    let dir = base.join("authz");
    assert!(
        dir.is_dir(),
        "conformance data missing: {} (set WEFT_CONFORMANCE_DIR)",
        dir.display()
    );
    dir
}

const EXT_AUTHZ_SERVICE: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: my-custom-ext-authz, namespace: foo}
spec:
  hosts: [my-custom-ext-authz.foo.svc.cluster.local]
  ports: [{number: 9000, name: grpc, protocol: GRPC}]
  resolution: DNS
"#;

const MESH_GRPC_NO_NAMESPACE: &str = r#"
extensionProviders:
- name: default
  envoyExtAuthzGrpc:
    service: my-custom-ext-authz.foo.svc.cluster.local
    port: 9000
    failOpen: true
    statusOnError: "403"
"#;

const MESH_GRPC: &str = r#"
extensionProviders:
- name: default
  envoyExtAuthzGrpc:
    service: foo/my-custom-ext-authz.foo.svc.cluster.local
    port: 9000
    timeout: 0.002s
    failOpen: true
    statusOnError: "403"
    includeRequestBodyInCheck: {maxRequestBytes: 4096, allowPartialMessage: true}
"#;

const MESH_HTTP: &str = r#"
extensionProviders:
- name: default
  envoyExtAuthzHttp:
    service: foo/my-custom-ext-authz.foo.svc.cluster.local
    port: 9000
    timeout: 10s
    failOpen: true
    statusOnError: "403"
    pathPrefix: /check
    includeRequestHeadersInCheck: [x-custom-id, x-prefix-*, "*-suffix"]
    includeHeadersInCheck: [should-not-include-when-IncludeRequestHeadersInCheck-is-set]
    includeAdditionalHeadersInCheck: {x-header-1: value-1, x-header-2: value-2}
    includeRequestBodyInCheck: {maxRequestBytes: 2048, allowPartialMessage: true, packAsBytes: true}
    headersToUpstreamOnAllow: [Authorization, x-prefix-*, "*-suffix"]
    headersToDownstreamOnDeny: [Set-cookie, x-prefix-*, "*-suffix"]
    headersToDownstreamOnAllow: [Set-cookie, x-prefix-*, "*-suffix"]
"#;

const MESH_INVALID: &str = r#"
extensionProviders:
- name: default
  envoyExtAuthzHttp:
    service: foo/my-custom-ext-authz
    port: 999999
    pathPrefix: check
    statusOnError: "999"
"#;

struct Case {
    name: &'static str,
    input: &'static str,
    mesh: Option<&'static str>,
    trust_domain: Option<(&'static str, &'static [&'static str])>,
    want: &'static [&'static str],
}

const fn case(name: &'static str, input: &'static str, want: &'static [&'static str]) -> Case {
    Case {
        name,
        input,
        mesh: None,
        trust_domain: None,
        want,
    }
}

const fn with_mesh(
    name: &'static str,
    mesh: &'static str,
    input: &'static str,
    want: &'static [&'static str],
) -> Case {
    Case {
        name,
        input,
        mesh: Some(mesh),
        trust_domain: None,
        want,
    }
}

const fn with_td(
    name: &'static str,
    td: &'static str,
    aliases: &'static [&'static str],
    input: &'static str,
    want: &'static [&'static str],
) -> Case {
    Case {
        name,
        input,
        mesh: None,
        trust_domain: Some((td, aliases)),
        want,
    }
}

const HTTP_CASES: &[Case] = &[
    case(
        "allow-empty-rule",
        "allow-empty-rule-in.yaml",
        &["allow-empty-rule-out.yaml"],
    ),
    case(
        "allow-full-rule",
        "allow-full-rule-in.yaml",
        &["allow-full-rule-out.yaml"],
    ),
    case(
        "allow-nil-rule",
        "allow-nil-rule-in.yaml",
        &["allow-nil-rule-out.yaml"],
    ),
    case("allow-path", "allow-path-in.yaml", &["allow-path-out.yaml"]),
    case(
        "audit-full-rule",
        "audit-full-rule-in.yaml",
        &["audit-full-rule-out.yaml"],
    ),
    with_mesh(
        "custom-grpc-provider-no-namespace",
        MESH_GRPC_NO_NAMESPACE,
        "custom-simple-http-in.yaml",
        &[
            "custom-grpc-provider-no-namespace-out1.yaml",
            "custom-grpc-provider-no-namespace-out2.yaml",
        ],
    ),
    with_mesh(
        "custom-grpc-provider",
        MESH_GRPC,
        "custom-simple-http-in.yaml",
        &[
            "custom-grpc-provider-out1.yaml",
            "custom-grpc-provider-out2.yaml",
        ],
    ),
    with_mesh(
        "custom-http-provider",
        MESH_HTTP,
        "custom-simple-http-in.yaml",
        &[
            "custom-http-provider-out1.yaml",
            "custom-http-provider-out2.yaml",
        ],
    ),
    with_mesh(
        "custom-bad-multiple-providers",
        MESH_INVALID,
        "custom-bad-multiple-providers-in.yaml",
        &[
            "custom-bad-multiple-providers-out1.yaml",
            "custom-bad-multiple-providers-out2.yaml",
        ],
    ),
    with_mesh(
        "custom-bad-invalid-config",
        MESH_INVALID,
        "custom-simple-http-in.yaml",
        &["custom-bad-out.yaml"],
    ),
    case(
        "deny-and-allow",
        "deny-and-allow-in.yaml",
        &["deny-and-allow-out1.yaml", "deny-and-allow-out2.yaml"],
    ),
    case(
        "deny-empty-rule",
        "deny-empty-rule-in.yaml",
        &["deny-empty-rule-out.yaml"],
    ),
    case(
        "dry-run-allow-and-deny",
        "dry-run-allow-and-deny-in.yaml",
        &[
            "dry-run-allow-and-deny-out1.yaml",
            "dry-run-allow-and-deny-out2.yaml",
        ],
    ),
    case(
        "dry-run-allow",
        "dry-run-allow-in.yaml",
        &["dry-run-allow-out.yaml"],
    ),
    case(
        "dry-run-mix",
        "dry-run-mix-in.yaml",
        &["dry-run-mix-out.yaml"],
    ),
    case(
        "multiple-policies",
        "multiple-policies-in.yaml",
        &["multiple-policies-out.yaml"],
    ),
    case(
        "single-policy",
        "single-policy-in.yaml",
        &["single-policy-out.yaml"],
    ),
    with_td(
        "trust-domain-one-alias",
        "td1",
        &["cluster.local"],
        "simple-policy-td-aliases-in.yaml",
        &["simple-policy-td-aliases-out.yaml"],
    ),
    with_td(
        "trust-domain-multiple-aliases",
        "td1",
        &["cluster.local", "some-td"],
        "simple-policy-multiple-td-aliases-in.yaml",
        &["simple-policy-multiple-td-aliases-out.yaml"],
    ),
    with_td(
        "trust-domain-wildcard-in-principal",
        "td1",
        &["foobar"],
        "simple-policy-principal-with-wildcard-in.yaml",
        &["simple-policy-principal-with-wildcard-out.yaml"],
    ),
    with_td(
        "trust-domain-aliases-in-source-principal",
        "new-td",
        &["old-td", "some-trustdomain"],
        "td-aliases-source-principal-in.yaml",
        &["td-aliases-source-principal-out.yaml"],
    ),
    case(
        "trust-domains",
        "trust-domains-in.yaml",
        &["trust-domains-out.yaml"],
    ),
];

const TCP_CASES: &[Case] = &[
    case(
        "allow-both-http-tcp",
        "allow-both-http-tcp-in.yaml",
        &["allow-both-http-tcp-out.yaml"],
    ),
    case(
        "allow-only-http",
        "allow-only-http-in.yaml",
        &["allow-only-http-out.yaml"],
    ),
    case(
        "audit-both-http-tcp",
        "audit-both-http-tcp-in.yaml",
        &["audit-both-http-tcp-out.yaml"],
    ),
    with_mesh(
        "custom-both-http-tcp",
        MESH_GRPC,
        "custom-both-http-tcp-in.yaml",
        &[
            "custom-both-http-tcp-out1.yaml",
            "custom-both-http-tcp-out2.yaml",
        ],
    ),
    with_mesh(
        "custom-only-http",
        MESH_HTTP,
        "custom-only-http-in.yaml",
        &[],
    ),
    case(
        "deny-both-http-tcp",
        "deny-both-http-tcp-in.yaml",
        &["deny-both-http-tcp-out.yaml"],
    ),
    case(
        "dry-run-mix",
        "dry-run-mix-in.yaml",
        &["dry-run-mix-out.yaml"],
    ),
];

/// Output files of Istio's data set that no case here produces, with the reason.
const NOT_RUN: &[(&str, &str)] = &[(
    "allow-host-before-111-out.yaml",
    "expectation for proxies older than Istio 1.11 (host matched by regex); weft serves only current proxies",
)];

fn env_for(dir: &Path, c: &Case) -> (Environment, Proxy) {
    let text = std::fs::read_to_string(dir.join(c.input)).expect("read input");
    let mut parsed = weft_config::parse_str(&text, c.input);
    assert!(
        parsed.diagnostics.is_empty(),
        "{}: {:?}",
        c.input,
        parsed.diagnostics
    );
    parsed
        .resources
        .extend(weft_config::parse_str(EXT_AUTHZ_SERVICE, "svc.yaml").resources);
    let mut mesh = MeshSettings::default();
    if let Some(m) = c.mesh {
        let mc: weft_config::mesh::MeshConfig = serde_norway::from_str(m).expect("mesh config");
        mesh.extension_providers = mc.extension_providers;
    }
    if let Some((td, aliases)) = c.trust_domain {
        mesh.trust_domain = td.to_string();
        mesh.trust_domain_aliases = aliases.iter().map(|s| s.to_string()).collect();
    }
    let env = Environment::from_resources(&parsed.resources, mesh);
    let mut proxy = Proxy::from_node_id("sidecar~10.0.0.1~httpbin-1.foo~foo.svc.cluster.local")
        .expect("node id");
    proxy.labels = [("app", "httpbin"), ("version", "v1")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (env, proxy)
}

/// A typed config decoded by type URL, for equality that ignores map order on the wire.
#[derive(Debug, PartialEq)]
enum Typed {
    HttpRbac(Box<rbac_http::Rbac>),
    TcpRbac(Box<rbac_tcp::Rbac>),
    HttpExtAuthz(Box<ext_authz_http::ExtAuthz>),
    TcpExtAuthz(Box<ext_authz_tcp::ExtAuthz>),
}

fn decode(any: &Any) -> Typed {
    let v = any.value.as_slice();
    match any.type_url.as_str() {
        "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC" => {
            Typed::HttpRbac(Box::new(rbac_http::Rbac::decode(v).expect("rbac")))
        }
        "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC" => {
            Typed::TcpRbac(Box::new(rbac_tcp::Rbac::decode(v).expect("rbac")))
        }
        "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz" => {
            Typed::HttpExtAuthz(Box::new(
                ext_authz_http::ExtAuthz::decode(v).expect("ext_authz"),
            ))
        }
        "type.googleapis.com/envoy.extensions.filters.network.ext_authz.v3.ExtAuthz" => {
            Typed::TcpExtAuthz(Box::new(
                ext_authz_tcp::ExtAuthz::decode(v).expect("ext_authz"),
            ))
        }
        other => panic!("unexpected typed config {other}"),
    }
}

fn http_any(f: &hcm::HttpFilter) -> Any {
    match &f.config_type {
        Some(hcm::http_filter::ConfigType::TypedConfig(a)) => a.clone(),
        other => panic!("{}: no typed config: {other:?}", f.name),
    }
}

fn tcp_any(f: &listener::Filter) -> Any {
    match &f.config_type {
        Some(listener::filter::ConfigType::TypedConfig(a)) => a.clone(),
        other => panic!("{}: no typed config: {other:?}", f.name),
    }
}

fn json<T: prost::Message + prost::Name>(m: &T) -> String {
    weft_xds::json::to_value(m)
        .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default())
        .unwrap_or_else(|e| format!("<{e}>"))
}

/// Runs the cases; returns (passed output files, failures).
fn run(dir: &Path, cases: &[Case], tcp: bool) -> (usize, Vec<String>) {
    let mut passed = 0;
    let mut failures = Vec::new();
    for c in cases {
        let (env, proxy) = env_for(dir, c);
        let got: Vec<(String, Any, String)> = if tcp {
            authz::tcp_filters(&env, &proxy)
                .iter()
                .map(|f| (f.name.clone(), tcp_any(f), json(f)))
                .collect()
        } else {
            authz::http_filters(&env, &proxy)
                .iter()
                .map(|f| (f.name.clone(), http_any(f), json(f)))
                .collect()
        };
        if got.len() != c.want.len() {
            failures.push(format!(
                "{}: got {} filters, want {}:\n{}",
                c.name,
                got.len(),
                c.want.len(),
                got.iter()
                    .map(|g| g.2.clone())
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
            continue;
        }
        for (g, want) in got.iter().zip(c.want) {
            // Istio keeps an identical `extended-` copy of most expectations; check both.
            let mut files = vec![want.to_string()];
            if dir.join(format!("extended-{want}")).exists() {
                files.push(format!("extended-{want}"));
            }
            for file in files {
                let text = std::fs::read_to_string(dir.join(&file)).expect("read output");
                let (name, any, want_json) = if tcp {
                    let f: listener::Filter =
                        weft_xds::json::from_yaml(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
                    (f.name.clone(), tcp_any(&f), json(&f))
                } else {
                    let f: hcm::HttpFilter =
                        weft_xds::json::from_yaml(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
                    (f.name.clone(), http_any(&f), json(&f))
                };
                if name == g.0 && decode(&any) == decode(&g.1) {
                    passed += 1;
                } else {
                    failures.push(format!(
                        "{} ({file}):\n--- got\n{}\n--- want\n{}",
                        c.name, g.2, want_json
                    ));
                }
            }
        }
    }
    (passed, failures)
}

#[test]
fn istio_authz_http_cases() {
    let dir = conformance_dir().join("http");
    let (passed, failures) = run(&dir, HTTP_CASES, false);
    // Every output file in the data set is either checked by a case or listed as not run.
    let mut covered: Vec<String> = HTTP_CASES
        .iter()
        .flat_map(|c| c.want.iter().map(|w| w.to_string()))
        .collect();
    covered.extend(
        HTTP_CASES
            .iter()
            .flat_map(|c| c.want.iter().map(|w| format!("extended-{w}"))),
    );
    covered.extend(NOT_RUN.iter().map(|(f, _)| f.to_string()));
    let mut uncovered = Vec::new();
    for e in std::fs::read_dir(&dir).expect("read dir").flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        if n.contains("-out") && !covered.contains(&n) {
            uncovered.push(n);
        }
    }
    eprintln!("authz http: {passed} expectations passed");
    assert!(
        uncovered.is_empty(),
        "outputs no case checks: {uncovered:?}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn istio_authz_tcp_cases() {
    let dir = conformance_dir().join("tcp");
    let (passed, failures) = run(&dir, TCP_CASES, true);
    eprintln!("authz tcp: {passed} expectations passed");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The filters land in the proxy's listeners in Istio's order: in every inbound HTTP chain
/// `jwt_authn`, then RBAC (DENY before ALLOW) ahead of the chain's own filters; network RBAC
/// first in TCP chains; on gateways, in the gateway's chains.
#[test]
fn filters_inserted_into_sidecar_and_gateway_chains() {
    use weft_control::translate::translate;
    let yaml = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: foo}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: [/admin]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: foo}
spec:
  rules: [{from: [{source: {namespaces: [bar]}}]}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: foo}
spec:
  jwtRules: [{issuer: https://issuer.test, jwksUri: "http://jwks.test/keys"}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules: [{from: [{source: {ipBlocks: [10.9.0.0/16]}}]}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
"#;
    let parsed = weft_config::parse_str(yaml, "in.yaml");
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    let env = Environment::from_resources(&parsed.resources, MeshSettings::default());
    let sidecar =
        Proxy::from_node_id("sidecar~10.0.0.1~httpbin-1.foo~foo.svc.cluster.local").expect("id");
    let res = translate(&env, &sidecar);
    let inbound = res.listener("virtualInbound").expect("virtualInbound");
    let (mut http_chains, mut tcp_chains) = (0, 0);
    for fc in &inbound.filter_chains {
        if fc.name == "virtualInbound-blackhole" {
            continue;
        }
        let first = &fc.filters[0];
        if let Some(manager) = fc.filters.iter().find_map(|f| match &f.config_type {
            Some(listener::filter::ConfigType::TypedConfig(a)) => {
                weft_control::translate::envoy::unpack::<hcm::HttpConnectionManager>(a)
            }
            _ => None,
        }) {
            http_chains += 1;
            let names: Vec<&str> = manager
                .http_filters
                .iter()
                .map(|f| f.name.as_str())
                .collect();
            assert_eq!(
                &names[..3],
                &[authz::JWT_AUTHN, authz::HTTP_RBAC, authz::HTTP_RBAC],
                "{}",
                fc.name
            );
            let deny = match &manager.http_filters[1].config_type {
                Some(hcm::http_filter::ConfigType::TypedConfig(a)) => decode(a),
                _ => panic!("typed config"),
            };
            match deny {
                Typed::HttpRbac(r) => assert_eq!(r.rules.map(|x| x.action), Some(1)),
                other => panic!("{other:?}"),
            }
        } else {
            tcp_chains += 1;
            assert_eq!(first.name, authz::TCP_RBAC, "{}", fc.name);
        }
    }
    assert!(
        http_chains > 0 && tcp_chains > 0,
        "{http_chains} {tcp_chains}"
    );

    let mut gw =
        Proxy::from_node_id("router~10.0.0.9~gw-1.istio-system~istio-system.svc.cluster.local")
            .expect("id");
    gw.labels.insert("istio".into(), "ingressgateway".into());
    let res = translate(&env, &gw);
    let l = res.listener("0.0.0.0_80").expect("gateway listener");
    let manager = l.filter_chains[0]
        .filters
        .iter()
        .find_map(|f| match &f.config_type {
            Some(listener::filter::ConfigType::TypedConfig(a)) => {
                weft_control::translate::envoy::unpack::<hcm::HttpConnectionManager>(a)
            }
            _ => None,
        })
        .expect("HCM");
    assert_eq!(manager.http_filters[0].name, authz::HTTP_RBAC);
    assert!(
        !manager
            .http_filters
            .iter()
            .any(|f| f.name == authz::JWT_AUTHN),
        "the foo RequestAuthentication does not select the gateway"
    );
}
