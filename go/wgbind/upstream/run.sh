#!/usr/bin/env bash
# Runs wireguard-go's own tests that drive a real conn.Bind (device package:
# TestTwoDevicePing, TestConcurrencySafety, TestPriorityMessageOnEstablishment,
# deadlock/noise/lookup tests) plus wgbind's Bind contract tests
# (../contract_test.go) against wgbind.NewBind, straight from the Go module
# cache (nothing of wireguard-go is kept in this repository). wireguard-go is github.com/tailscale/wireguard-go
# at the version tailscale.com v1.102.5 requires.
#
# How: copy the whole wireguard-go module to a temp dir (it becomes the main
# module, so wgbind's own requirement on wireguard-go resolves to this copy),
# replace conn.NewDefaultBind() with wgbind.NewBind() in device/*_test.go,
# drop the then-unused conn imports, add require+replace lines to go.mod.
# The conn package's own tests cannot import wgbind (import cycle: wgbind
# imports conn), so the contract tests live in a new package bindcontract.
#
#   MODE=meshring (default)  wgbind from WGBIND_DIR (needs libmeshring.a built)
#   MODE=control             a stand-in wgbind whose NewBind is
#                            conn.NewStdNetBind: proves the edits and the
#                            contract tests hold for StdNetBind itself
#   WGBIND_DIR=(this module)  GO=go  KEEP=1  ALL=1 (whole device suite)
#   RACE=1 adds -race.  P=1 (go test -p), NICE=19.
set -euo pipefail
MODE=${MODE:-meshring}
GO=${GO:-go}
HERE=$(cd "$(dirname "$0")" && pwd)
WG_MOD=github.com/tailscale/wireguard-go
WG_VER=${WG_VER:-v0.0.0-20260715223240-2e01ba5b00f0}   # tailscale.com v1.102.5's go.mod
WGBIND_DIR=${WGBIND_DIR:-$(cd "$HERE/.." && pwd)}

WG=$($GO env GOMODCACHE)/$WG_MOD@$WG_VER
if [ ! -d "$WG" ]; then
  (cd "$WGBIND_DIR" && $GO mod download "$WG_MOD")
fi

T=$(mktemp -d /tmp/wg-upstream.XXXXXX)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$T"' EXIT
cp -r "$WG" "$T/wg"
chmod -R u+w "$T/wg"   # module cache files are read-only
cd "$T/wg"

for f in $(grep -l 'conn\.NewDefaultBind()' device/*_test.go); do
  sed -i 's/conn\.NewDefaultBind()/wgbind.NewBind()/g' "$f"
  sed -i '0,/^\t"github.com\/tailscale\/wireguard-go\/conn"$/s||&\n\t"github.com/meshring/meshring/go/wgbind"|' "$f"
  grep -q '"github.com/meshring/meshring/go/wgbind"' "$f" || { echo "could not add the wgbind import to $f" >&2; exit 1; }
  grep -q 'conn\.' "$f" || sed -i '/^\t"github.com\/tailscale\/wireguard-go\/conn"$/d' "$f"
done
if grep -n 'NewDefaultBind\|NewStdNetBind' device/*_test.go; then echo "unreplaced constructor" >&2; exit 1; fi

mkdir bindcontract
sed 's/^package wgbind_test$/package bindcontract_test/' "$WGBIND_DIR/contract_test.go" > bindcontract/contract_test.go

if [ "$MODE" = control ]; then
  mkdir -p "$T/stand-in"
  cat > "$T/stand-in/go.mod" <<EOF
module github.com/meshring/meshring/go/wgbind

go 1.25.0

require $WG_MOD $WG_VER
EOF
  cat > "$T/stand-in/wgbind.go" <<'EOF'
// Package wgbind stand-in: wireguard-go's own Bind, for MODE=control.
package wgbind

import "github.com/tailscale/wireguard-go/conn"

func NewBind() conn.Bind { return conn.NewStdNetBind() }
EOF
  $GO mod edit -require=github.com/meshring/meshring/go/wgbind@v0.0.0 \
               -replace=github.com/meshring/meshring/go/wgbind="$T/stand-in"
else
  [ -f "$WGBIND_DIR/go.mod" ] || { echo "no wgbind module at $WGBIND_DIR (MODE=control runs without it)" >&2; exit 1; }
  # Replace directives of dependency modules are ignored: the main module
  # must also point the meshring binding at the local tree.
  $GO mod edit -require=github.com/meshring/meshring/go/wgbind@v0.0.0 \
               -replace=github.com/meshring/meshring/go/wgbind="$WGBIND_DIR" \
               -require=github.com/meshring/meshring/go@v0.0.0 \
               -replace=github.com/meshring/meshring/go="$(cd "$WGBIND_DIR/.." && pwd)"
  export CGO_ENABLED=1
fi
export GOFLAGS=-mod=mod

RUN='TestTwoDevicePing|TestConcurrencySafety|TestPriorityMessageOnEstablishment|TestSetPrivateKeyConsumeInitiationDeadlock|TestNoiseHandshake|TestCurveWrappers|TestLookupFromPacket|TestReceiveFuncAfterClose|TestOpenCloseLifecycle|TestBatchSize|TestPortInUse|TestCloseUnblocksReceivers|TestParseEndpoint|TestSendAfterClose|TestRoundTrip|TestBothFamiliesOnePort'
[ -z "${ALL:-}" ] || RUN='.'
FLAGS=(-count=1 -p "${P:-1}")
[ -z "${RACE:-}" ] || FLAGS+=(-race)
rc=0
nice -n "${NICE:-19}" $GO test "${FLAGS[@]}" -v -run "$RUN" ./device ./bindcontract >"$T/out.txt" 2>&1 || rc=$?
grep -E '^(--- |ok |FAIL|panic|\s+\S+_test\.go:[0-9]+:)' "$T/out.txt" || true
if [ $rc -eq 0 ]; then
  echo "wireguard-go upstream tests ($MODE): $(grep -c '^--- PASS' "$T/out.txt") passed, $(grep -c '^--- FAIL' "$T/out.txt") failed, $(grep -c '^--- SKIP' "$T/out.txt") skipped"
else echo "FAIL ($MODE), log: $T/out.txt"; KEEP=1; trap - EXIT; exit 1; fi
