/* test_watchdog.c: a megakernel whose waits cannot complete must fail with a message naming the
 * task, its op and the event, and leave the backend usable: on the GPU within the wait deadline,
 * on the CPU simulator as soon as no task can run (it takes no deadline, so none is timed).
 *
 *   test_watchdog cpu|gpu
 *
 * The mlp megakernel bakes its task grid into the code: layer 2 waits until all 128 layer-1 tasks
 * have notified event E0. Here the runtime is given a description whose layer 1 has tile 33, so
 * the queues hold only 125 layer-1 tasks: E0 can never reach 128, and every layer-2 task must time
 * out. Afterwards the correct model runs on the same backend and must still match the reference.
 * With "gpu" on a machine without one it prints SKIP and exits 77. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mlp_check.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

int main(int argc, char **argv) {
  int gpu = argc > 1 && !strcmp(argv[1], "gpu");
  setenv("MLK_WAIT_TIMEOUT_MS", "300", 1);
  mlk_backend *be;
  mlk_status st = gpu ? mlk_backend_create(MLK_BACKEND_GPU, &be) : mlk_backend_create_cpu(NULL, &be);
  if (st == MLK_ERR_NO_GPU) {
    printf("SKIP: %s\n", mlk_last_error());
    return 77;
  }
  if (st != MLK_OK) {
    printf("FAIL: %s\n", mlk_last_error());
    return 1;
  }
  printf("backend: %s\n", mlk_backend_name(be));

  /* the broken description: layer 1 with a wrong grid */
  MlkOpDesc ops[2];
  memcpy(ops, mlp_desc.ops, sizeof ops);
  ops[0].tile = 33;
  ops[0].ntasks = (ops[0].n + 32) / 33;
  MlkModelDesc bad = mlp_desc;
  bad.ops = ops;

  int failed = 0;
  mlk_model *m;
  if (mlk_model_create(be, &bad, &m) != MLK_OK) {
    printf("FAIL: create: %s\n", mlk_last_error());
    return 1;
  }
  for (int t = 0; t < mlp_desc.ntensors; t++)
    if (mlp_desc.tensors[t].kind != MLK_TENSOR_OUTPUT && mlp_desc.tensors[t].kind != MLK_TENSOR_TEMP)
      mlk_model_fill_tensor(m, t, 0);
  for (int run = 0; run < 2; run++) {
    double t0 = now_ms();
    st = mlk_model_run(m, 0);
    double ms = now_ms() - t0;
    const char *msg = mlk_last_error();
    int ok = st == MLK_ERR_DEADLOCK && strstr(msg, "matvec@mlp.mlk:19") &&
             strstr(msg, "h: matvec_relu@mlp.mlk:18 -> matvec@mlp.mlk:19") &&
             strstr(msg, "expected 128") && (!gpu || ms < 5000);
    printf("%s: broken run %d returned %s after %.0f ms: %s\n", ok ? "ok" : "FAIL", run,
           mlk_status_name(st), ms, msg);
    failed += !ok;
  }
  mlk_model_free(m);

  mlp_check_result r;
  st = mlp_check(be, 7, 3, &r);
  int ok = st == MLK_OK && r.unwritten == 0 && r.max_rel_l2 <= MLP_CHECK_TOL;
  printf("%s: the correct model afterwards: rel L2 %.3g (tol %g), unwritten %d%s%s\n",
         ok ? "ok" : "FAIL", r.max_rel_l2, MLP_CHECK_TOL, r.unwritten, st ? ": " : "",
         st ? mlk_last_error() : "");
  failed += !ok;
  mlk_backend_free(be);
  printf("%d passed, %d failed\n", 3 - failed, failed);
  return failed != 0;
}
