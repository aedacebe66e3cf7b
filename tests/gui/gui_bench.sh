#!/usr/bin/env bash
# Main-loop stall of the "meshring node" window (examples/gtk) under load:
# a 10k-peer demo tailnet streaming 20k deltas/s for SECONDS (10), with the
# window on a private Xvfb server. Prints the app's line
#   max main-loop stall: X ms (goal <= 16 ms), deltas applied: N
# and, from stderr, where the time went (load, drains, frames).
#
# Rendering uses GTK's cairo renderer: Xvfb has no GPU, so GTK's GL
# renderer would run on llvmpipe (software GL) and the figure would
# measure that rasteriser rather than the app. GSK_RENDERER=gl overrides.
# Skips (exit 0) without xvfb-run/xauth or the GTK 4 / json-glib dev files.
set -uo pipefail
cd "$(dirname "$0")/../.."
SECONDS_TO_RUN=${1:-10}

skip() { echo "SKIP gui bench: $*"; exit 0; }
command -v xvfb-run >/dev/null || skip "xvfb-run is not installed (Debian: apt-get install xvfb xauth)"
command -v xauth >/dev/null || skip "xauth is not installed (xvfb-run needs it)"
pkg-config --exists gtk4 json-glib-1.0 2>/dev/null ||
  skip "GTK 4 / json-glib development files are missing (Debian: apt-get install libgtk-4-dev libjson-glib-dev)"
[ -f target/release/libmeshring.a ] || { echo "FAIL gui bench: target/release/libmeshring.a is missing (make lib)"; exit 1; }
make --no-print-directory -C examples/gtk >/dev/null || { echo "FAIL gui bench: examples/gtk does not build"; exit 1; }

export GTK_A11Y=none
export GSK_RENDERER=${GSK_RENDERER:-cairo}
echo "gui bench: 10k peers, 20k deltas/s for ${SECONDS_TO_RUN} s, GSK_RENDERER=$GSK_RENDERER, Xvfb 1280x900"
timeout $((SECONDS_TO_RUN * 4 + 120)) xvfb-run -a -s "-screen 0 1280x900x24" \
  examples/gtk/bin/meshring-gtk --bench "$SECONDS_TO_RUN"
