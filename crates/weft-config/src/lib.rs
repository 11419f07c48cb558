//! weft's configuration model: Istio and Kubernetes resources as Rust types, read from YAML
//! or JSON exactly as Istio users write them, validated with Istio's rules and analyzed with
//! Istio's analyzers.
//!
//! Start at [`document::parse_str`] (text to [`Resource`]s), then
//! [`validate::validate_resource`] and [`analyze`].

pub mod analyze;
pub mod diag;
pub mod document;
pub mod duration;
pub mod extensions;
pub mod mesh;
pub mod meta;
pub mod networking;
pub mod resource;
pub mod security;
pub mod serde_util;
pub mod telemetry;
pub mod validate;

pub use diag::{Diagnostic, Severity};
pub use document::{Parsed, parse_file, parse_str};
pub use duration::Duration;
pub use resource::{Kind, Resource, Source, Spec};
