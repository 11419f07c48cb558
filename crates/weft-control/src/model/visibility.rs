//! `exportTo`: which namespaces can see a service or a config.

/// The namespaces a service or config is exported to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Visibility {
    /// Every namespace (`*`, or `exportTo` unset).
    #[default]
    Public,
    /// A set of namespaces; `.` (own namespace) is stored as `Private`.
    Namespaces {
        /// The config's own namespace is included (`.`).
        private: bool,
        /// Namespaces named explicitly.
        names: Vec<String>,
    },
    /// No namespace (`~`).
    None,
}

impl Visibility {
    /// Parses an `exportTo` list; an empty list is public.
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Visibility {
        let mut private = false;
        let mut names = Vec::new();
        let mut any = false;
        let mut none = false;
        for item in items {
            any = true;
            match item {
                "*" => return Visibility::Public,
                "." => private = true,
                "~" => none = true,
                "" => {}
                other => names.push(other.to_string()),
            }
        }
        if !any {
            return Visibility::Public;
        }
        if none && !private && names.is_empty() {
            return Visibility::None;
        }
        Visibility::Namespaces { private, names }
    }

    /// True when a workload in `namespace` can see something owned by `owner_namespace`.
    pub fn visible_to(&self, owner_namespace: &str, namespace: &str) -> bool {
        match self {
            Visibility::Public => true,
            Visibility::None => false,
            Visibility::Namespaces { private, names } => {
                (*private && owner_namespace == namespace) || names.iter().any(|n| n == namespace)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_to() {
        assert!(Visibility::parse([]).visible_to("a", "b"));
        assert!(Visibility::parse(["*"]).visible_to("a", "b"));
        let private = Visibility::parse(["."]);
        assert!(private.visible_to("a", "a"));
        assert!(!private.visible_to("a", "b"));
        let named = Visibility::parse([".", "c"]);
        assert!(named.visible_to("a", "c"));
        assert!(!named.visible_to("a", "b"));
        assert!(!Visibility::parse(["~"]).visible_to("a", "a"));
    }
}
