/* diag.c: every message the compiler shows a user, in one format:
 *
 *   file:line:col: error: message
 *     the source line
 *            ^
 *
 * `file` is the file of the location (Loc.src: an imported module names itself), else the Diag's.
 * The caret line copies the tabs of the source line so that the caret lines up in any terminal.
 * Bytes a terminal cannot show (control characters, bytes that are not UTF-8) are written as
 * <XX> and the caret skips their width; a UTF-8 character counts as one column. Very long lines
 * are cut to a window around the column, marked with "...". Also here: reading a source file and
 * reporting internal compiler bugs.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "mlkc.h"

/* Widest part of a source line shown, in columns; the caret sits at most half-way in. */
#define LINE_WINDOW 120

void diag_init(Diag *d, const Source *src, FILE *out) {
  d->src = src;
  d->nerrors = 0;
  d->nwarnings = 0;
  d->out = out ? out : stderr;
}

int utf8_decode(const unsigned char *p, const unsigned char *end, uint32_t *cp) {
  int n;
  uint32_t min;
  if (*p >= 0xc2 && *p <= 0xdf)
    n = 2, min = 0x80;
  else if (*p >= 0xe0 && *p <= 0xef)
    n = 3, min = 0x800;
  else if (*p >= 0xf0 && *p <= 0xf4)
    n = 4, min = 0x10000;
  else
    return 0;
  if (end - p < n)
    return 0;
  uint32_t c = *p & (0x7f >> n);
  for (int i = 1; i < n; i++) {
    if ((p[i] & 0xc0) != 0x80)
      return 0;
    c = c << 6 | (p[i] & 0x3f);
  }
  if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
    return 0;
  if (cp)
    *cp = c;
  return n;
}

/* One character of a source line as a terminal shows it: a tab, a UTF-8 sequence (one column),
 * or a byte it cannot show, written as <XX> (four columns). Sets *len (bytes) and *width. */
static void show_char(const unsigned char *p, const unsigned char *end, int *len, int *width) {
  int n = *p >= 0x80 ? utf8_decode(p, end, NULL) : 1;
  bool hex = n == 0 || (*p < 0x20 && *p != '\t') || *p == 0x7f;
  *len = hex ? 1 : n;
  *width = hex ? 4 : 1;
}

/* Writes the characters [p, end); with `caret`, writes instead the indentation that puts a caret
 * right after them. */
static void show_bytes(FILE *out, const unsigned char *p, const unsigned char *end, bool caret) {
  while (p < end) {
    int len, width;
    show_char(p, end, &len, &width);
    if (*p == '\t')
      fputc('\t', out);
    else if (caret)
      fprintf(out, "%*s", width, "");
    else if (width == 4)
      fprintf(out, "<%02X>", *p);
    else
      fwrite(p, 1, (size_t)len, out);
    p += len;
  }
}

/* The source line of `loc` in `src` and a caret under its column. */
static void show_line(const Diag *d, const Source *src, Loc loc) {
  const unsigned char *text = (const unsigned char *)src->text;
  const unsigned char *end = text + src->len, *line = text;
  for (int n = 1; n < loc.line; n++) {
    line = memchr(line, '\n', (size_t)(end - line));
    if (!line)
      return; /* no such line: the message alone */
    line++;
  }
  const unsigned char *eol = memchr(line, '\n', (size_t)(end - line));
  if (!eol)
    eol = end;
  if (eol > line && eol[-1] == '\r')
    eol--;
  const unsigned char *at = line + (loc.col > 1 ? loc.col - 1 : 0);
  if (at > eol)
    at = eol;

  /* A long line is cut to LINE_WINDOW columns with the caret at most half-way in. */
  const unsigned char *from = line, *to;
  int len, width, before = 0; /* columns from `from` to `at` */
  for (const unsigned char *p = line; p < at; p += len) {
    show_char(p, eol, &len, &width);
    before += width;
  }
  while (before > LINE_WINDOW / 2) {
    show_char(from, eol, &len, &width);
    from += len;
    before -= width;
  }
  to = from;
  for (int shown = 0; to < eol; to += len, shown += width) {
    show_char(to, eol, &len, &width);
    if (shown + width > LINE_WINDOW)
      break;
  }
  if (to < at)
    to = at;

  FILE *out = d->out;
  fputs(from > line ? "..." : "", out);
  show_bytes(out, from, to, false);
  fputs(to < eol ? "...\n" : "\n", out);
  fputs(from > line ? "   " : "", out);
  show_bytes(out, from, at, true);
  fputs("^\n", out);
}

/* A location names its file (Loc.src), or is in the Diag's own source. */
static void report(Diag *d, const char *kind, Loc loc, const char *fmt, va_list ap) {
  const Source *src = loc.src ? loc.src : d->src;
  if (!src) {
    fprintf(d->out, "mlkc: %s: ", kind);
    vfprintf(d->out, fmt, ap);
    fputc('\n', d->out);
    return;
  }
  fprintf(d->out, "%s:%d:%d: %s: ", src->path, loc.line, loc.col, kind);
  vfprintf(d->out, fmt, ap);
  fputc('\n', d->out);
  show_line(d, src, loc);
}

void diag_error(Diag *d, Loc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  report(d, "error", loc, fmt, ap);
  va_end(ap);
  d->nerrors++;
}

void diag_warning(Diag *d, Loc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  report(d, "warning", loc, fmt, ap);
  va_end(ap);
  d->nwarnings++;
}

void diag_note(Diag *d, Loc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  report(d, "note", loc, fmt, ap);
  va_end(ap);
}

void diag_fatal(Diag *d, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("mlkc: error: ", d->out);
  vfprintf(d->out, fmt, ap);
  fputc('\n', d->out);
  va_end(ap);
  d->nerrors++;
}

bool source_read(Arena *a, const char *path, Source *src) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return false;
  /* Read in growing blocks: the file may be a pipe, whose size is not known up front. */
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (!buf) {
      fclose(f);
      errno = ENOMEM;
      return false;
    }
    len += fread(buf + len, 1, cap - len, f);
    if (len < cap)
      break;
    char *bigger = cap <= SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
    if (!bigger)
      free(buf);
    buf = bigger;
    cap *= 2;
  }
  if (ferror(f)) {
    int err = errno ? errno : EIO;
    free(buf);
    fclose(f);
    errno = err;
    return false;
  }
  fclose(f);
  char *text = arena_alloc(a, len + 1); /* zeroed: text[len] is the lexer's sentinel */
  memcpy(text, buf, len);
  free(buf);
  src->path = path;
  src->text = text;
  src->len = len;
  return true;
}

_Noreturn void mlkc_bug(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fflush(stdout);
  fprintf(stderr, "mlkc: internal error at %s:%d: ", file, line);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(70);
}
