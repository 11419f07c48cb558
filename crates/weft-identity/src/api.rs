//! The wire messages of Istio's certificate API (`istio.v1.auth.IstioCertificateService`), with
//! the field numbers of Istio's `ca.proto`: the control plane serves them and the proxy sends
//! them, so both sides share this one definition.

/// The gRPC path of Istio's certificate method.
pub const CREATE_CERTIFICATE_PATH: &str =
    "/istio.v1.auth.IstioCertificateService/CreateCertificate";

/// The DNS name Istio's agents expect on the control plane's certificate (istiod's service).
pub const ISTIOD_SAN: &str = "istiod.istio-system.svc";

/// Istio's `IstioCertificateRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IstioCertificateRequest {
    /// PEM PKCS#10 request.
    #[prost(string, tag = "1")]
    pub csr: String,
    /// Requested lifetime in seconds (0: the CA's default).
    #[prost(int64, tag = "3")]
    pub validity_duration: i64,
    /// Opaque node metadata (workload name, IP, cluster id).
    #[prost(message, optional, tag = "4")]
    pub metadata: Option<prost_types::Struct>,
}

/// Istio's `IstioCertificateResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IstioCertificateResponse {
    /// The leaf, the intermediates, and last the trust bundle (every root, one PEM string).
    #[prost(string, repeated, tag = "1")]
    pub cert_chain: Vec<String>,
}
