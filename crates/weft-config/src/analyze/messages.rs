//! Istio's analyzer message catalogue (codes, levels, templates).
//!
//! Generated from Istio's `messages.yaml` by `tests/messages_catalogue.rs`
//! (`WEFT_REGEN=1 cargo test -p weft-config --test messages_catalogue`). Do not edit.

use super::{Level, MessageType};

/// IST0001 InternalError
pub static INTERNAL_ERROR: MessageType = MessageType {
    name: "InternalError",
    code: "IST0001",
    level: Level::Error,
    description: "There was an internal error in the toolchain. This is almost always a bug in the implementation.",
    template: "Internal error: %v",
    args: &["detail"],
};

/// IST0002 Deprecated
pub static DEPRECATED: MessageType = MessageType {
    name: "Deprecated",
    code: "IST0002",
    level: Level::Warning,
    description: "A feature that the configuration is depending on is now deprecated.",
    template: "Deprecated: %s",
    args: &["detail"],
};

/// IST0101 ReferencedResourceNotFound
pub static REFERENCED_RESOURCE_NOT_FOUND: MessageType = MessageType {
    name: "ReferencedResourceNotFound",
    code: "IST0101",
    level: Level::Error,
    description: "A resource being referenced does not exist.",
    template: "Referenced %s not found: %q",
    args: &["reftype", "refval"],
};

/// IST0102 NamespaceNotInjected
pub static NAMESPACE_NOT_INJECTED: MessageType = MessageType {
    name: "NamespaceNotInjected",
    code: "IST0102",
    level: Level::Info,
    description: "A namespace is not enabled for Istio injection.",
    template: "The namespace is not enabled for Istio injection. Run 'kubectl label namespace %s istio-injection=enabled' to enable it, or 'kubectl label namespace %s istio-injection=disabled' to explicitly mark it as not needing injection.",
    args: &["namespace", "namespace2"],
};

/// IST0103 PodMissingProxy
pub static POD_MISSING_PROXY: MessageType = MessageType {
    name: "PodMissingProxy",
    code: "IST0103",
    level: Level::Warning,
    description: "A pod is missing the Istio proxy.",
    template: "The pod %s is missing the Istio proxy. This can often be resolved by restarting or redeploying the workload.",
    args: &["podName"],
};

/// IST0106 SchemaValidationError
pub static SCHEMA_VALIDATION_ERROR: MessageType = MessageType {
    name: "SchemaValidationError",
    code: "IST0106",
    level: Level::Error,
    description: "The resource has a schema validation error.",
    template: "Schema validation error: %v",
    args: &["err"],
};

/// IST0107 MisplacedAnnotation
pub static MISPLACED_ANNOTATION: MessageType = MessageType {
    name: "MisplacedAnnotation",
    code: "IST0107",
    level: Level::Warning,
    description: "An Istio annotation is applied to the wrong kind of resource.",
    template: "Misplaced annotation: %s can only be applied to %s",
    args: &["annotation", "kind"],
};

/// IST0108 UnknownAnnotation
pub static UNKNOWN_ANNOTATION: MessageType = MessageType {
    name: "UnknownAnnotation",
    code: "IST0108",
    level: Level::Warning,
    description: "An Istio annotation is not recognized for any kind of resource",
    template: "Unknown annotation: %s",
    args: &["annotation"],
};

/// IST0109 ConflictingMeshGatewayVirtualServiceHosts
pub static CONFLICTING_MESH_GATEWAY_VIRTUAL_SERVICE_HOSTS: MessageType = MessageType {
    name: "ConflictingMeshGatewayVirtualServiceHosts",
    code: "IST0109",
    level: Level::Error,
    description: "Conflicting hosts on VirtualServices associated with mesh gateway",
    template: "The VirtualServices %s associated with mesh gateway define the same host %s which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.",
    args: &["virtualServices", "host"],
};

/// IST0110 ConflictingSidecarWorkloadSelectors
pub static CONFLICTING_SIDECAR_WORKLOAD_SELECTORS: MessageType = MessageType {
    name: "ConflictingSidecarWorkloadSelectors",
    code: "IST0110",
    level: Level::Error,
    description: "A Sidecar resource selects the same workloads as another Sidecar resource",
    template: "The Sidecars %v in namespace %q select the same workload pod %q, which can lead to undefined behavior.",
    args: &["conflictingSidecars", "namespace", "workloadPod"],
};

/// IST0111 MultipleSidecarsWithoutWorkloadSelectors
pub static MULTIPLE_SIDECARS_WITHOUT_WORKLOAD_SELECTORS: MessageType = MessageType {
    name: "MultipleSidecarsWithoutWorkloadSelectors",
    code: "IST0111",
    level: Level::Error,
    description: "More than one sidecar resource in a namespace has no workload selector",
    template: "The Sidecars %v in namespace %q have no workload selector, which can lead to undefined behavior.",
    args: &["conflictingSidecars", "namespace"],
};

