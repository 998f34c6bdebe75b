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
 * tokens in this order. The keywords run from IMPORT to NOTIFY. */
%token IDENT INT FLOAT STRING DTYPE.
%token IMPORT CONFIG MODEL LAYER DIM MESH IN PARAM INPUT OUTPUT CACHE EVENT MEGAKERNEL SHARD FROM.
%token FOR RETURN TILE WAIT NOTIFY.
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

/* Blocks ('{') open at once, at most: loops nest, but not this deep. The cap keeps nested blocks
 * well within the parser stack, whose overflow is reported as too deep an expression. */
#define MAX_BLOCK_DEPTH 100

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
  Import **last_import; /* where the next import, config, layer, model goes */
  Config **last_config;
  Layer **last_layer;
  Model **last_model;
  Token tok;   /* the token being parsed, for errors found in actions */
  Token prev;  /* the token before it */
  bool failed; /* an action or the stack reported an error: stop */
  OpenBracket open[MAX_OPEN];
  int nopen;
  int nblocks; /* of the open brackets, the '{' */
} ParseState;

/* Lists built left to right in O(1) per element: LIST(Name, Node, add) defines the list type
 * Name {head, tail} and `Name add(Name, Node *)`, which appends through Node.next. */
#define LIST(Name, Node, add)                                                                     \
  typedef struct Name {                                                                           \
    Node *head, *tail;                                                                            \
  } Name;                                                                                         \
  static Name add(Name l, Node *n) {                                                              \
    *(l.tail ? &l.tail->next : &l.head) = n;                                                      \
    l.tail = n;                                                                                   \
    return l;                                                                                     \
  }
LIST(ExprList, Expr, exprs_add)
LIST(DimList, DimDecl, dims_add)
LIST(MeshList, MeshDecl, meshes_add)
LIST(StmtList, Stmt, stmts_add)
LIST(Strs, StrList, strs_add)
LIST(ClauseList, Clause, clauses_add)
LIST(ParamList, LayerParam, params_add)
LIST(DeclList, TensorDecl, decls_add)
LIST(EventList, EventDecl, events_add)
LIST(KernelList, Megakernel, kernels_add)

/* A config's body: its `dim` and `mesh` lines, each a list of its own. */
typedef struct CfgBody {
  DimList dims;
  MeshList meshes;
} CfgBody;

static CfgBody cfg_add_dims(CfgBody b, DimList l) {
  *(b.dims.tail ? &b.dims.tail->next : &b.dims.head) = l.head;
  b.dims.tail = l.tail;
  return b;
}

static CfgBody cfg_add_meshes(CfgBody b, MeshList l) {
  *(b.meshes.tail ? &b.meshes.tail->next : &b.meshes.head) = l.head;
  b.meshes.tail = l.tail;
  return b;
}

/* A model's members by kind, each in source order. */
typedef struct Members {
  DeclList decls;
  EventList events;
  KernelList kernels;
} Members;

static void program_add_import(ParseState *ps, Import *i) {
  *ps->last_import = i;
  ps->last_import = &i->next;
}

static void program_add_config(ParseState *ps, Config *c) {
  *ps->last_config = c;
  ps->last_config = &c->next;
}

static void program_add_layer(ParseState *ps, Layer *l) {
  *ps->last_layer = l;
  ps->last_layer = &l->next;
}

static void program_add_model(ParseState *ps, Model *m) {
  *ps->last_model = m;
  ps->last_model = &m->next;
}

static const char *tok_str(ParseState *ps, Token t) {
  return arena_strndup(ps->arena, t.text, (size_t)t.len);
}

