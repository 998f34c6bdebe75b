/* attention.c: the paged KV cache tiles, kv_append and decode attention.
 *
 * Pool layout (mlk_cache_offset): [layers][pages][2 (K, V)][kv_heads][page][head_dim] bf16. The
 * cache is written by kv_append tasks of the same launch, so attention reads it with ordinary
 * (coherent) loads, never the non-coherent path.
 *
 * Attention, one task = nkvh kv heads, every batch row. For a row b and kv head g, the positions
 * 0..pos[b] are split over the whole block: a group of G lanes (G = head_dim/8 rounded up to a
 * power of two) holds one position's K and V row, 8 dims per lane in one 16-byte load each, and
 * computes its scores against up to HC = 4 query heads of g at once (q in registers), so each
 * K/V row is read once per pass of 4 query heads (Llama 3 groups of 4: once). Each group keeps
 * an online softmax (running max m, sum l, weighted V sum) per query head, in base 2 (q is
 * pre-scaled by log2(e)/sqrt(head_dim)), over U consecutive positions per step (U = 8, 4, 2 for
 * 1, 2, 3-4 heads a pass: 16, 8, 4 16-byte loads in flight per lane). At the end the groups of a
 * warp merge by shuffles and the 8 warps merge through shared memory. The variants are separate
 * functions sized to stay free of spills when ptxas compiles them as called (ABI) functions,
 * which is what a megakernel with many attention ops gets (more heads per pass spill there).
 * head_dim % 8 != 0, head_dim > 256 or a misaligned pool take a slow, simple path (a warp per
 * query head, the running output kept in `out` itself).
 *
 * Split attention (mlk_desc.h): a task is nkvh kv heads and one slot, which holds at most one
 * chunk of each row's positions (the rows' chunks go round the slots, so that at any batch every
 * task has its share); the same code over [tlo, tlo + T) writes the chunk's partials
 * (unnormalized o, max m, sum l) instead of o / l, and attn_reduce merges the slots.
 */
#include "mlk_tiles.h"

#define WARPS (MLK_BLOCK_THREADS / 32)
#define HC 4   /* query heads per pass */
#define UMAX 8 /* consecutive positions per group and step: 8 / 4 / 2 for 1 / 2 / 3-4 heads */
#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f
#define NEG_INF (-__builtin_inff())

extern MLK_SHARED float mlk_tile_smem[MLK_MATVEC_MAX_K] __attribute__((aligned(16)));

typedef struct __attribute__((aligned(16))) U4 {
  uint32_t a, b, c, d;
} U4;

typedef float F4 __attribute__((ext_vector_type(4)));

/* An ordinary 16-byte global load (the cache is written during the launch). */
static inline U4 ld_cache16(const uint16_t *p) {
#if defined(__NVPTX__)
  return *(const __attribute__((address_space(1))) U4 *)p;
#else
  return *(const U4 *)(const void *)p;
#endif
}

static inline float ex2(float v) { return __nvvm_ex2_approx_f(v); }

static inline float warp_sum(float v) {
  for (int off = 16; off > 0; off >>= 1)
    v += __nvvm_shfl_sync_bfly_f32(0xffffffffu, v, off, 0x1f);
  return v;
}

