//! `weft apply`, `weft get`, `weft delete`: config through the control plane's admin API.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::Value;
use weft_control::server::client::{AdminClient, encode};

use crate::files;

/// The admin API URL flag shared by every command that talks to a control plane.
#[derive(clap::Args, Clone)]
pub struct Target {
    /// The control plane's admin API.
    #[arg(long = "control-plane", default_value = "http://127.0.0.1:15014")]
    pub control_plane: String,
}

impl Target {
    /// A client of the control plane.
    pub fn client(&self) -> anyhow::Result<AdminClient> {
        Ok(AdminClient::new(&self.control_plane)?)
    }
}

/// Runs an async admin API exchange on a small runtime.
pub fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?
        .block_on(f)
}

/// Arguments of `weft apply`.
#[derive(clap::Args)]
pub struct ApplyArgs {
    /// Files or directories to apply (`-` reads standard input).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub target: Target,
}

fn read_input(input: &files::Input) -> anyhow::Result<(String, String)> {
    match input {
        files::Input::File(p) => Ok((
            p.display().to_string(),
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        )),
        files::Input::Stdin => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .context("cannot read standard input")?;
            Ok(("-".to_string(), s))
        }
    }
}

/// Prints the errors of a refused apply.
fn print_errors(name: &str, answer: &Value) {
    if let Some(errors) = answer.get("errors").and_then(Value::as_array) {
        for e in errors {
            let resource = e.get("resource").and_then(Value::as_str).unwrap_or("");
            let path = e.get("path").and_then(Value::as_str).unwrap_or("");
            let msg = e.get("message").and_then(Value::as_str).unwrap_or("");
            let doc = e.get("document").and_then(Value::as_u64).unwrap_or(0);
            let mut line = format!("{name} (document {doc}): error:");
            if !resource.is_empty() {
                line.push_str(&format!(" {resource}:"));
            }
            if !path.is_empty() && !msg.starts_with(path) {
                line.push_str(&format!(" {path}:"));
            }
            line.push_str(&format!(" {msg}"));
            eprintln!("{line}");
        }
    }
}

/// `weft apply -f FILE|DIR`: every file is validated by the control plane and written to its
/// store; a file with errors is refused whole (exit 1), the others still apply.
pub fn apply(args: ApplyArgs) -> anyhow::Result<u8> {
    let inputs = files::collect(&args.files, true)?;
    let client = args.target.client()?;
    block_on(async move {
        let mut failed = false;
        for input in &inputs {
            let (name, text) = read_input(input)?;
            let a = client.post("/apply", text).await?;
            if a.ok() {
                let v = a.json()?;
                for id in v
                    .get("applied")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    println!("{} applied", id.as_str().unwrap_or(""));
                }
            } else {
                failed = true;
                eprintln!("{name}: {}", a.error_message());
                if let Ok(v) = a.json() {
                    print_errors(&name, &v);
                }
            }
        }
        Ok(if failed { 1 } else { 0 })
    })
}

/// Arguments of `weft get`.
#[derive(clap::Args)]
pub struct GetArgs {
    /// Kind (`VirtualService`, `virtualservices`, `vs`, ...).
    pub kind: String,
    /// Name (all when omitted).
    pub name: Option<String>,
    /// Namespace (all when omitted).
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Output format: a table (default), `yaml` or `json`.
    #[arg(short, long, value_parser = ["yaml", "json"])]
    pub output: Option<String>,
    #[command(flatten)]
    pub target: Target,
}

/// `weft get KIND [NAME] [-n NS] [-o yaml|json]`.
pub fn get(args: GetArgs) -> anyhow::Result<u8> {
    let client = args.target.client()?;
    let mut q = format!("/resources?kind={}", encode(&args.kind));
    if let Some(ns) = &args.namespace {
        q.push_str(&format!("&namespace={}", encode(ns)));
    }
    if let Some(n) = &args.name {
        q.push_str(&format!("&name={}", encode(n)));
    }
    let a = block_on(async move { Ok(client.get(&q).await?) })?;
    if !a.ok() {
        bail!("{}", a.error_message());
    }
    let v = a.json()?;
    let items: Vec<Value> = v
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if items.is_empty() {
        if let Some(n) = &args.name {
            eprintln!(
                "{} {n} not found{}",
                args.kind,
                args.namespace
                    .as_ref()
                    .map(|ns| format!(" in namespace {ns}"))
                    .unwrap_or_default()
            );
            return Ok(1);
        }
        eprintln!("No resources found.");
        return Ok(0);
    }
    match args.output.as_deref() {
        Some("json") => {
            let out = if items.len() == 1 && args.name.is_some() {
                items[0].clone()
            } else {
                serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": items })
            };
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Some(_) => {
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    println!("---");
                }
                print!("{}", serde_norway::to_string(it)?);
            }
        }
        None => {
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|it| {
                    let md = it.get("metadata");
                    let s = |k: &str| {
                        md.and_then(|m| m.get(k))
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string()
                    };
                    vec![
                        s("namespace"),
                        s("name"),
                        it.get("kind")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    ]
                })
                .collect();
            crate::table::print(&["NAMESPACE", "NAME", "KIND"], &rows);
        }
    }
    Ok(0)
}

/// Arguments of `weft delete`.
#[derive(clap::Args)]
pub struct DeleteArgs {
    /// Kind, when deleting by name.
    pub kind: Option<String>,
    /// Name, when deleting by name.
    pub name: Option<String>,
    /// Namespace of the resource deleted by name.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// Delete the resources defined in these files.
    #[arg(short = 'f', long = "filename", num_args = 1..)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub target: Target,
}

/// `weft delete -f FILE` or `weft delete KIND NAME -n NS`.
pub fn delete(args: DeleteArgs) -> anyhow::Result<u8> {
    let mut targets: Vec<(String, String, String)> = Vec::new();
    if !args.files.is_empty() {
        for input in files::collect(&args.files, true)? {
            let parsed = input.parse();
            if let Some(d) = parsed.diagnostics.first() {
                bail!("{d}");
            }
            for mut r in parsed.resources {
                r.default_namespace("default");
                targets.push((
                    r.kind.name().to_string(),
                    r.namespace().to_string(),
                    r.name().to_string(),
                ));
            }
        }
    } else {
        match (&args.kind, &args.name) {
            (Some(k), Some(n)) => targets.push((k.clone(), args.namespace.clone(), n.clone())),
            _ => bail!("give KIND NAME [-n NAMESPACE] or -f FILE"),
        }
    }
    let client = args.target.client()?;
    block_on(async move {
        let mut failed = false;
        for (kind, ns, name) in targets {
            let path = if ns.is_empty() {
                format!("/resources/{}/{}", encode(&kind), encode(&name))
            } else {
                format!(
                    "/resources/{}/{}/{}",
                    encode(&kind),
                    encode(&ns),
                    encode(&name)
                )
            };
            let a = client.delete(&path).await?;
            if a.ok() {
                let v = a.json()?;
                for id in v
                    .get("deleted")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    println!("{} deleted", id.as_str().unwrap_or(""));
                }
            } else {
                failed = true;
                eprintln!("error: {}", a.error_message());
            }
        }
        Ok(if failed { 1 } else { 0 })
    })
}
