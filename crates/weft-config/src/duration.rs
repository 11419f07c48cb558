//! Durations as Istio's YAML writes them.
//!
//! Istio's CRDs declare durations as strings checked with CEL's `duration()`, which takes Go's
//! syntax (`"7s"`, `"1.5ms"`, `"1h30m"`); protobuf-JSON's `"0.500s"` is the same syntax. weft
//! accepts exactly that and prints durations back in protobuf-JSON's seconds form.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A non-negative duration read from Istio configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// The duration as [`std::time::Duration`].
    pub fn get(self) -> std::time::Duration {
        self.0
    }

    /// Whole milliseconds, saturating.
    pub fn as_millis(self) -> u128 {
        self.0.as_millis()
    }

    /// Builds a duration from whole milliseconds.
    pub fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }

    /// Builds a duration from whole seconds.
    pub fn from_secs(s: u64) -> Self {
        Duration(std::time::Duration::from_secs(s))
    }
}

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error(
        "invalid duration {0:?}: expected a number with a unit (ns, us, ms, s, m, h), e.g. \"7s\" or \"1.5ms\""
    )]
    Syntax(String),
    #[error("invalid duration {0:?}: negative durations are not allowed")]
    Negative(String),
    #[error("invalid duration {0:?}: too large")]
    Overflow(String),
}

/// Parses a Go-style duration (`300ms`, `1.5h`, `2h45m`, `0s`); negatives are refused.
pub fn parse_duration(input: &str) -> Result<std::time::Duration, DurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let syntax = || DurationError::Syntax(input.to_string());
    let (neg, mut rest) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(syntax());
    }
    let mut total: u128 = 0; // nanoseconds
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(syntax)?;
        let (num, tail) = rest.split_at(num_end);
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(syntax());
        }
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(syntax()),
        };
        let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part
                .parse()
                .map_err(|_| DurationError::Overflow(input.to_string()))?
        };
        let mut nanos = int
            .checked_mul(scale)
            .ok_or_else(|| DurationError::Overflow(input.to_string()))?;
        let mut div: u128 = 1;
        for d in frac_part.bytes().take(30) {
            div *= 10;
            nanos += u128::from(d - b'0') * scale / div;
        }
        total = total
            .checked_add(nanos)
            .ok_or_else(|| DurationError::Overflow(input.to_string()))?;
        rest = tail;
    }
    if neg && total != 0 {
        return Err(DurationError::Negative(input.to_string()));
    }
    let secs = u64::try_from(total / 1_000_000_000)
        .map_err(|_| DurationError::Overflow(input.to_string()))?;
    Ok(std::time::Duration::new(
        secs,
        (total % 1_000_000_000) as u32,
    ))
}

impl std::str::FromStr for Duration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(Duration)
    }
}

impl fmt::Display for Duration {
    /// protobuf-JSON form: seconds with 0, 3, 6 or 9 fractional digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let nanos = self.0.subsec_nanos();
        if nanos == 0 {
            write!(f, "{secs}s")
        } else if nanos.is_multiple_of(1_000_000) {
            write!(f, "{secs}.{:03}s", nanos / 1_000_000)
        } else if nanos.is_multiple_of(1_000) {
            write!(f, "{secs}.{:06}s", nanos / 1_000)
        } else {
            write!(f, "{secs}.{nanos:09}s")
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"7s\" or \"100ms\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration as D;

    #[test]
    fn parses_go_and_protobuf_forms() {
        assert_eq!(parse_duration("7s"), Ok(D::from_secs(7)));
        assert_eq!(parse_duration("0.5s"), Ok(D::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Ok(D::from_secs(5400)));
        assert_eq!(parse_duration("1.5ms"), Ok(D::from_micros(1500)));
        assert_eq!(parse_duration("0"), Ok(D::ZERO));
        assert_eq!(parse_duration("10us"), Ok(D::from_micros(10)));
    }

    #[test]
    fn refuses_bad_forms() {
        for bad in ["", "7", "s", "1x", "1..2s", "-1s", "1s-", "1.s2"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(matches!(
            parse_duration("-1s"),
            Err(DurationError::Negative(_))
        ));
    }

    #[test]
    fn prints_protobuf_json() {
        assert_eq!(Duration(D::from_millis(1500)).to_string(), "1.500s");
        assert_eq!(Duration(D::from_secs(3)).to_string(), "3s");
        assert_eq!(Duration(D::from_nanos(5)).to_string(), "0.000000005s");
    }
}
