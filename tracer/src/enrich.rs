//! The enrich stage: the one resolver of cgroup id → path → unit. Every consumer of events
//! (the model, metrics, the stream and its filters, `tracer events`) gets them as
//! [`Enriched`] events from here, and none keeps a cgroup or unit table of its own.
//!
//! The table is seeded by a walk of the cgroup2 mount (or by a recording's cgroup records)
//! and kept current by the kernel's mkdir, rmdir and attach events; each cgroup's unit is
//! worked out once, when the cgroup is learned. The units of live cgroups are interned:
//! every cgroup of one unit (its own and the sub-cgroups it makes) shares one [`Unit`],
//! with an id that stays the same while anything holds it.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Weak},
};

use crate::{
    cgroup::{CgroupError, find_cgroup2_mount, walk},
    event::{CgroupRef, Event, EventKind},
    idhash::IdMap,
    unit::{UnitRef, unit_of_cgroup},
};

/// An interned unit's id: never reused, so it can key what a consumer keeps per unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnitId(pub u64);

/// A unit as the resolver hands it out, shared by every cgroup that belongs to it.
#[derive(Debug, PartialEq, Eq)]
pub struct Unit {
    pub id: UnitId,
    pub unit: UnitRef,
}

impl std::ops::Deref for Unit {
    type Target = UnitRef;

    fn deref(&self) -> &UnitRef {
        &self.unit
    }
}

/// What a cgroup id resolves to.
#[derive(Clone, Debug, Default)]
pub struct Cgroup {
    /// Its path below the cgroup2 mount (None: known only by a truncated path).
    pub path: Option<Arc<str>>,
    /// The unit it belongs to (None: the root, or outside systemd's tree).
    pub unit: Option<Arc<Unit>>,
}

/// An event with what its cgroups resolved to.
#[derive(Clone, Debug)]
pub struct Enriched {
    pub ev: Event,
    /// The path of the task's cgroup (None: not known).
    pub cgroup: Option<Arc<str>>,
    /// The unit of the task's cgroup.
    pub unit: Option<Arc<Unit>>,
    /// For a cgroup event: the cgroup it acted on.
    pub subject: Option<Cgroup>,
    /// The uid of the process the event is about, as its last exec told (None: not
    /// known); filled in by the stream, which shows a client only its own.
    pub owner: Option<u32>,
}

impl Enriched {
    /// The cgroup path the event is about: a cgroup event's own (as the kernel gave it),
    /// else its task's.
    pub fn path(&self) -> Option<&str> {
        match &self.ev.kind {
            EventKind::CgroupMkdir { cgroup }
            | EventKind::CgroupRmdir { cgroup }
            | EventKind::CgroupAttach { cgroup, .. } => Some(&cgroup.path),
            _ => self.cgroup.as_deref(),
        }
    }

    /// The unit the event is about: a cgroup event's cgroup's, else its task's.
    pub fn about_unit(&self) -> Option<&Unit> {
        match &self.subject {
            Some(s) => s.unit.as_deref(),
            None => self.unit.as_deref(),
        }
    }
}

/// The cgroup table.
#[derive(Debug, Default)]
pub struct Resolver {
    /// The cgroup2 mount walked (None: a recording's table).
    mount: Option<PathBuf>,
    by_id: IdMap<u64, Cgroup>,
    /// The live units by manager and name (std's hasher: names are chosen by users).
    units: HashMap<(Option<u32>, String), Weak<Unit>>,
    next_unit: u64,
    /// `units`' size when its dead entries were last dropped.
    pruned_at: usize,
}

impl Resolver {
    /// The tree of the cgroup2 mount found in /proc/self/mountinfo.
    pub fn scan_system() -> Result<Self, CgroupError> {
        Self::scan(&find_cgroup2_mount()?)
    }

    /// The tree of a cgroup2 mount.
    pub fn scan(mount: &Path) -> Result<Self, CgroupError> {
        let mut r = Self {
            mount: Some(mount.to_owned()),
            ..Self::default()
        };
        r.rescan()?;
        Ok(r)
    }

