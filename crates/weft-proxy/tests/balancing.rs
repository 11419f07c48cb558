//! Load balancers: least request, ring hash and Maglev with hash policies, priorities with
//! overprovisioned failover, locality weights.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;

fn vhost(routes: &[&str]) -> String {
    let mut s = String::from(
        "            - name: vh\n              domains: ['*']\n              routes:\n",
    );
    for r in routes {
        s.push_str(&format!("              - {r}\n"));
    }
    s
}

/// A cluster whose endpoints are given as (address, priority, locality, locality weight,
/// endpoint weight, healthy).
fn cluster_with(name: &str, extra: &str, eps: &[(SocketAddr, u32, u32, u32, u32, bool)]) -> String {
    let mut localities: Vec<(u32, u32, u32)> = eps.iter().map(|e| (e.2, e.1, e.3)).collect();
    localities.sort();
    localities.dedup();
    let mut out = format!(
        "  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n{extra}    load_assignment:\n      cluster_name: {name}\n      endpoints:\n"
    );
    for (loc, prio, lw) in localities {
        out.push_str(&format!(
            "      - priority: {prio}\n        locality: {{zone: z{loc}}}\n"
        ));
        if lw > 0 {
            out.push_str(&format!("        load_balancing_weight: {lw}\n"));
        }
        out.push_str("        lb_endpoints:\n");
        for e in eps.iter().filter(|e| e.2 == loc) {
            out.push_str(&format!(
                "        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}\n          load_balancing_weight: {}\n          health_status: {}\n",
                e.0.port(),
                e.4,
                if e.5 { "HEALTHY" } else { "UNHEALTHY" }
            ));
        }
    }
    out
}

async fn backends(n: usize) -> Vec<Backend> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push(Backend::start(&format!("b{i}")).await);
    }
    v
}

