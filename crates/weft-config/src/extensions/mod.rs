//! `extensions.istio.io` `WasmPlugin`: WebAssembly filters added to proxies, with Istio's
//! validation rules.

use serde::de::Deserializer;
use serde::{Deserialize, Serialize};

use crate::meta::{PolicyTargetReference, WorkloadSelector};
use crate::validate::messages::{check_len, min_len_msg, required};
use crate::validate::policy::validate_policy_attachment;
use crate::validate::{Context, Path, Report, Validate};

/// `WasmPlugin` spec: a Wasm module, where it runs in the filter chain, and its settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WasmPlugin {
    /// Workloads the plugin applies to; all in the namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// Single resource the plugin attaches to (hidden legacy form of `targetRefs`).
    #[serde(default, alias = "target_ref", skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    /// Resources the plugin attaches to.
    #[serde(default, alias = "target_refs", skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Location of the module: `oci://` (default), `file://`, `http://` or `https://`.
    #[serde(
        default,
        deserialize_with = "url_string",
        skip_serializing_if = "String::is_empty"
    )]
    pub url: String,
    /// Expected SHA-256 of the module (64 lowercase hex digits).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    /// When the module is fetched again.
    #[serde(
        default,
        alias = "image_pull_policy",
        skip_serializing_if = "Option::is_none"
    )]
    pub image_pull_policy: Option<PullPolicy>,
    /// Secret (same namespace) with OCI registry credentials.
    #[serde(
        default,
        alias = "image_pull_secret",
        skip_serializing_if = "Option::is_none"
    )]
    pub image_pull_secret: Option<String>,
    /// Key for verifying signed modules (reserved; not implemented by Istio).
    #[serde(
        default,
        alias = "verification_key",
        skip_serializing_if = "String::is_empty"
    )]
    pub verification_key: String,
    /// Configuration handed to the plugin (free-form).
    #[serde(
        default,
        alias = "plugin_config",
        skip_serializing_if = "Option::is_none"
    )]
    pub plugin_config: Option<serde_json::Value>,
    /// Plugin name (root ID) inside the module.
    #[serde(
        default,
        alias = "plugin_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub plugin_name: Option<String>,
    /// Where in the filter chain the plugin runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PluginPhase>,
    /// Order among plugins of the same phase (higher first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// What happens when the plugin fails fatally.
    #[serde(
        default,
        alias = "fail_strategy",
        skip_serializing_if = "Option::is_none"
    )]
    pub fail_strategy: Option<FailStrategy>,
    /// Settings of the Wasm VM.
    #[serde(default, alias = "vm_config", skip_serializing_if = "Option::is_none")]
    pub vm_config: Option<VmConfig>,
    /// Traffic the plugin applies to (any selector matching is enough).
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub r#match: Vec<TrafficSelector>,
    /// HTTP or network filter.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub r#type: Option<PluginType>,
}

/// `url` is a required string: `null` is refused with Kubernetes' wording.
fn url_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Option::<String>::deserialize(d)?.ok_or_else(|| {
        serde::de::Error::custom("spec.url in body must be of type string: \"null\"")
    })
}

/// Selects traffic by direction and port.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficSelector {
    /// Traffic direction (`CLIENT_AND_SERVER` when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<WorkloadMode>,
    /// Destination ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSelector>,
}

/// Istio's `type.v1beta1.PortSelector`: a port number.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortSelector {
    /// Port number (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u32>,
}

/// Istio's `type.v1beta1.WorkloadMode`: traffic direction relative to the workload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WorkloadMode {
    /// Unset.
    #[default]
    #[serde(rename = "UNDEFINED")]
    Undefined,
    /// Outbound traffic.
    #[serde(rename = "CLIENT")]
    Client,
    /// Inbound traffic.
    #[serde(rename = "SERVER")]
    Server,
    /// Both directions.
    #[serde(rename = "CLIENT_AND_SERVER")]
    ClientAndServer,
}

/// When the module is pulled again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PullPolicy {
    /// Unset: `IfNotPresent`, or `Always` for an OCI `latest` tag.
    #[default]
    #[serde(rename = "UNSPECIFIED_POLICY")]
    UnspecifiedPolicy,
    /// Pull only when not cached.
    #[serde(rename = "IfNotPresent")]
    IfNotPresent,
    /// Pull every time the plugin changes.
    #[serde(rename = "Always")]
    Always,
}

/// Where in the filter chain the plugin is inserted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PluginPhase {
    /// At the end, before the router.
    #[default]
    #[serde(rename = "UNSPECIFIED_PHASE")]
    UnspecifiedPhase,
    /// Before Istio's authentication filters.
    #[serde(rename = "AUTHN")]
    Authn,
    /// Before Istio's authorization filters.
    #[serde(rename = "AUTHZ")]
    Authz,
    /// Before Istio's stats filters.
    #[serde(rename = "STATS")]
    Stats,
}

/// Behaviour on fatal plugin errors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FailStrategy {
    /// Fail the request.
    #[default]
    #[serde(rename = "FAIL_CLOSE")]
    FailClose,
    /// Skip the plugin.
    #[serde(rename = "FAIL_OPEN")]
    FailOpen,
    /// Reload the VM and retry.
    #[serde(rename = "FAIL_RELOAD")]
    FailReload,
}

/// Kind of filter the module implements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PluginType {
    /// Unset: HTTP.
    #[default]
    #[serde(rename = "UNSPECIFIED_PLUGIN_TYPE")]
    UnspecifiedPluginType,
    /// An HTTP filter.
    #[serde(rename = "HTTP")]
    Http,
    /// A network filter.
    #[serde(rename = "NETWORK")]
    Network,
}

