/* ops.c: what the runtime knows of each op kind, one section per kind.
 *
 * The kinds themselves are defined in mlk_desc.h (MLK_OP_KINDS) and the code that runs a task in
 * stdlib/task.c; here is the host's side of each: its validation (what a description must hold
 * for the kind's tile and reference to stay inside their buffers), the columns of which tensors
 * each task reads and writes (the simulator's dependency checker), and a cost estimate (the
 * balanced deal of sched.c). The table at the end comes from MLK_OP_KINDS, so a kind without its
 * three functions here does not compile.
 */
#include <math.h>

#include "internal.h"

/* ---- operand checks shared by the kinds' validations ---- */

/* The tensor of operand `which` of op `o`: in range, of dtype `dt`, not a cache's, offset >= 0. */
static mlk_status check_tensor(const MlkModelDesc *d, int o, const char *which, MlkArg a,
                               MlkDType dt) {
  const MlkOpDesc *op = &d->ops[o];
  if (a.tensor < 0 || a.tensor >= d->ntensors)
    return mlk_desc_invalid(d, "op %d '%s': %s is tensor %d, out of range (%d tensors)", o,
                            op->name, which, a.tensor, d->ntensors);
  const MlkTensorDesc *td = &d->tensors[a.tensor];
  if (td->kind == MLK_TENSOR_CACHE || td->kind == MLK_TENSOR_PAGES)
    return mlk_desc_invalid(
        d,
        "op %d '%s': %s '%s' is a %s: only kv_append and attention take one, as their "
        "cache operands",
        o, op->name, which, td->name, mlk_tensor_kind_name(td->kind));
  if (td->kind == MLK_TENSOR_SAMPLING)
    return mlk_desc_invalid(d, "op %d '%s': %s '%s' is the %s: only a sample takes it, as in[1]", o,
                            op->name, which, td->name, mlk_tensor_kind_name(td->kind));
  if (td->dtype != dt)
    return mlk_desc_invalid(d, "op %d '%s': %s '%s' is %s, expected %s", o, op->name, which,
                            td->name, mlk_dtype_name(td->dtype), mlk_dtype_name(dt));
  if (a.offset < 0)
    return mlk_desc_invalid(d, "op %d '%s': %s '%s' has a negative offset %lld", o, op->name, which,
                            td->name, (long long)a.offset);
  return MLK_OK;
}

/* An operand read or written row by row: `cols` columns per row. The tensor is batched exactly
 * when the op is; a batched one is [batch_max, cols] at offset 0 (rows are `cols` apart, as the
 * tiles index them), any other holds the cols elements from its offset. */
static mlk_status check_rows(const MlkModelDesc *d, int o, const char *which, MlkArg a, MlkDType dt,
                             int64_t cols) {
  mlk_status st = check_tensor(d, o, which, a, dt);
  if (st)
    return st;
  const MlkOpDesc *op = &d->ops[o];
  const MlkTensorDesc *td = &d->tensors[a.tensor];
  if (td->batched != op->batched)
    return mlk_desc_invalid(d, "op %d '%s' is %sbatched, but its %s '%s' is %sbatched", o, op->name,
                            op->batched ? "" : "not ", which, td->name, td->batched ? "" : "not ");
  if (td->batched) {
    int64_t row = td->numel / td->shape[0];
    if (a.offset != 0 || row != cols)
      return mlk_desc_invalid(
          d,
          "op %d '%s': %s '%s' has rows of %lld elements (offset %lld), the op reads rows "
          "of %lld columns at offset 0",
          o, op->name, which, td->name, (long long)row, (long long)a.offset, (long long)cols);
  } else if (cols > td->numel || a.offset > td->numel - cols) {
    return mlk_desc_invalid(
        d, "op %d '%s': %s '%s' has %lld elements, the op needs %lld from offset %lld", o, op->name,
        which, td->name, (long long)td->numel, (long long)cols, (long long)a.offset);
  }
  return MLK_OK;
}

/* An operand every task reads whole (weights): not batched, `need` elements from its offset. */
static mlk_status check_whole(const MlkModelDesc *d, int o, const char *which, MlkArg a,
                              MlkDType dt, int64_t need) {
  mlk_status st = check_tensor(d, o, which, a, dt);
  if (st)
    return st;
  const MlkOpDesc *op = &d->ops[o];
  const MlkTensorDesc *td = &d->tensors[a.tensor];
  if (td->batched)
    return mlk_desc_invalid(d, "op %d '%s': %s '%s' is batched, the op reads it whole", o, op->name,
                            which, td->name);
  if (need > td->numel || a.offset > td->numel - need)
    return mlk_desc_invalid(
        d, "op %d '%s': %s '%s' has %lld elements, the op needs %lld from offset %lld", o, op->name,
        which, td->name, (long long)td->numel, (long long)need, (long long)a.offset);
  return MLK_OK;
}

/* The op's output: a row operand that the op may write (not a param or input). */
static mlk_status check_out(const MlkModelDesc *d, int o, MlkDType dt, int64_t cols) {
  const MlkOpDesc *op = &d->ops[o];
  if (op->out.tensor >= 0 && op->out.tensor < d->ntensors) {
    MlkTensorKind k = d->tensors[op->out.tensor].kind;
    if (k == MLK_TENSOR_PARAM || k == MLK_TENSOR_INPUT)
      return mlk_desc_invalid(d, "op %d '%s' writes %s '%s'", o, op->name, mlk_tensor_kind_name(k),
                              d->tensors[op->out.tensor].name);
  }
  return check_rows(d, o, "output", op->out, dt, cols);
}

