//! `weft`: the command line of the weft service mesh.

mod analyze;
mod files;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// weft: a service mesh that speaks Istio.
#[derive(Parser)]
#[command(name = "weft", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate Istio and Kubernetes resource files with Istio's rules.
    Validate(validate::Args),
    /// Analyze configuration files for problems across resources (as `istioctl analyze`).
    Analyze(analyze::Args),
    /// Print the version of weft.
    Version(VersionArgs),
}

#[derive(clap::Args)]
struct VersionArgs {
    /// Output format: `short` (default) or `json`.
    #[arg(short, long, default_value = "short")]
    output: String,
}

/// Exit code for bad command-line usage (sysexits EX_USAGE, as istioctl uses it).
pub const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(EXIT_USAGE),
            };
        }
    };
    let result = match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Analyze(args) => analyze::run(args),
        Command::Version(args) => {
            if args.output == "json" {
                println!(
                    "{}",
                    serde_json::json!({ "clientVersion": { "version": env!("CARGO_PKG_VERSION") } })
                );
            } else {
                println!("weft {}", env!("CARGO_PKG_VERSION"));
            }
            Ok(0)
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
