/* test_gpu_fake.c: the GPU backend's error paths, against the fake libcuda.so.1 (fake_cuda.c).
 *
 * CTest runs it with the fake first on LD_LIBRARY_PATH. Checks the backend name, the choice
 * between sm_90a and sm_80 PTX, the JIT error log in a PTX failure, a missing entry, a model with
 * no usable PTX, the cuMemAlloc out-of-memory message, that device tensors start zeroed, that a
 * KV cache gets its pool (zeroed) and its page table (filled) on the device, and that a kernel
 * compiled for the dynamic schedule is refused, and that the tiles' knobs (MlkDevTune) reach a
 * module that has them. (The cubin cache has its own test,
 * test_cubin_cache.c.)
 * (The launch path itself is covered by running test_gpu against the same fake.) If the real
 * driver was loaded instead, it says so and exits 77.
 */
#include <dlfcn.h>
#include <string.h>

#include "fake_cuda.h"
#include "rt_test.h"

static const MlkTensorDesc tensors[] = {
    {"a", MLK_F32, MLK_TENSOR_INPUT, 1, {1000, 0, 0, 0}, 1000, NULL, 0},
    {"u", MLK_F32, MLK_TENSOR_TEMP, 1, {1000, 0, 0, 0}, 1000, NULL, 0},
    {"v", MLK_F32, MLK_TENSOR_OUTPUT, 1, {1000, 0, 0, 0}, 1000, NULL, 0},
    {"big", MLK_F32, MLK_TENSOR_TEMP, 1, {1 << 29, 0, 0, 0}, 1 << 29, NULL, 0},
};
static const MlkOpDesc ops[] = {
    RT_OP_EV("relu@fake:1", MLK_OP_ELTWISE, MLK_FN_RELU, 1, 0, -1, -1, 1000, 0, 64, 16, 0, 0, 0, 1),
    RT_OP_EV("add@fake:2", MLK_OP_ELTWISE, MLK_FN_ADD, 2, 1, 0, -1, 1000, 0, 100, 10, 0, 1, 0, 0),
};
static const MlkEventDesc events[] = {
    {"u: relu@fake:1 -> add@fake:2", 0, 1, 1, MLK_MAP_TILE, 1000, 64, 100, 0, 10, 0, 0}};

static const int refs[] = {0}; /* add waits on, relu notifies event 0 */
static MlkKernelDesc kernel;

static MlkModelDesc desc(const char *entry, const char *sm90a, const char *sm80) {
  kernel = (MlkKernelDesc){"fwd", entry, 0, 2, MLK_SCHED_STATIC, NULL, 0, 0, 1};
  return (MlkModelDesc){.abi = MLK_DESC_ABI, .name = "fake_test", .source = "fake.mlk",
                        .tensors = tensors, .ntensors = 3, .ops = ops, .nops = 2, .events = events,
                        .nevents = 1, .event_refs = refs, .nevent_refs = 1, .ncounters = 10, .kernels = &kernel, .nkernels = 1,
                        .batch_min = 1, .batch_max = 1, .ptx_sm90a = sm90a, .ptx_sm80 = sm80};
}

/* A model with a KV cache (3 layers, 2 kv heads of 8, pages of 4) and a batch dim 1..2, no ops. */
static void test_cache(mlk_backend *be) {
  static const MlkTensorDesc ct[] = {
      {"kv", MLK_BF16, MLK_TENSOR_CACHE, 0, {0}, 0, NULL, 0},
      {"kv.pages", MLK_I32, MLK_TENSOR_PAGES, 0, {0}, 0, NULL, 0},
      {"x", MLK_F32, MLK_TENSOR_INPUT, 2, {2, 5, 0, 0}, 10, NULL, 1},
  };
  static const MlkCacheDesc cache = {"kv", 0, 1, MLK_BF16, 3, 2, 8, 4};
  MlkModelDesc d = {.abi = MLK_DESC_ABI, .name = "fake_cache", .source = "fake.mlk", .tensors = ct,
                    .ntensors = 3, .caches = &cache, .ncaches = 1, .batch_name = "B",
                    .batch_min = 1, .batch_max = 2};
  setenv("MLK_KV_CONTEXT", "10", 1); /* 3 pages of 4 per sequence, 6 in all */
  mlk_model *m;
  CHECK_OK(mlk_model_create(be, &d, &m));
  unsetenv("MLK_KV_CONTEXT");
  if (!m)
    return;
  size_t pool_bytes = (size_t)3 * 6 * 2 * 2 * 4 * 8 * 2;
  CHECK(mlk_model_tensor_bytes(m, 0) == pool_bytes && mlk_model_tensor_bytes(m, 1) == 6 * 4,
        "cache sizes %zu, %zu", mlk_model_tensor_bytes(m, 0), mlk_model_tensor_bytes(m, 1));
  uint16_t *pool = malloc(pool_bytes);
  int32_t table[6];
  CHECK_OK(mlk_model_get_tensor(m, 0, pool, pool_bytes));
  CHECK_OK(mlk_model_get_tensor(m, 1, table, sizeof table));
  size_t nonzero = 0;
  for (size_t i = 0; i < pool_bytes / 2; i++)
    nonzero += pool[i] != 0;
  CHECK(nonzero == 0, "%zu nonzero elements in a fresh KV cache pool", nonzero);
  for (int p = 0; p < 6; p++)
    CHECK(table[p] == p, "page table [%d] = %d", p, table[p]);
  free(pool);
  mlk_model_free(m);
}

