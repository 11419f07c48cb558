//! Generates `src/analyze/messages.rs` from Istio's `messages.yaml` and fails when the checked-in
//! file is stale. Regenerate with
//! `WEFT_REGEN=1 cargo test -p weft-config --test messages_catalogue`.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Deserialize)]
struct Catalogue {
    messages: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    name: String,
    code: String,
    level: String,
    description: String,
    template: String,
    #[serde(default)]
    args: Vec<ArgSpec>,
}

#[derive(Deserialize)]
struct ArgSpec {
    name: String,
}

fn screaming_snake(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && next_lower)
            {
                out.push('_');
            }
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn generate(cat: &Catalogue) -> String {
    let mut s = String::new();
    s.push_str("//! Istio's analyzer message catalogue (codes, levels, templates).\n");
    s.push_str(
        "//!\n//! Generated from Istio's `messages.yaml` by `tests/messages_catalogue.rs`\n",
    );
    s.push_str("//! (`WEFT_REGEN=1 cargo test -p weft-config --test messages_catalogue`). Do not edit.\n\n");
    s.push_str("use super::{Level, MessageType};\n\n");
    for m in &cat.messages {
        let args: Vec<String> = m.args.iter().map(|a| format!("{:?}", a.name)).collect();
        let _ = writeln!(
            s,
            "/// {code} {name}\npub static {konst}: MessageType = MessageType {{\n    name: {name:?},\n    code: {code:?},\n    level: Level::{level},\n    description: {desc:?},\n    template: {tmpl:?},\n    args: &[{args}],\n}};\n",
            konst = screaming_snake(&m.name),
            name = m.name,
            code = m.code,
            level = m.level,
            desc = m.description,
            tmpl = m.template,
            args = args.join(", "),
        );
    }
    s.push_str("/// Every message type, ordered by code.\npub static ALL: &[&MessageType] = &[\n");
    for m in &cat.messages {
        let _ = writeln!(s, "    &{},", screaming_snake(&m.name));
    }
    s.push_str("];\n\n/// Looks a message type up by code (`IST0101`) or name.\npub fn lookup(code_or_name: &str) -> Option<&'static MessageType> {\n    ALL.iter()\n        .copied()\n        .find(|m| m.code == code_or_name || m.name == code_or_name)\n}\n");
    s
}

#[test]
fn message_catalogue_is_current() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let yaml = std::env::var("WEFT_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("../../../shared/conformance/istio"))
        .join("analyzers/messages.yaml");
    let text = std::fs::read_to_string(&yaml)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", yaml.display()));
    let cat: Catalogue = serde_norway::from_str(&text).expect("messages.yaml parses");
    assert!(cat.messages.len() > 50, "catalogue looks truncated");
    let generated = generate(&cat);
    let target = root.join("src/analyze/messages.rs");
    if std::env::var_os("WEFT_REGEN").is_some() {
        std::fs::write(&target, &generated).expect("write messages.rs");
    }
    let current = std::fs::read_to_string(&target).unwrap_or_default();
    assert!(
        current == generated,
        "src/analyze/messages.rs is stale; run WEFT_REGEN=1 cargo test -p weft-config --test messages_catalogue"
    );
}
