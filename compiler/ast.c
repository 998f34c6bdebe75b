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

Expr *ast_int(Arena *a, Loc loc, int64_t v) {
  Expr *e = new_expr(a, EXPR_INT, loc);
  e->ival = v;
  return e;
}

Expr *ast_name(Arena *a, Loc loc, const char *name) {
  Expr *e = new_expr(a, EXPR_NAME, loc);
  e->name = name;
  return e;
}

Expr *ast_binary(Arena *a, Loc loc, int op, Expr *lhs, Expr *rhs) {
  Expr *e = new_expr(a, EXPR_BINARY, loc);
  e->op = op;
  e->lhs = lhs;
  e->rhs = rhs;
  e->depth = 1 + max_depth(lhs->depth, rhs->depth);
  return e;
}

Expr *ast_neg(Arena *a, Loc loc, Expr *operand) {
  Expr *e = new_expr(a, EXPR_NEG, loc);
  e->lhs = operand;
  e->depth = 1 + operand->depth;
  return e;
}

Expr *ast_call(Arena *a, Loc loc, const char *name, Expr *args) {
  Expr *e = new_expr(a, EXPR_CALL, loc);
  e->name = name;
  e->args = args;
  for (Expr *x = args; x; x = x->next) {
    e->nargs++;
    e->depth = max_depth(e->depth, 1 + x->depth);
  }
  return e;
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

DimDecl *ast_dim_static(Arena *a, Loc loc, const char *name, Expr *value) {
  DimDecl *d = arena_alloc(a, sizeof *d);
  d->loc = loc;
  d->name = name;
  d->value = value;
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

Config *ast_config(Arena *a, Loc loc, const char *name, DimDecl *dims) {
  Config *c = arena_alloc(a, sizeof *c);
  c->loc = loc;
  c->name = name;
  c->dims = dims;
  return c;
}

TypeExpr ast_type(Loc loc, MlkDType dtype, Expr *dims) {
  TypeExpr t = {.loc = loc, .dtype = dtype, .dims = dims};
  for (Expr *e = dims; e; e = e->next)
    t.ndims++;
  return t;
}

TensorDecl *ast_tensor_decl(Arena *a, Loc loc, DeclKind kind, const char *name, TypeExpr type,
                            const char *from, Loc from_loc) {
  TensorDecl *t = arena_alloc(a, sizeof *t);
  t->loc = loc;
  t->kind = kind;
  t->name = name;
  t->type = type;
  t->from = from;
  t->from_loc = from_loc;
  return t;
}

Stmt *ast_stmt(Arena *a, Loc loc, const char *target, Expr *value, Expr *tile, Loc tile_loc) {
  Stmt *s = arena_alloc(a, sizeof *s);
  s->loc = loc;
  s->target = target;
  s->value = value;
  s->tile = tile;
  s->tile_loc = tile_loc;
  return s;
}

Megakernel *ast_megakernel(Arena *a, Loc loc, const char *name, Stmt *body) {
  Megakernel *k = arena_alloc(a, sizeof *k);
  k->loc = loc;
  k->name = name;
  k->body = body;
  return k;
}

Model *ast_model(Arena *a, Loc loc, const char *name, const char *cfg_param, const char *cfg_name,
                 Loc cfg_loc, TensorDecl *decls, Megakernel *kernels) {
  Model *m = arena_alloc(a, sizeof *m);
  m->loc = loc;
  m->name = name;
  m->cfg_param = cfg_param;
  m->cfg_name = cfg_name;
  m->cfg_loc = cfg_loc;
  m->decls = decls;
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
static const char *const expr_kind_names[] = {"int", "name", "binary", "neg", "call"};

const char *ast_expr_kind_name(ExprKind k) {
  if ((unsigned)k >= sizeof expr_kind_names / sizeof expr_kind_names[0])
    MLKC_BUG("bad ExprKind %d", (int)k);
  return expr_kind_names[k];
}

/* ORDER: DeclKind. */
static const char *const decl_kind_names[] = {"param", "input", "output"};

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

/* Binding strength: a child is parenthesized when it binds more loosely than its context. */
static int expr_prec(const Expr *e) {
  if (e->kind == EXPR_BINARY)
    return e->op == '+' || e->op == '-' ? 1 : 2;
  if (e->kind == EXPR_NEG)
    return 3;
  return 4;
}

static int print_operand(FILE *out, const Expr *e, int min_prec) {
  if (expr_prec(e) >= min_prec)
    return ast_expr_print(out, e);
  int n = fprintf(out, "(");
  n += ast_expr_print(out, e);
  return n + fprintf(out, ")");
}

int ast_expr_print(FILE *out, const Expr *e) {
  int n = 0;
  switch (e->kind) {
  case EXPR_INT:
    return fprintf(out, "%lld", (long long)e->ival);
  case EXPR_NAME:
    return fprintf(out, "%s", e->name);
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
    n += fprintf(out, "%s(", e->name);
    for (const Expr *a = e->args; a; a = a->next) {
      if (a != e->args)
        n += fprintf(out, ", ");
      n += ast_expr_print(out, a);
    }
    return n + fprintf(out, ")");
  }
  MLKC_BUG("bad ExprKind %d", (int)e->kind);
}

/* ------------------------------------------------------------------------ --emit=ast */

/* Each node opens `(kind ...` on its own line, indented two spaces per level; its children follow
 * on the next lines and its `)` closes the last line it printed. */

static void dump_open(FILE *out, int depth) {
  fputc('\n', out);
  for (int i = 0; i < depth; i++)
    fputs("  ", out);
  fputc('(', out);
}

static void dump_loc(FILE *out, Loc loc) { fprintf(out, "@%d:%d", loc.line, loc.col); }

/* A string in the source's own syntax: the four escapes, anything else as \xNN if unprintable. */
static void dump_string(FILE *out, const char *s) {
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

static void dump_expr(FILE *out, const Expr *e, int depth) {
  dump_open(out, depth);
  fputs(ast_expr_kind_name(e->kind), out);
  switch (e->kind) {
  case EXPR_INT:
    fprintf(out, " %lld ", (long long)e->ival);
    dump_loc(out, e->loc);
    break;
  case EXPR_NAME:
    fprintf(out, " %s ", e->name);
    dump_loc(out, e->loc);
    break;
  case EXPR_BINARY:
    fprintf(out, " %c ", e->op);
    dump_loc(out, e->loc);
    dump_expr(out, e->lhs, depth + 1);
    dump_expr(out, e->rhs, depth + 1);
    break;
  case EXPR_NEG:
    fputc(' ', out);
    dump_loc(out, e->loc);
    dump_expr(out, e->lhs, depth + 1);
    break;
  case EXPR_CALL:
    fprintf(out, " %s ", e->name);
    dump_loc(out, e->loc);
    for (const Expr *a = e->args; a; a = a->next)
      dump_expr(out, a, depth + 1);
    break;
  }
  fputc(')', out);
}

static void dump_config(FILE *out, const Config *c, int depth) {
  dump_open(out, depth);
  fprintf(out, "config %s ", c->name);
  dump_loc(out, c->loc);
  for (const DimDecl *d = c->dims; d; d = d->next) {
    dump_open(out, depth + 1);
    fprintf(out, "dim %s ", d->name);
    dump_loc(out, d->loc);
    if (d->value) {
      fputs(" static", out);
      dump_expr(out, d->value, depth + 2);
    } else {
      fputs(" dynamic", out);
      dump_expr(out, d->lo, depth + 2);
      dump_expr(out, d->hi, depth + 2);
    }
    fputc(')', out);
  }
  fputc(')', out);
}

static void dump_decl(FILE *out, const TensorDecl *t, int depth) {
  dump_open(out, depth);
  fprintf(out, "%s %s ", ast_decl_kind_name(t->kind), t->name);
  dump_loc(out, t->loc);
  if (t->from) {
    fputs(" from=", out);
    dump_string(out, t->from);
    dump_loc(out, t->from_loc);
  }
  dump_open(out, depth + 1);
  fprintf(out, "type %s ", ast_dtype_name(t->type.dtype));
  dump_loc(out, t->type.loc);
  for (const Expr *e = t->type.dims; e; e = e->next)
    dump_expr(out, e, depth + 2);
  fputs("))", out);
}

static void dump_kernel(FILE *out, const Megakernel *k, int depth) {
  dump_open(out, depth);
  fprintf(out, "megakernel %s ", k->name);
  dump_loc(out, k->loc);
  for (const Stmt *s = k->body; s; s = s->next) {
    dump_open(out, depth + 1);
    fprintf(out, "stmt %s ", s->target);
    dump_loc(out, s->loc);
    dump_expr(out, s->value, depth + 2);
    if (s->tile) {
      dump_open(out, depth + 2);
      fputs("tile ", out);
      dump_loc(out, s->tile_loc);
      dump_expr(out, s->tile, depth + 3);
      fputc(')', out);
    }
    fputc(')', out);
  }
  fputc(')', out);
}

static void dump_model(FILE *out, const Model *m, int depth) {
  dump_open(out, depth);
  fprintf(out, "model %s ", m->name);
  dump_loc(out, m->loc);
  fprintf(out, " cfg=%s:%s", m->cfg_param, m->cfg_name);
  dump_loc(out, m->cfg_loc);
  for (const TensorDecl *t = m->decls; t; t = t->next)
    dump_decl(out, t, depth + 1);
  for (const Megakernel *k = m->kernels; k; k = k->next)
    dump_kernel(out, k, depth + 1);
  fputc(')', out);
}

void ast_dump(FILE *out, const Program *p) {
  fprintf(out, "(program %s", p->src ? p->src->path : "-");
  for (const Import *i = p->imports; i; i = i->next) {
    dump_open(out, 1);
    fprintf(out, "import %s ", i->path);
    dump_loc(out, i->loc);
    fputc(')', out);
  }
  for (const Config *c = p->configs; c; c = c->next)
    dump_config(out, c, 1);
  for (const Model *m = p->models; m; m = m->next)
    dump_model(out, m, 1);
  fputs(")\n", out);
}
