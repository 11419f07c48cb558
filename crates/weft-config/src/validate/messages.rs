//! Kubernetes' wording for schema violations (`Required value`, `Too long`, `Too many`,
//! `should be at least N chars long`), as the API server reports CRD schema failures. The
//! field path is not repeated in the message: a [`Diagnostic`](crate::Diagnostic) shows it in
//! front (`spec.x: Required value`).

use super::{Path, Report};

/// Records Kubernetes' `Required value` error, with `detail` after it when not empty
/// (`Required value: targetRef name must be set`).
pub fn required(report: &mut Report, path: &Path, detail: &str) {
    if detail.is_empty() {
        report.error(path, "Required value");
    } else {
        report.error(path, format!("Required value: {detail}"));
    }
}

/// The schema message for a string shorter than `minLength` `n`:
/// `Invalid value: "": spec.x in body should be at least n chars long`.
pub fn min_len_msg(path: &Path, value: &str, n: usize) -> String {
    format!("Invalid value: {value:?}: {path} in body should be at least {n} chars long")
}

/// The schema message for a string longer than `maxLength` `n`.
pub fn max_len_msg(path: &Path, value: &str, n: usize) -> String {
    format!(
        "Too long: may not be more than {n} bytes ({path} is {} bytes long)",
        value.len()
    )
}

/// The schema message for a list longer than `maxItems` `max`.
pub fn too_many_msg(len: usize, max: usize) -> String {
    format!("Too many: {len}: must have at most {max} items")
}

/// Records [`too_many_msg`] when `len` exceeds `max`.
pub fn check_max_items(report: &mut Report, path: &Path, len: usize, max: usize) {
    if len > max {
        report.error(path, too_many_msg(len, max));
    }
}

/// Checks a string's length in characters against the schema's `minLength`/`maxLength`.
pub fn check_len(report: &mut Report, path: &Path, value: &str, min: usize, max: usize) {
    if value.chars().count() < min {
        report.error(path, min_len_msg(path, value, min));
    }
    if value.chars().count() > max {
        report.error(path, max_len_msg(path, value, max));
    }
}

/// Reports every empty string of a list whose items have `minLength: 1`.
pub fn non_empty_items(report: &mut Report, path: &Path, items: &[String]) {
    for (i, item) in items.iter().enumerate() {
        if item.is_empty() {
            let p = path.index(i);
            report.error(&p, min_len_msg(&p, "", 1));
        }
    }
}

/// A JSON value as text for messages (strings without their quotes).
pub fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wording() {
        let p = Path::root("spec.url");
        assert_eq!(
            min_len_msg(&p, "", 1),
            "Invalid value: \"\": spec.url in body should be at least 1 chars long"
        );
        assert_eq!(
            max_len_msg(&p, "abc", 2),
            "Too long: may not be more than 2 bytes (spec.url is 3 bytes long)"
        );
        assert_eq!(
            too_many_msg(17, 16),
            "Too many: 17: must have at most 16 items"
        );
        let mut r = Report::default();
        required(&mut r, &p, "");
        required(&mut r, &p, "url must be set");
        check_len(&mut r, &p, "", 1, 3);
        check_max_items(&mut r, &p, 3, 2);
        non_empty_items(&mut r, &p, &["a".into(), String::new()]);
        let msgs: Vec<_> = r.issues.iter().map(|i| i.message.as_str()).collect();
        assert_eq!(msgs[0], "Required value");
        assert_eq!(msgs[1], "Required value: url must be set");
        assert_eq!(r.issues.len(), 5);
        assert_eq!(r.issues[4].path, "spec.url[1]");
        assert_eq!(value_text(&serde_json::json!("x")), "x");
        assert_eq!(value_text(&serde_json::json!(3)), "3");
    }
}
