//! The event journal: the daemon's flight recorder, one directory per boot (named by the
//! kernel's boot_id) under the state directory, holding numbered append-only segments.
//!
//! A segment starts with a 32-byte header (magic, format version, boot id, creation wall
//! time) followed by frames: `u32 length`, `u32 CRC-32 of the payload`, payload. The
//! payload's first byte says what it is: a kernel record exactly as the ring buffer
//! delivered it (so the journal is the recording format: [`crate::decode::decode`] reads
//! it), a cgroup or a process found at start (so a boot replays on its own). A torn or
//! corrupt frame is reported with its file and offset and skipped; reading resumes at the
//! next frame whose length and checksum hold.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::{decode::decode, event::Event, procfs::ProcInfo};

const MAGIC: &[u8; 8] = b"TRACERJ\0";
/// Format version of segments this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 32;
const FRAME_HEAD: usize = 8;
/// No payload is larger (kernel records are at most a few KiB).
const MAX_PAYLOAD: usize = 1 << 20;

const TYPE_EVENT: u8 = 1;
const TYPE_CGROUP: u8 = 2;
const TYPE_PROCESS: u8 = 3;
/// systemd's account once boot finished (JSON of [`crate::systemd::Snapshot`]).
const TYPE_SYSTEMD: u8 = 4;

/// Why the journal could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal directory {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
    #[error("journal segment {path}: {source}")]
    Segment { path: PathBuf, source: io::Error },
    #[error("{path} is not a tracer journal segment (bad magic)")]
    NotAJournal { path: PathBuf },
    #[error("{path} has journal format {found}; this tracer reads format {FORMAT_VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("no recorded boot {0} (see `tracer journal list`)")]
    NoSuchBoot(String),
}

/// Size limits and flushing.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct JournalLimits {
    /// All boots together stay under this many bytes; the oldest boot goes first.
    pub max_bytes: u64,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    /// Written data reaches the kernel (survives `kill -9`) at least this often.
    pub flush_interval_ms: u64,
}

impl Default for JournalLimits {
    fn default() -> Self {
        Self {
            max_bytes: 256 << 20,
            segment_bytes: 16 << 20,
            flush_interval_ms: 1000,
        }
    }
}

/// One thing read back from a journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Event(Event),
    /// A cgroup that existed when the daemon started.
    Cgroup {
        id: u64,
        path: String,
    },
    /// A process that was running when the daemon started.
    Process(ProcInfo),
    /// What systemd said about the boot and its units when boot finished.
    Systemd(Box<crate::systemd::Snapshot>),
}

/// A process found at start, as stored.
#[derive(Serialize, Deserialize)]
struct StoredProc {
    pid: u32,
    ppid: u32,
    start_ns: u64,
    comm: String,
    exe: Option<String>,
    cmdline: Vec<String>,
    cgroup: Option<String>,
}

/// This boot's id (/proc/sys/kernel/random/boot_id), without dashes.
pub fn current_boot_id() -> io::Result<String> {
    Ok(fs::read_to_string("/proc/sys/kernel/random/boot_id")?
        .trim()
        .replace('-', ""))
}

fn segment_name(n: u64) -> String {
    format!("{n:08}.tjs")
}

fn segments_of(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut segs: Vec<PathBuf> = fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "tjs"))
        .collect();
    segs.sort();
    Ok(segs)
}

fn dir_bytes(dir: &Path) -> u64 {
    segments_of(dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

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
        fs::create_dir_all(&boot_dir).map_err(|source| JournalError::Dir {
            path: boot_dir.clone(),
            source,
        })?;
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

/// A problem found while reading, with where it was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Damage {
    pub segment: PathBuf,
    pub offset: u64,
    pub what: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at offset {}: {}",
            self.segment.display(),
            self.offset,
            self.what
        )
    }
}

