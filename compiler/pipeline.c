/* pipeline.c: the passes from a checked model to its runtime descriptor, in order, for mlkc's
 * driver and for programs that compile a model in-process (mlk-run).
 *
 * elaborate makes the graph IR, fuse, tile, schedule and events rewrite it (mlkc --emit=graph
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
                                                     "events"};

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
