/* test_ops.c: every op kind, in the simulator and by direct calls of the references, against a
 * straightforward double-precision reference written here.
 *
 * One model holds a kernel per op kind (built with rt_build.h), built twice: with a batch dim
 * B in 1..4 (every kernel run at batch 1, 2, 3 and 4 from the same model, output rows past the
 * batch checked untouched) and without one. Awkward sizes and tiles throughout (partial last
 * tiles, operands at offsets into larger params). Outputs are poisoned (NaN) before every run.
 *   matvec:   silu(W[1] rmsnorm(x) * nw[1]) + res, relu(W[2] x) (weight and norm slices), and
 *             the gated product (W[0] x) * res; with a bias (a slice of a bf16 param):
 *             silu(W[1] rmsnorm(x) * nw[1] + bias) + res and (W[0] x + bias) * res
 *   eltwise:  copy, relu, silu, add, mul, and add(relu, mul) chained through TILE events; with a
 *             bias: a + bias (a broadcast add) and (a + bias) * c
 *   gather:   rows of a table slice by token id
 *   rmsnorm, argmax (ties: the first maximum), unsplit and split over the row (3 chunks; 12, the
 *             last two empty) with its reduce
 *   sample:   top_k 1, 7 with top_p 0.8, top_k above the vocabulary, a tiny top_p, at several
 *             temperatures, against a double-precision sort-everything reference
 *   rope:     plain, and with Llama 3 scaling (all three frequency regimes) vs the closed form
 *   kv:       kv_append into layer 1 of a paged cache, then attention over it, run after run
 *             (epochs), positions spanning several pages, batch changed half-way; the pool is
 *             checked element by element (layer 0 untouched); the same attention split over the
 *             context (3, 7 and 32 chunks, tasks of 1 or 2 kv heads: partials and a reduce op)
 * Direct calls: the inverse frequencies of Llama 3.1 scaling, kv_append and attention through a
 * permuted page table, unsplit and split (1 to 32 chunks, a row at pos -1: zeros), argmax ties
 * and NaNs, the split argmax against the unsplit one (2 to 16 chunks of 11 columns); sample: ties, NaN, infinities, -0, a hand-computed top-p cut, and the token
 * frequencies over a grid of u against the renormalized probabilities.
 */
#include "mlk_ref.h"
#include "rt_build.h"

#define TOL 1e-5

enum { K = 45, N = 40, E = 50, V = 30, G = 36, R = 33, H = 3, HD = 8, AK = 37 };
enum { KVH = 2, QH = 4, PAGE = 4, CTX = 24, STEPS = 9 };
enum { SV = 301, NSAMPLE = 4 }; /* sample: vocabulary (odd, > 256), sample ops */

typedef struct Ops {
  RtB b;
  int x, res, W, nw, mv1, mv2, mv3, bias, mvb[2];
  int ea, ec, e[5], echain, ebias, eb[2];
  int ids, table, gout;
  int rx, rw, rout;
  int qx, pos, rp, rs;
  int ax, am, ams[2];
  int sx, sp, so[NSAMPLE];
  int cache, kk, vv, qq, kpos, att, att_split[3];
} Ops;

enum { KM, KE, KG, KR, KRO, KA, KKV, KS };

/* The sample ops of kernel "sample": temperature, top_k, top_p. */
static const struct { float t; int64_t top_k; float top_p; } sample_cfg[NSAMPLE] = {
    {1.0f, 1, 1.0f}, {0.7f, 7, 0.8f}, {1.3f, 1024, 1.0f}, {2.0f, 50, 1e-6f}};

/* The split attentions of the kv kernel: chunks and kv heads per task. */
static const int64_t splits[3][2] = {{3, 1}, {7, 2}, {32, 1}};

static const MlkFn efns[5] = {MLK_FN_NONE, MLK_FN_RELU, MLK_FN_SILU, MLK_FN_ADD, MLK_FN_MUL};

