//! The config store: a directory of Istio YAML, as the embedded platform keeps it.
//!
//! Every `.yaml`, `.yml` and `.json` file in the directory (not its subdirectories, not hidden
//! files) is a source of resources. [`ConfigStore::scan`] compares each file's modification time
//! and size with what it saw last; a new or changed file is parsed and validated with Istio's
//! rules, and it replaces that file's resources only if it has no error. A bad file is *rejected*:
//! its errors are kept for the admin API and logs, and the last good version of that file stays
//! in effect. Every scan that accepts a change bumps the revision by one.
//!
//! Writes ([`ConfigStore::apply`], [`ConfigStore::delete`]) go through files too, written to a
//! temporary name and renamed into place so that a watcher never reads half a file. An applied
//! resource lives in `<kind>-<namespace>-<name>.yaml`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;
use weft_config::validate::validate_resource;
use weft_config::{Diagnostic, Kind, Resource, Severity, Spec};

/// Namespace given to namespaced resources that name none (as `kubectl apply` does).
pub const DEFAULT_NAMESPACE: &str = "default";

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The config directory cannot be created or listed.
    #[error("config directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file could not be written, renamed or removed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Applied config has errors; nothing was written.
    #[error("{} error(s) in the applied config; nothing was written", .0.len())]
    Invalid(Vec<Diagnostic>),
    /// A resource to delete does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A resource could not be turned into YAML.
    #[error("cannot serialize {key}: {error}")]
    Serialize {
        /// `Kind namespace/name`.
        key: String,
        /// The serializer's message.
        error: String,
    },
}

/// A resource the store holds, with the file it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredResource {
    /// The parsed, validated resource (namespace defaulted).
    pub resource: Resource,
    /// The file it was read from.
    pub file: PathBuf,
}

/// A file whose latest version was refused.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RejectedFile {
    /// The file.
    pub file: String,
    /// Every error found in it (warnings are not a reason to refuse and are not listed).
    pub errors: Vec<Diagnostic>,
    /// Whether an earlier good version of the file is still in effect.
    pub serving_last_good: bool,
}

/// What one scan found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScanOutcome {
    /// Files whose new content was accepted (added or changed).
    pub accepted: Vec<PathBuf>,
    /// Files that disappeared (their resources are gone).
    pub removed: Vec<PathBuf>,
    /// Files whose new content was refused.
    pub rejected: Vec<PathBuf>,
}

impl ScanOutcome {
    /// Whether the effective config changed.
    pub fn changed(&self) -> bool {
        !self.accepted.is_empty() || !self.removed.is_empty()
    }
}

/// Modification time and size: what the watcher compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fingerprint {
    modified: Option<SystemTime>,
    len: u64,
}

#[derive(Debug, Default)]
struct FileState {
    /// What was seen last (accepted or not), so that an unchanged bad file is not re-read.
    seen: Option<Fingerprint>,
    /// The last good resources of the file (empty if it never had a good version).
    good: Option<Vec<Resource>>,
    /// Errors of the latest version, when it was refused.
    errors: Vec<Diagnostic>,
}

/// A directory of Istio YAML with the last good version of each file.
#[derive(Debug)]
pub struct ConfigStore {
    dir: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
    revision: u64,
}

fn is_config_file(p: &Path) -> bool {
    let hidden = p
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    !hidden
        && matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        )
}

/// Parses and validates one file's text. Returns the resources, or every error.
pub fn parse_and_validate(text: &str, file: &str) -> Result<Vec<Resource>, Vec<Diagnostic>> {
    let parsed = weft_config::parse_str(text, file);
    let mut errors: Vec<Diagnostic> = parsed
        .diagnostics
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    let mut resources = parsed.resources;
    for r in &mut resources {
        r.default_namespace(DEFAULT_NAMESPACE);
        errors.extend(
            validate_resource(r)
                .into_iter()
                .filter(|d| d.severity == Severity::Error),
        );
    }
    if errors.is_empty() {
        Ok(resources)
    } else {
        Err(errors)
    }
}

/// A resource as a Kubernetes-style document (`apiVersion`, `kind`, `metadata`, `spec`), for
/// `weft get` and for the files [`ConfigStore::apply`] writes.
pub fn resource_to_value(r: &Resource) -> Value {
    let spec = serde_json::to_value(&r.spec).unwrap_or(Value::Null);
    if !r.kind.is_istio() {
        // Kubernetes kinds keep the whole object (and untyped kinds the whole document).
        let mut v = spec;
        if let Value::Object(m) = &mut v {
            m.insert("apiVersion".into(), Value::String(r.api_version.clone()));
            m.insert("kind".into(), Value::String(r.kind.name().to_string()));
            if let Ok(meta) = serde_json::to_value(&r.metadata) {
                m.insert("metadata".into(), meta);
            }
        }
        return v;
    }
    let mut m = serde_json::Map::new();
    m.insert("apiVersion".into(), Value::String(r.api_version.clone()));
    m.insert("kind".into(), Value::String(r.kind.name().to_string()));
    m.insert(
        "metadata".into(),
        serde_json::to_value(&r.metadata).unwrap_or(Value::Null),
    );
    m.insert("spec".into(), spec);
    if let Some(s) = &r.status {
        m.insert("status".into(), s.clone());
    }
    Value::Object(m)
}

