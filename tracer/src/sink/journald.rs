//! Findings in the systemd journal: one structured entry per failed run (its cause and
//! the fix, as `tracer why` says them), timeout, OOM kill, crash loop and restart, with
//! `OBJECT_SYSTEMD_UNIT=` so that `journalctl -u UNIT` and `systemctl status UNIT` show
//! them, a `MESSAGE_ID` per kind (the long text is in tracer/dist/tracer.catalog,
//! `journalctl -x`), and `TRACER_*` fields for programs.
//!
//! It follows the model's changes, never the model itself: [`Findings::note`] takes a
//! change on the event path (a push onto a bounded queue, nothing else); once its moment
//! has come (a failure waits a little, so that the file lookups and systemd's own account
//! of it are in), the daemon asks systemd for the unit off the loop, and the loop makes
//! the entry from the model's account of that run ([`Findings::entry`]) and sends it
//! ([`Findings::emit`]): rate-limited per unit, a non-blocking datagram ([`wire`]).

pub mod wire;

use std::{
    collections::{HashMap, VecDeque},
    path::PathBuf,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use crate::{
    model::{Change, Model, StartKind, cause::Cause, facts::Facts},
    rate::Bucket,
    report::{term::printable, why},
    systemd::SystemdUnit,
    unit::{UnitKind, UnitRef},
};

/// `[systemd_journal]` in tracer.toml.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JournaldConfig {
    /// Write findings to the systemd journal.
    pub enabled: bool,
    /// journald's native socket.
    pub socket: PathBuf,
    /// Entries per unit at once ...
    pub burst: u32,
    /// ... then one more per this many seconds.
    pub refill_secs: f64,
}

impl Default for JournaldConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            socket: PathBuf::from(wire::SOCKET),
            burst: 5,
            refill_secs: 60.0,
        }
    }
}

/// The kinds of finding, each with its MESSAGE_ID (tracer/dist/tracer.catalog has their
/// long text; the ids are fixed, made once with `systemd-id128 new`'s format).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A run failed: its cause and the fix.
    Failure,
    /// systemd gave up waiting (Result=timeout).
    Timeout,
    /// The kernel's OOM killer ended the run.
    OomKill,
    /// Failed runs within the window reached the crash-loop count.
    CrashLoop,
    /// A unit started again after a run: by systemd (Restart=) or by systemctl.
    Restart,
}

impl Kind {
    #[cfg(test)]
    pub const ALL: [Kind; 5] = [
        Kind::Failure,
        Kind::Timeout,
        Kind::OomKill,
        Kind::CrashLoop,
        Kind::Restart,
    ];

    pub fn message_id(self) -> &'static str {
        match self {
            Kind::Failure => "8652b949182b4d948932779599e03b8e",
            Kind::Timeout => "0473718f2f9a44a3b075e526315095fe",
            Kind::OomKill => "6b5982be98fe4476a9c505d6a61008d2",
            Kind::CrashLoop => "fead4a71ccaa4823b7d51e95e4544964",
            Kind::Restart => "29f8fac88655418b8e151b6f0f025a59",
        }
    }

    /// `TRACER_KIND=`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Failure => "failure",
            Kind::Timeout => "timeout",
            Kind::OomKill => "oom-kill",
            Kind::CrashLoop => "crash-loop",
            Kind::Restart => "restart",
        }
    }
}

/// syslog priorities (sd-daemon(3)).
const LOG_ERR: u8 = 3;
const LOG_WARNING: u8 = 4;
const LOG_NOTICE: u8 = 5;
const LOG_INFO: u8 = 6;

/// A change that may become an entry, waiting for its moment.
#[derive(Clone, Debug)]
pub struct Pending {
    pub unit: UnitRef,
    pub run: usize,
    what: What,
    due: Instant,
    /// How often systemd was asked already (its account was of a start still under way).
    pub tries: u8,
}

#[derive(Clone, Debug, PartialEq)]
enum What {
    /// A run's main process ended: failed, or killed (a timeout shows as systemd's SIGTERM).
    Outcome,
    CrashLoop,
    Restart(StartKind),
}

impl Pending {
    /// The unit's name as the model and systemd know it.
    pub fn key(&self) -> String {
        self.unit.key().into_owned()
    }

    /// Whether systemd's account decides it (a failure: systemd's verdict; not a restart).
    pub fn wants_systemd(&self) -> bool {
        self.what == What::Outcome && self.unit.user.is_none()
    }
}

