//! TLS on listeners and clusters: Envoy's `envoy.transport_sockets.tls` transport socket.
//!
//! A filter chain's `DownstreamTlsContext` compiles into a [`DownstreamTls`] (a rustls
//! `ServerConfig` with weft's certificate resolver and peer verifier); a cluster's
//! `UpstreamTlsContext` into an [`UpstreamTls`]. Both read their certificates and trusted CAs
//! at each handshake, from the context itself (inline or files, loaded at compile time) or
//! from a named [`secrets::Slot`] (SDS): a rotated secret applies to the next handshake and
//! never touches open connections. A context whose SDS secrets have not arrived yet makes its
//! connections wait for them (bounded), as Envoy's warming does. rustls with the ring provider
//! is the only TLS implementation.

pub mod secrets;
pub mod stream;
mod verify;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ServerConfig, SignatureScheme, SupportedProtocolVersion};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use weft_xds::envoy::config::core::v3::{DataSource, TransportSocket, data_source};
use weft_xds::envoy::extensions::transport_sockets::tls::v3 as tlsv3;

use crate::config::route::StringMatch;
use crate::config::{CompileError, Unsupported};
pub use secrets::{SecretStore, Slot, Validation};

/// A TLS setting that cannot be used; the message names the field and what is allowed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TlsConfigError(pub String);

/// The one crypto provider of the proxy (ring), built once.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::LazyLock<Arc<CryptoProvider>> =
        std::sync::LazyLock::new(|| Arc::new(rustls::crypto::ring::default_provider()));
    PROVIDER.clone()
}

/// How long a connection waits for the SDS secrets of its TLS context before it is closed
/// (the context is "warming" until they arrive).
pub const SECRET_WAIT: Duration = Duration::from_secs(10);

/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// SDS names the proxy's own identity provides (Istio's agent answers them locally): they are
/// set through [`SecretStore::set_workload_certificate`] and never requested over ADS.
pub const IDENTITY_SECRETS: [&str; 2] = ["default", "ROOTCA"];

/// Whether `name` is resolved by the proxy itself rather than fetched over ADS: the identity
/// secrets, and Istio's file references (`file-root:PATH`, `file-cert:CERT~KEY`).
pub fn is_local_secret(name: &str) -> bool {
    IDENTITY_SECRETS.contains(&name)
        || name.starts_with("file-root:")
        || name.starts_with("file-cert:")
}

/// Loads Istio's file secret references: `file-root:PATH` (a trusted CA bundle) and
/// `file-cert:CERT~KEY` (a certificate chain and its key). `None` for other names.
fn file_secret(name: &str) -> Option<Result<secrets::Secret, TlsConfigError>> {
    if let Some(path) = name.strip_prefix("file-root:") {
        let load = || {
            let pem = std::fs::read(path).map_err(|e| {
                TlsConfigError(format!("secret {name:?}: cannot read {path:?}: {e}"))
            })?;
            let roots = secrets::parse_certs(&pem, &format!("secret {name:?}"))?;
            Ok(secrets::Secret::Validation(Arc::new(
                Validation::from_roots(roots)?,
            )))
        };
        return Some(load());
    }
    let spec = name.strip_prefix("file-cert:")?;
    let Some((cert, key)) = spec.split_once('~') else {
        return Some(Err(TlsConfigError(format!(
            "secret {name:?}: file-cert:CERT~KEY expected"
        ))));
    };
    let c = tlsv3::TlsCertificate {
        certificate_chain: Some(DataSource {
            specifier: Some(data_source::Specifier::Filename(cert.to_owned())),
            ..DataSource::default()
        }),
        private_key: Some(DataSource {
            specifier: Some(data_source::Specifier::Filename(key.to_owned())),
            ..DataSource::default()
        }),
        ..tlsv3::TlsCertificate::default()
    };
    Some(
        secrets::load_tls_certificate(&c, &format!("secret {name:?}"))
            .map(secrets::Secret::Certificate),
    )
}

