//! `AuthorizationPolicy` (`security.istio.io`): access control for workloads — which
//! sources may perform which operations under which conditions, and what to do on a match.

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

use crate::meta::{PolicyTargetReference, WorkloadSelector};
use crate::serde_util::{self, ProtoEnum};
use crate::validate::addresses::validate_ip_or_cidr;
use crate::validate::go::parse_go_bool;
use crate::validate::messages::{required, too_many_msg};
use crate::validate::policy::validate_policy_attachment;
use crate::validate::ports::validate_port_string;
use crate::validate::{Context, Path, Report, Validate};

/// `AuthorizationPolicy` spec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationPolicy {
    /// Workloads the policy applies to; unset (with no targetRef) means the whole namespace,
    /// or the whole mesh in the root namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// A single resource (Gateway, Service, ...) the policy attaches to.
    #[serde(default, alias = "target_ref", skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    /// Resources the policy attaches to (instead of `selector`).
    #[serde(default, alias = "target_refs", skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Rules matched against a request; a match occurs when any rule matches. No rules never
    /// match (so an ALLOW policy without rules denies everything).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// What to do when a rule matches (default ALLOW).
    #[serde(
        default,
        deserialize_with = "serde_util::opt_enum",
        skip_serializing_if = "Option::is_none"
    )]
    pub action: Option<Action>,
    /// The extension that decides for the CUSTOM action (oneof `action_detail`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ExtensionProvider>,
}

/// Istio's `AuthorizationPolicy.Action`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    /// Allow a request only if it matches a rule.
    #[default]
    #[serde(rename = "ALLOW")]
    Allow,
    /// Deny a request that matches a rule.
    #[serde(rename = "DENY")]
    Deny,
    /// Mark a matching request for auditing (does not change allow/deny).
    #[serde(rename = "AUDIT")]
    Audit,
    /// Delegate the decision for a matching request to an extension provider.
    #[serde(rename = "CUSTOM")]
    Custom,
}

impl ProtoEnum for Action {
    const NAMES: &'static [&'static str] = &["ALLOW", "DENY", "AUDIT", "CUSTOM"];
}

/// Istio's `AuthorizationPolicy.ExtensionProvider`: the mesh-config extension provider used
/// by a CUSTOM policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtensionProvider {
    /// Name of an extension provider declared in MeshConfig.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// Istio's `Rule`: sources, operations and conditions that must all match.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Sources of the request (any may match); unset allows any source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<RuleFrom>,
    /// Operations of the request (any may match); unset allows any operation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<RuleTo>,
    /// Extra conditions that must all hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Condition>,
}

/// Istio's `Rule.From`: wraps one source.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleFrom {
    /// The source (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// Istio's `Rule.To`: wraps one operation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleTo {
    /// The operation (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
}

/// Istio's `Source`: who sent the request. Fields are ANDed; values within a field are ORed
/// and support exact, `prefix*`, `*suffix` and `*` matches.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    /// Peer identities from the mTLS certificate (`cluster.local/ns/NS/sa/SA`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    /// Peer identities that must not match.
    #[serde(
        default,
        alias = "not_principals",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub not_principals: Vec<String>,
    /// Request identities from the JWT (`ISS/SUB`).
    #[serde(
        default,
        alias = "request_principals",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub request_principals: Vec<String>,
    /// Request identities that must not match.
    #[serde(
        default,
        alias = "not_request_principals",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub not_request_principals: Vec<String>,
    /// Namespaces of the peer (from the mTLS certificate).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Namespaces that must not match.
    #[serde(
        default,
        alias = "not_namespaces",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub not_namespaces: Vec<String>,
    /// Service accounts of the peer, `NAMESPACE/NAME` or `NAME` (policy's namespace).
    #[serde(
        default,
        alias = "service_accounts",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_accounts: Vec<String>,
    /// Service accounts that must not match.
    #[serde(
        default,
        alias = "not_service_accounts",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub not_service_accounts: Vec<String>,
    /// Source IP addresses or CIDR blocks of the connection.
    #[serde(default, alias = "ip_blocks", skip_serializing_if = "Vec::is_empty")]
    pub ip_blocks: Vec<String>,
    /// Source IP blocks that must not match.
    #[serde(
        default,
        alias = "not_ip_blocks",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub not_ip_blocks: Vec<String>,
    /// Original client IP blocks (X-Forwarded-For or PROXY protocol).
    #[serde(
        default,
        alias = "remote_ip_blocks",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub remote_ip_blocks: Vec<String>,
    /// Original client IP blocks that must not match.
    #[serde(
        default,
        alias = "not_remote_ip_blocks",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub not_remote_ip_blocks: Vec<String>,
    /// Trust domains of the peer identity.
    #[serde(
        default,
        alias = "trust_domains",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub trust_domains: Vec<String>,
    /// Trust domains that must not match.
    #[serde(
        default,
        alias = "not_trust_domains",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub not_trust_domains: Vec<String>,
}

