//! Bookinfo's routing files applied one by one through `weft apply -f`, checked through the
//! ingress gateway and through productpage's sidecar: the bookinfo gateway, all-v1, the
//! 90/10, 80/20 and both 50/50 splits over 1,000 requests, all-v3, and `end-user: jason` to v2.

use std::collections::BTreeMap;
use std::time::Duration;

use weft_testkit::mesh::{BOOKINFO, bookinfo_file};
use weft_testkit::stats::check_share;
use weft_testkit::{Mesh, MeshOptions, http};

const SPLIT_REQUESTS: usize = 1_000;
/// Binomial bound for the splits: 4.5 standard deviations (a false failure about once in
/// 150,000 runs).
const SIGMAS: f64 = 4.5;

fn count(t: &BTreeMap<String, usize>, key: &str) -> usize {
    t.get(key).copied().unwrap_or(0)
}

/// Checks that every answer is a 200 from one of `expect` with the given shares.
fn check_split(what: &str, t: &BTreeMap<String, usize>, expect: &[(&str, f64)]) {
    let total: usize = t.values().sum();
    let known: usize = expect
        .iter()
        .map(|(k, _)| count(t, &format!("200 {k}")))
        .sum();
    assert_eq!(known, total, "{what}: unexpected answers: {t:?}");
    for (k, p) in expect {
        if let Err(e) = check_share(what, count(t, &format!("200 {k}")), total, *p, SIGMAS) {
            panic!("{e}; all answers: {t:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookinfo_gateway_and_reviews_routing() -> anyhow::Result<()> {
    let mut mesh = Mesh::start(MeshOptions::default()).await?;
    // Bookinfo's Kubernetes Services, unchanged; the workloads join them as WorkloadEntries.
    mesh.apply_bookinfo_platform().await?;
    mesh.add_workloads(BOOKINFO).await?;
    let gw = mesh.add_ingress_gateway().await?;

    // The bookinfo gateway: /productpage reaches productpage, other paths get 404.
    mesh.apply_file(&bookinfo_file("bookinfo-gateway.yaml")?)
        .await?;
    let r = http::get(
        gw,
        "bookinfo.example.com",
        "/productpage",
        &[],
        Duration::from_secs(5),
    )
    .await?;
    assert_eq!(r.status, 200, "{r:?}\n{}", mesh.logs(20));
    assert!(
        r.body.starts_with("productpage-v1 -> reviews-v"),
        "gateway, productpage and its call to reviews through two sidecars: {r:?}"
    );
    let seen = mesh.workload("productpage-v1").backend.seen();
    assert_eq!(seen.last().map(|s| s.path.as_str()), Some("/productpage"));
    let r = http::get(
        gw,
        "bookinfo.example.com",
        "/api/v1/products/1",
        &[],
        Duration::from_secs(5),
    )
    .await?;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.starts_with("productpage-v1 -> "), "{r:?}");
    let r = http::get(
        gw,
        "bookinfo.example.com",
        "/admin",
        &[],
        Duration::from_secs(5),
    )
    .await?;
    assert_eq!(
        r.status, 404,
        "a path the VirtualService does not route: {r:?}"
    );

    // Before any VirtualService: round robin over the three reviews versions.
    mesh.apply_file(&bookinfo_file("destination-rule-all.yaml")?)
        .await?;
    let t = mesh.tally("productpage-v1", "reviews", 300, 4).await?;
    check_split(
        "no VirtualService",
        &t,
        &[
            ("reviews-v1", 1.0 / 3.0),
            ("reviews-v2", 1.0 / 3.0),
            ("reviews-v3", 1.0 / 3.0),
        ],
    );

    // All v1, for every service, also through the gateway.
    mesh.apply_file(&bookinfo_file("virtual-service-all-v1.yaml")?)
        .await?;
    let t = mesh.tally("productpage-v1", "reviews", 200, 4).await?;
    assert_eq!(t, BTreeMap::from([("200 reviews-v1".to_string(), 200)]));
    let t = mesh.tally("reviews-v2", "ratings", 50, 2).await?;
    assert_eq!(t, BTreeMap::from([("200 ratings-v1".to_string(), 50)]));
    let t = mesh.tally("productpage-v1", "details", 50, 2).await?;
    assert_eq!(t, BTreeMap::from([("200 details-v1".to_string(), 50)]));
    let r = http::get(
        gw,
        "bookinfo.example.com",
        "/productpage",
        &[],
        Duration::from_secs(5),
    )
    .await?;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "productpage-v1 -> reviews-v1")
    );

    // The weighted splits over 1,000 requests each.
    for (file, expect) in [
        (
            "virtual-service-reviews-90-10.yaml",
            [("reviews-v1", 0.9), ("reviews-v2", 0.1)],
        ),
        (
            "virtual-service-reviews-80-20.yaml",
            [("reviews-v1", 0.8), ("reviews-v2", 0.2)],
        ),
        (
            "virtual-service-reviews-50-v3.yaml",
            [("reviews-v1", 0.5), ("reviews-v3", 0.5)],
        ),
        (
            "virtual-service-reviews-v2-v3.yaml",
            [("reviews-v2", 0.5), ("reviews-v3", 0.5)],
        ),
    ] {
        mesh.apply_file(&bookinfo_file(file)?).await?;
        let t = mesh
            .tally("productpage-v1", "reviews", SPLIT_REQUESTS, 4)
            .await?;
        check_split(file, &t, &expect);
        eprintln!("{file}: {t:?}");
    }

    // All v3.
    mesh.apply_file(&bookinfo_file("virtual-service-reviews-v3.yaml")?)
        .await?;
    let t = mesh.tally("productpage-v1", "reviews", 200, 4).await?;
    assert_eq!(t, BTreeMap::from([("200 reviews-v3".to_string(), 200)]));

    // end-user: jason goes to v2; everybody else to v1, then (jason-v2-v3) to v3.
    for (file, others) in [
        ("virtual-service-reviews-test-v2.yaml", "reviews-v1"),
        ("virtual-service-reviews-jason-v2-v3.yaml", "reviews-v3"),
    ] {
        mesh.apply_file(&bookinfo_file(file)?).await?;
        // Through the gateway: productpage passes end-user on to reviews.
        let via_gateway = |user: &'static str| async move {
            let headers: &[(&str, &str)] = if user.is_empty() {
                &[]
            } else {
                &[("end-user", user)]
            };
            http::get(
                gw,
                "bookinfo",
                "/productpage",
                headers,
                Duration::from_secs(5),
            )
            .await
        };
        let r = via_gateway("jason").await?;
        assert_eq!(
            r.body, "productpage-v1 -> reviews-v2",
            "{file}: jason via the gateway"
        );
        let r = via_gateway("").await?;
        assert_eq!(
            r.body,
            format!("productpage-v1 -> {others}"),
            "{file}: via the gateway"
        );
        for _ in 0..20 {
            let r = mesh
                .call(
                    "productpage-v1",
                    "reviews",
                    "/reviews/0",
                    &[("end-user", "jason")],
                )
                .await?;
            assert_eq!(
                (r.status, r.body.as_str()),
                (200, "reviews-v2"),
                "{file}: jason"
            );
            let r = mesh
                .call("productpage-v1", "reviews", "/reviews/0", &[])
                .await?;
            assert_eq!(
                (r.status, r.body.as_str()),
                (200, others),
                "{file}: anonymous"
            );
            let r = mesh
                .call(
                    "productpage-v1",
                    "reviews",
                    "/reviews/0",
                    &[("end-user", "jasonx")],
                )
                .await?;
            assert_eq!(r.body, others, "{file}: exact match only");
        }
    }

    // proxy-status shows every proxy in sync.
    let status = mesh.proxy_status().await?;
    let list = status.as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 7, "{status}");
    let delta = list.iter().filter(|p| p["delta"] == true).count();
    assert!(
        (1..7).contains(&delta),
        "sidecars on both delta and state-of-the-world xDS: {status}"
    );
    for p in &list {
        assert_eq!(p["types"]["lds"]["state"], "SYNCED", "{p}");
        assert_eq!(p["types"]["cds"]["state"], "SYNCED", "{p}");
    }
    Ok(())
}
