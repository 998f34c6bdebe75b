/* test_mlp_gpu.c: the mlp megakernel on the GPU vs the sequential reference (fresh random inputs,
 * output poisoned before each run, several runs so the epoch counters are reused), and the same
 * model on the CPU simulator with the same seed, which must agree with the GPU within tolerance. */
#include <stdio.h>
#include <time.h>

#include "mlp_check.h"

int main(void) {
  mlk_backend *be;
  mlk_status st = mlk_backend_create(MLK_BACKEND_GPU, &be);
  if (st == MLK_ERR_NO_GPU) {
    printf("SKIP: %s\n", mlk_last_error());
    return 77;
  }
  if (st != MLK_OK) {
    printf("FAIL: %s\n", mlk_last_error());
    return 1;
  }
  printf("device: %s\n", mlk_backend_name(be));
  uint64_t seed = (uint64_t)time(NULL);
  mlp_check_result r;
  st = mlp_check(be, seed, 20, &r);
  mlk_backend_free(be);
  int ok = st == MLK_OK && r.unwritten == 0 && r.max_rel_l2 <= MLP_CHECK_TOL;
  printf("%s: seed %llu, 20 runs: rel L2 %.3g (tol %g), unwritten %d, median %.3f ms/run "
         "(host clock, includes launch and sync)%s%s\n",
         ok ? "ok" : "FAIL", (unsigned long long)seed, r.max_rel_l2, MLP_CHECK_TOL, r.unwritten,
         r.median_ms, st ? ": " : "", st ? mlk_last_error() : "");
  printf("%d passed, %d failed\n", ok, !ok);
  return !ok;
}
