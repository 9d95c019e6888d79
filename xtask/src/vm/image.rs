//! Guest images: Debian with systemd, built once per suite with mmdebstrap and cached,
//! keyed by a hash of this file (the recipe) and the suite. The kernel comes from the same
//! Debian archive; a busybox initramfs loads the virtio and ext4 modules.

use std::{
    fmt::Write as _,
    fs,
    os::unix::fs::{PermissionsExt, symlink},
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, ensure};

use super::{Suite, cache_dir};
use crate::sh;

/// A built image.
pub struct Image {
    pub rootfs: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// Debian packages in the guest beyond minbase (`dbus` is added but for the no-dbus
/// image; systemd-journal-remote brings systemd-journal-upload and -remote, which the
/// journal-remote test runs on loopback; it enables none of its units).
const GUEST_PACKAGES: &str = "systemd,systemd-sysv,udev,kmod,procps,systemd-journal-remote";

impl Suite {
    /// The Debian release the image is made of.
    fn release(self) -> &'static str {
        match self {
            Suite::Bookworm => "bookworm",
            Suite::Trixie | Suite::TrixieNodbus => "trixie",
        }
    }

    /// Whether the image has the dbus package (the system bus).
    fn has_dbus(self) -> bool {
        self != Suite::TrixieNodbus
    }

    /// mmdebstrap's --include list.
    fn packages(self) -> String {
        if self.has_dbus() {
            format!("{GUEST_PACKAGES},dbus")
        } else {
            GUEST_PACKAGES.to_owned()
        }
    }
}

/// Modules the initramfs loads to mount the root disk (dependencies are added).
const INITRD_MODULES: [&str; 5] = [
    "virtio_pci",
    "virtio_blk",
    "ext4",
    "crc32c_generic",
    "crc32c-intel",
];

/// Runs in the mmdebstrap chroot's customize phase: fetches the suite's current kernel
/// package (what linux-image-amd64 depends on) to $2 on the host.
const KERNEL_HOOK: &str = r#"#!/bin/sh
set -eu
R=$1; OUT=$2
pkg=$(chroot "$R" apt-cache depends linux-image-amd64 | sed -n 's/.*Depends: \(linux-image-[0-9].*\)/\1/p' | head -n1)
[ -n "$pkg" ] || { echo "no kernel package behind linux-image-amd64" >&2; exit 1; }
chroot "$R" sh -c "cd /tmp && apt-get download $pkg"
mv "$R"/tmp/"$pkg"_*.deb "$OUT"
"#;

/// The initramfs's /init: load the modules, mount the root disk, hand over to systemd.
const INITRD_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /modules.list); do insmod /m/$m 2>/dev/null; done
i=0; while [ ! -b /dev/vda ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done
mount -t ext4 -o rw /dev/vda /newroot || { echo "initrd: cannot mount /dev/vda"; exec sh; }
mount --move /dev /newroot/dev; umount /proc /sys
exec switch_root /newroot /sbin/init
"#;

/// FNV-1a, 64 bits: a stable hash for cache keys.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn image_key(suite: Suite) -> String {
    let recipe = format!("{}\n{}", include_str!("image.rs"), suite.name());
    format!("{:016x}-{}", fnv1a(recipe.as_bytes()), suite.name())
}

