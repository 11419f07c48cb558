//! Zero trust end to end with real processes: a control plane whose certificate service gives
//! every sidecar its SPIFFE identity, sidecars that upgrade mesh traffic to mTLS on their own
//! (`tlsMode: istio` endpoints), PeerAuthentication STRICT / PERMISSIVE on the inbound side,
//! and AuthorizationPolicy ALLOW / DENY decided on the peer principal from the handshake.

use std::time::Duration;

use anyhow::Context;
use weft_testkit::backend::Behavior;
use weft_testkit::http;
use weft_testkit::mesh::{Mesh, MeshOptions, SERVICE_PORT, eventually};

const PRODUCTPAGE: &str = "spiffe://cluster.local/ns/default/sa/productpage";
const RATINGS: &str = "spiffe://cluster.local/ns/default/sa/ratings";

async fn secure_mesh() -> anyhow::Result<Mesh> {
    let mut mesh = Mesh::start(MeshOptions {
        identity: true,
        service_account_prefix: String::new(),
        ..MeshOptions::default()
    })
    .await?;
    mesh.add_workloads(&[
        ("productpage", "v1", Behavior::Ok),
        ("reviews", "v1", Behavior::Ok),
        ("ratings", "v1", Behavior::Ok),
    ])
    .await?;
    Ok(mesh)
}

/// The `x-forwarded-client-cert` header of the last request reviews-v1's backend saw.
fn last_xfcc(mesh: &Mesh) -> String {
    mesh.workload("reviews-v1")
        .backend
        .seen()
        .last()
        .and_then(|s| s.headers.get("x-forwarded-client-cert"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// A plaintext call straight to reviews-v1's inbound listener, bypassing every sidecar.
async fn plaintext_to_reviews(mesh: &Mesh) -> anyhow::Result<http::Reply> {
    let w = mesh.workload("reviews-v1");
    let addr = std::net::SocketAddr::new(w.ip.parse()?, SERVICE_PORT);
    http::get(addr, "reviews", "/", &[], Duration::from_secs(3)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_talk_mtls_with_peer_authentication_and_authorization() -> anyhow::Result<()> {
    let mesh = secure_mesh().await?;

    // (a) Mesh calls are mTLS: the server sidecar forwards the caller's SPIFFE id (XFCC).
    let r = mesh.call("productpage-v1", "reviews", "/", &[]).await?;
    assert_eq!(r.status, 200, "{}\n{}", r.body, mesh.logs(20));
    assert_eq!(r.body, "reviews-v1");
    let xfcc = last_xfcc(&mesh);
    assert!(
        xfcc.contains(&format!("URI={PRODUCTPAGE}")),
        "xfcc {xfcc:?}"
    );
    let r = mesh.call("ratings-v1", "reviews", "/", &[]).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let xfcc = last_xfcc(&mesh);
    assert!(xfcc.contains(&format!("URI={RATINGS}")), "xfcc {xfcc:?}");
    // Without a PeerAuthentication the mesh is PERMISSIVE: plaintext is accepted too, and
    // carries no client certificate.
    let r = plaintext_to_reviews(&mesh).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(last_xfcc(&mesh), "");

    // (b) STRICT mesh-wide (root namespace): plaintext straight to the inbound port fails,
    // mesh calls go on.
    mesh.apply(
        "strict",
        "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
",
    )
    .await?;
    eventually(Duration::from_secs(5), || async {
        match plaintext_to_reviews(&mesh).await {
            Ok(r) => anyhow::bail!("plaintext under STRICT answered {} {}", r.status, r.body),
            Err(_) => Ok(()),
        }
    })
    .await?;
    let before = mesh.workload("reviews-v1").backend.seen().len();
    assert!(plaintext_to_reviews(&mesh).await.is_err());
    assert_eq!(
        mesh.workload("reviews-v1").backend.seen().len(),
        before,
        "a plaintext request reached the backend under STRICT"
    );
    let r = mesh.call("productpage-v1", "reviews", "/", &[]).await?;
    assert_eq!(r.status, 200, "{}\n{}", r.body, mesh.logs(20));
    assert!(last_xfcc(&mesh).contains(PRODUCTPAGE));

    // PERMISSIVE (workload level, over the mesh-wide STRICT): both are accepted.
    mesh.apply(
        "permissive",
        "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: reviews, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  mtls: {mode: PERMISSIVE}
",
    )
    .await?;
    let r = eventually(Duration::from_secs(5), || plaintext_to_reviews(&mesh)).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = mesh.call("productpage-v1", "reviews", "/", &[]).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(last_xfcc(&mesh).contains(PRODUCTPAGE));

    // Back to STRICT for the authorization cases.
    let pa = mesh.dir().join("inputs");
    let permissive = std::fs::read_dir(&pa)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with("-permissive.yaml"))
        .context("the applied PERMISSIVE file")?;
    mesh.delete_file(&permissive).await?;
    eventually(Duration::from_secs(5), || async {
        match plaintext_to_reviews(&mesh).await {
            Ok(r) => anyhow::bail!("plaintext under STRICT answered {} {}", r.status, r.body),
            Err(_) => Ok(()),
        }
    })
    .await?;

    // (c) ALLOW only productpage's principal on reviews: productpage gets in, ratings gets 403.
    mesh.apply(
        "allow-productpage",
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-viewer, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: [cluster.local/ns/default/sa/productpage]
",
    )
    .await?;
    let r = mesh.call("productpage-v1", "reviews", "/", &[]).await?;
    assert_eq!(r.status, 200, "{}\n{}", r.body, mesh.logs(20));
    assert_eq!(r.body, "reviews-v1");
    // Connections opened under the old listener config drain (as Envoy's do); new ones get
    // the policy.
    let r = eventually(Duration::from_secs(5), || async {
        let r = mesh.call("ratings-v1", "reviews", "/", &[]).await?;
        anyhow::ensure!(r.status == 403, "ratings got {} {}", r.status, r.body);
        Ok(r)
    })
    .await?;
    assert_eq!(r.body, "RBAC: access denied");
    let before = mesh.workload("reviews-v1").backend.seen().len();
    let r = mesh.call("ratings-v1", "reviews", "/", &[]).await?;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(mesh.workload("reviews-v1").backend.seen().len(), before);
    // The policy selects reviews only: ratings still answers anyone in the mesh.
    let r = mesh.call("productpage-v1", "ratings", "/", &[]).await?;
    assert_eq!(r.status, 200, "{}", r.body);

    // (d) DENY on a path: even the allowed principal is refused there, elsewhere allowed.
    mesh.apply(
        "deny-admin",
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-no-admin, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  action: DENY
  rules:
  - to:
    - operation:
        paths: [/admin/*]
",
    )
    .await?;
    let r = mesh
        .call("productpage-v1", "reviews", "/admin/users", &[])
        .await?;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.body, "RBAC: access denied");
    let r = mesh
        .call("productpage-v1", "reviews", "/reviews/1", &[])
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = mesh
        .call("ratings-v1", "reviews", "/reviews/1", &[])
        .await?;
    assert_eq!(r.status, 403, "{}", r.body);
    Ok(())
}
