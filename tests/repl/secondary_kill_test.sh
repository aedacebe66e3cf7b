#!/usr/bin/env bash
# Secondary crash in the middle of a burst of durable writes: a durable
# primary streams COUNT writes, logging each one after it was acknowledged
# (MR_REPL_DURABLE: on stable storage on both sides). The secondary is
# killed with SIGKILL mid-burst; its volume file is checked at once against
# every write acknowledged before the kill; then it is restarted from its
# files on the same address, the primary reconnects and resyncs, finishes
# the burst and checkpoints; the secondary fails over and checks every
# acknowledged write, and both volume files must end byte-identical.
# REPL_SKILL_REPS repetitions (3). Usage: bash tests/repl/secondary_kill_test.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
NODE=${REPL_NODE:-build/repl_node}
REPS=${REPL_SKILL_REPS:-3}
COUNT=${REPL_SKILL_COUNT:-3000}
[ -x "$NODE" ] || { echo "missing $NODE (make test-repl builds it)"; exit 1; }

WORK=$(mktemp -d)
spid= ppid=
cleanup() {
  for p in $spid $ppid; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_line() { # file pattern
  for _ in $(seq 500); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.01; done
  echo "timed out waiting for '$2' in $1:"; cat "$1"; return 1
}

passed=0 failed=0
fail() { failed=$((failed + 1)); echo "FAIL rep $rep: $*"; for f in "$d"/*.out; do echo "--- $f"; cat "$f"; done; }
for rep in $(seq "$REPS"); do
  d="$WORK/$rep"; mkdir -p "$d"
  exec 3<>"$(mkfifo "$d/ctl1" && echo "$d/ctl1")"
  "$NODE" secondary "$d/s.vol" 127.0.0.1:0 1000 <"$d/ctl1" >"$d/s1.out" 2>&1 &
  spid=$!
  wait_line "$d/s1.out" '^listening'
  addr=$(sed -n 's/^listening //p' "$d/s1.out")
  "$NODE" primary "$d/p.vol" "$addr" durable "$d/acked.log" "$COUNT" 1000 >"$d/p.out" 2>&1 &
  ppid=$!
  wait_line "$d/p.out" '^writing'
  sleep "0.$(printf '%03d' $((100 + RANDOM % 400)))"
  kill -9 "$spid"; wait "$spid" 2>/dev/null || true; spid=
  exec 3>&-
  lines=$(wc -l < "$d/acked.log")
  cp "$d/s.vol" "$d/s-at-kill.vol"
  if ! "$NODE" verify "$d/s-at-kill.vol" "$d/acked.log" "$lines" >"$d/killed.out" 2>&1; then
    fail "the killed secondary's file lacks an acknowledged durable write"; continue
  fi
  # Restart from the same files, on the same address.
  exec 3<>"$(mkfifo "$d/ctl2" && echo "$d/ctl2")"
  "$NODE" secondary "$d/s.vol" "$addr" 1000 <"$d/ctl2" >"$d/s2.out" 2>&1 &
  spid=$!
  wait_line "$d/s2.out" '^listening'
  if ! wait "$ppid"; then ppid=; fail "the primary did not finish, resync and checkpoint"; continue; fi
  ppid=
  echo "failover $d/acked.log" >&3
  exec 3>&-
  if ! wait "$spid"; then spid=; fail "the restarted secondary lacks an acknowledged write"; continue; fi
  spid=
  if ! cmp -s "$d/p.vol" "$d/s.vol"; then fail "the volumes differ after the resync"; continue; fi
  passed=$((passed + 1))
  echo "ok   rep $rep: killed after $lines acknowledged writes ($(grep -o '[0-9]* lost' "$d/killed.out") in its file); $(grep '^primary:' "$d/p.out"); after restart: $(grep verified "$d/s2.out"); volumes identical"
  rm -rf "$d"
done
echo "secondary kill -9 test: $REPS repetitions of $COUNT durable writes"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
