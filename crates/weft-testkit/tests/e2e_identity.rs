//! Workload identity end to end: the control plane's certificate service (Istio's
//! `CreateCertificate` over TLS on the secure port) against a real tonic client, and two
//! `weft-proxy` processes that fetch their own certificates there and talk mTLS to each other
//! while their certificates rotate under load.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_control::server::{ControlPlane, Options};
use weft_identity::trust::Usage;
use weft_identity::{
    AllowedIdentities, CertStore, MtlsClient, SpiffeId, WorkloadCertificate, WorkloadKey,
};
use weft_proxy::identity::{IdentityConfig, fetch};
use weft_testkit::backend::{Backend, Behavior};
use weft_testkit::process::{Proc, binary, free_addr};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "weft-identity-{tag}-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn id(sa: &str) -> SpiffeId {
    format!("spiffe://cluster.local/ns/default/sa/{sa}")
        .parse()
        .expect("spiffe id")
}

async fn control_plane(dir: &Path) -> anyhow::Result<ControlPlane> {
    Ok(ControlPlane::start(Options::new(dir.join("config")).ephemeral()).await?)
}

fn config(cp: &ControlPlane, dir: &Path, who: &SpiffeId, token: Option<&str>) -> IdentityConfig {
    let root = dir.join("root-cert.pem");
    std::fs::write(&root, cp.ca().expect("ca").root_pem()).expect("root file");
    let token_file = token.map(|t| {
        let p = dir.join(format!("token-{}", fastrand_name()));
        std::fs::write(&p, t).expect("token file");
        p
    });
    IdentityConfig {
        ca_addr: cp.secure_addr().expect("secure port").to_string(),
        root_cert: root,
        token_file,
        identity: who.clone(),
        ttl: None,
        server_name: weft_proxy::identity::CA_SERVER_NAME.to_string(),
    }
}

