//! The productpage service: the page people look at, and bookinfo's JSON API.
//!
//! - `GET /productpage`: the HTML page of the book, with its details (from details) and its
//!   reviews (from reviews, which asks ratings), a "Sign in" form, and which reviews instance
//!   answered;
//! - `POST /login` (form field `username`): keeps the user in the cookie `session` and redirects
//!   back; `GET /logout` forgets it;
//! - `GET /api/v1/products`, `/api/v1/products/{id}` (details), `/api/v1/products/{id}/reviews`,
//!   `/api/v1/products/{id}/ratings`: JSON;
//! - `GET /` (an index page) and `GET /health`.
//!
//! Every call to a backend carries the inbound request's [`headers::PROPAGATED`] headers and,
//! when someone is signed in, `end-user: NAME`. Timeouts are bookinfo's: 3 s for details and
//! ratings; 3 s for reviews, tried twice, so that a reviews delay of 7 s shows "Sorry, product
//! reviews are currently unavailable for this book." after about 6 s.

mod html;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, LOCATION, REFERER, SET_COOKIE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use crate::client::{self, Upstream};
use crate::details::BookDetails;
use crate::headers;
use crate::reviews::ProductReviews;
use crate::server::{self, Body, Server};

/// The cookie that keeps the signed-in user.
pub const SESSION_COOKIE: &str = "session";

/// Shown when details cannot be had.
pub const DETAILS_UNAVAILABLE: &str =
    "Sorry, product details are currently unavailable for this book.";
/// Shown when reviews cannot be had.
pub const REVIEWS_UNAVAILABLE: &str =
    "Sorry, product reviews are currently unavailable for this book.";
/// Answered by the ratings API when ratings cannot be had.
pub const RATINGS_UNAVAILABLE: &str =
    "Sorry, product ratings are currently unavailable for this book.";

/// How to run the productpage service.
#[derive(Clone, Debug)]
pub struct ProductpageConfig {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The details service.
    pub details: Upstream,
    /// The reviews service.
    pub reviews: Upstream,
    /// The ratings service (for `/api/v1/products/{id}/ratings`).
    pub ratings: Upstream,
    /// How long to wait for details (3 s).
    pub details_timeout: Duration,
    /// How long to wait for reviews, each try (3 s).
    pub reviews_timeout: Duration,
    /// How many times to try reviews (2: bookinfo retries once).
    pub reviews_attempts: u32,
    /// How long to wait for ratings (3 s).
    pub ratings_timeout: Duration,
}

impl ProductpageConfig {
    /// A productpage listening on `listen` and calling the three backends, with bookinfo's
    /// timeouts.
    pub fn new(
        listen: SocketAddr,
        details: Upstream,
        reviews: Upstream,
        ratings: Upstream,
    ) -> Self {
        ProductpageConfig {
            listen,
            details,
            reviews,
            ratings,
            details_timeout: Duration::from_secs(3),
            reviews_timeout: Duration::from_secs(3),
            reviews_attempts: 2,
            ratings_timeout: Duration::from_secs(3),
        }
    }
}

/// A product, as `/api/v1/products` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// The product id.
    pub id: u64,
    /// The title.
    pub title: String,
    /// A summary, as HTML.
    #[serde(rename = "descriptionHtml")]
    pub description_html: String,
}

/// The products bookinfo sells: one.
pub fn products() -> Vec<Product> {
    vec![Product {
        id: crate::PRODUCT_ID,
        title: "The Comedy of Errors".into(),
        description_html:
            "<b>William Shakespeare</b>'s shortest and most farcical comedy: two pairs \
            of identical twins, separated at birth, turn one day in Ephesus into a string of \
            mistaken identities, wrongful arrests and slapstick, full of puns and word play."
                .into(),
    }]
}

/// Starts the productpage service.
pub async fn run(config: ProductpageConfig) -> std::io::Result<Server> {
    let config = Arc::new(config);
    server::serve("productpage", config.listen, move |req| {
        handle(config.clone(), req)
    })
    .await
}

