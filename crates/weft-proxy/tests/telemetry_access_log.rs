//! Access logs: Envoy's default text format, custom command operators, JSON, filters (status
//! code, response flags, CEL), written by the proxy to real files and read back.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-alog-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits until `path` has `n` lines (the writer thread flushes shortly after each response).
async fn lines(path: &Path, n: usize) -> Vec<String> {
    let mut last = Vec::new();
    for _ in 0..250 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        last = text.lines().map(str::to_owned).collect();
        if last.len() >= n {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{} has {} lines, want {n}: {last:?}",
        path.display(),
        last.len()
    );
}

fn vhosts() -> &'static str {
    r#"            - name: all
              domains: ["*"]
              routes:
              - match: {path: /missing}
                direct_response: {status: 404}
              - match: {prefix: /}
                route: {cluster: backend}
"#
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_format_custom_format_and_json() {
    let dir = temp("formats");
    let default_log = dir.join("default.log");
    let custom_log = dir.join("custom.log");
    let json_log = dir.join("json.log");
    let backend = Scripted::start(|_, _| {
        Reply::Status(
            201,
            vec![("x-app", "reviews".into())],
            bytes::Bytes::from_static(b"hello"),
        )
    })
    .await;
    let hcm = format!(
        r#"          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {default}
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {custom}
              log_format:
                text_format_source:
                  inline_string: "%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %RESP(X-APP)% %REQ(X-USER?USER-AGENT):4% %UPSTREAM_CLUSTER% %UPSTREAM_HOST% %BYTES_SENT% 100%%\n"
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {json}
              log_format:
                json_format:
                  code: "%RESPONSE_CODE%"
                  method: "%REQ(:METHOD)%"
                  authority: "%REQ(:AUTHORITY)%"
                  flags: "%RESPONSE_FLAGS%"
                  missing: "%REQ(X-NOT-THERE)%"
                  mixed: "took %DURATION% ms"
"#,
        default = default_log.display(),
        custom = custom_log.display(),
        json = json_log.display(),
    );
    let p = start(&http_bootstrap_with(
        &hcm,
        "",
        vhosts(),
        &cluster("backend", &[backend.addr], ""),
    ));
    let addr = p.listener_addr("http").unwrap();
    let got = send(
        addr,
        req(
            "GET",
            "reviews:9080",
            "/reviews/1?x=y",
            &[("user-agent", "curl/8.0"), ("x-request-id", "abc-123")],
        ),
    )
    .await;
    assert_eq!(got.status, 201);
    assert_eq!(got.text(), "hello");
    let got = get(addr, "reviews:9080", "/missing").await;
    assert_eq!(got.status, 404);

    let d = lines(&default_log, 2).await;
    // [START_TIME] "GET /reviews/1?x=y HTTP/1.1" 201 - <rx> <tx> <ms> <svc time> "-" "curl/8.0" "abc-123" "reviews:9080" "127.0.0.1:port"
    let first = &d[0];
    assert!(first.starts_with('['), "{first}");
    let time = &first[1..first.find(']').unwrap()];
    assert_eq!(time.len(), 24, "{time}");
    assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");
    let rest = &first[first.find(']').unwrap() + 2..];
    assert!(
        rest.starts_with("\"GET /reviews/1?x=y HTTP/1.1\" 201 - "),
        "{rest}"
    );
    assert!(
        rest.contains("\"-\" \"curl/8.0\" \"abc-123\" \"reviews:9080\""),
        "{rest}"
    );
    assert!(rest.ends_with(&format!("\"{}\"", backend.addr)), "{rest}");
    // Body bytes: nothing received, the 5-byte body sent.
    let fields: Vec<&str> = rest.split(' ').collect();
    assert_eq!(fields[5], "0", "{rest}");
    assert_eq!(fields[6], "5", "{rest}");
    assert!(
        d[1].contains("\"GET /missing HTTP/1.1\" 404 - "),
        "{}",
        d[1]
    );
    assert!(d[1].ends_with("\"-\""), "no upstream host: {}", d[1]);

    let c = lines(&custom_log, 2).await;
    let want = format!(
        "GET /reviews/1?x=y 201 reviews curl backend {} 5 ",
        backend.addr
    );
    assert!(c[0].starts_with(&want), "{} vs {want}", c[0]);
    assert!(c[0].ends_with(" 100%"), "{}", c[0]);
    assert!(c[1].starts_with("GET /missing 404 - - - - "), "{}", c[1]);

    let j = lines(&json_log, 2).await;
    let v: serde_json::Value = serde_json::from_str(&j[0]).unwrap();
    assert_eq!(v["code"], 201, "typed number: {v}");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["authority"], "reviews:9080");
    assert_eq!(v["flags"], "-");
    assert_eq!(v["missing"], serde_json::Value::Null);
    assert!(v["mixed"].as_str().unwrap().starts_with("took "), "{v}");
    let v: serde_json::Value = serde_json::from_str(&j[1]).unwrap();
    assert_eq!(v["code"], 404);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_choose_what_is_logged() {
    let dir = temp("filters");
    let errors = dir.join("errors.log");
    let cel = dir.join("cel.log");
    let flags = dir.join("flags.log");
    let backend = Scripted::start(|_, seen| {
        if seen.path == "/boom" {
            status(500)
        } else {
            ok()
        }
    })
    .await;
    let hcm = format!(
        r#"          access_log:
          - name: envoy.access_loggers.file
            filter:
              status_code_filter:
                comparison: {{op: GE, value: {{default_value: 400, runtime_key: unused}}}}
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {errors}
              log_format: {{text_format_source: {{inline_string: "%RESPONSE_CODE% %REQ(:PATH)%\n"}}}}
          - name: envoy.access_loggers.file
            filter:
              extension_filter:
                name: envoy.access_loggers.extension_filters.cel
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter
                  expression: "response.code >= 400 || request.headers['x-debug'] == 'yes'"
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {cel}
              log_format: {{text_format_source: {{inline_string: "%RESPONSE_CODE% %REQ(:PATH)%\n"}}}}
          - name: envoy.access_loggers.file
            filter:
              response_flag_filter: {{flags: [NR, UH]}}
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {flags}
              log_format: {{text_format_source: {{inline_string: "%RESPONSE_FLAGS% %REQ(:PATH)%\n"}}}}
"#,
        errors = errors.display(),
        cel = cel.display(),
        flags = flags.display(),
    );
    let vh = r#"            - name: all
              domains: ["reviews"]
              routes:
              - match: {prefix: /}
                route: {cluster: backend}
"#;
    let p = start(&http_bootstrap_with(
        &hcm,
        "",
        vh,
        &cluster("backend", &[backend.addr], ""),
    ));
    let addr = p.listener_addr("http").unwrap();
    assert_eq!(get(addr, "reviews", "/fine").await.status, 200);
    assert_eq!(get(addr, "reviews", "/boom").await.status, 500);
    let got = send(
        addr,
        req("GET", "reviews", "/debugged", &[("x-debug", "yes")]),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(get(addr, "nowhere", "/unrouted").await.status, 404);
    // The last line each log should get is written before we read them.
    let e = lines(&errors, 2).await;
    assert_eq!(e, vec!["500 /boom", "404 /unrouted"]);
    let c = lines(&cel, 3).await;
    assert_eq!(c, vec!["500 /boom", "200 /debugged", "404 /unrouted"]);
    let f = lines(&flags, 1).await;
    assert_eq!(f, vec!["NR /unrouted"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_operator_is_refused_with_its_name() {
    let hcm = r#"          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: /dev/null
              log_format: {text_format_source: {inline_string: "%NOT_AN_OPERATOR%\n"}}
"#;
    let yaml = http_bootstrap_with(hcm, "", vhosts(), &cluster("backend", &[dead_port()], ""));
    let bootstrap = weft_proxy::bootstrap::parse(&yaml, "test").unwrap();
    let err = weft_proxy::run(
        &bootstrap,
        weft_proxy::Options {
            admin_addr: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("%NOT_AN_OPERATOR%"), "{err}");
    assert!(err.contains("access_log[0]"), "{err}");
}