/// The slot of an SDS reference; file references are loaded now and stored in their slot.
fn sds_slot(
    s: &tlsv3::SdsSecretConfig,
    secrets: &SecretStore,
    what: &str,
) -> Result<Arc<Slot>, TlsConfigError> {
    if s.name.is_empty() {
        return Err(TlsConfigError(format!(
            "{what}.name: a secret name is required"
        )));
    }
    if let Some(value) = file_secret(&s.name) {
        secrets.set(&s.name, value?);
    }
    Ok(secrets.slot(&s.name))
}

const DOWNSTREAM_TLS: &str = "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
const UPSTREAM_TLS: &str = "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
const RAW_BUFFER: &str = "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer";

/// Reads an Envoy `DataSource` (file, inline bytes, inline string, environment variable).
pub(crate) fn data_source(ds: Option<&DataSource>, what: &str) -> Result<Vec<u8>, TlsConfigError> {
    use data_source::Specifier as S;
    match ds.and_then(|d| d.specifier.as_ref()) {
        Some(S::Filename(f)) => {
            std::fs::read(f).map_err(|e| TlsConfigError(format!("{what}: cannot read {f:?}: {e}")))
        }
        Some(S::InlineBytes(b)) => Ok(b.clone()),
        Some(S::InlineString(s)) => Ok(s.as_bytes().to_vec()),
        Some(S::EnvironmentVariable(v)) => std::env::var(v)
            .map(String::into_bytes)
            .map_err(|_| TlsConfigError(format!("{what}: environment variable {v:?} is not set"))),
        None => Err(TlsConfigError(format!(
            "{what}: missing (filename, inline_bytes or inline_string)"
        ))),
    }
}

/// Which subject alternative names a matcher looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanKind {
    /// rfc822Name.
    Email,
    /// dNSName.
    Dns,
    /// uniformResourceIdentifier (SPIFFE ids).
    Uri,
    /// iPAddress.
    Ip,
}

/// One `match_subject_alt_names` / `match_typed_subject_alt_names` entry.
#[derive(Debug)]
pub struct SanMatcher {
    /// `None`: any SAN type (the untyped `match_subject_alt_names`).
    pub kind: Option<SanKind>,
    /// The value matcher.
    pub matcher: StringMatch,
}

impl SanMatcher {
    /// Whether one of `sans` matches. A DNS pattern with a leading wildcard label in the
    /// certificate (`*.example.com`) matches exactly one label, as Envoy does for exact
    /// matchers.
    pub fn matches(&self, sans: &[(SanKind, String)]) -> bool {
        sans.iter().any(|(kind, value)| {
            if self.kind.is_some_and(|k| k != *kind) {
                return false;
            }
            if self.matcher.matches(value) {
                return true;
            }
            if *kind == SanKind::Dns
                && let (Some(suffix), StringMatch::Exact(want, _)) =
                    (value.strip_prefix("*."), &self.matcher)
            {
                return want.split_once('.').is_some_and(|(label, rest)| {
                    !label.is_empty() && rest.eq_ignore_ascii_case(suffix)
                });
            }
            false
        })
    }
}

/// Compiles a `CertificateValidationContext`.
pub(crate) fn compile_validation(
    v: &tlsv3::CertificateValidationContext,
    what: &str,
) -> Result<Validation, TlsConfigError> {
    let mut out = match &v.trusted_ca {
        Some(ca) => {
            let pem = data_source(Some(ca), &format!("{what}.trusted_ca"))?;
            let roots = secrets::parse_certs(&pem, &format!("{what}.trusted_ca"))?;
            Validation::from_roots(roots).map_err(|e| TlsConfigError(format!("{what}.{}", e.0)))?
        }
        None => Validation::default(),
    };
    #[allow(deprecated)]
    let untyped = &v.match_subject_alt_names;
    for (i, m) in untyped.iter().enumerate() {
        out.sans.push(SanMatcher {
            kind: None,
            matcher: string_matcher(m, &format!("{what}.match_subject_alt_names[{i}]"))?,
        });
    }
    for (i, m) in v.match_typed_subject_alt_names.iter().enumerate() {
        let field = format!("{what}.match_typed_subject_alt_names[{i}]");
        use tlsv3::subject_alt_name_matcher::SanType;
        let kind = match SanType::try_from(m.san_type) {
            Ok(SanType::Email) => SanKind::Email,
            Ok(SanType::Dns) => SanKind::Dns,
            Ok(SanType::Uri) => SanKind::Uri,
            Ok(SanType::IpAddress) => SanKind::Ip,
            _ => {
                return Err(TlsConfigError(format!(
                    "{field}.san_type: EMAIL, DNS, URI or IP_ADDRESS expected (OTHER_NAME is not supported)"
                )));
            }
        };
        let Some(sm) = &m.matcher else {
            return Err(TlsConfigError(format!("{field}.matcher: missing")));
        };
        out.sans.push(SanMatcher {
            kind: Some(kind),
            matcher: string_matcher(sm, &format!("{field}.matcher"))?,
        });
    }
    out.allow_expired = v.allow_expired_certificate;
    Ok(out)
}

