/* lex.re: the mlk lexer (re2c). Source text -> tokens.
 *
 * Token codes are the Lemon parser's TK_* from the generated parse.h, returned as they are.
 * Newlines are whitespace; the lexer only counts them for locations. The source text ends with a
 * NUL sentinel (source_read puts it there) and re2c checks the limit whenever it reads a NUL, so
 * a NUL byte inside the file is an ordinary (invalid) character. A malformed lexeme is reported
 * through diag and skipped; lexing resumes after it.
 */
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "mlkc.h"
#include "parse.h"

/* ------------------------------------------------------------------------ token names */

/* Our own names: Lemon's yyTokenName is compiled out under NDEBUG. `name` is what
 * --emit=tokens prints (the TK_ code without its prefix), `desc` what messages say. */
static const struct {
  const char *name, *desc;
} token_kinds[] = {
    [TK_EOF] = {"EOF", "end of file"},
    [TK_IDENT] = {"IDENT", "an identifier"},
    [TK_INT] = {"INT", "an integer"},
    [TK_FLOAT] = {"FLOAT", "a float"},
    [TK_STRING] = {"STRING", "a string"},
    [TK_DTYPE] = {"DTYPE", "a dtype (f32, bf16, f16, i32, i8, u8)"},
    [TK_IMPORT] = {"IMPORT", "'import'"},
    [TK_CONFIG] = {"CONFIG", "'config'"},
    [TK_MODEL] = {"MODEL", "'model'"},
    [TK_LAYER] = {"LAYER", "'layer'"},
    [TK_DIM] = {"DIM", "'dim'"},
    [TK_MESH] = {"MESH", "'mesh'"},
    [TK_IN] = {"IN", "'in'"},
    [TK_PARAM] = {"PARAM", "'param'"},
    [TK_INPUT] = {"INPUT", "'input'"},
    [TK_OUTPUT] = {"OUTPUT", "'output'"},
    [TK_CACHE] = {"CACHE", "'cache'"},
    [TK_EVENT] = {"EVENT", "'event'"},
    [TK_MEGAKERNEL] = {"MEGAKERNEL", "'megakernel'"},
    [TK_SHARD] = {"SHARD", "'shard'"},
    [TK_FROM] = {"FROM", "'from'"},
    [TK_FOR] = {"FOR", "'for'"},
    [TK_RETURN] = {"RETURN", "'return'"},
    [TK_TILE] = {"TILE", "'tile'"},
    [TK_WAIT] = {"WAIT", "'wait'"},
    [TK_NOTIFY] = {"NOTIFY", "'notify'"},
    [TK_LPAREN] = {"LPAREN", "'('"},
    [TK_RPAREN] = {"RPAREN", "')'"},
    [TK_LBRACKET] = {"LBRACKET", "'['"},
    [TK_RBRACKET] = {"RBRACKET", "']'"},
    [TK_LBRACE] = {"LBRACE", "'{'"},
    [TK_RBRACE] = {"RBRACE", "'}'"},
    [TK_COMMA] = {"COMMA", "','"},
    [TK_COLON] = {"COLON", "':'"},
    [TK_ASSIGN] = {"ASSIGN", "'='"},
    [TK_DOT] = {"DOT", "'.'"},
    [TK_DOTDOT] = {"DOTDOT", "'..'"},
    [TK_PLUS] = {"PLUS", "'+'"},
    [TK_MINUS] = {"MINUS", "'-'"},
    [TK_STAR] = {"STAR", "'*'"},
    [TK_SLASH] = {"SLASH", "'/'"},
};

const char *token_kind_name(int kind) {
  if (kind < 0 || (size_t)kind >= sizeof token_kinds / sizeof token_kinds[0] ||
      !token_kinds[kind].name)
    MLKC_BUG("no name for token kind %d", kind);
  return token_kinds[kind].name;
}

const char *token_kind_desc(int kind) {
  token_kind_name(kind); /* checks kind */
  return token_kinds[kind].desc;
}

/* ------------------------------------------------------------------------ helpers */

