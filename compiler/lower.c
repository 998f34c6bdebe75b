/* lower.c: lowers a checked model into its task graph.
 *
 * Each op instance becomes a device function with a task grid (one task = one tile of the
 * output on one SM); each producer/consumer edge through an intermediate tensor becomes an event
 * tensor of counters with index maps (mlk_desc.h):
 *   - a matvec needs its whole input vector, so its input edge is coarsened to one counter
 *     (MLK_MAP_ALL) that every producer task notifies;
 *   - elementwise reads (eltwise operands, a matvec's residual) need only the overlapping
 *     producer tiles: one counter per consumer task (MLK_MAP_TILE), start value = overlap count.
 * Simple fusions happen here: relu/silu of a matvec becomes its epilogue, and `matvec(..) + r`
 * its residual add, so the intermediate never touches memory.
 */
#include <string.h>

#include "mlkc.h"

/* Default output elements per task when the source gives no tile(...) hint. */
#define DEFAULT_MATVEC_TILE 32
#define DEFAULT_ELTWISE_TILE 1024

typedef struct Binding {
  const char *name;
  int tensor;
  struct Binding *next;
} Binding;

typedef struct Lower {
  Arena *a;
  Diag *d;
  Graph *g;
  const Program *p;
  const Model *m;
  Config *cfg;
  Binding *scope;
  int kernel;
  int unsupported; /* constructs this lowering cannot build, reported once */
} Lower;

#define GROW(a, arr, n, cap)                                                                       \
  do {                                                                                             \
    if ((n) == (cap)) {                                                                            \
      int nc = (cap) ? 2 * (cap) : 16;                                                             \
      void *nb = arena_alloc((a), nc * sizeof *(arr));                                             \
      if (n)                                                                                       \
        memcpy(nb, (arr), (n) * sizeof *(arr));                                                    \
      (arr) = nb;                                                                                  \
      (cap) = nc;                                                                                  \
    }                                                                                              \
  } while (0)

static int add_tensor(Lower *L, const char *name, MlkTensorKind kind, const Type *t,
                      const char *from) {
  Graph *g = L->g;
  GROW(L->a, g->tensors, g->ntensors, g->cap_tensors);
  GTensor *gt = &g->tensors[g->ntensors];
  *gt = (GTensor){.name = name, .dtype = t->dtype, .kind = kind, .rank = t->rank, .from = from,
                  .producer = -1, .numel = 1};
  for (int i = 0; i < t->rank; i++) {
    gt->shape[i] = t->shape[i];
    gt->numel *= t->shape[i];
  }
  return g->ntensors++;
}

static int lookup(Lower *L, const char *name) {
  for (Binding *b = L->scope; b; b = b->next)
    if (!strcmp(b->name, name))
      return b->tensor;
  MLKC_BUG("unbound name '%s' after sema", name);
}

static void bind(Lower *L, const char *name, int tensor) {
  Binding *b = arena_alloc(L->a, sizeof *b);
  *b = (Binding){name, tensor, L->scope};
  L->scope = b;
}

/* What the checker accepts but this lowering cannot build yet: a clear error, never a crash. */
static void unsupported(Lower *L, Loc loc, const char *what) {
  if (L->unsupported++)
    return; /* the first one says it; the rest would repeat it */
  diag_error(L->d, loc, "%s cannot be lowered to a megakernel yet (the language accepts it; the "
             "lowering handles matvec, relu, silu, + and * over static f32 vectors)", what);
}

/* A model declaration; tensor -1 for one this lowering cannot represent (already reported). */
static void bind_decl(Lower *L, Binding **decls, const char *name, int tensor) {
  Binding *b = arena_alloc(L->a, sizeof *b);
  *b = (Binding){name, tensor, *decls};
  *decls = b;
}

