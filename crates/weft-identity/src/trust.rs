//! What a workload trusts: the root bundle a peer's chain must lead to, and the set of SPIFFE
//! ids it accepts as peers.
//!
//! Both checks are needed for zero trust: a valid chain only says that the mesh's CA issued
//! the certificate; the allowed set says whether this particular workload may talk to us (a
//! certificate stolen from another workload verifies, but carries the wrong id).

use std::fmt;

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};

use crate::spiffe::{SpiffeId, SpiffeIdError, TrustDomain, TrustDomainAliases};

/// Why a peer's certificate was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VerifyError {
    /// A root in the bundle is not a usable trust anchor.
    #[error("trust bundle certificate {index} is not a usable root: {error}")]
    BadRoot {
        /// Position of the root in the bundle.
        index: usize,
        /// What webpki said.
        error: webpki::Error,
    },
    /// The bundle's PEM text holds no readable certificate.
    #[error("trust bundle PEM: {0}")]
    BadPem(String),
    /// The bundle holds no root; nothing could verify.
    #[error("the trust bundle is empty")]
    EmptyBundle,
    /// The chain does not verify against the bundle (unknown CA, expired, not yet valid, bad
    /// signature, wrong usage).
    #[error("certificate chain does not verify: {0}")]
    Chain(webpki::Error),
    /// The certificate verifies but carries no usable SPIFFE id.
    #[error("peer certificate has no usable SPIFFE id: {0}")]
    Identity(#[from] SpiffeIdError),
    /// The peer's SPIFFE id is not in the allowed set.
    #[error("peer identity {peer} is not allowed here (allowed: {allowed})")]
    NotAllowed {
        /// The id the peer proved.
        peer: SpiffeId,
        /// The allowed set, as text.
        allowed: String,
    },
}

/// Which side of a TLS connection a certificate authenticates; checked against the
/// certificate's extended key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A server's certificate (`serverAuth`).
    Server,
    /// A client's certificate (`clientAuth`).
    Client,
}

/// The roots a workload trusts, parsed once into webpki trust anchors so that a handshake does
/// not re-parse them.
#[derive(Clone)]
pub struct TrustBundle {
    certs: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
}

impl fmt::Debug for TrustBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustBundle")
            .field("roots", &self.certs.len())
            .finish()
    }
}

impl TrustBundle {
    /// Builds a bundle from root certificates (DER). Each must parse as a trust anchor.
    pub fn new(certs: Vec<CertificateDer<'static>>) -> Result<Self, VerifyError> {
        if certs.is_empty() {
            return Err(VerifyError::EmptyBundle);
        }
        let anchors = certs
            .iter()
            .enumerate()
            .map(|(index, c)| {
                webpki::anchor_from_trusted_cert(c)
                    .map(|a| a.to_owned())
                    .map_err(|error| VerifyError::BadRoot { index, error })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { certs, anchors })
    }

    /// Builds a bundle from PEM (one or more `CERTIFICATE` blocks, as in `root-cert.pem`).
    pub fn from_pem(text: &str) -> Result<Self, VerifyError> {
        Self::new(crate::pem_files::parse_certs_pem(text).map_err(VerifyError::BadPem)?)
    }

    /// The root certificates.
    pub fn certs(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }

    /// The roots as PEM.
    pub fn to_pem(&self) -> String {
        crate::pem_files::certs_to_pem(&self.certs)
    }

    /// Verifies `end_entity` with `intermediates` up to a root of this bundle at `now`, for
    /// `usage`, and returns the SPIFFE id the certificate carries.
    pub fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: Usage,
    ) -> Result<SpiffeId, VerifyError> {
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(VerifyError::Chain)?;
        let algs = crate::tls::provider().signature_verification_algorithms.all;
        let key_usage = match usage {
            Usage::Server => webpki::KeyUsage::server_auth(),
            Usage::Client => webpki::KeyUsage::client_auth(),
        };
        cert.verify_for_usage(
            algs,
            &self.anchors,
            intermediates,
            now,
            key_usage,
            None,
            None,
        )
        .map_err(VerifyError::Chain)?;
        Ok(SpiffeId::from_certificate_der(end_entity)?)
    }
}