/// A frame that parses at `at`: its payload range and total length.
fn frame_at(data: &[u8], at: usize) -> Option<(usize, usize)> {
    let head = data.get(at..at + FRAME_HEAD)?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len == 0 || len > MAX_PAYLOAD {
        return None;
    }
    let payload = data.get(at + FRAME_HEAD..at + FRAME_HEAD + len)?;
    (crc32fast::hash(payload) == crc).then_some((at + FRAME_HEAD, FRAME_HEAD + len))
}

/// Reads one segment's items; damage is reported and skipped.
pub fn read_segment(
    path: &Path,
    mut item: impl FnMut(Item),
    damage: &mut Vec<Damage>,
) -> Result<(), JournalError> {
    let data = fs::read(path).map_err(|source| JournalError::Segment {
        path: path.to_owned(),
        source,
    })?;
    if data.len() < HEADER_LEN || &data[..8] != MAGIC {
        return Err(JournalError::NotAJournal {
            path: path.to_owned(),
        });
    }
    let version = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
    if version != FORMAT_VERSION {
        return Err(JournalError::Version {
            path: path.to_owned(),
            found: version,
        });
    }
    let mut at = HEADER_LEN;
    let mut report = |offset: usize, what: String| {
        tracing::warn!(segment = %path.display(), offset, "journal damage: {what}");
        damage.push(Damage {
            segment: path.to_owned(),
            offset: offset as u64,
            what,
        });
    };
    while at < data.len() {
        match frame_at(&data, at) {
            Some((start, total)) => {
                let payload = &data[start..at + total];
                match parse_payload(payload) {
                    Ok(i) => item(i),
                    Err(what) => report(at, what),
                }
                at += total;
            }
            None => {
                // Find the next frame that holds together.
                let next = (at + 1..data.len()).find(|&o| frame_at(&data, o).is_some());
                let what = match next {
                    Some(n) => format!("{} bytes of corrupt frames skipped", n - at),
                    None if data.len() - at < FRAME_HEAD => "torn frame header at the end".into(),
                    None => format!("torn or corrupt tail of {} bytes", data.len() - at),
                };
                report(at, what);
                match next {
                    Some(n) => at = n,
                    None => break,
                }
            }
        }
    }
    Ok(())
}

fn parse_payload(payload: &[u8]) -> Result<Item, String> {
    let (&kind, body) = payload.split_first().ok_or("empty frame")?;
    match kind {
        TYPE_EVENT => decode(body).map(Item::Event).map_err(|e| e.to_string()),
        TYPE_CGROUP => {
            let id = body
                .get(..8)
                .ok_or("short cgroup frame")?
                .try_into()
                .map(u64::from_le_bytes)
                .map_err(|_| "short cgroup frame")?;
            Ok(Item::Cgroup {
                id,
                path: String::from_utf8_lossy(&body[8..]).into_owned(),
            })
        }
        TYPE_PROCESS => {
            let p: StoredProc = serde_json::from_slice(body).map_err(|e| e.to_string())?;
            Ok(Item::Process(ProcInfo {
                pid: p.pid,
                ppid: p.ppid,
                start_ns: p.start_ns,
                comm: p.comm,
                exe: p.exe,
                cmdline: p.cmdline,
                cgroup: p.cgroup,
            }))
        }
        TYPE_SYSTEMD => serde_json::from_slice(body)
            .map(|s| Item::Systemd(Box::new(s)))
            .map_err(|e| e.to_string()),
        other => Err(format!("unknown frame type {other}")),
    }
}

/// A recorded boot.
#[derive(Clone, Debug, Serialize)]
pub struct BootInfo {
    pub boot_id: String,
    #[serde(skip)]
    pub dir: PathBuf,
    /// Wall time its first segment was created (ns since the epoch).
    pub created_ns: u64,
    pub segments: usize,
    pub bytes: u64,
}