pub fn build_image(suite: Suite) -> anyhow::Result<Image> {
    let dir = cache_dir().join(suite.name());
    let image = Image {
        rootfs: dir.join("rootfs.img"),
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
    };
    let key = image_key(suite);
    let key_file = dir.join("key");
    if fs::read_to_string(&key_file).is_ok_and(|k| k == key)
        && [&image.rootfs, &image.kernel, &image.initrd]
            .iter()
            .all(|p| p.is_file())
    {
        eprintln!("vm: {} image cached ({key})", suite.name());
        return Ok(image);
    }
    let started = Instant::now();
    eprintln!("vm: building the {} image (key {key})", suite.name());
    let work = dir.join("work");
    if work.exists() {
        fs::remove_dir_all(&work).context("removing the old work directory")?;
    }
    fs::create_dir_all(&work)?;
    let rootfs = work.join("rootfs");
    let hook = work.join("kernel-hook.sh");
    fs::write(&hook, KERNEL_HOOK)?;
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755))?;
    let kernel_deb = work.join("kernel.deb");
    let s = suite.release();
    sh(Command::new("mmdebstrap")
        .args(["--mode=root", "--variant=minbase", "--quiet"])
        .arg(format!("--include={}", suite.packages()))
        .arg("--aptopt=Apt::Install-Recommends \"false\"")
        .args([
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
        ])
        .arg(format!(
            "--customize-hook={} \"$1\" {}",
            hook.display(),
            kernel_deb.display()
        ))
        .arg(s)
        .arg(&rootfs)
        .arg(format!("deb http://deb.debian.org/debian {s} main"))
        .arg(format!("deb http://deb.debian.org/debian {s}-updates main"))
        .arg(format!(
            "deb http://deb.debian.org/debian-security {s}-security main"
        )))?;
    let t_debootstrap = started.elapsed();
    // Nothing may have pulled the bus in where the image must lack it (nor left it out
    // where it must be there).
    let bus = ["usr/bin/dbus-daemon", "usr/lib/systemd/system/dbus.service"]
        .map(|p| rootfs.join(p).exists());
    ensure!(
        bus == [suite.has_dbus(); 2],
        "the {} image: dbus-daemon and dbus.service present: {bus:?}, want {}",
        suite.name(),
        suite.has_dbus()
    );

    // The kernel and its modules.
    let kdir = work.join("kernel");
    sh(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&kernel_deb)
        .arg(&kdir))?;
    let modules_root = if kdir.join("usr/lib/modules").is_dir() {
        kdir.join("usr/lib/modules")
    } else {
        kdir.join("lib/modules")
    };
    let kver = fs::read_dir(&modules_root)?
        .flatten()
        .next()
        .context("the kernel package has no modules directory")?
        .file_name()
        .to_string_lossy()
        .into_owned();
    // depmod and modprobe -d want <dir>/lib/modules/<kver>.
    let kbase = work.join("kmods");
    fs::create_dir_all(kbase.join("lib"))?;
    symlink(&modules_root, kbase.join("lib/modules"))?;
    sh(Command::new("depmod").arg("-b").arg(&kbase).arg(&kver))?;
    fs::copy(
        kdir.join(format!("boot/vmlinuz-{kver}")),
        work.join("vmlinuz"),
    )?;

    // The guest gets the module subset it may need, and its own depmod.
    let src = modules_root.join(&kver);
    let dst = rootfs.join("usr/lib/modules").join(&kver);
    fs::create_dir_all(dst.join("kernel"))?;
    for f in [
        "modules.builtin",
        "modules.builtin.modinfo",
        "modules.order",
    ] {
        if src.join(f).exists() {
            fs::copy(src.join(f), dst.join(f))?;
        }
    }
    sh(Command::new("cp")
        .args(["-a", "--parents"])
        .args([
            "drivers/virtio",
            "drivers/block",
            "drivers/char",
            "fs",
            "lib",
            "crypto",
            "arch",
        ])
        .arg(dst.join("kernel"))
        .current_dir(src.join("kernel")))?;
    sh(Command::new("depmod").arg("-b").arg(&rootfs).arg(&kver))?;

    build_initrd(&work, &kbase, &kver)?;

    // Guest configuration.
    fs::write(
        rootfs.join("etc/machine-id"),
        "0123456789abcdef0123456789abcdef\n",
    )?;
    fs::write(
        rootfs.join("etc/hostname"),
        format!("tracer-{}\n", suite.name()),
    )?;
    let masked = rootfs.join("etc/systemd/system");
    for unit in [
        "getty.target",
        "apt-daily.timer",
        "apt-daily-upgrade.timer",
        "e2scrub_all.timer",
    ] {
        let link = masked.join(unit);
        if !link.exists() {
            symlink("/dev/null", link)?;
        }
    }
    let t_config = started.elapsed();

    let img = work.join("rootfs.img");
    sh(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "root", "-d"])
        .arg(&rootfs)
        .arg(&img)
        .arg("1G"))?;
    fs::rename(&img, &image.rootfs)?;
    fs::rename(work.join("vmlinuz"), &image.kernel)?;
    fs::rename(work.join("initrd.img"), &image.initrd)?;
    fs::remove_dir_all(&work)?;
    fs::write(&key_file, &key)?;
    eprintln!(
        "vm: {} image built in {:.1} s (mmdebstrap {:.1} s, kernel+initrd+config {:.1} s, mkfs {:.1} s), kernel {kver}",
        suite.name(),
        started.elapsed().as_secs_f64(),
        t_debootstrap.as_secs_f64(),
        (t_config - t_debootstrap).as_secs_f64(),
        (started.elapsed() - t_config).as_secs_f64(),
    );
    Ok(image)
}

/// A busybox initramfs that insmods the root disk's modules (decompressed: busybox's
/// insmod takes plain .ko only).
fn build_initrd(work: &Path, kbase: &Path, kver: &str) -> anyhow::Result<()> {
    let dir = work.join("initramfs");
    for d in ["bin", "dev", "proc", "sys", "newroot", "m"] {
        fs::create_dir_all(dir.join(d))?;
    }
    fs::copy("/bin/busybox", dir.join("bin/busybox"))
        .context("copying /bin/busybox (package busybox-static)")?;
    let mut list = String::new();
    let mut seen = Vec::new();
    for m in INITRD_MODULES {
        let out = Command::new("modprobe")
            .arg("-d")
            .arg(kbase)
            .args(["-S", kver, "--show-depends", m])
            .output()?;
        if !out.status.success() {
            eprintln!("vm: initrd: no module {m} in {kver} (built in or absent)");
            continue;
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(path) = line.strip_prefix("insmod ") else {
                continue;
            };
            let path = path
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            if seen.contains(&path) {
                continue;
            }
            seen.push(path.clone());
            let file = Path::new(&path)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let (plain, decompress) = match file.rsplit_once('.') {
                Some((stem, "xz")) => (stem.to_owned(), Some("xz")),
                Some((stem, "zst")) => (stem.to_owned(), Some("zstd")),
                _ => (file.clone(), None),
            };
            let target = dir.join("m").join(&plain);
            match decompress {
                Some(tool) => {
                    let out = Command::new(tool).args(["-dc"]).arg(&path).output()?;
                    ensure!(out.status.success(), "{tool} -dc {path} failed");
                    fs::write(&target, out.stdout)?;
                }
                None => {
                    fs::copy(&path, &target)?;
                }
            }
            writeln!(list, "{plain}")?;
        }
    }
    fs::write(dir.join("modules.list"), list)?;
    fs::write(dir.join("init"), INITRD_INIT)?;
    fs::set_permissions(dir.join("init"), fs::Permissions::from_mode(0o755))?;
    let cpio = format!(
        "cd {} && find . | cpio -o -H newc --quiet | gzip -1 > {}",
        dir.display(),
        work.join("initrd.img").display()
    );
    sh(Command::new("sh").args(["-c", &cpio]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_reference_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
