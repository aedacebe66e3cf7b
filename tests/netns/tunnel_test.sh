#!/usr/bin/env bash
# End-to-end: two network namespaces joined by a veth pair (198.18.1.0/24),
# examples/c/bin/tunnel in each bridging a meshring TUN device and a meshring
# UDP socket; the tunnel carries 198.18.2.0/24. Checks ping both ways and a
# byte-identical TCP transfer, per backend and with TUN offloads. Only addresses inside these
# namespaces are used; the namespaces are deleted on any exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
TUNNEL=${TUNNEL:-examples/c/bin/tunnel}

skip() { echo "SKIP tunnel e2e: $*"; echo "0 passed, 0 failed, 1 skipped"; exit 0; }
[ "$(id -u)" = 0 ] || skip "needs root (network namespaces, TUN)"
[ -c /dev/net/tun ] || skip "kernel has no /dev/net/tun"
command -v ip >/dev/null || skip "iproute2 (ip) is not installed"
command -v ping >/dev/null || skip "ping (iputils-ping) is not installed"
[ -x "$TUNNEL" ] || { echo "missing $TUNNEL (make examples)"; exit 1; }

WORK=$(mktemp -d)
. tests/netns/lib.sh
netns_pair mr-e2e

passed=0 failed=0
check() { # name, command...
  local name=$1; shift
  if "$@"; then echo "ok   $name"; passed=$((passed + 1)); else echo "FAIL $name"; failed=$((failed + 1)); fi
}

wait_ready() { # logfile
  for _ in $(seq 100); do grep -q '^ready' "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "tunnel did not start:"; cat "$1"; return 1
}

# A random file, sent A -> B over TCP through the tunnel, compared by hash.
head -c 4000000 /dev/urandom > "$WORK/payload"
want=$(sha256sum < "$WORK/payload" | cut -d' ' -f1)
transfer() { # -> 0 if the file arrives intact
  rm -f "$WORK/received"
  ip netns exec "$B" python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("198.18.2.2", 9000)); s.listen(1); s.settimeout(20)
c, _ = s.accept(); c.settimeout(20)
with open(sys.argv[1], "wb") as f:
    while True:
        b = c.recv(65536)
        if not b: break
        f.write(b)
' "$WORK/received" &
  local server=$!
  sleep 0.3
  ip netns exec "$A" python3 -c '
import socket, sys
c = socket.create_connection(("198.18.2.2", 9000), timeout=20)
with open(sys.argv[1], "rb") as f: c.sendall(f.read())
c.close()
' "$WORK/payload" || { kill "$server" 2>/dev/null; return 1; }
  wait "$server" || return 1
  [ "$(sha256sum < "$WORK/received" | cut -d' ' -f1)" = "$want" ]
}

for variant in uring batch uring-offload; do
  backend=${variant%-offload}
  extra=""; [ "$variant" = uring-offload ] && extra=offload
  pids=()
  for side in a b; do
    if [ $side = a ]; then ns=$A local=198.18.1.1 remote=198.18.1.2 inner=198.18.2.1/24
    else ns=$B local=198.18.1.2 remote=198.18.1.1 inner=198.18.2.2/24; fi
    # Remove the old log first: wait_ready must not see the last variant's "ready".
    rm -f "$WORK/$side.log"
    MESHRING_BACKEND=$backend ip netns exec "$ns" "$TUNNEL" mrt0 "$local:7000" "$remote:7000" 1420 $extra > "$WORK/$side.log" 2>&1 &
    pids+=($!)
    wait_ready "$WORK/$side.log"
    ip -n "$ns" addr add "$inner" dev mrt0
    ip -n "$ns" link set mrt0 up
  done
  check "$variant: ping A -> B through the tunnel" ip netns exec "$A" ping -c 3 -i 0.2 -W 2 -q 198.18.2.2
  check "$variant: ping B -> A through the tunnel" ip netns exec "$B" ping -c 3 -i 0.2 -W 2 -q 198.18.2.1
  check "$variant: 4 MB TCP transfer arrives byte-identical" transfer
  for p in "${pids[@]}"; do kill -TERM "$p"; done
  for p in "${pids[@]}"; do wait "$p" || true; done
  check "$variant: tunnels exit cleanly on SIGTERM and report traffic" grep -q "packets to peer" "$WORK/a.log"
  sed -n 's/^/     /p' "$WORK/a.log" "$WORK/b.log"
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