/// One pattern of accepted peer identities. Each field left `None` matches anything: all three
/// set is an exact id; only the trust domain accepts the whole mesh.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdentityRule {
    /// Required trust domain (or one of its aliases).
    pub trust_domain: Option<TrustDomain>,
    /// Required namespace.
    pub namespace: Option<String>,
    /// Required service account.
    pub service_account: Option<String>,
}

impl IdentityRule {
    /// Exactly this id.
    pub fn exact(id: &SpiffeId) -> Self {
        Self {
            trust_domain: Some(id.trust_domain().clone()),
            namespace: Some(id.namespace().to_string()),
            service_account: Some(id.service_account().to_string()),
        }
    }

    /// Any workload of a trust domain.
    pub fn trust_domain(trust_domain: TrustDomain) -> Self {
        Self {
            trust_domain: Some(trust_domain),
            ..Self::default()
        }
    }

    /// Any workload of a namespace in a trust domain.
    pub fn namespace(trust_domain: TrustDomain, namespace: &str) -> Self {
        Self {
            trust_domain: Some(trust_domain),
            namespace: Some(namespace.to_string()),
            service_account: None,
        }
    }

    /// A service account in a namespace of a trust domain (the same as [`exact`](Self::exact)).
    pub fn service_account(
        trust_domain: TrustDomain,
        namespace: &str,
        service_account: &str,
    ) -> Self {
        Self {
            trust_domain: Some(trust_domain),
            namespace: Some(namespace.to_string()),
            service_account: Some(service_account.to_string()),
        }
    }

    /// Whether `id` matches, treating aliased trust domains as equal.
    pub fn matches(&self, id: &SpiffeId, aliases: Option<&TrustDomainAliases>) -> bool {
        let domain_ok = match &self.trust_domain {
            None => true,
            Some(td) => match aliases {
                Some(a) => a.equivalent(td, id.trust_domain()),
                None => td == id.trust_domain(),
            },
        };
        domain_ok
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| ns == id.namespace())
            && self
                .service_account
                .as_deref()
                .is_none_or(|sa| sa == id.service_account())
    }
}

impl fmt::Display for IdentityRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain.as_ref().map_or("*", |t| t.as_str()),
            self.namespace.as_deref().unwrap_or("*"),
            self.service_account.as_deref().unwrap_or("*"),
        )
    }
}

/// The peer identities a TLS endpoint accepts: a peer is allowed when any rule matches. An
/// empty set allows nobody.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllowedIdentities {
    rules: Vec<IdentityRule>,
    aliases: Option<TrustDomainAliases>,
}

impl AllowedIdentities {
    /// An empty set (allows nobody until rules are added).
    pub fn new() -> Self {
        Self::default()
    }

    /// Exactly these ids (Istio's `subjectAltNames` of a DestinationRule, or the service
    /// accounts of a service).
    pub fn exact<'a>(ids: impl IntoIterator<Item = &'a SpiffeId>) -> Self {
        Self {
            rules: ids.into_iter().map(IdentityRule::exact).collect(),
            aliases: None,
        }
    }

    /// Every workload of a trust domain (what a sidecar accepts before authorization policy).
    pub fn trust_domain(trust_domain: TrustDomain) -> Self {
        Self::new().allow(IdentityRule::trust_domain(trust_domain))
    }

    /// Any SPIFFE id whose chain verifies against the bundle.
    pub fn any() -> Self {
        Self::new().allow(IdentityRule::default())
    }

    /// Adds a rule.
    pub fn allow(mut self, rule: IdentityRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Treats the aliases of the local trust domain as that domain when matching.
    pub fn with_aliases(mut self, aliases: TrustDomainAliases) -> Self {
        self.aliases = Some(aliases);
        self
    }

    /// The rules.
    pub fn rules(&self) -> &[IdentityRule] {
        &self.rules
    }

    /// Whether `id` is allowed.
    pub fn is_allowed(&self, id: &SpiffeId) -> bool {
        self.rules
            .iter()
            .any(|r| r.matches(id, self.aliases.as_ref()))
    }

    /// Returns `Ok` for an allowed id, else the error naming the peer and the set.
    pub fn check(&self, id: &SpiffeId) -> Result<(), VerifyError> {
        if self.is_allowed(id) {
            Ok(())
        } else {
            Err(VerifyError::NotAllowed {
                peer: id.clone(),
                allowed: self.to_string(),
            })
        }
    }
}

