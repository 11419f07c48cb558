//! Regular expressions as Istio checks them (`validateStringRegexp`).

/// Istio's regex check: at most 1024 characters, RE2 syntax. Rust's `regex` accepts the same
/// syntax (no backreferences or look-around), so a pattern it refuses is refused by Envoy too.
/// `location` names the field in the message.
pub fn validate_regex(re: &str, location: &str) -> Result<(), String> {
    if re.len() > 1024 {
        return Err(format!(
            "{location:?}: regex is too large, max length allowed is 1024"
        ));
    }
    regex::Regex::new(re).map(|_| ()).map_err(|e| {
        format!(
            "{location:?}: {}; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)",
            e.to_string().lines().last().unwrap_or("invalid regex").trim()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regexes() {
        assert!(validate_regex("^/api/.*$", "uri").is_ok());
        assert!(validate_regex("(a", "uri").unwrap_err().contains("RE2"));
        assert!(validate_regex(&"a".repeat(1025), "uri").is_err());
    }
}
