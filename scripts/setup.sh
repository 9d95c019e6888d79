#!/usr/bin/env bash
# Installs what building and testing tracer needs on a Debian 12 host, idempotently:
# Debian packages (LLVM 22 for bpf-linker, bpftrace for the benchmark), rust-src for the
# nightly toolchain that builds the eBPF crate, and bpf-linker built against LLVM 22.
# Quick when everything is already there. Needs root for apt (uses sudo when not root).
set -euo pipefail

BPF_LINKER_VERSION=0.13.0
APT_PACKAGES=(llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev bpftrace)

log() { printf 'setup: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
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
log "toolchain ready"
