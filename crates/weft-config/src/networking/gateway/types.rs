//! The `Gateway` API (`networking.istio.io`, `gateway.proto`) as serde types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::serde_util::{is_default, is_false, is_zero_u32};

/// `Gateway` spec: the listeners (servers) of a load balancer at the mesh edge.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gateway {
    /// The listeners to open.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<Server>,
    /// Labels of the gateway pods this configuration applies to (searched in all
    /// namespaces unless Istio restricts it to the Gateway's own).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
}

/// One listener: a port, the hosts it serves and its TLS settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Server {
    /// Port and protocol to listen on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    /// IP address or `unix://` socket to bind to; all addresses when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bind: String,
    /// Hosts served, as `host` or `namespace/host` (namespace `*` or `.` allowed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// TLS settings (termination, passthrough or an HTTP-to-HTTPS redirect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsSettings>,
    /// Loopback endpoint (`127.0.0.1:port` or `unix://path`) to forward to.
    #[serde(
        default,
        alias = "default_endpoint",
        skip_serializing_if = "String::is_empty"
    )]
    pub default_endpoint: String,
    /// Optional name, unique across the Gateway's servers.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// A listening port of a gateway server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Port {
    /// Port number (0 only with a `unix://` bind).
    #[serde(default)]
    pub number: u32,
    /// Protocol: HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, TCP or TLS.
    #[serde(default)]
    pub protocol: String,
    /// Port name, unique within the Gateway.
    #[serde(default)]
    pub name: String,
    /// Deprecated and without effect on gateways.
    #[serde(default, alias = "target_port", skip_serializing_if = "is_zero_u32")]
    pub target_port: u32,
}

/// TLS settings of a gateway server or sidecar ingress listener.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerTlsSettings {
    /// Answer plain HTTP with a 301 redirect to HTTPS.
    #[serde(default, alias = "https_redirect", skip_serializing_if = "is_false")]
    pub https_redirect: bool,
    /// How TLS is handled (PASSTHROUGH when unset).
    #[serde(default, skip_serializing_if = "is_default")]
    pub mode: TlsMode,
    /// Path of the server certificate file (SIMPLE/MUTUAL without `credentialName`).
    #[serde(
        default,
        alias = "server_certificate",
        skip_serializing_if = "String::is_empty"
    )]
    pub server_certificate: String,
    /// Path of the server private key file.
    #[serde(
        default,
        alias = "private_key",
        skip_serializing_if = "String::is_empty"
    )]
    pub private_key: String,
    /// Path of the CA bundle used to verify client certificates (MUTUAL).
    #[serde(
        default,
        alias = "ca_certificates",
        skip_serializing_if = "String::is_empty"
    )]
    pub ca_certificates: String,
    /// Path of a certificate revocation list for client certificates.
    #[serde(default, alias = "ca_crl", skip_serializing_if = "String::is_empty")]
    pub ca_crl: String,
    /// Name of the Secret holding the key, certificate and optional CA bundle.
    #[serde(
        default,
        alias = "credential_name",
        skip_serializing_if = "String::is_empty"
    )]
    pub credential_name: String,
    /// Up to two Secrets (e.g. an RSA and an ECDSA certificate).
    #[serde(
        default,
        alias = "credential_names",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub credential_names: Vec<String>,
    /// Name of a Secret or ConfigMap holding only the CA certificates for MUTUAL.
    #[serde(
        default,
        alias = "ca_cert_credential_name",
        skip_serializing_if = "String::is_empty"
    )]
    pub ca_cert_credential_name: String,
    /// Up to two certificate/key file pairs.
    #[serde(
        default,
        alias = "tls_certificates",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tls_certificates: Vec<TlsCertificate>,
    /// Subject alternative names accepted in client certificates.
    #[serde(
        default,
        alias = "subject_alt_names",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub subject_alt_names: Vec<String>,
    /// Base64 SHA-256 hashes of accepted client certificates' SPKI.
    #[serde(
        default,
        alias = "verify_certificate_spki",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub verify_certificate_spki: Vec<String>,
    /// Hex SHA-256 hashes of accepted client certificates.
    #[serde(
        default,
        alias = "verify_certificate_hash",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub verify_certificate_hash: Vec<String>,
    /// Minimum TLS version.
    #[serde(
        default,
        alias = "min_protocol_version",
        skip_serializing_if = "is_default"
    )]
    pub min_protocol_version: TlsProtocol,
    /// Maximum TLS version.
    #[serde(
        default,
        alias = "max_protocol_version",
        skip_serializing_if = "is_default"
    )]
    pub max_protocol_version: TlsProtocol,
    /// Cipher suites allowed (TLS 1.2 and below).
    #[serde(
        default,
        alias = "cipher_suites",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub cipher_suites: Vec<String>,
}

/// A certificate/key pair given as file paths.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsCertificate {
    /// Path of the certificate file.
    #[serde(
        default,
        alias = "server_certificate",
        skip_serializing_if = "String::is_empty"
    )]
    pub server_certificate: String,
    /// Path of the private key file.
    #[serde(
        default,
        alias = "private_key",
        skip_serializing_if = "String::is_empty"
    )]
    pub private_key: String,
    /// Path of a CA bundle.
    #[serde(
        default,
        alias = "ca_certificates",
        skip_serializing_if = "String::is_empty"
    )]
    pub ca_certificates: String,
}

/// How a server handles TLS (`ServerTLSSettings.TLSmode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TlsMode {
    /// Forward the TLS stream untouched, routed on SNI.
    #[default]
    #[serde(rename = "PASSTHROUGH")]
    Passthrough,
    /// Terminate TLS with a server certificate.
    #[serde(rename = "SIMPLE")]
    Simple,
    /// Terminate TLS and require a client certificate.
    #[serde(rename = "MUTUAL")]
    Mutual,
    /// Passthrough, routing on Istio's `outbound_` SNI names without a VirtualService.
    #[serde(rename = "AUTO_PASSTHROUGH")]
    AutoPassthrough,
    /// Terminate with Istio's mesh certificates (mTLS).
    #[serde(rename = "ISTIO_MUTUAL")]
    IstioMutual,
    /// Terminate TLS; verify a client certificate only when one is presented.
    #[serde(rename = "OPTIONAL_MUTUAL")]
    OptionalMutual,
}

impl TlsMode {
    /// The name as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Passthrough => "PASSTHROUGH",
            TlsMode::Simple => "SIMPLE",
            TlsMode::Mutual => "MUTUAL",
            TlsMode::AutoPassthrough => "AUTO_PASSTHROUGH",
            TlsMode::IstioMutual => "ISTIO_MUTUAL",
            TlsMode::OptionalMutual => "OPTIONAL_MUTUAL",
        }
    }
}

/// A TLS protocol version (`ServerTLSSettings.TLSProtocol`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum TlsProtocol {
    /// The proxy's default.
    #[default]
    #[serde(rename = "TLS_AUTO")]
    TlsAuto,
    /// TLS 1.0.
    #[serde(rename = "TLSV1_0")]
    Tlsv1_0,
    /// TLS 1.1.
    #[serde(rename = "TLSV1_1")]
    Tlsv1_1,
    /// TLS 1.2.
    #[serde(rename = "TLSV1_2")]
    Tlsv1_2,
    /// TLS 1.3.
    #[serde(rename = "TLSV1_3")]
    Tlsv1_3,
}