static void build(Ops *s, int64_t bmax) {
  RtB *b = &s->b;
  rtb_init(b, bmax ? "ops_batched" : "ops", bmax);
  rtb_kernel(b, "matvec", MLK_SCHED_STATIC);
  s->x = rtb_act(b, "x", MLK_F32, MLK_TENSOR_INPUT, K);
  s->res = rtb_act(b, "res", MLK_F32, MLK_TENSOR_INPUT, N);
  s->W = rtb_param(b, "W", 3, N, K);
  s->nw = rtb_param(b, "nw", 2, K, 0);
  s->mv1 = rtb_act(b, "mv1", MLK_F32, MLK_TENSOR_OUTPUT, N);
  s->mv2 = rtb_act(b, "mv2", MLK_F32, MLK_TENSOR_OUTPUT, N);
  rtb_matvec(b, "matvec@ops:1", s->mv1, s->x, AO(s->W, N * K), s->res, AO(s->nw, K), N, K, 7,
             MLK_FN_SILU, 1e-5f);
  rtb_matvec(b, "matvec@ops:2", s->mv2, s->x, AO(s->W, 2 * N * K), -1, NOARG, N, K, 16, MLK_FN_RELU, 0);
  /* the gated product (SwiGLU's up projection): (W[0] x) * res */
  s->mv3 = rtb_act(b, "mv3", MLK_F32, MLK_TENSOR_OUTPUT, N);
  rtb_matvec(b, "matvec_mul@ops:3", s->mv3, s->x, AO(s->W, 0), s->res, NOARG, N, K, 9, MLK_FN_MUL, 0);
  /* the same first and third with a bias: elements [N + 3, 2N + 3) and [3, N + 3) of a param */
  s->bias = rtb_param(b, "bias", 2 * N + 5, 0, 0);
  s->mvb[0] = rtb_act(b, "mvb0", MLK_F32, MLK_TENSOR_OUTPUT, N);
  s->mvb[1] = rtb_act(b, "mvb1", MLK_F32, MLK_TENSOR_OUTPUT, N);
  rtb_bias(b, rtb_matvec(b, "matvec@ops:4", s->mvb[0], s->x, AO(s->W, N * K), s->res, AO(s->nw, K),
                         N, K, 11, MLK_FN_SILU, 1e-5f), AO(s->bias, N + 3));
  rtb_bias(b, rtb_matvec(b, "matvec_mul@ops:5", s->mvb[1], s->x, AO(s->W, 0), s->res, NOARG, N, K,
                         8, MLK_FN_MUL, 0), AO(s->bias, 3));

  rtb_kernel(b, "eltwise", MLK_SCHED_DYNAMIC);
  s->ea = rtb_act(b, "ea", MLK_F32, MLK_TENSOR_INPUT, E);
  s->ec = rtb_act(b, "ec", MLK_F32, MLK_TENSOR_INPUT, E);
  static const char *names[5] = {"e_copy", "e_relu", "e_silu", "e_add", "e_mul"};
  for (int i = 0; i < 5; i++) {
    s->e[i] = rtb_act(b, names[i], MLK_F32, MLK_TENSOR_OUTPUT, E);
    int binary = efns[i] == MLK_FN_ADD || efns[i] == MLK_FN_MUL;
    rtb_eltwise(b, rtb_str(b, "%s@ops:%d", names[i], 10 + i), s->e[i], s->ea, binary ? s->ec : -1, E,
                7 + 2 * i, efns[i]);
  }
  s->echain = rtb_act(b, "e_chain", MLK_F32, MLK_TENSOR_OUTPUT, E);
  rtb_eltwise(b, "add@ops:16", s->echain, s->e[1], s->e[4], E, 6, MLK_FN_ADD);
  /* a + bias (x + b of a bias), and (a + bias) * c, the bias at an offset into a param */
  s->ebias = rtb_param(b, "ebias", E + 7, 0, 0);
  s->eb[0] = rtb_act(b, "e_bias", MLK_F32, MLK_TENSOR_OUTPUT, E);
  s->eb[1] = rtb_act(b, "e_bias_mul", MLK_F32, MLK_TENSOR_OUTPUT, E);
  rtb_bias(b, rtb_eltwise(b, "add@ops:17", s->eb[0], s->ea, -1, E, 9, MLK_FN_NONE), AO(s->ebias, 7));
  rtb_bias(b, rtb_eltwise(b, "mul@ops:18", s->eb[1], s->ea, s->ec, E, 13, MLK_FN_MUL),
           AO(s->ebias, 7));

  rtb_kernel(b, "gather", MLK_SCHED_STATIC);
  s->ids = rtb_act(b, "ids", MLK_I32, MLK_TENSOR_INPUT, 1);
  s->table = rtb_param(b, "table", V + 5, G, 0);
  s->gout = rtb_act(b, "gout", MLK_F32, MLK_TENSOR_OUTPUT, G);
  rtb_gather(b, "gather@ops:20", s->gout, s->ids, AO(s->table, 5 * G), G, 10);

  rtb_kernel(b, "rmsnorm", MLK_SCHED_STATIC);
  s->rx = rtb_act(b, "rx", MLK_F32, MLK_TENSOR_INPUT, R);
  s->rw = rtb_param(b, "rw", R, 0, 0);
  s->rout = rtb_act(b, "rout", MLK_F32, MLK_TENSOR_OUTPUT, R);
  rtb_rmsnorm(b, "rmsnorm@ops:30", s->rout, s->rx, A(s->rw), R, 1e-6f);

  rtb_kernel(b, "rope", MLK_SCHED_STATIC);
  s->qx = rtb_act(b, "qx", MLK_F32, MLK_TENSOR_INPUT, H * HD);
  s->pos = rtb_act(b, "pos", MLK_I32, MLK_TENSOR_INPUT, 1);
  s->rp = rtb_act(b, "rope_plain", MLK_F32, MLK_TENSOR_OUTPUT, H * HD);
  s->rs = rtb_act(b, "rope_scaled", MLK_F32, MLK_TENSOR_OUTPUT, H * HD);
  rtb_rope(b, "rope@ops:40", s->rp, s->qx, s->pos, H * HD, HD, HD, 10000.0f, 1.0f, 1.0f, 4.0f, 8192);
  rtb_rope(b, "rope@ops:41", s->rs, s->qx, s->pos, H * HD, HD, 2 * HD, 10000.0f, 8.0f, 1.0f, 4.0f, 16);

  rtb_kernel(b, "argmax", MLK_SCHED_STATIC);
  s->ax = rtb_act(b, "ax", MLK_F32, MLK_TENSOR_INPUT, AK);
  s->am = rtb_act(b, "am", MLK_I32, MLK_TENSOR_OUTPUT, 1);
  rtb_argmax(b, "argmax@ops:50", s->am, s->ax, AK);
  for (int i = 0; i < 2; i++) { /* split in 3 chunks, and in 12 (of 4 columns: the last two empty) */
    int64_t S = i ? 12 : 3;
    s->ams[i] = rtb_act(b, rtb_str(b, "am%lld", (long long)S), MLK_I32, MLK_TENSOR_OUTPUT, 1);
    int part = rtb_act(b, rtb_str(b, "am_part%lld", (long long)S), MLK_F32, MLK_TENSOR_TEMP, 2 * S);
    rtb_argmax_split(b, rtb_str(b, "argmax@ops:%d", 51 + i), rtb_str(b, "argmax_reduce@ops:%d", 51 + i),
                     s->ams[i], part, s->ax, AK, S);
  }

  rtb_kernel(b, "kv", MLK_SCHED_STATIC);
  s->cache = rtb_cache(b, "kv", 2, KVH, HD, PAGE);
  s->kk = rtb_act(b, "kk", MLK_F32, MLK_TENSOR_INPUT, KVH * HD);
  s->vv = rtb_act(b, "vv", MLK_F32, MLK_TENSOR_INPUT, KVH * HD);
  s->qq = rtb_act(b, "qq", MLK_F32, MLK_TENSOR_INPUT, QH * HD);
  s->kpos = rtb_act(b, "kpos", MLK_I32, MLK_TENSOR_INPUT, 1);
  s->att = rtb_act(b, "att", MLK_F32, MLK_TENSOR_OUTPUT, QH * HD);
  rtb_kv_append(b, "kv_append@ops:60", s->cache, 1, s->kk, s->vv, s->kpos, HD);
  rtb_attention(b, "attention@ops:61", s->att, s->qq, s->cache, 1, s->kpos, QH, QH / KVH * HD);
  for (int i = 0; i < 3; i++) {
    int64_t S = splits[i][0], kvh = splits[i][1];
    s->att_split[i] = rtb_act(b, rtb_str(b, "att_split%lld", (long long)S), MLK_F32,
                              MLK_TENSOR_OUTPUT, QH * HD);
    int part = rtb_act(b, rtb_str(b, "part%lld", (long long)S), MLK_F32, MLK_TENSOR_TEMP,
                       mlk_attn_part_cols(KVH, QH, HD, S, kvh));
    rtb_attention_split(b, rtb_str(b, "attention@ops:%d", 62 + i),
                        rtb_str(b, "attn_reduce@ops:%d", 62 + i), s->att_split[i], part, s->qq,
                        s->cache, 1, s->kpos, QH, kvh, S);
  }

  rtb_kernel(b, "sample", MLK_SCHED_STATIC);
  s->sx = rtb_act(b, "sx", MLK_F32, MLK_TENSOR_INPUT, SV);
  for (int i = 0; i < NSAMPLE; i++) {
    s->so[i] = rtb_act(b, rtb_str(b, "tok%d", i), MLK_I32, MLK_TENSOR_OUTPUT, 1);
    rtb_sample(b, rtb_str(b, "sample@ops:%d", 70 + i), s->so[i], s->sx, SV, sample_cfg[i].t,
               sample_cfg[i].top_k, sample_cfg[i].top_p);
  }
  s->sp = rtb_sampling(b);
  rtb_done(b);
}

