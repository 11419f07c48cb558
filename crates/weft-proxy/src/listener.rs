//! Accept loops, one per listener, and filter chain selection for each accepted connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::Shared;
use crate::config::{FilterChain, Listener, NetworkFilter};

/// Accepts connections on `listener` until `stop` turns true.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    name: Arc<str>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let shared = Arc::clone(&shared);
                    let name = Arc::clone(&name);
                    tokio::spawn(async move { handle(stream, peer, &name, shared).await });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(listener = %name, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
    tracing::debug!(listener = %name, "stopped accepting");
}

/// Decrements a listener's active-connection gauge when the connection ends.
struct ActiveGuard(Arc<crate::stats::ListenerStats>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.downstream_cx_active.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn handle(stream: TcpStream, peer: SocketAddr, name: &str, shared: Arc<Shared>) {
    let _conn = shared.conns.guard();
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, "TCP_NODELAY: {e}");
    }
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let snapshot = shared.snapshot.load_full();
    let Some(mut listener) = snapshot
        .listeners
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.as_ref())
    else {
        return;
    };
    // Where the connection was going before an iptables REDIRECT brought it here.
    let local = if listener.original_dst {
        original_dst(&stream).unwrap_or(local)
    } else {
        local
    };
    if listener.hand_off
        && let Some(target) = hand_off_target(&snapshot.listeners, listener, local)
    {
        tracing::trace!(from = %listener.name, to = %target.name, %local, "original destination hand-off");
        listener = target;
    }
    listener
        .stats
        .downstream_cx_total
        .fetch_add(1, Ordering::Relaxed);
    let active = listener
        .stats
        .downstream_cx_active
        .fetch_add(1, Ordering::Relaxed)
        + 1;
    let _active = ActiveGuard(Arc::clone(&listener.stats));
    let over_global = snapshot
        .global_connection_limit
        .is_some_and(|limit| shared.conns.active() as u64 > limit);
    if over_global
        || listener
            .connection_limit
            .is_some_and(|limit| active > limit)
    {
        // Over the listener's connection limit: closed at once, before any byte is read.
        listener
            .stats
            .downstream_cx_overflow
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(listener = %listener.name, %peer, "connection limit reached: closed");
        return;
    }
    let facts = if listener.inspect_tls || listener.inspect_http {
        match inspect(&stream, listener.inspect_timeout).await {
            Some(f) => f,
            None if listener.continue_on_timeout => Facts::default(),
            None => {
                listener
                    .stats
                    .downstream_pre_cx_timeout
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(listener = %listener.name, %peer, "listener_filters_timeout: closed");
                return;
            }
        }
    } else {
        Facts::default()
    };
    let Some(chain) = select_chain(listener, local, peer, &facts) else {
        listener
            .stats
            .no_filter_chain_match
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(listener = %listener.name, %peer, "no filter chain matched");
        return;
    };
    let Some(tls) = &chain.tls else {
        let sni = facts.server_name.as_deref();
        return serve_chain(
            stream, chain, peer, local, None, sni, name, &shared, &snapshot,
        )
        .await;
    };
    match tls.accept(stream).await {
        Ok((stream, info)) => {
            listener.stats.ssl_handshake.fetch_add(1, Ordering::Relaxed);
            let info = Arc::new(info);
            serve_chain(
                stream,
                chain,
                peer,
                local,
                Some(info),
                None,
                name,
                &shared,
                &snapshot,
            )
            .await
        }
        Err(e) => {
            listener
                .stats
                .ssl_connection_error
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(listener = %listener.name, %peer, "TLS handshake failed: {e}");
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve_chain<S>(
    stream: S,
    chain: &FilterChain,
    peer: SocketAddr,
    local: SocketAddr,
    tls: Option<Arc<crate::tls::TlsInfo>>,
    sni: Option<&str>,
    name: &str,
    shared: &Arc<Shared>,
    snapshot: &crate::config::Snapshot,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    if !chain.rbac.is_empty() {
        let sni = tls.as_ref().and_then(|t| t.sni.as_deref()).or(sni);
        let downstream =
            crate::http::rbac::Downstream::of_connection(peer, local, tls.as_deref(), sni);
        let headers = http::HeaderMap::new();
        let attrs = crate::http::rbac::Attrs {
            downstream: &downstream,
            remote_ip: peer.ip(),
            method: "",
            path: "",
            authority: "",
            headers: &headers,
            jwt: None,
        };
        if !chain.rbac.iter().all(|r| r.check(&attrs)) {
            tracing::debug!(listener = %name, %peer, "RBAC denied the connection: closed");
            return;
        }
    }
    match &chain.filter {
        NetworkFilter::Http(hcm) => {
            crate::http::serve(
                stream,
                crate::http::Downstream { peer, local, tls },
                Arc::clone(hcm),
                Arc::clone(shared),
                crate::xds::drain_signal(shared, name),
            )
            .await
        }
        NetworkFilter::Tcp(t) => crate::tcp::proxy(stream, local, t, snapshot).await,
    }
}

/// The original destination of a redirected connection (`SO_ORIGINAL_DST`); `None` when the
/// connection was not redirected or the socket option is not available.
fn original_dst(stream: &TcpStream) -> Option<SocketAddr> {
    let sock = socket2::SockRef::from(stream);
    let local = stream.local_addr().ok()?;
    let addr = if local.is_ipv4() {
        sock.original_dst_v4()
    } else {
        sock.original_dst_v6()
    };
    addr.ok()?.as_socket()
}

/// The listener a redirected connection belongs to: the one whose address is the original
/// destination, else one on the wildcard address with the original port (Envoy's hand-off for
/// `use_original_dst`).
fn hand_off_target<'a>(
    listeners: &'a [Arc<Listener>],
    from: &Listener,
    dst: SocketAddr,
) -> Option<&'a Listener> {
    let others = || {
        listeners
            .iter()
            .filter(|l| l.name != from.name && same_direction(from.direction, l.direction))
    };
    others()
        .find(|l| l.addr == dst)
        .or_else(|| others().find(|l| l.addr.ip().is_unspecified() && l.addr.port() == dst.port()))
        .map(|l| l.as_ref())
}