/// IST0112 VirtualServiceDestinationPortSelectorRequired
pub static VIRTUAL_SERVICE_DESTINATION_PORT_SELECTOR_REQUIRED: MessageType = MessageType {
    name: "VirtualServiceDestinationPortSelectorRequired",
    code: "IST0112",
    level: Level::Error,
    description: "A VirtualService routes to a service with more than one port exposed, but does not specify which to use.",
    template: "This VirtualService routes to a service %q that exposes multiple ports %v. Specifying a port in the destination is required to disambiguate.",
    args: &["destHost", "destPorts"],
};

/// IST0116 DeploymentAssociatedToMultipleServices
pub static DEPLOYMENT_ASSOCIATED_TO_MULTIPLE_SERVICES: MessageType = MessageType {
    name: "DeploymentAssociatedToMultipleServices",
    code: "IST0116",
    level: Level::Warning,
    description: "The resulting pods of a service mesh deployment can't be associated with multiple services using the same port but different protocols.",
    template: "This deployment %s is associated with multiple services using port %d but different protocols: %v",
    args: &["deployment", "port", "services"],
};

/// IST0118 PortNameIsNotUnderNamingConvention
pub static PORT_NAME_IS_NOT_UNDER_NAMING_CONVENTION: MessageType = MessageType {
    name: "PortNameIsNotUnderNamingConvention",
    code: "IST0118",
    level: Level::Info,
    description: "Port name is not under naming convention. Protocol detection is applied to the port.",
    template: "Port name %s (port: %d, targetPort: %s) doesn't follow the naming convention of Istio port.",
    args: &["portName", "port", "targetPort"],
};

/// IST0123 NamespaceMultipleInjectionLabels
pub static NAMESPACE_MULTIPLE_INJECTION_LABELS: MessageType = MessageType {
    name: "NamespaceMultipleInjectionLabels",
    code: "IST0123",
    level: Level::Warning,
    description: "A namespace has more than one type of injection labels",
    template: "The namespace has more than one type of injection labels %v, which may lead to undefined behavior. Make sure only one injection label exists.",
    args: &["labels"],
};

/// IST0125 InvalidAnnotation
pub static INVALID_ANNOTATION: MessageType = MessageType {
    name: "InvalidAnnotation",
    code: "IST0125",
    level: Level::Warning,
    description: "An Istio annotation that is not valid",
    template: "Invalid annotation %s: %s",
    args: &["annotation", "problem"],
};

/// IST0126 UnknownMeshNetworksServiceRegistry
pub static UNKNOWN_MESH_NETWORKS_SERVICE_REGISTRY: MessageType = MessageType {
    name: "UnknownMeshNetworksServiceRegistry",
    code: "IST0126",
    level: Level::Error,
    description: "A service registry in Mesh Networks is unknown",
    template: "Unknown service registry %s in network %s",
    args: &["serviceregistry", "network"],
};

/// IST0127 NoMatchingWorkloadsFound
pub static NO_MATCHING_WORKLOADS_FOUND: MessageType = MessageType {
    name: "NoMatchingWorkloadsFound",
    code: "IST0127",
    level: Level::Warning,
    description: "There aren't workloads matching the resource labels",
    template: "No matching workloads for this resource with the following labels: %s",
    args: &["labels"],
};

/// IST0128 NoServerCertificateVerificationDestinationLevel
pub static NO_SERVER_CERTIFICATE_VERIFICATION_DESTINATION_LEVEL: MessageType = MessageType {
    name: "NoServerCertificateVerificationDestinationLevel",
    code: "IST0128",
    level: Level::Warning,
    description: "No caCertificates are set in DestinationRule, this results in no verification of presented server certificate.",
    template: "DestinationRule %s in namespace %s has TLS mode set to %s but no caCertificates are set to validate server identity for host: %s",
    args: &["destinationrule", "namespace", "mode", "host"],
};

/// IST0129 NoServerCertificateVerificationPortLevel
pub static NO_SERVER_CERTIFICATE_VERIFICATION_PORT_LEVEL: MessageType = MessageType {
    name: "NoServerCertificateVerificationPortLevel",
    code: "IST0129",
    level: Level::Warning,
    description: "No caCertificates are set in DestinationRule, this results in no verification of presented server certificate for traffic to a given port.",
    template: "DestinationRule %s in namespace %s has TLS mode set to %s but no caCertificates are set to validate server identity for host: %s at port %s",
    args: &["destinationrule", "namespace", "mode", "host", "port"],
};

/// IST0130 VirtualServiceUnreachableRule
pub static VIRTUAL_SERVICE_UNREACHABLE_RULE: MessageType = MessageType {
    name: "VirtualServiceUnreachableRule",
    code: "IST0130",
    level: Level::Warning,
    description: "A VirtualService rule will never be used because a previous rule uses the same match.",
    template: "VirtualService rule %v not used (%s).",
    args: &["ruleno", "reason"],
};

