//! The certificate authority the control plane runs to serve Istio's certificate API.
//!
//! Two ways to get one, as in Istio:
//! - **self-signed** ([`CertificateAuthority::load_or_create_self_signed`]): on first start a root
//!   is generated and persisted to a directory (`ca-key.pem` 0600, `ca-cert.pem` and
//!   `root-cert.pem` 0644, atomic writes); later starts reload it.
//! - **plugged-in** ([`CertificateAuthority::load_plugged_in`]): a directory in Istio's `cacerts`
//!   layout (`ca-cert.pem`, `ca-key.pem`, `root-cert.pem`, `cert-chain.pem`), where an
//!   intermediate CA signs and the chain up to the root is handed out with each certificate.
//!
//! [`CertificateAuthority::sign_csr`] issues workload certificates for the identity the caller
//! proved. Root rotation ([`CertificateAuthority::rotate_root`]) adds a new root to the trust
//! bundle and signs with it, while the old root stays trusted until
//! [`CertificateAuthority::retire_root`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use crate::pem_files::{
    self, CERT_FILE_MODE, KEY_FILE_MODE, cert_public_key_raw, cert_to_pem, certs_to_pem,
    parse_certs_pem, parse_private_key_pem, write_atomic,
};
use crate::spiffe::{SpiffeId, TrustDomain};
use crate::trust::{TrustBundle, Usage};

/// File holding the signing CA's certificate (Istio's `cacerts` name).
pub const CA_CERT_FILE: &str = "ca-cert.pem";
/// File holding the signing CA's private key; always mode 0600.
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// File holding the trusted roots (the trust bundle), one or more certificates.
pub const ROOT_CERT_FILE: &str = "root-cert.pem";
/// File holding the chain from `ca-cert.pem` up to the root (plugged-in CA only).
pub const CERT_CHAIN_FILE: &str = "cert-chain.pem";

/// Istio's workload certificate lifetime.
pub const DEFAULT_WORKLOAD_TTL: Duration = Duration::from_secs(24 * 3600);
/// Istio's default `max-workload-cert-ttl` (90 days).
pub const DEFAULT_MAX_WORKLOAD_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
/// How far in the past a certificate's validity starts, so that peers whose clocks are a little
/// behind accept it.
pub const DEFAULT_BACKDATE: Duration = Duration::from_secs(5 * 60);
/// Lifetime of a generated self-signed root (Istio's 10 years).
pub const DEFAULT_ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Why the CA could not load, persist or sign.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A CA file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A CA file exists but its content is unusable.
    #[error("{path}: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The plugged-in CA directory is incomplete or inconsistent.
    #[error("plugged-in CA in {dir}: {reason}")]
    BadPluggedIn {
        /// The `cacerts` directory.
        dir: PathBuf,
        /// What is wrong, and which file to fix.
        reason: String,
    },
    /// The CSR is not PEM, not a PKCS#10 request, or its signature does not verify.
    #[error("invalid CSR: {0}")]
    InvalidCsr(String),
    /// The CSR asks for another identity than the one the caller proved.
    #[error(
        "CSR asks for {requested:?} but the caller authenticated as {proved}: a CSR must carry exactly the caller's SPIFFE id as its only SAN"
    )]
    IdentityMismatch {
        /// The identity the caller proved.
        proved: String,
        /// The SANs the CSR asked for.
        requested: Vec<String>,
    },
    /// The CSR's public key is of a kind or size this CA does not sign.
    #[error("CSR public key refused: {0}")]
    WeakKey(String),
    /// The requested lifetime is zero or above the configured maximum.
    #[error(
        "requested certificate lifetime {requested:?} is not allowed: it must be above zero and at most {max:?}"
    )]
    BadTtl {
        /// The requested lifetime.
        requested: Duration,
        /// The configured maximum.
        max: Duration,
    },
    /// The operation needs a self-signed CA.
    #[error(
        "{0}: this CA is plugged in; rotate it by updating the cacerts directory and calling reload"
    )]
    NotSelfSigned(&'static str),
    /// The signing CA (or a certificate above it) has expired or is about to, so no usable
    /// certificate can be issued.
    #[error(
        "the signing CA certificate or its chain has expired: rotate the root (self-signed) or install new cacerts (plugged-in)"
    )]
    CaExpired,
    /// A root cannot be retired.
    #[error("cannot retire root: {0}")]
    Retire(String),
    /// rcgen refused to build a certificate.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// The newly loaded or generated CA does not produce certificates that verify.
    #[error(
        "CA self-check failed: a test certificate does not verify against the trust bundle: {0}"
    )]
    SelfCheck(String),
}

