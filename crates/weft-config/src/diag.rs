//! Diagnostics: what is wrong with the input, and exactly where.

use std::fmt;

use serde::Serialize;

use crate::resource::Source;

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// One problem found in an input file, with the file, document, resource and field it is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    /// 1-based document index within the file (0 when the whole file is at fault).
    pub document: usize,
    /// 1-based line, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// `Kind namespace/name` when the resource could be identified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Field path such as `spec.http[0].route[0].weight`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub message: String,
}

impl Diagnostic {
    /// An error about a document.
    pub fn at(source: &Source, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: source.file.to_string(),
            document: source.document,
            line: Some(source.line),
            resource: None,
            path: None,
            message: message.into(),
        }
    }

    /// An error about a whole file (unreadable, too large, not text).
    pub fn file_error(file: &str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: file.to_string(),
            document: 0,
            line: None,
            resource: None,
            path: None,
            message: message.into(),
        }
    }

    /// Sets the field path.
    pub fn with_path(mut self, path: &str) -> Self {
        self.path = Some(path.to_string());
        self
    }

    /// Sets the resource (`Kind namespace/name`).
    pub fn with_resource(mut self, key: &str) -> Self {
        self.resource = Some(key.to_string());
        self
    }

    /// Sets the resource to just its kind, when the name is not known yet.
    pub fn with_kind(mut self, kind: &str) -> Self {
        self.resource = Some(kind.to_string());
        self
    }

    /// Sets the severity.
    pub fn with_severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }
}

impl fmt::Display for Diagnostic {
    /// `file:line: error: Kind ns/name: spec.path: message`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.document > 0 {
            write!(f, " (document {})", self.document)?;
        }
        write!(f, ": {}: ", self.severity)?;
        if let Some(r) = &self.resource {
            write!(f, "{r}: ")?;
        }
        // Messages from deserialization already start with the path; do not repeat it.
        match &self.path {
            Some(p) if !self.message.starts_with(p.as_str()) => write!(f, "{p}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}