/// Whether a connection accepted by a listener of traffic direction `from` may be handed to a
/// listener of direction `to` (0, unspecified, goes with any).
fn same_direction(from: i32, to: i32) -> bool {
    from == 0 || to == 0 || from == to
}

/// What the first bytes of a connection revealed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// `tls` or `raw_buffer` (unknown when nothing arrived in time).
    pub transport: Option<&'static str>,
    /// SNI from the ClientHello, lower-cased.
    pub server_name: Option<String>,
    /// ALPN offered in the ClientHello, or `http/1.1` / `h2c` detected on plaintext.
    pub application_protocols: Vec<String>,
}

/// Peeks at the first bytes until they tell what the connection is. `None` when `timeout`
/// passed first; a closed or failed connection gives empty facts.
async fn inspect(stream: &TcpStream, timeout: Option<Duration>) -> Option<Facts> {
    let mut buf = vec![0u8; 16 * 1024 + 5];
    // No timeout configured (0): a day stands in for "forever".
    let deadline = tokio::time::Instant::now() + timeout.unwrap_or(Duration::from_secs(24 * 3600));
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => return Some(Facts::default()),
            Err(_) => return None,
        };
        if n == 0 {
            return Some(Facts::default());
        }
        match parse_first_bytes(&buf[..n]) {
            Some(f) => return Some(f),
            None if tokio::time::Instant::now() >= deadline => return None,
            // Partial ClientHello or request line: peeking does not consume, so wait a little
            // for the rest instead of spinning on a readable socket.
            None => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

/// Classifies the first bytes of a connection; `None` means "need more bytes".
pub fn parse_first_bytes(b: &[u8]) -> Option<Facts> {
    let first = *b.first()?;
    if first == 0x16 {
        return parse_client_hello(b);
    }
    const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut f = Facts {
        transport: Some("raw_buffer"),
        ..Facts::default()
    };
    if b.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(b) {
        return None;
    }
    if b.starts_with(H2_PREFACE) {
        f.application_protocols.push("h2c".into());
        return Some(f);
    }
    // An HTTP/1 request line: METHOD SP target SP HTTP/1.x CRLF.
    let line_end = b.windows(2).position(|w| w == b"\r\n");
    match line_end {
        None if b.len() < 8192 && b.iter().all(|c| c.is_ascii_graphic() || *c == b' ') => None,
        Some(end) => {
            let line = &b[..end];
            if line.ends_with(b" HTTP/1.1") {
                f.application_protocols.push("http/1.1".into());
            } else if line.ends_with(b" HTTP/1.0") {
                f.application_protocols.push("http/1.0".into());
            }
            Some(f)
        }
        None => Some(f),
    }
}

fn parse_client_hello(b: &[u8]) -> Option<Facts> {
    let not_tls = Some(Facts {
        transport: Some("raw_buffer"),
        ..Facts::default()
    });
    if b.len() < 5 {
        return None;
    }
    let record_len = usize::from(u16::from_be_bytes([b[3], b[4]]));
    if b.len() < 5 + record_len {
        return None;
    }
    let mut facts = Facts {
        transport: Some("tls"),
        ..Facts::default()
    };
    let hs = &b[5..5 + record_len];
    // handshake type 1 (client_hello), 3-byte length, version, random.
    if hs.first() != Some(&1) {
        return not_tls;
    }
    let mut r = Reader {
        b: hs,
        pos: 4 + 2 + 32,
    };
    let parsed = (|| {
        let sid = r.u8()? as usize;
        r.skip(sid)?;
        let suites = r.u16()? as usize;
        r.skip(suites)?;
        let comp = r.u8()? as usize;
        r.skip(comp)?;
        let ext_len = r.u16()? as usize;
        let end = r.pos + ext_len;
        while r.pos + 4 <= end {
            let ty = r.u16()?;
            let len = r.u16()? as usize;
            let data = r.take(len)?;
            let mut e = Reader { b: data, pos: 0 };
            match ty {
                0 => {
                    let list_end = e.u16()? as usize + 2;
                    while e.pos + 3 <= list_end {
                        let kind = e.u8()?;
                        let n = e.u16()? as usize;
                        let name = e.take(n)?;
                        if kind == 0 {
                            facts.server_name =
                                Some(String::from_utf8_lossy(name).to_ascii_lowercase());
                        }
                    }
                }
                16 => {
                    let list_end = e.u16()? as usize + 2;
                    while e.pos < list_end {
                        let n = e.u8()? as usize;
                        let p = e.take(n)?;
                        facts
                            .application_protocols
                            .push(String::from_utf8_lossy(p).into_owned());
                    }
                }
                _ => {}
            }
        }
        Some(())
    })();
    // A malformed hello still is TLS; whatever was read before the damage is kept.
    let _ = parsed;
    Some(facts)
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_be_bytes([s[0], s[1]]))
    }
}

