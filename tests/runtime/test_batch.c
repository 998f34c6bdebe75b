/* test_batch.c: a tiny Llama decode step, run at several batch sizes from one model, under both
 * schedules, against a double-precision reference; and the batch, cache and position API.
 *
 * The model is rt_llama.h's (every op kind but a plain eltwise function; 2 layers, a paged cache
 * of page 4 with MLK_KV_CONTEXT=16). Batch B in 1..4.
 *
 * Three copies of the model run the same decode steps in lockstep: as compiled static on threads
 * with random delays, as compiled dynamic (deterministic), and static forced to the dynamic
 * schedule on one deterministic SM. The batch
 * changes between phases (3, 1, 4, 2 rows); each row is a sequence that continues where it left
 * off, so positions run through every page of the cache and the caches carry over between runs,
 * epochs and batch sizes. Every step: logits and caches equal bitwise across the three, logits
 * within 1e-5 (relative L2) of the reference, and `next` the first maximum of the logits. The
 * reference checks every appended cache entry (the bf16 of its key or value, within an ulp) and
 * then attends over the stored entries. All of it once with a task per kv head, then with the
 * attention split over the context (3, 5 and 32 chunks; partials and a reduce op), then folded
 * (4, 16 and 8 chunks merged by the attention's own tasks), with short runs taken whole never,
 * sometimes and always (MLK_ATTN_WHOLE_POSITIONS 0, 24, 1000).
 */
#include "rt_llama.h"

enum { STEPS = 4 }; /* decode steps per batch phase */

/* ---- the reference ---- */

static double Kc[L][BMAX][CTX][KVH * HD], Vc[L][BMAX][CTX][KVH * HD];

/* The bf16 entry `got` the simulator stored for the value `want` the reference computed: it must be
 * want rounded to bf16, give or take one ulp (f32 and double results may straddle a rounding
 * boundary; near 0, f32 cancellation adds an absolute 1e-5). The reference then goes on with the
 * stored entry, so that one such flip does not show up as an error in the logits. */
static double stored(uint16_t got, double want, int *bad) {
  double g = dbf(got);
  if (!(fabs(g - want) <= fabs(want) * (1.0 / 128) * 1.01 + 1e-5))
    (*bad)++;
  return g;
}

/* One decode step of `rows` rows: logits[b] for tokens[b] at position pos[b]. `pool` is the
 * simulator's cache pool after the step (identity page table, `pps` pages per sequence). */
