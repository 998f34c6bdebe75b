/* test_errors.c: user errors give the documented status and message, never a crash.
 *
 * Covers set/get size and kind checks, params and inputs never set, out-of-range indices, desc
 * validation (one broken field at a time, the message must name it), environment variables,
 * backend selection, and the small helpers (status and dtype names, bf16 conversion).
 */
#include <pthread.h>
#include <stdint.h>

#include "internal.h" /* mlk_desc_validate */
#include "rt_llama.h"

static RtData data;

static void expect_error(mlk_status got, mlk_status want, const char *needle) {
  CHECK(got == want, "got %s, expected %s: %s", mlk_status_name(got), mlk_status_name(want),
        mlk_last_error());
  CHECK_CONTAINS(mlk_last_error(), needle);
}

static void expect_msg(mlk_status got, mlk_status want, const char *msg) {
  CHECK(got == want, "got %s, expected %s: %s", mlk_status_name(got), mlk_status_name(want),
        mlk_last_error());
  CHECK(!strcmp(mlk_last_error(), msg), "message '%s', expected '%s'", mlk_last_error(), msg);
}

static void test_tensors(mlk_backend *be) {
  RtModel rm;
  rt_mlp_init(&rm);
  mlk_model *m;
  CHECK_OK(mlk_model_create(be, &rm.desc, &m));
  if (!m)
    return;
  CHECK(mlk_model_find_tensor(m, "W2") == T_W2, "find W2");
  CHECK(mlk_model_find_tensor(m, "nope") == -1, "find nope");
  CHECK(mlk_model_find_tensor(m, NULL) == -1, "find NULL");

  expect_msg(mlk_model_set_tensor(m, T_W1, data.W1, 100), MLK_ERR_INVALID,
             "tensor 'W1' is bf16[300, 200] (120000 bytes), got 100 bytes");
  expect_msg(mlk_model_set_tensor(m, T_X, data.x, sizeof data.x + 4), MLK_ERR_INVALID,
             "tensor 'x' is f32[200] (800 bytes), got 804 bytes");
  expect_msg(mlk_model_get_tensor(m, T_Y, data.x, 12), MLK_ERR_INVALID,
             "tensor 'y' is f32[300] (1200 bytes), got 12 bytes");
  expect_error(mlk_model_set_tensor(m, T_Y, data.b, sizeof data.b), MLK_ERR_INVALID,
               "tensor 'y' is an output: only params and inputs can be set");
  expect_error(mlk_model_set_tensor(m, T_H, data.b, sizeof data.b), MLK_ERR_INVALID,
               "tensor 'h' is a temp");
  expect_error(mlk_model_set_tensor(m, 99, data.b, 4), MLK_ERR_INVALID, "tensor index 99 out of range");
  expect_error(mlk_model_set_tensor(m, -1, data.b, 4), MLK_ERR_INVALID, "tensor index -1 out of range");
  expect_error(mlk_model_get_tensor(m, 12, data.b, 4), MLK_ERR_INVALID, "tensor index 12 out of range");
  expect_error(mlk_model_fill_tensor(m, 12, 0), MLK_ERR_INVALID, "tensor index 12 out of range");
  expect_error(mlk_model_set_tensor(m, T_X, NULL, sizeof data.x), MLK_ERR_INVALID, "is NULL");

  /* The first unset operand of the kernel, in op order: x is op 0's first operand. */
  expect_msg(mlk_model_run(m, K_FORWARD), MLK_ERR_INVALID, "input 'x' was never set");
  CHECK_OK(mlk_model_set_tensor(m, T_X, data.x, sizeof data.x));
  expect_msg(mlk_model_run(m, K_FORWARD), MLK_ERR_INVALID, "param 'W1' was never set");
  CHECK_OK(mlk_model_set_tensor(m, T_W1, data.W1, sizeof data.W1));
  expect_msg(mlk_model_run(m, K_FORWARD), MLK_ERR_INVALID, "param 'W2' was never set");
  CHECK_OK(mlk_model_set_tensor(m, T_W2, data.W2, sizeof data.W2));
  expect_msg(mlk_model_run(m, K_FORWARD), MLK_ERR_INVALID, "input 'b' was never set");
  CHECK_OK(mlk_model_set_tensor(m, T_B, data.b, sizeof data.b));
  expect_msg(mlk_model_run(m, K_FORWARD), MLK_ERR_INVALID, "input 'g' was never set");
  CHECK_OK(mlk_model_set_tensor(m, T_G, data.g, sizeof data.g));
  /* "post" reads only r: the forward inputs being set does not matter to it. */
  expect_msg(mlk_model_run(m, K_POST), MLK_ERR_INVALID, "input 'r' was never set");
  expect_error(mlk_model_run(m, 2), MLK_ERR_INVALID, "kernel index 2 out of range");
  expect_error(mlk_model_run(m, -1), MLK_ERR_INVALID, "kernel index -1 out of range");
  /* A failed check leaves the model usable. */
  CHECK_OK(mlk_model_run(m, K_FORWARD));

  setenv("MLK_WAIT_TIMEOUT_MS", "abc", 1);
  expect_error(mlk_model_run(m, K_FORWARD), MLK_ERR_INVALID, "MLK_WAIT_TIMEOUT_MS='abc'");
  setenv("MLK_WAIT_TIMEOUT_MS", "0", 1);
  expect_error(mlk_model_run(m, K_FORWARD), MLK_ERR_INVALID, "MLK_WAIT_TIMEOUT_MS='0'");
  unsetenv("MLK_WAIT_TIMEOUT_MS");
  CHECK_OK(mlk_model_run(m, K_FORWARD));
  mlk_model_free(m);
}

/* One broken field per case: create must fail with MLK_ERR_INVALID and say what is wrong. */
static void expect_invalid(mlk_backend *be, RtModel *rm, const char *needle) {
  mlk_model *m = (mlk_model *)&m;
  expect_error(mlk_model_create(be, &rm->desc, &m), MLK_ERR_INVALID, needle);
  CHECK(m == NULL, "create failed but set *out");
  if (m)
    mlk_model_free(m);
  rt_mlp_init(rm);
}

