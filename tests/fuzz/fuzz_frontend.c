/* fuzz_frontend.c: a libFuzzer harness for the mlkc front end.
 *
 * Each input is one .mlk source: it goes through the lexer and the parser (parse_program, which
 * loads nothing: an `import` is only recorded), and a program that parses is dumped as with
 * --emit=ast and each of its statements' expressions printed as messages print them; then it is
 * checked (sema_check) and, when that passes, every model goes through the passes from elaborate
 * to serialize and the graph IR, descriptor and event dumps are written, as --emit=graph
 * --after=events, --emit=graph and --emit=events do. The tokens
 * are dumped too, as with --emit=tokens, which goes on after lexical errors. Everything is written
 * to /dev/null; what counts is that no input crashes, leaks, hangs, trips a sanitizer or reaches
 * an internal error (mlkc_bug exits, which libFuzzer reports).
 *
 * Build: see tests/fuzz/fuzz.cmake (clang, -fsanitize=fuzzer,address,undefined).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mlkc.h"

static void print_stmts(FILE *out, const Stmt *s) {
  for (; s; s = s->next) {
    for (const Expr *e = s->value; e; e = e->next)
      ast_expr_print(out, e);
    for (const Clause *c = s->clauses; c; c = c->next)
      for (const Expr *e = c->args; e; e = e->next)
        ast_expr_print(out, e);
    if (s->kind == STMT_FOR) {
      ast_expr_print(out, s->lo);
      ast_expr_print(out, s->hi);
      print_stmts(out, s->body);
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static FILE *devnull;
  if (!devnull && !(devnull = fopen("/dev/null", "w")))
    abort();
  Arena *a = arena_new();
  char *text = arena_alloc(a, size + 1); /* zeroed: text[size] is the lexer's sentinel */
  memcpy(text, data, size);
  Source src = {.path = "fuzz.mlk", .text = text, .len = size};

  Diag d;
  diag_init(&d, &src, devnull);
  Program *p = parse_program(&src, a, &d);
  if (p) {
    ast_dump(devnull, p);
    for (const Layer *l = p->layers; l; l = l->next)
      print_stmts(devnull, l->body);
    for (const Model *m = p->models; m; m = m->next)
      for (const Megakernel *k = m->kernels; k; k = k->next)
        print_stmts(devnull, k->body);
    if (d.nerrors == 0 && sema_check(p, a, &d))
      for (Model *m = p->models; m; m = m->next) {
        IrGraph *ir = elaborate_model(p, m, a, &d);
        if (!ir || !fuse_graph(ir, &d))
          continue;
        tile_graph(ir, &(TileOptions){0});
        if (!schedule_graph(ir, &d))
          continue;
        events_graph(ir, &d);
        ir_dump(devnull, ir);
        Graph *g = serialize_graph(ir, a, &d);
        if (g) {
          graph_dump(devnull, g);
          graph_dump_events(devnull, g);
        }
      }
  }

  diag_init(&d, &src, devnull);
  lexer_dump_tokens(devnull, &src, a, &d);
  arena_free(a);
  return 0;
}