enum { BMAX = 4 };

static void set_f(mlk_model *m, int t, float *v, size_t n, float scale) {
  rt_fill(v, n, scale);
  CHECK_OK(mlk_model_set_tensor(m, t, v, n * sizeof *v));
}

static void set_bf(mlk_model *m, int t, uint16_t *v, size_t n, float scale) {
  rt_fill_bf16(v, n, scale);
  CHECK_OK(mlk_model_set_tensor(m, t, v, n * sizeof *v));
}

/* Poisons `outs` at every row (batch_max), then sets the batch to `rows`. */
static void run_poisoned(mlk_model *m, const int *outs, int nouts, int64_t rows) {
  int64_t bmax = mlk_model_desc(m)->batch_name ? mlk_model_desc(m)->batch_max : 1;
  CHECK_OK(mlk_model_set_batch(m, bmax));
  for (int i = 0; i < nouts; i++)
    CHECK_OK(mlk_model_fill_tensor(m, outs[i], 0xff));
  CHECK_OK(mlk_model_set_batch(m, rows));
}

/* The rows past `rows` of `outs` are still poison after a run at batch `rows`. */
static void check_untouched(mlk_model *m, const int *outs, int nouts, int64_t rows) {
  const MlkModelDesc *d = mlk_model_desc(m);
  int64_t bmax = d->batch_name ? d->batch_max : 1;
  if (rows == bmax)
    return;
  CHECK_OK(mlk_model_set_batch(m, bmax));
  for (int i = 0; i < nouts; i++) {
    size_t bytes = mlk_model_tensor_bytes(m, outs[i]), row = bytes / (size_t)bmax;
    unsigned char *buf = malloc(bytes);
    CHECK_OK(mlk_model_get_tensor(m, outs[i], buf, bytes));
    size_t bad = 0;
    for (size_t j = row * (size_t)rows; j < bytes; j++)
      bad += buf[j] != 0xff;
    CHECK(bad == 0, "'%s': %zu bytes past the %lld rows of the run were written", d->tensors[outs[i]].name,
          bad, (long long)rows);
    free(buf);
  }
  CHECK_OK(mlk_model_set_batch(m, rows));
}

static void check_out(mlk_model *m, int t, const double *want, size_t n, double tol, const char *what,
                      int64_t rows) {
  float *got = malloc(n * sizeof *got);
  CHECK(mlk_model_tensor_bytes(m, t) == n * sizeof *got, "%s: %zu bytes at batch %lld", what,
        mlk_model_tensor_bytes(m, t), (long long)rows);
  CHECK_OK(mlk_model_get_tensor(m, t, got, n * sizeof *got));
  double err = rel_err(got, want, n);
  CHECK(err < tol, "%s at batch %lld: relative L2 error %g >= %g", what, (long long)rows, err, tol);
  free(got);
}

static void test_matvec(mlk_model *m, const Ops *s, int64_t rows) {
  static float x[BMAX * K], res[BMAX * N];
  static uint16_t W[3 * N * K], nw[2 * K], bias[2 * N + 5];
  static double dx[BMAX * K], dres[BMAX * N], want[BMAX * N];
  int outs[] = {s->mv1, s->mv2, s->mv3, s->mvb[0], s->mvb[1]};
  run_poisoned(m, outs, 5, rows);
  set_bf(m, s->W, W, 3 * N * K, 0.3f);
  set_bf(m, s->nw, nw, 2 * K, 1.5f);
  set_bf(m, s->bias, bias, 2 * N + 5, 2.0f);
  set_f(m, s->x, x, (size_t)rows * K, 2.0f);
  set_f(m, s->res, res, (size_t)rows * N, 1.0f);
  CHECK_OK(mlk_model_run(m, KM));
  d_from_f(dx, x, (size_t)rows * K);
  d_from_f(dres, res, (size_t)rows * N);
  dref_matvec(want, dx, W + N * K, dres, nw + K, 1e-5, N, K, rows, MLK_FN_SILU);
  check_out(m, s->mv1, want, (size_t)rows * N, TOL, "matvec (fused norm, silu, residual)", rows);
  dref_matvec(want, dx, W + 2 * N * K, NULL, NULL, 0, N, K, rows, MLK_FN_RELU);
  check_out(m, s->mv2, want, (size_t)rows * N, TOL, "matvec (relu)", rows);
  dref_matvec(want, dx, W, dres, NULL, 0, N, K, rows, MLK_FN_MUL);
  check_out(m, s->mv3, want, (size_t)rows * N, TOL, "matvec (gated product)", rows);
  dref_matvec_bias(want, dx, W + N * K, dres, nw + K, bias + N + 3, 1e-5, N, K, rows, MLK_FN_SILU);
  check_out(m, s->mvb[0], want, (size_t)rows * N, TOL, "matvec (fused norm, bias, silu, residual)",
            rows);
  dref_matvec_bias(want, dx, W, dres, NULL, bias + 3, 0, N, K, rows, MLK_FN_MUL);
  check_out(m, s->mvb[1], want, (size_t)rows * N, TOL, "matvec (bias, gated product)", rows);
  check_untouched(m, outs, 5, rows);
}

static void test_eltwise(mlk_model *m, const Ops *s, int64_t rows) {
  static float a[BMAX * E], c[BMAX * E];
  static uint16_t bias[E + 7];
  static double da[BMAX * E], dc[BMAX * E], want[5][BMAX * E], chain[BMAX * E];
  int outs[] = {s->e[0], s->e[1], s->e[2], s->e[3], s->e[4], s->echain, s->eb[0], s->eb[1]};
  run_poisoned(m, outs, 8, rows);
  size_t n = (size_t)rows * E;
  set_f(m, s->ea, a, n, 3.0f);
  set_f(m, s->ec, c, n, 2.0f);
  set_bf(m, s->ebias, bias, E + 7, 2.0f);
  CHECK_OK(mlk_model_run(m, KE));
  d_from_f(da, a, n);
  d_from_f(dc, c, n);
  static const char *what[5] = {"eltwise copy", "eltwise relu", "eltwise silu", "eltwise add", "eltwise mul"};
  for (int i = 0; i < 5; i++) {
    dref_eltwise(want[i], da, dc, (int64_t)n, efns[i]);
    check_out(m, s->e[i], want[i], n, TOL, what[i], rows);
  }
  dref_eltwise(chain, want[1], want[4], (int64_t)n, MLK_FN_ADD);
  check_out(m, s->echain, chain, n, TOL, "eltwise add(relu, mul)", rows);
  dref_eltwise_bias(chain, da, NULL, bias + 7, E, (int64_t)n, MLK_FN_NONE);
  check_out(m, s->eb[0], chain, n, TOL, "eltwise a + bias", rows);
  dref_eltwise_bias(chain, da, dc, bias + 7, E, (int64_t)n, MLK_FN_MUL);
  check_out(m, s->eb[1], chain, n, TOL, "eltwise (a + bias) * c", rows);
  check_untouched(m, outs, 8, rows);
}

