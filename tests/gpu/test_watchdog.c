/* test_watchdog.c: a megakernel whose waits cannot complete must fail with a message naming the
 * task, its op and the event, and leave the backend usable: on the GPU within the wait deadline,
 * on the CPU simulator as soon as no task can run (it takes no deadline, so none is timed).
 *
 *   test_watchdog cpu|gpu
 *
 * The mlp's layer 2 (64 tasks) waits until all 128 layer-1 tasks have notified event E0 (ALL). The
 * broken description adds a second event from layer 1 to layer 2 on h, a TILE event that claims
 * layer 1's tiles are 16 rows instead of 32: its 128 producer tasks then notify only the counters
 * of h's first 2048 rows, and layer-2 tasks 32..63 wait for 4 notifies that never come. (Layer 2
 * still waits on E0 first, so no task reads h early. A description whose ALL count differs from
 * its notifiers is refused at creation instead.) Every stuck wait must time out with a message.
 * Afterwards the correct model runs on the same backend and must still match the reference.
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

  /* the broken description: E0 and the lying TILE event E1, both from op 0 to op 1 */
  if (mlp_desc.nops != 2 || mlp_desc.nevents != 1 || mlp_desc.events[0].map != MLK_MAP_ALL) {
    printf("FAIL: the mlp example no longer has the 2 ops and 1 ALL event this test expects\n");
    return 1;
  }
  MlkOpDesc ops[2];
  memcpy(ops, mlp_desc.ops, sizeof ops);
  MlkEventDesc events[2] = {mlp_desc.events[0], mlp_desc.events[0]};
  int64_t n = ops[0].n, ctile = n / ops[1].ntasks;
  events[1].name = "h (tiles of 16): matvec_relu@mlp.mlk:18 -> matvec@mlp.mlk:19";
  events[1].map = MLK_MAP_TILE;
  events[1].ptile = ops[0].tile / 2;
  events[1].ctile = ctile;
  events[1].count = 0;
  events[1].size = ops[1].ntasks;
  events[1].base = mlp_desc.ncounters;
  /* op 1 waits on E0 then E1; op 0 notifies both */
  static const int refs[] = {0, 1, 0, 1};
  ops[0].wait0 = 0, ops[0].nwaits = 0, ops[0].notify0 = 2, ops[0].nnotifies = 2;
  ops[1].wait0 = 0, ops[1].nwaits = 2, ops[1].notify0 = 4, ops[1].nnotifies = 0;
  MlkModelDesc bad = mlp_desc;
  bad.ops = ops;
  bad.events = events;
  bad.nevents = 2;
  bad.event_refs = refs;
  bad.nevent_refs = 4;
  bad.ncounters = mlp_desc.ncounters + events[1].size;

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
             strstr(msg, "h (tiles of 16): matvec_relu@mlp.mlk:18 -> matvec@mlp.mlk:19") &&
             strstr(msg, "expected 4 notifies, saw 0") && (!gpu || ms < 5000);
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