/* Lexing goes on after an error, so that --emit=tokens shows every lexical error, up to this
 * many. (The parser stops at the first.) */
#define MAX_LEX_ERRORS 100

void lexer_init(Lexer *lx, const Source *src, Arena *a, Diag *d) {
  lx->src = src;
  lx->cur = lx->line_start = lx->tok = src->text;
  lx->lim = src->text + src->len;
  lx->line = 1;
  lx->arena = a;
  lx->diag = d;
}

static Loc loc_at(const Lexer *lx, const unsigned char *p) {
  return (Loc){lx->line, (int)((const char *)p - lx->line_start) + 1, lx->src};
}

static void newline(Lexer *lx, const unsigned char *after) {
  lx->line++;
  lx->line_start = (const char *)after;
}

/* The token [lx->tok, end) of `kind`; the next one starts at end. */
static Token token(Lexer *lx, const unsigned char *end, int kind) {
  lx->cur = (const char *)end;
  return (Token){.kind = kind,
                 .loc = loc_at(lx, (const unsigned char *)lx->tok),
                 .text = lx->tok,
                 .len = (int)((const char *)end - lx->tok)};
}

/* The end of file sits right after the last character of the last line, so that a message about
 * it shows that line rather than an empty one. */
static Token eof_token(Lexer *lx, const unsigned char *end) {
  Token t = token(lx, end, TK_EOF);
  const char *text = lx->src->text, *eol = (const char *)end;
  if (eol > text && eol[-1] == '\n') {
    eol--;
    if (eol > text && eol[-1] == '\r')
      eol--;
    const char *bol = eol;
    while (bol > text && bol[-1] != '\n')
      bol--;
    t.loc = (Loc){lx->line - 1, (int)(eol - bol) + 1, lx->src};
  }
  t.len = 0;
  return t;
}

/* A decimal literal; false (reported) when it does not fit in int64. */
static bool lex_int(Lexer *lx, const unsigned char *end, Token *t) {
  *t = token(lx, end, TK_INT);
  int64_t v = 0;
  for (const char *p = t->text; p < (const char *)end; p++) {
    int digit = *p - '0';
    if (v > (INT64_MAX - digit) / 10) {
      diag_error(lx->diag, t->loc,
                 "integer literal '%.*s%s' is too large (the largest is %lld)",
                 t->len > 30 ? 27 : t->len, t->text, t->len > 30 ? "..." : "",
                 (long long)INT64_MAX);
      return false;
    }
    v = v * 10 + digit;
  }
  t->ival = v;
  return true;
}

/* A float literal (digits with a fraction, an exponent or both); false (reported) when its value
 * is out of range of a double: too large (it would be infinite), or so small that it would be 0. */
static bool lex_float(Lexer *lx, const unsigned char *end, Token *t) {
  *t = token(lx, end, TK_FLOAT);
  /* strtod needs a NUL after the literal; the regex has left only decimal syntax in it. */
  char buf[64], *text = t->len < (int)sizeof buf ? buf : malloc((size_t)t->len + 1);
  if (!text) {
    fputs("mlkc: error: out of memory\n", stderr);
    exit(1);
  }
  memcpy(text, t->text, (size_t)t->len);
  text[t->len] = '\0';
  t->fval = strtod(text, NULL);
  bool nonzero = false; /* a digit other than 0 before the exponent */
  for (const char *p = text; *p && *p != 'e' && *p != 'E'; p++)
    nonzero |= *p >= '1' && *p <= '9';
  if (text != buf)
    free(text);
  const char *cut = t->len > 30 ? "..." : "";
  int len = t->len > 30 ? 27 : t->len;
  if (t->fval > DBL_MAX) {
    diag_error(lx->diag, t->loc, "float literal '%.*s%s' is too large (the largest is %.17g)",
               len, t->text, cut, DBL_MAX);
    return false;
  }
  if (t->fval == 0 && nonzero) {
    diag_error(lx->diag, t->loc,
               "float literal '%.*s%s' is too small: it would be 0 (the smallest is %.17g)", len,
               t->text, cut, DBL_TRUE_MIN);
    return false;
  }
  return true;
}

