"""bench/decode's report: reads what floor.py, decode_bench and llama_torch.py wrote in one run and
prints the table (point, mlkc ms, floor ms, % of floor, peer ms, mlkc vs peer, target, result),
then writes it all as one JSON file. Standard library only.

  python3 bench/decode/report.py --floor floor.json --mlkc mlkc.jsonl --peer peer.jsonl \
      [--targets bench/decode/targets.json] [--json decode.json]

A point's floor is the bytes it must move, every weight once (the tied embedding read in full by
the LM head) plus the KV cache of its context for every row, over the streaming-read rate measured
in the same run. % of floor = floor / mlkc; vs peer = peer / mlkc (above 1: mlkc is faster). A
point's result: "pass" when it meets every target it has (targets.json: max_ms for some points,
min_vs_peer for every point), "miss (...)" naming those it misses, "incomplete (...)" when a
number is missing, "n/a (...)" when a side was not timed on the device (the CPU simulator). Start:
cold is the first process, on an empty cubin cache (a binary whose model carries its cubin, mlkc
--cubin, loads that); cold, JIT the same with the built-in cubin ignored (MLK_BUILTIN_CUBIN=0: the
driver compiles the PTX); warm the last, a cache hit or the built-in cubin. A missing or
truncated input file leaves its columns empty; the report still prints. Exit status 2 only when
an input cannot be parsed at all or the arguments are wrong.
"""
import argparse
import json
import os
import sys


# The starts (decode_bench --start-only labels) and their targets: the first process on an empty
# cubin cache, the same with the driver compiling the PTX, then a start with the cache filled.
# (label, target key, row name)
STARTS = (("cold", "cold_start_max_s", "cold (empty cache)"),
          ("cold_jit", "cold_start_max_s", "cold, PTX compiled"),
          ("warm", "warm_start_max_s", "warm (second start)"))


def read_json(path, notes):
    if not path or not os.path.exists(path):
        notes.append(f"no file {path}" if path else "no floor file given")
        return None
    with open(path) as f:
        return json.load(f)


def read_lines(path, notes):
    """Records of a JSON-lines file; a line that does not parse (a process killed mid-line) is
    skipped with a note."""
    if not path or not os.path.exists(path):
        notes.append(f"no file {path}")
        return []
    recs = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except ValueError:
                notes.append(f"{path}:{i}: not JSON, skipped")
                continue
            if isinstance(r, dict):
                recs.append(r)
    return recs


def fmt(v, spec, missing="-"):
    return missing if v is None else format(v, spec)


def verdict(checks, na, missing):
    """checks: [(name, True/False/None)]; na: why the numbers are not device numbers, or None;
    missing: what is missing for the checks that are None ("mlkc", "peer")."""
    if na:
        return f"n/a ({na})"
    missed = [n for n, ok in checks if ok is False]
    if missed:
        return "miss (" + ", ".join(missed) + ")"
    if any(ok is None for _, ok in checks):
        return "incomplete (no " + ", ".join(missing or ["data"]) + ")"
    return "pass" if checks else "-"


