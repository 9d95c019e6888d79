//! What the model looks up outside the event stream, behind a seam so the model is tested
//! with recorded facts: a file's state when an event names it (mode, owner, noexec mount,
//! `#!` interpreter), what a unit's file says (ExecStart=, Type=, User=, ...) and users'
//! and groups' names.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, OnceLock},
};

use serde::Serialize;

use super::cause::OwnerNames;
use crate::{inspect, users};

/// A file's state, as `stat` and its first line tell it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FileInfo {
    /// Permission bits (`0o644`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub is_dir: bool,
    /// The mount point of its filesystem when that is mounted noexec.
    pub noexec_mount: Option<String>,
    /// The interpreter of a `#!` first line, and whether it exists.
    pub interpreter: Option<(String, bool)>,
    /// Its access ACL (`system.posix_acl_access`), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acl: Option<Acl>,
    /// The directories of its path, from `/` down to the one holding it, as looked at
    /// with it (empty: not looked at).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<DirInfo>,
}

/// A directory on the way to a file: what decides whether a user may search it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DirInfo {
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acl: Option<Acl>,
    /// Its owner's and group's names, looked up with it.
    #[serde(skip)]
    pub owner: OwnerNames,
}

/// A POSIX access ACL: its entries as the kernel keeps them (`system.posix_acl_access`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Acl {
    pub entries: Vec<AclEntry>,
}

/// One ACL entry: whom it is for and its `rwx` bits (4, 2, 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AclEntry {
    pub tag: AclTag,
    pub perm: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "tag", content = "id", rename_all = "kebab-case")]
pub enum AclTag {
    UserObj,
    User(u32),
    GroupObj,
    Group(u32),
    Mask,
    Other,
}

impl Acl {
    /// The entries of the kernel's xattr format: a version (2), then 8 bytes an entry
    /// (tag, perm: u16; id: u32; little-endian). None for anything else: a value the
    /// kernel would not have taken is not guessed at.
    pub fn from_xattr(value: &[u8]) -> Option<Self> {
        let (version, rest) = value.split_first_chunk::<4>()?;
        if u32::from_le_bytes(*version) != 2 || rest.len() % 8 != 0 {
            return None;
        }
        let entries = rest
            .chunks_exact(8)
            .map(|e| {
                let tag = u16::from_le_bytes([e[0], e[1]]);
                let perm = u16::from_le_bytes([e[2], e[3]]);
                let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
                let tag = match tag {
                    0x01 => AclTag::UserObj,
                    0x02 => AclTag::User(id),
                    0x04 => AclTag::GroupObj,
                    0x08 => AclTag::Group(id),
                    0x10 => AclTag::Mask,
                    0x20 => AclTag::Other,
                    _ => return None,
                };
                Some(AclEntry {
                    tag,
                    perm: u8::try_from(perm & 7).ok()?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self { entries })
    }

    fn find(&self, tag: AclTag) -> Option<u8> {
        self.entries.iter().find(|e| e.tag == tag).map(|e| e.perm)
    }

    /// The named user entry for `uid`, if there is one.
    pub fn user(&self, uid: u32) -> Option<u8> {
        self.find(AclTag::User(uid))
    }

    /// The mask entry (None: no named entries, nothing masked).
    pub fn mask(&self) -> Option<u8> {
        self.find(AclTag::Mask)
    }

    /// The group entries (the owning group's as None) and their bits before the mask.
    pub fn groups(&self) -> impl Iterator<Item = (Option<u32>, u8)> + '_ {
        self.entries.iter().filter_map(|e| match e.tag {
            AclTag::GroupObj => Some((None, e.perm)),
            AclTag::Group(g) => Some((Some(g), e.perm)),
            _ => None,
        })
    }

    /// Whether it says more than the mode does (named users or groups).
    pub fn extended(&self) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(e.tag, AclTag::User(_) | AclTag::Group(_)))
    }
}

impl FileInfo {
    /// Some execute bit is set (what root needs to exec a regular file).
    pub fn any_exec_bit(&self) -> bool {
        self.mode & 0o111 != 0
    }
}

