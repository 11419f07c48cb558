//! PEM reading and writing, private key formats, and atomic file writes with the right modes.
//!
//! Kept in one place so that every key file this crate writes is created 0600 from the start
//! (never world-readable, not even for an instant) and replaced atomically (a crash leaves the
//! old file or the new one, never half of one).

use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::FromDer;

/// Mode of private key files: owner read/write only.
pub const KEY_FILE_MODE: u32 = 0o600;
/// Mode of certificate files: public material, world readable.
pub const CERT_FILE_MODE: u32 = 0o644;

/// Writes `contents` to `path` atomically: a temporary file in the same directory, created with
/// `mode`, synced, then renamed over `path`, and the directory synced.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{:016x}",
        name.to_string_lossy(),
        fastrand::u64(..)
    ));
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(mode);
        }
        let mut file = options.open(&tmp)?;
        // The umask may have removed bits from `mode`; set it exactly.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        #[cfg(not(unix))]
        let _ = mode;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// PEM-encodes `der` under `label` (`CERTIFICATE`, `PRIVATE KEY`, `CERTIFICATE REQUEST`):
/// base64 in 64-character lines, LF line endings.
pub fn encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// PEM-encodes certificates, one block after the other.
pub fn certs_to_pem<'a>(certs: impl IntoIterator<Item = &'a CertificateDer<'a>>) -> String {
    certs.into_iter().map(cert_to_pem).collect()
}

/// PEM-encodes one certificate.
pub fn cert_to_pem(cert: &CertificateDer<'_>) -> String {
    encode("CERTIFICATE", cert.as_ref())
}

/// PEM-encodes a key pair's private key as PKCS#8 (`PRIVATE KEY`).
pub fn key_to_pem(key: &rcgen::KeyPair) -> String {
    encode("PRIVATE KEY", &key.serialize_der())
}

/// Parses every `CERTIFICATE` block of `text` (other blocks are skipped), checking that each
/// parses as X.509. An input without any certificate is an error.
pub fn parse_certs_pem(text: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(text.as_bytes()) {
        let cert = cert.map_err(|e| format!("not valid PEM: {e}"))?;
        x509_parser::certificate::X509Certificate::from_der(&cert)
            .map_err(|e| format!("a CERTIFICATE block is not a valid X.509 certificate: {e}"))?;
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err("no CERTIFICATE block found".to_string());
    }
    Ok(certs)
}

/// Parses a private key in PEM: PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`, as Istio's
/// sample `cacerts` use) or SEC1 (`EC PRIVATE KEY`). The ring provider reads only PKCS#8, so
/// the other two are wrapped into PKCS#8 first.
pub fn parse_private_key_pem(text: &str) -> Result<rcgen::KeyPair, String> {
    let key = PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            "no private key found: use an unencrypted PKCS#8, PKCS#1 RSA or SEC1 EC key".to_string()
        }
        other => format!("not valid PEM: {other}"),
    })?;
    match &key {
        PrivateKeyDer::Pkcs8(der) => rcgen::KeyPair::try_from(der.secret_pkcs8_der())
            .map_err(|e| format!("unsupported PKCS#8 private key: {e}")),
        PrivateKeyDer::Pkcs1(der) => {
            rcgen::KeyPair::try_from(pkcs8_wrap(RSA_ALGORITHM_ID, der.secret_pkcs1_der()).as_slice())
                .map_err(|e| format!("unsupported PKCS#1 RSA private key: {e}"))
        }
        PrivateKeyDer::Sec1(der) => [EC_P256_ALGORITHM_ID, EC_P384_ALGORITHM_ID]
            .iter()
            .find_map(|alg| {
                rcgen::KeyPair::try_from(pkcs8_wrap(alg, der.secret_sec1_der()).as_slice()).ok()
            })
            .ok_or_else(|| {
                "unsupported SEC1 EC private key: only P-256 and P-384 keys with their public key are supported"
                    .to_string()
            }),
        _ => Err("unsupported private key type: use PKCS#8, PKCS#1 RSA or SEC1 EC".to_string()),
    }
}

