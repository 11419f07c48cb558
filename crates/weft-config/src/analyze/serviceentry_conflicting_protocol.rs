//! `serviceentry.ConflictingServiceEntryProtocolAnalyzer`: ServiceEntries visible in the same
//! namespace that declare the same host and port with different protocols (IST0177).

use std::collections::{BTreeMap, BTreeSet};

use super::messages::CONFLICTING_SERVICE_ENTRY_PROTOCOL;
use super::util::full_name;
use super::{Analyzer, Context, Message};
use crate::resource::{Kind, Resource, Spec};

/// Reports ServiceEntries whose host/port pairs conflict on protocol.
pub struct ConflictingServiceEntryProtocolAnalyzer;

/// `exportTo` scope meaning every namespace.
const ALL_NAMESPACES: &str = "*";

/// The namespaces a ServiceEntry is visible in: `*` when exported everywhere (or not
/// restricted), otherwise each listed namespace (`.` is the entry's own).
fn export_scopes(export_to: &[String], namespace: &str) -> BTreeSet<String> {
    if export_to.is_empty() || export_to.iter().any(|e| e == ALL_NAMESPACES) {
        return BTreeSet::from([ALL_NAMESPACES.to_string()]);
    }
    export_to
        .iter()
        .map(|e| {
            if e == "." {
                namespace.to_string()
            } else {
                e.clone()
            }
        })
        .collect()
}

impl Analyzer for ConflictingServiceEntryProtocolAnalyzer {
    fn name(&self) -> &'static str {
        "serviceentry.ConflictingServiceEntryProtocolAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks if multiple ServiceEntries define the same host and port with different protocols"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        // (scope, host, port) -> (protocol, resource) in input order.
        type Key = (String, String, u32);
        let mut index: BTreeMap<Key, Vec<(&str, &Resource)>> = BTreeMap::new();
        for r in ctx.of_kind(Kind::ServiceEntry) {
            let Spec::ServiceEntry(se) = &r.spec else {
                continue;
            };
            for scope in export_scopes(&se.export_to, r.namespace()) {
                for host in &se.hosts {
                    for port in &se.ports {
                        index
                            .entry((scope.clone(), host.clone(), port.number))
                            .or_default()
                            .push((port.protocol.as_str(), r));
                    }
                }
            }
        }

        let mut reported: BTreeSet<String> = BTreeSet::new();
        for ((scope, host, port), entries) in &index {
            let mut entries = entries.clone();
            if scope != ALL_NAMESPACES
                && let Some(global) = index.get(&(ALL_NAMESPACES.to_string(), host.clone(), *port))
            {
                entries.extend(global.iter().copied());
            }
            let protocols: BTreeSet<String> = entries
                .iter()
                .map(|(p, _)| p.to_ascii_uppercase())
                .collect();
            if protocols.len() < 2 {
                continue;
            }
            let names: BTreeSet<String> = entries.iter().map(|(_, r)| full_name(r)).collect();
            let names = names.into_iter().collect::<Vec<_>>().join(", ");
            let protocols = protocols.into_iter().collect::<Vec<_>>().join(", ");
            for (_, r) in &entries {
                if !reported.insert(r.key()) {
                    continue;
                }
                out.push(
                    Message::new(
                        &CONFLICTING_SERVICE_ENTRY_PROTOCOL,
                        r,
                        vec![
                            names.clone().into(),
                            host.into(),
                            (*port).into(),
                            protocols.clone().into(),
                        ],
                    )
                    .at("metadata.name"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::analyze::analyze;
    use crate::mesh::MeshConfig;

    fn run(yaml: &str) -> Vec<String> {
        let parsed = crate::parse_str(yaml, "se.yaml");
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        analyze(
            &parsed.resources,
            &MeshConfig::default(),
            Some(&["serviceentry.ConflictingServiceEntryProtocolAnalyzer"]),
        )
        .iter()
        .map(|m| m.to_string())
        .collect()
    }

    fn se(name: &str, ns: &str, export: &str, proto: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  hosts: [a.com]\n  exportTo: [{export}]\n  ports: [{{number: 80, name: p, protocol: {proto}}}]\n---\n"
        )
    }

    #[test]
    fn scopes_decide_what_conflicts() {
        // Private to different namespaces: no conflict.
        assert!(run(&(se("x", "n1", ".", "HTTP") + &se("y", "n2", ".", "TCP"))).is_empty());
        // A public entry conflicts with a private one anywhere.
        let msgs = run(&(se("x", "n1", ".", "HTTP") + &se("y", "n2", "'*'", "TCP")));
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(
            msgs[0].contains("Multiple ServiceEntries (n1/x, n2/y) define the same host \"a.com\" and port 80 with conflicting protocols (HTTP, TCP)."),
            "{msgs:?}"
        );
        // Protocol names compare case-insensitively.
        assert!(run(&(se("x", "n1", "'*'", "http") + &se("y", "n2", "'*'", "HTTP"))).is_empty());
    }
}
