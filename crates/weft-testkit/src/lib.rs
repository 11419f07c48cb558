//! weft's test harness (a dev-dependency only; nothing in production depends on it).
//!
//! - [`process`]: finds the built `weft` and `weft-proxy` binaries next to the test executable
//!   and runs them as child processes that are killed (by PID) when dropped.
//! - [`backend`]: in-process HTTP backends that answer with their workload's name and can be
//!   told to fail, and that record what they received.
//! - [`http`]: a small HTTP/1.1 client with timeouts (a connection per request, or one kept
//!   alive).
//! - [`stats`]: binomial bounds for traffic splits.
//! - [`mesh`]: a whole mesh on loopback: `weft control-plane`, one `weft-proxy` sidecar per
//!   workload (no traffic capture: each workload has its own 127.x.1.n address for inbound and
//!   127.x.2.n for its sidecar's outbound listeners, set up through WorkloadEntry, ServiceEntry
//!   and Sidecar resources), and an ingress gateway.
//!
//! The binaries are built by `cargo test --workspace` (or `cargo build --workspace --bins`);
//! a missing binary is a test failure that says so. `WEFT_BIN_DIR` points elsewhere, and
//! `WEFT_TESTKIT_KEEP=1` keeps each mesh's directory (config, bootstraps, logs) after a test.

#![warn(missing_docs)]

pub mod backend;
pub mod http;
pub mod mesh;
pub mod process;
pub mod stats;

pub use backend::{Backend, Behavior};
pub use mesh::{Mesh, MeshOptions};
