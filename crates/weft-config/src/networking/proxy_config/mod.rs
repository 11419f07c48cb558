//! Placeholder: filled in with the full Istio API.

use serde::{Deserialize, Serialize};

use crate::validate::{Context, Path, Report, Validate};

/// `ProxyConfig` spec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyConfig {}

impl Validate for ProxyConfig {
    fn validate(&self, _ctx: &Context<'_>, _path: &Path, _report: &mut Report) {}
}
