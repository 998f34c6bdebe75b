/* test_ckpt.c: checkpoint bindings and the safetensors loader on the CPU simulator, over the
 * hand-built model of ckpt_test.h. */
#include "ckpt_test.h"

/* A description with one broken binding field must fail mlk_model_create with `needle`. */
static void expect_bad(mlk_backend *be, CkModel *ck, const char *needle) {
  mlk_model *m = NULL;
  mlk_status st = mlk_model_create(be, &ck->desc, &m);
  CHECK(st == MLK_ERR_INVALID, "expected MLK_ERR_INVALID for '%s', got %s", needle,
        mlk_status_name(st));
  CHECK_CONTAINS(mlk_last_error(), needle);
  mlk_model_free(m);
  ck_init(ck);
}

static void test_binding_validation(mlk_backend *be) {
  CkModel ck;
  ck_init(&ck);
  mlk_model *m = NULL;
  CHECK_OK(mlk_model_create(be, &ck.desc, &m));
  mlk_model_free(m);

  ck.bindings[1].offset = 11;
  expect_bad(be, &ck, "binding 1 'l.0.k' fills elements [11, 19) of param 'wqkv', which overlaps "
                      "binding 0 'l.0.q' ending at 12");
  ck.bindings[1].offset = 13;
  expect_bad(be, &ck, "param 'wqkv': no binding fills elements [12, 13) (binding 1 'l.0.k' starts "
                      "at 13): the bindings of a param must cover it");
  ck.bindings[5].shape[0] = 1;
  expect_bad(be, &ck, "param 'wqkv': no binding fills elements [52, 56): the bindings of a param "
                      "must cover it");
  ck.bindings[10].shape[0] = 5;
  expect_bad(be, &ck, "param 'half': no binding fills elements [5, 6)");
  ck.bindings[5].shape[0] = 3;
  expect_bad(be, &ck, "binding 5 'l.1.v' fills elements [48, 60) of param 'wqkv', which has 56");
  ck.bindings[2].shape[1] = 0;
  expect_bad(be, &ck, "binding 2 'l.0.v' of param 'wqkv' (56 elements) has shape[1] = 0");
  ck.bindings[2].shape[1] = INT64_MAX;
  expect_bad(be, &ck, "has shape[1] = 9223372036854775807");
  ck.bindings[2].rank = 5;
  expect_bad(be, &ck, "binding 2 'l.0.v' of param 'wqkv' has rank 5, not in [0, 4]");
  ck.bindings[3].name = "";
  expect_bad(be, &ck, "binding 3 of param 'wqkv' has no checkpoint tensor name");
  ck.bindings[3].name = NULL;
  expect_bad(be, &ck, "binding 3 of param 'wqkv' has no checkpoint tensor name");
  ck.bindings[6].tensor = CT_X;
  expect_bad(be, &ck, "binding 6 'l.0.norm' fills input 'x': only params are loaded from checkpoints");
  ck.bindings[6].tensor = CT_NTENSORS;
  expect_bad(be, &ck, "binding 6 'l.0.norm': tensor 8 out of range (8 tensors)");
  ck.bindings[8].tensor = CT_WQKV;
  expect_bad(be, &ck, "binding 8 'embed' of param 'wqkv' comes after a binding of tensor 1: "
                      "bindings are sorted by tensor");
  ck.desc.nbindings = -1;
  expect_bad(be, &ck, "-1 bindings");
  ck.desc.bindings = NULL;
  expect_bad(be, &ck, "11 bindings at (nil)");
  ck.desc.nbindings = 0; /* no bindings at all is fine */
  CHECK_OK(mlk_model_create(be, &ck.desc, &m));
  mlk_model_free(m);
}

int main(void) {
  rt_watchdog(120);
  mlk_sim_options so = {.threads = 2};
  mlk_backend *be = NULL;
  CHECK_OK(mlk_backend_create_cpu(&so, &be));
  if (!be)
    return rt_finish("runtime_ckpt");
  test_binding_validation(be);
  mlk_backend_free(be);
  return rt_finish("runtime_ckpt");
}
