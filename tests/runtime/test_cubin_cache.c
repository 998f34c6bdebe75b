/* test_cubin_cache.c: the compiled-cubin disk cache of the GPU backend, against the fake libcuda.
 *
 * CTest runs it with the fake libcuda.so.1 (fake_cuda.c) first on LD_LIBRARY_PATH; the fake's call
 * counters (fake_cuda_stats, found with dlsym) show whether a model was compiled with the driver's
 * linker or loaded from the cache. Every case uses its own directory under a mkdtemp root, removed
 * at the end. Checked: a first create compiles and writes <dir>/<32 hex>.cubin (creating the
 * directories, 0755), the second loads it without linking and runs; another PTX, target or driver
 * version is another file; a corrupt, truncated, misplaced or garbage file and one the driver
 * refuses are replaced; an unwritable cache (a file in the way, a directory where the file goes)
 * only costs the compile; MLK_CACHE_DIR=off, XDG_CACHE_HOME and HOME choose as documented; a PTX
 * error reports the JIT log and caches nothing; a failing linker falls back to cuModuleLoadDataEx;
 * no temporary file is ever left behind; the hash is FNV-1a 128; a built-in cubin (mlkc --cubin)
 * loads without compile or cache, MLK_BUILTIN_CUBIN=0 ignores it, and one the driver refuses
 * falls back to the PTX. If the real driver was loaded
 * instead, it says so and exits 77.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <ftw.h>
#include <sys/stat.h>

#include "fake_cuda.h"
#include "internal.h"
#include "rt_test.h"

static struct FakeCudaStats *fake;

enum { N = 1000, TRAILER = 56 };

static const MlkTensorDesc tensors[] = {
    {"a", MLK_F32, MLK_TENSOR_INPUT, 1, {N, 0, 0, 0}, N, NULL, 0},
    {"u", MLK_F32, MLK_TENSOR_TEMP, 1, {N, 0, 0, 0}, N, NULL, 0},
    {"v", MLK_F32, MLK_TENSOR_OUTPUT, 1, {N, 0, 0, 0}, N, NULL, 0},
};
static const MlkOpDesc ops[] = {
    RT_OP_EV("relu@cache:1", MLK_OP_ELTWISE, MLK_FN_RELU, 1, 0, -1, -1, N, 0, 64, 16, 0, 0, 0, 1),
    RT_OP_EV("add@cache:2", MLK_OP_ELTWISE, MLK_FN_ADD, 2, 1, 0, -1, N, 0, 100, 10, 0, 1, 0, 0),
};
static const MlkEventDesc events[] = {{"u: relu@cache:1 -> add@cache:2", 0, 1, 1, MLK_MAP_TILE, N, 64, 100, 0, 10, 0, 0}};
static const int refs[] = {0}; /* add waits on, relu notifies event 0 */
static MlkKernelDesc kernel90 = {"fwd", "k90", 0, 2, MLK_SCHED_STATIC, NULL, 0, 0, 1};
static MlkKernelDesc kernel80 = {"fwd", "k80", 0, 2, MLK_SCHED_STATIC, NULL, 0, 0, 1};

static MlkModelDesc desc(const char *sm90a, const char *sm80) {
  return (MlkModelDesc){.abi = MLK_DESC_ABI, .name = "cache_test", .source = "cache.mlk",
                        .tensors = tensors, .ntensors = 3, .ops = ops, .nops = 2, .events = events,
                        .nevents = 1, .event_refs = refs, .nevent_refs = 1, .ncounters = 10, .kernels = sm90a ? &kernel90 : &kernel80,
                        .nkernels = 1, .batch_min = 1, .batch_max = 1, .ptx_sm90a = sm90a,
                        .ptx_sm80 = sm80};
}

static const char PTX90[] = "// fake sm_90a PTX\nentry k90;\n";

static char root[256];

static void path_of(char *out, size_t n, const char *sub) { snprintf(out, n, "%s/%s", root, sub); }

/* Points MLK_CACHE_DIR at root/sub (not created) and returns that path. */
static const char *use_dir(const char *sub) {
  static char dir[512];
  path_of(dir, sizeof dir, sub);
  setenv("MLK_CACHE_DIR", dir, 1);
  return dir;
}

