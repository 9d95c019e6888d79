//! `tracer journal`: the daemon's recorded boots.

use std::{
    io::{self, Write},
    path::PathBuf,
};

use clap::{Args, Subcommand};
use serde::Serialize;

use crate::{
    clock::rfc3339_utc,
    journal::{self, Item},
};

#[derive(Debug, Args)]
pub struct JournalArgs {
    /// The daemon's state directory.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/tracer",
        global = true
    )]
    pub state_dir: PathBuf,
    #[command(subcommand)]
    pub command: JournalCommand,
}

#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// The recorded boots: id, first and last event, events, size.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct BootRow {
    offset: i64,
    boot_id: String,
    /// Wall time the boot's journal was started.
    created: String,
    /// CLOCK_BOOTTIME of its first and last event, in seconds.
    first_s: Option<f64>,
    last_s: Option<f64>,
    events: u64,
    bytes: u64,
    damaged_frames: usize,
}

pub fn run(args: JournalArgs) -> anyhow::Result<()> {
    match args.command {
        JournalCommand::List { json } => list(&args.state_dir, json),
    }
}

fn list(state_dir: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let boots = journal::list_boots(&state_dir.join("journal"))?;
    let n = boots.len() as i64;
    let mut rows = Vec::new();
    for (i, b) in boots.iter().enumerate() {
        let (mut first, mut last, mut events) = (None, None, 0u64);
        let damage = journal::read_boot(b, |item| {
            if let Item::Event(ev) = item {
                events += 1;
                first = Some(first.unwrap_or(ev.ts_ns).min(ev.ts_ns));
                last = Some(last.unwrap_or(ev.ts_ns).max(ev.ts_ns));
            }
        })?;
        rows.push(BootRow {
            offset: i as i64 - (n - 1),
            boot_id: b.boot_id.clone(),
            created: rfc3339_utc(
                std::time::UNIX_EPOCH + std::time::Duration::from_nanos(b.created_ns),
            ),
            first_s: first.map(|t| t as f64 / 1e9),
            last_s: last.map(|t| t as f64 / 1e9),
            events,
            bytes: b.bytes,
            damaged_frames: damage.len(),
        });
    }
    let mut out = io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:>4} {:<32} {:<27} {:>10} {:>10} {:>9} {:>11}",
        "IDX", "BOOT ID", "RECORDED FROM", "FIRST", "LAST", "EVENTS", "SIZE"
    )?;
    for r in rows {
        let s = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}s"));
        writeln!(
            out,
            "{:>4} {:<32} {:<27} {:>10} {:>10} {:>9} {:>11}{}",
            r.offset,
            r.boot_id,
            r.created,
            s(r.first_s),
            s(r.last_s),
            r.events,
            r.bytes,
            if r.damaged_frames > 0 {
                format!("  ({} damaged frames skipped)", r.damaged_frames)
            } else {
                String::new()
            }
        )?;
    }
    Ok(())
}
