#!/bin/bash
# Prepares the host environment BCC needs, then execs the agent: kernel headers of the
# running kernel (the host's if mounted, else the Debian headers linked as scripts/setup.sh
# does), tracefs. Used as the image's `telegen` command (/usr/local/bin/telegen) and as
# /opt/telegen/hostenv.sh by the systemd unit (`hostenv.sh /path/to/telegen run ...`).
#
# Exports TELEGEN_KERNEL_HEADERS for the agent (/status/ebpf kernel.headers):
#   host:<path>    headers of the host (its /lib/modules/<release>/build)
#   linked:<path>  Debian headers linked into /lib/modules/<release>/build
#   env:<path>     Debian headers passed through BCC_KERNEL_SOURCE (/lib/modules not writable)
#   none           nothing found; BCC will fail to compile unless the kernel has kheaders
set -uo pipefail

log() { printf 'telegen-hostenv: %s\n' "$*" >&2; }

if [ "$(basename "$0")" = telegen ]; then
  agent="${TELEGEN_BIN:-/opt/telegen/venv/bin/telegen}"
else
  agent="${1:?usage: hostenv.sh /path/to/telegen [args...]}"; shift
fi

# Only `run` (the default command) needs the kernel; version/check-config/status do not.
is_run=1
config=""
prev=""
for arg in "$@"; do
  case "$arg" in
    check-config|version|status|help|-h|--help|--version) is_run=0 ;;
    --config=*) config="${arg#--config=}" ;;
  esac
  if [ "$prev" = --config ] || [ "$prev" = -c ]; then config="$arg"; fi
  prev="$arg"
done

host_root="${TELEGEN_HOST_ROOT:-/host}"
release="$(uname -r)"
# Overridable for tests only.
modules="${TELEGEN_MODULES_DIR:-/lib/modules}"
src="${TELEGEN_SRC_DIR:-/usr/src}"
kdir="$modules/$release"

# Path of a host symlink's target as seen from here (absolute targets live under $host_root).
host_target() {
  local link="$1" target
  if [ ! -L "$link" ]; then printf '%s\n' "$link"; return; fi
  target="$(readlink "$link")"
  case "$target" in
    /*) printf '%s\n' "$host_root$target" ;;
    *) printf '%s\n' "$(dirname "$link")/$target" ;;
  esac
}

setup_headers() {
  if [ -e "$kdir/build/include" ]; then
    # Set up by an earlier start of this container/host: report what was decided then.
    TELEGEN_KERNEL_HEADERS="$(cat "$kdir/.telegen-headers" 2>/dev/null || echo "host:$kdir/build")"
    log "kernel headers: using $kdir/build -> $(readlink -f "$kdir/build")"
    return
  fi
  local hbuild="$host_root/lib/modules/$release/build" build source common
  if [ -e "$hbuild" ] || [ -L "$hbuild" ]; then
    build="$(host_target "$hbuild")"
    if [ -d "$build/include" ] && mkdir -p "$kdir" 2>/dev/null && ln -sfn "$build" "$kdir/build" 2>/dev/null; then
      source="$host_root/lib/modules/$release/source"
      if [ -e "$source" ] || [ -L "$source" ]; then
        ln -sfn "$(host_target "$source")" "$kdir/source" 2>/dev/null || true
      fi
      TELEGEN_KERNEL_HEADERS="host:/lib/modules/$release/build"
      echo "$TELEGEN_KERNEL_HEADERS" >"$kdir/.telegen-headers" 2>/dev/null || true
      log "kernel headers: using the host's /lib/modules/$release/build (here $build)"
      return
    fi
    log "kernel headers: the host's /lib/modules/$release/build does not resolve here ($build); falling back"
  fi
  build=$(ls -d "$src"/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n1 || true)
  common=$(ls -d "$src"/linux-headers-*-common 2>/dev/null | sort -V | tail -n1 || true)
  if [ -z "$build" ] || [ -z "$common" ]; then
    TELEGEN_KERNEL_HEADERS="none"
    log "kernel headers: none for $release (mount the host's /lib/modules and /usr/src); BCC may fail to compile"
    return
  fi
  if mkdir -p "$kdir" 2>/dev/null && ln -sfn "$build" "$kdir/build" 2>/dev/null; then
    ln -sfn "$common" "$kdir/source" 2>/dev/null || true
    TELEGEN_KERNEL_HEADERS="linked:$build"
    echo "$TELEGEN_KERNEL_HEADERS" >"$kdir/.telegen-headers" 2>/dev/null || true
    log "kernel headers: host has none for $release; linked $kdir/build -> $build, $kdir/source -> $common"
  else
    export BCC_KERNEL_SOURCE="$build"
    TELEGEN_KERNEL_HEADERS="env:$build"
    log "kernel headers: $kdir is read-only; BCC_KERNEL_SOURCE=$build"
  fi
}

setup_tracefs() {
  local t=/sys/kernel/tracing
  if mountpoint -q "$t" 2>/dev/null || [ -e "$t/events" ]; then
    return
  fi
  if mount -t tracefs tracefs "$t" 2>/dev/null; then
    log "mounted tracefs at $t"
  else
    log "tracefs is not mounted at $t and mounting it failed (mount the host's $t)"
  fi
}

if [ "$is_run" = 1 ]; then
  setup_headers
  export TELEGEN_KERNEL_HEADERS
  setup_tracefs
  # For the image's HEALTHCHECK: where the API listens is in the config file.
  if [ -n "${TELEGEN_STATE_DIR:-}" ] && mkdir -p "$TELEGEN_STATE_DIR" 2>/dev/null; then
    printf '%s\n' "${config:-/etc/telegen/config.yaml}" >"$TELEGEN_STATE_DIR/config-path" 2>/dev/null || true
  fi
fi

exec "$agent" "$@"