/* Files in dir whose name ends with `suffix` (-1: no such directory); *last gets one of them. */
static int count_files(const char *dir, const char *suffix, char *last, size_t n) {
  DIR *d = opendir(dir);
  if (!d)
    return -1;
  int count = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t len = strlen(e->d_name), sl = strlen(suffix);
    if (len >= sl && !strcmp(e->d_name + len - sl, suffix)) {
      count++;
      if (last)
        snprintf(last, n, "%s/%s", dir, e->d_name);
    }
  }
  closedir(d);
  return count;
}

/* No temporary files anywhere under root. */
static int tmp_files;
static int find_tmp(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  if (strstr(path, ".cubin.tmp."))
    tmp_files++, fprintf(stderr, "left behind: %s\n", path);
  return 0;
}

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}

static unsigned char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  unsigned char *buf = NULL;
  *n = 0;
  if (!f)
    return NULL;
  struct stat sb;
  if (!fstat(fileno(f), &sb) && (buf = malloc((size_t)sb.st_size + 1)) &&
      fread(buf, 1, (size_t)sb.st_size, f) == (size_t)sb.st_size)
    *n = (size_t)sb.st_size;
  fclose(f);
  return buf;
}

static void spill(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  CHECK(f && fwrite(data, 1, n, f) == n, "writing %s", path);
  if (f)
    fclose(f);
}

typedef struct Seen {
  int compiled, loaded; /* linker runs, cuModuleLoadData calls */
} Seen;

/* Creates (and frees) a model of `d`: it must load, with the cache flag `hit` and a load note that
 * starts with `note`. Returns what the fake saw. The note is copied to `out` when not NULL. */
static Seen create(mlk_backend *be, MlkModelDesc d, int hit, const char *note, char *out, size_t on) {
  struct FakeCudaStats before = *fake;
  mlk_model *m;
  Seen s = {0, 0};
  CHECK_OK(mlk_model_create(be, &d, &m));
  if (!m)
    return s;
  s.compiled = fake->link_complete - before.link_complete;
  s.loaded = fake->load_data - before.load_data;
  CHECK(mlk_model_cache_hit(m) == hit, "cache hit %d, expected %d (%s)", mlk_model_cache_hit(m), hit,
        mlk_model_load_note(m));
  CHECK(!strncmp(mlk_model_load_note(m), note, strlen(note)), "load note '%s' does not start with '%s'",
        mlk_model_load_note(m), note);
  CHECK(mlk_model_load_ms(m) > 0 && mlk_model_load_ms(m) < 60000, "load time %g ms", mlk_model_load_ms(m));
  CHECK(fake->link_live == 0, "%d link states not destroyed", fake->link_live);
  printf("  module load: %.3f ms (%s)\n", mlk_model_load_ms(m), mlk_model_load_note(m));
  if (out)
    snprintf(out, on, "%s", mlk_model_load_note(m));
  mlk_model_free(m);
  return s;
}

#define CHECK_SEEN(seen, c, l)                                                                    \
  do {                                                                                            \
    Seen s_ = (seen);                                                                             \
    CHECK(s_.compiled == (c) && s_.loaded == (l), "linked %d times, loaded %d cubins; expected %d, %d", \
          s_.compiled, s_.loaded, (c), (l));                                                      \
  } while (0)

/* The loaded module runs (the fake emulates relu then add). */
static void check_runs(mlk_model *m, const char *what) {
  float a[N], v[N];
  for (int i = 0; i < N; i++)
    a[i] = (float)(i % 7) - 3.0f;
  CHECK_OK(mlk_model_set_tensor(m, 0, a, sizeof a));
  CHECK_OK(mlk_model_run(m, 0));
  CHECK_OK(mlk_model_get_tensor(m, 2, v, sizeof v));
  int bad = 0;
  for (int i = 0; i < N; i++)
    bad += v[i] != (a[i] > 0 ? a[i] : 0) + a[i];
  CHECK(bad == 0, "%d wrong outputs from %s", bad, what);
}

