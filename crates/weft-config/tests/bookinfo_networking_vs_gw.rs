//! Every VirtualService and Gateway of Istio's bookinfo networking samples
//! (`shared/conformance/istio/bookinfo/networking`) parses and validates without error, and the
//! typed values say what the files say.

use std::path::PathBuf;

use weft_config::networking::virtual_service::StringMatch;
use weft_config::networking::{Gateway, VirtualService};
use weft_config::validate::validate_resource;
use weft_config::{Kind, Resource, Severity, Spec, parse_str};

fn networking_dir() -> PathBuf {
    let base = match std::env::var("WEFT_CONFORMANCE_DIR") {
        Ok(d) => PathBuf::from(d),
        Err(_) => {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/istio")
        }
    };
    let dir = base.join("bookinfo/networking");
    assert!(
        dir.is_dir(),
        "bookinfo networking samples not found at {} (set WEFT_CONFORMANCE_DIR)",
        dir.display()
    );
    dir
}

/// Reads one sample file and returns its VirtualService and Gateway resources, failing on any
/// parse or validation error about them.
fn load(file: &str) -> Vec<Resource> {
    let path = networking_dir().join(file);
    let text = std::fs::read_to_string(&path).expect("read sample");
    let parsed = parse_str(&text, file);
    let ours = |k: &str| k.starts_with("VirtualService") || k.starts_with("Gateway");
    for d in &parsed.diagnostics {
        assert!(
            !d.resource.as_deref().is_some_and(ours),
            "{file}: parse error: {d}"
        );
    }
    let mut out = Vec::new();
    for mut r in parsed.resources {
        if !matches!(r.kind, Kind::VirtualService | Kind::Gateway) {
            continue;
        }
        r.default_namespace("default");
        let errors: Vec<String> = validate_resource(&r)
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.to_string())
            .collect();
        assert!(errors.is_empty(), "{file}: {}", errors.join("\n"));
        out.push(r);
    }
    // Every VirtualService/Gateway document of the file was read.
    let expected = text
        .lines()
        .filter(|l| matches!(l.trim(), "kind: VirtualService" | "kind: Gateway"))
        .count();
    assert_eq!(out.len(), expected, "{file}: not every document was read");
    out
}

fn vs(r: &Resource) -> &VirtualService {
    match &r.spec {
        Spec::VirtualService(v) => v,
        other => panic!("expected a VirtualService, got {other:?}"),
    }
}

fn gw(r: &Resource) -> &Gateway {
    match &r.spec {
        Spec::Gateway(g) => g,
        other => panic!("expected a Gateway, got {other:?}"),
    }
}

fn exact(s: &str) -> StringMatch {
    StringMatch {
        exact: Some(s.into()),
        ..Default::default()
    }
}

#[test]
fn every_virtual_service_and_gateway_validates() {
    let mut files: Vec<String> = std::fs::read_dir(networking_dir())
        .expect("list samples")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    files.sort();
    let mut count = 0;
    for f in &files {
        count += load(f).len();
    }
    // 2 Gateways and 24 VirtualServices across the samples.
    assert_eq!(count, 26, "unexpected number of VirtualServices/Gateways");
}

#[test]
fn bookinfo_gateway_and_entry_route() {
    let rs = load("bookinfo-gateway.yaml");
    let g = gw(&rs[0]);
    assert_eq!(
        g.selector.get("istio").map(String::as_str),
        Some("ingressgateway")
    );
    let server = &g.servers[0];
    let port = server.port.as_ref().expect("port");
    assert_eq!(
        (port.number, port.protocol.as_str(), port.name.as_str()),
        (8080, "HTTP", "http")
    );
    assert_eq!(server.hosts, vec!["*"]);

    let v = vs(&rs[1]);
    assert_eq!(v.gateways, vec!["bookinfo-gateway"]);
    let route = &v.http[0];
    assert_eq!(route.r#match.len(), 5);
    assert_eq!(route.r#match[0].uri, Some(exact("/productpage")));
    assert_eq!(
        route.r#match[1]
            .uri
            .as_ref()
            .and_then(|u| u.prefix.as_deref()),
        Some("/static")
    );
    let dest = route.route[0].destination.as_ref().expect("destination");
    assert_eq!(dest.host, "productpage");
    assert_eq!(dest.port.as_ref().map(|p| p.number), Some(9080));
}

#[test]
fn weighted_routes() {
    for (file, want) in [
        (
            "virtual-service-reviews-90-10.yaml",
            vec![("v1", 90), ("v2", 10)],
        ),
        (
            "virtual-service-reviews-80-20.yaml",
            vec![("v1", 80), ("v2", 20)],
        ),
        (
            "virtual-service-reviews-50-v3.yaml",
            vec![("v1", 50), ("v3", 50)],
        ),
    ] {
        let rs = load(file);
        let got: Vec<(String, i32)> = vs(&rs[0]).http[0]
            .route
            .iter()
            .map(|d| {
                let dest = d.destination.as_ref().expect("destination");
                (dest.subset.clone(), d.weight)
            })
            .collect();
        let want: Vec<(String, i32)> = want.into_iter().map(|(s, w)| (s.into(), w)).collect();
        assert_eq!(got, want, "{file}");
    }
}

#[test]
fn header_routing_and_faults() {
    let rs = load("virtual-service-reviews-test-v2.yaml");
    let v = vs(&rs[0]);
    assert_eq!(
        v.http[0].r#match[0].headers.get("end-user"),
        Some(&exact("jason"))
    );
    assert_eq!(
        v.http[0].route[0]
            .destination
            .as_ref()
            .map(|d| d.subset.as_str()),
        Some("v2")
    );
    assert_eq!(
        v.http[1].route[0]
            .destination
            .as_ref()
            .map(|d| d.subset.as_str()),
        Some("v1")
    );

    let rs = load("virtual-service-ratings-test-delay.yaml");
    let delay = vs(&rs[0]).http[0]
        .fault
        .as_ref()
        .and_then(|f| f.delay.as_ref())
        .expect("delay");
    assert_eq!(
        delay.fixed_delay.map(|d| d.get()),
        Some(std::time::Duration::from_secs(7))
    );
    assert_eq!(delay.percentage.as_ref().map(|p| p.value), Some(100.0));

    let rs = load("virtual-service-ratings-test-abort.yaml");
    let abort = vs(&rs[0]).http[0]
        .fault
        .as_ref()
        .and_then(|f| f.abort.as_ref())
        .expect("abort");
    assert_eq!(abort.http_status, Some(500));
}

#[test]
fn round_trips_through_serde() {
    for file in [
        "bookinfo-gateway.yaml",
        "virtual-service-reviews-jason-v2-v3.yaml",
        "virtual-service-ratings-test-delay.yaml",
        "fault-injection-details-v1.yaml",
    ] {
        for r in load(file) {
            let json = serde_json::to_value(&r.spec).expect("serialize");
            match &r.spec {
                Spec::VirtualService(v) => {
                    let back: VirtualService = serde_json::from_value(json).expect("reparse");
                    assert_eq!(&back, v, "{file}");
                }
                Spec::Gateway(g) => {
                    let back: Gateway = serde_json::from_value(json).expect("reparse");
                    assert_eq!(&back, g, "{file}");
                }
                _ => unreachable!(),
            }
        }
    }
}
