//! The `weft-proxy` binary with `--identity-dir` (Istio's file-mounted certificates): its mTLS
//! listener presents the SPIFFE identity from the files, and a new identity written to the
//! directory reaches new handshakes without a restart. Certificates come from weft-identity's
//! CA; the client verifies SPIFFE ids with weft-identity's rustls builder.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_identity::ca::{CaConfig, CertificateAuthority};
use weft_identity::{
    AllowedIdentities, CertStore, MtlsClient, SpiffeId, WorkloadCertificate, WorkloadKey,
};

/// Kills the proxy (by PID) when the test ends.
struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn id(sa: &str) -> SpiffeId {
    format!("spiffe://cluster.local/ns/default/sa/{sa}")
        .parse()
        .unwrap()
}

/// Writes an identity for `who` into `dir` the way a rotation would: each file replaced whole.
fn write_identity(ca: &CertificateAuthority, who: &SpiffeId, dir: &Path) {
    let key = WorkloadKey::generate().unwrap();
    let issued = ca.sign_csr(&key.csr_pem(who).unwrap(), who, None).unwrap();
    for (name, text) in [
        ("root-cert.pem", issued.roots_pem()),
        ("cert-chain.pem", issued.chain_pem().join("")),
        ("key.pem", key.to_pem()),
    ] {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

/// The SPIFFE id the proxy presents, after a request over the connection was answered.
async fn presented(addr: SocketAddr, client: Arc<rustls::ClientConfig>) -> Option<String> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let mut s = tokio_rustls::TlsConnector::from(client)
        .connect(ServerName::try_from("weft").unwrap(), tcp)
        .await
        .ok()?;
    let peer = weft_identity::peer_identity(s.get_ref().1).ok()?.to_uri();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    String::from_utf8_lossy(&out)
        .starts_with("HTTP/1.1 200")
        .then_some(peer)
}

async fn until_presented(addr: SocketAddr, client: &Arc<rustls::ClientConfig>, want: &str) {
    let start = Instant::now();
    loop {
        let got = presented(addr, Arc::clone(client)).await;
        if got.as_deref() == Some(want) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the proxy did not present {want} within 15 s (last: {got:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_identity_from_files_and_follows_rotation() {
    let dir = std::env::temp_dir().join(format!(
        "weft-idfiles-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let ca_dir = dir.join("ca");
    let id_dir = dir.join("identity");
    std::fs::create_dir_all(&ca_dir).unwrap();
    std::fs::create_dir_all(&id_dir).unwrap();
    let ca =
        CertificateAuthority::load_or_create_self_signed(&ca_dir, CaConfig::default()).unwrap();
    write_identity(&ca, &id("first"), &id_dir);

    let port = free_port();
    let sds = "{ads: {}}";
    let bootstrap = format!(
        r#"
static_resources:
  listeners:
  - name: inbound
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            alpn_protocols: [istio-peer-exchange, h2, http/1.1]
            tls_certificate_sds_secret_configs: [{{name: default, sds_config: {sds}}}]
            validation_context_sds_secret_config: {{name: ROOTCA, sds_config: {sds}}}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: inbound
          route_config:
            name: r
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{{match: {{prefix: /}}, direct_response: {{status: 200, body: {{inline_string: ok}}}}}}]
          http_filters:
          - {{name: envoy.filters.http.router, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}}
"#,
    );
    let config = dir.join("bootstrap.yaml");
    std::fs::write(&config, bootstrap).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_weft-proxy"))
        .arg("-c")
        .arg(&config)
        .arg("--identity-dir")
        .arg(&id_dir)
        .args(["--concurrency", "1", "--log-level", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start weft-proxy");
    let _proxy = Proxy(child);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();

    // The client: productpage's identity, accepting any SPIFFE id of the mesh's CA.
    let key = WorkloadKey::generate().unwrap();
    let issued = ca
        .sign_csr(
            &key.csr_pem(&id("productpage")).unwrap(),
            &id("productpage"),
            None,
        )
        .unwrap();
    let store = Arc::new(CertStore::new(
        WorkloadCertificate::from_issued(&key, &issued).unwrap(),
    ));
    let client = Arc::new(
        MtlsClient::new(store, AllowedIdentities::any())
            .alpn_protocols(vec![b"istio-http/1.1".to_vec()])
            .build()
            .unwrap(),
    );

    until_presented(addr, &client, "spiffe://cluster.local/ns/default/sa/first").await;
    // Rotation through the files: new handshakes get the new identity.
    write_identity(&ca, &id("second"), &id_dir);
    until_presented(addr, &client, "spiffe://cluster.local/ns/default/sa/second").await;
    let _ = std::fs::remove_dir_all(&dir);
}
