//! SPIFFE identities as Istio uses them: `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
//!
//! A [`SpiffeId`] is what a workload proves with its certificate and what authorization policies
//! match on. Parsing follows the SPIFFE ID specification (trust domain characters, path segment
//! rules, length limits) and then Istio's path shape, so that an id accepted here is accepted by
//! Istio and the other way round.

use std::fmt;
use std::str::FromStr;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

/// The URI scheme of every SPIFFE id.
pub const SPIFFE_SCHEME: &str = "spiffe://";

/// Istio's default trust domain.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// Longest SPIFFE id the SPIFFE specification allows (in bytes, scheme included).
pub const MAX_SPIFFE_ID_LEN: usize = 2048;

/// Longest trust domain name the SPIFFE specification allows.
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// Why a SPIFFE id, a trust domain or a certificate's identity was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    /// The id does not start with `spiffe://`.
    #[error("{0:?} is not a SPIFFE id: it must start with \"spiffe://\"")]
    MissingScheme(String),
    /// The trust domain is empty.
    #[error("{0:?}: the trust domain is empty")]
    EmptyTrustDomain(String),
    /// The trust domain is longer than the SPIFFE limit.
    #[error("trust domain {0:?} is longer than {MAX_TRUST_DOMAIN_LEN} characters")]
    TrustDomainTooLong(String),
    /// The trust domain has a character outside `a-z 0-9 . - _`.
    #[error(
        "trust domain {domain:?} has the character {character:?}: only lowercase letters, digits, '.', '-' and '_' are allowed"
    )]
    BadTrustDomainChar {
        /// The refused trust domain.
        domain: String,
        /// The first character that is not allowed.
        character: char,
    },
    /// The id is longer than the SPIFFE limit.
    #[error("SPIFFE id is {0} bytes long, more than the {MAX_SPIFFE_ID_LEN} allowed")]
    TooLong(usize),
    /// A path segment is empty, `.` or `..`, or has a character outside `A-Z a-z 0-9 . - _`.
    #[error(
        "{id:?}: path segment {segment:?} is not allowed: segments are non-empty, not '.' or '..', and use only letters, digits, '.', '-' and '_'"
    )]
    BadPathSegment {
        /// The refused id.
        id: String,
        /// The refused segment.
        segment: String,
    },
    /// The path is not Istio's `/ns/<namespace>/sa/<service-account>`.
    #[error(
        "{0:?} is not an Istio workload id: the path must be /ns/<namespace>/sa/<service-account>"
    )]
    NotIstioPath(String),
    /// A query or fragment was present; SPIFFE ids have neither.
    #[error("{0:?}: a SPIFFE id has no query, fragment, port or user info")]
    ExtraUriParts(String),
    /// The certificate could not be parsed.
    #[error("cannot read the certificate to find its SPIFFE id: {0}")]
    BadCertificate(String),
    /// The certificate carries no SPIFFE URI SAN.
    #[error("the certificate has no spiffe:// URI subject alternative name")]
    NoUriSan,
    /// The certificate carries more than one URI SAN (an X.509-SVID has exactly one).
    #[error(
        "the certificate has {0} URI subject alternative names; a SPIFFE certificate has exactly one"
    )]
    MultipleUriSans(usize),
}

/// A SPIFFE trust domain: the name of the root of trust (Istio's `trustDomain`, `cluster.local`
/// by default). Validated on construction, so holding one means it is well formed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Validates `name` as a trust domain (lowercase letters, digits, `.`, `-`, `_`; 1 to 255
    /// characters), as the SPIFFE specification requires.
    pub fn new(name: &str) -> Result<Self, SpiffeIdError> {
        if name.is_empty() {
            return Err(SpiffeIdError::EmptyTrustDomain(name.to_string()));
        }
        if name.len() > MAX_TRUST_DOMAIN_LEN {
            return Err(SpiffeIdError::TrustDomainTooLong(name.to_string()));
        }
        if let Some(character) = name.chars().find(|c| {
            !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'))
        }) {
            return Err(SpiffeIdError::BadTrustDomainChar {
                domain: name.to_string(),
                character,
            });
        }
        Ok(Self(name.to_string()))
    }

    /// The trust domain's name, e.g. `cluster.local`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for TrustDomain {
    /// Istio's default trust domain, `cluster.local`.
    fn default() -> Self {
        Self(DEFAULT_TRUST_DOMAIN.to_string())
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// A workload identity in Istio's SPIFFE form:
/// `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
///
/// It is what a certificate's URI SAN carries, what the CA signs for, and what peers check.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    trust_domain: TrustDomain,
    namespace: String,
    service_account: String,
}