fn segment_created(path: &Path) -> Option<u64> {
    use std::io::Read;
    let mut head = [0u8; HEADER_LEN];
    File::open(path).ok()?.read_exact(&mut head).ok()?;
    (&head[..8] == MAGIC).then(|| u64::from_le_bytes(head[24..32].try_into().unwrap_or([0; 8])))
}

/// The recorded boots, oldest first.
pub fn list_boots(root: &Path) -> Result<Vec<BootInfo>, JournalError> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(JournalError::Dir {
                path: root.to_owned(),
                source,
            });
        }
    };
    let mut boots: Vec<BootInfo> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let dir = e.path();
            let segs = segments_of(&dir).ok()?;
            let first = segs.first()?;
            Some(BootInfo {
                boot_id: e.file_name().to_string_lossy().into_owned(),
                created_ns: segment_created(first).unwrap_or(0),
                segments: segs.len(),
                bytes: dir_bytes(&dir),
                dir,
            })
        })
        .collect();
    boots.sort_by_key(|b| b.created_ns);
    Ok(boots)
}

/// Finds a boot by id (or unique prefix), or by offset from the newest: `0` the newest,
/// `-1` the one before, ...
pub fn find_boot(root: &Path, which: &str) -> Result<BootInfo, JournalError> {
    let boots = list_boots(root)?;
    if let Ok(n) = which.parse::<i64>()
        && n <= 0
    {
        let i = boots.len() as i64 - 1 + n;
        return usize::try_from(i)
            .ok()
            .and_then(|i| boots.get(i).cloned())
            .ok_or_else(|| JournalError::NoSuchBoot(which.to_owned()));
    }
    let which_clean = which.replace('-', "");
    let mut found = boots
        .into_iter()
        .filter(|b| b.boot_id.starts_with(&which_clean));
    match (found.next(), found.next()) {
        (Some(b), None) => Ok(b),
        _ => Err(JournalError::NoSuchBoot(which.to_owned())),
    }
}

/// The timestamp of a boot's first recorded event.
pub fn first_event_ns(boot: &BootInfo) -> Option<u64> {
    let first = segments_of(&boot.dir).ok()?.into_iter().next()?;
    let mut ts = None;
    let mut damage = Vec::new();
    read_segment(
        &first,
        |item| {
            if let (None, Item::Event(ev)) = (ts, item) {
                ts = Some(ev.ts_ns);
            }
        },
        &mut damage,
    )
    .ok()?;
    ts
}

