"""Turns RESULT lines from the UDP benchmarks into the comparison table."""
import statistics
import sys
from collections import defaultdict

runs = defaultdict(list)
for line in open(sys.argv[1]):
    if not line.startswith("RESULT "):
        continue
    f = dict(kv.split("=", 1) for kv in line.split()[1:])
    f.setdefault("mode", "stream")
    key = (f["impl"], f["mode"], int(f["payload"]))
    secs = max(float(f["seconds"]), 1e-9)
    got = int(f["received"])
    runs[key].append({
        "pps": got / secs,
        "bps": got * int(f["payload"]) * 8 / secs,
        "cpu": float(f["rx_cpu_us"]) / max(got, 1),
        "loss": 1 - got / int(f["sent"]),
    })

def med(key, field):
    return statistics.median(r[field] for r in runs[key])

def base_of(impl):
    return "recvmmsg-gso" if impl.endswith("-gso") else "recvmmsg"

print(f"{'impl':<19}{'mode':<8}{'payload':>8}{'Mpps':>8}{'Gbit/s':>8}{'rx us/pkt':>11}{'loss':>7}"
      f"{'pps vs recvmmsg':>17}{'cpu vs recvmmsg':>17}")
order = ["recvmmsg", "meshring-uring", "meshring-multishot", "meshring-batch", "go-net", "recvmmsg-gso", "meshring-gso"]
for key in sorted(runs, key=lambda k: (k[2], k[1], order.index(k[0]) if k[0] in order else 99)):
    impl, mode, payload = key
    base = (base_of(impl), mode, payload)
    pps, cpu = med(key, "pps"), med(key, "cpu")
    vs = f"{pps / med(base, 'pps'):.2f}x" if base in runs else "-"
    cvs = f"{cpu / med(base, 'cpu'):.2f}x" if base in runs else "-"
    print(f"{impl:<19}{mode:<8}{payload:>8}{pps / 1e6:>8.3f}{med(key, 'bps') / 1e9:>8.2f}{cpu:>11.3f}"
          f"{med(key, 'loss') * 100:>6.1f}%{vs:>17}{cvs:>17}")

# The goals, stated as ratios.
def ratio(a, b, field="pps"):
    return med(a, field) / med(b, field) if a in runs and b in runs else float("nan")
print()
for payload in (64, 1400):
    print(f"payload {payload}: io_uring receive vs recvmmsg (drain, pps): {ratio(('meshring-uring', 'drain', payload), ('recvmmsg', 'drain', payload)):.2f}x "
          f"(goal >= 1.2x); CPU/pkt ratio {ratio(('meshring-uring', 'drain', payload), ('recvmmsg', 'drain', payload), 'cpu'):.2f}x (goal <= 1.0x); "
          f"vs Go net.UDPConn (stream, pps): {ratio(('meshring-uring', 'stream', payload), ('go-net', 'stream', payload)):.2f}x (goal >= 3x)")
print(f"GSO/GRO vs our non-GSO io_uring path (1400 B, stream, bytes/s): "
      f"{ratio(('meshring-gso', 'stream', 1400), ('meshring-uring', 'stream', 1400), 'bps'):.2f}x (goal >= 3x); "
      f"drain: {ratio(('meshring-gso', 'drain', 1400), ('meshring-uring', 'drain', 1400), 'bps'):.2f}x")
