/* sema.c: semantic analysis. Resolves names, evaluates dims, and checks dtypes and shapes.
 *
 * Every error is reported (with location and, where it helps, a note pointing at a declaration)
 * and checking goes on, so one run shows all of them; main.c stops before lowering if any was
 * found. On success every tensor-valued Expr has its `type` set, every DimDecl its `resolved`
 * value, and lower.c can rely on the program being well typed.
 *
 * The builtin ops of this milestone (docs/language.md, "Operations"):
 *   matvec(x: f32[K], W: bf16[N, K]) -> f32[N]
 *   relu(a: f32[N]) -> f32[N], silu(a: f32[N]) -> f32[N]
 *   a + b, a * b over f32[N]
 */
#include <string.h>

#include "mlkc.h"


typedef struct Sema {
  Arena *a;
  Diag *d;
  Config *cfg;     /* config of the model being checked, or NULL */
  Model *model;
} Sema;

/* A name visible in a megakernel body: a declared tensor or a local defined by a statement. */
typedef struct Local {
  const char *name;
  Loc loc;
  const Type *type;
  TensorDecl *decl; /* NULL for locals */
  bool written;     /* outputs: assigned in this megakernel */
  struct Local *next;
} Local;

static const char *type_str(Sema *s, const Type *t) {
  char buf[160];
  int n = snprintf(buf, sizeof buf, "%s[", ast_dtype_name(t->dtype));
  for (int i = 0; i < t->rank; i++)
    n += snprintf(buf + n, sizeof buf - n, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
  snprintf(buf + n, sizeof buf - n, "]");
  return arena_strndup(s->a, buf, strlen(buf));
}

/* ---------------------------------------------------------------- integer expressions */

static DimDecl *find_dim(Config *c, const char *name) {
  for (DimDecl *dd = c ? c->dims : NULL; dd; dd = dd->next)
    if (!strcmp(dd->name, name))
      return dd;
  return NULL;
}

/* Evaluates an integer expression over the static dims declared before `upto` (NULL: all).
 * Returns false after reporting an error. */
static bool eval_int(Sema *s, Config *c, DimDecl *upto, const Expr *e, int64_t *out) {
  int64_t l, r;
  switch (e->kind) {
  case EXPR_INT:
    *out = e->ival;
    return true;
  case EXPR_NAME: {
    for (DimDecl *dd = c ? c->dims : NULL; dd && dd != upto; dd = dd->next) {
      if (strcmp(dd->name, e->name))
        continue;
      if (!dd->value) {
        diag_error(s->d, e->loc, "dynamic dim '%s' cannot be used here: this milestone needs "
                   "static shapes", e->name);
        diag_note(s->d, dd->loc, "'%s' declared here", dd->name);
        return false;
      }
      *out = dd->resolved;
      return true;
    }
    DimDecl *later = upto ? find_dim(c, e->name) : NULL;
    if (later) {
      diag_error(s->d, e->loc, "dim '%s' is used before it is declared", e->name);
      diag_note(s->d, later->loc, "'%s' declared here", later->name);
    } else {
      diag_error(s->d, e->loc, "unknown dim '%s'", e->name);
    }
    return false;
  }
  case EXPR_NEG:
    if (!eval_int(s, c, upto, e->lhs, &l))
      return false;
    *out = -l;
    return true;
  case EXPR_BINARY: {
    bool okl = eval_int(s, c, upto, e->lhs, &l);
    bool okr = eval_int(s, c, upto, e->rhs, &r);
    if (!okl || !okr)
      return false;
    bool ovf = false;
    switch (e->op) {
    case '+': ovf = __builtin_add_overflow(l, r, out); break;
    case '-': ovf = __builtin_sub_overflow(l, r, out); break;
    case '*': ovf = __builtin_mul_overflow(l, r, out); break;
    case '/':
      if (r == 0) {
        diag_error(s->d, e->loc, "division by zero");
        return false;
      }
      *out = l / r;
      break;
    default:
      MLKC_BUG("binary operator %d", e->op);
    }
    if (ovf) {
      diag_error(s->d, e->loc, "integer overflow");
      return false;
    }
    return true;
  }
  case EXPR_CALL:
    diag_error(s->d, e->loc, "a call ('%s') is not an integer expression", e->name);
    return false;
  }
  MLKC_BUG("expr kind %d", e->kind);
}

/* ---------------------------------------------------------------- configs */

static void check_config(Sema *s, Config *c) {
  for (DimDecl *dd = c->dims; dd; dd = dd->next) {
    for (DimDecl *p = c->dims; p != dd; p = p->next)
      if (!strcmp(p->name, dd->name)) {
        diag_error(s->d, dd->loc, "dim '%s' is declared twice in config '%s'", dd->name, c->name);
        diag_note(s->d, p->loc, "first declared here");
        break;
      }
    if (dd->value) {
      int64_t v;
      if (eval_int(s, c, dd, dd->value, &v)) {
        if (v <= 0)
          diag_error(s->d, dd->value->loc, "dim '%s' must be positive, got %lld", dd->name,
                     (long long)v);
        dd->resolved = v;
      }
    } else {
      int64_t lo, hi;
      if (eval_int(s, c, dd, dd->lo, &lo) && eval_int(s, c, dd, dd->hi, &hi)) {
        if (lo <= 0 || hi < lo)
          diag_error(s->d, dd->loc, "dynamic dim '%s' needs a range 1 <= lo <= hi, got %lld..%lld",
                     dd->name, (long long)lo, (long long)hi);
      }
    }
  }
}

/* ---------------------------------------------------------------- models */

static Type *new_type(Sema *s, MlkDType dt, int rank, const int64_t *shape) {
  Type *t = arena_alloc(s->a, sizeof *t);
  t->dtype = dt;
  t->rank = rank;
  for (int i = 0; i < rank; i++)
    t->shape[i] = shape[i];
  return t;
}

static const Type *check_type_expr(Sema *s, TypeExpr *te) {
  if (te->ndims > MLK_MAX_RANK) {
    diag_error(s->d, te->loc, "a tensor has at most %d dimensions, this one has %d", MLK_MAX_RANK,
               te->ndims);
    return NULL;
  }
  int64_t shape[MLK_MAX_RANK];
  int i = 0;
  bool ok = true;
  for (Expr *e = te->dims; e; e = e->next, i++) {
    if (!eval_int(s, s->cfg, NULL, e, &shape[i])) {
      ok = false;
    } else if (shape[i] <= 0) {
      diag_error(s->d, e->loc, "dimension must be positive, got %lld", (long long)shape[i]);
      ok = false;
    }
  }
  return ok ? new_type(s, te->dtype, te->ndims, shape) : NULL;
}

static Local *lookup(Local *scope, const char *name) {
  for (Local *l = scope; l; l = l->next)
    if (!strcmp(l->name, name))
      return l;
  return NULL;
}

static bool is_f32_vector(const Type *t) { return t->dtype == MLK_F32 && t->rank == 1; }

/* Checks a tensor-valued expression; returns its type or NULL after reporting. */
static const Type *check_value(Sema *s, Local *scope, Expr *e);

static const Type *check_call(Sema *s, Local *scope, Expr *e) {
  const Type *args[4] = {0};
  int i = 0;
  bool ok = true;
  for (Expr *a = e->args; a; a = a->next, i++) {
    const Type *t = check_value(s, scope, a);
    if (i < 4)
      args[i] = t;
    ok = ok && t;
  }
  int want;
  if (!strcmp(e->name, "matvec"))
    want = 2;
  else if (!strcmp(e->name, "relu") || !strcmp(e->name, "silu"))
    want = 1;
  else {
    diag_error(s->d, e->loc, "unknown operation '%s' (this milestone has matvec, relu, silu, +, *)",
               e->name);
    return NULL;
  }
  if (e->nargs != want) {
    diag_error(s->d, e->loc, "'%s' takes %d argument%s, got %d", e->name, want,
               want == 1 ? "" : "s", e->nargs);
    return NULL;
  }
  if (!ok)
    return NULL;
  if (want == 1) {
    if (!is_f32_vector(args[0])) {
      diag_error(s->d, e->args->loc, "'%s' needs an f32 vector, got %s", e->name,
                 type_str(s, args[0]));
      return NULL;
    }
    return args[0];
  }
  const Expr *xe = e->args, *we = e->args->next;
  const Type *x = args[0], *w = args[1];
  if (!is_f32_vector(x)) {
    diag_error(s->d, xe->loc, "matvec input must be an f32 vector, got %s", type_str(s, x));
    return NULL;
  }
  if (w->dtype != MLK_BF16 || w->rank != 2) {
    diag_error(s->d, we->loc, "matvec weight must be a bf16 matrix [N, K], got %s",
               type_str(s, w));
    return NULL;
  }
  if (we->kind != EXPR_NAME || !lookup(scope, we->name) || !lookup(scope, we->name)->decl ||
      lookup(scope, we->name)->decl->kind != DECL_PARAM) {
    diag_error(s->d, we->loc, "matvec weight must be a param");
    return NULL;
  }
  if (w->shape[1] != x->shape[0]) {
    diag_error(s->d, e->loc,
               "matvec inner dimensions differ: the input is %s but the weight is %s (K = %lld)",
               type_str(s, x), type_str(s, w), (long long)w->shape[1]);
    return NULL;
  }
  if (w->shape[1] > MLK_MATVEC_MAX_K) {
    diag_error(s->d, e->loc, "matvec inner dimension %lld exceeds the supported %d",
               (long long)w->shape[1], MLK_MATVEC_MAX_K);
    return NULL;
  }
  int64_t n = w->shape[0];
  return new_type(s, MLK_F32, 1, &n);
}

static const Type *check_value(Sema *s, Local *scope, Expr *e) {
  const Type *t = NULL;
  switch (e->kind) {
  case EXPR_INT:
    diag_error(s->d, e->loc, "expected a tensor, found the integer %lld", (long long)e->ival);
    return NULL;
  case EXPR_NAME: {
    Local *l = lookup(scope, e->name);
    if (!l) {
      if (find_dim(s->cfg, e->name))
        diag_error(s->d, e->loc, "'%s' is a dim, not a tensor", e->name);
      else
        diag_error(s->d, e->loc, "unknown name '%s'", e->name);
      return NULL;
    }
    if (!l->type)
      return NULL; /* its declaration already failed */
    if (l->decl && l->decl->kind == DECL_OUTPUT && !l->written) {
      diag_error(s->d, e->loc, "output '%s' is read before it is written", e->name);
      return NULL;
    }
    t = l->type;
    break;
  }
  case EXPR_NEG:
    diag_error(s->d, e->loc, "unary '-' on tensors is not supported yet");
    check_value(s, scope, e->lhs);
    return NULL;
  case EXPR_BINARY: {
    const Type *l = check_value(s, scope, e->lhs);
    const Type *r = check_value(s, scope, e->rhs);
    if (e->op != '+' && e->op != '*') {
      diag_error(s->d, e->loc, "operator '%c' on tensors is not supported yet (only + and *)",
                 e->op);
      return NULL;
    }
    if (!l || !r)
      return NULL;
    if (!is_f32_vector(l) || !is_f32_vector(r) || l->shape[0] != r->shape[0]) {
      diag_error(s->d, e->loc, "operator '%c' needs two f32 vectors of the same length, got %s "
                 "and %s", e->op, type_str(s, l), type_str(s, r));
      return NULL;
    }
    t = l;
    break;
  }
  case EXPR_CALL:
    t = check_call(s, scope, e);
    break;
  }
  e->type = t;
  return t;
}

static void check_megakernel(Sema *s, Megakernel *mk, Local *decls) {
  Local *scope = decls;
  for (Local *l = decls; l; l = l->next)
    l->written = false;
  for (Stmt *st = mk->body; st; st = st->next) {
    const Type *t = check_value(s, scope, st->value);
    if (st->tile) {
      int64_t v;
      if (eval_int(s, s->cfg, NULL, st->tile, &v) && v <= 0)
        diag_error(s->d, st->tile->loc, "tile size must be positive, got %lld", (long long)v);
    }
    Local *prev = lookup(scope, st->target);
    if (prev && prev->decl) {
      if (prev->decl->kind != DECL_OUTPUT) {
        diag_error(s->d, st->loc, "cannot assign to %s '%s'",
                   prev->decl->kind == DECL_PARAM ? "param" : "input", st->target);
        diag_note(s->d, prev->loc, "declared here");
        continue;
      }
      if (prev->written) {
        diag_error(s->d, st->loc, "output '%s' is written twice in megakernel '%s'", st->target,
                   mk->name);
        continue;
      }
      prev->written = true;
      if (t && prev->type && (t->rank != prev->type->rank || t->dtype != prev->type->dtype ||
                              memcmp(t->shape, prev->type->shape, t->rank * sizeof t->shape[0]))) {
        diag_error(s->d, st->loc, "output '%s' is declared %s but assigned %s", st->target,
                   type_str(s, prev->type), type_str(s, t));
        diag_note(s->d, prev->loc, "declared here");
      }
      continue;
    }
    if (prev) {
      diag_error(s->d, st->loc, "'%s' is already defined in megakernel '%s'", st->target, mk->name);
      diag_note(s->d, prev->loc, "defined here");
      continue;
    }
    if (find_dim(s->cfg, st->target)) {
      diag_error(s->d, st->loc, "'%s' is a dim of config '%s'", st->target, s->cfg->name);
      continue;
    }
    Local *l = arena_alloc(s->a, sizeof *l);
    *l = (Local){.name = st->target, .loc = st->loc, .type = t, .next = scope};
    scope = l;
  }
}

static void check_model(Sema *s, Program *p, Model *m) {
  s->model = m;
  s->cfg = NULL;
  for (Config *c = p->configs; c; c = c->next)
    if (!strcmp(c->name, m->cfg_name))
      s->cfg = c;
  if (!s->cfg) {
    diag_error(s->d, m->cfg_loc, "unknown config '%s'", m->cfg_name);
    return;
  }
  Local *decls = NULL;
  for (TensorDecl *td = m->decls; td; td = td->next) {
    Local *prev = lookup(decls, td->name);
    if (prev) {
      diag_error(s->d, td->loc, "'%s' is declared twice in model '%s'", td->name, m->name);
      diag_note(s->d, prev->loc, "first declared here");
      continue;
    }
    const Type *t = check_type_expr(s, &td->type);
    if (t && td->kind != DECL_PARAM && !is_f32_vector(t))
      diag_error(s->d, td->type.loc, "%s '%s' must be an f32 vector in this milestone, got %s",
                 td->kind == DECL_INPUT ? "input" : "output", td->name, type_str(s, t));
    if (find_dim(s->cfg, td->name))
      diag_warning(s->d, td->loc, "'%s' shadows a dim of config '%s'", td->name, s->cfg->name);
    Local *l = arena_alloc(s->a, sizeof *l);
    *l = (Local){.name = td->name, .loc = td->loc, .type = t, .decl = td, .next = decls};
    decls = l;
  }
  if (!m->kernels)
    diag_error(s->d, m->loc, "model '%s' has no megakernel", m->name);
  for (Megakernel *mk = m->kernels; mk; mk = mk->next) {
    for (Megakernel *o = m->kernels; o != mk; o = o->next)
      if (!strcmp(o->name, mk->name)) {
        diag_error(s->d, mk->loc, "megakernel '%s' is defined twice", mk->name);
        diag_note(s->d, o->loc, "first defined here");
      }
    check_megakernel(s, mk, decls);
  }
}

bool sema_check(Program *p, Arena *a, Diag *d) {
  Sema s = {.a = a, .d = d};
  int before = d->nerrors;
  for (Config *c = p->configs; c; c = c->next) {
    for (Config *o = p->configs; o != c; o = o->next)
      if (!strcmp(o->name, c->name)) {
        diag_error(d, c->loc, "config '%s' is defined twice", c->name);
        diag_note(d, o->loc, "first defined here");
      }
    check_config(&s, c);
  }
  for (Model *m = p->models; m; m = m->next)
    check_model(&s, p, m);
  return d->nerrors == before;
}