/// The file name an applied resource is written to: `<kind>-<namespace>-<name>.yaml`, lower
/// case, with characters other than letters, digits, `-` and `.` replaced by `_`.
pub fn file_name_for(kind: &str, namespace: &str, name: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect()
    };
    let ns = if namespace.is_empty() {
        "cluster"
    } else {
        namespace
    };
    format!("{}-{}-{}.yaml", clean(kind), clean(ns), clean(name))
}

/// Writes `content` to `path` atomically: a temporary file in the same directory, flushed,
/// then renamed over the target.
pub fn write_atomic(path: &Path, content: &[u8]) -> Result<(), StoreError> {
    let err = |source| StoreError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let base = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{base}.tmp-{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(content).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
}

/// Identity of a resource in the store: kind, namespace, name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceId {
    /// The kind.
    pub kind: Kind,
    /// The namespace (empty for cluster-scoped kinds).
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl ResourceId {
    /// The id of a resource.
    pub fn of(r: &Resource) -> ResourceId {
        ResourceId {
            kind: r.kind,
            namespace: r.namespace().to_string(),
            name: r.name().to_string(),
        }
    }
}

impl std::fmt::Display for ResourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&weft_config::resource::resource_key(
            self.kind.name(),
            &self.namespace,
            &self.name,
        ))
    }
}