/// What a look at a file found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Looked {
    /// The file, and its owner's and group's names (looked up with it, so that rendering
    /// looks nothing up and a replay shows the recording's names).
    Found { info: FileInfo, owner: OwnerNames },
    /// Nothing at the path.
    Absent,
    /// The file could not be looked at; why.
    Failed(String),
}

/// What a lookup found, filled once by whoever looks: at once (a recording, a report), or
/// later by the daemon's lookup workers, off the event path. Those who explain read it
/// when they explain, by which time the look has usually been had; until then
/// [`Deferred::get`] is None.
#[derive(Debug)]
pub struct Deferred<T>(Arc<OnceLock<T>>);

impl<T> Default for Deferred<T> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<T> Clone for Deferred<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Deferred<T> {
    /// A look already had.
    pub fn done(found: T) -> Self {
        let l = Self::default();
        l.fill(found);
        l
    }

    /// What the look found, once it has been had.
    pub fn get(&self) -> Option<&T> {
        self.0.get()
    }

    /// Records what the look found (the first fill wins).
    pub fn fill(&self, found: T) {
        let _ = self.0.set(found);
    }
}

impl<T: PartialEq> PartialEq for Deferred<T> {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl<T: Eq> Eq for Deferred<T> {}

/// A file's state, looked up.
pub type FileLookup = Deferred<Looked>;

/// Whether a user exists (None: the lookup failed), looked up.
pub type UserLookup = Deferred<Option<bool>>;

/// The parts of a unit file the explanations use.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UnitFile {
    /// Where it was found.
    pub path: String,
    /// `Type=` (simple when unset).
    pub service_type: Option<String>,
    /// Programs of `ExecStart=` lines, in order (prefixes like `-` and `+` removed).
    pub exec_start: Vec<String>,
    /// Programs of `ExecStartPre=` lines.
    pub exec_start_pre: Vec<String>,
    /// Programs of the other roles' lines: `ExecCondition=`, `ExecStartPost=`,
    /// `ExecReload=`, `ExecStop=`, `ExecStopPost=`.
    pub exec_condition: Vec<String>,
    pub exec_start_post: Vec<String>,
    pub exec_reload: Vec<String>,
    pub exec_stop: Vec<String>,
    pub exec_stop_post: Vec<String>,
    /// `ExecStart=` lines as written.
    pub exec_start_lines: Vec<String>,
    pub user: Option<String>,
    /// `Group=`, `SupplementaryGroups=` (names or numbers, in order), `DynamicUser=yes`:
    /// with `User=`, whom systemd runs the commands as.
    pub group: Option<String>,
    pub supplementary_groups: Vec<String>,
    pub dynamic_user: bool,
    pub working_directory: Option<String>,
    /// `RemainAfterExit=yes`: active (exited) after the main process ended.
    pub remain_after_exit: bool,
    /// `SuccessExitStatus=`: exit statuses and signals that count as success too.
    pub success_exit_status: Vec<i32>,
    pub success_signals: Vec<i32>,
    /// The (last) `ExecStart=` line has the `-` prefix: its failure is ignored.
    pub exec_start_ignores_failure: bool,
    /// Programs of the other roles' lines with the `-` prefix: their failures are ignored.
    pub failure_ignored: Vec<String>,
}

impl UnitFile {
    /// Whether systemd counts this end of ExecStart's process a success beyond exit 0
    /// and the clean signals: SuccessExitStatus=, or a `-` prefix.
    pub fn counts_as_success(&self, status: crate::event::WaitStatus) -> bool {
        self.exec_start_ignores_failure
            || status
                .exit_code()
                .is_some_and(|c| self.success_exit_status.contains(&i32::from(c)))
            || status
                .signal()
                .is_some_and(|s| self.success_signals.contains(&s))
    }
}

