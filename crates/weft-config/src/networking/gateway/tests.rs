//! Gateway rules beyond Istio's conformance cases.

use crate::networking::virtual_service::tests::check_kind;

fn check(spec: &str) -> (Vec<String>, Vec<String>) {
    check_kind("Gateway", "gw", spec)
}

fn assert_ok(spec: &str) {
    let (e, _) = check(spec);
    assert!(e.is_empty(), "unexpected errors: {e:#?}");
}

fn assert_err(spec: &str, want: &str) {
    let (e, _) = check(spec);
    assert!(
        e.iter().any(|m| m.contains(want)),
        "expected an error containing {want:?}, got {e:#?}"
    );
}

fn server(port: &str, extra: &str) -> String {
    format!("servers:\n- port: {port}\n  hosts: [a.example.com]\n{extra}")
}

#[test]
fn gateway_name_is_a_dns_label() {
    let (e, _) = check_kind(
        "Gateway",
        "my.gw",
        &server("{number: 80, name: http, protocol: HTTP}", ""),
    );
    assert!(
        e.iter()
            .any(|m| m.contains("invalid gateway name: \"my.gw\"")),
        "{e:?}"
    );
}

#[test]
fn tls_matches_protocol() {
    assert_err(
        &server("{number: 443, name: https, protocol: HTTPS}", ""),
        "server must have TLS settings for HTTPS/TLS protocols",
    );
    assert_err(
        &server(
            "{number: 31400, name: tcp, protocol: TCP}",
            "  tls: {mode: PASSTHROUGH}\n",
        ),
        "server cannot have TLS settings for non HTTPS/TLS ports",
    );
    assert_ok(&server(
        "{number: 443, name: https, protocol: HTTPS}",
        "  tls: {mode: SIMPLE, credentialName: cert}\n",
    ));
    // TLS settings are checked only when the port itself is valid.
    let (e, _) = check(&server("{number: 443, name: https, protocol: FTP}", ""));
    assert!(
        !e.iter().any(|m| m.contains("must have TLS settings")),
        "{e:?}"
    );
}

#[test]
fn ports() {
    assert_err(
        &server(
            "{number: 80, name: http, protocol: HTTP, targetPort: 8080}",
            "",
        ),
        "targetPort has no impact on Gateways",
    );
    assert_err(
        &server("{number: 80, protocol: HTTP}", ""),
        "port name must be set",
    );
    // A Unix socket server has port number 0.
    assert_ok(&server(
        "{number: 0, name: uds, protocol: HTTP}",
        "  bind: unix:///var/run/gw.sock\n",
    ));
    assert_err(
        &server(
            "{number: 0, name: uds, protocol: HTTP}",
            "  bind: unix://relative\n",
        ),
        "relative is not an absolute path to a file",
    );
}

#[test]
fn hosts() {
    assert_ok(
        &server("{number: 80, name: http, protocol: HTTP}", "").replace(
            "[a.example.com]",
            "['./a.example.com', '*/b.example.com', 10.0.0.1, '*']",
        ),
    );
    assert_err(
        &server("{number: 80, name: http, protocol: HTTP}", "")
            .replace("[a.example.com]", "['Bad_NS/a.example.com']"),
        "invalid namespace value \"Bad_NS\" in gateway",
    );
}

#[test]
fn tls_settings() {
    let https = "{number: 443, name: https, protocol: HTTPS}";
    assert_err(
        &server(https, "  tls: {mode: SIMPLE, credentialNames: [a, b, c]}\n"),
        "must have at most 2 items",
    );
    assert_err(
        &server(
            https,
            "  tls: {mode: ISTIO_MUTUAL, tlsCertificates: [{serverCertificate: a, privateKey: b}]}\n",
        ),
        "ISTIO_MUTUAL TLS cannot have associated tlsCertificates",
    );
    assert_err(
        &server(
            https,
            "  tls: {mode: MUTUAL, serverCertificate: a, privateKey: b, caCertificates: c, caCrl: d, credentialName: x}\n",
        ),
        "only one of credential_name",
    );
    assert_err(
        &server(
            https,
            "  tls: {mode: SIMPLE, serverCertificate: a, privateKey: b, caCrl: d}\n",
        ),
        "CRL is not supported with SIMPLE TLS",
    );
    let (e, w) = check(&server(
        https,
        "  tls: {mode: SIMPLE, credentialName: c, minProtocolVersion: TLSV1_1}\n",
    ));
    assert!(e.is_empty(), "{e:?}");
    assert!(
        w.iter().any(|m| m.contains("TLS version below TLSV1_2")),
        "{w:?}"
    );
    let (_, w) = check(&server(
        https,
        "  tls: {mode: SIMPLE, credentialName: c, cipherSuites: [AES128-SHA, AES128-SHA]}\n",
    ));
    assert!(
        w.iter()
            .any(|m| m.contains("ignoring duplicate cipher suites: [AES128-SHA]")),
        "{w:?}"
    );
    assert_err(
        &server(https, "  tls: {mode: STRICT}\n"),
        "unknown variant `STRICT`",
    );
}

#[test]
fn https_redirect_only_for_http() {
    let (e, w) = check(&server(
        "{number: 443, name: https, protocol: HTTPS}",
        "  tls: {mode: SIMPLE, credentialName: c, httpsRedirect: true}\n",
    ));
    assert!(e.is_empty(), "{e:?}");
    assert!(
        w.iter()
            .any(|m| m.contains("tls.httpsRedirect should only be used with http servers")),
        "{w:?}"
    );
}

#[test]
fn snake_case_and_round_trip() {
    let spec = server(
        "{number: 443, name: https, protocol: HTTPS}",
        "  tls: {mode: MUTUAL, credential_name: c, ca_cert_credential_name: ca, min_protocol_version: TLSV1_2}\n  default_endpoint: 127.0.0.1:8080\n",
    );
    assert_ok(&spec);
    let v: serde_json::Value = serde_norway::from_str(&spec).expect("yaml");
    let g: super::Gateway = serde_json::from_value(v).expect("typed");
    let tls = g.servers[0].tls.as_ref().expect("tls");
    assert_eq!(tls.mode, super::TlsMode::Mutual);
    assert_eq!(tls.min_protocol_version, super::TlsProtocol::Tlsv1_2);
    let json = serde_json::to_value(&g).expect("serialize");
    assert_eq!(json["servers"][0]["tls"]["caCertCredentialName"], "ca");
    let back: super::Gateway = serde_json::from_value(json).expect("reparse");
    assert_eq!(back, g);
}
