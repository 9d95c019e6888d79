//! `tracer journal`: the daemon's recorded boots.

use std::{
    io::{self, Write},
    path::PathBuf,
};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::{
    clock::{parse_size, parse_span, rfc3339_utc},
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
    /// How much space the recorded boots take, as journalctl --disk-usage.
    #[arg(long)]
    pub disk_usage: bool,
    /// Remove the oldest boots (never the current one) until all fit in SIZE (100M, 1G).
    #[arg(long, value_name = "SIZE")]
    pub vacuum_size: Option<String>,
    /// Remove boots last written more than T ago (2weeks, 3d, 12h).
    #[arg(long, value_name = "T")]
    pub vacuum_time: Option<String>,
    /// Print JSON: the boots (as `list --json`), the space they take (--disk-usage), the
    /// boots removed (--vacuum-*, one object a line). `systemd` and `changes` print JSON
    /// always.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Option<JournalCommand>,
}

#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// The recorded boots: id, first and last event, events, size (--json: as JSON).
    List,
    /// systemd's account of a boot (its timestamps, units, dependencies) as the daemon
    /// recorded it over D-Bus when that boot finished, as JSON.
    Systemd {
        /// Which boot: its id (or a prefix), 0 for the newest, -1 for the one before, ...
        #[arg(
            long,
            value_name = "ID|-N",
            default_value = "0",
            allow_hyphen_values = true
        )]
        boot: String,
    },
    /// The changes systemd announced during a boot (state transitions, jobs and their
    /// results, a service's account after a change), as the daemon recorded them as they
    /// happened: one JSON object a line, in the order they came.
    Changes {
        /// Which boot: its id (or a prefix), 0 for the newest, -1 for the one before, ...
        #[arg(
            long,
            value_name = "ID|-N",
            default_value = "0",
            allow_hyphen_values = true
        )]
        boot: String,
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
    let root = args.state_dir.join("journal");
    if args.vacuum_size.is_some() || args.vacuum_time.is_some() {
        let size = match &args.vacuum_size {
            Some(s) => Some(
                parse_size(s)
                    .with_context(|| format!("--vacuum-size {s}: a size like 100M or 1G"))?,
            ),
            None => None,
        };
        let before = match &args.vacuum_time {
            Some(t) => Some(
                std::time::SystemTime::now()
                    - parse_span(t)
                        .with_context(|| format!("--vacuum-time {t}: a span like 2weeks or 12h"))?,
            ),
            None => None,
        };
        let current = journal::current_boot_id().unwrap_or_default();
        for b in journal::vacuum(&root, &current, size, before)? {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"removed": b.boot_id, "bytes": b.bytes})
                );
            } else {
                println!("removed boot {} ({} bytes)", b.boot_id, b.bytes);
            }
        }
    }
    if args.disk_usage {
        let boots = journal::list_boots(&root)?;
        let total: u64 = boots.iter().map(|b| b.bytes).sum();
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "bytes": total,
                    "boots": boots.len(),
                    "path": root.display().to_string(),
                })
            );
            return Ok(());
        }
        println!(
            "Recorded boots take up {:.1}M in {} ({} boots).",
            total as f64 / f64::from(1 << 20),
            root.display(),
            boots.len()
        );
        return Ok(());
    }
    match args.command {
        Some(JournalCommand::List) => list(&args.state_dir, args.json),
        Some(JournalCommand::Systemd { boot }) => {
            let b = journal::find_boot(&root, &boot)?;
            let mut found = None;
            let damage = journal::read_boot(&b, |item| {
                if let Item::Systemd(s) = item {
                    found = Some(s);
                }
            })?;
            for d in damage {
                eprintln!("tracer: journal damage skipped: {d}");
            }
            let Some(s) = found else {
                anyhow::bail!(
                    "boot {} has no systemd account: the daemon records it over D-Bus once boot has finished (was systemd reachable, and did the boot finish while the daemon ran?)",
                    b.boot_id
                );
            };
            writeln!(io::stdout().lock(), "{}", serde_json::to_string_pretty(&s)?)?;
            Ok(())
        }
        Some(JournalCommand::Changes { boot }) => {
            let b = journal::find_boot(&root, &boot)?;
            let mut out = io::BufWriter::new(io::stdout().lock());
            let mut written = Ok(());
            let mut n = 0u64;
            let damage = journal::read_boot(&b, |item| {
                if let Item::SystemdChange(c) = item
                    && written.is_ok()
                {
                    n += 1;
                    written = serde_json::to_writer(&mut out, &c)
                        .map_err(io::Error::from)
                        .and_then(|()| out.write_all(b"\n"));
                }
            })?;
            written?;
            out.flush()?;
            for d in damage {
                eprintln!("tracer: journal damage skipped: {d}");
            }
            if n == 0 {
                eprintln!(
                    "tracer: boot {} has no recorded changes of systemd's (was systemd reachable while the daemon ran?)",
                    b.boot_id
                );
            }
            Ok(())
        }
        None if args.vacuum_size.is_some() || args.vacuum_time.is_some() => Ok(()),
        None => list(&args.state_dir, args.json),
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