/// A signal by its name as unit files write it (`SIGUSR1` or `USR1`).
fn signal_by_name(name: &str) -> Option<i32> {
    let name = name.strip_prefix("SIG").unwrap_or(name);
    (1..32).find(|&n| crate::event::signal_name(n).is_some_and(|s| &s[3..] == name))
}

/// Looks things up when an event needs them.
pub trait Facts {
    /// The file at `path` as process `pid` saw it (its mount namespace, while it lives),
    /// looked at now or soon.
    fn file(&self, path: &str, pid: Option<u32>) -> FileLookup;
    /// The unit's file, when one can be found.
    fn unit_file(&self, unit: &str) -> Option<UnitFile>;
    /// Whether a user name exists (User= of a 217/USER failure), looked up now or soon.
    fn user_exists(&self, name: &str) -> UserLookup;
}

/// Directories systemd loads system units from, highest priority first.
const UNIT_DIRS: [&str; 5] = [
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// The running system's files.
#[derive(Clone, Debug, Default)]
pub struct LiveFacts;

impl Facts for LiveFacts {
    /// As whoever asks sees it: a report's pids are of the past.
    fn file(&self, path: &str, _pid: Option<u32>) -> FileLookup {
        FileLookup::done(inspect::look(path, &inspect::Root::here()))
    }

    fn unit_file(&self, unit: &str) -> Option<UnitFile> {
        // A template instance (getty@tty1.service) is described by getty@.service.
        let template = unit
            .split_once('@')
            .and_then(|(prefix, rest)| Some(format!("{prefix}@.{}", rest.rsplit_once('.')?.1)));
        let names: Vec<&str> = std::iter::once(unit).chain(template.as_deref()).collect();
        let (path, text) = names.iter().find_map(|name| {
            UNIT_DIRS.iter().find_map(|dir| {
                let p = Path::new(dir).join(name);
                std::fs::read_to_string(&p)
                    .ok()
                    .map(|t| (p.display().to_string(), t))
            })
        })?;
        let mut texts = vec![text];
        for name in &names {
            for dir in UNIT_DIRS.iter().rev() {
                let Ok(entries) = std::fs::read_dir(Path::new(dir).join(format!("{name}.d")))
                else {
                    continue;
                };
                let mut dropins: Vec<_> = entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "conf"))
                    .collect();
                dropins.sort();
                texts.extend(
                    dropins
                        .iter()
                        .filter_map(|p| std::fs::read_to_string(p).ok()),
                );
            }
        }
        Some(parse_unit_file(&path, &texts))
    }

    fn user_exists(&self, name: &str) -> UserLookup {
        UserLookup::done(user_exists_now(name))
    }
}

/// Whether a user name exists, asked of NSS now (None: it could not be asked). systemd
/// takes a number for a user it does not know by name.
pub fn user_exists_now(name: &str) -> Option<bool> {
    let known = users::user_by_name(name).ok()?.is_some();
    Some(known || name.parse::<u32>().is_ok())
}

/// `#!/usr/bin/env python3` → `/usr/bin/env`.
pub fn parse_shebang(head: &[u8]) -> Option<String> {
    let rest = head.strip_prefix(b"#!")?;
    let line = rest.split(|&b| b == b'\n').next()?;
    let line = String::from_utf8_lossy(line);
    line.split_whitespace().next().map(str::to_owned)
}

/// The mount point holding `path` when it is mounted noexec (longest matching mount).
pub fn noexec_mount_of(mountinfo: &str, path: &str) -> Option<String> {
    let mut best: Option<(&str, bool)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(mount), Some(opts)) = (fields.get(4), fields.get(5)) else {
            continue;
        };
        let inside = *mount == "/"
            || path == *mount
            || path
                .strip_prefix(mount)
                .is_some_and(|rest| rest.starts_with('/'));
        if inside && best.is_none_or(|(b, _)| mount.len() >= b.len()) {
            best = Some((mount, opts.split(',').any(|o| o == "noexec")));
        }
    }
    best.filter(|(_, noexec)| *noexec)
        .map(|(m, _)| m.to_owned())
}