fn tally(names: &[String]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for n in names {
        *m.entry(n.clone()).or_default() += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_sends_to_the_least_busy_host() {
    let bs = backends(2).await;
    let addrs: Vec<_> = bs.iter().map(|b| b.addr).collect();
    let clusters = cluster(
        "lr",
        &addrs,
        "    lb_policy: LEAST_REQUEST\n    least_request_lb_config: {choice_count: 16}\n",
    );
    let proxy = start(&http_bootstrap(
        "",
        &vhost(&["{match: {prefix: /}, route: {cluster: lr}}"]),
        &clusters,
    ));
    let addr = proxy.listener_addr("http").unwrap();
    // Hold six slow requests open, one after the other: each goes to the host with fewer.
    let mut tasks = Vec::new();
    for _ in 0..6 {
        tasks.push(tokio::spawn(async move {
            get(addr, "x", "/?delay_ms=800").await.echo().backend
        }));
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let mut names = Vec::new();
    for t in tasks {
        names.push(t.await.unwrap());
    }
    let t = tally(&names);
    assert_eq!(
        (t.get("b0"), t.get("b1")),
        (Some(&3), Some(&3)),
        "{names:?}"
    );
}

async fn hash_cluster_test(policy: &str) {
    let bs = backends(4).await;
    let addrs: Vec<_> = bs.iter().map(|b| b.addr).collect();
    let clusters = cluster("h", &addrs, &format!("    lb_policy: {policy}\n"));
    let routes = [
        "{match: {prefix: /hdr}, route: {cluster: h, hash_policy: [{header: {header_name: x-user}}]}}",
        "{match: {prefix: /cookie}, route: {cluster: h, hash_policy: [{cookie: {name: sticky, ttl: 3600s, path: /}}]}}",
        "{match: {prefix: /ip}, route: {cluster: h, hash_policy: [{connection_properties: {source_ip: true}}]}}",
        "{match: {prefix: /query}, route: {cluster: h, hash_policy: [{query_parameter: {name: u}}]}}",
    ];
    let proxy = start(&http_bootstrap("", &vhost(&routes), &clusters));
    let addr = proxy.listener_addr("http").unwrap();
    let mut c = H1::connect(addr).await;

    // Header: one user always lands on one host; many users spread.
    let mut per_user = Vec::new();
    for u in 0..40 {
        let user = format!("user-{u}");
        let first = c
            .send(req("GET", "x", "/hdr", &[("x-user", &user)]))
            .await
            .echo()
            .backend;
        for _ in 0..3 {
            let again = c
                .send(req("GET", "x", "/hdr", &[("x-user", &user)]))
                .await
                .echo()
                .backend;
            assert_eq!(again, first, "{policy}: {user} moved");
        }
        per_user.push(first);
    }
    let t = tally(&per_user);
    assert!(t.len() >= 3, "{policy}: users spread over hosts: {t:?}");

    // Cookie with a TTL: generated on the first response, then sticky.
    let g = c.get("x", "/cookie").await;
    let set_cookie = g.header("set-cookie").expect("generated cookie").to_owned();
    assert!(set_cookie.starts_with("sticky=\""), "{set_cookie}");
    assert!(
        set_cookie.contains("Max-Age=3600")
            && set_cookie.contains("Path=/")
            && set_cookie.contains("HttpOnly"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let first = g.echo().backend;
    for _ in 0..5 {
        let g = c
            .send(req("GET", "x", "/cookie", &[("cookie", &cookie)]))
            .await;
        assert!(
            g.header("set-cookie").is_none(),
            "cookie present: none generated"
        );
        assert_eq!(g.echo().backend, first, "{policy}: the cookie sticks");
    }

    // Source IP: every request from 127.0.0.1 goes to one host.
    let ips: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..10 {
            v.push(get(addr, "x", "/ip").await.echo().backend);
        }
        v
    };
    assert_eq!(tally(&ips).len(), 1, "{ips:?}");

    // Query parameter.
    let a = c.get("x", "/query?u=alice").await.echo().backend;
    for _ in 0..5 {
        assert_eq!(c.get("x", "/query?u=alice&x=1").await.echo().backend, a);
    }

    // Removing a host moves few of the keys that were not on it (consistent hashing). Ring hash
    // rescales every host's share of the ring, so some keys on other hosts move too (about
    // one in six here); modulo hashing would move about two in three. 200 keys keep the
    // estimate well clear of the bound.
    let mut per_key = Vec::new();
    for u in 0..200 {
        let user = format!("key-{u}");
        let b = c
            .send(req("GET", "x", "/hdr", &[("x-user", &user)]))
            .await
            .echo()
            .backend;
        per_key.push(b);
    }
    let snapshot = proxy.snapshot();
    let h = snapshot.clusters.get("h").unwrap();
    let removed = bs[0].addr;
    let keep: Vec<_> = addrs
        .iter()
        .filter(|a| **a != removed)
        .map(|a| weft_proxy::cluster::EndpointSpec::new(*a))
        .collect();
    h.replace_endpoints(&keep);
    let mut moved = 0;
    let stayed = per_key.iter().filter(|b| *b != "b0").count();
    for (u, before) in per_key.iter().enumerate() {
        let user = format!("key-{u}");
        let now = c
            .send(req("GET", "x", "/hdr", &[("x-user", &user)]))
            .await
            .echo()
            .backend;
        if before != "b0" && &now != before {
            moved += 1;
        }
    }
    assert!(
        moved * 3 <= stayed,
        "{policy}: {moved} of {stayed} keys moved that were not on the removed host (modulo hashing would move most)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_hash_with_header_cookie_source_ip_and_query_policies() {
    hash_cluster_test("RING_HASH").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maglev_with_header_cookie_source_ip_and_query_policies() {
    hash_cluster_test("MAGLEV").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_hash_respects_endpoint_weights() {
    let bs = backends(2).await;
    let eps = [
        (bs[0].addr, 0, 0, 0, 1, true),
        (bs[1].addr, 0, 0, 0, 3, true),
    ];
    let clusters = cluster_with("h", "    lb_policy: RING_HASH\n", &eps);
    let routes =
        ["{match: {prefix: /}, route: {cluster: h, hash_policy: [{header: {header_name: x-k}}]}}"];
    let proxy = start(&http_bootstrap("", &vhost(&routes), &clusters));
    let mut c = H1::connect(proxy.listener_addr("http").unwrap()).await;
    let mut names = Vec::new();
    for k in 0..400 {
        names.push(
            c.send(req("GET", "x", "/", &[("x-k", &k.to_string())]))
                .await
                .echo()
                .backend,
        );
    }
    let heavy = tally(&names).get("b1").copied().unwrap_or(0);
    assert!(
        (240..=360).contains(&heavy),
        "weight 3 of 4 takes ~300 of 400 keys: {heavy}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priorities_fail_over_by_health_with_overprovisioning() {
    let bs = backends(4).await;
    // Priority 0: b0 healthy, b1 unhealthy (50% healthy × 1.4 = 70% of the traffic).
    // Priority 1: b2, b3.
    let eps = [
        (bs[0].addr, 0, 0, 0, 1, true),
        (bs[1].addr, 0, 0, 0, 1, false),
        (bs[2].addr, 1, 1, 0, 1, true),
        (bs[3].addr, 1, 1, 0, 1, true),
    ];
    let all_down = [
        (bs[0].addr, 0, 0, 0, 1, false),
        (bs[1].addr, 0, 0, 0, 1, false),
        (bs[2].addr, 1, 1, 0, 1, true),
    ];
    let clusters = cluster_with("p", "", &eps) + &cluster_with("down", "", &all_down);
    let routes = [
        "{match: {prefix: /down}, route: {cluster: down}}",
        "{match: {prefix: /}, route: {cluster: p}}",
    ];
    let proxy = start(&http_bootstrap("", &vhost(&routes), &clusters));
    let mut c = H1::connect(proxy.listener_addr("http").unwrap()).await;
    let mut names = Vec::new();
    for _ in 0..400 {
        names.push(c.get("x", "/").await.echo().backend);
    }
    let t = tally(&names);
    let p0 = t.get("b0").copied().unwrap_or(0);
    assert!(!t.contains_key("b1"), "unhealthy host: {t:?}");
    assert!((230..=330).contains(&p0), "~70% stays on priority 0: {t:?}");
    for _ in 0..20 {
        assert_eq!(
            c.get("x", "/down").await.echo().backend,
            "b2",
            "all of priority 0 is down"
        );
    }
    let text = admin_get(&proxy, "/clusters").await.text();
    assert!(
        text.contains(&format!("p::{}::priority::1", bs[2].addr)),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locality_weighted_load_balancing() {
    let bs = backends(3).await;
    // Locality 0 (weight 1) has b0; locality 1 (weight 3) has b1 and b2.
    let eps = [
        (bs[0].addr, 0, 0, 1, 1, true),
        (bs[1].addr, 0, 1, 3, 1, true),
        (bs[2].addr, 0, 1, 3, 1, true),
    ];
    let clusters = cluster_with(
        "l",
        "    common_lb_config: {locality_weighted_lb_config: {}}\n",
        &eps,
    );
    let proxy = start(&http_bootstrap(
        "",
        &vhost(&["{match: {prefix: /}, route: {cluster: l}}"]),
        &clusters,
    ));
    let mut c = H1::connect(proxy.listener_addr("http").unwrap()).await;
    let mut names = Vec::new();
    for _ in 0..400 {
        names.push(c.get("x", "/").await.echo().backend);
    }
    let t = tally(&names);
    let l0 = t.get("b0").copied().unwrap_or(0);
    assert!((60..=140).contains(&l0), "locality weight 1 of 4: {t:?}");
    let (b1, b2) = (
        t.get("b1").copied().unwrap_or(0),
        t.get("b2").copied().unwrap_or(0),
    );
    assert!(
        b1.abs_diff(b2) <= 2,
        "round robin inside the locality: {t:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_panic_threshold_every_host_takes_traffic() {
    let bs = backends(3).await;
    // One healthy host of three: 33% < the default 50% panic threshold.
    let eps = [
        (bs[0].addr, 0, 0, 0, 1, true),
        (bs[1].addr, 0, 0, 0, 1, false),
        (bs[2].addr, 0, 0, 0, 1, false),
    ];
    let clusters = cluster_with("panic", "", &eps)
        + &cluster_with(
            "nopanic",
            "    common_lb_config: {healthy_panic_threshold: {value: 0}}\n",
            &eps,
        );
    let routes = [
        "{match: {prefix: /nopanic}, route: {cluster: nopanic}}",
        "{match: {prefix: /}, route: {cluster: panic}}",
    ];
    let proxy = start(&http_bootstrap("", &vhost(&routes), &clusters));
    let mut c = H1::connect(proxy.listener_addr("http").unwrap()).await;
    let mut names = Vec::new();
    for _ in 0..9 {
        names.push(c.get("x", "/").await.echo().backend);
    }
    assert_eq!(tally(&names).len(), 3, "panic: all hosts: {names:?}");
    for _ in 0..6 {
        assert_eq!(c.get("x", "/nopanic").await.echo().backend, "b0");
    }
}
