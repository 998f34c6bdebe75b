/* test_ckpt.c: checkpoint bindings and the safetensors loader on the CPU simulator, over the
 * hand-built model of ckpt_test.h: binding validation; loads of a single file and of shards with
 * an index, in every dtype conversion (f16 specials included), compared element by element with
 * values computed here; and every malformed file, index and binding the loader must refuse, each
 * with its status and a message naming the file and the tensor, leaving the params as they were.
 */
#include "ckpt_test.h"
#include "st_write.h"

/* A description with one broken binding field must fail mlk_model_create with `needle`. */
static void expect_bad(mlk_backend *be, CkModel *ck, const char *needle) {
  mlk_model *m = NULL;
  mlk_status st = mlk_model_create(be, &ck->desc, &m);
  CHECK(st == MLK_ERR_INVALID, "expected MLK_ERR_INVALID for '%s', got %s", needle,
        mlk_status_name(st));
  CHECK_CONTAINS(mlk_last_error(), needle);
  mlk_model_free(m);
  ck_init(ck);
}

static void test_binding_validation(mlk_backend *be) {
  CkModel ck;
  ck_init(&ck);
  mlk_model *m = NULL;
  CHECK_OK(mlk_model_create(be, &ck.desc, &m));
  mlk_model_free(m);

  ck.bindings[1].offset = 11;
  expect_bad(be, &ck, "binding 1 'l.0.k' fills elements [11, 19) of param 'wqkv', which overlaps "
                      "binding 0 'l.0.q' ending at 12");
  ck.bindings[1].offset = 13;
  expect_bad(be, &ck, "param 'wqkv': no binding fills elements [12, 13) (binding 1 'l.0.k' starts "
                      "at 13): the bindings of a param must cover it");
  ck.bindings[5].shape[0] = 1;
  expect_bad(be, &ck, "param 'wqkv': no binding fills elements [52, 56): the bindings of a param "
                      "must cover it");
  ck.bindings[10].shape[0] = 5;
  expect_bad(be, &ck, "param 'half': no binding fills elements [5, 6)");
  ck.bindings[5].shape[0] = 3;
  expect_bad(be, &ck, "binding 5 'l.1.v' fills elements [48, 60) of param 'wqkv', which has 56");
  ck.bindings[2].shape[1] = 0;
  expect_bad(be, &ck, "binding 2 'l.0.v' of param 'wqkv' (56 elements) has shape[1] = 0");
  ck.bindings[2].shape[1] = INT64_MAX;
  expect_bad(be, &ck, "has shape[1] = 9223372036854775807");
  ck.bindings[2].rank = 5;
  expect_bad(be, &ck, "binding 2 'l.0.v' of param 'wqkv' has rank 5, not in [0, 4]");
  /* sharded: the cut dimension must exist and divide; the param holds the slice */
  ck.bindings[0].shard_dim = 1, ck.bindings[0].shard_ways = 3;
  expect_bad(be, &ck, "binding 0 'l.0.q' of param 'wqkv' is sharded 3 ways along dimension 1 of "
                      "its shape");
  ck.bindings[0].shard_dim = 2, ck.bindings[0].shard_ways = 2;
  expect_bad(be, &ck, "binding 0 'l.0.q' of param 'wqkv' is sharded 2 ways along dimension 2");
  ck.bindings[0].shard_dim = 1, ck.bindings[0].shard_ways = 2; /* [3, 4] whole: 6 elements */
  expect_bad(be, &ck, "param 'wqkv': no binding fills elements [6, 12)");
  ck.bindings[0].shard_dim = 1, ck.bindings[0].shard_ways = 2, ck.bindings[0].shape[1] = 8;
  mlk_model *sharded = NULL; /* [3, 8] cut in two along its columns: the 12 elements it had */
  CHECK_OK(mlk_model_create(be, &ck.desc, &sharded));
  mlk_model_free(sharded);
  ck_init(&ck);
  ck.bindings[3].name = "";
  expect_bad(be, &ck, "binding 3 of param 'wqkv' has no checkpoint tensor name");
  ck.bindings[3].name = NULL;
  expect_bad(be, &ck, "binding 3 of param 'wqkv' has no checkpoint tensor name");
  ck.bindings[6].tensor = CT_X;
  expect_bad(be, &ck, "binding 6 'l.0.norm' fills input 'x': only params are loaded from checkpoints");
  ck.bindings[6].tensor = CT_NTENSORS;
  expect_bad(be, &ck, "binding 6 'l.0.norm': tensor 8 out of range (8 tensors)");
  ck.bindings[8].tensor = CT_WQKV;
  expect_bad(be, &ck, "binding 8 'embed' of param 'wqkv' comes after a binding of tensor 1: "
                      "bindings are sorted by tensor");
  ck.desc.nbindings = -1;
  expect_bad(be, &ck, "-1 bindings");
  ck.desc.bindings = NULL;
  expect_bad(be, &ck, "11 bindings at (nil)");
  ck.desc.nbindings = 0; /* no bindings at all is fine */
  CHECK_OK(mlk_model_create(be, &ck.desc, &m));
  mlk_model_free(m);
}


