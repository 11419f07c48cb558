//! Envoy's RBAC filter (`envoy.filters.http.rbac` and `envoy.filters.network.rbac`): a policy
//! engine over the `Permission` / `Principal` trees of `envoy.config.rbac.v3`, compiled once per
//! config (string matchers, regexes, CIDRs and URI templates precompiled) and evaluated per
//! request or per connection without allocation on the common paths.
//!
//! A policy matches when any of its permissions and any of its principals match. An ALLOW
//! engine lets a request through when some policy matches, a DENY engine when none does, a LOG
//! engine always. Shadow rules are evaluated and counted, never enforced. A denied HTTP request
//! gets `403 RBAC: access denied`; a denied connection is closed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderMap;
use prost::{Message, Name};
use regex::Regex;
use serde_json::Value;
use weft_xds::envoy::config::rbac::v3 as pb;
use weft_xds::envoy::config::route::v3 as rt;
use weft_xds::envoy::extensions::filters::http::rbac::v3 as http_pb;
use weft_xds::envoy::extensions::filters::network::rbac::v3 as net_pb;
use weft_xds::envoy::extensions::path::r#match::uri_template::v3::UriTemplateMatchConfig;
use weft_xds::envoy::r#type::matcher::v3 as mpb;

use crate::config::route::{StringMatch, string_match};
use crate::config::{Cidr, CompileError};

/// The body of a denied HTTP request, as Envoy writes it.
pub const DENIED_BODY: &str = "RBAC: access denied";
/// The filter whose dynamic metadata holds verified JWT payloads.
pub const JWT_AUTHN_FILTER: &str = "envoy.filters.http.jwt_authn";

/// What is known about the downstream connection: addresses, and the peer identity and SNI
/// once TLS terminates here (`None` on plaintext).
#[derive(Clone, Debug)]
pub struct Downstream {
    /// The peer's address (`source.ip`, `direct_remote_ip`).
    pub remote: SocketAddr,
    /// The local (destination) address the connection arrived on.
    pub local: SocketAddr,
    /// The peer's authenticated identity (URI SAN, `spiffe://...`) from mutual TLS.
    pub peer_principal: Option<Arc<str>>,
    /// The TLS server name the client asked for.
    pub sni: Option<Arc<str>>,
}

impl Downstream {
    /// The attributes of a connection: its addresses, and from its TLS handshake (when the chain
    /// terminates TLS) the peer's identity as Envoy takes it: the first URI SAN (the SPIFFE id),
    /// else the first DNS SAN, else the subject. `sni` is the server name the client asked for.
    pub(crate) fn of_connection(
        remote: SocketAddr,
        local: SocketAddr,
        tls: Option<&crate::tls::TlsInfo>,
        sni: Option<&str>,
    ) -> Downstream {
        let peer_principal = tls.filter(|t| t.peer_certificate.is_some()).and_then(|t| {
            t.peer_uri_sans
                .first()
                .or(t.peer_dns_sans.first())
                .map(|s| Arc::from(s.as_str()))
                .or_else(|| {
                    (!t.peer_subject.is_empty()).then(|| Arc::from(t.peer_subject.as_str()))
                })
        });
        Downstream {
            remote,
            local,
            peer_principal,
            sni: sni.map(Arc::from),
        }
    }
}

/// The attributes one evaluation looks at.
#[derive(Debug)]
pub struct Attrs<'a> {
    /// The connection.
    pub downstream: &'a Downstream,
    /// The original client address (`remote_ip`): the downstream address unless the
    /// connection manager trusts `x-forwarded-for`.
    pub remote_ip: IpAddr,
    /// `:method` (empty for a connection).
    pub method: &'a str,
    /// `:path` with its query (empty for a connection).
    pub path: &'a str,
    /// `:authority` (empty for a connection).
    pub authority: &'a str,
    /// Request headers (empty for a connection).
    pub headers: &'a HeaderMap,
    /// Dynamic metadata of `envoy.filters.http.jwt_authn`: the verified payloads by their
    /// `payload_in_metadata` key.
    pub jwt: Option<&'a Value>,
}

