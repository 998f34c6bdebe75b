"""bench/tp: tensor parallelism on the GPUs of one machine: correctness and scaling, mlk-run's
worlds with NCCL against the host sums, each against its floors.

Run on a machine with several GPUs, from the repository root, with a staged build:

  MLKC_STDLIB=stdlib python3 bench/tp/tp.py --mlk-run build-device/tools/mlk-run --out OUT
         [--presets 1b,8b] [--tps 1,2,4,8] [--steps 32]

In one run:
  1. the machine: nvidia-smi topo -m, the GPU count, NCCL's version (PyTorch's), the read rate
     of GPU 0 (bench/decode/floor.py), and NCCL's all-reduce through PyTorch over every GPU: its
     bus bandwidth at 256 MiB, and its time at the sizes of a decode step's sums (a row of the
     hidden size per sequence, f32);
  2. per preset (Llama-3.2-1B, Llama-3.1-8B shapes; random bf16 weights saved with
     save_pretrained): mlk-run at every tp of --tps that the GPUs and the shapes allow (heads, kv
     heads and the MLP divide), 4 prompts, greedy: the logits against tp = 1 (relative L2) and the
     tokens, twice at the same tp (bitwise equal), with MLK_COMM=host (the cut megakernel with the
     sums through the host) against NCCL, and with the sums inside the megakernel
     (--collectives kernel), which must give the host sums' bits;
  3. a rank that stops: two processes (MLK_WORLD_SIZE, MLK_RANK), rank 1 with a bad prompt: rank
     0 must fail at once naming it;
  4. scaling: decode ms per token at batch 1 and 16 for every preset and tp, cut with NCCL, cut
     with the host sums, and inside the megakernel, each
     with its floor: the bytes one rank reads (its share of the layers, the whole embedding and LM
     head, its kv heads' cache) over the read rate, and NCCL's own time for the step's 2 x layers
     sums at that size.
Everything goes to OUT (tp.json, table.txt, the logs). NVLink multicast stays off
(NCCL_NVLS_ENABLE=0, TORCH_SYMM_MEM_DISABLE_MULTICAST=1, NVSHMEM_DISABLE_NVLS=1, also for every
program started here).
"""
import os

for k, v in (("NCCL_NVLS_ENABLE", "0"), ("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1"),
             ("NVSHMEM_DISABLE_NVLS", "1")):
    os.environ[k] = v

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
import transformers  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PRESETS = {
    "1b": dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
               num_attention_heads=32, num_key_value_heads=8, head_dim=64, tie_word_embeddings=True),
    "8b": dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
               num_attention_heads=32, num_key_value_heads=8, head_dim=128, tie_word_embeddings=False),
}


def log(out, *a):
    s = " ".join(str(x) for x in a)
    print(s, flush=True)
    with open(os.path.join(out, "tp.log"), "a") as f:
        f.write(s + "\n")


