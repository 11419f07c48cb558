//! The proxy's own workload identity, fetched from the control plane's certificate service
//! (Istio's `IstioCertificateService/CreateCertificate` on the secure port, over TLS).
//!
//! A key pair is generated in the proxy for every certificate and never leaves it: only the
//! CSR does. The certificate is installed as the SDS secret `default` and the trust bundle as
//! `ROOTCA` (through [`SecretStore::set_workload_certificate`]), then renewed at half life with
//! jitter. A renewal swaps the secrets for new handshakes only, so no connection is dropped.
//! The proxy is not ready (`/ready`) until its first certificate is in.
//!
//! Configured by node metadata in the bootstrap (Istio's agent settings of the same names), or
//! by the command line: `CA_ADDR` (host:port of the secure port), `CA_ROOT_CA` (PEM file of the
//! roots the secure port's certificate chains to), `CA_TOKEN_FILE` (the bootstrap token
//! `weft x token` issued), `SECRET_TTL` (requested lifetime, e.g. `24h`), `TRUST_DOMAIN`
//! (default `cluster.local`), with `NAMESPACE` and `SERVICE_ACCOUNT` naming the identity.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::net::TcpStream;
use weft_identity::{SpiffeId, TrustDomain, WorkloadCertificate, WorkloadKey};
use weft_xds::envoy::config::bootstrap::v3::Bootstrap;

use crate::tls::SecretStore;

pub use weft_identity::api::{
    CREATE_CERTIFICATE_PATH, IstioCertificateRequest, IstioCertificateResponse,
};

/// The name the control plane's certificate is checked against (Istio's istiod service).
pub const CA_SERVER_NAME: &str = weft_identity::api::ISTIOD_SAN;

/// Why the identity could not be configured or fetched.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A setting is missing or malformed.
    #[error("identity setting {field}: {message}")]
    Config {
        /// The metadata key or flag.
        field: &'static str,
        /// What is allowed.
        message: String,
    },
    /// A file could not be read.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The certificate service could not be reached or refused the request.
    #[error("certificate service {addr}: {message}")]
    Rpc {
        /// The CA address.
        addr: String,
        /// What went wrong (the gRPC status message when there is one).
        message: String,
    },
    /// The answer does not make a usable certificate for our key.
    #[error("certificate from {addr} unusable: {message}")]
    BadAnswer {
        /// The CA address.
        addr: String,
        /// What is wrong.
        message: String,
    },
}

/// Where and how the proxy gets its certificate.
#[derive(Clone, Debug)]
pub struct IdentityConfig {
    /// `host:port` of the control plane's secure port.
    pub ca_addr: String,
    /// PEM file with the roots the secure port's certificate chains to.
    pub root_cert: PathBuf,
    /// File holding the bootstrap token (`authorization: Bearer`); without it the proxy
    /// authenticates with the certificate it already holds.
    pub token_file: Option<PathBuf>,
    /// The identity to ask for.
    pub identity: SpiffeId,
    /// Requested lifetime (`None`: the CA's default).
    pub ttl: Option<Duration>,
    /// The name the secure port's certificate must carry.
    pub server_name: String,
}

fn meta_str<'a>(b: &'a Bootstrap, key: &str) -> Option<&'a str> {
    use weft_xds::google::protobuf::value::Kind;
    let md = b.node.as_ref()?.metadata.as_ref()?;
    match md.fields.get(key)?.kind.as_ref()? {
        Kind::StringValue(s) if !s.is_empty() => Some(s.as_str()),
        _ => None,
    }
}

/// Parses `24h`, `90m`, `30s`, `500ms`, `1h30m`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        total += match unit {
            "h" => Duration::from_secs(n.checked_mul(3600)?),
            "m" => Duration::from_secs(n.checked_mul(60)?),
            "s" => Duration::from_secs(n),
            "ms" => Duration::from_millis(n),
            _ => return None,
        };
    }
    (!total.is_zero()).then_some(total)
}

/// Command-line overrides of the bootstrap's identity settings.
#[derive(Clone, Debug, Default)]
pub struct IdentityOverrides {
    /// `--ca-addr`.
    pub ca_addr: Option<String>,
    /// `--ca-root-cert`.
    pub root_cert: Option<PathBuf>,
    /// `--ca-token-file`.
    pub token_file: Option<PathBuf>,
    /// `--secret-ttl`.
    pub ttl: Option<String>,
}

