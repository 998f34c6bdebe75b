/* load.c: the module loader. Reads the root file and every file it imports, transitively, each
 * once, into one Program.
 *
 *   import std.nn        STDLIB_DIR/nn.mlk
 *   import std.nn.extra  STDLIB_DIR/nn/extra.mlk
 *   import lib.attn      lib/attn.mlk in the importing file's directory, else in each -I DIR
 *
 * A file is known by its real path (symbolic links and `..` resolved), so a module imported twice,
 * under two names, or in a cycle is loaded once. Declarations go into the Program in load order,
 * depth first: a file's own, then those of its first import (and what that one imports), then its
 * second... Every Import gets the Source it names in `resolved`. The first error (a module not
 * found, unreadable or malformed) ends the load.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mlkc.h"

/* A file already loaded. */
typedef struct Loaded {
  const char *key; /* its real path, or the path it was read from if that cannot be resolved */
  const Source *src;
  struct Loaded *next;
} Loaded;

typedef struct Loader {
  Arena *arena;
  Diag *diag;
  const char *const *include_dirs;
  int ninclude;
  const char *stdlib_dir;
  Program *prog;
  Import **last_import; /* where the next file's lists go */
  Config **last_config;
  Layer **last_layer;
  Model **last_model;
  Loaded *loaded;
} Loader;

/* The directory part of `path` ("" for a bare file name, "/" for a file in the root). */
static const char *dir_of(Arena *a, const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash)
    return "";
  return arena_strndup(a, path, slash == path ? 1 : (size_t)(slash - path));
}

/* dir/rel, without doubling a '/' and without a "./" for the current directory. */
static const char *join(Arena *a, const char *dir, const char *rel) {
  size_t n = strlen(dir);
  while (n > 1 && dir[n - 1] == '/')
    n--;
  if (n == 0)
    return rel;
  return arena_printf(a, "%.*s%s%s", (int)n, dir, dir[n - 1] == '/' ? "" : "/", rel);
}

/* "a.b.c" -> "a/b/c.mlk". The parser only makes module names of identifiers joined by '.', so
 * the result is a relative path without `..`. */
static const char *module_file(Arena *a, const char *dotted) {
  char *s = arena_printf(a, "%s.mlk", dotted);
  for (char *p = s + strlen(dotted); p-- > s;)
    if (*p == '.')
      *p = '/';
  return s;
}

/* A candidate exists unless it is missing or a directory (`import lib` next to a folder lib/). */
static bool file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && !S_ISDIR(st.st_mode);
}

/* Only regular files are read as modules: a FIFO or a device could block the load forever. */
static bool regular_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static const char *file_key(Arena *a, const char *path) {
  char *real = realpath(path, NULL);
  if (!real)
    return path;
  const char *key = arena_strndup(a, real, strlen(real));
  free(real);
  return key;
}

static const Source *find_loaded(const Loader *L, const char *key) {
  for (const Loaded *l = L->loaded; l; l = l->next)
    if (!strcmp(l->key, key))
      return l->src;
  return NULL;
}

/* Appends a list to the Program's list whose end is *last, and moves *last to the new end. */
#define APPEND(last, list)                                                                        \
  do {                                                                                            \
    *(last) = (list);                                                                             \
    while (*(last))                                                                               \
      (last) = &(*(last))->next;                                                                  \
  } while (0)

static bool load_file(Loader *L, const Source *src, const char *key);

/* Finds, loads and parses the module `imp` (an import of `from`) unless it is loaded already. */
static bool load_import(Loader *L, Import *imp, const Source *from) {
  Arena *a = L->arena;
  bool std = !strncmp(imp->path, "std.", 4);
  const char *rel = module_file(a, std ? imp->path + 4 : imp->path);
  /* The candidates, in order; `tried` lists them for the message. */
  const char *path = NULL;
  const char *tried = NULL;
  int ndirs = std ? (L->stdlib_dir ? 1 : 0) : 1 + L->ninclude;
  for (int i = 0; i < ndirs && !path; i++) {
    const char *dir = std ? L->stdlib_dir : i == 0 ? dir_of(a, from->path) : L->include_dirs[i - 1];
    const char *candidate = join(a, dir, rel);
    if (file_exists(candidate))
      path = candidate;
    else
      tried = tried ? arena_printf(a, "%s, %s", tried, candidate) : candidate;
  }
  if (!path) {
    if (tried)
      diag_error(L->diag, imp->loc, "cannot find module '%s' (looked for %s)", imp->path, tried);
    else
      diag_error(L->diag, imp->loc,
                 "cannot find module '%s' (no standard library directory: give one with "
                 "--stdlib=DIR)",
                 imp->path);
    return false;
  }
  const char *key = file_key(a, path);
  if ((imp->resolved = find_loaded(L, key)))
    return true;
  Source *src = arena_alloc(a, sizeof *src);
  if (!regular_file(path)) {
    diag_error(L->diag, imp->loc, "cannot read module '%s' from '%s': not a regular file",
               imp->path, path);
    return false;
  }
  if (!source_read(a, path, src)) {
    diag_error(L->diag, imp->loc, "cannot read module '%s' from '%s': %s", imp->path, path,
               strerror(errno));
    return false;
  }
  imp->resolved = src;
  if (!load_file(L, src, key)) {
    diag_note(L->diag, imp->loc, "in the module '%s', imported here", imp->path);
    return false;
  }
  return true;
}

/* Parses `src` (read already) and appends its declarations, then loads its imports. */
static bool load_file(Loader *L, const Source *src, const char *key) {
  Loaded *l = arena_alloc(L->arena, sizeof *l);
  *l = (Loaded){key, src, L->loaded};
  L->loaded = l; /* before its imports: a cycle back to it finds it loaded */
  Program *p = parse_program(src, L->arena, L->diag);
  if (!p)
    return false;
  /* The file's own imports: appending later files' imports extends this list past them. */
  Import *first = p->imports;
  int nimports = 0;
  for (Import *i = first; i; i = i->next)
    nimports++;
  APPEND(L->last_import, p->imports);
  APPEND(L->last_config, p->configs);
  APPEND(L->last_layer, p->layers);
  APPEND(L->last_model, p->models);
  Import *imp = first;
  for (int k = 0; k < nimports; k++, imp = imp->next)
    if (!load_import(L, imp, src))
      return false;
  return true;
}

Program *load_program(const char *path, const char *const *include_dirs, int ninclude,
                      const char *stdlib_dir, Arena *a, Diag *d) {
  Source *root = arena_alloc(a, sizeof *root);
  if (!source_read(a, path, root)) {
    diag_fatal(d, "cannot read '%s': %s", path, strerror(errno));
    return NULL;
  }
  if (!d->src)
    d->src = root;
  Program *prog = arena_alloc(a, sizeof *prog);
  prog->src = root;
  Loader L = {
      .arena = a,
      .diag = d,
      .include_dirs = include_dirs,
      .ninclude = ninclude,
      .stdlib_dir = stdlib_dir,
      .prog = prog,
      .last_import = &prog->imports,
      .last_config = &prog->configs,
      .last_layer = &prog->layers,
      .last_model = &prog->models,
  };
  const int errors = d->nerrors;
  if (!load_file(&L, root, file_key(a, path)) || d->nerrors > errors)
    return NULL;
  return prog;
}
