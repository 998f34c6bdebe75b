/* events.c: the event tensors between a megakernel's ops (the events pass).
 *
 * Every read of a value that an op of the same megakernel writes becomes an event tensor
 * (mlk_desc.h): MLK_MAP_ALL, one counter, when the reader needs every column (a matvec's input,
 * rmsnorm, an unsplit argmax, the positions of rope, append and attention); MLK_MAP_TILE, a
 * counter per reader task, when it reads only the columns of its own tile (elementwise operands, a
 * matvec's residual or gate, rope's input, the keys and values of an append) or of a fixed group
 * of them (an attention reads its own kv heads of the cache layer an append wrote; an attn_reduce
 * reads the records of its kv heads; a split argmax its chunk of the row). One event per (writer,
 * reader, value): a value read both ways takes the one counter. Events are numbered in the
 * scheduled order of their readers, then come the explicit counters of wait/notify clauses, and
 * their counters are laid out one after another.
 */
#include "mlkc.h"

/* The event for op `c` reading value v (written by an op of its megakernel) with map `map` over
 * `n` columns, `ctile` of them per reader task for a TILE map whose tile is not the reader's. */
static void depend(IrGraph *g, int c, int v, MlkEventMap map, int64_t n, int64_t ctile) {
  if (v < 0)
    return;
  int p = g->values[v].producer;
  if (p < 0 || g->nodes[p].dead || g->nodes[p].kernel != g->nodes[c].kernel)
    return; /* ready before the launch */
  for (int i = 0; i < g->nevents; i++) {
    IrEvent *e = &g->events[i];
    if (e->producer == p && e->consumer == c && e->value == v) {
      if (map == MLK_MAP_ALL && e->map != MLK_MAP_ALL) {
        e->map = MLK_MAP_ALL;
        e->ctile = g->nodes[c].tile;
      }
      return;
    }
  }
  ir_add_event(g, (IrEvent){.producer = p, .consumer = c, .value = v, .counter = -1, .map = map,
                            .n = n > 0 ? n : ir_type_cols(&g->values[v].type),
                            .ptile = g->nodes[p].tile,
                            .ctile = map == MLK_MAP_ALL || ctile <= 0 ? g->nodes[c].tile : ctile});
}

