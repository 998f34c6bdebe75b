/* matvec.c: the decode GEMV tile (bf16 weights, f32 accumulation) with an optional fused rmsnorm
 * of its input rows, and the one shared-memory buffer that every tile uses for scratch.
 *
 * Memory-bound on W: the task's weight rows are streamed once per pass of up to BMAX batch rows,
 * whatever k is. A pass stages its x rows (normalized when norm_w is set) in shared memory one
 * column chunk at a time ([nb][KC] floats, KC as large as the buffer allows: one chunk for
 * nb * k <= ~12K), and every warp accumulates its weight rows over the chunk for all nb rows.
 * Partial sums of a multi-chunk pass are kept in `out` itself (each element read back by the
 * thread that wrote it); the epilogue (activation, residual) runs on the last chunk.
 *
 * x was written by earlier tasks: ordinary loads, never the non-coherent path. Weights: 16-byte
 * ld.global.nc, several in flight per lane. With more than one batch row a warp works on R = 2
 * weight rows at once, so each x value read from shared memory feeds two rows and shared-memory
 * bandwidth keeps up with the weight stream. The R x NB sums of a warp are reduced with a
 * transposing butterfly (R*NB - 1 shuffles instead of 5 per sum) that leaves sum j in lane j.
 * Rows with k % 8 != 0 (or a misaligned W) take a scalar path.
 *
 * The variants (batch rows per pass NB, rows per warp R, loads per row in flight U) are separate
 * functions: in a megakernel with many matvec ops the tile is not inlined, ptxas compiles it as a
 * called (ABI) function, and the variants must then stay clear of spills one by one; together in
 * one body they spilled. NB/R/U: 1/1/8, 1/2/6 (a task of 16+ rows), 1/4/4 (32+ rows: 16 weight
 * loads in flight per lane, so that one block per SM keeps enough bytes in flight), 2/2/4,
 * 4/2/4, 8/2/2, and 8/1/1 for the scalar path.
 *
 * Staged layout (vector path): a chunk row takes KC floats (a multiple of 64), and inside each
 * group of 64 the first halves (elements 0..3) of its eight 8-element chunks come first, then the
 * second halves: a quarter warp (8 lanes, 8 consecutive chunks) then reads 128 contiguous bytes per
 * 16-byte load, free of bank conflicts.
 */
#include "mlk_tiles.h"

#define WARPS (MLK_BLOCK_THREADS / 32)
#define BMAX 8                         /* batch rows per pass over W */
#define RED (WARPS * BMAX)             /* norm reduction slots at the end of the buffer */
#define STAGE (MLK_MATVEC_MAX_K - RED) /* floats available for staged x */

/* The shared scratch of all tiles. Static shared variables of different files add up in the
 * linked kernel, and 48 KiB is the static limit, so this is the only one: every tile that needs
 * scratch uses it (declared extern there). A block runs one tile at a time, and the skeleton puts
 * a block barrier (mlk_dev_barrier) between consecutive tiles. */
MLK_SHARED float mlk_tile_smem[MLK_MATVEC_MAX_K] __attribute__((aligned(16)));

typedef struct U4 {
  uint32_t a, b, c, d;
} U4;

typedef float F4 __attribute__((ext_vector_type(4)));

/* Weights never change during a launch: the read-only path, and free to be scheduled early. */
static inline U4 ld_weights(const uint16_t *p) {
  U4 r;
#if defined(__NVPTX__)
  __asm__("{\n\t.reg .u64 g;\n\tcvta.to.global.u64 g, %4;\n\t"
          "ld.global.nc.v4.u32 {%0, %1, %2, %3}, [g];\n\t}"
          : "=r"(r.a), "=r"(r.b), "=r"(r.c), "=r"(r.d)
          : "l"(p));
#else
  const uint32_t *q = (const uint32_t *)(const void *)p;
  r.a = q[0], r.b = q[1], r.c = q[2], r.d = q[3];
#endif
  return r;
}

/* The activation, as the reference (mlk_ref_relu lets NaN through, unlike mlk_dev_act's relu). */
static inline float act(float v, int fn) {
  if (fn == MLK_FN_RELU)
    return v < 0.0f ? 0.0f : v;
  return mlk_dev_act(v, fn);
}

static inline float bf16f(uint32_t h) { return mlk_bf16_lo(h); }