def build(floor, mlkc, peer, targets):
    """The report as a dict (what decode.json holds)."""
    read_bps = floor["read_gbps"] * 1e9 if floor and floor.get("read_gbps") else None
    floor_na = floor is not None and floor.get("device_time") is False
    m_points = {(r["batch"], r["context"]): r for r in mlkc if r.get("kind") == "point"}
    p_points = {(r["batch"], r["context"]): r for r in peer if r.get("kind") == "point"}
    errors = [dict(r, side="mlkc") for r in mlkc if r.get("kind") == "error"] + \
             [dict(r, side="peer") for r in peer if r.get("kind") == "error"]
    weights = next((r for r in mlkc if r.get("kind") == "weights"), None)
    p_env = next((r for r in peer if r.get("kind") == "env"), None)
    starts = {r.get("label"): r for r in mlkc if r.get("kind") == "start"}
    t_points = {(t["batch"], t["context"]): t for t in targets.get("points", [])}
    min_vs = targets.get("min_vs_peer")
    keys = set(m_points) | set(p_points) | {(e["batch"], e["context"]) for e in errors if "batch" in e}
    points = []
    for key in sorted(keys, key=lambda k: (k[1], k[0])):
        b, c = key
        m, p = m_points.get(key), p_points.get(key)
        wb = (m or {}).get("weight_bytes") or (weights or {}).get("bytes") or (p or {}).get("weight_bytes") \
            or (p_env or {}).get("weight_bytes")
        kv = (m or {}).get("kv_bytes")
        if kv is None:
            per_tok = (weights or {}).get("kv_bytes_per_token") or (p_env or {}).get("kv_bytes_per_token")
            kv = per_tok * b * c if per_tok is not None else None
        fbytes = wb + kv if wb is not None and kv is not None else None
        floor_ms = fbytes / read_bps * 1e3 if fbytes is not None and read_bps else None
        m_ms = m["median_ms"] if m else None
        p_ms = p["median_ms"] if p else None
        pct = 100.0 * floor_ms / m_ms if floor_ms and m_ms else None
        vs = p_ms / m_ms if p_ms and m_ms else None
        t = t_points.get(key, {})
        checks = []
        if t.get("max_ms") is not None:
            checks.append(("ms", None if m_ms is None else m_ms <= t["max_ms"]))
        if min_vs is not None:
            checks.append(("peer", None if vs is None else vs >= min_vs))
        na = None
        if m and m.get("device_time") is False or (weights or {}).get("device_time") is False:
            na = "mlkc not timed on a GPU"
        elif p and p.get("device_time") is False:
            na = "peer not timed on a GPU"
        missing = (["mlkc"] if m is None else []) + (["peer"] if p is None and min_vs is not None else [])
        target = ", ".join(([f"<= {t['max_ms']:.2f} ms"] if t.get("max_ms") is not None else []) +
                           ([f">= {min_vs:g}x peer"] if min_vs is not None else []))
        points.append({
            "batch": b, "context": c, "mlkc": m, "peer": p, "floor_bytes": fbytes, "floor_ms": floor_ms,
            "pct_of_floor": pct, "vs_peer": vs, "max_ms": t.get("max_ms"), "min_vs_peer": min_vs,
            "target": target, "checks": {n: ok for n, ok in checks}, "result": verdict(checks, na, missing),
            "errors": [e.get("message", "") for e in errors if (e.get("batch"), e.get("context")) == key],
        })
    first_peer = next((r for r in peer if r.get("kind") == "point"), None)
    start = {}
    for label, tkey, _ in STARTS:
        r = starts.get(label)
        if r is None and label == "cold_jit":
            continue  # not measured (SKIP), or a run from before the built-in cubin
        s = r["start_ms"] / 1e3 if r else None
        lim = targets.get(tkey)
        checks = [("time", None if s is None else s <= lim)] if lim is not None else []
        na = None
        hit, builtin = (r.get("cache_hit"), r.get("builtin_cubin", 0)) if r else (None, None)
        if r and not r.get("gpu"):
            na = "not on a GPU"
        elif r and label != "warm" and hit:
            na = "cache hit on an empty cache"
        elif r and label == "cold_jit" and builtin:
            na = "the built-in cubin was loaded"
        elif r and label == "warm" and not (hit or builtin):
            na = "no cache hit"
        res = verdict(checks, na, ["mlkc"])
        if na and r and r.get("gpu"):
            res = f"invalid ({na})"
        peer_s = first_peer.get("warmup_s") if (label == "cold" and first_peer) else None
        peer_pt = [first_peer["batch"], first_peer["context"]] if peer_s is not None else None
        start[label] = {"record": r, "start_s": s, "max_s": lim, "result": res, "peer_warmup_s": peer_s,
                        "peer_point": peer_pt}
    results = [p["result"] for p in points] + [s["result"] for s in start.values()]
    summary = {"pass": sum(r == "pass" for r in results), "miss": sum(r.startswith("miss") for r in results),
               "other": sum(not (r == "pass" or r.startswith("miss")) for r in results)}
    device = (floor or {}).get("device") or (p_env or {}).get("device") or \
        next((r.get("backend") for r in starts.values()), None)
    return {"device": device, "floor": floor, "floor_not_device_time": floor_na, "targets": targets,
            "points": points, "start": start, "errors": errors, "summary": summary}


