//! `tracer daemon`: the composition. One task owns the state and runs the pipeline —
//! ring buffer → decode → enrich → model, the journal recording every record, the
//! metrics counting events and the model's changes, the stream publishing events to its
//! clients, the OTLP exporter (when configured) queueing events and findings — while the
//! socket's clients, the `/metrics` endpoint, the OTLP exporter's posts and the wait for
//! systemd's account of the boot are served beside it.

pub mod config;
mod notify;

use std::{
    fmt::Write as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::Args;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use self::config::Config;
use crate::{
    clock::BootClock,
    decode::{DecodeError, decode},
    enrich::Resolver,
    event::EventKind,
    inspect::DaemonFacts,
    journal::{self, Writer},
    model::{Model, ModelConfig},
    probe::{Managers, Probe, ProbeOptions},
    report,
    sink::{
        journald::{self, Findings},
        metrics::Metrics,
        otlp::{self, Exporter},
        stream::{self, Publisher, Question},
    },
    startup::{self, Early, Started},
    systemd::{self, Snapshot},
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
    /// Overrides pin_dir ("" to pin nothing).
    #[arg(long, value_name = "DIR")]
    pub pin_dir: Option<String>,
    /// At the stop, leave the programs pinned (pin_dir) and recording: the next daemon
    /// drains what they wrote meanwhile (sets detach_on_exit).
    #[arg(long)]
    pub detach_on_exit: bool,
    /// Remove the programs pinned in pin_dir (left by a daemon stopped with
    /// --detach-on-exit) and exit, instead of running.
    #[arg(long, conflicts_with = "detach_on_exit")]
    pub unpin: bool,
    /// With --unpin (the unit's ExecStopPost=, as `--unless-restarting %n`): keep the pins
    /// when pid 1 has a restart job for UNIT queued (`systemctl restart`, a package
    /// upgrade), or when the service failed ($SERVICE_RESULT) and Restart= brings it back.
    #[arg(long, value_name = "UNIT", requires = "unpin")]
    pub unless_restarting: Option<String>,
    /// Never ask systemd (sets ask_systemd = false): the kernel's account alone.
    #[arg(long)]
    pub no_systemd: bool,
}

impl DaemonArgs {
    /// The configuration file's settings, with the flags' overrides.
    fn config(self) -> anyhow::Result<Config> {
        let mut cfg = Config::load(self.config.as_deref())?;
        if let Some(d) = self.state_dir {
            cfg.state_dir = d;
        }
        if let Some(d) = self.runtime_dir {
            cfg.runtime_dir = d;
        }
        if let Some(m) = self.metrics_listen {
            cfg.metrics_listen = m;
        }
        if let Some(r) = self.ring_size {
            cfg.ring_size = r;
        }
        if let Some(p) = self.pin_dir {
            cfg.pin_dir = p;
        }
        if self.no_systemd {
            cfg.ask_systemd = false;
        }
        if self.detach_on_exit {
            cfg.detach_on_exit = true;
        }
        Ok(cfg)
    }
}

pub async fn run(args: DaemonArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let unpin = args.unpin.then(|| args.unless_restarting.clone());
    let cfg = args.config()?;
    if let Some(unless_restarting) = unpin {
        if let Some(unit) = unless_restarting {
            let result = std::env::var("SERVICE_RESULT").ok();
            let jobs = match systemd::Systemd::connect_within(Duration::from_secs(5)).await {
                Ok(sd) => sd.jobs().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let jobs = jobs.unwrap_or_else(|e| {
                eprintln!(
                    "tracer daemon: cannot ask systemd for {unit}'s jobs ({e}): taken for a stop"
                );
                Vec::new()
            });
            if let Some(why) = restarting(&unit, &jobs, result.as_deref()) {
                eprintln!("tracer daemon: the pinned programs stay: {why}");
                return Ok(());
            }
        }
        return unpin_programs(&cfg);
    }
    give_large_blocks_their_own_mappings();
    // Before anything is loaded or written: one daemon per state directory, and the
    // listeners bound (a port in use is a configuration error, said at once).
    let _lock = lock_state_dir(&cfg.state_dir)?;
    let open_files = crate::sink::conn::raise_fd_limit()
        .map_err(|e| tracing::warn!("the limit on open files stays as it is: {e}"))
        .unwrap_or(0);
    let listeners = Listeners::bind(&cfg).await?;
    // systemd's changes are followed from now on, while the programs load: pid 1 starts
    // units at once, and a connection to it takes a while early in boot.
    let (changes_tx, changes_rx) = mpsc::channel(CHANGES_QUEUE);
    let changes_lost = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    if cfg.ask_systemd {
        // ... and who asks for jobs over the system bus, when there is one.
        tokio::spawn(systemd::requests::follow(
            None,
            changes_tx.clone(),
            changes_lost.clone(),
        ));
        tokio::spawn(systemd::watch::follow(changes_tx, changes_lost.clone()));
    } else {
        // (The changes' channel closes with its sender: nothing comes.)
        systemd::stop_asking();
        drop(changes_tx);
    }
    let options = ProbeOptions {
        ring_size: cfg.ring_size,
        batch_delay: Duration::from_millis(cfg.batch_ms),
        failed_execs: cfg.failed_execs,
        pin_dir: cfg.pin_dir(),
        ..ProbeOptions::default()
    };
    // (Off the runtime's one thread, so that the connection is made meanwhile.)
    let start = tokio::task::spawn_blocking(move || startup::start(&options, true))
        .await
        .context("loading the programs")??;
    let attach_ms = start.attached_at.duration_since(started).as_millis();
    let found = (start.running.len(), start.cgroups.len());
    tracing::info!(
        attach_ms = attach_ms as u64,
        processes = found.0,
        cgroups = found.1,
        "tracer daemon: programs attached"
    );
    let boot_id = journal::current_boot_id().context("reading the boot id")?;
    let (mut probe, mut pipeline, drained) = Pipeline::new(&cfg, start, &boot_id)?;
    let pinned = probe.pinned().clone();
    pipeline.metrics.sync_pinned(&pinned, drained);
    if let crate::probe::Pinned::Replaced { why, blind_ms } = &pinned {
        let blind = blind_ms.map_or_else(|| "an unknown time".to_owned(), |ms| format!("{ms} ms"));
        tracing::warn!("replaced pinned programs of {why}; blind for {blind}");
    }

    let (queries_tx, queries) = mpsc::channel(16);
    let (systemd_tx, systemd_rx) = mpsc::channel(1);
    tokio::spawn(systemd::account_when_booted(systemd_tx));
    pipeline.changes_lost = changes_lost;
    let metrics_at = metrics_url(listeners.metrics.as_ref());
    pipeline.serve(listeners, queries_tx, cfg.socket_others);
    let ready = [
        ("attach_ms", attach_ms.to_string()),
        ("processes", found.0.to_string()),
        ("cgroups", found.1.to_string()),
        (
            "journal",
            cfg.journal_dir().join(&boot_id).display().to_string(),
        ),
        ("journal_max_bytes", cfg.journal.max_bytes.to_string()),
        ("socket", cfg.socket_path().display().to_string()),
        ("open_files_limit", open_files.to_string()),
        ("metrics", metrics_at),
        (
            "failed_execs",
            match (cfg.failed_execs, probe.failed_execs()) {
                (_, true) => "caught",
                (false, _) => "off",
                (true, false) => "refused-by-kernel",
            }
            .to_owned(),
        ),
        (
            "otlp",
            pipeline
                .otlp
                .as_ref()
                .map_or_else(|| "off".to_owned(), |x| x.endpoint().to_string()),
        ),
        (
            "access_checks",
            if probe.access_checks() {
                "seen"
            } else {
                "not-seen"
            }
            .to_owned(),
        ),
        (
            "systemd",
            if cfg.ask_systemd { "asked" } else { "off" }.to_owned(),
        ),
        ("pinned", pinned.word().to_owned()),
        ("drained", drained.to_string()),
        (
            "blind_ms",
            match &pinned {
                crate::probe::Pinned::Replaced {
                    blind_ms: Some(ms), ..
                } => ms.to_string(),
                crate::probe::Pinned::Replaced { blind_ms: None, .. } => "unknown".into(),
                _ => "0".into(),
            },
        ),
    ];
    eprintln!("{}", ready_line(&ready));

    // What the start-up needed (the /proc and cgroup walks, the journal's seeding) is freed.
    crate::probe::release_free_memory();
    notify::sd_notify("READY=1\nSTATUS=programs attached, recording");

    let ran = pipeline
        .run(&mut probe, queries, systemd_rx, changes_rx)
        .await;
    pipeline.finish_export().await;
    ran?;
    pipeline.stop(&cfg, &mut probe)
}

/// Whether a stop of `unit` is followed by a start, so that its pins should stay: pid 1
/// has a restart job for it queued (what `systemctl restart` and a package upgrade make),
/// or it failed (`$SERVICE_RESULT` other than success) and Restart=on-failure brings it
/// back. Why, if so.
fn restarting(
    unit: &str,
    jobs: &[(String, String)],
    service_result: Option<&str>,
) -> Option<String> {
    if let Some((_, kind)) = jobs
        .iter()
        .find(|(u, kind)| u == unit && kind.contains("restart"))
    {
        return Some(format!("{unit} has a {kind} job queued"));
    }
    match service_result {
        Some(r) if r != "success" => Some(format!(
            "{unit} stopped with result {r}, and Restart=on-failure starts it again"
        )),
        _ => None,
    }
}

/// `tracer daemon --unpin`: the programs a daemon left pinned, removed (they detach).
fn unpin_programs(cfg: &Config) -> anyhow::Result<()> {
    let Some(dir) = cfg.pin_dir() else {
        eprintln!("tracer daemon: pin_dir is \"\": nothing is pinned");
        return Ok(());
    };
    if !dir.exists() {
        eprintln!("tracer daemon: nothing pinned in {}", dir.display());
        return Ok(());
    }
    let pins = crate::probe::pin::PinDir::open(&dir)?;
    let n = pins.remove()?;
    eprintln!(
        "tracer daemon: removed {n} pinned objects from {}",
        dir.display()
    );
    Ok(())
}

/// systemd's changes not yet taken by the daemon's loop: past these they are left out
/// (and counted), so following systemd never holds up its connection.
const CHANGES_QUEUE: usize = 4096;

/// The daemon's listening sockets, bound before anything else is done.
struct Listeners {
    metrics: Option<tokio::net::TcpListener>,
    stream: tokio::net::UnixListener,
}

impl Listeners {
    /// The sockets: `/metrics` from systemd when it passed one (tracer-metrics.socket,
    /// so that the daemon itself needs no network), else bound as metrics_listen says.
    async fn bind(cfg: &Config) -> anyhow::Result<Self> {
        let passed = notify::listen_fds()
            .into_iter()
            .find(|(name, _)| name == "metrics");
        let metrics = if let Some((_, fd)) = passed {
            let listener = std::net::TcpListener::from(fd);
            listener
                .set_nonblocking(true)
                .context("the /metrics socket systemd passed")?;
            let listener = tokio::net::TcpListener::from_std(listener)
                .context("the /metrics socket systemd passed is not a TCP socket")?;
            tracing::info!(
                "/metrics on the socket systemd passed (tracer-metrics.socket); metrics_listen is not used"
            );
            Some(listener)
        } else if cfg.metrics_listen.is_empty() {
            None
        } else {
            Some(
                tokio::net::TcpListener::bind(&cfg.metrics_listen)
                    .await
                    .with_context(|| {
                        format!(
                            "listening for /metrics on {} (set metrics_listen to a free address, or \"\" for none)",
                            cfg.metrics_listen
                        )
                    })?,
            )
        };
        let stream = stream::bind(&cfg.socket_path(), cfg.socket_group.as_deref())?;
        Ok(Self { metrics, stream })
    }
}

/// Takes the state directory for this daemon alone (an exclusive lock on `daemon.lock` in
/// it, held until the process ends), creating the directory (0700) when it is missing.
fn lock_state_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use std::{
        io::{Read as _, Seek as _, Write as _},
        os::{
            fd::AsRawFd as _,
            unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
        },
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the state directory {}", dir.display()))?;
    let path = dir.join("daemon.lock");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            anyhow::bail!(
                "another tracer daemon (pid {}) uses the state directory {}: stop it, or give this one its own state_dir",
                holder.trim(),
                dir.display()
            );
        }
        return Err(e).with_context(|| format!("locking {}", path.display()));
    }
    f.set_len(0)?;
    f.rewind()?;
    writeln!(f, "{}", std::process::id())?;
    Ok(f)
}

