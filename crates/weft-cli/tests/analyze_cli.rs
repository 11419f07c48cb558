//! `weft analyze` end to end: runs the built binary on temporary files and on Istio's analyzer
//! test data, and checks output lines, JSON/YAML shape, filtering, suppression, thresholds,
//! bad input and exit codes (0, 79, 65, 64).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

fn weft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weft"))
}

/// Runs `weft analyze ARGS` and returns (exit code, stdout, stderr).
fn analyze(args: &[&str]) -> (i32, String, String) {
    let out = weft()
        .arg("analyze")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run weft");
    finish(out)
}

fn finish(out: Output) -> (i32, String, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "weft panicked:\n{stderr}");
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

fn testdata(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/istio/analyzers/testdata")
        .join(name);
    assert!(p.exists(), "conformance data missing: {}", p.display());
    p.display().to_string()
}

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "weft-analyze-cli-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    fn file(&self, name: &str, contents: impl AsRef<[u8]>) -> String {
        let p = self.0.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("create dir");
        }
        std::fs::write(&p, contents).expect("write temp file");
        p.display().to_string()
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const POD_UID: &str = "apiVersion: v1
kind: Pod
metadata:
  name: uid
spec:
  containers:
  - name: app
    image: app
    securityContext:
      runAsUser: 1337
";

const AUTO_POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: auto
  namespace: prod
spec:
  containers:
  - name: istio-proxy
    image: auto
";

const CLEAN_SERVICE: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
";

#[test]
fn log_lines_are_istioctl_lines() {
    let (code, out, _) = analyze(&[&testdata("injection.yaml")]);
    assert_eq!(code, 0, "only Info/Warning messages: exit 0");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"Info [IST0102] (Namespace bar) The namespace is not enabled for Istio injection. Run 'kubectl label namespace bar istio-injection=enabled' to enable it, or 'kubectl label namespace bar istio-injection=disabled' to explicitly mark it as not needing injection."), "{out}");
    assert!(lines.contains(&"Warning [IST0103] (Pod default/noninjectedpod) The pod default/noninjectedpod is missing the Istio proxy. This can often be resolved by restarting or redeploying the workload."), "{out}");
    assert!(lines.contains(&"Warning [IST0123] (Namespace busted) The namespace has more than one type of injection labels [istio-injection=enabled istio.io/rev=canary], which may lead to undefined behavior. Make sure only one injection label exists."), "{out}");
    // Sorted by origin, then code.
    let origins: Vec<&str> = lines
        .iter()
        .filter_map(|l| {
            l.split_once(" (")
                .and_then(|(_, r)| r.split_once(')'))
                .map(|(o, _)| o)
        })
        .collect();
    let mut sorted = origins.clone();
    sorted.sort();
    assert_eq!(origins, sorted);
}

#[test]
fn failure_threshold_sets_exit_79() {
    let (code, out, err) = analyze(&[&testdata("image-auto.yaml")]);
    assert_eq!(code, 79, "{out}{err}");
    assert!(out.contains(
        "Error [IST0147] (Pod default/injected-pod) Pod injected-pod contains `image: auto` but does not match any Istio injection webhook selectors."
    ), "{out}");
    assert!(
        err.contains("Analyzers found issues when analyzing namespace: default."),
        "{err}"
    );

    // Warnings fail only when asked to.
    let (code, _, _) = analyze(&[&testdata("injection.yaml")]);
    assert_eq!(code, 0);
    let (code, _, _) = analyze(&[
        "--failure-threshold",
        "Warning",
        &testdata("injection.yaml"),
    ]);
    assert_eq!(code, 79);
    let (code, _, _) = analyze(&[
        "--failure-threshold",
        "Info",
        &testdata("service-no-port-name.yaml"),
        "-A",
    ]);
    assert_eq!(code, 79);
}

