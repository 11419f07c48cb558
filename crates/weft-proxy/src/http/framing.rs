//! A watch on the HTTP/1 framing of a downstream connection, as the bytes are read.
//!
//! hyper resolves a request with both `Content-Length` and `Transfer-Encoding` the RFC 9112
//! way (chunked wins, `Content-Length` is dropped, the connection closes afterwards), so the
//! request handler cannot see that the client sent both. Envoy refuses such requests with 400,
//! and so does weft: this reader follows request heads and bodies (content length, chunked
//! encoding) with a small state machine, and records the index of the first request whose head
//! carried both. Body bytes are skipped by count; only head and chunk-size lines are looked at.
//! HTTP/2 (the connection preface) and upgrades switch it off.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::cluster::outlier::now_ms;

/// What the reader found, shared with the connection's request handler.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    /// 1 + the index of the first request whose head had both framing headers; 0 for none.
    pub smuggling_request: AtomicU32,
    /// [`now_ms`] when the first byte of the request head being read arrived; 0 between
    /// heads. The connection manager's `request_headers_timeout` runs from it, as Envoy's does.
    pub head_started: AtomicU64,
}

#[derive(Debug)]
enum State {
    /// Reading a request head; `line` holds the start of the current line.
    Head,
    /// Skipping a body of known length.
    Body(u64),
    /// Reading a chunk-size line.
    ChunkSize { size: u64, ext: bool },
    /// Skipping chunk data, then its CRLF.
    ChunkData(u64),
    /// Skipping the CRLF after chunk data.
    ChunkEnd,
    /// Reading trailer lines until an empty one.
    Trailers,
    /// Not HTTP/1 framing any more (HTTP/2, upgrade, or something unparseable).
    Off,
}

/// The per-head facts gathered line by line.
#[derive(Debug, Default)]
struct Head {
    /// Bytes of the current line (capped; only names and short values matter).
    line: Vec<u8>,
    first_line: bool,
    content_length: Option<u64>,
    transfer_encoding: bool,
    chunked: bool,
    upgrade: bool,
}

/// A stream whose reads are watched for HTTP/1 framing.
pub(crate) struct Watched<T> {
    inner: T,
    state: State,
    head: Head,
    requests: u32,
    findings: Arc<Findings>,
}

const MAX_LINE: usize = 128;

impl<T> Watched<T> {
    pub(crate) fn new(inner: T, findings: Arc<Findings>) -> Self {
        Watched {
            inner,
            state: State::Head,
            head: Head {
                first_line: true,
                ..Head::default()
            },
            requests: 0,
            findings,
        }
    }

