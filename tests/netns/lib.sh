# Shared by the namespace test and the tunnel benchmark: two network
# namespaces $A and $B joined by a veth pair, 198.18.1.1/24 in A and
# 198.18.1.2/24 in B. Everything is removed on exit (with the background
# processes listed in `pids` and an optional $WORK directory).

pids=()

netns_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
  [ -z "${WORK:-}" ] || rm -rf "$WORK"
}

netns_pair() { # prefix
  A=$1-a-$$ B=$1-b-$$
  trap netns_cleanup EXIT
  ip netns add "$A"
  ip netns add "$B"
  ip link add "va$$" netns "$A" type veth peer name "vb$$" netns "$B"
  ip -n "$A" addr add 198.18.1.1/24 dev "va$$"
  ip -n "$B" addr add 198.18.1.2/24 dev "vb$$"
  for ns in "$A" "$B"; do ip -n "$ns" link set lo up; done
  ip -n "$A" link set "va$$" up
  ip -n "$B" link set "vb$$" up
}
