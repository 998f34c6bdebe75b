"""The peer for bench/llama_bench.c and bench/decode: Llama-3.2-1B shapes with random bf16 weights in
Hugging Face transformers (LlamaForCausalLM, tied embedding), decode with a StaticCache under
torch.compile(mode="reduce-overhead"), timed with CUDA events around each step.

  python3 bench/llama_torch.py [steps] [context]          batch 1 at one context (as before)
  python3 bench/llama_torch.py --points 1:128,16:2048 [--steps N] [--json FILE]

Each point (batch B, context C) gets its own StaticCache of C + 16 positions per row (HF attends
over the whole static cache, masked, so a cache sized for the longest point would slow the short
ones), filled by a prefill of C random tokens per row through the base model (chunks of 512
positions, no logits), and its own compile of the decode step (dynamic=False: specialized to the
shape, the peer's best case; torch._dynamo.reset() between points). The first 3 calls compile and
capture the CUDA graph (their wall time is reported as warm-up), then max(3, steps / 10) more
warm-up steps, then `steps` timed ones. Every step runs at position C in every row, as
bench/decode/decode_bench.c does: it reads positions 0..C and writes position C, the same work
each step (the cache's write position is set back to C before each step, outside the timed
region). Fresh random tokens every step; each step's next tokens (argmax) are read back and
checked in range, and the logits of one uncompiled step per point checked finite.
One JSON object per line with --json: {"kind": "env", ...}, then {"kind": "point", ...} per point.

--device cpu --tiny runs a 2-layer model with small dims on the host with wall-clock times: a
check of this script where there is no GPU, not a peer.
"""
import argparse
import gc
import inspect
import json
import sys
import time

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.cache_utils import StaticCache

PREFILL_CHUNK = 512
CACHE_MARGIN = 16


def config(tiny):
    rope = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192}
    if tiny:
        return LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5,
                           rope_theta=500000.0, tie_word_embeddings=True, max_position_embeddings=131072,
                           rope_scaling=rope)
    return LlamaConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                       num_attention_heads=32, num_key_value_heads=8, head_dim=64, rms_norm_eps=1e-5,
                       rope_theta=500000.0, tie_word_embeddings=True, max_position_embeddings=131072,
                       rope_scaling=rope)


def parse_points(s):
    pts = []
    for item in s.split(","):
        b, c = item.split(":")
        pts.append((int(b), int(c)))
    return pts


class Timer:
    """CUDA events around a region on the GPU, a wall clock on the CPU."""

    def __init__(self, cuda):
        self.cuda = cuda

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def time(self, fn):
        if self.cuda:
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            out = fn()
            e.record()
            torch.cuda.synchronize()
            return out, s.elapsed_time(e)
        t = time.perf_counter()
        out = fn()
        return out, (time.perf_counter() - t) * 1e3


