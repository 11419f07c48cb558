//! VirtualService rules beyond Istio's conformance cases.

use crate::diag::Severity;
use crate::resource::Spec;
use crate::validate::validate_resource;

/// Parses `spec` (YAML, unindented) as a VirtualService named `t` in namespace `ns` and
/// returns its `(errors, warnings)` as `path: message`.
pub(crate) fn check_kind(kind: &str, name: &str, spec: &str) -> (Vec<String>, Vec<String>) {
    let indented: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    let doc = format!(
        "apiVersion: networking.istio.io/v1\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: ns\nspec:\n{indented}"
    );
    let parsed = crate::parse_str(&doc, "t.yaml");
    if let Some(d) = parsed.diagnostics.first() {
        return (vec![d.to_string()], vec![]);
    }
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for d in validate_resource(&parsed.resources[0]) {
        let line = format!("{}: {}", d.path.unwrap_or_default(), d.message);
        match d.severity {
            Severity::Error => errors.push(line),
            Severity::Warning => warnings.push(line),
        }
    }
    (errors, warnings)
}

fn check(spec: &str) -> (Vec<String>, Vec<String>) {
    check_kind("VirtualService", "t", spec)
}

fn errors(spec: &str) -> Vec<String> {
    check(spec).0
}

fn assert_ok(spec: &str) {
    let (e, _) = check(spec);
    assert!(e.is_empty(), "unexpected errors: {e:#?}");
}

fn assert_err(spec: &str, want: &str) {
    let e = errors(spec);
    assert!(
        e.iter().any(|m| m.contains(want)),
        "expected an error containing {want:?}, got {e:#?}"
    );
}

const ROUTE: &str = "  route:\n  - destination:\n      host: a.ns.svc.cluster.local\n";

#[test]
fn snake_case_aliases_and_round_trip() {
    let spec = "hosts: [a]
export_to: ['.']
http:
- cors_policy:
    allow_origins: [{exact: 'https://x.example'}]
    max_age: 24h
  retries: {attempts: 2, per_try_timeout: 2s, retry_on: '5xx,503', retry_ignore_previous_hosts: false}
  mirror_percentage: {value: 5}
  mirror: {host: m}
  route:
  - destination: {host: a}
";
    assert_ok(spec);
    let doc = format!(
        "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {{name: t}}\nspec:\n{}",
        spec.lines().map(|l| format!("  {l}\n")).collect::<String>()
    );
    let parsed = crate::parse_str(&doc, "t.yaml");
    let Spec::VirtualService(vs) = &parsed.resources[0].spec else {
        panic!("not a VirtualService")
    };
    assert_eq!(vs.export_to, vec!["."]);
    let retries = vs.http[0].retries.as_ref().expect("retries");
    assert_eq!(retries.retry_ignore_previous_hosts, Some(false));
    // Serialized back in camelCase and read again unchanged.
    let json = serde_json::to_value(vs).expect("serialize");
    assert!(json["http"][0]["corsPolicy"]["maxAge"].is_string());
    let back: super::VirtualService = serde_json::from_value(json).expect("reparse");
    assert_eq!(&back, vs);
}

#[test]
fn unknown_fields_and_enum_values_are_refused() {
    assert_err("hosts: [a]\nhttp:\n- rout: []\n", "unknown field `rout`");
    assert_err(
        "hosts: [a]\nhttp:\n- redirect: {uri: /, derivePort: SOMETIMES}\n",
        "spec.http[0].redirect.derivePort",
    );
}

#[test]
fn hosts() {
    assert_err(
        &format!("hosts: ['*']\nhttp:\n-{}", &ROUTE[1..]),
        "wildcard host * is not allowed",
    );
    assert_ok(&format!(
        "hosts: ['*']\ngateways: [gw]\nhttp:\n-{}",
        &ROUTE[1..]
    ));
    // IP addresses are accepted as hosts.
    assert_ok(&format!("hosts: [10.0.0.1]\nhttp:\n-{}", &ROUTE[1..]));
    assert_err(
        &format!("hosts: [a.com, a.com]\nhttp:\n-{}", &ROUTE[1..]),
        "duplicate hosts in virtual service: a.com & a.com",
    );
    assert_err(
        &format!("hosts: [-bad]\nhttp:\n-{}", &ROUTE[1..]),
        "invalid",
    );
}

#[test]
fn delegate_virtual_service_has_no_tcp_or_tls() {
    assert_err(
        "tcp:\n- route:\n  - destination: {host: a}\n",
        "delegate virtual service must have no tcp route specified",
    );
}

