//! The `/metrics` endpoint: a minimal HTTP/1.1 server that renders the registry when
//! scraped.

use std::time::Duration;

use prometheus::{Encoder, Registry, TextEncoder};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use crate::sink::conn::{Backoff, Waiting};

/// The registry in Prometheus's text format.
pub(crate) fn render(registry: &Registry) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut buf) {
        tracing::warn!("encoding metrics: {e}");
    }
    buf
}

/// Connections at once (each has its request read within [`REQUEST_DEADLINE`]; a new one
/// past these closes the oldest).
const MAX_CONNECTIONS: usize = 64;
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// The answer is written within this, or the connection closed.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// Serves `GET /metrics`, rendered when asked (the series are atomics the daemon's loop
/// keeps current; nothing is rendered between scrapes).
pub async fn serve(listener: TcpListener, registry: Registry) {
    let waiting = Waiting::new(MAX_CONNECTIONS);
    let mut backoff = Backoff::new("/metrics");
    loop {
        let Some((mut sock, _)) = backoff.accepted(listener.accept().await).await else {
            continue;
        };
        let registry = registry.clone();
        let mut place = waiting.enter();
        tokio::spawn(async move {
            let mut head = Vec::with_capacity(1024);
            let mut buf = [0u8; 1024];
            let read = tokio::time::timeout(REQUEST_DEADLINE, async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                true
            });
            let read = tokio::select! {
                r = read => r,
                () = place.evicted() => return,
            };
            drop(place);
            if !matches!(read, Ok(true)) {
                return;
            }
            let line = String::from_utf8_lossy(&head);
            let (status, ctype, body) =
                if line.starts_with("GET /metrics ") || line.starts_with("GET /metrics?") {
                    let body = render(&registry);
                    ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body)
                } else {
                    (
                        "404 Not Found",
                        "text/plain",
                        b"tracer serves /metrics\n".to_vec(),
                    )
                };
            let reply = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = tokio::time::timeout(WRITE_DEADLINE, async {
                sock.write_all(reply.as_bytes()).await?;
                sock.write_all(&body).await?;
                sock.shutdown().await
            })
            .await;
        });
    }
}
