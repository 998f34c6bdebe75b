/* test_diff_gpu.c: runs a compiled model on the GPU and on the CPU simulator with the same random
 * params and inputs, and compares every output (f32: relative L2 per output <= 1e-4; i32: equal).
 * Generic over any MlkModelDesc; linked with tests/gpu/odd_ops.mlk (every op kind at odd sizes) or,
 * compiled with -DMLK_DIFF_MODEL=NAME, tests/gpu/batch_ops.mlk (matvecs at batches up to 64) or
 * tests/gpu/event_ops.mlk (explicit events, and megakernels reading each other's outputs).
 * Several steps (the KV cache grows) at several batch sizes, outputs poisoned before each step,
 * the KV caches compared too, after every megakernel of a step (equal, or an element apart by
 * rounding: then that step's f32 outputs at TOL_KV_STEP; a later megakernel may overwrite an entry
 * that an earlier one wrote and a third op read in between, as event_ops' step does),
 * which runs every megakernel of the model in order. A sampled token (an output written by a
 * sample op) is not compared with the other side's, whose logits differ by rounding: each side's
 * token must be mlk_ref_sample_row of its own logits and of the row's parameters and random number
 * in its sampling tensor, except in a row where that reference reports a near tie (margin < 1e-4:
 * the tile sums the probabilities in another order), which is counted and printed. Each step
 * gives the rows other sampling settings (as compiled, greedy, a temperature with top-k and
 * top-p), the same on both sides. Without a GPU: prints SKIP and exits 77. With "sim" it compares
 * the simulator's dynamic schedule (8 threads, random delays) against its static one instead, on
 * any machine.
 *
 * The batch sizes: the list given on the command line (e.g. 9,16,33), else 1, 5, 2 for a model
 * whose batch_max is at most 8, else 9, 16, 33, batch_max and 1 (those within the model's range).
 *
 *   test_diff_gpu [seed] [sim] [B1,B2,...]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mlk_ref.h"

#ifndef MLK_DIFF_MODEL
#define MLK_DIFF_MODEL odd_ops
#endif
#define MLK_STR2(a) #a
#define MLK_STR(a) MLK_STR2(a)
#define MLK_CAT2(a, b) a##b
#define MLK_CAT(a, b) MLK_CAT2(a, b)
#include MLK_STR(MLK_DIFF_MODEL.h)
#define MODEL_DESC MLK_CAT(MLK_DIFF_MODEL, _desc)
#define MODEL_CREATE MLK_CAT(MLK_DIFF_MODEL, _create)
#define MODEL_FREE MLK_CAT(MLK_DIFF_MODEL, _free)

#define TOL 1e-4
/* The KV cache holds bf16: a key or value whose f32 sums land near a rounding midpoint can round
 * one bf16 step apart on the two sides (their sums run in other orders), and the attention over it
 * then differs by more than f32 rounding (1.4e-4 seen on the H200 at batch 2). A value near zero
 * that is the difference of large terms can differ by several of its own bf16 steps (0xb62a
 * against 0xb625, about -2.5e-6, seen on the H200), since the sums' rounding is relative to the
 * terms, not to the result. So the caches are compared too, element by element: equal, one bf16
 * step apart, or apart by at most KV_ABS_TOL of the cache's largest magnitude; while a cache holds
 * such an element, the step's f32 outputs are compared at TOL_KV_STEP. Anything more fails. */
#define KV_ABS_TOL (1.0 / 1024)
#define TOL_KV_STEP 2e-3
static int kv_steps;      /* cache elements apart by rounding in the current step (so far) */
static int kv_step_runs;  /* steps compared at TOL_KV_STEP */

static uint64_t rng;
static uint32_t next_u32(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 32);
}
static float uniform(void) { return (float)(next_u32() * 0x1.0p-32 * 2.0 - 1.0); }

/* The same random content for a tensor on both models. */
static int fill_both(mlk_model *g, mlk_model *c, int t, int64_t step) {
  const MlkTensorDesc *td = &mlk_model_desc(g)->tensors[t];
  size_t bytes = mlk_model_tensor_bytes(g, t), n = bytes / mlk_dtype_size(td->dtype);
  void *buf = malloc(bytes ? bytes : 1);
  for (size_t i = 0; i < n; i++) {
    if (td->dtype == MLK_BF16)
      ((uint16_t *)buf)[i] = mlk_f32_to_bf16(strstr(td->name, "norm") ? 1.0f + 0.1f * uniform()
                                                                        : 0.3f * uniform());
    else if (td->dtype == MLK_F32)
      ((float *)buf)[i] = uniform();
    else if (!strcmp(td->name, "pos"))
      ((int32_t *)buf)[i] = (int32_t)(step + (int64_t)i); /* row i at position step + i */
    else
      ((int32_t *)buf)[i] = (int32_t)(next_u32() % 37);
  }
  int ok = mlk_model_set_tensor(g, t, buf, bytes) == MLK_OK && mlk_model_set_tensor(c, t, buf, bytes) == MLK_OK;
  if (!ok)
    printf("FAIL: set '%s': %s\n", td->name, mlk_last_error());
  free(buf);
  return ok;
}

