/* test_nccl.c: the NCCL communicator of a world (runtime/nccl.c) on one GPU: a one-rank
 * communicator made as a world makes it, and the all-reduce a world's collective runs, over two
 * tensors of a model on the GPU (the mlp's input x and output y, f32[D] each): y must come back
 * equal to x (the sum over one rank), bit for bit, for several sizes. Prints NCCL's version.
 * SKIP (77) without a GPU or without NCCL. */
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "mlp.h"
#include "rt_test.h"

int main(void) {
  rt_watchdog(120);
  mlk_backend *be;
  mlk_status st = mlk_backend_create(MLK_BACKEND_GPU, &be);
  if (st == MLK_ERR_NO_GPU) {
    printf("SKIP: %s\n", mlk_last_error());
    return 77;
  }
  CHECK_OK(st);
  if (st)
    return rt_finish("test_nccl");
  MlkNccl *c = NULL;
  int dev = be->device;
  st = mlk_nccl_create(&dev, 1, &c);
  if (st == MLK_ERR_NO_GPU) {
    printf("SKIP: %s\n", mlk_last_error());
    mlk_backend_free(be);
    return 77;
  }
  CHECK_OK(st);
  printf("device: %s; %s, one rank; NCCL_NVLS_ENABLE=%s\n", mlk_backend_name(be), mlk_nccl_name(c),
         getenv("NCCL_NVLS_ENABLE") ? getenv("NCCL_NVLS_ENABLE") : "(unset)");
  mlp_model *m;
  CHECK_OK(mlp_create(be, &m));
  int tx = mlk_model_find_tensor(m, "x"), ty = mlk_model_find_tensor(m, "y");
  size_t n = (size_t)mlk_model_desc(m)->tensors[tx].numel;
  float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
  const size_t counts[] = {1, 7, 256, n};
  for (int i = 0; c && x && y && i < 4; i++) {
    rt_fill(x, n, 3.0f);
    CHECK_OK(mlk_model_set_tensor(m, tx, x, n * sizeof *x));
    CHECK_OK(mlk_model_fill_tensor(m, ty, 0xff));
    uint64_t send = be->ops->tensor_addr(m, tx), recv = be->ops->tensor_addr(m, ty);
    CHECK_OK(mlk_nccl_allreduce(c, &send, &recv, counts[i]));
    CHECK_OK(mlk_model_get_tensor(m, ty, y, n * sizeof *y));
    CHECK(!memcmp(x, y, counts[i] * sizeof *x), "%zu floats: the one-rank sum differs", counts[i]);
    uint32_t poison;
    if (counts[i] < n) {
      memcpy(&poison, &y[counts[i]], 4);
      CHECK(poison == 0xffffffffu, "%zu floats: wrote past the count", counts[i]);
    }
    printf("allreduce of %zu floats over one rank: %s\n", counts[i], rt_failures ? "FAIL" : "ok");
  }
  free(x);
  free(y);
  mlp_free(m);
  mlk_nccl_free(c);
  mlk_backend_free(be);
  return rt_finish("test_nccl");
}
