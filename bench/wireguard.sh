#!/usr/bin/env bash
# wireguard-go benchmark: iperf3 TCP through a real wireguard-go tunnel
# between two network namespaces (veth), stock wireguard-go
# (conn.NewStdNetBind + tun.CreateTUN) against wgbind (wgbind.NewBind +
# wgbind.CreateTUN), with and without offloads, in one run. Each
# configuration: REPS runs of SECONDS_PER_RUN seconds (a fresh pair of
# devices per run, stock and wgbind alternating), median Gbit/s, and the
# CPU seconds per Gbit of the two wireguard-go processes (user + system
# from /proc, over the same runs). Ratios are wgbind / stock.
#
# "without offloads": the TUN is opened without IFF_VNET_HDR (no TSO, no
# write-side GRO; stock via tun.CreateTUNFromFile) and the veths lose TX
# checksum offload (ethtool -K tx off). Before Linux 6.11 a UDP GSO send
# then fails with EIO and both Binds fall back to one datagram per packet;
# 6.11 and later checksum such sends in software and GSO stays on.
#
# Root only; namespaces and 198.18.0.0/15 addresses are this script's own
# and are deleted on exit.
#   bash bench/wireguard.sh          SECONDS_PER_RUN=5 REPS=3
#   PROFILE=dir bash bench/wireguard.sh   also writes pprof CPU profiles
#                                          and `perf record` of each config
#   ONLY="wgbind-offload stock-offload"   runs only those configurations
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECONDS_PER_RUN:-5}
REPS=${REPS:-3}
skip() { echo "wireguard-go bench skipped: $*"; exit 0; }
[ "$(id -u)" = 0 ] || skip "needs root"
[ -c /dev/net/tun ] || skip "no /dev/net/tun"
command -v iperf3 >/dev/null || skip "iperf3 is not installed (apt-get install iperf3)"
command -v ethtool >/dev/null || skip "ethtool is not installed (apt-get install ethtool)"

mkdir -p bench/bin
(cd go/wgbind && CGO_ENABLED=1 go build -o ../../bench/bin/wgnode ./internal/wgnode)
WGNODE=$PWD/bench/bin/wgnode
WORK=$(mktemp -d)
. tests/netns/lib.sh
netns_pair mr-wgb
VA=va$$ VB=vb$$

key() { python3 -c 'import os,sys; k=bytearray(os.urandom(32)); k[0]&=248; k[31]=(k[31]&127)|64; print(k.hex())'; }
# Public keys come from wgnode's own device (UAPI) would need a round trip;
# derive them with the helper's Go toolchain instead.
pubkey() { (cd go/wgbind && go run ./internal/wgkey "$1"); }

tundrops() { # netns -> packets the TUN device dropped on its way to the reader (queue full)
  ip -n "$1" -s -j link show wgb0 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["tx"]["dropped"])'
}

ticks() { # pid -> utime+stime in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}

iperf() { # -> bits per second
  ip netns exec "$B" iperf3 -s -1 -B 198.18.2.2 >/dev/null 2>&1 &
  local server=$!
  sleep 0.3
  local bps
  bps=$(ip netns exec "$A" iperf3 -c 198.18.2.2 -t "$SECS" -J 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])' || echo 0)
  wait "$server" 2>/dev/null || true
  echo "$bps"
}

KA=$(key) KB=$(key)
PA=$(pubkey "$KA") PB=$(pubkey "$KB")
HZ=$(getconf CLK_TCK)

