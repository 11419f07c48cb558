//! `weft x authz check PROXY`: the AuthorizationPolicies and RequestAuthentications applied to
//! a workload, and what each rule allows or denies, read from the RBAC and `jwt_authn` filters
//! in the proxy's config (from the control plane, a proxy's admin `/config_dump`, or a saved
//! dump).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::Value;
use weft_xds::envoy::config::listener::v3 as listener;
use weft_xds::envoy::config::rbac::v3 as rbac;
use weft_xds::envoy::config::route::v3 as route;
use weft_xds::envoy::extensions::filters::http::jwt_authn::v3 as jwt;
use weft_xds::envoy::extensions::filters::http::rbac::v3 as rbac_http;
use weft_xds::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use weft_xds::envoy::extensions::filters::network::rbac::v3 as rbac_tcp;
use weft_xds::envoy::r#type::matcher::v3 as matcher;

use crate::config_cmds::{Target, block_on};

/// Arguments of `weft x authz check`.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// The proxy (node id, or a unique part of it) as the control plane knows it.
    pub proxy: Option<String>,
    /// Read a saved config dump (a proxy's `/config_dump` or the control plane's) instead.
    #[arg(long, conflicts_with = "proxy_admin")]
    pub file: Option<PathBuf>,
    /// Read the config dump from a proxy's admin address (`http://127.0.0.1:15000`).
    #[arg(long = "proxy-admin")]
    pub proxy_admin: Option<String>,
    /// Translate offline from a directory of config files instead (with `--proxy-id`).
    #[arg(long, conflicts_with_all = ["file", "proxy_admin"])]
    pub config_dir: Option<PathBuf>,
    /// MeshConfig file for offline mode (root namespace, trust domain, extension providers).
    #[arg(long)]
    pub mesh_config: Option<PathBuf>,
    /// The Istio node id of the workload, offline (`sidecar~IP~POD.NS~NS.svc.cluster.local`).
    #[arg(long)]
    pub proxy_id: Option<String>,
    /// A workload label, offline (repeatable).
    #[arg(long = "label", value_name = "NAME=VALUE")]
    pub labels: Vec<String>,
    /// Output format: a table (default) or `json`.
    #[arg(short, long, value_parser = ["json"])]
    pub output: Option<String>,
    #[command(flatten)]
    pub target: Target,
}

/// The workload's listeners translated offline, as JSON the report walks.
fn offline_dump(args: &CheckArgs, dir: &PathBuf) -> anyhow::Result<Value> {
    use weft_control::model::{Environment, MeshSettings, Proxy};
    let id = args
        .proxy_id
        .as_deref()
        .or(args.proxy.as_deref())
        .context("offline mode needs --proxy-id (an Istio node id)")?;
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let store = weft_control::server::store::ConfigStore::open(dir)?;
    for r in store.rejected() {
        for e in &r.errors {
            eprintln!("warning: ignoring {}: {e}", r.file);
        }
    }
    let mesh = match &args.mesh_config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            let m = weft_config::document::parse_mesh_config(&text, &p.display().to_string())
                .map_err(|d| anyhow::anyhow!("{d}"))?;
            MeshSettings::from_mesh_config(&m)
        }
        None => MeshSettings::default(),
    };
    let resources: Vec<_> = store.resources().into_iter().map(|r| r.resource).collect();
    let env = Environment::from_resources(&resources, mesh);
    let mut proxy = Proxy::from_node_id(id)?;
    for l in &args.labels {
        let (k, v) = l
            .split_once('=')
            .with_context(|| format!("label {l:?} is not NAME=VALUE"))?;
        proxy
            .labels
            .insert(k.trim().to_string(), v.trim().to_string());
    }
    proxy.metadata.labels = proxy.labels.clone();
    let res = weft_control::translate::translate(&env, &proxy);
    let listeners = res
        .listeners
        .iter()
        .map(weft_xds::json::to_value)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Value::Array(listeners))
}

