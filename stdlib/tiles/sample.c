/* sample.c: the sampling tile (MLK_OP_SAMPLE in mlk_desc.h), one task for every batch row.
 *
 * Each row takes its parameters from its row of the sampling tensor (mlk_sample_row_params): a
 * greedy row (temperature 0) selects one candidate and stops after step 2. A row is one block's
 * work, in four steps:
 *  1. Radix select of the K-th best column (K = min(top_k, k) <= MLK_SAMPLE_MAX_TOP_K): 4 passes
 *     over the row, each a 256-bucket histogram of one byte of the rank keys (the logits as
 *     order-preserving unsigned integers, NaN lowest) among the columns that match the bytes
 *     chosen so far, then a block scan of the buckets from the top finds the byte of the K-th.
 *     When more columns share the K-th key than are still wanted, 4 more passes select on the
 *     index key ~i among those columns, so that ties go to the lower indices as in the reference.
 *     Lanes of a warp that hit the same bucket add once (match.any).
 *  2. Gather of exactly K candidates (packed key << 32 | ~index) and a bitonic sort of them in
 *     shared memory, largest first: the reference's order exactly.
 *  3. exp((x - max) / temperature) of each candidate (ex2.approx) and their inclusive prefix sum
 *     (4 consecutive candidates a thread, then a block scan).
 *  4. The top-p cut J and the pick, each "the first r with ...", found as a block minimum.
 * The steps' results are exact except the sums of step 3, which round differently from the
 * reference's sequential ones (see mlk_ref_sample_row's margin).
 *
 * Shared scratch (mlk_tile_smem, in 4-byte words): 256 histogram buckets, a few control words,
 * per-warp partials, then 2*1024 words of candidates and 1024 prefix sums (3584 words in all).
 * Histogram and candidate words are accessed through may_alias types.
 */
#include "mlk_tiles.h"

#define WARPS (MLK_BLOCK_THREADS / 32)
#define MAXK MLK_SAMPLE_MAX_TOP_K
#define BIG 0x7fffffff
#define SAMPLE_U 8 /* loads of a row in flight per thread in its passes over the row */

typedef uint32_t __attribute__((may_alias)) su32;
typedef uint64_t __attribute__((may_alias)) su64;

extern MLK_SHARED float mlk_tile_smem[MLK_MATVEC_MAX_K] __attribute__((aligned(16)));

enum {
  S_HIST = 0,              /* 256 bucket counts */
  S_CTRL = 256,            /* a digit's decision: digit, still wanted, bucket count; gather slot */
  S_WARP = 264,            /* per-warp sums of a scan */
  S_MIN1 = 272,            /* per-warp minima: top-p cut */
  S_MIN2 = 280,            /* per-warp minima: pick */
  S_CAND = 512,            /* MAXK packed candidates (u64, 8-byte aligned) */
  S_CUM = S_CAND + 2 * MAXK, /* MAXK prefix sums */
  S_END = S_CUM + MAXK
};
_Static_assert(S_END <= MLK_MATVEC_MAX_K, "the sample scratch fits mlk_tile_smem");
_Static_assert(MAXK == 4 * MLK_BLOCK_THREADS, "4 candidates a thread in the prefix sum");
_Static_assert(MLK_BLOCK_THREADS == 256, "a thread per histogram bucket");

static inline MLK_SHARED su32 *w32(int off) { return (MLK_SHARED su32 *)(mlk_tile_smem + off); }

/* The rank key of a logit, as sample_key in ref_tiles.c: larger keys rank first. */
static inline uint32_t rank_key(float v) {
  if (v != v)
    return 0;
  union { float f; uint32_t u; } c = {v == 0.0f ? 0.0f : v};
  return (c.u & 0x80000000u) ? ~c.u : c.u | 0x80000000u;
}

/* Exclusive block scan of v in f32, in a fixed order. */
static inline float block_excl_scan_f32(float v, uint32_t lane, uint32_t warp) {
  for (int d = 1; d < 32; d <<= 1) {
    float o = __nvvm_shfl_sync_up_f32(0xffffffffu, v, d, 0);
    if (lane >= (uint32_t)d)
      v += o;
  }
  float e = __nvvm_shfl_sync_up_f32(0xffffffffu, v, 1, 0);
  if (lane == 0)
    e = 0.0f;
  MLK_SHARED float *ws = mlk_tile_smem + S_WARP;
  if (lane == 31)
    ws[warp] = v;
  __nvvm_barrier_sync(0);
  float pre = 0.0f;
  for (uint32_t i = 0; i < warp; i++)
    pre += ws[i];
  return pre + e;
}

