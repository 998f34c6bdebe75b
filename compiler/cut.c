/* cut.c: megakernels cut at their collectives (the cut pass).
 *
 * An `allreduce(tp, x)` over an axis of several ranks needs every rank's x before any rank reads
 * the sum. This pass makes it a collective between kernel launches: each megakernel that holds
 * such allreduces is cut into segments, every op in the segment after the last collective it
 * depends on, and each collective runs after the segment that computes its operand:
 *
 *   seg(op) = max over what it reads (and the notifiers of the counters it waits on) of seg(writer),
 *             plus 1 where the writer is a collective; seg(collective) = seg(its operand's writer).
 *
 * So a Llama layer is two segments (attention up to wo, then the residual add and the MLP up to
 * w_down), each collective reads a value that is complete when its segment ends, and no segment
 * reads a sum before it exists. Segments keep the scheduled order of their ops; segment s of
 * megakernel "decode" is the kernel "decode.s" ("decode" itself for segment 0) with the entry
 * "<entry>_s<s>". A collective is not an op: it leaves the order, and the events pass makes no
 * event for it (its reads and writes cross kernel launches). The runtime runs the segments of a
 * megakernel on every rank in turn, with the collectives between them (mlk_world_run); the sum
 * itself is the host's or the communication library's. Fewer, fatter segments with the sum inside
 * the megakernel are the next step (docs/parallelism.md).
 */
#include <string.h>

#include "mlkc.h"

static bool is_collective(const IrNode *n) { return n->op == IR_ALLREDUCE && n->mesh > 1; }

/* The live node of megakernel k writing value v, or -1. */
static int writer_in(const IrGraph *g, int v, int k) {
  if (v < 0)
    return -1;
  int p = g->values[v].producer;
  return p >= 0 && !g->nodes[p].dead && g->nodes[p].kernel == k ? p : -1;
}

/* Segments of megakernel k's nodes (seg[node]) in its scheduled order, and of its collectives.
 * Returns the number of segments, or 0 after an error. */
static int segment_kernel(IrGraph *g, int k, int *seg, Diag *d) {
  const IrKernel *ik = &g->kernels[k];
  int nseg = 1;
  for (int i = ik->first; i < ik->first + ik->count; i++) {
    int n = g->order[i];
    const IrNode *node = &g->nodes[n];
    int s = 0;
    for (int j = 0; j < IR_MAX_IN; j++) {
      int p = writer_in(g, node->in[j], k);
      if (p >= 0)
        s = seg[p] + is_collective(&g->nodes[p]) > s ? seg[p] + is_collective(&g->nodes[p]) : s;
    }
    for (int w = 0; w < node->nwaits; w++)
      for (int m = 0; m < g->nnodes; m++) {
        const IrNode *o = &g->nodes[m];
        if (o->dead || o->kernel != k || m == n)
          continue;
        for (int j = 0; j < o->nnotifies; j++)
          if (o->notifies[j].counter == node->waits[w].counter && seg[m] > s)
            s = seg[m];
      }
    if (is_collective(node)) {
      if (node->nwaits || node->nnotifies) {
        diag_error(d, node->loc, "an allreduce over %lld ranks runs between kernel launches: it "
                   "cannot take wait(...) or notify(...) clauses", (long long)node->mesh);
        return 0;
      }
      if (writer_in(g, node->in[0], k) < 0) {
        diag_error(d, node->loc, "this allreduce over %lld ranks reduces a value that megakernel "
                   "'%s' does not compute; reduce a value one of its operations computes",
                   (long long)node->mesh, ik->name);
        return 0;
      }
      if (node->mesh != g->ranks) {
        diag_error(d, node->loc, "this allreduce is over %lld ranks of a mesh of %lld: a "
                   "collective over part of the mesh is not supported", (long long)node->mesh,
                   (long long)g->ranks);
        return 0;
      }
    }
    seg[n] = s;
    if (s + 1 > nseg)
      nseg = s + 1;
  }
  return nseg;
}

