//! TLS on listeners and clusters with real TLS peers: rustls clients and servers, curl and
//! openssl, certificates from a test CA (rcgen) and from weft-identity's SPIFFE CA. Each test
//! asserts what the client and the upstream saw (SNI, ALPN, certificates, SPIFFE ids).

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::Backend;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------------------------------------
// Certificates

/// A test CA that issues leaf certificates.
struct Pki {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
    ca_der: CertificateDer<'static>,
}

/// A leaf certificate with its key.
#[derive(Clone)]
struct Leaf {
    cert_pem: String,
    key_pem: String,
}

impl Leaf {
    fn key(&self) -> PrivateKeyDer<'static> {
        use rustls::pki_types::pem::PemObject;
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("key")
    }
}

impl Pki {
    fn new(name: &str) -> Pki {
        let key = KeyPair::generate().expect("ca key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = p.self_signed(&key).expect("ca cert");
        Pki {
            ca_pem: weft_identity::pem::encode("CERTIFICATE", cert.der()),
            ca_der: cert.der().clone(),
            issuer: Issuer::new(p, key),
        }
    }

    fn leaf(&self, dns: &[&str], uris: &[&str]) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let mut p =
            CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>()).unwrap();
        for u in uris {
            p.subject_alt_names
                .push(SanType::URI((*u).try_into().expect("uri")));
        }
        p.distinguished_name
            .push(DnType::CommonName, dns.first().copied().unwrap_or("leaf"));
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = p.signed_by(&key, &self.issuer).expect("leaf cert");
        Leaf {
            cert_pem: weft_identity::pem::encode("CERTIFICATE", cert.der()),
            key_pem: weft_identity::pem::encode("PRIVATE KEY", &key.serialize_der()),
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// SANs of a certificate: (DNS names, URIs).
fn sans(der: &[u8]) -> (Vec<String>, Vec<String>) {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("certificate parses");
    let mut dns = Vec::new();
    let mut uris = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                GeneralName::URI(u) => uris.push(u.to_string()),
                _ => {}
            }
        }
    }
    (dns, uris)
}

// ---------------------------------------------------------------------------------------------
// Clients

/// A rustls client trusting `ca`, offering `alpn`, presenting `cert` when given.
fn client_config(
    ca: &[&CertificateDer<'static>],
    alpn: &[&str],
    cert: Option<&Leaf>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in ca {
        roots.add((*c).clone()).expect("root");
    }
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut c = match cert {
        Some(l) => b
            .with_client_auth_cert(rustls_pemfile_certs(&l.cert_pem), l.key())
            .expect("client cert"),
        None => b.with_no_client_auth(),
    };
    c.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    // Every connection a full handshake: tests look at the certificate each one presents.
    c.resumption = rustls::client::Resumption::disabled();
    Arc::new(c)
}

fn rustls_pemfile_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certs")
}

type ClientTls = tokio_rustls::client::TlsStream<TcpStream>;

async fn tls_connect(
    addr: SocketAddr,
    sni: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<ClientTls> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned()).expect("server name");
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio_rustls::TlsConnector::from(cfg).connect(name, tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("handshake timed out"))?
}

/// One GET over an established stream (HTTP/2 when ALPN said h2, else HTTP/1.1).
async fn get_over(stream: ClientTls, host: &str, path: &str) -> common::Got {
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let req = Request::builder()
        .uri(if h2 {
            format!("https://{host}{path}")
        } else {
            path.to_owned()
        })
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    if h2 {
        let (mut s, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        common::collect(s.send_request(req).await.expect("h2 response")).await
    } else {
        let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("h1 handshake");
        tokio::spawn(conn);
        common::collect(s.send_request(req).await.expect("h1 response")).await
    }
}

/// Whether a TLS connection to `addr` is refused: the handshake fails, or the first read ends
/// (a TLS 1.3 server reports a bad client certificate after the client's handshake is done).
async fn refused(addr: SocketAddr, sni: &str, cfg: Arc<rustls::ClientConfig>) -> bool {
    let Ok(mut s) = tls_connect(addr, sni, cfg).await else {
        return true;
    };
    let _ = s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
        Err(_) => panic!("neither refused nor answered within 5 s"),
    }
}

// ---------------------------------------------------------------------------------------------
// TLS backends