static int64_t eval_tile(Lower *L, const Expr *e) {
  switch (e->kind) {
  case EXPR_INT: return e->ival;
  case EXPR_NEG: return -eval_tile(L, e->lhs);
  case EXPR_NAME:
    for (DimDecl *dd = L->cfg->dims; dd; dd = dd->next)
      if (!strcmp(dd->name, e->name))
        return dd->resolved;
    MLKC_BUG("unknown dim '%s' after sema", e->name);
  case EXPR_BINARY: {
    int64_t l = eval_tile(L, e->lhs), r = eval_tile(L, e->rhs);
    switch (e->op) {
    case '+': return l + r;
    case '-': return l - r;
    case '*': return l * r;
    default: return r ? l / r : 0;
    }
  }
  case EXPR_MEMBER:
    for (DimDecl *dd = L->cfg->dims; dd; dd = dd->next)
      if (!strcmp(dd->name, e->name))
        return dd->resolved;
    break;
  default:
    break;
  }
  MLKC_BUG("tile expression kind %s after sema", ast_expr_kind_name(e->kind));
}

/* Adds the event for `consumer` reading `tensor`, if an op of this kernel produced it. */
static void add_edge(Lower *L, int consumer, int tensor, MlkEventMap map) {
  Graph *g = L->g;
  int producer = g->tensors[tensor].producer;
  if (producer < 0)
    return; /* a param or input: ready before the launch */
  for (int i = 0; i < g->nevents; i++) {
    MlkEventDesc *e = &g->events[i];
    if (e->producer == producer && e->consumer == consumer && e->tensor == tensor) {
      if (map == MLK_MAP_ALL && e->map != MLK_MAP_ALL) {
        /* the stronger dependency subsumes the per-tile one */
        g->ncounters -= e->size - 1;
        for (int j = i + 1; j < g->nevents; j++)
          g->events[j].base -= e->size - 1;
        e->map = MLK_MAP_ALL;
        e->size = 1;
      }
      return;
    }
  }
  const MlkOpDesc *p = &g->ops[producer].d, *c = &g->ops[consumer].d;
  GROW(L->a, g->events, g->nevents, g->cap_events);
  MlkEventDesc *e = &g->events[g->nevents++];
  *e = (MlkEventDesc){
      .name = arena_printf(L->a, "%s: %s -> %s", g->tensors[tensor].name, p->name, c->name),
      .producer = producer,
      .consumer = consumer,
      .tensor = tensor,
      .map = map,
      .n = g->tensors[tensor].numel,
      .ptile = p->tile,
      .ctile = c->tile,
      .size = map == MLK_MAP_ALL ? 1 : c->ntasks,
      .base = g->ncounters,
  };
  g->ncounters += e->size;
}

static int add_op(Lower *L, const Expr *at, const char *what, MlkOpKind kind, MlkFn fn, int out,
                  int in0, int in1, int in2, int64_t k) {
  Graph *g = L->g;
  GROW(L->a, g->ops, g->nops, g->cap_ops);
  GOp *op = &g->ops[g->nops];
  const char *file = strrchr(L->p->src->path, '/');
  file = file ? file + 1 : L->p->src->path;
  int64_t n = g->tensors[out].numel;
  int64_t tile = kind == MLK_OP_MATVEC ? DEFAULT_MATVEC_TILE : DEFAULT_ELTWISE_TILE;
  if (tile > n)
    tile = n;
  *op = (GOp){.loc = at->loc, .kernel = L->kernel};
  op->d = (MlkOpDesc){
      .name = arena_printf(L->a, "%s@%s:%d", what, file, at->loc.line),
      .kind = kind,
      .fn = fn,
      .out = out,
      .in = {in0, in1, in2},
      .n = n,
      .k = k,
      .tile = tile,
      .ntasks = (n + tile - 1) / tile,
  };
  g->tensors[out].producer = g->nops;
  return g->nops++;
}

static int new_temp(Lower *L, const Expr *e) {
  const char *file = strrchr(L->p->src->path, '/');
  file = file ? file + 1 : L->p->src->path;
  return add_tensor(L, arena_printf(L->a, "tmp@%s:%d:%d", file, e->loc.line, e->loc.col),
                    MLK_TENSOR_TEMP, e->type, NULL);
}