/// Settings of the Wasm VM.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmConfig {
    /// Environment variables given to the VM.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
}

/// One environment variable of the VM.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    /// Variable name (required, unique).
    #[serde(default)]
    pub name: String,
    /// Where the value comes from (`INLINE` when unset).
    #[serde(default, alias = "value_from", skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvValueSource>,
    /// The value, for `INLINE`; `None` when not written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Source of an environment variable's value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EnvValueSource {
    /// The `value` field.
    #[default]
    #[serde(rename = "INLINE")]
    Inline,
    /// The proxy's own environment.
    #[serde(rename = "HOST")]
    Host,
}

/// The scheme of a Wasm module URL as Istio reads it (`url.ParseRequestURI`, retried with
/// `http://` in front): `Ok("")` for an absolute path.
fn url_scheme(url: &str) -> Result<String, String> {
    fn scheme_of(u: &str) -> Option<&str> {
        let b = u.as_bytes();
        for (i, c) in b.iter().enumerate() {
            match c {
                b'a'..=b'z' | b'A'..=b'Z' => {}
                b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
                b':' if i > 0 => return Some(&u[..i]),
                _ => return None,
            }
        }
        None
    }
    if url.chars().any(|c| c.is_control() || c == ' ') {
        return Err(format!("failed to parse url: invalid URL {url:?}"));
    }
    if let Some(s) = scheme_of(url) {
        return Ok(s.to_ascii_lowercase());
    }
    if url.starts_with('/') {
        return Ok(String::new());
    }
    Ok("http".into())
}

impl Validate for WasmPlugin {
    fn validate(&self, _ctx: &Context<'_>, path: &Path, report: &mut Report) {
        validate_policy_attachment(
            self.selector.as_ref(),
            self.target_ref.as_ref(),
            &self.target_refs,
            "workloadSelector",
            path,
            report,
        );
        let url = path.field("url");
        if self.url.is_empty() {
            report.error(
                &url,
                format!(
                    "{} (url field needs to be set)",
                    min_len_msg(&url, &self.url, 1)
                ),
            );
        } else {
            match url_scheme(&self.url) {
                Ok(s) if matches!(s.as_str(), "" | "http" | "https" | "oci" | "file") => {}
                Ok(s) => report.error(
                    &url,
                    format!(
                        "Invalid value: {:?}: url must have schema one of [http, https, file, oci] (url contains unsupported scheme: {s})",
                        self.url
                    ),
                ),
                Err(e) => report.error(&url, e),
            }
        }
        let sha_ok = self.sha256.is_empty()
            || (self.sha256.len() == 64
                && self
                    .sha256
                    .bytes()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        if !sha_ok {
            let p = path.field("sha256");
            report.error(
                &p,
                format!(
                    "Invalid value: {:?}: {p} in body should match '(^$|^[a-f0-9]{{64}}$)'",
                    self.sha256
                ),
            );
        }
        if let Some(s) = &self.image_pull_secret {
            check_len(report, &path.field("imagePullSecret"), s, 1, 253);
        }
        if let Some(n) = &self.plugin_name {
            check_len(report, &path.field("pluginName"), n, 1, 256);
        }
        if let Some(vm) = &self.vm_config {
            let env = path.field("vmConfig").field("env");
            if vm.env.len() > 256 {
                report.error(
                    &env,
                    format!("Too many: {}: must have at most 256 items", vm.env.len()),
                );
            }
            let mut seen = std::collections::BTreeSet::new();
            for (i, e) in vm.env.iter().enumerate() {
                let ep = env.index(i);
                if e.name.is_empty() {
                    required(report, &ep.field("name"), "");
                } else {
                    check_len(report, &ep.field("name"), &e.name, 1, 256);
                    if !seen.insert(e.name.as_str()) {
                        report.error(
                            &ep,
                            format!("Duplicate value: {{\"name\":{:?}}} (duplicate env)", e.name),
                        );
                    }
                }
                if let Some(v) = &e.value {
                    check_len(report, &ep.field("value"), v, 0, 2048);
                }
                if e.value_from == Some(EnvValueSource::Host) && e.value.is_some() {
                    report.error(
                        &ep,
                        "Invalid value: \"object\": value may only be set when valueFrom is INLINE",
                    );
                }
            }
        }
        let m = path.field("match");
        for (i, sel) in self.r#match.iter().enumerate() {
            let ports = m.index(i).field("ports");
            let mut seen = std::collections::BTreeSet::new();
            for (j, port) in sel.ports.iter().enumerate() {
                let np = ports.index(j).field("number");
                match port.number {
                    None => required(report, &np, ""),
                    Some(n) => {
                        if n == 0 {
                            report.error(
                                &np,
                                format!("Invalid value: {n}: {np} in body should be greater than or equal to 1"),
                            );
                        } else if n > 65535 {
                            report.error(
                                &np,
                                format!("Invalid value: {n}: {np} in body should be less than or equal to 65535"),
                            );
                        }
                        if !seen.insert(n) {
                            report.error(
                                &ports.index(j),
                                format!("Duplicate value: {{\"number\":{n}}}"),
                            );
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::url_scheme;

    #[test]
    fn schemes() {
        assert_eq!(url_scheme("oci://foo/bar:1").as_deref(), Ok("oci"));
        assert_eq!(url_scheme("docker.io/foo:latest").as_deref(), Ok("http"));
        assert_eq!(url_scheme("/opt/a.wasm").as_deref(), Ok(""));
        assert_eq!(url_scheme("fake://x").as_deref(), Ok("fake"));
        assert_eq!(url_scheme("FILE:///x").as_deref(), Ok("file"));
        assert_eq!(url_scheme("localhost:5000/x").as_deref(), Ok("localhost"));
    }
}
