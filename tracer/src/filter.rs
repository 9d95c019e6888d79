//! Which events a client asked to see: the matching of a [`Filter`] (the live stream, the
//! daemon's stream clients, a replayed boot), and journalctl's unit globs.

use std::collections::HashMap;

use crate::{
    enrich::{Enriched, Unit, UnitId},
    event::{EventKind, Kind},
    protocol::{Filter, KindFilter},
};

/// Most unit patterns, pids or comms a filter may hold ...
pub const MAX_TERMS: usize = 64;
/// ... and the longest pattern, comm or cgroup prefix, in bytes: a stream client's filter
/// is matched against every event.
pub const MAX_TERM_BYTES: usize = 256;
/// Units whose match a [`Matcher`] remembers before it starts over.
const MAX_REMEMBERED: usize = 4096;

impl KindFilter {
    /// The event kinds it selects.
    pub fn kinds(self) -> &'static [Kind] {
        match self {
            Self::Exec => &[Kind::Exec],
            Self::ExecFailed => &[Kind::ExecFailed],
            Self::Exit => &[Kind::Exit],
            Self::Fork => &[Kind::Fork],
            Self::Cgroup => &[Kind::CgroupMkdir, Kind::CgroupRmdir, Kind::CgroupAttach],
            Self::CgroupMkdir => &[Kind::CgroupMkdir],
            Self::CgroupRmdir => &[Kind::CgroupRmdir],
            Self::CgroupAttach => &[Kind::CgroupAttach],
            Self::Signal => &[Kind::Signal],
            Self::OomKill => &[Kind::OomKill],
            Self::AccessFailed => &[Kind::AccessFailed],
        }
    }

    fn matches(self, kind: &EventKind) -> bool {
        self.kinds().contains(&kind.kind())
    }
}

impl Filter {
    /// Whether the filter is within what a client may ask for; what is past it.
    pub fn check(&self) -> Result<(), String> {
        let terms = [
            ("unit patterns", self.units.len()),
            ("pids", self.pids.len()),
            ("comms", self.comms.len()),
        ];
        if let Some((what, n)) = terms.iter().find(|(_, n)| *n > MAX_TERMS) {
            return Err(format!("{n} {what} (at most {MAX_TERMS})"));
        }
        let long = self
            .units
            .iter()
            .chain(&self.comms)
            .chain(&self.cgroup_prefix)
            .find(|t| t.len() > MAX_TERM_BYTES);
        match long {
            Some(t) => Err(format!(
                "a term of {} bytes (at most {MAX_TERM_BYTES})",
                t.len()
            )),
            None => Ok(()),
        }
    }

    /// Whether to show an event.
    pub fn matches(&self, e: &Enriched) -> bool {
        if !self.units.is_empty() && !e.about_unit().is_some_and(|u| self.unit_hit(u)) {
            return false;
        }
        self.matches_but_units(e)
    }

    /// Whether a unit is one of those asked for (by its key: a user's units have their
    /// manager first).
    fn unit_hit(&self, u: &Unit) -> bool {
        let key = u.key();
        self.units.iter().any(|p| unit_matches(p, &key))
    }

    fn matches_but_units(&self, e: &Enriched) -> bool {
        let ev = &e.ev;
        // The cgroup an event is about: a cgroup event's own, else its task's.
        let path = e.path();
        if !self.pids.is_empty()
            && !self
                .pids
                .iter()
                .any(|&p| p == ev.tgid || p == ev.pid || p == ev.subject_pid())
        {
            return false;
        }
        if !self.comms.is_empty() && !self.comms.contains(&ev.comm) {
            return false;
        }
        if let Some(prefix) = &self.cgroup_prefix
            && !path.is_some_and(|p| p.starts_with(prefix.as_str()))
        {
            return false;
        }
        if !self.kinds.is_empty() && !self.kinds.iter().any(|k| k.matches(&ev.kind)) {
            return false;
        }
        !self.failed_only || ev.is_failure()
    }
}

/// A filter as a stream client's task keeps it: each unit's match worked out once (by the
/// unit's interned id), not for every event.
pub struct Matcher {
    filter: Filter,
    units: HashMap<UnitId, bool>,
}

impl Matcher {
    pub fn new(filter: Filter) -> Self {
        Self {
            filter,
            units: HashMap::new(),
        }
    }

    pub fn matches(&mut self, e: &Enriched) -> bool {
        if !self.filter.units.is_empty() {
            let Some(u) = e.about_unit() else {
                return false;
            };
            let hit = match self.units.get(&u.id) {
                Some(&hit) => hit,
                None => {
                    if self.units.len() >= MAX_REMEMBERED {
                        self.units.clear();
                    }
                    let hit = self.filter.unit_hit(u);
                    self.units.insert(u.id, hit);
                    hit
                }
            };
            if !hit {
                return false;
            }
        }
        self.filter.matches_but_units(e)
    }
}

/// journalctl's -u: a glob over unit names; a pattern without a type suffix means a
/// service (`mylog` is `mylog.service`).
pub fn unit_matches(pattern: &str, unit: &str) -> bool {
    if glob(pattern, unit) {
        return true;
    }
    // (A user's unit: the manager first, the name after the `/`.)
    let name = pattern.rsplit('/').next().unwrap_or(pattern);
    !name.contains('.') && glob(&format!("{pattern}.service"), unit)
}