/* Miss, then hit; the file's name, place, mode, contents; a run of the module from the cache. */
static void test_miss_then_hit(mlk_backend *be, char *file, size_t fn) {
  const char *dir = use_dir("c1/nested"); /* neither exists yet */
  char note[600], want[700];
  Seen s = create(be, desc(PTX90, NULL), 0, "compiled, cached in ", note, sizeof note);
  CHECK_SEEN(s, 1, 1);
  CHECK(count_files(dir, ".cubin", file, fn) == 1, "expected one cubin in %s", dir);
  snprintf(want, sizeof want, "compiled, cached in %s", file);
  CHECK(!strcmp(note, want), "note '%s', expected '%s'", note, want);
  const char *base = strrchr(file, '/') + 1;
  CHECK(strlen(base) == 32 + 6 && strspn(base, "0123456789abcdef") == 32, "file name '%s'", base);
  struct stat sb;
  CHECK(!stat(dir, &sb) && (sb.st_mode & 0777) == 0755, "mode of %s is %o", dir, (unsigned)sb.st_mode & 0777);
  size_t n;
  unsigned char *img = slurp(file, &n);
  CHECK(img && n == 10 + sizeof PTX90 + TRAILER && !memcmp(img, "FAKECUBIN\n", 10) &&
            !memcmp(img + 10, PTX90, sizeof PTX90) && !memcmp(img + n - TRAILER, "MLKCUBIN", 8),
        "the cache file (%zu bytes) is not the fake cubin and its trailer", n);
  free(img);

  /* Second create: loaded from the file, the linker not called. */
  s = create(be, desc(PTX90, NULL), 1, "cache hit: ", note, sizeof note);
  CHECK_SEEN(s, 0, 1);
  snprintf(want, sizeof want, "cache hit: %s", file);
  CHECK(!strcmp(note, want), "note '%s', expected '%s'", note, want);

  /* The module from the cache runs. */
  MlkModelDesc d = desc(PTX90, NULL);
  mlk_model *m;
  CHECK_OK(mlk_model_create(be, &d, &m));
  if (m) {
    CHECK(mlk_model_cache_hit(m) == 1, "third create missed: %s", mlk_model_load_note(m));
    check_runs(m, "the cached module");
    mlk_model_free(m);
  }
}

/* A model that carries its cubin (mlkc --cubin): loaded as it is, no compile, no cache file;
 * MLK_BUILTIN_CUBIN=0 compiles the PTX instead; a cubin the driver refuses falls back to the
 * PTX (here the cache that the previous create filled) with the refusal in the note. */
static void test_builtin(mlk_backend *be) {
  const char *dir = use_dir("c9");
  static const unsigned char cubin[] = "FAKECUBIN\n// fake sm_90a PTX\nentry k90;\n";
  MlkModelDesc d = desc(PTX90, NULL);
  d.cubin_sm90a = cubin;
  d.cubin_sm90a_bytes = (int64_t)sizeof cubin;
  char note[600], want[600];
  Seen s = create(be, d, 0, "built-in cubin (", note, sizeof note);
  CHECK_SEEN(s, 0, 1);
  snprintf(want, sizeof want, "built-in cubin (%zu bytes, compiled by mlkc --cubin)", sizeof cubin);
  CHECK(!strcmp(note, want), "note '%s', expected '%s'", note, want);
  CHECK(count_files(dir, ".cubin", NULL, 0) <= 0, "a built-in cubin was cached in %s", dir);
  mlk_model *m;
  CHECK_OK(mlk_model_create(be, &d, &m));
  if (m) {
    CHECK(mlk_model_builtin_cubin(m) == 1 && mlk_model_cache_hit(m) == 0, "built-in %d, cache hit %d",
          mlk_model_builtin_cubin(m), mlk_model_cache_hit(m));
    check_runs(m, "the built-in cubin");
    mlk_model_free(m);
  }

  setenv("MLK_BUILTIN_CUBIN", "0", 1);
  CHECK_SEEN(create(be, d, 0, "compiled, cached in ", NULL, 0), 1, 1);
  setenv("MLK_BUILTIN_CUBIN", "2", 1);
  mlk_status st = mlk_model_create(be, &d, &m);
  CHECK(st == MLK_ERR_INVALID, "MLK_BUILTIN_CUBIN=2 gave %s", mlk_status_name(st));
  CHECK_CONTAINS(mlk_last_error(), "MLK_BUILTIN_CUBIN");
  unsetenv("MLK_BUILTIN_CUBIN");

  fake->reject_cubins = 1;
  s = create(be, d, 1, "cache hit: ", note, sizeof note);
  CHECK_SEEN(s, 0, 2);
  CHECK_CONTAINS(note, "; the driver refused the built-in cubin (cuModuleLoadData: CUDA_ERROR_INVALID_IMAGE");
  CHECK(fake->reject_cubins == 0, "the built-in cubin was not tried");
  if (mlk_model_create(be, &d, &m) == MLK_OK && m) {
    CHECK(mlk_model_builtin_cubin(m) == 1, "the refusal stuck: %s", mlk_model_load_note(m));
    mlk_model_free(m);
  }
}

