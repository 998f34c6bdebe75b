/* fuzz_desc.c: a libFuzzer harness for the runtime's validation of model descriptions.
 *
 * A generated model.c hands libmlkrt an MlkModelDesc, and mlk_model_create must either refuse it
 * with MLK_ERR_INVALID and a message naming what is wrong, or accept a model that then runs on
 * the simulator without reading or writing outside its buffers. Each input is read as a sequence
 * of choices (a short input reads as zeros past its end):
 *   1. a model built the way mlkc lowers one (rt_build.h adds its events): a batch dim or none,
 *      maybe a paged KV cache, one to three kernels of one to six ops of every kind, each with
 *      sizes, tiles, operands (new tensors, or earlier ones of the right columns) and parameters
 *      drawn from the input, so that most inputs are valid and run; and maybe a mesh of 2 or 3
 *      ranks, the last kernel then cut at an all-reduce into two segments (as mlkc's cut pass
 *      makes them), which runs as a world;
 *   2. then up to six mutations, each one field of the description (an op kind, a tensor index,
 *      a shape, an offset, an event map, a count, a name set to NULL, ...) overwritten with an
 *      interesting value (0, -1, 1, 2^31, a neighbour of the old value, ...) or raw input bytes.
 * The description is then created on the deterministic simulator (1 to 4 SMs, either schedule,
 * the dependency checker on), as a world of its ranks when it has several. Refused: the status must be MLK_ERR_INVALID and the message must
 * say the description is invalid and why. Accepted: every param and input is filled, and every
 * kernel runs at two batch sizes; a run may succeed, be refused (an input out of range), fail
 * the checker (the events are a claim, and a mutated one may be wrong) or report a deadlock,
 * and nothing else. AddressSanitizer and UndefinedBehaviorSanitizer watch all of it. Models
 * whose buffers or tasks exceed the harness's budget are validated but not created (a valid
 * model may be large; the harness cannot afford to run one).
 *
 * Build: see tests/fuzz/fuzz_desc.cmake (clang, -fsanitize=fuzzer,address,undefined, the runtime
 * compiled in).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "rt_build.h"

/* What the harness affords per input. */
enum { BUDGET_BYTES = 16 << 20, BUDGET_TASKS = 4096, FUZZ_CONTEXT = 12 };
#define BUDGET_WORK 2e6 /* multiply-adds of one run, roughly */

/* ---- reading choices ---- */

typedef struct Choices {
  const uint8_t *p;
  size_t n, at;
} Choices;

static uint8_t byte(Choices *c) { return c->at < c->n ? c->p[c->at++] : 0; }

/* A choice in [0, n). */
static int pick(Choices *c, int n) { return n <= 1 ? 0 : byte(c) % n; }

/* A value in [lo, hi]. */
static int64_t range(Choices *c, int64_t lo, int64_t hi) {
  uint16_t v = (uint16_t)(byte(c) | byte(c) << 8);
  return lo + (int64_t)(v % (uint64_t)(hi - lo + 1));
}

/* ---- step 1: a model as mlkc would lower it ---- */

static RtB b;

typedef struct Act {
  int tensor;
  int64_t cols;
  MlkDType dt;
} Act;

static Act acts[RTB_MAX_T];
static int nacts;

