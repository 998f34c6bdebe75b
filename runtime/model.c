/* model.c: the backend-independent half of the runtime: backends, models, tensors and runs.
 *
 * A model is a validated MlkModelDesc plus a backend's buffers. Everything that is about the model
 * rather than the machine happens here, once for both backends: the validation of a description
 * (generated code and hand-written test tables both come through it, so it says exactly which
 * field is wrong), the batch (how many rows of the batched tensors a run uses, and so the byte
 * sizes of set/get), the KV caches (sized from MLK_KV_CONTEXT, page tables filled here), the
 * run-time values the kernels read (`rt`), the kind and size checks of set/get, the checks before
 * a run (params and inputs set, positions and token ids in range), the per-kernel epochs of the
 * never-reset event counters, and the deadlock message built from the error record a backend
 * returns.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Largest batch_max a description may declare (keeps page tables and byte sizes far from
 * overflow; a decode batch is at most a few hundred rows). */
#define MLK_MAX_BATCH 65536
/* Largest MLK_KV_CONTEXT (tokens per sequence of a KV cache). */
#define MLK_MAX_KV_CONTEXT (1 << 24)

/* ---- backends ---- */

mlk_status mlk_backend_create_cpu(const mlk_sim_options *opt, mlk_backend **out) {
  if (!out)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_backend_create_cpu: out is NULL");
  *out = NULL;
  return mlk_sim_backend_create(opt, out);
}

mlk_status mlk_backend_create(mlk_backend_kind kind, mlk_backend **out) {
  if (!out)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_backend_create: out is NULL");
  *out = NULL;
  if (kind == MLK_BACKEND_AUTO) {
    const char *env = getenv("MLK_BACKEND");
    if (env && !strcmp(env, "gpu"))
      kind = MLK_BACKEND_GPU;
    else if (env && !strcmp(env, "cpu"))
      kind = MLK_BACKEND_CPU;
    else if (env && *env && strcmp(env, "auto"))
      return mlk_set_error(MLK_ERR_INVALID, "environment variable MLK_BACKEND='%s' is not gpu, cpu or auto",
                           env);
  }
  switch (kind) {
  case MLK_BACKEND_GPU: return mlk_gpu_backend_create(0, out);
  case MLK_BACKEND_CPU: return mlk_sim_backend_create(NULL, out);
  case MLK_BACKEND_AUTO: break;
  default: return mlk_set_error(MLK_ERR_INVALID, "unknown backend kind %d", (int)kind);
  }
  mlk_status st = mlk_gpu_backend_create(0, out);
  if (st == MLK_OK)
    return MLK_OK;
  /* The GPU's failure is not an error of AUTO: keep it as the note that says why we fell back. */
  char note[sizeof((*out)->note)];
  snprintf(note, sizeof note, "%s", mlk_last_error());
  st = mlk_sim_backend_create(NULL, out);
  if (st != MLK_OK)
    return st;
  snprintf((*out)->note, sizeof((*out)->note), "%s", note);
  return MLK_OK;
}

mlk_status mlk_backend_create_gpu(int device, mlk_backend **out) {
  if (!out)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_backend_create_gpu: out is NULL");
  return mlk_gpu_backend_create(device, out);
}

void mlk_backend_free(mlk_backend *be) {
  if (!be)
    return;
  be->ops->backend_free(be);
  free(be);
}

const char *mlk_backend_name(const mlk_backend *be) { return be ? be->name : "(null backend)"; }
int mlk_backend_is_gpu(const mlk_backend *be) { return be ? be->is_gpu : 0; }
const char *mlk_backend_note(const mlk_backend *be) { return be ? be->note : ""; }
const char *mlk_backend_ptx_arch(const mlk_backend *be) { return be ? be->ptx_arch : NULL; }

/* ---- validation ---- */

size_t mlk_tensor_bytes(const MlkTensorDesc *t) {
  return (size_t)t->numel * mlk_dtype_size(t->dtype);
}

static const char *str_or(const char *s, const char *dflt) { return s ? s : dflt; }

mlk_status mlk_desc_invalid(const MlkModelDesc *d, const char *fmt, ...) {
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return mlk_set_error(MLK_ERR_INVALID, "invalid model description '%s' (%s): %s",
                       str_or(d->name, "?"), str_or(d->source, "no source"), msg);
}
#define bad mlk_desc_invalid
const char *mlk_tensor_kind_name(MlkTensorKind k) {
  switch (k) {
  case MLK_TENSOR_PARAM: return "param";
  case MLK_TENSOR_INPUT: return "input";
  case MLK_TENSOR_OUTPUT: return "output";
  case MLK_TENSOR_TEMP: return "temp";
  case MLK_TENSOR_CACHE: return "KV cache pool";
  case MLK_TENSOR_PAGES: return "KV cache page table";
  case MLK_TENSOR_SAMPLING: return "sampling tensor";
  }
  return "?";
}

const char *mlk_op_kind_name(MlkOpKind k) {
  static const char *const names[] = {
#define X(K, name, r0, r1, r2, r3, r4) #name,
      MLK_OP_KINDS(X)
#undef X
  };
  return (unsigned)k < MLK_OP_KIND_COUNT ? names[k] : "?";
}

int mlk_cache_of_tensor(const MlkModelDesc *d, int t) {
  for (int c = 0; c < d->ncaches; c++)
    if (d->caches[c].tensor == t || d->caches[c].pages_tensor == t)
      return c;
  return -1;
}

int64_t mlk_tensor_cols(const MlkModelDesc *d, int t) {
  const MlkTensorDesc *td = &d->tensors[t];
  if (td->kind == MLK_TENSOR_CACHE) {
    int c = mlk_cache_of_tensor(d, t);
    return c < 0 ? 0 : d->caches[c].layers * d->caches[c].kv_heads * d->caches[c].head_dim;
  }
  if (td->kind == MLK_TENSOR_PAGES)
    return 0;
  return td->batched ? td->numel / td->shape[0] : td->numel;
}

/* a * b when it stays <= lim (all >= 0), else -1. */
static int64_t mul_within(int64_t a, int64_t b, int64_t lim) {
  if (a < 0 || b < 0 || (b && a > lim / b))
    return -1;
  return a * b;
}

/* A batch dim: batch_min..batch_max; none: both 1 (0 is taken as 1: an unset field). */
static mlk_status validate_batch(const MlkModelDesc *d) {
  if (d->batch_name) {
    if (d->batch_min < 1 || d->batch_min > d->batch_max || d->batch_max > MLK_MAX_BATCH)
      return bad(d, "batch dim '%s' is %lld..%lld, must satisfy 1 <= min <= max <= %d", d->batch_name,
                 (long long)d->batch_min, (long long)d->batch_max, MLK_MAX_BATCH);
  } else if ((d->batch_min != 0 && d->batch_min != 1) || (d->batch_max != 0 && d->batch_max != 1)) {
    return bad(d, "no batch dim (batch_name is NULL), but batch_min..batch_max is %lld..%lld, not 1..1",
               (long long)d->batch_min, (long long)d->batch_max);
  }
  return MLK_OK;
}

static mlk_status validate_tensors(const MlkModelDesc *d) {
  for (int i = 0; i < d->ntensors; i++) {
    const MlkTensorDesc *t = &d->tensors[i];
    if (!t->name)
      return bad(d, "tensor %d has no name", i);
    for (int j = 0; j < i; j++)
      if (d->tensors[j].name && !strcmp(d->tensors[j].name, t->name))
        return bad(d, "tensors %d and %d are both called '%s'", j, i, t->name);
    if ((unsigned)t->dtype >= MLK_DTYPE_COUNT)
      return bad(d, "tensor %d '%s': dtype %d is not a valid MlkDType", i, t->name, (int)t->dtype);
    if ((unsigned)t->kind > MLK_TENSOR_SAMPLING)
      return bad(d, "tensor %d '%s': kind %d is not a valid MlkTensorKind", i, t->name, (int)t->kind);
    if (t->batched != 0 && t->batched != 1)
      return bad(d, "tensor %d '%s': batched is %d, must be 0 or 1", i, t->name, t->batched);
    if (t->kind == MLK_TENSOR_CACHE || t->kind == MLK_TENSOR_PAGES) {
      /* Sized at model creation from the cache geometry and MLK_KV_CONTEXT: shape not used. */
      if (t->numel != 0 || t->batched)
        return bad(d, "tensor %d '%s' is a %s: numel must be 0 and batched 0 (it is sized at model "
                   "creation), got numel %lld and batched %d", i, t->name, mlk_tensor_kind_name(t->kind),
                   (long long)t->numel, t->batched);
      continue;
    }
    if (t->kind == MLK_TENSOR_SAMPLING) {
      /* one row of parameters per batch row (sampling.c writes them) */
      int64_t rows = d->batch_name ? d->batch_max : 1;
      if (t->dtype != MLK_F32 || t->batched != (d->batch_name != NULL) ||
          t->rank != (t->batched ? 2 : 1) || t->shape[t->rank - 1] != MLK_SAMPLE_PARAMS ||
          (t->batched && t->shape[0] != rows) || t->numel != rows * MLK_SAMPLE_PARAMS)
        return bad(d, "tensor %d '%s' is a sampling tensor: it must be f32[%s%d]%s, numel %lld", i,
                   t->name, d->batch_name ? "batch_max, " : "", MLK_SAMPLE_PARAMS,
                   d->batch_name ? ", batched" : ", not batched", (long long)(rows * MLK_SAMPLE_PARAMS));
      for (int j = 0; j < i; j++)
        if (d->tensors[j].kind == MLK_TENSOR_SAMPLING)
          return bad(d, "tensors %d '%s' and %d '%s' are both sampling tensors: a model has at most one",
                     j, d->tensors[j].name, i, t->name);
    }
    if (t->rank < 0 || t->rank > MLK_MAX_RANK)
      return bad(d, "tensor %d '%s': rank %d is not in [0, %d]", i, t->name, t->rank, MLK_MAX_RANK);
    int64_t numel = 1;
    for (int r = 0; r < t->rank; r++) {
      if (t->shape[r] < 1)
        return bad(d, "tensor %d '%s': shape[%d] is %lld", i, t->name, r, (long long)t->shape[r]);
      /* Bound every partial product so the byte size below cannot overflow. */
      if (numel > ((int64_t)1 << 56) / t->shape[r])
        return bad(d, "tensor %d '%s' is too large", i, t->name);
      numel *= t->shape[r];
    }
    if (numel != t->numel)
      return bad(d, "tensor %d '%s': numel is %lld, the shape gives %lld", i, t->name,
                 (long long)t->numel, (long long)numel);
    if (t->batched) {
      if (!d->batch_name)
        return bad(d, "tensor %d '%s' is batched, but the model has no batch dim (batch_name is NULL)",
                   i, t->name);
      if (t->kind == MLK_TENSOR_PARAM)
        return bad(d, "tensor %d '%s' is a batched param: params have no batch dim", i, t->name);
      if (t->rank < 1 || t->shape[0] != d->batch_max)
        return bad(d, "tensor %d '%s' is batched: shape[0] must be batch_max %lld, got %s%lld", i,
                   t->name, (long long)d->batch_max, t->rank < 1 ? "rank " : "",
                   (long long)(t->rank < 1 ? t->rank : t->shape[0]));
    }
  }
  return MLK_OK;
}

