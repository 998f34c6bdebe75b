/* rt_llama.h: a tiny Llama decode model built with rt_build.h, shaped like
 * tests/sim/llama_tiny.mlk, shared by test_batch (against a reference) and test_check.
 *
 * Token embedding (gather), 2 layers of [q, k, v matvecs over slices of one wqkv param with the
 * fused input rmsnorm, rope with Llama 3 scaling on q and k, kv_append into a paged cache (page
 * 4), grouped-query attention (4 heads over 2 kv heads), output projection + residual, gate (silu)
 * and up matvecs with the fused norm, their product, down projection + residual], the final
 * rmsnorm, the logits (tied embedding) and their argmax, in one kernel "decode". Batch B in 1..4.
 * build_split makes the attention a split one (partials + attn_reduce), build_folded one that
 * merges its own chunks.
 */
#ifndef RT_LLAMA_H
#define RT_LLAMA_H

#include "rt_build.h"

enum { D = 32, F = 48, L = 2, H = 4, KVH = 2, HD = 8, V = 40, QKV = (H + 2 * KVH) * HD };
enum { PAGE = 4, CTX = 16, BMAX = 4 }; /* CTX: the MLK_KV_CONTEXT tests set */
#define EPS 1e-5f
#define ROPE 10000.0f, 8.0f, 1.0f, 4.0f, 16

typedef struct Llama {
  RtB b;
  int embed, ln1, wqkv, wo, ln2, wg, wu, wd, lnf, kv, tokens, pos, logits, next;
} Llama;

/* split > 1: the attention of every layer split into `split` chunks with tasks of kvh kv heads
 * (an attention op writing partials "part.l" and an attn_reduce "attn_reduce@llama:11[l=l]", or
 * with `folded` one op that merges them, mlk_attn_folds). */
static inline void build_attn(Llama *s, MlkSchedule sched, int64_t split, int64_t kvh, int folded) {
  RtB *b = &s->b;
  rtb_init(b, "llama_tiny", BMAX);
  s->embed = rtb_param(b, "embed", V, D, 0);
  s->ln1 = rtb_param(b, "ln1", L, D, 0);
  s->wqkv = rtb_param(b, "wqkv", L, QKV, D);
  s->wo = rtb_param(b, "wo", L, D, H * HD);
  s->ln2 = rtb_param(b, "ln2", L, D, 0);
  s->wg = rtb_param(b, "w_gate", L, F, D);
  s->wu = rtb_param(b, "w_up", L, F, D);
  s->wd = rtb_param(b, "w_down", L, D, F);
  s->lnf = rtb_param(b, "lnf", D, 0, 0);
  s->kv = rtb_cache(b, "kv", L, KVH, HD, PAGE);
  s->tokens = rtb_act(b, "tokens", MLK_I32, MLK_TENSOR_INPUT, 1);
  s->pos = rtb_act(b, "pos", MLK_I32, MLK_TENSOR_INPUT, 1);
  s->logits = rtb_act(b, "logits", MLK_F32, MLK_TENSOR_OUTPUT, V);
  s->next = rtb_act(b, "next", MLK_I32, MLK_TENSOR_OUTPUT, 1);
  rtb_kernel(b, "decode", sched);
  int x = rtb_act(b, "x", MLK_F32, MLK_TENSOR_TEMP, D);
  rtb_gather(b, "gather@llama:3", x, s->tokens, A(s->embed), D, 10);
  for (int l = 0; l < L; l++) {
#define T(nm, cols) rtb_act(b, rtb_str(b, nm ".%d", l), MLK_F32, MLK_TENSOR_TEMP, cols)
#define OP(nm, line) rtb_str(b, nm "@llama:%d[l=%d]", line, l)
    int q = T("q", H * HD), k = T("k", KVH * HD), v = T("v", KVH * HD), qr = T("qr", H * HD),
        kr = T("kr", KVH * HD), att = T("att", H * HD), x1 = T("x1", D), g = T("g", F), u = T("u", F),
        gu = T("gu", F), x2 = T("x2", D);
    int64_t w = (int64_t)l * QKV * D;
    rtb_matvec(b, OP("matvec", 5), q, x, AO(s->wqkv, w), -1, AO(s->ln1, l * D), H * HD, D, 8,
               MLK_FN_NONE, EPS);
    rtb_matvec(b, OP("matvec", 6), k, x, AO(s->wqkv, w + H * HD * D), -1, AO(s->ln1, l * D), KVH * HD,
               D, 8, MLK_FN_NONE, EPS);
    rtb_matvec(b, OP("matvec", 7), v, x, AO(s->wqkv, w + (H + KVH) * HD * D), -1, AO(s->ln1, l * D),
               KVH * HD, D, 16, MLK_FN_NONE, EPS);
    rtb_rope(b, OP("rope", 8), qr, q, s->pos, H * HD, HD, HD, ROPE);
    rtb_rope(b, OP("rope", 9), kr, k, s->pos, KVH * HD, HD, 2 * HD, ROPE);
    rtb_kv_append(b, OP("kv_append", 10), s->kv, l, kr, v, s->pos, HD);
    if (split > 1 && folded)
      rtb_attention_folded(b, OP("attention", 11), att, qr, s->kv, l, s->pos, H, kvh, split);
    else if (split > 1)
      rtb_attention_split(b, OP("attention", 11), OP("attn_reduce", 11), att,
                          T("part", mlk_attn_part_cols(KVH, H, HD, split, kvh)), qr, s->kv, l,
                          s->pos, H, kvh, split);
    else
      rtb_attention(b, OP("attention", 11), att, qr, s->kv, l, s->pos, H, H / KVH * HD);
    rtb_matvec(b, OP("matvec", 12), x1, att, AO(s->wo, (int64_t)l * D * H * HD), x, NOARG, D, H * HD,
               6, MLK_FN_NONE, 0);
    rtb_matvec(b, OP("matvec", 13), g, x1, AO(s->wg, (int64_t)l * F * D), -1, AO(s->ln2, l * D), F, D,
               12, MLK_FN_SILU, EPS);
    rtb_matvec(b, OP("matvec", 14), u, x1, AO(s->wu, (int64_t)l * F * D), -1, AO(s->ln2, l * D), F, D,
               12, MLK_FN_NONE, EPS);
    rtb_eltwise(b, OP("mul", 15), gu, g, u, F, 10, MLK_FN_MUL);
    rtb_matvec(b, OP("matvec", 16), x2, gu, AO(s->wd, (int64_t)l * D * F), x1, NOARG, D, F, 5,
               MLK_FN_NONE, 0);
    x = x2;
#undef T
#undef OP
  }
  int xf = rtb_act(b, "xf", MLK_F32, MLK_TENSOR_TEMP, D);
  rtb_rmsnorm(b, "rmsnorm@llama:20", xf, x, A(s->lnf), D, EPS);
  rtb_matvec(b, "matvec@llama:20", s->logits, xf, A(s->embed), -1, NOARG, V, D, 16, MLK_FN_NONE, 0);
  rtb_argmax(b, "argmax@llama:21", s->next, s->logits, V);
  rtb_done(b);
}

