/* matvec.c: the decode GEMV tile (bf16 weights, f32 accumulation) with an optional fused rmsnorm
 * of its input rows and an optional bias of its output rows, and the one shared-memory buffer that
 * every tile uses for scratch.
 *
 * Memory-bound on W: the task's weight rows are streamed once per pass of up to BMAX batch rows,
 * whatever k is. A pass stages its x rows (normalized when norm_w is set) in shared memory one
 * column chunk at a time ([nb][KC] floats, KC as large as the buffer allows: one chunk for
 * nb * k <= ~12K), and every warp accumulates its weight rows over the chunk for all nb rows.
 * Partial sums of a multi-chunk pass are kept in `out` itself (each element read back by the
 * thread that wrote it); the bias goes in with the first chunk, the epilogue (activation, residual)
 * runs on the last chunk.
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
_Static_assert(WARPS == 8, "stream_rows maps rows per chunk to warps per row for 8 warps");
#define BMAX 8                         /* batch rows per pass over W */
#define RED (WARPS * BMAX)             /* norm reduction slots at the end of the buffer */
#define STAGE (MLK_MATVEC_MAX_K - RED) /* floats available for staged x */
/* mlk_matvec_x_fits (mlk_desc.h) is x's condition here: batch * kp + RED <= STAGE */
_Static_assert(RED == 64, "mlk_matvec_x_fits counts 64 reduction slots and 64 norm slots");

/* The shared scratch of all tiles. Static shared variables of different files add up in the
 * linked kernel, and 48 KiB is the static limit, so this is the only one: every tile that needs
 * scratch uses it (declared extern there). A block runs one tile at a time, and the skeleton puts
 * a block barrier (mlk_dev_barrier) between consecutive tiles. */
MLK_SHARED float mlk_tile_smem[MLK_MATVEC_MAX_K] __attribute__((aligned(16)));

typedef struct U4 {
  uint32_t a, b, c, d;
} U4;

typedef float F4 __attribute__((ext_vector_type(4)));
typedef uint32_t V4 __attribute__((ext_vector_type(4))); /* 16-byte aligned: one 128-bit access */

/* Weights never change during a launch: the read-only path, and free to be scheduled early. On
 * sm_90 each load asks L2 for the 256 bytes around it (.L2::256B; the sm_80 tiles' PTX 7.0 has no
 * prefetch size): the tensor-core path's lanes read 64 bytes of 16 rows a block, and a row's next
 * blocks then come from L2. The load path alone in that pattern (bench/probe, frag rows, H100): 12
 * -> 19 GB/s an SM, 1.1 -> 1.5 TB/s over the chip; Llama at batch 16 7.1% faster a step, batch 64
 * 1.4% (docs/performance.md). */
#if MLK_SM >= 90
#define LD_WEIGHTS_SIZE ".L2::256B"
#else
#define LD_WEIGHTS_SIZE ""
#endif
/* A weight matrix's 16 bytes, read once a step: the first lines L2 gives up (as the stream's bulk
 * copies, mlk_bulk_copy). */
static inline U4 ld_weights(const uint16_t *p) {
  U4 r;
#if defined(__NVPTX__) && MLK_SM >= 90
  __asm__("{\n\t.reg .u64 g, pol;\n\tcvta.to.global.u64 g, %4;\n\t"
          "createpolicy.fractional.L2::evict_first.b64 pol, 1.0;\n\t"
          "ld.global.nc.L2::cache_hint" LD_WEIGHTS_SIZE ".v4.u32 {%0, %1, %2, %3}, [g], pol;\n\t}"
          : "=r"(r.a), "=r"(r.b), "=r"(r.c), "=r"(r.d)
          : "l"(p));
#elif defined(__NVPTX__)
  __asm__("{\n\t.reg .u64 g;\n\tcvta.to.global.u64 g, %4;\n\t"
          "ld.global.nc" LD_WEIGHTS_SIZE ".v4.u32 {%0, %1, %2, %3}, [g];\n\t}"
          : "=r"(r.a), "=r"(r.b), "=r"(r.c), "=r"(r.d)
          : "l"(p));
#else
  const uint32_t *q = (const uint32_t *)(const void *)p;
  r.a = q[0], r.b = q[1], r.c = q[2], r.d = q[3];
#endif
  return r;
}

/* 16 bytes of a norm's weights: read by every task of the op each step, kept in L2. */
static inline U4 ld_norm_weights(const uint16_t *p) {
  V4 v = *(const V4 *)(const void *)p; /* 16-byte aligned: the vector staging's condition */
  U4 r = {v.x, v.y, v.z, v.w};
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
  const uint16_t *bias; /* bf16 [n], or NULL */
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
  else {
    if (m->bias)
      v += bf16f(mlk_ld_weight16(m->bias + row)); /* the bias goes in with the first chunk */
    if (m->res && m->fn == MLK_FN_NONE)
      v += m->res[o]; /* no activation: the residual can go in first (safe when res == out) */
  }
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
      const uint16_t *bias, float eps, int64_t n, int64_t k, int64_t row0, int64_t rows,           \
      int64_t batch, int fn) {                                                                     \
    int64_t kp = VEC ? (k + 63) & ~(int64_t)63 : k;                                                \
    /* out == res with an activation: a pass must be a single chunk (or go direct) */              \
    int alias = res == out && fn != MLK_FN_NONE;                                                   \
    Mv m = {out, x, W, res, bias, n, k, row0, rows, 0, 0, 0, 0, 0, fn, 0, 0};                      \
    run(&m, VEC, NB, R, U, norm_w, eps, batch, kp, alias);                                         \
  }
MLK_MATVEC_VARIANT(matvec_scalar, 0, BMAX, 1, 1)
MLK_MATVEC_VARIANT(matvec_b1, 1, 1, 1, 8)
MLK_MATVEC_VARIANT(matvec_b1r2, 1, 1, 2, 6)
MLK_MATVEC_VARIANT(matvec_b1r4, 1, 1, 4, 4)
MLK_MATVEC_VARIANT(matvec_b2, 1, 2, 2, 4)
MLK_MATVEC_VARIANT(matvec_b4, 1, 4, 2, 4)
MLK_MATVEC_VARIANT(matvec_b8, 1, BMAX, 2, 2)

/* From this batch on the tensor-core path beats passes of BMAX rows on CUDA cores. Measured on the
 * H100 (Llama-3.2-1B decode, context 128, ms per step, CUDA cores / tensor cores): batch 12:
 * 14.15 / 14.96, 16: 17.98 / 16.34, 32: 34.80 / 25.65, 64: 68.58 / 46.16. The tensor-core path
 * keeps whole warps idle when a task has few 16-row groups (Llama's tasks have 16-64 rows), which
 * is why small batches lose; splitting k across warps would fix that. */
#define MMA_MIN_BATCH 16

/* ---- Tensor-core path (batch >= MMA_MIN_BATCH): mma.sync m16n8k16, bf16 in, f32 accumulation ----
 *
 * D[16 weight rows][8 batch rows] += A[16 rows][16 k] * B[16 k][8 batch rows], A = W (row-major,
 * as stored), B = x^T. The x values are split into hi = bf16(x) and lo = bf16(x - hi) (both
 * round-to-nearest-even) and each k block takes two MMAs, W*hi + W*lo: hi + lo carries x to
 * within 2^-16 relative, and the bf16 x bf16 products are exact, so the result is within
 * ~2^-16 * sum|w x| of the f32 dot product (see NOTES.md).
 *
 * k permutation: an MMA sums over k, so any permutation of k applied to both A and B gives the
 * same D. Lane (g = lane / 4, t = lane % 4) owns, in the PTX fragment layout, the logical k
 * {2t, 2t+1, 2t+8, 2t+9} of a 16-k step for A rows g and g + 8 and for B column g. A block of 32
 * physical k (two steps s = 0, 1) maps logical 2t+e -> 8t+4s+e and 2t+8+e -> 8t+4s+2+e, so lane t
 * needs exactly the 8 consecutive k [8t, 8t+8) of its rows for both steps: one 16-byte load per
 * weight row (a warp reads 64 contiguous bytes of each of 16 rows per block) and one 16-byte
 * shared load each of hi and lo per batch row. */
#define MMA_NB 64 /* batch rows per pass over W */
#define MMA_NT (MMA_NB / 8)

#if !defined(__NVPTX__)
/* f32 -> bf16 bits, round to nearest even (NaN stays NaN, overflow goes to infinity). */
static inline uint32_t bf16_rne(float f) {
  union { float f; uint32_t u; } c = {f};
  if (f != f)
    return (c.u >> 16) | 0x40u;
  return (c.u + 0x7fffu + ((c.u >> 16) & 1u)) >> 16;
}
#endif