/// The line the daemon prints once it records: `tracer daemon: ready:` and `key=value`
/// fields (a value with a space, `"`, `\` or `=` in double quotes, `"` and `\` escaped),
/// for people and for programs (`cargo xtask bench` reads `attach_ms`).
pub fn ready_line(fields: &[(&str, String)]) -> String {
    let mut line = String::from("tracer daemon: ready:");
    for (key, value) in fields {
        let plain = !value.is_empty()
            && !value
                .chars()
                .any(|c| c.is_whitespace() || c == '"' || c == '\\' || c == '=');
        if plain {
            let _ = write!(line, " {key}={value}");
        } else {
            let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = write!(line, " {key}=\"{escaped}\"");
        }
    }
    line
}

fn metrics_url(listener: Option<&tokio::net::TcpListener>) -> String {
    match listener.map(|l| l.local_addr()) {
        None => "none".into(),
        Some(Ok(addr)) => format!("http://{addr}/metrics"),
        Some(Err(e)) => format!("unknown ({e})"),
    }
}

/// Large blocks (the kernel's BTF, read and parsed twice while the programs load) get
/// their own mappings, returned when freed and grown in place: glibc's default raises that
/// threshold after the first such free, and the next ones then come from the heap, where
/// growing copies them and freeing keeps them resident.
fn give_large_blocks_their_own_mappings() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a tunable.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
    }
}