/* c ? a : b, opaque to the optimizer: a plain select between two elements of a register array
 * gets folded into a load through a selected address, which moves the array to local memory. */
static inline float sel(int c, float a, float b) {
#if defined(__NVPTX__)
  float r;
  __asm__("{\n\t.reg .pred p;\n\tsetp.ne.s32 p, %3, 0;\n\tselp.f32 %0, %1, %2, p;\n\t}"
          : "=f"(r)
          : "f"(a), "f"(b), "r"(c));
  return r;
#else
  return c ? a : b;
#endif
}

/* Sums V (a power of two <= 32, a constant after inlining) values over the warp; returns, in lane
 * l, the total of value l % V. V - 1 + log2(32 / V) shuffles. */
static inline __attribute__((always_inline)) float reduce_scatter(float *v, int V, uint32_t lane) {
#pragma unroll
  for (int off = V / 2; off >= 1; off >>= 1) {
    int up = (lane & (uint32_t)off) != 0;
#pragma unroll
    for (int j = 0; j < off; j++) {
      float send = sel(up, v[j], v[j + off]);
      float keep = sel(up, v[j + off], v[j]);
      v[j] = keep + __nvvm_shfl_sync_bfly_f32(0xffffffffu, send, off, 0x1f);
    }
  }
  float s = v[0];
#pragma unroll
  for (int off = V; off < 32; off <<= 1)
    s += __nvvm_shfl_sync_bfly_f32(0xffffffffu, s, off, 0x1f);
  return s;
}

/* Position of element i of a staged chunk row in the bank-conflict-free layout (vector path). */
static inline uint32_t perm(uint32_t i) {
  return (i & ~63u) | (((i >> 2) & 1u) << 5) | (((i >> 3) & 7u) << 2) | (i & 3u);
}

static inline float dot8(U4 w, F4 x0, F4 x1) {
  float s = mlk_bf16_lo(w.a) * x0.x;
  s += mlk_bf16_hi(w.a) * x0.y;
  s += mlk_bf16_lo(w.b) * x0.z;
  s += mlk_bf16_hi(w.b) * x0.w;
  s += mlk_bf16_lo(w.c) * x1.x;
  s += mlk_bf16_hi(w.c) * x1.y;
  s += mlk_bf16_lo(w.d) * x1.z;
  s += mlk_bf16_hi(w.d) * x1.w;
  return s;
}

typedef struct Mv {
  float *out;
  const float *x;
  const uint16_t *W;
  const float *res;
  int64_t n, k, row0, rows, b0, nb;
  int64_t kc0, kn, KC; /* this chunk: columns [kc0, kc0 + kn), staged at row stride KC */
  int fn, first, last;
} Mv;

/* Writes sum s of weight row `row`, pass row b: partial, or the finished element. */
static inline __attribute__((always_inline)) void emit(const Mv *m, int64_t row, int64_t b,
                                                       float s) {
  int64_t o = (m->b0 + b) * m->n + row;
  float v = s;
  if (!m->first)
    v += m->out[o];
  else if (m->res && m->fn == MLK_FN_NONE)
    v += m->res[o]; /* no activation: the residual can go in first (safe when res == out) */
  if (m->last) {
    if (m->fn == MLK_FN_MUL) {
      v *= m->res[o]; /* the gated product */
    } else {
      v = act(v, m->fn);
      if (m->res && m->fn != MLK_FN_NONE)
        v += m->res[o];
    }
  }
  m->out[o] = v;
}

/* Vector path of one chunk: R weight rows per warp at a time, NB >= nb batch rows (R, NB
 * constants after inlining; R * NB <= 32). */
