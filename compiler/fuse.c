/* fuse.c: the graph IR's operations of the language -> the runtime's ops (the fuse pass).
 *
 * Rewrites the graph that elaborate made, in this order, each step over the nodes in program order:
 *   1. allreduce over a mesh axis of one rank is the identity: its readers read its operand (a
 *      statement's tile(...) hint is already on the op that makes the operand: TILE_OPERAND);
 *   2. rmsnorm(x, w) read by a matvec becomes the matvec's input norm (in[3], eps): each task
 *      normalizes the rows it stages, so the normalized vector never exists in memory;
 *   3. matvec + b, b a bias (a bf16 param vector, which elaborate puts in the add's in[4]),
 *      becomes the matvec's bias (in[4]), added to its sums before anything else;
 *   4. relu/silu of a matvec becomes its epilogue (fn);
 *   5. split of a matvec (or of relu/silu of one, or of one plus a bias) becomes one matvec per
 *      part, over row slices of the weight (and of the bias), with the activation as its epilogue;
 *   6. matvec + r becomes the matvec's residual (in[2]), and matvec * g its gated product (fn MUL,
 *      in[2] = g: SwiGLU's up projection multiplies by silu(gate) in its epilogue);
 *   7. a rope whose result only a kv_append reads, as its keys at the same positions, becomes the
 *      append's key rotation (its rope attributes; mlk_desc.h KV_APPEND): the roped keys never
 *      exist in memory, and a decode layer's chain loses an op (measured: a rope task ~3 us, and
 *      each op boundary ~1-2 us more, on the H200);
 *   8. a store into an output makes the stored value's writer write the output itself, or, where
 *      the value already has storage (a declared tensor, another output), becomes a copy;
 *   9. nodes whose results nothing reads, and that write no output or cache, are removed.
 * The order keeps what the matvec computes as written: a bias folds only into a matvec without an
 * epilogue yet (relu(matvec) + b stays an add of its own), an activation then applies to the sum
 * and the bias, and a residual or gated product to all of it (mlk_desc.h, MATVEC).
 * A bias, epilogue, residual or gated product folds into a matvec only when the matvec's result
 * has no other reader: a second reader would need the plain result, and computing the matvec twice
 * would read its weights twice (decode is bound by weight bytes). A split, which has no other way
 * to lower, makes its slices whatever else reads the whole matvec. The tile(...) hint of a node that
 * folds into another replaces the other's: it was the statement's, which names the fused op; its
 * wait(...) and notify(...) counters join the other's, since what they said of it now holds for
 * the op that does its work. A fold that would order the ops in a way the clauses do not (a wait
 * moved onto an op that runs earlier, a notify delayed to an op that runs later: sync_folds) is
 * not made: the node stays an op of its own (an identity allreduce becomes a copy), except for a
 * split, which has no other lowering, and a store of a value that is not f32, which no copy makes.
 */
#include <string.h>

#include "mlkc.h"

static IrNode *node(IrGraph *g, int n) { return &g->nodes[n]; }

/* The live node writing value v, or -1. */
static int writer(const IrGraph *g, int v) {
  if (v < 0)
    return -1;
  int p = g->values[v].producer;
  return p >= 0 && !g->nodes[p].dead ? p : -1;
}

static void merge_hint(IrHints *dst, const IrHints *src) {
  if (src->tile)
    dst->tile = src->tile;
  if (src->head)
    dst->head = src->head;
  if (src->split)
    dst->split = src->split;
}

/* Node n now writes value v (the result of the node it absorbed). */
static void take_result(IrGraph *g, int n, int v) {
  node(g, n)->out[0] = v;
  g->values[v].producer = n;
}

/* A matvec whose result v may take an epilogue, a residual or a gated product: it has none yet
 * and nothing else reads v. */
static bool foldable_matvec(const IrGraph *g, int m, int v, int kernel) {
  if (m < 0)
    return false;
  const IrNode *mv = &g->nodes[m];
  return mv->op == IR_MATVEC && mv->in[2] < 0 && mv->kernel == kernel && ir_uses(g, v) == 1 &&
         g->values[v].tensor < 0;
}

/* Whether every counter of list a (na entries) is on list b. */
static bool syncs_within(const IrSync *a, int na, const IrSync *b, int nb) {
  for (int i = 0; i < na; i++) {
    int j = 0;
    while (j < nb && b[j].counter != a[i].counter)
      j++;
    if (j == nb)
      return false;
  }
  return true;
}

