#!/usr/bin/env bash
# Tunnel benchmark: TCP throughput (iperf3) between two network namespaces
# through an IP-over-UDP tunnel, for several tunnel implementations in one
# run, plus the bare veth as the ceiling. Root only; namespaces and the
# 198.18.0.0/15 addresses are this script's own and are deleted on exit.
# Usage: bash bench/tunnel.sh   (SECONDS_PER_RUN=5 REPS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECONDS_PER_RUN:-5}
REPS=${REPS:-3}
skip() { echo "tunnel bench skipped: $*"; exit 0; }
[ "$(id -u)" = 0 ] || skip "needs root"
[ -c /dev/net/tun ] || skip "no /dev/net/tun"
command -v iperf3 >/dev/null || skip "iperf3 is not installed (apt-get install iperf3)"
mkdir -p bench/bin
cc -O2 -Wall -Wextra -Werror bench/plain_tunnel.c -o bench/bin/plain_tunnel -lpthread
[ -x examples/c/bin/tunnel ] || { echo "run make examples first"; exit 1; }

. tests/netns/lib.sh
netns_pair mr-bench

iperf() { # server address -> Gbit/s
  ip netns exec "$B" iperf3 -s -1 -B "$1" >/dev/null 2>&1 &
  local server=$!
  sleep 0.3
  local bps
  bps=$(ip netns exec "$A" iperf3 -c "$1" -t "$SECS" -J 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])' || echo 0)
  wait "$server" 2>/dev/null || true
  python3 -c "print(f'{$bps/1e9:.3f}')"
}

dev_index=0
run_tunnel() { # name, env, command template (LOCAL REMOTE DEV are filled in)
  local name=$1 env=$2; shift 2
  # A fresh device name per run: the previous device may still be unregistering.
  local dev=mrb$dev_index
  dev_index=$((dev_index + 1))
  pids=()
  for side in a b; do
    if [ $side = a ]; then ns=$A l=198.18.1.1 r=198.18.1.2 inner=198.18.2.1/24; else ns=$B l=198.18.1.2 r=198.18.1.1 inner=198.18.2.2/24; fi
    local cmd=("$@")
    cmd=("${cmd[@]//LOCAL/$l}"); cmd=("${cmd[@]//REMOTE/$r}"); cmd=("${cmd[@]//DEV/$dev}")
    # Remove the old log first: the wait below must not see the last run's "ready".
    rm -f "/tmp/mr-bench-$side.log"
    env $env ip netns exec "$ns" "${cmd[@]}" > "/tmp/mr-bench-$side.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do grep -q '^ready' "/tmp/mr-bench-$side.log" && break; sleep 0.05; done
    ip -n "$ns" addr add "$inner" dev "$dev"; ip -n "$ns" link set "$dev" up
  done
  sleep 0.2
  local results=()
  for _ in $(seq "$REPS"); do results+=("$(iperf 198.18.2.2)"); done
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=()
  echo "$name ${results[*]}"
}

{
  res=(); for _ in $(seq "$REPS"); do res+=("$(iperf 198.18.1.2)"); done; echo "veth-direct ${res[*]}"
  run_tunnel plain-read-write "X=1" bench/bin/plain_tunnel DEV LOCAL 7000 REMOTE 1420
  run_tunnel meshring-batch "MESHRING_BACKEND=batch" examples/c/bin/tunnel DEV LOCAL:7000 REMOTE:7000 1420
  run_tunnel meshring-uring "MESHRING_BACKEND=uring" examples/c/bin/tunnel DEV LOCAL:7000 REMOTE:7000 1420
  run_tunnel meshring-uring-offload "MESHRING_BACKEND=uring" examples/c/bin/tunnel DEV LOCAL:7000 REMOTE:7000 1420 offload
} | python3 bench/tunnel_table.py