static void expect_create(mlk_backend *be, MlkModelDesc d, mlk_status want, const char *needle) {
  mlk_model *m;
  mlk_status st = mlk_model_create(be, &d, &m);
  CHECK(st == want, "got %s, expected %s: %s", mlk_status_name(st), mlk_status_name(want),
        mlk_last_error());
  if (st == MLK_OK)
    mlk_model_free(m);
  else
    CHECK_CONTAINS(mlk_last_error(), needle);
  printf("  %s: %s\n", mlk_status_name(st), st ? mlk_last_error() : "ok");
}

/* The tiles' knobs (MlkDevTune) go from the environment into a module that has them, after its
 * load; out-of-range settings are refused by name; a module without them loads as before. */
static void test_tune(mlk_backend *be) {
  void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
  struct FakeCudaStats *fake = h ? dlsym(h, "fake_cuda_stats") : NULL;
  CHECK(fake != NULL, "fake_cuda_stats not found");
  if (!fake)
    return;
  const char *tuned = "entry k90;\nconst mlk_dev_tune;\n";
  memset(&fake->tune, 0xff, sizeof fake->tune);
  int lookups = fake->tune_lookups;
  expect_create(be, desc("k90", tuned, NULL), MLK_OK, "");
  MlkDevTune dflt = MLK_DEV_TUNE_DEFAULTS;
  CHECK(fake->tune_lookups == lookups + 1 && !memcmp(&fake->tune, &dflt, sizeof dflt),
        "defaults: %d lookups, backoff %u, l2 ahead %u", fake->tune_lookups - lookups,
        fake->tune.poll_backoff_ns, fake->tune.stream_l2_ahead);
  /* every knob away from its default */
  setenv("MLK_POLL_BACKOFF_NS", "512", 1);
  setenv("MLK_STREAM_L2_AHEAD", "262144", 1);
  setenv("MLK_MMA_STAGE_RING", "0", 1);
  setenv("MLK_MATVEC_SPLIT_CAP", "1", 1);
  expect_create(be, desc("k90", tuned, NULL), MLK_OK, "");
  CHECK(fake->tune.poll_backoff_ns == 512 && fake->tune.stream_l2_ahead == 262144 &&
            fake->tune.mma_stage_ring == 0 && fake->tune.matvec_split_cap == 1,
        "set: backoff %u, l2 ahead %u, mma ring %u, split cap %u", fake->tune.poll_backoff_ns,
        fake->tune.stream_l2_ahead, fake->tune.mma_stage_ring, fake->tune.matvec_split_cap);
  setenv("MLK_MATVEC_SPLIT_CAP", "17", 1);
  expect_create(be, desc("k90", tuned, NULL), MLK_ERR_INVALID, "MLK_MATVEC_SPLIT_CAP");
  unsetenv("MLK_MATVEC_SPLIT_CAP");
  setenv("MLK_MMA_STAGE_RING", "2", 1);
  expect_create(be, desc("k90", tuned, NULL), MLK_ERR_INVALID, "MLK_MMA_STAGE_RING");
  unsetenv("MLK_MMA_STAGE_RING");
  setenv("MLK_STREAM_L2_AHEAD", "-1", 1);
  expect_create(be, desc("k90", tuned, NULL), MLK_ERR_INVALID, "MLK_STREAM_L2_AHEAD");
  setenv("MLK_STREAM_L2_AHEAD", "0", 1);
  setenv("MLK_POLL_BACKOFF_NS", "fast", 1);
  expect_create(be, desc("k90", tuned, NULL), MLK_ERR_INVALID, "MLK_POLL_BACKOFF_NS");
  unsetenv("MLK_POLL_BACKOFF_NS");
  unsetenv("MLK_STREAM_L2_AHEAD");
  memset(&fake->tune, 0xff, sizeof fake->tune);
  expect_create(be, desc("k90", "entry k90;", NULL), MLK_OK, ""); /* no knobs: nothing written */
  CHECK(fake->tune.poll_backoff_ns == 0xffffffffu, "a module without knobs had them written");
  dlclose(h);
}

