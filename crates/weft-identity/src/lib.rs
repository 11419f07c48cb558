//! Zero-trust identity for weft: SPIFFE ids, the built-in certificate authority, workload
//! certificates with their rotation timing, and rustls configurations that authenticate peers by
//! SPIFFE id.
//!
//! The control plane serves Istio's certificate API with [`ca::CertificateAuthority`]; the proxy
//! keeps its key and certificate in a [`workload::CertStore`] and builds its mTLS configurations
//! with [`tls`].

pub mod spiffe;

pub use spiffe::{SpiffeId, SpiffeIdError, TrustDomain, TrustDomainAliases};