fn string_matcher(
    m: &weft_xds::envoy::r#type::matcher::v3::StringMatcher,
    what: &str,
) -> Result<StringMatch, TlsConfigError> {
    match crate::config::route::string_match(m, "tls", what) {
        Ok(StringMatch::Never) => Err(TlsConfigError(format!(
            "{what}: exact, prefix, suffix, contains or safe_regex expected"
        ))),
        Ok(s) => Ok(s),
        Err(e) => Err(TlsConfigError(format!("{what}: {e}"))),
    }
}

/// The validation context of a TLS context: a fixed part (inline), an SDS part, or both
/// (Envoy's `combined_validation_context`: roots from SDS, SAN matchers from both).
#[derive(Debug, Default)]
pub(crate) struct ValidationSpec {
    pub(crate) fixed: Option<Arc<Validation>>,
    pub(crate) sds: Option<Arc<Slot>>,
}

impl ValidationSpec {
    fn is_set(&self) -> bool {
        self.fixed.is_some() || self.sds.is_some()
    }
}

/// Certificates a side presents: inline ones, then SDS ones; the first available is used.
#[derive(Debug, Default)]
struct CertSources {
    fixed: Vec<Arc<CertifiedKey>>,
    sds: Vec<Arc<Slot>>,
}

impl CertSources {
    fn is_empty(&self) -> bool {
        self.fixed.is_empty() && self.sds.is_empty()
    }

    fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.fixed
            .first()
            .cloned()
            .or_else(|| self.sds.iter().find_map(|s| s.certificate()))
    }
}

impl ResolvesServerCert for CertSources {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

impl ResolvesClientCert for CertSources {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.current()
    }

    fn has_certs(&self) -> bool {
        !self.is_empty()
    }
}

/// What a `CommonTlsContext` compiles into, before it becomes a client or server config.
struct Common {
    certs: CertSources,
    validation: ValidationSpec,
    alpn: Vec<Vec<u8>>,
    versions: Vec<&'static SupportedProtocolVersion>,
    waits: Vec<Arc<Slot>>,
}

fn compile_common(
    c: Option<&tlsv3::CommonTlsContext>,
    secrets: &SecretStore,
    what: &str,
) -> Result<Common, TlsConfigError> {
    let empty = tlsv3::CommonTlsContext::default();
    let c = c.unwrap_or(&empty);
    let mut certs = CertSources::default();
    let mut waits = Vec::new();
    for (i, t) in c.tls_certificates.iter().enumerate() {
        certs.fixed.push(secrets::load_tls_certificate(
            t,
            &format!("{what}.tls_certificates[{i}]"),
        )?);
    }
    for (i, s) in c.tls_certificate_sds_secret_configs.iter().enumerate() {
        let slot = sds_slot(
            s,
            secrets,
            &format!("{what}.tls_certificate_sds_secret_configs[{i}]"),
        )?;
        waits.push(Arc::clone(&slot));
        certs.sds.push(slot);
    }
    use tlsv3::common_tls_context::ValidationContextType as V;
    let mut validation = ValidationSpec::default();
    match &c.validation_context_type {
        Some(V::ValidationContext(v)) => {
            validation.fixed = Some(Arc::new(compile_validation(
                v,
                &format!("{what}.validation_context"),
            )?));
        }
        Some(V::ValidationContextSdsSecretConfig(s)) => {
            let slot = sds_slot(
                s,
                secrets,
                &format!("{what}.validation_context_sds_secret_config"),
            )?;
            waits.push(Arc::clone(&slot));
            validation.sds = Some(slot);
        }
        Some(V::CombinedValidationContext(cv)) => {
            if let Some(v) = &cv.default_validation_context {
                validation.fixed = Some(Arc::new(compile_validation(
                    v,
                    &format!("{what}.combined_validation_context.default_validation_context"),
                )?));
            }
            match &cv.validation_context_sds_secret_config {
                Some(s) if !s.name.is_empty() => {
                    let slot = sds_slot(
                        s,
                        secrets,
                        &format!(
                            "{what}.combined_validation_context.validation_context_sds_secret_config"
                        ),
                    )?;
                    waits.push(Arc::clone(&slot));
                    validation.sds = Some(slot);
                }
                _ => {
                    return Err(TlsConfigError(format!(
                        "{what}.combined_validation_context.validation_context_sds_secret_config: a secret name is required"
                    )));
                }
            }
        }
        #[allow(deprecated)]
        Some(_) => {
            return Err(TlsConfigError(format!(
                "{what}: certificate provider validation contexts are not supported; use validation_context or an SDS secret"
            )));
        }
        None => {}
    }
    let versions = versions(c.tls_params.as_ref(), what)?;
    Ok(Common {
        certs,
        validation,
        alpn: c
            .alpn_protocols
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect(),
        versions,
        waits,
    })
}