/* Another PTX, another target, another driver version: another file; the old ones still hit. */
static void test_keys(mlk_backend *be) {
  const char *dir = use_dir("c2");
  CHECK_SEEN(create(be, desc(PTX90, NULL), 0, "compiled, cached in ", NULL, 0), 1, 1);
  CHECK_SEEN(create(be, desc(NULL, "entry k80;"), 0, "compiled, cached in ", NULL, 0), 1, 1);
  CHECK_SEEN(create(be, desc("// other\nentry k90;\n", NULL), 0, "compiled, cached in ", NULL, 0), 1, 1);
  /* The version is read when the backend is created (it cannot change under a process). */
  fake->driver_version = 12090;
  mlk_backend *be2;
  CHECK_OK(mlk_backend_create(MLK_BACKEND_GPU, &be2));
  fake->driver_version = 12080;
  if (be2) {
    CHECK_SEEN(create(be2, desc(PTX90, NULL), 0, "compiled, cached in ", NULL, 0), 1, 1);
    CHECK_SEEN(create(be2, desc(PTX90, NULL), 1, "cache hit: ", NULL, 0), 0, 1);
    mlk_backend_free(be2);
  }
  CHECK_SEEN(create(be, desc(PTX90, NULL), 1, "cache hit: ", NULL, 0), 0, 1);
  CHECK_SEEN(create(be, desc(NULL, "entry k80;"), 1, "cache hit: ", NULL, 0), 0, 1);
  int n = count_files(dir, ".cubin", NULL, 0);
  CHECK(n == 4, "%d cubins in %s, expected 4", n, dir);
}

/* Writes `bad` (n bytes) over `file`, then a create must compile, say why, and restore `good`. */
static void expect_replaced(mlk_backend *be, const char *file, const unsigned char *good, size_t gn,
                            const void *bad, size_t n, const char *why) {
  spill(file, bad, n);
  char note[600];
  CHECK_SEEN(create(be, desc(PTX90, NULL), 0, "compiled, cached in ", note, sizeof note), 1, 1);
  CHECK_CONTAINS(note, why);
  size_t got_n;
  unsigned char *got = slurp(file, &got_n);
  CHECK(got && got_n == gn && !memcmp(got, good, gn), "%s was not rewritten (%zu bytes)", file, got_n);
  free(got);
  CHECK_SEEN(create(be, desc(PTX90, NULL), 1, "cache hit: ", NULL, 0), 0, 1);
}

static void test_bad_files(mlk_backend *be, const char *file) {
  size_t gn;
  unsigned char *good = slurp(file, &gn);
  CHECK(good && gn > TRAILER, "cannot read %s", file);
  if (!good || gn <= TRAILER) {
    free(good);
    return;
  }
  unsigned char *bad = malloc(gn);
  memcpy(bad, good, gn);
  bad[12] ^= 0x20; /* one bit of the cubin */
  expect_replaced(be, file, good, gn, bad, gn, "; the cache file was unusable (checksum mismatch)");
  expect_replaced(be, file, good, gn, good, 10, "; the cache file was unusable (10 bytes is no cached cubin)");
  expect_replaced(be, file, good, gn, good, gn - 1, "; the cache file was unusable (no trailer of cache format 1)");
  memset(bad, 'x', gn);
  expect_replaced(be, file, good, gn, bad, gn, "; the cache file was unusable (no trailer of cache format 1)");
  memcpy(bad, good, gn);
  bad[gn - TRAILER + 24] ^= 1; /* the key in the trailer: a file copied from another name */
  expect_replaced(be, file, good, gn, bad, gn, "; the cache file was unusable (the file was written for another key)");
  memcpy(bad, good, gn);
  bad[gn - TRAILER + 16] ^= 1; /* the payload size */
  expect_replaced(be, file, good, gn, bad, gn, "; the cache file was unusable (the trailer says");
  free(bad);

  /* A file the checksum accepts but the driver refuses (stale, another GPU's): removed, rebuilt. */
  fake->reject_cubins = 1;
  char note[600];
  Seen s = create(be, desc(PTX90, NULL), 0, "compiled, cached in ", note, sizeof note);
  CHECK_SEEN(s, 1, 2);
  CHECK_CONTAINS(note, "; the driver refused the cache file (cuModuleLoadData: CUDA_ERROR_INVALID_IMAGE "
                       "(device kernel image is invalid)), it was removed");
  CHECK(fake->reject_cubins == 0, "the fake still rejects %d cubins", fake->reject_cubins);
  CHECK_SEEN(create(be, desc(PTX90, NULL), 1, "cache hit: ", NULL, 0), 0, 1);
  free(good);
}

