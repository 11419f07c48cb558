//! Real rustls handshakes over 127.0.0.1 TCP between workloads whose certificates come from
//! the weft CA: identity checks, expiry, unknown CAs, rotation.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{TempDir, handshake, id, workload};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_identity::tls::{ALPN_ISTIO_H2, ALPN_ISTIO_PEER_EXCHANGE, ClientAuthMode};
use weft_identity::{
    AllowedIdentities, CaConfig, CertStore, CertificateAuthority, IdentityRule, MtlsClient,
    MtlsServer, TrustDomain, TrustDomainAliases, WorkloadCertificate, WorkloadKey,
};

fn ca(dir: &TempDir) -> CertificateAuthority {
    CertificateAuthority::load_or_create_self_signed(dir.path(), CaConfig::default()).expect("ca")
}

fn mesh() -> AllowedIdentities {
    AllowedIdentities::trust_domain(TrustDomain::default())
}

#[tokio::test]
async fn mtls_between_two_workloads_reads_peer_ids() {
    let dir = TempDir::new("mtls-ok");
    let ca = ca(&dir);
    let reviews = id("spiffe://cluster.local/ns/default/sa/reviews");
    let productpage = id("spiffe://cluster.local/ns/default/sa/productpage");
    let (_, server_store) = workload(&ca, &reviews);
    let (_, client_store) = workload(&ca, &productpage);

    let server = MtlsServer::new(server_store, AllowedIdentities::exact([&productpage]))
        .build()
        .expect("server config");
    let client = MtlsClient::new(client_store, AllowedIdentities::exact([&reviews]))
        .build()
        .expect("client config");
    let outcome = handshake(server, client).await;
    let server = outcome.server.expect("server side");
    let client = outcome.client.expect("client side");
    assert_eq!(server.peer, Some(productpage));
    assert_eq!(client.peer, Some(reviews));
    assert_eq!(server.alpn.as_deref(), Some(ALPN_ISTIO_PEER_EXCHANGE));
    assert_eq!(client.alpn.as_deref(), Some(ALPN_ISTIO_PEER_EXCHANGE));
}

#[tokio::test]
async fn alpn_picks_the_protocol_both_sides_speak() {
    let dir = TempDir::new("mtls-alpn");
    let ca = ca(&dir);
    let (_, a) = workload(&ca, &id("spiffe://cluster.local/ns/default/sa/a"));
    let (_, b) = workload(&ca, &id("spiffe://cluster.local/ns/default/sa/b"));
    let server = MtlsServer::new(a, mesh()).build().expect("server");
    let client = MtlsClient::new(b, mesh())
        .alpn_protocols(vec![ALPN_ISTIO_H2.to_vec()])
        .build()
        .expect("client");
    let outcome = handshake(server, client).await;
    assert_eq!(
        outcome.client.expect("client").alpn.as_deref(),
        Some(ALPN_ISTIO_H2)
    );
}

#[tokio::test]
async fn certificate_of_another_identity_is_refused() {
    // The client expects reviews; the server holds a valid mesh certificate, but for ratings
    // (e.g. a certificate stolen from the ratings workload).
    let dir = TempDir::new("mtls-stolen");
    let ca = ca(&dir);
    let reviews = id("spiffe://cluster.local/ns/default/sa/reviews");
    let ratings = id("spiffe://cluster.local/ns/default/sa/ratings");
    let productpage = id("spiffe://cluster.local/ns/default/sa/productpage");
    let (_, ratings_store) = workload(&ca, &ratings);
    let (_, client_store) = workload(&ca, &productpage);

    let server = MtlsServer::new(ratings_store.clone(), mesh())
        .build()
        .expect("server");
    let client = MtlsClient::new(client_store.clone(), AllowedIdentities::exact([&reviews]))
        .build()
        .expect("client");
    let outcome = handshake(server, client).await;
    let err = outcome.client.expect_err("client must refuse the server");
    assert!(
        err.contains("spiffe://cluster.local/ns/default/sa/ratings") && err.contains("not allowed"),
        "{err}"
    );
    assert!(outcome.server.is_err());

    // Server side: only the productpage service account may call; ratings may not.
    let (_, reviews_store) = workload(&ca, &reviews);
    let server = MtlsServer::new(
        reviews_store,
        AllowedIdentities::new().allow(IdentityRule::service_account(
            TrustDomain::default(),
            "default",
            "productpage",
        )),
    )
    .build()
    .expect("server");
    let client = MtlsClient::new(ratings_store, mesh())
        .build()
        .expect("client");
    let outcome = handshake(server, client).await;
    let err = outcome.server.expect_err("server must refuse the client");
    assert!(
        err.contains("ns/default/sa/ratings is not allowed"),
        "{err}"
    );
    assert!(outcome.client.is_err(), "the client learns of the refusal");
}