async fn handle(config: Arc<ProductpageConfig>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    if method == Method::POST {
        return match path.as_str() {
            "/login" => login(req).await,
            "/productpage" | "/" | "/index.html" | "/logout" | "/health" => {
                server::method_not_allowed()
            }
            _ => server::not_found(),
        };
    }
    if method != Method::GET && method != Method::HEAD {
        return server::method_not_allowed();
    }
    let inbound = req.headers();
    match path.as_str() {
        "/" | "/index.html" => server::html(StatusCode::OK, html::index(&config)),
        "/health" => server::text(StatusCode::OK, "Product page is healthy"),
        "/productpage" => productpage(&config, inbound).await,
        "/logout" => logout(inbound),
        "/login" => server::method_not_allowed(),
        "/api/v1/products" => server::json(StatusCode::OK, &products()),
        _ => match api_product(&path) {
            Some((id, what)) => api(&config, inbound, id, what).await,
            None => server::not_found(),
        },
    }
}

/// `/api/v1/products/{id}[/reviews|/ratings]` → (id, "" | "reviews" | "ratings").
fn api_product(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/api/v1/products/")?;
    let (id, what) = rest.split_once('/').unwrap_or((rest, ""));
    (!id.is_empty() && matches!(what, "" | "reviews" | "ratings")).then_some((id, what))
}

async fn api(
    config: &ProductpageConfig,
    inbound: &HeaderMap,
    id: &str,
    what: &str,
) -> Response<Body> {
    let Ok(id) = id.parse::<u64>() else {
        return server::json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({ "error": "please provide numeric product id" }),
        );
    };
    let out = outbound_headers(inbound);
    let (result, unavailable) = match what {
        "reviews" => (fetch_reviews(config, id, &out).await, REVIEWS_UNAVAILABLE),
        "ratings" => (fetch_ratings(config, id, &out).await, RATINGS_UNAVAILABLE),
        _ => (fetch_details(config, id, &out).await, DETAILS_UNAVAILABLE),
    };
    match result {
        Ok(body) => server::raw_json(StatusCode::OK, body),
        Err(status) => server::json(status, &serde_json::json!({ "error": unavailable })),
    }
}

async fn productpage(config: &ProductpageConfig, inbound: &HeaderMap) -> Response<Body> {
    let user = session_user(inbound);
    let out = outbound_headers(inbound);
    let product = products().into_iter().next().expect("one product");
    let (details, reviews) = tokio::join!(
        fetch_details(config, product.id, &out),
        fetch_reviews(config, product.id, &out)
    );
    let details = details
        .ok()
        .and_then(|body| serde_json::from_slice::<BookDetails>(&body).ok())
        .ok_or(DETAILS_UNAVAILABLE);
    let reviews = reviews
        .ok()
        .and_then(|body| serde_json::from_slice::<ProductReviews>(&body).ok())
        .ok_or(REVIEWS_UNAVAILABLE);
    let page = html::Page {
        user: user.as_deref(),
        product: &product,
        details: details.as_ref().map_err(|e| *e),
        reviews: reviews.as_ref().map_err(|e| *e),
    };
    server::html(StatusCode::OK, html::productpage(&page))
}

/// The headers for a call to a backend: the propagated ones, and `end-user` when signed in.
fn outbound_headers(inbound: &HeaderMap) -> HeaderMap {
    let mut out = headers::propagate(inbound);
    if let Some(user) = session_user(inbound)
        && let Ok(value) = HeaderValue::from_bytes(user.as_bytes())
    {
        out.insert(headers::END_USER, value);
    }
    out
}

/// The signed-in user, from the `session` cookie.
pub fn session_user(inbound: &HeaderMap) -> Option<String> {
    headers::cookie(inbound, SESSION_COOKIE)
        .map(|v| percent_decode(&v, false))
        .filter(|u| !u.is_empty())
}

async fn fetch_details(
    config: &ProductpageConfig,
    id: u64,
    out: &HeaderMap,
) -> Result<Bytes, StatusCode> {
    fetch(
        &config.details,
        &format!("/details/{id}"),
        out,
        config.details_timeout,
        1,
    )
    .await
}

async fn fetch_reviews(
    config: &ProductpageConfig,
    id: u64,
    out: &HeaderMap,
) -> Result<Bytes, StatusCode> {
    let attempts = config.reviews_attempts.max(1);
    fetch(
        &config.reviews,
        &format!("/reviews/{id}"),
        out,
        config.reviews_timeout,
        attempts,
    )
    .await
}

