//! `cargo xtask deb`: the Debian package, built with dpkg-deb from a staged tree.
//!
//! dpkg-deb rather than cargo-deb: it is already on every Debian host (dpkg), adds no
//! dependency to the workspace, and leaves the maintainer scripts (tracer/dist/deb/) and
//! every path entirely ours. The package holds what `cargo xtask install` installs, at
//! Debian's paths: /usr/bin/tracer, the units in /usr/lib/systemd/system (ExecStart= and
//! ExecStopPost= pointed at /usr/bin/tracer), /etc/tracer/tracer.toml as a conffile, the
//! man pages and completions the binary generates, the journal catalog, and the Prometheus
//! rules and Grafana dashboard in /usr/share/tracer.

use std::{
    fmt::Write as _,
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail, ensure};

use crate::{root, sh};

/// The binary package's name.
pub const PACKAGE: &str = "tracer";
/// Who the package's control file and changelog name (DEBFULLNAME and DEBEMAIL override).
const MAINTAINER_NAME: &str = "Seed 8d77dba8 maintainers";
const MAINTAINER_EMAIL: &str = "maintainers@users.noreply.r-seed-8d77dba8.example";

/// Files of tracer/dist/ for other programs to load, in /usr/share/tracer.
const SHARED: &[&str] = &[
    "tracer-alerts.yml",
    "tracer-alerts.test.yml",
    "tracer-dashboard.json",
];
/// Completions the binary prints (`tracer completions SHELL`) and where Debian's shells
/// look for packaged ones.
const COMPLETIONS: &[(&str, &str)] = &[
    ("bash", "usr/share/bash-completion/completions/tracer"),
    ("zsh", "usr/share/zsh/vendor-completions/_tracer"),
    ("fish", "usr/share/fish/vendor_completions.d/tracer.fish"),
];
/// Where the units go, and the path their Exec*= lines name.
const UNIT_DIR: &str = "usr/lib/systemd/system";
const BIN: &str = "/usr/bin/tracer";
/// The path tracer/dist/tracer.service names (`cargo xtask install`'s).
const DIST_BIN: &str = "/usr/local/bin/tracer";

/// Builds target/deb/tracer_VERSION_amd64.deb (VERSION: `version`, else the workspace's)
/// from the release binary, and returns its path.
pub fn build(version: Option<&str>) -> anyhow::Result<PathBuf> {
    let tracer = crate::build_release()?;
    build_from(&tracer, version)
}