/* A cache that cannot be written only costs the compile. */
static void test_unwritable(mlk_backend *be) {
  char blocker[512], dir[600], note[600];
  path_of(blocker, sizeof blocker, "afile");
  spill(blocker, "x", 1);
  snprintf(dir, sizeof dir, "%s/sub", blocker);
  setenv("MLK_CACHE_DIR", dir, 1);
  for (int i = 0; i < 2; i++) {
    CHECK_SEEN(create(be, desc(PTX90, NULL), 0, "compiled, not cached: mkdir ", note, sizeof note), 1, 1);
    char want[700];
    snprintf(want, sizeof want, "compiled, not cached: mkdir %s: Not a directory", dir);
    CHECK(!strcmp(note, want), "note '%s', expected '%s'", note, want);
  }

  /* A directory where the file should be: unreadable, and the rename onto it fails. */
  const char *cdir = use_dir("c5");
  char file[512];
  CHECK_SEEN(create(be, desc(PTX90, NULL), 0, "compiled, cached in ", NULL, 0), 1, 1);
  CHECK(count_files(cdir, ".cubin", file, sizeof file) == 1, "no cubin in %s", cdir);
  CHECK(!remove(file) && !mkdir(file, 0755), "replacing %s by a directory", file);
  for (int i = 0; i < 2; i++) {
    CHECK_SEEN(create(be, desc(PTX90, NULL), 0, "compiled, not cached: rename ", note, sizeof note), 1, 1);
    CHECK_CONTAINS(note, ": Is a directory; the cache file was unusable (not a regular file)");
  }
  struct stat sb;
  CHECK(!stat(file, &sb) && S_ISDIR(sb.st_mode), "%s is no longer the directory", file);

  /* A read-only directory (only meaningful when permissions apply: not as root). */
  if (geteuid() != 0) {
    cdir = use_dir("c6");
    CHECK(!mkdir(cdir, 0555), "mkdir %s", cdir);
    CHECK_SEEN(create(be, desc(PTX90, NULL), 0, "compiled, not cached: open ", note, sizeof note), 1, 1);
    CHECK_CONTAINS(note, "Permission denied");
    chmod(cdir, 0755);
  }
}