/// Tunables of the CA; the defaults are Istio's.
#[derive(Debug, Clone)]
pub struct CaConfig {
    /// The trust domain whose ids this CA signs, and the organization of a generated root.
    pub trust_domain: TrustDomain,
    /// Lifetime of a workload certificate when the request names none (24 h).
    pub default_ttl: Duration,
    /// Longest lifetime a request may ask for (90 days).
    pub max_ttl: Duration,
    /// How far in the past validity starts, for clock skew (5 min).
    pub backdate: Duration,
    /// Lifetime of a generated self-signed root (10 years).
    pub root_ttl: Duration,
}

impl Default for CaConfig {
    fn default() -> Self {
        Self {
            trust_domain: TrustDomain::default(),
            default_ttl: DEFAULT_WORKLOAD_TTL,
            max_ttl: DEFAULT_MAX_WORKLOAD_TTL,
            backdate: DEFAULT_BACKDATE,
            root_ttl: DEFAULT_ROOT_TTL,
        }
    }
}

/// Where the CA's signing key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaMode {
    /// A root generated and persisted by weft itself.
    SelfSigned,
    /// An operator-provided intermediate in Istio's `cacerts` layout.
    PluggedIn,
}

/// A workload certificate as issued: the chain to present and the roots to trust.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    /// Never empty: the leaf first, then the intermediates up to (not including) the root.
    chain: Vec<CertificateDer<'static>>,
    roots: Vec<CertificateDer<'static>>,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl IssuedCertificate {
    /// The workload's own certificate.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    /// The chain to present: the leaf first, then the intermediates up to (not including)
    /// the root.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The trust bundle: every root currently trusted.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// Start of the leaf's validity.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// End of the leaf's validity.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The chain (leaf, intermediates) as one PEM string each.
    pub fn chain_pem(&self) -> Vec<String> {
        self.chain.iter().map(cert_to_pem).collect()
    }

    /// The trust bundle as one PEM string.
    pub fn roots_pem(&self) -> String {
        certs_to_pem(&self.roots)
    }

    /// The `cert_chain` of Istio's `CreateCertificateResponse`: the leaf, each intermediate, and
    /// last the root certificates (all of them in one PEM string, as Istio's agent expects).
    pub fn istio_cert_chain(&self) -> Vec<String> {
        let mut out = self.chain_pem();
        out.push(self.roots_pem());
        out
    }
}

/// The key and certificate that sign, and what goes with them.
struct Signer {
    /// The signing key and the issuer name/key id taken from the signing certificate.
    issuer: Issuer<'static, KeyPair>,
    /// The signing certificate (the root itself when self-signed).
    cert: CertificateDer<'static>,
    /// Certificates to append after a leaf: the signing certificate and any intermediates above
    /// it, never a root. Empty when a root signs.
    intermediates: Vec<CertificateDer<'static>>,
    /// No leaf outlives its issuers.
    not_after: SystemTime,
}

struct CaState {
    /// Shared so that retiring a root keeps the same signer without copying its key.
    signer: Arc<Signer>,
    roots: Vec<CertificateDer<'static>>,
}