/// What a TLS backend saw of one connection.
#[derive(Clone, Debug, Default)]
struct SeenTls {
    sni: Option<String>,
    alpn: Option<String>,
    peer_uris: Vec<String>,
}

struct TlsBackend {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<SeenTls>>>,
}

impl TlsBackend {
    /// An HTTP/1.1 + h2 server over TLS with `leaf`, asking for client certificates from
    /// `client_ca` when given; answers `tls:{name}` and echoes `x-forwarded-client-cert`.
    async fn start(
        name: &str,
        leaf: &Leaf,
        client_ca: Option<&CertificateDer<'static>>,
        alpn: &[&str],
    ) -> TlsBackend {
        let b = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap();
        let b = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.clone()).unwrap();
                let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider(),
                )
                .allow_unauthenticated()
                .build()
                .unwrap();
                b.with_client_cert_verifier(v)
            }
            None => b.with_no_client_auth(),
        };
        let mut cfg = b
            .with_single_cert(rustls_pemfile_certs(&leaf.cert_pem), leaf.key())
            .unwrap();
        cfg.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = Arc::clone(&seen);
        let name: Arc<str> = Arc::from(name);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let seen = Arc::clone(&s2);
                let name = Arc::clone(&name);
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let conn = tls.get_ref().1;
                    let facts = SeenTls {
                        sni: conn.server_name().map(str::to_owned),
                        alpn: conn
                            .alpn_protocol()
                            .map(|p| String::from_utf8_lossy(p).into_owned()),
                        peer_uris: conn
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map(|c| sans(c).1)
                            .unwrap_or_default(),
                    };
                    seen.lock().unwrap().push(facts.clone());
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let name = Arc::clone(&name);
                            let facts = facts.clone();
                            async move {
                                let xfcc = req
                                    .headers()
                                    .get("x-forwarded-client-cert")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_owned();
                                Ok::<_, std::convert::Infallible>(
                                    http::Response::builder()
                                        .header("x-tls-sni", facts.sni.unwrap_or_default())
                                        .header("x-tls-alpn", facts.alpn.unwrap_or_default())
                                        .header("x-tls-peer", facts.peer_uris.join(","))
                                        .header("x-seen-xfcc", xfcc)
                                        .body(Full::new(Bytes::from(format!("tls:{name}"))))
                                        .unwrap(),
                                )
                            }
                        });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        TlsBackend { addr, seen }
    }

    fn seen(&self) -> Vec<SeenTls> {
        self.seen.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration helpers (JSON, which the bootstrap loader reads as well as YAML)

fn addr_json(a: SocketAddr) -> Value {
    json!({"socket_address": {"address": a.ip().to_string(), "port_value": a.port()}})
}

fn hcm(stat: &str, cluster: &str, extra: Value) -> Value {
    let mut typed = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": stat,
        "route_config": {"name": format!("{stat}_routes"), "virtual_hosts": [
            {"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}]}
        ]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]
    });
    if let (Some(t), Some(e)) = (typed.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            t.insert(k.clone(), v.clone());
        }
    }
    json!({"name": "envoy.filters.network.http_connection_manager", "typed_config": typed})
}

fn tcp_proxy(stat: &str, cluster: &str) -> Value {
    json!({"name": "envoy.filters.network.tcp_proxy", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "stat_prefix": stat, "cluster": cluster}})
}

fn inline_cert(l: &Leaf) -> Value {
    json!({"certificate_chain": {"inline_string": l.cert_pem}, "private_key": {"inline_string": l.key_pem}})
}

fn downstream_tls(common: Value, extra: Value) -> Value {
    let mut typed = json!({
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "common_tls_context": common,
    });
    if let (Some(t), Some(e)) = (typed.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            t.insert(k.clone(), v.clone());
        }
    }
    json!({"name": "envoy.transport_sockets.tls", "typed_config": typed})
}

fn upstream_tls(common: Value, sni: &str) -> Value {
    json!({"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": common, "sni": sni}})
}

fn tls_inspector() -> Value {
    json!({"name": "envoy.filters.listener.tls_inspector", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}})
}

