/* tile.c: the task grid of every op (the tile pass).
 *
 * Every op tiles its output columns into tasks, and each task loops over the run's batch rows (so
 * grids never depend on the batch). This pass gives each node of the fused graph its columns n,
 * its inner columns k, its columns per task and its task count, from the statement's tile(...)
 * hint where there is one and from the default policy below otherwise; and splits attention over
 * the context (flash-decoding): a split attention writes partial results that a new attn_reduce
 * node merges (an op of the attention's statement, with its wait and notify lists); and splits an
 * argmax over its row the same way (argmax_reduce).
 */
#include "mlkc.h"

/* Default task grids: decode is a sequence of small ops, each of which should spread over every SM
 * (an H100 has 132) and not much more, since each task pays a wait and its staging. An op gets
 * about TARGET_TASKS tasks, within per-kind bounds on the columns of a task: matvec rows in
 * [MATVEC_TILE_MIN, MATVEC_TILE_MAX] (whole warps of rows: multiples of 8), elementwise columns
 * in [ELTWISE_TILE_MIN, ELTWISE_TILE_MAX] (multiples of 32). A tile(n) hint overrides them. */
#define TARGET_TASKS 128
#define MATVEC_TILE_MIN 8
#define MATVEC_TILE_MAX 64
#define ELTWISE_TILE_MIN 64
#define ELTWISE_TILE_MAX 4096

static int64_t default_tile(int64_t n, int64_t lo, int64_t hi, int64_t unit) {
  int64_t t = n / TARGET_TASKS / unit * unit;
  return t < lo ? lo : t > hi ? hi : t;
}
#define DEFAULT_MATVEC_TILE(n) default_tile((n), MATVEC_TILE_MIN, MATVEC_TILE_MAX, 8)
#define DEFAULT_ELTWISE_TILE(n) default_tile((n), ELTWISE_TILE_MIN, ELTWISE_TILE_MAX, 32)

/* The default split of a batched matvec of k columns in tasks of `tile` rows (mlk_desc.h MATVEC:
 * where it splits, mlk_matvec_splits_at, groups of `split` tasks share their rows and cut k).
 * A task of the group stages 1 / s of x (batch * k / s floats) and the last one merges s partial
 * sums of s * tile rows (batch * s^2 * tile floats, read at a plain load's rate, about twice the
 * staging's): s is the power of two that makes k / s + s^2 * tile / 2 least, with a group's rows
 * at most MATVEC_SPLIT_ROWS (one round of the tensor-core path's row groups), at least
 * MATVEC_SPLIT_MIN_K columns a slice and no more tasks than the op has. Only for k a multiple of
 * 8 (the tensor-core path's 16-byte weight loads). */
#define MATVEC_SPLIT_ROWS 128
#define MATVEC_SPLIT_MIN_K 256
static int64_t default_matvec_split(int64_t k, int64_t tile, int64_t ntasks) {
  if (k % 8 != 0)
    return 1;
  int64_t best = 1;
  double cost = (double)k + (double)tile / 2;
  for (int64_t s = 2; s <= MLK_MATVEC_MAX_SPLIT && s * tile <= MATVEC_SPLIT_ROWS && s <= ntasks &&
                      k / s >= MATVEC_SPLIT_MIN_K;
       s *= 2) {
    double c = (double)k / (double)s + (double)(s * s * tile) / 2;
    if (c < cost)
      best = s, cost = c;
  }
  return best;
}

/* The default chunks of a row's positions for an attention over `kv_heads` kv heads in tasks of
 * `kvh`: MLKC_ATTN_SPLIT_TARGET_TASKS / (kv head tasks), within [1, MLK_ATTN_MAX_SPLIT]; 1 (no
 * split, no reduction op) when the kv heads alone make enough tasks. A task per kv head alone
 * leaves most SMs idle (Llama 3.2 1B: 8 kv heads, 8 of 132 SMs); 128 gives it 16 chunks. */
int64_t tile_default_attn_split(int64_t kv_heads, int64_t kvh) {
  int64_t tasks = (kv_heads + kvh - 1) / kvh;
  int64_t s = MLKC_ATTN_SPLIT_TARGET_TASKS / tasks;
  return s < 2 ? 1 : s > MLK_ATTN_MAX_SPLIT ? MLK_ATTN_MAX_SPLIT : s;
}

static const Type *type_of(const IrGraph *g, int v) { return &g->values[v].type; }

/* Node a of a split op writes partials instead of its result: a new temporary of type pt (named
 * after the op, ".partials"), and a new node of kind rop, an op of the same statement (its
 * clauses hold for it too), reads them and writes the result, which keeps the op's name. Returns
 * the reduce node; the callers set the two nodes' grids and attributes. */
