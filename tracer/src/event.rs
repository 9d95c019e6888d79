//! The owned event type everything after the decoder works with.

use serde::{Serialize, Serializer, ser::SerializeMap};

/// One thing that happened in the kernel, decoded from a ring-buffer record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// CLOCK_BOOTTIME in nanoseconds (the clock systemd's `*Monotonic` timestamps use on a
    /// machine that has not suspended).
    pub ts_ns: u64,
    /// Thread id the event happened in.
    pub pid: u32,
    /// Process id (thread group id).
    pub tgid: u32,
    /// cgroup2 id of the task (the inode number of its cgroup directory).
    pub cgroup_id: u64,
    /// The task's comm (after the exec, for exec events).
    pub comm: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened, with what only this kind carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum EventKind {
    /// A program was executed.
    Exec {
        ppid: u32,
        uid: u32,
        filename: String,
        /// The arguments, argv\[0\] first.
        argv: Vec<String>,
        #[serde(skip_serializing_if = "is_false")]
        filename_truncated: bool,
        #[serde(skip_serializing_if = "is_false")]
        argv_truncated: bool,
    },
    /// An execve/execveat failed.
    ExecFailed {
        ppid: u32,
        uid: u32,
        #[serde(flatten)]
        errno: Errno,
        filename: String,
        #[serde(skip_serializing_if = "is_false")]
        filename_truncated: bool,
    },
    /// A process (all its threads) ended.
    Exit {
        ppid: u32,
        #[serde(flatten)]
        status: WaitStatus,
        /// How long the process lived, from its fork to this exit (exitsnoop's AGE), as the
        /// kernel recorded it; `None` in recordings made before the kernel said.
        age_ns: Option<u64>,
    },
    /// A new process was forked; `pid`/`tgid` of the event are the parent's.
    Fork { child_pid: u32 },
    /// A cgroup was created.
    CgroupMkdir {
        #[serde(flatten)]
        cgroup: CgroupRef,
    },
    /// A cgroup was removed.
    CgroupRmdir {
        #[serde(flatten)]
        cgroup: CgroupRef,
    },
    /// A task was moved into a cgroup; the event's pid/tgid are those of the task that did it.
    CgroupAttach {
        #[serde(flatten)]
        cgroup: CgroupRef,
        target_pid: u32,
    },
    /// A terminating signal was sent to another process; the event's task sent it.
    Signal {
        target_pid: u32,
        #[serde(flatten)]
        signal: Signal,
        /// `si_code`: 0 (SI_USER) for kill(), 128 (SI_KERNEL) from the kernel.
        code: i32,
        /// 0 delivered, 1 ignored, 2 already pending, 3 overflow, 4 lost (tracepoint's result).
        result: i32,
    },
    /// The OOM killer chose `victim_pid`; the event's task is where it ran.
    OomKill { victim_pid: u32 },
    /// An executable-access check (X_OK) failed in a child of a service manager: how
    /// systemd tests a unit's command before it execs it.
    AccessFailed {
        ppid: u32,
        /// Real uid and gid: what the check was made for.
        uid: u32,
        gid: u32,
        #[serde(flatten)]
        errno: Errno,
        syscall: AccessSyscall,
        /// The path argument (empty when the check named a descriptor).
        path: String,
        #[serde(skip_serializing_if = "is_false")]
        path_truncated: bool,
        /// The descriptor the check went through (`/proc/self/fd/N` or AT_EMPTY_PATH).
        #[serde(skip_serializing_if = "Option::is_none")]
        fd: Option<i32>,
        /// The syscall's mode (X_OK = 1) and flags arguments.
        access_mode: u32,
        at_flags: u32,
        /// The file as the kernel held it then, when the check went through a descriptor.
        #[serde(flatten)]
        file: Option<FileSeen>,
    },
}

/// Which syscall made an access check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessSyscall {
    Access,
    Faccessat,
    Faccessat2,
}

