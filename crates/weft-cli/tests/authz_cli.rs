//! `weft x authz check`: the policies applied to a workload and what they allow and deny,
//! translated offline from a config directory, with the built binary.

use std::path::PathBuf;
use std::process::Command;

const POLICIES: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-get, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules:
  - from: [{source: {namespaces: [bar]}}]
    to: [{operation: {methods: [GET], paths: ["/api/*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: foo}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: other-app, namespace: foo}
spec:
  selector: {matchLabels: {app: other}}
  rules:
  - {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-mesh, namespace: istio-system}
spec:
  action: AUDIT
  rules:
  - to: [{operation: {paths: ["/audit"]}}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: foo}
spec:
  jwtRules:
  - issuer: https://issuer.test
    jwksUri: http://jwks.test/keys
    audiences: [weft]
"#;

fn config_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("weft-authz-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    std::fs::write(d.join("policies.yaml"), POLICIES).expect("write");
    d
}

fn weft(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .output()
        .expect("run weft");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn authz_check_lists_the_workload_policies() {
    let dir = config_dir();
    let d = dir.display().to_string();
    let id = "sidecar~10.0.0.1~httpbin-1.foo~foo.svc.cluster.local";
    let (code, out, err) = weft(&[
        "x",
        "authz",
        "check",
        "--config-dir",
        &d,
        "--proxy-id",
        id,
        "--label",
        "app=httpbin",
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    let row = |action: &str, policy: &str, layer: &str| {
        lines
            .iter()
            .find(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.first() == Some(&action) && f.get(1) == Some(&policy) && f.get(3) == Some(&layer)
            })
            .map(|l| l.to_string())
            .unwrap_or_else(|| panic!("no {action} {policy} {layer} row in:\n{out}"))
    };
    let allow = row("ALLOW", "foo/allow-get", "HTTP");
    assert!(allow.contains(r#"method = "GET""#), "{allow}");
    assert!(allow.contains(r#"path starts with "/api/""#), "{allow}");
    assert!(allow.contains("/ns/bar/"), "{allow}");
    let deny = row("DENY", "foo/deny-admin", "HTTP");
    assert!(deny.contains(r#"path = "/admin""#), "{deny}");
    // On TCP the HTTP-only path is dropped: the DENY rule covers every connection, and the
    // ALLOW rule (HTTP-only as well) leaves nothing allowed.
    assert!(row("DENY", "foo/deny-admin", "TCP").contains("to any"));
    assert!(out.contains("every request is denied"), "{out}");
    let audit = row("AUDIT", "istio-system/audit-mesh", "HTTP");
    assert!(audit.contains("/audit"), "{audit}");
    assert!(
        !out.contains("other-app"),
        "a policy for another workload is listed:\n{out}"
    );
    assert!(out.contains("issuer=https://issuer.test"), "{out}");
    // CUSTOM/DENY before ALLOW before AUDIT.
    let pos = |s: &str| out.find(s).unwrap_or(usize::MAX);
    assert!(pos("foo/deny-admin") < pos("foo/allow-get"));
    assert!(pos("foo/allow-get") < pos("istio-system/audit-mesh"));

    let (code, json, err) = weft(&[
        "x",
        "authz",
        "check",
        "--config-dir",
        &d,
        "--proxy-id",
        id,
        "--label",
        "app=httpbin",
        "-o",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["jwt"][0]["audiences"][0], "weft");
    assert!(
        v["rules"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x["policy"] == "foo/allow-get"))
    );

    // A workload no policy selects except the mesh-wide AUDIT one.
    let (code, out, _) = weft(&[
        "x",
        "authz",
        "check",
        "--config-dir",
        &d,
        "--proxy-id",
        "sidecar~10.0.0.2~other-1.bar~bar.svc.cluster.local",
    ]);
    assert_eq!(code, 0);
    assert!(!out.contains("foo/"), "{out}");
    assert!(out.contains("istio-system/audit-mesh"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn authz_check_without_a_source_is_a_usage_error() {
    let (code, _, err) = weft(&["x", "authz", "check"]);
    assert_ne!(code, 0);
    assert!(err.contains("--file") || err.contains("PROXY"), "{err}");
}
