/* llama_ref.c: the sequential Llama decode reference (see llama_ref.h for the math). Plain C11 and
 * libm only: it must not share code with the compiler, the runtime or its reference tiles. */
#include "llama_ref.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The accumulator of dot products and means. */
#ifndef LLAMA_REF_ACC
#define LLAMA_REF_ACC double
#endif
typedef LLAMA_REF_ACC acc_t;

struct LlamaRefState {
  LlamaRefConfig c;
  LlamaRefWeights w;
  /* Contiguous cache: [max_batch][layers][max_context][kv_heads][head_dim] bf16, K and V apart. */
  uint16_t *kcache, *vcache;
  unsigned char *written; /* [max_batch][max_context]: position written by some step */
  /* scratch for one row */
  float *x, *h, *qkv, *attn, *gate, *up, *hf;
  LlamaRefTrace trace;
  void *trace_ctx;
  LlamaRefRound round;
  void *round_ctx;
  char err[256];
};

/* ---- bf16 ---- */

uint16_t llama_ref_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it a (quiet) NaN */
    return (uint16_t)((u >> 16) | 0x40);
  /* round to nearest, ties to even: add 0x7fff plus the lowest kept bit, then truncate */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

float llama_ref_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* ---- the pieces ---- */

/* out[n] = sum_k W[n][k] x[k], W bf16 [N][K] row-major, accumulated in acc_t. */
static void matvec(const uint16_t *W, const float *x, int N, int K, float *out) {
  for (int n = 0; n < N; n++) {
    const uint16_t *row = W + (size_t)n * K;
    acc_t s = 0;
    for (int k = 0; k < K; k++)
      s += (acc_t)llama_ref_f32(row[k]) * (acc_t)x[k];
    out[n] = (float)s;
  }
}

void llama_ref_rmsnorm(const float *x, const uint16_t *w, int n, float eps, float *out) {
  /* ms = mean(x^2); out = x * rsqrt(ms + eps) * w */
  acc_t ss = 0;
  for (int i = 0; i < n; i++)
    ss += (acc_t)x[i] * (acc_t)x[i];
  double r = 1.0 / sqrt((double)ss / n + (double)eps);
  for (int i = 0; i < n; i++)
    out[i] = (float)((double)x[i] * r * (double)llama_ref_f32(w[i]));
}

double llama_ref_rope_inv_freq(const LlamaRefConfig *c, int i) {
  /* The unscaled frequency of pair i: theta^(-2i/HD). */
  double f = pow(c->rope_theta, -2.0 * i / c->head_dim);
  if (!(c->rope_factor > 1.0))
    return f;
  /* Llama 3 scaling: wavelengths shorter than original_max_pos/high_freq_factor keep their
   * frequency, longer than original_max_pos/low_freq_factor are slowed down by `factor`, and the
   * band in between interpolates linearly in original_max_pos/wavelength. */
  const double pi = 3.14159265358979323846;
  double wavelen = 2.0 * pi / f;
  double low_wavelen = c->rope_original_max_pos / c->rope_low_freq_factor;
  double high_wavelen = c->rope_original_max_pos / c->rope_high_freq_factor;
  if (wavelen < high_wavelen)
    return f;
  if (wavelen > low_wavelen)
    return f / c->rope_factor;
  double smooth = (c->rope_original_max_pos / wavelen - c->rope_low_freq_factor) /
                  (c->rope_high_freq_factor - c->rope_low_freq_factor);
  return (1.0 - smooth) * f / c->rope_factor + smooth * f;
}

void llama_ref_rope(const LlamaRefConfig *c, float *x, int n, int pos) {
  /* "rotate half": within each head, the pair (j, j + HD/2) is the complex number
   * x[j] + i x[j + HD/2], multiplied by exp(i * pos * inv_freq[j]). */
  int half = c->head_dim / 2;
  for (int i = 0; i < half; i++) {
    double angle = (double)pos * llama_ref_rope_inv_freq(c, i);
    double cs = cos(angle), sn = sin(angle);
    for (int head = 0; head < n / c->head_dim; head++) {
      float *p = x + (size_t)head * c->head_dim;
      double a = p[i], b = p[i + half];
      p[i] = (float)(a * cs - b * sn);
      p[i + half] = (float)(a * sn + b * cs);
    }
  }
}

