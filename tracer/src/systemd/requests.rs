//! Who asked for a job over the bus: a monitor of the system bus's method calls to pid 1
//! that queue jobs (StartUnit, RestartUnit, a unit's Start, ...), each recorded with the
//! caller's pid, uid and command name as the bus vouches for them. Root's systemctl
//! talks to pid 1 over its own socket, where no bus sees the call: those jobs are told
//! by the systemctl process the kernel saw (see the model's starts).
//!
//! The monitor reads and never waits on anything else (as [`super::watch`]); the callers'
//! credentials are asked by a second task on a connection of its own, a caller that is
//! gone by then recorded without them.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use zbus::{MatchRule, MessageStream, message::Type as MessageType};

use super::{MANAGER, SERVICE, UNIT, changes::Change, watch::unit_of_path};
use crate::clock::BootClock;

/// Calls read but not yet followed up: past this, what comes is left out and counted.
const QUEUE: usize = 1024;

/// Manager methods that queue a job for the unit named by their first argument.
const MANAGER_METHODS: [&str; 10] = [
    "StartUnit",
    "StartUnitReplace",
    "StartUnitWithFlags",
    "StopUnit",
    "ReloadUnit",
    "RestartUnit",
    "TryRestartUnit",
    "ReloadOrRestartUnit",
    "ReloadOrTryRestartUnit",
    "EnqueueUnitJob",
];

/// Unit methods that queue a job for the unit at the call's path.
const UNIT_METHODS: [&str; 8] = [
    "Start",
    "Stop",
    "Reload",
    "Restart",
    "TryRestart",
    "ReloadOrRestart",
    "ReloadOrTryRestart",
    "EnqueueJob",
];

/// A call that asks pid 1 for a job: the unit, the method, the caller's unique name.
#[derive(Debug, PartialEq, Eq)]
pub struct Call {
    pub unit: String,
    pub method: String,
    pub sender: String,
}

/// The job a method call asks for, if it is one.
pub fn job_call(
    interface: &str,
    member: &str,
    path: &str,
    first_arg: Option<&str>,
    sender: &str,
) -> Option<Call> {
    let unit = match interface {
        MANAGER if MANAGER_METHODS.contains(&member) => first_arg?.to_owned(),
        UNIT if UNIT_METHODS.contains(&member) => unit_of_path(path)?,
        _ => return None,
    };
    // (Unit names are at most 256 bytes: anything longer is not one.)
    (unit.len() <= 256 && !unit.is_empty()).then(|| Call {
        unit,
        method: member.to_owned(),
        sender: sender.to_owned(),
    })
}

/// Monitors the bus at `address` (None: the system bus) for job requests until `tx`
/// closes, connecting again after a failure (a host without a bus waits quietly).
pub async fn follow(address: Option<String>, tx: mpsc::Sender<Change>, lost: Arc<AtomicU64>) {
    let mut failures = 0u32;
    while !tx.is_closed() {
        let t = std::time::Instant::now();
        let r = monitor(address.as_deref(), &tx, &lost).await;
        if tx.is_closed() {
            return;
        }
        if t.elapsed() >= Duration::from_secs(60) {
            failures = 0;
        }
        failures += 1;
        let e = r.err().unwrap_or_else(|| "the connection closed".into());
        if failures == 1 {
            tracing::debug!(
                "who asks for jobs over the bus is not being followed (trying again): {e}"
            );
        }
        tokio::time::sleep(Duration::from_secs(u64::from(failures.min(30)))).await;
    }
}

async fn connect(address: Option<&str>, queue: usize) -> zbus::Result<zbus::Connection> {
    let b = match address {
        Some(a) => zbus::connection::Builder::address(a)?,
        None => zbus::connection::Builder::system()?,
    };
    b.max_queued(queue)
        .method_timeout(Duration::from_secs(5))
        .build()
        .await
}