/* Operands in[first .. end) are unused by this kind and must be -1. */
static mlk_status check_unused_to(const MlkModelDesc *d, int o, int first, int end) {
  const MlkOpDesc *op = &d->ops[o];
  for (int j = first; j < end; j++)
    if (op->in[j].tensor != -1)
      return mlk_desc_invalid(
          d,
          "op %d '%s': in[%d] is tensor %d, but this %s%s takes %d operand%s: unused "
          "operands must be -1",
          o, op->name, j, op->in[j].tensor,
          op->kind == MLK_OP_ELTWISE && first == 1 ? "unary " : "", mlk_op_kind_name(op->kind),
          first, first == 1 ? "" : "s");
  return MLK_OK;
}

/* Operands from in[first] on are unused by this kind and must be -1. */
static mlk_status check_unused(const MlkModelDesc *d, int o, int first) {
  return check_unused_to(d, o, first, MLK_OP_INPUTS);
}

/* The bias in[4] of a matvec or eltwise, if any: a bf16 vector of the op's n columns that every
 * task reads its columns of (every row the same). */
static mlk_status check_bias(const MlkModelDesc *d, int o) {
  const MlkOpDesc *op = &d->ops[o];
  return op->in[4].tensor == -1 ? MLK_OK : check_whole(d, o, "bias", op->in[4], MLK_BF16, op->n);
}

static mlk_status check_eps(const MlkModelDesc *d, int o) {
  const MlkOpDesc *op = &d->ops[o];
  if (!(op->eps >= 0.0f) || !isfinite(op->eps))
    return mlk_desc_invalid(d, "op %d '%s': eps is %g, must be finite and >= 0", o, op->name,
                            (double)op->eps);
  return MLK_OK;
}

/* kv_append and attention: the cache, its layer and geometry, the pool and page-table operands. */
static mlk_status check_cache_op(const MlkModelDesc *d, int o, const char *pool_which,
                                 MlkArg pool) {
  const MlkOpDesc *op = &d->ops[o];
  if (op->cache < 0 || op->cache >= d->ncaches)
    return mlk_desc_invalid(d, "op %d '%s': cache %d out of range (%d caches)", o, op->name,
                            op->cache, d->ncaches);
  const MlkCacheDesc *c = &d->caches[op->cache];
  if (pool.tensor != c->tensor || pool.offset != 0)
    return mlk_desc_invalid(
        d,
        "op %d '%s': %s must be the pool of cache '%s' (tensor %d) at offset 0, got "
        "tensor %d at offset %lld",
        o, op->name, pool_which, c->name, c->tensor, pool.tensor, (long long)pool.offset);
  if (op->in[3].tensor != c->pages_tensor || op->in[3].offset != 0)
    return mlk_desc_invalid(
        d,
        "op %d '%s': in[3] must be the page table of cache '%s' (tensor %d) at offset 0, "
        "got tensor %d at offset %lld",
        o, op->name, c->name, c->pages_tensor, op->in[3].tensor, (long long)op->in[3].offset);
  if (op->layer < 0 || op->layer >= c->layers)
    return mlk_desc_invalid(d, "op %d '%s': layer %d is outside cache '%s' (%lld layers)", o,
                            op->name, op->layer, c->name, (long long)c->layers);
  if (op->kv_heads != c->kv_heads || op->head_dim != c->head_dim)
    return mlk_desc_invalid(
        d, "op %d '%s': kv_heads %lld and head_dim %lld differ from cache '%s' (%lld, %lld)", o,
        op->name, (long long)op->kv_heads, (long long)op->head_dim, c->name, (long long)c->kv_heads,
        (long long)c->head_dim);
  return MLK_OK;
}

/* The access of a tiled operand: task t covers [base + t * tile, base + (t + 1) * tile) of n. */
static MlkAccess tiled(int tensor, int64_t base, int64_t tile, int64_t n) {
  return (MlkAccess){tensor, base, tile, tile, base + n};
}

/* The access of an operand every task reads whole: [base, base + n). */
static MlkAccess whole(int tensor, int64_t base, int64_t n) {
  return (MlkAccess){tensor, base, 0, n, base + n};
}

/* A task's fixed cost, in bytes at HBM speed: a few microseconds of synchronization. */
#define OVERHEAD 4096

/* ---- matvec ---- */

