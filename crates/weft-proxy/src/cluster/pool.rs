//! Connections to one endpoint: idle HTTP/1.1 connections in a lock-free queue (keep-alive
//! reuse), and one shared multiplexed HTTP/2 connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use crossbeam_queue::SegQueue;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::breaker::{Breakers, Priority, Slot};
use super::outlier::now_ms;
use crate::http::body::Body;
use crate::stats::ClusterStats;
pub use crate::tls::stream::UpstreamStream;

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
    /// The cluster's `max_connections` and `max_pending_requests` are exhausted.
    #[error("circuit breaker open: max_connections and max_pending_requests reached")]
    Overflow,
    /// The TLS handshake failed (or the TLS context's secrets have not arrived).
    #[error("TLS handshake with {addr} failed: {source}")]
    Tls {
        /// The endpoint.
        addr: SocketAddr,
        /// What went wrong.
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

/// Connection-pool settings of a cluster (`HttpProtocolOptions.common_http_protocol_options`).
#[derive(Clone, Copy, Debug)]
pub struct PoolOptions {
    /// Idle HTTP/1.1 connections kept per endpoint.
    pub max_idle: usize,
    /// `max_requests_per_connection`: a connection is closed after this many requests.
    pub max_requests_per_connection: Option<u32>,
    /// `idle_timeout` (Envoy's default is one hour): an idle connection is closed after it.
    pub idle_timeout: Option<Duration>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_idle: 64,
            max_requests_per_connection: None,
            idle_timeout: Some(Duration::from_secs(3600)),
        }
    }
}

/// What a connection's task and its pool entry share: when the connection went idle.
#[derive(Debug, Default)]
pub struct ConnState {
    /// [`now_ms`] when the connection went back to the idle queue; 0 while it carries a request.
    idle_since: AtomicU64,
}

/// An HTTP/1.1 connection taken from (or made for) a pool, to give back with [`Pool::put`].
#[derive(Debug)]
pub struct Pooled {
    /// The request sender.
    pub sender: http1::SendRequest<Body>,
    /// Requests this connection completed before this one.
    uses: u32,
    state: Arc<ConnState>,
}

/// The connections of one endpoint.
#[derive(Debug)]
pub struct Pool {
    addr: SocketAddr,
    /// Idle HTTP/1.1 connections, ready for a request; pushed back when a response body ends.
    idle: SegQueue<Pooled>,
    /// Approximate length of `idle`, to respect `max_idle`.
    idle_count: AtomicUsize,
    opts: PoolOptions,
    /// The cluster's circuit breakers: connections take a `max_connections` slot for their
    /// whole life, and requests wait here as pending when none is left.
    breakers: Arc<Breakers>,
    /// The shared HTTP/2 connection, replaced when it closes.
    h2: ArcSwapOption<http2::SendRequest<Body>>,
    /// Connections opened to this endpoint (all versions).
    pub connections_opened: AtomicU64,
    /// Connections to this endpoint open now (shared with their tasks).
    open: Arc<AtomicU64>,
    /// The endpoint's transport socket: TLS, or plaintext when `None`. Part of the pool's
    /// identity: an endpoint whose transport changes gets a new pool.
    tls: Option<Arc<crate::tls::UpstreamTls>>,
}

impl Pool {
    /// An empty pool for `addr`, connecting with `tls` (plaintext when `None`).
    pub fn new(
        addr: SocketAddr,
        opts: PoolOptions,
        breakers: Arc<Breakers>,
        tls: Option<Arc<crate::tls::UpstreamTls>>,
    ) -> Self {
        Pool {
            addr,
            idle: SegQueue::new(),
            idle_count: AtomicUsize::new(0),
            opts,
            breakers,
            h2: ArcSwapOption::empty(),
            connections_opened: AtomicU64::new(0),
            open: Arc::new(AtomicU64::new(0)),
            tls,
        }
    }

    /// Whether connections from this pool use TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Idle HTTP/1.1 connections now.
    pub fn idle(&self) -> usize {
        self.idle_count.load(Ordering::Relaxed)
    }

    fn pop_idle(&self) -> Option<Pooled> {
        let p = self.idle.pop()?;
        self.idle_count.fetch_sub(1, Ordering::Relaxed);
        Some(p)
    }

    /// An HTTP/1.1 connection ready for one request: an idle one if any is still open, else a
    /// new one when `max_connections` allows, else the request waits as pending (refused when
    /// `max_pending_requests` are already waiting). The flag tells whether it was reused.
    pub async fn checkout_http1(
        &self,
        connect_timeout: Duration,
        priority: Priority,
        stats: &ClusterStats,
    ) -> Result<(Pooled, bool), ConnectError> {
        loop {
            while let Some(mut c) = self.pop_idle() {
                if c.sender.is_closed() {
                    continue;
                }
                // Idle connections have finished their last response; `ready` only waits for
                // hyper to notice. An error means the peer closed it meanwhile.
                if c.sender.ready().await.is_ok() {
                    c.state.idle_since.store(0, Ordering::Relaxed);
                    return Ok((c, true));
                }
            }
            if let Some(slot) = self.breakers.connection(priority) {
                return Ok((self.connect_http1_slot(connect_timeout, slot).await?, false));
            }
            stats.upstream_cx_overflow.fetch_add(1, Ordering::Relaxed);
            if self.open.load(Ordering::Relaxed) == 0 {
                // Over max_connections, but this host has no connection at all: open one
                // anyway, or idle connections to other hosts would starve it.
                let slot = self.breakers.connection_forced(priority);
                return Ok((self.connect_http1_slot(connect_timeout, slot).await?, false));
            }
            let Some(_pending) = self.breakers.pending(priority) else {
                return Err(ConnectError::Overflow);
            };
            stats
                .upstream_rq_pending_total
                .fetch_add(1, Ordering::Relaxed);
            let notified = self.breakers.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let t = &self.breakers.levels[priority as usize];
            if self.idle() == 0 && t.connections.load(Ordering::Relaxed) >= t.max_connections {
                notified.await;
            }
        }
    }

