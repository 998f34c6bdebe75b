/* serialize.c: the scheduled graph IR -> the runtime descriptor (Graph: MlkOpDesc, MlkEventDesc,
 * MlkCacheDesc and the tensors, as mlk_desc.h lays them out), which codegen.c and emit_c.c read;
 * and the dumps of that descriptor (--emit=graph, --emit=events, --emit=dot).
 *
 * Tensors keep their declaration order; every value that no declared tensor holds gets a
 * temporary, in the order of the ops that write them, named after the variable it was assigned to
 * or else after its writer ("matvec@nn.mlk:23[l=0]"). Ops are the scheduled nodes; each
 * descriptor field is written from the graph, the per-kind attributes field by field from the
 * descriptor's own list (MLK_OP_ATTRS), so that none can be forgotten. Names are made unique
 * ("q[l=0]#2") and the events named after their tensor and ops.
 */
#include <stdlib.h>
#include <string.h>

#include "mlkc.h"

int64_t graph_row_elems(const GTensor *t) {
  return t->batched && t->shape[0] ? t->numel / t->shape[0] : t->numel;
}

typedef struct Ser {
  IrGraph *ir;
  Graph *g;
  Arena *a;
  int *op_of; /* node -> op index */
} Ser;

static int add_tensor(Ser *s, GTensor t) {
  Graph *g = s->g;
  ARENA_GROW(s->a, g->tensors, g->ntensors, g->cap_tensors);
  g->tensors[g->ntensors] = t;
  return g->ntensors++;
}

/* A declared tensor as the runtime sees it: a batched tensor's leading dim is the batch maximum;
 * a cache's pool and page table are sized by the runtime (rank 1, 0 elements). */
static GTensor declared(const Ser *s, const IrTensor *t) {
  GTensor r = {.name = t->name, .dtype = t->type.dtype, .kind = t->kind, .from = t->from};
  if (t->kind == MLK_TENSOR_CACHE || t->kind == MLK_TENSOR_PAGES) {
    r.rank = 1;
    return r;
  }
  r.rank = t->type.rank;
  r.numel = 1;
  for (int i = 0; i < r.rank; i++) {
    r.shape[i] = t->type.sym[i] ? s->ir->batch->hi_v * t->type.shape[i] : t->type.shape[i];
    r.numel *= r.shape[i];
  }
  r.batched = ir_type_batched(&t->type);
  return r;
}

static const char *const op_kind_names[] = {
#define X(K, name, r0, r1, r2, r3, r4) #name,
    MLK_OP_KINDS(X)
#undef X
};

/* The name of an op's base: matvec_relu, add, kv_append... */
static const char *op_base(const IrNode *n, const Builtin *b) {
  static const char *const eltwise_names[] = {"copy", "relu", "silu", "add", "mul"};
  if (n->op == IR_ALLREDUCE)
    return "allreduce";
  if (b->kind == MLK_OP_ELTWISE) /* a bias added alone (fn none) is the add of the source */
    return n->fn == MLK_FN_NONE && n->in[4] >= 0 ? "add" : eltwise_names[n->fn];
  if (b->kind == MLK_OP_MATVEC && n->fn != MLK_FN_NONE)
    return n->fn == MLK_FN_RELU ? "matvec_relu" : n->fn == MLK_FN_SILU ? "matvec_silu" : "matvec_mul";
  return op_kind_names[b->kind];
}

/* A temporary for value v, which op node n writes: [batch rows,] columns of f32 or i32. */
static int temporary(Ser *s, int v, int n) {
  IrValue *val = &s->ir->values[v];
  const IrNode *node = &s->ir->nodes[n];
  const char *name = val->name ? val->name : val->label;
  if (!name) {
    const char *base = node->op == IR_MATVEC      ? "matvec"
                       : node->op == IR_ALLREDUCE ? "allreduce"
                                                  : op_base(node, builtin_of(node->op));
    name = arena_printf(s->a, "%s@%s:%d%s", base, ir_loc_file(s->ir, node->loc), node->loc.line,
                        node->ctx);
  }
  GTensor t = {.name = name, .dtype = val->type.dtype, .kind = MLK_TENSOR_TEMP,
               .batched = ir_type_batched(&val->type)};
  int64_t cols = ir_type_cols(&val->type);
  if (t.batched)
    t.shape[t.rank++] = s->ir->batch->hi_v;
  t.shape[t.rank++] = cols;
  t.numel = t.batched ? s->ir->batch->hi_v * cols : cols;
  val->tensor = add_tensor(s, t);
  return val->tensor;
}