/// Istio's `Operation`: what the request does. Fields are ANDed; values within a field are
/// ORed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Operation {
    /// HTTP hosts (case-insensitive). HTTP only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Hosts that must not match.
    #[serde(default, alias = "not_hosts", skip_serializing_if = "Vec::is_empty")]
    pub not_hosts: Vec<String>,
    /// Destination ports of the connection, as strings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// Ports that must not match.
    #[serde(default, alias = "not_ports", skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<String>,
    /// HTTP methods. HTTP only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Methods that must not match.
    #[serde(default, alias = "not_methods", skip_serializing_if = "Vec::is_empty")]
    pub not_methods: Vec<String>,
    /// HTTP paths (normalized), with `{*}`/`{**}` templates. HTTP only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Paths that must not match.
    #[serde(default, alias = "not_paths", skip_serializing_if = "Vec::is_empty")]
    pub not_paths: Vec<String>,
}

/// Istio's `Condition`: an attribute (`key`) that must (or must not) have one of the values.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// The attribute name, such as `request.headers[x-user]` or `source.ip` (required).
    #[serde(default)]
    pub key: String,
    /// Values the attribute must match (one of).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Values the attribute must not match.
    #[serde(default, alias = "not_values", skip_serializing_if = "Vec::is_empty")]
    pub not_values: Vec<String>,
}

impl AuthorizationPolicy {
    /// The effective action (ALLOW when unset).
    pub fn action(&self) -> Action {
        self.action.unwrap_or_default()
    }
}

impl Source {
    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self.principals.is_empty()
            && self.not_principals.is_empty()
            && self.request_principals.is_empty()
            && self.not_request_principals.is_empty()
            && self.namespaces.is_empty()
            && self.not_namespaces.is_empty()
            && self.service_accounts.is_empty()
            && self.not_service_accounts.is_empty()
            && self.ip_blocks.is_empty()
            && self.not_ip_blocks.is_empty()
            && self.remote_ip_blocks.is_empty()
            && self.not_remote_ip_blocks.is_empty()
            && self.trust_domains.is_empty()
            && self.not_trust_domains.is_empty()
    }

    /// True when a field that TCP traffic can be matched on is set (everything but the
    /// request principals, which come from an HTTP JWT).
    pub fn has_tcp_fields(&self) -> bool {
        !(self.principals.is_empty()
            && self.not_principals.is_empty()
            && self.namespaces.is_empty()
            && self.not_namespaces.is_empty()
            && self.service_accounts.is_empty()
            && self.not_service_accounts.is_empty()
            && self.ip_blocks.is_empty()
            && self.not_ip_blocks.is_empty()
            && self.remote_ip_blocks.is_empty()
            && self.not_remote_ip_blocks.is_empty()
            && self.trust_domains.is_empty()
            && self.not_trust_domains.is_empty())
    }
}

impl Operation {
    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
            && self.not_hosts.is_empty()
            && self.ports.is_empty()
            && self.not_ports.is_empty()
            && self.methods.is_empty()
            && self.not_methods.is_empty()
            && self.paths.is_empty()
            && self.not_paths.is_empty()
    }
}

