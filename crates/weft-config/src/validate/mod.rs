//! Validation of resources with Istio's rules (CRD schema, CEL rules and Istio's own checks).
//!
//! Each kind implements [`Validate`] next to its types; this module holds the shared pieces:
//! the field path, the report, the entry point [`validate_resource`], and Istio's validation
//! helpers, one implementation each: [`hosts`], [`addresses`], [`ports`], [`labels`],
//! [`policy`], [`durations`], [`regex`], Kubernetes' schema wording in [`messages`], and Go's
//! parsing rules in [`go`].

pub mod addresses;
pub mod durations;
pub mod go;
pub mod hosts;
pub mod labels;
pub mod messages;
pub mod policy;
pub mod ports;
pub mod regex;

use std::fmt;

use crate::diag::{Diagnostic, Severity};
use crate::meta::ObjectMeta;
use crate::resource::{Kind, Resource, Spec};

/// A field path such as `spec.http[0].route`, built while walking a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path(String);

impl Path {
    /// A path starting at `root` (usually `spec`).
    pub fn root(root: &str) -> Self {
        Path(root.to_string())
    }

    /// `self.name`
    pub fn field(&self, name: &str) -> Path {
        if self.0.is_empty() {
            Path(name.to_string())
        } else {
            Path(format!("{}.{name}", self.0))
        }
    }

    /// `self[i]`
    pub fn index(&self, i: usize) -> Path {
        Path(format!("{}[{i}]", self.0))
    }

    /// `self[key]` for map entries.
    pub fn key(&self, key: &str) -> Path {
        Path(format!("{}[{key}]", self.0))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One validation finding at a field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    pub path: String,
    pub message: String,
}

/// Collects every finding for one resource (validation never stops at the first).
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub issues: Vec<Issue>,
}

impl Report {
    /// Records an error at `path`. Messages say what is wrong and what is allowed.
    pub fn error(&mut self, path: &Path, message: impl Into<String>) {
        self.issues.push(Issue {
            severity: Severity::Error,
            path: path.0.clone(),
            message: message.into(),
        });
    }

    /// Records a warning: accepted, but probably not what the user meant.
    pub fn warning(&mut self, path: &Path, message: impl Into<String>) {
        self.issues.push(Issue {
            severity: Severity::Warning,
            path: path.0.clone(),
            message: message.into(),
        });
    }

    /// True when any error (not warning) was recorded.
    pub fn has_errors(&self) -> bool {
        self.issues.iter().any(|i| i.severity == Severity::Error)
    }
}

/// What a validator may need to know beyond the spec.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub kind: Kind,
    pub metadata: &'a ObjectMeta,
    /// The mesh root namespace (`istio-system` unless MeshConfig says otherwise).
    pub root_namespace: &'a str,
}

impl Context<'_> {
    /// The resource's namespace, `""` if unset.
    pub fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or("")
    }
}

/// Implemented by every Istio spec type.
pub trait Validate {
    /// Checks `self` (found at `path`), recording every problem in `report`.
    fn validate(&self, ctx: &Context<'_>, path: &Path, report: &mut Report);
}

/// Validates one resource: metadata and spec. Returns every finding as a diagnostic naming
/// the file, document, resource and field.
pub fn validate_resource(r: &Resource) -> Vec<Diagnostic> {
    validate_resource_in(r, "istio-system")
}

/// As [`validate_resource`], with an explicit mesh root namespace.
pub fn validate_resource_in(r: &Resource, root_namespace: &str) -> Vec<Diagnostic> {
    let mut report = Report::default();
    let ctx = Context {
        kind: r.kind,
        metadata: &r.metadata,
        root_namespace,
    };
    validate_metadata(r, &mut report);
    let spec = Path::root("spec");
    // The CRDs of these kinds declare `spec` required; an empty one is what a missing one reads as.
    let spec_missing = match &r.spec {
        Spec::ServiceEntry(s) => *s == Default::default(),
        Spec::WorkloadEntry(s) => *s == Default::default(),
        Spec::WorkloadGroup(s) => *s == Default::default(),
        _ => false,
    };
    if spec_missing {
        report.error(&spec, "spec: Required value");
    }
    match &r.spec {
        Spec::VirtualService(s) => s.validate(&ctx, &spec, &mut report),
        Spec::DestinationRule(s) => s.validate(&ctx, &spec, &mut report),
        Spec::Gateway(s) => s.validate(&ctx, &spec, &mut report),
        Spec::ServiceEntry(s) => s.validate(&ctx, &spec, &mut report),
        Spec::WorkloadEntry(s) => s.validate(&ctx, &spec, &mut report),
        Spec::WorkloadGroup(s) => s.validate(&ctx, &spec, &mut report),
        Spec::Sidecar(s) => s.validate(&ctx, &spec, &mut report),
        Spec::EnvoyFilter(s) => s.validate(&ctx, &spec, &mut report),
        Spec::ProxyConfig(s) => s.validate(&ctx, &spec, &mut report),
        Spec::PeerAuthentication(s) => s.validate(&ctx, &spec, &mut report),
        Spec::RequestAuthentication(s) => s.validate(&ctx, &spec, &mut report),
        Spec::AuthorizationPolicy(s) => s.validate(&ctx, &spec, &mut report),
        Spec::Telemetry(s) => s.validate(&ctx, &spec, &mut report),
        Spec::WasmPlugin(s) => s.validate(&ctx, &spec, &mut report),
        Spec::MeshConfig(s) => s.validate(&ctx, &spec, &mut report),
        // Kubernetes objects are validated by the API server's schema; weft only reads them.
        _ => {}
    }
    let key = r.key();
    report
        .issues
        .into_iter()
        .map(|i| {
            Diagnostic::at(&r.source, i.message)
                .with_path(&i.path)
                .with_resource(&key)
                .with_severity(i.severity)
        })
        .collect()
}

fn validate_metadata(r: &Resource, report: &mut Report) {
    let meta = Path::root("metadata");
    // Istio understands `istio.io/dry-run` only on AuthorizationPolicy (checked there) and
    // refuses it on every other kind rather than silently enforcing the resource.
    const DRY_RUN: &str = crate::security::DRY_RUN_ANNOTATION;
    if r.kind.is_istio()
        && r.kind != Kind::AuthorizationPolicy
        && r.metadata.annotations.contains_key(DRY_RUN)
    {
        report.error(
            &meta.field("annotations").key(DRY_RUN),
            format!(
                "unsupported annotation {DRY_RUN} on {}: only AuthorizationPolicy supports it; remove the annotation",
                r.kind
            ),
        );
    }
    let name = &r.metadata.name;
    if !name.is_empty() && !hosts::is_k8s_dns1123_subdomain(name) {
        report.error(
            &meta.field("name"),
            format!(
                "invalid name {name:?}: must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-' and '.', starting and ending with an alphanumeric, at most 253 characters)"
            ),
        );
    }
    if let Some(ns) = &r.metadata.namespace
        && !ns.is_empty()
        && !hosts::is_k8s_dns1123_label(ns)
    {
        report.error(
            &meta.field("namespace"),
            format!("invalid namespace {ns:?}: must be a lowercase RFC 1123 label (a-z, 0-9 and '-', at most 63 characters)"),
        );
    }
    for (k, v) in &r.metadata.labels {
        if let Err(e) = labels::validate_label_key(k) {
            report.error(&meta.field("labels").key(k), e);
        }
        if let Err(e) = labels::validate_label_value(v) {
            report.error(&meta.field("labels").key(k), e);
        }
    }
}