/* The checkpoint bindings: sorted by tensor, each of a param and inside it, the bindings of a
 * param in increasing offset order without overlaps or gaps, so that together they fill each of
 * its elements exactly once. */
static mlk_status validate_bindings(const MlkModelDesc *d) {
  if (d->nbindings < 0 || (d->nbindings && !d->bindings))
    return bad(d, "%d bindings at %p", d->nbindings, (const void *)d->bindings);
  int64_t end = 0; /* elements of the current param filled by the bindings so far */
  for (int j = 0; j < d->nbindings; j++) {
    const MlkBinding *b = &d->bindings[j], *prev = j ? &d->bindings[j - 1] : NULL;
    if (b->tensor < 0 || b->tensor >= d->ntensors)
      return bad(d, "binding %d '%s': tensor %d out of range (%d tensors)", j,
                 str_or(b->name, "?"), b->tensor, d->ntensors);
    const MlkTensorDesc *t = &d->tensors[b->tensor];
    if (t->kind != MLK_TENSOR_PARAM)
      return bad(d, "binding %d '%s' fills %s '%s': only params are loaded from checkpoints", j,
                 str_or(b->name, "?"), mlk_tensor_kind_name(t->kind), t->name);
    if (!b->name || !*b->name)
      return bad(d, "binding %d of param '%s' has no checkpoint tensor name", j, t->name);
    if (prev && prev->tensor > b->tensor)
      return bad(d, "binding %d '%s' of param '%s' comes after a binding of tensor %d: bindings "
                 "are sorted by tensor", j, b->name, t->name, prev->tensor);
    if (prev && prev->tensor != b->tensor) {
      if (end != d->tensors[prev->tensor].numel)
        return bad(d, "param '%s': no binding fills elements [%lld, %lld): the bindings of a param "
                   "must cover it", d->tensors[prev->tensor].name, (long long)end,
                   (long long)d->tensors[prev->tensor].numel);
      end = 0;
    }
    if (b->rank < 0 || b->rank > MLK_MAX_RANK)
      return bad(d, "binding %d '%s' of param '%s' has rank %d, not in [0, %d]", j, b->name,
                 t->name, b->rank, MLK_MAX_RANK);
    int64_t numel = 1, ways = b->shard_ways > 1 ? b->shard_ways : 1;
    if (b->shard_ways < 0 || b->shard_ways > (1 << 16) ||
        (ways > 1 && (b->shard_dim < 0 || b->shard_dim >= b->rank ||
                      b->shape[b->shard_dim] % ways)))
      return bad(d, "binding %d '%s' of param '%s' is sharded %lld ways along dimension %d of %s",
                 j, b->name, t->name, (long long)b->shard_ways, b->shard_dim,
                 b->rank >= 1 && b->rank <= MLK_MAX_RANK ? "its shape" : "no shape");
    for (int r = 0; r < b->rank; r++) {
      int64_t e = b->shape[r] / (ways > 1 && r == b->shard_dim ? ways : 1); /* what the param holds */
      if (b->shape[r] < 1 || e > t->numel || numel > t->numel / e)
        return bad(d, "binding %d '%s' of param '%s' (%lld elements) has shape[%d] = %lld", j,
                   b->name, t->name, (long long)t->numel, r, (long long)b->shape[r]);
      numel *= e;
    }
    if (b->offset < 0 || b->offset > t->numel - numel)
      return bad(d, "binding %d '%s' fills elements [%lld, %lld) of param '%s', which has %lld", j,
                 b->name, (long long)b->offset, (long long)b->offset + numel, t->name,
                 (long long)t->numel);
    if (b->offset < end)
      return bad(d, "binding %d '%s' fills elements [%lld, %lld) of param '%s', which overlaps "
                 "binding %d '%s' ending at %lld (a param's bindings go in increasing offset order)",
                 j, b->name, (long long)b->offset, (long long)(b->offset + numel), t->name, j - 1,
                 prev->name, (long long)end);
    if (b->offset > end)
      return bad(d, "param '%s': no binding fills elements [%lld, %lld) (binding %d '%s' starts at "
                 "%lld): the bindings of a param must cover it", t->name, (long long)end,
                 (long long)b->offset, j, b->name, (long long)b->offset);
    end = b->offset + numel;
  }
  if (d->nbindings) {
    const MlkTensorDesc *t = &d->tensors[d->bindings[d->nbindings - 1].tensor];
    if (end != t->numel)
      return bad(d, "param '%s': no binding fills elements [%lld, %lld): the bindings of a param "
                 "must cover it", t->name, (long long)end, (long long)t->numel);
  }
  return MLK_OK;
}

static mlk_status validate_caches(const MlkModelDesc *d) {
  for (int c = 0; c < d->ncaches; c++) {
    const MlkCacheDesc *cd = &d->caches[c];
    if (!cd->name)
      return bad(d, "cache %d has no name", c);
    if (cd->tensor < 0 || cd->tensor >= d->ntensors || d->tensors[cd->tensor].kind != MLK_TENSOR_CACHE)
      return bad(d, "cache %d '%s': tensor %d is not a KV cache pool (MLK_TENSOR_CACHE)", c, cd->name,
                 cd->tensor);
    if (cd->pages_tensor < 0 || cd->pages_tensor >= d->ntensors ||
        d->tensors[cd->pages_tensor].kind != MLK_TENSOR_PAGES)
      return bad(d, "cache %d '%s': pages_tensor %d is not a page table (MLK_TENSOR_PAGES)", c,
                 cd->name, cd->pages_tensor);
    const MlkTensorDesc *pool = &d->tensors[cd->tensor], *pages = &d->tensors[cd->pages_tensor];
    /* The reference and device tiles (mlk_ref.h, mlk_tiles.h) read and write bf16 pools only. */
    if (cd->dtype != MLK_BF16)
      return bad(d, "cache %d '%s' is %s: only bf16 KV caches are implemented", c, cd->name,
                 mlk_dtype_name(cd->dtype));
    if (pool->dtype != cd->dtype)
      return bad(d, "cache %d '%s' is %s, but its pool '%s' is %s", c, cd->name,
                 mlk_dtype_name(cd->dtype), pool->name, mlk_dtype_name(pool->dtype));
    if (pages->dtype != MLK_I32)
      return bad(d, "cache %d '%s': page table '%s' is %s, expected i32", c, cd->name, pages->name,
                 mlk_dtype_name(pages->dtype));
    if (cd->layers < 1 || cd->kv_heads < 1 || cd->head_dim < 1 || cd->page < 1 ||
        cd->layers > MLK_MAX_CACHE_DIM || cd->kv_heads > MLK_MAX_CACHE_DIM ||
        cd->head_dim > MLK_MAX_CACHE_DIM || cd->page > MLK_MAX_CACHE_DIM)
      return bad(d, "cache %d '%s': layers %lld, kv_heads %lld, head_dim %lld and page %lld must all "
                 "be in [1, %d]", c, cd->name, (long long)cd->layers, (long long)cd->kv_heads,
                 (long long)cd->head_dim, (long long)cd->page, MLK_MAX_CACHE_DIM);
    for (int j = 0; j < c; j++)
      if (d->caches[j].tensor == cd->tensor || d->caches[j].pages_tensor == cd->pages_tensor)
        return bad(d, "caches %d '%s' and %d '%s' share their %s", j, str_or(d->caches[j].name, "?"),
                   c, cd->name, d->caches[j].tensor == cd->tensor ? "pool" : "page table");
  }
  for (int i = 0; i < d->ntensors; i++) {
    MlkTensorKind k = d->tensors[i].kind;
    if ((k == MLK_TENSOR_CACHE || k == MLK_TENSOR_PAGES) && mlk_cache_of_tensor(d, i) < 0)
      return bad(d, "tensor %d '%s' is a %s but belongs to no cache", i, d->tensors[i].name,
                 mlk_tensor_kind_name(k));
  }
  return MLK_OK;
}

