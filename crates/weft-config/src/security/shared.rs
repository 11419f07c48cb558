//! Pieces shared by the three security kinds: enum decoding with Kubernetes' wording and the
//! `istio.io/dry-run` annotation name (validation helpers live in [`crate::validate`]).

use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The annotation that turns an AuthorizationPolicy into a dry run (only ALLOW and DENY).
pub const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";

/// A proto enum whose wire names are known, so that an unknown value can be reported with
/// the list of allowed ones (Kubernetes' `Unsupported value` wording).
pub trait ProtoEnum: DeserializeOwned + Serialize {
    /// Every value name, exactly as the proto spells it.
    const NAMES: &'static [&'static str];
}

/// Deserializes an optional proto enum from its name. An unknown name is refused with
/// `Unsupported value: "X": supported values: ...`, a non-string with Kubernetes' type wording.
pub fn opt_enum<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: ProtoEnum,
{
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => match serde_json::from_value::<T>(Value::String(s.clone())) {
            Ok(v) => Ok(Some(v)),
            Err(_) => {
                let allowed: Vec<String> = T::NAMES.iter().map(|n| format!("{n:?}")).collect();
                Err(D::Error::custom(format!(
                    "Unsupported value: {s:?}: supported values: {}",
                    allowed.join(", ")
                )))
            }
        },
        Some(other) => Err(D::Error::custom(format!(
            "Invalid value: {}: must be of type string, one of {}",
            json_type(&other),
            T::NAMES.join(", ")
        ))),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
