//! PeerAuthentication, RequestAuthentication and AuthorizationPolicy: decoding (camelCase and
//! snake_case, unknown fields and enum values refused with their path), round trips, and the
//! validation rules the Istio conformance data does not exercise.

use weft_config::security::authorization_policy::{Action, AuthorizationPolicy};
use weft_config::security::peer_authentication::{Mode, PeerAuthentication};
use weft_config::security::request_authentication::{JwtRequirement, RequestAuthentication};
use weft_config::{Diagnostic, Resource, Severity, Spec, parse_str, validate::validate_resource};

fn parse_one(text: &str) -> Result<Resource, String> {
    let parsed = parse_str(text, "test.yaml");
    if let Some(d) = parsed.diagnostics.first() {
        return Err(d.to_string());
    }
    parsed
        .resources
        .into_iter()
        .next()
        .ok_or_else(|| "no resource".to_string())
}

fn diags(text: &str) -> Vec<Diagnostic> {
    match parse_one(text) {
        Ok(r) => validate_resource(&r),
        Err(e) => panic!("parse failed: {e}"),
    }
}

fn errors(text: &str) -> Vec<String> {
    diags(text)
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.to_string())
        .collect()
}

fn warnings(text: &str) -> Vec<String> {
    diags(text)
        .into_iter()
        .filter(|d| d.severity == Severity::Warning)
        .map(|d| d.to_string())
        .collect()
}

fn ap(spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: ns\nspec:\n{spec}"
    )
}

fn ra(spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata:\n  name: r\n  namespace: ns\nspec:\n{spec}"
    )
}

fn pa(spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata:\n  name: p\n  namespace: ns\nspec:\n{spec}"
    )
}

