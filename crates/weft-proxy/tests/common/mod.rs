//! Test harness: real hyper backends that echo what they saw, a proxy started in-process from
//! YAML, and real clients.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a backend saw, as it echoes it back in JSON.
#[derive(Debug)]
pub struct Echo {
    pub backend: String,
    pub method: String,
    pub path: String,
    pub version: String,
    pub headers: BTreeMap<String, Vec<String>>,
    pub body_len: usize,
    pub body_sum: u64,
}

impl Echo {
    pub fn parse(body: &[u8]) -> Echo {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_else(|e| {
            panic!(
                "backend echo is JSON ({e}): {}",
                String::from_utf8_lossy(body)
            )
        });
        let mut headers = BTreeMap::new();
        for (k, vals) in v["headers"].as_object().expect("headers") {
            headers.insert(
                k.clone(),
                vals.as_array()
                    .expect("values")
                    .iter()
                    .map(|x| x.as_str().unwrap_or("").to_owned())
                    .collect(),
            );
        }
        Echo {
            backend: v["backend"].as_str().unwrap_or("").into(),
            method: v["method"].as_str().unwrap_or("").into(),
            path: v["path"].as_str().unwrap_or("").into(),
            version: v["version"].as_str().unwrap_or("").into(),
            headers,
            body_len: v["body_len"].as_u64().unwrap_or(0) as usize,
            body_sum: v["body_sum"].as_u64().unwrap_or(0),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }
}

/// A simple checksum to compare bodies without keeping them.
pub fn checksum(b: &[u8]) -> u64 {
    b.iter().enumerate().fold(0u64, |acc, (i, x)| {
        acc.wrapping_add((*x as u64).wrapping_mul(i as u64 % 251 + 1))
    })
}

/// A running echo backend.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    /// TCP connections accepted.
    pub connections: Arc<AtomicUsize>,
    /// Requests served.
    pub requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn query<'a>(uri: &'a http::Uri, name: &str) -> Option<&'a str> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> BoxBody {
    Full::new(b.into()).boxed()
}

async fn backend_handle(
    name: Arc<str>,
    requests: Arc<AtomicUsize>,
    mut req: Request<Incoming>,
) -> Response<BoxBody> {
    requests.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_owned();
    if let Some(ms) = query(req.uri(), "delay_ms").and_then(|v| v.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if path == "/ws" {
        // Echo whatever arrives after the upgrade.
        let up = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = up.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 4096];
                loop {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if io.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            .body(full(Bytes::new()))
            .unwrap();
    }
    if path == "/big" {
        let n: usize = query(req.uri(), "n")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1 << 20);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let chunks = n / chunk.len();
        return Response::builder()
            .header("x-backend", &*name)
            .body(
                Repeat {
                    chunk,
                    left: chunks,
                }
                .boxed(),
            )
            .unwrap();
    }
    let status: u16 = query(req.uri(), "status")
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in req.headers() {
        headers
            .entry(k.as_str().to_owned())
            .or_default()
            .push(v.to_str().unwrap_or("").to_owned());
    }
    let method = req.method().to_string();
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let version = format!("{:?}", req.version());
    let mut len = 0usize;
    let mut sum = 0u64;
    let mut pos = 0u64;
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data() {
            for b in data.iter() {
                sum = sum.wrapping_add((*b as u64).wrapping_mul(pos % 251 + 1));
                pos += 1;
            }
            len += data.len();
        }
    }
    let echo = serde_json::json!({
        "backend": &*name, "method": method, "path": pq, "version": version,
        "headers": headers, "body_len": len, "body_sum": sum,
    });
    let resp = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-backend", &*name)
        .header("x-backend-secret", "hop")
        .header("connection", "x-backend-secret");
    resp.body(full(serde_json::to_vec(&echo).unwrap())).unwrap()
}

/// A streamed body of `left` copies of `chunk` (no content-length: chunked on HTTP/1.1).
struct Repeat {
    chunk: Bytes,
    left: usize,
}

impl http_body::Body for Repeat {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        self.left -= 1;
        std::task::Poll::Ready(Some(Ok(Frame::data(self.chunk.clone()))))
    }
}