/// A failure is made an entry this long after the kernel saw it end: the look at a refused
/// file, and systemd's verdict, are in by then.
const SETTLE: Duration = Duration::from_millis(300);
/// systemd's account of a start still under way is asked again after this long, at most
/// [`TRIES`] times in all.
const RETRY: Duration = Duration::from_secs(1);
pub const TRIES: u8 = 3;
/// Changes waiting at most: past this many, new ones are dropped and counted.
const QUEUE: usize = 256;
/// Units whose rate is tracked at most: past this, the one idle longest is forgotten.
const UNITS: usize = 1024;

/// What became of the findings, for `/metrics`
/// (`tracer_systemd_journal_entries_total{result}`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub sent: u64,
    /// Past a unit's rate: not journaled, said in its next entry that is.
    pub rate_limited: u64,
    /// The journal's socket is missing or refuses the writer.
    pub unavailable: u64,
    /// journald's queue was full (the writer does not wait).
    pub busy: u64,
    /// Too large for a datagram, and the memfd could not be passed.
    pub too_large: u64,
    /// More changes waiting than the queue holds.
    pub queue_full: u64,
}

impl Counts {
    /// By the `result` label.
    pub fn by_result(&self) -> [(&'static str, u64); 6] {
        [
            ("sent", self.sent),
            ("rate-limited", self.rate_limited),
            ("unavailable", self.unavailable),
            ("busy", self.busy),
            ("too-large", self.too_large),
            ("queue-full", self.queue_full),
        ]
    }
}

/// One unit's rate: a token bucket, and what it held back since its last entry.
struct UnitRate {
    bucket: Bucket,
    suppressed: u64,
    used: Instant,
}

/// The findings sink.
pub struct Findings {
    cfg: JournaldConfig,
    writer: Option<wire::Writer>,
    boot_id: String,
    crash_loop_window_secs: f64,
    pending: VecDeque<Pending>,
    rates: HashMap<String, UnitRate>,
    pub counts: Counts,
    /// The journal was found unavailable and said so; said again once it takes entries.
    said_unavailable: bool,
}

/// A finding made from the model, before the rate decides whether it is journaled.
#[derive(Clone, Debug)]
pub struct Finding {
    pub unit: String,
    pub kind: Kind,
    pub priority: u8,
    pub message: String,
    /// Everything but MESSAGE, PRIORITY and the rate's count.
    pub fields: wire::Entry,
}

impl Findings {
    /// None when the configuration turns them off.
    pub fn new(cfg: &JournaldConfig, boot_id: &str, crash_loop_window_secs: f64) -> Option<Self> {
        if !cfg.enabled {
            return None;
        }
        Some(Self::make(cfg, boot_id, crash_loop_window_secs))
    }

    /// Findings made for another sink (OTLP) while the systemd journal's are off: made
    /// as they would be, [`Findings::emit`] sends none.
    pub fn unjournaled(cfg: &JournaldConfig, boot_id: &str, crash_loop_window_secs: f64) -> Self {
        let cfg = JournaldConfig {
            enabled: false,
            ..cfg.clone()
        };
        Self::make(&cfg, boot_id, crash_loop_window_secs)
    }

    fn make(cfg: &JournaldConfig, boot_id: &str, crash_loop_window_secs: f64) -> Self {
        let writer = match cfg.enabled.then(|| wire::Writer::new(&cfg.socket)) {
            None => None,
            Some(Ok(w)) => Some(w),
            Some(Err(e)) => {
                tracing::warn!(
                    "findings are not written to the systemd journal: no socket to send with: {e}"
                );
                None
            }
        };
        Self {
            cfg: cfg.clone(),
            writer,
            boot_id: boot_id.to_owned(),
            crash_loop_window_secs,
            pending: VecDeque::new(),
            rates: HashMap::new(),
            counts: Counts::default(),
            said_unavailable: false,
        }
    }

    /// Takes one of the model's changes (the event path: a push, no lookup, no write).
    pub fn note(&mut self, change: &Change, now: Instant) {
        let (unit, run, what, due) = match change {
            Change::RunOutcome {
                unit,
                run,
                failed,
                cause,
            } if *failed || matches!(cause, Some(Cause::Killed { .. })) => {
                (unit, *run, What::Outcome, now + SETTLE)
            }
            Change::CrashLoop { unit } => (unit, 0, What::CrashLoop, now + SETTLE),
            Change::RunStarted {
                unit, run, start, ..
            } if matches!(
                start,
                StartKind::AutomaticRestart
                    | StartKind::Manual { .. }
                    | StartKind::ManualStart { .. }
            ) =>
            {
                (unit, *run, What::Restart(start.clone()), now)
            }
            _ => return,
        };
        // Slices and scopes are no service's runs: sessions, `systemd-run --scope`.
        if matches!(unit.kind, UnitKind::Slice | UnitKind::Scope) {
            return;
        }
        if self.pending.len() >= QUEUE {
            self.counts.queue_full += 1;
            return;
        }
        self.pending.push_back(Pending {
            unit: unit.clone(),
            run,
            what,
            due,
            tries: 0,
        });
    }

