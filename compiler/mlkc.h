/* mlkc.h: the one internal header of the mlkc compiler, a section per source file.
 *
 * Passes, in the order compiler/main.c runs them:
 *   lex.re     source text -> tokens (re2c; token codes are the Lemon parser's TK_*)
 *   parse.y    tokens -> AST (Lemon; actions are one-line builder calls from ast.c)
 *   sema.c     AST -> checked AST: names resolved, dims evaluated, shapes and dtypes checked
 *   lower.c    checked AST -> task graph: ops with task grids, event tensors between them
 *   codegen.c  task graph -> LLVM module (LLVM-C) linked with the stdlib tile bitcode -> PTX
 *   emit_c.c   task graph + PTX -> model.h / model.c, the typed C API over libmlkrt
 * diag.c reports errors in one format everywhere: file:line:col: error: msg, source line, caret.
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
typedef struct DimDecl DimDecl;
typedef struct Config Config;
typedef struct TensorDecl TensorDecl;
typedef struct Megakernel Megakernel;
typedef struct Model Model;
typedef struct Import Import;
typedef struct Program Program;

/* ORDER: expr_kind_names in ast.c mirrors this enum. */
typedef enum ExprKind {
  EXPR_INT,    /* ival */
  EXPR_NAME,   /* name */
  EXPR_BINARY, /* lhs op rhs; op is '+', '-', '*', '/' */
  EXPR_NEG,    /* -lhs */
  EXPR_CALL    /* name(args...) */
} ExprKind;

struct Expr {
  ExprKind kind;
  Loc loc;        /* of the first token; for EXPR_BINARY, of the operator */
  int64_t ival;
  const char *name;
  int op;
  Expr *lhs, *rhs;
  Expr *args;     /* EXPR_CALL: linked through `next` */
  int nargs;
  Expr *next;     /* next in an argument or dimension list */
  int depth;      /* 1 for a leaf; the parser rejects depth > MLKC_MAX_EXPR_DEPTH, so passes may
                     recurse over expressions */
  /* set by sema for value expressions (tensors): */
  const struct Type *type;
};

/* `name = value tile(t)` in a megakernel body. */
struct Stmt {
  Loc loc;
  const char *target;
  Expr *value;
  Expr *tile;     /* `tile(expr)` hint, or NULL */
  Loc tile_loc;
  Stmt *next;
};

/* `dim D = expr` (static) or `dim B in lo..hi` (dynamic, lo/hi set, value NULL). */
struct DimDecl {
  Loc loc;
  const char *name;
  Expr *value;
  Expr *lo, *hi;
  int64_t resolved; /* sema: the value of a static dim */
  DimDecl *next;
};

struct Config {
  Loc loc;
  const char *name;
  DimDecl *dims;
  Config *next;
};

/* ORDER: dtype names are MlkDType's (mlk_desc.h); the lexer maps f32/bf16/... to DTYPE tokens. */
typedef struct TypeExpr {
  Loc loc;
  MlkDType dtype;
  Expr *dims; /* linked through next */
  int ndims;
} TypeExpr;

typedef enum DeclKind { DECL_PARAM, DECL_INPUT, DECL_OUTPUT } DeclKind;

struct TensorDecl {
  Loc loc;
  DeclKind kind;
  const char *name;
  TypeExpr type;
  const char *from; /* `from "..."` binding, unescaped, or NULL */
  Loc from_loc;
  TensorDecl *next;
};

struct Megakernel {
  Loc loc;
  const char *name;
  Stmt *body;
  Megakernel *next;
};

struct Model {
  Loc loc;
  const char *name;
  const char *cfg_param;  /* `c` in model m(c: cfg) */
  const char *cfg_name;   /* `cfg` */
  Loc cfg_loc;
  TensorDecl *decls;      /* params, inputs and outputs in source order */
  Megakernel *kernels;
  Model *next;
};

struct Import {
  Loc loc;
  const char *path; /* "std.nn" */
  Import *next;
};

struct Program {
  const Source *src;
  Import *imports;
  Config *configs;
  Model *models;
};

/* Expressions nest at most this deep (Lua's LUAI_MAXCCALLS is 200). */
#define MLKC_MAX_EXPR_DEPTH 256

