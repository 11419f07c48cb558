//! `weft analyze`: Istio's analyzers over configuration files, as `istioctl analyze
//! --use-kube=false` runs them: same message codes, texts, output formats, filtering,
//! suppression and exit codes.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use weft_config::analyze::{ANALYZERS, Analyzer, Level, Message, OutputMessage, analyze_in};
use weft_config::document::parse_mesh_config;
use weft_config::mesh::MeshConfig;
use weft_config::{Diagnostic, Resource};

use crate::files::{self, Input};

/// Exit code when analyzers report messages at or above the failure threshold (istioctl's).
pub const EXIT_ISSUES_FOUND: u8 = 79;
/// Exit code when an input file cannot be parsed (sysexits EX_DATAERR, as istioctl uses it).
pub const EXIT_PARSE_ERROR: u8 = 65;

/// Analyzers istioctl leaves out of a default run (too noisy); `--analyzer` still selects them.
const NOT_RUN_BY_DEFAULT: &[&str] = &["maturity.AlphaAnalyzer"];

/// Where istioctl points users for message codes.
const CONFIG_ANALYSIS_URL: &str = "https://istio.io/latest/docs/reference/config/analysis";

/// The namespace istioctl assumes (Kubernetes' `default`).
const DEFAULT_NAMESPACE: &str = "default";

/// Annotation listing message codes (or `*`) to suppress on the annotated resource.
const SUPPRESS_ANNOTATION: &str = "galley.istio.io/analyze-suppress";

fn parse_level(s: &str) -> Result<Level, String> {
    Level::parse(s).ok_or_else(|| format!("{s:?} is not a level; use one of Info, Warning, Error"))
}

/// Arguments of `weft analyze`.
#[derive(clap::Args)]
#[command(
    after_help = "Exit codes (istioctl's): 0 no issues at or above --failure-threshold; 79 issues found; \
65 an input could not be parsed; 64 bad usage. As istioctl does, only the log output format \
sets 79 and 65; json and yaml output exit 0 once the messages are printed."
)]
pub struct Args {
    /// Files or directories to analyze (`-` reads standard input). Directories are read
    /// recursively for .yaml, .yml and .json files.
    pub files: Vec<PathBuf>,
    /// Process directories recursively (always on, as in istioctl; kept for compatibility).
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// A MeshConfig file (bare MeshConfig YAML or the `istio` ConfigMap) to analyze against.
    #[arg(long = "meshConfigFile", value_name = "FILE")]
    pub mesh_config_file: Option<PathBuf>,
    /// Output format: log, json or yaml.
    #[arg(short, long, default_value = "log", value_parser = ["log", "json", "yaml"])]
    pub output: String,
    /// Suppress a message code on matching resources: `CODE=Kind namespace/name`, where the
    /// resource may use `*` wildcards (`IST0102=Namespace *`). Repeatable.
    #[arg(short = 'S', long = "suppress", value_name = "CODE=RESOURCE")]
    pub suppress: Vec<String>,
    /// The level at or above which messages make the command fail (Info, Warning, Error).
    #[arg(long = "failure-threshold", default_value = "Error", value_parser = parse_level)]
    pub failure_threshold: Level,
    /// The level at or above which messages are printed (Info, Warning, Error).
    #[arg(long = "output-threshold", default_value = "Info", value_parser = parse_level)]
    pub output_threshold: Level,
    /// Report messages for every namespace, not only the selected one.
    #[arg(short = 'A', long = "all-namespaces")]
    pub all_namespaces: bool,
    /// The namespace to analyze; resources without a namespace are placed in it.
    #[arg(short, long, default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// The namespace of the Istio control plane.
    #[arg(short = 'i', long = "istioNamespace", default_value = "istio-system")]
    pub istio_namespace: String,
    /// List the analyzers and what each checks, then exit.
    #[arg(short = 'L', long = "list-analyzers")]
    pub list_analyzers: bool,
    /// Run only this analyzer (repeatable); see --list-analyzers.
    #[arg(long = "analyzer", value_name = "NAME")]
    pub analyzers: Vec<String>,
    /// Colour the message levels (default: when standard output is a terminal and TERM is not
    /// `dumb`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub color: Option<bool>,
    /// Analyze a live cluster. weft reads files only, so only `--use-kube=false` is accepted.
    #[arg(
        short = 'k',
        long = "use-kube",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub use_kube: Option<bool>,
    /// Do not fail on documents that cannot be parsed.
    #[arg(long = "ignore-unknown")]
    pub ignore_unknown: bool,
    /// Print which analyzers ran.
    #[arg(short, long)]
    pub verbose: bool,
}

