"""bench/decode's floor, measured on the device in the same run as the points: the streaming-read
rate (a sum over a 4 GiB f32 buffer of random values) and the device-to-device copy rate (2 GiB
to 2 GiB, counting bytes read plus bytes written), each the median of many runs timed with CUDA
events after a warm-up. A point's floor is its bytes (all weights once, the KV cache of its
context for every row) over the read rate (bench/decode/report.py).

  python3 bench/decode/floor.py [--gib 4] [--runs 50] [--json floor.json]

--device cpu times the same on the host with a wall clock: a check of the script, not a floor.
"""
import argparse
import json
import sys
import time

import torch


def timed(fn, runs, before, cuda):
    """Median, p10 and p90 of fn's device time in ms (CUDA events; wall time on the CPU) over
    `runs` runs after max(3, runs // 10) warm-ups; before() runs ahead of each, outside the timed
    region."""
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(max(3, runs // 10)):
        before()
        fn()
    sync()
    times = []
    for _ in range(runs):
        before()
        sync()
        if cuda:
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            sync()
            times.append(s.elapsed_time(e))
        else:
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return times[len(times) // 2], times[len(times) // 10], times[len(times) * 9 // 10]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gib", type=float, default=4.0, help="size of the read buffer (GiB)")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--json", help="write the result here")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    a = ap.parse_args()
    cuda = a.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print("floor.py: no CUDA device", file=sys.stderr)
        return 1
    n = int(a.gib * (1 << 30)) // 4
    x = torch.rand(n, device=a.device)  # uniform in [0, 1): never zeros
    out = torch.empty((), device=a.device)

    def read():
        torch.sum(x, 0, out=out)

    def poison_out():
        out.fill_(float("nan"))

    r_med, r_p10, r_p90 = timed(read, a.runs, poison_out, cuda)
    mean = out.item() / n
    if not abs(mean - 0.5) < 1e-2:
        print(f"floor.py: FAIL: the mean of the read buffer is {mean}, expected 0.5", file=sys.stderr)
        return 1
    half = n // 2
    src, dst = x[:half], torch.empty(half, device=a.device)

    def copy():
        dst.copy_(src)

    def poison_dst():
        dst.fill_(float("nan"))

    c_med, c_p10, c_p90 = timed(copy, a.runs, poison_dst, cuda)
    if not torch.equal(dst, src):
        print("floor.py: FAIL: the copy differs from its source", file=sys.stderr)
        return 1
    read_bytes, copy_bytes = 4 * n, 2 * 4 * half
    res = {
        "device": torch.cuda.get_device_name() if cuda else "CPU",
        "sms": torch.cuda.get_device_properties(0).multi_processor_count if cuda else 0,
        "device_time": cuda,
        "torch": torch.__version__,
        "runs": a.runs,
        "read_bytes": read_bytes,
        "read_ms": r_med, "read_p10_ms": r_p10, "read_p90_ms": r_p90,
        "read_gbps": read_bytes / r_med / 1e6,
        "copy_bytes": copy_bytes,
        "copy_ms": c_med, "copy_p10_ms": c_p10, "copy_p90_ms": c_p90,
        "copy_gbps": copy_bytes / c_med / 1e6,
    }
    print(f"floor on {res['device']}: streaming read {res['read_gbps']:.0f} GB/s ({read_bytes / 2**30:g} GiB "
          f"sum, median {r_med:.3f} ms of {a.runs}, p10 {r_p10:.3f}, p90 {r_p90:.3f}); copy "
          f"{res['copy_gbps']:.0f} GB/s (read + write, median {c_med:.3f} ms)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