/* Minimum over the block, through the per-warp slots at `off`. */
static inline int32_t block_min(int32_t v, uint32_t lane, uint32_t warp, int off) {
  for (int d = 16; d > 0; d >>= 1) {
    int32_t o = __nvvm_shfl_sync_bfly_i32(0xffffffffu, v, d, 0x1f);
    v = o < v ? o : v;
  }
  MLK_SHARED su32 *ws = w32(off);
  if (lane == 0)
    ws[warp] = (uint32_t)v;
  __nvvm_barrier_sync(0);
  int32_t r = (int32_t)ws[0];
  for (int i = 1; i < WARPS; i++)
    r = (int32_t)ws[i] < r ? (int32_t)ws[i] : r;
  return r;
}

/* One byte of the radix select: the histogram of byte `shift` of the keys (by_index: of the
 * index keys ~i of the columns whose rank key is `tkey`) that equal `prefix` under `mask`, then
 * the bucket holding the want-th largest. Leaves in ctrl, for every thread after the barrier:
 * the byte, how many of that bucket are still wanted, the bucket's count; zeroes the gather slot. */
__attribute__((noinline)) static void radix_byte(const float *x, int64_t k, int by_index,
                                                 uint32_t tkey, uint32_t prefix, uint32_t mask,
                                                 int shift, uint32_t want) {
  uint32_t tid = mlk_tid_here(), lane = tid & 31;
  MLK_SHARED su32 *hist = w32(S_HIST), *ctrl = w32(S_CTRL);
  hist[tid] = 0;
  __nvvm_barrier_sync(0);
  /* uniform trip count (match.any); a row is one long read: SAMPLE_U loads in flight per thread */
  for (int64_t i0 = 0; i0 < k; i0 += SAMPLE_U * MLK_BLOCK_THREADS) {
    float xv[SAMPLE_U];
#pragma unroll
    for (int u = 0; u < SAMPLE_U; u++) {
      int64_t i = i0 + u * MLK_BLOCK_THREADS + tid;
      xv[u] = i < k ? x[i] : 0.0f;
    }
#pragma unroll
    for (int u = 0; u < SAMPLE_U; u++) {
      int64_t i = i0 + u * MLK_BLOCK_THREADS + tid;
      uint32_t d = 256;
      if (i < k) {
        uint32_t key = rank_key(xv[u]);
        uint32_t v = by_index ? ~(uint32_t)i : key;
        if ((!by_index || key == tkey) && (v & mask) == prefix)
          d = (v >> shift) & 255u;
      }
      uint32_t peers = __nvvm_match_any_sync_i32(0xffffffffu, (int)d);
      if (d < 256 && lane == (uint32_t)__builtin_ctz(peers))
        __atomic_fetch_add(&hist[d], (uint32_t)__builtin_popcount(peers), __ATOMIC_RELAXED);
    }
  }
  __nvvm_barrier_sync(0);
  /* thread t holds bucket 255 - t: the inclusive scan counts the columns from the top */
  uint32_t h = hist[255 - tid];
  uint32_t incl = mlk_block_scan_u32(h, w32(S_WARP));
  if (incl - h < want && want <= incl) {
    ctrl[0] = 255 - tid;
    ctrl[1] = want - (incl - h);
    ctrl[2] = h;
    ctrl[3] = 0;
  }
  __nvvm_barrier_sync(0);
}

/* Gathers the K candidates: rank key > tkey, or == tkey with index key >= ithr. Then sorts them,
 * largest first. */
__attribute__((noinline)) static void gather_sort(const float *x, int64_t k, int64_t K,
                                                  uint32_t tkey, uint32_t ithr) {
  uint32_t tid = mlk_tid_here();
  MLK_SHARED su32 *ctrl = w32(S_CTRL);
  MLK_SHARED su64 *cand = (MLK_SHARED su64 *)w32(S_CAND);
  for (int64_t i0 = tid; i0 < k; i0 += SAMPLE_U * MLK_BLOCK_THREADS) {
    float xv[SAMPLE_U];
#pragma unroll
    for (int u = 0; u < SAMPLE_U; u++) {
      int64_t i = i0 + u * MLK_BLOCK_THREADS;
      xv[u] = i < k ? x[i] : 0.0f;
    }
#pragma unroll
    for (int u = 0; u < SAMPLE_U; u++) {
      int64_t i = i0 + u * MLK_BLOCK_THREADS;
      if (i < k) {
        uint32_t key = rank_key(xv[u]), ik = ~(uint32_t)i;
        if (key > tkey || (key == tkey && ik >= ithr)) {
          uint32_t slot = __atomic_fetch_add(&ctrl[3], 1u, __ATOMIC_RELAXED);
          cand[slot] = (uint64_t)key << 32 | ik;
        }
      }
    }
  }
  uint32_t P = 1;
  while (P < (uint32_t)K)
    P <<= 1;
  for (uint32_t r = (uint32_t)K + tid; r < P; r += MLK_BLOCK_THREADS)
    cand[r] = 0; /* below every candidate: rank key 0 and index key ~i != 0 */
  __nvvm_barrier_sync(0);
  for (uint32_t size = 2; size <= P; size <<= 1)
    for (uint32_t stride = size >> 1; stride > 0; stride >>= 1) {
      for (uint32_t q = tid; q < P / 2; q += MLK_BLOCK_THREADS) {
        uint32_t j = ((q & ~(stride - 1)) << 1) | (q & (stride - 1)), l = j + stride;
        uint64_t a = cand[j], c = cand[l];
        if ((j & size) == 0 ? a < c : a > c) {
          cand[j] = c;
          cand[l] = a;
        }
      }
      __nvvm_barrier_sync(0);
    }
}