impl ConfigStore {
    /// Opens (creating if needed) the directory and reads it once. Bad files are rejected as
    /// in any scan; the revision starts at 1 when the first scan found config, else 0.
    pub fn open(dir: impl Into<PathBuf>) -> Result<ConfigStore, StoreError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::Dir {
            path: dir.clone(),
            source,
        })?;
        let mut s = ConfigStore {
            dir,
            files: BTreeMap::new(),
            revision: 0,
        };
        s.scan()?;
        Ok(s)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The revision: bumped once per scan that accepted a change.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Looks at every file and takes in what changed.
    pub fn scan(&mut self) -> Result<ScanOutcome, StoreError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|source| StoreError::Dir {
            path: self.dir.clone(),
            source,
        })?;
        let mut present: BTreeMap<PathBuf, Fingerprint> = BTreeMap::new();
        for e in entries.flatten() {
            let p = e.path();
            if !is_config_file(&p) {
                continue;
            }
            let Ok(meta) = e.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            present.insert(
                p,
                Fingerprint {
                    modified: meta.modified().ok(),
                    len: meta.len(),
                },
            );
        }
        let mut out = ScanOutcome::default();
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| !present.contains_key(*p))
            .cloned()
            .collect();
        for p in gone {
            if let Some(st) = self.files.remove(&p)
                && st.good.is_some()
            {
                tracing::info!(file = %p.display(), "config file removed");
                out.removed.push(p);
            }
        }
        for (p, fp) in present {
            let st = self.files.entry(p.clone()).or_default();
            if st.seen == Some(fp) {
                continue;
            }
            st.seen = Some(fp);
            let name = p.display().to_string();
            let result = match std::fs::read(&p) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => parse_and_validate(&text, &name),
                    Err(_) => Err(vec![Diagnostic::file_error(
                        &name,
                        "file is not UTF-8 text",
                    )]),
                },
                Err(e) => Err(vec![Diagnostic::file_error(
                    &name,
                    format!("cannot read: {e}"),
                )]),
            };
            match result {
                Ok(resources) => {
                    let same = st
                        .good
                        .as_ref()
                        .is_some_and(|g| same_resources(g, &resources));
                    st.errors.clear();
                    if !same {
                        st.good = Some(resources);
                        tracing::info!(file = %name, "config file accepted");
                        out.accepted.push(p);
                    }
                }
                Err(errors) => {
                    for e in &errors {
                        tracing::warn!(file = %name, "config rejected: {e}");
                    }
                    st.errors = errors;
                    out.rejected.push(p);
                }
            }
        }
        if out.changed() {
            self.revision += 1;
        }
        Ok(out)
    }

    /// Every resource in effect, files in name order, resources in file order.
    pub fn resources(&self) -> Vec<StoredResource> {
        let mut out = Vec::new();
        for (p, st) in &self.files {
            for r in st.good.iter().flatten() {
                out.push(StoredResource {
                    resource: r.clone(),
                    file: p.clone(),
                });
            }
        }
        out
    }

    /// Files whose latest version was refused, with their errors.
    pub fn rejected(&self) -> Vec<RejectedFile> {
        self.files
            .iter()
            .filter(|(_, st)| !st.errors.is_empty())
            .map(|(p, st)| RejectedFile {
                file: p.display().to_string(),
                errors: st.errors.clone(),
                serving_last_good: st.good.is_some(),
            })
            .collect()
    }

    /// Validates `text` (one or more documents) and writes each resource to its own file,
    /// replacing an earlier version; then scans. Returns the ids written. Nothing is written
    /// when any document has an error.
    pub fn apply(&mut self, text: &str, source: &str) -> Result<Vec<ResourceId>, StoreError> {
        let resources = parse_and_validate(text, source).map_err(StoreError::Invalid)?;
        let mut writes: Vec<(PathBuf, String, ResourceId)> = Vec::new();
        for r in &resources {
            let id = ResourceId::of(r);
            let yaml = serde_norway::to_string(&resource_to_value(r)).map_err(|e| {
                StoreError::Serialize {
                    key: id.to_string(),
                    error: e.to_string(),
                }
            })?;
            let path = self
                .dir
                .join(file_name_for(r.kind.name(), r.namespace(), r.name()));
            writes.push((path, yaml, id));
        }
        // Resources applied earlier from another file (e.g. a multi-document file dropped into
        // the directory by hand) are taken out of that file, so that one definition remains.
        let targets: BTreeSet<&ResourceId> = writes.iter().map(|(_, _, id)| id).collect();
        let mut ids = Vec::new();
        for (path, yaml, id) in &writes {
            for other in self.files_with(id) {
                if &other != path {
                    self.remove_from_file(&other, &targets)?;
                }
            }
            write_atomic(path, yaml.as_bytes())?;
            ids.push(id.clone());
        }
        self.scan()?;
        Ok(ids)
    }

    /// Removes resources: a file that holds only them is deleted, others are rewritten
    /// without them. Then scans.
    pub fn delete(&mut self, ids: &[ResourceId]) -> Result<Vec<ResourceId>, StoreError> {
        let targets: BTreeSet<&ResourceId> = ids.iter().collect();
        let mut files: BTreeSet<PathBuf> = BTreeSet::new();
        let mut found = Vec::new();
        for id in ids {
            let f = self.files_with(id);
            if f.is_empty() {
                return Err(StoreError::NotFound(id.to_string()));
            }
            found.push(id.clone());
            files.extend(f);
        }
        for f in files {
            self.remove_from_file(&f, &targets)?;
        }
        self.scan()?;
        Ok(found)
    }

    fn files_with(&self, id: &ResourceId) -> Vec<PathBuf> {
        self.files
            .iter()
            .filter(|(_, st)| st.good.iter().flatten().any(|r| &ResourceId::of(r) == id))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Rewrites `file` without `ids` (deleting it when nothing is left).
    fn remove_from_file(
        &mut self,
        file: &Path,
        ids: &BTreeSet<&ResourceId>,
    ) -> Result<(), StoreError> {
        let Some(st) = self.files.get(file) else {
            return Ok(());
        };
        let keep: Vec<&Resource> = st
            .good
            .iter()
            .flatten()
            .filter(|r| !ids.contains(&ResourceId::of(r)))
            .collect();
        if keep.is_empty() {
            return std::fs::remove_file(file).map_err(|source| StoreError::Write {
                path: file.to_path_buf(),
                source,
            });
        }
        let mut text = String::new();
        for r in keep {
            let yaml = serde_norway::to_string(&resource_to_value(r)).map_err(|e| {
                StoreError::Serialize {
                    key: r.key(),
                    error: e.to_string(),
                }
            })?;
            if !text.is_empty() {
                text.push_str("---\n");
            }
            text.push_str(&yaml);
        }
        write_atomic(file, text.as_bytes())
    }
}

/// Equality of two versions of a file's resources, ignoring where they were read from.
fn same_resources(a: &[Resource], b: &[Resource]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.kind == y.kind && x.metadata == y.metadata && x.spec == y.spec && x.status == y.status
        })
}

/// The resources among `all` that are endpoints rather than config: changing only these
/// updates EDS (and the inbound config of the proxies at those addresses).
pub fn is_endpoint_kind(kind: Kind) -> bool {
    matches!(kind, Kind::Pod | Kind::EndpointSlice | Kind::WorkloadEntry)
}

/// Addresses a resource gives to endpoints (pod IPs, EndpointSlice addresses, WorkloadEntry
/// addresses): the proxies at these addresses may serve the changed endpoints.
pub fn endpoint_addresses(r: &Resource) -> Vec<String> {
    match &r.spec {
        Spec::Pod(p) => p
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .into_iter()
            .collect(),
        Spec::EndpointSlice(s) => s
            .endpoints
            .iter()
            .flat_map(|e| e.addresses.iter().cloned())
            .collect(),
        Spec::WorkloadEntry(w) => vec![w.address.clone()],
        _ => Vec::new(),
    }
}
