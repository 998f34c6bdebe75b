/* fuzz_ckpt.c: a libFuzzer harness of the checkpoint parsers (runtime/ckpt.c): each input is read
 * as a whole safetensors file (header length, JSON header, data section) and as the JSON of a
 * model.safetensors.index.json. Besides what the sanitizers catch, what the parsers accept must
 * hold what the loader relies on: tensors that tile the data section exactly, sizes that match
 * dtype and shape, shard indices in range; a violation aborts. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static uint64_t dtype_size(MlkStDType t) {
  static const uint64_t size[MLK_ST_DTYPE_COUNT] = {1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8, 1, 1};
  return size[t];
}

static int cmp_begin(const void *a, const void *b) {
  const MlkStTensor *x = a, *y = b;
  return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

/* A shard name the index may hold: relative, without a ".." component. */
static int inside(const char *f) {
  if (!*f || *f == '/')
    return 0;
  for (const char *p = f; p; p = strchr(p + 1, '/')) {
    const char *c = *p == '/' ? p + 1 : p;
    if (c[0] == '.' && c[1] == '.' && (c[2] == '/' || !c[2]))
      return 0;
  }
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  MlkStHeader h;
  if (mlk_st_parse(data, size, "fuzz.safetensors", &h) == MLK_OK) {
    if (h.data_start + h.data_bytes != size)
      abort();
    qsort(h.tensors, (size_t)h.ntensors, sizeof *h.tensors, cmp_begin);
    uint64_t end = 0;
    for (int64_t i = 0; i < h.ntensors; i++) {
      const MlkStTensor *t = &h.tensors[i];
      uint64_t numel = 1;
      for (int r = 0; r < t->rank; r++)
        numel *= (uint64_t)t->shape[r];
      if (!t->name || !*t->name || (unsigned)t->dtype >= MLK_ST_DTYPE_COUNT || t->begin != end ||
          t->end - t->begin != numel * dtype_size(t->dtype))
        abort();
      end = t->end;
    }
    if (end != h.data_bytes)
      abort();
    mlk_st_header_free(&h);
  }
  MlkStIndex ix;
  if (mlk_st_parse_index((const char *)data, size, "fuzz.index.json", &ix) == MLK_OK) {
    if (ix.n < 1 || ix.nshards < 1)
      abort();
    for (int64_t i = 0; i < ix.n; i++)
      if (ix.shard_of[i] < 0 || ix.shard_of[i] >= ix.nshards || !inside(ix.shards[ix.shard_of[i]]))
        abort();
    mlk_st_index_free(&ix);
  }
  return 0;
}