/* Whether node `from` may fold into node `into` without an order among the ops that the program's
 * wait and notify clauses do not give (which could make a cycle of them). When `from` reads what
 * `into` computes (an epilogue, a residual or product, a store, an identity), `into` takes its
 * waits, so it must have them already; when `into` reads what `from` computes (an input norm),
 * `from`'s notifies come only once `into` has run, so `into` must notify them already. The ops of
 * one statement have the same lists: they always fold. */
static bool sync_folds(const IrGraph *g, int into, int from, bool from_reads_into) {
  const IrNode *f = &g->nodes[from], *t = &g->nodes[into];
  return from_reads_into ? syncs_within(f->waits, f->nwaits, t->waits, t->nwaits)
                         : syncs_within(f->notifies, f->nnotifies, t->notifies, t->nnotifies);
}

static void identities(IrGraph *g) {
  for (int i = 0; i < g->nnodes; i++) {
    IrNode *a = node(g, i);
    if (a->dead || a->op != IR_ALLREDUCE || a->mesh != 1)
      continue;
    int x = a->in[0], r = a->out[0], p = writer(g, x);
    if (p >= 0 ? !sync_folds(g, p, i, true) : a->nwaits + a->nnotifies > 0) {
      /* its clauses need an op of their own: a copy */
      a->op = IR_COPY;
      a->fn = builtin_of(IR_COPY)->fn;
      a->mesh = 0;
      continue;
    }
    ir_replace_uses(g, r, x);
    IrValue *xv = &g->values[x];
    if (xv->producer >= 0 && !xv->name)
      xv->name = g->values[r].name;
    if (p >= 0)
      ir_merge_sync(g, p, i);
    a->dead = true;
  }
}

static void input_norms(IrGraph *g) {
  for (int i = 0; i < g->nnodes; i++) {
    IrNode *m = node(g, i);
    if (m->dead || m->op != IR_MATVEC || m->in[3] >= 0)
      continue;
    int r = writer(g, m->in[0]);
    if (r < 0 || node(g, r)->op != IR_RMSNORM || !sync_folds(g, i, r, false))
      continue;
    const IrNode *norm = node(g, r);
    m->in[0] = norm->in[0];
    m->in_seq[0] = norm->in_seq[0];
    m->in[3] = norm->in[1];
    m->in_seq[3] = norm->in_seq[1];
    m->attr.eps = norm->attr.eps;
    ir_merge_sync(g, i, r); /* the matvec normalizes: the norm's clauses hold for it */
  }
}

/* x + b of a bias b: the add that elaborate makes of it (b in in[4], fn none), an eltwise op with a
 * bias unless a matvec takes it. */
static bool is_bias_add(const IrNode *n) {
  return n->op == IR_ADD && n->in[4] >= 0 && n->in[1] < 0;
}

static void biases(IrGraph *g) {
  for (int i = 0; i < g->nnodes; i++) {
    IrNode *a = node(g, i);
    if (a->dead || !is_bias_add(a))
      continue;
    int m = writer(g, a->in[0]);
    if (!foldable_matvec(g, m, a->in[0], a->kernel) || node(g, m)->fn != MLK_FN_NONE ||
        node(g, m)->in[4] >= 0 || !sync_folds(g, m, i, true))
      continue;
    IrNode *mv = node(g, m);
    mv->in[4] = a->in[4];
    mv->in_seq[4] = a->in_seq[4];
    take_result(g, m, a->out[0]);
    merge_hint(&mv->hint, &a->hint);
    ir_merge_sync(g, m, i);
    a->dead = true;
  }
}

static void epilogues(IrGraph *g) {
  for (int i = 0; i < g->nnodes; i++) {
    IrNode *a = node(g, i);
    if (a->dead || (a->op != IR_RELU && a->op != IR_SILU))
      continue;
    int m = writer(g, a->in[0]);
    if (!foldable_matvec(g, m, a->in[0], a->kernel) || node(g, m)->fn != MLK_FN_NONE ||
        !sync_folds(g, m, i, true))
      continue;
    node(g, m)->fn = a->fn;
    take_result(g, m, a->out[0]);
    merge_hint(&node(g, m)->hint, &a->hint);
    ir_merge_sync(g, m, i);
    a->dead = true;
  }
}

