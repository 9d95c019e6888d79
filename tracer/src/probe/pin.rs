//! The programs' objects pinned in bpffs, so that they outlive the daemon: its links (which
//! keep the programs attached), its programs, and its maps (the ring buffer above all).
//! A daemon that finds them resumes them (the records written meanwhile wait in the ring);
//! one whose programs or settings differ replaces them and says how long it was blind.
//!
//! Layout of the pin directory: `map_NAME`, `prog_NAME`, `link_NAME` (one per attached
//! program). bpffs holds BPF objects only, so the version stamp is a slot of the `DAEMON`
//! map (see `tracer_common::DAEMON_*`).

use std::{
    ffi::CString,
    fs::File,
    io,
    os::{fd::AsRawFd as _, unix::ffi::OsStrExt as _},
    path::{Path, PathBuf},
};

use super::ProbeError;

/// Where bpffs is mounted on a systemd host (systemd mounts it early in boot).
pub const BPFFS: &str = "/sys/fs/bpf";

/// `BPF_FS_MAGIC` (include/uapi/linux/magic.h).
const BPF_FS_MAGIC: libc::__fsword_t = 0xcafe_4a11;

/// Which of the pinned objects are links (the others are programs and maps).
pub const LINK: &str = "link_";
pub const PROG: &str = "prog_";
pub const MAP: &str = "map_";

/// How the running programs came to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pinned {
    /// Not pinned (pinning is off): they detach with this process.
    Off,
    /// None were pinned: loaded and pinned now.
    New,
    /// Pinned ones of this version were found and resumed.
    Resumed,
    /// Pinned ones of another version (or loaded with other settings) were removed and
    /// these loaded instead; the records written since the last daemon read the old ring
    /// are lost: `blind_ms` (None: unknown).
    Replaced {
        why: &'static str,
        blind_ms: Option<u64>,
    },
}

impl Pinned {
    /// The ready line's word for it.
    pub fn word(&self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::New => "new",
            Self::Resumed => "resumed",
            Self::Replaced { .. } => "replaced",
        }
    }
}

/// The pin directory, locked for this process alone while it lasts.
pub struct PinDir {
    pub dir: PathBuf,
    // The flock on the directory: two daemons on one set of pins would share a ring.
    _lock: File,
}

impl PinDir {
    /// Makes sure bpffs is mounted (mounting it at [`BPFFS`] when the directory is below it
    /// and nothing is), creates the directory (0700) and locks it.
    pub fn open(dir: &Path) -> Result<Self, ProbeError> {
        ensure_bpffs(dir)?;
        match std::fs::create_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(pin_error(dir, "creating the pin directory", e)),
        }
        if !is_bpffs(dir) {
            return Err(ProbeError::Pin(format!(
                "{} is not on a bpf file system: set pin_dir to a directory below {BPFFS}, or \"\" to pin nothing",
                dir.display()
            )));
        }
        let lock = File::open(dir).map_err(|e| pin_error(dir, "opening", e))?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(ProbeError::Pin(format!(
                    "another tracer daemon uses the pinned programs in {}: stop it, or give this one its own pin_dir",
                    dir.display()
                )));
            }
            return Err(pin_error(dir, "locking", e));
        }
        Ok(Self {
            dir: dir.to_owned(),
            _lock: lock,
        })
    }

    pub fn path(&self, kind: &str, name: &str) -> PathBuf {
        self.dir.join(format!("{kind}{name}"))
    }

    /// Whether anything is pinned here.
    pub fn has(&self, kind: &str, name: &str) -> bool {
        self.path(kind, name).exists()
    }

    /// Removes every pinned object (the links detach as their last reference goes);
    /// returns how many there were. The directory stays (it is locked).
    pub fn clear(&self) -> Result<usize, ProbeError> {
        let mut n = 0;
        let entries =
            std::fs::read_dir(&self.dir).map_err(|e| pin_error(&self.dir, "reading", e))?;
        // Links first: the programs stop running before their maps go.
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        paths.sort_by_key(|p| {
            !p.file_name()
                .is_some_and(|n| n.as_bytes().starts_with(b"link_"))
        });
        for p in paths {
            std::fs::remove_file(&p).map_err(|e| pin_error(&p, "removing", e))?;
            n += 1;
        }
        Ok(n)
    }

    /// Removes the pinned objects and the directory itself.
    pub fn remove(self) -> Result<usize, ProbeError> {
        let n = self.clear()?;
        let _ = std::fs::remove_dir(&self.dir);
        Ok(n)
    }
}

fn pin_error(path: &Path, what: &str, e: io::Error) -> ProbeError {
    ProbeError::Pin(format!("{what} {}: {e}", path.display()))
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a NUL-terminated path and a statfs the call fills in.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type == BPF_FS_MAGIC
    }
}

/// bpffs at `dir`'s parent, mounted at [`BPFFS`] when that is where it should be and
/// nothing is there yet.
fn ensure_bpffs(dir: &Path) -> Result<(), ProbeError> {
    let parent = dir.parent().unwrap_or(Path::new("/"));
    if is_bpffs(parent) {
        return Ok(());
    }
    let root = Path::new(BPFFS);
    if !dir.starts_with(root) || !root.is_dir() {
        return Err(ProbeError::Pin(format!(
            "{} is not on a bpf file system: mount one (mount -t bpf bpf {BPFFS}), or set pin_dir = \"\" to pin nothing",
            parent.display()
        )));
    }
    let fstype = CString::new("bpf").expect("no NUL");
    let target = CString::new(BPFFS).expect("no NUL");
    let data = CString::new("mode=0700").expect("no NUL");
    // SAFETY: valid NUL-terminated strings.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(ProbeError::Pin(format!(
            "bpffs is not mounted at {BPFFS} and mounting it failed: {} (mount it, or set pin_dir = \"\" to pin nothing)",
            io::Error::last_os_error()
        )));
    }
    tracing::info!("mounted bpffs at {BPFFS}");
    if is_bpffs(parent) {
        Ok(())
    } else {
        Err(ProbeError::Pin(format!(
            "{} is not on the bpf file system mounted at {BPFFS}",
            parent.display()
        )))
    }
}

/// The version stamp of the embedded programs: FNV-1a over the object's bytes (which hold
/// the programs and, through their sizes and offsets, the record format of
/// tracer-common). Stable across builds of the same object, whatever the compiler.
pub fn stamp(object: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in object {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // 0 is what an unwritten slot holds.
    h.max(1)
}

/// The settings the programs were loaded with, as one word: the ring size, and whether
/// the failed-exec programs were asked for.
pub fn settings(ring_size: u32, failed_execs: bool) -> u64 {
    u64::from(ring_size) | (u64::from(failed_execs) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_tells_objects_apart() {
        assert_eq!(stamp(b"programs"), stamp(b"programs"));
        assert_ne!(stamp(b"programs"), stamp(b"programz"));
        assert_ne!(stamp(b""), 0);
        assert_ne!(settings(4096, true), settings(4096, false));
        assert_ne!(settings(4096, true), settings(8192, true));
    }

    #[test]
    fn only_bpffs_holds_pins() {
        assert!(!is_bpffs(&std::env::temp_dir()));
        assert!(matches!(
            PinDir::open(&std::env::temp_dir().join("tracer-pins")),
            Err(ProbeError::Pin(_))
        ));
    }
}
