/* test_gpu.c: the GPU backend, on a machine that has one; skipped (exit 77) elsewhere.
 *
 * Without a usable GPU it prints "SKIP: no GPU: <reason>" and exits 77 (CTest reports it as
 * skipped), which also checks that a missing driver is a clean, explained failure. With a GPU:
 * tensor round trips through device memory, then the hand-written megakernels of gpu_kernels.c
 * (PTX path in argv[1]): several runs at batch sizes 1..3 of one model (the run-time values `rt`
 * tell the kernel the batch) with fresh inputs and poisoned outputs compared with a reference,
 * rows past the batch untouched, then the deadlocking variant, which must be reported within a
 * bounded time and leave the model usable. The same model with a dynamic schedule is refused.
 */
#include "rt_test.h"

enum { GN = 1000, GB = 3 };

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
    {"a", MLK_F32, MLK_TENSOR_INPUT, 2, {GB, GN, 0, 0}, GB * GN, NULL, 1},
    {"u", MLK_F32, MLK_TENSOR_TEMP, 2, {GB, GN, 0, 0}, GB * GN, NULL, 1},
    {"v", MLK_F32, MLK_TENSOR_OUTPUT, 2, {GB, GN, 0, 0}, GB * GN, NULL, 1},
};
static const MlkOpDesc gops[] = {
    {.name = "relu@gpu_test:1", .kind = MLK_OP_ELTWISE, .fn = MLK_FN_RELU, .out = {1, 0},
     .in = {{0, 0}, {-1, 0}, {-1, 0}, {-1, 0}, {-1, 0}}, .n = GN, .tile = 64, .ntasks = 16, .batched = 1,
     .layer = -1, .cache = -1, .nnotifies = 1},
    {.name = "add@gpu_test:2", .kind = MLK_OP_ELTWISE, .fn = MLK_FN_ADD, .out = {2, 0},
     .in = {{1, 0}, {0, 0}, {-1, 0}, {-1, 0}, {-1, 0}}, .n = GN, .tile = 100, .ntasks = 10, .batched = 1,
     .layer = -1, .cache = -1, .nwaits = 1},
};
/* Must match EVENT() in gpu_kernels.c. */
static const MlkEventDesc gevents_ok[] = {
    {"u: relu@gpu_test:1 -> add@gpu_test:2", 0, 1, 1, MLK_MAP_TILE, GN, 64, 100, 0, 10, 0, 0}};
static const MlkEventDesc gevents_bad[] = {
    {"u: relu@gpu_test:1 -> add@gpu_test:2", 0, 1, 1, MLK_MAP_TILE, GN, 32, 100, 0, 10, 0, 0}};
static const int grefs[] = {0}; /* add waits on, relu notifies event 0 */
static const MlkKernelDesc gkernels_ok[] = {{"fwd", "mlk_test_fwd", 0, 2, MLK_SCHED_STATIC, NULL, 0, 0, 1}};
static const MlkKernelDesc gkernels_bad[] = {{"fwd", "mlk_test_fwd_bad", 0, 2, MLK_SCHED_STATIC, NULL, 0, 0, 1}};
static const MlkKernelDesc gkernels_dyn[] = {{"fwd", "mlk_test_fwd", 0, 2, MLK_SCHED_DYNAMIC, NULL, 0, 0, 1}};

static MlkModelDesc gdesc(const char *ptx, int bad) {
  return (MlkModelDesc){.abi = MLK_DESC_ABI, .name = bad ? "gpu_test_bad" : "gpu_test",
                        .source = "gpu_test.c", .tensors = gtensors, .ntensors = 3, .ops = gops,
                        .nops = 2, .events = bad ? gevents_bad : gevents_ok, .nevents = 1,
                        .event_refs = grefs, .nevent_refs = 1, .ncounters = 10, .kernels = bad ? gkernels_bad : gkernels_ok, .nkernels = 1,
                        .batch_name = "B", .batch_min = 1, .batch_max = GB, .ptx_sm80 = ptx};
}

