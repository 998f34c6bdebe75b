/* rt_build.h: a builder of MlkModelDesc tables for the runtime tests, and double-precision
 * references of every op.
 *
 * The builder appends tensors, caches and ops the way mlkc lowers a model (every op tiles its
 * output columns; batched when the model has a batch dim) and adds the events the way mlkc does:
 * for each operand written earlier in the same kernel, MLK_MAP_ALL when the consumer reads every
 * column (a matvec's x, rmsnorm, argmax, positions, ids) and MLK_MAP_TILE when it reads only its
 * own tile (eltwise operands, a residual, rope, the keys and values of an append, the query and
 * the cache heads of attention). Counter bases are laid out by rtb_done. Tests then break or drop
 * what they want to see fail.
 *
 * The references take double inputs and compute in double (bf16 weights and cache entries widened
 * exactly), straight from the definitions in mlk_desc.h and mlk_ref.h, sharing no code with
 * stdlib/ref.
 */
#ifndef RT_BUILD_H
#define RT_BUILD_H

#include <stdarg.h>

#include "rt_test.h"

enum { RTB_MAX_T = 128, RTB_MAX_OPS = 96, RTB_MAX_EV = 256, RTB_MAX_K = 12, RTB_MAX_C = 2,
       RTB_MAX_LAYERS = 8, RTB_MAX_COLL = 8 };

typedef struct RtB {
  MlkTensorDesc tensors[RTB_MAX_T];
  MlkOpDesc ops[RTB_MAX_OPS];
  MlkEventDesc events[RTB_MAX_EV];
  int refs[2 * RTB_MAX_EV];
  MlkKernelDesc kernels[RTB_MAX_K];
  int variant_ops[RTB_MAX_K][RTB_MAX_OPS];
  MlkCacheDesc caches[RTB_MAX_C];
  MlkCollectiveDesc collectives[RTB_MAX_COLL];
  int producer[RTB_MAX_T];                   /* last op of the current kernel writing a tensor */
  int cache_producer[RTB_MAX_C][RTB_MAX_LAYERS]; /* likewise per cache layer */
  char strings[32768];
  size_t used;
  MlkModelDesc desc;
} RtB;

static inline MlkArg A(int t) { return (MlkArg){t, 0}; }
static inline MlkArg AO(int t, int64_t off) { return (MlkArg){t, off}; }
#define NOARG ((MlkArg){-1, 0})

static inline const char *rtb_str(RtB *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *p = b->strings + b->used;
  int n = vsnprintf(p, sizeof b->strings - b->used, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n + 1 > sizeof b->strings - b->used) {
    fprintf(stderr, "rt_build.h: string pool full\n");
    abort();
  }
  b->used += (size_t)n + 1;
  return p;
}

/* A model called `name`; bmax > 0: batch dim "B" in 1..bmax, 0: none. */
static inline void rtb_init(RtB *b, const char *name, int64_t bmax) {
  memset(b, 0, sizeof *b);
  b->desc = (MlkModelDesc){.abi = MLK_DESC_ABI, .name = name, .source = "rt_build.mlk",
                           .tensors = b->tensors, .ops = b->ops, .events = b->events,
                           .kernels = b->kernels, .caches = b->caches,
                           .batch_name = bmax > 0 ? "B" : NULL, .batch_min = 1,
                           .batch_max = bmax > 0 ? bmax : 1};
}

static inline int rtb_batched(const RtB *b) { return b->desc.batch_name != NULL; }

static inline int rtb_tensor(RtB *b, MlkTensorDesc t) {
  int i = b->desc.ntensors++;
  if (i >= RTB_MAX_T)
    abort();
  b->tensors[i] = t;
  b->producer[i] = -1;
  return i;
}

/* An activation: [B, cols] in a batched model, else [cols]. */
static inline int rtb_act(RtB *b, const char *name, MlkDType dt, MlkTensorKind kind, int64_t cols) {
  int64_t bm = b->desc.batch_max;
  if (rtb_batched(b))
    return rtb_tensor(b, (MlkTensorDesc){name, dt, kind, 2, {bm, cols, 0, 0}, bm * cols, NULL, 1});
  return rtb_tensor(b, (MlkTensorDesc){name, dt, kind, 1, {cols, 0, 0, 0}, cols, NULL, 0});
}