impl Attrs<'_> {
    fn url_path(&self) -> &str {
        self.path.split(['?', '#']).next().unwrap_or("")
    }

    fn header(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        match name {
            ":method" => (!self.method.is_empty()).then_some(Cow::Borrowed(self.method)),
            ":path" => (!self.path.is_empty()).then_some(Cow::Borrowed(self.path)),
            ":authority" | "host" => {
                (!self.authority.is_empty()).then_some(Cow::Borrowed(self.authority))
            }
            ":scheme" => None,
            _ => {
                let mut values = self.headers.get_all(name).iter();
                let first = values.next()?;
                let mut out = Cow::Borrowed(first.to_str().unwrap_or(""));
                for v in values {
                    let s = out.to_mut();
                    s.push(',');
                    s.push_str(v.to_str().unwrap_or(""));
                }
                Some(out)
            }
        }
    }
}

#[derive(Debug)]
enum HeaderKind {
    Present(bool),
    Value(StringMatch),
}

/// A header matcher that also reads the pseudo-headers `:method`, `:path`, `:authority`.
#[derive(Debug)]
struct Header {
    name: String,
    kind: HeaderKind,
    invert: bool,
}

impl Header {
    fn matches(&self, a: &Attrs<'_>) -> bool {
        let v = a.header(&self.name);
        let r = match (&self.kind, v) {
            (HeaderKind::Present(want), v) => v.is_some() == *want,
            (HeaderKind::Value(_), None) => false,
            (HeaderKind::Value(m), Some(v)) => m.matches(&v),
        };
        r != self.invert
    }
}

/// A compiled `ValueMatcher` over JSON metadata.
#[derive(Debug)]
enum ValueMatch {
    Null,
    Double(f64),
    DoubleRange(f64, f64),
    Str(StringMatch),
    Bool(bool),
    Present(bool),
    ListOneOf(Box<ValueMatch>),
    Or(Vec<ValueMatch>),
}

impl ValueMatch {
    fn matches(&self, v: Option<&Value>) -> bool {
        match self {
            ValueMatch::Null => matches!(v, None | Some(Value::Null)),
            ValueMatch::Double(d) => v.and_then(Value::as_f64) == Some(*d),
            ValueMatch::DoubleRange(lo, hi) => v
                .and_then(Value::as_f64)
                .is_some_and(|x| x >= *lo && x < *hi),
            ValueMatch::Str(m) => v.and_then(Value::as_str).is_some_and(|s| m.matches(s)),
            ValueMatch::Bool(b) => v.and_then(Value::as_bool) == Some(*b),
            ValueMatch::Present(p) => v.is_some_and(|v| !v.is_null()) == *p,
            ValueMatch::ListOneOf(m) => v
                .and_then(Value::as_array)
                .is_some_and(|l| l.iter().any(|e| m.matches(Some(e)))),
            ValueMatch::Or(ms) => ms.iter().any(|m| m.matches(v)),
        }
    }
}

/// A compiled `MetadataMatcher`. Only `envoy.filters.http.jwt_authn` metadata exists here; any
/// other filter's metadata is absent.
#[derive(Debug)]
struct Metadata {
    jwt: bool,
    path: Vec<String>,
    value: ValueMatch,
    invert: bool,
}

impl Metadata {
    fn matches(&self, a: &Attrs<'_>) -> bool {
        let mut cur = if self.jwt { a.jwt } else { None };
        for k in &self.path {
            cur = cur.and_then(|v| v.get(k));
        }
        self.value.matches(cur) != self.invert
    }
}

/// A compiled `Permission`.
#[derive(Debug)]
enum Perm {
    Any,
    And(Vec<Perm>),
    Or(Vec<Perm>),
    Not(Box<Perm>),
    Header(Header),
    UrlPath(StringMatch),
    DestIp(Cidr),
    DestPort(u16),
    DestPortRange(i64, i64),
    Metadata(Metadata),
    Sni(StringMatch),
    Template(Regex),
    Never,
}

impl Perm {
    fn matches(&self, a: &Attrs<'_>) -> bool {
        match self {
            Perm::Any => true,
            Perm::And(v) => v.iter().all(|p| p.matches(a)),
            Perm::Or(v) => v.iter().any(|p| p.matches(a)),
            Perm::Not(p) => !p.matches(a),
            Perm::Header(h) => h.matches(a),
            Perm::UrlPath(m) => !a.path.is_empty() && m.matches(a.url_path()),
            Perm::DestIp(c) => c.contains(a.downstream.local.ip()),
            Perm::DestPort(p) => a.downstream.local.port() == *p,
            Perm::DestPortRange(lo, hi) => {
                let p = i64::from(a.downstream.local.port());
                p >= *lo && p < *hi
            }
            Perm::Metadata(m) => m.matches(a),
            Perm::Sni(m) => a.downstream.sni.as_deref().is_some_and(|s| m.matches(s)),
            Perm::Template(re) => !a.path.is_empty() && re.is_match(a.url_path()),
            Perm::Never => false,
        }
    }
}

