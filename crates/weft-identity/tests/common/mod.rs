//! Shared helpers of the integration tests: temporary directories, workloads issued by a CA,
//! and a real TLS handshake over 127.0.0.1 TCP.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use weft_identity::{
    CertStore, CertificateAuthority, SpiffeId, WorkloadCertificate, WorkloadKey, peer_identity,
};

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "weft-identity-it-{tag}-{}-{:016x}",
            std::process::id(),
            fastrand_u64()
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

pub fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).expect("valid SPIFFE id")
}

/// A workload of `identity` with a fresh key and a certificate from `ca`.
pub fn workload(ca: &CertificateAuthority, identity: &SpiffeId) -> (WorkloadKey, Arc<CertStore>) {
    let key = WorkloadKey::generate().expect("key");
    let csr = key.csr_pem(identity).expect("csr");
    let issued = ca.sign_csr(&csr, identity, None).expect("sign");
    let cert = WorkloadCertificate::from_issued(&key, &issued).expect("workload certificate");
    (key, Arc::new(CertStore::new(cert)))
}

/// What one side saw of a handshake: the peer's SPIFFE id (if any), the negotiated ALPN and
/// the peer's leaf certificate.
#[derive(Debug, Clone)]
pub struct Side {
    pub peer: Option<SpiffeId>,
    pub alpn: Option<Vec<u8>>,
    pub peer_leaf: Option<CertificateDer<'static>>,
}

#[derive(Debug)]
pub struct Outcome {
    pub server: Result<Side, String>,
    pub client: Result<Side, String>,
}

impl Outcome {
    pub fn both_ok(&self) -> bool {
        self.server.is_ok() && self.client.is_ok()
    }
}

const TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one mTLS handshake between `server` and `client` over 127.0.0.1 TCP, then the server
/// sends a greeting that the client reads (so that a client certificate refused by the server
/// shows on the client side too, as TLS 1.3 reports it after the handshake).
pub async fn handshake(server: ServerConfig, client: ClientConfig) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let (_, conn) = tls.get_ref();
        let side = Side {
            peer: peer_identity(conn).ok(),
            alpn: conn.alpn_protocol().map(|p| p.to_vec()),
            peer_leaf: conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.clone().into_owned()),
        };
        tls.write_all(b"hello").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        // Wait for the client to close, so the greeting is not cut off by a reset.
        let mut rest = Vec::new();
        let _ = tls.read_to_end(&mut rest).await;
        Ok::<Side, String>(side)
    });
    let connector = TlsConnector::from(Arc::new(client));
    let client = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let name = ServerName::try_from("outbound_.9080_._.reviews.default.svc.cluster.local")
            .map_err(|e| e.to_string())?;
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (_, conn) = tls.get_ref();
        let side = Side {
            peer: Some(peer_identity(conn).map_err(|e| e.to_string())?),
            alpn: conn.alpn_protocol().map(|p| p.to_vec()),
            peer_leaf: conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.clone().into_owned()),
        };
        let mut greeting = [0u8; 5];
        tls.read_exact(&mut greeting)
            .await
            .map_err(|e| e.to_string())?;
        if &greeting != b"hello" {
            return Err("bad greeting".to_string());
        }
        let _ = tls.shutdown().await;
        Ok(side)
    };
    let client = match tokio::time::timeout(TIMEOUT, client).await {
        Ok(r) => r,
        Err(_) => Err("client timed out".to_string()),
    };
    let server = match tokio::time::timeout(TIMEOUT, server_task).await {
        Ok(Ok(r)) => r,
        Ok(Err(join)) => Err(format!("server task failed: {join}")),
        Err(_) => Err("server timed out".to_string()),
    };
    Outcome { server, client }
}
