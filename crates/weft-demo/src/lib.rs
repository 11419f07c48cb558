//! Istio's bookinfo demo, written in Rust for weft.
//!
//! Four small HTTP services, each behaving like its bookinfo counterpart:
//!
//! | service | module | what it serves |
//! | --- | --- | --- |
//! | productpage | [`productpage`] | the HTML page `/productpage`, login/logout, the JSON API `/api/v1/products...` |
//! | details | [`details`] | `/details/{id}`: the book's type, pages, publisher, language and ISBNs |
//! | reviews | [`reviews`] | `/reviews/{id}`: two reviews; v2 and v3 add ratings from the ratings service |
//! | ratings | [`ratings`] | `/ratings/{id}`: `{"id":0,"ratings":{"Reviewer1":5,"Reviewer2":4}}` |
//!
//! Each service has a config struct and an async `run(config)` that binds its listener and
//! returns a [`Server`] handle with the bound address, so that tests and `weft up` can start
//! them in-process on `127.0.0.1:0`. The `weft-bookinfo` binary runs one service per process
//! (`weft-bookinfo productpage|details|reviews|ratings ...`) or all four (`weft-bookinfo all`).
//!
//! Calls between services go to an [`Upstream`]: an address to connect to (in the mesh, a
//! sidecar's outbound listener) and the `Host` header to send (`details:9080`, ...), and carry
//! the request and trace headers of the inbound request ([`headers::PROPAGATED`]).
#![deny(missing_docs)]

pub mod client;
pub mod details;
pub mod headers;
pub mod productpage;
pub mod ratings;
pub mod reviews;
pub mod server;

pub use client::{Upstream, UpstreamError};
pub use server::Server;

/// The product id of the one book bookinfo knows.
pub const PRODUCT_ID: u64 = 0;

/// The port every bookinfo service listens on in Kubernetes, and the port of the default
/// `Host` headers (`details:9080`, `reviews:9080`, `ratings:9080`).
pub const SERVICE_PORT: u16 = 9080;