static bool splits(IrGraph *g, Diag *d) {
  int nnodes = g->nnodes; /* the slices added below are not splits */
  for (int i = 0; i < nnodes; i++) {
    if (node(g, i)->dead || node(g, i)->op != IR_SPLIT)
      continue;
    int m = writer(g, node(g, i)->in[0]);
    MlkFn act = MLK_FN_NONE;
    int act_node = -1, bias_node = -1;
    if (m >= 0 && (node(g, m)->op == IR_RELU || node(g, m)->op == IR_SILU)) {
      /* an activation that did not fold (the matvec has other readers): the slices apply it */
      act = node(g, m)->fn;
      act_node = m;
      m = writer(g, node(g, m)->in[0]);
      if (m >= 0 && node(g, m)->fn != MLK_FN_NONE)
        m = -1;
    } else if (m >= 0 && is_bias_add(node(g, m))) {
      /* likewise a bias that did not fold: the slices add their rows of it */
      bias_node = m;
      m = writer(g, node(g, m)->in[0]);
      if (m >= 0 && (node(g, m)->fn != MLK_FN_NONE || node(g, m)->in[4] >= 0))
        m = -1;
    }
    if (m < 0 || node(g, m)->op != IR_MATVEC || node(g, m)->in[2] >= 0) {
      diag_error(d, node(g, i)->loc, "split of anything but a matvec cannot be lowered to a "
                 "megakernel yet");
      return false;
    }
    IrNode whole = *node(g, m);
    const IrNode s = *node(g, i);
    if (act != MLK_FN_NONE)
      whole.fn = act;
    if (bias_node >= 0)
      whole.in[4] = node(g, bias_node)->in[4];
    const IrValue w = g->values[whole.in[1]];
    const IrValue bias = whole.in[4] >= 0 ? g->values[whole.in[4]] : (IrValue){.tensor = -1};
    int64_t row = 0, k = w.type.shape[1];
    /* The slices run one after another on the same SMs: one default tile for all of them, from
     * the rows of the whole matvec, so that together they make about one wave of tasks (q, k and
     * v of a Llama layer: 86 + 22 + 22 tasks of 24 rows, not 128 + 64 + 64 of 16 and 8). */
    for (int j = 0; j < s.nout; j++) {
      int64_t rows = g->values[s.out[j]].type.shape[g->values[s.out[j]].type.rank - 1];
      Type wt = w.type;
      wt.shape[0] = rows;
      int wv = ir_add_value(g, (IrValue){.type = wt, .tensor = w.tensor, .offset = w.offset + row * k,
                                         .producer = -1, .layer = -1});
      int n = ir_add_node(g, IR_MATVEC, whole.loc, whole.ctx, whole.kernel);
      IrNode *slice = node(g, n);
      *slice = whole;
      slice->nout = 1;
      slice->in[1] = wv;
      if (whole.in[4] >= 0) { /* the bias's rows of the slice: a view of the same param */
        Type bt = bias.type;
        bt.shape[0] = rows;
        int bv = ir_add_value(g, (IrValue){.type = bt, .tensor = bias.tensor,
                                           .offset = bias.offset + row, .producer = -1,
                                           .layer = -1});
        slice->in[4] = bv;
      }
      slice->default_rows = whole.default_rows ? whole.default_rows : w.type.shape[0];
      merge_hint(&slice->hint, &s.hint);
      take_result(g, n, s.out[j]);
      ir_merge_sync(g, n, i);
      if (act_node >= 0)
        ir_merge_sync(g, n, act_node);
      if (bias_node >= 0)
        ir_merge_sync(g, n, bias_node);
      row += rows;
    }
    node(g, i)->dead = true;
  }
  return true;
}

static void residuals(IrGraph *g) {
  for (int i = 0; i < g->nnodes; i++) {
    IrNode *a = node(g, i);
    if (a->dead || (a->op != IR_ADD && a->op != IR_MUL) || is_bias_add(a))
      continue;
    /* a + matvec: the left operand first; matvec * g: the right one first, so that
     * silu(matvec(..)) * matvec(..) computes the gate first and multiplies in the second */
    for (int k = 0; k < 2; k++) {
      int side = a->op == IR_ADD ? k : 1 - k;
      int v = a->in[side], m = writer(g, v);
      if (!foldable_matvec(g, m, v, a->kernel) || (a->op == IR_MUL && node(g, m)->fn != MLK_FN_NONE) ||
          !sync_folds(g, m, i, true))
        continue;
      IrNode *mv = node(g, m);
      if (a->op == IR_MUL)
        mv->fn = MLK_FN_MUL;
      mv->in[2] = a->in[1 - side];
      mv->in_seq[2] = a->seq;
      mv->emit_seq = a->seq; /* it runs where the sum or product is evaluated */
      take_result(g, m, a->out[0]);
      merge_hint(&mv->hint, &a->hint);
      ir_merge_sync(g, m, i);
      a->dead = true;
      break;
    }
  }
}

