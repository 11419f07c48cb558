//! Access logs: Envoy's `envoy.access_loggers.file` and `envoy.access_loggers.stdout` /
//! `stderr`, in Envoy's default text format, a custom format string with Envoy's command
//! operators, or a JSON dictionary (`json_format`), with Envoy's filters (status code,
//! duration, response flags, and/or, CEL expressions).
//!
//! Lines are formatted when the response ends and handed to a writer thread per file over a
//! bounded queue: a request never waits for the disk. When a writer falls behind, lines are
//! dropped and counted.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use http::HeaderName;
use prost::Message;
use weft_xds::envoy::config::accesslog::v3 as al;
use weft_xds::envoy::config::core::v3::{SubstitutionFormatString, data_source};
use weft_xds::envoy::extensions::access_loggers::file::v3 as file;
use weft_xds::envoy::extensions::access_loggers::stream::v3 as stream;
use weft_xds::google::protobuf::{Struct, value::Kind};

use super::cel::{self, Attributes, Value};
use super::{DROPPED_LOG_LINES, Exchange, HttpTelemetry, Telemetry};
use crate::config::{CompileError, Unsupported};
use crate::http::flags::ResponseFlags;

/// Envoy's default access log format.
pub const DEFAULT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

/// Lines queued per writer before new ones are dropped.
const QUEUE: usize = 16 * 1024;

/// One writer: a thread that owns the file and writes what the queue brings.
#[derive(Debug)]
pub struct Sink {
    tx: SyncSender<String>,
}

impl Sink {
    fn start(path: &str) -> std::io::Result<Sink> {
        let out: Box<dyn std::io::Write + Send> = match path {
            "/dev/stdout" => Box::new(std::io::stdout()),
            "/dev/stderr" => Box::new(std::io::stderr()),
            p => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
        };
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("weft-access-log".into())
            .spawn(move || write_loop(rx, out))?;
        Ok(Sink { tx })
    }

