//! `cargo xtask`: the project's own tasks — set-up, the test suite, running, benchmarks.

mod bench;
mod vm;

use std::{
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
/// the BPF target, which tracer's build.rs does.
fn test() -> anyhow::Result<()> {
    setup()?;
    sh(cargo().args(["fmt", "--all", "--", "--check"]))?;
    sh(cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    if !is_root() {
        eprintln!(
            "xtask: not root: the real-kernel tests will skip (they load eBPF programs); run as root for the whole suite"
        );
    }
    sh(cargo().args(["test"]))
}
