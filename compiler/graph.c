/* graph.c: the graph IR (mlkc.h, "graph.c"): building it and printing it.
 *
 * `mlkc --emit=graph --after=PASS` prints the graph after a pass as text: the tensors, then each
 * megakernel's nodes (in evaluation order, or in run order once scheduled), then the event
 * tensors. A node line reads
 *
 *   n12 matvec.relu %20 h[l=0] f32[B, 128] <- %17, w1+2048 bf16[128, 64]  tile=16 @nn.mlk:9[l=0]
 *
 * its kind (and function), its results (value, name, type), its operands (a declared tensor by
 * name with its element offset and view type, a computed value as %N), its attributes, the
 * statement's tile(...) clause, the explicit counters it waits on and notifies (`wait(done[1])
 * notify(done[2])`), once tiled its grid, and where it comes from. An explicit counter's event
 * line reads `e7 done[1] all count=8 counters 7..7` (count: the tasks that notify it in a run).
 */
#include <string.h>

#include "mlkc.h"

IrGraph *ir_graph_new(Arena *a, const Program *p, const Model *m) {
  IrGraph *g = arena_alloc(a, sizeof *g);
  g->arena = a;
  g->prog = p;
  g->model = m;
  g->name = m->name;
  return g;
}

int ir_add_tensor(IrGraph *g, IrTensor t) {
  ARENA_GROW(g->arena, g->tensors, g->ntensors, g->cap_tensors);
  g->tensors[g->ntensors] = t;
  return g->ntensors++;
}

int ir_add_value(IrGraph *g, IrValue v) {
  ARENA_GROW(g->arena, g->values, g->nvalues, g->cap_values);
  g->values[g->nvalues] = v;
  return g->nvalues++;
}

int ir_add_node(IrGraph *g, IrOp op, Loc loc, const char *ctx, int kernel) {
  ARENA_GROW(g->arena, g->nodes, g->nnodes, g->cap_nodes);
  IrNode *n = &g->nodes[g->nnodes];
  *n = (IrNode){.op = op, .loc = loc, .ctx = ctx ? ctx : "", .kernel = kernel, .reduce = -1,
                .emit_seq = -1, .store_seq = -1, .fn = builtin_of(op)->fn};
  for (int i = 0; i < IR_MAX_IN; i++)
    n->in[i] = n->in_seq[i] = -1;
  n->attr.layer = n->attr.cache = -1;
  return g->nnodes++;
}

int ir_add_result(IrGraph *g, int n, const Type *t) {
  if (g->nodes[n].nout == IR_MAX_OUT)
    MLKC_BUG("node %d has more than %d results", n, IR_MAX_OUT);
  int v = ir_add_value(g, (IrValue){.type = *t, .tensor = -1, .producer = n, .layer = -1});
  IrNode *node = &g->nodes[n];
  node->out[node->nout++] = v;
  return v;
}

int ir_add_event(IrGraph *g, IrEvent e) {
  ARENA_GROW(g->arena, g->events, g->nevents, g->cap_events);
  g->events[g->nevents] = e;
  return g->nevents++;
}

int ir_uses(const IrGraph *g, int v) {
  int n = 0;
  for (int i = 0; i < g->nnodes; i++) {
    const IrNode *node = &g->nodes[i];
    if (node->dead)
      continue;
    for (int j = 0; j < IR_MAX_IN; j++)
      n += node->in[j] == v;
  }
  return n;
}

void ir_replace_uses(IrGraph *g, int from, int to) {
  for (int i = 0; i < g->nnodes; i++) {
    IrNode *node = &g->nodes[i];
    if (node->dead)
      continue;
    for (int j = 0; j < IR_MAX_IN; j++)
      if (node->in[j] == from)
        node->in[j] = to;
  }
}

int ir_counter(IrGraph *g, const EventDecl *event, const int64_t *index, int kernel) {
  for (int c = 0; c < g->nexplicit; c++) {
    const IrCounter *k = &g->explicit_counters[c];
    if (k->event == event && k->kernel == kernel &&
        !memcmp(k->index, index, (size_t)event->ndims * sizeof *index))
      return c;
  }
  ARENA_GROW(g->arena, g->explicit_counters, g->nexplicit, g->cap_explicit);
  IrCounter *k = &g->explicit_counters[g->nexplicit];
  *k = (IrCounter){.event = event, .kernel = kernel, .event_id = -1};
  char name[256];
  size_t n = (size_t)snprintf(name, sizeof name, "%s[", event->name);
  for (int i = 0; i < event->ndims && n < sizeof name; i++) {
    k->index[i] = index[i];
    n += (size_t)snprintf(name + n, sizeof name - n, "%s%lld", i ? ", " : "", (long long)index[i]);
  }
  if (n < sizeof name)
    snprintf(name + n, sizeof name - n, "]");
  k->name = arena_strndup(g->arena, name, strlen(name));
  return g->nexplicit++;
}

