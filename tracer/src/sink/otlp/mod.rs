//! OpenTelemetry export (opt-in): events and findings as OTLP log records, posted as
//! OTLP/HTTP protobuf to a configured endpoint.
//!
//! The daemon's loop only offers: [`Exporter::event`] and [`Exporter::finding`] copy the
//! record into a bounded queue with `try_send`, and a full queue is a counted drop. A task
//! of its own takes records off the queue, batches them (up to `batch_size`, or what
//! came within `flush_interval_ms` of a batch's first record), encodes the batch
//! ([`encode`]) and posts it ([`http`]) with a timeout, retrying a failed post with
//! exponential backoff a bounded number of times; a batch given up on is counted as
//! failed. While it retries the queue fills and drops: a dead collector costs the
//! daemon the queue's memory and counted drops, nothing else.

pub mod encode;
pub mod http;
pub mod proto;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, SystemTime},
};

use prost::Message as _;
use serde::{Deserialize, Serialize};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

use self::http::Endpoint;
use crate::{clock::BootClock, enrich::Enriched, event::Kind, sink::journald::Finding};

/// `[otlp]` in tracer.toml.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// Export at all (off by default).
    pub enabled: bool,
    /// Where OTLP/HTTP protobuf is posted: `http://HOST:PORT/v1/logs` (no https).
    pub endpoint: String,
    /// Export events (of `event_kinds`).
    pub events: bool,
    /// The kinds of event exported, as `tracer events --kind` names them.
    pub event_kinds: Vec<String>,
    /// Export findings (the entries the systemd journal sink makes).
    pub findings: bool,
    /// Records waiting at most; past it, new ones are dropped and counted.
    pub queue_capacity: usize,
    /// Records in one request at most.
    pub batch_size: usize,
    /// A batch is posted at the latest this long after its first record came.
    pub flush_interval_ms: u64,
    /// One request's connect, write and reply, at most.
    pub timeout_ms: u64,
    /// A failed request is tried again this many times, after `retry_initial_ms`, then
    /// twice as long each time (at most 30 s); then its records count as failed.
    pub retries: u32,
    pub retry_initial_ms: u64,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            endpoint: "http://127.0.0.1:4318/v1/logs".into(),
            events: true,
            event_kinds: [
                Kind::Exec,
                Kind::ExecFailed,
                Kind::Exit,
                Kind::Signal,
                Kind::OomKill,
                Kind::AccessFailed,
            ]
            .iter()
            .map(|k| k.name().to_owned())
            .collect(),
            findings: true,
            queue_capacity: 8192,
            batch_size: 512,
            flush_interval_ms: 1000,
            timeout_ms: 5000,
            retries: 4,
            retry_initial_ms: 500,
        }
    }
}

/// The longest wait between two tries.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// The most records one request carries, whatever batch_size says.
const BATCH_MAX: usize = 8192;
/// At the daemon's stop, what is queued gets one try each, within this long in all
/// (and within the request timeout).
const STOP_WITHIN: Duration = Duration::from_secs(2);

/// Why the `[otlp]` section cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error(transparent)]
    Endpoint(#[from] http::EndpointError),
    #[error(
        "otlp event_kinds: {0:?} is no kind of event (the kinds: exec, exec-failed, exit, fork, cgroup-mkdir, cgroup-rmdir, cgroup-attach, signal, oom-kill, access-failed)"
    )]
    Kind(String),
    #[error("otlp {0} must be at least 1")]
    Zero(&'static str),
}

/// What became of the records offered, for `/metrics` (`tracer_otlp_records_total`) and
/// the daemon's stop line.
#[derive(Debug, Default)]
pub struct Counts {
    pub offered: AtomicU64,
    pub sent: AtomicU64,
    /// The queue was full (or the exporting task gone).
    pub dropped: AtomicU64,
    /// Given up on after the retries, refused by the receiver (a 4xx, or rejected in
    /// its partial-success reply), or still unsent when the daemon stopped.
    pub failed: AtomicU64,
}

/// A reading of [`Counts`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub offered: u64,
    pub sent: u64,
    pub dropped: u64,
    pub failed: u64,
}

