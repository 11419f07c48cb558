//! The reviews service: two reviews of the book, in three versions.
//!
//! - v1 answers the reviews alone and never calls ratings;
//! - v2 asks the ratings service and adds each reviewer's rating as black stars
//!   (`"rating":{"stars":5,"color":"black"}`), waiting up to 10 s for ratings;
//! - v3 does the same with red stars, waiting up to 2.5 s.
//!
//! When ratings cannot be had, v2 and v3 give each review
//! `"rating":{"error":"Ratings service is currently unavailable"}`. Every answer names the
//! instance that served it (`podname`, e.g. `reviews-v2-myhost`) and its `clustername`.
//!
//! `GET /reviews/{id}`, `GET /health` (`{"status":"Reviews is healthy"}`).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use crate::client::{self, Upstream};
use crate::headers;
use crate::ratings::ProductRatings;
use crate::server::{self, Body, Server};

/// The text a review's rating carries when the ratings service could not be had.
pub const RATINGS_UNAVAILABLE: &str = "Ratings service is currently unavailable";

/// Which reviews service this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReviewsVersion {
    /// No ratings.
    V1,
    /// Ratings as black stars.
    V2,
    /// Ratings as red stars.
    V3,
}

impl ReviewsVersion {
    /// `v1`, `v2` or `v3`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewsVersion::V1 => "v1",
            ReviewsVersion::V2 => "v2",
            ReviewsVersion::V3 => "v3",
        }
    }

    /// The color of the stars, or `None` for v1 which shows no ratings.
    pub fn star_color(self) -> Option<&'static str> {
        match self {
            ReviewsVersion::V1 => None,
            ReviewsVersion::V2 => Some("black"),
            ReviewsVersion::V3 => Some("red"),
        }
    }

    /// How long this version waits for the ratings service: 10 s for v2, 2.5 s for v3 (v1 does
    /// not call it), as in bookinfo.
    pub fn ratings_timeout(self) -> Duration {
        match self {
            ReviewsVersion::V3 => Duration::from_millis(2500),
            _ => Duration::from_secs(10),
        }
    }
}

impl fmt::Display for ReviewsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReviewsVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "v1" | "1" => Ok(ReviewsVersion::V1),
            "v2" | "2" => Ok(ReviewsVersion::V2),
            "v3" | "3" => Ok(ReviewsVersion::V3),
            _ => Err(format!(
                "unknown reviews version {s:?} (expected v1, v2 or v3)"
            )),
        }
    }
}

/// How to run a reviews service.
#[derive(Clone, Debug)]
pub struct ReviewsConfig {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The version.
    pub version: ReviewsVersion,
    /// The instance name answered as `podname` (shown as "Reviews served by: ...").
    pub instance: String,
    /// The cluster name answered as `clustername`.
    pub cluster: String,
    /// The ratings service (used by v2 and v3).
    pub ratings: Upstream,
    /// How long to wait for ratings.
    pub ratings_timeout: Duration,
}

impl ReviewsConfig {
    /// A reviews service of `version` listening on `listen` and calling `ratings`, with the
    /// version's ratings timeout, the instance name `reviews-VERSION-HOSTNAME` and the cluster
    /// name `weft`.
    pub fn new(listen: SocketAddr, version: ReviewsVersion, ratings: Upstream) -> Self {
        ReviewsConfig {
            listen,
            version,
            instance: default_instance(version),
            cluster: "weft".into(),
            ratings,
            ratings_timeout: version.ratings_timeout(),
        }
    }
}

/// `reviews-VERSION-HOSTNAME`: the instance name a reviews service has when none is given, like
/// the pod names of bookinfo's reviews deployments.
pub fn default_instance(version: ReviewsVersion) -> String {
    format!("reviews-{}-{}", version, hostname())
}

