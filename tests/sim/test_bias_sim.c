/* test_bias_sim.c: biases (`x + b`, b a bf16 param vector added to every row) on the CPU simulator,
 * against a double-precision reference written here.
 *
 * tests/sim/bias_ops.mlk lowers a bias every way there is (its header lists them): folded into a
 * matvec (alone, after the fused input norm, before relu, with a residual, in a gated product, cut
 * with the weight's rows by a split), and as an eltwise op (over an input, after an epilogue, over
 * a matvec read twice, split by the slices of a matvec read whole, kept apart by a wait clause).
 * Every output is compared with the reference (relative L2 < 1e-5), at batches 1, 5, 2 and 3 of
 * one model, outputs poisoned before each run and rows past the batch checked untouched; each run
 * tries several schedules of the deterministic simulator with the dependency checker on, under the
 * static and the dynamic schedule.
 *
 * Usage: test_bias_sim [SEED]   (0 or none: the time; CTest passes MLK_TEST_SEED)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bias_ops.h"

enum { L = 2, D = 69, N = 37, Q = 21, K = 10, QK = Q + K, BMAX = 5, SCHEDULES = 4 };
#define TOL 1e-5

static uint64_t rng;
static float uniform(void) { /* [-1, 1) */
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (float)((rng >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

static int failures;

static void fail_api(const char *what) {
  printf("FAIL: %s: %s\n", what, mlk_last_error());
  exit(1);
}

static int find(const mlk_model *m, const char *name) {
  int t = mlk_model_find_tensor(m, name);
  if (t < 0) {
    printf("FAIL: no tensor '%s'\n", name);
    exit(1);
  }
  return t;
}

/* Random bf16 values around `center`, set into param `name`; `out` keeps them widened. */
static void param(mlk_model *m, const char *name, size_t n, float center, float scale, double *out) {
  uint16_t *v = malloc(n * sizeof *v);
  for (size_t i = 0; i < n; i++) {
    v[i] = mlk_f32_to_bf16(center + scale * uniform());
    out[i] = mlk_bf16_to_f32(v[i]);
  }
  if (mlk_model_set_tensor(m, find(m, name), v, n * sizeof *v) != MLK_OK)
    fail_api(name);
  free(v);
}

/* Random f32 rows of input `name` for `rows` rows; `out` keeps them. */
static void input(mlk_model *m, const char *name, size_t cols, int64_t rows, double *out) {
  float *v = malloc(cols * (size_t)rows * sizeof *v);
  for (size_t i = 0; i < cols * (size_t)rows; i++)
    out[i] = v[i] = uniform();
  if (mlk_model_set_tensor(m, find(m, name), v, cols * (size_t)rows * sizeof *v) != MLK_OK)
    fail_api(name);
  free(v);
}

/* The weights and inputs, widened. */
static double w[N * D], wqk[QK * D], b[N], bl[L * N], bqk[QK], nw[D];
static double x[BMAX * D], x2[BMAX * N], g[BMAX * N];

/* sum_k W[r, k] * xn[k] for the rows of W, xn = x or its rmsnorm with nw. */
static void mv(const double *W, int rows, const double *xb, int norm, double *out) {
  double scale = 1;
  if (norm) {
    double ss = 0;
    for (int i = 0; i < D; i++)
      ss += xb[i] * xb[i];
    scale = 1 / sqrt(ss / D + 1e-5);
  }
  for (int r = 0; r < rows; r++) {
    double s = 0;
    for (int i = 0; i < D; i++)
      s += W[r * D + i] * xb[i] * (norm ? scale * nw[i] : 1);
    out[r] = s;
  }
}

static double relu(double v) { return v > 0 ? v : 0; }
static double silu(double v) { return v / (1 + exp(-v)); }

/* The expected rows of output `name` (cols columns), row by row. */
static void reference(const char *name, int64_t rows, double *want) {
  for (int64_t r = 0; r < rows; r++) {
    const double *xb = x + r * D, *x2b = x2 + r * N, *gb = g + r * N;
    double m[N > QK ? N : QK], mn[N];
    if (!strcmp(name, "q") || !strcmp(name, "k") || !strcmp(name, "q2") || !strcmp(name, "k2") ||
        !strcmp(name, "y9")) {
      mv(wqk, QK, xb, 0, m);
      int whole = !strcmp(name, "y9"), isk = name[0] == 'k';
      int c0 = whole ? 0 : isk ? Q : 0, cols = whole ? QK : isk ? K : Q;
      for (int i = 0; i < cols; i++)
        want[r * cols + i] = m[c0 + i] + (whole ? 0 : bqk[c0 + i]);
      continue;
    }
    mv(w, N, xb, 0, m);
    mv(w, N, xb, 1, mn);
    double *o = want + r * N;
    for (int i = 0; i < N; i++) {
      if (!strcmp(name, "y1") || !strcmp(name, "y3") || !strcmp(name, "y10"))
        o[i] = m[i] + b[i];
      else if (!strcmp(name, "y2"))
        o[i] = x2b[i] + bl[N + i];
      else if (!strcmp(name, "y4"))
        o[i] = m[i];
      else if (!strcmp(name, "y5"))
        o[i] = relu(m[i] + bl[i]);
      else if (!strcmp(name, "y6"))
        o[i] = silu(m[i]) + b[i];
      else if (!strcmp(name, "y7"))
        o[i] = x2b[i] + (b[i] + mn[i]);
      else if (!strcmp(name, "y8"))
        o[i] = (m[i] + b[i]) * gb[i];
      else {
        printf("FAIL: no reference for '%s'\n", name);
        exit(1);
      }
    }
  }
}

static const char *const outputs[] = {"y1", "y2", "q",  "k",  "y3", "y4", "y5",
                                      "y6", "y7", "y8", "q2", "k2", "y9", "y10"};
enum { NOUT = sizeof outputs / sizeof *outputs };

/* One run at `rows` rows: outputs poisoned at every row first, then each compared with the
 * reference and its rows past the batch checked untouched. */
static void run_and_check(mlk_model *m, int64_t rows, const char *what) {
  if (mlk_model_set_batch(m, BMAX) != MLK_OK)
    fail_api("set_batch");
  for (int i = 0; i < NOUT; i++)
    if (mlk_model_fill_tensor(m, find(m, outputs[i]), 0xff) != MLK_OK)
      fail_api("fill");
  if (mlk_model_set_batch(m, rows) != MLK_OK)
    fail_api("set_batch");
  input(m, "x", D, rows, x);
  input(m, "x2", N, rows, x2);
  input(m, "g", N, rows, g);
  if (mlk_model_run(m, 0) != MLK_OK) {
    printf("FAIL: %s, batch %lld: %s\n", what, (long long)rows, mlk_last_error());
    failures++;
    return;
  }
  if (mlk_model_set_batch(m, BMAX) != MLK_OK)
    fail_api("set_batch");
  for (int i = 0; i < NOUT; i++) {
    int t = find(m, outputs[i]);
    size_t bytes = mlk_model_tensor_bytes(m, t), cols = bytes / sizeof(float) / BMAX;
    float *got = malloc(bytes);
    double *want = malloc(cols * BMAX * sizeof *want);
    if (mlk_model_get_tensor(m, t, got, bytes) != MLK_OK)
      fail_api("get");
    reference(outputs[i], rows, want);
    double num = 0, den = 0;
    for (size_t j = 0; j < cols * (size_t)rows; j++) {
      double d = got[j] - want[j];
      num += d * d;
      den += want[j] * want[j];
    }
    double err = sqrt(num / (den > 0 ? den : 1));
    if (!(err < TOL)) {
      printf("FAIL: %s, batch %lld: '%s' is %g (relative L2) from the reference\n", what,
             (long long)rows, outputs[i], err);
      failures++;
    }
    size_t untouched = 0;
    for (size_t j = cols * (size_t)rows; j < cols * BMAX; j++) {
      uint32_t u;
      memcpy(&u, &got[j], sizeof u);
      untouched += u == 0xffffffffu;
    }
    if (untouched != cols * (size_t)(BMAX - rows)) {
      printf("FAIL: %s, batch %lld: '%s' was written past the batch's rows\n", what,
             (long long)rows, outputs[i]);
      failures++;
    }
    free(got);
    free(want);
  }
}

static void test(uint64_t seed, mlk_sim_schedule schedule) {
  const char *what = schedule == MLK_SIM_DYNAMIC ? "dynamic schedule" : "static schedule";
  mlk_sim_options opt = {.threads = 4, .seed = seed, .mode = MLK_SIM_DETERMINISTIC,
                         .explore = SCHEDULES, .schedule = schedule};
  mlk_backend *be;
  mlk_model *m;
  if (mlk_backend_create_cpu(&opt, &be) != MLK_OK || mlk_model_create(be, &bias_ops_desc, &m))
    fail_api("create");
  param(m, "w", (size_t)N * D, 0, 0.3f, w);
  param(m, "wqk", (size_t)QK * D, 0, 0.3f, wqk);
  param(m, "b", N, 0, 1.0f, b);
  param(m, "bl", (size_t)L * N, 0.5f, 1.0f, bl);
  param(m, "bqk", QK, 0, 1.0f, bqk);
  param(m, "nw", D, 1.0f, 0.2f, nw);
  static const int64_t batches[] = {1, 5, 2, 3};
  for (size_t i = 0; i < sizeof batches / sizeof *batches; i++)
    run_and_check(m, batches[i], what);
  mlk_model_free(m);
  mlk_backend_free(be);
}

int main(int argc, char **argv) {
  uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : 0;
  if (!seed)
    seed = (uint64_t)time(NULL);
  printf("seed %llu\n", (unsigned long long)seed);
  rng = seed * 0x9e3779b97f4a7c15ull | 1;
  test(seed, MLK_SIM_STATIC);
  test(seed + 1, MLK_SIM_DYNAMIC);
  if (failures) {
    printf("%d failures\n", failures);
    return 1;
  }
  printf("PASS: bias_ops\n");
  return 0;
}