/// One rule of one policy, as the proxy enforces it.
#[derive(Clone, Debug, serde::Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct RuleRow {
    /// ALLOW, DENY, AUDIT or CUSTOM, with `(dry-run)` for shadow rules.
    pub action: String,
    /// `namespace/name` of the AuthorizationPolicy (or the RBAC policy name).
    pub policy: String,
    /// The rule index in the policy.
    pub rule: String,
    /// HTTP or TCP.
    pub scope: String,
    /// Who the rule applies to.
    pub from: String,
    /// What the rule applies to.
    pub to: String,
}

/// A JWT provider the proxy verifies tokens with.
#[derive(Clone, Debug, serde::Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct JwtRow {
    /// The token issuer.
    pub issuer: String,
    /// Allowed audiences.
    pub audiences: Vec<String>,
    /// `inline` or the JWKS URI.
    pub jwks: String,
}

/// Everything `authz check` reports.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    /// RequestAuthentication providers.
    pub jwt: Vec<JwtRow>,
    /// AuthorizationPolicy rules.
    pub rules: Vec<RuleRow>,
}

fn string_matcher(m: &matcher::StringMatcher) -> String {
    use matcher::string_matcher::MatchPattern as M;
    let ic = if m.ignore_case { " (any case)" } else { "" };
    let s = match &m.match_pattern {
        Some(M::Exact(s)) => format!("= {s:?}"),
        Some(M::Prefix(s)) => format!("starts with {s:?}"),
        Some(M::Suffix(s)) => format!("ends with {s:?}"),
        Some(M::Contains(s)) => format!("contains {s:?}"),
        Some(M::SafeRegex(r)) if r.regex == ".+" => "present".to_string(),
        Some(M::SafeRegex(r)) => format!("~ /{}/", r.regex),
        _ => "?".to_string(),
    };
    format!("{s}{ic}")
}

#[allow(deprecated)]
fn header(h: &route::HeaderMatcher) -> String {
    use route::header_matcher::HeaderMatchSpecifier as S;
    let name = match h.name.as_str() {
        ":authority" => "host",
        ":method" => "method",
        ":path" => "path",
        n => n,
    };
    let m = match &h.header_match_specifier {
        Some(S::PresentMatch(true)) | None => "present".to_string(),
        Some(S::PresentMatch(false)) => "absent".to_string(),
        Some(S::StringMatch(m)) => string_matcher(m),
        Some(S::SafeRegexMatch(r)) => format!("~ /{}/", r.regex),
        Some(_) => "?".to_string(),
    };
    format!("{name} {m}")
}

fn value(v: &matcher::ValueMatcher) -> String {
    use matcher::value_matcher::MatchPattern as M;
    match &v.match_pattern {
        Some(M::StringMatch(m)) => string_matcher(m),
        Some(M::OrMatch(o)) => {
            // Istio writes claims as [list one_of X, X]: show X once.
            if o.value_matchers.len() == 2
                && let Some(M::ListMatch(l)) = &o.value_matchers[0].match_pattern
                && let Some(matcher::list_matcher::MatchPattern::OneOf(x)) = &l.match_pattern
                && **x == o.value_matchers[1]
            {
                return value(x);
            }
            let parts: Vec<String> = o.value_matchers.iter().map(value).collect();
            format!("({})", parts.join(" or "))
        }
        Some(M::ListMatch(l)) => match &l.match_pattern {
            Some(matcher::list_matcher::MatchPattern::OneOf(x)) => {
                format!("has element {}", value(x))
            }
            None => "?".to_string(),
        },
        Some(M::PresentMatch(p)) => if *p { "present" } else { "absent" }.to_string(),
        Some(M::BoolMatch(b)) => format!("= {b}"),
        _ => "?".to_string(),
    }
}

fn metadata(m: &matcher::MetadataMatcher) -> String {
    let keys: Vec<String> = m
        .path
        .iter()
        .filter_map(|s| {
            s.segment.as_ref().map(|seg| match seg {
                matcher::metadata_matcher::path_segment::Segment::Key(k) => k.clone(),
            })
        })
        .collect();
    let v = m.value.as_ref().map(value).unwrap_or_default();
    if m.filter == "envoy.filters.http.jwt_authn"
        && keys.first().map(String::as_str) == Some("payload")
    {
        format!("jwt claim {} {v}", keys[1..].join("."))
    } else {
        format!("metadata {}[{}] {v}", m.filter, keys.join("."))
    }
}

