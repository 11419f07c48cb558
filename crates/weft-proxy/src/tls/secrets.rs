//! Secrets by name: certificates and trusted CAs that TLS contexts refer to by SDS name
//! (`tls_certificate_sds_secret_configs`, `validation_context_sds_secret_config`).
//!
//! A name has one [`Slot`] for the life of the proxy. Compiled TLS contexts hold the slot, not a
//! copy of the secret, and read it at each handshake: a new value (SDS update, rotation by the
//! proxy's identity provider) applies to the next handshake, while established connections keep
//! the keys they negotiated. Secrets come from `static_resources.secrets`, from SDS over ADS, or
//! from [`SecretStore::set_tls_certificate`] and friends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;
use weft_xds::envoy::extensions::transport_sockets::tls::v3 as tlsv3;

use super::{SanMatcher, TlsConfigError, data_source, provider};

/// A certificate and its private key, ready for rustls.
pub type Certificate = Arc<CertifiedKey>;

/// What peer certificates are checked against: trusted roots and accepted SANs.
#[derive(Debug, Default)]
pub struct Validation {
    /// Trust anchors (empty: no `trusted_ca`).
    pub(crate) anchors: Vec<rustls_pki_types::TrustAnchor<'static>>,
    /// The roots as DER, for `/config_dump`-like views.
    pub(crate) roots: Vec<CertificateDer<'static>>,
    /// `match_subject_alt_names` and `match_typed_subject_alt_names`: one must match.
    pub(crate) sans: Vec<SanMatcher>,
    /// `allow_expired_certificate`.
    pub(crate) allow_expired: bool,
}