/// Reads a whole boot, segment by segment, in order.
pub fn read_boot(boot: &BootInfo, mut item: impl FnMut(Item)) -> Result<Vec<Damage>, JournalError> {
    let mut damage = Vec::new();
    for seg in segments_of(&boot.dir).map_err(|source| JournalError::Dir {
        path: boot.dir.clone(),
        source,
    })? {
        read_segment(&seg, &mut item, &mut damage)?;
    }
    Ok(damage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode::encode, event::EventKind};

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tracer-journal-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn event(i: u32) -> Event {
        Event {
            ts_ns: u64::from(i) * 1000,
            pid: i,
            tgid: i,
            cgroup_id: 7,
            comm: format!("p{i}"),
            kind: EventKind::Fork { child_pid: i + 1 },
        }
    }

    fn write_boot(root: &Path, boot: &str, n: u32, limits: JournalLimits) {
        let mut w = Writer::open(root, boot, limits).unwrap();
        w.append_cgroup(7, "/system.slice/a.service").unwrap();
        for i in 0..n {
            w.append_record(&encode(&event(i))).unwrap();
        }
        w.sync().unwrap();
    }

    fn events_of(root: &Path, boot: &str) -> (Vec<Event>, Vec<Damage>) {
        let b = find_boot(root, boot).unwrap();
        let mut evs = Vec::new();
        let damage = read_boot(&b, |i| {
            if let Item::Event(e) = i {
                evs.push(e)
            }
        })
        .unwrap();
        (evs, damage)
    }

    #[test]
    fn writes_and_reads_back_a_boot() {
        let root = tmp("roundtrip");
        write_boot(&root, "b1", 100, JournalLimits::default());
        let (evs, damage) = events_of(&root, "b1");
        assert!(damage.is_empty());
        assert_eq!(evs, (0..100).map(event).collect::<Vec<_>>());
        let b = find_boot(&root, "0").unwrap();
        assert_eq!(b.boot_id, "b1");
        assert!(matches!(
            find_boot(&root, "-1"),
            Err(JournalError::NoSuchBoot(_))
        ));
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn flipped_bytes_and_a_torn_tail_lose_only_what_they_hit() {
        let root = tmp("damage");
        write_boot(&root, "b1", 200, JournalLimits::default());
        let seg = segments_of(&root.join("b1")).unwrap().remove(0);
        let mut data = fs::read(&seg).unwrap();
        // Flip bytes in the middle of some record, and cut the last one in half.
        let mid = data.len() / 2;
        data[mid] ^= 0xff;
        data[mid + 1] ^= 0x55;
        data.truncate(data.len() - 20);
        fs::write(&seg, &data).unwrap();
        let (evs, damage) = events_of(&root, "b1");
        assert_eq!(damage.len(), 2, "{damage:?}");
        assert!(damage[0].offset > 0);
        assert!(damage[1].what.contains("tail"), "{}", damage[1]);
        // One or two records lost to the flipped bytes, one to the cut; order is kept.
        assert!((196..=198).contains(&evs.len()), "{}", evs.len());
        assert!(evs.windows(2).all(|w| w[0].pid < w[1].pid));
        assert_eq!(evs[0], event(0));
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_restarted_daemon_continues_the_boot_in_a_new_segment() {
        let root = tmp("continue");
        write_boot(&root, "b1", 10, JournalLimits::default());
        write_boot(&root, "b1", 10, JournalLimits::default());
        let b = find_boot(&root, "b1").unwrap();
        assert_eq!(b.segments, 2);
        assert_eq!(events_of(&root, "b1").0.len(), 20);
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn segments_rotate_and_the_cap_removes_the_oldest_boot_first() {
        let root = tmp("cap");
        let limits = JournalLimits {
            max_bytes: 40_000,
            segment_bytes: 8_000,
            flush_interval_ms: 0,
        };
        // 1000 records of 65 bytes: each boot alone is over the cap.
        write_boot(&root, "old", 1000, limits.clone());
        std::thread::sleep(Duration::from_millis(5));
        write_boot(&root, "new", 1000, limits.clone());
        let boots = list_boots(&root).unwrap();
        let total: u64 = boots.iter().map(|b| b.bytes).sum();
        assert!(total <= limits.max_bytes + limits.segment_bytes, "{total}");
        assert_eq!(boots.last().unwrap().boot_id, "new");
        assert!(
            boots.iter().all(|b| b.boot_id != "old"),
            "the oldest boot went first"
        );
        let (evs, damage) = events_of(&root, "new");
        assert!(damage.is_empty());
        assert!(
            !evs.is_empty() && evs.len() < 1000,
            "oldest segments of the boot dropped: {}",
            evs.len()
        );
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn not_a_journal_is_a_clear_error() {
        let root = tmp("bad");
        fs::create_dir_all(root.join("b1")).unwrap();
        fs::write(
            root.join("b1").join(segment_name(1)),
            b"hello, this is not it at all!!!!!!",
        )
        .unwrap();
        let b = find_boot(&root, "b1").unwrap();
        assert!(matches!(
            read_boot(&b, |_| {}),
            Err(JournalError::NotAJournal { .. })
        ));
        fs::remove_dir_all(root).unwrap();
    }
}

/// Removes recorded boots, oldest first, never the current one: until all together fit
/// in `max_bytes`, and every boot whose journal was last written before `before`.
/// Returns what was removed.
pub fn vacuum(
    root: &Path,
    current: &str,
    max_bytes: Option<u64>,
    before: Option<SystemTime>,
) -> Result<Vec<BootInfo>, JournalError> {
    let boots = list_boots(root)?;
    let mut total: u64 = boots.iter().map(|b| b.bytes).sum();
    let mut removed = Vec::new();
    for b in boots {
        if b.boot_id == current {
            continue;
        }
        let last_write = segments_of(&b.dir)
            .unwrap_or_default()
            .iter()
            .filter_map(|p| fs::metadata(p).ok()?.modified().ok())
            .max();
        let too_big = max_bytes.is_some_and(|m| total > m);
        let too_old = before.is_some_and(|t| last_write.is_some_and(|w| w < t));
        if too_big || too_old {
            fs::remove_dir_all(&b.dir).map_err(|source| JournalError::Dir {
                path: b.dir.clone(),
                source,
            })?;
            total -= b.bytes;
            removed.push(b);
        }
    }
    Ok(removed)
}

/// `512K`, `100M`, `1G`, `1T` or plain bytes (powers of 1024, as journalctl).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 1u64 << 10),
        (i, 'M' | 'm') => (&s[..i], 1 << 20),
        (i, 'G' | 'g') => (&s[..i], 1 << 30),
        (i, 'T' | 't') => (&s[..i], 1 << 40),
        _ => (s, 1),
    };
    let v: f64 = num.trim().parse().ok()?;
    (v >= 0.0).then_some((v * mult as f64) as u64)
}

/// A systemd-style time span: `30s`, `5min`, `12h`, `2d`, `2weeks`, `1month`, `1y`, or
/// several (`1h 30min`).
pub fn parse_span(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = rest[num_end..].trim_start();
        let unit_end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_end] {
            "" | "s" | "sec" | "second" | "seconds" => 1.0,
            "ms" | "msec" => 0.001,
            "us" | "usec" => 0.000_001,
            "m" | "min" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86_400.0,
            "w" | "week" | "weeks" => 604_800.0,
            "M" | "month" | "months" => 2_629_800.0,
            "y" | "year" | "years" => 31_557_600.0,
            _ => return None,
        };
        total += value * secs;
        rest = rest[unit_end..].trim_start();
    }
    Some(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod vacuum_tests {
    use super::*;

    #[test]
    fn sizes_and_spans_read_like_journalctl() {
        assert_eq!(parse_size("100M"), Some(100 << 20));
        assert_eq!(parse_size("1.5G"), Some(3 << 29));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_span("2weeks"), Some(Duration::from_secs(1_209_600)));
        assert_eq!(parse_span("1h 30min"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_span("45"), Some(Duration::from_secs(45)));
        assert_eq!(parse_span("3 fortnights"), None);
    }

    #[test]
    fn vacuum_keeps_the_current_boot_and_removes_the_oldest() {
        let root = std::env::temp_dir().join(format!("tracer-vacuum-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for b in ["a", "b", "c"] {
            let mut w = Writer::open(&root, b, JournalLimits::default()).unwrap();
            w.append_cgroup(1, &"x".repeat(1000)).unwrap();
            w.sync().unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        let one = list_boots(&root).unwrap()[0].bytes;
        let removed = vacuum(&root, "a", Some(2 * one), None).unwrap();
        assert_eq!(
            removed
                .iter()
                .map(|b| b.boot_id.as_str())
                .collect::<Vec<_>>(),
            ["b"]
        );
        let left: Vec<String> = list_boots(&root)
            .unwrap()
            .into_iter()
            .map(|b| b.boot_id)
            .collect();
        assert_eq!(
            left,
            ["a", "c"],
            "the current boot stays even though it is the oldest"
        );
        let removed = vacuum(
            &root,
            "c",
            None,
            Some(SystemTime::now() + Duration::from_secs(1)),
        )
        .unwrap();
        assert_eq!(removed.len(), 1);
        assert_eq!(list_boots(&root).unwrap().len(), 1);
        fs::remove_dir_all(root).unwrap();
    }
}