fn cidr(c: &weft_xds::envoy::config::core::v3::CidrRange) -> String {
    format!(
        "{}/{}",
        c.address_prefix,
        c.prefix_len.as_ref().map_or(32, |l| l.value)
    )
}

fn join(parts: Vec<String>, op: &str) -> String {
    if parts.len() == 1 {
        parts.into_iter().next().unwrap_or_default()
    } else {
        format!("({})", parts.join(op))
    }
}

/// A permission tree as text.
pub fn permission(p: &rbac::Permission) -> String {
    use rbac::permission::Rule as R;
    #[allow(deprecated)]
    match &p.rule {
        Some(R::Any(true)) => "any".to_string(),
        Some(R::Any(false)) | None => "nothing".to_string(),
        Some(R::AndRules(s)) => join(s.rules.iter().map(permission).collect(), " and "),
        Some(R::OrRules(s)) => join(s.rules.iter().map(permission).collect(), " or "),
        Some(R::NotRule(x)) => format!("not {}", permission(x)),
        Some(R::Header(h)) => header(h),
        Some(R::UrlPath(m)) => match &m.rule {
            Some(matcher::path_matcher::Rule::Path(s)) => format!("path {}", string_matcher(s)),
            None => "path ?".to_string(),
        },
        Some(R::UriTemplate(t)) => {
            let tpl = t
                .typed_config
                .as_ref()
                .and_then(|a| {
                    use prost::Message;
                    weft_xds::envoy::extensions::path::r#match::uri_template::v3::UriTemplateMatchConfig::decode(a.value.as_slice()).ok()
                })
                .map(|c| c.path_template)
                .unwrap_or_default();
            format!("path template {tpl:?}")
        }
        Some(R::DestinationIp(c)) => format!("destination ip {}", cidr(c)),
        Some(R::DestinationPort(p)) => format!("port {p}"),
        Some(R::DestinationPortRange(r)) => format!("port {}-{}", r.start, r.end - 1),
        Some(R::RequestedServerName(m)) => format!("sni {}", string_matcher(m)),
        Some(R::Metadata(m)) => metadata(m),
        Some(_) => "?".to_string(),
    }
}

/// A principal tree as text.
pub fn principal(p: &rbac::Principal) -> String {
    use rbac::principal::Identifier as I;
    #[allow(deprecated)]
    match &p.identifier {
        Some(I::Any(true)) => "anyone".to_string(),
        Some(I::Any(false)) | None => "no one".to_string(),
        Some(I::AndIds(s)) => join(s.ids.iter().map(principal).collect(), " and "),
        Some(I::OrIds(s)) => join(s.ids.iter().map(principal).collect(), " or "),
        Some(I::NotId(x)) => format!("not {}", principal(x)),
        Some(I::Authenticated(a)) => match &a.principal_name {
            Some(m) => format!("peer {}", string_matcher(m)),
            None => "any authenticated peer".to_string(),
        },
        Some(I::SourceIp(c)) | Some(I::DirectRemoteIp(c)) => format!("source ip {}", cidr(c)),
        Some(I::RemoteIp(c)) => format!("remote ip {}", cidr(c)),
        Some(I::Header(h)) => header(h),
        Some(I::Metadata(m)) => metadata(m),
        Some(_) => "?".to_string(),
    }
}

/// `ns[NS]-policy[NAME]-rule[I]` (with the CUSTOM prefix) to `(NS/NAME, I)`.
fn split_name(n: &str) -> (String, String) {
    let grab = |key: &str| {
        n.find(key).and_then(|i| {
            let rest = &n[i + key.len()..];
            rest.find(']').map(|j| rest[..j].to_string())
        })
    };
    match (grab("ns["), grab("policy["), grab("rule[")) {
        (Some(ns), Some(p), Some(r)) => (format!("{ns}/{p}"), r),
        _ => (n.to_string(), "-".to_string()),
    }
}