static const char *const kNames[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"};

/* An activation of `cols` columns and dtype dt: an earlier one (any kind, when `readable`; else
 * a temp or output, which an op may write) or a new one of kind `kind`. */
static int act(Choices *c, int64_t cols, MlkDType dt, MlkTensorKind kind, int readable) {
  if (pick(c, 3)) {
    for (int i = nacts - 1; i >= 0; i--) {
      MlkTensorKind k = b.tensors[acts[i].tensor].kind;
      if (acts[i].cols == cols && acts[i].dt == dt &&
          (readable || k == MLK_TENSOR_TEMP || k == MLK_TENSOR_OUTPUT))
        return acts[i].tensor;
    }
  }
  if (b.desc.ntensors >= RTB_MAX_T - 4 && nacts > 0)
    return acts[nacts - 1].tensor; /* full: a wrong shape, which validation must refuse */
  int t = rtb_act(&b, rtb_str(&b, "%s%d", kNames[nacts % 12], nacts), dt, kind, cols);
  acts[nacts++] = (Act){t, cols, dt};
  return t;
}

static int input(Choices *c, int64_t cols, MlkDType dt) {
  return act(c, cols, dt, pick(c, 4) ? MLK_TENSOR_INPUT : MLK_TENSOR_TEMP, 1);
}

static int output(Choices *c, int64_t cols, MlkDType dt) {
  return act(c, cols, dt, pick(c, 2) ? MLK_TENSOR_OUTPUT : MLK_TENSOR_TEMP, 0);
}

/* A bf16 param holding at least `need` elements, and the offset of the op's slice in it. */
static MlkArg param(Choices *c, int64_t need) {
  int64_t extra = pick(c, 3) ? 0 : range(c, 1, 16);
  int t = rtb_param(&b, rtb_str(&b, "w%d", b.desc.ntensors), need + extra, 0, 0);
  return AO(t, extra ? range(c, 0, extra) : 0);
}

/* A tile of an op of n columns: the whole, one, or something between. */
static int64_t tile_of(Choices *c, int64_t n) {
  switch (pick(c, 4)) {
  case 0: return n;
  case 1: return 1;
  default: return range(c, 1, n);
  }
}

static void gen_op(Choices *c, int cache, int64_t layers) {
  const MlkCacheDesc *cd = cache >= 0 ? &b.caches[cache] : NULL;
  const char *name = rtb_str(&b, "op%d@fuzz:%d", b.desc.nops, b.desc.nops + 1);
  int kind = pick(c, 10);
  if (!cd && (kind == MLK_OP_KV_APPEND || kind == MLK_OP_ATTENTION))
    kind = MLK_OP_ELTWISE;
  switch (kind) {
  case MLK_OP_MATVEC: {
    int64_t n = range(c, 1, 40), k = range(c, 1, 40);
    MlkFn fn = (MlkFn)pick(c, 5);
    if (fn == MLK_FN_ADD)
      fn = MLK_FN_NONE;
    int x = input(c, k, MLK_F32);
    MlkArg w = param(c, n * k);
    int res = fn == MLK_FN_MUL || pick(c, 2) ? input(c, n, MLK_F32) : -1;
    MlkArg norm = pick(c, 2) ? param(c, k) : NOARG;
    int out = output(c, n, MLK_F32);
    if (out == x)
      out = act(c, n, MLK_F32, MLK_TENSOR_TEMP, 0);
    int o = rtb_matvec(&b, name, out, x, w, res, norm, n, k, tile_of(c, n), fn, 1e-5f);
    if (pick(c, 2))
      rtb_bias(&b, o, param(c, n));
    break;
  }
  case MLK_OP_ELTWISE: {
    int64_t n = range(c, 1, 64);
    MlkFn fn = (MlkFn)pick(c, 5);
    int a = input(c, n, MLK_F32);
    int o2 = fn == MLK_FN_ADD || fn == MLK_FN_MUL ? input(c, n, MLK_F32) : -1;
    int o = rtb_eltwise(&b, name, output(c, n, MLK_F32), a, o2, n, tile_of(c, n), fn);
    if (pick(c, 2))
      rtb_bias(&b, o, param(c, n));
    break;
  }
  case MLK_OP_GATHER: {
    int64_t n = range(c, 1, 32), rows = range(c, 1, 8);
    int ids = input(c, 1, MLK_I32);
    MlkArg table = param(c, rows * n);
    rtb_gather(&b, name, output(c, n, MLK_F32), ids, table, n, tile_of(c, n));
    break;
  }
  case MLK_OP_RMSNORM: {
    int64_t n = range(c, 1, 48);
    int x = input(c, n, MLK_F32);
    rtb_rmsnorm(&b, name, output(c, n, MLK_F32), x, param(c, n), n, pick(c, 2) ? 1e-5f : 0.0f);
    break;
  }
  case MLK_OP_ROPE: {
    int64_t hd = 2 * range(c, 1, 4), heads = range(c, 1, 4), n = hd * heads;
    int x = input(c, n, MLK_F32), pos = input(c, 1, MLK_I32);
    int scaled = pick(c, 2);
    rtb_rope(&b, name, output(c, n, MLK_F32), x, pos, n, hd, hd * range(c, 1, heads), 10000.0f,
             scaled ? 8.0f : 1.0f, 1.0f, 4.0f, 16);
    break;
  }
  case MLK_OP_KV_APPEND: {
    int64_t n = cd->kv_heads * cd->head_dim;
    int k = input(c, n, MLK_F32), v = input(c, n, MLK_F32), pos = input(c, 1, MLK_I32);
    rtb_kv_append(&b, name, cache, (int)range(c, 0, layers - 1), k, v, pos,
                  cd->head_dim * range(c, 1, cd->kv_heads));
    break;
  }
  case MLK_OP_ATTENTION: {
    int64_t group = range(c, 1, 2), heads = cd->kv_heads * group, kvh = range(c, 1, cd->kv_heads);
    int layer = (int)range(c, 0, layers - 1);
    int q = input(c, heads * cd->head_dim, MLK_F32), pos = input(c, 1, MLK_I32);
    int64_t split = pick(c, 2) ? range(c, 2, 4) : 1;
    if (split > 1) {
      int64_t pcols = mlk_attn_part_cols(cd->kv_heads, heads, cd->head_dim, split, kvh);
      int part = act(c, pcols, MLK_F32, MLK_TENSOR_TEMP, 0);
      int r = rtb_attention_split(&b, name, rtb_str(&b, "reduce%d@fuzz", b.desc.nops), 
                                  output(c, heads * cd->head_dim, MLK_F32), part, q, cache, layer,
                                  pos, heads, kvh, split);
      b.ops[r - 1].min_chunk = pick(c, 2) ? range(c, 0, 4) : 0;
    } else {
      rtb_attention(&b, name, output(c, heads * cd->head_dim, MLK_F32), q, cache, layer, pos, heads,
                    kvh * group * cd->head_dim);
    }
    break;
  }
  case MLK_OP_ARGMAX: {
    int64_t k = range(c, 1, 64);
    rtb_argmax(&b, name, output(c, 1, MLK_I32), input(c, k, MLK_F32), k);
    break;
  }
  default: { /* sample */
    int64_t k = range(c, 1, 64);
    int x = input(c, k, MLK_F32);
    rtb_sample(&b, name, output(c, 1, MLK_I32), x, k, 0.5f * (float)pick(c, 4), range(c, 1, 40),
               pick(c, 2) ? 1.0f : 0.75f);
    break;
  }
  }
}

/* An all-reduce at the end of the current kernel: an op writes its operand, the collective runs
 * after the kernel, and the next segment reads the sum. */
static void gen_collective(Choices *c, int64_t ranks) {
  int64_t n = range(c, 1, 40);
  int x = input(c, n, MLK_F32);
  int in = rtb_act(&b, rtb_str(&b, "ar_in%d", b.desc.ntensors), MLK_F32, MLK_TENSOR_TEMP, n);
  rtb_eltwise(&b, rtb_str(&b, "op%d@fuzz:%d", b.desc.nops, b.desc.nops + 1), in, x, x, n,
              tile_of(c, n), MLK_FN_ADD);
  int sum = rtb_act(&b, rtb_str(&b, "ar_out%d", b.desc.ntensors), MLK_F32, MLK_TENSOR_TEMP, n);
  rtb_allreduce(&b, "allreduce@fuzz", in, sum, n, ranks);
  rtb_segment(&b);
  rtb_eltwise(&b, rtb_str(&b, "op%d@fuzz:%d", b.desc.nops, b.desc.nops + 1),
              output(c, n, MLK_F32), sum, sum, n, tile_of(c, n), MLK_FN_MUL);
}

static void generate(Choices *c) {
  int64_t bmax = pick(c, 2) ? range(c, 1, 3) : 0;
  rtb_init(&b, "fuzz", bmax);
  nacts = 0;
  int cache = -1;
  int64_t layers = 1;
  if (pick(c, 2)) {
    layers = range(c, 1, 2);
    cache = rtb_cache(&b, "kv", layers, range(c, 1, 2), 2 * range(c, 1, 3), range(c, 1, 4));
  }
  int nkernels = 1 + pick(c, 3);
  for (int k = 0; k < nkernels; k++) {
    rtb_kernel(&b, rtb_str(&b, "k%d", k), pick(c, 4) ? MLK_SCHED_STATIC : MLK_SCHED_DYNAMIC);
    int nops = 1 + pick(c, 6);
    for (int i = 0; i < nops && b.desc.nops < RTB_MAX_OPS - 2; i++)
      gen_op(c, cache, layers);
  }
  if (pick(c, 3) == 0 && b.desc.nops < RTB_MAX_OPS - 2)
    gen_collective(c, 2 + pick(c, 2));
  rtb_done(&b);
}

/* ---- step 2: mutations ---- */

/* A field of the description: its address and width (int64_t, int, float, or a name pointer). */
typedef enum FieldType { F_I64, F_INT, F_FLOAT, F_NAME, F_TABLE } FieldType;

typedef struct Field {
  void *p;
  FieldType type;
} Field;

static Field fields[4096];
static int nfields;

static void add(void *p, FieldType t) {
  if (nfields < (int)(sizeof fields / sizeof *fields))
    fields[nfields++] = (Field){p, t};
}

static void collect_fields(void) {
  nfields = 0;
  MlkModelDesc *d = &b.desc;
  add(&d->ntensors, F_INT), add(&d->nops, F_INT), add(&d->nevents, F_INT), add(&d->nkernels, F_INT);
  add(&d->ncaches, F_INT), add(&d->ncounters, F_I64), add(&d->batch_min, F_I64);
  add(&d->batch_max, F_I64), add(&d->batch_name, F_NAME), add(&d->abi, F_INT);
  add(&d->tensors, F_TABLE), add(&d->ops, F_TABLE), add(&d->events, F_TABLE);
  add(&d->kernels, F_TABLE), add(&d->caches, F_TABLE), add(&d->event_refs, F_TABLE);
  add(&d->nevent_refs, F_INT), add(&d->ranks, F_I64), add(&d->ncollectives, F_INT);
  add(&d->collectives, F_TABLE);
  for (int i = 0; i < d->ncollectives; i++) {
    MlkCollectiveDesc *cd = &b.collectives[i];
    add(&cd->name, F_NAME), add(&cd->kind, F_INT), add(&cd->in.tensor, F_INT);
    add(&cd->in.offset, F_I64), add(&cd->out.tensor, F_INT), add(&cd->out.offset, F_I64);
    add(&cd->n, F_I64), add(&cd->batched, F_INT), add(&cd->ranks, F_I64), add(&cd->after, F_INT);
  }
  for (int i = 0; i < d->nevent_refs; i++)
    add(&b.refs[i], F_INT);
  for (int i = 0; i < d->ntensors; i++) {
    MlkTensorDesc *t = &b.tensors[i];
    add(&t->name, F_NAME), add(&t->dtype, F_INT), add(&t->kind, F_INT), add(&t->rank, F_INT);
    add(&t->numel, F_I64), add(&t->batched, F_INT);
    for (int r = 0; r < MLK_MAX_RANK; r++)
      add(&t->shape[r], F_I64);
  }
  for (int o = 0; o < d->nops; o++) {
    MlkOpDesc *op = &b.ops[o];
    add(&op->name, F_NAME), add(&op->kind, F_INT), add(&op->fn, F_INT), add(&op->out.tensor, F_INT);
    add(&op->out.offset, F_I64);
    for (int j = 0; j < MLK_OP_INPUTS; j++)
      add(&op->in[j].tensor, F_INT), add(&op->in[j].offset, F_I64);
    add(&op->n, F_I64), add(&op->k, F_I64), add(&op->tile, F_I64), add(&op->ntasks, F_I64);
    add(&op->batched, F_INT), add(&op->eps, F_FLOAT), add(&op->theta, F_FLOAT);
    add(&op->rope_factor, F_FLOAT), add(&op->rope_low_freq, F_FLOAT);
    add(&op->rope_high_freq, F_FLOAT), add(&op->rope_original_max_pos, F_I64);
    add(&op->heads, F_I64), add(&op->kv_heads, F_I64), add(&op->head_dim, F_I64);
    add(&op->layer, F_INT), add(&op->cache, F_INT), add(&op->temperature, F_FLOAT);
    add(&op->top_p, F_FLOAT), add(&op->top_k, F_I64), add(&op->split, F_I64);
    add(&op->min_chunk, F_I64), add(&op->wait0, F_INT), add(&op->nwaits, F_INT);
    add(&op->notify0, F_INT), add(&op->nnotifies, F_INT), add(&op->variant, F_INT);
  }
  for (int i = 0; i < d->nevents; i++) {
    MlkEventDesc *e = &b.events[i];
    add(&e->name, F_NAME), add(&e->producer, F_INT), add(&e->consumer, F_INT);
    add(&e->tensor, F_INT), add(&e->map, F_INT), add(&e->n, F_I64), add(&e->ptile, F_I64);
    add(&e->ctile, F_I64), add(&e->count, F_I64), add(&e->size, F_I64), add(&e->base, F_I64);
  }
  for (int k = 0; k < d->nkernels; k++) {
    MlkKernelDesc *kd = &b.kernels[k];
    add(&kd->name, F_NAME), add(&kd->entry, F_NAME), add(&kd->first_op, F_INT);
    add(&kd->nops, F_INT), add(&kd->schedule, F_INT), add(&kd->nvariants, F_INT);
    add(&kd->variant_ops, F_TABLE), add(&kd->segment, F_INT), add(&kd->nsegments, F_INT);
  }
  for (int c = 0; c < d->ncaches; c++) {
    MlkCacheDesc *cd = &b.caches[c];
    add(&cd->name, F_NAME), add(&cd->tensor, F_INT), add(&cd->pages_tensor, F_INT);
    add(&cd->dtype, F_INT), add(&cd->layers, F_I64), add(&cd->kv_heads, F_I64);
    add(&cd->head_dim, F_I64), add(&cd->page, F_I64);
  }
}

static const int64_t kInteresting[] = {0, -1, 1, 2, 3, 7, 8, 16, 255, 256, 65535, 65536, 65537,
                                       (1 << 24) - 1, 1 << 24, INT32_MAX, (int64_t)INT32_MAX + 1,
                                       INT32_MIN, INT64_MAX, INT64_MIN, (int64_t)1 << 40,
                                       (int64_t)1 << 56, ((int64_t)1 << 62) + 1};

static int64_t new_value(Choices *c, int64_t old) {
  switch (pick(c, 4)) {
  case 0: return kInteresting[pick(c, (int)(sizeof kInteresting / sizeof *kInteresting))];
  case 1: return (int64_t)((uint64_t)old + (uint64_t)range(c, -3, 3)); /* wrapping, on purpose */
  case 2: return (int64_t)((uint64_t)old * 2);
  default: {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
      v = v << 8 | byte(c);
    return (int64_t)v;
  }
  }
}

static void mutate(Choices *c) {
  collect_fields();
  int nmut = pick(c, 7);
  for (int m = 0; m < nmut && nfields; m++) {
    Field *f = &fields[range(c, 0, nfields - 1)];
    switch (f->type) {
    case F_I64:
      *(int64_t *)f->p = new_value(c, *(int64_t *)f->p);
      break;
    case F_INT: { /* enums are int-sized here */
      int64_t v = new_value(c, *(int *)f->p);
      *(int *)f->p = (int)(uint32_t)(uint64_t)v;
      break;
    }
    case F_FLOAT: {
      static const float kFloats[] = {0.0f, -0.0f, -1.0f, 0.5f, 1.0f, 2.0f, 1e-30f, 1e30f, INFINITY,
                                      -INFINITY, NAN};
      *(float *)f->p = kFloats[pick(c, (int)(sizeof kFloats / sizeof *kFloats))];
      break;
    }
    case F_NAME:
      *(const char **)f->p = pick(c, 2) ? NULL : "x";
      break;
    case F_TABLE:
      *(const void **)f->p = NULL;
      break;
    }
  }
  /* Counts never exceed the tables the harness owns (a desc's counts say how long its tables are:
   * a longer count is a lie the runtime cannot see). */
  if (b.desc.ntensors > RTB_MAX_T)
    b.desc.ntensors = RTB_MAX_T;
  if (b.desc.nops > RTB_MAX_OPS)
    b.desc.nops = RTB_MAX_OPS;
  if (b.desc.nevents > RTB_MAX_EV)
    b.desc.nevents = RTB_MAX_EV;
  if (b.desc.nkernels > RTB_MAX_K)
    b.desc.nkernels = RTB_MAX_K;
  if (b.desc.ncaches > RTB_MAX_C)
    b.desc.ncaches = RTB_MAX_C;
  if (b.desc.ncollectives > RTB_MAX_COLL)
    b.desc.ncollectives = RTB_MAX_COLL;
  if (b.desc.nevent_refs > 2 * RTB_MAX_EV)
    b.desc.nevent_refs = 2 * RTB_MAX_EV;
  for (int k = 0; k < b.desc.nkernels; k++)
    if (b.kernels[k].variant_ops && b.kernels[k].nvariants > RTB_MAX_OPS)
      b.kernels[k].nvariants = RTB_MAX_OPS;
}

/* ---- step 3: create and run ---- */

/* Whether a validated description fits the harness's budget of memory, tasks and work. */
static int affordable(const MlkModelDesc *d) {
  double bytes = 0, tasks = 0, work = 0;
  for (int i = 0; i < d->ntensors; i++)
    bytes += (double)mlk_tensor_bytes(&d->tensors[i]);
  int64_t bmax = d->batch_name ? d->batch_max : 1;
  double ctx = 0;
  for (int c = 0; c < d->ncaches; c++) {
    const MlkCacheDesc *cd = &d->caches[c];
    double pages = (double)bmax * ((FUZZ_CONTEXT + cd->page - 1) / cd->page);
    bytes += (double)cd->layers * pages * 2 * cd->kv_heads * cd->page * cd->head_dim * 2 + pages * 4;
    ctx = FUZZ_CONTEXT;
  }
  for (int o = 0; o < d->nops; o++) {
    const MlkOpDesc *op = &d->ops[o];
    tasks += op->ntasks;
    double cols = (double)op->n * (op->k > 0 ? op->k : 1);
    if (op->kind == MLK_OP_ATTENTION)
      cols = (double)op->heads * op->head_dim * (ctx + 1) * (op->split > 1 ? op->ntasks : 1);
    work += cols * bmax;
  }
  return bytes <= BUDGET_BYTES && tasks <= BUDGET_TASKS && work <= BUDGET_WORK;
}

/* A failed call must say why. */
static void expect_message(void) {
  const char *msg = mlk_last_error();
  if (!msg[0])
    abort();
}

static void run_model(Choices *c, mlk_model *m) {
  const MlkModelDesc *d = mlk_model_desc(m);
  uint8_t fill = pick(c, 4) ? 0 : byte(c);
  for (int i = 0; i < d->ntensors; i++) {
    MlkTensorKind k = d->tensors[i].kind;
    if (k == MLK_TENSOR_PARAM || k == MLK_TENSOR_INPUT)
      if (mlk_model_fill_tensor(m, i, k == MLK_TENSOR_INPUT && d->tensors[i].dtype == MLK_I32 ? fill
                                                                                              : 0x3c))
        abort();
  }
  int64_t bmin = d->batch_name ? d->batch_min : 1, bmax = d->batch_name ? d->batch_max : 1;
  /* some rows' sampling settings, any values: out of range ones are refused with a message */
  for (int64_t r = 0; r < bmax + 1 && pick(c, 2); r++) {
    mlk_sampling s = {.temperature = (float)(int8_t)byte(c) / 16.0f, .top_k = (int8_t)byte(c) * 9,
                      .top_p = (float)(int8_t)byte(c) / 64.0f, .seed = byte(c)};
    if (mlk_model_set_sampling(m, r, &s))
      expect_message();
  }
  for (int pass = 0; pass < 2; pass++) {
    int64_t batch = pass == 0 ? bmax : bmin + pick(c, (int)(bmax - bmin + 1));
    if (mlk_model_set_batch(m, batch))
      abort();
    for (int k = 0; k < d->nkernels; k++) {
      /* A batch change leaves the new rows of the inputs undefined: fill them again. */
      for (int i = 0; i < d->ntensors; i++)
        if (d->tensors[i].kind == MLK_TENSOR_INPUT && d->tensors[i].batched)
          mlk_model_fill_tensor(m, i, d->tensors[i].dtype == MLK_I32 ? fill : 0x3c);
      mlk_status st = mlk_model_run(m, k);
      if (st != MLK_OK && st != MLK_ERR_INVALID && st != MLK_ERR_DEADLOCK)
        abort();
      if (st != MLK_OK)
        expect_message();
    }
  }
  for (int i = 0; i < d->ntensors; i++) {
    size_t n = mlk_model_tensor_bytes(m, i);
    void *buf = malloc(n ? n : 1);
    if (!buf || mlk_model_get_tensor(m, i, buf, n))
      abort();
    free(buf);
  }
}

/* A description of several ranks: a world of them on one simulator, every megakernel run (its
 * segments and collectives), twice. */
static void run_world(Choices *c, mlk_backend *be) {
  const MlkModelDesc *d = &b.desc;
  mlk_backend *bes[4] = {be, be, be, be};
  mlk_world *w = NULL;
  if (d->ranks > 4)
    return; /* valid (up to 1024 ranks), more worlds than the harness affords */
  mlk_status st = mlk_world_create(d, &(mlk_world_options){.nranks = (int)d->ranks, .backends = bes}, &w);
  if (st != MLK_OK) {
    if (st != MLK_ERR_INVALID)
      abort();
    expect_message();
    return;
  }
  uint8_t fill = pick(c, 4) ? 0 : byte(c);
  for (int pass = 0; pass < 2; pass++) {
    for (int r = 0; r < d->ranks; r++) {
      mlk_model *m = mlk_world_model(w, r);
      if (mlk_model_set_batch(m, d->batch_name ? d->batch_max : 1))
        abort();
      for (int i = 0; i < d->ntensors; i++) {
        MlkTensorKind k = d->tensors[i].kind;
        if ((k == MLK_TENSOR_PARAM || k == MLK_TENSOR_INPUT) &&
            mlk_model_fill_tensor(m, i, k == MLK_TENSOR_INPUT && d->tensors[i].dtype == MLK_I32 ? fill : 0x3c))
          abort();
      }
    }
    for (int k = 0; k < d->nkernels; k++) {
      if (d->kernels[k].segment != 0)
        continue;
      st = mlk_world_run(w, k);
      if (st != MLK_OK && st != MLK_ERR_INVALID && st != MLK_ERR_DEADLOCK)
        abort();
      if (st != MLK_OK)
        expect_message();
    }
  }
  mlk_world_free(w);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  (void)rt_failures;
  setenv("MLK_KV_CONTEXT", "12", 1); /* FUZZ_CONTEXT */
  unsetenv("MLK_SIM_MODE");
  unsetenv("MLK_SIM_EXPLORE");
  unsetenv("MLK_TRACE");
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Choices c = {data, size, 0};
  generate(&c);
  mutate(&c);
  mlk_status st = mlk_desc_validate(&b.desc);
  if (st != MLK_OK) {
    /* "invalid model description 'fuzz' (rt_build.mlk): op 3 'op3@fuzz:4': ..." */
    if (st != MLK_ERR_INVALID || (strncmp(mlk_last_error(), "invalid model description '", 27) &&
                                  strcmp(mlk_last_error(), "model description is NULL")))
      abort();
    return 0;
  }
  if (!affordable(&b.desc))
    return 0;
  mlk_sim_options opt = {.threads = 1 + pick(&c, 4), .seed = 1 + byte(&c),
                         .schedule = (mlk_sim_schedule)pick(&c, 3), .mode = MLK_SIM_DETERMINISTIC};
  mlk_backend *be;
  if (mlk_backend_create_cpu(&opt, &be))
    abort();
  mlk_model *m = NULL;
  if (b.desc.ranks > 1) {
    run_world(&c, be);
    mlk_backend_free(be);
    return 0;
  }
  st = mlk_model_create(be, &b.desc, &m);
  if (st == MLK_OK) {
    run_model(&c, m);
    mlk_model_free(m);
  } else if (st != MLK_ERR_INVALID) {
    abort(); /* validated and affordable: only the cache sizing may still refuse it */
  } else {
    expect_message();
  }
  mlk_backend_free(be);
  return 0;
}