#[test]
fn jwt_claim_routing_needs_a_gateway() {
    let m = "- match:\n  - headers:\n      '@request.auth.claims.group': {exact: admin}\n";
    assert_err(
        &format!("hosts: [a]\nhttp:\n{m}{ROUTE}"),
        "JWT claim based routing (key: @request.auth.claims.group) is only supported for gateway",
    );
    assert_ok(&format!("hosts: [a]\ngateways: [ns/gw]\nhttp:\n{m}{ROUTE}"));
    assert_err(
        &format!("hosts: [a]\ngateways: [mesh, ns/gw]\nhttp:\n{m}{ROUTE}"),
        "only supported for gateway",
    );
}

#[test]
fn string_match_is_one_of() {
    assert_err(
        &format!("hosts: [a]\nhttp:\n- match:\n  - uri: {{exact: /a, prefix: /b}}\n{ROUTE}"),
        "only one of exact, prefix or regex",
    );
    assert_err(
        &format!("hosts: [a]\nhttp:\n- match:\n  - uri: {{regex: '(a'}}\n{ROUTE}"),
        "spec.http[0].match[0].uri.regex",
    );
    let long = "a".repeat(1025);
    assert_err(
        &format!("hosts: [a]\nhttp:\n- match:\n  - authority: {{regex: {long}}}\n{ROUTE}"),
        "regex is too large",
    );
    // `*` in withoutHeaders means "header present", not a regex.
    assert_ok(&format!(
        "hosts: [a]\nhttp:\n- match:\n  - withoutHeaders: {{x-a: {{regex: '*'}}}}\n{ROUTE}"
    ));
}

#[test]
fn match_fields() {
    assert_err(
        &format!("hosts: [a]\nhttp:\n- match:\n  - sourceNamespace: Bad_NS\n{ROUTE}"),
        "sourceNamespace match Bad_NS is invalid",
    );
    assert_err(
        &format!("hosts: [a]\nhttp:\n- match:\n  - sourceLabels: {{'a b': c}}\n{ROUTE}"),
        "invalid tag key",
    );
    assert_err(
        &format!("hosts: [a]\nhttp:\n- match:\n  - port: 70000\n{ROUTE}"),
        "port number 70000 must be in the range 1..65535",
    );
    assert_err(
        &format!("hosts: [a]\nhttp:\n- match:\n  - gateways: [ns/Bad_gw]\n{ROUTE}"),
        "invalid value for gateway name",
    );
}

#[test]
fn weights() {
    assert_err(
        "hosts: [a]\nhttp:\n- route:\n  - destination: {host: a}\n    weight: -1\n",
        "weight -1 < 0",
    );
    assert_err(
        "hosts: [a]\nhttp:\n- route:\n  - destination: {host: a}\n  - destination: {host: b}\n",
        "total destination weight = 0",
    );
    // Weights need not sum to 100.
    assert_ok(
        "hosts: [a]\nhttp:\n- route:\n  - destination: {host: a}\n    weight: 3\n  - destination: {host: b}\n    weight: 1\n",
    );
}

#[test]
fn destinations() {
    assert_err(
        "hosts: [a]\nhttp:\n- route:\n  - destination: {host: '*'}\n",
        "invalid destination host *",
    );
    assert_err(
        "hosts: [a]\nhttp:\n- route:\n  - destination: {host: a, subset: Not_A_Label}\n",
        "subset name is invalid",
    );
    assert_err(
        "hosts: [a]\nhttp:\n- route:\n  - destination: {host: a, port: {number: 0}}\n",
        "port number 0",
    );
}

#[test]
fn redirects() {
    assert_ok("hosts: [a]\nhttp:\n- redirect: {derivePort: FROM_REQUEST_PORT}\n");
    assert_err(
        "hosts: [a]\nhttp:\n- redirect: {port: 8080, derivePort: FROM_REQUEST_PORT}\n",
        "only one of port or derivePort",
    );
    assert_err(
        "hosts: [a]\nhttp:\n- redirect: {uri: /, scheme: ftp}\n",
        "invalid redirect scheme",
    );
    assert_err(
        "hosts: [a]\nhttp:\n- redirect: {}\n",
        "redirect must specify",
    );
    assert_err(
        "hosts: [a]\nhttp:\n- redirect: {uri: /}\n  fault: {abort: {httpStatus: 500}}\n",
        "both fault and redirect",
    );
    assert_err(
        "hosts: [a]\nhttp:\n- match: [{uri: {regex: '/a.*'}}]\n  redirect: {prefix_rewrite: /b}\n",
        "prefixRewrite requires every URI match to be a prefix match",
    );
    assert_ok(
        "hosts: [a]\nhttp:\n- match: [{uri: {prefix: /a}}]\n  redirect: {prefixRewrite: /b}\n",
    );
}

