#!/usr/bin/env python3
"""compare_hf.py: mlk-run against Hugging Face transformers on random-init checkpoints.

For each configuration named by --configs, this script
  1. builds the model with transformers (LlamaForCausalLM or Qwen2ForCausalLM) from a seeded
     random init, gives the norm weights and the biases random values too (transformers starts
     them at 1 and 0, which would leave them untested), and saves it in bf16 with
     save_pretrained (config.json + model.safetensors, as published checkpoints are);
  2. runs mlk-run on that directory: one prompt (batch 1), then 8 prompts of different lengths as
     one batch, greedy, --steps N, with --logits-out;
  3. runs transformers in f32 over the same bf16 weights, teacher-forced on the tokens mlk-run
     generated, so that every logits row mlk-run wrote has the reference row of the same prefix,
     and once more on its own greedy tokens (the independent decode);
  4. compares: the relative L2 distance of every logits row (tolerance --tol), and every
     generated token against the reference's argmax of that row, where a different token counts
     as a near tie, not a failure, when the reference's two logits are within --tie of the row's
     largest |logit| or within twice the row's largest error. It also reports transformers' own bf16 run against its f32 one, for scale.

With --fixtures DIR it also writes, for each small configuration, what the CPU test
(tests/hf/test_hf_fixtures.c, no PyTorch) needs: the checkpoint, prompts.txt, and expected.json +
expected_logits.f32, transformers' f32 greedy decode of every prompt and its logits rows.

  MLKC_STDLIB=stdlib python3 tests/hf/compare_hf.py --mlk-run build/tools/mlk-run \\
      --out /tmp/hf [--configs llama-tiny,llama-odd,...] [--steps 32] [--fixtures DIR]

Exit status 0 when every comparison holds, 1 otherwise. MLK_BACKEND=cpu runs mlk-run on the
simulator.
"""
import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy
import torch

CONFIGS = {
    # Llama 3 RoPE scaling, tied embedding, every key present.
    "llama-tiny": dict(family="llama", hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=256,
                       rms_norm_eps=1e-5, rope_theta=500000.0, llama3=True,
                       tie_word_embeddings=True, initializer_range=0.1, fixture=True),
    # Plain RoPE, hidden 72 = 9 heads of 8, kv-head ratio 3, odd vocabulary, untied lm_head.
    "llama-odd": dict(family="llama", hidden_size=72, intermediate_size=100, num_hidden_layers=3,
                      num_attention_heads=9, num_key_value_heads=3, vocab_size=301,
                      rms_norm_eps=1e-6, rope_theta=10000.0, llama3=False,
                      tie_word_embeddings=False, initializer_range=0.1, fixture=True),
    # 14 heads over 2 kv heads (ratio 7), head_dim 8.
    "llama-gqa7": dict(family="llama", hidden_size=112, intermediate_size=176, num_hidden_layers=2,
                       num_attention_heads=14, num_key_value_heads=2, vocab_size=199,
                       rms_norm_eps=1e-5, rope_theta=10000.0, llama3=False,
                       tie_word_embeddings=True, initializer_range=0.1, fixture=True),
    # Qwen2: q/k/v biases, theta 1e6, tied.
    "qwen2-tiny": dict(family="qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, vocab_size=256,
                       rms_norm_eps=1e-6, rope_theta=1000000.0, llama3=False,
                       tie_word_embeddings=True, initializer_range=0.1, fixture=True),
    # Llama-3.2-1B's configuration (random weights).
    "llama-3.2-1b": dict(family="llama", hidden_size=2048, intermediate_size=8192,
                         num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                         head_dim=64, vocab_size=128256, rms_norm_eps=1e-5, rope_theta=500000.0,
                         llama3=True, tie_word_embeddings=True, initializer_range=0.02,
                         fixture=False),
}

LLAMA3_SCALING = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                  "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}


