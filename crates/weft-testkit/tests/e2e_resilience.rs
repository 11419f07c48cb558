//! Mirroring, retries and outlier detection end to end: VirtualServices and DestinationRules
//! applied through `weft apply`, requests from productpage's sidecar.

use std::time::Duration;

use weft_testkit::mesh::eventually;
use weft_testkit::{Behavior, Mesh, MeshOptions};

const SUBSETS: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_copies_to_v2_and_caller_gets_v1() -> anyhow::Result<()> {
    let mut mesh = Mesh::start(MeshOptions::default()).await?;
    mesh.add_workloads(&[
        ("productpage", "v1", Behavior::Ok),
        ("reviews", "v1", Behavior::Ok),
        // The mirror's answer is thrown away: make it fail to show that.
        ("reviews", "v2", Behavior::Always(500)),
    ])
    .await?;
    mesh.apply("subsets", SUBSETS).await?;
    mesh.apply(
        "mirror",
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 100
    mirror: {host: reviews, subset: v2}
    mirrorPercentage: {value: 100.0}
",
    )
    .await?;
    for i in 0..50 {
        let r = mesh
            .call("productpage-v1", "reviews", &format!("/reviews/{i}"), &[])
            .await?;
        assert_eq!((r.status, r.body.as_str()), (200, "reviews-v1"));
    }
    assert_eq!(mesh.workload("reviews-v1").backend.hits(), 50);
    let v2 = &mesh.workload("reviews-v2").backend;
    eventually(Duration::from_secs(5), || async {
        let n = v2.hits();
        anyhow::ensure!(n == 50, "mirror saw {n} of 50 requests");
        Ok(())
    })
    .await?;
    for s in v2.seen() {
        assert!(
            s.host.starts_with("reviews-shadow"),
            "a mirrored request's authority gets -shadow: {}",
            s.host
        );
        assert!(s.path.starts_with("/reviews/"), "{}", s.path);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_hide_a_flaky_backend() -> anyhow::Result<()> {
    let mut mesh = Mesh::start(MeshOptions::default()).await?;
    mesh.add_workloads(&[
        ("productpage", "v1", Behavior::Ok),
        (
            "ratings",
            "v1",
            Behavior::FailFirst {
                count: 2,
                status: 500,
            },
        ),
    ])
    .await?;
    let ratings = &mesh.workload("ratings-v1").backend;

    // Istio's default retry policy does not retry a 500: the caller sees the failure.
    let r = mesh
        .call("productpage-v1", "ratings", "/ratings/1", &[])
        .await?;
    assert_eq!(r.status, 500, "{r:?}");
    assert_eq!(ratings.hits(), 1);

    mesh.apply(
        "retries",
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - route:
    - destination: {host: ratings}
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: 5xx}
",
    )
    .await?;
    ratings.reset();
    let r = mesh
        .call("productpage-v1", "ratings", "/ratings/1", &[])
        .await?;
    assert_eq!((r.status, r.body.as_str()), (200, "ratings-v1"), "{r:?}");
    assert_eq!(
        ratings.hits(),
        3,
        "two failures and the success reached the backend"
    );

    // More failures than attempts: the last failure is what the caller sees.
    mesh.apply(
        "retries-1",
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - route:
    - destination: {host: ratings}
    retries: {attempts: 1, retryOn: 5xx}
",
    )
    .await?;
    ratings.reset();
    let r = mesh
        .call("productpage-v1", "ratings", "/ratings/1", &[])
        .await?;
    assert_eq!(r.status, 500, "{r:?}");
    assert_eq!(ratings.hits(), 2, "one try and one retry");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlier_detection_ejects_the_failing_endpoint() -> anyhow::Result<()> {
    let mut mesh = Mesh::start(MeshOptions::default()).await?;
    mesh.add_workloads(&[
        ("productpage", "v1", Behavior::Ok),
        ("details", "v1", Behavior::Ok),
        ("details", "v2", Behavior::Always(500)),
    ])
    .await?;

    // Without outlier detection Istio's default LEAST_REQUEST keeps sending about half the
    // requests to the bad endpoint (binomial: fewer than 8 of 40 has odds of about 1e-5).
    let t = mesh.tally("productpage-v1", "details", 40, 1).await?;
    let failed = t.get("500 details-v2").copied().unwrap_or(0);
    assert!((8..=32).contains(&failed), "about half fail: {t:?}");

    mesh.apply(
        "outlier",
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: details}
spec:
  host: details
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 2
      interval: 1s
      baseEjectionTime: 60s
      maxEjectionPercent: 100
",
    )
    .await?;
    let bad = &mesh.workload("details-v2").backend;
    bad.reset();
    // A few requests eject it (two consecutive 5xx); after that every request succeeds.
    let warmup = mesh.tally("productpage-v1", "details", 10, 1).await?;
    assert!(
        warmup.get("500 details-v2").copied().unwrap_or(0) <= 2,
        "ejected after two consecutive 5xx: {warmup:?}"
    );
    let hits_at_ejection = bad.hits();
    let t = mesh.tally("productpage-v1", "details", 100, 2).await?;
    assert_eq!(
        t,
        std::collections::BTreeMap::from([("200 details-v1".to_string(), 100)]),
        "after ejection all requests go to the healthy endpoint"
    );
    assert_eq!(
        bad.hits(),
        hits_at_ejection,
        "the ejected endpoint gets nothing"
    );
    Ok(())
}
