#!/usr/bin/env bash
# Side-by-side UDP benchmark: every implementation in one invocation, median
# of REPS runs each, printed as a table with ratios to the recvmmsg baseline.
# Loopback only. Usage: bash bench/run.sh   (REPS=3 STREAM_COUNT=500000 DRAIN_COUNT=200000)
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
STREAM_COUNT=${STREAM_COUNT:-500000}
DRAIN_COUNT=${DRAIN_COUNT:-200000}
mkdir -p bench/bin
cc -std=c99 -O2 -Wall -Wextra -Werror -Iinclude bench/udp_bench.c -o bench/bin/udp_bench target/release/libmeshring.a -lpthread -ldl -lm
(cd bench/go-udp && go build -o ../bin/go-udp .)

# Raw RESULT lines stay in bench/bin/ so the table can be re-printed: python3 bench/table.py bench/bin/udp-results.txt
out=bench/bin/udp-results.txt
: >"$out"
run() { for _ in $(seq "$REPS"); do "$@" >>"$out"; done; }
for payload in 64 1400; do
  for impl in recvmmsg meshring-uring meshring-multishot meshring-batch; do
    run bench/bin/udp_bench "$impl" stream "$payload" "$STREAM_COUNT"
    run bench/bin/udp_bench "$impl" drain "$payload" "$DRAIN_COUNT"
  done
  run bench/bin/go-udp -payload "$payload" -count "$STREAM_COUNT"
done
for impl in recvmmsg-gso meshring-gso; do
  run bench/bin/udp_bench "$impl" stream 1400 "$STREAM_COUNT"
  run bench/bin/udp_bench "$impl" drain 1400 "$DRAIN_COUNT"
done
python3 bench/table.py "$out"

# Notify bus: cost per peer delta vs store size (10k..1M peers) with
# 0, 1 and 16 reading watchers, bytes allocated per delta, RSS; one process
# per store size. Source: examples/bus_bench.rs (BUS_DELTAS=2000 BUS_REPS=5).
echo
"${CARGO:-cargo}" build --release --example bus_bench
target/release/examples/bus_bench --deltas "${BUS_DELTAS:-2000}" --reps "${BUS_REPS:-5}"

# Snapshot cache: pure cache cost from C, 1k and 10k nodes with one
# parked SOTW watch each, one SetSnapshot per node changing one type; time
# until every watch's response is taken. Source: bench/cache_bench.c (CACHE_REPS=5).
echo
cc -std=c99 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -pedantic -Iinclude bench/cache_bench.c -o bench/bin/cache_bench target/release/libmeshring.a -lpthread -ldl -lm
bench/bin/cache_bench "${CACHE_REPS:-5}"

# Replication: 4 KiB random writes on a local volume (io_uring vs
# pread/pwrite vs a plain pwrite loop); sync write latency vs a bare TCP
# ping-pong of a 4 KiB frame with a 32 B reply; async vs local writes;
# durable writes with 16 writers vs fdatasync per write; O_DIRECT batches
# of 32 vs pwrite; checkpoint latency after 1k/100k dirty blocks; then RSS
# with 100k and 1M overwritten blocks, each in a fresh process. Source:
# bench/repl_bench.c (REPL_WRITES=50000, REPL_RSS_SIZES="100000 1000000";
# ~1 GiB of sparse temp files in /tmp, plus 3x 4 KiB per block of the RSS rows).
echo
cc -std=c99 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -pedantic -Iinclude bench/repl_bench.c -o bench/bin/repl_bench target/release/libmeshring.a -lpthread -ldl -lm
bench/bin/repl_bench "${REPL_WRITES:-50000}"
echo
echo "Replication RSS: a primary and a secondary in one process, N distinct 4 KiB blocks overwritten (async) since"
echo "the last checkpoint, so the secondary holds N old blocks in its hidden layer (on disk; the index is a bitmap)"
printf '  %-9s %9s %9s %12s %12s %12s %10s\n' "dirty" "hidden" "blocks" "RSS before MB" "RSS after MB" "peak RSS MB" "write s"
for n in ${REPL_RSS_SIZES:-100000 1000000}; do bench/bin/repl_bench rss "$n"; done

# Lifecycle runtime: feed of 100k and 1M routes to a new protocol
# (routes/s, longest loop step, worst wait of a probe command during the
# feed), and commit cost with one of 10 vs one of 1000 protocols changed.
# Source: examples/lifecycle_bench.rs (LIFECYCLE_SIZES=100000,1000000 LIFECYCLE_COMMITS=200).
echo
"${CARGO:-cargo}" build --release --example lifecycle_bench
target/release/examples/lifecycle_bench --sizes "${LIFECYCLE_SIZES:-100000,1000000}" --commits "${LIFECYCLE_COMMITS:-200}"