/* Two f32 -> one packed bf16 pair, round to nearest even, v0 in the low half. On the device one
 * cvt.rn.bf16x2.f32 (sm_80 on): the software rounding took ~10 integer instructions a value, and
 * at batch 64 the staging's conversions and index arithmetic were most of matvec_mma's
 * instructions (an ncu profile on the H100: HMMA 2.9% of them). A NaN becomes the canonical one
 * there (0x7fff), a NaN all the same. */
static inline uint32_t bf16x2_rne(float v0, float v1) {
#if defined(__NVPTX__)
  uint32_t r;
  __asm__("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(v1), "f"(v0));
  return r;
#else
  return bf16_rne(v0) | (bf16_rne(v1) << 16);
#endif
}

/* x -> the packed hi and lo bf16 of two consecutive k (element 0 in the low half). */
static inline void split2(float v0, float v1, uint32_t *hi, uint32_t *lo) {
  uint32_t h = bf16x2_rne(v0, v1);
  float d0 = v0 - mlk_bf16_lo(h), d1 = v1 - mlk_bf16_hi(h);
  d0 = d0 == d0 ? d0 : 0.0f; /* x = +-inf: hi carries it */
  d1 = d1 == d1 ? d1 : 0.0f;
  *hi = h;
  *lo = bf16x2_rne(d0, d1);
}

/* d[0..3] += A (a0..a3) * B (b0, b1): one warp-wide mma.sync, every lane of the warp. */
static inline __attribute__((always_inline)) void mma16816(float *d, uint32_t a0, uint32_t a1,
                                                           uint32_t a2, uint32_t a3, uint32_t b0,
                                                           uint32_t b1) {
#if defined(__NVPTX__)
  __asm__ volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
                   "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                   : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                   : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#else
  mlk_emu_mma_m16n8k16(d, a0, a1, a2, a3, b0, b1);
#endif
}

/* The epilogue of one finished sum of weight row r (no partial sums in `out` on this path: each
 * element is read (res) and written once, by one thread, so res == out is safe). */
static inline float epi(float s, const float *res, const uint16_t *bias, int64_t r, int64_t o,
                        int fn) {
  if (bias)
    s += bf16f(mlk_ld_weight16(bias + r));
  if (fn == MLK_FN_MUL)
    return s * res[o];
  if (fn == MLK_FN_NONE)
    return res ? s + res[o] : s;
  s = act(s, fn);
  return res ? s + res[o] : s;
}

/* Stage batch rows [0, nbp) of columns [kc0, kc0 + kcp) as packed bf16 pairs: row b at word
 * b * RSF, hi pairs first (kcp / 2 words), lo pairs at KC / 2. Rows >= nb and columns >= kn are
 * zeros (a zero weight times a stale NaN would not be zero). RSF = KC + 16 words: two rows of a
 * quarter warp's 16-byte loads fall in opposite halves of the banks. This is the path for x or
 * norm weights that are not 16-byte aligned; mma_stage_vec below is the usual one. */
static inline __attribute__((always_inline)) void
mma_stage_scalar(MLK_SHARED uint32_t *sw, const float *x, const uint16_t *norm_w,
                 const MLK_SHARED float *rsm, int64_t k, int64_t b0, uint32_t nb, uint32_t nbp,
                 uint32_t kc0, uint32_t kn, uint32_t kcp, uint32_t KC, uint32_t warp,
                 uint32_t lane) {
  uint32_t RSF = KC + 16;
  for (uint32_t b = warp; b < nbp; b += WARPS) {
    const float *xr = x + (b0 + b) * k + kc0;
    const uint16_t *nw = norm_w + kc0;
    float sc = b < nb && norm_w ? rsm[b] : 1.0f;
    for (uint32_t p = lane; p < kcp / 2; p += 32) {
      float v0 = 0.0f, v1 = 0.0f;
      uint32_t i = 2 * p;
      if (b < nb && i < kn) { /* kn is even: i + 1 < kn too */
        v0 = xr[i], v1 = xr[i + 1];
        if (norm_w) {
          v0 = v0 * sc * bf16f(mlk_ld_weight16(nw + i));
          v1 = v1 * sc * bf16f(mlk_ld_weight16(nw + i + 1));
        }
      }
      uint32_t hi, lo;
      split2(v0, v1, &hi, &lo);
      sw[b * RSF + p] = hi;
      sw[b * RSF + KC / 2 + p] = lo;
    }
  }
}

/* mma_stage's layout from 16-byte loads: a lane takes items of 8 consecutive k of one batch row
 * (two float4 of x, one 16-byte load of the norm's weights), the loads of MMA_SU items issued
 * before any is converted, so that a warp has that many L2 round trips in flight instead of one;
 * each item is 4 hi and 4 lo pair words, two 16-byte shared stores. The warp's rows are b =
 * warp, warp + WARPS, ... as in mma_stage_scalar, and the rounding is the same. Needs x, the
 * rows (k % 8 == 0) and norm_w 16-byte aligned; kn is a multiple of 8 there.
 * rsm: the rows' norm scales (NULL: none, a split slice's: the merge scales). ssq (a split
 * slice's fused norm): each of the warp's rows b gets the chunk's sum of squares of its x added to
 * ssq[b] by the warp's lane 0, in chunk order, from the loads the staging makes anyway (a pass of
 * its own read x from L2 once more before the staging). */
#define MMA_SU 4
#define MMA_SLOTS (MMA_NB / WARPS) /* a warp's batch rows in a pass */
static inline __attribute__((always_inline)) void
mma_stage_vec(MLK_SHARED uint32_t *sw, const float *x, const uint16_t *norm_w,
              const MLK_SHARED float *rsm, int64_t k, int64_t b0, uint32_t nb, uint32_t nbp,
              uint32_t kc0, uint32_t kn, uint32_t kcp, uint32_t KC, uint32_t warp, uint32_t lane,
              MLK_SHARED float *ssq) {
  float sq[MMA_SLOTS]; /* ssq: the lane's sums of squares of its items in each row slot */
#pragma unroll
  for (int j = 0; j < MMA_SLOTS; j++)
    sq[j] = 0.0f;
  uint32_t RSF = KC + 16, q8 = kcp / 8;
  uint32_t items = (nbp > warp ? (nbp - warp + WARPS - 1) / WARPS : 0) * q8;
  /* Item it is (row slot it / q8, column item it % q8); a lane's items go 32 at a time, so the two
   * are counted forward rather than divided for every item (two runtime divisions an item, in
   * each of the two loops below, were a large part of the staging's integer instructions). */
  uint32_t dj = 32 / q8, dc = 32 - dj * q8;
  uint32_t jb = lane / q8, jc = lane - jb * q8;
  for (uint32_t i0 = lane; i0 < items; i0 += 32 * MMA_SU) {
    F4 v[MMA_SU][2];
    U4 w[MMA_SU];
    uint32_t bu[MMA_SU], cu[MMA_SU], ju[MMA_SU];
#pragma unroll
    for (int u = 0; u < MMA_SU; u++) {
      uint32_t it = i0 + 32 * (uint32_t)u, b = warp + jb * WARPS, col = 8 * jc;
      bu[u] = b, cu[u] = jc, ju[u] = jb;
      jc += dc, jb += dj;
      if (jc >= q8)
        jc -= q8, jb++;
      int in = it < items && b < nb && col < kn;
      const float *xp = x + (b0 + b) * k + kc0 + col;
      F4 z = {0.0f, 0.0f, 0.0f, 0.0f};
      v[u][0] = in ? *(const F4 *)xp : z;
      v[u][1] = in ? *(const F4 *)(xp + 4) : z;
      U4 one = {0x3f803f80u, 0x3f803f80u, 0x3f803f80u, 0x3f803f80u}; /* bf16 1.0 pairs */
      w[u] = in && norm_w ? ld_norm_weights(norm_w + kc0 + col) : one;
    }
#pragma unroll
    for (int u = 0; u < MMA_SU; u++) {
      uint32_t it = i0 + 32 * (uint32_t)u, b = bu[u], c = cu[u];
      if (it < items) {
        float sc = b < nb && norm_w && rsm ? rsm[b] : 1.0f;
        float e[8] = {v[u][0].x, v[u][0].y, v[u][0].z, v[u][0].w,
                      v[u][1].x, v[u][1].y, v[u][1].z, v[u][1].w};
        if (ssq) { /* rows past nb loaded zeros */
          F4 q = v[u][0] * v[u][0] + v[u][1] * v[u][1];
          float qs = (q.x + q.y) + (q.z + q.w);
#pragma unroll
          for (int j = 0; j < MMA_SLOTS; j++)
            sq[j] += ju[u] == (uint32_t)j ? qs : 0.0f;
        }
        uint32_t ww[4] = {w[u].a, w[u].b, w[u].c, w[u].d};
        if (norm_w) {
#pragma unroll
          for (int j = 0; j < 4; j++) {
            e[2 * j] = e[2 * j] * sc * mlk_bf16_lo(ww[j]);
            e[2 * j + 1] = e[2 * j + 1] * sc * mlk_bf16_hi(ww[j]);
          }
        }
        uint32_t h[4], l[4];
#pragma unroll
        for (int j = 0; j < 4; j++)
          split2(e[2 * j], e[2 * j + 1], &h[j], &l[j]);
        V4 hi = {h[0], h[1], h[2], h[3]}, lo = {l[0], l[1], l[2], l[3]};
        *(MLK_SHARED V4 *)(sw + b * RSF + 4 * c) = hi;
        *(MLK_SHARED V4 *)(sw + b * RSF + KC / 2 + 4 * c) = lo;
      }
    }
  }
  if (!ssq)
    return;
#pragma unroll
  for (int j = 0; j < MMA_SLOTS; j++) {
    if (warp + (uint32_t)j * WARPS < nb) { /* uniform */
      float t = sq[j];
      for (int off = 16; off > 0; off >>= 1)
        t += __nvvm_shfl_sync_bfly_f32(0xffffffffu, t, off, 0x1f);
      if (lane == 0)
        ssq[warp + (uint32_t)j * WARPS] += t;
    }
  }
}

/* 16 bytes of shared memory at byte address `a` (a 32-bit shared-window address: the offsets of
 * the n tiles stay one register each when the compiler keeps them across the loop). */
static inline U4 ld_shared16(uint32_t a) {
  U4 r;
#if defined(__NVPTX__)
  __asm__ volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
                   : "=r"(r.a), "=r"(r.b), "=r"(r.c), "=r"(r.d)
                   : "r"(a)
                   : "memory");
#else
  r = *(const U4 *)mlk_emu_smem_ptr(a);
#endif
  return r;
}