static void *download(mlk_model *m, int t) {
  size_t bytes = mlk_model_tensor_bytes(m, t);
  void *p = malloc(bytes ? bytes : 1);
  if (mlk_model_get_tensor(m, t, p, bytes) != MLK_OK) {
    printf("FAIL: get '%s': %s\n", mlk_model_desc(m)->tensors[t].name, mlk_last_error());
    free(p);
    return NULL;
  }
  return p;
}

static int near_ties;
static const char *gpu_name; /* the backend under test */

/* Output t written by sample op `op` of model m (named `side`): every row's token is the
 * reference's for m's own logits and the row's parameters, or that row is a near tie. */
static int check_sample(mlk_model *m, const MlkOpDesc *op, const char *side, const char *what) {
  const MlkModelDesc *d = mlk_model_desc(m);
  int32_t *tok = download(m, op->out.tensor);
  float *x = download(m, op->in[0].tensor), *sp = download(m, op->in[1].tensor);
  int ok = tok && x && sp;
  int64_t rows = op->batched ? mlk_model_batch(m) : 1;
  for (int64_t b = 0; ok && b < rows; b++) {
    double margin;
    const float *xr = x + op->in[0].offset + b * op->k;
    MlkSampleParams p = mlk_sample_row_params(sp + b * MLK_SAMPLE_PARAMS, op->temperature,
                                              op->top_k, op->top_p);
    int32_t want = mlk_ref_sample_row(xr, p.u, op->k, p.temperature, p.top_k, p.top_p, &margin);
    int32_t got = tok[op->out.offset + b];
    if (got == want)
      continue;
    if (margin < 1e-4) {
      near_ties++;
      printf("note: %s: %s '%s' row %lld: %d, the reference %d at a near tie (margin %.2g)\n",
             what, side, d->tensors[op->out.tensor].name, (long long)b, got, want, margin);
      continue;
    }
    printf("FAIL: %s: %s '%s' row %lld: token %d, the reference %d (temperature %g, top_k %lld, "
           "top_p %g, u %.9g, margin %.3g)\n", what, side, d->tensors[op->out.tensor].name,
           (long long)b, got, want, (double)p.temperature, (long long)p.top_k, (double)p.top_p,
           (double)p.u, margin);
    ok = 0;
  }
  free(tok);
  free(x);
  free(sp);
  return ok;
}

/* Step `step`'s sampling settings of every row, the same on both models: as compiled, greedy, or
 * a temperature with top-k and top-p, in turn. */
static int set_sampling_both(mlk_model *g, mlk_model *c, int64_t step) {
  const MlkModelDesc *d = mlk_model_desc(g);
  int samples = 0;
  for (int o = 0; o < d->nops; o++)
    samples |= d->ops[o].kind == MLK_OP_SAMPLE;
  for (int64_t b = 0; samples && b < (d->batch_name ? d->batch_max : 1); b++) {
    mlk_sampling s = {.seed = (uint64_t)(step * 131 + b)};
    if ((b + step) % 3 == 1)
      s.top_k = 1, s.top_p = 1.0f; /* temperature 0: greedy */
    else if ((b + step) % 3 == 2)
      s.temperature = 0.9f, s.top_k = 500, s.top_p = 0.8f;
    if (mlk_model_set_sampling(g, b, &s) != MLK_OK || mlk_model_set_sampling(c, b, &s) != MLK_OK) {
      printf("FAIL: set_sampling: %s\n", mlk_last_error());
      return 0;
    }
  }
  return 1;
}

static float bf16_value(uint16_t h) {
  uint32_t w = (uint32_t)h << 16;
  float f;
  memcpy(&f, &w, sizeof f);
  return f;
}

/* Every cache of the model, GPU against simulator: adds the elements apart by rounding to
 * kv_steps; 0 when an element differs by more than one bf16 step and more than KV_ABS_TOL of the
 * cache's scale (or the download fails). */