impl Validate for AuthorizationPolicy {
    fn validate(&self, ctx: &Context<'_>, path: &Path, report: &mut Report) {
        let action = self.action();
        validate_dry_run(ctx, action, report);
        validate_policy_attachment(
            self.selector.as_ref(),
            self.target_ref.as_ref(),
            &self.target_refs,
            "selector",
            path,
            report,
        );

        let rules = path.field("rules");
        if action == Action::Custom {
            if self.rules.is_empty() {
                report.error(
                    &rules,
                    "CUSTOM action without `rules` is meaningless as it will never be triggered; add an empty rule `{}` to trigger it for every request",
                );
            } else if self.provider.as_ref().is_none_or(|p| p.name.is_empty()) {
                report.error(
                    &path.field("provider").field("name"),
                    "`provider.name` must not be empty: the CUSTOM action needs the name of an extension provider from MeshConfig",
                );
            }
            for (i, rule) in self.rules.iter().enumerate() {
                custom_restrictions(rule, &rules.index(i), report);
            }
        }
        if self.provider.is_some() && action != Action::Custom {
            report.error(
                &path.field("provider"),
                format!(
                    "`provider` must not be with non CUSTOM action, found {}; use action: CUSTOM or remove provider",
                    action_name(action)
                ),
            );
        }
        if action == Action::Deny && self.rules.is_empty() {
            report.error(
                &rules,
                "DENY action without `rules` is meaningless as it will never be triggered; add an empty rule `{}` to trigger it for every request",
            );
        }
        if self.rules.len() > 512 {
            report.error(&rules, too_many_msg(self.rules.len(), 512));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            validate_rule(rule, action, &rules.index(i), report);
        }
    }
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Allow => "ALLOW",
        Action::Deny => "DENY",
        Action::Audit => "AUDIT",
        Action::Custom => "CUSTOM",
    }
}

/// `istio.io/dry-run` is only supported with ALLOW and DENY, and must be a boolean.
fn validate_dry_run(ctx: &Context<'_>, action: Action, report: &mut Report) {
    let Some(v) = ctx.metadata.annotations.get(super::DRY_RUN_ANNOTATION) else {
        return;
    };
    let p = Path::root("metadata")
        .field("annotations")
        .key(super::DRY_RUN_ANNOTATION);
    match action {
        Action::Allow | Action::Deny => {
            if parse_go_bool(v).is_none() {
                report.error(
                    &p,
                    format!(
                        "annotation {} has invalid value ({v}): must be a boolean such as \"true\" or \"false\"",
                        super::DRY_RUN_ANNOTATION
                    ),
                );
            }
        }
        other => report.error(
            &p,
            format!(
                "the annotation {} currently only supports action ALLOW/DENY, found action {}",
                super::DRY_RUN_ANNOTATION,
                action_name(other)
            ),
        ),
    }
}

/// Fields and condition keys the CUSTOM action cannot match on.
fn custom_restrictions(rule: &Rule, path: &Path, report: &mut Report) {
    let unsupported = |report: &mut Report, p: &Path, name: &str| {
        report.error(
            p,
            format!("{name} is currently not supported with CUSTOM action"),
        );
    };
    for (i, from) in rule.from.iter().enumerate() {
        let Some(src) = &from.source else { continue };
        let p = path.field("from").index(i).field("source");
        let fields: [(&[String], &str, &str); 10] = [
            (&src.namespaces, "namespaces", "From.Namespaces"),
            (&src.not_namespaces, "notNamespaces", "From.NotNamespaces"),
            (
                &src.service_accounts,
                "serviceAccounts",
                "From.ServiceAccounts",
            ),
            (
                &src.not_service_accounts,
                "notServiceAccounts",
                "From.NotServiceAccounts",
            ),
            (&src.principals, "principals", "From.Principals"),
            (&src.not_principals, "notPrincipals", "From.NotPrincipals"),
            (
                &src.request_principals,
                "requestPrincipals",
                "From.RequestPrincipals",
            ),
            (
                &src.not_request_principals,
                "notRequestPrincipals",
                "From.NotRequestPrincipals",
            ),
            (&src.trust_domains, "trustDomains", "From.TrustDomains"),
            (
                &src.not_trust_domains,
                "notTrustDomains",
                "From.NotTrustDomains",
            ),
        ];
        for (values, field, name) in fields {
            if !values.is_empty() {
                unsupported(report, &p.field(field), name);
            }
        }
    }
    for (i, c) in rule.when.iter().enumerate() {
        if matches!(
            c.key.as_str(),
            "source.namespace"
                | "source.serviceAccount"
                | "source.principal"
                | "source.trustDomain"
        ) || c.key.starts_with("request.auth.")
        {
            unsupported(report, &path.field("when").index(i).field("key"), &c.key);
        }
    }
}

