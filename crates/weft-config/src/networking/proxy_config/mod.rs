//! `networking.istio.io/v1beta1` `ProxyConfig`: per-workload proxy settings, with Istio's
//! validation rules.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::meta::WorkloadSelector;
use crate::validate::labels::validate_workload_selector;
use crate::validate::messages::max_len_msg;
use crate::validate::{Context, Path, Report, Validate};

/// `ProxyConfig` spec: settings for the proxies of the selected workloads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyConfig {
    /// Workloads the settings apply to; all in the namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// Number of proxy worker threads (0 means one per core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<i32>,
    /// Extra environment variables for the proxy.
    #[serde(
        default,
        alias = "environment_variables",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub environment_variables: BTreeMap<String, String>,
    /// Which proxy image to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ProxyImage>,
}

/// The proxy image variant.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyImage {
    /// Image type: `default`, `debug`, `distroless` or a custom suffix.
    #[serde(
        default,
        alias = "image_type",
        skip_serializing_if = "String::is_empty"
    )]
    pub image_type: String,
}

impl Validate for ProxyConfig {
    fn validate(&self, _ctx: &Context<'_>, path: &Path, report: &mut Report) {
        validate_workload_selector(self.selector.as_ref(), &path.field("selector"), report);
        if let Some(c) = self.concurrency
            && c < 0
        {
            let p = path.field("concurrency");
            report.error(
                &p,
                format!("Invalid value: {c}: {p} in body should be greater than or equal to 0 (concurrency must be greater than or equal to 0)"),
            );
        }
        let env = path.field("environmentVariables");
        for (k, v) in &self.environment_variables {
            if v.chars().count() > 2048 {
                let p = env.key(k);
                report.error(&p, max_len_msg(&p, v, 2048));
            }
        }
    }
}