    /// The changes whose moment has come, in order.
    pub fn due(&mut self, now: Instant) -> Vec<Pending> {
        let mut due = Vec::new();
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].due <= now {
                due.extend(self.pending.remove(i));
            } else {
                i += 1;
            }
        }
        due
    }

    /// Puts back a change whose unit systemd has not settled yet.
    pub fn retry(&mut self, mut p: Pending, now: Instant) {
        p.tries += 1;
        p.due = now + RETRY;
        if self.pending.len() >= QUEUE {
            self.counts.queue_full += 1;
        } else {
            self.pending.push_back(p);
        }
    }

    /// The entry a change makes, from the model's account of the run and systemd's of the
    /// unit (None: nothing to journal, e.g. systemd counts the run a success).
    pub fn entry<F: Facts>(
        &self,
        p: &Pending,
        model: &Model<F>,
        sd: Option<&SystemdUnit>,
    ) -> Option<Finding> {
        let h = model.unit(&p.key())?;
        let key = h.unit.key().into_owned();
        let mut fields = wire::Entry::default();
        let object = |fields: &mut wire::Entry, kind: Kind, run: usize| {
            fields.add("MESSAGE_ID", kind.message_id());
            fields.add("SYSLOG_IDENTIFIER", "tracer");
            match h.unit.user {
                None => {
                    fields.add("OBJECT_SYSTEMD_UNIT", &h.unit.name);
                }
                Some(uid) => {
                    fields.add("OBJECT_SYSTEMD_UNIT", format!("user@{uid}.service"));
                    fields.add("OBJECT_SYSTEMD_USER_UNIT", &h.unit.name);
                    fields.add("OBJECT_UID", uid.to_string());
                }
            }
            fields.add("TRACER_KIND", kind.name());
            fields.add("TRACER_UNIT", &key);
            if run > 0 {
                fields.add("TRACER_RUN", run.to_string());
            }
            fields.add("TRACER_BOOT_ID", &self.boot_id);
            fields.add("TRACER_RUNS", h.runs.len().to_string());
            fields.add("TRACER_RESTARTS", h.restarts().to_string());
        };
        match &p.what {
            What::Restart(start) => {
                let index = h.runs.iter().position(|r| r.number == p.run)?;
                let previous = index.checked_sub(1).and_then(|i| h.runs.get(i));
                let before = previous.map_or_else(String::new, |r| {
                    match r.outcome.as_ref().and_then(|o| o.cause.as_ref()) {
                        Some(c) if r.failed() => {
                            format!(" after run {} failed: {}", r.number, c.summary())
                        }
                        _ if r.failed() => format!(" after run {} failed", r.number),
                        _ => format!(" after run {}", r.number),
                    }
                });
                object(&mut fields, Kind::Restart, p.run);
                let (message, priority) = match start {
                    StartKind::Manual { by_pid, command }
                    | StartKind::ManualStart { by_pid, command } => {
                        fields.add(
                            "TRACER_START",
                            if matches!(start, StartKind::Manual { .. }) {
                                "manual"
                            } else {
                                "manual-start"
                            },
                        );
                        fields.add("TRACER_BY_PID", by_pid.to_string());
                        fields.add("TRACER_BY_COMMAND", command);
                        (
                            format!(
                                "{key}: run {} started by {command} (pid {by_pid}){before}",
                                p.run
                            ),
                            LOG_INFO,
                        )
                    }
                    _ => {
                        fields.add("TRACER_START", "automatic-restart");
                        (
                            format!(
                                "{key}: run {} started: restarted by systemd (Restart=){before}",
                                p.run
                            ),
                            LOG_NOTICE,
                        )
                    }
                };
                if let Some(c) = previous
                    .filter(|r| r.failed())
                    .and_then(|r| r.outcome.as_ref()?.cause.as_ref())
                {
                    fields.add("TRACER_PREVIOUS_CAUSE", c.summary());
                }
                Some(Finding {
                    unit: key.clone(),
                    kind: Kind::Restart,
                    priority,
                    message,
                    fields,
                })
            }
            What::Outcome | What::CrashLoop => {
                // The run explained: the one that ended, or for a crash loop the latest
                // that failed.
                let index = match p.what {
                    What::Outcome => h.runs.iter().position(|r| r.number == p.run)?,
                    _ => h.runs.iter().rposition(|r| r.failed())?,
                };
                let run = &h.runs[index];
                let latest = index + 1 == h.runs.len();
                // systemd's account is of this run when no later run has begun, or when
                // its main process is the one that ended.
                let sd = sd.filter(|u| {
                    latest
                        || u.service.as_ref().is_some_and(|s| {
                            run.outcome
                                .as_ref()
                                .is_some_and(|o| o.pid == s.exec_main_pid)
                        })
                });
                let w = why::of_run(h, index, sd)?;
                if !w.failed && p.what == What::Outcome {
                    return None;
                }
                let kind = match (&p.what, w.result.as_deref(), &w.cause) {
                    (What::CrashLoop, ..) => Kind::CrashLoop,
                    (_, Some("timeout"), _) => Kind::Timeout,
                    (_, Some("oom-kill"), _) | (_, _, Some(Cause::OomKilled { .. })) => {
                        Kind::OomKill
                    }
                    _ => Kind::Failure,
                };
                object(&mut fields, kind, run.number);
                let mut message = if kind == Kind::CrashLoop {
                    let failed = h.runs.iter().filter(|r| r.failed()).count();
                    fields.add("TRACER_FAILED_RUNS", failed.to_string());
                    format!(
                        "{key}: in a crash loop: {failed} failed runs, the last within {} s of each other; the latest: {}",
                        self.crash_loop_window_secs,
                        w.explanation
                            .strip_prefix(&format!("{key}: "))
                            .unwrap_or(&w.explanation)
                    )
                } else {
                    w.explanation.clone()
                };
                fields.add("TRACER_EXPLANATION", &w.explanation);
                if let Some(fix) = &w.hint {
                    fields.add("TRACER_FIX", fix);
                    message.push_str("; fix: ");
                    message.push_str(fix);
                }
                if !w.evidence.is_empty() {
                    fields.add("TRACER_EVIDENCE", w.evidence.join("\n"));
                }
                if let Some(v) = w.verdict {
                    fields.add("TRACER_SYSTEMD_VERDICT", v);
                }
                if let Some(r) = &w.result {
                    fields.add("TRACER_SYSTEMD_RESULT", r);
                }
                if let Some(c) = &w.cause {
                    cause_fields(&mut fields, c);
                }
                Some(Finding {
                    unit: key,
                    kind,
                    priority: match kind {
                        Kind::CrashLoop | Kind::Failure | Kind::OomKill | Kind::Timeout => LOG_ERR,
                        Kind::Restart => LOG_WARNING,
                    },
                    message,
                    fields,
                })
            }
        }
    }

    /// Journals a finding, unless its unit is past its rate (then it is counted, and said
    /// in the unit's next entry that is journaled). A unit's restarts have a rate of their
    /// own: a restarting unit's failures and its crash loop are not crowded out by them.
    pub fn emit(&mut self, f: Finding, now: Instant) {
        if !self.cfg.enabled {
            return;
        }
        let rate = match f.kind {
            Kind::Restart => format!("{} (restarts)", f.unit),
            _ => f.unit.clone(),
        };
        let Some(suppressed) = self.admit(&rate, now) else {
            self.counts.rate_limited += 1;
            return;
        };
        let mut entry = wire::Entry::default();
        let mut message = printable(&f.message).into_owned();
        if suppressed > 0 {
            message.push_str(&format!(
                " ({suppressed} earlier {} of this unit were not journaled: more than {} at once, then one per {} s)",
                if f.kind == Kind::Restart {
                    "restarts"
                } else {
                    "findings"
                },
                self.cfg.burst, self.cfg.refill_secs
            ));
        }
        entry.add("MESSAGE", message);
        entry.add("PRIORITY", f.priority.to_string());
        for (name, value) in f.fields.fields() {
            entry.add(name, value);
        }
        if suppressed > 0 {
            entry.add("TRACER_SUPPRESSED", suppressed.to_string());
        }
        self.send(&entry);
    }

    /// Takes a token of the unit's bucket: what it held back before, or None.
    fn admit(&mut self, unit: &str, now: Instant) -> Option<u64> {
        if !self.rates.contains_key(unit) && self.rates.len() >= UNITS {
            let idle = self
                .rates
                .iter()
                .min_by_key(|(_, r)| r.used)
                .map(|(u, _)| u.clone());
            if let Some(idle) = idle {
                self.rates.remove(&idle);
            }
        }
        let burst = f64::from(self.cfg.burst.max(1));
        let per_second = 1.0 / self.cfg.refill_secs.max(0.001);
        let rate = self
            .rates
            .entry(unit.to_owned())
            .or_insert_with(|| UnitRate {
                bucket: Bucket::new(burst, per_second, now),
                suppressed: 0,
                used: now,
            });
        rate.used = now;
        if rate.bucket.take(now) {
            Some(std::mem::take(&mut rate.suppressed))
        } else {
            rate.suppressed += 1;
            None
        }
    }

    fn send(&mut self, entry: &wire::Entry) {
        let Some(w) = &self.writer else {
            self.counts.unavailable += 1;
            return;
        };
        match w.send(entry) {
            Ok(()) => {
                self.counts.sent += 1;
                if self.said_unavailable {
                    self.said_unavailable = false;
                    tracing::info!("the systemd journal takes findings again");
                }
            }
            Err(e) => {
                match e {
                    wire::SendError::Unavailable { .. } => self.counts.unavailable += 1,
                    wire::SendError::Busy => self.counts.busy += 1,
                    wire::SendError::Memfd(_) => self.counts.too_large += 1,
                }
                if !self.said_unavailable {
                    self.said_unavailable = true;
                    tracing::warn!(
                        "{e} (said once; /metrics counts tracer_systemd_journal_entries_total by result)"
                    );
                }
            }
        }
    }
}