/// One monitor connection, until it closes or fails.
async fn monitor(
    address: Option<&str>,
    tx: &mpsc::Sender<Change>,
    lost: &Arc<AtomicU64>,
) -> Result<(), String> {
    if !super::asking() {
        return Err("asking systemd is turned off".into());
    }
    let asker = connect(address, 64).await.map_err(|e| e.to_string())?;
    let conn = connect(address, QUEUE).await.map_err(|e| e.to_string())?;
    // (A match rule's destination is a unique name only: the calls to pid 1's
    // well-known name are told apart below, by the header.)
    let rule = |iface: &'static str| -> zbus::Result<MatchRule<'static>> {
        Ok(MatchRule::builder()
            .msg_type(MessageType::MethodCall)
            .interface(iface)?
            .path_namespace(super::MANAGER_PATH)?
            .build())
    };
    let owner = zbus::fdo::DBusProxy::new(&asker)
        .await
        .map_err(|e| e.to_string())?
        .get_name_owner(zbus::names::BusName::from_static_str(SERVICE).map_err(|e| e.to_string())?)
        .await
        .map(|o| o.to_string())
        .ok();
    let rules = [
        rule(MANAGER).map_err(|e| e.to_string())?,
        rule(UNIT).map_err(|e| e.to_string())?,
    ];
    zbus::fdo::MonitoringProxy::new(&conn)
        .await
        .map_err(|e| e.to_string())?
        .become_monitor(&rules, 0)
        .await
        .map_err(|e| format!("becoming a monitor of the bus: {e}"))?;
    let (calls_tx, calls_rx) = mpsc::channel(QUEUE);
    let asking = tokio::spawn(credentials(asker, calls_rx, tx.clone(), lost.clone()));
    let mut stream = MessageStream::from(&conn);
    while let Some(msg) = stream.next().await {
        let Ok(msg) = msg else { break };
        let header = msg.header();
        let (Some(iface), Some(member), Some(path), Some(sender), Some(dest)) = (
            header.interface(),
            header.member(),
            header.path(),
            header.sender(),
            header.destination(),
        ) else {
            continue;
        };
        let dest = dest.as_str();
        if dest != SERVICE && owner.as_deref() != Some(dest) {
            continue;
        }
        let body = msg.body();
        // (Each Manager method's first argument is the unit's name, whatever follows.)
        let first: Option<String> = (iface.as_str() == MANAGER)
            .then(|| body.deserialize::<zbus::zvariant::Structure>().ok())
            .flatten()
            .and_then(|args| match args.fields().first() {
                Some(zbus::zvariant::Value::Str(s)) => Some(s.as_str().to_owned()),
                _ => None,
            });
        if let Some(call) = job_call(
            iface.as_str(),
            member.as_str(),
            path.as_str(),
            first.as_deref(),
            sender.as_str(),
        ) && calls_tx.try_send((BootClock::boot_ns_now(), call)).is_err()
        {
            lost.fetch_add(1, Ordering::Relaxed);
        }
        if tx.is_closed() {
            break;
        }
    }
    asking.abort();
    Ok(())
}

/// Asks the bus who each caller is, and hands the request to the daemon.
async fn credentials(
    asker: zbus::Connection,
    mut calls: mpsc::Receiver<(u64, Call)>,
    tx: mpsc::Sender<Change>,
    lost: Arc<AtomicU64>,
) {
    let Ok(bus) = zbus::fdo::DBusProxy::new(&asker).await else {
        return;
    };
    while let Some((at_ns, call)) = calls.recv().await {
        let name = zbus::names::BusName::try_from(call.sender.as_str()).ok();
        let creds = match name {
            Some(n) => bus.get_connection_credentials(n).await.ok(),
            None => None,
        };
        let pid = creds.as_ref().and_then(|c| c.process_id());
        let uid = creds.as_ref().and_then(|c| c.unix_user_id());
        let comm = pid.and_then(comm_of);
        let change = Change::JobAsked {
            at_ns,
            unit: call.unit,
            method: call.method,
            pid,
            uid,
            comm,
        };
        if tx.try_send(change).is_err() {
            lost.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A process's command name (`/proc/PID/comm`, at most 16 bytes), printable.
fn comm_of(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/comm")).ok()?;
    let text: String = String::from_utf8_lossy(&raw[..raw.len().min(16)])
        .trim_end()
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_calls_that_queue_jobs() {
        let m = job_call(
            MANAGER,
            "RestartUnit",
            "/org/freedesktop/systemd1",
            Some("web.service"),
            ":1.7",
        );
        assert_eq!(
            m,
            Some(Call {
                unit: "web.service".into(),
                method: "RestartUnit".into(),
                sender: ":1.7".into()
            })
        );
        let u = job_call(
            UNIT,
            "Start",
            "/org/freedesktop/systemd1/unit/web_2eservice",
            None,
            ":1.8",
        );
        assert_eq!(u.map(|c| c.unit).as_deref(), Some("web.service"));
        assert_eq!(
            job_call(
                MANAGER,
                "ListUnits",
                "/org/freedesktop/systemd1",
                None,
                ":1.9"
            ),
            None
        );
        assert_eq!(
            job_call(
                UNIT,
                "Start",
                "/org/freedesktop/systemd1/job/3",
                None,
                ":1.9"
            ),
            None
        );
        let long = "x".repeat(300);
        assert_eq!(
            job_call(MANAGER, "StartUnit", "/", Some(&long), ":1.9"),
            None
        );
    }
}
