/* hfconfig.c: dims set from outside the source. mlkc --config FILE: the static dims of a program
 * bound to keys of a Hugging Face config.json take the file's values; --batch-max N: the dynamic
 * dims (`dim B in 1..64`) reach N instead (config_batch_max, at the end).
 *
 * A dim declares its key in the source: `dim D = 2048 from "hidden_size"` (the file must have it)
 * or `dim HD = D / H from optional("head_dim")` (where the file lacks it, or it is null, the dim
 * keeps its own expression: the rule the family's config class applies). A key with dots walks
 * into objects: "rope_scaling.factor". This pass reads the file (Jansson) and records each bound
 * dim's number on its DimDecl; sema then takes it instead of the written expression, as an integer
 * or a float after the kind of that expression, and checks it like any dim. Everything wrong with
 * the file is an error here, located at the key in the source and naming the file: a file that
 * cannot be read or is not a JSON object, a required key it lacks, a value that is not a number.
 */
#include <errno.h>
#include <math.h>
#include <string.h>

#include <jansson.h>

#include "hf_config.h"
#include "mlkc.h"

/* The value at dotted `key` of `root`, or NULL where a step is missing, null or not an object. */
static json_t *lookup(json_t *root, const char *key) {
  json_t *v = root;
  const char *p = key;
  while (v && json_is_object(v)) {
    const char *dot = strchr(p, '.');
    size_t n = dot ? (size_t)(dot - p) : strlen(p);
    v = json_object_getn(v, p, n);
    if (!dot)
      return json_is_null(v) ? NULL : v;
    p = dot + 1;
  }
  return NULL;
}

static const char *json_kind(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT: return "an object";
  case JSON_ARRAY: return "an array";
  case JSON_STRING: return "a string";
  case JSON_TRUE:
  case JSON_FALSE: return "a boolean";
  default: return "a number";
  }
}

bool config_bind_json(Program *p, const char *path, Arena *a, Diag *d) {
  json_error_t je;
  json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
  if (!root) {
    if (je.line <= 0 && je.position == 0)
      diag_fatal(d, "cannot read config '%s': %s", path, je.text);
    else
      diag_fatal(d, "config '%s' is not valid JSON: %s (line %d, column %d)", path, je.text,
                 je.line, je.column);
    return false;
  }
  if (!json_is_object(root)) {
    diag_fatal(d, "config '%s' is not a JSON object", path);
    json_decref(root);
    return false;
  }
  mlk_hf_config_normalize(root); /* rope_parameters (transformers 5) as rope_theta/rope_scaling */
  const char *file = arena_strndup(a, path, strlen(path));
  int errors = d->nerrors, bound = 0;
  for (Config *c = p->configs; c; c = c->next)
    for (DimDecl *dd = c->dims; dd; dd = dd->next) {
      if (!dd->from || !dd->value)
        continue;
      bound++;
      const char *key = dd->from->str;
      json_t *v = lookup(root, key);
      if (!v) {
        if (!dd->from_fn)
          diag_error(d, dd->from->loc, "config '%s' has no '%s', which dim '%s' of config '%s' "
                     "takes its value from", file, key, dd->name, c->name);
        else /* optional(...): the dim keeps its expression */
          dd->lacked_by = file;
        continue;
      }
      if (!json_is_number(v)) {
        diag_error(d, dd->from->loc, "config '%s': '%s' is %s, dim '%s' needs a number", file, key,
                   json_kind(v), dd->name);
        continue;
      }
      double f = json_number_value(v);
      if (!isfinite(f)) {
        diag_error(d, dd->from->loc, "config '%s': '%s' is not a finite number", file, key);
        continue;
      }
      dd->bound_file = file;
      dd->bound_f = f;
      dd->bound_integral = json_is_integer(v) || (f == floor(f) && fabs(f) < 9e15);
      dd->bound_i = json_is_integer(v) ? (int64_t)json_integer_value(v) : (int64_t)f;
    }
  json_decref(root);
  if (!bound) {
    diag_fatal(d, "--config %s: no dim of the program binds a config.json key (dim NAME = "
               "VALUE from \"key\")", file);
    return false;
  }
  return d->nerrors == errors;
}

bool config_batch_max(Program *p, int64_t max, bool at_least, Arena *a, Diag *d) {
  int n = 0;
  for (Config *c = p->configs; c; c = c->next)
    for (DimDecl *dd = c->dims; dd; dd = dd->next)
      if (dd->hi) { /* a dynamic dim: its range's upper end, which sema then checks as written */
        /* at_least keeps an end written as a number that already reaches max (an end written
         * as an expression is kept too: its value is sema's) */
        bool keep = at_least && (dd->hi->kind != EXPR_INT || dd->hi->ival >= max);
        if (!keep)
          dd->hi = ast_int(a, dd->hi->loc, max);
        n++;
      }
  if (!n)
    diag_fatal(d, "--batch-max %lld: the program has no dynamic dim (dim B in 1..64) to set",
               (long long)max);
  return n > 0;
}

bool config_set_mesh(Program *p, const char *axis, int64_t ranks, Arena *a, Diag *d) {
  int n = 0;
  for (Config *c = p->configs; c; c = c->next)
    for (MeshDecl *m = c->meshes; m; m = m->next)
      if (!strcmp(m->name, axis)) { /* its size, which sema then checks as written */
        m->value = ast_int(a, m->value->loc, ranks);
        n++;
      }
  if (!n)
    diag_fatal(d, "--mesh %s=%lld: the program has no mesh axis '%s' (mesh %s = N in a config)",
               axis, (long long)ranks, axis, axis);
  return n > 0;
}