static int compare_caches(mlk_model *g, mlk_model *c, const char *what) {
  const MlkModelDesc *d = mlk_model_desc(g);
  int ok = 1;
  for (int t = 0; t < d->ntensors && ok; t++) {
    if (d->tensors[t].kind != MLK_TENSOR_CACHE)
      continue;
    size_t bytes = mlk_model_tensor_bytes(g, t), n = bytes / 2;
    uint16_t *a = malloc(bytes ? bytes : 1), *b = malloc(bytes ? bytes : 1);
    if (mlk_model_get_tensor(g, t, a, bytes) != MLK_OK || mlk_model_get_tensor(c, t, b, bytes) != MLK_OK) {
      printf("FAIL: get cache '%s': %s\n", d->tensors[t].name, mlk_last_error());
      ok = 0;
    }
    float scale = 0; /* the simulator cache's largest finite magnitude */
    for (size_t i = 0; ok && i < n; i++) {
      float v = fabsf(bf16_value(b[i]));
      if (isfinite(v) && v > scale)
        scale = v;
    }
    for (size_t i = 0; ok && i < n; i++) {
      if (a[i] == b[i])
        continue;
      /* same sign, magnitudes one apart: adjacent bf16 values */
      int step = (a[i] & 0x8000) == (b[i] & 0x8000) && abs((int)(a[i] & 0x7fff) - (int)(b[i] & 0x7fff)) == 1;
      float diff = fabsf(bf16_value(a[i]) - bf16_value(b[i]));
      if (!step && !(diff <= (float)KV_ABS_TOL * scale)) {
        printf("FAIL: %s: cache '%s' element %zu: 0x%04x on the GPU, 0x%04x on the simulator (%g apart, "
               "the cache's largest magnitude %g)\n", what, d->tensors[t].name, i, a[i], b[i], (double)diff,
               (double)scale);
        ok = 0;
      }
      kv_steps++;
    }
    free(a);
    free(b);
  }
  return ok;
}

static int compare(mlk_model *g, mlk_model *c, int t, const char *what, double *worst) {
  const MlkModelDesc *d = mlk_model_desc(g);
  for (int o = 0; o < d->nops; o++)
    if (d->ops[o].kind == MLK_OP_SAMPLE && d->ops[o].out.tensor == t) {
      int ok = check_sample(g, &d->ops[o], gpu_name, what);
      return check_sample(c, &d->ops[o], "static simulator", what) && ok;
    }
  const MlkTensorDesc *td = &mlk_model_desc(g)->tensors[t];
  size_t bytes = mlk_model_tensor_bytes(g, t);
  void *a = malloc(bytes), *b = malloc(bytes);
  int ok = mlk_model_get_tensor(g, t, a, bytes) == MLK_OK && mlk_model_get_tensor(c, t, b, bytes) == MLK_OK;
  if (!ok) {
    printf("FAIL: get '%s': %s\n", td->name, mlk_last_error());
  } else if (td->dtype == MLK_F32) {
    size_t n = bytes / 4;
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
      double x = ((float *)a)[i], y = ((float *)b)[i];
      num += (x - y) * (x - y);
      den += y * y;
    }
    double rel = sqrt(num / (den > 0 ? den : 1)), tol = kv_steps ? TOL_KV_STEP : TOL;
    if (!(rel <= tol)) {
      printf("FAIL: %s: '%s' differs: rel L2 %.3g (tol %g%s)\n", what, td->name, rel, tol,
             kv_steps ? ", a KV cache element apart by rounding" : "");
      ok = 0;
    }
    if (rel > *worst || isnan(rel))
      *worst = rel;
  } else if (memcmp(a, b, bytes)) {
    printf("FAIL: %s: '%s' differs\n", what, td->name);
    ok = 0;
  }
  free(a);
  free(b);
  return ok;
}

