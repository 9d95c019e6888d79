//! A minimal HTTP/1.1 client for OTLP/HTTP: one POST per connection (`Connection:
//! close`), the whole exchange under one timeout, the reply's body bounded. Plain `http://`
//! only: for TLS, point the endpoint at a local collector (an OpenTelemetry Collector on
//! 127.0.0.1:4318) that forwards over TLS.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

/// The most of a reply that is read (an OTLP reply is a few bytes).
const REPLY_MAX: usize = 64 << 10;

/// Where records are posted: `http://HOST[:PORT][/PATH]` (the path defaults to
/// `/v1/logs`, the port to 4318, OTLP/HTTP's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub path: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    #[error(
        "otlp endpoint {0:?}: https is not supported; point it at a collector's plain http receiver on this host (e.g. http://127.0.0.1:4318/v1/logs) and let the collector forward over TLS"
    )]
    Https(String),
    #[error("otlp endpoint {0:?} is not an http:// URL (e.g. http://127.0.0.1:4318/v1/logs)")]
    NotHttp(String),
    #[error("otlp endpoint {0:?}: the port is not a number from 1 to 65535")]
    Port(String),
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Self, EndpointError> {
        if url.starts_with("https://") {
            return Err(EndpointError::Https(url.to_owned()));
        }
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| EndpointError::NotHttp(url.to_owned()))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            // (An IPv6 literal's colons are inside its brackets.)
            Some((h, p)) if !p.contains(']') => (
                h,
                p.parse::<u16>()
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| EndpointError::Port(url.to_owned()))?,
            ),
            _ => (authority, 4318),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || path.contains(char::is_whitespace) {
            return Err(EndpointError::NotHttp(url.to_owned()));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            path: if path.is_empty() || path == "/" {
                "/v1/logs".to_owned()
            } else {
                path.to_owned()
            },
        })
    }

    /// The `Host:` header's value.
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.path)
    }
}

/// A reply: its status and (bounded) body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("connecting to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: std::io::Error,
    },
    #[error("posting to {endpoint}: {source}")]
    Io {
        endpoint: String,
        source: std::io::Error,
    },
    #[error("{endpoint} did not answer within {0:?}", timeout)]
    Timeout { endpoint: String, timeout: Duration },
    #[error("{endpoint} sent a reply that is not HTTP/1.x")]
    Malformed { endpoint: String },
}

/// POSTs a protobuf body; the connect, the write and the read of the reply all within
/// `timeout`.
pub async fn post(endpoint: &Endpoint, body: &[u8], timeout: Duration) -> Result<Reply, PostError> {
    match tokio::time::timeout(timeout, exchange(endpoint, body)).await {
        Ok(r) => r,
        Err(_) => Err(PostError::Timeout {
            endpoint: endpoint.to_string(),
            timeout,
        }),
    }
}

async fn exchange(endpoint: &Endpoint, body: &[u8]) -> Result<Reply, PostError> {
    let mut s = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|source| PostError::Connect {
            endpoint: endpoint.to_string(),
            source,
        })?;
    let io = |source| PostError::Io {
        endpoint: endpoint.to_string(),
        source,
    };
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tracer/{}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        endpoint.path,
        endpoint.authority(),
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    s.write_all(head.as_bytes()).await.map_err(io)?;
    s.write_all(body).await.map_err(io)?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        if reply.len() >= REPLY_MAX || complete(&reply) {
            break;
        }
    }
    parse_reply(&reply).ok_or_else(|| PostError::Malformed {
        endpoint: endpoint.to_string(),
    })
}

/// Where the head ends, and the Content-Length it gives.
fn head_of(reply: &[u8]) -> Option<(usize, Option<usize>)> {
    let end = reply.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&reply[..end]).ok()?;
    let length = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    });
    Some((end, length))
}

/// Whether the whole reply is in (by its Content-Length; without one, at the end of the
/// connection).
fn complete(reply: &[u8]) -> bool {
    matches!(head_of(reply), Some((end, Some(len))) if reply.len() >= end + len)
}

fn parse_reply(reply: &[u8]) -> Option<Reply> {
    let (end, length) = head_of(reply)?;
    let status_line = std::str::from_utf8(&reply[..end]).ok()?.lines().next()?;
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    let body = &reply[end..];
    let body = &body[..length.unwrap_or(body.len()).min(body.len())];
    Some(Reply {
        status,
        body: body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("http://127.0.0.1:4318/v1/logs").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("127.0.0.1", 4318, "/v1/logs")
        );
        let e = Endpoint::parse("http://collector").unwrap();
        assert_eq!(e.to_string(), "http://collector:4318/v1/logs");
        let e = Endpoint::parse("http://[::1]:9/x").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 9));
        assert_eq!(e.to_string(), "http://[::1]:9/x");
        assert!(matches!(
            Endpoint::parse("https://c:4318/v1/logs"),
            Err(EndpointError::Https(_))
        ));
        assert!(matches!(
            Endpoint::parse("c:4318"),
            Err(EndpointError::NotHttp(_))
        ));
        assert!(matches!(
            Endpoint::parse("http://c:0/"),
            Err(EndpointError::Port(_))
        ));
        assert!(matches!(
            Endpoint::parse("http://c:x/"),
            Err(EndpointError::Port(_))
        ));
    }

    #[test]
    fn replies() {
        let r = parse_reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabjunk").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ab"[..]));
        assert!(complete(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert!(!complete(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab"));
        let r = parse_reply(b"HTTP/1.0 503 Busy\r\n\r\nlater").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (503, &b"later"[..]));
        assert!(parse_reply(b"SSH-2.0-OpenSSH\r\n\r\n").is_none());
        assert!(parse_reply(b"HTTP/1.1 200 OK\r\n").is_none());
    }

    #[tokio::test]
    async fn a_post_reaches_a_server_and_its_reply_is_read() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !got.ends_with(b"BODY") {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(got).unwrap()
        });
        let e = Endpoint::parse(&format!("http://127.0.0.1:{port}/v1/logs")).unwrap();
        let r = post(&e, b"BODY", Duration::from_secs(5)).await.unwrap();
        assert_eq!(r.status, 200);
        let request = server.await.unwrap();
        assert!(
            request.starts_with("POST /v1/logs HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains("\r\nContent-Type: application/x-protobuf\r\n"));
        assert!(request.contains("\r\nContent-Length: 4\r\n"));
    }

    #[tokio::test]
    async fn a_server_that_never_answers_is_a_timeout() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let e = Endpoint::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        let r = post(&e, b"x", Duration::from_millis(200)).await;
        assert!(matches!(r, Err(PostError::Timeout { .. })), "{r:?}");
        drop(l);
    }
}
