//! The `/metrics` endpoint: a minimal HTTP/1.1 server that renders the registry when
//! scraped.

use prometheus::{Encoder, Registry, TextEncoder};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

/// The registry in Prometheus's text format.
pub(crate) fn render(registry: &Registry) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut buf) {
        tracing::warn!("encoding metrics: {e}");
    }
    buf
}

/// Serves `GET /metrics`, rendered when asked (the series are atomics the daemon's loop
/// keeps current; nothing is rendered between scrapes).
pub async fn serve(listener: TcpListener, registry: Registry) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let mut head = Vec::with_capacity(1024);
            let mut buf = [0u8; 1024];
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                true
            })
            .await;
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
            let _ = sock.write_all(reply.as_bytes()).await;
            let _ = sock.write_all(&body).await;
            let _ = sock.shutdown().await;
        });
    }
}
