"""The peer for bench/mlp_bench.c: the same mlp (y = W2 relu(W1 x) + x, bf16 weights) in PyTorch,
eager and torch.compile(mode="reduce-overhead"), timed with CUDA events, median of many runs,
rotating among several weight sets so that weights come from HBM, fresh random x each run."""
import sys

import torch
import torch.nn.functional as F

D, H = 1024, 4096
ITERS = int(sys.argv[1]) if len(sys.argv) > 1 else 500
INST = int(sys.argv[2]) if len(sys.argv) > 2 else 4


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w1 = torch.nn.Parameter((torch.rand(H, D, device="cuda") * 2 - 1).div(32).bfloat16(), requires_grad=False)
        self.w2 = torch.nn.Parameter((torch.rand(D, H, device="cuda") * 2 - 1).div(64).bfloat16(), requires_grad=False)

    def forward(self, x):
        h = torch.relu(F.linear(x.bfloat16(), self.w1))
        return F.linear(h, self.w2).float() + x


def bench(fns, label):
    xs = torch.empty(D, device="cuda")
    for i in range(ITERS // 10):  # warm-up (and compilation)
        fns[i % len(fns)](xs.uniform_(-1, 1))
    torch.cuda.synchronize()
    times = []
    for i in range(ITERS):
        x = torch.empty(D, device="cuda").uniform_(-1, 1)
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        y = fns[i % len(fns)](x)
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e))
    times.sort()
    print(f"torch {label}: median {times[len(times) // 2]:.4f} ms, p10 {times[len(times) // 10]:.4f}, "
          f"p90 {times[len(times) * 9 // 10]:.4f} ({INST} weight sets, {ITERS} runs)")
    return y


with torch.no_grad():
    mods = [Mlp() for _ in range(INST)]
    x = torch.rand(D, device="cuda") * 2 - 1
    ref = (mods[0].w2.double() @ torch.relu(mods[0].w1.double() @ x.double())) + x.double()
    got = mods[0](x).double()
    print(f"check: eager rel L2 vs double {((got - ref).norm() / ref.norm()).item():.3g}")
    bench(mods, "eager")
    compiled = [torch.compile(m, mode="reduce-overhead") for m in mods]
    bench(compiled, 'compile(mode="reduce-overhead")')
