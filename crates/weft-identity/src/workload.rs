//! A workload's own identity material: its key pair (generated locally, never sent anywhere),
//! the CSR it sends to the CA, and the [`CertStore`] that holds the current key, chain and trust
//! bundle and tells when to rotate.
//!
//! Rotation swaps the whole [`WorkloadCertificate`] atomically (`arc-swap`): handshakes that
//! start afterwards use the new certificate, connections already established keep the session
//! they negotiated and are not disturbed.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rcgen::{CertificateParams, DistinguishedName, KeyPair};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};

use crate::ca::IssuedCertificate;
use crate::spiffe::SpiffeId;
use crate::trust::{TrustBundle, Usage, VerifyError};

/// Rotation happens at this fraction of a certificate's validity (Istio's half life).
pub const ROTATION_FRACTION: f64 = 0.5;
/// Rotation instants are spread by up to this fraction of the half life, either way, so that
/// workloads started together do not all hit the CA at the same moment.
pub const ROTATION_JITTER: f64 = 0.1;

/// Why a key, CSR or certificate could not be used.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// Key generation or CSR serialization failed.
    #[error("key or CSR generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A private key could not be read.
    #[error("private key: {0}")]
    BadKey(String),
    /// The chain is empty.
    #[error("the certificate chain is empty")]
    EmptyChain,
    /// The certificate's public key is not the workload's key.
    #[error("the certificate does not belong to this key (public keys differ)")]
    KeyMismatch,
    /// The certificate or its chain is unusable.
    #[error("certificate: {0}")]
    BadCertificate(String),
    /// The chain does not verify against the bundle, or the leaf has no SPIFFE id.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// A rotation tried to install a certificate of another identity.
    #[error("rotation to {new} refused: this store holds the identity {current}")]
    IdentityChanged {
        /// The identity the store holds.
        current: Box<SpiffeId>,
        /// The identity of the refused certificate.
        new: Box<SpiffeId>,
    },
}

/// The workload's private key: ECDSA P-256, generated in the process, never leaves it except
/// as the CSR's public key.
pub struct WorkloadKey {
    key: KeyPair,
}

impl std::fmt::Debug for WorkloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadKey")
            .field("algorithm", &"ECDSA P-256")
            .finish_non_exhaustive()
    }
}

impl WorkloadKey {
    /// Generates a fresh ECDSA P-256 key pair.
    pub fn generate() -> Result<Self, WorkloadError> {
        Ok(Self {
            key: KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
        })
    }

    /// Reads a key from PEM (PKCS#8, PKCS#1 RSA or SEC1 EC), e.g. one mounted from a file.
    pub fn from_pem(text: &str) -> Result<Self, WorkloadError> {
        Ok(Self {
            key: crate::pem_files::parse_private_key_pem(text).map_err(WorkloadError::BadKey)?,
        })
    }

    /// The key as PKCS#8 PEM, for writing to a 0600 file.
    pub fn to_pem(&self) -> String {
        crate::pem_files::key_to_pem(&self.key)
    }

    /// A PKCS#10 CSR (PEM) for `identity`: empty subject, the SPIFFE id as the only SAN,
    /// signed by this key. This is what Istio's agent sends in `CreateCertificateRequest.csr`.
    pub fn csr_pem(&self, identity: &SpiffeId) -> Result<String, WorkloadError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![
            identity
                .to_san()
                .map_err(|e| WorkloadError::BadCertificate(e.to_string()))?,
        ];
        let csr = params.serialize_request(&self.key)?;
        Ok(crate::pem_files::encode("CERTIFICATE REQUEST", csr.der()))
    }

    /// The raw public key (as in the certificate's subjectPublicKey).
    pub fn public_key_raw(&self) -> &[u8] {
        self.key.public_key_raw()
    }

    fn rustls_signing_key(&self) -> Result<Arc<dyn rustls::sign::SigningKey>, WorkloadError> {
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()));
        rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(der)
            .map_err(|e| WorkloadError::BadKey(e.to_string()))
    }
}

