//! Every document of Istio's bookinfo sample (platform manifests and all networking samples)
//! parses into a typed resource and validates without error.

use std::path::PathBuf;

use weft_config::validate::validate_resource;
use weft_config::{Kind, Severity, parse_file};

fn bookinfo_dir() -> PathBuf {
    std::env::var("WEFT_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/istio")
        })
        .join("bookinfo")
}

#[test]
fn bookinfo_parses_and_validates() {
    let mut files = Vec::new();
    for sub in ["platform", "networking"] {
        for e in std::fs::read_dir(bookinfo_dir().join(sub)).expect("bookinfo folder") {
            files.push(e.expect("dir entry").path());
        }
    }
    files.sort();
    assert!(
        files.len() >= 23,
        "expected the 2 platform and 21 networking files, found {}",
        files.len()
    );
    let mut problems = Vec::new();
    let mut kinds = std::collections::BTreeMap::<Kind, usize>::new();
    for f in &files {
        let parsed = parse_file(f);
        problems.extend(parsed.diagnostics.iter().map(|d| d.to_string()));
        assert!(
            !parsed.resources.is_empty() || !parsed.diagnostics.is_empty(),
            "{} is empty",
            f.display()
        );
        for r in &parsed.resources {
            *kinds.entry(r.kind).or_default() += 1;
            problems.extend(
                validate_resource(r)
                    .into_iter()
                    .filter(|d| d.severity == Severity::Error)
                    .map(|d| d.to_string()),
            );
        }
    }
    println!("bookinfo: {} files, {kinds:?}", files.len());
    assert!(
        problems.is_empty(),
        "bookinfo problems:\n{}",
        problems.join("\n")
    );
    for k in [
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::Gateway,
        Kind::ServiceEntry,
        Kind::Service,
        Kind::Deployment,
        Kind::ServiceAccount,
    ] {
        assert!(
            kinds.get(&k).copied().unwrap_or(0) > 0,
            "no {k} parsed from bookinfo"
        );
    }
}
