//! Why a run ended the way it did: one type every output uses, with its evidence and, where
//! there is one, the fix.

use serde::Serialize;

use super::{
    facts::{FileInfo, FileLookup, Looked, UnitFile, UserLookup},
    perm::{self, Access, Class, Refusal},
};
use crate::event::{AccessSyscall, Errno, FileSeen, Signal};

/// systemd's own exit statuses for a failure while setting up a unit's process, before
/// its program ran (`systemd-analyze exit-status`, systemd 252–257; tests/vm.rs checks it
/// against both guests).
pub const SYSTEMD_EXIT_STATUSES: &[(u8, &str)] = &[
    (200, "CHDIR"),
    (201, "NICE"),
    (202, "FDS"),
    (203, "EXEC"),
    (204, "MEMORY"),
    (205, "LIMITS"),
    (206, "OOM_ADJUST"),
    (207, "SIGNAL_MASK"),
    (208, "STDIN"),
    (209, "STDOUT"),
    (210, "CHROOT"),
    (211, "IOPRIO"),
    (212, "TIMERSLACK"),
    (213, "SECUREBITS"),
    (214, "SETSCHEDULER"),
    (215, "CPUAFFINITY"),
    (216, "GROUP"),
    (217, "USER"),
    (218, "CAPABILITIES"),
    (219, "CGROUP"),
    (220, "SETSID"),
    (221, "CONFIRM"),
    (222, "STDERR"),
    (224, "PAM"),
    (225, "NETWORK"),
    (226, "NAMESPACE"),
    (227, "NO_NEW_PRIVILEGES"),
    (228, "SECCOMP"),
    (229, "SELINUX_CONTEXT"),
    (230, "PERSONALITY"),
    (231, "APPARMOR"),
    (232, "ADDRESS_FAMILIES"),
    (233, "RUNTIME_DIRECTORY"),
    (235, "CHOWN"),
    (236, "SMACK_PROCESS_LABEL"),
    (237, "KEYRING"),
    (238, "STATE_DIRECTORY"),
    (239, "CACHE_DIRECTORY"),
    (240, "LOGS_DIRECTORY"),
    (241, "CONFIGURATION_DIRECTORY"),
    (242, "NUMA_POLICY"),
    (243, "CREDENTIALS"),
    (244, "BPF"),
    (245, "KSM"),
];

/// systemd's name for one of its own exit statuses.
pub fn systemd_exit_status_name(status: u8) -> Option<&'static str> {
    SYSTEMD_EXIT_STATUSES
        .iter()
        .find(|(s, _)| *s == status)
        .map(|(_, n)| *n)
}

/// What was wrong with the file an exec was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "kebab-case")]
pub enum FileProblem {
    /// No file at the path.
    Missing,
    /// The file has no execute bit.
    NotExecutable { mode: u32, uid: u32, gid: u32 },
    /// The file has execute bits, none of them for the user that ran it: uid `user`, gid
    /// `group` (as the kernel saw the process, in its record of systemd's check; None
    /// where the kernel saw only the failed exec and its uid, and the mode is a look
    /// after the failure).
    NotExecutableBy {
        mode: u32,
        uid: u32,
        gid: u32,
        user: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        group: Option<u32>,
        /// Only the file's group may execute it, besides its owner (the user is not in it).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        group_only: bool,
    },
    /// A directory on the file's path that uid `user` may not search (its mode, owner and
    /// group, looked at after the failure); `group_only`: only its group may.
    DirectoryNotSearchable {
        dir: String,
        mode: u32,
        uid: u32,
        gid: u32,
        user: u32,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        group_only: bool,
    },
    /// The file's ACL has an entry for uid `user` without the execute bit (`perm`: that
    /// entry's bits after the mask), whatever its mode says for others.
    AclDenies {
        mode: u32,
        uid: u32,
        gid: u32,
        user: u32,
        perm: u8,
    },
    /// The filesystem is mounted noexec (at `mount`, when a look found where).
    NoexecMount { mount: Option<String> },
    /// The path is a directory.
    IsDirectory,
    /// A script whose `#!` interpreter does not exist.
    InterpreterMissing { interpreter: String },
    /// Not a format the kernel can execute (no `#!`, not ELF).
    BadFormat,
    /// The file's state is not known: why (the look failed, or has not been had yet).
    NotLookedAt { reason: String },
    /// The file looked fine when checked.
    Unknown,
}

impl FileProblem {
    /// The problem `errno` points to, given what a look at the file found (None: not
    /// had yet).
    pub fn diagnose(errno: Errno, looked: Option<&Looked>) -> Self {
        Self::diagnose_as(errno, looked, None)
    }

    /// As [`Self::diagnose`], for a process the kernel saw run as `uid` (None: not known).
    pub fn diagnose_as(errno: Errno, looked: Option<&Looked>, uid: Option<u32>) -> Self {
        match looked {
            Some(Looked::Found { info, .. }) => Self::diagnose_file(errno, info, uid),
            // Nothing at the path now: that explains ENOENT; for other errors the file
            // was there when it failed and has gone since.
            Some(Looked::Absent) => match errno.0 {
                libc::ENOENT => Self::Missing,
                libc::ENOEXEC => Self::BadFormat,
                _ => Self::Unknown,
            },
            Some(Looked::Failed(reason)) => Self::unless_errno_tells(errno, reason),
            None => Self::unless_errno_tells(errno, "the look at it has not finished"),
        }
    }

    /// What `errno` alone tells, where it tells enough.
    fn unless_errno_tells(errno: Errno, reason: &str) -> Self {
        match errno.0 {
            libc::ENOEXEC => Self::BadFormat,
            _ => Self::NotLookedAt {
                reason: reason.to_owned(),
            },
        }
    }

    fn diagnose_file(errno: Errno, f: &FileInfo, uid: Option<u32>) -> Self {
        match errno.0 {
            libc::EACCES => {
                if f.is_dir {
                    Self::IsDirectory
                } else if let Some(mount) = &f.noexec_mount {
                    Self::NoexecMount {
                        mount: Some(mount.clone()),
                    }
                } else if !f.any_exec_bit() {
                    Self::NotExecutable {
                        mode: f.mode,
                        uid: f.uid,
                        gid: f.gid,
                    }
                } else if let Some(user) = uid.filter(|&u| u != 0) {
                    Self::refused_to(user, f)
                } else {
                    Self::Unknown
                }
            }
            libc::ENOENT => match &f.interpreter {
                Some((interp, false)) => Self::InterpreterMissing {
                    interpreter: interp.clone(),
                },
                _ => Self::Unknown,
            },
            libc::ENOEXEC => Self::BadFormat,
            _ => Self::Unknown,
        }
    }
}