static mlk_status validate_ops(const MlkModelDesc *d) {
  for (int o = 0; o < d->nops; o++) {
    const MlkOpDesc *op = &d->ops[o];
    if (!op->name)
      return bad(d, "op %d has no name", o);
    if (op->n < 1 || op->tile < 1)
      return bad(d, "op %d '%s': n is %lld and tile %lld, both must be >= 1", o, op->name,
                 (long long)op->n, (long long)op->tile);
    int64_t want = (op->n - 1) / op->tile + 1;
    if (op->ntasks != want)
      return bad(d, "op %d '%s': ntasks is %lld, expected ceil(%lld / %lld) = %lld", o, op->name,
                 (long long)op->ntasks, (long long)op->n, (long long)op->tile, (long long)want);
    if (op->ntasks > MLK_MAX_TASKS_PER_OP)
      return bad(d, "op %d '%s' has %lld tasks, more than %d (the task field of a task word)", o,
                 op->name, (long long)op->ntasks, MLK_MAX_TASKS_PER_OP);
    if (op->batched != 0 && op->batched != 1)
      return bad(d, "op %d '%s': batched is %d, must be 0 or 1", o, op->name, op->batched);
    if (op->batched && !d->batch_name)
      return bad(d, "op %d '%s' is batched, but the model has no batch dim", o, op->name);
    mlk_status st = mlk_op_validate(d, o);
    if (st)
      return st;
  }
  return MLK_OK;
}

/* Fills kernel_of[op] and checks the kernels partition the ops into runs. */
static mlk_status validate_kernels(const MlkModelDesc *d, int *kernel_of) {
  for (int o = 0; o < d->nops; o++)
    kernel_of[o] = -1;
  for (int k = 0; k < d->nkernels; k++) {
    const MlkKernelDesc *kd = &d->kernels[k];
    if (!kd->name || !kd->entry)
      return bad(d, "kernel %d has no %s", k, kd->name ? "entry symbol" : "name");
    if (kd->nops < 1)
      return bad(d, "kernel %d '%s' has %d ops, must have at least 1", k, kd->name, kd->nops);
    if (kd->schedule != MLK_SCHED_STATIC && kd->schedule != MLK_SCHED_DYNAMIC)
      return bad(d, "kernel %d '%s': schedule %d is not a valid MlkSchedule", k, kd->name,
                 (int)kd->schedule);
    if (kd->first_op < 0 || kd->first_op > d->nops - kd->nops)
      return bad(d, "kernel %d '%s': ops [%d, %lld) are out of range (%d ops)", k, kd->name,
                 kd->first_op, (long long)kd->first_op + kd->nops, d->nops);
    for (int o = kd->first_op; o < kd->first_op + kd->nops; o++) {
      if (kernel_of[o] >= 0)
        return bad(d, "op %d '%s' belongs to kernels %d and %d", o, d->ops[o].name, kernel_of[o], k);
      kernel_of[o] = k;
    }
    /* a megakernel cut at its collectives: its segments are consecutive kernels */
    if (kd->nsegments < 1 || kd->segment < 0 || kd->segment >= kd->nsegments)
      return bad(d, "kernel %d '%s': segment %d of %d", k, kd->name, kd->segment, kd->nsegments);
    if (kd->segment > 0 && (k == 0 || d->kernels[k - 1].segment != kd->segment - 1 ||
                            d->kernels[k - 1].nsegments != kd->nsegments))
      return bad(d, "kernel %d '%s' is segment %d of %d, but kernel %d is not segment %d of them",
                 k, kd->name, kd->segment, kd->nsegments, k - 1, kd->segment - 1);
    if (kd->segment + 1 < kd->nsegments && k + 1 >= d->nkernels)
      return bad(d, "kernel %d '%s' is segment %d of %d, the last kernel", k, kd->name,
                 kd->segment, kd->nsegments);
    if (kd->segment + 1 < kd->nsegments && (d->kernels[k + 1].segment != kd->segment + 1 ||
                                            d->kernels[k + 1].nsegments != kd->nsegments))
      return bad(d, "kernel %d '%s' is segment %d of %d, but kernel %d is not segment %d of them",
                 k, kd->name, kd->segment, kd->nsegments, k + 1, kd->segment + 1);
    /* The code of variant v was compiled with the fields of op variant_ops[v] as constants: every
     * op it runs must agree with that op on them. */
    if (kd->nvariants < 0 || kd->nvariants > kd->nops || (kd->nvariants && !kd->variant_ops))
      return bad(d, "kernel %d '%s': %d variants (its variant_ops %s) for %d ops", k, kd->name,
                 kd->nvariants, kd->variant_ops ? "set" : "NULL", kd->nops);
    for (int v = 0; v < kd->nvariants; v++) {
      int r = kd->variant_ops[v];
      if (r < kd->first_op || r >= kd->first_op + kd->nops || d->ops[r].variant != v)
        return bad(d, "kernel %d '%s': variant %d names op %d, which is not an op of the kernel of "
                   "that variant", k, kd->name, v, r);
    }
    for (int o = kd->first_op; o < kd->first_op + kd->nops; o++) {
      const MlkOpDesc *op = &d->ops[o];
      if (op->variant < 0 || op->variant >= (kd->nvariants ? kd->nvariants : 1))
        return bad(d, "op %d '%s': variant %d, but kernel '%s' has %d", o, op->name, op->variant,
                   kd->name, kd->nvariants);
      if (kd->nvariants && !mlk_op_same_variant(op, &d->ops[kd->variant_ops[op->variant]]))
        return bad(d, "op %d '%s' differs from op %d '%s', whose code variant %d it runs, in more "
                   "than its operands' addresses, layer and events", o, op->name,
                   kd->variant_ops[op->variant], d->ops[kd->variant_ops[op->variant]].name,
                   op->variant);
    }
  }
  for (int o = 0; o < d->nops; o++)
    if (kernel_of[o] < 0)
      return bad(d, "op %d '%s' belongs to no kernel", o, d->ops[o].name);
  return MLK_OK;
}

static int cmp_base(const void *a, const void *b, void *arg) {
  const MlkEventDesc *ev = arg;
  int64_t x = ev[*(const int *)a].base, y = ev[*(const int *)b].base;
  return (x > y) - (x < y);
}

