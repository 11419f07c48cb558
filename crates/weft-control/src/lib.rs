//! weft's control-plane core. [`model`] holds the service registry and the config index;
//! [`translate`] turns them, per proxy, into Envoy v3 resources named and shaped as istiod
//! names and shapes them; [`simulate`] runs a synthetic request through those resources the
//! way Istio's simulator does, to tell which listener, filter chain, route and cluster it takes.
//!
//! ```no_run
//! use weft_control::model::{Environment, MeshSettings, Proxy};
//! use weft_control::simulate::{simulate, Call};
//!
//! let parsed = weft_config::parse_str("", "config.yaml");
//! let env = Environment::from_resources(&parsed.resources, MeshSettings::default());
//! let proxy = Proxy::from_node_id("sidecar~10.0.0.1~app.default~default.svc.cluster.local")
//!     .expect("valid node id");
//! let resources = weft_control::translate::translate(&env, &proxy);
//! let outcome = simulate(&resources, &Call::http("reviews.default.svc.cluster.local", 9080));
//! println!("{outcome:?}");
//! ```

#![warn(missing_docs)]

pub mod bootstrap;
pub mod model;
pub mod server;
pub mod simulate;
pub mod translate;