/// AlgorithmIdentifier for rsaEncryption with NULL parameters.
const RSA_ALGORITHM_ID: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];
/// AlgorithmIdentifier for id-ecPublicKey on prime256v1.
const EC_P256_ALGORITHM_ID: &[u8] = &[
    0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
    0xce, 0x3d, 0x03, 0x01, 0x07,
];
/// AlgorithmIdentifier for id-ecPublicKey on secp384r1.
const EC_P384_ALGORITHM_ID: &[u8] = &[
    0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04,
    0x00, 0x22,
];

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// PrivateKeyInfo ::= SEQUENCE { version 0, algorithm, privateKey OCTET STRING }.
fn pkcs8_wrap(algorithm_id: &[u8], key: &[u8]) -> Vec<u8> {
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend_from_slice(algorithm_id);
    body.extend_from_slice(&der_tlv(0x04, key));
    der_tlv(0x30, &body)
}

/// Converts an X.509 time to a `SystemTime`.
pub fn asn1_to_system_time(t: x509_parser::time::ASN1Time) -> SystemTime {
    let secs = t.timestamp();
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// The validity window (not before, not after) of a DER certificate.
pub fn cert_validity(der: &[u8]) -> Result<(SystemTime, SystemTime), String> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| format!("cannot parse certificate: {e}"))?;
    let validity = cert.validity();
    Ok((
        asn1_to_system_time(validity.not_before),
        asn1_to_system_time(validity.not_after),
    ))
}

/// The raw subject public key (the BIT STRING contents) of a DER certificate; compared with a
/// key pair's raw public key to check that they belong together.
pub fn cert_public_key_raw(der: &[u8]) -> Result<Vec<u8>, String> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| format!("cannot parse certificate: {e}"))?;
    Ok(cert.public_key().subject_public_key.data.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_wraps_at_64() {
        let text = encode("CERTIFICATE", &[0u8; 60]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines[2].len(), 80 - 64);
        assert_eq!(lines[3], "-----END CERTIFICATE-----");
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn der_lengths() {
        assert_eq!(der_tlv(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
        let long = der_tlv(0x04, &[0; 200]);
        assert_eq!(&long[..3], &[0x04, 0x81, 200]);
        let longer = der_tlv(0x04, &[0; 1000]);
        assert_eq!(&longer[..4], &[0x04, 0x82, 0x03, 0xe8]);
    }

    #[test]
    fn pkcs8_key_round_trip() {
        let key = rcgen::KeyPair::generate().expect("key");
        let parsed = parse_private_key_pem(&key_to_pem(&key)).expect("parse");
        assert_eq!(parsed.public_key_raw(), key.public_key_raw());
        assert!(parse_private_key_pem("nothing").is_err());
        let cert_only = cert_to_pem(&CertificateDer::from(vec![1, 2, 3]));
        assert!(parse_private_key_pem(&cert_only).is_err());
    }

    #[test]
    fn sec1_and_pkcs1_keys_are_wrapped() {
        let ec =
            parse_private_key_pem(include_str!("../tests/fixtures/ec-sec1-key.pem")).expect("sec1");
        assert_eq!(ec.algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256);
        let rsa = parse_private_key_pem(include_str!("../tests/fixtures/rsa-pkcs1-key.pem"))
            .expect("pkcs1");
        assert_eq!(rsa.algorithm(), &rcgen::PKCS_RSA_SHA256);
        let unknown = encode("ENCRYPTED PRIVATE KEY", &[1, 2, 3]);
        let err = parse_private_key_pem(&unknown).expect_err("encrypted");
        assert!(err.contains("unencrypted"), "{err}");
    }

    #[test]
    fn atomic_write_sets_mode() {
        let dir = crate::test_support::TempDir::new("pemfiles");
        let path = dir.path().join("key.pem");
        write_atomic(&path, b"secret", KEY_FILE_MODE).expect("write");
        write_atomic(&path, b"secret2", KEY_FILE_MODE).expect("rewrite");
        assert_eq!(fs::read(&path).expect("read"), b"secret2");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, KEY_FILE_MODE);
        }
        let leftovers = fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
    }

    #[test]
    fn certs_pem_round_trip() {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::default()
            .self_signed(&key)
            .expect("cert");
        let text = certs_to_pem([cert.der(), cert.der()]);
        let parsed = parse_certs_pem(&text).expect("parse");
        assert_eq!(parsed.len(), 2);
        assert_eq!(&parsed[0], cert.der());
        assert!(parse_certs_pem("").is_err());
        let bad = encode("CERTIFICATE", &[1, 2, 3]);
        assert!(parse_certs_pem(&bad).is_err());
    }
}
