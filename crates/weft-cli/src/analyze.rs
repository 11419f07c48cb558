//! `weft analyze`: placeholder until the analyzer command lands.

/// Arguments of `weft analyze`.
#[derive(clap::Args)]
pub struct Args {
    /// Files or directories to analyze.
    pub files: Vec<std::path::PathBuf>,
}

/// Runs `weft analyze`; returns the process exit code.
pub fn run(_args: Args) -> anyhow::Result<u8> {
    anyhow::bail!("weft analyze is not implemented yet")
}
