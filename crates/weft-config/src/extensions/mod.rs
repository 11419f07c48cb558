//! Placeholder: filled in with the full Istio API.

use serde::{Deserialize, Serialize};

use crate::validate::{Context, Path, Report, Validate};

/// `WasmPlugin` spec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WasmPlugin {}

impl Validate for WasmPlugin {
    fn validate(&self, _ctx: &Context<'_>, _path: &Path, _report: &mut Report) {}
}
