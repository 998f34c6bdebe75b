#!/usr/bin/env python3
"""trace_layer.py: the ops of one layer of a traced decode step, as a table.

    MLK_TRACE=trace.json MLK_TRACE_RUNS=1 decode_bench --points=1:128 --steps=20
    python3 bench/decode/trace_layer.py trace.json [--layer L] [--run N] [--markdown]
                                        [--against other.json | --chain]

Reads the Chrome trace JSON the runtime writes (MLK_TRACE, runtime/trace.c): a process per run, a
thread per block, a "wait" slice and a tile slice per task. For the ops of layer L (names ending
in [l=L], or every op with --layer all) of run N (default: the last run in the file), in the order
their first task started: tasks, the op's window (its first task's start to its last task's end),
the median and largest running time of a task, the median wait before a task, how far the op's
window overlaps the previous op's, and, for tiles that stamp their phases (a matvec), the
median time from the tile's start to its inputs staged, its first weights in shared memory (fed
by the weight stream) or its first round of sums done (tensor cores), and its body done (the rest of the running time is the barrier and the notifies),
and for tasks that record them, the medians of a task's summed waits for its chunks' copies and of
the loader's pumps during it (chunk_wait_us, issue_us). Ends with the layer's span (its first start to its last end) and
the whole run's, so a layer's cost can be set against its bytes at the floor.

--chain: instead, the layer as a chain of ready times, for the op order on the critical path: per
op (in the order of their tasks' median ready time) its tasks' first, median and last ready time
(a task is ready when its wait ends) and its last task's end, in us from the layer's first ready
task. An op that becomes ready well after the ops it reads have ended (its SMs busy with an earlier
task, or its poll late), or whose last task ends well after its median one (a slow task holding
the next op), shows there.

--against OTHER: the same layer of OTHER's last run (another build's trace of the same model and
point) beside each op: its median running time there and the difference (this trace's minus
OTHER's), ops matched by name ("-" where OTHER has no such op), and OTHER's layer span: which ops
a change made slower or faster.
"""
import argparse
import json
import re
import statistics
import sys


PHASES = ("staged_us", "first_us", "body_us")
SUMS = ("chunk_wait_us", "issue_us")  # a streamed task's summed chunk waits and loader pumps


def phases(o):
    """'staged / first / body' medians, or '-' when the op's tasks stamped none."""
    if not o["phases"]["staged_us"]:
        return "-"
    return " / ".join(f"{statistics.median(v):.2f}" if v else "-"
                      for v in (o["phases"][p] for p in PHASES))


def sums(o):
    """'chunk waits / issue' medians, or '-' when the op's tasks recorded none."""
    if not o["sums"]["issue_us"]:
        return "-"
    return " / ".join(f"{statistics.median(o['sums'][k]):.2f}" for k in SUMS)


def load(path):
    with open(path) as f:
        return json.load(f)


def runs_of(trace):
    """pid -> run name, in pid order."""
    names = {}
    for e in trace["traceEvents"]:
        if e.get("ph") == "M" and e.get("name") == "process_name":
            names[e["pid"]] = e["args"]["name"]
    return dict(sorted(names.items()))


def op_table(trace, pid, layer):
    ops = {}
    for e in trace["traceEvents"]:
        if e.get("ph") != "X" or e.get("pid") != pid or e.get("cat") == "wait":
            continue
        name = e["name"]
        if layer != "all":
            m = re.search(r"\[l=(\d+)\]", name)
            if not m or int(m.group(1)) != layer:
                continue
        start, dur = float(e["ts"]), float(e["dur"])
        wait = float(e["args"].get("wait_us", 0))
        o = ops.setdefault(name, {"kind": e["cat"], "runs": [], "waits": [], "first": start,
                                  "last": start + dur, "blocks": set(), "ready": [],
                                  "phases": {p: [] for p in PHASES},
                                  "sums": {k: [] for k in SUMS}})
        o["runs"].append(dur)
        o["ready"].append(start)
        for p in PHASES:
            if p in e["args"]:
                o["phases"][p].append(float(e["args"][p]))
        if all(k in e["args"] for k in SUMS):
            for k in SUMS:
                o["sums"][k].append(float(e["args"][k]))
        o["waits"].append(wait)
        o["first"] = min(o["first"], start - wait)
        o["last"] = max(o["last"], start + dur)
        o["blocks"].add(e["tid"])
    return sorted(ops.items(), key=lambda kv: kv[1]["first"])


