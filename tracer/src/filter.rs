//! Which events a client asked to see: the matching of a [`Filter`] (the live stream, the
//! daemon's stream clients, a replayed boot), and journalctl's unit globs.

use clap::ValueEnum as _;

use crate::{
    event::{Event, EventKind},
    protocol::{Filter, KindFilter},
};

impl KindFilter {
    fn matches(self, kind: &EventKind) -> bool {
        match self {
            Self::Cgroup => matches!(
                kind,
                EventKind::CgroupMkdir { .. }
                    | EventKind::CgroupRmdir { .. }
                    | EventKind::CgroupAttach { .. }
            ),
            _ => self
                .to_possible_value()
                .is_some_and(|v| v.get_name() == kind.name()),
        }
    }
}

impl Filter {
    /// Whether to show `ev`, whose task's cgroup resolved to `cgroup` (None: unknown).
    pub fn matches(&self, ev: &Event, cgroup: Option<&str>) -> bool {
        // The cgroup an event is about: a cgroup event's own, else its task's.
        let path = match &ev.kind {
            EventKind::CgroupMkdir { cgroup }
            | EventKind::CgroupRmdir { cgroup }
            | EventKind::CgroupAttach { cgroup, .. } => Some(cgroup.path.as_str()),
            _ => cgroup,
        };
        if !self.units.is_empty() {
            let unit = path.and_then(crate::unit::unit_of_cgroup);
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
        testing::{ev, exec, exit, failed_exec},
    };

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
        assert!(f.matches(&exec(), Some("/system.slice/mylog.service")));
        assert!(!f.matches(&exec(), Some("/system.slice/other.service")));
        assert!(!f.matches(&exec(), None));
    }

    #[test]
    fn filters_select_what_was_asked() {
        let all = Filter::default();
        assert!(all.matches(&exec(), None));

        let failed = Filter {
            failed_only: true,
            ..Filter::default()
        };
        assert!(!failed.matches(&exec(), None));
        assert!(failed.matches(&failed_exec(), None));
        assert!(!failed.matches(&exit(0), None));
        assert!(failed.matches(&exit(1 << 8), None));
        assert!(failed.matches(&exit(9), None));

        let kinds = Filter {
            kinds: vec![KindFilter::ExecFailed, KindFilter::Cgroup],
            ..Filter::default()
        };
        assert!(!kinds.matches(&exec(), None));
        assert!(kinds.matches(&failed_exec(), None));
        let mkdir = ev(EventKind::CgroupMkdir {
            cgroup: CgroupRef {
                id: 9,
                level: 1,
                path: "/system.slice/x.service".into(),
                path_truncated: false,
            },
        });
        assert!(kinds.matches(&mkdir, None));

        let pid = Filter {
            pids: vec![200],
            ..Filter::default()
        };
        assert!(!pid.matches(&exec(), None));
        assert!(pid.matches(&ev(EventKind::Fork { child_pid: 200 }), None));

        let cg = Filter {
            cgroup_prefix: Some("/system.slice/".into()),
            ..Filter::default()
        };
        assert!(cg.matches(&exec(), Some("/system.slice/mylog.service")));
        assert!(!cg.matches(&exec(), Some("/user.slice")));
        assert!(!cg.matches(&exec(), None));
        assert!(cg.matches(&mkdir, None));

        let comm = Filter {
            comms: vec!["other".into()],
            ..Filter::default()
        };
        assert!(!comm.matches(&exec(), None));
    }
}
