//! Why a run ended the way it did: one type every output uses, with its evidence and, where
//! there is one, the fix.

use serde::Serialize;

use super::facts::FileInfo;
use crate::event::{Errno, Signal};

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
    /// The filesystem is mounted noexec.
    NoexecMount { mount: String },
    /// The path is a directory.
    IsDirectory,
    /// A script whose `#!` interpreter does not exist.
    InterpreterMissing { interpreter: String },
    /// Not a format the kernel can execute (no `#!`, not ELF).
    BadFormat,
    /// The file looked fine when checked.
    Unknown,
}

impl FileProblem {
    /// The problem `errno` points to, given the file's state now.
    pub fn diagnose(errno: Errno, file: Option<&FileInfo>) -> Self {
        let Some(f) = file else {
            // Nothing at the path now: that explains ENOENT; for other errors the file
            // was there when it failed and has gone since.
            return match errno.0 {
                libc::ENOENT => Self::Missing,
                libc::ENOEXEC => Self::BadFormat,
                _ => Self::Unknown,
            };
        };
        match errno.0 {
            libc::EACCES => {
                if f.is_dir {
                    Self::IsDirectory
                } else if let Some(mount) = &f.noexec_mount {
                    Self::NoexecMount {
                        mount: mount.clone(),
                    }
                } else if !f.any_exec_bit() {
                    Self::NotExecutable {
                        mode: f.mode,
                        uid: f.uid,
                        gid: f.gid,
                    }
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

/// How the kernel learned the exec would fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecEvidence {
    /// An execve/execveat returned the error (seen by the kernel programs).
    Execve,
    /// systemd's own check refused it before any execve (exit status 203/EXEC); the errno
    /// is what the file's state implies.
    SystemdCheck,
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
        #[serde(flatten)]
        errno: Errno,
        #[serde(flatten)]
        problem: FileProblem,
        evidence: ExecEvidence,
        pid: u32,
    },
    /// systemd failed setting up the process (exit status 200–245).
    SetupFailed {
        status: u8,
        name: String,
        /// The setting at fault, from the unit file (`WorkingDirectory=/x`).
        setting: Option<String>,
        detail: Option<String>,
        pid: u32,
    },
    /// The program exited with a non-zero code.
    ExitCode { code: u8, pid: u32, program: String },
    /// The program was killed by a signal.
    Killed {
        #[serde(flatten)]
        signal: Signal,
        core_dumped: bool,
        /// Who sent it, when another process did.
        sender_pid: Option<u32>,
        sender_comm: Option<String>,
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
            Cause::ExecFailed {
                errno,
                path,
                problem,
                ..
            } => format!(
                "{} {path}{}",
                errno.name().unwrap_or("exec failed"),
                match problem {
                    FileProblem::Missing => " (missing)".to_owned(),
                    FileProblem::NotExecutable { mode, .. } => format!(" (mode {mode:04o})"),
                    FileProblem::NoexecMount { mount } => format!(" (noexec mount {mount})"),
                    FileProblem::IsDirectory => " (a directory)".to_owned(),
                    FileProblem::InterpreterMissing { interpreter } => {
                        format!(" (interpreter {interpreter} missing)")
                    }
                    FileProblem::BadFormat => " (not an executable format)".to_owned(),
                    FileProblem::Unknown => String::new(),
                }
            ),
            Cause::SetupFailed { status, name, .. } => format!("{status}/{name}"),
            Cause::ExitCode { code, .. } => format!("exit {code}"),
            Cause::Killed {
                signal,
                core_dumped,
                sender_comm,
                sender_pid,
                ..
            } => {
                let mut s = format!("killed by {signal}");
                if *core_dumped {
                    s.push_str(" (core dumped)");
                }
                if let (Some(comm), Some(pid)) = (sender_comm, sender_pid) {
                    s.push_str(&format!(" from {comm} ({pid})"));
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
                errno,
                problem,
                ..
            } => {
                let why = match problem {
                    FileProblem::Missing => "the file does not exist".to_owned(),
                    FileProblem::NotExecutable { mode, uid, gid } => format!(
                        "the file is mode {mode:04o} {}:{} and not executable",
                        user_name(*uid),
                        group_name(*gid)
                    ),
                    FileProblem::NoexecMount { mount } => {
                        format!("its filesystem {mount} is mounted noexec")
                    }
                    FileProblem::IsDirectory => "it is a directory".to_owned(),
                    FileProblem::InterpreterMissing { interpreter } => format!(
                        "the script's interpreter {interpreter} (its #! line) does not exist"
                    ),
                    FileProblem::BadFormat => {
                        "it is neither a binary nor a script with a #! line".to_owned()
                    }
                    FileProblem::Unknown => "the file looked fine when checked".to_owned(),
                };
                format!("{unit}: {command}={path} could not be executed: {errno} — {why}")
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
                if let Some(detail) = detail {
                    s.push_str(&format!(": {detail}"));
                }
                s
            }
            Cause::ExitCode { code, program, .. } => {
                format!("{unit}: {program} exited with status {code}")
            }
            Cause::Killed { program, .. } => format!("{unit}: {program} was {}", self.summary()),
            Cause::OomKilled { program, .. } => format!(
                "{unit}: {program} was killed by the kernel's OOM killer (the unit or the machine ran out of memory)"
            ),
        }
    }

    /// What to do about it, when that is clear.
    pub fn hint(&self) -> Option<String> {
        match self {
            Cause::ExecFailed { path, problem, .. } => match problem {
                FileProblem::NotExecutable { .. } => {
                    Some(format!("make it executable: chmod +x {path}"))
                }
                FileProblem::Missing => Some(format!(
                    "check the path in the unit file, or install the program at {path}"
                )),
                FileProblem::NoexecMount { mount } => Some(format!(
                    "move the program off {mount}, or remount it without noexec"
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
                FileProblem::Unknown => None,
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

fn user_name(uid: u32) -> String {
    name_from("/etc/passwd", uid).unwrap_or_else(|| uid.to_string())
}

fn group_name(gid: u32) -> String {
    name_from("/etc/group", gid).unwrap_or_else(|| gid.to_string())
}

fn name_from(file: &str, id: u32) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let _ = f.next();
        (f.next()?.parse::<u32>().ok()? == id).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(mode: u32) -> FileInfo {
        FileInfo {
            mode,
            uid: 0,
            gid: 0,
            is_dir: false,
            noexec_mount: None,
            interpreter: Some(("/bin/sh".into(), true)),
        }
    }

    #[test]
    fn file_problems_follow_errno_and_file_state() {
        let eacces = Errno(libc::EACCES);
        assert_eq!(
            FileProblem::diagnose(Errno(libc::ENOENT), None),
            FileProblem::Missing
        );
        assert_eq!(FileProblem::diagnose(eacces, None), FileProblem::Unknown);
        assert_eq!(
            FileProblem::diagnose(Errno(libc::ENOEXEC), None),
            FileProblem::BadFormat
        );
        assert_eq!(
            FileProblem::diagnose(eacces, Some(&file(0o644))),
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
            FileProblem::diagnose(eacces, Some(&noexec)),
            FileProblem::NoexecMount {
                mount: "/tmp".into()
            }
        );
        let bad_interp = FileInfo {
            interpreter: Some(("/usr/bin/nope".into(), false)),
            ..file(0o755)
        };
        assert_eq!(
            FileProblem::diagnose(Errno(libc::ENOENT), Some(&bad_interp)),
            FileProblem::InterpreterMissing {
                interpreter: "/usr/bin/nope".into()
            }
        );
        assert_eq!(
            FileProblem::diagnose(Errno(libc::ENOEXEC), Some(&file(0o755))),
            FileProblem::BadFormat
        );
    }

    #[test]
    fn the_seed_case_reads_as_the_issue_says() {
        let cause = Cause::ExecFailed {
            command: "ExecStart".into(),
            path: "/usr/local/bin/mylog.sh".into(),
            errno: Errno(libc::EACCES),
            problem: FileProblem::NotExecutable {
                mode: 0o644,
                uid: 0,
                gid: 0,
            },
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
}