/// The certificate authority: signs workload CSRs and owns the trust bundle.
///
/// Reads are lock-free (the state is behind an `ArcSwap`), so signing never waits on a rotation;
/// rotations are serialized by a mutex.
pub struct CertificateAuthority {
    config: CaConfig,
    mode: CaMode,
    dir: PathBuf,
    state: ArcSwap<CaState>,
    /// Serializes rotation, retirement and reload, which read-modify-write the state and the
    /// files in `dir`.
    write_lock: Mutex<()>,
    /// A root already in the trust bundle that does not sign yet (first phase of a staged
    /// rotation), with its key; held in memory only.
    staged: Mutex<Option<Arc<Signer>>>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("mode", &self.mode)
            .field("dir", &self.dir)
            .field("trust_domain", &self.config.trust_domain)
            .field("roots", &self.state.load().roots.len())
            .finish()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_optional(path: &Path) -> Result<Option<String>, CaError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

fn bad_file(path: &Path, reason: impl Into<String>) -> CaError {
    CaError::BadFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn random_serial() -> SerialNumber {
    let mut bytes: Vec<u8> = (0..16).map(|_| fastrand::u8(..)).collect();
    // Positive and without a leading zero byte, as RFC 5280 wants.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from(bytes)
}

fn is_self_issued(der: &[u8]) -> bool {
    x509_parser::certificate::X509Certificate::from_der(der)
        .map(|(_, c)| c.subject().as_raw() == c.issuer().as_raw())
        .unwrap_or(false)
}

fn signer_from(
    key: KeyPair,
    cert: CertificateDer<'static>,
    intermediates: Vec<CertificateDer<'static>>,
    cert_path: &Path,
) -> Result<Signer, CaError> {
    check_subject_encodable(&cert).map_err(|reason| bad_file(cert_path, reason))?;
    let issuer = Issuer::from_ca_cert_der(&cert, key)
        .map_err(|e| bad_file(cert_path, format!("cannot use as an issuer: {e}")))?;
    let mut not_after = pem_files::cert_validity(&cert)
        .map_err(|e| bad_file(cert_path, e))?
        .1;
    for c in &intermediates {
        let (_, na) = pem_files::cert_validity(c).map_err(|e| bad_file(cert_path, e))?;
        not_after = not_after.min(na);
    }
    Ok(Signer {
        issuer,
        cert,
        intermediates,
        not_after,
    })
}

/// rcgen re-encodes the issuer name from the CA certificate's subject; it supports one
/// attribute per RDN and panics on an empty RDN, so such names are refused here first.
fn check_subject_encodable(cert: &CertificateDer<'_>) -> Result<(), String> {
    let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(cert)
        .map_err(|e| format!("cannot parse certificate: {e}"))?;
    if parsed.subject().iter().any(|rdn| rdn.iter().count() != 1) {
        return Err(
            "the subject has an empty or multi-valued RDN, which cannot be used as an issuer name"
                .to_string(),
        );
    }
    Ok(())
}

fn key_matches(key: &KeyPair, cert: &CertificateDer<'_>) -> bool {
    cert_public_key_raw(cert)
        .map(|raw| raw == key.public_key_raw())
        .unwrap_or(false)
}

impl CertificateAuthority {
    /// Loads the self-signed CA persisted in `dir`, or generates a root and persists it there
    /// when `dir` holds none yet.
    pub fn load_or_create_self_signed(
        dir: impl AsRef<Path>,
        config: CaConfig,
    ) -> Result<Self, CaError> {
        let dir = dir.as_ref().to_path_buf();
        let key_path = dir.join(CA_KEY_FILE);
        let state = match read_optional(&key_path)? {
            Some(key_pem) => Self::load_self_signed_state(&dir, &key_pem)?,
            None => {
                std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
                let (key, cert) = generate_root(&config)?;
                let state = CaState {
                    roots: vec![cert.clone()],
                    signer: Arc::new(signer_from(key, cert, Vec::new(), &dir.join(CA_CERT_FILE))?),
                };
                persist_self_signed(&dir, &state)?;
                tracing::info!(dir = %dir.display(), "generated a self-signed root CA");
                state
            }
        };
        let ca = Self {
            config,
            mode: CaMode::SelfSigned,
            dir,
            state: ArcSwap::from_pointee(state),
            write_lock: Mutex::new(()),
            staged: Mutex::new(None),
        };
        ca.self_check(&ca.state.load())?;
        Ok(ca)
    }

    fn load_self_signed_state(dir: &Path, key_pem: &str) -> Result<CaState, CaError> {
        let key_path = dir.join(CA_KEY_FILE);
        let cert_path = dir.join(CA_CERT_FILE);
        let roots_path = dir.join(ROOT_CERT_FILE);
        let key = parse_private_key_pem(key_pem).map_err(|e| bad_file(&key_path, e))?;
        let mut roots = match read_optional(&roots_path)? {
            Some(text) => parse_certs_pem(&text).map_err(|e| bad_file(&roots_path, e))?,
            None => Vec::new(),
        };
        let ca_cert = match read_optional(&cert_path)? {
            Some(text) => parse_certs_pem(&text)
                .map_err(|e| bad_file(&cert_path, e))?
                .into_iter()
                .next(),
            None => None,
        };
        // The files are replaced one at a time; after a crash in the middle of a rotation the
        // key may be newer than ca-cert.pem, and its root is then found in the bundle.
        let cert = ca_cert
            .into_iter()
            .chain(roots.iter().cloned())
            .find(|c| key_matches(&key, c))
            .ok_or_else(|| {
                bad_file(
                    &key_path,
                    format!(
                        "no certificate in {CA_CERT_FILE} or {ROOT_CERT_FILE} matches this key"
                    ),
                )
            })?;
        if !roots.contains(&cert) {
            roots.push(cert.clone());
        }
        Ok(CaState {
            signer: Arc::new(signer_from(key, cert, Vec::new(), &cert_path)?),
            roots,
        })
    }

    /// Loads a plugged-in CA from a directory in Istio's `cacerts` layout: `ca-cert.pem` (the
    /// signing CA), `ca-key.pem` (its key), `root-cert.pem` (one or more roots) and
    /// `cert-chain.pem` (the chain from `ca-cert.pem` up to the root). The key must match the
    /// certificate and the chain must verify against the roots, or loading fails with the file
    /// to fix.
    pub fn load_plugged_in(dir: impl AsRef<Path>, config: CaConfig) -> Result<Self, CaError> {
        let dir = dir.as_ref().to_path_buf();
        let state = Self::load_plugged_in_state(&dir)?;
        let ca = Self {
            config,
            mode: CaMode::PluggedIn,
            dir,
            state: ArcSwap::from_pointee(state),
            write_lock: Mutex::new(()),
            staged: Mutex::new(None),
        };
        ca.self_check(&ca.state.load())?;
        Ok(ca)
    }

    fn load_plugged_in_state(dir: &Path) -> Result<CaState, CaError> {
        let bad = |reason: String| CaError::BadPluggedIn {
            dir: dir.to_path_buf(),
            reason,
        };
        let read = |name: &str| -> Result<String, CaError> {
            read_optional(&dir.join(name))?.ok_or_else(|| bad(format!("{name} is missing")))
        };
        let key_path = dir.join(CA_KEY_FILE);
        let cert_path = dir.join(CA_CERT_FILE);
        let roots_path = dir.join(ROOT_CERT_FILE);
        let chain_path = dir.join(CERT_CHAIN_FILE);
        let key = parse_private_key_pem(&read(CA_KEY_FILE)?).map_err(|e| bad_file(&key_path, e))?;
        let cert = parse_certs_pem(&read(CA_CERT_FILE)?)
            .map_err(|e| bad_file(&cert_path, e))?
            .remove(0);
        let roots =
            parse_certs_pem(&read(ROOT_CERT_FILE)?).map_err(|e| bad_file(&roots_path, e))?;
        let chain = match read_optional(&chain_path)? {
            Some(text) if !text.trim().is_empty() => {
                parse_certs_pem(&text).map_err(|e| bad_file(&chain_path, e))?
            }
            _ => vec![cert.clone()],
        };
        if !key_matches(&key, &cert) {
            return Err(bad(format!(
                "{CA_KEY_FILE} is not the private key of {CA_CERT_FILE}"
            )));
        }
        // Hand out the signing certificate and every intermediate above it, never a root.
        let mut intermediates: Vec<CertificateDer<'static>> = Vec::new();
        if !roots.contains(&cert) && !is_self_issued(&cert) {
            intermediates.push(cert.clone());
        }
        for c in chain {
            if c != cert
                && !roots.contains(&c)
                && !is_self_issued(&c)
                && !intermediates.contains(&c)
            {
                intermediates.push(c);
            }
        }
        Ok(CaState {
            signer: Arc::new(signer_from(key, cert, intermediates, &cert_path)?),
            roots,
        })
    }

    /// Loads the CA of `dir` the way Istio chooses: a plugged-in CA when `dir` holds
    /// `cert-chain.pem` (Istio's `cacerts`), otherwise the self-signed CA (created when absent).
    pub fn open(dir: impl AsRef<Path>, config: CaConfig) -> Result<Self, CaError> {
        let dir = dir.as_ref();
        if dir.join(CERT_CHAIN_FILE).exists() {
            Self::load_plugged_in(dir, config)
        } else {
            Self::load_or_create_self_signed(dir, config)
        }
    }

    /// Re-reads the directory: for a plugged-in CA this is how an operator's new `cacerts`
    /// (a new intermediate, a root bundle with old and new roots) is taken in.
    pub fn reload(&self) -> Result<(), CaError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let state = match self.mode {
            CaMode::PluggedIn => Self::load_plugged_in_state(&self.dir)?,
            CaMode::SelfSigned => {
                let key_path = self.dir.join(CA_KEY_FILE);
                let key_pem = read_optional(&key_path)?
                    .ok_or_else(|| bad_file(&key_path, "the CA key file disappeared"))?;
                Self::load_self_signed_state(&self.dir, &key_pem)?
            }
        };
        self.self_check(&state)?;
        self.state.store(Arc::new(state));
        Ok(())
    }

    /// Whether the CA is self-signed or plugged in.
    pub fn mode(&self) -> CaMode {
        self.mode
    }

    /// The configuration the CA runs with.
    pub fn config(&self) -> &CaConfig {
        &self.config
    }

    /// The directory the CA was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every root currently trusted: what workloads must put in their trust bundle.
    pub fn trust_bundle(&self) -> Vec<CertificateDer<'static>> {
        self.state.load().roots.clone()
    }