#[tokio::test]
async fn namespace_rules_and_trust_domain_aliases() {
    let dir = TempDir::new("mtls-rules");
    let config = CaConfig {
        trust_domain: TrustDomain::new("old.td").expect("td"),
        ..CaConfig::default()
    };
    let ca = CertificateAuthority::load_or_create_self_signed(dir.path(), config).expect("ca");
    let (_, server_store) = workload(&ca, &id("spiffe://old.td/ns/backend/sa/db"));
    let (_, client_store) = workload(&ca, &id("spiffe://old.td/ns/frontend/sa/web"));
    let new_td = TrustDomain::new("new.td").expect("td");

    // The mesh moved to new.td; old.td is an alias, so frontend's old id still matches.
    let allowed = AllowedIdentities::new()
        .allow(IdentityRule::namespace(new_td.clone(), "frontend"))
        .with_aliases(
            TrustDomainAliases::new(new_td.clone())
                .with_alias(TrustDomain::new("old.td").expect("td")),
        );
    let server = MtlsServer::new(server_store.clone(), allowed)
        .build()
        .expect("server");
    let client = MtlsClient::new(client_store.clone(), AllowedIdentities::any())
        .build()
        .expect("client");
    assert!(handshake(server, client).await.both_ok());

    // Without the alias the same rule refuses.
    let server = MtlsServer::new(
        server_store,
        AllowedIdentities::new().allow(IdentityRule::namespace(new_td, "frontend")),
    )
    .build()
    .expect("server");
    let client = MtlsClient::new(client_store, AllowedIdentities::any())
        .build()
        .expect("client");
    assert!(handshake(server, client).await.server.is_err());
}