impl FileProblem {
    /// What a look at the file and its directories says kept uid `user` (not root) from
    /// executing it.
    fn refused_to(user: u32, f: &FileInfo) -> Self {
        let (mode, uid, gid) = (f.mode, f.uid, f.gid);
        match perm::refusal(user, f) {
            None => Self::Unknown,
            Some(Refusal::Directory(d, access)) => Self::DirectoryNotSearchable {
                dir: d.path.clone(),
                mode: d.mode,
                uid: d.uid,
                gid: d.gid,
                user,
                group_only: matches!(access, Access::OnlyGroups(_)),
            },
            Some(Refusal::File(Access::Denied(Class::AclUser))) => Self::AclDenies {
                mode,
                uid,
                gid,
                user,
                perm: f
                    .acl
                    .as_ref()
                    .and_then(|a| Some(a.user(user)? & a.mask().unwrap_or(7)))
                    .unwrap_or(0),
            },
            Some(Refusal::File(access)) => Self::NotExecutableBy {
                mode,
                uid,
                gid,
                user,
                group: None,
                group_only: matches!(access, Access::OnlyGroups(_)),
            },
        }
    }
}

impl FileProblem {
    /// The problem `errno` points to, given the file as the kernel held it when it
    /// refused the check of a process running as `user`:`group`; `looked` (a later look
    /// at the path) only says where a noexec mount is.
    fn diagnose_seen(
        errno: Errno,
        f: &FileSeen,
        (user, group): (u32, u32),
        looked: Option<&Looked>,
    ) -> Self {
        let mode = f.perm();
        match errno.0 {
            libc::EACCES if f.is_dir() => Self::IsDirectory,
            libc::EACCES if f.noexec => Self::NoexecMount {
                mount: match looked {
                    Some(Looked::Found { info, .. }) => info.noexec_mount.clone(),
                    _ => None,
                },
            },
            libc::EACCES if mode & 0o111 == 0 => Self::NotExecutable {
                mode,
                uid: f.file_uid,
                gid: f.file_gid,
            },
            libc::EACCES => {
                // Which of the three classes of bits the kernel applies to this user
                // (root: any; supplementary groups are not recorded).
                let bit = if user == 0 {
                    0o111
                } else if user == f.file_uid {
                    0o100
                } else if group == f.file_gid {
                    0o010
                } else {
                    0o001
                };
                if mode & bit == 0 {
                    Self::NotExecutableBy {
                        mode,
                        uid: f.file_uid,
                        gid: f.file_gid,
                        user,
                        group: Some(group),
                        group_only: false,
                    }
                } else if let Some(Looked::Found { info, .. }) = looked
                    && let Some(acl) = &info.acl
                    && user != 0
                    && perm::execute_access(user, (mode, f.file_uid, false), Some(acl))
                        == Access::Denied(Class::AclUser)
                {
                    // The mode lets the user; the ACL (looked at after the failure) does not.
                    Self::AclDenies {
                        mode,
                        uid: f.file_uid,
                        gid: f.file_gid,
                        user,
                        perm: acl.user(user).unwrap_or(0) & acl.mask().unwrap_or(7),
                    }
                } else {
                    Self::Unknown
                }
            }
            libc::ENOEXEC => Self::BadFormat,
            _ => Self::Unknown,
        }
    }
}

/// What the kernel recorded when a service manager's check of a command refused it
/// (systemd tests a unit's command with access(X_OK) before it execs it): the errno, and
/// the file as the kernel held it at that moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRefusal {
    pub ts_ns: u64,
    pub errno: Errno,
    pub syscall: AccessSyscall,
    /// The checking process's real uid and gid.
    pub uid: u32,
    pub gid: u32,
    /// Absent when the check named a path rather than a descriptor.
    pub file: Option<FileSeen>,
}

/// The file an exec was refused, and the look at it: diagnosed when asked, since the look
/// may finish after the failure was accounted. Serialized as its errno's and its
/// [`FileProblem`]'s fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedFile {
    /// The kernel's errno; None where no syscall failed (systemd's own check refused the
    /// file) and the error is what the file's state implies.
    errno: Option<Errno>,
    /// The kernel's record of systemd's check, where one was made: it decides the errno
    /// and the problem, the look only where the kernel's record says nothing.
    check: Option<AccessRefusal>,
    lookup: FileLookup,
    /// Who the kernel saw run it, where it recorded that (a failed execve's uid).
    runner: Option<Runner>,
}

/// The user a failed exec ran as: the uid the kernel recorded, and the unit's settings
/// that chose it (`User=nobody`, `DynamicUser=yes`, ...), where the unit file says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Runner {
    pub uid: u32,
    /// `User=` as the unit file has it.
    pub user: Option<String>,
    pub dynamic_user: bool,
    /// `Group=` and `SupplementaryGroups=`, as written.
    pub groups: Vec<String>,
}

impl Runner {
    /// `uid 65534 (User=nobody)`.
    pub fn show(&self) -> String {
        let mut set = Vec::new();
        if self.dynamic_user {
            set.push("DynamicUser=yes".to_owned());
        }
        if let Some(u) = &self.user {
            set.push(format!("User={u}"));
        }
        match set.is_empty() {
            true => format!("uid {}", self.uid),
            false => format!("uid {} ({})", self.uid, set.join(" ")),
        }
    }
}

impl RefusedFile {
    /// An exec the kernel refused with `errno`.
    pub fn refused(errno: Errno, lookup: FileLookup) -> Self {
        Self {
            errno: Some(errno),
            check: None,
            lookup,
            runner: None,
        }
    }

    /// A file systemd's own check refused: the error is implied by its state.
    pub fn checked(lookup: FileLookup) -> Self {
        Self {
            errno: None,
            check: None,
            lookup,
            runner: None,
        }
    }

    /// A file systemd's own check refused, as the kernel recorded it.
    pub fn check_refused(check: AccessRefusal, lookup: FileLookup) -> Self {
        Self {
            errno: Some(check.errno),
            check: Some(check),
            lookup,
            runner: None,
        }
    }

    /// The kernel saw the failed exec run as `uid`.
    pub fn ran_as(mut self, uid: u32) -> Self {
        self.runner = Some(Runner {
            uid,
            ..Runner::default()
        });
        self
    }

    /// The unit's settings that chose the user (its unit file's User=, Group=, ...).
    pub fn with_settings(mut self, file: Option<&UnitFile>) -> Self {
        if let (Some(r), Some(f)) = (&mut self.runner, file) {
            r.user.clone_from(&f.user);
            r.dynamic_user = f.dynamic_user;
            r.groups = f
                .group
                .iter()
                .chain(&f.supplementary_groups)
                .cloned()
                .collect();
        }
        self
    }

    /// Who the kernel saw run the file, if it recorded that.
    pub fn runner(&self) -> Option<&Runner> {
        self.runner.as_ref()
    }

    /// What the later look found, if it found the file.
    pub fn looked(&self) -> Option<&FileInfo> {
        match self.lookup.get()? {
            Looked::Found { info, .. } => Some(info),
            _ => None,
        }
    }

    /// The names of a directory's owner and group on the file's path, as the look found
    /// them.
    pub fn dir_owner(&self, dir: &str) -> OwnerNames {
        self.looked()
            .and_then(|i| i.dirs.iter().find(|d| d.path == dir))
            .map(|d| d.owner.clone())
            .unwrap_or_default()
    }

