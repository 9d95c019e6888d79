//! Prometheus metrics: counters fed per event, unit-level series fed by what the model
//! announces, served as text on `/metrics` by a minimal HTTP/1.1 server ([`http`]). Unit labels are bounded:
//! scopes (sessions, `run-*.scope`) fold into `name="_scope"`, units past the cap into
//! `name="_other"`, and `tracer_metrics_folded_total` counts the folding. The daemon's
//! own CPU, memory and open files are read when scraped ([`process`]).

pub mod http;
mod process;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::{
    clock::BootClock,
    enrich::{Enriched, Unit},
    event::EventKind,
    idhash::IdMap,
    journal::JournalErrors,
    model::{Change, StartKind, cause::Cause},
    unit::UnitKind,
};

/// Every series the daemon exports.
pub struct Metrics {
    pub registry: Registry,
    events: IntCounterVec,
    exec: IntCounterVec,
    exec_failures: IntCounterVec,
    exits: IntCounterVec,
    signals: IntCounterVec,
    runs: IntCounterVec,
    restarts: IntCounterVec,
    failures: IntCounterVec,
    crash_loops: IntCounterVec,
    last_start: IntGaugeVec,
    start_duration: Histogram,
    dropped: IntCounter,
    pub stream_clients: IntGauge,
    journal_bytes: IntGauge,
    /// `tracer_journal_errors_total` by op, and the writer's counts it was last synced to.
    journal_errors: IntCounterVec,
    journal_errors_seen: JournalErrors,
    /// `tracer_file_lookups_total` by result, and the counts it was last synced to.
    lookups: IntCounterVec,
    lookups_seen: [u64; 3],
    /// `tracer_systemd_journal_entries_total` by result, and the counts last synced to.
    findings: IntCounterVec,
    findings_seen: crate::sink::journald::Counts,
    /// `tracer_otlp_records_total` by result, and the counts last synced to.
    otlp: IntCounterVec,
    otlp_seen: crate::sink::otlp::Tally,
    malformed: IntCounter,
    malformed_seen: u64,
    failed_execs_caught: IntGauge,
    resumed_pinned: IntGauge,
    backlog_drained: IntCounter,
    folded: IntCounter,
    labels: UnitLabels,
    /// `tracer_events_total` by kind, looked up once.
    by_kind: IdMap<&'static str, IntCounter>,
    /// The per-event series of each unit the resolver interned, looked up once: a cache
    /// of handles (the values live in the registry), emptied when it grows past
    /// [`SERIES_CACHE`].
    by_unit: IdMap<u64, UnitSeries>,
    drops_seen: u64,
}

/// Handles cached past this many units are dropped (and made again when next needed).
const SERIES_CACHE: usize = 4096;

/// The per-event series of one unit.
struct UnitSeries {
    /// Its unit was folded into `_other` (each event counts in the folded total).
    folded: bool,
    label: String,
    /// Made at the first event that counts in them (a series exists once it counted).
    exec: Option<IntCounter>,
    /// success, signal, code
    exits: [Option<IntCounter>; 3],
}

/// The series of a unit (None: the event's cgroup is no unit's, or not known).
fn unit_series<'a>(
    by_unit: &'a mut IdMap<u64, UnitSeries>,
    labels: &mut UnitLabels,
    folded: &IntCounter,
    unit: Option<&Unit>,
) -> &'a mut UnitSeries {
    // (Interned ids start at 1: 0 is name="none".)
    let key = unit.map_or(0, |u| u.id.0);
    if by_unit.len() >= SERIES_CACHE && !by_unit.contains_key(&key) {
        by_unit.clear();
    }
    let mut created = false;
    let series = by_unit.entry(key).or_insert_with(|| {
        created = true;
        let folded_before = folded.get();
        let name = unit.map(|u| label_name(u));
        let label = labels.label(
            unit.zip(name.as_deref()).map(|(u, name)| (name, u.kind)),
            folded,
        );
        UnitSeries {
            folded: folded.get() > folded_before,
            exec: None,
            exits: [None, None, None],
            label,
        }
    });
    if series.folded && !created {
        folded.inc();
    }
    series
}

