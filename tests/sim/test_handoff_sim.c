/* test_handoff_sim.c: megakernels of one model handing tensors to each other on the device
 * (tests/sim/handoff.mlk): `first` writes the outputs h and tok, `second` reads h, `third` reads tok
 * as gather ids. On the deterministic CPU simulator, several schedules per run:
 *
 *   - `second` before any run of `first`: refused, naming the kernel to run first;
 *   - after `first`: `second` computes y = matvec(h, w2) + h from the h that `first` left (checked
 *     against a double-precision reference over the downloaded h) and `third` gathers emb[tok];
 *   - a larger batch than `first` last ran with: refused until `first` runs again;
 *   - a token out of emb's rows (argmax has more columns than emb has rows): `third` is refused,
 *     as a bad id set by the application would be.
 *
 * wv is zero but for one row of ones, so argmax picks that row (h >= 0 after the relu).
 *
 * Usage: test_handoff_sim [SEED]   (0 or none: the time; CTest passes MLK_TEST_SEED)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mlk.h"

extern const MlkModelDesc handoff_desc;

enum { D = 32, V = 16, R = 8, BMAX = 3 };

static uint64_t rng;
static float uniform(void) { /* [-1, 1) */
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (float)((rng >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

static int failures;

static void expect(int ok, const char *what) {
  if (!ok) {
    printf("FAIL: %s\n", what);
    failures++;
  }
}

static int find(const mlk_model *m, const char *name) {
  int t = mlk_model_find_tensor(m, name);
  if (t < 0) {
    printf("FAIL: no tensor '%s'\n", name);
    exit(1);
  }
  return t;
}

static int kernel(const char *name) {
  for (int k = 0; k < handoff_desc.nkernels; k++)
    if (!strcmp(handoff_desc.kernels[k].name, name))
      return k;
  printf("FAIL: no megakernel '%s'\n", name);
  exit(1);
}

static void set(mlk_model *m, const char *name, const void *data, size_t bytes) {
  if (mlk_model_set_tensor(m, find(m, name), data, bytes) != MLK_OK) {
    printf("FAIL: set '%s': %s\n", name, mlk_last_error());
    exit(1);
  }
}

static void get(mlk_model *m, const char *name, void *data, size_t bytes) {
  if (mlk_model_get_tensor(m, find(m, name), data, bytes) != MLK_OK) {
    printf("FAIL: get '%s': %s\n", name, mlk_last_error());
    exit(1);
  }
}

/* wv: zero but for row `row`, all ones. */
static void set_wv(mlk_model *m, int row) {
  static uint16_t wv[V * D];
  for (int i = 0; i < V * D; i++)
    wv[i] = mlk_f32_to_bf16(i / D == row ? 1.0f : 0.0f);
  set(m, "wv", wv, sizeof wv);
}

static void set_x(mlk_model *m, int64_t batch) {
  static float x[BMAX * D];
  for (int64_t i = 0; i < batch * D; i++)
    x[i] = uniform();
  if (mlk_model_set_batch(m, batch) != MLK_OK) {
    printf("FAIL: set_batch: %s\n", mlk_last_error());
    exit(1);
  }
  set(m, "x", x, sizeof(float) * (size_t)(batch * D));
}

/* A run that must succeed. */
static int run(mlk_model *m, const char *k) {
  if (mlk_model_run(m, kernel(k)) == MLK_OK)
    return 1;
  printf("FAIL: run '%s': %s\n", k, mlk_last_error());
  failures++;
  return 0;
}

/* A run that must be refused with a message containing `want`. */
static void refused(mlk_model *m, const char *k, const char *want, const char *why) {
  if (mlk_model_run(m, kernel(k)) == MLK_OK) {
    printf("FAIL: run '%s' passed, but %s\n", k, why);
    failures++;
  } else if (!strstr(mlk_last_error(), want)) {
    printf("FAIL: run '%s' (%s): expected \"%s\", got: %s\n", k, why, want, mlk_last_error());
    failures++;
  } else {
    printf("ok: run '%s' refused (%s): %s\n", k, why, mlk_last_error());
  }
}

/* y = matvec(h, w2) + h, from the h that `first` left, and e = emb[tok] for `batch` rows. */
static void check_second_third(mlk_model *m, const uint16_t *w2, const uint16_t *emb, int64_t batch,
                               int token) {
  static float h[BMAX * D], y[BMAX * D], e[BMAX * D];
  static int32_t tok[BMAX];
  size_t rows = (size_t)batch;
  get(m, "h", h, sizeof(float) * rows * D);
  get(m, "y", y, sizeof(float) * rows * D);
  get(m, "tok", tok, sizeof(int32_t) * rows);
  get(m, "e", e, sizeof(float) * rows * D);
  double worst = 0;
  for (size_t b = 0; b < rows; b++) {
    expect(tok[b] == token, "argmax picks the row of ones of wv");
    for (int i = 0; i < D; i++) {
      /* f32 sums in any order: the error is within a few ulps of the sum of the magnitudes */
      double want = h[b * D + i], mag = fabs(want);
      for (int k = 0; k < D; k++) {
        double t = (double)h[b * D + k] * mlk_bf16_to_f32(w2[i * D + k]);
        want += t;
        mag += fabs(t);
      }
      double err = fabs(y[b * D + i] - want) / (mag + 1e-30);
      worst = err > worst ? err : worst;
      expect(e[b * D + i] == mlk_bf16_to_f32(emb[token * D + i]), "e is the row of emb tok names");
    }
  }
  expect(worst < 1e-5, "second computes matvec(h, w2) + h from the h first left");
  printf("ok: batch %lld: second read h (rel err %.2g), third gathered emb[%d]\n", (long long)batch,
         worst, token);
}

int main(int argc, char **argv) {
  uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : 0;
  if (seed == 0)
    seed = (uint64_t)time(NULL);
  rng = seed * 0x9e3779b97f4a7c15ull | 1;
  mlk_sim_options opt = {.threads = 4, .seed = seed, .mode = MLK_SIM_DETERMINISTIC, .explore = 8};
  mlk_backend *be;
  mlk_model *m;
  if (mlk_backend_create_cpu(&opt, &be) != MLK_OK || mlk_model_create(be, &handoff_desc, &m) != MLK_OK) {
    printf("FAIL: create: %s\n", mlk_last_error());
    return 1;
  }
  static uint16_t w1[D * D], w2[D * D], emb[R * D];
  for (int i = 0; i < D * D; i++) {
    w1[i] = mlk_f32_to_bf16(uniform() / 4);
    w2[i] = mlk_f32_to_bf16(uniform() / 4);
  }
  for (int i = 0; i < R * D; i++)
    emb[i] = mlk_f32_to_bf16(uniform());
  set(m, "w1", w1, sizeof w1);
  set(m, "w2", w2, sizeof w2);
  set(m, "emb", emb, sizeof emb);
  set_wv(m, 3);
  set_x(m, 2);

  refused(m, "second", "reads output 'h', which megakernel 'first' writes and has not written yet",
          "first has not run");
  if (run(m, "first") && run(m, "second") && run(m, "third"))
    check_second_third(m, w2, emb, 2, 3);

  set_x(m, 3);
  refused(m, "second", "which megakernel 'first' wrote for 2 rows, the batch is now 3: run 'first' "
          "again", "first ran for fewer rows");
  if (run(m, "first") && run(m, "second") && run(m, "third"))
    check_second_third(m, w2, emb, 3, 3);

  set_wv(m, 12);
  if (run(m, "first"))
    refused(m, "third", "output 'tok' row 0 is 12: op 'gather", "a token out of emb's 8 rows");

  mlk_model_free(m);
  mlk_backend_free(be);
  if (failures) {
    printf("%d failures (seed %llu)\n", failures, (unsigned long long)seed);
    return 1;
  }
  printf("ok: megakernels hand h and tok to each other on the device (seed %llu)\n",
         (unsigned long long)seed);
  return 0;
}
