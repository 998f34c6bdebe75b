/* test_llama_sim.c: the llama_tiny megakernel (tests/sim/llama_tiny.mlk: 2 layers, D 64, F 128,
 * 4 query heads over 2 kv heads of 16, vocab 96, paged KV) on the CPU simulator against the
 * sequential reference of examples/llama/llama_ref.c, step by step.
 *
 * For each simulator configuration (deterministic or threaded, static / dynamic / as-compiled
 * schedule, 1, 4 or 8 SMs, seeds, random delays on some threaded ones) and each batch size of 1, 3 and 4 (changed with
 * mlk_model_set_batch on one model object, growing or shrinking, and once on a fresh model), the
 * model and the reference run the same decode steps: row b lags row 0 by LT_LAG*b steps (it
 * re-decodes position 0 until its turn comes), so rows sit at different positions, and every row
 * decodes positions 0..LT_STEPS-1 or more (row 0 crosses KV pages: page 8). Each step feeds, per
 * row, the reference's previous choice (a random token instead of a repeat; so both stay on the
 * same path), after poisoning the outputs (0xff: NaN logits, next = -1). Checks, per step and row:
 *   - every logit and `next` was written;
 *   - relative L2 of the logits vs the reference <= LT_TOL;
 *   - next == argmax of the model's own logits (first of equal maxima), and == the reference's
 *     token unless the reference's top two logits are within LT_TIE (relative to max |logit|);
 *   - the model's paged KV cache (read back) holds the reference's bf16 K and V at the step's
 *     position, up to roundings that f32 noise explains (LT_KV_NOISE_REL).
 * On the first failure the model's f32 intermediates are printed next to the closest reference
 * value (which op differs) with the count of differing cache entries.
 * Also the dependency checker: with the drop_event hook on event 0 a run must fail and say
 * "missing dependency" (deterministic mode, fixed schedule seeds 1 to 4, both schedules).
 *
 * Usage: test_llama_sim [SEED]   (0 or none: the time; every line names the seeds it used; CTest
 *                                passes MLK_TEST_SEED)
 *
 * The GPU test (tests/gpu/test_llama_gpu.c) includes this file with LLAMA_TEST_NO_MAIN defined and
 * reuses the harness.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llama_ref.h"
#include "llama_tiny.h"

/* Relative L2 tolerance of the logits of one row against the reference. The weights are the same
 * bf16 numbers on both sides and activations are f32 in the kernel, so the differences are f32
 * rounding in another order than the reference's double accumulation: dot products of at most
 * F = 128 terms (~sqrt(128) * 2^-24 ~ 7e-7 relative each), a softmax over <= 21 positions, two
 * rmsnorms per layer and three residual adds; a variant of the reference accumulating in f32
 * stays within 3.3e-7 of it over 600 sequences, the simulator within 4.4e-7 (61 seeds x 28
 * sequences). The bf16 K/V cache would add up to ~6e-4 where
 * the two sides round a near-tie value differently; the test takes the model's rounding in exactly
 * those cases (LT_KV_NOISE_REL below), so it adds nothing. 2e-4 leaves ~500x room for the
 * kernel's own f32 choices (fast exp, other tilings) and still catches wrong operations: with
 * the simulator's tiles mutated, a wrong kv head mapping, position range, page or attention scale
 * moves the logits by 0.1 to 0.9, a 1% error of the scale by 1.2e-3, an extra 0.1% weight on the
 * last position by 1.5e-4 to 3.8e-4 (and moves layer 1's K past rounding noise: the cache check
 * fails at step 1); a wrong rope or K/V rounding fails the cache check at once. */
#define LT_TOL 2e-4
/* A different `next` is accepted when the reference's two best logits are closer than this,
 * relative to the largest |logit| of the row (then rounding may pick either). */
#define LT_TIE 1e-4
#define LT_STEPS 12 /* positions 0..11 for every row */
#define LT_LAG 3    /* row b starts LT_LAG*b steps after row 0 */
#define LT_MAX_MODELS 2
/* In a diagnosis, an intermediate further than this from the reference is flagged (they agree to
 * ~1e-6 when correct). */
#define LT_DIAG_TOL 1e-5

enum {
  D = LLAMA_TINY_D,
  F = LLAMA_TINY_F,
  L = LLAMA_TINY_L,
  H = LLAMA_TINY_H,
  KVH = LLAMA_TINY_KVH,
  HD = LLAMA_TINY_HD,
  V = LLAMA_TINY_V,
  QKV = (LLAMA_TINY_H + 2 * LLAMA_TINY_KVH) * LLAMA_TINY_HD,
  BMAX = 4
};

/* ---- random weights ---- */