/// `*` and `?` globbing.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::CgroupRef,
        testing::{enriched, ev, exec, exit, failed_exec},
    };

    #[test]
    fn every_kind_is_selected_by_its_own_name() {
        use clap::ValueEnum as _;
        for k in Kind::ALL {
            let f = KindFilter::from_str(k.name(), false).expect("a --kind value per kind");
            assert_eq!(f.kinds(), &[k]);
        }
    }

    #[test]
    fn unit_patterns_glob_like_journalctl() {
        assert!(unit_matches("mylog", "mylog.service"));
        assert!(unit_matches("mylog.service", "mylog.service"));
        assert!(!unit_matches("mylog", "mylog.socket"));
        assert!(unit_matches("getty@*", "getty@tty1.service"));
        assert!(unit_matches("*.socket", "dbus.socket"));
        assert!(unit_matches("sys?emd-*", "systemd-udevd.service"));
        assert!(!unit_matches("nginx", "mylog.service"));
        assert!(unit_matches(
            "user@1000.service/nginx",
            "user@1000.service/nginx.service"
        ));
        let f = Filter {
            units: vec!["mylog".into()],
            ..Filter::default()
        };
        assert!(f.matches(&enriched(exec(), Some("/system.slice/mylog.service"))));
        assert!(!f.matches(&enriched(exec(), Some("/system.slice/other.service"))));
        assert!(!f.matches(&enriched(exec(), None)));
    }

    /// Issue 15, finding 4: a 60 KB unit pattern was taken, and globbed against every
    /// event for every client.
    #[test]
    fn a_filter_past_its_bounds_is_refused_and_a_unit_is_matched_once() {
        let long = Filter {
            units: vec!["*".repeat(60_000)],
            ..Filter::default()
        };
        assert!(
            long.check().unwrap_err().contains("60000 bytes"),
            "{:?}",
            long.check()
        );
        let many = Filter {
            comms: vec!["x".into(); MAX_TERMS + 1],
            ..Filter::default()
        };
        assert!(many.check().unwrap_err().contains("65 comms"));
        assert_eq!(Filter::default().check(), Ok(()));

        let mut r = crate::enrich::Resolver::default();
        let user = "/user.slice/user-1000.slice/user@1000.service/app.slice";
        for (id, path) in [
            (1, "/system.slice/mylog.service".to_owned()),
            (2, "/system.slice/other.service".to_owned()),
            (3, format!("{user}/mylog.service")),
        ] {
            r.insert(id, &path);
        }
        let on = |r: &mut crate::enrich::Resolver, id| {
            let mut e = exec();
            e.cgroup_id = id;
            r.enrich(e)
        };
        let mut m = Matcher::new(Filter {
            units: vec!["mylog".into()],
            ..Filter::default()
        });
        assert!(m.matches(&on(&mut r, 1)));
        assert!(m.matches(&on(&mut r, 1)));
        assert_eq!(m.units.len(), 1, "the unit's match is remembered");
        assert!(!m.matches(&on(&mut r, 2)));
        assert!(
            !m.matches(&on(&mut r, 3)),
            "a user's mylog.service is user@1000.service/mylog.service"
        );
        let mut mine = Matcher::new(Filter {
            units: vec!["user@1000.service/*".into()],
            ..Filter::default()
        });
        assert!(mine.matches(&on(&mut r, 3)));
        assert!(!mine.matches(&on(&mut r, 1)));
    }

    #[test]
    fn filters_select_what_was_asked() {
        let all = Filter::default();
        assert!(all.matches(&enriched(exec(), None)));

        let failed = Filter {
            failed_only: true,
            ..Filter::default()
        };
        assert!(!failed.matches(&enriched(exec(), None)));
        assert!(failed.matches(&enriched(failed_exec(), None)));
        assert!(!failed.matches(&enriched(exit(0), None)));
        assert!(failed.matches(&enriched(exit(1 << 8), None)));
        assert!(failed.matches(&enriched(exit(9), None)));

        let kinds = Filter {
            kinds: vec![KindFilter::ExecFailed, KindFilter::Cgroup],
            ..Filter::default()
        };
        assert!(!kinds.matches(&enriched(exec(), None)));
        assert!(kinds.matches(&enriched(failed_exec(), None)));
        let mkdir = ev(EventKind::CgroupMkdir {
            cgroup: CgroupRef {
                id: 9,
                level: 1,
                path: "/system.slice/x.service".into(),
                path_truncated: false,
            },
        });
        assert!(kinds.matches(&enriched(mkdir.clone(), None)));

        let pid = Filter {
            pids: vec![200],
            ..Filter::default()
        };
        assert!(!pid.matches(&enriched(exec(), None)));
        assert!(pid.matches(&enriched(ev(EventKind::Fork { child_pid: 200 }), None)));

        let cg = Filter {
            cgroup_prefix: Some("/system.slice/".into()),
            ..Filter::default()
        };
        assert!(cg.matches(&enriched(exec(), Some("/system.slice/mylog.service"))));
        assert!(!cg.matches(&enriched(exec(), Some("/user.slice"))));
        assert!(!cg.matches(&enriched(exec(), None)));
        assert!(cg.matches(&enriched(mkdir, None)));

        let comm = Filter {
            comms: vec!["other".into()],
            ..Filter::default()
        };
        assert!(!comm.matches(&enriched(exec(), None)));
    }
}
