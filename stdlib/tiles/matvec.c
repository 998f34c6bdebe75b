/* matvec.c: the decode GEMV tile, bf16 weights with f32 accumulation.
 *
 * Memory-bound: each warp owns one output row at a time and streams it with 16-byte
 * non-coherent loads, UNROLL of them in flight per lane before the first use. The input vector
 * is staged once per task in shared memory (it was written by earlier tasks, so it is read with
 * ordinary loads, never the non-coherent path). Rows whose length is not a multiple of 8 take a
 * scalar path.
 */
#include "mlk_tiles.h"

#define WARPS (MLK_BLOCK_THREADS / 32)
#define UNROLL 4

static MLK_SHARED float xs[MLK_MATVEC_MAX_K];

typedef struct U4 {
  uint32_t a, b, c, d;
} U4;

/* Weights never change during a launch: the read-only path, and free to be scheduled early. */
static inline U4 ld_weights(const uint16_t *p) {
  U4 r;
  __asm__("{\n\t.reg .u64 g;\n\tcvta.to.global.u64 g, %4;\n\t"
          "ld.global.nc.v4.u32 {%0, %1, %2, %3}, [g];\n\t}"
          : "=r"(r.a), "=r"(r.b), "=r"(r.c), "=r"(r.d)
          : "l"(p));
  return r;
}

static inline float dot8(U4 w, const MLK_SHARED float *x) {
  float s = mlk_bf16_lo(w.a) * x[0];
  s += mlk_bf16_hi(w.a) * x[1];
  s += mlk_bf16_lo(w.b) * x[2];
  s += mlk_bf16_hi(w.b) * x[3];
  s += mlk_bf16_lo(w.c) * x[4];
  s += mlk_bf16_hi(w.c) * x[5];
  s += mlk_bf16_lo(w.d) * x[6];
  s += mlk_bf16_hi(w.d) * x[7];
  return s;
}

static inline float warp_sum(float v) {
  for (int off = 16; off > 0; off >>= 1)
    v += __nvvm_shfl_sync_bfly_f32(0xffffffffu, v, off, 0x1f);
  return v;
}

void mlk_tile_matvec(float *out, const float *x, const uint16_t *W, const float *res, int64_t n,
                     int64_t k, int64_t row0, int64_t rows, int fn) {
  (void)n;
  uint32_t tid = mlk_tid();
  for (int64_t i = tid; i < k; i += MLK_BLOCK_THREADS)
    xs[i] = x[i];
  __nvvm_barrier_sync(0);

  uint32_t warp = tid >> 5, lane = tid & 31;
  int vec = (k & 7) == 0;
  for (int64_t r = warp; r < rows; r += WARPS) {
    const uint16_t *wr = W + (row0 + r) * k;
    float acc = 0.0f;
    if (vec) {
      int64_t chunks = k >> 3;
      for (int64_t c = lane; c < chunks; c += 32 * UNROLL) {
        U4 w[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; u++)
          if (c + 32 * u < chunks)
            w[u] = ld_weights(wr + (c + 32 * u) * 8);
#pragma unroll
        for (int u = 0; u < UNROLL; u++)
          if (c + 32 * u < chunks)
            acc += dot8(w[u], xs + (c + 32 * u) * 8);
      }
    } else {
      for (int64_t i = lane; i < k; i += 32) {
        uint32_t h = wr[i];
        acc += mlk_bf16_lo(h) * xs[i];
      }
    }
    acc = warp_sum(acc);
    if (lane == 0) {
      float v = mlk_dev_act(acc, fn);
      if (res)
        v += res[row0 + r];
      out[row0 + r] = v;
    }
  }
  /* xs is reused by the next task on this block: nobody may still be reading it. */
  __nvvm_barrier_sync(0);
}