#[test]
fn direct_responses() {
    assert_ok("hosts: [a]\nhttp:\n- directResponse: {status: 503, body: {string: down}}\n");
    assert_err(
        "hosts: [a]\nhttp:\n- directResponse: {status: 200, body: {string: a, bytes: YQ==}}\n",
        "only one of string or bytes",
    );
    assert_err(
        "hosts: [a]\nhttp:\n- directResponse: {status: 200, body: {bytes: '!!'}}\n",
        "invalid base64",
    );
    assert_err(
        "hosts: [a]\nhttp:\n- directResponse: {status: 200}\n  route:\n  - destination: {host: a}\n",
        "both route and direct_response",
    );
}

#[test]
fn faults() {
    let (e, w) = check(&format!(
        "hosts: [a]\nhttp:\n- fault: {{abort: {{}}}}\n{ROUTE}"
    ));
    assert!(e.is_empty(), "{e:?}");
    assert!(
        w.iter()
            .any(|m| m.contains("abort configured, but error type not set"))
    );
    assert_err(
        &format!("hosts: [a]\nhttp:\n- fault: {{abort: {{http2Error: x}}}}\n{ROUTE}"),
        "HTTP/2 abort fault injection not supported yet",
    );
    assert_err(
        &format!("hosts: [a]\nhttp:\n- fault: {{abort: {{grpcStatus: NOPE}}}}\n{ROUTE}"),
        "gRPC status \"NOPE\" is not supported",
    );
    assert_err(
        &format!("hosts: [a]\nhttp:\n- fault: {{delay: {{exponentialDelay: 1s}}}}\n{ROUTE}"),
        "exponentialDelay not supported yet",
    );
    assert_err(
        &format!("hosts: [a]\nhttp:\n- fault: {{}}\n{ROUTE}"),
        "must have an abort and/or a delay",
    );
    assert_err(
        &format!(
            "hosts: [a]\nhttp:\n- fault: {{abort: {{httpStatus: 500, percentage: {{value: 0.00001}}}}}}\n{ROUTE}"
        ),
        "is neither 0.0, nor in range [0.0001, 100.0]",
    );
}

#[test]
fn durations() {
    assert_err(
        &format!("hosts: [a]\nhttp:\n- timeout: 0s\n{ROUTE}"),
        "spec.http[0].timeout: duration must be greater than 1ms",
    );
    assert_err(
        &format!("hosts: [a]\nhttp:\n- retries: {{attempts: 1, backoff: 1.5ms}}\n{ROUTE}"),
        "only durations to ms precision are supported",
    );
    assert_err(
        &format!("hosts: [a]\nhttp:\n- timeout: -1s\n{ROUTE}"),
        "negative",
    );
}

#[test]
fn retries() {
    assert_ok(&format!(
        "hosts: [a]\nhttp:\n- retries: {{attempts: 3, retryOn: 'gateway-error,connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes,429'}}\n{ROUTE}"
    ));
    assert_err(
        &format!("hosts: [a]\nhttp:\n- retries: {{attempts: 3, retryOn: '5xx, reset'}}\n{ROUTE}"),
        "\" reset\" is not a valid retryOn policy",
    );
    assert_err(
        &format!("hosts: [a]\nhttp:\n- retries: {{retryRemoteLocalities: true}}\n{ROUTE}"),
        "attempts are set to 0",
    );
}

#[test]
fn cors() {
    assert_ok(&format!(
        "hosts: [a]\nhttp:\n- corsPolicy: {{allowMethods: ['*'], allowHeaders: ['*'], allowOrigins: [{{prefix: 'https://'}}], unmatchedPreflights: IGNORE}}\n{ROUTE}"
    ));
    assert_err(
        &format!("hosts: [a]\nhttp:\n- corsPolicy: {{allowMethods: [get]}}\n{ROUTE}"),
        "\"get\" is not a supported HTTP method",
    );
    assert_err(
        &format!("hosts: [a]\nhttp:\n- corsPolicy: {{allowOrigins: [{{exact: ''}}]}}\n{ROUTE}"),
        "is not a valid match type for CORS allow origins",
    );
    assert_err(
        &format!("hosts: [a]\nhttp:\n- corsPolicy: {{allowHeaders: ['bad header']}}\n{ROUTE}"),
        "header name bad header is not a valid header name",
    );
}

