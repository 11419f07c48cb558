//! The certificate service of the control plane: Istio's
//! `istio.v1.auth.IstioCertificateService/CreateCertificate` on the secure port (15012), over
//! TLS with a serving certificate from the mesh CA (SANs `istiod.istio-system.svc` and the
//! listen address), next to ADS on the same port.
//!
//! A caller proves its identity with a bootstrap token (`authorization: Bearer TOKEN`), issued
//! per workload identity through the admin API (`POST /ca/tokens`) and stored hashed, or with
//! the workload certificate it already holds (a client certificate on the TLS connection, as
//! Istio's agent does when it renews). The CSR must ask for exactly that identity; anything
//! else is refused with `PERMISSION_DENIED`.
//!
//! The messages are written here by hand from the field numbers of Istio's `ca.proto`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use http::StatusCode;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{PrivateKeyDer, pem::PemObject};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::codegen::{BoxFuture, Service, StdError};
use weft_identity::ca::{CaConfig, CertificateAuthority};
use weft_identity::{CaError, SpiffeId, TrustDomain};

pub use weft_identity::api::{
    CREATE_CERTIFICATE_PATH, ISTIOD_SAN, IstioCertificateRequest, IstioCertificateResponse,
};

/// Lifetime of the control plane's own serving certificate; renewed at half life.
pub const SERVING_CERT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// File of the bootstrap tokens (SHA-256 of each token and the identity it proves; mode 0600).
pub const TOKENS_FILE: &str = "tokens.json";

