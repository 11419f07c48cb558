//! Go's `strconv` parsing as Istio relies on it.

/// Go's `strconv.Atoi`: an optional sign and decimal digits that fit in an `i64`.
pub fn go_atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok()
}

/// Go's `strconv.ParseBool` (Istio reads the `istio.io/dry-run` annotation with it).
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atoi() {
        assert_eq!(go_atoi("+12"), Some(12));
        assert_eq!(go_atoi("-3"), Some(-3));
        assert_eq!(go_atoi(""), None);
        assert_eq!(go_atoi("1a"), None);
        assert_eq!(go_atoi("99999999999999999999"), None);
    }

    #[test]
    fn go_bool() {
        assert_eq!(parse_go_bool("True"), Some(true));
        assert_eq!(parse_go_bool("0"), Some(false));
        assert_eq!(parse_go_bool("yes"), None);
    }
}
