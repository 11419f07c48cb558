//! Calls from one service to another: where to connect, which `Host` to send, and a `GET`
//! bounded by a timeout.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, HOST};
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A service to call: the address to connect to and the `Host` header to send.
///
/// In the mesh the address is the calling sidecar's outbound listener and the `Host` names the
/// service (`details:9080`), so that the sidecar routes by it; without a mesh the address is the
/// service's own listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    connect: String,
    host: HeaderValue,
    prefix: String,
}

/// What can go wrong with an [`Upstream`] or a call to it.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream URL cannot be used.
    #[error("bad upstream URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The `Host` value is not a valid header value.
    #[error("bad Host header {0:?}")]
    BadHost(String),
    /// The call did not finish in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The TCP connection could not be made.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("HTTP error: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built.
    #[error("bad request: {0}")]
    Request(#[from] http::Error),
}

impl Upstream {
    /// An upstream from a URL (`http://127.0.0.1:15001`, `http://details:9080`, or a bare
    /// `HOST:PORT`; an optional path is a prefix for every request) and the `Host` header to send
    /// (`None`: the URL's own `HOST:PORT`).
    pub fn new(url: &str, host: Option<&str>) -> Result<Self, UpstreamError> {
        let bad = |reason: &str| UpstreamError::BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let with_scheme = if url.contains("://") {
            url.to_owned()
        } else {
            format!("http://{url}")
        };
        let uri: Uri = with_scheme
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("only http:// is supported"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        let hostname = authority.host();
        let connect = format!("{hostname}:{port}");
        let host = host.map(str::to_owned).unwrap_or_else(|| connect.clone());
        let host =
            HeaderValue::from_str(&host).map_err(|_| UpstreamError::BadHost(host.clone()))?;
        let prefix = uri.path().trim_end_matches('/').to_owned();
        Ok(Upstream {
            connect,
            host,
            prefix,
        })
    }

    /// An upstream at `addr` with `Host` `host`.
    pub fn at(addr: std::net::SocketAddr, host: &str) -> Result<Self, UpstreamError> {
        Upstream::new(&format!("http://{addr}"), Some(host))
    }

    /// The `HOST:PORT` connected to.
    pub fn connect_addr(&self) -> &str {
        &self.connect
    }

    /// The `Host` header sent.
    pub fn host(&self) -> &str {
        self.host.to_str().unwrap_or_default()
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "http://{}{} (Host: {})",
            self.connect,
            self.prefix,
            self.host()
        )
    }
}

/// The status and body of an upstream's answer.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The status code.
    pub status: StatusCode,
    /// The whole body.
    pub body: Bytes,
}

/// `GET path` from `upstream` with the given extra headers, on a new connection, all of it
/// (connecting, sending, reading the whole body) within `timeout`.
pub async fn get(
    upstream: &Upstream,
    path: &str,
    headers: &HeaderMap,
    timeout: Duration,
) -> Result<Reply, UpstreamError> {
    match tokio::time::timeout(timeout, get_inner(upstream, path, headers)).await {
        Ok(result) => result,
        Err(_) => Err(UpstreamError::Timeout(timeout)),
    }
}

async fn get_inner(
    upstream: &Upstream,
    path: &str,
    headers: &HeaderMap,
) -> Result<Reply, UpstreamError> {
    let stream = TcpStream::connect(&upstream.connect)
        .await
        .map_err(|source| UpstreamError::Connect {
            addr: upstream.connect.clone(),
            source,
        })?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;

    let mut req =
        Request::get(format!("{}{}", upstream.prefix, path)).body(Empty::<Bytes>::new())?;
    for (name, value) in headers {
        req.headers_mut().append(name.clone(), value.clone());
    }
    req.headers_mut().insert(HOST, upstream.host.clone());
    req.headers_mut()
        .entry(ACCEPT)
        .or_insert(HeaderValue::from_static("application/json"));

    let exchange = async move {
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok::<_, UpstreamError>(Reply { status, body })
    };
    tokio::pin!(exchange);
    tokio::pin!(conn);
    tokio::select! {
        reply = &mut exchange => reply,
        // The connection may end (e.g. `Connection: close`) before the exchange has taken the
        // last of the body: the exchange still finishes, or fails, on its own.
        ended = &mut conn => {
            ended?;
            exchange.await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = Upstream::new("http://127.0.0.1:15001", Some("details:9080")).unwrap();
        assert_eq!(u.connect_addr(), "127.0.0.1:15001");
        assert_eq!(u.host(), "details:9080");
        let u = Upstream::new("ratings:9080", None).unwrap();
        assert_eq!(u.connect_addr(), "ratings:9080");
        assert_eq!(u.host(), "ratings:9080");
        let u = Upstream::new("http://localhost/prefix/", None).unwrap();
        assert_eq!(u.connect_addr(), "localhost:80");
        assert_eq!(u.prefix, "/prefix");
        assert!(Upstream::new("https://x:1", None).is_err());
        assert!(Upstream::new("http://x:1", Some("bad\nhost")).is_err());
    }
}