static void test_validation(mlk_backend *be) {
  RtModel rm;
  rt_mlp_init(&rm);
  expect_error(mlk_model_create(be, NULL, &(mlk_model *){NULL}), MLK_ERR_INVALID, "description is NULL");

  rm.desc.abi = MLK_DESC_ABI + 1;
  char abi_msg[200];
  snprintf(abi_msg, sizeof abi_msg, "invalid model description 'mlp' (mlp.mlk): generated for runtime "
           "ABI %d, this libmlkrt implements ABI %d", MLK_DESC_ABI + 1, MLK_DESC_ABI);
  expect_invalid(be, &rm, abi_msg);
  rm.ops[0].ntasks = 10;
  expect_invalid(be, &rm, "op 0 'matvec@mlp.mlk:3': ntasks is 10, expected ceil(300 / 16) = 19");
  rm.ops[1].in[1].tensor = T_X;
  expect_invalid(be, &rm, "op 1 'matvec@mlp.mlk:4': W 'x' is f32, expected bf16");
  rm.ops[1].in[0].tensor = 42;
  expect_invalid(be, &rm, "op 1 'matvec@mlp.mlk:4': x is tensor 42, out of range");
  rm.ops[2].out.tensor = T_G;
  expect_invalid(be, &rm, "op 2 'mul@mlp.mlk:5' writes input 'g'");
  rm.ops[3].in[1].tensor = T_Y;
  expect_invalid(be, &rm, "op 3 'silu@mlp.mlk:6': in[1] is tensor 5, but this unary eltwise takes 1 "
                 "operand: unused operands must be -1");
  rm.ops[0].k = MLK_MATVEC_MAX_K + 1;
  expect_invalid(be, &rm, "k is 12289, must be in [1, 12288]");
  rm.tensors[T_W1].numel = 5;
  expect_invalid(be, &rm, "tensor 1 'W1': numel is 5, the shape gives 60000");
  rm.tensors[T_W1].dtype = (MlkDType)17;
  expect_invalid(be, &rm, "tensor 1 'W1': dtype 17 is not a valid MlkDType");
  rm.tensors[T_Z].name = "h";
  expect_invalid(be, &rm, "tensors 2 and 7 are both called 'h'");
  rm.events[1].size = 42;
  expect_invalid(be, &rm, "event 1 'y: matvec@mlp.mlk:4 -> mul@mlp.mlk:5': a TILE event has one counter per consumer task (43), size is 42");
  rm.events[0].size = 2;
  expect_invalid(be, &rm, "an ALL event has 1 counter, size is 2");
  rm.desc.ncounters = 64;
  expect_invalid(be, &rm, "ncounters is 64, but the event sizes add up to 63");
  rm.events[2].base = 40;
  rm.events[1].base = 0;
  rm.events[0].base = 53;
  expect_invalid(be, &rm, "overlap");
  rm.events[3].base = 60;
  expect_invalid(be, &rm, "counters [60, 69) are outside the model's 63 counters");
  /* Ends of ranges near INT64_MAX / INT_MAX in messages (signed overflows fuzz_desc found). */
  rm.events[3].base = INT64_MAX;
  expect_invalid(be, &rm, "counters [9223372036854775807, 9223372036854775807) are outside the model's "
                 "63 counters");
  rm.kernels[1].first_op = INT32_MAX;
  expect_invalid(be, &rm, "kernel 1 'post': ops [2147483647, 2147483649) are out of range (6 ops)");
  rm.events[0].producer = 1;
  rm.events[0].consumer = 0;
  expect_invalid(be, &rm, "producer op 1 is not before consumer op 0");
  rm.events[3].consumer = 3;
  expect_invalid(be, &rm, "goes from op 'relu@mlp.mlk:9' in kernel 1 to op 'silu@mlp.mlk:6' in kernel 0");
  rm.events[2].ctile = 29;
  expect_invalid(be, &rm, "event 2 'z: mul@mlp.mlk:5 -> silu@mlp.mlk:6': 300 elements in tiles of 29 need 11 counters, size is 10");
  /* The index maps compute in 32 bits (mlk_desc.h). */
  rm.events[1].ctile = (int64_t)1 << 31;
  expect_invalid(be, &rm, "event 1 'y: matvec@mlp.mlk:4 -> mul@mlp.mlk:5': n 300, ptile 8 and ctile "
                 "2147483648 must be below 2^31");
  /* A producer tile larger than the op's makes the later tasks notify past the event. */
  rm.events[1].ptile = 9;
  expect_invalid(be, &rm, "38 producer tiles of 9 run past its 300 elements");
  rm.kernels[1].first_op = 3;
  expect_invalid(be, &rm, "op 3 'silu@mlp.mlk:6' belongs to kernels 0 and 1");
  rm.kernels[1].nops = 1;
  expect_invalid(be, &rm, "op 5 'add@mlp.mlk:10' belongs to no kernel");
  rm.kernels[0].entry = NULL;
  expect_invalid(be, &rm, "kernel 0 has no entry symbol");

  /* The wait and notify lists (ABI 4). */
  rm.ops[1].nwaits = 0;
  expect_invalid(be, &rm, "event 0 'h: matvec@mlp.mlk:3 -> matvec@mlp.mlk:4' is missing from the wait list of op 1");
  rm.ops[0].notify0 = rm.desc.nevent_refs;
  expect_invalid(be, &rm, "op 0 'matvec@mlp.mlk:3': notify list [8, 9) is outside event_refs (8 entries)");
  rm.refs[rm.ops[2].wait0] = 7;
  expect_invalid(be, &rm, "op 2 'mul@mlp.mlk:5': its wait list names event 7 (the model has 4)");
  rm.refs[rm.ops[2].wait0] = 2;
  expect_invalid(be, &rm, "op 2 'mul@mlp.mlk:5' waits on event 'z: mul@mlp.mlk:5 -> silu@mlp.mlk:6', whose consumer is op 3");
  rm.events[0].count = 38;
  expect_invalid(be, &rm, "event 0 'h: matvec@mlp.mlk:3 -> matvec@mlp.mlk:4': count is 38, but its notifiers have 19 tasks");
  /* an explicit event counter (no producer, consumer or tensor): silu notifies it, mul waits on
   * it, but mul runs first */
  rm.events[4] = (MlkEventDesc){.name = "done[0]", .producer = -1, .consumer = -1, .tensor = -1,
                                .map = MLK_MAP_ALL, .count = 10, .size = 1, .base = 63};
  rm.desc.nevents = 5;
  rm.desc.ncounters = 64;
  rt_mlp_link(&rm);
  rm.refs[rm.desc.nevent_refs] = 1; /* mul: y, then done[0] */
  rm.refs[rm.desc.nevent_refs + 1] = 4;
  rm.refs[rm.desc.nevent_refs + 2] = 4; /* silu: done[0] */
  rm.ops[2].wait0 = rm.desc.nevent_refs;
  rm.ops[2].nwaits = 2;
  rm.ops[3].notify0 = rm.desc.nevent_refs + 2;
  rm.ops[3].nnotifies = 1;
  rm.desc.nevent_refs += 3;
  expect_invalid(be, &rm, "event 4 'done[0]': op 2 'mul@mlp.mlk:5' waits on it but op 3 'silu@mlp.mlk:6', a later op, notifies it");

  /* Code variants: each op of "forward" its own, then one that claims another's code. */
  static const int vops[] = {0, 1, 2, 3};
  rm.kernels[K_FORWARD].variant_ops = vops;
  rm.kernels[K_FORWARD].nvariants = 4;
  for (int o = 0; o < 4; o++)
    rm.ops[o].variant = o;
  CHECK_OK(mlk_desc_validate(&rm.desc));
  rt_mlp_init(&rm);
  rm.ops[1].variant = 1; /* the kernel has no variants: every op's is 0 */
  expect_invalid(be, &rm, "op 1 'matvec@mlp.mlk:4': variant 1, but kernel 'forward' has 0");
  rm.kernels[K_FORWARD].variant_ops = vops;
  rm.kernels[K_FORWARD].nvariants = 4;
  for (int o = 0; o < 4; o++)
    rm.ops[o].variant = o;
  rm.ops[1].variant = 0;
  expect_invalid(be, &rm, "kernel 0 'forward': variant 1 names op 1, which is not an op of the kernel of that variant");
  rm.kernels[K_FORWARD].variant_ops = vops;
  rm.kernels[K_FORWARD].nvariants = 4;
  for (int o = 0; o < 4; o++)
    rm.ops[o].variant = o;
  rm.ops[3].variant = 2; /* silu claims the code of mul */
  static const int vops3[] = {0, 1, 2, 2};
  rm.kernels[K_FORWARD].variant_ops = vops3;
  rm.kernels[K_FORWARD].nvariants = 3;
  expect_invalid(be, &rm, "op 3 'silu@mlp.mlk:6' differs from op 2 'mul@mlp.mlk:5', whose code variant 2 it runs");

  /* Any number of ops in a kernel (the interpreter reads them as data), and at most 2^31 - 1
   * tasks in one op (the task field of a task word). */
  enum { NOPS = 1000 };
  static MlkOpDesc ops[NOPS];
  for (int i = 0; i < NOPS; i++)
    ops[i] = (MlkOpDesc)RT_OP("relu", MLK_OP_ELTWISE, MLK_FN_RELU, T_H, T_B, -1, -1, RT_N, 0, 100, 3);
  rm.desc.ops = ops;
  rm.desc.nops = NOPS;
  rm.desc.nevents = 0;
  rm.desc.nevent_refs = 0;
  rm.desc.ncounters = 0;
  rm.desc.nkernels = 1;
  rm.kernels[0].nops = NOPS;
  /* the same op writing h 1000 times is refused as a double write by the checker, not here */
  CHECK_OK(mlk_desc_validate(&rm.desc));
  static MlkTensorDesc big[RT_NTENSORS];
  memcpy(big, rm.tensors, sizeof big);
  int64_t n = (int64_t)MLK_MAX_TASKS_PER_OP + 1;
  big[T_H] = (MlkTensorDesc){"h", MLK_F32, MLK_TENSOR_TEMP, 1, {n, 0, 0, 0}, n, NULL, 0};
  big[T_B] = (MlkTensorDesc){"b", MLK_F32, MLK_TENSOR_INPUT, 1, {n, 0, 0, 0}, n, NULL, 0};
  ops[0] = (MlkOpDesc)RT_OP("relu", MLK_OP_ELTWISE, MLK_FN_RELU, T_H, T_B, -1, -1, n, 0, 1, n);
  rm.desc.tensors = big;
  rm.desc.ops = ops;
  rm.desc.nops = 1;
  rm.desc.nevents = 0;
  rm.desc.nevent_refs = 0;
  rm.desc.ncounters = 0;
  rm.desc.nkernels = 1;
  rm.kernels[0].nops = 1;
  expect_invalid(be, &rm, "op 0 'relu' has 2147483648 tasks, more than 2147483647");
}

