//! Turning the files and directories a user names into the list of files to read.

use std::path::{Path, PathBuf};

/// An input to read: a file on disk or standard input (`-`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    File(PathBuf),
    Stdin,
}

impl Input {
    /// Reads and parses the input into resources and diagnostics.
    pub fn parse(&self) -> weft_config::Parsed {
        match self {
            Input::File(p) => weft_config::parse_file(p),
            Input::Stdin => {
                let mut text = String::new();
                match std::io::Read::read_to_string(&mut std::io::stdin(), &mut text) {
                    Ok(_) => weft_config::parse_str(&text, "-"),
                    Err(e) => weft_config::Parsed {
                        resources: vec![],
                        diagnostics: vec![weft_config::Diagnostic::file_error(
                            "-",
                            format!("cannot read standard input: {e}"),
                        )],
                    },
                }
            }
        }
    }
}

fn is_config_file(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// Expands `paths` into inputs: files as given, directories to their `.yaml`/`.yml`/`.json`
/// files (descending into subdirectories when `recursive`), `-` to standard input. Files are
/// sorted so that output is stable. A path that does not exist is an error naming it.
pub fn collect(paths: &[PathBuf], recursive: bool) -> anyhow::Result<Vec<Input>> {
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            out.push(Input::Stdin);
            continue;
        }
        let meta = std::fs::metadata(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            walk(p, recursive, &mut found)?;
            found.sort();
            out.extend(found.into_iter().map(Input::File));
        } else {
            out.push(Input::File(p.clone()));
        }
    }
    Ok(out)
}

fn walk(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
        let path = entry.path();
        let ft = entry
            .file_type()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if ft.is_dir() {
            if recursive {
                walk(&path, recursive, out)?;
            }
        } else if is_config_file(&path) {
            out.push(path);
        }
    }
    Ok(())
}