static inline __attribute__((always_inline)) void chunk_vec(const Mv *m, int NB, int R, int U,
                                                            uint32_t warp, uint32_t lane) {
  int64_t chunks = m->kn >> 3, nb = m->nb;
  for (int64_t rg = (int64_t)warp * R; rg < m->rows; rg += WARPS * R) {
    int64_t rn = m->rows - rg < R ? m->rows - rg : R;
    const uint16_t *wr = m->W + (m->row0 + rg) * m->k + m->kc0;
    float acc[32];
#pragma unroll
    for (int j = 0; j < R * NB; j++)
      acc[j] = 0.0f;
    for (int64_t c = lane; c < chunks; c += 32 * U) {
      U4 w[4][8];
#pragma unroll
      for (int u = 0; u < U; u++)
#pragma unroll
        for (int i = 0; i < R; i++)
          if (c + 32 * u < chunks && i < rn)
            w[i][u] = ld_weights(wr + i * m->k + (c + 32 * u) * 8);
#pragma unroll
      for (int u = 0; u < U; u++) {
        if (c + 32 * u < chunks) {
          uint32_t cc = (uint32_t)(c + 32 * u);
          uint32_t off = ((cc >> 3) << 6) | ((cc & 7u) << 2);
#pragma unroll
          for (int b = 0; b < NB; b++) {
            if (b < nb) {
              const MLK_SHARED float *xr = mlk_tile_smem + b * m->KC + off;
              F4 x0 = *(const MLK_SHARED F4 *)xr;
              F4 x1 = *(const MLK_SHARED F4 *)(xr + 32);
#pragma unroll
              for (int i = 0; i < R; i++)
                if (i < rn)
                  acc[i * NB + b] += dot8(w[i][u], x0, x1);
            }
          }
        }
      }
    }
    float s = reduce_scatter(acc, R * NB, lane);
    int64_t i = lane / NB, b = lane % NB;
    if (lane < (uint32_t)(R * NB) && i < rn && b < nb)
      emit(m, m->row0 + rg + i, b, s);
  }
}

/* Scalar path of one chunk (k % 8 != 0 or W misaligned): a weight row per warp, plain layout. */
static inline __attribute__((always_inline)) void chunk_scalar(const Mv *m, uint32_t warp,
                                                               uint32_t lane) {
  int64_t nb = m->nb;
  for (int64_t r = warp; r < m->rows; r += WARPS) {
    const uint16_t *wr = m->W + (m->row0 + r) * m->k + m->kc0;
    float acc[BMAX];
#pragma unroll
    for (int b = 0; b < BMAX; b++)
      acc[b] = 0.0f;
    for (int64_t i = lane; i < m->kn; i += 32) {
      float w = bf16f(mlk_ld_weight16(wr + i));
#pragma unroll
      for (int b = 0; b < BMAX; b++)
        if (b < nb)
          acc[b] += w * mlk_tile_smem[b * m->KC + i];
    }
    float s = reduce_scatter(acc, BMAX, lane);
    if (lane < nb)
      emit(m, m->row0 + r, lane, s);
  }
}

/* Direct path, for the one case staging cannot serve: res == out with an activation and a row too
 * long for one chunk (partial sums in `out` would overwrite the residual). x from global memory. */
static inline __attribute__((always_inline)) void
rows_direct(const Mv *m, const uint16_t *norm_w, const float *rs, uint32_t warp, uint32_t lane) {
  for (int64_t r = warp; r < m->rows; r += WARPS) {
    const uint16_t *wr = m->W + (m->row0 + r) * m->k;
#pragma unroll
    for (int b = 0; b < BMAX; b++) {
      if (b < m->nb) {
        const float *xr = m->x + (m->b0 + b) * m->k;
        float acc = 0.0f;
        for (int64_t i = lane; i < m->k; i += 32) {
          float v = xr[i];
          if (norm_w)
            v = v * rs[b] * bf16f(mlk_ld_weight16(norm_w + i));
          acc += bf16f(mlk_ld_weight16(wr + i)) * v;
        }
        for (int off = 16; off > 0; off >>= 1)
          acc += __nvvm_shfl_sync_bfly_f32(0xffffffffu, acc, off, 0x1f);
        if (lane == 0)
          emit(m, m->row0 + r, b, acc);
      }
    }
  }
}

/* 1 / sqrt(mean(x^2) + eps) of the pass rows b < nb, into rs[] (every thread). One block
 * reduction through the RED slots at the end of the buffer. */
static inline __attribute__((always_inline)) void
norm_scales(const float *x, int64_t k, float eps, int64_t b0, int64_t nb, float *rs, uint32_t tid) {
  float ss[BMAX];
#pragma unroll
  for (int b = 0; b < BMAX; b++) {
    ss[b] = 0.0f;
    if (b < nb)
      for (int64_t i = tid; i < k; i += MLK_BLOCK_THREADS) {
        float v = x[(b0 + b) * k + i];
        ss[b] += v * v;
      }
  }
  uint32_t lane = tid & 31, warp = tid >> 5;
  float s = reduce_scatter(ss, BMAX, lane);
  MLK_SHARED float *red = mlk_tile_smem + STAGE;
  if (lane < BMAX)
    red[warp * BMAX + lane] = s;
  __nvvm_barrier_sync(0);
#pragma unroll
  for (int b = 0; b < BMAX; b++) {
    float t = 0.0f;
#pragma unroll
    for (int w = 0; w < WARPS; w++)
      t += red[w * BMAX + b];
    rs[b] = 1.0f / __builtin_sqrtf(t / (float)k + eps);
  }
}