void llama_ref_attend(int head_dim, const float *q, const uint16_t *k, const uint16_t *v,
                      int npos, int stride, float *out) {
  /* scores s_t = q . K[t] / sqrt(HD); softmax with the maximum subtracted; out = sum p_t V[t] */
  double *s = malloc(sizeof(double) * (size_t)(npos > 0 ? npos : 1));
  double scale = 1.0 / sqrt((double)head_dim), mx = -INFINITY, sum = 0;
  for (int t = 0; t < npos; t++) {
    acc_t d = 0;
    for (int j = 0; j < head_dim; j++)
      d += (acc_t)q[j] * (acc_t)llama_ref_f32(k[(size_t)t * stride + j]);
    s[t] = (double)d * scale;
    if (s[t] > mx)
      mx = s[t];
  }
  for (int t = 0; t < npos; t++) {
    s[t] = exp(s[t] - mx);
    sum += s[t];
  }
  for (int j = 0; j < head_dim; j++) {
    acc_t o = 0;
    for (int t = 0; t < npos; t++)
      o += (acc_t)(s[t] / sum) * (acc_t)llama_ref_f32(v[(size_t)t * stride + j]);
    out[j] = (float)o;
  }
  free(s);
}

int llama_ref_argmax(const float *x, int n) {
  int best = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[best]) /* strictly greater: the first of equal maxima wins */
      best = i;
  return best;
}

/* ---- state ---- */

LlamaRefConfig llama_ref_default_config(void) {
  LlamaRefConfig c = {0};
  c.eps = 1e-5f;
  c.rope_theta = 500000.0;
  c.rope_factor = 32.0;
  c.rope_low_freq_factor = 1.0;
  c.rope_high_freq_factor = 4.0;
  c.rope_original_max_pos = 8192.0;
  c.max_context = 2048;
  c.max_batch = 1;
  return c;
}

static size_t kv_index(const LlamaRefConfig *c, int row, int layer, int pos, int head) {
  return ((((size_t)row * c->layers + layer) * c->max_context + pos) * c->kv_heads + head) *
         c->head_dim;
}

LlamaRefState *llama_ref_create(const LlamaRefConfig *cfg, const LlamaRefWeights *w) {
  const LlamaRefConfig *c = cfg;
  if (c->dim <= 0 || c->ffn <= 0 || c->layers <= 0 || c->heads <= 0 || c->kv_heads <= 0 ||
      c->heads % c->kv_heads || c->head_dim <= 0 || c->head_dim % 2 || c->vocab <= 0 ||
      c->max_context <= 0 || c->max_batch <= 0 || !(c->eps > 0))
    return NULL;
  LlamaRefState *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->c = *c;
  s->w = *w;
  size_t kvn = kv_index(c, c->max_batch, 0, 0, 0);
  int qkv = (c->heads + 2 * c->kv_heads) * c->head_dim;
  int wide = c->dim > c->ffn ? c->dim : c->ffn;
  if (c->vocab > wide)
    wide = c->vocab;
  s->kcache = calloc(kvn, sizeof(uint16_t));
  s->vcache = calloc(kvn, sizeof(uint16_t));
  s->written = calloc((size_t)c->max_batch * c->max_context, 1);
  s->x = malloc(sizeof(float) * c->dim);
  s->h = malloc(sizeof(float) * wide);
  s->qkv = malloc(sizeof(float) * qkv);
  s->attn = malloc(sizeof(float) * c->heads * c->head_dim);
  s->gate = malloc(sizeof(float) * c->ffn);
  s->up = malloc(sizeof(float) * c->ffn);
  s->hf = malloc(sizeof(float) * c->dim);
  if (!s->kcache || !s->vcache || !s->written || !s->x || !s->h || !s->qkv || !s->attn ||
      !s->gate || !s->up || !s->hf) {
    llama_ref_free(s);
    return NULL;
  }
  return s;
}

