//! rustls configurations for Istio-style mTLS between workloads.
//!
//! Both sides present the certificate of a [`CertStore`], resolved per handshake so that a
//! rotation applies to the next connection. Peers are verified by a SPIFFE verifier: the chain
//! must lead to a root of the store's current trust bundle, and the peer's SPIFFE id must be in
//! an [`AllowedIdentities`] set. DNS names play no part (the `ServerName` a client connects with
//! is only sent as SNI, which Istio uses to pick the inbound filter chain).
//!
//! Session resumption is off: each connection is verified against the current bundle and
//! allowed set, so a retired root or a revoked permission takes effect on the next connection.
//!
//! ```no_run
//! # fn demo(store: std::sync::Arc<weft_identity::CertStore>) -> Result<(), weft_identity::tls::TlsError> {
//! use weft_identity::tls::{ClientAuthMode, MtlsServer, MtlsClient};
//! use weft_identity::{AllowedIdentities, TrustDomain};
//!
//! let server = MtlsServer::new(store.clone(), AllowedIdentities::trust_domain(TrustDomain::default()))
//!     .client_auth(ClientAuthMode::Required)
//!     .build()?;
//! let client = MtlsClient::new(store, AllowedIdentities::any()).build()?;
//! # let _ = (server, client); Ok(()) }
//! ```

use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, CommonState, DigitallySignedStruct, DistinguishedName,
    OtherError, ServerConfig, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::spiffe::{SpiffeId, SpiffeIdError};
use crate::trust::{AllowedIdentities, Usage, VerifyError};
use crate::workload::CertStore;

/// ALPN Istio's sidecars offer for the metadata-exchange TCP filter.
pub const ALPN_ISTIO_PEER_EXCHANGE: &[u8] = b"istio-peer-exchange";
/// ALPN for HTTP/1.1 over Istio mTLS.
pub const ALPN_ISTIO_HTTP11: &[u8] = b"istio-http/1.1";
/// ALPN for HTTP/2 over Istio mTLS.
pub const ALPN_ISTIO_H2: &[u8] = b"istio-h2";
/// ALPN for plain TCP over Istio mTLS.
pub const ALPN_ISTIO: &[u8] = b"istio";

/// The ALPN protocols of Istio's mTLS, in preference order.
pub fn istio_alpn_protocols() -> Vec<Vec<u8>> {
    [
        ALPN_ISTIO_PEER_EXCHANGE,
        ALPN_ISTIO_HTTP11,
        ALPN_ISTIO_H2,
        ALPN_ISTIO,
    ]
    .iter()
    .map(|p| p.to_vec())
    .collect()
}

/// Why a TLS configuration could not be built, or a peer identity not read.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The connection has no peer certificate (handshake not done, or the client sent none
    /// where client certificates are optional).
    #[error("the peer presented no certificate")]
    NoPeerCertificate,
    /// The peer certificate carries no usable SPIFFE id.
    #[error("peer certificate: {0}")]
    PeerIdentity(#[from] SpiffeIdError),
}

/// Whether a server demands a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuthMode {
    /// Istio's STRICT: a handshake without a valid, allowed client certificate fails.
    #[default]
    Required,
    /// A client may send no certificate (the connection then has no peer identity); one that
    /// is sent must still verify and be allowed.
    Optional,
}

/// The one crypto provider of the mesh (ring), built once.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::LazyLock<Arc<CryptoProvider>> =
        std::sync::LazyLock::new(|| Arc::new(rustls::crypto::ring::default_provider()));
    PROVIDER.clone()
}

/// Turns a verification failure into the rustls error that gives the peer the right alert and
/// the operator a clear message.
fn to_rustls_error(err: VerifyError) -> rustls::Error {
    use webpki::Error as W;
    let cert_err = match err {
        VerifyError::Chain(W::CertExpired { time, not_after }) => {
            CertificateError::ExpiredContext { time, not_after }
        }
        VerifyError::Chain(W::CertNotValidYet { time, not_before }) => {
            CertificateError::NotValidYetContext { time, not_before }
        }
        VerifyError::Chain(W::UnknownIssuer) => CertificateError::UnknownIssuer,
        VerifyError::Chain(W::InvalidSignatureForPublicKey) => CertificateError::BadSignature,
        VerifyError::Chain(W::BadDer | W::BadDerTime | W::TrailingData(_)) => {
            CertificateError::BadEncoding
        }
        VerifyError::Chain(W::CertRevoked) => CertificateError::Revoked,
        other => CertificateError::Other(OtherError(Arc::new(Reason(other)))),
    };
    rustls::Error::InvalidCertificate(cert_err)
}

/// Carries a [`VerifyError`] through rustls, whose messages print the error with `{:?}`: this
/// makes that print the readable message.
struct Reason(VerifyError);

