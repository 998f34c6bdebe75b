/* elaborate.c: a checked model -> its graph IR, before any fusion.
 *
 * Runs each megakernel's body once, in program order, with concrete values: layers are inlined
 * with their arguments bound, loops unrolled with the loop variable's value (a node's context
 * "[l=3]" records it), integer and float expressions evaluated. Each operation of the language
 * becomes one node of the kind the table of operations gives it (builtins.def): its tensor
 * operands go to the slots the table names, its other arguments and its keyword arguments (or the
 * table's defaults) to attributes. Views of params (w[l], row slices) are values at an element
 * offset of the param's tensor; an assignment to an output is a store node; a cache layer after an
 * append is the append's result, which the attention reading that layer takes as its operand. A
 * statement's tile(...) clause goes to the node that makes the statement's value. Nothing is fused
 * or tiled here: the passes after it do that. A statement's wait(...) and notify(...) clauses name
 * counters of explicit events, with the loop variables' values (IrCounter): every node the
 * statement makes, its store into an output included, waits on or notifies them.
 *
 * sema has checked the program, so a construct it accepts and this pass cannot build is reported
 * ("cannot be lowered to a megakernel yet") rather than assumed away.
 */
#include <string.h>

#include "mlkc.h"

/* ---------------------------------------------------------------- values */

typedef enum EKind { E_NONE, E_TENSOR, E_INT, E_FLOAT, E_DTYPE, E_CACHE, E_MESH, E_EVENT, E_TUPLE } EKind;

typedef struct EVal EVal;
struct EVal {
  EKind kind;
  int value;              /* E_TENSOR: IrGraph.values index */
  int64_t i;              /* E_INT */
  double f;               /* E_FLOAT */
  int cache, layer;       /* E_CACHE: IrGraph.caches index; kv[l] has its layer, the cache -1 */
  int64_t mesh;           /* E_MESH: the axis size */
  const EventDecl *event; /* E_EVENT */
  EVal *items;            /* E_TUPLE */
  int nitems;
};

static const EVal ENONE = {.kind = E_NONE};

typedef struct Binding Binding;
struct Binding {
  const char *name;
  EVal v;
  Binding *next;
};

/* A layer being inlined, for the notes of an error inside it. */
typedef struct Frame {
  const Layer *layer;
  Loc call;
} Frame;

#define MAX_FRAMES 64

typedef struct Elab {
  Arena *a;
  Diag *d;
  IrGraph *g;
  const Program *p;
  const Model *m;
  const Config *cfg;
  int kernel;
  int seq;             /* the next node's IrNode.seq */
  char ctx[128];       /* "[l=3]": the loop variables in scope */
  Binding *decls;      /* the model's tensors, caches and events */
  int **cache_state;   /* [cache][layer]: the value of that cache layer after this kernel's last
                          append, -1 before any */
  EVal ret;            /* the value of `return` in the layer being inlined */
  Frame frames[MAX_FRAMES];
  int nframes;
  int unsupported;     /* constructs it cannot build: the first is reported */
  int sampling;        /* the model's sampling tensor, once a sample needs it, else -1 */
} Elab;

static void unsupported(Elab *E, Loc loc, const char *what) {
  if (E->unsupported++)
    return; /* the first one says it; the rest would repeat it */
  diag_error(E->d, loc, "%s cannot be lowered to a megakernel yet", what);
  for (int i = E->nframes - 1; i >= 0; i--)
    diag_note(E->d, E->frames[i].call, "in layer '%s' called here", E->frames[i].layer->name);
}

static EVal eint(int64_t v) { return (EVal){.kind = E_INT, .i = v}; }
static EVal etensor(int v) { return (EVal){.kind = E_TENSOR, .value = v}; }

static IrValue *val(Elab *E, int v) { return &E->g->values[v]; }

/* A view of declared tensor t: the whole tensor, or a part at an element offset. */
static int view(Elab *E, int t, int64_t offset, const Type *type) {
  return ir_add_value(E->g, (IrValue){.type = *type, .tensor = t, .offset = offset, .producer = -1,
                                      .layer = -1});
}

/* The model's sampling tensor (MLK_TENSOR_SAMPLING), made by its first sample: a row of
 * MLK_SAMPLE_PARAMS per batch row, which the runtime writes before each run and every sample op
 * reads as its in[1]. */