/* The four MMAs of one block of 32 k: weights a (rows g and g + 8), the staged pairs at byte
 * address ha for n tile 0 (jstep further for each next one; lo hi-to-lo). */
static inline __attribute__((always_inline)) void
mma_block(float (*acc)[4], const U4 *a, uint32_t ha, uint32_t jstep, uint32_t lo, uint32_t ni) {
#pragma unroll
  for (int i = 0; i < MMA_NT; i++) {
    if ((uint32_t)i < ni) {
      U4 h = ld_shared16(ha + i * jstep), l = ld_shared16(ha + i * jstep + lo);
      /* step 0: k 8t..8t+3 (words a, b); step 1: 8t+4..8t+7 (words c, d) */
      mma16816(acc[i], a[0].a, a[1].a, a[0].b, a[1].b, h.a, h.b);
      mma16816(acc[i], a[0].a, a[1].a, a[0].b, a[1].b, l.a, l.b);
      mma16816(acc[i], a[0].c, a[1].c, a[0].d, a[1].d, h.c, h.d);
      mma16816(acc[i], a[0].c, a[1].c, a[0].d, a[1].d, l.c, l.d);
    }
  }
}

/* A warp takes every P-th block of 32 k of a chunk, from block p (its part of k: the row group's
 * warps split k between them, so each streams weights no other warp reads). The first MMA_UB of
 * its blocks are loaded into registers before the chunk's x is staged (weights depend on
 * nothing), so their HBM latency overlaps the staging; mma_chunk then keeps MMA_UB blocks in
 * flight. 4 rather than 8 (H100 and H200, docs/performance.md): with 8, ptxas spills the window
 * inside the inner loop (~27 local loads a 128 MMAs, against 4), which costs more than the
 * bytes in flight it adds. */
#define MMA_UB 4

static inline __attribute__((always_inline)) void
mma_preload(U4 (*a)[2], const uint16_t *W, int64_t k, int64_t r0, uint32_t rn, uint32_t kc0,
            uint32_t kn, uint32_t kcp, uint32_t p, uint32_t P, uint32_t lane) {
  uint32_t g = lane >> 2, t = lane & 3, nblk = kcp / 32;
  int ok0 = g < rn, ok1 = g + 8 < rn;
  const uint16_t *w0 = W + (r0 + g) * k + kc0 + 8 * t, *w1 = w0 + 8 * k;
  U4 z = {0, 0, 0, 0};
#pragma unroll
  for (int u = 0; u < MMA_UB; u++) {
    uint32_t b = p + P * (uint32_t)u;
    int in = b < nblk && b * 32 + 8 * t < kn;
    a[u][0] = in && ok0 ? ld_weights(w0 + b * 32) : z;
    a[u][1] = in && ok1 ? ld_weights(w1 + b * 32) : z;
  }
}

/* One warp's blocks p, p + P, ... of 32 k of a staged chunk: weight rows r0 + g and r0 + g + 8
 * (rn valid rows from r0), every n tile (ni of them). The weights stream through a window of
 * MMA_UB blocks in registers: `win` arrives holding the first MMA_UB (mma_preload), and as each
 * block is used its slot is refilled with the one MMA_UB further on, so that MMA_UB blocks' loads
 * stay in flight all along the chunk (the window is unrolled: its slots are registers). */
static inline __attribute__((always_inline)) void
mma_chunk(float (*acc)[4], U4 (*win)[2], const MLK_SHARED uint32_t *sw, const uint16_t *W,
          int64_t k, int64_t r0, uint32_t rn, uint32_t kc0, uint32_t kn, uint32_t kcp, uint32_t KC,
          uint32_t p, uint32_t P, uint32_t ni, uint32_t lane) {
  uint32_t g = lane >> 2, t = lane & 3, RSB = (KC + 16) * 4; /* row stride in bytes */
  int ok0 = g < rn, ok1 = g + 8 < rn;
  const uint16_t *w0 = W + (r0 + g) * k + kc0 + 8 * t, *w1 = w0 + 8 * k;
  uint32_t sbase = mlk_smem_addr(sw) + g * RSB + 16 * t;
  uint32_t jstep = 8 * RSB, lo = KC * 2, nblk = kcp / 32;
  U4 z = {0, 0, 0, 0};
  for (uint32_t j0 = 0; p + P * j0 < nblk; j0 += MMA_UB) {
#pragma unroll
    for (int u = 0; u < MMA_UB; u++) {
      uint32_t b = p + P * (j0 + (uint32_t)u);
      if (b < nblk) {
        U4 cur[2] = {win[u][0], win[u][1]};
        uint32_t nx = b + P * MMA_UB;
        int in = nx < nblk && nx * 32 + 8 * t < kn;
        win[u][0] = in && ok0 ? ld_weights(w0 + nx * 32) : z;
        win[u][1] = in && ok1 ? ld_weights(w1 + nx * 32) : z;
        mma_block(acc, cur, sbase + b * 64, jstep, lo, ni);
      }
    }
  }
}

/* The partial sums of a round's warps in shared memory (after the chunks, in the staging buffer):
 * warp w's 16 rows x MMA_NB batch columns at w * 16 * PART_RS, rows PART_RS floats apart. */
#define PART_RS (MMA_NB + 8)
_Static_assert(WARPS * 16 * PART_RS <= STAGE, "a round's partial sums fit the staging buffer");

/* The tensor-core variant: passes of up to MMA_NB batch rows; in a pass, units of (16 weight
 * rows, a part of k) go one per warp per round: a task with fewer than 8 row groups splits k
 * between P = 8 / (row groups) warps per group, each streaming its own blocks, so that every warp
 * has weights of its own in flight. A round keeps its sums in registers over all column chunks;
 * then the warps of a row group add their partial sums through shared memory, in part order, and
 * the group's first warp applies the epilogue. */
/* k is the row stride of x and W; the columns summed are [0, kx) of x, W and norm_w as passed.
 * raw (a split matvec's slice, mlk_tile_matvec_split): the sums go to out as they are (no norm
 * scale, no epilogue) and, with a fused norm, each batch row's sum of squares over [0, kx) to
 * ssout[b]. */