static mlk_status matvec_validate(const MlkModelDesc *d, int o) {
  const MlkOpDesc *op = &d->ops[o];
  mlk_status st;
  if (op->fn != MLK_FN_NONE && op->fn != MLK_FN_RELU && op->fn != MLK_FN_SILU &&
      op->fn != MLK_FN_MUL)
    return mlk_desc_invalid(
        d, "op %d '%s': a matvec epilogue must be none, relu, silu or mul, got fn %d", o, op->name,
        (int)op->fn);
  if (op->fn == MLK_FN_MUL && op->in[2].tensor == -1)
    return mlk_desc_invalid(d, "op %d '%s': a matvec with the mul epilogue needs its gate in[2]", o,
                            op->name);
  if (op->k < 1 || op->k > MLK_MATVEC_MAX_K)
    return mlk_desc_invalid(d, "op %d '%s': k is %lld, must be in [1, %d]", o, op->name,
                            (long long)op->k, MLK_MATVEC_MAX_K);
  if (op->n > INT64_MAX / op->k)
    return mlk_desc_invalid(d, "op %d '%s': n * k overflows", o, op->name);
  if ((st = check_out(d, o, MLK_F32, op->n)) ||
      (st = check_rows(d, o, "x", op->in[0], MLK_F32, op->k)) ||
      (st = check_whole(d, o, "W", op->in[1], MLK_BF16, op->n * op->k)))
    return st;
  if (op->in[2].tensor != -1 && (st = check_rows(d, o, "residual", op->in[2], MLK_F32, op->n)))
    return st;
  if (op->in[3].tensor != -1 &&
      ((st = check_whole(d, o, "norm weight", op->in[3], MLK_BF16, op->k)) ||
       (st = check_eps(d, o))))
    return st;
  if ((st = check_bias(d, o)))
    return st;
  /* Tasks write their rows while others still read all of x: in place would race. */
  if (op->out.tensor == op->in[0].tensor)
    return mlk_desc_invalid(d, "op %d '%s': output and x are the same tensor", o, op->name);
  /* a split: tasks in groups of a power of two, on the tensor-core path (16-byte weight rows) */
  if (op->split < 0 || op->split > MLK_MATVEC_MAX_SPLIT || (op->split & (op->split - 1)) != 0)
    return mlk_desc_invalid(d, "op %d '%s': split is %lld, must be 0 or a power of two up to %d",
                            o, op->name, (long long)op->split, MLK_MATVEC_MAX_SPLIT);
  if (op->split > 1 && (op->k % 8 != 0 || op->in[1].offset % 8 != 0 || !op->batched))
    return mlk_desc_invalid(d, "op %d '%s': a split matvec needs k and the offset of W multiples of "
                            "8 and a batched x (k %lld, offset %lld)",
                            o, op->name, (long long)op->k, (long long)op->in[1].offset);
  return MLK_OK;
}

static int matvec_accesses(const MlkModelDesc *d, int o, MlkAccess *r, MlkAccess *w) {
  const MlkOpDesc *op = &d->ops[o];
  int n = 0;
  r[n++] = whole(op->in[0].tensor, op->in[0].offset, op->k);
  r[n++] = whole(op->in[1].tensor, op->in[1].offset, op->n * op->k);
  if (op->in[2].tensor >= 0)
    r[n++] = tiled(op->in[2].tensor, op->in[2].offset, op->tile, op->n);
  if (op->in[3].tensor >= 0)
    r[n++] = whole(op->in[3].tensor, op->in[3].offset, op->k);
  if (op->in[4].tensor >= 0)
    r[n++] = tiled(op->in[4].tensor, op->in[4].offset, op->tile, op->n);
  (void)w;
  return n;
}

static int64_t matvec_cost(const MlkOpDesc *op, int64_t cols) {
  /* the weight rows, x, the outputs (a bias adds 2 bytes a row: nothing to count) */
  return OVERHEAD + cols * op->k * 2 + op->k * 4 + cols * 8;
}

/* ---- eltwise ---- */

static mlk_status eltwise_validate(const MlkModelDesc *d, int o) {
  const MlkOpDesc *op = &d->ops[o];
  mlk_status st;
  int binary = op->fn == MLK_FN_ADD || op->fn == MLK_FN_MUL;
  if ((unsigned)op->fn > MLK_FN_MUL)
    return mlk_desc_invalid(
        d,
        "op %d '%s': an elementwise function must be none, relu, silu, add or mul, got "
        "fn %d",
        o, op->name, (int)op->fn);
  if ((st = check_out(d, o, MLK_F32, op->n)) ||
      (st = check_rows(d, o, "a", op->in[0], MLK_F32, op->n)))
    return st;
  if (binary && (st = check_rows(d, o, "b", op->in[1], MLK_F32, op->n)))
    return st;
  if ((st = check_bias(d, o)))
    return st;
  return check_unused_to(d, o, binary ? 2 : 1, 4);
}

static int eltwise_accesses(const MlkModelDesc *d, int o, MlkAccess *r, MlkAccess *w) {
  const MlkOpDesc *op = &d->ops[o];
  int n = 0;
  r[n++] = tiled(op->in[0].tensor, op->in[0].offset, op->tile, op->n);
  if (op->in[1].tensor >= 0)
    r[n++] = tiled(op->in[1].tensor, op->in[1].offset, op->tile, op->n);
  if (op->in[4].tensor >= 0)
    r[n++] = tiled(op->in[4].tensor, op->in[4].offset, op->tile, op->n);
  (void)w;
  return n;
}

static int64_t eltwise_cost(const MlkOpDesc *op, int64_t cols) {
  (void)op;
  return OVERHEAD + cols * 12;
}

/* ---- gather ---- */

static mlk_status gather_validate(const MlkModelDesc *d, int o) {
  const MlkOpDesc *op = &d->ops[o];
  mlk_status st;
  if ((st = check_out(d, o, MLK_F32, op->n)) ||
      (st = check_rows(d, o, "ids", op->in[0], MLK_I32, 1)) ||
      (st = check_whole(d, o, "table", op->in[1], MLK_BF16, op->n)))
    return st;
  return check_unused(d, o, 2);
}

