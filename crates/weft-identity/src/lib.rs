//! Zero-trust identity for weft: SPIFFE ids, the built-in certificate authority, workload
//! certificates with their rotation timing, and rustls configurations that authenticate peers by
//! SPIFFE id.
//!
//! The control plane serves Istio's certificate API with [`ca::CertificateAuthority`]; the proxy
//! keeps its key and certificate in a [`workload::CertStore`] and builds its mTLS configurations
//! with [`tls`].
//!
//! ```
//! use std::sync::Arc;
//! use weft_identity::ca::{CaConfig, CertificateAuthority};
//! use weft_identity::{CertStore, SpiffeId, WorkloadCertificate, WorkloadKey};
//!
//! # let dir = std::env::temp_dir().join(format!("weft-identity-doc-{}", std::process::id()));
//! let ca = CertificateAuthority::load_or_create_self_signed(&dir, CaConfig::default())?;
//! let id: SpiffeId = "spiffe://cluster.local/ns/default/sa/reviews".parse()?;
//! let key = WorkloadKey::generate()?;
//! // The control plane passes the identity the caller proved, never one read from the CSR.
//! let issued = ca.sign_csr(&key.csr_pem(&id)?, &id, None)?;
//! let store = Arc::new(CertStore::new(WorkloadCertificate::from_issued(&key, &issued)?));
//! assert_eq!(store.identity(), id);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod api;
pub mod ca;
mod pem_files;
pub mod spiffe;
pub mod tls;
pub mod trust;
pub mod workload;

pub use ca::{CaConfig, CaError, CertificateAuthority, IssuedCertificate};
pub use spiffe::{SpiffeId, SpiffeIdError, TrustDomain, TrustDomainAliases};
pub use tls::{ClientAuthMode, MtlsClient, MtlsServer, TlsError, peer_identity};
pub use trust::{AllowedIdentities, IdentityRule, TrustBundle, VerifyError};
pub use workload::{CertStore, WorkloadCertificate, WorkloadError, WorkloadKey};

/// File modes of the CA's files, for callers that write key material themselves.
pub use pem_files::{CERT_FILE_MODE, KEY_FILE_MODE};

/// PEM helpers for the strings Istio's certificate API and `cacerts` files carry.
pub mod pem {
    pub use crate::pem_files::{cert_to_pem, certs_to_pem, encode, parse_certs_pem};
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::path::{Path, PathBuf};

    /// A directory removed on drop.
    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "weft-identity-{tag}-{}-{:016x}",
                std::process::id(),
                fastrand::u64(..)
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
}
