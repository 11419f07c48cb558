//! `RequestAuthentication` (`security.istio.io`): which JSON Web Tokens a workload accepts,
//! where to find them in a request, and how to verify them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::duration::Duration;
use crate::meta::{PolicyTargetReference, WorkloadSelector};
use crate::serde_util::{self, ProtoEnum, decode_base64};
use crate::validate::messages::{max_len_msg, non_empty_items, too_many_msg};
use crate::validate::policy::validate_policy_attachment;
use crate::validate::{Context, Path, Report, Validate};

/// `RequestAuthentication` spec: the JWT rules that apply to the selected workloads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestAuthentication {
    /// Workloads the policy applies to; unset (with no targetRef) means the whole namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// A single resource (Gateway, Service, ...) the policy attaches to.
    #[serde(default, alias = "target_ref", skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    /// Resources the policy attaches to (instead of `selector`).
    #[serde(default, alias = "target_refs", skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// The accepted JWT issuers and how each token is verified.
    #[serde(default, alias = "jwt_rules", skip_serializing_if = "Vec::is_empty")]
    pub jwt_rules: Vec<JwtRule>,
}

/// Istio's `JWTRule`: one accepted token issuer and how to find and verify its tokens.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtRule {
    /// The `iss` claim a token must carry (may be empty when `jwksUri` is set).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub issuer: String,
    /// Accepted `aud` values; empty accepts the service name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Where to fetch the public key set (http or https URL).
    #[serde(default, alias = "jwks_uri", skip_serializing_if = "String::is_empty")]
    pub jwks_uri: String,
    /// The public key set inline, as JSON text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jwks: String,
    /// Headers the token may be read from (default: `Authorization: Bearer`).
    #[serde(default, alias = "from_headers", skip_serializing_if = "Vec::is_empty")]
    pub from_headers: Vec<JwtHeader>,
    /// Query parameters the token may be read from.
    #[serde(default, alias = "from_params", skip_serializing_if = "Vec::is_empty")]
    pub from_params: Vec<String>,
    /// Header that receives the verified payload, base64-encoded.
    #[serde(
        default,
        alias = "output_payload_to_header",
        skip_serializing_if = "String::is_empty"
    )]
    pub output_payload_to_header: String,
    /// Cookies the token may be read from.
    #[serde(default, alias = "from_cookies", skip_serializing_if = "Vec::is_empty")]
    pub from_cookies: Vec<String>,
    /// Keep the original token on the request sent upstream.
    #[serde(
        default,
        alias = "forward_original_token",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub forward_original_token: bool,
    /// Claims copied into request headers after verification.
    #[serde(
        default,
        alias = "output_claim_to_headers",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    /// How long fetching the key set may take (default 5s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Claims whose space-separated string value is split into a list (besides `scope`
    /// and `permission`).
    #[serde(
        default,
        alias = "space_delimited_claims",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub space_delimited_claims: Vec<String>,
    /// Whether a request must carry this rule's token (default OPTIONAL).
    #[serde(
        default,
        deserialize_with = "serde_util::opt_enum",
        skip_serializing_if = "Option::is_none"
    )]
    pub presence: Option<JwtRequirement>,
}

/// Istio's `JWTHeader`: a header carrying the token, with an optional prefix to strip.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtHeader {
    /// The header name (required).
    #[serde(default)]
    pub name: String,
    /// Text stripped from the value before decoding, such as `"Bearer "`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
}

/// Istio's `ClaimToHeader`: copy one verified claim into a request header.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimToHeader {
    /// The header to set (letters, digits, '-' and '_').
    #[serde(default)]
    pub header: String,
    /// The claim to copy (nested claims as `a.b.c`).
    #[serde(default)]
    pub claim: String,
}

/// Istio's `JWTRequirement`: whether a rule's token must be present.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JwtRequirement {
    /// A missing token is accepted; an invalid one is refused.
    #[default]
    #[serde(rename = "OPTIONAL")]
    Optional,
    /// The token must be present and valid (401 otherwise).
    #[serde(rename = "REQUIRED")]
    Required,
}

impl ProtoEnum for JwtRequirement {
    const NAMES: &'static [&'static str] = &["OPTIONAL", "REQUIRED"];
}

impl JwtRule {
    /// The effective presence requirement.
    pub fn presence(&self) -> JwtRequirement {
        self.presence.unwrap_or_default()
    }
}

impl Validate for RequestAuthentication {
    fn validate(&self, _ctx: &Context<'_>, path: &Path, report: &mut Report) {
        validate_policy_attachment(
            self.selector.as_ref(),
            self.target_ref.as_ref(),
            &self.target_refs,
            "selector",
            path,
            report,
        );
        let rules = path.field("jwtRules");
        if self.jwt_rules.len() > 4096 {
            report.error(&rules, too_many_msg(self.jwt_rules.len(), 4096));
        }
        for (i, rule) in self.jwt_rules.iter().enumerate() {
            validate_jwt_rule(rule, &rules.index(i), report);
        }
    }
}

