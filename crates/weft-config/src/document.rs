//! Reading files: multi-document YAML or JSON into typed [`Resource`]s.
//!
//! Each document is first read into a generic tree (so that one bad document does not stop
//! the others), its `apiVersion`/`kind` looked up, then deserialized into its typed form with
//! the path of any offending field recorded.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::diag::Diagnostic;
use crate::meta::ObjectMeta;
use crate::resource::{Kind, Resource, Source, Spec};
use crate::{extensions, mesh, networking, security, telemetry};

/// Documents larger than this are refused before parsing (a guard against memory blow-ups;
/// Kubernetes itself refuses objects over 1.5 MB, so no real resource comes near it).
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;

/// Files larger than this are refused outright.
pub const MAX_FILE_BYTES: usize = 64 * 1024 * 1024;

/// Nesting deeper than this is refused (no Istio resource nests beyond ~20 levels).
pub const MAX_DEPTH: usize = 100;

/// The outcome of reading one file: every resource that parsed and a diagnostic for every
/// document that did not.
#[derive(Debug, Default)]
pub struct Parsed {
    pub resources: Vec<Resource>,
    pub diagnostics: Vec<Diagnostic>,
}

/// A raw document with its position.
struct RawDoc<'a> {
    text: &'a str,
    line: usize,
}

/// Splits YAML text into documents on `---` separator lines, remembering where each starts.
fn split_documents(text: &str) -> Vec<RawDoc<'_>> {
    let mut docs = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1usize;
    let mut offset = 0usize;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_end_matches(['\n', '\r']);
        let is_sep = trimmed == "---" || trimmed.starts_with("--- ") || trimmed == "...";
        if is_sep {
            docs.push(RawDoc {
                text: &text[start..offset],
                line: start_line,
            });
            start = offset + line.len();
            start_line = i + 2;
            if trimmed.starts_with("--- ") {
                // `--- {inline: doc}`: the content after the marker belongs to the next document.
                start = offset + 4;
                start_line = i + 1;
            }
        }
        offset += line.len();
    }
    docs.push(RawDoc {
        text: &text[start..],
        line: start_line,
    });
    docs
}

fn is_blank_document(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t.starts_with('%')
    })
}

/// Depth of a JSON tree, without recursion.
fn depth(v: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        max = max.max(d);
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            Value::Object(o) => stack.extend(o.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    max
}

/// Parses the text of one file (YAML, multi-document YAML, or JSON).
pub fn parse_str(text: &str, file: &str) -> Parsed {
    let file: Arc<str> = Arc::from(file);
    let mut out = Parsed::default();
    if text.len() > MAX_FILE_BYTES {
        out.diagnostics.push(Diagnostic::file_error(
            &file,
            format!(
                "file is {} bytes; the limit is {MAX_FILE_BYTES} bytes",
                text.len()
            ),
        ));
        return out;
    }
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        parse_json(text, &file, &mut out);
        return out;
    }
    for (i, raw) in split_documents(text).into_iter().enumerate() {
        let source = Source {
            file: file.clone(),
            document: i + 1,
            line: raw.line,
        };
        if is_blank_document(raw.text) {
            continue;
        }
        if raw.text.len() > MAX_DOCUMENT_BYTES {
            out.diagnostics.push(Diagnostic::at(
                &source,
                format!(
                    "document is {} bytes; the limit is {MAX_DOCUMENT_BYTES} bytes",
                    raw.text.len()
                ),
            ));
            continue;
        }
        match serde_norway::from_str::<Value>(raw.text) {
            Ok(Value::Null) => {}
            Ok(v) => add_value(v, &source, &mut out),
            Err(e) => {
                let mut d = Diagnostic::at(&source, format!("not valid YAML: {e}"));
                if let Some(loc) = e.location() {
                    d.line = Some(raw.line + loc.line() - 1);
                }
                out.diagnostics.push(d);
            }
        }
    }
    out
}

fn parse_json(text: &str, file: &Arc<str>, out: &mut Parsed) {
    let stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    for (i, item) in stream.enumerate() {
        let source = Source {
            file: file.clone(),
            document: i + 1,
            line: 1,
        };
        match item {
            Ok(Value::Array(items)) => {
                for v in items {
                    add_value(v, &source, out);
                }
            }
            Ok(v) => add_value(v, &source, out),
            Err(e) => {
                let mut d = Diagnostic::at(&source, format!("not valid JSON: {e}"));
                d.line = Some(e.line());
                out.diagnostics.push(d);
                return;
            }
        }
    }
}

