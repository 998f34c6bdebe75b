/* mlkc.h: the one internal header of the mlkc compiler, a section per source file.
 *
 * Passes, in the order compiler/main.c runs them:
 *   lex.re     source text -> tokens (re2c; token codes are the Lemon parser's TK_*)
 *   parse.y    tokens -> AST (Lemon; actions are one-line builder calls from ast.c)
 *   sema.c     AST -> checked AST: names resolved, dims evaluated, shapes and dtypes checked
 *   elaborate.c checked AST -> graph IR (graph.c): one node per operation, layers inlined, loops
 *              unrolled
 *   fuse.c     graph -> graph: language operations -> runtime ops (norms, epilogues, residuals,
 *              gated products and splits folded into matvecs, stores into their writers)
 *   tile.c     every op's task grid; attention split over the context with its attn_reduce
 *   schedule.c the run order of each megakernel's ops
 *   events.c   the event tensors between them
 *              (--emit=graph --after=elaborate|fuse|tile|schedule|events prints the graph IR)
 *   serialize.c graph IR -> the runtime descriptor (Graph: MlkOpDesc, MlkEventDesc, ...)
 *   bind.c     (called by serialize.c) params' `from` bindings -> checkpoint tensors per layer and
 *              part
 *   codegen.c  task graph -> LLVM module (LLVM-C) linked with the stdlib tile bitcode -> PTX
 *   emit_c.c   task graph + PTX -> model.h / model.c, the typed C API over libmlkrt
 * diag.c reports errors in one format everywhere: file:line:col: error: msg, source line, caret.
 * builtins.c holds the table of the language's operations (builtins.def), graph.c the graph IR.
 */
#ifndef MLKC_H
#define MLKC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mlk_desc.h"

#define MLKC_VERSION "0.1.0"

/* ======================================================================== arena (ast.c) */

/* Every AST and IR node lives in one arena, freed at exit in one call. */
typedef struct Arena Arena;
Arena *arena_new(void);
void *arena_alloc(Arena *a, size_t size); /* zeroed, 16-byte aligned; aborts on OOM */
/* Makes room for one more element in arena array `arr` of n elements and capacity cap (both ints):
 * doubles it (from 16) into a new arena block when it is full. */
#define ARENA_GROW(a, arr, n, cap)                                                                 \
  do {                                                                                             \
    if ((n) == (cap)) {                                                                            \
      int nc = (cap) ? 2 * (cap) : 16;                                                             \
      void *nb = arena_alloc((a), (size_t)nc * sizeof *(arr));                                     \
      if (n)                                                                                       \
        memcpy(nb, (arr), (size_t)(n) * sizeof *(arr));                                            \
      (arr) = nb;                                                                                  \
      (cap) = nc;                                                                                  \
    }                                                                                              \
  } while (0)
