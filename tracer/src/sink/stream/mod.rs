//! The live stream: clients of the daemon's unix socket ask for events (with a filter)
//! or for a report. Events reach the clients in batches over a broadcast channel, so a
//! slow client only ever loses its own events (and is told how many), never slows the
//! daemon; a report is asked of the loop that owns the model, with systemd's facts asked
//! beforehand, off that loop.

pub mod json;

use std::{
    io,
    os::unix::fs::PermissionsExt,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::{Semaphore, broadcast, mpsc, oneshot},
};

use crate::{
    clock::BootClock,
    enrich::Enriched,
    event::EventKind,
    filter::Matcher,
    protocol::{BUSY, Filter, Query, Reply, Request},
    sink::conn::{Backoff, Place, Waiting},
    systemd::Snapshot,
};

/// The events of one read of the ring buffer, as the stream's clients get them: one
/// broadcast per batch, not per event. `first` numbers the first event (they are numbered
/// in order), so a client that fell behind knows how many events it missed.
pub struct Batch {
    pub first: u64,
    pub lines: Vec<Enriched>,
}

/// A batch holds at most this many events (a read of a full ring is sent in several) ...
const BATCH_MAX: usize = 64;
/// ... and a client may fall behind by this many batches before it misses events: at most
/// 16384 events held for a slow client, as many seconds of them as 256 reads take.
const BACKLOG_BATCHES: usize = 256;

/// A query on its way to the loop that owns the model, with systemd's facts for it
/// (asked before, off the loop), and where the reply goes.
pub struct Question {
    pub query: Query,
    pub systemd: Option<Snapshot>,
    pub reply: oneshot::Sender<Reply>,
}

/// The daemon's side of the stream: events are pushed as they come and published per
/// read of the ring buffer.
pub struct Publisher {
    tx: broadcast::Sender<Arc<Batch>>,
    /// The number of the next event.
    numbered: u64,
    pending: Vec<Enriched>,
    owners: Owners,
}

/// Live processes' uids, as their execs told (a fork inherits its parent's): what says
/// whose an exit, a signal or a fork is. Bounded by the live processes; a process whose
/// exit was lost is forgotten when the table is past [`MAX_OWNERS`].
#[derive(Default)]
struct Owners(crate::idhash::IdMap<u32, u32>);

const MAX_OWNERS: usize = 1 << 20;

impl Owners {
    fn of(&mut self, e: &Enriched) -> Option<u32> {
        let tgid = e.ev.tgid;
        match &e.ev.kind {
            EventKind::Exec { uid, .. } | EventKind::ExecFailed { uid, .. } => {
                if self.0.len() >= MAX_OWNERS {
                    self.0.clear();
                }
                self.0.insert(tgid, *uid);
                Some(*uid)
            }
            EventKind::Fork { child_pid } => {
                let uid = self.0.get(&tgid).copied()?;
                self.0.insert(*child_pid, uid);
                Some(uid)
            }
            EventKind::Exit { .. } => self.0.remove(&tgid),
            _ => self.0.get(&tgid).copied(),
        }
    }
}

/// What a client of the socket who is not root sees of other users' processes
/// (`socket_others`); root sees everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Others {
    /// Only events of processes of the client's own uid (an event whose process's uid is
    /// not known, such as systemd's own or one running since before the daemon started
    /// and not exec'd since, is not shown).
    #[default]
    Hidden,
    /// Every event; other users' command lines left out (argv empty, marked truncated).
    Redacted,
    /// Everything, as root sees it.
    Shown,
}

/// Who a client is, and so what it sees.
#[derive(Clone, Copy, Debug)]
struct Viewer {
    /// None: root.
    uid: Option<u32>,
    others: Others,
}

/// How an event is shown to a viewer.
#[derive(Debug, PartialEq, Eq)]
enum Sight {
    Whole,
    Redacted,
    Not,
}