impl Tally {
    /// By the `result` label.
    pub fn by_result(&self) -> [(&'static str, u64); 3] {
        [
            ("sent", self.sent),
            ("dropped", self.dropped),
            ("failed", self.failed),
        ]
    }
}

impl Counts {
    pub fn tally(&self) -> Tally {
        Tally {
            offered: self.offered.load(Relaxed),
            sent: self.sent.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            failed: self.failed.load(Relaxed),
        }
    }
}

/// One record on its way: an event as the loop had it, or a finding with the time it
/// was made.
#[derive(Debug)]
pub enum Record {
    Event(Box<Enriched>),
    Finding(Box<Finding>, SystemTime),
}

/// The settings the exporting task works with.
#[derive(Clone, Debug)]
struct Settings {
    endpoint: Endpoint,
    batch_size: usize,
    flush_interval: Duration,
    timeout: Duration,
    retries: u32,
    retry_initial: Duration,
}

/// The loop's side of the exporter.
pub struct Exporter {
    tx: mpsc::Sender<Record>,
    /// Exported kinds, by `Kind as usize`.
    kinds: [bool; Kind::ALL.len()],
    findings: bool,
    pub counts: Arc<Counts>,
    stopping: watch::Sender<bool>,
    task: JoinHandle<()>,
    endpoint: Endpoint,
}

impl Exporter {
    /// Starts the exporting task (None when `[otlp]` is off).
    pub fn start(
        cfg: &OtlpConfig,
        resource: proto::Resource,
        clock: BootClock,
    ) -> Result<Option<Self>, OtlpError> {
        if !cfg.enabled {
            return Ok(None);
        }
        let endpoint = Endpoint::parse(&cfg.endpoint)?;
        for (name, v) in [
            ("queue_capacity", cfg.queue_capacity),
            ("batch_size", cfg.batch_size),
        ] {
            if v == 0 {
                return Err(OtlpError::Zero(name));
            }
        }
        let mut kinds = [false; Kind::ALL.len()];
        if cfg.events {
            for name in &cfg.event_kinds {
                let k = Kind::from_name(name).ok_or_else(|| OtlpError::Kind(name.clone()))?;
                kinds[k as usize] = true;
            }
        }
        let settings = Settings {
            endpoint: endpoint.clone(),
            batch_size: cfg.batch_size.min(BATCH_MAX),
            flush_interval: Duration::from_millis(cfg.flush_interval_ms),
            timeout: Duration::from_millis(cfg.timeout_ms.max(1)),
            retries: cfg.retries,
            retry_initial: Duration::from_millis(cfg.retry_initial_ms),
        };
        let (tx, rx) = mpsc::channel(cfg.queue_capacity);
        let counts = Arc::new(Counts::default());
        let (stopping, stop_rx) = watch::channel(false);
        let task = tokio::spawn(export(
            rx,
            settings,
            Batcher::new(resource, clock),
            counts.clone(),
            stop_rx,
        ));
        Ok(Some(Self {
            tx,
            kinds,
            findings: cfg.findings,
            counts,
            stopping,
            task,
            endpoint,
        }))
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Offers an event (the event path: a kind check, a copy and a `try_send`).
    pub fn event(&self, e: &Enriched) {
        if self.kinds[e.ev.kind.kind() as usize] {
            self.offer(Record::Event(Box::new(e.clone())));
        }
    }

    /// Offers a finding.
    pub fn finding(&self, f: &Finding) {
        if self.findings {
            self.offer(Record::Finding(Box::new(f.clone()), SystemTime::now()));
        }
    }

    fn offer(&self, r: Record) {
        self.counts.offered.fetch_add(1, Relaxed);
        if self.tx.try_send(r).is_err() {
            self.counts.dropped.fetch_add(1, Relaxed);
        }
    }

    /// At the daemon's stop: what is queued gets one try, within a bound; what is still
    /// unsent then counts as failed. Returns the counts, and how many were left unsent.
    pub async fn finish(self) -> (Tally, u64) {
        let Self {
            tx,
            counts,
            stopping,
            mut task,
            ..
        } = self;
        drop(tx);
        let _ = stopping.send(true);
        if tokio::time::timeout(STOP_WITHIN, &mut task).await.is_err() {
            task.abort();
        }
        let t = counts.tally();
        let left = t.offered.saturating_sub(t.sent + t.dropped + t.failed);
        counts.failed.fetch_add(left, Relaxed);
        (counts.tally(), left)
    }
}

/// Turns records into requests: the host's resource and tracer's scope, once.
pub struct Batcher {
    resource: proto::Resource,
    clock: BootClock,
}

impl Batcher {
    pub fn new(resource: proto::Resource, clock: BootClock) -> Self {
        Self { resource, clock }
    }

