//! Small serde helpers shared by the VirtualService, Gateway and Sidecar types: "is default"
//! predicates for `skip_serializing_if`, and protobuf-JSON `bytes` (base64).

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

/// `skip_serializing_if` for a value equal to its type's default (proto3 zero enums).
pub(crate) fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

/// `Option<Vec<u8>>` as protobuf-JSON writes `bytes`: base64, standard or URL-safe alphabet,
/// padding optional on input; standard alphabet with padding on output.
pub(crate) mod base64_opt {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    /// Writes the bytes as standard base64.
    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => s.serialize_str(&encode(bytes)),
            None => s.serialize_none(),
        }
    }

    /// Reads standard or URL-safe base64, padded or not.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        match text {
            None => Ok(None),
            Some(t) => decode(&t)
                .map(Some)
                .map_err(|e| D::Error::custom(format!("invalid base64 in bytes field: {e}"))),
        }
    }

    /// Standard base64 with padding.
    pub(crate) fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(STD[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    }

    /// Decodes standard or URL-safe base64 with optional padding.
    pub(crate) fn decode(text: &str) -> Result<Vec<u8>, String> {
        let trimmed = text.trim_end_matches('=');
        if text.len() - trimmed.len() > 2 {
            return Err("too much padding".into());
        }
        if trimmed.len() % 4 == 1 {
            return Err("truncated input".into());
        }
        let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
        let mut acc = 0u32;
        let mut bits = 0u32;
        for (i, c) in trimmed.bytes().enumerate() {
            let v = value(c).ok_or_else(|| format!("invalid character at offset {i}"))?;
            acc = (acc << 6) | v;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push(((acc >> bits) & 0xff) as u8);
            }
        }
        Ok(out)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn round_trips() {
            for s in ["", "h", "he", "hel", "hello", "hello!"] {
                assert_eq!(decode(&encode(s.as_bytes())).as_deref(), Ok(s.as_bytes()));
            }
            assert_eq!(encode(b"hello"), "aGVsbG8=");
            assert_eq!(decode("aGVsbG8").as_deref(), Ok(&b"hello"[..]));
            assert!(decode("a$==").is_err());
        }
    }
}
