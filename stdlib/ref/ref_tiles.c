/* ref_tiles.c: plain C versions of the device tiles in stdlib/tiles/ (see mlk_ref.h).
 *
 * The CPU simulator calls these for each task's slice of the output, and tests call them over the
 * whole range as a sequential reference. They accumulate in f32 like the device tiles (the device
 * reduces in a different order, so comparisons use a relative tolerance, never equality). This file
 * depends on nothing but libm so that stdlib can be used without the runtime.
 */
#include <math.h>
#include <string.h>

#include "mlk_ref.h"

static float bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* NaN goes through (a comparison with NaN is false), so a poisoned input stays visible. */
float mlk_ref_relu(float v) { return v < 0.0f ? 0.0f : v; }

float mlk_ref_silu(float v) { return v / (1.0f + expf(-v)); }

static float activate(float v, int fn) {
  switch (fn) {
  case MLK_FN_RELU: return mlk_ref_relu(v);
  case MLK_FN_SILU: return mlk_ref_silu(v);
  default: return v;
  }
}

void mlk_ref_matvec(float *out, const float *x, const uint16_t *W, const float *res, int64_t n,
                    int64_t k, int64_t row0, int64_t rows, int fn) {
  for (int64_t r = row0; r < row0 + rows && r < n; r++) {
    const uint16_t *w = W + r * k;
    float acc = 0.0f;
    for (int64_t i = 0; i < k; i++)
      acc += bf16_to_f32(w[i]) * x[i];
    acc = activate(acc, fn);
    /* The residual is added after the activation: out = act(W x) + res. */
    if (res)
      acc += res[r];
    out[r] = acc;
  }
}

void mlk_ref_eltwise(float *out, const float *a, const float *b, int64_t i0, int64_t count, int fn) {
  for (int64_t i = i0; i < i0 + count; i++) {
    switch (fn) {
    case MLK_FN_ADD: out[i] = a[i] + b[i]; break;
    case MLK_FN_MUL: out[i] = a[i] * b[i]; break;
    case MLK_FN_RELU: out[i] = mlk_ref_relu(a[i]); break;
    case MLK_FN_SILU: out[i] = mlk_ref_silu(a[i]); break;
    default: out[i] = a[i]; break;
    }
  }
}
