//! `cargo xtask vm`: real Debian with systemd as PID 1 under qemu, with the freshly built
//! tracer installed as an early-boot service, the scenario units of tests/vm/ enabled, and
//! systemd's own account collected next to the tracer's.
//!
//! Images are built once per suite and cached (see `image`). Each run boots a sparse copy
//! of the cached image with the run's files written into it (debugfs, no mounts), so the
//! base never changes; results come back as a tar written by the guest to a second disk.

mod image;
mod package;

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use clap::{Subcommand, ValueEnum};

use self::image::{Image, build_image};
use crate::{cargo, root, sh};

#[derive(Subcommand)]
pub enum Vm {
    /// Build (or find cached) the guest images.
    Build {
        /// Which images (default: all).
        #[arg(long = "suite", value_enum)]
        suites: Vec<Suite>,
    },
    /// Boot each image with the tracer and the scenarios, then check the results.
    Test {
        /// Which images (default: all).
        #[arg(long = "suite", value_enum)]
        suites: Vec<Suite>,
        /// Scenarios to run (default: all of tests/vm/scenarios.txt, and then the
        /// package flow, as `vm package` runs it).
        scenarios: Vec<String>,
    },
    /// The Debian package on a fresh copy of each image: `dpkg -i`, a reboot, an upgrade
    /// across a storm of execs, `apt-get purge`; then the host-side check.
    Package {
        /// Which images (default: all).
        #[arg(long = "suite", value_enum)]
        suites: Vec<Suite>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Suite {
    /// Debian 12: systemd 252, kernel 6.1.
    Bookworm,
    /// Debian 13: systemd 257, kernel 6.12.
    Trixie,
    /// Debian 13 without the dbus package (as minimal images and many containers are):
    /// pid 1 only over its own socket, /run/systemd/private.
    TrixieNodbus,
}

impl Suite {
    const ALL: [Suite; 3] = [Suite::Bookworm, Suite::Trixie, Suite::TrixieNodbus];

    fn name(self) -> &'static str {
        match self {
            Suite::Bookworm => "bookworm",
            Suite::Trixie => "trixie",
            Suite::TrixieNodbus => "trixie-nodbus",
        }
    }
}

fn or_all(suites: Vec<Suite>) -> Vec<Suite> {
    if suites.is_empty() {
        Suite::ALL.to_vec()
    } else {
        suites
    }
}

pub fn run(vm: Vm) -> anyhow::Result<()> {
    match vm {
        Vm::Build { suites } => {
            for suite in or_all(suites) {
                build_image(suite)?;
            }
            Ok(())
        }
        Vm::Test { suites, scenarios } => test(&or_all(suites), &scenarios),
        Vm::Package { suites } => package::test(&or_all(suites)),
    }
}

/// Where images are cached (kept across runs and clones).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("TRACER_VM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/tracer-vm"))
}

/// Where run results go: target/vm/<suite>/.
pub fn results_dir() -> PathBuf {
    root().join("target/vm")
}

/// Files the run writes into its copy of the image: (guest path, host source) and links.
#[derive(Default)]
struct Inject {
    dirs: Vec<String>,
    files: Vec<(String, PathBuf)>,
    links: Vec<(String, String)>,
}

impl Inject {
    fn enable(&mut self, unit: &str, target: &str) {
        let wants = format!("/etc/systemd/system/{target}.wants");
        if !self.dirs.contains(&wants) {
            self.dirs.push(wants);
        }
        self.links.push((
            format!("/etc/systemd/system/{target}.wants/{unit}"),
            format!("/etc/systemd/system/{unit}"),
        ));
    }

    /// Writes everything with debugfs (modes and owners come from the host files).
    fn apply(&self, image: &Path, work: &Path) -> anyhow::Result<()> {
        let mut cmds = String::new();
        for d in &self.dirs {
            writeln!(cmds, "mkdir {d}")?;
        }
        for (dst, src) in &self.files {
            writeln!(cmds, "write {} {dst}", src.display())?;
        }
        for (link, target) in &self.links {
            writeln!(cmds, "symlink {link} {target}")?;
        }
        let file = work.join("debugfs.cmds");
        fs::write(&file, &cmds)?;
        let out = Command::new("debugfs")
            .arg("-w")
            .arg("-f")
            .arg(&file)
            .arg(image)
            .output()
            .context("running debugfs (package e2fsprogs)")?;
        ensure!(out.status.success(), "debugfs failed: {}", out.status);
        // debugfs reports per-command errors on stderr but exits 0; "mkdir" of an
        // existing directory is the only expected one.
        let errors: Vec<String> = String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| !l.starts_with("debugfs ") && !l.contains("already exists"))
            .map(str::to_owned)
            .collect();
        ensure!(errors.is_empty(), "debugfs: {}", errors.join("; "));
        Ok(())
    }
}