static __attribute__((always_inline)) void
matvec_mma_body(float *out, const float *x, const uint16_t *W, const float *res,
                const uint16_t *norm_w, const uint16_t *bias, float eps, int64_t n, int64_t k,
                int64_t kx, int64_t row0, int64_t rows, int64_t batch, int fn, int raw,
                float *ssout) {
  uint32_t tid = mlk_tid_here(), warp = tid >> 5, lane = tid & 31;
  MLK_SHARED float *rsm = mlk_tile_smem + STAGE; /* the pass's norm scales, MMA_NB floats */
  /* 32-bit counts (rows of a task, batch rows and k are far below 2^31); 64-bit addressing */
  uint32_t R = (uint32_t)rows, G = (R + 15) / 16, K = (uint32_t)kx, K32 = (K + 31) & ~31u;
  uint32_t P = G >= WARPS ? 1 : WARPS / G; /* warps per row group: 1, 2, 4 or 8 */
  int vec = (((uintptr_t)x | (norm_w ? (uintptr_t)norm_w << 1 : 0)) & 15) == 0; /* uniform */
  /* the staging buffer: the tiles' scratch, or (knob MlkDevTune.mma_stage_ring) the stream's ring
   * when it is larger and the stream puts nothing there again: more columns a chunk, fewer
   * chunks, each a round of barriers, an x staging and a restart of the weight window */
  uint32_t cap = STAGE, ring_floats = 0;
  MLK_SHARED uint32_t *sw = (MLK_SHARED uint32_t *)mlk_tile_smem;
  MLK_SHARED float *ring = mlk_dev_tune.mma_stage_ring ? mlk_stream_scratch(&ring_floats) : 0;
  if (ring && ring_floats > STAGE)
    sw = (MLK_SHARED uint32_t *)ring, cap = ring_floats;
  /* A split slice's fused norm takes its sums of squares from the staging's loads of x, into rsm
   * (each row's by the lane 0 of the warp that stages it), where the staging then scales by 1:
   * the merge scales. Elsewhere a pass of their own first, rsm the scales. */
  int fused_ss = raw && norm_w && vec;
  /* the trace's phases (when traced): the first round's x staged, its sums done, the task's */
  int stamped = 0;
  for (int64_t b0 = 0; b0 < batch; b0 += MMA_NB) {
    uint32_t nb = (uint32_t)(batch - b0 < MMA_NB ? batch - b0 : MMA_NB), nt = (nb + 7) / 8;
    uint32_t KC = (cap / (nt * 8) - 16) & ~31u;
    if (KC > K32)
      KC = K32;
    if (fused_ss) { /* a row's sum is only ever touched by its warp's lane 0 */
      for (uint32_t b = warp; b < nb && lane == 0; b += WARPS)
        rsm[b] = 0.0f;
    } else if (norm_w) {
      if (b0 > 0)
        __nvvm_barrier_sync(0); /* the previous pass is done with rsm */
      for (uint32_t b = warp; b < nb; b += WARPS) {
        const float *xr = x + (b0 + b) * k;
        float ss = 0.0f;
        if (vec) { /* 16-byte loads, four in flight per lane */
          F4 q = {0.0f, 0.0f, 0.0f, 0.0f};
          for (uint32_t i0 = 4 * lane; i0 < K; i0 += 4 * 32 * 4) {
            F4 v[4];
#pragma unroll
            for (int u = 0; u < 4; u++) {
              uint32_t i = i0 + (uint32_t)u * 4 * 32;
              F4 z = {0.0f, 0.0f, 0.0f, 0.0f};
              v[u] = i < K ? *(const F4 *)(xr + i) : z;
            }
#pragma unroll
            for (int u = 0; u < 4; u++)
              q += v[u] * v[u];
          }
          ss = (q.x + q.y) + (q.z + q.w);
        } else {
          for (uint32_t i = lane; i < K; i += 32)
            ss += xr[i] * xr[i];
        }
        for (int off = 16; off > 0; off >>= 1)
          ss += __nvvm_shfl_sync_bfly_f32(0xffffffffu, ss, off, 0x1f);
        if (lane == 0 && raw)
          ssout[b0 + b] = ss, rsm[b] = 1.0f; /* the merge scales */
        else if (lane == 0)
          rsm[b] = 1.0f / __builtin_sqrtf(ss / (float)k + eps);
      }
    }
    for (uint32_t u0 = 0; u0 < G * P; u0 += WARPS) {
      uint32_t u = u0 + warp, rg = u / P, p = u % P, r0 = rg * 16;
      int active = u < G * P;
      uint32_t ni = active ? nt : 0;
      float acc[MMA_NT][4];
#pragma unroll
      for (int i = 0; i < MMA_NT; i++)
        acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
      for (uint32_t kc0 = 0; kc0 < K; kc0 += KC) {
        uint32_t kn = K - kc0 < KC ? K - kc0 : KC, kcp = (kn + 31) & ~31u;
        U4 win[MMA_UB][2];
        if (active)
          mma_preload(win, W, k, row0 + r0, R - r0, kc0, kn, kcp, p, P, lane);
        __nvvm_barrier_sync(0); /* rsm written; the buffer's previous readers are done */
        if (vec) /* the sums of squares in the first round only */
          mma_stage_vec(sw, x, norm_w, fused_ss ? 0 : rsm, k, b0, nb, nt * 8, kc0, kn, kcp, KC,
                        warp, lane, fused_ss && u0 == 0 ? rsm : 0);
        else
          mma_stage_scalar(sw, x, norm_w, rsm, k, b0, nb, nt * 8, kc0, kn, kcp, KC, warp, lane);
        __nvvm_barrier_sync(0);
        if (!stamped)
          mlk_dev_trace_phase(MLK_TRACE_STAGED);
        stamped = 1;
        if (active)
          mma_chunk(acc, win, sw, W, k, row0 + r0, R - r0, kc0, kn, kcp, KC, p, P, ni, lane);
      }
      if (fused_ss && u0 == 0 && lane == 0) /* the rows this warp staged (its lane 0 summed them) */
        for (uint32_t b = warp; b < nb; b += WARPS)
          ssout[b0 + b] = rsm[b];
      if (stamped == 1)
        mlk_dev_trace_phase(MLK_TRACE_FIRST);
      stamped = 2;
      uint32_t g = lane >> 2, t = lane & 3;
      MLK_SHARED float *mine = mlk_tile_smem + warp * 16 * PART_RS;
      if (P > 1) { /* the parts of k: every warp's sums through shared memory */
        __nvvm_barrier_sync(0); /* every warp is done with the staged x */
#pragma unroll
        for (int i = 0; i < MMA_NT; i++)
          if ((uint32_t)i < ni)
#pragma unroll
            for (int e = 0; e < 4; e++)
              mine[(g + 8 * (e >> 1)) * PART_RS + 8 * i + 2 * t + (e & 1)] = acc[i][e];
        __nvvm_barrier_sync(0);
        if (p != 0)
          ni = 0; /* the group's first warp adds the parts, in order, and writes the outputs */
      }
#pragma unroll
      for (int i = 0; i < MMA_NT; i++) {
        if ((uint32_t)i < ni) {
#pragma unroll
          for (int e = 0; e < 4; e++) {
            uint32_t b = 8 * i + 2 * t + (e & 1), r = r0 + g + 8 * (e >> 1);
            if (b < nb && r < R) {
              float sum = acc[i][e];
              if (P > 1) {
                uint32_t so = (g + 8 * (e >> 1)) * PART_RS + b;
                sum = mine[so];
                for (uint32_t q = 1; q < P; q++)
                  sum += mine[q * 16 * PART_RS + so];
              }
              int64_t o = (b0 + b) * n + row0 + r;
              out[o] = raw ? sum : epi(sum, res, bias, row0 + r, o, fn);
            }
          }
        }
      }
    }
  }
  mlk_dev_trace_phase(MLK_TRACE_BODY);
}

/* The tensor-core path in two functions of its own (noinline: ptxas allocates each alone): the
 * plain one, which every large-batch matvec task runs, is compiled without the split's raw mode
 * (one function with a raw flag, timed on the H100 in the fifteenth session: 2-3% slower at batch
 * 16 and 64 with the split off, 6% and 18% slower with it on). */
static __attribute__((noinline)) void matvec_mma(float *out, const float *x, const uint16_t *W,
                                                 const float *res, const uint16_t *norm_w,
                                                 const uint16_t *bias, float eps, int64_t n,
                                                 int64_t k, int64_t row0, int64_t rows,
                                                 int64_t batch, int fn) {
  matvec_mma_body(out, x, W, res, norm_w, bias, eps, n, k, k, row0, rows, batch, fn, 0, 0);
}
static __attribute__((noinline)) void matvec_mma_raw(float *out, const float *x, const uint16_t *W,
                                                     const uint16_t *norm_w, float eps, int64_t n,
                                                     int64_t k, int64_t kx, int64_t row0,
                                                     int64_t rows, int64_t batch, float *ssout) {
  matvec_mma_body(out, x, W, 0, norm_w, 0, eps, n, k, kx, row0, rows, batch, MLK_FN_NONE, 1,
                  ssout);
}

