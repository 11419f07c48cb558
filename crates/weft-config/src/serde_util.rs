//! Serde helpers shared by every resource type: `skip_serializing_if` predicates for proto3
//! zero values, proto enums read by name with Kubernetes' `Unsupported value` wording
//! ([`istio_enum!`](crate::serde_util::istio_enum), [`opt_enum`]), and protobuf-JSON `bytes`
//! fields as base64 ([`base64_bytes`]).

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `skip_serializing_if` for a `false` bool.
pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

/// `skip_serializing_if` for a zero `u32`.
pub(crate) fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

/// `skip_serializing_if` for a zero `i32`.
pub(crate) fn is_zero_i32(n: &i32) -> bool {
    *n == 0
}

/// `skip_serializing_if` for a zero `f64`.
pub(crate) fn is_zero_f64(n: &f64) -> bool {
    *n == 0.0
}

/// `skip_serializing_if` for a value equal to its type's default (proto3 zero enums).
pub(crate) fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

/// `"A", "B", "C"`, as Kubernetes lists supported values.
pub fn quoted_list(values: &[&str]) -> String {
    values
        .iter()
        .map(|v| format!("{v:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Defines a protobuf enum that (de)serializes by its proto value name and refuses unknown
/// names with Kubernetes' `Unsupported value` wording. The first variant is the proto default.
macro_rules! istio_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            #[default]
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in proto order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as the proto (and YAML) spells it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(f, "one of {}", $crate::serde_util::quoted_list(&[$($text),+]))
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        match v {
                            $($text => Ok($name::$variant),)+
                            _ => Err(E::custom(format!(
                                "Unsupported value: {v:?}: supported values: {}",
                                $crate::serde_util::quoted_list(&[$($text),+])
                            ))),
                        }
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}
pub(crate) use istio_enum;

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
            Err(_) => Err(D::Error::custom(format!(
                "Unsupported value: {s:?}: supported values: {}",
                quoted_list(T::NAMES)
            ))),
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

/// Standard alphabet, padding written on output and optional on input, trailing bits ignored.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Decodes base64 as protobuf JSON reads `bytes` (and JWKS readers read key parameters):
/// standard or URL-safe alphabet, padding optional (at most two `=`).
pub fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    let trimmed = text.trim_end_matches('=');
    if text.len() - trimmed.len() > 2 {
        return Err("too much padding".into());
    }
    let standard: String = trimmed
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    BASE64.decode(standard).map_err(|e| match e {
        base64::DecodeError::InvalidByte(i, _) => format!("invalid character at offset {i}"),
        _ => "truncated input".into(),
    })
}

/// Encodes bytes as standard base64 with padding (protobuf JSON's `bytes`).
pub fn encode_base64(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

/// `Option<Vec<u8>>` as protobuf JSON writes `bytes`: base64, standard or URL-safe alphabet,
/// padding optional on input; standard alphabet with padding on output.
pub(crate) mod base64_bytes {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the bytes as standard base64.
    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => s.serialize_str(&super::encode_base64(bytes)),
            None => s.serialize_none(),
        }
    }

    /// Reads standard or URL-safe base64, padded or not.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        match text {
            None => Ok(None),
            Some(t) => super::decode_base64(&t)
                .map(Some)
                .map_err(|e| D::Error::custom(format!("invalid base64 in bytes field: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for s in ["", "h", "he", "hel", "hello", "hello!"] {
            assert_eq!(
                decode_base64(&encode_base64(s.as_bytes())).as_deref(),
                Ok(s.as_bytes())
            );
        }
        assert_eq!(encode_base64(b"hello"), "aGVsbG8=");
        assert_eq!(decode_base64("aGVsbG8").as_deref(), Ok(&b"hello"[..]));
        assert!(decode_base64("a$==").is_err());
        assert_eq!(decode_base64("AQAB"), Ok(vec![1, 0, 1]));
        assert_eq!(decode_base64("aGk").ok(), Some(b"hi".to_vec()));
        assert!(decode_base64("a").is_err());
        assert_eq!(decode_base64("-_8"), decode_base64("+/8"));
        assert_eq!(
            decode_base64("a$=="),
            Err("invalid character at offset 1".to_string())
        );
    }

    #[test]
    fn predicates() {
        assert!(is_false(&false) && !is_false(&true));
        assert!(is_zero_u32(&0) && is_zero_i32(&0) && is_zero_f64(&0.0));
        assert!(is_default(&String::new()));
        assert_eq!(quoted_list(&["A", "B"]), "\"A\", \"B\"");
    }
}