fn fastrand_name() -> String {
    format!(
        "{}",
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_service_signs_only_the_proved_identity() -> anyhow::Result<()> {
    let dir = TempDir::new("ca-service");
    let cp = control_plane(&dir.0).await?;
    let ca = cp.ca().context("certificate service")?.clone();
    let (token, proved) = ca
        .issue_token("default", "reviews")
        .map_err(anyhow::Error::msg)?;
    assert_eq!(proved, id("reviews"));
    // Tokens are stored hashed, never in the clear, and the file is private.
    let stored = std::fs::read_to_string(dir.0.join("config/.ca/tokens.json"))?;
    assert!(!stored.contains(&token), "{stored}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.0.join("config/.ca/tokens.json"))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // A good CSR with the right token: signed for exactly that SPIFFE id, 24 h by default.
    let key = WorkloadKey::generate()?;
    let good = config(&cp, &dir.0, &id("reviews"), Some(&token));
    let cert = fetch(&good, &key, None).await?;
    assert_eq!(cert.identity(), &id("reviews"));
    let life = cert.not_after().duration_since(SystemTime::now())?;
    assert!(
        life > Duration::from_secs(23 * 3600) && life <= Duration::from_secs(24 * 3600),
        "{life:?}"
    );
    assert_eq!(cert.bundle().certs(), ca.ca().trust_bundle().as_slice());

    // The requested lifetime is honoured.
    let short = IdentityConfig {
        ttl: Some(Duration::from_secs(120)),
        ..good.clone()
    };
    let c = fetch(&short, &WorkloadKey::generate()?, None).await?;
    let life = c.not_after().duration_since(SystemTime::now())?;
    assert!(life <= Duration::from_secs(120) && life > Duration::from_secs(100));

    // A CSR for another identity than the token proves: PERMISSION_DENIED, saying why.
    let other = config(&cp, &dir.0, &id("ratings"), Some(&token));
    let err = fetch(&other, &WorkloadKey::generate()?, None)
        .await
        .expect_err("another identity")
        .to_string();
    assert!(err.contains("PermissionDenied"), "{err}");
    assert!(
        err.contains("spiffe://cluster.local/ns/default/sa/ratings")
            && err.contains("authenticated as spiffe://cluster.local/ns/default/sa/reviews"),
        "{err}"
    );

    // No credentials, or an unknown token: UNAUTHENTICATED.
    let none = config(&cp, &dir.0, &id("reviews"), None);
    let err = fetch(&none, &WorkloadKey::generate()?, None)
        .await
        .expect_err("no token")
        .to_string();
    assert!(
        err.contains("Unauthenticated") && err.contains("no credentials"),
        "{err}"
    );
    let bad = config(&cp, &dir.0, &id("reviews"), Some("not-a-token"));
    let err = fetch(&bad, &WorkloadKey::generate()?, None)
        .await
        .expect_err("bad token")
        .to_string();
    assert!(
        err.contains("Unauthenticated") && err.contains("unknown bootstrap token"),
        "{err}"
    );

    // Renewal without a token: the certificate held proves the identity (mTLS to the CA).
    let renewed = fetch(&none, &WorkloadKey::generate()?, Some(&cert)).await?;
    assert_eq!(renewed.identity(), &id("reviews"));
    // ... but only for that identity.
    let other_by_cert = config(&cp, &dir.0, &id("ratings"), None);
    let err = fetch(&other_by_cert, &WorkloadKey::generate()?, Some(&cert))
        .await
        .expect_err("cert proves reviews, not ratings")
        .to_string();
    assert!(err.contains("PermissionDenied"), "{err}");

    // The secure port also serves ADS over the same TLS: a CDS request gets clusters.
    {
        use weft_xds::envoy::config::core::v3::Node;
        use weft_xds::envoy::service::discovery::v3::DiscoveryRequest;
        use weft_xds::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
        let ch = weft_proxy::identity::channel(&good, None, false).await?;
        let mut ads = AggregatedDiscoveryServiceClient::new(ch);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(DiscoveryRequest {
            node: Some(Node {
                id: "sidecar~127.0.0.1~reviews-v1.default~default.svc.cluster.local".into(),
                ..Default::default()
            }),
            type_url: weft_xds::type_url::CLUSTER.into(),
            ..Default::default()
        })
        .await?;
        let mut stream = ads
            .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        let resp = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await??
            .context("no CDS response on the secure port")?;
        assert_eq!(resp.type_url, weft_xds::type_url::CLUSTER);
        assert!(!resp.resources.is_empty());
    }

    // Root rotation, in two phases. First the new root joins the bundle while the old one
    // still signs: a proxy renewing now learns the new root, and its certificate still
    // verifies for peers that know only the old root.
    ca.rotate_root(Some(Duration::from_millis(1500)))?;
    let now = rustls_pki_types::UnixTime::now();
    let staged = fetch(&good, &WorkloadKey::generate()?, Some(&cert)).await?;
    assert_eq!(staged.bundle().certs().len(), 2);
    assert_eq!(
        cert.bundle()
            .verify(&staged.chain()[0], &staged.chain()[1..], now, Usage::Client)?,
        id("reviews"),
        "while staged, the old root signs"
    );
    // After the grace period the new root signs; the bundle carries both roots, and
    // certificates from either verify against it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = fetch(&good, &WorkloadKey::generate()?, Some(&staged)).await?;
    assert_eq!(after.bundle().certs().len(), 2);
    let now = rustls_pki_types::UnixTime::now();
    assert_eq!(
        staged
            .bundle()
            .verify(&after.chain()[0], &after.chain()[1..], now, Usage::Client)?,
        id("reviews"),
        "a proxy that renewed during the grace period knows the new root"
    );
    assert_eq!(
        after
            .bundle()
            .verify(&cert.chain()[0], &cert.chain()[1..], now, Usage::Client)?,
        id("reviews"),
        "a certificate from the old root still verifies"
    );
    assert_eq!(
        after
            .bundle()
            .verify(&after.chain()[0], &after.chain()[1..], now, Usage::Client)?,
        id("reviews")
    );
    assert!(
        cert.bundle()
            .verify(&after.chain()[0], &after.chain()[1..], now, Usage::Client)
            .is_err(),
        "the old bundle alone does not know the new root"
    );
    cp.shutdown().await;
    Ok(())
}

fn router() -> Value {
    json!([{"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}])
}

fn hcm(stat: &str, cluster: &str) -> Value {
    json!({"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": stat,
        "forward_client_cert_details": "APPEND_FORWARD",
        "set_current_client_cert_details": {"uri": true},
        "route_config": {"name": stat, "virtual_hosts": [{"name": "all", "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}]}]},
        "http_filters": router()}})
}

fn sds(name: &str) -> Value {
    json!({"name": name, "sds_config": {"api_config_source": {"api_type": "GRPC",
        "transport_api_version": "V3", "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}]},
        "resource_api_version": "V3"}})
}

fn addr_json(a: SocketAddr) -> Value {
    json!({"socket_address": {"address": a.ip().to_string(), "port_value": a.port()}})
}

fn node(sa: &str, extra: Value) -> Value {
    let mut md = json!({"NAMESPACE": "default", "SERVICE_ACCOUNT": sa});
    if let (Some(m), Some(e)) = (md.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            m.insert(k.clone(), v.clone());
        }
    }
    json!({"id": format!("sidecar~127.0.0.1~{sa}.default~default.svc.cluster.local"), "cluster": sa, "metadata": md})
}

/// The server sidecar: a STRICT inbound listener (mTLS only) in front of `backend`.
fn server_bootstrap(
    admin: SocketAddr,
    inbound: SocketAddr,
    backend: SocketAddr,
    md: Value,
) -> Value {
    json!({
        "node": node("reviews", md),
        "admin": {"address": addr_json(admin)},
        "static_resources": {
            "listeners": [{"name": "inbound", "address": addr_json(inbound),
                "listener_filters": [{"name": "envoy.filters.listener.tls_inspector", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}],
                "filter_chains": [{
                    "filter_chain_match": {"transport_protocol": "tls"},
                    "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                        "require_client_certificate": true,
                        "common_tls_context": {
                            "alpn_protocols": ["istio-peer-exchange", "h2", "http/1.1"],
                            "tls_certificate_sds_secret_configs": [sds("default")],
                            "combined_validation_context": {
                                "default_validation_context": {"match_subject_alt_names": [{"prefix": "spiffe://cluster.local/"}]},
                                "validation_context_sds_secret_config": sds("ROOTCA")}}}},
                    "filters": [hcm("inbound", "inbound|9080||")]}]}],
            "clusters": [{"name": "inbound|9080||", "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": {"cluster_name": "inbound|9080||", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": addr_json(backend)}}]}]}}]
        }
    })
}

/// The client sidecar: a plaintext outbound listener whose cluster upgrades to mTLS
/// (`tlsMode: istio`) and expects the server's SPIFFE id.
fn client_bootstrap(
    admin: SocketAddr,
    outbound: SocketAddr,
    server: SocketAddr,
    md: Value,
) -> Value {
    json!({
        "node": node("productpage", md),
        "admin": {"address": addr_json(admin)},
        "static_resources": {
            "listeners": [{"name": "outbound", "address": addr_json(outbound),
                "filter_chains": [{"filters": [hcm("outbound", "outbound|9080||reviews")]}]}],
            "clusters": [{"name": "outbound|9080||reviews", "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": {"cluster_name": "outbound|9080||reviews", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": addr_json(server)},
                     "metadata": {"filter_metadata": {"envoy.transport_socket_match": {"tlsMode": "istio"}}}}]}]},
                "transport_socket_matches": [{"name": "tlsMode-istio", "match": {"tlsMode": "istio"}, "transport_socket": {
                    "name": "envoy.transport_sockets.tls", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                        "sni": "outbound_.9080_._.reviews.default.svc.cluster.local",
                        "common_tls_context": {
                            "alpn_protocols": ["istio-peer-exchange", "istio-http/1.1"],
                            "tls_certificate_sds_secret_configs": [sds("default")],
                            "combined_validation_context": {
                                "default_validation_context": {"match_subject_alt_names": [
                                    {"exact": "spiffe://cluster.local/ns/default/sa/reviews"}]},
                                "validation_context_sds_secret_config": sds("ROOTCA")}}}}}]}]
        }
    })
}

fn start_proxy(
    dir: &Path,
    name: &str,
    bootstrap: &Value,
    flags: &[String],
) -> anyhow::Result<Proc> {
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(bootstrap)?)?;
    let mut cmd = Command::new(binary("weft-proxy")?);
    cmd.arg("-c").arg(&path).args(flags).env("RUST_LOG", "info");
    Proc::spawn(name, cmd, &dir.join(format!("{name}.log")), false)
}

async fn admin_get(admin: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let r = weft_testkit::http::get(admin, "admin", path, &[], Duration::from_secs(5)).await?;
    Ok((r.status, r.body))
}

async fn wait_ready(admin: SocketAddr, p: &Proc) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok((200, _)) = admin_get(admin, "/ready").await {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("not ready in time\n{}", p.log_tail(30));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Serial number of the `default` certificate a proxy presents now (from `/certs`).
async fn serial(admin: SocketAddr) -> anyhow::Result<String> {
    let (_, body) = admin_get(admin, "/certs").await?;
    let v: Value = serde_json::from_str(&body)?;
    v["certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "default")
        .and_then(|c| c["cert_chain"][0]["serial_number"].as_str())
        .map(str::to_string)
        .context("no default certificate")
}

/// One HTTP/1.1 request over mTLS with `cert` straight to the server sidecar's inbound port;
/// `None` when the server refused the certificate.
async fn direct_mtls(
    addr: SocketAddr,
    cert: WorkloadCertificate,
) -> anyhow::Result<Option<String>> {
    let store = Arc::new(CertStore::new(cert));
    let cfg = MtlsClient::new(store, AllowedIdentities::exact([&id("reviews")]))
        .alpn_protocols(vec![b"istio-http/1.1".to_vec()])
        .build()?;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("reviews.default.svc")?;
    let Ok(mut s) = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
    else {
        return Ok(None);
    };
    if s.write_all(b"GET / HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n")
        .await
        .is_err()
    {
        return Ok(None);
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await?;
    Ok((!out.is_empty()).then(|| String::from_utf8_lossy(&out).into_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_fetch_identity_mtls_and_rotate_under_load() -> anyhow::Result<()> {
    let dir = TempDir::new("proxies");
    let cp = control_plane(&dir.0).await?;
    let ca = cp.ca().context("certificate service")?.clone();
    let secure = cp.secure_addr().context("secure port")?;
    let root = dir.0.join("root-cert.pem");
    std::fs::write(&root, ca.root_pem())?;

    // Tokens: one through the CLI (`weft x token`), one through the library.
    let reviews_token = dir.0.join("reviews.token");
    let out = Command::new(binary("weft")?)
        .args([
            "x",
            "token",
            "--namespace",
            "default",
            "--service-account",
            "reviews",
        ])
        .arg("--out")
        .arg(&reviews_token)
        .args(["--control-plane", &format!("http://{}", cp.admin_addr())])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (pp_token, _) = ca
        .issue_token("default", "productpage")
        .map_err(anyhow::Error::msg)?;
    let pp_token_file = dir.0.join("productpage.token");
    std::fs::write(&pp_token_file, pp_token)?;

    let backend = Backend::start("reviews-v1", Behavior::Ok).await?;
    let (s_admin, s_in) = (free_addr()?, free_addr()?);
    let (c_admin, c_out) = (free_addr()?, free_addr()?);
    // The server sidecar takes its CA settings from node metadata, the client from flags;
    // both ask for 4 s certificates, so that they rotate every 2 s or so.
    let server = start_proxy(
        &dir.0,
        "reviews",
        &server_bootstrap(
            s_admin,
            s_in,
            backend.addr,
            json!({"CA_ADDR": secure.to_string(), "CA_ROOT_CA": root.display().to_string(),
                   "CA_TOKEN_FILE": reviews_token.display().to_string(), "SECRET_TTL": "4s"}),
        ),
        &[],
    )?;
    let client = start_proxy(
        &dir.0,
        "productpage",
        &client_bootstrap(c_admin, c_out, s_in, json!({})),
        &[
            "--ca-addr".into(),
            secure.to_string(),
            "--ca-root-cert".into(),
            root.display().to_string(),
            "--ca-token-file".into(),
            pp_token_file.display().to_string(),
            "--secret-ttl".into(),
            "4s".into(),
        ],
    )?;
    // A proxy whose token is wrong never gets a certificate and so never becomes ready.
    let bad_token = dir.0.join("bad.token");
    std::fs::write(&bad_token, "wrong")?;
    let (b_admin, b_out) = (free_addr()?, free_addr()?);
    let unready = start_proxy(
        &dir.0,
        "unready",
        &client_bootstrap(b_admin, b_out, s_in, json!({})),
        &[
            "--ca-addr".into(),
            secure.to_string(),
            "--ca-root-cert".into(),
            root.display().to_string(),
            "--ca-token-file".into(),
            bad_token.display().to_string(),
        ],
    )?;
    wait_ready(s_admin, &server).await?;
    wait_ready(c_admin, &client).await?;

    // mTLS between the two sidecars: the server saw the client's SPIFFE id.
    let r = weft_testkit::http::get(c_out, "reviews", "/", &[], Duration::from_secs(5)).await?;
    assert_eq!(r.status, 200, "{}", client.log_tail(20));
    let seen = backend.seen();
    let xfcc = seen
        .last()
        .and_then(|s| s.headers.get("x-forwarded-client-cert"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        xfcc.contains("URI=spiffe://cluster.local/ns/default/sa/productpage"),
        "{xfcc}"
    );

    // Plaintext to the STRICT port is refused.
    let plain = weft_testkit::http::get(s_in, "reviews", "/", &[], Duration::from_secs(3)).await;
    assert!(plain.is_err(), "plaintext accepted: {plain:?}");

    // Rotation under load: requests on one kept-alive connection and on new connections
    // while both proxies renew their certificates twice; nothing may fail.
    let s0 = serial(s_admin).await?;
    let c0 = serial(c_admin).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for kept_alive in [true, false, false] {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let mut conn = if kept_alive {
                weft_testkit::http::Conn::connect(c_out).await.ok()
            } else {
                None
            };
            while !stop.load(Ordering::Relaxed) {
                let r = match conn.as_mut() {
                    Some(c) => c.get("reviews", "/", Duration::from_secs(5)).await,
                    None => {
                        weft_testkit::http::get(c_out, "reviews", "/", &[], Duration::from_secs(5))
                            .await
                    }
                };
                match r {
                    Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let rotated = async {
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut s_rot, mut c_rot) = (0, 0);
        let (mut s_last, mut c_last) = (s0.clone(), c0.clone());
        while (s_rot < 2 || c_rot < 2) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (s, c) = (serial(s_admin).await?, serial(c_admin).await?);
            if s != s_last {
                s_rot += 1;
                s_last = s;
            }
            if c != c_last {
                c_rot += 1;
                c_last = c;
            }
        }
        anyhow::Ok((s_rot, c_rot))
    }
    .await?;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await?;
    }
    assert!(
        rotated.0 >= 2 && rotated.1 >= 2,
        "rotations seen (server, client): {rotated:?}\n{}\n{}",
        server.log_tail(20),
        client.log_tail(20)
    );
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "rotation under load: {ok} requests, {failed} failed; rotations (server, client) {rotated:?}"
    );
    assert!(ok > 50, "too little load to mean anything: {ok}");
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed during rotation",
        ok + failed
    );

    // An expired certificate of the mesh is refused; a valid one of the same CA is accepted.
    let key = WorkloadKey::generate()?;
    let who = id("productpage");
    let past = SystemTime::now() - Duration::from_secs(3600);
    let issued = ca.ca().sign_csr_with_validity_for_tests(
        &key.csr_pem(&who)?,
        &who,
        past - Duration::from_secs(3600),
        past,
    )?;
    let expired = WorkloadCertificate::from_issued(&key, &issued)?;
    assert_eq!(
        direct_mtls(s_in, expired).await?,
        None,
        "expired certificate accepted"
    );
    let key = WorkloadKey::generate()?;
    let fresh = WorkloadCertificate::from_issued(
        &key,
        &ca.ca().sign_csr(&key.csr_pem(&who)?, &who, None)?,
    )?;
    let answer = direct_mtls(s_in, fresh)
        .await?
        .context("valid certificate refused")?;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // The proxy with a wrong token stays unready.
    let (status, body) = admin_get(b_admin, "/ready").await?;
    assert_eq!(status, 503, "{body}");
    let log = unready.log_tail(50);
    assert!(log.contains("unknown bootstrap token"), "{log}");

    // `weft proxy-config secret` reads the proxy's admin: istioctl's columns, the identity in
    // the JSON form, never a key.
    let out = Command::new(binary("weft")?)
        .args(["proxy-config", "secret", &c_admin.to_string()])
        .output()?;
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let header = table.lines().next().unwrap_or_default();
    for col in [
        "RESOURCE NAME",
        "TYPE",
        "STATUS",
        "VALID CERT",
        "SERIAL NUMBER",
        "NOT AFTER",
        "NOT BEFORE",
    ] {
        assert!(header.contains(col), "{table}");
    }
    let default_row = table
        .lines()
        .find(|l| l.starts_with("default"))
        .with_context(|| table.clone())?;
    assert!(
        default_row.contains("Cert Chain")
            && default_row.contains("ACTIVE")
            && default_row.contains("true"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("ROOTCA") && l.contains("CA")),
        "{table}"
    );
    let out = Command::new(binary("weft")?)
        .args(["proxy-config", "secret", &c_admin.to_string(), "-o", "json"])
        .output()?;
    let v: Value = serde_json::from_slice(&out.stdout)?;
    let default = v["secrets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["resource_name"] == "default")
        .with_context(|| v.to_string())?;
    assert_eq!(
        default["identities"][0], "spiffe://cluster.local/ns/default/sa/productpage",
        "{v}"
    );
    let (_, dump) = admin_get(c_admin, "/config_dump").await?;
    assert!(
        !dump.contains("PRIVATE KEY"),
        "a key leaked into /config_dump"
    );

    drop((server, client, unready));
    cp.shutdown().await;
    Ok(())
}

#[test]
fn bootstrap_builder_points_the_proxy_at_the_ca() -> anyhow::Result<()> {
    use weft_control::bootstrap::{CaSettings, WorkloadBootstrap};
    let b = WorkloadBootstrap::sidecar("reviews-v1", "default", "127.0.0.1")
        .ca(CaSettings {
            addr: "127.0.0.1:15012".parse()?,
            root_cert: "/etc/weft/root-cert.pem".into(),
            token_file: Some("/etc/weft/token".into()),
        })
        .build();
    let mut b = b;
    if let Some(md) = b.node.as_mut().and_then(|n| n.metadata.as_mut()) {
        md.fields.insert(
            "SERVICE_ACCOUNT".into(),
            weft_xds::google::protobuf::Value {
                kind: Some(weft_xds::google::protobuf::value::Kind::StringValue(
                    "reviews".into(),
                )),
            },
        );
    }
    let cfg = IdentityConfig::from_bootstrap(&b, &Default::default())?
        .context("CA settings not read back")?;
    assert_eq!(cfg.ca_addr, "127.0.0.1:15012");
    assert_eq!(cfg.root_cert, PathBuf::from("/etc/weft/root-cert.pem"));
    assert_eq!(cfg.token_file, Some(PathBuf::from("/etc/weft/token")));
    assert_eq!(cfg.identity, id("reviews"));
    // Without CA settings the proxy asks for no identity.
    let plain = WorkloadBootstrap::sidecar("reviews-v1", "default", "127.0.0.1").build();
    assert!(IdentityConfig::from_bootstrap(&plain, &Default::default())?.is_none());
    Ok(())
}
