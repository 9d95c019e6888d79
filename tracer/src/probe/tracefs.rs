//! tracefs: where it is (mounting it when nothing has yet, as early in boot), and the field
//! offsets of tracepoint records from their `format` files, which differ between kernels
//! (sched_process_fork's comm fields moved between 6.1 and 6.18, for one).

use std::{
    collections::HashMap,
    ffi::CString,
    path::{Path, PathBuf},
};

use super::ProbeError;

const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// The tracefs mount, found or made.
pub struct TraceFs {
    root: PathBuf,
}

impl TraceFs {
    /// Finds a mounted tracefs, or mounts one at /sys/kernel/tracing.
    pub fn find_or_mount() -> Result<Self, ProbeError> {
        for c in CANDIDATES {
            let root = Path::new(c);
            if root.join("events").is_dir() {
                return Ok(Self { root: root.into() });
            }
        }
        let target = Path::new(CANDIDATES[0]);
        if !target.is_dir() {
            return Err(ProbeError::TraceFs(format!(
                "tracefs is not mounted and {} does not exist: the kernel needs CONFIG_FTRACE",
                target.display()
            )));
        }
        let fstype = CString::new("tracefs").expect("no NUL");
        let dir = CString::new(CANDIDATES[0]).expect("no NUL");
        // SAFETY: valid NUL-terminated strings; no data argument.
        let rc = unsafe {
            libc::mount(
                fstype.as_ptr(),
                dir.as_ptr(),
                fstype.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(ProbeError::TraceFs(format!(
                "tracefs is not mounted and mounting it at {} failed: {}",
                target.display(),
                std::io::Error::last_os_error()
            )));
        }
        tracing::info!("mounted tracefs at {}", target.display());
        Ok(Self {
            root: target.into(),
        })
    }

    /// The record layout of tracepoint `category/name`.
    pub fn format(&self, category: &str, name: &str) -> Result<Format, ProbeError> {
        let path = self
            .root
            .join("events")
            .join(category)
            .join(name)
            .join("format");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ProbeError::TraceFs(format!(
                "cannot read {}: {e} (does this kernel have the {category}/{name} tracepoint?)",
                path.display()
            ))
        })?;
        Ok(Format {
            event: format!("{category}/{name}"),
            fields: parse_format(&text),
        })
    }
}

/// The fields of one tracepoint's record.
pub struct Format {
    event: String,
    fields: HashMap<String, u32>,
}

impl Format {
    /// Byte offset of a field the programs need.
    pub fn offset(&self, field: &str) -> Result<u32, ProbeError> {
        self.fields
            .get(field)
            .copied()
            .ok_or_else(|| ProbeError::MissingField {
                event: self.event.clone(),
                field: field.to_owned(),
            })
    }

    /// Byte offset of a field only some kernels have.
    pub fn optional(&self, field: &str) -> Option<u32> {
        self.fields.get(field).copied()
    }
}

/// Field name → offset, from a tracefs `format` file.
pub fn parse_format(text: &str) -> HashMap<String, u32> {
    let mut fields = HashMap::new();
    for line in text.lines() {
        let mut decl = None;
        let mut offset = None;
        for part in line.trim().split(';') {
            let part = part.trim();
            if let Some(d) = part.strip_prefix("field:") {
                decl = Some(d);
            } else if let Some(o) = part.strip_prefix("offset:") {
                offset = o.parse::<u32>().ok();
            }
        }
        let (Some(decl), Some(offset)) = (decl, offset) else {
            continue;
        };
        // "__data_loc char[] filename", "char comm[16]", "pid_t pid"
        let Some(last) = decl.split_whitespace().last() else {
            continue;
        };
        let name = last.split('[').next().unwrap_or(last);
        fields.insert(name.to_owned(), offset);
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_of_both_kernel_generations() {
        // sched_process_fork as kernel 6.1 lays it out (fixed comm arrays) ...
        let old = "name: sched_process_fork\nID: 300\nformat:\n\
            \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
            \tfield:char parent_comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
            \tfield:pid_t parent_pid;\toffset:24;\tsize:4;\tsigned:1;\n\
            \tfield:char child_comm[16];\toffset:28;\tsize:16;\tsigned:0;\n\
            \tfield:pid_t child_pid;\toffset:44;\tsize:4;\tsigned:1;\n\n\
            print fmt: \"comm=%s pid=%d\", REC->parent_comm, REC->parent_pid\n";
        let f = parse_format(old);
        assert_eq!(f["parent_comm"], 8);
        assert_eq!(f["child_pid"], 44);
        assert_eq!(f["common_type"], 0);
        // ... and as 6.18 does (__data_loc strings).
        let new = "format:\n\
            \tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;\n\
            \tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;\n\
            \tfield:__data_loc char[] child_comm;\toffset:16;\tsize:4;\tsigned:0;\n\
            \tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;\n";
        let f = parse_format(new);
        assert_eq!(f["parent_comm"], 8);
        assert_eq!(f["child_pid"], 20);
        assert_eq!(f.len(), 4);
    }
}