static int gather_accesses(const MlkModelDesc *d, int o, MlkAccess *r, MlkAccess *w) {
  const MlkOpDesc *op = &d->ops[o];
  int n = 0;
  int64_t numel = d->tensors[op->in[1].tensor].numel;
  r[n++] = whole(op->in[0].tensor, op->in[0].offset, 1);
  r[n++] = whole(op->in[1].tensor, op->in[1].offset, numel - op->in[1].offset);
  (void)w;
  return n;
}

static int64_t gather_cost(const MlkOpDesc *op, int64_t cols) {
  (void)op;
  return OVERHEAD + cols * 6;
}

/* ---- rmsnorm ---- */

static mlk_status rmsnorm_validate(const MlkModelDesc *d, int o) {
  const MlkOpDesc *op = &d->ops[o];
  mlk_status st;
  if (op->ntasks != 1)
    return mlk_desc_invalid(d, "op %d '%s': an rmsnorm is one task (tile >= n), got %lld", o,
                            op->name, (long long)op->ntasks);
  if ((st = check_out(d, o, MLK_F32, op->n)) ||
      (st = check_rows(d, o, "x", op->in[0], MLK_F32, op->n)) ||
      (st = check_whole(d, o, "weight", op->in[1], MLK_BF16, op->n)) || (st = check_eps(d, o)))
    return st;
  return check_unused(d, o, 2);
}

static int rmsnorm_accesses(const MlkModelDesc *d, int o, MlkAccess *r, MlkAccess *w) {
  const MlkOpDesc *op = &d->ops[o];
  int n = 0;
  r[n++] = whole(op->in[0].tensor, op->in[0].offset, op->n);
  r[n++] = whole(op->in[1].tensor, op->in[1].offset, op->n);
  (void)w;
  return n;
}

static int64_t rmsnorm_cost(const MlkOpDesc *op, int64_t cols) {
  (void)cols;
  return OVERHEAD + op->n * 10;
}

/* ---- rope ---- */

/* The rotation's attributes, of a rope or of a kv_append that rotates its keys. */
static mlk_status check_rope_params(const MlkModelDesc *d, int o) {
  const MlkOpDesc *op = &d->ops[o];
  if (!(op->theta > 0.0f) || !isfinite(op->theta) || !isfinite(op->rope_factor))
    return mlk_desc_invalid(d, "op %d '%s': theta %g must be finite and > 0, rope_factor %g finite",
                            o, op->name, (double)op->theta, (double)op->rope_factor);
  if (op->rope_factor > 1.0f &&
      (!(op->rope_low_freq > 0.0f) || !(op->rope_high_freq > op->rope_low_freq) ||
       !isfinite(op->rope_high_freq) || op->rope_original_max_pos < 1))
    return mlk_desc_invalid(
        d,
        "op %d '%s': Llama 3 rope scaling (factor %g) needs 0 < low_freq %g < high_freq %g "
        "and original_max_pos %lld >= 1",
        o, op->name, (double)op->rope_factor, (double)op->rope_low_freq, (double)op->rope_high_freq,
        (long long)op->rope_original_max_pos);
  return MLK_OK;
}

static mlk_status rope_validate(const MlkModelDesc *d, int o) {
  const MlkOpDesc *op = &d->ops[o];
  mlk_status st;
  if (op->head_dim < 2 || op->head_dim % 2 || op->n % op->head_dim || op->tile % op->head_dim)
    return mlk_desc_invalid(
        d, "op %d '%s': head_dim %lld must be even and >= 2 and divide n %lld and tile %lld", o,
        op->name, (long long)op->head_dim, (long long)op->n, (long long)op->tile);
  /* (head_dim divides n: comparing the quotient cannot overflow) */
  if (op->heads != 0 && op->heads != op->n / op->head_dim)
    return mlk_desc_invalid(d, "op %d '%s': %lld heads of %lld are not n = %lld columns", o,
                            op->name, (long long)op->heads, (long long)op->head_dim,
                            (long long)op->n);
  if ((st = check_rope_params(d, o)) || (st = check_out(d, o, MLK_F32, op->n)) ||
      (st = check_rows(d, o, "x", op->in[0], MLK_F32, op->n)) ||
      (st = check_rows(d, o, "positions", op->in[1], MLK_I32, 1)))
    return st;
  return check_unused(d, o, 2);
}

static int rope_accesses(const MlkModelDesc *d, int o, MlkAccess *r, MlkAccess *w) {
  const MlkOpDesc *op = &d->ops[o];
  int n = 0;
  r[n++] = tiled(op->in[0].tensor, op->in[0].offset, op->tile, op->n);
  r[n++] = whole(op->in[1].tensor, op->in[1].offset, 1);
  (void)w;
  return n;
}

static int64_t rope_cost(const MlkOpDesc *op, int64_t cols) {
  (void)op;
  return OVERHEAD + cols * 12;
}

/* ---- kv_append ---- */