/* A node's wait or notify list. Lists are never changed in place: a pass that copies a node (the
 * slices of a split, an attention's reduce) may share its lists, so each change makes a new one. */
static IrSync **sync_list(IrNode *node, bool notify, int **len) {
  *len = notify ? &node->nnotifies : &node->nwaits;
  return notify ? &node->notifies : &node->waits;
}

void ir_add_sync(IrGraph *g, int n, IrSync sy, bool notify) {
  int *len;
  IrSync **list = sync_list(&g->nodes[n], notify, &len);
  for (int i = 0; i < *len; i++)
    if ((*list)[i].counter == sy.counter)
      return;
  IrSync *r = arena_alloc(g->arena, (size_t)(*len + 1) * sizeof *r);
  if (*len)
    memcpy(r, *list, (size_t)*len * sizeof *r);
  r[(*len)++] = sy;
  *list = r;
}

void ir_drop_sync(IrGraph *g, int n, int c, bool notify) {
  int *len;
  IrSync **list = sync_list(&g->nodes[n], notify, &len);
  for (int i = 0; i < *len; i++)
    if ((*list)[i].counter == c) {
      IrSync *r = arena_alloc(g->arena, (size_t)*len * sizeof *r);
      memcpy(r, *list, (size_t)i * sizeof *r);
      memcpy(r + i, *list + i + 1, (size_t)(*len - i - 1) * sizeof *r);
      (*len)--;
      *list = r;
      return;
    }
}

void ir_merge_sync(IrGraph *g, int into, int from) {
  const IrNode *f = &g->nodes[from];
  for (int i = 0; i < f->nwaits; i++)
    ir_add_sync(g, into, f->waits[i], false);
  for (int i = 0; i < f->nnotifies; i++)
    ir_add_sync(g, into, f->notifies[i], true);
}

bool ir_type_batched(const Type *t) { return t->rank > 0 && t->sym[0] != NULL; }

int64_t ir_type_cols(const Type *t) {
  int64_t n = 1;
  for (int i = ir_type_batched(t) ? 1 : 0; i < t->rank; i++)
    n *= t->shape[i];
  return n;
}

const char *ir_op_name(IrOp op) { return builtin_of(op)->name; }

