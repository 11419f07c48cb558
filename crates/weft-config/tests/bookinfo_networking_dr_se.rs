//! DestinationRule, ServiceEntry, WorkloadEntry and WorkloadGroup against Istio's own data:
//! every bookinfo DestinationRule/ServiceEntry parses and validates cleanly, and Istio's
//! validation cases for these kinds are rejected with Istio's (or Kubernetes') wording.

use std::path::PathBuf;

use weft_config::networking::destination_rule::{SimpleLb, TlsMode};
use weft_config::networking::service_entry::Resolution;
use weft_config::{Kind, Severity, Spec, parse_str, validate::validate_resource};

fn conformance_dir() -> PathBuf {
    if let Ok(d) = std::env::var("WEFT_CONFORMANCE_DIR") {
        return PathBuf::from(d);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/istio")
}

fn read(rel: &str) -> String {
    let p = conformance_dir().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

#[test]
fn bookinfo_destination_rules_and_service_entries_validate() {
    let dir = conformance_dir().join("bookinfo/networking");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("bookinfo networking folder")
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    let mut seen = 0;
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read bookinfo file");
        let name = f.display().to_string();
        let parsed = parse_str(&text, &name);
        for r in &parsed.resources {
            if !matches!(r.kind, Kind::DestinationRule | Kind::ServiceEntry) {
                continue;
            }
            seen += 1;
            let diags = validate_resource(r);
            let errors: Vec<String> = diags
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .map(|d| d.to_string())
                .collect();
            assert!(errors.is_empty(), "{}: {errors:?}", r.key());
        }
        for d in &parsed.diagnostics {
            // Only DestinationRule/ServiceEntry documents are this test's business, but a
            // parse error in one of them would hide it: fail on any that names our kinds.
            let about_ours = d
                .resource
                .as_deref()
                .is_some_and(|k| k.starts_with("DestinationRule") || k.starts_with("ServiceEntry"));
            assert!(!about_ours, "{d}");
        }
    }
    assert!(
        seen >= 5,
        "expected the bookinfo DestinationRules and ServiceEntry, saw {seen}"
    );
}

#[test]
fn bookinfo_values_are_read_as_written() {
    let parsed = parse_str(
        &read("bookinfo/networking/egress-rule-google-apis.yaml"),
        "egress.yaml",
    );
    let se = parsed
        .resources
        .iter()
        .find_map(|r| match &r.spec {
            Spec::ServiceEntry(s) => Some(s),
            _ => None,
        })
        .expect("a ServiceEntry");
    assert_eq!(se.hosts, ["www.googleapis.com"]);
    assert_eq!(se.resolution, Resolution::Dns);
    assert_eq!(se.ports.len(), 2);
    assert_eq!(se.ports[1].number, 443);
    assert_eq!(se.ports[1].protocol, "HTTPS");

    let dr = parsed
        .resources
        .iter()
        .find_map(|r| match &r.spec {
            Spec::DestinationRule(d) => Some(d),
            _ => None,
        })
        .expect("a DestinationRule");
    let tp = dr.traffic_policy.as_ref().expect("trafficPolicy");
    assert_eq!(
        tp.load_balancer.as_ref().and_then(|lb| lb.simple),
        Some(SimpleLb::RoundRobin)
    );
    let pls = &tp.port_level_settings[0];
    assert_eq!(pls.port.as_ref().map(|p| p.number), Some(443));
    assert_eq!(pls.tls.as_ref().map(|t| t.mode), Some(TlsMode::Simple));

    let parsed = parse_str(
        &read("bookinfo/networking/destination-rule-all-mtls.yaml"),
        "mtls.yaml",
    );
    for r in &parsed.resources {
        let Spec::DestinationRule(dr) = &r.spec else {
            continue;
        };
        let mode = dr
            .traffic_policy
            .as_ref()
            .and_then(|t| t.tls.as_ref())
            .map(|t| t.mode);
        assert_eq!(mode, Some(TlsMode::IstioMutual), "{}", r.key());
        assert!(!dr.subsets.is_empty(), "{}", r.key());
    }
}

/// Splits a conformance file the way the shared harness does: documents, `_err` lines.
fn cases(rel: &str) -> Vec<(Option<String>, String)> {
    let text = read(rel);
    let mut out = Vec::new();
    for doc in text.split("\n---") {
        let doc = doc.trim_start_matches('\n');
        if doc
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            continue;
        }
        let mut want = None;
        let mut body = String::new();
        for line in doc.lines() {
            if let Some(e) = line.strip_prefix("_err:") {
                want = Some(e.trim().trim_matches(|c| c == '\'' || c == '"').to_string());
            } else {
                body.push_str(line);
                body.push('\n');
            }
        }
        out.push((want, body));
    }
    out
}