static mlk_status validate_events(const MlkModelDesc *d, const int *kernel_of) {
  int64_t sum = 0;
  for (int i = 0; i < d->nevents; i++) {
    const MlkEventDesc *e = &d->events[i];
    if (!e->name)
      return bad(d, "event %d has no name", i);
    if (e->map != MLK_MAP_ALL && e->map != MLK_MAP_TILE)
      return bad(d, "event %d '%s': map %d is not a valid MlkEventMap", i, e->name, (int)e->map);
    /* notifies that reach every rank: only an in-kernel allreduce waits on those */
    if (e->ranks > 1 && (e->ranks != d->ranks || e->consumer < 0 || e->consumer >= d->nops ||
                         d->ops[e->consumer].kind != MLK_OP_ALLREDUCE || e->map != MLK_MAP_TILE))
      return bad(d, "event %d '%s': its notifies reach %lld ranks (the model has %lld), which only "
                 "a tiled event into an allreduce may", i, e->name, (long long)e->ranks,
                 (long long)d->ranks);
    if (e->ranks < 0 || (e->ranks <= 1 && e->consumer >= 0 && e->consumer < d->nops &&
                         d->ops[e->consumer].kind == MLK_OP_ALLREDUCE &&
                         e->tensor == d->ops[e->consumer].in[0].tensor))
      return bad(d, "event %d '%s' into an allreduce reaches %lld ranks, not the model's %lld", i,
                 e->name, (long long)e->ranks, (long long)d->ranks);
    if (e->producer == -1 && e->consumer == -1 && e->tensor == -1) {
      /* an explicit event counter: its ops come from the wait and notify lists (validate_refs) */
      if (e->map != MLK_MAP_ALL || e->size != 1)
        return bad(d, "event %d '%s': an explicit event is one MLK_MAP_ALL counter (map %d, size %lld)",
                   i, e->name, (int)e->map, (long long)e->size);
    } else {
      if (e->producer < 0 || e->producer >= d->nops || e->consumer < 0 || e->consumer >= d->nops)
        return bad(d, "event %d '%s': producer %d or consumer %d out of range (%d ops)", i, e->name,
                   e->producer, e->consumer, d->nops);
      const MlkOpDesc *p = &d->ops[e->producer], *c = &d->ops[e->consumer];
      if (kernel_of[e->producer] != kernel_of[e->consumer])
        return bad(d, "event %d '%s' goes from op '%s' in kernel %d to op '%s' in kernel %d", i,
                   e->name, p->name, kernel_of[e->producer], c->name, kernel_of[e->consumer]);
      /* Scheduling relies on this (see sched.c): a task only waits for tasks of earlier ops. */
      if (e->producer >= e->consumer)
        return bad(d, "event %d '%s': producer op %d is not before consumer op %d", i, e->name,
                   e->producer, e->consumer);
      if (e->tensor < 0 || e->tensor >= d->ntensors)
        return bad(d, "event %d '%s': tensor %d out of range (%d tensors)", i, e->name, e->tensor,
                   d->ntensors);
      if (e->n < 1 || e->ptile < 1 || e->ctile < 1)
        return bad(d, "event %d '%s': n %lld, ptile %lld and ctile %lld must all be >= 1", i, e->name,
                   (long long)e->n, (long long)e->ptile, (long long)e->ctile);
      if (e->n > mlk_tensor_cols(d, e->tensor))
        return bad(d, "event %d '%s': n is %lld, but tensor '%s' has %lld columns", i, e->name,
                   (long long)e->n, d->tensors[e->tensor].name, (long long)mlk_tensor_cols(d, e->tensor));
      /* The index maps (mlk_desc.h) compute in u32, and start values are u32. */
      if (e->n > INT32_MAX || e->ptile > INT32_MAX || e->ctile > INT32_MAX)
        return bad(d, "event %d '%s': n %lld, ptile %lld and ctile %lld must be below 2^31", i,
                   e->name, (long long)e->n, (long long)e->ptile, (long long)e->ctile);
      if ((e->map == MLK_MAP_ALL ? (e->n - 1) / e->ptile + 1 : e->ctile / e->ptile + 2) > (1 << 30))
        return bad(d, "event %d '%s': ptile %lld and ctile %lld are out of proportion to n %lld", i,
                   e->name, (long long)e->ptile, (long long)e->ctile, (long long)e->n);
      if (e->map == MLK_MAP_ALL) {
        if (e->size != 1)
          return bad(d, "event %d '%s': an ALL event has 1 counter, size is %lld", i, e->name,
                     (long long)e->size);
      } else {
        if (e->size != c->ntasks)
          return bad(d, "event %d '%s': a TILE event has one counter per consumer task (%lld), size is %lld",
                     i, e->name, (long long)c->ntasks, (long long)e->size);
        /* Counters must map one-to-one onto the ctile-tiles of the n elements, and every producer
         * task's notify range must start inside the tensor, or the index maps would leave the
         * event's counters (and, on the GPU, increment another event's). */
        if ((e->n - 1) / e->ctile != e->size - 1)
          return bad(d, "event %d '%s': %lld elements in tiles of %lld need %lld counters, size is %lld",
                     i, e->name, (long long)e->n, (long long)e->ctile,
                     (long long)((e->n - 1) / e->ctile + 1), (long long)e->size);
        if (p->ntasks - 1 > (e->n - 1) / e->ptile)
          return bad(d, "event %d '%s': %lld producer tiles of %lld run past its %lld elements", i,
                     e->name, (long long)p->ntasks, (long long)e->ptile, (long long)e->n);
      }
    }
    /* a counter's target is epoch * start value in u32 */
    if (e->map == MLK_MAP_ALL && (e->count < 0 || e->count > (1 << 30)))
      return bad(d, "event %d '%s': count %lld must be in [0, 2^30]", i, e->name, (long long)e->count);
    if (e->base < 0 || e->base > d->ncounters - e->size) /* (size is >= 1 here) */
      return bad(d, "event %d '%s': counters [%lld, %lld) are outside the model's %lld counters", i,
                 e->name, (long long)e->base,
                 (long long)(e->base > INT64_MAX - e->size ? INT64_MAX : e->base + e->size),
                 (long long)d->ncounters);
    sum += e->size;
  }
  if (sum != d->ncounters)
    return bad(d, "ncounters is %lld, but the event sizes add up to %lld", (long long)d->ncounters,
               (long long)sum);
  if (d->ncounters > (int64_t)INT32_MAX)
    return bad(d, "%lld counters are too many", (long long)d->ncounters);
  /* In range and adding up to ncounters: they tile the array exactly iff no two overlap. */
  if (d->nevents > 1) {
    int *order = MLK_CALLOC((size_t)d->nevents, sizeof *order, "event order");
    if (!order)
      return MLK_ERR_NOMEM;
    for (int i = 0; i < d->nevents; i++)
      order[i] = i;
    qsort_r(order, (size_t)d->nevents, sizeof *order, cmp_base, (void *)d->events);
    for (int i = 1; i < d->nevents; i++) {
      const MlkEventDesc *a = &d->events[order[i - 1]], *b = &d->events[order[i]];
      if (a->base + a->size > b->base) {
        mlk_status st = bad(d, "events '%s' (counters [%lld, %lld)) and '%s' (counters [%lld, %lld)) overlap",
                            a->name, (long long)a->base, (long long)(a->base + a->size), b->name,
                            (long long)b->base, (long long)(b->base + b->size));
        free(order);
        return st;
      }
    }
    free(order);
  }
  return MLK_OK;
}

/* The ops' wait and notify lists against the events: every list inside event_refs, naming valid
 * events at most once; an inferred event waited on by its consumer alone and notified by its
 * producer alone; every event's waiters and notifiers in one kernel, every notifier before every
 * waiter (the schedules rely on it, sched.c), and an ALL event's count equal to the tasks that
 * notify it in a run (else its waits would hang or pass early). */
static mlk_status validate_refs(const MlkModelDesc *d, const int *kernel_of) {
  if (d->nevent_refs < 0 || (d->nevent_refs && !d->event_refs))
    return bad(d, "nevent_refs is %d with event_refs %s", d->nevent_refs,
               d->event_refs ? "set" : "NULL");
  size_t ne = d->nevents ? (size_t)d->nevents : 1;
  int64_t *tasks = MLK_CALLOC(ne, sizeof *tasks, "event notifier tasks");
  int *first_wait = MLK_CALLOC(ne, sizeof *first_wait, "event waiters");
  int *last_notify = MLK_CALLOC(ne, sizeof *last_notify, "event notifiers");
  int *seen = MLK_CALLOC(ne, sizeof *seen, "event marks");
  mlk_status st = MLK_OK;
  if (!tasks || !first_wait || !last_notify || !seen) {
    st = MLK_ERR_NOMEM;
    goto done;
  }
  for (int i = 0; i < d->nevents; i++) {
    first_wait[i] = d->nops;
    last_notify[i] = -1;
    seen[i] = -1;
  }
  for (int o = 0; o < d->nops && !st; o++) {
    const MlkOpDesc *op = &d->ops[o];
    for (int which = 0; which < 2 && !st; which++) {
      int first = which ? op->notify0 : op->wait0, n = which ? op->nnotifies : op->nwaits;
      const char *list = which ? "notify" : "wait";
      if (first < 0 || n < 0 || first > d->nevent_refs - n) {
        st = bad(d, "op %d '%s': %s list [%d, %lld) is outside event_refs (%d entries)", o,
                 op->name, list, first, (long long)first + n, d->nevent_refs);
        break;
      }
      for (int r = first; r < first + n; r++) {
        int ev = d->event_refs[r];
        if (ev < 0 || ev >= d->nevents) {
          st = bad(d, "op %d '%s': its %s list names event %d (the model has %d)", o, op->name, list,
                   ev, d->nevents);
          break;
        }
        const MlkEventDesc *e = &d->events[ev];
        if (seen[ev] == 2 * o + which) {
          st = bad(d, "op %d '%s' names event '%s' twice in its %s list", o, op->name, e->name, list);
          break;
        }
        seen[ev] = 2 * o + which;
        int owner = which ? e->producer : e->consumer;
        if (owner >= 0 && owner != o) {
          st = bad(d, "op %d '%s' %ss on event '%s', whose %s is op %d", o, op->name, list, e->name,
                   which ? "producer" : "consumer", owner);
          break;
        }
        if (e->map == MLK_MAP_TILE && which && tasks[ev]) {
          st = bad(d, "TILE event '%s' is notified by more than one op", e->name);
          break;
        }
        if (which) {
          tasks[ev] += op->ntasks;
          last_notify[ev] = o;
        } else if (o < first_wait[ev]) {
          first_wait[ev] = o;
        }
      }
    }
  }
  for (int i = 0; i < d->nevents && !st; i++) {
    const MlkEventDesc *e = &d->events[i];
    /* an inferred event is on its producer's and consumer's lists */
    if (e->producer >= 0 && (last_notify[i] != e->producer || first_wait[i] != e->consumer))
      st = bad(d, "event %d '%s' is missing from the %s list of op %d", i, e->name,
               last_notify[i] != e->producer ? "notify" : "wait",
               last_notify[i] != e->producer ? e->producer : e->consumer);
    else if (last_notify[i] >= first_wait[i])
      st = bad(d, "event %d '%s': op %d '%s' waits on it but op %d '%s', a later op, notifies it", i,
               e->name, first_wait[i], d->ops[first_wait[i]].name, last_notify[i],
               d->ops[last_notify[i]].name);
    else if (e->map == MLK_MAP_ALL && tasks[i] != e->count)
      st = bad(d, "event %d '%s': count is %lld, but its notifiers have %lld tasks", i, e->name,
               (long long)e->count, (long long)tasks[i]);
    if (st)
      break;
    /* all of an event's ops in one kernel: compare every list entry's op with the first one's */
  }
  for (int o = 0; o < d->nops && !st; o++) {
    const MlkOpDesc *op = &d->ops[o];
    for (int r = 0; r < op->nwaits + op->nnotifies; r++) {
      int ev = d->event_refs[r < op->nwaits ? op->wait0 + r : op->notify0 + r - op->nwaits];
      int other = first_wait[ev] < d->nops ? first_wait[ev] : last_notify[ev];
      if (kernel_of[other] != kernel_of[o]) {
        st = bad(d, "event '%s' links op '%s' in kernel %d with op '%s' in kernel %d",
                 d->events[ev].name, op->name, kernel_of[o], d->ops[other].name, kernel_of[other]);
        break;
      }
    }
  }
done:
  free(tasks);
  free(first_wait);
  free(last_notify);
  free(seen);
  return st;
}

