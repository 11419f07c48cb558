//! IST0161 `InvalidGatewayCredential`, the second half of Istio's `gateway.SecretAnalyzer`: the
//! Secret a Gateway server names in `credentialName` exists but holds no usable certificate.
//!
//! Follows Istio's `pkg/config/analysis/analyzers/gateway/secret.go` (`isValidSecret`), which
//! uses the control plane's own checks:
//! - `kube.ExtractCertInfo`: the Secret has non-empty `cert` and `key`, or else non-empty
//!   `tls.crt` and `tls.key` (the generic pair wins when both are set);
//! - `xds.ValidateCertificate` on the certificate: its first PEM block decodes and holds one or
//!   more DER X.509 certificates, each within its validity period now. The private key is not
//!   parsed and not matched against the certificate.
//!
//! `gateway.SecretAnalyzer` (`gateway_secret.rs`) resolves the Gateway's workload namespace and
//! Secret and calls [`credential_problem`]; this module holds the certificate checks.
//!
//! Deliberate difference: Istio reads only the Secret's `data`; weft also reads `stringData`,
//! which the API server merges into `data` (overriding it) when the Secret is applied.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use x509_parser::pem::parse_x509_pem;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::resource::{Resource, Spec};

/// A Secret's entries as the cluster stores them: `data`, overridden by `stringData`.
fn secret_data(r: &Resource) -> BTreeMap<&str, &[u8]> {
    let Spec::Secret(s) = &r.spec else {
        return BTreeMap::new();
    };
    let mut out: BTreeMap<&str, &[u8]> = BTreeMap::new();
    for (k, v) in s.data.iter().flatten() {
        out.insert(k, &v.0);
    }
    for (k, v) in s.string_data.iter().flatten() {
        out.insert(k, v.as_bytes());
    }
    out
}

/// Istio's `kube.ExtractCertInfo`: the certificate of a TLS Secret, or why there is none.
fn certificate<'a>(data: &BTreeMap<&str, &'a [u8]>) -> Result<&'a [u8], String> {
    let value = |k: &str| data.get(k).copied().filter(|v| !v.is_empty());
    for (cert, key) in [("cert", "key"), ("tls.crt", "tls.key")] {
        if let (Some(c), Some(_)) = (value(cert), value(key)) {
            return Ok(c);
        }
    }
    for (cert, key) in [("cert", "key"), ("tls.crt", "tls.key")] {
        if data.contains_key(cert) && data.contains_key(key) {
            return Err(format!(
                "found keys {cert:?} and {key:?}, but they were empty"
            ));
        }
    }
    let found: Vec<&str> = data.keys().copied().collect();
    Err(format!(
        "found secret, but didn't have expected keys (cert and key) or (tls.crt and tls.key); \
         found: {}",
        found.join(", ")
    ))
}

