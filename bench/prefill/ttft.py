"""bench/prefill: time to first token of one prompt, mlk-run against the peer, on the GPU.

The model is Llama-3.2-1B's configuration with random bf16 weights (bench/llama_torch.py's
config), saved with save_pretrained into a temporary checkpoint directory, which mlk-run loads as
a user's checkpoint. For each prompt length (default 128, 512, 2048; random token ids):

  mlkc:  mlk-run --model DIR --prompt-ids ... --steps 1 --warmup W --repeat R: the time from the
         first run's start to the first token on the host (the prompt prefilled in runs of up to
         the model's batch of positions, then the token sampled), median of R generations
         after W untimed ones (compile and load are not in it; mlk-run reports them apart);
  peer:  transformers' LlamaForCausalLM under torch.compile (dynamic=False, compiled for each
         length first), one forward over the prompt and the argmax of the last logits, timed
         with CUDA events, fresh tokens each run, median of R after W + 3 warm-up runs.

  python3 bench/prefill/ttft.py --mlk-run build/tools/mlk-run [--lengths 128,512,2048]
         [--repeat 5] [--warmup 2] [--json FILE]

Prints a table (ms, peer / mlkc) and writes one JSON object per length with --json. MLKC_STDLIB
must name the stdlib directory where mlk-run is not installed.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import torch
import transformers

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from llama_torch import config  # noqa: E402  (the peer's model, one definition)


def mlkc_ttft(mlk_run, model_dir, prompt, warmup, repeat):
    cmd = [mlk_run, "--model", model_dir, "--prompt-ids", ",".join(map(str, prompt)), "--steps",
           "1", "--warmup", str(warmup), "--repeat", str(repeat)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"mlk-run failed ({r.returncode}): {r.stderr[-2000:]}")
    m = re.search(r"time to first token: ([0-9.]+) ms \(([^)]*)\)", r.stderr)
    if not m:
        raise RuntimeError(f"no time to first token in:\n{r.stderr}")
    return float(m.group(1)), m.group(2), r.stderr


@torch.no_grad()
def peer_ttft(model, n, vocab, warmup, repeat):
    fwd = torch.compile(model, dynamic=False)
    times = []
    for i in range(3 + warmup + repeat):
        ids = torch.randint(0, vocab, (1, n), device="cuda")
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        tok = fwd(input_ids=ids, use_cache=False).logits[0, -1].argmax()
        b.record()
        b.synchronize()
        assert 0 <= int(tok) < vocab
        if i >= 3 + warmup:
            times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mlk-run", default="build/tools/mlk-run")
    ap.add_argument("--lengths", default="128,512,2048")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json")
    ap.add_argument("--skip-peer", action="store_true")
    args = ap.parse_args()
    cfg = config(False)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = transformers.LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        for n in map(int, args.lengths.split(",")):
            prompt = torch.randint(0, cfg.vocab_size, (n,)).tolist()
            ms, how, _ = mlkc_ttft(args.mlk_run, d, prompt, args.warmup, args.repeat)
            peer = None if args.skip_peer else peer_ttft(model, n, cfg.vocab_size, args.warmup,
                                                         args.repeat)
            rows.append({"kind": "ttft", "prompt": n, "mlkc_ms": ms, "peer_ms": peer, "mlkc": how})
            print(f"prompt {n:5d}: mlkc {ms:9.2f} ms   peer {peer if peer else float('nan'):8.2f} ms"
                  f"   peer/mlkc {peer / ms if peer else float('nan'):.3f}x   ({how})", flush=True)
            torch._dynamo.reset()
    if args.json:
        with open(args.json, "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