/// A compiled `Principal`.
#[derive(Debug)]
enum Princ {
    Any,
    And(Vec<Princ>),
    Or(Vec<Princ>),
    Not(Box<Princ>),
    /// `authenticated`; `None` matches any authenticated peer.
    Authenticated(Option<StringMatch>),
    DirectRemoteIp(Cidr),
    RemoteIp(Cidr),
    Header(Header),
    UrlPath(StringMatch),
    Metadata(Metadata),
    Never,
}

impl Princ {
    fn matches(&self, a: &Attrs<'_>) -> bool {
        match self {
            Princ::Any => true,
            Princ::And(v) => v.iter().all(|p| p.matches(a)),
            Princ::Or(v) => v.iter().any(|p| p.matches(a)),
            Princ::Not(p) => !p.matches(a),
            Princ::Authenticated(m) => match (&a.downstream.peer_principal, m) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(p), Some(m)) => m.matches(p),
            },
            Princ::DirectRemoteIp(c) => c.contains(a.downstream.remote.ip()),
            Princ::RemoteIp(c) => c.contains(a.remote_ip),
            Princ::Header(h) => h.matches(a),
            Princ::UrlPath(m) => !a.path.is_empty() && m.matches(a.url_path()),
            Princ::Metadata(m) => m.matches(a),
            Princ::Never => false,
        }
    }
}

/// What an engine does with a match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Allow only what matches.
    Allow,
    /// Deny what matches.
    Deny,
    /// Allow everything; a match is only recorded.
    Log,
}

#[derive(Debug)]
struct Policy {
    permissions: Vec<Perm>,
    principals: Vec<Princ>,
}

/// One compiled rule set (`rules` or `shadow_rules`): its action and its policies in name order.
#[derive(Debug)]
pub struct Engine {
    action: Action,
    policies: Vec<(String, Policy)>,
}

impl Engine {
    /// The engine's action.
    pub fn action(&self) -> Action {
        self.action
    }

    /// The policy names, in evaluation order.
    pub fn policy_names(&self) -> impl Iterator<Item = &str> {
        self.policies.iter().map(|(n, _)| n.as_str())
    }

    /// The first policy that matches.
    pub fn matched(&self, a: &Attrs<'_>) -> Option<&str> {
        self.policies
            .iter()
            .find(|(_, p)| {
                p.permissions.iter().any(|x| x.matches(a))
                    && p.principals.iter().any(|x| x.matches(a))
            })
            .map(|(n, _)| n.as_str())
    }

    /// Whether the engine lets the request or connection through, and the policy that decided.
    pub fn allows(&self, a: &Attrs<'_>) -> (bool, Option<&str>) {
        let m = self.matched(a);
        let ok = match self.action {
            Action::Allow => m.is_some(),
            Action::Deny => m.is_none(),
            Action::Log => true,
        };
        (ok, m)
    }
}

/// Counters of one RBAC filter (Envoy's `rbac.allowed`, `rbac.denied`, `rbac.shadow_*`).
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests or connections let through by the enforced rules.
    pub allowed: AtomicU64,
    /// Requests or connections refused.
    pub denied: AtomicU64,
    /// Shadow rules would have allowed.
    pub shadow_allowed: AtomicU64,
    /// Shadow rules would have denied.
    pub shadow_denied: AtomicU64,
}

/// A compiled RBAC filter.
#[derive(Debug)]
pub struct RbacFilter {
    /// Enforced rules (`None`: everything passes).
    pub rules: Option<Engine>,
    /// Rules only evaluated and counted.
    pub shadow: Option<Engine>,
    /// Prefix of the shadow statistics (`istio_dry_run_allow_`, `istio_ext_authz_`).
    pub shadow_stat_prefix: String,
    /// Counters.
    pub counters: Counters,
}