static MlkArg arg(const Ser *s, int v) {
  if (v < 0)
    return (MlkArg){.tensor = -1};
  const IrValue *val = &s->ir->values[v];
  if (val->tensor < 0)
    MLKC_BUG("value %%%d is read before it has storage", v);
  return (MlkArg){.tensor = val->tensor, .offset = val->offset};
}

/* The fields of MlkOpDesc that add_op writes (with graph_link_events' wait and notify lists and
 * graph_assign_variants' variant), in the descriptor's order. A field the descriptor gains is then a build error here (the sizes
 * differ, unless it fits in padding) until add_op writes it, rather than a 0 in every op. */
struct OpDescFields {
  const char *name;
  MlkOpKind kind;
  MlkFn fn;
  MlkArg out, in[MLK_OP_INPUTS];
  int64_t n, k, tile, ntasks;
  int batched;
  int wait0, nwaits, notify0, nnotifies;
  int variant;
  struct {
    MLK_OP_ATTRS(MLK_X_FIELD)
  };
};
_Static_assert(sizeof(struct OpDescFields) == sizeof(MlkOpDesc),
               "MlkOpDesc has a field that serialize.c does not write");

static void add_op(Ser *s, int n) {
  Graph *g = s->g;
  IrNode *node = &s->ir->nodes[n];
  const Builtin *b = builtin_of(node->op);
  /* an allreduce over several ranks reaches here as an op only in the megakernel
   * (--collectives=kernel); cut, it is a collective (add_collective) */
  int kind = node->op == IR_ALLREDUCE ? MLK_OP_ALLREDUCE : b->kind;
  if (kind < 0)
    MLKC_BUG("'%s' reached serialize", b->name);
  /* the merged attention's result is numbered before its partials, as the attention's own */
  if (node->reduce >= 0 && s->ir->values[s->ir->nodes[node->reduce].out[0]].tensor < 0)
    temporary(s, s->ir->nodes[node->reduce].out[0], node->reduce);
  if (node->nout && s->ir->values[node->out[0]].tensor < 0)
    temporary(s, node->out[0], n);
  ARENA_GROW(s->a, g->ops, g->nops, g->cap_ops);
  GOp *op = &g->ops[g->nops];
  *op = (GOp){.loc = node->loc, .kernel = node->kernel};
  MlkOpDesc *d = &op->d;
  d->name = arena_printf(s->a, "%s@%s:%d%s", op_base(node, b), ir_loc_file(s->ir, node->loc),
                         node->loc.line, node->ctx);
  d->kind = (MlkOpKind)kind;
  d->fn = node->fn;
  d->out = node->nout ? arg(s, node->out[0]) : (MlkArg){.tensor = -1};
  for (int j = 0; j < MLK_OP_INPUTS; j++)
    d->in[j] = arg(s, node->in[j]);
  if (node->op == IR_KV_APPEND || node->op == IR_ATTENTION) {
    const IrCache *c = &s->ir->caches[node->attr.cache];
    d->in[3] = (MlkArg){.tensor = c->pages_tensor};
  }
  d->n = node->n;
  d->k = node->k;
  d->tile = node->tile;
  d->ntasks = node->ntasks;
  d->batched = node->batched;
#define X(type, name, per_op, what) d->name = node->attr.name;
  MLK_OP_ATTRS(X)
#undef X
  if (kind == MLK_OP_ALLREDUCE)
    d->ranks = node->mesh;
  s->op_of[n] = g->nops++;
}

/* Gives every tensor and every op a distinct name (a variable rebound in a layer names several
 * tensors: "q[l=0]" before rope, "q[l=0]#2" after; the q, k and v slices of one statement are
 * three matvecs of the same line). */
/* An allreduce over several ranks that runs after kernel k (cut.c): its result gets a temporary
 * (or the output it is stored into) like an op's. */
static void add_collective(Ser *s, int n, int k) {
  IrNode *node = &s->ir->nodes[n];
  if (s->ir->values[node->out[0]].tensor < 0)
    temporary(s, node->out[0], n);
  Graph *g = s->g;
  g->collectives[g->ncollectives++] = (MlkCollectiveDesc){
      .name = arena_printf(s->a, "allreduce@%s:%d%s", ir_loc_file(s->ir, node->loc),
                           node->loc.line, node->ctx),
      .kind = MLK_COLL_ALLREDUCE, .in = arg(s, node->in[0]), .out = arg(s, node->out[0]),
      .n = node->n, .batched = node->batched, .ranks = node->mesh, .after = k};
}

