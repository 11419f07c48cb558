//! Istio's Gateway validation (`ValidateGateway`, `validateServer`, `validateTLSOptions`).

use std::collections::BTreeSet;

use super::types::*;
use crate::validate::addresses::{validate_ip_address, validate_unix_address};
use crate::validate::hosts::{is_dns1123_label, validate_namespace_slash_wildcard_hostname};
use crate::validate::ports::{Protocol, validate_port};
use crate::validate::{Path, Report};

/// Prefix of a Unix domain socket address in `bind` and `defaultEndpoint`.
pub const UNIX_ADDRESS_PREFIX: &str = "unix://";

/// OpenSSL names of the cipher suites Envoy (BoringSSL) supports.
const VALID_CIPHER_SUITES: &[&str] = &[
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA",
    "AES256-SHA",
    "DES-CBC3-SHA",
];

/// Istio's `IsValidCipherSuite`: a known name, `ALL`, or an expression starting with an
/// operator (`-`, `+`, `!`, `[`...).
pub fn is_valid_cipher_suite(cs: &str) -> bool {
    match cs.chars().next() {
        None => true,
        Some(_) if cs == "ALL" => true,
        Some(c) if !c.is_alphanumeric() => true,
        Some(_) => VALID_CIPHER_SUITES.contains(&cs),
    }
}

/// Validates a Gateway spec; `name` is the resource name (a DNS label for Gateways).
pub(super) fn validate_gateway(gw: &Gateway, name: &str, path: &Path, report: &mut Report) {
    if !name.is_empty() && !is_dns1123_label(name) {
        report.error(
            &Path::root("metadata").field("name"),
            format!("invalid gateway name: {name:?}"),
        );
    }
    if gw.servers.is_empty() {
        report.error(
            &path.field("servers"),
            "gateway must have at least one server",
        );
    }
    for (i, server) in gw.servers.iter().enumerate() {
        validate_server(server, &path.field("servers").index(i), report);
    }
    let mut port_names = BTreeSet::new();
    for (i, server) in gw.servers.iter().enumerate() {
        let Some(port) = &server.port else { continue };
        let at = path.field("servers").index(i).field("port").field("name");
        if !port_names.insert(port.name.as_str()) {
            report.error(
                &at,
                format!(
                    "port names in servers must be unique: duplicate name {}",
                    port.name
                ),
            );
        }
        if !Protocol::parse(&port.protocol).is_http()
            && server.tls.as_ref().is_some_and(|t| t.https_redirect)
        {
            report.warning(
                &path
                    .field("servers")
                    .index(i)
                    .field("tls")
                    .field("httpsRedirect"),
                "tls.httpsRedirect should only be used with http servers",
            );
        }
    }
}

fn validate_server(server: &Server, path: &Path, report: &mut Report) {
    if server.hosts.is_empty() {
        report.error(
            &path.field("hosts"),
            "server config must contain at least one host",
        );
    }
    for (i, host) in server.hosts.iter().enumerate() {
        for e in validate_namespace_slash_wildcard_hostname(host, true) {
            report.error(&path.field("hosts").index(i), e);
        }
    }
    let port_ok = validate_server_port(server.port.as_ref(), &server.bind, path, report);
    validate_server_bind(server.port.as_ref(), &server.bind, path, report);
    if let Some(tls) = &server.tls {
        validate_tls_options(tls, &path.field("tls"), report);
    }
    if port_ok && let Some(port) = &server.port {
        let p = Protocol::parse(&port.protocol);
        match &server.tls {
            None if p.is_tls() => report.error(
                &path.field("tls"),
                "server must have TLS settings for HTTPS/TLS protocols",
            ),
            Some(tls) if !p.is_tls() => {
                if p.is_http() {
                    let passthrough =
                        matches!(tls.mode, TlsMode::Passthrough | TlsMode::AutoPassthrough);
                    if !passthrough
                        || !tls.ca_certificates.is_empty()
                        || !tls.private_key.is_empty()
                        || !tls.server_certificate.is_empty()
                    {
                        report.error(
                            &path.field("tls"),
                            "server cannot have TLS settings for plain text HTTP ports",
                        );
                    }
                } else {
                    report.error(
                        &path.field("tls"),
                        "server cannot have TLS settings for non HTTPS/TLS ports",
                    );
                }
            }
            _ => {}
        }
    }
}