fn versions(
    p: Option<&tlsv3::TlsParameters>,
    what: &str,
) -> Result<Vec<&'static SupportedProtocolVersion>, TlsConfigError> {
    // TLS_AUTO 0, TLSv1_0 1, TLSv1_1 2, TLSv1_2 3, TLSv1_3 4. rustls speaks 1.2 and 1.3 only,
    // so an older minimum starts at 1.2.
    let (min, max) = p.map_or((0, 0), |p| {
        (
            p.tls_minimum_protocol_version,
            p.tls_maximum_protocol_version,
        )
    });
    let min = if min == 0 { 3 } else { min.max(3) };
    let max = if max == 0 { 4 } else { max };
    if max < 3 {
        return Err(TlsConfigError(format!(
            "{what}.tls_params.tls_maximum_protocol_version: TLSv1_2 or TLSv1_3 expected (older versions are not supported)"
        )));
    }
    if min > max || min > 4 {
        return Err(TlsConfigError(format!(
            "{what}.tls_params: the minimum protocol version is above the maximum"
        )));
    }
    let mut out = Vec::new();
    if min <= 4 && max >= 4 {
        out.push(&rustls::version::TLS13);
    }
    if min <= 3 {
        out.push(&rustls::version::TLS12);
    }
    Ok(out)
}

/// A compiled `DownstreamTlsContext`: how a filter chain terminates TLS.
#[derive(Debug)]
pub struct DownstreamTls {
    config: Arc<ServerConfig>,
    /// The same without ALPN, for clients whose ALPN offer has nothing in common with ours:
    /// Envoy then goes on without ALPN instead of failing the handshake.
    config_no_alpn: Arc<ServerConfig>,
    /// The certificates presented (also in the config's resolver), for `By=` of XFCC.
    certs: Arc<CertSources>,
    /// SDS secrets the context needs before it can handshake.
    waits: Vec<Arc<Slot>>,
}

/// What the TLS handshake of a connection established.
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    /// The SNI the client sent (lower-cased).
    pub sni: Option<String>,
    /// The negotiated ALPN protocol.
    pub alpn: Option<String>,
    /// The peer certificate (leaf), when one was presented and verified.
    pub peer_certificate: Option<CertificateDer<'static>>,
    /// URI SANs of the peer certificate (SPIFFE ids among them).
    pub peer_uri_sans: Vec<String>,
    /// DNS SANs of the peer certificate.
    pub peer_dns_sans: Vec<String>,
    /// The peer certificate's subject, RFC 2253 style.
    pub peer_subject: String,
    /// The first URI SAN of the certificate this side presented (`By=` of XFCC).
    pub local_uri: Option<String>,
}