/* ABI 2: batch dims, caches and the new op kinds, one broken field of the tiny Llama at a time.
 * Ops: 0 gather, 1-3 q/k/v matvecs, 4-5 rope, 6 kv_append, 7 attention, 8 matvec (wo), ...,
 * 25 rmsnorm, 26 logits, 27 argmax. Tensors: 0 embed, 2 wqkv, 9 kv, 10 kv.pages, 11 tokens,
 * 12 pos, 15 x, 16 q.0, ... */
static void expect_bad_desc(mlk_backend *be, const MlkModelDesc *d, const char *needle) {
  mlk_model *m = (mlk_model *)&m;
  expect_error(mlk_model_create(be, d, &m), MLK_ERR_INVALID, needle);
  CHECK(m == NULL, "create failed but set *out");
  if (m)
    mlk_model_free(m);
}

static void test_validation_abi2(mlk_backend *be) {
  static Llama s;
  RtB *b = &s.b;
#define CASE(mutation, needle)                                                                    \
  do {                                                                                            \
    build(&s, MLK_SCHED_STATIC);                                                                  \
    mutation;                                                                                     \
    expect_bad_desc(be, &b->desc, needle);                                                        \
  } while (0)
  build(&s, MLK_SCHED_STATIC);
  CHECK_OK(mlk_desc_validate(&b->desc));
  CHECK(!strcmp(b->tensors[9].name, "kv") && !strcmp(b->ops[6].name, "kv_append@llama:10[l=0]") &&
        b->ops[27].kind == MLK_OP_ARGMAX && !strcmp(b->tensors[16].name, "q.0"), "the indices above");
  /* batch dims and batched tensors */
  CASE(b->desc.batch_min = 5, "batch dim 'B' is 5..4, must satisfy 1 <= min <= max <= 65536");
  CASE(b->desc.batch_max = 70000, "batch dim 'B' is 1..70000");
  CASE(b->desc.batch_name = NULL, "no batch dim (batch_name is NULL), but batch_min..batch_max is 1..4, "
       "not 1..1");
  CASE((b->tensors[11].shape[0] = 3, b->tensors[11].numel = 3),
       "tensor 11 'tokens' is batched: shape[0] must be batch_max 4, got 3");
  CASE(b->tensors[0].batched = 1, "tensor 0 'embed' is a batched param: params have no batch dim");
  CASE(b->tensors[11].batched = 2, "tensor 11 'tokens': batched is 2, must be 0 or 1");
  CASE(b->ops[4].batched = 0, "op 4 'rope@llama:8[l=0]' is not batched, but its output 'qr.0' is batched");
  CASE(b->ops[1].in[0].offset = 5, "op 1 'matvec@llama:5[l=0]': x 'x' has rows of 32 elements (offset 5), "
       "the op reads rows of 32 columns at offset 0");
  CASE(b->ops[1].in[1].offset = 2 * QKV * D - 100, "op 1 'matvec@llama:5[l=0]': W 'wqkv' has 4096 "
       "elements, the op needs 1024 from offset 3996");
  CASE(b->ops[1].in[1].offset = -1, "W 'wqkv' has a negative offset -1");
  /* biases (ABI 6): a bf16 vector of the op's n columns on a matvec or eltwise, nothing elsewhere */
  CASE(b->ops[1].in[4] = A(15), "op 1 'matvec@llama:5[l=0]': bias 'x' is f32, expected bf16");
  CASE(b->ops[1].in[4] = AO(0, V * D - 10), "op 1 'matvec@llama:5[l=0]': bias 'embed' has 1280 "
       "elements, the op needs 32 from offset 1270");
  CASE(b->ops[11].in[4] = A(15), "op 11 'mul@llama:15[l=0]': bias 'x' is f32, expected bf16");
  CASE(b->ops[6].in[4] = A(0), "op 6 'kv_append@llama:10[l=0]': in[4] is tensor 0, but this "
       "kv_append takes 4 operands");
  CASE(b->ops[25].in[4] = A(0), "op 25 'rmsnorm@llama:20': in[4] is tensor 0, but this rmsnorm "
       "takes 2 operands");
  /* caches */
  CASE(b->desc.ncaches = -1, "negative count");
  CASE(b->desc.ncaches = 0, "tensor 9 'kv' is a KV cache pool but belongs to no cache");
  CASE(b->caches[0].dtype = MLK_F16, "cache 0 'kv' is f16: only bf16 KV caches are implemented");
  CASE(b->caches[0].tensor = 11, "cache 0 'kv': tensor 11 is not a KV cache pool (MLK_TENSOR_CACHE)");
  CASE(b->caches[0].pages_tensor = 9, "cache 0 'kv': pages_tensor 9 is not a page table");
  CASE(b->caches[0].page = 0, "cache 0 'kv': layers 2, kv_heads 2, head_dim 8 and page 0 must all be in "
       "[1, 65536]");
  CASE(b->tensors[9].numel = 5, "tensor 9 'kv' is a KV cache pool: numel must be 0 and batched 0");
  CASE(b->tensors[10].dtype = MLK_F32, "cache 0 'kv': page table 'kv.pages' is f32, expected i32");
  /* cache ops */
  CASE(b->ops[6].layer = 2, "op 6 'kv_append@llama:10[l=0]': layer 2 is outside cache 'kv' (2 layers)");
  CASE(b->ops[6].cache = 1, "op 6 'kv_append@llama:10[l=0]': cache 1 out of range (1 caches)");
  CASE(b->ops[6].out.tensor = 15, "op 6 'kv_append@llama:10[l=0]': the output must be the pool of cache "
       "'kv' (tensor 9) at offset 0, got tensor 15 at offset 0");
  CASE(b->ops[7].in[3].tensor = 12, "op 7 'attention@llama:11[l=0]': in[3] must be the page table of cache "
       "'kv' (tensor 10) at offset 0, got tensor 12");
  CASE(b->ops[7].in[1].offset = 8, "op 7 'attention@llama:11[l=0]': in[1] must be the pool of cache 'kv'");
  CASE(b->ops[7].heads = 3, "op 7 'attention@llama:11[l=0]': heads 3 must be a multiple of kv_heads 2");
  /* heads * head_dim would overflow (fuzz_desc) */
  CASE(b->ops[7].heads = (int64_t)1 << 62, "op 7 'attention@llama:11[l=0]': heads 4611686018427387904 "
       "must be a multiple of kv_heads 2 (at most 65536 times)");
  CASE(b->ops[4].heads = (int64_t)1 << 62, "op 4 'rope@llama:8[l=0]': 4611686018427387904 heads of 8 are "
       "not n = 32 columns");
  CASE(b->ops[7].head_dim = 4, "kv_heads 2 and head_dim 4 differ from cache 'kv' (2, 8)");
  CASE((b->ops[6].tile = 12, b->ops[6].ntasks = 2), "op 6 'kv_append@llama:10[l=0]': n 16 must be "
       "kv_heads * head_dim = 16 and tile 12 a multiple of head_dim");
  CASE(b->ops[7].out.tensor = b->ops[7].in[0].tensor, "output and q are the same tensor");
  CASE(b->ops[1].in[1].tensor = 9, "op 1 'matvec@llama:5[l=0]': W 'kv' is a KV cache pool: only kv_append "
       "and attention take one");
  CASE(b->ops[6].in[2].tensor = 15, "op 6 'kv_append@llama:10[l=0]': positions 'x' is f32, expected i32");
  /* a kv_append that rotates its keys (a fused rope) is held to the rope's attributes */
  CASE(b->ops[6].theta = -1.0f, "op 6 'kv_append@llama:10[l=0]': theta -1 must be finite and > 0");
  CASE((b->ops[6].theta = 10000.0f, b->ops[6].rope_factor = 8.0f, b->ops[6].rope_low_freq = 1.0f,
        b->ops[6].rope_high_freq = 0.5f),
       "op 6 'kv_append@llama:10[l=0]': Llama 3 rope scaling (factor 8) needs 0 < low_freq 1 < high_freq 0.5");
  /* rope, gather, rmsnorm, argmax, eltwise */
  CASE(b->ops[4].head_dim = 7, "op 4 'rope@llama:8[l=0]': head_dim 7 must be even and >= 2 and divide n 32");
  CASE(b->ops[4].rope_high_freq = 1.0f, "op 4 'rope@llama:8[l=0]': Llama 3 rope scaling (factor 8) needs "
       "0 < low_freq 1 < high_freq 1 and original_max_pos 16 >= 1");
  CASE(b->ops[4].theta = 0, "theta 0 must be finite and > 0");
  CASE(b->ops[4].fn = MLK_FN_RELU, "op 4 'rope@llama:8[l=0]': fn is 1, but this rope takes none");
  CASE(b->ops[0].in[0].tensor = 15, "op 0 'gather@llama:3': ids 'x' is f32, expected i32");
  CASE(b->ops[0].in[1].offset = V * D - D + 1, "op 0 'gather@llama:3': table 'embed' has 1280 elements, the "
       "op needs 32 from offset 1249");
  CASE(b->ops[0].k = 3, "op 0 'gather@llama:3': k is 3, must be 0 for this gather");
  CASE((b->ops[25].tile = 16, b->ops[25].ntasks = 2), "op 25 'rmsnorm@llama:20': an rmsnorm is one task "
       "(tile >= n), got 2");
  CASE(b->ops[25].eps = NAN, "op 25 'rmsnorm@llama:20': eps is nan, must be finite and >= 0");
  CASE(b->ops[1].eps = -1, "op 1 'matvec@llama:5[l=0]': eps is -1, must be finite and >= 0");
  CASE((b->ops[27].n = 2, b->ops[27].ntasks = 2), "op 27 'argmax@llama:21': an argmax has n = 1 output "
       "column, got 2");
  CASE(b->ops[27].k = 0, "op 27 'argmax@llama:21': an argmax has k in [1, 2^31) inputs, got 0");
  CASE((b->ops[27].split = 1), "op 27 'argmax@llama:21': a split argmax has split in [2, 1024], "
       "n = 2 * split partial columns and tile 2, got split 1, n 1, tile 1");
  CASE(b->ops[27].kind = MLK_OP_ARGMAX_REDUCE, "op 27 'argmax@llama:21': k is 40, must be 0 for "
       "this argmax_reduce");
  CASE((b->ops[27].kind = MLK_OP_ARGMAX_REDUCE, b->ops[27].k = 0, b->ops[27].split = 3),
       "op 27 'argmax@llama:21': partials 'logits' has rows of 40 elements (offset 0), the op reads "
       "rows of 6 columns at offset 0");
  CASE((b->ops[27].kind = MLK_OP_ARGMAX_REDUCE, b->ops[27].k = 0),
       "op 27 'argmax@llama:21': an argmax_reduce has split in [2, 1024] and n = 1, got split 0, n 1");
  CASE(b->ops[27].out.tensor = 13, "op 27 'argmax@llama:21': output 'logits' is f32, expected i32");
  /* the argmax turned into a sample, reading a sampling tensor added after the others */
#define SAMPLE(t, k, p) (b->ops[27].kind = MLK_OP_SAMPLE, b->ops[27].temperature = (t), \
                         b->ops[27].top_k = (k), b->ops[27].top_p = (p),                 \
                         b->ops[27].in[1] = A(rtb_sampling(b)))
  build(&s, MLK_SCHED_STATIC);
  SAMPLE(0.0f, 50, 1.0f); /* temperature 0: greedy */
  CHECK_OK(mlk_desc_validate(&b->desc));
  CASE(SAMPLE(-1.0f, 50, 1.0f), "op 27 'argmax@llama:21': a sample needs temperature >= 0 (got -1), "
       "0 < top_p <= 1 (got 1) and top_k in [1, 1024] (got 50)");
  CASE(SAMPLE(INFINITY, 50, 1.0f), "temperature >= 0 (got inf)");
  CASE(SAMPLE(1.0f, 1025, 1.0f), "top_k in [1, 1024] (got 1025)");
  CASE(SAMPLE(1.0f, 0, 1.0f), "top_k in [1, 1024] (got 0)");
  CASE(SAMPLE(1.0f, 5, 1.5f), "0 < top_p <= 1 (got 1.5)");
  CASE(SAMPLE(1.0f, 5, NAN), "0 < top_p <= 1 (got nan)");
  CASE((SAMPLE(1.0f, 5, 0.5f), b->ops[27].in[1].tensor = -1), "op 27 'argmax@llama:21': in[1] must "
       "be the model's sampling tensor (sampling tensor) at offset 0, got tensor -1 at offset 0");
  CASE((SAMPLE(1.0f, 5, 0.5f), b->ops[27].in[1].tensor = 12), "op 27 'argmax@llama:21': in[1] must "
       "be the model's sampling tensor (sampling tensor) at offset 0, got tensor 12 at offset 0");
  CASE((SAMPLE(1.0f, 5, 0.5f), b->ops[27].in[1].offset = 4), "got tensor 39 at offset 4");
  CASE((SAMPLE(1.0f, 5, 0.5f), b->ops[27].in[2] = A(12)), "op 27 'argmax@llama:21': in[2] is tensor "
       "12, but this sample takes 2 operands");
  CASE((SAMPLE(1.0f, 5, 0.5f), b->tensors[39].shape[1] = 3, b->tensors[39].numel = 12),
       "tensor 39 'sampling' is a sampling tensor: it must be f32[batch_max, 4], batched, numel 16");
  CASE((SAMPLE(1.0f, 5, 0.5f), b->tensors[39].dtype = MLK_BF16), "tensor 39 'sampling' is a sampling "
       "tensor: it must be f32[batch_max, 4]");
  CASE((SAMPLE(1.0f, 5, 0.5f), b->tensors[39].batched = 0), "tensor 39 'sampling' is a sampling "
       "tensor: it must be f32[batch_max, 4], batched");
  CASE((SAMPLE(1.0f, 5, 0.5f), rtb_act(b, "sampling2", MLK_F32, MLK_TENSOR_SAMPLING, 4)),
       "tensors 39 'sampling' and 40 'sampling2' are both sampling tensors: a model has at most one");
  CASE((SAMPLE(1.0f, 5, 0.5f), b->ops[26].in[0] = A(39)), "op 26 'matvec@llama:20': x 'sampling' is "
       "the sampling tensor: only a sample takes it, as in[1]");
  CASE((SAMPLE(1.0f, 5, 0.5f), b->tensors[39].kind = (MlkTensorKind)7), "tensor 39 'sampling': kind 7 "
       "is not a valid MlkTensorKind");