fn rows(rules: &rbac::Rbac, shadow: bool, custom: bool, scope: &str, out: &mut Vec<RuleRow>) {
    let mut action = match rbac::rbac::Action::try_from(rules.action) {
        Ok(rbac::rbac::Action::Deny) if custom => "CUSTOM".to_string(),
        Ok(rbac::rbac::Action::Deny) => "DENY".to_string(),
        Ok(rbac::rbac::Action::Log) => "AUDIT".to_string(),
        _ => "ALLOW".to_string(),
    };
    if custom && let Some(p) = rules.policies.keys().next() {
        // istio-ext-authz-PROVIDER-ns[...]: name the provider.
        if let Some(rest) = p.strip_prefix("istio-ext-authz-")
            && let Some(i) = rest.find("-ns[")
        {
            action = format!("CUSTOM ({})", &rest[..i]);
        }
    } else if shadow {
        action.push_str(" (dry-run)");
    }
    if rules.policies.is_empty() && action == "ALLOW" {
        out.push(RuleRow {
            action,
            policy: "(no rule applies here)".to_string(),
            rule: "-".to_string(),
            scope: scope.to_string(),
            from: "no one".to_string(),
            to: "nothing: every request is denied".to_string(),
        });
        return;
    }
    let mut names: Vec<&String> = rules.policies.keys().collect();
    names.sort();
    for name in names {
        let p = &rules.policies[name];
        let (policy, rule) = split_name(name);
        let from: Vec<String> = p.principals.iter().map(principal).collect();
        let to: Vec<String> = p.permissions.iter().map(permission).collect();
        out.push(RuleRow {
            action: action.clone(),
            policy,
            rule,
            scope: scope.to_string(),
            from: from.join(" | "),
            to: to.join(" | "),
        });
    }
}

fn walk<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            if m.get("name").and_then(Value::as_str).is_some_and(|n| {
                matches!(
                    n,
                    "envoy.filters.http.rbac"
                        | "envoy.filters.network.rbac"
                        | "envoy.filters.http.jwt_authn"
                )
            }) && m.contains_key("typed_config")
            {
                out.push(v);
            }
            m.values().for_each(|x| walk(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
        _ => {}
    }
}

/// Builds the report from a config dump (proto3 JSON).
pub fn report(dump: &Value) -> anyhow::Result<Report> {
    let mut filters = Vec::new();
    walk(dump, &mut filters);
    let mut rules = Vec::new();
    let mut jwt_rows = Vec::new();
    for f in filters {
        let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
        match name {
            "envoy.filters.network.rbac" => {
                let lf: listener::Filter = weft_xds::json::from_value(f)?;
                let Some(listener::filter::ConfigType::TypedConfig(a)) = lf.config_type else {
                    continue;
                };
                let r: rbac_tcp::Rbac = prost::Message::decode(a.value.as_slice())?;
                let custom = r.shadow_rules_stat_prefix == "istio_ext_authz_";
                if let Some(x) = &r.rules {
                    rows(x, false, false, "TCP", &mut rules);
                }
                if let Some(x) = &r.shadow_rules {
                    rows(x, true, custom, "TCP", &mut rules);
                }
            }
            _ => {
                let hf: hcm::HttpFilter = weft_xds::json::from_value(f)?;
                let Some(hcm::http_filter::ConfigType::TypedConfig(a)) = hf.config_type else {
                    continue;
                };
                if name == "envoy.filters.http.rbac" {
                    let r: rbac_http::Rbac = prost::Message::decode(a.value.as_slice())?;
                    let custom = r.shadow_rules_stat_prefix == "istio_ext_authz_";
                    if let Some(x) = &r.rules {
                        rows(x, false, false, "HTTP", &mut rules);
                    }
                    if let Some(x) = &r.shadow_rules {
                        rows(x, true, custom, "HTTP", &mut rules);
                    }
                } else {
                    let j: jwt::JwtAuthentication = prost::Message::decode(a.value.as_slice())?;
                    for p in j.providers.values() {
                        use jwt::jwt_provider::JwksSourceSpecifier as S;
                        let jwks = match &p.jwks_source_specifier {
                            Some(S::RemoteJwks(r)) => r
                                .http_uri
                                .as_ref()
                                .map(|u| u.uri.clone())
                                .unwrap_or_default(),
                            _ => "inline".to_string(),
                        };
                        jwt_rows.push(JwtRow {
                            issuer: p.issuer.clone(),
                            audiences: p.audiences.clone(),
                            jwks,
                        });
                    }
                }
            }
        }
    }
    let rank = |a: &str| match a.split(' ').next().unwrap_or("") {
        "CUSTOM" => 0,
        "DENY" => 1,
        "ALLOW" => 2,
        _ => 3,
    };
    rules.sort_by(|a, b| {
        (rank(&a.action), &a.action, &a.policy, &a.rule, &a.scope).cmp(&(
            rank(&b.action),
            &b.action,
            &b.policy,
            &b.rule,
            &b.scope,
        ))
    });
    rules.dedup();
    jwt_rows.sort();
    jwt_rows.dedup();
    Ok(Report {
        jwt: jwt_rows,
        rules,
    })
}

