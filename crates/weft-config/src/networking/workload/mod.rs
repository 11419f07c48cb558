//! Placeholder: filled in with the full Istio API.

use serde::{Deserialize, Serialize};

use crate::validate::{Context, Path, Report, Validate};

/// `WorkloadEntry` spec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEntry {}

impl Validate for WorkloadEntry {
    fn validate(&self, _ctx: &Context<'_>, _path: &Path, _report: &mut Report) {}
}

/// `WorkloadGroup` spec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadGroup {}

impl Validate for WorkloadGroup {
    fn validate(&self, _ctx: &Context<'_>, _path: &Path, _report: &mut Report) {}
}