#undef SAMPLE
  CASE(b->ops[11].fn = (MlkFn)9, "an elementwise function must be none, relu, silu, add or mul, got fn 9");
  CASE(b->ops[11].in[3].tensor = 15, "op 11 'mul@llama:15[l=0]': in[3] is tensor 15, but this eltwise takes "
       "2 operands");
  char kind_needle[128]; /* the first number past the kinds, whatever their count */
  snprintf(kind_needle, sizeof kind_needle, "op 1 'matvec@llama:5[l=0]': kind %d is not a valid MlkOpKind",
           MLK_OP_LAST + 1);
  CASE(b->ops[1].kind = (MlkOpKind)(MLK_OP_LAST + 1), kind_needle);
  CASE(b->ops[4].split = 2, "op 4 'rope@llama:8[l=0]': split is 2, must be 0 for this rope");
  CASE(b->ops[1].split = 3, "op 1 'matvec@llama:5[l=0]': split is 3, must be 0 or a power of two up "
       "to 16");
  CASE(b->ops[1].split = 32, "op 1 'matvec@llama:5[l=0]': split is 32, must be 0 or a power of two");
  CASE(b->ops[1].batched = 0, "op 1 'matvec@llama:5[l=0]' is not batched");
  CASE(b->ops[1].min_chunk = 4, "op 1 'matvec@llama:5[l=0]': min_chunk is 4, must be 0 unless the op is a "
       "split attention");
  CASE(b->ops[7].split = 33, "op 7 'attention@llama:11[l=0]': split is 33, must be in [0, 32]");
  /* n = heads * head_dim with a split: the form that merges its own chunks (mlk_attn_folds) */
  CASE(b->ops[7].split = 3, "op 7 'attention@llama:11[l=0]': a split attention merging its 3 chunks "
       "needs tile 16 = kvh * (heads / kv_heads) * head_dim / split with kv_heads 2 a multiple of kvh");
  CASE((b->ops[7].split = 2, b->ops[7].tile = INT64_MAX / 2, b->ops[7].ntasks = 1),
       "op 7 'attention@llama:11[l=0]': a split attention merging its 2 chunks needs tile");
  CASE(b->ops[1].batched = 2, "op 1 'matvec@llama:5[l=0]': batched is 2, must be 0 or 1");
  /* kernels and events */
  CASE(b->kernels[0].schedule = (MlkSchedule)7, "kernel 0 'decode': schedule 7 is not a valid MlkSchedule");
  CASE(b->events[0].n = 1000, "but tensor 'x' has 32 columns");