/* The reads of op c, in the order the runtime's descriptor lists its waits. */
static void op_events(IrGraph *g, int c) {
  const IrNode *n = &g->nodes[c];
  switch (n->op) {
  case IR_MATVEC:
    depend(g, c, n->in[0], MLK_MAP_ALL, 0, 0);
    depend(g, c, n->in[2], MLK_MAP_TILE, 0, 0);
    depend(g, c, n->in[4], MLK_MAP_TILE, 0, 0); /* a bias: a param (no event) */
    return;
  case IR_RELU:
  case IR_SILU:
  case IR_ADD:
  case IR_MUL:
  case IR_COPY:
    depend(g, c, n->in[0], MLK_MAP_TILE, 0, 0);
    depend(g, c, n->in[1], MLK_MAP_TILE, 0, 0);
    depend(g, c, n->in[4], MLK_MAP_TILE, 0, 0);
    return;
  case IR_GATHER:
  case IR_RMSNORM:
  case IR_ARGMAX_REDUCE:
    depend(g, c, n->in[0], MLK_MAP_ALL, 0, 0);
    return;
  case IR_ARGMAX: /* split: task c reads chunk c of every row */
    if (n->attr.split >= 2)
      depend(g, c, n->in[0], MLK_MAP_TILE, 0, mlk_argmax_chunk(n->k, n->attr.split));
    else
      depend(g, c, n->in[0], MLK_MAP_ALL, 0, 0);
    return;
  case IR_SAMPLE:
    depend(g, c, n->in[0], MLK_MAP_ALL, 0, 0);
    depend(g, c, n->in[1], MLK_MAP_ALL, 0, 0);
    return;
  case IR_ROPE:
    depend(g, c, n->in[0], MLK_MAP_TILE, 0, 0);
    depend(g, c, n->in[1], MLK_MAP_ALL, 0, 0);
    return;
  case IR_ALLREDUCE: /* in the megakernel (--collectives=kernel): its operand's tiles on every rank */
    depend(g, c, n->in[0], MLK_MAP_TILE, 0, 0);
    for (int i = 0; i < g->nevents; i++)
      if (g->events[i].consumer == c && g->events[i].value == n->in[0])
        g->events[i].ranks = n->mesh;
    return;
  case IR_KV_APPEND:
    depend(g, c, n->in[0], MLK_MAP_TILE, 0, 0);
    depend(g, c, n->in[1], MLK_MAP_TILE, 0, 0);
    depend(g, c, n->in[2], MLK_MAP_ALL, 0, 0);
    return;
  case IR_ATTENTION: {
    int64_t kvn = n->attr.kv_heads * n->attr.head_dim;
    depend(g, c, n->in[2], MLK_MAP_ALL, 0, 0);
    if (n->attr.split <= 1) {
      /* task t: the query heads of kv heads t*kvh.., and those kv heads of the appended layer */
      int64_t kvh = n->tile / (n->attr.heads / n->attr.kv_heads * n->attr.head_dim);
      depend(g, c, n->in[0], MLK_MAP_TILE, 0, 0);
      depend(g, c, n->in[1], MLK_MAP_TILE, kvn, kvh * n->attr.head_dim);
      return;
    }
    /* Task t of a split reads kv head block t / split: the split tasks of a block cannot each wait
     * on a counter of their own block, so they wait for all of q and all kv heads. */
    depend(g, c, n->in[0], MLK_MAP_ALL, 0, 0);
    depend(g, c, n->in[1], MLK_MAP_ALL, kvn, 0);
    return;
  }
  case IR_ATTN_REDUCE: {
    /* reduce task j waits on one counter for the split producer tasks of its kv head block */
    int64_t group = n->attr.heads / n->attr.kv_heads;
    int64_t kvh = n->tile / (group * n->attr.head_dim);
    depend(g, c, n->in[0], MLK_MAP_TILE, 0,
           n->attr.split * kvh * mlk_attn_part_rec(group, n->attr.head_dim));
    return;
  }
  default:
    MLKC_BUG("'%s' reached the events pass", ir_op_name(n->op));
  }
}

/* One MLK_MAP_ALL event per explicit counter that a live op waits on and a live op notifies:
 * every task of a notifying op adds 1, so a run's count is their tasks. A counter nothing notifies
 * would make its waits pass at once (0 notifies): a warning at its first wait, and the waits go;
 * one nothing waits on synchronizes nothing, and its notifies go. */
static void explicit_events(IrGraph *g, Diag *d) {
  for (int c = 0; c < g->nexplicit; c++) {
    IrCounter *k = &g->explicit_counters[c];
    int64_t count = 0;
    const IrSync *first_wait = NULL;
    for (int i = 0; i < g->norder; i++) {
      const IrNode *n = &g->nodes[g->order[i]];
      for (int j = 0; j < n->nnotifies; j++)
        count += n->notifies[j].counter == c ? n->ntasks : 0;
      for (int j = 0; j < n->nwaits && !first_wait; j++)
        if (n->waits[j].counter == c)
          first_wait = &n->waits[j];
    }
    if (first_wait && !count)
      diag_warning(d, first_wait->loc, "nothing in megakernel '%s' notifies '%s': this wait is "
                   "met at once", g->kernels[k->kernel].name, k->name);
    if (!first_wait || !count) {
      for (int i = 0; i < g->nnodes; i++)
        ir_drop_sync(g, i, c, first_wait == NULL); /* the notifies when nothing waits */
      continue;
    }
    k->event_id = ir_add_event(g, (IrEvent){.producer = -1, .consumer = -1, .value = -1,
                                            .counter = c, .map = MLK_MAP_ALL, .count = count});
  }
}

void events_graph(IrGraph *g, Diag *d) {
  for (int i = 0; i < g->norder; i++)
    op_events(g, g->order[i]);
  explicit_events(g, d);
  int64_t base = 0;
  for (int i = 0; i < g->nevents; i++) {
    IrEvent *e = &g->events[i];
    e->size = e->map == MLK_MAP_ALL ? 1 : (e->n + e->ctile - 1) / e->ctile;
    e->base = base;
    base += e->size;
  }
  g->ncounters = base;
  g->pass = "events";
}
