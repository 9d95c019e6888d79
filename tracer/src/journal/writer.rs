//! Appending to the current boot's journal: frames, segment rotation, the size cap.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufWriter, Write},
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use super::{
    FORMAT_VERSION, FRAME_HEAD, HEADER_LEN, JournalError, JournalLimits, MAGIC, MAX_PAYLOAD,
    StoredProc, StoredSystemd, TYPE_CGROUP, TYPE_EVENT, TYPE_PROCESS, TYPE_SYSTEMD,
    TYPE_SYSTEMD_CHANGE, dir_bytes, list_boots, segment_name, segments_of,
};
use crate::{
    procfs::ProcInfo,
    systemd::{Snapshot, SystemdUnit},
};

/// The most a frame's body holds (its payload is the type byte and the body).
const MAX_BODY: usize = MAX_PAYLOAD - 1;

/// How often each of the journal's operations failed since the writer opened, for
/// `tracer_journal_errors_total{op}`. An operation that fails over and over (`write`,
/// `flush`, `sync`, `rotate`, `dropped`) is said once when it starts failing and once when
/// it works again, not at every frame; the rare others (`recreate`, `oversized`,
/// `truncated`) each time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalErrors {
    /// Frames that could not be put into the segment's buffer (its earlier part could not
    /// be handed to the kernel).
    pub write: u64,
    /// Handing the buffered frames to the kernel.
    pub flush: u64,
    /// Waiting for the written frames to reach the disk.
    pub sync: u64,
    /// Starting a new segment.
    pub rotate: u64,
    /// Frames not recorded because there was no room for them: the open segment was full
    /// and no new one could be started, or the journal was at its cap and nothing older
    /// could be removed.
    pub dropped: u64,
    /// The open segment found deleted (alone, with its boot's directory or with the whole
    /// journal): what it held is lost, and the journal goes on in a new segment.
    pub recreate: u64,
    /// Frames refused because they were larger than a reader takes (`MAX_PAYLOAD`): none
    /// should be, the long ones are cut or split before.
    pub oversized: u64,
    /// Processes found at start whose command line was cut to fit a frame (they are
    /// recorded, flagged as cut).
    pub truncated: u64,
}

impl JournalErrors {
    /// Every operation's name (the `op` label) and count, always all of them, in one order.
    pub fn by_op(&self) -> [(&'static str, u64); Op::ALL.len()] {
        Op::ALL.map(|op| (op.name(), *self.get(op)))
    }

    fn get(&self, op: Op) -> &u64 {
        match op {
            Op::Write => &self.write,
            Op::Flush => &self.flush,
            Op::Sync => &self.sync,
            Op::Rotate => &self.rotate,
            Op::Dropped => &self.dropped,
            Op::Recreate => &self.recreate,
            Op::Oversized => &self.oversized,
            Op::Truncated => &self.truncated,
        }
    }

    fn get_mut(&mut self, op: Op) -> &mut u64 {
        match op {
            Op::Write => &mut self.write,
            Op::Flush => &mut self.flush,
            Op::Sync => &mut self.sync,
            Op::Rotate => &mut self.rotate,
            Op::Dropped => &mut self.dropped,
            Op::Recreate => &mut self.recreate,
            Op::Oversized => &mut self.oversized,
            Op::Truncated => &mut self.truncated,
        }
    }
}

/// What the writer does that can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Write,
    Flush,
    Sync,
    Rotate,
    Dropped,
    Recreate,
    Oversized,
    Truncated,
}

impl Op {
    const ALL: [Op; 8] = [
        Op::Write,
        Op::Flush,
        Op::Sync,
        Op::Rotate,
        Op::Dropped,
        Op::Recreate,
        Op::Oversized,
        Op::Truncated,
    ];

    fn name(self) -> &'static str {
        match self {
            Op::Write => "write",
            Op::Flush => "flush",
            Op::Sync => "sync",
            Op::Rotate => "rotate",
            Op::Dropped => "dropped",
            Op::Recreate => "recreate",
            Op::Oversized => "oversized",
            Op::Truncated => "truncated",
        }
    }
}

/// The counts, and which operations are failing now (so a burst of failures is said once).
#[derive(Default)]
struct Health {
    errors: JournalErrors,
    /// Per [`Op::ALL`]: failures since the operation last worked.
    failing: [u64; Op::ALL.len()],
}

