//! What the model announces as it happens, for the sinks that count or report it (the
//! metrics, later the systemd journal): they follow these instead of comparing the model
//! with what they saw of it before.

use super::{Model, cause::Cause, facts::Facts, run::StartKind};
use crate::unit::UnitRef;

/// One thing that happened to a unit's runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// A run began (`run` numbers it, 1 for the unit's first seen).
    RunStarted {
        unit: UnitRef,
        run: usize,
        start: StartKind,
        started_ns: u64,
    },
    /// The run's main process was executed, `after_ns` after the run began.
    MainStarted {
        unit: UnitRef,
        run: usize,
        after_ns: u64,
    },
    /// How the run's main process ended decided the run: it failed (with its cause, when
    /// one was found) or it did not.
    RunOutcome {
        unit: UnitRef,
        run: usize,
        failed: bool,
        cause: Option<Cause>,
    },
    /// The unit's failed runs within the window reached the crash-loop count.
    CrashLoop { unit: UnitRef },
}

impl<F: Facts> Model<F> {
    /// From now on, keep what changes for [`Model::take_changes`] (a model nobody asks
    /// keeps none).
    pub fn announce_changes(&mut self) {
        self.announcing = true;
    }

    /// What changed since the last call, in order.
    pub fn take_changes(&mut self) -> std::vec::Drain<'_, Change> {
        self.changes.drain(..)
    }

    pub(super) fn announce_some(&mut self, change: Option<Change>) {
        if self.announcing {
            self.changes.extend(change);
        }
    }
}