/// The program of an Exec*= value: prefixes (`-`, `@`, `:`, `+`, `!`) and quotes removed.
pub fn exec_program(value: &str) -> Option<String> {
    let v = value
        .trim_start()
        .trim_start_matches(['-', '@', ':', '+', '!']);
    let first = v.split_whitespace().next()?;
    Some(first.trim_matches('"').trim_matches('\'').to_owned())
}

/// Reads the [Service] settings the model uses from a unit file and its drop-ins, in
/// order (an empty `ExecStart=` resets the list, as systemd does).
pub fn parse_unit_file(path: &str, texts: &[String]) -> UnitFile {
    let mut u = UnitFile {
        path: path.to_owned(),
        ..UnitFile::default()
    };
    for text in texts {
        let mut section = String::new();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
                continue;
            }
            if line.starts_with('[') {
                section = line.to_owned();
                continue;
            }
            if section != "[Service]" {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            match key {
                "Type" => u.service_type = Some(value.to_owned()),
                "User" => u.user = (!value.is_empty()).then(|| value.to_owned()),
                "Group" => u.group = (!value.is_empty()).then(|| value.to_owned()),
                "SupplementaryGroups" if value.is_empty() => u.supplementary_groups.clear(),
                "SupplementaryGroups" => u
                    .supplementary_groups
                    .extend(value.split_whitespace().map(str::to_owned)),
                "DynamicUser" => u.dynamic_user = matches!(value, "yes" | "true" | "1" | "on"),
                "WorkingDirectory" => u.working_directory = Some(value.to_owned()),
                "RemainAfterExit" => {
                    u.remain_after_exit = matches!(value, "yes" | "true" | "1" | "on")
                }
                "ExecStart" if value.is_empty() => {
                    u.exec_start.clear();
                    u.exec_start_lines.clear();
                }
                "ExecStart" => {
                    u.exec_start.extend(exec_program(value));
                    u.exec_start_lines.push(value.to_owned());
                    let prefixes =
                        value.len() - value.trim_start_matches(['-', '@', ':', '+', '!']).len();
                    u.exec_start_ignores_failure = value[..prefixes].contains('-');
                }
                "SuccessExitStatus" if value.is_empty() => {
                    u.success_exit_status.clear();
                    u.success_signals.clear();
                }
                "SuccessExitStatus" => {
                    for word in value.split_whitespace() {
                        match word.parse::<i32>() {
                            Ok(n) => u.success_exit_status.push(n),
                            Err(_) => u.success_signals.extend(signal_by_name(word)),
                        }
                    }
                }
                "ExecStartPre" | "ExecCondition" | "ExecStartPost" | "ExecReload" | "ExecStop"
                | "ExecStopPost" => {
                    let list = match key {
                        "ExecStartPre" => &mut u.exec_start_pre,
                        "ExecCondition" => &mut u.exec_condition,
                        "ExecStartPost" => &mut u.exec_start_post,
                        "ExecReload" => &mut u.exec_reload,
                        "ExecStop" => &mut u.exec_stop,
                        _ => &mut u.exec_stop_post,
                    };
                    if value.is_empty() {
                        list.clear();
                    } else {
                        list.extend(exec_program(value));
                        let prefixes =
                            value.len() - value.trim_start_matches(['-', '@', ':', '+', '!']).len();
                        if value[..prefixes].contains('-') {
                            u.failure_ignored.extend(exec_program(value));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    u
}

/// Facts given up front: for replaying recordings in tests.
#[derive(Clone, Debug, Default)]
pub struct RecordedFacts {
    pub files: HashMap<String, FileInfo>,
    pub units: HashMap<String, UnitFile>,
    /// User names that exist.
    pub users: Vec<String>,
    /// Users' names by uid (files' owners); an id not here is shown as its number.
    pub user_names: HashMap<u32, String>,
    /// Groups' names by gid.
    pub group_names: HashMap<u32, String>,
}

impl Facts for RecordedFacts {
    fn file(&self, path: &str, _pid: Option<u32>) -> FileLookup {
        FileLookup::done(match self.files.get(path) {
            Some(info) => Looked::Found {
                owner: OwnerNames {
                    user: self.user_names.get(&info.uid).cloned(),
                    group: self.group_names.get(&info.gid).cloned(),
                },
                info: info.clone(),
            },
            None => Looked::Absent,
        })
    }

    fn unit_file(&self, unit: &str) -> Option<UnitFile> {
        self.units.get(unit).cloned()
    }

    fn user_exists(&self, name: &str) -> UserLookup {
        UserLookup::done(Some(self.users.iter().any(|u| u == name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_files_parse_like_systemd() {
        let main = "[Unit]\nDescription=x\nExecStart=/not/in/service\n[Service]\nType=forking\n\
                    ExecStartPre=-/bin/sleep 2\nExecStart=/usr/local/bin/a.sh --flag\nUser=app\n"
            .to_owned();
        let dropin = "[Service]\nExecStart=\nExecStart=+\"/opt/b\" x\n".to_owned();
        let u = parse_unit_file("/etc/systemd/system/a.service", std::slice::from_ref(&main));
        assert_eq!(u.exec_start, vec!["/usr/local/bin/a.sh"]);
        assert_eq!(u.exec_start_pre, vec!["/bin/sleep"]);
        assert_eq!(u.service_type.as_deref(), Some("forking"));
        assert_eq!(u.user.as_deref(), Some("app"));
        let u = parse_unit_file("/x", &[main, dropin]);
        assert_eq!(u.exec_start, vec!["/opt/b"]);
        assert_eq!(u.exec_start_lines, vec!["+\"/opt/b\" x"]);
    }

    #[test]
    fn user_and_group_names_come_from_the_host_or_the_recording() {
        let owner = |facts: &dyn Facts, path| match facts.file(path, None).get() {
            Some(Looked::Found { owner, .. }) => owner.clone(),
            other => panic!("{other:?}"),
        };
        let live = LiveFacts;
        let root = owner(&live, "/");
        assert_eq!(root.user.as_deref(), Some("root"));
        assert_eq!(root.group.as_deref(), Some("root"));
        assert_eq!(live.user_exists("root").get(), Some(&Some(true)));
        assert_eq!(
            live.user_exists("tracer-no-such-user").get(),
            Some(&Some(false))
        );
        assert_eq!(
            live.user_exists("4321").get(),
            Some(&Some(true)),
            "a uid is taken as is"
        );
        let mut recorded = RecordedFacts::default();
        let info = FileInfo {
            mode: 0o644,
            uid: 0,
            gid: 10,
            is_dir: false,
            noexec_mount: None,
            interpreter: None,
            acl: None,
            dirs: Vec::new(),
        };
        recorded.files.insert("/x".into(), info);
        assert_eq!(owner(&recorded, "/x"), OwnerNames::default());
        recorded.user_names.insert(0, "admin".into());
        recorded.group_names.insert(10, "wheel".into());
        let named = owner(&recorded, "/x");
        assert_eq!(named.user.as_deref(), Some("admin"));
        assert_eq!(named.group.as_deref(), Some("wheel"));
    }

    #[test]
    fn shebangs_and_noexec_mounts() {
        assert_eq!(parse_shebang(b"#!/bin/sh\necho"), Some("/bin/sh".into()));
        assert_eq!(
            parse_shebang(b"#! /usr/bin/env python3\n"),
            Some("/usr/bin/env".into())
        );
        assert_eq!(parse_shebang(b"\x7fELF"), None);
        let mi = "1 0 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n\
                  2 1 0:5 / /tmp rw,nosuid,nodev,noexec - tmpfs tmpfs rw\n\
                  3 1 0:6 / /tmpfoo rw - tmpfs tmpfs rw\n";
        assert_eq!(noexec_mount_of(mi, "/tmp/x.sh"), Some("/tmp".into()));
        assert_eq!(noexec_mount_of(mi, "/tmpfoo/x.sh"), None);
        assert_eq!(noexec_mount_of(mi, "/usr/bin/x"), None);
    }
}