static mlk_status kv_append_validate(const MlkModelDesc *d, int o) {
  const MlkOpDesc *op = &d->ops[o];
  mlk_status st;
  if ((st = check_cache_op(d, o, "the output", op->out)))
    return st;
  if (op->n != op->kv_heads * op->head_dim || op->tile % op->head_dim)
    return mlk_desc_invalid(
        d,
        "op %d '%s': n %lld must be kv_heads * head_dim = %lld and tile %lld a multiple "
        "of head_dim",
        o, op->name, (long long)op->n, (long long)(op->kv_heads * op->head_dim),
        (long long)op->tile);
  /* theta > 0: the keys are rotated first (a fused rope); its pairs need an even head_dim */
  if (op->theta != 0.0f && ((st = check_rope_params(d, o)) || op->head_dim % 2))
    return st ? st : mlk_desc_invalid(d, "op %d '%s': a kv_append that rotates its keys needs an "
                                      "even head_dim, not %lld", o, op->name, (long long)op->head_dim);
  if ((st = check_rows(d, o, "keys", op->in[0], MLK_F32, op->n)) ||
      (st = check_rows(d, o, "values", op->in[1], MLK_F32, op->n)) ||
      (st = check_rows(d, o, "positions", op->in[2], MLK_I32, 1)))
    return st;
  return check_unused(d, o, 4);
}

static int kv_append_accesses(const MlkModelDesc *d, int o, MlkAccess *r, MlkAccess *w) {
  const MlkOpDesc *op = &d->ops[o];
  int n = 0;
  int64_t layer_cols = op->kv_heads * op->head_dim;
  *w = tiled(op->out.tensor, op->layer * layer_cols, op->tile, op->n);
  r[n++] = tiled(op->in[0].tensor, op->in[0].offset, op->tile, op->n);
  r[n++] = tiled(op->in[1].tensor, op->in[1].offset, op->tile, op->n);
  r[n++] = whole(op->in[2].tensor, op->in[2].offset, 1);
  return n;
}

static int64_t kv_append_cost(const MlkOpDesc *op, int64_t cols) {
  (void)op;
  return OVERHEAD + cols * 12;
}

/* ---- attention ---- */

static mlk_status attention_validate(const MlkModelDesc *d, int o) {
  const MlkOpDesc *op = &d->ops[o];
  mlk_status st;
  if ((st = check_cache_op(d, o, "in[1]", op->in[1])))
    return st;
  if (op->split < 0 || op->split > MLK_ATTN_MAX_SPLIT)
    return mlk_desc_invalid(d, "op %d '%s': split is %lld, must be in [0, %d]", o, op->name,
                            (long long)op->split, MLK_ATTN_MAX_SPLIT);
  if (op->heads < 1 || op->heads % op->kv_heads || op->heads / op->kv_heads > MLK_MAX_CACHE_DIM)
    return mlk_desc_invalid(
        d, "op %d '%s': heads %lld must be a multiple of kv_heads %lld (at most %d times)", o,
        op->name, (long long)op->heads, (long long)op->kv_heads, MLK_MAX_CACHE_DIM);
  int64_t cols = op->heads * op->head_dim, per = op->heads / op->kv_heads * op->head_dim;
  if (mlk_attn_folds(op->split, op->n, op->heads, op->head_dim)) {
    /* the merge folded in: tasks of a nominal share of their kv head block's columns */
    int64_t kvh = op->tile <= cols ? op->tile * op->split / per : 0; /* (no overflow) */
    if (kvh < 1 || (op->tile * op->split) % per || kvh > op->kv_heads || op->kv_heads % kvh)
      return mlk_desc_invalid(
          d,
          "op %d '%s': a split attention merging its %lld chunks needs tile %lld = kvh * "
          "(heads / kv_heads) * head_dim / split with kv_heads %lld a multiple of kvh",
          o, op->name, (long long)op->split, (long long)op->tile, (long long)op->kv_heads);
  } else if (op->split <= 1) {
    if (op->n != cols || op->tile % per)
      return mlk_desc_invalid(
          d,
          "op %d '%s': n %lld must be heads * head_dim = %lld and tile %lld a multiple "
          "of (heads / kv_heads) * head_dim",
          o, op->name, (long long)op->n, (long long)cols, (long long)op->tile);
  } else {
    /* the partials of a split: tasks of kvh kv heads' records, ceil(kv_heads / kvh) * split */
    int64_t rec = mlk_attn_part_rec(op->heads / op->kv_heads, op->head_dim), kvh = op->tile / rec;
    if (op->tile % rec || kvh < 1 || kvh > op->kv_heads ||
        op->n != mlk_attn_part_cols(op->kv_heads, op->heads, op->head_dim, op->split, kvh))
      return mlk_desc_invalid(
          d,
          "op %d '%s': split into %lld chunks, tile %lld must be kvh records of (heads "
          "/ kv_heads) * (head_dim + 2) = %lld (1 <= kvh <= kv_heads) and n %lld = "
          "ceil(kv_heads / kvh) * split * tile",
          o, op->name, (long long)op->split, (long long)op->tile, (long long)rec, (long long)op->n);
  }
  if ((st = check_out(d, o, MLK_F32, op->n)) ||
      (st = check_rows(d, o, "q", op->in[0], MLK_F32, cols)) ||
      (st = check_rows(d, o, "positions", op->in[2], MLK_I32, 1)))
    return st;
  /* The tile accumulates into its output rows while it still reads q (folded: the block's last
   * task writes them while the others may still read q). */
  if (op->out.tensor == op->in[0].tensor)
    return mlk_desc_invalid(d, "op %d '%s': output and q are the same tensor", o, op->name);
  return check_unused(d, o, 4);
}