/* f32 -> bf16, round to nearest even; NaN stays NaN (quieted, sign and top payload kept). */
static inline uint16_t f32_to_bf16(float f) {
  union { float f; uint32_t u; } c = {f};
  uint32_t u = c.u;
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return (uint16_t)((u >> 16) | 0x40u);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* Element offset of (layer, physical page, kv, head, slot), as mlk_cache_offset. */
static inline int64_t cache_off(int64_t kv_heads, int64_t head_dim, int64_t page, int64_t npages,
                                int64_t layer, int64_t pg, int kv, int64_t head, int64_t slot) {
  return ((((layer * npages + pg) * 2 + kv) * kv_heads + head) * page + slot) * head_dim;
}

void mlk_tile_kv_append(uint16_t *cache, const float *k, const float *v, const int32_t *pos,
                        const int32_t *pages, int64_t kv_heads, int64_t head_dim, int64_t page,
                        int64_t pages_per_seq, int64_t npages, int64_t layer, int64_t head0,
                        int64_t nheads, int64_t batch, float theta, float factor,
                        float low_freq_factor, float high_freq_factor, int64_t original_max_pos) {
  if (nheads <= 0 || head_dim <= 0 || page <= 0)
    return;
  uint32_t tid = mlk_tid();
  /* a fused rope rotates each key as the rope op would (rope.c) */
  int rope = theta > 0.0f;
  int tab = rope && mlk_rope_freqs(head_dim, theta, factor, low_freq_factor, high_freq_factor,
                                   original_max_pos);
  uint32_t half = (uint32_t)(head_dim / 2);
  uint32_t per = (uint32_t)(nheads * head_dim), hd = (uint32_t)head_dim;
  uint32_t total = (uint32_t)batch * per;
  int64_t vstride = kv_heads * page * head_dim; /* V of a head follows K by this */
  /* Every (row, element) of the task at once: a task is one kv head (64 elements a row in Llama),
   * and a row at a time kept three quarters of the block idle and paid each row's L2 round trips
   * (position, page, k and v) one row after another: 49 us at batch 64 on the H100. (Four
   * elements a thread with their loads issued together measured the same at batch 64 and 1.3 us
   * slower at batch 1.) */
  for (uint32_t i = tid; i < total; i += MLK_BLOCK_THREADS) {
    uint32_t b = i / per, e = i - b * per, h = e / hd, d = e - h * hd;
    int32_t p = pos[b];
    /* A position outside the page table or a page outside the pool is skipped, never written.
     * (32-bit divisions: page <= MLK_MAX_CACHE_DIM.) */
    uint32_t pi = (uint32_t)p / (uint32_t)page;
    if (p < 0 || pi >= pages_per_seq)
      continue;
    int64_t pg = pages[b * pages_per_seq + pi];
    if (pg < 0 || pg >= npages)
      continue;
    int64_t o = cache_off(kv_heads, head_dim, page, npages, layer, pg, 0, head0,
                          (uint32_t)p - pi * (uint32_t)page) +
                (int64_t)h * page * head_dim + d;
    const float *kr = k + b * kv_heads * head_dim + head0 * head_dim;
    const float *vr = v + b * kv_heads * head_dim + head0 * head_dim;
    float key = rope ? mlk_rope_elem(kr + h * hd, d, half, (int32_t)p, tab, head_dim, theta, factor,
                                     low_freq_factor, high_freq_factor, original_max_pos)
                     : kr[e];
    cache[o] = f32_to_bf16(key);
    cache[o + vstride] = f32_to_bf16(vr[e]);
  }
}

static inline float dot8(U4 w, const float *q) {
  float s = mlk_bf16_lo(w.a) * q[0];
  s += mlk_bf16_hi(w.a) * q[1];
  s += mlk_bf16_lo(w.b) * q[2];
  s += mlk_bf16_hi(w.b) * q[3];
  s += mlk_bf16_lo(w.c) * q[4];
  s += mlk_bf16_hi(w.c) * q[5];
  s += mlk_bf16_lo(w.d) * q[6];
  s += mlk_bf16_hi(w.d) * q[7];
  return s;
}

static inline void unpack8(U4 w, float *v) {
  v[0] = mlk_bf16_lo(w.a), v[1] = mlk_bf16_hi(w.a);
  v[2] = mlk_bf16_lo(w.b), v[3] = mlk_bf16_hi(w.b);
  v[4] = mlk_bf16_lo(w.c), v[5] = mlk_bf16_hi(w.c);
  v[6] = mlk_bf16_lo(w.d), v[7] = mlk_bf16_hi(w.d);
}

typedef struct Att {
  float *obase; /* outputs of the kv head: see attend_vec */
  const float *q;
  const uint16_t *cache;
  const int32_t *pages;
  int64_t kv_heads, head_dim, page, pages_per_seq, npages, layer, heads, gs;
} Att;

/* Query heads [h0, h0 + hn) (hn <= NH <= HC) of kv head g, batch row b, the T > 0 positions
 * [tlo, tlo + T). NH and PART are constants after inlining: guards on h < hn vanish when hn == NH.
 * PART = 0: the normalized outputs of query head h0 + h of g at obase + (h0 + h) * head_dim.
 * PART = 1: the partials of a split (mlk_desc.h): obase is the (g, chunk) record, o of head
 * h0 + h at obase + (h0 + h) * head_dim, m at obase + gs * head_dim + h0 + h (natural units), l
 * gs further. */
static inline __attribute__((always_inline)) void
attend_vec(const Att *A, int NH, int PART, int64_t hn, int64_t b, int64_t g, int64_t h0,
           uint32_t tlo, uint32_t T) {
  uint32_t tid = mlk_tid_here(), warp = tid >> 5, lane = tid & 31;
  int64_t hd = A->head_dim;
  uint32_t G = 1;
  while (G * 8 < (uint32_t)hd)
    G <<= 1;
  uint32_t P = 32 / G, sl = lane & (G - 1), d0 = sl * 8;
  int active = d0 < (uint32_t)hd;
  const int U = NH == 1 ? 8 : NH == 2 ? 4 : 2;
  uint32_t page = (uint32_t)A->page;
  int64_t vstride = A->kv_heads * A->page * hd;
  const int32_t *ptab = A->pages + b * A->pages_per_seq;
  int64_t qh = g * A->gs + h0; /* first query head of this pass */
  const float *qrow = A->q + (b * A->heads + qh) * hd;

  float scale = LOG2E / __builtin_sqrtf((float)hd);
  float qr[HC][8], acc[HC][8], m[HC], l[HC];
#pragma unroll
  for (int h = 0; h < NH; h++) {
#pragma unroll
    for (int i = 0; i < 8; i++) {
      qr[h][i] = (h < hn && active) ? qrow[h * hd + d0 + i] * scale : 0.0f;
      acc[h][i] = 0.0f;
    }
    m[h] = NEG_INF;
    l[h] = 0.0f;
  }

  /* K of (page pg, slot) at pg * pstride + base + slot * hd; V one vstride further */
  int64_t pstride = 2 * A->kv_heads * A->page * hd;
  const uint16_t *base = A->cache + A->layer * A->npages * pstride + g * A->page * hd + d0;
  uint32_t step = WARPS * P * U;
  for (uint32_t tw = warp * P * U; tw < T; tw += step) { /* warp-uniform trip count */
    uint32_t t0 = tw + (lane / G) * U; /* relative to tlo */
    uint32_t ta = tlo + t0, pi = ta / page, slot = ta - pi * page;
    U4 kr[UMAX], vr[UMAX];
#pragma unroll
    for (int u = 0; u < U; u++) {
      if (t0 + u < T && active) {
        const uint16_t *kp = base + ptab[pi] * pstride + (int64_t)slot * hd;
        kr[u] = ld_cache16(kp);
        vr[u] = ld_cache16(kp + vstride);
      } else {
        kr[u] = (U4){0, 0, 0, 0};
        vr[u] = kr[u];
      }
      if (++slot == page) {
        slot = 0;
        pi++;
      }
    }
    float s[UMAX][HC];
#pragma unroll
    for (int u = 0; u < U; u++)
#pragma unroll
      for (int h = 0; h < NH; h++)
        s[u][h] = h < hn ? dot8(kr[u], qr[h]) : 0.0f;
    for (uint32_t off = 1; off < G; off <<= 1)
#pragma unroll
      for (int u = 0; u < U; u++)
#pragma unroll
        for (int h = 0; h < NH; h++)
          if (h < hn)
            s[u][h] += __nvvm_shfl_sync_bfly_f32(0xffffffffu, s[u][h], off, 0x1f);
    float vf[UMAX][8];
#pragma unroll
    for (int u = 0; u < U; u++)
      unpack8(vr[u], vf[u]);
#pragma unroll
    for (int h = 0; h < NH; h++) {
      if (h >= hn)
        continue;
      float mx = NEG_INF;
#pragma unroll
      for (int u = 0; u < U; u++)
        if (t0 + u < T && s[u][h] > mx)
          mx = s[u][h];
      if (mx == NEG_INF) /* no position of this group in this step (uniform in the group) */
        continue;
      float mn = m[h] > mx ? m[h] : mx;
      float c = ex2(m[h] - mn); /* 0 while m is still -inf */
      float p[UMAX], ps = 0.0f;
#pragma unroll
      for (int u = 0; u < U; u++) {
        p[u] = t0 + u < T ? ex2(s[u][h] - mn) : 0.0f;
        ps += p[u];
      }
      l[h] = l[h] * c + ps;
#pragma unroll
      for (int i = 0; i < 8; i++) {
        float a = acc[h][i] * c;
#pragma unroll
        for (int u = 0; u < U; u++)
          a += p[u] * vf[u][i];
        acc[h][i] = a;
      }
      m[h] = mn;
    }
  }

  /* Merge the P groups of the warp (lanes with the same dims are G apart). */
  for (uint32_t off = G; off < 32; off <<= 1) {
#pragma unroll
    for (int h = 0; h < NH; h++) {
      if (h >= hn)
        continue;
      float mo = __nvvm_shfl_sync_bfly_f32(0xffffffffu, m[h], off, 0x1f);
      float lo = __nvvm_shfl_sync_bfly_f32(0xffffffffu, l[h], off, 0x1f);
      float M = m[h] > mo ? m[h] : mo;
      float fa = m[h] == NEG_INF ? 0.0f : ex2(m[h] - M);
      float fb = mo == NEG_INF ? 0.0f : ex2(mo - M);
      l[h] = l[h] * fa + lo * fb;
#pragma unroll
      for (int i = 0; i < 8; i++) {
        float ao = __nvvm_shfl_sync_bfly_f32(0xffffffffu, acc[h][i], off, 0x1f);
        acc[h][i] = acc[h][i] * fa + ao * fb;
      }
      m[h] = M;
    }
  }

  /* Merge the warps: [WARPS][HC] maxima and sums, then [WARPS][hn][hd] partial outputs. */
  MLK_SHARED float *sm = mlk_tile_smem, *sl_ = mlk_tile_smem + WARPS * HC;
  MLK_SHARED float *part = mlk_tile_smem + 2 * WARPS * HC;
#pragma unroll
  for (int h = 0; h < NH; h++) {
    if (h >= hn)
      continue;
    if (lane == 0) {
      sm[warp * HC + h] = m[h];
      sl_[warp * HC + h] = l[h];
    }
    if (lane < G && active) {
      MLK_SHARED float *dst = part + ((int64_t)warp * hn + h) * hd + d0;
      *(MLK_SHARED F4 *)dst = (F4){acc[h][0], acc[h][1], acc[h][2], acc[h][3]};
      *(MLK_SHARED F4 *)(dst + 4) = (F4){acc[h][4], acc[h][5], acc[h][6], acc[h][7]};
    }
  }
  __nvvm_barrier_sync(0);
  uint32_t n = (uint32_t)(hn * hd), uhd = (uint32_t)hd;
  float *orow = A->obase + h0 * hd;
  for (uint32_t e = tid; e < n; e += MLK_BLOCK_THREADS) {
    uint32_t h = e / uhd, d = e - h * uhd;
    float M = NEG_INF;
    for (int w = 0; w < WARPS; w++)
      M = sm[w * HC + h] > M ? sm[w * HC + h] : M;
    float L = 0.0f, o = 0.0f;
    for (int w = 0; w < WARPS; w++) {
      float mw = sm[w * HC + h];
      float f = mw == NEG_INF ? 0.0f : ex2(mw - M);
      L += sl_[w * HC + h] * f;
      o += part[((int64_t)w * hn + h) * hd + d] * f;
    }
    if (PART) {
      orow[e] = o;
      if (d == 0) { /* the maximum back in natural units: scores were scaled by log2(e) */
        A->obase[A->gs * hd + h0 + h] = M * LN2;
        A->obase[A->gs * hd + A->gs + h0 + h] = L;
      }
    } else {
      orow[e] = o / L;
    }
  }
  __nvvm_barrier_sync(0); /* the scratch is free for the next pass */
}

/* The variants, each a function of its own: ptxas allocates registers per function, and in one
 * body they would share (and spill) their registers. */
#define MLK_ATT_VARIANT(name, NH, PART)                                                            \
  static __attribute__((noinline)) void name(                                                      \
      float *obase, const float *q, const uint16_t *cache, const int32_t *pages, int64_t kv_heads, \
      int64_t head_dim, int64_t page, int64_t pages_per_seq, int64_t npages, int64_t layer,        \
      int64_t heads, int64_t hn, int64_t b, int64_t g, int64_t h0, uint32_t tlo, uint32_t T) {     \
    Att A = {obase, q, cache, pages, kv_heads, head_dim, page, pages_per_seq, npages, layer,      \
             heads, heads / kv_heads};                                                             \
    attend_vec(&A, NH, PART, hn, b, g, h0, tlo, T);                                                \
  }
MLK_ATT_VARIANT(attend_h1, 1, 0)
MLK_ATT_VARIANT(attend_h2, 2, 0)
MLK_ATT_VARIANT(attend_h4, HC, 0)
MLK_ATT_VARIANT(attend_p1, 1, 1)
MLK_ATT_VARIANT(attend_p2, 2, 1)
MLK_ATT_VARIANT(attend_p4, HC, 1)

/* Any geometry: a warp per query head, lanes over dims, one position at a time; the running
 * output lives in the output itself (this task's columns, read back by the same thread). The kv
 * heads [kvh0, kvh0 + nkvh) of row b over positions [tlo, tlo + T), T > 0; kv head g's outputs
 * at ob0 + (g - kvh0) * kstride, laid out as in attend_vec (part: the partials of a chunk). */
static __attribute__((noinline)) void
attend_slow(float *ob0, int64_t kstride, int part, const float *q, const uint16_t *cache,
            const int32_t *pages, int64_t kv_heads, int64_t head_dim, int64_t page,
            int64_t pages_per_seq, int64_t npages, int64_t layer, int64_t heads, int64_t b,
            int64_t kvh0, int64_t nkvh, uint32_t tlo, uint32_t T) {
  uint32_t tid = mlk_tid(), warp = tid >> 5, lane = tid & 31;
  int64_t hd = head_dim, gs = heads / kv_heads;
  int64_t vstride = kv_heads * page * hd;
  float scale = LOG2E / __builtin_sqrtf((float)hd);
  for (int64_t it = warp; it < nkvh * gs; it += WARPS) {
    int64_t h = kvh0 * gs + it, g = h / gs, j = h - g * gs;
    const float *qrow = q + (b * heads + h) * hd;
    float *obase = ob0 + (g - kvh0) * kstride, *orow = obase + j * hd;
    float m = NEG_INF, l = 0.0f;
    for (uint32_t t = tlo; t < tlo + T; t++) {
      int64_t pg = pages[b * pages_per_seq + t / page];
      const uint16_t *K =
          cache + cache_off(kv_heads, hd, page, npages, layer, pg, 0, g, t % page);
      float s = 0.0f;
      for (int64_t d = lane; d < hd; d += 32)
        s += qrow[d] * mlk_bf16_lo(K[d]);
      s = warp_sum(s) * scale;
      float mn = m > s ? m : s;
      float c = ex2(m - mn), p = ex2(s - mn);
      l = l * c + p;
      for (int64_t d = lane; d < hd; d += 32)
        orow[d] = (t == tlo ? 0.0f : orow[d] * c) + p * mlk_bf16_lo(K[vstride + d]);
      m = mn;
    }
    if (part) {
      if (lane == 0) {
        obase[gs * hd + j] = m * LN2;
        obase[gs * hd + gs + j] = l;
      }
    } else {
      for (int64_t d = lane; d < hd; d += 32)
        orow[d] /= l;
    }
  }
}

/* The query heads per pass of the fast path (registers: HC; the merge scratch: 2*WARPS*HC +
 * WARPS*hc*hd), or 0 when the geometry takes the slow path. */
static int64_t heads_per_pass(const uint16_t *cache, int64_t head_dim, int64_t gs) {
  if ((head_dim & 7) != 0 || head_dim > 256 || ((uintptr_t)cache & 15) != 0)
    return 0;
  int64_t hc = (MLK_MATVEC_MAX_K - 2 * WARPS * HC) / (WARPS * head_dim);
  if (hc > HC)
    hc = HC;
  return hc > gs ? gs : hc;
}

/* Row b, kv heads [kvh0, kvh0 + nkvh), positions [tlo, tlo + T) with T > 0: outputs (part = 0) or
 * partials (part = 1) of kv head g at ob0 + (g - kvh0) * kstride. */
static void attend_rows(float *ob0, int64_t kstride, int part, const float *q,
                        const uint16_t *cache, const int32_t *pages, int64_t kv_heads,
                        int64_t head_dim, int64_t page, int64_t pages_per_seq, int64_t npages,
                        int64_t layer, int64_t heads, int64_t hc, int64_t b, int64_t kvh0,
                        int64_t nkvh, uint32_t tlo, uint32_t T) {
  int64_t gs = heads / kv_heads;
  if (hc == 0) {
    attend_slow(ob0, kstride, part, q, cache, pages, kv_heads, head_dim, page, pages_per_seq,
                npages, layer, heads, b, kvh0, nkvh, tlo, T);
    return;
  }
  for (int64_t g = kvh0; g < kvh0 + nkvh; g++) {
    float *ob = ob0 + (g - kvh0) * kstride;
    for (int64_t h0 = 0; h0 < gs; h0 += hc) {
      int64_t hn = gs - h0 < hc ? gs - h0 : hc;
#define ATT_ARGS ob, q, cache, pages, kv_heads, head_dim, page, pages_per_seq, npages, layer, heads
      if (!part && hn == 1)
        attend_h1(ATT_ARGS, 1, b, g, h0, tlo, T);
      else if (!part && hn == 2)
        attend_h2(ATT_ARGS, 2, b, g, h0, tlo, T);
      else if (!part)
        attend_h4(ATT_ARGS, hn, b, g, h0, tlo, T);
      else if (hn == 1)
        attend_p1(ATT_ARGS, 1, b, g, h0, tlo, T);
      else if (hn == 2)
        attend_p2(ATT_ARGS, 2, b, g, h0, tlo, T);
      else
        attend_p4(ATT_ARGS, hn, b, g, h0, tlo, T);
#undef ATT_ARGS
    }
  }
}

void mlk_tile_attention(float *out, const float *q, const uint16_t *cache, const int32_t *pos,
                        const int32_t *pages, int64_t kv_heads, int64_t head_dim, int64_t page,
                        int64_t pages_per_seq, int64_t npages, int64_t layer, int64_t heads,
                        int64_t kvh0, int64_t nkvh, int64_t batch) {
  if (kv_heads <= 0 || heads < kv_heads || head_dim <= 0 || page <= 0 || nkvh <= 0)
    return;
  int64_t gs = heads / kv_heads, hc = heads_per_pass(cache, head_dim, gs);
  uint32_t tid = mlk_tid();
  for (int64_t b = 0; b < batch; b++) {
    int64_t T = mlk_attn_positions(pos[b], pages_per_seq, page);
    float *ob0 = out + (b * heads + kvh0 * gs) * head_dim;
    if (T <= 0) { /* nothing to attend to: zeros */
      int64_t cols = nkvh * gs * head_dim;
      for (int64_t e = tid; e < cols; e += MLK_BLOCK_THREADS)
        ob0[e] = 0.0f;
      continue;
    }
    attend_rows(ob0, gs * head_dim, 0, q, cache, pages, kv_heads, head_dim, page, pages_per_seq,
                npages, layer, heads, hc, b, kvh0, nkvh, 0, (uint32_t)T);
  }
}

void mlk_tile_attention_split(float *part, const float *q, const uint16_t *cache,
                              const int32_t *pos, const int32_t *pages, int64_t kv_heads,
                              int64_t head_dim, int64_t page, int64_t pages_per_seq,
                              int64_t npages, int64_t layer, int64_t heads, int64_t kvh,
                              int64_t split, int64_t min_chunk, int64_t kvh0, int64_t nkvh,
                              int64_t chunk,
                              int64_t batch) {
  if (kv_heads <= 0 || heads < kv_heads || head_dim <= 0 || page <= 0 || nkvh <= 0 ||
      kvh <= 0 || split <= 0)
    return;
  int64_t gs = heads / kv_heads, hc = heads_per_pass(cache, head_dim, gs);
  int64_t rec = mlk_attn_part_rec(gs, head_dim);
  int64_t pcols = mlk_attn_part_cols(kv_heads, heads, head_dim, split, kvh);
  uint32_t tid = mlk_tid(), S = (uint32_t)split;
  int64_t mine = mlk_attn_part_offset(kvh, split, rec, kvh0, chunk); /* in every row */
  /* The rows go 32 at a time, a lane per row, in every warp alike: its chunk count, the chunks
   * of the rows before it (a warp prefix sum, mod split: the slots they went round) and so the
   * positions [lo, hi) of its chunk in this task's slot, in registers, read by all the warp's
   * lanes through shuffles; then the empty records of the group's rows in one loop, then the rows
   * with a chunk here. No barrier and no shared memory: a row at a time put a dependent load of
   * its position, and its empty record's stores, on the chain for every row (~0.5 us a row, 23 us
   * of a task at batch 16 and 78 at batch 64 on the H100), and with a block-wide table of 256
   * rows (a shared-memory prefix sum, three barriers a group) a task took 1.8 us longer at batch
   * 1 than a row at a time (H100, layer trace). */
  uint32_t lane = tid & 31, carry = 0; /* carry: the chunks of the earlier groups' rows, mod S */
  uint32_t nr = (uint32_t)(nkvh * rec), ur = (uint32_t)rec, om = (uint32_t)(gs * head_dim);
  for (int64_t g0 = 0; g0 < batch; g0 += 32) {
    uint32_t rg = (uint32_t)(batch - g0 < 32 ? batch - g0 : 32);
    int64_t T = lane < rg ? mlk_attn_positions(pos[g0 + lane], pages_per_seq, page) : 0;
    uint32_t len = (uint32_t)mlk_attn_chunk_len(T, split, min_chunk, batch);
    uint32_t chunks = (uint32_t)mlk_attn_chunks(T, split, min_chunk, batch);
    uint32_t inc = mlk_warp_scan_u32(chunks); /* at most 32 * MLK_ATTN_MAX_SPLIT */
    uint32_t first = (carry + inc - chunks) % S;
    carry = (carry + mlk_warp_read_u32(inc, 31)) % S;
    int32_t c = (int32_t)mlk_attn_slot_chunk(first, chunks, split, chunk);
    uint32_t lo = c < 0 ? 0 : (uint32_t)c * len;
    uint32_t hi = c < 0 ? 0 : lo + len < T ? lo + len : (uint32_t)T;
    /* no chunk of a row in this slot (or pos < 0): o = 0, m = -inf, l = 0 (the records of this
     * task's kv heads are consecutive, rec apart); the trip count is the block's, for the
     * shuffles */
    for (uint32_t e0 = 0; e0 < rg * nr; e0 += MLK_BLOCK_THREADS) {
      uint32_t e = e0 + tid, r = e < rg * nr ? e / nr : 0, i = (e - r * nr) % ur;
      uint32_t rl = mlk_warp_read_u32(lo, r), rh = mlk_warp_read_u32(hi, r);
      if (e < rg * nr && rh <= rl)
        part[(g0 + r) * pcols + mine + (e - r * nr)] =
            i >= om && i < om + (uint32_t)gs ? NEG_INF : 0.0f;
    }
    for (uint32_t r = 0; r < rg; r++) {
      uint32_t l0 = mlk_warp_read_u32(lo, r), h0 = mlk_warp_read_u32(hi, r);
      if (h0 > l0)
        attend_rows(part + (g0 + r) * pcols + mine, rec, 1, q, cache, pages, kv_heads, head_dim,
                    page, pages_per_seq, npages, layer, heads, hc, g0 + r, kvh0, nkvh, l0,
                    h0 - l0);
    }
  }
}

/* The rows of one chunk each (batch >= split): the task's slot's rows by the unsplit tile, row by row
 * (its slot 0 also the zeros of rows without positions). Out of line: inlined with the split
 * tile into a folded attention's code variant, it doubled the variant's spills (232 -> 416
 * bytes). */
static __attribute__((noinline)) void
fold_whole_rows(float *out, const float *q, const uint16_t *cache, const int32_t *pos,
                const int32_t *pages, int64_t kv_heads, int64_t head_dim, int64_t page,
                int64_t pages_per_seq, int64_t npages, int64_t layer, int64_t heads, int64_t split,
                int64_t kvh0, int64_t nkvh, int64_t chunk, int64_t batch) {
  int64_t cols = heads * head_dim;
  uint32_t lane = mlk_tid() & 31, S = (uint32_t)split;
  uint32_t carry = 0; /* the rows with a chunk before the group, mod S */
  for (int64_t g0 = 0; g0 < batch; g0 += 32) {
    uint32_t rg = (uint32_t)(batch - g0 < 32 ? batch - g0 : 32);
    uint32_t has = lane < rg && mlk_attn_positions(pos[g0 + lane], pages_per_seq, page) > 0;
    uint32_t inc = mlk_warp_scan_u32(has), first = (carry + inc - has) % S;
    carry = (carry + mlk_warp_read_u32(inc, 31)) % S;
    /* its one chunk in this slot, or no positions and this is slot 0 (zeros) */
    uint32_t mine = has ? first == (uint32_t)chunk : chunk == 0;
    for (uint32_t r = 0; r < rg; r++)
      if (mlk_warp_read_u32(mine, r)) {
        int64_t b = g0 + r;
        mlk_tile_attention(out + b * cols, q + b * cols, cache, pos + b, pages + b * pages_per_seq,
                           kv_heads, head_dim, page, pages_per_seq, npages, layer, heads, kvh0,
                           nkvh, 1);
      }
  }
}

/* A split attention that merges its own chunks (mlk_ref_attention_fold says what): at batch >=
 * split every row is one chunk, its whole attention, which the slot holding it writes with the
 * unsplit tile, so that no merge follows (H100, against a fold that merged at every batch: batch
 * 16 and 64 4.5% and 5.7% faster; batch 1, which still merges, 1.7%: the code variant's spills
 * went 232 -> 144 bytes). The test is of registers: a pass that counted the rows of
 * more than one chunk first (to take short rows at small batch the same way) put a load of the
 * positions before every task's chunk and cost batch 1 1.7% (H100); taking batch 1's contexts up
 * to 128 positions whole that way (a minimum chunk of 128) measured 2% slower at batch 1: one task
 * over 128 positions costs as much as a 32-position chunk and the merge (docs/performance.md). */
int mlk_tile_attention_fold(float *out, float *part, const float *q, const uint16_t *cache,
                            const int32_t *pos, const int32_t *pages, int64_t kv_heads,
                            int64_t head_dim, int64_t page, int64_t pages_per_seq,
                            int64_t npages, int64_t layer, int64_t heads, int64_t kvh,
                            int64_t split, int64_t min_chunk, int64_t kvh0, int64_t nkvh,
                            int64_t chunk, int64_t batch) {
  if (kv_heads <= 0 || heads < kv_heads || head_dim <= 0 || page <= 0 || nkvh <= 0 ||
      kvh <= 0 || split <= 0)
    return 0;
  if (batch >= split) {
    fold_whole_rows(out, q, cache, pos, pages, kv_heads, head_dim, page, pages_per_seq, npages,
                    layer, heads, split, kvh0, nkvh, chunk, batch);
    return 0;
  }
  mlk_tile_attention_split(part, q, cache, pos, pages, kv_heads, head_dim, page, pages_per_seq,
                           npages, layer, heads, kvh, split, min_chunk, kvh0, nkvh, chunk, batch);
  return 1;
}

/* The merge of a split. Its items are (row, kv head, query head) in row order; a pass takes up to
 * `ip` of them: a thread per (item, slot) loads that slot's m and l into shared memory, LU of them
 * a thread at once where a pass has more than one a thread (one at a time, the shared stores
 * between the loads kept them apart: 16 round trips a pass at batch 64), a thread per item
 * computes its slots' weights exp(m_c - M) / L there ([item][split]), then the block sums o over
 * the slots for the pass's (item, dim) elements, RU elements a thread and CU slots at once so that
 * their loads are in flight together (a slot at a time put one L2 round trip per used slot on the
 * chain); where no item has more than one slot with weight (every row's positions in one chunk:
 * batch >= split), the item's one slot is known (its number in shared memory) and a thread loads
 * RU1 elements' o at once, one round trip for all (a loop over the slots put the elements' loads
 * in different iterations, the rows' chunks being in different slots: one round trip each, 4%
 * slower at batch 64 on the H200 than 4 x 4 over every slot). With both, a reduce task at batch 64
 * took 22.9 us against 48.6 (H100, layer traces; docs/performance.md). A pass of many rows, where
 * a pass per row and kv head took two barriers and several round trips each (124 us for 64 rows
 * of one kv head on the H100), keeps the merge short at large batch. The records are read with
 * coalesced loads, once; the sums go in slot order, as the reference's. Functions of their own
 * (not inlined at every reduce op). */
#define LU 4 /* (item, slot) pairs whose m and l a thread loads at once */
#define RU 4 /* output elements a thread sums at once */
#define RU1 8 /* the same where no item has more than one slot with weight (16: spills) */
#define CU 4 /* slots whose records a thread loads at once */
#define CMAX 16 /* the most (batch 1: a thread per element, every slot of Llama's split at once) */
/* The sums of a pass of reduce_rows: its n = items * hd elements, each the weighted sum of its
 * slots' o; a thread takes NU elements (MLK_BLOCK_THREADS apart) and loads NC slots of each at
 * once. NU and NC are constants after inlining. */
static inline __attribute__((always_inline)) void
sum_slots(float *out, const float *part, MLK_SHARED const int64_t *soff,
          MLK_SHARED const int64_t *doff, MLK_SHARED const float *w, uint32_t n, uint32_t hd,
          uint32_t S, int64_t cstride, int NU, int NC) {
  uint32_t tid = mlk_tid_here();
  for (uint32_t e0 = tid; e0 < n; e0 += (uint32_t)NU * MLK_BLOCK_THREADS) {
    const float *src[RU];
    float *dst[RU];
    uint32_t wi[RU];
    float o[RU];
#pragma unroll
    for (int u = 0; u < NU; u++) {
      uint32_t e = e0 + (uint32_t)u * MLK_BLOCK_THREADS, k = e < n ? e / hd : 0, d = e - k * hd;
      src[u] = part + soff[k] + d;
      dst[u] = e < n ? out + doff[k] + d : 0;
      wi[u] = e < n ? k * S : ~0u;
      o[u] = 0.0f;
    }
    for (uint32_t c0 = 0; c0 < S; c0 += (uint32_t)NC) { /* NC slots' loads in flight together */
      float f[CMAX][RU], v[CMAX][RU];
#pragma unroll
      for (int cu = 0; cu < NC; cu++)
#pragma unroll
        for (int u = 0; u < NU; u++) {
          uint32_t c = c0 + (uint32_t)cu;
          f[cu][u] = wi[u] != ~0u && c < S ? w[wi[u] + c] : 0.0f;
          /* an empty slot's o is never read */
          v[cu][u] = f[cu][u] != 0.0f ? src[u][c * cstride] : 0.0f;
        }
#pragma unroll
      for (int cu = 0; cu < NC; cu++)
#pragma unroll
        for (int u = 0; u < NU; u++)
          if (f[cu][u] != 0.0f)
            o[u] += f[cu][u] * v[cu][u];
    }
#pragma unroll
    for (int u = 0; u < NU; u++)
      if (dst[u])
        *dst[u] = o[u];
  }
}

/* The batch-1 shape, a function of its own so that reduce_rows' other shape compiles as alone. */
static __attribute__((noinline)) void
sum_slots_each(float *out, const float *part, MLK_SHARED const int64_t *soff,
               MLK_SHARED const int64_t *doff, MLK_SHARED const float *w, uint32_t n, uint32_t hd,
               uint32_t S, int64_t cstride) {
  sum_slots(out, part, soff, doff, w, n, hd, S, cstride, 1, CMAX);
}

/* The sums where item k has at most one slot with weight, slot one[k * S] (S: none): RU1 elements a
 * thread, their loads at once. */
static __attribute__((noinline)) void
sum_slots_one(float *out, const float *part, MLK_SHARED const int64_t *soff,
              MLK_SHARED const int64_t *doff, MLK_SHARED const float *w,
              MLK_SHARED const uint32_t *one, uint32_t n, uint32_t hd, uint32_t S,
              int64_t cstride) {
  uint32_t tid = mlk_tid_here();
  for (uint32_t e0 = tid; e0 < n; e0 += RU1 * MLK_BLOCK_THREADS) {
    float f[RU1], v[RU1];
#pragma unroll
    for (int u = 0; u < RU1; u++) {
      uint32_t e = e0 + (uint32_t)u * MLK_BLOCK_THREADS, k = e < n ? e / hd : 0, d = e - k * hd;
      uint32_t c = e < n ? one[k * S] : S;
      f[u] = c < S ? w[k * S + c] : 0.0f;
      v[u] = f[u] != 0.0f ? part[soff[k] + d + c * cstride] : 0.0f;
    }
#pragma unroll
    for (int u = 0; u < RU1; u++) {
      uint32_t e = e0 + (uint32_t)u * MLK_BLOCK_THREADS, k = e < n ? e / hd : 0, d = e - k * hd;
      if (e < n)
        out[doff[k] + d] = f[u] != 0.0f ? 0.0f + f[u] * v[u] : 0.0f; /* as the slot loop sums */
    }
  }
}

/* Item it of a reduce (row b, the task's kv head g, g's query head *j; items go in row order,
 * per_row a row): the float offset from the partials of its kv head's record of slot 0 (o of
 * query head j at j * hd, m at gs * hd + j, l gs further), and in *dst its output's from out. */
static inline __attribute__((always_inline)) int64_t
item_at(uint32_t it, uint32_t per_row, uint32_t gs, uint32_t hd, int64_t pcols, int64_t blk,
        int64_t rec, int64_t heads, int64_t kvh0, uint32_t *j, int64_t *dst) {
  uint32_t b = it / per_row, r = it - b * per_row, g = r / gs;
  *j = r - g * gs;
  *dst = (b * heads + (kvh0 + g) * gs + *j) * hd;
  return b * pcols + blk + (int64_t)g * rec;
}

/* The m and l of a pass's (item, slot) pairs q = tid, tid + 256, ..., LU at once (the loads first:
 * a shared store may alias a load), and each item's offsets at its slot 0. */
static __attribute__((noinline)) void
load_ml(MLK_SHARED float *w, MLK_SHARED float *ls, MLK_SHARED int64_t *soff,
        MLK_SHARED int64_t *doff, const float *part, uint32_t i0, uint32_t in, uint32_t S,
        uint32_t per_row, uint32_t gs, uint32_t hd, int64_t pcols, int64_t blk, int64_t rec,
        int64_t cstride, int64_t heads, int64_t kvh0) {
  uint32_t tid = mlk_tid_here();
  for (uint32_t q0 = tid; q0 < in * S; q0 += LU * MLK_BLOCK_THREADS) {
    float mv[LU], lv[LU];
#pragma unroll
    for (int u = 0; u < LU; u++) {
      uint32_t q = q0 + (uint32_t)u * MLK_BLOCK_THREADS, k = q / S, c = q - k * S, j;
      int64_t dst, r0 = item_at(i0 + k, per_row, gs, hd, pcols, blk, rec, heads, kvh0, &j, &dst);
      const float *mr = part + r0 + gs * hd + j + c * cstride;
      mv[u] = q < in * S ? mr[0] : 0.0f;
      lv[u] = q < in * S ? mr[gs] : 0.0f;
    }
#pragma unroll
    for (int u = 0; u < LU; u++) {
      uint32_t q = q0 + (uint32_t)u * MLK_BLOCK_THREADS, k = q / S;
      if (q < in * S) {
        w[q] = mv[u], ls[q] = lv[u];
        if (q == k * S) { /* slot 0 */
          uint32_t j;
          int64_t dst;
          int64_t r0 = item_at(i0 + k, per_row, gs, hd, pcols, blk, rec, heads, kvh0, &j, &dst);
          soff[k] = r0 + j * hd;
          doff[k] = dst;
        }
      }
    }
  }
}

static __attribute__((noinline)) void
reduce_rows(float *out, const float *part, int64_t kv_heads, int64_t head_dim, int64_t heads,
            int64_t kvh, int64_t split, int64_t kvh0, int64_t nkvh, int64_t batch) {
  uint32_t gs = (uint32_t)(heads / kv_heads), hd = (uint32_t)head_dim, S = (uint32_t)split;
  int64_t rec = mlk_attn_part_rec(gs, hd), cstride = kvh * rec;
  int64_t pcols = mlk_attn_part_cols(kv_heads, heads, hd, split, kvh);
  uint32_t per_row = (uint32_t)nkvh * gs, items = (uint32_t)batch * per_row;
  /* items per pass: their slots' maxima (then weights) and sums, and two 64-bit offsets each,
   * fit the scratch */
  uint32_t ip = MLK_MATVEC_MAX_K / (2 * S + 4);
  if (ip > MLK_BLOCK_THREADS)
    ip = MLK_BLOCK_THREADS;
  /* item k's records and outputs, as float offsets from `part` and `out` (the element loop then
   * takes a division and two shared loads an element, not an item's index arithmetic) */
  MLK_SHARED int64_t *soff = (MLK_SHARED int64_t *)mlk_tile_smem, *doff = soff + ip;
  MLK_SHARED float *w = mlk_tile_smem + 4 * ip, *ls = w + ip * S;
  uint32_t tid = mlk_tid();
  /* the task's kv heads are a block (kvh0 a multiple of kvh): kv head kvh0 + g's records are
   * g * rec after the block's first */
  int64_t blk = mlk_attn_part_offset(kvh, split, rec, kvh0, 0);
  for (uint32_t i0 = 0; i0 < items; i0 += ip) {
    uint32_t in = items - i0 < ip ? items - i0 : ip;
    /* every (item, slot)'s m and l, a thread each: one L2 round trip for all of them, not one a
     * slot in the item's thread (more pairs than threads: load_ml) */
    if (in * S <= MLK_BLOCK_THREADS) {
      for (uint32_t q = tid; q < in * S; q += MLK_BLOCK_THREADS) {
        uint32_t k = q / S, c = q - k * S, j;
        int64_t dst, r0 = item_at(i0 + k, per_row, gs, hd, pcols, blk, rec, heads, kvh0, &j, &dst);
        const float *mr = part + r0 + gs * hd + j + c * cstride;
        w[q] = mr[0];
        ls[q] = mr[gs];
        if (c == 0) {
          soff[k] = r0 + j * hd;
          doff[k] = dst;
        }
      }
    } else {
      load_ml(w, ls, soff, doff, part, i0, in, S, per_row, gs, hd, pcols, blk, rec, cstride, heads,
              kvh0);
    }
    __nvvm_barrier_sync(0);
    uint32_t many = 0;
    MLK_SHARED uint32_t *one = (MLK_SHARED uint32_t *)ls; /* item k's one slot at one[k * S] */
    if (tid < in) { /* the weights of item tid, from shared memory */
      MLK_SHARED float *wk = w + tid * S, *lk = ls + tid * S;
      float M = NEG_INF;
      for (uint32_t c = 0; c < S; c++)
        M = wk[c] > M ? wk[c] : M;
      float L = 0.0f;
      for (uint32_t c = 0; c < S; c++) {
        float mc = wk[c];
        float f = mc == NEG_INF ? 0.0f : ex2((mc - M) * LOG2E);
        wk[c] = f;
        L += f * lk[c];
      }
      float inv = L > 0.0f ? 1.0f / L : 0.0f; /* every slot empty: zeros */
      uint32_t kept = 0, first = S;
      for (uint32_t c = 0; c < S; c++) {
        wk[c] *= inv;
        first = kept == 0 && wk[c] != 0.0f ? c : first;
        kept += wk[c] != 0.0f;
      }
      one[tid * S] = first; /* the sums l are used up */
      many = kept > 1;
    }
    /* a barrier that also tells every thread whether an item has more than one slot with weight */
    many = !__nvvm_bar0_and(!many);
    /* a pass of one element a thread or fewer (batch 1): every slot's load in flight at once */
    if (in * hd <= MLK_BLOCK_THREADS)
      sum_slots_each(out, part, soff, doff, w, in * hd, hd, S, cstride);
    else if (!many)
      sum_slots_one(out, part, soff, doff, w, one, in * hd, hd, S, cstride);
    else
      sum_slots(out, part, soff, doff, w, in * hd, hd, S, cstride, RU, CU);
    __nvvm_barrier_sync(0); /* the weights are free for the next pass */
  }
}

void mlk_tile_attn_reduce(float *out, const float *part, int64_t kv_heads, int64_t head_dim,
                          int64_t heads, int64_t kvh, int64_t split, int64_t kvh0, int64_t nkvh,
                          int64_t batch) {
  if (kv_heads <= 0 || heads < kv_heads || head_dim <= 0 || nkvh <= 0 || kvh <= 0 || split <= 0 ||
      split > MLK_MATVEC_MAX_K)
    return;
  reduce_rows(out, part, kv_heads, head_dim, heads, kvh, split, kvh0, nkvh, batch);
}