static int sampling_view(Elab *E) {
  Type t = {.dtype = MLK_F32, .rank = 1, .shape = {MLK_SAMPLE_PARAMS}};
  if (E->g->batch)
    t = (Type){.dtype = MLK_F32, .rank = 2, .shape = {1, MLK_SAMPLE_PARAMS}, .sym = {E->g->batch}};
  if (E->sampling < 0)
    E->sampling = ir_add_tensor(E->g, (IrTensor){.name = "sampling", .kind = MLK_TENSOR_SAMPLING,
                                                  .type = t, .cache = -1});
  return view(E, E->sampling, 0, &t);
}

/* ---------------------------------------------------------------- nodes */

static int node(Elab *E, IrOp op, Loc loc) {
  int n = ir_add_node(E->g, op, loc, arena_strndup(E->a, E->ctx, strlen(E->ctx)), E->kernel);
  E->g->nodes[n].seq = E->seq++;
  return n;
}

/* Operand `slot` of node n is value v, needed when n is evaluated. */
static void operand(Elab *E, int n, int slot, int v) {
  IrNode *nd = &E->g->nodes[n];
  nd->in[slot] = v;
  nd->in_seq[slot] = nd->seq;
}

static bool is_tensor(Elab *E, const EVal *v, Loc at) {
  if (v->kind == E_TENSOR)
    return true;
  if (v->kind != E_NONE)
    unsupported(E, at, "this value (not a tensor)");
  return false;
}

/* The value of layer l of cache c as this kernel has it so far: its last append's result, else
 * the layer as the kernel found it. */
static int cache_value(Elab *E, int c, int l) {
  int v = E->cache_state[c][l];
  if (v >= 0)
    return v;
  const IrCache *cc = &E->g->caches[c];
  Type t = {.dtype = cc->dtype};
  v = view(E, cc->tensor, 0, &t);
  val(E, v)->layer = l;
  return v;
}

/* ---------------------------------------------------------------- scopes */

static Binding *lookup(Binding *scope, const char *name) {
  for (Binding *b = scope; b; b = b->next)
    if (!strcmp(b->name, name))
      return b;
  return NULL;
}

static void bind(Elab *E, Binding **scope, const char *name, EVal v) {
  Binding *b = arena_alloc(E->a, sizeof *b);
  *b = (Binding){name, v, *scope};
  *scope = b;
}

/* A name of the model's config: a static dim (an integer) or a mesh axis; a dynamic dim has no
 * value here (sema allows it in shapes only). */
static EVal config_value(Elab *E, const char *name, bool *found) {
  *found = true;
  for (const DimDecl *dd = E->cfg->dims; dd; dd = dd->next)
    if (!strcmp(dd->name, name))
      return !dd->value     ? ENONE
             : dd->is_float ? (EVal){.kind = E_FLOAT, .f = dd->fresolved}
                            : eint(dd->resolved);
  for (const MeshDecl *m = E->cfg->meshes; m; m = m->next)
    if (!strcmp(m->name, name))
      return (EVal){.kind = E_MESH, .mesh = m->resolved};
  *found = false;
  return ENONE;
}

/* ---------------------------------------------------------------- expressions */

static EVal eval(Elab *E, Binding *scope, const Expr *e);
static void run_stmts(Elab *E, Binding **scope, const Stmt *st);

static double number(const EVal *v) { return v->kind == E_FLOAT ? v->f : (double)v->i; }

static int64_t integer(Elab *E, const Expr *e, Binding *scope) {
  EVal v = eval(E, scope, e);
  if (v.kind == E_INT)
    return v.i;
  if (v.kind != E_NONE)
    unsupported(E, e->loc, "this integer");
  return 0;
}

