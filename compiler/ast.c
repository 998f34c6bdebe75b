/* ast.c: the arena every AST and IR node lives in, the one-line AST builders the grammar actions
 * call, and the two printers: `--emit=ast` (an S-expression per node, one node per line, with
 * locations; docs/language.md describes it) and the source-like expression printer that messages
 * use.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "mlkc.h"

/* ------------------------------------------------------------------------ arena */

/* A bump allocator over a list of chunks; a request larger than a chunk gets a chunk of its own.
 * Nothing is freed before arena_free, so nodes may point at each other freely. */
#define ARENA_ALIGN 16
#define ARENA_CHUNK (64 * 1024)

typedef struct Chunk {
  struct Chunk *next;
  size_t size, used;
  _Alignas(ARENA_ALIGN) unsigned char data[];
} Chunk;

struct Arena {
  Chunk *chunks; /* newest first; allocation happens in the first */
};

static _Noreturn void arena_oom(void) {
  fputs("mlkc: error: out of memory\n", stderr);
  exit(1);
}

Arena *arena_new(void) {
  Arena *a = calloc(1, sizeof *a);
  if (!a)
    arena_oom();
  return a;
}

void *arena_alloc(Arena *a, size_t size) {
  if (size > SIZE_MAX / 2)
    arena_oom();
  size = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
  Chunk *c = a->chunks;
  if (!c || c->size - c->used < size) {
    size_t cap = size > ARENA_CHUNK / 4 ? size : ARENA_CHUNK;
    c = malloc(sizeof *c + cap);
    if (!c)
      arena_oom();
    c->size = cap;
    c->used = 0;
    if (cap == size && a->chunks) {
      /* A big block: keep allocating from the current chunk afterwards. */
      c->next = a->chunks->next;
      a->chunks->next = c;
    } else {
      c->next = a->chunks;
      a->chunks = c;
    }
  }
  void *p = c->data + c->used;
  c->used += size;
  memset(p, 0, size);
  return p;
}

char *arena_strndup(Arena *a, const char *s, size_t n) {
  n = strnlen(s, n);
  char *p = arena_alloc(a, n + 1);
  memcpy(p, s, n);
  return p;
}

