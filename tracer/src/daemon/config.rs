//! The daemon's configuration: `/etc/tracer/tracer.toml`, then its drop-ins
//! (`/etc/tracer/tracer.toml.d/*.toml`, in lexical order of their names), each key of a
//! later file replacing the earlier one's and tables merged key by key, as systemd reads a
//! unit's drop-ins. Every key is optional with the default below; an unknown key is an
//! error naming its file. Byte sizes are integers or strings like `"256M"`. Command-line
//! flags override the files.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::journal::JournalLimits;

/// Where the configuration is read from unless `--config` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/tracer/tracer.toml";

/// Every setting of `tracer daemon`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the event journal lives (one directory per boot below `journal/`).
    pub state_dir: PathBuf,
    /// Where the stream socket `tracer.sock` is made.
    pub runtime_dir: PathBuf,
    /// Group that may connect to the stream socket (mode 0660); none: root only.
    pub socket_group: Option<String>,
    /// What a client of the socket that is not root sees of other users' processes.
    pub socket_others: Others,
    /// Address of the Prometheus endpoint; empty: no endpoint.
    pub metrics_listen: String,
    /// Most unit label values (`name`) in metrics before folding into name="_other".
    pub metrics_unit_cap: usize,
    /// Kernel ring-buffer size in bytes (a power of two).
    #[serde(deserialize_with = "crate::clock::deserialize_size")]
    pub ring_size: u32,
    /// After a read of the ring buffer, let records accumulate this long before the next:
    /// one wake-up per batch, not per record. Bounds the latency this adds to the stream.
    pub batch_ms: u64,
    /// Catch failed execs (errno and path). Costs every syscall on the machine the
    /// kernel's slow path (syscall tracepoints); false trades them for that.
    pub failed_execs: bool,
    /// The journal's size cap, segment size and flush interval.
    pub journal: JournalLimits,
    /// Failed runs within `crash_loop_window_secs` that make a crash loop.
    pub crash_loop_runs: usize,
    pub crash_loop_window_secs: f64,
    /// Findings in the systemd journal (on by default) and their rate per unit.
    pub systemd_journal: JournaldConfig,
    /// Events and findings as OTLP logs to a collector (off by default).
    pub otlp: OtlpConfig,
    /// The bpffs directory the programs, their links and the ring buffer are pinned in
    /// while the daemon runs, and where a starting daemon resumes them; "": none.
    pub pin_dir: String,
    /// At the stop, leave them pinned and recording for the next daemon (a restart or an
    /// upgrade loses nothing); false: remove them.
    pub detach_on_exit: bool,
    /// Follow and ask systemd (pid 1) for its account of the units; false: the kernel's
    /// account alone, with every verdict that needs systemd's marked as inferred.
    pub ask_systemd: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("/var/lib/tracer"),
            runtime_dir: PathBuf::from("/run/tracer"),
            socket_group: None,
            socket_others: Others::Hidden,
            metrics_listen: "127.0.0.1:9464".into(),
            metrics_unit_cap: 500,
            ring_size: 4 << 20,
            batch_ms: 30,
            failed_execs: true,
            journal: JournalLimits::default(),
            crash_loop_runs: 3,
            crash_loop_window_secs: 60.0,
            systemd_journal: JournaldConfig::default(),
            otlp: OtlpConfig::default(),
            pin_dir: "/sys/fs/bpf/tracer".into(),
            detach_on_exit: false,
            ask_systemd: true,
        }
    }
}

pub use crate::sink::{journald::JournaldConfig, otlp::OtlpConfig, stream::Others};