/// The package of the release binary `tracer` (built already), as [`build`] makes it.
pub fn build_from(tracer: &Path, version: Option<&str>) -> anyhow::Result<PathBuf> {
    let version = version.unwrap_or(env!("CARGO_PKG_VERSION"));
    check_version(version)?;
    let out = root().join("target/deb");
    let stage = out.join(format!("{PACKAGE}_{version}_amd64"));
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }
    let dist = root().join("tracer/dist");

    // The binary, stripped as dh_strip does (the eBPF object it embeds is data, kept).
    let bin = stage.join(BIN.trim_start_matches('/'));
    mkdir(bin.parent().unwrap())?;
    sh(Command::new("strip")
        .args([
            "--strip-unneeded",
            "--remove-section=.comment",
            "--remove-section=.note",
            "-o",
        ])
        .arg(&bin)
        .arg(tracer))?;
    set_mode(&bin, 0o755)?;

    let units = stage.join(UNIT_DIR);
    mkdir(&units)?;
    let service = fs::read_to_string(dist.join("tracer.service"))?;
    write(&units.join("tracer.service"), &packaged_unit(&service)?)?;
    copy(
        &dist.join("tracer-metrics.socket"),
        &units.join("tracer-metrics.socket"),
    )?;
    let catalog = stage.join("usr/lib/systemd/catalog");
    mkdir(&catalog)?;
    copy(
        &dist.join("tracer.catalog"),
        &catalog.join("tracer.catalog"),
    )?;

    let etc = stage.join("etc/tracer");
    mkdir(&etc)?;
    copy(&dist.join("tracer.toml"), &etc.join("tracer.toml"))?;

    let share = stage.join("usr/share/tracer");
    mkdir(&share)?;
    for f in SHARED {
        copy(&dist.join(f), &share.join(f))?;
    }

    // Man pages, one a subcommand, compressed as Debian wants them.
    let man1 = stage.join("usr/share/man/man1");
    mkdir(&man1)?;
    let pages = generated(tracer, &["manpage", "--dir"], Some(&man1))?;
    let mut count = 0;
    for page in String::from_utf8_lossy(&pages).lines() {
        gzip(Path::new(page))?;
        count += 1;
    }
    ensure!(
        count > 1,
        "tracer manpage wrote {count} pages; expected tracer.1 and one a subcommand"
    );
    for (shell, path) in COMPLETIONS {
        let text = generated(tracer, &["completions", shell], None)?;
        let to = stage.join(path);
        mkdir(to.parent().unwrap())?;
        fs::write(&to, text).with_context(|| format!("writing {}", to.display()))?;
        set_mode(&to, 0o644)?;
    }

    let doc = stage.join("usr/share/doc").join(PACKAGE);
    mkdir(&doc.join("examples"))?;
    copy(
        &dist.join("tracer-otlp.conf"),
        &doc.join("examples/tracer-otlp.conf"),
    )?;
    write(&doc.join("copyright"), COPYRIGHT)?;
    // A native package (no Debian revision, built from the upstream tree): changelog.gz.
    let changelog = doc.join("changelog");
    write(&changelog, &changelog_text(version)?)?;
    gzip(&changelog)?;

    // The control area.
    let control = stage.join("DEBIAN");
    mkdir(&control)?;
    for script in ["postinst", "prerm", "postrm"] {
        let to = control.join(script);
        fs::copy(dist.join("deb").join(script), &to)
            .with_context(|| format!("copying tracer/dist/deb/{script}"))?;
        set_mode(&to, 0o755)?;
    }
    write(&control.join("conffiles"), "/etc/tracer/tracer.toml\n")?;
    write(&control.join("md5sums"), &md5sums(&stage)?)?;
    let depends = shlib_depends(&bin, &out)?;
    write(
        &control.join("control"),
        &control_text(version, &depends, installed_size(&stage)?),
    )?;

    dir_modes(&stage)?;
    let deb = out.join(format!("{PACKAGE}_{version}_amd64.deb"));
    let mut dpkg_deb = Command::new("dpkg-deb");
    dpkg_deb
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&stage)
        .arg(&deb);
    if let Some(epoch) = commit_time() {
        // dpkg-deb clamps the files' times to it: the same commit, the same archive.
        dpkg_deb.env("SOURCE_DATE_EPOCH", epoch.to_string());
    }
    sh(&mut dpkg_deb)?;
    eprintln!(
        "xtask: built {} ({count} man pages; Depends: {depends})",
        deb.display()
    );
    Ok(deb)
}

/// `cargo xtask deb`: set up (as `install` does), the package, then what lintian says of it (when it is installed;
/// tags are not an error here: tests/vm.rs's package check holds the package to the
/// tags it explains).
pub fn task(version: Option<&str>) -> anyhow::Result<()> {
    crate::setup()?;
    let deb = build(version)?;
    match lintian(&deb) {
        Ok(tags) if tags.trim().is_empty() => eprintln!("xtask: lintian: no tags"),
        Ok(tags) => eprintln!("xtask: lintian:\n{}", tags.trim_end()),
        Err(e) => eprintln!("xtask: {e:#}"),
    }
    Ok(())
}