fn valid_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

impl SpiffeId {
    /// Builds the id of `service_account` in `namespace` of `trust_domain`, validating both
    /// names as SPIFFE path segments.
    pub fn new(
        trust_domain: TrustDomain,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, SpiffeIdError> {
        let id = Self {
            trust_domain,
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
        };
        for segment in [namespace, service_account] {
            if !valid_segment(segment) {
                return Err(SpiffeIdError::BadPathSegment {
                    id: id.to_string(),
                    segment: segment.to_string(),
                });
            }
        }
        if id.to_string().len() > MAX_SPIFFE_ID_LEN {
            return Err(SpiffeIdError::TooLong(id.to_string().len()));
        }
        Ok(id)
    }

    /// Parses `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
    pub fn parse(uri: &str) -> Result<Self, SpiffeIdError> {
        if uri.len() > MAX_SPIFFE_ID_LEN {
            return Err(SpiffeIdError::TooLong(uri.len()));
        }
        let rest = uri
            .strip_prefix(SPIFFE_SCHEME)
            .ok_or_else(|| SpiffeIdError::MissingScheme(uri.to_string()))?;
        if rest.contains(['?', '#', '@', ':']) {
            return Err(SpiffeIdError::ExtraUriParts(uri.to_string()));
        }
        let (domain, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if domain.is_empty() {
            return Err(SpiffeIdError::EmptyTrustDomain(uri.to_string()));
        }
        let trust_domain = TrustDomain::new(domain)?;
        // SPIFFE path rules first (so that the error names the bad segment), then Istio's shape.
        let segments: Vec<&str> = if path.is_empty() {
            Vec::new()
        } else {
            path[1..].split('/').collect()
        };
        if let Some(bad) = segments.iter().find(|s| !valid_segment(s)) {
            return Err(SpiffeIdError::BadPathSegment {
                id: uri.to_string(),
                segment: (*bad).to_string(),
            });
        }
        match segments.as_slice() {
            ["ns", namespace, "sa", service_account] => Ok(Self {
                trust_domain,
                namespace: (*namespace).to_string(),
                service_account: (*service_account).to_string(),
            }),
            _ => Err(SpiffeIdError::NotIstioPath(uri.to_string())),
        }
    }

    /// The trust domain the identity belongs to.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The Kubernetes namespace (or WorkloadEntry namespace) of the workload.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The service account the workload runs as.
    pub fn service_account(&self) -> &str {
        &self.service_account
    }

    /// The same namespace and service account in another trust domain; used to match an id
    /// against trust domain aliases.
    pub fn with_trust_domain(&self, trust_domain: TrustDomain) -> Self {
        Self {
            trust_domain,
            ..self.clone()
        }
    }

    /// The id as a URI string, which is also its X.509 URI SAN.
    pub fn to_uri(&self) -> String {
        self.to_string()
    }

    /// Istio's principal form without the scheme (`cluster.local/ns/default/sa/bookinfo`), as
    /// AuthorizationPolicy `principals` and `source.principal` use it.
    pub fn principal(&self) -> String {
        format!(
            "{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }

    /// The URI SAN to put in a certificate or CSR for this identity.
    pub fn to_san(&self) -> Result<rcgen::SanType, SpiffeIdError> {
        let uri = self.to_uri();
        rcgen::string::Ia5String::try_from(uri.clone())
            .map(rcgen::SanType::URI)
            .map_err(|_| SpiffeIdError::ExtraUriParts(uri))
    }

    /// Reads the SPIFFE id of an X.509 certificate (DER): its single URI SAN, as an X.509-SVID
    /// carries it.
    pub fn from_certificate_der(der: &[u8]) -> Result<Self, SpiffeIdError> {
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
            .map_err(|e| SpiffeIdError::BadCertificate(e.to_string()))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| SpiffeIdError::BadCertificate(e.to_string()))?;
        let uris: Vec<&str> = san
            .map(|ext| {
                ext.value
                    .general_names
                    .iter()
                    .filter_map(|name| match name {
                        GeneralName::URI(uri) => Some(*uri),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self::from_uri_sans(&uris)
    }

    /// Picks the SPIFFE id out of a list of URI SANs: there must be exactly one URI and it must
    /// be a SPIFFE id.
    pub fn from_uri_sans(uris: &[&str]) -> Result<Self, SpiffeIdError> {
        match uris {
            [] => Err(SpiffeIdError::NoUriSan),
            [one] => Self::parse(one),
            many => Err(SpiffeIdError::MultipleUriSans(many.len())),
        }
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SPIFFE_SCHEME}{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The local trust domain with the other names it is also known by (Istio's MeshConfig
/// `trustDomainAliases`): after a trust domain migration, peers still present ids in the old
/// domain, and those must be treated as the same workloads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrustDomainAliases {
    primary: TrustDomain,
    aliases: Vec<TrustDomain>,
}

impl TrustDomainAliases {
    /// The local trust domain with no aliases.
    pub fn new(primary: TrustDomain) -> Self {
        Self {
            primary,
            aliases: Vec::new(),
        }
    }

    /// Adds an alias of the primary trust domain.
    pub fn with_alias(mut self, alias: TrustDomain) -> Self {
        if alias != self.primary && !self.aliases.contains(&alias) {
            self.aliases.push(alias);
        }
        self
    }

    /// The local trust domain.
    pub fn primary(&self) -> &TrustDomain {
        &self.primary
    }

    /// The other names of the local trust domain.
    pub fn aliases(&self) -> &[TrustDomain] {
        &self.aliases
    }

    /// Whether `domain` is the primary trust domain or one of its aliases.
    pub fn contains(&self, domain: &TrustDomain) -> bool {
        *domain == self.primary || self.aliases.contains(domain)
    }

    /// Two trust domains name the same root of trust when both are in this set, or when they
    /// are equal.
    pub fn equivalent(&self, a: &TrustDomain, b: &TrustDomain) -> bool {
        a == b || (self.contains(a) && self.contains(b))
    }

    /// Rewrites an id of an alias domain into the primary domain; other ids are returned as is.
    pub fn canonicalize(&self, id: &SpiffeId) -> SpiffeId {
        if self.aliases.contains(id.trust_domain()) {
            id.with_trust_domain(self.primary.clone())
        } else {
            id.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td(s: &str) -> TrustDomain {
        TrustDomain::new(s).expect("valid trust domain")
    }

    #[test]
    fn parses_and_formats_istio_ids() {
        let id = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/bookinfo-productpage")
            .expect("valid");
        assert_eq!(id.trust_domain().as_str(), "cluster.local");
        assert_eq!(id.namespace(), "default");
        assert_eq!(id.service_account(), "bookinfo-productpage");
        assert_eq!(
            id.to_string(),
            "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
        );
        assert_eq!(
            id.principal(),
            "cluster.local/ns/default/sa/bookinfo-productpage"
        );
        let built =
            SpiffeId::new(td("cluster.local"), "default", "bookinfo-productpage").expect("valid");
        assert_eq!(built, id);
        assert_eq!(id.to_string().parse::<SpiffeId>(), Ok(id));
    }

    #[test]
    fn refuses_bad_ids() {
        let cases = [
            ("http://cluster.local/ns/a/sa/b", "must start with"),
            ("spiffe:///ns/a/sa/b", "trust domain is empty"),
            ("spiffe://Cluster.local/ns/a/sa/b", "character 'C'"),
            ("spiffe://cluster.local:8080/ns/a/sa/b", "no query"),
            ("spiffe://cluster.local/ns/a/sa/b?x=1", "no query"),
            ("spiffe://cluster.local/ns/a/sa/b#f", "no query"),
            ("spiffe://user@cluster.local/ns/a/sa/b", "no query"),
            ("spiffe://cluster.local/ns//sa/b", "segment \"\""),
            ("spiffe://cluster.local/ns/a/sa/b/", "segment \"\""),
            ("spiffe://cluster.local/ns/../sa/b", "segment \"..\""),
            ("spiffe://cluster.local/ns/a b/sa/b", "segment \"a b\""),
            ("spiffe://cluster.local/ns/a/sa/%41", "segment \"%41\""),
            ("spiffe://cluster.local", "must be /ns/"),
            ("spiffe://cluster.local/ns/a", "must be /ns/"),
            ("spiffe://cluster.local/sa/b/ns/a", "must be /ns/"),
            ("spiffe://cluster.local/ns/a/sa/b/extra", "must be /ns/"),
        ];
        for (input, expected) in cases {
            let err = SpiffeId::parse(input).expect_err(input).to_string();
            assert!(err.contains(expected), "{input}: {err}");
        }
        let long = format!("spiffe://cluster.local/ns/{}/sa/b", "a".repeat(3000));
        assert_eq!(
            SpiffeId::parse(&long),
            Err(SpiffeIdError::TooLong(long.len()))
        );
        assert!(TrustDomain::new(&"a".repeat(256)).is_err());
        assert!(SpiffeId::new(td("x"), "ok", "not/ok").is_err());
    }

    #[test]
    fn trust_domain_rules() {
        for ok in ["cluster.local", "example.org", "td_1-a", "a"] {
            assert!(TrustDomain::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "UPPER", "a/b", "a:1", "é"] {
            assert!(TrustDomain::new(bad).is_err(), "{bad}");
        }
        assert_eq!(TrustDomain::default().as_str(), DEFAULT_TRUST_DOMAIN);
    }

    #[test]
    fn uri_sans_need_exactly_one() {
        let uri = "spiffe://cluster.local/ns/a/sa/b";
        assert!(SpiffeId::from_uri_sans(&[uri]).is_ok());
        assert_eq!(SpiffeId::from_uri_sans(&[]), Err(SpiffeIdError::NoUriSan));
        assert_eq!(
            SpiffeId::from_uri_sans(&[uri, uri]),
            Err(SpiffeIdError::MultipleUriSans(2))
        );
    }

    #[test]
    fn san_round_trip_through_a_certificate() {
        let id = SpiffeId::parse("spiffe://example.org/ns/ns1/sa/sa1").expect("valid");
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = vec![id.to_san().expect("san")];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        assert_eq!(SpiffeId::from_certificate_der(cert.der()), Ok(id));

        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = vec![rcgen::SanType::DnsName(
            "example.org".try_into().expect("dns"),
        )];
        let cert = params.self_signed(&key).expect("cert");
        assert_eq!(
            SpiffeId::from_certificate_der(cert.der()),
            Err(SpiffeIdError::NoUriSan)
        );
        assert!(matches!(
            SpiffeId::from_certificate_der(b"junk"),
            Err(SpiffeIdError::BadCertificate(_))
        ));
    }

    #[test]
    fn aliases() {
        let aliases = TrustDomainAliases::new(td("new.td"))
            .with_alias(td("old.td"))
            .with_alias(td("old.td"));
        assert_eq!(aliases.aliases().len(), 1);
        assert!(aliases.contains(&td("old.td")));
        assert!(!aliases.contains(&td("other.td")));
        assert!(aliases.equivalent(&td("old.td"), &td("new.td")));
        assert!(!aliases.equivalent(&td("old.td"), &td("other.td")));
        let old = SpiffeId::parse("spiffe://old.td/ns/a/sa/b").expect("valid");
        assert_eq!(
            aliases.canonicalize(&old).to_string(),
            "spiffe://new.td/ns/a/sa/b"
        );
        let other = SpiffeId::parse("spiffe://other.td/ns/a/sa/b").expect("valid");
        assert_eq!(aliases.canonicalize(&other), other);
    }
}
