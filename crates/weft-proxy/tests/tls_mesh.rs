//! Istio-style automatic mTLS between two weft-proxy instances, with SPIFFE certificates from
//! weft-identity's CA fed through the secrets API (`default`, `ROOTCA`), configured the way
//! Istio's translation shapes it: the client sidecar's cluster picks the mTLS socket with
//! `transport_socket_matches` (`tlsMode: istio`), the server sidecar's inbound listener has a
//! TLS chain (STRICT) or TLS and plaintext chains (PERMISSIVE).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::Backend;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_identity::ca::{CaConfig, CertificateAuthority};
use weft_identity::{SpiffeId, TrustDomain, WorkloadCertificate, WorkloadKey};

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "weft-mesh-{tag}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn id(sa: &str) -> SpiffeId {
    format!("spiffe://cluster.local/ns/default/sa/{sa}")
        .parse()
        .unwrap()
}

fn issue(ca: &CertificateAuthority, who: &SpiffeId) -> WorkloadCertificate {
    let key = WorkloadKey::generate().unwrap();
    let issued = ca.sign_csr(&key.csr_pem(who).unwrap(), who, None).unwrap();
    WorkloadCertificate::from_issued(&key, &issued).unwrap()
}

/// A certificate chain and key (PEM → DER) valid from `from` to `to`.
fn issue_raw(
    ca: &CertificateAuthority,
    who: &SpiffeId,
    from: SystemTime,
    to: SystemTime,
) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let key = WorkloadKey::generate().unwrap();
    let issued = ca
        .sign_csr_with_validity_for_tests(&key.csr_pem(who).unwrap(), who, from, to)
        .unwrap();
    use rustls::pki_types::pem::PemObject;
    (
        issued.chain().to_vec(),
        PrivateKeyDer::from_pem_slice(key.to_pem().as_bytes()).unwrap(),
    )
}