/* ---- checkpoints of the model, and what the params must hold after loading them ---- */

static const char *dir; /* the test's temporary directory */

/* dir/name, in one of a few rotating buffers */
static const char *pth(const char *name) {
  static char buf[8][600];
  static int k;
  char *p = buf[k++ % 8];
  snprintf(p, sizeof buf[0], "%s/%s", dir, name);
  return p;
}

enum { CK_MAXBYTES = 256 };

typedef struct Ckpt {
  StT t[CT_NBINDINGS + 2];
  uint8_t src[CT_NBINDINGS + 2][CK_MAXBYTES];
  uint8_t want[CT_NTENSORS][CK_MAXBYTES]; /* the params' bytes after a load */
  int n;
} Ckpt;

static size_t st_size(const char *dt) {
  return !strcmp(dt, "F32") || !strcmp(dt, "I32") ? 4 : !strcmp(dt, "I64") ? 8 : 2;
}

/* f16 values worth a look: zeros, the smallest and largest subnormals, the smallest normal, the
 * largest finite, infinities and a NaN, then random finite ones. */
static const uint16_t f16_special[] = {0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x7bff,
                                       0x7c00, 0xfc00, 0x7e00, 0x3c00, 0xc000};

/* The checkpoint tensor of each binding in dtype dts[j], and the params it makes. */
static void make_ckpt(const CkModel *ck, const char *const dts[CT_NBINDINGS], Ckpt *c) {
  memset(c, 0, sizeof *c);
  c->n = CT_NBINDINGS;
  for (int j = 0; j < CT_NBINDINGS; j++) {
    const MlkBinding *b = &ck->bindings[j];
    MlkDType pd = ck->tensors[b->tensor].dtype;
    size_t numel = 1, ss = st_size(dts[j]), ps = mlk_dtype_size(pd);
    for (int r = 0; r < b->rank; r++)
      numel *= (size_t)b->shape[r];
    c->t[j] = (StT){b->name, dts[j], b->rank, {b->shape[0], b->shape[1], b->shape[2], b->shape[3]},
                    c->src[j], numel * ss};
    for (size_t i = 0; i < numel; i++) {
      uint8_t *s = c->src[j] + i * ss, *w = c->want[b->tensor] + ((size_t)b->offset + i) * ps;
      double v;
      if (!strcmp(dts[j], "BF16")) {
        uint16_t h = mlk_f32_to_bf16(rt_uniform(2.0f));
        uint32_t u = (uint32_t)h << 16;
        float f;
        memcpy(&f, &u, 4);
        memcpy(s, &h, 2);
        v = f;
      } else if (!strcmp(dts[j], "F16")) {
        uint16_t h = i < sizeof f16_special / sizeof *f16_special
                         ? f16_special[i]
                         : (uint16_t)(rt_next() % 0x7c00u) | (uint16_t)(rt_next() & 0x8000u);
        memcpy(s, &h, 2);
        v = st_f16_value(h);
      } else if (!strcmp(dts[j], "F32")) {
        float f = i == 1 ? 1e-30f : i == 2 ? 3.0e38f : rt_uniform(3.0f);
        memcpy(s, &f, 4);
        v = f;
      } else { /* I32 */
        int32_t x = (int32_t)(rt_next() >> 33) - (1 << 29);
        memcpy(s, &x, 4);
        memcpy(w, &x, 4);
        continue;
      }
      if (pd == MLK_F32) {
        float f = (float)v;
        memcpy(w, &f, 4);
      } else if (pd == MLK_BF16 && strcmp(dts[j], "BF16")) {
        uint16_t h = mlk_f32_to_bf16((float)v);
        memcpy(w, &h, 2);
      } else {
        memcpy(w, s, ss); /* as it is */
      }
    }
  }
}

