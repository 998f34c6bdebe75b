/* eltwise.c: elementwise tiles over f32 vectors (relu, silu, add, mul). */
#include "mlk_tiles.h"

void mlk_tile_eltwise(float *out, const float *a, const float *b, int64_t i0, int64_t count,
                      int fn) {
  for (int64_t i = i0 + mlk_tid(); i < i0 + count; i += MLK_BLOCK_THREADS) {
    float v = a[i];
    if (fn == MLK_FN_ADD)
      v = v + b[i];
    else if (fn == MLK_FN_MUL)
      v = v * b[i];
    else
      v = mlk_dev_act(v, fn);
    out[i] = v;
  }
}