fn store_with_validity(
    ca: &CertificateAuthority,
    identity: &weft_identity::SpiffeId,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Arc<CertStore> {
    let key = WorkloadKey::generate().expect("key");
    let issued = ca
        .sign_csr_with_validity_for_tests(
            &key.csr_pem(identity).expect("csr"),
            identity,
            not_before,
            not_after,
        )
        .expect("sign");
    Arc::new(CertStore::new(
        WorkloadCertificate::from_issued(&key, &issued).expect("workload"),
    ))
}

#[tokio::test]
async fn expired_certificates_are_refused() {
    let dir = TempDir::new("mtls-expired");
    let ca = ca(&dir);
    let now = SystemTime::now();
    let old = id("spiffe://cluster.local/ns/default/sa/old");
    let expired = store_with_validity(
        &ca,
        &old,
        now - Duration::from_secs(48 * 3600),
        now - Duration::from_secs(24 * 3600),
    );
    assert!(expired.is_expired(now));
    let (_, good) = workload(&ca, &id("spiffe://cluster.local/ns/default/sa/good"));

    // An expired client certificate: the server refuses it.
    let server = MtlsServer::new(good.clone(), mesh())
        .build()
        .expect("server");
    let client = MtlsClient::new(expired.clone(), mesh())
        .build()
        .expect("client");
    let outcome = handshake(server, client).await;
    let err = outcome.server.expect_err("expired client refused");
    assert!(err.contains("certificate expired"), "{err}");

    // An expired server certificate: the client refuses it.
    let server = MtlsServer::new(expired, mesh()).build().expect("server");
    let client = MtlsClient::new(good, mesh()).build().expect("client");
    let outcome = handshake(server, client).await;
    let err = outcome.client.expect_err("expired server refused");
    assert!(err.contains("certificate expired"), "{err}");
}

#[tokio::test]
async fn not_yet_valid_certificates_are_refused() {
    let dir = TempDir::new("mtls-future");
    let ca = ca(&dir);
    let now = SystemTime::now();
    let future = store_with_validity(
        &ca,
        &id("spiffe://cluster.local/ns/default/sa/future"),
        now + Duration::from_secs(3600),
        now + Duration::from_secs(7200),
    );
    let (_, good) = workload(&ca, &id("spiffe://cluster.local/ns/default/sa/good"));
    let server = MtlsServer::new(good, mesh()).build().expect("server");
    let client = MtlsClient::new(future, mesh()).build().expect("client");
    let err = handshake(server, client).await.server.expect_err("refused");
    assert!(err.contains("not valid yet"), "{err}");
}

#[tokio::test]
async fn certificate_from_an_unknown_ca_is_refused() {
    let dir_a = TempDir::new("mtls-ca-a");
    let dir_b = TempDir::new("mtls-ca-b");
    let ca_a = ca(&dir_a);
    let ca_b = ca(&dir_b);
    // Same trust domain and the same identity: only the CA differs.
    let identity = id("spiffe://cluster.local/ns/default/sa/web");
    let (_, mesh_a) = workload(&ca_a, &id("spiffe://cluster.local/ns/default/sa/api"));
    let (_, intruder) = workload(&ca_b, &identity);
    // The intruder knows the mesh's public root too, so only the mesh side's check decides.
    let mut both = ca_a.trust_bundle();
    both.extend(ca_b.trust_bundle());
    intruder.update_bundle(weft_identity::TrustBundle::new(both).expect("bundle"));

    let server = MtlsServer::new(mesh_a.clone(), mesh())
        .build()
        .expect("server");
    let client = MtlsClient::new(intruder.clone(), mesh())
        .build()
        .expect("client");
    let err = handshake(server, client).await.server.expect_err("refused");
    assert!(err.contains("UnknownIssuer"), "{err}");

    let server = MtlsServer::new(intruder, mesh()).build().expect("server");
    let client = MtlsClient::new(mesh_a, mesh()).build().expect("client");
    let err = handshake(server, client).await.client.expect_err("refused");
    assert!(err.contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn optional_client_auth_accepts_a_client_without_certificate() {
    let dir = TempDir::new("mtls-optional");
    let ca = ca(&dir);
    let (_, server_store) = workload(&ca, &id("spiffe://cluster.local/ns/default/sa/web"));
    let server = MtlsServer::new(server_store.clone(), mesh())
        .client_auth(ClientAuthMode::Optional)
        .build()
        .expect("server");
    // A client that trusts the mesh root but has no certificate of its own.
    let mut roots = rustls::RootCertStore::empty();
    for root in ca.trust_bundle() {
        roots.add(root).expect("root");
    }
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AcceptAnyServer))
    .with_no_client_auth();
    let outcome = handshake(server, client).await;
    let server = outcome.server.expect("server accepts");
    assert_eq!(server.peer, None, "no client certificate, no peer identity");

    // STRICT refuses the same client.
    let strict = MtlsServer::new(server_store, mesh())
        .build()
        .expect("server");
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AcceptAnyServer))
    .with_no_client_auth();
    let err = handshake(strict, client).await.server.expect_err("strict");
    assert!(
        err.contains("NoCertificatesPresented") || err.contains("certificate"),
        "{err}"
    );
}

/// A test-only verifier for the certificate-less client above (its server check is not what
/// the test is about).
#[derive(Debug)]
struct AcceptAnyServer;