char *arena_strndup(Arena *a, const char *s, size_t n);
char *arena_printf(Arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void arena_free(Arena *a);

/* ======================================================================== diag.c */

typedef struct Source {
  const char *path; /* as given on the command line */
  const char *text; /* NUL-terminated contents */
  size_t len;
} Source;

typedef struct Loc {
  int line; /* 1-based */
  int col;  /* 1-based, in bytes */
  const Source *src; /* the file; NULL means the Diag's own source */
} Loc;

typedef struct Diag {
  const Source *src;
  int nerrors;
  int nwarnings;
  FILE *out; /* stderr, or a file in tests */
} Diag;

void diag_init(Diag *d, const Source *src, FILE *out);
/* file:line:col: error: msg, then the source line and a caret under col. */
void diag_error(Diag *d, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void diag_warning(Diag *d, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A note attached to the last error: "file:line:col: note: msg" with its own source line. */
void diag_note(Diag *d, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* An error with no location (e.g. a missing file): "mlkc: error: msg". */
void diag_fatal(Diag *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Length (2..4) of the valid UTF-8 sequence of two or more bytes at p, before end; 0 if none.
 * With cp, stores its code point. */
int utf8_decode(const unsigned char *p, const unsigned char *end, uint32_t *cp);

/* Reads a whole file into `src` (text allocated in `a`); false with errno set on failure. */
bool source_read(Arena *a, const char *path, Source *src);

/* Internal compiler bugs: never shown as an assertion, always with file:line. */
#define MLKC_BUG(...) mlkc_bug(__FILE__, __LINE__, __VA_ARGS__)
_Noreturn void mlkc_bug(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ======================================================================== ast.c */

typedef struct Expr Expr;
typedef struct Stmt Stmt;
typedef struct Clause Clause;
typedef struct DimDecl DimDecl;
typedef struct MeshDecl MeshDecl;
typedef struct Config Config;
typedef struct TensorDecl TensorDecl;
typedef struct EventDecl EventDecl;
typedef struct Megakernel Megakernel;
typedef struct LayerParam LayerParam;
typedef struct Layer Layer;
typedef struct Model Model;
typedef struct Import Import;
typedef struct StrList StrList;
typedef struct Program Program;

/* ORDER: expr_kind_names in ast.c mirrors this enum. */
typedef enum ExprKind {
  EXPR_INT,    /* ival */
  EXPR_FLOAT,  /* fval: 1e-5, 0.5, 500000.0 */
  EXPR_NAME,   /* name */
  EXPR_DTYPE,  /* dtype used as a value: paged_kv(bf16, ...) */
  EXPR_BINARY, /* lhs op rhs; op is '+', '-', '*', '/' */
  EXPR_NEG,    /* -lhs */
  EXPR_CALL,   /* name(args...), or lhs.name(args...) when lhs (the receiver) is set */
  EXPR_INDEX,  /* lhs[args...]: each arg an expression or an EXPR_SLICE */
  EXPR_SLICE,  /* lhs:rhs inside an index list; either may be NULL (`:`, `a:`, `:b`) */
  EXPR_MEMBER, /* lhs.name (not called) */
  EXPR_KWARG   /* name = lhs, only inside call arguments and clause arguments */
} ExprKind;

struct Expr {
  ExprKind kind;
  Loc loc;        /* of the first token; for EXPR_BINARY of the operator; for EXPR_INDEX of '[';
                     for EXPR_SLICE of ':'; for EXPR_CALL with a receiver and EXPR_MEMBER of the
                     name after '.' */
  int64_t ival;
  double fval;
  MlkDType dtype; /* EXPR_DTYPE */
  const char *name;
  int op;
  Expr *lhs, *rhs;
  Expr *args;     /* EXPR_CALL, EXPR_INDEX: linked through `next` */
  int nargs;
  Expr *next;     /* next in an argument, index or dimension list */
  int depth;      /* 1 for a leaf; the parser rejects depth > MLKC_MAX_EXPR_DEPTH, so passes may
                     recurse over expressions */
  /* set by sema for value expressions (tensors): */
  const struct Type *type;
};

/* Statement clauses: `tile(128)`, `tile(head = 1, split = 8)`, `wait(e[l], f)`, `notify(e[l+1])`.
 * For wait/notify each arg is an event reference: EXPR_NAME or EXPR_INDEX on an EXPR_NAME. */
typedef enum ClauseKind { CLAUSE_TILE, CLAUSE_WAIT, CLAUSE_NOTIFY } ClauseKind;

struct Clause {
  Loc loc;        /* of the keyword */
  ClauseKind kind;
  Expr *args;     /* linked through next; EXPR_KWARG for keyword arguments */
  int nargs;
  Clause *next;
};

/* ORDER: stmt_kind_names in ast.c mirrors this enum. */
typedef enum StmtKind {
  STMT_ASSIGN, /* t1, t2 = value clauses */
  STMT_EXPR,   /* value clauses: a call for its effect, e.g. kv.append(l, k, v, pos) */
  STMT_FOR,    /* for var in lo..hi { body } */
  STMT_RETURN  /* return values (in layers) */
} StmtKind;

struct Stmt {
  StmtKind kind;
  Loc loc;          /* ASSIGN: of the first target; others: of the keyword or first token */
  StrList *targets; /* ASSIGN: one or more names (tuple results) */
  int ntargets;
  Expr *value;      /* ASSIGN, EXPR; RETURN: the values, linked through next */
  int nvalues;      /* RETURN */
  Clause *clauses;  /* ASSIGN, EXPR */
  const char *var;  /* FOR */
  Loc var_loc;
  Expr *lo, *hi;    /* FOR: the range lo..hi, hi exclusive */
  Stmt *body;       /* FOR */
  Stmt *next;
};

/* A list of names or strings with their locations. */
struct StrList {
  const char *str;
  Loc loc;
  StrList *next;
};

/* `dim D = expr` (static) or `dim B in lo..hi` (dynamic, lo/hi set, value NULL). A static dim
 * may be bound to a key of a Hugging Face config.json, `dim D = 2048 from "hidden_size"` (from_fn
 * NULL) or `dim HD = D / H from optional("head_dim")`, which mlkc --config applies (hfconfig.c);
 * and its value may be a float, a named number of the config that is not a size. */
struct DimDecl {
  Loc loc;
  const char *name;
  Expr *value;
  Expr *lo, *hi;
  const char *from_fn; /* the binding: NULL or "optional" (anything else is an error) */
  StrList *from;       /* its key, or NULL without a binding */
  Loc from_loc;        /* of the key (or of the function name) */
  /* --config (hfconfig.c): the value of the key in that file, which replaces `value` */
  const char *bound_file; /* NULL: not bound (no binding, or an optional key the file lacks) */
  const char *lacked_by;  /* the file lacks this optional key: the dim keeps its expression */
  bool bound_integral;    /* the number is an integer (bound_i holds it) */
  int64_t bound_i;
  double bound_f;
  int64_t resolved;    /* sema: the value of a static dim */
  double fresolved;    /* sema: the value of a float dim */
  bool is_float;       /* sema: a float dim */
  int64_t lo_v, hi_v;  /* sema: the range of a dynamic dim */
  DimDecl *next;
};

/* `mesh tp = 2`: a named axis of the device mesh that params are sharded over. */
struct MeshDecl {
  Loc loc;
  const char *name;
  Expr *value;
  int64_t resolved;    /* sema */
  MeshDecl *next;
};

struct Config {
  Loc loc;
  const char *name;
  DimDecl *dims;
  MeshDecl *meshes;
  bool bad;          /* sema: a dim bound to a config.json key has a wrong value (its models are
                        not checked: their errors would only be its consequences) */
  Config *next;
};

/* ORDER: dtype names are MlkDType's (mlk_desc.h); the lexer maps f32/bf16/... to DTYPE tokens. */
typedef struct TypeExpr {
  Loc loc;
  MlkDType dtype;
  Expr *dims; /* linked through next */
  int ndims;
} TypeExpr;

typedef enum DeclKind { DECL_PARAM, DECL_INPUT, DECL_OUTPUT, DECL_CACHE } DeclKind;

struct TensorDecl {
  Loc loc;
  DeclKind kind;
  const char *name;
  TypeExpr type;       /* params, inputs, outputs */
  Expr *ctor;          /* caches: `cache kv : paged_kv(bf16, L, KVH, HD, page = 64)`, an EXPR_CALL */
  /* `shard(axis, dim)` after the type, or shard_axis NULL */
  const char *shard_axis;
  Expr *shard_dim;
  Loc shard_loc;
  /* `from "name"` (from_fn NULL, one string) or `from cat("a", "b.{q,k,v}")` (from_fn "cat") */
  const char *from_fn;
  StrList *from;       /* unescaped strings, or NULL without a binding */
  Loc from_loc;        /* of the first string (or of the function name) */
  /* set by sema, for the lowering: */
  const struct Type *resolved;          /* params, inputs, outputs: the checked type; a sharded
                                           param's is one rank's slice (shard_dim / shard_ways) */
  int shard_dim_v;                      /* sharded params: the dimension (else -1) ... */
  int64_t shard_ways;                   /* ... and the ranks of its mesh axis (else 1) */
  const struct CacheGeometry *geometry; /* caches: the checked constructor's values */
  TensorDecl *next;
};

/* `event done : [L, B]`: an explicit event tensor of counters. */
struct EventDecl {
  Loc loc;
  const char *name;
  Expr *dims; /* linked through next */
  int ndims;
  EventDecl *next;
};

struct Megakernel {
  Loc loc;
  const char *name;
  Expr *options;  /* `megakernel decode(schedule = dynamic)`: EXPR_KWARGs, or NULL */
  Stmt *body;
  Megakernel *next;
};

/* A layer parameter: `x`, `x: f32[B, D]`, or `eps = 1e-5` (a default value). */
struct LayerParam {
  Loc loc;
  const char *name;
  TypeExpr *type;  /* optional annotation, or NULL */
  Expr *def;       /* default value, or NULL */
  LayerParam *next;
};

/* `layer rmsnorm(x, w, eps = 1e-5) { ... return y }`: inlined at every call. */
struct Layer {
  Loc loc;
  const char *name;
  LayerParam *params;
  int nparams;
  Stmt *body;
  Layer *next;
};

struct Model {
  Loc loc;
  const char *name;
  const char *cfg_param;  /* `c` in model m(c: cfg) */
  const char *cfg_name;   /* `cfg` */
  Loc cfg_loc;
  TensorDecl *decls;      /* params, inputs, outputs and caches in source order */
  EventDecl *events;
  Megakernel *kernels;
  Model *next;
};

struct Import {
  Loc loc;
  const char *path;       /* "std.nn" */
  const Source *resolved; /* the file it named, once loaded */
  Import *next;
};

/* A whole program: the root file and every file it imports (each loaded once), with the
 * declarations of all of them in load order. */
struct Program {
  const Source *src;      /* the root file */
  Import *imports;
  Config *configs;
  Layer *layers;
  Model *models;
};

/* Expressions nest at most this deep (Lua's LUAI_MAXCCALLS is 200). */
#define MLKC_MAX_EXPR_DEPTH 256

/* `shard(axis, dim)` and `from ...` as the grammar hands them to ast_tensor_decl; axis / strs
 * NULL when absent. */
typedef struct ShardSpec {
  const char *axis;
  Expr *dim;
  Loc loc;  /* of the axis name */
} ShardSpec;
typedef struct FromSpec {
  const char *fn;  /* "cat" in `from cat("a", "b")`, NULL for `from "a"` */
  StrList *strs;
  Loc loc;         /* of the first string, or of the function name */
} FromSpec;

/* One-line builders for the grammar actions; all allocate in the parser's arena. Lists come in
 * already linked through `next` (the builders count them). Locations: a block (config, model,
 * layer, megakernel, import) and a keyword statement (for, return) or clause are at its keyword,
 * a declaration (dim, mesh, tensor, cache, event, layer parameter, assignment) at its name. */
Expr *ast_int(Arena *a, Loc loc, int64_t v);
Expr *ast_float(Arena *a, Loc loc, double v);
Expr *ast_name(Arena *a, Loc loc, const char *name);
Expr *ast_dtype(Arena *a, Loc loc, MlkDType dtype);
Expr *ast_binary(Arena *a, Loc loc, int op, Expr *lhs, Expr *rhs);
Expr *ast_neg(Arena *a, Loc loc, Expr *e);
Expr *ast_call(Arena *a, Loc loc, const char *name, Expr *args);
Expr *ast_method(Arena *a, Loc loc, Expr *recv, const char *name, Expr *args); /* recv.name(args) */
Expr *ast_index(Arena *a, Loc loc, Expr *base, Expr *indices);  /* loc of '[' */
Expr *ast_slice(Arena *a, Loc loc, Expr *lo, Expr *hi);         /* loc of ':'; lo, hi optional */
Expr *ast_member(Arena *a, Loc loc, Expr *base, const char *name);
Expr *ast_kwarg(Arena *a, Loc loc, const char *name, Expr *value);
Expr *ast_expr_append(Expr *list, Expr *e); /* returns the list head */
StrList *ast_str(Arena *a, Loc loc, const char *str); /* one list element */
Clause *ast_clause(Arena *a, Loc loc, ClauseKind kind, Expr *args);
Stmt *ast_assign(Arena *a, Loc loc, StrList *targets, Expr *value, Clause *clauses);
Stmt *ast_expr_stmt(Arena *a, Loc loc, Expr *call, Clause *clauses);
Stmt *ast_for(Arena *a, Loc loc, const char *var, Loc var_loc, Expr *lo, Expr *hi, Stmt *body);
Stmt *ast_return(Arena *a, Loc loc, Expr *values);
DimDecl *ast_dim_static(Arena *a, Loc loc, const char *name, Expr *value, FromSpec from);
DimDecl *ast_dim_dynamic(Arena *a, Loc loc, const char *name, Expr *lo, Expr *hi);
MeshDecl *ast_mesh(Arena *a, Loc loc, const char *name, Expr *value);
Config *ast_config(Arena *a, Loc loc, const char *name, DimDecl *dims, MeshDecl *meshes);
TypeExpr ast_type(Loc loc, MlkDType dtype, Expr *dims);
TypeExpr *ast_type_new(Arena *a, TypeExpr type); /* a copy in the arena */
TensorDecl *ast_tensor_decl(Arena *a, Loc loc, DeclKind kind, const char *name, TypeExpr type,
                            ShardSpec shard, FromSpec from);
TensorDecl *ast_cache_decl(Arena *a, Loc loc, const char *name, Expr *ctor);
EventDecl *ast_event(Arena *a, Loc loc, const char *name, Expr *dims);
Megakernel *ast_megakernel(Arena *a, Loc loc, const char *name, Expr *options, Stmt *body);
LayerParam *ast_layer_param(Arena *a, Loc loc, const char *name, TypeExpr *type, Expr *def);
Layer *ast_layer(Arena *a, Loc loc, const char *name, LayerParam *params, Stmt *body);
Model *ast_model(Arena *a, Loc loc, const char *name, const char *cfg_param, const char *cfg_name,
                 Loc cfg_loc, TensorDecl *decls, EventDecl *events, Megakernel *kernels);
Import *ast_import(Arena *a, Loc loc, const char *path);

void ast_dump(FILE *out, const Program *p);                 /* --emit=ast */
const char *ast_expr_kind_name(ExprKind k);
const char *ast_stmt_kind_name(StmtKind k);  /* "assignment", "call", "for", "return" */
const char *ast_clause_kind_name(ClauseKind k); /* "tile", "wait", "notify" */
const char *ast_decl_kind_name(DeclKind k);  /* "param", "input", "output", "cache" */
const char *ast_dtype_name(MlkDType t);      /* "f32", "bf16", ... as written in the source */
int ast_expr_print(FILE *out, const Expr *e);               /* source-like, for messages */

/* ======================================================================== lex.re / parse.y */

/* Lemon numbers the terminals from 1 and reserves 0 for the end of input. */
#define TK_EOF 0

/* A token as the lexer hands it to the parser (the Lemon token type). */
typedef struct Token {
  int kind;         /* TK_* from the generated parse.h */
  Loc loc;
  const char *text; /* points into the source text */
  int len;
  int64_t ival;     /* TK_INT; TK_DTYPE: its MlkDType */
  double fval;      /* TK_FLOAT */
  const char *str;  /* TK_STRING: unescaped, in the arena */
} Token;

typedef struct Lexer {
  const Source *src;
  const char *cur, *lim, *line_start, *tok;
  int line;
  Arena *arena;
  Diag *diag;
} Lexer;

void lexer_init(Lexer *lx, const Source *src, Arena *a, Diag *d);
/* Next token; TK_EOF (0) at the end. Malformed input is reported through diag and skipped. */
Token lexer_next(Lexer *lx);
const char *token_kind_name(int kind); /* our own table: Lemon's vanishes under NDEBUG */
const char *token_kind_desc(int kind); /* for messages: "'{'", "an identifier", "end of file" */
void lexer_dump_tokens(FILE *out, const Source *src, Arena *a, Diag *d); /* --emit=tokens */

/* Parses the whole source; NULL (with errors reported) on a syntax error. */
Program *parse_program(const Source *src, Arena *a, Diag *d);

/* Loads the root file `path` and, transitively, every file it imports, each once, appending their
 * declarations to one Program in load order (depth first: a file, then what its first import
 * loads, then its second...). `import std.X.Y` names STDLIB_DIR/X/Y.mlk; `import a.b` names a/b.mlk
 * in the importing file's directory, else in each include dir in order. Reports "cannot find
 * module" (listing where it looked) at the import and returns NULL on any error. A Diag without a
 * source gets the root file's. Every Loc in the result names its file (Loc.src). */
Program *load_program(const char *path, const char *const *include_dirs, int ninclude,
                      const char *stdlib_dir, Arena *a, Diag *d);

/* ======================================================================== sema.c */

/* A tensor type. Each dim is shape[i] * (sym[i] ? the dynamic dim sym[i] : 1): static dims have
 * sym NULL; `f32[B, V]` with B dynamic has shape {1, V} and sym {B, NULL}. Dims are symbolic until
 * the runtime instantiates them for a concrete batch. */
typedef struct Type {
  MlkDType dtype;
  int rank;
  int64_t shape[MLK_MAX_RANK];
  const DimDecl *sym[MLK_MAX_RANK];
} Type;

/* What a `cache NAME : paged_kv(dtype, layers, kv_heads, head_dim, page = P)` declares. */
typedef struct CacheGeometry {
  MlkDType dtype;
  int64_t layers, kv_heads, head_dim, page;
} CacheGeometry;

bool type_is_static(const Type *t);
bool type_equal(const Type *a, const Type *b);
/* "bf16[2048, 128256]", "f32[B, 2048]", "f32[2*B]" (allocated in `a`) */
const char *type_str(Arena *a, const Type *t);

/* Checks the whole program: configs, layers (at each call), models and megakernels (layers
 * inlined, loops checked once over their whole range). Returns false after reporting every
 * error; warnings do not fail. */
bool sema_check(Program *p, Arena *a, Diag *d);

/* The config a model is instantiated with (NULL before sema or when it does not exist). */
Config *sema_model_config(const Program *p, const Model *m);

/* ======================================================================== hfconfig.c */

/* mlkc --config FILE: every static dim bound to a key (`dim D = 2048 from "hidden_size"`,
 * `from optional("head_dim")`) takes that key's number in the Hugging Face config.json at `path`
 * (DimDecl.bound_*), which sema then checks as the dim's value. Run after load_program and before
 * sema_check. Returns false after reporting (the file, the key, the dim): an unreadable or
 * malformed file, a required key it lacks, a value that is not a number, or a program that binds
 * no key at all. */
bool config_bind_json(Program *p, const char *path, Arena *a, Diag *d);
/* --batch-max N: every dynamic dim of p ranges up to N (its lower end as written); with at_least,
 * only those written to end below N are raised to it. False, with an error, when p has none.
 * Before sema_check, which checks the new range. */
bool config_batch_max(Program *p, int64_t max, bool at_least, Arena *a, Diag *d);
/* --mesh=AXIS=N: every config's mesh axis AXIS gets N ranks instead of its written size (an
 * error when no config has such an axis). */
bool config_set_mesh(Program *p, const char *axis, int64_t ranks, Arena *a, Diag *d);

/* ======================================================================== builtins.c */

/* The node kinds of the graph IR: one per operation of the language (compiler/builtins.def) and
 * per op the passes make. */
typedef enum IrOp {
#define OP(ID, NAME, SYNTAX, MINPOS, MAXPOS, TILE, KIND, FN) IR_##ID,
#include "builtins.def"
  IR_OP_COUNT
} IrOp;

/* How an operation is written (builtins.def, SYNTAX). */
typedef enum OpSyntax {
  OPS_CALL,     /* matvec(x, w) */
  OPS_BINARY,   /* a + b */
  OPS_INDEX,    /* table[ids] */
  OPS_METHOD,   /* kv.append(l, k, v, pos) */
  OPS_CTOR,     /* cache kv : paged_kv(...) */
  OPS_INTERNAL  /* made by a pass */
} OpSyntax;

/* What a statement's tile(...) clause means for the op that makes the statement's value. */
typedef enum TileRule {
  TILE_NONE,          /* nothing: the op's grid is fixed (whole rows, one task, a task per head) */
  TILE_COLUMNS,       /* tile(n): n output columns per task */
  TILE_HEAD_MULTIPLE, /* tile(n): n output columns per task, whole heads of head_dim */
  TILE_KV_HEADS,      /* tile(head = h, split = s): kv heads per task, chunks of the context */
  TILE_SPLIT,         /* tile(split = s): a task per chunk of each row, their results merged */
  TILE_OPERAND        /* that of the op making its operand (allreduce over one rank) */
} TileRule;

/* What a positional argument of an operation must be (builtins.def, ARG). */
typedef enum ArgRole {
  ARG_ACTIVATION,  /* a tensor the op reads: f32 or i32 */
  ARG_WEIGHT,      /* a bf16 param, or a view of one */
  ARG_SIZE,        /* a positive constant integer */
  ARG_LAYER,       /* a constant integer: a layer of the cache */
  ARG_CACHE_LAYER, /* kv[l]: one layer of a cache */
  ARG_MESH,        /* a mesh axis */
  ARG_DTYPE        /* a dtype */
} ArgRole;

typedef enum KwType { KW_INT, KW_FLOAT } KwType;

/* The values a keyword argument accepts; each is checked (and its message given) by sema. */
typedef enum KwRule {
  KWR_POSITIVE,     /* a positive constant */
  KWR_TEMPERATURE,  /* 0 (greedy), or a positive number that is a positive f32 */
  KWR_TOP_K,        /* an integer in [1, MLK_SAMPLE_MAX_TOP_K] */
  KWR_TOP_P,        /* a number in (0, 1] */
  KWR_POWER_OF_TWO  /* a positive power of two */
} KwRule;

/* The attributes of a runtime op that only some kinds use are the descriptor's list,
 * MLK_OP_ATTRS (mlk_desc.h). The graph IR keeps them in IrAttrs, and serialize copies them field by
 * field from that list, so no attribute can be left out of the descriptor. */
#define MLKC_OP_ATTRS(X) MLK_OP_ATTRS(X)

#define MLKC_X_FIELD(type, name, per_op, what) type name;
typedef struct IrAttrs {
  MLKC_OP_ATTRS(MLKC_X_FIELD)
} IrAttrs;

/* The type of an IrAttrs field, for the table's keyword arguments (ATTR_NONE: no field). */
typedef enum AttrType { ATTR_NONE, ATTR_F32, ATTR_I32, ATTR_I64 } AttrType;

typedef struct BuiltinArg {
  ArgRole role;
  const char *name;  /* in messages: "x", "w", "pos" */
  int slot;          /* the IrNode.in slot of a tensor operand, -1: not an operand */
} BuiltinArg;

typedef struct BuiltinKw {
  const char *name;
  KwType type;
  double def;        /* the default, when not required */
  bool required;
  KwRule rule;
  AttrType attr_type; /* the IrAttrs field it sets */
  size_t attr_offset;
} BuiltinKw;

#define BUILTIN_MAX_ARGS 4
#define BUILTIN_MAX_KWS 8

/* One operation of the language (compiler/builtins.def). */
typedef struct Builtin {
  IrOp op;
  const char *name;
  OpSyntax syntax;
  int min_pos, max_pos; /* max_pos -1: any number */
  TileRule tile;
  int kind;             /* the MlkOpKind it lowers to, -1: none */
  MlkFn fn;
  BuiltinArg args[BUILTIN_MAX_ARGS];
  int nargs;
  BuiltinKw kws[BUILTIN_MAX_KWS];
  int nkws;
} Builtin;

const Builtin *builtin_of(IrOp op);
/* The operation a call `name(...)`, a method `x.name(...)` or a cache constructor names, or NULL. */
const Builtin *builtin_find(OpSyntax syntax, const char *name);
/* "matvec, relu, ... and allreduce": the operations that are calls, for messages. */
const char *builtin_call_names(Arena *a);
/* The argument at position `pos` (the last one repeats for an op with any number). */
const BuiltinArg *builtin_arg(const Builtin *b, int pos);
/* The index of keyword `name` in b->kws, -1 if b has none of that name. */
int builtin_kw_index(const Builtin *b, const char *name);
/* Stores a keyword's value into the attribute it names (nothing for ATTR_NONE). */
void builtin_set_attr(const BuiltinKw *kw, IrAttrs *attrs, double v);

/* The type of result `i` of an operation whose operands (by argument position; NULL where the
 * argument is not a tensor) have the types `in`, as sema checked them. `sizes` are split's. Shared
 * by sema (symbolic shapes) and elaborate, so that both give a value the same type. */
Type builtin_result_type(IrOp op, const Type *const *in, const int64_t *sizes, int i);

/* ======================================================================== graph.c */

/* The graph IR: the compiler's own representation of a model's megakernels between elaborate and
 * serialize. Nodes are operations over values (SSA: a value has one writer); what a node means
 * changes from pass to pass:
 *   elaborate  one node per operation of the language, as written (layers inlined, loops unrolled)
 *   fuse       nodes that lower to a runtime op: epilogues, input norms, residuals and gated
 *              products folded into matvecs, splits into row slices, identities and stores gone
 *   tile       every node's task grid; a split attention gets its attn_reduce node
 *   schedule   the run order of the nodes (IrGraph.order)
 *   events     the event tensors between them (IrGraph.events)
 * serialize then writes the runtime descriptor (Graph, below). Everything lives in the arena;
 * nodes, values and tensors are referred to by index. */

/* Storage: a declared tensor (param, input, output), a cache's pool or page table, or a temporary
 * that serialize makes for a value no declared tensor holds. */
typedef struct IrTensor {
  const char *name;
  MlkTensorKind kind;
  Type type;          /* shape with the symbolic batch dim; a cache's pool and pages have rank 0 */
  const char *from;   /* checkpoint binding of a param (the first name of a cat), or NULL */
  int cache;          /* pools and page tables: IrGraph.caches index, else -1 */
} IrTensor;

/* What a node reads or writes. A view of a tensor (a declared tensor, or a whole one at an element
 * offset: wqkv[3]), or a node's result, which gets its storage from a pass: an output it is stored
 * to (fuse), else a temporary (serialize). */
typedef struct IrValue {
  Type type;          /* of the view */
  int tensor;         /* IrGraph.tensors index, -1: not stored yet */
  int64_t offset;     /* elements from the start of the tensor */
  int producer;       /* the node writing it, -1: a view of a declared tensor */
  int layer;          /* a cache value: the layer, -1 otherwise */
  const char *name;   /* the variable it was first assigned to, with its loops: "q[l=3]" */
  const char *label;  /* the name of its temporary when no variable names it, or NULL: made from
                         the producer (a pass sets it when that would mislead) */
} IrValue;

/* A statement's tile(...) clause (0: not given), kept on the node that makes its value. */
typedef struct IrHints {
  int64_t tile, head, split;
} IrHints;

/* A wait on, or a notify of, an explicit counter (IrGraph.explicit_counters) by a node, with the
 * reference of the clause that says so (`done[l]` of `wait(done[l])`), for messages. */
typedef struct IrSync {
  int counter;
  Loc loc;
} IrSync;

#define IR_MAX_IN MLK_OP_INPUTS
#define IR_MAX_OUT 16

typedef struct IrNode {
  IrOp op;
  Loc loc;             /* of the expression it comes from */
  const char *ctx;     /* the loop variables in scope, "[l=3]", appended to its names */
  int kernel;          /* IrGraph.kernels index */
  int seq;             /* position in a sequential evaluation of the program (elaborate) */
  bool dead;           /* removed by a pass */
  MlkFn fn;            /* matvec: its epilogue (fuse); eltwise ops: their function */
  int in[IR_MAX_IN];   /* operand values, -1: none; the slots of MlkOpDesc.in for ops that lower */
  int in_seq[IR_MAX_IN]; /* when a sequential evaluation first needs each operand (schedule) */
  int out[IR_MAX_OUT]; /* result values (several for split) */
  int nout;
  IrAttrs attr;        /* keyword arguments, and the attributes of the runtime op */
  int64_t mesh;        /* allreduce: the ranks of its mesh axis */
  IrHints hint;        /* the tile(...) of its statement, when it makes the statement's value */
  int64_t default_rows; /* a slice of a split matvec: the whole matvec's rows (its default tile) */
  /* tile */
  int64_t n, k, tile, ntasks; /* output columns, input columns, columns per task, tasks */
  int batched;         /* rows loop over the run's batch */
  int reduce;          /* a split attention: its attn_reduce node, else -1 */
  /* schedule */
  int emit_seq;        /* when a sequential evaluation runs it, -1: when its result is first needed */
  int store_seq;       /* when a store into an output needs its result (fuse), -1: none */
  /* the counters its statement's wait and notify clauses name */
  IrSync *waits, *notifies;
  int nwaits, nnotifies;
} IrNode;

/* An event tensor between two nodes (mlk_desc.h, MlkEventDesc): inferred from a value one node
 * writes and the other reads, or an explicit counter of the language (producer, consumer and
 * value -1: its nodes are those whose wait and notify lists name it). */
typedef struct IrEvent {
  int producer, consumer; /* nodes, -1 for a counter */
  int value;              /* the value that carries the dependency, -1 for a counter */
  int counter;            /* IrGraph.explicit_counters index, -1 for an inferred event */
  MlkEventMap map;
  int64_t n, ptile, ctile, size, base;
  int64_t count;          /* a counter: the notifies of a run (the tasks of its notifying nodes) */
  int64_t ranks;          /* > 1: its notifies reach every rank (an in-kernel allreduce's operand) */
} IrEvent;

/* A counter of an explicit event that a wait(...) or notify(...) clause names, once loops are
 * unrolled: `done[3]` of one megakernel. Every node a statement makes waits on the counters of its
 * wait clauses and notifies those of its notify clauses (IrNode.waits, notifies). */
typedef struct IrCounter {
  const EventDecl *event;
  int64_t index[MLK_MAX_RANK];
  int kernel;
  const char *name;       /* "done[3]" */
  int event_id;           /* its IrEvent (events pass), -1: none */
} IrCounter;

typedef struct IrKernel {
  const Megakernel *decl;
  const char *name, *entry;
  MlkSchedule schedule;
  int first, count;       /* schedule: its nodes are IrGraph.order[first .. first + count) */
  int segment, nsegments; /* cut: segment `segment` of the nsegments its source megakernel was cut
                             into at its collectives (0 and 1: not cut) */
} IrKernel;

typedef struct IrCache {
  const TensorDecl *decl;
  MlkDType dtype;
  int64_t layers, kv_heads, head_dim, page;
  int tensor, pages_tensor;
} IrCache;

typedef struct IrGraph {
  Arena *arena;
  const Program *prog;
  const Model *model;
  const char *name;
  const DimDecl *batch;   /* the dynamic batch dim, or NULL */
  IrTensor *tensors;
  int ntensors, cap_tensors;
  IrValue *values;
  int nvalues, cap_values;
  IrNode *nodes;
  int nnodes, cap_nodes;
  IrKernel *kernels;
  int nkernels;
  IrCache *caches;
  int ncaches;
  int *order;             /* schedule: the live nodes in run order, kernel after kernel */
  int norder;
  IrEvent *events;
  int nevents, cap_events;
  int64_t ncounters;      /* the counter slots of all events */
  IrCounter *explicit_counters; /* the counters that wait/notify clauses name */
  int nexplicit, cap_explicit;
  int *collectives;       /* cut: the allreduce nodes over several ranks, in run order; each runs
                             after the segment (kernel) its IrNode.kernel names */
  int ncollectives;
  int64_t ranks;          /* the ranks of the model's mesh (the product of its axes), 1: none */
  const char *pass;       /* the last pass run over it, for dumps */
} IrGraph;

IrGraph *ir_graph_new(Arena *a, const Program *p, const Model *m);
int ir_add_tensor(IrGraph *g, IrTensor t);
int ir_add_value(IrGraph *g, IrValue v);
/* A node with no operand and no result; attr.layer and attr.cache are -1 as the runtime wants. */
int ir_add_node(IrGraph *g, IrOp op, Loc loc, const char *ctx, int kernel);
/* Adds a result of type t to node n (a new value) and returns the value. */
int ir_add_result(IrGraph *g, int n, const Type *t);
int ir_add_event(IrGraph *g, IrEvent e);
/* Live nodes reading value v (each operand slot counts). */
int ir_uses(const IrGraph *g, int v);
/* Makes every live node that reads value `from` read `to`. */
void ir_replace_uses(IrGraph *g, int from, int to);
/* The explicit counter `event[index...]` of megakernel `kernel`, made on first use. */
int ir_counter(IrGraph *g, const EventDecl *event, const int64_t *index, int kernel);
/* Adds counter sy.counter to a node's wait (or notify) list, unless it is there already. */
void ir_add_sync(IrGraph *g, int n, IrSync sy, bool notify);
/* Removes counter c from a node's wait (or notify) list. */
void ir_drop_sync(IrGraph *g, int n, int c, bool notify);
/* Node `into` takes over the wait and notify lists of node `from` (a pass folded `from` into it:
 * what its statement's clauses said of `from` now holds for `into`). */
void ir_merge_sync(IrGraph *g, int into, int from);
/* A batched type: its leading dim is the dynamic batch dim. */
bool ir_type_batched(const Type *t);
/* The elements of one row of a value of type t (all of them when it is not batched). */
int64_t ir_type_cols(const Type *t);
/* "matvec", "add", ...: the op's name in dumps and in the names of ops and temporaries */
const char *ir_op_name(IrOp op);
/* The file of a location without its directories, as op names show it: "nn.mlk". */
const char *ir_loc_file(const IrGraph *g, Loc loc);
/* --emit=graph --after=PASS: the graph as text, one line per tensor, node and event. */
void ir_dump(FILE *out, const IrGraph *g);

/* ======================================================================== elaborate.c */

/* A checked model -> its graph IR with one node per operation as written: layers inlined, loops
 * unrolled, keyword defaults from the table, nothing fused (the passes below do that). NULL after
 * reporting what it cannot build. */
IrGraph *elaborate_model(Program *p, Model *m, Arena *a, Diag *d);

/* ======================================================================== fuse.c */

/* The operations of the language -> the runtime's ops: allreduce over one rank removed, rmsnorm
 * into the reading matvec, relu/silu, residual adds and gated products into matvec epilogues,
 * splits into row slices, stores into the stored value's writer or a copy, unread nodes removed.
 * False after reporting what it cannot lower. */
bool fuse_graph(IrGraph *g, Diag *d);

/* ======================================================================== tile.c */

typedef struct TileOptions {
  int64_t attn_split;     /* chunks of an attention without tile(split = s) (mlkc --attn-split=N),
                             0: tile_default_attn_split */
  int64_t attn_min_chunk; /* MlkOpDesc.min_chunk of split attentions, 0: MLKC_ATTN_MIN_CHUNK */
  bool kernel_collectives; /* mlkc --collectives=kernel: an allreduce over several ranks is an op
                              of its megakernel (MLK_OP_ALLREDUCE), not a cut (cut.c) */
  bool attn_reduce_op;     /* mlkc --attn-reduce-op: every split attention's chunks merged by an
                              attn_reduce node, none by the attention's own last tasks */
} TileOptions;

/* Gives every op its task grid (columns, columns per task, tasks) from its tile(...) hint or the
 * default policy, and splits attention over the context (the chunks merged by each kv head
 * block's last task, mlk_attn_folds, or where that cannot be, by an attn_reduce node). */
void tile_graph(IrGraph *g, const TileOptions *o);
/* The fewest positions per chunk of a split attention (MlkOpDesc.min_chunk) unless attn_min_chunk
 * above 0 says otherwise (mlkc --attn-min-chunk=N): each chunk is a task with a fixed cost, so a
 * short context fills only the first chunks. Measured on the H100 (Llama-3.2-1B, 16 chunks, context
 * 128): with no minimum, 128 attention tasks of ~8 us each for 8 positions apiece. */
#define MLKC_ATTN_MIN_CHUNK 32
/* Chunks per row of an attention without `tile(split = s)` (attn_split above 0 overrides it):
 * about MLKC_ATTN_SPLIT_TARGET_TASKS tasks in all (kv head tasks x chunks), within [1,
 * MLK_ATTN_MAX_SPLIT]: the one knob of the default policy. */
#define MLKC_ATTN_SPLIT_TARGET_TASKS 128
int64_t tile_default_attn_split(int64_t kv_heads, int64_t kvh);

/* ======================================================================== schedule.c */

/* The run order of each megakernel's ops (IrGraph.order): where a sequential evaluation of the
 * program would run or first need each, and every op that notifies a counter before every op that
 * waits on it. False after reporting a wait that the order cannot satisfy (a cycle). */
bool schedule_graph(IrGraph *g, Diag *d);
/* The cut pass (cut.c): each megakernel that all-reduces over several ranks becomes segments, one
 * kernel each, with the collectives between them (IrGraph.collectives). */
bool cut_graph(IrGraph *g, const TileOptions *t, Diag *d);

/* ======================================================================== events.c */

/* The event tensors between the scheduled ops (IrGraph.events) and their counters: those the
 * data flow implies, then one per explicit counter that some op waits on and some op notifies
 * (a wait on a counter nothing notifies is a warning, and dropped). */
void events_graph(IrGraph *g, Diag *d);

/* ======================================================================== serialize.c */

/* The runtime descriptor of a compiled model (mlk_desc.h's structures, with what the compiler
 * keeps beside them): what codegen.c and emit_c.c read. serialize_graph writes it from the graph
 * IR after the events pass. */
typedef struct Graph Graph;

Graph *serialize_graph(IrGraph *ir, Arena *a, Diag *d);
void graph_dump(FILE *out, const Graph *g);  /* --emit=graph (JSON, desc_dump_json) */
/* The runtime descriptor of graph g, as model.c holds it (emit_c.c writes the same fields), with
 * the given PTX (NULL: none), its tables allocated in `a`: for a model compiled in-process. */
MlkModelDesc *graph_desc(const Graph *g, const char *ptx_sm90a, const char *ptx_sm80, Arena *a);
/* Every field of a runtime descriptor as JSON: what --emit=graph prints of the compiler's, and a
 * test of the one a generated model.c holds. */
void desc_dump_json(FILE *out, const MlkModelDesc *d);
void graph_dump_events(FILE *out, const Graph *g); /* --emit=events */
void graph_dump_dot(FILE *out, const Graph *g);    /* --emit=dot (Graphviz) */

typedef struct GTensor {
  const char *name;
  MlkDType dtype;
  MlkTensorKind kind;
  int rank;
  int64_t shape[MLK_MAX_RANK]; /* a batched tensor has shape[0] = the batch maximum */
  int64_t numel;
  const char *from;
  int batched;  /* shape[0] is the dynamic batch dim */
  const MlkBinding *bindings; /* params with `from`: set by bind_params (bind.c) */
  int nbindings;
} GTensor;

typedef struct GOp {
  MlkOpDesc d;
  Loc loc;
  int kernel; /* index into Graph.kernels */
  /* the explicit events (producer, consumer and tensor -1) it waits on and notifies, which
   * graph_link_events adds to its lists after the inferred ones */
  const int *explicit_waits, *explicit_notifies;
  int nexplicit_waits, nexplicit_notifies;
} GOp;

typedef struct GKernel {
  const char *name;
  const char *entry;
  int first_op, nops;
  MlkSchedule schedule;
  int *variant_ops;  /* an op of each code variant (MlkKernelDesc): graph_assign_variants */
  int nvariants;
  int segment, nsegments; /* MlkKernelDesc */
} GKernel;

struct Graph {
  const Program *prog;
  const Model *model;
  const char *name;
  GTensor *tensors;
  int ntensors, cap_tensors;
  GOp *ops;
  int nops, cap_ops;
  MlkEventDesc *events;
  int nevents, cap_events;
  int *event_refs;  /* the ops' wait and notify lists (MlkOpDesc.wait0, ...): graph_link_events */
  int nevent_refs;
  int64_t ncounters;
  GKernel *kernels;
  int nkernels;
  MlkCollectiveDesc *collectives;
  int ncollectives;
  int64_t ranks;
  MlkCacheDesc *caches;
  int ncaches;
  const DimDecl *batch; /* the dynamic batch dim, or NULL */
};

/* Fills every op's wait and notify lists (MlkOpDesc.wait0/nwaits/notify0/nnotifies over
 * Graph.event_refs) from the events' producer and consumer, then its explicit events (GOp), and each
 * inferred MLK_MAP_ALL event's count (the producer's tasks). Run once the events and the grids are
 * final. */
void graph_link_events(Graph *g, Arena *a);

/* Sorts the ops of each kernel into code variants (mlk_op_same_variant): sets every op's
 * MlkOpDesc.variant and each kernel's variant_ops. Run once the ops are final. */
void graph_assign_variants(Graph *g, Arena *a);

/* The number of elements of one batch row of tensor t (numel / shape[0] when batched). */
int64_t graph_row_elems(const GTensor *t);

/* ======================================================================== pipeline.c */

/* The passes from a checked model to its final graph IR, in order: elaborate, fuse, tile,
 * schedule, cut, events. */
#define LOWER_NPASSES 6
extern const char *const lower_pass_names[LOWER_NPASSES];
/* The index of a pass by name, or -1. */
int lower_pass_index(const char *name);
/* elaborate_model and the passes after it up to index `last` (LOWER_NPASSES - 1: all of them);
 * NULL after an error. */
IrGraph *lower_model(Program *p, Model *m, const TileOptions *t, int last, Arena *a, Diag *d);
/* The model called `name`, or NULL. */
Model *find_model(Program *p, const char *name);
/* Where `import std.X` looks when neither --stdlib nor $MLKC_STDLIB names a directory: the
 * installed stdlib relative to the running program (bin/../share/mlkc/stdlib), else the source
 * tree's (a program in its build tree). Resolved once. */
const char *mlkc_default_stdlib(void);

/* ======================================================================== bind.c */

/* Expands the `from` binding of every param of a lowered graph into GTensor.bindings: a checkpoint
 * tensor per layer ({l}) and per name of cat(...), with its offset in the param and its exact
 * shape. The rows of each name of a cat come from the row slices the graph's matvecs read (a
 * split matvec); a cat they do not cut into one slice per name is an error. */
void bind_params(Graph *g, Arena *a, Diag *d);
#define MLKC_MAX_BINDINGS 65536

/* ======================================================================== codegen.c */

typedef struct CodegenOptions {
  const char *arch;      /* "sm_90a" or "sm_80" */
  int opt_level;         /* 0..3 */
} CodegenOptions;

/* Builds the LLVM module for every megakernel of `g` and links the tiles. On success returns
 * true and either the textual LLVM IR (emit_llvm) or PTX in *out (malloc'd). */
bool codegen_graph(const Graph *g, const CodegenOptions *opt, bool emit_llvm, char **out, Diag *d);

/* ======================================================================== pipeline.c, in-process */

/* A model compiled in-process into the descriptor the runtime runs (mlk-run, tests): the whole
 * pipeline of mlkc, with its options. */
typedef struct CompileRequest {
  const char *file;      /* the .mlk file */
  const char *model;     /* the model to compile; NULL: the file's only one */
  const char *config;    /* a Hugging Face config.json binding dims (--config), or NULL */
  const char *arch;      /* the PTX target to generate ("sm_90a", "sm_80"), or NULL: none */
  int64_t batch_max;     /* --batch-max, 0: as written */
  bool batch_at_least;   /* batch_max only raises the dynamic dims' ends that are below it */
  const char *mesh_axis; /* --mesh=AXIS=N, NULL: as written */
  int64_t mesh_ranks;
  bool kernel_collectives; /* --collectives=kernel */
} CompileRequest;

typedef struct Compiled {
  Arena *arena;          /* holds the descriptor's tables */
  const MlkModelDesc *desc;
  char *ptx90, *ptx80;   /* malloc'd PTX, or NULL */
} Compiled;

/* Compiles request r (the stdlib from $MLKC_STDLIB, else mlkc_default_stdlib); false after the
 * diagnostics were printed on stderr. compiled_free releases *out either way. */
bool compile_request(const CompileRequest *r, Compiled *out);
void compiled_free(Compiled *c);

/* ======================================================================== emit_c.c */

/* Writes the typed API header (model.h) and its implementation (model.c, with the PTX embedded,
 * and the sm_90a cubin when mlkc --cubin gives one, else NULL).
 * `base` is the file name without extension used in the #include. */
void emit_header(FILE *out, const Graph *g);
void emit_source(FILE *out, const Graph *g, const char *header_name, const char *ptx_sm90a,
                 const char *ptx_sm80, const unsigned char *cubin_sm90a, size_t cubin_sm90a_bytes);

#endif /* MLKC_H */