static void reference(int64_t rows, const int32_t *tokens, const int32_t *pos, double *logits,
                      const MlkCacheDesc *cd, const uint16_t *pool, int64_t pps) {
  int bad = 0;
  static double x[BMAX * D], q[BMAX * H * HD], k[BMAX * KVH * HD], v[BMAX * KVH * HD];
  static double qr[BMAX * H * HD], kr[BMAX * KVH * HD], att[BMAX * H * HD], x1[BMAX * D];
  static double g[BMAX * F], u[BMAX * F], gu[BMAX * F], xf[BMAX * D];
  dref_gather(x, tokens, P.embed, D, rows);
  for (int l = 0; l < L; l++) {
    const uint16_t *w = P.wqkv + (size_t)l * QKV * D, *n1 = P.ln1 + l * D, *n2 = P.ln2 + l * D;
    dref_matvec(q, x, w, NULL, n1, EPS, H * HD, D, rows, MLK_FN_NONE);
    dref_matvec(k, x, w + H * HD * D, NULL, n1, EPS, KVH * HD, D, rows, MLK_FN_NONE);
    dref_matvec(v, x, w + (H + KVH) * HD * D, NULL, n1, EPS, KVH * HD, D, rows, MLK_FN_NONE);
    dref_rope(qr, q, pos, H * HD, HD, rows, ROPE);
    dref_rope(kr, k, pos, KVH * HD, HD, rows, ROPE);
    for (int64_t b = 0; b < rows; b++) {
      int64_t page = b * pps + pos[b] / PAGE;
      for (int h = 0; h < KVH; h++)
        for (int e = 0; e < HD; e++) {
          int i = h * HD + e;
          int64_t ko = mlk_cache_offset(cd, BMAX * pps, l, page, 0, h, pos[b] % PAGE) + e;
          int64_t vo = mlk_cache_offset(cd, BMAX * pps, l, page, 1, h, pos[b] % PAGE) + e;
          Kc[l][b][pos[b]][i] = stored(pool[ko], kr[b * KVH * HD + i], &bad);
          Vc[l][b][pos[b]][i] = stored(pool[vo], v[b * KVH * HD + i], &bad);
        }
      dref_attention_row(att + b * H * HD, qr + b * H * HD, &Kc[l][b][0][0], &Vc[l][b][0][0], pos[b], H,
                         KVH, HD);
    }
    dref_matvec(x1, att, P.wo + (size_t)l * D * H * HD, x, NULL, 0, D, H * HD, rows, MLK_FN_NONE);
    dref_matvec(g, x1, P.wg + (size_t)l * F * D, NULL, n2, EPS, F, D, rows, MLK_FN_SILU);
    dref_matvec(u, x1, P.wu + (size_t)l * F * D, NULL, n2, EPS, F, D, rows, MLK_FN_NONE);
    dref_eltwise(gu, g, u, rows * F, MLK_FN_MUL);
    dref_matvec(x, gu, P.wd + (size_t)l * D * F, x1, NULL, 0, D, F, rows, MLK_FN_NONE);
  }
  dref_rmsnorm(xf, x, P.lnf, EPS, D, rows);
  dref_matvec(logits, xf, P.embed, NULL, NULL, 0, V, D, rows, MLK_FN_NONE);
  CHECK(bad == 0, "%d appended cache entries are not the reference's keys and values in bf16", bad);
}

/* ---- the decode runs ---- */

enum { NMODELS = 3 };

/* split > 1: the attention split into that many chunks, tasks of kvh kv heads (rt_llama.h), merged
 * by an attn_reduce or, `folded`, by the attention's own last tasks. */