/* A bf16 param of shape [d0, d1, d2] (trailing zeros drop dims). */
static inline int rtb_param(RtB *b, const char *name, int64_t d0, int64_t d1, int64_t d2) {
  int rank = d2 ? 3 : d1 ? 2 : 1;
  int64_t numel = d0 * (d1 ? d1 : 1) * (d2 ? d2 : 1);
  return rtb_tensor(b, (MlkTensorDesc){name, MLK_BF16, MLK_TENSOR_PARAM, rank, {d0, d1, d2, 0}, numel,
                                       NULL, 0});
}

static inline int rtb_cache(RtB *b, const char *name, int64_t layers, int64_t kvh, int64_t hd,
                            int64_t page) {
  int c = b->desc.ncaches++;
  int pool = rtb_tensor(b, (MlkTensorDesc){name, MLK_BF16, MLK_TENSOR_CACHE, 0, {0}, 0, NULL, 0});
  int pages = rtb_tensor(b, (MlkTensorDesc){rtb_str(b, "%s.pages", name), MLK_I32, MLK_TENSOR_PAGES, 0,
                                            {0}, 0, NULL, 0});
  b->caches[c] = (MlkCacheDesc){name, pool, pages, MLK_BF16, layers, kvh, hd, page};
  for (int l = 0; l < RTB_MAX_LAYERS; l++)
    b->cache_producer[c][l] = -1;
  return c;
}

static inline void rtb_kernel(RtB *b, const char *name, MlkSchedule sched) {
  int k = b->desc.nkernels++;
  b->kernels[k] = (MlkKernelDesc){name, rtb_str(b, "mlk_%s", name), b->desc.nops, 0, sched, NULL, 0, 0, 1};
  for (int i = 0; i < RTB_MAX_T; i++)
    b->producer[i] = -1;
  for (int c = 0; c < RTB_MAX_C; c++)
    for (int l = 0; l < RTB_MAX_LAYERS; l++)
      b->cache_producer[c][l] = -1;
}

/* The next kernel as the next segment of the current one (a megakernel cut at a collective, as
 * mlkc's cut pass makes them): the segment numbers of the kernels of the megakernel follow. */
static inline void rtb_segment(RtB *b) {
  int k = b->desc.nkernels - 1, first = k - b->kernels[k].segment;
  rtb_kernel(b, rtb_str(b, "%s.%d", b->kernels[first].name, b->kernels[k].segment + 1),
             b->kernels[first].schedule);
  b->kernels[k + 1].segment = b->kernels[k].segment + 1;
  for (int i = first; i <= k + 1; i++)
    b->kernels[i].nsegments = b->kernels[k + 1].segment + 1;
}

/* An all-reduce over `ranks` ranks after the current kernel: out = the sum of `in` over the ranks
 * (f32 activations of n columns). */
static inline void rtb_allreduce(RtB *b, const char *name, int in, int out, int64_t n, int64_t ranks) {
  int i = b->desc.ncollectives++;
  if (i >= RTB_MAX_COLL)
    abort();
  b->collectives[i] = (MlkCollectiveDesc){name, MLK_COLL_ALLREDUCE, A(in), A(out), n,
                                          rtb_batched(b), ranks, b->desc.nkernels - 1};
  b->desc.collectives = b->collectives;
  b->desc.ranks = ranks;
}

/* The event for op `c` reading what op `p` wrote into `tensor` (n columns, consumer tiles of
 * ctile); merged into an existing one between the same ops and tensor. */
static inline void rtb_event(RtB *b, int p, int c, int tensor, MlkEventMap map, int64_t n,
                             int64_t ctile) {
  if (p < 0)
    return;
  for (int i = 0; i < b->desc.nevents; i++) {
    MlkEventDesc *e = &b->events[i];
    if (e->producer == p && e->consumer == c && e->tensor == tensor) {
      if (map == MLK_MAP_ALL && e->map != MLK_MAP_ALL) {
        e->map = MLK_MAP_ALL;
        e->ctile = b->ops[c].tile;
        e->size = 1;
      }
      return;
    }
  }
  int i = b->desc.nevents++;
  if (i >= RTB_MAX_EV)
    abort();
  b->events[i] = (MlkEventDesc){
      rtb_str(b, "%s: %s -> %s", b->tensors[tensor].name, b->ops[p].name, b->ops[c].name), p, c,
      tensor, map, n, b->ops[p].tile, map == MLK_MAP_ALL ? b->ops[c].tile : ctile, 0,
      map == MLK_MAP_ALL ? 1 : (n + ctile - 1) / ctile, 0, 0};
}