static bool is_call(const Expr *e, const char *name) {
  return e->kind == EXPR_CALL && !strcmp(e->name, name);
}

/* Lowers `e` so that its value ends up in tensor `dest` (-1: a new temporary). Returns the op that
 * writes the result (-1 when `e` is a plain name and dest < 0), and the tensor in *out. */
static int lower_expr(Lower *L, const Expr *e, int dest, int *out);

static int lower_matvec(Lower *L, const Expr *call, MlkFn fn, const Expr *res, int dest,
                        const Expr *at) {
  int x, w, r = -1;
  lower_expr(L, call->args, -1, &x);
  lower_expr(L, call->args->next, -1, &w);
  if (res)
    lower_expr(L, res, -1, &r);
  if (dest < 0)
    dest = new_temp(L, at);
  const char *what = fn == MLK_FN_RELU ? "matvec_relu" : fn == MLK_FN_SILU ? "matvec_silu" : "matvec";
  int op = add_op(L, at, what, MLK_OP_MATVEC, fn, dest, x, w, r, L->g->tensors[w].shape[1]);
  add_edge(L, op, x, MLK_MAP_ALL);
  if (r >= 0)
    add_edge(L, op, r, MLK_MAP_TILE);
  return op;
}

static int lower_eltwise(Lower *L, const Expr *e, MlkFn fn, const Expr *a, const Expr *b,
                         int dest) {
  int ta, tb = -1;
  lower_expr(L, a, -1, &ta);
  if (b)
    lower_expr(L, b, -1, &tb);
  if (dest < 0)
    dest = new_temp(L, e);
  static const char *names[] = {"copy", "relu", "silu", "add", "mul"};
  int op = add_op(L, e, names[fn], MLK_OP_ELTWISE, fn, dest, ta, tb, -1, 0);
  add_edge(L, op, ta, MLK_MAP_TILE);
  if (tb >= 0)
    add_edge(L, op, tb, MLK_MAP_TILE);
  return op;
}

/* Whether this lowering handles `e` (the checker has accepted it); reports the first part it
 * does not handle. */
static bool lowerable(Lower *L, const Expr *e) {
  switch (e->kind) {
  case EXPR_NAME: {
    int t = lookup(L, e->name);
    if (t < 0)
      return false; /* reported at its declaration */
    if (L->g->tensors[t].rank != 1 || L->g->tensors[t].dtype != MLK_F32) {
      unsupported(L, e->loc, arena_printf(L->a, "'%s' (not an f32 vector)", e->name));
      return false;
    }
    return true;
  }
  case EXPR_BINARY:
    return lowerable(L, e->lhs) && lowerable(L, e->rhs);
  case EXPR_CALL:
    if (!e->lhs && (is_call(e, "relu") || is_call(e, "silu")))
      return lowerable(L, e->args);
    if (!e->lhs && is_call(e, "matvec"))
      return lowerable(L, e->args); /* the weight is a param matrix (sema) */
    unsupported(L, e->loc, e->lhs ? arena_printf(L->a, "method '%s'", e->name)
                                  : arena_printf(L->a, "'%s'", e->name));
    return false;
  default:
    unsupported(L, e->loc, arena_printf(L->a, "this %s expression", ast_expr_kind_name(e->kind)));
    return false;
  }
}

