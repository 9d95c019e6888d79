//! `tracer boot`: the boot-order timeline of a recorded boot.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use crate::{
    journal::{self, Item},
    model::{Model, ModelConfig, facts::LiveFacts},
    report::boot::{self, BootReport},
};

#[derive(Debug, Args)]
pub struct BootArgs {
    /// Which recorded boot: its id (or a prefix), 0 for the newest (the current one while
    /// the daemon records it), -1 for the one before, ...
    #[arg(
        long,
        value_name = "ID|-N",
        default_value = "0",
        allow_hyphen_values = true
    )]
    pub boot: String,
    /// Slowest units first.
    #[arg(long)]
    pub blame: bool,
    /// Also write a plot: FILE.svg, or FILE.html (self-contained).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
    /// Use a recording (`tracer events --json` lines) instead of the journal.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Compare with an earlier recorded boot (id, or -1 for the one before this one).
    #[arg(long, value_name = "ID|-N", allow_hyphen_values = true)]
    pub compare: Option<String>,
    /// With --compare: a start duration changed if it moved by more than this fraction ...
    #[arg(long, default_value_t = 0.5, value_name = "RATIO")]
    pub threshold: f64,
    /// ... and by more than this many seconds.
    #[arg(long, default_value_t = 0.25, value_name = "SECONDS")]
    pub threshold_min: f64,
    /// The daemon's state directory.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/tracer")]
    pub state_dir: PathBuf,
}

pub fn run(args: BootArgs) -> anyhow::Result<()> {
    let report = if let Some(path) = &args.events {
        let mut model = Model::new(LiveFacts, ModelConfig::default());
        let first = super::units::apply_recording(path, &mut model)?;
        BootReport::build(&path.display().to_string(), &model, &[], first)
    } else {
        from_journal(&args, &args.boot)?
    };
    if let Some(other) = &args.compare {
        // -1 is relative to the boot shown, not to the newest.
        let other = match (other.parse::<i64>(), args.boot.parse::<i64>()) {
            (Ok(o), Ok(b)) if o < 0 && b <= 0 => (o + b).to_string(),
            _ => other.clone(),
        };
        let before = from_journal(&args, &other)?;
        let changes = boot::compare(
            &before,
            &report,
            args.threshold,
            (args.threshold_min * 1e9) as u64,
        );
        if args.json {
            println!("{}", serde_json::to_string_pretty(&changes)?);
        } else {
            print!("{}", boot::compare_text(&before, &report, &changes));
        }
        return Ok(());
    }
    if let Some(plot) = &args.plot {
        let content = if plot.extension().is_some_and(|e| e == "html") {
            boot::html(&report)
        } else {
            boot::svg(&report)
        };
        std::fs::write(plot, content).with_context(|| format!("writing {}", plot.display()))?;
        eprintln!("tracer: wrote {}", plot.display());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", boot::text(&report, args.blame));
    }
    Ok(())
}

/// A recorded boot from the journal, replayed into its report.
fn from_journal(args: &BootArgs, which: &str) -> anyhow::Result<BootReport> {
    let mut model = Model::new(LiveFacts, ModelConfig::default());
    let mut found = Vec::new();
    let mut first_event = None;
    let b = journal::find_boot(&args.state_dir.join("journal"), which)?;
    let damage = journal::read_boot(&b, |item| match item {
        Item::Cgroup { id, path } => model.know_cgroup(id, &path),
        Item::Process(p) => {
            model.found_at_start(&p);
            found.push(p);
        }
        Item::Event(ev) => {
            first_event.get_or_insert(ev.ts_ns);
            model.apply(&ev);
        }
    })?;
    for d in damage {
        eprintln!("tracer: journal damage skipped: {d}");
    }
    Ok(BootReport::build(&b.boot_id, &model, &found, first_event))
}