fn static_cluster(name: &str, endpoints: &[(SocketAddr, Option<Value>)], extra: Value) -> Value {
    let eps: Vec<Value> = endpoints
        .iter()
        .map(|(a, md)| {
            let mut e = json!({"endpoint": {"address": addr_json(*a)}});
            if let Some(md) = md {
                e["metadata"] = json!({"filter_metadata": {"envoy.transport_socket_match": md}});
            }
            e
        })
        .collect();
    let mut c = json!({
        "name": name, "type": "STATIC", "connect_timeout": "2s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": eps}]}
    });
    if let (Some(t), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            t.insert(k.clone(), v.clone());
        }
    }
    c
}

fn listener(name: &str, filters: Vec<Value>, chains: Vec<Value>) -> Value {
    json!({"name": name, "address": addr_json("127.0.0.1:0".parse().unwrap()),
        "listener_filters": filters, "filter_chains": chains})
}

fn start(bootstrap: Value) -> weft_proxy::ProxyHandle {
    common::start(&bootstrap.to_string())
}

fn start_with_secrets(
    bootstrap: Value,
    secrets: Arc<weft_proxy::tls::SecretStore>,
) -> weft_proxy::ProxyHandle {
    let mut options = weft_proxy::Options::default();
    options.compile.secrets = secrets;
    common::start_with(&bootstrap.to_string(), options)
}

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "weft-tls-{tag}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn write(&self, name: &str, contents: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap();
        p.to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run_tool(program: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} is required for this test (apt-get install {program}): {e}")
        })
}

// ---------------------------------------------------------------------------------------------
// Tests

