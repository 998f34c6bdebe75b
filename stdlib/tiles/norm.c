/* norm.c: the whole-row tiles, one task for all batch rows: rmsnorm and argmax; and the split
 * argmax: a task per chunk of every row (a warp per row), then a reduce of the chunks' partials.
 *
 * Each row is one block reduction: per-thread partials, a warp butterfly, then the 8 warp results
 * through shared memory. The scratch slots alternate between even and odd rows, so a row needs a
 * single barrier: the slots a row writes were last read before the previous row's barrier.
 */
#include "mlk_tiles.h"

#define WARPS (MLK_BLOCK_THREADS / 32)

extern MLK_SHARED float mlk_tile_smem[MLK_MATVEC_MAX_K] __attribute__((aligned(16)));

static inline float warp_sum(float v) {
  for (int off = 16; off > 0; off >>= 1)
    v += __nvvm_shfl_sync_bfly_f32(0xffffffffu, v, off, 0x1f);
  return v;
}

void mlk_tile_rmsnorm(float *out, const float *x, const uint16_t *w, float eps, int64_t n,
                      int64_t batch) {
  uint32_t tid = mlk_tid(), warp = tid >> 5, lane = tid & 31;
  if (n <= 0)
    return;
  for (int64_t b = 0; b < batch; b++) {
    const float *xr = x + b * n;
    float s = 0.0f;
    for (int64_t i = tid; i < n; i += MLK_BLOCK_THREADS) {
      float v = xr[i];
      s += v * v;
    }
    s = warp_sum(s);
    MLK_SHARED float *red = mlk_tile_smem + (b & 1) * WARPS;
    if (lane == 0)
      red[warp] = s;
    __nvvm_barrier_sync(0);
    float t = 0.0f;
#pragma unroll
    for (int i = 0; i < WARPS; i++)
      t += red[i];
    float rs = 1.0f / __builtin_sqrtf(t / (float)n + eps);
    for (int64_t i = tid; i < n; i += MLK_BLOCK_THREADS)
      out[b * n + i] = xr[i] * rs * mlk_bf16_lo(mlk_ld_weight16(w + i));
  }
}

#define NONE 0x7fffffff
#define ARGMAX_U 8 /* 16-byte loads of a thread in flight */

static inline float i2f(int32_t i) {
  union { int32_t i; float f; } c = {i};
  return c.f;
}
static inline int32_t f2i(float f) {
  union { float f; int32_t i; } c = {f};
  return c.i;
}

/* (v, i) beats (bv, bi): larger, or equal with a smaller index. NaN never gets in (see below). */
static inline int better(float v, int32_t i, float bv, int32_t bi) {
  return v > bv || (v == bv && i < bi);
}

/* The best (value, index) of one thread's share of columns [c0, c0 + cn) of row xr: the columns
 * first + j * stride in increasing order, so a tie keeps the earlier one. The first non-NaN
 * value is always taken (so -inf counts), later ones only when strictly larger; NaN compares
 * false everywhere. A row is one long read (a vocabulary of 128K logits is 512 KB): groups of 4
 * columns with 16-byte loads, ARGMAX_U groups of a thread in flight, where the columns are
 * 16-byte aligned, else every load would wait for the one before. Indices are the row's. */
static inline __attribute__((always_inline)) void
scan_best(const float *xr, int64_t c0, int64_t cn, uint32_t first, uint32_t stride, float *v,
          int32_t *idx) {
  float bv = -__builtin_inff();
  int32_t bi = NONE;
  const float *p = xr + c0;
  int64_t done = 0;
  if ((((uintptr_t)p) & 15) == 0) {
    typedef float F4 __attribute__((ext_vector_type(4)));
    int64_t groups = cn >> 2;
    for (int64_t g0 = first; g0 < groups; g0 += ARGMAX_U * (int64_t)stride) {
      F4 q[ARGMAX_U];
#pragma unroll
      for (int u = 0; u < ARGMAX_U; u++)
        if (g0 + u * (int64_t)stride < groups)
          q[u] = ((const F4 *)p)[g0 + u * (int64_t)stride];
#pragma unroll
      for (int u = 0; u < ARGMAX_U; u++) {
        int64_t g = g0 + u * (int64_t)stride;
        if (g < groups) {
          float e[4] = {q[u].x, q[u].y, q[u].z, q[u].w};
#pragma unroll
          for (int j = 0; j < 4; j++)
            if (e[j] > bv || (bi == NONE && e[j] == e[j])) {
              bv = e[j];
              bi = (int32_t)(c0 + 4 * g + j);
            }
        }
      }
    }
    done = groups << 2;
  }
  for (int64_t i = done + first; i < cn; i += stride) {
    float e = p[i];
    if (e > bv || (bi == NONE && e == e)) {
      bv = e;
      bi = (int32_t)(c0 + i);
    }
  }
  *v = bv;
  *idx = bi;
}