static void test_gather(mlk_model *m, const Ops *s, int64_t rows) {
  static uint16_t table[(V + 5) * G];
  static int32_t ids[BMAX];
  static double want[BMAX * G];
  int outs[] = {s->gout};
  run_poisoned(m, outs, 1, rows);
  set_bf(m, s->table, table, (V + 5) * G, 1.0f);
  for (int64_t b = 0; b < rows; b++)
    ids[b] = b == 0 ? V - 1 : (int32_t)(rt_next() % V); /* the last row of the slice, and any */
  CHECK_OK(mlk_model_set_tensor(m, s->ids, ids, (size_t)rows * sizeof *ids));
  CHECK_OK(mlk_model_run(m, KG));
  dref_gather(want, ids, table + 5 * G, G, rows);
  check_out(m, s->gout, want, (size_t)rows * G, 1e-12, "gather", rows);
  check_untouched(m, outs, 1, rows);
}

static void test_rmsnorm(mlk_model *m, const Ops *s, int64_t rows) {
  static float x[BMAX * R];
  static uint16_t w[R];
  static double dx[BMAX * R], want[BMAX * R];
  int outs[] = {s->rout};
  run_poisoned(m, outs, 1, rows);
  set_bf(m, s->rw, w, R, 2.0f);
  set_f(m, s->rx, x, (size_t)rows * R, 5.0f);
  CHECK_OK(mlk_model_run(m, KR));
  d_from_f(dx, x, (size_t)rows * R);
  dref_rmsnorm(want, dx, w, 1e-6, R, rows);
  check_out(m, s->rout, want, (size_t)rows * R, TOL, "rmsnorm", rows);
  check_untouched(m, outs, 1, rows);
}

static void test_rope(mlk_model *m, const Ops *s, int64_t rows) {
  static float x[BMAX * H * HD];
  static int32_t pos[BMAX];
  static double dx[BMAX * H * HD], want[BMAX * H * HD];
  int outs[] = {s->rp, s->rs};
  run_poisoned(m, outs, 2, rows);
  size_t n = (size_t)rows * H * HD;
  set_f(m, s->qx, x, n, 1.0f);
  for (int64_t b = 0; b < rows; b++)
    pos[b] = (int32_t)(b * 13 + rt_next() % 17); /* up to 55 */
  CHECK_OK(mlk_model_set_tensor(m, s->pos, pos, (size_t)rows * sizeof *pos));
  CHECK_OK(mlk_model_run(m, KRO));
  d_from_f(dx, x, n);
  dref_rope(want, dx, pos, H * HD, HD, rows, 10000, 1, 1, 4, 8192);
  check_out(m, s->rp, want, n, 2e-5, "rope", rows);
  dref_rope(want, dx, pos, H * HD, HD, rows, 10000, 8, 1, 4, 16);
  check_out(m, s->rs, want, n, 2e-5, "rope with Llama 3 scaling", rows);
  check_untouched(m, outs, 2, rows);
}

static void test_argmax(mlk_model *m, const Ops *s, int64_t rows) {
  static float x[BMAX * AK];
  int32_t got[BMAX];
  int outs[] = {s->am, s->ams[0], s->ams[1]};
  run_poisoned(m, outs, 3, rows);
  rt_fill(x, (size_t)rows * AK, 1.0f);
  /* Row b: its maximum 2.0 at columns 3 + b and 20 + b (a tie: the first wins). */
  for (int64_t b = 0; b < rows; b++)
    x[b * AK + 3 + b] = x[b * AK + 20 + b] = 2.0f;
  CHECK_OK(mlk_model_set_tensor(m, s->ax, x, (size_t)rows * AK * sizeof *x));
  CHECK_OK(mlk_model_run(m, KA));
  for (int i = 0; i < 3; i++) { /* unsplit, split in 3, split in 12 */
    CHECK_OK(mlk_model_get_tensor(m, outs[i], got, (size_t)rows * sizeof *got));
    for (int64_t b = 0; b < rows; b++)
      CHECK(got[b] == 3 + b, "argmax %d row %lld at batch %lld: %d, expected %lld", i, (long long)b,
            (long long)rows, got[b], (long long)(3 + b));
  }
  check_untouched(m, outs, 3, rows);
}

/* Sampling in double precision, sorting the whole row: MLK_OP_SAMPLE's definition. *margin as in
 * mlk_ref_sample_row. */
static const float *dsx;
static int dsample_cmp(const void *pa, const void *pb) {
  int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
  float va = dsx[a], vb = dsx[b];
  int na = isnan(va), nb = isnan(vb);
  if (na != nb)
    return na - nb; /* NaN last */
  if (!na && va != vb)
    return va > vb ? -1 : 1; /* -0 == +0 */
  return a < b ? -1 : 1;
}

static int32_t dref_sample_row(const float *x, double u, int64_t k, double t, int64_t top_k,
                               double top_p, double *margin) {
  int32_t *ord = malloc((size_t)k * sizeof *ord);
  double *cum = malloc((size_t)k * sizeof *cum);
  for (int64_t i = 0; i < k; i++)
    ord[i] = (int32_t)i;
  dsx = x;
  qsort(ord, (size_t)k, sizeof *ord, dsample_cmp);
  int64_t K = top_k < k ? top_k : k;
  double m = x[ord[0]], sum = 0;
  int32_t r = ord[0];
  *margin = INFINITY;
  if (isfinite(m)) {
    for (int64_t i = 0; i < K; i++) {
      sum += isnan(x[ord[i]]) ? 0.0 : exp(((double)x[ord[i]] - m) / t);
      cum[i] = sum;
    }
    int64_t J = K - 1;
    if (top_p < 1)
      for (J = 0; J < K - 1 && cum[J] < top_p * sum; J++)
        ;
    int64_t pick = 0;
    while (pick < J && !(cum[pick] > u * cum[J]))
      pick++;
    r = ord[pick];
    for (int64_t i = 0; i <= J; i++)
      *margin = fmin(*margin, fabs(cum[i] - u * cum[J]) / cum[J]);
    if (top_p < 1)
      for (int64_t i = 0; i < K; i++)
        *margin = fmin(*margin, fabs(cum[i] - top_p * sum) / sum);
  }
  free(ord);
  free(cum);
  return r;
}

/* The rows' sampling settings of the sample test: every row as compiled (the ops' keywords) at
 * first, then other settings per row. */