static int lower_expr(Lower *L, const Expr *e, int dest, int *out) {
  int op = -1;
  switch (e->kind) {
  case EXPR_NAME: {
    int t = lookup(L, e->name);
    if (dest < 0) {
      *out = t;
      return -1;
    }
    op = lower_eltwise(L, e, MLK_FN_NONE, e, NULL, dest); /* `y = h`: a copy */
    break;
  }
  case EXPR_CALL:
    if (is_call(e, "matvec")) {
      op = lower_matvec(L, e, MLK_FN_NONE, NULL, dest, e);
    } else {
      MlkFn fn = is_call(e, "relu") ? MLK_FN_RELU : MLK_FN_SILU;
      if (is_call(e->args, "matvec"))
        op = lower_matvec(L, e->args, fn, NULL, dest, e);
      else
        op = lower_eltwise(L, e, fn, e->args, NULL, dest);
    }
    break;
  case EXPR_BINARY:
    if (e->op == '+') {
      /* matvec(...) + r, or act(matvec(...)) + r: a fused residual add */
      const Expr *mv = NULL, *res = NULL;
      MlkFn fn = MLK_FN_NONE;
      for (int side = 0; side < 2 && !mv; side++) {
        const Expr *c = side ? e->rhs : e->lhs, *other = side ? e->lhs : e->rhs;
        if (is_call(c, "matvec")) {
          mv = c;
        } else if ((is_call(c, "relu") || is_call(c, "silu")) && is_call(c->args, "matvec")) {
          mv = c->args;
          fn = is_call(c, "relu") ? MLK_FN_RELU : MLK_FN_SILU;
        }
        res = other;
      }
      if (mv) {
        op = lower_matvec(L, mv, fn, res, dest, e);
        break;
      }
    }
    op = lower_eltwise(L, e, e->op == '+' ? MLK_FN_ADD : MLK_FN_MUL, e->lhs, e->rhs, dest);
    break;
  default:
    MLKC_BUG("expression kind %s reached lowering", ast_expr_kind_name(e->kind));
  }
  *out = L->g->ops[op].d.out;
  return op;
}

/* Applies a tile(...) hint to op `op`, recomputing its grid and the events that involve it. */
static void set_tile(Lower *L, int op, int64_t tile, Loc loc) {
  Graph *g = L->g;
  MlkOpDesc *d = &g->ops[op].d;
  if (tile > d->n)
    tile = d->n;
  d->tile = tile;
  d->ntasks = (d->n + tile - 1) / tile;
  if (d->ntasks > MLK_MAX_TASKS_PER_OP)
    diag_error(L->d, loc, "tile(%lld) gives %lld tasks, more than the %d an op may have",
               (long long)tile, (long long)d->ntasks, MLK_MAX_TASKS_PER_OP);
  /* recompute sizes and bases of every event: tiles changed */
  int64_t base = 0;
  for (int i = 0; i < g->nevents; i++) {
    MlkEventDesc *e = &g->events[i];
    e->ptile = g->ops[e->producer].d.tile;
    e->ctile = g->ops[e->consumer].d.tile;
    e->size = e->map == MLK_MAP_ALL ? 1 : g->ops[e->consumer].d.ntasks;
    e->base = base;
    base += e->size;
  }
  g->ncounters = base;
}