/* One pass: nb <= NB batch rows over all of k, chunk by chunk (stage, then accumulate). */
static inline __attribute__((always_inline)) void pass(Mv *m, int VEC, int NB, int R, int U,
                                                       const uint16_t *norm_w, const float *rs) {
  uint32_t tid = mlk_tid_here(), warp = tid >> 5, lane = tid & 31;
  int64_t k = m->k, KC = m->KC, nb = m->nb;
  for (int64_t kc0 = 0; kc0 < k; kc0 += KC) {
    int64_t kn = k - kc0 < KC ? k - kc0 : KC;
    m->kc0 = kc0, m->kn = kn, m->first = kc0 == 0, m->last = kc0 + kn >= k;
    if (kc0 > 0)
      __nvvm_barrier_sync(0); /* the previous chunk is done */
#pragma unroll
    for (int b = 0; b < NB; b++) {
      if (b < nb) {
        const float *xr = m->x + (m->b0 + b) * k + kc0;
        MLK_SHARED float *dst = mlk_tile_smem + b * KC;
        for (int64_t i = tid; i < kn; i += MLK_BLOCK_THREADS) {
          float v = xr[i];
          if (norm_w)
            v = v * rs[b] * bf16f(mlk_ld_weight16(norm_w + kc0 + i));
          dst[VEC ? (int64_t)perm((uint32_t)i) : i] = v;
        }
      }
    }
    __nvvm_barrier_sync(0);
    if (VEC)
      chunk_vec(m, NB, R, U, warp, lane);
    else
      chunk_scalar(m, warp, lane);
  }
}

/* All passes over the batch with one variant (VEC, NB, R, U), chosen from min(batch, BMAX). */
static inline __attribute__((always_inline)) void run(Mv *m, int VEC, int NB, int R, int U,
                                                      const uint16_t *norm_w, float eps,
                                                      int64_t batch, int64_t kp, int alias) {
  uint32_t tid = mlk_tid_here();
  const float *x = m->x;
  int64_t k = m->k;
  for (int64_t b0 = 0; b0 < batch; b0 += m->nb) {
    int64_t nb = batch - b0 < NB ? batch - b0 : NB;
    if (alias && nb * kp > STAGE)
      nb = STAGE / kp > 0 ? STAGE / kp : 1;
    int64_t KC = STAGE / nb;
    if (VEC)
      KC &= ~(int64_t)63;
    if (KC > kp)
      KC = kp;
    m->b0 = b0, m->nb = nb, m->KC = KC;

    if (b0 > 0)
      __nvvm_barrier_sync(0); /* the previous pass is done with the buffer */
    float rs[BMAX];
#pragma unroll
    for (int b = 0; b < BMAX; b++)
      rs[b] = 1.0f;
    if (norm_w)
      norm_scales(x, k, eps, b0, nb, rs, tid);
    if (alias && KC < kp) {
      m->first = m->last = 1;
      rows_direct(m, norm_w, rs, tid >> 5, tid & 31);
      continue;
    }
    pass(m, VEC, NB, R, U, norm_w, rs);
  }
}

/* The variants, each a function of its own (see the top of the file): R weight rows per warp and
 * U 16-byte loads per row in flight, for up to NB batch rows per pass. */
#define MLK_MATVEC_VARIANT(name, VEC, NB, R, U)                                                    \
  static __attribute__((noinline)) void name(                                                      \
      float *out, const float *x, const uint16_t *W, const float *res, const uint16_t *norm_w,     \
      float eps, int64_t n, int64_t k, int64_t row0, int64_t rows, int64_t batch, int fn) {        \
    int64_t kp = VEC ? (k + 63) & ~(int64_t)63 : k;                                                \
    /* out == res with an activation: a pass must be a single chunk (or go direct) */              \
    int alias = res == out && fn != MLK_FN_NONE;                                                   \
    Mv m = {out, x, W, res, n, k, row0, rows, 0, 0, 0, 0, 0, fn, 0, 0};                            \
    run(&m, VEC, NB, R, U, norm_w, eps, batch, kp, alias);                                         \
  }
