/* ckpt.c: loads a model's params from a Hugging Face checkpoint in the safetensors format.
 *
 * A checkpoint is one `.safetensors` file, or shards listed by a `model.safetensors.index.json`
 * (its "weight_map" names the file of every tensor). A safetensors file is an 8-byte
 * little-endian header length N, N bytes of JSON, then the data section: the JSON maps each tensor
 * name to its dtype, shape and [begin, end) byte offsets in the data section ("__metadata__" maps
 * strings to strings). Everything in a file is checked before anything is used: the header length
 * inside the file, well-formed JSON without duplicate names (Jansson), every entry's fields, sizes
 * that match dtype and shape, offsets inside the data section that neither overlap nor leave gaps.
 *
 * The model says what to load (MlkModelDesc.bindings, made by mlkc from the `from` declarations):
 * each binding names a checkpoint tensor, its exact shape and where it goes in its param. The
 * loader first checks every binding against the checkpoint (present, loadable dtype, exact shape)
 * and that the checkpoint holds nothing the model would ignore, then uploads. Files are mapped,
 * and a tensor whose dtype is the param's goes to the backend straight from the mapping; bf16, f16
 * and f32 are converted into the param's dtype through a staging buffer of bounded size. So the
 * checkpoint is never copied whole on the host, and a bad file is refused before a param changes.
 *
 * Messages name the file and the tensor. A file that cannot be opened, read or mapped is
 * MLK_ERR_IO; anything wrong inside one is MLK_ERR_INVALID.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hf_config.h"
#include "internal.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the safetensors data and the conversions here assume a little-endian host"
#endif

/* The safetensors format caps headers at 100 MB; a bigger length is a broken file. */
#define MLK_ST_MAX_HEADER (100u << 20)
/* Staging buffer of the dtype conversions when the options do not say. */
#define MLK_ST_STAGING_DEFAULT ((size_t)4 << 20)

/* ORDER: MlkStDType. */
static const struct {
  const char *name;
  unsigned size;
  int mlk; /* the MlkDType it loads into as it is, or -1 */
} st_dtypes[MLK_ST_DTYPE_COUNT] = {
    {"BOOL", 1, -1},     {"U8", 1, MLK_U8},   {"I8", 1, MLK_I8},     {"I16", 2, -1},
    {"U16", 2, -1},      {"F16", 2, MLK_F16}, {"BF16", 2, MLK_BF16}, {"I32", 4, MLK_I32},
    {"U32", 4, -1},      {"F32", 4, MLK_F32}, {"F64", 8, -1},        {"I64", 8, -1},
    {"U64", 8, -1},      {"F8_E4M3", 1, -1},  {"F8_E5M2", 1, -1},
};

/* "[3, 4]" into buf. */
static const char *shape_str(char *buf, size_t n, int rank, const int64_t *shape) {
  size_t len = (size_t)snprintf(buf, n, "[");
  for (int r = 0; r < rank && len < n; r++)
    len += (size_t)snprintf(buf + len, n - len, "%s%lld", r ? ", " : "", (long long)shape[r]);
  if (len < n)
    snprintf(buf + len, n - len, "]");
  return buf;
}

static const char *json_kind(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT: return "an object";
  case JSON_ARRAY: return "an array";
  case JSON_STRING: return "a string";
  case JSON_INTEGER: return "an integer";
  case JSON_REAL: return "a number";
  case JSON_TRUE:
  case JSON_FALSE: return "a boolean";
  case JSON_NULL: return "null";
  }
  return "?";
}

/* Parses JSON text that must be an object: NULL (with the error set) if it is not. Messages read
 * "<kind> '<path>': <what> is not valid JSON: ...". */
static json_t *parse_object(const char *kind, const char *text, size_t len, const char *path,
                            const char *what) {
  json_error_t e;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
  if (!root) {
    mlk_set_error(MLK_ERR_INVALID, "%s '%s': %s is not valid JSON: %s (line %d, column %d)", kind,
                  path, what, e.text, e.line, e.column);
    return NULL;
  }
  if (!json_is_object(root)) {
    mlk_set_error(MLK_ERR_INVALID, "%s '%s': %s is %s, expected a JSON object", kind, path, what,
                  json_kind(root));
    json_decref(root);
    return NULL;
  }
  return root;
}

/* ---- one safetensors header ---- */

static int cmp_by_begin(const void *a, const void *b) {
  const MlkStTensor *x = *(const MlkStTensor *const *)a, *y = *(const MlkStTensor *const *)b;
  if (x->begin != y->begin)
    return x->begin < y->begin ? -1 : 1;
  return (x->end > y->end) - (x->end < y->end);
}