impl TlsInfo {
    fn from_state(state: &rustls::CommonState, sni: Option<&str>) -> TlsInfo {
        let mut info = TlsInfo {
            sni: sni.map(str::to_ascii_lowercase),
            alpn: state
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            ..TlsInfo::default()
        };
        if let Some(leaf) = state.peer_certificates().and_then(|c| c.first()) {
            let facts = verify::cert_facts(leaf);
            for (kind, v) in facts.sans {
                match kind {
                    SanKind::Uri => info.peer_uri_sans.push(v),
                    SanKind::Dns => info.peer_dns_sans.push(v),
                    _ => {}
                }
            }
            info.peer_subject = facts.subject;
            info.peer_certificate = Some(leaf.clone().into_owned());
        }
        info
    }

    /// The peer's SPIFFE id (the first `spiffe://` URI SAN).
    pub fn peer_spiffe_id(&self) -> Option<&str> {
        self.peer_uri_sans
            .iter()
            .find(|u| u.starts_with("spiffe://"))
            .map(String::as_str)
    }
}

impl DownstreamTls {
    /// The rustls configuration (ALPN, versions, resolver, verifier).
    pub fn server_config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// Waits for the context's SDS secrets (warming), then runs the handshake.
    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
    ) -> std::io::Result<(tokio_rustls::server::TlsStream<TcpStream>, TlsInfo)> {
        for slot in &self.waits {
            if !slot.wait(SECRET_WAIT).await {
                return Err(std::io::Error::other(format!(
                    "secret {:?} has not arrived (SDS): TLS context not ready",
                    slot.name()
                )));
            }
        }
        let handshake = async {
            let start =
                tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream)
                    .await?;
            let ours = &self.config.alpn_protocols;
            let overlap = start
                .client_hello()
                .alpn()
                .is_some_and(|mut offered| offered.any(|p| ours.iter().any(|o| o == p)));
            let config = if overlap || ours.is_empty() {
                &self.config
            } else {
                &self.config_no_alpn
            };
            start.into_stream(Arc::clone(config)).await
        };
        let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
            })??;
        let (_, conn) = tls.get_ref();
        let mut info = TlsInfo::from_state(conn, conn.server_name());
        if let Some(ck) = self.certs.current()
            && let Some(leaf) = ck.cert.first()
        {
            info.local_uri = verify::cert_facts(leaf)
                .sans
                .into_iter()
                .find(|(k, _)| *k == SanKind::Uri)
                .map(|(_, v)| v);
        }
        Ok((tls, info))
    }
}

/// A compiled `UpstreamTlsContext`: how a cluster originates TLS.
#[derive(Debug)]
pub struct UpstreamTls {
    config: Arc<ClientConfig>,
    /// `sni`, when set.
    sni: Option<ServerName<'static>>,
    waits: Vec<Arc<Slot>>,
}

impl UpstreamTls {
    /// The rustls configuration.
    pub fn client_config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// Runs the client handshake on a connected socket to `addr`.
    pub(crate) async fn connect(
        &self,
        tcp: TcpStream,
        addr: SocketAddr,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        for slot in &self.waits {
            if !slot.wait(SECRET_WAIT).await {
                return Err(std::io::Error::other(format!(
                    "secret {:?} has not arrived (SDS): TLS context not ready",
                    slot.name()
                )));
            }
        }
        // Without `sni` no server name is sent: an IP address never goes into SNI.
        let name = self
            .sni
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.config));
        tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
            })?
    }
}

fn decode_socket<T: Message + Default>(
    ts: &TransportSocket,
    resource: &str,
    field: &str,
) -> Result<Option<T>, CompileError> {
    use weft_xds::envoy::config::core::v3::transport_socket::ConfigType;
    let Some(ConfigType::TypedConfig(any)) = &ts.config_type else {
        return Ok(None);
    };
    T::decode(any.value.as_slice())
        .map(Some)
        .map_err(|source| CompileError::Decode {
            resource: resource.to_owned(),
            field: field.to_owned(),
            type_url: any.type_url.clone(),
            source,
        })
}

fn socket_type(ts: &TransportSocket) -> &str {
    use weft_xds::envoy::config::core::v3::transport_socket::ConfigType;
    match &ts.config_type {
        Some(ConfigType::TypedConfig(any)) => crate::config::type_name(&any.type_url),
        None => "",
    }
}