/// The instant to rotate a certificate valid from `not_before` to `not_after`: at
/// [`ROTATION_FRACTION`] of the validity, moved by `jitter` (a fraction of that half life,
/// clamped to ±[`ROTATION_JITTER`]).
pub fn rotation_instant(not_before: SystemTime, not_after: SystemTime, jitter: f64) -> SystemTime {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    let jitter = jitter.clamp(-ROTATION_JITTER, ROTATION_JITTER);
    not_before + lifetime.mul_f64(ROTATION_FRACTION * (1.0 + jitter))
}

/// One generation of a workload's identity: key, chain, trust bundle, and the rustls form of
/// the key and chain. Immutable; rotation replaces it whole.
pub struct WorkloadCertificate {
    identity: SpiffeId,
    chain: Vec<CertificateDer<'static>>,
    bundle: TrustBundle,
    not_before: SystemTime,
    not_after: SystemTime,
    rotate_at: SystemTime,
    /// What rustls presents in a handshake; shared by every connection using this generation.
    certified_key: Arc<CertifiedKey>,
}

impl std::fmt::Debug for WorkloadCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadCertificate")
            .field("identity", &self.identity)
            .field("chain", &self.chain.len())
            .field("bundle", &self.bundle)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("rotate_at", &self.rotate_at)
            .finish()
    }
}

impl WorkloadCertificate {
    /// Assembles a generation from the key and what the CA returned. Checks that the leaf
    /// belongs to the key, carries a SPIFFE id, and chains to the bundle (signatures and
    /// names; expiry is not checked here, so an expired certificate can still be loaded and
    /// then refused by peers, which is what rotation is for).
    pub fn new(
        key: &WorkloadKey,
        chain: Vec<CertificateDer<'static>>,
        bundle: TrustBundle,
    ) -> Result<Self, WorkloadError> {
        let leaf = chain.first().ok_or(WorkloadError::EmptyChain)?;
        let raw =
            crate::pem_files::cert_public_key_raw(leaf).map_err(WorkloadError::BadCertificate)?;
        if raw != key.public_key_raw() {
            return Err(WorkloadError::KeyMismatch);
        }
        let (not_before, not_after) =
            crate::pem_files::cert_validity(leaf).map_err(WorkloadError::BadCertificate)?;
        // Verify inside the validity window: this checks the chain, not the clock.
        let midpoint = not_before
            + not_after
                .duration_since(not_before)
                .unwrap_or(Duration::ZERO)
                / 2;
        let at = UnixTime::since_unix_epoch(
            midpoint
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or(Duration::ZERO),
        );
        let identity = bundle.verify(leaf, &chain[1..], at, Usage::Client)?;
        let certified_key = Arc::new(CertifiedKey::new(chain.clone(), key.rustls_signing_key()?));
        let jitter = (fastrand::f64() * 2.0 - 1.0) * ROTATION_JITTER;
        Ok(Self {
            identity,
            chain,
            bundle,
            not_before,
            not_after,
            rotate_at: rotation_instant(not_before, not_after, jitter),
            certified_key,
        })
    }

    /// Assembles a generation from the CA's answer.
    pub fn from_issued(
        key: &WorkloadKey,
        issued: &IssuedCertificate,
    ) -> Result<Self, WorkloadError> {
        Self::new(
            key,
            issued.chain().to_vec(),
            TrustBundle::new(issued.roots().to_vec())?,
        )
    }

    /// Assembles a generation from PEM: the chain (leaf first) and the roots, as Istio's
    /// `cert-chain.pem` and `root-cert.pem` files or the CA's response hold them.
    pub fn from_pem(
        key: &WorkloadKey,
        chain_pem: &str,
        roots_pem: &str,
    ) -> Result<Self, WorkloadError> {
        let chain =
            crate::pem_files::parse_certs_pem(chain_pem).map_err(WorkloadError::BadCertificate)?;
        Self::new(key, chain, TrustBundle::from_pem(roots_pem)?)
    }

    /// The same key and chain with another trust bundle (the CA added or retired a root).
    pub fn with_bundle(&self, bundle: TrustBundle) -> Self {
        Self {
            identity: self.identity.clone(),
            chain: self.chain.clone(),
            bundle,
            not_before: self.not_before,
            not_after: self.not_after,
            rotate_at: self.rotate_at,
            certified_key: self.certified_key.clone(),
        }
    }

    /// The SPIFFE id this certificate proves.
    pub fn identity(&self) -> &SpiffeId {
        &self.identity
    }