/// IST0131 VirtualServiceIneffectiveMatch
pub static VIRTUAL_SERVICE_INEFFECTIVE_MATCH: MessageType = MessageType {
    name: "VirtualServiceIneffectiveMatch",
    code: "IST0131",
    level: Level::Info,
    description: "A VirtualService rule match duplicates a match in a previous rule.",
    template: "VirtualService rule %v match %v is not used (duplicate/overlapping match in rule %v).",
    args: &["ruleno", "matchno", "dupno"],
};

/// IST0132 VirtualServiceHostNotFoundInGateway
pub static VIRTUAL_SERVICE_HOST_NOT_FOUND_IN_GATEWAY: MessageType = MessageType {
    name: "VirtualServiceHostNotFoundInGateway",
    code: "IST0132",
    level: Level::Warning,
    description: "Host defined in VirtualService not found in Gateway.",
    template: "one or more host %v defined in VirtualService %s not found in Gateway %s.",
    args: &["host", "virtualservice", "gateway"],
};

/// IST0133 SchemaWarning
pub static SCHEMA_WARNING: MessageType = MessageType {
    name: "SchemaWarning",
    code: "IST0133",
    level: Level::Warning,
    description: "The resource has a schema validation warning.",
    template: "Schema validation warning: %v",
    args: &["err"],
};

/// IST0134 ServiceEntryAddressesRequired
pub static SERVICE_ENTRY_ADDRESSES_REQUIRED: MessageType = MessageType {
    name: "ServiceEntryAddressesRequired",
    code: "IST0134",
    level: Level::Warning,
    description: "Virtual IP addresses are required for ports serving TCP (or unset) protocol when PILOT_ENABLE_IP_AUTOALLOCATE is not set on a proxy",
    template: "ServiceEntry addresses are required for this protocol.",
    args: &[],
};

/// IST0135 DeprecatedAnnotation
pub static DEPRECATED_ANNOTATION: MessageType = MessageType {
    name: "DeprecatedAnnotation",
    code: "IST0135",
    level: Level::Info,
    description: "A resource is using a deprecated Istio annotation.",
    template: "Annotation %q has been deprecated%s and may not work in future Istio versions.",
    args: &["annotation", "extra"],
};

/// IST0136 AlphaAnnotation
pub static ALPHA_ANNOTATION: MessageType = MessageType {
    name: "AlphaAnnotation",
    code: "IST0136",
    level: Level::Info,
    description: "An Istio annotation may not be suitable for production.",
    template: "Annotation %q is part of an alpha-phase feature and may be incompletely supported.",
    args: &["annotation"],
};

/// IST0137 DeploymentConflictingPorts
pub static DEPLOYMENT_CONFLICTING_PORTS: MessageType = MessageType {
    name: "DeploymentConflictingPorts",
    code: "IST0137",
    level: Level::Warning,
    description: "Two services selecting the same workload with the same targetPort MUST refer to the same port.",
    template: "This deployment %s is associated with multiple services %v using targetPort %q but different ports: %v.",
    args: &["deployment", "services", "targetPort", "ports"],
};

/// IST0138 GatewayDuplicateCertificate
pub static GATEWAY_DUPLICATE_CERTIFICATE: MessageType = MessageType {
    name: "GatewayDuplicateCertificate",
    code: "IST0138",
    level: Level::Warning,
    description: "Duplicate certificate in multiple gateways may cause 404s if clients re-use HTTP2 connections.",
    template: "Duplicate certificate in multiple gateways %v may cause 404s if clients re-use HTTP2 connections.",
    args: &["gateways"],
};

/// IST0139 InvalidWebhook
pub static INVALID_WEBHOOK: MessageType = MessageType {
    name: "InvalidWebhook",
    code: "IST0139",
    level: Level::Error,
    description: "Webhook is invalid or references a control plane service that does not exist.",
    template: "%v",
    args: &["error"],
};

/// IST0140 IngressRouteRulesNotAffected
pub static INGRESS_ROUTE_RULES_NOT_AFFECTED: MessageType = MessageType {
    name: "IngressRouteRulesNotAffected",
    code: "IST0140",
    level: Level::Warning,
    description: "Route rules have no effect on ingress gateway requests",
    template: "Subset in virtual service %s has no effect on ingress gateway %s requests",
    args: &["virtualservicesubset", "virtualservice"],
};

/// IST0141 InsufficientPermissions
pub static INSUFFICIENT_PERMISSIONS: MessageType = MessageType {
    name: "InsufficientPermissions",
    code: "IST0141",
    level: Level::Error,
    description: "Required permissions to install Istio are missing.",
    template: "Missing required permission to create resource %v (%v)",
    args: &["resource", "error"],
};