    /// The trust bundle as PEM (Istio's `root-cert.pem`).
    pub fn trust_bundle_pem(&self) -> String {
        certs_to_pem(&self.state.load().roots)
    }

    /// The certificate of the CA that signs now (a root when self-signed, the intermediate
    /// when plugged in).
    pub fn signing_certificate(&self) -> CertificateDer<'static> {
        self.state.load().signer.cert.clone()
    }

    /// Signs a workload CSR (PEM, PKCS#10) for `identity`, the SPIFFE id the caller proved
    /// (by its current certificate or its token).
    ///
    /// The CSR's signature must verify, and its SANs must be exactly `identity`: a CSR asking
    /// for anything else is refused. `ttl` is the requested lifetime (`None`: the default
    /// 24 h); it may not exceed the configured maximum. The certificate's validity starts a
    /// little in the past for clock skew and never outlasts the issuing CA.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        identity: &SpiffeId,
        ttl: Option<Duration>,
    ) -> Result<IssuedCertificate, CaError> {
        let ttl = ttl.unwrap_or(self.config.default_ttl);
        if ttl.is_zero() || ttl > self.config.max_ttl {
            return Err(CaError::BadTtl {
                requested: ttl,
                max: self.config.max_ttl,
            });
        }
        let now = SystemTime::now();
        if self.state.load().signer.not_after <= now {
            return Err(CaError::CaExpired);
        }
        let not_before = now.checked_sub(self.config.backdate).unwrap_or(now);
        self.sign_csr_inner(csr_pem, identity, not_before, now + ttl)
    }

    /// Test hook: signs with an explicit validity window, e.g. one entirely in the past, to
    /// exercise expiry handling. Not for production use: it skips the lifetime checks.
    #[doc(hidden)]
    pub fn sign_csr_with_validity_for_tests(
        &self,
        csr_pem: &str,
        identity: &SpiffeId,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<IssuedCertificate, CaError> {
        self.sign_csr_inner(csr_pem, identity, not_before, not_after)
    }

    fn sign_csr_inner(
        &self,
        csr_pem: &str,
        identity: &SpiffeId,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<IssuedCertificate, CaError> {
        let public_key = check_csr(csr_pem, identity)?;
        let state = self.state.load();
        let not_after = not_after.min(state.signer.not_after);
        if not_after <= not_before {
            return Err(CaError::CaExpired);
        }
        let leaf = issue_leaf(&state.signer, &public_key, identity, not_before, not_after)?;
        let mut chain = vec![leaf];
        chain.extend(state.signer.intermediates.iter().cloned());
        Ok(IssuedCertificate {
            chain,
            roots: state.roots.clone(),
            not_before: truncate_to_seconds(not_before),
            not_after: truncate_to_seconds(not_after),
        })
    }

    /// Issues a serving certificate for the control plane itself (Istio's istiod certificate):
    /// a fresh key made here, DNS and IP SANs from `names` (each parsed as an IP address when
    /// it is one), server and client usage, valid for `ttl` (never beyond the signing CA).
    /// Returns the key (PKCS#8 PEM) and the certificate with its chain and the trust bundle.
    pub fn issue_serving_certificate(
        &self,
        names: &[String],
        ttl: Duration,
    ) -> Result<(String, IssuedCertificate), CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let state = self.state.load();
        let now = SystemTime::now();
        let not_before = now.checked_sub(self.config.backdate).unwrap_or(now);
        let not_after = (now + ttl).min(state.signer.not_after);
        if not_after <= now {
            return Err(CaError::CaExpired);
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        for n in names {
            params
                .subject_alt_names
                .push(match n.parse::<std::net::IpAddr>() {
                    Ok(ip) => rcgen::SanType::IpAddress(ip),
                    Err(_) => rcgen::SanType::DnsName(n.as_str().try_into().map_err(|e| {
                        CaError::InvalidCsr(format!("serving certificate name {n:?}: {e}"))
                    })?),
                });
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let cert = params.signed_by(&key, &state.signer.issuer)?;
        let mut chain = vec![cert.der().clone()];
        chain.extend(state.signer.intermediates.iter().cloned());
        Ok((
            pem_files::key_to_pem(&key),
            IssuedCertificate {
                chain,
                roots: state.roots.clone(),
                not_before: truncate_to_seconds(not_before),
                not_after: truncate_to_seconds(not_after),
            },
        ))
    }

    /// Self-signed only: generates a new root, adds it to the trust bundle (the old roots stay
    /// trusted) and signs with it from now on. Persisted before it takes effect. Workloads pick
    /// up the new bundle with their next certificate; retire the old root with
    /// [`retire_root`](Self::retire_root) once every workload has rotated.
    pub fn rotate_root(&self) -> Result<CertificateDer<'static>, CaError> {
        if self.mode != CaMode::SelfSigned {
            return Err(CaError::NotSelfSigned("rotate_root"));
        }
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let (key, cert) = generate_root(&self.config)?;
        let mut roots = self.state.load().roots.clone();
        roots.push(cert.clone());
        let state = CaState {
            signer: Arc::new(signer_from(
                key,
                cert.clone(),
                Vec::new(),
                &self.dir.join(CA_CERT_FILE),
            )?),
            roots,
        };
        self.self_check(&state)?;
        persist_self_signed(&self.dir, &state)?;
        self.state.store(Arc::new(state));
        tracing::info!(dir = %self.dir.display(), "rotated the self-signed root; the old root stays trusted until retired");
        Ok(cert)
    }

    /// Self-signed only, first phase of a rotation that never leaves a workload unable to
    /// verify a peer: generates a new root and adds it to the trust bundle (persisted) while
    /// the current root keeps signing. Workloads take the new bundle with their next
    /// certificate; once every workload has renewed, [`activate_staged_root`](Self::activate_staged_root)
    /// makes the new root sign. The staged key is held in memory only: after a restart, stage
    /// again (the bundle then holds one more root until retired).
    pub fn stage_root(&self) -> Result<CertificateDer<'static>, CaError> {
        if self.mode != CaMode::SelfSigned {
            return Err(CaError::NotSelfSigned("stage_root"));
        }
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let (key, cert) = generate_root(&self.config)?;
        let staged = Arc::new(signer_from(
            key,
            cert.clone(),
            Vec::new(),
            &self.dir.join(CA_CERT_FILE),
        )?);
        let current = self.state.load();
        let mut roots = current.roots.clone();
        roots.push(cert.clone());
        let state = CaState {
            signer: current.signer.clone(),
            roots,
        };
        // The staged root must produce certificates that verify against the new bundle.
        self.self_check(&CaState {
            signer: staged.clone(),
            roots: state.roots.clone(),
        })?;
        persist_self_signed(&self.dir, &state)?;
        self.state.store(Arc::new(state));
        *self.staged.lock().unwrap_or_else(|p| p.into_inner()) = Some(staged);
        tracing::info!(dir = %self.dir.display(), "staged a new root: trusted now, signing after activation");
        Ok(cert)
    }

    /// Second phase of a staged rotation: the staged root signs from now on (persisted); the
    /// old root stays trusted until retired.
    pub fn activate_staged_root(&self) -> Result<CertificateDer<'static>, CaError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some(staged) = self.staged.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Err(CaError::Retire(
                "no staged root to activate: stage one first".to_string(),
            ));
        };
        let current = self.state.load();
        let state = CaState {
            signer: staged.clone(),
            roots: current.roots.clone(),
        };
        persist_self_signed(&self.dir, &state)?;
        self.state.store(Arc::new(state));
        tracing::info!(dir = %self.dir.display(), "the staged root signs now");
        Ok(staged.cert.clone())
    }

    /// Self-signed only: removes a root from the trust bundle. The root that signs now cannot be
    /// retired. Certificates chaining to the retired root stop verifying at workloads that take
    /// the new bundle.
    pub fn retire_root(&self, root: &CertificateDer<'_>) -> Result<(), CaError> {
        if self.mode != CaMode::SelfSigned {
            return Err(CaError::NotSelfSigned("retire_root"));
        }
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.state.load();
        if current.signer.cert.as_ref() == root.as_ref() {
            return Err(CaError::Retire(
                "it is the root that signs now; rotate first".to_string(),
            ));
        }
        if !current.roots.iter().any(|r| r.as_ref() == root.as_ref()) {
            return Err(CaError::Retire("it is not in the trust bundle".to_string()));
        }
        let state = CaState {
            signer: current.signer.clone(),
            roots: current
                .roots
                .iter()
                .filter(|r| r.as_ref() != root.as_ref())
                .cloned()
                .collect(),
        };
        persist_self_signed(&self.dir, &state)?;
        self.state.store(Arc::new(state));
        Ok(())
    }

    /// Issues a throwaway certificate and verifies it against the bundle, so that a CA whose
    /// chain, names or key do not fit together fails at load, not at the first workload.
    fn self_check(&self, state: &CaState) -> Result<(), CaError> {
        let probe_key = KeyPair::generate().map_err(CaError::Generate)?;
        let id = SpiffeId::new(
            self.config.trust_domain.clone(),
            "weft-system",
            "ca-self-check",
        )
        .map_err(|e| CaError::SelfCheck(e.to_string()))?;
        let now = SystemTime::now();
        let leaf = issue_leaf(
            &state.signer,
            &probe_key,
            &id,
            now.checked_sub(Duration::from_secs(60)).unwrap_or(now),
            (now + Duration::from_secs(3600)).min(state.signer.not_after),
        )?;
        let bundle =
            TrustBundle::new(state.roots.clone()).map_err(|e| CaError::SelfCheck(e.to_string()))?;
        bundle
            .verify(
                &leaf,
                &state.signer.intermediates,
                UnixTime::now(),
                Usage::Client,
            )
            .map_err(|e| CaError::SelfCheck(e.to_string()))?;
        Ok(())
    }
}