impl AccessSyscall {
    pub fn name(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Faccessat => "faccessat",
            Self::Faccessat2 => "faccessat2",
        }
    }
}

/// A file as the kernel held it when a check went through its descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileSeen {
    /// `i_mode`: the type and permission bits.
    pub file_mode: u32,
    pub file_uid: u32,
    pub file_gid: u32,
    /// Its mount is noexec (or its filesystem never executable from).
    pub noexec: bool,
    /// Its name (the last component of its path).
    pub file_name: String,
}

impl FileSeen {
    /// The permission bits (`0o644`).
    pub fn perm(&self) -> u32 {
        self.file_mode & 0o7777
    }

    pub fn is_dir(&self) -> bool {
        self.file_mode & libc::S_IFMT == libc::S_IFDIR
    }
}

/// A signal number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signal(pub i32);

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match signal_name(self.0) {
            Some(name) => f.write_str(name),
            None => write!(f, "signal {}", self.0),
        }
    }
}

impl Serialize for Signal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("signal", &self.0)?;
        m.serialize_entry("signal_name", &signal_name(self.0))?;
        m.end()
    }
}

/// A cgroup2 cgroup as the kernel named it in the event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CgroupRef {
    #[serde(rename = "cgroup_target_id")]
    pub id: u64,
    pub level: u16,
    /// Path below the cgroup2 mount, starting with `/`.
    #[serde(rename = "cgroup_target")]
    pub path: String,
    #[serde(skip_serializing_if = "is_false")]
    pub path_truncated: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Event {
    /// The short name of the event's kind, as `--kind` and the JSON `kind` field spell it.
    pub fn kind_name(&self) -> &'static str {
        self.kind.name()
    }

    /// The process this event is about: the child for a fork, the moved task for an attach.
    pub fn subject_pid(&self) -> u32 {
        match self.kind {
            EventKind::Fork { child_pid } => child_pid,
            EventKind::CgroupAttach { target_pid, .. } => target_pid,
            EventKind::Signal { target_pid, .. } => target_pid,
            EventKind::OomKill { victim_pid } => victim_pid,
            _ => self.tgid,
        }
    }

    /// A failed exec, or a process that did not exit 0.
    pub fn is_failure(&self) -> bool {
        match &self.kind {
            EventKind::ExecFailed { .. } | EventKind::AccessFailed { .. } => true,
            EventKind::Exit { status, .. } => !status.success(),
            _ => false,
        }
    }
}

impl EventKind {
    /// Which kind of event this is.
    pub fn kind(&self) -> Kind {
        match self {
            Self::Exec { .. } => Kind::Exec,
            Self::ExecFailed { .. } => Kind::ExecFailed,
            Self::Exit { .. } => Kind::Exit,
            Self::Fork { .. } => Kind::Fork,
            Self::CgroupMkdir { .. } => Kind::CgroupMkdir,
            Self::CgroupRmdir { .. } => Kind::CgroupRmdir,
            Self::CgroupAttach { .. } => Kind::CgroupAttach,
            Self::Signal { .. } => Kind::Signal,
            Self::OomKill { .. } => Kind::OomKill,
            Self::AccessFailed { .. } => Kind::AccessFailed,
        }
    }

    /// The kind's name, as `--kind` and the JSON `kind` field spell it.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }
}

/// The kinds of event, one for each [`EventKind`] variant: the one table of their names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Exec,
    ExecFailed,
    Exit,
    Fork,
    CgroupMkdir,
    CgroupRmdir,
    CgroupAttach,
    Signal,
    OomKill,
    AccessFailed,
}

impl Kind {
    /// Every kind, in declaration order.
    pub const ALL: [Self; 10] = [
        Self::Exec,
        Self::ExecFailed,
        Self::Exit,
        Self::Fork,
        Self::CgroupMkdir,
        Self::CgroupRmdir,
        Self::CgroupAttach,
        Self::Signal,
        Self::OomKill,
        Self::AccessFailed,
    ];

