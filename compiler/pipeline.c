/* pipeline.c: the passes from a checked model to its runtime descriptor, in order, for mlkc's
 * driver and for programs that compile a model in-process (mlk-run).
 *
 * elaborate makes the graph IR, fuse, tile, schedule, cut and events rewrite it (mlkc --emit=graph
 * --after=NAME prints it after any of them), serialize writes the descriptor's tables from it,
 * and graph_desc (serialize.c) assembles those into an MlkModelDesc in memory.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mlkc.h"

/* Where `import std.X` looks when neither --stdlib nor $MLKC_STDLIB names a directory: an
 * installed mlkc finds the installed stdlib at MLKC_STDLIB_FROM_BIN, relative to the directory of
 * its executable (wherever the prefix was moved); an mlkc in its build tree has none there and
 * uses MLKC_STDLIB_DIR, the source tree's stdlib/. CMake sets both. */
#ifndef MLKC_STDLIB_DIR
#define MLKC_STDLIB_DIR "stdlib"
#endif
#ifndef MLKC_STDLIB_FROM_BIN
#define MLKC_STDLIB_FROM_BIN "../share/mlkc/stdlib"
#endif

/* The default standard library directory (see above), resolved once. */
const char *mlkc_default_stdlib(void) {
  static char dir[PATH_MAX];
  if (*dir)
    return dir;
  char exe[PATH_MAX], candidate[2 * PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  char *slash = n > 0 ? memrchr(exe, '/', (size_t)n) : NULL;
  if (slash) {
    *slash = 0;
    snprintf(candidate, sizeof candidate, "%s/%s", exe, MLKC_STDLIB_FROM_BIN);
    if (realpath(candidate, dir))
      return dir;
  }
  snprintf(dir, sizeof dir, "%s", MLKC_STDLIB_DIR);
  return dir;
}

const char *const lower_pass_names[LOWER_NPASSES] = {"elaborate", "fuse", "tile", "schedule",
                                                     "cut", "events"};

int lower_pass_index(const char *name) {
  for (int i = 0; i < LOWER_NPASSES; i++)
    if (!strcmp(lower_pass_names[i], name))
      return i;
  return -1;
}

IrGraph *lower_model(Program *p, Model *m, const TileOptions *t, int last, Arena *a, Diag *d) {
  IrGraph *g = elaborate_model(p, m, a, d);
  for (int i = 1; g && i <= last && i < LOWER_NPASSES; i++) {
    switch (i) {
    case 1:
      if (!fuse_graph(g, d))
        g = NULL;
      break;
    case 2: tile_graph(g, t); break;
    case 3:
      if (!schedule_graph(g, d))
        g = NULL;
      break;
    case 4:
      if (!cut_graph(g, t, d))
        g = NULL;
      break;
    default: events_graph(g, d); break;
    }
  }
  return g;
}

Model *find_model(Program *p, const char *name) {
  for (Model *m = p->models; m; m = m->next)
    if (!strcmp(m->name, name))
      return m;
  return NULL;
}

bool compile_request(const CompileRequest *r, Compiled *out) {
  *out = (Compiled){.arena = arena_new()};
  Arena *a = out->arena;
  Diag d;
  diag_init(&d, NULL, stderr);
  const char *stdlib = getenv("MLKC_STDLIB");
  stdlib = stdlib && *stdlib ? stdlib : mlkc_default_stdlib();
  Program *p = load_program(r->file, NULL, 0, stdlib, a, &d);
  if (!p || d.nerrors || (r->config && !config_bind_json(p, r->config, a, &d)) ||
      (r->batch_max && !config_batch_max(p, r->batch_max, r->batch_at_least, a, &d)) ||
      (r->mesh_axis && !config_set_mesh(p, r->mesh_axis, r->mesh_ranks, a, &d)) ||
      !sema_check(p, a, &d))
    return false;
  Model *m = r->model ? find_model(p, r->model) : p->models;
  if (!m || (!r->model && m->next)) {
    if (!m)
      diag_fatal(&d, "'%s' has no model '%s'", r->file, r->model);
    else
      diag_fatal(&d, "'%s' defines several models: name one", r->file);
    return false;
  }
  IrGraph *ir = lower_model(p, m, &(TileOptions){.kernel_collectives = r->kernel_collectives},
                            LOWER_NPASSES - 1, a, &d);
  Graph *g = ir ? serialize_graph(ir, a, &d) : NULL;
  if (!g)
    return false;
  if (r->arch) {
    CodegenOptions o = {.arch = r->arch, .opt_level = 3};
    if (!codegen_graph(g, &o, false, strcmp(r->arch, "sm_90a") ? &out->ptx80 : &out->ptx90, &d))
      return false;
  }
  out->desc = graph_desc(g, out->ptx90, out->ptx80, a);
  return true;
}

void compiled_free(Compiled *c) {
  free(c->ptx90);
  free(c->ptx80);
  if (c->arena)
    arena_free(c->arena);
  *c = (Compiled){0};
}