    /// The kernel's record of the check that refused the file, if one was seen.
    pub fn check(&self) -> Option<&AccessRefusal> {
        self.check.as_ref()
    }

    /// The error: the kernel's, or the one the file's state implies (none while that
    /// state is not known).
    pub fn errno(&self) -> Option<Errno> {
        self.errno.or_else(|| match self.lookup.get()? {
            Looked::Absent => Some(Errno(libc::ENOENT)),
            Looked::Found { .. } => Some(Errno(libc::EACCES)),
            Looked::Failed(_) => None,
        })
    }

    pub fn problem(&self) -> FileProblem {
        if let Some(check) = &self.check
            && let Some(seen) = &check.file
        {
            return FileProblem::diagnose_seen(
                check.errno,
                seen,
                (check.uid, check.gid),
                self.lookup.get(),
            );
        }
        let uid = self.runner.as_ref().map(|r| r.uid);
        match self.errno() {
            Some(errno) => FileProblem::diagnose_as(errno, self.lookup.get(), uid),
            None => FileProblem::diagnose(Errno(0), self.lookup.get()),
        }
    }

    /// The names of the file's owner and group, for a problem that shows them: as the
    /// look found them, and where the kernel recorded the file, only for the owner it
    /// recorded (a later chown must not rename it); 0 is root.
    pub fn owner(&self) -> OwnerNames {
        let looked = match self.lookup.get() {
            Some(Looked::Found { owner, info }) => Some((owner, info)),
            _ => None,
        };
        let Some(seen) = self.check.as_ref().and_then(|c| c.file.as_ref()) else {
            return looked.map(|(o, _)| o.clone()).unwrap_or_default();
        };
        let root = |id: u32| (id == 0).then(|| "root".to_owned());
        OwnerNames {
            user: root(seen.file_uid).or_else(|| {
                looked
                    .filter(|(_, i)| i.uid == seen.file_uid)
                    .and_then(|(o, _)| o.user.clone())
            }),
            group: root(seen.file_gid).or_else(|| {
                looked
                    .filter(|(_, i)| i.gid == seen.file_gid)
                    .and_then(|(o, _)| o.group.clone())
            }),
        }
    }
}

impl Serialize for RefusedFile {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown {
            #[serde(flatten)]
            errno: Option<Errno>,
            #[serde(flatten)]
            problem: FileProblem,
        }
        Shown {
            errno: self.errno(),
            problem: self.problem(),
        }
        .serialize(s)
    }
}

/// What is wrong with the setting behind a setup failure: known when the failure was
/// accounted, or what a look at its directory finds (said when asked). Serialized as the
/// text, or null.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetupDetail {
    Known(Option<String>),
    /// WorkingDirectory=.
    Directory(FileLookup),
    /// User=: whether the user exists.
    User(UserLookup),
}

impl SetupDetail {
    pub fn text(&self) -> Option<String> {
        let lookup = match self {
            Self::Known(text) => return text.clone(),
            Self::User(user) => {
                return (user.get() == Some(&Some(false))).then(|| "no such user".to_owned());
            }
            Self::Directory(lookup) => lookup,
        };
        Some(match lookup.get() {
            None => "the directory's state is not known (the look at it has not finished)".into(),
            Some(Looked::Failed(why)) => format!("the directory's state is not known ({why})"),
            Some(Looked::Absent) => "the directory does not exist".into(),
            Some(Looked::Found { info, .. }) if !info.is_dir => "it is not a directory".into(),
            Some(Looked::Found { .. }) => "the directory is not accessible".into(),
        })
    }
}

impl Serialize for SetupDetail {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.text().serialize(s)
    }
}

/// The names of a file's owner and group, looked up with the file: rendering looks
/// nothing up, and a replay shows the recording's names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnerNames {
    pub user: Option<String>,
    pub group: Option<String>,
}

impl OwnerNames {
    /// `user:group`, each by name when it has one, else by number.
    pub fn show(&self, uid: u32, gid: u32) -> String {
        let name_or =
            |name: &Option<String>, id: u32| name.clone().unwrap_or_else(|| id.to_string());
        format!("{}:{}", name_or(&self.user, uid), name_or(&self.group, gid))
    }
}

/// Who ran the file, as the explanation names them: the runner the kernel recorded with
/// the unit's settings, else the uid.
fn runner_of(file: &RefusedFile, user: u32) -> String {
    file.runner()
        .filter(|r| r.uid == user)
        .map_or_else(|| format!("uid {user}"), Runner::show)
}

/// `r-x` for the bits 4, 2, 1.
fn rwx(perm: u8) -> String {
    [(4, 'r'), (2, 'w'), (1, 'x')]
        .iter()
        .map(|&(b, c)| if perm & b != 0 { c } else { '-' })
        .collect()
}

/// A user or group name as a command in a fix may take it: a name that is all letters,
/// digits, `_`, `.` and `-` (not first), else the number (names are anyone's to choose).
fn word_or(name: Option<&str>, id: u32) -> String {
    match name {
        Some(n)
            if !n.is_empty()
                && !n.starts_with('-')
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) =>
        {
            n.to_owned()
        }
        _ => id.to_string(),
    }
}

/// A path as a shell word: as it is when it holds nothing a shell reads, else in single
/// quotes.
fn sh_quote(path: &str) -> String {
    if !path.is_empty()
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '.' | '-' | '+' | ','))
    {
        path.to_owned()
    } else {
        format!("'{}'", path.replace('\'', "'\\''"))
    }
}

/// How the kernel learned the exec would fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecEvidence {
    /// An execve/execveat returned the error (seen by the kernel programs).
    Execve,
    /// systemd's own check refused it before any execve (exit status 203/EXEC); the errno
    /// is what the file's state implies.
    SystemdCheck,
    /// systemd's own check refused it, and the kernel recorded the check: its errno and
    /// the file's mode, owner and mount at that moment.
    AccessCheck,
}

/// Why a run failed (or ended).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "cause", rename_all = "kebab-case")]
pub enum Cause {
    /// A command could not be executed.
    ExecFailed {
        /// `ExecStart`, `ExecStartPre`, ... when known.
        command: String,
        path: String,
        /// The error and the file's state (the JSON has their fields).
        #[serde(flatten)]
        file: RefusedFile,
        evidence: ExecEvidence,
        pid: u32,
    },
    /// systemd failed setting up the process (exit status 200–245).
    SetupFailed {
        status: u8,
        name: String,
        /// The setting at fault, from the unit file (`WorkingDirectory=/x`).
        setting: Option<String>,
        detail: SetupDetail,
        pid: u32,
    },
    /// The program exited with a non-zero code.
    ExitCode {
        code: u8,
        pid: u32,
        program: String,
        /// The setting it ran as, when not ExecStart= (`ExecStartPost`, ...).
        #[serde(skip_serializing_if = "Option::is_none")]
        command: Option<String>,
    },
    /// The program was killed by a signal.
    Killed {
        #[serde(flatten)]
        signal: Signal,
        core_dumped: bool,
        /// Who sent it, when another process did.
        sender_pid: Option<u32>,
        sender_comm: Option<String>,
        /// A SIGKILL that came this long after the same sender's SIGTERM, which the
        /// process outlived: the shape of a stop that ran out of time.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_sigterm_ms: Option<u64>,
        pid: u32,
        program: String,
    },
    /// The OOM killer ended it.
    OomKilled { pid: u32, program: String },
}

