//! Helpers for the bookinfo tests: a plain hyper client, recording taps, slow and dead backends,
//! and a whole bookinfo started in-process on 127.0.0.1:0.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use weft_demo::Upstream;
use weft_demo::client;
use weft_demo::details::{self, DetailsConfig};
use weft_demo::productpage::{self, ProductpageConfig};
use weft_demo::ratings::{self, RatingsConfig};
use weft_demo::reviews::{self, ReviewsConfig, ReviewsVersion};
use weft_demo::server::{self, Server};

/// 127.0.0.1:0.
pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// An answer read by [`request`].
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request with hyper's client, on its own connection.
pub async fn request(method: Method, url: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let uri: Uri = url.parse().expect("url");
    let authority = uri.authority().expect("authority").clone();
    let stream = TcpStream::connect(authority.as_str())
        .await
        .expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header(HOST, authority.as_str());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(30), sender.send_request(req))
        .await
        .expect("answer in time")
        .expect("answer");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Resp {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).expect("utf-8"),
    }
}

pub async fn get(url: &str) -> Resp {
    request(Method::GET, url, &[], "").await
}

pub async fn get_with(url: &str, headers: &[(&str, &str)]) -> Resp {
    request(Method::GET, url, headers, "").await
}

/// What a tap saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub headers: HeaderMap,
}

/// A recording proxy in front of a service: records each request, forwards it (all its headers
/// but the hop-by-hop ones; the target's Host), and answers what the service answered.
pub struct Tap {
    pub server: Server,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Tap {
    pub async fn start(target: Upstream) -> Tap {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = seen.clone();
        let target = Arc::new(target);
        let server = server::serve("tap", any_port(), move |req| {
            let record = record.clone();
            let target = target.clone();
            async move {
                let path = req.uri().path().to_owned();
                let inbound = req.headers().clone();
                record.lock().unwrap().push(Seen {
                    path: path.clone(),
                    headers: inbound.clone(),
                });
                let mut forwarded = inbound;
                for name in [HOST, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING] {
                    forwarded.remove(name);
                }
                match client::get(&target, &path, &forwarded, Duration::from_secs(30)).await {
                    Ok(reply) => server::raw_json(reply.status, reply.body),
                    Err(err) => server::text(StatusCode::BAD_GATEWAY, err.to_string()),
                }
            }
        })
        .await
        .expect("tap");
        Tap { server, seen }
    }

    /// An upstream to reach the tap, with `host` as Host.
    pub fn upstream(&self, host: &str) -> Upstream {
        Upstream::at(self.server.addr(), host).unwrap()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A backend that waits `delay`, then answers `status` and `body`; counts its requests.
pub struct Fake {
    pub server: Server,
    pub hits: Arc<AtomicUsize>,
}

impl Fake {
    pub async fn start(delay: Duration, status: StatusCode, body: &'static str) -> Fake {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let server = server::serve("fake", any_port(), move |_req| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(delay).await;
                server::raw_json(status, Bytes::from_static(body.as_bytes()))
            }
        })
        .await
        .expect("fake");
        Fake { server, hits }
    }

    pub fn upstream(&self, host: &str) -> Upstream {
        Upstream::at(self.server.addr(), host).unwrap()
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// An address nothing listens on.
pub async fn dead(host: &str) -> Upstream {
    let listener = tokio::net::TcpListener::bind(any_port()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    Upstream::at(addr, host).unwrap()
}

/// All of bookinfo, each backend behind a [`Tap`] that records what it is sent.
pub struct Bookinfo {
    pub productpage: Server,
    pub details: Server,
    pub reviews: Server,
    pub ratings: Server,
    pub details_tap: Tap,
    pub reviews_tap: Tap,
    pub ratings_tap: Tap,
}

impl Bookinfo {
    pub async fn start(version: ReviewsVersion) -> Bookinfo {
        let ratings = ratings::run(RatingsConfig::new(any_port())).await.unwrap();
        let ratings_tap = Tap::start(Upstream::at(ratings.addr(), "ratings:9080").unwrap()).await;
        let details = details::run(DetailsConfig::new(any_port())).await.unwrap();
        let details_tap = Tap::start(Upstream::at(details.addr(), "details:9080").unwrap()).await;
        let mut config =
            ReviewsConfig::new(any_port(), version, ratings_tap.upstream("ratings:9080"));
        config.instance = format!("reviews-{version}-testhost");
        config.cluster = "test-cluster".into();
        let reviews = reviews::run(config).await.unwrap();
        let reviews_tap = Tap::start(Upstream::at(reviews.addr(), "reviews:9080").unwrap()).await;
        let productpage = productpage::run(ProductpageConfig::new(
            any_port(),
            details_tap.upstream("details:9080"),
            reviews_tap.upstream("reviews:9080"),
            ratings_tap.upstream("ratings:9080"),
        ))
        .await
        .unwrap();
        Bookinfo {
            productpage,
            details,
            reviews,
            ratings,
            details_tap,
            reviews_tap,
            ratings_tap,
        }
    }

    /// `http://PRODUCTPAGE` + path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.productpage.url())
    }
}

/// Starts a productpage with the given backends and bookinfo's timeouts, changed by `tweak`.
pub async fn productpage_with(
    details: Upstream,
    reviews: Upstream,
    ratings: Upstream,
    tweak: impl FnOnce(&mut ProductpageConfig),
) -> Server {
    let mut config = ProductpageConfig::new(any_port(), details, reviews, ratings);
    tweak(&mut config);
    productpage::run(config).await.unwrap()
}

/// Starts a reviews service of `version` calling `ratings`.
pub async fn reviews_with(
    version: ReviewsVersion,
    ratings: Upstream,
    tweak: impl FnOnce(&mut ReviewsConfig),
) -> Server {
    let mut config = ReviewsConfig::new(any_port(), version, ratings);
    config.instance = format!("reviews-{version}-testhost");
    tweak(&mut config);
    reviews::run(config).await.unwrap()
}

pub async fn details_server() -> Server {
    details::run(DetailsConfig::new(any_port())).await.unwrap()
}

pub async fn ratings_server() -> Server {
    ratings::run(RatingsConfig::new(any_port())).await.unwrap()
}