/// Returns true when the port has no error (Istio then checks TLS against the protocol).
fn validate_server_port(port: Option<&Port>, bind: &str, path: &Path, report: &mut Report) -> bool {
    let Some(port) = port else {
        report.error(&path.field("port"), "port is required");
        return false;
    };
    let at = path.field("port");
    let mut ok = true;
    if Protocol::parse(&port.protocol) == Protocol::Unsupported {
        report.error(
            &at.field("protocol"),
            format!(
                "invalid protocol {:?}, supported protocols are HTTP, HTTP2, GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP",
                port.protocol
            ),
        );
        ok = false;
    }
    if (port.number > 0 || !bind.starts_with(UNIX_ADDRESS_PREFIX))
        && let Err(e) = validate_port(i64::from(port.number))
    {
        report.error(&at.field("number"), e);
        ok = false;
    }
    if port.target_port > 0 {
        report.error(
            &at.field("targetPort"),
            "targetPort has no impact on Gateways",
        );
        ok = false;
    }
    if port.name.is_empty() {
        report.error(
            &at.field("name"),
            format!(
                "port name must be set: number:{} protocol:{:?}",
                port.number, port.protocol
            ),
        );
        ok = false;
    }
    ok
}

fn validate_server_bind(port: Option<&Port>, bind: &str, path: &Path, report: &mut Report) {
    let at = path.field("bind");
    if let Some(uds) = bind.strip_prefix(UNIX_ADDRESS_PREFIX) {
        if let Err(e) = validate_unix_address(uds) {
            report.error(&at, e);
        }
        if let Some(p) = port
            && p.number != 0
        {
            report.error(
                &at,
                format!(
                    "port number must be 0 for unix domain socket: number:{} name:{:?}",
                    p.number, p.name
                ),
            );
        }
    } else if !bind.is_empty()
        && let Err(e) = validate_ip_address(bind)
    {
        report.error(&at, e);
    }
}

