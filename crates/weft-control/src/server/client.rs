//! A small client of the admin API, for the CLI and tests: one HTTP/1.1 request per
//! connection, JSON answers.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// Why a request to the admin API failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not `http://host:port[/prefix]`.
    #[error("invalid control plane URL {0:?}: expected e.g. http://127.0.0.1:15014")]
    Url(String),
    /// No connection could be made.
    #[error(
        "cannot reach the control plane at {addr}: {error} (is `weft control-plane` running? set --control-plane)"
    )]
    Connect {
        /// `host:port`.
        addr: String,
        /// The OS or HTTP error.
        error: String,
    },
    /// The exchange failed midway.
    #[error("request to {url} failed: {0}", url = .1)]
    Http(String, String),
    /// No answer in time.
    #[error("the control plane at {0} did not answer within 30 s")]
    Timeout(String),
    /// The answer is not the expected JSON.
    #[error("unexpected answer from {url}: {error}")]
    Decode {
        /// The URL asked.
        url: String,
        /// What is wrong.
        error: String,
    },
}

/// An answer: HTTP status and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// The body as text.
    pub body: String,
}

impl Answer {
    /// Whether the status is 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, ClientError> {
        serde_json::from_str(&self.body).map_err(|e| ClientError::Decode {
            url: String::new(),
            error: e.to_string(),
        })
    }

    /// The `error` field of a JSON error answer, else the body.
    pub fn error_message(&self) -> String {
        self.json()
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| self.body.trim().to_string())
    }
}

/// The admin API of one control plane.
#[derive(Clone, Debug)]
pub struct AdminClient {
    /// `host:port`.
    authority: String,
    /// Path prefix from the URL, without a trailing slash.
    prefix: String,
}

/// Percent-encodes a path segment or query value (unreserved characters stay).
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl AdminClient {
    /// A client of `url` (`http://127.0.0.1:15014`).
    pub fn new(url: &str) -> Result<AdminClient, ClientError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| ClientError::Url(url.to_string()))?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(ClientError::Url(url.to_string()));
        }
        Ok(AdminClient {
            authority: authority.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// Sends one request; `path` starts with `/`.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<Answer, ClientError> {
        let url = format!("http://{}{}{}", self.authority, self.prefix, path);
        let fut = async {
            let stream = tokio::net::TcpStream::connect(&self.authority)
                .await
                .map_err(|e| ClientError::Connect {
                    addr: self.authority.clone(),
                    error: e.to_string(),
                })?;
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| ClientError::Connect {
                    addr: self.authority.clone(),
                    error: e.to_string(),
                })?;
            let conn_task = tokio::spawn(conn);
            let req = Request::builder()
                .method(method)
                .uri(format!("{}{}", self.prefix, path))
                .header(hyper::header::HOST, &self.authority)
                .header(hyper::header::CONTENT_TYPE, "application/yaml")
                .body(Full::new(Bytes::from(body.unwrap_or_default())))
                .map_err(|e| ClientError::Http(e.to_string(), url.clone()))?;
            let resp = send
                .send_request(req)
                .await
                .map_err(|e| ClientError::Http(e.to_string(), url.clone()))?;
            let status = resp.status().as_u16();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Http(e.to_string(), url.clone()))?
                .to_bytes();
            conn_task.abort();
            Ok(Answer {
                status,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            })
        };
        match tokio::time::timeout(Duration::from_secs(30), fut).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout(url)),
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Answer, ClientError> {
        self.request("GET", path, None).await
    }

    /// `POST path` with a body.
    pub async fn post(&self, path: &str, body: String) -> Result<Answer, ClientError> {
        self.request("POST", path, Some(body)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Result<Answer, ClientError> {
        self.request("DELETE", path, None).await
    }
}