static mlk_sampling sample_setting(int phase, int64_t b) {
  if (phase == 0)
    return (mlk_sampling){.seed = (uint64_t)b};
  static const mlk_sampling rows[BMAX] = {
      {0.0f, 1, 1.0f, 7},     /* greedy */
      {0.9f, 7, 0.8f, 11},    /* top-k and top-p */
      {0.0f, 0, 0.0f, 5},     /* as compiled, another seed */
      {2.0f, 1024, 1.0f, 3}}; /* a hot temperature over the 1024 best */
  return rows[b];
}

/* Each op's token of every row is the double reference's for the row's parameters (its settings,
 * or the op's keywords) and random number (its seed's stream at the row's draw), read back from
 * the sampling tensor as well; temperature 0 gives the argmax; and the same settings set again
 * replay the same tokens. */
static void test_sample(mlk_model *m, const Ops *s, int64_t rows) {
  enum { REPS = 4 };
  static float x[REPS][BMAX * SV], sp[BMAX * MLK_SAMPLE_PARAMS];
  int32_t got[BMAX], first[REPS][NSAMPLE][BMAX];
  run_poisoned(m, s->so, NSAMPLE, rows);
  for (int pass = 0; pass < 2; pass++) {     /* pass 1 replays pass 0 */
    for (int rep = 0; rep < REPS; rep++) {
      int phase = rep < 2 ? 0 : 1;
      if (rep == 0 || rep == 2)                /* (re)start every row's stream */
        for (int64_t b = 0; b < (mlk_model_desc(m)->batch_name ? BMAX : 1); b++) {
          mlk_sampling set = sample_setting(phase, b);
          CHECK_OK(mlk_model_set_sampling(m, b, &set));
        }
      if (pass == 0) {
        rt_fill(x[rep], (size_t)rows * SV, 3.0f);
        if (rep == 1) /* ties across the top-7 boundary: equal values, the lower index first */
          for (int64_t b = 0; b < rows; b++)
            for (int i = 0; i < 12; i++)
              x[rep][b * SV + 5 + 23 * i] = 3.5f;
      }
      CHECK_OK(mlk_model_set_tensor(m, s->sx, x[rep], (size_t)rows * SV * sizeof(float)));
      CHECK_OK(mlk_model_run(m, KS));
      CHECK_OK(mlk_model_get_tensor(m, s->sp, sp, (size_t)rows * MLK_SAMPLE_PARAMS * sizeof *sp));
      for (int64_t b = 0; b < rows; b++) {
        mlk_sampling set = sample_setting(phase, b);
        const float *r = sp + b * MLK_SAMPLE_PARAMS;
        float u = mlk_sampling_uniform(set.seed, (uint64_t)(rep % 2));
        CHECK(r[MLK_SAMPLE_TEMPERATURE] == set.temperature && r[MLK_SAMPLE_TOP_K] == set.top_k &&
              r[MLK_SAMPLE_TOP_P] == set.top_p && r[MLK_SAMPLE_U] == u,
              "sampling row %lld at rep %d: %g %g %g %g, expected %g %d %g %g", (long long)b, rep,
              r[0], r[1], r[2], r[3], set.temperature, set.top_k, set.top_p, u);
      }
      for (int i = 0; i < NSAMPLE; i++) {
        CHECK_OK(mlk_model_get_tensor(m, s->so[i], got, (size_t)rows * sizeof *got));
        for (int64_t b = 0; b < rows; b++) {
          const float *xb = x[rep] + b * SV, *r = sp + b * MLK_SAMPLE_PARAMS;
          int compiled = r[MLK_SAMPLE_TOP_K] == 0.0f;
          double t = compiled ? sample_cfg[i].t : r[MLK_SAMPLE_TEMPERATURE];
          int64_t top_k = compiled ? sample_cfg[i].top_k : (int64_t)r[MLK_SAMPLE_TOP_K];
          double top_p = compiled ? sample_cfg[i].top_p : r[MLK_SAMPLE_TOP_P];
          double margin = 0;
          int32_t want = t == 0 ? -1 : dref_sample_row(xb, r[MLK_SAMPLE_U], SV, t, top_k, top_p,
                                                       &margin);
          int32_t am;
          mlk_ref_argmax(&am, xb, SV, 1);
          if (t == 0 || (compiled && (i == 0 || i == 3))) /* greedy, top_k 1, a tiny top_p */
            CHECK(got[b] == am, "sample %d row %lld rep %d: %d, the argmax is %d", i, (long long)b,
                  rep, got[b], am);
          else
            CHECK(got[b] == want || margin < 1e-5, "sample %d row %lld at batch %lld rep %d (u %g): "
                  "%d, expected %d (margin %g)", i, (long long)b, (long long)rows, rep,
                  r[MLK_SAMPLE_U], got[b], want, margin);
          if (pass == 0)
            first[rep][i][b] = got[b];
          else
            CHECK(got[b] == first[rep][i][b], "sample %d row %lld rep %d: the same seed gave %d, "
                  "then %d", i, (long long)b, rep, first[rep][i][b], got[b]);
        }
      }
    }
  }
  check_untouched(m, s->so, NSAMPLE, rows);
}

