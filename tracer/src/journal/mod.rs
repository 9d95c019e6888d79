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

mod boots;
mod reader;
#[cfg(test)]
mod tests;
mod writer;

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

pub use boots::{BootInfo, find_boot, first_event_ns, list_boots, vacuum};
pub use reader::{Damage, read_boot, read_segment};
pub use writer::{JournalErrors, Writer};

use crate::{event::Event, procfs::ProcInfo};

const MAGIC: &[u8; 8] = b"TRACERJ\0";
/// Format version of segments this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 32;
const FRAME_HEAD: usize = 8;
/// No payload is larger: the reader takes no frame past it, and the writer writes none
/// (kernel records are at most a few KiB; a process found at start with a longer command
/// line is cut to fit, systemd's account of a host with thousands of units is split).
const MAX_PAYLOAD: usize = 1 << 20;

const TYPE_EVENT: u8 = 1;
const TYPE_CGROUP: u8 = 2;
const TYPE_PROCESS: u8 = 3;
/// systemd's account once boot finished (JSON of [`crate::systemd::Snapshot`], or of a
/// part of it: [`StoredSystemd`]).
const TYPE_SYSTEMD: u8 = 4;
/// A change systemd announced as it happened (JSON of [`crate::systemd::changes::Change`]).
/// (A tracer from before these were recorded reports each as damage and reads the rest.)
const TYPE_SYSTEMD_CHANGE: u8 = 5;

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
    #[error(
        "writing journal segment {path}: {source} (is its file system full? `tracer journal --vacuum-size SIZE` removes old boots)"
    )]
    Write { path: PathBuf, source: io::Error },
    #[error(
        "{what} is {bytes} bytes, more than a journal frame holds ({MAX_PAYLOAD}): not recorded"
    )]
    TooLarge { what: &'static str, bytes: usize },
    #[error(
        "journal segment {path} is full ({bytes} bytes) and no new one could be started (said before): frames are dropped until one can"
    )]
    SegmentFull { path: PathBuf, bytes: u64 },
    #[error(
        "journal segment {path} was deleted and no new one could be started yet (said before): frames are dropped until one can"
    )]
    Deleted { path: PathBuf },
    #[error(
        "the journal in {root} is at its cap ({max_bytes} bytes) and nothing older can be removed: frames are dropped (raise [journal] max_bytes, or move out of {root} what is not the journal's)"
    )]
    AtCap { root: PathBuf, max_bytes: u64 },
    #[error(
        "journal segment names {first} to {last} in {dir} are all taken by files the journal did not make: move them away"
    )]
    NamesTaken {
        dir: PathBuf,
        first: String,
        last: String,
    },
    #[error("encoding {what} for the journal: {source}")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("no recorded boot {0} (see `tracer journal list`)")]
    NoSuchBoot(String),
}

/// Size limits and flushing.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct JournalLimits {
    /// All boots together stay under this many bytes; the oldest boot goes first. A new
    /// segment makes room for itself to fill, so the cap holds while it grows.
    #[serde(deserialize_with = "crate::clock::deserialize_size")]
    pub max_bytes: u64,
    /// A segment is closed and a new one started before it would pass this size (or the
    /// cap, if that is smaller); only a lone frame larger than this passes it.
    #[serde(deserialize_with = "crate::clock::deserialize_size")]
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
    /// A process that was running when the daemon started; `cmdline_truncated` when its
    /// command line was cut to fit a frame (its first arguments are kept).
    Process {
        info: ProcInfo,
        cmdline_truncated: bool,
    },
    /// What systemd said about the boot and its units when boot finished.
    Systemd(Box<crate::systemd::Snapshot>),
    /// A change systemd announced, as it happened.
    SystemdChange(Box<crate::systemd::changes::Change>),
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
    /// The command line was cut to fit a frame. (Written only when true, so that records
    /// not cut are as before; journals written before it read as not cut.)
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    cmdline_truncated: bool,
}

/// systemd's account as stored: whole, or when it is larger than a frame, in parts of a
/// few units each, every part with the boot's times. A reader that does not know parts
/// (the field is unknown to it, and ignored) takes the last part for the account: the
/// boot's times right, some of its units.
#[derive(Serialize, Deserialize)]
struct StoredSystemd {
    #[serde(flatten)]
    snapshot: crate::systemd::Snapshot,
    /// Of a split account: this part's index and how many there are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    journal_part: Option<(u32, u32)>,
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
        .filter(fs::Metadata::is_file)
        .map(|m| m.len())
        .sum()
}