fn validate_rule(rule: &Rule, action: Action, path: &Path, report: &mut Report) {
    let mut tcp_in_from = false;
    let mut tcp_in_to = false;
    let mut from_exists = false;
    let mut to_exists = false;

    let from = path.field("from");
    if rule.from.len() > 512 {
        report.error(&from, too_many_msg(rule.from.len(), 512));
    }
    for (i, f) in rule.from.iter().enumerate() {
        let p = from.index(i).field("source");
        let Some(src) = &f.source else {
            report.error(
                &p,
                "`from.source` must not be nil: each from entry needs a source",
            );
            continue;
        };
        from_exists = true;
        validate_source(src, &p, report);
        tcp_in_from |= src.has_tcp_fields();
    }

    let to = path.field("to");
    for (i, t) in rule.to.iter().enumerate() {
        let p = to.index(i).field("operation");
        let Some(op) = &t.operation else {
            report.error(
                &p,
                "`to.operation` must not be nil: each to entry needs an operation",
            );
            continue;
        };
        to_exists = true;
        validate_operation(op, &p, report);
        tcp_in_to |= !op.ports.is_empty() || !op.not_ports.is_empty();
    }

    let when = path.field("when");
    for (i, c) in rule.when.iter().enumerate() {
        validate_condition(c, &when.index(i), report);
    }

    if action == Action::Deny
        && ((from_exists && !to_exists && !tcp_in_from) || (to_exists && !tcp_in_to))
    {
        report.warning(
            path,
            "configured AuthorizationPolicy will deny all traffic to TCP ports under its scope due to the use of only HTTP attributes in a DENY rule; it is recommended to explicitly specify the port",
        );
    }
}

fn validate_source(src: &Source, path: &Path, report: &mut Report) {
    let principal_like = !(src.principals.is_empty()
        && src.not_principals.is_empty()
        && src.namespaces.is_empty()
        && src.not_namespaces.is_empty());
    let sa = !(src.service_accounts.is_empty() && src.not_service_accounts.is_empty());
    if principal_like && sa {
        report.error(
            path,
            "Cannot set serviceAccounts with namespaces or principals: use serviceAccounts alone, or principals/namespaces in a separate source",
        );
    }
    if src.is_empty() {
        report.error(
            path,
            "`from.source` must not be empty: set at least one field, or remove the from entry to match any source",
        );
    }
    let lists: [(&[String], &str); 10] = [
        (&src.principals, "principals"),
        (&src.not_principals, "notPrincipals"),
        (&src.request_principals, "requestPrincipals"),
        (&src.not_request_principals, "notRequestPrincipals"),
        (&src.namespaces, "namespaces"),
        (&src.not_namespaces, "notNamespaces"),
        (&src.ip_blocks, "ipBlocks"),
        (&src.not_ip_blocks, "notIpBlocks"),
        (&src.remote_ip_blocks, "remoteIpBlocks"),
        (&src.not_remote_ip_blocks, "notRemoteIpBlocks"),
    ];
    for (values, field) in lists {
        let p = path.field(field);
        for (i, v) in values.iter().enumerate() {
            if v.is_empty() {
                report.error(
                    &p.index(i),
                    format!("empty value not allowed, found in {field}"),
                );
            }
        }
    }
    for (values, field) in [
        (&src.trust_domains, "trustDomains"),
        (&src.not_trust_domains, "notTrustDomains"),
    ] {
        let p = path.field(field);
        for (i, v) in values.iter().enumerate() {
            if v.is_empty() {
                report.error(
                    &p.index(i),
                    format!("empty value not allowed, found in {field}"),
                );
            }
        }
    }
    for (values, field) in [
        (&src.ip_blocks, "ipBlocks"),
        (&src.not_ip_blocks, "notIpBlocks"),
        (&src.remote_ip_blocks, "remoteIpBlocks"),
        (&src.not_remote_ip_blocks, "notRemoteIpBlocks"),
    ] {
        let p = path.field(field);
        for (i, v) in values.iter().enumerate() {
            if !v.is_empty()
                && let Err(e) = validate_ip_or_cidr(v)
            {
                report.error(
                    &p.index(i),
                    format!("{e}: expected an IP address (1.2.3.4) or CIDR block (1.2.3.0/24)"),
                );
            }
        }
    }
    for (values, field) in [
        (&src.service_accounts, "serviceAccounts"),
        (&src.not_service_accounts, "notServiceAccounts"),
    ] {
        let p = path.field(field);
        if values.len() > 16 {
            report.error(&p, too_many_msg(values.len(), 16));
        }
        for (i, v) in values.iter().enumerate() {
            if let Err(e) = check_service_account(v) {
                report.error(&p.index(i), format!("{e}, found in {field}"));
            }
        }
    }
}