    /// Walks the mount again, learning what is new (e.g. made between the first walk and
    /// the programs being attached).
    pub fn rescan(&mut self) -> Result<(), CgroupError> {
        let Some(mount) = self.mount.clone() else {
            return Ok(());
        };
        walk(&mount, |id, path| self.insert(id, path))
    }

    /// The cgroup2 mount point (empty for a recording's table).
    pub fn mount(&self) -> &Path {
        self.mount.as_deref().unwrap_or(Path::new(""))
    }

    /// Learns one cgroup (from a walk, or a recording).
    pub fn insert(&mut self, id: u64, path: &str) {
        let unit = self.intern(unit_of_cgroup(path));
        self.by_id.insert(
            id,
            Cgroup {
                path: Some(Arc::from(path)),
                unit,
            },
        );
    }

    /// What a cgroup id resolves to now.
    pub fn get(&self, id: u64) -> Option<&Cgroup> {
        self.by_id.get(&id)
    }

    /// The path of a cgroup id, if known.
    pub fn path(&self, id: u64) -> Option<&str> {
        self.by_id.get(&id)?.path.as_deref()
    }

    /// Every cgroup known by its path: (id, path).
    pub fn iter(&self) -> impl Iterator<Item = (u64, &str)> {
        self.by_id
            .iter()
            .filter_map(|(id, c)| Some((*id, c.path.as_deref()?)))
    }

    /// Number of cgroups known.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Resolves an event's cgroups, then follows the tree: mkdir and attach add, rmdir
    /// removes (ids of removed cgroups are not kept, so the table is bounded by the live
    /// tree).
    pub fn enrich(&mut self, ev: Event) -> Enriched {
        let (cgroup, unit) = match self.by_id.get(&ev.cgroup_id) {
            Some(c) => (c.path.clone(), c.unit.clone()),
            None => (None, None),
        };
        let subject = match &ev.kind {
            EventKind::CgroupMkdir { cgroup } => Some(self.learn(cgroup, true)),
            EventKind::CgroupAttach { cgroup, .. } => Some(self.learn(cgroup, false)),
            EventKind::CgroupRmdir { cgroup } => Some(match self.by_id.remove(&cgroup.id) {
                Some(c) => c,
                None => self.resolve_new(cgroup),
            }),
            _ => None,
        };
        Enriched {
            ev,
            cgroup,
            unit,
            subject,
            owner: None,
        }
    }

    /// A cgroup an event names: a new one (mkdir) replaces what its id held; one named by
    /// an attach is learned if it was not known (its path corrected if it was).
    fn learn(&mut self, c: &CgroupRef, new: bool) -> Cgroup {
        match self.by_id.get_mut(&c.id) {
            Some(known) if !new => {
                if !c.path_truncated && known.path.as_deref() != Some(c.path.as_str()) {
                    known.path = Some(Arc::from(c.path.as_str()));
                }
                known.clone()
            }
            _ => {
                let resolved = self.resolve_new(c);
                self.by_id.insert(c.id, resolved.clone());
                resolved
            }
        }
    }

    /// What a cgroup named by an event resolves to: its unit from its path (a truncated
    /// path still names the unit, which comes first); the path itself only when whole.
    fn resolve_new(&mut self, c: &CgroupRef) -> Cgroup {
        Cgroup {
            path: (!c.path_truncated).then(|| Arc::from(c.path.as_str())),
            unit: self.intern(unit_of_cgroup(&c.path)),
        }
    }