impl std::fmt::Debug for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Reason {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// The SPIFFE verifier: chain to the store's current bundle, then SPIFFE id in the allowed set.
#[derive(Debug)]
struct SpiffeVerifier {
    store: Arc<CertStore>,
    allowed: AllowedIdentities,
    provider: Arc<CryptoProvider>,
    client_auth: ClientAuthMode,
}

impl SpiffeVerifier {
    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: Usage,
    ) -> Result<(), rustls::Error> {
        let current = self.store.current();
        let peer = current
            .bundle()
            .verify(end_entity, intermediates, now, usage)
            .map_err(to_rustls_error)?;
        self.allowed.check(&peer).map_err(|e| {
            tracing::debug!(%peer, allowed = %self.allowed, "peer identity refused");
            to_rustls_error(e)
        })
    }

    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ClientCertVerifier for SpiffeVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.client_auth == ClientAuthMode::Required
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: a mesh workload has exactly one certificate to offer.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verify(end_entity, intermediates, now, Usage::Client)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ServerCertVerifier for SpiffeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verify(end_entity, intermediates, now, Usage::Server)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

/// Presents the store's current certificate, looked up at each handshake.
#[derive(Debug)]
struct StoreResolver(Arc<CertStore>);

impl ResolvesServerCert for StoreResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().certified_key().clone())
    }
}

impl ResolvesClientCert for StoreResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().certified_key().clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Builds the rustls `ServerConfig` of an mTLS listener (a sidecar's inbound side).
#[derive(Debug)]
pub struct MtlsServer {
    store: Arc<CertStore>,
    allowed: AllowedIdentities,
    client_auth: ClientAuthMode,
    alpn: Vec<Vec<u8>>,
}

impl MtlsServer {
    /// A server presenting `store`'s certificate and accepting clients in `allowed`, with
    /// client certificates required and Istio's ALPN protocols.
    pub fn new(store: Arc<CertStore>, allowed: AllowedIdentities) -> Self {
        Self {
            store,
            allowed,
            client_auth: ClientAuthMode::Required,
            alpn: istio_alpn_protocols(),
        }
    }

    /// Whether a client certificate is required (STRICT) or optional.
    pub fn client_auth(mut self, mode: ClientAuthMode) -> Self {
        self.client_auth = mode;
        self
    }

    /// Replaces the ALPN protocols offered (default: [`istio_alpn_protocols`]).
    pub fn alpn_protocols(mut self, alpn: Vec<Vec<u8>>) -> Self {
        self.alpn = alpn;
        self
    }

    /// Builds the configuration (TLS 1.2 and 1.3, ring provider).
    pub fn build(self) -> Result<ServerConfig, TlsError> {
        let provider = provider();
        let verifier = Arc::new(SpiffeVerifier {
            store: self.store.clone(),
            allowed: self.allowed,
            provider: provider.clone(),
            client_auth: self.client_auth,
        });
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(StoreResolver(self.store)));
        config.alpn_protocols = self.alpn;
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(config)
    }
}

/// Builds the rustls `ClientConfig` of an mTLS upstream (a sidecar's outbound side).
#[derive(Debug)]
pub struct MtlsClient {
    store: Arc<CertStore>,
    allowed: AllowedIdentities,
    alpn: Vec<Vec<u8>>,
}

impl MtlsClient {
    /// A client presenting `store`'s certificate and accepting servers in `allowed` (Istio's
    /// `subjectAltNames`, or the service accounts of the destination service), offering Istio's
    /// ALPN protocols.
    pub fn new(store: Arc<CertStore>, allowed: AllowedIdentities) -> Self {
        Self {
            store,
            allowed,
            alpn: istio_alpn_protocols(),
        }
    }

    /// Replaces the ALPN protocols offered (default: [`istio_alpn_protocols`]).
    pub fn alpn_protocols(mut self, alpn: Vec<Vec<u8>>) -> Self {
        self.alpn = alpn;
        self
    }

    /// Builds the configuration (TLS 1.2 and 1.3, ring provider).
    pub fn build(self) -> Result<ClientConfig, TlsError> {
        let provider = provider();
        let verifier = Arc::new(SpiffeVerifier {
            store: self.store.clone(),
            allowed: self.allowed,
            provider: provider.clone(),
            client_auth: ClientAuthMode::Required,
        });
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(Arc::new(StoreResolver(self.store)));
        config.alpn_protocols = self.alpn;
        config.resumption = rustls::client::Resumption::disabled();
        Ok(config)
    }
}

/// The SPIFFE id the peer proved in the handshake of `connection` (a `ServerConnection` or
/// `ClientConnection`, or the state under a tokio-rustls stream). The verifier has already
/// checked it against the allowed set.
pub fn peer_identity(connection: &CommonState) -> Result<SpiffeId, TlsError> {
    let leaf = connection
        .peer_certificates()
        .and_then(|certs| certs.first())
        .ok_or(TlsError::NoPeerCertificate)?;
    Ok(SpiffeId::from_certificate_der(leaf)?)
}