fn truncate_to_seconds(t: SystemTime) -> SystemTime {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => SystemTime::UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => t,
    }
}

fn generate_root(config: &CaConfig) -> Result<(KeyPair, CertificateDer<'static>), CaError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, config.trust_domain.as_str());
    // A distinct name per root keeps old and new roots apart during a rotation.
    dn.push(
        DnType::CommonName,
        format!("weft root CA {:08x}", fastrand::u32(..)),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial());
    let now = SystemTime::now();
    params.not_before = now.checked_sub(config.backdate).unwrap_or(now).into();
    params.not_after = (now + config.root_ttl).into();
    let cert = params.self_signed(&key)?;
    Ok((key, cert.der().clone()))
}

fn persist_self_signed(dir: &Path, state: &CaState) -> Result<(), CaError> {
    // Order matters for crash safety: the bundle first (it then already trusts the new root),
    // then the key (its root is found in the bundle if ca-cert.pem is still the old one),
    // then the certificate.
    let roots_path = dir.join(ROOT_CERT_FILE);
    write_atomic(
        &roots_path,
        certs_to_pem(&state.roots).as_bytes(),
        CERT_FILE_MODE,
    )
    .map_err(io_err(&roots_path))?;
    let key_path = dir.join(CA_KEY_FILE);
    write_atomic(
        &key_path,
        pem_files::key_to_pem(state.signer.issuer.key()).as_bytes(),
        KEY_FILE_MODE,
    )
    .map_err(io_err(&key_path))?;
    let cert_path = dir.join(CA_CERT_FILE);
    write_atomic(
        &cert_path,
        cert_to_pem(&state.signer.cert).as_bytes(),
        CERT_FILE_MODE,
    )
    .map_err(io_err(&cert_path))?;
    Ok(())
}