    /// The chain presented to peers: leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The roots peers' chains must lead to.
    pub fn bundle(&self) -> &TrustBundle {
        &self.bundle
    }

    /// Start of validity.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// End of validity.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// When to fetch the next certificate: half of the validity, with jitter.
    pub fn rotate_at(&self) -> SystemTime {
        self.rotate_at
    }

    /// The key and chain in rustls form.
    pub fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.certified_key
    }
}

/// The current identity of a workload, read by every handshake and replaced by rotation.
///
/// Readers never block: [`current`](Self::current) is a lock-free load, and a rotation is one
/// atomic pointer swap.
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwap<WorkloadCertificate>,
}

impl CertStore {
    /// A store holding `cert`.
    pub fn new(cert: WorkloadCertificate) -> Self {
        Self {
            current: ArcSwap::from_pointee(cert),
        }
    }

    /// The current generation; hold the `Arc` for as long as one handshake needs it.
    pub fn current(&self) -> Arc<WorkloadCertificate> {
        self.current.load_full()
    }

    /// The identity this store holds.
    pub fn identity(&self) -> SpiffeId {
        self.current.load().identity.clone()
    }

    /// Installs a new certificate for the same identity. New handshakes use it at once;
    /// established connections are not touched.
    pub fn rotate(&self, cert: WorkloadCertificate) -> Result<(), WorkloadError> {
        let current = self.current.load();
        if current.identity != cert.identity {
            return Err(WorkloadError::IdentityChanged {
                current: Box::new(current.identity.clone()),
                new: Box::new(cert.identity.clone()),
            });
        }
        self.current.store(Arc::new(cert));
        tracing::debug!(identity = %current.identity, "workload certificate rotated");
        Ok(())
    }

    /// Replaces the trust bundle and keeps the key and chain (a root was added or retired).
    pub fn update_bundle(&self, bundle: TrustBundle) {
        self.current
            .rcu(|current| Arc::new(current.with_bundle(bundle.clone())));
    }

    /// End of the current certificate's validity.
    pub fn expires_at(&self) -> SystemTime {
        self.current.load().not_after
    }

    /// When the current certificate should be rotated.
    pub fn rotate_at(&self) -> SystemTime {
        self.current.load().rotate_at
    }

    /// How long until the rotation instant (zero when it has passed): what a rotation loop
    /// sleeps.
    pub fn time_until_rotation(&self, now: SystemTime) -> Duration {
        self.rotate_at()
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
    }

    /// Whether the rotation instant has passed.
    pub fn needs_rotation(&self, now: SystemTime) -> bool {
        now >= self.rotate_at()
    }

    /// Whether the current certificate has expired.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        now >= self.expires_at()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_instant_is_half_life_with_bounded_jitter() {
        let nb = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let na = nb + Duration::from_secs(24 * 3600);
        assert_eq!(
            rotation_instant(nb, na, 0.0),
            nb + Duration::from_secs(12 * 3600)
        );
        assert_eq!(
            rotation_instant(nb, na, 0.1),
            nb + Duration::from_secs(12 * 3600).mul_f64(1.1)
        );
        assert_eq!(rotation_instant(nb, na, 5.0), rotation_instant(nb, na, 0.1));
        assert_eq!(
            rotation_instant(nb, na, -5.0),
            rotation_instant(nb, na, -0.1)
        );
        assert_eq!(
            rotation_instant(na, nb, 0.0),
            na,
            "inverted window rotates at once"
        );
    }

    #[test]
    fn csr_carries_the_identity() {
        let key = WorkloadKey::generate().expect("key");
        let id = SpiffeId::parse("spiffe://cluster.local/ns/a/sa/b").expect("id");
        let csr = key.csr_pem(&id).expect("csr");
        let der = {
            use rustls_pki_types::pem::PemObject;
            rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(csr.as_bytes())
                .expect("pem")
        };
        let parsed = rcgen::CertificateSigningRequestParams::from_der(&der).expect("parse");
        assert_eq!(
            parsed.params.subject_alt_names,
            vec![id.to_san().expect("san")]
        );
        let again = WorkloadKey::from_pem(&key.to_pem()).expect("reload");
        assert_eq!(again.public_key_raw(), key.public_key_raw());
        assert!(format!("{key:?}").contains("P-256"));
    }
}
