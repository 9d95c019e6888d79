//! Whether a user may execute a file: the kernel's rules (mode bits by owner, group and
//! others; a POSIX ACL's named entries and mask; search permission on every directory of
//! the path), applied to a look at the file and its directories, for a uid the kernel
//! recorded. The process's groups are not recorded with a failed exec, so a bit only a
//! group has is "denied unless a member": the kernel's EACCES then says it was not one.

use super::facts::{Acl, DirInfo, FileInfo};

/// What the rules give one user for one file or directory and one bit (execute/search).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// Denied whatever the user's groups.
    Denied(Class),
    /// Allowed only to members of these groups (None: the file's own group).
    OnlyGroups(Vec<Option<u32>>),
}

/// Which entry decided a denial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// The owner's bits (the user owns it).
    Owner,
    /// A named user entry of its ACL (`user:UID:perm`, after the mask).
    AclUser,
    /// The others' bits (or the ACL's other entry).
    Other,
}

const X: u8 = 1;

/// What `uid` gets for the execute/search bit of an inode of `mode`, owned by
/// `owner`:`group`, with `acl`. Root may search any directory and execute a file with
/// any execute bit (CAP_DAC_OVERRIDE, which systemd's children have until they drop to
/// User=).
pub fn execute_access(
    uid: u32,
    (mode, owner, is_dir): (u32, u32, bool),
    acl: Option<&Acl>,
) -> Access {
    let bits = |shift: u32| ((mode >> shift) & 7) as u8;
    if uid == 0 {
        let any = acl.map_or(mode & 0o111 != 0, |a| {
            mode & 0o111 != 0 || a.entries.iter().any(|e| e.perm & X != 0)
        });
        return if is_dir || any {
            Access::Allowed
        } else {
            Access::Denied(Class::Other)
        };
    }
    if uid == owner {
        return if bits(6) & X != 0 {
            Access::Allowed
        } else {
            Access::Denied(Class::Owner)
        };
    }
    let acl = acl.filter(|a| a.extended());
    // With an ACL, the mode's group bits are its mask.
    let mask = acl.and_then(Acl::mask).unwrap_or(7);
    if let Some(perm) = acl.and_then(|a| a.user(uid)) {
        return if perm & mask & X != 0 {
            Access::Allowed
        } else {
            Access::Denied(Class::AclUser)
        };
    }
    let groups: Vec<(Option<u32>, u8)> = match acl {
        Some(a) => a.groups().map(|(g, p)| (g, p & mask)).collect(),
        None => vec![(None, bits(3))],
    };
    let other = acl
        .and_then(|a| {
            a.entries
                .iter()
                .find(|e| e.tag == super::facts::AclTag::Other)
        })
        .map_or(bits(0), |e| e.perm);
    let granting: Vec<Option<u32>> = groups
        .iter()
        .filter(|(_, p)| p & X != 0)
        .map(|(g, _)| *g)
        .collect();
    if other & X != 0 {
        // (A member of a group whose entry lacks the bit is denied: rare, not told.)
        Access::Allowed
    } else if granting.is_empty() {
        Access::Denied(Class::Other)
    } else {
        Access::OnlyGroups(granting)
    }
}

/// Why a user may not execute a file, found in a look at it and its directories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal<'a> {
    /// A directory of the path it may not search.
    Directory(&'a DirInfo, Access),
    /// The file itself.
    File(Access),
}