    /// One request's body.
    pub fn request(&self, records: &[Record]) -> Vec<u8> {
        let observed = encode::unix_nanos(SystemTime::now());
        let log_records = records
            .iter()
            .map(|r| match r {
                Record::Event(e) => encode::event(e, &self.clock, observed),
                Record::Finding(f, at) => encode::finding(f, encode::unix_nanos(*at), observed),
            })
            .collect();
        proto::ExportLogsServiceRequest {
            resource_logs: vec![proto::ResourceLogs {
                resource: Some(self.resource.clone()),
                scope_logs: vec![proto::ScopeLogs {
                    scope: Some(proto::InstrumentationScope {
                        name: "tracer".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                    }),
                    log_records,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
        .encode_to_vec()
    }
}

/// How one post went.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Taken; this many of its records rejected by the receiver.
    Taken { rejected: u64 },
    /// Worth another try (no connection, a timeout, 429, 502, 503, 504).
    Retry(String),
    /// Refused for good (any other status).
    Refused(String),
}

/// The exporting task: batches, posts, retries, counts; until the queue is closed.
async fn export(
    mut rx: mpsc::Receiver<Record>,
    s: Settings,
    batcher: Batcher,
    counts: Arc<Counts>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(s.batch_size);
    let mut said = false;
    loop {
        let Some(first) = rx.recv().await else {
            return;
        };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + s.flush_interval;
        while batch.len() < s.batch_size {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(r)) => batch.push(r),
                _ => break,
            }
        }
        let n = batch.len() as u64;
        let body = batcher.request(&batch);
        batch.clear();
        let mut tries = 0;
        let mut wait = s.retry_initial;
        loop {
            let outcome = post(&s, &body).await;
            match outcome {
                Outcome::Taken { rejected } => {
                    let rejected = rejected.min(n);
                    counts.sent.fetch_add(n - rejected, Relaxed);
                    counts.failed.fetch_add(rejected, Relaxed);
                    if said {
                        said = false;
                        tracing::info!("otlp: {} takes records again", s.endpoint);
                    }
                    break;
                }
                Outcome::Retry(why) if tries < s.retries && !*stopping.borrow() => {
                    tries += 1;
                    if !said {
                        said = true;
                        tracing::warn!(
                            "otlp: {why}; trying again with backoff, and records that do not fit the queue meanwhile are dropped: start the collector there, or correct [otlp] endpoint (said once; /metrics counts tracer_otlp_records_total by result)"
                        );
                    }
                    let pause = jittered(wait);
                    wait = (wait * 2).min(BACKOFF_MAX);
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = stopping.changed() => {}
                    }
                }
                Outcome::Retry(why) | Outcome::Refused(why) => {
                    counts.failed.fetch_add(n, Relaxed);
                    if !said {
                        said = true;
                        tracing::warn!(
                            "otlp: {why}; {n} records given up: check the collector and [otlp] endpoint (said once; /metrics counts tracer_otlp_records_total by result)"
                        );
                    }
                    break;
                }
            }
        }
    }
}

async fn post(s: &Settings, body: &[u8]) -> Outcome {
    match http::post(&s.endpoint, body, s.timeout).await {
        Err(e) => {
            let hint = match &e {
                http::PostError::Connect { source, .. } => sandbox_hint(source),
                _ => None,
            };
            Outcome::Retry(format!("{e}{}", hint.unwrap_or("")))
        }
        Ok(r) if (200..300).contains(&r.status) => {
            let rejected = proto::ExportLogsServiceResponse::decode(r.body.as_slice())
                .ok()
                .and_then(|r| r.partial_success)
                .map_or(0, |p| p.rejected_log_records.max(0) as u64);
            Outcome::Taken { rejected }
        }
        Ok(r) => {
            let why = format!(
                "{} answered {} ({})",
                s.endpoint,
                r.status,
                String::from_utf8_lossy(&r.body[..r.body.len().min(200)]).trim()
            );
            if matches!(r.status, 429 | 502 | 503 | 504) {
                Outcome::Retry(why)
            } else {
                Outcome::Refused(why)
            }
        }
    }
}

/// What a connection refused by tracer.service's sandbox means: RestrictAddressFamilies=
/// AF_UNIX makes an IP socket EAFNOSUPPORT, IPAddressDeny= makes a connect EPERM.
fn sandbox_hint(e: &std::io::Error) -> Option<&'static str> {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EPERM | libc::EACCES)
    )
    .then_some(
        " (the daemon's sandbox has no network: tracer.service sets PrivateNetwork=yes, RestrictAddressFamilies=AF_UNIX and IPAddressDeny=any; install tracer/dist/tracer-otlp.conf as /etc/systemd/system/tracer.service.d/otlp.conf and restart it)",
    )
}

/// A wait of 75% to 125% of `d`: daemons that lost their collector together do not all
/// come back at the same instant.
fn jittered(d: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    d.mul_f64(0.75 + f64::from(nanos % 1000) / 2000.0)
}

/// The resource every request carries: `service.name=tracer`, `service.version`,
/// `host.name`, `host.id` (the machine id, as the semantic conventions ask of a machine
/// that is no cloud instance) and `tracer.boot_id` (no convention names a boot; the
/// systemd journal sink's TRACER_BOOT_ID is the same id).
pub fn resource(boot_id: &str) -> proto::Resource {
    let mut attributes = vec![
        encode::kv("service.name", proto::AnyValue::string("tracer")),
        encode::kv(
            "service.version",
            proto::AnyValue::string(env!("CARGO_PKG_VERSION")),
        ),
    ];
    for (key, path) in [
        ("host.name", "/proc/sys/kernel/hostname"),
        ("host.id", "/etc/machine-id"),
    ] {
        match std::fs::read_to_string(path) {
            Ok(v) if !v.trim().is_empty() => {
                attributes.push(encode::kv(key, proto::AnyValue::string(v.trim())));
            }
            Ok(_) => tracing::warn!("otlp: {path} is empty: records go without {key}"),
            Err(e) => tracing::warn!("otlp: reading {path}: {e}: records go without {key}"),
        }
    }
    attributes.push(encode::kv(
        "tracer.boot_id",
        proto::AnyValue::string(boot_id),
    ));
    proto::Resource { attributes }
}

#[cfg(test)]
mod tests;
