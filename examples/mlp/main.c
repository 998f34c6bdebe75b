/* main.c: the mlp demo. Runs the mlp megakernel on the GPU when there is one, else on the CPU
 * simulator, and checks the result against a sequential reference.
 *
 *   build/examples/mlp_demo [runs]      (MLK_BACKEND=cpu|gpu forces a backend)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "mlp_check.h"

int main(int argc, char **argv) {
  int runs = argc > 1 ? atoi(argv[1]) : 5;
  if (runs < 1)
    runs = 1;
  mlk_backend *be;
  if (mlk_backend_create(MLK_BACKEND_AUTO, &be) != MLK_OK) {
    fprintf(stderr, "mlp_demo: %s\n", mlk_last_error());
    return 1;
  }
  if (*mlk_backend_note(be))
    printf("%s\n", mlk_backend_note(be));
  printf("running on %s\n", mlk_backend_name(be));
  printf("model mlp: y = W2 relu(W1 x) + x, D = %d, H = %d, bf16 weights, f32 accumulation\n",
         MLP_D, MLP_H);
  mlp_check_result r;
  mlk_status st = mlp_check(be, 42, runs, &r);
  mlk_backend_free(be);
  if (st != MLK_OK) {
    fprintf(stderr, "mlp_demo: %s\n", mlk_last_error());
    return 1;
  }
  int ok = r.unwritten == 0 && r.max_rel_l2 <= MLP_CHECK_TOL;
  printf("%d runs, fresh random x each: max relative L2 error vs reference %.3g (tolerance %g), "
         "%d unwritten outputs, median %.3f ms per run\n",
         runs, r.max_rel_l2, MLP_CHECK_TOL, r.unwritten, r.median_ms);
  printf("%s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
