//! The start-up every tracing command shares (the daemon, standalone `tracer events`, live
//! `tracer units|why|restarts`): what runs already is read first, then the programs are
//! attached, then the cgroup tree is read again; whatever starts in between is seen by
//! the programs, and no cgroup made meanwhile is unknown.

use std::time::Instant;

use crate::{
    cgroup::CgroupError,
    enrich::Resolver,
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
    /// The processes running before the programs were attached (empty when not asked).
    pub running: Vec<ProcInfo>,
    /// When the programs were attached.
    pub attached_at: Instant,
}

/// Reads the cgroup tree (and the processes, when `processes`), loads and attaches the
/// programs, then reads the cgroup tree again.
pub fn start(opts: &ProbeOptions, processes: bool) -> Result<Started, StartError> {
    let mut cgroups = Resolver::scan_system()?;
    let running = if processes {
        procfs::snapshot()
    } else {
        Vec::new()
    };
    let probe = match Probe::load(opts) {
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
    cgroups.rescan()?;
    Ok(Started {
        probe,
        cgroups,
        running,
        attached_at,
    })
}

impl Started {
    /// Tells a model what ran before the programs were attached (in the order the
    /// processes started).
    pub fn seed<F: Facts>(&self, model: &mut Model<F>) {
        for p in &self.running {
            model.found_at_start(p);
        }
        tracing::info!(
            processes = self.running.len(),
            cgroups = self.cgroups.len(),
            "found at start"
        );
    }
}
