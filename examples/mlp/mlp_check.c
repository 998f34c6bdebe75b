/* mlp_check.c: the mlp example's sequential reference and the check used by the demo and tests. */
#include "mlp_check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t next(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* Uniform in [-1, 1). */
static float uniform(uint64_t *s) { return (float)((next(s) >> 11) * 0x1.0p-53 * 2.0 - 1.0); }

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* y = W2 relu(W1 x) + x in double, from the same bf16 weights. */
static void reference(const uint16_t *w1, const uint16_t *w2, const float *x, double *y) {
  double *h = malloc(sizeof(double) * MLP_H);
  for (int r = 0; r < MLP_H; r++) {
    double s = 0;
    for (int k = 0; k < MLP_D; k++)
      s += (double)mlk_bf16_to_f32(w1[(size_t)r * MLP_D + k]) * x[k];
    h[r] = s > 0 ? s : 0;
  }
  for (int r = 0; r < MLP_D; r++) {
    double s = 0;
    for (int k = 0; k < MLP_H; k++)
      s += (double)mlk_bf16_to_f32(w2[(size_t)r * MLP_H + k]) * h[k];
    y[r] = s + x[r];
  }
  free(h);
}

mlk_status mlp_check(mlk_backend *be, uint64_t seed, int runs, mlp_check_result *res) {
  memset(res, 0, sizeof *res);
  uint64_t s = seed ? seed : 1;
  uint16_t *w1 = malloc(sizeof(uint16_t) * MLP_H * MLP_D);
  uint16_t *w2 = malloc(sizeof(uint16_t) * MLP_D * MLP_H);
  float *x = malloc(sizeof(float) * MLP_D), *y = malloc(sizeof(float) * MLP_D);
  double *ref = malloc(sizeof(double) * MLP_D), *ms = malloc(sizeof(double) * (runs + 1));
  /* scaled so activations stay O(1): entries ~ U(-1,1)/sqrt(K) */
  for (size_t i = 0; i < (size_t)MLP_H * MLP_D; i++) {
    w1[i] = mlk_f32_to_bf16(uniform(&s) / 32.0f);
    w2[i] = mlk_f32_to_bf16(uniform(&s) / 64.0f);
  }
  mlp_model *m = NULL;
  mlk_status st = mlp_create(be, &m);
  if (st == MLK_OK)
    st = mlp_set_W1(m, w1);
  if (st == MLK_OK)
    st = mlp_set_W2(m, w2);
  int y_index = m ? mlk_model_find_tensor(m, "y") : -1;
  for (int run = 0; run < runs && st == MLK_OK; run++) {
    for (int i = 0; i < MLP_D; i++)
      x[i] = uniform(&s);
    if ((st = mlp_set_x(m, x)) != MLK_OK)
      break;
    if ((st = mlk_model_fill_tensor(m, y_index, 0xff)) != MLK_OK) /* poison: NaN */
      break;
    double t0 = now_ms();
    if ((st = mlp_forward(m)) != MLK_OK)
      break;
    ms[run] = now_ms() - t0;
    if ((st = mlp_get_y(m, y)) != MLK_OK)
      break;
    reference(w1, w2, x, ref);
    double num = 0, den = 0;
    for (int i = 0; i < MLP_D; i++) {
      if (isnan(y[i]))
        res->unwritten++;
      num += (y[i] - ref[i]) * (y[i] - ref[i]);
      den += ref[i] * ref[i];
    }
    double rel = sqrt(num / den);
    if (!(rel <= res->max_rel_l2) || isnan(rel))
      res->max_rel_l2 = rel;
  }
  if (st == MLK_OK && runs > 0) {
    qsort(ms, runs, sizeof *ms, cmp_double);
    res->median_ms = ms[runs / 2];
  }
  mlp_free(m);
  free(w1);
  free(w2);
  free(x);
  free(y);
  free(ref);
  free(ms);
  return st;
}