/// Why the configuration could not be read. The message carries the cause (so it is not
/// also the error's source, which would say it twice).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {error}")]
    Parse {
        path: PathBuf,
        error: Box<toml::de::Error>,
    },
    #[error("reading the drop-in directory {path}: {error}")]
    DropIns {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Each file is valid alone, their merge is not (cannot happen with the types here:
    /// a key's type is checked in each file).
    #[error("{files}, merged: {error}")]
    Merged {
        files: String,
        error: Box<toml::de::Error>,
    },
}

/// The drop-in directory of a configuration file: `FILE.d`.
pub fn drop_in_dir(path: &Path) -> PathBuf {
    let mut dir = path.as_os_str().to_owned();
    dir.push(".d");
    PathBuf::from(dir)
}

/// The `*.toml` files of a drop-in directory in lexical order of their names; a missing
/// directory has none.
fn drop_ins(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(ConfigError::DropIns {
                path: dir.to_owned(),
                error,
            });
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| ConfigError::DropIns {
            path: dir.to_owned(),
            error,
        })?;
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "toml") && !path.is_dir() {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// Lays `over` onto `base`: a table meets a table key by key, anything else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

impl Config {
    /// Parses a configuration file's text.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: path.to_owned(),
            error: Box::new(error),
        })
    }

    /// Reads `path` (a missing default file means the defaults, a missing named file is
    /// an error), then the drop-ins of `path.d/`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (path, explicit) = match path {
            Some(p) => (p.to_owned(), true),
            None => (PathBuf::from(DEFAULT_PATH), false),
        };
        let mut files = Vec::new();
        match std::fs::read_to_string(&path) {
            Ok(text) => files.push((path.clone(), text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {}
            Err(error) => return Err(ConfigError::Read { path, error }),
        }
        for file in drop_ins(&drop_in_dir(&path))? {
            match std::fs::read_to_string(&file) {
                Ok(text) => files.push((file, text)),
                Err(error) => return Err(ConfigError::Read { path: file, error }),
            }
        }
        Self::merged(&files)
    }

    /// The settings of these files (path and text), each laid over the ones before it.
    /// Each is checked alone first, so an error names the file it is in.
    pub fn merged(files: &[(PathBuf, String)]) -> Result<Self, ConfigError> {
        let mut table = toml::Table::new();
        for (path, text) in files {
            Self::parse(text, path)?;
            let parse = |error| ConfigError::Parse {
                path: path.clone(),
                error: Box::new(error),
            };
            merge(&mut table, toml::from_str(text).map_err(parse)?);
        }
        toml::Value::Table(table)
            .try_into()
            .map_err(|error| ConfigError::Merged {
                files: files
                    .iter()
                    .map(|(p, _)| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                error: Box::new(error),
            })
    }

    pub fn journal_dir(&self) -> PathBuf {
        self.state_dir.join("journal")
    }

    /// Where the programs are pinned (None: they are not).
    pub fn pin_dir(&self) -> Option<PathBuf> {
        (!self.pin_dir.is_empty()).then(|| PathBuf::from(&self.pin_dir))
    }

    pub fn socket_path(&self) -> PathBuf {
        self.runtime_dir.join("tracer.sock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_partial_files_and_unknown_keys() {
        let p = Path::new("/etc/tracer/tracer.toml");
        assert_eq!(Config::parse("", p).unwrap(), Config::default());
        let c = Config::parse(
            "metrics_listen = \"0.0.0.0:9000\"\n[journal]\nmax_bytes = 1000\n",
            p,
        )
        .unwrap();
        assert_eq!(c.metrics_listen, "0.0.0.0:9000");
        assert_eq!(c.journal.max_bytes, 1000);
        assert_eq!(
            c.journal.segment_bytes,
            JournalLimits::default().segment_bytes
        );
        let err = Config::parse("metrics_lisen = \"x\"\n", p)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown field") && err.contains("metrics_lisen"),
            "{err}"
        );
        let c = Config::parse("[systemd_journal]\nenabled = false\n", p).unwrap();
        assert!(!c.systemd_journal.enabled);
        assert_eq!(c.systemd_journal.burst, JournaldConfig::default().burst);
        let err = Config::parse("[journal]\nmax_bytez = 1\n", p)
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_bytez"), "{err}");
        let c = Config::parse(
            "[otlp]\nenabled = true\nendpoint = \"http://collector:4318/v1/logs\"\nevent_kinds = [\"exec\"]\n",
            p,
        )
        .unwrap();
        assert!(c.otlp.enabled && c.otlp.findings);
        assert_eq!(c.otlp.event_kinds, ["exec"]);
        assert_eq!(c.otlp.batch_size, OtlpConfig::default().batch_size);
        let err = Config::parse("[otlp]\nbatch = 1\n", p)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown field") && err.contains("batch"),
            "{err}"
        );
    }

    #[test]
    fn later_files_override_earlier_keys_and_tables_merge() {
        let f = |name: &str, text: &str| (PathBuf::from(name), text.to_owned());
        let c = Config::merged(&[
            f(
                "tracer.toml",
                "metrics_listen = \"127.0.0.1:1\"\nbatch_ms = 5\n[journal]\nmax_bytes = \"1G\"\nflush_interval_ms = 7\n[otlp]\nevent_kinds = [\"exec\", \"exit\"]\n",
            ),
            f(
                "tracer.toml.d/10-a.toml",
                "metrics_listen = \"127.0.0.1:2\"\n[journal]\nmax_bytes = \"64M\"\n",
            ),
            f(
                "tracer.toml.d/20-b.toml",
                "metrics_listen = \"127.0.0.1:3\"\n[otlp]\nevent_kinds = [\"signal\"]\n",
            ),
        ])
        .unwrap();
        assert_eq!(c.metrics_listen, "127.0.0.1:3", "the last file's key wins");
        assert_eq!(c.batch_ms, 5, "a key no drop-in names stays");
        assert_eq!(c.journal.max_bytes, 64 << 20, "a drop-in's key in a table");
        assert_eq!(
            c.journal.flush_interval_ms, 7,
            "the table's other keys stay (merged, not replaced)"
        );
        assert_eq!(c.otlp.event_kinds, ["signal"], "an array is replaced whole");
        assert_eq!(Config::merged(&[]).unwrap(), Config::default());
    }

    #[test]
    fn drop_ins_are_read_in_lexical_order_and_a_bad_one_is_named() {
        let dir = std::env::temp_dir().join(format!("tracer-config-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let main = dir.join("tracer.toml");
        let d = drop_in_dir(&main);
        assert_eq!(d, dir.join("tracer.toml.d"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(&main, "batch_ms = 1\nring_size = \"1M\"\n").unwrap();
        // Written out of order, read in the order of their names; not *.toml: not read.
        std::fs::write(d.join("90-last.toml"), "batch_ms = 3\n").unwrap();
        std::fs::write(
            d.join("10-first.toml"),
            "batch_ms = 2\nmetrics_unit_cap = 9\n",
        )
        .unwrap();
        std::fs::write(d.join("99-ignored.toml.bak"), "batch_ms = 4\n").unwrap();
        let c = Config::load(Some(&main)).unwrap();
        assert_eq!(
            (c.batch_ms, c.metrics_unit_cap, c.ring_size),
            (3, 9, 1 << 20)
        );

        std::fs::write(d.join("50-bad.toml"), "[journal]\nmax_bytes = \"lots\"\n").unwrap();
        let err = Config::load(Some(&main)).unwrap_err().to_string();
        assert!(
            err.contains("50-bad.toml") && err.contains("\"4M\""),
            "names the file and says what a size looks like: {err}"
        );
        std::fs::write(d.join("50-bad.toml"), "batch_ms = [\n").unwrap();
        let err = Config::load(Some(&main)).unwrap_err().to_string();
        assert!(err.contains("50-bad.toml"), "a syntax error too: {err}");
        std::fs::write(d.join("50-bad.toml"), "bach_ms = 1\n").unwrap();
        let err = Config::load(Some(&main)).unwrap_err().to_string();
        assert!(
            err.contains("50-bad.toml") && err.contains("bach_ms"),
            "an unknown key: {err}"
        );

        // Without the main file, a named one is missing (an error); the default path's
        // drop-ins alone would still apply.
        std::fs::remove_file(&main).unwrap();
        assert!(matches!(
            Config::load(Some(&main)),
            Err(ConfigError::Read { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn byte_sizes_are_integers_or_human_sizes() {
        let p = Path::new("tracer.toml");
        let c = Config::parse(
            "ring_size = \"4M\"\n[journal]\nmax_bytes = \"256M\"\nsegment_bytes = \"1.5M\"\n",
            p,
        )
        .unwrap();
        assert_eq!(c.ring_size, 4 << 20);
        assert_eq!(c.journal.max_bytes, 256 << 20);
        assert_eq!(c.journal.segment_bytes, 3 << 19);
        let c = Config::parse("ring_size = 8192\n[journal]\nmax_bytes = 1000\n", p).unwrap();
        assert_eq!((c.ring_size, c.journal.max_bytes), (8192, 1000));
        let c = Config::parse("[journal]\nmax_bytes = \"2T\"\n", p).unwrap();
        assert_eq!(c.journal.max_bytes, 2 << 40);
        for bad in ["\"4X\"", "\"\"", "-1", "\"-1M\"", "1.5"] {
            let err = Config::parse(&format!("ring_size = {bad}\n"), p)
                .unwrap_err()
                .to_string();
            assert!(err.contains("a size in bytes"), "{bad}: {err}");
        }
        let err = Config::parse("ring_size = \"8G\"\n", p)
            .unwrap_err()
            .to_string();
        assert!(err.contains("too large"), "a u32 cannot hold 8G: {err}");
    }

    #[test]
    fn the_documented_example_is_the_default() {
        let text = include_str!("../../dist/tracer.toml");
        assert_eq!(
            Config::parse(text, Path::new("tracer.toml")).unwrap(),
            Config::default()
        );
    }
}