/// Turns one document tree into a resource (or expands a `kind: List`).
fn add_value(v: Value, source: &Source, out: &mut Parsed) {
    if depth(&v) > MAX_DEPTH {
        out.diagnostics.push(Diagnostic::at(
            source,
            format!("document nests deeper than {MAX_DEPTH} levels"),
        ));
        return;
    }
    if let Value::Object(map) = &v
        && map.get("kind").and_then(Value::as_str) == Some("List")
    {
        if let Some(Value::Array(items)) = map.get("items") {
            for item in items {
                add_value(item.clone(), source, out);
            }
        } else {
            out.diagnostics
                .push(Diagnostic::at(source, "kind List without an items array"));
        }
        return;
    }
    match resource_from_value(v, source.clone()) {
        Ok(r) => out.resources.push(r),
        Err(d) => out.diagnostics.push(*d),
    }
}

/// Builds a typed resource from a document tree. The error names the resource and field.
pub fn resource_from_value(v: Value, source: Source) -> Result<Resource, Box<Diagnostic>> {
    let Value::Object(mut map) = v else {
        return Err(Box::new(Diagnostic::at(
            &source,
            format!(
                "expected a mapping with apiVersion, kind and metadata; found {}",
                type_name(&v)
            ),
        )));
    };
    let str_field =
        |map: &serde_json::Map<String, Value>, k: &str| -> Result<String, Box<Diagnostic>> {
            match map.get(k) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(Value::String(_)) | None => Err(Box::new(
                    Diagnostic::at(&source, format!("{k}: Required value")).with_path(k),
                )),
                Some(other) => Err(Box::new(
                    Diagnostic::at(
                        &source,
                        format!("{k} must be a string, found {}", type_name(other)),
                    )
                    .with_path(k),
                )),
            }
        };
    let api_version = str_field(&map, "apiVersion")?;
    let kind_name = str_field(&map, "kind")?;
    let kind = Kind::resolve(&api_version, &kind_name)
        .map_err(|m| Box::new(Diagnostic::at(&source, m).with_path("kind")))?;

    let metadata_value = map
        .get("metadata")
        .cloned()
        .unwrap_or(Value::Object(Default::default()));
    let metadata: ObjectMeta = typed(&metadata_value, "metadata").map_err(|(p, m)| {
        Box::new(
            Diagnostic::at(&source, m)
                .with_path(&p)
                .with_kind(&kind_name),
        )
    })?;
    let key = crate::resource::resource_key(
        &kind_name,
        metadata.namespace.as_deref().unwrap_or(""),
        &metadata.name,
    );
    let fail = |path: String, msg: String| {
        Box::new(
            Diagnostic::at(&source, msg)
                .with_path(&path)
                .with_resource(&key),
        )
    };
    if metadata.name.is_empty() && metadata.generate_name.is_none() && kind != Kind::MeshConfig {
        return Err(fail(
            "metadata.name".into(),
            "metadata.name: Required value".into(),
        ));
    }

    let mut status = None;
    let spec = if kind.is_istio() {
        for k in map.keys() {
            if !matches!(
                k.as_str(),
                "apiVersion" | "kind" | "metadata" | "spec" | "status"
            ) {
                return Err(fail(
                    k.clone(),
                    format!(
                        "unknown field `{k}`, expected one of `apiVersion`, `kind`, `metadata`, `spec`, `status`"
                    ),
                ));
            }
        }
        status = map.remove("status").filter(|v| !v.is_null());
        // A missing spec reads as empty, as `istioctl analyze` reads files; kinds whose CRD
        // requires `spec` are refused by validation (`spec: Required value`).
        let spec_value = match map.remove("spec") {
            Some(v) if !v.is_null() => v,
            _ => Value::Object(Default::default()),
        };
        istio_spec(kind, &spec_value).map_err(|(p, m)| fail(p, m))?
    } else {
        let whole = Value::Object(map);
        kube_spec(kind, &whole).map_err(|(p, m)| fail(p, m))?
    };
    Ok(Resource {
        api_version,
        kind,
        metadata,
        spec,
        status,
        source,
    })
}

