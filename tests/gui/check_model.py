#!/usr/bin/env python3
"""Checks a model dump of meshring-gtk --script against the library's own view.

usage: check_model.py MODE MODEL.json [SCREENSHOT.png]

MODE
  session  rows equal the bus's netmap row by row, protocols equal
           `show protocols`, the disabled protocol is down, no banner,
           no empty state, and the screenshot is a real PNG of the window
  empty    no rows, the empty-state label is shown, the netmap has no peers
  closed   the view says the bus is closed (model, banner, status line)
  feed     as session, for a MapResponse-lines feed; one line was rejected

The expected row of a peer is derived here from its tailcfg.Node JSON, the
way the window is documented to show it:
  name       ComputedName, else Name without the trailing dot, else
             Hostinfo.Hostname, else "node <ID>"
  addresses  Addresses
  online     Online (true / false), None when absent
  last_seen  LastSeen, None when absent
  home_derp  HomeDERP, 0 when absent
  routes     AllowedIPs that are not in Addresses, in order
Prints one line per failed check and exits 1 if there is any.
"""
import json
import struct
import sys
import zlib

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
    return ok


def expected_row(node):
    name = node.get("ComputedName") or ""
    if not name and node.get("Name"):
        name = node["Name"]
        if len(name) > 1 and name.endswith("."):
            name = name[:-1]
    if not name:
        name = (node.get("Hostinfo") or {}).get("Hostname") or ""
    if not name:
        name = "node %d" % node["ID"]
    addresses = list(node.get("Addresses") or [])
    online = node.get("Online")
    return {
        "id": node["ID"],
        "name": name,
        "addresses": addresses,
        "online": online if isinstance(online, bool) else None,
        "last_seen": node.get("LastSeen"),
        "home_derp": node.get("HomeDERP") or 0,
        "routes": [p for p in (node.get("AllowedIPs") or []) if p not in addresses],
    }


def check_rows(view, netmap):
    rows = view["rows"]
    peers = sorted(netmap.get("Peers") or [], key=lambda n: n["ID"])
    check(len(rows) == len(peers), "rows: %d in the view, %d peers in mr_bus_netmap" % (len(rows), len(peers)))
    check(view["peer_count"] == len(rows), "peer_count %d != %d rows" % (view["peer_count"], len(rows)))
    mismatches = 0
    for got, node in zip(rows, peers):
        want = expected_row(node)
        if got != want:
            mismatches += 1
            if mismatches <= 5:
                diff = {k: (got.get(k), want[k]) for k in want if got.get(k) != want[k]}
                failures.append("row id %s differs from the netmap (view, library): %s" % (want["id"], diff))
    check(mismatches == 0, "%d rows differ from the netmap" % mismatches)
    return len(rows)


PROTO_FIELDS = ["name", "kind", "table", "state", "proto_state", "core_state", "info", "disabled", "preference", "since_ms"]


def check_protocols(view, show, disabled):
    got = {p["name"]: p for p in view["protocols"]}
    want = {p["name"]: p for p in show}
    check(sorted(got) == sorted(want), "protocols: view %s, show protocols %s" % (sorted(got), sorted(want)))
    for name in sorted(set(got) & set(want)):
        for f in PROTO_FIELDS:
            check(got[name].get(f) == want[name].get(f),
                  "protocol %s: %s is %r in the view, %r in show protocols" % (name, f, got[name].get(f), want[name].get(f)))
    if disabled:
        p = want.get(disabled, {})
        check(p.get("disabled") is True and p.get("state") == "down",
              "protocol %s should be disabled and down after the script, show protocols says %s" % (disabled, p))


def check_png(path):
    with open(path, "rb") as f:
        data = f.read()
    if not check(data[:8] == b"\x89PNG\r\n\x1a\n", "%s: not a PNG (bad signature)" % path):
        return
    check(data[12:16] == b"IHDR", "%s: no IHDR chunk" % path)
    width, height, depth, color = struct.unpack(">IIBB", data[16:26])
    check(width >= 400 and height >= 300, "%s: %dx%d is too small for the window" % (path, width, height))
    check(len(data) > 10000, "%s: only %d bytes" % (path, len(data)))
    # Decode the image data and require some variety (not one flat colour).
    idat, pos = b"", 8
    while pos + 8 <= len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + n]
        pos += 12 + n
    try:
        raw = zlib.decompress(idat)
    except zlib.error as e:
        check(False, "%s: image data does not decompress: %s" % (path, e))
        return
    check(len(set(raw[: 1 << 20])) > 16, "%s: the image is (almost) one colour" % path)
    print("  screenshot: %s, %dx%d, %d bytes" % (path, width, height, len(data)))


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    mode, model_path = sys.argv[1], sys.argv[2]
    with open(model_path) as f:
        model = json.load(f)
    view, lib = model["view"], model["library"]
    netmap, show = lib["netmap"], lib["show_protocols"]

    if mode in ("session", "feed"):
        check(view["bus"] == "open", "bus should be open, the view says %r" % view["bus"])
        check(not view["banner_visible"], "the bus-closed banner is shown on an open bus")
        check(not view["empty_state_visible"], "the empty state is shown while there are peers")
        check(view["initial_complete"], "the view never completed its initial network map")
        if check(netmap is not None, "mr_bus_netmap is missing from the dump"):
            n = check_rows(view, netmap)
            check(n > 0, "the session has no peers")
            print("  rows: %d, equal to mr_bus_netmap's peers field by field" % n)
        check_protocols(view, show, "lan")
        print("  protocols: %s" % ", ".join("%s=%s" % (p["name"], p["state"]) for p in view["protocols"]))
        if mode == "feed":
            check(view["feed_errors"] == 1, "the feed had one bad line, the view counted %d" % view["feed_errors"])
        if len(sys.argv) > 3:
            check_png(sys.argv[3])
    elif mode == "empty":
        check(view["rows"] == [], "rows should be empty, got %d" % len(view["rows"]))
        check(view["empty_state_visible"], "the empty-state label is not shown")
        check(netmap is not None and not (netmap.get("Peers") or []), "the netmap should have no peers")
        check(not view["banner_visible"], "the bus-closed banner is shown on an open bus")
        check_protocols(view, show, "lan")
        print("  empty state: %r" % view["empty_state"])
    elif mode == "closed":
        check(view["bus"] == "closed", "the view model says the bus is %r, not closed" % view["bus"])
        check(view["banner_visible"], "the bus-closed banner is not shown")
        check("bus closed" in view["banner"], "banner text %r lacks 'bus closed'" % view["banner"])
        check("bus closed" in view["status_line"], "status line %r lacks 'bus closed'" % view["status_line"])
        check(netmap is None, "mr_bus_netmap answered after the bus was closed")
        check(len(view["rows"]) > 0, "the last network map should stay on screen")
        check_protocols(view, show, "lan")
        print("  closed: banner %r, %d rows kept" % (view["banner"], len(view["rows"])))
    else:
        sys.exit("unknown mode %r" % mode)

    for f in failures:
        print("  FAIL: %s" % f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