/* ---- Stream path: weight rows from the shared-memory ring (stream.c) ----
 *
 * The task's rows arrive in chunks of rpc whole rows, loaded by the copy engine while the block
 * waited for x or ran earlier tasks. x is staged once for every batch row (the layout of the
 * vector path), then for each chunk: a row per warp (rows split in k over several warps when a
 * chunk has fewer rows than warps, their partial sums added through shared memory), 16-byte
 * shared loads of 8 weights per lane, conflict-free since a warp reads 512 contiguous bytes. */
int mlk_matvec_streamable(const uint16_t *W, int64_t k, int64_t batch) {
  /* the staged rows (batch * kp), then WARPS * BMAX sums of squares, within STAGE */
  return (k & 7) == 0 && ((uintptr_t)W & 15) == 0 && batch >= 1 && batch <= BMAX &&
         batch < MMA_MIN_BATCH && mlk_matvec_x_fits(k, batch);
}

/* The finished element of the task's row r (from row0), batch row b, with the epilogue's operands
 * from `pre` (stream_rows: the residual or gate [nb][rows], then the bias [rows]), or, without
 * it, from global memory (emit). One pass over k: the first and the last chunk at once. */
static inline __attribute__((always_inline)) void emit_pre(const Mv *m, const MLK_SHARED float *pre,
                                                           int64_t r, int64_t b, float s) {
  if (!pre) {
    emit(m, m->row0 + r, b, s);
    return;
  }
  float v = s;
  if (m->bias)
    v += pre[(m->res ? m->nb * m->rows : 0) + r];
  if (m->fn != MLK_FN_NONE && m->fn != MLK_FN_MUL)
    v = act(v, m->fn);
  if (m->res) {
    float g = pre[b * m->rows + r];
    v = m->fn == MLK_FN_MUL ? v * g : v + g; /* the gated product, or the residual */
  }
  m->out[b * m->n + m->row0 + r] = v;
}

/* 1 / rms of batch row b from the warps' sums of squares. */
static inline float rscale(const MLK_SHARED float *ss, int64_t b, int NB, int64_t k, float eps) {
  float t = 0.0f;
#pragma unroll
  for (int w = 0; w < WARPS; w++)
    t += ss[w * NB + b];
  return 1.0f / __builtin_sqrtf(t / (float)k + eps);
}

/* Element e of the epilogue's operands of a streamed task (stream_rows' `pre`): e < nres the
 * residual or gate of batch row e / rows, task row e % rows; then the bias of row e - nres. */
static inline float pre_operand(const Mv *m, int64_t e, int64_t rows, int64_t nres, int NB) {
  if (e < nres) {
    int64_t b = NB == 1 ? 0 : (int64_t)((uint32_t)e / (uint32_t)rows), r = e - b * rows;
    return m->res[b * m->n + m->row0 + r];
  }
  return bf16f(mlk_ld_weight16(m->bias + m->row0 + (e - nres)));
}

/* One 16-byte item of x on its way into a staging buffer (the streamed paths): its squares added to
 * *sq (the norm's sums), then the norm's weights (nw: four bf16) applied when there is a norm. */
static inline F4 stage_item(F4 t, const uint32_t *nw, int norm, float *sq) {
  *sq += t.x * t.x + t.y * t.y + t.z * t.z + t.w * t.w;
  if (norm) {
    t.x *= mlk_bf16_lo(nw[0]), t.y *= mlk_bf16_hi(nw[0]);
    t.z *= mlk_bf16_lo(nw[1]), t.w *= mlk_bf16_hi(nw[1]);
  }
  return t;
}

#define PRE_REGS 2 /* epilogue operands a thread loads before x: 512 per block, a task's rows at b1 */