fn validate_jwt_rule(rule: &JwtRule, path: &Path, report: &mut Report) {
    non_empty_items(report, &path.field("audiences"), &rule.audiences);
    if rule.issuer.is_empty() && rule.jwks_uri.is_empty() {
        report.error(
            &path.field("issuer"),
            "issuer or jwksUri must be non-empty string: set the token issuer, or the JWKS URI for tokens whose issuer varies",
        );
    }
    if !rule.jwks_uri.is_empty() && !rule.jwks.is_empty() {
        report.error(
            path,
            "only one of jwks or jwksUri can be set: give the key set inline or by URL, not both",
        );
    }
    let uri = path.field("jwksUri");
    if rule.jwks_uri.len() > 2048 {
        report.error(&uri, max_len_msg(&uri, &rule.jwks_uri, 2048));
    }
    if !rule.jwks_uri.is_empty()
        && let Err(e) = check_jwks_uri(&rule.jwks_uri)
    {
        report.error(&uri, e);
    }
    if !rule.jwks.is_empty() {
        let jwks = path.field("jwks");
        match parse_jwks(&rule.jwks) {
            Err(e) => report.error(&jwks, format!("jwks parse error: {e}")),
            Ok(private) => {
                for i in private {
                    report.warning(
                        &jwks,
                        format!(
                            "jwks key at index {i} contains private key material; only public keys are used for verification"
                        ),
                    );
                }
            }
        }
    }
    let headers = path.field("fromHeaders");
    for (i, h) in rule.from_headers.iter().enumerate() {
        if h.name.is_empty() {
            let p = headers.index(i).field("name");
            report.error(
                &p,
                format!(
                    "{p}: Required value: location header name must be non-empty ({p} in body should be at least 1 chars long)"
                ),
            );
        }
    }
    non_empty_items(report, &path.field("fromParams"), &rule.from_params);
    non_empty_items(report, &path.field("fromCookies"), &rule.from_cookies);
    non_empty_items(
        report,
        &path.field("spaceDelimitedClaims"),
        &rule.space_delimited_claims,
    );
    let claims = path.field("outputClaimToHeaders");
    for (i, c) in rule.output_claim_to_headers.iter().enumerate() {
        let p = claims.index(i);
        let header = p.field("header");
        if c.header.is_empty() {
            report.error(
                &header,
                format!(
                    "{header}: Required value: outputClaimToHeaders header must be non-empty ({header} in body should be at least 1 chars long)"
                ),
            );
        } else if !is_strict_header_name(&c.header) {
            report.error(
                &header,
                format!(
                    "{header} in body should match '^[-_A-Za-z0-9]+$': header name {:?} is not a valid header name (letters, digits and '-' only)",
                    c.header
                ),
            );
        }
        if c.claim.is_empty() {
            let claim = p.field("claim");
            report.error(
                &claim,
                format!(
                    "{claim}: Required value: outputClaimToHeaders claim must be non-empty ({claim} in body should be at least 1 chars long)"
                ),
            );
        }
    }
    if let Some(t) = rule.timeout {
        let p = path.field("timeout");
        let d = t.get();
        if d < std::time::Duration::from_millis(1) {
            report.error(
                &p,
                format!("must be a valid duration greater than 1ms, got {t}"),
            );
        } else if !d.subsec_nanos().is_multiple_of(1_000_000) {
            report.error(
                &p,
                format!("only durations to ms precision are supported, got {t}"),
            );
        }
    }
}

/// Istio's strict header name (`^[-A-Za-z0-9]+$`), which is also within the CRD's pattern.
fn is_strict_header_name(h: &str) -> bool {
    !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Checks a JWKS URI as Istio does (`url.Parse`, then an http or https scheme and a numeric
/// port).
pub fn check_jwks_uri(uri: &str) -> Result<(), String> {
    if uri.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(format!("invalid control character in URL {uri:?}"));
    }
    let scheme_end = uri.find(':');
    let scheme = match scheme_end {
        Some(0) => return Err(format!("{uri:?}: missing protocol scheme")),
        Some(i)
            if uri.as_bytes()[0].is_ascii_alphabetic()
                && uri[..i]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) =>
        {
            uri[..i].to_ascii_lowercase()
        }
        _ => String::new(),
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "url must have scheme http:// or https://: URI scheme {scheme:?} is not supported"
        ));
    }
    let rest = &uri[scheme.len() + 1..];
    let Some(after) = rest.strip_prefix("//") else {
        return Ok(());
    };
    let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let authority = &after[..authority_end];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let port = if let Some(v6) = host_port.strip_prefix('[') {
        let Some(close) = v6.find(']') else {
            return Err(format!("{uri:?}: missing ']' in host"));
        };
        let after_bracket = &v6[close + 1..];
        if !after_bracket.is_empty() && !after_bracket.starts_with(':') {
            return Err(format!(
                "invalid port {after_bracket:?} after host in {uri:?}"
            ));
        }
        after_bracket.strip_prefix(':')
    } else {
        let (host, port) = match host_port.rfind(':') {
            Some(i) => (&host_port[..i], Some(&host_port[i + 1..])),
            None => (host_port, None),
        };
        if let Some(c) = host.chars().find(|c| {
            c.is_ascii() && !(c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=%\"<>".contains(*c))
        }) {
            return Err(format!("invalid character {c:?} in host name of {uri:?}"));
        }
        port
    };
    if let Some(p) = port
        && !p.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!("invalid port \":{p}\" after host in {uri:?}"));
    }
    if let Some(p) = port
        && !p.is_empty()
        && p.parse::<i64>().is_err()
    {
        return Err(format!("invalid port \":{p}\" in {uri:?}: out of range"));
    }
    Ok(())
}