/// Istio's `xds.ValidateCertificate` at `now` (seconds since the Unix epoch): the first PEM
/// block holds DER certificates, all valid at `now`.
fn validate_certificate(pem: &[u8], now: i64) -> Result<(), String> {
    let (_, block) = parse_x509_pem(pem).map_err(|_| "pem decode failed".to_string())?;
    let mut der = block.contents.as_slice();
    while !der.is_empty() {
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|e| format!("invalid certificate: {e}"))?;
        let validity = cert.validity();
        if now < validity.not_before.timestamp() || now > validity.not_after.timestamp() {
            return Err("certificate is expired or not yet valid".to_string());
        }
        der = rest;
    }
    Ok(())
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Why the Secret `r` cannot serve as a gateway credential (Istio's `isValidSecret` failing),
/// or `None` when it can. `None` as well for a resource that is not a Secret.
pub fn credential_problem(r: &Resource) -> Option<String> {
    credential_problem_at(r, now_unix())
}

fn credential_problem_at(r: &Resource, now: i64) -> Option<String> {
    if !matches!(r.spec, Spec::Secret(_)) {
        return None;
    }
    let data = secret_data(r);
    certificate(&data)
        .and_then(|cert| validate_certificate(cert, now))
        .err()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::analyze;
    use crate::document::parse_mesh_config;
    use crate::mesh::MeshConfig;

    // Self-signed P-256 certificates made for these tests (validity 2020-2120, 2000-2001 and
    // 2200-2201) and their key.
    const VALID: &str = "-----BEGIN CERTIFICATE-----
MIIBJzCBz6ADAgECAgEBMAoGCCqGSM49BAMCMB0xGzAZBgNVBAMMEndlZnQtdmFs
aWQuZXhhbXBsZTAgFw0yMDAxMDEwMDAwMDBaGA8yMTIwMDEwMTAwMDAwMFowHTEb
MBkGA1UEAwwSd2VmdC12YWxpZC5leGFtcGxlMFkwEwYHKoZIzj0CAQYIKoZIzj0D
AQcDQgAEcM3BykzGcgwiKdJc92I3E8yTBcwzb2VQBGTx3Tf3x3jAmLyK7vVCf1g1
WCH978ZxFiBGd+Rzt2e4ZNbAuwBbSDAKBggqhkjOPQQDAgNHADBEAiAHYFh5ajqf
xYQ/7pAiaL/t6wkhFEDZAC5lVK62CriHjwIgNPyWNqQDjNI8St/x3LvVAebMOXqc
+TGUnbb+WcXH38g=
-----END CERTIFICATE-----
";
    const EXPIRED: &str = "-----BEGIN CERTIFICATE-----
MIIBKjCB0aADAgECAgEBMAoGCCqGSM49BAMCMB8xHTAbBgNVBAMMFHdlZnQtZXhw
aXJlZC5leGFtcGxlMB4XDTAwMDEwMTAwMDAwMFoXDTAxMDEwMTAwMDAwMFowHzEd
MBsGA1UEAwwUd2VmdC1leHBpcmVkLmV4YW1wbGUwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAARwzcHKTMZyDCIp0lz3YjcTzJMFzDNvZVAEZPHdN/fHeMCYvIru9UJ/
WDVYIf3vxnEWIEZ35HO3Z7hk1sC7AFtIMAoGCCqGSM49BAMCA0gAMEUCIQDRlk53
cdHUZV9hrcI8Qz68zLLX43GWrDPi3yBGZO2spQIgIMA4x9EEHj6o4wi3K4FdXV5I
qleIMLcpgmtNaX8sKSU=
-----END CERTIFICATE-----
";
    const FUTURE: &str = "-----BEGIN CERTIFICATE-----
MIIBLDCB06ADAgECAgEBMAoGCCqGSM49BAMCMB4xHDAaBgNVBAMME3dlZnQtZnV0
dXJlLmV4YW1wbGUwIhgPMjIwMDAxMDEwMDAwMDBaGA8yMjAxMDEwMTAwMDAwMFow
HjEcMBoGA1UEAwwTd2VmdC1mdXR1cmUuZXhhbXBsZTBZMBMGByqGSM49AgEGCCqG
SM49AwEHA0IABHDNwcpMxnIMIinSXPdiNxPMkwXMM29lUARk8d0398d4wJi8iu71
Qn9YNVgh/e/GcRYgRnfkc7dnuGTWwLsAW0gwCgYIKoZIzj0EAwIDSAAwRQIhAL9v
HUknDI7smnsATcwRbndY4kryKiQVzQLAzC+3+eqPAiBm4w3P2LZYvPns2a68iCCT
QLKBviO8bubTB962EnHwsw==
-----END CERTIFICATE-----
";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg2Q22udTxcMiuGrZk
TqJEk/Q3r2E98Uu1lLxlZbaFaVqhRANCAARwzcHKTMZyDCIp0lz3YjcTzJMFzDNv
ZVAEZPHdN/fHeMCYvIru9UJ/WDVYIf3vxnEWIEZ35HO3Z7hk1sC7AFtI
-----END PRIVATE KEY-----
";

    /// 2025-01-01T00:00:00Z.
    const NOW: i64 = 1_735_689_600;

    fn base64(data: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    /// A Secret in `ns` whose `data` holds `entries` (base64-encoded here, as in a manifest).
    fn secret(name: &str, ns: &str, entries: &[(&str, &str)]) -> String {
        let mut y = format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\ntype: kubernetes.io/tls\ndata:\n"
        );
        for (k, v) in entries {
            y.push_str(&format!("  {k}: \"{}\"\n", base64(v.as_bytes())));
        }
        y + "---\n"
    }

    /// A Gateway on the default ingress gateway with one HTTPS server using `credential`.
    fn gateway(name: &str, credential: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: 443, name: https, protocol: HTTPS}}\n    hosts: [\"*.example.com\"]\n    tls: {{mode: SIMPLE, credentialName: \"{credential}\"}}\n---\n"
        )
    }

    fn problem(yaml: &str) -> Option<String> {
        let parsed = crate::parse_str(yaml, "secret.yaml");
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        credential_problem_at(&parsed.resources[0], NOW)
    }

    /// IST0161 messages of `gateway.SecretAnalyzer` (whose IST0101 half lives in
    /// `gateway_secret.rs`).
    fn run_with(yaml: &str, mesh: &MeshConfig) -> Vec<String> {
        let parsed = crate::parse_str(yaml, "gateways.yaml");
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        analyze(&parsed.resources, mesh, Some(&["gateway.SecretAnalyzer"]))
            .iter()
            .filter(|m| m.ty.code == "IST0161")
            .map(|m| m.to_string())
            .collect()
    }

    fn run(yaml: &str) -> Vec<String> {
        run_with(yaml, &MeshConfig::default())
    }

    #[test]
    fn valid_tls_and_generic_secrets() {
        let tls = secret("s", "istio-system", &[("tls.crt", VALID), ("tls.key", KEY)]);
        assert_eq!(problem(&tls), None);
        let generic = secret("s", "istio-system", &[("cert", VALID), ("key", KEY)]);
        assert_eq!(problem(&generic), None);
        // The generic pair wins over the TLS pair; the key is never parsed.
        let both = secret(
            "s",
            "istio-system",
            &[
                ("cert", VALID),
                ("key", "not a key"),
                ("tls.crt", "junk"),
                ("tls.key", "x"),
            ],
        );
        assert_eq!(problem(&both), None);
        // A bundle: text before the block is skipped, blocks after the first are not read.
        let bundle = format!("# leaf\n{VALID}{EXPIRED}");
        let s = secret(
            "s",
            "istio-system",
            &[("tls.crt", &bundle), ("tls.key", KEY)],
        );
        assert_eq!(problem(&s), None);
    }

    #[test]
    fn missing_or_empty_keys() {
        let missing = secret(
            "s",
            "istio-system",
            &[("tls.cert", VALID), ("tls.key", KEY)],
        );
        assert_eq!(
            problem(&missing).as_deref(),
            Some(
                "found secret, but didn't have expected keys (cert and key) or (tls.crt and \
                 tls.key); found: tls.cert, tls.key"
            )
        );
        let no_key = secret("s", "istio-system", &[("tls.crt", VALID)]);
        assert!(problem(&no_key).is_some());
        let empty = secret("s", "istio-system", &[("tls.crt", ""), ("tls.key", KEY)]);
        assert_eq!(
            problem(&empty).as_deref(),
            Some("found keys \"tls.crt\" and \"tls.key\", but they were empty")
        );
    }

    #[test]
    fn invalid_pem_or_certificate() {
        let junk = secret(
            "s",
            "istio-system",
            &[("cert", "hush hush hush\n"), ("key", "k")],
        );
        assert_eq!(problem(&junk).as_deref(), Some("pem decode failed"));
        let key_as_cert = secret("s", "istio-system", &[("tls.crt", KEY), ("tls.key", KEY)]);
        assert!(
            problem(&key_as_cert).is_some_and(|p| p.starts_with("invalid certificate")),
            "{:?}",
            problem(&key_as_cert)
        );
        let truncated = VALID.replace("+TGUnbb+WcXH38g=\n", "");
        let s = secret(
            "s",
            "istio-system",
            &[("tls.crt", &truncated), ("tls.key", KEY)],
        );
        assert!(problem(&s).is_some());
    }

    #[test]
    fn validity_period() {
        for cert in [EXPIRED, FUTURE] {
            let s = secret("s", "istio-system", &[("tls.crt", cert), ("tls.key", KEY)]);
            assert_eq!(
                problem(&s).as_deref(),
                Some("certificate is expired or not yet valid")
            );
        }
        // The first block decides: an expired leaf fails even with a valid certificate after it.
        let bundle = format!("{EXPIRED}{VALID}");
        let s = secret(
            "s",
            "istio-system",
            &[("tls.crt", &bundle), ("tls.key", KEY)],
        );
        assert!(problem(&s).is_some());
    }

    #[test]
    fn string_data_counts_as_data() {
        let indent = |pem: &str| pem.replace('\n', "\n    ");
        let yaml = format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: s, namespace: istio-system}}\ndata:\n  tls.crt: aHVzaAo=\nstringData:\n  tls.crt: |\n    {}\n  tls.key: |\n    {}\n",
            indent(VALID),
            indent(KEY)
        );
        assert_eq!(problem(&yaml), None);
    }

    #[test]
    fn gateways_with_invalid_credentials_are_reported() {
        let yaml = [
            secret(
                "good",
                "istio-system",
                &[("tls.crt", VALID), ("tls.key", KEY)],
            ),
            secret(
                "expired",
                "istio-system",
                &[("tls.crt", EXPIRED), ("tls.key", KEY)],
            ),
            secret("no-keys", "istio-system", &[("ca.crt", VALID)]),
            secret(
                "elsewhere",
                "certs",
                &[("tls.crt", EXPIRED), ("tls.key", KEY)],
            ),
            gateway("gw-good", "good"),
            gateway("gw-expired", "expired"),
            gateway("gw-no-keys", "no-keys"),
            gateway("gw-cross-namespace", "certs/elsewhere"),
            // A missing Secret is gateway_secret.rs's IST0101, not IST0161.
            gateway("gw-missing", "nothing-here"),
        ]
        .concat();
        assert_eq!(
            run(&yaml),
            vec![
                "Error [IST0161] (Gateway default/gw-cross-namespace) The credential referenced \
                 by the Gateway gw-cross-namespace in namespace istio-system is invalid, which \
                 can cause the traffic not to work as expected.",
                "Error [IST0161] (Gateway default/gw-expired) The credential referenced by the \
                 Gateway gw-expired in namespace istio-system is invalid, which can cause the \
                 traffic not to work as expected.",
                "Error [IST0161] (Gateway default/gw-no-keys) The credential referenced by the \
                 Gateway gw-no-keys in namespace istio-system is invalid, which can cause the \
                 traffic not to work as expected.",
            ]
        );
    }

    #[test]
    fn the_workload_namespace_decides_where_the_secret_is() {
        let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: gw, namespace: edge, labels: {istio: custom}}\n---\n";
        let custom = gateway("gw", "cred").replace("istio: ingressgateway", "istio: custom");
        let bad = secret("cred", "edge", &[("tls.crt", EXPIRED), ("tls.key", KEY)]);
        let msgs = run(&format!("{pod}{custom}{bad}"));
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        assert!(msgs[0].contains("Gateway gw in namespace edge"), "{msgs:?}");
        // No pod selected: gateway_secret.rs reports the selector, this half stays silent.
        assert!(run(&format!("{custom}{bad}")).is_empty());
        // Without the placeholder ingress gateway the default selector matches nothing either.
        let off = parse_mesh_config("ingressControllerMode: \"OFF\"\n", "mesh.yaml").unwrap();
        let yaml = secret(
            "expired",
            "istio-system",
            &[("tls.crt", EXPIRED), ("tls.key", KEY)],
        ) + &gateway("gw-expired", "expired");
        assert!(run_with(&yaml, &off).is_empty());
        assert_eq!(run(&yaml).len(), 1);
    }
}