static inline __attribute__((always_inline)) void
stream_rows(const uint16_t *norm_w, float eps, Mv *m, int NB, int R) {
  uint32_t tid = mlk_tid_here(), warp = tid >> 5, lane = tid & 31;
  int64_t k = m->k, nb = m->nb, KC = m->KC, chunks = k >> 3;
  /* Stage x (times the norm's weights) in one pass, 16-byte loads, several in flight; the norm's
   * 1 / rms is a factor of the whole dot product, applied to the sums (rscale). ss: each warp's
   * sums of squares per batch row, after the staged rows. */
  MLK_SHARED float *ss = mlk_tile_smem + nb * KC;
  /* The epilogue's operands of the task's rows (the residual or gate [nb][rows], then the bias
   * [rows]) go into shared memory after the staged x, where they fit: an output then waits on no
   * global load (one per chunk and row otherwise, each an L2 round trip before the chunk's
   * release barrier). A thread's first PRE_REGS of them are loaded before x, so that their round
   * trip overlaps x's instead of following it. */
  MLK_SHARED float *pre = 0;
  int64_t rows = m->rows, nres = m->res ? nb * rows : 0, npre = nres + (m->bias ? rows : 0);
  if (npre && nb * KC + WARPS * NB + npre <= STAGE)
    pre = ss + WARPS * NB;
  float early[PRE_REGS];
#pragma unroll
  for (int j = 0; j < PRE_REGS; j++) {
    int64_t e = (int64_t)tid + (int64_t)j * MLK_BLOCK_THREADS;
    early[j] = pre && e < npre ? pre_operand(m, e, rows, nres, NB) : 0.0f;
  }
  int vec = (((uintptr_t)m->x | (norm_w ? (uintptr_t)norm_w << 1 : 0)) & 15) == 0;
  float sq[BMAX]; /* the thread's sums of squares of each batch row */
#pragma unroll
  for (int b = 0; b < NB; b++)
    sq[b] = 0.0f;
  if (vec) {
    /* every batch row's loads of a step issued before any is used: with the rows one after
     * another, batch 4 staged in four L2 round trips (4.9 us against 1.7 at batch 1, H100 layer
     * trace); SU x NB 16-byte loads of x in flight a thread */
    const int SU = NB >= 8 ? 1 : NB >= 4 ? 2 : 4;
    for (int64_t i0 = (int64_t)tid * 4; i0 < k; i0 += 4 * SU * MLK_BLOCK_THREADS) {
      F4 v[BMAX][4];
      uint32_t nw[4][2];
#pragma unroll
      for (int u = 0; u < SU; u++) {
        int64_t i = i0 + (int64_t)u * 4 * MLK_BLOCK_THREADS;
        if (i < k && norm_w) {
          const uint32_t *q = (const uint32_t *)(const void *)(norm_w + i);
          nw[u][0] = q[0], nw[u][1] = q[1];
        }
#pragma unroll
        for (int b = 0; b < NB; b++)
          if (b < nb && i < k)
            v[b][u] = *(const F4 *)(m->x + b * k + i);
      }
#pragma unroll
      for (int u = 0; u < SU; u++) {
        int64_t i = i0 + (int64_t)u * 4 * MLK_BLOCK_THREADS;
#pragma unroll
        for (int b = 0; b < NB; b++) {
          if (b < nb && i < k) /* i % 4 == 0: 4 in a row */
            *(MLK_SHARED F4 *)(mlk_tile_smem + b * KC + perm((uint32_t)i)) =
                stage_item(v[b][u], nw[u], norm_w != 0, &sq[b]);
        }
      }
    }
  } else {
#pragma unroll
    for (int b = 0; b < NB; b++) {
      if (b < nb) {
        const float *xr = m->x + b * k;
        MLK_SHARED float *dst = mlk_tile_smem + b * KC;
        for (int64_t i = tid; i < k; i += MLK_BLOCK_THREADS) {
          float t = xr[i];
          sq[b] += t * t;
          dst[perm((uint32_t)i)] = norm_w ? t * bf16f(mlk_ld_weight16(norm_w + i)) : t;
        }
      }
    }
  }
  if (norm_w) {
#pragma unroll
    for (int b = 0; b < NB; b++) {
      if (b < nb) {
        float q = sq[b];
        for (int off = 16; off > 0; off >>= 1)
          q += __nvvm_shfl_sync_bfly_f32(0xffffffffu, q, off, 0x1f);
        if (lane == 0)
          ss[warp * NB + b] = q;
      }
    }
  }
  if (pre) {
#pragma unroll
    for (int j = 0; j < PRE_REGS; j++) {
      int64_t e = (int64_t)tid + (int64_t)j * MLK_BLOCK_THREADS;
      if (e < npre)
        pre[e] = early[j];
    }
    for (int64_t e = (int64_t)tid + PRE_REGS * MLK_BLOCK_THREADS; e < npre; e += MLK_BLOCK_THREADS)
      pre[e] = pre_operand(m, e, rows, nres, NB);
  }
  __nvvm_barrier_sync(0);
  mlk_dev_trace_phase(MLK_TRACE_STAGED);
  MLK_SHARED float *part = mlk_tile_smem + STAGE; /* split rows' partial sums, <= WARPS * NB */
  /* The chunk loop in 32-bit counts (a task's rows and k are far below 2^31), and the norm's
   * 1 / rms of the lane's batch row once a task, not once a chunk: an ncu profile at batch 1 (H100,
   * eleventh session) had the loop's 64-bit bounds and the per-chunk scale (eight shared loads, an
   * IEEE division, a square root and a reciprocal on the way to the release barrier) at ~40% of
   * matvec_stream_b1's samples, against ~21% for the dot products. */
  uint32_t urows = (uint32_t)rows, K8 = (uint32_t)chunks, uk = (uint32_t)k, unb = (uint32_t)nb;
  uint32_t rpc = (uint32_t)mlk_stream_rows_per_chunk(k);
  /* after the warp's reduce_scatter, lane l holds the sum of row l / NB of its unit (below),
   * batch row lb = l % NB */
  uint32_t lb = lane & (uint32_t)(NB - 1), lr = (lane / (uint32_t)NB) & (uint32_t)(R - 1);
  float rs = norm_w ? rscale(ss, lb < unb ? lb : 0, NB, k, eps) : 1.0f;
  MlkStreamCursor cur = mlk_stream_cursor();
  for (uint32_t r0 = 0; r0 < urows; r0 += rpc) {
    uint32_t nr = urows - r0 < rpc ? urows - r0 : rpc;
    /* a warp's unit is R rows (R = 2 from batch 2: each x value read from shared memory feeds two
     * rows; at batch 4 a chunk's shared-memory reads were ~2.5x batch 1's, 2.7 against 1.45 us a
     * chunk); warps per unit: 2^ls = WARPS / units rounded down to a power of two (1 from 8 units
     * on), by comparisons rather than divisions, which cost ~20 instructions each per chunk */
    uint32_t nu = R == 1 ? nr : (nr + 1) >> 1;
    uint32_t ls = nu >= WARPS / 2 + 1 ? 0 : nu >= WARPS / 4 + 1 ? 1 : nu >= 2 ? 2 : 3;
    uint32_t S = 1u << ls;
    uint32_t seg = (K8 + S - 1) >> ls;
    const MLK_SHARED uint16_t *slot = mlk_stream_wait(&cur);
    if (r0 == 0)
      mlk_dev_trace_phase(MLK_TRACE_FIRST);
    for (uint32_t uu = warp >> ls; uu < nu; uu += WARPS >> ls) {
      uint32_t sg = warp & (S - 1), rr0 = uu * (uint32_t)R;
      uint32_t c0 = sg * seg, c1 = c0 + seg < K8 ? c0 + seg : K8;
      float acc[2 * BMAX];
#pragma unroll
      for (int j = 0; j < R * NB; j++)
        acc[j] = 0.0f;
      /* ordinary loads: the wait's asm (a memory clobber) keeps them after the copy landed; a
       * unit's missing second row (an odd chunk) reads the first again, its sums never written */
      const MLK_SHARED V4 *wrow = (const MLK_SHARED V4 *)(slot + rr0 * uk);
      const MLK_SHARED V4 *wrow1 = R == 2 && rr0 + 1 < nr ? wrow + K8 : wrow;
#pragma unroll 4
      for (uint32_t c = c0 + lane; c < c1; c += 32) {
        V4 wv = wrow[c];
        U4 w = {wv.x, wv.y, wv.z, wv.w}, w1 = w;
        if (R == 2) {
          V4 wv1 = wrow1[c];
          w1 = (U4){wv1.x, wv1.y, wv1.z, wv1.w};
        }
        uint32_t off = ((c >> 3) << 6) | ((c & 7u) << 2);
#pragma unroll
        for (int b = 0; b < NB; b++) {
          if (b < nb) {
            const MLK_SHARED float *xr = mlk_tile_smem + b * KC + off;
            F4 x0 = *(const MLK_SHARED F4 *)xr;
            F4 x1 = *(const MLK_SHARED F4 *)(xr + 32);
            acc[b] += dot8(w, x0, x1);
            if (R == 2)
              acc[NB + b] += dot8(w1, x0, x1);
          }
        }
      }
      float sum = reduce_scatter(acc, R * NB, lane);
      uint32_t rr = rr0 + lr;
      if (lane < (uint32_t)(R * NB) && lb < unb && rr < nr) {
        if (S == 1)
          emit_pre(m, pre, r0 + rr, lb, sum * rs);
        else
          part[(rr * S + sg) * NB + lb] = sum;
      }
    }
    if (S > 1) {
      __nvvm_barrier_sync(0);
      for (uint32_t t = tid; t < nr * unb; t += MLK_BLOCK_THREADS) {
        uint32_t rr = t / unb, b = t - rr * unb;
        float sum = 0.0f;
        for (uint32_t sg = 0; sg < S; sg++)
          sum += part[(rr * S + sg) * NB + b];
        emit_pre(m, pre, r0 + rr, b, norm_w ? sum * rscale(ss, b, NB, k, eps) : sum);
      }
    }
    mlk_stream_release(&cur);
  }
  mlk_dev_trace_phase(MLK_TRACE_BODY);
}

/* ---- Stream path in column blocks: x too large to stage whole, at batch 2 to 4 ----
 *
 * A task of at most COLS_MAX_ROWS rows whose x (batch rows of k) does not fit the staging buffer
 * (Llama's down projection, k = 8192, from batch 2) gets its weights from the ring one column
 * block at a time: a chunk is block j (kc columns) of every row of the task, row r at r * kc
 * elements of the slot (stream.c copies a row at a time). x goes into two buffers of [nb][kc]
 * (the vector path's layout) in turn: block j + 1's loads are issued before chunk j's dot
 * products and stored after them, so the staging's L2 round trip overlaps the arithmetic; the
 * release barrier of chunk j - 1 frees the buffer block j + 1 goes into. A warp takes rows w and
 * w + WARPS over every block, their sums in registers to the end (no partial sums in memory), and
 * the norm's 1 / rms (sums of squares gathered over the blocks) multiplies the finished sums. */
#define COLS_MAX_ROWS (2 * WARPS)
#define COLS_MAX_BATCH 4

int mlk_matvec_stream_cols(const uint16_t *W, int64_t k, int64_t rows, int64_t batch) {
  if ((k & 7) != 0 || ((uintptr_t)W & 15) != 0 || batch < 2 || batch > COLS_MAX_BATCH ||
      rows < 1 || rows > COLS_MAX_ROWS || mlk_matvec_x_fits(k, batch))
    return 0;
  /* a slot's worth of rows, two buffers of x beside the norm's WARPS * BMAX sums, and one 16-byte
   * load of x a thread and batch row a block */
  int64_t kc = (MLK_STREAM_SLOT_BYTES / (2 * rows)) & ~(int64_t)63;
  int64_t kx = ((STAGE - WARPS * BMAX) / (2 * batch)) & ~(int64_t)63;
  kc = kc < kx ? kc : kx;
  kc = kc < 4 * MLK_BLOCK_THREADS ? kc : 4 * MLK_BLOCK_THREADS;
  return kc >= 64 ? (int)kc : 0;
}

/* Block j's loads: x's columns [c0, c0 + kn) of every batch row, one 16-byte load a row for
 * thread t (columns c0 + 4t ..), and the norm's weights of them. */
static inline __attribute__((always_inline)) void
cols_load(const Mv *m, const uint16_t *norm_w, int NB, uint32_t c0, uint32_t kn, uint32_t tid,
          F4 *v, uint32_t *nw) {
  uint32_t i = 4 * tid;
  if (i < kn) {
    if (norm_w) {
      const uint32_t *q = (const uint32_t *)(const void *)(norm_w + c0 + i);
      nw[0] = q[0], nw[1] = q[1];
    }
#pragma unroll
    for (int b = 0; b < NB; b++)
      if (b < m->nb)
        v[b] = *(const F4 *)(m->x + b * m->k + c0 + i);
  }
}

