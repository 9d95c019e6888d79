//! Talking to a running daemon over its socket: reports from its model, and the live
//! stream. No daemon (no socket, or nobody answering) is not an error: the caller then
//! works standalone.

use std::{io, path::PathBuf};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    net::{UnixStream, unix::OwnedReadHalf},
};

use crate::protocol::{Filter, Query, Reply, Request};

/// The daemon's socket: $TRACER_SOCKET, or the default runtime directory's.
pub fn socket_path() -> PathBuf {
    std::env::var_os("TRACER_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/tracer/tracer.sock"))
}

async fn connect() -> io::Result<Option<UnixStream>> {
    match UnixStream::connect(socket_path()).await {
        Ok(s) => Ok(Some(s)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Asks the daemon for a report; None when no daemon runs.
pub async fn query(q: &Query) -> anyhow::Result<Option<Reply>> {
    let Some(sock) = connect().await? else {
        return Ok(None);
    };
    let (read, mut write) = sock.into_split();
    write
        .write_all(format!("{}\n", serde_json::to_string(q)?).as_bytes())
        .await?;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    Ok(Some(Reply::from_line(&line)?))
}

/// Subscribes to the daemon's live stream with a filter; None when no daemon runs.
pub async fn events(filter: &Filter) -> anyhow::Result<Option<Lines<BufReader<OwnedReadHalf>>>> {
    let Some(sock) = connect().await? else {
        return Ok(None);
    };
    let (read, mut write) = sock.into_split();
    let req = Request::Events {
        filter: filter.clone(),
    };
    write
        .write_all(format!("{}\n", serde_json::to_string(&req)?).as_bytes())
        .await?;
    // Dropping the write half shuts our side down: the daemon reads nothing after the
    // request, and keeps streaming.
    drop(write);
    Ok(Some(BufReader::new(read).lines()))
}
