//! Reading segments back: the header, then frame by frame, skipping and reporting damage.

use std::{
    fs,
    path::{Path, PathBuf},
};

use serde::Serialize;

use super::{
    BootInfo, FORMAT_VERSION, FRAME_HEAD, HEADER_LEN, Item, JournalError, MAGIC, MAX_PAYLOAD,
    StoredProc, StoredSystemd, TYPE_CGROUP, TYPE_EVENT, TYPE_PROCESS, TYPE_SYSTEMD,
    TYPE_SYSTEMD_CHANGE, segments_of,
};
use crate::{decode::decode, procfs::ProcInfo, systemd::Snapshot};

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
    let mut parts = Parts::default();
    let read = read_segment_parts(path, &mut item, &mut parts, damage);
    parts.finish(&mut item, damage);
    read
}

/// [`read_segment`], with the parts of a split systemd account gathered in `parts` (they
/// may go on in the next segment).
fn read_segment_parts(
    path: &Path,
    item: &mut impl FnMut(Item),
    parts: &mut Parts,
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
    let report = |damage: &mut Vec<Damage>, offset: usize, what: String| {
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
                    Ok(Parsed::Item(i)) => {
                        parts.finish(item, damage);
                        item(i);
                    }
                    Ok(Parsed::Part {
                        index,
                        of,
                        snapshot,
                    }) => {
                        parts.add(index, of, snapshot, (path, at as u64), item, damage);
                    }
                    Err(what) => report(damage, at, what),
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
                report(damage, at, what);
                match next {
                    Some(n) => at = n,
                    None => break,
                }
            }
        }
    }
    Ok(())
}

/// What a frame holds: an item, or a part of a split systemd account.
enum Parsed {
    Item(Item),
    Part {
        index: u32,
        of: u32,
        snapshot: Snapshot,
    },
}

/// The parts of a split systemd account read so far, put back together as one item.
#[derive(Default)]
struct Parts {
    gathering: Option<Gathering>,
}

struct Gathering {
    snapshot: Snapshot,
    of: u32,
    /// The index of the part that should come next.
    next: u32,
    got: u32,
    /// Where its first part was.
    segment: PathBuf,
    offset: u64,
}

impl Parts {
    /// Takes part `index` of `of`. One missing is passed over (and said at the end); a
    /// part out of order, or of another account, ends the account gathered so far and
    /// starts another.
    fn add(
        &mut self,
        index: u32,
        of: u32,
        part: Snapshot,
        (segment, offset): (&Path, u64),
        item: &mut impl FnMut(Item),
        damage: &mut Vec<Damage>,
    ) {
        match &mut self.gathering {
            Some(g) if g.of == of && index >= g.next => {
                g.snapshot.units.extend(part.units);
                g.next = index + 1;
                g.got += 1;
            }
            _ => {
                self.finish(item, damage);
                self.gathering = Some(Gathering {
                    snapshot: part,
                    of,
                    next: index + 1,
                    got: 1,
                    segment: segment.to_owned(),
                    offset,
                });
            }
        }
        if self.gathering.as_ref().is_some_and(|g| g.next >= g.of) {
            self.finish(item, damage);
        }
    }

    /// Hands on the account gathered, whole or not (a part that is missing is damage:
    /// the boot's times are in every part, some units are not there).
    fn finish(&mut self, item: &mut impl FnMut(Item), damage: &mut Vec<Damage>) {
        let Some(g) = self.gathering.take() else {
            return;
        };
        if g.got < g.of {
            let what = format!(
                "systemd's account: {} of its {} parts read, some units are missing from it",
                g.got, g.of
            );
            tracing::warn!(segment = %g.segment.display(), offset = g.offset, "journal damage: {what}");
            damage.push(Damage {
                segment: g.segment,
                offset: g.offset,
                what,
            });
        }
        item(Item::Systemd(Box::new(g.snapshot)));
    }
}

fn parse_payload(payload: &[u8]) -> Result<Parsed, String> {
    let (&kind, body) = payload.split_first().ok_or("empty frame")?;
    let item = match kind {
        TYPE_EVENT => decode(body).map(Item::Event).map_err(|e| e.to_string())?,
        TYPE_CGROUP => {
            let id = body
                .get(..8)
                .ok_or("short cgroup frame")?
                .try_into()
                .map(u64::from_le_bytes)
                .map_err(|_| "short cgroup frame")?;
            Item::Cgroup {
                id,
                path: String::from_utf8_lossy(&body[8..]).into_owned(),
            }
        }
        TYPE_PROCESS => {
            let p: StoredProc = serde_json::from_slice(body).map_err(|e| e.to_string())?;
            Item::Process {
                info: ProcInfo {
                    pid: p.pid,
                    ppid: p.ppid,
                    start_ns: p.start_ns,
                    comm: p.comm,
                    exe: p.exe,
                    cmdline: p.cmdline,
                    cgroup: p.cgroup,
                },
                cmdline_truncated: p.cmdline_truncated,
            }
        }
        TYPE_SYSTEMD => {
            let s: StoredSystemd = serde_json::from_slice(body).map_err(|e| e.to_string())?;
            match s.journal_part {
                Some((index, of)) if index < of => {
                    return Ok(Parsed::Part {
                        index,
                        of,
                        snapshot: s.snapshot,
                    });
                }
                Some((index, of)) => {
                    return Err(format!("systemd's account: part {index} of {of}"));
                }
                None => Item::Systemd(Box::new(s.snapshot)),
            }
        }
        TYPE_SYSTEMD_CHANGE => Item::SystemdChange(Box::new(
            serde_json::from_slice(body).map_err(|e| format!("systemd's change: {e}"))?,
        )),
        other => return Err(format!("unknown frame type {other}")),
    };
    Ok(Parsed::Item(item))
}

/// Reads a whole boot, segment by segment, in order. A segment that cannot be read as a
/// journal (a 0-byte one a rotation on a full disk left, one of a format version this
/// tracer does not know, one gone unreadable) is damage, reported and skipped, and the
/// others are read; only a boot none of whose segments can be read is an error.
pub fn read_boot(boot: &BootInfo, mut item: impl FnMut(Item)) -> Result<Vec<Damage>, JournalError> {
    let mut damage = Vec::new();
    let mut first_error = None;
    let mut any_read = false;
    let mut parts = Parts::default();
    for seg in segments_of(&boot.dir).map_err(|source| JournalError::Dir {
        path: boot.dir.clone(),
        source,
    })? {
        match read_segment_parts(&seg, &mut item, &mut parts, &mut damage) {
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
    parts.finish(&mut item, &mut damage);
    match first_error {
        Some(e) if !any_read => Err(e),
        _ => Ok(damage),
    }
}