/* kv_append then attention, STEPS runs; the batch drops to 2 half-way (rows 0 and 1 go on). */
static void test_kv(mlk_model *m, const Ops *s, int64_t rows0) {
  const MlkModelDesc *d = mlk_model_desc(m);
  const MlkCacheDesc *cd = &d->caches[s->cache];
  static double Kd[BMAX][CTX][KVH * HD], Vd[BMAX][CTX][KVH * HD];
  memset(Kd, 0, sizeof Kd);
  memset(Vd, 0, sizeof Vd);
  static float k[BMAX * KVH * HD], v[BMAX * KVH * HD], q[BMAX * QH * HD];
  static double dq[QH * HD], want[BMAX * QH * HD];
  static const int32_t start[BMAX] = {0, 3, 9, 1};
  int32_t pos[BMAX];
  CHECK(mlk_model_kv_context(m) == CTX, "kv context %lld", (long long)mlk_model_kv_context(m));
  for (int step = 0; step < STEPS; step++) {
    int64_t rows = step < STEPS / 2 ? rows0 : (rows0 > 1 ? 2 : 1);
    CHECK_OK(mlk_model_set_batch(m, rows));
    CHECK_OK(mlk_model_fill_tensor(m, s->att, 0xff));
    for (int i = 0; i < 3; i++)
      CHECK_OK(mlk_model_fill_tensor(m, s->att_split[i], 0xff));
    for (int64_t b = 0; b < rows; b++)
      pos[b] = start[b] + step;
    set_f(m, s->kk, k, (size_t)rows * KVH * HD, 1.0f);
    set_f(m, s->vv, v, (size_t)rows * KVH * HD, 1.0f);
    set_f(m, s->qq, q, (size_t)rows * QH * HD, 2.0f);
    CHECK_OK(mlk_model_set_tensor(m, s->kpos, pos, (size_t)rows * sizeof *pos));
    CHECK_OK(mlk_model_run(m, KKV));
    for (int64_t b = 0; b < rows; b++) {
      for (int i = 0; i < KVH * HD; i++) {
        Kd[b][pos[b]][i] = dround_bf16(k[b * KVH * HD + i]);
        Vd[b][pos[b]][i] = dround_bf16(v[b * KVH * HD + i]);
      }
      d_from_f(dq, q + b * QH * HD, QH * HD);
      dref_attention_row(want + b * QH * HD, dq, &Kd[b][0][0], &Vd[b][0][0], pos[b], QH, KVH, HD);
    }
    char what[64];
    snprintf(what, sizeof what, "attention after %d appends", step + 1);
    check_out(m, s->att, want, (size_t)rows * QH * HD, TOL, what, rows);
    for (int i = 0; i < 3; i++) {
      snprintf(what, sizeof what, "attention split %lld (%lld kv heads a task) after %d appends",
               (long long)splits[i][0], (long long)splits[i][1], step + 1);
      check_out(m, s->att_split[i], want, (size_t)rows * QH * HD, TOL, what, rows);
    }
  }
  /* The pool: layer 1 holds exactly what was appended where the identity page table says (row b
   * owns pages b * pages_per_seq ...), everything else (all of layer 0) is zero. */
  int64_t pps = (CTX + PAGE - 1) / PAGE, npages = (d->batch_name ? d->batch_max : 1) * pps;
  size_t bytes = mlk_model_tensor_bytes(m, cd->tensor);
  CHECK(bytes == (size_t)(2 * npages * 2 * KVH * PAGE * HD) * 2, "pool of %zu bytes", bytes);
  uint16_t *pool = malloc(bytes);
  int32_t *table = malloc((size_t)npages * sizeof *table);
  CHECK_OK(mlk_model_get_tensor(m, cd->tensor, pool, bytes));
  CHECK_OK(mlk_model_get_tensor(m, cd->pages_tensor, table, (size_t)npages * sizeof *table));
  for (int64_t p = 0; p < npages; p++)
    CHECK(table[p] == p, "page table [%lld] = %d", (long long)p, table[p]);
  uint16_t *expect = calloc(bytes, 1);
  for (int64_t b = 0; b < (d->batch_name ? d->batch_max : 1); b++)
    for (int t = 0; t < CTX; t++)
      for (int h = 0; h < KVH; h++)
        for (int e = 0; e < HD; e++) {
          int64_t page = b * pps + t / PAGE;
          expect[mlk_cache_offset(cd, npages, 1, page, 0, h, t % PAGE) + e] =
              mlk_f32_to_bf16((float)Kd[b][t][h * HD + e]);
          expect[mlk_cache_offset(cd, npages, 1, page, 1, h, t % PAGE) + e] =
              mlk_f32_to_bf16((float)Vd[b][t][h * HD + e]);
        }
  size_t bad = 0;
  for (size_t i = 0; i < bytes / 2; i++)
    bad += pool[i] != expect[i];
  CHECK(bad == 0, "%zu pool elements differ from the appends", bad);
  free(expect);
  free(table);
  free(pool);
}

static void test_model(mlk_backend *be, int64_t bmax) {
  static Ops s;
  build(&s, bmax);
  mlk_model *m;
  CHECK_OK(mlk_model_create(be, &s.b.desc, &m));
  if (!m)
    return;
  CHECK(mlk_model_batch(m) == 1, "default batch %lld", (long long)mlk_model_batch(m));
  int64_t top = bmax ? bmax : 1;
  for (int64_t rows = 1; rows <= top; rows++) {
    test_matvec(m, &s, rows);
    test_eltwise(m, &s, rows);
    test_gather(m, &s, rows);
    test_rmsnorm(m, &s, rows);
    test_rope(m, &s, rows);
    test_argmax(m, &s, rows);
    test_sample(m, &s, rows);
  }
  test_kv(m, &s, top);
  mlk_model_free(m);
}

/* ---- direct calls of the references ---- */