/// The `name` label of a unit: its name, or for a user manager's unit that manager's
/// (`user@1000.service`): a user's units never share a system unit's series, and however
/// many a user makes they take one label of the cap.
fn label_name(u: &crate::unit::UnitRef) -> std::borrow::Cow<'_, str> {
    match u.user {
        None => std::borrow::Cow::Borrowed(&u.name),
        Some(uid) => std::borrow::Cow::Owned(format!("user@{uid}.service")),
    }
}

/// A unit label past the cap takes the place of one whose units have had no run for this
/// long (its series are removed): the cap is not first come, for ever.
const EVICT_AFTER: Duration = Duration::from_secs(3600);

/// Bounded unit label values.
struct UnitLabels {
    cap: usize,
    admitted: HashMap<String, Admitted>,
    /// Labels given up to make room, whose series are still to be removed.
    evicted: Vec<String>,
    evict_after: Duration,
}

/// An admitted label's units: how many runs are open, and since when that count is what
/// it is.
struct Admitted {
    running: u32,
    since: Instant,
}

impl UnitLabels {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            admitted: HashMap::new(),
            evicted: Vec::new(),
            evict_after: EVICT_AFTER,
        }
    }

    fn label(&mut self, unit: Option<(&str, UnitKind)>, folded: &IntCounter) -> String {
        match unit {
            None => "none".into(),
            Some((_, UnitKind::Scope)) => "_scope".into(),
            Some((name, _)) if self.admitted.contains_key(name) => name.to_owned(),
            Some((name, _)) => {
                let now = Instant::now();
                if self.admitted.len() >= self.cap {
                    match self.longest_idle(now) {
                        Some(old) => {
                            self.admitted.remove(&old);
                            self.evicted.push(old);
                        }
                        None => {
                            folded.inc();
                            return "_other".into();
                        }
                    }
                }
                let fresh = Admitted {
                    running: 0,
                    since: now,
                };
                self.admitted.insert(name.to_owned(), fresh);
                name.to_owned()
            }
        }
    }

    /// The admitted label whose units have had no open run for longest, past
    /// `evict_after`.
    fn longest_idle(&self, now: Instant) -> Option<String> {
        self.admitted
            .iter()
            .filter(|(_, a)| a.running == 0 && now.duration_since(a.since) >= self.evict_after)
            .min_by_key(|(_, a)| a.since)
            .map(|(name, _)| name.clone())
    }

    /// A run of the label's units opened (or, `started` false, ended).
    fn run(&mut self, label: &str, started: bool) {
        if let Some(a) = self.admitted.get_mut(label) {
            a.running = if started {
                a.running + 1
            } else {
                a.running.saturating_sub(1)
            };
            a.since = Instant::now();
        }
    }
}

/// Removes every series of `vec` whose `name` label is `unit`.
fn remove_unit<T: prometheus::core::MetricVecBuilder>(
    vec: &prometheus::core::MetricVec<T>,
    unit: &str,
) {
    use prometheus::core::Collector as _;
    for family in vec.collect() {
        for m in family.get_metric() {
            let labels: HashMap<&str, &str> = m
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            if labels.get("name") == Some(&unit) {
                let _ = vec.remove(&labels);
            }
        }
    }
}

/// The counters by label: name, help, labels.
const COUNTERS: [(&str, &str, &[&str]); 9] = [
    (
        "tracer_events_total",
        "Events received from the kernel, by kind.",
        &["kind"],
    ),
    (
        "tracer_exec_total",
        "Programs executed, by unit.",
        &["name"],
    ),
    (
        "tracer_exec_failures_total",
        "Failed execve/execveat calls, by unit and errno name.",
        &["name", "errno"],
    ),
    (
        "tracer_process_exits_total",
        "Processes that ended, by unit and outcome (success, code, signal).",
        &["name", "outcome"],
    ),
    (
        "tracer_process_signals_total",
        "Terminating signals sent to processes of a unit by another process.",
        &["name", "signal"],
    ),
    (
        "tracer_unit_runs_total",
        "Unit activations seen.",
        &["name"],
    ),
    (
        "tracer_unit_restarts_total",
        "Unit restarts, by reason: automatic (systemd's own, Restart=) or manual (systemctl restart); a start after the unit ended is a run, not a restart.",
        &["name", "reason"],
    ),
    (
        "tracer_unit_failures_total",
        "Failed unit runs, by cause.",
        &["name", "cause"],
    ),
    (
        "tracer_unit_crash_loops_total",
        "Times a unit entered a crash loop (its failed runs reached the model's count within its window).",
        &["name"],
    ),
];