/// Why the certificate service could not start.
#[derive(Debug, thiserror::Error)]
pub enum CaServiceError {
    /// The CA could not be loaded or created.
    #[error("certificate authority in {dir}: {source}")]
    Ca {
        /// The CA directory.
        dir: PathBuf,
        /// The CA's error.
        #[source]
        source: CaError,
    },
    /// The tokens file is unreadable.
    #[error("{path}: {message}")]
    Tokens {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The serving certificate could not be made usable.
    #[error("serving certificate: {0}")]
    Tls(String),
    /// The secure port could not be bound.
    #[error("cannot listen on the secure address {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// One issued token, as stored (never the token itself).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct TokenEntry {
    namespace: String,
    service_account: String,
}

/// Bootstrap tokens by SHA-256, persisted in the CA directory.
#[derive(Debug)]
pub struct TokenStore {
    path: PathBuf,
    /// Hex SHA-256 of a token to the identity it proves; written through to `path`.
    tokens: Mutex<HashMap<String, TokenEntry>>,
}

fn sha256_hex(data: &[u8]) -> String {
    // ring's SHA-256, reached through the TLS suite that uses it (the one crypto provider).
    let rustls::SupportedCipherSuite::Tls13(suite) =
        rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
    else {
        return String::new();
    };
    let hash = suite.common.hash_provider.hash(data);
    hash.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl TokenStore {
    /// Opens (or starts) the token file in `dir`.
    pub fn open(dir: &Path) -> Result<TokenStore, CaServiceError> {
        let path = dir.join(TOKENS_FILE);
        let tokens = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| CaServiceError::Tokens {
                path: path.clone(),
                message: format!("not a token file ({e}); remove it to start over"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => {
                return Err(CaServiceError::Tokens {
                    path,
                    message: e.to_string(),
                });
            }
        };
        Ok(TokenStore {
            path,
            tokens: Mutex::new(tokens),
        })
    }

    /// Issues a new token proving `namespace`/`service_account`; only its hash is kept.
    pub fn issue(&self, namespace: &str, service_account: &str) -> std::io::Result<String> {
        let mut raw = [0u8; 32];
        rustls::crypto::ring::default_provider()
            .secure_random
            .fill(&mut raw)
            .map_err(|_| std::io::Error::other("no secure random source"))?;
        let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        tokens.insert(
            sha256_hex(token.as_bytes()),
            TokenEntry {
                namespace: namespace.to_string(),
                service_account: service_account.to_string(),
            },
        );
        let text = serde_json::to_string_pretty(&*tokens).map_err(std::io::Error::other)?;
        write_private(&self.path, text.as_bytes())?;
        Ok(token)
    }

    /// The identity (`namespace`, `service_account`) a token proves.
    pub fn lookup(&self, token: &str) -> Option<(String, String)> {
        let tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        tokens
            .get(&sha256_hex(token.as_bytes()))
            .map(|e| (e.namespace.clone(), e.service_account.clone()))
    }
}

/// Writes `data` to `path` atomically with mode 0600.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Settings of the certificate service.
#[derive(Clone, Debug)]
pub struct CaOptions {
    /// Where the CA lives: a self-signed root is created here on first start, or Istio's
    /// `cacerts` files are read from here.
    pub dir: PathBuf,
    /// The secure port (TLS: certificates and ADS).
    pub addr: SocketAddr,
    /// Lifetime of workload certificates when a request names none (24 h).
    pub default_ttl: Duration,
    /// The trust domain of the SPIFFE ids.
    pub trust_domain: String,
}

/// The running certificate authority and its secure server.
pub struct CaService {
    ca: Arc<CertificateAuthority>,
    tokens: Arc<TokenStore>,
    trust_domain: TrustDomain,
    /// Lifetime of workload certificates by default; the grace of a root rotation.
    default_ttl: Duration,
    /// What the secure port presents and whom it trusts; rebuilt when the serving certificate
    /// is renewed or the roots change.
    tls: Arc<ArcSwap<ServerConfig>>,
    /// The certificate the secure port presents; kept across a root rotation (proxies that
    /// know only the old root must still reach the CA) and renewed at half life.
    serving: Arc<Mutex<Serving>>,
    addr: SocketAddr,
    /// Stops the gRPC server (taken on shutdown).
    stop: Mutex<Option<oneshot::Sender<()>>>,
    /// The accept loop, the server and the renewal timer; aborted on shutdown.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for CaService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaService")
            .field("addr", &self.addr)
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

/// What a connection to the secure port proved in its TLS handshake.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The client's address.
    pub remote: Option<SocketAddr>,
    /// The SPIFFE id of the client certificate, when one was presented and verified.
    pub identity: Option<SpiffeId>,
}

/// A TLS connection accepted on the secure port.
struct TlsConn {
    io: tokio_rustls::server::TlsStream<TcpStream>,
    info: PeerInfo,
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl tokio::io::AsyncRead for TlsConn {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsConn {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The secure port's own certificate: its chain and key (PKCS#8 PEM).
#[derive(Clone)]
struct Serving {
    chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    key_pem: String,
}

fn issue_serving(ca: &CertificateAuthority, names: &[String]) -> Result<Serving, CaServiceError> {
    let (key_pem, issued) = ca
        .issue_serving_certificate(names, SERVING_CERT_TTL)
        .map_err(|e| CaServiceError::Tls(e.to_string()))?;
    Ok(Serving {
        chain: issued.chain().to_vec(),
        key_pem,
    })
}

/// The TLS settings of the secure port: `serving` presented, client certificates optional and
/// checked against every root of the bundle now.
fn server_config(
    ca: &CertificateAuthority,
    serving: &Serving,
) -> Result<ServerConfig, CaServiceError> {
    let tls = |e: &dyn std::fmt::Display| CaServiceError::Tls(e.to_string());
    let key = PrivateKeyDer::from_pem_slice(serving.key_pem.as_bytes()).map_err(|e| tls(&e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for r in ca.trust_bundle() {
        roots.add(r).map_err(|e| tls(&e))?;
    }
    // A client certificate is optional: a workload without one presents its token instead.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| tls(&e))?;
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(serving.chain.clone(), key)
        .map_err(|e| tls(&e))?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

impl CaService {
    /// Loads or creates the CA in `opts.dir`, opens the token store and starts the secure
    /// server with `ads` (the control plane's ADS service) beside the certificate service.
    pub async fn start(
        opts: &CaOptions,
        ads: weft_xds::server::AdsServer,
    ) -> Result<CaService, CaServiceError> {
        let ca_err = |source| CaServiceError::Ca {
            dir: opts.dir.clone(),
            source,
        };
        let trust_domain =
            TrustDomain::new(&opts.trust_domain).map_err(|e| CaServiceError::Ca {
                dir: opts.dir.clone(),
                source: CaError::InvalidCsr(format!("trust domain {:?}: {e}", opts.trust_domain)),
            })?;
        std::fs::create_dir_all(&opts.dir).map_err(|e| {
            ca_err(CaError::Io {
                path: opts.dir.clone(),
                source: e,
            })
        })?;
        let config = CaConfig {
            trust_domain: trust_domain.clone(),
            default_ttl: opts.default_ttl,
            ..CaConfig::default()
        };
        let dir = opts.dir.clone();
        let ca = tokio::task::spawn_blocking(move || CertificateAuthority::open(&dir, config))
            .await
            .map_err(|e| CaServiceError::Tls(format!("CA load task failed: {e}")))?
            .map_err(ca_err)?;
        let ca = Arc::new(ca);
        let tokens = Arc::new(TokenStore::open(&opts.dir)?);

        let listener = tokio::net::TcpListener::bind(opts.addr)
            .await
            .map_err(|source| CaServiceError::Bind {
                addr: opts.addr,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| CaServiceError::Bind {
                addr: opts.addr,
                source,
            })?;
        let mut names = vec![
            ISTIOD_SAN.to_string(),
            "istiod.istio-system.svc.cluster.local".to_string(),
            "localhost".to_string(),
            addr.ip().to_string(),
        ];
        if addr.ip().is_unspecified() {
            names.push("127.0.0.1".to_string());
        }
        let serving = issue_serving(&ca, &names)?;
        let tls = Arc::new(ArcSwap::from_pointee(server_config(&ca, &serving)?));
        let serving = Arc::new(Mutex::new(serving));

        let (tx, rx) = tokio::sync::mpsc::channel::<Result<TlsConn, std::io::Error>>(64);
        let accept_tls = tls.clone();
        let accept = tokio::spawn(async move {
            loop {
                let (stream, remote) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!("secure port: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let acceptor = tokio_rustls::TlsAcceptor::from(accept_tls.load_full());
                let tx = tx.clone();
                // Handshakes run apart from the accept loop: a slow client holds up nobody.
                tokio::spawn(async move {
                    let hs = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await;
                    let io = match hs {
                        Ok(Ok(io)) => io,
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, "secure port: TLS handshake failed: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%remote, "secure port: TLS handshake timed out");
                            return;
                        }
                    };
                    let identity = io
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|leaf| SpiffeId::from_certificate_der(leaf).ok());
                    let _ = tx
                        .send(Ok(TlsConn {
                            io,
                            info: PeerInfo {
                                remote: Some(remote),
                                identity,
                            },
                        }))
                        .await;
                });
            }
        });

        let svc = CertificateServiceServer {
            inner: Arc::new(Handler {
                ca: ca.clone(),
                tokens: tokens.clone(),
                trust_domain: trust_domain.clone(),
            }),
        };
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let incoming = tokio_stream::wrappers::ReceiverStream::new(rx);
        let server = tokio::spawn(async move {
            let r = tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(Duration::from_secs(30)))
                .add_service(svc)
                .add_service(ads.into_service())
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stop_rx.await;
                })
                .await;
            if let Err(e) = r {
                tracing::error!("secure gRPC server failed: {e}");
            }
        });

        // Renew the serving certificate at half life.
        let renew = {
            let (ca, tls, names, serving) =
                (ca.clone(), tls.clone(), names.clone(), serving.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(SERVING_CERT_TTL / 2).await;
                    let renewed = issue_serving(&ca, &names)
                        .and_then(|s| server_config(&ca, &s).map(|cfg| (s, cfg)));
                    match renewed {
                        Ok((s, cfg)) => {
                            *serving.lock().unwrap_or_else(PoisonError::into_inner) = s;
                            tls.store(Arc::new(cfg));
                        }
                        Err(e) => {
                            tracing::error!("cannot renew the secure port's certificate: {e}")
                        }
                    }
                }
            })
        };
        tracing::info!(%addr, dir = %opts.dir.display(), "certificate service listening (TLS: Istio CA API and ADS)");
        Ok(CaService {
            ca,
            tokens,
            trust_domain,
            default_ttl: opts.default_ttl,
            tls,
            serving,
            addr,
            stop: Mutex::new(Some(stop_tx)),
            tasks: Mutex::new(vec![accept, server, renew]),
        })
    }

    /// The secure port's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The certificate authority.
    pub fn ca(&self) -> &Arc<CertificateAuthority> {
        &self.ca
    }

    /// The bootstrap tokens.
    pub fn tokens(&self) -> &Arc<TokenStore> {
        &self.tokens
    }

    /// The trust bundle (every trusted root) as PEM: what a proxy needs to reach the secure
    /// port.
    pub fn root_pem(&self) -> String {
        self.ca.trust_bundle_pem()
    }

    /// Self-signed CA: rotates the root in two phases so that no proxy ever meets a peer
    /// whose root it does not know. Now: a new root joins the trust bundle served with every
    /// certificate while the old root keeps signing. After `grace` (by default the workload
    /// certificate lifetime: every proxy has renewed by then, at half life): the new root
    /// signs. The old root stays trusted until retired. The secure port keeps its certificate
    /// (from the old root, which every proxy trusts) until its renewal, and accepts client
    /// certificates from both roots from now on.
    pub fn rotate_root(self: &Arc<Self>, grace: Option<Duration>) -> Result<(), CaServiceError> {
        let ca_err = |source| CaServiceError::Ca {
            dir: self.ca.dir().to_path_buf(),
            source,
        };
        self.ca.stage_root().map_err(ca_err)?;
        self.refresh_tls()?;
        let grace = grace.unwrap_or(self.default_ttl);
        if grace.is_zero() {
            self.ca.activate_staged_root().map_err(ca_err)?;
            return Ok(());
        }
        let this = Arc::clone(self);
        let task = tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            match this.ca.activate_staged_root() {
                Ok(_) => tracing::info!("root rotation: the new root signs now"),
                Err(e) => tracing::error!("root rotation: cannot activate the new root: {e}"),
            }
        });
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
        Ok(())
    }

    /// Rebuilds the secure port's TLS settings for the current bundle, keeping its certificate.
    fn refresh_tls(&self) -> Result<(), CaServiceError> {
        let serving = self
            .serving
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        self.tls.store(Arc::new(server_config(&self.ca, &serving)?));
        Ok(())
    }

    /// Issues a token for `namespace`/`service_account`; returns it with the SPIFFE id it
    /// proves.
    pub fn issue_token(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> Result<(String, SpiffeId), String> {
        let id = SpiffeId::new(self.trust_domain.clone(), namespace, service_account)
            .map_err(|e| e.to_string())?;
        let token = self
            .tokens
            .issue(namespace, service_account)
            .map_err(|e| format!("cannot store the token: {e}"))?;
        Ok((token, id))
    }

    /// Stops the secure server.
    pub fn shutdown(&self) {
        if let Some(s) = self
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = s.send(());
        }
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            t.abort();
        }
    }
}

impl Drop for CaService {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Checks the caller and signs.
struct Handler {
    ca: Arc<CertificateAuthority>,
    tokens: Arc<TokenStore>,
    trust_domain: TrustDomain,
}

impl Handler {
    fn authenticate<T>(&self, req: &tonic::Request<T>) -> Result<SpiffeId, tonic::Status> {
        if let Some(value) = req.metadata().get("authorization") {
            let value = value.to_str().map_err(|_| {
                tonic::Status::unauthenticated("authorization metadata is not ASCII")
            })?;
            let Some(token) = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
            else {
                return Err(tonic::Status::unauthenticated(
                    "authorization metadata must be \"Bearer <token>\"",
                ));
            };
            let Some((ns, sa)) = self.tokens.lookup(token.trim()) else {
                return Err(tonic::Status::unauthenticated(
                    "unknown bootstrap token: issue one with `weft x token --namespace NS --service-account SA`",
                ));
            };
            return SpiffeId::new(self.trust_domain.clone(), &ns, &sa)
                .map_err(|e| tonic::Status::internal(format!("stored token identity: {e}")));
        }
        if let Some(id) = req
            .extensions()
            .get::<PeerInfo>()
            .and_then(|p| p.identity.clone())
        {
            return Ok(id);
        }
        Err(tonic::Status::unauthenticated(
            "no credentials: send \"authorization: Bearer <token>\" metadata or a workload client certificate",
        ))
    }