static EVal binary_tensor(Elab *E, const Expr *e, const EVal *l, const EVal *r) {
  if (!is_tensor(E, l, e->lhs->loc) || !is_tensor(E, r, e->rhs->loc))
    return ENONE;
  if (e->op != '+' && e->op != '*') {
    unsupported(E, e->loc, "this operator on tensors");
    return ENONE;
  }
  IrOp op = e->op == '+' ? IR_ADD : IR_MUL;
  const IrValue *lv = val(E, l->value), *rv = val(E, r->value);
  if (op == IR_ADD && (lv->type.dtype == MLK_BF16 || rv->type.dtype == MLK_BF16)) {
    /* x + b, b a bf16 param vector (sema): the eltwise op's bias, added to every row of x */
    const EVal *x = lv->type.dtype == MLK_BF16 ? r : l, *b = x == r ? l : r;
    int n = node(E, op, e->loc);
    E->g->nodes[n].fn = MLK_FN_NONE;
    operand(E, n, 0, x->value);
    operand(E, n, 4, b->value);
    Type t = val(E, x->value)->type;
    return etensor(ir_add_result(E->g, n, &t));
  }
  int n = node(E, op, e->loc);
  operand(E, n, 0, l->value);
  operand(E, n, 1, r->value);
  const Type *in[2] = {&val(E, l->value)->type, &val(E, r->value)->type};
  Type t = builtin_result_type(op, in, NULL, 0);
  return etensor(ir_add_result(E->g, n, &t));
}

static EVal eval_index(Elab *E, Binding *scope, const Expr *e) {
  EVal base = eval(E, scope, e->lhs);
  if (base.kind == E_CACHE) {
    base.layer = (int)integer(E, e->args, scope);
    return base;
  }
  if (!is_tensor(E, &base, e->loc))
    return ENONE;
  const IrValue bv = *val(E, base.value);
  if (e->nargs == 1 && e->args->kind != EXPR_SLICE) {
    EVal iv = eval(E, scope, e->args);
    if (iv.kind == E_TENSOR) {
      /* table[ids]: a gather of rows */
      int n = node(E, IR_GATHER, e->loc);
      operand(E, n, 0, iv.value);
      operand(E, n, 1, base.value);
      const Type *in[2] = {&bv.type, &val(E, iv.value)->type};
      Type t = builtin_result_type(IR_GATHER, in, NULL, 0);
      return etensor(ir_add_result(E->g, n, &t));
    }
  }
  /* a view of a declared tensor: integer indexes and slices of its leading dims */
  if (bv.producer >= 0 || bv.tensor < 0 || E->g->tensors[bv.tensor].kind != MLK_TENSOR_PARAM) {
    unsupported(E, e->loc, "indexing an activation");
    return ENONE;
  }
  Type t = bv.type;
  int64_t off = bv.offset;
  int i = 0;
  for (const Expr *ie = e->args; ie; ie = ie->next, i++) {
    int64_t stride = 1;
    for (int j = i + 1; j < t.rank; j++)
      stride *= t.shape[j];
    if (ie->kind == EXPR_SLICE) {
      int64_t lo = ie->lhs ? integer(E, ie->lhs, scope) : 0;
      int64_t hi = ie->rhs ? integer(E, ie->rhs, scope) : t.shape[i];
      if (i != 0 && (lo != 0 || hi != t.shape[i])) {
        unsupported(E, ie->loc, "a slice of an inner dimension of a param");
        return ENONE;
      }
      off += lo * stride;
      t.shape[i] = hi - lo;
      continue;
    }
    if (i != 0) {
      unsupported(E, ie->loc, "an index of an inner dimension of a param");
      return ENONE;
    }
    off += integer(E, ie, scope) * stride;
    memmove(t.shape, t.shape + 1, (size_t)(t.rank - 1) * sizeof t.shape[0]);
    memmove(t.sym, t.sym + 1, (size_t)(t.rank - 1) * sizeof t.sym[0]);
    t.rank--;
    i--;
  }
  return etensor(view(E, bv.tensor, off, &t));
}

static EVal call(Elab *E, Binding *scope, const Expr *e);

