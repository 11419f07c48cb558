//! Header handling that every proxied request needs: hop-by-hop stripping, request ids,
//! forwarding headers, upgrade detection.

use std::net::SocketAddr;

use http::header::{CONNECTION, HeaderName, TE, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderValue, Request};

use crate::config::HttpManager;

/// `x-request-id`.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// True for an HTTP/1.1 request asking to switch protocols (`Connection: upgrade` + `Upgrade`).
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.headers().contains_key(UPGRADE)
        && req.headers().get_all(CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
        })
}

/// True when the upgrade asked for is WebSocket.
pub fn is_websocket<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// Removes hop-by-hop headers (RFC 9110 7.6.1): `Connection` and the headers it names,
/// `Keep-Alive`, `Proxy-Connection`, `Transfer-Encoding`, `Upgrade`, `TE` other than
/// `trailers`. For an upgrade, `Connection: upgrade` and `Upgrade` are kept.
pub fn strip_hop_by_hop(h: &mut HeaderMap, upgrade: bool) {
    if let Some(conn) = h.get(CONNECTION) {
        let named: Vec<HeaderName> = conn
            .to_str()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|t| {
                !t.is_empty()
                    && !t.eq_ignore_ascii_case("upgrade")
                    && !t.eq_ignore_ascii_case("close")
                    && !t.eq_ignore_ascii_case("keep-alive")
            })
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for n in named {
            h.remove(n);
        }
    }
    if upgrade {
        h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        h.remove(CONNECTION);
        h.remove(UPGRADE);
    }
    h.remove(KEEP_ALIVE);
    h.remove(PROXY_CONNECTION);
    h.remove(TRANSFER_ENCODING);
    h.remove(HTTP2_SETTINGS);
    if h.get(TE)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        h.remove(TE);
    }
}

/// Makes sure the request carries an `x-request-id` (a UUID v4, generated when absent or when
/// the connection manager must not trust the client's) and returns it.
pub fn request_id(hcm: &HttpManager, h: &mut HeaderMap) -> Option<HeaderValue> {
    if !hcm.generate_request_id {
        return h.get(X_REQUEST_ID).cloned();
    }
    if !hcm.regenerate_request_id
        && let Some(v) = h.get(X_REQUEST_ID)
        && !v.is_empty()
    {
        return Some(v.clone());
    }
    let v = uuid_v4();
    h.insert(X_REQUEST_ID, v.clone());
    Some(v)
}

/// A random UUID v4 formatted without allocating more than the header value itself.
fn uuid_v4() -> HeaderValue {
    let mut n = fastrand::u128(..);
    n = (n & !(0xF << 76)) | (0x4 << 76); // version 4
    n = (n & !(0x3 << 62)) | (0x2 << 62); // variant 10
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 36];
    let mut nibble = 0;
    for (i, slot) in out.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            *slot = b'-';
            continue;
        }
        *slot = HEX[((n >> (124 - 4 * nibble)) & 0xF) as usize];
        nibble += 1;
    }
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// `x-forwarded-proto` (set when absent) and `x-forwarded-for` (peer appended when the
/// connection manager is the edge: `use_remote_address`).
pub fn forwarded(hcm: &HttpManager, peer: SocketAddr, h: &mut HeaderMap) {
    if !h.contains_key(X_FORWARDED_PROTO) {
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if hcm.use_remote_address && !hcm.skip_xff_append {
        let ip = peer.ip().to_string();
        let v = match h.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(prev) if !prev.is_empty() => format!("{prev}, {ip}"),
            _ => ip,
        };
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(X_FORWARDED_FOR, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_has_version_and_variant() {
        let v = uuid_v4();
        let s = v.to_str().unwrap();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "{s}");
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, x-foo"));
        h.insert("x-foo", HeaderValue::from_static("1"));
        h.insert("x-bar", HeaderValue::from_static("1"));
        h.insert(TE, HeaderValue::from_static("trailers"));
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        strip_hop_by_hop(&mut h, false);
        assert!(
            !h.contains_key("x-foo")
                && !h.contains_key(CONNECTION)
                && !h.contains_key(TRANSFER_ENCODING)
        );
        assert!(h.contains_key("x-bar") && h.contains_key(TE));
    }
}
