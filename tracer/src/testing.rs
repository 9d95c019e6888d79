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
        ppid: 1,
        status: WaitStatus(status),
    })
}
