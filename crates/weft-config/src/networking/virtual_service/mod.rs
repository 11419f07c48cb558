//! `VirtualService` (`networking.istio.io`): traffic routing rules, with Istio's validation.
//!
//! The types mirror `istio.networking.v1alpha3.VirtualService` field by field; validation
//! follows Istio's `ValidateVirtualService` and the CRD schema. [`checks`] holds Istio's host,
//! port, address and label rules, shared with the Gateway and Sidecar kinds.

mod types;
pub mod unreachable;
mod validate;

pub use types::*;
pub use validate::{
    MESH_GATEWAY, is_jwt_claim_header, validate_destination, validate_header_value,
    validate_match_header_name,
};

use crate::validate::{Context, Path, Report, Validate};

impl Validate for VirtualService {
    fn validate(&self, ctx: &Context<'_>, path: &Path, report: &mut Report) {
        validate::validate_virtual_service(self, ctx.namespace(), path, report);
    }
}

#[cfg(test)]
pub(crate) mod tests;