static void test_refs(void) {
  /* Llama 3.1: head_dim 128, theta 500000, factor 8, low 1, high 4, original context 8192. */
  int regime[3] = {0, 0, 0};
  double worst = 0;
  for (int64_t j = 0; j < 64; j++) {
    double want = dref_inv_freq(j, 128, 500000, 8, 1, 4, 8192);
    double plain = dref_inv_freq(j, 128, 500000, 1, 1, 4, 8192);
    double got = mlk_ref_rope_inv_freq(j, 128, 500000.0f, 8.0f, 1.0f, 4.0f, 8192);
    double e = fabs(got - want) / want;
    worst = e > worst ? e : worst;
    regime[want == plain ? 0 : fabs(want - plain / 8) < 1e-15 * plain ? 2 : 1]++;
    double unscaled = mlk_ref_rope_inv_freq(j, 128, 500000.0f, 1.0f, 1.0f, 4.0f, 8192);
    CHECK(fabs(unscaled - plain) <= 1e-6 * plain, "inv_freq[%lld] without scaling %g, expected %g",
          (long long)j, unscaled, plain);
  }
  CHECK(worst < 1e-6, "Llama 3 inverse frequencies: worst relative error %g", worst);
  CHECK(regime[0] > 0 && regime[1] > 0 && regime[2] > 0, "regimes kept %d, smoothed %d, divided %d",
        regime[0], regime[1], regime[2]);

  /* kv_append and attention through a permuted page table: 2 sequences of 3 pages of 4 tokens. */
  enum { PPS = 3, NP = 6, LAYERS = 2, L = 1, T0 = 11, T1 = 8 };
  const MlkCacheDesc geo = {.kv_heads = KVH, .head_dim = HD, .page = PAGE};
  static const int32_t pages[NP] = {4, 1, 5, 0, 3, 2};
  static uint16_t pool[LAYERS * NP * 2 * KVH * PAGE * HD];
  static double Kd[2][PPS * PAGE][KVH * HD], Vd[2][PPS * PAGE][KVH * HD];
  memset(pool, 0, sizeof pool);
  float k[2 * KVH * HD], v[2 * KVH * HD], q[2 * QH * HD], out[2 * QH * HD];
  double dq[QH * HD], want[2 * QH * HD];
  for (int32_t t = 0; t < T0; t++) {
    int32_t pos[2] = {t, t < T1 ? t : T1 - 1};
    rt_fill(k, 2 * KVH * HD, 1.0f);
    rt_fill(v, 2 * KVH * HD, 1.0f);
    /* One call per kv head, as the tasks do. */
    for (int h = 0; h < KVH; h++)
      mlk_ref_kv_append(pool, k, v, pos, pages, KVH, HD, PAGE, PPS, NP, L, h, 1, 2, 0, 0, 0, 0, 0);
    for (int b = 0; b < 2; b++)
      for (int i = 0; i < KVH * HD; i++) {
        Kd[b][pos[b]][i] = dround_bf16(k[b * KVH * HD + i]);
        Vd[b][pos[b]][i] = dround_bf16(v[b * KVH * HD + i]);
      }
  }
  int bad = 0;
  for (int b = 0; b < 2; b++)
    for (int t = 0; t < (b ? T1 : T0); t++)
      for (int h = 0; h < KVH; h++)
        for (int e = 0; e < HD; e++) {
          int64_t phys = pages[b * PPS + t / PAGE];
          bad += dbf(pool[mlk_cache_offset(&geo, NP, L, phys, 0, h, t % PAGE) + e]) != Kd[b][t][h * HD + e];
          bad += dbf(pool[mlk_cache_offset(&geo, NP, L, phys, 1, h, t % PAGE) + e]) != Vd[b][t][h * HD + e];
        }
  for (size_t i = 0; i < sizeof pool / sizeof *pool / LAYERS; i++)
    bad += pool[i] != 0; /* layer 0 */
  CHECK(bad == 0, "kv_append through a permuted page table: %d elements wrong", bad);

  /* A rope fused into kv_append (theta > 0) writes what rope and then an append write, bit for bit
   * (Llama 3 scaling; positions far apart, so every frequency regime turns). */
  {
    static uint16_t fused[LAYERS * NP * 2 * KVH * PAGE * HD], apart[LAYERS * NP * 2 * KVH * PAGE * HD];
    memset(fused, 0, sizeof fused);
    memset(apart, 0, sizeof apart);
    float kr[2 * KVH * HD];
    int differ = 0;
    for (int32_t t = 0; t < PPS * PAGE; t++) {
      int32_t pos[2] = {t, PPS * PAGE - 1 - t};
      rt_fill(k, 2 * KVH * HD, 3.0f);
      rt_fill(v, 2 * KVH * HD, 1.0f);
      mlk_ref_rope(kr, k, pos, KVH * HD, HD, 0, KVH * HD, 2, 500000.0f, 8.0f, 1.0f, 4.0f, 8192);
      for (int h = 0; h < KVH; h++) {
        mlk_ref_kv_append(fused, k, v, pos, pages, KVH, HD, PAGE, PPS, NP, L, h, 1, 2, 500000.0f, 8.0f,
                          1.0f, 4.0f, 8192);
        mlk_ref_kv_append(apart, kr, v, pos, pages, KVH, HD, PAGE, PPS, NP, L, h, 1, 2, 0, 0, 0, 0, 0);
      }
    }
    for (size_t i = 0; i < sizeof fused / sizeof *fused; i++)
      differ += fused[i] != apart[i];
    CHECK(differ == 0, "kv_append with a fused rope: %d cache elements differ from rope, then append",
          differ);
  }
  rt_fill(q, 2 * QH * HD, 2.0f);
  int32_t last[2] = {T0 - 1, T1 - 1};
  for (int kvh = 0; kvh < KVH; kvh++)
    mlk_ref_attention(out, q, pool, last, pages, KVH, HD, PAGE, PPS, NP, L, QH, kvh, 1, 2);
  for (int b = 0; b < 2; b++) {
    d_from_f(dq, q + b * QH * HD, QH * HD);
    dref_attention_row(want + b * QH * HD, dq, &Kd[b][0][0], &Vd[b][0][0], last[b], QH, KVH, HD);
  }
  double err = rel_err(out, want, 2 * QH * HD);
  CHECK(err < TOL, "attention through a permuted page table: relative L2 error %g", err);

  /* The same split over the context: every (kv head block, chunk) task's partials, then the
   * reduce of each block. Row 1 once at pos -1 (no position: zeros, every chunk empty), and
   * chunk counts from 1 to more than the positions (empty chunks). */
  static float part[2 * 32 * KVH * (QH / KVH) * (HD + 2) * 2];
  static const int64_t sp[][2] = {{1, 1}, {2, 1}, {3, 2}, {4, 1}, {5, 1}, {11, 2}, {12, 1}, {32, 1}};
  for (size_t i = 0; i < sizeof sp / sizeof *sp; i++)
    for (int neg = 0; neg < 2; neg++) {
      int64_t S = sp[i][0], kvh = sp[i][1], nblk = (KVH + kvh - 1) / kvh;
      int64_t pcols = mlk_attn_part_cols(KVH, QH, HD, S, kvh);
      int32_t lastn[2] = {T0 - 1, neg ? -1 : T1 - 1};
      for (size_t j = 0; j < sizeof part / sizeof *part; j++)
        part[j] = NAN; /* records the tasks leave unwritten must not be read */
      for (size_t j = 0; j < 2 * QH * HD; j++)
        out[j] = NAN;
      for (int64_t t = 0; t < nblk * S; t++) {
        int64_t h0 = t / S * kvh, nh = kvh < KVH - h0 ? kvh : KVH - h0;
        mlk_ref_attention_split(part, q, pool, lastn, pages, KVH, HD, PAGE, PPS, NP, L, QH, kvh, S,
                                0, h0, nh, t % S, 2);
      }
      for (int64_t t = 0; t < nblk; t++) {
        int64_t h0 = t * kvh, nh = kvh < KVH - h0 ? kvh : KVH - h0;
        mlk_ref_attn_reduce(out, part, KVH, HD, QH, kvh, S, h0, nh, 2);
      }
      CHECK(pcols * 2 <= (int64_t)(sizeof part / sizeof *part), "partials buffer");
      err = rel_err(out, want, (size_t)(neg ? 1 : 2) * QH * HD);
      CHECK(err < TOL, "split attention (%lld chunks, %lld kv heads a task%s): relative L2 error %g",
            (long long)S, (long long)kvh, neg ? ", row 1 at pos -1" : "", err);
      int nonzero = 0;
      for (int j = 0; neg && j < QH * HD; j++)
        nonzero += out[QH * HD + j] != 0.0f;
      CHECK(nonzero == 0, "split attention (%lld chunks): row at pos -1 has %d nonzero outputs",
            (long long)S, nonzero);
    }
  int32_t lastn[2] = {-1, T1 - 1};
  for (size_t j = 0; j < 2 * QH * HD; j++)
    out[j] = NAN;
  mlk_ref_attention(out, q, pool, lastn, pages, KVH, HD, PAGE, PPS, NP, L, QH, 0, KVH, 2);
  int nonzero = 0;
  for (int j = 0; j < QH * HD; j++)
    nonzero += out[j] != 0.0f;
  err = rel_err(out + QH * HD, want + QH * HD, QH * HD);
  CHECK(nonzero == 0 && err < TOL, "attention with a row at pos -1: %d nonzero outputs, other row "
        "error %g", nonzero, err);

  const float x[] = {1, 3, 3, 2, NAN, -INFINITY, NAN, 1, 1, NAN, NAN, NAN};
  int32_t am[3];
  mlk_ref_argmax(am, x, 4, 3);
  CHECK(am[0] == 1 && am[1] == 3 && am[2] == 0, "argmax ties/NaN: %d %d %d", am[0], am[1], am[2]);
  /* the split argmax (chunks, then their reduce) gives the same index: ties across and inside
   * chunks, NaN, -inf alone in a chunk, all NaN, more chunks than columns (empty ones) */
  {
    enum { AR = 6, AC = 11 };
    static const float ax[AR][AC] = {
        {0, 1, 5, 2, 5, 0, 5, 1, 1, 1, 5},
        {NAN, NAN, NAN, NAN, -INFINITY, NAN, NAN, NAN, NAN, NAN, NAN},
        {NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN},
        {-1, -2, -3, -4, -5, -6, -7, -8, -9, -10, -0.5f},
        {NAN, 2, 2, NAN, 3, NAN, 3, 1, 3, NAN, 2},
        {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY,
         -INFINITY, -INFINITY, -INFINITY}};
    int32_t want[AR], got[AR];
    mlk_ref_argmax(want, &ax[0][0], AC, AR);
    for (int64_t sp = 2; sp <= 16; sp++) {
      float part[AR * 2 * 16];
      for (int64_t c = 0; c < sp; c++)
        mlk_ref_argmax_part(part, &ax[0][0], AC, sp, c, AR);
      mlk_ref_argmax_reduce(got, part, sp, AR);
      for (int r = 0; r < AR; r++)
        CHECK(got[r] == want[r], "split argmax, %lld chunks, row %d: %d, unsplit %d", (long long)sp,
              r, got[r], want[r]);
    }
    CHECK(want[0] == 2 && want[1] == 4 && want[2] == 0 && want[3] == 10 && want[4] == 4 &&
          want[5] == 0, "argmax of the split test rows: %d %d %d %d %d %d", want[0], want[1],
          want[2], want[3], want[4], want[5]);
  }

  /* sample: the non-finite cases take the first ranked column; NaN ranks below -inf */
  static const struct { float x[5]; int32_t want; } deg[] = {
      {{1, INFINITY, 2, INFINITY, NAN}, 1},           /* +inf: the first of them */
      {{-INFINITY, NAN, -INFINITY, NAN, NAN}, 0},      /* all -inf or NaN */
      {{NAN, NAN, NAN, NAN, NAN}, 0},
      {{NAN, NAN, -INFINITY, NAN, NAN}, 2}};
  for (size_t i = 0; i < sizeof deg / sizeof *deg; i++)
    for (int j = 0; j < 3; j++) {
      float uj = j == 0 ? 0.0f : j == 1 ? 0.5f : 0.9999999f;
      int32_t r = mlk_ref_sample_row(deg[i].x, uj, 5, 1.0f, 5, 0.9f, NULL);
      CHECK(r == deg[i].want, "sample of non-finite case %zu (u %g): %d, expected %d", i, uj, r,
            deg[i].want);
    }
  /* NaN has probability 0; -0 and +0 tie (index order); u = 0 takes the first ranked */
  const float zx[4] = {-0.0f, NAN, 0.0f, -1.0f};
  CHECK(mlk_ref_sample_row(zx, 0.0f, 4, 1.0f, 4, 1.0f, NULL) == 0, "-0 ranks with +0, first index");
  CHECK(mlk_ref_sample_row(zx, 0.999f, 4, 1.0f, 4, 1.0f, NULL) == 3, "u near 1: the last with mass");
  CHECK(mlk_ref_sample_row(zx, 0.999f, 4, 1.0f, 2, 1.0f, NULL) == 2, "top_k 2: -0 then +0");
  /* a hand-computed top-p cut: p = 0.5, 0.3, 0.2 -> C = 0.5, 0.8, 1.0; top_p 0.75 keeps two */
  const float px[3] = {logf(0.2f), logf(0.5f), logf(0.3f)};
  static const struct { float u, top_p; int32_t want; } cut[] = {
      {0.6f, 0.75f, 1}, {0.7f, 0.75f, 2}, {0.99f, 0.75f, 2}, {0.7f, 0.4f, 1}, {0.81f, 1.0f, 0},
      {0.79f, 1.0f, 2}, {0.0f, 1.0f, 1}};
  for (size_t i = 0; i < sizeof cut / sizeof *cut; i++) {
    int32_t r = mlk_ref_sample_row(px, cut[i].u, 3, 1.0f, 3, cut[i].top_p, NULL);
    CHECK(r == cut[i].want, "top-p case %zu: %d, expected %d", i, r, cut[i].want);
  }
  /* The frequencies over a grid of u are the kept probabilities, renormalized: top_k 4 of 6, then
   * top_p 0.8 of those 4 (cumulative 0.38, 0.62, 0.85, 1: keeps 3), temperature 1.5. */
  const float fx[6] = {0.1f, 1.5f, -0.6f, 0.75f, -3.0f, 0.85f};
  double p[6] = {0}, kept = 0;
  int count[6] = {0};
  static const int order[4] = {1, 5, 3, 0};
  for (int i = 0; i < 3; i++)
    kept += p[order[i]] = exp((fx[order[i]] - fx[1]) / 1.5);
  enum { NU = 100000 };
  for (int i = 0; i < NU; i++)
    count[mlk_ref_sample_row(fx, (float)((i + 0.5) / NU), 6, 1.5f, 4, 0.8f, NULL)]++;
  for (int i = 0; i < 6; i++)
    CHECK(fabs(count[i] / (double)NU - p[i] / kept) < 1e-4, "token %d drawn %d times of %d, "
          "probability %g", i, count[i], NU, p[i] / kept);
}