/// The scenarios to run: all of tests/vm/scenarios.txt, or the named ones.
fn scenarios(selected: &[String]) -> anyhow::Result<Vec<String>> {
    let all: Vec<String> = fs::read_to_string(root().join("tests/vm/scenarios.txt"))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    for s in selected {
        ensure!(
            all.contains(s),
            "no scenario {s} (see tests/vm/scenarios.txt)"
        );
    }
    Ok(if selected.is_empty() {
        all
    } else {
        selected.to_vec()
    })
}

fn test(suites: &[Suite], selected: &[String]) -> anyhow::Result<()> {
    let scenarios = scenarios(selected)?;
    let t0 = Instant::now();
    let tracer = crate::build_release()?;
    let t_build = t0.elapsed();
    let mut timings = vec![format!("tracer build {:.1} s", t_build.as_secs_f64())];
    // A whole run has the package flow too (a run of named scenarios leaves it out).
    let debs = if selected.is_empty() {
        let t = Instant::now();
        let debs = package::build()?;
        timings.push(format!("packages {:.1} s", t.elapsed().as_secs_f64()));
        Some(debs)
    } else {
        None
    };
    for &suite in suites {
        let t = Instant::now();
        let image = build_image(suite)?;
        timings.push(format!(
            "{} image {:.1} s",
            suite.name(),
            t.elapsed().as_secs_f64()
        ));
        let t = Instant::now();
        boot(suite, &image, &tracer, &scenarios)?;
        timings.push(format!(
            "{} boot+scenarios {:.1} s",
            suite.name(),
            t.elapsed().as_secs_f64()
        ));
        if let Some(debs) = &debs
            && package::runs_on(suite)
        {
            let t = Instant::now();
            package::boot(suite, &image, debs)?;
            timings.push(format!(
                "{} package boots {:.1} s",
                suite.name(),
                t.elapsed().as_secs_f64()
            ));
        }
    }
    let t = Instant::now();
    let mut check = cargo();
    check
        .args([
            "test",
            "--package",
            "tracer-tests",
            "--test",
            "vm",
            "--",
            "--nocapture",
        ])
        .env("TRACER_VM_RESULTS", results_dir())
        .env(
            "TRACER_VM_SUITES",
            suites
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(","),
        )
        .env("TRACER_VM_SCENARIOS", scenarios.join(","))
        .env(
            "TRACER_VM_PACKAGE_SUITES",
            if debs.is_some() {
                package::suite_list(suites)
            } else {
                String::new()
            },
        );
    let result = sh(&mut check);
    timings.push(format!(
        "host-side checks {:.1} s",
        t.elapsed().as_secs_f64()
    ));
    eprintln!("vm: stage times: {}", timings.join(", "));
    result
}