#undef CASE
  /* A split attention (3 chunks, a task per kv head): op 7 writes the partials, op 8 reduces. */
#define CASE(mutation, needle)                                                                    \
  do {                                                                                            \
    build_split(&s, MLK_SCHED_STATIC, 3, 1);                                                      \
    mutation;                                                                                     \
    expect_bad_desc(be, &b->desc, needle);                                                        \
  } while (0)
  build_split(&s, MLK_SCHED_STATIC, 3, 1);
  CHECK_OK(mlk_desc_validate(&b->desc));
  CHECK(b->ops[7].kind == MLK_OP_ATTENTION && b->ops[8].kind == MLK_OP_ATTN_REDUCE, "split op indices");
  CASE(b->ops[8].split = 4, "op 8 'attn_reduce@llama:11[l=0]': partials 'part.0' has rows of 120 "
       "elements (offset 0), the op reads rows of 160 columns at offset 0");
  CASE(b->ops[8].split = 0, "op 8 'attn_reduce@llama:11[l=0]': split is 0, must be in [1, 32]");
  CASE((b->ops[8].tile = 48, b->ops[8].ntasks = 1), "op 8 'attn_reduce@llama:11[l=0]': n 32 must be "
       "heads * head_dim = 32 and tile 48 a multiple of (heads / kv_heads) * head_dim = 16");
  CASE(b->ops[8].in[1].tensor = 12, "op 8 'attn_reduce@llama:11[l=0]': in[1] is tensor 12, but this "
       "attn_reduce takes 1 operand");
  CASE((b->ops[7].n = 100, b->ops[7].ntasks = 5), "op 7 'attention@llama:11[l=0]': split into 3 chunks, "
       "tile 20 must be kvh records");
  CASE(b->ops[8].heads = 3, "op 8 'attn_reduce@llama:11[l=0]': kv_heads 2 and head_dim 8 must be in "
       "[1, 65536], heads 3 a multiple of kv_heads");