/// Registers a metric, returning it.
fn registered<M: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: M) -> M {
    r.register(Box::new(m.clone())).expect("registered once");
    m
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

impl Metrics {
    /// `unit_cap`: the most unit label values before folding into `_other`.
    pub fn new(unit_cap: usize) -> Self {
        let r = Registry::new();
        let [
            events,
            exec,
            exec_failures,
            exits,
            signals,
            runs,
            restarts,
            failures,
            crash_loops,
        ] = COUNTERS.map(|(name, help, labels)| counter(&r, name, help, labels));
        let last_start = registered(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "tracer_unit_last_start_timestamp_seconds",
                    "Wall-clock time the unit's latest run started.",
                ),
                &["name"],
            )
            .expect("valid metric"),
        );
        let start_duration = registered(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "tracer_unit_start_duration_seconds",
                    "From a unit's cgroup appearing to its main process being executed.",
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
            )
            .expect("valid metric"),
        );
        let int_counter =
            |name, help| registered(&r, IntCounter::new(name, help).expect("valid metric"));
        let dropped = int_counter(
            "tracer_events_dropped_total",
            "Kernel records lost because the ring buffer was full.",
        );
        let folded = int_counter(
            "tracer_metrics_folded_total",
            "Unit label values folded into name=\"_other\" by the series cap.",
        );
        let malformed = int_counter(
            "tracer_records_malformed_total",
            "Kernel records that did not decode (left out; logged once per burst).",
        );
        let gauge = |name, help| registered(&r, IntGauge::new(name, help).expect("valid metric"));
        let failed_execs_caught = gauge(
            "tracer_failed_execs_caught",
            "1 when failed execs are caught; 0 when failed_execs is off or the kernel refused their programs.",
        );
        let resumed_pinned = gauge(
            "tracer_resumed_pinned_programs",
            "1 when the daemon resumed the programs a previous daemon left pinned (what they recorded meanwhile drained); 0 when it loaded them.",
        );
        let backlog_drained = int_counter(
            "tracer_backlog_records_drained_total",
            "Records the pinned programs wrote while no daemon ran, drained at the start.",
        );
        let stream_clients = gauge("tracer_stream_clients", "Connected live-stream clients.");
        let journal_bytes = gauge(
            "tracer_journal_bytes",
            "Bytes of the on-disk event journal.",
        );
        let ops = JournalErrors::default().by_op().map(|(op, _)| op);
        let journal_errors = counter(
            &r,
            "tracer_journal_errors_total",
            &format!(
                "Journal operations that failed, and frames not recorded, by op ({}).",
                ops.join(", ")
            ),
            &["op"],
        );
        for op in ops {
            journal_errors.with_label_values(&[op]);
        }
        let lookups = counter(
            &r,
            "tracer_file_lookups_total",
            "Looks at a refused exec's file, by result (done; rate-limited: past the user's rate; refused: the queue full or the lookups hung).",
            &["result"],
        );
        for (result, _) in crate::inspect::LookupCounts::default().by_result() {
            lookups.with_label_values(&[result]);
        }
        let findings = counter(
            &r,
            "tracer_systemd_journal_entries_total",
            "Findings for the systemd journal, by result (sent; rate-limited: past the unit's rate; unavailable: no journal socket, or it refused; busy: journald's queue full; too-large; queue-full: too many waiting).",
            &["result"],
        );
        for (result, _) in crate::sink::journald::Counts::default().by_result() {
            findings.with_label_values(&[result]);
        }
        let otlp = counter(
            &r,
            "tracer_otlp_records_total",
            "Events and findings for the OTLP collector, by result (sent: taken by it; dropped: the queue was full; failed: given up after the retries, refused or rejected by the collector, or unsent at the stop).",
            &["result"],
        );
        for (result, _) in crate::sink::otlp::Tally::default().by_result() {
            otlp.with_label_values(&[result]);
        }
        let build = registered(
            &r,
            IntGaugeVec::new(
                Opts::new("tracer_build_info", "The running tracer's version."),
                &["version"],
            )
            .expect("valid metric"),
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        registered(&r, process::SelfProcess::new());
        Self {
            registry: r,
            events,
            exec,
            exec_failures,
            exits,
            signals,
            runs,
            restarts,
            failures,
            crash_loops,
            last_start,
            start_duration,
            dropped,
            stream_clients,
            journal_bytes,
            journal_errors,
            journal_errors_seen: JournalErrors::default(),
            lookups,
            lookups_seen: [0; 3],
            findings,
            findings_seen: crate::sink::journald::Counts::default(),
            otlp,
            otlp_seen: crate::sink::otlp::Tally::default(),
            malformed,
            malformed_seen: 0,
            failed_execs_caught,
            resumed_pinned,
            backlog_drained,
            folded,
            labels: UnitLabels::new(unit_cap),
            by_kind: IdMap::default(),
            by_unit: IdMap::default(),
            drops_seen: 0,
        }
    }

    /// The label of a unit known by its model key (a user's unit's key names its manager
    /// first: `user@1000.service/nginx.service`).
    fn unit_name_label(&mut self, key: &str) -> String {
        let name = key.split_once('/').map_or(key, |(manager, _)| manager);
        let kind = if name.ends_with(".scope") {
            UnitKind::Scope
        } else {
            UnitKind::Service
        };
        self.labels.label(Some((name, kind)), &self.folded)
    }

    /// Counts one event; `target_unit` is the unit of a signal's target.
    pub fn observe(&mut self, e: &Enriched, target_unit: Option<&str>) {
        let ev = &e.ev;
        let kind = ev.kind_name();
        match self.by_kind.get(kind) {
            Some(c) => c.inc(),
            None => {
                let c = self.events.with_label_values(&[kind]);
                c.inc();
                self.by_kind.insert(kind, c);
            }
        }
        match &ev.kind {
            EventKind::Exec { .. } => {
                let UnitSeries { exec, label, .. } = unit_series(
                    &mut self.by_unit,
                    &mut self.labels,
                    &self.folded,
                    e.unit.as_deref(),
                );
                exec.get_or_insert_with(|| self.exec.with_label_values(&[label]))
                    .inc();
            }
            EventKind::ExecFailed { errno, .. } => {
                let u = &unit_series(
                    &mut self.by_unit,
                    &mut self.labels,
                    &self.folded,
                    e.unit.as_deref(),
                )
                .label;
                let name = errno
                    .name()
                    .map_or_else(|| errno.0.to_string(), str::to_owned);
                self.exec_failures.with_label_values(&[u, &name]).inc();
            }
            EventKind::Exit { status, .. } => {
                let outcome = if status.success() {
                    0
                } else if status.signal().is_some() {
                    1
                } else {
                    2
                };
                let UnitSeries { exits, label, .. } = unit_series(
                    &mut self.by_unit,
                    &mut self.labels,
                    &self.folded,
                    e.unit.as_deref(),
                );
                exits[outcome]
                    .get_or_insert_with(|| {
                        let name = ["success", "signal", "code"][outcome];
                        self.exits.with_label_values(&[label.as_str(), name])
                    })
                    .inc();
            }
            EventKind::Signal { signal, .. } => {
                let u = match target_unit {
                    Some(name) => self.unit_name_label(name),
                    None => "none".into(),
                };
                self.signals
                    .with_label_values(&[&u, &signal.to_string()])
                    .inc();
            }
            _ => {}
        }
        self.forget_evicted();
    }

    /// The daemon's own series: what the kernel dropped, the journal's size and what
    /// failed in it (the counts since the journal was opened).
    pub fn sync(&mut self, drops: u64, journal_bytes: u64, journal_errors: &JournalErrors) {
        if drops > self.drops_seen {
            self.dropped.inc_by(drops - self.drops_seen);
            self.drops_seen = drops;
        }
        self.journal_bytes.set(journal_bytes as i64);
        for ((op, now), (_, seen)) in journal_errors
            .by_op()
            .into_iter()
            .zip(self.journal_errors_seen.by_op())
        {
            if now > seen {
                self.journal_errors
                    .with_label_values(&[op])
                    .inc_by(now - seen);
            }
        }
        self.journal_errors_seen = *journal_errors;
    }

    /// What the probe says of itself: records that did not decode (since it started), and
    /// whether failed execs are caught.
    pub fn sync_probe(&mut self, malformed: u64, failed_execs_caught: bool) {
        if malformed > self.malformed_seen {
            self.malformed.inc_by(malformed - self.malformed_seen);
            self.malformed_seen = malformed;
        }
        self.failed_execs_caught.set(i64::from(failed_execs_caught));
    }

    /// How the programs came to run, and the records drained from pinned ones resumed.
    pub fn sync_pinned(&mut self, pinned: &crate::probe::Pinned, drained: u64) {
        self.resumed_pinned
            .set(i64::from(*pinned == crate::probe::Pinned::Resumed));
        self.backlog_drained.inc_by(drained);
    }

    /// The file lookups' counts (since the daemon started).
    pub fn sync_lookups(&mut self, counts: &crate::inspect::LookupCounts) {
        let now = counts.by_result();
        for ((result, n), seen) in now.iter().zip(&mut self.lookups_seen) {
            if *n > *seen {
                self.lookups.with_label_values(&[result]).inc_by(*n - *seen);
                *seen = *n;
            }
        }
    }

    /// What became of the findings for the systemd journal (since the daemon started).
    pub fn sync_findings(&mut self, counts: &crate::sink::journald::Counts) {
        let seen = self.findings_seen.by_result();
        for ((result, n), (_, before)) in counts.by_result().iter().zip(seen) {
            if *n > before {
                self.findings
                    .with_label_values(&[result])
                    .inc_by(*n - before);
            }
        }
        self.findings_seen = *counts;
    }

    /// `tracer_otlp_records_total` brought up to the exporter's counts.
    pub fn sync_otlp(&mut self, tally: crate::sink::otlp::Tally) {
        let seen = self.otlp_seen.by_result();
        for ((result, n), (_, before)) in tally.by_result().iter().zip(seen) {
            if *n > before {
                self.otlp.with_label_values(&[result]).inc_by(*n - before);
            }
        }
        self.otlp_seen = tally;
    }

    /// Counts what the model announced.
    pub fn count(&mut self, change: &Change, clock: &BootClock) {
        match change {
            Change::RunStarted {
                unit,
                start,
                started_ns,
                ..
            } => {
                let label = self
                    .labels
                    .label(Some((&label_name(unit), unit.kind)), &self.folded);
                self.labels.run(&label, true);
                self.runs.with_label_values(&[&label]).inc();
                let reason = match start {
                    StartKind::AutomaticRestart => Some("automatic"),
                    StartKind::Manual { .. } => Some("manual"),
                    StartKind::ManualStart { .. }
                    | StartKind::Again
                    | StartKind::First
                    | StartKind::FoundAtStart => None,
                };
                if let Some(reason) = reason {
                    self.restarts.with_label_values(&[&label, reason]).inc();
                }
                let wall = clock
                    .wall(*started_ns)
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                self.last_start
                    .with_label_values(&[&label])
                    .set(wall.as_secs() as i64);
            }
            Change::MainStarted { after_ns, .. } => {
                self.start_duration.observe(*after_ns as f64 / 1e9);
            }
            Change::RunOutcome {
                unit,
                failed,
                cause,
                ..
            } => {
                let label = self
                    .labels
                    .label(Some((&label_name(unit), unit.kind)), &self.folded);
                self.labels.run(&label, false);
                if *failed {
                    let cause = cause.as_ref().map_or("unknown", cause_name);
                    self.failures.with_label_values(&[&label, cause]).inc();
                }
            }
            Change::CrashLoop { unit } => {
                let label = self
                    .labels
                    .label(Some((&label_name(unit), unit.kind)), &self.folded);
                self.crash_loops.with_label_values(&[&label]).inc();
            }
        }
        self.forget_evicted();
    }

    /// Removes the series of labels given up to make room (and the cached handles, which
    /// would count into removed series).
    fn forget_evicted(&mut self) {
        if self.labels.evicted.is_empty() {
            return;
        }
        for unit in std::mem::take(&mut self.labels.evicted) {
            for vec in [
                &self.exec,
                &self.exec_failures,
                &self.exits,
                &self.signals,
                &self.runs,
                &self.restarts,
                &self.failures,
                &self.crash_loops,
            ] {
                remove_unit(vec, &unit);
            }
            remove_unit(&self.last_start, &unit);
        }
        self.by_unit.clear();
    }
}

