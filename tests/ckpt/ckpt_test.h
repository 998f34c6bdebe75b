/* ckpt_test.h: a hand-built model with checkpoint bindings, for the loader tests.
 *
 * Params of every kind of binding and dtype the loader handles, written out as MlkModelDesc tables
 * the way mlkc emits them (bind.c), so the runtime is tested without the compiler:
 *
 *   wqkv  bf16[2, 7, 4]  cat("l.{l}.{q,k,v}"): per layer q (3 rows), k (2), v (2)
 *   ln    f32[2, 4]      "l.{l}.norm": a layer each, loaded into f32
 *   emb   bf16[5, 4]     "embed"
 *   ids   i32[3]         "ids": integers, copied as they are
 *   half  f16[6]         "half": f16 into f16, as it is
 *   free  bf16[3]        no binding: the application sets it
 *
 * and one kernel, y = relu(x), so that the model can run (none with ck_no_kernel).
 */
#ifndef CKPT_TEST_H
#define CKPT_TEST_H

#include "rt_test.h"

enum { CT_WQKV, CT_LN, CT_EMB, CT_IDS, CT_HALF, CT_FREE, CT_X, CT_Y, CT_NTENSORS };
enum { CT_NBINDINGS = 11 };

/* 1: no kernel (for the GPU backend over the fake driver, which cannot run this one). */
static int ck_no_kernel;

typedef struct CkModel {
  MlkTensorDesc tensors[CT_NTENSORS];
  MlkBinding bindings[CT_NBINDINGS + 2]; /* room for variants */
  MlkOpDesc ops[1];
  MlkKernelDesc kernels[1];
  MlkModelDesc desc;
} CkModel;

/* Fills `m`; m->desc points into m, so m must not move afterwards. */
static inline void ck_init(CkModel *m) {
  const MlkTensorDesc tensors[CT_NTENSORS] = {
      [CT_WQKV] = {"wqkv", MLK_BF16, MLK_TENSOR_PARAM, 3, {2, 7, 4}, 56, "l.{l}.{q,k,v}", 0},
      [CT_LN] = {"ln", MLK_F32, MLK_TENSOR_PARAM, 2, {2, 4}, 8, "l.{l}.norm", 0},
      [CT_EMB] = {"emb", MLK_BF16, MLK_TENSOR_PARAM, 2, {5, 4}, 20, "embed", 0},
      [CT_IDS] = {"ids", MLK_I32, MLK_TENSOR_PARAM, 1, {3}, 3, "ids", 0},
      [CT_HALF] = {"half", MLK_F16, MLK_TENSOR_PARAM, 1, {6}, 6, "half", 0},
      [CT_FREE] = {"free", MLK_BF16, MLK_TENSOR_PARAM, 1, {3}, 3, NULL, 0},
      [CT_X] = {"x", MLK_F32, MLK_TENSOR_INPUT, 1, {4}, 4, NULL, 0},
      [CT_Y] = {"y", MLK_F32, MLK_TENSOR_OUTPUT, 1, {4}, 4, NULL, 0},
  };
  const MlkBinding bindings[CT_NBINDINGS] = {
      {CT_WQKV, "l.0.q", 0, 2, {3, 4}, -1, 1},  {CT_WQKV, "l.0.k", 12, 2, {2, 4}, -1, 1},
      {CT_WQKV, "l.0.v", 20, 2, {2, 4}, -1, 1}, {CT_WQKV, "l.1.q", 28, 2, {3, 4}, -1, 1},
      {CT_WQKV, "l.1.k", 40, 2, {2, 4}, -1, 1}, {CT_WQKV, "l.1.v", 48, 2, {2, 4}, -1, 1},
      {CT_LN, "l.0.norm", 0, 1, {4}, -1, 1},    {CT_LN, "l.1.norm", 4, 1, {4}, -1, 1},
      {CT_EMB, "embed", 0, 2, {5, 4}, -1, 1},   {CT_IDS, "ids", 0, 1, {3}, -1, 1},
      {CT_HALF, "half", 0, 1, {6}, -1, 1},
  };
  memset(m, 0, sizeof *m);
  memcpy(m->tensors, tensors, sizeof tensors);
  memcpy(m->bindings, bindings, sizeof bindings);
  m->ops[0] = (MlkOpDesc){.name = "relu@ck.mlk:1", .kind = MLK_OP_ELTWISE, .fn = MLK_FN_RELU,
                          .out = {CT_Y, 0}, .in = {{CT_X, 0}, {-1, 0}, {-1, 0}, {-1, 0}, {-1, 0}},
                          .n = 4, .tile = 4, .ntasks = 1, .layer = -1, .cache = -1};
  m->kernels[0] = (MlkKernelDesc){"step", "mlk_ck_step", 0, 1, MLK_SCHED_STATIC, NULL, 0, 0, 1};
  m->desc = (MlkModelDesc){.abi = MLK_DESC_ABI, .name = "ck", .source = "ck.mlk",
                           .tensors = m->tensors, .ntensors = CT_NTENSORS, .ops = m->ops, .nops = 1,
                           .kernels = m->kernels, .nkernels = 1, .batch_min = 1, .batch_max = 1,
                           .bindings = m->bindings, .nbindings = CT_NBINDINGS};
  if (ck_no_kernel)
    m->desc.nops = m->desc.nkernels = 0;
}

#endif /* CKPT_TEST_H */