/* The first kernel (segment 0) of the megakernel that kernel k is a segment of. */
static int first_segment(const MlkModelDesc *d, int k) { return k - d->kernels[k].segment; }

/* Whether op o reads (an operand) or writes tensor t. */
static int op_reads(const MlkOpDesc *op, int t) {
  for (int j = 0; j < MLK_OP_INPUTS; j++)
    if (op->in[j].tensor == t)
      return 1;
  return 0;
}

/* Collectives (MlkCollectiveDesc): f32 rows of their own tensors, over the model's ranks, in run
 * order; in is written by the segments up to `after` of its megakernel and no later, out only
 * read, and only by later segments: the order the cut gives, which is all the ranks synchronize
 * on. */
static mlk_status validate_collectives(const MlkModelDesc *d, const int *kernel_of) {
  if (d->ranks < 0 || d->ranks > 1024)
    return bad(d, "%lld ranks (1..1024)", (long long)d->ranks);
  if (d->ncollectives < 0 || (d->ncollectives && !d->collectives))
    return bad(d, "%d collectives%s", d->ncollectives, d->ncollectives > 0 ? ", table NULL" : "");
  for (int i = 0; i < d->ncollectives; i++) {
    const MlkCollectiveDesc *c = &d->collectives[i];
    const char *name = c->name ? c->name : "(unnamed)";
    if (c->kind != MLK_COLL_ALLREDUCE)
      return bad(d, "collective %d '%s': kind %d is not a valid MlkCollectiveKind", i, name,
                 (int)c->kind);
    if (c->ranks != d->ranks || c->ranks < 2)
      return bad(d, "collective %d '%s' is over %lld ranks, the model's mesh has %lld (a "
                 "collective is over at least 2)", i, name, (long long)c->ranks,
                 (long long)d->ranks);
    if (c->after < 0 || c->after >= d->nkernels || (i && c->after < d->collectives[i - 1].after))
      return bad(d, "collective %d '%s' runs after kernel %d: out of range or out of order", i,
                 name, c->after);
    const MlkArg *args[2] = {&c->in, &c->out};
    for (int a = 0; a < 2; a++) {
      int t = args[a]->tensor;
      if (t < 0 || t >= d->ntensors)
        return bad(d, "collective %d '%s': %s tensor %d out of range", i, name, a ? "out" : "in", t);
      const MlkTensorDesc *td = &d->tensors[t];
      if (td->dtype != MLK_F32 || (td->kind != MLK_TENSOR_TEMP && td->kind != MLK_TENSOR_OUTPUT &&
                                   (a || td->kind != MLK_TENSOR_INPUT)))
        return bad(d, "collective %d '%s': %s '%s' is a %s %s tensor, not f32 activations", i,
                   name, a ? "out" : "in", td->name, mlk_dtype_name(td->dtype),
                   mlk_tensor_kind_name(td->kind));
      if (args[a]->offset != 0 || mlk_tensor_cols(d, t) != c->n || td->batched != c->batched)
        return bad(d, "collective %d '%s': %s '%s' is not exactly its %s rows of %lld columns", i,
                   name, a ? "out" : "in", td->name, c->batched ? "batch" : "1",
                   (long long)c->n);
    }
    if (c->in.tensor == c->out.tensor)
      return bad(d, "collective %d '%s' reduces tensor '%s' into itself", i, name,
                 d->tensors[c->in.tensor].name);
    int first = first_segment(d, c->after), last = first + d->kernels[first].nsegments - 1;
    for (int o = 0; o < d->nops; o++) {
      const MlkOpDesc *op = &d->ops[o];
      int k = kernel_of[o];
      if (op->out.tensor == c->out.tensor)
        return bad(d, "collective %d '%s' writes '%s', which op %d '%s' writes too", i, name,
                   d->tensors[c->out.tensor].name, o, op->name);
      if (k < first || k > last)
        continue;
      if (op->out.tensor == c->in.tensor && k > c->after)
        return bad(d, "collective %d '%s' runs after kernel '%s', but op %d '%s' of the later "
                   "kernel '%s' writes its operand '%s'", i, name, d->kernels[c->after].name, o,
                   op->name, d->kernels[k].name, d->tensors[c->in.tensor].name);
      if (op_reads(op, c->out.tensor) && k <= c->after)
        return bad(d, "op %d '%s' of kernel '%s' reads '%s' before collective %d '%s' computes "
                   "it (after kernel '%s'): a dropped cross-rank dependency", o, op->name,
                   d->kernels[k].name, d->tensors[c->out.tensor].name, i, name,
                   d->kernels[c->after].name);
    }
  }
  return MLK_OK;
}

mlk_status mlk_desc_validate(const MlkModelDesc *d) {
  if (!d)
    return mlk_set_error(MLK_ERR_INVALID, "model description is NULL");
  if (d->abi != MLK_DESC_ABI)
    return bad(d, "generated for runtime ABI %d, this libmlkrt implements ABI %d: regenerate it with a matching mlkc",
               d->abi, MLK_DESC_ABI);
  if (d->ntensors < 0 || d->nops < 0 || d->nevents < 0 || d->nkernels < 0 || d->ncounters < 0 ||
      d->ncaches < 0)
    return bad(d, "negative count (%d tensors, %d ops, %d events, %d kernels, %lld counters, %d caches)",
               d->ntensors, d->nops, d->nevents, d->nkernels, (long long)d->ncounters, d->ncaches);
  if ((d->ntensors && !d->tensors) || (d->nops && !d->ops) || (d->nevents && !d->events) ||
      (d->nkernels && !d->kernels) || (d->ncaches && !d->caches))
    return bad(d, "a table with a nonzero count is NULL");
  mlk_status st;
  if ((st = validate_batch(d)) || (st = validate_tensors(d)) || (st = validate_bindings(d)) ||
      (st = validate_caches(d)) || (st = validate_ops(d)))
    return st;
  int *kernel_of = MLK_CALLOC((size_t)d->nops, sizeof *kernel_of, "op kernels");
  if (!kernel_of)
    return MLK_ERR_NOMEM;
  if (!(st = validate_kernels(d, kernel_of)) && !(st = validate_events(d, kernel_of)) &&
      !(st = validate_refs(d, kernel_of)))
    st = validate_collectives(d, kernel_of);
  free(kernel_of);
  return st;
}

/* ---- models ---- */

/* Frees the model's host-side tables (not the backend's state). */
static void free_tables(mlk_model *m) {
  mlk_sampling_free(m);
  if (m->shadow)
    for (int i = 0; i < m->desc->ntensors; i++)
      free(m->shadow[i]);
  free(m->shadow);
  free(m->rt);
  free(m->runs);
  free(m->rows_set);
  free(m->cap);
  free(m->bytes);
  free(m);
}

/* Bytes of the current batch's rows of every batched tensor; everything else is whole. */
static void update_bytes(mlk_model *m) {
  const MlkModelDesc *d = m->desc;
  for (int i = 0; i < d->ntensors; i++) {
    const MlkTensorDesc *t = &d->tensors[i];
    m->bytes[i] = t->batched ? (size_t)(t->numel / t->shape[0] * m->batch) * mlk_dtype_size(t->dtype)
                             : m->cap[i];
  }
  m->rt[MLK_RT_BATCH] = m->batch;
}

/* Sizes every cache for m->context tokens per sequence and `kv_pages` pages (0: batch_max rows of
 * a whole context each): pool and page-table bytes in m->cap and the run-time values
 * pages_per_seq and pages. */
static mlk_status size_caches(mlk_model *m, int64_t kv_pages) {
  const MlkModelDesc *d = m->desc;
  const int64_t lim = (int64_t)1 << 56;
  for (int c = 0; c < d->ncaches; c++) {
    const MlkCacheDesc *cd = &d->caches[c];
    int64_t pps = (m->context + cd->page - 1) / cd->page;
    int64_t npages = kv_pages ? kv_pages : m->batch_max * pps; /* <= 2^16 * 2^24 */
    /* Physical page numbers are i32 in the page table. */
    int64_t elems = npages > INT32_MAX ? -1 : mul_within(cd->layers, npages, lim);
    elems = mul_within(elems, 2 * cd->kv_heads, lim);
    elems = mul_within(elems, cd->page, lim);
    elems = mul_within(elems, cd->head_dim, lim / 8);
    if (elems < 0)
      return mlk_set_error(MLK_ERR_INVALID, "KV cache '%s' of model '%s' is too large: %lld layers x %lld "
                           "pages (%s%lld sequences x %lld pages of %lld tokens for a context of %lld) x "
                           "2 x %lld kv heads x %lld tokens x %lld dims", cd->name, d->name,
                           (long long)cd->layers, (long long)npages,
                           kv_pages ? "kv_pages; the default: " : "", (long long)m->batch_max,
                           (long long)pps, (long long)cd->page, (long long)m->context,
                           (long long)cd->kv_heads, (long long)cd->page, (long long)cd->head_dim);
    m->cap[cd->tensor] = (size_t)elems * mlk_dtype_size(cd->dtype);
    m->cap[cd->pages_tensor] = (size_t)(m->batch_max * pps) * sizeof(int32_t);
    m->rt[MLK_RT_PAGES_PER_SEQ(c)] = pps;
    m->rt[MLK_RT_PAGES(c)] = npages;
  }
  return MLK_OK;
}

