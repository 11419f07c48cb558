//! proto3-JSON (and YAML) to and from Envoy's Rust types, through the descriptor pool.
//!
//! `typed_config` (`google.protobuf.Any` with `@type`) is resolved against the pool, so every type
//! weft reads must be in it; a type that is not is reported by name.

use prost::{Message, Name};
use prost_reflect::{DeserializeOptions, DynamicMessage, SerializeOptions};

/// Why a document could not be turned into an Envoy message.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    #[error("not valid YAML: {0}")]
    Yaml(String),
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("{message}: {error}")]
    Proto { message: String, error: String },
    #[error("message type {0} is not in weft's Envoy descriptor pool")]
    UnknownType(String),
}

/// Decodes proto3-JSON text into `T` (unknown fields are errors, as in Envoy's strict mode).
pub fn from_json<T: Message + Name + Default>(text: &str) -> Result<T, TranscodeError> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| TranscodeError::Json(e.to_string()))?;
    from_value(&v)
}

/// Decodes YAML (Envoy's bootstrap and resource files) into `T`.
pub fn from_yaml<T: Message + Name + Default>(text: &str) -> Result<T, TranscodeError> {
    let v: serde_json::Value =
        serde_norway::from_str(text).map_err(|e| TranscodeError::Yaml(e.to_string()))?;
    from_value(&v)
}

/// Decodes a JSON tree into `T`.
pub fn from_value<T: Message + Name + Default>(v: &serde_json::Value) -> Result<T, TranscodeError> {
    let name = T::full_name();
    let desc = crate::descriptor_pool()
        .get_message_by_name(&name)
        .ok_or_else(|| TranscodeError::UnknownType(name.clone()))?;
    let dynamic = DynamicMessage::deserialize_with_options(
        desc,
        v,
        &DeserializeOptions::new().deny_unknown_fields(true),
    )
    .map_err(|e| TranscodeError::Proto {
        message: name.clone(),
        error: e.to_string(),
    })?;
    dynamic
        .transcode_to::<T>()
        .map_err(|e| TranscodeError::Proto {
            message: name,
            error: e.to_string(),
        })
}

/// Encodes `msg` as a proto3-JSON tree with Envoy's snake_case field names, as `/config_dump`
/// prints them.
pub fn to_value<T: Message + Name>(msg: &T) -> Result<serde_json::Value, TranscodeError> {
    let name = T::full_name();
    let desc = crate::descriptor_pool()
        .get_message_by_name(&name)
        .ok_or_else(|| TranscodeError::UnknownType(name.clone()))?;
    let mut dynamic = DynamicMessage::new(desc);
    dynamic
        .transcode_from(msg)
        .map_err(|e| TranscodeError::Proto {
            message: name.clone(),
            error: e.to_string(),
        })?;
    let opts = SerializeOptions::new().use_proto_field_name(true);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &opts)
        .map_err(|e| TranscodeError::Proto {
            message: name,
            error: e.to_string(),
        })
}
