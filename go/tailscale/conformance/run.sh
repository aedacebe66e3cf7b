#!/usr/bin/env bash
# Checks the notify bus against tailscaled's own control client.
#
# Copies tailscale.com v1.102.5 from the Go module cache into a temporary
# directory, adds meshring_conformance_test.go.txt to its
# control/controlclient package (so the test can drive the unexported
# mapSession, the code tailscaled runs for every MapResponse), points the
# copy at this checkout's Go package, and runs that one test with -race.
# Nothing of tailscale's is committed here; the copy is deleted afterwards.
#   bash go/tailscale/conformance/run.sh      (MESHRING_CONFORMANCE_SEEDS=40)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
version=v1.102.5
cd "$here/.."
src="$(go list -m -f '{{.Dir}}' tailscale.com 2>/dev/null || true)"
if [ -z "$src" ] || [ ! -d "$src" ]; then
  go mod download tailscale.com
  src="$(go list -m -f '{{.Dir}}' tailscale.com)"
fi
case "$src" in *"@$version") ;; *) echo "expected tailscale.com@$version, found $src"; exit 1 ;; esac
work="$(mktemp -d)"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
cp -r "$src" "$work/ts"
chmod -R u+w "$work/ts"
cp "$here/meshring_conformance_test.go.txt" "$work/ts/control/controlclient/zz_meshring_conformance_test.go"
cd "$work/ts"
go mod edit -require=github.com/meshring/meshring/go@v0.0.0 -replace=github.com/meshring/meshring/go="$root/go"
CGO_ENABLED=1 go test -race -count=1 -run '^TestMeshringConformance$' ./control/controlclient/