impl Validation {
    /// A validation context trusting `roots` (DER certificates).
    pub fn from_roots(roots: Vec<CertificateDer<'static>>) -> Result<Self, TlsConfigError> {
        let anchors = roots
            .iter()
            .enumerate()
            .map(|(i, c)| {
                webpki::anchor_from_trusted_cert(c)
                    .map(|a| a.to_owned())
                    .map_err(|e| {
                        TlsConfigError(format!("trusted_ca[{i}]: not a CA certificate: {e}"))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Validation {
            anchors,
            roots,
            ..Validation::default()
        })
    }

    /// The trusted roots.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }
}

/// One secret's value.
#[derive(Debug, Clone)]
pub enum Secret {
    /// `tls_certificate`: what this side presents.
    Certificate(Certificate),
    /// `validation_context`: how the peer is checked.
    Validation(Arc<Validation>),
}

/// The current value of one secret name, shared by every TLS context that uses it.
#[derive(Debug)]
pub struct Slot {
    name: String,
    value: ArcSwapOption<Secret>,
    /// Bumped on every change, so that waiters for a first value wake up.
    version: watch::Sender<u64>,
}

impl Slot {
    /// The secret's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value now, if one arrived.
    pub fn get(&self) -> Option<Arc<Secret>> {
        self.value.load_full()
    }

    /// The certificate now, if the secret is one.
    pub fn certificate(&self) -> Option<Certificate> {
        match self.value.load().as_deref() {
            Some(Secret::Certificate(c)) => Some(Arc::clone(c)),
            _ => None,
        }
    }

    /// The validation context now, if the secret is one.
    pub fn validation(&self) -> Option<Arc<Validation>> {
        match self.value.load().as_deref() {
            Some(Secret::Validation(v)) => Some(Arc::clone(v)),
            _ => None,
        }
    }

    /// Whether a value is there.
    pub fn is_ready(&self) -> bool {
        self.value.load().is_some()
    }

    /// Waits until a value is there, at most `timeout`; false when it did not come.
    pub async fn wait(&self, timeout: Duration) -> bool {
        let mut rx = self.version.subscribe();
        if self.is_ready() {
            return true;
        }
        let arrived = tokio::time::timeout(timeout, async {
            while !self.is_ready() {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        arrived.is_ok() && self.is_ready()
    }

    fn set(&self, value: Option<Secret>) {
        self.value.store(value.map(Arc::new));
        self.version.send_modify(|v| *v += 1);
    }
}

/// Every secret name the proxy knows, shared by all configuration snapshots.
#[derive(Debug, Default)]
pub struct SecretStore {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

impl SecretStore {
    /// The slot of `name`, created empty on first use.
    pub fn slot(&self, name: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(slots.entry(name.to_owned()).or_insert_with(|| {
            Arc::new(Slot {
                name: name.to_owned(),
                value: ArcSwapOption::empty(),
                version: watch::channel(0).0,
            })
        }))
    }

    /// Names with a value, sorted (for the admin interface and tests).
    pub fn names(&self) -> Vec<String> {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let mut names: Vec<String> = slots
            .iter()
            .filter(|(_, s)| s.is_ready())
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }

    /// Sets `name` to a certificate chain (leaf first) and its private key. New handshakes
    /// present it; connections already open keep theirs.
    pub fn set_tls_certificate(
        &self,
        name: &str,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<(), TlsConfigError> {
        let cert = certified_key(chain, key, &format!("secret {name:?}"))?;
        self.slot(name).set(Some(Secret::Certificate(cert)));
        Ok(())
    }

    /// Sets `name` to a certificate chain and key given as PEM.
    pub fn set_tls_certificate_pem(
        &self,
        name: &str,
        chain_pem: &str,
        key_pem: &str,
    ) -> Result<(), TlsConfigError> {
        let what = format!("secret {name:?}");
        let chain = parse_certs(chain_pem.as_bytes(), &what)?;
        let key = parse_key(key_pem.as_bytes(), &what)?;
        self.set_tls_certificate(name, chain, key)
    }

    /// Sets `name` to a validation context trusting `roots` (Istio's `ROOTCA`).
    pub fn set_trusted_ca(
        &self,
        name: &str,
        roots: Vec<CertificateDer<'static>>,
    ) -> Result<(), TlsConfigError> {
        let v = Validation::from_roots(roots)
            .map_err(|e| TlsConfigError(format!("secret {name:?}: {}", e.0)))?;
        self.slot(name).set(Some(Secret::Validation(Arc::new(v))));
        Ok(())
    }

    /// Feeds the proxy's own workload identity: its certificate as `default` and its trust
    /// bundle as `ROOTCA`, the names Istio's sidecar configuration refers to.
    pub fn set_workload_certificate(
        &self,
        cert: &weft_identity::WorkloadCertificate,
    ) -> Result<(), TlsConfigError> {
        self.set_trusted_ca("ROOTCA", cert.bundle().certs().to_vec())?;
        self.slot("default")
            .set(Some(Secret::Certificate(Arc::clone(cert.certified_key()))));
        Ok(())
    }

    /// Applies an Envoy `Secret` resource (static or from SDS).
    pub fn apply(&self, s: &tlsv3::Secret, resource: &str) -> Result<(), TlsConfigError> {
        let value = compile_secret(s, resource)?;
        self.slot(&s.name).set(Some(value));
        Ok(())
    }

    /// Sets `name` to an already compiled value.
    pub fn set(&self, name: &str, value: Secret) {
        self.slot(name).set(Some(value));
    }

    /// Forgets the value of `name` (an SDS resource that was removed).
    pub fn remove(&self, name: &str) {
        self.slot(name).set(None);
    }
}

/// Compiles an Envoy `Secret` resource without storing it (to validate before applying).
pub fn compile_secret(s: &tlsv3::Secret, resource: &str) -> Result<Secret, TlsConfigError> {
    use tlsv3::secret::Type;
    if s.name.is_empty() {
        return Err(TlsConfigError(format!(
            "{resource}: name: a secret needs a name"
        )));
    }
    match &s.r#type {
        Some(Type::TlsCertificate(c)) => Ok(Secret::Certificate(load_tls_certificate(
            c,
            &format!("{resource}: tls_certificate"),
        )?)),
        Some(Type::ValidationContext(v)) => Ok(Secret::Validation(Arc::new(
            super::compile_validation(v, &format!("{resource}: validation_context"))?,
        ))),
        Some(Type::SessionTicketKeys(_)) | Some(Type::GenericSecret(_)) => {
            Err(TlsConfigError(format!(
                "{resource}: only tls_certificate and validation_context secrets are supported"
            )))
        }
        None => Err(TlsConfigError(format!(
            "{resource}: the secret has no tls_certificate or validation_context"
        ))),
    }
}

/// Loads a `TlsCertificate` (chain and key from files, inline bytes or inline strings).
pub fn load_tls_certificate(
    c: &tlsv3::TlsCertificate,
    what: &str,
) -> Result<Certificate, TlsConfigError> {
    let chain_bytes = data_source(
        c.certificate_chain.as_ref(),
        &format!("{what}.certificate_chain"),
    )?;
    let key_bytes = data_source(c.private_key.as_ref(), &format!("{what}.private_key"))?;
    if c.private_key_provider.is_some() || c.password.is_some() {
        return Err(TlsConfigError(format!(
            "{what}: private_key_provider and password are not supported; give an unencrypted private_key"
        )));
    }
    let chain = parse_certs(&chain_bytes, &format!("{what}.certificate_chain"))?;
    let key = parse_key(&key_bytes, &format!("{what}.private_key"))?;
    certified_key(chain, key, what)
}

pub(crate) fn parse_certs(
    pem: &[u8],
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    use rustls_pki_types::pem::PemObject;
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsConfigError(format!("{what}: not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(TlsConfigError(format!(
            "{what}: no CERTIFICATE block found (PEM expected)"
        )));
    }
    Ok(certs)
}

fn parse_key(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    use rustls_pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        TlsConfigError(format!(
            "{what}: no PKCS#8, PKCS#1 or SEC1 private key in PEM: {e}"
        ))
    })
}

fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    what: &str,
) -> Result<Certificate, TlsConfigError> {
    if chain.is_empty() {
        return Err(TlsConfigError(format!("{what}: empty certificate chain")));
    }
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsConfigError(format!("{what}: private key not usable: {e}")))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match().map_err(|e| {
        TlsConfigError(format!(
            "{what}: the private key does not match the certificate: {e}"
        ))
    })?;
    Ok(Arc::new(ck))
}
