#!/usr/bin/env python3
"""Configuration files for bench/proxy.sh: the nginx backend and the three proxies under test.

Every target is configured for the same job: listen on loopback, route `/` to one backend over
HTTP/1.1 keep-alive, one worker thread. The "many" variants add 1,000 services (1,000 upstream
clusters and 1,000 host-based routes) in each proxy's own idiom, Istio-style names for weft.

usage: gen.py KIND OUT_DIR [key=value ...]   (KIND: backend | nginx | haproxy | weft; see main())
"""

import os
import sys

BODY_BYTES = 1024

# Istio's naming, so that the bootstrap looks like what a control plane would send.
def svc_host(i):
    return f"svc-{i}.bench.svc.cluster.local"


def svc_cluster(i):
    return f"outbound|80||{svc_host(i)}"


def nginx_common(prefix, run_as_root):
    # `user root` keeps the workers able to reach the private temp directory when started as root.
    user = "user root;\n" if run_as_root else ""
    return f"""{user}worker_processes 1;
worker_rlimit_nofile 16384;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; }}
"""


def nginx_http_common():
    # Keep-alive without a request cap (nginx closes after 1,000 requests by default, h2 too).
    return """    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
"""


def backend(out, a):
    """The origin: a fixed 1 KB body over HTTP/1.1 (h1 port) and h2c (h2 port)."""
    body = "x" * (BODY_BYTES - 1) + "\n"
    prefix = os.path.join(out, "backend")
    os.makedirs(prefix, exist_ok=True)
    conf = nginx_common(prefix, a["root"] == "1") + f"""http {{
{nginx_http_common()}    server {{
        listen 127.0.0.1:{a['h1']};
        listen 127.0.0.1:{a['h2']} http2;
        location / {{
            default_type text/plain;
            return 200 "{body}";
        }}
    }}
}}
"""
    write(prefix, "nginx.conf", conf)


def nginx(out, a):
    """nginx as a reverse proxy: 1 worker, upstream keep-alive."""
    prefix = os.path.join(out, a["name"])
    os.makedirs(prefix, exist_ok=True)
    n = int(a.get("services", "0"))
    proxy = """proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering on;"""
    conf = nginx_common(prefix, a["root"] == "1") + "http {\n" + nginx_http_common()
    conf += f"""    upstream backend {{
        server 127.0.0.1:{a['backend']};
        keepalive 64;
        keepalive_requests 1000000;
    }}
"""
    if n == 0:
        conf += f"""    server {{
        listen 127.0.0.1:{a['h1']};
        listen 127.0.0.1:{a['h2']} http2;
        location / {{
            proxy_pass http://backend;
            {proxy}
        }}
    }}
"""
    else:
        conf += "    server_names_hash_max_size 8192;\n    server_names_hash_bucket_size 128;\n"
        for i in range(n):
            conf += f"""    upstream svc_{i} {{
        server 127.0.0.1:{a['backend']};
        keepalive 4;
    }}
    server {{
        listen 127.0.0.1:{a['h1']};
        server_name {svc_host(i)};
        location / {{
            proxy_pass http://svc_{i};
            {proxy}
        }}
    }}
"""
    conf += "}\n"
    write(prefix, "nginx.conf", conf)


def haproxy(out, a):
    """haproxy: 1 thread, http mode, keep-alive and connection reuse towards the backend."""
    n = int(a.get("services", "0"))
    h2_server = " proto h2" if a.get("h2_upstream") == "h2" else ""
    be_port = a["backend_h2"] if h2_server else a["backend"]
    conf = f"""global
    nbthread 1
    maxconn 4096
    tune.bufsize 16384

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 300s

"""
    if n == 0:
        conf += f"""frontend h1
    bind 127.0.0.1:{a['h1']}
    default_backend backend

frontend h2c
    bind 127.0.0.1:{a['h2']} proto h2
    default_backend backend_h2

backend backend
    server origin 127.0.0.1:{a['backend']}

backend backend_h2
    server origin 127.0.0.1:{be_port}{h2_server}
"""
    else:
        hosts = os.path.join(out, f"{a['name']}.map")
        with open(hosts, "w") as f:
            for i in range(n):
                f.write(f"{svc_host(i)} svc_{i}\n")
        conf += f"""frontend h1
    bind 127.0.0.1:{a['h1']}
    use_backend %[req.hdr(host),lower,map({hosts},svc_0)]

"""
        for i in range(n):
            conf += f"backend svc_{i}\n    server origin 127.0.0.1:{a['backend']}\n\n"
    write(out, f"{a['name']}.cfg", conf)


