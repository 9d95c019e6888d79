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

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

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

/// A file of `tracer/dist/`, as shipped.
pub fn dist(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tracer/dist")
        .join(file)
}

/// The alerts a Prometheus rule file defines (its `- alert: NAME` lines), in order.
pub fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("- alert:"))
        .map(|n| n.trim().to_owned())
        .collect()
}

/// Every panel target's query in a Grafana dashboard (the panels of rows too), each with
/// its panel's title. A panel without targets, or a target without a PromQL `expr`, is an
/// error that names it.
pub fn dashboard_queries(dashboard: &serde_json::Value) -> Result<Vec<(String, String)>, String> {
    fn walk(panels: &serde_json::Value, out: &mut Vec<(String, String)>) -> Result<(), String> {
        let Some(panels) = panels.as_array() else {
            return Err(format!("`panels` is not a list: {panels}"));
        };
        for p in panels {
            let title = p["title"].as_str().unwrap_or("(untitled)").to_owned();
            if p["type"] == "row" {
                if let Some(inner) = p.get("panels") {
                    walk(inner, out)?;
                }
                continue;
            }
            let targets = p["targets"]
                .as_array()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| format!("panel {title:?} has no targets"))?;
            for t in targets {
                let expr = t["expr"]
                    .as_str()
                    .filter(|e| !e.trim().is_empty())
                    .ok_or_else(|| format!("a target of panel {title:?} has no expr: {t}"))?;
                out.push((title.clone(), expr.to_owned()));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out)?;
    Ok(out)
}

/// A dashboard query with its Grafana variables (`$name`) replaced by `vars`' values; a
/// variable not among them is an error.
pub fn with_variables(query: &str, vars: &[(&str, &str)]) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = query;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..len];
        let value = vars
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| format!("unknown variable ${name} in {query}"))?;
        out.push_str(value.1);
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}
