//! RequestAuthentication end to end: Istio's JWT fixtures (`conformance/istio/jwt`: its JWKS and
//! tokens) and keys made here for the other algorithms, translated by weft-control into
//! `jwt_authn` + RBAC, enforced by the proxy on real requests. What the upstream saw is checked
//! (claims copied to headers, payload forwarded, token removed).

mod common;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use weft_control::model::{Environment, MeshSettings, Proxy};
use weft_control::translate::{authn, authz};

const ISSUER: &str = "testing@secure.istio.io";

fn jwt_dir() -> PathBuf {
    let base = std::env::var("WEFT_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/istio")
        });
    let dir = base.join("jwt");
    assert!(
        dir.join("jwks.json").is_file(),
        "conformance data missing: {} (set WEFT_CONFORMANCE_DIR)",
        dir.display()
    );
    dir
}

fn read(name: &str) -> String {
    std::fs::read_to_string(jwt_dir().join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .trim()
        .to_string()
}

fn filters(yaml: &str) -> String {
    let parsed = weft_config::parse_str(yaml, "policies.yaml");
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    let env = Environment::from_resources(&parsed.resources, MeshSettings::default());
    let mut proxy = Proxy::from_node_id("sidecar~10.0.0.1~httpbin-1.foo~foo.svc.cluster.local")
        .expect("node id");
    proxy.labels = [("app".to_string(), "httpbin".to_string())]
        .into_iter()
        .collect();
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

const VHOST: &str = "            - name: vh\n              domains: ['*']\n              routes:\n              - {match: {prefix: /}, route: {cluster: app}}\n";

/// A YAML double-quoted scalar holding `s`.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn get_with(addr: std::net::SocketAddr, path: &str, auth: Option<&str>) -> Got {
    match auth {
        Some(a) => send(addr, req("GET", "x", path, &[("authorization", a)])).await,
        None => send(addr, req("GET", "x", path, &[])).await,
    }
}

/// Istio's JWKS and tokens: 401 for a bad token, missing token passes authentication and is
/// then denied by a policy that needs `requestPrincipals`, claims in `when`, claims to headers,
/// payload forwarding, token removal, token in a query parameter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_tokens_with_inline_jwks() {
    let jwks = read("jwks.json");
    let demo = read("demo.jwt");
    let groups = read("groups-scope.jwt");
    let yaml = format!(
        r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  jwtRules:
  - issuer: {ISSUER}
    jwks: {jwks}
    outputPayloadToHeader: x-jwt-payload
    outputClaimToHeaders: [{{header: x-jwt-foo, claim: foo}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: jwt, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  rules:
  - to: [{{operation: {{paths: [/public]}}}}]
  - from: [{{source: {{requestPrincipals: ["{ISSUER}/{ISSUER}"]}}}}]
    to: [{{operation: {{notPaths: [/group]}}}}]
  - to: [{{operation: {{paths: [/group]}}}}]
    when: [{{key: "request.auth.claims[groups]", values: [group1]}}]
"#,
        jwks = quoted(&jwks)
    );
    let backend = Scripted::start(|_, _| ok()).await;
    let proxy = start(&http_bootstrap_with(
        "",
        &filters(&yaml),
        VHOST,
        &cluster("app", &[backend.addr], ""),
    ));
    let addr = proxy.listener_addr("http").expect("listener");

    assert_eq!(get_with(addr, "/public", None).await.status, 200);
    let g = get_with(addr, "/data", None).await;
    assert_eq!(
        (g.status.as_u16(), g.text().as_str()),
        (403, "RBAC: access denied")
    );

    let g = get_with(addr, "/data", Some(&bearer(&demo))).await;
    assert_eq!(g.status, 200, "{}", g.text());
    let seen = backend.seen();
    let last = seen.last().expect("upstream saw the request");
    assert_eq!(last.header("x-jwt-foo"), Some("bar"));
    assert_eq!(last.header("authorization"), None, "token not forwarded");
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(last.header("x-jwt-payload").expect("payload header"))
        .expect("base64url");
    let payload: serde_json::Value = serde_json::from_slice(&payload).expect("json");
    assert_eq!(payload["sub"], ISSUER);

    // A token in the default query parameter.
    let g = get_with(addr, &format!("/data?access_token={demo}"), None).await;
    assert_eq!(g.status, 200);

    // A tampered signature: 401 whatever the path.
    let mut bad = demo.clone();
    let last_char = if bad.ends_with('A') { 'B' } else { 'A' };
    bad.pop();
    bad.push(last_char);
    for path in ["/data", "/public"] {
        let g = get_with(addr, path, Some(&bearer(&bad))).await;
        assert_eq!(
            (g.status.as_u16(), g.text().as_str()),
            (401, "Jwt verification fails"),
            "{path}"
        );
    }
    let g = get_with(addr, "/data", Some("Bearer not-a-jwt")).await;
    assert_eq!(g.status, 401);

    // request.auth.claims[groups]: only the token with group1.
    assert_eq!(
        get_with(addr, "/group", Some(&bearer(&demo))).await.status,
        403
    );
    assert_eq!(
        get_with(addr, "/group", Some(&bearer(&groups)))
            .await
            .status,
        200
    );

    let reached = backend.count();
    assert_eq!(reached, 4, "only allowed requests reach the upstream");
}

/// Minimal DER reading of a PKCS#1 RSA private key: the modulus and public exponent.
fn rsa_public_from_pkcs1(pem: &str) -> (Vec<u8>, Vec<u8>) {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("pem base64");
    fn read_tlv(d: &[u8]) -> (u8, &[u8], &[u8]) {
        let tag = d[0];
        let (len, hdr) = if d[1] & 0x80 == 0 {
            (d[1] as usize, 2)
        } else {
            let n = (d[1] & 0x7f) as usize;
            let mut len = 0usize;
            for b in &d[2..2 + n] {
                len = (len << 8) | *b as usize;
            }
            (len, 2 + n)
        };
        (tag, &d[hdr..hdr + len], &d[hdr + len..])
    }
    let (_, seq, _) = read_tlv(&der);
    let (_, _version, rest) = read_tlv(seq);
    let (_, n, rest) = read_tlv(rest);
    let (_, e, _) = read_tlv(rest);
    let strip = |v: &[u8]| {
        v.iter()
            .skip_while(|b| **b == 0)
            .copied()
            .collect::<Vec<u8>>()
    };
    (strip(n), strip(e))
}

fn b64u(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn claims(iss: &str, exp: u64) -> serde_json::Value {
    serde_json::json!({"iss": iss, "sub": "alice", "aud": "weft", "exp": exp})
}

/// Every algorithm the issue names, from keys made here (RSA from Istio's `key.pem`), plus
/// expiry, issuer and audience checks; the JWKS is fetched through a cluster, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn algorithms_expiry_audiences_and_remote_jwks() {
    let rsa_pem = read("key.pem");
    let (n, e) = rsa_public_from_pkcs1(&rsa_pem);
    let rsa = EncodingKey::from_rsa_pem(rsa_pem.as_bytes()).expect("rsa key");
    let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("p256");
    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("p384");
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed25519");
    let ec_jwk = |kid: &str, crv: &str, raw: &[u8]| {
        let half = (raw.len() - 1) / 2;
        serde_json::json!({"kty": "EC", "kid": kid, "crv": crv,
            "x": b64u(&raw[1..1 + half]), "y": b64u(&raw[1 + half..])})
    };
    let jwks = serde_json::json!({"keys": [
        {"kty": "RSA", "kid": "rsa", "n": b64u(&n), "e": b64u(&e)},
        ec_jwk("p256", "P-256", p256.public_key_raw()),
        ec_jwk("p384", "P-384", p384.public_key_raw()),
        {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": b64u(ed.public_key_raw())},
    ]});
    let jwks_text = jwks.to_string();
    let jwks_server = Scripted::start(move |_, _| {
        Reply::Status(
            200,
            vec![("content-type", "application/json".to_string())],
            bytes::Bytes::from(jwks_text.clone()),
        )
    })
    .await;
    let port = jwks_server.addr.port();
    let yaml = format!(
        r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: foo}}
spec:
  jwtRules:
  - issuer: https://weft.test
    jwksUri: http://jwks.test:{port}/keys
    audiences: [weft]
    fromHeaders: [{{name: x-token, prefix: "Token "}}]
    forwardOriginalToken: true
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: jwt, namespace: foo}}
spec:
  rules:
  - from: [{{source: {{requestPrincipals: ["https://weft.test/alice"]}}}}]
"#
    );
    let app = Scripted::start(|_, _| ok()).await;
    let clusters = format!(
        "{}{}",
        cluster("app", &[app.addr], ""),
        cluster(
            &format!("outbound|{port}||jwks.test"),
            &[jwks_server.addr],
            ""
        )
    );
    let proxy = start(&http_bootstrap_with("", &filters(&yaml), VHOST, &clusters));
    let addr = proxy.listener_addr("http").expect("listener");
    let call = |token: String| async move {
        send(
            addr,
            req("GET", "x", "/", &[("x-token", &format!("Token {token}"))]),
        )
        .await
    };
    let sign = |alg: Algorithm, kid: &str, key: &EncodingKey, c: &serde_json::Value| {
        let mut h = Header::new(alg);
        h.kid = Some(kid.to_string());
        jsonwebtoken::encode(&h, c, key).expect("sign")
    };
    let good = claims("https://weft.test", now() + 3600);
    let es256 = EncodingKey::from_ec_der(&p256.serialize_der());
    let es384 = EncodingKey::from_ec_der(&p384.serialize_der());
    let eddsa = EncodingKey::from_ed_der(&ed.serialize_der());
    for (alg, kid, key) in [
        (Algorithm::RS256, "rsa", &rsa),
        (Algorithm::RS384, "rsa", &rsa),
        (Algorithm::RS512, "rsa", &rsa),
        (Algorithm::PS256, "rsa", &rsa),
        (Algorithm::ES256, "p256", &es256),
        (Algorithm::ES384, "p384", &es384),
        (Algorithm::EdDSA, "ed", &eddsa),
    ] {
        let g = call(sign(alg, kid, key, &good)).await;
        assert_eq!(g.status, 200, "{alg:?}: {}", g.text());
    }
    let seen = app.seen();
    assert!(
        seen.iter().all(|s| s.header("x-token").is_some()),
        "forwardOriginalToken keeps the token"
    );
    assert_eq!(
        jwks_server.count(),
        1,
        "the JWKS is fetched once and cached"
    );

    let expired = claims("https://weft.test", now() - 3600);
    let g = call(sign(Algorithm::RS256, "rsa", &rsa, &expired)).await;
    assert_eq!(
        (g.status.as_u16(), g.text().as_str()),
        (401, "Jwt is expired")
    );
    let other_iss = claims("https://other.test", now() + 3600);
    let g = call(sign(Algorithm::RS256, "rsa", &rsa, &other_iss)).await;
    assert_eq!(
        (g.status.as_u16(), g.text().as_str()),
        (401, "Jwt issuer is not configured")
    );
    let mut other_aud = good.clone();
    other_aud["aud"] = serde_json::json!(["someone-else"]);
    let g = call(sign(Algorithm::ES256, "p256", &es256, &other_aud)).await;
    assert_eq!(
        (g.status.as_u16(), g.text().as_str()),
        (401, "Audiences in Jwt are not allowed")
    );
    // Signed by a key the JWKS does not hold, under a kid it does.
    let stranger = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("p256");
    let stranger = EncodingKey::from_ec_der(&stranger.serialize_der());
    let g = call(sign(Algorithm::ES256, "p256", &stranger, &good)).await;
    assert_eq!(g.status, 401);
    // No token: authentication passes, the policy needs a request principal.
    let g = send(addr, req("GET", "x", "/", &[])).await;
    assert_eq!(g.status, 403);
    assert_eq!(app.count(), 7, "only verified requests reach the upstream");
}