fn invalid(resource: &str, field: &str, e: TlsConfigError) -> CompileError {
    CompileError::Invalid {
        resource: resource.to_owned(),
        field: field.to_owned(),
        reason: e.0,
    }
}

/// Compiles a filter chain's `transport_socket`: `None` for plaintext (`raw_buffer`).
pub(crate) fn compile_downstream(
    ts: &TransportSocket,
    secrets: &SecretStore,
    resource: &str,
    field: &str,
    warnings: &mut Vec<Unsupported>,
) -> Result<Option<Arc<DownstreamTls>>, CompileError> {
    let ty = socket_type(ts);
    if ty == RAW_BUFFER || (ty.is_empty() && ts.name.ends_with("raw_buffer")) {
        return Ok(None);
    }
    if ty != DOWNSTREAM_TLS {
        return Err(CompileError::Invalid {
            resource: resource.to_owned(),
            field: format!("{field}.typed_config"),
            reason: format!("transport socket {ty:?}: DownstreamTlsContext or RawBuffer expected"),
        });
    }
    let Some(ctx) = decode_socket::<tlsv3::DownstreamTlsContext>(ts, resource, field)? else {
        return Ok(None);
    };
    crate::config::supported::check(&ctx, resource, &format!("{field}.typed_config"), warnings);
    let what = format!("{field}.typed_config.common_tls_context");
    let common = compile_common(ctx.common_tls_context.as_ref(), secrets, &what)
        .map_err(|e| invalid(resource, field, e))?;
    if common.certs.is_empty() {
        return Err(CompileError::Invalid {
            resource: resource.to_owned(),
            field: what,
            reason: "a TLS listener needs tls_certificates or tls_certificate_sds_secret_configs"
                .into(),
        });
    }
    let require = ctx
        .require_client_certificate
        .as_ref()
        .is_some_and(|b| b.value);
    if require && !common.validation.is_set() {
        return Err(CompileError::Invalid {
            resource: resource.to_owned(),
            field: format!("{field}.typed_config.require_client_certificate"),
            reason: "requiring a client certificate needs a validation context (trusted_ca)".into(),
        });
    }
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&common.versions)
        .map_err(|e| invalid(resource, field, TlsConfigError(e.to_string())))?;
    let builder = if common.validation.is_set() {
        builder.with_client_cert_verifier(Arc::new(verify::PeerVerifier::new(
            common.validation,
            require,
            provider,
        )))
    } else {
        builder.with_no_client_auth()
    };
    let certs = Arc::new(common.certs);
    let mut config = builder.with_cert_resolver(Arc::clone(&certs) as Arc<dyn ResolvesServerCert>);
    let config_no_alpn = Arc::new(config.clone());
    config.alpn_protocols = common.alpn;
    Ok(Some(Arc::new(DownstreamTls {
        config: Arc::new(config),
        config_no_alpn,
        certs,
        waits: common.waits,
    })))
}

/// Compiles a cluster's `transport_socket`: `None` for plaintext (`raw_buffer`).
pub(crate) fn compile_upstream(
    ts: &TransportSocket,
    secrets: &SecretStore,
    resource: &str,
    field: &str,
    warnings: &mut Vec<Unsupported>,
) -> Result<Option<Arc<UpstreamTls>>, CompileError> {
    let ty = socket_type(ts);
    if ty == RAW_BUFFER || (ty.is_empty() && ts.name.ends_with("raw_buffer")) {
        return Ok(None);
    }
    if ty != UPSTREAM_TLS {
        return Err(CompileError::Invalid {
            resource: resource.to_owned(),
            field: format!("{field}.typed_config"),
            reason: format!("transport socket {ty:?}: UpstreamTlsContext or RawBuffer expected"),
        });
    }
    let Some(ctx) = decode_socket::<tlsv3::UpstreamTlsContext>(ts, resource, field)? else {
        return Ok(None);
    };
    crate::config::supported::check(&ctx, resource, &format!("{field}.typed_config"), warnings);
    let what = format!("{field}.typed_config.common_tls_context");
    let common = compile_common(ctx.common_tls_context.as_ref(), secrets, &what)
        .map_err(|e| invalid(resource, field, e))?;
    let sni = if ctx.sni.is_empty() {
        None
    } else {
        Some(
            ServerName::try_from(ctx.sni.clone()).map_err(|e| CompileError::Invalid {
                resource: resource.to_owned(),
                field: format!("{field}.typed_config.sni"),
                reason: format!("{:?} is not a DNS name: {e}", ctx.sni),
            })?,
        )
    };
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&common.versions)
        .map_err(|e| invalid(resource, field, TlsConfigError(e.to_string())))?
        .dangerous()
        // Without a validation context Envoy does not verify the server; with one, the chain
        // and the SAN matchers decide. The server name itself is never compared (Envoy checks
        // SANs only through the matchers).
        .with_custom_certificate_verifier(Arc::new(verify::PeerVerifier::new(
            common.validation,
            true,
            provider,
        )));
    let mut config = if common.certs.is_empty() {
        builder.with_no_client_auth()
    } else {
        builder.with_client_cert_resolver(Arc::new(common.certs))
    };
    config.alpn_protocols = common.alpn;
    config.enable_sni = sni.is_some();
    // Each connection is verified against the secrets of the moment.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Some(Arc::new(UpstreamTls {
        config: Arc::new(config),
        sni,
        waits: common.waits,
    })))
}

