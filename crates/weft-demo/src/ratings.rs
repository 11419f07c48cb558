//! The ratings service: the stars each reviewer gave.
//!
//! `GET /ratings/{id}` answers `{"id":0,"ratings":{"Reviewer1":5,"Reviewer2":4}}`;
//! `POST /ratings/{id}` with a JSON object of ratings replaces them for that product (kept in
//! memory) and answers the new value; `GET /health` answers `{"status":"Ratings is healthy"}`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use crate::server::{self, Body, Server};

/// How to run the ratings service.
#[derive(Clone, Debug)]
pub struct RatingsConfig {
    /// The address to listen on.
    pub listen: SocketAddr,
}

impl RatingsConfig {
    /// A ratings service listening on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        RatingsConfig { listen }
    }
}

/// The ratings of one product, as the ratings service answers them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProductRatings {
    /// The product id.
    pub id: u64,
    /// Stars by reviewer name.
    pub ratings: serde_json::Map<String, serde_json::Value>,
}

/// The ratings bookinfo starts with: Reviewer1 gave 5 stars, Reviewer2 gave 4.
pub fn default_ratings(id: u64) -> ProductRatings {
    let mut ratings = serde_json::Map::new();
    ratings.insert("Reviewer1".into(), 5.into());
    ratings.insert("Reviewer2".into(), 4.into());
    ProductRatings { id, ratings }
}

type Store = Arc<Mutex<HashMap<u64, serde_json::Map<String, serde_json::Value>>>>;

/// Starts the ratings service.
pub async fn run(config: RatingsConfig) -> std::io::Result<Server> {
    let store: Store = Arc::default();
    server::serve("ratings", config.listen, move |req| {
        handle(store.clone(), req)
    })
    .await
}

async fn handle(store: Store, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    if path == "/health" {
        return server::json(
            StatusCode::OK,
            &serde_json::json!({ "status": "Ratings is healthy" }),
        );
    }
    let Some(id) = server::strip(&path, "/ratings/") else {
        return server::not_found();
    };
    let Ok(id) = id.parse::<u64>() else {
        return server::json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({ "error": "please provide numeric product ID" }),
        );
    };
    match *req.method() {
        Method::GET | Method::HEAD => {
            let stored = store
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&id)
                .cloned();
            let answer = match stored {
                Some(ratings) => ProductRatings { id, ratings },
                None => default_ratings(id),
            };
            server::json(StatusCode::OK, &answer)
        }
        Method::POST => {
            let body = match server::read_body(req, 64 * 1024).await {
                Ok(body) => body,
                Err(resp) => return resp,
            };
            let Ok(ratings) =
                serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&body)
            else {
                return server::json(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({ "error": "please provide valid ratings JSON" }),
                );
            };
            store
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, ratings.clone());
            server::json(StatusCode::OK, &ProductRatings { id, ratings })
        }
        _ => server::method_not_allowed(),
    }
}
