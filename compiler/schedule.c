/* schedule.c: the order of each megakernel's ops (the schedule pass).
 *
 * The runtime deals a megakernel's tasks to the SMs in op order, and every queue is in that order,
 * so the order must be topological; among the topological orders this pass takes the one a
 * sequential evaluation of the program would follow: an op runs where the program evaluates it,
 * except a matvec or an rmsnorm with nothing folded after it, which runs where its result is first
 * needed (by a reader, or by a store into an output). So a layer's ops keep their program order,
 * the q, k and v slices of a split run together just before the first rope or append that reads
 * one of them, and a matvec that took a residual runs where the sum is. It reads the evaluation order elaborate
 * recorded (IrNode.seq, in_seq) and what fuse changed (emit_seq, store_seq). An op that waits on an
 * explicit counter runs after every op that notifies it (the runtime requires it: its queues are
 * in op order); a wait that only a cycle could satisfy is an error.
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

/* A wait that placing a node followed: `wait`, on a counter that node `notifier` notifies (wait
 * NULL: none). */
typedef struct Via {
  const IrSync *wait;
  int notifier;
} Via;

typedef struct Sched {
  IrGraph *g;
  Diag *d;
  bool *placed, *placing;
  int kernel;
  Via via;   /* the latest wait followed on the way to the node being placed */
  bool cycle;
} Sched;

static int writer(const Sched *s, int v) {
  if (v < 0)
    return -1;
  int p = s->g->values[v].producer;
  return p >= 0 && !s->g->nodes[p].dead && s->g->nodes[p].kernel == s->kernel ? p : -1;
}

/* Node n's notify of counter c, or NULL. */
static const IrSync *notify_of(const IrNode *n, int c) {
  for (int j = 0; j < n->nnotifies; j++)
    if (n->notifies[j].counter == c)
      return &n->notifies[j];
  return NULL;
}

/* A wait `wait` on a counter that node `notifier` notifies closes a cycle: the notifier needs
 * (through what it reads or waits for) what the waiting node computes, or is that node (a
 * statement that waits on what it notifies itself, or one fused into the op it waits for). */
static void cycle(Sched *s, const IrSync *wait, int notifier) {
  const IrGraph *g = s->g;
  const char *name = g->explicit_counters[wait->counter].name;
  diag_error(s->d, wait->loc, "waiting on '%s' here makes a cycle: '%s' is notified only once "
             "what the waiting statement computes has run", name, name);
  diag_note(s->d, notify_of(&g->nodes[notifier], wait->counter)->loc, "'%s' is notified here", name);
  s->cycle = true;
}

/* Another row slice of the split matvec that `a` is a slice of: the same input and weight tensor. */
static bool is_sibling_slice(const IrGraph *g, const IrNode *a, const IrNode *b) {
  return !b->dead && b->op == IR_MATVEC && b->default_rows > 0 && b->in[0] == a->in[0] &&
         g->values[b->in[1]].tensor == g->values[a->in[1]].tensor;
}

/* Appends node n to the order, after whatever it reads and every op that notifies a counter it
 * waits on, that are not placed yet. A node met again while it is being placed closes a cycle;
 * the data flow has none, so the cycle goes through the latest wait followed (s->via). */
static void place(Sched *s, int n) {
  if (s->placed[n] || s->cycle)
    return;
  IrGraph *g = s->g;
  const IrNode *node = &g->nodes[n];
  s->placing[n] = true;
  for (int j = 0; j < IR_MAX_IN && !s->cycle; j++) {
    int p = writer(s, node->in[j]);
    if (p >= 0 && s->placing[p] && !s->placed[p]) {
      if (!s->via.wait)
        MLKC_BUG("a cycle in the data flow of megakernel '%s'", g->kernels[s->kernel].name);
      cycle(s, s->via.wait, s->via.notifier);
    } else if (p >= 0) {
      place(s, p);
    }
  }
  for (int w = 0; w < node->nwaits && !s->cycle; w++) {
    const IrSync *wait = &node->waits[w];
    for (int m = 0; m < g->nnodes && !s->cycle; m++) {
      if (g->nodes[m].dead || g->nodes[m].kernel != s->kernel || !notify_of(&g->nodes[m], wait->counter))
        continue;
      if (s->placing[m] && !s->placed[m]) {
        cycle(s, wait, m);
        break;
      }
      Via outer = s->via;
      s->via = (Via){.wait = wait, .notifier = m};
      place(s, m);
      s->via = outer;
    }
  }
  if (s->cycle)
    return;
  s->placed[n] = true;
  g->order[g->norder++] = n;
  /* The row slices of one split matvec run together, where the first of them is needed: their
   * tasks then make one wave over the SMs (q, k and v of a Llama layer: 130 tasks on 130 blocks)
   * instead of the last slice's tasks queueing behind the first ones' on the same blocks, after
   * the ropes that read the first ones (measured: v 8 us later on the H200, and the KV append and
   * attention with it). */
  if (node->op == IR_MATVEC && node->default_rows > 0)
    for (int m = 0; m < g->nnodes && !s->cycle; m++)
      if (m != n && is_sibling_slice(g, node, &g->nodes[m]) && g->nodes[m].kernel == s->kernel &&
          !s->placed[m] && !s->placing[m])
        place(s, m);
}

/* Runs where its result is first needed rather than where it is evaluated. */
static bool deferred(const IrNode *n) {
  return (n->op == IR_MATVEC || n->op == IR_RMSNORM) && n->emit_seq < 0;
}

bool schedule_graph(IrGraph *g, Diag *d) {
  g->order = arena_alloc(g->arena, (size_t)(g->nnodes ? g->nnodes : 1) * sizeof *g->order);
  g->norder = 0;
  Sched s = {.g = g, .d = d};
  bool failed = false;
  s.placed = arena_alloc(g->arena, (size_t)(g->nnodes ? g->nnodes : 1) * sizeof *s.placed);
  s.placing = arena_alloc(g->arena, (size_t)(g->nnodes ? g->nnodes : 1) * sizeof *s.placing);
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
    for (int p = 0; p < npts && !s.cycle; p++)
      place(&s, pts[p].value >= 0 ? writer(&s, pts[p].value) : pts[p].node);
    if (s.cycle) { /* the kernel has no order; the next may have one, or errors of its own */
      failed = true;
      s.cycle = false;
      g->norder = g->kernels[k].first;
      g->kernels[k].count = 0;
      continue;
    }
    /* a live node nothing placed would be a node nothing reads: fuse removed those */
    for (int i = 0; i < g->nnodes; i++)
      if (!g->nodes[i].dead && g->nodes[i].kernel == k && !s.placed[i])
        MLKC_BUG("node n%d of megakernel '%s' was never scheduled", i, g->kernels[k].name);
    g->kernels[k].count = g->norder - g->kernels[k].first;
  }
  g->pass = "schedule";
  return !failed;
}