/// Parses an inline JWKS (a key set `{"keys": [...]}` or a single key). Returns the indexes
/// of keys that carry private material (RSA/EC/OKP `d` and RSA CRT parameters, or a
/// symmetric `oct` key).
pub fn parse_jwks(text: &str) -> Result<Vec<usize>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(obj) = &v else {
        return Err("expected a JSON object (a key set with \"keys\" or a single key)".into());
    };
    let keys: Vec<&Value> = match obj.get("keys") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(_) => return Err("\"keys\" must be an array of keys".into()),
        None => vec![&v],
    };
    let mut private = Vec::new();
    for (i, key) in keys.into_iter().enumerate() {
        let Value::Object(k) = key else {
            return Err(format!("key at index {i} is not a JSON object"));
        };
        let kty = k
            .get("kty")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("key at index {i} has no \"kty\""))?;
        let (required, optional): (&[&str], &[&str]) = match kty {
            "RSA" => (&["n", "e"], &["d", "p", "q", "dp", "dq", "qi"]),
            "EC" => (&["x", "y"], &["d"]),
            "OKP" => (&["x"], &["d"]),
            "oct" => (&["k"], &[]),
            other => return Err(format!("key at index {i}: invalid key type {other:?}")),
        };
        for f in required.iter().chain(optional) {
            match k.get(*f) {
                None if required.contains(f) => {
                    return Err(format!(
                        "key at index {i} ({kty}) is missing required field {f:?}"
                    ));
                }
                None => {}
                Some(Value::String(s)) if decode_base64(s).is_ok() => {}
                Some(_) => {
                    return Err(format!(
                        "key at index {i} ({kty}): field {f:?} is not base64url-encoded"
                    ));
                }
            }
        }
        if matches!(kty, "EC" | "OKP") && k.get("crv").and_then(Value::as_str).is_none() {
            return Err(format!("key at index {i} ({kty}) has no \"crv\""));
        }
        let has_private = kty == "oct" || optional.iter().any(|f| k.contains_key(*f));
        if has_private {
            private.push(i);
        }
    }
    Ok(private)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_uris() {
        assert!(check_jwks_uri("https://foo.com/cert").is_ok());
        assert!(check_jwks_uri("http://foo.com:8080/cert").is_ok());
        assert!(check_jwks_uri("https://[::1]:8443/keys").is_ok());
        assert!(check_jwks_uri("HTTPS://foo.com").is_ok());
        assert!(check_jwks_uri("https://foo.com:not-a-number").is_err());
        assert!(check_jwks_uri("ftp://foo.com").is_err());
        assert!(check_jwks_uri("foo.com/keys").is_err());
        assert!(check_jwks_uri("https://foo bar.com").is_err());
    }

    #[test]
    fn jwks_parsing() {
        assert_eq!(
            parse_jwks(r#"{"keys":[{"kty":"RSA","e":"AQAB","n":"xAE7eB6q"}]}"#),
            Ok(vec![])
        );
        assert_eq!(
            parse_jwks(r#"{"kty":"EC","crv":"P-256","x":"AQAB","y":"AQAB","d":"AQAB"}"#),
            Ok(vec![0])
        );
        assert_eq!(
            parse_jwks(r#"{"keys":[{"kty":"oct","k":"AQAB"}]}"#),
            Ok(vec![0])
        );
        assert!(parse_jwks("not json").is_err());
        assert!(parse_jwks(r#"{"keys":[{"kty":"XYZ"}]}"#).is_err());
        assert!(parse_jwks(r#"{"keys":[{"kty":"RSA","e":"AQAB"}]}"#).is_err());
        assert!(parse_jwks(r#"{"keys":[{"kty":"RSA","e":"AQAB","n":"!!"}]}"#).is_err());
    }

    #[test]
    fn base64() {
        assert_eq!(decode_base64("AQAB").ok(), Some(vec![1, 0, 1]));
        assert_eq!(decode_base64("aGk").ok(), Some(b"hi".to_vec()));
        assert_eq!(decode_base64("a").ok(), None);
    }

    #[test]
    fn header_names() {
        assert!(is_strict_header_name("X-Requested-With"));
        assert!(!is_strict_header_name(":authority"));
        assert!(!is_strict_header_name("x_y"));
    }
}