/* One header entry: {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}. */
static mlk_status parse_entry(const char *path, const char *name, json_t *v, uint64_t data_bytes,
                              MlkStTensor *t) {
  if (!json_is_object(v))
    return mlk_set_error(MLK_ERR_INVALID, "checkpoint '%s': tensor '%s': its entry is %s, expected "
                         "an object with dtype, shape and data_offsets", path, name, json_kind(v));
  json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
         *off = json_object_get(v, "data_offsets");
  if (!dt || !sh || !off)
    return mlk_set_error(MLK_ERR_INVALID, "checkpoint '%s': tensor '%s' has no %s", path, name,
                         !dt ? "dtype" : !sh ? "shape" : "data_offsets");
  if (!json_is_string(dt))
    return mlk_set_error(MLK_ERR_INVALID, "checkpoint '%s': tensor '%s': dtype is %s, expected a "
                         "string", path, name, json_kind(dt));
  int d = 0;
  while (d < MLK_ST_DTYPE_COUNT && strcmp(st_dtypes[d].name, json_string_value(dt)))
    d++;
  if (d == MLK_ST_DTYPE_COUNT)
    return mlk_set_error(MLK_ERR_INVALID, "checkpoint '%s': tensor '%s': unknown dtype '%s'", path,
                         name, json_string_value(dt));
  t->dtype = (MlkStDType)d;
  if (!json_is_array(sh) || json_array_size(sh) > MLK_ST_MAX_RANK)
    return mlk_set_error(MLK_ERR_INVALID, "checkpoint '%s': tensor '%s': shape is %s%s, expected "
                         "an array of at most %d sizes", path, name, json_kind(sh),
                         json_is_array(sh) ? " too long" : "", MLK_ST_MAX_RANK);
  t->rank = (int)json_array_size(sh);
  /* numel * size must fit the data section, which bounds every partial product */
  uint64_t limit = data_bytes / st_dtypes[d].size, numel = 1;
  int zero = 0;
  for (int r = 0; r < t->rank; r++) {
    json_t *x = json_array_get(sh, (size_t)r);
    if (!json_is_integer(x) || json_integer_value(x) < 0)
      return mlk_set_error(MLK_ERR_INVALID, "checkpoint '%s': tensor '%s': shape[%d] is %s, "
                           "expected an integer >= 0", path, name, r,
                           json_is_integer(x) ? "negative" : json_kind(x));
    t->shape[r] = json_integer_value(x);
    zero |= t->shape[r] == 0;
    if (!zero && numel <= limit)
      numel = (uint64_t)t->shape[r] > limit / numel ? limit + 1 : numel * (uint64_t)t->shape[r];
  }
  if (zero)
    numel = 0;
  if (!json_is_array(off) || json_array_size(off) != 2 ||
      !json_is_integer(json_array_get(off, 0)) || !json_is_integer(json_array_get(off, 1)))
    return mlk_set_error(MLK_ERR_INVALID, "checkpoint '%s': tensor '%s': data_offsets must be an "
                         "array of two integers [begin, end]", path, name);
  json_int_t b = json_integer_value(json_array_get(off, 0)), e = json_integer_value(json_array_get(off, 1));
  if (b < 0 || e < b || (uint64_t)e > data_bytes)
    return mlk_set_error(MLK_ERR_INVALID, "checkpoint '%s': tensor '%s': data_offsets [%lld, %lld] "
                         "are outside the data section of %llu bytes (0 <= begin <= end <= %llu)%s",
                         path, name, (long long)b, (long long)e, (unsigned long long)data_bytes,
                         (unsigned long long)data_bytes,
                         (uint64_t)e > data_bytes ? ": the file is truncated or its header is wrong" : "");
  t->begin = (uint64_t)b;
  t->end = (uint64_t)e;
  char s[160], need[40];
  if (numel > limit || t->end - t->begin != numel * st_dtypes[d].size) {
    if (numel > limit)
      snprintf(need, sizeof need, "more than the data section's %llu", (unsigned long long)data_bytes);
    else
      snprintf(need, sizeof need, "%llu", (unsigned long long)(numel * st_dtypes[d].size));
    return mlk_set_error(MLK_ERR_INVALID, "checkpoint '%s': tensor '%s' is %s%s, which needs %s "
                         "bytes, but its data_offsets [%llu, %llu] hold %llu", path, name,
                         st_dtypes[d].name, shape_str(s, sizeof s, t->rank, t->shape), need,
                         (unsigned long long)t->begin, (unsigned long long)t->end,
                         (unsigned long long)(t->end - t->begin));
  }
  return MLK_OK;
}

static void header_free(MlkStHeader *h) {
  for (int64_t i = 0; i < h->ntensors; i++)
    free(h->tensors[i].name);
  free(h->tensors);
  memset(h, 0, sizeof *h);
}

void mlk_st_header_free(MlkStHeader *h) {
  if (h)
    header_free(h);
}

mlk_status mlk_st_parse(const uint8_t *file, uint64_t size, const char *path, MlkStHeader *out) {
  memset(out, 0, sizeof *out);
  if (size < 8)
    return mlk_set_error(MLK_ERR_INVALID, "checkpoint '%s' is truncated: %llu bytes, a safetensors "
                         "file starts with an 8-byte header length", path, (unsigned long long)size);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--)
    n = n << 8 | file[i];
  if (n > size - 8)
    return mlk_set_error(MLK_ERR_INVALID, "checkpoint '%s': the header length %llu is beyond the "
                         "file's %llu bytes: the file is truncated or not safetensors", path,
                         (unsigned long long)n, (unsigned long long)size);
  if (n > MLK_ST_MAX_HEADER)
    return mlk_set_error(MLK_ERR_INVALID, "checkpoint '%s': the header length %llu is more than the "
                         "%u bytes safetensors allows", path, (unsigned long long)n, MLK_ST_MAX_HEADER);
  json_t *root = parse_object("checkpoint", (const char *)file + 8, (size_t)n, path, "the header");
  if (!root)
    return MLK_ERR_INVALID;
  out->data_start = 8 + n;
  out->data_bytes = size - 8 - n;
  size_t cap = json_object_size(root);
  mlk_status st = MLK_OK;
  MlkStTensor **order = NULL;
  if (!(out->tensors = MLK_CALLOC(cap, sizeof *out->tensors, "checkpoint tensor table")) ||
      !(order = MLK_CALLOC(cap, sizeof *order, "checkpoint tensor order"))) {
    st = MLK_ERR_NOMEM;
    goto done;
  }
  const char *key;
  json_t *v;
  json_object_foreach(root, key, v) {
    if (!strcmp(key, "__metadata__")) {
      const char *mk;
      json_t *mv;
      if (!json_is_object(v)) {
        st = mlk_set_error(MLK_ERR_INVALID, "checkpoint '%s': __metadata__ is %s, expected an object "
                           "of strings", path, json_kind(v));
        goto done;
      }
      json_object_foreach(v, mk, mv) {
        if (!json_is_string(mv)) {
          st = mlk_set_error(MLK_ERR_INVALID, "checkpoint '%s': __metadata__ '%s' is %s, expected "
                             "a string", path, mk, json_kind(mv));
          goto done;
        }
      }
      continue;
    }
    MlkStTensor *t = &out->tensors[out->ntensors];
    if (!*key) {
      st = mlk_set_error(MLK_ERR_INVALID, "checkpoint '%s': a tensor has an empty name", path);
      goto done;
    }
    if ((st = parse_entry(path, key, v, out->data_bytes, t)))
      goto done;
    if (!(t->name = strdup(key))) {
      st = MLK_ERROR_AT(MLK_ERR_NOMEM, "strdup(the name of tensor '%s') failed", key);
      goto done;
    }
    order[out->ntensors++] = t;
  }
  /* The tensors must tile the data section: sorted by offset, each starts where the last ended. */
  qsort(order, (size_t)out->ntensors, sizeof *order, cmp_by_begin);
  uint64_t end = 0;
  for (int64_t i = 0; i < out->ntensors; i++) {
    const MlkStTensor *t = order[i];
    if (t->begin < end) {
      st = mlk_set_error(MLK_ERR_INVALID, "checkpoint '%s': tensor '%s' (bytes [%llu, %llu) of the "
                         "data section) overlaps tensor '%s' (bytes [%llu, %llu))", path, t->name,
                         (unsigned long long)t->begin, (unsigned long long)t->end, order[i - 1]->name,
                         (unsigned long long)order[i - 1]->begin, (unsigned long long)order[i - 1]->end);
      goto done;
    }
    if (t->begin > end) {
      st = mlk_set_error(MLK_ERR_INVALID, "checkpoint '%s': bytes [%llu, %llu) of the data section, "
                         "before tensor '%s', belong to no tensor", path, (unsigned long long)end,
                         (unsigned long long)t->begin, t->name);
      goto done;
    }
    end = t->end;
  }
  if (end != out->data_bytes)
    st = mlk_set_error(MLK_ERR_INVALID, "checkpoint '%s': the data section has %llu bytes, its "
                       "tensors end at byte %llu", path, (unsigned long long)out->data_bytes,
                       (unsigned long long)end);