static int attention_accesses(const MlkModelDesc *d, int o, MlkAccess *r, MlkAccess *w) {
  const MlkOpDesc *op = &d->ops[o];
  int n = 0;
  int64_t layer_cols = op->kv_heads * op->head_dim;
  if (op->split <= 1) {
    int64_t kv_tile = op->tile / (op->heads / op->kv_heads); /* whole kv heads per task */
    r[n++] = tiled(op->in[0].tensor, op->in[0].offset, op->tile, op->n);
    r[n++] = tiled(op->in[1].tensor, op->layer * layer_cols, kv_tile, layer_cols);
  } else {
    /* Task t reads the q and cache heads of kv head block t / split: not a range that moves
     * with t by a fixed step, so the checker takes all of them (as the ALL events do). Folded,
     * it writes its nominal columns (the block's last task writes the block's, and completes
     * its S tasks). */
    r[n++] = whole(op->in[0].tensor, op->in[0].offset, op->heads * op->head_dim);
    r[n++] = whole(op->in[1].tensor, op->layer * layer_cols, layer_cols);
  }
  r[n++] = whole(op->in[2].tensor, op->in[2].offset, 1);
  (void)w;
  return n;
}

static int64_t attention_cost(const MlkOpDesc *op, int64_t cols) {
  /* K and V of a few hundred positions; a split task reads its chunk's share (folded: its
   * columns are 1 / split of its block's, and a task in split does the merge) */
  if (mlk_attn_folds(op->split, op->n, op->heads, op->head_dim))
    return OVERHEAD + cols * 1024 + cols * (op->split * 4 + 4);
  return OVERHEAD + cols * 1024 / (op->split > 1 ? op->split : 1);
}

/* ---- argmax ---- */

/* Unsplit: one task writes the index of each row. Split (split = S >= 2): task c writes the
 * partials of chunk c (value, index bits) at columns 2c, 2c + 1 of out, f32 [b, 2S]. */
static mlk_status argmax_validate(const MlkModelDesc *d, int o) {
  const MlkOpDesc *op = &d->ops[o];
  mlk_status st;
  if (op->k < 1 || op->k > INT32_MAX)
    return mlk_desc_invalid(d, "op %d '%s': an argmax has k in [1, 2^31) inputs, got %lld", o,
                            op->name, (long long)op->k);
  if (op->split == 0) {
    if (op->n != 1)
      return mlk_desc_invalid(d, "op %d '%s': an argmax has n = 1 output column, got %lld", o,
                              op->name, (long long)op->n);
    st = check_out(d, o, MLK_I32, 1);
  } else {
    if (op->split < 2 || op->split > MLK_ARGMAX_MAX_SPLIT || op->n != 2 * op->split ||
        op->tile != 2)
      return mlk_desc_invalid(
          d,
          "op %d '%s': a split argmax has split in [2, %d], n = 2 * split partial columns and "
          "tile 2, got split %lld, n %lld, tile %lld",
          o, op->name, MLK_ARGMAX_MAX_SPLIT, (long long)op->split, (long long)op->n,
          (long long)op->tile);
    st = check_out(d, o, MLK_F32, op->n);
  }
  if (st || (st = check_rows(d, o, "x", op->in[0], MLK_F32, op->k)))
    return st;
  return check_unused(d, o, 1);
}

static int argmax_accesses(const MlkModelDesc *d, int o, MlkAccess *r, MlkAccess *w) {
  const MlkOpDesc *op = &d->ops[o];
  int n = 0;
  if (op->split == 0)
    r[n++] = whole(op->in[0].tensor, op->in[0].offset, op->k);
  else /* task c: its chunk of the row */
    r[n++] = tiled(op->in[0].tensor, op->in[0].offset, mlk_argmax_chunk(op->k, op->split), op->k);
  (void)w;
  return n;
}

static int64_t argmax_cost(const MlkOpDesc *op, int64_t cols) {
  (void)cols;
  return OVERHEAD + (op->split ? mlk_argmax_chunk(op->k, op->split) : op->k) * 4;
}

/* ---- argmax_reduce ---- */

static mlk_status argmax_reduce_validate(const MlkModelDesc *d, int o) {
  const MlkOpDesc *op = &d->ops[o];
  mlk_status st;
  if (op->split < 2 || op->split > MLK_ARGMAX_MAX_SPLIT || op->n != 1)
    return mlk_desc_invalid(
        d, "op %d '%s': an argmax_reduce has split in [2, %d] and n = 1, got split %lld, n %lld",
        o, op->name, MLK_ARGMAX_MAX_SPLIT, (long long)op->split, (long long)op->n);
  if ((st = check_out(d, o, MLK_I32, 1)) ||
      (st = check_rows(d, o, "partials", op->in[0], MLK_F32, 2 * op->split)))
    return st;
  return check_unused(d, o, 1);
}

static int argmax_reduce_accesses(const MlkModelDesc *d, int o, MlkAccess *r, MlkAccess *w) {
  const MlkOpDesc *op = &d->ops[o];
  r[0] = whole(op->in[0].tensor, op->in[0].offset, 2 * op->split);
  (void)w;
  return 1;
}

static int64_t argmax_reduce_cost(const MlkOpDesc *op, int64_t cols) {
  (void)cols;
  return OVERHEAD + op->split * 8;
}

/* ---- sample ---- */

