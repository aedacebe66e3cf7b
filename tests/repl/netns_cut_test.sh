#!/usr/bin/env bash
# Network cut and reconnect with resync: a secondary in namespace B and a
# primary in namespace A (veth, 198.18.1.0/24) replicate async writes; the
# link is taken down for CUT seconds mid-stream (longer than the peer
# timeout, so both sides drop the connection), then brought back. The
# primary must reconnect, resync only the dirty blocks, and after its final
# checkpoint both volumes must be byte-identical. Root only (skips with the
# reason otherwise); namespaces are named mrrepl-* and removed on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
NODE=${REPL_NODE:-build/repl_node}
CUT=${REPL_CUT_SECONDS:-2.5}
export VOLUME_BLOCKS=4096

skip() { echo "SKIP replication netns cut: $*"; echo "0 passed, 0 failed, 1 skipped"; exit 0; }
[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
command -v ip >/dev/null || skip "iproute2 (ip) is not installed"
[ -x "$NODE" ] || { echo "missing $NODE (make test-repl builds it)"; exit 1; }
ip netns add "mrrepl-probe-$$" 2>/dev/null || skip "cannot create network namespaces here"
ip netns del "mrrepl-probe-$$"

WORK=$(mktemp -d)
. tests/netns/lib.sh
netns_pair mrrepl

passed=0 failed=0
check() { # name, command...
  local name=$1; shift
  if "$@"; then echo "ok   $name"; passed=$((passed + 1)); else echo "FAIL $name"; failed=$((failed + 1)); fi
}

mkfifo "$WORK/ctl"
exec 3<>"$WORK/ctl"
ip netns exec "$B" "$NODE" secondary "$WORK/s.vol" 198.18.1.2:7411 1000 <"$WORK/ctl" >"$WORK/s.out" 2>&1 &
spid=$!; pids+=("$spid")
for _ in $(seq 200); do grep -q '^listening' "$WORK/s.out" 2>/dev/null && break; sleep 0.01; done
# 5000 async writes, one every 0.8 ms, 1 s peer timeout.
ip netns exec "$A" "$NODE" primary "$WORK/p.vol" 198.18.1.2:7411 async - 5000 1000 800 >"$WORK/p.out" 2>&1 &
ppid=$!; pids+=("$ppid")
for _ in $(seq 500); do grep -q '^writing' "$WORK/p.out" 2>/dev/null && break; sleep 0.01; done
sleep 1
ip -n "$A" link set "va$$" down
echo "link down for ${CUT}s"
sleep "$CUT"
ip -n "$A" link set "va$$" up
echo "link up"
check "primary finished, resynced and checkpointed" wait "$ppid"
cat "$WORK/p.out"
echo stop >&3
exec 3>&-
check "secondary stopped cleanly" wait "$spid"
cat "$WORK/s.out"
line=$(grep '^primary:' "$WORK/p.out" || true)
conns=$(sed -n 's/.* \([0-9]*\) connections.*/\1/p' <<<"$line")
resynced=$(sed -n 's/.* \([0-9]*\) blocks resynced.*/\1/p' <<<"$line")
check "the primary reconnected after the cut (connections=${conns:-?})" test "${conns:-0}" -ge 2
check "only dirty blocks were resent (${resynced:-?} of $VOLUME_BLOCKS)" test "${resynced:-0}" -gt 0 -a "${resynced:-0}" -lt "$VOLUME_BLOCKS"
check "volumes are byte-identical after resync and checkpoint" cmp "$WORK/p.vol" "$WORK/s.vol"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