/// Two TLS chains on one listener, chosen by SNI; certificates inline and from files; h2 over
/// ALPN; curl as a second, independent client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downstream_tls_sni_chains_alpn_h2_and_curl() {
    let pki = Pki::new("test ca");
    let a = pki.leaf(&["a.example.com"], &[]);
    let b = pki.leaf(&["b.example.com"], &[]);
    let dir = TempDir::new("sni");
    let b_cert = dir.write("b.pem", &b.cert_pem);
    let b_key = dir.write("b.key", &b.key_pem);
    let ca_file = dir.write("ca.pem", &pki.ca_pem);
    let backend_a = Backend::start("a").await;
    let backend_b = Backend::start("b").await;
    let bootstrap = json!({"static_resources": {
        "listeners": [listener("tls", vec![tls_inspector()], vec![
            json!({"filter_chain_match": {"server_names": ["a.example.com"]},
                "transport_socket": downstream_tls(json!({"alpn_protocols": ["h2", "http/1.1"], "tls_certificates": [inline_cert(&a)]}), json!({})),
                "filters": [hcm("a", "a", json!({}))]}),
            json!({"filter_chain_match": {"server_names": ["*.example.com"]},
                "transport_socket": downstream_tls(json!({"alpn_protocols": ["http/1.1"], "tls_certificates": [
                    {"certificate_chain": {"filename": b_cert}, "private_key": {"filename": b_key}}]}), json!({})),
                "filters": [hcm("b", "b", json!({}))]}),
        ])],
        "clusters": [static_cluster("a", &[(backend_a.addr, None)], json!({})),
                     static_cluster("b", &[(backend_b.addr, None)], json!({}))]
    }});
    let proxy = start(bootstrap);
    assert!(proxy.unsupported().is_empty(), "{:?}", proxy.unsupported());
    let addr = proxy.listener_addr("tls").unwrap();

    // SNI a.example.com: chain a, certificate a, h2 negotiated.
    let s = tls_connect(
        addr,
        "a.example.com",
        client_config(&[&pki.ca_der], &["h2", "http/1.1"], None),
    )
    .await
    .expect("handshake with a");
    let server_cert = s.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert_eq!(sans(&server_cert).0, vec!["a.example.com"]);
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let got = get_over(s, "a.example.com", "/hello").await;
    assert_eq!(got.status, 200);
    let echo = got.echo();
    assert_eq!(echo.backend, "a");
    assert_eq!(echo.header("x-forwarded-proto"), Some("https"));

    // SNI other.example.com: the wildcard chain, certificate b (loaded from files), HTTP/1.1.
    let s = tls_connect(
        addr,
        "other.example.com",
        client_config(&[&pki.ca_der], &["h2", "http/1.1"], None),
    )
    .await
    .err()
    .map(|e| e.to_string());
    // The client verifies the name: b's certificate is for b.example.com only.
    assert!(
        s.is_some_and(|e| e.contains("NotValidForName") || e.contains("not valid")),
        "name check"
    );
    let s = tls_connect(
        addr,
        "b.example.com",
        client_config(&[&pki.ca_der], &["h2", "http/1.1"], None),
    )
    .await
    .expect("handshake with b");
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let got = get_over(s, "b.example.com", "/").await;
    assert_eq!(got.echo().backend, "b");

    // curl, an independent TLS client, with h2 over ALPN.
    let port = addr.port().to_string();
    let out = run_tool(
        "curl",
        &[
            "-sS",
            "--http2",
            "--cacert",
            &ca_file,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
            "--resolve",
            &format!("a.example.com:{port}:127.0.0.1"),
            &format!("https://a.example.com:{port}/curl"),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200 2",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        backend_a.requests.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
    assert_eq!(
        backend_b.requests.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_eq!(
        common::stat(&proxy, "listener.127.0.0.1_0.ssl.handshake").await,
        3
    );
    proxy.shutdown();
}

/// `require_client_certificate` with a trusted CA and SAN matchers (URI = SPIFFE id): no
/// certificate, a certificate from another CA and one with another SPIFFE id are refused; the
/// right one passes, and the upstream sees its SPIFFE id in `x-forwarded-client-cert`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_listener_checks_client_ca_and_spiffe_san() {
    let pki = Pki::new("mesh ca");
    let other_pki = Pki::new("other ca");
    let server = pki.leaf(
        &["server.local"],
        &["spiffe://cluster.local/ns/default/sa/server"],
    );
    let good = pki.leaf(&[], &["spiffe://cluster.local/ns/default/sa/client"]);
    let wrong_id = pki.leaf(&[], &["spiffe://cluster.local/ns/default/sa/intruder"]);
    let wrong_ca = other_pki.leaf(&[], &["spiffe://cluster.local/ns/default/sa/client"]);
    let backend = Backend::start("b").await;
    let bootstrap = json!({"static_resources": {
        "listeners": [listener("mtls", vec![], vec![
            json!({"transport_socket": downstream_tls(json!({
                    "tls_certificates": [inline_cert(&server)],
                    "validation_context": {
                        "trusted_ca": {"inline_string": pki.ca_pem},
                        "match_typed_subject_alt_names": [
                            {"san_type": "URI", "matcher": {"exact": "spiffe://cluster.local/ns/default/sa/client"}}]}
                }), json!({"require_client_certificate": true})),
                "filters": [hcm("in", "b", json!({
                    "forward_client_cert_details": "SANITIZE_SET",
                    "set_current_client_cert_details": {"uri": true, "subject": true}}))]}),
        ])],
        "clusters": [static_cluster("b", &[(backend.addr, None)], json!({}))]
    }});
    let proxy = start(bootstrap);
    assert!(proxy.unsupported().is_empty(), "{:?}", proxy.unsupported());
    let addr = proxy.listener_addr("mtls").unwrap();
    let ca = [&pki.ca_der];

    assert!(
        refused(addr, "server.local", client_config(&ca, &[], None)).await,
        "no client certificate"
    );
    assert!(
        refused(
            addr,
            "server.local",
            client_config(&ca, &[], Some(&wrong_ca))
        )
        .await,
        "untrusted CA"
    );
    assert!(
        refused(
            addr,
            "server.local",
            client_config(&ca, &[], Some(&wrong_id))
        )
        .await,
        "SAN mismatch"
    );
    assert_eq!(
        backend.requests.load(std::sync::atomic::Ordering::SeqCst),
        0
    );

    let s = tls_connect(addr, "server.local", client_config(&ca, &[], Some(&good)))
        .await
        .expect("handshake");
    let got = get_over(s, "server.local", "/").await;
    assert_eq!(got.status, 200);
    let xfcc = got
        .echo()
        .header("x-forwarded-client-cert")
        .unwrap_or("")
        .to_owned();
    assert!(
        xfcc.starts_with("By=spiffe://cluster.local/ns/default/sa/server;Hash="),
        "{xfcc}"
    );
    assert!(
        xfcc.ends_with(";URI=spiffe://cluster.local/ns/default/sa/client"),
        "{xfcc}"
    );
    assert!(xfcc.contains("Subject=\""), "{xfcc}");
    assert_eq!(
        backend.requests.load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    // openssl s_client, when installed, is refused without a certificate too.
    if let Ok(out) = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "server.local",
            "-brief",
        ])
        .stdin(std::process::Stdio::null())
        .output()
    {
        let text = String::from_utf8_lossy(&out.stderr).to_lowercase()
            + &String::from_utf8_lossy(&out.stdout).to_lowercase();
        assert!(!text.contains("200 ok"), "{text}");
    }
    assert!(common::stat(&proxy, "listener.127.0.0.1_0.ssl.connection_error").await >= 2);
    proxy.shutdown();
}

