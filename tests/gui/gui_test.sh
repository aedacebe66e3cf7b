#!/usr/bin/env bash
# GUI test of examples/gtk (meshring-gtk, the "meshring node" window) under Xvfb.
#
# Each case runs the real window headlessly with --script (a scripted
# session: feed the bus, stream deltas, disable the protocol "lan", then
# dump the view model next to what the library says and take a screenshot
# of the window) and checks the dump with check_model.py:
#   session  3000-peer demo tailnet + 6000 deltas: every row equals
#            mr_bus_netmap's peer (name, addresses, online, last seen, home
#            DERP, routes), protocol states equal `show protocols`, the
#            screenshot is a real PNG of the window
#   empty    a 0-peer tailnet: no rows, the empty-state label is shown
#   closed   the bus is closed in the middle of the delta stream: the model
#            and the banner say "bus closed", the last rows stay
#   feed     MapResponse lines on stdin (one of them malformed), initial
#            view in one message (--unchunked): rows equal the netmap
#
# Skips (exit 0, with the reason) without xvfb-run/xauth or without the GTK 4
# and json-glib development files; fails when the library is not built.
# GUI_TEST_KEEP=DIR keeps the dumps, logs and screenshots in DIR.
set -uo pipefail
cd "$(dirname "$0")/../.."

APP=examples/gtk/bin/meshring-gtk
CHECK=tests/gui/check_model.py

skip() { echo "SKIP gui test: $*"; exit 0; }
command -v xvfb-run >/dev/null || skip "xvfb-run is not installed (Debian: apt-get install xvfb xauth)"
command -v xauth >/dev/null || skip "xauth is not installed (xvfb-run needs it)"
command -v python3 >/dev/null || skip "python3 is not installed"
pkg-config --exists gtk4 json-glib-1.0 2>/dev/null ||
  skip "GTK 4 / json-glib development files are missing (Debian: apt-get install libgtk-4-dev libjson-glib-dev)"
if [ ! -f target/release/libmeshring.a ]; then
  echo "FAIL gui test: target/release/libmeshring.a is missing (run make lib first)"
  exit 1
fi
if ! make --no-print-directory -C examples/gtk >/dev/null; then
  echo "FAIL gui test: examples/gtk does not build"
  exit 1
fi

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
# No accessibility bus or session D-Bus under Xvfb: keep GTK from looking for them.
export GTK_A11Y=none
export MESHRING_LOG=warn

passed=0
failed=0

# run NAME [app args...]: the app under a private X server, output to $OUT/NAME.log.
run_app() {
  local name=$1
  shift
  timeout 300 xvfb-run -a -s "-screen 0 1280x900x24" "$APP" --script \
    --dump-model "$OUT/$name.json" --screenshot "$OUT/$name.png" "$@" >"$OUT/$name.log" 2>&1
}

# case NAME MODE [app args...]: run, then check the dump in MODE.
gui_case() {
  local name=$1 mode=$2
  shift 2
  echo "gui: $name ($*)"
  local t0=$SECONDS
  if ! run_app "$name" "$@"; then
    echo "  FAIL: the app exited with an error; its output:"
    sed 's/^/    /' "$OUT/$name.log" | tail -20
    failed=$((failed + 1))
    return
  fi
  if python3 "$CHECK" "$mode" "$OUT/$name.json" "$OUT/$name.png"; then
    echo "  PASS $name ($((SECONDS - t0)) s)"
    passed=$((passed + 1))
  else
    echo "  FAIL $name; app output:"
    sed 's/^/    /' "$OUT/$name.log" | tail -10
    failed=$((failed + 1))
  fi
}

# MapResponse lines for the feed case: a netmap, patches, a malformed line,
# peers joining below and above the known IDs, a removal, an OnlineChange
# and a full-node change of a subnet router's routes.
cat >"$OUT/feed.jsonl" <<'EOF'
{"Node":{"ID":1,"Name":"me.tail.example.ts.net.","User":1,"Addresses":["100.64.0.1/32"]},"UserProfiles":[{"ID":1,"LoginName":"me@example.com","DisplayName":"Me"}],"Peers":[{"ID":10,"Name":"alpha.tail.example.ts.net.","User":1,"Addresses":["100.64.0.10/32"],"AllowedIPs":["100.64.0.10/32","10.1.0.0/16"],"HomeDERP":1,"Online":true},{"ID":20,"Name":"beta.tail.example.ts.net.","User":1,"Addresses":["100.64.0.20/32","fd7a:115c:a1e0::14/128"],"AllowedIPs":["100.64.0.20/32","fd7a:115c:a1e0::14/128"],"Online":false,"LastSeen":"2025-05-01T10:00:00Z"},{"ID":30,"Name":"gamma.tail.example.ts.net.","User":1,"Addresses":["100.64.0.30/32"],"AllowedIPs":["100.64.0.30/32","0.0.0.0/0","::/0"],"HomeDERP":3},{"ID":40,"Name":"","User":1,"Hostinfo":{"Hostname":"delta","OS":"linux"},"Addresses":["100.64.0.40/32"],"AllowedIPs":["100.64.0.40/32"]}]}
{"PeersChangedPatch":[{"NodeID":20,"Online":true,"DERPRegion":4},{"NodeID":10,"Online":false,"LastSeen":"2025-06-01T12:00:00Z"}]}
{"Peers": [ this line is not JSON
{"PeersChanged":[{"ID":25,"Name":"epsilon.tail.example.ts.net.","User":1,"Addresses":["100.64.0.25/32"],"AllowedIPs":["100.64.0.25/32"],"Online":true,"HomeDERP":2},{"ID":50,"Name":"zeta.tail.example.ts.net.","User":1,"Addresses":["100.64.0.50/32"],"AllowedIPs":["100.64.0.50/32","192.168.50.0/24"]}]}
{"PeersRemoved":[30]}
{"OnlineChange":{"40":true}}
{"PeersChanged":[{"ID":10,"Name":"alpha.tail.example.ts.net.","User":1,"Addresses":["100.64.0.10/32"],"AllowedIPs":["100.64.0.10/32","10.1.0.0/16","10.2.0.0/16"],"HomeDERP":1,"Online":true}]}
EOF

gui_case session session --peers 3000 --deltas 6000
gui_case empty empty --peers 0
gui_case closed closed --peers 3000 --deltas 20000 --rate 10000 --close-bus
echo "gui: feed (--feed - --unchunked, 7 lines on stdin)"
t0=$SECONDS
if timeout 300 xvfb-run -a -s "-screen 0 1280x900x24" "$APP" --script --feed - --unchunked \
  --dump-model "$OUT/feed.json" --screenshot "$OUT/feed.png" <"$OUT/feed.jsonl" >"$OUT/feed.log" 2>&1 &&
  python3 "$CHECK" feed "$OUT/feed.json" "$OUT/feed.png"; then
  echo "  PASS feed ($((SECONDS - t0)) s)"
  passed=$((passed + 1))
else
  echo "  FAIL feed; app output:"
  sed 's/^/    /' "$OUT/feed.log" | tail -10
  failed=$((failed + 1))
fi

if [ -n "${GUI_TEST_KEEP:-}" ]; then
  mkdir -p "$GUI_TEST_KEEP" && cp "$OUT"/* "$GUI_TEST_KEEP"/ && echo "gui: outputs kept in $GUI_TEST_KEEP"
fi
echo "gui: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