/// Everything after the ring buffer, owned by the daemon's one task.
struct Pipeline {
    cgroups: Resolver,
    model: Model<DaemonFacts>,
    journal: Writer,
    metrics: Metrics,
    stream: Publisher,
    clock: BootClock,
    journal_errors: u64,
    /// How the file lookups went, for `/metrics`.
    lookups: std::sync::Arc<crate::inspect::LookupCounts>,
    /// Records that did not decode since the last tick, for the probe's count.
    malformed: Vec<DecodeError>,
    /// The service managers whose children's failed access checks are recorded.
    managers: Option<Managers>,
    /// systemd's account of the boot, as recorded when it finished.
    booted: Option<Snapshot>,
    /// That account with the changes systemd announced since folded in, as journaled;
    /// the changes left out (the loop was behind), and how many of those were said.
    account: systemd::changes::Account,
    changes_lost: std::sync::Arc<std::sync::atomic::AtomicU64>,
    changes_lost_said: u64,
    changes_lost_said_at: Option<Instant>,
    /// Findings for the systemd journal (None: turned off), and where the changes whose
    /// moment has come go to have systemd asked about their unit (None: systemd is not
    /// there to be asked).
    findings: Option<Findings>,
    ask_systemd: Option<mpsc::Sender<journald::Pending>>,
    /// Events and findings for the OTLP collector (None: `[otlp]` is off), and what
    /// became of them once its queue was finished at the stop.
    otlp: Option<Exporter>,
    otlp_at_stop: Option<(otlp::Tally, u64)>,
}