/// IST0142 UnsupportedKubernetesVersion
pub static UNSUPPORTED_KUBERNETES_VERSION: MessageType = MessageType {
    name: "UnsupportedKubernetesVersion",
    code: "IST0142",
    level: Level::Error,
    description: "The Kubernetes version is not supported",
    template: "The Kubernetes Version %q is lower than the minimum version: %v",
    args: &["version", "minimumVersion"],
};

/// IST0143 LocalhostListener
pub static LOCALHOST_LISTENER: MessageType = MessageType {
    name: "LocalhostListener",
    code: "IST0143",
    level: Level::Error,
    description: "A port exposed in a Service is bound to a localhost address",
    template: "Port %v is exposed in a Service but listens on localhost. It will not be exposed to other pods.",
    args: &["port"],
};

/// IST0144 InvalidApplicationUID
pub static INVALID_APPLICATION_UID: MessageType = MessageType {
    name: "InvalidApplicationUID",
    code: "IST0144",
    level: Level::Warning,
    description: "Application pods should not run as user ID (UID) 1337",
    template: "User ID (UID) 1337 is reserved for the sidecar proxy.",
    args: &[],
};

/// IST0145 ConflictingGateways
pub static CONFLICTING_GATEWAYS: MessageType = MessageType {
    name: "ConflictingGateways",
    code: "IST0145",
    level: Level::Error,
    description: "Gateway should not have the same selector, port and matched hosts of server",
    template: "Conflict with gateways %s (workload selector %s, port %s, hosts %v).",
    args: &["gateway", "selector", "portnumber", "hosts"],
};

/// IST0146 ImageAutoWithoutInjectionWarning
pub static IMAGE_AUTO_WITHOUT_INJECTION_WARNING: MessageType = MessageType {
    name: "ImageAutoWithoutInjectionWarning",
    code: "IST0146",
    level: Level::Warning,
    description: "Deployments with `image: auto` should be targeted for injection.",
    template: "%s %s contains `image: auto` but does not match any Istio injection webhook selectors.",
    args: &["resourceType", "resourceName"],
};

/// IST0147 ImageAutoWithoutInjectionError
pub static IMAGE_AUTO_WITHOUT_INJECTION_ERROR: MessageType = MessageType {
    name: "ImageAutoWithoutInjectionError",
    code: "IST0147",
    level: Level::Error,
    description: "Pods with `image: auto` should be targeted for injection.",
    template: "%s %s contains `image: auto` but does not match any Istio injection webhook selectors.",
    args: &["resourceType", "resourceName"],
};

/// IST0148 NamespaceInjectionEnabledByDefault
pub static NAMESPACE_INJECTION_ENABLED_BY_DEFAULT: MessageType = MessageType {
    name: "NamespaceInjectionEnabledByDefault",
    code: "IST0148",
    level: Level::Info,
    description: "user namespace should be injectable if Istio is installed with enableNamespacesByDefault enabled and neither injection label is set.",
    template: "is enabled for Istio injection, as Istio is installed with enableNamespacesByDefault as true.",
    args: &[],
};

/// IST0149 JwtClaimBasedRoutingWithoutRequestAuthN
pub static JWT_CLAIM_BASED_ROUTING_WITHOUT_REQUEST_AUTH_N: MessageType = MessageType {
    name: "JwtClaimBasedRoutingWithoutRequestAuthN",
    code: "IST0149",
    level: Level::Error,
    description: "Virtual service using JWT claim based routing without request authentication.",
    template: "The virtual service uses the JWT claim based routing (key: %s) but found no request authentication for the gateway (%s) pod (%s). The request authentication must first be applied for the gateway pods to validate the JWT token and make the claims available for routing.",
    args: &["key", "gateway", "pod"],
};

/// IST0150 ExternalNameServiceTypeInvalidPortName
pub static EXTERNAL_NAME_SERVICE_TYPE_INVALID_PORT_NAME: MessageType = MessageType {
    name: "ExternalNameServiceTypeInvalidPortName",
    code: "IST0150",
    level: Level::Warning,
    description: "Proxy may prevent tcp named ports and unmatched traffic for ports serving TCP protocol from being forwarded correctly for ExternalName services.",
    template: "Port name for ExternalName service is invalid. Proxy may prevent tcp named ports and unmatched traffic for ports serving TCP protocol from being forwarded correctly",
    args: &[],
};

