#!/usr/bin/env python3
"""ncu_table.py: where a megakernel's warps spend their time, from an Nsight Compute source export.

Input: the per-instruction CSV that `ncu --import REPORT --page source --csv --print-source sass`
writes for a report taken with `--section SourceCounters` (bench/decode/profile.sh makes both). The
export has one block per function of the kernel (a "Kernel Name" row, then a header row, then one
row per SASS instruction); the megakernel's tiles are functions of their own, so the blocks say
which tile the samples fall in.

Prints, per function, its share of all warp samples, its executed warp instructions and its top
stall reasons; with --function NAME, that function's hottest instructions (samples, the two main
stall reasons, executions), its samples by opcode (--ops), or by address range (--ranges
OFF1,OFF2,... with --names A,B,...: offsets are the low 20 bits of the addresses the instruction
list shows, and the ranges are [start, OFF1), [OFF1, OFF2), ...).

  ncu_table.py SOURCE.csv [--top N] [--function NAME [--instructions N] [--ops]
                                                     [--ranges OFFS [--names NAMES]]]
"""
import argparse
import collections
import csv
import sys

SAMPLES = "Warp Stall Sampling (All Samples)"
EXECUTED = "Instructions Executed"


def fail(msg):
    print("ncu_table.py: " + msg, file=sys.stderr)
    sys.exit(1)


def number(text):
    try:
        return float(text.replace(",", "")) if text not in ("", "-") else 0.0
    except ValueError:
        return 0.0


def load(path):
    """[(function, address, sass, samples, executed, {stall: samples})] in file order."""
    try:
        with open(path, newline="", errors="replace") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        fail("cannot read %s: %s" % (path, e.strerror))
    out, fn, idx = [], None, None
    for r in rows:
        if not r:
            continue
        if r[0] == "Kernel Name":
            fn = r[1] if len(r) > 1 else "?"
            continue
        if r[0] == "Address":
            idx = {c: i for i, c in enumerate(r)}
            if SAMPLES not in idx:
                fail("%s: no '%s' column (was the report taken with --section "
                     "SourceCounters?)" % (path, SAMPLES))
            continue
        if idx is None or fn is None:
            continue
        try:
            addr = int(r[0], 16)
        except ValueError:
            continue
        stalls = {c[len("stall_"):]: number(r[i]) for c, i in idx.items()
                  if c.startswith("stall_") and "(Not Issued)" not in c and i < len(r)}
        out.append((fn, addr, r[idx["Source"]].strip() if "Source" in idx else "",
                    number(r[idx[SAMPLES]]), number(r[idx[EXECUTED]]) if EXECUTED in idx else 0.0,
                    stalls))
    if not out:
        fail("%s: no instruction rows (expected the CSV of ncu --page source --csv "
             "--print-source sass)" % path)
    return out


def top_stalls(counter, n):
    total = sum(counter.values()) or 1.0
    return ", ".join("%s %.0f%%" % (k, 100.0 * v / total) for k, v in counter.most_common(n) if v > 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv")
    ap.add_argument("--top", type=int, default=12, help="functions listed (default 12)")
    ap.add_argument("--function", help="a function's instructions, opcodes or ranges")
    ap.add_argument("--instructions", type=int, default=25, help="its hottest instructions listed")
    ap.add_argument("--ops", action="store_true", help="its samples and executions by opcode")
    ap.add_argument("--ranges", help="its samples by address range: OFF1,OFF2,... (hex)")
    ap.add_argument("--names", help="names of the ranges (one more than the offsets)")
    a = ap.parse_args()
    rows = load(a.csv)
    total = sum(r[3] for r in rows) or 1.0
    per = collections.OrderedDict()
    for fn, _, _, s, e, st in rows:
        d = per.setdefault(fn, [0.0, 0.0, collections.Counter()])
        d[0] += s
        d[1] += e
        d[2].update(st)
    print("%d warp samples in %d functions" % (total, len(per)))
    print("%-44s %8s %14s  %s" % ("function", "samples", "executed", "top stall reasons"))
    for fn, (s, e, st) in sorted(per.items(), key=lambda kv: -kv[1][0])[:a.top]:
        print("%-44s %7.1f%% %14d  %s" % (fn[:44], 100.0 * s / total, e, top_stalls(st, 4)))
    if not a.function:
        return
    mine = [r for r in rows if r[0] == a.function]
    if not mine:
        fail("no function '%s' in %s (the table above lists them)" % (a.function, a.csv))
    fs = sum(r[3] for r in mine) or 1.0
    print("\n%s: its hottest instructions (%% of all samples)" % a.function)
    for fn, addr, sass, s, e, st in sorted(mine, key=lambda r: -r[3])[:a.instructions]:
        reasons = " ".join("%s:%d" % (k, v) for k, v in collections.Counter(st).most_common(2) if v)
        print("%05x %7d %5.2f%%  %-52s %s exec %d" % (addr & 0xFFFFF, s, 100.0 * s / total,
                                                   sass[:52], reasons, e))
    if a.ops:
        ops_s, ops_e = collections.Counter(), collections.Counter()
        for _, _, sass, s, e, _ in mine:
            words = sass.split()
            if words and words[0].startswith("@"):
                words = words[1:]
            op = words[0].split(".")[0] if words else "?"
            ops_s[op] += s
            ops_e[op] += e
        te = sum(ops_e.values()) or 1.0
        print("\n%s by opcode: %% of its samples, %% of its executed instructions" % a.function)
        for op, s in ops_s.most_common(20):
            print("%-10s %5.1f%% %5.1f%%" % (op, 100.0 * s / fs, 100.0 * ops_e[op] / te))
    if a.ranges:
        try:
            cuts = [int(x, 16) for x in a.ranges.split(",")]
        except ValueError:
            fail("--ranges: hexadecimal offsets separated by commas, e.g. b92c0,b9e10")
        names = a.names.split(",") if a.names else ["to %05x" % c for c in cuts] + ["after"]
        if len(names) != len(cuts) + 1:
            fail("--names: %d names for %d ranges" % (len(names), len(cuts) + 1))
        acc, ex = [0.0] * len(names), [0.0] * len(names)
        for _, addr, _, s, e, _ in mine:
            i = sum((addr & 0xFFFFF) >= c for c in cuts)
            acc[i] += s
            ex[i] += e
        print("\n%s by address range: %% of its samples, %% of all, executed" % a.function)
        for n, s, e in zip(names, acc, ex):
            print("%-16s %5.1f%% %5.1f%% %14d" % (n, 100.0 * s / fs, 100.0 * s / total, e))


if __name__ == "__main__":
    main()
