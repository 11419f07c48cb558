//! `weft validate`: checks files against Istio's validation rules and prints every error.

use std::path::PathBuf;

use weft_config::validate::validate_resource;
use weft_config::{Diagnostic, Severity};

use crate::files;

/// Arguments of `weft validate`.
#[derive(clap::Args)]
pub struct Args {
    /// Files or directories to validate (`-` reads standard input). Directories are read
    /// recursively for .yaml, .yml and .json files.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Output format: `text` (default) or `json`.
    #[arg(short, long, default_value = "text", value_parser = ["text", "json"])]
    pub output: String,
}

/// Exit code when any input is invalid.
const EXIT_INVALID: u8 = 1;

/// Runs `weft validate`; returns the process exit code (0 valid, 1 invalid).
pub fn run(args: Args) -> anyhow::Result<u8> {
    let inputs = files::collect(&args.files, true)?;
    let mut diagnostics: Vec<Diagnostic> = Vec::new();
    let mut resources = 0usize;
    for input in &inputs {
        let parsed = input.parse();
        diagnostics.extend(parsed.diagnostics);
        for r in &parsed.resources {
            resources += 1;
            diagnostics.extend(validate_resource(r));
        }
    }
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diagnostics.len() - errors;
    if args.output == "json" {
        let out = serde_json::json!({
            "valid": errors == 0,
            "files": inputs.len(),
            "resources": resources,
            "errors": errors,
            "warnings": warnings,
            "diagnostics": diagnostics,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for d in &diagnostics {
            println!("{d}");
        }
        if errors == 0 {
            println!(
                "{resources} resource(s) in {} file(s) valid{}",
                inputs.len(),
                if warnings > 0 {
                    format!(" ({warnings} warning(s))")
                } else {
                    String::new()
                }
            );
        } else {
            println!(
                "{errors} error(s), {warnings} warning(s) in {} file(s)",
                inputs.len()
            );
        }
    }
    Ok(if errors == 0 { 0 } else { EXIT_INVALID })
}
