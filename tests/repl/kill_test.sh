#!/usr/bin/env bash
# Two-process fault test: a secondary and a primary in separate processes on
# loopback; the primary streams sync (then durable) writes, logging each one
# after it was acknowledged; it is killed with SIGKILL mid-stream, the
# secondary fails over and checks that every acknowledged write is there
# byte-exact, and the killed primary's own volume file is checked the same
# way. REPL_KILL_REPS repetitions per mode (20), REPL_KILL_MODES
# ("sync durable"). Usage: bash tests/repl/kill_test.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
NODE=${REPL_NODE:-build/repl_node}
REPS=${REPL_KILL_REPS:-20}
MODES=${REPL_KILL_MODES:-sync durable}
[ -x "$NODE" ] || { echo "missing $NODE (make test-repl builds it)"; exit 1; }

WORK=$(mktemp -d)
spid= ppid=
cleanup() {
  for p in $spid $ppid; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_line() { # file pattern
  for _ in $(seq 400); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.01; done
  echo "timed out waiting for '$2' in $1:"; cat "$1"; return 1
}

passed=0 failed=0 total_acked=0
for mode in $MODES; do
for rep in $(seq "$REPS"); do
  d="$WORK/$mode-$rep"; mkdir -p "$d"
  mkfifo "$d/ctl"
  exec 3<>"$d/ctl"
  "$NODE" secondary "$d/s.vol" 127.0.0.1:0 <"$d/ctl" >"$d/s.out" 2>&1 &
  spid=$!
  wait_line "$d/s.out" '^listening'
  addr=$(sed -n 's/^listening //p' "$d/s.out")
  "$NODE" primary "$d/p.vol" "$addr" "$mode" "$d/acked.log" 0 >"$d/p.out" 2>&1 &
  ppid=$!
  wait_line "$d/p.out" '^writing'
  # Kill somewhere 50..350 ms into the stream.
  sleep "0.$(printf '%03d' $((50 + RANDOM % 300)))"
  kill -9 "$ppid"; wait "$ppid" 2>/dev/null || true; ppid=
  echo "failover $d/acked.log" >&3
  exec 3>&-
  # A hung failover fails the rep instead of hanging the run.
  ( sleep 60; kill -9 "$spid" 2>/dev/null ) & watchdog=$!
  if wait "$spid" && "$NODE" verify "$d/p.vol" "$d/acked.log" >"$d/pv.out" 2>&1; then
    passed=$((passed + 1)); echo "ok   $mode rep $rep: secondary $(grep verified "$d/s.out"); killed primary's own file $(grep -o '[0-9]* lost' "$d/pv.out")"
  else
    failed=$((failed + 1)); echo "FAIL $mode rep $rep:"; cat "$d/s.out" "$d/p.out" "$d/pv.out" 2>/dev/null
  fi
  kill "$watchdog" 2>/dev/null; wait "$watchdog" 2>/dev/null || true
  spid=
  total_acked=$((total_acked + $(wc -l < "$d/acked.log")))
  rm -rf "$d"
done
done
echo "kill -9 test: $REPS repetitions of each of: $MODES; $total_acked acknowledged writes checked"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
