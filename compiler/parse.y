/* parse.y: the mlk grammar (Lemon). Tokens -> AST.
 *
 * Each action is a one-line call of an ast.c builder; all state lives in one ParseState (no
 * globals), passed to the actions as Lemon's %extra_context `ps`. Every node is allocated in the
 * arena, which frees them all at once, so no symbol needs a %destructor.
 *
 * Syntax errors. The parser stops at the first error. Before a token is handed to Lemon,
 * parse_program runs the LR automaton on it over a copy of the top of the stack
 * (parser_accepts); a token the automaton would reject is reported from the stack as it was
 * before the token, so the message lists exactly the terminals that could have come next. (Lemon
 * itself detects errors only after default reductions, which forget part of that set.) Lemon
 * therefore never sees a bad token, and its %syntax_error is an internal error.
 */

%name mlkParse
%token_prefix TK_
%token_type {Token}
%extra_context {ParseState *ps}
%start_symbol program
%stack_size 2000
%stack_overflow { parse_too_deep(ps); }
%syntax_error {
  (void)yyminor;
  MLKC_BUG("the parser rejected %s after the lookahead check accepted it",
           token_kind_name(yymajor));
}

/* ORDER: the token_kinds table in lex.re is indexed by these codes; messages list expected
 * tokens in this order. */
%token IDENT INT STRING DTYPE.
%token IMPORT CONFIG MODEL DIM IN PARAM INPUT OUTPUT MEGAKERNEL FROM TILE.
%token LPAREN RPAREN LBRACKET RBRACKET LBRACE RBRACE COMMA COLON ASSIGN DOT DOTDOT.
%token PLUS MINUS STAR SLASH.

%include {
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "mlkc.h"

/* No error recovery: see the top of parse.y. */
#define YYNOERRORRECOVERY 1

/* Brackets open at once, at most: more than the parser stack holds. */
#define MAX_OPEN 2048

/* An unclosed '(' '[' or '{', for "to close" notes. */
typedef struct OpenBracket {
  int kind;
  Loc loc;
} OpenBracket;

/* All the state of one parse. */
typedef struct ParseState {
  Arena *arena;
  Diag *diag;
  Program *prog;
  Import **last_import; /* where the next import, config, model goes */
  Config **last_config;
  Model **last_model;
  Token tok;   /* the token being parsed, for errors found in actions */
  bool failed; /* an action or the stack reported an error: stop */
  OpenBracket open[MAX_OPEN];
  int nopen;
} ParseState;

/* Lists built left to right in O(1) per element. */
typedef struct ExprList {
  Expr *head, *tail;
} ExprList;
typedef struct DimList {
  DimDecl *head, *tail;
} DimList;
typedef struct StmtList {
  Stmt *head, *tail;
} StmtList;
typedef struct Members {
  TensorDecl *decls, *last_decl;
  Megakernel *kernels, *last_kernel;
} Members;
typedef struct TileHint {
  Expr *expr;
  Loc loc;
} TileHint;
typedef struct Binding {
  const char *str;
  Loc loc;
} Binding;

static ExprList exprs_add(ExprList l, Expr *e) {
  *(l.tail ? &l.tail->next : &l.head) = e;
  l.tail = e;
  return l;
}

static DimList dims_add(DimList l, DimDecl *d) {
  *(l.tail ? &l.tail->next : &l.head) = d;
  l.tail = d;
  return l;
}

static StmtList stmts_add(StmtList l, Stmt *s) {
  *(l.tail ? &l.tail->next : &l.head) = s;
  l.tail = s;
  return l;
}

static Members members_add_decl(Members m, TensorDecl *t) {
  *(m.last_decl ? &m.last_decl->next : &m.decls) = t;
  m.last_decl = t;
  return m;
}

static Members members_add_kernel(Members m, Megakernel *k) {
  *(m.last_kernel ? &m.last_kernel->next : &m.kernels) = k;
  m.last_kernel = k;
  return m;
}

static void program_add_import(ParseState *ps, Import *i) {
  *ps->last_import = i;
  ps->last_import = &i->next;
}

static void program_add_config(ParseState *ps, Config *c) {
  *ps->last_config = c;
  ps->last_config = &c->next;
}

static void program_add_model(ParseState *ps, Model *m) {
  *ps->last_model = m;
  ps->last_model = &m->next;
}

static const char *tok_str(ParseState *ps, Token t) {
  return arena_strndup(ps->arena, t.text, (size_t)t.len);
}

#define TOO_DEEP "expression nested too deeply (more than %d levels)"

/* Every pass may recurse over expressions: the parser caps their depth. */
static Expr *nest(ParseState *ps, Expr *e) {
  if (e->depth > MLKC_MAX_EXPR_DEPTH && !ps->failed) {
    diag_error(ps->diag, e->loc, TOO_DEEP, MLKC_MAX_EXPR_DEPTH);
    ps->failed = true;
  }
  return e;
}

/* The parser stack is full: only deeply nested expressions get there. */
static void parse_too_deep(ParseState *ps) {
  if (!ps->failed)
    diag_error(ps->diag, ps->tok.loc, TOO_DEEP, MLKC_MAX_EXPR_DEPTH);
  ps->failed = true;
}
}

