//! The request and trace headers each service copies from its inbound request to every call it
//! makes, as Istio's bookinfo services do, so that the sidecars can join their spans into one
//! trace and route on `end-user`.

use http::HeaderMap;
use http::header::HeaderName;

/// The headers propagated from an inbound request to every outbound call: Istio's bookinfo list
/// (x-request-id; Lightstep, Datadog, W3C, Cloud Trace, gRPC, B3 single and multi, SkyWalking
/// trace contexts; the user agent, the end user, the cookie and credentials).
pub const PROPAGATED: &[&str] = &[
    // Used by Istio for access logs and for consistent sampling decisions.
    "x-request-id",
    // Lightstep.
    "x-ot-span-context",
    // Datadog.
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-datadog-sampling-priority",
    // W3C trace context.
    "traceparent",
    "tracestate",
    // Google Cloud trace context.
    "x-cloud-trace-context",
    // gRPC binary trace context.
    "grpc-trace-bin",
    // Zipkin B3, multi-header and single-header forms.
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
    // SkyWalking.
    "sw8",
    // Application headers: who is asking, and with what.
    "end-user",
    "user-agent",
    "cookie",
    "authorization",
    "jwt",
];

/// The `end-user` header: the signed-in user, which a VirtualService can match on.
pub const END_USER: &str = "end-user";

/// The headers of `inbound` that are listed in [`PROPAGATED`], every value of each.
pub fn propagate(inbound: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in PROPAGATED {
        let name = HeaderName::from_static(name);
        for value in inbound.get_all(&name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn propagates_listed_headers_only() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("r1"));
        h.insert("b3", HeaderValue::from_static("a-b-1"));
        h.append("tracestate", HeaderValue::from_static("a=1"));
        h.append("tracestate", HeaderValue::from_static("b=2"));
        h.insert("x-other", HeaderValue::from_static("no"));
        let out = propagate(&h);
        assert_eq!(out.get("x-request-id").unwrap(), "r1");
        assert_eq!(out.get("b3").unwrap(), "a-b-1");
        assert_eq!(out.get_all("tracestate").iter().count(), 2);
        assert!(out.get("x-other").is_none());
    }

    #[test]
    fn finds_cookie() {
        let mut h = HeaderMap::new();
        h.insert(
            "cookie",
            HeaderValue::from_static("a=1; session=jason; b=2"),
        );
        assert_eq!(cookie(&h, "session").as_deref(), Some("jason"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