/// A parsed `--suppress` entry.
struct Suppression {
    code: String,
    resource: String,
}

/// Matches `text` against a pattern where `*` stands for any run of characters.
fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// `(kind, namespace, name)` from an origin such as `VirtualService default/reviews` or
/// `Namespace bar`.
fn split_origin(origin: &str) -> (&str, &str, &str) {
    let (kind, rest) = origin.split_once(' ').unwrap_or(("", origin));
    match rest.split_once('/') {
        Some((ns, name)) => (kind, ns, name),
        None => (kind, "", rest),
    }
}

impl Suppression {
    fn parse(s: &str) -> Result<Self, String> {
        match s.split_once('=') {
            Some((code, resource)) if !code.is_empty() && !resource.contains('=') => {
                Ok(Suppression {
                    code: code.to_string(),
                    resource: resource.to_string(),
                })
            }
            _ => Err(format!(
                "{s} is not a valid suppression value. Use CODE=RESOURCE, e.g. \"IST0102=Namespace frod\""
            )),
        }
    }

    /// Whether this suppression covers `m`. The resource is matched against istioctl's
    /// `Kind namespace/name` and its older `Kind name.namespace` spelling.
    fn covers(&self, m: &Message) -> bool {
        if m.ty.code != self.code {
            return false;
        }
        if self.resource == "*" {
            return true;
        }
        let (kind, ns, name) = split_origin(&m.origin);
        let dotted = if ns.is_empty() {
            format!("{kind} {name}")
        } else {
            format!("{kind} {name}.{ns}")
        };
        glob_match(&self.resource, &m.origin) || glob_match(&self.resource, &dotted)
    }
}

/// The analyzers a run uses: `--analyzer` names, or every analyzer istioctl runs by default.
fn selected_analyzers(names: &[String]) -> Result<Vec<&'static dyn Analyzer>, String> {
    if names.is_empty() {
        return Ok(ANALYZERS
            .iter()
            .copied()
            .filter(|a| !NOT_RUN_BY_DEFAULT.contains(&a.name()))
            .collect());
    }
    names
        .iter()
        .map(|n| {
            ANALYZERS
                .iter()
                .copied()
                .find(|a| a.name() == n)
                .ok_or_else(|| {
                    format!("unknown analyzer {n:?}; `weft analyze --list-analyzers` lists them")
                })
        })
        .collect()
}

/// `* name:` and its description for each analyzer, sorted by name, as istioctl lists them.
fn list_analyzers() -> String {
    let mut all: Vec<&dyn Analyzer> = ANALYZERS.to_vec();
    all.sort_by_key(|a| a.name());
    let mut s = String::new();
    for a in all {
        s.push_str(&format!("* {}:\n", a.name()));
        if !a.description().is_empty() {
            s.push_str(&format!("    {}\n", a.description()));
        }
    }
    s
}

fn colored(level: Level, enabled: bool) -> String {
    if !enabled {
        return level.to_string();
    }
    let code = match level {
        Level::Error => "31;1",
        Level::Warning => "33;1",
        Level::Info => "36;1",
    };
    format!("\x1b[{code}m{level}\x1b[0m")
}

