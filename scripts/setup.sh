#!/usr/bin/env bash
# Installs what building and testing tracer needs on a Debian 12 host, idempotently:
# Debian packages (LLVM 22 for bpf-linker; bpftrace, auditd, libbpf-tools and strace for
# the benchmark and its peers; python3 for the daemon tests' raw socket client; qemu
# and mmdebstrap for the VM tests, prometheus for the scrape test and its promtool for the
# metrics and alert-rule checks, dpkg-dev and lintian for `cargo xtask deb` and the VM
# stage's package check), rust-src for the nightly toolchain that builds the eBPF
# crate, bpf-linker built against LLVM 22, and a Python venv with PyPI's opentelemetry-proto
# (the official OTLP definitions) for the daemon tests' OTLP receiver, tests/bin/otlp-receiver.py.
# Quick when everything is already there. Needs root for apt (uses sudo when not root).
set -euo pipefail

BPF_LINKER_VERSION=0.13.0
OTLP_PROTO_VERSION=1.45.2
# Where the daemon tests look for it (tests/daemon.rs, otlp_python).
OTLP_VENV="${TRACER_OTLP_VENV:-$HOME/.cache/tracer/otlp-venv}"
APT_PACKAGES=(llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev bpftrace strace
  mmdebstrap busybox-static cpio e2fsprogs xz-utils zstd kmod prometheus librsvg2-bin
  dpkg-dev lintian auditd libbpf-tools python3)
# From bookworm-backports: the machine's qemu-utils 10 (backports) breaks bookworm's own
# qemu-system-x86 7.2.
BACKPORTS_PACKAGES=(qemu-system-x86)
BACKPORTS_LIST=/etc/apt/sources.list.d/tracer-bookworm-backports.list

log() { printf 'setup: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
missing_bpo=()
for p in "${BACKPORTS_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing_bpo+=("$p")
done
if [ ${#missing[@]} -gt 0 ] || [ ${#missing_bpo[@]} -gt 0 ]; then
  if [ ${#missing_bpo[@]} -gt 0 ] && ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    log "adding bookworm-backports to apt's sources"
    echo 'deb http://deb.debian.org/debian bookworm-backports main' | as_root tee "$BACKPORTS_LIST" >/dev/null
  fi
  as_root apt-get update -q
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
  if [ ${#missing_bpo[@]} -gt 0 ]; then
    log "installing from bookworm-backports: ${missing_bpo[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      -t bookworm-backports "${missing_bpo[@]}"
  fi
fi

if ! rustup toolchain list | grep -q '^nightly'; then
  log "installing the nightly toolchain (builds the eBPF crate)"
  rustup toolchain install nightly --profile minimal
fi
if ! rustup component list --toolchain nightly --installed | grep -q '^rust-src'; then
  log "adding rust-src to the nightly toolchain"
  rustup component add rust-src --toolchain nightly
fi

if ! bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"; then
  log "building bpf-linker $BPF_LINKER_VERSION against LLVM 22 (about a minute)"
  LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker --version "=$BPF_LINKER_VERSION" \
    --no-default-features --features llvm-22 --locked
fi
if ! "$OTLP_VENV/bin/python3" -c 'import opentelemetry.proto, sys; from importlib.metadata import version; sys.exit(version("opentelemetry-proto") != sys.argv[1])' \
    "$OTLP_PROTO_VERSION" 2>/dev/null; then
  log "making a Python venv with opentelemetry-proto $OTLP_PROTO_VERSION in $OTLP_VENV"
  python3 -m venv "$OTLP_VENV"
  "$OTLP_VENV/bin/pip" install -q "opentelemetry-proto==$OTLP_PROTO_VERSION"
fi
log "toolchain ready"