__attribute__((noinline)) static void sample_row(int32_t *out, const float *x, float u, int64_t k,
                                                 int64_t K, float temperature, float top_p) {
  uint32_t tid = mlk_tid_here(), lane = tid & 31, warp = tid >> 5;
  MLK_SHARED su32 *ctrl = w32(S_CTRL);
  /* 1. the K-th best rank key, and the index key of the last of its ties that is taken */
  uint32_t prefix = 0, mask = 0, want = (uint32_t)K, tkey = 0, ithr = 0;
  if (K == k) { /* every column: tkey 0, ithr 0 take them all */
    if (tid == 0)
      ctrl[3] = 0;
    __nvvm_barrier_sync(0);
  } else {
    for (int shift = 24; shift >= 0; shift -= 8) {
      radix_byte(x, k, 0, 0, prefix, mask, shift, want);
      prefix |= ctrl[0] << shift;
      mask |= 255u << shift;
      want = ctrl[1];
    }
    tkey = prefix;
  }
  if (K < k && want < ctrl[2]) {
    prefix = mask = 0;
    for (int shift = 24; shift >= 0; shift -= 8) {
      radix_byte(x, k, 1, tkey, prefix, mask, shift, want);
      prefix |= ctrl[0] << shift;
      mask |= 255u << shift;
      want = ctrl[1];
    }
    ithr = prefix;
  }
  /* 2. */
  gather_sort(x, k, K, tkey, ithr);
  MLK_SHARED su64 *cand = (MLK_SHARED su64 *)w32(S_CAND);
  int32_t best = (int32_t)~(uint32_t)cand[0];
  float m = x[best];
  if (temperature == 0.0f || !__builtin_isfinite(m)) {
    if (tid == 0)
      *out = best;
    return;
  }
  /* 3. */
  float scale = 1.4426950408889634f / temperature, local[4], s = 0.0f;
#pragma unroll
  for (int j = 0; j < 4; j++) {
    int64_t r = 4 * (int64_t)tid + j;
    float p = 0.0f;
    if (r < K) {
      float v = x[(int32_t)~(uint32_t)cand[r]];
      p = v == v ? __nvvm_ex2_approx_f((v - m) * scale) : 0.0f;
    }
    s += p;
    local[j] = s;
  }
  float pre = block_excl_scan_f32(s, lane, warp);
  MLK_SHARED float *cum = mlk_tile_smem + S_CUM;
#pragma unroll
  for (int j = 0; j < 4; j++)
    if (4 * (int64_t)tid + j < K)
      cum[4 * tid + j] = pre + local[j];
  __nvvm_barrier_sync(0);
  /* 4. */
  int32_t J = (int32_t)K - 1;
  if (top_p < 1.0f) {
    float thr = top_p * cum[K - 1];
    int32_t f = BIG;
    for (int j = 3; j >= 0; j--) {
      int32_t r = 4 * (int32_t)tid + j;
      if (r < K && cum[r] >= thr)
        f = r;
    }
    f = block_min(f, lane, warp, S_MIN1);
    J = f < J ? f : J;
  }
  float target = u * cum[J];
  int32_t f = BIG;
  for (int j = 3; j >= 0; j--) {
    int32_t r = 4 * (int32_t)tid + j;
    if (r <= J && cum[r] > target)
      f = r;
  }
  f = block_min(f, lane, warp, S_MIN2);
  if (tid == 0)
    *out = (int32_t)~(uint32_t)cand[f < J ? f : J];
}

void mlk_tile_sample(int32_t *out, const float *x, const float *params, int64_t k,
                     float temperature, int64_t top_k, float top_p, int64_t batch) {
  for (int64_t b = 0; b < batch; b++) {
    MlkSampleParams p =
        mlk_sample_row_params(params + b * MLK_SAMPLE_PARAMS, temperature, top_k, top_p);
    int64_t K = p.temperature == 0.0f ? 1 : p.top_k < k ? p.top_k : k;
    __nvvm_barrier_sync(0); /* the previous row's reads of the scratch are done */
    sample_row(out + b, x + b * k, p.u, k, K, p.temperature, p.top_p);
  }
}