impl RbacFilter {
    /// Evaluates the filter: `true` lets the request or connection through.
    pub fn check(&self, a: &Attrs<'_>) -> bool {
        self.check_with_shadow(a).0
    }

    /// Evaluates the filter, and returns with the verdict the dynamic metadata entry the shadow
    /// rules leave (`<shadow prefix>shadow_effective_policy_id` = the matched shadow policy),
    /// which enables ext_authz for Istio's CUSTOM policies.
    pub fn check_with_shadow(&self, a: &Attrs<'_>) -> (bool, Option<(String, String)>) {
        let mut meta = None;
        if let Some(s) = &self.shadow {
            let (ok, matched) = s.allows(a);
            if let Some(m) = matched {
                meta = Some((
                    format!("{}shadow_effective_policy_id", self.shadow_stat_prefix),
                    m.to_string(),
                ));
            }
            let c = if ok {
                &self.counters.shadow_allowed
            } else {
                &self.counters.shadow_denied
            };
            c.fetch_add(1, Ordering::Relaxed);
        }
        let ok = self.rules.as_ref().is_none_or(|r| r.allows(a).0);
        let c = if ok {
            &self.counters.allowed
        } else {
            &self.counters.denied
        };
        c.fetch_add(1, Ordering::Relaxed);
        (ok, meta)
    }

    /// Compiles `envoy.extensions.filters.http.rbac.v3.RBAC`.
    pub fn compile_http(
        any: &weft_xds::google::protobuf::Any,
        resource: &str,
        field: &str,
    ) -> Result<RbacFilter, CompileError> {
        let r = decode::<http_pb::Rbac>(any, resource, field)?;
        let matcher = r.matcher.is_some() || r.shadow_matcher.is_some();
        Self::compile(
            (r.rules.as_ref(), r.shadow_rules.as_ref()),
            matcher,
            &r.shadow_rules_stat_prefix,
            resource,
            field,
        )
    }

    /// Compiles `envoy.extensions.filters.network.rbac.v3.RBAC`.
    pub fn compile_network(
        any: &weft_xds::google::protobuf::Any,
        resource: &str,
        field: &str,
    ) -> Result<RbacFilter, CompileError> {
        let r = decode::<net_pb::Rbac>(any, resource, field)?;
        let matcher = r.matcher.is_some() || r.shadow_matcher.is_some();
        Self::compile(
            (r.rules.as_ref(), r.shadow_rules.as_ref()),
            matcher,
            &r.shadow_rules_stat_prefix,
            resource,
            field,
        )
    }

    /// What the HTTP and network filters share: `rules`, `shadow_rules` and their stat prefix;
    /// the matcher API (`matcher`, `shadow_matcher`) is refused.
    fn compile(
        (rules, shadow): (Option<&pb::Rbac>, Option<&pb::Rbac>),
        matcher: bool,
        shadow_stat_prefix: &str,
        resource: &str,
        field: &str,
    ) -> Result<RbacFilter, CompileError> {
        let c = Compiler { resource, field };
        if matcher {
            return Err(c.invalid(
                "matcher",
                "the matcher API of RBAC is not supported; use rules",
            ));
        }
        Ok(RbacFilter {
            rules: rules.map(|x| c.engine(x, "rules")).transpose()?,
            shadow: shadow.map(|x| c.engine(x, "shadow_rules")).transpose()?,
            shadow_stat_prefix: shadow_stat_prefix.to_string(),
            counters: Counters::default(),
        })
    }
}

fn decode<T: Message + Default>(
    any: &weft_xds::google::protobuf::Any,
    resource: &str,
    field: &str,
) -> Result<T, CompileError> {
    T::decode(any.value.as_slice()).map_err(|source| CompileError::Decode {
        resource: resource.to_owned(),
        field: field.to_owned(),
        type_url: any.type_url.clone(),
        source,
    })
}

