//! SDS over ADS: a listener whose certificate is an SDS secret (`sds_config: {ads: {}}`) from
//! weft-xds's ADS server over real gRPC. The proxy is not ready until the secret arrives; a new
//! version of the secret changes the certificate of new handshakes while an open connection
//! keeps working; an invalid secret is NACKed and the previous one stays.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Backend, admin_get};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::net::TcpStream;
use weft_xds::cache::{Cache, Resource, Snapshot};
use weft_xds::envoy::config::cluster::v3::Cluster;
use weft_xds::envoy::config::listener::v3::Listener;
use weft_xds::envoy::extensions::transport_sockets::tls::v3::Secret;
use weft_xds::server::serve;
use weft_xds::type_url::{CLUSTER, LISTENER, SECRET};

const NODE: &str = "sidecar~127.0.0.1~tls-1.default~default.svc.cluster.local";

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(10), f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

fn resource<T: prost::Message + prost::Name + Default>(v: serde_json::Value) -> Resource {
    let msg: T = weft_xds::json::from_json(&v.to_string()).unwrap_or_else(|e| panic!("{e}\n{v}"));
    Resource::from_message(&msg).expect("named")
}

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, "sds ca");
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let cert = p.self_signed(&key).unwrap();
        Ca {
            der: cert.der().clone(),
            issuer: Issuer::new(p, key),
        }
    }

    /// (certificate PEM, key PEM) for `svc.local` with a distinguishing common name.
    fn leaf(&self, cn: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["svc.local".to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (
            weft_identity::pem::encode("CERTIFICATE", cert.der()),
            weft_identity::pem::encode("PRIVATE KEY", &key.serialize_der()),
        )
    }
}

fn secret(name: &str, (cert, key): &(String, String)) -> Resource {
    resource::<Secret>(json!({"name": name, "tls_certificate": {
        "certificate_chain": {"inline_string": cert}, "private_key": {"inline_string": key}}}))
}

fn common_name(der: &[u8]) -> String {
    let (_, c) = x509_parser::parse_x509_certificate(der).unwrap();
    c.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("")
        .to_owned()
}

async fn handshake(
    addr: std::net::SocketAddr,
    ca: &CertificateDer<'static>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.resumption = rustls::client::Resumption::disabled();
    let tcp = TcpStream::connect(addr).await.unwrap();
    within(
        "the TLS handshake",
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from("svc.local").unwrap(), tcp),
    )
    .await
    .expect("handshake")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sds_over_ads_warms_rotates_and_nacks() {
    let ca = Ca::new();
    let backend = Backend::start("b").await;
    let cache = Cache::new();
    let server = serve("127.0.0.1:0".parse().unwrap(), cache.clone())
        .await
        .expect("xDS server");
    let xds = server.local_addr();
    let listener = resource::<Listener>(json!({
        "name": "tls", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{
            "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "common_tls_context": {"tls_certificate_sds_secret_configs": [
                    {"name": "kubernetes://gateway-cert", "sds_config": {"ads": {}, "resource_api_version": "V3"}}]}}},
            "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "tls",
                "route_config": {"name": "r", "virtual_hosts": [{"name": "all", "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "b"}}]}]},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]
        }]
    }));
    let cluster = resource::<Cluster>(json!({
        "name": "b", "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": "b", "endpoints": [{"lb_endpoints": [{"endpoint": {"address":
            {"socket_address": {"address": "127.0.0.1", "port_value": backend.addr.port()}}}}]}]}
    }));
    cache
        .set_snapshot(
            NODE,
            Snapshot::new()
                .with(LISTENER, [listener])
                .with(CLUSTER, [cluster]),
        )
        .expect("snapshot");
    let bootstrap = format!(
        r#"
node: {{id: "{NODE}", cluster: proxy}}
dynamic_resources:
  ads_config:
    api_type: GRPC
    grpc_services:
    - envoy_grpc: {{cluster_name: xds-grpc}}
  lds_config: {{ads: {{}}}}
  cds_config: {{ads: {{}}}}
static_resources:
  clusters:
  - name: xds-grpc
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: xds-grpc
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}
"#,
        xds.port()
    );
    let proxy = common::start(&bootstrap);

    // Listeners and clusters are in, the secret is not: not ready (warming).
    within("the listener to be bound", async {
        while proxy.listener_addr("tls").is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_ne!(
        admin_get(&proxy, "/ready").await.status,
        200,
        "ready before the secret arrived"
    );

    let first = ca.leaf("first");
    let v = cache
        .update_resources(
            NODE,
            SECRET,
            [secret("kubernetes://gateway-cert", &first)],
            [] as [&str; 0],
        )
        .expect("secret");
    within(
        "the secret to be ACKed",
        server
            .status()
            .wait_acked(NODE, SECRET, v.version(SECRET).unwrap()),
    )
    .await;
    within("/ready", async {
        while admin_get(&proxy, "/ready").await.status != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let addr = proxy.listener_addr("tls").unwrap();
    let s = handshake(addr, &ca.der).await;
    assert_eq!(
        common_name(&s.get_ref().1.peer_certificates().unwrap()[0]),
        "first"
    );
    let (mut open, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = || {
        Request::builder()
            .uri("/")
            .header("host", "svc.local")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let resp = open.send_request(req()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.into_body().collect().await;

    // Rotation over SDS.
    let second = ca.leaf("second");
    let v = cache
        .update_resources(
            NODE,
            SECRET,
            [secret("kubernetes://gateway-cert", &second)],
            [] as [&str; 0],
        )
        .expect("secret");
    within(
        "the rotated secret to be ACKed",
        server
            .status()
            .wait_acked(NODE, SECRET, v.version(SECRET).unwrap()),
    )
    .await;
    let s = handshake(addr, &ca.der).await;
    assert_eq!(
        common_name(&s.get_ref().1.peer_certificates().unwrap()[0]),
        "second"
    );
    open.ready()
        .await
        .expect("the connection opened before the rotation is open");
    let resp = open.send_request(req()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.into_body().collect().await;

    // A secret whose key does not match its certificate is NACKed; "second" stays.
    let broken = (second.0.clone(), first.1.clone());
    cache
        .update_resources(
            NODE,
            SECRET,
            [secret("kubernetes://gateway-cert", &broken)],
            [] as [&str; 0],
        )
        .expect("secret");
    within(
        "the NACK",
        server.status().wait_for(NODE, |n| {
            n.types
                .get(SECRET)
                .and_then(|t| t.nack.as_ref())
                .is_some_and(|k| k.error.contains("does not match"))
        }),
    )
    .await;
    let s = handshake(addr, &ca.der).await;
    assert_eq!(
        common_name(&s.get_ref().1.peer_certificates().unwrap()[0]),
        "second"
    );
    assert_eq!(
        backend.requests.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
    proxy.shutdown();
}