def build_model(name, spec, seed, device):
    import transformers
    fam = spec["family"]
    keys = {k: v for k, v in spec.items() if k not in ("family", "llama3", "fixture", "rope_theta")}
    scaling = dict(LLAMA3_SCALING) if spec["llama3"] else None
    # transformers 5 takes RoPE as rope_parameters; earlier versions as rope_theta/rope_scaling.
    major = int(transformers.__version__.split(".")[0])
    if major >= 5:
        rp = dict(scaling) if scaling else {"rope_type": "default"}
        rp["rope_theta"] = spec["rope_theta"]
        keys["rope_parameters"] = rp
    else:
        keys["rope_theta"] = spec["rope_theta"]
        keys["rope_scaling"] = scaling
    keys["max_position_embeddings"] = 131072 if spec["llama3"] else 4096
    if fam == "llama":
        cfg = transformers.LlamaConfig(**keys)
        cls = transformers.LlamaForCausalLM
    else:
        cfg = transformers.Qwen2Config(use_sliding_window=False, **keys)
        cls = transformers.Qwen2ForCausalLM
    torch.manual_seed(seed)
    with torch.device(device):
        model = cls(cfg)
    g = torch.Generator(device="cpu").manual_seed(seed + 1)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "norm" in pname:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif pname.endswith(".bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
    model = model.to(torch.bfloat16).eval()
    return model


def rel_l2(a, b):
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b).clamp_min(1e-30))


def near_tie(row, got, a, b, tie):
    """Whether the reference's logits of tokens a and b are close enough that mlk-run's row `got`
    may order them either way: within `tie` of the row's largest |logit|, or within twice the
    row's largest error (which the relative L2 tolerance bounds)."""
    gap = float(abs(row[a] - row[b]))
    return gap <= max(tie * float(row.abs().max()), 2.0 * float((got - row).abs().max()))


@torch.no_grad()
def forward_rows(model, prompt, gen, device):
    """Logits of the positions that produced each token of `gen` after `prompt` (teacher-forced):
    len(gen) rows, the first at the prompt's last position."""
    ids = torch.tensor([prompt + gen[:-1]], device=device)
    out = model(input_ids=ids, use_cache=False).logits[0].float()
    return out[len(prompt) - 1:].cpu()


@torch.no_grad()
def greedy(model, prompt, steps, device):
    gen = []
    for _ in range(steps):
        ids = torch.tensor([prompt + gen], device=device)
        gen.append(int(model(input_ids=ids, use_cache=False).logits[0, -1].float().argmax()))
    return gen


def run_mlk(mlk_run, model_dir, prompts, steps, work, tag):
    pfile = os.path.join(work, f"prompts-{tag}.txt")
    lfile = os.path.join(work, f"logits-{tag}.f32")
    with open(pfile, "w") as f:
        for p in prompts:
            f.write(",".join(map(str, p)) + "\n")
    cmd = [mlk_run, "--model", model_dir, "--prompts", pfile, "--steps", str(steps),
           "--logits-out", lfile]
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr}")
    ids = [[int(t) for t in re.findall(r"-?\d+", line)] for line in r.stdout.strip().splitlines()]
    if len(ids) != len(prompts) or any(len(x) != steps for x in ids):
        raise RuntimeError(f"mlk-run printed {len(ids)} lines for {len(prompts)} prompts:\n{r.stdout}")
    logits = torch.from_numpy(numpy.fromfile(lfile, dtype="<f4").copy())
    return ids, logits, r.stderr, wall


def compare(name, model, ref32, prompts, steps, args, device, tag):
    vocab = model.config.vocab_size
    ids, logits, err, wall = run_mlk(args.mlk_run, args.model_dir, prompts, steps, args.work, tag)
    logits = logits.view(len(prompts), steps, vocab)
    worst, total, n = 0.0, 0.0, 0
    worst16 = 0.0
    ties, wrong = [], []
    same_greedy = []
    for i, p in enumerate(prompts):
        ref = forward_rows(ref32, p, ids[i], device)
        r16 = forward_rows(model, p, ids[i], device)
        for s in range(steps):
            d = rel_l2(logits[i, s], ref[s])
            worst, total, n = max(worst, d), total + d, n + 1
            worst16 = max(worst16, rel_l2(r16[s], ref[s]))
            top = int(ref[s].argmax())
            if ids[i][s] != top:
                (ties if near_tie(ref[s], logits[i, s], top, ids[i][s], args.tie) else wrong).append((i, s, top, ids[i][s]))
        hf = greedy(ref32, p, steps, device)
        k = next((s for s in range(steps) if hf[s] != ids[i][s]), steps)
        same_greedy.append(k)
    timing = " | ".join(l.strip() for l in err.splitlines() if l.startswith(("time to first", "decode:")))
    ok = worst <= args.tol and not wrong
    print(f"{name:13s} {tag:8s} prompts {len(prompts)} steps {steps}: logits rel L2 max {worst:.2e} "
          f"mean {total / max(n, 1):.2e} (transformers bf16 vs f32: max {worst16:.2e}); tokens "
          f"{n - len(ties) - len(wrong)}/{n} the reference's argmax, {len(ties)} near ties, "
          f"{len(wrong)} wrong; independent greedy decode equal for "
          f"{min(same_greedy)}..{max(same_greedy)} of {steps} steps; {'PASS' if ok else 'FAIL'}")
    print(f"{'':13s} {tag:8s} mlk-run {wall:.1f} s wall: {timing}")
    for i, s, top, got in wrong[:5]:
        print(f"  prompt {i} step {s}: mlk-run {got}, reference {top}", file=sys.stderr)
    return ok


