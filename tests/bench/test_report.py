"""Tests of bench/decode/report.py on canned inputs (tests/bench/fixtures): the table, the floor
and ratio arithmetic, and every result a point or a start can get.

  python3 tests/bench/test_report.py [REPO_ROOT]
"""
import contextlib
import copy
import io
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "bench", "decode"))
import report  # noqa: E402

FIX = os.path.join(ROOT, "tests", "bench", "fixtures")
TARGETS = os.path.join(ROOT, "bench", "decode", "targets.json")
failures = []
passed = 0


def check(cond, what):
    global passed
    if cond:
        passed += 1
    else:
        failures.append(what)
        print(f"FAIL: {what}")


def run(*args):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = report.main(list(args))
    return rc, buf.getvalue()


def line_of(text, prefix):
    return next((l for l in text.splitlines() if l.startswith(prefix)), "")


def load(name):
    return report.read_lines(os.path.join(FIX, name), [])


# ---- the canned run: table and decode.json ----
with tempfile.TemporaryDirectory() as tmp:
    out_json = os.path.join(tmp, "decode.json")
    rc, text = run("--floor", os.path.join(FIX, "floor.json"), "--mlkc", os.path.join(FIX, "mlkc.jsonl"),
                   "--peer", os.path.join(FIX, "peer.jsonl"), "--targets", TARGETS, "--json", out_json)
    check(rc == 0, "report exits 0 on the canned run")
    check(text.startswith("decode benchmark on NVIDIA H200; floor: streaming read 4420 GB/s"), "header line")
    expect = {
        "batch 1, ctx 128 ": ("0.6500", "0.5601", "86.2%", "1.7300", "2.66x", "pass"),
        "batch 4, ctx 128 ": ("1.0000", "incomplete (no peer)"),
        "batch 16, ctx 128 ": ("0.7900", "2.28x", "miss (peer)"),
        "batch 64, ctx 128 ": ("1.3000", "2.55x", "<= 1.10 ms", "miss (ms)"),
        "batch 1, ctx 2048 ": ("2.5000", "0.91x", "<= 0.78 ms", "miss (ms, peer)"),
        "batch 4, ctx 2048 ": ("2.5000", "incomplete (no mlkc)"),
        "cold (empty cache)": ("3.100", "18.0", "<= 5 s", "pass"),
        "warm (second start)": ("0.250", "<= 0.2 s", "miss (time)"),
    }
    for prefix, parts in expect.items():
        l = line_of(text, prefix)
        check(l and all(p in l for p in parts), f"row '{prefix.strip()}' has {parts}: got '{l}'")
        check(l.rstrip().endswith(parts[-1]), f"row '{prefix.strip()}' ends with its result '{parts[-1]}'")
    check("16, ctx 2048" not in text, "a truncated record makes no row")
    check("note: " in text and "mlkc.jsonl:10: not JSON, skipped" in text, "the truncated line is noted")
    check("error (mlkc) at batch 4, ctx 2048: decode step megakernel" in text, "the error record is shown")
    check(text.rstrip().endswith("2 pass, 4 miss, 2 other"), "summary line")
    rows = [l for l in text.splitlines() if l.startswith("batch ")]
    check([r.split(":")[0][:18] for r in rows] == [
        "batch 1, ctx 128  ", "batch 4, ctx 128  ", "batch 16, ctx 128 ", "batch 64, ctx 128 ",
        "batch 1, ctx 2048 ", "batch 4, ctx 2048 "], f"rows sorted by context, then batch: {rows}")
    with open(out_json) as f:
        rep = json.load(f)
    pts = {(p["batch"], p["context"]): p for p in rep["points"]}
    # floor = (weights + 32 KiB per position and row) / 4420 GB/s
    check(abs(pts[(1, 128)]["floor_ms"] - (2471628800 + 32768 * 128) / 4.42e12 * 1e3) < 1e-9,
          "floor of b1 c128")
    check(abs(pts[(64, 128)]["floor_bytes"] - (2471628800 + 32768 * 128 * 64)) < 1, "bytes of b64 c128")
    check(abs(pts[(4, 2048)]["floor_bytes"] - (2471628800 + 32768 * 2048 * 4)) < 1,
          "floor of a point without mlkc numbers, from the weights record")
    check(abs(pts[(1, 128)]["vs_peer"] - 1.73 / 0.65) < 1e-12, "vs peer = peer / mlkc")
    check(abs(pts[(1, 128)]["pct_of_floor"] - 100 * pts[(1, 128)]["floor_ms"] / 0.65) < 1e-9, "% of floor")
    check(pts[(16, 128)]["checks"] == {"ms": True, "peer": False}, "checks of b16 c128")
    check(rep["summary"] == {"pass": 2, "miss": 4, "other": 2}, f"summary in decode.json: {rep['summary']}")
    check(rep["start"]["cold"]["start_s"] == 3.1 and rep["start"]["warm"]["result"] == "miss (time)", "start")