impl Health {
    fn failed(&mut self, op: Op, error: &dyn std::fmt::Display) {
        *self.errors.get_mut(op) += 1;
        let burst = &mut self.failing[op as usize];
        if *burst == 0 {
            tracing::warn!(
                op = op.name(),
                "journal: {error} (said once until it works again; tracer_journal_errors_total counts each)"
            );
        }
        *burst += 1;
    }

    fn worked(&mut self, op: Op) {
        let burst = std::mem::take(&mut self.failing[op as usize]);
        if burst > 0 {
            tracing::info!(
                op = op.name(),
                failures = burst,
                "journal: {} works again",
                op.name()
            );
        }
    }

    /// Counts one of what happens once at a time (not a burst of one operation failing).
    fn happened(&mut self, op: Op) {
        *self.errors.get_mut(op) += 1;
    }

    /// `result`, counted under `op`.
    fn count<T>(&mut self, op: Op, result: Result<T, JournalError>) -> Result<T, JournalError> {
        match &result {
            Ok(_) => self.worked(op),
            Err(e) => self.failed(op, e),
        }
        result
    }
}

/// Appends to the current boot's journal.
///
/// The limits hold whatever fails: no segment passes `segment_bytes` (but for a lone frame
/// larger than that, which gets a segment of its own), and all boots together never pass
/// `max_bytes`. When a frame does not fit the open segment and no new one can be started
/// (the disk is full, the next names are taken), or the journal is at its cap and
/// nothing older can be removed, the frame is dropped and counted
/// ([`JournalErrors::dropped`]) rather than written: growing the segment instead is
/// exactly what the limits are there to prevent, and on a full disk it would take the
/// last space from every other service of the host. The frames dropped are the newest:
/// what is recorded already stays. A failed rotation is not tried again at every frame
/// but after [`FIRST_RETRY`], then after twice as long each time it fails again, up to
/// [`MAX_RETRY`]: a frame is cheap, a failing `open` and `fsync` at each one would not be.
///
/// Someone may delete the journal while it is written (its segment, the boot's directory,
/// the whole state directory): each flush and rotation looks whether the open segment is
/// still the file at its path (one `stat`, about once a second), and if not makes the
/// directories again (0700) and goes on in a new segment, counting the loss
/// ([`JournalErrors::recreate`]); the frames not yet handed to the kernel go into the new
/// segment.
pub struct Writer {
    root: PathBuf,
    boot_dir: PathBuf,
    boot_id: String,
    limits: JournalLimits,
    segment: u64,
    file: BufWriter<File>,
    /// (device, inode) of the open segment, to tell it is still the file at its path.
    file_id: (u64, u64),
    /// The open segment was found deleted: the next frame or flush starts a new one.
    gone: bool,
    segment_len: u64,
    unflushed: usize,
    last_flush: Instant,
    /// Bytes of this boot's journal, including what is still buffered.
    bytes: u64,
    /// Older boots' bytes, as of the last cap check.
    older_bytes: u64,
    health: Health,
    clock: Clock,
    /// After a rotation or the cap failed: no new try before this.
    retry_at: Option<Instant>,
    /// The wait after the next failure.
    retry_after: Duration,
}

/// The first wait after a failed rotation (or a cap that could not be kept).
pub(super) const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait: a disk freed is noticed within this.
pub(super) const MAX_RETRY: Duration = Duration::from_secs(60);
/// Names a rotation tries, from the next one on, before it fails: one can be taken by a
/// file or directory the journal did not make (a segment copied back, a stray `mkdir`).
pub(super) const NAME_TRIES: u64 = 16;

/// Where the writer's time comes from: the monotonic clock, or a test's.
pub(super) type Clock = Box<dyn Fn() -> Instant + Send>;

impl Writer {
    /// Opens (or continues, after a daemon restart) the journal of `boot_id` under `root`.
    pub fn open(root: &Path, boot_id: &str, limits: JournalLimits) -> Result<Self, JournalError> {
        Self::open_with_clock(root, boot_id, limits, Box::new(Instant::now))
    }