    fn create(
        &self,
        req: tonic::Request<IstioCertificateRequest>,
    ) -> Result<IstioCertificateResponse, tonic::Status> {
        let id = self.authenticate(&req)?;
        let body = req.into_inner();
        let ttl = match body.validity_duration {
            d if d < 0 => {
                return Err(tonic::Status::invalid_argument(format!(
                    "validity_duration {d}: must be zero (the default) or a number of seconds"
                )));
            }
            0 => None,
            d => Some(Duration::from_secs(d as u64)),
        };
        match self.ca.sign_csr(&body.csr, &id, ttl) {
            Ok(issued) => {
                tracing::info!(identity = %id, not_after = ?issued.not_after(), "certificate issued");
                Ok(IstioCertificateResponse {
                    cert_chain: issued.istio_cert_chain(),
                })
            }
            Err(e @ CaError::IdentityMismatch { .. }) => {
                tracing::warn!(identity = %id, "CSR refused: {e}");
                Err(tonic::Status::permission_denied(e.to_string()))
            }
            Err(e @ (CaError::InvalidCsr(_) | CaError::WeakKey(_) | CaError::BadTtl { .. })) => {
                Err(tonic::Status::invalid_argument(e.to_string()))
            }
            Err(e) => Err(tonic::Status::unavailable(e.to_string())),
        }
    }
}

/// The tonic service of `istio.v1.auth.IstioCertificateService`.
#[derive(Clone)]
struct CertificateServiceServer {
    inner: Arc<Handler>,
}

impl tonic::server::NamedService for CertificateServiceServer {
    const NAME: &'static str = "istio.v1.auth.IstioCertificateService";
}

struct CreateCertificate(Arc<Handler>);

impl tonic::server::UnaryService<IstioCertificateRequest> for CreateCertificate {
    type Response = IstioCertificateResponse;
    type Future = BoxFuture<tonic::Response<IstioCertificateResponse>, tonic::Status>;
    fn call(&mut self, request: tonic::Request<IstioCertificateRequest>) -> Self::Future {
        let h = self.0.clone();
        Box::pin(async move {
            // Signing is CPU work; keep it off the I/O threads.
            tokio::task::spawn_blocking(move || h.create(request))
                .await
                .map_err(|e| tonic::Status::internal(format!("signing task failed: {e}")))?
                .map(tonic::Response::new)
        })
    }
}

impl<B> Service<http::Request<B>> for CertificateServiceServer
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() == CREATE_CERTIFICATE_PATH {
            let method = CreateCertificate(self.inner.clone());
            return Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(method, req).await)
            });
        }
        Box::pin(async move {
            let mut response = http::Response::new(tonic::body::Body::default());
            response.headers_mut().insert(
                tonic::Status::GRPC_STATUS,
                (tonic::Code::Unimplemented as i32).into(),
            );
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                tonic::metadata::GRPC_CONTENT_TYPE,
            );
            Ok(response)
        })
    }
}