done:
  free(order);
  json_decref(root);
  if (st)
    header_free(out);
  return st;
}

/* ---- the shard index ---- */

void mlk_st_index_free(MlkStIndex *ix) {
  if (!ix)
    return;
  for (int64_t i = 0; i < ix->n; i++)
    free(ix->names[i]);
  for (int i = 0; i < ix->nshards; i++)
    free(ix->shards[i]);
  free(ix->names);
  free(ix->shard_of);
  free(ix->shards);
  memset(ix, 0, sizeof *ix);
}

/* A shard's file name must stay inside the checkpoint's directory. */
static int bad_shard_name(const char *f) {
  if (!*f || *f == '/')
    return 1;
  for (const char *p = f; p; p = strchr(p, '/')) {
    p += *p == '/';
    if (!strncmp(p, "..", 2) && (p[2] == '/' || !p[2]))
      return 1;
  }
  return 0;
}

mlk_status mlk_st_parse_index(const char *json, size_t len, const char *path, MlkStIndex *out) {
  memset(out, 0, sizeof *out);
  json_t *root = parse_object("checkpoint", json, len, path, "the index");
  if (!root)
    return MLK_ERR_INVALID;
  mlk_status st = MLK_OK;
  json_t *map = json_object_get(root, "weight_map");
  if (!map || !json_is_object(map)) {
    st = mlk_set_error(MLK_ERR_INVALID, "checkpoint '%s': the index has %s \"weight_map\"%s%s", path,
                       map ? "a" : "no", map ? " that is " : "", map ? json_kind(map) : "");
    goto done;
  }
  size_t cap = json_object_size(map);
  if (!(out->names = MLK_CALLOC(cap, sizeof *out->names, "checkpoint index names")) ||
      !(out->shard_of = MLK_CALLOC(cap, sizeof *out->shard_of, "checkpoint index shards")) ||
      !(out->shards = MLK_CALLOC(cap, sizeof *out->shards, "checkpoint shard names"))) {
    st = MLK_ERR_NOMEM;
    goto done;
  }
  const char *key;
  json_t *v;
  json_object_foreach(map, key, v) {
    if (!json_is_string(v) || bad_shard_name(json_string_value(v))) {
      st = mlk_set_error(MLK_ERR_INVALID, "checkpoint '%s': tensor '%s' is mapped to %s%s%s, expected "
                         "the name of a file in the checkpoint's directory", path, key,
                         json_is_string(v) ? "'" : json_kind(v),
                         json_is_string(v) ? json_string_value(v) : "", json_is_string(v) ? "'" : "");
      goto done;
    }
    const char *f = json_string_value(v);
    int s = 0;
    while (s < out->nshards && strcmp(out->shards[s], f))
      s++;
    if (s == out->nshards && !(out->shards[out->nshards++] = strdup(f))) {
      st = MLK_ERROR_AT(MLK_ERR_NOMEM, "strdup(shard name '%s') failed", f);
      goto done;
    }
    if (!(out->names[out->n] = strdup(key))) {
      st = MLK_ERROR_AT(MLK_ERR_NOMEM, "strdup(tensor name '%s') failed", key);
      goto done;
    }
    out->shard_of[out->n++] = s;
  }
  if (out->n == 0)
    st = mlk_set_error(MLK_ERR_INVALID, "checkpoint '%s': the index's weight_map is empty", path);
done:
  json_decref(root);
  if (st)
    mlk_st_index_free(out);
  return st;
}

/* ---- files ---- */

typedef struct StFile {
  char *path;
  int fd;
  const uint8_t *map;
  size_t size;
  MlkStHeader h;
} StFile;

