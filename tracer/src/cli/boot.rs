//! `tracer boot`: the boot-order timeline of a recorded boot.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use clap::Args;

use crate::{
    enrich::Resolver,
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
    /// The chain of units that decided when the default target was reached (systemd's
    /// After= dependencies, as systemd-analyze critical-chain), with the process that held
    /// each link up.
    #[arg(long, conflicts_with = "blame")]
    pub critical: bool,
    /// Also write a plot: FILE.svg, or FILE.html (self-contained).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
    /// Use a recording (`tracer events --json` lines) instead of the journal.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// With --events: systemd's account of the same boot (`tracer journal systemd`).
    #[arg(long, value_name = "FILE", requires = "events")]
    pub systemd: Option<PathBuf>,
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

pub async fn run(args: BootArgs) -> anyhow::Result<()> {
    let report = if let Some(path) = &args.events {
        let mut model = Model::new(LiveFacts, ModelConfig::default());
        let first = super::units::apply_recording(path, &mut model)?;
        let sd: Option<crate::systemd::Snapshot> = match &args.systemd {
            Some(f) => Some(
                std::fs::read(f)
                    .map_err(anyhow::Error::from)
                    .and_then(|b| Ok(serde_json::from_slice(&b)?))
                    .with_context(|| {
                        format!(
                            "reading systemd's account {} (made by `tracer journal systemd`)",
                            f.display()
                        )
                    })?,
            ),
            None => None,
        };
        BootReport::build(&path.display().to_string(), &model, &[], first, sd.as_ref())
    } else {
        from_journal(&args, &args.boot).await?
    };
    if let Some(other) = &args.compare {
        // -1 is relative to the boot shown, not to the newest.
        let other = match (other.parse::<i64>(), args.boot.parse::<i64>()) {
            (Ok(o), Ok(b)) if o < 0 && b <= 0 => (o + b).to_string(),
            _ => other.clone(),
        };
        let before = from_journal(&args, &other).await?;
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
    if args.critical && report.critical_chain.is_empty() {
        bail!(
            "--critical needs systemd's After= dependencies and timestamps, and this boot has none: the daemon records them over D-Bus once boot has finished (for the running boot, tracer asks systemd itself); with --events, give --systemd FILE"
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if args.critical {
        print!("{}", boot::critical_text(&report));
    } else {
        print!("{}", boot::text(&report, args.blame));
    }
    Ok(())
}

/// A recorded boot replayed: the model of its events, what ran at its start, and
/// systemd's account of it as recorded (the boot's, and each change after).
pub struct Replayed {
    pub boot: journal::BootInfo,
    pub model: Model<LiveFacts>,
    pub found: Vec<crate::procfs::ProcInfo>,
    pub first_event: Option<u64>,
    /// The account recorded when boot finished.
    pub booted: Option<crate::systemd::Snapshot>,
    /// That account with systemd's recorded changes folded in.
    pub account: crate::systemd::changes::Account,
}

/// Replays the recorded boot `which` (see [`BootArgs::boot`]) of the journal under
/// `state_dir`; damage found is said on stderr and skipped.
pub fn replay_boot(
    state_dir: &std::path::Path,
    which: &str,
    config: ModelConfig,
) -> anyhow::Result<Replayed> {
    let mut model = Model::new(LiveFacts, config);
    let mut cgroups = Resolver::default();
    let mut found = Vec::new();
    let mut first_event = None;
    let mut booted = None;
    let mut account = crate::systemd::changes::Account::default();
    let b = journal::find_boot(&state_dir.join("journal"), which)?;
    let damage = journal::read_boot(&b, |item| match item {
        Item::Cgroup { id, path } => cgroups.insert(id, &path),
        Item::Process { info: p, .. } => {
            model.found_at_start(&p);
            found.push(p);
        }
        Item::Event(ev) => {
            first_event.get_or_insert(ev.ts_ns);
            model.apply(&cgroups.enrich(ev));
        }
        Item::Systemd(s) => {
            account.take_snapshot(&s);
            booted = Some(*s);
        }
        Item::SystemdChange(c) => account.apply(&c),
    })?;
    for d in damage {
        eprintln!("tracer: journal damage skipped: {d}");
    }
    Ok(Replayed {
        boot: b,
        model,
        found,
        first_event,
        booted,
        account,
    })
}

/// A recorded boot from the journal, replayed into its report, with systemd's account:
/// the one recorded when that boot finished, or for the running boot, systemd's now.
async fn from_journal(args: &BootArgs, which: &str) -> anyhow::Result<BootReport> {
    let Replayed {
        boot: b,
        model,
        found,
        first_event,
        booted: mut systemd,
        ..
    } = replay_boot(&args.state_dir, which, ModelConfig::default())?;
    let running_boot = journal::current_boot_id().is_ok_and(|id| id == b.boot_id);
    if running_boot && systemd.as_ref().is_none_or(|s| !s.boot.finished()) {
        // Still booting when the daemon last looked (or it never could): ask now.
        if let Some(now) = crate::systemd::try_snapshot(Duration::from_secs(30)).await {
            systemd = Some(now);
        }
    }
    if systemd.is_none() {
        eprintln!(
            "tracer: no systemd account of this boot (D-Bus): active times are inferred, no milestones or critical chain"
        );
    }
    Ok(BootReport::build(
        &b.boot_id,
        &model,
        &found,
        first_event,
        systemd.as_ref(),
    ))
}
