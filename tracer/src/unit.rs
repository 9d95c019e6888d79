//! cgroup path → systemd unit. systemd gives every unit that runs processes its own
//! cgroup, named after the unit, below the slices it belongs to:
//! `/system.slice/nginx.service`, `/system.slice/system-getty.slice/getty@tty1.service`,
//! `/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service`,
//! `/user.slice/user-1000.slice/session-3.scope`, `/init.scope`. Anything below a unit's
//! cgroup is a sub-cgroup the unit made itself (delegation: docker.service/..., udevd's
//! workers) and belongs to that unit.

use serde::Serialize;

/// What kind of unit, from its suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitKind {
    Service,
    Scope,
    Slice,
    Socket,
    Mount,
    Swap,
}

impl UnitKind {
    /// The suffix: `service`, `scope`, ...
    pub fn name(self) -> &'static str {
        match self {
            Self::Service => "service",
            Self::Scope => "scope",
            Self::Slice => "slice",
            Self::Socket => "socket",
            Self::Mount => "mount",
            Self::Swap => "swap",
        }
    }

    fn of(name: &str) -> Option<Self> {
        let (_, suffix) = name.rsplit_once('.')?;
        Some(match suffix {
            "service" => Self::Service,
            "scope" => Self::Scope,
            "slice" => Self::Slice,
            "socket" => Self::Socket,
            "mount" => Self::Mount,
            "swap" => Self::Swap,
            _ => return None,
        })
    }
}

/// The unit a cgroup belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnitRef {
    /// The unit's name as systemd spells it (escapes such as `\x2d` kept).
    pub name: String,
    pub kind: UnitKind,
    /// For a unit of a user's service manager: that user's uid (`user@UID.service`).
    pub user: Option<u32>,
    /// For a template instance (`getty@tty1.service`): the instance (`tty1`).
    pub instance: Option<String>,
    /// The unit's own cgroup path (the prefix of the path asked about).
    pub cgroup: String,
}

impl UnitRef {
    fn new(name: &str, user: Option<u32>, cgroup: String) -> Option<Self> {
        let kind = UnitKind::of(name)?;
        let instance = name
            .split_once('@')
            .and_then(|(_, rest)| rest.rsplit_once('.'))
            .map(|(inst, _)| inst.to_owned())
            .filter(|i| !i.is_empty());
        Some(Self {
            name: name.to_owned(),
            kind,
            user,
            instance,
            cgroup,
        })
    }

    /// The unit as its manager knows it, what tells it apart from every other unit:
    /// the name for the system manager's units (`nginx.service`), the manager and the
    /// name for a user's (`user@1000.service/nginx.service`: the two never merge).
    pub fn key(&self) -> std::borrow::Cow<'_, str> {
        match self.user {
            None => std::borrow::Cow::Borrowed(&self.name),
            Some(uid) => std::borrow::Cow::Owned(format!("user@{uid}.service/{}", self.name)),
        }
    }

    /// The name with systemd's `\xNN` escapes undone, for display (a user's unit
    /// with its manager first).
    pub fn display_name(&self) -> String {
        unescape(&self.key())
    }
}

/// A user's unit as `tracer why` names it, `user@1000.service/nginx` → (1000, `nginx`).
pub fn user_unit_of_key(key: &str) -> Option<(u32, &str)> {
    let (manager, name) = key.split_once('/')?;
    let uid = user_manager_uid(manager)?;
    (!name.is_empty() && !name.contains('/')).then_some((uid, name))
}

/// `user@1000.service` → 1000.
fn user_manager_uid(name: &str) -> Option<u32> {
    name.strip_prefix("user@")?
        .strip_suffix(".service")?
        .parse()
        .ok()
}

/// The unit a cgroup path (below the cgroup2 mount, starting with `/`) belongs to; `None`
/// for the root cgroup and paths outside systemd's tree.
pub fn unit_of_cgroup(path: &str) -> Option<UnitRef> {
    let mut user = None;
    let mut prefix = String::new();
    let mut last_slice = None;
    let mut manager: Option<UnitRef> = None;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        prefix.push('/');
        prefix.push_str(part);
        match UnitKind::of(part) {
            Some(UnitKind::Slice) => last_slice = UnitRef::new(part, user, prefix.clone()),
            Some(_) => {
                // A user's service manager: its units are below it, its own processes in
                // its init.scope.
                if let Some(uid) = user_manager_uid(part).filter(|_| user.is_none()) {
                    user = Some(uid);
                    manager = UnitRef::new(part, Some(uid), prefix.clone());
                    continue;
                }
                if part == "init.scope" && manager.is_some() {
                    return manager;
                }
                return UnitRef::new(part, user, prefix);
            }
            None => break, // a sub-cgroup of a slice or manager: not systemd's
        }
    }
    manager.or(last_slice)
}