def nccl_worker(rank, n, sizes, port, path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("nccl", rank=rank, world_size=n)
    torch.cuda.set_device(rank)
    res = {}
    for nbytes in sizes:
        x = torch.ones(max(1, nbytes // 4), device="cuda")
        for _ in range(10):
            dist.all_reduce(x)
        torch.cuda.synchronize()
        times = []
        for _ in range(50):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            dist.all_reduce(x)
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        times.sort()
        res[nbytes] = times[len(times) // 2]
    if rank == 0:
        with open(path, "w") as f:
            json.dump(res, f)
    dist.destroy_process_group()


def nccl_times(n, sizes, out):
    path = os.path.join(out, "nccl.json")
    mp.spawn(nccl_worker, args=(n, sizes, 29500 + os.getpid() % 1000, path), nprocs=n)
    with open(path) as f:
        return {int(k): v for k, v in json.load(f).items()}


def run(cmd, env=None, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])}... failed ({r.returncode}): {r.stderr[-3000:]}")
    return r


def mlk_run(args, d, tp, prompts, steps, env=None, logits=None, timed=False, kernel=False):
    cmd = [args.mlk_run, "--model", d, "--steps", str(steps), "--tp", str(tp)]
    if kernel:
        cmd += ["--collectives", "kernel"]
    for p in prompts:
        cmd += ["--prompt-ids", ",".join(map(str, p))]
    if logits:
        cmd += ["--logits-out", logits]
    if timed:
        cmd += ["--warmup", "1", "--repeat", "3"]
    r = run(cmd, env)
    ms = re.search(r"decode: ([0-9.]+) ms per token", r.stderr)
    comm = re.search(r"\(sums: ([^)]*)\)", r.stderr)
    return r.stdout, float(ms.group(1)) if ms else None, comm.group(1) if comm else "none", r.stderr


def rank_bytes(c, tp, batch, ctx):
    D, F, L, H, KVH, HD, V = (c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"],
                              c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"],
                              c["vocab_size"])
    layers = L * ((H + 2 * KVH) * HD * D + D * H * HD + 3 * F * D) * 2 // tp
    head = V * D * 2  # the LM head (the tied embedding, or lm_head), whole on every rank
    kv = batch * ctx * L * 2 * (KVH // tp) * HD * 2
    return layers + head + kv


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mlk-run", default="build/tools/mlk-run")
    ap.add_argument("--out", default="/tmp/mlk-tp")
    ap.add_argument("--presets", default="1b,8b")
    ap.add_argument("--tps", default="1,2,4,8")
    ap.add_argument("--steps", type=int, default=32)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    out = args.out
    ngpu = torch.cuda.device_count()
    log(out, run(["nvidia-smi", "topo", "-m"], check=False).stdout)
    log(out, f"GPUs: {ngpu}; NCCL (PyTorch's): {'.'.join(map(str, torch.cuda.nccl.version()))}")
    fl = run([sys.executable, os.path.join(HERE, "..", "decode", "floor.py"), "--json",
              os.path.join(out, "floor.json")], check=False)
    log(out, fl.stdout[-600:])
    with open(os.path.join(out, "floor.json")) as f:
        read_gbs = json.load(f)["read_gbps"]
    rec = {"gpus": ngpu, "read_gbs": read_gbs, "points": [], "checks": []}
    sizes = sorted({256 << 20} | {b * PRESETS[p]["hidden_size"] * 4 for p in PRESETS for b in (1, 16)})
    nccl = nccl_times(ngpu, sizes, out) if ngpu > 1 else {}
    if nccl:
        t = nccl[256 << 20]
        rec["nccl_busbw_gbs"] = (256 << 20) * 2 * (ngpu - 1) / ngpu / (t * 1e6)
        log(out, f"NCCL all-reduce over {ngpu} GPUs: bus bandwidth {rec['nccl_busbw_gbs']:.1f} GB/s "
                 f"at 256 MiB; " + ", ".join(f"{k} B: {v * 1e3:.1f} us" for k, v in nccl.items()))
    rec["nccl_ms"] = nccl
    fail = 0
    table = []
    for name in args.presets.split(","):
        c = PRESETS[name]
        cfg = transformers.LlamaConfig(**c, rms_norm_eps=1e-5, rope_theta=500000.0,
                                       max_position_embeddings=131072)
        torch.manual_seed(0)
        with torch.device("cuda"):
            model = transformers.LlamaForCausalLM(cfg).to(torch.bfloat16)
        with tempfile.TemporaryDirectory(dir=out) as d:
            model.save_pretrained(d)
            del model
            torch.cuda.empty_cache()
            g = np.random.default_rng(1)
            prompts = [g.integers(0, c["vocab_size"], n).tolist() for n in (5, 9, 1, 17)]
            tps = [t for t in map(int, args.tps.split(",")) if t <= max(ngpu, 1) and
                   c["num_attention_heads"] % t == 0 and c["num_key_value_heads"] % t == 0 and
                   c["intermediate_size"] % t == 0]
            ref = None
            for tp in tps:
                lg = os.path.join(out, f"{name}_tp{tp}.f32")
                ids, _, comm, _ = mlk_run(args, d, tp, prompts, 8, logits=lg)
                again, _, _, _ = mlk_run(args, d, tp, prompts, 8, logits=lg + ".2")
                host, _, hcomm, _ = mlk_run(args, d, tp, prompts, 8, env={"MLK_COMM": "host"},
                                            logits=lg + ".host")
                kern = None
                if tp > 1:  # the sums inside the megakernel: the host sums' bits
                    kern, _, _, _ = mlk_run(args, d, tp, prompts, 8, logits=lg + ".kernel", kernel=True)
                    kern_same = kern == host and np.array_equal(np.fromfile(lg + ".kernel", np.float32),
                                                                np.fromfile(lg + ".host", np.float32))
                a = np.fromfile(lg, np.float32)
                same = np.array_equal(a, np.fromfile(lg + ".2", np.float32)) and ids == again
                if ref is None:
                    ref = (a, ids)
                e = float(np.linalg.norm(a - ref[0]) / np.linalg.norm(ref[0]))
                eh = float(np.linalg.norm(np.fromfile(lg + ".host", np.float32) - ref[0]) /
                           np.linalg.norm(ref[0]))
                ok = same and e < 1e-3 and eh < 1e-3 and (tp == 1 or kern_same)
                fail |= not ok
                rec["checks"].append(dict(preset=name, tp=tp, comm=comm, rel_l2=e, host_rel_l2=eh,
                                          repeat_bitwise=same, tokens_equal=ids == ref[1],
                                          host_tokens_equal=host == ref[1],
                                          in_kernel_bitwise_host=None if tp == 1 else kern_same, ok=ok))
                log(out, f"{name} tp={tp} ({comm}; host: {hcomm}): logits rel L2 {e:.2e} vs tp=1, "
                         f"host sums {eh:.2e}; tokens {'equal' if ids == ref[1] else 'DIFFER'}; "
                         f"repeat {'bitwise equal' if same else 'DIFFERS'}"
                         + ("" if tp == 1 else f"; in the megakernel {'bitwise the host sums' if kern_same else 'DIFFERS'}")
                         + f": {'ok' if ok else 'FAIL'}")
            for tp in tps:
                for batch in (1, 16):
                    ps = [prompts[i % 4][:1] for i in range(batch)]
                    for comm_env, kernel in (({}, False), ({"MLK_COMM": "host"}, False), ({}, True)):
                        if kernel and tp == 1:
                            continue
                        _, ms, comm, _ = mlk_run(args, d, tp, ps, args.steps, env=comm_env, timed=True,
                                                 kernel=kernel)
                        floor = rank_bytes(c, tp, batch, args.steps + 1) / (read_gbs * 1e6)
                        sz = batch * c["hidden_size"] * 4
                        cms = 2 * c["num_hidden_layers"] * nccl.get(sz, 0) if tp > 1 else 0
                        p = dict(preset=name, tp=tp, batch=batch, comm=comm, ms=ms, floor_ms=floor,
                                 nccl_sums_ms=cms)
                        rec["points"].append(p)
                        row = (f"{name:3s} tp={tp} b={batch:2d} {comm:12s} {ms if ms else float('nan'):8.3f} ms"
                               f"  floor {floor:.3f} ms ({floor / ms if ms else 0:.0%})"
                               f"  NCCL's sums {cms:.3f} ms")
                        table.append(row)
                        log(out, row)
    # a rank that stops: rank 0 names it
    with tempfile.TemporaryDirectory(dir=out) as t:
        fx = os.path.join(HERE, "..", "..", "tests", "hf", "fixtures", "llama-gqa7")
        env = {"MLK_WORLD_SIZE": "2", "MLK_RENDEZVOUS": os.path.join(t, "rdv")}
        base = [args.mlk_run, "--model", fx, "--steps", "4"]
        p0 = subprocess.Popen(base + ["--prompt-ids", "1,2,3"], env={**os.environ, **env, "MLK_RANK": "0"},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        r1 = run(base + ["--prompt-ids", "1,99999"], {**env, "MLK_RANK": "1"}, check=False)
        _, err0 = p0.communicate(timeout=120)
        ok = p0.returncode != 0 and r1.returncode != 0 and "rank 1 failed" in err0
        fail |= not ok
        log(out, f"a stopping rank: rank 0 says: {err0.strip().splitlines()[-1] if err0 else ''}: "
                 f"{'ok' if ok else 'FAIL'}")
    with open(os.path.join(out, "tp.json"), "w") as f:
        json.dump(rec, f, indent=1)
    with open(os.path.join(out, "table.txt"), "w") as f:
        f.write("\n".join(table) + "\n")
    sys.exit(1 if fail else 0)


if __name__ == "__main__":
    main()