/* Op `c` reads tensor `t` (ALL or its own tiles of it). */
static inline void rtb_reads(RtB *b, int c, int t, MlkEventMap map) {
  if (t < 0 || b->producer[t] < 0)
    return;
  rtb_event(b, b->producer[t], c, t, map, b->ops[b->producer[t]].n, b->ops[c].tile);
}

static inline int rtb_push(RtB *b, MlkOpDesc op) {
  int o = b->desc.nops++;
  if (o >= RTB_MAX_OPS)
    abort();
  op.ntasks = (op.n + op.tile - 1) / op.tile;
  op.batched = rtb_batched(b);
  b->ops[o] = op;
  b->kernels[b->desc.nkernels - 1].nops++;
  return o;
}

static inline void rtb_wrote(RtB *b, int o) {
  if (b->ops[o].kind != MLK_OP_KV_APPEND)
    b->producer[b->ops[o].out.tensor] = o;
}

static inline int rtb_matvec(RtB *b, const char *name, int out, int x, MlkArg W, int res,
                             MlkArg norm, int64_t n, int64_t k, int64_t tile, MlkFn fn, float eps) {
  int o = rtb_push(b, (MlkOpDesc){.name = name, .kind = MLK_OP_MATVEC, .fn = fn, .out = A(out),
                                  .in = {A(x), W, A(res), norm, NOARG}, .n = n, .k = k, .tile = tile,
                                  .eps = eps, .layer = -1, .cache = -1});
  rtb_reads(b, o, x, MLK_MAP_ALL);
  rtb_reads(b, o, res, MLK_MAP_TILE);
  rtb_wrote(b, o);
  return o;
}

static inline int rtb_eltwise(RtB *b, const char *name, int out, int a, int c, int64_t n,
                              int64_t tile, MlkFn fn) {
  int o = rtb_push(b, (MlkOpDesc){.name = name, .kind = MLK_OP_ELTWISE, .fn = fn, .out = A(out),
                                  .in = {A(a), A(c), NOARG, NOARG, NOARG}, .n = n, .tile = tile,
                                  .layer = -1, .cache = -1});
  rtb_reads(b, o, a, MLK_MAP_TILE);
  rtb_reads(b, o, c, MLK_MAP_TILE);
  rtb_wrote(b, o);
  return o;
}

/* Gives matvec or eltwise op o the bias `bias` (in[4]: bf16, its n elements from the offset), which
 * every row adds (a param: no event). */
static inline void rtb_bias(RtB *b, int o, MlkArg bias) { b->ops[o].in[4] = bias; }

static inline int rtb_gather(RtB *b, const char *name, int out, int ids, MlkArg table, int64_t n,
                             int64_t tile) {
  int o = rtb_push(b, (MlkOpDesc){.name = name, .kind = MLK_OP_GATHER, .out = A(out),
                                  .in = {A(ids), table, NOARG, NOARG, NOARG}, .n = n, .tile = tile,
                                  .layer = -1, .cache = -1});
  rtb_reads(b, o, ids, MLK_MAP_ALL);
  rtb_wrote(b, o);
  return o;
}

static inline int rtb_rmsnorm(RtB *b, const char *name, int out, int x, MlkArg w, int64_t n,
                              float eps) {
  int o = rtb_push(b, (MlkOpDesc){.name = name, .kind = MLK_OP_RMSNORM, .out = A(out),
                                  .in = {A(x), w, NOARG, NOARG, NOARG}, .n = n, .tile = n, .eps = eps,
                                  .layer = -1, .cache = -1});
  rtb_reads(b, o, x, MLK_MAP_ALL);
  rtb_wrote(b, o);
  return o;
}

static inline int rtb_rope(RtB *b, const char *name, int out, int x, int pos, int64_t n,
                           int64_t hd, int64_t tile, float theta, float factor, float low,
                           float high, int64_t orig) {
  int o = rtb_push(b, (MlkOpDesc){.name = name, .kind = MLK_OP_ROPE, .out = A(out),
                                  .in = {A(x), A(pos), NOARG, NOARG, NOARG}, .n = n, .tile = tile,
                                  .theta = theta, .rope_factor = factor, .rope_low_freq = low,
                                  .rope_high_freq = high, .rope_original_max_pos = orig,
                                  .head_dim = hd, .layer = -1, .cache = -1});
  rtb_reads(b, o, x, MLK_MAP_TILE);
  rtb_reads(b, o, pos, MLK_MAP_ALL);
  rtb_wrote(b, o);
  return o;
}