static EVal eval(Elab *E, Binding *scope, const Expr *e) {
  switch (e->kind) {
  case EXPR_INT:
    return eint(e->ival);
  case EXPR_FLOAT:
    return (EVal){.kind = E_FLOAT, .f = e->fval};
  case EXPR_DTYPE:
    return (EVal){.kind = E_DTYPE};
  case EXPR_NAME: {
    Binding *b = lookup(scope, e->name);
    if (b)
      return b->v;
    /* a dynamic dim has no value here: sema lets a program use it in shapes only (a layer's
     * argument may be one, and its body use it in a type annotation) */
    bool found;
    EVal v = config_value(E, e->name, &found);
    if (!found)
      MLKC_BUG("unbound name '%s' after sema", e->name);
    return v;
  }
  case EXPR_MEMBER: {
    bool found;
    EVal v = config_value(E, e->name, &found);
    if (!found)
      MLKC_BUG("unknown member '%s' after sema", e->name);
    return v;
  }
  case EXPR_NEG: {
    EVal v = eval(E, scope, e->lhs);
    if (v.kind == E_INT)
      return eint(-v.i);
    if (v.kind == E_FLOAT)
      return (EVal){.kind = E_FLOAT, .f = -v.f};
    return ENONE;
  }
  case EXPR_BINARY: {
    EVal l = eval(E, scope, e->lhs), r = eval(E, scope, e->rhs);
    if (l.kind == E_MESH) /* in arithmetic, its number of ranks (as sema reads it) */
      l = eint(l.mesh);
    if (r.kind == E_MESH)
      r = eint(r.mesh);
    if (l.kind == E_INT && r.kind == E_INT) {
      switch (e->op) {
      case '+': return eint(l.i + r.i);
      case '-': return eint(l.i - r.i);
      case '*': return eint(l.i * r.i);
      default: return eint(r.i ? l.i / r.i : 0);
      }
    }
    if ((l.kind == E_INT || l.kind == E_FLOAT) && (r.kind == E_INT || r.kind == E_FLOAT)) {
      double a = number(&l), b = number(&r);
      return (EVal){.kind = E_FLOAT,
                    .f = e->op == '+' ? a + b : e->op == '-' ? a - b : e->op == '*' ? a * b : a / b};
    }
    if (l.kind == E_NONE || r.kind == E_NONE)
      return ENONE;
    return binary_tensor(E, e, &l, &r);
  }
  case EXPR_CALL:
    return call(E, scope, e);
  case EXPR_INDEX:
    return eval_index(E, scope, e);
  default:
    MLKC_BUG("expression kind %s reached elaborate", ast_expr_kind_name(e->kind));
  }
}

/* ---------------------------------------------------------------- calls */

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

#define MAX_POS 16

/* A call of an operation of the table (a call, or kv.append with the cache `recv`): one node.
 * Tensor arguments become its operands in the table's slots, the others and the keyword arguments
 * (or the table's defaults) its attributes. */
static EVal builtin_call(Elab *E, Binding *scope, const Expr *e, const Builtin *b, const EVal *recv) {
  EVal args[MAX_POS];
  int npos = 0;
  for (const Expr *x = e->args; x; x = x->next)
    if (x->kind != EXPR_KWARG && npos < MAX_POS)
      args[npos++] = eval(E, scope, x);
  int n = node(E, b->op, e->loc);
  const Type *types[MAX_POS] = {0};
  int64_t sizes[MAX_POS];
  int nsizes = 0;
  for (int i = 0; i < npos; i++) {
    const BuiltinArg *arg = builtin_arg(b, i);
    const EVal *v = &args[i];
    const Expr *ae = posarg(e, i);
    switch (arg->role) {
    case ARG_ACTIVATION:
    case ARG_WEIGHT:
      if (!is_tensor(E, v, ae->loc))
        return ENONE;
      operand(E, n, arg->slot, v->value);
      types[i] = &val(E, v->value)->type;
      break;
    case ARG_SIZE:
      if (v->kind != E_INT)
        return unsupported(E, ae->loc, "this size"), ENONE;
      sizes[nsizes++] = v->i;
      break;
    case ARG_LAYER:
      if (v->kind != E_INT)
        return unsupported(E, ae->loc, "this layer"), ENONE;
      E->g->nodes[n].attr.layer = (int32_t)v->i;
      break;
    case ARG_CACHE_LAYER:
      if (v->kind != E_CACHE || v->layer < 0)
        return unsupported(E, ae->loc, "this cache operand"), ENONE;
      E->g->nodes[n].attr.cache = v->cache;
      E->g->nodes[n].attr.layer = v->layer;
      operand(E, n, arg->slot, cache_value(E, v->cache, v->layer));
      break;
    case ARG_MESH:
      if (v->kind != E_MESH)
        return unsupported(E, ae->loc, "this mesh axis"), ENONE;
      E->g->nodes[n].mesh = v->mesh;
      break;
    case ARG_DTYPE:
      break;
    }
  }
  IrNode *nd = &E->g->nodes[n];
  double kw[BUILTIN_MAX_KWS];
  for (int k = 0; k < b->nkws; k++) {
    const Expr *ke = kwarg(e, b->kws[k].name);
    kw[k] = b->kws[k].def;
    if (ke) {
      EVal v = eval(E, scope, ke);
      if (v.kind != E_INT && v.kind != E_FLOAT)
        return unsupported(E, ke->loc, "this keyword argument"), ENONE;
      kw[k] = number(&v);
    }
    builtin_set_attr(&b->kws[k], &nd->attr, kw[k]);
  }
  if (b->op == IR_ROPE && kw[builtin_kw_index(b, "linear_factor")] > 1.0) {
    /* linear scaling as the runtime's Llama 3 scaling over a window of 1 (builtins.def) */
    nd->attr.rope_factor = (float)kw[builtin_kw_index(b, "linear_factor")];
    nd->attr.rope_low_freq = nd->attr.rope_high_freq = 1.0f;
    nd->attr.rope_original_max_pos = 1;
  }
  if (b->op == IR_SAMPLE)
    operand(E, n, 1, sampling_view(E));
  if (b->op == IR_KV_APPEND) {
    /* writes layer `layer` of the cache: that layer's new value */
    const IrCache *c = &E->g->caches[recv->cache];
    nd->attr.cache = recv->cache;
    nd->attr.kv_heads = c->kv_heads;
    nd->attr.head_dim = c->head_dim;
    Type t = {.dtype = c->dtype};
    int v = ir_add_result(E->g, n, &t);
    E->g->values[v].tensor = c->tensor;
    E->g->values[v].layer = nd->attr.layer;
    E->cache_state[recv->cache][nd->attr.layer] = v;
    return ENONE;
  }
  if (b->op == IR_SPLIT) {
    EVal t = {.kind = E_TUPLE, .nitems = nsizes};
    t.items = arena_alloc(E->a, (size_t)nsizes * sizeof *t.items);
    for (int i = 0; i < nsizes; i++) {
      Type rt = builtin_result_type(IR_SPLIT, types, sizes, i);
      t.items[i] = etensor(ir_add_result(E->g, n, &rt));
    }
    return t;
  }
  Type rt = builtin_result_type(b->op, types, sizes, 0);
  return etensor(ir_add_result(E->g, n, &rt));
}