#undef CASE
  /* No batch dim: 0..0 (unset) is taken as 1..1; tensors and ops must then not be batched. */
  RtModel rm;
  rt_mlp_init(&rm);
  rm.desc.batch_min = rm.desc.batch_max = 0;
  CHECK_OK(mlk_desc_validate(&rm.desc));
  rm.tensors[T_X].batched = 1;
  expect_bad_desc(be, &rm.desc, "tensor 0 'x' is batched, but the model has no batch dim");
  rt_mlp_init(&rm);
  rm.ops[0].batched = 1;
  expect_bad_desc(be, &rm.desc, "op 0 'matvec@mlp.mlk:3' is batched, but the model has no batch dim");
}

static void test_backends(void) {
  mlk_backend *be = (mlk_backend *)&be;
  setenv("MLK_BACKEND", "tpu", 1);
  expect_error(mlk_backend_create(MLK_BACKEND_AUTO, &be), MLK_ERR_INVALID,
               "MLK_BACKEND='tpu' is not gpu, cpu or auto");
  CHECK(be == NULL, "failed create set *out");

  /* Here there is no GPU; on a GPU machine these must succeed. */
  setenv("MLK_BACKEND", "gpu", 1);
  mlk_status st = mlk_backend_create(MLK_BACKEND_AUTO, &be);
  if (st == MLK_OK) {
    CHECK(mlk_backend_is_gpu(be), "MLK_BACKEND=gpu gave %s", mlk_backend_name(be));
    mlk_backend_free(be);
  } else {
    expect_error(st, MLK_ERR_NO_GPU, "no GPU: ");
    CHECK(!strncmp(mlk_last_error(), "no GPU: ", 8), "'%s'", mlk_last_error());
    printf("  MLK_BACKEND=gpu: %s\n", mlk_last_error());
  }
  st = mlk_backend_create(MLK_BACKEND_GPU, &be);
  if (st == MLK_OK)
    mlk_backend_free(be);
  else
    expect_error(st, MLK_ERR_NO_GPU, "no GPU: ");

  unsetenv("MLK_BACKEND");
  CHECK_OK(mlk_backend_create(MLK_BACKEND_AUTO, &be));
  if (be) {
    printf("  auto: %s; note: %s\n", mlk_backend_name(be), mlk_backend_note(be));
    if (mlk_backend_is_gpu(be))
      CHECK(!strcmp(mlk_backend_note(be), ""), "note '%s'", mlk_backend_note(be));
    else
      CHECK(!strncmp(mlk_backend_note(be), "no GPU: ", 8), "note '%s'", mlk_backend_note(be));
    mlk_backend_free(be);
  }
  setenv("MLK_BACKEND", "cpu", 1);
  CHECK_OK(mlk_backend_create(MLK_BACKEND_AUTO, &be));
  if (be) {
    CHECK(!mlk_backend_is_gpu(be) && !strcmp(mlk_backend_note(be), ""), "MLK_BACKEND=cpu");
    mlk_backend_free(be);
  }
  unsetenv("MLK_BACKEND");

  setenv("MLK_SIM_THREADS", "0", 1);
  expect_error(mlk_backend_create_cpu(NULL, &be), MLK_ERR_INVALID, "MLK_SIM_THREADS='0'");
  setenv("MLK_SIM_THREADS", "3x", 1);
  expect_error(mlk_backend_create_cpu(NULL, &be), MLK_ERR_INVALID, "MLK_SIM_THREADS='3x'");
  setenv("MLK_SIM_THREADS", "3", 1);
  CHECK_OK(mlk_backend_create_cpu(NULL, &be));
  if (be) {
    CHECK(!strcmp(mlk_backend_name(be), "CPU simulator (3 SMs, deterministic, seed 1)"), "'%s'",
          mlk_backend_name(be));
    mlk_backend_free(be);
  }
  unsetenv("MLK_SIM_THREADS");
  mlk_sim_options bad = {.threads = -1};
  expect_error(mlk_backend_create_cpu(&bad, &be), MLK_ERR_INVALID, "threads");
  mlk_sim_options badsched = {.schedule = (mlk_sim_schedule)7};
  expect_error(mlk_backend_create_cpu(&badsched, &be), MLK_ERR_INVALID,
               "simulator schedule 7 is not as compiled (0), static (1) or dynamic (2)");
  mlk_sim_options baddrop = {.drop_event = -1};
  expect_error(mlk_backend_create_cpu(&baddrop, &be), MLK_ERR_INVALID, "simulator drop_event must be >= 0");
  mlk_sim_options badmode = {.mode = (mlk_sim_mode)3};
  expect_error(mlk_backend_create_cpu(&badmode, &be), MLK_ERR_INVALID,
               "simulator mode 3 is not default (0), deterministic (1) or threaded (2)");
  mlk_sim_options baddepth = {.pct_depth = 17};
  expect_error(mlk_backend_create_cpu(&baddepth, &be), MLK_ERR_INVALID,
               "simulator pct_depth must be in [1, 16] (0: default), got 17");
  mlk_sim_options badexplore = {.explore = -2};
  expect_error(mlk_backend_create_cpu(&badexplore, &be), MLK_ERR_INVALID,
               "simulator explore must be in [1, 1000000] (0: default), got -2");
  mlk_sim_options threxplore = {.explore = 2, .mode = MLK_SIM_THREADED};
  expect_error(mlk_backend_create_cpu(&threxplore, &be), MLK_ERR_INVALID,
               "simulator explore = 2: exploring schedules needs the deterministic mode");
  setenv("MLK_SIM_EXPLORE", "x", 1);
  expect_error(mlk_backend_create_cpu(NULL, &be), MLK_ERR_INVALID,
               "environment variable MLK_SIM_EXPLORE='x' is not an integer in [1, 1000000]");
  setenv("MLK_SIM_EXPLORE", "12", 1);
  CHECK_OK(mlk_backend_create_cpu(NULL, &be));
  if (be) {
    CHECK(!strcmp(mlk_backend_name(be), "CPU simulator (8 SMs, deterministic, seed 1, 12 schedules per run)"),
          "'%s'", mlk_backend_name(be));
    mlk_backend_free(be);
  }
  unsetenv("MLK_SIM_EXPLORE");
  mlk_sim_options detdelay = {.max_delay_us = 5, .mode = MLK_SIM_DETERMINISTIC};
  expect_error(mlk_backend_create_cpu(&detdelay, &be), MLK_ERR_INVALID,
               "simulator max_delay_us = 5: random delays apply to the threaded mode only");
  /* Delays with the default mode take the environment's: deterministic unless it says threaded. */
  mlk_sim_options envdelay = {.max_delay_us = 5};
  expect_error(mlk_backend_create_cpu(&envdelay, &be), MLK_ERR_INVALID, "apply to the threaded mode only");
  setenv("MLK_SIM_MODE", "threaded", 1);
  CHECK_OK(mlk_backend_create_cpu(&envdelay, &be));
  if (be) {
    CHECK(!strcmp(mlk_backend_name(be), "CPU simulator (8 threads, seed 1, delays up to 5 us)"), "'%s'",
          mlk_backend_name(be));
    mlk_backend_free(be);
  }
  setenv("MLK_SIM_MODE", "racy", 1);
  expect_error(mlk_backend_create_cpu(NULL, &be), MLK_ERR_INVALID,
               "environment variable MLK_SIM_MODE='racy' is not deterministic or threaded");
  unsetenv("MLK_SIM_MODE");
  setenv("MLK_SIM_PCT_DEPTH", "0", 1);
  expect_error(mlk_backend_create_cpu(NULL, &be), MLK_ERR_INVALID,
               "environment variable MLK_SIM_PCT_DEPTH='0' is not an integer in [1, 16]");
  unsetenv("MLK_SIM_PCT_DEPTH");
  setenv("MLK_SIM_CHECK", "2", 1);
  expect_error(mlk_backend_create_cpu(NULL, &be), MLK_ERR_INVALID,
               "environment variable MLK_SIM_CHECK='2' is not an integer in [0, 1]");
  setenv("MLK_SIM_CHECK", "0", 1);
  CHECK_OK(mlk_backend_create_cpu(NULL, &be));
  if (be) {
    CHECK(!strcmp(mlk_backend_name(be), "CPU simulator (8 SMs, deterministic, seed 1, checker off)"),
          "'%s'", mlk_backend_name(be));
    mlk_backend_free(be);
  }
  unsetenv("MLK_SIM_CHECK");
  mlk_sim_options all = {.threads = 2, .seed = 4, .max_delay_us = 9, .schedule = MLK_SIM_STATIC,
                         .no_check = 1, .drop_event = 3, .mode = MLK_SIM_THREADED};
  CHECK_OK(mlk_backend_create_cpu(&all, &be));
  if (be) {
    CHECK(!strcmp(mlk_backend_name(be), "CPU simulator (2 threads, seed 4, delays up to 9 us, static "
                                        "schedule, checker off, dropping event 2)"),
          "'%s'", mlk_backend_name(be));
    mlk_backend_free(be);
  }
  mlk_sim_options alldet = {.threads = 3, .seed = 5, .pct_depth = 1, .schedule = MLK_SIM_DYNAMIC,
                            .drop_event = 1};
  CHECK_OK(mlk_backend_create_cpu(&alldet, &be));
  if (be) {
    CHECK(!strcmp(mlk_backend_name(be), "CPU simulator (3 SMs, deterministic, seed 5, PCT depth 1, "
                                        "dynamic schedule, dropping event 0)"),
          "'%s'", mlk_backend_name(be));
    mlk_backend_free(be);
  }
  mlk_sim_options defaults = {0};
  CHECK_OK(mlk_backend_create_cpu(&defaults, &be));
  if (be) {
    CHECK(!strcmp(mlk_backend_name(be), "CPU simulator (8 SMs, deterministic, seed 1)"), "'%s'",
          mlk_backend_name(be));
    mlk_backend_free(be);
  }
  mlk_backend_free(NULL);
  mlk_model_free(NULL);
}

