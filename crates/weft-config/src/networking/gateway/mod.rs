//! `Gateway` (`networking.istio.io`): listeners of an ingress or egress gateway, with Istio's
//! validation. [`ServerTlsSettings`] is shared with the Sidecar's ingress listeners.

mod types;
mod validate;

pub use types::*;
pub use validate::{UNIX_ADDRESS_PREFIX, is_valid_cipher_suite, validate_tls_options};

use crate::validate::{Context, Path, Report, Validate};

impl Validate for Gateway {
    fn validate(&self, ctx: &Context<'_>, path: &Path, report: &mut Report) {
        validate::validate_gateway(self, &ctx.metadata.name, path, report);
    }
}

#[cfg(test)]
mod tests;
