//! `tracer daemon`: one task owns the state (probe, unit model, journal, metrics); the
//! live stream's clients and the metrics endpoint are served beside it. Events reach the
//! stream clients over a broadcast channel, so a slow client only ever loses its own
//! events (and is told how many), never slows the daemon.

pub mod client;
pub mod config;
pub mod json;

use std::{
    io,
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::Args;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    signal::unix::{SignalKind, signal},
    sync::{broadcast, mpsc, oneshot},
};

use self::config::Config;
use crate::{
    clock::BootClock,
    decode::decode,
    enrich::Enriched,
    event::EventKind,
    journal::{self, Writer},
    metrics::Metrics,
    model::{Model, ModelConfig, facts::LiveFacts},
    probe::ProbeOptions,
    protocol::{Filter, Query, Reply, Request},
    report,
    systemd::Snapshot,
};

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Configuration file (default /etc/tracer/tracer.toml, if it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Overrides state_dir.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Overrides runtime_dir.
    #[arg(long, value_name = "DIR")]
    pub runtime_dir: Option<PathBuf>,
    /// Overrides metrics_listen ("" for none).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Overrides ring_size.
    #[arg(long, value_name = "BYTES")]
    pub ring_size: Option<u32>,
}

/// The events of one read of the ring buffer, as the stream's clients get them: one
/// broadcast per batch, not per event. `first` numbers the first event (they are numbered
/// in order), so a client that fell behind knows how many events it missed.
pub struct Batch {
    pub first: u64,
    pub lines: Vec<Enriched>,
}

/// A batch holds at most this many events (a read of a full ring is sent in several) ...
const STREAM_BATCH_MAX: usize = 64;
/// ... and a client may fall behind by this many batches before it misses events: at most
/// 16384 events held for a slow client, as many seconds of them as 256 reads take.
const STREAM_BACKLOG_BATCHES: usize = 256;

/// A query on its way to the loop that owns the model, with systemd's facts for it
/// (asked before, off the loop), and where the reply goes.
struct Question {
    query: Query,
    systemd: Option<Snapshot>,
    reply: oneshot::Sender<Reply>,
}

type QueryTx = mpsc::Sender<Question>;

