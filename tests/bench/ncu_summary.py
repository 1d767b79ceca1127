#!/usr/bin/env python3
"""ncu_summary.py CSV [STEPS] - per-kernel GPU time from `ncu --metrics gpu__time_duration.sum
--csv --print-units base` (tests/gpu.sh profile): kernels grouped by name, their total per step
(STEPS: how many steps the profiled span held), share and launches per step, the 32 largest."""
import csv, sys, collections
rows = list(csv.reader(open(sys.argv[1])))
h = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
hdr = rows[h]; k = hdr.index("Kernel Name"); v = hdr.index("Metric Value")
tot = collections.defaultdict(float); cnt = collections.Counter()
for r in rows[h + 1:]:
    if len(r) <= v: continue
    try: t = float(r[v].replace(",", ""))
    except ValueError: continue
    name = r[k][:90]; tot[name] += t; cnt[name] += 1
steps = float(sys.argv[2]) if len(sys.argv) > 2 else 1
S = sum(tot.values())
print(f"kernels: {sum(cnt.values())} launches, {S/1e6/steps:.2f} ms GPU time per step")
for name, t in sorted(tot.items(), key=lambda x: -x[1])[:32]:
    print(f"{t/1e6/steps:8.3f} ms {100*t/S:5.1f}% {cnt[name]/steps:6.1f}x  {name}")