/// TLS passthrough: a tcp_proxy chain matched by SNI, without termination; the client talks
/// TLS with the backend itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_passthrough_by_sni() {
    let pki = Pki::new("ca");
    let leaf_a = pki.leaf(&["a.passthrough"], &[]);
    let leaf_b = pki.leaf(&["b.passthrough"], &[]);
    let back_a = TlsBackend::start("a", &leaf_a, None, &["h2", "http/1.1"]).await;
    let back_b = TlsBackend::start("b", &leaf_b, None, &["http/1.1"]).await;
    let bootstrap = json!({"static_resources": {
        "listeners": [listener("pass", vec![tls_inspector()], vec![
            json!({"filter_chain_match": {"server_names": ["a.passthrough"]}, "filters": [tcp_proxy("a", "a")]}),
            json!({"filter_chain_match": {"server_names": ["b.passthrough"]}, "filters": [tcp_proxy("b", "b")]}),
        ])],
        "clusters": [static_cluster("a", &[(back_a.addr, None)], json!({})),
                     static_cluster("b", &[(back_b.addr, None)], json!({}))]
    }});
    let proxy = start(bootstrap);
    let addr = proxy.listener_addr("pass").unwrap();
    for (sni, body, alpn) in [
        ("a.passthrough", "tls:a", "h2"),
        ("b.passthrough", "tls:b", "http/1.1"),
    ] {
        let s = tls_connect(
            addr,
            sni,
            client_config(&[&pki.ca_der], &["h2", "http/1.1"], None),
        )
        .await
        .expect("end-to-end handshake");
        assert_eq!(
            sans(&s.get_ref().1.peer_certificates().unwrap()[0]).0,
            vec![sni]
        );
        let got = get_over(s, sni, "/").await;
        assert_eq!(got.text(), body);
        assert_eq!(
            got.header("x-tls-sni"),
            Some(sni),
            "the backend saw the client's SNI"
        );
        assert_eq!(got.header("x-tls-alpn"), Some(alpn));
    }
    assert_eq!(back_a.seen().len(), 1);
    assert_eq!(back_b.seen().len(), 1);
    proxy.shutdown();
}