/* The params of `m` hold what `c` should have made: bytes equal, except that any NaN matches any
 * NaN (a NaN keeps its payload's top bits, which a reference through double does not). */
static void check_params(mlk_model *m, const CkModel *ck, const Ckpt *c, const char *what) {
  for (int t = 0; t < CT_NTENSORS; t++) {
    const MlkTensorDesc *td = &ck->tensors[t];
    if (td->kind != MLK_TENSOR_PARAM || t == CT_FREE)
      continue;
    uint8_t got[CK_MAXBYTES];
    size_t es = mlk_dtype_size(td->dtype);
    CHECK_OK(mlk_model_get_tensor(m, t, got, (size_t)td->numel * es));
    int bad = 0;
    for (int64_t i = 0; i < td->numel && bad < 3; i++) {
      const uint8_t *g = got + i * es, *w = c->want[t] + i * es;
      if (!memcmp(g, w, es))
        continue;
      if (td->dtype == MLK_BF16 || td->dtype == MLK_F32) {
        float gf, wf;
        if (td->dtype == MLK_BF16) {
          uint16_t gh, wh;
          memcpy(&gh, g, 2);
          memcpy(&wh, w, 2);
          gf = mlk_bf16_to_f32(gh);
          wf = mlk_bf16_to_f32(wh);
        } else {
          memcpy(&gf, g, 4);
          memcpy(&wf, w, 4);
        }
        if (isnan(gf) && isnan(wf))
          continue;
        CHECK(0, "%s: param '%s' element %lld is %g, expected %g", what, td->name, (long long)i,
              (double)gf, (double)wf);
      } else {
        CHECK(0, "%s: param '%s' element %lld differs", what, td->name, (long long)i);
      }
      bad++;
    }
  }
}

static mlk_model *new_model(mlk_backend *be, const CkModel *ck) {
  mlk_model *m = NULL;
  CHECK_OK(mlk_model_create(be, &ck->desc, &m));
  for (int t = 0; m && t < CT_NTENSORS; t++)
    if (ck->tensors[t].kind == MLK_TENSOR_PARAM)
      CHECK_OK(mlk_model_fill_tensor(m, t, 0xab));
  return m;
}

static const char *const dts_a[CT_NBINDINGS] = {"BF16", "F32", "F16",  "F16", "BF16", "F32",
                                                "F16",  "BF16", "F32", "I32", "F16"};
static const char *const dts_b[CT_NBINDINGS] = {"F32", "F16", "BF16", "BF16", "F32", "F16",
                                                "F32", "F16", "BF16", "I32",  "F16"};

static void test_load_file(mlk_backend *be) {
  CkModel ck;
  ck_init(&ck);
  Ckpt c;
  make_ckpt(&ck, dts_a, &c);
  /* in the file in another order than the bindings' */
  StT shuffled[CT_NBINDINGS];
  for (int j = 0; j < CT_NBINDINGS; j++)
    shuffled[j] = c.t[(j * 5 + 3) % CT_NBINDINGS];
  st_write(pth("model.safetensors"), shuffled, CT_NBINDINGS,
           "\"__metadata__\": {\"format\": \"pt\"}");
  mlk_model *m = new_model(be, &ck);
  if (!m)
    return;
  CHECK_OK(mlk_model_load_checkpoint(m, pth("model.safetensors"), NULL));
  check_params(m, &ck, &c, "single file");
  uint8_t free_bytes[6];
  CHECK_OK(mlk_model_get_tensor(m, CT_FREE, free_bytes, sizeof free_bytes));
  CHECK(free_bytes[0] == 0xab && free_bytes[5] == 0xab, "param 'free' (no binding) was changed");
  float x[4] = {1, -2, 3, -4}, y[4];
  CHECK_OK(mlk_model_set_tensor(m, CT_X, x, sizeof x));
  if (!ck_no_kernel) {
    CHECK_OK(mlk_model_run(m, 0));
    CHECK_OK(mlk_model_get_tensor(m, CT_Y, y, sizeof y));
    CHECK(y[0] == 1 && y[1] == 0 && y[2] == 3 && y[3] == 0, "the model runs after a load");
  }
  mlk_model_free(m);

  /* the directory holding model.safetensors; a staging buffer of one element (8 bytes: 2 f32) */
  make_ckpt(&ck, dts_b, &c);
  st_write(pth("model.safetensors"), c.t, CT_NBINDINGS, NULL);
  m = new_model(be, &ck);
  mlk_load_options o = {.staging_bytes = 8};
  CHECK_OK(mlk_model_load_checkpoint(m, dir, &o));
  check_params(m, &ck, &c, "directory, staging of 8 bytes");
  o.staging_bytes = 7;
  CHECK_ST(mlk_model_load_checkpoint(m, dir, &o), MLK_ERR_INVALID);
  CHECK_CONTAINS(mlk_last_error(), "staging_bytes is 7, at least 8");

  /* a header of odd length: the data section, and every tensor in it, is unaligned */
  size_t hlen;
  char *h = st_header(c.t, CT_NBINDINGS, NULL, &hlen);
  uint8_t data[CT_NBINDINGS * CK_MAXBYTES];
  size_t n = 0;
  for (int j = 0; j < CT_NBINDINGS; j++) {
    memcpy(data + n, c.t[j].data, c.t[j].bytes);
    n += c.t[j].bytes;
  }
  char *h1 = malloc(hlen + 2);
  memcpy(h1, h, hlen);
  h1[hlen] = ' ';
  st_raw(pth("odd.safetensors"), hlen + 1, h1, hlen + 1, data, n);
  CHECK_OK(mlk_model_fill_tensor(m, CT_WQKV, 0));
  CHECK_OK(mlk_model_load_checkpoint(m, pth("odd.safetensors"), NULL));
  check_params(m, &ck, &c, "unaligned data");
  free(h1);
  free(h);
  mlk_model_free(m);
  remove(pth("model.safetensors"));
  remove(pth("odd.safetensors"));
}