/// The `cause` label of a failure: the cause's kind, as the JSON reports name it.
fn cause_name(c: &Cause) -> &'static str {
    match c {
        Cause::ExecFailed { .. } => "exec-failed",
        Cause::SetupFailed { .. } => "setup-failed",
        Cause::ExitCode { .. } => "exit-code",
        Cause::Killed { .. } => "killed",
        Cause::OomKilled { .. } => "oom-killed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        testing::{enriched, exec},
        unit::unit_of_cgroup,
    };

    /// Every one of `lines` is a line of the rendered text.
    fn has_lines(text: &str, lines: &[&str]) {
        for line in lines {
            assert!(text.lines().any(|l| l == *line), "{line} in:\n{text}");
        }
    }

    fn rendered(m: &Metrics) -> String {
        String::from_utf8(http::render(&m.registry)).unwrap()
    }

    fn started(path: &str, start: StartKind) -> Change {
        Change::RunStarted {
            unit: unit_of_cgroup(path).unwrap(),
            run: 1,
            start,
            started_ns: 1_000_000_000,
        }
    }

    #[test]
    fn unit_labels_past_the_cap_fold_and_scopes_share_one() {
        let mut m = Metrics::new(2);
        let clock = BootClock::new();
        for path in [
            "/system.slice/a.service",
            "/system.slice/b.service",
            "/system.slice/c.service",
            "/user.slice/user-0.slice/session-1.scope",
            "/system.slice/a.service",
        ] {
            m.count(&started(path, StartKind::First), &clock);
        }
        let text = rendered(&m);
        has_lines(
            &text,
            &[
                "tracer_unit_runs_total{name=\"a.service\"} 2",
                "tracer_unit_runs_total{name=\"b.service\"} 1",
                "tracer_unit_runs_total{name=\"_other\"} 1",
                "tracer_unit_runs_total{name=\"_scope\"} 1",
                "tracer_metrics_folded_total 1",
            ],
        );
    }

    /// Issue 15, finding 5: the cap was first come, never freed: units that came and went
    /// (anyone's with a delegated cgroup) kept real units folded into `_other` for ever.
    #[test]
    fn a_label_idle_past_its_time_makes_room_for_a_new_unit() {
        let mut m = Metrics::new(2);
        m.labels.evict_after = Duration::ZERO;
        let clock = BootClock::new();
        let ended = |path: &str| Change::RunOutcome {
            unit: unit_of_cgroup(path).unwrap(),
            run: 1,
            failed: false,
            cause: None,
        };
        m.count(
            &started("/system.slice/a.service", StartKind::First),
            &clock,
        );
        m.count(
            &started("/system.slice/b.service", StartKind::First),
            &clock,
        );
        // Both running: a third folds.
        m.count(
            &started("/system.slice/c.service", StartKind::First),
            &clock,
        );
        m.count(&ended("/system.slice/a.service"), &clock);
        // a.service has no run open: d.service takes its place, and a's series go.
        m.count(
            &started("/system.slice/d.service", StartKind::First),
            &clock,
        );
        let text = rendered(&m);
        has_lines(
            &text,
            &[
                "tracer_unit_runs_total{name=\"b.service\"} 1",
                "tracer_unit_runs_total{name=\"d.service\"} 1",
                "tracer_unit_runs_total{name=\"_other\"} 1",
            ],
        );
        assert!(!text.contains("name=\"a.service\""), "{text}");
        // A running unit is never given up.
        m.count(
            &started("/system.slice/e.service", StartKind::First),
            &clock,
        );
        assert!(rendered(&m).contains("name=\"b.service\""));
    }

    /// Issue 15, finding 5: a user's units took labels of the cap one by one (and a user
    /// unit named like a system one counted into its series).
    #[test]
    fn a_user_s_units_count_under_their_manager() {
        let mut m = Metrics::new(2);
        let clock = BootClock::new();
        let user = "/user.slice/user-1000.slice/user@1000.service/app.slice";
        for path in [
            "/system.slice/a.service".to_owned(),
            format!("{user}/a.service"),
            format!("{user}/b.service"),
            format!("{user}/c.service"),
            "/system.slice/b.service".to_owned(),
        ] {
            m.count(&started(&path, StartKind::First), &clock);
        }
        let text = rendered(&m);
        has_lines(
            &text,
            &[
                "tracer_unit_runs_total{name=\"a.service\"} 1",
                "tracer_unit_runs_total{name=\"user@1000.service\"} 3",
                "tracer_metrics_folded_total 1",
                "tracer_unit_runs_total{name=\"_other\"} 1",
            ],
        );
    }

    #[test]
    fn the_model_s_changes_are_counted() {
        let mut m = Metrics::new(10);
        let clock = BootClock::new();
        let unit = unit_of_cgroup("/system.slice/a.service").unwrap();
        m.count(
            &started("/system.slice/a.service", StartKind::AutomaticRestart),
            &clock,
        );
        m.count(
            &Change::MainStarted {
                unit: unit.clone(),
                run: 1,
                after_ns: 20_000_000,
            },
            &clock,
        );
        m.count(
            &Change::RunOutcome {
                unit: unit.clone(),
                run: 1,
                failed: true,
                cause: Some(Cause::ExitCode {
                    code: 3,
                    pid: 9,
                    program: "/bin/false".into(),
                    command: None,
                }),
            },
            &clock,
        );
        m.count(
            &Change::RunOutcome {
                unit: unit.clone(),
                run: 2,
                failed: false,
                cause: None,
            },
            &clock,
        );
        m.count(&Change::CrashLoop { unit }, &clock);
        let text = rendered(&m);
        has_lines(
            &text,
            &[
                "tracer_unit_restarts_total{name=\"a.service\",reason=\"automatic\"} 1",
                "tracer_unit_failures_total{cause=\"exit-code\",name=\"a.service\"} 1",
                "tracer_unit_crash_loops_total{name=\"a.service\"} 1",
                "tracer_unit_start_duration_seconds_count 1",
                "tracer_unit_start_duration_seconds_bucket{le=\"0.05\"} 1",
                "tracer_unit_start_duration_seconds_bucket{le=\"0.01\"} 0",
            ],
        );
    }

    #[test]
    fn what_the_probe_says_of_itself_is_exported() {
        let mut m = Metrics::new(10);
        m.sync_probe(0, false);
        assert!(rendered(&m).contains("tracer_failed_execs_caught 0"));
        m.sync_probe(4, true);
        m.sync_probe(4, true);
        let text = rendered(&m);
        assert!(text.contains("tracer_records_malformed_total 4"), "{text}");
        assert!(text.contains("tracer_failed_execs_caught 1"), "{text}");
        assert!(text.contains("tracer_resumed_pinned_programs 0"), "{text}");
        m.sync_pinned(&crate::probe::Pinned::Resumed, 17);
        let text = rendered(&m);
        assert!(text.contains("tracer_resumed_pinned_programs 1"), "{text}");
        assert!(
            text.contains("tracer_backlog_records_drained_total 17"),
            "{text}"
        );
    }

    #[test]
    fn file_lookups_are_exported_by_result() {
        let mut m = Metrics::new(10);
        let counts = crate::inspect::LookupCounts::default();
        m.sync_lookups(&counts);
        assert!(rendered(&m).contains("tracer_file_lookups_total{result=\"refused\"} 0"));
        counts
            .done
            .fetch_add(3, std::sync::atomic::Ordering::Relaxed);
        counts
            .rate_limited
            .fetch_add(2, std::sync::atomic::Ordering::Relaxed);
        m.sync_lookups(&counts);
        m.sync_lookups(&counts);
        let text = rendered(&m);
        has_lines(
            &text,
            &[
                "tracer_file_lookups_total{result=\"done\"} 3",
                "tracer_file_lookups_total{result=\"rate-limited\"} 2",
            ],
        );
    }

    #[test]
    fn findings_for_the_systemd_journal_are_exported_by_result() {
        let mut m = Metrics::new(10);
        let mut counts = crate::sink::journald::Counts::default();
        m.sync_findings(&counts);
        assert!(
            rendered(&m).contains("tracer_systemd_journal_entries_total{result=\"unavailable\"} 0")
        );
        counts.sent = 4;
        counts.rate_limited = 7;
        m.sync_findings(&counts);
        m.sync_findings(&counts);
        has_lines(
            &rendered(&m),
            &[
                "tracer_systemd_journal_entries_total{result=\"sent\"} 4",
                "tracer_systemd_journal_entries_total{result=\"rate-limited\"} 7",
            ],
        );
    }

    #[test]
    fn otlp_records_are_exported_by_result() {
        let mut m = Metrics::new(10);
        assert!(rendered(&m).contains("tracer_otlp_records_total{result=\"dropped\"} 0"));
        let mut t = crate::sink::otlp::Tally {
            offered: 9,
            sent: 5,
            dropped: 3,
            failed: 1,
        };
        m.sync_otlp(t);
        t.sent = 6;
        m.sync_otlp(t);
        m.sync_otlp(t);
        has_lines(
            &rendered(&m),
            &[
                "tracer_otlp_records_total{result=\"sent\"} 6",
                "tracer_otlp_records_total{result=\"dropped\"} 3",
                "tracer_otlp_records_total{result=\"failed\"} 1",
            ],
        );
    }

    #[test]
    fn journal_errors_are_exported_by_operation() {
        let mut m = Metrics::new(10);
        m.sync(0, 100, &JournalErrors::default());
        let text = rendered(&m);
        for (op, _) in JournalErrors::default().by_op() {
            has_lines(
                &text,
                &[&format!("tracer_journal_errors_total{{op=\"{op}\"}} 0")],
            );
        }
        let errors = JournalErrors {
            rotate: 3,
            write: 1,
            ..JournalErrors::default()
        };
        m.sync(0, 100, &errors);
        m.sync(0, 100, &errors);
        let text = rendered(&m);
        has_lines(
            &text,
            &[
                "tracer_journal_errors_total{op=\"rotate\"} 3",
                "tracer_journal_errors_total{op=\"write\"} 1",
                "tracer_journal_errors_total{op=\"flush\"} 0",
            ],
        );
    }

    #[test]
    fn events_count_under_their_unit() {
        let mut m = Metrics::new(10);
        let e = enriched(exec(), Some("/system.slice/mylog.service"));
        m.observe(&e, None);
        m.observe(&e, None);
        m.observe(&enriched(exec(), None), None);
        let text = rendered(&m);
        has_lines(
            &text,
            &[
                "tracer_exec_total{name=\"mylog.service\"} 2",
                "tracer_exec_total{name=\"none\"} 1",
                "tracer_events_total{kind=\"exec\"} 3",
            ],
        );
    }
}