/* ======================================================================== program */

// program ::= item*
program ::= items.
items ::= .
items ::= items item.

// item ::= 'import' dotted | config | model
item ::= IMPORT(K) dotted(P).  { program_add_import(ps, ast_import(ps->arena, K.loc, P)); }
item ::= config(C).            { program_add_config(ps, C); }
item ::= model(M).             { program_add_model(ps, M); }

// dotted ::= IDENT ('.' IDENT)*
%type dotted {const char *}
dotted(A) ::= IDENT(N).               { A = tok_str(ps, N); }
dotted(A) ::= dotted(B) DOT IDENT(N). { A = arena_printf(ps->arena, "%s.%.*s", B, N.len, N.text); }

/* ======================================================================== config */

// config ::= 'config' IDENT '{' ('dim' dimitem (',' dimitem)*)* '}'
%type config {Config *}
config(A) ::= CONFIG(K) IDENT(N) LBRACE dims(D) RBRACE.
  { A = ast_config(ps->arena, K.loc, tok_str(ps, N), D.head); }

%type dims {DimList}
dims(A) ::= .               { A = (DimList){0}; }
dims(A) ::= dimgroups(G).   { A = G; }

// A group starts with 'dim'; its items are separated by ','.
%type dimgroups {DimList}
dimgroups(A) ::= DIM dimitem(D).                  { A = dims_add((DimList){0}, D); }
dimgroups(A) ::= dimgroups(L) DIM dimitem(D).     { A = dims_add(L, D); }
dimgroups(A) ::= dimgroups(L) COMMA dimitem(D).   { A = dims_add(L, D); }

// dimitem ::= IDENT '=' expr | IDENT 'in' expr '..' expr
%type dimitem {DimDecl *}
dimitem(A) ::= IDENT(N) ASSIGN expr(E).
  { A = ast_dim_static(ps->arena, N.loc, tok_str(ps, N), E); }
dimitem(A) ::= IDENT(N) IN expr(L) DOTDOT expr(H).
  { A = ast_dim_dynamic(ps->arena, N.loc, tok_str(ps, N), L, H); }

/* ======================================================================== model */

// model ::= 'model' IDENT '(' IDENT ':' IDENT ')' '{' member* '}'
%type model {Model *}
model(A) ::= MODEL(K) IDENT(N) LPAREN IDENT(P) COLON IDENT(C) RPAREN LBRACE members(M) RBRACE.
  { A = ast_model(ps->arena, K.loc, tok_str(ps, N), tok_str(ps, P), tok_str(ps, C), C.loc, M.decls, M.kernels); }