/* c's tensors in two shards (the first `split` in one) and an index. */
static void write_shards(const Ckpt *c, int split, const char *index) {
  st_write(pth("model-00001-of-00002.safetensors"), c->t, split, NULL);
  st_write(pth("model-00002-of-00002.safetensors"), c->t + split, c->n - split, NULL);
  const char *names[CT_NBINDINGS + 2], *files[CT_NBINDINGS + 2];
  for (int j = 0; j < c->n; j++) {
    names[j] = c->t[j].name;
    files[j] = j < split ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  st_index(pth(index), names, files, c->n);
}

static void test_load_shards(mlk_backend *be) {
  CkModel ck;
  ck_init(&ck);
  Ckpt c;
  make_ckpt(&ck, dts_b, &c);
  write_shards(&c, 4, "model.safetensors.index.json");
  mlk_model *m = new_model(be, &ck);
  if (!m)
    return;
  CHECK_OK(mlk_model_load_checkpoint(m, pth("model.safetensors.index.json"), NULL));
  check_params(m, &ck, &c, "index");
  /* a directory with an index takes it, even next to a model.safetensors */
  make_ckpt(&ck, dts_a, &c);
  write_shards(&c, 7, "model.safetensors.index.json");
  st_bytes(pth("model.safetensors"), "junk", 4);
  CHECK_OK(mlk_model_load_checkpoint(m, dir, NULL));
  check_params(m, &ck, &c, "directory with an index");
  mlk_model_free(m);
}

/* ---- refusals ---- */

static mlk_model *bad_m;     /* loaded from `good` before the cases: must stay so */
static CkModel bad_ck;
static Ckpt good;

static void expect_refused(const char *path, const mlk_load_options *o, mlk_status want,
                           const char *needle1, const char *needle2, int line) {
  mlk_status st = mlk_model_load_checkpoint(bad_m, path, o);
  const char *msg = mlk_last_error();
  CHECK(st == want, "line %d: got %s, expected %s: %s", line, mlk_status_name(st),
        mlk_status_name(want), msg);
  CHECK(strstr(msg, needle1) != NULL, "line %d: '%s' does not contain '%s'", line, msg, needle1);
  if (needle2)
    CHECK(strstr(msg, needle2) != NULL, "line %d: '%s' does not contain '%s'", line, msg, needle2);
  check_params(bad_m, &bad_ck, &good, "after a refused checkpoint");
}
#define REFUSED(path, want, n1, n2) expect_refused((path), NULL, (want), (n1), (n2), __LINE__)

/* A file of header `h` (its length as the header length) and `n` zero bytes of data. */
static const char *bad_header(const char *h, size_t n) {
  static uint8_t zeros[64];
  const char *p = pth("bad.safetensors");
  st_raw(p, strlen(h), h, strlen(h), zeros, n);
  return p;
}

#define A_BF16_2 "\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}"

static void test_bad_files(void) {
  const char *p = pth("bad.safetensors"), *in = "'%s'";
  char quoted[700];
  snprintf(quoted, sizeof quoted, in, p); /* messages name the file as given, quoted */
  st_bytes(p, "\x10\0\0\0\0", 5);
  REFUSED(p, MLK_ERR_INVALID, quoted, "is truncated: 5 bytes");
  st_bytes(p, "", 0);
  REFUSED(p, MLK_ERR_INVALID, quoted, "is truncated: 0 bytes");
  st_raw(p, 1000, "{}      ", 8, NULL, 0);
  REFUSED(p, MLK_ERR_INVALID, quoted, "the header length 1000 is beyond the file's 16 bytes");
  st_raw(p, UINT64_MAX, "{}      ", 8, NULL, 0);
  REFUSED(p, MLK_ERR_INVALID, quoted, "the header length 18446744073709551615 is beyond");
  REFUSED(bad_header("not json", 0), MLK_ERR_INVALID, quoted, "the header is not valid JSON");
  REFUSED(bad_header("[1, 2]", 0), MLK_ERR_INVALID, quoted, "the header is an array, expected a JSON object");
  REFUSED(bad_header("{\"a\": {\"dtype\": \"BF", 0), MLK_ERR_INVALID, quoted, "not valid JSON");
  REFUSED(bad_header("{" A_BF16_2 "} x", 4), MLK_ERR_INVALID, quoted, "not valid JSON");
  REFUSED(bad_header("{" A_BF16_2 "," A_BF16_2 "}", 4), MLK_ERR_INVALID, quoted,
          "duplicate object key near '\"a\"'");
  REFUSED(bad_header("{\"a\": 3}", 0), MLK_ERR_INVALID, quoted,
          "tensor 'a': its entry is an integer, expected an object");
  REFUSED(bad_header("{\"a\":{\"shape\":[2],\"data_offsets\":[0,4]}}", 4), MLK_ERR_INVALID,
          quoted, "tensor 'a' has no dtype");
  REFUSED(bad_header("{\"a\":{\"dtype\":\"BF16\",\"data_offsets\":[0,4]}}", 4), MLK_ERR_INVALID,
          quoted, "tensor 'a' has no shape");
  REFUSED(bad_header("{\"a\":{\"dtype\":\"BF16\",\"shape\":[2]}}", 4), MLK_ERR_INVALID, quoted,
          "tensor 'a' has no data_offsets");
  REFUSED(bad_header("{\"a\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,4]}}", 4),
          MLK_ERR_INVALID, quoted, "tensor 'a': dtype is an integer");
  REFUSED(bad_header("{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4),
          MLK_ERR_INVALID, quoted, "tensor 'a': unknown dtype 'Q4'");
  REFUSED(bad_header("{\"a\":{\"dtype\":\"BF16\",\"shape\":\"2\",\"data_offsets\":[0,4]}}", 4),
          MLK_ERR_INVALID, quoted, "tensor 'a': shape is a string");
  REFUSED(bad_header("{\"a\":{\"dtype\":\"BF16\",\"shape\":[-2],\"data_offsets\":[0,4]}}", 4),
          MLK_ERR_INVALID, quoted, "tensor 'a': shape[0] is negative");
  REFUSED(bad_header("{\"a\":{\"dtype\":\"BF16\",\"shape\":[2.0],\"data_offsets\":[0,4]}}", 4),
          MLK_ERR_INVALID, quoted, "tensor 'a': shape[0] is a number");
  REFUSED(bad_header("{\"a\":{\"dtype\":\"BF16\",\"shape\":[1,1,1,1,1,1,1,1,2],"
                     "\"data_offsets\":[0,4]}}", 4),
          MLK_ERR_INVALID, quoted, "tensor 'a': shape is an array too long");
  REFUSED(bad_header("{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0]}}", 4),
          MLK_ERR_INVALID, quoted, "tensor 'a': data_offsets must be an array of two integers");
  REFUSED(bad_header("{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[4,0]}}", 4),
          MLK_ERR_INVALID, quoted, "tensor 'a': data_offsets [4, 0] are outside the data section");
  REFUSED(bad_header("{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 3),
          MLK_ERR_INVALID, quoted, "tensor 'a': data_offsets [0, 4] are outside the data section "
                                   "of 3 bytes (0 <= begin <= end <= 3): the file is truncated");
  REFUSED(bad_header("{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":"
                     "[0,99999999999999999999]}}", 4),
          MLK_ERR_INVALID, quoted, "not valid JSON: too big integer");
  REFUSED(bad_header("{\"a\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,4]},"
                     "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[4,8]}}", 8),
          MLK_ERR_INVALID, quoted, "tensor 'a' is BF16[3], which needs 6 bytes, but its "
                                   "data_offsets [0, 4] hold 4");
  REFUSED(bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],"
                     "\"data_offsets\":[0,4]}}", 4),
          MLK_ERR_INVALID, quoted, "which needs more than the data section's 4 bytes");
  REFUSED(bad_header("{" A_BF16_2 ",\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[2,6]}}",
                     6),
          MLK_ERR_INVALID, quoted, "tensor 'b' (bytes [2, 6) of the data section) overlaps tensor 'a' "
                                   "(bytes [0, 4))");
  REFUSED(bad_header("{\"b\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[2,2]}," A_BF16_2 "}",
                     4),
          MLK_ERR_INVALID, quoted, "tensor 'b' (bytes [2, 2) of the data section) overlaps tensor 'a'");
  REFUSED(bad_header("{" A_BF16_2 ",\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[6,10]}}",
                     10),
          MLK_ERR_INVALID, quoted, "bytes [4, 6) of the data section, before tensor 'b', belong to "
                                   "no tensor");
  REFUSED(bad_header("{" A_BF16_2 "}", 8), MLK_ERR_INVALID, quoted,
          "the data section has 8 bytes, its tensors end at byte 4");
  REFUSED(bad_header("{\"__metadata__\": 3}", 0), MLK_ERR_INVALID, quoted,
          "__metadata__ is an integer, expected an object of strings");
  REFUSED(bad_header("{\"__metadata__\": {\"format\": 1}}", 0), MLK_ERR_INVALID, quoted,
          "__metadata__ 'format' is an integer, expected a string");
  REFUSED(bad_header("{\"\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4),
          MLK_ERR_INVALID, quoted, "a tensor has an empty name");
  REFUSED(bad_header("{\"a\\u0000b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4),
          MLK_ERR_INVALID, quoted, "not valid JSON");
  /* well-formed but nothing the model binds, then only some of it */
  REFUSED(bad_header("{}", 0), MLK_ERR_INVALID, quoted, "tensor 'l.0.q' is missing (param 'wqkv' of "
                                                       "model 'ck' binds it)");
  REFUSED(pth("no-such-file.safetensors"), MLK_ERR_IO, "stat(checkpoint '", "no-such-file.safetensors"
          "') failed: No such file or directory");
  const char *empty = pth("empty");
  CHECK(mkdir(empty, 0755) == 0, "mkdir %s", empty);
  REFUSED(empty, MLK_ERR_IO, "checkpoint directory '", "' has neither model.safetensors.index.json "
                                                       "nor model.safetensors");
  remove(empty);
}

/* The good checkpoint with one change: tensor j renamed, reshaped or of another dtype. */
static const char *variant(int j, const char *name, const char *dtype, int rank, int64_t d0,
                           int64_t d1, const StT *extra) {
  StT t[CT_NBINDINGS + 1];
  int n = 0;
  uint8_t big[CK_MAXBYTES * 2] = {0};
  for (int i = 0; i < CT_NBINDINGS; i++) {
    t[n] = good.t[i];
    if (i == j) {
      if (!name)
        continue; /* dropped */
      t[n].name = name;
      if (dtype) {
        t[n].dtype = dtype;
        t[n].bytes = t[n].bytes / st_size(good.t[i].dtype) * st_size(dtype);
        t[n].data = big;
      }
      if (rank) {
        t[n].rank = rank;
        t[n].shape[0] = d0;
        t[n].shape[1] = d1;
      }
    }
    n++;
  }
  if (extra)
    t[n++] = *extra;
  const char *p = pth("variant.safetensors");
  st_write(p, t, n, NULL);
  return p;
}

static void test_bad_bindings(void) {
  char q[700];
  snprintf(q, sizeof q, "checkpoint '%s'", pth("variant.safetensors"));
  REFUSED(variant(5, NULL, NULL, 0, 0, 0, NULL), MLK_ERR_INVALID, q,
          "tensor 'l.1.v' is missing (param 'wqkv' of model 'ck' binds it)");
  REFUSED(variant(5, "l.1.w", NULL, 0, 0, 0, NULL), MLK_ERR_INVALID, q, "tensor 'l.1.v' is missing");
  REFUSED(variant(1, "l.0.k", NULL, 2, 4, 2, NULL), MLK_ERR_INVALID, q,
          "tensor 'l.0.k' has shape [4, 2], param 'wqkv' of model 'ck' expects [2, 4]");
  REFUSED(variant(6, "l.0.norm", NULL, 2, 1, 4, NULL), MLK_ERR_INVALID, q,
          "tensor 'l.0.norm' has shape [1, 4], param 'ln' of model 'ck' expects [4]");
  REFUSED(variant(8, "embed", "I64", 0, 0, 0, NULL), MLK_ERR_INVALID, q,
          "tensor 'embed' is I64, which cannot be loaded into param 'emb' (bf16): expected BF16, F16 "
          "or F32");
  REFUSED(variant(9, "ids", "F32", 0, 0, 0, NULL), MLK_ERR_INVALID, q,
          "tensor 'ids' is F32, which cannot be loaded into param 'ids' (i32): expected the param's "
          "own dtype");
  REFUSED(variant(10, "half", "F32", 0, 0, 0, NULL), MLK_ERR_INVALID, q,
          "tensor 'half' is F32, which cannot be loaded into param 'half' (f16)");
  static const uint16_t lm[8];
  StT extra = {"lm_head.weight", "BF16", 2, {2, 4}, lm, sizeof lm};
  const char *p = variant(-1, NULL, NULL, 0, 0, 0, &extra);
  REFUSED(p, MLK_ERR_INVALID, q, "tensor 'lm_head.weight' is bound to no param of model 'ck', which "
                                 "would ignore it");
  mlk_load_options o = {.allow_unused = 1};
  CHECK_OK(mlk_model_load_checkpoint(bad_m, p, &o));
  check_params(bad_m, &bad_ck, &good, "with an unused tensor allowed");
}

static void test_bad_index(void) {
  const char *ix = pth("bad.index.json"), *s1 = "model-00001-of-00002.safetensors";
  char q[700];
  snprintf(q, sizeof q, "checkpoint '%s'", ix);
  write_shards(&good, 5, "bad.index.json");
  CHECK_OK(mlk_model_load_checkpoint(bad_m, ix, NULL)); /* the baseline loads */
  st_text(ix, "{\"weight_map\": ");
  REFUSED(ix, MLK_ERR_INVALID, q, "the index is not valid JSON");
  st_text(ix, "[]");
  REFUSED(ix, MLK_ERR_INVALID, q, "the index is an array, expected a JSON object");
  st_text(ix, "{\"metadata\": {}}");
  REFUSED(ix, MLK_ERR_INVALID, q, "the index has no \"weight_map\"");
  st_text(ix, "{\"weight_map\": []}");
  REFUSED(ix, MLK_ERR_INVALID, q, "the index has a \"weight_map\" that is an array");
  st_text(ix, "{\"weight_map\": {}}");
  REFUSED(ix, MLK_ERR_INVALID, q, "the index's weight_map is empty");
  st_text(ix, "{\"weight_map\": {\"l.0.q\": 1}}");
  REFUSED(ix, MLK_ERR_INVALID, q, "tensor 'l.0.q' is mapped to an integer, expected the name of a "
                                  "file in the checkpoint's directory");
  st_text(ix, "{\"weight_map\": {\"l.0.q\": \"../model.safetensors\"}}");
  REFUSED(ix, MLK_ERR_INVALID, q, "tensor 'l.0.q' is mapped to '../model.safetensors'");
  st_text(ix, "{\"weight_map\": {\"l.0.q\": \"a/../../x\"}}");
  REFUSED(ix, MLK_ERR_INVALID, q, "mapped to 'a/../../x'");
  st_text(ix, "{\"weight_map\": {\"l.0.q\": \"/etc/passwd\"}}");
  REFUSED(ix, MLK_ERR_INVALID, q, "mapped to '/etc/passwd'");
  st_text(ix, "{\"weight_map\": {\"l.0.q\": \"\"}}");
  REFUSED(ix, MLK_ERR_INVALID, q, "mapped to ''");
  st_text(ix, "{\"weight_map\": {\"l.0.q\": \"a.safetensors\", \"l.0.q\": \"b.safetensors\"}}");
  REFUSED(ix, MLK_ERR_INVALID, q, "duplicate object key near '\"l.0.q\"'");
  st_text(ix, "{\"weight_map\": {\"l.0.q\": \"missing.safetensors\"}}");
  REFUSED(ix, MLK_ERR_IO, "open(checkpoint '", "missing.safetensors') failed: No such file");
  /* the index against the shards */
  const char *names[CT_NBINDINGS + 1], *files[CT_NBINDINGS + 1];
  for (int j = 0; j < CT_NBINDINGS; j++) {
    names[j] = good.t[j].name;
    files[j] = j < 5 ? s1 : "model-00002-of-00002.safetensors";
  }
  files[6] = s1; /* l.0.norm is in the second shard */
  st_index(ix, names, files, CT_NBINDINGS);
  REFUSED(ix, MLK_ERR_INVALID, q, "tensor 'l.0.norm' is in '");
  CHECK_CONTAINS(mlk_last_error(), "model-00002-of-00002.safetensors', but the index maps it to '");
  files[6] = "model-00002-of-00002.safetensors";
  names[CT_NBINDINGS] = "lm_head.weight";
  files[CT_NBINDINGS] = s1;
  st_index(ix, names, files, CT_NBINDINGS + 1);
  REFUSED(ix, MLK_ERR_INVALID, q, "tensor 'lm_head.weight' is missing from '");
  CHECK_CONTAINS(mlk_last_error(), "model-00001-of-00002.safetensors', where the index maps it");
  /* a tensor in two shards */
  StT both[6];
  for (int j = 0; j < 5; j++)
    both[j] = good.t[j];
  both[5] = good.t[8];
  st_write(pth(s1), both, 6, NULL);
  st_index(ix, names, files, CT_NBINDINGS);
  REFUSED(ix, MLK_ERR_INVALID, q, "tensor 'embed' is in both '");
  /* a broken shard is reported as that file */
  st_bytes(pth(s1), "abc", 3);
  char q1[700];
  snprintf(q1, sizeof q1, "checkpoint '%s' is truncated: 3 bytes", pth(s1));
  REFUSED(ix, MLK_ERR_INVALID, q1, NULL);
}

static void test_refusals(mlk_backend *be) {
  ck_init(&bad_ck);
  make_ckpt(&bad_ck, dts_a, &good);
  st_write(pth("good.safetensors"), good.t, good.n, NULL);
  bad_m = new_model(be, &bad_ck);
  if (!bad_m)
    return;
  CHECK_OK(mlk_model_load_checkpoint(bad_m, pth("good.safetensors"), NULL));
  check_params(bad_m, &bad_ck, &good, "the baseline");
  test_bad_files();
  test_bad_bindings();
  test_bad_index();
  CHECK_ST(mlk_model_load_checkpoint(NULL, dir, NULL), MLK_ERR_INVALID);
  CHECK_ST(mlk_model_load_checkpoint(bad_m, NULL, NULL), MLK_ERR_INVALID);
  mlk_model_free(bad_m);
  /* a model without bindings has nothing to load */
  bad_ck.desc.nbindings = 0;
  mlk_model *m = new_model(be, &bad_ck);
  CHECK_ST(mlk_model_load_checkpoint(m, pth("good.safetensors"), NULL), MLK_ERR_INVALID);
  CHECK_CONTAINS(mlk_last_error(), "model 'ck' has no param bound to checkpoint tensors");
  mlk_model_free(m);
}

/* Usage: runtime_ckpt [gpu]. With "gpu", the same on the GPU backend (CTest runs it against the
 * fake driver of tests/runtime/fake_cuda.c: uploads at an offset, cuMemcpyHtoD from the mapping),
 * without the model's kernel; exits 77 when no GPU backend can be made. */
int main(int argc, char **argv) {
  rt_watchdog(120);
  rt_seed();
  mlk_sim_options so = {.threads = 2};
  mlk_backend *be = NULL;
  if (argc > 1 && !strcmp(argv[1], "gpu")) {
    ck_no_kernel = 1;
    if (mlk_backend_create(MLK_BACKEND_GPU, &be) != MLK_OK) {
      printf("SKIP: %s\n", mlk_last_error());
      return 77;
    }
    printf("backend: %s\n", mlk_backend_name(be));
  } else {
    CHECK_OK(mlk_backend_create_cpu(&so, &be));
  }
  if (!be)
    return rt_finish("runtime_ckpt");
  dir = st_tmpdir();
  test_binding_validation(be);
  test_load_file(be);
  test_load_shards(be);
  test_refusals(be);
  st_rmdir(dir);
  mlk_backend_free(be);
  return rt_finish("runtime_ckpt");
}
