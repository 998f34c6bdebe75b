/* llama_bench.c: one decode step of Llama-3.2-1B shapes (examples/llama/llama.mlk) as one
 * megakernel, timed the way docs/performance.md says.
 *
 *   llama_bench [steps] [context] [batch]
 *
 * Random bf16 weights (the checkpoint loader is later work; timing does not depend on values),
 * `context` tokens already in the paged KV cache (filled by running that many steps first), then
 * `steps` timed decode steps at the following positions, each with fresh random tokens and the
 * outputs poisoned first. Reports the median device time of one step (CUDA events around the
 * launch) and the floor: the bytes every step must read (all weights, with the tied embedding
 * read in full by the LM head, plus the KV cache of the context), over the read rate measured on
 * the GPU when MLK_READ_GBPS gives it (bench/floor.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "floor.h"
#include "llama.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_u32(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 32);
}
static float uniform(void) { return (float)(next_u32() * 0x1.0p-32 * 2.0 - 1.0); }

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

#define CHECK(call)                                                                                \
  do {                                                                                             \
    if ((call) != MLK_OK) {                                                                        \
      fprintf(stderr, "llama_bench: %s\n", mlk_last_error());                                     \
      return 1;                                                                                    \
    }                                                                                              \
  } while (0)

/* Fills a bf16 tensor with uniform(-scale, scale) (norm weights: 1 + small noise). */
static uint16_t *random_bf16(size_t n, float scale, float center) {
  uint16_t *w = malloc(n * sizeof *w);
  if (!w) {
    fprintf(stderr, "llama_bench: out of host memory\n");
    exit(1);
  }
  for (size_t i = 0; i < n; i++)
    w[i] = mlk_f32_to_bf16(center + scale * uniform());
  return w;
}

int main(int argc, char **argv) {
  int steps = argc > 1 ? atoi(argv[1]) : 100;
  int context = argc > 2 ? atoi(argv[2]) : 128;
  int batch = argc > 3 ? atoi(argv[3]) : 1;
  if (steps < 5 || context < 0 || batch < LLAMA_B_MIN || batch > LLAMA_B_MAX) {
    fprintf(stderr, "usage: llama_bench [steps >= 5] [context >= 0] [batch %d..%d]\n", LLAMA_B_MIN,
            LLAMA_B_MAX);
    return 1;
  }
  mlk_backend *be;
  CHECK(mlk_backend_create(MLK_BACKEND_AUTO, &be));
  printf("backend: %s\n", mlk_backend_name(be));
  llama_model *m;
  CHECK(llama_create(be, &m));
  printf("module load: %.1f ms (%s)\n", mlk_model_load_ms(m), mlk_model_load_note(m));
  const size_t D = LLAMA_D, F = LLAMA_F, L = LLAMA_L, V = LLAMA_V;
  const size_t QKV = (LLAMA_H + 2 * LLAMA_KVH) * LLAMA_HD, HO = LLAMA_H * LLAMA_HD;
  struct { mlk_status (*set)(llama_model *, const uint16_t *); size_t n; float scale, center; } p[] = {
      {llama_set_embed, V * D, 1.0f, 0},        {llama_set_ln1, L * D, 0.05f, 1},
      {llama_set_wqkv, L * QKV * D, 0.03f, 0},   {llama_set_wo, L * D * HO, 0.03f, 0},
      {llama_set_ln2, L * D, 0.05f, 1},          {llama_set_w_gate, L * F * D, 0.03f, 0},
      {llama_set_w_up, L * F * D, 0.03f, 0},     {llama_set_w_down, L * D * F, 0.015f, 0},
      {llama_set_lnf, D, 0.05f, 1},
  };
  double weight_bytes = 0;
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) {
    uint16_t *w = random_bf16(p[i].n, p[i].scale, p[i].center);
    CHECK(p[i].set(m, w));
    free(w);
    weight_bytes += 2.0 * p[i].n;
  }
  CHECK(mlk_model_set_batch(m, batch));
  int logits_t = mlk_model_find_tensor(m, "logits"), next_t = mlk_model_find_tensor(m, "next");
  int32_t tokens[LLAMA_B_MAX], pos[LLAMA_B_MAX];
  double *ms = malloc(sizeof(double) * steps);
  for (int s = 0; s < context + steps; s++) {
    for (int b = 0; b < batch; b++) {
      tokens[b] = (int32_t)(next_u32() % V);
      pos[b] = s;
    }
    CHECK(llama_set_tokens(m, tokens));
    CHECK(llama_set_pos(m, pos));
    CHECK(mlk_model_fill_tensor(m, logits_t, 0xff));
    CHECK(mlk_model_fill_tensor(m, next_t, 0xff));
    double t;
    CHECK(mlk_model_run_timed(m, 0, &t));
    if (s >= context)
      ms[s - context] = t;
  }
  int32_t next[LLAMA_B_MAX];
  CHECK(llama_get_next(m, next));
  for (int b = 0; b < batch; b++)
    if (next[b] < 0 || next[b] >= (int32_t)V) {
      fprintf(stderr, "llama_bench: FAIL: next token %d of row %d is out of range\n", next[b], b);
      return 1;
    }
  qsort(ms, steps, sizeof *ms, cmp);
  /* K and V of every layer for every position read by attention, bf16 */
  double kv_bytes = 2.0 * 2 * L * LLAMA_KVH * LLAMA_HD * (context + steps / 2) * batch;
  printf("llama-3.2-1b shapes, batch %d, context %d: %.3f GB of weights\n", batch, context,
         weight_bytes / 1e9);
  printf("decode step (%s): median %.4f ms, p10 %.4f, p90 %.4f over %d steps\n",
         mlk_backend_is_gpu(be) ? "device time, CUDA events" : "wall time, CPU simulator",
         ms[steps / 2], ms[steps / 10], ms[steps * 9 / 10], steps);
  bench_print_floor(weight_bytes + kv_bytes, ms[steps / 2]);
  free(ms);
  llama_free(m);
  mlk_backend_free(be);
  return 0;
}