#[test]
fn authorization_policy_snake_case_and_round_trip() {
    let text = ap(r#"  action: DENY
  target_refs:
  - kind: Service
    name: reviews
  rules:
  - from:
    - source:
        not_principals: ["cluster.local/ns/a/sa/b"]
        remote_ip_blocks: ["10.0.0.0/8"]
        trust_domains: ["td.local"]
    to:
    - operation:
        not_paths: ["/admin/{**}"]
        ports: ["8080"]
    when:
    - key: request.auth.claims[iss]
      not_values: ["https://evil.example.com"]
"#);
    let r = parse_one(&text).expect("parses");
    let Spec::AuthorizationPolicy(p) = &r.spec else {
        panic!("wrong spec")
    };
    assert_eq!(p.action(), Action::Deny);
    assert_eq!(p.target_refs[0].name, "reviews");
    let src = p.rules[0].from[0].source.as_ref().expect("source");
    assert_eq!(src.not_principals.len(), 1);
    assert_eq!(src.trust_domains, vec!["td.local"]);
    assert_eq!(p.rules[0].when[0].not_values.len(), 1);
    assert!(errors(&text).is_empty(), "{:?}", errors(&text));
    // camelCase out, and the same value back in.
    let json = serde_json::to_value(p).expect("serializes");
    assert!(json.get("targetRefs").is_some());
    assert!(
        json.pointer("/rules/0/from/0/source/notPrincipals")
            .is_some()
    );
    let back: AuthorizationPolicy = serde_json::from_value(json).expect("reads back");
    assert_eq!(&back, p);
}

#[test]
fn unknown_fields_and_enum_values_are_refused_with_their_path() {
    let e = parse_one(&ap(
        "  rules:\n  - to:\n    - operation:\n        verbs: [GET]\n",
    ))
    .expect_err("unknown field");
    assert!(e.contains("spec.rules[0].to[0].operation"), "{e}");
    assert!(e.contains("verbs"), "{e}");

    let e = parse_one(&ap("  action: BLOCK\n")).expect_err("bad enum");
    assert!(e.contains("spec.action"), "{e}");
    assert!(e.contains("Unsupported value: \"BLOCK\""), "{e}");
    assert!(e.contains("\"CUSTOM\""), "{e}");

    let e = parse_one(&pa("  mtls:\n    mode: 2\n")).expect_err("numeric enum");
    assert!(e.contains("spec.mtls.mode"), "{e}");

    let e = parse_one(&ra("  jwtRules:\n  - issuer: a\n    presence: MUST\n")).expect_err("bad");
    assert!(e.contains("spec.jwtRules[0].presence"), "{e}");
}

#[test]
fn peer_authentication_fields() {
    let text = pa(r#"  selector:
    matchLabels:
      app: a
  mtls:
    mode: STRICT
  port_level_mtls:
    "8080":
      mode: DISABLE
"#);
    let r = parse_one(&text).expect("parses");
    let Spec::PeerAuthentication(p) = &r.spec else {
        panic!("wrong spec")
    };
    assert_eq!(p.mode(), Mode::Strict);
    assert_eq!(
        p.port_modes().collect::<Vec<_>>(),
        vec![(8080, Mode::Disable)]
    );
    assert!(errors(&text).is_empty());
    let back: PeerAuthentication =
        serde_json::from_value(serde_json::to_value(p).expect("json")).expect("back");
    assert_eq!(&back, p);

    let e = errors(&pa(
        "  selector:\n    matchLabels:\n      app: a\n  portLevelMtls:\n    \"70000\":\n      mode: STRICT\n",
    ));
    assert!(
        e.iter().any(|m| m.contains("port must be between 1-65535")),
        "{e:?}"
    );
}

#[test]
fn request_authentication_fields() {
    let text = ra(r#"  jwt_rules:
  - issuer: https://issuer.example.com
    jwks_uri: https://issuer.example.com/keys
    from_headers:
    - name: x-jwt
      prefix: "Bearer "
    from_params: [token]
    forward_original_token: true
    output_claim_to_headers:
    - header: x-sub
      claim: sub
    timeout: 2s
    presence: REQUIRED
"#);
    let r = parse_one(&text).expect("parses");
    let Spec::RequestAuthentication(p) = &r.spec else {
        panic!("wrong spec")
    };
    let rule = &p.jwt_rules[0];
    assert_eq!(rule.presence(), JwtRequirement::Required);
    assert!(rule.forward_original_token);
    assert_eq!(rule.timeout.map(|t| t.as_millis()), Some(2000));
    assert!(errors(&text).is_empty(), "{:?}", errors(&text));
    let back: RequestAuthentication =
        serde_json::from_value(serde_json::to_value(p).expect("json")).expect("back");
    assert_eq!(&back, p);
}

#[test]
fn request_authentication_rules_beyond_conformance() {
    // jwks and jwksUri together.
    let e = errors(&ra(
        "  jwtRules:\n  - issuer: a\n    jwksUri: https://a/k\n    jwks: '{\"keys\":[]}'\n",
    ));
    assert!(
        e.iter().any(|m| m.contains("only one of jwks or jwksUri")),
        "{e:?}"
    );
    // Scheme must be http or https.
    let e = errors(&ra("  jwtRules:\n  - issuer: a\n    jwksUri: ftp://a/k\n"));
    assert!(
        e.iter().any(|m| m.contains("url must have scheme")),
        "{e:?}"
    );
    // Broken inline JWKS.
    let e = errors(&ra("  jwtRules:\n  - issuer: a\n    jwks: 'nope'\n"));
    assert!(e.iter().any(|m| m.contains("jwks parse error")), "{e:?}");
    // Timeout below 1ms and sub-millisecond precision.
    let e = errors(&ra("  jwtRules:\n  - issuer: a\n    timeout: 500us\n"));
    assert!(e.iter().any(|m| m.contains("greater than 1ms")), "{e:?}");
    let e = errors(&ra("  jwtRules:\n  - issuer: a\n    timeout: 1.5ms\n"));
    assert!(e.iter().any(|m| m.contains("ms precision")), "{e:?}");
    // Underscores are not in Istio's strict header names.
    let e = errors(&ra(
        "  jwtRules:\n  - issuer: a\n    outputClaimToHeaders:\n    - header: x_sub\n      claim: sub\n",
    ));
    assert!(!e.is_empty());
    // A symmetric key is private material: accepted with a warning.
    let text = ra(
        "  jwtRules:\n  - issuer: a\n    jwks: '{\"keys\":[{\"kty\":\"oct\",\"k\":\"AQAB\"}]}'\n",
    );
    assert!(errors(&text).is_empty());
    assert!(
        warnings(&text)
            .iter()
            .any(|w| w.contains("jwks key at index 0 contains private key material"))
    );
    // The dry-run annotation belongs to AuthorizationPolicy only.
    let text = ra("  jwtRules:\n  - issuer: a\n").replace(
        "  namespace: ns\n",
        "  namespace: ns\n  annotations:\n    istio.io/dry-run: \"true\"\n",
    );
    assert!(!errors(&text).is_empty());
}

#[test]
fn authorization_policy_rules_beyond_conformance() {
    // CUSTOM with a provider but principals in the source.
    let e = errors(&ap(
        "  action: CUSTOM\n  provider:\n    name: ext\n  rules:\n  - from:\n    - source:\n        principals: [a]\n",
    ));
    assert!(
        e.iter()
            .any(|m| m.contains("From.Principals is currently not supported with CUSTOM")),
        "{e:?}"
    );
    let e = errors(&ap(
        "  action: CUSTOM\n  provider:\n    name: ext\n  rules:\n  - when:\n    - key: request.auth.claims[x]\n      values: [a]\n",
    ));
    assert!(!e.is_empty());
    // A well-formed CUSTOM policy.
    assert!(
        errors(&ap(
            "  action: CUSTOM\n  provider:\n    name: ext\n  rules:\n  - to:\n    - operation:\n        paths: [/admin/*]\n",
        ))
        .is_empty()
    );
    // Ports must be numbers up to 65535; destination.port values too.
    let e = errors(&ap(
        "  rules:\n  - to:\n    - operation:\n        ports: [\"65536\"]\n",
    ));
    assert!(!e.is_empty());
    let e = errors(&ap(
        "  rules:\n  - when:\n    - key: destination.port\n      values: [http]\n",
    ));
    assert!(e.iter().any(|m| m.contains("bad port")), "{e:?}");
    // Unsupported path templates.
    let e = errors(&ap(
        "  rules:\n  - to:\n    - operation:\n        paths: [\"/{*}/x/{name}\"]\n",
    ));
    assert!(e.iter().any(|m| m.contains("path template")), "{e:?}");
    // Service accounts: no wildcards, at most one '/'.
    let e = errors(&ap(
        "  rules:\n  - from:\n    - source:\n        serviceAccounts: [\"ns/*\"]\n",
    ));
    assert!(!e.is_empty());
    // Dry run only with ALLOW or DENY, and a boolean value.
    let with_ann = |v: &str, spec: &str| {
        ap(spec).replace(
            "  namespace: ns\n",
            &format!("  namespace: ns\n  annotations:\n    istio.io/dry-run: \"{v}\"\n"),
        )
    };
    assert!(!errors(&with_ann("true", "  action: AUDIT\n  rules:\n  - {}\n")).is_empty());
    assert!(!errors(&with_ann("maybe", "  action: ALLOW\n")).is_empty());
    assert!(errors(&with_ann("False", "  action: ALLOW\n")).is_empty());
    // Unsupported group/kind in targetRef, and cross-namespace references.
    let e = errors(&ap(
        "  targetRef:\n    group: apps\n    kind: Deployment\n    name: d\n    namespace: other\n",
    ));
    assert_eq!(e.len(), 2, "{e:?}");
    // Deprecated and replaced attributes.
    let e = errors(&ap(
        "  rules:\n  - when:\n    - key: destination.labels[app]\n      values: [a]\n",
    ));
    assert!(
        e.iter()
            .any(|m| m.contains("replaced by the workload selector")),
        "{e:?}"
    );
}

#[test]
fn deny_with_only_http_attributes_warns() {
    let text = ap(
        "  action: DENY\n  rules:\n  - from:\n    - source:\n        requestPrincipals: [\"*\"]\n",
    );
    assert!(errors(&text).is_empty());
    assert!(
        warnings(&text)
            .iter()
            .any(|w| w.contains("deny all traffic to TCP ports"))
    );
    let text = ap("  action: DENY\n  rules:\n  - from:\n    - source:\n        namespaces: [a]\n");
    assert!(warnings(&text).is_empty(), "{:?}", warnings(&text));
}

/// Istio's validation unit cases mark the documents it accepts with a warning
/// (`# warning: TEXT`): weft warns on exactly those, with the same text.
#[test]
fn warnings_match_istio_unit_cases() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/istio/validation-unit");
    assert!(
        dir.is_dir(),
        "conformance data not found at {}",
        dir.display()
    );
    let mut checked = 0;
    for file in [
        "authorizationpolicy.yaml",
        "peerauthentication.yaml",
        "requestauthentication.yaml",
    ] {
        let text = std::fs::read_to_string(dir.join(file)).expect("read case file");
        for doc in text.split("\n---") {
            if doc.lines().any(|l| l.starts_with("_err:")) {
                continue;
            }
            let want = doc
                .lines()
                .find_map(|l| l.strip_prefix("# warning:"))
                .map(str::trim);
            let got = warnings(doc);
            match want {
                Some(w) => assert!(
                    got.iter().any(|g| g.contains(w)),
                    "{file}: expected warning {w:?}, got {got:?}"
                ),
                None => assert!(got.is_empty(), "{file}: unexpected warnings {got:?}"),
            }
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} cases checked");
}