int main(void) {
  rt_watchdog(120);
  rt_seed();
  setenv("MLK_KV_CONTEXT", "24", 1);
  test_refs();
  /* deterministic, then threaded with delays */
  static const struct { int threads; uint64_t seed; int delay; mlk_sim_schedule sched; } cfg[] = {
      {1, 1, 0, MLK_SIM_AS_COMPILED}, {4, 5, 0, MLK_SIM_DYNAMIC}, {3, 9, 20, MLK_SIM_STATIC}};
  for (size_t c = 0; c < sizeof cfg / sizeof *cfg; c++) {
    mlk_sim_options opt = {.threads = cfg[c].threads, .seed = cfg[c].seed,
                           .max_delay_us = cfg[c].delay, .schedule = cfg[c].sched,
                           .mode = cfg[c].delay ? MLK_SIM_THREADED : MLK_SIM_DETERMINISTIC};
    mlk_backend *be;
    CHECK_OK(mlk_backend_create_cpu(&opt, &be));
    if (!be)
      continue;
    printf("  %s\n", mlk_backend_name(be));
    int before = rt_failures;
    test_model(be, BMAX);
    test_model(be, 0);
    if (rt_failures != before)
      fprintf(stderr, "  ^ failed with %s\n", mlk_backend_name(be));
    mlk_backend_free(be);
  }
  return rt_finish("runtime_ops");
}