    fn send(&self, line: String) {
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                DROPPED_LOG_LINES.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// How often the writer collects queued lines. Polling (instead of waking per line) keeps the
/// request path free of wake-ups: a send is a lock-free push.
const POLL: std::time::Duration = std::time::Duration::from_millis(20);
/// Buffered lines reach the file at least this often (Envoy flushes its access log buffers on
/// an interval too).
const FLUSH: std::time::Duration = std::time::Duration::from_millis(250);

fn write_loop(rx: Receiver<String>, out: Box<dyn std::io::Write + Send>) {
    use std::sync::mpsc::TryRecvError;
    let mut w = std::io::BufWriter::with_capacity(64 * 1024, out);
    let mut last_flush = std::time::Instant::now();
    let mut pending = false;
    loop {
        loop {
            match rx.try_recv() {
                Ok(line) => {
                    let _ = w.write_all(line.as_bytes());
                    pending = true;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    let _ = w.flush();
                    return;
                }
            }
        }
        if pending && last_flush.elapsed() >= FLUSH {
            let _ = w.flush();
            pending = false;
            last_flush = std::time::Instant::now();
        }
        std::thread::sleep(POLL);
    }
}

/// Writers by path, shared by every configuration version.
#[derive(Debug, Default)]
pub struct Sinks {
    by_path: Mutex<HashMap<String, Arc<Sink>>>,
}

impl Sinks {
    fn get(&self, path: &str) -> std::io::Result<Arc<Sink>> {
        let mut m = self.by_path.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = m.get(path) {
            return Ok(Arc::clone(s));
        }
        let s = Arc::new(Sink::start(path)?);
        m.insert(path.to_owned(), Arc::clone(&s));
        Ok(s)
    }
}

/// A header operand: a pseudo-header or a named header, with an alternative.
#[derive(Clone, Debug)]
enum HeaderRef {
    Method,
    Path,
    Authority,
    Scheme,
    RequestId,
    Named(HeaderName),
}

/// One command operator.
#[derive(Clone, Debug)]
enum Op {
    StartTime,
    Req(Vec<HeaderRef>, Option<usize>),
    Resp(Vec<HeaderName>, Option<usize>),
    ResponseCode,
    ResponseFlags,
    ResponseCodeDetails,
    BytesReceived,
    BytesSent,
    Duration,
    UpstreamHost,
    UpstreamCluster,
    DownstreamRemote,
    DownstreamRemoteNoPort,
    Protocol,
    GrpcStatus,
    RequestedServerName,
    RouteName,
    UpstreamLocal,
    DownstreamLocal,
    Literal(String),
    Dash,
}

#[derive(Clone, Debug)]
enum Piece {
    Text(String),
    Op(Op),
}

/// A compiled format: text with operators, or a JSON dictionary of them.
#[derive(Clone, Debug)]
pub struct Format(FormatKind);

#[derive(Clone, Debug)]
enum FormatKind {
    /// A format string.
    Text(Vec<Piece>),
    /// `json_format`: key to format; `typed` renders numbers as numbers.
    Json(Vec<(String, Vec<Piece>)>, bool),
}

fn parse_headers(arg: &str) -> (Vec<String>, Option<usize>) {
    let (names, max) = match arg.rsplit_once("):") {
        Some((n, m)) => (n, m.parse().ok()),
        None => (arg.trim_end_matches(')'), None),
    };
    let names = names.trim_end_matches(')');
    (
        names.split('?').map(|s| s.to_ascii_lowercase()).collect(),
        max,
    )
}

fn parse_op(op: &str, resource: &str, field: &str) -> Result<Op, CompileError> {
    let bad = |reason: String| CompileError::Invalid {
        resource: resource.to_owned(),
        field: field.to_owned(),
        reason,
    };
    if let Some(arg) = op.strip_prefix("REQ(") {
        let (names, max) = parse_headers(arg);
        let refs = names
            .iter()
            .map(|n| match n.as_str() {
                ":method" => Ok(HeaderRef::Method),
                ":path" => Ok(HeaderRef::Path),
                ":authority" | "host" => Ok(HeaderRef::Authority),
                ":scheme" => Ok(HeaderRef::Scheme),
                "x-request-id" => Ok(HeaderRef::RequestId),
                n => HeaderName::from_bytes(n.as_bytes())
                    .map(HeaderRef::Named)
                    .map_err(|_| bad(format!("%{op}%: {n:?} is not a header name"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Op::Req(refs, max));
    }
    if let Some(arg) = op.strip_prefix("RESP(") {
        let (names, max) = parse_headers(arg);
        let refs = names
            .iter()
            .map(|n| {
                HeaderName::from_bytes(n.as_bytes())
                    .map_err(|_| bad(format!("%{op}%: {n:?} is not a header name")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Op::Resp(refs, max));
    }
    if let Some(arg) = op.strip_prefix("ENVIRONMENT(") {
        let (names, max) = parse_headers(arg);
        let name = names
            .first()
            .map(|n| n.to_ascii_uppercase())
            .unwrap_or_default();
        let mut v = std::env::var(&name).unwrap_or_else(|_| "-".into());
        if let Some(m) = max {
            v.truncate(m);
        }
        return Ok(Op::Literal(v));
    }
    if op.starts_with("START_TIME") {
        return Ok(Op::StartTime);
    }
    Ok(match op {
        "RESPONSE_CODE" => Op::ResponseCode,
        "RESPONSE_FLAGS" => Op::ResponseFlags,
        "RESPONSE_CODE_DETAILS" => Op::ResponseCodeDetails,
        "BYTES_RECEIVED" => Op::BytesReceived,
        "BYTES_SENT" => Op::BytesSent,
        "DURATION" => Op::Duration,
        "UPSTREAM_HOST" => Op::UpstreamHost,
        "UPSTREAM_CLUSTER" | "UPSTREAM_CLUSTER_RAW" => Op::UpstreamCluster,
        "DOWNSTREAM_REMOTE_ADDRESS" | "DOWNSTREAM_DIRECT_REMOTE_ADDRESS" => Op::DownstreamRemote,
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT"
        | "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT" => Op::DownstreamRemoteNoPort,
        "PROTOCOL" => Op::Protocol,
        "GRPC_STATUS" | "GRPC_STATUS_NUMBER" => Op::GrpcStatus,
        "REQUESTED_SERVER_NAME" => Op::RequestedServerName,
        "ROUTE_NAME" => Op::RouteName,
        "UPSTREAM_LOCAL_ADDRESS" => Op::UpstreamLocal,
        "DOWNSTREAM_LOCAL_ADDRESS" => Op::DownstreamLocal,
        "HOSTNAME" => Op::Literal(
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "-".into()),
        ),
        "CONNECTION_TERMINATION_DETAILS"
        | "UPSTREAM_TRANSPORT_FAILURE_REASON"
        | "DOWNSTREAM_PEER_URI_SAN"
        | "DOWNSTREAM_LOCAL_URI_SAN"
        | "UPSTREAM_PEER_URI_SAN" => Op::Dash,
        other => {
            return Err(bad(format!(
                "command operator %{other}% is not supported by weft"
            )));
        }
    })
}

fn parse_format(s: &str, resource: &str, field: &str) -> Result<Vec<Piece>, CompileError> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        text.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        // `%%` is a literal percent sign.
        if let Some(r) = after.strip_prefix('%') {
            text.push('%');
            rest = r;
            continue;
        }
        let Some(end) = after.find('%') else {
            return Err(CompileError::Invalid {
                resource: resource.to_owned(),
                field: field.to_owned(),
                reason: format!("unterminated command operator in {s:?}"),
            });
        };
        if !text.is_empty() {
            out.push(Piece::Text(std::mem::take(&mut text)));
        }
        out.push(Piece::Op(parse_op(&after[..end], resource, field)?));
        rest = &after[end + 1..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    Ok(out)
}

impl Format {
    /// Compiles a format string.
    pub fn text(s: &str, resource: &str, field: &str) -> Result<Format, CompileError> {
        Ok(Format(FormatKind::Text(parse_format(s, resource, field)?)))
    }

    fn json(st: &Struct, typed: bool, resource: &str, field: &str) -> Result<Format, CompileError> {
        let mut keys: Vec<&String> = st.fields.keys().collect();
        keys.sort();
        let mut out = Vec::new();
        for k in keys {
            let v = match st.fields.get(k).and_then(|v| v.kind.as_ref()) {
                Some(Kind::StringValue(s)) => parse_format(s, resource, &format!("{field}.{k}"))?,
                Some(Kind::NumberValue(n)) => vec![Piece::Op(Op::Literal(n.to_string()))],
                Some(Kind::BoolValue(b)) => vec![Piece::Op(Op::Literal(b.to_string()))],
                _ => {
                    return Err(CompileError::Invalid {
                        resource: resource.to_owned(),
                        field: format!("{field}.{k}"),
                        reason: "json_format values must be format strings (nested objects are not supported by weft)".into(),
                    });
                }
            };
            out.push((k.clone(), v));
        }
        Ok(Format(FormatKind::Json(out, typed)))
    }

    fn from_substitution(
        f: &SubstitutionFormatString,
        resource: &str,
        field: &str,
    ) -> Result<Format, CompileError> {
        use weft_xds::envoy::config::core::v3::substitution_format_string::Format as F;
        #[allow(deprecated)]
        match &f.format {
            None => Format::text(DEFAULT_FORMAT, resource, field),
            Some(F::TextFormat(s)) => Format::text(s, resource, &format!("{field}.text_format")),
            Some(F::JsonFormat(st)) => {
                Format::json(st, true, resource, &format!("{field}.json_format"))
            }
            Some(F::TextFormatSource(ds)) => match &ds.specifier {
                Some(data_source::Specifier::InlineString(s)) => {
                    Format::text(s, resource, &format!("{field}.text_format_source"))
                }
                Some(data_source::Specifier::InlineBytes(b)) => Format::text(
                    &String::from_utf8_lossy(b),
                    resource,
                    &format!("{field}.text_format_source"),
                ),
                _ => Err(CompileError::Invalid {
                    resource: resource.to_owned(),
                    field: format!("{field}.text_format_source"),
                    reason: "only inline_string and inline_bytes are supported by weft".into(),
                }),
            },
        }
    }

    /// Adds the headers this format prints to the capture lists.
    pub fn headers(&self, req: &mut Vec<HeaderName>, resp: &mut Vec<HeaderName>) {
        let pieces: Vec<&Piece> = match &self.0 {
            FormatKind::Text(p) => p.iter().collect(),
            FormatKind::Json(kv, _) => kv.iter().flat_map(|(_, p)| p.iter()).collect(),
        };
        for p in pieces {
            match p {
                Piece::Op(Op::Req(refs, _)) => {
                    for r in refs {
                        if let HeaderRef::Named(n) = r
                            && !req.contains(n)
                        {
                            req.push(n.clone());
                        }
                    }
                }
                Piece::Op(Op::Resp(names, _)) => {
                    for n in names {
                        if !resp.contains(n) {
                            resp.push(n.clone());
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// A compiled `AccessLogFilter`.
#[derive(Debug)]
pub enum Filter {
    /// `status_code_filter`.
    Status(i32, u32),
    /// `duration_filter` (milliseconds).
    Duration(i32, u32),
    /// `response_flag_filter` (empty: any flag).
    Flags(Vec<ResponseFlags>),
    /// `and_filter`.
    And(Vec<Filter>),
    /// `or_filter`.
    Or(Vec<Filter>),
    /// `grpc_status_filter`: statuses, `exclude`.
    Grpc(Vec<u16>, bool),
    /// The CEL extension filter.
    Cel(cel::Expr),
}

fn compare(op: i32, v: u64, with: u32) -> bool {
    let with = u64::from(with);
    match op {
        1 => v >= with,
        2 => v <= with,
        3 => v != with,
        _ => v == with,
    }
}

const CEL_FILTER: &str = "envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter";

impl Filter {
    fn compile(
        f: &al::AccessLogFilter,
        resource: &str,
        field: &str,
    ) -> Result<Filter, CompileError> {
        use al::access_log_filter::FilterSpecifier as S;
        let bad = |reason: String| CompileError::Invalid {
            resource: resource.to_owned(),
            field: field.to_owned(),
            reason,
        };
        let cmp = |c: &Option<al::ComparisonFilter>| {
            c.as_ref().map_or((0, 0), |c| {
                (c.op, c.value.as_ref().map_or(0, |v| v.default_value))
            })
        };
        Ok(match &f.filter_specifier {
            Some(S::StatusCodeFilter(s)) => {
                let (op, v) = cmp(&s.comparison);
                Filter::Status(op, v)
            }
            Some(S::DurationFilter(d)) => {
                let (op, v) = cmp(&d.comparison);
                Filter::Duration(op, v)
            }
            Some(S::ResponseFlagFilter(r)) => Filter::Flags(
                r.flags
                    .iter()
                    .map(|s| {
                        ResponseFlags::from_short(s).ok_or_else(|| {
                            bad(format!("response flag {s:?} is not supported by weft"))
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some(S::AndFilter(a)) => Filter::And(
                a.filters
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        Filter::compile(f, resource, &format!("{field}.and_filter.filters[{i}]"))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some(S::OrFilter(a)) => Filter::Or(
                a.filters
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        Filter::compile(f, resource, &format!("{field}.or_filter.filters[{i}]"))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some(S::GrpcStatusFilter(g)) => {
                Filter::Grpc(g.statuses.iter().map(|s| *s as u16).collect(), g.exclude)
            }
            Some(S::ExtensionFilter(e)) => {
                use al::extension_filter::ConfigType;
                let Some(ConfigType::TypedConfig(any)) = &e.config_type else {
                    return Err(bad("extension_filter needs typed_config".into()));
                };
                if crate::config::type_name(&any.type_url) != CEL_FILTER {
                    return Err(bad(format!(
                        "extension filter {} is not supported by weft (only {CEL_FILTER})",
                        any.type_url
                    )));
                }
                let ef = weft_xds::envoy::extensions::access_loggers::filters::cel::v3::ExpressionFilter::decode(
                    any.value.as_slice(),
                )
                .map_err(|source| CompileError::Decode {
                    resource: resource.to_owned(),
                    field: field.to_owned(),
                    type_url: any.type_url.clone(),
                    source,
                })?;
                Filter::Cel(
                    cel::parse(&ef.expression)
                        .map_err(|e| bad(format!("expression {:?}: {e}", ef.expression)))?,
                )
            }
            Some(_) => {
                return Err(bad(
                    "this access log filter is not supported by weft (status_code, duration, response_flag, grpc_status, and, or, CEL)".into(),
                ));
            }
            None => return Err(bad("an access log filter needs a filter".into())),
        })
    }

    fn matches(&self, ex: &Exchange, t: &HttpTelemetry, duration_ms: u64) -> bool {
        match self {
            Filter::Status(op, v) => compare(*op, u64::from(ex.code), *v),
            Filter::Duration(op, v) => compare(*op, duration_ms, *v),
            Filter::Flags(list) if list.is_empty() => !ex.flags.is_empty(),
            Filter::Flags(list) => list.iter().any(|f| ex.flags.contains(*f)),
            Filter::And(fs) => fs.iter().all(|f| f.matches(ex, t, duration_ms)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(ex, t, duration_ms)),
            Filter::Grpc(list, exclude) => {
                let s = ex.grpc_status.unwrap_or(if ex.code == 200 { 0 } else { 2 });
                list.contains(&s) != *exclude
            }
            Filter::Cel(e) => e.matches(&Attrs { ex, t, duration_ms }),
        }
    }

    fn headers(&self, out: &mut Vec<String>) {
        match self {
            Filter::And(fs) | Filter::Or(fs) => fs.iter().for_each(|f| f.headers(out)),
            Filter::Cel(e) => e.request_headers(out),
            _ => {}
        }
    }
}

/// A request's attributes for CEL (access log filters, metric label expressions).
pub(crate) struct Attrs<'a> {
    pub ex: &'a Exchange,
    pub t: &'a HttpTelemetry,
    pub duration_ms: u64,
}

impl Attributes for Attrs<'_> {
    fn attribute(&self, path: &str) -> Option<Value> {
        let ex = self.ex;
        Some(match path {
            "response.code" => Value::Int(i64::from(ex.code)),
            "response.grpc_status" => Value::Int(i64::from(ex.grpc_status?)),
            "response.flags" => Value::Int(i64::from(ex.flags.bits())),
            "response.size" => Value::Int(ex.response_body_bytes as i64),
            "response.total_size" => Value::Int(ex.response_bytes as i64),
            "request.size" => Value::Int(ex.request_body_bytes as i64),
            "request.total_size" => Value::Int(ex.request_bytes as i64),
            "request.method" => Value::Str(ex.method.as_str().to_owned()),
            "request.path" => Value::Str(ex.path.clone()?),
            "request.url_path" => Value::Str(ex.path.as_deref()?.split('?').next()?.to_owned()),
            "request.host" => Value::Str(ex.authority.clone()),
            "request.protocol" => Value::Str(protocol(ex).to_owned()),
            "request.id" => Value::Str(ex.request_id.as_ref()?.to_str().ok()?.to_owned()),
            "request.duration" => Value::Int(self.duration_ms as i64),
            "connection.mtls" => Value::Bool(false),
            "upstream.address" => Value::Str(ex.upstream_host?.to_string()),
            "xds.cluster_name" => Value::Str(ex.cluster.as_ref()?.name.clone()),
            _ => return None,
        })
    }

    fn header(&self, response: bool, name: &str) -> Option<Value> {
        let n = HeaderName::from_bytes(name.as_bytes()).ok()?;
        let v = if response {
            self.ex
                .resp_headers
                .get(self.t.resp_header_index(&n)?)?
                .as_ref()?
        } else {
            self.ex
                .req_headers
                .get(self.t.req_header_index(&n)?)?
                .as_ref()?
        };
        Some(Value::Str(v.to_str().ok()?.to_owned()))
    }
}

fn protocol(ex: &Exchange) -> &'static str {
    match ex.version {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_11 => "HTTP/1.1",
        http::Version::HTTP_2 => "HTTP/2",
        _ => "-",
    }
}

/// One access log: where, how, and which requests.
#[derive(Debug)]
pub struct AccessLog {
    /// The line format.
    pub format: Format,
    filter: Option<Filter>,
    sink: Arc<Sink>,
}

const FILE_LOG: &str = "envoy.extensions.access_loggers.file.v3.FileAccessLog";
const STDOUT_LOG: &str = "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog";
const STDERR_LOG: &str = "envoy.extensions.access_loggers.stream.v3.StderrAccessLog";

impl AccessLog {
    /// Compiles one `access_log` entry; an access logger type weft does not have is reported
    /// as unsupported and skipped.
    pub fn compile(
        l: &al::AccessLog,
        shared: &Telemetry,
        resource: &str,
        field: &str,
        warnings: &mut Vec<Unsupported>,
    ) -> Result<Option<AccessLog>, CompileError> {
        let Some(al::access_log::ConfigType::TypedConfig(any)) = &l.config_type else {
            warnings.push(Unsupported {
                resource: resource.to_owned(),
                what: format!("{field} {} without typed_config", l.name),
            });
            return Ok(None);
        };
        let decode = |source| CompileError::Decode {
            resource: resource.to_owned(),
            field: field.to_owned(),
            type_url: any.type_url.clone(),
            source,
        };
        let tc = format!("{field}.typed_config");
        let (path, format) = match crate::config::type_name(&any.type_url) {
            FILE_LOG => {
                let f = file::FileAccessLog::decode(any.value.as_slice()).map_err(decode)?;
                use file::file_access_log::AccessLogFormat as F;
                #[allow(deprecated)]
                let format = match &f.access_log_format {
                    None => Format::text(DEFAULT_FORMAT, resource, &tc)?,
                    Some(F::Format(s)) if s.is_empty() => {
                        Format::text(DEFAULT_FORMAT, resource, &tc)?
                    }
                    Some(F::Format(s)) => Format::text(s, resource, &format!("{tc}.format"))?,
                    Some(F::JsonFormat(st)) => {
                        Format::json(st, false, resource, &format!("{tc}.json_format"))?
                    }
                    Some(F::TypedJsonFormat(st)) => {
                        Format::json(st, true, resource, &format!("{tc}.typed_json_format"))?
                    }
                    Some(F::LogFormat(sf)) => {
                        Format::from_substitution(sf, resource, &format!("{tc}.log_format"))?
                    }
                };
                if f.path.is_empty() {
                    return Err(CompileError::Invalid {
                        resource: resource.to_owned(),
                        field: format!("{tc}.path"),
                        reason: "a file access log needs a path (/dev/stdout for standard output)"
                            .into(),
                    });
                }
                (f.path, format)
            }
            STDOUT_LOG | STDERR_LOG => {
                let f = stream::StdoutAccessLog::decode(any.value.as_slice()).map_err(decode)?;
                let format = match &f.access_log_format {
                    Some(stream::stdout_access_log::AccessLogFormat::LogFormat(sf)) => {
                        Format::from_substitution(sf, resource, &format!("{tc}.log_format"))?
                    }
                    None => Format::text(DEFAULT_FORMAT, resource, &tc)?,
                };
                let path = if crate::config::type_name(&any.type_url) == STDOUT_LOG {
                    "/dev/stdout"
                } else {
                    "/dev/stderr"
                };
                (path.to_owned(), format)
            }
            other => {
                warnings.push(Unsupported {
                    resource: resource.to_owned(),
                    what: format!("{field} access logger {other}"),
                });
                return Ok(None);
            }
        };
        let filter = match &l.filter {
            Some(f) => Some(Filter::compile(f, resource, &format!("{field}.filter"))?),
            None => None,
        };
        let sink = shared.sinks.get(&path).map_err(|e| CompileError::Invalid {
            resource: resource.to_owned(),
            field: format!("{tc}.path"),
            reason: format!("cannot open {path:?} for writing: {e}"),
        })?;
        Ok(Some(AccessLog {
            format,
            filter,
            sink,
        }))
    }

    /// Request headers the filter reads.
    pub fn filter_headers(&self, req: &mut Vec<HeaderName>) {
        let mut names = Vec::new();
        if let Some(f) = &self.filter {
            f.headers(&mut names);
        }
        for n in names {
            if let Ok(h) = HeaderName::from_bytes(n.as_bytes())
                && !req.contains(&h)
            {
                req.push(h);
            }
        }
    }

    /// Formats and queues the line for one request, when the filter lets it through.
    pub(crate) fn log(&self, ex: &Exchange, t: &HttpTelemetry, duration_us: u64) {
        let ms = duration_us / 1000;
        if let Some(f) = &self.filter
            && !f.matches(ex, t, ms)
        {
            return;
        }
        let line = match &self.format.0 {
            FormatKind::Text(pieces) => {
                let mut s = String::with_capacity(320);
                for p in pieces {
                    match p {
                        Piece::Text(txt) => s.push_str(txt),
                        Piece::Op(op) => {
                            if !render_into(op, ex, t, ms, &mut s) {
                                s.push('-');
                            }
                        }
                    }
                }
                s
            }
            FormatKind::Json(kv, typed) => {
                let mut m = serde_json::Map::new();
                for (k, pieces) in kv {
                    let value = match pieces.as_slice() {
                        [Piece::Op(op)] => match render(op, ex, t, ms) {
                            None => serde_json::Value::Null,
                            Some(v) if *typed && numeric(op) => v
                                .parse::<u64>()
                                .map(serde_json::Value::from)
                                .unwrap_or(serde_json::Value::String(v)),
                            Some(v) => serde_json::Value::String(v),
                        },
                        _ => {
                            let mut s = String::new();
                            for p in pieces {
                                match p {
                                    Piece::Text(txt) => s.push_str(txt),
                                    Piece::Op(op) => {
                                        s.push_str(render(op, ex, t, ms).as_deref().unwrap_or("-"))
                                    }
                                }
                            }
                            serde_json::Value::String(s)
                        }
                    };
                    m.insert(k.clone(), value);
                }
                let mut s = serde_json::Value::Object(m).to_string();
                s.push('\n');
                s
            }
        };
        self.sink.send(line);
    }
}

fn numeric(op: &Op) -> bool {
    matches!(
        op,
        Op::ResponseCode | Op::BytesReceived | Op::BytesSent | Op::Duration | Op::GrpcStatus
    )
}

fn truncate(mut s: String, max: Option<usize>) -> String {
    if let Some(m) = max
        && s.len() > m
    {
        let mut cut = m;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// Appends an operator's value to `out` without building it separately first (the common
/// operators); false when it has no value (printed as `-`).
fn render_into(op: &Op, ex: &Exchange, t: &HttpTelemetry, ms: u64, out: &mut String) -> bool {
    use std::fmt::Write as _;
    match op {
        Op::ResponseCode => write!(out, "{}", ex.code).is_ok(),
        Op::ResponseFlags => write!(out, "{}", ex.flags).is_ok(),
        Op::BytesReceived => write!(out, "{}", ex.request_body_bytes).is_ok(),
        Op::BytesSent => write!(out, "{}", ex.response_body_bytes).is_ok(),
        Op::Duration => write!(out, "{ms}").is_ok(),
        Op::UpstreamHost => match ex.upstream_host {
            Some(h) => write!(out, "{h}").is_ok(),
            None => false,
        },
        Op::DownstreamRemote => write!(out, "{}", ex.downstream).is_ok(),
        Op::Protocol => {
            out.push_str(protocol(ex));
            true
        }
        Op::Req(refs, None) => {
            let v = refs.iter().find_map(|r| match r {
                HeaderRef::Method => Some(ex.method.as_str()),
                HeaderRef::Path => ex.path.as_deref(),
                HeaderRef::Authority => Some(ex.authority.as_str()).filter(|a| !a.is_empty()),
                HeaderRef::Scheme => Some("http"),
                HeaderRef::RequestId => ex.request_id.as_ref().and_then(|v| v.to_str().ok()),
                HeaderRef::Named(n) => ex
                    .req_headers
                    .get(t.req_header_index(n)?)?
                    .as_ref()
                    .and_then(|v| v.to_str().ok()),
            });
            match v {
                Some(v) => {
                    out.push_str(v);
                    true
                }
                None => false,
            }
        }
        other => match render(other, ex, t, ms) {
            Some(v) => {
                out.push_str(&v);
                true
            }
            None => false,
        },
    }
}

fn render(op: &Op, ex: &Exchange, t: &HttpTelemetry, ms: u64) -> Option<String> {
    Some(match op {
        Op::StartTime => rfc3339_millis(ex.start_time),
        Op::Req(refs, max) => {
            let v = refs.iter().find_map(|r| match r {
                HeaderRef::Method => Some(ex.method.as_str().to_owned()),
                HeaderRef::Path => ex.path.clone(),
                HeaderRef::Authority => Some(ex.authority.clone()).filter(|a| !a.is_empty()),
                HeaderRef::Scheme => Some("http".to_owned()),
                HeaderRef::RequestId => ex
                    .request_id
                    .as_ref()
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                HeaderRef::Named(n) => ex
                    .req_headers
                    .get(t.req_header_index(n)?)?
                    .as_ref()
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            })?;
            truncate(v, *max)
        }
        Op::Resp(names, max) => {
            let v = names.iter().find_map(|n| {
                ex.resp_headers
                    .get(t.resp_header_index(n)?)?
                    .as_ref()
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })?;
            truncate(v, *max)
        }
        Op::ResponseCode => ex.code.to_string(),
        Op::ResponseFlags => ex.flags.to_string(),
        Op::ResponseCodeDetails => {
            if ex.upstream_host.is_some() && ex.flags.is_empty() {
                "via_upstream".to_owned()
            } else {
                return None;
            }
        }
        Op::BytesReceived => ex.request_body_bytes.to_string(),
        Op::BytesSent => ex.response_body_bytes.to_string(),
        Op::Duration => ms.to_string(),
        Op::UpstreamHost => ex.upstream_host?.to_string(),
        Op::UpstreamCluster => ex.cluster.as_ref()?.name.clone(),
        Op::DownstreamRemote => ex.downstream.to_string(),
        Op::DownstreamRemoteNoPort => ex.downstream.ip().to_string(),
        Op::Protocol => protocol(ex).to_owned(),
        Op::GrpcStatus => ex.grpc_status?.to_string(),
        Op::Literal(s) => s.clone(),
        Op::RequestedServerName
        | Op::RouteName
        | Op::UpstreamLocal
        | Op::DownstreamLocal
        | Op::Dash => return None,
    })
}

/// `2026-11-25T14:48:23.123Z`: Envoy's default `%START_TIME%`.
pub fn rfc3339_millis(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut s = String::with_capacity(24);
    let _ = write!(
        s,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_rfc3339_utc_with_millis() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_764_082_103_123);
        assert_eq!(rfc3339_millis(t), "2025-11-25T14:48:23.123Z");
        assert_eq!(
            rfc3339_millis(std::time::UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn formats_parse_and_unknown_operators_are_named() {
        assert!(Format::text(DEFAULT_FORMAT, "r", "f").is_ok());
        assert!(Format::text("%REQ(X-A?X-B):10% 100%% %DURATION%", "r", "f").is_ok());
        let e = Format::text("%NOPE%", "r", "f").unwrap_err().to_string();
        assert!(e.contains("%NOPE%"), "{e}");
        assert!(Format::text("%DURATION", "r", "f").is_err());
        // Istio's default format, as the control plane sends it.
        let istio = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";
        assert!(Format::text(istio, "r", "f").is_ok());
    }
}
