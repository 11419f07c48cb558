//! `weft`: the command line of the weft service mesh.

mod analyze;
mod authz_cmd;
mod bootstrap_cmd;
mod config_cmds;
mod control_plane;
mod files;
mod proxy_cmds;
mod table;
mod up;
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
    /// Run the control plane: config directory, xDS server and admin API.
    ControlPlane(control_plane::Args),
    /// Apply configuration files through the control plane.
    Apply(config_cmds::ApplyArgs),
    /// List or show resources held by the control plane.
    Get(config_cmds::GetArgs),
    /// Delete resources from the control plane.
    Delete(config_cmds::DeleteArgs),
    /// Show the xDS sync state of the proxies (as `istioctl proxy-status`).
    ProxyStatus(proxy_cmds::StatusArgs),
    /// Show the Envoy config the control plane serves a proxy (as `istioctl proxy-config`).
    ProxyConfig(proxy_cmds::ConfigArgs),
    /// Run a whole mesh on this machine: control plane, workloads with sidecars, gateways.
    Up(up::UpArgs),
    /// Stop the mesh `weft up` runs.
    Down(up::DownArgs),
    /// Show what `weft up` runs: addresses, ports, health and sync state.
    Status(up::StatusArgs),
    /// Experimental commands.
    #[command(subcommand)]
    X(XCommand),
}

#[derive(Subcommand)]
enum XCommand {
    /// Show the listener, route and cluster an HTTP request from a proxy takes.
    RouteCheck(proxy_cmds::RouteCheckArgs),
    /// Print the Envoy bootstrap with which weft-proxy joins the mesh for a workload.
    Bootstrap(bootstrap_cmd::Args),
    /// Authorization of a workload.
    #[command(subcommand)]
    Authz(AuthzCommand),
    /// Issue a bootstrap token proving a workload identity to the certificate service.
    Token(control_plane::TokenArgs),
}

#[derive(Subcommand)]
enum AuthzCommand {
    /// List the policies applied to a workload and what they allow and deny.
    Check(authz_cmd::CheckArgs),
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
        Command::ControlPlane(args) => control_plane::run(args),
        Command::Apply(args) => config_cmds::apply(args),
        Command::Get(args) => config_cmds::get(args),
        Command::Delete(args) => config_cmds::delete(args),
        Command::ProxyStatus(args) => proxy_cmds::status(args),
        Command::ProxyConfig(args) => proxy_cmds::config(args),
        Command::Up(args) => up::up(args),
        Command::Down(args) => up::down(args),
        Command::Status(args) => up::status(args),
        Command::X(XCommand::RouteCheck(args)) => proxy_cmds::route_check_cmd(args),
        Command::X(XCommand::Bootstrap(args)) => bootstrap_cmd::run(args),
        Command::X(XCommand::Authz(AuthzCommand::Check(args))) => authz_cmd::check(args),
        Command::X(XCommand::Token(args)) => control_plane::token(args),
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