run_once() { # name bind tun offload(true|false) -> "name bps bits cpu_seconds tun_drops"
  local name=$1 bind=$2 tun=$3 off=$4
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then echo "$name 0 0 0 0"; return; fi
  local feat=on
  [ "$off" = true ] || feat=off
  ip netns exec "$A" ethtool -K "$VA" tx "$feat" >/dev/null 2>&1
  ip netns exec "$B" ethtool -K "$VB" tx "$feat" >/dev/null 2>&1
  pids=()
  for side in a b; do
    local ns key peer ep allowed inner prof=()
    if [ $side = a ]; then ns=$A key=$KA peer=$PB ep=198.18.1.2 allowed=198.18.2.2/32 inner=198.18.2.1/24
    else ns=$B key=$KB peer=$PA ep=198.18.1.1 allowed=198.18.2.1/32 inner=198.18.2.2/24; fi
    [ -z "${PROFILE:-}" ] || prof=(-cpuprofile "$PROFILE/$name-$side-$rep.pprof")
    rm -f "$WORK/$side.log"
    ip netns exec "$ns" "$WGNODE" node -bind "$bind" -tun "$tun" -offload="$off" -name wgb0 -mtu 1420 \
      -key "$key" -peer "$peer" -endpoint "$ep:51820" -port 51820 -allowed "$allowed" "${prof[@]}" \
      < /dev/null > "$WORK/$side.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 200); do grep -q '^ready' "$WORK/$side.log" && break; sleep 0.05; done
    grep -q '^ready' "$WORK/$side.log" || { echo "$name: wgnode did not start:" >&2; cat "$WORK/$side.log" >&2; exit 1; }
    ip -n "$ns" addr add "$inner" dev wgb0
    ip -n "$ns" link set wgb0 up
  done
  for side in a b; do
    for _ in $(seq 100); do grep -q '^event up' "$WORK/$side.log" && break; sleep 0.05; done
  done
  ip netns exec "$A" ping -c 2 -i 0.2 -W 2 198.18.2.2 >/dev/null || { echo "$name: no ping through the tunnel" >&2; cat "$WORK"/*.log >&2; exit 1; }
  local perf_pid=""
  if [ -n "${PROFILE:-}" ] && command -v perf >/dev/null; then
    perf record -q -g -o "$PROFILE/$name-$rep.perf.data" -p "${pids[0]},${pids[1]}" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  local t0 t1 bps d0 d1
  d0=$(( $(tundrops "$A") + $(tundrops "$B") ))
  t0=$(( $(ticks "${pids[0]}") + $(ticks "${pids[1]}") ))
  bps=$(iperf)
  t1=$(( $(ticks "${pids[0]}") + $(ticks "${pids[1]}") ))
  d1=$(( $(tundrops "$A") + $(tundrops "$B") ))
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; fi
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=()
  python3 -c "print('$name', $bps, $bps * $SECS, $(( t1 - t0 )) / $HZ, $(( d1 - d0 )))"
}

# Stock and wgbind alternate run by run, so load from anything else on the
# machine falls on both alike.
for rep in $(seq "$REPS"); do
  run_once stock-offload std std true
  run_once wgbind-offload wgbind wgbind true
  run_once stock-plain std std false
  run_once wgbind-plain wgbind wgbind false
done > "$WORK/results.txt"

python3 - "$WORK/results.txt" "$SECS" "$REPS" <<'EOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, bps, bits, cpu, drops = line.split()
    runs.setdefault(name, []).append((float(bps), float(bits), float(cpu), int(drops)))
rows = {}
for name, rs in runs.items():
    bits = sum(r[1] for r in rs)
    cpu = sum(r[2] for r in rs)
    rows[name] = (statistics.median(r[0] for r in rs) / 1e9, cpu / (bits / 1e9) if bits > 0 else float("inf"), sum(r[3] for r in rs))
print(f"wireguard-go through a veth between two namespaces: iperf3 TCP, {sys.argv[3]} x {sys.argv[2]} s each, median;")
print("stock and wgbind runs alternate; CPU = user+system seconds of both wireguard-go processes per Gbit moved;")
print("TUN drops = packets both TUN devices dropped because their reader fell behind (tx_dropped), over all runs")
print(f"{'':16}{'stock Gbit/s':>14}{'wgbind Gbit/s':>15}{'ratio':>8}{'stock CPU s/Gbit':>18}{'wgbind CPU s/Gbit':>19}{'ratio':>8}{'stock TUN drops':>17}{'wgbind TUN drops':>18}")
for mode, label in (("offload", "with offloads"), ("plain", "without")):
    s, w = rows[f"stock-{mode}"], rows[f"wgbind-{mode}"]
    tr = w[0] / s[0] if s[0] else float("nan")
    cr = w[1] / s[1] if s[1] else float("nan")
    print(f"{label:16}{s[0]:>14.2f}{w[0]:>15.2f}{tr:>7.2f}x{s[1]:>18.3f}{w[1]:>19.3f}{cr:>7.2f}x{s[2]:>17}{w[2]:>18}")
print("goal: throughput ratio >= 1.20x and CPU/Gbit ratio <= 0.80x")
EOF