static const Layer *find_layer(Elab *E, const char *name) {
  for (const Layer *l = E->p->layers; l; l = l->next)
    if (!strcmp(l->name, name))
      return l;
  return NULL;
}

static EVal inline_layer(Elab *E, Binding *scope, const Expr *e, const Layer *l) {
  if (E->nframes == MAX_FRAMES)
    MLKC_BUG("layer calls nest deeper than sema allows");
  /* the layer sees its arguments and the model's config (config_value), nothing of the caller */
  Binding *ls = NULL;
  int i = 0;
  for (const LayerParam *lp = l->params; lp; lp = lp->next, i++) {
    const Expr *ae = posarg(e, i);
    if (!ae)
      ae = kwarg(e, lp->name);
    EVal v = ae ? eval(E, scope, ae) : eval(E, ls, lp->def);
    /* the names of a parameter's type annotation are integers in the body (a batched dim is not) */
    if (lp->type && v.kind == E_TENSOR) {
      const Type *t = &val(E, v.value)->type;
      int d = 0;
      for (const Expr *de = lp->type->dims; de && d < t->rank; de = de->next, d++)
        if (de->kind == EXPR_NAME && !lookup(ls, de->name) && !t->sym[d])
          bind(E, &ls, de->name, eint(t->shape[d]));
    }
    bind(E, &ls, lp->name, v);
  }
  EVal saved = E->ret;
  E->ret = ENONE;
  E->frames[E->nframes++] = (Frame){l, e->loc};
  run_stmts(E, &ls, l->body);
  E->nframes--;
  EVal r = E->ret;
  E->ret = saved;
  return r;
}

static EVal call(Elab *E, Binding *scope, const Expr *e) {
  if (e->lhs) {
    EVal recv = eval(E, scope, e->lhs);
    const Builtin *b = builtin_find(OPS_METHOD, e->name);
    if (recv.kind != E_CACHE || !b)
      return unsupported(E, e->loc, "this method"), ENONE;
    return builtin_call(E, scope, e, b, &recv);
  }
  const Layer *l = find_layer(E, e->name);
  if (l)
    return inline_layer(E, scope, e, l);
  const Builtin *b = builtin_find(OPS_CALL, e->name);
  if (!b)
    MLKC_BUG("unknown operation '%s' after sema", e->name);
  return builtin_call(E, scope, e, b, NULL);
}