    /// The shared unit of this name and manager, made if none is alive.
    fn intern(&mut self, unit: Option<UnitRef>) -> Option<Arc<Unit>> {
        let unit = unit?;
        let key = (unit.user, unit.name.clone());
        if let Some(u) = self.units.get(&key).and_then(Weak::upgrade) {
            return Some(u);
        }
        self.next_unit += 1;
        let u = Arc::new(Unit {
            id: UnitId(self.next_unit),
            unit,
        });
        self.units.insert(key, Arc::downgrade(&u));
        // Units nobody holds any more (their cgroups gone) are dropped as the map grows,
        // so it stays within a constant factor of the live ones.
        if self.units.len() > 2 * self.pruned_at + 64 {
            self.units.retain(|_, w| w.strong_count() > 0);
            self.pruned_at = self.units.len();
        }
        Some(u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(cgroup_id: u64, kind: EventKind) -> Event {
        Event {
            ts_ns: 0,
            pid: 1,
            tgid: 1,
            cgroup_id,
            comm: "systemd".into(),
            kind,
        }
    }

    fn cg(id: u64, path: &str) -> CgroupRef {
        CgroupRef {
            id,
            level: 2,
            path: path.into(),
            path_truncated: false,
        }
    }

    #[test]
    fn follows_mkdir_and_rmdir() {
        let mut r = Resolver::default();
        let a = cg(77, "/system.slice/a.service");
        let e = r.enrich(ev(1, EventKind::CgroupMkdir { cgroup: a.clone() }));
        assert_eq!(e.cgroup, None, "the task's cgroup is not known");
        let subject = e.subject.unwrap();
        assert_eq!(subject.path.as_deref(), Some("/system.slice/a.service"));
        assert_eq!(subject.unit.unwrap().name, "a.service");
        assert_eq!(r.path(77), Some("/system.slice/a.service"));
        let e = r.enrich(ev(77, EventKind::Fork { child_pid: 5 }));
        assert_eq!(e.cgroup.as_deref(), Some("/system.slice/a.service"));
        assert_eq!(e.about_unit().unwrap().name, "a.service");
        let e = r.enrich(ev(1, EventKind::CgroupRmdir { cgroup: a }));
        assert_eq!(e.about_unit().unwrap().name, "a.service");
        assert_eq!(r.path(77), None);
        assert!(r.is_empty());
    }

    #[test]
    fn a_unit_and_its_sub_cgroups_share_one_interned_unit() {
        let mut r = Resolver::default();
        r.insert(10, "/system.slice/docker.service");
        r.insert(11, "/system.slice/docker.service/ctr");
        r.insert(
            12,
            "/user.slice/user-1000.slice/user@1000.service/app.slice/docker.service",
        );
        let (a, b, user) = (
            r.get(10).unwrap().unit.clone().unwrap(),
            r.get(11).unwrap().unit.clone().unwrap(),
            r.get(12).unwrap().unit.clone().unwrap(),
        );
        assert!(Arc::ptr_eq(&a, &b));
        assert_ne!(
            a.id, user.id,
            "a user's unit is not the system's of that name"
        );
        // Gone and back: while something holds the unit, it keeps its id.
        r.enrich(ev(1, EventKind::CgroupRmdir { cgroup: cg(11, "") }));
        r.enrich(ev(1, EventKind::CgroupRmdir { cgroup: cg(10, "") }));
        let e = r.enrich(ev(
            1,
            EventKind::CgroupMkdir {
                cgroup: cg(13, "/system.slice/docker.service"),
            },
        ));
        assert_eq!(e.about_unit().unwrap().id, a.id);
        drop((a, b));
        // Once nobody holds it, a new one.
        r.enrich(ev(1, EventKind::CgroupRmdir { cgroup: cg(13, "") }));
        drop(e);
        let e = r.enrich(ev(
            1,
            EventKind::CgroupMkdir {
                cgroup: cg(14, "/system.slice/docker.service"),
            },
        ));
        assert!(e.about_unit().unwrap().id > user.id);
    }

    #[test]
    fn a_truncated_path_still_names_its_unit() {
        let mut r = Resolver::default();
        let long = CgroupRef {
            path_truncated: true,
            ..cg(20, "/system.slice/a.service/very/deep")
        };
        let e = r.enrich(ev(1, EventKind::CgroupMkdir { cgroup: long }));
        assert_eq!(e.about_unit().unwrap().name, "a.service");
        assert_eq!(r.path(20), None);
        assert_eq!(r.get(20).unwrap().unit.as_ref().unwrap().name, "a.service");
    }

    #[test]
    fn dead_units_do_not_pile_up() {
        let mut r = Resolver::default();
        for i in 0..10_000u64 {
            let c = cg(100 + i, &format!("/system.slice/run-u{i}.scope"));
            r.enrich(ev(1, EventKind::CgroupMkdir { cgroup: c.clone() }));
            r.enrich(ev(1, EventKind::CgroupRmdir { cgroup: c }));
        }
        assert!(r.units.len() < 200, "{}", r.units.len());
        assert!(r.is_empty());
    }
}