impl Pipeline {
    /// Opens this boot's journal, seeds it and the model with what the start-up found.
    /// Returns the records drained from pinned programs resumed, too.
    fn new(cfg: &Config, start: Started, boot_id: &str) -> anyhow::Result<(Probe, Self, u64)> {
        let mut journal = Writer::open(&cfg.journal_dir(), boot_id, cfg.journal.clone())
            .context("opening the journal")?;
        let facts = DaemonFacts::start().context("starting the file lookup workers")?;
        let lookups = facts.lookups.counts.clone();
        let mut model = Model::new(
            facts,
            ModelConfig {
                crash_loop_runs: cfg.crash_loop_runs,
                crash_loop_window_ns: (cfg.crash_loop_window_secs * 1e9) as u64,
                ..ModelConfig::default()
            },
        );
        model.announce_changes();
        let mut probe = start.probe;
        let mut managers = probe.take_managers();
        // The user managers running already; those that start later are seen at their exec.
        for p in &start.running {
            if let (Some(m), Some(exe)) = (managers.as_mut(), &p.exe)
                && Managers::is_user_manager(exe, &p.cmdline)
            {
                m.watch(p.pid);
            }
        }
        // The cgroups the start-up found, journaled (the processes after the backlog of
        // pinned programs, see `seed`): a record that cannot be (the disk full, a frame
        // refused) is counted by the writer and said once; tracing goes on.
        let mut seeded = Vec::new();
        for (id, path) in start.cgroups.iter() {
            seeded.extend(journal.append_cgroup(id, path).err());
        }
        if let Some(e) = seeded.first() {
            tracing::warn!(
                "{} of what the start-up found could not be journaled: {e}",
                seeded.len()
            );
        }
        let journal_errors = seeded.len() as u64;
        let clock = BootClock::new();
        let otlp = Exporter::start(&cfg.otlp, otlp::resource(boot_id), clock)
            .context("the [otlp] section of the configuration")?;
        let otlp_findings = otlp.is_some() && cfg.otlp.findings;
        let findings = Findings::new(&cfg.systemd_journal, boot_id, cfg.crash_loop_window_secs)
            .or_else(|| {
                otlp_findings.then(|| {
                    Findings::unjournaled(&cfg.systemd_journal, boot_id, cfg.crash_loop_window_secs)
                })
            });
        let mut pipeline = Self {
            cgroups: start.cgroups,
            model,
            journal,
            metrics: Metrics::new(cfg.metrics_unit_cap),
            stream: Publisher::new(),
            clock,
            journal_errors,
            lookups,
            malformed: Vec::new(),
            managers,
            booted: None,
            account: systemd::changes::Account::default(),
            changes_lost: Default::default(),
            changes_lost_said: 0,
            changes_lost_said_at: None,
            findings,
            ask_systemd: None,
            otlp,
            otlp_at_stop: None,
        };
        let drained = pipeline.seed(&probe, &start.running, &start.early);
        Ok((probe, pipeline, drained))
    }