/// The first reason `uid` may not execute `file` (its directories first, as the kernel
/// walks the path): a certain denial before one that depends on groups. None: the rules
/// let it (something the look cannot see refused it).
pub fn refusal(uid: u32, file: &FileInfo) -> Option<Refusal<'_>> {
    let mut maybe = None;
    for d in &file.dirs {
        match execute_access(uid, (d.mode, d.uid, true), d.acl.as_ref()) {
            Access::Allowed => {}
            a @ Access::Denied(_) => return Some(Refusal::Directory(d, a)),
            a @ Access::OnlyGroups(_) => {
                maybe.get_or_insert(Refusal::Directory(d, a));
            }
        }
    }
    match execute_access(uid, (file.mode, file.uid, file.is_dir), file.acl.as_ref()) {
        Access::Allowed => maybe,
        a @ Access::Denied(_) => Some(Refusal::File(a)),
        a @ Access::OnlyGroups(_) => Some(maybe.unwrap_or(Refusal::File(a))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::facts::{AclEntry, AclTag};

    fn acl(entries: &[(AclTag, u8)]) -> Acl {
        Acl {
            entries: entries
                .iter()
                .map(|&(tag, perm)| AclEntry { tag, perm })
                .collect(),
        }
    }

    #[test]
    fn mode_bits_by_class() {
        let nobody = 65534;
        let file = |mode| (mode, 0, false);
        assert_eq!(execute_access(0, file(0o700), None), Access::Allowed);
        assert_eq!(
            execute_access(0, file(0o644), None),
            Access::Denied(Class::Other)
        );
        assert_eq!(
            execute_access(nobody, file(0o700), None),
            Access::Denied(Class::Other)
        );
        assert_eq!(
            execute_access(nobody, file(0o750), None),
            Access::OnlyGroups(vec![None])
        );
        assert_eq!(execute_access(nobody, file(0o755), None), Access::Allowed);
        assert_eq!(
            execute_access(nobody, (0o077, nobody, false), None),
            Access::Denied(Class::Owner),
            "the owner gets the owner's bits, not the others'"
        );
        assert_eq!(execute_access(0, (0o700, 0, true), None), Access::Allowed);
    }

    #[test]
    fn acl_entries_and_mask() {
        let nobody = 65534;
        // 0755 with user:nobody:--- : the mode says others may, the ACL says no.
        let deny = acl(&[
            (AclTag::UserObj, 7),
            (AclTag::User(nobody), 0),
            (AclTag::GroupObj, 5),
            (AclTag::Mask, 5),
            (AclTag::Other, 5),
        ]);
        assert_eq!(
            execute_access(nobody, (0o755, 0, false), Some(&deny)),
            Access::Denied(Class::AclUser)
        );
        assert_eq!(
            execute_access(1000, (0o755, 0, false), Some(&deny)),
            Access::Allowed
        );
        // 0750 (the mask) with user:nobody:r-x: allowed; masked to r--: not.
        let grant = acl(&[
            (AclTag::UserObj, 7),
            (AclTag::User(nobody), 5),
            (AclTag::GroupObj, 0),
            (AclTag::Mask, 5),
            (AclTag::Other, 0),
        ]);
        assert_eq!(
            execute_access(nobody, (0o750, 0, false), Some(&grant)),
            Access::Allowed
        );
        let masked = acl(&[
            (AclTag::UserObj, 7),
            (AclTag::User(nobody), 5),
            (AclTag::GroupObj, 0),
            (AclTag::Group(50), 7),
            (AclTag::Mask, 4),
            (AclTag::Other, 0),
        ]);
        assert_eq!(
            execute_access(nobody, (0o740, 0, false), Some(&masked)),
            Access::Denied(Class::AclUser)
        );
        assert_eq!(
            execute_access(1000, (0o740, 0, false), Some(&masked)),
            Access::Denied(Class::Other),
            "group 50's x is masked"
        );
    }

    #[test]
    fn acl_xattr_format() {
        let mut v = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [(1u16, 7u16, u32::MAX), (2, 0, 65534), (4, 5, u32::MAX)] {
            v.extend(tag.to_le_bytes());
            v.extend(perm.to_le_bytes());
            v.extend(id.to_le_bytes());
        }
        let a = Acl::from_xattr(&v).expect("parsed");
        assert_eq!(a.user(65534), Some(0));
        assert!(a.extended());
        assert_eq!(Acl::from_xattr(&v[..v.len() - 1]), None, "torn");
        assert_eq!(Acl::from_xattr(&[1, 0, 0, 0]), None, "another version");
    }

    #[test]
    fn directories_come_first() {
        let dir = |path: &str, mode| DirInfo {
            path: path.into(),
            mode,
            ..DirInfo::default()
        };
        let mut f = FileInfo {
            mode: 0o755,
            dirs: vec![
                dir("/", 0o755),
                dir("/opt", 0o755),
                dir("/opt/private", 0o700),
            ],
            ..FileInfo::default()
        };
        match refusal(65534, &f) {
            Some(Refusal::Directory(d, Access::Denied(Class::Other))) => {
                assert_eq!(d.path, "/opt/private")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(refusal(0, &f), None, "root searches anything");
        // A directory only a group may search, and a file nobody may execute: the sure
        // refusal is the file's.
        f.dirs[2].mode = 0o750;
        f.mode = 0o700;
        assert_eq!(
            refusal(65534, &f),
            Some(Refusal::File(Access::Denied(Class::Other)))
        );
        f.mode = 0o755;
        assert!(matches!(
            refusal(65534, &f),
            Some(Refusal::Directory(_, Access::OnlyGroups(_)))
        ));
        f.dirs[2].mode = 0o755;
        assert_eq!(refusal(65534, &f), None);
    }
}
