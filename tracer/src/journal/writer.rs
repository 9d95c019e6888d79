//! Appending to the current boot's journal: frames, segment rotation, the size cap.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufWriter, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use super::{
    FORMAT_VERSION, FRAME_HEAD, HEADER_LEN, JournalError, JournalLimits, MAGIC, MAX_PAYLOAD,
    StoredProc, TYPE_CGROUP, TYPE_EVENT, TYPE_PROCESS, TYPE_SYSTEMD, dir_bytes, list_boots,
    segment_name, segments_of,
};
use crate::procfs::ProcInfo;

/// Appends to the current boot's journal.
pub struct Writer {
    root: PathBuf,
    boot_dir: PathBuf,
    boot_id: String,
    limits: JournalLimits,
    segment: u64,
    file: BufWriter<File>,
    segment_len: u64,
    unflushed: usize,
    last_flush: Instant,
    /// Bytes of this boot's journal, including what is still buffered.
    bytes: u64,
    /// Older boots' bytes, as of the last cap check.
    older_bytes: u64,
}

impl Writer {
    /// Opens (or continues, after a daemon restart) the journal of `boot_id` under `root`.
    pub fn open(root: &Path, boot_id: &str, limits: JournalLimits) -> Result<Self, JournalError> {
        let boot_dir = root.join(boot_id);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&boot_dir)
            .map_err(|source| JournalError::Dir {
                path: boot_dir.clone(),
                source,
            })?;
        restrict(root)?;
        let last = segments_of(&boot_dir)
            .map_err(|source| JournalError::Dir {
                path: boot_dir.clone(),
                source,
            })?
            .last()
            .and_then(|p| p.file_stem()?.to_str()?.parse::<u64>().ok())
            .unwrap_or(0);
        let bytes = dir_bytes(&boot_dir);
        let (file, path) = new_segment(&boot_dir, boot_id, last + 1)?;
        tracing::info!(segment = %path.display(), "journal opened");
        let mut w = Self {
            root: root.to_owned(),
            boot_dir,
            boot_id: boot_id.to_owned(),
            limits,
            segment: last + 1,
            file,
            segment_len: HEADER_LEN as u64,
            unflushed: 0,
            last_flush: Instant::now(),
            bytes: bytes + HEADER_LEN as u64,
            older_bytes: 0,
        };
        w.enforce_cap();
        Ok(w)
    }

    /// Total bytes of all recorded boots (as of the last cap check) plus this one's.
    pub fn total_bytes(&self) -> u64 {
        self.older_bytes + self.bytes
    }

    fn frame(&mut self, kind: u8, body: &[u8]) -> io::Result<()> {
        let len = body.len() + 1;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&[kind]);
        crc.update(body);
        self.file.write_all(&(len as u32).to_le_bytes())?;
        self.file.write_all(&crc.finalize().to_le_bytes())?;
        self.file.write_all(&[kind])?;
        self.file.write_all(body)?;
        let n = (FRAME_HEAD + len) as u64;
        self.segment_len += n;
        self.bytes += n;
        self.unflushed += FRAME_HEAD + len;
        if self.segment_len >= self.limits.segment_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    /// Appends a kernel record as the ring buffer delivered it.
    pub fn append_record(&mut self, raw: &[u8]) -> io::Result<()> {
        self.frame(TYPE_EVENT, raw)
    }

    /// Appends a cgroup found at start.
    pub fn append_cgroup(&mut self, id: u64, path: &str) -> io::Result<()> {
        let mut body = id.to_le_bytes().to_vec();
        body.extend_from_slice(path.as_bytes());
        self.frame(TYPE_CGROUP, &body)
    }

    /// Appends a process found at start.
    pub fn append_process(&mut self, p: &ProcInfo) -> io::Result<()> {
        let stored = StoredProc {
            pid: p.pid,
            ppid: p.ppid,
            start_ns: p.start_ns,
            comm: p.comm.clone(),
            exe: p.exe.clone(),
            cmdline: p.cmdline.clone(),
            cgroup: p.cgroup.clone(),
        };
        let body = serde_json::to_vec(&stored).map_err(io::Error::other)?;
        self.frame(TYPE_PROCESS, &body)
    }

    /// Appends systemd's account of the boot.
    pub fn append_systemd(&mut self, snapshot: &crate::systemd::Snapshot) -> io::Result<()> {
        let body = serde_json::to_vec(snapshot).map_err(io::Error::other)?;
        if body.len() >= MAX_PAYLOAD {
            return Err(io::Error::other(format!(
                "systemd's account of the boot is {} bytes, more than a journal frame holds ({MAX_PAYLOAD})",
                body.len()
            )));
        }
        self.frame(TYPE_SYSTEMD, &body)
    }

    /// Hands buffered frames to the kernel when the flush interval has passed.
    pub fn maybe_flush(&mut self) -> io::Result<()> {
        if self.unflushed > 0
            && (self.last_flush.elapsed() >= Duration::from_millis(self.limits.flush_interval_ms)
                || self.unflushed >= 256 << 10)
        {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands everything buffered to the kernel (it then survives the process dying).
    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.unflushed = 0;
        self.last_flush = Instant::now();
        Ok(())
    }

    /// Flushes and waits for the data to reach the disk.
    pub fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        self.file.get_ref().sync_data()
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.sync()?;
        let (file, path) = new_segment(&self.boot_dir, &self.boot_id, self.segment + 1)
            .map_err(|e| io::Error::other(e.to_string()))?;
        tracing::info!(segment = %path.display(), "journal segment started");
        self.segment += 1;
        self.file = file;
        self.segment_len = HEADER_LEN as u64;
        self.bytes += HEADER_LEN as u64;
        self.enforce_cap();
        Ok(())
    }

    /// Deletes the oldest boots, then this boot's oldest closed segments, until the
    /// journal fits its cap.
    fn enforce_cap(&mut self) {
        let mut boots = list_boots(&self.root).unwrap_or_default();
        boots.retain(|b| b.boot_id != self.boot_id);
        self.older_bytes = boots.iter().map(|b| b.bytes).sum();
        for b in boots {
            if self.total_bytes() <= self.limits.max_bytes {
                return;
            }
            tracing::info!(boot = %b.boot_id, bytes = b.bytes, "journal over its cap: removing the oldest boot");
            if fs::remove_dir_all(&b.dir).is_ok() {
                self.older_bytes -= b.bytes;
            }
        }
        let current = self.boot_dir.join(segment_name(self.segment));
        for seg in segments_of(&self.boot_dir).unwrap_or_default() {
            if self.total_bytes() <= self.limits.max_bytes || seg == current {
                return;
            }
            let len = fs::metadata(&seg).map(|m| m.len()).unwrap_or(0);
            tracing::info!(segment = %seg.display(), "journal over its cap: removing the oldest segment");
            if fs::remove_file(&seg).is_ok() {
                self.bytes = self.bytes.saturating_sub(len);
            }
        }
    }
}