/* One-line builders for the grammar actions; all allocate in the parser's arena. Locations: a
 * block (config, model, megakernel, import) is at its keyword, a declaration (dim, tensor,
 * statement) at its name. */
Expr *ast_int(Arena *a, Loc loc, int64_t v);
Expr *ast_name(Arena *a, Loc loc, const char *name);
Expr *ast_binary(Arena *a, Loc loc, int op, Expr *lhs, Expr *rhs);
Expr *ast_neg(Arena *a, Loc loc, Expr *e);
Expr *ast_call(Arena *a, Loc loc, const char *name, Expr *args);
Expr *ast_expr_append(Expr *list, Expr *e); /* returns the list head */
DimDecl *ast_dim_static(Arena *a, Loc loc, const char *name, Expr *value);
DimDecl *ast_dim_dynamic(Arena *a, Loc loc, const char *name, Expr *lo, Expr *hi);
Config *ast_config(Arena *a, Loc loc, const char *name, DimDecl *dims);
TypeExpr ast_type(Loc loc, MlkDType dtype, Expr *dims);
TensorDecl *ast_tensor_decl(Arena *a, Loc loc, DeclKind kind, const char *name, TypeExpr type,
                            const char *from, Loc from_loc);
Stmt *ast_stmt(Arena *a, Loc loc, const char *target, Expr *value, Expr *tile, Loc tile_loc);
Megakernel *ast_megakernel(Arena *a, Loc loc, const char *name, Stmt *body);
Model *ast_model(Arena *a, Loc loc, const char *name, const char *cfg_param, const char *cfg_name,
                 Loc cfg_loc, TensorDecl *decls, Megakernel *kernels);
Import *ast_import(Arena *a, Loc loc, const char *path);

void ast_dump(FILE *out, const Program *p);                 /* --emit=ast */
const char *ast_expr_kind_name(ExprKind k);
const char *ast_decl_kind_name(DeclKind k);  /* "param", "input", "output" */
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
  int64_t ival;     /* TK_INT */
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

/* ======================================================================== sema.c */

typedef struct Type {
  MlkDType dtype;
  int rank;
  int64_t shape[MLK_MAX_RANK];
} Type;

/* Checks the whole program; returns false after reporting every error. */
bool sema_check(Program *p, Arena *a, Diag *d);

/* ======================================================================== lower.c */

typedef struct Graph Graph; /* defined below */

/* Lowers model `m` (checked) into its task graph. */
Graph *lower_model(Program *p, Model *m, Arena *a, Diag *d);
void graph_dump(FILE *out, const Graph *g);  /* --emit=graph (JSON) */
void graph_dump_events(FILE *out, const Graph *g); /* --emit=events */

typedef struct GTensor {
  const char *name;
  MlkDType dtype;
  MlkTensorKind kind;
  int rank;
  int64_t shape[MLK_MAX_RANK];
  int64_t numel;
  const char *from;
  int producer; /* op index, -1 for params and inputs */
} GTensor;

typedef struct GOp {
  MlkOpDesc d;
  Loc loc;
  int kernel; /* index into Graph.kernels */
} GOp;

typedef struct GKernel {
  const char *name;
  const char *entry;
  int first_op, nops;
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
  int64_t ncounters;
  GKernel *kernels;
  int nkernels;
};

/* ======================================================================== codegen.c */

typedef struct CodegenOptions {
  const char *arch;      /* "sm_90a" or "sm_80" */
  int opt_level;         /* 0..3 */
} CodegenOptions;

/* Builds the LLVM module for every megakernel of `g` and links the tiles. On success returns
 * true and either the textual LLVM IR (emit_llvm) or PTX in *out (malloc'd). */
bool codegen_graph(const Graph *g, const CodegenOptions *opt, bool emit_llvm, char **out, Diag *d);

/* ======================================================================== emit_c.c */

/* Writes the typed API header (model.h) and its implementation (model.c, with the PTX embedded).
 * `base` is the file name without extension used in the #include. */
void emit_header(FILE *out, const Graph *g);
void emit_source(FILE *out, const Graph *g, const char *header_name, const char *ptx_sm90a,
                 const char *ptx_sm80);

#endif /* MLKC_H */
