//! Helpers shared by the test binaries.
//!
//! Each test binary that says `mod common;` compiles its own copy of this module and uses
//! only part of it (the kernel tests `privileged`, the replay tests `Show` and
//! `analyze_chain`), so what one binary leaves unused is not dead code: the lint is off for
//! this module alone. (`#[expect(dead_code)]` would not do: what is unused differs from one
//! binary to the next, and an expectation met in none of them is itself a warning.)
#![allow(
    dead_code,
    reason = "every test binary compiles this module and uses only part of it"
)]

use std::{collections::HashMap, fs, path::Path};

/// Whether the test may load eBPF programs, which needs root. Outside CI a non-root run
/// skips (false, with the reason printed); in CI (CI set) it fails instead.
pub fn privileged() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "these tests must run as root in CI (they load eBPF programs)"
    );
    eprintln!("skipped: loading eBPF programs needs root");
    false
}

/// What `systemctl show` said about a unit: its `Key=value` lines.
pub struct Show(HashMap<String, String>);

impl Show {
    /// Reads a saved `systemctl show` output.
    pub fn load(path: &Path) -> Self {
        let text = fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{}: {e} (did the scenario run?)", path.display()));
        Self(
            text.lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    /// The value of `key`; "" when it is not there.
    pub fn get(&self, key: &str) -> &str {
        self.0.get(key).map_or("", String::as_str)
    }

    /// The value of `key` as a number; 0 when it is not there or not a number.
    pub fn num(&self, key: &str) -> u64 {
        self.get(key).parse().unwrap_or(0)
    }

    /// `ExecStart={ path=/bin/sleep ; argv[]=... }` → `/bin/sleep`.
    pub fn exec_start_path(&self) -> Option<&str> {
        let v = self.get("ExecStart");
        let rest = &v[v.find("path=")? + 5..];
        rest.split_whitespace().next()
    }
}

/// The unit names of `systemd-analyze critical-chain`'s tree (or of
/// `tracer boot --critical`'s), in order: the first word of each line after the header.
pub fn analyze_chain(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| !l.is_empty())
        .filter_map(|l| {
            let name = l
                .trim_start_matches(|c: char| c.is_whitespace() || "│├└─".contains(c))
                .split_whitespace()
                .next()?;
            name.contains('.').then(|| name.to_owned())
        })
        .collect()
}