def run_span(trace, pid):
    lo, hi = None, None
    for e in trace["traceEvents"]:
        if e.get("ph") == "X" and e.get("pid") == pid:
            s, t = float(e["ts"]), float(e["ts"]) + float(e["dur"])
            lo = s if lo is None else min(lo, s)
            hi = t if hi is None else max(hi, t)
    return (hi - lo) if lo is not None else 0.0


def print_table(head, table, markdown):
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in table:
            print("| " + " | ".join(r) + " |")
    else:
        w = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(head)]
        print("  ".join(h.ljust(w[i]) for i, h in enumerate(head)))
        for r in table:
            print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)))


def chain_table(run, layer, rows, markdown):
    """--chain: each op's ready times and last end, from the layer's first ready task."""
    t0 = min(min(o["ready"]) for _, o in rows)
    order = sorted(rows, key=lambda kv: statistics.median(kv[1]["ready"]))
    print(f"{run}, layer {layer}: ready and end times, us from its first ready task")
    head = ["op", "tasks", "first ready", "median ready", "last ready", "last end"]
    table = [[name, str(len(o["ready"])), f"{min(o['ready']) - t0:.1f}",
              f"{statistics.median(o['ready']) - t0:.1f}", f"{max(o['ready']) - t0:.1f}",
              f"{o['last'] - t0:.1f}"] for name, o in order]
    print_table(head, table, markdown)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trace")
    ap.add_argument("--layer", default="1", help="layer index, or 'all' (default 1)")
    ap.add_argument("--run", type=int, default=0, help="pid of the run (default: the last)")
    ap.add_argument("--markdown", action="store_true", help="a Markdown table")
    ap.add_argument("--against", metavar="OTHER", help="another build's trace: its run medians beside")
    ap.add_argument("--chain", action="store_true",
                    help="ready and end times of each op instead (the layer's critical path)")
    a = ap.parse_args()
    layer = a.layer if a.layer == "all" else int(a.layer)
    trace = load(a.trace)
    runs = runs_of(trace)
    if not runs:
        sys.exit(f"{a.trace}: no runs in the trace")
    pid = a.run or max(runs)
    if pid not in runs:
        sys.exit(f"{a.trace}: no run {pid} (runs: {', '.join(map(str, runs))})")
    rows = op_table(trace, pid, layer)
    if not rows:
        sys.exit(f"{a.trace}: run {pid} has no op of layer {layer}")
    if a.chain:
        if a.against:
            sys.exit("--chain and --against are separate tables: give one")
        chain_table(runs[pid], layer, rows, a.markdown)
        return
    other = None
    if a.against:
        otrace = load(a.against)
        oruns = runs_of(otrace)
        if not oruns:
            sys.exit(f"{a.against}: no runs in the trace")
        orows = op_table(otrace, max(oruns), layer)
        if not orows:
            sys.exit(f"{a.against}: run {max(oruns)} has no op of layer {layer}")
        other = dict(orows)
    print(f"{runs[pid]}, layer {layer}")
    head = ["op", "kind", "tasks", "blocks", "window us", "overlap us", "run us (median)",
            "run us (max)", "wait us (median)", "staged / first / body us (median)",
            "chunk waits / issue us (median)"]
    if other is not None:
        head += ["against: run us (median)", "difference us"]
    table = []
    prev_last = None
    for name, o in rows:
        overlap = max(0.0, prev_last - o["first"]) if prev_last is not None else 0.0
        table.append([name, o["kind"], str(len(o["runs"])), str(len(o["blocks"])),
                      f"{o['last'] - o['first']:.1f}", f"{overlap:.1f}",
                      f"{statistics.median(o['runs']):.2f}", f"{max(o['runs']):.2f}",
                      f"{statistics.median(o['waits']):.2f}", phases(o), sums(o)])
        if other is not None:
            mine = statistics.median(o["runs"])
            theirs = statistics.median(other[name]["runs"]) if name in other else None
            table[-1] += ["-", "-"] if theirs is None else [f"{theirs:.2f}",
                                                            f"{mine - theirs:+.2f}"]
        prev_last = o["last"] if prev_last is None else max(prev_last, o["last"])
    first = min(o["first"] for _, o in rows)
    last = max(o["last"] for _, o in rows)
    print_table(head, table, a.markdown)
    print(f"layer span: {last - first:.1f} us; run span: {run_span(trace, pid):.1f} us")
    if other is not None:
        ofirst = min(o["first"] for o in other.values())
        olast = max(o["last"] for o in other.values())
        print(f"against: layer span {olast - ofirst:.1f} us")


if __name__ == "__main__":
    main()
