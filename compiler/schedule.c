/* schedule.c: the order of each megakernel's ops (the schedule pass).
 *
 * The runtime deals a megakernel's tasks to the SMs in op order, and every queue is in that order,
 * so the order must be topological; among the topological orders this pass takes the one a
 * sequential evaluation of the program would follow: an op runs where the program evaluates it,
 * except a matvec or an rmsnorm with nothing folded after it, which runs where its result is first
 * needed (by a reader, or by a store into an output). So a layer's ops keep their program order,
 * the q, k and v slices of a split run just before the rope or append that reads each, and a
 * matvec that took a residual runs where the sum is. It reads the evaluation order elaborate
 * recorded (IrNode.seq, in_seq) and what fuse changed (emit_seq, store_seq).
 */
#include <stdlib.h>

#include "mlkc.h"

/* A point of the sequential evaluation: node `node` needs value `value` there (operand slot
 * `slot`), or, with value -1, runs there. */
typedef struct Point {
  int seq, node, slot, value;
} Point;

static int cmp_points(const void *a, const void *b) {
  const Point *x = a, *y = b;
  if (x->seq != y->seq)
    return x->seq < y->seq ? -1 : 1;
  if (x->node != y->node)
    return x->node < y->node ? -1 : 1;
  return x->slot < y->slot ? -1 : x->slot > y->slot;
}

typedef struct Sched {
  IrGraph *g;
  bool *placed;
  int kernel;
} Sched;

static int writer(const Sched *s, int v) {
  if (v < 0)
    return -1;
  int p = s->g->values[v].producer;
  return p >= 0 && !s->g->nodes[p].dead && s->g->nodes[p].kernel == s->kernel ? p : -1;
}

/* Appends node n to the order, after whatever it reads that is not placed yet. */
static void place(Sched *s, int n) {
  if (s->placed[n])
    return;
  s->placed[n] = true;
  const IrNode *node = &s->g->nodes[n];
  for (int j = 0; j < IR_MAX_IN; j++) {
    int p = writer(s, node->in[j]);
    if (p >= 0)
      place(s, p);
  }
  s->g->order[s->g->norder++] = n;
}

/* Runs where its result is first needed rather than where it is evaluated. */
static bool deferred(const IrNode *n) {
  return (n->op == IR_MATVEC || n->op == IR_RMSNORM) && n->emit_seq < 0;
}

void schedule_graph(IrGraph *g) {
  g->order = arena_alloc(g->arena, (size_t)(g->nnodes ? g->nnodes : 1) * sizeof *g->order);
  g->norder = 0;
  Sched s = {.g = g};
  s.placed = arena_alloc(g->arena, (size_t)(g->nnodes ? g->nnodes : 1) * sizeof *s.placed);
  Point *pts = arena_alloc(g->arena, (size_t)(g->nnodes ? g->nnodes : 1) * (IR_MAX_IN + 2) *
                                         sizeof *pts);
  for (int k = 0; k < g->nkernels; k++) {
    s.kernel = k;
    int npts = 0;
    for (int i = 0; i < g->nnodes; i++) {
      const IrNode *n = &g->nodes[i];
      if (n->dead || n->kernel != k)
        continue;
      for (int j = 0; j < IR_MAX_IN; j++)
        if (writer(&s, n->in[j]) >= 0)
          pts[npts++] = (Point){n->in_seq[j], i, j, n->in[j]};
      if (!deferred(n))
        pts[npts++] = (Point){n->emit_seq >= 0 ? n->emit_seq : n->seq, i, IR_MAX_IN, -1};
      if (n->store_seq >= 0)
        pts[npts++] = (Point){n->store_seq, i, IR_MAX_IN + 1, -1};
    }
    qsort(pts, (size_t)npts, sizeof *pts, cmp_points);
    g->kernels[k].first = g->norder;
    for (int p = 0; p < npts; p++)
      place(&s, pts[p].value >= 0 ? writer(&s, pts[p].value) : pts[p].node);
    /* a live node nothing placed would be a node nothing reads: fuse removed those */
    for (int i = 0; i < g->nnodes; i++)
      if (!g->nodes[i].dead && g->nodes[i].kernel == k && !s.placed[i])
        MLKC_BUG("node n%d of megakernel '%s' was never scheduled", i, g->kernels[k].name);
    g->kernels[k].count = g->norder - g->kernels[k].first;
  }
  g->pass = "schedule";
}