static int split_with_reduce(IrGraph *g, int a, const char *what, Type pt, IrOp rop) {
  IrNode *n = &g->nodes[a];
  int result = n->out[0];
  const char *where = arena_printf(g->arena, "%s@%s:%d%s", what, ir_loc_file(g, n->loc),
                                   n->loc.line, n->ctx);
  int part = ir_add_value(g, (IrValue){.type = pt, .tensor = -1, .producer = a, .layer = -1,
                                       .label = arena_printf(g->arena, "%s.partials", where)});
  g->values[result].label = where;
  int r = ir_add_node(g, rop, n->loc, n->ctx, n->kernel);
  n = &g->nodes[a];
  n->out[0] = part;
  n->reduce = r;
  IrNode *red = &g->nodes[r];
  red->seq = n->seq;
  red->emit_seq = n->seq;
  red->in[0] = part;
  red->in_seq[0] = n->seq;
  red->nout = 1;
  red->out[0] = result;
  g->values[result].producer = r;
  ir_merge_sync(g, r, a);
  return r;
}

/* Attention: a task per kvh kv heads (tile(head = h), else 1), its positions in `split` chunks
 * (tile(split = s), else --attn-split, else the default policy). Split, the last of a kv head
 * block's tasks merges their chunks (mlk_attn_folds: a nominal tile of kvh * group * head_dim /
 * split columns a task; the runtime gives the op scratch for the records and arrival counters),
 * which takes a reduce op's tasks and its wait off the decode chain (1.4-1.7% of a step at batch
 * 1, 4 and 64 on the H100, docs/performance.md). Where that grid cannot be (kvh not dividing the kv
 * heads, split not dividing the block's columns) or --attn-reduce-op asks, it writes partials (a
 * record per kv head and chunk: mlk_attn_part_offset) into a new temporary, and an attn_reduce
 * node, a task per kvh kv heads, merges them into the attention's result. */
static void tile_attention(IrGraph *g, int a, const TileOptions *o) {
  IrNode *n = &g->nodes[a];
  const IrCache *c = &g->caches[n->attr.cache];
  int64_t heads = n->attr.heads, hd = c->head_dim, group = heads / c->kv_heads;
  int64_t cols = heads * hd;
  int64_t kvh = n->hint.head > 0 ? n->hint.head : 1;
  if (kvh > c->kv_heads)
    kvh = c->kv_heads;
  int64_t split = n->hint.split > 0 ? n->hint.split
                  : o->attn_split > 0 ? o->attn_split
                                      : tile_default_attn_split(c->kv_heads, kvh);
  n->attr.kv_heads = c->kv_heads;
  n->attr.head_dim = hd;
  n->batched = ir_type_batched(type_of(g, n->out[0]));
  if (split <= 1) {
    n->n = cols;
    n->tile = kvh * group * hd;
    return;
  }
  n->attr.min_chunk = o->attn_min_chunk > 0 ? o->attn_min_chunk : MLKC_ATTN_MIN_CHUNK;
  if (!o->attn_reduce_op && c->kv_heads % kvh == 0 && kvh * group * hd % split == 0) {
    n->n = cols;
    n->tile = kvh * group * hd / split;
    n->attr.split = split;
    return;
  }
  int64_t pcols = mlk_attn_part_cols(c->kv_heads, heads, hd, split, kvh);
  int64_t rec = mlk_attn_part_rec(group, hd);
  Type pt = *type_of(g, n->out[0]);
  pt.shape[pt.rank - 1] = pcols;
  int r = split_with_reduce(g, a, "attention", pt, IR_ATTN_REDUCE);
  n = &g->nodes[a];
  n->n = pcols;
  n->tile = kvh * rec;
  n->attr.split = split;
  IrNode *red = &g->nodes[r];
  red->attr.heads = heads;
  red->attr.kv_heads = c->kv_heads;
  red->attr.head_dim = hd;
  red->attr.split = split;
  red->n = cols;
  red->tile = kvh * group * hd;
  red->batched = n->batched;
  red->ntasks = (red->n + red->tile - 1) / red->tile;
}

/* Argmax: a row of many columns (a vocabulary of logits) is cut into `split` chunks, a task each
 * (tile(split = s), else about TARGET_TASKS chunks of at least ARGMAX_MIN_CHUNK columns; none
 * below two chunks), which write each chunk's best value and index into a new temporary of
 * partials (chunks past the row's end are dropped); an argmax_reduce node, one task, picks the
 * index from them. One task reading every row whole took 31 us per row of 128K logits on the
 * H200, one row after another. */
