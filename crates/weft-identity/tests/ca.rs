//! The CA on disk and over the wire: self-signed persistence, plugged-in `cacerts` (made by
//! OpenSSL and by rcgen), CSR refusal, rotation timing.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use common::{TempDir, handshake, id, workload};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls_pki_types::UnixTime;
use weft_identity::ca::{CA_CERT_FILE, CA_KEY_FILE, CERT_CHAIN_FILE, CaMode, ROOT_CERT_FILE};
use weft_identity::pem;
use weft_identity::trust::Usage;
use weft_identity::workload::ROTATION_JITTER;
use weft_identity::{
    AllowedIdentities, CaConfig, CaError, CertificateAuthority, MtlsClient, MtlsServer,
    TrustBundle, TrustDomain, WorkloadCertificate, WorkloadKey,
};

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn issue_and_verify() {
    let dir = TempDir::new("ca-issue");
    let ca = CertificateAuthority::load_or_create_self_signed(dir.path(), CaConfig::default())
        .expect("ca");
    assert_eq!(ca.mode(), CaMode::SelfSigned);
    let me = id("spiffe://cluster.local/ns/bookinfo/sa/reviews");
    let key = WorkloadKey::generate().expect("key");
    let issued = ca
        .sign_csr(&key.csr_pem(&me).expect("csr"), &me, None)
        .expect("sign");

    // Validity: starts a little in the past (clock skew), lasts the default 24 h.
    let now = SystemTime::now();
    assert!(issued.not_before() < now - Duration::from_secs(60));
    let ttl = issued.not_after().duration_since(now).expect("future");
    assert!(ttl <= Duration::from_secs(24 * 3600) && ttl > Duration::from_secs(24 * 3600 - 60));

    let bundle = TrustBundle::new(issued.roots().to_vec()).expect("bundle");
    for usage in [Usage::Client, Usage::Server] {
        let verified = bundle
            .verify(issued.leaf(), &issued.chain()[1..], UnixTime::now(), usage)
            .expect("verifies");
        assert_eq!(verified, me);
    }
    let cert = WorkloadCertificate::from_issued(&key, &issued).expect("workload");
    assert_eq!(cert.identity(), &me);

    // The PEM forms round-trip, and Istio's response shape ends with the roots.
    let chain_pem = issued.chain_pem().concat();
    let again = WorkloadCertificate::from_pem(&key, &chain_pem, &issued.roots_pem()).expect("pem");
    assert_eq!(again.chain(), cert.chain());
    let istio = issued.istio_cert_chain();
    assert_eq!(istio.last(), Some(&ca.trust_bundle_pem()));

    // A certificate does not belong to another key.
    let other_key = WorkloadKey::generate().expect("key");
    assert!(WorkloadCertificate::from_issued(&other_key, &issued).is_err());
}

