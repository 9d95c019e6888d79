//! The start-up every tracing command shares (the daemon, standalone `tracer events`, live
//! `tracer units|why|restarts`): the cgroup tree is read, the programs are attached, and
//! only then are the processes read, while the records the programs write meanwhile are
//! kept aside; then the cgroup tree is read again. So the programs see from the first
//! moment, however long the walk of /proc takes on a big host, and no cgroup made
//! meanwhile is unknown. What the walk found is told to a model before those records,
//! except the processes the records describe better (see [`Early::described`]).

use std::{collections::HashSet, time::Duration, time::Instant};

use crate::{
    cgroup::CgroupError,
    decode::decode,
    enrich::Resolver,
    event::EventKind,
    model::{Model, facts::Facts},
    probe::{Probe, ProbeError, ProbeOptions},
    procfs::{self, ProcInfo},
};

/// Why the start-up failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("reading the cgroup2 tree: {0}")]
    Cgroups(#[from] CgroupError),
    #[error(transparent)]
    Probe(#[from] ProbeError),
}

/// What the start-up found, and the attached programs.
pub struct Started {
    pub probe: Probe,
    /// The cgroup2 tree, read before and after the programs were attached.
    pub cgroups: Resolver,
    /// The processes running when the programs had been attached (empty when not asked).
    pub running: Vec<ProcInfo>,
    /// The records the programs wrote while the processes were read, in their order.
    pub early: Early,
    /// When the programs were attached.
    pub attached_at: Instant,
}

/// Records taken from the ring buffer during the start-up, as the kernel wrote them.
#[derive(Default)]
pub struct Early {
    /// Each record after its length (u32, native order).
    bytes: Vec<u8>,
    count: usize,
}

/// How much the start-up keeps aside at most: past it, the ring buffer fills and the
/// kernel counts what it drops, as it would for a reader that stalls.
const EARLY_MAX_BYTES: usize = 64 << 20;

impl Early {
    fn push(&mut self, raw: &[u8]) {
        self.bytes
            .extend_from_slice(&(raw.len() as u32).to_ne_bytes());
        self.bytes.extend_from_slice(raw);
        self.count += 1;
    }

    fn full(&self) -> bool {
        self.bytes.len() >= EARLY_MAX_BYTES
    }

    /// How many records were kept.
    pub fn len(&self) -> usize {
        self.count
    }

    /// The records, in the order the kernel wrote them.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let mut rest = self.bytes.as_slice();
        std::iter::from_fn(move || {
            let (len, tail) = rest.split_first_chunk::<4>()?;
            let (raw, tail) = tail.split_at(u32::from_ne_bytes(*len) as usize);
            rest = tail;
            Some(raw)
        })
    }

    /// The processes these records describe better than the walk of /proc could: those
    /// forked (born after the attach: their fork and exec are here) and those that
    /// executed a program (the walk may have read them before or after it). Left out of
    /// what the walk found, each is known from its records alone, as when no walk ran.
    pub fn described(&self) -> HashSet<u32> {
        let mut pids = HashSet::new();
        for raw in self.iter() {
            match decode(raw).map(|ev| (ev.tgid, ev.kind)) {
                Ok((_, EventKind::Fork { child_pid })) => {
                    pids.insert(child_pid);
                }
                Ok((tgid, EventKind::Exec { .. })) => {
                    pids.insert(tgid);
                }
                _ => {}
            }
        }
        pids
    }
}

/// Reads the cgroup tree, loads and attaches the programs, then reads the processes
/// (when `processes`) while keeping aside what the programs record meanwhile, then reads
/// the cgroup tree again.
pub fn start(opts: &ProbeOptions, processes: bool) -> Result<Started, StartError> {
    let mut cgroups = Resolver::scan_system()?;
    let mut probe = match Probe::load(opts) {
        // Where bpffs cannot take the pins (read-only, missing), the programs run unpinned:
        // tracing matters more than surviving a restart.
        Err(ProbeError::Pin(why)) if opts.pin_dir.is_some() => {
            tracing::warn!(
                "the programs are not pinned ({why}): a restart of the daemon will miss what happens meanwhile"
            );
            Probe::load(&ProbeOptions {
                pin_dir: None,
                ..opts.clone()
            })?
        }
        r => r?,
    };
    let attached_at = Instant::now();
    let (running, early) = if processes {
        walk_while_reading(&mut probe)
    } else {
        (Vec::new(), Early::default())
    };
    cgroups.rescan()?;
    Ok(Started {
        probe,
        cgroups,
        running,
        early,
        attached_at,
    })
}

/// Reads /proc on a thread of its own while this one empties the ring buffer, so that
/// a long walk (seconds with tens of thousands of processes) does not fill it.
fn walk_while_reading(probe: &mut Probe) -> (Vec<ProcInfo>, Early) {
    let mut early = Early::default();
    let running = std::thread::scope(|s| {
        let walk = std::thread::Builder::new()
            .name("tracer-proc-walk".into())
            .spawn_scoped(s, procfs::snapshot);
        let walk = match walk {
            Ok(w) => w,
            // No thread to be had: walk here (the ring holds what comes meanwhile, or
            // the kernel counts what it drops).
            Err(_) => return procfs::snapshot(),
        };
        while !walk.is_finished() {
            if !early.full() {
                probe.drain_raw(|raw| early.push(raw));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        walk.join().unwrap_or_default()
    });
    if !early.full() {
        probe.drain_raw(|raw| early.push(raw));
    }
    (running, early)
}

impl Started {
    /// Tells a model what ran when the programs were attached (in the order the
    /// processes started), then what the programs recorded meanwhile.
    pub fn seed<F: Facts>(&mut self, model: &mut Model<F>) {
        let described = self.early.described();
        let mut found = 0;
        for p in self.running.iter().filter(|p| !described.contains(&p.pid)) {
            model.found_at_start(p);
            found += 1;
        }
        for raw in self.early.iter() {
            match decode(raw) {
                Ok(ev) => model.apply(&self.cgroups.enrich(ev)),
                Err(e) => self.probe.note_malformed(&e),
            }
        }
        tracing::info!(
            processes = found,
            early_records = self.early.len(),
            cgroups = self.cgroups.len(),
            "found at start"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        decode::encode,
        testing::{event_at, exec, exit},
    };

    fn early(events: &[crate::event::Event]) -> Early {
        let mut e = Early::default();
        for ev in events {
            e.push(&encode(ev));
        }
        e
    }

    #[test]
    fn records_come_back_in_order() {
        let events = [
            exec(),
            exit(0),
            event_at(5, 7, 9, "sh", EventKind::Fork { child_pid: 8 }),
        ];
        let e = early(&events);
        assert_eq!(e.len(), 3);
        let back: Vec<_> = e.iter().map(|raw| decode(raw).unwrap()).collect();
        assert_eq!(back, events);
    }

    #[test]
    fn forked_and_executing_processes_are_described_others_not() {
        // 8 was forked after the attach, 100 executed a program, 7 only forked and 300
        // only ended: those two are still seeded from the walk.
        let e = early(&[
            event_at(5, 7, 9, "sh", EventKind::Fork { child_pid: 8 }),
            exec(),
            event_at(6, 300, 9, "sleep", exit(0).kind),
        ]);
        let described = e.described();
        assert_eq!(described, HashSet::from([8, 100]));
    }

    #[test]
    fn nothing_kept_nothing_described() {
        let e = Early::default();
        assert_eq!(e.iter().count(), 0);
        assert!(e.described().is_empty());
    }
}
