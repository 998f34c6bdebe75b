/* test_mlp_sim.c: the mlp megakernel on the CPU simulator vs the sequential reference, for several
 * SM counts and seeds, deterministic (the seed picks the interleaving) and threaded (random delays
 * reorder the tasks across threads), several runs each so the epoch counters are exercised
 * without resets.
 *
 * Usage: test_mlp_sim [SEED]   (0 or none: the time; CTest passes MLK_TEST_SEED) */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "mlp_check.h"

int main(int argc, char **argv) {
  static const int threads[] = {1, 3, 8, 16};
  uint64_t base = argc > 1 ? strtoull(argv[1], NULL, 10) : 0;
  if (base == 0) /* none or 0: a fresh one (CTest passes MLK_TEST_SEED) */
    base = (uint64_t)time(NULL);
  int failed = 0, passed = 0;
  for (size_t i = 0; i < sizeof threads / sizeof threads[0]; i++) {
    uint64_t seed = base + i;
    mlk_sim_options opt = {.threads = threads[i], .seed = seed, .max_delay_us = i % 2 ? 50 : 0,
                           .mode = i % 2 ? MLK_SIM_THREADED : MLK_SIM_DETERMINISTIC};
    mlk_backend *be;
    if (mlk_backend_create_cpu(&opt, &be) != MLK_OK) {
      printf("FAIL: %s\n", mlk_last_error());
      return 1;
    }
    mlp_check_result r;
    mlk_status st = mlp_check(be, seed, 3, &r);
    int ok = st == MLK_OK && r.unwritten == 0 && r.max_rel_l2 <= MLP_CHECK_TOL;
    printf("%s: %s: rel L2 %.3g (tol %g), unwritten %d%s%s\n", ok ? "ok" : "FAIL",
           mlk_backend_name(be), r.max_rel_l2, MLP_CHECK_TOL, r.unwritten, st ? ": " : "",
           st ? mlk_last_error() : "");
    ok ? passed++ : failed++;
    mlk_backend_free(be);
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed != 0;
}