def weft(out, a):
    """weft-proxy: an Envoy v3 bootstrap with static listeners and STATIC clusters.

    Listener h1 (codec AUTO) and listener h2c (codec HTTP2), each with an HTTP connection manager
    routing `/` to the backend cluster. With services=N, listener h1 routes N virtual hosts (one
    per Istio-style service host) to N clusters instead.
    """
    n = int(a.get("services", "0"))
    h2_upstream = a.get("h2_upstream") == "h2"
    global TELEMETRY
    mode = a.get("telemetry", "0")
    TELEMETRY = telemetry_yaml(out) if mode in ("1", "metrics") else ("", "")
    if mode == "metrics":
        TELEMETRY = ("", TELEMETRY[1])
    y = f"""# Generated by bench/proxy/gen.py for bench/proxy.sh. Envoy v3 bootstrap.
node:
  id: bench~127.0.0.1~bench.default~default.svc.cluster.local
  cluster: bench
admin:
  address:
    socket_address:
      address: 127.0.0.1
      port_value: {a['admin']}
static_resources:
  listeners:
"""
    if n == 0:
        y += listener("bench_h1", a["h1"], "AUTO", vhost("backend", ["*"], "backend"))
        y += listener("bench_h2c", a["h2"], "HTTP2",
                      vhost("backend", ["*"], "backend_h2" if h2_upstream else "backend"))
        y += "  clusters:\n"
        y += cluster("backend", a["backend"])
        if h2_upstream:
            y += cluster("backend_h2", a["backend_h2"], h2=True)
    else:
        vhosts = "".join(
            vhost(f"{svc_host(i)}:80", [svc_host(i), f"{svc_host(i)}:80"], svc_cluster(i))
            for i in range(n)
        )
        y += listener("bench_h1", a["h1"], "AUTO", vhosts)
        y += "  clusters:\n"
        y += "".join(cluster(svc_cluster(i), a["backend"]) for i in range(n))
    write(out, f"{a['name']}.yaml", y)


# (HCM settings, HTTP filters) added with telemetry=1: Istio's stats filter, an access log in
# Envoy's default format, and tracing at 1% sampling exported as Zipkin JSON (to the origin,
# which answers any POST with 200).
TELEMETRY = ("", "")


def telemetry_yaml(out):
    log = os.path.join(out, "access.log")
    hcm = f"""          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {log}
          tracing:
            random_sampling: {{value: 1}}
            provider:
              name: envoy.tracers.zipkin
              typed_config:
                "@type": type.googleapis.com/envoy.config.trace.v3.ZipkinConfig
                collector_cluster: backend
                collector_endpoint: /api/v2/spans
                collector_endpoint_version: HTTP_JSON
"""
    filters = """          - name: istio.stats
            typed_config:
              "@type": type.googleapis.com/google.protobuf.Struct
              value: {}
"""
    return hcm, filters


def listener(name, port, codec, vhosts):
    hcm_extra, filters = TELEMETRY
    return f"""  - name: {name}
    address:
      socket_address:
        address: 127.0.0.1
        port_value: {port}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          codec_type: {codec}
{hcm_extra}          route_config:
            name: {name}
            virtual_hosts:
{vhosts}          http_filters:
{filters}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"""


def vhost(name, domains, cluster_name):
    doms = ", ".join(f'"{d}"' for d in domains)
    return f"""            - name: "{name}"
              domains: [{doms}]
              routes:
              - match:
                  prefix: "/"
                route:
                  cluster: "{cluster_name}"
"""


def cluster(name, port, h2=False):
    y = f"""  - name: "{name}"
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: "{name}"
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address:
                address: 127.0.0.1
                port_value: {port}
"""
    if h2:
        y += """    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}
"""
    return y


def write(directory, name, text):
    with open(os.path.join(directory, name), "w") as f:
        f.write(text)


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("backend", "nginx", "haproxy", "weft"):
        sys.exit(__doc__)
    kind, out = sys.argv[1], sys.argv[2]
    args = {"name": kind, "root": "1" if os.geteuid() == 0 else "0"}
    for kv in sys.argv[3:]:
        k, _, v = kv.partition("=")
        args[k] = v
    globals()[kind](out, args)


if __name__ == "__main__":
    main()