const char *ir_loc_file(const IrGraph *g, Loc loc) {
  const char *path = loc.src ? loc.src->path : g->prog->src->path;
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

/* ---------------------------------------------------------------- dump */

static const char *const tensor_kind_names[] = {"param", "input", "output", "temp",
                                                "cache", "pages", "sampling"};
static const char *const fn_names[] = {"none", "relu", "silu", "add", "mul"};

static void dump_type(FILE *out, Arena *a, const Type *t) {
  if (t->rank == 0)
    fputs(ast_dtype_name(t->dtype), out);
  else
    fputs(type_str(a, t), out);
}

/* An operand: a declared tensor by name (with its offset and the view's type when it is a part of
 * it), a computed value as %N. */
static void dump_operand(FILE *out, const IrGraph *g, int v) {
  if (v < 0) {
    fputs("-", out);
    return;
  }
  const IrValue *val = &g->values[v];
  if (val->producer >= 0 || val->tensor < 0) {
    fprintf(out, "%%%d", v);
    return;
  }
  const IrTensor *t = &g->tensors[val->tensor];
  fputs(t->name, out);
  if (val->layer >= 0)
    fprintf(out, "[%d]", val->layer);
  if (val->offset)
    fprintf(out, "+%lld", (long long)val->offset);
  bool whole = val->type.rank == t->type.rank;
  for (int i = 0; whole && i < t->type.rank; i++)
    whole = val->type.shape[i] == t->type.shape[i] && val->type.sym[i] == t->type.sym[i];
  if (!whole) {
    fputc(' ', out);
    dump_type(out, g->arena, &val->type);
  }
}

/* An attribute that differs from a fresh node's (0; -1 for layer and cache). */
static void dump_attr(FILE *out, const char *name, double v, bool is_float) {
  bool unset = (!strcmp(name, "layer") || !strcmp(name, "cache")) ? v == -1 : v == 0;
  if (unset)
    return;
  if (is_float)
    fprintf(out, " %s=%g", name, v);
  else
    fprintf(out, " %s=%lld", name, (long long)v);
}

static void dump_attrs(FILE *out, const IrNode *n) {
#define X(type, name, per_op, what) dump_attr(out, #name, (double)n->attr.name, _Generic(n->attr.name, float: 1, default: 0));
  MLKC_OP_ATTRS(X)
#undef X
  if (n->op == IR_ALLREDUCE)
    fprintf(out, " ranks=%lld", (long long)n->mesh);
}

static void dump_node(FILE *out, const IrGraph *g, int i) {
  const IrNode *n = &g->nodes[i];
  fprintf(out, "  n%d %s", i, ir_op_name(n->op));
  if (n->op == IR_MATVEC && n->fn != MLK_FN_NONE)
    fprintf(out, ".%s", fn_names[n->fn]);
  for (int j = 0; j < n->nout; j++) {
    const IrValue *v = &g->values[n->out[j]];
    fprintf(out, "%s %%%d", j ? "," : "", n->out[j]);
    if (v->tensor >= 0)
      fprintf(out, " ->%s", g->tensors[v->tensor].name);
    if (v->name)
      fprintf(out, " %s", v->name);
    fputc(' ', out);
    dump_type(out, g->arena, &v->type);
  }
  fputs(" <-", out);
  int last = IR_MAX_IN - 1;
  while (last >= 0 && n->in[last] < 0)
    last--;
  for (int j = 0; j <= last; j++) {
    fputs(j ? ", " : " ", out);
    dump_operand(out, g, n->in[j]);
  }
  dump_attrs(out, n);
  if (n->hint.tile)
    fprintf(out, " tile(%lld)", (long long)n->hint.tile);
  if (n->hint.head || n->hint.split)
    fprintf(out, " tile(head=%lld, split=%lld)", (long long)n->hint.head, (long long)n->hint.split);
  for (int j = 0; j < n->nwaits; j++)
    fprintf(out, "%s%s%s", j ? ", " : " wait(", g->explicit_counters[n->waits[j].counter].name,
            j + 1 == n->nwaits ? ")" : "");
  for (int j = 0; j < n->nnotifies; j++)
    fprintf(out, "%s%s%s", j ? ", " : " notify(", g->explicit_counters[n->notifies[j].counter].name,
            j + 1 == n->nnotifies ? ")" : "");
  if (n->ntasks) {
    fprintf(out, " grid n=%lld", (long long)n->n);
    if (n->k)
      fprintf(out, " k=%lld", (long long)n->k);
    fprintf(out, " tile=%lld tasks=%lld%s", (long long)n->tile, (long long)n->ntasks,
            n->batched ? " batched" : "");
  }
  fprintf(out, " @%s:%d%s\n", ir_loc_file(g, n->loc), n->loc.line, n->ctx);
}

void ir_dump(FILE *out, const IrGraph *g) {
  int live = 0;
  for (int i = 0; i < g->nnodes; i++)
    live += !g->nodes[i].dead;
  fprintf(out, "# model %s after %s: %d tensors, %d nodes, %d event tensors\n", g->name,
          g->pass ? g->pass : "nothing", g->ntensors, live, g->nevents);
  for (int i = 0; i < g->ntensors; i++) {
    const IrTensor *t = &g->tensors[i];
    fprintf(out, "t%d %s %s ", i, t->name, tensor_kind_names[t->kind]);
    dump_type(out, g->arena, &t->type);
    if (t->from)
      fprintf(out, " from \"%s\"", t->from);
    if (t->cache >= 0) {
      const IrCache *c = &g->caches[t->cache];
      if (t->kind == MLK_TENSOR_CACHE)
        fprintf(out, " layers=%lld kv_heads=%lld head_dim=%lld page=%lld", (long long)c->layers,
                (long long)c->kv_heads, (long long)c->head_dim, (long long)c->page);
    }
    fputc('\n', out);
  }
  for (int k = 0; k < g->nkernels; k++) {
    const IrKernel *gk = &g->kernels[k];
    fprintf(out, "megakernel %s (%s)\n", gk->name,
            gk->schedule == MLK_SCHED_DYNAMIC ? "dynamic" : "static");
    if (g->order) {
      for (int i = gk->first; i < gk->first + gk->count; i++)
        dump_node(out, g, g->order[i]);
      continue;
    }
    for (int i = 0; i < g->nnodes; i++)
      if (!g->nodes[i].dead && g->nodes[i].kernel == k)
        dump_node(out, g, i);
  }
  for (int i = 0; i < g->nevents; i++) {
    const IrEvent *e = &g->events[i];
    if (e->counter >= 0) {
      fprintf(out, "e%d %s all count=%lld counters %lld..%lld\n", i,
              g->explicit_counters[e->counter].name, (long long)e->count, (long long)e->base,
              (long long)(e->base + e->size - 1));
      continue;
    }
    fprintf(out, "e%d n%d -> n%d %%%d %s n=%lld ptile=%lld ctile=%lld counters %lld..%lld\n", i,
            e->producer, e->consumer, e->value, e->map == MLK_MAP_ALL ? "all" : "tile",
            (long long)e->n, (long long)e->ptile, (long long)e->ctile, (long long)e->base,
            (long long)(e->base + e->size - 1));
  }
}