%type members {Members}
members(A) ::= .                          { A = (Members){0}; }
members(A) ::= members(L) decl(D).        { A = members_add_decl(L, D); }
members(A) ::= members(L) megakernel(K).  { A = members_add_kernel(L, K); }

// member ::= ('param' | 'input' | 'output') IDENT ':' type ['from' STRING]
%type decl {TensorDecl *}
decl(A) ::= declkind(K) IDENT(N) COLON type(T) binding(B).
  { A = ast_tensor_decl(ps->arena, N.loc, K, tok_str(ps, N), T, B.str, B.loc); }

%type declkind {DeclKind}
declkind(A) ::= PARAM.   { A = DECL_PARAM; }
declkind(A) ::= INPUT.   { A = DECL_INPUT; }
declkind(A) ::= OUTPUT.  { A = DECL_OUTPUT; }

%type binding {Binding}
binding(A) ::= .                  { A = (Binding){0}; }
binding(A) ::= FROM STRING(S).    { A = (Binding){S.str, S.loc}; }

// type ::= DTYPE '[' expr (',' expr)* ']'
%type type {TypeExpr}
type(A) ::= DTYPE(D) LBRACKET exprs(L) RBRACKET.  { A = ast_type(D.loc, (MlkDType)D.ival, L.head); }

/* ======================================================================== megakernel */

// member ::= 'megakernel' IDENT '{' stmt* '}'
%type megakernel {Megakernel *}
megakernel(A) ::= MEGAKERNEL(K) IDENT(N) LBRACE stmts(S) RBRACE.
  { A = ast_megakernel(ps->arena, K.loc, tok_str(ps, N), S.head); }

%type stmts {StmtList}
stmts(A) ::= .                  { A = (StmtList){0}; }
stmts(A) ::= stmts(L) stmt(S).  { A = stmts_add(L, S); }

// stmt ::= IDENT '=' expr ['tile' '(' expr ')']
%type stmt {Stmt *}
stmt(A) ::= IDENT(N) ASSIGN expr(E) tile(T).
  { A = ast_stmt(ps->arena, N.loc, tok_str(ps, N), E, T.expr, T.loc); }

%type tile {TileHint}
tile(A) ::= .                                { A = (TileHint){0}; }
tile(A) ::= TILE(K) LPAREN expr(E) RPAREN.   { A = (TileHint){E, K.loc}; }

/* ======================================================================== expressions */

/* Precedence by layering, loosest first: + - (left), * / (left), unary -, primary. */

// expr ::= expr ('+'|'-') expr
%type expr {Expr *}
expr(A) ::= expr(L) PLUS(O) term(R).   { A = nest(ps, ast_binary(ps->arena, O.loc, '+', L, R)); }
expr(A) ::= expr(L) MINUS(O) term(R).  { A = nest(ps, ast_binary(ps->arena, O.loc, '-', L, R)); }
expr(A) ::= term(T).                   { A = T; }

// expr ::= expr ('*'|'/') expr
%type term {Expr *}
term(A) ::= term(L) STAR(O) unary(R).   { A = nest(ps, ast_binary(ps->arena, O.loc, '*', L, R)); }
term(A) ::= term(L) SLASH(O) unary(R).  { A = nest(ps, ast_binary(ps->arena, O.loc, '/', L, R)); }
term(A) ::= unary(U).                   { A = U; }

// expr ::= '-' expr
%type unary {Expr *}
unary(A) ::= MINUS(O) unary(E).  { A = nest(ps, ast_neg(ps->arena, O.loc, E)); }
unary(A) ::= primary(P).         { A = P; }

// expr ::= INT | IDENT | IDENT '(' [expr (',' expr)*] ')' | '(' expr ')'
%type primary {Expr *}
primary(A) ::= INT(T).                          { A = ast_int(ps->arena, T.loc, T.ival); }
primary(A) ::= IDENT(N).                        { A = ast_name(ps->arena, N.loc, tok_str(ps, N)); }
primary(A) ::= IDENT(N) LPAREN args(L) RPAREN.  { A = nest(ps, ast_call(ps->arena, N.loc, tok_str(ps, N), L.head)); }
primary(A) ::= LPAREN expr(E) RPAREN.           { A = E; }