/// Upstream TLS: SNI, Istio's ALPN, a client certificate, the server's CA and SAN checked.
/// A server with another SPIFFE id is refused (503, no request reaches it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_sni_alpn_client_cert_and_san() {
    let pki = Pki::new("mesh");
    let server_leaf = pki.leaf(&[], &["spiffe://cluster.local/ns/default/sa/reviews"]);
    let impostor_leaf = pki.leaf(&[], &["spiffe://cluster.local/ns/default/sa/impostor"]);
    let client_leaf = pki.leaf(&[], &["spiffe://cluster.local/ns/default/sa/productpage"]);
    let good = TlsBackend::start(
        "reviews",
        &server_leaf,
        Some(&pki.ca_der),
        &["istio-http/1.1", "http/1.1"],
    )
    .await;
    let bad = TlsBackend::start(
        "impostor",
        &impostor_leaf,
        Some(&pki.ca_der),
        &["istio-http/1.1"],
    )
    .await;
    let common = |_: &str| {
        json!({
            "alpn_protocols": ["istio-peer-exchange", "istio-http/1.1"],
            "tls_certificates": [inline_cert(&client_leaf)],
            "combined_validation_context": {
                "default_validation_context": {"match_subject_alt_names": [{"exact": "spiffe://cluster.local/ns/default/sa/reviews"}]},
                "validation_context_sds_secret_config": {"name": "ROOTCA"}}
        })
    };
    let bootstrap = json!({"static_resources": {
        "listeners": [listener("out", vec![], vec![json!({"filters": [hcm("out", "good", json!({}))]})]),
                      listener("out2", vec![], vec![json!({"filters": [hcm("out2", "bad", json!({}))]})])],
        "clusters": [
            static_cluster("good", &[(good.addr, None)], json!({"transport_socket": upstream_tls(common("good"), "outbound_.9080_._.reviews.default.svc.cluster.local")})),
            static_cluster("bad", &[(bad.addr, None)], json!({"transport_socket": upstream_tls(common("bad"), "reviews.default")})),
        ],
        "secrets": [{"name": "ROOTCA", "validation_context": {"trusted_ca": {"inline_string": pki.ca_pem}}}]
    }});
    let proxy = start(bootstrap);
    assert!(proxy.unsupported().is_empty(), "{:?}", proxy.unsupported());
    let got = common::get(proxy.listener_addr("out").unwrap(), "reviews", "/").await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.text(), "tls:reviews");
    let seen = good.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].sni.as_deref(),
        Some("outbound_.9080_._.reviews.default.svc.cluster.local")
    );
    assert_eq!(seen[0].alpn.as_deref(), Some("istio-http/1.1"));
    assert_eq!(
        seen[0].peer_uris,
        vec!["spiffe://cluster.local/ns/default/sa/productpage"]
    );
    // The connection is pooled: a second request reuses it.
    let got = common::get(proxy.listener_addr("out").unwrap(), "reviews", "/").await;
    assert_eq!(got.status, 200);
    assert_eq!(good.seen().len(), 1, "pooled TLS connection reused");

    let got = common::get(proxy.listener_addr("out2").unwrap(), "reviews", "/").await;
    assert_eq!(got.status, 503, "{}", got.text());
    assert!(
        bad.seen().is_empty(),
        "the impostor never got a request past the handshake"
    );
    proxy.shutdown();
}