impl Cause {
    /// One line: what happened.
    pub fn summary(&self) -> String {
        match self {
            Cause::ExecFailed { path, file, .. } => format!(
                "{} {path}{}",
                file.errno().and_then(Errno::name).unwrap_or("exec failed"),
                match file.problem() {
                    FileProblem::Missing => " (missing)".to_owned(),
                    FileProblem::NotExecutable { mode, .. } => format!(" (mode {mode:04o})"),
                    FileProblem::NotExecutableBy { mode, user, .. } => {
                        format!(" (mode {mode:04o}, not for uid {user})")
                    }
                    FileProblem::DirectoryNotSearchable { dir, user, .. } => {
                        format!(" (directory {dir} not searchable by uid {user})")
                    }
                    FileProblem::AclDenies { user, .. } => {
                        format!(" (its ACL denies uid {user})")
                    }
                    FileProblem::NoexecMount { mount: Some(mount) } => {
                        format!(" (noexec mount {mount})")
                    }
                    FileProblem::NoexecMount { mount: None } => " (noexec mount)".to_owned(),
                    FileProblem::IsDirectory => " (a directory)".to_owned(),
                    FileProblem::InterpreterMissing { interpreter } => {
                        format!(" (interpreter {interpreter} missing)")
                    }
                    FileProblem::BadFormat => " (not an executable format)".to_owned(),
                    FileProblem::NotLookedAt { .. } | FileProblem::Unknown => String::new(),
                }
            ),
            Cause::SetupFailed { status, name, .. } => format!("{status}/{name}"),
            Cause::ExitCode { code, .. } => format!("exit {code}"),
            Cause::Killed {
                signal,
                core_dumped,
                sender_comm,
                sender_pid,
                after_sigterm_ms,
                ..
            } => {
                let mut s = format!("killed by {signal}");
                if *core_dumped {
                    s.push_str(" (core dumped)");
                }
                if let (Some(comm), Some(pid)) = (sender_comm, sender_pid) {
                    s.push_str(&format!(" from {comm} ({pid})"));
                }
                if let Some(ms) = after_sigterm_ms {
                    s.push_str(&format!(
                        ", {:.1} s after its SIGTERM, which did not end it",
                        *ms as f64 / 1000.0
                    ));
                }
                s
            }
            Cause::OomKilled { .. } => "OOM-killed".to_owned(),
        }
    }

    /// The explanation in plain words, for `tracer why`.
    pub fn explain(&self, unit: &str) -> String {
        match self {
            Cause::ExecFailed {
                command,
                path,
                file,
                ..
            } => {
                let why = match file.problem() {
                    FileProblem::Missing => "the file does not exist".to_owned(),
                    FileProblem::NotExecutable { mode, uid, gid } => format!(
                        "the file is mode {mode:04o} {} and not executable",
                        file.owner().show(uid, gid)
                    ),
                    FileProblem::NotExecutableBy {
                        mode,
                        uid,
                        gid,
                        user,
                        group: Some(group),
                        ..
                    } => format!(
                        "the file is mode {mode:04o} {}: none of its execute bits is for uid {user} (gid {group}), which ran it",
                        file.owner().show(uid, gid)
                    ),
                    FileProblem::NotExecutableBy {
                        mode,
                        uid,
                        gid,
                        user,
                        group: None,
                        group_only,
                    } => {
                        let owner = file.owner();
                        let who = runner_of(file, user);
                        if group_only {
                            format!(
                                "the file is mode {mode:04o} {} (looked at after the failure): only its owner and group {} may execute it, and {who}, which ran it, was not in that group",
                                owner.show(uid, gid),
                                owner.group.clone().unwrap_or_else(|| gid.to_string())
                            )
                        } else {
                            format!(
                                "the file is mode {mode:04o} {} (looked at after the failure): {}, not {who}, which ran it",
                                owner.show(uid, gid),
                                if mode & 0o100 != 0 {
                                    "only its owner may execute it"
                                } else {
                                    "none of its execute bits is for that user"
                                }
                            )
                        }
                    }
                    FileProblem::DirectoryNotSearchable {
                        dir,
                        mode,
                        uid,
                        gid,
                        user,
                        group_only,
                    } => format!(
                        "{}, which ran it, may not search the directory {dir} on its path: mode {mode:04o} {}{} (looked at after the failure)",
                        runner_of(file, user),
                        file.dir_owner(&dir).show(uid, gid),
                        if group_only {
                            ", searchable only by its owner and group"
                        } else {
                            ""
                        }
                    ),
                    FileProblem::AclDenies {
                        mode,
                        uid,
                        gid,
                        user,
                        perm,
                    } => format!(
                        "the file is mode {mode:04o} {}, but its ACL has an entry for {}, which ran it, without execute permission (user:{user}:{}; looked at after the failure)",
                        file.owner().show(uid, gid),
                        runner_of(file, user),
                        rwx(perm)
                    ),
                    FileProblem::NoexecMount { mount: Some(mount) } => {
                        format!("its filesystem {mount} is mounted noexec")
                    }
                    FileProblem::NoexecMount { mount: None } => {
                        "its filesystem is mounted noexec".to_owned()
                    }
                    FileProblem::IsDirectory => "it is a directory".to_owned(),
                    FileProblem::InterpreterMissing { interpreter } => format!(
                        "the script's interpreter {interpreter} (its #! line) does not exist"
                    ),
                    FileProblem::BadFormat => {
                        "it is neither a binary nor a script with a #! line".to_owned()
                    }
                    FileProblem::NotLookedAt { reason } => {
                        format!("the file's state is not known ({reason})")
                    }
                    FileProblem::Unknown => "the file looked fine when checked".to_owned(),
                };
                let error = file
                    .errno()
                    .map_or_else(|| "an error not known".to_owned(), |e| e.to_string());
                format!("{unit}: {command}={path} could not be executed: {error} — {why}")
            }
            Cause::SetupFailed {
                status,
                name,
                setting,
                detail,
                ..
            } => {
                let mut s = format!(
                    "{unit}: systemd could not set up the process: exit status {status}/{name}"
                );
                if let Some(setting) = setting {
                    s.push_str(&format!(" — {setting}"));
                }
                if let Some(detail) = detail.text() {
                    s.push_str(&format!(": {detail}"));
                }
                s
            }
            Cause::ExitCode {
                code,
                program,
                command: Some(role),
                ..
            } => format!("{unit}: {role}={program} exited with status {code}"),
            Cause::ExitCode { code, program, .. } => {
                format!("{unit}: {program} exited with status {code}")
            }
            Cause::Killed {
                program,
                after_sigterm_ms: Some(_),
                sender_pid: Some(1),
                ..
            } => format!(
                "{unit}: {program} was {}: the shape of a stop that ran out of TimeoutStopSec= (inferred from the signals the kernel saw; systemd's Result= would say timeout)",
                self.summary()
            ),
            Cause::Killed {
                program,
                signal,
                sender_pid: Some(1),
                ..
            } if signal.0 == libc::SIGABRT => format!(
                "{unit}: {program} was {}: the signal systemd's watchdog sends by default (WatchdogSignal=) when WatchdogSec= passes without a WATCHDOG=1 (inferred from the signal the kernel saw; systemd's Result= would say watchdog, or `systemctl kill` sent it)",
                self.summary()
            ),
            Cause::Killed { program, .. } => format!("{unit}: {program} was {}", self.summary()),
            Cause::OomKilled { program, .. } => format!(
                "{unit}: {program} was killed by the kernel's OOM killer (the unit or the machine ran out of memory)"
            ),
        }
    }