/// Envoy's URI template (`/a/*/b/**`) as a full-match regex: `*` one path segment, `**` any
/// number of characters including `/`, `{name}`/`{name=*}`/`{name=**}` the same as captures.
fn template_regex(t: &str) -> Result<Regex, String> {
    const SEG: &str = r"[a-zA-Z0-9\-._~%!$&'()+,;:@=]+";
    const MULTI: &str = r"[a-zA-Z0-9\-._~%!$&'()+,;:@=/]*";
    if !t.starts_with('/') {
        return Err(format!("path template {t:?} must start with '/'"));
    }
    let mut re = String::from("^");
    let mut rest = t;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("**") {
            re.push_str(MULTI);
            rest = r;
        } else if let Some(r) = rest.strip_prefix('*') {
            re.push_str(SEG);
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            let (var, after) = r
                .split_once('}')
                .ok_or_else(|| format!("unclosed variable in path template {t:?}"))?;
            re.push_str(if var.ends_with("=**") { MULTI } else { SEG });
            rest = after;
        } else {
            let c = rest.chars().next().unwrap_or('/');
            re.push_str(&regex::escape(&c.to_string()));
            rest = &rest[c.len_utf8()..];
        }
    }
    re.push('$');
    Regex::new(&re).map_err(|e| e.to_string())
}

struct Compiler<'a> {
    resource: &'a str,
    field: &'a str,
}