void llama_ref_free(LlamaRefState *s) {
  if (!s)
    return;
  free(s->kcache);
  free(s->vcache);
  free(s->written);
  free(s->x);
  free(s->h);
  free(s->qkv);
  free(s->attn);
  free(s->gate);
  free(s->up);
  free(s->hf);
  free(s);
}

void llama_ref_reset(LlamaRefState *s) {
  memset(s->written, 0, (size_t)s->c.max_batch * s->c.max_context);
}

void llama_ref_set_trace(LlamaRefState *s, LlamaRefTrace fn, void *ctx) {
  s->trace = fn;
  s->trace_ctx = ctx;
}

void llama_ref_set_round(LlamaRefState *s, LlamaRefRound fn, void *ctx) {
  s->round = fn;
  s->round_ctx = ctx;
}

const char *llama_ref_error(const LlamaRefState *s) { return s->err; }

const uint16_t *llama_ref_kv(const LlamaRefState *s, int kv, int row, int layer, int pos,
                             int head) {
  const LlamaRefConfig *c = &s->c;
  if (row < 0 || row >= c->max_batch || layer < 0 || layer >= c->layers || pos < 0 ||
      pos >= c->max_context || head < 0 || head >= c->kv_heads ||
      !s->written[(size_t)row * c->max_context + pos])
    return NULL;
  return (kv ? s->vcache : s->kcache) + kv_index(c, row, layer, pos, head);
}

static int fail(LlamaRefState *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->err, sizeof s->err, fmt, ap);
  va_end(ap);
  return -1;
}

static void trace(LlamaRefState *s, const char *what, int layer, int row, const float *v, int n) {
  if (s->trace)
    s->trace(s->trace_ctx, what, layer, row, v, n);
}