int main(int argc, char **argv) {
  rng = argc > 1 ? strtoull(argv[1], NULL, 10) : 0;
  if (!rng) /* 0: a fresh seed, printed for reruns */
    rng = (uint64_t)time(NULL) | 1;
  uint64_t seed = rng;
  mlk_backend *gpu, *cpu;
  int sim_only = 0;
  const char *blist = NULL;
  for (int a = 2; a < argc; a++) {
    if (!strcmp(argv[a], "sim"))
      sim_only = 1;
    else
      blist = argv[a];
  }
  mlk_sim_options dyn = {.threads = 8, .seed = seed, .max_delay_us = 20, .schedule = MLK_SIM_DYNAMIC,
                         .mode = MLK_SIM_THREADED};
  mlk_status st = sim_only ? mlk_backend_create_cpu(&dyn, &gpu) : mlk_backend_create(MLK_BACKEND_GPU, &gpu);
  if (st == MLK_ERR_NO_GPU) {
    printf("SKIP: %s\n", mlk_last_error());
    return 77;
  }
  mlk_sim_options so = {.threads = 4, .seed = seed, .schedule = MLK_SIM_STATIC};
  if (st != MLK_OK || mlk_backend_create_cpu(&so, &cpu) != MLK_OK) {
    printf("FAIL: %s\n", mlk_last_error());
    return 1;
  }
  gpu_name = sim_only ? "dynamic simulator" : mlk_backend_name(gpu);
  printf("%s on %s vs %s, seed %llu\n", MLK_STR(MLK_DIFF_MODEL), mlk_backend_name(gpu),
         mlk_backend_name(cpu), (unsigned long long)seed);
  const MlkModelDesc *d = &MODEL_DESC;
  int passed = 0, failed = 0;
  int64_t batches[16], nbatches = 0;
  int64_t bmin = d->batch_name ? d->batch_min : 1, bmax = d->batch_name ? d->batch_max : 1;
  if (blist) {
    for (const char *p = blist; *p && nbatches < 16;) {
      char *end;
      long long v = strtoll(p, &end, 10);
      if (end == p || v < bmin || v > bmax) {
        printf("FAIL: batch list '%s': not numbers in %lld..%lld\n", blist, (long long)bmin,
               (long long)bmax);
        return 1;
      }
      batches[nbatches++] = v;
      p = *end == ',' ? end + 1 : end;
    }
  } else {
    static const int64_t small[] = {1, 5, 2}, large[] = {9, 16, 33, -1, 1};
    const int64_t *l = bmax <= 8 ? small : large;
    int nl = bmax <= 8 ? 3 : 5;
    for (int i = 0; i < nl; i++) {
      int64_t v = l[i] < 0 ? bmax : l[i];
      if (v >= bmin && v <= bmax)
        batches[nbatches++] = v;
    }
  }
  mlk_model *g, *c;
  if (MODEL_CREATE(gpu, &g) != MLK_OK || MODEL_CREATE(cpu, &c) != MLK_OK) {
    printf("FAIL: create: %s\n", mlk_last_error());
    return 1;
  }
  for (int t = 0; t < d->ntensors; t++) {
    if (d->tensors[t].kind == MLK_TENSOR_PARAM && !fill_both(g, c, t, 0))
      return 1;
    /* caches start zero on both sides: positions not yet written compare equal */
    if (d->tensors[t].kind == MLK_TENSOR_CACHE &&
        (mlk_model_fill_tensor(g, t, 0) != MLK_OK || mlk_model_fill_tensor(c, t, 0) != MLK_OK)) {
      printf("FAIL: fill cache '%s': %s\n", d->tensors[t].name, mlk_last_error());
      return 1;
    }
  }
  int64_t step = 0;
  for (int64_t bi = 0; bi < nbatches; bi++) {
    int64_t batch = batches[bi];
    if (mlk_model_set_batch(g, batch) != MLK_OK || mlk_model_set_batch(c, batch) != MLK_OK) {
      printf("FAIL: set_batch: %s\n", mlk_last_error());
      return 1;
    }
    double worst = 0;
    int ok = 1;
    for (int s = 0; s < 6; s++, step++) {
      if (!set_sampling_both(g, c, step))
        return 1;
      for (int t = 0; t < d->ntensors; t++) {
        if (d->tensors[t].kind == MLK_TENSOR_INPUT && !fill_both(g, c, t, step))
          return 1;
        if (d->tensors[t].kind == MLK_TENSOR_OUTPUT &&
            (mlk_model_fill_tensor(g, t, 0xff) != MLK_OK || mlk_model_fill_tensor(c, t, 0xff) != MLK_OK))
          return 1;
      }
      /* every megakernel in order: a later one may read the outputs an earlier one wrote; the
       * caches after each (an entry written by one may be read, then rewritten, by the next) */
      char what[96];
      kv_steps = 0;
      for (int k = 0; k < d->nkernels && ok; k++) {
        if (mlk_model_run(g, k) != MLK_OK || mlk_model_run(c, k) != MLK_OK) {
          printf("FAIL: run '%s': %s\n", d->kernels[k].name, mlk_last_error());
          ok = 0;
          break;
        }
        snprintf(what, sizeof what, "batch %lld step %d, after '%s'", (long long)batch, s,
                 d->kernels[k].name);
        ok = compare_caches(g, c, what) && ok;
      }
      if (kv_steps)
        kv_step_runs++;
      if (!ok)
        break;
      snprintf(what, sizeof what, "batch %lld step %d", (long long)batch, s);
      for (int t = 0; t < d->ntensors; t++)
        if (d->tensors[t].kind == MLK_TENSOR_OUTPUT)
          ok = compare(g, c, t, what, &worst) && ok;
    }
    printf("%s: batch %lld, 6 steps: every output equal, f32 rel L2 max %.3g (tol %g)\n",
           ok ? "ok" : "FAIL", (long long)batch, worst, TOL);
    ok ? passed++ : failed++;
  }
  MODEL_FREE(g);
  MODEL_FREE(c);
  mlk_backend_free(gpu);
  mlk_backend_free(cpu);
  printf("%d passed, %d failed, %d sampled tokens at a near tie, %d steps with a KV cache element "
         "apart by rounding (compared at tol %g)\n", passed, failed, near_ties, kv_step_runs,
         TOL_KV_STEP);
  return failed != 0;
}