impl Compiler<'_> {
    fn invalid(&self, path: &str, reason: &str) -> CompileError {
        CompileError::Invalid {
            resource: self.resource.to_owned(),
            field: format!("{}.{path}", self.field),
            reason: reason.to_owned(),
        }
    }

    fn engine(&self, r: &pb::Rbac, path: &str) -> Result<Engine, CompileError> {
        let action = match pb::rbac::Action::try_from(r.action) {
            Ok(pb::rbac::Action::Allow) => Action::Allow,
            Ok(pb::rbac::Action::Deny) => Action::Deny,
            Ok(pb::rbac::Action::Log) => Action::Log,
            Err(_) => return Err(self.invalid(&format!("{path}.action"), "unknown action")),
        };
        let mut names: Vec<&String> = r.policies.keys().collect();
        names.sort();
        let mut policies = Vec::with_capacity(names.len());
        for name in names {
            let p = &r.policies[name];
            let pp = format!("{path}.policies[{name}]");
            if p.condition.is_some() || p.checked_condition.is_some() {
                return Err(self.invalid(&pp, "CEL conditions are not supported"));
            }
            let permissions = p
                .permissions
                .iter()
                .enumerate()
                .map(|(i, x)| self.perm(x, &format!("{pp}.permissions[{i}]")))
                .collect::<Result<_, _>>()?;
            let principals = p
                .principals
                .iter()
                .enumerate()
                .map(|(i, x)| self.princ(x, &format!("{pp}.principals[{i}]")))
                .collect::<Result<_, _>>()?;
            policies.push((
                name.clone(),
                Policy {
                    permissions,
                    principals,
                },
            ));
        }
        Ok(Engine { action, policies })
    }

    fn string(&self, m: &mpb::StringMatcher, path: &str) -> Result<StringMatch, CompileError> {
        string_match(m, self.resource, &format!("{}.{path}", self.field))
    }

    fn header(&self, h: &rt::HeaderMatcher, path: &str) -> Result<Header, CompileError> {
        use rt::header_matcher::HeaderMatchSpecifier as S;
        #[allow(deprecated)]
        let kind = match &h.header_match_specifier {
            None => HeaderKind::Present(true),
            Some(S::PresentMatch(b)) => HeaderKind::Present(*b),
            Some(S::ExactMatch(s)) => HeaderKind::Value(StringMatch::Exact(s.clone(), false)),
            Some(S::PrefixMatch(s)) => HeaderKind::Value(StringMatch::Prefix(s.clone(), false)),
            Some(S::SuffixMatch(s)) => HeaderKind::Value(StringMatch::Suffix(s.clone(), false)),
            Some(S::ContainsMatch(s)) => HeaderKind::Value(StringMatch::Contains(s.clone(), false)),
            Some(S::SafeRegexMatch(re)) => HeaderKind::Value(self.string(
                &mpb::StringMatcher {
                    match_pattern: Some(mpb::string_matcher::MatchPattern::SafeRegex(re.clone())),
                    ignore_case: false,
                },
                &format!("{path}.safe_regex_match"),
            )?),
            Some(S::StringMatch(sm)) => {
                HeaderKind::Value(self.string(sm, &format!("{path}.string_match"))?)
            }
            Some(S::RangeMatch(_)) => {
                return Err(self.invalid(path, "header range_match is not supported"));
            }
        };
        Ok(Header {
            name: h.name.to_ascii_lowercase(),
            kind,
            invert: h.invert_match,
        })
    }

    fn value(&self, v: &mpb::ValueMatcher, path: &str) -> Result<ValueMatch, CompileError> {
        use mpb::value_matcher::MatchPattern as M;
        Ok(match &v.match_pattern {
            None => return Err(self.invalid(path, "value matcher without a pattern")),
            Some(M::NullMatch(_)) => ValueMatch::Null,
            Some(M::DoubleMatch(d)) => match &d.match_pattern {
                Some(mpb::double_matcher::MatchPattern::Exact(x)) => ValueMatch::Double(*x),
                Some(mpb::double_matcher::MatchPattern::Range(r)) => {
                    ValueMatch::DoubleRange(r.start, r.end)
                }
                None => return Err(self.invalid(path, "double matcher without a pattern")),
            },
            Some(M::StringMatch(s)) => {
                ValueMatch::Str(self.string(s, &format!("{path}.string_match"))?)
            }
            Some(M::BoolMatch(b)) => ValueMatch::Bool(*b),
            Some(M::PresentMatch(b)) => ValueMatch::Present(*b),
            Some(M::ListMatch(l)) => match &l.match_pattern {
                Some(mpb::list_matcher::MatchPattern::OneOf(m)) => ValueMatch::ListOneOf(Box::new(
                    self.value(m, &format!("{path}.list_match.one_of"))?,
                )),
                None => return Err(self.invalid(path, "list matcher without one_of")),
            },
            Some(M::OrMatch(o)) => ValueMatch::Or(
                o.value_matchers
                    .iter()
                    .enumerate()
                    .map(|(i, m)| self.value(m, &format!("{path}.or_match[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    fn metadata(&self, m: &mpb::MetadataMatcher, path: &str) -> Result<Metadata, CompileError> {
        let keys = m
            .path
            .iter()
            .map(|s| match &s.segment {
                Some(mpb::metadata_matcher::path_segment::Segment::Key(k)) => Ok(k.clone()),
                None => Err(self.invalid(path, "metadata path segment without a key")),
            })
            .collect::<Result<_, _>>()?;
        let value = match &m.value {
            Some(v) => self.value(v, &format!("{path}.value"))?,
            None => return Err(self.invalid(path, "metadata matcher without a value")),
        };
        Ok(Metadata {
            jwt: m.filter == JWT_AUTHN_FILTER,
            path: keys,
            value,
            invert: m.invert,
        })
    }

    fn cidr(
        &self,
        c: &weft_xds::envoy::config::core::v3::CidrRange,
        path: &str,
    ) -> Result<Cidr, CompileError> {
        let addr: IpAddr = c.address_prefix.parse().map_err(|_| {
            self.invalid(
                path,
                &format!("{:?} is not an IP address", c.address_prefix),
            )
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = c.prefix_len.as_ref().map_or(max, |l| l.value);
        if len > max {
            return Err(self.invalid(path, &format!("prefix length {len} is over {max}")));
        }
        Ok(Cidr {
            addr,
            len: len as u8,
        })
    }

    fn perm(&self, p: &pb::Permission, path: &str) -> Result<Perm, CompileError> {
        use pb::permission::Rule as R;
        let set = |s: &pb::permission::Set, kind: &str| -> Result<Vec<Perm>, CompileError> {
            s.rules
                .iter()
                .enumerate()
                .map(|(i, x)| self.perm(x, &format!("{path}.{kind}[{i}]")))
                .collect()
        };
        #[allow(deprecated)]
        Ok(match &p.rule {
            None => return Err(self.invalid(path, "permission without a rule")),
            Some(R::AndRules(s)) => Perm::And(set(s, "and_rules")?),
            Some(R::OrRules(s)) => Perm::Or(set(s, "or_rules")?),
            Some(R::Any(true)) => Perm::Any,
            Some(R::Any(false)) => Perm::Never,
            Some(R::Header(h)) => Perm::Header(self.header(h, &format!("{path}.header"))?),
            Some(R::UrlPath(m)) => match &m.rule {
                Some(mpb::path_matcher::Rule::Path(s)) => {
                    Perm::UrlPath(self.string(s, &format!("{path}.url_path.path"))?)
                }
                None => return Err(self.invalid(path, "url_path without a matcher")),
            },
            Some(R::DestinationIp(c)) => {
                Perm::DestIp(self.cidr(c, &format!("{path}.destination_ip"))?)
            }
            Some(R::DestinationPort(port)) => Perm::DestPort(
                u16::try_from(*port)
                    .map_err(|_| self.invalid(path, &format!("{port} is not a port")))?,
            ),
            Some(R::DestinationPortRange(r)) => {
                Perm::DestPortRange(i64::from(r.start), i64::from(r.end))
            }
            Some(R::Metadata(m)) => Perm::Metadata(self.metadata(m, &format!("{path}.metadata"))?),
            Some(R::NotRule(p)) => Perm::Not(Box::new(self.perm(p, &format!("{path}.not_rule"))?)),
            Some(R::RequestedServerName(s)) => {
                Perm::Sni(self.string(s, &format!("{path}.requested_server_name"))?)
            }
            Some(R::UriTemplate(t)) => {
                let any = t
                    .typed_config
                    .as_ref()
                    .filter(|a| a.type_url.ends_with(UriTemplateMatchConfig::NAME))
                    .ok_or_else(|| {
                        self.invalid(path, "uri_template needs a UriTemplateMatchConfig")
                    })?;
                let cfg = UriTemplateMatchConfig::decode(any.value.as_slice())
                    .map_err(|e| self.invalid(path, &e.to_string()))?;
                Perm::Template(
                    template_regex(&cfg.path_template).map_err(|e| self.invalid(path, &e))?,
                )
            }
            Some(R::Matcher(_)) => {
                return Err(self.invalid(path, "permission matcher extensions are not supported"));
            }
            #[allow(unreachable_patterns)]
            Some(_) => return Err(self.invalid(path, "permission kind not supported")),
        })
    }

    fn princ(&self, p: &pb::Principal, path: &str) -> Result<Princ, CompileError> {
        use pb::principal::Identifier as I;
        let set = |s: &pb::principal::Set, kind: &str| -> Result<Vec<Princ>, CompileError> {
            s.ids
                .iter()
                .enumerate()
                .map(|(i, x)| self.princ(x, &format!("{path}.{kind}[{i}]")))
                .collect()
        };
        #[allow(deprecated)]
        Ok(match &p.identifier {
            None => return Err(self.invalid(path, "principal without an identifier")),
            Some(I::AndIds(s)) => Princ::And(set(s, "and_ids")?),
            Some(I::OrIds(s)) => Princ::Or(set(s, "or_ids")?),
            Some(I::Any(true)) => Princ::Any,
            Some(I::Any(false)) => Princ::Never,
            Some(I::Authenticated(a)) => Princ::Authenticated(
                a.principal_name
                    .as_ref()
                    .map(|m| self.string(m, &format!("{path}.authenticated.principal_name")))
                    .transpose()?,
            ),
            Some(I::SourceIp(c)) | Some(I::DirectRemoteIp(c)) => {
                Princ::DirectRemoteIp(self.cidr(c, &format!("{path}.direct_remote_ip"))?)
            }
            Some(I::RemoteIp(c)) => Princ::RemoteIp(self.cidr(c, &format!("{path}.remote_ip"))?),
            Some(I::Header(h)) => Princ::Header(self.header(h, &format!("{path}.header"))?),
            Some(I::UrlPath(m)) => match &m.rule {
                Some(mpb::path_matcher::Rule::Path(s)) => {
                    Princ::UrlPath(self.string(s, &format!("{path}.url_path.path"))?)
                }
                None => return Err(self.invalid(path, "url_path without a matcher")),
            },
            Some(I::Metadata(m)) => Princ::Metadata(self.metadata(m, &format!("{path}.metadata"))?),
            Some(I::NotId(p)) => Princ::Not(Box::new(self.princ(p, &format!("{path}.not_id"))?)),
            Some(I::FilterState(_)) => Princ::Never,
            #[allow(unreachable_patterns)]
            Some(_) => return Err(self.invalid(path, "principal kind not supported")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let one = template_regex("/path/template/*").expect("template");
        assert!(one.is_match("/path/template/x"));
        assert!(!one.is_match("/path/template/x/y"));
        assert!(!one.is_match("/path/template/"));
        let many = template_regex("/**/path/template").expect("template");
        assert!(many.is_match("/a/b/path/template"));
        assert!(many.is_match("/a/path/template"));
        assert!(!many.is_match("/a/path/other"));
    }
}
