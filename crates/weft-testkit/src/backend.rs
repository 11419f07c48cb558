//! In-process HTTP backends that say which workload answered.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// How a backend answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behavior {
    /// 200 with its name.
    Ok,
    /// `status` for the first `count` requests, then 200.
    FailFirst {
        /// How many requests fail.
        count: u64,
        /// Their status.
        status: u16,
    },
    /// Always this status.
    Always(u16),
    /// Calls this service (port 9080) through the workload's own sidecar with the same path
    /// and `end-user` header, as bookinfo's productpage calls reviews, and answers
    /// `NAME -> ANSWER` with the called service's status.
    Calls(&'static str),
}

/// A request a backend received.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The Host (`:authority`) header.
    pub host: String,
    /// The path and query.
    pub path: String,
    /// Every header.
    pub headers: http::HeaderMap,
}

struct State {
    name: String,
    behavior: Behavior,
    /// The workload's sidecar outbound listener, for [`Behavior::Calls`].
    egress: Option<SocketAddr>,
    count: AtomicU64,
    seen: Mutex<Vec<Seen>>,
}

/// A backend: an HTTP server on 127.0.0.1 answering with its name (body and `x-served-by`).
/// It stops when dropped.
pub struct Backend {
    /// Its name (`reviews-v2`).
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .finish()
    }
}

async fn handle(state: Arc<State>, req: http::Request<Incoming>) -> http::Response<Full<Bytes>> {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let seen = Seen {
        host,
        path: req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: req.headers().clone(),
    };
    let _ = req.into_body().collect().await;
    if let Behavior::Calls(service) = state.behavior {
        return call_through(&state, service, &seen).await;
    }
    let n = state.count.fetch_add(1, Ordering::SeqCst);
    state
        .seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(seen);
    let status = match state.behavior {
        Behavior::Ok => 200,
        Behavior::FailFirst { count, status } if n < count => status,
        Behavior::FailFirst { .. } => 200,
        Behavior::Always(s) => s,
        Behavior::Calls(_) => 200,
    };
    let mut resp = http::Response::new(Full::new(Bytes::from(state.name.clone())));
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    if let Ok(v) = http::HeaderValue::from_str(&state.name) {
        resp.headers_mut().insert("x-served-by", v);
    }
    resp
}

/// [`Behavior::Calls`]: the upstream call through the workload's sidecar.
async fn call_through(state: &State, service: &str, seen: &Seen) -> http::Response<Full<Bytes>> {
    state.count.fetch_add(1, Ordering::SeqCst);
    state
        .seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(seen.clone());
    let user = seen
        .headers
        .get("end-user")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let headers: Vec<(&str, &str)> = user.iter().map(|u| ("end-user", u.as_str())).collect();
    let (status, body) = match state.egress {
        None => (500, "no sidecar to call through".to_string()),
        Some(egress) => match crate::http::get(
            egress,
            &format!("{service}:9080"),
            &seen.path,
            &headers,
            std::time::Duration::from_secs(10),
        )
        .await
        {
            Ok(r) => (r.status, r.body),
            Err(e) => (502, format!("{e:#}")),
        },
    };
    let mut resp = http::Response::new(Full::new(Bytes::from(format!("{} -> {body}", state.name))));
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    resp
}

impl Backend {
    /// Starts a backend on `127.0.0.1:0` on the current tokio runtime.
    pub async fn start(name: &str, behavior: Behavior) -> anyhow::Result<Backend> {
        Backend::start_with_sidecar(name, behavior, None).await
    }

    /// Starts a backend that knows its sidecar's outbound listener (for [`Behavior::Calls`]).
    pub async fn start_with_sidecar(
        name: &str,
        behavior: Behavior,
        egress: Option<SocketAddr>,
    ) -> anyhow::Result<Backend> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            name: name.to_string(),
            behavior,
            egress,
            count: AtomicU64::new(0),
            seen: Mutex::new(Vec::new()),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(handle(st, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(Backend {
            name: name.to_string(),
            addr,
            state,
            task,
        })
    }

    /// How many requests it received.
    pub fn hits(&self) -> usize {
        self.state
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The requests it received.
    pub fn seen(&self) -> Vec<Seen> {
        self.state
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Forgets the requests received (the failure count of [`Behavior::FailFirst`] too).
    pub fn reset(&self) {
        self.state
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.state.count.store(0, Ordering::SeqCst);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}