/// IST0151 EnvoyFilterUsesRelativeOperation
pub static ENVOY_FILTER_USES_RELATIVE_OPERATION: MessageType = MessageType {
    name: "EnvoyFilterUsesRelativeOperation",
    code: "IST0151",
    level: Level::Warning,
    description: "This EnvoyFilter does not have a priority and has a relative patch operation set which can cause the EnvoyFilter not to be applied. Using the INSERT_FIRST or ADD option or setting the priority may help in ensuring the EnvoyFilter is applied correctly.",
    template: "This EnvoyFilter does not have a priority and has a relative patch operation set which can cause the EnvoyFilter not to be applied. Using the INSERT_FIRST of ADD option or setting the priority may help in ensuring the EnvoyFilter is applied correctly.",
    args: &[],
};

/// IST0152 EnvoyFilterUsesReplaceOperationIncorrectly
pub static ENVOY_FILTER_USES_REPLACE_OPERATION_INCORRECTLY: MessageType = MessageType {
    name: "EnvoyFilterUsesReplaceOperationIncorrectly",
    code: "IST0152",
    level: Level::Error,
    description: "The REPLACE operation is only valid for HTTP_FILTER and NETWORK_FILTER.",
    template: "The REPLACE operation is only valid for HTTP_FILTER and NETWORK_FILTER.",
    args: &[],
};

/// IST0153 EnvoyFilterUsesAddOperationIncorrectly
pub static ENVOY_FILTER_USES_ADD_OPERATION_INCORRECTLY: MessageType = MessageType {
    name: "EnvoyFilterUsesAddOperationIncorrectly",
    code: "IST0153",
    level: Level::Error,
    description: "The ADD operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or HTTP_ROUTE.",
    template: "The ADD operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or HTTP_ROUTE.",
    args: &[],
};

/// IST0154 EnvoyFilterUsesRemoveOperationIncorrectly
pub static ENVOY_FILTER_USES_REMOVE_OPERATION_INCORRECTLY: MessageType = MessageType {
    name: "EnvoyFilterUsesRemoveOperationIncorrectly",
    code: "IST0154",
    level: Level::Error,
    description: "The REMOVE operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or HTTP_ROUTE.",
    template: "The REMOVE operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or HTTP_ROUTE.",
    args: &[],
};

/// IST0155 EnvoyFilterUsesRelativeOperationWithProxyVersion
pub static ENVOY_FILTER_USES_RELATIVE_OPERATION_WITH_PROXY_VERSION: MessageType = MessageType {
    name: "EnvoyFilterUsesRelativeOperationWithProxyVersion",
    code: "IST0155",
    level: Level::Warning,
    description: "This EnvoyFilter does not have a priority and has a relative patch operation (NSTERT_BEFORE/AFTER, REPLACE, MERGE, DELETE) and proxyVersion set which can cause the EnvoyFilter not to be applied during an upgrade. Using the INSERT_FIRST or ADD option or setting the priority may help in ensuring the EnvoyFilter is applied correctly.",
    template: "This EnvoyFilter does not have a priority and has a relative patch operation (NSTERT_BEFORE/AFTER, REPLACE, MERGE, DELETE) and proxyVersion set which can cause the EnvoyFilter not to be applied during an upgrade. Using the INSERT_FIRST or ADD option or setting the priority may help in ensuring the EnvoyFilter is applied correctly.",
    args: &[],
};

/// IST0156 UnsupportedGatewayAPIVersion
pub static UNSUPPORTED_GATEWAY_API_VERSION: MessageType = MessageType {
    name: "UnsupportedGatewayAPIVersion",
    code: "IST0156",
    level: Level::Error,
    description: "The Gateway API CRD version is not supported",
    template: "The Gateway API CRD version %v is lower than the minimum version: %v",
    args: &["version", "minimumVersion"],
};

/// IST0172 FutureUnsupportedGatewayAPIVersion
pub static FUTURE_UNSUPPORTED_GATEWAY_API_VERSION: MessageType = MessageType {
    name: "FutureUnsupportedGatewayAPIVersion",
    code: "IST0172",
    level: Level::Warning,
    description: "The Gateway API CRD version will not be supported in the future",
    template: "The Gateway API CRD version %v is lower than the minimum version: %v",
    args: &["version", "minimumVersion"],
};

/// IST0157 InvalidTelemetryProvider
pub static INVALID_TELEMETRY_PROVIDER: MessageType = MessageType {
    name: "InvalidTelemetryProvider",
    code: "IST0157",
    level: Level::Warning,
    description: "The Telemetry with empty providers will be ignored",
    template: "The Telemetry %v in namespace %q with empty providers will be ignored.",
    args: &["name", "namespace"],
};

/// IST0158 PodsIstioProxyImageMismatchInNamespace
pub static PODS_ISTIO_PROXY_IMAGE_MISMATCH_IN_NAMESPACE: MessageType = MessageType {
    name: "PodsIstioProxyImageMismatchInNamespace",
    code: "IST0158",
    level: Level::Warning,
    description: "The Istio proxy image of the pods running in the namespace do not match the image defined in the injection configuration.",
    template: "The Istio proxy images of the pods running in the namespace do not match the image defined in the injection configuration (pod names: %v). This often happens after upgrading the Istio control-plane and can be fixed by redeploying the pods.",
    args: &["podNames"],
};

