//! Following systemd's changes as they happen: pid 1's signals (a unit's state changed, a
//! job was queued or ended) turned into [`Change`] records for the daemon to journal.
//!
//! pid 1 sends its signals to every connection on its own socket, and on the bus to the
//! clients that called `Subscribe`. The signals are read by one task that never waits on
//! anything but the connection (a reader stalled behind its own question would stall the
//! connection: zbus waits for room in a stream's queue before it reads on). The questions
//! (a service's whole account after its state changed, a new job's type) are asked by a
//! second task over the same connection, each unit once however many signals came while
//! it waited.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use zbus::{MatchRule, MessageStream, message::Type as MessageType, zvariant};

use super::{
    MANAGER, MANAGER_PATH, PROPERTIES, SERVICE, Systemd, SystemdError,
    changes::{Change, Prop, STATE_PROPERTIES, followed},
    unit_object_path,
};
use crate::clock::BootClock;

const UNIT_PREFIX: &str = "/org/freedesktop/systemd1/unit/";
const JOB_IFACE: &str = "org.freedesktop.systemd1.Job";
/// Signals read but not yet taken by the daemon, and questions waiting to be asked: past
/// these, what comes is left out and counted.
const QUEUE: usize = 4096;
/// How long a connection to pid 1's own socket may take before the bus is tried. Early in
/// boot pid 1 takes new connections last (its listening socket's event source has
/// sd-event's default priority, below its other sources, while the connections it took
/// have its IPC priority), and the bus is not there yet: what follows waits for it, since
/// every change counts and the connection is kept.
const FOLLOW_PATIENCE: Duration = Duration::from_secs(30);

/// The unit an object path of pid 1 names (the reverse of [`unit_object_path`]).
pub fn unit_of_path(path: &str) -> Option<String> {
    let escaped = path.strip_prefix(UNIT_PREFIX)?;
    let mut out = Vec::with_capacity(escaped.len());
    let bytes = escaped.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().filter(|s| !s.is_empty())
}

/// Follows pid 1's changes for as long as `tx` is open: connects (pid 1's socket as
/// root, else the bus), and after a lost connection connects again, less often as the
/// failures go on. Quietly gives up when pid 1 is not systemd.
pub async fn follow(tx: mpsc::Sender<Change>, lost: Arc<AtomicU64>) {
    if !super::booted_with_systemd() {
        return;
    }
    let mut said = None;
    let mut failures = 0u32;
    while !tx.is_closed() {
        let t = std::time::Instant::now();
        let r = match Systemd::connect_waiting(FOLLOW_PATIENCE).await {
            Ok(sd) => {
                super::say_way(&mut said, "systemd's changes", &sd, t);
                Systemd::share(Some(&sd));
                let r = sd.follow(&tx, &lost).await;
                Systemd::share(None);
                r
            }
            Err(e) => Err(e),
        };
        if tx.is_closed() {
            return;
        }
        // A connection that served a while and then closed (pid 1 re-executed, the bus
        // went away) starts the count of failures in a row anew: connect again soon.
        if t.elapsed() >= Duration::from_secs(60) {
            failures = 0;
        }
        failures += 1;
        let e = r
            .err()
            .map_or_else(|| "the connection closed".to_owned(), |e| e.to_string());
        if failures == 1 || failures == 30 {
            tracing::warn!("systemd's changes are not being followed (trying again): {e}");
        } else {
            tracing::debug!("following systemd's changes, try {failures}: {e}");
        }
        tokio::time::sleep(Duration::from_secs(u64::from(failures.min(30)))).await;
    }
}

/// A question for the asking task.
enum Ask {
    Unit(String),
    JobType(u32, String),
}