/// lintian's tags for `deb`, info and pedantic ones included, one a line.
pub fn lintian(deb: &Path) -> anyhow::Result<String> {
    let out = Command::new("lintian")
        .args(["-I", "--pedantic", "--tag-display-limit", "0"])
        .arg(deb)
        .output()
        .context("running lintian (apt-get install lintian; scripts/setup.sh installs it)")?;
    // Exit 1 means tags of error or warning level were found; 2 and up, lintian failed.
    ensure!(
        out.status.code().is_some_and(|c| c <= 1),
        "lintian failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Debian's version syntax, loosely: [epoch:]upstream[-revision], starting with a digit.
fn check_version(v: &str) -> anyhow::Result<()> {
    let upstream = v.split_once(':').map_or(v, |(_, rest)| rest);
    ensure!(
        upstream.starts_with(|c: char| c.is_ascii_digit())
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".+-~:".contains(c)),
        "{v:?} is not a Debian version: use digits, letters and . + - ~ (e.g. 0.2.0+test1)"
    );
    Ok(())
}

/// tracer/dist/tracer.service with its Exec*= lines naming /usr/bin/tracer.
fn packaged_unit(service: &str) -> anyhow::Result<String> {
    let mut replaced = 0;
    let mut unit = String::new();
    for line in service.lines() {
        if line.starts_with("Exec") && line.contains(DIST_BIN) {
            unit.push_str(&line.replace(DIST_BIN, BIN));
            replaced += 1;
        } else {
            ensure!(
                line.starts_with('#') || !line.contains("/usr/local"),
                "tracer.service names /usr/local outside an Exec*= line ({line:?}): teach `cargo xtask deb` where that goes in the package"
            );
            unit.push_str(line);
        }
        unit.push('\n');
    }
    ensure!(
        replaced > 0,
        "tracer/dist/tracer.service has no Exec*= line naming {DIST_BIN}: update packaged_unit() in xtask/src/deb.rs"
    );
    Ok(unit)
}

/// What the release binary prints for `args` (with `dir` appended, when given).
fn generated(tracer: &Path, args: &[&str], dir: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    let mut cmd = Command::new(tracer);
    cmd.args(args);
    if let Some(d) = dir {
        cmd.arg(d);
    }
    let out = cmd
        .output()
        .with_context(|| format!("running {}", tracer.display()))?;
    if !out.status.success() {
        bail!(
            "tracer {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// The package's Depends: the shared libraries the binary links, as dpkg-shlibdeps
/// resolves them on this host (it wants a debian/control beside it).
fn shlib_depends(bin: &Path, out: &Path) -> anyhow::Result<String> {
    let dir = out.join("shlibdeps");
    mkdir(&dir.join("debian"))?;
    write(
        &dir.join("debian/control"),
        &format!("Source: {PACKAGE}\n\nPackage: {PACKAGE}\nArchitecture: amd64\n"),
    )?;
    let run = Command::new("dpkg-shlibdeps")
        .args(["-O", "-e"])
        .arg(bin)
        .current_dir(&dir)
        .output()
        .context("running dpkg-shlibdeps (package dpkg-dev; scripts/setup.sh installs it)")?;
    ensure!(
        run.status.success(),
        "dpkg-shlibdeps failed: {}",
        String::from_utf8_lossy(&run.stderr).trim()
    );
    let text = String::from_utf8_lossy(&run.stdout);
    let depends = text
        .lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .with_context(|| format!("dpkg-shlibdeps printed no shlibs:Depends: {text}"))?
        .to_owned();
    fs::remove_dir_all(&dir)?;
    Ok(depends)
}

fn control_text(version: &str, depends: &str, size_kib: u64) -> String {
    let mut c = String::new();
    let (name, email) = maintainer();
    for (field, value) in [
        ("Package", PACKAGE),
        ("Version", version),
        ("Architecture", "amd64"),
        ("Maintainer", &format!("{name} <{email}>")),
        ("Installed-Size", &size_kib.to_string()),
        ("Depends", depends),
        ("Recommends", "systemd"),
        ("Section", "admin"),
        ("Priority", "optional"),
    ] {
        let _ = writeln!(c, "{field}: {value}");
    }
    c.push_str(
        "Description: eBPF process and service tracer for systemd hosts
 tracer records every exec, exit, fork, signal, OOM kill and cgroup change of
 the host from the kernel, ties each process to its systemd unit, and answers
 why a service failed, restarted or was slow to start.
 .
 The package runs tracer.service from early boot, before sysinit.target, so
 that the boot itself is recorded, into a journal in /var/lib/tracer. Its eBPF
 programs stay pinned across restarts and upgrades of the package, so that
 none of those loses an event. /metrics is served on tracer-metrics.socket.
",
    );
    c
}

fn maintainer() -> (String, String) {
    let var = |name: &str, default: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_owned())
    };
    (
        var("DEBFULLNAME", MAINTAINER_NAME),
        var("DEBEMAIL", MAINTAINER_EMAIL),
    )
}

/// The HEAD commit's time, seconds since the epoch (none outside a git checkout).
fn commit_time() -> Option<u64> {
    let out = Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(root())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// A one-entry Debian changelog for this build.
fn changelog_text(version: &str) -> anyhow::Result<String> {
    let mut date = Command::new("date");
    date.arg("-R");
    if let Some(t) = commit_time() {
        date.arg("-d").arg(format!("@{t}"));
    }
    let out = date.env("LC_ALL", "C").output()?;
    ensure!(out.status.success(), "date -R failed");
    let (name, email) = maintainer();
    Ok(format!(
        "{PACKAGE} ({version}) unstable; urgency=medium\n\n  * Built by cargo xtask deb from the tracer workspace.\n\n -- {name} <{email}>  {}\n",
        String::from_utf8_lossy(&out.stdout).trim()
    ))
}

const COPYRIGHT: &str = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: tracer

Files: *
Copyright: 2026 the tracer developers
License: MIT or Apache-2.0

License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 is in
 /usr/share/common-licenses/Apache-2.0.

License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a copy
 of this software and associated documentation files (the \"Software\"), to deal
 in the Software without restriction, including without limitation the rights
 to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
 copies of the Software, and to permit persons to whom the Software is
 furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in
 all copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
 OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
 SOFTWARE.
";

/// Every regular file under `stage` but DEBIAN/ and the conffiles, for DEBIAN/md5sums.
fn md5sums(stage: &Path) -> anyhow::Result<String> {
    let mut files = Vec::new();
    walk(stage, &mut files)?;
    let rel: Vec<String> = files
        .iter()
        .filter_map(|f| f.strip_prefix(stage).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| !p.starts_with("DEBIAN/") && !p.starts_with("etc/"))
        .collect();
    let out = Command::new("md5sum")
        .args(&rel)
        .current_dir(stage)
        .output()
        .context("running md5sum")?;
    ensure!(out.status.success(), "md5sum failed");
    Ok(String::from_utf8(out.stdout)?)
}

/// Installed-Size: KiB, each file rounded up, as dpkg-gencontrol counts.
fn installed_size(stage: &Path) -> anyhow::Result<u64> {
    let mut files = Vec::new();
    walk(stage, &mut files)?;
    let mut kib = 0;
    for f in files {
        if !f.strip_prefix(stage)?.starts_with("DEBIAN") {
            kib += fs::metadata(&f)?.len().div_ceil(1024);
        }
    }
    Ok(kib)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, files)?;
        } else {
            files.push(p);
        }
    }
    Ok(())
}

fn mkdir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("making {}", dir.display()))
}