impl IdentityConfig {
    /// Reads the settings from the bootstrap's node metadata, with `overrides` taking
    /// precedence. `None` when no CA address is given (the proxy then has no own identity).
    pub fn from_bootstrap(
        b: &Bootstrap,
        overrides: &IdentityOverrides,
    ) -> Result<Option<IdentityConfig>, IdentityError> {
        let Some(ca_addr) = overrides
            .ca_addr
            .clone()
            .or_else(|| meta_str(b, "CA_ADDR").map(str::to_string))
        else {
            return Ok(None);
        };
        let root_cert = overrides
            .root_cert
            .clone()
            .or_else(|| meta_str(b, "CA_ROOT_CA").map(PathBuf::from))
            .ok_or(IdentityError::Config {
                field: "CA_ROOT_CA",
                message: "the PEM file of the control plane's root is required with CA_ADDR \
                          (`curl http://ADMIN/ca/root`, or the CA directory's root-cert.pem)"
                    .into(),
            })?;
        let token_file = overrides
            .token_file
            .clone()
            .or_else(|| meta_str(b, "CA_TOKEN_FILE").map(PathBuf::from));
        let ttl = match overrides
            .ttl
            .as_deref()
            .or_else(|| meta_str(b, "SECRET_TTL"))
        {
            None => None,
            Some(s) => Some(parse_duration(s).ok_or(IdentityError::Config {
                field: "SECRET_TTL",
                message: format!("{s:?} is not a duration such as 24h, 90m or 30s"),
            })?),
        };
        let td = meta_str(b, "TRUST_DOMAIN").unwrap_or("cluster.local");
        let trust_domain = TrustDomain::new(td).map_err(|e| IdentityError::Config {
            field: "TRUST_DOMAIN",
            message: e.to_string(),
        })?;
        let ns = meta_str(b, "NAMESPACE").ok_or(IdentityError::Config {
            field: "NAMESPACE",
            message: "node metadata NAMESPACE is required to ask for an identity".into(),
        })?;
        let sa = meta_str(b, "SERVICE_ACCOUNT").unwrap_or("default");
        let identity = SpiffeId::new(trust_domain, ns, sa).map_err(|e| IdentityError::Config {
            field: "SERVICE_ACCOUNT",
            message: e.to_string(),
        })?;
        Ok(Some(IdentityConfig {
            ca_addr,
            root_cert,
            token_file,
            identity,
            ttl,
            server_name: CA_SERVER_NAME.to_string(),
        }))
    }
}

/// Opens TLS connections to the certificate service for tonic.
#[derive(Clone)]
struct TlsConnector {
    addr: String,
    server_name: ServerName<'static>,
    config: Arc<ClientConfig>,
}

impl tonic::codegen::Service<http::Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let tcp = TcpStream::connect(&this.addr).await?;
            let _ = tcp.set_nodelay(true);
            let tls = tokio_rustls::TlsConnector::from(this.config)
                .connect(this.server_name, tcp)
                .await?;
            Ok(TokioIo::new(tls))
        })
    }
}

fn rpc_err(addr: &str, message: impl Into<String>) -> IdentityError {
    IdentityError::Rpc {
        addr: addr.to_string(),
        message: message.into(),
    }
}