static mlk_status sample_validate(const MlkModelDesc *d, int o) {
  const MlkOpDesc *op = &d->ops[o];
  mlk_status st;
  if (op->n != 1 || op->k < 1 || op->k > INT32_MAX)
    return mlk_desc_invalid(
        d,
        "op %d '%s': a sample has n = 1 output column and k in [1, 2^31) inputs, got n "
        "%lld, k %lld",
        o, op->name, (long long)op->n, (long long)op->k);
  if (!(op->temperature >= 0.0f) || !isfinite(op->temperature) || !(op->top_p > 0.0f) ||
      !(op->top_p <= 1.0f) || op->top_k < 1 || op->top_k > MLK_SAMPLE_MAX_TOP_K)
    return mlk_desc_invalid(
        d,
        "op %d '%s': a sample needs temperature >= 0 (got %g), 0 < top_p <= 1 (got %g) "
        "and top_k in [1, %d] (got %lld)",
        o, op->name, (double)op->temperature, (double)op->top_p, MLK_SAMPLE_MAX_TOP_K,
        (long long)op->top_k);
  if ((st = check_out(d, o, MLK_I32, 1)) ||
      (st = check_rows(d, o, "x", op->in[0], MLK_F32, op->k)))
    return st;
  /* the model's sampling tensor, whose first rows a batched op reads (an unbatched one row 0) */
  MlkArg a = op->in[1];
  if (a.tensor < 0 || a.tensor >= d->ntensors || d->tensors[a.tensor].kind != MLK_TENSOR_SAMPLING ||
      a.offset != 0)
    return mlk_desc_invalid(d, "op %d '%s': in[1] must be the model's sampling tensor (%s) at "
                            "offset 0, got tensor %d at offset %lld", o, op->name,
                            mlk_tensor_kind_name(MLK_TENSOR_SAMPLING), a.tensor,
                            (long long)a.offset);
  if (op->batched && !d->tensors[a.tensor].batched)
    return mlk_desc_invalid(d, "op %d '%s' is batched, but its sampling tensor '%s' is not", o,
                            op->name, d->tensors[a.tensor].name);
  return check_unused(d, o, 2);
}

static int sample_accesses(const MlkModelDesc *d, int o, MlkAccess *r, MlkAccess *w) {
  const MlkOpDesc *op = &d->ops[o];
  int n = 0;
  r[n++] = whole(op->in[0].tensor, op->in[0].offset, op->k);
  r[n++] = whole(op->in[1].tensor, 0, MLK_SAMPLE_PARAMS);
  (void)w;
  return n;
}

static int64_t sample_cost(const MlkOpDesc *op, int64_t cols) {
  /* 4 to 9 passes over the row (radix select, gather) and a sort of top_k in shared memory */
  (void)cols;
  return OVERHEAD + op->k * 20 + op->top_k * 64;
}

/* ---- attn_reduce ---- */

static mlk_status attn_reduce_validate(const MlkModelDesc *d, int o) {
  const MlkOpDesc *op = &d->ops[o];
  mlk_status st;
  if (op->split < 1 || op->split > MLK_ATTN_MAX_SPLIT)
    return mlk_desc_invalid(d, "op %d '%s': split is %lld, must be in [1, %d]", o, op->name,
                            (long long)op->split, MLK_ATTN_MAX_SPLIT);
  if (op->kv_heads < 1 || op->head_dim < 1 || op->kv_heads > MLK_MAX_CACHE_DIM ||
      op->head_dim > MLK_MAX_CACHE_DIM || op->heads < 1 || op->heads % op->kv_heads ||
      op->heads / op->kv_heads > MLK_MAX_CACHE_DIM)
    return mlk_desc_invalid(
        d,
        "op %d '%s': kv_heads %lld and head_dim %lld must be in [1, %d], heads %lld a "
        "multiple of kv_heads (at most %d times)",
        o, op->name, (long long)op->kv_heads, (long long)op->head_dim, MLK_MAX_CACHE_DIM,
        (long long)op->heads, MLK_MAX_CACHE_DIM);
  int64_t per = op->heads / op->kv_heads * op->head_dim, kvh = op->tile / per;
  if (op->n != op->heads * op->head_dim || op->tile % per || kvh < 1 || kvh > op->kv_heads)
    return mlk_desc_invalid(
        d,
        "op %d '%s': n %lld must be heads * head_dim = %lld and tile %lld a multiple of "
        "(heads / kv_heads) * head_dim = %lld",
        o, op->name, (long long)op->n, (long long)(op->heads * op->head_dim), (long long)op->tile,
        (long long)per);
  int64_t pcols = mlk_attn_part_cols(op->kv_heads, op->heads, op->head_dim, op->split, kvh);
  if ((st = check_out(d, o, MLK_F32, op->n)) ||
      (st = check_rows(d, o, "partials", op->in[0], MLK_F32, pcols)))
    return st;
  /* (out and the partials cannot be one tensor: a row of partials is longer) */
  return check_unused(d, o, 1);
}

static int attn_reduce_accesses(const MlkModelDesc *d, int o, MlkAccess *r, MlkAccess *w) {
  const MlkOpDesc *op = &d->ops[o];
  int n = 0;
  /* task t merges the split records of its kv heads: split producer tiles */
  int64_t per_kvh = op->heads / op->kv_heads * op->head_dim, kvh = op->tile / per_kvh;
  int64_t ptile = kvh * mlk_attn_part_rec(op->heads / op->kv_heads, op->head_dim);
  r[n++] = tiled(op->in[0].tensor, op->in[0].offset, op->split * ptile,
                 mlk_attn_part_cols(op->kv_heads, op->heads, op->head_dim, op->split, kvh));
  (void)w;
  return n;
}

