//! The daemon's configuration: `/etc/tracer/tracer.toml`, every key optional with the
//! default below; an unknown key is an error. Command-line flags override the file.

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
        }
    }
}

pub use crate::sink::{journald::JournaldConfig, otlp::OtlpConfig, stream::Others};

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
}

impl Config {
    /// Parses a configuration file's text.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Reads `path`; a missing default file means the defaults, a missing named file is
    /// an error.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (path, explicit) = match path {
            Some(p) => (p.to_owned(), true),
            None => (PathBuf::from(DEFAULT_PATH), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read { path, source }),
        }
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
    fn the_documented_example_is_the_default() {
        let text = include_str!("../../dist/tracer.toml");
        assert_eq!(
            Config::parse(text, Path::new("tracer.toml")).unwrap(),
            Config::default()
        );
    }
}