static void unique_names(Ser *s) {
  Graph *g = s->g;
  for (int t = 0; t < g->ntensors; t++) {
    int seen = 1;
    size_t n = strlen(g->tensors[t].name);
    for (int u = 0; u < t; u++)
      if (!strcmp(g->tensors[u].name, g->tensors[t].name) ||
          (!strncmp(g->tensors[u].name, g->tensors[t].name, n) && g->tensors[u].name[n] == '#'))
        seen++;
    if (seen > 1)
      g->tensors[t].name = arena_printf(s->a, "%s#%d", g->tensors[t].name, seen);
  }
  for (int o = 0; o < g->nops; o++) {
    int seen = 1;
    size_t n = strlen(g->ops[o].d.name);
    for (int u = 0; u < o; u++)
      if (!strncmp(g->ops[u].d.name, g->ops[o].d.name, n) &&
          (g->ops[u].d.name[n] == 0 || g->ops[u].d.name[n] == '#'))
        seen++;
    if (seen > 1)
      g->ops[o].d.name = arena_printf(s->a, "%s#%d", g->ops[o].d.name, seen);
  }
}

/* The explicit event of an explicit counter that a node still waits on or notifies after the events
 * pass (which dropped the others). */
static int explicit_event(const Ser *s, const IrSync *sy) {
  int e = s->ir->explicit_counters[sy->counter].event_id;
  if (e < 0)
    MLKC_BUG("counter '%s' is on a list without an event", s->ir->explicit_counters[sy->counter].name);
  return e;
}

/* Each op's explicit events: those of the counters its node waits on and notifies. */
static void explicit_lists(Ser *s) {
  for (int i = 0; i < s->ir->norder; i++) {
    const IrNode *n = &s->ir->nodes[s->ir->order[i]];
    GOp *op = &s->g->ops[s->op_of[s->ir->order[i]]];
    int *w = arena_alloc(s->a, (size_t)(n->nwaits + 1) * sizeof *w);
    int *nt = arena_alloc(s->a, (size_t)(n->nnotifies + 1) * sizeof *nt);
    for (int j = 0; j < n->nwaits; j++)
      w[j] = explicit_event(s, &n->waits[j]);
    for (int j = 0; j < n->nnotifies; j++)
      nt[j] = explicit_event(s, &n->notifies[j]);
    op->explicit_waits = w, op->nexplicit_waits = n->nwaits;
    op->explicit_notifies = nt, op->nexplicit_notifies = n->nnotifies;
  }
}

