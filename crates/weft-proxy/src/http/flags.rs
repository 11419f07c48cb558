//! Envoy's response flags (`%RESPONSE_FLAGS%`), kept per request as bits so that access logs
//! can print them without the request path allocating.

use std::fmt;

/// The response flags of one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ResponseFlags(u32);

macro_rules! flags {
    ($($name:ident = $bit:expr, $short:literal, $doc:literal;)*) => {
        impl ResponseFlags {
            $(
                #[doc = $doc]
                pub const $name: ResponseFlags = ResponseFlags(1 << $bit);
            )*
            const ALL: &'static [(ResponseFlags, &'static str)] = &[$((ResponseFlags::$name, $short)),*];
        }
    };
}

flags! {
    NO_HEALTHY_UPSTREAM = 0, "UH", "No healthy upstream host.";
    UPSTREAM_CONNECTION_FAILURE = 1, "UF", "The upstream connection failed.";
    UPSTREAM_OVERFLOW = 2, "UO", "A circuit breaker overflowed.";
    NO_ROUTE_FOUND = 3, "NR", "No route matched.";
    UPSTREAM_REQUEST_TIMEOUT = 4, "UT", "The route or per-try timeout expired.";
    UPSTREAM_CONNECTION_TERMINATION = 5, "UC", "The upstream connection ended early.";
    UPSTREAM_REMOTE_RESET = 6, "UR", "The upstream reset the stream.";
    DELAY_INJECTED = 7, "DI", "The fault filter delayed the request.";
    FAULT_INJECTED = 8, "FI", "The fault filter aborted the request.";
    RATE_LIMITED = 9, "RL", "The local rate limit refused the request.";
    UPSTREAM_RETRY_LIMIT_EXCEEDED = 10, "URX", "Retries were exhausted.";
    STREAM_IDLE_TIMEOUT = 11, "SI", "The stream idle timeout expired.";
    NO_CLUSTER_FOUND = 12, "NC", "The route's cluster does not exist.";
    UPSTREAM_PROTOCOL_ERROR = 13, "UPE", "The upstream broke the protocol.";
    DOWNSTREAM_PROTOCOL_ERROR = 14, "DPE", "The downstream broke the protocol.";
    UNAUTHORIZED = 15, "UAEX", "The external authorization service refused the request.";
    DOWNSTREAM_CONNECTION_TERMINATION = 16, "DC", "The downstream connection ended before the response did.";
}

impl ResponseFlags {
    /// Adds `other`.
    pub fn set(&mut self, other: ResponseFlags) {
        self.0 |= other.0;
    }

    /// Whether all of `other` is set.
    pub fn contains(self, other: ResponseFlags) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    /// The flags as bits (Envoy's `response.flags` attribute in CEL filters).
    pub fn bits(self) -> u32 {
        self.0
    }

    /// The flag with Envoy's short name (`UH`, `UF`, ...).
    pub fn from_short(name: &str) -> Option<ResponseFlags> {
        Self::ALL.iter().find(|(_, s)| *s == name).map(|(f, _)| *f)
    }

    /// True when no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for ResponseFlags {
    /// Envoy's form: short names joined by `,`, or `-` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        let mut first = true;
        for (flag, short) in Self::ALL {
            if self.contains(*flag) {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(short)?;
                first = false;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_joins_short_names() {
        let mut f = ResponseFlags::default();
        assert_eq!(f.to_string(), "-");
        f.set(ResponseFlags::UPSTREAM_OVERFLOW);
        f.set(ResponseFlags::NO_HEALTHY_UPSTREAM);
        assert_eq!(f.to_string(), "UH,UO");
    }
}
