//! Which events a client asked to see: the matching of a [`Filter`] (the live stream, the
//! daemon's stream clients, a replayed boot), and journalctl's unit globs.

use crate::{
    enrich::Enriched,
    event::{EventKind, Kind},
    protocol::{Filter, KindFilter},
};

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
        }
    }

    fn matches(self, kind: &EventKind) -> bool {
        self.kinds().contains(&kind.kind())
    }
}

impl Filter {
    /// Whether to show an event.
    pub fn matches(&self, e: &Enriched) -> bool {
        let ev = &e.ev;
        // The cgroup an event is about: a cgroup event's own, else its task's.
        let path = e.path();
        if !self.units.is_empty() {
            let unit = e.about_unit();
            if !unit.is_some_and(|u| self.units.iter().any(|p| unit_matches(p, &u.name))) {
                return false;
            }
        }
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

/// journalctl's -u: a glob over unit names; a pattern without a type suffix means a
/// service (`mylog` is `mylog.service`).
pub fn unit_matches(pattern: &str, unit: &str) -> bool {
    if glob(pattern, unit) {
        return true;
    }
    !pattern.contains('.') && glob(&format!("{pattern}.service"), unit)
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
        let f = Filter {
            units: vec!["mylog".into()],
            ..Filter::default()
        };
        assert!(f.matches(&enriched(exec(), Some("/system.slice/mylog.service"))));
        assert!(!f.matches(&enriched(exec(), Some("/system.slice/other.service"))));
        assert!(!f.matches(&enriched(exec(), None)));
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