/// Istio's auto mTLS: endpoints with `tlsMode: istio` get the TLS socket, the others plaintext,
/// in one cluster; the pools are per endpoint and transport.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_socket_matches_choose_per_endpoint() {
    let pki = Pki::new("mesh");
    let leaf = pki.leaf(&[], &["spiffe://cluster.local/ns/default/sa/reviews"]);
    let tls_backend = TlsBackend::start("mesh", &leaf, None, &["istio-http/1.1"]).await;
    let plain = Backend::start("plain").await;
    let dir = TempDir::new("file-root");
    let ca_file = dir.write("root-cert.pem", &pki.ca_pem);
    let bootstrap = json!({"static_resources": {
        "listeners": [listener("out", vec![], vec![json!({"filters": [hcm("out", "svc", json!({}))]})])],
        "clusters": [static_cluster("svc", &[
                (tls_backend.addr, Some(json!({"tlsMode": "istio"}))),
                (plain.addr, None),
            ], json!({
                "transport_socket_matches": [
                    {"name": "tlsMode-istio", "match": {"tlsMode": "istio"},
                     "transport_socket": upstream_tls(json!({
                        "alpn_protocols": ["istio-http/1.1"],
                        // Istio's reference to a CA file (DestinationRule caCertificates).
                        "validation_context_sds_secret_config": {"name": format!("file-root:{ca_file}"), "sds_config": {"ads": {}}}
                    }), "outbound_.9080_._.svc")},
                    {"name": "tlsMode-disabled", "match": {},
                     "transport_socket": {"name": "envoy.transport_sockets.raw_buffer", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"}}}
                ]}))]
    }});
    let proxy = start(bootstrap);
    assert!(proxy.unsupported().is_empty(), "{:?}", proxy.unsupported());
    let addr = proxy.listener_addr("out").unwrap();
    let mut tls_hits = 0;
    let mut plain_hits = 0;
    for _ in 0..6 {
        let got = common::get(addr, "svc", "/").await;
        assert_eq!(got.status, 200, "{}", got.text());
        if got.text() == "tls:mesh" {
            tls_hits += 1;
        } else {
            assert_eq!(got.echo().backend, "plain");
            plain_hits += 1;
        }
    }
    assert_eq!((tls_hits, plain_hits), (3, 3));
    assert_eq!(tls_backend.seen().len(), 1, "one pooled TLS connection");
    assert_eq!(
        tls_backend.seen()[0].sni.as_deref(),
        Some("outbound_.9080_._.svc")
    );
    assert_eq!(plain.requests.load(std::sync::atomic::Ordering::SeqCst), 3);
    proxy.shutdown();
}

/// Secrets by SDS name: the listener waits (warming) for `default`, which arrives through the
/// API after the client started; a rotation changes the certificate of new handshakes while an
/// open connection keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sds_secret_warming_and_rotation_without_dropping_connections() {
    let pki = Pki::new("ca");
    let first = pki.leaf(
        &["svc.local"],
        &["spiffe://cluster.local/ns/default/sa/first"],
    );
    let second = pki.leaf(
        &["svc.local"],
        &["spiffe://cluster.local/ns/default/sa/second"],
    );
    let backend = Backend::start("b").await;
    let bootstrap = json!({"static_resources": {
        "listeners": [listener("sds", vec![], vec![json!({
            "transport_socket": downstream_tls(json!({
                "tls_certificate_sds_secret_configs": [{"name": "default", "sds_config": {"ads": {}}}]}), json!({})),
            "filters": [hcm("sds", "b", json!({}))]})])],
        "clusters": [static_cluster("b", &[(backend.addr, None)], json!({}))]
    }});
    let secrets = Arc::new(weft_proxy::tls::SecretStore::default());
    let proxy = start_with_secrets(bootstrap, Arc::clone(&secrets));
    assert!(proxy.unsupported().is_empty(), "{:?}", proxy.unsupported());
    let addr = proxy.listener_addr("sds").unwrap();
    let cfg = client_config(&[&pki.ca_der], &[], None);

    // Warming: the handshake waits for the secret.
    let pending = tokio::spawn(tls_connect(addr, "svc.local", Arc::clone(&cfg)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !pending.is_finished(),
        "no certificate yet: the connection waits"
    );
    proxy
        .secrets()
        .set_tls_certificate_pem("default", &first.cert_pem, &first.key_pem)
        .unwrap();
    let s = pending
        .await
        .unwrap()
        .expect("handshake after the secret arrived");
    let uris = sans(&s.get_ref().1.peer_certificates().unwrap()[0]).1;
    assert_eq!(uris, vec!["spiffe://cluster.local/ns/default/sa/first"]);
    let (mut old_conn, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = || {
        Request::builder()
            .uri("/")
            .header("host", "svc")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    assert_eq!(old_conn.send_request(req()).await.unwrap().status(), 200);

    // Rotation: new handshakes get the new certificate...
    secrets
        .set_tls_certificate_pem("default", &second.cert_pem, &second.key_pem)
        .unwrap();
    let s = tls_connect(addr, "svc.local", Arc::clone(&cfg))
        .await
        .unwrap();
    assert_eq!(
        sans(&s.get_ref().1.peer_certificates().unwrap()[0]).1,
        vec!["spiffe://cluster.local/ns/default/sa/second"]
    );
    assert_eq!(get_over(s, "svc", "/").await.status, 200);
    // ...and the connection opened before it keeps working.
    for _ in 0..3 {
        old_conn.ready().await.expect("old connection still open");
        let resp = old_conn
            .send_request(req())
            .await
            .expect("old connection serves");
        assert_eq!(resp.status(), 200);
        let _ = resp.into_body().collect().await;
    }
    assert_eq!(
        backend.requests.load(std::sync::atomic::Ordering::SeqCst),
        5
    );
    assert_eq!(secrets.names(), vec!["default"]);
    proxy.shutdown();
}

/// Istio's PERMISSIVE: one port, chains for TLS (mTLS) and plaintext (HTTP/1.1 and h2c
/// detected), chosen by the inspectors; a silent client is closed after
/// `listener_filters_timeout` unless `continue_on_listener_filters_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissive_detection_tls_and_plaintext_on_one_port() {
    let pki = Pki::new("mesh");
    let server = pki.leaf(
        &["server.local"],
        &["spiffe://cluster.local/ns/default/sa/server"],
    );
    let client = pki.leaf(&[], &["spiffe://cluster.local/ns/default/sa/client"]);
    let tls_back = Backend::start("via-tls").await;
    let h1_back = Backend::start("via-h1").await;
    let h2_back = Backend::start("via-h2c").await;
    let tcp_back = common::tcp_echo().await;
    let http_inspector = json!({"name": "envoy.filters.listener.http_inspector", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"}});
    let chains = vec![
        json!({"filter_chain_match": {"transport_protocol": "tls", "application_protocols": ["istio-http/1.0", "istio-http/1.1", "istio-h2"]},
            "transport_socket": downstream_tls(json!({
                "alpn_protocols": ["h2", "http/1.1"],
                "tls_certificates": [inline_cert(&server)],
                "validation_context": {"trusted_ca": {"inline_string": pki.ca_pem}}}),
                json!({"require_client_certificate": true})),
            "filters": [hcm("tls", "via-tls", json!({"forward_client_cert_details": "APPEND_FORWARD",
                "set_current_client_cert_details": {"uri": true}}))]}),
        json!({"filter_chain_match": {"transport_protocol": "raw_buffer", "application_protocols": ["http/1.1", "http/1.0"]},
            "filters": [hcm("h1", "via-h1", json!({}))]}),
        json!({"filter_chain_match": {"transport_protocol": "raw_buffer", "application_protocols": ["h2c"]},
            "filters": [hcm("h2c", "via-h2c", json!({}))]}),
        json!({"filter_chain_match": {"transport_protocol": "raw_buffer"}, "filters": [tcp_proxy("tcp", "tcp")]}),
    ];
    let mut l = listener(
        "permissive",
        vec![tls_inspector(), http_inspector.clone()],
        chains.clone(),
    );
    l["listener_filters_timeout"] = json!("0.3s");
    l["continue_on_listener_filters_timeout"] = json!(true);
    let mut strict_timeout = listener("closing", vec![tls_inspector(), http_inspector], chains);
    strict_timeout["listener_filters_timeout"] = json!("0.3s");
    let bootstrap = json!({"static_resources": {
        "listeners": [l, strict_timeout],
        "clusters": [static_cluster("via-tls", &[(tls_back.addr, None)], json!({})),
                     static_cluster("via-h1", &[(h1_back.addr, None)], json!({})),
                     static_cluster("via-h2c", &[(h2_back.addr, None)], json!({})),
                     static_cluster("tcp", &[(tcp_back.0, None)], json!({}))]
    }});
    let proxy = start(bootstrap);
    assert!(proxy.unsupported().is_empty(), "{:?}", proxy.unsupported());
    let addr = proxy.listener_addr("permissive").unwrap();

    // mTLS with Istio's ALPN.
    let s = tls_connect(
        addr,
        "server.local",
        client_config(&[&pki.ca_der], &["istio-http/1.1"], Some(&client)),
    )
    .await
    .expect("mTLS");
    let got = get_over(s, "x", "/").await;
    assert_eq!(got.echo().backend, "via-tls");
    assert_eq!(
        got.echo()
            .header("x-forwarded-client-cert")
            .map(|x| x.ends_with("URI=spiffe://cluster.local/ns/default/sa/client")),
        Some(true)
    );
    // Plaintext HTTP/1.1 and h2c on the same port.
    assert_eq!(common::get(addr, "x", "/").await.echo().backend, "via-h1");
    let mut h2 = common::H2::connect(addr).await;
    assert_eq!(h2.get("x", "/").await.echo().backend, "via-h2c");
    // Opaque TCP that speaks first.
    let mut t = TcpStream::connect(addr).await.unwrap();
    t.write_all(b"\x00\x01binary").await.unwrap();
    let mut buf = [0u8; 8];
    t.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"\x00\x01binary");
    // A server-first client (says nothing): after the timeout it goes on to the TCP chain...
    let mut t = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    t.write_all(b"late").await.unwrap();
    let mut buf = [0u8; 4];
    t.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"late");
    // ...or is closed where the listener does not continue on timeout.
    let mut t = TcpStream::connect(proxy.listener_addr("closing").unwrap())
        .await
        .unwrap();
    let mut buf = [0u8; 4];
    let n = tokio::time::timeout(Duration::from_secs(5), t.read(&mut buf))
        .await
        .expect("closed within the timeout")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert_eq!(
        common::stat(&proxy, "listener.127.0.0.1_0.downstream_pre_cx_timeout").await,
        1
    );
    assert_eq!(
        (
            tls_back.requests.load(std::sync::atomic::Ordering::SeqCst),
            h1_back.requests.load(std::sync::atomic::Ordering::SeqCst),
            h2_back.requests.load(std::sync::atomic::Ordering::SeqCst)
        ),
        (1, 1, 1)
    );
    proxy.shutdown();
}