    /// The processes the start-up found, then the records the programs wrote while they
    /// were read (with, for pinned programs resumed, what they recorded while no daemon
    /// read them): into the journal and the model in that order, each process once. A
    /// process those records describe (see [`Early::described`]) is left out of the
    /// walk's: its records say more. Returns the records drained from resumed programs.
    fn seed(&mut self, probe: &Probe, running: &[crate::procfs::ProcInfo], early: &Early) -> u64 {
        let described = early.described();
        let (mut failed, mut found) = (Vec::new(), 0);
        for p in running.iter().filter(|p| !described.contains(&p.pid)) {
            self.model.found_at_start(p);
            failed.extend(self.journal.append_process(p).err());
            found += 1;
        }
        if let Some(e) = failed.first() {
            tracing::warn!(
                "{} of the processes the start-up found could not be journaled: {e}",
                failed.len()
            );
        }
        self.journal_errors += failed.len() as u64;
        for raw in early.iter() {
            self.take(raw);
        }
        self.stream.publish();
        if let Err(e) = self.journal.flush() {
            tracing::warn!("the start-up's records could not be written to the journal: {e}");
            self.journal_errors += 1;
        }
        let drained = if *probe.pinned() == crate::probe::Pinned::Resumed {
            early.len() as u64
        } else {
            0
        };
        tracing::info!(
            processes = found,
            early_records = early.len(),
            cgroups = self.cgroups.len(),
            drained,
            "found at start"
        );
        drained
    }