/* Maps `path` and parses its header. */
static mlk_status open_file(StFile *f, const char *path) {
  memset(f, 0, sizeof *f);
  f->fd = -1;
  if (!(f->path = strdup(path)))
    return MLK_ERROR_AT(MLK_ERR_NOMEM, "strdup(%s) failed", path);
  if ((f->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
    return MLK_ERROR_AT(MLK_ERR_IO, "open(checkpoint '%s') failed: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(f->fd, &sb))
    return MLK_ERROR_AT(MLK_ERR_IO, "fstat(checkpoint '%s') failed: %s", path, strerror(errno));
  if (!S_ISREG(sb.st_mode))
    return mlk_set_error(MLK_ERR_IO, "checkpoint '%s' is not a regular file", path);
  f->size = (size_t)sb.st_size;
  if (f->size > 0) {
    void *p = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, f->fd, 0);
    if (p == MAP_FAILED)
      return MLK_ERROR_AT(MLK_ERR_IO, "mmap(checkpoint '%s', %zu bytes) failed: %s", path, f->size,
                          strerror(errno));
    f->map = p;
  }
  return mlk_st_parse(f->map, f->size, path, &f->h);
}

/* Unmaps and closes; a failure is returned as `st` if that is still MLK_OK. */
static mlk_status close_file(StFile *f, mlk_status st) {
  header_free(&f->h);
  if (f->map && munmap((void *)f->map, f->size) && !st)
    st = MLK_ERROR_AT(MLK_ERR_IO, "munmap(checkpoint '%s') failed: %s", f->path, strerror(errno));
  if (f->fd >= 0 && close(f->fd) && !st)
    st = MLK_ERROR_AT(MLK_ERR_IO, "close(checkpoint '%s') failed: %s", f->path, strerror(errno));
  free(f->path);
  return st;
}

/* Reads a small JSON file (the index, config.json) whole; `what` names it in messages. */
static mlk_status read_text(const char *what, const char *path, char **text, size_t *len) {
  FILE *fp = fopen(path, "rb");
  if (!fp)
    return MLK_ERROR_AT(MLK_ERR_IO, "fopen(%s '%s') failed: %s", what, path, strerror(errno));
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  mlk_status st = buf ? MLK_OK
                      : MLK_ERROR_AT(MLK_ERR_NOMEM, "malloc(%zu bytes for %s '%s') failed", cap, what,
                                     path);
  while (!st) {
    if (n == cap) {
      char *p = cap <= MLK_ST_MAX_HEADER ? realloc(buf, cap * 2) : NULL;
      if (!p) {
        st = cap > MLK_ST_MAX_HEADER
                 ? mlk_set_error(MLK_ERR_INVALID, "%s '%s' is more than %u bytes", what, path,
                                 MLK_ST_MAX_HEADER)
                 : MLK_ERROR_AT(MLK_ERR_NOMEM, "realloc(%zu bytes for '%s') failed", cap * 2, path);
        break;
      }
      buf = p;
      cap *= 2;
    }
    size_t k = fread(buf + n, 1, cap - n, fp);
    n += k;
    if (k == 0) {
      if (ferror(fp))
        st = MLK_ERROR_AT(MLK_ERR_IO, "fread(%s '%s') failed: %s", what, path, strerror(errno));
      break;
    }
  }
  if (fclose(fp) && !st)
    st = MLK_ERROR_AT(MLK_ERR_IO, "fclose(%s '%s') failed: %s", what, path, strerror(errno));
  if (st) {
    free(buf);
    return st;
  }
  *text = buf;
  *len = n;
  return MLK_OK;
}

/* ---- a whole checkpoint ---- */

typedef struct Ckpt {
  char *where;        /* what messages call the checkpoint: the file, or the index */
  StFile *files;
  int nfiles;
  MlkStTensor **by_name; /* every tensor of every file, sorted by name */
  int64_t n;
  uint8_t *used;      /* per by_name entry: a binding reads it */
} Ckpt;

static int cmp_by_name(const void *a, const void *b) {
  return strcmp((*(const MlkStTensor *const *)a)->name, (*(const MlkStTensor *const *)b)->name);
}

static mlk_status ckpt_free(Ckpt *c, mlk_status st) {
  for (int i = 0; i < c->nfiles; i++)
    st = close_file(&c->files[i], st);
  free(c->files);
  free(c->by_name);
  free(c->used);
  free(c->where);
  return st;
}

static MlkStTensor *find(const Ckpt *c, const char *name, int64_t *at) {
  int64_t lo = 0, hi = c->n;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    int r = strcmp(c->by_name[mid]->name, name);
    if (!r) {
      if (at)
        *at = mid;
      return c->by_name[mid];
    }
    if (r < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && !strcmp(s + n - k, suffix);
}

static char *join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = malloc(n);
  if (p)
    snprintf(p, n, "%s/%s", dir, name);
  else
    MLK_ERROR_AT(MLK_ERR_NOMEM, "malloc(%zu bytes for a path) failed", n);
  return p;
}

/* Opens the files of the checkpoint at `path` (a .safetensors file, an index, or a directory with
 * either) and checks that they agree with each other. */
static mlk_status ckpt_open(Ckpt *c, const char *path) {
  memset(c, 0, sizeof *c);
  struct stat sb;
  if (stat(path, &sb))
    return MLK_ERROR_AT(MLK_ERR_IO, "stat(checkpoint '%s') failed: %s", path, strerror(errno));
  char *file = NULL;
  if (S_ISDIR(sb.st_mode)) {
    char *ix = join(path, "model.safetensors.index.json"), *one = join(path, "model.safetensors");
    if (!ix || !one) {
      free(ix);
      free(one);
      return MLK_ERR_NOMEM;
    }
    if (!access(ix, F_OK)) {
      file = ix;
      free(one);
    } else if (!access(one, F_OK)) {
      file = one;
      free(ix);
    } else {
      free(ix);
      free(one);
      return mlk_set_error(MLK_ERR_IO, "checkpoint directory '%s' has neither "
                           "model.safetensors.index.json nor model.safetensors", path);
    }
  } else if (!(file = strdup(path))) {
    return MLK_ERROR_AT(MLK_ERR_NOMEM, "strdup(%s) failed", path);
  }
  c->where = file;
  mlk_status st;
  if (!ends_with(file, ".json")) {
    if (!(c->files = MLK_CALLOC(1, sizeof *c->files, "checkpoint files")))
      return MLK_ERR_NOMEM;
    c->nfiles = 1;
    if ((st = open_file(&c->files[0], file)))
      return st;
  } else {
    char *text = NULL;
    size_t len = 0;
    MlkStIndex ix;
    if ((st = read_text("checkpoint", file, &text, &len)))
      return st;
    st = mlk_st_parse_index(text, len, file, &ix);
    free(text);
    if (st)
      return st;
    /* shards live next to the index */
    const char *slash = strrchr(file, '/');
    char *dir = slash ? strndup(file, (size_t)(slash - file)) : strdup(".");
    if (!dir || !(c->files = MLK_CALLOC((size_t)ix.nshards, sizeof *c->files, "checkpoint files"))) {
      free(dir);
      mlk_st_index_free(&ix);
      return dir ? MLK_ERR_NOMEM : MLK_ERROR_AT(MLK_ERR_NOMEM, "strdup(a directory) failed");
    }
    for (int i = 0; i < ix.nshards && !st; i++) {
      char *p = join(dir, ix.shards[i]);
      c->nfiles = i + 1;
      st = p ? open_file(&c->files[i], p) : MLK_ERR_NOMEM;
      free(p);
    }
    free(dir);
    if (st) {
      mlk_st_index_free(&ix);
      return st;
    }
    /* every tensor the index maps must be in the file it names (checked after sorting) */
    c->n = 0;
    for (int i = 0; i < c->nfiles; i++)
      c->n += c->files[i].h.ntensors;
    if (!(c->by_name = MLK_CALLOC((size_t)c->n, sizeof *c->by_name, "checkpoint name table"))) {
      mlk_st_index_free(&ix);
      return MLK_ERR_NOMEM;
    }
    int64_t k = 0;
    for (int i = 0; i < c->nfiles; i++)
      for (int64_t j = 0; j < c->files[i].h.ntensors; j++) {
        c->files[i].h.tensors[j].file = i;
        c->by_name[k++] = &c->files[i].h.tensors[j];
      }
    qsort(c->by_name, (size_t)c->n, sizeof *c->by_name, cmp_by_name);
    for (int64_t j = 1; j < c->n && !st; j++)
      if (!strcmp(c->by_name[j - 1]->name, c->by_name[j]->name))
        st = mlk_set_error(MLK_ERR_INVALID, "checkpoint '%s': tensor '%s' is in both '%s' and '%s'",
                           c->where, c->by_name[j]->name, c->files[c->by_name[j - 1]->file].path,
                           c->files[c->by_name[j]->file].path);
    for (int64_t j = 0; j < ix.n && !st; j++) {
      const MlkStTensor *t = find(c, ix.names[j], NULL);
      const StFile *want = &c->files[ix.shard_of[j]];
      if (!t)
        st = mlk_set_error(MLK_ERR_INVALID, "checkpoint '%s': tensor '%s' is missing from '%s', where "
                           "the index maps it", c->where, ix.names[j], want->path);
      else if (t->file != ix.shard_of[j])
        st = mlk_set_error(MLK_ERR_INVALID, "checkpoint '%s': tensor '%s' is in '%s', but the index "
                           "maps it to '%s'", c->where, ix.names[j], c->files[t->file].path,
                           want->path);
    }
    mlk_st_index_free(&ix);
    if (st)
      return st;
  }
  if (!c->by_name) { /* a single file */
    c->n = c->files[0].h.ntensors;
    if (!(c->by_name = MLK_CALLOC((size_t)c->n, sizeof *c->by_name, "checkpoint name table")))
      return MLK_ERR_NOMEM;
    for (int64_t j = 0; j < c->n; j++)
      c->by_name[j] = &c->files[0].h.tensors[j];
    qsort(c->by_name, (size_t)c->n, sizeof *c->by_name, cmp_by_name);
  }
  if (!(c->used = MLK_CALLOC((size_t)c->n, 1, "checkpoint tensor flags")))
    return MLK_ERR_NOMEM;
  return MLK_OK;
}

/* ---- dtypes ---- */

static float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | man << 13; /* inf, NaN (payload kept) */
  } else if (exp) {
    u = sign | (exp + 112) << 23 | man << 13; /* rebias 15 -> 127 */
  } else if (man) {
    /* subnormal: shift the mantissa up to a leading 1, lowering the exponent as we go */
    int e = 113;
    while (!(man & 0x400u)) {
      man <<= 1;
      e--;
    }
    u = sign | (uint32_t)e << 23 | (man & 0x3ffu) << 13;
  } else {
    u = sign; /* +-0 */
  }
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* Element i of checkpoint data of dtype `t` (BF16, F16 or F32) as a float, exactly. */
static float load_f32(const uint8_t *src, MlkStDType t, size_t i) {
  if (t == MLK_ST_F32) {
    float f;
    memcpy(&f, src + 4 * i, 4);
    return f;
  }
  uint16_t h;
  memcpy(&h, src + 2 * i, 2);
  return t == MLK_ST_BF16 ? mlk_bf16_to_f32(h) : f16_to_f32(h);
}

/* Whether a tensor of dtype `from` loads into a param of dtype `to`, and how. */
static int loadable(MlkStDType from, MlkDType to) {
  if (st_dtypes[from].mlk == (int)to)
    return 1; /* as it is */
  int fl = from == MLK_ST_BF16 || from == MLK_ST_F16 || from == MLK_ST_F32;
  return fl && (to == MLK_BF16 || to == MLK_F32);
}

/* What binding b loads of its checkpoint tensor, for model rank `rank`: `outer` runs of `run`
 * consecutive elements, run o starting at element o * stride + first (one run, the whole tensor,
 * unless the param is sharded: then its rank's part of dimension shard_dim). */
typedef struct Slice {
  size_t outer, run, stride, first;
} Slice;

static Slice binding_slice(const MlkBinding *b, int rank) {
  size_t numel = 1;
  for (int r = 0; r < b->rank; r++)
    numel *= (size_t)b->shape[r];
  if (b->shard_ways <= 1)
    return (Slice){1, numel, numel, 0};
  size_t outer = 1, inner = 1, part = (size_t)(b->shape[b->shard_dim] / b->shard_ways);
  for (int r = 0; r < b->shard_dim; r++)
    outer *= (size_t)b->shape[r];
  for (int r = b->shard_dim + 1; r < b->rank; r++)
    inner *= (size_t)b->shape[r];
  return (Slice){outer, part * inner, (size_t)b->shape[b->shard_dim] * inner,
                 (size_t)rank * part * inner};
}

/* Uploads what binding b loads of its tensor t (binding_slice) into its param, in order: straight
 * from the mapping when that is one run of the param's own dtype, else packed (and converted)
 * through `stage` (`cap` bytes), a staging buffer's worth per upload. */
static mlk_status upload(mlk_model *m, const MlkBinding *b, const StFile *f, const MlkStTensor *t,
                         uint8_t *stage, size_t cap) {
  MlkDType to = m->desc->tensors[b->tensor].dtype;
  size_t esize = mlk_dtype_size(to), off = (size_t)b->offset * esize, ssize = st_dtypes[t->dtype].size;
  const uint8_t *src = f->map + f->h.data_start + t->begin;
  Slice sl = binding_slice(b, m->rank);
  int same = st_dtypes[t->dtype].mlk == (int)to;
  if (same && sl.outer == 1)
    return m->be->ops->upload_range(m, b->tensor, off, src + sl.first * ssize, sl.run * esize);
  size_t chunk = cap / esize, fill = 0, done = 0;
  for (size_t o = 0; o < sl.outer; o++)
    for (size_t i = 0; i < sl.run;) {
      size_t n = sl.run - i < chunk - fill ? sl.run - i : chunk - fill, e = o * sl.stride + sl.first + i;
      if (same) {
        memcpy(stage + fill * esize, src + e * ssize, n * esize);
      } else {
        for (size_t j = 0; j < n; j++) {
          float v = load_f32(src, t->dtype, e + j);
          if (to == MLK_F32) {
            memcpy(stage + 4 * (fill + j), &v, 4);
          } else {
            uint16_t h = mlk_f32_to_bf16(v);
            memcpy(stage + 2 * (fill + j), &h, 2);
          }
        }
      }
      fill += n, i += n;
      if (fill == chunk || (o + 1 == sl.outer && i == sl.run)) {
        mlk_status st = m->be->ops->upload_range(m, b->tensor, off + done * esize, stage, fill * esize);
        if (st)
          return st;
        done += fill, fill = 0;
      }
    }
  return MLK_OK;
}

/* The tensor of binding b, checked: present, loadable, exactly the shape the model expects. */
static mlk_status check_binding(const mlk_model *m, Ckpt *c, const MlkBinding *b,
                                const MlkStTensor **out) {
  const MlkModelDesc *d = m->desc;
  const MlkTensorDesc *p = &d->tensors[b->tensor];
  int64_t at;
  const MlkStTensor *t = find(c, b->name, &at);
  if (!t)
    return mlk_set_error(MLK_ERR_INVALID, "checkpoint '%s': tensor '%s' is missing (param '%s' of "
                         "model '%s' binds it)", c->where, b->name, p->name, d->name);
  const char *file = c->files[t->file].path;
  char s1[160], s2[160];
  if (!loadable(t->dtype, p->dtype))
    return mlk_set_error(MLK_ERR_INVALID, "checkpoint '%s': tensor '%s' is %s, which cannot be "
                         "loaded into param '%s' (%s): %s", file, b->name,
                         st_dtypes[t->dtype].name, p->name, mlk_dtype_name(p->dtype),
                         p->dtype == MLK_BF16 || p->dtype == MLK_F32
                             ? "expected BF16, F16 or F32"
                             : "expected the param's own dtype");
  int same = t->rank == b->rank;
  for (int r = 0; r < b->rank && same; r++)
    same = t->shape[r] == b->shape[r];
  if (!same)
    return mlk_set_error(MLK_ERR_INVALID, "checkpoint '%s': tensor '%s' has shape %s, param '%s' of "
                         "model '%s' expects %s", file, b->name,
                         shape_str(s1, sizeof s1, t->rank, t->shape), p->name, d->name,
                         shape_str(s2, sizeof s2, b->rank, b->shape));
  c->used[at] = 1;
  *out = t;
  return MLK_OK;
}

/* ---- config.json ---- */

/* What the model says about one Hugging Face config key, and where it says it. */
typedef struct CfgFact {
  const char *key;
  int is_float;
  double value;
  char where[200]; /* "op 'attention@nn.mlk:27[l=0]'", "cache 'kv'" */
  int known;
} CfgFact;

static void fact(CfgFact *f, const char *key, int is_float, double v, const char *kind,
                 const char *name) {
  if (f->known)
    return; /* the first cache or op that fixes it speaks for the model */
  f->key = key;
  f->is_float = is_float;
  f->value = v;
  snprintf(f->where, sizeof f->where, "%s '%s'", kind, name);
  f->known = 1;
}

/* A number of the config: 1 with *v, 0 when absent or null, -1 (error set) when not a number (an
 * integer where `integer`). */
static int cfg_number(const json_t *root, const char *key, int integer, const char *path, double *v) {
  const json_t *x = json_object_get(root, key);
  if (!x || json_is_null(x))
    return 0;
  if (integer ? !json_is_integer(x) : !json_is_number(x)) {
    mlk_set_error(MLK_ERR_INVALID, "config '%s': %s is %s, expected %s", path, key, json_kind(x),
                  integer ? "an integer" : "a number");
    return -1;
  }
  *v = json_number_value(x);
  return 1;
}

/* Compares a config value with every op or cache of the model that fixes it. f32 values compare
 * as f32 (the model holds them so). */
static mlk_status cfg_compare(const mlk_model *m, const char *path, const char *key, double want,
                              int is_float, double have, const char *where) {
  int same = is_float ? (float)want == (float)have : want == have;
  if (same)
    return MLK_OK;
  if (is_float)
    return mlk_set_error(MLK_ERR_INVALID, "config '%s': %s is %.9g, but model '%s' has %.9g (%s)",
                         path, key, want, m->desc->name, have, where);
  return mlk_set_error(MLK_ERR_INVALID, "config '%s': %s is %.0f, but model '%s' has %.0f (%s)", path,
                       key, want, m->desc->name, have, where);
}

/* Checks a Hugging Face config.json (the Llama and Qwen2 families' keys) against what the model's
 * ops and caches fix: layers, heads, kv heads, head dim, hidden size, vocabulary, norm eps, rope
 * theta, Llama 3 rope scaling, and no sliding window (Qwen2's use_sliding_window: the attention
 * ops attend to every position). A key the config lacks is not checked (num_key_value_heads
 * defaults to num_attention_heads, head_dim to hidden_size / num_attention_heads, as in
 * transformers); a value the model does not fix (no attention op: no heads) neither. */
static mlk_status check_config(const mlk_model *m, const char *path) {
  char *text = NULL;
  size_t len = 0;
  mlk_status st = read_text("config", path, &text, &len);
  if (st)
    return st;
  json_t *root = parse_object("config", text, len, path, "the file");
  free(text);
  if (!root)
    return MLK_ERR_INVALID;
  mlk_hf_config_normalize(root);
  const MlkModelDesc *d = m->desc;
  enum { LAYERS, HEADS, KV_HEADS, HEAD_DIM, HIDDEN, VOCAB, NFACTS };
  CfgFact f[NFACTS] = {{0}};
  for (int c = 0; c < d->ncaches; c++) {
    const MlkCacheDesc *cd = &d->caches[c];
    fact(&f[LAYERS], "num_hidden_layers", 0, (double)cd->layers, "cache", cd->name);
    fact(&f[KV_HEADS], "num_key_value_heads", 0, (double)cd->kv_heads, "cache", cd->name);
    fact(&f[HEAD_DIM], "head_dim", 0, (double)cd->head_dim, "cache", cd->name);
  }
  for (int o = 0; o < d->nops; o++) {
    const MlkOpDesc *op = &d->ops[o];
    if (op->kind == MLK_OP_ATTENTION || op->kind == MLK_OP_ATTN_REDUCE) {
      fact(&f[HEADS], "num_attention_heads", 0, (double)op->heads, "op", op->name);
      fact(&f[KV_HEADS], "num_key_value_heads", 0, (double)op->kv_heads, "op", op->name);
      fact(&f[HEAD_DIM], "head_dim", 0, (double)op->head_dim, "op", op->name);
    } else if (op->kind == MLK_OP_GATHER) {
      const MlkTensorDesc *table = &d->tensors[op->in[1].tensor];
      fact(&f[HIDDEN], "hidden_size", 0, (double)op->n, "op", op->name);
      fact(&f[VOCAB], "vocab_size", 0, (double)(table->numel / op->n), "tensor", table->name);
    }
  }
  double v[NFACTS];
  int has[NFACTS];
  for (int i = 0; i < NFACTS; i++) {
    static const char *keys[NFACTS] = {"num_hidden_layers", "num_attention_heads",
                                       "num_key_value_heads", "head_dim", "hidden_size",
                                       "vocab_size"};
    if ((has[i] = cfg_number(root, keys[i], 1, path, &v[i])) < 0) {
      json_decref(root);
      return MLK_ERR_INVALID;
    }
  }
  if (!has[KV_HEADS] && has[HEADS]) { /* transformers' defaults */
    has[KV_HEADS] = 1;
    v[KV_HEADS] = v[HEADS];
  }
  if (!has[HEAD_DIM] && has[HEADS] && has[HIDDEN] && v[HEADS] > 0) {
    has[HEAD_DIM] = 1;
    v[HEAD_DIM] = floor(v[HIDDEN] / v[HEADS]);
  }
  /* a model over several ranks may hold its share of the heads on each (a rank's attention) */
  int64_t ranks = d->ranks > 1 ? d->ranks : 1;
  for (int i = 0; i < NFACTS && !st; i++)
    if (has[i] && f[i].known && !((i == HEADS || i == KV_HEADS) && v[i] == f[i].value * ranks))
      st = cfg_compare(m, path, f[i].key, v[i], 0, f[i].value, f[i].where);
  /* every op that fixes a float: rmsnorm eps (fused or not), rope theta and scaling */
  double eps, theta;
  int has_eps = st ? 0 : cfg_number(root, "rms_norm_eps", 0, path, &eps);
  int has_theta = has_eps < 0 ? -1 : cfg_number(root, "rope_theta", 0, path, &theta);
  if (!st && (has_eps < 0 || has_theta < 0))
    st = MLK_ERR_INVALID;
  const json_t *rs = json_object_get(root, "rope_scaling");
  double sc[4] = {1, 0, 0, 0}; /* factor, low_freq_factor, high_freq_factor, original max pos */
  int scaled = 0;
  if (!st && rs && !json_is_null(rs)) {
    const json_t *type = json_object_get(rs, "rope_type");
    if (!type)
      type = json_object_get(rs, "type");
    const char *tn = json_is_string(type) ? json_string_value(type) : NULL;
    if (!json_is_object(rs) || !tn) {
      st = mlk_set_error(MLK_ERR_INVALID, "config '%s': rope_scaling is %s without a rope_type, "
                         "expected null or an object with rope_type \"llama3\"", path, json_kind(rs));
    } else if (!strcmp(tn, "llama3")) {
      static const char *keys[4] = {"factor", "low_freq_factor", "high_freq_factor",
                                    "original_max_position_embeddings"};
      scaled = 1;
      for (int i = 0; i < 4 && !st; i++) {
        int r = cfg_number(rs, keys[i], i == 3, path, &sc[i]);
        if (r == 0)
          st = mlk_set_error(MLK_ERR_INVALID, "config '%s': rope_scaling (llama3) has no %s", path,
                             keys[i]);
        else if (r < 0)
          st = MLK_ERR_INVALID;
      }
    } else if (strcmp(tn, "default")) {
      st = mlk_set_error(MLK_ERR_INVALID, "config '%s': rope_scaling of type '%s' is not what the "
                         "rope op computes (none, or llama3)", path, tn);
    }
  }
  /* Qwen2 with use_sliding_window true attends to the last sliding_window positions in the layers
   * from max_window_layers on; an attention op attends to all of them. */
  const json_t *sw = json_object_get(root, "use_sliding_window");
  if (!st && sw && !json_is_null(sw) && !json_is_boolean(sw))
    st = mlk_set_error(MLK_ERR_INVALID, "config '%s': use_sliding_window is %s, expected true or "
                       "false", path, json_kind(sw));
  for (int o = 0; o < d->nops && !st && json_is_true(sw); o++)
    if (d->ops[o].kind == MLK_OP_ATTENTION)
      st = mlk_set_error(MLK_ERR_INVALID, "config '%s': use_sliding_window is true, but op '%s' of "
                         "model '%s' attends to every position (no sliding window)", path,
                         d->ops[o].name, d->name);
  for (int o = 0; o < d->nops && !st; o++) {
    const MlkOpDesc *op = &d->ops[o];
    char where[200];
    snprintf(where, sizeof where, "op '%s'", op->name);
    int norm = op->kind == MLK_OP_RMSNORM || (op->kind == MLK_OP_MATVEC && op->in[3].tensor >= 0);
    if (norm && has_eps)
      st = cfg_compare(m, path, "rms_norm_eps", eps, 1, op->eps, where);
    if (op->kind != MLK_OP_ROPE || st)
      continue;
    if (has_theta)
      st = cfg_compare(m, path, "rope_theta", theta, 1, op->theta, where);
    int op_scaled = op->rope_factor > 1.0f;
    if (!st && scaled != op_scaled)
      st = mlk_set_error(MLK_ERR_INVALID, "config '%s': rope_scaling is %s, but op '%s' of model "
                         "'%s' %s", path, scaled ? "llama3" : "none", op->name, d->name,
                         op_scaled ? "applies Llama 3 scaling" : "does not scale");
    if (!st && scaled)
      if ((st = cfg_compare(m, path, "rope_scaling.factor", sc[0], 1, op->rope_factor, where)) ||
          (st = cfg_compare(m, path, "rope_scaling.low_freq_factor", sc[1], 1, op->rope_low_freq, where)) ||
          (st = cfg_compare(m, path, "rope_scaling.high_freq_factor", sc[2], 1, op->rope_high_freq, where)))
        break;
    if (!st && scaled)
      st = cfg_compare(m, path, "rope_scaling.original_max_position_embeddings", sc[3], 0,
                       (double)op->rope_original_max_pos, where);
  }
  json_decref(root);
  return st;
}

/* The config.json to check: opt's path ("" none), else the one next to the checkpoint if any. */
static mlk_status config_path(const char *ckpt, const Ckpt *c, const char *opt, char **out) {
  *out = NULL;
  if (opt) {
    if (*opt && !(*out = strdup(opt)))
      return MLK_ERROR_AT(MLK_ERR_NOMEM, "strdup(%s) failed", opt);
    return MLK_OK;
  }
  struct stat sb;
  char *p;
  if (!stat(ckpt, &sb) && S_ISDIR(sb.st_mode)) {
    p = join(ckpt, "config.json");
  } else {
    const char *slash = strrchr(c->where, '/');
    char *dir = slash ? strndup(c->where, (size_t)(slash - c->where)) : strdup(".");
    p = dir ? join(dir, "config.json") : NULL;
    free(dir);
  }
  if (!p)
    return MLK_ERROR_AT(MLK_ERR_NOMEM, "allocating the path of config.json failed");
  if (access(p, F_OK)) {
    free(p); /* none: nothing to check */
    return MLK_OK;
  }
  *out = p;
  return MLK_OK;
}

mlk_status mlk_model_load_checkpoint(mlk_model *m, const char *path, const mlk_load_options *opt) {
  if (!m || !path)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_model_load_checkpoint: %s is NULL", m ? "path" : "model");
  mlk_load_options o = {0};
  if (opt)
    o = *opt;
  size_t cap = o.staging_bytes ? o.staging_bytes : MLK_ST_STAGING_DEFAULT;
  if (cap < 8)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_load_options.staging_bytes is %zu, at least 8 are "
                         "needed", o.staging_bytes);
  const MlkModelDesc *d = m->desc;
  if (d->nbindings == 0)
    return mlk_set_error(MLK_ERR_INVALID, "model '%s' has no param bound to checkpoint tensors (declare "
                         "them with `from`)", d->name);
  Ckpt c;
  mlk_status st = ckpt_open(&c, path);
  const MlkStTensor **src = NULL;
  uint8_t *stage = NULL;
  if (st)
    goto done;
  char *config = NULL;
  if ((st = config_path(path, &c, o.config, &config)) || (config && (st = check_config(m, config)))) {
    free(config);
    goto done;
  }
  free(config);
  /* Check everything before the first upload: a refused checkpoint leaves the params as they were. */
  if (!(src = MLK_CALLOC((size_t)d->nbindings, sizeof *src, "checkpoint bindings"))) {
    st = MLK_ERR_NOMEM;
    goto done;
  }
  size_t need = 0; /* staging bytes the conversions can use */
  for (int j = 0; j < d->nbindings && !st; j++) {
    if ((st = check_binding(m, &c, &d->bindings[j], &src[j])))
      break;
    const MlkBinding *b = &d->bindings[j];
    MlkDType to = d->tensors[b->tensor].dtype;
    if (b->shard_ways > 1 && m->rank >= b->shard_ways) {
      st = mlk_set_error(MLK_ERR_INVALID, "param '%s' of model '%s' is sharded over %lld ranks, but "
                         "the model is rank %d (mlk_model_options.rank, MLK_RANK): ranks are 0..%lld",
                         d->tensors[b->tensor].name, d->name, (long long)b->shard_ways, m->rank,
                         (long long)b->shard_ways - 1);
      break;
    }
    Slice sl = binding_slice(b, m->rank);
    if (st_dtypes[src[j]->dtype].mlk != (int)to || sl.outer > 1) {
      size_t bytes = sl.outer * sl.run * mlk_dtype_size(to);
      need = bytes > need ? bytes : need;
    }
  }
  if (st)
    goto done;
  for (int64_t j = 0; j < c.n && !o.allow_unused; j++)
    if (!c.used[j]) {
      st = mlk_set_error(MLK_ERR_INVALID, "checkpoint '%s': tensor '%s' is bound to no param of model "
                         "'%s', which would ignore it (mlk_load_options.allow_unused skips such "
                         "tensors)", c.files[c.by_name[j]->file].path, c.by_name[j]->name, d->name);
      goto done;
    }
  if (need && !(stage = malloc(need < cap ? need : cap))) {
    st = MLK_ERROR_AT(MLK_ERR_NOMEM, "malloc(%zu bytes of staging for dtype conversion) failed",
                      need < cap ? need : cap);
    goto done;
  }
  for (int j = 0; j < d->nbindings && !st; j++)
    st = upload(m, &d->bindings[j], &c.files[src[j]->file], src[j], stage, need < cap ? need : cap);
  /* A param is set when all of its bindings arrived; after a failed upload none is. */
  for (int j = 0; j < d->nbindings; j++)
    m->rows_set[d->bindings[j].tensor] = st ? 0 : 1;
done:
  free(stage);
  free(src);
  return ckpt_free(&c, st);
}