/* ... and their stores into buffer `buf` ([nb][kc], the vector path's layout), times the norm's
 * weights, the sums of squares gathered. */
static inline __attribute__((always_inline)) void
cols_store(const Mv *m, const uint16_t *norm_w, int NB, MLK_SHARED float *buf, uint32_t kc,
           uint32_t kn, uint32_t tid, const F4 *v, const uint32_t *nw, float *sq) {
  uint32_t i = 4 * tid;
  if (i < kn) {
#pragma unroll
    for (int b = 0; b < NB; b++) {
      if (b < m->nb)
        *(MLK_SHARED F4 *)(buf + b * kc + perm(i)) = stage_item(v[b], nw, norm_w != 0, &sq[b]);
    }
  }
}

static inline __attribute__((always_inline)) void
stream_cols(const uint16_t *norm_w, float eps, Mv *m, int NB, uint32_t kc) {
  uint32_t tid = mlk_tid_here(), warp = tid >> 5, lane = tid & 31;
  uint32_t uk = (uint32_t)m->k, urows = (uint32_t)m->rows, unb = (uint32_t)m->nb;
  uint32_t nblk = (uk + kc - 1) / kc;
  MLK_SHARED float *buf0 = mlk_tile_smem, *buf1 = mlk_tile_smem + NB * kc;
  MLK_SHARED float *ss = mlk_tile_smem + 2 * NB * kc; /* WARPS * NB sums of squares */
  float sq[BMAX];
#pragma unroll
  for (int b = 0; b < NB; b++)
    sq[b] = 0.0f;
  F4 v[BMAX];
  uint32_t nw[2] = {0, 0};
  cols_load(m, norm_w, NB, 0, uk < kc ? uk : kc, tid, v, nw);
  cols_store(m, norm_w, NB, buf0, kc, uk < kc ? uk : kc, tid, v, nw, sq);
  if (nblk > 1)
    cols_load(m, norm_w, NB, kc, uk - kc < kc ? uk - kc : kc, tid, v, nw);
  __nvvm_barrier_sync(0);
  mlk_dev_trace_phase(MLK_TRACE_STAGED);
  /* rows warp and warp + WARPS: a unit of two as in stream_rows (each x value read feeds both) */
  uint32_t ra = warp, rb = warp + WARPS;
  int has_a = ra < urows, has_b = rb < urows;
  float acc[2 * BMAX];
#pragma unroll
  for (int j = 0; j < 2 * NB; j++)
    acc[j] = 0.0f;
  MlkStreamCursor cur = mlk_stream_cursor();
  for (uint32_t j = 0; j < nblk; j++) {
    uint32_t c0 = j * kc, kn = uk - c0 < kc ? uk - c0 : kc, K8 = kn >> 3;
    const MLK_SHARED float *xb = j & 1 ? buf1 : buf0;
    const MLK_SHARED uint16_t *slot = mlk_stream_wait(&cur);
    if (j == 0)
      mlk_dev_trace_phase(MLK_TRACE_FIRST);
    if (has_a) {
      const MLK_SHARED V4 *wa = (const MLK_SHARED V4 *)(slot + ra * kc);
      const MLK_SHARED V4 *wb = has_b ? (const MLK_SHARED V4 *)(slot + rb * kc) : wa;
#pragma unroll 4
      for (uint32_t c = lane; c < K8; c += 32) {
        V4 va = wa[c], vb = wb[c];
        U4 w0 = {va.x, va.y, va.z, va.w}, w1 = {vb.x, vb.y, vb.z, vb.w};
        uint32_t off = ((c >> 3) << 6) | ((c & 7u) << 2);
#pragma unroll
        for (int b = 0; b < NB; b++) {
          if ((uint32_t)b < unb) {
            const MLK_SHARED float *xr = xb + b * kc + off;
            F4 x0 = *(const MLK_SHARED F4 *)xr;
            F4 x1 = *(const MLK_SHARED F4 *)(xr + 32);
            acc[b] += dot8(w0, x0, x1);
            acc[NB + b] += dot8(w1, x0, x1);
          }
        }
      }
    }
    if (j + 1 < nblk) { /* block j + 1 into the other buffer (free since chunk j - 1's release) */
      uint32_t c1 = c0 + kc, kn1 = uk - c1 < kc ? uk - c1 : kc;
      cols_store(m, norm_w, NB, j & 1 ? buf0 : buf1, kc, kn1, tid, v, nw, sq);
      if (j + 2 < nblk)
        cols_load(m, norm_w, NB, c1 + kc, uk - c1 - kc < kc ? uk - c1 - kc : kc, tid, v, nw);
    }
    mlk_stream_release(&cur);
  }
  if (norm_w) {
#pragma unroll
    for (int b = 0; b < NB; b++) {
      float q = sq[b];
      for (int off = 16; off > 0; off >>= 1)
        q += __nvvm_shfl_sync_bfly_f32(0xffffffffu, q, off, 0x1f);
      if (lane == 0)
        ss[warp * NB + b] = q;
    }
    __nvvm_barrier_sync(0);
  }
  uint32_t lb = lane & (uint32_t)(NB - 1), lr = (lane / (uint32_t)NB) & 1u;
  float sum = reduce_scatter(acc, 2 * NB, lane);
  uint32_t r = lr ? rb : ra;
  if (lane < (uint32_t)(2 * NB) && lb < unb && r < urows) {
    float rs = norm_w ? rscale(ss, lb, NB, uk, eps) : 1.0f;
    emit_pre(m, 0, r, lb, sum * rs);
  }
  mlk_dev_trace_phase(MLK_TRACE_BODY);
}



#define MLK_MATVEC_COLS_VARIANT(name, NB)                                                          \
  static __attribute__((noinline)) void name(                                                      \
      float *out, const float *x, const uint16_t *W, const float *res, const uint16_t *norm_w,     \
      const uint16_t *bias, float eps, int64_t n, int64_t k, int64_t row0, int64_t rows,           \
      int64_t batch, uint32_t kc, int fn) {                                                        \
    int64_t kp = (k + 63) & ~(int64_t)63;                                                          \
    Mv m = {out, x, W, res, bias, n, k, row0, rows, 0, batch, 0, k, kp, fn, 1, 1};                 \
    stream_cols(norm_w, eps, &m, NB, kc);                                                          \
  }
MLK_MATVEC_COLS_VARIANT(matvec_cols_b2, 2)
MLK_MATVEC_COLS_VARIANT(matvec_cols_b4, 4)



#define MLK_MATVEC_STREAM_VARIANT(name, NB, R)                                                     \
  static __attribute__((noinline)) void name(                                                      \
      float *out, const float *x, const uint16_t *W, const float *res, const uint16_t *norm_w,     \
      const uint16_t *bias, float eps, int64_t n, int64_t k, int64_t row0, int64_t rows,           \
      int64_t batch, int fn) {                                                                     \
    int64_t kp = (k + 63) & ~(int64_t)63;                                                          \
    Mv m = {out, x, W, res, bias, n, k, row0, rows, 0, batch, 0, k, kp, fn, 1, 1};                 \
    stream_rows(norm_w, eps, &m, NB, R);                                                           \
  }
/* R = 2 only where a unit's split partial sums fit `part` (units x warps per unit <= WARPS, so
 * rows x S x NB <= 2 * WARPS * NB <= RED for NB <= 4) */
MLK_MATVEC_STREAM_VARIANT(matvec_stream_b1, 1, 1)
MLK_MATVEC_STREAM_VARIANT(matvec_stream_b2, 2, 2)
MLK_MATVEC_STREAM_VARIANT(matvec_stream_b4, 4, 2)
MLK_MATVEC_STREAM_VARIANT(matvec_stream_b8, BMAX, 1)

