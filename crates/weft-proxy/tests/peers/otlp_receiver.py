"""An OTLP trace receiver (gRPC) built on the OpenTelemetry project's own protos: prints its
port, then one JSON line per received span (ids in hex, kind, attributes)."""
import json
import sys
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        for rs in request.resource_spans:
            service = ""
            for a in rs.resource.attributes:
                if a.key == "service.name":
                    service = a.value.string_value
            for ss in rs.scope_spans:
                for s in ss.spans:
                    print(json.dumps({
                        "service": service,
                        "scope": ss.scope.name,
                        "trace_id": s.trace_id.hex(),
                        "span_id": s.span_id.hex(),
                        "parent_span_id": s.parent_span_id.hex(),
                        "name": s.name,
                        "kind": s.kind,
                        "attributes": {a.key: a.value.string_value for a in s.attributes},
                    }), flush=True)
        return trace_service_pb2.ExportTraceServiceResponse()


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Receiver(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(json.dumps({"port": port}), flush=True)
    sys.stdin.read()  # runs until the test closes stdin
    server.stop(0)


if __name__ == "__main__":
    main()