/* One row: token `tok` at position p of sequence `row`. */
static void step_row(LlamaRefState *s, int row, int tok, int p, float *logits) {
  const LlamaRefConfig *c = &s->c;
  const LlamaRefWeights *w = &s->w;
  const int D = c->dim, F = c->ffn, H = c->heads, KVH = c->kv_heads, HD = c->head_dim;
  const int QN = H * HD, KN = KVH * HD, QKV = QN + 2 * KN;
  const int group = H / KVH; /* query heads per kv head */
  float *x = s->x, *h = s->h, *q = s->qkv, *k = s->qkv + QN, *v = s->qkv + QN + KN;

  /* x = embed[tok]: the bf16 row, widened to f32 */
  for (int i = 0; i < D; i++)
    x[i] = llama_ref_f32(w->embed[(size_t)tok * D + i]);
  trace(s, "x0", -1, row, x, D);

  for (int l = 0; l < c->layers; l++) {
    /* h = rmsnorm(x, ln1[l]) */
    llama_ref_rmsnorm(x, w->ln1 + (size_t)l * D, D, c->eps, h);
    trace(s, "h1", l, row, h, D);
    /* q, k, v = split(wqkv[l] h + bqkv[l]): rows [0, QN) are q, [QN, QN+KN) k, the rest v */
    matvec(w->wqkv + (size_t)l * QKV * D, h, QKV, D, s->qkv);
    if (w->bqkv) /* Qwen2: each row plus its bias, in f32 as the sum was rounded */
      for (int i = 0; i < QKV; i++)
        s->qkv[i] += llama_ref_f32(w->bqkv[(size_t)l * QKV + i]);
    trace(s, "q_norope", l, row, q, QN);
    trace(s, "k_norope", l, row, k, KN);
    /* rotate q and k at position p, head by head */
    llama_ref_rope(c, q, QN, p);
    llama_ref_rope(c, k, KN, p);
    trace(s, "q", l, row, q, QN);
    trace(s, "k", l, row, k, KN);
    trace(s, "v", l, row, v, KN);
    /* append: the cache keeps k and v rounded to bf16 (nearest even; see llama_ref_set_round) */
    for (int g = 0; g < KVH; g++)
      for (int j = 0; j < HD; j++) {
        size_t at = kv_index(c, row, l, p, g) + j;
        float kf = k[g * HD + j], vf = v[g * HD + j];
        s->kcache[at] = s->round ? s->round(s->round_ctx, 0, row, l, p, g, j, kf)
                                 : llama_ref_bf16(kf);
        s->vcache[at] = s->round ? s->round(s->round_ctx, 1, row, l, p, g, j, vf)
                                 : llama_ref_bf16(vf);
      }
    /* attention over positions 0..p: query head hh reads kv head hh / group */
    for (int hh = 0; hh < H; hh++) {
      int g = hh / group;
      size_t base = kv_index(c, row, l, 0, g);
      llama_ref_attend(HD, q + hh * HD, s->kcache + base, s->vcache + base, p + 1, KVH * HD,
                       s->attn + hh * HD);
    }
    trace(s, "attn", l, row, s->attn, QN);
    /* x = x + wo[l] attn */
    matvec(w->wo + (size_t)l * D * QN, s->attn, D, QN, h);
    for (int i = 0; i < D; i++)
      x[i] += h[i];
    trace(s, "x_attn", l, row, x, D);
    /* h = rmsnorm(x, ln2[l]); x = x + w_down[l] (silu(w_gate[l] h) * (w_up[l] h)) */
    llama_ref_rmsnorm(x, w->ln2 + (size_t)l * D, D, c->eps, h);
    trace(s, "h2", l, row, h, D);
    matvec(w->w_gate + (size_t)l * F * D, h, F, D, s->gate);
    matvec(w->w_up + (size_t)l * F * D, h, F, D, s->up);
    trace(s, "up", l, row, s->up, F);
    for (int i = 0; i < F; i++) {
      double g = s->gate[i];
      s->gate[i] = (float)(g / (1.0 + exp(-g))); /* silu(g) = g sigmoid(g) */
    }
    trace(s, "silu_gate", l, row, s->gate, F);
    for (int i = 0; i < F; i++)
      s->gate[i] = (float)((double)s->gate[i] * (double)s->up[i]); /* silu(g) * u */
    trace(s, "ffn", l, row, s->gate, F);
    matvec(w->w_down + (size_t)l * D * F, s->gate, D, F, h);
    for (int i = 0; i < D; i++)
      x[i] += h[i];
    trace(s, "x", l, row, x, D);
  }

  /* logits = lm_head rmsnorm(x, lnf), the tied embedding when there is no lm_head */
  llama_ref_rmsnorm(x, w->lnf, D, c->eps, s->hf);
  trace(s, "hf", -1, row, s->hf, D);
  matvec(w->lm_head ? w->lm_head : w->embed, s->hf, c->vocab, D, logits);
  trace(s, "logits", -1, row, logits, c->vocab);
}

int llama_ref_step(LlamaRefState *s, int batch, const int32_t *tokens, const int32_t *pos,
                   float *logits_out, int32_t *next_out) {
  const LlamaRefConfig *c = &s->c;
  s->err[0] = 0;
  if (batch < 1 || batch > c->max_batch)
    return fail(s, "batch %d outside 1..%d", batch, c->max_batch);
  for (int b = 0; b < batch; b++) {
    if (tokens[b] < 0 || tokens[b] >= c->vocab)
      return fail(s, "row %d: token %d outside 0..%d", b, tokens[b], c->vocab - 1);
    if (pos[b] < 0 || pos[b] >= c->max_context)
      return fail(s, "row %d: position %d outside 0..%d", b, pos[b], c->max_context - 1);
    for (int t = 0; t < pos[b]; t++)
      if (!s->written[(size_t)b * c->max_context + t])
        return fail(s, "row %d: position %d attends to position %d, never written", b, pos[b], t);
  }
  float *row_logits = malloc(sizeof(float) * c->vocab);
  if (!row_logits)
    return fail(s, "out of memory");
  for (int b = 0; b < batch; b++) {
    step_row(s, b, tokens[b], pos[b], row_logits);
    s->written[(size_t)b * c->max_context + pos[b]] = 1;
    if (logits_out)
      memcpy(logits_out + (size_t)b * c->vocab, row_logits, sizeof(float) * c->vocab);
    if (next_out)
      next_out[b] = llama_ref_argmax(row_logits, c->vocab);
  }
  free(row_logits);
  return 0;
}