/// This machine's host name (`$HOSTNAME`, else the kernel's), or `localhost`.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The answer of `GET /reviews/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProductReviews {
    /// The product id (a string, as bookinfo answers it).
    #[serde(default)]
    pub id: String,
    /// The instance that answered.
    #[serde(default)]
    pub podname: String,
    /// The cluster of that instance.
    #[serde(default)]
    pub clustername: String,
    /// The reviews.
    pub reviews: Vec<Review>,
}

/// One review.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Review {
    /// The reviewer's name.
    pub reviewer: String,
    /// What they wrote.
    pub text: String,
    /// Their rating (v2, v3), or why it is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<Rating>,
}

/// A review's rating.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Rating {
    /// Stars, 0 to 5, and the color to draw them in.
    Stars {
        /// How many stars.
        stars: u8,
        /// `black` or `red`.
        color: String,
    },
    /// The rating could not be had.
    Error {
        /// Why.
        error: String,
    },
}

/// The two reviews bookinfo has, reviewer and text.
pub const REVIEWS: [(&str, &str); 2] = [
    (
        "Reviewer1",
        "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!",
    ),
    (
        "Reviewer2",
        "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare.",
    ),
];

/// Starts a reviews service.
pub async fn run(config: ReviewsConfig) -> std::io::Result<Server> {
    let config = Arc::new(config);
    server::serve("reviews", config.listen, move |req| {
        handle(config.clone(), req)
    })
    .await
}

async fn handle(config: Arc<ReviewsConfig>, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return server::method_not_allowed();
    }
    let path = req.uri().path();
    if path == "/health" {
        return server::json(
            StatusCode::OK,
            &serde_json::json!({ "status": "Reviews is healthy" }),
        );
    }
    let Some(id) = server::strip(path, "/reviews/") else {
        return server::not_found();
    };
    let Ok(id) = id.parse::<u64>() else {
        return server::json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({ "error": "please provide numeric product id" }),
        );
    };
    let ratings = match config.version.star_color() {
        Some(_) => fetch_ratings(&config, id, req.headers()).await,
        None => None,
    };
    server::json(
        StatusCode::OK,
        &product_reviews(&config, id, ratings.as_ref()),
    )
}

async fn fetch_ratings(
    config: &ReviewsConfig,
    id: u64,
    inbound: &http::HeaderMap,
) -> Option<ProductRatings> {
    let forwarded = headers::propagate(inbound);
    match client::get(
        &config.ratings,
        &format!("/ratings/{id}"),
        &forwarded,
        config.ratings_timeout,
    )
    .await
    {
        Ok(reply) if reply.status == StatusCode::OK => match serde_json::from_slice(&reply.body) {
            Ok(ratings) => Some(ratings),
            Err(err) => {
                tracing::warn!(upstream = %config.ratings, %err, "ratings answered bad JSON");
                None
            }
        },
        Ok(reply) => {
            tracing::warn!(upstream = %config.ratings, status = reply.status.as_u16(), "ratings failed");
            None
        }
        Err(err) => {
            tracing::warn!(upstream = %config.ratings, %err, "ratings unreachable");
            None
        }
    }
}

/// The answer of a reviews service with `config` for product `id`, given the ratings it got
/// (`None`: v1, or ratings could not be had).
pub fn product_reviews(
    config: &ReviewsConfig,
    id: u64,
    ratings: Option<&ProductRatings>,
) -> ProductReviews {
    let reviews = REVIEWS
        .iter()
        .map(|(reviewer, text)| Review {
            reviewer: (*reviewer).into(),
            text: (*text).into(),
            rating: config.version.star_color().map(|color| {
                let stars = ratings
                    .and_then(|r| r.ratings.get(*reviewer))
                    .and_then(|v| v.as_u64());
                match stars {
                    Some(stars) => Rating::Stars {
                        stars: stars.min(5) as u8,
                        color: color.into(),
                    },
                    None => Rating::Error {
                        error: RATINGS_UNAVAILABLE.into(),
                    },
                }
            }),
        })
        .collect();
    ProductReviews {
        id: id.to_string(),
        podname: config.instance.clone(),
        clustername: config.cluster.clone(),
        reviews,
    }
}
