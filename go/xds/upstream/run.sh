#!/usr/bin/env bash
# Runs go-control-plane's own SnapshotCache tests (pkg/cache/v3 simple_test.go,
# delta_test.go) and its cache+server tests (pkg/integration TTL, pkg/client
# sotw ADS fetch) against meshring's xds.NewSnapshotCache*, straight from the
# Go module cache. Edits: the constructors (cache.NewSnapshotCache* ->
# xds.NewSnapshotCache*), and x.(*cache.RawResponse).GetRawResources() /
# x.(*cache.RawDeltaResponse).GetRawResources() -> rawResources(x), a helper
# (written below) that calls GetRawResources on any response that has it
# (go-control-plane's raw responses; meshring's should) and otherwise decodes
# the wire form. Nothing else changes.
#
#   MODE=meshring (default)  our cache
#   MODE=control             go-control-plane's own cache through the same
#                            edited files (proves the edits keep the meaning)
#   XDS_DIR (default: this directory's go/xds)   GO=go   KEEP=1 (keep the temp module)
set -euo pipefail
MODE=${MODE:-meshring}
GO=${GO:-go}
XDS_DIR=$(cd "${XDS_DIR:-$(dirname "$0")/..}" && pwd)
MESHRING_GO=$(cd "$XDS_DIR/.." && pwd)

# The version go/xds pins (no build: go list -m only reads go.mod/go.sum).
GCP=$(cd "$XDS_DIR" && $GO list -m -f '{{.Dir}}' github.com/envoyproxy/go-control-plane)
GCP_VER=$(cd "$XDS_DIR" && $GO list -m -f '{{.Version}}' github.com/envoyproxy/go-control-plane)
ENVOY_VER=$(cd "$XDS_DIR" && $GO list -m -f '{{.Version}}' github.com/envoyproxy/go-control-plane/envoy)
[ -n "$GCP" ] && [ -d "$GCP/pkg/cache/v3" ] || { (cd "$XDS_DIR" && $GO mod download github.com/envoyproxy/go-control-plane); GCP=$(cd "$XDS_DIR" && $GO list -m -f '{{.Dir}}' github.com/envoyproxy/go-control-plane); }

T=$(mktemp -d /tmp/gcp-upstream.XXXXXX)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$T"' EXIT
mkdir -p "$T/cache" "$T/integration" "$T/client"

cp "$GCP"/pkg/cache/v3/{simple_test.go,delta_test.go,fixtures_test.go,resource_test.go} "$T/cache/"
cp "$GCP"/pkg/integration/ttl_integration_test.go "$T/integration/"
cp "$GCP"/pkg/client/sotw/v3/client_test.go "$T/client/"
chmod -R u+w "$T"     # module cache files are read-only

XDS_IMPORT='github.com/meshring/meshring/go/xds'
edit() { # file: swap constructors (meshring mode) and internal type assertions
  local f=$1
  # x.(*cache.RawResponse).GetRawResources() -> rawResources(x) (same for RawDeltaResponse)
  sed -i -E 's/\b([A-Za-z_][A-Za-z0-9_]*)\.\(\*cache\.Raw(Delta)?Response\)\.GetRawResources\(\)/rawResources(\1)/g' "$f"
  if [ "$MODE" = meshring ]; then
    sed -i -e 's/\bcache\.NewSnapshotCacheWithHeartbeating(/xds.NewSnapshotCacheWithHeartbeating(/g' \
           -e 's/\bcache\.NewSnapshotCache(/xds.NewSnapshotCache(/g' "$f"
    if grep -q 'xds\.NewSnapshotCache' "$f"; then
      sed -i "0,/^\t\"github.com\/envoyproxy\/go-control-plane\/pkg\/cache\/v3\"\$/s||&\n\t\"$(printf %s "$XDS_IMPORT" | sed 's/\//\\\//g')\"|" "$f"
      grep -q "\"$XDS_IMPORT\"" "$f" || { echo "could not add the xds import to $f" >&2; exit 1; }
    fi
  fi
}
for f in "$T"/cache/simple_test.go "$T"/cache/delta_test.go "$T"/integration/ttl_integration_test.go "$T"/client/client_test.go; do edit "$f"; done