/// What `x-forwarded-client-cert` carries (`forward_client_cert_details` and
/// `set_current_client_cert_details` of the HTTP connection manager).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientCertDetails {
    /// `forward_client_cert_details`: 0 SANITIZE, 1 FORWARD_ONLY, 2 APPEND_FORWARD,
    /// 3 SANITIZE_SET, 4 ALWAYS_FORWARD_ONLY.
    pub mode: i32,
    /// Add `Subject="..."`.
    pub subject: bool,
    /// Add `URI=...` (the SPIFFE id).
    pub uri: bool,
    /// Add `DNS=...`.
    pub dns: bool,
}

const XFCC: http::HeaderName = http::HeaderName::from_static("x-forwarded-client-cert");

impl ClientCertDetails {
    /// Applies the mode to a request's headers for a connection with `tls` facts.
    pub(crate) fn apply(&self, tls: Option<&TlsInfo>, headers: &mut http::HeaderMap) {
        let mtls = tls.filter(|t| t.peer_certificate.is_some());
        match (self.mode, mtls) {
            (4, _) => {}
            (1, Some(_)) => {}
            (2 | 3, Some(t)) => {
                let current = self.element(t);
                let value = match (self.mode, headers.get(&XFCC).and_then(|v| v.to_str().ok())) {
                    (2, Some(prev)) if !prev.is_empty() => format!("{prev},{current}"),
                    _ => current,
                };
                match http::HeaderValue::from_str(&value) {
                    Ok(v) => {
                        headers.insert(XFCC, v);
                    }
                    Err(_) => {
                        headers.remove(XFCC);
                    }
                }
            }
            _ => {
                headers.remove(XFCC);
            }
        }
    }

    fn element(&self, t: &TlsInfo) -> String {
        let mut parts = Vec::new();
        if let Some(by) = &t.local_uri {
            parts.push(format!("By={by}"));
        }
        if let Some(cert) = &t.peer_certificate {
            parts.push(format!("Hash={}", sha256_hex(cert)));
        }
        if self.subject {
            parts.push(format!(
                "Subject=\"{}\"",
                t.peer_subject.replace('"', "\\\"")
            ));
        }
        if self.uri
            && let Some(u) = t.peer_uri_sans.first()
        {
            parts.push(format!("URI={u}"));
        }
        if self.dns {
            for d in &t.peer_dns_sans {
                parts.push(format!("DNS={d}"));
            }
        }
        parts.join(";")
    }
}

/// Lower-case hex SHA-256 of `data`, with the ring provider's hash.
fn sha256_hex(data: &[u8]) -> String {
    let hash = provider()
        .cipher_suites
        .iter()
        .map(|s| match s {
            rustls::SupportedCipherSuite::Tls13(t) => t.common.hash_provider,
            rustls::SupportedCipherSuite::Tls12(t) => t.common.hash_provider,
        })
        .find(|h| h.algorithm() == rustls::crypto::hash::HashAlgorithm::SHA256)
        .map(|h| h.hash(data));
    match hash {
        Some(h) => h.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
        None => String::new(),
    }
}