# ---- results built directly ----
floor = json.load(open(os.path.join(FIX, "floor.json")))
targets = json.load(open(TARGETS))
mlkc, peer = load("mlkc.jsonl"), load("peer.jsonl")


def result(rep, b, c):
    return next(p["result"] for p in rep["points"] if (p["batch"], p["context"]) == (b, c))


# exactly at the targets: pass
m2, p2 = copy.deepcopy(mlkc), copy.deepcopy(peer)
for r in m2:
    if r.get("kind") == "point" and (r["batch"], r["context"]) == (1, 128):
        r["median_ms"] = 0.70
for r in p2:
    if r.get("kind") == "point" and (r["batch"], r["context"]) == (1, 128):
        r["median_ms"] = 0.70 * 2.4
rep = report.build(floor, m2, p2, targets)
check(result(rep, 1, 128) == "pass", f"exactly 0.70 ms and 2.4x pass: {result(rep, 1, 128)}")

# start records that do not measure what they claim
m2 = copy.deepcopy(mlkc)
for r in m2:
    if r.get("kind") == "start":
        r["cache_hit"] = 1 - r["cache_hit"]
rep = report.build(floor, m2, peer, targets)
check(rep["start"]["cold"]["result"] == "invalid (cache hit on an empty cache)",
      rep["start"]["cold"]["result"])
check(rep["start"]["warm"]["result"] == "invalid (no cache hit)", rep["start"]["warm"]["result"])

# a model that carries its cubin (mlkc --cubin): cold and warm load it, the JIT start compiles
m2 = copy.deepcopy(mlkc)
for r in m2:
    if r.get("kind") == "start":
        r["cache_hit"], r["builtin_cubin"] = 0, 1
jit = dict(next(r for r in m2 if r.get("kind") == "start" and r["label"] == "cold"))
jit.update(label="cold_jit", builtin_cubin=0, start_ms=6300.0)
rep = report.build(floor, m2 + [jit], peer, targets)
check(rep["start"]["cold"]["result"] == "pass", rep["start"]["cold"]["result"])
check(rep["start"]["warm"]["result"] == "miss (time)", f"built-in warm start: {rep['start']['warm']['result']}")
check(rep["start"]["cold_jit"]["result"] == "miss (time)", rep["start"]["cold_jit"]["result"])
text = report.table(rep, [])
check("cold, PTX compiled" in line_of(text, "cold, PTX compiled") and
      "6.300" in line_of(text, "cold, PTX compiled"), "the JIT start's row")
jit["builtin_cubin"] = 1
rep = report.build(floor, m2 + [jit], peer, targets)
check(rep["start"]["cold_jit"]["result"] == "invalid (the built-in cubin was loaded)",
      rep["start"]["cold_jit"]["result"])
rep = report.build(floor, mlkc, peer, targets)
check("cold_jit" not in rep["start"] and "PTX compiled" not in report.table(rep, []),
      "no JIT start measured: no row")

# the CPU simulator: no verdicts
m2 = copy.deepcopy(mlkc)
for r in m2:
    if r.get("kind") == "weights":
        r["device_time"] = False
    if r.get("kind") == "start":
        r["gpu"] = False
rep = report.build(floor, m2, peer, targets)
check(all(p["result"].startswith("n/a (mlkc not timed on a GPU)") for p in rep["points"] if p["mlkc"]),
      "simulator points are n/a")
check(rep["start"]["cold"]["result"] == "n/a (not on a GPU)", rep["start"]["cold"]["result"])

# a peer timed on the CPU: no verdicts either
p2 = copy.deepcopy(peer)
for r in p2:
    if r.get("kind") == "point":
        r["device_time"] = False
rep = report.build(floor, mlkc, p2, targets)
check(result(rep, 1, 128) == "n/a (peer not timed on a GPU)", result(rep, 1, 128))

# no peer at all, no floor: points keep their own target, the ratio is incomplete
rep = report.build(None, mlkc, [], targets)
check(result(rep, 64, 128) == "miss (ms)",
      f"a missed ms target stays a miss without a peer: {result(rep, 64, 128)}")
check(result(rep, 1, 128) == "incomplete (no peer)", result(rep, 1, 128))
check(all(p["floor_ms"] is None for p in rep["points"]), "no floor file: no floor")
with tempfile.TemporaryDirectory() as tmp:
    rc, text = run("--floor", os.path.join(tmp, "none.json"), "--mlkc", os.path.join(tmp, "none.jsonl"),
                   "--peer", os.path.join(tmp, "none.jsonl"), "--targets", TARGETS)
    check(rc == 0 and "floor: not measured" in text and text.rstrip().endswith("0 pass, 0 miss, 2 other"),
          f"missing inputs still give a table: {text!r}")
    bad = os.path.join(tmp, "bad.json")
    with open(bad, "w") as f:
        f.write("{")
    with contextlib.redirect_stderr(io.StringIO()):
        rc, _ = run("--floor", bad, "--targets", TARGETS)
    check(rc == 2, "a floor file that is not JSON: exit 2")

print(f"{passed} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