#[test]
fn output_threshold_hides_lower_levels() {
    let (_, out, _) = analyze(&["--output-threshold", "Warning", &testdata("injection.yaml")]);
    assert!(!out.contains("Info ["), "{out}");
    assert!(out.contains("Warning [IST0103]"), "{out}");
    let (code, out, err) = analyze(&["--output-threshold", "Error", &testdata("injection.yaml")]);
    assert_eq!(code, 0);
    assert!(out.trim().is_empty(), "{out}");
    assert!(err.contains("No validation issues found"), "{err}");
}

#[test]
fn json_output_has_istioctl_shape() {
    let (code, out, _) = analyze(&["-o", "json", "-A", &testdata("service-no-port-name.yaml")]);
    assert_eq!(code, 0, "istioctl sets no failure code for json output");
    let v: serde_json::Value = serde_json::from_str(&out).expect("stdout is JSON");
    let list = v.as_array().expect("a list");
    assert_eq!(list.len(), 3);
    let first = list[0].as_object().expect("an object");
    let keys: Vec<&str> = first.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "code",
            "documentationUrl",
            "level",
            "message",
            "origin",
            "reference"
        ]
    );
    assert_eq!(first["code"], "IST0118");
    assert_eq!(first["level"], "Info");
    assert_eq!(first["origin"], "Service my-namespace1/my-service1");
    assert_eq!(
        first["documentationUrl"],
        "https://istio.io/latest/docs/reference/config/analysis/ist0118/?ref=istioctl-analyze"
    );
    assert_eq!(
        first["message"],
        "Port name  (port: 8080, targetPort: 8080) doesn't follow the naming convention of Istio port."
    );
    // No messages: an empty list.
    let t = TempDir::new();
    let f = t.file("svc.yaml", CLEAN_SERVICE);
    let (code, out, _) = analyze(&["-o", "json", &f]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "[]");
}