/// A change on its way back to the loop, with systemd's account of its unit (None when
/// systemd could not be asked).
pub type Answer = (Pending, Option<SystemdUnit>);

/// Asks systemd for each unit whose change is due, off the loop that reads the ring buffer
/// (over one kept connection, each question bounded in time), and hands the answer back.
pub async fn ask_systemd(
    mut due: tokio::sync::mpsc::Receiver<Pending>,
    answers: tokio::sync::mpsc::Sender<Answer>,
) {
    let link = crate::systemd::Link::default();
    while let Some(p) = due.recv().await {
        let query = crate::protocol::Query::Why {
            unit: p.key(),
            json: false,
        };
        let unit = crate::systemd::facts_for(&query, &link)
            .await
            .and_then(|s| s.units.into_iter().next());
        if answers.send((p, unit)).await.is_err() {
            return;
        }
    }
}

/// Whether systemd's account of a unit is settled (not a start or stop under way with no
/// result yet): else it is asked again.
pub fn settled(u: &SystemdUnit) -> bool {
    let result = u.service.as_ref().map_or("", |s| s.result.as_str());
    !matches!(
        u.active_state.as_str(),
        "activating" | "deactivating" | "reloading"
    ) || u.sub_state == "auto-restart"
        || (!result.is_empty() && result != "success")
}