Graph *lower_model(Program *p, Model *m, Arena *a, Diag *d) {
  Graph *g = arena_alloc(a, sizeof *g);
  g->prog = p;
  g->model = m;
  g->name = m->name;
  Lower L = {.a = a, .d = d, .g = g, .p = p, .m = m};
  L.cfg = sema_model_config(p, m);
  if (!L.cfg)
    MLKC_BUG("model '%s' without config after sema", m->name);

  Binding *decls = NULL;
  for (TensorDecl *td = m->decls; td; td = td->next) {
    if (td->kind == DECL_CACHE) {
      unsupported(&L, td->loc, arena_printf(a, "cache '%s'", td->name));
      bind_decl(&L, &decls, td->name, -1);
      continue;
    }
    /* the shapes were checked by sema: rebuild the type from the resolved dims */
    Type t = {.dtype = td->type.dtype, .rank = td->type.ndims};
    int i = 0;
    bool dynamic = false;
    for (Expr *e = td->type.dims; e; e = e->next, i++) {
      const DimDecl *dd = NULL;
      if (e->kind == EXPR_NAME)
        for (dd = L.cfg->dims; dd && strcmp(dd->name, e->name); dd = dd->next)
          ;
      if (dd && !dd->value)
        dynamic = true;
      else
        t.shape[i] = eval_tile(&L, e);
    }
    if (dynamic) {
      unsupported(&L, td->type.loc, arena_printf(a, "'%s' with a dynamic dimension", td->name));
      bind_decl(&L, &decls, td->name, -1);
      continue;
    }
    MlkTensorKind kind = td->kind == DECL_PARAM   ? MLK_TENSOR_PARAM
                         : td->kind == DECL_INPUT ? MLK_TENSOR_INPUT
                                                  : MLK_TENSOR_OUTPUT;
    bind_decl(&L, &decls, td->name, add_tensor(&L, td->name, kind, &t, td->from ? td->from->str : NULL));
  }

  int nk = 0;
  for (Megakernel *mk = m->kernels; mk; mk = mk->next)
    nk++;
  g->kernels = arena_alloc(a, nk * sizeof *g->kernels);
  for (Megakernel *mk = m->kernels; mk; mk = mk->next) {
    L.kernel = g->nkernels;
    L.scope = decls;
    if (mk->options)
      unsupported(&L, mk->options->loc, "a megakernel option");
    GKernel *k = &g->kernels[g->nkernels++];
    k->name = mk->name;
    k->entry = arena_printf(a, "mlk_%s_%s", m->name, mk->name);
    k->first_op = g->nops;
    /* outputs written by an earlier megakernel are not produced in this one */
    for (int t = 0; t < g->ntensors; t++)
      g->tensors[t].producer = -1;
    for (Stmt *st = mk->body; st; st = st->next) {
      if (st->kind != STMT_ASSIGN || st->ntargets != 1) {
        unsupported(&L, st->loc,
                    st->kind == STMT_FOR      ? "a 'for' loop"
                    : st->kind == STMT_EXPR   ? "a call statement"
                    : st->kind == STMT_RETURN ? "'return'"
                                              : "a tuple assignment");
        continue;
      }
      const Clause *tile = NULL;
      bool ok = true;
      for (const Clause *c = st->clauses; c; c = c->next) {
        if (c->kind != CLAUSE_TILE) {
          unsupported(&L, c->loc, "an explicit wait/notify clause");
          ok = false;
        } else {
          tile = c;
        }
      }
      if (!ok || !lowerable(&L, st->value))
        continue;
      const char *target = st->targets->str;
      int dest = -1;
      bool skipped = false;
      for (Binding *b = decls; b && dest < 0 && !skipped; b = b->next)
        if (!strcmp(b->name, target)) {
          dest = b->tensor; /* an output (sema rejected params and inputs) */
          skipped = dest < 0;
        }
      if (skipped)
        continue;
      if (dest >= 0 && (g->tensors[dest].rank != 1 || g->tensors[dest].dtype != MLK_F32)) {
        unsupported(&L, st->loc, arena_printf(a, "output '%s' (not an f32 vector)", target));
        continue;
      }
      int out;
      int op = lower_expr(&L, st->value, dest, &out);
      if (op < 0) {
        /* `h = x`: an alias, no op */
        bind(&L, target, out);
        continue;
      }
      if (dest < 0) {
        g->tensors[out].name = target;
        bind(&L, target, out);
      }
      if (tile)
        set_tile(&L, op, eval_tile(&L, tile->args), tile->loc);
    }
    k->nops = g->nops - k->first_op;
    if (k->nops > MLK_MAX_OPS_PER_KERNEL)
      diag_error(d, mk->loc, "megakernel '%s' has %d ops, more than the %d supported", mk->name,
                 k->nops, MLK_MAX_OPS_PER_KERNEL);
    if (k->nops == 0 && !L.unsupported)
      diag_error(d, mk->loc, "megakernel '%s' computes nothing", mk->name);
  }
  /* event names were built with the final op names; refresh tiles after all hints */
  for (int i = 0; i < g->nevents; i++) {
    MlkEventDesc *e = &g->events[i];
    e->ptile = g->ops[e->producer].d.tile;
    e->ctile = g->ops[e->consumer].d.tile;
  }
  return d->nerrors ? NULL : g;
}