/* A number that runs into letters (`64x`, `1.5f`, `1e5x`) or whose exponent has no digits (`1e`,
 * `2.5e-`): reported, as an integer if it has neither '.' nor an exponent. */
static void bad_number(Lexer *lx, const unsigned char *end) {
  int len = (int)((const char *)end - lx->tok);
  const char *cut = len > 30 ? "..." : "", *p = lx->tok, *e = (const char *)end;
  Loc loc = loc_at(lx, (const unsigned char *)lx->tok);
  if (len > 30)
    len = 27;
  while (p < e && *p >= '0' && *p <= '9')
    p++;
  if (p < e && *p == '.')
    for (p++; p < e && *p >= '0' && *p <= '9'; p++) {
    }
  bool has_exp = p < e && (*p == 'e' || *p == 'E');
  if (has_exp && p + 1 < e && (p[1] == '+' || p[1] == '-'))
    p++;
  if (has_exp && p + 1 == e) /* the literal ends right after `e` or its sign */
    diag_error(lx->diag, loc,
               "invalid float literal '%.*s%s' (the exponent needs digits, as in 1e-5)", len,
               lx->tok, cut);
  else if (has_exp || memchr(lx->tok, '.', (size_t)(e - lx->tok)))
    diag_error(lx->diag, loc,
               "invalid float literal '%.*s%s' (a float is digits with a fraction, an exponent "
               "or both: 0.5, 1e-5, 1.5e3)",
               len, lx->tok, cut);
  else
    diag_error(lx->diag, loc,
               "invalid integer literal '%.*s%s' (an integer is decimal digits only)", len,
               lx->tok, cut);
}

/* A string literal whose opening quote is at lx->tok; *pcur is after the quote, and is left
 * after the literal. The value is unescaped into the arena. False (reported) when malformed; an
 * unterminated literal ends at the end of its line (or of the file). */
static bool lex_string(Lexer *lx, const unsigned char **pcur, Token *t) {
  const unsigned char *p = *pcur, *lim = (const unsigned char *)lx->lim;
  const unsigned char *tok = (const unsigned char *)lx->tok;
  bool ok = true;
  size_t n = 0; /* unescaped length */
  for (;;) {
    if (p >= lim || *p == '\n' || *p == '\r') {
      diag_error(lx->diag, loc_at(lx, tok),
                 "unterminated string literal (missing '\"' before the end of the %s)",
                 p >= lim ? "file" : "line");
      *pcur = p;
      return false;
    }
    if (*p == '"')
      break;
    if (*p == '\\' && p + 1 < lim && p[1] != '\n' && p[1] != '\r') {
      unsigned char e = p[1];
      if (e == '"' || e == '\\' || e == 'n' || e == 't') {
        p += 2;
        n++;
        continue;
      }
      int len = e >= 0x80 ? utf8_decode(p + 1, lim, NULL) : 1;
      if (e >= 0x20 && e < 0x7f)
        diag_error(lx->diag, loc_at(lx, p),
                   "unknown escape sequence '\\%c' (the escapes are \\\", \\\\, \\n and \\t)", e);
      else if (len > 1)
        diag_error(lx->diag, loc_at(lx, p),
                   "unknown escape sequence '\\%.*s' (the escapes are \\\", \\\\, \\n and \\t)",
                   len, (const char *)p + 1);
      else
        diag_error(lx->diag, loc_at(lx, p),
                   "unknown escape sequence: '\\' followed by byte 0x%02x (the escapes are "
                   "\\\", \\\\, \\n and \\t)",
                   e);
      ok = false;
      p += 1 + (len > 1 ? len : 1);
      continue;
    }
    if ((*p < 0x20 && *p != '\t') || *p == 0x7f) {
      diag_error(lx->diag, loc_at(lx, p),
                 "invalid byte 0x%02x in string literal (write a newline as \\n, a tab as \\t)",
                 *p);
      ok = false;
    }
    p++;
    n++;
  }
  p++; /* the closing quote */
  *pcur = p;
  if (!ok)
    return false;
  *t = token(lx, p, TK_STRING);
  char *s = arena_alloc(lx->arena, n + 1), *o = s;
  for (const unsigned char *q = tok + 1; q < p - 1; q++) {
    if (*q != '\\') {
      *o++ = (char)*q;
      continue;
    }
    q++;
    *o++ = *q == 'n' ? '\n' : *q == 't' ? '\t' : (char)*q;
  }
  t->str = s;
  return true;
}