/* The warp's best of its lanes' (value, index): the larger value, the smaller index among equal
 * ones (NONE, from a lane without a value, loses to any index). Every lane gets it. */
static inline void warp_best(float *v, int32_t *idx) {
  float bv = *v;
  int32_t bi = *idx;
  for (int off = 16; off > 0; off >>= 1) {
    float ov = __nvvm_shfl_sync_bfly_f32(0xffffffffu, bv, off, 0x1f);
    int32_t oi = __nvvm_shfl_sync_bfly_i32(0xffffffffu, bi, off, 0x1f);
    if (better(ov, oi, bv, bi)) {
      bv = ov;
      bi = oi;
    }
  }
  *v = bv;
  *idx = bi;
}

void mlk_tile_argmax(int32_t *out, const float *x, int64_t k, int64_t batch) {
  uint32_t tid = mlk_tid(), warp = tid >> 5, lane = tid & 31;
  for (int64_t b = 0; b < batch; b++) {
    float bv;
    int32_t bi;
    scan_best(x + b * k, 0, k, tid, MLK_BLOCK_THREADS, &bv, &bi);
    warp_best(&bv, &bi);
    /* The slots hold floats only (indices by their bits), so the scratch is never type-punned. */
    MLK_SHARED float *rv = mlk_tile_smem + (b & 1) * 2 * WARPS;
    if (lane == 0) {
      rv[warp] = bv;
      rv[WARPS + warp] = i2f(bi);
    }
    __nvvm_barrier_sync(0);
    if (tid == 0) {
      bv = rv[0];
      bi = f2i(rv[WARPS]);
      for (int i = 1; i < WARPS; i++) {
        float v = rv[i];
        int32_t j = f2i(rv[WARPS + i]);
        if (better(v, j, bv, bi)) {
          bv = v;
          bi = j;
        }
      }
      /* every value NaN (or k == 0): index 0 */
      out[b] = bi == NONE ? 0 : bi;
    }
  }
}

void mlk_tile_argmax_part(float *part, const float *x, int64_t k, int64_t split, int64_t chunk,
                          int64_t batch) {
  uint32_t tid = mlk_tid(), warp = tid >> 5, lane = tid & 31;
  int64_t len = mlk_argmax_chunk(k, split), c0 = chunk * len;
  int64_t cn = c0 >= k ? 0 : k - c0 < len ? k - c0 : len;
  for (int64_t b = warp; b < batch; b += WARPS) { /* a warp per row */
    float v;
    int32_t i;
    scan_best(x + b * k, c0, cn, lane, 32, &v, &i);
    warp_best(&v, &i);
    if (lane == 0) {
      part[b * 2 * split + 2 * chunk] = v;
      part[b * 2 * split + 2 * chunk + 1] = i2f(i);
    }
  }
}

void mlk_tile_argmax_reduce(int32_t *out, const float *part, int64_t split, int64_t batch) {
  uint32_t tid = mlk_tid(), warp = tid >> 5, lane = tid & 31;
  for (int64_t b = warp; b < batch; b += WARPS) { /* a warp per row, a lane per chunk */
    const float *pr = part + b * 2 * split;
    float bv = -__builtin_inff();
    int32_t bi = NONE;
    for (int64_t c = lane; c < split; c += 32) { /* chunks in order: indices increase */
      float v = pr[2 * c];
      int32_t i = f2i(pr[2 * c + 1]);
      if (better(v, i, bv, bi)) {
        bv = v;
        bi = i;
      }
    }
    warp_best(&bv, &bi);
    if (lane == 0)
      out[b] = bi == NONE ? 0 : bi; /* every value NaN: index 0 */
  }
}