/// One log line: `Error [IST0101] (VirtualService default/x) Referenced host not found: "y"`.
fn log_line(m: &Message, color: bool) -> String {
    format!(
        "{} [{}] ({}) {}",
        colored(m.ty.level, color),
        m.ty.code,
        m.origin,
        m.text()
    )
}

/// istioctl's machine-readable message (its documentation links carry `?ref=istioctl-analyze`).
fn output_message(m: &Message) -> OutputMessage {
    let mut o = m.to_output();
    o.documentation_url.push_str("?ref=istioctl-analyze");
    o
}

/// What the run will be about, as istioctl words it.
fn target(args: &Args) -> String {
    if args.all_namespaces {
        "all namespaces".to_string()
    } else {
        format!("namespace: {}", args.namespace)
    }
}

/// Reads `--meshConfigFile`, or Istio's defaults.
fn load_mesh(path: Option<&PathBuf>) -> Result<MeshConfig, String> {
    let Some(path) = path else {
        return Ok(MeshConfig::default());
    };
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
    parse_mesh_config(&text, &name).map_err(|d| d.to_string())
}

fn is_config_file(p: &std::path::Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// Runs `weft analyze`; returns the process exit code.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let mut err = std::io::stderr().lock();
    if args.list_analyzers {
        print!("{}", list_analyzers());
        return Ok(0);
    }
    if args.use_kube == Some(true) {
        writeln!(
            err,
            "Error: weft analyze reads files only; run it with --use-kube=false (the default) and name the files to analyze"
        )?;
        return Ok(crate::EXIT_USAGE);
    }
    let analyzers = match selected_analyzers(&args.analyzers) {
        Ok(a) => a,
        Err(e) => {
            writeln!(err, "Error: {e}")?;
            return Ok(crate::EXIT_USAGE);
        }
    };
    let mut suppressions = Vec::new();
    for s in &args.suppress {
        match Suppression::parse(s) {
            Ok(sup) => {
                if !weft_config::analyze::messages::ALL
                    .iter()
                    .any(|t| t.code == sup.code)
                {
                    writeln!(
                        err,
                        "Warning: Supplied message code '{}' is an unknown message code and will not have any effect.",
                        sup.code
                    )?;
                }
                suppressions.push(sup);
            }
            Err(e) => {
                writeln!(err, "Error: {e}")?;
                return Ok(crate::EXIT_USAGE);
            }
        }
    }
    let mesh = match load_mesh(args.mesh_config_file.as_ref()) {
        Ok(m) => m,
        Err(e) => {
            writeln!(err, "Error: mesh config: {e}")?;
            return Ok(EXIT_PARSE_ERROR);
        }
    };

    // Gather and parse the inputs.
    let mut inputs = Vec::new();
    for input in files::collect(&args.files, true)? {
        match &input {
            Input::File(p) if !is_config_file(p) && args.files.contains(p) => writeln!(
                err,
                "Skipping file {}, recognized file extensions are: [.json .yaml .yml]",
                p.display()
            )?,
            _ => inputs.push(input),
        }
    }
    let mut resources: Vec<Resource> = Vec::new();
    let mut diagnostics: Vec<Diagnostic> = Vec::new();
    let mut files_with_errors = 0usize;
    for input in &inputs {
        let parsed = input.parse();
        if !parsed.diagnostics.is_empty() {
            files_with_errors += 1;
        }
        diagnostics.extend(parsed.diagnostics);
        resources.extend(parsed.resources);
    }
    for r in &mut resources {
        r.default_namespace(&args.namespace);
    }
    if !diagnostics.is_empty() {
        writeln!(err, "Error(s) adding files:")?;
        for d in &diagnostics {
            writeln!(err, "  {d}")?;
        }
    }

    // Analyze.
    let names: Vec<&str> = analyzers.iter().map(|a| a.name()).collect();
    if args.verbose {
        writeln!(err, "Analyzed resources in {}", target(&args))?;
        writeln!(err, "Executed analyzers:")?;
        for n in &names {
            writeln!(err, "\t {n}")?;
        }
        writeln!(err)?;
    }
    let suppressed_by_annotation: HashMap<String, Vec<String>> = resources
        .iter()
        .filter_map(|r| {
            let codes = r.metadata.annotations.get(SUPPRESS_ANNOTATION)?;
            Some((
                r.key(),
                codes.split(',').map(|c| c.trim().to_string()).collect(),
            ))
        })
        .collect();
    let messages: Vec<Message> = analyze_in(&resources, &mesh, Some(&names), &args.istio_namespace)
        .into_iter()
        .filter(|m| {
            let (_, ns, _) = split_origin(&m.origin);
            args.all_namespaces || ns.is_empty() || ns == args.namespace
        })
        .filter(|m| !suppressions.iter().any(|s| s.covers(m)))
        .filter(|m| {
            suppressed_by_annotation
                .get(&m.origin)
                .is_none_or(|codes| !codes.iter().any(|c| c == "*" || c == m.ty.code))
        })
        .collect();
    let shown: Vec<&Message> = messages
        .iter()
        .filter(|m| m.ty.level >= args.output_threshold)
        .collect();

    // Print.
    let mut out = std::io::stdout().lock();
    match args.output.as_str() {
        "json" => {
            let list: Vec<OutputMessage> = shown.iter().map(|m| output_message(m)).collect();
            let mut buf = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
            serde::Serialize::serialize(&list, &mut ser)?;
            out.write_all(&buf)?;
            writeln!(out)?;
            return Ok(0);
        }
        "yaml" => {
            let list: Vec<OutputMessage> = shown.iter().map(|m| output_message(m)).collect();
            write!(out, "{}", serde_norway::to_string(&list)?)?;
            return Ok(0);
        }
        _ => {}
    }
    let color = args.color.unwrap_or_else(|| {
        std::io::stdout().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb")
    });
    for m in &shown {
        writeln!(out, "{}", log_line(m, color))?;
    }
    if shown.is_empty() {
        if diagnostics.is_empty() {
            writeln!(
                err,
                "\u{2714} No validation issues found when analyzing {}.",
                target(&args)
            )?;
        } else {
            writeln!(
                err,
                "No validation issues found when analyzing {} (but {files_with_errors} {} could not be parsed).",
                target(&args),
                if files_with_errors == 1 {
                    "file"
                } else {
                    "files"
                }
            )?;
        }
    }
    out.flush()?;
    if messages
        .iter()
        .any(|m| m.ty.level >= args.failure_threshold)
    {
        writeln!(
            err,
            "Error: Analyzers found issues when analyzing {}.\nSee {CONFIG_ANALYSIS_URL} for more information about causes and resolutions.",
            target(&args)
        )?;
        return Ok(EXIT_ISSUES_FOUND);
    }
    if !diagnostics.is_empty() && !args.ignore_unknown {
        writeln!(err, "Error: Some files couldn't be parsed.")?;
        return Ok(EXIT_PARSE_ERROR);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("Namespace *", "Namespace bar"));
        assert!(glob_match("*", "x"));
        assert!(glob_match("Pod *.testing", "Pod mypod.testing"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxc"));
        assert!(!glob_match("Pod x", "Pod y"));
        assert!(!glob_match("ab*ba", "aba"));
    }

    #[test]
    fn origins_split() {
        assert_eq!(
            split_origin("VirtualService default/r"),
            ("VirtualService", "default", "r")
        );
        assert_eq!(split_origin("Namespace bar"), ("Namespace", "", "bar"));
    }

    #[test]
    fn suppressions_parse() {
        assert!(Suppression::parse("IST0102=Namespace *").is_ok());
        assert!(Suppression::parse("IST0102").is_err());
        assert!(Suppression::parse("a=b=c").is_err());
    }

    #[test]
    fn analyzer_list_is_sorted() {
        let l = list_analyzers();
        let names: Vec<&str> = l.lines().filter(|x| x.starts_with("* ")).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }
}