impl Backend {
    /// Starts an echo backend speaking HTTP/1.1 and h2c.
    pub async fn start(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (c, r) = (Arc::clone(&connections), Arc::clone(&requests));
        let n: Arc<str> = Arc::from(name);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let (n, r) = (Arc::clone(&n), Arc::clone(&r));
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let (n, r) = (Arc::clone(&n), Arc::clone(&r));
                        async move { Ok::<_, Infallible>(backend_handle(n, r, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Backend {
            name: name.into(),
            addr,
            connections,
            requests,
            task,
        }
    }
}

/// A TCP echo server (for `tcp_proxy`): echoes until the peer half-closes, then sends a final
/// "bye" and closes, so that half-close handling is visible.
pub async fn tcp_echo() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) => {
                            let _ = s.write_all(b"bye").await;
                            let _ = s.shutdown().await;
                            break;
                        }
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
            });
        }
    });
    (addr, task)
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct Got {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn echo(&self) -> Echo {
        Echo::parse(&self.body)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One request on a fresh HTTP/1.1 connection.
pub async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Got {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.unwrap();
    collect(resp).await
}

pub async fn collect(resp: Response<Incoming>) -> Got {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Got {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// `GET http://{host}{path}` over a fresh HTTP/1.1 connection.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Got {
    send(addr, req("GET", host, path, &[])).await
}

pub fn req(method: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

/// A keep-alive HTTP/1.1 client connection.
pub struct H1 {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl H1 {
    pub async fn connect(addr: SocketAddr) -> H1 {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        H1 { sender }
    }
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Got {
        self.sender.ready().await.unwrap();
        collect(self.sender.send_request(req).await.unwrap()).await
    }
    pub async fn get(&mut self, host: &str, path: &str) -> Got {
        self.send(req("GET", host, path, &[])).await
    }
}

/// An h2c (prior knowledge) client connection.
pub struct H2 {
    sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
}

impl H2 {
    pub async fn connect(addr: SocketAddr) -> H2 {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        H2 { sender }
    }
    pub async fn get(&mut self, authority: &str, path: &str) -> Got {
        let req = Request::builder()
            .uri(format!("http://{authority}{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        self.sender.ready().await.unwrap();
        collect(self.sender.send_request(req).await.unwrap()).await
    }
}

/// Starts the proxy in-process with an admin port on 127.0.0.1:0.
pub fn start(yaml: &str) -> weft_proxy::ProxyHandle {
    start_with(yaml, weft_proxy::Options::default())
}

pub fn start_with(yaml: &str, mut options: weft_proxy::Options) -> weft_proxy::ProxyHandle {
    let bootstrap =
        weft_proxy::bootstrap::parse(yaml, "test").unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    if options.admin_addr.is_none() {
        options.admin_addr = Some("127.0.0.1:0".parse().unwrap());
    }
    weft_proxy::run(&bootstrap, options).unwrap_or_else(|e| panic!("{e}"))
}

/// A STATIC cluster in YAML.
pub fn cluster(name: &str, endpoints: &[SocketAddr], extra: &str) -> String {
    let mut eps = String::new();
    for a in endpoints {
        eps.push_str(&format!(
            "        - endpoint: {{address: {{socket_address: {{address: {}, port_value: {}}}}}}}\n",
            a.ip(),
            a.port()
        ));
    }
    format!(
        "  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n{extra}    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n{eps}"
    )
}

/// A bootstrap with one HTTP listener named `http` on port 0, the given `virtual_hosts` YAML
/// (indented for the route_config) and clusters.
pub fn http_bootstrap(route_config_extra: &str, virtual_hosts: &str, clusters: &str) -> String {
    format!(
        r#"
static_resources:
  listeners:
  - name: http
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          upgrade_configs: [{{upgrade_type: websocket}}]
          route_config:
            name: local
{route_config_extra}            virtual_hosts:
{virtual_hosts}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{clusters}
"#
    )
}

/// Admin GET.
pub async fn admin_get(h: &weft_proxy::ProxyHandle, path: &str) -> Got {
    get(h.admin_addr().expect("admin"), "admin", path).await
}

/// Admin POST.
pub async fn admin_post(h: &weft_proxy::ProxyHandle, path: &str) -> Got {
    send(
        h.admin_addr().expect("admin"),
        req("POST", "admin", path, &[]),
    )
    .await
}

/// Collects all bytes until EOF.
pub async fn read_to_end(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    out
}

/// Shared log of levels set through `/logging`.
#[derive(Default)]
pub struct RecordingLog(pub Mutex<Vec<String>>);

impl weft_proxy::LogControl for RecordingLog {
    fn set_level(&self, level: &str) -> Result<(), String> {
        if !["trace", "debug", "info", "warn", "error", "off"].contains(&level) {
            return Err(format!("unknown level {level}"));
        }
        self.0.lock().unwrap().push(level.to_owned());
        Ok(())
    }
}

/// A request as a scripted backend saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// When the request head arrived (before its body was read).
    pub arrived: std::time::Instant,
    pub method: String,
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What a scripted backend answers.
pub enum Reply {
    /// A status with headers and a body.
    Status(u16, Vec<(&'static str, String)>, Bytes),
    /// Close the connection without answering (the proxy sees a reset).
    Reset,
    /// Wait, then answer.
    After(Duration, Box<Reply>),
    /// A gRPC response whose status is in the trailers (needs h2 to carry trailers).
    GrpcTrailers(u32),
    /// Headers, some body, then a reset mid-body.
    ResetMidBody,
    /// Headers, then a body that stalls for the duration before it ends.
    StallBody(Duration),
    /// A gRPC server stream: a message, a pause, another message, then OK in the trailers.
    GrpcStream(Duration),
}

pub fn ok() -> Reply {
    Reply::Status(200, vec![], Bytes::from_static(b"ok"))
}

pub fn status(code: u16) -> Reply {
    Reply::Status(code, vec![], Bytes::new())
}

pub type Script = Arc<dyn Fn(usize, &Seen) -> Reply + Send + Sync>;

/// A backend that answers request number n (0-based, counted across connections) with
/// `script(n, request)`, and records every request it saw.
pub struct Scripted {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub connections: Arc<AtomicUsize>,
    /// Connections that have ended.
    pub closed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Frames(
    std::collections::VecDeque<(Duration, Result<Frame<Bytes>, std::io::Error>)>,
    Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        loop {
            if let Some(s) = self.1.as_mut() {
                if s.as_mut().poll(cx).is_pending() {
                    return std::task::Poll::Pending;
                }
                self.1 = None;
                let Some((_, f)) = self.0.pop_front() else {
                    return std::task::Poll::Ready(None);
                };
                return std::task::Poll::Ready(Some(f));
            }
            let Some((d, _)) = self.0.front() else {
                return std::task::Poll::Ready(None);
            };
            let d = *d;
            if d.is_zero() {
                let Some((_, f)) = self.0.pop_front() else {
                    return std::task::Poll::Ready(None);
                };
                return std::task::Poll::Ready(Some(f));
            }
            self.1 = Some(Box::pin(tokio::time::sleep(d)));
        }
    }
}

type ScriptBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

fn reply_to(
    r: Reply,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Response<ScriptBody>, std::io::Error>> + Send>,
> {
    Box::pin(async move {
        match r {
            Reply::Status(code, headers, body) => {
                let mut b = Response::builder().status(code);
                for (k, v) in headers {
                    b = b.header(k, v);
                }
                Ok(b.body(Full::new(body).map_err(|e| match e {}).boxed())
                    .unwrap())
            }
            Reply::Reset => Err(std::io::Error::other("scripted reset")),
            Reply::After(d, r) => {
                tokio::time::sleep(d).await;
                reply_to(*r).await
            }
            Reply::GrpcTrailers(code) => {
                let mut t = http::HeaderMap::new();
                t.insert("grpc-status", code.into());
                let frames = Frames(
                    vec![
                        (
                            Duration::ZERO,
                            Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
                        ),
                        (Duration::ZERO, Ok(Frame::trailers(t))),
                    ]
                    .into(),
                    None,
                );
                Ok(Response::builder()
                    .header("content-type", "application/grpc")
                    .body(frames.boxed())
                    .unwrap())
            }
            Reply::ResetMidBody => {
                let frames = Frames(
                    vec![
                        (
                            Duration::ZERO,
                            Ok(Frame::data(Bytes::from(vec![b'a'; 1000]))),
                        ),
                        (
                            Duration::from_millis(50),
                            Err(std::io::Error::other("mid-body reset")),
                        ),
                    ]
                    .into(),
                    None,
                );
                Ok(Response::builder()
                    .header("content-length", "100000")
                    .body(frames.boxed())
                    .unwrap())
            }
            Reply::GrpcStream(d) => {
                let mut t = http::HeaderMap::new();
                t.insert("grpc-status", 0.into());
                let frames = Frames(
                    vec![
                        (
                            Duration::ZERO,
                            Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\x01a"))),
                        ),
                        (d, Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\x01b")))),
                        (Duration::ZERO, Ok(Frame::trailers(t))),
                    ]
                    .into(),
                    None,
                );
                Ok(Response::builder()
                    .header("content-type", "application/grpc")
                    .body(frames.boxed())
                    .unwrap())
            }
            Reply::StallBody(d) => {
                let frames = Frames(
                    vec![
                        (
                            Duration::ZERO,
                            Ok(Frame::data(Bytes::from_static(b"first"))),
                        ),
                        (d, Ok(Frame::data(Bytes::from_static(b"late")))),
                    ]
                    .into(),
                    None,
                );
                Ok(Response::builder().body(frames.boxed()).unwrap())
            }
        }
    })
}

impl Scripted {
    pub async fn start(script: impl Fn(usize, &Seen) -> Reply + Send + Sync + 'static) -> Scripted {
        let script: Script = Arc::new(script);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let counter = Arc::new(AtomicUsize::new(0));
        let (s2, c2, cl2) = (
            Arc::clone(&seen),
            Arc::clone(&connections),
            Arc::clone(&closed),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                c2.fetch_add(1, Ordering::SeqCst);
                let (script, seen, counter, closed) = (
                    Arc::clone(&script),
                    Arc::clone(&s2),
                    Arc::clone(&counter),
                    Arc::clone(&cl2),
                );
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (script, seen, counter) =
                            (Arc::clone(&script), Arc::clone(&seen), Arc::clone(&counter));
                        async move {
                            let arrived = std::time::Instant::now();
                            let (parts, body) = req.into_parts();
                            // Paths under /early are answered before their body is read.
                            let body = if parts.uri.path().starts_with("/early") {
                                drop(body);
                                Bytes::new()
                            } else {
                                body.collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default()
                            };
                            let s = Seen {
                                arrived,
                                method: parts.method.to_string(),
                                path: parts
                                    .uri
                                    .path_and_query()
                                    .map(|p| p.to_string())
                                    .unwrap_or_default(),
                                headers: parts.headers,
                                body,
                            };
                            let n = counter.fetch_add(1, Ordering::SeqCst);
                            let reply = script(n, &s);
                            seen.lock().unwrap().push(s);
                            reply_to(reply).await
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                    closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Scripted {
            addr,
            seen,
            connections,
            closed,
            task,
        }
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A port nobody listens on.
pub fn dead_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A bootstrap with one HTTP listener whose connection manager has `hcm_extra` settings and
/// `filters` (YAML list items, indented for http_filters) before the router.
pub fn http_bootstrap_with(
    hcm_extra: &str,
    filters: &str,
    virtual_hosts: &str,
    clusters: &str,
) -> String {
    format!(
        r#"
static_resources:
  listeners:
  - name: http
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
{hcm_extra}          route_config:
            name: local
            virtual_hosts:
{virtual_hosts}
          http_filters:
{filters}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{clusters}
"#
    )
}

/// A stat's value from `/stats`, 0 when absent.
pub async fn stat(h: &weft_proxy::ProxyHandle, name: &str) -> u64 {
    let text = admin_get(h, "/stats").await.text();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