/* MLK_CACHE_DIR, XDG_CACHE_HOME, HOME. */
static void test_dirs(mlk_backend *be) {
  char xdg[512], home[512], where[600], note[600];
  path_of(xdg, sizeof xdg, "xdg");
  path_of(home, sizeof home, "home");
  setenv("XDG_CACHE_HOME", xdg, 1);
  setenv("HOME", home, 1);

  setenv("MLK_CACHE_DIR", "off", 1);
  for (int i = 0; i < 2; i++)
    CHECK_SEEN(create(be, desc(PTX90, NULL), 0, "compiled, cache off (MLK_CACHE_DIR=off)", NULL, 0), 1, 1);
  struct stat sb;
  CHECK(stat(xdg, &sb) && stat(home, &sb), "MLK_CACHE_DIR=off wrote into %s or %s", xdg, home);
  CHECK(count_files(root, ".cubin", NULL, 0) == 0, "MLK_CACHE_DIR=off wrote into %s", root);

  setenv("MLK_CACHE_DIR", "", 1); /* empty: as if unset */
  CHECK_SEEN(create(be, desc(PTX90, NULL), 0, "compiled, cached in ", note, sizeof note), 1, 1);
  snprintf(where, sizeof where, "%s/mlkc", xdg);
  CHECK(count_files(where, ".cubin", NULL, 0) == 1, "no cubin in %s (%s)", where, note);
  unsetenv("MLK_CACHE_DIR");
  CHECK_SEEN(create(be, desc(PTX90, NULL), 1, "cache hit: ", NULL, 0), 0, 1);

  setenv("XDG_CACHE_HOME", "relative/ignored", 1); /* not absolute: ignored, as the spec says */
  CHECK_SEEN(create(be, desc(PTX90, NULL), 0, "compiled, cached in ", note, sizeof note), 1, 1);
  snprintf(where, sizeof where, "%s/.cache/mlkc", home);
  CHECK(count_files(where, ".cubin", NULL, 0) == 1, "no cubin in %s (%s)", where, note);
  CHECK(stat("relative", &sb), "a relative XDG_CACHE_HOME was used");
  unsetenv("XDG_CACHE_HOME");
  CHECK_SEEN(create(be, desc(PTX90, NULL), 1, "cache hit: ", NULL, 0), 0, 1);

  setenv("HOME", "", 1);
  CHECK_SEEN(create(be, desc(PTX90, NULL), 0,
                    "compiled, cache off (neither MLK_CACHE_DIR, XDG_CACHE_HOME nor HOME is set)", NULL, 0),
             1, 1);
  unsetenv("HOME");
  CHECK_SEEN(create(be, desc(PTX90, NULL), 0, "compiled, cache off (neither", NULL, 0), 1, 1);
}

/* A PTX error reports the JIT log and caches nothing; a failing linker falls back. */
static void test_errors(mlk_backend *be) {
  const char *dir = use_dir("c7");
  MlkModelDesc d = desc("SYNTAX ERROR", NULL);
  mlk_model *m;
  mlk_status st = mlk_model_create(be, &d, &m);
  CHECK(st == MLK_ERR_CUDA, "got %s: %s", mlk_status_name(st), mlk_last_error());
  CHECK(!strncmp(mlk_last_error(), "gpu.c:", 6), "'%s' has no file:line", mlk_last_error());
  CHECK_CONTAINS(mlk_last_error(), ": cuLinkAddData(sm_90a PTX of model 'cache_test', 12 bytes) failed: "
                                   "CUDA_ERROR_INVALID_PTX (a PTX JIT compilation failed)\nJIT error log:\n"
                                   "ptxas application ptx input, line 3; fatal   : Parsing error near 'SYNTAX'");
  CHECK(fake->link_live == 0, "%d link states not destroyed", fake->link_live);
  CHECK(count_files(dir, ".cubin", NULL, 0) <= 0, "a failed compile was cached in %s", dir);

  fake->fail_link = 1;
  int ex = fake->load_data_ex;
  char note[600];
  CHECK_SEEN(create(be, desc(PTX90, NULL), 0, "compiled, not cached: cuLinkCreate failed "
                    "(CUDA_ERROR_NOT_SUPPORTED (operation not supported)), the PTX was loaded with "
                    "cuModuleLoadDataEx", note, sizeof note), 0, 0);
  CHECK(fake->load_data_ex == ex + 1, "cuModuleLoadDataEx called %d times", fake->load_data_ex - ex);
  CHECK(count_files(dir, ".cubin", NULL, 0) <= 0, "cached without a cubin in %s", dir);
  st = mlk_model_create(be, &d, &m);
  CHECK(st == MLK_ERR_CUDA, "got %s: %s", mlk_status_name(st), mlk_last_error());
  CHECK_CONTAINS(mlk_last_error(), ": cuModuleLoadDataEx(sm_90a PTX of model 'cache_test', 12 bytes) failed: "
                                   "CUDA_ERROR_INVALID_PTX (a PTX JIT compilation failed)\nJIT error log:\n");
  fake->fail_link = 0;
}