/// Checks a CSR and returns its public key: PEM and DER well formed, signature valid, SANs
/// exactly `identity`, key strong enough.
fn check_csr(csr_pem: &str, identity: &SpiffeId) -> Result<rcgen::SubjectPublicKeyInfo, CaError> {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                CaError::InvalidCsr("no \"CERTIFICATE REQUEST\" PEM block".to_string())
            }
            other => CaError::InvalidCsr(format!("not PEM: {other}")),
        })?;
    let (rest, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref())
            .map_err(|e| CaError::InvalidCsr(format!("not a PKCS#10 request: {e}")))?;
    if !rest.is_empty() {
        return Err(CaError::InvalidCsr(
            "trailing bytes after the request".to_string(),
        ));
    }
    csr.verify_signature()
        .map_err(|e| CaError::InvalidCsr(format!("signature does not verify: {e}")))?;

    let mut requested = Vec::new();
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                requested.push(match name {
                    GeneralName::URI(uri) => (*uri).to_string(),
                    other => other.to_string(),
                });
            }
        }
    }
    if requested.len() != 1 || requested[0] != identity.to_uri() {
        return Err(CaError::IdentityMismatch {
            proved: identity.to_uri(),
            requested,
        });
    }

    let spki = &csr.certification_request_info.subject_pki;
    match spki.parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) if rsa.key_size() < 2048 => {
            return Err(CaError::WeakKey(format!(
                "RSA key of {} bits; at least 2048 are required",
                rsa.key_size()
            )));
        }
        Ok(_) => {}
        Err(e) => return Err(CaError::WeakKey(format!("unreadable public key: {e}"))),
    }
    rcgen::SubjectPublicKeyInfo::from_der(spki.raw).map_err(|e| {
        CaError::WeakKey(format!(
            "unsupported key type ({e}): use ECDSA P-256/P-384, RSA 2048+ or Ed25519"
        ))
    })
}

