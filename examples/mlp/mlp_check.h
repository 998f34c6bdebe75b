/* mlp_check.h: runs the mlp example on a backend and checks it against a sequential reference.
 * Shared by the demo (main.c) and the CPU-simulator and GPU tests. */
#ifndef MLP_CHECK_H
#define MLP_CHECK_H

#include <stdint.h>

#include "mlp.h"

typedef struct mlp_check_result {
  double max_rel_l2;   /* worst ||y - ref|| / ||ref|| over the runs */
  int unwritten;       /* outputs still holding the poison (NaN) after a run */
  double median_ms;    /* median wall time of one mlp_forward (host clock, includes sync) */
} mlp_check_result;

/* Creates the model on `be` with random weights from `seed`, then `runs` times: fresh random x,
 * poison y, run forward, compare with the reference computed in double from the same bf16 weights.
 * Returns MLK_OK, or the failing status (the message is in mlk_last_error()). */
mlk_status mlp_check(mlk_backend *be, uint64_t seed, int runs, mlp_check_result *res);

/* Relative L2 tolerance of mlp_check: the same bf16 weights, f32 accumulation over K <= 4096 in
 * another order than the double reference (observed ~3e-7). */
#define MLP_CHECK_TOL 2e-5

#endif