/// A unit name as systemctl completes it: `mylog` → `mylog.service`; a name with a unit
/// type suffix stays as it is.
pub fn full_unit_name(name: &str) -> String {
    const TYPES: [&str; 11] = [
        "service",
        "socket",
        "target",
        "mount",
        "automount",
        "swap",
        "timer",
        "path",
        "slice",
        "scope",
        "device",
    ];
    match name.rsplit_once('.') {
        Some((_, suffix)) if TYPES.contains(&suffix) => name.to_owned(),
        _ => format!("{name}.service"),
    }
}

/// Longest name a nearest one is looked for (people type short names; a client's long
/// one would cost the daemon its length squared for each unit).
const SUGGEST_MAX: usize = 64;

/// The name among `names` nearest to `name`, when one is near enough to be what was
/// meant (a typo: at most 2 edits, or one in six characters for longer names) and of the
/// same type (`.service`). Only names of up to [`SUGGEST_MAX`] characters get one, so
/// what a client's argument costs is bounded: at most 64 × 74 steps for each unit.
pub fn closest<'a>(name: &str, names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let suffix = |n: &str| n.rsplit_once('.').map(|(_, t)| t.to_owned());
    let want: Vec<char> = name.chars().collect();
    if want.len() > SUGGEST_MAX {
        return None;
    }
    let most = 2.max(want.len() / 6);
    let mut best: Option<(usize, &str)> = None;
    for n in names {
        if n == name || suffix(n) != suffix(name) || n.len() > 4 * (SUGGEST_MAX + most) {
            continue;
        }
        let have: Vec<char> = n.chars().collect();
        if have.len().abs_diff(want.len()) > most {
            continue;
        }
        let d = edit_distance(&want, &have);
        if d <= most && best.is_none_or(|(b, _)| d < b) {
            best = Some((d, n));
        }
    }
    best.map(|(_, n)| n)
}

/// Levenshtein distance (insertions, deletions, substitutions), in two rows.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut row = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let swap = prev[j] + usize::from(ca != cb);
            row[j + 1] = swap.min(prev[j + 1] + 1).min(row[j] + 1);
        }
        std::mem::swap(&mut prev, &mut row);
    }
    prev[b.len()]
}

