/* sema.c: semantic analysis. Resolves names, evaluates dims, and checks dtypes, shapes, sharding,
 * checkpoint bindings, caches, events and every use of the builtin operations.
 *
 * Megakernel bodies are checked by abstract interpretation over *values*: a name is bound to a
 * tensor type, an integer (a constant, a loop variable's range, or a multiple of a dynamic dim),
 * a float, a dtype, a cache, an event or a mesh axis. Layers are inlined at each call: their
 * parameters are bound to the arguments and the body is checked in a fresh scope, so layers are
 * shape-polymorphic; names in a parameter's type annotation are the layer's own shape variables,
 * bound by the first argument that uses them. A `for` body is checked once with the loop variable
 * ranging over the whole loop, so indexes are range-checked without unrolling.
 *
 * Every error is reported with its location (and notes: the declaration, the layer call chain)
 * and checking goes on; main.c stops before lowering if any was found.
 */
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "mlkc.h"

/* ---------------------------------------------------------------- types */

bool type_is_static(const Type *t) {
  for (int i = 0; i < t->rank; i++)
    if (t->sym[i])
      return false;
  return true;
}

bool type_equal(const Type *a, const Type *b) {
  if (a->dtype != b->dtype || a->rank != b->rank)
    return false;
  for (int i = 0; i < a->rank; i++)
    if (a->shape[i] != b->shape[i] || a->sym[i] != b->sym[i])
      return false;
  return true;
}

static int dim_str(char *buf, size_t n, int64_t k, const DimDecl *sym) {
  if (!sym)
    return snprintf(buf, n, "%lld", (long long)k);
  if (k == 1)
    return snprintf(buf, n, "%s", sym->name);
  return snprintf(buf, n, "%lld*%s", (long long)k, sym->name);
}

const char *type_str(Arena *a, const Type *t) {
  char buf[256];
  size_t n = (size_t)snprintf(buf, sizeof buf, "%s[", ast_dtype_name(t->dtype));
  for (int i = 0; i < t->rank && n < sizeof buf; i++) {
    if (i)
      n += (size_t)snprintf(buf + n, sizeof buf - n, ", ");
    if (n < sizeof buf)
      n += (size_t)dim_str(buf + n, sizeof buf - n, t->shape[i], t->sym[i]);
  }
  if (n < sizeof buf)
    snprintf(buf + n, sizeof buf - n, "]");
  return arena_strndup(a, buf, strlen(buf));
}

/* ---------------------------------------------------------------- values */

typedef enum VKind {
  V_NONE,   /* an error was reported, or a statement that gives no value */
  V_TENSOR,
  V_INT,
  V_FLOAT,
  V_DTYPE,
  V_CACHE,
  V_EVENT,
  V_MESH,
  V_TUPLE
} VKind;

typedef struct Value Value;
struct Value {
  VKind kind;
  const Type *type;        /* V_TENSOR */
  bool weight;             /* V_TENSOR: a param or a view of one (read-only, from a checkpoint) */
  int64_t lo, hi;          /* V_INT: the possible values, inclusive; lo == hi when known */
  const DimDecl *sym;      /* V_INT: the value is lo * sym, a multiple of a dynamic dim */
  double f;                /* V_FLOAT */
  MlkDType dtype;          /* V_DTYPE */
  const TensorDecl *decl;  /* V_CACHE */
  bool indexed;            /* V_CACHE: kv[l], one layer of the cache */
  const EventDecl *event;  /* V_EVENT */
  const MeshDecl *mesh;    /* V_MESH */
  Value *items;            /* V_TUPLE */
  int nitems;
  /* V_TENSOR, V_TUPLE: the operation that made the value (its tile(...) rule; NULL: a declared
   * tensor or a view of one) and which evaluation of it (Sema.nops counts them; 0: none) */
  const Builtin *origin;
  int64_t op_id;
  int64_t tile_unit;       /* a tile(n) of the op must be a multiple of this (rope: head_dim) */
  bool row_slices;         /* a matvec's result, or relu/silu of one: split cuts its weight's rows */
};

static const Value NONE = {.kind = V_NONE};

static bool int_known(const Value *v) { return v->kind == V_INT && v->lo == v->hi && !v->sym; }

/* The resolved geometry of a `cache NAME : paged_kv(dtype, layers, kv_heads, head_dim, page = P)`. */
typedef struct CacheInfo {
  const TensorDecl *decl;
  bool ok;
  MlkDType dtype;
  int64_t layers, kv_heads, head_dim, page;
  struct CacheInfo *next;
} CacheInfo;

typedef enum BindKind { B_DIM, B_MESH, B_DECL, B_EVENT, B_LOCAL, B_LOOP, B_PARAM } BindKind;

typedef struct Binding Binding;
struct Binding {
  const char *name;
  Loc loc;
  BindKind kind;
  Value v;
  const TensorDecl *decl; /* B_DECL */
  bool used;
  bool written;           /* outputs: assigned in the current megakernel */
  int scope;              /* depth of the scope that created it */
  Binding *next;
};

/* A layer call being checked, for "in layer 'x' called here" notes. */
typedef struct Frame {
  const Layer *layer;
  Loc call;
} Frame;

#define MAX_FRAMES 64

typedef struct Sema {
  Arena *a;
  Diag *d;
  Program *p;
  Config *cfg;
  Model *model;
  const Megakernel *mk;
  CacheInfo *caches;
  Frame frames[MAX_FRAMES];
  int nframes;
  int depth;          /* current scope depth */
  Value ret;          /* the value of the last `return` in the layer being checked */
  bool returned;
  bool in_shape;      /* evaluating a shape: unknown names are dims */
  Loc *warned;        /* warnings already given (layers are checked once per call) */
  int64_t nops;       /* operations evaluated so far (Value.op_id) */
  int64_t trips;      /* iterations of the loops around the statement being checked */
  int64_t *stored;    /* the op_ids of the values the megakernel stored into outputs */
  int nstored, capstored;
  int effects;        /* outputs written and appends in the megakernel being checked */
  int nwarned, capwarned;
} Sema;

/* ---------------------------------------------------------------- diagnostics */

/* The layer call chain of an error, innermost first; a deep chain shows its two ends. */
static void call_notes(Sema *s) {
  for (int i = s->nframes - 1; i >= 0; i--) {
    if (s->nframes > 8 && i == s->nframes - 5) {
      diag_note(s->d, s->frames[i].call, "(%d more layer calls)", s->nframes - 8);
      i = 3;
    }
    diag_note(s->d, s->frames[i].call, "in layer '%s' called here", s->frames[i].layer->name);
  }
}