int main(void) {
  rt_watchdog(60);
  mlk_backend *be;
  mlk_status st = mlk_backend_create(MLK_BACKEND_AUTO, &be);
  CHECK_OK(st);
  if (!be)
    return rt_finish("runtime_gpu_fake");
  if (!mlk_backend_is_gpu(be) || strstr(mlk_backend_name(be), "Fake GPU") == NULL) {
    printf("SKIP: the fake libcuda.so.1 was not loaded (%s; %s)\n", mlk_backend_name(be),
           mlk_backend_note(be));
    mlk_backend_free(be);
    return 77;
  }
  CHECK(!strcmp(mlk_backend_name(be), "GPU 0: Fake GPU (sm_90, 4 SMs)"), "name '%s'", mlk_backend_name(be));
  CHECK(mlk_backend_ptx_arch(be) && !strcmp(mlk_backend_ptx_arch(be), "sm_90a"), "ptx arch '%s'",
        mlk_backend_ptx_arch(be) ? mlk_backend_ptx_arch(be) : "(null)");
  CHECK(!strcmp(mlk_backend_note(be), ""), "note '%s'", mlk_backend_note(be));

  /* cc 9.0 takes the sm_90a PTX; the sm_80 PTX only when there is no sm_90a. */
  expect_create(be, desc("k90", "entry k90;", "entry k80;"), MLK_OK, "");
  expect_create(be, desc("k80", NULL, "entry k80;"), MLK_OK, "");
  expect_create(be, desc("k80", "entry k90;", "entry k80;"), MLK_ERR_CUDA,
                "cuModuleGetFunction('k80' for megakernel 'fwd') failed: CUDA_ERROR_NOT_FOUND (named symbol not found)");
  expect_create(be, desc("k90", "SYNTAX ERROR", NULL), MLK_ERR_CUDA,
                "cuLinkAddData(sm_90a PTX of model 'fake_test', 12 bytes) failed: CUDA_ERROR_INVALID_PTX "
                "(a PTX JIT compilation failed)\nJIT error log:\nptxas application ptx input, line 3; fatal");
  expect_create(be, desc("k90", NULL, NULL), MLK_ERR_INVALID,
                "model 'fake_test' has no PTX this GPU can run: GPU 0 is sm_90, the model carries no PTX at all");
  test_tune(be);
  MlkModelDesc dyn = desc("k90", "entry k90;", NULL);
  kernel.schedule = MLK_SCHED_DYNAMIC;
  /* the dynamic schedule gets one queue of every task and a ticket counter */
  expect_create(be, dyn, MLK_OK, "");
  test_cache(be);

  MlkModelDesc d = desc("k90", "entry k90;", NULL);
  d.ntensors = 4;
  mlk_model *m;
  st = mlk_model_create(be, &d, &m);
  CHECK(st == MLK_ERR_NOMEM, "got %s: %s", mlk_status_name(st), mlk_last_error());
  CHECK(!strncmp(mlk_last_error(), "gpu.c:", 6), "'%s' has no file:line", mlk_last_error());
  CHECK_CONTAINS(mlk_last_error(),
                 "bytes for the 4 tensors of model 'fake_test' (the largest: 'big', 2147483648 bytes)) "
                 "failed: CUDA_ERROR_OUT_OF_MEMORY (out of memory)");
  printf("  %s\n", mlk_last_error());

  /* Device memory starts as garbage in the fake: the runtime zeroes tensors and counters. */
  d.ntensors = 3;
  CHECK_OK(mlk_model_create(be, &d, &m));
  if (m) {
    float u[1000];
    CHECK_OK(mlk_model_get_tensor(m, 1, u, sizeof u));
    int nonzero = 0;
    for (int i = 0; i < 1000; i++)
      nonzero += u[i] != 0.0f;
    CHECK(nonzero == 0, "%d nonzero elements in a fresh tensor", nonzero);
    mlk_model_free(m);
  }
  mlk_backend_free(be);
  return rt_finish("runtime_gpu_fake");
}
