//! The cgroup2 filesystem: where it is mounted, and its tree by id. cgroup2 ids are the
//! inode numbers of the cgroup directories, so a walk of the mount gives id → path (the
//! resolver, [`crate::enrich`], keeps it current from the kernel's events). The mount is
//! found in /proc/self/mountinfo: /sys/fs/cgroup on a unified systemd host,
//! /sys/fs/cgroup/unified on a hybrid one.

use std::{
    io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// Why the cgroup2 hierarchy could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("reading /proc/self/mountinfo: {0}")]
    MountInfo(io::Error),
    #[error(
        "no cgroup2 filesystem is mounted (see /proc/self/mountinfo); mount one or boot with systemd"
    )]
    NoCgroup2,
    #[error("walking {path}: {source}")]
    Walk { path: PathBuf, source: io::Error },
}

/// The mount point of the cgroup2 filesystem in a mountinfo text.
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // id parent major:minor root mount-point options [optional...] - fstype source super
        let (pre, post) = line.split_once(" - ")?;
        if post.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mount = pre.split_whitespace().nth(4)?;
        Some(PathBuf::from(unescape_mountinfo(mount)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Finds the cgroup2 mount of this system.
pub fn find_cgroup2_mount() -> Result<PathBuf, CgroupError> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(CgroupError::MountInfo)?;
    cgroup2_mount(&text).ok_or(CgroupError::NoCgroup2)
}

/// Walks a cgroup2 mount: `found(id, path)` for the root (`/`) and every cgroup below it
/// (paths below the mount, starting with `/`). Directories that vanish meanwhile are
/// skipped.
pub fn walk(mount: &Path, mut found: impl FnMut(u64, &str)) -> Result<(), CgroupError> {
    let meta = std::fs::metadata(mount).map_err(|source| CgroupError::Walk {
        path: mount.to_owned(),
        source,
    })?;
    found(meta.ino(), "/");
    let mut stack = vec![(mount.to_owned(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(ft) = entry.file_type() else { continue };
            if !ft.is_dir() {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            let name = entry.file_name();
            let path = format!("{rel}/{}", name.to_string_lossy());
            found(meta.ino(), &path);
            stack.push((entry.path(), path));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
33 25 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
34 33 0:29 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
35 33 0:30 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
";
    const UNIFIED: &str = "\
30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn finds_cgroup2_on_hybrid_and_unified_hosts() {
        assert_eq!(
            cgroup2_mount(HYBRID),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            cgroup2_mount(UNIFIED),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(
            cgroup2_mount("35 33 0:30 / /x rw - cgroup cgroup rw\n"),
            None
        );
        assert_eq!(
            cgroup2_mount("1 2 0:1 / /a\\040b rw - cgroup2 cgroup2 rw\n"),
            Some(PathBuf::from("/a b"))
        );
    }

    #[test]
    fn scans_a_directory_tree_by_inode() {
        let dir = std::env::temp_dir().join(format!("tracer-cg-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a.slice/b.service")).unwrap();
        let mut paths = std::collections::HashMap::new();
        walk(&dir, |id, path| {
            paths.insert(id, path.to_owned());
        })
        .unwrap();
        let ino = std::fs::metadata(dir.join("a.slice/b.service"))
            .unwrap()
            .ino();
        assert_eq!(paths[&ino], "/a.slice/b.service");
        let root = std::fs::metadata(&dir).unwrap().ino();
        assert_eq!(paths[&root], "/");
        assert_eq!(paths.len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