bool cut_graph(IrGraph *g, const TileOptions *t, Diag *d) {
  int errors = d->nerrors;
  if (t && t->kernel_collectives) {
    /* the allreduces stay ops (MLK_OP_ALLREDUCE): nothing to cut; the same rules otherwise */
    for (int i = 0; i < g->nnodes; i++) {
      const IrNode *n = &g->nodes[i];
      if (n->dead || !is_collective(n))
        continue;
      if (n->mesh != g->ranks)
        diag_error(d, n->loc, "this allreduce is over %lld ranks of a mesh of %lld: a collective "
                   "over part of the mesh is not supported", (long long)n->mesh,
                   (long long)g->ranks);
      else if (writer_in(g, n->in[0], n->kernel) < 0)
        diag_error(d, n->loc, "this allreduce over %lld ranks reduces a value that megakernel "
                   "'%s' does not compute; reduce a value one of its operations computes",
                   (long long)n->mesh, g->kernels[n->kernel].name);
    }
    for (int k = 0; k < g->nkernels; k++)
      g->kernels[k].nsegments = 1;
    g->pass = "cut";
    return d->nerrors == errors;
  }
  int *seg = arena_alloc(g->arena, (size_t)(g->nnodes ? g->nnodes : 1) * sizeof *seg);
  int *nseg = arena_alloc(g->arena, (size_t)(g->nkernels ? g->nkernels : 1) * sizeof *nseg);
  int total = 0;
  for (int k = 0; k < g->nkernels; k++) {
    nseg[k] = segment_kernel(g, k, seg, d);
    if (!nseg[k])
      return false;
    total += nseg[k];
  }
  /* an explicit event synchronizes the ops of one launch: a wait whose notifier the cut put in an
   * earlier segment would be met by a launch that has ended (the runtime refuses such events) */
  for (int n = 0; n < g->nnodes; n++) {
    const IrNode *node = &g->nodes[n];
    if (node->dead || is_collective(node) || nseg[node->kernel] < 2)
      continue;
    for (int w = 0; w < node->nwaits; w++)
      for (int m = 0; m < g->nnodes; m++) {
        const IrNode *o = &g->nodes[m];
        if (o->dead || o->kernel != node->kernel || seg[m] == seg[n])
          continue;
        for (int j = 0; j < o->nnotifies; j++)
          if (o->notifies[j].counter == node->waits[w].counter) {
            const char *name = g->explicit_counters[node->waits[w].counter].name;
            diag_error(d, node->waits[w].loc, "this wait on '%s' and a notify of it are in "
                       "different launches of megakernel '%s': an allreduce over %lld ranks cuts "
                       "the megakernel between them (keep them on one side of the allreduce, or "
                       "compile with --collectives=kernel)", name, g->kernels[node->kernel].name,
                       (long long)g->ranks);
            diag_note(d, o->notifies[j].loc, "'%s' is notified here", name);
            return false;
          }
      }
  }
  g->pass = "cut";
  for (int k = 0; k < g->nkernels; k++)
    g->kernels[k].nsegments = 1;
  if (total == g->nkernels) {
    /* nothing to cut; an allreduce over several ranks always makes a segment after it */
    return d->nerrors == errors;
  }

  /* the kernels: each megakernel's segments in order, its nodes (and collectives) renumbered */
  IrKernel *kernels = arena_alloc(g->arena, (size_t)total * sizeof *kernels);
  int *base = arena_alloc(g->arena, (size_t)g->nkernels * sizeof *base);
  int nk = 0;
  for (int k = 0; k < g->nkernels; k++) {
    base[k] = nk;
    for (int s = 0; s < nseg[k]; s++) {
      IrKernel seg_k = g->kernels[k];
      seg_k.segment = s;
      seg_k.nsegments = nseg[k];
      if (s > 0) {
        seg_k.name = arena_printf(g->arena, "%s.%d", g->kernels[k].name, s);
        seg_k.entry = arena_printf(g->arena, "%s_s%d", g->kernels[k].entry, s);
      }
      kernels[nk++] = seg_k;
    }
  }
  int *order = arena_alloc(g->arena, (size_t)(g->norder ? g->norder : 1) * sizeof *order);
  g->collectives = arena_alloc(g->arena, (size_t)(g->norder ? g->norder : 1) * sizeof *g->collectives);
  g->ncollectives = 0;
  int norder = 0;
  for (int k = 0; k < g->nkernels; k++) {
    const IrKernel *ik = &g->kernels[k];
    for (int s = 0; s < nseg[k]; s++) {
      IrKernel *nkern = &kernels[base[k] + s];
      nkern->first = norder;
      for (int i = ik->first; i < ik->first + ik->count; i++) {
        int n = g->order[i];
        if (seg[n] != s || is_collective(&g->nodes[n]))
          continue;
        order[norder++] = n;
      }
      nkern->count = norder - nkern->first;
      for (int i = ik->first; i < ik->first + ik->count; i++) {
        int n = g->order[i];
        if (seg[n] == s && is_collective(&g->nodes[n]))
          g->collectives[g->ncollectives++] = n;
      }
    }
  }
  for (int k = 0; k < g->nkernels; k++)
    for (int i = g->kernels[k].first; i < g->kernels[k].first + g->kernels[k].count; i++)
      g->nodes[g->order[i]].kernel = base[k] + seg[g->order[i]];
  for (int c = 0; c < g->nexplicit; c++)
    g->explicit_counters[c].kernel = base[g->explicit_counters[c].kernel];
  g->kernels = kernels;
  g->nkernels = nk;
  g->order = order;
  g->norder = norder;
  return d->nerrors == errors;
}
