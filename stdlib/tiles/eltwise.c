/* eltwise.c: elementwise tiles over batched f32 rows (copy, relu, silu, add, mul, each with an
 * optional bf16 bias vector that every row adds first) and the embedding gather. Output columns
 * [c0, c0 + count) of every batch row; the batch rows and columns are flattened over the block so
 * that a small tile still keeps every thread busy. */
#include "mlk_tiles.h"

/* The activation, as the reference (mlk_ref_relu lets NaN through, unlike mlk_dev_act's relu). */
static inline float act(float v, int fn) {
  if (fn == MLK_FN_RELU)
    return v < 0.0f ? 0.0f : v;
  return mlk_dev_act(v, fn);
}

void mlk_tile_eltwise(float *out, const float *a, const float *c, const uint16_t *bias,
                      int64_t n, int64_t c0, int64_t count, int64_t batch, int fn) {
  if (count <= 0 || batch <= 0)
    return;
  int binary = fn == MLK_FN_ADD || fn == MLK_FN_MUL;
  /* 32-bit indices over the task's batch x count elements (far below 2^32) */
  uint32_t total = (uint32_t)(batch * count), cnt = (uint32_t)count;
  for (uint32_t e = mlk_tid(); e < total; e += MLK_BLOCK_THREADS) {
    uint32_t b = e / cnt, j = e - b * cnt;
    int64_t i = (int64_t)b * n + c0 + j;
    float v = a[i];
    if (bias) /* uniform; a weight: the read-only path */
      v += mlk_bf16_lo(mlk_ld_weight16(bias + c0 + j));
    if (binary)
      v = fn == MLK_FN_ADD ? v + c[i] : v * c[i];
    else
      v = act(v, fn);
    out[i] = v;
  }
}

static inline float ld_sys_f32(const float *p) {
#if defined(__NVPTX__)
  float v;
  __asm__ volatile("ld.relaxed.sys.global.f32 %0, [%1];" : "=f"(v) : "l"(p) : "memory");
  return v;
#else
  union { uint32_t u; float f; } c = {__atomic_load_n((const uint32_t *)(const void *)p, __ATOMIC_RELAXED)};
  return c.f;
#endif
}

void mlk_tile_allreduce(float *out, const uint64_t *xs, int64_t ranks, int64_t n, int64_t c0,
                        int64_t count, int64_t batch) {
  if (count <= 0 || batch <= 0)
    return;
  uint32_t total = (uint32_t)(batch * count), cnt = (uint32_t)count;
  for (uint32_t e = mlk_tid(); e < total; e += MLK_BLOCK_THREADS) {
    uint32_t b = e / cnt, j = e - b * cnt;
    int64_t i = (int64_t)b * n + c0 + j;
    float s = ld_sys_f32((const float *)(uintptr_t)xs[0] + i);
    for (int64_t r = 1; r < ranks; r++)
      s += ld_sys_f32((const float *)(uintptr_t)xs[r] + i);
    out[i] = s;
  }
}

void mlk_tile_gather(float *out, const int32_t *ids, const uint16_t *table, int64_t n, int64_t c0,
                     int64_t count, int64_t batch) {
  for (int64_t b = 0; b < batch; b++) {
    const uint16_t *row = table + (int64_t)ids[b] * n;
    for (int64_t j = c0 + mlk_tid(); j < c0 + count; j += MLK_BLOCK_THREADS)
      out[b * n + j] = mlk_bf16_lo(mlk_ld_weight16(row + j));
  }
}
