//! Peer certificate verification the way Envoy's default validator does it: the chain must lead
//! to a trusted CA of the validation context (inline or SDS, read at each handshake), and when
//! SAN matchers are configured one of them must match a SAN of the leaf. The server name a
//! client dials is never compared with the certificate (Envoy checks SANs only through the
//! matchers). Without a validation context, an upstream certificate is not verified (Envoy's
//! behaviour), but the handshake signature still is.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::{SanKind, ValidationSpec};

/// The SANs and subject of a certificate.
pub(crate) struct CertFacts {
    pub sans: Vec<(SanKind, String)>,
    pub subject: String,
}

/// Reads the SANs and subject of a DER certificate (empty when it does not parse).
pub(crate) fn cert_facts(der: &[u8]) -> CertFacts {
    use x509_parser::extensions::GeneralName;
    let mut facts = CertFacts {
        sans: Vec::new(),
        subject: String::new(),
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return facts;
    };
    facts.subject = cert.subject().to_string();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => facts.sans.push((SanKind::Dns, (*d).to_owned())),
                GeneralName::URI(u) => facts.sans.push((SanKind::Uri, (*u).to_owned())),
                GeneralName::RFC822Name(e) => facts.sans.push((SanKind::Email, (*e).to_owned())),
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).ok().map(std::net::IpAddr::from),
                        16 => <[u8; 16]>::try_from(*b).ok().map(std::net::IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        facts.sans.push((SanKind::Ip, ip.to_string()));
                    }
                }
                _ => {}
            }
        }
    }
    facts
}

/// Verifies peers against a [`ValidationSpec`].
#[derive(Debug)]
pub(crate) struct PeerVerifier {
    spec: ValidationSpec,
    /// Downstream: a client certificate is required (`require_client_certificate`).
    mandatory: bool,
    provider: Arc<CryptoProvider>,
}

fn other(msg: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
        Message(msg),
    ))))
}

/// A readable reason carried through rustls.
#[derive(Debug)]
struct Message(String);

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

fn chain_error(e: webpki::Error) -> rustls::Error {
    use webpki::Error as W;
    let c = match e {
        W::CertExpired { time, not_after } => CertificateError::ExpiredContext { time, not_after },
        W::CertNotValidYet { time, not_before } => {
            CertificateError::NotValidYetContext { time, not_before }
        }
        W::UnknownIssuer => CertificateError::UnknownIssuer,
        W::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        W::BadDer | W::BadDerTime | W::TrailingData(_) => CertificateError::BadEncoding,
        W::CertRevoked => CertificateError::Revoked,
        other => return self::other(format!("certificate chain: {other}")),
    };
    rustls::Error::InvalidCertificate(c)
}

impl PeerVerifier {
    pub(crate) fn new(
        spec: ValidationSpec,
        mandatory: bool,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        PeerVerifier {
            spec,
            mandatory,
            provider,
        }
    }

    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: webpki::KeyUsage,
    ) -> Result<(), rustls::Error> {
        if !self.spec.is_set() {
            return Ok(());
        }
        let dynamic = match &self.spec.sds {
            Some(slot) => Some(slot.validation().ok_or_else(|| {
                other(format!(
                    "validation context secret {:?} has not arrived",
                    slot.name()
                ))
            })?),
            None => None,
        };
        let fixed = self.spec.fixed.as_deref();
        let roots = match (&dynamic, fixed) {
            (Some(d), _) if !d.anchors.is_empty() => &d.anchors,
            (_, Some(f)) => &f.anchors,
            (Some(d), None) => &d.anchors,
            (None, None) => return Ok(()),
        };
        let allow_expired = fixed.is_some_and(|f| f.allow_expired)
            || dynamic.as_ref().is_some_and(|d| d.allow_expired);
        if !roots.is_empty() {
            let cert = webpki::EndEntityCert::try_from(end_entity).map_err(chain_error)?;
            let algs = self.provider.signature_verification_algorithms.all;
            let result = cert.verify_for_usage(algs, roots, intermediates, now, usage, None, None);
            match result {
                Ok(_) => {}
                Err(webpki::Error::CertExpired { .. }) if allow_expired => {}
                Err(e) => return Err(chain_error(e)),
            }
        }
        let matchers: Vec<&super::SanMatcher> = fixed
            .map(|f| f.sans.iter())
            .into_iter()
            .flatten()
            .chain(
                dynamic
                    .as_ref()
                    .map(|d| d.sans.iter())
                    .into_iter()
                    .flatten(),
            )
            .collect();
        if matchers.is_empty() {
            return Ok(());
        }
        let facts = cert_facts(end_entity);
        if matchers.iter().any(|m| m.matches(&facts.sans)) {
            Ok(())
        } else {
            let sans: Vec<&str> = facts.sans.iter().map(|(_, v)| v.as_str()).collect();
            Err(other(format!(
                "peer certificate SANs {sans:?} match none of the configured subject alt names"
            )))
        }
    }

    /// Checks a handshake signature with the provider's algorithms (TLS 1.3 or 1.2 rules).
    fn signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
        tls13: bool,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        if tls13 {
            rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
        } else {
            rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
        }
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verify(
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::client_auth(),
        )?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(message, cert, dss, false)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(message, cert, dss, true)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verify(
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(message, cert, dss, false)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(message, cert, dss, true)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}