fn issue_leaf(
    signer: &Signer,
    public_key: &impl rcgen::PublicKeyData,
    identity: &SpiffeId,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<CertificateDer<'static>, CaError> {
    let mut params = CertificateParams::default();
    // Istio leaves the subject empty; the identity is the (then critical) URI SAN.
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![
        identity
            .to_san()
            .map_err(|e| CaError::InvalidCsr(e.to_string()))?,
    ];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    params.not_before = not_before.into();
    params.not_after = not_after.into();
    let cert = params.signed_by(public_key, &signer.issuer)?;
    Ok(cert.der().clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).expect("valid id")
    }

    fn csr_for(sans: Vec<rcgen::SanType>) -> String {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = sans;
        let csr = params.serialize_request(&key).expect("csr");
        pem_files::encode("CERTIFICATE REQUEST", csr.der())
    }

    #[test]
    fn ttl_limits() {
        let dir = TempDir::new("ca-ttl");
        let ca = CertificateAuthority::load_or_create_self_signed(dir.path(), CaConfig::default())
            .expect("ca");
        let me = id("spiffe://cluster.local/ns/a/sa/b");
        let csr = csr_for(vec![me.to_san().expect("san")]);
        let issued = ca.sign_csr(&csr, &me, None).expect("sign");
        let lifetime = issued
            .not_after
            .duration_since(issued.not_before)
            .expect("ordered");
        let expected = DEFAULT_WORKLOAD_TTL + DEFAULT_BACKDATE;
        assert!(
            lifetime.abs_diff(expected) <= Duration::from_secs(2),
            "{lifetime:?}"
        );
        assert!(matches!(
            ca.sign_csr(&csr, &me, Some(Duration::ZERO)),
            Err(CaError::BadTtl { .. })
        ));
        assert!(matches!(
            ca.sign_csr(
                &csr,
                &me,
                Some(DEFAULT_MAX_WORKLOAD_TTL + Duration::from_secs(1))
            ),
            Err(CaError::BadTtl { .. })
        ));
        assert!(
            ca.sign_csr(&csr, &me, Some(Duration::from_secs(3600)))
                .is_ok()
        );
    }

    #[test]
    fn csr_checks() {
        let dir = TempDir::new("ca-csr");
        let ca = CertificateAuthority::load_or_create_self_signed(dir.path(), CaConfig::default())
            .expect("ca");
        let me = id("spiffe://cluster.local/ns/a/sa/b");
        let other = id("spiffe://cluster.local/ns/a/sa/admin");
        let two = csr_for(vec![
            me.to_san().expect("san"),
            other.to_san().expect("san"),
        ]);
        assert!(matches!(
            ca.sign_csr(&two, &me, None),
            Err(CaError::IdentityMismatch { .. })
        ));
        let none = csr_for(Vec::new());
        assert!(matches!(
            ca.sign_csr(&none, &me, None),
            Err(CaError::IdentityMismatch { .. })
        ));
        let dns = csr_for(vec![
            me.to_san().expect("san"),
            rcgen::SanType::DnsName("evil.example".try_into().expect("dns")),
        ]);
        let err = ca.sign_csr(&dns, &me, None).expect_err("dns san");
        assert!(err.to_string().contains("evil.example"), "{err}");
        assert!(matches!(
            ca.sign_csr("garbage", &me, None),
            Err(CaError::InvalidCsr(_))
        ));
        let not_csr = pem_files::encode("CERTIFICATE", &[1, 2, 3]);
        assert!(matches!(
            ca.sign_csr(&not_csr, &me, None),
            Err(CaError::InvalidCsr(_))
        ));
        // Tamper with the signed body: the signature must no longer verify.
        let good = csr_for(vec![me.to_san().expect("san")]);
        let mut der = {
            use rustls_pki_types::pem::PemObject;
            rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(good.as_bytes())
                .expect("pem")
                .as_ref()
                .to_vec()
        };
        let n = der.len();
        der[n - 80] ^= 0x01;
        let tampered = pem_files::encode("CERTIFICATE REQUEST", &der);
        let err = ca.sign_csr(&tampered, &me, None).expect_err("tampered");
        assert!(matches!(err, CaError::InvalidCsr(_)), "{err}");
    }

    #[test]
    fn leaf_shape() {
        let dir = TempDir::new("ca-leaf");
        let ca = CertificateAuthority::load_or_create_self_signed(dir.path(), CaConfig::default())
            .expect("ca");
        let me = id("spiffe://cluster.local/ns/a/sa/b");
        let issued = ca
            .sign_csr(&csr_for(vec![me.to_san().expect("san")]), &me, None)
            .expect("sign");
        assert_eq!(issued.chain.len(), 1, "a root signs: no intermediates");
        assert_eq!(issued.roots.len(), 1);
        let (_, cert) =
            x509_parser::certificate::X509Certificate::from_der(issued.leaf()).expect("parse");
        assert!(!cert.is_ca());
        let san = cert
            .subject_alternative_name()
            .expect("san ext")
            .expect("present");
        assert!(san.critical, "empty subject: SAN is critical");
        let eku = cert.extended_key_usage().expect("eku").expect("present");
        assert!(eku.value.server_auth && eku.value.client_auth);
        let ku = cert.key_usage().expect("ku").expect("present");
        assert!(ku.value.digital_signature() && ku.value.key_encipherment());
        assert_eq!(SpiffeId::from_certificate_der(issued.leaf()), Ok(me));
        let chain = issued.istio_cert_chain();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[1], ca.trust_bundle_pem());
    }

    #[test]
    fn serving_certificate_names_and_usage() {
        let dir = TempDir::new("ca-serving");
        let ca = CertificateAuthority::load_or_create_self_signed(dir.path(), CaConfig::default())
            .expect("ca");
        let (key_pem, issued) = ca
            .issue_serving_certificate(
                &[
                    "istiod.istio-system.svc".to_string(),
                    "127.0.0.1".to_string(),
                ],
                Duration::from_secs(3600),
            )
            .expect("issue");
        assert!(key_pem.contains("PRIVATE KEY"));
        let (_, cert) =
            x509_parser::certificate::X509Certificate::from_der(issued.leaf()).expect("parse");
        let san = cert.subject_alternative_name().expect("ext").expect("san");
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert!(
            names.iter().any(|n| n.contains("istiod.istio-system.svc")),
            "{names:?}"
        );
        assert!(
            names.iter().any(|n| n.contains("IPAddress(7f:00:00:01)")),
            "{names:?}"
        );
        let eku = cert.extended_key_usage().expect("eku").expect("present");
        assert!(eku.value.server_auth);
        assert!(
            ca.issue_serving_certificate(&["bücher.example".to_string()], Duration::from_secs(60))
                .is_err()
        );
    }
}