Graph *serialize_graph(IrGraph *ir, Arena *a, Diag *d) {
  int errors = d->nerrors;
  Graph *g = arena_alloc(a, sizeof *g);
  *g = (Graph){.prog = ir->prog, .model = ir->model, .name = ir->name, .batch = ir->batch};
  Ser s = {.ir = ir, .g = g, .a = a};
  s.op_of = arena_alloc(a, (size_t)(ir->nnodes ? ir->nnodes : 1) * sizeof *s.op_of);
  for (int i = 0; i < ir->ntensors; i++)
    add_tensor(&s, declared(&s, &ir->tensors[i]));

  g->kernels = arena_alloc(a, (size_t)(ir->nkernels ? ir->nkernels : 1) * sizeof *g->kernels);
  g->nkernels = ir->nkernels;
  g->collectives = arena_alloc(a, (size_t)(ir->ncollectives ? ir->ncollectives : 1) *
                                      sizeof *g->collectives);
  g->ranks = ir->ranks;
  for (int k = 0; k < ir->nkernels; k++) {
    const IrKernel *ik = &ir->kernels[k];
    g->kernels[k] = (GKernel){.name = ik->name, .entry = ik->entry, .first_op = g->nops,
                              .schedule = ik->schedule, .segment = ik->segment,
                              .nsegments = ik->nsegments > 0 ? ik->nsegments : 1};
    for (int i = ik->first; i < ik->first + ik->count; i++)
      add_op(&s, ir->order[i]);
    g->kernels[k].nops = g->nops - g->kernels[k].first_op;
    if (g->kernels[k].nops == 0)
      diag_error(d, ik->decl->loc, "megakernel '%s' computes nothing", ik->name);
    for (int c = 0; c < ir->ncollectives; c++)
      if (ir->nodes[ir->collectives[c]].kernel == k)
        add_collective(&s, ir->collectives[c], k);
  }

  g->caches = arena_alloc(a, (size_t)(ir->ncaches ? ir->ncaches : 1) * sizeof *g->caches);
  g->ncaches = ir->ncaches;
  for (int c = 0; c < ir->ncaches; c++) {
    const IrCache *ic = &ir->caches[c];
    g->caches[c] = (MlkCacheDesc){.name = ic->decl->name, .tensor = ic->tensor,
                                  .pages_tensor = ic->pages_tensor, .dtype = ic->dtype,
                                  .layers = ic->layers, .kv_heads = ic->kv_heads,
                                  .head_dim = ic->head_dim, .page = ic->page};
  }

  g->events = arena_alloc(a, (size_t)(ir->nevents ? ir->nevents : 1) * sizeof *g->events);
  g->nevents = g->cap_events = ir->nevents;
  for (int i = 0; i < ir->nevents; i++) {
    const IrEvent *e = &ir->events[i];
    if (e->counter >= 0) {
      /* an explicit counter: its ops are on its wait and notify lists (explicit_lists) */
      const IrCounter *k = &ir->explicit_counters[e->counter];
      g->events[i] = (MlkEventDesc){
          .name = ir->nkernels > 1 ? arena_printf(a, "%s@%s", k->name, ir->kernels[k->kernel].name)
                                   : k->name,
          .producer = -1, .consumer = -1, .tensor = -1, .map = MLK_MAP_ALL, .count = e->count,
          .size = e->size, .base = e->base};
      continue;
    }
    g->events[i] = (MlkEventDesc){.producer = s.op_of[e->producer], .consumer = s.op_of[e->consumer],
                                  .tensor = ir->values[e->value].tensor, .map = e->map, .n = e->n,
                                  .ptile = e->ptile, .ctile = e->ctile, .size = e->size,
                                  .base = e->base, .ranks = e->ranks};
  }
  explicit_lists(&s);
  g->ncounters = ir->ncounters;
  graph_link_events(g, a);
  graph_assign_variants(g, a);
  unique_names(&s);
  for (int i = 0; i < g->nevents; i++) {
    MlkEventDesc *e = &g->events[i];
    if (e->producer >= 0)
      e->name = arena_printf(a, "%s: %s -> %s", g->tensors[e->tensor].name,
                             g->ops[e->producer].d.name, g->ops[e->consumer].d.name);
  }
  for (int i = 0; i < g->nops; i++)
    if (g->ops[i].d.ntasks > MLK_MAX_TASKS_PER_OP)
      diag_error(d, g->ops[i].loc, "'%s' has %lld tasks, more than the %d an op may have",
                 g->ops[i].d.name, (long long)g->ops[i].d.ntasks, MLK_MAX_TASKS_PER_OP);
  if (d->nerrors == errors)
    bind_params(g, a, d); /* checkpoint bindings: needs the ops (bind.c) */
  return d->nerrors == errors ? g : NULL;
}

/* ---------------------------------------------------------------- event lists */

void graph_link_events(Graph *g, Arena *a) {
  int nrefs = 0;
  for (int i = 0; i < g->nevents; i++) {
    MlkEventDesc *e = &g->events[i];
    if (e->map == MLK_MAP_ALL && e->producer >= 0)
      e->count = g->ops[e->producer].d.ntasks;
    nrefs += (e->producer >= 0) + (e->consumer >= 0);
  }
  for (int o = 0; o < g->nops; o++)
    nrefs += g->ops[o].nexplicit_waits + g->ops[o].nexplicit_notifies;
  g->event_refs = arena_alloc(a, (size_t)(nrefs ? nrefs : 1) * sizeof *g->event_refs);
  g->nevent_refs = 0;
  for (int o = 0; o < g->nops; o++) {
    const GOp *op = &g->ops[o];
    MlkOpDesc *d = &g->ops[o].d;
    d->wait0 = g->nevent_refs;
    for (int i = 0; i < g->nevents; i++)
      if (g->events[i].consumer == o)
        g->event_refs[g->nevent_refs++] = i;
    for (int i = 0; i < op->nexplicit_waits; i++)
      g->event_refs[g->nevent_refs++] = op->explicit_waits[i];
    d->nwaits = g->nevent_refs - d->wait0;
    d->notify0 = g->nevent_refs;
    for (int i = 0; i < g->nevents; i++)
      if (g->events[i].producer == o)
        g->event_refs[g->nevent_refs++] = i;
    for (int i = 0; i < op->nexplicit_notifies; i++)
      g->event_refs[g->nevent_refs++] = op->explicit_notifies[i];
    d->nnotifies = g->nevent_refs - d->notify0;
  }
}

/* ---------------------------------------------------------------- code variants */

