//! The inbound listener under each mesh-wide mTLS mode, as Istio's `TestInbound` expects
//! (its DISABLE and STRICT variants; PERMISSIVE is in the conformance data).

use weft_control::model::{Environment, MeshSettings, Proxy};
use weft_control::simulate::{Call, CallMode, CallProtocol, CallTls, simulate};
use weft_control::translate::translate;

const SERVICE: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: se, namespace: default}
spec:
  hosts: [foo.bar]
  endpoints: [{address: 1.1.1.1}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {name: tcp, number: 70, protocol: TCP}
  - {name: http, number: 80, protocol: HTTP}
  - {name: auto, number: 81}
"#;

/// Expected result: a cluster (optionally a filter chain) or an error.
enum Want {
    Cluster(&'static str),
    Chain(&'static str, &'static str),
    Error(&'static str),
}
use Want::*;

type Row = (&'static str, u32, CallProtocol, CallTls, Want, Want);

fn rows() -> Vec<Row> {
    use CallProtocol::{Http, Http2, Tcp};
    use CallTls::{Mtls, Plaintext, Tls};
    vec![
        (
            "tcp",
            70,
            Tcp,
            Plaintext,
            Cluster("inbound|70||"),
            Error("no filter chain"),
        ),
        (
            "http to tcp",
            70,
            Http,
            Plaintext,
            Cluster("inbound|70||"),
            Error("no filter chain"),
        ),
        (
            "tls to tcp",
            70,
            Tcp,
            Tls,
            Cluster("inbound|70||"),
            Error("mtls error"),
        ),
        (
            "https to tcp",
            70,
            Http,
            Tls,
            Cluster("inbound|70||"),
            Error("mtls error"),
        ),
        (
            "mtls tcp to tcp",
            70,
            Tcp,
            Mtls,
            Cluster("inbound|70||"),
            Cluster("inbound|70||"),
        ),
        (
            "mtls http to tcp",
            70,
            Http,
            Mtls,
            Cluster("inbound|70||"),
            Cluster("inbound|70||"),
        ),
        (
            "http",
            80,
            Http,
            Plaintext,
            Cluster("inbound|80||"),
            Error("no filter chain"),
        ),
        (
            "tls to http",
            80,
            Tcp,
            Tls,
            Error("protocol error"),
            Error("mtls error"),
        ),
        (
            "https to http",
            80,
            Http,
            Tls,
            Error("protocol error"),
            Error("mtls error"),
        ),
        (
            "mtls to http",
            80,
            Http,
            Mtls,
            Error("protocol error"),
            Cluster("inbound|80||"),
        ),
        (
            "tcp to http",
            80,
            Tcp,
            Plaintext,
            Error("protocol error"),
            Error("no filter chain"),
        ),
        (
            "auto port http",
            81,
            Http,
            Plaintext,
            Cluster("inbound|81||"),
            Error("no filter chain"),
        ),
        (
            "auto port http2",
            81,
            Http2,
            Plaintext,
            Cluster("inbound|81||"),
            Error("no filter chain"),
        ),
        (
            "auto port tcp",
            81,
            Tcp,
            Plaintext,
            Chain("0.0.0.0_81", "inbound|81||"),
            Error("no filter chain"),
        ),
        (
            "tls to auto port",
            81,
            Tcp,
            Tls,
            Chain("0.0.0.0_81", "inbound|81||"),
            Error("mtls error"),
        ),
        (
            "https to auto port",
            81,
            Http,
            Tls,
            Chain("0.0.0.0_81", "inbound|81||"),
            Error("mtls error"),
        ),
        (
            "mtls tcp to auto port",
            81,
            Tcp,
            Mtls,
            Cluster("inbound|81||"),
            Chain("0.0.0.0_81", "inbound|81||"),
        ),
        (
            "mtls http to auto port",
            81,
            Http,
            Mtls,
            Cluster("inbound|81||"),
            Cluster("inbound|81||"),
        ),
        (
            "passthrough http",
            82,
            Http,
            Plaintext,
            Chain("virtualInbound-catchall-http", "InboundPassthroughCluster"),
            Error("no filter chain"),
        ),
        (
            "passthrough tcp",
            82,
            Tcp,
            Plaintext,
            Chain("virtualInbound", "InboundPassthroughCluster"),
            Error("no filter chain"),
        ),
        (
            "passthrough tls",
            82,
            Tcp,
            Tls,
            Chain("virtualInbound", "InboundPassthroughCluster"),
            Error("mtls error"),
        ),
        (
            "passthrough https",
            82,
            Http,
            Tls,
            Cluster("InboundPassthroughCluster"),
            Error("mtls error"),
        ),
        (
            "passthrough mtls",
            82,
            Http,
            Mtls,
            Cluster("InboundPassthroughCluster"),
            Cluster("InboundPassthroughCluster"),
        ),
    ]
}

fn run(mode: &str, pick: fn(&Row) -> &Want) {
    let yaml = format!(
        "{SERVICE}---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: default, namespace: istio-system}}\nspec: {{mtls: {{mode: {mode}}}}}\n"
    );
    let parsed = weft_config::parse_str(&yaml, "inbound.yaml");
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    let env = Environment::from_resources(&parsed.resources, MeshSettings::default());
    let proxy = Proxy::from_node_id("sidecar~1.1.1.1~app.default~default.svc.cluster.local")
        .expect("node id");
    let res = translate(&env, &proxy);
    let mut failures = Vec::new();
    for row in rows() {
        let (name, port, protocol, tls, ..) = row;
        let call = Call {
            mode: CallMode::Inbound,
            address: if port == 82 { "1.2.3.4" } else { "1.3.3.7" }.to_string(),
            port,
            protocol,
            tls,
            alpn: None,
            sni: None,
            host: None,
            path: "/".to_string(),
            mtls_secret_config_name: None,
        };
        let got = simulate(&res, &call);
        let ok = match (pick(&row), &got) {
            (Cluster(c), Ok(o)) => o.cluster == *c,
            (Chain(fc, c), Ok(o)) => o.cluster == *c && o.filter_chain == *fc,
            (Error(e), Err(err)) => err.kind.to_string() == *e,
            _ => false,
        };
        if !ok {
            failures.push(format!("{mode} {name}: got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn mesh_wide_disable() {
    run("DISABLE", |r| &r.4);
}

#[test]
fn mesh_wide_strict() {
    run("STRICT", |r| &r.5);
}

fn sidecar_tls_env(
    port_mode: &str,
    tls_mode: &str,
    protocol: &str,
) -> weft_control::translate::Resources {
    let ca = if tls_mode == "MUTUAL" {
        "\n        caCertificates: rootCA.pem"
    } else {
        ""
    };
    let yaml = format!(
        r#"apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: peer-auth, namespace: default}}
spec:
  selector: {{matchLabels: {{app: foo}}}}
  mtls: {{mode: STRICT}}
  portLevelMtls: {{"9080": {{mode: {port_mode}}}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: sidecar, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: foo}}}}
  ingress:
  - defaultEndpoint: 0.0.0.0:9080
    port: {{name: tls, number: 9080, protocol: {protocol}}}
    tls:
        mode: {tls_mode}
        privateKey: httpbinkey.pem
        serverCertificate: httpbin.pem{ca}
"#
    );
    let parsed = weft_config::parse_str(&yaml, "tls.yaml");
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    let env = Environment::from_resources(&parsed.resources, MeshSettings::default());
    let mut proxy = Proxy::from_node_id("sidecar~1.1.1.1~app.default~default.svc.cluster.local")
        .expect("node id");
    proxy.labels.insert("app".into(), "foo".into());
    translate(&env, &proxy)
}

fn inbound_call(protocol: CallProtocol, tls: CallTls, secret: Option<&str>) -> Call {
    Call {
        mode: CallMode::Inbound,
        address: "1.1.1.1".to_string(),
        port: 9080,
        protocol,
        tls,
        alpn: None,
        sni: None,
        host: None,
        path: "/".to_string(),
        mtls_secret_config_name: secret.map(str::to_string),
    }
}

/// Istio's `TestInboundSidecarTLSModes`: a Sidecar ingress port terminating TLS with its own
/// certificates, unless PeerAuthentication makes the port STRICT.
#[test]
fn sidecar_ingress_tls_modes() {
    use CallProtocol::{Http, Tcp};
    use CallTls::{Mtls, Plaintext, Tls};
    const CERT: &str = "file-cert:httpbin.pem~httpbinkey.pem";
    let ok = |r: Result<weft_control::simulate::Outcome, weft_control::simulate::SimError>,
              vh: &str| {
        let o = r.expect("routed");
        assert_eq!(o.filter_chain, "1.1.1.1_9080");
        assert_eq!(o.cluster, "inbound|9080||");
        assert_eq!(o.virtual_host, vh);
    };
    let err = |r: Result<weft_control::simulate::Outcome, weft_control::simulate::SimError>,
               e: &str| {
        assert_eq!(r.expect_err("should fail").kind.to_string(), e);
    };
    let res = sidecar_tls_env("DISABLE", "SIMPLE", "HTTPS");
    ok(
        simulate(&res, &inbound_call(Http, Tls, None)),
        "inbound|http|9080",
    );
    err(
        simulate(&res, &inbound_call(Http, Plaintext, None)),
        "no filter chain",
    );
    err(
        simulate(&res, &inbound_call(Http, Mtls, Some(CERT))),
        "mtls error",
    );

    let res = sidecar_tls_env("DISABLE", "SIMPLE", "TLS");
    ok(simulate(&res, &inbound_call(Tcp, Tls, None)), "");
    err(
        simulate(&res, &inbound_call(Tcp, Plaintext, None)),
        "no filter chain",
    );
    err(
        simulate(&res, &inbound_call(Tcp, Mtls, Some(CERT))),
        "mtls error",
    );

    let res = sidecar_tls_env("DISABLE", "MUTUAL", "HTTPS");
    ok(
        simulate(&res, &inbound_call(Http, Mtls, Some(CERT))),
        "inbound|http|9080",
    );
    err(
        simulate(&res, &inbound_call(Http, Plaintext, None)),
        "no filter chain",
    );
    err(
        simulate(&res, &inbound_call(Http, Tls, Some(CERT))),
        "mtls error",
    );

    let res = sidecar_tls_env("DISABLE", "MUTUAL", "TLS");
    ok(simulate(&res, &inbound_call(Tcp, Mtls, Some(CERT))), "");
    err(
        simulate(&res, &inbound_call(Tcp, Plaintext, None)),
        "no filter chain",
    );
    err(
        simulate(&res, &inbound_call(Tcp, Tls, Some(CERT))),
        "mtls error",
    );

    let res = sidecar_tls_env("STRICT", "MUTUAL", "TLS");
    err(simulate(&res, &inbound_call(Http, Tls, None)), "mtls error");
    err(
        simulate(&res, &inbound_call(Http, Plaintext, None)),
        "no filter chain",
    );
    ok(simulate(&res, &inbound_call(Http, Mtls, None)), "");
}
