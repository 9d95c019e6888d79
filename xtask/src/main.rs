//! `cargo xtask`: the project's own tasks — set-up, the test suite, running, benchmarks.

mod bench;
mod deb;
mod vm;

use std::{
    fmt::Write as _,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing needs (Debian packages, rust-src, bpf-linker).
    Setup,
    /// Set up, build in release mode, and run `tracer` with ARGS (as root).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, then the whole test suite: format, lints, unit tests, real-kernel tests.
    Test,
    /// Build and install tracer as the early-boot service: /usr/local/bin/tracer,
    /// /etc/systemd/system/tracer.service, /etc/tracer/tracer.toml (if absent), a man page
    /// per subcommand, the Prometheus rules and Grafana dashboard in
    /// /usr/local/share/tracer; enable and start it when systemd runs.
    Install,
    /// Build the Debian package target/deb/tracer_VERSION_amd64.deb (what `install`
    /// installs, at Debian's paths; `apt install ./target/deb/tracer_*.deb` on a host with
    /// no Rust).
    Deb {
        /// The package's version (default: the workspace's); e.g. 0.2.0+test1 for a
        /// package that upgrades the default one.
        #[arg(long)]
        version: Option<String>,
    },
    /// Stop, disable and remove what `install` put in place (the journal in
    /// /var/lib/tracer is kept).
    Uninstall,
    /// Regenerate the README's story section and docs/ from the last `vm test` results.
    Docs,
    /// Real systemd in a VM: build the guest images, boot them with the tracer.
    Vm {
        #[command(subcommand)]
        vm: vm::Vm,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        bench: bench::Bench,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Setup => setup(),
        Task::Run { args } => run(&args),
        Task::Test => test(),
        Task::Install => install(),
        Task::Deb { version } => deb::task(version.as_deref()),
        Task::Uninstall => uninstall(),
        Task::Docs => docs(),
        Task::Vm { vm } => vm::run(vm),
        Task::Bench { bench } => bench::run(bench),
    }
}

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a command in the workspace root, failing on a non-zero exit.
fn sh(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: running {cmd:?}");
    if cmd.get_current_dir().is_none() {
        cmd.current_dir(root());
    }
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn setup() -> anyhow::Result<()> {
    sh(&mut Command::new(root().join("scripts/setup.sh")))
}

/// Builds the release binary and returns its path.
fn build_release() -> anyhow::Result<PathBuf> {
    sh(cargo().args(["build", "--release", "--package", "tracer"]))?;
    Ok(root().join("target/release/tracer"))
}

fn run(args: &[String]) -> anyhow::Result<()> {
    setup()?;
    let tracer = build_release()?;
    let mut cmd = if is_root() {
        Command::new(&tracer)
    } else {
        eprintln!("xtask: tracer loads eBPF programs, which needs root: using sudo");
        let mut c = Command::new("sudo");
        c.arg(&tracer);
        c
    };
    let err = cmd.args(args).exec();
    Err(err).with_context(|| format!("running {}", tracer.display()))
}

/// Clippy and the tests cover the workspace's default members: tracer-ebpf only builds for
/// the BPF target, which tracer's build.rs does. Then the VM stage: real systemd.
fn test() -> anyhow::Result<()> {
    let mut times = Vec::new();
    let mut stage = |name: &str, f: &mut dyn FnMut() -> anyhow::Result<()>| {
        let t = std::time::Instant::now();
        let r = f();
        times.push(format!("{name} {:.1} s", t.elapsed().as_secs_f64()));
        eprintln!("xtask: stage times so far: {}", times.join(", "));
        r
    };
    stage("setup", &mut setup)?;
    stage("fmt", &mut || {
        sh(cargo().args(["fmt", "--all", "--", "--check"]))
    })?;
    stage("clippy", &mut || {
        sh(cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))
    })?;
    if !is_root() {
        eprintln!(
            "xtask: not root: the real-kernel tests will skip (they load eBPF programs); run as root for the whole suite"
        );
    }
    stage("tests", &mut || sh(cargo().args(["test"])))?;
    if is_root() {
        stage("vm", &mut || {
            vm::run(vm::Vm::Test {
                suites: Vec::new(),
                scenarios: Vec::new(),
            })
        })?;
    } else if std::env::var_os("CI").is_some() {
        bail!("the VM stage needs root (mmdebstrap --mode=root); CI must run as root");
    } else {
        eprintln!("xtask: not root: skipping the VM stage (cargo xtask vm test, as root)");
    }
    Ok(())
}

