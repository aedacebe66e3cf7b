#!/usr/bin/env bash
# Builds the fuzz targets (stable toolchain: libFuzzer from libfuzzer-sys,
# coverage from sanitizer-coverage codegen flags) and runs each for
# FUZZ_SECONDS (default 600), starting from the committed seed corpus.
#   bash fuzz/run.sh [target...]        all targets when none named
# New inputs found go to fuzz/work/<target> (not committed); a crash or
# failed check leaves its input in fuzz/artifacts/<target>/ and fails.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH="${FUZZ_SECONDS:-600}"
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(bus_apply options runtime_commit snapshot_packed addr_parse repl_wire)
fi
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# With an explicit --target the flags reach only the target's code, not
# build scripts (which would not link against the sancov hooks).
HOST="$(rustc -vV | sed -n 's/^host: //p')"
cargo build --release --quiet --bins --target "$HOST"
status=0
for t in "${TARGETS[@]}"; do
  mkdir -p "work/$t" "artifacts/$t"
  echo "== fuzz $t for ${SECONDS_EACH}s"
  # -rss_limit_mb: a target that grows memory without bound fails.
  if ! ./target/"$HOST"/release/"$t" -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=20 \
      -print_final_stats=1 -artifact_prefix="artifacts/$t/" "work/$t" "corpus/$t" 2> "work/$t.log"; then
    tail -40 "work/$t.log"
    echo "FAIL fuzz $t: input in fuzz/artifacts/$t/"
    status=1
  else
    grep -E "stat::number_of_executed_units|cov:" "work/$t.log" | tail -2 | sed "s/^/   $t: /"
  fi
done
exit $status