/* A PTX of the Llama megakernel's size: what the key hash costs, miss against hit. */
static void test_big(mlk_backend *be) {
  use_dir("c8");
  size_t n = (size_t)2800 * 1024;
  char *ptx = malloc(n + 1);
  memset(ptx, ' ', n);
  memcpy(ptx, "entry k90;\n//", 13);
  ptx[n] = 0;
  MlkModelDesc d = desc(ptx, NULL);
  double ms[2] = {0, 0};
  for (int i = 0; i < 2; i++) {
    mlk_model *m;
    CHECK_OK(mlk_model_create(be, &d, &m));
    if (!m)
      break;
    CHECK(mlk_model_cache_hit(m) == i, "create %d: %s", i, mlk_model_load_note(m));
    ms[i] = mlk_model_load_ms(m);
    mlk_model_free(m);
  }
  printf("  2.8 MB of PTX: module load %.1f ms compiled (fake JIT), %.1f ms from the cache\n", ms[0], ms[1]);
  free(ptx);
}

static void test_hash(void) {
  /* Test vectors of FNV-1a 128 (offset basis and "a" from the FNV reference, "foobar"). */
  const char *in[] = {"", "a", "foobar"};
  const char *want[] = {"6c62272e07bb014262b821756295c58d", "d228cb696f1a8caf78912b704e4a8964",
                        "343e1662793c64bf6f0d3597ba446f18"};
  for (int i = 0; i < 3; i++) {
    MlkHash h;
    char hex[33];
    mlk_hash_init(&h);
    mlk_hash_bytes(&h, in[i], strlen(in[i]));
    mlk_hash_hex(h, hex);
    CHECK(!strcmp(hex, want[i]), "FNV-1a 128 of '%s' is %s, expected %s", in[i], hex, want[i]);
  }
  MlkHash a, b;
  mlk_hash_init(&a);
  mlk_hash_init(&b);
  mlk_hash_field(&a, "ab", 2), mlk_hash_field(&a, "c", 1);
  mlk_hash_field(&b, "a", 1), mlk_hash_field(&b, "bc", 2);
  CHECK(a.hi != b.hi || a.lo != b.lo, "fields run into each other");
}

int main(void) {
  rt_watchdog(60);
  umask(022);
  test_hash();
  mlk_backend *be;
  CHECK_OK(mlk_backend_create(MLK_BACKEND_AUTO, &be));
  if (!be)
    return rt_finish("runtime_gpu_fake_cache");
  void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
  fake = h ? dlsym(h, "fake_cuda_stats") : NULL;
  if (!mlk_backend_is_gpu(be) || !fake) {
    printf("SKIP: the fake libcuda.so.1 was not loaded (%s; %s)\n", mlk_backend_name(be), mlk_backend_note(be));
    mlk_backend_free(be);
    if (h)
      dlclose(h);
    return 77;
  }

  /* The simulator loads nothing. */
  mlk_backend *cpu;
  CHECK_OK(mlk_backend_create_cpu(NULL, &cpu));
  if (cpu) {
    MlkModelDesc d = desc(PTX90, NULL);
    mlk_model *m;
    CHECK_OK(mlk_model_create(cpu, &d, &m));
    if (m) {
      CHECK(mlk_model_load_ms(m) == 0 && mlk_model_cache_hit(m) == 0 && !strcmp(mlk_model_load_note(m), ""),
            "the simulator reports a module load: %g ms, hit %d, '%s'", mlk_model_load_ms(m),
            mlk_model_cache_hit(m), mlk_model_load_note(m));
      mlk_model_free(m);
    }
    mlk_backend_free(cpu);
  }

  const char *tmp = getenv("TMPDIR");
  snprintf(root, sizeof root, "%s/mlk_cubin_cache_XXXXXX", tmp && *tmp ? tmp : "/tmp");
  CHECK(mkdtemp(root) != NULL, "mkdtemp(%s)", root);
  char file[600];
  test_miss_then_hit(be, file, sizeof file);
  test_bad_files(be, file);
  test_keys(be);
  test_unwritable(be);
  test_dirs(be);
  test_errors(be);
  test_big(be);
  test_builtin(be);
  tmp_files = 0;
  nftw(root, find_tmp, 16, FTW_PHYS);
  CHECK(tmp_files == 0, "%d temporary files left behind", tmp_files);
  CHECK(nftw(root, remove_one, 16, FTW_DEPTH | FTW_PHYS) == 0, "removing %s", root);

  mlk_backend_free(be);
  dlclose(h);
  return rt_finish("runtime_gpu_fake_cache");
}