    /// [`Writer::open`] with the time taken from `clock` (a test's, to see the writer wait).
    pub(super) fn open_with_clock(
        root: &Path,
        boot_id: &str,
        limits: JournalLimits,
        clock: Clock,
    ) -> Result<Self, JournalError> {
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
        let Started {
            file,
            segment,
            path,
            id,
        } = start_segment(&boot_dir, boot_id, last + 1)?;
        tracing::info!(segment = %path.display(), "journal opened");
        let mut w = Self {
            root: root.to_owned(),
            boot_dir,
            boot_id: boot_id.to_owned(),
            limits,
            segment,
            file,
            file_id: id,
            gone: false,
            segment_len: HEADER_LEN as u64,
            unflushed: 0,
            last_flush: clock(),
            clock,
            bytes: bytes + HEADER_LEN as u64,
            older_bytes: 0,
            health: Health::default(),
            retry_at: None,
            retry_after: FIRST_RETRY,
        };
        w.enforce_cap(w.segment_room());
        Ok(w)
    }

    /// How often each operation failed since the journal was opened.
    pub fn errors(&self) -> JournalErrors {
        self.health.errors
    }

    /// Total bytes of all recorded boots (as of the last cap check) plus this one's.
    pub fn total_bytes(&self) -> u64 {
        self.older_bytes + self.bytes
    }

    fn segment_path(&self) -> PathBuf {
        self.boot_dir.join(segment_name(self.segment))
    }

    fn write_error(&self, source: io::Error) -> JournalError {
        JournalError::Write {
            path: self.segment_path(),
            source,
        }
    }

    /// The most a segment holds: `segment_bytes`, or the cap if that is smaller.
    fn segment_limit(&self) -> u64 {
        self.limits.segment_bytes.min(self.limits.max_bytes)
    }

    /// What a new segment may grow by: the room a rotation makes under the cap.
    fn segment_room(&self) -> u64 {
        self.segment_limit().saturating_sub(HEADER_LEN as u64)
    }

    fn frame(&mut self, kind: u8, body: &[u8]) -> Result<(), JournalError> {
        if body.len() > MAX_BODY {
            let e = JournalError::TooLarge {
                what: match kind {
                    TYPE_EVENT => "a kernel record",
                    TYPE_CGROUP => "a cgroup found at start",
                    TYPE_PROCESS => "a process found at start",
                    _ => "a part of systemd's account",
                },
                bytes: body.len() + 1,
            };
            self.health.happened(Op::Oversized);
            tracing::warn!(op = Op::Oversized.name(), "journal: {e}");
            return Err(e);
        }
        let len = body.len() + 1;
        let n = (FRAME_HEAD + len) as u64;
        if let Err(e) = self.make_room(n) {
            self.health.failed(Op::Dropped, &e);
            return Err(e);
        }
        self.health.worked(Op::Dropped);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&[kind]);
        crc.update(body);
        let mut head = [0u8; FRAME_HEAD + 1];
        head[..4].copy_from_slice(&(len as u32).to_le_bytes());
        head[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
        head[8] = kind;
        let written = self
            .file
            .write_all(&head)
            .and_then(|()| self.file.write_all(body))
            .map_err(|e| self.write_error(e));
        self.health.count(Op::Write, written)?;
        self.segment_len += n;
        self.bytes += n;
        self.unflushed += FRAME_HEAD + len;
        Ok(())
    }

    /// Makes room for a frame of `n` bytes: in the open segment, else in a new one, and
    /// under the cap. See [`Writer`] for what happens when there is none.
    fn make_room(&mut self, n: u64) -> Result<(), JournalError> {
        let fits_segment = |w: &Self| {
            !w.gone
                && (w.segment_len == HEADER_LEN as u64 || w.segment_len + n <= w.segment_limit())
        };
        let fits_cap = |w: &Self| w.total_bytes() + n <= w.limits.max_bytes;
        if fits_segment(self) && fits_cap(self) {
            return Ok(());
        }
        let made = self.attempt(|w| {
            (fits_segment(w) || w.rotate().is_ok())
                && (fits_cap(w) || {
                    w.enforce_cap(n);
                    fits_cap(w)
                })
        });
        if made {
            Ok(())
        } else if self.gone {
            Err(JournalError::Deleted {
                path: self.segment_path(),
            })
        } else if !fits_segment(self) {
            Err(JournalError::SegmentFull {
                path: self.segment_path(),
                bytes: self.segment_len,
            })
        } else {
            Err(JournalError::AtCap {
                root: self.root.clone(),
                max_bytes: self.limits.max_bytes,
            })
        }
    }