/// A service account reference: `NAME` or `NAMESPACE/NAME`, non-empty, no wildcards, at most
/// 320 characters.
fn check_service_account(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err("empty value not allowed".into());
    }
    if v.len() > 320 {
        return Err(format!(
            "Too long: may not be more than 320 bytes ({} bytes)",
            v.len()
        ));
    }
    if v.contains('*') {
        return Err(format!(
            "wildcard not allowed in service account {v:?}; list accounts exactly as NAMESPACE/NAME or NAME"
        ));
    }
    let parts: Vec<&str> = v.split('/').collect();
    if parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
        return Err(format!(
            "invalid service account {v:?}: expected NAMESPACE/NAME or NAME"
        ));
    }
    Ok(())
}

fn validate_operation(op: &Operation, path: &Path, report: &mut Report) {
    if op.is_empty() {
        report.error(
            path,
            "`to.operation` must not be empty: set at least one field, or remove the to entry to match any operation",
        );
    }
    for (values, field) in [(&op.ports, "ports"), (&op.not_ports, "notPorts")] {
        let p = path.field(field);
        for (i, v) in values.iter().enumerate() {
            if !v.is_empty()
                && let Err(e) = validate_port_string(v)
            {
                report.error(&p.index(i), e);
            }
        }
    }
    let lists: [(&[String], &str); 8] = [
        (&op.ports, "ports"),
        (&op.methods, "methods"),
        (&op.paths, "paths"),
        (&op.hosts, "hosts"),
        (&op.not_ports, "notPorts"),
        (&op.not_methods, "notMethods"),
        (&op.not_paths, "notPaths"),
        (&op.not_hosts, "notHosts"),
    ];
    for (values, field) in lists {
        let p = path.field(field);
        for (i, v) in values.iter().enumerate() {
            if v.is_empty() {
                report.error(
                    &p.index(i),
                    format!("empty value not allowed, found in {field}"),
                );
            }
        }
    }
    for (values, field) in [(&op.paths, "paths"), (&op.not_paths, "notPaths")] {
        let p = path.field(field);
        for (i, v) in values.iter().enumerate() {
            if !valid_path_template(v) {
                report.error(
                    &p.index(i),
                    format!(
                        "invalid or unsupported path template {v:?}, found in {field}: only whole segments {{*}} and a {{**}} are supported, without named variables or bare * / ** segments"
                    ),
                );
            }
        }
    }
}

/// Istio's path template rule: a path with `{*}` or `{**}` must not also contain named
/// variables, empty braces or `*`/`**` segments.
pub fn valid_path_template(p: &str) -> bool {
    static UNSUPPORTED: OnceLock<Option<Regex>> = OnceLock::new();
    if !(p.contains("{*}") || p.contains("{**}")) {
        return true;
    }
    let re = UNSUPPORTED.get_or_init(|| Regex::new(r"/\{\w+=\*\*?\}|\{\w*\}|/\*\*?|\*\*?/").ok());
    re.as_ref().is_none_or(|re| !re.is_match(p))
}

/// What Istio checks on the values of a condition key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ValueCheck {
    /// Any non-empty string.
    Any,
    /// IP addresses or CIDR blocks.
    Ip,
    /// Port numbers.
    Port,
}