static void decode(mlk_backend *const *be, int64_t split, int64_t kvh, int folded) {
  static Llama s[NMODELS];
  build_attn(&s[0], MLK_SCHED_STATIC, split, kvh, folded);
  build_attn(&s[1], MLK_SCHED_DYNAMIC, split, kvh, folded);
  build_attn(&s[2], MLK_SCHED_STATIC, split, kvh, folded);
  mlk_model *m[NMODELS];
  for (int i = 0; i < NMODELS; i++) {
    CHECK_OK(mlk_model_create(be[i], &s[i].b.desc, &m[i]));
    if (!m[i])
      return;
    set_params(m[i], &s[i]);
  }
  memset(Kc, 0, sizeof Kc);
  memset(Vc, 0, sizeof Vc);
  static const int64_t phases[] = {3, 1, 4, 2};
  int32_t npos[BMAX] = {0}, tokens[BMAX], pos[BMAX], next[NMODELS][BMAX];
  float logits[NMODELS][BMAX * V];
  const MlkCacheDesc *cd = &s[0].b.caches[s[0].kv];
  size_t pool_bytes = mlk_model_tensor_bytes(m[0], cd->tensor);
  uint16_t *pool = malloc(pool_bytes), *pool2 = malloc(pool_bytes);
  double want[BMAX * V], worst = 0;
  for (size_t ph = 0; ph < sizeof phases / sizeof *phases; ph++) {
    int64_t rows = phases[ph];
    for (int i = 0; i < NMODELS; i++) {
      CHECK_OK(mlk_model_set_batch(m[i], rows));
      CHECK(mlk_model_batch(m[i]) == rows, "batch %lld", (long long)mlk_model_batch(m[i]));
      CHECK(mlk_model_tensor_bytes(m[i], s[i].logits) == (size_t)(rows * V * 4), "logits bytes %zu",
            mlk_model_tensor_bytes(m[i], s[i].logits));
    }
    for (int step = 0; step < STEPS; step++) {
      for (int64_t b = 0; b < rows; b++) {
        tokens[b] = (int32_t)(rt_next() % V);
        pos[b] = npos[b]++;
      }
      for (int i = 0; i < NMODELS; i++) {
        CHECK_OK(mlk_model_set_tensor(m[i], s[i].tokens, tokens, (size_t)rows * 4));
        CHECK_OK(mlk_model_set_tensor(m[i], s[i].pos, pos, (size_t)rows * 4));
        CHECK_OK(mlk_model_fill_tensor(m[i], s[i].logits, 0xff));
        CHECK_OK(mlk_model_fill_tensor(m[i], s[i].next, 0xff));
        CHECK_OK(mlk_model_run(m[i], 0));
        CHECK_OK(mlk_model_get_tensor(m[i], s[i].logits, logits[i], (size_t)rows * V * 4));
        CHECK_OK(mlk_model_get_tensor(m[i], s[i].next, next[i], (size_t)rows * 4));
        CHECK_OK(mlk_model_get_tensor(m[i], cd->tensor, i ? pool2 : pool, pool_bytes));
        CHECK(i == 0 || !memcmp(pool, pool2, pool_bytes), "%s: the cache differs from the static "
              "schedule's", mlk_backend_name(be[i]));
        if (i == 0)
          reference(rows, tokens, pos, want, cd, pool, CTX / PAGE);
        double err = rel_err(logits[i], want, (size_t)(rows * V));
        worst = err > worst ? err : worst;
        CHECK(err < 1e-5, "%s, batch %lld, step %d: logits relative L2 error %g",
              mlk_backend_name(be[i]), (long long)rows, step, err);
        CHECK(!memcmp(logits[i], logits[0], (size_t)rows * V * 4),
              "%s, batch %lld, step %d: logits differ from the static schedule's", mlk_backend_name(be[i]),
              (long long)rows, step);
        for (int64_t b = 0; b < rows; b++) {
          int32_t best = 0;
          for (int j = 1; j < V; j++)
            if (logits[i][b * V + j] > logits[i][b * V + best])
              best = j;
          CHECK(next[i][b] == best, "%s, batch %lld, step %d, row %lld: next %d, the logits say %d",
                mlk_backend_name(be[i]), (long long)rows, step, (long long)b, next[i][b], best);
        }
      }
    }
  }
  printf("  decode (split %lld, %lld kv heads a task): worst logits error %.2g; positions reached "
         "%d %d %d %d\n", (long long)split, (long long)kvh, worst, npos[0] - 1, npos[1] - 1,
         npos[2] - 1, npos[3] - 1);
  free(pool);
  free(pool2);
  for (int i = 0; i < NMODELS; i++)
    mlk_model_free(m[i]);
}

/* ---- the API around batches, caches and positions ---- */

static void expect_error(mlk_status got, const char *needle) {
  CHECK(got == MLK_ERR_INVALID, "got %s, expected MLK_ERR_INVALID: %s", mlk_status_name(got),
        mlk_last_error());
  CHECK_CONTAINS(mlk_last_error(), needle);
}