static inline int rtb_kv_append(RtB *b, const char *name, int c, int layer, int k, int v, int pos,
                                int64_t tile) {
  const MlkCacheDesc *cd = &b->caches[c];
  int o = rtb_push(b, (MlkOpDesc){.name = name, .kind = MLK_OP_KV_APPEND, .out = A(cd->tensor),
                                  .in = {A(k), A(v), A(pos), A(cd->pages_tensor), NOARG},
                                  .n = cd->kv_heads * cd->head_dim, .tile = tile,
                                  .heads = cd->kv_heads, .kv_heads = cd->kv_heads,
                                  .head_dim = cd->head_dim, .layer = layer, .cache = c});
  rtb_reads(b, o, k, MLK_MAP_TILE);
  rtb_reads(b, o, v, MLK_MAP_TILE);
  rtb_reads(b, o, pos, MLK_MAP_ALL);
  b->cache_producer[c][layer] = o;
  return o;
}

static inline int rtb_attention(RtB *b, const char *name, int out, int q, int c, int layer,
                                int pos, int64_t heads, int64_t tile) {
  const MlkCacheDesc *cd = &b->caches[c];
  int o = rtb_push(b, (MlkOpDesc){.name = name, .kind = MLK_OP_ATTENTION, .out = A(out),
                                  .in = {A(q), A(cd->tensor), A(pos), A(cd->pages_tensor), NOARG},
                                  .n = heads * cd->head_dim, .tile = tile, .heads = heads,
                                  .kv_heads = cd->kv_heads, .head_dim = cd->head_dim,
                                  .layer = layer, .cache = c});
  rtb_reads(b, o, q, MLK_MAP_TILE);
  rtb_reads(b, o, pos, MLK_MAP_ALL);
  /* The kv heads of this task's query heads, in the cache layer's columns. */
  rtb_event(b, b->cache_producer[c][layer], o, cd->tensor, MLK_MAP_TILE, cd->kv_heads * cd->head_dim,
            tile / (heads / cd->kv_heads));
  rtb_wrote(b, o);
  return o;
}

/* The attention op of a split (`split` chunks a row, mlk_desc.h) writing `n` columns of `out` in
 * tiles of `tile`: its tasks wait for all of q and of the layer's cache (ALL: a task reads kv
 * head block t / split). */
static inline int rtb_attention_chunks(RtB *b, const char *name, int out, int q, int c, int layer,
                                       int pos, int64_t heads, int64_t n, int64_t tile,
                                       int64_t split) {
  const MlkCacheDesc *cd = &b->caches[c];
  int o = rtb_push(b, (MlkOpDesc){.name = name, .kind = MLK_OP_ATTENTION, .out = A(out),
                                  .in = {A(q), A(cd->tensor), A(pos), A(cd->pages_tensor), NOARG},
                                  .n = n, .tile = tile, .heads = heads, .kv_heads = cd->kv_heads,
                                  .head_dim = cd->head_dim, .layer = layer, .cache = c,
                                  .split = split});
  rtb_reads(b, o, q, MLK_MAP_ALL);
  rtb_reads(b, o, pos, MLK_MAP_ALL);
  rtb_event(b, b->cache_producer[c][layer], o, cd->tensor, MLK_MAP_ALL, cd->kv_heads * cd->head_dim, 0);
  rtb_wrote(b, o);
  return o;
}

/* A split attention (flash-decoding, mlk_desc.h): the op writing the partials `part` (f32 rows of
 * mlk_attn_part_cols(..) columns; tasks of kvh kv heads in `split` chunks) and its attn_reduce
 * writing `out`; reduce task j waits for the split producers of its records (one TILE counter).
 * Returns the reduce op; the split op is the one before it. */