    /// The kind's name: the JSON `kind` field (serde's kebab-case of the [`EventKind`]
    /// variant) and what `--kind` takes.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Exec => "exec",
            Self::ExecFailed => "exec-failed",
            Self::Exit => "exit",
            Self::Fork => "fork",
            Self::CgroupMkdir => "cgroup-mkdir",
            Self::CgroupRmdir => "cgroup-rmdir",
            Self::CgroupAttach => "cgroup-attach",
            Self::Signal => "signal",
            Self::OomKill => "oom-kill",
            Self::AccessFailed => "access-failed",
        }
    }

    /// The kind of that name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

// `ALL` is in declaration order, each kind once.
const _: () = {
    let mut i = 0;
    while i < Kind::ALL.len() {
        assert!(Kind::ALL[i] as usize == i);
        i += 1;
    }
};

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A raw wait status, as waitpid() returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitStatus(pub u32);

impl WaitStatus {
    /// The exit code, when the process exited (rather than being killed).
    pub fn exit_code(self) -> Option<u8> {
        (self.0 & 0x7f == 0).then_some(((self.0 >> 8) & 0xff) as u8)
    }

    /// The signal that killed the process, if one did.
    pub fn signal(self) -> Option<i32> {
        let sig = (self.0 & 0x7f) as i32;
        // 0x7f in the low bits is a stopped child, not a death; exit events never carry it.
        (sig != 0 && sig != 0x7f).then_some(sig)
    }

    /// Whether the kernel wrote a core dump.
    pub fn core_dumped(self) -> bool {
        self.signal().is_some() && self.0 & 0x80 != 0
    }

    pub fn success(self) -> bool {
        self.0 == 0
    }
}

impl std::fmt::Display for WaitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.exit_code(), self.signal()) {
            (Some(code), _) => write!(f, "exit {code}"),
            (None, Some(sig)) => {
                write!(f, "killed by {}", Signal(sig))?;
                if self.core_dumped() {
                    write!(f, " (core dumped)")?;
                }
                Ok(())
            }
            (None, None) => write!(f, "status {:#x}", self.0),
        }
    }
}

impl Serialize for WaitStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry("status", &self.0)?;
        m.serialize_entry("exit_code", &self.exit_code())?;
        m.serialize_entry("signal", &self.signal())?;
        m.serialize_entry("signal_name", &self.signal().and_then(signal_name))?;
        m.serialize_entry("core_dumped", &self.core_dumped())?;
        m.end()
    }
}

/// A positive errno value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// The symbolic name (`EACCES`), if known.
    pub fn name(self) -> Option<&'static str> {
        errno_name(self.0)
    }

    /// The C library's text for it ("Permission denied").
    pub fn text(self) -> String {
        let s = std::io::Error::from_raw_os_error(self.0).to_string();
        match s.find(" (os error") {
            Some(i) => s[..i].to_owned(),
            None => s,
        }
    }
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.text()),
            None => write!(f, "errno {} ({})", self.0, self.text()),
        }
    }
}

impl Serialize for Errno {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("errno", &self.0)?;
        m.serialize_entry("error", &self.name())?;
        m.serialize_entry("error_text", &self.text())?;
        m.end()
    }
}

/// The symbolic name of an errno value (Linux numbering).
pub fn errno_name(errno: i32) -> Option<&'static str> {
    Some(match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::ENOEXEC => "ENOEXEC",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ETXTBSY => "ETXTBSY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ELOOP => "ELOOP",
        libc::ENOSYS => "ENOSYS",
        libc::ELIBBAD => "ELIBBAD",
        libc::ELIBACC => "ELIBACC",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ESTALE => "ESTALE",
        libc::EDQUOT => "EDQUOT",
        libc::ECANCELED => "ECANCELED",
        _ => return None,
    })
}