static uint64_t lt_next(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* Uniform in [-1, 1). */
static float lt_uniform(uint64_t *s) {
  return (float)((lt_next(s) >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

typedef struct TinyWeights {
  uint16_t *embed, *ln1, *wqkv, *wo, *ln2, *w_gate, *w_up, *w_down, *lnf;
} TinyWeights;

static void lt_fill(uint16_t *w, size_t n, float scale, float offset, uint64_t *s) {
  for (size_t i = 0; i < n; i++)
    w[i] = llama_ref_bf16(offset + scale * lt_uniform(s));
}

/* Entries U(-1,1)/sqrt(fan_in) so activations stay O(1); q and k rows twice that so attention is
 * not flat (scores of std ~1); norm weights 1 +- 0.2; embeddings U(-1,1). */
static void lt_make_weights(uint64_t seed, TinyWeights *w) {
  uint64_t s = seed * 0x9e3779b97f4a7c15ull | 1;
  w->embed = malloc(sizeof(uint16_t) * V * D);
  w->ln1 = malloc(sizeof(uint16_t) * L * D);
  w->wqkv = malloc(sizeof(uint16_t) * L * QKV * D);
  w->wo = malloc(sizeof(uint16_t) * L * D * H * HD);
  w->ln2 = malloc(sizeof(uint16_t) * L * D);
  w->w_gate = malloc(sizeof(uint16_t) * L * F * D);
  w->w_up = malloc(sizeof(uint16_t) * L * F * D);
  w->w_down = malloc(sizeof(uint16_t) * L * D * F);
  w->lnf = malloc(sizeof(uint16_t) * D);
  lt_fill(w->embed, (size_t)V * D, 1.0f, 0.0f, &s);
  lt_fill(w->ln1, (size_t)L * D, 0.2f, 1.0f, &s);
  for (int l = 0; l < L; l++) {
    uint16_t *wl = w->wqkv + (size_t)l * QKV * D;
    lt_fill(wl, (size_t)(H + KVH) * HD * D, 2.0f / sqrtf(D), 0.0f, &s);  /* q, k rows */
    lt_fill(wl + (size_t)(H + KVH) * HD * D, (size_t)KVH * HD * D, 1.0f / sqrtf(D), 0.0f, &s);
  }
  lt_fill(w->wo, (size_t)L * D * H * HD, 1.0f / sqrtf(H * HD), 0.0f, &s);
  lt_fill(w->ln2, (size_t)L * D, 0.2f, 1.0f, &s);
  lt_fill(w->w_gate, (size_t)L * F * D, 1.0f / sqrtf(D), 0.0f, &s);
  lt_fill(w->w_up, (size_t)L * F * D, 1.0f / sqrtf(D), 0.0f, &s);
  lt_fill(w->w_down, (size_t)L * D * F, 1.0f / sqrtf(F), 0.0f, &s);
  lt_fill(w->lnf, D, 0.2f, 1.0f, &s);
}

static void lt_free_weights(TinyWeights *w) {
  free(w->embed);
  free(w->ln1);
  free(w->wqkv);
  free(w->wo);
  free(w->ln2);
  free(w->w_gate);
  free(w->w_up);
  free(w->w_down);
  free(w->lnf);
}

static mlk_status lt_load(llama_tiny_model *m, const TinyWeights *w) {
  mlk_status st;
  if ((st = llama_tiny_set_embed(m, w->embed)) || (st = llama_tiny_set_ln1(m, w->ln1)) ||
      (st = llama_tiny_set_wqkv(m, w->wqkv)) || (st = llama_tiny_set_wo(m, w->wo)) ||
      (st = llama_tiny_set_ln2(m, w->ln2)) || (st = llama_tiny_set_w_gate(m, w->w_gate)) ||
      (st = llama_tiny_set_w_up(m, w->w_up)) || (st = llama_tiny_set_w_down(m, w->w_down)) ||
      (st = llama_tiny_set_lnf(m, w->lnf)))
    return st;
  return MLK_OK;
}

/* Creates a model and loads the weights; batch rows set first when batch > 0. */
static mlk_status lt_create(mlk_backend *be, const TinyWeights *w, int batch,
                            llama_tiny_model **out) {
  llama_tiny_model *m = NULL;
  mlk_status st = llama_tiny_create(be, &m);
  if (st == MLK_OK && batch > 0)
    st = mlk_model_set_batch(m, batch);
  if (st == MLK_OK)
    st = lt_load(m, w);
  if (st != MLK_OK) {
    llama_tiny_free(m);
    m = NULL;
  }
  *out = m;
  return st;
}

static LlamaRefConfig lt_config(void) {
  LlamaRefConfig c = llama_ref_default_config(); /* eps 1e-5, theta 500000, Llama 3 scaling */
#ifdef LT_ROPE_PLAIN
  /* tests/sim/llama_tiny_plain.mlk: plain RoPE over theta 10000 (Llama 2) */
  c.rope_theta = 10000.0;
  c.rope_factor = 1.0;
#endif
  c.dim = D;
  c.ffn = F;
  c.layers = L;
  c.heads = H;
  c.kv_heads = KVH;
  c.head_dim = HD;
  c.vocab = V;
  c.max_context = 64;
  c.max_batch = BMAX;
  return c;
}

static LlamaRefWeights lt_ref_weights(const TinyWeights *w) {
  LlamaRefWeights r = {w->embed, w->ln1, w->wqkv, w->wo, w->ln2,
                       w->w_gate, w->w_up, w->w_down, w->lnf, NULL, NULL};
  return r;
}

/* ---- the model's paged KV cache, read back after each step ---- */

/* Near-tie rounding of K and V. The model's f32 k and v differ from the reference's by f32 noise
 * (another summation order; ~1e-7 of the terms' magnitude), so where a value lies that close to
 * the midpoint of two bf16 numbers the two sides may store different neighbours: one bf16 ulp
 * (2^-8 relative) in one element, which moves the logits by up to ~6e-4 relative (measured with an
 * f32 variant of the reference: 114 such flips in 7e5 entries), more than LT_TOL. So after each
 * step the test reads the model's paged cache back and the reference stores the model's bf16 value
 * wherever it is a possible rounding of an f32 value within LT_KV_NOISE_REL * |v| + LT_KV_NOISE_ABS
 * of the reference's own v (a value of 0.3 has a bf16 ulp of 2e-3 and a noise band of 4e-5); any
 * other difference is a wrong cache entry (a wrong position, page, head or rounding) and fails. */
#define LT_KV_NOISE_REL 1e-4
#define LT_KV_NOISE_ABS 1e-5

typedef struct LtKv {
  llama_tiny_model *m;
  const MlkCacheDesc *cd;
  uint16_t *pool;
  int32_t *table;
  size_t pool_bytes, table_bytes;
  int64_t pages, pps;
  int readable;       /* the pool and page table were read back after the last step */
  long ties, bad;     /* roundings followed (within noise); entries that differ otherwise */
  char first_bad[300];
  char note[300];     /* why the cache could not be read */
} LtKv;

static void lt_kv_init(LtKv *k, llama_tiny_model *m) {
  memset(k, 0, sizeof *k);
  k->m = m;
  const MlkModelDesc *d = mlk_model_desc(m);
  if (!d || d->ncaches < 1) {
    snprintf(k->note, sizeof k->note, "the model has no cache description");
    return;
  }
  k->cd = &d->caches[0];
}

/* Reads the pool and the page table of the model's cache (after a step). */
static void lt_kv_read(LtKv *k, int batch) {
  k->readable = 0;
  if (!k->cd)
    return;
  const MlkModelDesc *d = mlk_model_desc(k->m);
  const MlkCacheDesc *cd = k->cd;
  size_t pb = mlk_model_tensor_bytes(k->m, cd->tensor);
  size_t tb = mlk_model_tensor_bytes(k->m, cd->pages_tensor);
  int64_t per_page = cd->layers * 2 * cd->kv_heads * cd->page * cd->head_dim;
  int table_rows = d->tensors[cd->pages_tensor].batched ? batch : (int)d->batch_max;
  if (cd->dtype != MLK_BF16 || !pb || !tb || per_page <= 0 || table_rows <= 0) {
    snprintf(k->note, sizeof k->note, "cache %s: unexpected geometry (dtype %d, %zu, %zu bytes)",
             cd->name, (int)cd->dtype, pb, tb);
    return;
  }
  if (pb != k->pool_bytes) {
    free(k->pool);
    k->pool = malloc(pb);
    k->pool_bytes = pb;
  }
  if (tb != k->table_bytes) {
    free(k->table);
    k->table = malloc(tb);
    k->table_bytes = tb;
  }
  if (mlk_model_get_tensor(k->m, cd->tensor, k->pool, pb) != MLK_OK ||
      mlk_model_get_tensor(k->m, cd->pages_tensor, k->table, tb) != MLK_OK) {
    snprintf(k->note, sizeof k->note, "cache %s: cannot read it back: %s", cd->name,
             mlk_last_error());
    return;
  }
  k->pages = (int64_t)(pb / 2) / per_page;
  k->pps = (int64_t)(tb / 4) / table_rows;
  k->readable = 1;
}

/* The model's cached value (kv, row, layer, pos, head, j), or NULL. */
static const uint16_t *lt_kv_at(const LtKv *k, int kv, int row, int layer, int pos, int head,
                                int j) {
  if (!k->readable)
    return NULL;
  int64_t lp = pos / k->cd->page;
  if (lp >= k->pps)
    return NULL;
  int32_t phys = k->table[row * k->pps + lp];
  if (phys < 0 || phys >= k->pages)
    return NULL;
  return k->pool + mlk_cache_offset(k->cd, k->pages, layer, phys, kv, head, pos % k->cd->page) + j;
}

/* The reference's rounding hook (llama_ref_set_round): round to nearest even, but store the
 * model's value where f32 noise explains the difference (see LT_KV_NOISE_REL); counts the rest. */
static uint16_t lt_round(void *ctx, int kv, int row, int layer, int pos, int head, int j,
                         float value) {
  LtKv *k = ctx;
  uint16_t r = llama_ref_bf16(value);
  const uint16_t *mp = lt_kv_at(k, kv, row, layer, pos, head, j);
  if (!mp || *mp == r)
    return r;
  double noise = LT_KV_NOISE_REL * fabs(value) + LT_KV_NOISE_ABS;
  float mv = llama_ref_f32(*mp);
  float lo = llama_ref_f32(llama_ref_bf16((float)(value - noise)));
  float hi = llama_ref_f32(llama_ref_bf16((float)(value + noise)));
  if (lo <= mv && mv <= hi) {
    k->ties++;
    return *mp;
  }
  if (!k->bad++)
    snprintf(k->first_bad, sizeof k->first_bad,
             "cache %s row %d layer %d position %d %s head %d [%d]: model %.7g (0x%04x), "
             "reference %.7g (0x%04x, rounded from %.9g)",
             k->cd->name, row, layer, pos, kv ? "V" : "K", head, j, mv, *mp,
             llama_ref_f32(r), r, value);
  return r;
}

static void lt_kv_free(LtKv *k) {
  free(k->pool);
  free(k->table);
}

/* ---- diagnosis of a mismatch: the model's intermediates against the reference's ---- */

typedef struct LtTraceItem {
  char what[16];
  int layer, row, n;
  float *v;
} LtTraceItem;

typedef struct LtTrace {
  LtTraceItem items[256];
  int n;
} LtTrace;

static void lt_trace_fn(void *ctx, const char *what, int layer, int row, const float *v, int n) {
  LtTrace *t = ctx;
  if (t->n == (int)(sizeof t->items / sizeof t->items[0]))
    return;
  LtTraceItem *it = &t->items[t->n++];
  snprintf(it->what, sizeof it->what, "%s", what);
  it->layer = layer;
  it->row = row;
  it->n = n;
  it->v = malloc(sizeof(float) * n);
  memcpy(it->v, v, sizeof(float) * n);
}

static void lt_trace_clear(LtTrace *t) {
  for (int i = 0; i < t->n; i++)
    free(t->items[i].v);
  t->n = 0;
}

static double lt_rel_l2(const float *a, const float *ref, int n) {
  double num = 0, den = 0;
  for (int i = 0; i < n; i++) {
    double d = (double)a[i] - ref[i];
    num += d * d;
    den += (double)ref[i] * ref[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Prints, for every f32 intermediate of the model, the reference value of the same length it is
 * closest to (row `row`), and how many cache entries differ from the reference's. */
static void lt_diagnose(llama_tiny_model *m, const LlamaRefState *ref, const LtTrace *tr,
                        const LtKv *kv, int batch, int row, const int32_t *pos) {
  const MlkModelDesc *d = mlk_model_desc(m);
  printf("  diagnosis, row %d at position %d: model tensor -> closest reference value\n", row,
         pos[row]);
  for (int t = 0; t < d->ntensors; t++) {
    const MlkTensorDesc *td = &d->tensors[t];
    if (td->dtype != MLK_F32 || (td->kind != MLK_TENSOR_TEMP && td->kind != MLK_TENSOR_OUTPUT))
      continue;
    size_t bytes = mlk_model_tensor_bytes(m, t);
    float *buf = malloc(bytes ? bytes : 1);
    if (mlk_model_get_tensor(m, t, buf, bytes) != MLK_OK) {
      printf("    %-28s (cannot read: %s)\n", td->name, mlk_last_error());
      free(buf);
      continue;
    }
    int rows = td->batched ? batch : 1, r = td->batched ? row : 0;
    int n = (int)(bytes / sizeof(float) / rows);
    double best = INFINITY;
    const LtTraceItem *bi = NULL;
    for (int i = 0; i < tr->n; i++)
      if (tr->items[i].row == r && tr->items[i].n == n) {
        double e = lt_rel_l2(buf + (size_t)r * n, tr->items[i].v, n);
        if (e < best)
          best = e, bi = &tr->items[i];
      }
    if (bi)
      printf("    %-28s [%d x %d] ~ %s (layer %d): rel L2 %.3g%s\n", td->name, rows, n, bi->what,
             bi->layer, best, best > LT_DIAG_TOL ? "   <-- differs" : "");
    else
      printf("    %-28s [%d x %d]: no reference value of that length\n", td->name, rows, n);
    free(buf);
  }
  if (!kv->readable) {
    printf("    cache: not compared (%s)\n", kv->note);
    return;
  }
  long bad = 0, total = 0;
  for (int b = 0; b < batch; b++)
    for (int l = 0; l < kv->cd->layers; l++)
      for (int p = 0; p <= pos[b]; p++)
        for (int g = 0; g < kv->cd->kv_heads; g++)
          for (int k = 0; k < 2; k++) {
            const uint16_t *r = llama_ref_kv(ref, k, b, l, p, g);
            for (int j = 0; r && j < kv->cd->head_dim; j++, total++) {
              const uint16_t *mv = lt_kv_at(kv, k, b, l, p, g, j);
              if (!mv || *mv != r[j])
                bad++;
            }
          }
  printf("    cache %s: %ld of %ld bf16 entries (positions 0..pos of every row) differ from the "
         "reference's (%lld pages, %lld per sequence)\n",
         kv->cd->name, bad, total, (long long)kv->pages, (long long)kv->pps);
}

/* ---- the harness ---- */

typedef struct LtResult {
  int steps;
  double max_rel[LT_MAX_MODELS]; /* worst row rel L2 of model i vs its reference */
  double max_rel_pair;           /* worst row rel L2 of model 1 vs model 0 */
  int unwritten;                 /* logits still NaN or next out of range after a step */
  int next_self_bad;             /* next != argmax of the model's own logits */
  int next_ref_bad;              /* next != the reference's, not a tie */
  int ties;                      /* next != the reference's, a near tie */
  long kv_ties[LT_MAX_MODELS];   /* K/V roundings within noise of the model's followed */
  long kv_bad;                   /* cache entries that differ from the reference's */
  int kv_unread;                 /* the cache could not be read back (near ties not followed) */
  double ms;                     /* host time of all decode calls of model 0 */
  char why[768];                 /* the first failure */
} LtResult;

static double lt_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static void lt_why(LtResult *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void lt_why(LtResult *r, const char *fmt, ...) {
  if (r->why[0])
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->why, sizeof r->why, fmt, ap);
  va_end(ap);
}

static int lt_ok(const LtResult *r, int nmodels) {
  if (r->why[0] || r->unwritten || r->next_self_bad || r->next_ref_bad || r->kv_bad)
    return 0;
  for (int i = 0; i < nmodels; i++)
    if (!(r->max_rel[i] <= LT_TOL))
      return 0;
  return 1;
}

/* Runs LT_STEPS + LT_LAG*(batch-1) decode steps of `batch` rows on every model (their batch is
 * set here) in lockstep, each against its own fresh reference (they differ only where a K/V
 * rounding followed a model's choice within noise). Every model and reference gets the tokens
 * chosen by reference 0. With two models, model 1 must also agree with model 0 within LT_TOL plus
 * the distance of their references. Returns 1 if every check passed. */
static int lt_run(llama_tiny_model *const *models, const char *const *names, int nmodels,
                  int batch, const TinyWeights *w, uint64_t seed, LtResult *r) {
  memset(r, 0, sizeof *r);
  LlamaRefConfig cfg = lt_config();
  LlamaRefWeights rw = lt_ref_weights(w);
  LlamaRefState *ref[LT_MAX_MODELS] = {0};
  LtTrace *tr[LT_MAX_MODELS] = {0};
  LtKv kv[LT_MAX_MODELS];
  int idx_logits[LT_MAX_MODELS] = {-1, -1}, idx_next[LT_MAX_MODELS] = {-1, -1};
  for (int i = 0; i < nmodels; i++) {
    ref[i] = llama_ref_create(&cfg, &rw);
    tr[i] = calloc(1, sizeof *tr[i]);
    lt_kv_init(&kv[i], models[i]);
    if (!ref[i] || !tr[i]) {
      lt_why(r, "cannot create the reference");
      continue;
    }
    llama_ref_set_trace(ref[i], lt_trace_fn, tr[i]);
    llama_ref_set_round(ref[i], lt_round, &kv[i]);
    idx_logits[i] = mlk_model_find_tensor(models[i], "logits");
    idx_next[i] = mlk_model_find_tensor(models[i], "next");
    if (idx_logits[i] < 0 || idx_next[i] < 0)
      lt_why(r, "%s: no tensor 'logits' or 'next'", names[i]);
    else if (mlk_model_set_batch(models[i], batch) != MLK_OK)
      lt_why(r, "%s: set_batch(%d): %s", names[i], batch, mlk_last_error());
  }
  int32_t t0[BMAX], tokens[BMAX] = {0}, pos[BMAX], ref_next[LT_MAX_MODELS][BMAX] = {{0}};
  int32_t next[LT_MAX_MODELS][BMAX];
  static float ref_logits[LT_MAX_MODELS][BMAX * V], logits[LT_MAX_MODELS][BMAX * V];
  uint64_t s = seed | 1;
  for (int b = 0; b < batch; b++)
    t0[b] = (int32_t)(lt_next(&s) % V);
  int nsteps = LT_STEPS + LT_LAG * (batch - 1);
  int diagnosed = 0;
  for (int step = 0; step < nsteps && !r->why[0]; step++) {
    /* row b: position step - LT_LAG*b (position 0 again while it waits), fed reference 0's
     * previous choice (its first token at position 0). Greedy decoding of random weights with a
     * tied embedding tends to repeat its input (embed[t] . x is largest for the t that x came
     * from), and a row of one repeated token has equal V rows, where the attention weights (the
     * scale, the positions attended) would not matter: a repeat is replaced by a random token. */
    for (int b = 0; b < batch; b++) {
      int p = step - LT_LAG * b;
      pos[b] = p > 0 ? p : 0;
      int32_t t = pos[b] == 0 ? t0[b] : ref_next[0][b];
      if (pos[b] > 0 && t == tokens[b])
        t = (int32_t)((t + 1 + lt_next(&s) % (V - 1)) % V);
      tokens[b] = t;
    }
    /* the models first: each reference's rounding hook looks at its model's cache */
    for (int i = 0; i < nmodels && !r->why[0]; i++) {
      llama_tiny_model *m = models[i];
      mlk_status st;
      double t = lt_now_ms();
      if ((st = llama_tiny_set_tokens(m, tokens)) || (st = llama_tiny_set_pos(m, pos)) ||
          (st = mlk_model_fill_tensor(m, idx_logits[i], 0xff)) ||
          (st = mlk_model_fill_tensor(m, idx_next[i], 0xff)) || (st = llama_tiny_decode(m)) ||
          (st = llama_tiny_get_logits(m, logits[i])) || (st = llama_tiny_get_next(m, next[i]))) {
        lt_why(r, "%s, step %d: %s: %s", names[i], step, mlk_status_name(st), mlk_last_error());
        break;
      }
      if (i == 0)
        r->ms += lt_now_ms() - t;
      lt_kv_read(&kv[i], batch);
      if (!kv[i].readable && !r->kv_unread++)
        printf("  note: %s: K/V roundings cannot follow the model's: %s\n", names[i], kv[i].note);
    }
    int kv_bad_step[LT_MAX_MODELS] = {0};
    for (int i = 0; i < nmodels && !r->why[0]; i++) {
      lt_trace_clear(tr[i]);
      long bad0 = kv[i].bad;
      if (llama_ref_step(ref[i], batch, tokens, pos, ref_logits[i], ref_next[i])) {
        lt_why(r, "reference, step %d: %s", step, llama_ref_error(ref[i]));
        break;
      }
      r->kv_ties[i] = kv[i].ties;
      if (kv[i].bad > bad0) {
        r->kv_bad += kv[i].bad - bad0;
        kv_bad_step[i] = 1;
        lt_why(r, "%s, step %d: %ld K/V cache entries of this step differ from the reference's; "
               "first: %s", names[i], step, kv[i].bad - bad0, kv[i].first_bad);
        kv[i].bad = 0;
      }
    }
    for (int i = 0; i < nmodels; i++) {
      int bad_row = kv_bad_step[i] ? 0 : -1;
      for (int b = 0; b < batch; b++) {
        const float *ml = logits[i] + b * V, *rl = ref_logits[i] + b * V;
        int nan = 0;
        for (int v = 0; v < V; v++)
          nan += isnan(ml[v]) != 0;
        if (nan || next[i][b] < 0 || next[i][b] >= V) {
          r->unwritten++;
          lt_why(r, "%s, step %d row %d: %d logits unwritten (NaN), next = %d", names[i], step, b,
                 nan, next[i][b]);
          bad_row = bad_row < 0 ? b : bad_row;
          continue;
        }
        double rel = lt_rel_l2(ml, rl, V);
        if (!(rel <= r->max_rel[i]))
          r->max_rel[i] = rel;
        if (!(rel <= LT_TOL)) {
          int worst = 0;
          for (int v = 1; v < V; v++)
            if (fabsf(ml[v] - rl[v]) > fabsf(ml[worst] - rl[worst]))
              worst = v;
          lt_why(r, "%s, step %d row %d (token %d, position %d): logits rel L2 %.3g > %g; "
                 "worst logits[%d] = %.7g, reference %.7g", names[i], step, b, tokens[b], pos[b],
                 rel, LT_TOL, worst, ml[worst], rl[worst]);
          bad_row = bad_row < 0 ? b : bad_row;
        }
        int self = llama_ref_argmax(ml, V);
        if (next[i][b] != self) {
          r->next_self_bad++;
          lt_why(r, "%s, step %d row %d: next = %d but argmax of its logits is %d (%.7g vs "
                 "%.7g)", names[i], step, b, next[i][b], self, ml[next[i][b]], ml[self]);
        }
        if (next[i][b] != ref_next[i][b]) {
          int top = ref_next[i][b], second = top == 0 ? 1 : 0;
          float amax = 0;
          for (int v = 0; v < V; v++) {
            if (v != top && rl[v] > rl[second])
              second = v;
            if (fabsf(rl[v]) > amax)
              amax = fabsf(rl[v]);
          }
          if (rl[top] - rl[second] <= LT_TIE * amax) {
            r->ties++;
          } else {
            r->next_ref_bad++;
            lt_why(r, "%s, step %d row %d: next = %d, reference %d (reference logits %.7g vs "
                   "%.7g)", names[i], step, b, next[i][b], top, rl[next[i][b]], rl[top]);
          }
        }
      }
      if (i == 1) {
        for (int b = 0; b < batch; b++) {
          double rel = lt_rel_l2(logits[1] + b * V, logits[0] + b * V, V);
          double tol = LT_TOL + lt_rel_l2(ref_logits[1] + b * V, ref_logits[0] + b * V, V);
          if (!(rel <= r->max_rel_pair))
            r->max_rel_pair = rel;
          if (!(rel <= tol))
            lt_why(r, "step %d row %d: %s vs %s: logits rel L2 %.3g > %.3g", step, b, names[1],
                   names[0], rel, tol);
        }
      }
      if (bad_row >= 0 && !diagnosed) {
        printf("  %s\n", r->why);
        lt_diagnose(models[i], ref[i], tr[i], &kv[i], batch, bad_row, pos);
        diagnosed = 1;
      }
    }
    r->steps = step + 1;
  }
  for (int i = 0; i < nmodels; i++) {
    if (tr[i])
      lt_trace_clear(tr[i]);
    free(tr[i]);
    llama_ref_free(ref[i]);
    lt_kv_free(&kv[i]);
  }
  return lt_ok(r, nmodels);
}

/* ---- the reference's own pieces against closed forms and brute force ---- */

/* Returns the number of failed self-checks (each printed). */
static int lt_check_reference(void) {
  LlamaRefConfig c = lt_config();
  int bad = 0;
  /* bf16: round to nearest even, exact widening */
  static const struct { float f; uint16_t h; } bf[] = {
      {1.0f, 0x3f80}, {-2.0f, 0xc000}, {0x1.01p0f, 0x3f80}, /* a tie: down to the even 0x3f80 */
      {0x1.03p0f, 0x3f82},                                 /* a tie: up to the even 0x3f82 */
      {0x1.0101p0f, 0x3f81}, {0x1.fffffep127f, 0x7f80}};  /* above a tie; overflow to inf */
  for (size_t i = 0; i < sizeof bf / sizeof bf[0]; i++)
    if (llama_ref_bf16(bf[i].f) != bf[i].h || (i < 2 && llama_ref_f32(bf[i].h) != bf[i].f)) {
      printf("FAIL: reference bf16(%a) = 0x%04x, expected 0x%04x\n", bf[i].f,
             llama_ref_bf16(bf[i].f), bf[i].h);
      bad++;
    }
  /* rope frequencies: HD = 16, theta 5e5: pairs 0..3 keep theta^(-i/8) (wavelength < 2048),
   * pairs 5..7 are divided by 32 (wavelength > 8192), pair 4 (wavelength 2*pi*sqrt(5e5) ~ 4443)
   * interpolates with smooth = (8192 / 4443 - 1) / 3; plain RoPE keeps them all */
  const double pi = 3.14159265358979323846;
  for (int i = 0; i < HD / 2; i++) {
    double f = pow(c.rope_theta, -i / 8.0), want;
    if (i <= 3 || c.rope_factor <= 1.0)
      want = f;
    else if (i >= 5)
      want = f / 32;
    else {
      double sm = (8192.0 / (2 * pi * sqrt(500000.0)) - 1) / 3;
      want = (1 - sm) * f / 32 + sm * f;
    }
    double got = llama_ref_rope_inv_freq(&c, i);
    if (fabs(got - want) > 1e-12 * want) {
      printf("FAIL: reference rope inv_freq[%d] = %.17g, expected %.17g\n", i, got, want);
      bad++;
    }
  }
  /* rope is a rotation by pos * inv_freq of the pairs (j, j + HD/2): compare with the complex
   * product, and check that q.k after rotating both depends only on the distance of positions */
  uint64_t s = 12345;
  float q[HD * 2], k[HD * 2], q2[HD * 2], k2[HD * 2];
  for (int j = 0; j < 2 * HD; j++)
    q[j] = lt_uniform(&s), k[j] = lt_uniform(&s);
  memcpy(q2, q, sizeof q);
  llama_ref_rope(&c, q2, 2 * HD, 1000);
  for (int h = 0; h < 2; h++)
    for (int j = 0; j < HD / 2; j++) {
      double a = 1000 * llama_ref_rope_inv_freq(&c, j);
      double re = q[h * HD + j], im = q[h * HD + j + HD / 2];
      double wr = re * cos(a) - im * sin(a), wi = re * sin(a) + im * cos(a);
      if (fabs(q2[h * HD + j] - wr) > 1e-6 || fabs(q2[h * HD + j + HD / 2] - wi) > 1e-6) {
        printf("FAIL: reference rope head %d pair %d: (%g, %g), expected (%g, %g)\n", h, j,
               q2[h * HD + j], q2[h * HD + j + HD / 2], wr, wi);
        bad++;
      }
    }
  double dots[2];
  for (int t = 0; t < 2; t++) {
    memcpy(q2, q, sizeof q);
    memcpy(k2, k, sizeof k);
    llama_ref_rope(&c, q2, HD, 7 + 20 * t);
    llama_ref_rope(&c, k2, HD, 3 + 20 * t);
    dots[t] = 0;
    for (int j = 0; j < HD; j++)
      dots[t] += (double)q2[j] * k2[j];
  }
  if (fabs(dots[0] - dots[1]) > 1e-5) {
    printf("FAIL: reference rope: q.k at (7, 3) = %g but at (27, 23) = %g\n", dots[0], dots[1]);
    bad++;
  }
  /* attention against brute force: exp without the max shift, then normalize */
  enum { NP = 5 };
  uint16_t kk[NP * 2 * HD], vv[NP * 2 * HD];
  for (int i = 0; i < NP * 2 * HD; i++)
    kk[i] = llama_ref_bf16(lt_uniform(&s)), vv[i] = llama_ref_bf16(lt_uniform(&s));
  float out[HD];
  llama_ref_attend(HD, q, kk + HD, vv + HD, NP, 2 * HD, out); /* the second of 2 heads */
  double w[NP], sum = 0;
  for (int t = 0; t < NP; t++) {
    double d = 0;
    for (int j = 0; j < HD; j++)
      d += q[j] * (double)llama_ref_f32(kk[t * 2 * HD + HD + j]);
    w[t] = exp(d / 4.0); /* 1/sqrt(16) */
    sum += w[t];
  }
  for (int j = 0; j < HD; j++) {
    double o = 0;
    for (int t = 0; t < NP; t++)
      o += w[t] / sum * llama_ref_f32(vv[t * 2 * HD + HD + j]);
    if (fabs(o - out[j]) > 1e-6) {
      printf("FAIL: reference attention [%d] = %g, brute force %g\n", j, out[j], o);
      bad++;
    }
  }
  /* one position: attention returns V[0] exactly */
  llama_ref_attend(HD, q, kk, vv, 1, 2 * HD, out);
  for (int j = 0; j < HD; j++)
    if (out[j] != llama_ref_f32(vv[j])) {
      printf("FAIL: reference attention over one position [%d] = %g, expected %g\n", j, out[j],
             llama_ref_f32(vv[j]));
      bad++;
    }
  /* argmax: the first of equal maxima */
  float xs[5] = {1, 3, -2, 3, 0};
  if (llama_ref_argmax(xs, 5) != 1) {
    printf("FAIL: reference argmax picks %d, expected 1\n", llama_ref_argmax(xs, 5));
    bad++;
  }
  return bad;
}

#ifndef LLAMA_TEST_NO_MAIN
/* The dependency checker: with waits on event 0 dropped (and its producers held back) a decode must
 * fail with "missing dependency". Deterministic, so a seed that catches it does so on every run.
 * Returns 1 on success (the failure was reported). */
static int lt_check_drop_event(const TinyWeights *w, mlk_sim_schedule sched, int threads,
                               uint64_t seed) {
  mlk_sim_options opt = {.threads = threads, .seed = seed, .schedule = sched, .drop_event = 1,
                         .mode = MLK_SIM_DETERMINISTIC};
  const char *sname = sched == MLK_SIM_STATIC ? "static" : sched == MLK_SIM_DYNAMIC ? "dynamic"
                                                                                      : "compiled";
  mlk_backend *be = NULL;
  llama_tiny_model *m = NULL;
  mlk_status st = mlk_backend_create_cpu(&opt, &be);
  if (st == MLK_OK)
    st = lt_create(be, w, 1, &m);
  if (st != MLK_OK) {
    printf("FAIL: drop_event 1 (%s, %d SMs): setup: %s\n", sname, threads, mlk_last_error());
    mlk_backend_free(be);
    return 0;
  }
  int32_t tok = 5, pos = 0;
  llama_tiny_set_tokens(m, &tok);
  llama_tiny_set_pos(m, &pos);
  st = llama_tiny_decode(m);
  const char *msg = mlk_last_error();
  int ok = st != MLK_OK && strstr(msg, "missing dependency") != NULL;
  printf("%s: drop_event 1 (waits on event 0 '%s' skipped), %s, %d SMs, seed %llu: %s%s%s\n",
         ok ? "ok" : "FAIL", llama_tiny_desc.nevents > 0 ? llama_tiny_desc.events[0].name : "?",
         sname, threads, (unsigned long long)seed,
         st == MLK_OK ? "the run succeeded" : mlk_status_name(st), st == MLK_OK ? "" : ": ",
         st == MLK_OK ? "" : msg);
  llama_tiny_free(m);
  mlk_backend_free(be);
  return ok;
}

static const char *lt_sched_name(mlk_sim_schedule s) {
  return s == MLK_SIM_STATIC ? "static" : s == MLK_SIM_DYNAMIC ? "dynamic" : "as compiled";
}

int main(int argc, char **argv) {
  uint64_t base = argc > 1 ? strtoull(argv[1], NULL, 0) : 0;
  if (base == 0) /* none or 0: a fresh one (CTest passes MLK_TEST_SEED) */
    base = (uint64_t)time(NULL);
  int passed = 0, failed = 0;
  printf("llama_tiny on the CPU simulator vs the sequential reference: base seed %llu "
         "(rerun: test_llama_sim %llu), tolerance rel L2 %g per row\n",
         (unsigned long long)base, (unsigned long long)base, LT_TOL);

  int bad = lt_check_reference();
  printf("%s: reference self-checks (bf16 rounding, rope frequencies and rotation, attention vs "
         "brute force, argmax)\n", bad ? "FAIL" : "ok");
  bad ? failed++ : passed++;

  TinyWeights w;
  lt_make_weights(base, &w);

  static const struct {
    mlk_sim_mode mode;
    mlk_sim_schedule sched;
    int threads, delay_us;
  } cfgs[] = {
      {MLK_SIM_DETERMINISTIC, MLK_SIM_STATIC, 1, 0},  {MLK_SIM_THREADED, MLK_SIM_STATIC, 4, 20},
      {MLK_SIM_DETERMINISTIC, MLK_SIM_STATIC, 8, 0},  {MLK_SIM_DETERMINISTIC, MLK_SIM_DYNAMIC, 1, 0},
      {MLK_SIM_THREADED, MLK_SIM_DYNAMIC, 4, 0},      {MLK_SIM_THREADED, MLK_SIM_DYNAMIC, 8, 20},
      {MLK_SIM_THREADED, MLK_SIM_AS_COMPILED, 8, 10}, {MLK_SIM_DETERMINISTIC, MLK_SIM_AS_COMPILED, 4, 0},
  };
  static const int grow[] = {1, 3, 4}, shrink[] = {4, 3, 1};
  for (size_t ci = 0; ci < sizeof cfgs / sizeof cfgs[0]; ci++) {
    uint64_t seed = base + 101 * (ci + 1);
    mlk_sim_options opt = {.threads = cfgs[ci].threads, .seed = seed,
                           .max_delay_us = cfgs[ci].delay_us, .schedule = cfgs[ci].sched,
                           .mode = cfgs[ci].mode};
    char label[160];
    snprintf(label, sizeof label, "%s, %s, %d SMs, seed %llu, delays %d us",
             cfgs[ci].mode == MLK_SIM_THREADED ? "threaded" : "deterministic",
             lt_sched_name(cfgs[ci].sched), cfgs[ci].threads, (unsigned long long)seed,
             cfgs[ci].delay_us);
    mlk_backend *be = NULL;
    llama_tiny_model *m = NULL;
    if (mlk_backend_create_cpu(&opt, &be) != MLK_OK || lt_create(be, &w, 0, &m) != MLK_OK) {
      printf("FAIL: %s: setup: %s\n", label, mlk_last_error());
      failed++;
      mlk_backend_free(be);
      continue;
    }
    /* one model object, batch changed between sequences (growing, or shrinking on odd configs),
     * then a fresh model with its batch set before the weights */
    const int *order = ci % 2 ? shrink : grow;
    for (int k = 0; k < 4; k++) {
      int batch = k < 3 ? order[k] : 3;
      llama_tiny_model *mm = m;
      const char *which = "same model";
      if (k == 3) {
        which = "fresh model";
        if (lt_create(be, &w, batch, &mm) != MLK_OK) {
          printf("FAIL: %s, batch %d (%s): setup: %s\n", label, batch, which, mlk_last_error());
          failed++;
          continue;
        }
      }
      LtResult r;
      const char *name = "sim";
      int ok = lt_run(&mm, &name, 1, batch, &w, seed + k, &r);
      printf("%s: %s, batch %d (%s): %d steps, logits rel L2 max %.3g (tol %g), next: %d wrong, "
             "%d near ties; K/V: %ld roundings within noise followed%s%s\n",
             ok ? "ok" : "FAIL", label, batch, which, r.steps, r.max_rel[0], LT_TOL,
             r.next_self_bad + r.next_ref_bad, r.ties, r.kv_ties[0], r.why[0] ? ": " : "",
             r.why);
      ok ? passed++ : failed++;
      if (k == 3)
        llama_tiny_free(mm);
    }
    llama_tiny_free(m);
    mlk_backend_free(be);
  }

  for (uint64_t s = 1; s <= 4; s++) {
    lt_check_drop_event(&w, MLK_SIM_STATIC, 4, s) ? passed++ : failed++;
    lt_check_drop_event(&w, MLK_SIM_DYNAMIC, 4, s) ? passed++ : failed++;
  }

  lt_free_weights(&w);
  printf("%d passed, %d failed\n", passed, failed);
  return failed != 0;
}
#endif