impl rustls::client::danger::ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[tokio::test]
async fn root_rotation_keeps_old_and_new_workloads_talking() {
    let dir = TempDir::new("mtls-rotation");
    let ca = ca(&dir);
    let old_root = ca.signing_certificate();
    let a = id("spiffe://cluster.local/ns/default/sa/a");
    let b = id("spiffe://cluster.local/ns/default/sa/b");
    let (_, a_store) = workload(&ca, &a);

    let new_root = ca.rotate_root().expect("rotate");
    assert_ne!(new_root, old_root);
    assert_eq!(
        ca.signing_certificate(),
        new_root,
        "signing switched to the new root"
    );
    assert_eq!(ca.trust_bundle(), vec![old_root.clone(), new_root.clone()]);

    // b is issued by the new root and receives the bundle with both roots; a still holds its
    // old-root certificate and gets the new bundle pushed.
    let (_, b_store) = workload(&ca, &b);
    assert_eq!(b_store.current().bundle().certs().len(), 2);
    a_store.update_bundle(weft_identity::TrustBundle::new(ca.trust_bundle()).expect("bundle"));

    for (server, client) in [(&a_store, &b_store), (&b_store, &a_store)] {
        let outcome = handshake(
            MtlsServer::new(server.clone(), mesh())
                .build()
                .expect("server"),
            MtlsClient::new(client.clone(), mesh())
                .build()
                .expect("client"),
        )
        .await;
        assert!(outcome.both_ok(), "{outcome:?}");
    }

    // The CA restarts: both roots are reloaded, and it still signs with the new one.
    drop(ca);
    let ca = CertificateAuthority::load_or_create_self_signed(dir.path(), CaConfig::default())
        .expect("reload");
    assert_eq!(ca.trust_bundle(), vec![old_root.clone(), new_root.clone()]);
    assert_eq!(ca.signing_certificate(), new_root);

    // Retire the old root: b takes the new bundle and refuses a's old-root certificate.
    ca.retire_root(&old_root).expect("retire");
    assert_eq!(ca.trust_bundle(), vec![new_root.clone()]);
    assert!(
        ca.retire_root(&new_root).is_err(),
        "the signing root cannot be retired"
    );
    b_store.update_bundle(weft_identity::TrustBundle::new(ca.trust_bundle()).expect("bundle"));
    let outcome = handshake(
        MtlsServer::new(b_store, mesh()).build().expect("server"),
        MtlsClient::new(a_store, mesh()).build().expect("client"),
    )
    .await;
    let err = outcome.server.expect_err("old root retired");
    assert!(err.contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn rotation_applies_to_new_connections_without_disturbing_old_ones() {
    let dir = TempDir::new("mtls-swap");
    let ca = ca(&dir);
    let server_id = id("spiffe://cluster.local/ns/default/sa/server");
    let (_, server_store) = workload(&ca, &server_id);
    let (_, client_store) = workload(&ca, &id("spiffe://cluster.local/ns/default/sa/client"));
    let first_leaf = server_store.current().chain()[0].clone();

    let server_config = Arc::new(
        MtlsServer::new(server_store.clone(), mesh())
            .build()
            .expect("server"),
    );
    let client_config = Arc::new(
        MtlsClient::new(client_store, mesh())
            .build()
            .expect("client"),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config);
    // An echo server for two connections.
    let server = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let (tcp, _) = listener.accept().await.expect("accept");
            let acceptor = acceptor.clone();
            tasks.push(tokio::spawn(async move {
                let mut tls = acceptor.accept(tcp).await.expect("tls accept");
                let mut buf = [0u8; 64];
                loop {
                    let n = tls.read(&mut buf).await.expect("read");
                    if n == 0 {
                        break;
                    }
                    tls.write_all(&buf[..n]).await.expect("write");
                }
            }));
        }
        for t in tasks {
            t.await.expect("echo task");
        }
    });
    let connector = tokio_rustls::TlsConnector::from(client_config);
    let name = rustls_pki_types::ServerName::try_from("reviews").expect("name");
    let connect = || async {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        connector
            .connect(name.clone(), tcp)
            .await
            .expect("handshake")
    };
    let echo = |mut tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
                msg: &'static [u8]| async move {
        tls.write_all(msg).await.expect("write");
        let mut buf = vec![0u8; msg.len()];
        tls.read_exact(&mut buf).await.expect("read");
        assert_eq!(buf, msg);
        tls
    };

    let first = connect().await;
    assert_eq!(
        first.get_ref().1.peer_certificates().expect("certs")[0],
        first_leaf
    );
    let first = echo(first, b"before rotation").await;

    // Rotate the server's certificate (same identity, new key).
    let key = WorkloadKey::generate().expect("key");
    let issued = ca
        .sign_csr(&key.csr_pem(&server_id).expect("csr"), &server_id, None)
        .expect("sign");
    server_store
        .rotate(WorkloadCertificate::from_issued(&key, &issued).expect("cert"))
        .expect("rotate");

    // The established connection goes on; a new one sees the new certificate.
    let mut first = echo(first, b"after rotation, old connection").await;
    let second = connect().await;
    let second_leaf = second.get_ref().1.peer_certificates().expect("certs")[0].clone();
    assert_ne!(second_leaf, first_leaf);
    assert_eq!(second_leaf, issued.chain()[0]);
    let mut second = echo(second, b"new connection").await;
    first.shutdown().await.expect("close first");
    second.shutdown().await.expect("close second");
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server done")
        .expect("server ok");

    // A rotation to another identity is refused.
    let other = id("spiffe://cluster.local/ns/default/sa/other");
    let key = WorkloadKey::generate().expect("key");
    let issued = ca
        .sign_csr(&key.csr_pem(&other).expect("csr"), &other, None)
        .expect("sign");
    let err = server_store
        .rotate(WorkloadCertificate::from_issued(&key, &issued).expect("cert"))
        .expect_err("identity change");
    assert!(err.to_string().contains("sa/other"), "{err}");
    assert_eq!(server_store.identity(), server_id);
}