static void api(mlk_backend *be) {
  static Llama s;
  build(&s, MLK_SCHED_STATIC);
  mlk_model *m;
  CHECK_OK(mlk_model_create(be, &s.b.desc, &m));
  if (!m)
    return;
  set_params(m, &s);
  const MlkCacheDesc *c = &s.b.caches[s.kv];
  CHECK(mlk_model_batch(m) == 1, "default batch %lld", (long long)mlk_model_batch(m));
  CHECK(mlk_model_kv_context(m) == CTX, "context %lld", (long long)mlk_model_kv_context(m));
  expect_error(mlk_model_set_batch(m, 0), "batch 0 is outside B in 1..4 of model 'llama_tiny'");
  expect_error(mlk_model_set_batch(m, 5), "batch 5 is outside B in 1..4 of model 'llama_tiny'");
  CHECK(mlk_model_batch(m) == 1, "a failed set_batch changed the batch");
  expect_error(mlk_model_set_batch(NULL, 1), "model is NULL");
  CHECK(mlk_model_batch(NULL) == 0 && mlk_model_tensor_bytes(NULL, 0) == 0, "NULL model");
  CHECK(mlk_model_tensor_bytes(m, -1) == 0 && mlk_model_tensor_bytes(m, 1000) == 0, "bad index");
  CHECK_OK(mlk_model_set_batch(m, 3));
  CHECK(mlk_model_tensor_bytes(m, s.tokens) == 12 && mlk_model_tensor_bytes(m, s.embed) == V * D * 2,
        "bytes at batch 3: %zu, %zu", mlk_model_tensor_bytes(m, s.tokens),
        mlk_model_tensor_bytes(m, s.embed));
  /* The pool: layers x (4 rows x 4 pages) x 2 x kv heads x page x head_dim bf16; the table i32. */
  CHECK(mlk_model_tensor_bytes(m, c->tensor) == (size_t)L * 16 * 2 * KVH * PAGE * HD * 2, "pool bytes %zu",
        mlk_model_tensor_bytes(m, c->tensor));
  CHECK(mlk_model_tensor_bytes(m, c->pages_tensor) == 16 * 4, "page table bytes %zu",
        mlk_model_tensor_bytes(m, c->pages_tensor));

  int32_t ids[BMAX] = {1, 2, 3, 4}, pos[BMAX] = {0, 5, 15, 2};
  expect_error(mlk_model_set_tensor(m, s.tokens, ids, 16),
               "tensor 'tokens' is i32[B = 3 of 1..4, 1] (12 bytes at batch 3), got 16 bytes");
  float lg[BMAX * V];
  expect_error(mlk_model_get_tensor(m, s.logits, lg, sizeof lg),
               "tensor 'logits' is f32[B = 3 of 1..4, 40] (480 bytes at batch 3), got 640 bytes");
  expect_error(mlk_model_set_tensor(m, c->tensor, lg, 4), "tensor 'kv' is a KV cache pool, owned by the "
               "runtime: it cannot be set");
  expect_error(mlk_model_set_tensor(m, c->pages_tensor, ids, 16), "tensor 'kv.pages' is a KV cache page "
               "table, owned by the runtime: it cannot be set");
  expect_error(mlk_model_fill_tensor(m, c->pages_tensor, 0), "tensor 'kv.pages' is a KV cache page table, "
               "owned by the runtime: it cannot be filled");
  expect_error(mlk_model_get_tensor(m, c->tensor, lg, 4), "tensor 'kv' is a KV cache pool of 8192 bytes "
               "(MLK_KV_CONTEXT=16), got 4 bytes");

  expect_error(mlk_model_run(m, 0), "input 'tokens' was never set");
  CHECK_OK(mlk_model_set_tensor(m, s.tokens, ids, 12));
  CHECK_OK(mlk_model_set_tensor(m, s.pos, pos, 12));
  CHECK_OK(mlk_model_run(m, 0));
  /* Growing the batch leaves the new rows of the inputs undefined. */
  CHECK_OK(mlk_model_set_batch(m, 4));
  expect_error(mlk_model_run(m, 0), "input 'tokens' was set for 3 rows, the batch is now 4: set it again");
  CHECK_OK(mlk_model_set_batch(m, 2)); /* shrinking keeps them */
  CHECK_OK(mlk_model_run(m, 0));
  CHECK_OK(mlk_model_set_batch(m, 3));
  CHECK_OK(mlk_model_run(m, 0));

  /* Positions outside the context and token ids outside the table, row by row. */
  pos[1] = CTX;
  CHECK_OK(mlk_model_set_tensor(m, s.pos, pos, 12));
  expect_error(mlk_model_run(m, 0), "input 'pos' row 1 is 16: op 'kv_append@llama:10[l=0]' writes KV cache "
               "'kv' at positions 0..15 (MLK_KV_CONTEXT=16)");
  pos[1] = 3;
  pos[2] = -1;
  CHECK_OK(mlk_model_set_tensor(m, s.pos, pos, 12));
  expect_error(mlk_model_run(m, 0), "input 'pos' row 2 is -1: op 'kv_append@llama:10[l=0]'");
  pos[2] = 7;
  CHECK_OK(mlk_model_set_tensor(m, s.pos, pos, 12));
  ids[0] = V;
  CHECK_OK(mlk_model_set_tensor(m, s.tokens, ids, 12));
  expect_error(mlk_model_run(m, 0), "input 'tokens' row 0 is 40: op 'gather@llama:3' looks up rows 0..39 of "
               "table 'embed'");
  /* Rows past the batch are not looked at; a fill counts (0xff...: -1 is out of range). */
  ids[0] = 1;
  CHECK_OK(mlk_model_set_tensor(m, s.tokens, ids, 12));
  CHECK_OK(mlk_model_set_batch(m, 4));
  CHECK_OK(mlk_model_fill_tensor(m, s.tokens, 0));
  CHECK_OK(mlk_model_fill_tensor(m, s.pos, 0xff));
  expect_error(mlk_model_run(m, 0), "input 'pos' row 0 is -1");
  CHECK_OK(mlk_model_fill_tensor(m, s.pos, 0));
  CHECK_OK(mlk_model_run(m, 0));
  /* The cache can be poisoned (and read) for debugging; the model stays usable. */
  CHECK_OK(mlk_model_fill_tensor(m, c->tensor, 0));
  CHECK_OK(mlk_model_run(m, 0));
  mlk_model_free(m);

  /* A batch dim starting above 1: that is the default batch. */
  static Llama s2;
  build(&s2, MLK_SCHED_STATIC);
  s2.b.desc.batch_min = 2;
  CHECK_OK(mlk_model_create(be, &s2.b.desc, &m));
  if (m) {
    CHECK(mlk_model_batch(m) == 2 && mlk_model_tensor_bytes(m, s2.tokens) == 8, "batch_min 2: batch %lld",
          (long long)mlk_model_batch(m));
    expect_error(mlk_model_set_batch(m, 1), "batch 1 is outside B in 2..4");
    mlk_model_free(m);
  }

  /* MLK_KV_CONTEXT is read at create. */
  static const char *const bad_ctx[] = {"0", "abc", "16777217", "-3"};
  for (size_t i = 0; i < sizeof bad_ctx / sizeof *bad_ctx; i++) {
    setenv("MLK_KV_CONTEXT", bad_ctx[i], 1);
    char needle[96];
    snprintf(needle, sizeof needle, "MLK_KV_CONTEXT='%s' is not an integer in [1, 16777216]", bad_ctx[i]);
    m = (mlk_model *)&m;
    expect_error(mlk_model_create(be, &s.b.desc, &m), needle);
    CHECK(m == NULL, "failed create set *out");
  }
  setenv("MLK_KV_CONTEXT", "16", 1);
  /* MLK_ATTN_WHOLE_POSITIONS too. */
  static const char *const bad_whole[] = {"abc", "-1", "2147483648"};
  for (size_t i = 0; i < sizeof bad_whole / sizeof *bad_whole; i++) {
    setenv("MLK_ATTN_WHOLE_POSITIONS", bad_whole[i], 1);
    char needle[112];
    snprintf(needle, sizeof needle, "MLK_ATTN_WHOLE_POSITIONS='%s' is not an integer in [0, 2147483647]",
             bad_whole[i]);
    m = (mlk_model *)&m;
    expect_error(mlk_model_create(be, &s.b.desc, &m), needle);
    CHECK(m == NULL, "failed create set *out");
  }
  unsetenv("MLK_ATTN_WHOLE_POSITIONS");
  setenv("MLK_KV_CONTEXT", "13", 1); /* ceil(13 / 4) = 4 pages per sequence */
  CHECK_OK(mlk_model_create(be, &s.b.desc, &m));
  if (m) {
    CHECK(mlk_model_kv_context(m) == 13 && mlk_model_tensor_bytes(m, c->pages_tensor) == 16 * 4,
          "context 13: %lld, table %zu bytes", (long long)mlk_model_kv_context(m),
          mlk_model_tensor_bytes(m, c->pages_tensor));
    mlk_model_free(m);
  }
  /* A cache too large to address. */
  s.b.caches[s.kv].layers = s.b.caches[s.kv].kv_heads = 65536;
  s.b.caches[s.kv].head_dim = 65536;
  for (int o = 0; o < s.b.desc.nops; o++)
    if (s.b.ops[o].cache == s.kv)
      s.b.desc.nops = o; /* only the ops before the first cache op: the geometry no longer fits them */
  for (int k = 0; k < s.b.desc.nkernels; k++)
    s.b.kernels[k].nops = s.b.desc.nops - s.b.kernels[k].first_op;
  s.b.desc.nevents = 0;
  rtb_done(&s.b);
  expect_error(mlk_model_create(be, &s.b.desc, &m), "KV cache 'kv' of model 'llama_tiny' is too large");
  setenv("MLK_KV_CONTEXT", "16", 1);

  /* No batch dim: every run is one row. */
  RtModel rm;
  rt_mlp_init(&rm);
  CHECK_OK(mlk_model_create(be, &rm.desc, &m));
  if (m) {
    CHECK(mlk_model_batch(m) == 1 && mlk_model_kv_context(m) == 0, "no batch dim");
    CHECK_OK(mlk_model_set_batch(m, 1));
    expect_error(mlk_model_set_batch(m, 2), "model 'mlp' has no batch dim: every run has 1 row, got batch 2");
    mlk_model_free(m);
  }
}