/* ---------------------------------------------------------------- statements */

/* The node a tile(...) clause on a statement of value v applies to: the node that makes v, or, for
 * an op whose tile is its operand's (allreduce: TILE_OPERAND), the node that makes that; -1 for
 * none. */
static int producer(Elab *E, const EVal *v) {
  if (v->kind == E_TUPLE && v->nitems)
    return producer(E, &v->items[0]);
  if (v->kind != E_TENSOR)
    return -1;
  int n = val(E, v->value)->producer;
  while (n >= 0 && builtin_of(E->g->nodes[n].op)->tile == TILE_OPERAND) {
    int x = E->g->nodes[n].in[0];
    n = x >= 0 ? val(E, x)->producer : -1;
  }
  return n;
}

/* The counter an event reference of a wait/notify clause names: `done[l + 1]` with l unrolled;
 * -1 after reporting what this pass cannot build. */
static int counter_ref(Elab *E, Binding *scope, const Expr *r) {
  const Expr *name = r->kind == EXPR_INDEX ? r->lhs : r;
  EVal ev = eval(E, scope, name);
  if (ev.kind != E_EVENT)
    return unsupported(E, r->loc, "this event reference"), -1;
  int64_t index[MLK_MAX_RANK] = {0};
  int i = 0;
  for (const Expr *ie = r->kind == EXPR_INDEX ? r->args : NULL; ie && i < MLK_MAX_RANK; ie = ie->next)
    index[i++] = integer(E, ie, scope);
  return ir_counter(E->g, ev.event, index, E->kernel);
}

/* A statement's tile(...) clause, on the node `root` that makes its value (made by this
 * statement: nodes from `first` on). */
static void apply_tile(Elab *E, Binding *scope, const Stmt *st, int root, int first) {
  for (const Clause *c = st->clauses; c; c = c->next) {
    if (c->kind != CLAUSE_TILE)
      continue;
    if (root < first) {
      unsupported(E, c->loc, "tile(...) of a value computed by an earlier statement");
      continue;
    }
    IrHints *h = &E->g->nodes[root].hint;
    for (const Expr *x = c->args; x; x = x->next) {
      int64_t v = integer(E, x->kind == EXPR_KWARG ? x->lhs : x, scope);
      if (x->kind != EXPR_KWARG)
        h->tile = v;
      else if (!strcmp(x->name, "head"))
        h->head = v;
      else if (!strcmp(x->name, "split"))
        h->split = v;
    }
  }
}

/* A statement's wait(...) and notify(...) clauses, on every node it made (nodes from `first` on:
 * those of the layers it called and its store into an output included). */
static void apply_sync(Elab *E, Binding *scope, const Stmt *st, int first) {
  for (const Clause *c = st->clauses; c; c = c->next) {
    if (c->kind == CLAUSE_TILE)
      continue;
    for (const Expr *r = c->args; r; r = r->next) {
      int k = counter_ref(E, scope, r);
      IrSync sy = {.counter = k, .loc = r->kind == EXPR_INDEX ? r->lhs->loc : r->loc};
      for (int n = first; k >= 0 && n < E->g->nnodes; n++)
        ir_add_sync(E->g, n, sy, c->kind == CLAUSE_NOTIFY);
    }
  }
}

/* Names a computed value after the first variable it is assigned to. */
static void name_value(Elab *E, const EVal *v, const char *name) {
  if (v->kind != E_TENSOR)
    return;
  IrValue *iv = val(E, v->value);
  if (iv->producer >= 0 && !iv->name)
    iv->name = arena_printf(E->a, "%s%s", name, E->ctx);
}

/* The output `name` (a target of statement st) is assigned v: a store node, whose result is the
 * output's new value. */
static EVal store(Elab *E, Binding **scope, const Stmt *st, const char *name, const EVal *v) {
  if (!is_tensor(E, v, st->value->loc))
    return ENONE;
  const IrValue *out = val(E, lookup(E->decls, name)->v.value);
  int n = node(E, IR_STORE, st->value->loc);
  operand(E, n, 0, v->value);
  int r = ir_add_result(E->g, n, &out->type);
  E->g->values[r].tensor = out->tensor;
  EVal nv = etensor(r);
  bind(E, scope, name, nv);
  return nv;
}

