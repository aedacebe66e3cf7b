"""Prints the tunnel benchmark table from lines 'name gbps gbps ...'."""
import statistics
import sys

rows = [line.split() for line in sys.stdin if line.strip()]
med = {r[0]: statistics.median(float(x) for x in r[1:]) for r in rows}
base = med.get("plain-read-write") or float("nan")
veth = med.get("veth-direct") or float("nan")
print(f"{'tunnel (iperf3 TCP, A -> B)':<30}{'Gbit/s':>8}{'vs plain r/w':>14}{'vs veth':>10}   runs")
for r in rows:
    m = med[r[0]]
    print(f"{r[0]:<30}{m:>8.2f}{m / base:>13.2f}x{m / veth * 100:>9.0f}%   {' '.join(r[1:])}")
