/* ref_tiles.c: plain C versions of the device tiles in stdlib/tiles/ (see mlk_ref.h).
 *
 * The CPU simulator calls these for each task's slice of the output, and tests call them over the
 * whole range as a sequential reference. They accumulate in f32 like the device tiles (the device
 * reduces in a different order, so comparisons use a relative tolerance, never equality). This file
 * depends on nothing but libm so that stdlib can be used without the runtime.
 *
 * Every function loops over the `batch` rows of its activations (row stride = the activation's
 * columns) inside its columns, as a device task does. None of them checks its indices: positions,
 * token ids and page-table entries are the caller's to validate (the runtime does, see
 * docs/runtime.md). Where a tile's output may be its own input (eltwise, rmsnorm, rope: the same
 * columns of the same row), each element is read before it is written.
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

/* Round to nearest even; a NaN stays a (quiet) NaN. Same as mlk_f32_to_bf16 in the runtime. */
static uint16_t f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return (uint16_t)((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
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

/* 1 / sqrt(mean(x^2) + eps) over n elements, accumulated in f32. */
static float rms_scale(const float *x, int64_t n, float eps) {
  float ss = 0.0f;
  for (int64_t i = 0; i < n; i++)
    ss += x[i] * x[i];
  return 1.0f / sqrtf(ss / (float)n + eps);
}

/* A matvec's epilogue of row r's sum acc, batch row b: the bias first, then the gated product
 * (out = (W xn + bias) * res) or the activation and then the residual (out = act(W xn) + res). */
static float epilogue(float acc, const float *res, const uint16_t *bias, int64_t n, int64_t r,
                      int64_t b, int fn) {
  if (bias)
    acc += bf16_to_f32(bias[r]);
  if (fn == MLK_FN_MUL)
    return acc * res[b * n + r];
  acc = activate(acc, fn);
  return res ? acc + res[b * n + r] : acc;
}

void mlk_ref_matvec(float *out, const float *x, const uint16_t *W, const float *res,
                    const uint16_t *norm_w, const uint16_t *bias, float eps, int64_t n, int64_t k,
                    int64_t row0, int64_t rows, int64_t batch, int fn) {
  for (int64_t b = 0; b < batch; b++) {
    const float *xb = x + b * k;
    /* The fused input norm: xn[i] = (x[i] * scale) * w[i], formed element by element. */
    float scale = norm_w ? rms_scale(xb, k, eps) : 1.0f;
    for (int64_t r = row0; r < row0 + rows && r < n; r++) {
      const uint16_t *w = W + r * k;
      float acc = 0.0f;
      if (norm_w)
        for (int64_t i = 0; i < k; i++)
          acc += bf16_to_f32(w[i]) * (xb[i] * scale * bf16_to_f32(norm_w[i]));
      else
        for (int64_t i = 0; i < k; i++)
          acc += bf16_to_f32(w[i]) * xb[i];
      out[b * n + r] = epilogue(acc, res, bias, n, r, b, fn);
    }
  }
}

int mlk_ref_group_arrive(uint32_t *arrive, int64_t members) {
  /* the last to arrive (the task's writes released, the others' acquired) goes on; the counter
   * goes back to 0 for the next run */
  if (__atomic_add_fetch(arrive, 1u, __ATOMIC_ACQ_REL) != (uint32_t)members)
    return 0;
  __atomic_store_n(arrive, 0u, __ATOMIC_RELAXED);
  return 1;
}

int mlk_ref_matvec_split(float *out, const float *x, const uint16_t *W, const float *res,
                         const uint16_t *norm_w, const uint16_t *bias, float eps, int64_t n,
                         int64_t k, int64_t row0, int64_t rows, int64_t batch, int fn,
                         int64_t split, int64_t first, int64_t members, int64_t slice,
                         float *scratch, uint32_t *arrive) {
  int64_t k0, k1;
  mlk_matvec_slice(k, members, slice, &k0, &k1);
  /* this slice's partial sums of the normed x without its scale (x * norm_w), which the merge
   * applies, and its sums of squares */
  float *part = scratch + slice * batch * n;
  for (int64_t b = 0; b < batch; b++) {
    const float *xb = x + b * k;
    if (norm_w) {
      float ss = 0.0f;
      for (int64_t i = k0; i < k1; i++)
        ss += xb[i] * xb[i];
      scratch[mlk_matvec_ss_offset(split, n, batch, first + slice) + b] = ss;
    }
    for (int64_t r = row0; r < row0 + rows; r++) {
      const uint16_t *w = W + r * k;
      float acc = 0.0f;
      for (int64_t i = k0; i < k1; i++)
        acc += bf16_to_f32(w[i]) * (norm_w ? xb[i] * bf16_to_f32(norm_w[i]) : xb[i]);
      part[b * n + r] = acc;
    }
  }
  if (!mlk_ref_group_arrive(arrive, members))
    return 0;
  for (int64_t b = 0; b < batch; b++) {
    float scale = 1.0f;
    if (norm_w) {
      float ss = 0.0f;
      for (int64_t j = 0; j < members; j++)
        ss += scratch[mlk_matvec_ss_offset(split, n, batch, first + j) + b];
      scale = 1.0f / sqrtf(ss / (float)k + eps);
    }
    for (int64_t r = row0; r < row0 + rows; r++) {
      float acc = 0.0f;
      for (int64_t j = 0; j < members; j++)
        acc += scratch[(j * batch + b) * n + r];
      out[b * n + r] = epilogue(acc * scale, res, bias, n, r, b, fn);
    }
  }
  return 1;
}

void mlk_ref_eltwise(float *out, const float *a, const float *c, const uint16_t *bias, int64_t n,
                     int64_t c0, int64_t count, int64_t batch, int fn) {
  for (int64_t b = 0; b < batch; b++)
    for (int64_t i = b * n + c0; i < b * n + c0 + count; i++) {
      float v = bias ? a[i] + bf16_to_f32(bias[i - b * n]) : a[i];
      switch (fn) {
      case MLK_FN_ADD: out[i] = v + c[i]; break;
      case MLK_FN_MUL: out[i] = v * c[i]; break;
      case MLK_FN_RELU: out[i] = mlk_ref_relu(v); break;
      case MLK_FN_SILU: out[i] = mlk_ref_silu(v); break;
      default: out[i] = v; break;
      }
    }
}

void mlk_ref_allreduce(float *out, const uint64_t *xs, int64_t ranks, int64_t n, int64_t c0,
                       int64_t count, int64_t batch) {
  for (int64_t b = 0; b < batch; b++)
    for (int64_t i = b * n + c0; i < b * n + c0 + count; i++) {
      float s = ((const float *)(uintptr_t)xs[0])[i];
      for (int64_t r = 1; r < ranks; r++)
        s += ((const float *)(uintptr_t)xs[r])[i];
      out[i] = s;
    }
}

void mlk_ref_gather(float *out, const int32_t *ids, const uint16_t *table, int64_t n, int64_t c0,
                    int64_t count, int64_t batch) {
  for (int64_t b = 0; b < batch; b++) {
    const uint16_t *row = table + (int64_t)ids[b] * n;
    for (int64_t i = c0; i < c0 + count; i++)
      out[b * n + i] = bf16_to_f32(row[i]);
  }
}

void mlk_ref_rmsnorm(float *out, const float *x, const uint16_t *w, float eps, int64_t n,
                     int64_t batch) {
  for (int64_t b = 0; b < batch; b++) {
    float scale = rms_scale(x + b * n, n, eps);
    for (int64_t i = 0; i < n; i++)
      out[b * n + i] = x[b * n + i] * scale * bf16_to_f32(w[i]);
  }
}

/* Llama 3 frequency scaling (HF transformers, _compute_llama3_parameters), in double and rounded
 * once to f32 at the end. factor <= 1: no scaling. */
float mlk_ref_rope_inv_freq(int64_t j, int64_t head_dim, float theta, float factor,
                            float low_freq_factor, float high_freq_factor,
                            int64_t original_max_pos) {
  double inv = pow((double)theta, -2.0 * (double)j / (double)head_dim);
  if (!(factor > 1.0f))
    return (float)inv;
  const double pi = 3.14159265358979323846;
  double wavelen = 2.0 * pi / inv;
  double low_freq_wavelen = (double)original_max_pos / low_freq_factor;
  double high_freq_wavelen = (double)original_max_pos / high_freq_factor;
  if (wavelen < high_freq_wavelen)
    return (float)inv;
  if (wavelen > low_freq_wavelen)
    return (float)(inv / factor);
  double smooth = ((double)original_max_pos / wavelen - low_freq_factor) /
                  ((double)high_freq_factor - low_freq_factor);
  return (float)((1.0 - smooth) * inv / factor + smooth * inv);
}

/* cos and sin of the angle of position pos: as in HF, the f32 product of position and frequency. */
static void rope_angle(int32_t pos, float inv, float *c, float *s) {
  float angle = (float)pos * inv;
  *c = cosf(angle);
  *s = sinf(angle);
}

/* The pair (x0, x1) = (x[j], x[j + head_dim/2]) of a head rotated by the angle of (c, s). */
static void rope_pair(float x0, float x1, float c, float s, float *o0, float *o1) {
  float r0 = x0 * c - x1 * s, r1 = x1 * c + x0 * s;
  *o0 = r0; /* out may be x: both read before either is written */
  *o1 = r1;
}

void mlk_ref_rope(float *out, const float *x, const int32_t *pos, int64_t n, int64_t head_dim,
                  int64_t c0, int64_t count, int64_t batch, float theta, float factor,
                  float low_freq_factor, float high_freq_factor, int64_t original_max_pos) {
  int64_t half = head_dim / 2;
  for (int64_t j = 0; j < half; j++) {
    float inv = mlk_ref_rope_inv_freq(j, head_dim, theta, factor, low_freq_factor,
                                      high_freq_factor, original_max_pos);
    for (int64_t b = 0; b < batch; b++) {
      float c, s;
      rope_angle(pos[b], inv, &c, &s);
      for (int64_t h0 = c0; h0 < c0 + count; h0 += head_dim) {
        int64_t i = b * n + h0 + j;
        rope_pair(x[i], x[i + half], c, s, &out[i], &out[i + half]);
      }
    }
  }
}

void mlk_ref_kv_append(uint16_t *cache, const float *k, const float *v, const int32_t *pos,
                       const int32_t *pages, int64_t kv_heads, int64_t head_dim, int64_t page,
                       int64_t pages_per_seq, int64_t npages, int64_t layer, int64_t head0,
                       int64_t nheads, int64_t batch, float theta, float factor,
                       float low_freq_factor, float high_freq_factor, int64_t original_max_pos) {
  const MlkCacheDesc geo = {.kv_heads = kv_heads, .head_dim = head_dim, .page = page};
  int64_t cols = kv_heads * head_dim;
  int64_t half = head_dim / 2;
  for (int64_t b = 0; b < batch; b++) {
    int64_t p = pos[b];
    /* as the device: a position outside the page table (an idle row's -1) or a page outside the
     * pool is skipped, never written */
    if (p < 0 || p / page >= pages_per_seq)
      continue;
    int64_t phys = pages[b * pages_per_seq + p / page];
    if (phys < 0 || phys >= npages)
      continue;
    for (int64_t h = head0; h < head0 + nheads; h++) {
      uint16_t *kd = cache + mlk_cache_offset(&geo, npages, layer, phys, 0, h, p % page);
      uint16_t *vd = cache + mlk_cache_offset(&geo, npages, layer, phys, 1, h, p % page);
      const float *kh = k + b * cols + h * head_dim;
      for (int64_t d = 0; d < head_dim; d++) {
        float key = kh[d];
        if (theta > 0.0f) { /* a fused rope: pair j of the head, as mlk_ref_rope rotates it */
          int64_t j = d < half ? d : d - half;
          float c, s;
          rope_angle(pos[b], mlk_ref_rope_inv_freq(j, head_dim, theta, factor, low_freq_factor,
                                                   high_freq_factor, original_max_pos), &c, &s);
          float r0, r1;
          rope_pair(kh[j], kh[j + half], c, s, &r0, &r1);
          key = d < half ? r0 : r1;
        }
        kd[d] = f32_to_bf16(key);
        vd[d] = f32_to_bf16(v[b * cols + h * head_dim + d]);
      }
    }
  }
}

/* q . K[t] / sqrt(head_dim) of one query head against cached position t. */
static float score(const float *q, const uint16_t *kt, int64_t head_dim, float scale) {
  float acc = 0.0f;
  for (int64_t d = 0; d < head_dim; d++)
    acc += q[d] * bf16_to_f32(kt[d]);
  return acc * scale;
}

/* The last position a row attends to (mlk_attn_positions - 1): -1 and below, none. */
static int64_t attend_last(int32_t pos, int64_t pages_per_seq, int64_t page) {
  return mlk_attn_positions(pos, pages_per_seq, page) - 1;
}

void mlk_ref_attention(float *out, const float *q, const uint16_t *cache, const int32_t *pos,
                       const int32_t *pages, int64_t kv_heads, int64_t head_dim, int64_t page,
                       int64_t pages_per_seq, int64_t npages, int64_t layer, int64_t heads,
                       int64_t kvh0, int64_t nkvh, int64_t batch) {
  const MlkCacheDesc geo = {.kv_heads = kv_heads, .head_dim = head_dim, .page = page};
  int64_t group = heads / kv_heads, cols = heads * head_dim;
  float scale = 1.0f / sqrtf((float)head_dim);
  for (int64_t b = 0; b < batch; b++) {
    const int32_t *table = pages + b * pages_per_seq;
    int64_t last = attend_last(pos[b], pages_per_seq, page);
    for (int64_t kvh = kvh0; kvh < kvh0 + nkvh; kvh++)
      for (int64_t h = kvh * group; h < (kvh + 1) * group; h++) {
        const float *qh = q + b * cols + h * head_dim;
        float *oh = out + b * cols + h * head_dim;
        if (last < 0) { /* nothing to attend to: zeros, as the device tile */
          for (int64_t d = 0; d < head_dim; d++)
            oh[d] = 0.0f;
          continue;
        }
        /* Two passes over the cached positions: the max score, then exp(s - max) weights
         * accumulated straight into the output row (the caller keeps q and out apart). */
        float mx = -INFINITY;
        for (int64_t t = 0; t <= last; t++) {
          const uint16_t *kt =
              cache + mlk_cache_offset(&geo, npages, layer, table[t / page], 0, kvh, t % page);
          float s = score(qh, kt, head_dim, scale);
          if (s > mx)
            mx = s;
        }
        for (int64_t d = 0; d < head_dim; d++)
          oh[d] = 0.0f;
        float sum = 0.0f;
        for (int64_t t = 0; t <= last; t++) {
          int64_t phys = table[t / page];
          const uint16_t *kt = cache + mlk_cache_offset(&geo, npages, layer, phys, 0, kvh, t % page);
          const uint16_t *vt = cache + mlk_cache_offset(&geo, npages, layer, phys, 1, kvh, t % page);
          float w = expf(score(qh, kt, head_dim, scale) - mx);
          sum += w;
          for (int64_t d = 0; d < head_dim; d++)
            oh[d] += w * bf16_to_f32(vt[d]);
        }
        for (int64_t d = 0; d < head_dim; d++)
          oh[d] /= sum;
      }
  }
}

int mlk_ref_attention_fold(float *out, float *part, const float *q, const uint16_t *cache,
                           const int32_t *pos, const int32_t *pages, int64_t kv_heads,
                           int64_t head_dim, int64_t page, int64_t pages_per_seq, int64_t npages,
                           int64_t layer, int64_t heads, int64_t kvh, int64_t split,
                           int64_t min_chunk, int64_t kvh0, int64_t nkvh, int64_t chunk,
                           int64_t batch) {
  if (batch < split) { /* (at batch >= split every row is one chunk, mlk_attn_chunk_len) */
    mlk_ref_attention_split(part, q, cache, pos, pages, kv_heads, head_dim, page, pages_per_seq,
                            npages, layer, heads, kvh, split, min_chunk, kvh0, nkvh, chunk, batch);
    return 1;
  }
  int64_t cols = heads * head_dim, first = 0; /* rows before b with a chunk, mod split */
  for (int64_t b = 0; b < batch; b++) {
    int64_t chunks = attend_last(pos[b], pages_per_seq, page) + 1 > 0;
    if (chunks ? first == chunk : chunk == 0) /* its one chunk's slot, or slot 0: zeros */
      mlk_ref_attention(out + b * cols, q + b * cols, cache, pos + b, pages + b * pages_per_seq,
                        kv_heads, head_dim, page, pages_per_seq, npages, layer, heads, kvh0, nkvh,
                        1);
    first = (first + chunks) % split;
  }
  return 0;
}

void mlk_ref_attention_split(float *part, const float *q, const uint16_t *cache,
                             const int32_t *pos, const int32_t *pages, int64_t kv_heads,
                             int64_t head_dim, int64_t page, int64_t pages_per_seq, int64_t npages,
                             int64_t layer, int64_t heads, int64_t kvh, int64_t split,
                             int64_t min_chunk, int64_t kvh0, int64_t nkvh, int64_t chunk,
                             int64_t batch) {
  const MlkCacheDesc geo = {.kv_heads = kv_heads, .head_dim = head_dim, .page = page};
  int64_t group = heads / kv_heads, cols = heads * head_dim;
  int64_t rec = mlk_attn_part_rec(group, head_dim);
  int64_t pcols = mlk_attn_part_cols(kv_heads, heads, head_dim, split, kvh);
  float scale = 1.0f / sqrtf((float)head_dim);
  int64_t first = 0; /* chunks of the rows before b */
  for (int64_t b = 0; b < batch; b++) {
    const int32_t *table = pages + b * pages_per_seq;
    int64_t T = attend_last(pos[b], pages_per_seq, page) + 1;
    int64_t len = mlk_attn_chunk_len(T, split, min_chunk, batch);
    int64_t chunks = mlk_attn_chunks(T, split, min_chunk, batch);
    int64_t c = mlk_attn_slot_chunk(first, chunks, split, chunk);
    first = (first + chunks) % split;
    int64_t lo = c < 0 ? 0 : c * len, hi = c < 0 ? 0 : lo + len < T ? lo + len : T;
    for (int64_t g = kvh0; g < kvh0 + nkvh; g++) {
      float *r = part + b * pcols + mlk_attn_part_offset(kvh, split, rec, g, chunk);
      float *m = r + group * head_dim, *l = m + group;
      for (int64_t j = 0; j < group; j++) {
        const float *qh = q + b * cols + (g * group + j) * head_dim;
        float *o = r + j * head_dim;
        for (int64_t d = 0; d < head_dim; d++)
          o[d] = 0.0f;
        /* The two passes of mlk_ref_attention over [lo, hi), without the division. */
        float mx = -INFINITY, sum = 0.0f;
        for (int64_t t = lo; t < hi; t++) {
          const uint16_t *kt =
              cache + mlk_cache_offset(&geo, npages, layer, table[t / page], 0, g, t % page);
          float s = score(qh, kt, head_dim, scale);
          if (s > mx)
            mx = s;
        }
        for (int64_t t = lo; t < hi; t++) {
          int64_t phys = table[t / page];
          const uint16_t *kt = cache + mlk_cache_offset(&geo, npages, layer, phys, 0, g, t % page);
          const uint16_t *vt = cache + mlk_cache_offset(&geo, npages, layer, phys, 1, g, t % page);
          float w = expf(score(qh, kt, head_dim, scale) - mx);
          sum += w;
          for (int64_t d = 0; d < head_dim; d++)
            o[d] += w * bf16_to_f32(vt[d]);
        }
        m[j] = mx; /* -inf and 0 for an empty chunk */
        l[j] = sum;
      }
    }
  }
}

void mlk_ref_attn_reduce(float *out, const float *part, int64_t kv_heads, int64_t head_dim,
                         int64_t heads, int64_t kvh, int64_t split, int64_t kvh0, int64_t nkvh,
                         int64_t batch) {
  int64_t group = heads / kv_heads, cols = heads * head_dim;
  int64_t rec = mlk_attn_part_rec(group, head_dim);
  int64_t pcols = mlk_attn_part_cols(kv_heads, heads, head_dim, split, kvh);
  for (int64_t b = 0; b < batch; b++)
    for (int64_t g = kvh0; g < kvh0 + nkvh; g++)
      for (int64_t j = 0; j < group; j++) {
        const float *r0 = part + b * pcols + mlk_attn_part_offset(kvh, split, rec, g, 0);
        int64_t cstride = kvh * rec; /* from a chunk's record to the next chunk's */
        float *oh = out + b * cols + (g * group + j) * head_dim;
        float M = -INFINITY;
        for (int64_t c = 0; c < split; c++) {
          float mc = r0[c * cstride + group * head_dim + j];
          if (mc > M)
            M = mc;
        }
        for (int64_t d = 0; d < head_dim; d++)
          oh[d] = 0.0f;
        if (M == -INFINITY) /* every chunk empty: zeros */
          continue;
        float L = 0.0f;
        for (int64_t c = 0; c < split; c++) {
          const float *r = r0 + c * cstride;
          float mc = r[group * head_dim + j];
          if (mc == -INFINITY) /* an empty chunk: weight 0, its sums are not read */
            continue;
          float w = expf(mc - M);
          L += w * r[group * head_dim + group + j];
          for (int64_t d = 0; d < head_dim; d++)
            oh[d] += w * r[j * head_dim + d];
        }
        for (int64_t d = 0; d < head_dim; d++)
          oh[d] /= L;
      }
}

void mlk_ref_argmax(int32_t *out, const float *x, int64_t k, int64_t batch) {
  for (int64_t b = 0; b < batch; b++) {
    const float *xb = x + b * k;
    int64_t best = -1;
    /* Strictly greater: the first of equal maxima wins. NaNs never win (all NaN: 0). */
    for (int64_t i = 0; i < k; i++)
      if (best < 0 ? !isnan(xb[i]) : xb[i] > xb[best])
        best = i;
    out[b] = best < 0 ? 0 : (int32_t)best;
  }
}

void mlk_ref_argmax_part(float *part, const float *x, int64_t k, int64_t split, int64_t chunk,
                         int64_t batch) {
  int64_t len = mlk_argmax_chunk(k, split), c0 = chunk * len;
  int64_t c1 = c0 + len < k ? c0 + len : k;
  for (int64_t b = 0; b < batch; b++) {
    const float *xb = x + b * k;
    int64_t best = -1;
    for (int64_t i = c0; i < c1; i++) /* as mlk_ref_argmax, over the chunk */
      if (best < 0 ? !isnan(xb[i]) : xb[i] > xb[best])
        best = i;
    int32_t bi = best < 0 ? MLK_ARGMAX_NONE : (int32_t)best;
    part[b * 2 * split + 2 * chunk] = best < 0 ? -INFINITY : xb[best];
    memcpy(&part[b * 2 * split + 2 * chunk + 1], &bi, sizeof bi);
  }
}

void mlk_ref_argmax_reduce(int32_t *out, const float *part, int64_t split, int64_t batch) {
  for (int64_t b = 0; b < batch; b++) {
    const float *pb = part + b * 2 * split;
    int32_t best = MLK_ARGMAX_NONE;
    float bv = -INFINITY;
    for (int64_t c = 0; c < split; c++) { /* chunks in order: the first of equal values stays */
      int32_t i;
      memcpy(&i, &pb[2 * c + 1], sizeof i);
      if (i != MLK_ARGMAX_NONE && (best == MLK_ARGMAX_NONE || pb[2 * c] > bv)) {
        best = i;
        bv = pb[2 * c];
      }
    }
    out[b] = best == MLK_ARGMAX_NONE ? 0 : best;
  }
}

/* The rank of a logit as an unsigned key, larger first: the float order with -0 == +0 and NaN
 * below -inf (key 0). mlk_tile_sample ranks with the same keys. */
static uint32_t sample_key(float v) {
  uint32_t b;
  if (isnan(v))
    return 0;
  if (v == 0.0f)
    v = 0.0f;
  memcpy(&b, &v, sizeof b);
  return (b & 0x80000000u) ? ~b : b | 0x80000000u;
}

/* The K best columns of x as packed (key << 32 | ~index), best first: larger keys, then lower
 * indices. Insertion into the sorted list: cheap unless the row ascends. */
static int64_t sample_candidates(const float *x, int64_t k, int64_t K, uint64_t *c) {
  int64_t n = 0;
  for (int64_t i = 0; i < k; i++) {
    uint64_t v = (uint64_t)sample_key(x[i]) << 32 | (uint32_t)~(uint32_t)i;
    if (n == K && v <= c[n - 1])
      continue;
    int64_t j = n < K ? n++ : n - 1;
    for (; j > 0 && c[j - 1] < v; j--)
      c[j] = c[j - 1];
    c[j] = v;
  }
  return n;
}

int32_t mlk_ref_sample_row(const float *x, float u, int64_t k, float temperature, int64_t top_k,
                           float top_p, double *margin) {
  uint64_t c[MLK_SAMPLE_MAX_TOP_K];
  float cum[MLK_SAMPLE_MAX_TOP_K] = {0}; /* (all set below; GCC cannot tell) */
  if (margin)
    *margin = INFINITY;
  if (top_k < 1 || !(temperature > 0.0f)) /* greedy: the first candidate alone */
    top_k = 1;
  if (top_k > MLK_SAMPLE_MAX_TOP_K)
    top_k = MLK_SAMPLE_MAX_TOP_K;
  int64_t K = sample_candidates(x, k, top_k < k ? top_k : k, c);
  if (K == 0)
    return 0;
  float m = x[~(uint32_t)c[0]];
  if (!(temperature > 0.0f) || !isfinite(m))
    return (int32_t)~(uint32_t)c[0];
  float sum = 0.0f;
  for (int64_t r = 0; r < K; r++) {
    float v = x[~(uint32_t)c[r]];
    sum += isnan(v) ? 0.0f : expf((v - m) / temperature);
    cum[r] = sum;
  }
  int64_t J = K - 1;
  float thr = top_p * cum[K - 1];
  if (top_p < 1.0f)
    for (J = 0; J < K - 1 && !(cum[J] >= thr); J++)
      ;
  float target = u * cum[J];
  int64_t pick = 0;
  while (pick < J && !(cum[pick] > target))
    pick++;
  if (margin) {
    double mg = INFINITY;
    for (int64_t r = 0; r <= J; r++)
      mg = fmin(mg, fabs((double)cum[r] - (double)target) / cum[J]);
    if (top_p < 1.0f)
      for (int64_t r = 0; r < K; r++)
        mg = fmin(mg, fabs((double)cum[r] - (double)thr) / cum[K - 1]);
    *margin = mg;
  }
  return (int32_t)~(uint32_t)c[pick];
}

void mlk_ref_sample(int32_t *out, const float *x, const float *params, int64_t k,
                    float temperature, int64_t top_k, float top_p, int64_t batch) {
  for (int64_t b = 0; b < batch; b++) {
    MlkSampleParams p =
        mlk_sample_row_params(params + b * MLK_SAMPLE_PARAMS, temperature, top_k, top_p);
    out[b] = mlk_ref_sample_row(x + b * k, p.u, k, p.temperature, p.top_k, p.top_p, NULL);
  }
}