    fn end_of_head(&mut self) {
        // Keep the line buffer's allocation for the next head.
        let line = std::mem::take(&mut self.head.line);
        let h = std::mem::replace(
            &mut self.head,
            Head {
                line,
                first_line: true,
                ..Head::default()
            },
        );
        self.findings.head_started.store(0, Ordering::Relaxed);
        let index = self.requests;
        self.requests += 1;
        if h.content_length.is_some() && h.transfer_encoding {
            let _ = self.findings.smuggling_request.compare_exchange(
                0,
                index + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            // hyper closes such a connection after the request: nothing more to watch.
            self.state = State::Off;
            return;
        }
        self.state = if h.upgrade {
            State::Off
        } else if h.transfer_encoding {
            if h.chunked {
                State::ChunkSize {
                    size: 0,
                    ext: false,
                }
            } else {
                State::Off
            }
        } else {
            match h.content_length {
                Some(n) if n > 0 => State::Body(n),
                _ => State::Head,
            }
        };
    }

    fn parse_line(&mut self, line: &[u8]) {
        if self.head.first_line {
            self.head.first_line = false;
            if line.starts_with(b"PRI * HTTP/2.0") {
                self.state = State::Off;
            }
            return;
        }
        // Only three header names matter: skip the rest on their first letter.
        if !matches!(line.first(), Some(b'c' | b'C' | b't' | b'T' | b'u' | b'U')) {
            return;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            return;
        };
        let name = &line[..colon];
        let value = line[colon + 1..].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") {
            self.head.content_length = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse().ok())
                .or(Some(0));
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.head.transfer_encoding = true;
            self.head.chunked = value.eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            self.head.upgrade = true;
        }
    }

    /// Follows `bytes` through the framing.
    fn scan(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Off => return,
                State::Body(n) => {
                    let take = (*n).min(bytes.len() as u64);
                    *n -= take;
                    bytes = &bytes[take as usize..];
                    if *n == 0 {
                        self.state = State::Head;
                    }
                }
                State::ChunkData(n) => {
                    let take = (*n).min(bytes.len() as u64);
                    *n -= take;
                    bytes = &bytes[take as usize..];
                    if *n == 0 {
                        self.state = State::ChunkEnd;
                    }
                }
                State::ChunkEnd => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    if b == b'\n' {
                        self.state = State::ChunkSize {
                            size: 0,
                            ext: false,
                        };
                    }
                }
                State::ChunkSize { size, ext } => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    match b {
                        b'\n' => {
                            self.state = if *size == 0 {
                                State::Trailers
                            } else {
                                State::ChunkData(*size)
                            };
                        }
                        b'\r' => {}
                        _ if *ext => {}
                        b';' | b' ' | b'\t' => *ext = true,
                        _ => match (b as char).to_digit(16) {
                            Some(d) if *size < (1 << 56) => *size = *size * 16 + u64::from(d),
                            _ => self.state = State::Off,
                        },
                    }
                }
                State::Trailers | State::Head => {
                    let trailers = matches!(self.state, State::Trailers);
                    if !trailers
                        && self.head.first_line
                        && self.head.line.is_empty()
                        && !matches!(bytes[0], b'\r' | b'\n')
                        && self.findings.head_started.load(Ordering::Relaxed) == 0
                    {
                        self.findings
                            .head_started
                            .store(now_ms(), Ordering::Relaxed);
                    }
                    let Some(end) = bytes.iter().position(|b| *b == b'\n') else {
                        // A partial line: keep its start for the next read.
                        let room = MAX_LINE.saturating_sub(self.head.line.len());
                        self.head
                            .line
                            .extend_from_slice(&bytes[..bytes.len().min(room)]);
                        return;
                    };
                    let (chunk, rest) = (&bytes[..end], &bytes[end + 1..]);
                    bytes = rest;
                    // Whole lines are looked at in place; only a line split across reads is
                    // copied.
                    let mut buf = std::mem::take(&mut self.head.line);
                    let line: &[u8] = if buf.is_empty() {
                        chunk
                    } else {
                        let room = MAX_LINE.saturating_sub(buf.len());
                        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
                        &buf
                    };
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if trailers {
                        if line.is_empty() {
                            self.state = State::Head;
                        }
                    } else if line.is_empty() {
                        // Blank lines before a request line are allowed.
                        if !self.head.first_line {
                            self.end_of_head();
                        }
                    } else {
                        self.parse_line(line);
                    }
                    buf.clear();
                    self.head.line = buf;
                }
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r
            && !matches!(self.state, State::Off)
        {
            let filled = &buf.filled()[before..];
            if !filled.is_empty() {
                // The filled bytes are borrowed from `buf`, not from `self`.
                let this = &mut *self;
                this.scan(filled);
            }
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(chunks: &[&[u8]]) -> u32 {
        let f = Arc::new(Findings::default());
        let mut w = Watched::new((), Arc::clone(&f));
        for c in chunks {
            w.scan(c);
        }
        f.smuggling_request.load(Ordering::Relaxed)
    }

    #[test]
    fn follows_bodies_and_finds_both_framing_headers() {
        let ok = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x\r\nhello\r\n0\r\nT: 1\r\n\r\n";
        assert_eq!(scan_all(&[ok]), 0);
        // A body that looks like a head is skipped by count.
        let body = b"POST / HTTP/1.1\r\nContent-Length: 40\r\n\r\nContent-Length: 1\r\nTransfer-Encoding: x\r\n";
        assert_eq!(scan_all(&[body]), 0);
        let bad = b"GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(scan_all(&[bad]), 2, "the second request");
        // Split anywhere.
        let parts: Vec<&[u8]> = bad.chunks(3).collect();
        assert_eq!(scan_all(&parts), 2);
    }
}
