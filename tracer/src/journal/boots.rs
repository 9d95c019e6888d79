//! The recorded boots: listing, finding one by id or offset, removing old ones.

use std::{
    fs::{self, File},
    io,
    path::{Path, PathBuf},
    time::SystemTime,
};

use serde::Serialize;

use super::{HEADER_LEN, Item, JournalError, MAGIC, dir_bytes, read_segment, segments_of};

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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::journal::{JournalLimits, Writer};

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