/* A block comment whose `/` `*` is at lx->tok; *pcur is after them and is left after the
 * comment. Comments do not nest. */
static void skip_block_comment(Lexer *lx, const unsigned char **pcur) {
  const unsigned char *p = *pcur, *lim = (const unsigned char *)lx->lim;
  Loc start = loc_at(lx, (const unsigned char *)lx->tok);
  for (; p < lim; p++) {
    if (*p == '*' && p + 1 < lim && p[1] == '/') {
      *pcur = p + 2;
      return;
    }
    if (*p == '\n')
      newline(lx, p + 1);
  }
  diag_error(lx->diag, start, "unterminated comment (missing '*/')");
  *pcur = lim;
}

/* A byte no token starts with, at *pcur - 1; a whole UTF-8 character is skipped at once. */
static void invalid_char(Lexer *lx, const unsigned char **pcur) {
  const unsigned char *p = (const unsigned char *)lx->tok;
  Loc loc = loc_at(lx, p);
  uint32_t cp;
  int n = *p >= 0x80 ? utf8_decode(p, (const unsigned char *)lx->lim, &cp) : 0;
  if (n > 1) {
    diag_error(lx->diag, loc, "invalid character '%.*s' (U+%04X)", n, (const char *)p,
               (unsigned)cp);
    *pcur = p + n;
  } else if (*p == ';') {
    diag_error(lx->diag, loc, "invalid character ';' (statements need no separator)");
  } else if (*p == '\'') {
    diag_error(lx->diag, loc, "invalid character \"'\" (strings are written in double quotes)");
  } else if (*p > 0x20 && *p < 0x7f) {
    diag_error(lx->diag, loc, "invalid character '%c'", *p);
  } else {
    diag_error(lx->diag, loc, "invalid byte 0x%02x", *p);
  }
}

/* ------------------------------------------------------------------------ the lexer */