/* i32 inputs and outputs whose values index something (cache positions, gather ids) get a host
 * shadow, so that a run can check them before the kernels use them as addresses: an input's is
 * what the application set, an output's what a megakernel that reads it but does not write it
 * downloads before its run (check_inputs). */
static int needs_shadow(const MlkModelDesc *d, int t) {
  MlkTensorKind k = d->tensors[t].kind;
  if ((k != MLK_TENSOR_INPUT && k != MLK_TENSOR_OUTPUT) || d->tensors[t].dtype != MLK_I32)
    return 0;
  for (int o = 0; o < d->nops; o++) {
    const MlkOpDesc *op = &d->ops[o];
    if (((op->kind == MLK_OP_KV_APPEND || op->kind == MLK_OP_ATTENTION) && op->in[2].tensor == t) ||
        (op->kind == MLK_OP_GATHER && op->in[0].tensor == t))
      return 1;
  }
  return 0;
}

/* The options of a model: what the application gave, its zeros filled from the environment (the
 * one place that reads MLK_KV_* and MLK_RANK), then from the defaults. */
static mlk_status resolve_options(const mlk_model_options *opt, int caches, mlk_model_options *out) {
  mlk_model_options o = {0};
  if (opt)
    o = *opt;
  mlk_status st;
  int64_t rank = o.rank;
  if (o.rank == 0 && (st = mlk_env_int("MLK_RANK", 0, INT32_MAX, 0, &rank)))
    return st;
  if (rank < 0)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_model_options.rank is %lld, must be 0 or more",
                         (long long)rank);
  o.rank = (int)rank;
  if (!caches) {
    *out = o;
    return MLK_OK;
  }
  if (o.kv_context == 0 &&
      (st = mlk_env_int("MLK_KV_CONTEXT", 1, MLK_MAX_KV_CONTEXT, 2048, &o.kv_context)))
    return st;
  if (o.kv_pages == 0 && (st = mlk_env_int("MLK_KV_PAGES", 1, INT32_MAX, 0, &o.kv_pages)))
    return st;
  if (o.kv_context < 1 || o.kv_context > MLK_MAX_KV_CONTEXT)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_model_options.kv_context is %lld, must be in [1, %d]",
                         (long long)o.kv_context, MLK_MAX_KV_CONTEXT);
  if (o.kv_pages < 0 || o.kv_pages > INT32_MAX)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_model_options.kv_pages is %lld, must be in [1, 2^31) "
                         "(0: the default)", (long long)o.kv_pages);
  *out = o;
  return MLK_OK;
}

mlk_status mlk_model_create(mlk_backend *be, const MlkModelDesc *desc, mlk_model **out) {
  return mlk_model_create_opt(be, desc, NULL, out);
}

mlk_status mlk_model_create_opt(mlk_backend *be, const MlkModelDesc *desc,
                                const mlk_model_options *opt, mlk_model **out) {
  if (!be || !out)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_model_create: %s is NULL", be ? "out" : "backend");
  *out = NULL;
  mlk_status st = mlk_desc_validate(desc);
  if (st)
    return st;
  mlk_model_options o = {0};
  int64_t whole;
  if ((st = resolve_options(opt, desc->ncaches > 0, &o)) ||
      (st = mlk_env_int("MLK_ATTN_WHOLE_POSITIONS", 0, INT32_MAX, MLK_ATTN_WHOLE_POSITIONS, &whole)))
    return st;
  mlk_model *m = MLK_CALLOC(1, sizeof *m, "model");
  if (!m)
    return MLK_ERR_NOMEM;
  m->be = be;
  m->desc = desc;
  m->attn_whole_limit = whole;
  m->rank = o.rank;
  m->sampling = -1;
  size_t nt = (size_t)desc->ntensors;
  if (!(m->bytes = MLK_CALLOC(nt, sizeof *m->bytes, "tensor sizes")) ||
      !(m->cap = MLK_CALLOC(nt, sizeof *m->cap, "tensor capacities")) ||
      !(m->rows_set = MLK_CALLOC(nt, sizeof *m->rows_set, "tensor flags")) ||
      !(m->shadow = MLK_CALLOC(nt, sizeof *m->shadow, "tensor shadows")) ||
      !(m->runs = MLK_CALLOC((size_t)desc->nkernels, sizeof *m->runs, "kernel epochs")) ||
      !(m->rt = MLK_CALLOC((size_t)MLK_RT_COUNT(desc->ncaches), sizeof *m->rt, "run-time values"))) {
    free_tables(m);
    return MLK_ERR_NOMEM;
  }
  m->batch_min = desc->batch_name ? desc->batch_min : 1;
  m->batch_max = desc->batch_name ? desc->batch_max : 1;
  m->batch = m->batch_min;
  for (int i = 0; i < desc->ntensors; i++)
    m->cap[i] = mlk_tensor_bytes(&desc->tensors[i]);
  m->context = o.kv_context;
  if (desc->ncaches > 0 && (st = size_caches(m, o.kv_pages))) {
    free_tables(m);
    return st;
  }
  update_bytes(m);
  for (int i = 0; i < desc->ntensors; i++) {
    char what[160];
    snprintf(what, sizeof what, "the host copy of input '%s'", desc->tensors[i].name);
    if (needs_shadow(desc, i) && !(m->shadow[i] = MLK_CALLOC(m->cap[i], 1, what))) {
      free_tables(m);
      return MLK_ERR_NOMEM;
    }
  }
  if ((st = mlk_sampling_create(m)) || (st = be->ops->model_init(m))) {
    free_tables(m);
    return st;
  }
  if ((st = mlk_kv_create(m))) {
    be->ops->model_fini(m);
    free_tables(m);
    return st;
  }
  if ((st = mlk_trace_from_env(m))) {
    mlk_trace_free(m);
    mlk_kv_free(m);
    be->ops->model_fini(m);
    free_tables(m);
    return st;
  }
  *out = m;
  return MLK_OK;
}

void mlk_model_free(mlk_model *m) {
  if (!m)
    return;
  mlk_trace_at_free(m);
  mlk_trace_free(m);
  mlk_kv_free(m);
  m->be->ops->model_fini(m);
  free_tables(m);
}

const MlkModelDesc *mlk_model_desc(const mlk_model *m) { return m ? m->desc : NULL; }

mlk_status mlk_model_set_batch(mlk_model *m, int64_t batch) {
  if (!m)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_model_set_batch: model is NULL");
  const MlkModelDesc *d = m->desc;
  if (!d->batch_name) {
    if (batch != 1)
      return mlk_set_error(MLK_ERR_INVALID, "model '%s' has no batch dim: every run has 1 row, got "
                           "batch %lld", d->name, (long long)batch);
    return MLK_OK;
  }
  if (batch < m->batch_min || batch > m->batch_max)
    return mlk_set_error(MLK_ERR_INVALID, "batch %lld is outside %s in %lld..%lld of model '%s'",
                         (long long)batch, d->batch_name, (long long)m->batch_min,
                         (long long)m->batch_max, d->name);
  m->batch = batch;
  update_bytes(m);
  return MLK_OK;
}

int64_t mlk_model_batch(const mlk_model *m) { return m ? m->batch : 0; }

int64_t mlk_model_kv_context(const mlk_model *m) { return m ? m->context : 0; }

size_t mlk_model_tensor_bytes(const mlk_model *m, int tensor) {
  return m && tensor >= 0 && tensor < m->desc->ntensors ? m->bytes[tensor] : 0;
}

int mlk_model_find_tensor(const mlk_model *m, const char *name) {
  if (!m || !name)
    return -1;
  for (int i = 0; i < m->desc->ntensors; i++)
    if (!strcmp(m->desc->tensors[i].name, name))
      return i;
  return -1;
}

static mlk_status check_tensor_index(const mlk_model *m, int tensor, const char *fn) {
  if (!m)
    return mlk_set_error(MLK_ERR_INVALID, "%s: model is NULL", fn);
  if (tensor < 0 || tensor >= m->desc->ntensors)
    return mlk_set_error(MLK_ERR_INVALID, "%s: tensor index %d out of range (model '%s' has %d tensors)",
                         fn, tensor, m->desc->name, m->desc->ntensors);
  return MLK_OK;
}

/* "tensor 'W1' is bf16[4096, 1024] (8388608 bytes), got 100 bytes";
 * "tensor 'x' is f32[B = 2 of 1..4, 64] (512 bytes at batch 2), got 100 bytes" */
