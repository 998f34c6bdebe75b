/* mlp_bench.c: times the mlp megakernel on the GPU, the way docs/performance.md says.
 *
 *   mlp_bench [iterations] [instances]
 *
 * Checks the result against the reference first. Then `instances` copies of the model with their
 * own random weights (4 by default: 67 MB, more than the H100's 50 MB L2, so runs read weights
 * from HBM as a decode step would) run in rotation; before each run x gets fresh random values
 * and y is poisoned. Reported: the median and 10th/90th percentiles of the device time of one
 * launch (CUDA events around the launch), the host time of one mlp_forward (launch + wait), and
 * the floor: the bytes that must move (weights, x, y), over the read rate measured on the GPU
 * when MLK_READ_GBPS gives it (bench/floor.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "floor.h"
#include "mlp_check.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static uint64_t rng = 88172645463325252ull;
static float uniform(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (float)((rng >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

#define CHECK(call)                                                                                \
  do {                                                                                             \
    if ((call) != MLK_OK) {                                                                        \
      fprintf(stderr, "mlp_bench: %s\n", mlk_last_error());                                       \
      return 1;                                                                                    \
    }                                                                                              \
  } while (0)

int main(int argc, char **argv) {
  int iters = argc > 1 ? atoi(argv[1]) : 500;
  int ninst = argc > 2 ? atoi(argv[2]) : 4;
  if (iters < 10 || ninst < 1 || ninst > 64) {
    fprintf(stderr, "usage: mlp_bench [iterations >= 10] [instances 1..64]\n");
    return 1;
  }
  mlk_backend *be;
  CHECK(mlk_backend_create(MLK_BACKEND_AUTO, &be));
  printf("backend: %s\n", mlk_backend_name(be));

  mlp_check_result r;
  CHECK(mlp_check(be, 1234, 3, &r));
  printf("check: rel L2 %.3g (tol %g), unwritten %d\n", r.max_rel_l2, MLP_CHECK_TOL, r.unwritten);
  if (r.unwritten || r.max_rel_l2 > MLP_CHECK_TOL) {
    printf("FAIL: wrong result, not timing\n");
    return 1;
  }

  size_t nw = (size_t)MLP_H * MLP_D;
  uint16_t *w = malloc(nw * sizeof *w);
  float x[MLP_D];
  mlp_model **m = calloc(ninst, sizeof *m);
  int y_index = -1;
  for (int i = 0; i < ninst; i++) {
    CHECK(mlp_create(be, &m[i]));
    for (size_t j = 0; j < nw; j++)
      w[j] = mlk_f32_to_bf16(uniform() / 32.0f);
    CHECK(mlp_set_W1(m[i], w));
    for (size_t j = 0; j < nw; j++)
      w[j] = mlk_f32_to_bf16(uniform() / 64.0f);
    CHECK(mlp_set_W2(m[i], w));
    y_index = mlk_model_find_tensor(m[i], "y");
  }
  int warm = iters / 10;
  double *dev = malloc(sizeof(double) * iters), *host = malloc(sizeof(double) * iters);
  for (int it = -warm; it < iters; it++) {
    mlp_model *mi = m[(it + warm) % ninst];
    for (int j = 0; j < MLP_D; j++)
      x[j] = uniform();
    CHECK(mlp_set_x(mi, x));
    CHECK(mlk_model_fill_tensor(mi, y_index, 0xff));
    double ms, t0 = now_ms();
    CHECK(mlk_model_run_timed(mi, 0, &ms));
    double h = now_ms() - t0;
    if (it >= 0) {
      dev[it] = ms;
      host[it] = h;
    }
  }
  qsort(dev, iters, sizeof *dev, cmp);
  qsort(host, iters, sizeof *host, cmp);
  double bytes = 2.0 * nw * 2 + 2.0 * MLP_D * 4;
  printf("mlp D=%d H=%d, %d instances (%.1f MB of weights), %d runs after %d warm-up\n", MLP_D, MLP_H,
         ninst, ninst * 2.0 * nw * 2 / 1e6, iters, warm);
  printf("%s: median %.4f ms, p10 %.4f, p90 %.4f\n",
         mlk_backend_is_gpu(be) ? "device time per launch (CUDA events)"
                                : "time per run (wall clock, CPU simulator)",
         dev[iters / 2], dev[iters / 10], dev[iters * 9 / 10]);
  printf("host time per mlp_forward (launch + wait): median %.4f ms\n", host[iters / 2]);
  bench_print_floor(bytes, dev[iters / 2]);
  for (int i = 0; i < ninst; i++)
    mlp_free(m[i]);
  free(m);
  free(w);
  free(dev);
  free(host);
  mlk_backend_free(be);
  return 0;
}