    /// Runs `f` (a rotation, making room), unless an earlier try failed and its wait is
    /// not over; each failure makes the next wait longer. Whether it ran and worked.
    fn attempt(&mut self, f: impl FnOnce(&mut Self) -> bool) -> bool {
        let now = (self.clock)();
        if self.retry_at.is_some_and(|at| now < at) {
            return false;
        }
        let worked = f(self);
        if worked {
            self.retry_at = None;
            self.retry_after = FIRST_RETRY;
        } else {
            self.retry_at = Some(now + self.retry_after);
            self.retry_after = (self.retry_after * 2).min(MAX_RETRY);
        }
        worked
    }

    /// Appends a kernel record as the ring buffer delivered it.
    pub fn append_record(&mut self, raw: &[u8]) -> Result<(), JournalError> {
        self.frame(TYPE_EVENT, raw)
    }

    /// Appends a cgroup found at start.
    pub fn append_cgroup(&mut self, id: u64, path: &str) -> Result<(), JournalError> {
        let mut body = id.to_le_bytes().to_vec();
        body.extend_from_slice(path.as_bytes());
        self.frame(TYPE_CGROUP, &body)
    }

    /// Appends a process found at start. A command line too long for a frame is cut to
    /// fit (whole arguments first, then the last one on a character) and flagged as cut.
    pub fn append_process(&mut self, p: &ProcInfo) -> Result<(), JournalError> {
        let encode = |stored: &StoredProc| {
            serde_json::to_vec(stored).map_err(|source| JournalError::Encode {
                what: "a process found at start",
                source,
            })
        };
        let mut stored = StoredProc {
            pid: p.pid,
            ppid: p.ppid,
            start_ns: p.start_ns,
            comm: p.comm.clone(),
            exe: p.exe.clone(),
            cmdline: p.cmdline.clone(),
            cgroup: p.cgroup.clone(),
            cmdline_truncated: false,
        };
        let mut body = encode(&stored)?;
        if body.len() > MAX_BODY {
            let whole = body.len();
            stored.cmdline = Vec::new();
            stored.cmdline_truncated = true;
            let room = MAX_BODY.saturating_sub(encode(&stored)?.len());
            stored.cmdline = cut_to_fit(&p.cmdline, room);
            body = encode(&stored)?;
            self.health.happened(Op::Truncated);
            tracing::info!(
                op = Op::Truncated.name(),
                pid = p.pid,
                "journal: the command line of process {} found at start is cut to fit a frame ({whole} bytes, {} kept)",
                p.pid,
                body.len()
            );
        }
        self.frame(TYPE_PROCESS, &body)
    }

