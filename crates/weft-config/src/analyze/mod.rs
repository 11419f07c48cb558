//! Cross-resource analysis with Istio's analyzers and message catalogue.