const BIN: &str = "/usr/local/bin/tracer";
const UNIT: &str = "/etc/systemd/system/tracer.service";
const SOCKET_UNIT: &str = "/etc/systemd/system/tracer-metrics.socket";
const CONFIG: &str = "/etc/tracer/tracer.toml";
/// Where journalctl finds catalogs (`journalctl --update-catalog` builds its database).
const CATALOG: &str = "/usr/lib/systemd/catalog/tracer.catalog";
/// Where the Prometheus alert rules (with their promtool tests) and the Grafana dashboard
/// go, beside the man page and completions under /usr/local/share: files for other
/// programs to load, from `tracer/dist/`.
const SHARE: &str = "/usr/local/share/tracer";
const SHARED: &[&str] = &[
    "tracer-alerts.yml",
    "tracer-alerts.test.yml",
    "tracer-dashboard.json",
];
/// Where the man pages go: tracer.1 and one a subcommand (tracer-events.1, tracer-why.1,
/// tracer-journal-list.1, ...), written there by the installed binary from its clap
/// definitions (`tracer manpage --dir`).
const MAN1: &str = "/usr/local/share/man/man1";
/// Generated from the clap definitions by the installed binary.
const EXTRAS: &[(&[&str], &str)] = &[
    (
        &["completions", "bash"],
        "/usr/local/share/bash-completion/completions/tracer",
    ),
    (
        &["completions", "zsh"],
        "/usr/local/share/zsh/site-functions/_tracer",
    ),
    (
        &["completions", "fish"],
        "/usr/local/share/fish/vendor_completions.d/tracer.fish",
    ),
];

fn systemd_runs() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn install() -> anyhow::Result<()> {
    if !is_root() {
        bail!("installing writes to /usr/local/bin and /etc: run as root");
    }
    setup()?;
    let tracer = build_release()?;
    // Replace the binary by rename, so a running daemon keeps its old file.
    let tmp = format!("{BIN}.new");
    std::fs::copy(&tracer, &tmp).with_context(|| format!("copying to {tmp}"))?;
    std::fs::rename(&tmp, BIN)?;
    std::fs::copy(root().join("tracer/dist/tracer.service"), UNIT)?;
    std::fs::copy(
        root().join("tracer/dist/tracer-metrics.socket"),
        SOCKET_UNIT,
    )?;
    std::fs::create_dir_all("/usr/lib/systemd/catalog")?;
    std::fs::copy(root().join("tracer/dist/tracer.catalog"), CATALOG)?;
    update_catalog();
    std::fs::create_dir_all(SHARE).with_context(|| format!("making {SHARE}"))?;
    for file in SHARED {
        let to = Path::new(SHARE).join(file);
        std::fs::copy(root().join("tracer/dist").join(file), &to)
            .with_context(|| format!("copying {file} to {}", to.display()))?;
    }
    if !Path::new(CONFIG).exists() {
        std::fs::create_dir_all("/etc/tracer")?;
        std::fs::copy(root().join("tracer/dist/tracer.toml"), CONFIG)?;
    }
    // Pages of subcommands an older tracer had and this one has not go first.
    remove_man_pages()?;
    std::fs::create_dir_all(MAN1).with_context(|| format!("making {MAN1}"))?;
    let out = Command::new(BIN)
        .args(["manpage", "--dir", MAN1])
        .output()?;
    if !out.status.success() {
        bail!(
            "tracer manpage --dir {MAN1} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pages = String::from_utf8_lossy(&out.stdout).lines().count();
    for (args, path) in EXTRAS {
        let out = Command::new(BIN).args(*args).output()?;
        if !out.status.success() {
            bail!("tracer {} failed", args.join(" "));
        }
        if let Some(dir) = Path::new(path).parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, out.stdout).with_context(|| format!("writing {path}"))?;
    }
    eprintln!(
        "xtask: installed {BIN}, {UNIT}, {SOCKET_UNIT}, {CONFIG}, {CATALOG}, {pages} man pages in {MAN1} (tracer.1, tracer-events.1, ...), shell completions, and in {SHARE}: {}",
        SHARED.join(", ")
    );
    if systemd_runs() {
        sh(Command::new("systemctl").arg("daemon-reload"))?;
        sh(Command::new("systemctl").args(["enable", "tracer.service", "tracer-metrics.socket"]))?;
        sh(Command::new("systemctl").args(["restart", "tracer.service"]))?;
    } else {
        eprintln!("xtask: systemd is not running here: enable tracer.service where it is");
    }
    Ok(())
}

/// Removes tracer.1 and every tracer-*.1 (the subcommands' pages, this version's or an
/// older one's) from [`MAN1`].
fn remove_man_pages() -> anyhow::Result<()> {
    let entries = match std::fs::read_dir(MAN1) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {MAN1}")),
    };
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if is_tracer_page(&name) {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            eprintln!("xtask: removed {}", path.display());
        }
    }
    Ok(())
}