impl fmt::Display for AllowedIdentities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rules.is_empty() {
            return f.write_str("nobody");
        }
        for (i, r) in self.rules.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{r}")?;
        }
        if let Some(a) = &self.aliases
            && !a.aliases().is_empty()
        {
            write!(f, " (trust domain {} also as", a.primary())?;
            for alias in a.aliases() {
                write!(f, " {alias}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).expect("valid id")
    }
    fn td(s: &str) -> TrustDomain {
        TrustDomain::new(s).expect("valid td")
    }

    #[test]
    fn rules_match() {
        let a = id("spiffe://cluster.local/ns/default/sa/a");
        let b = id("spiffe://cluster.local/ns/default/sa/b");
        let c = id("spiffe://cluster.local/ns/other/sa/a");
        let d = id("spiffe://example.org/ns/default/sa/a");

        let exact = AllowedIdentities::exact([&a]);
        assert!(exact.is_allowed(&a));
        assert!(!exact.is_allowed(&b) && !exact.is_allowed(&c) && !exact.is_allowed(&d));

        let ns =
            AllowedIdentities::new().allow(IdentityRule::namespace(td("cluster.local"), "default"));
        assert!(ns.is_allowed(&a) && ns.is_allowed(&b));
        assert!(!ns.is_allowed(&c) && !ns.is_allowed(&d));

        let domain = AllowedIdentities::trust_domain(td("cluster.local"));
        assert!(domain.is_allowed(&a) && domain.is_allowed(&c) && !domain.is_allowed(&d));

        let sa_anywhere = AllowedIdentities::new().allow(IdentityRule {
            service_account: Some("a".into()),
            ..IdentityRule::default()
        });
        assert!(
            sa_anywhere.is_allowed(&a) && sa_anywhere.is_allowed(&c) && sa_anywhere.is_allowed(&d)
        );
        assert!(!sa_anywhere.is_allowed(&b));

        assert!(AllowedIdentities::any().is_allowed(&d));
        assert!(!AllowedIdentities::new().is_allowed(&a));
        let err = exact.check(&b).expect_err("not allowed").to_string();
        assert!(
            err.contains("spiffe://cluster.local/ns/default/sa/b"),
            "{err}"
        );
        assert!(
            err.contains("allowed: spiffe://cluster.local/ns/default/sa/a"),
            "{err}"
        );
    }

    #[test]
    fn aliases_widen_trust_domain_rules() {
        let old = id("spiffe://old.td/ns/default/sa/a");
        let allowed = AllowedIdentities::exact([&id("spiffe://new.td/ns/default/sa/a")]);
        assert!(!allowed.is_allowed(&old));
        let allowed =
            allowed.with_aliases(TrustDomainAliases::new(td("new.td")).with_alias(td("old.td")));
        assert!(allowed.is_allowed(&old));
        assert!(!allowed.is_allowed(&id("spiffe://third.td/ns/default/sa/a")));
        assert!(allowed.to_string().contains("also as old.td"));
    }

    #[test]
    fn bundle_needs_roots() {
        assert!(matches!(
            TrustBundle::new(Vec::new()),
            Err(VerifyError::EmptyBundle)
        ));
        assert!(matches!(
            TrustBundle::new(vec![CertificateDer::from(vec![1, 2, 3])]),
            Err(VerifyError::BadRoot { index: 0, .. })
        ));
        assert!(TrustBundle::from_pem("nothing").is_err());
    }
}
