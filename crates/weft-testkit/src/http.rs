//! A small HTTP/1.1 client: one connection per request, a timeout on the whole exchange.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;

/// What the client got back.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The body as text.
    pub body: String,
    /// The response headers.
    pub headers: http::HeaderMap,
    /// Time from connecting to the end of the body.
    pub elapsed: Duration,
}

impl Reply {
    /// A response header as text (empty when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Sends `GET path` with `Host: host` and extra headers to `addr` over a new connection.
pub async fn get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> anyhow::Result<Reply> {
    request("GET", addr, host, path, headers, Bytes::new(), timeout).await
}

/// Sends `POST path` with a JSON body to `addr` over a new connection.
pub async fn post(
    addr: SocketAddr,
    host: &str,
    path: &str,
    json: &str,
    timeout: Duration,
) -> anyhow::Result<Reply> {
    let headers = [("content-type", "application/json")];
    let body = Bytes::from(json.to_string());
    request("POST", addr, host, path, &headers, body, timeout).await
}

async fn request(
    method: &str,
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    timeout: Duration,
) -> anyhow::Result<Reply> {
    let start = Instant::now();
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body)).context("request")?;
        let resp = sender.send_request(req).await.context("send request")?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .context("read response body")?
            .to_bytes();
        driver.abort();
        anyhow::Ok(Reply {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
            headers,
            elapsed: start.elapsed(),
        })
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| {
        anyhow!("{method} http://{host}{path} via {addr}: no answer within {timeout:?}")
    })?
}

/// One kept-alive HTTP/1.1 connection, for requests that must share a connection (a client
/// that stays connected across config changes).
pub struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Conn {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Conn> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { sender, driver })
    }

    /// Sends `GET path` with `Host: host` on this connection.
    pub async fn get(
        &mut self,
        host: &str,
        path: &str,
        timeout: Duration,
    ) -> anyhow::Result<Reply> {
        let start = Instant::now();
        let exchange = async {
            self.sender.ready().await.context("connection closed")?;
            let req = http::Request::get(path)
                .header(http::header::HOST, host)
                .body(Empty::<Bytes>::new())
                .context("request")?;
            let resp = self
                .sender
                .send_request(req)
                .await
                .context("send request")?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp
                .into_body()
                .collect()
                .await
                .context("read response body")?
                .to_bytes();
            anyhow::Ok(Reply {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
                headers,
                elapsed: start.elapsed(),
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| anyhow!("GET http://{host}{path}: no answer within {timeout:?}"))?
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}
