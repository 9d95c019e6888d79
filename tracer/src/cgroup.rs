//! cgroup2 id → path. cgroup2 ids are the inode numbers of the cgroup directories, so the
//! table is seeded by walking the cgroup2 mount and then kept current by the kernel's
//! mkdir/rmdir/attach events. The mount is found in /proc/self/mountinfo: /sys/fs/cgroup
//! on a unified systemd host, /sys/fs/cgroup/unified on a hybrid one.

use std::{
    io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::{
    event::{Event, EventKind},
    idhash::IdMap,
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

/// The cgroup2 tree by id. Paths are shared, so an event can carry its task's cgroup path
/// without copying it.
#[derive(Debug, Default)]
pub struct CgroupPaths {
    mount: PathBuf,
    by_id: IdMap<u64, Arc<str>>,
}

impl CgroupPaths {
    /// Walks the cgroup2 mount found in /proc/self/mountinfo.
    pub fn scan_system() -> Result<Self, CgroupError> {
        Self::scan(&find_cgroup2_mount()?)
    }

    /// Walks a cgroup2 mount.
    pub fn scan(mount: &Path) -> Result<Self, CgroupError> {
        let mut paths = Self {
            mount: mount.to_owned(),
            by_id: IdMap::default(),
        };
        paths.rescan()?;
        Ok(paths)
    }

    /// Walks the mount again, adding what is new (e.g. created between the first walk and
    /// the programs being attached). Directories that vanish meanwhile are skipped.
    pub fn rescan(&mut self) -> Result<(), CgroupError> {
        let root = self.mount.clone();
        let meta = std::fs::metadata(&root).map_err(|source| CgroupError::Walk {
            path: root.clone(),
            source,
        })?;
        self.by_id.insert(meta.ino(), Arc::from("/"));
        let mut stack = vec![(root, String::new())];
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
                self.by_id.insert(meta.ino(), Arc::from(path.as_str()));
                stack.push((entry.path(), path));
            }
        }
        Ok(())
    }

    /// The cgroup2 mount point.
    pub fn mount(&self) -> &Path {
        &self.mount
    }

    /// The path (below the mount, starting with `/`) of a cgroup id, if known.
    pub fn path(&self, id: u64) -> Option<&str> {
        self.by_id.get(&id).map(|p| &**p)
    }

    /// The same path, shared.
    pub fn shared_path(&self, id: u64) -> Option<Arc<str>> {
        self.by_id.get(&id).cloned()
    }

    /// Learns one cgroup (from a recording).
    pub fn insert(&mut self, id: u64, path: &str) {
        self.by_id.insert(id, Arc::from(path));
    }

    /// Every known cgroup: (id, path).
    pub fn iter(&self) -> impl Iterator<Item = (u64, &str)> {
        self.by_id.iter().map(|(id, p)| (*id, &**p))
    }

    /// Number of cgroups known.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Follows the tree: mkdir and attach add, rmdir removes (ids of removed cgroups are
    /// not kept, so the table is bounded by the live tree).
    pub fn observe(&mut self, ev: &Event) {
        match &ev.kind {
            // (An attach names a cgroup known already: its path is not copied again.)
            EventKind::CgroupMkdir { cgroup } | EventKind::CgroupAttach { cgroup, .. }
                if !cgroup.path_truncated && self.path(cgroup.id) != Some(&cgroup.path) =>
            {
                self.by_id
                    .insert(cgroup.id, Arc::from(cgroup.path.as_str()));
            }
            EventKind::CgroupRmdir { cgroup } => {
                self.by_id.remove(&cgroup.id);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::CgroupRef;

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
    fn follows_mkdir_and_rmdir() {
        let mut paths = CgroupPaths::default();
        let ev = |kind| Event {
            ts_ns: 0,
            pid: 1,
            tgid: 1,
            cgroup_id: 1,
            comm: "systemd".into(),
            kind,
        };
        let cg = CgroupRef {
            id: 77,
            level: 2,
            path: "/system.slice/a.service".into(),
            path_truncated: false,
        };
        paths.observe(&ev(EventKind::CgroupMkdir { cgroup: cg.clone() }));
        assert_eq!(paths.path(77), Some("/system.slice/a.service"));
        paths.observe(&ev(EventKind::CgroupRmdir { cgroup: cg }));
        assert_eq!(paths.path(77), None);
        assert!(paths.is_empty());
    }

    #[test]
    fn scans_a_directory_tree_by_inode() {
        let dir = std::env::temp_dir().join(format!("tracer-cg-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a.slice/b.service")).unwrap();
        let paths = CgroupPaths::scan(&dir).unwrap();
        let ino = std::fs::metadata(dir.join("a.slice/b.service"))
            .unwrap()
            .ino();
        assert_eq!(paths.path(ino), Some("/a.slice/b.service"));
        let root = std::fs::metadata(&dir).unwrap().ino();
        assert_eq!(paths.path(root), Some("/"));
        assert_eq!(paths.len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