impl Systemd {
    /// Reads pid 1's signals into `tx` until the connection closes (Ok) or fails.
    pub async fn follow(
        &self,
        tx: &mpsc::Sender<Change>,
        lost: &Arc<AtomicU64>,
    ) -> Result<(), SystemdError> {
        let err = |what: &str| {
            let what = what.to_owned();
            move |source| SystemdError::Call { what, source }
        };
        let mut rule = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .path_namespace(MANAGER_PATH)
            .map_err(err("a match rule"))?;
        // On a bus, pid 1's signals only (over its own socket they come signed otherwise,
        // see `private`, and from it alone).
        if self.conn.is_bus() {
            rule = rule.sender(SERVICE).map_err(err("a match rule"))?;
        }
        let mut stream = MessageStream::for_match_rule(rule.build(), &self.conn, Some(QUEUE))
            .await
            .map_err(err("its signals"))?;
        // (On pid 1's socket every connection has them; on the bus only a subscriber.)
        self.call::<_, ()>("a subscription", MANAGER_PATH, MANAGER, "Subscribe", &())
            .await?;
        let (ask_tx, ask_rx) = mpsc::channel(QUEUE);
        let asking = tokio::spawn(ask(self.clone(), ask_rx, tx.clone(), lost.clone()));
        let r = async {
            while let Some(msg) = stream.next().await {
                let msg = msg.map_err(err("a signal"))?;
                for (change, question) in read_signal(&msg) {
                    if let Some(c) = change {
                        put(tx, c, lost);
                    }
                    if let Some(q) = question
                        && ask_tx.try_send(q).is_err()
                    {
                        lost.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if tx.is_closed() {
                    break;
                }
            }
            Ok(())
        }
        .await;
        asking.abort();
        r
    }
}

/// Hands a change to the daemon, never waiting: one it has no room for is counted.
fn put(tx: &mpsc::Sender<Change>, c: Change, lost: &AtomicU64) {
    if tx.try_send(c).is_err() {
        lost.fetch_add(1, Ordering::Relaxed);
    }
}

/// The changes a signal makes, and what to ask about it.
fn read_signal(msg: &zbus::Message) -> Vec<(Option<Change>, Option<Ask>)> {
    let header = msg.header();
    let (Some(member), Some(path)) = (header.member(), header.path()) else {
        return Vec::new();
    };
    let at_ns = BootClock::boot_ns_now();
    let body = msg.body();
    match member.as_str() {
        "PropertiesChanged" => {
            let Some(unit) = unit_of_path(path.as_str()).filter(|u| followed(u)) else {
                return Vec::new();
            };
            let Ok((iface, changed, _invalidated)) =
                body.deserialize::<(String, HashMap<String, zvariant::OwnedValue>, Vec<String>)>()
            else {
                return Vec::new();
            };
            let props: BTreeMap<String, Prop> = changed
                .iter()
                .filter(|(k, _)| STATE_PROPERTIES.contains(&k.as_str()))
                .filter_map(|(k, v)| Some((k.clone(), prop(v)?)))
                .collect();
            if props.is_empty() {
                return Vec::new();
            }
            // A service's state changed: its whole account (the Exec*= arrays, which
            // systemd only says have changed) is asked for after.
            let question = (iface == super::SERVICE_IFACE
                || (iface == super::UNIT && unit.ends_with(".service")))
            .then(|| Ask::Unit(unit.clone()));
            vec![(Some(Change::Properties { at_ns, unit, props }), question)]
        }
        "JobNew" => match body.deserialize::<(u32, zvariant::OwnedObjectPath, String)>() {
            Ok((id, job, unit)) if followed(&unit) => vec![(
                Some(Change::JobNew { at_ns, id, unit }),
                Some(Ask::JobType(id, job.as_str().to_owned())),
            )],
            _ => Vec::new(),
        },
        "JobRemoved" => {
            match body.deserialize::<(u32, zvariant::OwnedObjectPath, String, String)>() {
                Ok((id, _, unit, result)) if followed(&unit) => {
                    // A job that did not get done: the unit's account (its Requires=, a
                    // condition not met) says why.
                    let question = (result != "done").then(|| Ask::Unit(unit.clone()));
                    vec![(
                        Some(Change::JobRemoved {
                            at_ns,
                            id,
                            unit,
                            result,
                        }),
                        question,
                    )]
                }
                _ => Vec::new(),
            }
        }
        _ => Vec::new(),
    }
}

fn prop(v: &zvariant::Value) -> Option<Prop> {
    use zvariant::Value as V;
    Some(match v {
        V::Str(s) => Prop::Str(s.as_str().to_owned()),
        V::Bool(b) => Prop::Bool(*b),
        V::U8(n) => Prop::Num(u64::from(*n)),
        V::U16(n) => Prop::Num(u64::from(*n)),
        V::U32(n) => Prop::Num(u64::from(*n)),
        V::U64(n) => Prop::Num(*n),
        V::I16(n) => Prop::Int(i64::from(*n)),
        V::I32(n) => Prop::Int(i64::from(*n)),
        V::I64(n) => Prop::Int(*n),
        _ => return None,
    })
}

/// Asks what the signals call for, each unit once however many times it was called for
/// while the task was busy, and hands the answers to the daemon.
async fn ask(
    sd: Systemd,
    mut rx: mpsc::Receiver<Ask>,
    tx: mpsc::Sender<Change>,
    lost: Arc<AtomicU64>,
) {
    let mut units: VecDeque<String> = VecDeque::new();
    let mut queued: HashSet<String> = HashSet::new();
    let mut jobs: VecDeque<(u32, String)> = VecDeque::new();
    loop {
        let mut asked = Vec::new();
        if units.is_empty() && jobs.is_empty() {
            match rx.recv().await {
                Some(q) => asked.push(q),
                None => return,
            }
        }
        while let Ok(q) = rx.try_recv() {
            asked.push(q);
        }
        // Everything asked for so far, folded: a unit once.
        for q in asked {
            match q {
                Ask::Unit(u) => {
                    if queued.insert(u.clone()) {
                        units.push_back(u);
                    }
                }
                Ask::JobType(id, path) => jobs.push_back((id, path)),
            }
        }
        // A job's type first: it is gone once the job ends.
        if let Some((id, path)) = jobs.pop_front() {
            let asked: Result<zvariant::OwnedValue, _> = sd
                .call(
                    "a job's type",
                    &path,
                    PROPERTIES,
                    "Get",
                    &(JOB_IFACE, "JobType"),
                )
                .await;
            if let Ok(job_type) = asked.map(String::try_from)
                && let Ok(job_type) = job_type
            {
                put(&tx, Change::JobType { id, job_type }, &lost);
            }
            continue;
        }
        let Some(unit) = units.pop_front() else {
            continue;
        };
        queued.remove(&unit);
        match sd.unit_at(&unit, &unit_object_path(&unit)).await {
            Ok(u) => put(
                &tx,
                Change::Unit {
                    at_ns: BootClock::boot_ns_now(),
                    unit: Box::new(u),
                },
                &lost,
            ),
            Err(e) => tracing::debug!("after {unit}'s change: {e}"),
        }
        if tx.is_closed() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_name_their_units() {
        for name in [
            "dbus.service",
            "getty@tty1.service",
            "1x-y.mount",
            "a\\x2db.service",
        ] {
            assert_eq!(unit_of_path(&unit_object_path(name)).as_deref(), Some(name));
        }
        assert_eq!(unit_of_path("/org/freedesktop/systemd1/job/12"), None);
        assert_eq!(unit_of_path("/org/freedesktop/systemd1/unit/bad_z"), None);
    }
}