static inline void build_split(Llama *s, MlkSchedule sched, int64_t split, int64_t kvh) {
  build_attn(s, sched, split, kvh, 0);
}
static inline void build_folded(Llama *s, MlkSchedule sched, int64_t split, int64_t kvh) {
  build_attn(s, sched, split, kvh, 1);
}
static inline void build(Llama *s, MlkSchedule sched) { build_split(s, sched, 1, 1); }

/* Host copies of the params (new_params draws them, set_params sets them). */
static struct {
  uint16_t embed[V * D], ln1[L * D], wqkv[L * QKV * D], wo[L * D * H * HD], ln2[L * D];
  uint16_t wg[L * F * D], wu[L * F * D], wd[L * D * F], lnf[D];
} P;

static inline void set_params(mlk_model *m, const Llama *s) {
  CHECK_OK(mlk_model_set_tensor(m, s->embed, P.embed, sizeof P.embed));
  CHECK_OK(mlk_model_set_tensor(m, s->ln1, P.ln1, sizeof P.ln1));
  CHECK_OK(mlk_model_set_tensor(m, s->wqkv, P.wqkv, sizeof P.wqkv));
  CHECK_OK(mlk_model_set_tensor(m, s->wo, P.wo, sizeof P.wo));
  CHECK_OK(mlk_model_set_tensor(m, s->ln2, P.ln2, sizeof P.ln2));
  CHECK_OK(mlk_model_set_tensor(m, s->wg, P.wg, sizeof P.wg));
  CHECK_OK(mlk_model_set_tensor(m, s->wu, P.wu, sizeof P.wu));
  CHECK_OK(mlk_model_set_tensor(m, s->wd, P.wd, sizeof P.wd));
  CHECK_OK(mlk_model_set_tensor(m, s->lnf, P.lnf, sizeof P.lnf));
}

static inline void new_params(void) {
  rt_fill_bf16(P.embed, V * D, 1.0f);
  rt_fill_bf16(P.wqkv, L * QKV * D, 0.5f);
  rt_fill_bf16(P.wo, L * D * H * HD, 0.3f);
  rt_fill_bf16(P.wg, L * F * D, 0.4f);
  rt_fill_bf16(P.wu, L * F * D, 0.4f);
  rt_fill_bf16(P.wd, L * D * F, 0.2f);
  uint16_t *norms[] = {P.ln1, P.ln2};
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < L * D; j++)
      norms[i][j] = mlk_f32_to_bf16(1.0f + rt_uniform(0.3f));
  for (int j = 0; j < D; j++)
    P.lnf[j] = mlk_f32_to_bf16(1.0f + rt_uniform(0.3f));
}

#endif /* RT_LLAMA_H */