/// Deserializes `v` as `T`, returning `(path, message)` on failure, the path rooted at `root`.
pub fn typed<T: DeserializeOwned>(v: &Value, root: &str) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let inner = e.path().to_string();
        let path = if inner == "." || inner.is_empty() {
            root.to_string()
        } else if root.is_empty() {
            inner
        } else if inner.starts_with('[') {
            format!("{root}{inner}")
        } else {
            format!("{root}.{inner}")
        };
        let msg = e.into_inner().to_string();
        match kube_type_error(&msg) {
            Some(kube) => (path.clone(), format!("{path} in body {kube} ({msg})")),
            None => (path.clone(), format!("{path}: {msg}")),
        }
    })
}

/// Restates serde's `invalid type: X, expected Y` in the API server's words
/// (`must be of type object: "null"`), so messages read the same as `kubectl apply`'s.
fn kube_type_error(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("invalid type: ")?;
    let (found, expected) = rest.split_once(", expected ")?;
    let want = if expected.starts_with("struct") || expected.starts_with("a map") {
        "object"
    } else if expected.starts_with("a sequence") {
        "array"
    } else if expected.starts_with("a string") || expected.contains("duration string") {
        "string"
    } else if expected.starts_with('u') || expected.starts_with('i') {
        "integer"
    } else if expected.starts_with('f') {
        "number"
    } else if expected.starts_with("a boolean") {
        "boolean"
    } else {
        return None;
    };
    let got = match found.split_whitespace().next()? {
        "null" | "unit" => "null",
        "string" => "string",
        "integer" => "integer",
        "floating" => "number",
        "boolean" => "boolean",
        "sequence" => "array",
        "map" => "object",
        _ => return None,
    };
    Some(format!("must be of type {want}: \"{got}\""))
}

fn istio_spec(kind: Kind, v: &Value) -> Result<Spec, (String, String)> {
    let s = "spec";
    Ok(match kind {
        Kind::VirtualService => Spec::VirtualService(typed::<networking::VirtualService>(v, s)?),
        Kind::DestinationRule => Spec::DestinationRule(typed::<networking::DestinationRule>(v, s)?),
        Kind::Gateway => Spec::Gateway(typed::<networking::Gateway>(v, s)?),
        Kind::ServiceEntry => Spec::ServiceEntry(typed::<networking::ServiceEntry>(v, s)?),
        Kind::WorkloadEntry => Spec::WorkloadEntry(typed::<networking::WorkloadEntry>(v, s)?),
        Kind::WorkloadGroup => Spec::WorkloadGroup(typed::<networking::WorkloadGroup>(v, s)?),
        Kind::Sidecar => Spec::Sidecar(typed::<networking::Sidecar>(v, s)?),
        Kind::EnvoyFilter => Spec::EnvoyFilter(typed::<networking::EnvoyFilter>(v, s)?),
        Kind::ProxyConfig => Spec::ProxyConfig(typed::<networking::ProxyConfig>(v, s)?),
        Kind::PeerAuthentication => {
            Spec::PeerAuthentication(typed::<security::PeerAuthentication>(v, s)?)
        }
        Kind::RequestAuthentication => {
            Spec::RequestAuthentication(typed::<security::RequestAuthentication>(v, s)?)
        }
        Kind::AuthorizationPolicy => {
            Spec::AuthorizationPolicy(typed::<security::AuthorizationPolicy>(v, s)?)
        }
        Kind::Telemetry => Spec::Telemetry(typed::<telemetry::Telemetry>(v, s)?),
        Kind::WasmPlugin => Spec::WasmPlugin(typed::<extensions::WasmPlugin>(v, s)?),
        other => unreachable!("{other} is not an Istio kind"),
    })
}

fn kube_spec(kind: Kind, v: &Value) -> Result<Spec, (String, String)> {
    Ok(match kind {
        Kind::Namespace => Spec::Namespace(Box::new(typed(v, "")?)),
        Kind::Service => Spec::Service(Box::new(typed(v, "")?)),
        Kind::ServiceAccount => Spec::ServiceAccount(Box::new(typed(v, "")?)),
        Kind::Pod => Spec::Pod(Box::new(typed(v, "")?)),
        Kind::Deployment => Spec::Deployment(Box::new(typed(v, "")?)),
        Kind::Secret => Spec::Secret(Box::new(typed(v, "")?)),
        Kind::ConfigMap => Spec::ConfigMap(Box::new(typed(v, "")?)),
        Kind::EndpointSlice => Spec::EndpointSlice(Box::new(typed(v, "")?)),
        Kind::MutatingWebhookConfiguration => {
            Spec::MutatingWebhookConfiguration(Box::new(typed(v, "")?))
        }
        Kind::ValidatingWebhookConfiguration => {
            Spec::ValidatingWebhookConfiguration(Box::new(typed(v, "")?))
        }
        Kind::MeshConfig => {
            let spec = v
                .get("spec")
                .cloned()
                .unwrap_or(Value::Object(Default::default()));
            Spec::MeshConfig(Box::new(typed::<mesh::MeshConfig>(&spec, "spec")?))
        }
        Kind::KubeGateway | Kind::HttpRoute | Kind::GrpcRoute => Spec::Untyped(v.clone()),
        other => unreachable!("{other} is an Istio kind"),
    })
}