/// tracer(1) or a page of one of its subcommands.
fn is_tracer_page(name: &str) -> bool {
    name == "tracer.1" || (name.starts_with("tracer-") && name.ends_with(".1"))
}

/// Rebuilds journalctl's catalog database, so that `journalctl -x` shows the text of tracer's
/// entries; where there is no journalctl, says so.
fn update_catalog() {
    match Command::new("journalctl").arg("--update-catalog").status() {
        Ok(s) if s.success() => {}
        Ok(s) => eprintln!("xtask: journalctl --update-catalog failed ({s}): run it by hand"),
        Err(e) => eprintln!("xtask: journalctl --update-catalog: {e} (no systemd journal here?)"),
    }
}

fn uninstall() -> anyhow::Result<()> {
    if !is_root() {
        bail!("uninstalling removes files from /usr/local/bin and /etc: run as root");
    }
    if systemd_runs() {
        let _ = sh(Command::new("systemctl").args([
            "disable",
            "--now",
            "tracer.service",
            "tracer-metrics.socket",
        ]));
    }
    let shared: Vec<String> = SHARED.iter().map(|f| format!("{SHARE}/{f}")).collect();
    for f in EXTRAS
        .iter()
        .map(|(_, p)| *p)
        .chain([UNIT, SOCKET_UNIT, CATALOG, BIN])
        .chain(shared.iter().map(String::as_str))
    {
        match std::fs::remove_file(f) {
            Ok(()) => eprintln!("xtask: removed {f}"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {f}")),
        }
    }
    remove_man_pages()?;
    match std::fs::remove_dir(SHARE) {
        Ok(()) => eprintln!("xtask: removed {SHARE}"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        // Files of someone else's left in it: kept, and said.
        Err(e) => eprintln!("xtask: kept {SHARE}: {e}"),
    }
    update_catalog();
    if systemd_runs() {
        sh(Command::new("systemctl").arg("daemon-reload"))?;
    }
    eprintln!("xtask: kept {CONFIG} and the journal in /var/lib/tracer");
    Ok(())
}

const STORY_BEGIN: &str = "<!-- story:begin (cargo xtask docs) -->";
const STORY_END: &str = "<!-- story:end -->";
const BOOT_BEGIN: &str = "<!-- boot:begin (cargo xtask docs) -->";
const BOOT_END: &str = "<!-- boot:end -->";
const EXPLAINS_BEGIN: &str = "<!-- explains:begin (cargo xtask docs) -->";
const EXPLAINS_END: &str = "<!-- explains:end -->";

/// Which line of `tracer why`'s text a row of "What tracer explains" shows.
#[derive(Clone, Copy)]
enum Line {
    /// The explanation (the first line).
    Explanation,
    /// The line that starts with this (`runs:`, `evidence: run 1 was started by`).
    Starting(&'static str),
}

/// The rows of README's "What tracer explains": what systemd or the kernel says, the
/// scenario of tests/vm/units that shows it, and which line of the daemon's answer there.
const EXPLAINS: &[(&str, &str, Line)] = &[
    (
        "ExecStart= not executable (203/EXEC, EACCES)",
        "noexec",
        Line::Explanation,
    ),
    ("ExecStart= missing (ENOENT)", "missing", Line::Explanation),
    ("`#!` interpreter missing", "badinterp", Line::Explanation),
    (
        "not an executable format (ENOEXEC)",
        "badformat",
        Line::Explanation,
    ),
    ("on a noexec mount", "noexecmount", Line::Explanation),
    ("EACCES under `User=`", "permuser", Line::Explanation),
    (
        "EACCES: only a group may execute",
        "permgroup",
        Line::Explanation,
    ),
    (
        "EACCES: a directory not searchable",
        "permdir",
        Line::Explanation,
    ),
    ("EACCES: an ACL entry", "permacl", Line::Explanation),
    (
        "EACCES under `DynamicUser=`",
        "permdynamic",
        Line::Explanation,
    ),
    ("setup failed: 200/CHDIR", "badcwd", Line::Explanation),
    ("setup failed: 217/USER", "baduser", Line::Explanation),
    (
        "`Result=exit-code` of ExecStartPre=",
        "prefail",
        Line::Explanation,
    ),
    (
        "`Result=exit-code` of ExecStartPost=",
        "postfail",
        Line::Explanation,
    ),
    (
        "`Result=exit-code` of ExecStop=",
        "stopfail",
        Line::Explanation,
    ),
    (
        "`Result=exit-code` of ExecStopPost=",
        "stoppostfail",
        Line::Explanation,
    ),
    (
        "ExecReload= failed (`ReloadResult=`), unit running",
        "reloadfail",
        Line::Explanation,
    ),
    (
        "`Result=exit-code`, `RestartPreventExitStatus=`",
        "preventrestart",
        Line::Explanation,
    ),
    ("`Result=signal` (SIGKILL)", "killme", Line::Explanation),
    ("`Result=core-dump` (SIGSEGV)", "segv", Line::Explanation),
    ("`Result=oom-kill`", "oom", Line::Explanation),
    ("`Result=timeout`: start", "timeoutstart", Line::Explanation),
    (
        "`Result=timeout`: start, Type=forking without its PIDFile=",
        "forkpid",
        Line::Explanation,
    ),
    (
        "`Result=timeout`: RuntimeMaxSec=",
        "runtimemax",
        Line::Explanation,
    ),
    ("`Result=timeout`: stop", "stoptimeout", Line::Explanation),
    ("`Result=watchdog`", "watchdog", Line::Explanation),
    (
        "`Result=start-limit-hit`: started too often",
        "startlimit",
        Line::Explanation,
    ),
    ("`Result=resources`", "envfile", Line::Explanation),
    ("`Result=protocol`", "notifyfork", Line::Explanation),
    (
        "success by `SuccessExitStatus=`",
        "successstatus",
        Line::Explanation,
    ),
    ("success by a `-` prefix", "ignorefail", Line::Explanation),
    ("a `Condition*=` not met", "condskip", Line::Explanation),
    ("`ExecCondition=` said no", "execcond", Line::Explanation),
    ("start job ended `dependency`", "depfail", Line::Explanation),
    (
        "automatic restarts, then the start limit",
        "flaky",
        Line::Starting("runs:"),
    ),
    ("`systemctl restart`", "healthy", Line::Starting("runs:")),
    ("started by a timer", "tick", Line::Starting("runs:")),
    (
        "started by a socket",
        "sock",
        Line::Starting("evidence: run 1 was started by"),
    ),
    (
        "started by a path unit",
        "watch",
        Line::Starting("evidence: run 1 was started by"),
    ),
    ("a timer", "tick.timer", Line::Explanation),
    ("a socket", "sock.socket", Line::Explanation),
    ("a path unit", "watch.path", Line::Explanation),
    (
        "a socket with Accept=yes (made by collect.sh)",
        "tracer-vm-echo.socket",
        Line::Explanation,
    ),
    (
        "a mount unit that failed (made by collect.sh)",
        "mnt-tracerbad.mount",
        Line::Explanation,
    ),
];

/// README's "What tracer explains", from the daemon's answers in the bookworm run
/// (`tracer why UNIT` in the guest, tracer/why-daemon-UNIT.txt).
fn explains_table(results: &Path) -> anyhow::Result<String> {
    let mut table = String::from(
        "| What systemd or the kernel says | Scenario | tracer's words (systemd 252, in the VM) |\n|---|---|---|\n",
    );
    for &(what, scenario, line) in EXPLAINS {
        let file = results.join(format!("tracer/why-daemon-{scenario}.txt"));
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("{}: run `cargo xtask vm test` first", file.display()))?;
        let words = match line {
            Line::Explanation => text.lines().next(),
            Line::Starting(prefix) => text.lines().map(str::trim).find(|l| l.starts_with(prefix)),
        }
        .with_context(|| format!("{}: no such line in tracer's answer", file.display()))?;
        let words = words.strip_prefix("evidence: ").unwrap_or(words);
        writeln!(
            table,
            "| {what} | {scenario} | {} |",
            words.replace('|', "\\|")
        )?;
    }
    Ok(table)
}

/// Replaces what lies between two markers of `text` (the markers stay).
fn replace_section(text: &str, begin: &str, end: &str, body: &str) -> anyhow::Result<String> {
    let (Some(a), Some(b)) = (text.find(begin), text.find(end)) else {
        bail!("README.md has no {begin} ... {end} markers");
    };
    Ok(format!("{}{begin}\n{body}{}", &text[..a], &text[b..]))
}

/// Rewrites the README's "Your first service, explained" from the story the VM test ran
/// (target/vm/bookworm/results/story), and docs/boot-trixie.* from the trixie run.
fn docs() -> anyhow::Result<()> {
    let story = root().join("target/vm/bookworm/results/story");
    let mut steps: Vec<_> = std::fs::read_dir(&story)
        .with_context(|| format!("{}: run `cargo xtask vm test` first", story.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    steps.sort();
    let mut section = String::from("```\n");
    for step in &steps {
        let text = std::fs::read_to_string(step)?;
        // Each file: "$ command", its output, "[exit N]".
        for line in text.lines().filter(|l| !l.starts_with("[exit ")) {
            section.push_str(line);
            section.push('\n');
        }
    }
    section.push_str("```\n");
    let readme_path = root().join("README.md");
    let readme = std::fs::read_to_string(&readme_path)?;
    let readme = replace_section(&readme, STORY_BEGIN, STORY_END, &section)?;
    let boot = root().join("target/vm/trixie/results/tracer");
    let read =
        |f: &str| std::fs::read_to_string(boot.join(f)).with_context(|| format!("reading {f}"));
    let blame: String = read("boot-blame.txt")?
        .lines()
        .take(20)
        .map(|l| format!("{l}\n"))
        .collect();
    let boot_section = format!(
        "```\n$ tracer boot --critical\n{}\n$ tracer boot --blame | head -20\n{blame}```\n",
        read("boot-critical.txt")?
    );
    let readme = replace_section(&readme, BOOT_BEGIN, BOOT_END, &boot_section)?;
    let table = explains_table(&root().join("target/vm/bookworm/results"))?;
    let readme = replace_section(&readme, EXPLAINS_BEGIN, EXPLAINS_END, &table)?;
    std::fs::write(&readme_path, readme)?;
    for (from, to) in [
        ("boot.txt", "boot-trixie.txt"),
        ("boot-blame.txt", "boot-trixie-blame.txt"),
        ("boot-critical.txt", "boot-trixie-critical.txt"),
        ("boot.svg", "boot-trixie.svg"),
        ("boot.png", "boot-trixie.png"),
    ] {
        std::fs::copy(boot.join(from), root().join("docs").join(to))
            .with_context(|| format!("copying {from}"))?;
    }
    eprintln!(
        "xtask: README.md story section, its table of what tracer explains and docs/ regenerated from target/vm"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uninstall_removes_tracer_s_pages_only() {
        for ours in ["tracer.1", "tracer-why.1", "tracer-journal-list.1"] {
            assert!(is_tracer_page(ours), "{ours}");
        }
        for theirs in [
            "tracert.1",
            "tracer.1.gz",
            "tracer-why.5",
            "ls.1",
            "tracer-",
        ] {
            assert!(!is_tracer_page(theirs), "{theirs}");
        }
    }
}