pub async fn run(args: DaemonArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut cfg = Config::load(args.config.as_deref())?;
    if let Some(d) = args.state_dir {
        cfg.state_dir = d;
    }
    if let Some(d) = args.runtime_dir {
        cfg.runtime_dir = d;
    }
    if let Some(m) = args.metrics_listen {
        cfg.metrics_listen = m;
    }
    if let Some(r) = args.ring_size {
        cfg.ring_size = r;
    }

    // Large blocks (the kernel's BTF, read and parsed twice while the programs load) get
    // their own mappings, returned when freed and grown in place: glibc's default raises
    // that threshold after the first such free, and the next ones then come from the heap,
    // where growing copies them and freeing keeps them resident.
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a tunable.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
    }
    let start = crate::startup::start(
        &ProbeOptions {
            ring_size: cfg.ring_size,
            batch_delay: Duration::from_millis(cfg.batch_ms),
            failed_execs: cfg.failed_execs,
            ..ProbeOptions::default()
        },
        true,
    )?;
    let attached = start.attached_at.duration_since(started);
    tracing::info!(
        attach_ms = attached.as_millis() as u64,
        processes = start.running.len(),
        cgroups = start.cgroups.len(),
        "tracer daemon: programs attached"
    );

    let boot_id = journal::current_boot_id().context("reading the boot id")?;
    let mut journal = Writer::open(&cfg.journal_dir(), &boot_id, cfg.journal.clone())
        .context("opening the journal")?;
    let mut model = Model::new(
        LiveFacts,
        ModelConfig {
            crash_loop_runs: cfg.crash_loop_runs,
            crash_loop_window_ns: (cfg.crash_loop_window_secs * 1e9) as u64,
            ..ModelConfig::default()
        },
    );
    start.seed(&mut model);
    for (id, path) in start.cgroups.iter() {
        journal.append_cgroup(id, path)?;
    }
    for p in &start.running {
        journal.append_process(p)?;
    }
    journal.flush()?;
    let crate::startup::Started {
        mut probe,
        mut cgroups,
        running,
        ..
    } = start;

    let clock = BootClock::new();
    let mut metrics = Metrics::new(cfg.metrics_unit_cap);
    if !cfg.metrics_listen.is_empty() {
        let listener = tokio::net::TcpListener::bind(&cfg.metrics_listen)
            .await
            .with_context(|| format!("listening for /metrics on {}", cfg.metrics_listen))?;
        tokio::spawn(crate::metrics::serve(listener, metrics.registry.clone()));
    }

    let (tx, _) = broadcast::channel::<Arc<Batch>>(STREAM_BACKLOG_BATCHES);
    let (query_tx, mut query_rx) = mpsc::channel(16);
    let (systemd_tx, mut systemd_rx) = mpsc::channel(1);
    tokio::spawn(record_systemd_when_booted(systemd_tx));
    let listener = bind_socket(&cfg)?;
    tokio::spawn(serve_stream(
        listener,
        tx.clone(),
        query_tx,
        metrics.stream_clients.clone(),
        clock,
    ));
    eprintln!(
        "tracer daemon: attached in {} ms; {} processes and {} cgroups found at start; journal {}; socket {}{}{}",
        attached.as_millis(),
        running.len(),
        cgroups.len(),
        cfg.journal_dir().join(&boot_id).display(),
        cfg.socket_path().display(),
        if cfg.metrics_listen.is_empty() {
            String::new()
        } else {
            format!("; metrics http://{}/metrics", cfg.metrics_listen)
        },
        match (cfg.failed_execs, probe.failed_execs()) {
            (_, true) => "",
            (false, _) => "; failed execs not caught (failed_execs = false)",
            (true, false) => "; failed execs not caught: this kernel refused their programs",
        }
    );

    // What the start-up needed (the /proc and cgroup walks, the journal's seeding) is freed.
    crate::probe::release_free_memory();
    sd_notify("READY=1\nSTATUS=programs attached, recording");

    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut journal_errors = 0u64;
    let mut malformed = Vec::new();
    let mut numbered = 0u64;
    let mut lines = Vec::new();
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            Some(q) = query_rx.recv() => {
                let _ = q.reply.send(report::answer(&q.query, &model, q.systemd.as_ref()));
            }
            Some(snapshot) = systemd_rx.recv() => {
                match journal.append_systemd(&snapshot).and_then(|()| journal.flush()) {
                    Ok(()) => tracing::info!(units = snapshot.units.len(), "recorded systemd's account of the boot"),
                    Err(e) => {
                        journal_errors += 1;
                        tracing::warn!("journal: {e}");
                    }
                }
            }
            r = probe.read_raw(|raw| {
                if journal.append_record(raw).is_err() {
                    journal_errors += 1;
                }
                match decode(raw) {
                    Ok(ev) => {
                        let e = cgroups.enrich(ev);
                        let target_unit = match &e.ev.kind {
                            EventKind::Signal { target_pid, .. } => model.unit_of_pid(*target_pid).map(str::to_owned),
                            _ => None,
                        };
                        metrics.observe(&e, target_unit.as_deref());
                        model.apply(&e);
                        lines.push(e);
                    }
                    Err(e) => malformed.push(e),
                }
            }) => {
                r?;
                if tx.receiver_count() > 0 {
                    // (`lines` keeps its capacity: freeing a large block per read costs
                    // glibc a consolidation of its free lists.)
                    let mut rest = lines.drain(..);
                    loop {
                        let chunk: Vec<Enriched> = rest.by_ref().take(STREAM_BATCH_MAX).collect();
                        if chunk.is_empty() {
                            break;
                        }
                        let first = numbered;
                        numbered += chunk.len() as u64;
                        let _ = tx.send(Arc::new(Batch { first, lines: chunk }));
                    }
                } else {
                    numbered += lines.len() as u64;
                    lines.clear();
                }
            }
            _ = tick.tick() => {
                if let Err(e) = journal.maybe_flush() {
                    journal_errors += 1;
                    tracing::warn!("journal: {e}");
                }
                for e in malformed.drain(..) {
                    probe.note_malformed(&e);
                }
                metrics.sync(&model, &clock, probe.kernel_stats().drops, journal.total_bytes());
            }
        }
    }
    let t = Instant::now();
    journal.sync().context("flushing the journal")?;
    let _ = std::fs::remove_file(cfg.socket_path());
    let stats = probe.kernel_stats();
    eprintln!(
        "tracer daemon: stopping; journal flushed in {} ms; {} dropped in the kernel, {} journal write errors, {} malformed",
        t.elapsed().as_millis(),
        stats.drops,
        journal_errors,
        probe.malformed()
    );
    Ok(())
}

/// Tells systemd (Type=notify) how the service is doing; nothing without $NOTIFY_SOCKET.
fn sd_notify(msg: &str) {
    use std::os::{
        linux::net::SocketAddrExt,
        unix::net::{SocketAddr, UnixDatagram},
    };
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let addr = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(&path),
    };
    let sent = addr.and_then(|a| UnixDatagram::unbound()?.send_to_addr(msg.as_bytes(), &a));
    if let Err(e) = sent {
        tracing::warn!("telling systemd {msg:?} failed: {e}");
    }
}