/// A gRPC channel to the secure port over TLS, checking its certificate against the root file
/// (and the bundle of `current`); `current` is presented as the client certificate when
/// `present` is set. Carries the certificate service and ADS.
pub async fn channel(
    cfg: &IdentityConfig,
    current: Option<&WorkloadCertificate>,
    present: bool,
) -> Result<tonic::transport::Channel, IdentityError> {
    let file = |path: &PathBuf| {
        let p = path.clone();
        move |source| IdentityError::File { path: p, source }
    };
    let roots_pem = std::fs::read(&cfg.root_cert).map_err(file(&cfg.root_cert))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&roots_pem) {
        let c = c.map_err(|e| IdentityError::Config {
            field: "CA_ROOT_CA",
            message: format!("{}: not PEM certificates: {e}", cfg.root_cert.display()),
        })?;
        roots.add(c).map_err(|e| IdentityError::Config {
            field: "CA_ROOT_CA",
            message: format!("{}: {e}", cfg.root_cert.display()),
        })?;
    }
    // The roots learnt with the last certificate count too: after a root rotation the secure
    // port may present a certificate from the new root.
    if let Some(c) = current {
        for r in c.bundle().certs() {
            let _ = roots.add(r.clone());
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| rpc_err(&cfg.ca_addr, e.to_string()))?
        .with_root_certificates(roots);
    let mut tls = match current {
        Some(c) if present => builder
            .with_client_cert_resolver(Arc::new(PresentCurrent(Arc::clone(c.certified_key())))),
        _ => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let server_name =
        ServerName::try_from(cfg.server_name.clone()).map_err(|e| IdentityError::Config {
            field: "CA server name",
            message: e.to_string(),
        })?;
    let connector = TlsConnector {
        addr: cfg.ca_addr.clone(),
        server_name,
        config: Arc::new(tls),
    };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", cfg.ca_addr))
        .map_err(|e| rpc_err(&cfg.ca_addr, format!("not a host:port: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .connect_with_connector(connector)
        .await
        .map_err(|e| {
            let cause = std::error::Error::source(&e)
                .map(|c| format!(": {c}"))
                .unwrap_or_default();
            rpc_err(&cfg.ca_addr, format!("cannot connect: {e}{cause}"))
        })?;
    Ok(channel)
}

/// Asks the certificate service for a certificate for `key`. `current` is presented as the
/// client certificate (renewal without a token).
pub async fn fetch(
    cfg: &IdentityConfig,
    key: &WorkloadKey,
    current: Option<&WorkloadCertificate>,
) -> Result<WorkloadCertificate, IdentityError> {
    let file = |path: &PathBuf| {
        let p = path.clone();
        move |source| IdentityError::File { path: p, source }
    };
    let token = match &cfg.token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(file(p))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let channel = channel(cfg, current, token.is_none()).await?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| rpc_err(&cfg.ca_addr, format!("not ready: {e}")))?;
    let csr = key
        .csr_pem(&cfg.identity)
        .map_err(|e| rpc_err(&cfg.ca_addr, format!("cannot make the CSR: {e}")))?;
    let mut req = tonic::Request::new(IstioCertificateRequest {
        csr,
        validity_duration: cfg.ttl.map_or(0, |d| d.as_secs().max(1) as i64),
        metadata: None,
    });
    if let Some(t) = &token {
        let value = format!("Bearer {t}")
            .parse()
            .map_err(|_| IdentityError::Config {
                field: "CA_TOKEN_FILE",
                message: "the token is not printable ASCII".into(),
            })?;
        req.metadata_mut().insert("authorization", value);
    }
    let path = http::uri::PathAndQuery::from_static(CREATE_CERTIFICATE_PATH);
    let answer: IstioCertificateResponse = grpc
        .unary(req, path, tonic_prost::ProstCodec::default())
        .await
        .map_err(|s| rpc_err(&cfg.ca_addr, format!("{:?}: {}", s.code(), s.message())))?
        .into_inner();
    let bad = |message: String| IdentityError::BadAnswer {
        addr: cfg.ca_addr.clone(),
        message,
    };
    let Some((roots, chain)) = answer.cert_chain.split_last() else {
        return Err(bad("cert_chain is empty".into()));
    };
    if chain.is_empty() {
        return Err(bad("cert_chain holds no leaf certificate".into()));
    }
    let cert = WorkloadCertificate::from_pem(key, &chain.concat(), roots)
        .map_err(|e| bad(e.to_string()))?;
    if cert.identity() != &cfg.identity {
        return Err(bad(format!(
            "issued for {} instead of {}",
            cert.identity(),
            cfg.identity
        )));
    }
    Ok(cert)
}

/// How long to wait before renewing `cert`: half of the lifetime left at `now`, moved by up to
/// ±10 % (`unit` in [0, 1) picks where). The CA backdates certificates for clock skew, so the
/// half life of the whole validity window can already be past for short lifetimes; counting
/// from receipt keeps short-lived certificates renewing at their real half life.
pub fn renewal_wait(cert: &WorkloadCertificate, now: SystemTime, unit: f64) -> Duration {
    let left = cert
        .not_after()
        .duration_since(now)
        .unwrap_or(Duration::ZERO);
    let jitter = (unit.clamp(0.0, 1.0) * 2.0 - 1.0) * weft_identity::workload::ROTATION_JITTER;
    left.mul_f64(weft_identity::workload::ROTATION_FRACTION * (1.0 + jitter))
}

/// Fetches the certificate, installs it, and renews it at half life for as long as the
/// runtime runs. `ready` turns true once the first certificate is installed.
pub async fn run(cfg: IdentityConfig, secrets: Arc<SecretStore>, ready: Arc<AtomicBool>) {
    let mut current: Option<WorkloadCertificate> = None;
    let mut backoff = Duration::from_millis(200);
    loop {
        let key = match WorkloadKey::generate() {
            Ok(k) => k,
            Err(e) => {
                tracing::error!("identity: cannot generate a key: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        match fetch(&cfg, &key, current.as_ref()).await {
            Ok(cert) => {
                if let Err(e) = secrets.set_workload_certificate(&cert) {
                    tracing::error!("identity: cannot install the certificate: {e}");
                } else {
                    tracing::info!(
                        identity = %cert.identity(),
                        not_after = ?cert.not_after(),
                        rotate_at = ?cert.rotate_at(),
                        "identity: workload certificate installed as SDS default and ROOTCA"
                    );
                    ready.store(true, Ordering::Release);
                    backoff = Duration::from_millis(200);
                    let wait = renewal_wait(&cert, SystemTime::now(), fastrand::f64());
                    current = Some(cert);
                    tokio::time::sleep(wait).await;
                    continue;
                }
            }
            Err(e) => tracing::warn!("identity: {e}; retrying in {backoff:?}"),
        }
        // Retry sooner than the certificate expires.
        let mut wait = backoff;
        if let Some(c) = &current
            && let Ok(left) = c.not_after().duration_since(SystemTime::now())
        {
            wait = wait.min(left / 4).max(Duration::from_millis(50));
        }
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// The `SecretsConfigDump` of `/config_dump`: every named certificate and trusted CA with its
/// PEM, never a private key (shown as `[redacted]`, as Istio's agent does).
pub fn secrets_config_dump(secrets: &SecretStore) -> serde_json::Value {
    use base64::Engine as _;
    let b64 = |pem: String| base64::engine::general_purpose::STANDARD.encode(pem.as_bytes());
    let mut active = Vec::new();
    for name in secrets.names() {
        let slot = secrets.slot(&name);
        let secret = if let Some(c) = slot.certificate() {
            serde_json::json!({
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
                "name": name,
                "tls_certificate": {
                    "certificate_chain": {
                        "inline_bytes": b64(weft_identity::pem::certs_to_pem(c.cert.iter())),
                    },
                    "private_key": { "inline_string": "[redacted]" },
                },
            })
        } else if let Some(v) = slot.validation() {
            serde_json::json!({
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
                "name": name,
                "validation_context": {
                    "trusted_ca": {
                        "inline_bytes": b64(weft_identity::pem::certs_to_pem(v.roots().iter())),
                    },
                },
            })
        } else {
            continue;
        };
        active.push(serde_json::json!({
            "name": name,
            "version_info": "",
            "secret": secret,
        }));
    }
    serde_json::json!({
        "@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
        "dynamic_active_secrets": active,
    })
}

/// Presents the certificate the proxy holds now when it renews without a token.
#[derive(Debug)]
struct PresentCurrent(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for PresentCurrent {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Some(Duration::from_secs(86400)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("3d"), None);
    }

    #[test]
    fn request_encodes_istio_field_numbers() {
        let r = IstioCertificateRequest {
            csr: "x".into(),
            validity_duration: 60,
            metadata: None,
        };
        // csr is field 1 (tag 0x0a), validity_duration field 3 (tag 0x18).
        assert_eq!(r.encode_to_vec(), vec![0x0a, 1, b'x', 0x18, 60]);
    }
}
