//! Hostname matching with Istio's wildcard rules (`*.example.com`, `*`).

/// True when `name` is a wildcard host (`*` or `*.suffix`).
pub fn is_wildcard(name: &str) -> bool {
    name.starts_with('*')
}

/// True when the two hosts overlap: equal, or one is a wildcard covering the other
/// (Istio's `host.Name.Matches`).
pub fn matches(a: &str, b: &str) -> bool {
    match (is_wildcard(a), is_wildcard(b)) {
        (true, true) => {
            if a.len() < b.len() {
                b[1..].ends_with(&a[1..])
            } else {
                a[1..].ends_with(&b[1..])
            }
        }
        (true, false) => b.ends_with(&a[1..]),
        (false, true) => a.ends_with(&b[1..]),
        (false, false) => a == b,
    }
}

/// True when every host matched by `a` is matched by `b` (Istio's `host.Name.SubsetOf`).
pub fn subset_of(a: &str, b: &str) -> bool {
    if is_wildcard(b) {
        if is_wildcard(a) {
            b.len() <= a.len() && a[1..].ends_with(&b[1..])
        } else {
            a.ends_with(&b[1..])
        }
    } else {
        !is_wildcard(a) && a == b
    }
}

/// Resolves a short service name written in config (`reviews`) to a fully qualified one, as
/// Istio's `ResolveShortnameToFQDN`: names without a dot get the config's namespace and, when
/// `domain` is not empty, `.svc.<domain>`. Wildcards, IPs and dotted names are kept.
pub fn resolve_short_name(host: &str, namespace: &str, domain: &str) -> String {
    if host == "*" || host.contains('.') || host.parse::<std::net::IpAddr>().is_ok() {
        return host.to_string();
    }
    let mut out = host.to_string();
    if !namespace.is_empty() {
        out.push('.');
        out.push_str(namespace);
    }
    if !domain.is_empty() {
        out.push_str(".svc.");
        out.push_str(domain);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_overlap() {
        assert!(matches("*.example.com", "a.example.com"));
        assert!(matches("a.example.com", "*.example.com"));
        assert!(matches("*", "anything"));
        assert!(matches("*.com", "*.example.com"));
        assert!(!matches("a.example.com", "b.example.com"));
        assert!(!matches("*.example.org", "a.example.com"));
    }

    #[test]
    fn subsets() {
        assert!(subset_of("a.example.com", "*.example.com"));
        assert!(subset_of("*.a.example.com", "*.example.com"));
        assert!(!subset_of("*.example.com", "a.example.com"));
        assert!(subset_of("x", "*"));
    }

    #[test]
    fn short_names() {
        assert_eq!(resolve_short_name("a", "default", ""), "a.default");
        assert_eq!(
            resolve_short_name("a", "default", "cluster.local"),
            "a.default.svc.cluster.local"
        );
        assert_eq!(resolve_short_name("a.b", "default", "cluster.local"), "a.b");
        assert_eq!(resolve_short_name("*", "default", "cluster.local"), "*");
    }
}
