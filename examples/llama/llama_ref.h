/* llama_ref.h: a plain, sequential C reference of Llama decoding (and of Qwen2's, which adds a
 * bias to the q, k and v projections), written from the math.
 *
 * It exists to check the compiled megakernels (tests/sim/test_llama_sim.c, tests/gpu/
 * test_llama_gpu.c) and shares no code with the compiler, the runtime or its reference tiles:
 * it has its own bf16 conversion, its own rope, its own contiguous (not paged) KV cache.
 *
 * One decode step of row b (a sequence) with token t at position p = pos[b]:
 *
 *   x = embed[t]                                              (bf16 row -> f32)
 *   for each layer l:
 *     h = rmsnorm(x, ln1[l], eps)
 *     q, k, v = split(wqkv[l] h + bqkv[l], H*HD, KVH*HD, KVH*HD)   (bqkv: Qwen2's, else 0)
 *     q, k = rope(q, p), rope(k, p)                           (Llama 3 frequency scaling)
 *     K[l][p], V[l][p] = bf16(k), bf16(v)                     (round to nearest even)
 *     a_h = sum_{t<=p} softmax_t(q_h . K[l][t][g] / sqrt(HD)) V[l][t][g],  g = h / (H/KVH)
 *     x = x + wo[l] a
 *     h = rmsnorm(x, ln2[l], eps)
 *     x = x + w_down[l] (silu(w_gate[l] h) * (w_up[l] h))
 *   logits = lm_head rmsnorm(x, lnf, eps)                     (lm_head: the embedding if tied)
 *   next = argmax(logits)                                     (the first of equal maxima)
 *
 * Matrices are row-major bf16 (uint16_t bit patterns) and act as W[N][K] x (out[n] = sum_k
 * W[n][k] x[k]); activations are f32 as in the kernels, every dot product and mean is
 * accumulated in double (LLAMA_REF_ACC). Rows of a batch are independent sequences, each with its
 * own cache; a step may revisit a position (it overwrites it), but every position below pos[b]
 * must have been written by an earlier step of that row.
 */
#ifndef LLAMA_REF_H
#define LLAMA_REF_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct LlamaRefConfig {
  int dim;      /* D: the residual stream */
  int ffn;      /* F: the SwiGLU hidden size */
  int layers;   /* L */
  int heads;    /* H: query heads */
  int kv_heads; /* KVH: key/value heads, H % KVH == 0 */
  int head_dim; /* HD, even */
  int vocab;    /* V: rows of the (tied) embedding */
  float eps;    /* rmsnorm epsilon (1e-5) */
  /* rope: inv_freq[i] = theta^(-2i/HD), scaled as in Llama 3 when factor > 1 */
  double rope_theta;           /* 500000 */
  double rope_factor;          /* 32 (1: no scaling) */
  double rope_low_freq_factor; /* 1 */
  double rope_high_freq_factor;/* 4 */
  double rope_original_max_pos;/* 8192 */
  int max_context;             /* positions per sequence the cache holds */
  int max_batch;               /* sequences (rows) the state holds */
} LlamaRefConfig;

/* Pointers to bf16 weights (not copied; they must outlive the state). */
typedef struct LlamaRefWeights {
  const uint16_t *embed;  /* [V][D], also the output projection without lm_head */
  const uint16_t *ln1;    /* [L][D] */
  const uint16_t *wqkv;   /* [L][(H + 2*KVH)*HD][D]: q rows, then k rows, then v rows */
  const uint16_t *wo;     /* [L][D][H*HD] */
  const uint16_t *ln2;    /* [L][D] */
  const uint16_t *w_gate; /* [L][F][D] */
  const uint16_t *w_up;   /* [L][F][D] */
  const uint16_t *w_down; /* [L][D][F] */
  const uint16_t *lnf;    /* [D] */
  const uint16_t *lm_head; /* [V][D], the output projection of an untied model; NULL: embed */
  const uint16_t *bqkv;   /* [L][(H + 2*KVH)*HD]: the q, k and v biases (Qwen2); NULL: none */
} LlamaRefWeights;