/// The name of a signal (`SIGKILL`).
pub fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSTKFLT => "SIGSTKFLT",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGCONT => "SIGCONT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGTTIN => "SIGTTIN",
        libc::SIGTTOU => "SIGTTOU",
        libc::SIGURG => "SIGURG",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGVTALRM => "SIGVTALRM",
        libc::SIGPROF => "SIGPROF",
        libc::SIGWINCH => "SIGWINCH",
        libc::SIGIO => "SIGIO",
        libc::SIGPWR => "SIGPWR",
        libc::SIGSYS => "SIGSYS",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::decode::arb;

    #[test]
    fn wait_status_reads_like_waitpid() {
        assert_eq!(WaitStatus(0).exit_code(), Some(0));
        assert!(WaitStatus(0).success());
        assert_eq!(WaitStatus(3 << 8).exit_code(), Some(3));
        assert_eq!(WaitStatus(3 << 8).to_string(), "exit 3");
        assert_eq!(WaitStatus(203 << 8).exit_code(), Some(203));
        let killed = WaitStatus(libc::SIGKILL as u32);
        assert_eq!(killed.exit_code(), None);
        assert_eq!(killed.signal(), Some(libc::SIGKILL));
        assert!(!killed.core_dumped());
        assert_eq!(killed.to_string(), "killed by SIGKILL");
        let core = WaitStatus(libc::SIGSEGV as u32 | 0x80);
        assert!(core.core_dumped());
        assert_eq!(core.to_string(), "killed by SIGSEGV (core dumped)");
        assert_eq!(WaitStatus(50).to_string(), "killed by signal 50");
    }

    #[test]
    fn errno_has_names_and_text() {
        let e = Errno(libc::EACCES);
        assert_eq!(e.name(), Some("EACCES"));
        assert_eq!(e.to_string(), "EACCES (Permission denied)");
        assert_eq!(Errno(libc::ENOEXEC).name(), Some("ENOEXEC"));
        assert!(Errno(4000).to_string().starts_with("errno 4000"));
    }

    #[test]
    fn kinds_have_one_name_each() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_name(k.name()), Some(k));
            assert_eq!(k.to_string(), k.name());
        }
        let mut names: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Kind::ALL.len());
        assert_eq!(Kind::from_name("teleport"), None);
        assert_eq!(Kind::from_name("Exec"), None);
    }

    proptest! {
        /// The table's names are those serde writes in the `kind` field, and every kind an
        /// event can have is in `ALL`.
        #[test]
        fn kind_names_are_what_serde_writes(ev in arb::event(arb::plain_string())) {
            let v = serde_json::to_value(&ev).unwrap();
            prop_assert_eq!(v["kind"].as_str(), Some(ev.kind_name()));
            prop_assert!(Kind::ALL.contains(&ev.kind.kind()));
            prop_assert_eq!(Kind::from_name(ev.kind_name()), Some(ev.kind.kind()));
        }
    }

    #[test]
    fn json_field_names_are_stable() {
        let ev = Event {
            ts_ns: 5,
            pid: 10,
            tgid: 10,
            cgroup_id: 7,
            comm: "sh".into(),
            kind: EventKind::Exit {
                ppid: 1,
                status: WaitStatus(libc::SIGSEGV as u32 | 0x80),
                age_ns: Some(1_500_000_000),
            },
        };
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["kind"], "exit");
        assert_eq!(v["status"], 139);
        assert_eq!(v["signal_name"], "SIGSEGV");
        assert_eq!(v["core_dumped"], true);
        assert_eq!(v["exit_code"], serde_json::Value::Null);
        assert_eq!(v["age_ns"], 1_500_000_000u64);
        let ev = Event {
            kind: EventKind::ExecFailed {
                ppid: 1,
                uid: 0,
                errno: Errno(libc::ENOENT),
                filename: "/nope".into(),
                filename_truncated: false,
            },
            ..ev
        };
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["kind"], "exec-failed");
        assert_eq!(v["errno"], 2);
        assert_eq!(v["error"], "ENOENT");
        assert_eq!(v["filename"], "/nope");
        assert!(v.get("filename_truncated").is_none());
    }
}