def table(rep, notes):
    out = []
    f = rep["floor"]
    head = f"decode benchmark on {rep['device'] or '?'}"
    if f:
        head += (f"; floor: streaming read {f['read_gbps']:.0f} GB/s (a {f['read_bytes'] / 2**30:g} GiB sum, "
                 f"median of {f.get('runs', '?')}), copy {f['copy_gbps']:.0f} GB/s (read + write)")
        if rep["floor_not_device_time"]:
            head += " [not device time]"
    else:
        head += "; floor: not measured"
    out.append(head)
    cols = ("point", "mlkc ms", "floor ms", "% of floor", "peer ms", "vs peer", "target", "result")
    w = (20, 9, 9, 11, 9, 8, 26)
    row = lambda cells: "  ".join(str(x).ljust(n) if i in (0, 6) else str(x).rjust(n)
                                  for i, (x, n) in enumerate(zip(cells, w))) + "  " + str(cells[-1])
    out.append(row(cols))
    for p in rep["points"]:
        m, pe = p["mlkc"], p["peer"]
        pct = fmt(p["pct_of_floor"], ".1f") + ("%" if p["pct_of_floor"] else "")
        vs = fmt(p["vs_peer"], ".2f") + ("x" if p["vs_peer"] else "")
        out.append(row((f"batch {p['batch']}, ctx {p['context']}", fmt(m and m["median_ms"], ".4f"),
                        fmt(p["floor_ms"], ".4f"), pct, fmt(pe and pe["median_ms"], ".4f"), vs, p["target"],
                        p["result"])))
    out.append(row(("start", "mlkc s", "", "", "peer s", "", "", "")).rstrip())
    for label, _, name in STARTS:
        s = rep["start"].get(label)
        if s is None:
            continue
        ratio = s["peer_warmup_s"] / s["start_s"] if s["peer_warmup_s"] and s["start_s"] else None
        out.append(row((name, fmt(s["start_s"], ".3f"), "", "", fmt(s["peer_warmup_s"], ".1f"),
                        fmt(ratio, ".1f") + ("x" if ratio else ""),
                        f"<= {s['max_s']:g} s" if s["max_s"] is not None else "", s["result"])))
    for label, _, _ in STARTS:
        r = (rep["start"].get(label) or {}).get("record")
        if r:
            out.append(f"  {label}: backend {r.get('backend_ms', 0):.1f} ms, "
                       f"model {r.get('create_ms', 0):.1f} ms "
                       f"(module load {r.get('load_ms', 0):.1f} ms: {r.get('load_note', '')}), "
                       f"before main() {r.get('before_main_ms', 0):.1f} ms")
    if rep["start"]["cold"]["peer_point"]:
        b, c = rep["start"]["cold"]["peer_point"]
        out.append(f"  peer s: torch.compile and CUDA graph capture of its first point (batch {b}, ctx {c}), "
                   "not a target")
    for e in rep["errors"]:
        where = f" at batch {e['batch']}, ctx {e['context']}" if "batch" in e else ""
        out.append(f"error ({e['side']}){where}: {e.get('where', '')} {e.get('message', '')}".rstrip())
    for n in notes:
        out.append(f"note: {n}")
    s = rep["summary"]
    out.append(f"{s['pass']} pass, {s['miss']} miss, {s['other']} other")
    return "\n".join(out)


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--floor")
    ap.add_argument("--mlkc")
    ap.add_argument("--peer")
    ap.add_argument("--targets", default=os.path.join(here, "targets.json"))
    ap.add_argument("--json", help="write the report here (decode.json)")
    a = ap.parse_args(argv)
    notes = []
    try:
        targets = read_json(a.targets, notes) or {}
        floor = read_json(a.floor, notes)
        mlkc = read_lines(a.mlkc, notes)
        peer = read_lines(a.peer, notes)
    except (OSError, ValueError) as e:
        print(f"report.py: {e}", file=sys.stderr)
        return 2
    rep = build(floor, mlkc, peer, targets)
    rep["notes"] = notes
    print(table(rep, notes))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rep, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