typedef struct LlamaRefState LlamaRefState;

/* Optional observer of the intermediate values of a step (for debugging a mismatch): called with
 * what = "x0" (embedding), "h1", "q_norope", "k_norope", "q", "k", "v" (q, k after rope), "attn",
 * "x_attn" (residual after attention), "h2", "up", "silu_gate", "ffn" (silu(gate)*up), "x"
 * (after the block), "hf" (final norm), "logits"; layer is -1 outside the blocks. */
typedef void (*LlamaRefTrace)(void *ctx, const char *what, int layer, int row, const float *v,
                              int n);

/* Optional rounding of the cache. By default K and V are stored as llama_ref_bf16(value). A hook
 * sees every value stored (kv 0: K, 1: V; element j of kv head `head`) and returns the bf16 to
 * store instead. Tests use it for one thing only: when `value` lies within rounding noise of a tie
 * between two bf16 numbers, the kernel's f32 value (computed in another order) may round to the
 * other one, and the test follows the kernel's choice so that both keep the same cache. */
typedef uint16_t (*LlamaRefRound)(void *ctx, int kv, int row, int layer, int pos, int head, int j,
                                  float value);

/* The Llama 3.x defaults for rope and eps; the sizes are left to the caller. */
LlamaRefConfig llama_ref_default_config(void);

/* Allocates a state with an empty cache. Returns NULL on a bad config or out of memory. */
LlamaRefState *llama_ref_create(const LlamaRefConfig *cfg, const LlamaRefWeights *w);
void llama_ref_free(LlamaRefState *s);
/* Forgets every position of every sequence. */
void llama_ref_reset(LlamaRefState *s);
void llama_ref_set_trace(LlamaRefState *s, LlamaRefTrace fn, void *ctx);
void llama_ref_set_round(LlamaRefState *s, LlamaRefRound fn, void *ctx);

/* One decode step of rows 0..batch-1: row b feeds tokens[b] at position pos[b]. Writes
 * logits_out[batch][V] (may be NULL) and next_out[batch] (may be NULL). Returns 0, or -1 with a
 * message in llama_ref_error() (a token or position out of range, a position read before it was
 * written). */
int llama_ref_step(LlamaRefState *s, int batch, const int32_t *tokens, const int32_t *pos,
                   float *logits_out, int32_t *next_out);
const char *llama_ref_error(const LlamaRefState *s);

/* The cached K (kv = 0) or V (kv = 1) of kv head `head`, layer `layer`, position `pos` of
 * sequence `row`: HD bf16 values, or NULL if that position was never written. */
const uint16_t *llama_ref_kv(const LlamaRefState *s, int kv, int row, int layer, int pos,
                             int head);

/* ---- the pieces, exposed so that tests can check them on their own ---- */

uint16_t llama_ref_bf16(float f);    /* f32 -> bf16, round to nearest even, NaN stays NaN */
float llama_ref_f32(uint16_t h);     /* bf16 -> f32, exact */

/* Rotation frequency of pair i (0 <= i < HD/2) with the config's Llama 3 scaling. */
double llama_ref_rope_inv_freq(const LlamaRefConfig *cfg, int i);
/* Rotates every head of x[n] (n a multiple of HD) at position pos: pairs (j, j + HD/2). */
void llama_ref_rope(const LlamaRefConfig *cfg, float *x, int n, int pos);
/* One head of decode attention: out[HD] = sum_t softmax_t(q . K[t] / sqrt(HD)) V[t] over
 * t = 0..npos-1, with K[t] = k[t*stride ..], V[t] = v[t*stride ..] (bf16). */
void llama_ref_attend(int head_dim, const float *q, const uint16_t *k, const uint16_t *v,
                      int npos, int stride, float *out);
/* x * rsqrt(mean(x^2) + eps) * w */
void llama_ref_rmsnorm(const float *x, const uint16_t *w, int n, float eps, float *out);
/* The first index of the maximum of x[n]. */
int llama_ref_argmax(const float *x, int n);

#ifdef __cplusplus
}
#endif

#endif