/* An identifier token as a name expression, or as a one-element list of names. */
static Expr *tok_name(ParseState *ps, Token t) { return ast_name(ps->arena, t.loc, tok_str(ps, t)); }
static StrList *tok_strlist(ParseState *ps, Token t) {
  return ast_str(ps->arena, t.loc, tok_str(ps, t));
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

// item ::= 'import' dotted | config | model | layer
item ::= IMPORT(K) dotted(P).  { program_add_import(ps, ast_import(ps->arena, K.loc, P)); }
item ::= config(C).            { program_add_config(ps, C); }
item ::= layer(L).             { program_add_layer(ps, L); }
item ::= model(M).             { program_add_model(ps, M); }

// dotted ::= IDENT ('.' IDENT)*
%type dotted {const char *}
dotted(A) ::= IDENT(N).               { A = tok_str(ps, N); }
dotted(A) ::= dotted(B) DOT IDENT(N). { A = arena_printf(ps->arena, "%s.%.*s", B, N.len, N.text); }

/* ======================================================================== config */

// config ::= 'config' IDENT '{' cfgline* '}'
%type config {Config *}
config(A) ::= CONFIG(K) IDENT(N) LBRACE cfglines(B) RBRACE.
  { A = ast_config(ps->arena, K.loc, tok_str(ps, N), B.dims.head, B.meshes.head); }

%type cfglines {CfgBody}
cfglines(A) ::= .                           { A = (CfgBody){0}; }
cfglines(A) ::= cfglines(B) dimline(L).     { A = cfg_add_dims(B, L); }
cfglines(A) ::= cfglines(B) meshline(L).    { A = cfg_add_meshes(B, L); }

// cfgline ::= 'dim' dimitem (',' dimitem)*
%type dimline {DimList}
dimline(A) ::= DIM dimitem(D).                { A = dims_add((DimList){0}, D); }
dimline(A) ::= dimline(L) COMMA dimitem(D).   { A = dims_add(L, D); }

// dimitem ::= IDENT '=' expr [binding] | IDENT 'in' expr '..' expr
%type dimitem {DimDecl *}
dimitem(A) ::= IDENT(N) ASSIGN expr(E) binding(B).
  { A = ast_dim_static(ps->arena, N.loc, tok_str(ps, N), E, B); }
dimitem(A) ::= IDENT(N) IN expr(L) DOTDOT expr(H).
  { A = ast_dim_dynamic(ps->arena, N.loc, tok_str(ps, N), L, H); }

// cfgline ::= 'mesh' meshitem (',' meshitem)*;  meshitem ::= IDENT '=' expr
%type meshline {MeshList}
meshline(A) ::= MESH meshitem(M).                 { A = meshes_add((MeshList){0}, M); }
meshline(A) ::= meshline(L) COMMA meshitem(M).    { A = meshes_add(L, M); }

%type meshitem {MeshDecl *}
meshitem(A) ::= IDENT(N) ASSIGN expr(E).  { A = ast_mesh(ps->arena, N.loc, tok_str(ps, N), E); }

/* ======================================================================== layer */

// layer ::= 'layer' IDENT '(' [lparam (',' lparam)*] ')' '{' stmt* '}'
%type layer {Layer *}
layer(A) ::= LAYER(K) IDENT(N) LPAREN lparams(P) RPAREN LBRACE stmts(S) RBRACE.
  { A = ast_layer(ps->arena, K.loc, tok_str(ps, N), P.head, S.head); }

%type lparams {ParamList}
lparams(A) ::= .              { A = (ParamList){0}; }
lparams(A) ::= lparamlist(L). { A = L; }

%type lparamlist {ParamList}
lparamlist(A) ::= lparam(P).                        { A = params_add((ParamList){0}, P); }
lparamlist(A) ::= lparamlist(L) COMMA lparam(P).    { A = params_add(L, P); }

// lparam ::= IDENT [':' type] ['=' expr]
%type lparam {LayerParam *}
lparam(A) ::= IDENT(N) opttype(T) optdefault(D).
  { A = ast_layer_param(ps->arena, N.loc, tok_str(ps, N), T, D); }

%type opttype {TypeExpr *}
opttype(A) ::= .                { A = NULL; }
opttype(A) ::= COLON type(T).   { A = ast_type_new(ps->arena, T); }

%type optdefault {Expr *}
optdefault(A) ::= .               { A = NULL; }
optdefault(A) ::= ASSIGN expr(E). { A = E; }

/* ======================================================================== model */

// model ::= 'model' IDENT '(' IDENT ':' IDENT ')' '{' member* '}'
%type model {Model *}
model(A) ::= MODEL(K) IDENT(N) LPAREN IDENT(P) COLON IDENT(C) RPAREN LBRACE members(M) RBRACE.
  { A = ast_model(ps->arena, K.loc, tok_str(ps, N), tok_str(ps, P), tok_str(ps, C), C.loc, M.decls.head, M.events.head, M.kernels.head); }

%type members {Members}
members(A) ::= .                          { A = (Members){0}; }
members(A) ::= members(L) decl(D).        { A = L; A.decls = decls_add(L.decls, D); }
members(A) ::= members(L) event(E).       { A = L; A.events = events_add(L.events, E); }
members(A) ::= members(L) megakernel(K).  { A = L; A.kernels = kernels_add(L.kernels, K); }

// member ::= ('param' | 'input' | 'output') IDENT ':' type [shard] [binding]
%type decl {TensorDecl *}
decl(A) ::= declkind(K) IDENT(N) COLON type(T) shard(S) binding(B).
  { A = ast_tensor_decl(ps->arena, N.loc, K, tok_str(ps, N), T, S, B); }

// member ::= 'cache' IDENT ':' IDENT '(' [arg (',' arg)*] ')'
decl(A) ::= CACHE IDENT(N) COLON IDENT(F) LPAREN args(L) RPAREN.
  { A = ast_cache_decl(ps->arena, N.loc, tok_str(ps, N), nest(ps, ast_call(ps->arena, F.loc, tok_str(ps, F), L.head))); }

%type declkind {DeclKind}
declkind(A) ::= PARAM.   { A = DECL_PARAM; }
declkind(A) ::= INPUT.   { A = DECL_INPUT; }
declkind(A) ::= OUTPUT.  { A = DECL_OUTPUT; }

// shard ::= 'shard' '(' IDENT ',' expr ')'
%type shard {ShardSpec}
shard(A) ::= .                                          { A = (ShardSpec){0}; }
shard(A) ::= SHARD LPAREN IDENT(X) COMMA expr(E) RPAREN. { A = (ShardSpec){tok_str(ps, X), E, X.loc}; }

// binding ::= 'from' STRING | 'from' IDENT '(' STRING (',' STRING)* ')'
%type binding {FromSpec}
binding(A) ::= .                                   { A = (FromSpec){0}; }
binding(A) ::= FROM STRING(S).                     { A = (FromSpec){NULL, ast_str(ps->arena, S.loc, S.str), S.loc}; }
binding(A) ::= FROM IDENT(F) LPAREN strings(L) RPAREN. { A = (FromSpec){tok_str(ps, F), L.head, F.loc}; }

%type strings {Strs}
strings(A) ::= STRING(S).                   { A = strs_add((Strs){0}, ast_str(ps->arena, S.loc, S.str)); }
strings(A) ::= strings(L) COMMA STRING(S).  { A = strs_add(L, ast_str(ps->arena, S.loc, S.str)); }

// member ::= 'event' IDENT ':' '[' expr (',' expr)* ']'
%type event {EventDecl *}
event(A) ::= EVENT IDENT(N) COLON LBRACKET exprs(L) RBRACKET.
  { A = ast_event(ps->arena, N.loc, tok_str(ps, N), L.head); }

// type ::= DTYPE '[' expr (',' expr)* ']'
%type type {TypeExpr}
type(A) ::= DTYPE(D) LBRACKET exprs(L) RBRACKET.  { A = ast_type(D.loc, (MlkDType)D.ival, L.head); }

/* ======================================================================== megakernel */

// member ::= 'megakernel' IDENT ['(' [arg (',' arg)*] ')'] '{' stmt* '}'
%type megakernel {Megakernel *}
megakernel(A) ::= MEGAKERNEL(K) IDENT(N) options(O) LBRACE stmts(S) RBRACE.
  { A = ast_megakernel(ps->arena, K.loc, tok_str(ps, N), O, S.head); }

%type options {Expr *}
options(A) ::= .                        { A = NULL; }
options(A) ::= LPAREN args(L) RPAREN.   { A = L.head; }

/* ======================================================================== statements */

/* No statement starts with '(' '[' '-' or '.', and every one starts with a name or a keyword, so
 * that the statements of a block need no separator: an expression ends where the next statement
 * begins. */

%type stmts {StmtList}
stmts(A) ::= .                  { A = (StmtList){0}; }
stmts(A) ::= stmts(L) stmt(S).  { A = stmts_add(L, S); }

// stmt ::= IDENT (',' IDENT)* '=' expr clause*
%type stmt {Stmt *}
stmt(A) ::= targets(T) ASSIGN expr(E) clauses(C).
  { A = ast_assign(ps->arena, T.head->loc, T.head, E, C.head); }

%type targets {Strs}
targets(A) ::= IDENT(N).                    { A = strs_add((Strs){0}, tok_strlist(ps, N)); }
targets(A) ::= targets(L) COMMA IDENT(N).   { A = strs_add(L, tok_strlist(ps, N)); }

// stmt ::= callstmt clause*;  callstmt ::= IDENT ['.' IDENT] '(' [arg (',' arg)*] ')'
stmt(A) ::= IDENT(N) LPAREN args(L) RPAREN clauses(C).
  { A = ast_expr_stmt(ps->arena, N.loc, nest(ps, ast_call(ps->arena, N.loc, tok_str(ps, N), L.head)), C.head); }
stmt(A) ::= IDENT(R) DOT IDENT(N) LPAREN args(L) RPAREN clauses(C).
  { A = ast_expr_stmt(ps->arena, R.loc, nest(ps, ast_method(ps->arena, N.loc, tok_name(ps, R), tok_str(ps, N), L.head)), C.head); }

// stmt ::= 'for' IDENT 'in' expr '..' expr '{' stmt* '}'
stmt(A) ::= FOR(K) IDENT(V) IN expr(L) DOTDOT expr(H) LBRACE stmts(S) RBRACE.
  { A = ast_for(ps->arena, K.loc, tok_str(ps, V), V.loc, L, H, S.head); }

// stmt ::= 'return' expr (',' expr)*
stmt(A) ::= RETURN(K) exprs(L).  { A = ast_return(ps->arena, K.loc, L.head); }

%type clauses {ClauseList}
clauses(A) ::= .                      { A = (ClauseList){0}; }
clauses(A) ::= clauses(L) clause(C).  { A = clauses_add(L, C); }

// clause ::= 'tile' '(' arg (',' arg)* ')' | ('wait' | 'notify') '(' evref (',' evref)* ')'
%type clause {Clause *}
clause(A) ::= TILE(K) LPAREN arglist(L) RPAREN.   { A = ast_clause(ps->arena, K.loc, CLAUSE_TILE, L.head); }
clause(A) ::= WAIT(K) LPAREN evrefs(L) RPAREN.    { A = ast_clause(ps->arena, K.loc, CLAUSE_WAIT, L.head); }
clause(A) ::= NOTIFY(K) LPAREN evrefs(L) RPAREN.  { A = ast_clause(ps->arena, K.loc, CLAUSE_NOTIFY, L.head); }

%type evrefs {ExprList}
evrefs(A) ::= evref(E).                   { A = exprs_add((ExprList){0}, E); }
evrefs(A) ::= evrefs(L) COMMA evref(E).   { A = exprs_add(L, E); }

// evref ::= IDENT | IDENT '[' expr (',' expr)* ']'
%type evref {Expr *}
evref(A) ::= IDENT(N).                                { A = tok_name(ps, N); }
evref(A) ::= IDENT(N) LBRACKET(B) exprs(L) RBRACKET.  { A = nest(ps, ast_index(ps->arena, B.loc, tok_name(ps, N), L.head)); }

/* ======================================================================== expressions */

/* Precedence by layering, loosest first: + - (left), * / (left), unary -, postfix ([], .name,
 * .name()), primary. So -a.b[0] is -((a.b)[0]). */

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
unary(A) ::= postfix(P).         { A = P; }

// postfix ::= primary | postfix '[' index (',' index)* ']' | postfix '.' IDENT ['(' args ')']
%type postfix {Expr *}
postfix(A) ::= primary(P).                                   { A = P; }
postfix(A) ::= postfix(B) LBRACKET(K) indices(L) RBRACKET.   { A = nest(ps, ast_index(ps->arena, K.loc, B, L.head)); }
postfix(A) ::= postfix(B) DOT IDENT(N).                      { A = nest(ps, ast_member(ps->arena, N.loc, B, tok_str(ps, N))); }
postfix(A) ::= postfix(B) DOT IDENT(N) LPAREN args(L) RPAREN. { A = nest(ps, ast_method(ps->arena, N.loc, B, tok_str(ps, N), L.head)); }

// primary ::= INT | FLOAT | IDENT | DTYPE | IDENT '(' [arg (',' arg)*] ')' | '(' expr ')'
%type primary {Expr *}
primary(A) ::= INT(T).                          { A = ast_int(ps->arena, T.loc, T.ival); }
primary(A) ::= FLOAT(T).                        { A = ast_float(ps->arena, T.loc, T.fval); }
primary(A) ::= IDENT(N).                        { A = tok_name(ps, N); }
primary(A) ::= DTYPE(T).                        { A = ast_dtype(ps->arena, T.loc, (MlkDType)T.ival); }
primary(A) ::= IDENT(N) LPAREN args(L) RPAREN.  { A = nest(ps, ast_call(ps->arena, N.loc, tok_str(ps, N), L.head)); }
primary(A) ::= LPAREN expr(E) RPAREN.           { A = E; }

// index ::= expr | [expr] ':' [expr]
%type indices {ExprList}
indices(A) ::= index(E).                    { A = exprs_add((ExprList){0}, E); }
indices(A) ::= indices(L) COMMA index(E).   { A = exprs_add(L, E); }

%type index {Expr *}
index(A) ::= expr(E).                       { A = E; }
index(A) ::= expr(L) COLON(K) expr(H).      { A = nest(ps, ast_slice(ps->arena, K.loc, L, H)); }
index(A) ::= expr(L) COLON(K).              { A = nest(ps, ast_slice(ps->arena, K.loc, L, NULL)); }
index(A) ::= COLON(K) expr(H).              { A = nest(ps, ast_slice(ps->arena, K.loc, NULL, H)); }
index(A) ::= COLON(K).                      { A = ast_slice(ps->arena, K.loc, NULL, NULL); }

// arg ::= expr | IDENT '=' expr
%type args {ExprList}
args(A) ::= .             { A = (ExprList){0}; }
args(A) ::= arglist(L).   { A = L; }

%type arglist {ExprList}
arglist(A) ::= arg(E).                    { A = exprs_add((ExprList){0}, E); }
arglist(A) ::= arglist(L) COMMA arg(E).   { A = exprs_add(L, E); }

%type arg {Expr *}
arg(A) ::= expr(E).                   { A = E; }
arg(A) ::= IDENT(N) ASSIGN expr(E).   { A = nest(ps, ast_kwarg(ps->arena, N.loc, tok_str(ps, N), E)); }

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
  case TK_FLOAT:
    buf_add(b, "float '%.*s%s'", len, t->text, cut);
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
#define EXPR_START                                                                                \
  (BIT(TK_INT) | BIT(TK_FLOAT) | BIT(TK_IDENT) | BIT(TK_DTYPE) | BIT(TK_LPAREN) | BIT(TK_MINUS))
#define OPERATOR                                                                                  \
  (BIT(TK_PLUS) | BIT(TK_MINUS) | BIT(TK_STAR) | BIT(TK_SLASH) | BIT(TK_LBRACKET) | BIT(TK_DOT))
#define CLAUSE_START (BIT(TK_TILE) | BIT(TK_WAIT) | BIT(TK_NOTIFY))
#define STMT_START (BIT(TK_IDENT) | BIT(TK_FOR) | BIT(TK_RETURN))

/* "an expression, ')' or ','": groups first, then single tokens in TK_ order, end of file last.
 * A group stands for all of its tokens, and only when all of them could come. */
static void describe_expected(Buf *b, uint64_t set) {
  static const struct {
    uint64_t tokens;
    const char *desc;
  } groups[] = {
      {EXPR_START, "an expression"},
      {OPERATOR, "an operator"},
      {CLAUSE_START, "a clause (tile, wait, notify)"},
      {STMT_START, "a statement"},
  };
  const char *items[64];
  int n = 0;
  for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++)
    if ((set & groups[g].tokens) == groups[g].tokens) {
      items[n++] = groups[g].desc;
      set &= ~groups[g].tokens;
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
  if ((expected & BIT(TK_IDENT)) && t->kind >= TK_IMPORT && t->kind <= TK_NOTIFY)
    buf_add(&b, " ('%.*s' is a keyword)", t->len, t->text);
  else if ((expected & BIT(TK_IDENT)) && t->kind == TK_DTYPE)
    buf_add(&b, " ('%.*s' is a dtype name)", t->len, t->text);
  diag_error(ps->diag, t->loc, "%s", b.s);
  if (can_close && (t->kind == TK_EOF || is_closer(t->kind)))
    diag_note(ps->diag, ps->open[top].loc, "to close this %s", token_kind_desc(ps->open[top].kind));
  /* `dim B in 1.64`: the lexer took the single dot for a decimal point. */
  const Token *f = &ps->prev;
  if ((expected & BIT(TK_DOTDOT)) && f->kind == TK_FLOAT && memchr(f->text, '.', (size_t)f->len) &&
      !memchr(f->text, 'e', (size_t)f->len) && !memchr(f->text, 'E', (size_t)f->len))
    diag_note(ps->diag, f->loc, "'%.*s' is a float; a range is written with '..', as in 1..64",
              f->len, f->text);
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
  ps->last_layer = &ps->prog->layers;
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
    if (t.kind == TK_LBRACE && ++ps->nblocks > MAX_BLOCK_DEPTH) {
      diag_error(d, t.loc, "blocks nested too deeply (more than %d levels)", MAX_BLOCK_DEPTH);
      break;
    }
    if ((t.kind == TK_LPAREN || t.kind == TK_LBRACKET || t.kind == TK_LBRACE) &&
        ps->nopen < MAX_OPEN)
      ps->open[ps->nopen++] = (OpenBracket){t.kind, t.loc};
    else if (is_closer(t.kind) && ps->nopen > 0)
      ps->nblocks -= ps->open[--ps->nopen].kind == TK_LBRACE;
    mlkParse(parser, t.kind, t);
    ps->prev = t;
    if (ps->failed || t.kind == TK_EOF)
      break;
  }
  mlkParseFree(parser, free);
  Program *prog = d->nerrors > errors || ps->failed ? NULL : ps->prog;
  free(ps);
  return prog;
}
}
