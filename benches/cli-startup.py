#!/usr/bin/env python3
"""Wall time and peak RSS of the CLI against flock(1), measured side by side in one run.

    cargo build --release -p onlyone-cli
    benches/cli-startup.py [ONLYONE_BINARY]     # default target/release/onlyone

Wall: PAIRS alternating blocks (flock block, onlyone block; the order flips every pair) of
RUNS runs each, every run a fork + exec + wait of the whole command from this script; the ratio is
the median of the pairs' ratios, with their min-max. Peak RSS: `/usr/bin/time -v`'s "Maximum
resident set size" (the larger of onlyone's and its job's), min / median / max of 20 runs.
"""
import os, re, statistics, subprocess, sys, time

PAIRS, RUNS = 9, 100
binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/onlyone"
lock = f"/tmp/onlyone-cli-startup-{os.getpid()}.lock"
commands = {
    "flock(1)": ["flock", "-n", lock, "true"],
    "onlyone (abstract)": [binary, "run", "-N", f"cli-startup-{os.getpid()}", "--", "true"],
    "onlyone -b flock": [binary, "run", "-b", "flock", "--lock-dir", "/tmp", "-N",
                         f"cli-startup-{os.getpid()}", "--", "true"],
}

def block(cmd):
    start = time.perf_counter()
    for _ in range(RUNS):
        subprocess.run(cmd, check=True)
    return (time.perf_counter() - start) / RUNS

def rss(cmd):
    out = []
    for _ in range(20):
        r = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True, check=True)
        out.append(int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1)))
    out.sort()
    return out[0], out[len(out) // 2], out[-1]

for c in commands.values():
    block(c)  # warm-up
print(f"load average {os.getloadavg()[0]:.1f}; {PAIRS} pairs of {RUNS}-run blocks")
print("| command | wall per run (median of blocks) | ÷ flock(1), median of pairs [min-max] | peak RSS KiB min / median / max |")
print("| --- | --- | --- | --- |")
base = commands["flock(1)"]
for name, cmd in commands.items():
    ratios, mine, theirs = [], [], []
    for i in range(PAIRS):
        if i % 2 == 0:
            b = block(base); a = block(cmd)
        else:
            a = block(cmd); b = block(base)
        ratios.append(a / b); mine.append(a); theirs.append(b)
    lo, med, hi = rss(cmd)
    print(f"| `{' '.join(cmd)}` | {statistics.median(mine) * 1e3:.3f} ms | "
          f"{statistics.median(ratios):.2f}× [{min(ratios):.2f}-{max(ratios):.2f}] | {lo} / {med} / {hi} |")
# flock(1)'s lock file, and the one `-b flock --lock-dir /tmp` left (onlyone never deletes lock files).
for path in (lock, f"/tmp/cli-startup-{os.getpid()}.lock"):
    if os.path.exists(path):
        os.unlink(path)
