//! Sample events for the unit tests.

use crate::event::{Errno, Event, EventKind, WaitStatus};

pub(crate) fn ev(kind: EventKind) -> Event {
    Event {
        ts_ns: 1_000_000_000,
        pid: 100,
        tgid: 100,
        cgroup_id: 5,
        comm: "mylog.sh".into(),
        kind,
    }
}

/// An event at `ts_ns` of process `tgid` (its only thread) in cgroup `cgroup_id`.
pub(crate) fn event_at(
    ts_ns: u64,
    tgid: u32,
    cgroup_id: u64,
    comm: &str,
    kind: EventKind,
) -> Event {
    Event {
        ts_ns,
        pid: tgid,
        tgid,
        cgroup_id,
        comm: comm.into(),
        kind,
    }
}

pub(crate) fn exec() -> Event {
    ev(EventKind::Exec {
        ppid: 1,
        uid: 0,
        filename: "/usr/local/bin/mylog.sh".into(),
        argv: vec![
            "/bin/sh".into(),
            "/usr/local/bin/mylog.sh".into(),
            "a b".into(),
        ],
        filename_truncated: false,
        argv_truncated: false,
    })
}

pub(crate) fn failed_exec() -> Event {
    ev(EventKind::ExecFailed {
        ppid: 1,
        uid: 0,
        errno: Errno(libc::EACCES),
        filename: "/usr/local/bin/mylog.sh".into(),
        filename_truncated: false,
    })
}

pub(crate) fn exit(status: u32) -> Event {
    ev(EventKind::Exit {
        age_ns: None,
        ppid: 1,
        status: WaitStatus(status),
    })
}

/// An event as the resolver enriches it, its task's cgroup known by `cgroup` (None: not
/// known).
pub(crate) fn enriched(ev: Event, cgroup: Option<&str>) -> crate::enrich::Enriched {
    let mut r = crate::enrich::Resolver::default();
    if let Some(path) = cgroup {
        r.insert(ev.cgroup_id, path);
    }
    r.enrich(ev)
}

/// A model fed through the resolver, as the daemon feeds it.
pub(crate) struct Fed<F: crate::model::facts::Facts> {
    pub model: crate::model::Model<F>,
    cgroups: crate::enrich::Resolver,
}

impl<F: crate::model::facts::Facts> Fed<F> {
    pub(crate) fn new(model: crate::model::Model<F>) -> Self {
        Self {
            model,
            cgroups: crate::enrich::Resolver::default(),
        }
    }

    /// A cgroup that was there at start.
    pub(crate) fn know_cgroup(&mut self, id: u64, path: &str) {
        self.cgroups.insert(id, path);
    }

    pub(crate) fn apply(&mut self, ev: &Event) {
        let e = self.cgroups.enrich(ev.clone());
        self.model.apply(&e);
    }
}

impl<F: crate::model::facts::Facts> std::ops::Deref for Fed<F> {
    type Target = crate::model::Model<F>;

    fn deref(&self) -> &Self::Target {
        &self.model
    }
}

impl<F: crate::model::facts::Facts> std::ops::DerefMut for Fed<F> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.model
    }
}