    /// Starts serving `/metrics` (when configured) and the stream socket.
    fn serve(&self, listeners: Listeners, queries: mpsc::Sender<Question>, others: stream::Others) {
        if let Some(listener) = listeners.metrics {
            tokio::spawn(crate::sink::metrics::http::serve(
                listener,
                self.metrics.registry.clone(),
            ));
        }
        tokio::spawn(stream::serve(
            listeners.stream,
            self.stream.feed(),
            queries,
            self.metrics.stream_clients.clone(),
            self.clock,
            others,
        ));
    }

    /// Until SIGINT or SIGTERM: the ring buffer's records, the clients' queries, systemd's
    /// account once boot is done, and the periodic flush. SIGHUP (what `systemctl reload`
    /// and a closed terminal send) writes the journal through to the disk and goes on.
    async fn run(
        &mut self,
        probe: &mut Probe,
        mut queries: mpsc::Receiver<Question>,
        mut systemd: mpsc::Receiver<Snapshot>,
        mut changes: mpsc::Receiver<systemd::changes::Change>,
    ) -> anyhow::Result<()> {
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let mut hangup = signal(SignalKind::hangup())?;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        // Findings' units are asked of systemd off this loop; the answers come back here.
        let (answers_tx, mut answers) = mpsc::channel::<journald::Answer>(64);
        if self.findings.is_some() && systemd::booted_with_systemd() {
            let (tx, rx) = mpsc::channel(64);
            tokio::spawn(journald::ask_systemd(rx, answers_tx));
            self.ask_systemd = Some(tx);
        }
        // Kept by this loop: a loop stalled anywhere stops it.
        let mut watchdog = notify::Watchdog::from_env();
        loop {
            tokio::select! {
                _ = interrupt.recv() => return Ok(()),
                _ = terminate.recv() => return Ok(()),
                _ = hangup.recv() => self.write_through(),
                Some(q) = queries.recv() => {
                    // What systemd forgets on a daemon-reload, its boot account kept.
                    let mut sd = q.systemd;
                    if let (Some(sd), Some(booted)) = (sd.as_mut(), &self.booted) {
                        sd.fill_from(booted);
                    }
                    let sd = self.with_account(&q.query, sd);
                    let _ = q.reply.send(report::answer(&q.query, &self.model, sd.as_ref()));
                }
                Some((pending, unit)) = answers.recv() => self.journal_finding(pending, unit),
                Some(snapshot) = systemd.recv() => {
                    self.record_systemd(&snapshot);
                    self.account.take_snapshot(&snapshot);
                    self.booted = Some(snapshot);
                }
                Some(change) = changes.recv() => self.record_change(change),
                r = probe.read_raw(|raw| self.take(raw)) => {
                    r?;
                    self.stream.publish();
                }
                _ = tick.tick() => {
                    self.tick(probe);
                    if let Some(w) = &mut watchdog {
                        w.pet();
                    }
                }
            }
        }
    }

    /// One ring-buffer record: journaled as it came, then decoded, enriched, applied to
    /// the model, counted, and queued for the stream.
    fn take(&mut self, raw: &[u8]) {
        if self.journal.append_record(raw).is_err() {
            self.journal_errors += 1;
        }
        let ev = match decode(raw) {
            Ok(ev) => ev,
            Err(e) => {
                self.malformed.push(e);
                return;
            }
        };
        if let Some(m) = &mut self.managers {
            m.follow(&ev);
        }
        let e = self.cgroups.enrich(ev);
        let target_unit = match &e.ev.kind {
            EventKind::Signal { target_pid, .. } => self.model.unit_of_pid(*target_pid),
            _ => None,
        };
        self.metrics.observe(&e, target_unit);
        self.model.apply(&e);
        for change in self.model.take_changes() {
            self.metrics.count(&change, &self.clock);
            if let Some(f) = &mut self.findings {
                // (The clock is read for a change only: most records make none.)
                f.note(&change, Instant::now());
            }
        }
        if let Some(x) = &self.otlp {
            x.event(&e);
        }
        self.stream.push(e);
    }