int main(void) {
  rt_watchdog(120);
  rt_seed();
  unsetenv("MLK_WAIT_TIMEOUT_MS");
  setenv("MLK_KV_CONTEXT", "16", 1);
  new_params();
  mlk_sim_options opts[NMODELS] = {
      {.threads = 4, .seed = 3, .max_delay_us = 10, .mode = MLK_SIM_THREADED},
      {.threads = 3, .seed = 11, .mode = MLK_SIM_DETERMINISTIC},
      {.threads = 1, .seed = 5, .schedule = MLK_SIM_DYNAMIC, .mode = MLK_SIM_DETERMINISTIC},
  };
  mlk_backend *be[NMODELS] = {NULL};
  for (int i = 0; i < NMODELS; i++) {
    CHECK_OK(mlk_backend_create_cpu(&opts[i], &be[i]));
    if (be[i])
      printf("  %s\n", mlk_backend_name(be[i]));
  }
  if (be[0] && be[1] && be[2]) {
    decode(be, 1, 1, 0);
    decode(be, 3, 1, 0);  /* chunks of up to 6 positions: empty ones early, crossing pages later */
    decode(be, 5, 2, 0);  /* one task for both kv heads */
    decode(be, 32, 1, 0); /* most chunks empty or of one position */
    /* the merge in the attention's own tasks: 2 x 8 columns a kv head over 4 and 16 chunks,
     * both kv heads' 32 over 8; split in every run, then whole rows (mlk_attn_whole) in the runs
     * of at most 24 row positions (batch 1 throughout, the others early: the two forms alternate
     * from run to run over the same caches and arrival counters), then in every run */
    setenv("MLK_ATTN_WHOLE_POSITIONS", "0", 1);
    decode(be, 4, 1, 1);
    setenv("MLK_ATTN_WHOLE_POSITIONS", "24", 1);
    decode(be, 16, 1, 1);
    setenv("MLK_ATTN_WHOLE_POSITIONS", "1000", 1);
    decode(be, 8, 2, 1);
    unsetenv("MLK_ATTN_WHOLE_POSITIONS");
    api(be[1]);
  }
  for (int i = 0; i < NMODELS; i++)
    mlk_backend_free(be[i]);
  return rt_finish("runtime_batch");
}