/// IST0159 ConflictingTelemetryWorkloadSelectors
pub static CONFLICTING_TELEMETRY_WORKLOAD_SELECTORS: MessageType = MessageType {
    name: "ConflictingTelemetryWorkloadSelectors",
    code: "IST0159",
    level: Level::Error,
    description: "A Telemetry resource selects the same workloads as another Telemetry resource",
    template: "The Telemetries %v in namespace %q select the same workload pod %q, which can lead to undefined behavior.",
    args: &["conflictingTelemetries", "namespace", "workloadPod"],
};

/// IST0160 MultipleTelemetriesWithoutWorkloadSelectors
pub static MULTIPLE_TELEMETRIES_WITHOUT_WORKLOAD_SELECTORS: MessageType = MessageType {
    name: "MultipleTelemetriesWithoutWorkloadSelectors",
    code: "IST0160",
    level: Level::Error,
    description: "More than one telemetry resource in a namespace has no workload selector",
    template: "The Telemetries %v in namespace %q have no workload selector, which can lead to undefined behavior.",
    args: &["conflictingTelemetries", "namespace"],
};

/// IST0161 InvalidGatewayCredential
pub static INVALID_GATEWAY_CREDENTIAL: MessageType = MessageType {
    name: "InvalidGatewayCredential",
    code: "IST0161",
    level: Level::Error,
    description: "The credential provided for the Gateway resource is invalid",
    template: "The credential referenced by the Gateway %s in namespace %s is invalid, which can cause the traffic not to work as expected.",
    args: &["gatewayName", "gatewayNamespace"],
};

/// IST0162 GatewayPortNotDefinedOnService
pub static GATEWAY_PORT_NOT_DEFINED_ON_SERVICE: MessageType = MessageType {
    name: "GatewayPortNotDefinedOnService",
    code: "IST0162",
    level: Level::Warning,
    description: "Gateway port not exposed by service",
    template: "The gateway is listening on a target port (port %d) that is not defined in the Service associated with its workload instances (Pod selector %s). If you need to access the gateway port through the gateway Service, it will not be available.",
    args: &["port", "selector"],
};

/// IST0163 InvalidExternalControlPlaneConfig
pub static INVALID_EXTERNAL_CONTROL_PLANE_CONFIG: MessageType = MessageType {
    name: "InvalidExternalControlPlaneConfig",
    code: "IST0163",
    level: Level::Warning,
    description: "Address for the ingress gateway on the external control plane is not valid",
    template: "The hostname (%s) that was provided for the webhook (%s) to reach the ingress gateway on the external control plane cluster %s. Traffic may not flow properly.",
    args: &["hostname", "webhook", "msg"],
};

/// IST0164 ExternalControlPlaneAddressIsNotAHostname
pub static EXTERNAL_CONTROL_PLANE_ADDRESS_IS_NOT_A_HOSTNAME: MessageType = MessageType {
    name: "ExternalControlPlaneAddressIsNotAHostname",
    code: "IST0164",
    level: Level::Info,
    description: "Address for the ingress gateway on the external control plane is an IP address and not a hostname",
    template: "The address (%s) that was provided for the webhook (%s) to reach the ingress gateway on the external control plane cluster is an IP address. This is not recommended for a production environment.",
    args: &["hostname", "webhook"],
};

/// IST0165 ReferencedInternalGateway
pub static REFERENCED_INTERNAL_GATEWAY: MessageType = MessageType {
    name: "ReferencedInternalGateway",
    code: "IST0165",
    level: Level::Warning,
    description: "VirtualServices should not reference internal Gateways.",
    template: "Gateway reference in VirtualService %s is to an implementation-generated internal Gateway: %s.",
    args: &["virtualservice", "gateway"],
};

/// IST0166 IneffectiveSelector
pub static INEFFECTIVE_SELECTOR: MessageType = MessageType {
    name: "IneffectiveSelector",
    code: "IST0166",
    level: Level::Warning,
    description: "Selector has no effect when applied to Kubernetes Gateways.",
    template: "Ineffective selector on Kubernetes Gateway %s. Use the TargetRef field instead.",
    args: &["gateway"],
};

/// IST0167 IneffectivePolicy
pub static INEFFECTIVE_POLICY: MessageType = MessageType {
    name: "IneffectivePolicy",
    code: "IST0167",
    level: Level::Warning,
    description: "The policy applied has no impact.",
    template: "The policy has no impact: %s.",
    args: &["reason"],
};