    /// The changes whose moment has come: to systemd's question first when it decides
    /// them, else made entries at once.
    fn findings_due(&mut self) {
        let Some(f) = &mut self.findings else {
            return;
        };
        let now = Instant::now();
        for p in f.due(now) {
            let p = match &self.ask_systemd {
                Some(ask) if p.wants_systemd() => match ask.try_send(p) {
                    Ok(()) => continue,
                    // The questions are behind: this one goes without systemd's account.
                    Err(e) => e.into_inner(),
                },
                _ => p,
            };
            if let Some(entry) = f.entry(&p, &self.model, None) {
                made(f, self.otlp.as_ref(), entry, now);
            }
        }
        self.metrics.sync_findings(&f.counts);
    }

    /// A due change with systemd's account of its unit: the entry it makes, journaled;
    /// or, while systemd is still starting or stopping the unit, asked again later.
    fn journal_finding(&mut self, pending: journald::Pending, unit: Option<systemd::SystemdUnit>) {
        let Some(f) = &mut self.findings else {
            return;
        };
        let now = Instant::now();
        if let Some(u) = &unit
            && !journald::settled(u)
            && pending.tries + 1 < journald::TRIES
        {
            f.retry(pending, now);
            return;
        }
        // What systemd forgets on a daemon-reload, its boot account kept (the system
        // manager's: of the system's units only).
        let mut unit = unit;
        if let (Some(u), Some(booted)) = (unit.as_mut(), &self.booted)
            && pending.unit.user.is_none()
            && let Some(then) = booted.unit(&u.id)
        {
            u.fill_from(then);
        }
        if let Some(u) = unit.as_mut()
            && pending.unit.user.is_none()
        {
            self.account.annotate(u);
        }
        if let Some(entry) = f.entry(&pending, &self.model, unit.as_ref()) {
            made(f, self.otlp.as_ref(), entry, now);
        }
        self.metrics.sync_findings(&f.counts);
    }

    fn record_systemd(&mut self, snapshot: &Snapshot) {
        match self
            .journal
            .append_systemd(snapshot)
            .and_then(|()| self.journal.flush())
        {
            Ok(()) => tracing::info!(
                units = snapshot.units.len(),
                "recorded systemd's account of the boot"
            ),
            Err(e) => {
                self.journal_errors += 1;
                tracing::warn!("journal: {e}");
            }
        }
    }

    /// A change systemd announced: journaled, and folded into its account.
    fn record_change(&mut self, change: systemd::changes::Change) {
        if self.journal.append_systemd_change(&change).is_err() {
            self.journal_errors += 1;
        }
        self.account.apply(&change);
    }

    /// What a report is given of systemd's: what it said when asked just now, with what
    /// only its recorded changes know (how its last job ended); or when it could not be
    /// asked, what it said last as recorded, said to be that.
    fn with_account(
        &self,
        query: &crate::protocol::Query,
        asked: Option<Snapshot>,
    ) -> Option<Snapshot> {
        use crate::protocol::Query;
        match (asked, query) {
            (Some(mut sd), _) => {
                if sd.user.is_none() {
                    for u in &mut sd.units {
                        self.account.annotate(u);
                    }
                }
                Some(sd)
            }
            (None, Query::Why { unit, .. }) if !unit.contains('/') => {
                let u = self.account.unit(&crate::unit::full_unit_name(unit))?;
                tracing::debug!(
                    "systemd could not be asked of {}: its recorded account is used",
                    u.id
                );
                Some(Snapshot {
                    units: vec![u],
                    ..Snapshot::default()
                })
            }
            (None, Query::Units { .. }) => self.account.snapshot(),
            (None, _) => None,
        }
    }

    fn write_through(&mut self) {
        match self.journal.sync() {
            Ok(()) => tracing::info!("SIGHUP: the journal is written through to the disk"),
            Err(e) => {
                self.journal_errors += 1;
                tracing::warn!("journal: {e}");
            }
        }
    }