def write_fixture(dest, model_dir, ref32, prompts, steps, tol, tie, device):
    os.makedirs(dest, exist_ok=True)
    for f in ("config.json", "model.safetensors"):
        shutil.copy(os.path.join(model_dir, f), dest)
    with open(os.path.join(dest, "prompts.txt"), "w") as f:
        for p in prompts:
            f.write(",".join(map(str, p)) + "\n")
    ids, rows = [], []
    for p in prompts:
        gen = greedy(ref32, p, steps, device)
        ids.append(gen)
        rows.append(forward_rows(ref32, p, gen, device))
    torch.cat(rows).numpy().astype("<f4").tofile(os.path.join(dest, "expected_logits.f32"))
    import transformers
    meta = {"what": "transformers f32 greedy decode of the bf16 checkpoint in this directory: per "
                    "prompt, its tokens and (expected_logits.f32) the logits row behind each",
            "transformers": transformers.__version__, "torch": torch.__version__,
            "steps": steps, "vocab": ref32.config.vocab_size, "tol": tol, "tie": tie, "ids": ids}
    with open(os.path.join(dest, "expected.json"), "w") as f:
        json.dump(meta, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mlk-run", default="build/tools/mlk-run")
    ap.add_argument("--out", required=True, help="work directory (checkpoints are written here)")
    ap.add_argument("--configs", default="llama-tiny,llama-odd,llama-gqa7,qwen2-tiny,llama-3.2-1b")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--tol", type=float, default=2e-2, help="relative L2 per logits row")
    ap.add_argument("--tie", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--fixtures", help="write the small configurations' CPU test data here")
    ap.add_argument("--fixture-steps", type=int, default=10)
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    import transformers
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, reference on {device}")
    all_ok = True
    gen = torch.Generator().manual_seed(args.seed)
    for name in args.configs.split(","):
        spec = CONFIGS[name]
        args.work = os.path.join(args.out, name)
        args.model_dir = os.path.join(args.work, "ckpt")
        os.makedirs(args.work, exist_ok=True)
        model = build_model(name, spec, args.seed, device)
        model.save_pretrained(args.model_dir)
        with open(os.path.join(args.model_dir, "config.json")) as f:
            saved = json.load(f)
        rope = {k: saved[k] for k in ("rope_theta", "rope_scaling", "rope_parameters") if k in saved}
        print(f"{name}: config.json RoPE keys {json.dumps(rope)}")
        ref32 = copy.deepcopy(model).float()  # the bf16 weights, exactly, computed in f32
        V = spec["vocab_size"]
        lens = [7] + [5, 1, 12, 3, 9, 17, 2, 7]
        prompts = [torch.randint(0, V, (n,), generator=gen).tolist() for n in lens]
        if args.fixtures and spec["fixture"]:
            write_fixture(os.path.join(args.fixtures, name), args.model_dir, ref32, prompts[1:],
                          args.fixture_steps, args.tol, args.tie, device)
        try:
            all_ok &= compare(name, model, ref32, prompts[:1], args.steps, args, device, "batch1")
            all_ok &= compare(name, model, ref32, prompts[1:], args.steps, args, device, "batch8")
        except RuntimeError as e:
            print(f"{name}: {e}")
            all_ok = False
        del model, ref32
        if device == "cuda":
            torch.cuda.empty_cache()
    print("ALL PASS" if all_ok else "SOME FAILED")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