static inline int rtb_attention_split(RtB *b, const char *name, const char *rname, int out, int part,
                                      int q, int c, int layer, int pos, int64_t heads, int64_t kvh,
                                      int64_t split) {
  const MlkCacheDesc *cd = &b->caches[c];
  int64_t group = heads / cd->kv_heads, rec = mlk_attn_part_rec(group, cd->head_dim);
  int64_t pcols = mlk_attn_part_cols(cd->kv_heads, heads, cd->head_dim, split, kvh);
  int o = rtb_attention_chunks(b, name, part, q, c, layer, pos, heads, pcols, kvh * rec, split);
  int r = rtb_push(b, (MlkOpDesc){.name = rname, .kind = MLK_OP_ATTN_REDUCE, .out = A(out),
                                  .in = {A(part), NOARG, NOARG, NOARG, NOARG}, .n = heads * cd->head_dim,
                                  .tile = kvh * group * cd->head_dim, .heads = heads,
                                  .kv_heads = cd->kv_heads, .head_dim = cd->head_dim, .layer = -1,
                                  .cache = -1, .split = split});
  rtb_event(b, o, r, part, MLK_MAP_TILE, pcols, split * kvh * rec);
  rtb_wrote(b, r);
  return r;
}

/* A split attention that merges its own chunks (mlk_attn_folds): `out` is the attention, tasks of
 * kvh kv heads in `split` chunks stand for kvh * group * head_dim / split columns each. */
static inline int rtb_attention_folded(RtB *b, const char *name, int out, int q, int c, int layer,
                                       int pos, int64_t heads, int64_t kvh, int64_t split) {
  const MlkCacheDesc *cd = &b->caches[c];
  int64_t cols = heads * cd->head_dim, group = heads / cd->kv_heads;
  return rtb_attention_chunks(b, name, out, q, c, layer, pos, heads, cols,
                              kvh * group * cd->head_dim / split, split);
}

static inline int rtb_argmax(RtB *b, const char *name, int out, int x, int64_t k) {
  int o = rtb_push(b, (MlkOpDesc){.name = name, .kind = MLK_OP_ARGMAX, .out = A(out),
                                  .in = {A(x), NOARG, NOARG, NOARG, NOARG}, .n = 1, .k = k, .tile = 1,
                                  .layer = -1, .cache = -1});
  rtb_reads(b, o, x, MLK_MAP_ALL);
  rtb_wrote(b, o);
  return o;
}

/* A split argmax (mlk_desc.h): `split` chunk tasks writing part (f32, 2 * split columns), and the
 * reduce writing out. */
static inline int rtb_argmax_split(RtB *b, const char *name, const char *rname, int out, int part,
                                   int x, int64_t k, int64_t split) {
  int o = rtb_push(b, (MlkOpDesc){.name = name, .kind = MLK_OP_ARGMAX, .out = A(part),
                                  .in = {A(x), NOARG, NOARG, NOARG, NOARG}, .n = 2 * split, .k = k,
                                  .tile = 2, .layer = -1, .cache = -1, .split = split});
  rtb_reads(b, o, x, MLK_MAP_ALL);
  rtb_wrote(b, o);
  int r = rtb_push(b, (MlkOpDesc){.name = rname, .kind = MLK_OP_ARGMAX_REDUCE, .out = A(out),
                                  .in = {A(part), NOARG, NOARG, NOARG, NOARG}, .n = 1, .tile = 1,
                                  .layer = -1, .cache = -1, .split = split});
  rtb_reads(b, r, part, MLK_MAP_ALL);
  rtb_wrote(b, r);
  return r;
}

/* The model's sampling tensor (MLK_TENSOR_SAMPLING), made on first use. */
static inline int rtb_sampling(RtB *b) {
  for (int t = 0; t < b->desc.ntensors; t++)
    if (b->tensors[t].kind == MLK_TENSOR_SAMPLING)
      return t;
  return rtb_act(b, "sampling", MLK_F32, MLK_TENSOR_SAMPLING, MLK_SAMPLE_PARAMS);
}

/* A sample op over logits x: each row's parameters from the sampling tensor, the keywords
 * (temperature, top_k, top_p) for rows without settings. */