static void round_trip(mlk_backend *be) {
  MlkModelDesc d = gdesc(NULL, 0);
  d.nkernels = 0; /* tensors only: needs no PTX */
  d.nops = d.nevents = d.nevent_refs = 0;
  d.ncounters = 0;
  mlk_model *m;
  CHECK_OK(mlk_model_create(be, &d, &m));
  if (!m)
    return;
  float in[GB * GN], out[GB * GN];
  rt_fill(in, GB * GN, 1.0f);
  CHECK_OK(mlk_model_set_tensor(m, 0, in, GN * sizeof *in)); /* batch 1 */
  CHECK_OK(mlk_model_get_tensor(m, 0, out, GN * sizeof *out));
  CHECK(!memcmp(in, out, GN * sizeof *in), "round trip through device memory");
  CHECK_OK(mlk_model_set_batch(m, GB));
  CHECK_OK(mlk_model_set_tensor(m, 0, in, sizeof in));
  CHECK_OK(mlk_model_get_tensor(m, 0, out, sizeof out));
  CHECK(!memcmp(in, out, sizeof in), "round trip of %d rows through device memory", GB);
  CHECK_OK(mlk_model_fill_tensor(m, 2, 0xff));
  CHECK_OK(mlk_model_get_tensor(m, 2, out, sizeof out));
  CHECK(isnan(out[0]) && isnan(out[GB * GN - 1]), "fill 0xff");
  mlk_model_free(m);
}

static void run_kernels(mlk_backend *be, const char *ptx) {
  MlkModelDesc d = gdesc(ptx, 0);
  mlk_model *m;
  CHECK_OK(mlk_model_create(be, &d, &m));
  if (!m)
    return;
  static float a[GB * GN], v[GB * GN];
  static double want[GB * GN];
  static const int batches[] = {1, 3, 2, 2, 1, 3};
  for (int run = 0; run < 6; run++) {
    int rows = batches[run];
    /* Poison every row, then run `rows` of them: the rest must stay poison. */
    CHECK_OK(mlk_model_set_batch(m, GB));
    CHECK_OK(mlk_model_fill_tensor(m, 1, 0xff));
    CHECK_OK(mlk_model_fill_tensor(m, 2, 0xff));
    CHECK_OK(mlk_model_set_batch(m, rows));
    rt_fill(a, (size_t)rows * GN, 1.0f);
    for (int i = 0; i < rows * GN; i++)
      want[i] = (a[i] > 0 ? a[i] : 0) + (double)a[i];
    CHECK_OK(mlk_model_set_tensor(m, 0, a, (size_t)rows * GN * sizeof *a));
    CHECK_OK(mlk_model_run(m, 0));
    CHECK_OK(mlk_model_set_batch(m, GB));
    CHECK_OK(mlk_model_get_tensor(m, 2, v, sizeof v));
    double err = rt_rel_l2(v, want, (size_t)rows * GN);
    CHECK(err < 1e-6, "run %d (batch %d): relative L2 error %g", run, rows, err);
    int touched = 0;
    for (int i = rows * GN; i < GB * GN; i++)
      touched += !isnan(v[i]);
    CHECK(touched == 0, "run %d (batch %d): %d elements past the batch were written", run, rows, touched);
  }
  mlk_model_free(m);

  d.kernels = gkernels_dyn;
  m = (mlk_model *)&m;
  mlk_status cst = mlk_model_create(be, &d, &m);
  /* The GPU backend builds the dynamic schedule's single queue (these hand-written kernels only
   * walk static queues, so it is not run here: tests/gpu runs generated dynamic kernels). */
  CHECK(cst == MLK_OK && m != NULL, "dynamic schedule: %s: %s", mlk_status_name(cst), mlk_last_error());
  if (cst == MLK_OK)
    mlk_model_free(m);

  /* The weight stream's ring (MLK_STREAM_SLOTS) is checked before anything is loaded. */
  setenv("MLK_STREAM_SLOTS", "6", 1);
  m = (mlk_model *)&m;
  cst = mlk_model_create(be, &d, &m);
  CHECK(cst == MLK_ERR_INVALID && m == NULL, "MLK_STREAM_SLOTS=6: %s", mlk_status_name(cst));
  CHECK_CONTAINS(mlk_last_error(), "MLK_STREAM_SLOTS='6' is not an integer in [0, 5]");
  setenv("MLK_STREAM_SLOTS", "0", 1); /* the stream off: the launch has just the header */
  d.kernels = gkernels_ok;
  CHECK_OK(mlk_model_create(be, &d, &m));
  if (m)
    mlk_model_free(m);
  unsetenv("MLK_STREAM_SLOTS");

  d = gdesc(ptx, 1);
  CHECK_OK(mlk_model_create(be, &d, &m));
  if (!m)
    return;
  CHECK_OK(mlk_model_set_tensor(m, 0, a, GN * sizeof *a));
  setenv("MLK_WAIT_TIMEOUT_MS", "200", 1);
  /* Bounded by the 200 ms deadline per wait (the watchdog alarm catches a hang); not timed here:
   * under the fake driver this runs on a machine that may be loaded. */
  for (int run = 0; run < 2; run++) {
    mlk_status st = mlk_model_run(m, 0);
    CHECK(st == MLK_ERR_DEADLOCK, "bad kernel: %s: %s", mlk_status_name(st), mlk_last_error());
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