void graph_assign_variants(Graph *g, Arena *a) {
  for (int k = 0; k < g->nkernels; k++) {
    GKernel *gk = &g->kernels[k];
    gk->variant_ops = arena_alloc(a, (size_t)(gk->nops ? gk->nops : 1) * sizeof *gk->variant_ops);
    gk->nvariants = 0;
    for (int o = gk->first_op; o < gk->first_op + gk->nops; o++) {
      MlkOpDesc *d = &g->ops[o].d;
      int v = 0;
      while (v < gk->nvariants && !mlk_op_same_variant(d, &g->ops[gk->variant_ops[v]].d))
        v++;
      if (v == gk->nvariants)
        gk->variant_ops[gk->nvariants++] = o;
      d->variant = v;
    }
  }
}

/* ---------------------------------------------------------------- dumps */

static const char *tensor_kind_names[] = {"param", "input", "output", "temp",
                                          "cache", "pages", "sampling"};

static void json_str(FILE *out, const char *s) {
  fputc('"', out);
  for (; s && *s; s++) {
    if (*s == '"' || *s == '\\')
      fprintf(out, "\\%c", *s);
    else if ((unsigned char)*s < 0x20)
      fprintf(out, "\\u%04x", *s);
    else
      fputc(*s, out);
  }
  fputc('"', out);
}

static const char *start_formula(const MlkEventDesc *e) {
  return e->map == MLK_MAP_ALL ? "ceil(n/ptile)"
                               : "(min((i+1)*ctile,n)-1)/ptile - i*ctile/ptile + 1";
}

/* Every field of the descriptor as JSON. --emit=graph prints the compiler's descriptor with it,
 * and tests/compiler/test_desc_fields.c the one a generated model.c holds: the two must be equal,
 * so a field the C emitter leaves out shows. The per-kind attributes come from MLK_OP_ATTRS (those
 * that differ from 0; layer and cache from -1). */