static mlk_status size_mismatch(const mlk_model *m, int tensor, size_t got) {
  const MlkTensorDesc *t = &m->desc->tensors[tensor];
  if (t->kind == MLK_TENSOR_CACHE || t->kind == MLK_TENSOR_PAGES)
    return mlk_set_error(MLK_ERR_INVALID, "tensor '%s' is a %s of %zu bytes (MLK_KV_CONTEXT=%lld), got "
                         "%zu bytes", t->name, mlk_tensor_kind_name(t->kind), m->bytes[tensor],
                         (long long)m->context, got);
  char shape[200];
  size_t len = 0;
  shape[0] = 0;
  for (int r = 0; r < t->rank && len < sizeof shape; r++) {
    if (r == 0 && t->batched)
      len += (size_t)snprintf(shape, sizeof shape, "%s = %lld of %lld..%lld", m->desc->batch_name,
                              (long long)m->batch, (long long)m->batch_min, (long long)m->batch_max);
    else
      len += (size_t)snprintf(shape + len, sizeof shape - len, "%s%lld", r ? ", " : "",
                              (long long)t->shape[r]);
  }
  if (t->batched)
    return mlk_set_error(MLK_ERR_INVALID, "tensor '%s' is %s[%s] (%zu bytes at batch %lld), got %zu bytes",
                         t->name, mlk_dtype_name(t->dtype), shape, m->bytes[tensor],
                         (long long)m->batch, got);
  return mlk_set_error(MLK_ERR_INVALID, "tensor '%s' is %s[%s] (%zu bytes), got %zu bytes", t->name,
                       mlk_dtype_name(t->dtype), shape, m->bytes[tensor], got);
}

static const char *article(MlkTensorKind k) {
  return k == MLK_TENSOR_OUTPUT || k == MLK_TENSOR_INPUT ? "an" : "a";
}

mlk_status mlk_model_set_tensor(mlk_model *m, int tensor, const void *data, size_t bytes) {
  mlk_status st = check_tensor_index(m, tensor, "mlk_model_set_tensor");
  if (st)
    return st;
  const MlkTensorDesc *t = &m->desc->tensors[tensor];
  if (t->kind == MLK_TENSOR_CACHE || t->kind == MLK_TENSOR_PAGES)
    return mlk_set_error(MLK_ERR_INVALID, "tensor '%s' is a %s, owned by the runtime: it cannot be set",
                         t->name, mlk_tensor_kind_name(t->kind));
  if (t->kind == MLK_TENSOR_SAMPLING)
    return mlk_set_error(MLK_ERR_INVALID, "tensor '%s' is the %s, owned by the runtime: it cannot be "
                         "set (mlk_model_set_sampling, mlk_seq_set_sampling)", t->name,
                         mlk_tensor_kind_name(t->kind));
  if (t->kind != MLK_TENSOR_PARAM && t->kind != MLK_TENSOR_INPUT)
    return mlk_set_error(MLK_ERR_INVALID, "tensor '%s' is %s %s: only params and inputs can be set",
                         t->name, article(t->kind), mlk_tensor_kind_name(t->kind));
  if (bytes != m->bytes[tensor])
    return size_mismatch(m, tensor, bytes);
  if (!data)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_model_set_tensor: data for tensor '%s' is NULL", t->name);
  if ((st = m->be->ops->upload(m, tensor, data, bytes)))
    return st;
  if (m->shadow[tensor])
    memcpy(m->shadow[tensor], data, bytes);
  m->rows_set[tensor] = t->batched ? m->batch : 1;
  return MLK_OK;
}

mlk_status mlk_model_get_tensor(mlk_model *m, int tensor, void *data, size_t bytes) {
  mlk_status st = check_tensor_index(m, tensor, "mlk_model_get_tensor");
  if (st)
    return st;
  if (bytes != m->bytes[tensor])
    return size_mismatch(m, tensor, bytes);
  if (!data)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_model_get_tensor: data for tensor '%s' is NULL",
                         m->desc->tensors[tensor].name);
  return m->be->ops->download(m, tensor, data, bytes);
}

mlk_status mlk_model_fill_tensor(mlk_model *m, int tensor, uint8_t byte) {
  mlk_status st = check_tensor_index(m, tensor, "mlk_model_fill_tensor");
  if (st)
    return st;
  const MlkTensorDesc *t = &m->desc->tensors[tensor];
  /* Kernels follow page tables as addresses: only the runtime writes them. */
  if (t->kind == MLK_TENSOR_PAGES)
    return mlk_set_error(MLK_ERR_INVALID, "tensor '%s' is a %s, owned by the runtime: it cannot be filled",
                         t->name, mlk_tensor_kind_name(t->kind));
  if ((st = m->be->ops->fill(m, tensor, byte)))
    return st;
  if (m->shadow[tensor])
    memset(m->shadow[tensor], byte, m->bytes[tensor]);
  /* A fill defines every byte (of the current batch's rows), so a filled param or input is set. */
  m->rows_set[tensor] = t->batched ? m->batch : 1;
  return MLK_OK;
}

/* Zeroes the counters and restarts every kernel's epochs, so that the next run starts from a known
 * state after a run that stopped half-way. Keeps the current error message. */
void mlk_model_reset_counters(mlk_model *m) {
  char *saved = strdup(mlk_last_error());
  mlk_status st = m->be->ops->zero_counters(m);
  if (st == MLK_OK)
    memset(m->runs, 0, (size_t)m->desc->nkernels * sizeof *m->runs);
  if (saved) {
    if (st != MLK_OK)
      mlk_set_error(st, "%s (and the event counters could not be reset: %s)", saved, mlk_last_error());
    else
      mlk_set_error(st, "%s", saved);
    free(saved);
  }
}

/* The deadlock message, the same for both backends:
 * megakernel 'forward': task 5 of op 'matvec@mlp.mlk:13' (queue 17) waited on event 'h: ...'
 * counter [0]: expected 64 notifies, saw 63 after 2000 ms
 * or, from the simulator's dynamic schedule, "task 5 of op '...' never became ready: it waits on
 * event ...". A backend that sees the run stuck (stall_exact) says so instead of "after N ms".
 * Counts are for this run: the counters carry (epoch - 1) * start_value from earlier runs. */
static mlk_status deadlock_error(const mlk_model *m, int kernel, uint32_t epoch, int64_t timeout_ms,
                                 const MlkDevError *err) {
  const MlkModelDesc *d = m->desc;
  const MlkKernelDesc *k = &d->kernels[kernel];
  uint32_t op_local = err->op, task = err->task;
  char when[96];
  if (m->be->stall_exact)
    snprintf(when, sizeof when, "%s", err->block == MLK_DEV_BLOCK_READY_QUEUE
                                          ? "when no task was ready or running"
                                          : "when every simulated SM was blocked");
  else
    snprintf(when, sizeof when, "after %lld ms%s", (long long)timeout_ms,
             err->block == MLK_DEV_BLOCK_READY_QUEUE ? " without progress" : "");
  if (op_local >= (uint32_t)k->nops || err->event >= (uint32_t)d->nevents ||
      err->index >= (uint64_t)d->events[err->event].size)
    return mlk_set_error(MLK_ERR_DEADLOCK,
                         "megakernel '%s': a wait could not complete (%s), but the error record is "
                         "garbled (queue %u, op %u, task %u, event %u, counter %u, expected %u, saw %u)",
                         k->name, when, err->block, err->op, err->task, err->event, err->index,
                         err->expected, err->observed);
  const MlkOpDesc *op = &d->ops[k->first_op + (int)op_local];
  const MlkEventDesc *e = &d->events[err->event];
  uint32_t before = (epoch - 1u) * (uint32_t)mlk_event_start_value(e, err->index);
  if (err->block == MLK_DEV_BLOCK_READY_QUEUE)
    return mlk_set_error(MLK_ERR_DEADLOCK,
                         "megakernel '%s' (dynamic schedule): task %u of op '%s' never became ready: it "
                         "waits on event '%s' counter [%u]: expected %d notifies, saw %d %s",
                         k->name, task, op->name, e->name, err->index, (int32_t)(err->expected - before),
                         (int32_t)(err->observed - before), when);
  return mlk_set_error(MLK_ERR_DEADLOCK,
                       "megakernel '%s': task %u of op '%s' (queue %u) waited on event '%s' counter [%u]: "
                       "expected %d notifies, saw %d %s",
                       k->name, task, op->name, err->block, e->name, err->index,
                       (int32_t)(err->expected - before), (int32_t)(err->observed - before), when);
}

/* Whether an op of `kernel` writes tensor t. */
static int kernel_writes(const MlkModelDesc *d, int kernel, int t) {
  const MlkKernelDesc *k = &d->kernels[kernel];
  for (int o = k->first_op; o < k->first_op + k->nops; o++)
    if (d->ops[o].out.tensor == t)
      return 1;
  return 0;
}

/* The name of a megakernel other than `kernel` that writes tensor t, for messages. */
static const char *writer_name(const MlkModelDesc *d, int kernel, int t) {
  for (int k = 0; k < d->nkernels; k++)
    if (k != kernel && kernel_writes(d, k, t))
      return d->kernels[k].name;
  return "?";
}

/* Checks the values of i32 input or output `a` of `op` in `kernel` (one per row) against [0, lim):
 * `what` says what they index. Reads the host shadow kept by set/fill, or downloaded before the
 * run; values the kernel computes itself (an output it writes) come from its own ops. */