impl Viewer {
    fn of(peer_uid: Option<u32>, others: Others) -> Self {
        Self {
            // A peer whose credentials cannot be read is nobody's.
            uid: match peer_uid {
                Some(0) => None,
                Some(uid) => Some(uid),
                None => Some(u32::MAX),
            },
            others,
        }
    }

    fn sees(&self, e: &Enriched) -> Sight {
        match (self.uid, self.others) {
            (None, _) | (_, Others::Shown) => Sight::Whole,
            (Some(me), _) if e.owner == Some(me) => Sight::Whole,
            (_, Others::Redacted) => Sight::Redacted,
            (_, Others::Hidden) => Sight::Not,
        }
    }
}

impl Default for Publisher {
    fn default() -> Self {
        Self::new()
    }
}

impl Publisher {
    pub fn new() -> Self {
        Self {
            tx: broadcast::channel(BACKLOG_BATCHES).0,
            numbered: 0,
            pending: Vec::new(),
            owners: Owners::default(),
        }
    }

    pub fn push(&mut self, mut e: Enriched) {
        e.owner = self.owners.of(&e);
        self.pending.push(e);
    }

    /// Sends what was pushed to the clients, in batches (numbered only, when none listens).
    pub fn publish(&mut self) {
        if self.tx.receiver_count() == 0 {
            self.numbered += self.pending.len() as u64;
            self.pending.clear();
            return;
        }
        // (`pending` keeps its capacity: freeing a large block per read costs glibc a
        // consolidation of its free lists.)
        let mut rest = self.pending.drain(..);
        loop {
            let chunk: Vec<Enriched> = rest.by_ref().take(BATCH_MAX).collect();
            if chunk.is_empty() {
                break;
            }
            let first = self.numbered;
            self.numbered += chunk.len() as u64;
            let _ = self.tx.send(Arc::new(Batch {
                first,
                lines: chunk,
            }));
        }
    }

    /// What the socket's server subscribes each new client to.
    pub fn feed(&self) -> broadcast::Sender<Arc<Batch>> {
        self.tx.clone()
    }
}

/// Binds the daemon's socket (0660, its group `group` when given), where a dead
/// daemon's may be in the way but a live one's answers.
pub fn bind(path: &Path, group: Option<&str>) -> Result<UnixListener, StreamError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| StreamError::Io(format!("creating {}", dir.display()), e))?;
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(StreamError::Running(path.to_owned()));
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)
        .map_err(|e| StreamError::Io(format!("binding {}", path.display()), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| StreamError::Io(format!("chmod of {}", path.display()), e))?;
    if let Some(group) = group {
        let gid = crate::users::group_id(group)
            .map_err(|e| StreamError::Io(format!("looking up socket_group {group}"), e))?
            .ok_or_else(|| StreamError::NoGroup(group.to_owned()))?;
        chown_group(path, gid).map_err(|e| StreamError::Io("chown of the socket".into(), e))?;
    }
    Ok(listener)
}

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("another tracer daemon is running ({} answers)", .0.display())]
    Running(std::path::PathBuf),
    #[error("socket_group {0}: no such group")]
    NoGroup(String),
    #[error("{0}: {1}")]
    Io(String, #[source] io::Error),
}