char *arena_printf(Arena *a, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0)
    MLKC_BUG("arena_printf: bad format '%s'", fmt);
  char *p = arena_alloc(a, (size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(p, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return p;
}

void arena_free(Arena *a) {
  if (!a)
    return;
  for (Chunk *c = a->chunks, *next; c; c = next) {
    next = c->next;
    free(c);
  }
  free(a);
}

/* ------------------------------------------------------------------------ builders */

static Expr *new_expr(Arena *a, ExprKind kind, Loc loc) {
  Expr *e = arena_alloc(a, sizeof *e);
  e->kind = kind;
  e->loc = loc;
  e->depth = 1;
  return e;
}

static int max_depth(int x, int y) { return x > y ? x : y; }

/* Sets e's argument list, counting it and taking its depth into e's. */
static Expr *with_args(Expr *e, Expr *args) {
  e->args = args;
  for (Expr *x = args; x; x = x->next) {
    e->nargs++;
    e->depth = max_depth(e->depth, 1 + x->depth);
  }
  return e;
}

static Expr *with_lhs(Expr *e, Expr *lhs) {
  e->lhs = lhs;
  if (lhs)
    e->depth = max_depth(e->depth, 1 + lhs->depth);
  return e;
}

static Expr *with_rhs(Expr *e, Expr *rhs) {
  e->rhs = rhs;
  if (rhs)
    e->depth = max_depth(e->depth, 1 + rhs->depth);
  return e;
}

static int count_exprs(const Expr *e) {
  int n = 0;
  for (; e; e = e->next)
    n++;
  return n;
}

Expr *ast_int(Arena *a, Loc loc, int64_t v) {
  Expr *e = new_expr(a, EXPR_INT, loc);
  e->ival = v;
  return e;
}

Expr *ast_float(Arena *a, Loc loc, double v) {
  Expr *e = new_expr(a, EXPR_FLOAT, loc);
  e->fval = v;
  return e;
}

Expr *ast_name(Arena *a, Loc loc, const char *name) {
  Expr *e = new_expr(a, EXPR_NAME, loc);
  e->name = name;
  return e;
}

Expr *ast_dtype(Arena *a, Loc loc, MlkDType dtype) {
  Expr *e = new_expr(a, EXPR_DTYPE, loc);
  e->dtype = dtype;
  return e;
}

Expr *ast_binary(Arena *a, Loc loc, int op, Expr *lhs, Expr *rhs) {
  Expr *e = new_expr(a, EXPR_BINARY, loc);
  e->op = op;
  return with_rhs(with_lhs(e, lhs), rhs);
}

Expr *ast_neg(Arena *a, Loc loc, Expr *operand) {
  return with_lhs(new_expr(a, EXPR_NEG, loc), operand);
}

Expr *ast_call(Arena *a, Loc loc, const char *name, Expr *args) {
  Expr *e = new_expr(a, EXPR_CALL, loc);
  e->name = name;
  return with_args(e, args);
}

Expr *ast_method(Arena *a, Loc loc, Expr *recv, const char *name, Expr *args) {
  return with_lhs(ast_call(a, loc, name, args), recv);
}

Expr *ast_index(Arena *a, Loc loc, Expr *base, Expr *indices) {
  return with_args(with_lhs(new_expr(a, EXPR_INDEX, loc), base), indices);
}

Expr *ast_slice(Arena *a, Loc loc, Expr *lo, Expr *hi) {
  return with_rhs(with_lhs(new_expr(a, EXPR_SLICE, loc), lo), hi);
}

Expr *ast_member(Arena *a, Loc loc, Expr *base, const char *name) {
  Expr *e = new_expr(a, EXPR_MEMBER, loc);
  e->name = name;
  return with_lhs(e, base);
}

Expr *ast_kwarg(Arena *a, Loc loc, const char *name, Expr *value) {
  Expr *e = new_expr(a, EXPR_KWARG, loc);
  e->name = name;
  return with_lhs(e, value);
}

Expr *ast_expr_append(Expr *list, Expr *e) {
  if (!list)
    return e;
  Expr *last = list;
  while (last->next)
    last = last->next;
  last->next = e;
  return list;
}

StrList *ast_str(Arena *a, Loc loc, const char *str) {
  StrList *l = arena_alloc(a, sizeof *l);
  l->str = str;
  l->loc = loc;
  return l;
}

Clause *ast_clause(Arena *a, Loc loc, ClauseKind kind, Expr *args) {
  Clause *c = arena_alloc(a, sizeof *c);
  c->loc = loc;
  c->kind = kind;
  c->args = args;
  c->nargs = count_exprs(args);
  return c;
}

static Stmt *new_stmt(Arena *a, StmtKind kind, Loc loc) {
  Stmt *s = arena_alloc(a, sizeof *s);
  s->kind = kind;
  s->loc = loc;
  return s;
}

Stmt *ast_assign(Arena *a, Loc loc, StrList *targets, Expr *value, Clause *clauses) {
  Stmt *s = new_stmt(a, STMT_ASSIGN, loc);
  s->targets = targets;
  for (const StrList *t = targets; t; t = t->next)
    s->ntargets++;
  s->value = value;
  s->clauses = clauses;
  return s;
}

Stmt *ast_expr_stmt(Arena *a, Loc loc, Expr *call, Clause *clauses) {
  Stmt *s = new_stmt(a, STMT_EXPR, loc);
  s->value = call;
  s->clauses = clauses;
  return s;
}

Stmt *ast_for(Arena *a, Loc loc, const char *var, Loc var_loc, Expr *lo, Expr *hi, Stmt *body) {
  Stmt *s = new_stmt(a, STMT_FOR, loc);
  s->var = var;
  s->var_loc = var_loc;
  s->lo = lo;
  s->hi = hi;
  s->body = body;
  return s;
}

Stmt *ast_return(Arena *a, Loc loc, Expr *values) {
  Stmt *s = new_stmt(a, STMT_RETURN, loc);
  s->value = values;
  s->nvalues = count_exprs(values);
  return s;
}

DimDecl *ast_dim_static(Arena *a, Loc loc, const char *name, Expr *value, FromSpec from) {
  DimDecl *d = arena_alloc(a, sizeof *d);
  d->loc = loc;
  d->name = name;
  d->value = value;
  d->from_fn = from.fn;
  d->from = from.strs;
  d->from_loc = from.loc;
  return d;
}

DimDecl *ast_dim_dynamic(Arena *a, Loc loc, const char *name, Expr *lo, Expr *hi) {
  DimDecl *d = arena_alloc(a, sizeof *d);
  d->loc = loc;
  d->name = name;
  d->lo = lo;
  d->hi = hi;
  return d;
}

MeshDecl *ast_mesh(Arena *a, Loc loc, const char *name, Expr *value) {
  MeshDecl *m = arena_alloc(a, sizeof *m);
  m->loc = loc;
  m->name = name;
  m->value = value;
  return m;
}

Config *ast_config(Arena *a, Loc loc, const char *name, DimDecl *dims, MeshDecl *meshes) {
  Config *c = arena_alloc(a, sizeof *c);
  c->loc = loc;
  c->name = name;
  c->dims = dims;
  c->meshes = meshes;
  return c;
}

TypeExpr ast_type(Loc loc, MlkDType dtype, Expr *dims) {
  return (TypeExpr){.loc = loc, .dtype = dtype, .dims = dims, .ndims = count_exprs(dims)};
}

TypeExpr *ast_type_new(Arena *a, TypeExpr type) {
  TypeExpr *t = arena_alloc(a, sizeof *t);
  *t = type;
  return t;
}

TensorDecl *ast_tensor_decl(Arena *a, Loc loc, DeclKind kind, const char *name, TypeExpr type,
                            ShardSpec shard, FromSpec from) {
  TensorDecl *t = arena_alloc(a, sizeof *t);
  t->loc = loc;
  t->kind = kind;
  t->name = name;
  t->type = type;
  t->shard_axis = shard.axis;
  t->shard_dim = shard.dim;
  t->shard_loc = shard.loc;
  t->from_fn = from.fn;
  t->from = from.strs;
  t->from_loc = from.loc;
  return t;
}

TensorDecl *ast_cache_decl(Arena *a, Loc loc, const char *name, Expr *ctor) {
  TensorDecl *t = arena_alloc(a, sizeof *t);
  t->loc = loc;
  t->kind = DECL_CACHE;
  t->name = name;
  t->ctor = ctor;
  return t;
}

EventDecl *ast_event(Arena *a, Loc loc, const char *name, Expr *dims) {
  EventDecl *e = arena_alloc(a, sizeof *e);
  e->loc = loc;
  e->name = name;
  e->dims = dims;
  e->ndims = count_exprs(dims);
  return e;
}

Megakernel *ast_megakernel(Arena *a, Loc loc, const char *name, Expr *options, Stmt *body) {
  Megakernel *k = arena_alloc(a, sizeof *k);
  k->loc = loc;
  k->name = name;
  k->options = options;
  k->body = body;
  return k;
}

LayerParam *ast_layer_param(Arena *a, Loc loc, const char *name, TypeExpr *type, Expr *def) {
  LayerParam *p = arena_alloc(a, sizeof *p);
  p->loc = loc;
  p->name = name;
  p->type = type;
  p->def = def;
  return p;
}

Layer *ast_layer(Arena *a, Loc loc, const char *name, LayerParam *params, Stmt *body) {
  Layer *l = arena_alloc(a, sizeof *l);
  l->loc = loc;
  l->name = name;
  l->params = params;
  for (const LayerParam *p = params; p; p = p->next)
    l->nparams++;
  l->body = body;
  return l;
}

Model *ast_model(Arena *a, Loc loc, const char *name, const char *cfg_param, const char *cfg_name,
                 Loc cfg_loc, TensorDecl *decls, EventDecl *events, Megakernel *kernels) {
  Model *m = arena_alloc(a, sizeof *m);
  m->loc = loc;
  m->name = name;
  m->cfg_param = cfg_param;
  m->cfg_name = cfg_name;
  m->cfg_loc = cfg_loc;
  m->decls = decls;
  m->events = events;
  m->kernels = kernels;
  return m;
}

Import *ast_import(Arena *a, Loc loc, const char *path) {
  Import *i = arena_alloc(a, sizeof *i);
  i->loc = loc;
  i->path = path;
  return i;
}

/* ------------------------------------------------------------------------ names */

/* ORDER: ExprKind. */
static const char *const expr_kind_names[] = {"int",   "float", "name",   "dtype",
                                              "binary", "neg",   "call",   "index",
                                              "slice", "member", "kwarg"};
_Static_assert(sizeof expr_kind_names / sizeof expr_kind_names[0] == EXPR_KWARG + 1,
               "expr_kind_names mirrors ExprKind");

const char *ast_expr_kind_name(ExprKind k) {
  if ((unsigned)k >= sizeof expr_kind_names / sizeof expr_kind_names[0])
    MLKC_BUG("bad ExprKind %d", (int)k);
  return expr_kind_names[k];
}

/* ORDER: StmtKind. */
static const char *const stmt_kind_names[] = {"assignment", "call", "for", "return"};
_Static_assert(sizeof stmt_kind_names / sizeof stmt_kind_names[0] == STMT_RETURN + 1,
               "stmt_kind_names mirrors StmtKind");

const char *ast_stmt_kind_name(StmtKind k) {
  if ((unsigned)k >= sizeof stmt_kind_names / sizeof stmt_kind_names[0])
    MLKC_BUG("bad StmtKind %d", (int)k);
  return stmt_kind_names[k];
}

/* ORDER: ClauseKind. */
static const char *const clause_kind_names[] = {"tile", "wait", "notify"};
_Static_assert(sizeof clause_kind_names / sizeof clause_kind_names[0] == CLAUSE_NOTIFY + 1,
               "clause_kind_names mirrors ClauseKind");

const char *ast_clause_kind_name(ClauseKind k) {
  if ((unsigned)k >= sizeof clause_kind_names / sizeof clause_kind_names[0])
    MLKC_BUG("bad ClauseKind %d", (int)k);
  return clause_kind_names[k];
}

/* ORDER: DeclKind. */
static const char *const decl_kind_names[] = {"param", "input", "output", "cache"};
_Static_assert(sizeof decl_kind_names / sizeof decl_kind_names[0] == DECL_CACHE + 1,
               "decl_kind_names mirrors DeclKind");

const char *ast_decl_kind_name(DeclKind k) {
  if ((unsigned)k >= sizeof decl_kind_names / sizeof decl_kind_names[0])
    MLKC_BUG("bad DeclKind %d", (int)k);
  return decl_kind_names[k];
}

/* ORDER: MlkDType (mlk_desc.h); the lexer's dtype keywords use the same spelling. */
static const char *const dtype_names[] = {"f32", "bf16", "f16", "i32", "i8", "u8"};
_Static_assert(sizeof dtype_names / sizeof dtype_names[0] == MLK_DTYPE_COUNT,
               "dtype_names mirrors MlkDType");

const char *ast_dtype_name(MlkDType t) {
  if ((unsigned)t >= MLK_DTYPE_COUNT)
    MLKC_BUG("bad MlkDType %d", (int)t);
  return dtype_names[t];
}

/* ------------------------------------------------------------------------ expression printer */

/* A float in the fewest significant digits that read back as the same double, written as a
 * float: 0.5, 500000.0, 0.0025 in the range 1e-4 <= |v| < 1e16 (and 0.0), else with an exponent
 * as the source would write it: 1e-5, 7e22, 1.7976931348623157e308. */
static int print_float(FILE *out, double v) {
  char buf[48];
  int digits = 1;
  for (; digits < 17; digits++) {
    snprintf(buf, sizeof buf, "%.*e", digits - 1, v);
    if (strtod(buf, NULL) == v)
      break;
  }
  snprintf(buf, sizeof buf, "%.*e", digits - 1, v);
  char *e = strchr(buf, 'e');
  if (!e) /* inf or nan: the lexer makes neither */
    return fprintf(out, "%s", buf);
  int exp10 = atoi(e + 1);
  if (v == 0 || (exp10 >= -4 && exp10 < 16)) {
    int decimals = digits - 1 - exp10;
    return fprintf(out, "%.*f", decimals > 0 ? decimals : 1, v);
  }
  *e = '\0';
  return fprintf(out, "%se%d", buf, exp10);
}

/* Binding strength: a child is parenthesized when it binds more loosely than its context. Slices
 * and keyword arguments only stand alone in argument lists. */
static int expr_prec(const Expr *e) {
  switch (e->kind) {
  case EXPR_BINARY:
    return e->op == '+' || e->op == '-' ? 1 : 2;
  case EXPR_NEG:
    return 3;
  case EXPR_SLICE:
  case EXPR_KWARG:
    return 0;
  default:
    return 4;
  }
}

static int print_operand(FILE *out, const Expr *e, int min_prec) {
  if (expr_prec(e) >= min_prec)
    return ast_expr_print(out, e);
  int n = fprintf(out, "(");
  n += ast_expr_print(out, e);
  return n + fprintf(out, ")");
}

/* `first, second, ...` between open and close. */
static int print_list(FILE *out, const char *open, const Expr *list, const char *close) {
  int n = fprintf(out, "%s", open);
  for (const Expr *a = list; a; a = a->next) {
    if (a != list)
      n += fprintf(out, ", ");
    n += ast_expr_print(out, a);
  }
  return n + fprintf(out, "%s", close);
}

int ast_expr_print(FILE *out, const Expr *e) {
  int n = 0;
  switch (e->kind) {
  case EXPR_INT:
    return fprintf(out, "%lld", (long long)e->ival);
  case EXPR_FLOAT:
    return print_float(out, e->fval);
  case EXPR_NAME:
    return fprintf(out, "%s", e->name);
  case EXPR_DTYPE:
    return fprintf(out, "%s", ast_dtype_name(e->dtype));
  case EXPR_BINARY: {
    int p = expr_prec(e);
    n += print_operand(out, e->lhs, p);
    n += fprintf(out, " %c ", e->op);
    /* Left-associative: a right operand of the same strength needs parentheses. */
    return n + print_operand(out, e->rhs, p + 1);
  }
  case EXPR_NEG:
    n += fprintf(out, "-");
    /* -(-x) rather than --x, which reads like a decrement. */
    return n + print_operand(out, e->lhs, e->lhs->kind == EXPR_NEG ? 4 : 3);
  case EXPR_CALL:
    if (e->lhs) {
      n += print_operand(out, e->lhs, 4);
      n += fprintf(out, ".");
    }
    n += fprintf(out, "%s", e->name);
    return n + print_list(out, "(", e->args, ")");
  case EXPR_INDEX:
    n += print_operand(out, e->lhs, 4);
    return n + print_list(out, "[", e->args, "]");
  case EXPR_SLICE:
    if (e->lhs)
      n += ast_expr_print(out, e->lhs);
    n += fprintf(out, ":");
    if (e->rhs)
      n += ast_expr_print(out, e->rhs);
    return n;
  case EXPR_MEMBER:
    n += print_operand(out, e->lhs, 4);
    return n + fprintf(out, ".%s", e->name);
  case EXPR_KWARG:
    n += fprintf(out, "%s = ", e->name);
    return n + ast_expr_print(out, e->lhs);
  }
  MLKC_BUG("bad ExprKind %d", (int)e->kind);
}

/* ------------------------------------------------------------------------ --emit=ast */

/* Each node opens `(kind ...` on its own line, indented two spaces per level; its children follow
 * on the next lines and its `)` closes the last line it printed. A location in the root file is
 * `@LINE:COL`; in an imported file, `@FILE:LINE:COL`. */

typedef struct Dump {
  FILE *out;
  const Source *root; /* the program's file */
} Dump;

static void dump_open(const Dump *d, int depth) {
  static const char spaces[] = "                                                                ";
  fputc('\n', d->out);
  for (int n = 2 * depth; n > 0; n -= (int)sizeof spaces - 1)
    fwrite(spaces, 1, n < (int)sizeof spaces - 1 ? (size_t)n : sizeof spaces - 1, d->out);
  fputc('(', d->out);
}

/* Writes a line or column number (the dump writes a location per node: no printf). */
static void put_int(FILE *out, int v) {
  char buf[16], *p = buf + sizeof buf;
  unsigned u = v < 0 ? 0 : (unsigned)v;
  do
    *--p = (char)('0' + u % 10);
  while (u /= 10);
  fwrite(p, 1, (size_t)(buf + sizeof buf - p), out);
}

static void dump_loc(const Dump *d, Loc loc) {
  fputc('@', d->out);
  if (loc.src && loc.src != d->root) {
    fputs(loc.src->path, d->out);
    fputc(':', d->out);
  }
  put_int(d->out, loc.line);
  fputc(':', d->out);
  put_int(d->out, loc.col);
}

/* A string in the source's own syntax: the four escapes, anything else as \xNN if unprintable. */
static void dump_string(const Dump *d, const char *s) {
  FILE *out = d->out;
  fputc('"', out);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(out, "\\%c", *p);
    else if (*p == '\n')
      fputs("\\n", out);
    else if (*p == '\t')
      fputs("\\t", out);
    else if (*p < 0x20 || *p == 0x7f)
      fprintf(out, "\\x%02x", *p);
    else
      fputc(*p, out);
  }
  fputc('"', out);
}

static void dump_expr(const Dump *d, const Expr *e, int depth);

static void dump_exprs(const Dump *d, const Expr *list, int depth) {
  for (const Expr *e = list; e; e = e->next)
    dump_expr(d, e, depth);
}

static void dump_expr(const Dump *d, const Expr *e, int depth) {
  FILE *out = d->out;
  dump_open(d, depth);
  fputs(ast_expr_kind_name(e->kind), out);
  switch (e->kind) {
  case EXPR_INT:
    fprintf(out, " %lld ", (long long)e->ival);
    break;
  case EXPR_FLOAT:
    fputc(' ', out);
    print_float(out, e->fval);
    fputc(' ', out);
    break;
  case EXPR_NAME:
  case EXPR_MEMBER:
  case EXPR_KWARG:
    fprintf(out, " %s ", e->name);
    break;
  case EXPR_DTYPE:
    fprintf(out, " %s ", ast_dtype_name(e->dtype));
    break;
  case EXPR_BINARY:
    fprintf(out, " %c ", e->op);
    break;
  case EXPR_CALL:
    fprintf(out, " %s %s", e->name, e->lhs ? "receiver " : "");
    break;
  case EXPR_SLICE:
    fprintf(out, " %s:%s ", e->lhs ? "lo" : "", e->rhs ? "hi" : "");
    break;
  case EXPR_NEG:
  case EXPR_INDEX:
    fputc(' ', out);
    break;
  }
  dump_loc(d, e->loc);
  if (e->lhs)
    dump_expr(d, e->lhs, depth + 1);
  if (e->rhs)
    dump_expr(d, e->rhs, depth + 1);
  dump_exprs(d, e->args, depth + 1);
  fputc(')', out);
}

static void dump_type(const Dump *d, const TypeExpr *t, int depth) {
  dump_open(d, depth);
  fprintf(d->out, "type %s ", ast_dtype_name(t->dtype));
  dump_loc(d, t->loc);
  dump_exprs(d, t->dims, depth + 1);
  fputc(')', d->out);
}

/* A `from` binding (of a param or a dim): from="KEY"@L:C, or from=FN("A"@L:C, "B"@L:C)@L:C */
static void dump_from(const Dump *d, const char *fn, const StrList *from, Loc loc) {
  if (!from)
    return;
  fputs(" from=", d->out);
  if (fn)
    fprintf(d->out, "%s(", fn);
  for (const StrList *s = from; s; s = s->next) {
    fputs(s == from ? "" : ", ", d->out);
    dump_string(d, s->str);
    dump_loc(d, s->loc);
  }
  if (fn) {
    fputc(')', d->out);
    dump_loc(d, loc);
  }
}

static void dump_config(const Dump *d, const Config *c, int depth) {
  FILE *out = d->out;
  dump_open(d, depth);
  fprintf(out, "config %s ", c->name);
  dump_loc(d, c->loc);
  for (const DimDecl *dim = c->dims; dim; dim = dim->next) {
    dump_open(d, depth + 1);
    fprintf(out, "dim %s ", dim->name);
    dump_loc(d, dim->loc);
    if (dim->value) {
      fputs(" static", out);
      dump_from(d, dim->from_fn, dim->from, dim->from_loc);
      dump_expr(d, dim->value, depth + 2);
    } else {
      fputs(" dynamic", out);
      dump_expr(d, dim->lo, depth + 2);
      dump_expr(d, dim->hi, depth + 2);
    }
    fputc(')', out);
  }
  for (const MeshDecl *m = c->meshes; m; m = m->next) {
    dump_open(d, depth + 1);
    fprintf(out, "mesh %s ", m->name);
    dump_loc(d, m->loc);
    dump_expr(d, m->value, depth + 2);
    fputc(')', out);
  }
  fputc(')', out);
}

static void dump_stmts(const Dump *d, const Stmt *list, int depth);

static void dump_stmt(const Dump *d, const Stmt *s, int depth) {
  FILE *out = d->out;
  dump_open(d, depth);
  switch (s->kind) {
  case STMT_ASSIGN:
    /* The first target as `stmt NAME @L:C`, any more as `NAME@L:C`. */
    fprintf(out, "stmt %s ", s->targets->str);
    dump_loc(d, s->loc);
    for (const StrList *t = s->targets->next; t; t = t->next) {
      fprintf(out, " %s", t->str);
      dump_loc(d, t->loc);
    }
    dump_expr(d, s->value, depth + 1);
    break;
  case STMT_EXPR:
    fputs("expr ", out);
    dump_loc(d, s->loc);
    dump_expr(d, s->value, depth + 1);
    break;
  case STMT_FOR:
    fputs("for ", out);
    dump_loc(d, s->loc);
    fprintf(out, " var=%s", s->var);
    dump_loc(d, s->var_loc);
    dump_expr(d, s->lo, depth + 1);
    dump_expr(d, s->hi, depth + 1);
    dump_stmts(d, s->body, depth + 1);
    break;
  case STMT_RETURN:
    fputs("return ", out);
    dump_loc(d, s->loc);
    dump_exprs(d, s->value, depth + 1);
    break;
  }
  for (const Clause *c = s->clauses; c; c = c->next) {
    dump_open(d, depth + 1);
    fprintf(out, "%s ", ast_clause_kind_name(c->kind));
    dump_loc(d, c->loc);
    dump_exprs(d, c->args, depth + 2);
    fputc(')', out);
  }
  fputc(')', out);
}

static void dump_stmts(const Dump *d, const Stmt *list, int depth) {
  for (const Stmt *s = list; s; s = s->next)
    dump_stmt(d, s, depth);
}

static void dump_layer(const Dump *d, const Layer *l, int depth) {
  FILE *out = d->out;
  dump_open(d, depth);
  fprintf(out, "layer %s ", l->name);
  dump_loc(d, l->loc);
  for (const LayerParam *p = l->params; p; p = p->next) {
    dump_open(d, depth + 1);
    fprintf(out, "lparam %s ", p->name);
    dump_loc(d, p->loc);
    if (p->def)
      fputs(" default", out);
    if (p->type)
      dump_type(d, p->type, depth + 2);
    if (p->def)
      dump_expr(d, p->def, depth + 2);
    fputc(')', out);
  }
  dump_stmts(d, l->body, depth + 1);
  fputc(')', out);
}

static void dump_decl(const Dump *d, const TensorDecl *t, int depth) {
  FILE *out = d->out;
  dump_open(d, depth);
  fprintf(out, "%s %s ", ast_decl_kind_name(t->kind), t->name);
  dump_loc(d, t->loc);
  dump_from(d, t->from_fn, t->from, t->from_loc);
  if (t->kind == DECL_CACHE) {
    dump_expr(d, t->ctor, depth + 1);
  } else {
    dump_type(d, &t->type, depth + 1);
  }
  if (t->shard_axis) {
    dump_open(d, depth + 1);
    fprintf(out, "shard %s ", t->shard_axis);
    dump_loc(d, t->shard_loc);
    dump_expr(d, t->shard_dim, depth + 2);
    fputc(')', out);
  }
  fputc(')', out);
}

static void dump_model(const Dump *d, const Model *m, int depth) {
  FILE *out = d->out;
  dump_open(d, depth);
  fprintf(out, "model %s ", m->name);
  dump_loc(d, m->loc);
  fprintf(out, " cfg=%s:%s", m->cfg_param, m->cfg_name);
  dump_loc(d, m->cfg_loc);
  for (const TensorDecl *t = m->decls; t; t = t->next)
    dump_decl(d, t, depth + 1);
  for (const EventDecl *e = m->events; e; e = e->next) {
    dump_open(d, depth + 1);
    fprintf(out, "event %s ", e->name);
    dump_loc(d, e->loc);
    dump_exprs(d, e->dims, depth + 2);
    fputc(')', out);
  }
  for (const Megakernel *k = m->kernels; k; k = k->next) {
    dump_open(d, depth + 1);
    fprintf(out, "megakernel %s ", k->name);
    dump_loc(d, k->loc);
    dump_exprs(d, k->options, depth + 2);
    dump_stmts(d, k->body, depth + 2);
    fputc(')', out);
  }
  fputc(')', out);
}

void ast_dump(FILE *out, const Program *p) {
  Dump d = {out, p->src};
  fprintf(out, "(program %s", p->src ? p->src->path : "-");
  for (const Import *i = p->imports; i; i = i->next) {
    dump_open(&d, 1);
    fprintf(out, "import %s ", i->path);
    dump_loc(&d, i->loc);
    if (i->resolved) {
      fputs(" file=", out);
      dump_string(&d, i->resolved->path);
    }
    fputc(')', out);
  }
  for (const Config *c = p->configs; c; c = c->next)
    dump_config(&d, c, 1);
  for (const Layer *l = p->layers; l; l = l->next)
    dump_layer(&d, l, 1);
  for (const Model *m = p->models; m; m = m->next)
    dump_model(&d, m, 1);
  fputs(")\n", out);
}
