"""The peer for bench/llama_bench.c: Llama-3.2-1B shapes with random weights in Hugging Face
transformers, decode with a StaticCache under torch.compile(mode="reduce-overhead"), batch 1,
`context` tokens of context, timed with CUDA events around each step (median)."""
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.cache_utils import StaticCache

STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 100
CONTEXT = int(sys.argv[2]) if len(sys.argv) > 2 else 128

cfg = LlamaConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                  num_attention_heads=32, num_key_value_heads=8, head_dim=64, rms_norm_eps=1e-5,
                  rope_theta=500000.0, tie_word_embeddings=True, max_position_embeddings=131072,
                  rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})
torch.manual_seed(0)
with torch.device("cuda"):
    model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
cache = StaticCache(config=cfg, max_batch_size=1, max_cache_len=CONTEXT + STEPS + 8, device="cuda",
                    dtype=torch.bfloat16)


def step(tok, pos):
    out = model(input_ids=tok, position_ids=pos, cache_position=pos[0], past_key_values=cache,
                use_cache=True, return_dict=True)
    return out.logits[:, -1].argmax(-1)


with torch.no_grad():
    prompt = torch.randint(0, cfg.vocab_size, (1, CONTEXT), device="cuda")
    model(input_ids=prompt, cache_position=torch.arange(CONTEXT, device="cuda"),
          past_key_values=cache, use_cache=True)
    compiled = torch.compile(step, mode="reduce-overhead", fullgraph=True)
    t0 = time.time()
    for i in range(3):  # warm-up and capture
        p = torch.tensor([[CONTEXT + i]], device="cuda")
        compiled(torch.randint(0, cfg.vocab_size, (1, 1), device="cuda"), p)
    torch.cuda.synchronize()
    print(f"torch.compile warm-up: {time.time() - t0:.1f} s")
    times = []
    for i in range(3, STEPS + 3):
        tok = torch.randint(0, cfg.vocab_size, (1, 1), device="cuda")
        p = torch.tensor([[CONTEXT + i]], device="cuda")
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        compiled(tok, p)
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e))
    times.sort()
    print(f'torch compile(mode="reduce-overhead") decode step: median {times[len(times) // 2]:.4f} ms, '
          f"p10 {times[len(times) // 10]:.4f}, p90 {times[len(times) * 9 // 10]:.4f} ({STEPS} steps, "
          f"context {CONTEXT})")