static uint32_t bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static float from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static void test_helpers(void) {
  CHECK(!strcmp(mlk_status_name(MLK_OK), "MLK_OK"), "status name");
  CHECK(!strcmp(mlk_status_name(MLK_ERR_DEADLOCK), "MLK_ERR_DEADLOCK"), "status name");
  CHECK(!strcmp(mlk_status_name((mlk_status)99), "MLK_ERR_UNKNOWN"), "status name");
  static const char *names[] = {"f32", "bf16", "f16", "i32", "i8", "u8"};
  static const size_t sizes[] = {4, 2, 2, 4, 1, 1};
  for (int t = 0; t < MLK_DTYPE_COUNT; t++)
    CHECK(!strcmp(mlk_dtype_name((MlkDType)t), names[t]) && mlk_dtype_size((MlkDType)t) == sizes[t],
          "dtype %d", t);
  CHECK(mlk_dtype_size(MLK_DTYPE_COUNT) == 0 && !strcmp(mlk_dtype_name(MLK_DTYPE_COUNT), "?"), "bad dtype");
  CHECK(mlk_last_error() != NULL, "last error is never NULL");

  CHECK(mlk_f32_to_bf16(1.0f) == 0x3f80, "1.0");
  CHECK(mlk_f32_to_bf16(-0.0f) == 0x8000, "-0");
  CHECK(mlk_f32_to_bf16(from_bits(0x3f808000)) == 0x3f80, "tie to even (down)");
  CHECK(mlk_f32_to_bf16(from_bits(0x3f818000)) == 0x3f82, "tie to even (up)");
  CHECK(mlk_f32_to_bf16(from_bits(0x3f808001)) == 0x3f81, "above half");
  CHECK(mlk_f32_to_bf16(from_bits(0x3f807fff)) == 0x3f80, "below half");
  CHECK(mlk_f32_to_bf16(INFINITY) == 0x7f80 && mlk_f32_to_bf16(-INFINITY) == 0xff80, "inf");
  CHECK(mlk_f32_to_bf16(from_bits(0x7f7fffff)) == 0x7f80, "max float rounds to inf");
  /* Signalling NaN with only low payload bits: truncation would give an infinity. */
  uint16_t nan = mlk_f32_to_bf16(from_bits(0x7f800001));
  CHECK(isnan(mlk_bf16_to_f32(nan)), "sNaN -> 0x%04x is not NaN", nan);
  nan = mlk_f32_to_bf16(from_bits(0xffffffff));
  CHECK(isnan(mlk_bf16_to_f32(nan)) && (nan & 0x8000), "negative NaN -> 0x%04x", nan);
  CHECK(isnan(mlk_bf16_to_f32(mlk_f32_to_bf16(NAN))), "NaN");
  int bad = 0;
  for (uint32_t h = 0; h < 0x10000; h++) {
    float f = mlk_bf16_to_f32((uint16_t)h);
    if (bits(f) != h << 16 || (!isnan(f) && mlk_f32_to_bf16(f) != h) ||
        (isnan(f) && !isnan(mlk_bf16_to_f32(mlk_f32_to_bf16(f)))))
      bad++;
  }
  CHECK(bad == 0, "%d bf16 values do not round-trip", bad);
}