%type args {ExprList}
args(A) ::= .           { A = (ExprList){0}; }
args(A) ::= exprs(L).   { A = L; }

%type exprs {ExprList}
exprs(A) ::= expr(E).                   { A = exprs_add((ExprList){0}, E); }
exprs(A) ::= exprs(L) COMMA expr(E).    { A = exprs_add(L, E); }

/* ======================================================================== driver */

%code {
_Static_assert(YYNTOKEN <= 64, "expected-token sets are 64-bit masks");

/* Would the parser shift (or accept) terminal `major` now? Runs Lemon's automaton as Parse
 * does, reductions included, over a copy of the stack's top. */
static bool parser_accepts(const yyParser *p, int major) {
  enum { OVER = 64 };
  YYACTIONTYPE over[OVER]; /* states pushed by the simulated reductions */
  int base = (int)(p->yytos - p->yystack); /* entries 0..base of the real stack still count */
  int nover = 0;
  for (;;) {
    YYACTIONTYPE state = nover ? over[nover - 1] : p->yystack[base].stateno;
    YYACTIONTYPE act = yy_find_shift_action((YYCODETYPE)major, state);
    if (act < YY_MIN_REDUCE)
      return act <= YY_MAX_SHIFTREDUCE || act == YY_ACCEPT_ACTION;
    int rule = act - YY_MIN_REDUCE;
    int below = base + nover + yyRuleInfoNRhs[rule]; /* the entry under the right-hand side */
    if (below < base) {
      base = below;
      nover = 0;
    } else {
      nover = below - base;
    }
    if (base < 0 || nover >= OVER)
      MLKC_BUG("parser_accepts: stack out of range (rule %d)", rule);
    state = nover ? over[nover - 1] : p->yystack[base].stateno;
    over[nover++] = yy_find_reduce_action(state, yyRuleInfoLhs[rule]);
  }
}

static bool is_closer(int kind) {
  return kind == TK_RPAREN || kind == TK_RBRACKET || kind == TK_RBRACE;
}

static int closer_of(int opener) {
  return opener == TK_LPAREN ? TK_RPAREN : opener == TK_LBRACKET ? TK_RBRACKET : TK_RBRACE;
}

/* A message in a fixed buffer; too long a message is cut. */
typedef struct Buf {
  char s[768];
  size_t n;
} Buf;

static void buf_add(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_add(Buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(b->s + b->n, sizeof b->s - b->n, fmt, ap);
  va_end(ap);
  if (k > 0)
    b->n = b->n + (size_t)k < sizeof b->s ? b->n + (size_t)k : sizeof b->s - 1;
}

/* The token as a message names it: 'model', identifier 'x', end of file. */
static void describe_token(Buf *b, const Token *t) {
  int len = t->len > 32 ? 29 : t->len;
  const char *cut = t->len > 32 ? "..." : "";
  switch (t->kind) {
  case TK_EOF:
    buf_add(b, "end of file");
    break;
  case TK_IDENT:
    buf_add(b, "identifier '%.*s%s'", len, t->text, cut);
    break;
  case TK_INT:
    buf_add(b, "integer '%.*s%s'", len, t->text, cut);
    break;
  case TK_STRING:
    buf_add(b, "string %.*s%s", len, t->text, cut);
    break;
  case TK_DTYPE:
    buf_add(b, "dtype '%.*s'", len, t->text);
    break;
  default:
    buf_add(b, "'%.*s'", len, t->text);
  }
}

#define BIT(k) ((uint64_t)1 << (k))
#define EXPR_START (BIT(TK_INT) | BIT(TK_IDENT) | BIT(TK_LPAREN) | BIT(TK_MINUS))
#define BINARY_OP (BIT(TK_PLUS) | BIT(TK_MINUS) | BIT(TK_STAR) | BIT(TK_SLASH))

/* "an expression, ')' or ','": groups first, then single tokens in TK_ order, end of file last. */
static void describe_expected(Buf *b, uint64_t set) {
  const char *items[64];
  int n = 0;
  if ((set & EXPR_START) == EXPR_START) {
    items[n++] = "an expression";
    set &= ~EXPR_START;
  } else if ((set & BINARY_OP) == BINARY_OP) {
    items[n++] = "an operator";
    set &= ~BINARY_OP;
  }
  for (int k = 1; k < 64; k++)
    if (set & BIT(k))
      items[n++] = token_kind_desc(k);
  if (set & BIT(TK_EOF))
    items[n++] = token_kind_desc(TK_EOF);
  for (int i = 0; i < n; i++)
    buf_add(b, "%s%s", i == 0 ? "" : i == n - 1 ? " or " : ", ", items[i]);
}

/* Reports token t, which the parser in its current state rejects. */
static void syntax_error(ParseState *ps, const yyParser *p, const Token *t) {
  uint64_t expected = 0;
  for (int k = 0; k < YYNTOKEN; k++)
    if (parser_accepts(p, k))
      expected |= BIT(k);
  const int top = ps->nopen - 1;
  const int closer = top >= 0 ? closer_of(ps->open[top].kind) : -1;
  const bool can_close = closer >= 0 && (expected & BIT(closer));

  Buf b = {.n = 0};
  buf_add(&b, "unexpected ");
  describe_token(&b, t);
  if (expected) {
    buf_add(&b, ", expected ");
    /* At the end of the file, closing the innermost bracket is the likely fix. */
    describe_expected(&b, t->kind == TK_EOF && can_close ? BIT(closer) : expected);
  }
  if ((expected & BIT(TK_IDENT)) && t->kind >= TK_IMPORT && t->kind <= TK_TILE)
    buf_add(&b, " ('%.*s' is a keyword)", t->len, t->text);
  else if ((expected & BIT(TK_IDENT)) && t->kind == TK_DTYPE)
    buf_add(&b, " ('%.*s' is a dtype name)", t->len, t->text);
  diag_error(ps->diag, t->loc, "%s", b.s);
  if (can_close && (t->kind == TK_EOF || is_closer(t->kind)))
    diag_note(ps->diag, ps->open[top].loc, "to close this %s", token_kind_desc(ps->open[top].kind));
}

Program *parse_program(const Source *src, Arena *a, Diag *d) {
  ParseState *ps = calloc(1, sizeof *ps);
  void *parser = ps ? mlkParseAlloc(malloc, ps) : NULL;
  if (!parser) {
    fputs("mlkc: error: out of memory\n", stderr);
    exit(1);
  }
  ps->arena = a;
  ps->diag = d;
  ps->prog = arena_alloc(a, sizeof *ps->prog);
  ps->prog->src = src;
  ps->last_import = &ps->prog->imports;
  ps->last_config = &ps->prog->configs;
  ps->last_model = &ps->prog->models;

  Lexer lx;
  lexer_init(&lx, src, a, d);
  const int errors = d->nerrors;
  for (;;) {
    Token t = lexer_next(&lx);
    if (d->nerrors > errors)
      break; /* a lexical error */
    ps->tok = t;
    if (!parser_accepts(parser, t.kind)) {
      syntax_error(ps, parser, &t);
      break;
    }
    if ((t.kind == TK_LPAREN || t.kind == TK_LBRACKET || t.kind == TK_LBRACE) &&
        ps->nopen < MAX_OPEN)
      ps->open[ps->nopen++] = (OpenBracket){t.kind, t.loc};
    else if (is_closer(t.kind) && ps->nopen > 0)
      ps->nopen--;
    mlkParse(parser, t.kind, t);
    if (ps->failed || t.kind == TK_EOF)
      break;
  }
  mlkParseFree(parser, free);
  Program *prog = d->nerrors > errors || ps->failed ? NULL : ps->prog;
  free(ps);
  return prog;
}
}
