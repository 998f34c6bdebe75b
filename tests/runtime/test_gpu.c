/* test_gpu.c: the GPU backend, on a machine that has one; skipped (exit 77) elsewhere.
 *
 * Without a usable GPU it prints "SKIP: no GPU: <reason>" and exits 77 (CTest reports it as
 * skipped), which also checks that a missing driver is a clean, explained failure. With a GPU:
 * tensor round trips through device memory, then the hand-written megakernels of gpu_kernels.c
 * (PTX path in argv[1]): several runs with fresh inputs and poisoned outputs compared with a
 * reference, then the deadlocking variant, which must be reported within a bounded time and
 * leave the model usable.
 */
#include "rt_test.h"

enum { GN = 1000 };

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  char *buf = NULL;
  if (fseek(f, 0, SEEK_END) == 0) {
    long n = ftell(f);
    if (n > 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1))) {
      if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
      } else {
        buf[n] = 0;
      }
    }
  }
  fclose(f);
  return buf;
}

static const MlkTensorDesc gtensors[] = {
    {"a", MLK_F32, MLK_TENSOR_INPUT, 1, {GN, 0, 0, 0}, GN, NULL},
    {"u", MLK_F32, MLK_TENSOR_TEMP, 1, {GN, 0, 0, 0}, GN, NULL},
    {"v", MLK_F32, MLK_TENSOR_OUTPUT, 1, {GN, 0, 0, 0}, GN, NULL},
};
static const MlkOpDesc gops[] = {
    {"relu@gpu_test:1", MLK_OP_ELTWISE, MLK_FN_RELU, 1, {0, -1, -1}, GN, 0, 64, 16},
    {"add@gpu_test:2", MLK_OP_ELTWISE, MLK_FN_ADD, 2, {1, 0, -1}, GN, 0, 100, 10},
};
/* Must match EVENT() in gpu_kernels.c. */
static const MlkEventDesc gevents_ok[] = {
    {"u: relu@gpu_test:1 -> add@gpu_test:2", 0, 1, 1, MLK_MAP_TILE, GN, 64, 100, 10, 0}};
static const MlkEventDesc gevents_bad[] = {
    {"u: relu@gpu_test:1 -> add@gpu_test:2", 0, 1, 1, MLK_MAP_TILE, GN, 32, 100, 10, 0}};
static const MlkKernelDesc gkernels_ok[] = {{"fwd", "mlk_test_fwd", 0, 2}};
static const MlkKernelDesc gkernels_bad[] = {{"fwd", "mlk_test_fwd_bad", 0, 2}};

static MlkModelDesc gdesc(const char *ptx, int bad) {
  return (MlkModelDesc){MLK_DESC_ABI, bad ? "gpu_test_bad" : "gpu_test", "gpu_test.c", gtensors, 3,
                        gops, 2, bad ? gevents_bad : gevents_ok, 1, 10,
                        bad ? gkernels_bad : gkernels_ok, 1, NULL, ptx};
}

static void round_trip(mlk_backend *be) {
  MlkModelDesc d = gdesc(NULL, 0);
  d.nkernels = 0; /* tensors only: needs no PTX */
  d.nops = d.nevents = 0;
  d.ncounters = 0;
  mlk_model *m;
  CHECK_OK(mlk_model_create(be, &d, &m));
  if (!m)
    return;
  float in[GN], out[GN];
  rt_fill(in, GN, 1.0f);
  CHECK_OK(mlk_model_set_tensor(m, 0, in, sizeof in));
  CHECK_OK(mlk_model_get_tensor(m, 0, out, sizeof out));
  CHECK(!memcmp(in, out, sizeof in), "round trip through device memory");
  CHECK_OK(mlk_model_fill_tensor(m, 2, 0xff));
  CHECK_OK(mlk_model_get_tensor(m, 2, out, sizeof out));
  CHECK(isnan(out[0]) && isnan(out[GN - 1]), "fill 0xff");
  mlk_model_free(m);
}

static void run_kernels(mlk_backend *be, const char *ptx) {
  MlkModelDesc d = gdesc(ptx, 0);
  mlk_model *m;
  CHECK_OK(mlk_model_create(be, &d, &m));
  if (!m)
    return;
  float a[GN], v[GN];
  double want[GN];
  for (int run = 0; run < 5; run++) {
    rt_fill(a, GN, 1.0f);
    for (int i = 0; i < GN; i++)
      want[i] = (a[i] > 0 ? a[i] : 0) + (double)a[i];
    CHECK_OK(mlk_model_set_tensor(m, 0, a, sizeof a));
    CHECK_OK(mlk_model_fill_tensor(m, 1, 0xff));
    CHECK_OK(mlk_model_fill_tensor(m, 2, 0xff));
    CHECK_OK(mlk_model_run(m, 0));
    CHECK_OK(mlk_model_get_tensor(m, 2, v, sizeof v));
    double err = rt_rel_l2(v, want, GN);
    CHECK(err < 1e-6, "run %d: relative L2 error %g", run, err);
  }
  mlk_model_free(m);

  d = gdesc(ptx, 1);
  CHECK_OK(mlk_model_create(be, &d, &m));
  if (!m)
    return;
  CHECK_OK(mlk_model_set_tensor(m, 0, a, sizeof a));
  setenv("MLK_WAIT_TIMEOUT_MS", "200", 1);
  for (int run = 0; run < 2; run++) {
    time_t t0 = time(NULL);
    mlk_status st = mlk_model_run(m, 0);
    CHECK(st == MLK_ERR_DEADLOCK, "bad kernel: %s: %s", mlk_status_name(st), mlk_last_error());
    CHECK(time(NULL) - t0 < 10, "the deadlock took %lld s", (long long)(time(NULL) - t0));
    printf("  %s\n", mlk_last_error());
    CHECK_CONTAINS(mlk_last_error(), "megakernel 'fwd': task ");
    CHECK_CONTAINS(mlk_last_error(), " of op 'add@gpu_test:2' (queue ");
    CHECK_CONTAINS(mlk_last_error(), "waited on event 'u: relu@gpu_test:1 -> add@gpu_test:2' counter [");
    CHECK_CONTAINS(mlk_last_error(), " after 200 ms");
  }
  mlk_model_free(m);
}

int main(int argc, char **argv) {
  rt_watchdog(120);
  mlk_backend *be;
  mlk_status st = mlk_backend_create(MLK_BACKEND_GPU, &be);
  if (st == MLK_ERR_NO_GPU) {
    CHECK(!strncmp(mlk_last_error(), "no GPU: ", 8), "reason '%s'", mlk_last_error());
    if (rt_failures)
      return 1;
    printf("SKIP: %s\n", mlk_last_error());
    return 77;
  }
  CHECK_OK(st);
  if (!be)
    return rt_finish("runtime_gpu");
  rt_seed();
  printf("  %s\n", mlk_backend_name(be));
  CHECK(mlk_backend_is_gpu(be), "GPU backend is not a GPU");
  round_trip(be);
  char *ptx = argc > 1 ? read_file(argv[1]) : NULL;
  if (ptx)
    run_kernels(be, ptx);
  else
    printf("  no test PTX (%s): megakernel launches not tested\n", argc > 1 ? argv[1] : "no path given");
  free(ptx);
  mlk_backend_free(be);
  return rt_finish("runtime_gpu");
}
