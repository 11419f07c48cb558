#!/usr/bin/env python3
"""Writes N VirtualServices, N DestinationRules and N ServiceEntries that refer to each other
(the shape of a real mesh config) into one multi-document YAML file."""
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
out = sys.stdout
for i in range(n):
    ns = f"team-{i % 20}"
    host = f"svc-{i}.{ns}.svc.cluster.local"
    out.write(f"""---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: svc-{i}
  namespace: {ns}
spec:
  hosts: ["{host}"]
  addresses: ["240.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {{number: 8080, name: http, protocol: HTTP}}
  endpoints:
  - {{address: "10.{(i >> 8) & 255}.{i & 255}.1", labels: {{version: v1}}}}
  - {{address: "10.{(i >> 8) & 255}.{i & 255}.2", labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: svc-{i}
  namespace: {ns}
spec:
  host: {host}
  trafficPolicy:
    connectionPool:
      tcp: {{maxConnections: 100}}
    outlierDetection:
      consecutive5xxErrors: 5
      interval: 10s
      baseEjectionTime: 30s
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: svc-{i}
  namespace: {ns}
spec:
  hosts: ["{host}"]
  http:
  - match:
    - headers:
        end-user: {{exact: jason}}
    route:
    - destination: {{host: {host}, subset: v2}}
  - route:
    - destination: {{host: {host}, subset: v1}}
      weight: 90
    - destination: {{host: {host}, subset: v2}}
      weight: 10
    retries: {{attempts: 3, perTryTimeout: 2s, retryOn: "5xx,connect-failure"}}
    timeout: 10s
""")