/// Istio's `validateTLSOptions` for a Gateway server or a Sidecar ingress listener.
pub fn validate_tls_options(tls: &ServerTlsSettings, path: &Path, report: &mut Report) {
    if matches!(
        tls.min_protocol_version,
        TlsProtocol::Tlsv1_0 | TlsProtocol::Tlsv1_1
    ) && tls.cipher_suites.is_empty()
    {
        report.warning(
            &path.field("minProtocolVersion"),
            "TLS version below TLSV1_2 require setting compatible ciphers as by default they no longer include compatible ciphers.",
        );
    }
    let mut invalid = BTreeSet::new();
    let mut valid = BTreeSet::new();
    let mut duplicate = BTreeSet::new();
    for cs in &tls.cipher_suites {
        if !is_valid_cipher_suite(cs) {
            invalid.insert(cs.as_str());
        } else if !valid.insert(cs.as_str()) {
            duplicate.insert(cs.as_str());
        }
    }
    if !invalid.is_empty() {
        report.warning(
            &path.field("cipherSuites"),
            format!(
                "ignoring invalid cipher suites: [{}]",
                invalid.into_iter().collect::<Vec<_>>().join(" ")
            ),
        );
    }
    if !duplicate.is_empty() {
        report.warning(
            &path.field("cipherSuites"),
            format!(
                "ignoring duplicate cipher suites: [{}]",
                duplicate.into_iter().collect::<Vec<_>>().join(" ")
            ),
        );
    }
    if tls.credential_names.len() > 2 {
        report.error(
            &path.field("credentialNames"),
            format!(
                "Too many: {}: must have at most 2 items",
                tls.credential_names.len()
            ),
        );
    }

    if tls.mode == TlsMode::IstioMutual {
        let checks = [
            (
                !tls.server_certificate.is_empty(),
                "serverCertificate",
                "server certificate",
            ),
            (!tls.private_key.is_empty(), "privateKey", "private key"),
            (
                !tls.ca_certificates.is_empty(),
                "caCertificates",
                "CA bundle",
            ),
            (
                !tls.tls_certificates.is_empty(),
                "tlsCertificates",
                "tlsCertificates",
            ),
            (
                !tls.credential_name.is_empty(),
                "credentialName",
                "credentialName",
            ),
            (
                !tls.credential_names.is_empty(),
                "credentialNames",
                "credentialNames",
            ),
        ];
        for (set, field, what) in checks {
            if set {
                report.error(
                    &path.field(field),
                    format!("ISTIO_MUTUAL TLS cannot have associated {what}"),
                );
            }
        }
        return;
    }

    if matches!(tls.mode, TlsMode::Passthrough | TlsMode::AutoPassthrough)
        && (!tls.ca_crl.is_empty()
            || !tls.server_certificate.is_empty()
            || !tls.private_key.is_empty()
            || !tls.ca_certificates.is_empty()
            || !tls.tls_certificates.is_empty()
            || !tls.credential_name.is_empty()
            || !tls.credential_names.is_empty())
    {
        report.warning(
            path,
            format!(
                "{} mode does not use certificates, they will be ignored",
                tls.mode.as_str()
            ),
        );
    }

    let sources = [
        !tls.server_certificate.is_empty() && !tls.private_key.is_empty(),
        !tls.credential_name.is_empty(),
        !tls.credential_names.is_empty(),
        !tls.tls_certificates.is_empty(),
    ]
    .into_iter()
    .filter(|b| *b)
    .count();
    if sources > 1 {
        report.error(
            path,
            "only one of credential_name, credential_names, server_certificate/private_key, tls_certificates should be specified",
        );
    }

    let terminating = matches!(
        tls.mode,
        TlsMode::Simple | TlsMode::Mutual | TlsMode::OptionalMutual
    );
    if terminating && (!tls.credential_name.is_empty() || !tls.credential_names.is_empty()) {
        // Certificates come from the named Secret(s).
        return;
    }
    if terminating {
        let prefix = if tls.mode == TlsMode::Simple {
            "SIMPLE TLS"
        } else {
            if tls.ca_certificates.is_empty() {
                report.error(
                    &path.field("caCertificates"),
                    "MUTUAL TLS requires a client CA bundle",
                );
            }
            "MUTUAL TLS"
        };
        if tls.tls_certificates.len() > 2 {
            report.warning(
                &path.field("tlsCertificates"),
                format!("{prefix} can support up to 2 server certificates"),
            );
        }
        if tls.tls_certificates.is_empty() {
            if tls.server_certificate.is_empty() {
                report.error(
                    &path.field("serverCertificate"),
                    format!("{prefix} requires a server certificate"),
                );
            }
            if tls.private_key.is_empty() {
                report.error(
                    &path.field("privateKey"),
                    format!("{prefix} requires a private key"),
                );
            }
        }
        for (i, cert) in tls.tls_certificates.iter().enumerate() {
            let at = path.field("tlsCertificates").index(i);
            if cert.server_certificate.is_empty() {
                report.error(
                    &at.field("serverCertificate"),
                    format!("{prefix} requires a server certificate"),
                );
            }
            if cert.private_key.is_empty() {
                report.error(
                    &at.field("privateKey"),
                    format!("{prefix} requires a private key"),
                );
            }
        }
    }
    if !tls.ca_crl.is_empty() {
        if !tls.credential_name.is_empty() {
            report.error(
                &path.field("caCrl"),
                "CRL is not supported with credentialName. CRL has to be specified in the credential",
            );
        }
        if tls.mode == TlsMode::Simple {
            report.error(&path.field("caCrl"), "CRL is not supported with SIMPLE TLS");
        }
    }
}
