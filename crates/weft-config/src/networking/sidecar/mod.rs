//! `Sidecar` (`networking.istio.io`): the inbound and outbound listeners of a workload's
//! proxy and the services it can reach, with Istio's validation.

mod types;
mod validate;

pub use types::*;

use crate::validate::{Context, Path, Report, Validate};

impl Validate for Sidecar {
    fn validate(&self, ctx: &Context<'_>, path: &Path, report: &mut Report) {
        validate::validate_sidecar(self, ctx.namespace(), path, report);
    }
}

#[cfg(test)]
mod tests;