/// Accepts any server: these clients test how the server treats *their* certificate.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Sends one HTTP/1.1 request over mTLS with `chain`/`key`; `None` when the server refused.
async fn mtls_request(
    addr: SocketAddr,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Option<String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_client_auth_cert(chain, key)
        .unwrap();
    cfg.alpn_protocols = vec![b"istio-http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("reviews").unwrap(), tcp)
        .await
        .ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut out = Vec::new();
    match tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await {
        Ok(_) if !out.is_empty() => Some(String::from_utf8_lossy(&out).into_owned()),
        Ok(_) => None,
        Err(_) => panic!("neither refused nor answered"),
    }
}

/// Plaintext HTTP; `None` when the connection was closed without an answer.
async fn plaintext_request(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("closed or answered in time");
    (!out.is_empty()).then(|| String::from_utf8_lossy(&out).into_owned())
}

fn router() -> Value {
    json!([{"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}])
}

fn hcm(stat: &str, cluster: &str) -> Value {
    json!({"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": stat,
        "forward_client_cert_details": "APPEND_FORWARD",
        "set_current_client_cert_details": {"subject": true, "dns": true, "uri": true},
        "route_config": {"name": stat, "virtual_hosts": [{"name": "all", "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}]}]},
        "http_filters": router()}})
}

fn sds(name: &str) -> Value {
    // Istio's shape: secrets come from the agent's SDS server; here the secrets API feeds them.
    json!({"name": name, "sds_config": {"api_config_source": {"api_type": "GRPC",
        "transport_api_version": "V3", "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}]},
        "resource_api_version": "V3"}})
}

/// The inbound mTLS chain of Istio's sidecar (STRICT or the TLS half of PERMISSIVE).
fn inbound_tls_chain(cluster: &str) -> Value {
    json!({
        "name": "virtualInbound-tls",
        "filter_chain_match": {"transport_protocol": "tls",
            "application_protocols": ["istio-peer-exchange", "istio-http/1.0", "istio-http/1.1", "istio-h2"]},
        "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": true,
            "common_tls_context": {
                "alpn_protocols": ["istio-peer-exchange", "h2", "http/1.1"],
                "tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"},
                "tls_certificate_sds_secret_configs": [sds("default")],
                "combined_validation_context": {
                    "default_validation_context": {"match_subject_alt_names": [{"prefix": "spiffe://cluster.local/"}]},
                    "validation_context_sds_secret_config": sds("ROOTCA")}}}},
        "filters": [hcm("inbound_tls", cluster)]
    })
}

fn inbound_listener(name: &str, permissive: bool) -> Value {
    let mut chains = vec![inbound_tls_chain("inbound|9080||")];
    if permissive {
        chains.push(json!({"name": "virtualInbound-plaintext",
            "filter_chain_match": {"transport_protocol": "raw_buffer"},
            "filters": [hcm("inbound_plain", "inbound|9080||")]}));
    }
    json!({"name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "listener_filters": [
            {"name": "envoy.filters.listener.tls_inspector", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}},
            {"name": "envoy.filters.listener.http_inspector", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"}}],
        "listener_filters_timeout": "1s",
        "filter_chains": chains})
}

fn static_cluster(name: &str, addr: SocketAddr, tls_mode: Option<&str>, extra: Value) -> Value {
    let mut ep = json!({"endpoint": {"address": {"socket_address": {
        "address": addr.ip().to_string(), "port_value": addr.port()}}}});
    if let Some(m) = tls_mode {
        ep["metadata"] =
            json!({"filter_metadata": {"envoy.transport_socket_match": {"tlsMode": m}}});
    }
    let mut c = json!({"name": name, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [ep]}]}});
    if let (Some(o), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    c
}

/// Istio's outbound auto-mTLS cluster settings, expecting `server_sa` on the other side.
fn auto_mtls(server_sa: &str) -> Value {
    json!({"transport_socket_matches": [
        {"name": "tlsMode-istio", "match": {"tlsMode": "istio"}, "transport_socket": {
            "name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": "outbound_.9080_._.reviews.default.svc.cluster.local",
                "common_tls_context": {
                    "alpn_protocols": ["istio-peer-exchange", "istio-http/1.1"],
                    "tls_certificate_sds_secret_configs": [sds("default")],
                    "combined_validation_context": {
                        "default_validation_context": {"match_subject_alt_names": [
                            {"exact": format!("spiffe://cluster.local/ns/default/sa/{server_sa}")}]},
                        "validation_context_sds_secret_config": sds("ROOTCA")}}}}},
        {"name": "tlsMode-disabled", "match": {}, "transport_socket": {"name": "envoy.transport_sockets.raw_buffer"}}
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sidecars_mtls_strict_permissive_identity_and_expiry() {
    let dir = TempDir::new("ca");
    let ca = CertificateAuthority::load_or_create_self_signed(&dir.0, CaConfig::default()).unwrap();
    let reviews = Backend::start("reviews-v1").await;

    // The server sidecar (reviews): a STRICT and a PERMISSIVE inbound listener.
    let server = common::start(
        &json!({"static_resources": {
            "listeners": [inbound_listener("strict", false), inbound_listener("permissive", true)],
            "clusters": [static_cluster("inbound|9080||", reviews.addr, None, json!({}))]
        }})
        .to_string(),
    );
    assert!(
        server.unsupported().is_empty(),
        "{:?}",
        server.unsupported()
    );
    server
        .secrets()
        .set_workload_certificate(&issue(&ca, &id("reviews")))
        .unwrap();
    let strict = server.listener_addr("strict").unwrap();
    let permissive = server.listener_addr("permissive").unwrap();

    // The client sidecar (productpage): outbound clusters with auto mTLS to both listeners,
    // and one that expects another identity on the other side.
    let client = common::start(
        &json!({"static_resources": {
            "listeners": [
                {"name": "out", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                 "filter_chains": [{"filters": [hcm("out", "outbound|9080||reviews")]}]},
                {"name": "out-wrong-id", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                 "filter_chains": [{"filters": [hcm("out_wrong", "outbound|9080||ratings")]}]},
                {"name": "out-plain", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                 "filter_chains": [{"filters": [hcm("out_plain", "outbound|9080||no-sidecar")]}]},
                {"name": "out-later", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                 "filter_chains": [{"filters": [hcm("out_later", "outbound|9080||reviews-later")]}]}],
            "clusters": [
                static_cluster("outbound|9080||reviews", strict, Some("istio"), auto_mtls("reviews")),
                static_cluster("outbound|9080||ratings", strict, Some("istio"), auto_mtls("ratings")),
                // An endpoint without a sidecar (no tlsMode): plaintext to the STRICT port.
                static_cluster("outbound|9080||no-sidecar", strict, None, auto_mtls("reviews")),
                // Used only after the client's certificate changed (no pooled connection yet).
                static_cluster("outbound|9080||reviews-later", permissive, Some("istio"), auto_mtls("reviews")),
            ]
        }})
        .to_string(),
    );
    assert!(
        client.unsupported().is_empty(),
        "{:?}",
        client.unsupported()
    );
    let productpage = issue(&ca, &id("productpage"));
    client
        .secrets()
        .set_workload_certificate(&productpage)
        .unwrap();

    // mTLS end to end: the upstream sees the client's SPIFFE id, the server's as `By`.
    let got = common::get(
        client.listener_addr("out").unwrap(),
        "reviews",
        "/reviews/1",
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text());
    let echo = got.echo();
    assert_eq!(echo.backend, "reviews-v1");
    assert_eq!(echo.path, "/reviews/1");
    let xfcc = echo
        .header("x-forwarded-client-cert")
        .unwrap_or("")
        .to_owned();
    assert!(
        xfcc.starts_with("By=spiffe://cluster.local/ns/default/sa/reviews;Hash="),
        "{xfcc}"
    );
    assert!(
        xfcc.contains(";URI=spiffe://cluster.local/ns/default/sa/productpage"),
        "{xfcc}"
    );

    // The server's identity is checked: a client expecting `ratings` refuses `reviews`.
    let got = common::get(
        client.listener_addr("out-wrong-id").unwrap(),
        "ratings",
        "/",
    )
    .await;
    assert_eq!(got.status, 503, "{}", got.text());

    // STRICT refuses plaintext, from a proxy (endpoint without tlsMode) and from a raw client.
    let got = common::get(client.listener_addr("out-plain").unwrap(), "reviews", "/").await;
    assert!(
        got.status == 502 || got.status == 503,
        "{}: {}",
        got.status,
        got.text()
    );
    assert_eq!(
        reviews.requests.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_eq!(plaintext_request(strict).await, None);
    // PERMISSIVE accepts plaintext on the same port as mTLS.
    let plain = plaintext_request(permissive)
        .await
        .expect("PERMISSIVE answers plaintext");
    assert!(plain.starts_with("HTTP/1.1 200"), "{plain}");
    assert!(
        !plain.contains("x-forwarded-client-cert"),
        "no client certificate: no XFCC"
    );

    // An expired certificate from the right CA is refused.
    let now = SystemTime::now();
    let (chain, key) = issue_raw(
        &ca,
        &id("productpage"),
        now - Duration::from_secs(7200),
        now - Duration::from_secs(3600),
    );
    assert_eq!(
        mtls_request(strict, chain, key).await,
        None,
        "expired certificate"
    );
    // A certificate of another mesh (another CA and trust domain) is refused.
    let other_dir = TempDir::new("other-ca");
    let other_ca = CertificateAuthority::load_or_create_self_signed(
        &other_dir.0,
        CaConfig {
            trust_domain: TrustDomain::new("evil.local").unwrap(),
            ..CaConfig::default()
        },
    )
    .unwrap();
    let evil: SpiffeId = "spiffe://evil.local/ns/default/sa/productpage"
        .parse()
        .unwrap();
    let (chain, key) = issue_raw(
        &other_ca,
        &evil,
        now - Duration::from_secs(60),
        now + Duration::from_secs(3600),
    );
    assert_eq!(
        mtls_request(strict, chain, key).await,
        None,
        "certificate of another CA"
    );
    // The same client with a valid certificate is served (the refusals above were about the
    // certificates, not the client).
    let (chain, key) = issue_raw(
        &ca,
        &id("productpage"),
        now - Duration::from_secs(60),
        now + Duration::from_secs(3600),
    );
    let ok = mtls_request(strict, chain, key)
        .await
        .expect("valid certificate served");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");

    // The client sidecar's own certificate expires: its mTLS connections are refused, until
    // it is rotated; then new connections work again.
    let (chain, key) = issue_raw(
        &ca,
        &id("productpage"),
        now - Duration::from_secs(7200),
        now - Duration::from_secs(3600),
    );
    client
        .secrets()
        .set_tls_certificate("default", chain, key)
        .unwrap();
    let later = client.listener_addr("out-later").unwrap();
    let got = common::get(later, "reviews", "/").await;
    // TLS 1.3: the server's refusal arrives after the client's handshake, as a reset before
    // the response headers.
    assert!(
        got.status == 502 || got.status == 503,
        "the server refuses the expired client certificate: {}",
        got.status
    );
    // The connection pooled before the change still works (rotation drops nothing).
    let got = common::get(client.listener_addr("out").unwrap(), "reviews", "/again").await;
    assert_eq!(got.status, 200, "{}", got.text());
    client
        .secrets()
        .set_workload_certificate(&issue(&ca, &id("productpage")))
        .unwrap();
    let got = common::get(later, "reviews", "/").await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert!(
        got.echo()
            .header("x-forwarded-client-cert")
            .is_some_and(|x| x.contains("sa/productpage"))
    );
    assert_eq!(
        reviews.requests.load(std::sync::atomic::Ordering::SeqCst),
        5
    );
    server.shutdown();
    client.shutdown();
}
