//! `weft validate` as a user runs it: the built binary on real files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn weft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .output()
        .expect("run weft")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weft-validate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

fn write(dir: &Path, name: &str, content: impl AsRef<[u8]>) -> String {
    let p = dir.join(name);
    std::fs::write(&p, content).expect("write file");
    p.display().to_string()
}

#[test]
fn valid_file_exits_zero() {
    let d = temp_dir("ok");
    let f = write(
        &d,
        "ok.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n",
    );
    let o = weft(&["validate", "-f", &f]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("1 resource(s) in 1 file(s) valid"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn every_error_is_reported_with_file_resource_and_field() {
    let d = temp_dir("errs");
    let f = write(
        &d,
        "bad.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: Not_A_Name\n---\napiVersion: networking.istio.io/v1\nkind: Banana\nmetadata: {name: x}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs, namespace: ns}\nspec:\n  hostz: [a]\n",
    );
    let o = weft(&["validate", "-f", &f]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("bad.yaml:1 (document 1): error: Namespace Not_A_Name: metadata.name"),
        "{out}"
    );
    assert!(
        out.contains("bad.yaml:6 (document 2): error:") && out.contains("unknown kind \"Banana\""),
        "{out}"
    );
    assert!(
        out.contains("(document 3): error: VirtualService ns/vs: spec.hostz"),
        "{out}"
    );
    assert!(out.contains("unknown field `hostz`"), "{out}");
}

#[test]
fn json_output_lists_diagnostics() {
    let d = temp_dir("json");
    let f = write(
        &d,
        "bad.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: BAD}\n",
    );
    let o = weft(&["validate", "-o", "json", "-f", &f]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json output");
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"], 1);
    assert_eq!(v["diagnostics"][0]["resource"], "Namespace BAD");
    assert_eq!(v["diagnostics"][0]["path"], "metadata.name");
}

#[test]
fn hostile_input_is_an_error_never_a_panic() {
    let d = temp_dir("hostile");
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let deep = format!("a: {}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let cases = [
        ("garbage.yaml", garbage),
        ("notyaml.yaml", b"key: [unclosed\n  - : :\n".to_vec()),
        ("deep.yaml", deep.into_bytes()),
        (
            "wrongtype.yaml",
            b"apiVersion: v1\nkind: Namespace\nmetadata: [1, 2]\n".to_vec(),
        ),
        ("scalar.yaml", b"just a string\n".to_vec()),
    ];
    for (name, content) in cases {
        let f = write(&d, name, content);
        let o = weft(&["validate", "-f", &f]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{name}: {} {err}", stdout(&o));
        assert!(!err.contains("panicked"), "{name} panicked: {err}");
        assert!(
            stdout(&o).contains(name),
            "{name}: error does not name the file: {}",
            stdout(&o)
        );
    }
}

#[test]
fn fifty_megabyte_file_is_handled() {
    let d = temp_dir("big");
    // 50 MB of one long comment-free YAML list: parsed or refused, but answered quickly and cleanly.
    let mut text = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata:\n");
    let line = format!("  k{{}}: \"{}\"\n", "x".repeat(1000));
    let mut i = 0;
    while text.len() < 50 * 1024 * 1024 {
        text.push_str(&line.replace("{}", &i.to_string()));
        i += 1;
    }
    let f = write(&d, "big.yaml", text);
    let o = weft(&["validate", "-f", &f]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("limit"), "{}", stdout(&o));
}

#[test]
fn missing_file_and_bad_usage() {
    let o = weft(&["validate", "-f", "/nonexistent/file.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/file.yaml"));
    let o = weft(&["validate"]);
    assert_eq!(o.status.code(), Some(64));
    let o = weft(&["validate", "-o", "xml", "-f", "x"]);
    assert_eq!(o.status.code(), Some(64));
}