static mlk_status check_index_input(const mlk_model *m, int kernel, const MlkOpDesc *op, MlkArg a,
                                    int64_t lim, const char *what) {
  const MlkTensorDesc *t = &m->desc->tensors[a.tensor];
  const int32_t *v = m->shadow[a.tensor];
  if (!v || (t->kind == MLK_TENSOR_OUTPUT && kernel_writes(m->desc, kernel, a.tensor)))
    return MLK_OK;
  int64_t rows = mlk_op_rows(op, m->batch);
  for (int64_t b = 0; b < rows; b++) {
    int32_t x = v[a.offset + b];
    if (x < 0 || x >= lim)
      return mlk_set_error(MLK_ERR_INVALID, "%s '%s' row %lld is %d: op '%s' %s",
                           mlk_tensor_kind_name(t->kind), t->name, (long long)b, x, op->name, what);
  }
  return MLK_OK;
}

/* Before a run: every param and input the kernel reads is set, and every output it reads that
 * another kernel writes has been written by a run of that kernel (or set by a fill), for the
 * current batch's rows; the positions and token ids it reads from inputs and from such outputs
 * are in range (the outputs' are downloaded for that). */
static mlk_status check_inputs(mlk_model *m, int kernel) {
  const MlkModelDesc *d = m->desc;
  const MlkKernelDesc *k = &d->kernels[kernel];
  /* Only what this kernel reads must be set: a model's kernels may take different inputs. */
  for (int o = k->first_op; o < k->first_op + k->nops; o++)
    for (int j = 0; j < MLK_OP_INPUTS; j++) {
      int t = d->ops[o].in[j].tensor;
      if (t < 0)
        continue;
      MlkTensorKind tk = d->tensors[t].kind;
      const char *name = d->tensors[t].name;
      if (tk == MLK_TENSOR_OUTPUT && !kernel_writes(d, kernel, t)) {
        /* what another kernel's latest run left there */
        const char *writer = writer_name(d, kernel, t);
        if (!m->rows_set[t])
          return mlk_set_error(MLK_ERR_INVALID, "megakernel '%s' reads output '%s', which megakernel "
                               "'%s' writes and has not written yet: run '%s' first", k->name, name,
                               writer, writer);
        if (d->tensors[t].batched && m->rows_set[t] < m->batch)
          return mlk_set_error(MLK_ERR_INVALID, "megakernel '%s' reads output '%s', which megakernel "
                               "'%s' wrote for %lld rows, the batch is now %lld: run '%s' again",
                               k->name, name, writer, (long long)m->rows_set[t],
                               (long long)m->batch, writer);
        if (m->shadow[t]) {
          mlk_status st = m->be->ops->download(m, t, m->shadow[t], m->bytes[t]);
          if (st)
            return st;
        }
        continue;
      }
      if (tk != MLK_TENSOR_PARAM && tk != MLK_TENSOR_INPUT)
        continue;
      if (!m->rows_set[t])
        return mlk_set_error(MLK_ERR_INVALID, "%s '%s' was never set", mlk_tensor_kind_name(tk), name);
      if (d->tensors[t].batched && m->rows_set[t] < m->batch)
        return mlk_set_error(MLK_ERR_INVALID, "input '%s' was set for %lld rows, the batch is now %lld: "
                             "set it again", name, (long long)m->rows_set[t], (long long)m->batch);
    }
  char what[512];
  for (int o = k->first_op; o < k->first_op + k->nops; o++) {
    const MlkOpDesc *op = &d->ops[o];
    mlk_status st = MLK_OK;
    if (op->kind == MLK_OP_KV_APPEND || op->kind == MLK_OP_ATTENTION) {
      const MlkCacheDesc *c = &d->caches[op->cache];
      snprintf(what, sizeof what, "%s KV cache '%s' at positions 0..%lld (MLK_KV_CONTEXT=%lld)",
               op->kind == MLK_OP_KV_APPEND ? "writes" : "reads", c->name,
               (long long)(m->context - 1), (long long)m->context);
      st = check_index_input(m, kernel, op, op->in[2], m->context, what);
    } else if (op->kind == MLK_OP_GATHER) {
      const MlkTensorDesc *table = &d->tensors[op->in[1].tensor];
      int64_t rows = (table->numel - op->in[1].offset) / op->n;
      snprintf(what, sizeof what, "looks up rows 0..%lld of table '%s'", (long long)(rows - 1),
               table->name);
      st = check_index_input(m, kernel, op, op->in[0], rows, what);
    }
    if (st)
      return st;
  }
  return MLK_OK;
}

/* Whether this run of `kernel` takes its folded split attentions whole (mlk_attn_whole): every
 * such op's rows attend to few positions, by the host copy of its position input (an op whose
 * positions the host does not hold keeps the split). */
static int64_t attn_whole(const mlk_model *m, int kernel) {
  const MlkModelDesc *d = m->desc;
  const MlkKernelDesc *k = &d->kernels[kernel];
  int any = 0;
  for (int o = k->first_op; o < k->first_op + k->nops; o++) {
    const MlkOpDesc *op = &d->ops[o];
    if (op->kind != MLK_OP_ATTENTION || !mlk_attn_folds(op->split, op->n, op->heads, op->head_dim))
      continue;
    const int32_t *pos = m->shadow[op->in[2].tensor];
    if (!pos)
      return 0;
    int64_t rows = mlk_op_rows(op, m->batch), longest = 0;
    for (int64_t b = 0; b < rows; b++) {
      int64_t t = mlk_attn_positions(pos[op->in[2].offset + b], m->rt[MLK_RT_PAGES_PER_SEQ(op->cache)],
                                     d->caches[op->cache].page);
      longest = t > longest ? t : longest;
    }
    if (!mlk_attn_whole(rows, longest, m->attn_whole_limit))
      return 0;
    any = 1;
  }
  return any;
}

mlk_status mlk_model_run(mlk_model *m, int kernel) { return mlk_model_run_timed(m, kernel, NULL); }

mlk_status mlk_model_run_timed(mlk_model *m, int kernel, double *ms) {
  if (!m)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_model_run: model is NULL");
  const MlkModelDesc *d = m->desc;
  if (kernel < 0 || kernel >= d->nkernels)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_model_run: kernel index %d out of range (model '%s' has %d kernels)",
                         kernel, d->name, d->nkernels);
  const MlkKernelDesc *kd = &d->kernels[kernel];
  if (kd->nsegments > 1)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_model_run: megakernel '%s' of model '%s' all-reduces "
                         "over %lld ranks between its %d launches: run it on every rank with "
                         "mlk_world_run", d->kernels[kernel - kd->segment].name, d->name,
                         (long long)d->ranks, kd->nsegments);
  for (int o = kd->first_op; o < kd->first_op + kd->nops; o++)
    if (d->ops[o].kind == MLK_OP_ALLREDUCE)
      return mlk_set_error(MLK_ERR_INVALID, "mlk_model_run: megakernel '%s' of model '%s' all-reduces "
                           "over %lld ranks inside the megakernel ('%s'): run it on every rank with "
                           "mlk_world_run", kd->name, d->name, (long long)d->ranks, d->ops[o].name);
  return mlk_model_run_kernel(m, kernel, ms);
}

mlk_status mlk_model_run_kernel(mlk_model *m, int kernel, double *ms) {
  const MlkModelDesc *d = m->desc;
  mlk_status st = check_inputs(m, kernel);
  if (st || (st = mlk_kv_before_run(m, kernel)))
    return st;
  m->rt[MLK_RT_ATTN_WHOLE] = attn_whole(m, kernel);
  int64_t timeout_ms;
  if ((st = mlk_env_int("MLK_WAIT_TIMEOUT_MS", 1, 24 * 3600 * 1000, 2000, &timeout_ms)) ||
      (st = mlk_sampling_before_run(m, kernel)))
    return st;
  /* Counters are never reset (mlk_desc.h): run number `epoch` waits for epoch * start_value. */
  uint32_t epoch = m->runs[kernel] + 1u;
  MlkDevError err;
  memset(&err, 0, sizeof err);
  uint64_t *trace = mlk_trace_buffer(m, kernel);
  st = m->be->ops->run(m, kernel, epoch, (uint64_t)timeout_ms * 1000000u, &err, ms, trace);
  if (st == MLK_OK && err.flag)
    st = deadlock_error(m, kernel, epoch, timeout_ms, &err);
  mlk_trace_commit(m, epoch, st == MLK_OK);
  /* The outputs it writes hold this run's rows for the kernels that read them; after a run that
   * stopped part-way, nothing. */
  const MlkKernelDesc *k = &d->kernels[kernel];
  for (int o = k->first_op; o < k->first_op + k->nops; o++) {
    int t = d->ops[o].out.tensor;
    if (t >= 0 && d->tensors[t].kind == MLK_TENSOR_OUTPUT)
      m->rows_set[t] = st != MLK_OK ? 0 : d->tensors[t].batched ? m->batch : 1;
  }
  if (st != MLK_OK) {
    /* A run that stopped part-way leaves the counters between epochs. */
    mlk_model_reset_counters(m);
    m->sampled_rows = 0; /* a failed run takes no draws */
    return st;
  }
  m->runs[kernel] = epoch;
  mlk_sampling_after_run(m);
  return MLK_OK;
}