static void rotated_keys(IrGraph *g) {
  for (int i = 0; i < g->nnodes; i++) {
    IrNode *a = node(g, i);
    if (a->dead || a->op != IR_KV_APPEND || a->attr.theta > 0.0f)
      continue;
    int k = a->in[0], r = writer(g, k);
    if (r < 0 || node(g, r)->op != IR_ROPE || node(g, r)->kernel != a->kernel || ir_uses(g, k) != 1 ||
        g->values[k].tensor >= 0 || node(g, r)->in[1] != a->in[2] ||
        node(g, r)->attr.head_dim != a->attr.head_dim || !sync_folds(g, i, r, false))
      continue;
    const IrNode *rope = node(g, r);
    a->in[0] = rope->in[0];
    a->in_seq[0] = rope->in_seq[0];
    a->attr.theta = rope->attr.theta;
    a->attr.rope_factor = rope->attr.rope_factor;
    a->attr.rope_low_freq = rope->attr.rope_low_freq;
    a->attr.rope_high_freq = rope->attr.rope_high_freq;
    a->attr.rope_original_max_pos = rope->attr.rope_original_max_pos;
    ir_merge_sync(g, i, r); /* the append rotates: the rope's clauses hold for it */
    node(g, r)->dead = true;
  }
}

static void stores(IrGraph *g) {
  for (int i = 0; i < g->nnodes; i++) {
    IrNode *st = node(g, i);
    if (st->dead || st->op != IR_STORE)
      continue;
    int v = st->in[0], out = st->out[0], p = writer(g, v);
    /* (a copy is f32 only: a store of another type takes the writer whatever its clauses) */
    if (p >= 0 && node(g, p)->kernel == st->kernel && g->values[v].tensor < 0 &&
        (sync_folds(g, p, i, true) || g->values[v].type.dtype != MLK_F32)) {
      /* the writer writes the output directly, and whatever read the output reads v there */
      g->values[v].tensor = g->values[out].tensor;
      ir_replace_uses(g, out, v);
      if (node(g, p)->store_seq < 0)
        node(g, p)->store_seq = st->seq;
      ir_merge_sync(g, p, i);
      st->dead = true;
      continue;
    }
    st->op = IR_COPY;
    st->fn = builtin_of(IR_COPY)->fn;
  }
}

/* A node that writes an output or a cache has an effect beyond its result's readers. */
static bool has_effect(const IrGraph *g, const IrNode *n) {
  if (n->op == IR_KV_APPEND || n->op == IR_STORE)
    return true;
  for (int j = 0; j < n->nout; j++)
    if (g->values[n->out[j]].tensor >= 0)
      return true;
  return false;
}

static void dead_nodes(IrGraph *g) {
  int *uses = arena_alloc(g->arena, (size_t)(g->nvalues ? g->nvalues : 1) * sizeof *uses);
  for (bool changed = true; changed;) {
    changed = false;
    memset(uses, 0, (size_t)g->nvalues * sizeof *uses);
    for (int i = 0; i < g->nnodes; i++)
      for (int j = 0; j < IR_MAX_IN && !g->nodes[i].dead; j++)
        if (g->nodes[i].in[j] >= 0)
          uses[g->nodes[i].in[j]]++;
    for (int i = 0; i < g->nnodes; i++) {
      IrNode *n = node(g, i);
      if (n->dead || has_effect(g, n))
        continue;
      bool read = false;
      for (int j = 0; j < n->nout && !read; j++)
        read = uses[n->out[j]] > 0;
      if (!read) {
        n->dead = true;
        changed = true;
      }
    }
  }
}

bool fuse_graph(IrGraph *g, Diag *d) {
  identities(g); /* an allreduce over several ranks stays: the cut pass makes it a collective */
  input_norms(g);
  biases(g);
  epilogues(g);
  if (!splits(g, d))
    return false;
  residuals(g);
  rotated_keys(g);
  stores(g);
  dead_nodes(g);
  g->pass = "fuse";
  return true;
}