static inline int rtb_sample(RtB *b, const char *name, int out, int x, int64_t k,
                             float temperature, int64_t top_k, float top_p) {
  int sp = rtb_sampling(b);
  int o = rtb_push(b, (MlkOpDesc){.name = name, .kind = MLK_OP_SAMPLE, .out = A(out),
                                  .in = {A(x), A(sp), NOARG, NOARG, NOARG}, .n = 1, .k = k, .tile = 1,
                                  .layer = -1, .cache = -1, .temperature = temperature,
                                  .top_k = top_k, .top_p = top_p});
  rtb_reads(b, o, x, MLK_MAP_ALL);
  rtb_wrote(b, o);
  return o;
}

/* Lays out the counters, links the ops' event lists and sorts each kernel's ops into code
 * variants, as mlkc does (graph_link_events, graph_assign_variants); the desc is then complete
 * (b must not move). Call again after changing events or ops. */
static inline const MlkModelDesc *rtb_done(RtB *b) {
  int64_t base = 0;
  for (int i = 0; i < b->desc.nevents; i++) {
    b->events[i].base = base;
    base += b->events[i].size;
  }
  b->desc.ncounters = base;
  rt_link_events(&b->desc, b->ops, b->events, b->refs);
  for (int k = 0; k < b->desc.nkernels; k++) {
    MlkKernelDesc *kd = &b->kernels[k];
    kd->variant_ops = b->variant_ops[k];
    kd->nvariants = 0;
    for (int o = kd->first_op; o < kd->first_op + kd->nops; o++) {
      int v = 0;
      while (v < kd->nvariants && !mlk_op_same_variant(&b->ops[o], &b->ops[b->variant_ops[k][v]]))
        v++;
      if (v == kd->nvariants)
        b->variant_ops[k][kd->nvariants++] = o;
      b->ops[o].variant = v;
    }
  }
  return &b->desc;
}

/* The index of the event from op `p` to op `c` (by name), or -1. */
static inline int rtb_find_event(const RtB *b, const char *p, const char *c) {
  for (int i = 0; i < b->desc.nevents; i++)
    if (!strcmp(b->ops[b->events[i].producer].name, p) && !strcmp(b->ops[b->events[i].consumer].name, c))
      return i;
  return -1;
}

/* ---- double-precision references (rows of `cols`, row stride cols) ---- */

static inline double dbf(uint16_t h) { return (double)mlk_bf16_to_f32(h); }
/* What a bf16 cache keeps of a value computed as f32. */
static inline double dround_bf16(double v) { return dbf(mlk_f32_to_bf16((float)v)); }

static inline void d_from_f(double *o, const float *x, size_t n) {
  for (size_t i = 0; i < n; i++)
    o[i] = x[i];
}

static inline double dact(double v, int fn) {
  if (fn == MLK_FN_RELU)
    return v > 0 ? v : 0;
  if (fn == MLK_FN_SILU)
    return v / (1.0 + exp(-v));
  return v;
}

/* With a bias (bf16 [n] or NULL) added to the sums before the epilogue. */
static inline void dref_matvec_bias(double *out, const double *x, const uint16_t *W,
                                    const double *res, const uint16_t *norm,
                                    const uint16_t *bias, double eps, int64_t n, int64_t k,
                                    int64_t rows, int fn) {
  for (int64_t b = 0; b < rows; b++) {
    const double *xb = x + b * k;
    double scale = 1;
    if (norm) {
      double ss = 0;
      for (int64_t i = 0; i < k; i++)
        ss += xb[i] * xb[i];
      scale = 1 / sqrt(ss / k + eps);
    }
    for (int64_t r = 0; r < n; r++) {
      double s = 0;
      for (int64_t i = 0; i < k; i++)
        s += dbf(W[r * k + i]) * xb[i] * (norm ? scale * dbf(norm[i]) : 1);
      s += bias ? dbf(bias[r]) : 0;
      out[b * n + r] = fn == MLK_FN_MUL ? s * res[b * n + r] : dact(s, fn) + (res ? res[b * n + r] : 0);
    }
  }
}

static inline void dref_matvec(double *out, const double *x, const uint16_t *W, const double *res,
                               const uint16_t *norm, double eps, int64_t n, int64_t k,
                               int64_t rows, int fn) {
  dref_matvec_bias(out, x, W, res, norm, NULL, eps, n, k, rows, fn);
}

/* Elementwise over `count` values of rows of n columns, the bias (bf16 [n] or NULL) added to a
 * first: fn(a + bias, c). */