/// IST0168 UnknownUpgradeCompatibility
pub static UNKNOWN_UPGRADE_COMPATIBILITY: MessageType = MessageType {
    name: "UnknownUpgradeCompatibility",
    code: "IST0168",
    level: Level::Warning,
    description: "We cannot automatically detect whether a change is fully compatible or not",
    template: "The configuration %q changed in release %s, but compatibility cannot be automatically detected: %s. Or, install with `--set compatibilityVersion=%s` to retain the old default.",
    args: &["field", "release", "info", "compatVersion"],
};

/// IST0169 UpdateIncompatibility
pub static UPDATE_INCOMPATIBILITY: MessageType = MessageType {
    name: "UpdateIncompatibility",
    code: "IST0169",
    level: Level::Warning,
    description: "The provided configuration object may be incompatible due to an upgrade",
    template: "The configuration %q changed in release %s: %s. Or, install with `--set compatibilityVersion=%s` to retain the old default.",
    args: &["field", "release", "info", "compatVersion"],
};

/// IST0170 MultiClusterInconsistentService
pub static MULTI_CLUSTER_INCONSISTENT_SERVICE: MessageType = MessageType {
    name: "MultiClusterInconsistentService",
    code: "IST0170",
    level: Level::Warning,
    description: "The services live in different clusters under multi-cluster deployment model are inconsistent",
    template: "The service %v in namespace %q is inconsistent across clusters %q, which can lead to undefined behaviors. The inconsistent behaviors are: %v.",
    args: &["serviceName", "namespace", "clusters", "error"],
};

/// IST0171 NegativeConditionStatus
pub static NEGATIVE_CONDITION_STATUS: MessageType = MessageType {
    name: "NegativeConditionStatus",
    code: "IST0171",
    level: Level::Warning,
    description: "A condition with a negative status is present",
    template: "A condition with a negative status is present: type=%s, reason=%s, message=%s.",
    args: &["conditionType", "reason", "message"],
};

/// IST0173 DestinationRuleSubsetNotSelectPods
pub static DESTINATION_RULE_SUBSET_NOT_SELECT_PODS: MessageType = MessageType {
    name: "DestinationRuleSubsetNotSelectPods",
    code: "IST0173",
    level: Level::Error,
    description: "Subsets defined in destination does not select any pods.",
    template: "The Subset %s defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).",
    args: &["subset"],
};

/// IST0174 UnknownDestinationRuleHost
pub static UNKNOWN_DESTINATION_RULE_HOST: MessageType = MessageType {
    name: "UnknownDestinationRuleHost",
    code: "IST0174",
    level: Level::Warning,
    description: "Host defined in destination rule does not match any services in the mesh.",
    template: "The host %s defined in the DestinationRule does not match any services in the mesh.",
    args: &["host"],
};

/// IST0175 JwksUriFetchUnrestricted
pub static JWKS_URI_FETCH_UNRESTRICTED: MessageType = MessageType {
    name: "JwksUriFetchUnrestricted",
    code: "IST0175",
    level: Level::Warning,
    description: "RequestAuthentication resources exist but BLOCKED_CIDRS_IN_JWKS_URIS is not configured on istiod.",
    template: "BLOCKED_CIDRS_IN_JWKS_URIS is not configured but %d RequestAuthentication resource(s) exist (%s). Consider configuring it to restrict JWKS URI fetches to trusted networks.",
    args: &["count", "names"],
};

/// IST0176 GatewayAPICRDVersionBelowMinimum
pub static GATEWAY_APICRD_VERSION_BELOW_MINIMUM: MessageType = MessageType {
    name: "GatewayAPICRDVersionBelowMinimum",
    code: "IST0176",
    level: Level::Warning,
    description: "A Gateway API CRD is installed at a version below the minimum required by this Istio version. Resources of this kind will not be processed.",
    template: "Gateway API CRD %q is at version %q but Istio requires at least %q; resources of this kind will not be processed. Upgrade the Gateway API CRDs to satisfy the minimum version.",
    args: &["crd", "installedVersion", "minimumVersion"],
};

/// IST0177 ConflictingServiceEntryProtocol
pub static CONFLICTING_SERVICE_ENTRY_PROTOCOL: MessageType = MessageType {
    name: "ConflictingServiceEntryProtocol",
    code: "IST0177",
    level: Level::Warning,
    description: "Multiple ServiceEntries define the same host and port with conflicting protocols.",
    template: "Multiple ServiceEntries (%s) define the same host %q and port %d with conflicting protocols (%s).",
    args: &["serviceEntryNames", "host", "port", "protocols"],
};