fn errors_of(text: &str) -> Vec<String> {
    let parsed = parse_str(text, "case.yaml");
    let mut errs: Vec<String> = parsed.diagnostics.iter().map(|d| d.to_string()).collect();
    for r in &parsed.resources {
        errs.extend(
            validate_resource(r)
                .into_iter()
                .filter(|d| d.severity == Severity::Error)
                .map(|d| d.to_string()),
        );
    }
    errs
}

/// The CRD cases give Kubernetes' wording; weft's messages contain it.
#[test]
fn crd_cases_match_istio_wording() {
    let mut misses = Vec::new();
    for file in [
        "validation/destinationrule-invalid.yaml",
        "validation/serviceentry-invalid.yaml",
        "validation/workloadentry-invalid.yaml",
        "validation/workloadgroup-invalid.yaml",
    ] {
        for (want, body) in cases(file) {
            let Some(want) = want else { continue };
            let errs = errors_of(&body);
            if !errs.iter().any(|e| e.contains(&want)) {
                misses.push(format!("{file}: want {want:?}, got {errs:?}"));
            }
        }
    }
    assert!(misses.is_empty(), "{}", misses.join("\n"));
}

/// Where Istio's unit test names the message, weft's message contains it.
#[test]
fn unit_cases_match_istio_wording() {
    let mut misses = Vec::new();
    for file in [
        "validation-unit/destinationrule.yaml",
        "validation-unit/serviceentry.yaml",
        "validation-unit/workloadentry.yaml",
        "validation-unit/workloadgroup.yaml",
    ] {
        for (want, body) in cases(file) {
            let Some(want) = want else { continue };
            let errs = errors_of(&body);
            if errs.is_empty() {
                misses.push(format!("{file}: accepted, want {want:?}"));
            } else if want != "invalid" && !errs.iter().any(|e| e.contains(&want)) {
                misses.push(format!("{file}: want {want:?}, got {errs:?}"));
            }
        }
    }
    assert!(misses.is_empty(), "{}", misses.join("\n"));
}

/// Cases marked `# warning:` are accepted with a warning that says what Istio says.
#[test]
fn unit_case_warnings_are_reported() {
    let mut misses = Vec::new();
    for file in [
        "validation-unit/destinationrule.yaml",
        "validation-unit/serviceentry.yaml",
        "validation-unit/workloadentry.yaml",
    ] {
        for (want, body) in cases(file) {
            let Some(warning) = body
                .lines()
                .find_map(|l| l.trim().strip_prefix("# warning:"))
                .map(|w| w.trim().to_string())
            else {
                continue;
            };
            if want.is_some() {
                continue;
            }
            let parsed = parse_str(&body, "case.yaml");
            let warnings: Vec<String> = parsed
                .resources
                .iter()
                .flat_map(validate_resource)
                .filter(|d| d.severity == Severity::Warning)
                .map(|d| d.message)
                .collect();
            // Compare the leading words: Istio's texts sometimes end with environment details.
            let head: String = warning
                .split_whitespace()
                .take(4)
                .collect::<Vec<_>>()
                .join(" ");
            if !warnings.iter().any(|w| w.contains(&head)) {
                misses.push(format!(
                    "{file}: want warning {warning:?}, got {warnings:?}"
                ));
            }
        }
    }
    assert!(misses.is_empty(), "{}", misses.join("\n"));
}
