/* test_gpu_fake.c: the GPU backend's error paths, against the fake libcuda.so.1 (fake_cuda.c).
 *
 * CTest runs it with the fake first on LD_LIBRARY_PATH. Checks the backend name, the choice
 * between sm_90a and sm_80 PTX, the JIT error log in a PTX failure, a missing entry, a model with
 * no usable PTX, the cuMemAlloc out-of-memory message, and that device tensors start zeroed.
 * (The launch path itself is covered by running test_gpu against the same fake.) If the real
 * driver was loaded instead, it says so and exits 77.
 */
#include "rt_test.h"

static const MlkTensorDesc tensors[] = {
    {"a", MLK_F32, MLK_TENSOR_INPUT, 1, {1000, 0, 0, 0}, 1000, NULL},
    {"u", MLK_F32, MLK_TENSOR_TEMP, 1, {1000, 0, 0, 0}, 1000, NULL},
    {"v", MLK_F32, MLK_TENSOR_OUTPUT, 1, {1000, 0, 0, 0}, 1000, NULL},
    {"big", MLK_F32, MLK_TENSOR_TEMP, 1, {1 << 29, 0, 0, 0}, 1 << 29, NULL},
};
static const MlkOpDesc ops[] = {
    {"relu@fake:1", MLK_OP_ELTWISE, MLK_FN_RELU, 1, {0, -1, -1}, 1000, 0, 64, 16},
    {"add@fake:2", MLK_OP_ELTWISE, MLK_FN_ADD, 2, {1, 0, -1}, 1000, 0, 100, 10},
};
static const MlkEventDesc events[] = {
    {"u: relu@fake:1 -> add@fake:2", 0, 1, 1, MLK_MAP_TILE, 1000, 64, 100, 10, 0}};

static MlkModelDesc desc(const char *entry, const char *sm90a, const char *sm80) {
  static MlkKernelDesc k;
  k = (MlkKernelDesc){"fwd", entry, 0, 2};
  return (MlkModelDesc){MLK_DESC_ABI, "fake_test", "fake.mlk", tensors, 3, ops, 2, events, 1, 10,
                        &k, 1, sm90a, sm80};
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
  CHECK(!strcmp(mlk_backend_note(be), ""), "note '%s'", mlk_backend_note(be));

  /* cc 9.0 takes the sm_90a PTX; the sm_80 PTX only when there is no sm_90a. */
  expect_create(be, desc("k90", "entry k90;", "entry k80;"), MLK_OK, "");
  expect_create(be, desc("k80", NULL, "entry k80;"), MLK_OK, "");
  expect_create(be, desc("k80", "entry k90;", "entry k80;"), MLK_ERR_CUDA,
                "cuModuleGetFunction('k80' for megakernel 'fwd') failed: CUDA_ERROR_NOT_FOUND (named symbol not found)");
  expect_create(be, desc("k90", "SYNTAX ERROR", NULL), MLK_ERR_CUDA,
                "cuModuleLoadDataEx(sm_90a PTX of model 'fake_test', 12 bytes) failed: CUDA_ERROR_INVALID_PTX "
                "(a PTX JIT compilation failed)\nJIT error log:\nptxas application ptx input, line 3; fatal");
  expect_create(be, desc("k90", NULL, NULL), MLK_ERR_INVALID,
                "model 'fake_test' has no PTX this GPU can run: GPU 0 is sm_90, the model carries no PTX at all");

  MlkModelDesc d = desc("k90", "entry k90;", NULL);
  d.ntensors = 4;
  mlk_model *m;
  st = mlk_model_create(be, &d, &m);
  CHECK(st == MLK_ERR_NOMEM, "got %s: %s", mlk_status_name(st), mlk_last_error());
  CHECK(!strncmp(mlk_last_error(), "gpu.c:", 6), "'%s' has no file:line", mlk_last_error());
  CHECK_CONTAINS(mlk_last_error(),
                 ": cuMemAlloc(2147483648 bytes for 'big') failed: CUDA_ERROR_OUT_OF_MEMORY (out of memory)");
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