async fn fetch_ratings(
    config: &ProductpageConfig,
    id: u64,
    out: &HeaderMap,
) -> Result<Bytes, StatusCode> {
    fetch(
        &config.ratings,
        &format!("/ratings/{id}"),
        out,
        config.ratings_timeout,
        1,
    )
    .await
}

/// The body of a `200` answer, or the status of the last failed try (500 when there was no
/// answer at all), as bookinfo's productpage reports them.
async fn fetch(
    upstream: &Upstream,
    path: &str,
    out: &HeaderMap,
    timeout: Duration,
    attempts: u32,
) -> Result<Bytes, StatusCode> {
    let mut status = StatusCode::INTERNAL_SERVER_ERROR;
    for attempt in 1..=attempts {
        match client::get(upstream, path, out, timeout).await {
            Ok(reply) if reply.status == StatusCode::OK => return Ok(reply.body),
            Ok(reply) => {
                tracing::warn!(%upstream, path, attempt, status = reply.status.as_u16(), "backend failed");
                status = reply.status;
            }
            Err(err) => {
                tracing::warn!(%upstream, path, attempt, %err, "backend unreachable");
                status = StatusCode::INTERNAL_SERVER_ERROR;
            }
        }
    }
    Err(status)
}

async fn login(req: Request<Incoming>) -> Response<Body> {
    let back = back_to(req.headers());
    let body = match server::read_body(req, 16 * 1024).await {
        Ok(body) => body,
        Err(resp) => return resp,
    };
    let user = form_field(&String::from_utf8_lossy(&body), "username").unwrap_or_default();
    let user = user.trim();
    if user.is_empty() {
        return redirect(&back, None);
    }
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax",
        percent_encode(user)
    );
    redirect(&back, Some(cookie))
}

fn logout(inbound: &HeaderMap) -> Response<Body> {
    let cookie = format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax");
    redirect(&back_to(inbound), Some(cookie))
}

/// Where to send the browser after login or logout: the page it came from, else the product
/// page.
fn back_to(inbound: &HeaderMap) -> String {
    inbound
        .get(REFERER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or("productpage")
        .to_owned()
}

fn redirect(location: &str, cookie: Option<String>) -> Response<Body> {
    let mut resp = server::text(StatusCode::FOUND, "");
    if let Ok(location) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(LOCATION, location);
    } else {
        resp.headers_mut()
            .insert(LOCATION, HeaderValue::from_static("productpage"));
    }
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        resp.headers_mut().insert(SET_COOKIE, cookie);
    }
    resp
}

/// The value of `name` in an `application/x-www-form-urlencoded` body.
fn form_field(body: &str, name: &str) -> Option<String> {
    body.split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| percent_decode(k, true) == name)
        .map(|(_, v)| percent_decode(v, true))
}

/// Decodes `%XX` escapes (and `+` as a space in form bodies); invalid escapes stay as they are.
fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Encodes all but `A-Z a-z 0-9 - . _ ~ @` as `%XX`, for a cookie value.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_round_trip() {
        for s in ["jason", "a b", "ünï", "x%y;z=1", "%", "%4", "%zz"] {
            assert_eq!(percent_decode(&percent_encode(s), false), s);
        }
        assert_eq!(percent_decode("a+b%21", true), "a b!");
        assert_eq!(percent_decode("%", false), "%");
        assert_eq!(percent_decode("%4", false), "%4");
        assert_eq!(percent_decode("%zz", false), "%zz");
    }

    #[test]
    fn form_fields() {
        assert_eq!(
            form_field("username=jason&passwd=x", "username").as_deref(),
            Some("jason")
        );
        assert_eq!(
            form_field("passwd=x&username=j+s%40x", "username").as_deref(),
            Some("j s@x")
        );
        assert_eq!(form_field("passwd=x", "username"), None);
    }

    #[test]
    fn api_paths() {
        assert_eq!(api_product("/api/v1/products/0"), Some(("0", "")));
        assert_eq!(
            api_product("/api/v1/products/0/reviews"),
            Some(("0", "reviews"))
        );
        assert_eq!(
            api_product("/api/v1/products/0/ratings"),
            Some(("0", "ratings"))
        );
        assert_eq!(api_product("/api/v1/products/0/other"), None);
        assert_eq!(api_product("/api/v1/products/"), None);
    }
}