fn bind_socket(cfg: &Config) -> anyhow::Result<UnixListener> {
    std::fs::create_dir_all(&cfg.runtime_dir)
        .with_context(|| format!("creating {}", cfg.runtime_dir.display()))?;
    let path = cfg.socket_path();
    // A socket left by a daemon that died is in the way; a live daemon answers.
    if std::os::unix::net::UnixStream::connect(&path).is_ok() {
        anyhow::bail!(
            "another tracer daemon is running ({} answers)",
            path.display()
        );
    }
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
    if let Some(group) = &cfg.socket_group {
        let gid =
            group_id(group).with_context(|| format!("socket_group {group}: no such group"))?;
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
        // SAFETY: a valid path; uid -1 leaves the owner as it is.
        if unsafe { libc::chown(c.as_ptr(), u32::MAX, gid) } != 0 {
            return Err(io::Error::last_os_error()).context("chown of the socket");
        }
    }
    Ok(listener)
}

fn group_id(name: &str) -> Option<u32> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

/// Once boot has finished (systemd's FinishTimestamp is set), takes systemd's account of
/// it (its timestamps, every unit's, the ordering dependencies) for the journal, so that
/// `tracer boot` of this boot can use it later. Quietly gives up when systemd is not on
/// D-Bus (pid 1 is not systemd).
async fn record_systemd_when_booted(tx: mpsc::Sender<Snapshot>) {
    use crate::systemd::{Systemd, booted_with_systemd};
    if !booted_with_systemd() {
        tracing::info!(
            "pid 1 is not systemd (no /run/systemd/system): systemd's account of the boot is not recorded"
        );
        return;
    }
    // The daemon starts before the system bus: wait for it, less often as time goes by.
    let mut tries = 0u32;
    let sd = loop {
        match Systemd::connect_within(Duration::from_secs(5)).await {
            Ok(sd) => break sd,
            Err(e) => {
                tries += 1;
                if tries == 60 {
                    tracing::info!(
                        "systemd's own timestamps cannot be recorded yet (still trying every 30 s): {e}"
                    );
                }
                let pause = if tries < 60 { 2 } else { 30 };
                tokio::time::sleep(Duration::from_secs(pause)).await;
            }
        }
    };
    loop {
        match sd.boot_times().await {
            Ok(t) if t.finished() => break,
            Ok(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            Err(e) => {
                tracing::warn!("systemd's own timestamps will not be recorded: {e}");
                return;
            }
        }
    }
    match sd.snapshot().await {
        Ok(s) => {
            let _ = tx.send(s).await;
        }
        Err(e) => tracing::warn!("systemd's own timestamps will not be recorded: {e}"),
    }
}

async fn serve_stream(
    listener: UnixListener,
    tx: broadcast::Sender<Arc<Batch>>,
    queries: QueryTx,
    clients: prometheus::IntGauge,
    clock: BootClock,
) {
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            continue;
        };
        let rx = tx.subscribe();
        let queries = queries.clone();
        let clients = clients.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_client(sock, rx, queries, clients, clock).await {
                tracing::debug!("stream client: {e}");
            }
        });
    }
}

/// One client: a request line, then a stream of event lines or one reply.
async fn serve_client(
    sock: UnixStream,
    mut rx: broadcast::Receiver<Arc<Batch>>,
    queries: QueryTx,
    clients: prometheus::IntGauge,
    clock: BootClock,
) -> io::Result<()> {
    let (read, mut write) = sock.into_split();
    let mut reader = BufReader::new(read.take(64 * 1024));
    let mut line = String::new();
    let got = tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await;
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
            clients.inc();
            let r = stream_events(&mut write, &mut rx, &filter, &clock).await;
            clients.dec();
            return r;
        }
        Ok(Request::Query(q)) => q,
        Err(e) => return reply_error(&mut write, &e).await,
    };
    // systemd is asked here, not in the loop that reads the ring buffer.
    let systemd = crate::systemd::facts_for(&query).await;
    let (reply_tx, reply_rx) = oneshot::channel();
    let question = Question {
        query,
        systemd,
        reply: reply_tx,
    };
    if queries.send(question).await.is_err() {
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

async fn stream_events(
    write: &mut (impl AsyncWriteExt + Unpin),
    rx: &mut broadcast::Receiver<Arc<Batch>>,
    filter: &Filter,
    clock: &BootClock,
) -> io::Result<()> {
    let mut buf = Vec::with_capacity(64 * 1024);
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
            if filter.matches(e) {
                json::write_line(buf, &e.ev, clock, e.cgroup.as_deref());
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