static bool is_output(Elab *E, const char *name) {
  Binding *b = lookup(E->decls, name);
  if (!b || b->v.kind != E_TENSOR)
    return false;
  const IrValue *v = val(E, b->v.value);
  return v->tensor >= 0 && E->g->tensors[v->tensor].kind == MLK_TENSOR_OUTPUT;
}

static void run_stmt(Elab *E, Binding **scope, const Stmt *st) {
  switch (st->kind) {
  case STMT_ASSIGN: {
    int first = E->g->nnodes;
    EVal v = eval(E, *scope, st->value);
    apply_tile(E, *scope, st, producer(E, &v), first);
    if (st->ntargets > 1) {
      int i = 0;
      for (const StrList *t = st->targets; t; t = t->next, i++) {
        EVal item = v.kind == E_TUPLE && i < v.nitems ? v.items[i] : ENONE;
        if (E->nframes == 0 && is_output(E, t->str)) { /* q, k = split(...) into outputs */
          store(E, scope, st, t->str, &item);
          continue;
        }
        name_value(E, &item, t->str);
        bind(E, scope, t->str, item);
      }
      apply_sync(E, *scope, st, first);
      return;
    }
    const char *name = st->targets->str;
    if (E->nframes == 0 && is_output(E, name)) {
      store(E, scope, st, name, &v);
      apply_sync(E, *scope, st, first);
      return;
    }
    apply_sync(E, *scope, st, first);
    name_value(E, &v, name);
    Binding *b = lookup(*scope, name);
    if (b && b != lookup(E->decls, name))
      b->v = v; /* a new value for a local (loop-carried or rebound) */
    else
      bind(E, scope, name, v);
    return;
  }
  case STMT_EXPR: {
    int first = E->g->nnodes;
    EVal v = eval(E, *scope, st->value);
    apply_tile(E, *scope, st, producer(E, &v), first);
    apply_sync(E, *scope, st, first);
    return;
  }
  case STMT_FOR: {
    int64_t lo = integer(E, st->lo, *scope), hi = integer(E, st->hi, *scope);
    char saved[sizeof E->ctx];
    memcpy(saved, E->ctx, sizeof saved);
    size_t n = strlen(saved);
    for (int64_t i = lo; i < hi && !E->unsupported; i++) {
      /* "[l=3]", nested "[l=3,j=0]" */
      if (n)
        snprintf(E->ctx, sizeof E->ctx, "%.*s,%s=%lld]", (int)(n - 1), saved, st->var, (long long)i);
      else
        snprintf(E->ctx, sizeof E->ctx, "[%s=%lld]", st->var, (long long)i);
      Binding *body = *scope;
      bind(E, &body, st->var, eint(i));
      run_stmts(E, &body, st->body);
    }
    memcpy(E->ctx, saved, sizeof saved);
    return;
  }
  case STMT_RETURN:
    if (st->nvalues == 1) {
      E->ret = eval(E, *scope, st->value);
    } else {
      EVal t = {.kind = E_TUPLE, .nitems = st->nvalues};
      t.items = arena_alloc(E->a, (size_t)st->nvalues * sizeof *t.items);
      int i = 0;
      for (const Expr *e = st->value; e; e = e->next)
        t.items[i++] = eval(E, *scope, e);
      E->ret = t;
    }
    return;
  }
}

static void run_stmts(Elab *E, Binding **scope, const Stmt *st) {
  for (; st && !E->unsupported; st = st->next)
    run_stmt(E, scope, st);
}

/* ---------------------------------------------------------------- models */

/* The model's tensors and caches, in declaration order (their index is the runtime's tensor
 * index), bound to their names; the batch dim. */