#[test]
fn csr_for_another_identity_is_refused() {
    let dir = TempDir::new("ca-refuse");
    let ca = CertificateAuthority::load_or_create_self_signed(dir.path(), CaConfig::default())
        .expect("ca");
    let caller = id("spiffe://cluster.local/ns/default/sa/ratings");
    let target = id("spiffe://cluster.local/ns/istio-system/sa/istiod");
    let key = WorkloadKey::generate().expect("key");
    // The caller proved it is ratings but asks for istiod's identity.
    let err = ca
        .sign_csr(&key.csr_pem(&target).expect("csr"), &caller, None)
        .expect_err("refused");
    assert!(matches!(err, CaError::IdentityMismatch { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("istiod") && text.contains("sa/ratings"),
        "{text}"
    );
    // The same identity in another trust domain is another identity.
    let foreign = id("spiffe://evil.td/ns/default/sa/ratings");
    assert!(
        ca.sign_csr(&key.csr_pem(&foreign).expect("csr"), &caller, None)
            .is_err()
    );
}

#[test]
fn self_signed_files_are_persisted_with_modes_and_reloaded() {
    let dir = TempDir::new("ca-files");
    let root_dir = dir.path().join("ca");
    let ca = CertificateAuthority::load_or_create_self_signed(&root_dir, CaConfig::default())
        .expect("ca");
    let root = ca.signing_certificate();
    assert_eq!(mode_of(&root_dir.join(CA_KEY_FILE)), 0o600);
    assert_eq!(mode_of(&root_dir.join(CA_CERT_FILE)), 0o644);
    assert_eq!(mode_of(&root_dir.join(ROOT_CERT_FILE)), 0o644);
    let names: Vec<String> = std::fs::read_dir(&root_dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "no temporary files left: {names:?}");

    // A restart reloads the same root, and certificates issued before still verify.
    let me = id("spiffe://cluster.local/ns/default/sa/a");
    let (_, store) = workload(&ca, &me);
    drop(ca);
    let ca = CertificateAuthority::open(&root_dir, CaConfig::default()).expect("reload");
    assert_eq!(ca.mode(), CaMode::SelfSigned);
    assert_eq!(ca.signing_certificate(), root);
    let bundle = TrustBundle::new(ca.trust_bundle()).expect("bundle");
    let current = store.current();
    let leaf = &current.chain()[0];
    assert_eq!(
        bundle
            .verify(leaf, &[], UnixTime::now(), Usage::Client)
            .expect("verifies"),
        me
    );

    // Rotation rewrites the files with the same modes.
    ca.rotate_root().expect("rotate");
    assert_eq!(mode_of(&root_dir.join(CA_KEY_FILE)), 0o600);
    assert_eq!(mode_of(&root_dir.join(ROOT_CERT_FILE)), 0o644);

    // A corrupt key file is reported with its path, never replaced silently.
    std::fs::write(root_dir.join(CA_KEY_FILE), "garbage").expect("write");
    let err = CertificateAuthority::load_or_create_self_signed(&root_dir, CaConfig::default())
        .expect_err("corrupt");
    assert!(err.to_string().contains(CA_KEY_FILE), "{err}");
}

#[test]
fn interrupted_rotation_recovers_the_new_root_from_the_bundle() {
    // A crash after the key was replaced but before ca-cert.pem: the key's root is in the bundle.
    let dir = TempDir::new("ca-crash");
    let ca = CertificateAuthority::load_or_create_self_signed(dir.path(), CaConfig::default())
        .expect("ca");
    let old_cert = std::fs::read(dir.path().join(CA_CERT_FILE)).expect("read");
    let new_root = ca.rotate_root().expect("rotate");
    drop(ca);
    std::fs::write(dir.path().join(CA_CERT_FILE), old_cert).expect("simulate crash");
    let ca = CertificateAuthority::load_or_create_self_signed(dir.path(), CaConfig::default())
        .expect("recover");
    assert_eq!(ca.signing_certificate(), new_root);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

#[tokio::test]
async fn plugged_in_openssl_cacerts_sign_with_the_intermediate() {
    // Istio's cacerts layout made by OpenSSL: RSA root, RSA intermediate with a PKCS#1 key.
    let dir = TempDir::new("ca-plugged-openssl");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cacerts-openssl");
    copy_dir(&fixtures, dir.path());
    let ca = CertificateAuthority::open(dir.path(), CaConfig::default()).expect("plugged-in CA");
    assert_eq!(ca.mode(), CaMode::PluggedIn);
    assert!(
        ca.rotate_root().is_err(),
        "plugged-in roots are the operator's"
    );

    let root_pem = std::fs::read_to_string(dir.path().join(ROOT_CERT_FILE)).expect("root");
    let intermediate_pem = std::fs::read_to_string(dir.path().join(CA_CERT_FILE)).expect("ca");
    let me = id("spiffe://cluster.local/ns/default/sa/reviews");
    let key = WorkloadKey::generate().expect("key");
    let issued = ca
        .sign_csr(&key.csr_pem(&me).expect("csr"), &me, None)
        .expect("sign");
    assert_eq!(issued.chain().len(), 2, "leaf and intermediate");
    assert_eq!(issued.chain_pem()[1].trim(), intermediate_pem.trim());
    assert_eq!(issued.roots_pem().trim(), root_pem.trim());

    // The leaf's issuer is exactly the intermediate's subject (byte for byte), and the chain
    // verifies against the root alone.
    let bundle = TrustBundle::from_pem(&root_pem).expect("bundle");
    assert_eq!(
        bundle
            .verify(
                issued.leaf(),
                &issued.chain()[1..],
                UnixTime::now(),
                Usage::Server
            )
            .expect("chain verifies"),
        me
    );
    // Without the intermediate it does not.
    assert!(
        bundle
            .verify(issued.leaf(), &[], UnixTime::now(), Usage::Server)
            .is_err()
    );

    // Two workloads of the plugged-in CA talk mTLS, presenting leaf + intermediate.
    let (_, a) = workload(&ca, &id("spiffe://cluster.local/ns/default/sa/a"));
    let (_, b) = workload(&ca, &id("spiffe://cluster.local/ns/default/sa/b"));
    let mesh = AllowedIdentities::trust_domain(TrustDomain::default());
    let outcome = handshake(
        MtlsServer::new(a, mesh.clone()).build().expect("server"),
        MtlsClient::new(b, mesh).build().expect("client"),
    )
    .await;
    assert!(outcome.both_ok(), "{outcome:?}");
}

/// A root and an intermediate made with rcgen, written as Istio's cacerts.
fn write_rcgen_cacerts(dir: &Path, chain_includes_root: bool) {
    let root_key = KeyPair::generate().expect("key");
    let mut root = CertificateParams::default();
    root.distinguished_name
        .push(DnType::OrganizationName, "Example Corp");
    root.distinguished_name
        .push(DnType::CommonName, "Example Root");
    root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root_cert = root.self_signed(&root_key).expect("root");
    let root_issuer = rcgen::Issuer::new(root, root_key);

    let int_key = KeyPair::generate().expect("key");
    let mut int = CertificateParams::default();
    int.distinguished_name
        .push(DnType::OrganizationName, "Example Corp");
    int.distinguished_name
        .push(DnType::CommonName, "Mesh Intermediate");
    int.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    int.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    int.use_authority_key_identifier_extension = true;
    let int_cert = int.signed_by(&int_key, &root_issuer).expect("intermediate");

    std::fs::write(dir.join(CA_CERT_FILE), pem::cert_to_pem(int_cert.der())).expect("write");
    std::fs::write(
        dir.join(CA_KEY_FILE),
        pem::encode("PRIVATE KEY", &int_key.serialize_der()),
    )
    .expect("write");
    std::fs::write(dir.join(ROOT_CERT_FILE), pem::cert_to_pem(root_cert.der())).expect("write");
    let chain = if chain_includes_root {
        format!(
            "{}{}",
            pem::cert_to_pem(int_cert.der()),
            pem::cert_to_pem(root_cert.der())
        )
    } else {
        pem::cert_to_pem(int_cert.der())
    };
    std::fs::write(dir.join(CERT_CHAIN_FILE), chain).expect("write");
}

#[test]
fn plugged_in_rcgen_cacerts_and_reload() {
    let dir = TempDir::new("ca-plugged-rcgen");
    write_rcgen_cacerts(dir.path(), true);
    let ca = CertificateAuthority::load_plugged_in(dir.path(), CaConfig::default()).expect("ca");
    let me = id("spiffe://cluster.local/ns/default/sa/a");
    let key = WorkloadKey::generate().expect("key");
    let csr = key.csr_pem(&me).expect("csr");
    let first = ca.sign_csr(&csr, &me, None).expect("sign");
    assert_eq!(
        first.chain().len(),
        2,
        "the root in cert-chain.pem is not handed out as a chain member"
    );

    // The operator replaces cacerts (new root and intermediate, cert-chain without the root)
    // and the CA reloads it.
    write_rcgen_cacerts(dir.path(), false);
    ca.reload().expect("reload");
    let second = ca.sign_csr(&csr, &me, None).expect("sign");
    assert_eq!(second.chain().len(), 2);
    assert_ne!(first.chain()[1], second.chain()[1]);
    let bundle = TrustBundle::new(second.roots().to_vec()).expect("bundle");
    assert!(
        bundle
            .verify(
                second.leaf(),
                &second.chain()[1..],
                UnixTime::now(),
                Usage::Client
            )
            .is_ok()
    );
}

#[test]
fn inconsistent_plugged_in_cacerts_are_refused() {
    // Key of another certificate.
    let dir = TempDir::new("ca-plugged-bad");
    write_rcgen_cacerts(dir.path(), true);
    std::fs::write(
        dir.path().join(CA_KEY_FILE),
        pem::encode(
            "PRIVATE KEY",
            &KeyPair::generate().expect("key").serialize_der(),
        ),
    )
    .expect("write");
    let err = CertificateAuthority::load_plugged_in(dir.path(), CaConfig::default())
        .expect_err("mismatched key");
    assert!(
        err.to_string()
            .contains("is not the private key of ca-cert.pem"),
        "{err}"
    );

    // An intermediate that does not chain to root-cert.pem.
    let dir = TempDir::new("ca-plugged-bad-root");
    write_rcgen_cacerts(dir.path(), true);
    let other = TempDir::new("ca-plugged-other");
    write_rcgen_cacerts(other.path(), true);
    std::fs::copy(
        other.path().join(ROOT_CERT_FILE),
        dir.path().join(ROOT_CERT_FILE),
    )
    .expect("copy");
    let err = CertificateAuthority::load_plugged_in(dir.path(), CaConfig::default())
        .expect_err("foreign root");
    assert!(err.to_string().contains("self-check"), "{err}");

    // A missing file is named.
    let dir = TempDir::new("ca-plugged-missing");
    write_rcgen_cacerts(dir.path(), true);
    std::fs::remove_file(dir.path().join(ROOT_CERT_FILE)).expect("rm");
    let err = CertificateAuthority::load_plugged_in(dir.path(), CaConfig::default())
        .expect_err("missing root");
    assert!(
        err.to_string().contains("root-cert.pem is missing"),
        "{err}"
    );
}

#[test]
fn max_ttl_is_configurable() {
    let dir = TempDir::new("ca-ttl");
    let config = CaConfig {
        max_ttl: Duration::from_secs(3600),
        default_ttl: Duration::from_secs(1800),
        ..CaConfig::default()
    };
    let ca = CertificateAuthority::load_or_create_self_signed(dir.path(), config).expect("ca");
    let me = id("spiffe://cluster.local/ns/default/sa/a");
    let csr = WorkloadKey::generate()
        .expect("key")
        .csr_pem(&me)
        .expect("csr");
    let err = ca
        .sign_csr(&csr, &me, Some(Duration::from_secs(7200)))
        .expect_err("too long");
    assert!(matches!(err, CaError::BadTtl { .. }), "{err}");
    let issued = ca.sign_csr(&csr, &me, None).expect("default");
    let ttl = issued
        .not_after()
        .duration_since(SystemTime::now())
        .expect("future");
    assert!(ttl <= Duration::from_secs(1800) && ttl > Duration::from_secs(1700));
}

#[test]
fn rotation_timing_is_within_the_jitter_window() {
    let dir = TempDir::new("ca-rotation-timing");
    let ca = CertificateAuthority::load_or_create_self_signed(dir.path(), CaConfig::default())
        .expect("ca");
    let me = id("spiffe://cluster.local/ns/default/sa/a");
    let key = WorkloadKey::generate().expect("key");
    let csr = key.csr_pem(&me).expect("csr");
    let issued = ca.sign_csr(&csr, &me, None).expect("sign");
    let lifetime = issued
        .not_after()
        .duration_since(issued.not_before())
        .expect("ordered");
    let earliest = issued.not_before() + lifetime.mul_f64(0.5 * (1.0 - ROTATION_JITTER));
    let latest = issued.not_before() + lifetime.mul_f64(0.5 * (1.0 + ROTATION_JITTER));
    let mut instants = Vec::new();
    for _ in 0..200 {
        let cert = WorkloadCertificate::from_issued(&key, &issued).expect("cert");
        let at = cert.rotate_at();
        assert!(
            at >= earliest && at <= latest,
            "{at:?} outside [{earliest:?}, {latest:?}]"
        );
        instants.push(at);
    }
    instants.sort();
    instants.dedup();
    assert!(instants.len() > 100, "jitter spreads rotation instants");

    let store = weft_identity::CertStore::new(
        WorkloadCertificate::from_issued(&key, &issued).expect("cert"),
    );
    let now = SystemTime::now();
    assert!(!store.needs_rotation(now));
    assert!(store.needs_rotation(store.rotate_at()));
    let wait = store.time_until_rotation(now);
    assert!(wait > Duration::from_secs(10 * 3600) && wait < Duration::from_secs(14 * 3600));
    assert_eq!(store.expires_at(), issued.not_after());
}