/// Body of `POST /ca/tokens`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequest {
    /// The workload's namespace.
    pub namespace: String,
    /// The workload's service account.
    pub service_account: String,
}

/// Answer of `POST /ca/tokens`.
#[derive(Debug, Deserialize, Serialize)]
pub struct TokenAnswer {
    /// The bearer token (shown once; only its hash is stored).
    pub token: String,
    /// The SPIFFE id it proves.
    pub identity: String,
}

type ApiError = (StatusCode, Json<serde_json::Value>);

fn api_error(status: StatusCode, message: impl Into<String>) -> ApiError {
    (status, Json(serde_json::json!({ "error": message.into() })))
}

/// The admin API routes of the CA: `POST /ca/tokens`, `GET /ca/root`, `POST /ca/rotate-root`.
pub fn router(ca: Arc<CaService>) -> Router {
    Router::new()
        .route("/ca/tokens", post(issue_token))
        .route("/ca/root", get(root))
        .route("/ca/rotate-root", post(rotate_root))
        .with_state(ca)
}

async fn issue_token(
    State(ca): State<Arc<CaService>>,
    body: axum::body::Bytes,
) -> Result<Json<TokenAnswer>, ApiError> {
    // Any content type: the body is JSON `{"namespace": NS, "serviceAccount": SA}`.
    let req: TokenRequest = serde_json::from_slice(&body).map_err(|e| {
        api_error(
            StatusCode::BAD_REQUEST,
            format!("body: {e}; expected {{\"namespace\": NS, \"serviceAccount\": SA}}"),
        )
    })?;
    let (token, id) = ca
        .issue_token(&req.namespace, &req.service_account)
        .map_err(|e| api_error(StatusCode::BAD_REQUEST, e))?;
    Ok(Json(TokenAnswer {
        token,
        identity: id.to_uri(),
    }))
}

