//! Istio's validation cases (`shared/conformance/istio/validation*`): every document whose first
//! line is `_err: TEXT` must be rejected, every other document accepted.
//!
//! `WEFT_CONFORMANCE_FILTER=virtualservice` limits the run to files whose name contains the text.

use std::path::PathBuf;

use weft_config::{Severity, parse_str, validate::validate_resource};

fn conformance_dir() -> PathBuf {
    if let Ok(d) = std::env::var("WEFT_CONFORMANCE_DIR") {
        return PathBuf::from(d);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/istio")
}

struct Case {
    file: String,
    index: usize,
    expect_err: Option<String>,
    text: String,
}

fn cases() -> Vec<Case> {
    let dir = conformance_dir();
    assert!(
        dir.is_dir(),
        "conformance data not found at {} (set WEFT_CONFORMANCE_DIR)",
        dir.display()
    );
    let filter = std::env::var("WEFT_CONFORMANCE_FILTER").unwrap_or_default();
    let mut out = Vec::new();
    for sub in ["validation", "validation-unit"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(sub))
            .expect("read conformance folder")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        for f in files {
            let name = format!(
                "{sub}/{}",
                f.file_name().expect("file name").to_string_lossy()
            );
            if !name.contains(&filter) {
                continue;
            }
            let text = std::fs::read_to_string(&f).expect("read case file");
            let mut index = 0;
            for doc in text.split("\n---") {
                let doc = doc.trim_start_matches('\n');
                if doc
                    .lines()
                    .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
                {
                    continue;
                }
                index += 1;
                let mut expect_err = None;
                let mut body = String::new();
                for line in doc.lines() {
                    if let Some(e) = line.strip_prefix("_err:") {
                        let e = e.trim().trim_matches(|c| c == '\'' || c == '"');
                        expect_err = Some(e.to_string());
                    } else {
                        body.push_str(line);
                        body.push('\n');
                    }
                }
                out.push(Case {
                    file: name.clone(),
                    index,
                    expect_err,
                    text: body,
                });
            }
        }
    }
    out
}

/// Parses and validates one document; returns the error messages (empty = accepted).
fn errors_of(text: &str, file: &str) -> Vec<String> {
    let parsed = parse_str(text, file);
    let mut errs: Vec<String> = parsed.diagnostics.iter().map(|d| d.to_string()).collect();
    for r in &parsed.resources {
        errs.extend(
            validate_resource(r)
                .into_iter()
                .filter(|d| d.severity == Severity::Error)
                .map(|d| d.to_string()),
        );
    }
    if parsed.resources.is_empty() && errs.is_empty() {
        errs.push("no resource in document".into());
    }
    errs
}

/// Cases weft knowingly decides differently from Istio, with the reason. Each must still fail:
/// a case that starts passing has to be taken off this list.
const KNOWN_DIVERGENCES: &[(&str, usize, &str)] = &[(
    "validation/serviceentry-valid.yaml",
    1,
    "`addresses: [1.2.3.4, 001:db8::]`: a plain scalar ending in ':' inside a flow sequence is a \
     YAML syntax error for libyaml (and a one-pair mapping for YAML 1.2 parsers); Go's yaml \
     package reads it as the string \"001:db8::\". Quoting the address works in both.",
)];

#[test]
fn istio_validation_cases() {
    let cases = cases();
    assert!(!cases.is_empty(), "no validation cases found");
    let mut failures = Vec::new();
    let mut wording = 0usize;
    let mut diverged = 0usize;
    let mut rejects = 0usize;
    let mut per_file: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    for c in &cases {
        let errs = errors_of(&c.text, &c.file);
        let ok = match &c.expect_err {
            Some(want) => {
                // `_err: invalid` stands for "Istio's test gives no message": nothing to match.
                if want != "invalid" {
                    rejects += 1;
                    if errs.iter().any(|e| e.contains(want.as_str())) {
                        wording += 1;
                    }
                }
                !errs.is_empty()
            }
            None => errs.is_empty(),
        };
        let entry = per_file.entry(c.file.clone()).or_default();
        entry.1 += 1;
        if let Some((_, _, why)) = KNOWN_DIVERGENCES
            .iter()
            .find(|(f, i, _)| *f == c.file && *i == c.index)
        {
            if ok {
                failures.push(format!(
                    "{} #{} passes now: remove it from KNOWN_DIVERGENCES",
                    c.file, c.index
                ));
            } else {
                println!("known divergence: {} #{}: {why}", c.file, c.index);
                diverged += 1;
            }
            continue;
        }
        if ok {
            entry.0 += 1;
        } else {
            let name = c
                .text
                .lines()
                .find_map(|l| l.trim().strip_prefix("name:"))
                .unwrap_or("?")
                .trim()
                .to_string();
            failures.push(format!(
                "{} #{} ({name}): expected {}, got {}",
                c.file,
                c.index,
                c.expect_err
                    .as_deref()
                    .map_or("accept".to_string(), |e| format!("reject ({e})")),
                if errs.is_empty() {
                    "accept".to_string()
                } else {
                    format!("reject: {}", errs.join(" | "))
                }
            ));
        }
    }
    for (f, (pass, total)) in &per_file {
        println!("{f}: {pass}/{total}");
    }
    let passed = cases.len() - failures.len() - diverged;
    println!(
        "validation conformance: {passed}/{} verdicts match ({diverged} known divergence); {wording}/{rejects} rejections with a message from Istio also match its wording",
        cases.len(),
    );
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
