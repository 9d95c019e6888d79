//! The package flow of the VM stage: the Debian package on a fresh copy of a cached base
//! image, with no Rust and no tracer in it. Boot 1 installs tracer_A.deb with dpkg; boot 2
//! finds the daemon recording the boot from its start, upgrades to tracer_B.deb (the same
//! build, a newer version) while a storm of execs runs, then purges the package. The guest
//! side is tests/vm/package.sh; tests/vm.rs (`check_package`) judges the results in
//! target/vm/<suite>-package/, and lintian's tags in target/vm/package/lintian.txt.

use std::{fs, path::PathBuf, process::Command, time::Instant};

use super::{Inject, Suite, boot_once, image::Image, results_dir};
use crate::{deb, root, sh};

/// The two packages an upgrade goes between.
pub struct Debs {
    pub a: PathBuf,
    pub b: PathBuf,
}

/// The version tracer_B.deb gets: after the workspace's in dpkg's order.
pub fn newer_version() -> String {
    format!("{}+vmtest1", env!("CARGO_PKG_VERSION"))
}

/// Builds both packages, and writes lintian's tags of the first to
/// target/vm/package/lintian.txt (the two differ in their version alone).
pub fn build() -> anyhow::Result<Debs> {
    let tracer = crate::build_release()?;
    let a = deb::build_from(&tracer, None)?;
    let b = deb::build_from(&tracer, Some(&newer_version()))?;
    let dir = results_dir().join("package");
    fs::create_dir_all(&dir)?;
    let t = Instant::now();
    let tags = deb::lintian(&a)?;
    fs::write(dir.join("lintian.txt"), &tags)?;
    eprintln!(
        "vm: lintian on {} took {:.1} s: {} tags",
        a.display(),
        t.elapsed().as_secs_f64(),
        tags.lines().count()
    );
    Ok(Debs { a, b })
}

/// Where one suite's package flow leaves its results.
pub fn run_dir(suite: Suite) -> PathBuf {
    results_dir().join(format!("{}-package", suite.name()))
}

/// The two boots of the package flow on a fresh copy of `image`.
pub fn boot(suite: Suite, image: &Image, debs: &Debs) -> anyhow::Result<()> {
    let run = run_dir(suite);
    if run.exists() {
        fs::remove_dir_all(&run)?;
    }
    let work = run.join("work");
    fs::create_dir_all(&work)?;
    let disk = work.join("disk.img");
    sh(Command::new("cp")
        .arg("--sparse=always")
        .arg(&image.rootfs)
        .arg(&disk))?;

    let vm = root().join("tests/vm");
    let mut inject = Inject::default();
    inject.dirs.push("/var/tmp/tracer-vm-package".into());
    for (name, deb) in [("tracer_A.deb", &debs.a), ("tracer_B.deb", &debs.b)] {
        inject
            .files
            .push((format!("/var/tmp/tracer-vm-package/{name}"), deb.clone()));
    }
    inject.dirs.push("/usr/local/lib/tracer-vm".into());
    inject.files.push((
        "/usr/local/lib/tracer-vm/package.sh".into(),
        vm.join("package.sh"),
    ));
    inject.files.push((
        "/etc/systemd/system/tracer-vm-package.service".into(),
        vm.join("package.service"),
    ));
    inject.enable("tracer-vm-package.service", "multi-user.target");
    inject.apply(&disk, &work)?;

    for phase in ["install", "upgrade"] {
        let results = run.join(format!("results-{phase}"));
        fs::create_dir_all(&results)?;
        boot_once(
            suite,
            image,
            &disk,
            &work,
            &results,
            &run.join(format!("serial-{phase}.log")),
            &format!(" tracer.vmpkg={phase}"),
        )?;
    }
    fs::remove_dir_all(&work)?;
    Ok(())
}

/// `cargo xtask vm package`: the package flow alone, then its host-side check.
pub fn test(suites: &[Suite]) -> anyhow::Result<()> {
    let t = Instant::now();
    let debs = build()?;
    let mut timings = vec![format!("packages {:.1} s", t.elapsed().as_secs_f64())];
    for &suite in suites {
        let image = super::image::build_image(suite)?;
        let t = Instant::now();
        boot(suite, &image, &debs)?;
        timings.push(format!(
            "{} package boots {:.1} s",
            suite.name(),
            t.elapsed().as_secs_f64()
        ));
    }
    let result = check(suites, Some("package"));
    eprintln!("vm: stage times: {}", timings.join(", "));
    result
}

/// The host-side check of tests/vm.rs for `suites`' package flows (`filter`: the test
/// names to run, all of vm.rs when none).
fn check(suites: &[Suite], filter: Option<&str>) -> anyhow::Result<()> {
    let mut cmd = crate::cargo();
    cmd.args(["test", "--package", "tracer-tests", "--test", "vm", "--"]);
    if let Some(f) = filter {
        cmd.arg(f);
    }
    cmd.arg("--nocapture")
        .env("TRACER_VM_RESULTS", results_dir())
        .env("TRACER_VM_PACKAGE_SUITES", suite_list(suites));
    sh(&mut cmd)
}

/// "bookworm,trixie", as the checks read TRACER_VM_*_SUITES.
pub fn suite_list(suites: &[Suite]) -> String {
    suites
        .iter()
        .filter(|s| runs_on(**s))
        .map(|s| s.name())
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether a whole run takes the package flow on `suite`: Debian 12 and 13 as they come.
/// The no-dbus image is Debian 13 less one package, which neither dpkg nor the
/// maintainer scripts touch; its flow would add about 4 min to CI for nothing new.
pub fn runs_on(suite: Suite) -> bool {
    suite != Suite::TrixieNodbus
}