async fn root(State(ca): State<Arc<CaService>>) -> String {
    ca.root_pem()
}

/// Query of `POST /ca/rotate-root`.
#[derive(Debug, Deserialize)]
struct RotateQuery {
    /// How long the new root is trusted before it signs (`30s`, `12h`; default: the workload
    /// certificate lifetime).
    grace: Option<String>,
}

async fn rotate_root(
    State(ca): State<Arc<CaService>>,
    axum::extract::Query(q): axum::extract::Query<RotateQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let grace = match q.grace.as_deref() {
        None => None,
        Some("0") => Some(Duration::ZERO),
        Some(g) => Some(parse_grace(g).ok_or_else(|| {
            api_error(
                StatusCode::BAD_REQUEST,
                format!("grace {g:?}: expected a duration such as 30s, 90m or 12h"),
            )
        })?),
    };
    tokio::task::spawn_blocking(move || ca.rotate_root(grace).map(|()| ca.ca.trust_bundle().len()))
        .await
        .map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map(|roots| Json(serde_json::json!({ "roots": roots })))
        .map_err(|e| api_error(StatusCode::CONFLICT, e.to_string()))
}

fn parse_grace(s: &str) -> Option<Duration> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = n.parse().ok()?;
    match unit {
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n * 60)),
        "h" => Some(Duration::from_secs(n * 3600)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stored_hashed_and_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("weft-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let store = TokenStore::open(&dir).expect("open");
        let t = store.issue("default", "reviews").expect("issue");
        assert_eq!(t.len(), 64);
        assert_eq!(
            store.lookup(&t),
            Some(("default".to_string(), "reviews".to_string()))
        );
        assert_eq!(store.lookup("other"), None);
        let text = std::fs::read_to_string(dir.join(TOKENS_FILE)).expect("file");
        assert!(!text.contains(&t));
        assert!(text.contains(&sha256_hex(t.as_bytes())));
        let again = TokenStore::open(&dir).expect("reopen");
        assert!(again.lookup(&t).is_some());
        // Known SHA-256 test vector.
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