Token lexer_next(Lexer *lx) {
  const unsigned char *cur = (const unsigned char *)lx->cur;
  const unsigned char *lim = (const unsigned char *)lx->lim;
  const unsigned char *mar; /* where to back up to: `1.x` tries a float first */
  Token t;
  for (;;) {
    lx->tok = (const char *)cur;
    if (lx->diag->nerrors >= MAX_LEX_ERRORS) {
      /* Give up on input that is not source text at all (say, a binary file). */
      if (lx->diag->nerrors == MAX_LEX_ERRORS)
        diag_fatal(lx->diag, "too many errors in %s; stopping", lx->src->path);
      return token(lx, cur, TK_EOF);
    }
    /*!re2c
      re2c:define:YYCTYPE = "unsigned char";
      re2c:define:YYCURSOR = cur;
      re2c:define:YYLIMIT = lim;
      re2c:define:YYMARKER = mar;
      re2c:yyfill:enable = 0;
      re2c:eof = 0;

      ident = [a-zA-Z_][a-zA-Z_0-9]*;

      $             { return eof_token(lx, cur); }
      [ \t\r]+      { continue; }
      "\n"          { newline(lx, cur); continue; }
      "//" [^\n]*   { continue; }
      "/*"          { skip_block_comment(lx, &cur); continue; }

      "import"      { return token(lx, cur, TK_IMPORT); }
      "config"      { return token(lx, cur, TK_CONFIG); }
      "model"       { return token(lx, cur, TK_MODEL); }
      "layer"       { return token(lx, cur, TK_LAYER); }
      "dim"         { return token(lx, cur, TK_DIM); }
      "mesh"        { return token(lx, cur, TK_MESH); }
      "in"          { return token(lx, cur, TK_IN); }
      "param"       { return token(lx, cur, TK_PARAM); }
      "input"       { return token(lx, cur, TK_INPUT); }
      "output"      { return token(lx, cur, TK_OUTPUT); }
      "cache"       { return token(lx, cur, TK_CACHE); }
      "event"       { return token(lx, cur, TK_EVENT); }
      "megakernel"  { return token(lx, cur, TK_MEGAKERNEL); }
      "shard"       { return token(lx, cur, TK_SHARD); }
      "from"        { return token(lx, cur, TK_FROM); }
      "for"         { return token(lx, cur, TK_FOR); }
      "return"      { return token(lx, cur, TK_RETURN); }
      "tile"        { return token(lx, cur, TK_TILE); }
      "wait"        { return token(lx, cur, TK_WAIT); }
      "notify"      { return token(lx, cur, TK_NOTIFY); }

      // ORDER: MlkDType.
      "f32"         { t = token(lx, cur, TK_DTYPE); t.ival = MLK_F32; return t; }
      "bf16"        { t = token(lx, cur, TK_DTYPE); t.ival = MLK_BF16; return t; }
      "f16"         { t = token(lx, cur, TK_DTYPE); t.ival = MLK_F16; return t; }
      "i32"         { t = token(lx, cur, TK_DTYPE); t.ival = MLK_I32; return t; }
      "i8"          { t = token(lx, cur, TK_DTYPE); t.ival = MLK_I8; return t; }
      "u8"          { t = token(lx, cur, TK_DTYPE); t.ival = MLK_U8; return t; }

      // Numbers. A float needs a digit on both sides of its '.', so `1..64` is `1` `..` `64`. Of
      // two rules that match equally long, the first wins: `1e5` is a float, not `1` `e5`.
      dec           = [0-9]+;
      exp           = [eE] [+-]? dec;
      float         = dec "." dec exp? | dec exp;

      ident         { return token(lx, cur, TK_IDENT); }
      float         { if (lex_float(lx, cur, &t)) return t; continue; }
      dec           { if (lex_int(lx, cur, &t)) return t; continue; }
      dec ("." dec)? [eE] [+-]?
                    { bad_number(lx, cur); continue; }
      (dec "." dec | float) ident
                    { bad_number(lx, cur); continue; }
      dec ident     { bad_number(lx, cur); continue; }
      ["]           { if (lex_string(lx, &cur, &t)) return t; continue; }

      "("           { return token(lx, cur, TK_LPAREN); }
      ")"           { return token(lx, cur, TK_RPAREN); }
      "["           { return token(lx, cur, TK_LBRACKET); }
      "]"           { return token(lx, cur, TK_RBRACKET); }
      "{"           { return token(lx, cur, TK_LBRACE); }
      "}"           { return token(lx, cur, TK_RBRACE); }
      ","           { return token(lx, cur, TK_COMMA); }
      ":"           { return token(lx, cur, TK_COLON); }
      "="           { return token(lx, cur, TK_ASSIGN); }
      "."           { return token(lx, cur, TK_DOT); }
      ".."          { return token(lx, cur, TK_DOTDOT); }
      "+"           { return token(lx, cur, TK_PLUS); }
      "-"           { return token(lx, cur, TK_MINUS); }
      "*"           { return token(lx, cur, TK_STAR); }
      "/"           { return token(lx, cur, TK_SLASH); }

      *             { invalid_char(lx, &cur); continue; }
    */
  }
}

/* ------------------------------------------------------------------------ --emit=tokens */

void lexer_dump_tokens(FILE *out, const Source *src, Arena *a, Diag *d) {
  Lexer lx;
  lexer_init(&lx, src, a, d);
  for (;;) {
    Token t = lexer_next(&lx);
    fprintf(out, "%d:%d %s", t.loc.line, t.loc.col, token_kind_name(t.kind));
    if (t.kind == TK_EOF) {
      fputc('\n', out);
      return;
    }
    fprintf(out, " %.*s\n", t.len, t.text);
  }
}
