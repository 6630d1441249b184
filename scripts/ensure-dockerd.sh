#!/usr/bin/env bash
# Leave a Docker engine that answers: keep one that answers, wait for one that is starting or
# stopping, replace one that hangs, start one where none runs. Called by scripts/setup.sh;
# tests/e2e/test_setup_dockerd.py runs it against each of those states.
set -euo pipefail

log() { printf 'setup: %s\n' "$*" >&2; }

DOCKERD_LOG=${TELEGEN_DOCKERD_LOG:-/var/log/telegen-dockerd.log}
# A graceful dockerd shutdown gives each container 10 s before it kills it, and a start-up
# takes about a second: 30 s covers both before a silent dockerd is taken for hung.
WAIT_S=${TELEGEN_DOCKERD_WAIT_S:-30}
PIDFILE=/var/run/docker.pid

answers() { timeout "$1" docker info >/dev/null 2>&1; }

# dockerd processes that are alive; a zombie waiting for its parent to reap it does not count
live_dockerd() { ps -C dockerd -o pid=,stat= 2>/dev/null | awk '$2 !~ /^Z/ {print $1}'; }
none_live() { [ -z "$(live_dockerd)" ]; }
answers_or_gone() { answers 3 || none_live; }

# wait_until SECONDS COMMAND...: succeeds as soon as COMMAND does, fails at the deadline
wait_until() {
  local deadline=$((SECONDS + $1)); shift
  while [ "$SECONDS" -lt "$deadline" ]; do "$@" && return 0; sleep 0.5; done
  "$@"
}

if answers 10; then
  log "dockerd answers"; exit 0
fi

if ! none_live; then
  log "dockerd $(live_dockerd | xargs) runs but does not answer: waiting up to ${WAIT_S} s for it to finish starting or stopping"
  wait_until "$WAIT_S" answers_or_gone || true
  if answers 5; then
    log "dockerd answers"; exit 0
  fi
  pids=$(live_dockerd | xargs)
  if [ -n "$pids" ]; then
    log "stopping dockerd $pids: it did not answer within ${WAIT_S} s"
    # a stopped process acts on SIGTERM only once it is continued
    kill -CONT $pids 2>/dev/null || true
    kill -TERM $pids 2>/dev/null || true
    if ! wait_until 30 none_live; then
      log "dockerd $pids ignored SIGTERM for 30 s: killing it"
      kill -KILL $pids 2>/dev/null || true
      wait_until 10 none_live || { log "dockerd $pids survives SIGKILL"; exit 1; }
    fi
  fi
fi

# dockerd refuses to start while its pid file names a live process; after a crash or a machine
# restore that pid can belong to something else by now
if [ -f "$PIDFILE" ]; then
  pid=$(tr -dc 0-9 <"$PIDFILE" || true)
  if [ -z "$pid" ] || [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" != dockerd ]; then
    rm -f "$PIDFILE"
    log "removed stale $PIDFILE (pid ${pid:-none} is not a dockerd)"
  fi
fi

log "starting dockerd (log: $DOCKERD_LOG)"
mkdir -p "$(dirname "$DOCKERD_LOG")"
(setsid dockerd >>"$DOCKERD_LOG" 2>&1 &)
if wait_until 60 answers 3; then
  log "dockerd is running"; exit 0
fi
log "dockerd did not answer within 60 s of its start; the end of $DOCKERD_LOG:"
tail -n 20 "$DOCKERD_LOG" >&2 || true
exit 1
