//! The HTTP server shared by the four services, and the handle [`run`](crate::details::run)
//! functions return.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

/// The body of every response the services send.
pub type Body = Full<Bytes>;

/// A running service: its bound address, and a way to stop it.
///
/// Dropping the handle stops the service too: it stops accepting and closes its connections.
#[derive(Debug)]
pub struct Server {
    name: &'static str,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    /// The service's name (`productpage`, `details`, `reviews` or `ratings`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The address the service listens on (the real port when it was asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, the base URL to reach the service directly.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, closes the open connections and waits until that is done.
    pub async fn shutdown(mut self) {
        self.stop.take();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Waits until the service stops by itself (it only does when its accept loop fails hard),
    /// or forever.
    pub async fn wait(mut self) {
        if let Some(task) = self.task.as_mut() {
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Dropping the sender ends the accept loop, which aborts its connections.
        self.stop.take();
    }
}

/// Binds `addr` and serves each request with `handler` until the returned [`Server`] is shut
/// down or dropped. HTTP/1.1 and HTTP/2 (prior knowledge) are both accepted.
pub async fn serve<F, Fut>(
    name: &'static str,
    addr: SocketAddr,
    handler: F,
) -> std::io::Result<Server>
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(accept_loop(name, listener, Arc::new(handler), stop_rx));
    tracing::info!(service = name, %addr, "listening");
    Ok(Server {
        name,
        addr,
        stop: Some(stop_tx),
        task: Some(task),
    })
}

async fn accept_loop<F, Fut>(
    name: &'static str,
    listener: TcpListener,
    handler: Arc<F>,
    mut stop: oneshot::Receiver<()>,
) where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    let handler = handler.clone();
                    conns.spawn(async move {
                        let svc = service_fn(move |req: Request<Incoming>| {
                            let handler = handler.clone();
                            async move {
                                let method = req.method().clone();
                                let path = req.uri().path().to_owned();
                                let resp = handler(req).await;
                                tracing::debug!(service = name, %method, path, status = resp.status().as_u16(), "request");
                                Ok::<_, Infallible>(resp)
                            }
                        });
                        let _ = auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
                Err(err) => {
                    tracing::warn!(service = name, %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    conns.shutdown().await;
}

/// Reads a request body of at most `limit` bytes.
pub async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, Response<Body>> {
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(_) => Err(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large or broken\n",
        )),
    }
}

/// A response with a body and a content type.
pub fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A JSON response.
pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => respond(status, "application/json", body),
        Err(err) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode JSON: {err}\n"),
        ),
    }
}

/// A JSON response whose body is already encoded (passed through from an upstream).
pub fn raw_json(status: StatusCode, body: Bytes) -> Response<Body> {
    respond(status, "application/json", body)
}

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", body)
}

/// An HTML response.
pub fn html(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    respond(status, "text/html; charset=utf-8", body)
}

/// `404 Not Found`, as JSON (the services' API style).
pub fn not_found() -> Response<Body> {
    json(
        StatusCode::NOT_FOUND,
        &serde_json::json!({ "error": "not found" }),
    )
}

/// `405 Method Not Allowed`.
pub fn method_not_allowed() -> Response<Body> {
    json(
        StatusCode::METHOD_NOT_ALLOWED,
        &serde_json::json!({ "error": "method not allowed" }),
    )
}

/// The segments of a path after `prefix`, or `None` when the path does not start with it.
/// `/details/0` with prefix `/details/` gives `Some("0")`.
pub fn strip<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    path.strip_prefix(prefix)
        .filter(|rest| !rest.is_empty() && !rest.contains('/'))
}