#[test]
fn header_operations() {
    assert_err(
        &format!("hosts: [a]\nhttp:\n- headers: {{request: {{set: {{':path': /x}}}}}}\n{ROUTE}"),
        "header cannot have \":\" prefix",
    );
    assert_err(
        &format!("hosts: [a]\nhttp:\n- headers: {{response: {{set: {{Host: x}}}}}}\n{ROUTE}"),
        "cannot set Host header",
    );
    assert_err(
        &format!(
            "hosts: [a]\nhttp:\n- headers: {{request: {{set: {{x-a: \"a\\u0001b\"}}}}}}\n{ROUTE}"
        ),
        "header value configuration",
    );
    assert_ok(&format!(
        "hosts: [a]\nhttp:\n- headers: {{request: {{set: {{x-a: '%REQ(x-b)% and %DYNAMIC_METADATA([\"a\", \"b\"])%'}}}}}}\n{ROUTE}"
    ));
    assert_err(
        &format!(
            "hosts: [a]\nhttp:\n- headers: {{request: {{set: {{host: a}}, add: {{':authority': b}}}}}}\n{ROUTE}"
        ),
        "authority header cannot be set multiple times",
    );
}

#[test]
fn mirrors() {
    assert_err(
        &format!("hosts: [a]\nhttp:\n- mirrors: [{{}}]\n{ROUTE}"),
        "destination is required for mirrors",
    );
    assert_err(
        &format!("hosts: [a]\nhttp:\n- mirror: {{host: '*'}}\n{ROUTE}"),
        "invalid destination host *",
    );
}

#[test]
fn tls_routes() {
    let route = "  route:\n  - destination: {host: a}\n";
    assert_err(
        &format!("hosts: [a.com]\ntls:\n- match:\n  - sniHosts: [b.com]\n{route}"),
        "SNI host \"b.com\" is not a compatible subset of any of the virtual service hosts: [a.com]",
    );
    assert_ok(&format!(
        "hosts: ['*.a.com']\ntls:\n- match:\n  - sniHosts: [x.a.com]\n    destinationSubnets: [10.0.0.0/8]\n{route}"
    ));
    assert_err(
        &format!("hosts: [a.com]\ntls:\n-{}", &route[1..]),
        "TLS route must have at least one match condition",
    );
    assert_err(
        "hosts: [a.com]\ntls:\n- match:\n  - {}\n  route:\n  - destination: {host: a}\n",
        "TLS match must have at least one SNI host",
    );
    assert_err(
        &format!(
            "hosts: [a.com]\ntls:\n- match:\n  - sniHosts: [a.com]\n    destinationSubnets: [10.0.0.0/40]\n{route}"
        ),
        "10.0.0.0/40 is not a valid CIDR block",
    );
}

#[test]
fn tcp_routes() {
    assert_ok(
        "hosts: [a]\ntcp:\n- match:\n  - port: 3306\n    sourceLabels: {app: x}\n  route:\n  - destination: {host: db}\n",
    );
    assert_err(
        "hosts: [a]\ntcp:\n- match:\n  - destinationSubnets: [nope]\n  route:\n  - destination: {host: db}\n",
        "nope is not a valid IP",
    );
}

#[test]
fn root_rules_only_delegate() {
    assert_err(
        "hosts: [a]\nhttp:\n- name: r\n  delegate: {name: d}\n  redirect: {uri: /}\n",
        "root HTTP route r must not specify redirect",
    );
}

#[test]
fn unreachable_rules_are_warnings() {
    let (e, w) = check(&format!(
        "hosts: [a]\nhttp:\n-{}-{}",
        &ROUTE[1..],
        &ROUTE[1..]
    ));
    assert!(e.is_empty(), "{e:?}");
    assert_eq!(
        w,
        vec![
            "spec.http[1]: virtualService rule #1 not used (only the last rule can have no matches)"
        ]
    );
}

#[test]
fn export_to() {
    assert_err(
        &format!("hosts: [a]\nexportTo: [ns1, ns1]\nhttp:\n-{}", &ROUTE[1..]),
        "duplicate entries in exportTo for entry ns1",
    );
    assert_err(
        &format!("hosts: [a]\nexportTo: ['.', ns]\nhttp:\n-{}", &ROUTE[1..]),
        "duplicate entries in exportTo",
    );
}