/// The condition keys Istio understands (`request.headers[NAME]`, `source.ip`, ...), with the
/// check each applies to its values; `Err` says why the key is refused.
fn classify_key(key: &str) -> Result<ValueCheck, String> {
    let map_key = |k: &str| -> Result<ValueCheck, String> {
        match k.find('[') {
            Some(open) if k.ends_with(']') && open > 0 && open + 2 < k.len() => Ok(ValueCheck::Any),
            _ => Err(format!("bad key ({k}): should have format a[b]")),
        }
    };
    match key {
        k if k.starts_with("request.headers") => map_key(k),
        "source.ip" | "remote.ip" | "destination.ip" => Ok(ValueCheck::Ip),
        "source.namespace"
        | "source.principal"
        | "source.serviceAccount"
        | "source.trustDomain"
        | "request.auth.principal"
        | "request.auth.audiences"
        | "request.auth.presenter"
        | "connection.sni" => Ok(ValueCheck::Any),
        k if k.starts_with("request.auth.claims") => map_key(k),
        "destination.port" => Ok(ValueCheck::Port),
        k if k.starts_with("experimental.envoy.filters.") => map_key(k),
        "destination.namespace" => Err(format!(
            "attribute {key} is replaced by the metadata.namespace"
        )),
        k if k.starts_with("destination.labels") => Err(format!(
            "attribute {key} is replaced by the workload selector"
        )),
        "destination.name" | "destination.user" => Err(format!(
            "deprecated attribute {key}: only supported in v1alpha1"
        )),
        _ => Err(format!(
            "unknown attribute: {key}; supported keys are request.headers[NAME], source.ip, remote.ip, source.namespace, source.principal, source.serviceAccount, source.trustDomain, request.auth.principal, request.auth.audiences, request.auth.presenter, request.auth.claims[NAME], destination.ip, destination.port, connection.sni and experimental.envoy.filters.*[NAME]"
        )),
    }
}

/// Checks one value of a condition; `Err` says what is wrong with it.
fn check_value(check: ValueCheck, key: &str, v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err(format!("empty value not allowed, found in {key}"));
    }
    match check {
        ValueCheck::Any => Ok(()),
        ValueCheck::Ip => validate_ip_or_cidr(v),
        ValueCheck::Port => validate_port_string(v),
    }
}

fn validate_condition(c: &Condition, path: &Path, report: &mut Report) {
    let key = path.field("key");
    if c.key.is_empty() {
        required(report, &key, "the condition needs an attribute name");
        return;
    }
    if c.values.is_empty() && c.not_values.is_empty() {
        report.error(
            path,
            format!(
                "at least one of `values` or `notValues` must be set for key {}",
                c.key
            ),
        );
        return;
    }
    let check = match classify_key(&c.key) {
        Ok(check) => check,
        Err(e) => {
            report.error(&key, format!("invalid `key` {}: {e}", c.key));
            return;
        }
    };
    for (values, field, what) in [
        (&c.values, "values", "value"),
        (&c.not_values, "notValues", "notValue"),
    ] {
        let p = path.field(field);
        for (i, v) in values.iter().enumerate() {
            if let Err(e) = check_value(check, &c.key, v) {
                report.error(
                    &p.index(i),
                    format!("invalid `{what}` for `key` {}: {e}", c.key),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_templates() {
        assert!(valid_path_template("/exact"));
        assert!(valid_path_template("/path/template/{*}"));
        assert!(valid_path_template("/{**}/path/template"));
        assert!(valid_path_template("/{*}/foo/{**}"));
        assert!(!valid_path_template("/{*}/foo/{bar}"));
        assert!(!valid_path_template("/{*}/foo/*"));
        assert!(!valid_path_template("/{name=*}/{*}"));
        assert!(!valid_path_template("/{**}/foo/**/bar"));
    }

    #[test]
    fn attributes() {
        assert_eq!(classify_key("request.headers[x]"), Ok(ValueCheck::Any));
        assert!(classify_key("request.headers[]").is_err());
        assert!(classify_key("request.headers").is_err());
        assert_eq!(classify_key("source.ip"), Ok(ValueCheck::Ip));
        assert_eq!(classify_key("destination.port"), Ok(ValueCheck::Port));
        assert!(classify_key("destination.labels[app]").is_err());
        assert!(classify_key("key1").is_err());
        assert_eq!(
            classify_key("experimental.envoy.filters.a.b[c]"),
            Ok(ValueCheck::Any)
        );
        assert!(check_value(ValueCheck::Ip, "source.ip", "10.0.0.0/8").is_ok());
        assert!(check_value(ValueCheck::Ip, "source.ip", "a.b.c.d").is_err());
        assert!(check_value(ValueCheck::Port, "destination.port", "http").is_err());
        assert!(check_value(ValueCheck::Any, "connection.sni", "").is_err());
    }

    #[test]
    fn service_accounts() {
        assert!(check_service_account("ns/sa").is_ok());
        assert!(check_service_account("sa").is_ok());
        assert!(check_service_account("ns/*").is_err());
        assert!(check_service_account("a/b/c").is_err());
        assert!(check_service_account("/sa").is_err());
        assert!(check_service_account("").is_err());
    }
}