    /// A fresh HTTP/1.1 connection (also used for upgrades, which never go back to the pool).
    pub async fn connect_http1(
        &self,
        connect_timeout: Duration,
        priority: Priority,
    ) -> Result<Pooled, ConnectError> {
        let slot = self
            .breakers
            .connection(priority)
            .ok_or(ConnectError::Overflow)?;
        self.connect_http1_slot(connect_timeout, slot).await
    }

    async fn connect_http1_slot(
        &self,
        connect_timeout: Duration,
        slot: Slot,
    ) -> Result<Pooled, ConnectError> {
        // Counted from the connect on, so that concurrent requests see it.
        let open = OpenGuard::new(&self.open);
        let io = self.connect_tcp(connect_timeout).await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|source| ConnectError::Handshake {
                addr: self.addr,
                source,
            })?;
        let state = Arc::new(ConnState::default());
        let task_state = Arc::clone(&state);
        let idle_timeout = self.opts.idle_timeout;
        tokio::spawn(async move {
            // The connection holds its `max_connections` slot until it closes.
            let _slot = slot;
            let _open = open;
            let conn = conn.with_upgrades();
            tokio::pin!(conn);
            let Some(timeout) = idle_timeout else {
                if let Err(e) = conn.await {
                    tracing::debug!("upstream HTTP/1.1 connection ended: {e}");
                }
                return;
            };
            let limit = timeout.as_millis() as u64;
            loop {
                let since = task_state.idle_since.load(Ordering::Relaxed);
                let wait = if since == 0 {
                    limit
                } else {
                    let idle = now_ms().saturating_sub(since);
                    if idle >= limit {
                        tracing::debug!("upstream HTTP/1.1 connection idle for {idle} ms: closed");
                        return;
                    }
                    limit - idle
                };
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!("upstream HTTP/1.1 connection ended: {e}");
                        }
                        return;
                    }
                    _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                }
            }
        });
        Ok(Pooled {
            sender,
            uses: 0,
            state,
        })
    }

    /// Gives an HTTP/1.1 connection back after its response completed. It is closed instead
    /// when it reached `max_requests_per_connection` or the idle queue is full.
    pub fn put(&self, mut conn: Pooled) {
        conn.uses += 1;
        if conn.sender.is_closed()
            || self
                .opts
                .max_requests_per_connection
                .is_some_and(|m| conn.uses >= m)
        {
            return;
        }
        if self.idle_count.fetch_add(1, Ordering::Relaxed) >= self.opts.max_idle {
            self.idle_count.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        conn.state.idle_since.store(now_ms(), Ordering::Relaxed);
        self.idle.push(conn);
        self.breakers.wake_pending();
    }

    /// The shared HTTP/2 connection, opened (again) when needed.
    pub async fn http2(
        &self,
        connect_timeout: Duration,
        priority: Priority,
    ) -> Result<http2::SendRequest<Body>, ConnectError> {
        if let Some(s) = self.h2.load().as_ref()
            && !s.is_closed()
        {
            let mut s = http2::SendRequest::clone(s);
            if s.ready().await.is_ok() {
                return Ok(s);
            }
        }
        let slot = self
            .breakers
            .connection(priority)
            .ok_or(ConnectError::Overflow)?;
        let open = OpenGuard::new(&self.open);
        let io = self.connect_tcp(connect_timeout).await?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .handshake(io)
            .await
            .map_err(|source| ConnectError::Handshake {
                addr: self.addr,
                source,
            })?;
        tokio::spawn(async move {
            let _slot = slot;
            let _open = open;
            if let Err(e) = conn.await {
                tracing::debug!("upstream HTTP/2 connection ended: {e}");
            }
        });
        self.h2.store(Some(Arc::new(sender.clone())));
        Ok(sender)
    }

    /// A connection with `TCP_NODELAY`, through the endpoint's transport socket (TLS
    /// handshake included), for the HTTP pools.
    pub async fn connect_tcp(
        &self,
        connect_timeout: Duration,
    ) -> Result<TokioIo<UpstreamStream>, ConnectError> {
        Ok(TokioIo::new(self.connect_stream(connect_timeout).await?))
    }

    /// A connection through the endpoint's transport socket (HTTP pools and `tcp_proxy`).
    pub async fn connect_stream(
        &self,
        connect_timeout: Duration,
    ) -> Result<UpstreamStream, ConnectError> {
        self.connections_opened.fetch_add(1, Ordering::Relaxed);
        let tcp = connect(self.addr, connect_timeout).await?;
        match &self.tls {
            None => Ok(UpstreamStream::Plain(tcp)),
            Some(tls) => match tls.connect(tcp, self.addr).await {
                Ok(s) => Ok(UpstreamStream::Tls(Box::new(s))),
                Err(source) => Err(ConnectError::Tls {
                    addr: self.addr,
                    source,
                }),
            },
        }
    }
}

/// Counts an open connection of a pool until its task ends.
struct OpenGuard(Arc<AtomicU64>);

impl OpenGuard {
    fn new(open: &Arc<AtomicU64>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(Arc::clone(open))
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
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
