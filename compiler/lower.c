/* lower.c: lowers a checked model into its task graph.
 *
 * The megakernel bodies are executed symbolically: layers are inlined with their arguments bound,
 * loops unrolled with concrete loop variables, and each builtin operation becomes an op (a device
 * function with a task grid over its output columns; every task loops over the run's batch rows)
 * writing a new tensor. Values that can still be fused stay *pending* until a consumer decides:
 *   - rmsnorm(x, w) feeding a matvec becomes the matvec's input normalization;
 *   - a matvec followed by relu/silu takes it as its epilogue, and `matvec(..) + r` as a residual;
 *   - split(matvec(x, W), n1, n2, ...) becomes matvecs over row slices of W;
 *   - allreduce over a mesh axis of size 1 is the identity.
 * A pending value consumed in any other way is materialized once (an op of its own).
 *
 * Every read of a tensor produced earlier in the same megakernel becomes an event tensor
 * (mlk_desc.h): MLK_MAP_ALL when the consumer needs every column (a matvec's input, rmsnorm,
 * argmax), MLK_MAP_TILE when it reads only the columns of its own tile (elementwise operands, a
 * residual, rope, the kv heads of an append or of attention).
 */
#include <string.h>

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

/* The default chunks of a row's positions for an attention over `kv_heads` kv heads in tasks of
 * `kvh`: MLKC_ATTN_SPLIT_TARGET_TASKS / (kv head tasks), within [1, MLK_ATTN_MAX_SPLIT]; 1 (no
 * split, no reduction op) when the kv heads alone make enough tasks. A task per kv head alone
 * leaves most SMs idle (Llama 3.2 1B: 8 kv heads, 8 of 132 SMs); 128 gives it 16 chunks. */
int64_t lower_default_attn_split(int64_t kv_heads, int64_t kvh) {
  int64_t tasks = (kv_heads + kvh - 1) / kvh;
  int64_t s = MLKC_ATTN_SPLIT_TARGET_TASKS / tasks;
  return s < 2 ? 1 : s > MLK_ATTN_MAX_SPLIT ? MLK_ATTN_MAX_SPLIT : s;
}

int64_t graph_row_elems(const GTensor *t) {
  return t->batched && t->shape[0] ? t->numel / t->shape[0] : t->numel;
}

/* ---------------------------------------------------------------- values */

typedef enum LKind { L_NONE, L_TENSOR, L_INT, L_FLOAT, L_DTYPE, L_CACHE, L_MESH, L_TUPLE, L_PENDING } LKind;

typedef struct Pending Pending;
typedef struct LVal LVal;

/* A tensor operand: tensor t at element offset `off`, with the shape of the view (a param slice
 * like wqkv[l] is tensor wqkv at offset l * rows * cols). */
typedef struct TRef {
  int t;
  int64_t off;
  int rank;
  int64_t shape[MLK_MAX_RANK];
} TRef;

struct LVal {
  LKind kind;
  TRef tr;          /* L_TENSOR */
  int64_t i;        /* L_INT */
  double f;         /* L_FLOAT */
  int cache;        /* L_CACHE: index into Graph.caches */
  int layer;        /* L_CACHE: kv[l], or -1 */
  int64_t mesh;     /* L_MESH: the axis size */
  LVal *items;      /* L_TUPLE */
  int nitems;
  Pending *p;       /* L_PENDING */
};

typedef enum PKind { P_NORM, P_MATVEC } PKind;

/* A value not yet computed, so that its consumer can fuse it. */
struct Pending {
  PKind kind;
  const Expr *at;    /* for op names and errors */
  const char *ctx;   /* the loop/layer context of the op name */
  TRef x;            /* the input activation */
  TRef norm;         /* rmsnorm weight (t = -1: none) */
  float eps;
  TRef w;            /* P_MATVEC: the weight view [n, k] */
  MlkFn fn;          /* P_MATVEC: activation */
  int64_t tile;      /* a tile(...) hint, 0: default */
  const char *var;   /* the variable it was assigned to, for the tensor's name, or NULL */
  int done;          /* materialized into tensor `done - 1` (0: not yet) */
};

typedef struct Binding {
  const char *name;
  LVal v;
  struct Binding *next;
} Binding;

typedef struct Lower {
  Arena *a;
  Diag *d;
  Graph *g;
  const Program *p;
  const Model *m;
  Config *cfg;
  int kernel;
  int unsupported;    /* constructs this lowering cannot build, reported once */
  char ctx[128];      /* "[l=3]": the loop variables in scope, appended to op names */
  Binding *decls;     /* the model's declarations */
  int *last_append;   /* per cache and layer: the op that appended in this kernel, -1 */
  LVal ret;           /* the value of `return` in the layer being inlined */
  int depth;
  int64_t attn_split; /* mlkc --attn-split=N, 0: lower_default_attn_split */
  int64_t attn_min_chunk; /* MlkOpDesc.min_chunk of split attentions */
  const Expr *att_at; /* the attention call of the statement being lowered that has hints */
  int64_t att_head, att_split; /* its tile(head = h, split = s), 0: not given */
} Lower;

static const LVal LNONE = {.kind = L_NONE};

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

/* What the checker accepts but this lowering cannot build yet: a clear error, never a crash. */
static void unsupported(Lower *L, Loc loc, const char *what) {
  if (L->unsupported++)
    return; /* the first one says it; the rest would repeat it */
  diag_error(L->d, loc, "%s cannot be lowered to a megakernel yet", what);
}