/// Parses a MeshConfig file (the `mesh` key of Istio's `istio` ConfigMap, or the bare
/// MeshConfig YAML as `--meshConfigFile` takes it).
pub fn parse_mesh_config(text: &str, file: &str) -> Result<mesh::MeshConfig, Box<Diagnostic>> {
    let source = Source {
        file: Arc::from(file),
        document: 1,
        line: 1,
    };
    let v: Value = serde_norway::from_str(text)
        .map_err(|e| Box::new(Diagnostic::at(&source, format!("not valid YAML: {e}"))))?;
    let v = if v.is_null() {
        Value::Object(Default::default())
    } else {
        v
    };
    // An `istio` ConfigMap carries the MeshConfig as a YAML string under data.mesh.
    if let Some(mesh_text) = v.pointer("/data/mesh").and_then(Value::as_str) {
        return parse_mesh_config(mesh_text, file);
    }
    typed::<mesh::MeshConfig>(&v, "").map_err(|(p, m)| {
        Box::new(
            Diagnostic::at(&source, m)
                .with_path(&p)
                .with_resource("MeshConfig"),
        )
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Reads and parses a file from disk; an unreadable file becomes a diagnostic.
pub fn parse_file(path: &std::path::Path) -> Parsed {
    let name = path.display().to_string();
    match std::fs::metadata(path) {
        Ok(m) if m.len() as usize > MAX_FILE_BYTES => {
            return Parsed {
                resources: vec![],
                diagnostics: vec![Diagnostic::file_error(
                    &name,
                    format!(
                        "file is {} bytes; the limit is {MAX_FILE_BYTES} bytes",
                        m.len()
                    ),
                )],
            };
        }
        Err(e) => {
            return Parsed {
                resources: vec![],
                diagnostics: vec![Diagnostic::file_error(&name, format!("cannot read: {e}"))],
            };
        }
        Ok(_) => {}
    }
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => parse_str(&text, &name),
            Err(e) => Parsed {
                resources: vec![],
                diagnostics: vec![Diagnostic::file_error(
                    &name,
                    format!(
                        "not UTF-8 text (invalid byte at offset {}); YAML and JSON files must be UTF-8",
                        e.utf8_error().valid_up_to()
                    ),
                )],
            },
        },
        Err(e) => Parsed {
            resources: vec![],
            diagnostics: vec![Diagnostic::file_error(&name, format!("cannot read: {e}"))],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_with_lines() {
        let docs = split_documents("a: 1\n---\nb: 2\n---\n\nc: 3\n");
        let lines: Vec<usize> = docs.iter().map(|d| d.line).collect();
        assert_eq!(lines, vec![1, 3, 5]);
        assert_eq!(docs[1].text, "b: 2\n");
    }

    #[test]
    fn unknown_kind_is_reported() {
        let p = parse_str(
            "apiVersion: v1\nkind: Banana\nmetadata: {name: x}\n",
            "f.yaml",
        );
        assert!(p.resources.is_empty());
        assert!(
            p.diagnostics[0].message.contains("unknown kind"),
            "{:?}",
            p.diagnostics
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in [
            "\u{0}\u{1}\u{2}",
            "{{{{",
            "- - - - [",
            ": : :",
            "key: [unclosed",
        ] {
            let p = parse_str(text, "g.yaml");
            assert!(p.resources.is_empty());
            assert!(!p.diagnostics.is_empty(), "{text:?} produced no diagnostic");
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
        let p = parse_str(&text, "deep.json");
        assert!(!p.diagnostics.is_empty());
        let yaml = format!("a: {}1{}", "[".repeat(5000), "]".repeat(5000));
        let p = parse_str(&yaml, "deep.yaml");
        assert!(!p.diagnostics.is_empty());
    }
}