#[test]
fn yaml_output_is_a_list() {
    let (code, out, _) = analyze(&["-o", "yaml", &testdata("image-auto.yaml")]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_norway::from_str(&out).expect("stdout is YAML");
    let list = v.as_array().expect("a list");
    assert!(
        list.iter()
            .any(|m| m["code"] == "IST0147" && m["origin"] == "Pod default/injected-pod"),
        "{out}"
    );
}

#[test]
fn namespace_defaults_and_filtering() {
    let t = TempDir::new();
    let uid = t.file("uid.yaml", POD_UID);
    let auto = t.file("auto.yaml", AUTO_POD);
    // A resource without a namespace lands in the selected one.
    let (_, out, _) = analyze(&["-n", "team", &uid]);
    assert!(
        out.contains(
            "Warning [IST0144] (Pod team/uid) User ID (UID) 1337 is reserved for the sidecar proxy."
        ),
        "{out}"
    );
    // Messages about other namespaces are not reported unless -A.
    let (code, out, err) = analyze(&[&uid, &auto]);
    assert!(out.contains("(Pod default/uid)"), "{out}");
    assert!(!out.contains("prod/auto"), "{out}");
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = analyze(&["-A", &uid, &auto]);
    assert!(out.contains("Error [IST0147] (Pod prod/auto)"), "{out}");
    assert_eq!(code, 79);
    assert!(err.contains("when analyzing all namespaces"), "{err}");
    let (code, out, _) = analyze(&["--namespace", "prod", &auto]);
    assert!(out.contains("(Pod prod/auto)"), "{out}");
    assert_eq!(code, 79);
}

#[test]
fn suppression_by_flag_and_annotation() {
    let inj = testdata("injection.yaml");
    let (_, out, _) = analyze(&["--suppress", "IST0102=Namespace *", &inj]);
    assert!(!out.contains("IST0102"), "{out}");
    assert!(out.contains("IST0103"), "{out}");
    let (_, out, _) = analyze(&[
        "-S",
        "IST0123=Namespace busted",
        "-S",
        "IST0103=Pod noninjectedpod.default",
        &inj,
    ]);
    assert!(!out.contains("(Namespace busted)"), "{out}");
    assert!(out.contains("(Namespace multi-ns-1)"), "{out}");
    assert!(!out.contains("IST0103"), "{out}");
    let (_, out, err) = analyze(&["-S", "IST9999=Namespace *", &inj]);
    assert!(
        err.contains("Supplied message code 'IST9999' is an unknown message code"),
        "{err}"
    );
    assert!(out.contains("IST0102"));

    let t = TempDir::new();
    let f = t.file(
        "uid.yaml",
        POD_UID.replace(
            "  name: uid\n",
            "  name: uid\n  annotations:\n    galley.istio.io/analyze-suppress: IST0144\n",
        ),
    );
    let (code, out, err) = analyze(&[&f]);
    assert!(!out.contains("IST0144"), "{out}");
    assert!(
        err.contains("No validation issues found when analyzing namespace: default."),
        "{err}"
    );
    assert_eq!(code, 0);
}

#[test]
fn no_issues_message() {
    let t = TempDir::new();
    let f = t.file("svc.yaml", CLEAN_SERVICE);
    let (code, out, err) = analyze(&[&f]);
    assert_eq!(code, 0);
    assert_eq!(out, "");
    assert_eq!(
        err,
        "\u{2714} No validation issues found when analyzing namespace: default.\n"
    );
}

#[test]
fn directories_and_stdin() {
    let t = TempDir::new();
    t.file("a/svc.yaml", CLEAN_SERVICE);
    t.file("a/b/uid.yml", POD_UID);
    t.file("a/notes.txt", "not config");
    let (code, out, _) = analyze(&[&t.path().display().to_string()]);
    assert_eq!(code, 0);
    assert!(
        out.contains("(Pod default/uid)"),
        "nested files are read: {out}"
    );
    let (_, out2, _) = analyze(&["-R", &t.path().display().to_string()]);
    assert_eq!(out, out2);

    let mut child = weft()
        .args(["analyze", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::io::Write::write_all(
        child.stdin.as_mut().expect("stdin"),
        AUTO_POD.replace("prod", "default").as_bytes(),
    )
    .expect("write stdin");
    let (code, out, _) = finish(child.wait_with_output().expect("wait"));
    assert_eq!(code, 79);
    assert!(out.contains("Error [IST0147] (Pod default/auto)"), "{out}");
}

#[test]
fn bad_input_exits_65_with_a_clear_error() {
    let t = TempDir::new();
    let cases: Vec<(String, &str)> = vec![
        (t.file("garbage.yaml", [0u8, 159, 146, 150, 255, 0, 1, 2]), "not UTF-8"),
        (t.file("notyaml.yaml", "key: [unclosed\n  - : :\n"), "not valid YAML"),
        (
            t.file("deep.json", format!("{}1{}", "[".repeat(5000), "]".repeat(5000))),
            "",
        ),
        (
            t.file("deep.yaml", format!("a: {}1{}", "[".repeat(5000), "]".repeat(5000))),
            "",
        ),
        (
            t.file("unknown.yaml", "apiVersion: example.com/v1\nkind: Banana\nmetadata:\n  name: b\n"),
            "unknown kind \"Banana\"",
        ),
        (
            t.file(
                "badfield.yaml",
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n  - port: eighty\n",
            ),
            "spec.ports[0].port",
        ),
    ];
    for (file, want) in &cases {
        let (code, out, err) = analyze(&[file]);
        assert_eq!(code, 65, "{file}: {out}{err}");
        assert!(
            err.contains(file.as_str()),
            "error names the file {file}: {err}"
        );
        assert!(err.contains(want), "{file}: want {want:?} in {err}");
        assert!(err.contains("Some files couldn't be parsed."), "{err}");
    }
    // A parse error in one file does not hide the findings of the others.
    let (code, out, _) = analyze(&[&cases[1].0, &testdata("image-auto.yaml")]);
    assert!(out.contains("IST0147"), "{out}");
    assert_eq!(
        code, 79,
        "issues take precedence over parse errors, as in istioctl"
    );
    // --ignore-unknown tolerates unparseable documents.
    let (code, _, err) = analyze(&["--ignore-unknown", &cases[4].0]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("could not be parsed"), "{err}");
    // The document and line are named.
    let two = t.file(
        "two.yaml",
        format!("{CLEAN_SERVICE}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s2\nspec:\n  ports: 5\n"),
    );
    let (code, _, err) = analyze(&[&two]);
    assert_eq!(code, 65);
    assert!(
        err.contains("(document 2)") && err.contains("Service s2") && err.contains("spec.ports"),
        "{err}"
    );
}

#[test]
fn huge_file_is_refused_without_blowing_up() {
    let t = TempDir::new();
    let mut big = String::with_capacity(50 * 1024 * 1024 + 16);
    big.push_str("a: \"");
    while big.len() < 50 * 1024 * 1024 {
        big.push_str("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    }
    big.push_str("\"\n");
    let f = t.file("big.yaml", big);
    let (code, _, err) = analyze(&[&f]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("limit"), "{err}");
}

#[test]
fn bad_usage_exits_64() {
    let f = testdata("injection.yaml");
    for args in [
        vec!["-o", "xml", f.as_str()],
        vec!["--failure-threshold", "Bogus", f.as_str()],
        vec!["--output-threshold", "loud", f.as_str()],
        vec!["--suppress", "IST0102", f.as_str()],
        vec!["--analyzer", "no.SuchAnalyzer", f.as_str()],
        vec!["--use-kube=true", f.as_str()],
        vec!["--no-such-flag", f.as_str()],
    ] {
        let (code, _, err) = analyze(&args);
        assert_eq!(code, 64, "{args:?}: {err}");
        assert!(!err.is_empty(), "{args:?} explains itself");
    }
    let (code, _, _) = analyze(&["--use-kube=false", &f]);
    assert_eq!(code, 0);
}

#[test]
fn list_analyzers_names_and_describes() {
    let (code, out, _) = analyze(&["--list-analyzers"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(
            "* injection.Analyzer:\n    Checks conditions related to Istio sidecar injection\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "* schemaValidation.CollectionValidationAnalyzer(collections.VirtualService):"
        ),
        "{out}"
    );
    let (_, short, _) = analyze(&["-L"]);
    assert_eq!(out, short);
}

#[test]
fn selected_analyzers_only() {
    let inj = testdata("misannotated.yaml");
    // The alpha analyzer is not part of a default run, as in istioctl.
    let (_, out, _) = analyze(&["-A", &inj]);
    assert!(!out.contains("IST0136"), "{out}");
    assert!(out.contains("IST0108"), "{out}");
    let (_, out, _) = analyze(&["-A", "--analyzer", "maturity.AlphaAnalyzer", &inj]);
    assert!(out.contains("Info [IST0136] (Service default/httpbin) Annotation \"networking.istio.io/exportTo\" is part of an alpha-phase feature and may be incompletely supported."), "{out}");
    assert!(!out.contains("IST0108"), "{out}");
}

#[test]
fn mesh_config_file_errors_are_reported() {
    let t = TempDir::new();
    let svc = t.file("svc.yaml", CLEAN_SERVICE);
    let (code, _, err) = analyze(&["--meshConfigFile", "/nonexistent/mesh.yaml", &svc]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("/nonexistent/mesh.yaml"), "{err}");
    let empty = t.file("mesh.yaml", "");
    let (code, _, err) = analyze(&["--meshConfigFile", &empty, &svc]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn color_only_when_asked() {
    let (_, out, _) = analyze(&["--color", &testdata("image-auto.yaml")]);
    assert!(out.contains("\x1b[31;1mError\x1b[0m [IST0147]"), "{out:?}");
    let (_, out, _) = analyze(&["--color=false", &testdata("image-auto.yaml")]);
    assert!(!out.contains('\x1b'));
    let (_, out, _) = analyze(&[&testdata("image-auto.yaml")]);
    assert!(!out.contains('\x1b'), "not a terminal: no colour");
}
