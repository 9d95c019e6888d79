//! Talking to a running daemon over its socket: reports from its model, and the live
//! stream. No daemon (no socket, or nobody answering) is not an error: the caller then
//! works standalone.

use std::{
    io,
    path::PathBuf,
    time::{Duration, Instant},
};

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

/// How long a report refused for load is asked for again, in all, before the refusal
/// is the answer: the daemon takes a burst of reports, then a few a second, and a script
/// asking for one unit after another should get its answers, more slowly.
const BUSY_RETRY_FOR: Duration = Duration::from_secs(20);
const FIRST_RETRY: Duration = Duration::from_millis(50);
const LONGEST_RETRY: Duration = Duration::from_secs(1);

/// Asks the daemon for a report; None when no daemon runs. A refusal for load is asked
/// again (pauses doubling from 50 ms to 1 s, for up to 20 s).
pub async fn query(q: &Query) -> anyhow::Result<Option<Reply>> {
    let deadline = Instant::now() + BUSY_RETRY_FOR;
    let mut pause = FIRST_RETRY;
    loop {
        match ask(q).await? {
            Some(reply) if reply.is_busy() && Instant::now() + pause < deadline => {
                tracing::debug!("the daemon is busy; asking again in {pause:?}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LONGEST_RETRY);
            }
            reply => return Ok(reply),
        }
    }
}

/// One request for a report, one reply.
async fn ask(q: &Query) -> anyhow::Result<Option<Reply>> {
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