    /// Appends systemd's account of the boot: in one frame, or split into parts of a few
    /// units each when it is larger (a host with thousands of units); the reader puts it
    /// back together. (Split rather than dropped: it is what `tracer boot` shows of a past
    /// boot, and the hosts with the largest accounts are those it matters most on.)
    pub fn append_systemd(&mut self, snapshot: &Snapshot) -> Result<(), JournalError> {
        let encode = |stored: &StoredSystemd| {
            serde_json::to_vec(stored).map_err(|source| JournalError::Encode {
                what: "systemd's account of the boot",
                source,
            })
        };
        let mut stored = StoredSystemd {
            snapshot: snapshot.clone(),
            journal_part: None,
        };
        let body = encode(&stored)?;
        if body.len() <= MAX_BODY {
            return self.frame(TYPE_SYSTEMD, &body);
        }
        // Each part: the boot's times and the units that fit beside them.
        stored.snapshot.units = Vec::new();
        stored.journal_part = Some((u32::MAX, u32::MAX));
        let room = MAX_BODY.saturating_sub(encode(&stored)?.len());
        let mut chunks: Vec<&[SystemdUnit]> = Vec::new();
        let (mut start, mut used) = (0, 0usize);
        for (i, unit) in snapshot.units.iter().enumerate() {
            let len = serde_json::to_vec(unit).map_or(usize::MAX, |j| j.len() + 1);
            if i > start && used.saturating_add(len) > room {
                chunks.push(&snapshot.units[start..i]);
                (start, used) = (i, 0);
            }
            used = used.saturating_add(len);
        }
        chunks.push(&snapshot.units[start..]);
        tracing::info!(
            bytes = body.len(),
            parts = chunks.len(),
            "journal: systemd's account is larger than a frame: split"
        );
        let of = chunks.len() as u32;
        let mut first_error = None;
        for (index, units) in chunks.into_iter().enumerate() {
            stored.snapshot.units = units.to_vec();
            stored.journal_part = Some((index as u32, of));
            // (A part that cannot be written is said and counted; the others still are.)
            if let Err(e) = encode(&stored).and_then(|body| self.frame(TYPE_SYSTEMD, &body)) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Appends a change systemd announced.
    pub fn append_systemd_change(
        &mut self,
        change: &crate::systemd::changes::Change,
    ) -> Result<(), JournalError> {
        let body = serde_json::to_vec(change).map_err(|source| JournalError::Encode {
            what: "a change systemd announced",
            source,
        })?;
        self.frame(TYPE_SYSTEMD_CHANGE, &body)
    }

    /// Hands buffered frames to the kernel when the flush interval has passed.
    pub fn maybe_flush(&mut self) -> Result<(), JournalError> {
        if self.unflushed > 0
            && ((self.clock)().saturating_duration_since(self.last_flush)
                >= Duration::from_millis(self.limits.flush_interval_ms)
                || self.unflushed >= 256 << 10)
        {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands everything buffered to the kernel (it then survives the process dying).
    pub fn flush(&mut self) -> Result<(), JournalError> {
        self.notice_deleted();
        if self.gone && !self.attempt(|w| w.rotate().is_ok()) {
            // (Tried again a flush interval later, like a failed flush.)
            self.last_flush = (self.clock)();
            return Err(JournalError::Deleted {
                path: self.segment_path(),
            });
        }
        self.flush_buffer()
    }

    /// Flushes and waits for the data to reach the disk.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.flush()?;
        self.sync_file()
    }

    fn flush_buffer(&mut self) -> Result<(), JournalError> {
        let flushed = self.file.flush().map_err(|e| self.write_error(e));
        // (A failed flush is tried again a flush interval later, not at every tick.)
        self.last_flush = (self.clock)();
        self.health.count(Op::Flush, flushed)?;
        self.unflushed = 0;
        Ok(())
    }

    fn sync_file(&mut self) -> Result<(), JournalError> {
        let synced = self
            .file
            .get_ref()
            .sync_data()
            .map_err(|e| self.write_error(e));
        self.health.count(Op::Sync, synced)
    }

    /// Whether the open segment is still the file at its path; if not, says so, counts
    /// it and marks it gone.
    fn notice_deleted(&mut self) {
        if self.gone {
            return;
        }
        let path = self.segment_path();
        let there = match fs::metadata(&path) {
            Ok(m) => (m.dev(), m.ino()) == self.file_id,
            // (Another error, say ENOMEM, tells nothing about the file.)
            Err(e) => !matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ),
        };
        if !there {
            self.gone = true;
            self.health.happened(Op::Recreate);
            tracing::warn!(
                op = Op::Recreate.name(),
                "journal: {} is gone (deleted or replaced, alone, with its boot's directory or with the journal): what it held is lost; the journal goes on in a new segment",
                path.display()
            );
        }
    }

    fn rotate(&mut self) -> Result<(), JournalError> {
        self.notice_deleted();
        if !self.gone {
            // (A segment that could not be written through is closed all the same: the
            // failure is counted, and the next segment may fare better.)
            let _ = self.flush_buffer().and_then(|()| self.sync_file());
        }
        let started = start_segment(&self.boot_dir, &self.boot_id, self.segment + 1);
        let Started {
            file,
            segment,
            path,
            id,
        } = self.health.count(Op::Rotate, started)?;
        let old = std::mem::replace(&mut self.file, file);
        self.segment = segment;
        self.file_id = id;
        self.segment_len = HEADER_LEN as u64;
        if std::mem::take(&mut self.gone) {
            // What was still buffered never reached the deleted file: it goes into this one.
            let (_, pending) = old.into_parts();
            if let Ok(pending) = pending
                && !pending.is_empty()
                && pending.len() as u64 <= self.segment_room()
            {
                let written = self
                    .file
                    .write_all(&pending)
                    .map_err(|e| self.write_error(e));
                if self.health.count(Op::Write, written).is_ok() {
                    self.segment_len += pending.len() as u64;
                }
            }
            tracing::info!(segment = %path.display(), "journal made again");
        } else {
            drop(old);
            tracing::info!(segment = %path.display(), "journal segment started");
        }
        self.unflushed = self.file.buffer().len();
        self.enforce_cap(self.segment_room());
        Ok(())
    }

    /// Deletes the oldest boots, then this boot's oldest closed segments, until the
    /// journal and `room` bytes more fit the cap.
    fn enforce_cap(&mut self, room: u64) {
        let fits = |w: &Self| w.total_bytes() + room <= w.limits.max_bytes;
        // This boot's bytes as the disk has them (someone may have removed some), and
        // what is still buffered.
        self.bytes = dir_bytes(&self.boot_dir) + self.file.buffer().len() as u64;
        let mut boots = list_boots(&self.root).unwrap_or_default();
        boots.retain(|b| b.boot_id != self.boot_id);
        self.older_bytes = boots.iter().map(|b| b.bytes).sum();
        for b in boots {
            if fits(self) {
                return;
            }
            if fs::remove_dir_all(&b.dir).is_ok() {
                tracing::info!(boot = %b.boot_id, bytes = b.bytes, "journal at its cap: removed the oldest boot");
                self.older_bytes -= b.bytes;
            }
        }
        let current = self.segment_path();
        for seg in segments_of(&self.boot_dir).unwrap_or_default() {
            if fits(self) || seg == current {
                return;
            }
            let Ok(meta) = fs::metadata(&seg) else {
                continue;
            };
            if meta.is_file() && fs::remove_file(&seg).is_ok() {
                tracing::info!(segment = %seg.display(), "journal at its cap: removed the oldest segment");
                self.bytes = self.bytes.saturating_sub(meta.len());
            }
        }
    }
}

/// The longest start of `args` whose JSON takes at most `room` bytes more than an empty
/// array's: whole arguments while they fit, then as much of the next as fits, cut on a
/// character.
pub(super) fn cut_to_fit(args: &[String], mut room: usize) -> Vec<String> {
    // What each ASCII character takes in a JSON string as serde_json writes it (`\"`,
    // `\n`, `\u0001`, ...); any other character is written as it is.
    let ascii: Vec<usize> = (0u8..128)
        .map(|b| serde_json::to_string(&char::from(b)).map_or(6, |j| j.len() - 2))
        .collect();
    let char_len = |c: char| {
        if c.is_ascii() {
            ascii[c as usize]
        } else {
            c.len_utf8()
        }
    };
    let mut kept = Vec::new();
    for arg in args {
        // Quotes, and a comma before all but the first.
        let overhead = 2 + usize::from(!kept.is_empty());
        let len = overhead + arg.chars().map(char_len).sum::<usize>();
        if len <= room {
            room -= len;
            kept.push(arg.clone());
            continue;
        }
        let Some(mut left) = room.checked_sub(overhead) else {
            break;
        };
        let end = arg
            .char_indices()
            .find_map(|(i, c)| match left.checked_sub(char_len(c)) {
                Some(l) => {
                    left = l;
                    None
                }
                None => Some(i),
            })
            .unwrap_or(arg.len());
        if end > 0 {
            kept.push(arg[..end].to_owned());
        }
        break;
    }
    kept
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

/// A segment just started: its writer, number, path and (device, inode).
struct Started {
    file: BufWriter<File>,
    segment: u64,
    path: PathBuf,
    id: (u64, u64),
}

/// Starts segment `from`, or the first free name of the [`NAME_TRIES`] from it on, making
/// the boot's directory (and the journal's) first if someone removed it.
fn start_segment(dir: &Path, boot_id: &str, from: u64) -> Result<Started, JournalError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|source| JournalError::Dir {
            path: dir.to_owned(),
            source,
        })?;
    for segment in from..from + NAME_TRIES {
        match new_segment(dir, boot_id, segment) {
            Ok(started) => return Ok(started),
            Err(JournalError::Segment { path, source })
                if source.kind() == io::ErrorKind::AlreadyExists =>
            {
                tracing::debug!(segment = %path.display(), "journal: segment name taken, trying the next");
            }
            Err(e) => return Err(e),
        }
    }
    Err(JournalError::NamesTaken {
        dir: dir.to_owned(),
        first: segment_name(from),
        last: segment_name(from + NAME_TRIES - 1),
    })
}

fn new_segment(dir: &Path, boot_id: &str, n: u64) -> Result<Started, JournalError> {
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
    let started = w
        .write_all(&header)
        .and_then(|()| w.flush())
        .and_then(|()| w.get_ref().metadata());
    match started {
        Ok(meta) => Ok(Started {
            file: w,
            segment: n,
            path,
            id: (meta.dev(), meta.ino()),
        }),
        Err(e) => {
            // (Not left behind: a full disk would otherwise gather an empty segment at
            // each try.)
            let _ = fs::remove_file(&path);
            Err(err(e))
        }
    }
}