void mlk_tile_matvec_prefetch(const uint16_t *W, int64_t n, int64_t k, int64_t row0, int64_t rows,
                              int64_t batch) {
  if (row0 + rows > n)
    rows = n - row0;
  /* None for the tensor-core path (batch >= MMA_MIN_BATCH): every block's prefetches of a large-
   * batch matvec (~32 MiB over the chip for Llama's gate) fill the memory system just as the tasks
   * stage x from L2, and the staging waits behind them; without them batch 16 and 64 measured
   * 5.1% and 3.6% faster on the H100, 2.6% and 2.5% on the H200 (docs/performance.md), the
   * weights then loaded by the tile's register window alone. */
  if (rows <= 0 || k <= 0 || batch >= MMA_MIN_BATCH)
    return;
  /* The task's rows are contiguous: one byte range, its start rounded down to 16 bytes. */
  uintptr_t a = (uintptr_t)(W + row0 * k), end = (uintptr_t)(W + (row0 + rows) * k);
  uintptr_t a16 = a & ~(uintptr_t)15;
  uint64_t bytes = (uint64_t)(end - a16 + 15) & ~(uint64_t)15;
  if (bytes > MLK_MATVEC_PREFETCH_BYTES)
    bytes = MLK_MATVEC_PREFETCH_BYTES;
#if MLK_SM >= 90
  /* One thread hands the whole range to the copy engine in 32 KiB requests (the block emulator
   * logs them). */
  if (mlk_tid() != 0)
    return;
  for (uint64_t off = 0; off < bytes; off += 32768)
    mlk_prefetch_l2((const void *)(a16 + off), (uint32_t)(bytes - off < 32768 ? bytes - off : 32768));
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
                     const uint16_t *norm_w, const uint16_t *bias, float eps, int64_t n, int64_t k,
                     int64_t row0, int64_t rows, int64_t batch, int fn) {
  if (row0 + rows > n)
    rows = n - row0;
  if (rows <= 0 || batch <= 0 || k <= 0) /* uniform */
    return;
  uint32_t kc; /* column blocks: the columns a block */
  if (mlk_stream_takes(W, k, batch)) { /* uniform: the weights come through shared memory */
    if (batch == 1)
      matvec_stream_b1(out, x, W, res, norm_w, bias, eps, n, k, row0, rows, batch, fn);
    else if (batch == 2)
      matvec_stream_b2(out, x, W, res, norm_w, bias, eps, n, k, row0, rows, batch, fn);
    else if (batch <= 4)
      matvec_stream_b4(out, x, W, res, norm_w, bias, eps, n, k, row0, rows, batch, fn);
    else
      matvec_stream_b8(out, x, W, res, norm_w, bias, eps, n, k, row0, rows, batch, fn);
  } else if ((kc = (uint32_t)mlk_stream_takes_cols(W, k, rows, batch)) != 0) {
    /* uniform: x too large to stage whole, the weights in column blocks from the ring */
    if (batch == 2)
      matvec_cols_b2(out, x, W, res, norm_w, bias, eps, n, k, row0, rows, batch, kc, fn);
    else
      matvec_cols_b4(out, x, W, res, norm_w, bias, eps, n, k, row0, rows, batch, kc, fn);
  } else if ((k & 7) != 0 || ((uintptr_t)W & 15) != 0)
    matvec_scalar(out, x, W, res, norm_w, bias, eps, n, k, row0, rows, batch, fn);
  else if (batch == 1 && rows >= 4 * WARPS) /* 16 weight loads in flight per lane */
    matvec_b1r4(out, x, W, res, norm_w, bias, eps, n, k, row0, rows, batch, fn);
  else if (batch == 1 && rows >= 2 * WARPS) /* 12, and every warp busy */
    matvec_b1r2(out, x, W, res, norm_w, bias, eps, n, k, row0, rows, batch, fn);
  else if (batch == 1)
    matvec_b1(out, x, W, res, norm_w, bias, eps, n, k, row0, rows, batch, fn);
  else if (batch == 2)
    matvec_b2(out, x, W, res, norm_w, bias, eps, n, k, row0, rows, batch, fn);
  else if (batch <= 4)
    matvec_b4(out, x, W, res, norm_w, bias, eps, n, k, row0, rows, batch, fn);
  else if (batch < MMA_MIN_BATCH)
    matvec_b8(out, x, W, res, norm_w, bias, eps, n, k, row0, rows, batch, fn);
  else /* W streamed once per 64 batch rows, tensor cores */
    matvec_mma(out, x, W, res, norm_w, bias, eps, n, k, row0, rows, batch, fn);
  /* No trailing barrier: the skeleton's mlk_dev_barrier follows every tile. */
}

/* ---- Split matvec: a slice of k on the tensor-core path, the group's merge by its last task ----
 *
 * At large batch a task of few rows stages all of x for a few weight rows (x / weight bytes = 2 *
 * batch / rows: 8 for Llama's down projection at batch 64). A group of tasks instead takes
 * `members` times the rows, each over a slice of k, so each stages 1 / members of x; the price is
 * the partial sums (batch x rows f32 a task) written to L2 and read back by the merge. */

/* The merge: out = epilogue(scale[b] * the sum of the slices' partials, in slice order), every
 * thread a column group of 4 (vec) or 1 at a time; the scales (1 without a norm) from the slices'
 * sums of squares, in shared memory. */
static void split_merge(float *out, const float *res, const uint16_t *norm_w,
                        const uint16_t *bias, float eps, int64_t n, int64_t k, int64_t row0,
                        int64_t rows, int64_t batch, int fn, int64_t split, int64_t first,
                        int64_t members, const float *scratch) {
  uint32_t tid = mlk_tid_here(), R = (uint32_t)rows, M = (uint32_t)members;
  MLK_SHARED float *scale = mlk_tile_smem;
  int vec = ((n | row0 | rows) & 3) == 0 && ((uintptr_t)scratch & 15) == 0;
  uint32_t per = vec ? 4 : 1, units = R / per;
  for (int64_t b0 = 0; b0 < batch; b0 += STAGE) {
    uint32_t nb = (uint32_t)mlk_min64(batch - b0, STAGE);
    for (uint32_t b = tid; b < nb; b += MLK_BLOCK_THREADS) {
      float sc = 1.0f;
      if (norm_w) {
        float ss = 0.0f;
        for (uint32_t j = 0; j < M; j++)
          ss += mlk_ld_cg(scratch + mlk_matvec_ss_offset(split, n, batch, first + j) + b0 + b);
        sc = 1.0f / __builtin_sqrtf(ss / (float)k + eps);
      }
      scale[b] = sc;
    }
    __nvvm_barrier_sync(0);
    for (uint32_t i = tid; i < nb * units; i += MLK_BLOCK_THREADS) {
      uint32_t b = i / units, c = (i - b * units) * per;
      int64_t o = (b0 + b) * n + row0 + c; /* of out, and of slice 0's partials */
      float sc = scale[b];
      if (vec) {
        mlk_f4 v[MLK_MATVEC_MAX_SPLIT];
#pragma unroll
        for (uint32_t j = 0; j < MLK_MATVEC_MAX_SPLIT; j++)
          if (j < M)
            v[j] = mlk_ld_cg_f4(scratch + (int64_t)j * batch * n + o);
        mlk_f4 sum = v[0];
#pragma unroll
        for (uint32_t j = 1; j < MLK_MATVEC_MAX_SPLIT; j++)
          if (j < M)
            sum += v[j];
        float e[4] = {sum.x, sum.y, sum.z, sum.w};
#pragma unroll
        for (int q = 0; q < 4; q++)
          out[o + q] = epi(e[q] * sc, res, bias, row0 + c + q, o + q, fn);
      } else {
        float sum = 0.0f;
        for (uint32_t j = 0; j < M; j++)
          sum += mlk_ld_cg(scratch + (int64_t)j * batch * n + o);
        out[o] = epi(sum * sc, res, bias, row0 + c, o, fn);
      }
    }
    __nvvm_barrier_sync(0); /* scale[] is read before the next pass writes it */
  }
}

/* Inlined into the split form of each split matvec's code variant (codegen.c), which is compiled for
 * the variant's constants and runs only where the task splits: 6% faster at batch 64 and 3% at batch 16
 * on the H200 than one out-of-line copy for all (fifteenth session). */
__attribute__((always_inline)) int
mlk_tile_matvec_split(float *out, const float *x, const uint16_t *W, const float *res,
                      const uint16_t *norm_w, const uint16_t *bias, float eps, int64_t n, int64_t k,
                      int64_t row0, int64_t rows, int64_t batch, int fn, int64_t split,
                      int64_t first, int64_t members, int64_t slice, float *scratch,
                      uint32_t *arrive) {
  int64_t k0, k1;
  mlk_matvec_slice(k, members, slice, &k0, &k1);
  /* the slice on the tensor-core path; the compiler splits only matvecs whose k is a multiple of
   * 8 (validated), so W's slice rows are 16-byte aligned whenever W is */
  matvec_mma_raw(scratch + slice * batch * n, x + k0, W + k0, norm_w ? norm_w + k0 : 0, eps, n, k,
                 k1 - k0, row0, rows, batch,
                 scratch + mlk_matvec_ss_offset(split, n, batch, first + slice));
  if (!mlk_tile_group_arrive(arrive, (uint32_t)members))
    return 0;
  split_merge(out, res, norm_w, bias, eps, n, k, row0, rows, batch, fn, split, first, members,
              scratch);
  return 1;
}