MLK_MATVEC_VARIANT(matvec_scalar, 0, BMAX, 1, 1)
MLK_MATVEC_VARIANT(matvec_b1, 1, 1, 1, 8)
MLK_MATVEC_VARIANT(matvec_b1r2, 1, 1, 2, 6)
MLK_MATVEC_VARIANT(matvec_b1r4, 1, 1, 4, 4)
MLK_MATVEC_VARIANT(matvec_b2, 1, 2, 2, 4)
MLK_MATVEC_VARIANT(matvec_b4, 1, 4, 2, 4)
MLK_MATVEC_VARIANT(matvec_b8, 1, BMAX, 2, 2)

void mlk_tile_matvec_prefetch(const uint16_t *W, int64_t n, int64_t k, int64_t row0, int64_t rows) {
  if (row0 + rows > n)
    rows = n - row0;
  if (rows <= 0 || k <= 0)
    return;
  /* The task's rows are contiguous: one byte range, its start rounded down to 16 bytes. */
  uintptr_t a = (uintptr_t)(W + row0 * k), end = (uintptr_t)(W + (row0 + rows) * k);
  uintptr_t a16 = a & ~(uintptr_t)15;
  uint64_t bytes = (uint64_t)(end - a16 + 15) & ~(uint64_t)15;
  if (bytes > MLK_MATVEC_PREFETCH_BYTES)
    bytes = MLK_MATVEC_PREFETCH_BYTES;
#if defined(__NVPTX__) && MLK_SM >= 90
  /* One thread hands the whole range to the copy engine in 32 KiB requests. */
  if (mlk_tid() != 0)
    return;
  for (uint64_t off = 0; off < bytes; off += 32768) {
    uint32_t len = (uint32_t)(bytes - off < 32768 ? bytes - off : 32768);
    __asm__ volatile("{\n\t.reg .u64 g;\n\tcvta.to.global.u64 g, %0;\n\t"
                     "cp.async.bulk.prefetch.L2.global [g], %1;\n\t}"
                     :
                     : "l"(a16 + off), "r"(len)
                     : "memory");
  }
#elif defined(__NVPTX__)
  /* A prefetch per 128-byte line, spread over the block. */
  for (uint64_t off = (uint64_t)mlk_tid() * 128; off < bytes; off += 128 * MLK_BLOCK_THREADS)
    __asm__ volatile("{\n\t.reg .u64 g;\n\tcvta.to.global.u64 g, %0;\n\tprefetch.global.L2 [g];\n\t}"
                     :
                     : "l"(a16 + off)
                     : "memory");
#else
  (void)bytes;
#endif
}

void mlk_tile_matvec(float *out, const float *x, const uint16_t *W, const float *res,
                     const uint16_t *norm_w, float eps, int64_t n, int64_t k, int64_t row0,
                     int64_t rows, int64_t batch, int fn) {
  if (row0 + rows > n)
    rows = n - row0;
  if (rows <= 0 || batch <= 0 || k <= 0) /* uniform */
    return;
  if ((k & 7) != 0 || ((uintptr_t)W & 15) != 0)
    matvec_scalar(out, x, W, res, norm_w, eps, n, k, row0, rows, batch, fn);
  else if (batch == 1 && rows >= 4 * WARPS) /* 16 weight loads in flight per lane */
    matvec_b1r4(out, x, W, res, norm_w, eps, n, k, row0, rows, batch, fn);
  else if (batch == 1 && rows >= 2 * WARPS) /* 12, and every warp busy */
    matvec_b1r2(out, x, W, res, norm_w, eps, n, k, row0, rows, batch, fn);
  else if (batch == 1)
    matvec_b1(out, x, W, res, norm_w, eps, n, k, row0, rows, batch, fn);
  else if (batch == 2)
    matvec_b2(out, x, W, res, norm_w, eps, n, k, row0, rows, batch, fn);
  else if (batch <= 4)
    matvec_b4(out, x, W, res, norm_w, eps, n, k, row0, rows, batch, fn);
  else
    matvec_b8(out, x, W, res, norm_w, eps, n, k, row0, rows, batch, fn);
  /* No trailing barrier: the skeleton's mlk_dev_barrier follows every tile. */
}