static const char *basename_of(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

static const char *loc_file(Lower *L, Loc loc) {
  return basename_of(loc.src ? loc.src->path : L->p->src->path);
}

/* ---------------------------------------------------------------- tensors and ops */

static int add_tensor(Lower *L, const char *name, MlkTensorKind kind, MlkDType dt, int rank,
                      const int64_t *shape, int batched, const char *from) {
  Graph *g = L->g;
  GROW(L->a, g->tensors, g->ntensors, g->cap_tensors);
  GTensor *gt = &g->tensors[g->ntensors];
  *gt = (GTensor){.name = name, .dtype = dt, .kind = kind, .rank = rank, .from = from,
                  .batched = batched, .producer = -1, .numel = 1};
  for (int i = 0; i < rank; i++) {
    gt->shape[i] = shape[i];
    gt->numel *= shape[i];
  }
  return g->ntensors++;
}

static TRef whole(Lower *L, int t) {
  const GTensor *gt = &L->g->tensors[t];
  TRef r = {.t = t, .rank = gt->rank};
  memcpy(r.shape, gt->shape, sizeof r.shape);
  return r;
}

static int64_t cols_of(Lower *L, int t) { return graph_row_elems(&L->g->tensors[t]); }

/* A new activation: f32 (or i32) [batch?, cols]. */
static int new_temp(Lower *L, const char *name, MlkDType dt, int batched, int64_t cols) {
  int64_t shape[2];
  int rank = 0;
  if (batched)
    shape[rank++] = L->g->batch->hi_v;
  shape[rank++] = cols;
  return add_tensor(L, name, MLK_TENSOR_TEMP, dt, rank, shape, batched, NULL);
}

static const char *op_name(Lower *L, const char *what, const Expr *at, const char *ctx) {
  return arena_printf(L->a, "%s@%s:%d%s", what, loc_file(L, at->loc), at->loc.line, ctx ? ctx : "");
}

/* Adds the event for `consumer` reading columns of `tensor` written by `producer` (an op of this
 * kernel). TILE maps read the columns of the consumer's own tile, or of `ctile` when the read
 * granularity differs from the output tile (attention reading one kv head of the cache). */
static void add_event(Lower *L, int producer, int consumer, int tensor, MlkEventMap map, int64_t n,
                      int64_t ctile) {
  Graph *g = L->g;
  if (producer < 0 || g->ops[producer].kernel != L->kernel)
    return; /* ready before the launch */
  for (int i = 0; i < g->nevents; i++) {
    MlkEventDesc *e = &g->events[i];
    if (e->producer == producer && e->consumer == consumer && e->tensor == tensor) {
      if (map == MLK_MAP_ALL && e->map != MLK_MAP_ALL) {
        e->map = MLK_MAP_ALL;
        e->size = 1;
        e->ctile = g->ops[consumer].d.tile;
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
      .n = n,
      .ptile = p->tile,
      .ctile = map == MLK_MAP_ALL ? c->tile : ctile,
      .size = map == MLK_MAP_ALL ? 1 : (n + ctile - 1) / ctile,
  };
}

/* The event for a read of a whole activation (or of the consumer's tile of it). */
static void depend(Lower *L, int consumer, TRef r, MlkEventMap map) {
  if (r.t < 0)
    return;
  const GTensor *t = &L->g->tensors[r.t];
  const MlkOpDesc *c = &L->g->ops[consumer].d;
  add_event(L, t->producer, consumer, r.t, map, graph_row_elems(t), c->tile);
}

static MlkArg arg(TRef r) { return (MlkArg){.tensor = r.t, .offset = r.t < 0 ? 0 : r.off}; }

static const TRef NOREF = {.t = -1};

/* Appends an op writing `out` (columns n); the grid comes from `tile` (clamped to n). */
static int add_op(Lower *L, const char *name, Loc loc, MlkOpKind kind, MlkFn fn, int out,
                  int64_t n, int64_t tile, int batched) {
  Graph *g = L->g;
  GROW(L->a, g->ops, g->nops, g->cap_ops);
  GOp *op = &g->ops[g->nops];
  if (tile <= 0 || tile > n)
    tile = n;
  *op = (GOp){.loc = loc, .kernel = L->kernel};
  op->d = (MlkOpDesc){
      .name = name,
      .kind = kind,
      .fn = fn,
      .out = {.tensor = out},
      .in = {{-1, 0}, {-1, 0}, {-1, 0}, {-1, 0}},
      .n = n,
      .tile = tile,
      .ntasks = (n + tile - 1) / tile,
      .batched = batched,
      .cache = -1,
      .layer = -1,
  };
  if (out >= 0 && g->tensors[out].kind != MLK_TENSOR_CACHE)
    g->tensors[out].producer = g->nops;
  return g->nops++;
}

/* ---------------------------------------------------------------- materializing values */

static int materialize_to(Lower *L, const LVal *v, int dest, int64_t tile, TRef res);

/* The tensor holding value v (an op is emitted for a pending value, once). */
static TRef as_tensor(Lower *L, const LVal *v, Loc at) {
  if (v->kind == L_TENSOR)
    return v->tr;
  if (v->kind == L_PENDING) {
    if (!v->p->done)
      v->p->done = materialize_to(L, v, -1, v->p->tile, NOREF) + 1;
    return whole(L, v->p->done - 1);
  }
  unsupported(L, at, "this value (not a tensor)");
  return NOREF;
}

static bool is_batched(Lower *L, TRef r) { return r.t >= 0 && L->g->tensors[r.t].batched; }

/* Emits the op of a pending value into `dest` (-1: a new temporary), with a residual `res`
 * (matvec only). Returns the tensor written. */
static int materialize_to(Lower *L, const LVal *v, int dest, int64_t tile, TRef res) {
  Pending *p = v->p;
  int batched = is_batched(L, p->x);
  if (p->kind == P_NORM) {
    int64_t n = cols_of(L, p->x.t);
    if (dest < 0)
      dest = new_temp(L, p->var ? p->var : arena_printf(L->a, "rmsnorm@%s:%d%s", loc_file(L, p->at->loc),
                                                        p->at->loc.line, p->ctx),
                      MLK_F32, batched, n);
    int op = add_op(L, op_name(L, "rmsnorm", p->at, p->ctx), p->at->loc, MLK_OP_RMSNORM,
                    MLK_FN_NONE, dest, n, n, batched);
    MlkOpDesc *d = &L->g->ops[op].d;
    d->in[0] = arg(p->x);
    d->in[1] = arg(p->norm);
    d->eps = p->eps;
    depend(L, op, p->x, MLK_MAP_ALL);
    return dest;
  }
  int64_t n = p->w.shape[0], k = p->w.shape[1];
  if (dest < 0)
    dest = new_temp(L, p->var ? p->var : arena_printf(L->a, "matvec@%s:%d%s", loc_file(L, p->at->loc),
                                                      p->at->loc.line, p->ctx),
                    MLK_F32, batched, n);
  const char *what = p->fn == MLK_FN_RELU   ? "matvec_relu"
                     : p->fn == MLK_FN_SILU ? "matvec_silu"
                     : p->fn == MLK_FN_MUL  ? "matvec_mul"
                                            : "matvec";
  int op = add_op(L, op_name(L, what, p->at, p->ctx), p->at->loc, MLK_OP_MATVEC, p->fn, dest, n,
                  tile ? tile : DEFAULT_MATVEC_TILE(n), batched);
  MlkOpDesc *d = &L->g->ops[op].d;
  d->k = k;
  d->in[0] = arg(p->x);
  d->in[1] = arg(p->w);
  d->in[2] = arg(res);
  d->in[3] = arg(p->norm);
  d->eps = p->eps;
  depend(L, op, p->x, MLK_MAP_ALL);
  depend(L, op, res, MLK_MAP_TILE);
  return dest;
}

/* ---------------------------------------------------------------- expressions */

static LVal lower_expr(Lower *L, Binding *scope, const Expr *e);
static void run_stmts(Lower *L, Binding **scope, const Stmt *st);

static Binding *lookup(Binding *scope, const char *name) {
  for (Binding *b = scope; b; b = b->next)
    if (!strcmp(b->name, name))
      return b;
  return NULL;
}

static void bind(Lower *L, Binding **scope, const char *name, LVal v) {
  Binding *b = arena_alloc(L->a, sizeof *b);
  *b = (Binding){name, v, *scope};
  *scope = b;
}

static LVal lint(int64_t v) { return (LVal){.kind = L_INT, .i = v}; }

static LVal dim_value(Lower *L, const char *name, bool *found) {
  *found = true;
  for (DimDecl *dd = L->cfg->dims; dd; dd = dd->next)
    if (!strcmp(dd->name, name)) {
      if (!dd->value) {
        LVal v = LNONE;
        return v; /* a dynamic dim as a value: not lowered */
      }
      return lint(dd->resolved);
    }
  for (MeshDecl *m = L->cfg->meshes; m; m = m->next)
    if (!strcmp(m->name, name))
      return (LVal){.kind = L_MESH, .mesh = m->resolved};
  *found = false;
  return LNONE;
}

static int64_t int_of(Lower *L, const LVal *v, Loc at) {
  if (v->kind == L_INT)
    return v->i;
  unsupported(L, at, "this integer");
  return 0;
}

static double float_of(const LVal *v) { return v->kind == L_FLOAT ? v->f : (double)v->i; }

/* A keyword argument's value, or NULL. */
static const Expr *kwarg(const Expr *call, const char *name) {
  for (const Expr *x = call->args; x; x = x->next)
    if (x->kind == EXPR_KWARG && !strcmp(x->name, name))
      return x->lhs;
  return NULL;
}

static const Expr *posarg(const Expr *call, int i) {
  for (const Expr *x = call->args; x; x = x->next)
    if (x->kind != EXPR_KWARG && i-- == 0)
      return x;
  return NULL;
}

/* Keyword argument `name` of a call to operation `op`, or its default from the table of
 * operations (compiler/builtins.def), which sema checked the call against. */
static double kw_value(Lower *L, Binding *scope, const Expr *call, IrOp op, const char *name) {
  const Builtin *b = builtin_of(op);
  int k = builtin_kw_index(b, name);
  if (k < 0)
    MLKC_BUG("'%s' has no keyword '%s'", b->name, name);
  const Expr *e = kwarg(call, name);
  if (!e)
    return b->kws[k].def;
  LVal v = lower_expr(L, scope, e);
  return float_of(&v);
}

static double kw_float(Lower *L, Binding *scope, const Expr *call, IrOp op, const char *name) {
  return kw_value(L, scope, call, op, name);
}

static int64_t kw_int(Lower *L, Binding *scope, const Expr *call, IrOp op, const char *name) {
  return (int64_t)kw_value(L, scope, call, op, name);
}

/* An activation operand must be a whole f32/i32 tensor of [cols] or [batch, cols]. */
static bool activation(Lower *L, TRef r, Loc at) {
  if (r.t < 0)
    return false;
  const GTensor *t = &L->g->tensors[r.t];
  if (r.off != 0 || t->kind == MLK_TENSOR_PARAM || t->rank > 2 || (t->rank == 2 && !t->batched)) {
    unsupported(L, at, arena_printf(L->a, "'%s' as an activation (a param, a slice, or a "
                                    "tensor of more than [batch, columns])", t->name));
    return false;
  }
  return true;
}

static LVal pending_matvec(Lower *L, const Expr *at, LVal x, TRef w) {
  Pending *p = arena_alloc(L->a, sizeof *p);
  p->kind = P_MATVEC;
  p->at = at;
  p->ctx = arena_strndup(L->a, L->ctx, strlen(L->ctx));
  p->norm = NOREF;
  if (x.kind == L_PENDING && x.p->kind == P_NORM) {
    p->x = x.p->x;       /* fused rmsnorm: the matvec normalizes each input row itself */
    p->norm = x.p->norm;
    p->eps = x.p->eps;
  } else {
    p->x = as_tensor(L, &x, at->loc);
    if (!activation(L, p->x, at->loc))
      return LNONE;
  }
  p->w = w;
  return (LVal){.kind = L_PENDING, .p = p};
}

static LVal with_act(Lower *L, const LVal *v, MlkFn fn) {
  Pending *p = arena_alloc(L->a, sizeof *p);
  *p = *v->p;
  p->fn = fn;
  p->done = 0;
  p->var = NULL;
  return (LVal){.kind = L_PENDING, .p = p};
}

static LVal tensor_val(TRef r) { return (LVal){.kind = L_TENSOR, .tr = r}; }

static LVal eltwise(Lower *L, const Expr *at, MlkFn fn, TRef a, TRef c) {
  static const char *names[] = {"copy", "relu", "silu", "add", "mul"};
  if (!activation(L, a, at->loc) || (c.t >= 0 && !activation(L, c, at->loc)))
    return LNONE;
  int batched = is_batched(L, a);
  int64_t n = cols_of(L, a.t);
  if (c.t >= 0 && (cols_of(L, c.t) != n || is_batched(L, c) != batched)) {
    unsupported(L, at->loc, "an elementwise operation with broadcasting");
    return LNONE;
  }
  int out = new_temp(L, arena_printf(L->a, "%s@%s:%d%s", names[fn], loc_file(L, at->loc),
                                     at->loc.line, L->ctx),
                     MLK_F32, batched, n);
  int op = add_op(L, op_name(L, names[fn], at, L->ctx), at->loc, MLK_OP_ELTWISE, fn, out, n,
                  DEFAULT_ELTWISE_TILE(n), batched);
  L->g->ops[op].d.in[0] = arg(a);
  L->g->ops[op].d.in[1] = arg(c);
  depend(L, op, a, MLK_MAP_TILE);
  depend(L, op, c, MLK_MAP_TILE);
  return tensor_val(whole(L, out));
}

static LVal lower_call(Lower *L, Binding *scope, const Expr *e);

static LVal lower_index(Lower *L, Binding *scope, const Expr *e) {
  LVal base = lower_expr(L, scope, e->lhs);
  if (base.kind == L_CACHE) {
    LVal l = lower_expr(L, scope, e->args);
    base.layer = (int)int_of(L, &l, e->args->loc);
    return base;
  }
  if (base.kind != L_TENSOR) {
    if (base.kind != L_NONE)
      unsupported(L, e->loc, "indexing this value");
    return LNONE;
  }
  TRef r = base.tr;
  const GTensor *t = &L->g->tensors[r.t];
  if (e->nargs == 1 && e->args->kind != EXPR_SLICE) {
    LVal iv = lower_expr(L, scope, e->args);
    if (iv.kind == L_TENSOR) {
      /* a gather of rows: table[ids] */
      TRef ids = iv.tr;
      if (t->kind != MLK_TENSOR_PARAM || r.rank != 2 || !activation(L, ids, e->loc))
        return unsupported(L, e->loc, "this gather"), LNONE;
      int batched = is_batched(L, ids);
      int64_t n = r.shape[1];
      int out = new_temp(L, arena_printf(L->a, "gather@%s:%d%s", loc_file(L, e->loc), e->loc.line,
                                         L->ctx),
                         MLK_F32, batched, n);
      int op = add_op(L, op_name(L, "gather", e, L->ctx), e->loc, MLK_OP_GATHER, MLK_FN_NONE, out,
                      n, DEFAULT_ELTWISE_TILE(n), batched);
      L->g->ops[op].d.in[0] = arg(ids);
      L->g->ops[op].d.in[1] = arg(r);
      depend(L, op, ids, MLK_MAP_ALL);
      return tensor_val(whole(L, out));
    }
  }
  /* a view of a param: integer indexes and slices of the leading dims */
  if (t->kind != MLK_TENSOR_PARAM) {
    unsupported(L, e->loc, "indexing an activation");
    return LNONE;
  }
  int i = 0;
  for (const Expr *ie = e->args; ie; ie = ie->next, i++) {
    int64_t stride = 1;
    for (int j = i + 1; j < r.rank; j++)
      stride *= r.shape[j];
    if (ie->kind == EXPR_SLICE) {
      int64_t lo = 0, hi = r.shape[i];
      if (ie->lhs) {
        LVal v = lower_expr(L, scope, ie->lhs);
        lo = int_of(L, &v, ie->loc);
      }
      if (ie->rhs) {
        LVal v = lower_expr(L, scope, ie->rhs);
        hi = int_of(L, &v, ie->loc);
      }
      if (i != 0 && (lo != 0 || hi != r.shape[i])) {
        unsupported(L, ie->loc, "a slice of an inner dimension of a param");
        return LNONE;
      }
      r.off += lo * stride;
      r.shape[i] = hi - lo;
      continue;
    }
    if (i != 0) {
      unsupported(L, ie->loc, "an index of an inner dimension of a param");
      return LNONE;
    }
    LVal v = lower_expr(L, scope, ie);
    r.off += int_of(L, &v, ie->loc) * stride;
    memmove(r.shape, r.shape + 1, (r.rank - 1) * sizeof r.shape[0]);
    r.rank--;
    i--;
  }
  return tensor_val(r);
}

static LVal lower_expr(Lower *L, Binding *scope, const Expr *e) {
  switch (e->kind) {
  case EXPR_INT:
    return lint(e->ival);
  case EXPR_FLOAT:
    return (LVal){.kind = L_FLOAT, .f = e->fval};
  case EXPR_DTYPE:
    return (LVal){.kind = L_DTYPE};
  case EXPR_NAME: {
    Binding *b = lookup(scope, e->name);
    if (b)
      return b->v;
    bool found;
    LVal v = dim_value(L, e->name, &found);
    if (!found)
      MLKC_BUG("unbound name '%s' after sema", e->name);
    if (v.kind == L_NONE)
      unsupported(L, e->loc, arena_printf(L->a, "the dynamic dim '%s' as a value", e->name));
    return v;
  }
  case EXPR_MEMBER: {
    bool found;
    LVal v = dim_value(L, e->name, &found);
    if (!found || v.kind == L_NONE)
      unsupported(L, e->loc, "this member");
    return v;
  }
  case EXPR_NEG: {
    LVal v = lower_expr(L, scope, e->lhs);
    if (v.kind == L_INT)
      return lint(-v.i);
    if (v.kind == L_FLOAT)
      return (LVal){.kind = L_FLOAT, .f = -v.f};
    return LNONE;
  }
  case EXPR_BINARY: {
    LVal l = lower_expr(L, scope, e->lhs), r = lower_expr(L, scope, e->rhs);
    if (l.kind == L_INT && r.kind == L_INT) {
      switch (e->op) {
      case '+': return lint(l.i + r.i);
      case '-': return lint(l.i - r.i);
      case '*': return lint(l.i * r.i);
      default: return lint(r.i ? l.i / r.i : 0);
      }
    }
    if ((l.kind == L_INT || l.kind == L_FLOAT) && (r.kind == L_INT || r.kind == L_FLOAT)) {
      double a = float_of(&l), b = float_of(&r);
      return (LVal){.kind = L_FLOAT,
                    .f = e->op == '+' ? a + b : e->op == '-' ? a - b : e->op == '*' ? a * b : a / b};
    }
    if (l.kind == L_NONE || r.kind == L_NONE)
      return LNONE;
    if (e->op == '+') {
      /* a pending matvec plus a tensor: its residual add */
      for (int side = 0; side < 2; side++) {
        LVal *mv = side ? &r : &l, *other = side ? &l : &r;
        if (mv->kind == L_PENDING && mv->p->kind == P_MATVEC) {
          TRef res = as_tensor(L, other, e->loc);
          if (!activation(L, res, e->loc))
            return LNONE;
          Pending *p = arena_alloc(L->a, sizeof *p);
          *p = *mv->p;
          p->done = 0;
          p->var = NULL;
          LVal fused = {.kind = L_PENDING, .p = p};
          int out = materialize_to(L, &fused, -1, p->tile, res);
          return tensor_val(whole(L, out));
        }
      }
    }
    if (e->op == '*') {
      /* a pending matvec without activation times a tensor: its gated-product epilogue (the
       * right-hand matvec first, so that silu(matvec(..)) * matvec(..) computes the gate first) */
      for (int side = 1; side >= 0; side--) {
        LVal *mv = side ? &r : &l, *other = side ? &l : &r;
        if (mv->kind == L_PENDING && mv->p->kind == P_MATVEC && mv->p->fn == MLK_FN_NONE) {
          TRef gate = as_tensor(L, other, e->loc);
          if (gate.t < 0 || !activation(L, gate, e->loc))
            return LNONE;
          if (cols_of(L, gate.t) != mv->p->w.shape[0] || is_batched(L, gate) != is_batched(L, mv->p->x))
            break; /* broadcasting: the elementwise op reports it */
          Pending *p = arena_alloc(L->a, sizeof *p);
          *p = *mv->p;
          p->fn = MLK_FN_MUL;
          p->done = 0;
          p->var = NULL;
          LVal fused = {.kind = L_PENDING, .p = p};
          int out = materialize_to(L, &fused, -1, p->tile, gate);
          return tensor_val(whole(L, out));
        }
      }
    }
    TRef a = as_tensor(L, &l, e->lhs->loc), c = as_tensor(L, &r, e->rhs->loc);
    if (a.t < 0 || c.t < 0)
      return LNONE;
    return eltwise(L, e, e->op == '+' ? MLK_FN_ADD : MLK_FN_MUL, a, c);
  }
  case EXPR_CALL:
    return lower_call(L, scope, e);
  case EXPR_INDEX:
    return lower_index(L, scope, e);
  default:
    MLKC_BUG("expression kind %s reached lowering", ast_expr_kind_name(e->kind));
  }
}

/* ---------------------------------------------------------------- calls */

static Layer *find_layer(Lower *L, const char *name) {
  for (Layer *l = L->p->layers; l; l = l->next)
    if (!strcmp(l->name, name))
      return l;
  return NULL;
}

static LVal inline_layer(Lower *L, Binding *scope, const Expr *call, const Layer *l) {
  /* the layer sees its arguments, and the model's config through dim_value */
  Binding *ls = NULL;
  int i = 0;
  for (const LayerParam *lp = l->params; lp; lp = lp->next, i++) {
    const Expr *ae = posarg(call, i);
    if (!ae)
      ae = kwarg(call, lp->name);
    LVal v = ae ? lower_expr(L, scope, ae) : lower_expr(L, ls, lp->def);
    /* annotation shape variables are visible as integers in the body */
    if (lp->type && (v.kind == L_TENSOR || v.kind == L_PENDING)) {
      int d = 0;
      for (const Expr *de = lp->type->dims; de; de = de->next, d++)
        if (de->kind == EXPR_NAME && !lookup(ls, de->name)) {
          TRef r = v.kind == L_TENSOR ? v.tr : NOREF;
          if (r.t >= 0 && !(L->g->tensors[r.t].batched && d == 0))
            bind(L, &ls, de->name, lint(r.shape[d]));
        }
    }
    bind(L, &ls, lp->name, v);
  }
  LVal saved = L->ret;
  L->ret = LNONE;
  if (++L->depth > 64)
    MLKC_BUG("layer nesting after sema");
  run_stmts(L, &ls, l->body);
  L->depth--;
  LVal r = L->ret;
  L->ret = saved;
  return r;
}

static LVal lower_call(Lower *L, Binding *scope, const Expr *e) {
  if (e->lhs) {
    /* kv.append(l, k, v, pos) */
    LVal c = lower_expr(L, scope, e->lhs);
    if (c.kind != L_CACHE || strcmp(e->name, "append"))
      return unsupported(L, e->loc, "this method"), LNONE;
    LVal lv = lower_expr(L, scope, posarg(e, 0));
    LVal kv = lower_expr(L, scope, posarg(e, 1)), vv = lower_expr(L, scope, posarg(e, 2));
    LVal pv = lower_expr(L, scope, posarg(e, 3));
    int layer = (int)int_of(L, &lv, e->loc);
    TRef k = as_tensor(L, &kv, e->loc), v = as_tensor(L, &vv, e->loc), pos = as_tensor(L, &pv, e->loc);
    if (!activation(L, k, e->loc) || !activation(L, v, e->loc) || !activation(L, pos, e->loc))
      return LNONE;
    const MlkCacheDesc *cd = &L->g->caches[c.cache];
    int64_t n = cd->kv_heads * cd->head_dim;
    int op = add_op(L, op_name(L, "kv_append", e, L->ctx), e->loc, MLK_OP_KV_APPEND, MLK_FN_NONE,
                    cd->tensor, n, cd->head_dim, is_batched(L, k));
    MlkOpDesc *d = &L->g->ops[op].d;
    d->in[0] = arg(k);
    d->in[1] = arg(v);
    d->in[2] = arg(pos);
    d->in[3] = (MlkArg){.tensor = cd->pages_tensor};
    d->cache = c.cache;
    d->layer = layer;
    d->kv_heads = cd->kv_heads;
    d->head_dim = cd->head_dim;
    depend(L, op, k, MLK_MAP_TILE);
    depend(L, op, v, MLK_MAP_TILE);
    depend(L, op, pos, MLK_MAP_ALL);
    L->last_append[c.cache * 4096 + layer] = op;
    return LNONE;
  }
  const char *n = e->name;
  Layer *layer = find_layer(L, n);
  if (layer)
    return inline_layer(L, scope, e, layer);
  if (!strcmp(n, "matvec")) {
    LVal x = lower_expr(L, scope, posarg(e, 0));
    LVal w = lower_expr(L, scope, posarg(e, 1));
    if (x.kind == L_NONE || w.kind != L_TENSOR)
      return LNONE;
    return pending_matvec(L, e, x, w.tr);
  }
  if (!strcmp(n, "rmsnorm")) {
    LVal x = lower_expr(L, scope, posarg(e, 0));
    LVal w = lower_expr(L, scope, posarg(e, 1));
    if (x.kind == L_NONE || w.kind != L_TENSOR)
      return LNONE;
    Pending *p = arena_alloc(L->a, sizeof *p);
    p->kind = P_NORM;
    p->at = e;
    p->ctx = arena_strndup(L->a, L->ctx, strlen(L->ctx));
    p->x = as_tensor(L, &x, e->loc);
    p->norm = w.tr;
    p->eps = (float)kw_float(L, scope, e, IR_RMSNORM, "eps");
    if (!activation(L, p->x, e->loc))
      return LNONE;
    return (LVal){.kind = L_PENDING, .p = p};
  }
  if (!strcmp(n, "relu") || !strcmp(n, "silu")) {
    MlkFn fn = !strcmp(n, "relu") ? MLK_FN_RELU : MLK_FN_SILU;
    LVal x = lower_expr(L, scope, posarg(e, 0));
    if (x.kind == L_PENDING && x.p->kind == P_MATVEC && x.p->fn == MLK_FN_NONE && !x.p->done)
      return with_act(L, &x, fn);
    TRef a = as_tensor(L, &x, e->loc);
    return a.t < 0 ? LNONE : eltwise(L, e, fn, a, NOREF);
  }
  if (!strcmp(n, "allreduce")) {
    LVal axis = lower_expr(L, scope, posarg(e, 0));
    LVal x = lower_expr(L, scope, posarg(e, 1));
    if (axis.kind == L_MESH && axis.mesh == 1)
      return x; /* one rank: nothing to reduce */
    unsupported(L, e->loc, "allreduce over more than one rank");
    return LNONE;
  }
  if (!strcmp(n, "split")) {
    LVal x = lower_expr(L, scope, posarg(e, 0));
    if (x.kind != L_PENDING || x.p->kind != P_MATVEC || x.p->done) {
      unsupported(L, e->loc, "split of anything but a matvec");
      return LNONE;
    }
    LVal t = {.kind = L_TUPLE, .nitems = e->nargs - 1};
    t.items = arena_alloc(L->a, t.nitems * sizeof *t.items);
    int64_t row = 0;
    /* The slices run one after another on the same SMs: one tile for all of them, from the rows
     * of the whole matvec, so that together they make about one wave of tasks (q, k and v of a
     * Llama layer: 86 + 22 + 22 tasks of 24 rows, not 128 + 64 + 64 of 16 and 8). */
    int64_t slice_tile = x.p->tile ? x.p->tile : DEFAULT_MATVEC_TILE(x.p->w.shape[0]);
    for (int i = 0; i < t.nitems; i++) {
      LVal sz = lower_expr(L, scope, posarg(e, i + 1));
      int64_t rows = int_of(L, &sz, e->loc);
      Pending *p = arena_alloc(L->a, sizeof *p);
      *p = *x.p;
      p->var = NULL;
      p->w.off += row * p->w.shape[1];
      p->w.shape[0] = rows;
      p->tile = slice_tile;
      row += rows;
      t.items[i] = (LVal){.kind = L_PENDING, .p = p};
    }
    return t;
  }
  if (!strcmp(n, "rope")) {
    LVal xv = lower_expr(L, scope, posarg(e, 0)), pv = lower_expr(L, scope, posarg(e, 1));
    TRef x = as_tensor(L, &xv, e->loc), pos = as_tensor(L, &pv, e->loc);
    if (!activation(L, x, e->loc) || !activation(L, pos, e->loc))
      return LNONE;
    int64_t hd = kw_int(L, scope, e, IR_ROPE, "head_dim");
    int64_t cols = cols_of(L, x.t);
    int out = new_temp(L, arena_printf(L->a, "rope@%s:%d%s", loc_file(L, e->loc), e->loc.line, L->ctx),
                       MLK_F32, is_batched(L, x), cols);
    int op = add_op(L, op_name(L, "rope", e, L->ctx), e->loc, MLK_OP_ROPE, MLK_FN_NONE, out, cols,
                    hd, is_batched(L, x));
    MlkOpDesc *d = &L->g->ops[op].d;
    d->in[0] = arg(x);
    d->in[1] = arg(pos);
    d->head_dim = hd;
    d->theta = (float)kw_float(L, scope, e, IR_ROPE, "theta");
    d->rope_factor = (float)kw_float(L, scope, e, IR_ROPE, "factor");
    d->rope_low_freq = (float)kw_float(L, scope, e, IR_ROPE, "low_freq_factor");
    d->rope_high_freq = (float)kw_float(L, scope, e, IR_ROPE, "high_freq_factor");
    d->rope_original_max_pos = kw_int(L, scope, e, IR_ROPE, "original_max_pos");
    depend(L, op, x, MLK_MAP_TILE);
    depend(L, op, pos, MLK_MAP_ALL);
    return tensor_val(whole(L, out));
  }
  if (!strcmp(n, "attention")) {
    LVal qv = lower_expr(L, scope, posarg(e, 0)), cv = lower_expr(L, scope, posarg(e, 1));
    LVal pv = lower_expr(L, scope, posarg(e, 2));
    TRef q = as_tensor(L, &qv, e->loc), pos = as_tensor(L, &pv, e->loc);
    if (cv.kind != L_CACHE || !activation(L, q, e->loc) || !activation(L, pos, e->loc))
      return LNONE;
    const MlkCacheDesc *cd = &L->g->caches[cv.cache];
    int64_t heads = kw_int(L, scope, e, IR_ATTENTION, "heads");
    int64_t group = heads / cd->kv_heads, hd = cd->head_dim;
    int64_t cols = heads * hd;
    int batched = is_batched(L, q);
    /* kv heads per task and chunks per row: the statement's tile(head = h, split = s), else one
     * kv head and the --attn-split option or the default policy */
    int64_t kvh = e == L->att_at && L->att_head > 0 ? L->att_head : 1;
    if (kvh > cd->kv_heads)
      kvh = cd->kv_heads;
    int64_t split = e == L->att_at && L->att_split > 0 ? L->att_split
                    : L->attn_split > 0                ? L->attn_split
                                                       : lower_default_attn_split(cd->kv_heads, kvh);
    const char *tname =
        arena_printf(L->a, "attention@%s:%d%s", loc_file(L, e->loc), e->loc.line, L->ctx);
    int out = new_temp(L, tname, MLK_F32, batched, cols);
    int append = L->last_append[cv.cache * 4096 + cv.layer];
    int64_t pcols = mlk_attn_part_cols(cd->kv_heads, heads, hd, split, kvh);
    int64_t rec = mlk_attn_part_rec(group, hd);
    /* not split: the attention writes `out`; split: its partials, merged by an attn_reduce */
    int part = split > 1 ? new_temp(L, arena_printf(L->a, "%s.partials", tname), MLK_F32, batched,
                                    pcols)
                         : out;
    int op = add_op(L, op_name(L, "attention", e, L->ctx), e->loc, MLK_OP_ATTENTION, MLK_FN_NONE,
                    part, split > 1 ? pcols : cols, split > 1 ? kvh * rec : kvh * group * hd,
                    batched);
    MlkOpDesc *d = &L->g->ops[op].d;
    d->in[0] = arg(q);
    d->in[1] = (MlkArg){.tensor = cd->tensor};
    d->in[2] = arg(pos);
    d->in[3] = (MlkArg){.tensor = cd->pages_tensor};
    d->cache = cv.cache;
    d->layer = cv.layer;
    d->heads = heads;
    d->kv_heads = cd->kv_heads;
    d->head_dim = hd;
    d->split = split > 1 ? split : 0;
    d->min_chunk = split > 1 ? L->attn_min_chunk : 0;
    depend(L, op, pos, MLK_MAP_ALL);
    if (split <= 1) {
      depend(L, op, q, MLK_MAP_TILE);
      if (append >= 0) /* the kv heads of this layer, written by their append tasks */
        add_event(L, append, op, cd->tensor, MLK_MAP_TILE, cd->kv_heads * hd, kvh * hd);
      return tensor_val(whole(L, out));
    }
    /* Task t of the split reads the kv head block t / split: the S tasks of a block cannot each
     * wait on a counter of their own block, so they wait for all of q and all kv heads. */
    depend(L, op, q, MLK_MAP_ALL);
    if (append >= 0)
      add_event(L, append, op, cd->tensor, MLK_MAP_ALL, cd->kv_heads * hd, 0);
    int red = add_op(L, op_name(L, "attn_reduce", e, L->ctx), e->loc, MLK_OP_ATTN_REDUCE,
                     MLK_FN_NONE, out, cols, kvh * group * hd, batched);
    MlkOpDesc *r = &L->g->ops[red].d;
    r->in[0] = arg(whole(L, part));
    r->heads = heads;
    r->kv_heads = cd->kv_heads;
    r->head_dim = hd;
    r->split = split;
    /* reduce task j waits on one counter for the split producer tasks of its kv head block */
    add_event(L, op, red, part, MLK_MAP_TILE, pcols, split * kvh * rec);
    return tensor_val(whole(L, out));
  }
  if (!strcmp(n, "argmax")) {
    LVal xv = lower_expr(L, scope, posarg(e, 0));
    TRef x = as_tensor(L, &xv, e->loc);
    if (!activation(L, x, e->loc))
      return LNONE;
    int out = new_temp(L, arena_printf(L->a, "argmax@%s:%d%s", loc_file(L, e->loc), e->loc.line, L->ctx),
                       MLK_I32, is_batched(L, x), 1);
    int op = add_op(L, op_name(L, "argmax", e, L->ctx), e->loc, MLK_OP_ARGMAX, MLK_FN_NONE, out,
                    1, 1, is_batched(L, x));
    L->g->ops[op].d.in[0] = arg(x);
    L->g->ops[op].d.k = cols_of(L, x.t);
    depend(L, op, x, MLK_MAP_ALL);
    return tensor_val(whole(L, out));
  }
  if (!strcmp(n, "sample")) {
    LVal xv = lower_expr(L, scope, posarg(e, 0)), uv = lower_expr(L, scope, posarg(e, 1));
    TRef x = as_tensor(L, &xv, e->loc), u = as_tensor(L, &uv, e->loc);
    if (!activation(L, x, e->loc) || !activation(L, u, e->loc))
      return LNONE;
    int out = new_temp(L, arena_printf(L->a, "sample@%s:%d%s", loc_file(L, e->loc), e->loc.line, L->ctx),
                       MLK_I32, is_batched(L, x), 1);
    int op = add_op(L, op_name(L, "sample", e, L->ctx), e->loc, MLK_OP_SAMPLE, MLK_FN_NONE, out,
                    1, 1, is_batched(L, x));
    MlkOpDesc *d = &L->g->ops[op].d;
    d->in[0] = arg(x);
    d->in[1] = arg(u);
    d->k = cols_of(L, x.t);
    d->temperature = (float)kw_float(L, scope, e, IR_SAMPLE, "temperature");
    d->top_k = kw_int(L, scope, e, IR_SAMPLE, "top_k");
    d->top_p = (float)kw_float(L, scope, e, IR_SAMPLE, "top_p");
    depend(L, op, x, MLK_MAP_ALL);
    depend(L, op, u, MLK_MAP_ALL);
    return tensor_val(whole(L, out));
  }
  unsupported(L, e->loc, arena_printf(L->a, "'%s'", n));
  return LNONE;
}

/* ---------------------------------------------------------------- statements */

/* Makes value v the content of tensor `dest` (an output): the op producing v writes it directly,
 * or a copy when v is already in another tensor. */
static void store(Lower *L, const LVal *v, int dest, int64_t tile, Loc at, const Expr *ve) {
  const GTensor *dt = &L->g->tensors[dest];
  if (v->kind == L_PENDING && !v->p->done) {
    materialize_to(L, v, dest, tile ? tile : v->p->tile, NOREF);
    return;
  }
  TRef r = as_tensor(L, v, at);
  if (r.t < 0)
    return;
  GTensor *src = &L->g->tensors[r.t];
  bool read = false;
  for (int i = 0; i < L->g->nops && !read; i++)
    for (int j = 0; j < 4; j++)
      read = read || L->g->ops[i].d.in[j].tensor == r.t;
  if (!read && src->kind == MLK_TENSOR_TEMP && src->producer >= 0 &&
      L->g->ops[src->producer].kernel == L->kernel && src->dtype == dt->dtype &&
      src->numel == dt->numel && src->batched == dt->batched) {
    /* retarget the op that made the temporary: it writes the output directly */
    int op = src->producer;
    L->g->ops[op].d.out.tensor = dest;
    L->g->tensors[dest].producer = op;
    src->producer = -1;
    for (int i = 0; i < L->g->nevents; i++)
      if (L->g->events[i].tensor == r.t)
        L->g->events[i].tensor = dest;
    return;
  }
  if (src->dtype != MLK_F32) {
    unsupported(L, at, "copying a non-f32 tensor into an output");
    return;
  }
  LVal c = eltwise(L, ve, MLK_FN_NONE, r, NOREF);
  if (c.kind == L_TENSOR)
    store(L, &c, dest, tile, at, ve);
}

static int64_t tile_hint(Lower *L, Binding *scope, const Stmt *st) {
  for (const Clause *c = st->clauses; c; c = c->next) {
    if (c->kind != CLAUSE_TILE) {
      unsupported(L, c->loc, "an explicit wait/notify clause");
      continue;
    }
    if (c->args->kind == EXPR_KWARG)
      continue; /* tile(head = .., split = ..) of attention: attention_hints took it */
    LVal v = lower_expr(L, scope, c->args);
    return int_of(L, &v, c->loc);
  }
  return 0;
}

/* The tile(head = h, split = s) hints of a statement whose value is an attention call (sema
 * allows them on nothing else), for lower_call to find when it lowers that very call. */
static void attention_hints(Lower *L, Binding *scope, const Stmt *st) {
  for (const Clause *c = st->clauses; c; c = c->next) {
    if (c->kind != CLAUSE_TILE || c->args->kind != EXPR_KWARG)
      continue;
    for (const Expr *x = c->args; x; x = x->next) {
      if (x->kind != EXPR_KWARG)
        continue;
      if (L->att_at != st->value) {
        L->att_at = st->value;
        L->att_head = L->att_split = 0;
      }
      LVal v = lower_expr(L, scope, x->lhs);
      int64_t i = int_of(L, &v, x->lhs->loc);
      if (!strcmp(x->name, "head"))
        L->att_head = i;
      else if (!strcmp(x->name, "split"))
        L->att_split = i;
    }
  }
}

/* The hints of an enclosing statement, kept across the statements of a layer inlined into the
 * arguments of its attention call. */
typedef struct AttHints {
  const Expr *at;
  int64_t head, split;
} AttHints;

static AttHints save_hints(const Lower *L) { return (AttHints){L->att_at, L->att_head, L->att_split}; }

static void restore_hints(Lower *L, AttHints h) {
  L->att_at = h.at;
  L->att_head = h.head;
  L->att_split = h.split;
}

/* Names a temporary after the variable it is assigned to ("q[l=3]"), unless a variable already
 * named it; a pending value carries the name to the tensor it will become. */
static void name_temp(Lower *L, LVal *v, const char *name) {
  if (v->kind == L_PENDING) {
    Pending *p = arena_alloc(L->a, sizeof *p);
    *p = *v->p;
    p->var = arena_printf(L->a, "%s%s", name, L->ctx);
    v->p = p;
    return;
  }
  if (v->kind != L_TENSOR || v->tr.t < 0)
    return;
  GTensor *t = &L->g->tensors[v->tr.t];
  if (t->kind == MLK_TENSOR_TEMP && strchr(t->name, '@'))
    t->name = arena_printf(L->a, "%s%s", name, L->ctx);
}

/* Applies a tile(...) hint to op `op`, which this statement created. */
static void retile(Lower *L, int op, int64_t tile, Loc at) {
  MlkOpDesc *d = &L->g->ops[op].d;
  if (d->kind != MLK_OP_MATVEC && d->kind != MLK_OP_ELTWISE && d->kind != MLK_OP_GATHER) {
    unsupported(L, at, "tile(...) of this operation");
    return;
  }
  d->tile = tile > d->n ? d->n : tile;
  d->ntasks = (d->n + d->tile - 1) / d->tile;
}

static void run_stmt(Lower *L, Binding **scope, const Stmt *st) {
  switch (st->kind) {
  case STMT_ASSIGN: {
    int ops_before = L->g->nops;
    AttHints outer = save_hints(L);
    attention_hints(L, *scope, st);
    LVal v = lower_expr(L, *scope, st->value);
    restore_hints(L, outer);
    int64_t tile = tile_hint(L, *scope, st);
    if (tile && v.kind == L_TENSOR && v.tr.t >= 0 && L->g->tensors[v.tr.t].producer >= ops_before) {
      retile(L, L->g->tensors[v.tr.t].producer, tile, st->loc);
      tile = 0;
    }
    if (st->ntargets > 1) {
      int i = 0;
      for (const StrList *t = st->targets; t; t = t->next, i++) {
        LVal item = v.kind == L_TUPLE && i < v.nitems ? v.items[i] : LNONE;
        name_temp(L, &item, t->str);
        bind(L, scope, t->str, item);
      }
      return;
    }
    const char *name = st->targets->str;
    Binding *decl = lookup(L->decls, name);
    bool output = decl && decl->v.kind == L_TENSOR &&
                  L->g->tensors[decl->v.tr.t].kind == MLK_TENSOR_OUTPUT && L->depth == 0;
    if (output) {
      if (v.kind != L_NONE)
        store(L, &v, decl->v.tr.t, tile, st->loc, st->value);
      return;
    }
    if (v.kind == L_PENDING && tile) {
      Pending *p = arena_alloc(L->a, sizeof *p);
      *p = *v.p;
      p->tile = tile;
      v.p = p;
    } else if (tile) {
      unsupported(L, st->loc, "tile(...) of a value computed by an earlier statement");
    }
    name_temp(L, &v, name);
    Binding *b = lookup(*scope, name);
    if (b && b != lookup(L->decls, name))
      b->v = v; /* a new value for a local (loop-carried or rebound) */
    else
      bind(L, scope, name, v);
    return;
  }
  case STMT_EXPR: {
    AttHints outer = save_hints(L);
    attention_hints(L, *scope, st);
    lower_expr(L, *scope, st->value);
    restore_hints(L, outer);
    tile_hint(L, *scope, st);
    return;
  }
  case STMT_FOR: {
    LVal lo = lower_expr(L, *scope, st->lo), hi = lower_expr(L, *scope, st->hi);
    char saved[sizeof L->ctx];
    memcpy(saved, L->ctx, sizeof saved);
    size_t n = strlen(saved);
    for (int64_t i = lo.i; i < hi.i && !L->unsupported; i++) {
      /* op names carry the loop variables: "[l=3]", nested "[l=3,j=0]" */
      if (n)
        snprintf(L->ctx, sizeof L->ctx, "%.*s,%s=%lld]", (int)(n - 1), saved, st->var, (long long)i);
      else
        snprintf(L->ctx, sizeof L->ctx, "[%s=%lld]", st->var, (long long)i);
      Binding *body = *scope;
      bind(L, &body, st->var, lint(i));
      run_stmts(L, &body, st->body);
    }
    memcpy(L->ctx, saved, sizeof saved);
    return;
  }
  case STMT_RETURN:
    if (st->nvalues == 1) {
      L->ret = lower_expr(L, *scope, st->value);
    } else {
      LVal t = {.kind = L_TUPLE, .nitems = st->nvalues};
      t.items = arena_alloc(L->a, st->nvalues * sizeof *t.items);
      int i = 0;
      for (const Expr *e = st->value; e; e = e->next)
        t.items[i++] = lower_expr(L, *scope, e);
      L->ret = t;
    }
    return;
  }
}

static void run_stmts(Lower *L, Binding **scope, const Stmt *st) {
  for (; st && !L->unsupported; st = st->next)
    run_stmt(L, scope, st);
}

/* ---------------------------------------------------------------- models */

/* Evaluates a declaration dim; sets *dynamic for the batch dim (which must be the first). */
static bool decl_shape(Lower *L, const TensorDecl *td, int64_t *shape, int *batched) {
  int i = 0;
  *batched = 0;
  for (const Expr *e = td->type.dims; e; e = e->next, i++) {
    const DimDecl *dyn = NULL;
    if (e->kind == EXPR_NAME)
      for (DimDecl *dd = L->cfg->dims; dd; dd = dd->next)
        if (!strcmp(dd->name, e->name) && !dd->value)
          dyn = dd;
    if (dyn) {
      if (i != 0 || (L->g->batch && L->g->batch != dyn)) {
        unsupported(L, e->loc, arena_printf(L->a, "the dynamic dim '%s' here (only the leading "
                                            "dim of a tensor, and one dynamic dim per model)", dyn->name));
        return false;
      }
      L->g->batch = dyn;
      shape[i] = dyn->hi_v;
      *batched = 1;
      continue;
    }
    LVal v = lower_expr(L, NULL, e);
    if (v.kind != L_INT) {
      unsupported(L, e->loc, "this dimension");
      return false;
    }
    shape[i] = v.i;
  }
  return true;
}

/* Drops temporaries that no op writes or reads (a temporary whose op was retargeted to write an
 * output directly) and renumbers the rest. */
static void drop_dead_temps(Lower *L) {
  Graph *g = L->g;
  int *map = arena_alloc(L->a, (g->ntensors + 1) * sizeof *map);
  int n = 0;
  for (int t = 0; t < g->ntensors; t++) {
    bool used = g->tensors[t].kind != MLK_TENSOR_TEMP;
    for (int i = 0; i < g->nops && !used; i++) {
      used = g->ops[i].d.out.tensor == t;
      for (int j = 0; j < 4; j++)
        used = used || g->ops[i].d.in[j].tensor == t;
    }
    map[t] = used ? n : -1;
    if (used)
      g->tensors[n++] = g->tensors[t];
  }
  g->ntensors = n;
#define REMAP(x) ((x) = (x) >= 0 ? map[(x)] : (x))
  for (int i = 0; i < g->nops; i++) {
    REMAP(g->ops[i].d.out.tensor);
    for (int j = 0; j < 4; j++)
      REMAP(g->ops[i].d.in[j].tensor);
  }
  for (int i = 0; i < g->nevents; i++)
    REMAP(g->events[i].tensor);
  for (int i = 0; i < g->ncaches; i++) {
    REMAP(g->caches[i].tensor);
    REMAP(g->caches[i].pages_tensor);
  }
#undef REMAP
}

/* Gives every tensor and every op a distinct name (a variable rebound in a layer names several
 * tensors: "q[l=0]" before rope, "q[l=0]#2" after), then names the events after them. */
static void unique_names(Lower *L) {
  Graph *g = L->g;
  for (int t = 0; t < g->ntensors; t++) {
    int seen = 1;
    for (int u = 0; u < t; u++)
      if (!strcmp(g->tensors[u].name, g->tensors[t].name) ||
          (!strncmp(g->tensors[u].name, g->tensors[t].name, strlen(g->tensors[t].name)) &&
           g->tensors[u].name[strlen(g->tensors[t].name)] == '#'))
        seen++;
    if (seen > 1)
      g->tensors[t].name = arena_printf(L->a, "%s#%d", g->tensors[t].name, seen);
  }
  /* ops too: the q, k and v slices of one statement are three matvecs of the same line */
  for (int o = 0; o < g->nops; o++) {
    int seen = 1;
    size_t n = strlen(g->ops[o].d.name);
    for (int u = 0; u < o; u++)
      if (!strncmp(g->ops[u].d.name, g->ops[o].d.name, n) &&
          (g->ops[u].d.name[n] == 0 || g->ops[u].d.name[n] == '#'))
        seen++;
    if (seen > 1)
      g->ops[o].d.name = arena_printf(L->a, "%s#%d", g->ops[o].d.name, seen);
  }
  for (int i = 0; i < g->nevents; i++) {
    MlkEventDesc *e = &g->events[i];
    e->name = arena_printf(L->a, "%s: %s -> %s", g->tensors[e->tensor].name,
                           g->ops[e->producer].d.name, g->ops[e->consumer].d.name);
  }
}

Graph *lower_model(Program *p, Model *m, Arena *a, Diag *d, int64_t attn_split,
                   int64_t attn_min_chunk) {
  Graph *g = arena_alloc(a, sizeof *g);
  g->prog = p;
  g->model = m;
  g->name = m->name;
  Lower L = {.a = a, .d = d, .g = g, .p = p, .m = m, .attn_split = attn_split,
             .attn_min_chunk = attn_min_chunk > 0 ? attn_min_chunk : MLKC_ATTN_MIN_CHUNK};
  L.cfg = sema_model_config(p, m);
  if (!L.cfg)
    MLKC_BUG("model '%s' without config after sema", m->name);

  int ncaches = 0;
  for (TensorDecl *td = m->decls; td; td = td->next)
    ncaches += td->kind == DECL_CACHE;
  g->caches = arena_alloc(a, (ncaches ? ncaches : 1) * sizeof *g->caches);
  L.last_append = arena_alloc(a, (ncaches ? ncaches : 1) * 4096 * sizeof *L.last_append);

  for (TensorDecl *td = m->decls; td; td = td->next) {
    if (td->kind == DECL_CACHE) {
      /* paged_kv(dtype, layers, kv_heads, head_dim, page = P): checked by sema */
      const Expr *c = td->ctor;
      LVal v[4];
      for (int i = 0; i < 3; i++)
        v[i] = lower_expr(&L, NULL, posarg(c, i + 1));
      int64_t page = kw_int(&L, NULL, c, IR_PAGED_KV, "page");
      MlkDType dt = posarg(c, 0)->dtype;
      if (dt != MLK_BF16) {
        unsupported(&L, td->loc, "a cache that is not bf16");
        continue;
      }
      MlkCacheDesc *cd = &g->caches[g->ncaches];
      *cd = (MlkCacheDesc){.name = td->name, .dtype = dt, .layers = v[0].i, .kv_heads = v[1].i,
                           .head_dim = v[2].i, .page = page};
      if (cd->layers > 4096) {
        unsupported(&L, td->loc, "a cache of more than 4096 layers");
        continue;
      }
      int64_t zero[1] = {0};
      cd->tensor = add_tensor(&L, td->name, MLK_TENSOR_CACHE, dt, 1, zero, 0, NULL);
      g->tensors[cd->tensor].numel = 0;
      cd->pages_tensor = add_tensor(&L, arena_printf(a, "%s.pages", td->name), MLK_TENSOR_PAGES,
                                    MLK_I32, 1, zero, 0, NULL);
      g->tensors[cd->pages_tensor].numel = 0;
      bind(&L, &L.decls, td->name, (LVal){.kind = L_CACHE, .cache = g->ncaches, .layer = -1});
      g->ncaches++;
      continue;
    }
    int64_t shape[MLK_MAX_RANK];
    int batched;
    if (!decl_shape(&L, td, shape, &batched)) {
      bind(&L, &L.decls, td->name, LNONE);
      continue;
    }
    MlkTensorKind kind = td->kind == DECL_PARAM   ? MLK_TENSOR_PARAM
                         : td->kind == DECL_INPUT ? MLK_TENSOR_INPUT
                                                  : MLK_TENSOR_OUTPUT;
    int t = add_tensor(&L, td->name, kind, td->type.dtype, td->type.ndims, shape, batched,
                       td->from ? td->from->str : NULL);
    if (td->from && td->from->next)
      g->tensors[t].from = td->from->str; /* cat(...): the first name; loading comes later */
    bind(&L, &L.decls, td->name, tensor_val(whole(&L, t)));
  }
  for (int i = 0; i < (ncaches ? ncaches : 1) * 4096; i++)
    L.last_append[i] = -1;
  /* batched tensors need the batch dim's maximum, known only once a batched decl was seen */
  if (g->batch)
    for (int t = 0; t < g->ntensors; t++)
      if (g->tensors[t].batched && g->tensors[t].shape[0] != g->batch->hi_v)
        MLKC_BUG("batched tensor '%s' with %lld rows", g->tensors[t].name,
                 (long long)g->tensors[t].shape[0]);

  int nk = 0;
  for (Megakernel *mk = m->kernels; mk; mk = mk->next)
    nk++;
  g->kernels = arena_alloc(a, nk * sizeof *g->kernels);
  for (Megakernel *mk = m->kernels; mk && !L.unsupported; mk = mk->next) {
    L.kernel = g->nkernels;
    GKernel *k = &g->kernels[g->nkernels++];
    k->name = mk->name;
    k->entry = arena_printf(a, "mlk_%s_%s", m->name, mk->name);
    k->first_op = g->nops;
    k->schedule = MLK_SCHED_STATIC;
    for (const Expr *opt = mk->options; opt; opt = opt->next)
      if (opt->kind == EXPR_KWARG && !strcmp(opt->name, "schedule") && opt->lhs->kind == EXPR_NAME &&
          !strcmp(opt->lhs->name, "dynamic"))
        k->schedule = MLK_SCHED_DYNAMIC;
    for (int i = 0; i < (ncaches ? ncaches : 1) * 4096; i++)
      L.last_append[i] = -1;
    L.ctx[0] = 0;
    Binding *scope = L.decls;
    run_stmts(&L, &scope, mk->body);
    k->nops = g->nops - k->first_op;
    if (k->nops == 0 && !L.unsupported)
      diag_error(d, mk->loc, "megakernel '%s' computes nothing", mk->name);
  }
  /* tiles may have changed after events were made (a tile hint applied late): refresh */
  int64_t base = 0;
  for (int i = 0; i < g->nevents; i++) {
    MlkEventDesc *e = &g->events[i];
    const MlkOpDesc *po = &g->ops[e->producer].d, *co = &g->ops[e->consumer].d;
    e->ptile = po->tile;
    if (e->map == MLK_MAP_ALL)
      e->ctile = co->tile;
    else if ((co->kind != MLK_OP_ATTENTION || e->tensor != co->in[1].tensor) &&
             co->kind != MLK_OP_ATTN_REDUCE) /* these read other tiles than their output's */
      e->ctile = co->tile;
    e->size = e->map == MLK_MAP_ALL ? 1 : (e->n + e->ctile - 1) / e->ctile;
    e->base = base;
    base += e->size;
  }
  g->ncounters = base;
  graph_link_events(g, a);
  graph_assign_variants(g, a);
  drop_dead_temps(&L);
  unique_names(&L);
  for (int i = 0; i < g->nops; i++)
    if (g->ops[i].d.ntasks > MLK_MAX_TASKS_PER_OP)
      diag_error(d, g->ops[i].loc, "'%s' has %lld tasks, more than the %d an op may have",
                 g->ops[i].d.name, (long long)g->ops[i].d.ntasks, MLK_MAX_TASKS_PER_OP);
  if (!d->nerrors)
    bind_params(g, a, d); /* checkpoint bindings: needs the ops (bind.c) */
  return d->nerrors ? NULL : g;
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
  g->event_refs = arena_alloc(a, (size_t)(nrefs ? nrefs : 1) * sizeof *g->event_refs);
  g->nevent_refs = 0;
  for (int o = 0; o < g->nops; o++) {
    MlkOpDesc *d = &g->ops[o].d;
    d->wait0 = g->nevent_refs;
    for (int i = 0; i < g->nevents; i++)
      if (g->events[i].consumer == o)
        g->event_refs[g->nevent_refs++] = i;
    d->nwaits = g->nevent_refs - d->wait0;
    d->notify0 = g->nevent_refs;
    for (int i = 0; i < g->nevents; i++)
      if (g->events[i].producer == o)
        g->event_refs[g->nevent_refs++] = i;
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

static const char *kind_names[] = {"param", "input", "output", "temp", "cache", "pages"};
static const char *fn_names[] = {"none", "relu", "silu", "add", "mul"};
static const char *op_kind_names[] = {"matvec", "eltwise", "gather", "rmsnorm", "rope",
                                      "kv_append", "attention", "argmax", "sample", "attn_reduce"};

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
  if (g->batch)
    fprintf(out, ",\n  \"batch\": {\"dim\": \"%s\", \"min\": %lld, \"max\": %lld}", g->batch->name,
            (long long)g->batch->lo_v, (long long)g->batch->hi_v);
  fprintf(out, ",\n  \"tensors\": [\n");
  for (int i = 0; i < g->ntensors; i++) {
    const GTensor *t = &g->tensors[i];
    fprintf(out, "    {\"id\": %d, \"name\": ", i);
    json_str(out, t->name);
    fprintf(out, ", \"kind\": \"%s\", \"dtype\": \"%s\", \"shape\": [", kind_names[t->kind],
            ast_dtype_name(t->dtype));
    for (int j = 0; j < t->rank; j++)
      fprintf(out, "%s%lld", j ? ", " : "", (long long)t->shape[j]);
    fprintf(out, "]%s}%s\n", t->batched ? ", \"batched\": true" : "",
            i + 1 < g->ntensors ? "," : "");
  }
  fprintf(out, "  ],\n  \"kernels\": [\n");
  for (int k = 0; k < g->nkernels; k++) {
    const GKernel *gk = &g->kernels[k];
    fprintf(out, "    {\"name\": ");
    json_str(out, gk->name);
    fprintf(out, ", \"entry\": ");
    json_str(out, gk->entry);
    fprintf(out, ", \"schedule\": \"%s\", \"ops\": [\n",
            gk->schedule == MLK_SCHED_DYNAMIC ? "dynamic" : "static");
    for (int i = gk->first_op; i < gk->first_op + gk->nops; i++) {
      const MlkOpDesc *o = &g->ops[i].d;
      fprintf(out, "      {\"id\": %d, \"name\": ", i);
      json_str(out, o->name);
      fprintf(out, ", \"kind\": \"%s\", \"fn\": \"%s\", \"out\": %d, \"in\": [", op_kind_names[o->kind],
              fn_names[o->fn], o->out.tensor);
      for (int j = 0; j < 4; j++) {
        if (o->in[j].offset)
          fprintf(out, "%s[%d, %lld]", j ? ", " : "", o->in[j].tensor, (long long)o->in[j].offset);
        else
          fprintf(out, "%s%d", j ? ", " : "", o->in[j].tensor);
      }
      fprintf(out, "], \"n\": %lld, \"k\": %lld, \"tile\": %lld, \"tasks\": %lld",
              (long long)o->n, (long long)o->k, (long long)o->tile, (long long)o->ntasks);
      if (o->split > 1)
        fprintf(out, ", \"split\": %lld", (long long)o->split);
      fprintf(out, "}%s\n", i + 1 < gk->first_op + gk->nops ? "," : "");
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
    fprintf(out, "  op%d -> op%d [label=\"E%d %s\\n%s [%lld]\"%s];\n", e->producer, e->consumer, i,
            g->tensors[e->tensor].name, e->map == MLK_MAP_ALL ? "all" : "tile", (long long)e->size,
            e->map == MLK_MAP_ALL ? ", style=bold" : "");
  }
  fprintf(out, "}\n");
}