/// Every directory under `dir` (and itself) 0755, whatever the umask made them.
fn dir_modes(dir: &Path) -> anyhow::Result<()> {
    set_mode(dir, 0o755)?;
    for e in fs::read_dir(dir)?.flatten() {
        if e.file_type()?.is_dir() {
            dir_modes(&e.path())?;
        }
    }
    Ok(())
}

fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    set_mode(to, 0o644)
}

fn write(to: &Path, text: &str) -> anyhow::Result<()> {
    fs::write(to, text).with_context(|| format!("writing {}", to.display()))?;
    set_mode(to, 0o644)
}

fn set_mode(p: &Path, mode: u32) -> anyhow::Result<()> {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", p.display()))
}

/// gzip -9n in place (FILE becomes FILE.gz, no name or time stamped in it).
fn gzip(file: &Path) -> anyhow::Result<()> {
    set_mode(file, 0o644)?;
    sh(Command::new("gzip").args(["-9nf"]).arg(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packaged_unit_runs_usr_bin_tracer() {
        let dist = fs::read_to_string(root().join("tracer/dist/tracer.service")).unwrap();
        let unit = packaged_unit(&dist).unwrap();
        let exec: Vec<&str> = unit.lines().filter(|l| l.starts_with("Exec")).collect();
        assert!(exec.len() >= 2, "{exec:?}");
        for l in exec {
            assert!(l.contains("=/usr/bin/tracer "), "{l}");
        }
        assert_eq!(unit.lines().count(), dist.lines().count());
        assert!(packaged_unit("[Service]\nExecStart=/opt/tracer daemon\n").is_err());
        assert!(
            packaged_unit("ExecStart=/usr/local/bin/tracer\nBindPaths=/usr/local/x\n").is_err()
        );
    }

    #[test]
    fn versions_are_debian_s() {
        for ok in ["0.1.0", "0.2.0+test1", "1:2.0~rc1-3"] {
            check_version(ok).unwrap();
        }
        for bad in ["", "v0.1", "0.1 0", "0.1_2"] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
    }
}