/// Every message type, ordered by code.
pub static ALL: &[&MessageType] = &[
    &INTERNAL_ERROR,
    &DEPRECATED,
    &REFERENCED_RESOURCE_NOT_FOUND,
    &NAMESPACE_NOT_INJECTED,
    &POD_MISSING_PROXY,
    &SCHEMA_VALIDATION_ERROR,
    &MISPLACED_ANNOTATION,
    &UNKNOWN_ANNOTATION,
    &CONFLICTING_MESH_GATEWAY_VIRTUAL_SERVICE_HOSTS,
    &CONFLICTING_SIDECAR_WORKLOAD_SELECTORS,
    &MULTIPLE_SIDECARS_WITHOUT_WORKLOAD_SELECTORS,
    &VIRTUAL_SERVICE_DESTINATION_PORT_SELECTOR_REQUIRED,
    &DEPLOYMENT_ASSOCIATED_TO_MULTIPLE_SERVICES,
    &PORT_NAME_IS_NOT_UNDER_NAMING_CONVENTION,
    &NAMESPACE_MULTIPLE_INJECTION_LABELS,
    &INVALID_ANNOTATION,
    &UNKNOWN_MESH_NETWORKS_SERVICE_REGISTRY,
    &NO_MATCHING_WORKLOADS_FOUND,
    &NO_SERVER_CERTIFICATE_VERIFICATION_DESTINATION_LEVEL,
    &NO_SERVER_CERTIFICATE_VERIFICATION_PORT_LEVEL,
    &VIRTUAL_SERVICE_UNREACHABLE_RULE,
    &VIRTUAL_SERVICE_INEFFECTIVE_MATCH,
    &VIRTUAL_SERVICE_HOST_NOT_FOUND_IN_GATEWAY,
    &SCHEMA_WARNING,
    &SERVICE_ENTRY_ADDRESSES_REQUIRED,
    &DEPRECATED_ANNOTATION,
    &ALPHA_ANNOTATION,
    &DEPLOYMENT_CONFLICTING_PORTS,
    &GATEWAY_DUPLICATE_CERTIFICATE,
    &INVALID_WEBHOOK,
    &INGRESS_ROUTE_RULES_NOT_AFFECTED,
    &INSUFFICIENT_PERMISSIONS,
    &UNSUPPORTED_KUBERNETES_VERSION,
    &LOCALHOST_LISTENER,
    &INVALID_APPLICATION_UID,
    &CONFLICTING_GATEWAYS,
    &IMAGE_AUTO_WITHOUT_INJECTION_WARNING,
    &IMAGE_AUTO_WITHOUT_INJECTION_ERROR,
    &NAMESPACE_INJECTION_ENABLED_BY_DEFAULT,
    &JWT_CLAIM_BASED_ROUTING_WITHOUT_REQUEST_AUTH_N,
    &EXTERNAL_NAME_SERVICE_TYPE_INVALID_PORT_NAME,
    &ENVOY_FILTER_USES_RELATIVE_OPERATION,
    &ENVOY_FILTER_USES_REPLACE_OPERATION_INCORRECTLY,
    &ENVOY_FILTER_USES_ADD_OPERATION_INCORRECTLY,
    &ENVOY_FILTER_USES_REMOVE_OPERATION_INCORRECTLY,
    &ENVOY_FILTER_USES_RELATIVE_OPERATION_WITH_PROXY_VERSION,
    &UNSUPPORTED_GATEWAY_API_VERSION,
    &FUTURE_UNSUPPORTED_GATEWAY_API_VERSION,
    &INVALID_TELEMETRY_PROVIDER,
    &PODS_ISTIO_PROXY_IMAGE_MISMATCH_IN_NAMESPACE,
    &CONFLICTING_TELEMETRY_WORKLOAD_SELECTORS,
    &MULTIPLE_TELEMETRIES_WITHOUT_WORKLOAD_SELECTORS,
    &INVALID_GATEWAY_CREDENTIAL,
    &GATEWAY_PORT_NOT_DEFINED_ON_SERVICE,
    &INVALID_EXTERNAL_CONTROL_PLANE_CONFIG,
    &EXTERNAL_CONTROL_PLANE_ADDRESS_IS_NOT_A_HOSTNAME,
    &REFERENCED_INTERNAL_GATEWAY,
    &INEFFECTIVE_SELECTOR,
    &INEFFECTIVE_POLICY,
    &UNKNOWN_UPGRADE_COMPATIBILITY,
    &UPDATE_INCOMPATIBILITY,
    &MULTI_CLUSTER_INCONSISTENT_SERVICE,
    &NEGATIVE_CONDITION_STATUS,
    &DESTINATION_RULE_SUBSET_NOT_SELECT_PODS,
    &UNKNOWN_DESTINATION_RULE_HOST,
    &JWKS_URI_FETCH_UNRESTRICTED,
    &GATEWAY_APICRD_VERSION_BELOW_MINIMUM,
    &CONFLICTING_SERVICE_ENTRY_PROTOCOL,
];

/// Looks a message type up by code (`IST0101`) or name.
pub fn lookup(code_or_name: &str) -> Option<&'static MessageType> {
    ALL.iter()
        .copied()
        .find(|m| m.code == code_or_name || m.name == code_or_name)
}
