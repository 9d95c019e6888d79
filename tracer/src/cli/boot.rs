//! `tracer boot`: the boot-order timeline of a recorded boot.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use crate::{
    journal::{self, Item},
    model::{Model, ModelConfig, facts::LiveFacts},
    replay,
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
    /// The daemon's state directory.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/tracer")]
    pub state_dir: PathBuf,
}

pub fn run(args: BootArgs) -> anyhow::Result<()> {
    let mut model = Model::new(LiveFacts, ModelConfig::default());
    let mut found = Vec::new();
    let mut first_event = None;
    let boot_id = if let Some(path) = &args.events {
        let (events, _) = replay::read_file(path)
            .with_context(|| format!("reading the recording {}", path.display()))?;
        first_event = events.first().map(|e| e.ts_ns);
        for ev in &events {
            model.apply(ev);
        }
        path.display().to_string()
    } else {
        let b = journal::find_boot(&args.state_dir.join("journal"), &args.boot)?;
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
        b.boot_id
    };
    let report = BootReport::build(&boot_id, &model, &found, first_event);
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