static int64_t attn_reduce_cost(const MlkOpDesc *op, int64_t cols) {
  /* every chunk's o */
  return OVERHEAD + cols * (op->split * 4 + 4);
}

/* ---- allreduce (in the megakernel) ---- */

/* Its x on this rank; the other ranks' come from the table the runtime gives in[1] (a world), so
 * the description names no tensor there. */
static mlk_status allreduce_validate(const MlkModelDesc *d, int o) {
  const MlkOpDesc *op = &d->ops[o];
  mlk_status st;
  if (op->ranks < 2 || op->ranks != d->ranks)
    return mlk_desc_invalid(d, "op %d '%s': an allreduce over %lld ranks in a model of %lld", o,
                            op->name, (long long)op->ranks, (long long)d->ranks);
  if ((st = check_out(d, o, MLK_F32, op->n)) ||
      (st = check_rows(d, o, "x", op->in[0], MLK_F32, op->n)))
    return st;
  return check_unused(d, o, 1);
}

/* What the checker sees: this rank's x, a tile (the other ranks' come through the event whose
 * notifies reach every rank). */
static int allreduce_accesses(const MlkModelDesc *d, int o, MlkAccess *r, MlkAccess *w) {
  const MlkOpDesc *op = &d->ops[o];
  r[0] = tiled(op->in[0].tensor, op->in[0].offset, op->tile, op->n);
  (void)w;
  return 1;
}

static int64_t allreduce_cost(const MlkOpDesc *op, int64_t cols) {
  return OVERHEAD + cols * 4 * (op->ranks + 1);
}

/* ---- the table and the entry points ---- */

typedef struct OpRuntime {
  mlk_status (*validate)(const MlkModelDesc *d, int o);
  int (*accesses)(const MlkModelDesc *d, int o, MlkAccess *reads, MlkAccess *write);
  int64_t (*cost)(const MlkOpDesc *op, int64_t cols);
} OpRuntime;

static const OpRuntime kinds[] = {
#define X(K, name, r0, r1, r2, r3, r4) [MLK_OP_##K] = {name##_validate, name##_accesses, name##_cost},
    MLK_OP_KINDS(X)
#undef X
};
_Static_assert(sizeof kinds / sizeof *kinds == MLK_OP_KIND_COUNT, "a row per op kind");

/* The checks common to every kind, then the kind's own. */
mlk_status mlk_op_validate(const MlkModelDesc *d, int o) {
  const MlkOpDesc *op = &d->ops[o];
  if ((unsigned)op->kind > MLK_OP_LAST)
    return mlk_desc_invalid(d, "op %d '%s': kind %d is not a valid MlkOpKind", o, op->name,
                            (int)op->kind);
  if (op->kind != MLK_OP_MATVEC && op->kind != MLK_OP_ELTWISE && op->fn != MLK_FN_NONE)
    return mlk_desc_invalid(d, "op %d '%s': fn is %d, but this %s takes none", o, op->name,
                            (int)op->fn, mlk_op_kind_name(op->kind));
  if (op->kind != MLK_OP_MATVEC && op->kind != MLK_OP_ARGMAX && op->kind != MLK_OP_SAMPLE &&
      op->k != 0)
    return mlk_desc_invalid(d, "op %d '%s': k is %lld, must be 0 for this %s", o, op->name,
                            (long long)op->k, mlk_op_kind_name(op->kind));
  if ((op->kind != MLK_OP_ATTENTION || op->split <= 1) && op->min_chunk != 0)
    return mlk_desc_invalid(
        d, "op %d '%s': min_chunk is %lld, must be 0 unless the op is a split attention", o,
        op->name, (long long)op->min_chunk);
  if (op->min_chunk < 0 || op->min_chunk > (1 << 24))
    return mlk_desc_invalid(d, "op %d '%s': min_chunk is %lld, must be in [0, %d]", o, op->name,
                            (long long)op->min_chunk, 1 << 24);
  if (op->kind != MLK_OP_ATTENTION && op->kind != MLK_OP_ATTN_REDUCE && op->kind != MLK_OP_ARGMAX &&
      op->kind != MLK_OP_ARGMAX_REDUCE && op->kind != MLK_OP_MATVEC && op->split != 0)
    return mlk_desc_invalid(d, "op %d '%s': split is %lld, must be 0 for this %s", o, op->name,
                            (long long)op->split, mlk_op_kind_name(op->kind));
  return kinds[op->kind].validate(d, o);
}

void mlk_op_accesses(const MlkModelDesc *d, int o, MlkAccess reads[MLK_MAX_READS], int *nreads,
                     MlkAccess *write) {
  const MlkOpDesc *op = &d->ops[o];
  *write = tiled(op->out.tensor, op->out.offset, op->tile, op->n);
  *nreads = kinds[op->kind].accesses(d, o, reads, write);
}

int64_t mlk_sched_task_cost(const MlkOpDesc *op, int64_t cols) {
  return (unsigned)op->kind < MLK_OP_KIND_COUNT ? kinds[op->kind].cost(op, cols) : OVERHEAD;
}