static inline void dref_eltwise_bias(double *out, const double *a, const double *c,
                                     const uint16_t *bias, int64_t n, int64_t count, int fn) {
  for (int64_t i = 0; i < count; i++) {
    double v = a[i] + (bias ? dbf(bias[i % n]) : 0);
    out[i] = fn == MLK_FN_ADD ? v + c[i] : fn == MLK_FN_MUL ? v * c[i] : dact(v, fn);
  }
}

static inline void dref_eltwise(double *out, const double *a, const double *c, int64_t count, int fn) {
  dref_eltwise_bias(out, a, c, NULL, 1, count, fn);
}

static inline void dref_gather(double *out, const int32_t *ids, const uint16_t *table, int64_t n,
                               int64_t rows) {
  for (int64_t b = 0; b < rows; b++)
    for (int64_t i = 0; i < n; i++)
      out[b * n + i] = dbf(table[(int64_t)ids[b] * n + i]);
}

static inline void dref_rmsnorm(double *out, const double *x, const uint16_t *w, double eps,
                                int64_t n, int64_t rows) {
  for (int64_t b = 0; b < rows; b++) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++)
      ss += x[b * n + i] * x[b * n + i];
    double scale = 1 / sqrt(ss / n + eps);
    for (int64_t i = 0; i < n; i++)
      out[b * n + i] = x[b * n + i] * scale * dbf(w[i]);
  }
}

/* The Llama 3 inverse frequency, written out as in HF transformers' _compute_llama3_parameters. */
static inline double dref_inv_freq(int64_t j, int64_t hd, double theta, double factor, double low,
                                   double high, double orig) {
  double inv = 1.0 / pow(theta, (double)(2 * j) / (double)hd);
  if (factor <= 1)
    return inv;
  double wavelen = 2 * M_PI / inv;
  double low_wavelen = orig / low, high_wavelen = orig / high;
  double scaled = wavelen > low_wavelen ? inv / factor : inv;
  if (wavelen >= high_wavelen && wavelen <= low_wavelen) {
    double smooth = (orig / wavelen - low) / (high - low);
    scaled = (1 - smooth) * scaled / factor + smooth * scaled;
  }
  return scaled;
}

/* Rotation of pairs (j, j + hd/2) of every head by pos * inv_freq[j] (closed form, in double). */
static inline void dref_rope(double *out, const double *x, const int32_t *pos, int64_t n, int64_t hd,
                             int64_t rows, double theta, double factor, double low, double high,
                             double orig) {
  for (int64_t b = 0; b < rows; b++)
    for (int64_t h = 0; h < n; h += hd)
      for (int64_t j = 0; j < hd / 2; j++) {
        double a = pos[b] * dref_inv_freq(j, hd, theta, factor, low, high, orig);
        double x0 = x[b * n + h + j], x1 = x[b * n + h + j + hd / 2];
        out[b * n + h + j] = x0 * cos(a) - x1 * sin(a);
        out[b * n + h + j + hd / 2] = x1 * cos(a) + x0 * sin(a);
      }
}

/* Naive decode attention of one row: K, V dense [t][kvh][hd] for t in 0..last. */
static inline void dref_attention_row(double *out, const double *q, const double *K, const double *V,
                                      int64_t last, int64_t heads, int64_t kvh, int64_t hd) {
  int64_t group = heads / kvh;
  double *s = malloc((size_t)(last + 1) * sizeof *s);
  for (int64_t h = 0; h < heads; h++) {
    int64_t g = h / group;
    double mx = -INFINITY, sum = 0;
    for (int64_t t = 0; t <= last; t++) {
      double acc = 0;
      for (int64_t d = 0; d < hd; d++)
        acc += q[h * hd + d] * K[(t * kvh + g) * hd + d];
      s[t] = acc / sqrt((double)hd);
      mx = s[t] > mx ? s[t] : mx;
    }
    for (int64_t t = 0; t <= last; t++)
      sum += (s[t] = exp(s[t] - mx));
    for (int64_t d = 0; d < hd; d++) {
      double acc = 0;
      for (int64_t t = 0; t <= last; t++)
        acc += s[t] * V[(t * kvh + g) * hd + d];
      out[h * hd + d] = acc / sum;
    }
  }
  free(s);
}

/* Relative L2 error of f32 results against double ones, over n values. */
static inline double rel_err(const float *got, const double *want, size_t n) {
  return rt_rel_l2(got, want, n);
}

#endif /* RT_BUILD_H */
