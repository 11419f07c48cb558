//! `security.istio.io`: authentication and authorization kinds.

pub mod authorization_policy;
pub mod peer_authentication;
pub mod request_authentication;

pub use authorization_policy::AuthorizationPolicy;
pub use peer_authentication::PeerAuthentication;
pub use request_authentication::RequestAuthentication;

/// The annotation that turns an AuthorizationPolicy into a dry run (only ALLOW and DENY);
/// every other Istio kind refuses it.
pub const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";