fn chown_group(path: &Path, gid: u32) -> io::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: a valid NUL-terminated path; uid -1 leaves the owner as it is.
    if unsafe { libc::chown(c.as_ptr(), u32::MAX, gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Clients streaming events at once; one more is told to try later.
const MAX_STREAMING: usize = 64;
/// Reports being asked for at once (each waits for systemd and for the loop) ...
const MAX_ASKING: usize = 8;
/// ... and how many may be asked for: this many at once, then this many a second (each
/// costs the loop that reads the ring buffer a render), by root, and as many again by all
/// other users together, so that they cannot keep root from its answers.
const ASK_BURST: f64 = 20.0;
const ASKS_PER_SECOND: f64 = 10.0;
/// Connections that have not sent their request yet (a new one closes the oldest).
const MAX_WAITING: usize = 64;
/// A request line arrives within this.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// What every client's task shares.
struct Shared {
    others: Others,
    /// systemd, asked for the reports.
    systemd: crate::systemd::Link,
    tx: broadcast::Sender<Arc<Batch>>,
    queries: mpsc::Sender<Question>,
    clients: prometheus::IntGauge,
    clock: BootClock,
    streaming: Arc<Semaphore>,
    asking: Arc<Semaphore>,
    /// Root's allowance of reports, and everyone else's.
    asks: std::sync::Mutex<[crate::rate::Bucket; 2]>,
}

/// Serves the socket: each client gets the feed of events or asks `queries` for a report.
pub async fn serve(
    listener: UnixListener,
    tx: broadcast::Sender<Arc<Batch>>,
    queries: mpsc::Sender<Question>,
    clients: prometheus::IntGauge,
    clock: BootClock,
    others: Others,
) {
    let shared = Arc::new(Shared {
        others,
        systemd: crate::systemd::Link::announcing(),
        tx,
        queries,
        clients,
        clock,
        streaming: Arc::new(Semaphore::new(MAX_STREAMING)),
        asking: Arc::new(Semaphore::new(MAX_ASKING)),
        asks: std::sync::Mutex::new(
            [(); 2].map(|()| crate::rate::Bucket::new(ASK_BURST, ASKS_PER_SECOND, Instant::now())),
        ),
    });
    let waiting = Waiting::new(MAX_WAITING);
    let mut backoff = Backoff::new("the daemon's socket");
    loop {
        let Some((sock, _)) = backoff.accepted(listener.accept().await).await else {
            continue;
        };
        let place = waiting.enter();
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_client(sock, place, &shared).await {
                tracing::debug!("stream client: {e}");
            }
        });
    }
}

/// One client: a request line, then a stream of event lines or one reply.
async fn serve_client(sock: UnixStream, mut place: Place, shared: &Shared) -> io::Result<()> {
    let uid = sock.peer_cred().ok().map(|c| c.uid());
    let viewer = Viewer::of(uid, shared.others);
    let (read, mut write) = sock.into_split();
    let mut reader = BufReader::new(read.take(64 * 1024));
    let mut line = String::new();
    let got = tokio::select! {
        got = tokio::time::timeout(REQUEST_DEADLINE, reader.read_line(&mut line)) => got,
        () = place.evicted() => {
            return reply_error(&mut write, "closed: too many connections waiting to ask").await;
        }
    };
    drop(place);
    let request = match got {
        Ok(Ok(n)) if n > 0 => serde_json::from_str::<serde_json::Value>(&line)
            .map_err(|e| format!("malformed request: {e}")),
        Ok(Ok(_)) => Err("malformed request: empty request".into()),
        Ok(Err(e)) => Err(format!("malformed request: {e}")),
        Err(_) => Err("malformed request: no request within 5 s".into()),
    }
    .and_then(|v| {
        let op_events = v["op"] == "events";
        serde_json::from_value::<Request>(v).map_err(|e| {
            if op_events {
                format!("malformed filter: {e}")
            } else {
                format!("unknown request: {e}")
            }
        })
    });
    let query = match request {
        Ok(Request::Events { filter }) => {
            if let Err(e) = filter.check() {
                return reply_error(&mut write, &format!("malformed filter: {e}")).await;
            }
            let Ok(_streaming) = shared.streaming.try_acquire() else {
                return reply_error(
                    &mut write,
                    &format!("{BUSY}{MAX_STREAMING} clients are streaming already; try later"),
                )
                .await;
            };
            let mut rx = shared.tx.subscribe();
            shared.clients.inc();
            let r = stream_events(&mut write, &mut rx, &filter, viewer, &shared.clock).await;
            shared.clients.dec();
            return r;
        }
        Ok(Request::Query(q)) => q,
        Err(e) => return reply_error(&mut write, &e).await,
    };
    let root = uid == Some(0);
    let within_rate = shared.asks.lock().unwrap_or_else(|e| e.into_inner())[usize::from(!root)]
        .take(Instant::now());
    if !within_rate {
        return reply_error(
            &mut write,
            &format!(
                "{BUSY}more than {ASKS_PER_SECOND} reports a second are asked for{}; try later",
                if root {
                    ""
                } else {
                    " by users other than root"
                }
            ),
        )
        .await;
    }
    let Ok(_asking) = shared.asking.try_acquire() else {
        return reply_error(
            &mut write,
            &format!("{BUSY}{MAX_ASKING} reports are being made already; try later"),
        )
        .await;
    };
    // systemd is asked here, not in the loop that reads the ring buffer.
    let systemd = crate::systemd::facts_for(&query, &shared.systemd).await;
    let (reply_tx, reply_rx) = oneshot::channel();
    let question = Question {
        query,
        systemd,
        reply: reply_tx,
    };
    if shared.queries.send(question).await.is_err() {
        return reply_error(&mut write, "the daemon is stopping").await;
    }
    let reply = reply_rx
        .await
        .unwrap_or_else(|_| Reply::Error("the daemon is stopping".into()));
    write.write_all(reply.to_line().as_bytes()).await
}