/* ---------------------------------------------------------------- dumps */

static const char *kind_names[] = {"param", "input", "output", "temp"};
static const char *fn_names[] = {"none", "relu", "silu", "add", "mul"};

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

void graph_dump(FILE *out, const Graph *g) {
  fprintf(out, "{\n  \"model\": ");
  json_str(out, g->name);
  fprintf(out, ",\n  \"tensors\": [\n");
  for (int i = 0; i < g->ntensors; i++) {
    const GTensor *t = &g->tensors[i];
    fprintf(out, "    {\"id\": %d, \"name\": ", i);
    json_str(out, t->name);
    fprintf(out, ", \"kind\": \"%s\", \"dtype\": \"%s\", \"shape\": [", kind_names[t->kind],
            ast_dtype_name(t->dtype));
    for (int j = 0; j < t->rank; j++)
      fprintf(out, "%s%lld", j ? ", " : "", (long long)t->shape[j]);
    fprintf(out, "]}%s\n", i + 1 < g->ntensors ? "," : "");
  }
  fprintf(out, "  ],\n  \"kernels\": [\n");
  for (int k = 0; k < g->nkernels; k++) {
    const GKernel *gk = &g->kernels[k];
    fprintf(out, "    {\"name\": ");
    json_str(out, gk->name);
    fprintf(out, ", \"entry\": ");
    json_str(out, gk->entry);
    fprintf(out, ", \"ops\": [\n");
    for (int i = gk->first_op; i < gk->first_op + gk->nops; i++) {
      const MlkOpDesc *o = &g->ops[i].d;
      fprintf(out, "      {\"id\": %d, \"name\": ", i);
      json_str(out, o->name);
      fprintf(out,
              ", \"kind\": \"%s\", \"fn\": \"%s\", \"out\": %d, \"in\": [%d, %d, %d], \"n\": %lld, "
              "\"k\": %lld, \"tile\": %lld, \"tasks\": %lld}%s\n",
              o->kind == MLK_OP_MATVEC ? "matvec" : "eltwise", fn_names[o->fn], o->out, o->in[0],
              o->in[1], o->in[2], (long long)o->n, (long long)o->k, (long long)o->tile,
              (long long)o->ntasks, i + 1 < gk->first_op + gk->nops ? "," : "");
    }
    fprintf(out, "    ]}%s\n", k + 1 < g->nkernels ? "," : "");
  }
  fprintf(out, "  ],\n  \"events\": [\n");
  for (int i = 0; i < g->nevents; i++) {
    const MlkEventDesc *e = &g->events[i];
    fprintf(out, "    {\"id\": %d, \"name\": ", i);
    json_str(out, e->name);
    fprintf(out,
            ", \"producer\": %d, \"consumer\": %d, \"tensor\": %d, \"map\": \"%s\", \"n\": %lld, "
            "\"ptile\": %lld, \"ctile\": %lld, \"size\": %lld, \"base\": %lld}%s\n",
            e->producer, e->consumer, e->tensor, e->map == MLK_MAP_ALL ? "all" : "tile",
            (long long)e->n, (long long)e->ptile, (long long)e->ctile, (long long)e->size,
            (long long)e->base, i + 1 < g->nevents ? "," : "");
  }
  fprintf(out, "  ],\n  \"counters\": %lld\n}\n", (long long)g->ncounters);
}

void graph_dump_events(FILE *out, const Graph *g) {
  fprintf(out, "# model %s: %d event tensors, %lld counters\n", g->name, g->nevents,
          (long long)g->ncounters);
  for (int i = 0; i < g->nevents; i++) {
    const MlkEventDesc *e = &g->events[i];
    const MlkOpDesc *p = &g->ops[e->producer].d, *c = &g->ops[e->consumer].d;
    fprintf(out, "E%d %s\n", i, e->name);
    fprintf(out, "  shape [%lld]  counters %lld..%lld  tensor %s (%lld elements)\n",
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
