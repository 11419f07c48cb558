//! Any bytes through the whole input path: parse (YAML or JSON, many documents), validate and
//! analyze. Nothing may panic; every failure must be a diagnostic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_config::{analyze, mesh::MeshConfig, parse_str, validate::validate_resource};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parsed = parse_str(text, "fuzz.yaml");
    for r in &parsed.resources {
        let _ = validate_resource(r);
    }
    let mesh = MeshConfig::default();
    let _ = analyze::analyze(&parsed.resources, &mesh, None);
});