/// The journal holds every command line of the host: its directories are root's alone
/// (0700), its segments too (0600), whatever the umask.
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// Takes away what group and others may do with the journal's root, its boots'
/// directories and their segments (a journal written before these modes, or a directory
/// made by hand).
fn restrict(root: &Path) -> Result<(), JournalError> {
    let set = |path: &Path, mode: u32| -> Result<(), JournalError> {
        let meta = fs::symlink_metadata(path).map_err(|source| JournalError::Dir {
            path: path.to_owned(),
            source,
        })?;
        // (A symlink is left alone: its target's mode is not the journal's to change.)
        if meta.file_type().is_symlink() || meta.permissions().mode() & 0o077 == 0 {
            return Ok(());
        }
        let mode = meta.permissions().mode() & mode & 0o7777;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|source| {
            JournalError::Dir {
                path: path.to_owned(),
                source,
            }
        })
    };
    set(root, DIR_MODE)?;
    let Ok(boots) = fs::read_dir(root) else {
        return Ok(());
    };
    // (An older boot's that cannot be changed is said and left: this boot is recorded.)
    let warn = |r: Result<(), JournalError>| {
        if let Err(e) = r {
            tracing::warn!("journal: could not make it root's alone: {e}");
        }
    };
    for boot in boots.flatten() {
        let path = boot.path();
        if boot.file_type().is_ok_and(|t| t.is_dir()) {
            warn(set(&path, DIR_MODE));
            for seg in fs::read_dir(&path).into_iter().flatten().flatten() {
                warn(set(&seg.path(), FILE_MODE));
            }
        }
    }
    Ok(())
}

fn new_segment(
    dir: &Path,
    boot_id: &str,
    n: u64,
) -> Result<(BufWriter<File>, PathBuf), JournalError> {
    let path = dir.join(segment_name(n));
    let err = |source| JournalError::Segment {
        path: path.clone(),
        source,
    };
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .mode(FILE_MODE)
        .open(&path)
        .map_err(err)?;
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let id = boot_id.as_bytes();
    let n_id = id.len().min(12);
    header[12..12 + n_id].copy_from_slice(&id[..n_id]);
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    header[24..32].copy_from_slice(&wall.to_le_bytes());
    let mut w = BufWriter::with_capacity(256 << 10, file);
    w.write_all(&header).map_err(err)?;
    w.flush().map_err(err)?;
    Ok((w, path))
}
