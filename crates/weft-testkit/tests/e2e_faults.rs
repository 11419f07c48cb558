//! Bookinfo's fault injection files on ratings, applied through `weft apply -f` and called from
//! reviews-v2's sidecar: the 7 s delay and the HTTP 500 abort for `end-user: jason`, nobody
//! else affected; details to v2, and details' 555 abort for everybody.

use std::time::Duration;

use weft_testkit::mesh::bookinfo_file;
use weft_testkit::{Behavior, Mesh, MeshOptions, http};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratings_delay_and_abort_for_jason() -> anyhow::Result<()> {
    let mut mesh = Mesh::start(MeshOptions::default()).await?;
    mesh.add_workloads(&[
        ("reviews", "v2", Behavior::Ok),
        ("ratings", "v1", Behavior::Ok),
        ("details", "v1", Behavior::Ok),
        ("details", "v2", Behavior::Ok),
    ])
    .await?;
    mesh.apply_file(&bookinfo_file("destination-rule-all.yaml")?)
        .await?;
    mesh.apply_file(&bookinfo_file("virtual-service-all-v1.yaml")?)
        .await?;

    // The delay: jason waits at least 7 s and then gets ratings' answer; others do not wait.
    mesh.apply_file(&bookinfo_file("virtual-service-ratings-test-delay.yaml")?)
        .await?;
    let addr = mesh.workload("reviews-v2").egress(9080);
    let jason = tokio::spawn(async move {
        http::get(
            addr,
            "ratings:9080",
            "/ratings/0",
            &[("end-user", "jason")],
            Duration::from_secs(12),
        )
        .await
    });
    for _ in 0..10 {
        let r = mesh
            .call("reviews-v2", "ratings", "/ratings/0", &[])
            .await?;
        assert_eq!((r.status, r.body.as_str()), (200, "ratings-v1"));
        assert!(
            r.elapsed < Duration::from_secs(3),
            "a request without end-user: jason is not delayed ({:?})",
            r.elapsed
        );
        let r = mesh
            .call(
                "reviews-v2",
                "ratings",
                "/ratings/0",
                &[("end-user", "bob")],
            )
            .await?;
        assert!(r.elapsed < Duration::from_secs(3), "bob is not delayed");
    }
    let r = jason.await??;
    assert_eq!((r.status, r.body.as_str()), (200, "ratings-v1"), "{r:?}");
    assert!(
        r.elapsed >= Duration::from_secs(7),
        "jason's request is delayed 7 s, took {:?}",
        r.elapsed
    );
    let seen = mesh.workload("ratings-v1").backend.seen();
    assert!(
        seen.iter()
            .any(|s| s.headers.get("end-user").is_some_and(|v| v == "jason")),
        "the delayed request reached ratings"
    );

    // The abort: jason gets 500 from the proxy and ratings never sees his request.
    mesh.apply_file(&bookinfo_file("virtual-service-ratings-test-abort.yaml")?)
        .await?;
    mesh.workload("ratings-v1").backend.reset();
    for _ in 0..20 {
        let r = mesh
            .call(
                "reviews-v2",
                "ratings",
                "/ratings/0",
                &[("end-user", "jason")],
            )
            .await?;
        assert_eq!(r.status, 500, "jason's request is aborted: {r:?}");
        assert_ne!(r.body, "ratings-v1", "the abort comes from the proxy");
        let r = mesh
            .call("reviews-v2", "ratings", "/ratings/0", &[])
            .await?;
        assert_eq!((r.status, r.body.as_str()), (200, "ratings-v1"));
    }
    let seen = mesh.workload("ratings-v1").backend.seen();
    assert_eq!(
        seen.len(),
        20,
        "only the anonymous requests reached ratings"
    );
    assert!(seen.iter().all(|s| s.headers.get("end-user").is_none()));

    // details: all v1, then v2 (virtual-service-details-v2), then the 555 abort for everybody
    // (fault-injection-details-v1, which also replaces the details DestinationRule).
    let t = mesh.tally("reviews-v2", "details", 20, 2).await?;
    assert_eq!(t.get("200 details-v1"), Some(&20), "{t:?}");
    mesh.apply_file(&bookinfo_file("virtual-service-details-v2.yaml")?)
        .await?;
    let t = mesh.tally("reviews-v2", "details", 20, 2).await?;
    assert_eq!(t.get("200 details-v2"), Some(&20), "{t:?}");
    mesh.apply_file(&bookinfo_file("fault-injection-details-v1.yaml")?)
        .await?;
    let v1_hits = mesh.workload("details-v1").backend.hits();
    let t = mesh.tally("reviews-v2", "details", 20, 2).await?;
    assert_eq!(t.len(), 1, "{t:?}");
    assert!(t.keys().all(|k| k.starts_with("555 ")), "{t:?}");
    assert_eq!(
        mesh.workload("details-v1").backend.hits(),
        v1_hits,
        "aborted before details"
    );
    Ok(())
}
