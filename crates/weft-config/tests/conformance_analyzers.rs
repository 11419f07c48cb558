//! Istio's analyzer cases (`shared/conformance/istio/analyzers/cases.json`) as a table: each case
//! runs its analyzer over its input files and must report the same multiset of
//! (code, `Kind namespace/name`) pairs as Istio.
//!
//! `WEFT_ANALYZER_FILTER=virtualservice` limits the run to analyzers whose name contains the text.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use weft_config::analyze::{ANALYZERS, analyze};
use weft_config::document::{parse_file, parse_mesh_config};
use weft_config::mesh::MeshConfig;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case {
    name: String,
    inputs: Vec<String>,
    mesh: Option<String>,
    analyzer: String,
    expected: Vec<(String, String, String)>,
    #[allow(dead_code)]
    skip_all: bool,
}

fn analyzers_dir() -> PathBuf {
    std::env::var("WEFT_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/istio")
        })
        .join("analyzers")
}

/// Istio names one analyzer by the collection it validates; weft runs it under the same name.
fn analyzer_name(case: &Case) -> &str {
    &case.analyzer
}

#[test]
fn istio_analyzer_cases() {
    let dir = analyzers_dir();
    let text = std::fs::read_to_string(dir.join("cases.json")).expect("read cases.json");
    let cases: Vec<Case> = serde_json::from_str(&text).expect("cases.json parses");
    let filter = std::env::var("WEFT_ANALYZER_FILTER").unwrap_or_default();
    let mut per_analyzer: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut total = 0;
    for case in &cases {
        if !case.analyzer.contains(&filter) {
            continue;
        }
        total += 1;
        let mut resources = Vec::new();
        let mut parse_errors = Vec::new();
        for input in &case.inputs {
            let parsed = parse_file(&dir.join(input));
            resources.extend(parsed.resources);
            parse_errors.extend(parsed.diagnostics.into_iter().map(|d| d.to_string()));
        }
        let mesh = match &case.mesh {
            Some(m) => {
                let path = dir.join(m);
                let text = std::fs::read_to_string(&path).expect("read mesh config");
                match parse_mesh_config(&text, &path.display().to_string()) {
                    Ok(m) => m,
                    Err(e) => {
                        failures.push(format!("{}: mesh config: {e}", case.name));
                        continue;
                    }
                }
            }
            None => MeshConfig::default(),
        };
        let name = analyzer_name(case);
        let entry = per_analyzer.entry(name.to_string()).or_default();
        entry.1 += 1;
        if !ANALYZERS.iter().any(|a| a.name() == name) {
            failures.push(format!("{} ({name}): analyzer not implemented", case.name));
            continue;
        }
        let msgs = analyze(&resources, &mesh, Some(&[name]));
        let mut got: Vec<(String, String)> = msgs
            .iter()
            .map(|m| (m.ty.code.to_string(), m.origin.clone()))
            .collect();
        let mut want: Vec<(String, String)> = case
            .expected
            .iter()
            .map(|(_, code, origin)| (code.clone(), origin.clone()))
            .collect();
        got.sort();
        want.sort();
        if got == want {
            entry.0 += 1;
        } else {
            failures.push(format!(
                "{} ({name}):\n    want {want:?}\n    got  {got:?}\n    messages: {}\n    parse errors: {parse_errors:?}",
                case.name,
                msgs.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(" | ")
            ));
        }
    }
    for (a, (pass, n)) in &per_analyzer {
        println!("{a}: {pass}/{n}");
    }
    println!(
        "analyzer conformance: {}/{total} cases match",
        total - failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