void desc_dump_json(FILE *out, const MlkModelDesc *d) {
  static const char *const fn_names[] = {"none", "relu", "silu", "add", "mul"};
  fprintf(out, "{\n  \"model\": ");
  json_str(out, d->name);
  fprintf(out, ",\n  \"abi\": %d,\n  \"source\": ", d->abi);
  json_str(out, d->source);
  if (d->batch_name) {
    fprintf(out, ",\n  \"batch\": {\"dim\": ");
    json_str(out, d->batch_name);
    fprintf(out, ", \"min\": %lld, \"max\": %lld}", (long long)d->batch_min,
            (long long)d->batch_max);
  }
  fprintf(out, ",\n  \"tensors\": [\n");
  for (int i = 0; i < d->ntensors; i++) {
    const MlkTensorDesc *t = &d->tensors[i];
    fprintf(out, "    {\"id\": %d, \"name\": ", i);
    json_str(out, t->name);
    fprintf(out, ", \"kind\": \"%s\", \"dtype\": \"%s\", \"shape\": [", tensor_kind_names[t->kind],
            ast_dtype_name(t->dtype));
    for (int j = 0; j < t->rank; j++)
      fprintf(out, "%s%lld", j ? ", " : "", (long long)t->shape[j]);
    fprintf(out, "], \"numel\": %lld", (long long)t->numel);
    if (t->batched)
      fprintf(out, ", \"batched\": true");
    if (t->from) {
      fprintf(out, ", \"from\": ");
      json_str(out, t->from);
    }
    fprintf(out, "}%s\n", i + 1 < d->ntensors ? "," : "");
  }
  fprintf(out, "  ],\n  \"kernels\": [\n");
  for (int k = 0; k < d->nkernels; k++) {
    const MlkKernelDesc *gk = &d->kernels[k];
    fprintf(out, "    {\"name\": ");
    json_str(out, gk->name);
    fprintf(out, ", \"entry\": ");
    json_str(out, gk->entry);
    fprintf(out, ", \"schedule\": \"%s\", \"first_op\": %d, \"nops\": %d, ",
            gk->schedule == MLK_SCHED_DYNAMIC ? "dynamic" : "static", gk->first_op, gk->nops);
    if (gk->nsegments > 1)
      fprintf(out, "\"segment\": %d, \"nsegments\": %d, ", gk->segment, gk->nsegments);
    fprintf(out, "\"variants\": [");
    for (int v = 0; v < gk->nvariants; v++)
      fprintf(out, "%s%d", v ? ", " : "", gk->variant_ops[v]);
    fputs("], \"ops\": [\n", out);
    for (int i = gk->first_op; i < gk->first_op + gk->nops; i++) {
      const MlkOpDesc *o = &d->ops[i];
      fprintf(out, "      {\"id\": %d, \"name\": ", i);
      json_str(out, o->name);
      fprintf(out, ", \"kind\": \"%s\", \"fn\": \"%s\", \"out\": ", op_kind_names[o->kind],
              fn_names[o->fn]);
      for (int j = 0; j <= MLK_OP_INPUTS; j++) {
        const MlkArg *a = j ? &o->in[j - 1] : &o->out;
        fputs(j == 1 ? ", \"in\": [" : j > 1 ? ", " : "", out);
        if (a->offset)
          fprintf(out, "[%d, %lld]", a->tensor, (long long)a->offset);
        else
          fprintf(out, "%d", a->tensor);
      }
      fprintf(out, "], \"n\": %lld, \"k\": %lld, \"tile\": %lld, \"tasks\": %lld, \"batched\": %d",
              (long long)o->n, (long long)o->k, (long long)o->tile, (long long)o->ntasks,
              o->batched);
      fputs(", \"waits\": [", out);
      for (int j = 0; j < o->nwaits; j++)
        fprintf(out, "%s%d", j ? ", " : "", d->event_refs[o->wait0 + j]);
      fputs("], \"notifies\": [", out);
      for (int j = 0; j < o->nnotifies; j++)
        fprintf(out, "%s%d", j ? ", " : "", d->event_refs[o->notify0 + j]);
      fprintf(out, "], \"variant\": %d", o->variant);
#define X(type, name, per_op, what)                                                                        \
  if (o->name != (!strcmp(#name, "layer") || !strcmp(#name, "cache") ? -1 : 0)) {                  \
    if (_Generic(o->name, float: 1, default: 0))                                                   \
      fprintf(out, ", \"" #name "\": %.9g", (double)o->name);                                      \
    else                                                                                           \
      fprintf(out, ", \"" #name "\": %lld", (long long)o->name);                                   \
  }
      MLK_OP_ATTRS(X)
#undef X
      fprintf(out, "}%s\n", i + 1 < gk->first_op + gk->nops ? "," : "");
    }
    fprintf(out, "    ]}%s\n", k + 1 < d->nkernels ? "," : "");
  }
  fprintf(out, "  ],\n  \"events\": [\n");
  for (int i = 0; i < d->nevents; i++) {
    const MlkEventDesc *e = &d->events[i];
    fprintf(out, "    {\"id\": %d, \"name\": ", i);
    json_str(out, e->name);
    fprintf(out,
            ", \"producer\": %d, \"consumer\": %d, \"tensor\": %d, \"map\": \"%s\", \"n\": %lld, "
            "\"ptile\": %lld, \"ctile\": %lld, \"size\": %lld, \"base\": %lld, \"count\": %lld",
            e->producer, e->consumer, e->tensor, e->map == MLK_MAP_ALL ? "all" : "tile",
            (long long)e->n, (long long)e->ptile, (long long)e->ctile, (long long)e->size,
            (long long)e->base, (long long)e->count);
    if (e->ranks > 1)
      fprintf(out, ", \"ranks\": %lld", (long long)e->ranks);
    fprintf(out, "}%s\n", i + 1 < d->nevents ? "," : "");
  }
  fprintf(out, "  ],\n  \"caches\": [\n");
  for (int i = 0; i < d->ncaches; i++) {
    const MlkCacheDesc *c = &d->caches[i];
    fprintf(out, "    {\"name\": ");
    json_str(out, c->name);
    fprintf(out, ", \"tensor\": %d, \"pages\": %d, \"dtype\": \"%s\", \"layers\": %lld, "
            "\"kv_heads\": %lld, \"head_dim\": %lld, \"page\": %lld}%s\n", c->tensor,
            c->pages_tensor, ast_dtype_name(c->dtype), (long long)c->layers,
            (long long)c->kv_heads, (long long)c->head_dim, (long long)c->page,
            i + 1 < d->ncaches ? "," : "");
  }
  fprintf(out, "  ],\n  \"bindings\": [\n");
  for (int i = 0; i < d->nbindings; i++) {
    const MlkBinding *b = &d->bindings[i];
    fprintf(out, "    {\"tensor\": %d, \"name\": ", b->tensor);
    json_str(out, b->name);
    fprintf(out, ", \"offset\": %lld, \"shape\": [", (long long)b->offset);
    for (int j = 0; j < b->rank; j++)
      fprintf(out, "%s%lld", j ? ", " : "", (long long)b->shape[j]);
    fprintf(out, "]");
    if (b->shard_ways > 1)
      fprintf(out, ", \"shard_dim\": %d, \"shard_ways\": %lld", b->shard_dim,
              (long long)b->shard_ways);
    fprintf(out, "}%s\n", i + 1 < d->nbindings ? "," : "");
  }
  fprintf(out, "  ],\n");
  if (d->ranks > 1 || d->ncollectives) {
    fprintf(out, "  \"ranks\": %lld,\n  \"collectives\": [\n", (long long)d->ranks);
    for (int i = 0; i < d->ncollectives; i++) {
      const MlkCollectiveDesc *c = &d->collectives[i];
      fprintf(out, "    {\"name\": ");
      json_str(out, c->name);
      fprintf(out, ", \"kind\": \"allreduce\", \"in\": [%d, %lld], \"out\": [%d, %lld], \"n\": %lld, "
                   "\"batched\": %s, \"ranks\": %lld, \"after\": %d}%s\n",
              c->in.tensor, (long long)c->in.offset, c->out.tensor, (long long)c->out.offset,
              (long long)c->n, c->batched ? "true" : "false", (long long)c->ranks, c->after,
              i + 1 < d->ncollectives ? "," : "");
    }
    fprintf(out, "  ],\n");
  }
  fprintf(out, "  \"event_refs\": %d,\n  \"counters\": %lld\n}\n", d->nevent_refs,
          (long long)d->ncounters);
}

static const char *basename_of(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

MlkModelDesc *graph_desc(const Graph *g, const char *ptx_sm90a, const char *ptx_sm80, Arena *a) {
  MlkTensorDesc *tensors = arena_alloc(a, ((size_t)g->ntensors + 1) * sizeof *tensors);
  MlkOpDesc *ops = arena_alloc(a, ((size_t)g->nops + 1) * sizeof *ops);
  MlkKernelDesc *kernels = arena_alloc(a, ((size_t)g->nkernels + 1) * sizeof *kernels);
  int nbindings = 0;
  for (int i = 0; i < g->ntensors; i++)
    nbindings += g->tensors[i].nbindings;
  MlkBinding *bindings = arena_alloc(a, ((size_t)nbindings + 1) * sizeof *bindings);
  /* the params' bindings one after another, in tensor order, as emit_c.c lays them out */
  for (int i = 0, n = 0; i < g->ntensors; i++)
    for (int j = 0; j < g->tensors[i].nbindings; j++) {
      bindings[n] = g->tensors[i].bindings[j];
      bindings[n++].tensor = i;
    }
  for (int i = 0; i < g->ntensors; i++) {
    const GTensor *t = &g->tensors[i];
    tensors[i] = (MlkTensorDesc){.name = t->name, .dtype = t->dtype, .kind = t->kind,
                                 .rank = t->rank, .numel = t->numel, .from = t->from,
                                 .batched = t->batched};
    memcpy(tensors[i].shape, t->shape, sizeof t->shape);
  }
  for (int i = 0; i < g->nops; i++)
    ops[i] = g->ops[i].d;
  for (int k = 0; k < g->nkernels; k++)
    kernels[k] = (MlkKernelDesc){.name = g->kernels[k].name, .entry = g->kernels[k].entry,
                                 .first_op = g->kernels[k].first_op, .nops = g->kernels[k].nops,
                                 .schedule = g->kernels[k].schedule,
                                 .variant_ops = g->kernels[k].variant_ops,
                                 .nvariants = g->kernels[k].nvariants,
                                 .segment = g->kernels[k].segment,
                                 .nsegments = g->kernels[k].nsegments};
  MlkModelDesc *d = arena_alloc(a, sizeof *d);
  *d = (MlkModelDesc){.abi = MLK_DESC_ABI, .name = g->name,
                      .source = basename_of(g->prog->src->path), .tensors = tensors,
                      .ntensors = g->ntensors, .ops = ops, .nops = g->nops, .events = g->events,
                      .nevents = g->nevents, .event_refs = g->event_refs,
                      .nevent_refs = g->nevent_refs, .ncounters = g->ncounters, .kernels = kernels,
                      .nkernels = g->nkernels, .caches = g->caches, .ncaches = g->ncaches,
                      .batch_name = g->batch ? g->batch->name : NULL,
                      .batch_min = g->batch ? g->batch->lo_v : 1,
                      .batch_max = g->batch ? g->batch->hi_v : 1, .ptx_sm90a = ptx_sm90a,
                      .ptx_sm80 = ptx_sm80, .bindings = bindings, .nbindings = nbindings,
                      .ranks = g->ranks, .collectives = g->collectives,
                      .ncollectives = g->ncollectives};
  return d;
}

void graph_dump(FILE *out, const Graph *g) {
  /* the descriptor as model.c holds it (emit_c.c writes the same fields from the same Graph) */
  Arena *a = arena_new();
  desc_dump_json(out, graph_desc(g, NULL, NULL, a));
  arena_free(a);
}

void graph_dump_events(FILE *out, const Graph *g) {
  fprintf(out, "# model %s: %d event tensors, %lld counters\n", g->name, g->nevents,
          (long long)g->ncounters);
  for (int i = 0; i < g->nevents; i++) {
    const MlkEventDesc *e = &g->events[i];
    if (e->producer < 0) {
      /* an explicit counter: its ops are those whose lists name it */
      fprintf(out, "E%d %s\n  shape [1]  counters %lld..%lld  explicit\n", i, e->name,
              (long long)e->base, (long long)e->base);
      for (int which = 1; which >= 0; which--) {
        fprintf(out, "  %s", which ? "notified by" : "waited on by");
        for (int o = 0, first = 1; o < g->nops; o++) {
          const MlkOpDesc *op = &g->ops[o].d;
          int r0 = which ? op->notify0 : op->wait0, n = which ? op->nnotifies : op->nwaits;
          for (int r = r0; r < r0 + n; r++)
            if (g->event_refs[r] == i) {
              fprintf(out, "%s %s (%lld tasks)", first ? "" : ",", op->name, (long long)op->ntasks);
              first = 0;
            }
        }
        fputc('\n', out);
      }
      fprintf(out, "  start value count = %lld\n", (long long)e->count);
      continue;
    }
    const MlkOpDesc *p = &g->ops[e->producer].d, *c = &g->ops[e->consumer].d;
    fprintf(out, "E%d %s\n", i, e->name);
    fprintf(out, "  shape [%lld]  counters %lld..%lld  tensor %s (%lld columns)\n",
            (long long)e->size, (long long)e->base, (long long)(e->base + e->size - 1),
            g->tensors[e->tensor].name, (long long)e->n);
    fprintf(out, "  producer %s: %lld tasks of %lld, notifies %s\n", p->name, (long long)p->ntasks,
            (long long)p->tile,
            e->map == MLK_MAP_ALL ? "E[0]" : "E[t*ptile/ctile .. (min((t+1)*ptile,n)-1)/ctile]");
    fprintf(out, "  consumer %s: %lld tasks of %lld, waits on %s\n", c->name, (long long)c->ntasks,
            (long long)c->tile, e->map == MLK_MAP_ALL ? "E[0]" : "E[t]");
    fprintf(out, "  start value %s", start_formula(e));
    if (e->map == MLK_MAP_ALL)
      fprintf(out, " = %lld\n", (long long)mlk_event_start_value(e, 0));
    else
      fprintf(out, " = %lld (first counter)\n", (long long)mlk_event_start_value(e, 0));
  }
}

void graph_dump_dot(FILE *out, const Graph *g) {
  fprintf(out, "digraph \"%s\" {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n",
          g->name);
  for (int k = 0; k < g->nkernels; k++) {
    const GKernel *gk = &g->kernels[k];
    fprintf(out, "  subgraph \"cluster_%s\" {\n    label=\"megakernel %s (%s)\";\n", gk->name,
            gk->name, gk->schedule == MLK_SCHED_DYNAMIC ? "dynamic" : "static");
    for (int i = gk->first_op; i < gk->first_op + gk->nops; i++) {
      const MlkOpDesc *o = &g->ops[i].d;
      fprintf(out, "    op%d [label=\"%s\\n%lld tasks x %lld -> %s\"];\n", i, o->name,
              (long long)o->ntasks, (long long)o->tile,
              o->out.tensor >= 0 ? g->tensors[o->out.tensor].name : "-");
    }
    fprintf(out, "  }\n");
  }
  for (int i = 0; i < g->nevents; i++) {
    const MlkEventDesc *e = &g->events[i];
    if (e->producer < 0) {
      /* an explicit counter: an edge from each op that notifies it to each that waits on it */
      for (int p = 0; p < g->nops; p++)
        for (int r = g->ops[p].d.notify0; r < g->ops[p].d.notify0 + g->ops[p].d.nnotifies; r++)
          for (int c = 0; c < g->nops && g->event_refs[r] == i; c++)
            for (int w = g->ops[c].d.wait0; w < g->ops[c].d.wait0 + g->ops[c].d.nwaits; w++)
              if (g->event_refs[w] == i)
                fprintf(out, "  op%d -> op%d [label=\"E%d %s\", style=dashed];\n", p, c, i, e->name);
      continue;
    }
    fprintf(out, "  op%d -> op%d [label=\"E%d %s\\n%s [%lld]\"%s];\n", e->producer, e->consumer, i,
            g->tensors[e->tensor].name, e->map == MLK_MAP_ALL ? "all" : "tile", (long long)e->size,
            e->map == MLK_MAP_ALL ? ", style=bold" : "");
  }
  fprintf(out, "}\n");
}