/* The last error is per thread (and a thread's message buffer is freed when it exits). */
static void *other_thread(void *arg) {
  (void)arg;
  mlk_sim_options bad = {.threads = -5};
  mlk_backend *be;
  mlk_backend_create_cpu(&bad, &be);
  return strstr(mlk_last_error(), "got -5") ? (void *)1 : NULL;
}

static void test_thread_local(void) {
  mlk_sim_options bad = {.threads = -1};
  mlk_backend *be;
  mlk_backend_create_cpu(&bad, &be);
  char mine[256];
  snprintf(mine, sizeof mine, "%s", mlk_last_error());
  pthread_t t;
  void *ret = NULL;
  CHECK(pthread_create(&t, NULL, other_thread, NULL) == 0, "pthread_create");
  pthread_join(t, &ret);
  CHECK(ret == (void *)1, "the other thread did not see its own error");
  CHECK(!strcmp(mlk_last_error(), mine), "'%s' changed to '%s'", mine, mlk_last_error());
}

int main(void) {
  rt_watchdog(60);
  rt_seed();
  unsetenv("MLK_WAIT_TIMEOUT_MS");
  unsetenv("MLK_SIM_MODE");
  unsetenv("MLK_SIM_EXPLORE");
  rt_new_params(&data);
  rt_new_inputs(&data);
  test_helpers();
  test_thread_local();
  test_backends();
  mlk_sim_options opt = {.threads = 4, .seed = 1};
  mlk_backend *be;
  CHECK_OK(mlk_backend_create_cpu(&opt, &be));
  if (be) {
    test_tensors(be);
    test_validation(be);
    test_validation_abi2(be);
    mlk_backend_free(be);
  }
  return rt_finish("runtime_errors");
}