#define ARGMAX_MIN_CHUNK 1024
static void tile_argmax(IrGraph *g, int a) {
  IrNode *n = &g->nodes[a];
  int64_t k = ir_type_cols(type_of(g, n->in[0]));
  int64_t split = n->hint.split > 0 ? n->hint.split : k / ARGMAX_MIN_CHUNK;
  if (split > TARGET_TASKS && n->hint.split <= 0)
    split = TARGET_TASKS;
  if (split > k)
    split = k;
  if (split >= 2) { /* only chunks with columns: a task each (its event counts its tiles) */
    int64_t len = mlk_argmax_chunk(k, split), used = (k + len - 1) / len;
    if (mlk_argmax_chunk(k, used) == len)
      split = used;
  }
  n->n = n->tile = 1;
  n->k = k;
  if (split < 2)
    return;
  Type pt = *type_of(g, n->in[0]); /* the rows of x, 2 * split f32 columns each */
  pt.dtype = MLK_F32;
  pt.shape[pt.rank - 1] = 2 * split;
  pt.sym[pt.rank - 1] = NULL;
  int r = split_with_reduce(g, a, "argmax", pt, IR_ARGMAX_REDUCE);
  n = &g->nodes[a];
  n->n = 2 * split;
  n->tile = 2;
  n->attr.split = split;
  IrNode *red = &g->nodes[r];
  red->attr.split = split;
  red->n = red->tile = 1;
  red->batched = ir_type_batched(type_of(g, red->out[0]));
  red->ntasks = 1;
}

void tile_graph(IrGraph *g, const TileOptions *o) {
  int nnodes = g->nnodes; /* attn_reduce and argmax_reduce nodes added below come tiled */
  for (int i = 0; i < nnodes; i++) {
    IrNode *n = &g->nodes[i];
    if (n->dead)
      continue;
    const Type *out = n->nout ? type_of(g, n->out[0]) : NULL;
    int64_t hint = n->hint.tile;
    switch (n->op) {
    case IR_MATVEC: {
      const Type *w = type_of(g, n->in[1]);
      n->n = w->shape[0];
      n->k = w->shape[1];
      n->tile = hint ? hint : DEFAULT_MATVEC_TILE(n->default_rows ? n->default_rows : n->n);
      break;
    }
    case IR_RELU:
    case IR_SILU:
    case IR_ADD:
    case IR_MUL:
    case IR_COPY:
    case IR_GATHER:
      n->n = ir_type_cols(out);
      n->tile = hint ? hint : DEFAULT_ELTWISE_TILE(n->n);
      break;
    case IR_RMSNORM: /* a task normalizes whole rows */
      n->n = n->tile = ir_type_cols(out);
      break;
    case IR_ROPE: /* whole heads per task */
      n->n = ir_type_cols(out);
      n->tile = hint ? hint : n->attr.head_dim;
      break;
    case IR_KV_APPEND: { /* a task per kv head */
      const IrCache *c = &g->caches[n->attr.cache];
      n->n = c->kv_heads * c->head_dim;
      n->tile = c->head_dim;
      n->batched = ir_type_batched(type_of(g, n->in[0]));
      break;
    }
    case IR_ATTENTION:
      tile_attention(g, i, o);
      n = &g->nodes[i];
      break;
    case IR_ALLREDUCE: /* over several ranks: elementwise tiles in the megakernel
                          (--collectives=kernel), else a collective between segments (cut.c) */
      n->n = ir_type_cols(out);
      n->tile = hint ? hint : DEFAULT_ELTWISE_TILE(n->n);
      break;
    case IR_ARGMAX:
      tile_argmax(g, i);
      n = &g->nodes[i];
      break;
    case IR_SAMPLE: /* one task reads whole rows */
      n->n = n->tile = 1;
      n->k = ir_type_cols(type_of(g, n->in[0]));
      break;
    default:
      MLKC_BUG("'%s' reached the tile pass", ir_op_name(n->op));
    }
    if (n->op != IR_KV_APPEND && n->op != IR_ATTENTION)
      n->batched = ir_type_batched(out);
    if (n->tile <= 0 || n->tile > n->n)
      n->tile = n->n;
    n->ntasks = (n->n + n->tile - 1) / n->tile;
    if (n->op == IR_MATVEC && n->batched) {
      int64_t s = default_matvec_split(n->k, n->tile, n->ntasks);
      n->attr.split = s > 1 ? s : 0;
    }
  }
  g->pass = "tile";
}