    fn tick(&mut self, probe: &mut Probe) {
        self.findings_due();
        let lost = self.changes_lost.load(std::sync::atomic::Ordering::Relaxed);
        // (Said at most once a minute.)
        if lost > self.changes_lost_said
            && self
                .changes_lost_said_at
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            self.changes_lost_said_at = Some(Instant::now());
            tracing::warn!(
                "{} of systemd's changes were not recorded ({lost} in all): they came faster than the daemon took them",
                lost - self.changes_lost_said
            );
            self.changes_lost_said = lost;
        }
        if let Err(e) = self.journal.maybe_flush() {
            self.journal_errors += 1;
            tracing::warn!("journal: {e}");
        }
        for e in self.malformed.drain(..) {
            probe.note_malformed(&e);
        }
        probe.mark_read();
        self.metrics.sync(
            probe.kernel_stats().drops,
            self.journal.total_bytes(),
            &self.journal.errors(),
        );
        self.metrics.sync_lookups(&self.lookups);
        if let Some(x) = &self.otlp {
            self.metrics.sync_otlp(x.counts.tally());
        }
        self.metrics
            .sync_probe(probe.malformed(), probe.failed_execs());
    }

    /// The OTLP exporter's queue, given its bounded last try.
    async fn finish_export(&mut self) {
        if let Some(x) = self.otlp.take() {
            self.otlp_at_stop = Some(x.finish().await);
        }
    }

    fn stop(mut self, cfg: &Config, probe: &mut Probe) -> anyhow::Result<()> {
        let t = Instant::now();
        // What the programs wrote until now is journaled; with pins left, what they write
        // from here on waits for the next daemon.
        probe.drain_raw(|raw| self.take(raw));
        self.journal.sync().context("flushing the journal")?;
        let left = probe
            .leave(cfg.detach_on_exit)
            .context("leaving the pinned programs")?;
        let _ = std::fs::remove_file(cfg.socket_path());
        let stats = probe.kernel_stats();
        eprintln!(
            "tracer daemon: stopping; journal flushed in {} ms; {} dropped in the kernel, {} journal write errors, {} malformed; {left}",
            t.elapsed().as_millis(),
            stats.drops,
            self.journal_errors,
            probe.malformed()
        );
        if let Some((t, left)) = self.otlp_at_stop {
            eprintln!(
                "tracer daemon: otlp: {} records offered, {} sent, {} dropped (queue full), {} failed ({left} of them unsent at the stop)",
                t.offered, t.sent, t.dropped, t.failed
            );
        }
        Ok(())
    }
}

/// A finding made: to the OTLP exporter (every one: its queue bounds them), then to the
/// systemd journal (within the unit's rate).
fn made(f: &mut Findings, otlp: Option<&Exporter>, entry: journald::Finding, now: Instant) {
    if let Some(x) = otlp {
        x.finding(&entry);
    }
    f.emit(entry, now);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_line_reads_as_key_value_pairs() {
        let line = ready_line(&[
            ("attach_ms", "33".into()),
            ("journal", "/var/lib/my tracer".into()),
            ("odd", "a\"b\\c=d".into()),
            ("empty", String::new()),
        ]);
        assert_eq!(
            line,
            r#"tracer daemon: ready: attach_ms=33 journal="/var/lib/my tracer" odd="a\"b\\c=d" empty="""#
        );
        assert_eq!(metrics_url(None), "none");
    }

    #[test]
    fn pins_stay_for_a_restart_only() {
        let jobs = |unit: &str, kind: &str| vec![(unit.to_owned(), kind.to_owned())];
        let unit = "tracer.service";
        assert!(restarting(unit, &jobs(unit, "restart"), Some("success")).is_some());
        assert!(restarting(unit, &jobs(unit, "try-restart"), None).is_some());
        // A stop for good, or another unit's restart.
        assert_eq!(restarting(unit, &jobs(unit, "stop"), Some("success")), None);
        assert_eq!(
            restarting(unit, &jobs("other.service", "restart"), None),
            None
        );
        assert_eq!(restarting(unit, &[], None), None);
        // A crash: Restart=on-failure brings it back.
        assert!(restarting(unit, &[], Some("signal")).is_some());
    }

    #[tokio::test]
    async fn the_metrics_url_is_where_the_listener_is() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(
            metrics_url(Some(&l)),
            format!("http://127.0.0.1:{port}/metrics")
        );
    }
}