/// Picks the filter chain for a connection: among chains whose every criterion matches, the
/// most specific one, comparing in Envoy's order (destination port, destination prefix, server
/// name, transport protocol, application protocols, source prefix, source port). Falls back to
/// `default_filter_chain`.
pub fn select_chain<'a>(
    l: &'a Listener,
    local: SocketAddr,
    peer: SocketAddr,
    facts: &Facts,
) -> Option<&'a FilterChain> {
    let mut best: Option<([u32; 7], &FilterChain)> = None;
    for c in &l.chains {
        let m = &c.matcher;
        let mut score = [0u32; 7];
        if let Some(p) = m.destination_port {
            if p != local.port() {
                continue;
            }
            score[0] = 1;
        }
        if !m.prefix_ranges.is_empty() {
            match m
                .prefix_ranges
                .iter()
                .filter(|r| r.contains(local.ip()))
                .map(|r| r.len)
                .max()
            {
                Some(len) => score[1] = u32::from(len) + 1,
                None => continue,
            }
        }
        if !m.server_names.is_empty() {
            let Some(sni) = facts.server_name.as_deref() else {
                continue;
            };
            let best_name = m
                .server_names
                .iter()
                .filter_map(|n| {
                    if n == sni {
                        Some(1000 + n.len() as u32)
                    } else if let Some(suffix) = n.strip_prefix('*') {
                        (sni.len() > suffix.len() && sni.ends_with(suffix))
                            .then_some(suffix.len() as u32)
                    } else {
                        None
                    }
                })
                .max();
            match best_name {
                Some(s) => score[2] = s + 1,
                None => continue,
            }
        }
        if let Some(tp) = &m.transport_protocol {
            if facts.transport.unwrap_or("raw_buffer") != tp {
                continue;
            }
            score[3] = 1;
        }
        if !m.application_protocols.is_empty() {
            if !m
                .application_protocols
                .iter()
                .any(|p| facts.application_protocols.contains(p))
            {
                continue;
            }
            score[4] = 1;
        }
        if !m.source_prefix_ranges.is_empty() {
            match m
                .source_prefix_ranges
                .iter()
                .filter(|r| r.contains(peer.ip()))
                .map(|r| r.len)
                .max()
            {
                Some(len) => score[5] = u32::from(len) + 1,
                None => continue,
            }
        }
        if !m.source_ports.is_empty() {
            if !m.source_ports.contains(&peer.port()) {
                continue;
            }
            score[6] = 1;
        }
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c).or(l.default_chain.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_off_keeps_the_traffic_direction() {
        use weft_xds::envoy::config::core::v3::TrafficDirection;
        let (unspecified, inbound, outbound) = (
            TrafficDirection::Unspecified as i32,
            TrafficDirection::Inbound as i32,
            TrafficDirection::Outbound as i32,
        );
        // virtualInbound must not hand a connection for port 9080 to 0.0.0.0_9080 (outbound).
        assert!(!same_direction(inbound, outbound));
        assert!(!same_direction(outbound, inbound));
        assert!(same_direction(outbound, outbound));
        assert!(same_direction(inbound, inbound));
        assert!(same_direction(unspecified, outbound));
        assert!(same_direction(outbound, unspecified));
    }

    #[test]
    fn http_first_bytes() {
        let f = parse_first_bytes(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(f.application_protocols, vec!["http/1.1"]);
        assert_eq!(parse_first_bytes(b"GET / HT"), None);
        let f = parse_first_bytes(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
        assert_eq!(f.application_protocols, vec!["h2c"]);
    }

    #[test]
    fn client_hello_sni_and_alpn() {
        // Minimal ClientHello: no suites, one compression method, SNI "Example.com", ALPN h2.
        let sni_name = b"Example.com";
        let mut sni = vec![];
        let entry_len = 3 + sni_name.len();
        sni.extend_from_slice(&(entry_len as u16).to_be_bytes());
        sni.push(0);
        sni.extend_from_slice(&(sni_name.len() as u16).to_be_bytes());
        sni.extend_from_slice(sni_name);
        let alpn = [0u8, 3, 2, b'h', b'2'];
        let mut exts = vec![];
        exts.extend_from_slice(&[0, 0]);
        exts.extend_from_slice(&(sni.len() as u16).to_be_bytes());
        exts.extend_from_slice(&sni);
        exts.extend_from_slice(&[0, 16]);
        exts.extend_from_slice(&(alpn.len() as u16).to_be_bytes());
        exts.extend_from_slice(&alpn);
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0u8; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0, 0]); // suites
        body.extend_from_slice(&[1, 0]); // compression
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut hs = vec![1, 0];
        hs.extend_from_slice(&(body.len() as u16).to_be_bytes());
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 3, 1];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        assert_eq!(parse_first_bytes(&rec[..10]), None);
        let f = parse_first_bytes(&rec).unwrap();
        assert_eq!(f.transport, Some("tls"));
        assert_eq!(f.server_name.as_deref(), Some("example.com"));
        assert_eq!(f.application_protocols, vec!["h2"]);
    }
}
