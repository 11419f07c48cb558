//! Connections to one endpoint: idle HTTP/1.1 connections in a lock-free queue (keep-alive
//! reuse), and one shared multiplexed HTTP/2 connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use crossbeam_queue::SegQueue;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::http::body::Body;

/// Why a connection to an endpoint could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TCP connection took longer than the cluster's `connect_timeout`.
    #[error("connection to {addr} timed out after {timeout:?} (cluster connect_timeout)")]
    Timeout {
        /// The endpoint.
        addr: SocketAddr,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The TCP connection failed (refused, unreachable, ...).
    #[error("connection to {addr} failed: {source}")]
    Io {
        /// The endpoint.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// The HTTP/1.1 or HTTP/2 handshake failed.
    #[error("HTTP handshake with {addr} failed: {source}")]
    Handshake {
        /// The endpoint.
        addr: SocketAddr,
        /// The protocol error.
        source: hyper::Error,
    },
}

/// The connections of one endpoint.
#[derive(Debug)]
pub struct Pool {
    addr: SocketAddr,
    /// Idle HTTP/1.1 connections, ready for a request; pushed back when a response body ends.
    idle: SegQueue<http1::SendRequest<Body>>,
    /// Approximate length of `idle`, to respect `max_idle`.
    idle_count: AtomicUsize,
    max_idle: usize,
    /// The shared HTTP/2 connection, replaced when it closes.
    h2: ArcSwapOption<http2::SendRequest<Body>>,
    /// Connections opened to this endpoint (all versions).
    pub connections_opened: AtomicU64,
}

impl Pool {
    /// An empty pool for `addr` that keeps at most `max_idle` idle HTTP/1.1 connections.
    pub fn new(addr: SocketAddr, max_idle: usize) -> Self {
        Pool {
            addr,
            idle: SegQueue::new(),
            idle_count: AtomicUsize::new(0),
            max_idle,
            h2: ArcSwapOption::empty(),
            connections_opened: AtomicU64::new(0),
        }
    }

    /// Idle HTTP/1.1 connections now.
    pub fn idle(&self) -> usize {
        self.idle_count.load(Ordering::Relaxed)
    }

    /// An HTTP/1.1 connection ready for one request: an idle one if any is still open, else a
    /// new one. The flag tells whether it was reused.
    pub async fn checkout_http1(
        &self,
        connect_timeout: Duration,
    ) -> Result<(http1::SendRequest<Body>, bool), ConnectError> {
        while let Some(mut sender) = self.idle.pop() {
            self.idle_count.fetch_sub(1, Ordering::Relaxed);
            if sender.is_closed() {
                continue;
            }
            // Idle connections have finished their last response; `ready` only waits for
            // hyper to notice. An error means the peer closed it meanwhile.
            if sender.ready().await.is_ok() {
                return Ok((sender, true));
            }
        }
        Ok((self.connect_http1(connect_timeout).await?, false))
    }

    /// A fresh HTTP/1.1 connection (also used for upgrades, which never go back to the pool).
    pub async fn connect_http1(
        &self,
        connect_timeout: Duration,
    ) -> Result<http1::SendRequest<Body>, ConnectError> {
        let io = self.connect_tcp(connect_timeout).await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|source| ConnectError::Handshake {
                addr: self.addr,
                source,
            })?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("upstream HTTP/1.1 connection ended: {e}");
            }
        });
        Ok(sender)
    }

    /// Gives an HTTP/1.1 connection back after its response completed.
    pub fn put(&self, sender: http1::SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        if self.idle_count.fetch_add(1, Ordering::Relaxed) >= self.max_idle {
            self.idle_count.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        self.idle.push(sender);
    }

    /// The shared HTTP/2 connection, opened (again) when needed.
    pub async fn http2(
        &self,
        connect_timeout: Duration,
    ) -> Result<http2::SendRequest<Body>, ConnectError> {
        if let Some(s) = self.h2.load().as_ref()
            && !s.is_closed()
        {
            let mut s = http2::SendRequest::clone(s);
            if s.ready().await.is_ok() {
                return Ok(s);
            }
        }
        let io = self.connect_tcp(connect_timeout).await?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .handshake(io)
            .await
            .map_err(|source| ConnectError::Handshake {
                addr: self.addr,
                source,
            })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("upstream HTTP/2 connection ended: {e}");
            }
        });
        self.h2.store(Some(std::sync::Arc::new(sender.clone())));
        Ok(sender)
    }

    /// A raw TCP connection with `TCP_NODELAY` (HTTP pools and `tcp_proxy`).
    pub async fn connect_tcp(
        &self,
        connect_timeout: Duration,
    ) -> Result<TokioIo<TcpStream>, ConnectError> {
        self.connections_opened.fetch_add(1, Ordering::Relaxed);
        Ok(TokioIo::new(connect(self.addr, connect_timeout).await?))
    }
}

/// Connects to `addr` within `timeout`, with `TCP_NODELAY` set.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(ConnectError::Timeout { addr, timeout }),
        Ok(Err(source)) => return Err(ConnectError::Io { addr, source }),
        Ok(Ok(s)) => s,
    };
    stream
        .set_nodelay(true)
        .map_err(|source| ConnectError::Io { addr, source })?;
    Ok(stream)
}