/// Undoes systemd's `\xNN` escapes (`system-systemd\x2dfsck.slice` → `system-systemd-fsck.slice`).
pub fn unescape(name: &str) -> String {
    let b = name.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && b.get(i + 1) == Some(&b'x')
            && let Some(hex) = name.get(i + 2..i + 4)
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn closest_names_a_typo_of_the_same_type() {
        use super::closest;
        let names = [
            "healthy.service",
            "healthy.socket",
            "nginx.service",
            "systemd-journald.service",
        ];
        assert_eq!(
            closest("healty.service", names),
            Some("healthy.service"),
            "one letter left out"
        );
        assert_eq!(closest("ngnix.service", names), Some("nginx.service"));
        assert_eq!(
            closest("systemd-jounrald.service", names),
            Some("systemd-journald.service")
        );
        assert_eq!(
            closest("healty.timer", names),
            None,
            "no timer of that name"
        );
        assert_eq!(closest("postgres.service", names), None, "nothing near");
        assert_eq!(
            closest("healthy.service", names),
            None,
            "itself is no suggestion"
        );
        let long = "x".repeat(10_000) + ".service";
        assert_eq!(closest(&long, names), None);
    }

    use super::*;

    #[test]
    fn a_user_s_unit_is_named_with_its_manager() {
        assert_eq!(
            user_unit_of_key("user@1000.service/nginx"),
            Some((1000, "nginx"))
        );
        assert_eq!(
            user_unit_of_key("user@0.service/a.timer"),
            Some((0, "a.timer"))
        );
        for not in [
            "nginx",
            "user@x.service/nginx",
            "user@1000.service/",
            "user@1000.service/a/b",
            "user@99999999999.service/a",
            "foo@1000.service/a",
        ] {
            assert_eq!(user_unit_of_key(not), None, "{not}");
        }
    }

    /// (unit, kind, user, instance, unit cgroup)
    type Want = (
        &'static str,
        UnitKind,
        Option<u32>,
        Option<&'static str>,
        &'static str,
    );

    /// (path, unit, kind, user, instance, unit cgroup)
    const CASES: &[(&str, Option<Want>)] = &[
        ("/", None),
        ("", None),
        (
            "/system.slice/nginx.service",
            Some((
                "nginx.service",
                UnitKind::Service,
                None,
                None,
                "/system.slice/nginx.service",
            )),
        ),
        (
            "/system.slice/system-getty.slice/getty@tty1.service",
            Some((
                "getty@tty1.service",
                UnitKind::Service,
                None,
                Some("tty1"),
                "/system.slice/system-getty.slice/getty@tty1.service",
            )),
        ),
        (
            "/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service",
            Some((
                "foo.service",
                UnitKind::Service,
                Some(1000),
                None,
                "/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service",
            )),
        ),
        (
            "/user.slice/user-1000.slice/user@1000.service/init.scope",
            Some((
                "user@1000.service",
                UnitKind::Service,
                Some(1000),
                Some("1000"),
                "/user.slice/user-1000.slice/user@1000.service",
            )),
        ),
        (
            "/user.slice/user-1000.slice/session-3.scope",
            Some((
                "session-3.scope",
                UnitKind::Scope,
                None,
                None,
                "/user.slice/user-1000.slice/session-3.scope",
            )),
        ),
        (
            "/init.scope",
            Some(("init.scope", UnitKind::Scope, None, None, "/init.scope")),
        ),
        (
            "/system.slice/docker.service/docker/0123abcd",
            Some((
                "docker.service",
                UnitKind::Service,
                None,
                None,
                "/system.slice/docker.service",
            )),
        ),
        (
            "/system.slice/systemd-udevd.service/udev",
            Some((
                "systemd-udevd.service",
                UnitKind::Service,
                None,
                None,
                "/system.slice/systemd-udevd.service",
            )),
        ),
        (
            "/system.slice/dbus.socket",
            Some((
                "dbus.socket",
                UnitKind::Socket,
                None,
                None,
                "/system.slice/dbus.socket",
            )),
        ),
        (
            "/system.slice/mnt-data.mount",
            Some((
                "mnt-data.mount",
                UnitKind::Mount,
                None,
                None,
                "/system.slice/mnt-data.mount",
            )),
        ),
        (
            "/system.slice/dev-zram0.swap",
            Some((
                "dev-zram0.swap",
                UnitKind::Swap,
                None,
                None,
                "/system.slice/dev-zram0.swap",
            )),
        ),
        (
            r"/system.slice/system-systemd\x2dfsck.slice/systemd-fsck@dev-disk-by\x2duuid-ab12.service",
            Some((
                r"systemd-fsck@dev-disk-by\x2duuid-ab12.service",
                UnitKind::Service,
                None,
                Some(r"dev-disk-by\x2duuid-ab12"),
                r"/system.slice/system-systemd\x2dfsck.slice/systemd-fsck@dev-disk-by\x2duuid-ab12.service",
            )),
        ),
        (
            "/system.slice",
            Some(("system.slice", UnitKind::Slice, None, None, "/system.slice")),
        ),
        ("/tracer-kernel-test-123", None),
    ];

    #[test]
    fn cgroup_paths_map_to_units() {
        let table = CASES;
        for (path, want) in table {
            let got = unit_of_cgroup(path);
            let want = want.map(|(name, kind, user, instance, cgroup)| UnitRef {
                name: name.into(),
                kind,
                user,
                instance: instance.map(Into::into),
                cgroup: cgroup.into(),
            });
            assert_eq!(got, want, "{path}");
        }
    }

    #[test]
    fn escapes_are_undone_for_display() {
        assert_eq!(
            unescape(r"system-systemd\x2dfsck.slice"),
            "system-systemd-fsck.slice"
        );
        assert_eq!(unescape(r"a\x2fb\x"), "a/b\\x");
        assert_eq!(unescape("plain.service"), "plain.service");
        let u = unit_of_cgroup(r"/system.slice/dev-disk-by\x2duuid.swap").unwrap();
        assert_eq!(u.display_name(), "dev-disk-by-uuid.swap");
    }
}