static bool declare(Elab *E) {
  IrGraph *g = E->g;
  int ncaches = 0;
  for (const TensorDecl *td = E->m->decls; td; td = td->next)
    ncaches += td->kind == DECL_CACHE;
  g->caches = arena_alloc(E->a, (size_t)(ncaches ? ncaches : 1) * sizeof *g->caches);
  E->cache_state = arena_alloc(E->a, (size_t)(ncaches ? ncaches : 1) * sizeof *E->cache_state);
  for (const TensorDecl *td = E->m->decls; td; td = td->next) {
    if (td->kind == DECL_CACHE) {
      const CacheGeometry *geo = td->geometry;
      if (!geo)
        MLKC_BUG("cache '%s' without geometry after sema", td->name);
      int c = g->ncaches++;
      IrCache *cc = &g->caches[c];
      *cc = (IrCache){.decl = td, .dtype = geo->dtype, .layers = geo->layers,
                      .kv_heads = geo->kv_heads, .head_dim = geo->head_dim, .page = geo->page};
      cc->tensor = ir_add_tensor(g, (IrTensor){.name = td->name, .kind = MLK_TENSOR_CACHE,
                                                .type = {.dtype = geo->dtype}, .cache = c});
      cc->pages_tensor = ir_add_tensor(g, (IrTensor){.name = arena_printf(E->a, "%s.pages", td->name),
                                                      .kind = MLK_TENSOR_PAGES,
                                                      .type = {.dtype = MLK_I32}, .cache = c});
      E->cache_state[c] = arena_alloc(E->a, (size_t)geo->layers * sizeof **E->cache_state);
      bind(E, &E->decls, td->name, (EVal){.kind = E_CACHE, .cache = c, .layer = -1});
      continue;
    }
    const Type *t = td->resolved;
    if (!t)
      MLKC_BUG("'%s' without a type after sema", td->name);
    for (int i = 0; i < t->rank; i++) {
      if (!t->sym[i])
        continue;
      if (i != 0 || t->shape[0] != 1 || (g->batch && g->batch != t->sym[i])) {
        unsupported(E, td->type.loc, arena_printf(E->a, "the dynamic dim '%s' here (only the "
                                                  "leading dim of a tensor, alone, and one "
                                                  "dynamic dim per model)", t->sym[i]->name));
        return false;
      }
      g->batch = t->sym[0];
    }
    MlkTensorKind kind = td->kind == DECL_PARAM   ? MLK_TENSOR_PARAM
                         : td->kind == DECL_INPUT ? MLK_TENSOR_INPUT
                                                  : MLK_TENSOR_OUTPUT;
    int tt = ir_add_tensor(g, (IrTensor){.name = td->name, .kind = kind, .type = *t,
                                         .from = td->from ? td->from->str : NULL, .cache = -1});
    bind(E, &E->decls, td->name, etensor(view(E, tt, 0, t)));
  }
  for (const EventDecl *ev = E->m->events; ev; ev = ev->next)
    bind(E, &E->decls, ev->name, (EVal){.kind = E_EVENT, .event = ev});
  return true;
}

IrGraph *elaborate_model(Program *p, Model *m, Arena *a, Diag *d) {
  Elab E = {.a = a, .d = d, .p = p, .m = m, .sampling = -1};
  E.g = ir_graph_new(a, p, m);
  E.cfg = sema_model_config(p, m);
  if (!E.cfg)
    MLKC_BUG("model '%s' without config after sema", m->name);
  E.g->ranks = 1;
  for (const MeshDecl *md = E.cfg->meshes; md; md = md->next)
    E.g->ranks *= md->resolved;
  int errors = d->nerrors;
  if (!declare(&E))
    return NULL;
  IrGraph *g = E.g;
  int nk = 0;
  for (const Megakernel *mk = m->kernels; mk; mk = mk->next)
    nk++;
  g->kernels = arena_alloc(a, (size_t)(nk ? nk : 1) * sizeof *g->kernels);
  for (const Megakernel *mk = m->kernels; mk && !E.unsupported; mk = mk->next) {
    E.kernel = g->nkernels;
    IrKernel *k = &g->kernels[g->nkernels++];
    *k = (IrKernel){.decl = mk, .name = mk->name,
                    .entry = arena_printf(a, "mlk_%s_%s", m->name, mk->name),
                    .schedule = MLK_SCHED_STATIC};
    for (const Expr *opt = mk->options; opt; opt = opt->next)
      if (opt->kind == EXPR_KWARG && !strcmp(opt->name, "schedule") &&
          opt->lhs->kind == EXPR_NAME && !strcmp(opt->lhs->name, "dynamic"))
        k->schedule = MLK_SCHED_DYNAMIC;
    for (int c = 0; c < g->ncaches; c++)
      for (int64_t l = 0; l < g->caches[c].layers; l++)
        E.cache_state[c][l] = -1;
    E.ctx[0] = 0;
    Binding *scope = E.decls;
    run_stmts(&E, &scope, mk->body);
  }
  g->pass = "elaborate";
  return d->nerrors == errors ? g : NULL;
}
