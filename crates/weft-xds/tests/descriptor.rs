//! Generates `src/envoy_descriptor.bin` from the descriptor set shipped inside the `envoy-types`
//! package that Cargo.lock selects (source_code_info stripped), and fails when the checked-in file
//! is stale. Regenerate with `WEFT_REGEN=1 cargo test -p weft-xds --test descriptor`.

use std::path::PathBuf;
use std::process::Command;

use prost::Message;
use prost_types::FileDescriptorSet;

/// The `envoy-types` package directory, as cargo resolved it for this workspace.
fn envoy_types_dir() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let pkg = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == "envoy-types")
        .expect("envoy-types in cargo metadata");
    PathBuf::from(pkg["manifest_path"].as_str().expect("manifest_path"))
        .parent()
        .expect("package dir")
        .to_path_buf()
}

#[test]
fn envoy_descriptor_is_current() {
    let shipped = envoy_types_dir().join("src/generated/types.bin");
    let bytes =
        std::fs::read(&shipped).unwrap_or_else(|e| panic!("read {}: {e}", shipped.display()));
    let mut set =
        FileDescriptorSet::decode(bytes.as_slice()).expect("decode shipped descriptor set");
    for f in &mut set.file {
        f.source_code_info = None;
    }
    let generated = set.encode_to_vec();
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/envoy_descriptor.bin");
    if std::env::var_os("WEFT_REGEN").is_some() {
        std::fs::write(&target, &generated).expect("write descriptor");
    }
    let current = std::fs::read(&target).unwrap_or_default();
    assert!(
        current == generated,
        "src/envoy_descriptor.bin is stale for envoy-types at {}; run WEFT_REGEN=1 cargo test -p weft-xds --test descriptor",
        shipped.display()
    );
    // Every file of the shipped set is in the pool.
    assert_eq!(weft_xds::descriptor_pool().files().len(), set.file.len());
}