def run_point(model, cfg, batch, context, steps, dev, timer):
    """Times decode steps at (batch, context); returns the point's record."""
    cache = StaticCache(config=cfg, max_batch_size=batch, max_cache_len=context + CACHE_MARGIN, device=dev,
                        dtype=torch.bfloat16)
    base = model.model
    t = time.time()
    # Prefill: context random tokens per row, through the base model (no logits for every position).
    for s in range(0, context, PREFILL_CHUNK):
        e = min(context, s + PREFILL_CHUNK)
        ids = torch.randint(0, cfg.vocab_size, (batch, e - s), device=dev)
        pos = torch.arange(s, e, device=dev).unsqueeze(0).expand(batch, -1)
        kw = {"cache_position": torch.arange(s, e, device=dev)} if PASS_CACHE_POSITION else {}
        base(input_ids=ids, position_ids=pos, past_key_values=cache, use_cache=True, **kw)
    timer.sync()
    prefill_s = time.time() - t
    # Where the cache writes next: transformers 5 keeps it in each layer (a device tensor); older
    # versions take cache_position. Set back to `context` before every step.
    counters = [l.cumulative_length for l in getattr(cache, "layers", [])
                if isinstance(getattr(l, "cumulative_length", None), torch.Tensor)]
    pos = torch.full((batch, 1), context, device=dev, dtype=torch.long)
    cpos = torch.tensor([context], device=dev)

    def step(tok, p):
        kw = {"cache_position": cpos} if PASS_CACHE_POSITION_CAUSAL else {}
        out = model(input_ids=tok, position_ids=p, past_key_values=cache, use_cache=True, return_dict=True,
                    **kw)
        return out.logits[:, -1].argmax(-1)

    def rewind():
        for c in counters:
            c.fill_(context)

    def fresh_tokens():
        return torch.randint(0, cfg.vocab_size, (batch, 1), device=dev)

    def check(nxt):
        v = nxt.tolist()
        if len(v) != batch or min(v) < 0 or max(v) >= cfg.vocab_size:
            raise RuntimeError(f"next tokens out of range at batch {batch}, context {context}: {v[:8]}")

    torch._dynamo.reset()
    compiled = torch.compile(step, mode="reduce-overhead", fullgraph=True, dynamic=False)
    t = time.time()
    for _ in range(3):  # compile and capture
        rewind()
        check(compiled(fresh_tokens(), pos))
    timer.sync()
    warmup_s = time.time() - t
    warm = max(3, steps // 10)
    for _ in range(warm):
        rewind()
        check(compiled(fresh_tokens(), pos))
    times = []
    for _ in range(steps):
        rewind()
        tok = fresh_tokens()
        timer.sync()
        nxt, ms = timer.time(lambda: compiled(tok, pos))
        check(nxt)
        times.append(ms)
    # Where the compiled steps left the write position: context + 1 when they wrote at context.
    write_pos_ok = all(int(c) == context + 1 for c in counters) if counters else None
    if write_pos_ok is False:
        print(f"llama_torch.py: warning: batch {batch}, context {context}: the compiled step left the cache's "
              f"write position at {[int(c) for c in counters][:4]}, not at {context + 1}", file=sys.stderr)
    # One uncompiled step at the same position: its logits must all be finite.
    rewind()
    kw = {"cache_position": cpos} if PASS_CACHE_POSITION_CAUSAL else {}
    logits = model(input_ids=fresh_tokens(), position_ids=pos, past_key_values=cache, use_cache=True,
                   **kw).logits
    if not bool(torch.isfinite(logits).all()):
        raise RuntimeError(f"non-finite logits at batch {batch}, context {context}")
    times.sort()
    n = len(times)
    med = times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])
    rec = {"kind": "point", "batch": batch, "context": context, "steps": n, "warmup": warm,
           "median_ms": med, "p10_ms": times[n // 10], "p90_ms": times[n * 9 // 10], "min_ms": times[0],
           "max_ms": times[-1], "mean_ms": sum(times) / n, "warmup_s": warmup_s, "prefill_s": prefill_s,
           "cache_len": context + CACHE_MARGIN, "device_time": timer.cuda, "checked": True,
           "write_pos_ok": write_pos_ok}
    return rec


def release(cuda):
    """Drops the compiled step, its CUDA graphs and the cache of the point that ran last."""
    torch._dynamo.reset()
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("legacy", nargs="*", type=int, help="[steps] [context]: batch 1 at one context")
    ap.add_argument("--points", help="B:C,B:C,... (batch:context)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per point (default 100)")
    ap.add_argument("--json", help="append one JSON object per line to this file")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--tiny", action="store_true", help="a 2-layer model with small dims (script checks)")
    a = ap.parse_args()
    steps = a.steps or (a.legacy[0] if a.legacy else 100)
    if a.points:
        points = parse_points(a.points)
    else:
        points = [(1, a.legacy[1] if len(a.legacy) > 1 else 128)]
    if any(b < 1 or c < 1 for b, c in points):
        print("llama_torch.py: every point needs a batch and a context of at least 1", file=sys.stderr)
        return 2
    cuda = a.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print("llama_torch.py: no CUDA device", file=sys.stderr)
        return 1
    dev = torch.device(a.device)
    timer = Timer(cuda)
    cfg = config(a.tiny)
    torch.manual_seed(0)
    with dev:
        model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())  # tied: counted once
    kv_tok = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * 2
    out = open(a.json, "a") if a.json else None
    env = {"kind": "env", "device": torch.cuda.get_device_name() if cuda else "CPU",
           "torch": torch.__version__, "transformers": transformers.__version__, "weight_bytes": weight_bytes,
           "kv_bytes_per_token": kv_tok, "device_time": cuda, "tiny": a.tiny}
    print(f"peer on {env['device']}: torch {env['torch']}, transformers {env['transformers']}, "
          f"{weight_bytes / 1e9:.3f} GB of weights")
    if out:
        out.write(json.dumps(env) + "\n")
        out.flush()
    failed = 0
    with torch.no_grad():
        for batch, context in points:
            try:
                rec = run_point(model, cfg, batch, context, steps, dev, timer)
            except Exception as e:  # report the point and go on with the next
                print(f"llama_torch.py: batch {batch}, context {context}: {type(e).__name__}: {e}",
                      file=sys.stderr)
                rec = {"kind": "error", "batch": batch, "context": context,
                       "message": f"{type(e).__name__}: {e}"}
                failed = 1
            else:
                rec["weight_bytes"] = weight_bytes
                rec["kv_bytes"] = kv_tok * context * batch
                print(f'torch compile(mode="reduce-overhead") decode step, batch {batch}, context {context}: '
                      f"median {rec['median_ms']:.4f} ms, p10 {rec['p10_ms']:.4f}, p90 {rec['p90_ms']:.4f} "
                      f"({rec['steps']} steps); warm-up (compile + capture) {rec['warmup_s']:.1f} s, "
                      f"prefill {rec['prefill_s']:.2f} s", flush=True)
            if out:
                out.write(json.dumps(rec) + "\n")
                out.flush()
            release(cuda)
    return failed


def _accepts(fn, name):
    return name in inspect.signature(fn).parameters


# transformers 4.x takes the cache's write position as cache_position; 5.x keeps it in the cache.
PASS_CACHE_POSITION = _accepts(transformers.LlamaModel.forward, "cache_position")
PASS_CACHE_POSITION_CAUSAL = _accepts(LlamaForCausalLM.forward, "cache_position")

if __name__ == "__main__":
    sys.exit(main())
