#!/usr/bin/env bash
# Idempotent machine set-up for telegen: Debian packages, kernel headers, tracefs, dockerd, venv.
# Called by `make run`, `make test` and `make setup`; safe to run again at any time.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'setup: %s\n' "$*" >&2; }

PACKAGES=(
  python3-bpfcc bpfcc-tools linux-headers-amd64 docker.io busybox-static
  prometheus nginx-light wrk hey nftables qemu-system-x86 linux-image-amd64
  iproute2 debootstrap curl procps kmod cpio bpftool gcc libc6-dev
)

if [ "$(id -u)" != 0 ]; then
  log "must run as root (BPF, Docker and apt need it)"; exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 update -q
  apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${missing[@]}"
else
  log "Debian packages present"
fi

# BCC compiles against the running kernel's headers. Kernels without packaged headers
# (as here) get the newest Debian headers linked in; tracepoint programs only need the
# generic definitions and telegen reads struct offsets from BTF, not from these headers.
kdir="/lib/modules/$(uname -r)"
if [ ! -e "$kdir/build" ]; then
  build=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n1 || true)
  common=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -n1 || true)
  if [ -z "$build" ] || [ -z "$common" ]; then
    log "no Debian kernel headers under /usr/src to link"; exit 1
  fi
  mkdir -p "$kdir"
  ln -sfn "$build" "$kdir/build"
  ln -sfn "$common" "$kdir/source"
  log "linked kernel headers: $kdir/build -> $build, $kdir/source -> $common"
else
  log "kernel headers present at $kdir/build -> $(readlink -f "$kdir/build")"
fi

if ! mountpoint -q /sys/kernel/tracing; then
  mount -t tracefs tracefs /sys/kernel/tracing
  log "mounted tracefs at /sys/kernel/tracing"
fi
if [ -d /sys/kernel/debug ] && ! mountpoint -q /sys/kernel/debug; then
  mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null && log "mounted debugfs" || true
fi

bash scripts/ensure-dockerd.sh

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import bcc' 2>/dev/null; then
  rm -rf .venv
  /usr/bin/python3 -m venv --system-site-packages .venv
  log "created .venv with system site-packages (for Debian's bcc module)"
fi
stamp=.venv/.telegen-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ ! -x .venv/bin/telegen ]; then
  # Never `pip install bcc`: that PyPI name is an unrelated package.
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
  touch "$stamp"
  log "installed telegen into .venv"
fi
.venv/bin/python -c 'import bcc, telegen' || { log "bcc or telegen not importable from .venv"; exit 1; }
log "ready: .venv/bin/telegen"