fn print(r: &Report) {
    if r.rules.is_empty() && r.jwt.is_empty() {
        println!(
            "No AuthorizationPolicy or RequestAuthentication applies: every request is allowed."
        );
        return;
    }
    if !r.jwt.is_empty() {
        println!("REQUEST AUTHENTICATION (invalid token: 401; no token: passes authentication)");
        for j in &r.jwt {
            let aud = if j.audiences.is_empty() {
                String::new()
            } else {
                format!(" audiences={}", j.audiences.join(","))
            };
            println!("  issuer={}{aud} jwks={}", j.issuer, j.jwks);
        }
        println!();
    }
    let mut by_action: BTreeMap<&str, usize> = BTreeMap::new();
    for row in &r.rules {
        *by_action.entry(row.action.as_str()).or_default() += 1;
    }
    let w_action = r
        .rules
        .iter()
        .map(|x| x.action.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let w_policy = r
        .rules
        .iter()
        .map(|x| x.policy.len())
        .max()
        .unwrap_or(6)
        .max(19);
    println!(
        "{:<w_action$}  {:<w_policy$}  {:<4}  {:<5}  WHAT",
        "ACTION", "AuthorizationPolicy", "RULE", "LAYER"
    );
    for row in &r.rules {
        println!(
            "{:<w_action$}  {:<w_policy$}  {:<4}  {:<5}  from {} to {}",
            row.action, row.policy, row.rule, row.scope, row.from, row.to
        );
    }
    println!();
    println!(
        "Order: CUSTOM, then DENY (a match is refused), then ALLOW (when any ALLOW policy applies, \
         only what one allows passes); AUDIT and dry-run rules are only recorded."
    );
}

/// Runs `weft x authz check`.
pub fn check(args: CheckArgs) -> anyhow::Result<u8> {
    let dump: Value = if let Some(dir) = &args.config_dir {
        offline_dump(&args, dir)?
    } else if let Some(f) = &args.file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", f.display()))?
    } else if let Some(a) = &args.proxy_admin {
        let base = a.clone();
        block_on(async move {
            let c = weft_control::server::client::AdminClient::new(&base)?;
            let r = c.get("/config_dump").await?;
            if !r.ok() {
                bail!("{base}/config_dump: {}", r.error_message());
            }
            Ok(r.json()?)
        })?
    } else {
        let want = args
            .proxy
            .as_deref()
            .context("name the PROXY, or use --file DUMP or --proxy-admin URL")?;
        block_on(crate::proxy_cmds::fetch_dump(&args.target, want))?.1
    };
    let r = report(&dump)?;
    if args.output.is_some() {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print(&r);
    }
    Ok(0)
}