static void err(Sema *s, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void err(Sema *s, Loc loc, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  diag_error(s->d, loc, "%s", buf);
  call_notes(s);
}

static bool same_loc(Loc a, Loc b) { return a.line == b.line && a.col == b.col && a.src == b.src; }

static void warn_once(Sema *s, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void warn_once(Sema *s, Loc loc, const char *fmt, ...) {
  for (int i = 0; i < s->nwarned; i++)
    if (same_loc(s->warned[i], loc))
      return;
  if (s->nwarned == s->capwarned) {
    int nc = s->capwarned ? 2 * s->capwarned : 16;
    Loc *nw = arena_alloc(s->a, nc * sizeof *nw);
    if (s->nwarned)
      memcpy(nw, s->warned, s->nwarned * sizeof *nw);
    s->warned = nw;
    s->capwarned = nc;
  }
  s->warned[s->nwarned++] = loc;
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  diag_warning(s->d, loc, "%s", buf);
}

static const char *tstr(Sema *s, const Type *t) { return type_str(s->a, t); }

static const char *kind_desc(const Value *v) {
  switch (v->kind) {
  case V_NONE: return "nothing";
  case V_TENSOR: return "a tensor";
  case V_INT: return v->sym ? "a dynamic dim" : "an integer";
  case V_FLOAT: return "a float";
  case V_DTYPE: return "a dtype";
  case V_CACHE: return "a cache";
  case V_EVENT: return "an event";
  case V_MESH: return "a mesh axis";
  case V_TUPLE: return "several values";
  }
  return "?";
}

/* ---------------------------------------------------------------- scopes */

static Binding *lookup(Binding *scope, const char *name) {
  for (Binding *b = scope; b; b = b->next)
    if (!strcmp(b->name, name))
      return b;
  return NULL;
}

static Binding *bind(Sema *s, Binding **scope, const char *name, Loc loc, BindKind kind, Value v) {
  Binding *b = arena_alloc(s->a, sizeof *b);
  *b = (Binding){.name = name, .loc = loc, .kind = kind, .v = v, .scope = s->depth, .next = *scope};
  *scope = b;
  return b;
}

static bool is_builtin(const char *name) { return builtin_find(OPS_CALL, name) != NULL; }

static Layer *find_layer(Sema *s, const char *name) {
  for (Layer *l = s->p->layers; l; l = l->next)
    if (!strcmp(l->name, name))
      return l;
  return NULL;
}

Config *sema_model_config(const Program *p, const Model *m) {
  for (Config *c = p->configs; c; c = c->next)
    if (!strcmp(c->name, m->cfg_name))
      return c;
  return NULL;
}

/* ---------------------------------------------------------------- integer values */

static Value vint(int64_t v) { return (Value){.kind = V_INT, .lo = v, .hi = v}; }

static Value eval(Sema *s, Binding *scope, const Expr *e);

/* Integer arithmetic over ranges, with overflow and division checks. A dynamic dim may only be
 * multiplied by a constant. */
static Value int_binary(Sema *s, const Expr *e, Value l, Value r) {
  if (l.sym || r.sym) {
    if (e->op == '*' && l.sym && int_known(&r))
      return (Value){.kind = V_INT, .lo = l.lo * r.lo, .hi = l.lo * r.lo, .sym = l.sym};
    if (e->op == '*' && r.sym && int_known(&l))
      return (Value){.kind = V_INT, .lo = r.lo * l.lo, .hi = r.lo * l.lo, .sym = r.sym};
    const DimDecl *d = l.sym ? l.sym : r.sym;
    err(s, e->loc, "dynamic dim '%s' can only be multiplied by a constant here", d->name);
    return NONE;
  }
  int64_t c[4];
  bool ovf = false;
  switch (e->op) {
  case '+':
    ovf = __builtin_add_overflow(l.lo, r.lo, &c[0]);
    ovf = __builtin_add_overflow(l.hi, r.hi, &c[1]) || ovf;
    return ovf ? (err(s, e->loc, "integer overflow"), NONE)
               : (Value){.kind = V_INT, .lo = c[0], .hi = c[1]};
  case '-':
    ovf = __builtin_sub_overflow(l.lo, r.hi, &c[0]);
    ovf = __builtin_sub_overflow(l.hi, r.lo, &c[1]) || ovf;
    return ovf ? (err(s, e->loc, "integer overflow"), NONE)
               : (Value){.kind = V_INT, .lo = c[0], .hi = c[1]};
  case '*':
    ovf = __builtin_mul_overflow(l.lo, r.lo, &c[0]);
    ovf = __builtin_mul_overflow(l.lo, r.hi, &c[1]) || ovf;
    ovf = __builtin_mul_overflow(l.hi, r.lo, &c[2]) || ovf;
    ovf = __builtin_mul_overflow(l.hi, r.hi, &c[3]) || ovf;
    if (ovf) {
      err(s, e->loc, "integer overflow");
      return NONE;
    }
    break;
  case '/':
    if (r.lo <= 0 && r.hi >= 0) {
      if (r.lo == r.hi)
        err(s, e->loc, "division by zero");
      else
        err(s, e->loc, "the divisor may be zero (it ranges over %lld..%lld)", (long long)r.lo,
            (long long)r.hi);
      return NONE;
    }
    if (l.lo == INT64_MIN && (r.lo == -1 || r.hi == -1)) {
      err(s, e->loc, "integer overflow");
      return NONE;
    }
    /* Integer division is exact: `dim HD = D / H` is a dim only when H divides D, and truncating
     * it would silently give every later shape the wrong size. */
    if (l.lo == l.hi && r.lo == r.hi && l.lo % r.lo) {
      err(s, e->loc, "%lld / %lld leaves a remainder of %lld: integer division must be exact",
          (long long)l.lo, (long long)r.lo, (long long)(l.lo % r.lo));
      return NONE;
    }
    if ((l.lo != l.hi || r.lo != r.hi) && !(l.lo == 0 && l.hi == 0) &&
        !(r.lo == r.hi && (r.lo == 1 || r.lo == -1))) {
      char ls[48], rs[48];
      snprintf(ls, sizeof ls, l.lo == l.hi ? "%lld" : "%lld..%lld", (long long)l.lo, (long long)l.hi);
      snprintf(rs, sizeof rs, r.lo == r.hi ? "%lld" : "%lld..%lld", (long long)r.lo, (long long)r.hi);
      err(s, e->loc, "%s / %s may leave a remainder: integer division must be exact", ls, rs);
      return NONE;
    }
    c[0] = l.lo / r.lo, c[1] = l.lo / r.hi, c[2] = l.hi / r.lo, c[3] = l.hi / r.hi;
    break;
  default:
    MLKC_BUG("binary operator %d", e->op);
  }
  Value v = {.kind = V_INT, .lo = c[0], .hi = c[0]};
  for (int i = 1; i < 4; i++) {
    if (c[i] < v.lo)
      v.lo = c[i];
    if (c[i] > v.hi)
      v.hi = c[i];
  }
  return v;
}

/* The value v of e as an integer that must be a known constant (dims, sizes, tiles). */
static bool const_int(Sema *s, const Expr *e, Value v, const char *what, int64_t *out) {
  if (v.kind == V_NONE)
    return false;
  if (v.kind != V_INT) {
    err(s, e->loc, "%s must be an integer, got %s", what, kind_desc(&v));
    return false;
  }
  if (v.sym) {
    err(s, e->loc, "%s must be a constant, but it depends on the dynamic dim '%s'", what,
        v.sym->name);
    return false;
  }
  if (v.lo != v.hi) {
    err(s, e->loc, "%s must be a constant, but it ranges over %lld..%lld", what, (long long)v.lo,
        (long long)v.hi);
    return false;
  }
  *out = v.lo;
  return true;
}

/* Evaluates an integer expression that must be a known constant (dims, sizes, tiles). */
static bool eval_const(Sema *s, Binding *scope, const Expr *e, const char *what, int64_t *out) {
  return const_int(s, e, eval(s, scope, e), what, out);
}

/* A dim's value in expressions: its integer or float, or a dynamic dim's symbol. */
static Value dim_value(const DimDecl *dd) {
  if (!dd->value)
    return (Value){.kind = V_INT, .lo = 1, .hi = 1, .sym = dd};
  return dd->is_float ? (Value){.kind = V_FLOAT, .f = dd->fresolved} : vint(dd->resolved);
}

/* A shape dim: a positive constant or a positive multiple of a dynamic dim. */
static bool eval_dim(Sema *s, Binding *scope, const Expr *e, int64_t *k, const DimDecl **sym) {
  bool saved = s->in_shape;
  s->in_shape = true;
  Value v = eval(s, scope, e);
  s->in_shape = saved;
  if (v.kind == V_NONE)
    return false;
  if (v.kind != V_INT) {
    err(s, e->loc, "a dimension must be an integer, got %s", kind_desc(&v));
    return false;
  }
  if (v.lo != v.hi) {
    err(s, e->loc, "a dimension must be a constant, but it ranges over %lld..%lld",
        (long long)v.lo, (long long)v.hi);
    return false;
  }
  if (v.lo <= 0) {
    err(s, e->loc, "dimension must be positive, got %lld", (long long)v.lo);
    return false;
  }
  *k = v.lo;
  *sym = v.sym;
  return true;
}

static const Type *eval_type(Sema *s, Binding *scope, const TypeExpr *te) {
  if (te->ndims > MLK_MAX_RANK) {
    err(s, te->loc, "a tensor has at most %d dimensions, this one has %d", MLK_MAX_RANK, te->ndims);
    return NULL;
  }
  Type *t = arena_alloc(s->a, sizeof *t);
  t->dtype = te->dtype;
  t->rank = te->ndims;
  bool ok = true;
  int i = 0;
  for (const Expr *e = te->dims; e; e = e->next, i++)
    ok = eval_dim(s, scope, e, &t->shape[i], &t->sym[i]) && ok;
  return ok ? t : NULL;
}

/* ---------------------------------------------------------------- configs */

/* The scope of a config: its dims and mesh axes. */
static Binding *config_scope(Sema *s, Config *c) {
  Binding *scope = NULL;
  for (DimDecl *dd = c->dims; dd; dd = dd->next)
    bind(s, &scope, dd->name, dd->loc, B_DIM, dim_value(dd));
  for (MeshDecl *m = c->meshes; m; m = m->next)
    bind(s, &scope, m->name, m->loc, B_MESH, (Value){.kind = V_MESH, .mesh = m});
  return scope;
}

/* Whether dim `self`'s expression is a float: a float literal, or a float dim before it. */
static bool expr_is_float(const Expr *e, const Config *c, const DimDecl *self) {
  if (!e)
    return false;
  if (e->kind == EXPR_FLOAT)
    return true;
  if (e->kind == EXPR_NAME)
    for (const DimDecl *dd = c->dims; dd && dd != self; dd = dd->next)
      if (!strcmp(dd->name, e->name))
        return dd->is_float;
  return expr_is_float(e->lhs, c, self) || expr_is_float(e->rhs, c, self);
}

static void check_config(Sema *s, Config *c) {
  Binding *scope = NULL;
  for (DimDecl *dd = c->dims; dd; dd = dd->next) {
    Binding *prev = lookup(scope, dd->name);
    if (prev) {
      err(s, dd->loc, "dim '%s' is declared twice in config '%s'", dd->name, c->name);
      diag_note(s->d, prev->loc, "first declared here");
    }
    if (dd->from && dd->from_fn && (strcmp(dd->from_fn, "optional") || dd->from->next))
      err(s, dd->from_loc, "dim '%s' binds one config.json key, as from \"KEY\" or "
          "from optional(\"KEY\")", dd->name);
    else if (dd->from && !*dd->from->str)
      err(s, dd->from->loc, "dim '%s' binds an empty config.json key", dd->name);
    int errors = s->d->nerrors;
    if (dd->value && dd->bound_file) {
      /* mlkc --config: the value of its key, of the kind its own expression has */
      const char *key = dd->from->str;
      if (expr_is_float(dd->value, c, dd)) {
        dd->is_float = true;
        dd->fresolved = dd->bound_f;
      } else if (!dd->bound_integral) {
        err(s, dd->from->loc, "config '%s': '%s' is %g, but dim '%s' is an integer", dd->bound_file,
            key, dd->bound_f, dd->name);
      } else if (dd->bound_i <= 0) {
        err(s, dd->from->loc, "config '%s': '%s' is %lld, but dim '%s' must be positive",
            dd->bound_file, key, (long long)dd->bound_i, dd->name);
      } else {
        dd->resolved = dd->bound_i;
      }
      if (!prev)
        bind(s, &scope, dd->name, dd->loc, B_DIM, dim_value(dd));
    } else if (dd->value) {
      Value fv = eval(s, scope, dd->value);
      int64_t v;
      if (fv.kind == V_FLOAT) { /* a named number of the config, not a size */
        dd->is_float = true;
        dd->fresolved = fv.f;
      } else if (const_int(s, dd->value, fv, "a dim", &v)) {
        if (v <= 0)
          err(s, dd->value->loc, "dim '%s' must be positive, got %lld", dd->name, (long long)v);
        dd->resolved = v;
      }
      if (!prev)
        bind(s, &scope, dd->name, dd->loc, B_DIM, dim_value(dd));
    } else {
      int64_t lo, hi;
      bool ok = eval_const(s, scope, dd->lo, "a dim range", &lo);
      ok = eval_const(s, scope, dd->hi, "a dim range", &hi) && ok;
      if (ok && (lo <= 0 || hi < lo))
        err(s, dd->loc, "dynamic dim '%s' needs a range 1 <= lo <= hi, got %lld..%lld", dd->name,
            (long long)lo, (long long)hi);
      else if (ok) {
        dd->lo_v = lo;
        dd->hi_v = hi;
      }
      if (!prev)
        bind(s, &scope, dd->name, dd->loc, B_DIM, (Value){.kind = V_INT, .lo = 1, .hi = 1, .sym = dd});
    }
    /* a dim bound to a config.json key whose value is wrong: the models over the config would
     * only repeat its consequences in every shape (a written dim's errors are the program's own,
     * and its models are checked as they are) */
    if (dd->lacked_by && s->d->nerrors > errors)
      diag_note(s->d, dd->from->loc, "config '%s' has no '%s': dim '%s' keeps its own expression",
                dd->lacked_by, dd->from->str, dd->name);
    c->bad |= dd->from && s->d->nerrors > errors;
  }
  for (MeshDecl *m = c->meshes; m; m = m->next) {
    Binding *prev = lookup(scope, m->name);
    if (prev) {
      err(s, m->loc, "'%s' is declared twice in config '%s'", m->name, c->name);
      diag_note(s->d, prev->loc, "first declared here");
    }
    int64_t v;
    if (eval_const(s, scope, m->value, "a mesh axis size", &v)) {
      if (v <= 0)
        err(s, m->value->loc, "mesh axis '%s' must have a positive size, got %lld", m->name,
            (long long)v);
      m->resolved = v;
    }
    bind(s, &scope, m->name, m->loc, B_MESH, (Value){.kind = V_MESH, .mesh = m});
  }
}

/* Lookups that the dim-expression evaluator needs to see dims "used before declared". */
static const DimDecl *find_dim(Config *c, const char *name) {
  for (DimDecl *dd = c ? c->dims : NULL; dd; dd = dd->next)
    if (!strcmp(dd->name, name))
      return dd;
  return NULL;
}

/* ---------------------------------------------------------------- expressions */

static Value eval_index(Sema *s, Binding *scope, const Expr *e);
static Value eval_call(Sema *s, Binding *scope, const Expr *e);
static void made_by(Sema *s, Value *v, const Builtin *b);
static bool want_activation(Sema *s, const char *op, const Expr *ae, const Value *v);
static Value binary_tensor(Sema *s, const Expr *e, const Value *l, const Value *r);
static bool same_dim(const Type *a, int i, const Type *b, int j);

/* Whether statements `st` (a megakernel's body, its loops included) assign `name`. */
static bool stmts_assign(const Stmt *st, const char *name) {
  for (; st; st = st->next) {
    if (st->kind == STMT_ASSIGN)
      for (const StrList *t = st->targets; t; t = t->next)
        if (!strcmp(t->str, name))
          return true;
    if (st->kind == STMT_FOR && stmts_assign(st->body, name))
      return true;
  }
  return false;
}

/* Output `b` read where it has no value yet in the megakernel being checked: it holds what
 * another megakernel of the model wrote there in its latest run, unless this one writes it later
 * (then the read would race with that write) or none writes it. */
static bool output_readable(Sema *s, const Binding *b, Loc loc) {
  if (!s->mk || stmts_assign(s->mk->body, b->name)) {
    err(s, loc, "output '%s' is read before it is written", b->name);
    return false;
  }
  for (const Megakernel *mk = s->model->kernels; mk; mk = mk->next)
    if (mk != s->mk && stmts_assign(mk->body, b->name))
      return true;
  err(s, loc, "output '%s' is read, but no megakernel of model '%s' writes it", b->name,
      s->model->name);
  return false;
}

static Value eval_name(Sema *s, Binding *scope, const Expr *e) {
  Binding *b = lookup(scope, e->name);
  if (!b) {
    const DimDecl *later = s->cfg && s->depth == 0 ? find_dim(s->cfg, e->name) : NULL;
    if (later && !s->model) {
      err(s, e->loc, "dim '%s' is used before it is declared", e->name);
      diag_note(s->d, later->loc, "'%s' declared here", later->name);
    } else if (find_layer(s, e->name) || is_builtin(e->name)) {
      err(s, e->loc, "'%s' is %s, call it with (...)", e->name,
          is_builtin(e->name) ? "an operation" : "a layer");
    } else {
      err(s, e->loc, "unknown %s '%s'", s->in_shape ? "dim" : "name", e->name);
    }
    return NONE;
  }
  b->used = true;
  if (b->kind == B_DECL && b->decl->kind == DECL_OUTPUT && !b->written &&
      !output_readable(s, b, e->loc))
    return NONE;
  return b->v;
}

static Value eval_expr(Sema *s, Binding *scope, const Expr *e);

/* Evaluates `e` and records its tensor type on the node for lowering (a layer body is checked at
 * each call: the node keeps the type of the last one). */
static Value eval(Sema *s, Binding *scope, const Expr *e) {
  Value v = eval_expr(s, scope, e);
  ((Expr *)e)->type = v.kind == V_TENSOR ? v.type : NULL;
  return v;
}

/* A bias: a bf16 param vector (or a view of one), which `+` adds to every row of f32 rows. */
static bool is_bias(const Value *v) {
  return v->type->dtype == MLK_BF16 && v->type->rank == 1 && v->weight;
}

/* `a + b` and `a * b` of two tensors: elementwise over f32 tensors of one shape, or `x + b` of a
 * bias b [N] (a bf16 param vector) over f32 rows x [..., N]. The language broadcasts an f32
 * operand of lower rank over the other's leading dims too, which the lowering cannot build (the
 * eltwise op, and a matvec's residual or gated product, read both operands row by row; only a
 * bias is read as one vector for every row). */
static Value binary_tensor(Sema *s, const Expr *e, const Value *l, const Value *r) {
  if (e->op != '+' && e->op != '*') {
    err(s, e->loc, "operator '%c' on tensors is not supported yet (only + and *)", e->op);
    return NONE;
  }
  if (is_bias(l) || is_bias(r)) {
    const Value *b = is_bias(r) ? r : l, *x = b == r ? l : r;
    const Type *xt = x->type, *bt = b->type;
    if (xt->dtype != MLK_F32 || !same_dim(bt, 0, xt, xt->rank - 1)) {
      err(s, e->loc, "operator '%c' adds a bias, a bf16 param vector [N], to the rows of an f32 "
          "tensor [..., N], got %s and %s", e->op, tstr(s, l->type), tstr(s, r->type));
      return NONE;
    }
    if (e->op == '*') {
      err(s, e->loc, "operator '*' scaling the rows of %s by the bf16 vector %s cannot be lowered "
          "to a megakernel yet: a bf16 param vector is only added to rows (a bias, '+')",
          tstr(s, xt), tstr(s, bt));
      return NONE;
    }
    if (!want_activation(s, "operator '+'", e, x))
      return NONE;
    Value v = {.kind = V_TENSOR, .type = xt};
    made_by(s, &v, builtin_of(IR_ADD));
    /* split(matvec(x, w) + b, ...) cuts the bias with the weight's rows */
    v.row_slices = x->row_slices && x->origin && x->origin->op == IR_MATVEC;
    return v;
  }
  /* elementwise f32, the lower-rank operand broadcast over the leading dims */
  const Type *big = l->type->rank >= r->type->rank ? l->type : r->type;
  const Type *small = big == l->type ? r->type : l->type;
  bool ok = l->type->dtype == MLK_F32 && r->type->dtype == MLK_F32;
  for (int i = 0; ok && i < small->rank; i++) {
    int j = big->rank - small->rank + i;
    ok = small->shape[i] == big->shape[j] && small->sym[i] == big->sym[j];
  }
  if (!ok) {
    err(s, e->loc, "operator '%c' needs f32 tensors of the same shape (or one broadcast "
        "over the other's leading dims), got %s and %s", e->op, tstr(s, l->type),
        tstr(s, r->type));
    return NONE;
  }
  /* the eltwise op (or the matvec epilogue it becomes) reads both operands per row */
  if (!type_equal(l->type, r->type)) {
    err(s, e->loc, "operator '%c' broadcasting %s over %s cannot be lowered to a megakernel "
        "yet: elementwise operands have one shape, and only a bias (a bf16 param vector, '+') "
        "is added to every row", e->op, tstr(s, small), tstr(s, big));
    return NONE;
  }
  if (!want_activation(s, e->op == '+' ? "operator '+'" : "operator '*'", e, l))
    return NONE;
  Value v = {.kind = V_TENSOR, .type = big};
  made_by(s, &v, builtin_of(e->op == '+' ? IR_ADD : IR_MUL));
  return v;
}

static Value eval_expr(Sema *s, Binding *scope, const Expr *e) {
  switch (e->kind) {
  case EXPR_INT:
    return vint(e->ival);
  case EXPR_FLOAT:
    return (Value){.kind = V_FLOAT, .f = e->fval};
  case EXPR_DTYPE:
    return (Value){.kind = V_DTYPE, .dtype = e->dtype};
  case EXPR_NAME:
    return eval_name(s, scope, e);
  case EXPR_NEG: {
    Value v = eval(s, scope, e->lhs);
    if (v.kind == V_INT && !v.sym) {
      if (v.lo == INT64_MIN) {
        err(s, e->loc, "integer overflow");
        return NONE;
      }
      return (Value){.kind = V_INT, .lo = -v.hi, .hi = -v.lo};
    }
    if (v.kind == V_FLOAT)
      return (Value){.kind = V_FLOAT, .f = -v.f};
    if (v.kind != V_NONE)
      err(s, e->loc, "unary '-' needs a number, got %s", kind_desc(&v));
    return NONE;
  }
  case EXPR_BINARY: {
    Value l = eval(s, scope, e->lhs), r = eval(s, scope, e->rhs);
    if (l.kind == V_NONE || r.kind == V_NONE)
      return NONE;
    /* a mesh axis in arithmetic is its number of ranks: `heads / tp` is a rank's heads */
    if (l.kind == V_MESH)
      l = vint(l.mesh->resolved);
    if (r.kind == V_MESH)
      r = vint(r.mesh->resolved);
    if (l.kind == V_INT && r.kind == V_INT)
      return int_binary(s, e, l, r);
    if ((l.kind == V_FLOAT || int_known(&l)) && (r.kind == V_FLOAT || int_known(&r))) {
      double a = l.kind == V_FLOAT ? l.f : (double)l.lo, b = r.kind == V_FLOAT ? r.f : (double)r.lo;
      double v = e->op == '+' ? a + b : e->op == '-' ? a - b : e->op == '*' ? a * b : a / b;
      if (!isfinite(v)) {
        err(s, e->loc, "the result is not a finite number");
        return NONE;
      }
      return (Value){.kind = V_FLOAT, .f = v};
    }
    if (l.kind == V_TENSOR && r.kind == V_TENSOR)
      return binary_tensor(s, e, &l, &r);
    if (l.kind == V_TENSOR || r.kind == V_TENSOR) {
      const Value *o = l.kind == V_TENSOR ? &r : &l;
      const Expr *oe = l.kind == V_TENSOR ? e->rhs : e->lhs;
      Binding *ob = oe->kind == EXPR_NAME ? lookup(scope, oe->name) : NULL;
      if (ob)
        err(s, oe->loc, "'%s' is %s, not a tensor", oe->name,
            ob->kind == B_DIM ? "a dim" : kind_desc(o));
      else if (o->kind == V_INT && int_known(o))
        err(s, oe->loc, "expected a tensor, found the integer %lld", (long long)o->lo);
      else
        err(s, oe->loc, "expected a tensor, found %s", kind_desc(o));
      return NONE;
    }
    err(s, e->loc, "operator '%c' is not defined on %s and %s", e->op, kind_desc(&l),
        kind_desc(&r));
    return NONE;
  }
  case EXPR_CALL:
    return eval_call(s, scope, e);
  case EXPR_INDEX:
    return eval_index(s, scope, e);
  case EXPR_MEMBER: {
    /* c.D: a dim of the model's config through its parameter name */
    if (e->lhs->kind == EXPR_NAME && s->model && s->cfg && !strcmp(e->lhs->name, s->model->cfg_param)) {
      for (DimDecl *dd = s->cfg->dims; dd; dd = dd->next)
        if (!strcmp(dd->name, e->name))
          return dim_value(dd);
      err(s, e->loc, "config '%s' has no dim '%s'", s->cfg->name, e->name);
      return NONE;
    }
    Value v = eval(s, scope, e->lhs);
    if (v.kind != V_NONE)
      err(s, e->loc, "%s has no member '%s'", kind_desc(&v), e->name);
    return NONE;
  }
  case EXPR_SLICE:
    err(s, e->loc, "a slice 'a:b' is only allowed inside [...]");
    return NONE;
  case EXPR_KWARG:
    err(s, e->loc, "a keyword argument '%s = ...' is only allowed in a call", e->name);
    return NONE;
  }
  MLKC_BUG("expression kind %d", e->kind);
}

/* Checks an index against a dim of size k*sym; true if in range (a dynamic dim only checks >= 0). */
static bool check_index(Sema *s, const Expr *ie, const Value *iv, int64_t k, const DimDecl *sym,
                        int dim, const char *what) {
  if (iv->lo < 0 || (!sym && iv->hi >= k)) {
    char size[64];
    dim_str(size, sizeof size, k, sym);
    if (iv->lo == iv->hi)
      err(s, ie->loc, "index %lld is out of range for dimension %d of %s (size %s)",
          (long long)iv->lo, dim, what, size);
    else
      err(s, ie->loc, "index ranges over %lld..%lld, out of range for dimension %d of %s (size %s)",
          (long long)iv->lo, (long long)iv->hi, dim, what, size);
    return false;
  }
  return true;
}

/* An operand of an op, as the runtime's ops read them: [N] or [B, N], B the batch dim (a param's
 * view is one too). */
static bool want_activation(Sema *s, const char *op, const Expr *ae, const Value *v) {
  const Type *t = v->type;
  if (t->rank == 1 || (t->rank == 2 && t->sym[0] && !t->sym[1]))
    return true;
  err(s, ae->loc, "%s of %s cannot be lowered to a megakernel yet: the runtime's ops read "
      "operands of [N] or [B, N] (B the batch dim)", op, tstr(s, t));
  return false;
}

/* Index `ie` of the tensor `base` keeps the view contiguous: a param is indexed by integers and
 * slices of its leading dims (`kept` dims are left before this one), so that the view is the param
 * at an element offset (an activation is not indexed at all: eval_index). `narrows`: the index
 * takes part of its dim. */
static bool not_lowered_view(Sema *s, const Expr *e, const Expr *ie, const Value *base,
                             const char *what, int kept, bool narrows, bool *reported) {
  if (!base->weight) {
    if (!*reported)
      err(s, e->loc, "indexing %s cannot be lowered to a megakernel yet: only params are indexed "
          "or sliced (the runtime reads an activation whole)", what);
    *reported = true;
    return false;
  }
  if (kept && narrows) {
    err(s, ie->loc, "this index of %s cannot be lowered to a megakernel yet: a view of a param "
        "indexes or slices its leading dims only, so that it is contiguous", what);
    return false;
  }
  return true;
}

static Value eval_index(Sema *s, Binding *scope, const Expr *e) {
  Value base = eval(s, scope, e->lhs);
  if (base.kind == V_NONE)
    return NONE;
  const char *what = e->lhs->kind == EXPR_NAME ? arena_printf(s->a, "'%s'", e->lhs->name) : "the tensor";
  if (base.kind == V_CACHE) {
    if (base.indexed || e->nargs != 1) {
      err(s, e->loc, "a cache is indexed by its layer only: %s[l]", what);
      return NONE;
    }
    Value l = eval(s, scope, e->args);
    if (l.kind == V_NONE)
      return NONE;
    if (l.kind != V_INT || l.sym) {
      err(s, e->args->loc, "a cache layer index must be an integer, got %s", kind_desc(&l));
      return NONE;
    }
    for (CacheInfo *ci = s->caches; ci; ci = ci->next)
      if (ci->decl == base.decl && ci->ok && !check_index(s, e->args, &l, ci->layers, NULL, 0, what))
        return NONE;
    base.indexed = true;
    return base;
  }
  if (base.kind != V_TENSOR) {
    err(s, e->loc, "%s cannot be indexed", kind_desc(&base));
    return NONE;
  }
  const Type *t = base.type;
  if (e->nargs > t->rank) {
    err(s, e->loc, "%d indexes for %s, which has %d dimension%s", e->nargs, what, t->rank,
        t->rank == 1 ? "" : "s");
    return NONE;
  }
  Type *r = arena_alloc(s->a, sizeof *r);
  r->dtype = t->dtype;
  bool weight = base.weight, ok = true, gathered = false, reported = false;

  int i = 0;
  for (const Expr *ie = e->args; ie; ie = ie->next, i++) {
    if (ie->kind == EXPR_SLICE) {
      int64_t lo = 0, hi = t->shape[i];
      if (t->sym[i] && (ie->lhs || ie->rhs)) {
        err(s, ie->loc, "dimension %d of %s is dynamic: it can only be taken whole (':')", i, what);
        ok = false;
        continue;
      }
      if ((ie->lhs && !eval_const(s, scope, ie->lhs, "a slice bound", &lo)) ||
          (ie->rhs && !eval_const(s, scope, ie->rhs, "a slice bound", &hi))) {
        ok = false;
        continue;
      }
      if (!t->sym[i] && (lo < 0 || hi > t->shape[i] || lo >= hi)) {
        err(s, ie->loc, "slice %lld:%lld is out of range for dimension %d of %s (size %lld)",
            (long long)lo, (long long)hi, i, what, (long long)t->shape[i]);
        ok = false;
        continue;
      }
      if (!not_lowered_view(s, e, ie, &base, what, r->rank,
                            !t->sym[i] && (lo != 0 || hi != t->shape[i]), &reported)) {
        ok = false;
        continue;
      }
      r->shape[r->rank] = t->sym[i] ? t->shape[i] : hi - lo;
      r->sym[r->rank++] = t->sym[i];
      continue;
    }
    Value iv = eval(s, scope, ie);
    if (iv.kind == V_NONE) {
      ok = false;
      continue;
    }
    if (iv.kind == V_TENSOR) {
      /* a gather: table[indices] picks rows, e.g. embed[tokens] */
      if (i != 0 || e->nargs != 1 || iv.type->dtype != MLK_I32) {
        err(s, ie->loc, "a gather of %s takes one i32 tensor of row indexes, got %s", what,
            tstr(s, iv.type));
        ok = false;
        continue;
      }
      if (iv.type->rank + t->rank - 1 > MLK_MAX_RANK) {
        err(s, ie->loc, "the gather would have more than %d dimensions", MLK_MAX_RANK);
        ok = false;
        continue;
      }
      /* the gather tile reads rows of a bf16 table */
      if (!base.weight || t->dtype != MLK_BF16 || t->rank != 2) {
        err(s, e->loc, "a gather of %s cannot be lowered to a megakernel yet: it reads rows of a "
            "bf16 param matrix [rows, N], and %s is %s%s", what, what, tstr(s, t),
            base.weight ? "" : ", not a param");
        ok = false;
        continue;
      }
      if (!want_activation(s, "a gather", ie, &iv)) {
        ok = false;
        continue;
      }
      for (int j = 0; j < iv.type->rank; j++) {
        r->shape[r->rank] = iv.type->shape[j];
        r->sym[r->rank++] = iv.type->sym[j];
      }
      r->dtype = MLK_F32; /* gathered rows become activations */
      weight = false;
      gathered = true;
      continue;
    }
    if (iv.kind != V_INT || iv.sym) {
      err(s, ie->loc, "an index must be an integer, a slice or an i32 tensor, got %s",
          kind_desc(&iv));
      ok = false;
      continue;
    }
    if (!check_index(s, ie, &iv, t->shape[i], t->sym[i], i, what) ||
        !not_lowered_view(s, e, ie, &base, what, r->rank, true, &reported))
      ok = false;
  }
  for (; i < t->rank; i++) {
    r->shape[r->rank] = t->shape[i];
    r->sym[r->rank++] = t->sym[i];
  }
  if (!ok)
    return NONE;
  if (r->rank == 0) {
    err(s, e->loc, "indexing every dimension of %s gives a scalar, which is not supported", what);
    return NONE;
  }
  Value v = {.kind = V_TENSOR, .type = r, .weight = weight};
  if (gathered)
    made_by(s, &v, builtin_of(IR_GATHER));
  return v;
}

/* ---------------------------------------------------------------- calls */

#define MAX_ARGS 32 /* positional and keyword arguments of one call, each */

/* The arguments of a call: positional ones in order, keyword ones by name. */
typedef struct Args {
  const Expr *pos[MAX_ARGS];
  Value posv[MAX_ARGS];
  int npos;
  const Expr *kw[MAX_ARGS];
  Value kwv[MAX_ARGS];
  int nkw;
  bool ok;
} Args;

static void eval_args(Sema *s, Binding *scope, const Expr *call, Args *a) {
  memset(a, 0, sizeof *a);
  a->ok = true;
  for (const Expr *x = call->args; x; x = x->next) {
    if (x->kind == EXPR_KWARG) {
      for (int i = 0; i < a->nkw; i++)
        if (!strcmp(a->kw[i]->name, x->name)) {
          err(s, x->loc, "keyword argument '%s' is given twice", x->name);
          a->ok = false;
        }
      if (a->nkw == MAX_ARGS) {
        err(s, x->loc, "more than %d keyword arguments", MAX_ARGS);
        a->ok = false;
        return;
      }
      a->kw[a->nkw] = x;
      a->kwv[a->nkw] = eval(s, scope, x->lhs);
      a->ok = a->kwv[a->nkw++].kind != V_NONE && a->ok;
    } else {
      if (a->nkw) {
        err(s, x->loc, "a positional argument cannot follow keyword arguments");
        a->ok = false;
      }
      if (a->npos == MAX_ARGS) {
        err(s, x->loc, "more than %d arguments", MAX_ARGS);
        a->ok = false;
        return;
      }
      a->pos[a->npos] = x;
      a->posv[a->npos] = eval(s, scope, x);
      a->ok = a->posv[a->npos++].kind != V_NONE && a->ok;
    }
  }
}

/* Checks a call's arity and keyword names against its entry in the table of operations. */
static bool check_arity(Sema *s, const Expr *call, const Args *a, const Builtin *b) {
  int min = b->min_pos, max = b->max_pos < 0 ? MAX_ARGS : b->max_pos;
  if (a->npos < min || a->npos > max) {
    if (min == max)
      err(s, call->loc, "'%s' takes %d positional argument%s, got %d", call->name, min,
          min == 1 ? "" : "s", a->npos);
    else
      err(s, call->loc, "'%s' takes %d to %d positional arguments, got %d", call->name, min, max,
          a->npos);
    if (b->op == IR_SAMPLE && a->npos == 2)
      diag_note(s->d, a->pos[1]->loc, "the random numbers of a sample come from the runtime, with "
                "each row's settings and seed (mlk_model_set_sampling): drop this argument");
    return false;
  }
  bool ok = true;
  for (int i = 0; i < a->nkw; i++) {
    if (builtin_kw_index(b, a->kw[i]->name) >= 0)
      continue;
    char list[256] = "";
    size_t n = 0;
    for (int k = 0; k < b->nkws && n < sizeof list; k++)
      n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", n ? ", " : "", b->kws[k].name);
    if (n)
      err(s, a->kw[i]->loc, "'%s' has no keyword argument '%s' (it takes %s)", call->name,
          a->kw[i]->name, list);
    else
      err(s, a->kw[i]->loc, "'%s' takes no keyword arguments", call->name);
    ok = false;
  }
  return ok;
}

static const Value *kwarg(const Args *a, const char *name, const Expr **where) {
  for (int i = 0; i < a->nkw; i++)
    if (!strcmp(a->kw[i]->name, name)) {
      if (where)
        *where = a->kw[i];
      return &a->kwv[i];
    }
  return NULL;
}

/* A tensor argument of the given dtype (MLK_DTYPE_COUNT: any) and minimum rank. */
static bool want_tensor(Sema *s, const Expr *call, const Expr *ae, const Value *v, const char *arg,
                        MlkDType dt, int min_rank) {
  if (v->kind != V_TENSOR) {
    err(s, ae->loc, "'%s' needs a tensor for '%s', got %s", call->name, arg, kind_desc(v));
    return false;
  }
  if ((dt != MLK_DTYPE_COUNT && v->type->dtype != dt) || v->type->rank < min_rank) {
    err(s, ae->loc, "'%s' needs %s %s%s for '%s', got %s", call->name,
        min_rank > 1 ? "a" : "an", dt == MLK_DTYPE_COUNT ? "" : ast_dtype_name(dt),
        min_rank > 1 ? arena_printf(s->a, " tensor of rank >= %d", min_rank) : " tensor", arg,
        tstr(s, v->type));
    return false;
  }
  return true;
}

/* The value of keyword argument `kw` of a call, or its default from the table; false after
 * reporting a value the keyword does not accept (its KwRule) or a missing required one. */
static bool want_kw(Sema *s, const Expr *call, const Args *a, const BuiltinKw *kw, double *out) {
  const Expr *where = NULL;
  const Value *v = kwarg(a, kw->name, &where);
  if (!v) {
    if (kw->required) {
      err(s, call->loc, "'%s' needs the keyword argument '%s = ...'", call->name, kw->name);
      return false;
    }
    *out = kw->def;
    return true;
  }
  if (kw->rule == KWR_TOP_K) {
    if (!int_known(v) || v->lo < 0 || v->lo > MLK_SAMPLE_MAX_TOP_K) {
      err(s, where->loc, "'%s' of '%s' must be a constant integer in [1, %d]", kw->name,
          call->name, MLK_SAMPLE_MAX_TOP_K);
      return false;
    }
    if (v->lo == 0) {
      err(s, where->loc, "top_k = 0 (top-p over the whole vocabulary) is not supported: the "
          "candidates are sorted in shared memory, so give top_k in [1, %d]", MLK_SAMPLE_MAX_TOP_K);
      return false;
    }
    *out = (double)v->lo;
    return true;
  }
  if (kw->type == KW_INT) {
    if (!int_known(v) || v->lo <= 0) {
      err(s, where->loc, "'%s' of '%s' must be a positive constant integer", kw->name, call->name);
      return false;
    }
    if (kw->rule == KWR_POWER_OF_TWO && (v->lo & (v->lo - 1))) {
      err(s, call->loc, "%s %s must be a power of two, got %lld", call->name, kw->name,
          (long long)v->lo);
      return false;
    }
    *out = (double)v->lo;
    return true;
  }
  double f = v->kind == V_FLOAT ? v->f : int_known(v) ? (double)v->lo : NAN;
  if (kw->rule == KWR_TEMPERATURE && f == 0) {
    *out = 0; /* greedy */
    return true;
  }
  if (isnan(f) || f <= 0) {
    err(s, where->loc, "'%s' of '%s' must be %s number", kw->name, call->name,
        kw->rule == KWR_TEMPERATURE ? "0 (greedy) or a positive" : "a positive");
    return false;
  }
  if (kw->rule == KWR_TOP_P && f > 1.0) {
    err(s, where->loc, "'%s' of '%s' must be in (0, 1], got %g", kw->name, call->name, f);
    return false;
  }
  if (kw->rule == KWR_TEMPERATURE && ((float)f <= 0.0f || !isfinite((float)f))) {
    err(s, where->loc, "'%s' of '%s' must be 0 (greedy) or a positive f32, got %g", kw->name,
        call->name, f);
    return false;
  }
  *out = f;
  return true;
}

/* Every keyword argument of a call (given or defaulted), in the table's order, into vals; stops
 * at the first the keyword does not accept. */
static bool want_kws(Sema *s, const Expr *call, const Args *a, const Builtin *b, double *vals) {
  for (int k = 0; k < b->nkws; k++)
    if (!want_kw(s, call, a, &b->kws[k], &vals[k]))
      return false;
  return true;
}

static bool same_dim(const Type *a, int i, const Type *b, int j) {
  return a->shape[i] == b->shape[j] && a->sym[i] == b->sym[j];
}

static Value tensor(const Type *t) { return (Value){.kind = V_TENSOR, .type = t}; }

/* The value of a builtin's result `i` (builtin_result_type, shared with elaborate). */
static Value result(Sema *s, IrOp op, const Args *a, const int64_t *sizes, int i) {
  const Type *in[MAX_ARGS] = {0};
  for (int j = 0; j < a->npos; j++)
    if (a->posv[j].kind == V_TENSOR)
      in[j] = a->posv[j].type;
  Type *r = arena_alloc(s->a, sizeof *r);
  *r = builtin_result_type(op, in, sizes, i);
  return tensor(r);
}

static CacheInfo *cache_info(Sema *s, const TensorDecl *d) {
  for (CacheInfo *ci = s->caches; ci; ci = ci->next)
    if (ci->decl == d)
      return ci;
  return NULL;
}

/* ---------------------------------------------------------------- the rules of each operation */

/* Each checks a call whose arity and keyword names were checked (check_arity) and gives its value;
 * kw[] holds the keyword arguments in the table's order. */

static Value rule_matvec(Sema *s, const Expr *call, const Args *a, const double *kw) {
  (void)kw;
  const Value *x = &a->posv[0], *w = &a->posv[1];
  if (!want_tensor(s, call, a->pos[0], x, "x", MLK_F32, 1))
    return NONE;
  if (w->kind != V_TENSOR || w->type->dtype != MLK_BF16 || w->type->rank != 2) {
    err(s, a->pos[1]->loc, "matvec weight must be a bf16 matrix [N, K], got %s",
        w->kind == V_TENSOR ? tstr(s, w->type) : kind_desc(w));
    return NONE;
  }
  if (!w->weight) {
    err(s, a->pos[1]->loc, "matvec weight must be a param (or a slice of one)");
    return NONE;
  }
  const Type *xt = x->type, *wt = w->type;
  if (!same_dim(xt, xt->rank - 1, wt, 1)) {
    err(s, call->loc, "matvec inner dimensions differ: the input is %s but the weight is %s "
        "(K = %lld)", tstr(s, xt), tstr(s, wt), (long long)wt->shape[1]);
    return NONE;
  }
  if (wt->shape[1] > MLK_MATVEC_MAX_K) {
    err(s, call->loc, "matvec inner dimension %lld exceeds the supported %d",
        (long long)wt->shape[1], MLK_MATVEC_MAX_K);
    return NONE;
  }
  return result(s, IR_MATVEC, a, NULL, 0);
}

static Value rule_activation(Sema *s, const Expr *call, const Args *a, IrOp op) {
  if (a->posv[0].kind != V_TENSOR || a->posv[0].type->dtype != MLK_F32) {
    err(s, a->pos[0]->loc, "'%s' needs an f32 tensor, got %s", call->name,
        a->posv[0].kind == V_TENSOR ? tstr(s, a->posv[0].type) : kind_desc(&a->posv[0]));
    return NONE;
  }
  return result(s, op, a, NULL, 0);
}

static Value rule_relu(Sema *s, const Expr *call, const Args *a, const double *kw) {
  (void)kw;
  return rule_activation(s, call, a, IR_RELU);
}

static Value rule_silu(Sema *s, const Expr *call, const Args *a, const double *kw) {
  (void)kw;
  return rule_activation(s, call, a, IR_SILU);
}

static Value rule_rmsnorm(Sema *s, const Expr *call, const Args *a, const double *kw) {
  (void)call, (void)kw;
  const Value *x = &a->posv[0], *w = &a->posv[1];
  if (w->kind != V_TENSOR || w->type->rank != 1 || !same_dim(w->type, 0, x->type, x->type->rank - 1)) {
    err(s, a->pos[1]->loc, "rmsnorm weight must be a vector matching the last dimension of %s, "
        "got %s", tstr(s, x->type), w->kind == V_TENSOR ? tstr(s, w->type) : kind_desc(w));
    return NONE;
  }
  if (w->type->dtype != MLK_BF16 || !w->weight) {
    err(s, a->pos[1]->loc, "rmsnorm weight must be a bf16 param (or a view of one), got %s%s",
        tstr(s, w->type), w->weight ? "" : ", not a param");
    return NONE;
  }
  return result(s, IR_RMSNORM, a, NULL, 0);
}

static Value rule_rope(Sema *s, const Expr *call, const Args *a, const double *kw) {
  const Builtin *b = builtin_of(IR_ROPE);
  const Type *xt = a->posv[0].type, *pt = a->posv[1].type;
  int64_t hd = (int64_t)kw[builtin_kw_index(b, "head_dim")];
  if (kw[builtin_kw_index(b, "factor")] > 1.0 && kw[builtin_kw_index(b, "linear_factor")] > 1.0) {
    err(s, call->loc, "rope scales its frequencies one way: factor (Llama 3 scaling) or "
        "linear_factor (linear scaling), not both");
    return NONE;
  }
  if (pt->rank != 1 || !same_dim(pt, 0, xt, 0)) {
    err(s, a->pos[1]->loc, "rope positions must be one per row of %s, got %s", tstr(s, xt),
        tstr(s, pt));
    return NONE;
  }
  if (hd % 2 || xt->sym[xt->rank - 1] || xt->shape[xt->rank - 1] % hd) {
    err(s, call->loc, "rope head_dim %lld must be even and divide the last dimension of %s",
        (long long)hd, tstr(s, xt));
    return NONE;
  }
  return result(s, IR_ROPE, a, NULL, 0);
}

static Value rule_split(Sema *s, const Expr *call, const Args *a, const double *kw) {
  (void)kw;
  const Type *xt = a->posv[0].type;
  int last = xt->rank - 1;
  Value r = {.kind = V_TUPLE, .nitems = a->npos - 1};
  r.items = arena_alloc(s->a, r.nitems * sizeof *r.items);
  int64_t sizes[MAX_ARGS], sum = 0;
  for (int i = 1; i < a->npos; i++) {
    if (!int_known(&a->posv[i]) || a->posv[i].lo <= 0) {
      err(s, a->pos[i]->loc, "split sizes must be positive constant integers");
      return NONE;
    }
    sizes[i - 1] = a->posv[i].lo;
    sum += a->posv[i].lo;
  }
  if (xt->sym[last] || sum != xt->shape[last]) {
    err(s, call->loc, "split sizes add up to %lld, but the last dimension of %s is not that",
        (long long)sum, tstr(s, xt));
    return NONE;
  }
  if (!a->posv[0].row_slices) {
    err(s, a->pos[0]->loc, "split cannot be lowered to a megakernel yet but of a matvec's result "
        "(or relu or silu of one): its parts are matvecs over row slices of the weight");
    return NONE;
  }
  for (int i = 0; i < r.nitems; i++)
    r.items[i] = result(s, IR_SPLIT, a, sizes, i);
  return r;
}

static Value rule_attention(Sema *s, const Expr *call, const Args *a, const double *kw) {
  const Builtin *b = builtin_of(IR_ATTENTION);
  const Value *kv = &a->posv[1], *pos = &a->posv[2];
  int64_t h = (int64_t)kw[builtin_kw_index(b, "heads")];
  int64_t kvh = (int64_t)kw[builtin_kw_index(b, "kv_heads")];
  int64_t hd = (int64_t)kw[builtin_kw_index(b, "head_dim")];
  if (kv->kind != V_CACHE || !kv->indexed) {
    err(s, a->pos[1]->loc, "attention reads one layer of a cache: kv[l], got %s",
        kv->kind == V_CACHE ? "a whole cache" : kind_desc(kv));
    return NONE;
  }
  const Type *qt = a->posv[0].type;
  if (qt->rank != 2 || qt->sym[1] || qt->shape[1] != h * hd) {
    err(s, a->pos[0]->loc, "attention queries must be [B, heads*head_dim] = [B, %lld], got %s",
        (long long)(h * hd), tstr(s, qt));
    return NONE;
  }
  if (h % kvh) {
    err(s, call->loc, "heads (%lld) must be a multiple of kv_heads (%lld)", (long long)h,
        (long long)kvh);
    return NONE;
  }
  CacheInfo *ci = cache_info(s, kv->decl);
  if (ci && ci->ok && (ci->kv_heads != kvh || ci->head_dim != hd)) {
    err(s, a->pos[1]->loc, "cache '%s' holds %lld kv heads of %lld, but attention asks for %lld "
        "of %lld", kv->decl->name, (long long)ci->kv_heads, (long long)ci->head_dim,
        (long long)kvh, (long long)hd);
    return NONE;
  }
  if (pos->type->rank != 1 || !same_dim(pos->type, 0, qt, 0)) {
    err(s, a->pos[2]->loc, "attention positions must be one per query row, got %s",
        tstr(s, pos->type));
    return NONE;
  }
  return result(s, IR_ATTENTION, a, NULL, 0);
}

static Value rule_argmax(Sema *s, const Expr *call, const Args *a, const double *kw) {
  (void)call, (void)kw;
  return result(s, IR_ARGMAX, a, NULL, 0);
}

static Value rule_sample(Sema *s, const Expr *call, const Args *a, const double *kw) {
  (void)call, (void)kw;
  const Type *xt = a->posv[0].type;
  if (xt->rank > 2) {
    err(s, a->pos[0]->loc, "sample needs logits [B, V] (or [V]): got %s", tstr(s, xt));
    return NONE;
  }
  return result(s, IR_SAMPLE, a, NULL, 0);
}

static Value rule_allreduce(Sema *s, const Expr *call, const Args *a, const double *kw) {
  (void)kw;
  if (a->posv[0].kind != V_MESH) {
    err(s, a->pos[0]->loc, "allreduce needs a mesh axis first, got %s", kind_desc(&a->posv[0]));
    return NONE;
  }
  if (!want_tensor(s, call, a->pos[1], &a->posv[1], "x", MLK_F32, 1))
    return NONE;
  /* its value is its operand's, and so is the op that a tile(...) clause applies to (TILE_OPERAND):
   * over one rank it is the identity, over several a collective between segments (cut.c) */
  return a->posv[1];
}

/* The tensor arguments every rule above expects, checked before the keywords (in this order, so
 * that a call with several errors reports the first argument's). */
static bool want_operands(Sema *s, const Expr *call, const Args *a, const Builtin *b) {
  switch (b->op) {
  case IR_RMSNORM:
  case IR_ARGMAX:
  case IR_SPLIT:
    return want_tensor(s, call, a->pos[0], &a->posv[0], "x", MLK_F32, 1);
  case IR_ROPE:
  case IR_ATTENTION: {
    int p = b->op == IR_ROPE ? 1 : 2;
    return want_tensor(s, call, a->pos[0], &a->posv[0], b->args[0].name, MLK_F32, 2) &&
           want_tensor(s, call, a->pos[p], &a->posv[p], "pos", MLK_I32, 1);
  }
  case IR_SAMPLE:
    return want_tensor(s, call, a->pos[0], &a->posv[0], "logits", MLK_F32, 1);
  default:
    return true;
  }
}

/* Marks v (and a tuple's items) as made by a new evaluation of operation b. */
static void made_by(Sema *s, Value *v, const Builtin *b) {
  v->origin = b;
  v->op_id = ++s->nops;
  v->tile_unit = 0;
  v->row_slices = false;
  for (int i = 0; v->kind == V_TUPLE && i < v->nitems; i++)
    made_by(s, &v->items[i], b);
}

typedef Value (*RuleFn)(Sema *s, const Expr *call, const Args *a, const double *kw);

static Value builtin(Sema *s, Binding *scope, const Expr *call, const Builtin *b) {
  static const RuleFn rules[IR_OP_COUNT] = {
      [IR_MATVEC] = rule_matvec,   [IR_RELU] = rule_relu,           [IR_SILU] = rule_silu,
      [IR_RMSNORM] = rule_rmsnorm, [IR_ROPE] = rule_rope,           [IR_SPLIT] = rule_split,
      [IR_ATTENTION] = rule_attention, [IR_ARGMAX] = rule_argmax,   [IR_SAMPLE] = rule_sample,
      [IR_ALLREDUCE] = rule_allreduce,
  };
  Args a;
  eval_args(s, scope, call, &a);
  if (b->max_pos < 0 && a.npos < b->min_pos) {
    err(s, call->loc, "'%s' takes a tensor and at least two sizes, got %d argument%s", b->name,
        a.npos, a.npos == 1 ? "" : "s");
    return NONE;
  }
  if (!check_arity(s, call, &a, b) || !a.ok)
    return NONE;
  double kw[BUILTIN_MAX_KWS];
  if (!want_operands(s, call, &a, b) || !want_kws(s, call, &a, b, kw))
    return NONE;
  if (!rules[b->op])
    MLKC_BUG("builtin '%s' without a rule", b->name);
  Value v = rules[b->op](s, call, &a, kw);
  if (v.kind == V_NONE)
    return v;
  for (int i = 0; i < a.npos; i++)
    if (builtin_arg(b, i)->role == ARG_ACTIVATION && a.posv[i].kind == V_TENSOR &&
        !want_activation(s, arena_printf(s->a, "'%s' reading %s", b->name, builtin_arg(b, i)->name),
                         a.pos[i], &a.posv[i]))
      return NONE;
  if (v.kind != V_TENSOR && v.kind != V_TUPLE)
    return v;
  if (b->tile == TILE_OPERAND) {
    /* the value is its operand's (a tile(...) applies to the operand's op), but the statement
     * has an operation of its own: its wait(...) and notify(...) have one to apply to */
    s->nops++;
    return v;
  }
  made_by(s, &v, b);
  if (b->op == IR_MATVEC)
    v.row_slices = true;
  if (b->op == IR_RELU || b->op == IR_SILU)
    v.row_slices = a.posv[0].origin && a.posv[0].origin->op == IR_MATVEC;
  if (b->op == IR_ROPE)
    v.tile_unit = (int64_t)kw[builtin_kw_index(b, "head_dim")];
  return v;
}

/* kv.append(l, k, v, pos): writes the new keys and values of layer l at positions pos. */
static Value cache_method(Sema *s, Binding *scope, const Expr *call, const Value *recv) {
  Args a;
  eval_args(s, scope, call, &a);
  const Builtin *b = builtin_find(OPS_METHOD, call->name);
  if (!b) {
    err(s, call->loc, "a cache has no method '%s' (it has append)", call->name);
    return NONE;
  }
  if (recv->indexed) {
    err(s, call->loc, "append takes the layer as its first argument: %s.append(l, k, v, pos)",
        recv->decl->name);
    return NONE;
  }
  if (!check_arity(s, call, &a, b) || !a.ok)
    return NONE;
  CacheInfo *ci = cache_info(s, recv->decl);
  const Value *l = &a.posv[0], *k = &a.posv[1], *v = &a.posv[2], *pos = &a.posv[3];
  if (l->kind != V_INT || l->sym) {
    err(s, a.pos[0]->loc, "the layer of append must be an integer, got %s", kind_desc(l));
    return NONE;
  }
  if (ci && ci->ok && !check_index(s, a.pos[0], l, ci->layers, NULL, 0,
                                    arena_printf(s->a, "cache '%s'", recv->decl->name)))
    return NONE;
  if (!want_tensor(s, call, a.pos[1], k, "k", MLK_F32, 2) ||
      !want_tensor(s, call, a.pos[2], v, "v", MLK_F32, 2) ||
      !want_tensor(s, call, a.pos[3], pos, "pos", MLK_I32, 1))
    return NONE;
  if (!type_equal(k->type, v->type)) {
    err(s, a.pos[2]->loc, "keys and values differ in shape: %s and %s", tstr(s, k->type),
        tstr(s, v->type));
    return NONE;
  }
  if (ci && ci->ok &&
      (k->type->rank != 2 || k->type->sym[1] || k->type->shape[1] != ci->kv_heads * ci->head_dim)) {
    err(s, a.pos[1]->loc, "cache '%s' stores [B, %lld] keys (kv_heads*head_dim), got %s",
        recv->decl->name, (long long)(ci->kv_heads * ci->head_dim), tstr(s, k->type));
    return NONE;
  }
  if (pos->type->rank != 1 || !same_dim(pos->type, 0, k->type, 0)) {
    err(s, a.pos[3]->loc, "append positions must be one per row of the keys, got %s",
        tstr(s, pos->type));
    return NONE;
  }
  for (int i = 1; i < 4; i++)
    if (!want_activation(s, arena_printf(s->a, "'append' reading %s", builtin_arg(b, i)->name),
                         a.pos[i], &a.posv[i]))
      return NONE;
  s->effects++;
  return (Value){.kind = V_NONE};
}

static void check_stmts(Sema *s, Binding **scope, const Stmt *st);

/* Binds annotation shape variables: a name in a layer parameter's type is the layer's own variable,
 * bound by the first argument that uses it and checked against every later use. */
static bool match_annotation(Sema *s, Binding **lscope, const LayerParam *lp, const Value *v,
                             const Expr *arg, const Layer *l) {
  const TypeExpr *te = lp->type;
  if (v->kind != V_TENSOR) {
    err(s, arg->loc, "argument '%s' of layer '%s' must be a tensor, got %s", lp->name, l->name,
        kind_desc(v));
    return false;
  }
  const Type *t = v->type;
  if (t->dtype != te->dtype || t->rank != te->ndims) {
    err(s, arg->loc, "argument '%s' of layer '%s' is %s, but the layer expects %s[%d dims]",
        lp->name, l->name, tstr(s, t), ast_dtype_name(te->dtype), te->ndims);
    diag_note(s->d, te->loc, "declared here");
    return false;
  }
  int i = 0;
  for (const Expr *de = te->dims; de; de = de->next, i++) {
    if (de->kind == EXPR_NAME) {
      Binding *b = lookup(*lscope, de->name);
      if (!b || b->scope != s->depth) {
        Value dv = t->sym[i] ? (Value){.kind = V_INT, .lo = t->shape[i], .hi = t->shape[i], .sym = t->sym[i]}
                             : vint(t->shape[i]);
        Binding *nb = bind(s, lscope, de->name, de->loc, B_PARAM, dv);
        nb->used = true;
        continue;
      }
      if (b->v.kind == V_INT && b->v.lo == t->shape[i] && b->v.sym == t->sym[i])
        continue;
      char want[64], got[64];
      dim_str(want, sizeof want, b->v.lo, b->v.sym);
      dim_str(got, sizeof got, t->shape[i], t->sym[i]);
      err(s, arg->loc, "argument '%s' of layer '%s' is %s, but the layer needs dimension %d to be "
          "%s = %s", lp->name, l->name, tstr(s, t), i, de->name, want);
      diag_note(s->d, b->loc, "'%s' is bound here", de->name);
      return false;
    }
    int64_t k;
    const DimDecl *sym;
    if (!eval_dim(s, *lscope, de, &k, &sym))
      return false;
    if (k != t->shape[i] || sym != t->sym[i]) {
      err(s, arg->loc, "argument '%s' of layer '%s' is %s, which does not match its annotation",
          lp->name, l->name, tstr(s, t));
      diag_note(s->d, te->loc, "declared here");
      return false;
    }
  }
  return true;
}

static Value layer_call(Sema *s, Binding *scope, const Expr *call, const Layer *l) {
  for (int i = 0; i < s->nframes; i++)
    if (s->frames[i].layer == l) {
      err(s, call->loc, "layer '%s' calls itself: layers are inlined, so they cannot recurse",
          l->name);
      return NONE;
    }
  if (s->nframes == MAX_FRAMES) {
    err(s, call->loc, "layer calls nest more than %d deep (is '%s' recursive?)", MAX_FRAMES,
        l->name);
    return NONE;
  }
  Args a;
  eval_args(s, scope, call, &a);
  if (!a.ok)
    return NONE;
  if (a.npos > l->nparams) {
    err(s, a.pos[l->nparams]->loc, "layer '%s' takes %d argument%s, got %d", l->name, l->nparams,
        l->nparams == 1 ? "" : "s", a.npos);
    diag_note(s->d, l->loc, "'%s' defined here", l->name);
    return NONE;
  }
  /* the layer's scope sees the model's config (dims, mesh axes), and nothing of the caller */
  Binding *lscope = s->cfg ? config_scope(s, s->cfg) : NULL;
  s->frames[s->nframes++] = (Frame){l, call->loc};
  s->depth++;
  bool ok = true;
  int i = 0;
  for (const LayerParam *lp = l->params; lp; lp = lp->next, i++) {
    const Value *v = NULL;
    const Expr *where = NULL;
    if (i < a.npos) {
      v = &a.posv[i];
      where = a.pos[i];
      if (kwarg(&a, lp->name, NULL)) {
        err(s, call->loc, "argument '%s' of layer '%s' is given twice", lp->name, l->name);
        ok = false;
      }
    } else {
      v = kwarg(&a, lp->name, &where);
    }
    Value dv;
    if (!v) {
      if (!lp->def) {
        s->nframes--;
        err(s, call->loc, "layer '%s' needs the argument '%s'", l->name, lp->name);
        diag_note(s->d, lp->loc, "'%s' declared here", lp->name);
        s->frames[s->nframes++] = (Frame){l, call->loc};
        ok = false;
        continue;
      }
      dv = eval(s, lscope, lp->def);
      v = &dv;
      where = lp->def;
    }
    if (lp->type && !match_annotation(s, &lscope, lp, v, where, l)) {
      ok = false;
      continue;
    }
    bind(s, &lscope, lp->name, lp->loc, B_PARAM, *v);
  }
  for (int k = 0; k < a.nkw; k++) {
    bool known = false;
    for (const LayerParam *lp = l->params; lp; lp = lp->next)
      known = known || !strcmp(lp->name, a.kw[k]->name);
    if (!known) {
      s->nframes--;
      err(s, a.kw[k]->loc, "layer '%s' has no parameter '%s'", l->name, a.kw[k]->name);
      diag_note(s->d, l->loc, "'%s' defined here", l->name);
      s->frames[s->nframes++] = (Frame){l, call->loc};
      ok = false;
    }
  }
  Value result = NONE;
  if (ok) {
    Value saved = s->ret;
    bool saved_returned = s->returned;
    s->ret = NONE;
    s->returned = false;
    int errors = s->d->nerrors;
    check_stmts(s, &lscope, l->body);
    for (Binding *b = lscope; b && b->scope == s->depth && s->d->nerrors == errors; b = b->next) {
      if (b->kind == B_PARAM && !b->used && b->name[0] != '_')
        warn_once(s, b->loc, "parameter '%s' of layer '%s' is never used", b->name, l->name);
      if (b->kind == B_LOCAL && !b->used && b->v.kind != V_NONE)
        warn_once(s, b->loc, "'%s' is assigned but never used", b->name);
    }
    result = s->ret;
    if (!s->returned)
      result = (Value){.kind = V_NONE};
    s->ret = saved;
    s->returned = saved_returned;
  }
  s->depth--;
  s->nframes--;
  return result;
}

static Value eval_call(Sema *s, Binding *scope, const Expr *e) {
  if (e->lhs) {
    Value recv = eval(s, scope, e->lhs);
    if (recv.kind == V_NONE)
      return NONE;
    if (recv.kind == V_CACHE)
      return cache_method(s, scope, e, &recv);
    err(s, e->loc, "%s has no method '%s'", kind_desc(&recv), e->name);
    return NONE;
  }
  Binding *b = lookup(scope, e->name);
  if (b && b->kind != B_DIM) {
    err(s, e->loc, "'%s' is %s, not an operation or a layer", e->name, kind_desc(&b->v));
    return NONE;
  }
  const Builtin *op = builtin_find(OPS_CALL, e->name);
  if (op)
    return builtin(s, scope, e, op);
  Layer *l = find_layer(s, e->name);
  if (l)
    return layer_call(s, scope, e, l);
  err(s, e->loc, "unknown operation '%s': no layer has that name, and the builtin operations are "
      "%s", e->name, builtin_call_names(s->a));
  return NONE;
}

/* ---------------------------------------------------------------- statements */

static void check_event_ref(Sema *s, Binding *scope, const Expr *r) {
  const Expr *name = r->kind == EXPR_INDEX ? r->lhs : r;
  if (name->kind != EXPR_NAME) {
    err(s, r->loc, "expected an event, e.g. done[l]");
    return;
  }
  Binding *b = lookup(scope, name->name);
  if (!b || b->kind != B_EVENT) {
    err(s, name->loc, b ? "'%s' is not an event" : "unknown event '%s'", name->name);
    return;
  }
  b->used = true;
  const EventDecl *ev = b->v.event;
  int n = r->kind == EXPR_INDEX ? r->nargs : 0;
  if (n != ev->ndims) {
    err(s, r->loc, "event '%s' has %d dimension%s, indexed with %d", ev->name, ev->ndims,
        ev->ndims == 1 ? "" : "s", n);
    return;
  }
  int i = 0;
  const Expr *de = ev->dims;
  for (const Expr *ie = r->kind == EXPR_INDEX ? r->args : NULL; ie; ie = ie->next, de = de->next, i++) {
    Value iv = eval(s, scope, ie);
    if (iv.kind == V_NONE)
      continue;
    if (iv.kind != V_INT || iv.sym) {
      err(s, ie->loc, "an event index must be an integer, got %s", kind_desc(&iv));
      continue;
    }
    int64_t k;
    const DimDecl *sym;
    Binding *cscope = s->cfg ? config_scope(s, s->cfg) : NULL;
    if (eval_dim(s, cscope, de, &k, &sym))
      check_index(s, ie, &iv, k, sym, i, arena_printf(s->a, "event '%s'", ev->name));
  }
}

/* The operation a statement's value comes from, for clause checks ("" if not a call). */
static const char *value_op(const Expr *e) {
  if (e->kind == EXPR_CALL && !e->lhs)
    return e->name;
  if (e->kind == EXPR_BINARY && (e->op == '+' || e->op == '*'))
    return e->op == '+' ? "+" : "*";
  return "";
}

/* An operation as a message names it: its call, or its operator. */
static const char *op_display(const Builtin *b) {
  return b->op == IR_ADD ? "+" : b->op == IR_MUL ? "*" : b->name;
}

/* Why an operation with TILE_NONE takes no tile(...) clause. */
static const char *fixed_grid(const Builtin *b) {
  switch (b->op) {
  case IR_RMSNORM: return "a task normalizes whole rows";
  case IR_SAMPLE: return "one task reads each row whole";
  default: return "its task grid is fixed";
  }
}

/* A statement's tile(...) clause applies to the operation that makes its value v, which must be
 * an evaluation of this statement (op_id after `first_op`); what the clause may say comes from the
 * table (Builtin.tile). */
static void check_tile(Sema *s, Binding *scope, const Stmt *st, const Clause *c, const Value *v,
                       int64_t first_op) {
  const char *op = value_op(st->value);
  if (!*op) {
    err(s, c->loc, "tile(...) applies to an operation, not to %s",
        st->value->kind == EXPR_NAME ? "a plain name" : "this expression");
    return;
  }
  if (v->kind != V_TENSOR && v->kind != V_TUPLE)
    return; /* an error, already reported, or no value: nothing to tile */
  if (!v->origin) {
    err(s, c->loc, "tile(...) applies to an operation, but this value is a declared tensor");
    return;
  }
  if (v->op_id <= first_op) {
    err(s, c->loc, "tile(...) applies to the operation that makes this statement's value, but "
        "'%s' made it in an earlier statement", op_display(v->origin));
    return;
  }
  const Builtin *b = v->origin;
  op = op_display(b);
  if (b->tile == TILE_NONE) {
    err(s, c->loc, "tile(...) cannot apply to '%s': %s", op, fixed_grid(b));
    return;
  }
  bool attention = b->tile == TILE_KV_HEADS, chunks = b->tile == TILE_SPLIT;
  for (const Expr *x = c->args; x; x = x->next) {
    const Expr *ve = x->kind == EXPR_KWARG ? x->lhs : x;
    if (chunks) { /* tile(split = s) alone */
      int64_t n;
      if (x->kind != EXPR_KWARG || strcmp(x->name, "split"))
        err(s, x->loc, "tile(...) of '%s' takes split = N (chunks of a row, a task each)", op);
      else if (eval_const(s, scope, ve, "a split", &n) && (n < 1 || n > MLK_ARGMAX_MAX_SPLIT))
        err(s, ve->loc, "split must be in 1..%d (chunks of a row; 1: one task), got %lld",
            MLK_ARGMAX_MAX_SPLIT, (long long)n);
      continue;
    }
    if (x->kind == EXPR_KWARG && !attention) {
      err(s, x->loc, "tile(...) of '%s' takes one positional size, not '%s = ...'", op, x->name);
      continue;
    }
    if (x->kind == EXPR_KWARG && strcmp(x->name, "head") && strcmp(x->name, "split")) {
      err(s, x->loc, "tile(...) of 'attention' takes head = N and split = N, not '%s'", x->name);
      continue;
    }
    if (x->kind != EXPR_KWARG && (attention || x != c->args)) {
      err(s, x->loc, attention ? "tile(...) of 'attention' takes head = N and split = N"
                               : "tile(...) takes one size");
      continue;
    }
    int64_t n;
    bool split = x->kind == EXPR_KWARG && !strcmp(x->name, "split");
    if (!eval_const(s, scope, ve, "a tile size", &n))
      continue;
    if (split && (n < 1 || n > MLK_ATTN_MAX_SPLIT))
      err(s, ve->loc, "split must be in 1..%d (chunks of the context), got %lld",
          MLK_ATTN_MAX_SPLIT, (long long)n);
    else if (n <= 0)
      err(s, ve->loc, "%s must be positive, got %lld",
          x->kind == EXPR_KWARG ? "head" : "tile size", (long long)n);
    else if (b->tile == TILE_HEAD_MULTIPLE && v->tile_unit && n % v->tile_unit)
      err(s, ve->loc, "tile(%lld) of '%s' must be a multiple of head_dim (%lld): a task takes "
          "whole heads", (long long)n, op, (long long)v->tile_unit);
  }
}

/* A statement of a megakernel that assigns an output: its store is an operation of its own (the
 * writer of the value writes the output, or a copy does). */
static bool assigns_output(Sema *s, Binding *scope, const Stmt *st) {
  if (st->kind != STMT_ASSIGN || st->ntargets != 1 || s->nframes)
    return false;
  Binding *b = lookup(scope, st->targets->str);
  return b && b->kind == B_DECL && b->decl->kind == DECL_OUTPUT;
}

/* A statement's clauses: its tile(...), and the event references of its wait(...) and
 * notify(...), which apply to the operations it makes (op_id after `first_op`, or its store into
 * an output): on a statement that makes none they would say nothing, a warning (unless its value
 * had errors, `errors` being the count before it). */
static void check_clauses(Sema *s, Binding *scope, const Stmt *st, const Value *v,
                          int64_t first_op, int errors) {
  bool tiled = false;
  for (const Clause *c = st->clauses; c; c = c->next) {
    if (c->kind == CLAUSE_TILE) {
      if (tiled)
        err(s, c->loc, "a statement takes one tile(...) clause");
      tiled = true;
      check_tile(s, scope, st, c, v, first_op);
    } else {
      for (const Expr *r = c->args; r; r = r->next)
        check_event_ref(s, scope, r);
      if (s->nops == first_op && s->d->nerrors == errors && !assigns_output(s, scope, st))
        warn_once(s, c->loc, "%s(...) applies to the operations of its statement, and this one "
                  "computes nothing: it has no effect", ast_clause_kind_name(c->kind));
    }
  }
}

/* An output gets value v: the op that makes v writes the output, unless v already has storage (a
 * declared tensor, or a value stored into another output), which is then copied by an elementwise
 * op, f32 only. */
static bool store_lowers(Sema *s, Loc loc, const char *name, const Value *v) {
  bool copied = !v->origin;
  for (int i = 0; i < s->nstored && !copied; i++)
    copied = s->stored[i] == v->op_id;
  if (copied && v->type->dtype != MLK_F32) {
    err(s, loc, "output '%s' needs a copy (its value %s), and a copy of %s cannot be lowered to "
        "a megakernel yet (copies are f32)", name,
        v->origin ? "is in another output" : "is a declared tensor", tstr(s, v->type));
    return false;
  }
  if (!copied) {
    if (s->nstored == s->capstored) {
      int nc = s->capstored ? 2 * s->capstored : 16;
      int64_t *ns = arena_alloc(s->a, (size_t)nc * sizeof *ns);
      if (s->nstored)
        memcpy(ns, s->stored, (size_t)s->nstored * sizeof *ns);
      s->stored = ns;
      s->capstored = nc;
    }
    s->stored[s->nstored++] = v->op_id;
  }
  return true;
}

static void assign(Sema *s, Binding **scope, const char *name, Loc loc, Value v) {
  Binding *prev = lookup(*scope, name);
  if (prev && prev->kind == B_DECL) {
    if (prev->decl->kind != DECL_OUTPUT) {
      err(s, loc, "cannot assign to %s '%s'", ast_decl_kind_name(prev->decl->kind), name);
      diag_note(s->d, prev->loc, "declared here");
      return;
    }
    if (s->nframes) {
      err(s, loc, "a layer cannot write the output '%s': return the value instead", name);
      return;
    }
    if (prev->written) {
      err(s, loc, "output '%s' is written twice in megakernel '%s'", name, s->mk->name);
      return;
    }
    if (s->trips > 1) {
      err(s, loc, "output '%s' is written in each of the %lld iterations of its loop", name,
          (long long)s->trips);
      return;
    }
    prev->written = true;
    s->effects++;
    if (v.kind == V_TENSOR && !store_lowers(s, loc, name, &v))
      return;
    if (prev->v.kind != V_TENSOR)
      return; /* its declaration failed, already reported */
    if (v.kind == V_TENSOR && !type_equal(v.type, prev->v.type)) {
      err(s, loc, "output '%s' is declared %s but assigned %s", name, tstr(s, prev->v.type),
          tstr(s, v.type));
      diag_note(s->d, prev->loc, "declared here");
    } else if (v.kind != V_TENSOR && v.kind != V_NONE) {
      err(s, loc, "output '%s' needs a tensor, got %s", name, kind_desc(&v));
    }
    return;
  }
  if (prev && (prev->kind == B_DIM || prev->kind == B_MESH || prev->kind == B_EVENT ||
               prev->kind == B_LOOP)) {
    const char *what = prev->kind == B_DIM     ? "dim"
                       : prev->kind == B_MESH  ? "mesh axis"
                       : prev->kind == B_EVENT ? "event"
                                               : "loop variable";
    err(s, loc, "cannot assign to the %s '%s'", what, name);
    diag_note(s->d, prev->loc, "declared here");
    return;
  }
  if (v.kind == V_TUPLE) {
    err(s, loc, "'%s' would hold %d values: assign them to as many names", name, v.nitems);
    return;
  }
  if (prev && (prev->kind == B_LOCAL || prev->kind == B_PARAM) && prev->scope <= s->depth) {
    /* a new value for a local: the residual-stream idiom `x = x + ...`; inside a loop body the
     * variable is loop-carried, so its type must not change */
    if (prev->v.kind == V_TENSOR && v.kind == V_TENSOR && !type_equal(prev->v.type, v.type) &&
        prev->scope < s->depth) {
      err(s, loc, "'%s' changes type inside the loop: %s before, %s now", name,
          tstr(s, prev->v.type), tstr(s, v.type));
      diag_note(s->d, prev->loc, "'%s' defined here", name);
      return;
    }
    if (!prev->used && prev->kind == B_LOCAL && prev->scope == s->depth)
      warn_once(s, prev->loc, "the value assigned to '%s' here is never used", name);
    prev->v = v;
    prev->used = false;
    prev->loc = loc;
    return;
  }
  bind(s, scope, name, loc, B_LOCAL, v);
}

static void check_stmt(Sema *s, Binding **scope, const Stmt *st) {
  switch (st->kind) {
  case STMT_ASSIGN: {
    int64_t first_op = s->nops;
    int errors = s->d->nerrors;
    Value v = eval(s, *scope, st->value);
    check_clauses(s, *scope, st, &v, first_op, errors);
    if (st->ntargets > 1) {
      if (v.kind != V_NONE && (v.kind != V_TUPLE || v.nitems != st->ntargets))
        err(s, st->loc, "%d names, but the value gives %s", st->ntargets,
            v.kind == V_TUPLE ? arena_printf(s->a, "%d values", v.nitems) : "one value");
      if (v.kind != V_TUPLE || v.nitems != st->ntargets) {
        /* bind every name to nothing, so that later uses do not report again */
        for (const StrList *t = st->targets; t; t = t->next)
          assign(s, scope, t->str, t->loc, NONE);
        return;
      }
      int i = 0;
      for (const StrList *t = st->targets; t; t = t->next, i++)
        assign(s, scope, t->str, t->loc, v.items[i]);
      return;
    }
    if (v.kind == V_NONE && st->value->kind == EXPR_CALL && st->value->lhs) {
      err(s, st->loc, "'%s' gives no value to assign", st->value->name);
      return;
    }
    assign(s, scope, st->targets->str, st->targets->loc, v);
    return;
  }
  case STMT_EXPR: {
    int64_t first_op = s->nops;
    int errors = s->d->nerrors;
    Value v = eval(s, *scope, st->value);
    check_clauses(s, *scope, st, &v, first_op, errors);
    if (v.kind != V_NONE)
      warn_once(s, st->loc, "the value of this expression is not used");
    return;
  }
  case STMT_FOR: {
    int64_t lo, hi;
    bool ok = eval_const(s, *scope, st->lo, "a loop bound", &lo);
    ok = eval_const(s, *scope, st->hi, "a loop bound", &hi) && ok;
    if (!ok)
      return;
    if (lo >= hi) {
      warn_once(s, st->loc, "the loop over %lld..%lld never runs", (long long)lo, (long long)hi);
      return;
    }
    Binding *prev = lookup(*scope, st->var);
    if (prev && prev->kind != B_LOCAL)
      warn_once(s, st->var_loc, "loop variable '%s' shadows %s", st->var, kind_desc(&prev->v));
    s->depth++;
    Binding *body = *scope;
    Binding *lv = bind(s, &body, st->var, st->var_loc, B_LOOP,
                       (Value){.kind = V_INT, .lo = lo, .hi = hi - 1});
    lv->used = true;
    int64_t trips = s->trips;
    if (__builtin_mul_overflow(s->trips, hi - lo, &s->trips))
      s->trips = INT64_MAX;
    check_stmts(s, &body, st->body);
    s->trips = trips;
    for (Binding *b = body; b && b->scope == s->depth; b = b->next)
      if (b->kind == B_LOCAL && !b->used && b->v.kind != V_NONE)
        warn_once(s, b->loc, "'%s' is assigned but never used", b->name);
    s->depth--;
    return;
  }
  case STMT_RETURN: {
    if (!s->nframes) {
      err(s, st->loc, "'return' is only allowed in a layer");
      return;
    }
    if (st->nvalues == 1) {
      s->ret = eval(s, *scope, st->value);
    } else {
      Value t = {.kind = V_TUPLE, .nitems = st->nvalues};
      t.items = arena_alloc(s->a, st->nvalues * sizeof *t.items);
      int i = 0;
      bool ok = true;
      for (const Expr *e = st->value; e; e = e->next, i++) {
        t.items[i] = eval(s, *scope, e);
        ok = ok && t.items[i].kind != V_NONE;
      }
      s->ret = ok ? t : NONE;
    }
    s->returned = true;
    if (st->next)
      warn_once(s, st->next->loc, "statement after 'return' is never executed");
    return;
  }
  }
}

static void check_stmts(Sema *s, Binding **scope, const Stmt *st) {
  for (; st; st = st->next)
    check_stmt(s, scope, st);
}

/* ---------------------------------------------------------------- models */

/* Checks a checkpoint name template: {l} is the layer index; {a,b,c} alternatives (cat only). */
static void check_template(Sema *s, const TensorDecl *td, const StrList *str, bool cat,
                           bool *has_layer, bool *has_alt) {
  const char *p = str->str;
  while (*p) {
    if (*p == '}') {
      err(s, str->loc, "unbalanced '}' in checkpoint name \"%s\"", str->str);
      return;
    }
    if (*p != '{') {
      p++;
      continue;
    }
    const char *end = strchr(p, '}');
    if (!end) {
      err(s, str->loc, "unclosed '{' in checkpoint name \"%s\"", str->str);
      return;
    }
    size_t n = (size_t)(end - p - 1);
    if (n == 1 && p[1] == 'l') {
      *has_layer = true;
    } else if (memchr(p + 1, ',', n)) {
      if (!cat) {
        err(s, str->loc, "alternatives {%.*s} in the name of '%s' need from cat(...)", (int)n,
            p + 1, td->name);
        return;
      }
      *has_alt = true;
    } else {
      err(s, str->loc, "unknown placeholder {%.*s} in the name of '%s' (use {l} for the layer "
          "index, {a,b} for alternatives)", (int)n, p + 1, td->name);
      return;
    }
    p = end + 1;
  }
}

static void check_binding(Sema *s, const TensorDecl *td, const Type *t) {
  if (!td->from)
    return;
  if (td->kind != DECL_PARAM) {
    err(s, td->from_loc, "only params are loaded from a checkpoint ('%s' is %s)", td->name,
        td->kind == DECL_INPUT ? "an input" : td->kind == DECL_OUTPUT ? "an output" : "a cache");
    return;
  }
  bool cat = td->from_fn != NULL;
  if (cat && strcmp(td->from_fn, "cat")) {
    err(s, td->from_loc, "unknown binding function '%s' (use cat(...))", td->from_fn);
    return;
  }
  bool layer = false, alt = false;
  int n = 0;
  for (const StrList *str = td->from; str; str = str->next, n++) {
    if (!*str->str)
      err(s, str->loc, "empty checkpoint name");
    bool l1 = false;
    check_template(s, td, str, cat, &l1, &alt);
    if (n && l1 != layer)
      err(s, str->loc, "either every name of cat(...) has {l} or none does");
    layer = l1;
  }
  if (cat && n == 1 && !alt)
    err(s, td->from_loc, "cat(...) of one name without {a,b} alternatives: use from \"...\"");
  if (layer && t && t->rank < 2)
    err(s, td->from_loc, "'%s' is bound per layer ({l}), so its first dimension is the layer; "
        "it needs at least 2 dimensions, has %d", td->name, t->rank);
}

/* Checks td's shard(axis, dim) against its (whole) type t; records the dimension and the ranks
 * on td. Returns what one rank holds: t with that dimension divided by the ranks (t itself when
 * the param is not sharded, or over one rank; NULL after an error). */
static const Type *check_shard(Sema *s, Binding *cscope, TensorDecl *td, const Type *t) {
  td->shard_dim_v = -1;
  td->shard_ways = 1;
  if (!td->shard_axis)
    return t;
  if (td->kind != DECL_PARAM) {
    err(s, td->shard_loc, "only params can be sharded");
    return NULL;
  }
  Binding *b = lookup(cscope, td->shard_axis);
  if (!b || b->kind != B_MESH) {
    char list[256] = "";
    size_t n = 0;
    for (MeshDecl *m = s->cfg->meshes; m && n < sizeof list; m = m->next)
      n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", n ? ", " : "", m->name);
    err(s, td->shard_loc, "unknown mesh axis '%s' (config '%s' declares %s)", td->shard_axis,
        s->cfg->name, n ? list : "none: add `mesh tp = N`");
    return NULL;
  }
  int64_t dim;
  if (!eval_const(s, cscope, td->shard_dim, "the sharded dimension", &dim) || !t)
    return NULL;
  if (dim < 0 || dim >= t->rank) {
    err(s, td->shard_dim->loc, "'%s' has %d dimensions: cannot shard dimension %lld", td->name,
        t->rank, (long long)dim);
    return NULL;
  }
  int64_t ways = b->v.mesh->resolved;
  if (ways <= 0)
    return NULL; /* the axis's own error */
  if (t->shape[dim] % ways) {
    err(s, td->shard_loc, "dimension %lld of '%s' (%lld) is not divisible by the %lld ranks of "
        "mesh axis '%s'", (long long)dim, td->name, (long long)t->shape[dim], (long long)ways,
        td->shard_axis);
    return NULL;
  }
  td->shard_dim_v = (int)dim;
  td->shard_ways = ways;
  if (ways == 1)
    return t;
  Type *local = arena_alloc(s->a, sizeof *local);
  *local = *t;
  local->shape[dim] /= ways;
  local->sym[dim] = NULL; /* no longer the dim's own size */
  return local;
}

static void check_cache(Sema *s, Binding *cscope, TensorDecl *td) {
  CacheInfo *ci = arena_alloc(s->a, sizeof *ci);
  ci->decl = td;
  ci->next = s->caches;
  s->caches = ci;
  const Expr *c = td->ctor;
  const Builtin *b = c && c->kind == EXPR_CALL ? builtin_find(OPS_CTOR, c->name) : NULL;
  if (!b) {
    err(s, c ? c->loc : td->loc, "unknown cache kind '%s' (use paged_kv(dtype, layers, kv_heads, "
        "head_dim, page = N))", c && c->kind == EXPR_CALL ? c->name : "?");
    return;
  }
  Args a;
  eval_args(s, cscope, c, &a);
  if (!check_arity(s, c, &a, b) || !a.ok)
    return;
  if (a.posv[0].kind != V_DTYPE) {
    err(s, a.pos[0]->loc, "paged_kv needs the element dtype first, got %s", kind_desc(&a.posv[0]));
    return;
  }
  /* The kv_append and attention tiles (and their references) read and write bf16 pools, so a
   * cache of another dtype could be declared but never run. */
  MlkDType dt = a.posv[0].dtype;
  if (dt != MLK_BF16) {
    err(s, a.pos[0]->loc, "paged_kv stores bf16, not %s (the kv_append and attention tiles read "
        "bf16 caches only)", ast_dtype_name(dt));
    return;
  }
  int64_t v[3];
  for (int i = 0; i < 3; i++)
    if (!int_known(&a.posv[i + 1]) || a.posv[i + 1].lo <= 0) {
      err(s, a.pos[i + 1]->loc, "paged_kv %s must be a positive constant", b->args[i + 1].name);
      return;
    } else {
      v[i] = a.posv[i + 1].lo;
    }
  double kw[BUILTIN_MAX_KWS];
  if (!want_kws(s, c, &a, b, kw))
    return;
  *ci = (CacheInfo){.decl = td, .ok = true, .dtype = dt, .layers = v[0], .kv_heads = v[1],
                    .head_dim = v[2], .page = (int64_t)kw[builtin_kw_index(b, "page")],
                    .next = ci->next};
  CacheGeometry *geo = arena_alloc(s->a, sizeof *geo);
  *geo = (CacheGeometry){dt, ci->layers, ci->kv_heads, ci->head_dim, ci->page};
  td->geometry = geo;
}

static const char *decl_desc(const Binding *b) {
  switch (b->kind) {
  case B_DIM: return "a dim";
  case B_MESH: return "a mesh axis";
  case B_EVENT: return "an event";
  case B_DECL: return ast_decl_kind_name(b->decl->kind);
  default: return "a name";
  }
}

/* The runtime has one dynamic dim per model, the batch: the rows of a batched tensor, its first
 * dim (each task loops over the run's rows). So a dynamic dim appears first in a declared type,
 * alone (not 2*B), and every declaration uses the same one. */
static bool batch_dim_lowers(Sema *s, const TensorDecl *td, const Type *t, const TensorDecl **batch) {
  const Expr *de = td->type.dims;
  for (int i = 0; i < t->rank; i++, de = de->next) {
    if (!t->sym[i])
      continue;
    if (i != 0 || t->shape[0] != 1) {
      err(s, de->loc, "the dynamic dim '%s' here cannot be lowered to a megakernel yet: it can "
          "only be a tensor's first dim, alone (the batch rows)", t->sym[i]->name);
      return false;
    }
    if (*batch && (*batch)->resolved && (*batch)->resolved->sym[0] != t->sym[0]) {
      err(s, de->loc, "a second dynamic dim, '%s', cannot be lowered to a megakernel yet: a model "
          "has one batch dim", t->sym[0]->name);
      diag_note(s->d, (*batch)->type.loc, "'%s' uses '%s'", (*batch)->name,
                (*batch)->resolved->sym[0]->name);
      return false;
    }
    if (!*batch)
      *batch = td;
  }
  return true;
}

static void check_model(Sema *s, Program *p, Model *m) {
  int errors = s->d->nerrors;
  s->model = m;
  s->cfg = sema_model_config(p, m);
  s->caches = NULL;
  if (!s->cfg) {
    err(s, m->cfg_loc, "unknown config '%s'", m->cfg_name);
    return;
  }
  Binding *cscope = config_scope(s, s->cfg);
  Binding *scope = cscope;
  const TensorDecl *batch = NULL; /* the first declaration with a dynamic dim */
  for (TensorDecl *td = m->decls; td; td = td->next) {
    Binding *prev = lookup(scope, td->name);
    if (prev && (prev->kind == B_DECL || prev->kind == B_EVENT)) {
      err(s, td->loc, "'%s' is declared twice in model '%s'", td->name, m->name);
      diag_note(s->d, prev->loc, "first declared here");
      continue;
    }
    if (prev)
      diag_warning(s->d, td->loc, "'%s' shadows %s of config '%s'", td->name, decl_desc(prev),
                   s->cfg->name);
    Value v = NONE;
    if (td->kind == DECL_CACHE) {
      check_cache(s, cscope, td);
      v = (Value){.kind = V_CACHE, .decl = td};
    } else {
      const Type *t = eval_type(s, cscope, &td->type);
      if (t && !batch_dim_lowers(s, td, t, &batch))
        t = NULL;
      if (t && td->kind == DECL_PARAM && !type_is_static(t))
        err(s, td->type.loc, "param '%s' cannot have a dynamic dimension: %s", td->name,
            tstr(s, t));
      else if (t && td->kind != DECL_PARAM && t->dtype != MLK_F32 && t->dtype != MLK_I32)
        err(s, td->type.loc, "%s '%s' must be f32 or i32, got %s", ast_decl_kind_name(td->kind),
            td->name, tstr(s, t));
      check_binding(s, td, t);
      t = check_shard(s, cscope, td, t); /* from here on, one rank's slice */
      td->resolved = t;
      if (t)
        v = (Value){.kind = V_TENSOR, .type = t, .weight = td->kind == DECL_PARAM};
    }
    Binding *b = bind(s, &scope, td->name, td->loc, B_DECL, v);
    b->decl = td;
  }
  for (EventDecl *ev = m->events; ev; ev = ev->next) {
    Binding *prev = lookup(scope, ev->name);
    if (prev && (prev->kind == B_DECL || prev->kind == B_EVENT)) {
      err(s, ev->loc, "'%s' is declared twice in model '%s'", ev->name, m->name);
      diag_note(s->d, prev->loc, "first declared here");
      continue;
    }
    if (ev->ndims > MLK_MAX_RANK)
      err(s, ev->loc, "an event has at most %d dimensions, '%s' has %d", MLK_MAX_RANK, ev->name,
          ev->ndims);
    for (const Expr *de = ev->dims; de; de = de->next) {
      int64_t k;
      const DimDecl *sym;
      eval_dim(s, cscope, de, &k, &sym);
    }
    bind(s, &scope, ev->name, ev->loc, B_EVENT, (Value){.kind = V_EVENT, .event = ev});
  }
  if (!m->kernels)
    err(s, m->loc, "model '%s' has no megakernel", m->name);
  for (Megakernel *mk = m->kernels; mk; mk = mk->next) {
    for (Megakernel *o = m->kernels; o != mk; o = o->next)
      if (!strcmp(o->name, mk->name)) {
        err(s, mk->loc, "megakernel '%s' is defined twice", mk->name);
        diag_note(s->d, o->loc, "first defined here");
      }
    for (const Expr *opt = mk->options; opt; opt = opt->next) {
      if (opt->kind != EXPR_KWARG || strcmp(opt->name, "schedule")) {
        err(s, opt->loc, "unknown megakernel option (use schedule = static or dynamic)");
        continue;
      }
      if (opt->lhs->kind != EXPR_NAME ||
          (strcmp(opt->lhs->name, "static") && strcmp(opt->lhs->name, "dynamic")))
        err(s, opt->lhs->loc, "schedule must be static or dynamic");
    }
    s->mk = mk;
    for (Binding *b = scope; b; b = b->next)
      b->written = false;
    Binding *body = scope;
    s->depth = 1;
    s->trips = 1;
    s->nstored = 0;
    s->effects = 0;
    int mk_errors = s->d->nerrors;
    check_stmts(s, &body, mk->body);
    /* what writes no output and no cache is removed, so such a kernel would have no op to run */
    if (!s->effects && s->d->nerrors == mk_errors)
      err(s, mk->loc, "megakernel '%s' computes nothing: it writes no output and appends to no "
          "cache", mk->name);
    for (Binding *b = body; b && b->kind == B_LOCAL; b = b->next)
      if (!b->used && b->v.kind != V_NONE)
        warn_once(s, b->loc, "'%s' is assigned but never used", b->name);
    s->depth = 0;
    for (Binding *b = scope; b; b = b->next)
      if (b->kind == B_DECL && b->written)
        b->used = true;
  }
  for (TensorDecl *td = m->decls; td; td = td->next) {
    Binding *b = NULL;
    for (Binding *x = scope; x && x != cscope && !b; x = x->next)
      if (x->kind == B_DECL && x->decl == td)
        b = x;
    if (!b || b->used || s->d->nerrors != errors)
      continue; /* after an error, "never used" is usually its echo */
    if (td->kind == DECL_OUTPUT)
      diag_warning(s->d, b->loc, "output '%s' is never written", b->name);
    else
      diag_warning(s->d, b->loc, "%s '%s' is never used", ast_decl_kind_name(td->kind), b->name);
  }
  s->mk = NULL;
}

static void check_layers(Sema *s, Program *p) {
  for (Layer *l = p->layers; l; l = l->next) {
    if (is_builtin(l->name))
      err(s, l->loc, "layer '%s' has the name of a builtin operation", l->name);
    for (Layer *o = p->layers; o != l; o = o->next)
      if (!strcmp(o->name, l->name)) {
        err(s, l->loc, "layer '%s' is defined twice", l->name);
        diag_note(s->d, o->loc, "first defined here");
      }
    for (LayerParam *lp = l->params; lp; lp = lp->next)
      for (LayerParam *o = l->params; o != lp; o = o->next)
        if (!strcmp(o->name, lp->name)) {
          err(s, lp->loc, "layer '%s' has two parameters named '%s'", l->name, lp->name);
          diag_note(s->d, o->loc, "first declared here");
        }
    bool defaults = false;
    for (LayerParam *lp = l->params; lp; lp = lp->next) {
      if (defaults && !lp->def)
        err(s, lp->loc, "parameter '%s' without a default follows one with a default", lp->name);
      defaults = defaults || lp->def;
    }
  }
}

bool sema_check(Program *p, Arena *a, Diag *d) {
  Sema s = {.a = a, .d = d, .p = p, .trips = 1};
  int before = d->nerrors;
  for (Config *c = p->configs; c; c = c->next) {
    for (Config *o = p->configs; o != c; o = o->next)
      if (!strcmp(o->name, c->name)) {
        diag_error(d, c->loc, "config '%s' is defined twice", c->name);
        diag_note(d, o->loc, "first defined here");
      }
    s.cfg = c;
    s.model = NULL;
    check_config(&s, c);
  }
  check_layers(&s, p);
  for (Model *m = p->models; m; m = m->next) {
    for (Model *o = p->models; o != m; o = o->next)
      if (!strcmp(o->name, m->name)) {
        diag_error(d, m->loc, "model '%s' is defined twice", m->name);
        diag_note(d, o->loc, "first defined here");
      }
    /* a model over a config whose dims are wrong would only repeat their consequences */
    const Config *mc = sema_model_config(p, m);
    if (!mc || !mc->bad)
      check_model(&s, p, m);
  }
  return d->nerrors == before;
}