# Guards: nothing upstream-internal is left, and (meshring mode) every
# SnapshotCache is ours.
if grep -n 'cache\.Raw\(Delta\)\?Response' "$T"/cache/simple_test.go "$T"/cache/delta_test.go; then echo "unreplaced internal type assertion" >&2; exit 1; fi
if [ "$MODE" = meshring ] && grep -n '\bcache\.NewSnapshotCache' "$T"/cache/*.go "$T"/integration/*.go "$T"/client/*.go; then
  echo "unreplaced constructor" >&2; exit 1; fi

cat > "$T/cache/zz_meshring_helpers_test.go" <<'GO'
package cache_test

import (
	"fmt"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// rawResources stands in for r.(*cache.RawResponse).GetRawResources() and
// r.(*cache.RawDeltaResponse).GetRawResources(): the resources (objects and
// TTLs) a response carries, heartbeats included. go-control-plane's raw
// responses have the method, and so must meshring's (returning the
// snapshot's own objects, which the upstream reflect.DeepEqual checks need).
// Without it the wire form is decoded: fresh objects, so the upstream
// reflect.DeepEqual checks fail (the protocmp ones pass) but nothing panics.
func rawResources(r any) []types.ResourceWithTTL {
	if rr, ok := r.(interface{ GetRawResources() []types.ResourceWithTTL }); ok {
		return rr.GetRawResources()
	}
	var out []types.ResourceWithTTL
	switch v := r.(type) {
	case cache.Response:
		dr, err := v.GetDiscoveryResponse()
		if err != nil {
			panic(err)
		}
		for _, a := range dr.GetResources() {
			var ttl *time.Duration
			if a.GetTypeUrl() == "type.googleapis.com/envoy.service.discovery.v3.Resource" {
				var w discovery.Resource
				if err := a.UnmarshalTo(&w); err != nil {
					panic(err)
				}
				if w.GetTtl() != nil {
					d := w.GetTtl().AsDuration()
					ttl = &d
				}
				a = w.GetResource() // nil in a heartbeat
			}
			out = append(out, types.ResourceWithTTL{Resource: decodeAny(a), TTL: ttl})
		}
	case cache.DeltaResponse:
		dr, err := v.GetDeltaDiscoveryResponse()
		if err != nil {
			panic(err)
		}
		for _, res := range dr.GetResources() {
			out = append(out, types.ResourceWithTTL{Resource: decodeAny(res.GetResource())})
		}
	default:
		panic(fmt.Sprintf("rawResources: %T is not a cache response", r))
	}
	return out
}

func decodeAny(a *anypb.Any) types.Resource {
	if a == nil {
		return nil
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		panic(err)
	}
	return m
}
GO
cat > "$T/go.mod" <<GOMOD
module meshring.local/upstreamtests

go 1.26.0

require (
	github.com/envoyproxy/go-control-plane $GCP_VER
	github.com/envoyproxy/go-control-plane/envoy $ENVOY_VER
	github.com/meshring/meshring/go/xds v0.0.0
)

replace (
	github.com/meshring/meshring/go/xds => $XDS_DIR
	github.com/meshring/meshring/go => $MESHRING_GO
)
GOMOD
cp "$XDS_DIR/go.sum" "$T/go.sum"
[ "$MODE" = meshring ] || sed -i '/meshring\/meshring\/go\/xds v0.0.0/d' "$T/go.mod"
(cd "$T" && $GO mod tidy >/dev/null)
gofmt -e -w "$T"/cache "$T"/integration "$T"/client   # parse check; also sorts the added import

# The exact test set: fails when upstream adds, renames or drops a test.
CACHE_TESTS='TestSnapshotCacheWithTTL TestSnapshotCache TestSnapshotCacheFetch TestSnapshotCacheWatch TestConcurrentSetWatch TestSnapshotCacheWatchCancel TestSnapshotCacheWatchTimeout TestSnapshotCreateWatchWithResourcePreviouslyNotRequested TestSnapshotClear TestSnapshotSingleResourceFetch TestAvertPanicForWatchOnNonExistentSnapshot TestSnapshotCacheDeltaWatch TestDeltaRemoveResources TestConcurrentSetDeltaWatch TestSnapshotDeltaCacheWatchTimeout TestSnapshotCacheDeltaWatchCancel'
found=$(grep -ho '^func Test[A-Za-z0-9_]*' "$T"/cache/simple_test.go "$T"/cache/delta_test.go | sed 's/^func //' | sort)
want=$(printf '%s\n' $CACHE_TESTS | sort)
[ "$found" = "$want" ] || { echo "upstream cache test set changed:"; diff <(echo "$want") <(echo "$found"); exit 1; }
RUN="^($(echo $CACHE_TESTS | tr ' ' '|'))\$"

cd "$T"
export CGO_ENABLED=1
$GO test -race -count=1 -run "$RUN" -v ./cache/ 2>&1 | tee "$T/cache.log" | grep -E '^(--- |FAIL|ok|PASS)' || true
pass=$(grep -c '^--- PASS: Test[A-Za-z]* ' "$T/cache.log" || true)
fail=$(grep -c '^--- FAIL: Test[A-Za-z]* ' "$T/cache.log" || true)
echo "upstream cache tests ($MODE): $pass passed, $fail failed (of 16)"
# Server + cache over real gRPC (fixed ports :9999 and 127.0.0.1:18001): one package at a time.
$GO test -race -count=1 -p 1 ./integration/ ./client/
[ "$pass" = 16 ] && [ "$fail" = 0 ]