async fn reply_error(write: &mut (impl AsyncWriteExt + Unpin), msg: &str) -> io::Result<()> {
    let line = Reply::Error(msg.to_owned()).to_line();
    write.write_all(line.as_bytes()).await?;
    write.shutdown().await
}

/// An event with its command line left out.
fn redacted(ev: &crate::event::Event) -> crate::event::Event {
    let mut ev = ev.clone();
    if let EventKind::Exec {
        argv,
        argv_truncated,
        ..
    } = &mut ev.kind
    {
        argv.clear();
        *argv_truncated = true;
    }
    ev
}

async fn stream_events(
    write: &mut (impl AsyncWriteExt + Unpin),
    rx: &mut broadcast::Receiver<Arc<Batch>>,
    filter: &Filter,
    viewer: Viewer,
    clock: &BootClock,
) -> io::Result<()> {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut filter = Matcher::new(filter.clone());
    // The number of the next event this client expects (None before its first batch).
    let mut next: Option<u64> = None;
    let mut take = |buf: &mut Vec<u8>, batch: &Batch| {
        if let Some(n) = next
            && batch.first > n
        {
            crate::protocol::missed_line(buf, batch.first - n);
        }
        next = Some(batch.first + batch.lines.len() as u64);
        for e in &batch.lines {
            if !filter.matches(e) {
                continue;
            }
            match viewer.sees(e) {
                Sight::Whole => json::write_line(buf, &e.ev, clock, e.cgroup.as_deref()),
                Sight::Redacted => {
                    json::write_line(buf, &redacted(&e.ev), clock, e.cgroup.as_deref());
                }
                Sight::Not => {}
            }
        }
    };
    loop {
        match rx.recv().await {
            Ok(batch) => {
                take(&mut buf, &batch);
                // Take what else is queued without waiting, then write it at once.
                while buf.len() < 60 * 1024 {
                    match rx.try_recv() {
                        Ok(batch) => take(&mut buf, &batch),
                        // The next batch received tells how many events were missed.
                        Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                        Err(_) => break,
                    }
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return Ok(()),
        }
        if !buf.is_empty() {
            write.write_all(&buf).await?;
            buf.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt as _;

    use super::*;
    use crate::testing::{enriched, exec, exit};

    /// An exec by `uid` of process `tgid`.
    fn exec_by(tgid: u32, uid: u32) -> Enriched {
        let mut ev = exec();
        ev.tgid = tgid;
        if let EventKind::Exec { uid: u, .. } = &mut ev.kind {
            *u = uid;
        }
        enriched(ev, None)
    }

    fn exit_of(tgid: u32) -> Enriched {
        let mut ev = exit(0);
        ev.tgid = tgid;
        enriched(ev, None)
    }

    #[test]
    fn an_event_is_its_process_s_owner_s() {
        let mut owners = Owners::default();
        assert_eq!(owners.of(&exec_by(10, 1000)), Some(1000));
        let mut fork = exit_of(10);
        fork.ev.kind = EventKind::Fork { child_pid: 11 };
        assert_eq!(owners.of(&fork), Some(1000), "the parent's");
        assert_eq!(
            owners.of(&exit_of(11)),
            Some(1000),
            "the child inherited it"
        );
        assert_eq!(owners.of(&exit_of(10)), Some(1000));
        assert_eq!(owners.of(&exit_of(10)), None, "forgotten at its exit");
        assert_eq!(owners.0.len(), 0);
    }

    /// Issue 15, finding 1: every member of socket_group saw every user's command lines.
    #[test]
    fn a_client_that_is_not_root_sees_its_own_processes_unless_told_otherwise() {
        let mut mine = exec_by(10, 1000);
        mine.owner = Some(1000);
        let mut theirs = exec_by(20, 1001);
        theirs.owner = Some(1001);
        let systemd = enriched(exit(0), None);
        for (viewer, want) in [
            (
                Viewer::of(Some(0), Others::Hidden),
                [Sight::Whole, Sight::Whole, Sight::Whole],
            ),
            (
                Viewer::of(Some(1000), Others::Hidden),
                [Sight::Whole, Sight::Not, Sight::Not],
            ),
            (
                Viewer::of(Some(1000), Others::Redacted),
                [Sight::Whole, Sight::Redacted, Sight::Redacted],
            ),
            (
                Viewer::of(Some(1000), Others::Shown),
                [Sight::Whole, Sight::Whole, Sight::Whole],
            ),
            (
                Viewer::of(None, Others::Hidden),
                [Sight::Not, Sight::Not, Sight::Not],
            ),
        ] {
            let got = [&mine, &theirs, &systemd].map(|e| viewer.sees(e));
            assert_eq!(got, want, "{viewer:?}");
        }
        match redacted(&theirs.ev).kind {
            EventKind::Exec {
                argv,
                argv_truncated,
                filename,
                ..
            } => {
                assert!(argv.is_empty() && argv_truncated);
                assert_eq!(filename, "/usr/local/bin/mylog.sh");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_read_is_published_in_numbered_batches() {
        let mut p = Publisher::new();
        // Nobody listens: the events are numbered all the same.
        p.push(enriched(exec(), None));
        p.publish();
        let mut rx = p.feed().subscribe();
        for _ in 0..150 {
            p.push(enriched(exec(), None));
        }
        p.publish();
        let sizes: Vec<(u64, usize)> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|b| (b.first, b.lines.len()))
            .collect();
        assert_eq!(sizes, [(1, 64), (65, 64), (129, 22)]);
    }

    #[tokio::test]
    async fn a_slow_client_is_told_how_many_events_it_missed() {
        let mut p = Publisher::new();
        let mut rx = p.feed().subscribe();
        // The client's socket holds little: it stops reading the feed while it waits.
        let (mut client, mut server) = tokio::io::duplex(512);
        let task = tokio::spawn(async move {
            let clock = BootClock::new();
            stream_events(
                &mut server,
                &mut rx,
                &Filter::default(),
                Viewer::of(Some(0), Others::Hidden),
                &clock,
            )
            .await
        });
        p.push(enriched(exec(), None));
        p.publish();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // 400 more batches while it cannot keep up: it is 256 behind at most.
        for _ in 0..400 {
            p.push(enriched(exec(), None));
            p.publish();
        }
        drop(p);
        let mut out = String::new();
        client.read_to_string(&mut out).await.unwrap();
        task.await.unwrap().unwrap();
        let missed: Vec<&str> = out.lines().filter(|l| l.contains("\"missed\"")).collect();
        assert_eq!(missed, [r#"{"kind":"missed","count":144}"#]);
        assert_eq!(
            out.lines().count(),
            1 + 1 + 256,
            "the first, the notice, the rest"
        );
    }
}