    /// What to do about it, when that is clear.
    pub fn hint(&self) -> Option<String> {
        match self {
            Cause::Killed {
                after_sigterm_ms: Some(_),
                sender_pid: Some(1),
                ..
            } => Some(
                "it does not stop on SIGTERM in time: make it exit on SIGTERM (or set KillSignal= to the signal it stops on), or raise TimeoutStopSec= if it needs longer".into(),
            ),
            Cause::ExecFailed { path, file, .. } => match file.problem() {
                FileProblem::NotExecutable { .. } => {
                    Some(format!("make it executable: chmod +x {path}"))
                }
                FileProblem::Missing => Some(format!(
                    "check the path in the unit file, or install the program at {path}"
                )),
                FileProblem::NotExecutableBy {
                    group_only: true,
                    gid,
                    ..
                } => {
                    let group = word_or(file.owner().group.as_deref(), gid);
                    Some(format!(
                        "add the service to group {group}: SupplementaryGroups={group} (or Group={group}) in the unit file, or let anyone execute it: chmod o+x {}",
                        sh_quote(path)
                    ))
                }
                FileProblem::NotExecutableBy { user, .. } => {
                    let p = sh_quote(path);
                    Some(match file.runner() {
                        Some(r) if r.dynamic_user => format!(
                            "let anyone execute it: chmod o+x {p} (DynamicUser= picks the service's uid at each start: chown cannot follow it), or run it as a user that may: User="
                        ),
                        Some(r) => format!(
                            "let anyone execute it: chmod o+x {p}, or give it to the service's user: chown {} {p}, or change User=",
                            word_or(r.user.as_deref(), user)
                        ),
                        None => format!(
                            "let uid {user} execute it (chmod o+x {p}, or give it to the service's user or group), or change User="
                        ),
                    })
                }
                FileProblem::DirectoryNotSearchable {
                    dir, group_only, ..
                } => Some(format!(
                    "move the program out of {} (to /usr/local/bin, say), or let {} search it: chmod o+x {}{}",
                    dir,
                    if group_only { "anyone" } else { "others" },
                    sh_quote(&dir),
                    if group_only {
                        ", or add the service to the directory's group (SupplementaryGroups=)"
                    } else {
                        ""
                    }
                )),
                FileProblem::AclDenies { user, .. } => Some(format!(
                    "give that ACL entry execute permission: setfacl -m u:{user}:rx {p}, or remove it: setfacl -x u:{user} {p}",
                    p = sh_quote(path)
                )),
                FileProblem::NoexecMount { mount: Some(mount) } => Some(format!(
                    "move the program off {mount}, or remount it without noexec"
                )),
                FileProblem::NoexecMount { mount: None } => Some(format!(
                    "move {path} to a filesystem not mounted noexec, or remount its own without noexec"
                )),
                FileProblem::InterpreterMissing { interpreter } => Some(format!(
                    "install {interpreter}, or fix the #! line of {path}"
                )),
                FileProblem::BadFormat => Some(format!(
                    "start {path} with a #! line (e.g. #!/bin/sh), or name its interpreter in ExecStart="
                )),
                FileProblem::IsDirectory => {
                    Some("point ExecStart= at the program, not its directory".into())
                }
                FileProblem::NotLookedAt { .. } | FileProblem::Unknown => None,
            },
            Cause::SetupFailed { status: 200, .. } => {
                Some("create the directory, or fix WorkingDirectory= in the unit file".into())
            }
            Cause::SetupFailed { status: 217, .. } => {
                Some("create the user (useradd), or fix User= in the unit file".into())
            }
            Cause::SetupFailed { .. } => Some("journalctl -u UNIT shows systemd's message".into()),
            Cause::OomKilled { .. } => {
                Some("raise MemoryMax= (or the machine's memory), or find what grows".into())
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::facts::{Facts, RecordedFacts};

    fn file(mode: u32) -> FileInfo {
        FileInfo {
            mode,
            uid: 0,
            gid: 0,
            is_dir: false,
            noexec_mount: None,
            interpreter: Some(("/bin/sh".into(), true)),
            acl: None,
            dirs: Vec::new(),
        }
    }

    fn found(info: FileInfo) -> Looked {
        Looked::Found {
            info,
            owner: OwnerNames::default(),
        }
    }

    #[test]
    fn file_problems_follow_errno_and_file_state() {
        let eacces = Errno(libc::EACCES);
        let absent = Some(&Looked::Absent);
        assert_eq!(
            FileProblem::diagnose(Errno(libc::ENOENT), absent),
            FileProblem::Missing
        );
        assert_eq!(FileProblem::diagnose(eacces, absent), FileProblem::Unknown);
        assert_eq!(
            FileProblem::diagnose(Errno(libc::ENOEXEC), absent),
            FileProblem::BadFormat
        );
        assert_eq!(
            FileProblem::diagnose(eacces, Some(&found(file(0o644)))),
            FileProblem::NotExecutable {
                mode: 0o644,
                uid: 0,
                gid: 0
            }
        );
        let noexec = FileInfo {
            noexec_mount: Some("/tmp".into()),
            ..file(0o755)
        };
        assert_eq!(
            FileProblem::diagnose(eacces, Some(&found(noexec))),
            FileProblem::NoexecMount {
                mount: Some("/tmp".into())
            }
        );
        let bad_interp = FileInfo {
            interpreter: Some(("/usr/bin/nope".into(), false)),
            ..file(0o755)
        };
        assert_eq!(
            FileProblem::diagnose(Errno(libc::ENOENT), Some(&found(bad_interp))),
            FileProblem::InterpreterMissing {
                interpreter: "/usr/bin/nope".into()
            }
        );
        assert_eq!(
            FileProblem::diagnose(Errno(libc::ENOEXEC), Some(&found(file(0o755)))),
            FileProblem::BadFormat
        );
        // Not looked at: said so, except where the errno alone tells.
        let failed = Looked::Failed("it could not be opened".into());
        assert_eq!(
            FileProblem::diagnose(eacces, Some(&failed)),
            FileProblem::NotLookedAt {
                reason: "it could not be opened".into()
            }
        );
        assert_eq!(
            FileProblem::diagnose(Errno(libc::ENOEXEC), None),
            FileProblem::BadFormat
        );
    }

    #[test]
    fn the_seed_case_reads_as_the_issue_says() {
        let cause = Cause::ExecFailed {
            command: "ExecStart".into(),
            path: "/usr/local/bin/mylog.sh".into(),
            file: RefusedFile::checked(FileLookup::done(Looked::Found {
                info: file(0o644),
                owner: OwnerNames {
                    user: Some("root".into()),
                    group: Some("root".into()),
                },
            })),
            evidence: ExecEvidence::SystemdCheck,
            pid: 42,
        };
        assert_eq!(
            cause.explain("mylog.service"),
            "mylog.service: ExecStart=/usr/local/bin/mylog.sh could not be executed: EACCES (Permission denied) — the file is mode 0644 root:root and not executable"
        );
        assert_eq!(
            cause.hint().as_deref(),
            Some("make it executable: chmod +x /usr/local/bin/mylog.sh")
        );
        assert_eq!(systemd_exit_status_name(203), Some("EXEC"));
        assert_eq!(systemd_exit_status_name(223), None);
    }

    /// The daemon accounts a failure before the look at its file is had: the cause says
    /// the file's state is not known yet, and says what it is once the look is in.
    #[test]
    fn a_cause_reads_the_look_when_it_is_explained() {
        let lookup = FileLookup::default();
        let cause = Cause::ExecFailed {
            command: "ExecStart".into(),
            path: "/opt/app".into(),
            file: RefusedFile::refused(Errno(libc::EACCES), lookup.clone()),
            evidence: ExecEvidence::Execve,
            pid: 7,
        };
        assert_eq!(
            cause.explain("app.service"),
            "app.service: ExecStart=/opt/app could not be executed: EACCES (Permission denied) — the file's state is not known (the look at it has not finished)"
        );
        assert_eq!(cause.hint(), None);
        lookup.fill(found(file(0o600)));
        assert!(
            cause
                .explain("app.service")
                .ends_with("the file is mode 0600 0:0 and not executable")
        );
        assert_eq!(
            cause.hint().as_deref(),
            Some("make it executable: chmod +x /opt/app")
        );
        // systemd's own check with the state not known: no error is made up.
        let unknown = Cause::ExecFailed {
            command: "ExecStart".into(),
            path: "/opt/app".into(),
            file: RefusedFile::checked(FileLookup::done(Looked::Failed("hung".into()))),
            evidence: ExecEvidence::SystemdCheck,
            pid: 7,
        };
        assert_eq!(unknown.summary(), "exec failed /opt/app");
        let json = serde_json::to_value(&unknown).unwrap();
        assert!(json.get("errno").is_none(), "{json}");
        assert_eq!(json["problem"], "not-looked-at");
    }

    #[test]
    fn owners_are_named_as_the_look_found_them() {
        let mut facts = RecordedFacts::default();
        facts.user_names.insert(1000, "app".into());
        facts.files.insert(
            "/opt/app".into(),
            FileInfo {
                uid: 1000,
                gid: 1000,
                ..file(0o600)
            },
        );
        let refused = RefusedFile::refused(Errno(libc::EACCES), facts.file("/opt/app", None));
        let owner = refused.owner();
        assert_eq!(
            owner,
            OwnerNames {
                user: Some("app".into()),
                group: None
            }
        );
        assert_eq!(owner.show(1000, 1000), "app:1000", "no name: the number");
        let missing = RefusedFile::refused(Errno(libc::ENOENT), facts.file("/nope", None));
        assert_eq!(missing.owner(), OwnerNames::default());
        let cause = Cause::ExecFailed {
            command: "ExecStart".into(),
            path: "/opt/app".into(),
            file: refused,
            evidence: ExecEvidence::Execve,
            pid: 7,
        };
        assert!(
            cause
                .explain("app.service")
                .contains("mode 0600 app:1000 and"),
            "{}",
            cause.explain("app.service")
        );
        let json = serde_json::to_value(&cause).unwrap();
        assert_eq!(json["uid"], 1000);
        assert_eq!(json["errno"], libc::EACCES);
        assert_eq!(json["problem"], "not-executable");
        assert!(json.get("owner").is_none(), "the JSON is as it was: {json}");
    }

    /// The model's cause for m.service (ExecStart=/opt/m.sh) whose command's process,
    /// forked by pid 1, exits 203/EXEC without an execve; `check` is what the kernel
    /// recorded of systemd's check in it, if anything.
    fn cause_of_203(
        mut facts: RecordedFacts,
        check: Option<crate::event::EventKind>,
    ) -> (Cause, serde_json::Value) {
        use crate::{
            event::{CgroupRef, Event, EventKind, WaitStatus},
            model::{Model, ModelConfig, facts::parse_unit_file},
            testing::Fed,
        };
        facts.units.insert(
            "m.service".into(),
            parse_unit_file(
                "/etc/systemd/system/m.service",
                &["[Service]\nExecStartPre=/opt/pre.sh\nExecStart=/opt/m.sh\n".into()],
            ),
        );
        let mut m = Fed::new(Model::new(facts, ModelConfig::default()));
        let ev = |ts_ns, tgid, cgroup_id, kind| Event {
            ts_ns,
            pid: tgid,
            tgid,
            cgroup_id,
            comm: "systemd".into(),
            kind,
        };
        let cgroup = CgroupRef {
            id: 60,
            level: 2,
            path: "/system.slice/m.service".into(),
            path_truncated: false,
        };
        m.know_cgroup(1, "/init.scope");
        let mkdir = EventKind::CgroupMkdir {
            cgroup: cgroup.clone(),
        };
        m.apply(&ev(1, 1, 1, mkdir));
        m.apply(&ev(2, 1, 1, EventKind::Fork { child_pid: 400 }));
        let attach = EventKind::CgroupAttach {
            cgroup: cgroup.clone(),
            target_pid: 400,
        };
        m.apply(&ev(3, 1, 1, attach));
        if let Some(check) = check {
            m.apply(&ev(4, 400, 60, check));
        }
        let exit = EventKind::Exit {
            age_ns: None,
            ppid: 1,
            status: WaitStatus(203 << 8),
        };
        m.apply(&ev(5, 400, 60, exit));
        m.apply(&ev(6, 1, 1, EventKind::CgroupRmdir { cgroup }));
        let cause = m
            .model
            .unit("m.service")
            .and_then(|h| h.last_failure())
            .and_then(|r| r.outcome.as_ref())
            .and_then(|o| o.cause.clone())
            .expect("a failed run with a cause");
        let json = serde_json::to_value(&cause).unwrap();
        (cause, json)
    }

    /// systemd refuses a mode 0644 ExecStart= (203/EXEC, no execve): the explanation names
    /// the owner as the facts the model was given do, not as this host would.
    #[test]
    fn the_model_names_the_owner_from_its_facts() {
        let mut facts = RecordedFacts::default();
        facts.files.insert("/opt/m.sh".into(), file(0o644));
        facts.user_names.insert(0, "admin".into());
        let (cause, json) = cause_of_203(facts, None);
        assert!(
            cause
                .explain("m.service")
                .contains("mode 0644 admin:0 and not executable"),
            "{}",
            cause.explain("m.service")
        );
        assert_eq!(json["evidence"], "systemd-check");
    }

    /// The kernel's record of systemd's check, not the file's state since, decides: the
    /// file was 0644 at the check, and has been chmod'ed +x since (a replay after the fix).
    /// The command is the one the kernel named: ExecStartPre's here.
    #[test]
    fn the_kernel_s_record_of_the_check_outlives_the_fix() {
        use crate::event::{AccessSyscall, EventKind, FileSeen};
        let check = |name: &str, mode: u32, uid: u32, noexec: bool| EventKind::AccessFailed {
            ppid: 1,
            uid,
            gid: uid,
            errno: Errno(libc::EACCES),
            syscall: AccessSyscall::Faccessat2,
            path: String::new(),
            path_truncated: false,
            fd: Some(16),
            access_mode: 1,
            at_flags: 0x1000,
            file: Some(FileSeen {
                file_mode: libc::S_IFREG | mode,
                file_uid: 0,
                file_gid: 0,
                noexec,
                file_name: name.into(),
            }),
        };
        let mut facts = RecordedFacts::default();
        facts.files.insert("/opt/m.sh".into(), file(0o755));
        facts.files.insert("/opt/pre.sh".into(), file(0o755));
        let (cause, json) = cause_of_203(facts.clone(), None);
        assert!(
            cause
                .explain("m.service")
                .ends_with("the file looked fine when checked"),
            "without the kernel's record, a look made after the fix cannot tell: {}",
            cause.explain("m.service")
        );

        let (cause, json_seen) = cause_of_203(facts.clone(), Some(check("m.sh", 0o644, 0, false)));
        assert_eq!(
            cause.explain("m.service"),
            "m.service: ExecStart=/opt/m.sh could not be executed: EACCES (Permission denied) — the file is mode 0644 root:root and not executable"
        );
        assert_eq!(
            cause.hint().as_deref(),
            Some("make it executable: chmod +x /opt/m.sh")
        );
        assert_eq!(json_seen["evidence"], "access-check");
        assert_eq!(json_seen["mode"], 0o644);
        assert_eq!(json["evidence"], "systemd-check");

        let (cause, _) = cause_of_203(facts.clone(), Some(check("pre.sh", 0o700, 1000, false)));
        assert_eq!(
            cause.explain("m.service"),
            "m.service: ExecStartPre=/opt/pre.sh could not be executed: EACCES (Permission denied) — the file is mode 0700 root:root: none of its execute bits is for uid 1000 (gid 1000), which ran it"
        );
        let (cause, json) = cause_of_203(facts, Some(check("m.sh", 0o755, 0, true)));
        assert_eq!(cause.summary(), "EACCES /opt/m.sh (noexec mount)");
        assert_eq!(json["problem"], "noexec-mount");
        assert!(
            cause.hint().unwrap().contains("not mounted noexec"),
            "{:?}",
            cause.hint()
        );
    }

    /// The later look at a file and its directories, as the daemon has it: /usr/local/bin
    /// and the path's directories 0755 root:root unless `dirs` says otherwise.
    fn looked_at(path: &str, info: FileInfo, dirs: &[(&str, u32)], group: &str) -> FileLookup {
        use crate::model::facts::DirInfo;
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let dirs = (0..parts.len())
            .map(|n| {
                let path = format!("/{}", parts[..n].join("/"));
                let mode = dirs
                    .iter()
                    .find(|(d, _)| *d == path)
                    .map_or(0o755, |(_, m)| *m);
                DirInfo {
                    path,
                    mode,
                    owner: OwnerNames {
                        user: Some("root".into()),
                        group: Some("root".into()),
                    },
                    ..DirInfo::default()
                }
            })
            .collect();
        FileLookup::done(Looked::Found {
            owner: OwnerNames {
                user: Some("root".into()),
                group: Some(group.into()),
            },
            info: FileInfo { dirs, ..info },
        })
    }

    /// An execve the kernel refused with EACCES, run as `uid`, in a unit whose file says
    /// `service` ([Service] lines): what `tracer why` says, and its fix.
    fn refused_as(uid: u32, service: &str, path: &str, lookup: FileLookup) -> (String, String) {
        use crate::model::facts::parse_unit_file;
        let unit = parse_unit_file(
            "/etc/systemd/system/p.service",
            &[format!("[Service]\n{service}")],
        );
        let cause = Cause::ExecFailed {
            command: "ExecStart".into(),
            path: path.into(),
            file: RefusedFile::refused(Errno(libc::EACCES), lookup)
                .ran_as(uid)
                .with_settings(Some(&unit)),
            evidence: ExecEvidence::Execve,
            pid: 9,
        };
        (cause.explain("p.service"), cause.hint().unwrap_or_default())
    }

    /// (a) User=nobody and a 0700 root:root file: only root may run it.
    #[test]
    fn a_file_only_its_owner_may_execute() {
        let path = "/usr/local/bin/x.sh";
        let (why, fix) = refused_as(
            65534,
            "User=nobody\n",
            path,
            looked_at(path, file(0o700), &[], "root"),
        );
        assert_eq!(
            why,
            "p.service: ExecStart=/usr/local/bin/x.sh could not be executed: EACCES (Permission denied) — the file is mode 0700 root:root (looked at after the failure): only its owner may execute it, not uid 65534 (User=nobody), which ran it"
        );
        assert_eq!(
            fix,
            "let anyone execute it: chmod o+x /usr/local/bin/x.sh, or give it to the service's user: chown nobody /usr/local/bin/x.sh, or change User="
        );
        // Run as root, the same file is fine: nothing is made up.
        let (why, fix) = refused_as(0, "", path, looked_at(path, file(0o700), &[], "root"));
        assert!(why.ends_with("the file looked fine when checked"), "{why}");
        assert_eq!(fix, "");
    }

    /// (b) A 0755 file in a directory the user may not search (/opt/private 0700).
    #[test]
    fn a_directory_on_the_path_the_user_may_not_search() {
        let path = "/opt/private/x.sh";
        let lookup = looked_at(path, file(0o755), &[("/opt/private", 0o700)], "root");
        let (why, fix) = refused_as(65534, "User=nobody\n", path, lookup);
        assert_eq!(
            why,
            "p.service: ExecStart=/opt/private/x.sh could not be executed: EACCES (Permission denied) — uid 65534 (User=nobody), which ran it, may not search the directory /opt/private on its path: mode 0700 root:root (looked at after the failure)"
        );
        assert_eq!(
            fix,
            "move the program out of /opt/private (to /usr/local/bin, say), or let others search it: chmod o+x /opt/private"
        );
        // /root, as Debian makes it.
        let path = "/root/bin/x.sh";
        let (why, _) = refused_as(
            65534,
            "User=nobody\n",
            path,
            looked_at(path, file(0o755), &[("/root", 0o700)], "root"),
        );
        assert!(
            why.contains("may not search the directory /root on its path"),
            "{why}"
        );
    }

    /// (c) A 0750 root:staff file and a user not in staff; the fix is the group.
    #[test]
    fn a_file_only_its_group_may_execute() {
        let path = "/usr/local/bin/x.sh";
        let info = FileInfo {
            gid: 50,
            ..file(0o750)
        };
        let (why, fix) = refused_as(
            65534,
            "User=nobody\n",
            path,
            looked_at(path, info, &[], "staff"),
        );
        assert_eq!(
            why,
            "p.service: ExecStart=/usr/local/bin/x.sh could not be executed: EACCES (Permission denied) — the file is mode 0750 root:staff (looked at after the failure): only its owner and group staff may execute it, and uid 65534 (User=nobody), which ran it, was not in that group"
        );
        assert_eq!(
            fix,
            "add the service to group staff: SupplementaryGroups=staff (or Group=staff) in the unit file, or let anyone execute it: chmod o+x /usr/local/bin/x.sh"
        );
        // A group name that is not a plain word is given by number; a path that is not
        // a plain word is quoted.
        let path = "/opt/a b;x";
        let info = FileInfo {
            gid: 50,
            ..file(0o750)
        };
        let (_, fix) = refused_as(
            65534,
            "User=nobody\n",
            path,
            looked_at(path, info, &[], "st$(x)"),
        );
        assert_eq!(
            fix,
            "add the service to group 50: SupplementaryGroups=50 (or Group=50) in the unit file, or let anyone execute it: chmod o+x '/opt/a b;x'"
        );
    }

    /// (d) DynamicUser=yes: a uid of its own at each start; chown is no fix.
    #[test]
    fn a_dynamic_user_is_named_by_its_setting() {
        let path = "/usr/local/bin/x.sh";
        let (why, fix) = refused_as(
            63897,
            "DynamicUser=yes\n",
            path,
            looked_at(path, file(0o700), &[], "root"),
        );
        assert!(
            why.ends_with(
                "only its owner may execute it, not uid 63897 (DynamicUser=yes), which ran it"
            ),
            "{why}"
        );
        assert_eq!(
            fix,
            "let anyone execute it: chmod o+x /usr/local/bin/x.sh (DynamicUser= picks the service's uid at each start: chown cannot follow it), or run it as a user that may: User="
        );
    }

    /// (e) A 0755 file whose ACL gives the user nothing.
    #[test]
    fn an_acl_entry_that_denies() {
        use crate::model::facts::{Acl, AclEntry, AclTag};
        let path = "/usr/local/bin/x.sh";
        let entry = |tag, perm| AclEntry { tag, perm };
        let acl = Acl {
            entries: vec![
                entry(AclTag::UserObj, 7),
                entry(AclTag::User(65534), 0),
                entry(AclTag::GroupObj, 5),
                entry(AclTag::Mask, 5),
                entry(AclTag::Other, 5),
            ],
        };
        let info = FileInfo {
            acl: Some(acl),
            ..file(0o755)
        };
        let (why, fix) = refused_as(
            65534,
            "User=nobody\n",
            path,
            looked_at(path, info.clone(), &[], "root"),
        );
        assert_eq!(
            why,
            "p.service: ExecStart=/usr/local/bin/x.sh could not be executed: EACCES (Permission denied) — the file is mode 0755 root:root, but its ACL has an entry for uid 65534 (User=nobody), which ran it, without execute permission (user:65534:---; looked at after the failure)"
        );
        assert_eq!(
            fix,
            "give that ACL entry execute permission: setfacl -m u:65534:rx /usr/local/bin/x.sh, or remove it: setfacl -x u:65534 /usr/local/bin/x.sh"
        );
        // Another user is not refused by that entry: not explained by it.
        let (why, _) = refused_as(1000, "User=app\n", path, looked_at(path, info, &[], "root"));
        assert!(why.ends_with("the file looked fine when checked"), "{why}");
    }

    /// Through the model: the execve's uid, as the kernel recorded it, reaches the cause,
    /// with the unit file's User=.
    #[test]
    fn the_model_explains_with_the_uid_the_kernel_saw() {
        use crate::event::EventKind;
        let mut facts = RecordedFacts::default();
        facts.files.insert("/opt/m.sh".into(), file(0o700));
        facts.user_names.insert(0, "root".into());
        facts.group_names.insert(0, "root".into());
        let failed = EventKind::ExecFailed {
            ppid: 1,
            uid: 65534,
            errno: Errno(libc::EACCES),
            filename: "/opt/m.sh".into(),
            filename_truncated: false,
        };
        let (cause, json) = cause_of_203(facts, Some(failed));
        assert!(
            cause
                .explain("m.service")
                .ends_with("only its owner may execute it, not uid 65534, which ran it"),
            "{}",
            cause.explain("m.service")
        );
        assert_eq!(json["problem"], "not-executable-by");
        assert_eq!(json["user"], 65534);
        assert_eq!(json["evidence"], "execve");
    }

    /// A check the kernel recorded (a user manager checks as its user): the mode lets the
    /// user, and the ACL the look found does not.
    #[test]
    fn a_recorded_check_refused_by_an_acl() {
        use crate::{
            event::{AccessSyscall, FileSeen},
            model::facts::{Acl, AclEntry, AclTag},
        };
        let entry = |tag, perm| AclEntry { tag, perm };
        let acl = Acl {
            entries: vec![
                entry(AclTag::UserObj, 7),
                entry(AclTag::User(1000), 4),
                entry(AclTag::GroupObj, 5),
                entry(AclTag::Mask, 5),
                entry(AclTag::Other, 5),
            ],
        };
        let check = AccessRefusal {
            ts_ns: 1,
            errno: Errno(libc::EACCES),
            syscall: AccessSyscall::Faccessat2,
            uid: 1000,
            gid: 1000,
            file: Some(FileSeen {
                file_mode: libc::S_IFREG | 0o755,
                file_uid: 0,
                file_gid: 0,
                noexec: false,
                file_name: "x".into(),
            }),
        };
        let info = FileInfo {
            acl: Some(acl),
            ..file(0o755)
        };
        let lookup = FileLookup::done(found(info.clone()));
        let refused = RefusedFile::check_refused(check.clone(), lookup);
        assert_eq!(
            refused.problem(),
            FileProblem::AclDenies {
                mode: 0o755,
                uid: 0,
                gid: 0,
                user: 1000,
                perm: 4
            }
        );
        // Without an ACL that says so, the kernel's record alone cannot tell.
        let plain = RefusedFile::check_refused(check, FileLookup::done(found(file(0o755))));
        assert_eq!(plain.problem(), FileProblem::Unknown);
    }
}