/// Boots one image with the tracer and the scenarios; leaves the results in
/// target/vm/<suite>/.
fn boot(suite: Suite, image: &Image, tracer: &Path, scenarios: &[String]) -> anyhow::Result<()> {
    let run = results_dir().join(suite.name());
    if run.exists() {
        fs::remove_dir_all(&run)?;
    }
    let work = run.join("work");
    fs::create_dir_all(&work)?;
    let results = run.join("results");
    fs::create_dir_all(&results)?;

    let disk = work.join("disk.img");
    sh(Command::new("cp")
        .arg("--sparse=always")
        .arg(&image.rootfs)
        .arg(&disk))?;

    let vm = root().join("tests/vm");
    let mut inject = Inject::default();
    inject
        .files
        .push(("/usr/local/bin/tracer".into(), tracer.to_owned()));
    inject.files.push((
        "/etc/systemd/system/tracer.service".into(),
        root().join("tracer/dist/tracer.service"),
    ));
    inject.files.push((
        "/etc/systemd/system/tracer-metrics.socket".into(),
        root().join("tracer/dist/tracer-metrics.socket"),
    ));
    inject.dirs.push("/usr/lib/systemd/catalog".into());
    inject.files.push((
        "/usr/lib/systemd/catalog/tracer.catalog".into(),
        root().join("tracer/dist/tracer.catalog"),
    ));
    inject.enable("tracer.service", "sysinit.target");
    inject.enable("tracer-metrics.socket", "sysinit.target");
    inject.dirs.push("/usr/local/lib/tracer-vm".into());
    inject.files.push((
        "/usr/local/lib/tracer-vm/collect.sh".into(),
        vm.join("collect.sh"),
    ));
    inject.files.push((
        "/usr/local/lib/tracer-vm/story.sh".into(),
        vm.join("story.sh"),
    ));
    inject.files.push((
        "/usr/local/lib/tracer-vm/journal-remote.sh".into(),
        vm.join("journal-remote.sh"),
    ));
    let list = work.join("scenarios.txt");
    fs::write(&list, scenarios.join("\n") + "\n")?;
    inject
        .files
        .push(("/usr/local/lib/tracer-vm/scenarios.txt".into(), list));
    inject.files.push((
        "/etc/systemd/system/tracer-vm-collect.service".into(),
        vm.join("collect.service"),
    ));
    inject.enable("tracer-vm-collect.service", "multi-user.target");
    for s in scenarios {
        let unit = format!("{s}.service");
        let file = vm.join("units").join(&unit);
        // A service without [Install] is started only by what triggers it (below).
        let installable = fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?
            .contains("[Install]");
        inject
            .files
            .push((format!("/etc/systemd/system/{unit}"), file));
        if installable {
            inject.enable(&unit, "multi-user.target");
        }
        // A scenario's timer, socket or path unit, when it has one: installed and enabled
        // as those are.
        for (kind, target) in [
            ("timer", "timers.target"),
            ("socket", "sockets.target"),
            ("path", "paths.target"),
        ] {
            let name = format!("{s}.{kind}");
            let trigger = vm.join("units").join(&name);
            if trigger.exists() {
                inject
                    .files
                    .push((format!("/etc/systemd/system/{name}"), trigger));
                inject.enable(&name, target);
            }
        }
    }
    for entry in fs::read_dir(vm.join("bin"))? {
        let entry = entry?;
        inject.files.push((
            format!("/usr/local/bin/{}", entry.file_name().to_string_lossy()),
            entry.path(),
        ));
    }
    inject.dirs.sort();
    inject.dirs.dedup();
    inject.apply(&disk, &work)?;

    boot_once(
        suite,
        image,
        &disk,
        &work,
        &results,
        &run.join("serial.log"),
        "",
    )?;
    // The same disk booted again: the journal must have survived the reboot.
    let second = run.join("results-second");
    fs::create_dir_all(&second)?;
    boot_once(
        suite,
        image,
        &disk,
        &work,
        &second,
        &run.join("serial-second.log"),
        " tracer.vmtest=second",
    )?;
    fs::remove_dir_all(&work)?;
    Ok(())
}

/// One boot of `disk` until the guest powers off, its results untarred into `results`.
fn boot_once(
    suite: Suite,
    image: &Image,
    disk: &Path,
    work: &Path,
    results: &Path,
    serial: &Path,
    cmdline: &str,
) -> anyhow::Result<()> {
    let results_img = work.join("results.img");
    fs::File::create(&results_img)?.set_len(64 << 20)?;
    let accel = if Path::new("/dev/kvm").exists()
        && (Path::new("/sys/module/kvm_intel").exists()
            || Path::new("/sys/module/kvm_amd").exists())
    {
        ["-accel", "kvm", "-cpu", "host"]
    } else {
        ["-accel", "tcg,thread=multi", "-cpu", "max"]
    };
    let started = Instant::now();
    eprintln!("vm: booting {} ({}){cmdline}", suite.name(), accel[1]);
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(accel)
        .args([
            "-m",
            "1G",
            "-smp",
            "2",
            "-nodefaults",
            "-no-reboot",
            "-display",
            "none",
        ])
        .arg("-kernel")
        .arg(&image.kernel)
        .arg("-initrd")
        .arg(&image.initrd)
        .arg("-append")
        .arg(format!(
            "root=/dev/vda rw console=ttyS0 panic=-1 loglevel=4 systemd.show_status=0{cmdline}"
        ))
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=virtio,cache=unsafe",
            disk.display()
        ))
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=virtio",
            results_img.display()
        ))
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .spawn()
        .context("starting qemu-system-x86_64 (scripts/setup.sh installs it)")?;
    let limit = Duration::from_secs(600);
    let status = loop {
        if let Some(status) = qemu.try_wait()? {
            break status;
        }
        if started.elapsed() > limit {
            let _ = qemu.kill();
            let _ = qemu.wait();
            bail!(
                "the {} VM did not power off within {} s; serial log: {}",
                suite.name(),
                limit.as_secs(),
                serial.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!(
        "vm: {} powered off after {:.1} s ({status})",
        suite.name(),
        started.elapsed().as_secs_f64()
    );
    let tar = Command::new("tar")
        .arg("-xf")
        .arg(&results_img)
        .arg("-C")
        .arg(results)
        .output()?;
    if !tar.status.success() || !results.join("complete").exists() {
        let log = fs::read_to_string(serial).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        bail!(
            "the {} VM brought back no complete results (tar: {}); last serial lines:\n{}",
            suite.name(),
            String::from_utf8_lossy(&tar.stderr).trim(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(())
}