/// The cause's fields (as `tracer why --json` names them) → `TRACER_*`.
const CAUSE_FIELDS: &[(&str, &str)] = &[
    ("cause", "TRACER_CAUSE"),
    ("command", "TRACER_COMMAND"),
    ("path", "TRACER_PATH"),
    ("errno", "TRACER_ERRNO"),
    ("error", "TRACER_ERROR"),
    ("error_text", "TRACER_ERROR_TEXT"),
    ("problem", "TRACER_PROBLEM"),
    ("mode", "TRACER_MODE"),
    ("uid", "TRACER_FILE_UID"),
    ("gid", "TRACER_FILE_GID"),
    ("user", "TRACER_RUN_UID"),
    ("group", "TRACER_RUN_GID"),
    ("mount", "TRACER_MOUNT"),
    ("interpreter", "TRACER_INTERPRETER"),
    ("reason", "TRACER_PROBLEM_REASON"),
    ("evidence", "TRACER_EVIDENCE_KIND"),
    ("pid", "TRACER_PID"),
    ("status", "TRACER_EXIT_STATUS"),
    ("name", "TRACER_EXIT_STATUS_NAME"),
    ("setting", "TRACER_SETTING"),
    ("detail", "TRACER_DETAIL"),
    ("code", "TRACER_EXIT_CODE"),
    ("program", "TRACER_PROGRAM"),
    ("signal", "TRACER_SIGNAL"),
    ("signal_name", "TRACER_SIGNAL_NAME"),
    ("core_dumped", "TRACER_CORE_DUMPED"),
    ("sender_pid", "TRACER_SENDER_PID"),
    ("sender_comm", "TRACER_SENDER_COMM"),
];

fn cause_fields(fields: &mut wire::Entry, cause: &Cause) {
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(cause) else {
        return;
    };
    for (key, name) in CAUSE_FIELDS {
        let value = match map.get(*key) {
            None | Some(serde_json::Value::Null) => continue,
            Some(serde_json::Value::Number(n)) if *key == "mode" => {
                format!("{:04o}", n.as_u64().unwrap_or(0))
            }
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        };
        fields.add(name, value);
    }
}

#[cfg(test)]
mod tests;
