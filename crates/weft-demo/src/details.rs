//! The details service: the book's publishing details.
//!
//! `GET /details/{id}` answers `{"id":0,"author":"William Shakespeare","year":1595,
//! "type":"paperback","pages":200,"publisher":"PublisherA","language":"English",
//! "ISBN-10":"1234567890","ISBN-13":"123-1234567890"}`; `GET /health` answers
//! `{"status":"Details is healthy"}`.

use std::net::SocketAddr;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use crate::server::{self, Body, Server};

/// How to run the details service.
#[derive(Clone, Debug)]
pub struct DetailsConfig {
    /// The address to listen on.
    pub listen: SocketAddr,
}

impl DetailsConfig {
    /// A details service listening on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        DetailsConfig { listen }
    }
}

/// A book's details, as the details service answers them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookDetails {
    /// The product id.
    pub id: u64,
    /// The author.
    pub author: String,
    /// The year of publication.
    pub year: u32,
    /// The binding (`paperback`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The number of pages.
    pub pages: u32,
    /// The publisher.
    pub publisher: String,
    /// The language.
    pub language: String,
    /// The ISBN-10.
    #[serde(rename = "ISBN-10")]
    pub isbn10: String,
    /// The ISBN-13.
    #[serde(rename = "ISBN-13")]
    pub isbn13: String,
}

/// The details of product `id` (bookinfo has one book and answers it for every id).
pub fn book_details(id: u64) -> BookDetails {
    BookDetails {
        id,
        author: "William Shakespeare".into(),
        year: 1595,
        kind: "paperback".into(),
        pages: 200,
        publisher: "PublisherA".into(),
        language: "English".into(),
        isbn10: "1234567890".into(),
        isbn13: "123-1234567890".into(),
    }
}

/// Starts the details service.
pub async fn run(config: DetailsConfig) -> std::io::Result<Server> {
    server::serve("details", config.listen, |req| async move { handle(req) }).await
}

fn handle(req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return server::method_not_allowed();
    }
    let path = req.uri().path();
    if path == "/health" {
        return server::json(
            StatusCode::OK,
            &serde_json::json!({ "status": "Details is healthy" }),
        );
    }
    match server::strip(path, "/details/") {
        Some(id) => match id.parse::<u64>() {
            Ok(id) => server::json(StatusCode::OK, &book_details(id)),
            Err(_) => server::json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({ "error": "please provide numeric product id" }),
            ),
        },
        None => server::not_found(),
    }
}
