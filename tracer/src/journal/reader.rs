//! Reading segments back: the header, then frame by frame, skipping and reporting damage.

use std::{
    fs,
    path::{Path, PathBuf},
};

use serde::Serialize;

use super::{
    BootInfo, FORMAT_VERSION, FRAME_HEAD, HEADER_LEN, Item, JournalError, MAGIC, MAX_PAYLOAD,
    StoredProc, TYPE_CGROUP, TYPE_EVENT, TYPE_PROCESS, TYPE_SYSTEMD, segments_of,
};
use crate::{decode::decode, procfs::ProcInfo};

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

/// Reads a whole boot, segment by segment, in order. A segment that cannot be read as a
/// journal (a 0-byte one a rotation on a full disk left, one of a format version this
/// tracer does not know, one gone unreadable) is damage, reported and skipped, and the
/// others are read; only a boot none of whose segments can be read is an error.
pub fn read_boot(boot: &BootInfo, mut item: impl FnMut(Item)) -> Result<Vec<Damage>, JournalError> {
    let mut damage = Vec::new();
    let mut first_error = None;
    let mut any_read = false;
    for seg in segments_of(&boot.dir).map_err(|source| JournalError::Dir {
        path: boot.dir.clone(),
        source,
    })? {
        match read_segment(&seg, &mut item, &mut damage) {
            Ok(()) => any_read = true,
            Err(e) => {
                tracing::warn!("journal damage: {e}");
                damage.push(Damage {
                    segment: seg.clone(),
                    offset: 0,
                    what: format!("segment skipped: {e}"),
                });
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if !any_read => Err(e),
        _ => Ok(damage),
    }
}
