/* model.c: the backend-independent half of the runtime: backends, models, tensors and runs.
 *
 * A model is a validated MlkModelDesc plus a backend's buffers. Everything that is about the model
 * rather than the machine happens here, once for both backends: the validation of a description
 * (generated code and hand-written test tables both come through it, so it says exactly which
 * field is wrong), the byte-size and kind checks of set/get, the "never set" check before a run,
 * the per-kernel epochs of the never-reset event counters, and the deadlock message built from the
 * error record a backend returns.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

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

void mlk_backend_free(mlk_backend *be) {
  if (!be)
    return;
  be->ops->backend_free(be);
  free(be);
}

const char *mlk_backend_name(const mlk_backend *be) { return be ? be->name : "(null backend)"; }
int mlk_backend_is_gpu(const mlk_backend *be) { return be ? be->is_gpu : 0; }
const char *mlk_backend_note(const mlk_backend *be) { return be ? be->note : ""; }

/* ---- validation ---- */

size_t mlk_tensor_bytes(const MlkTensorDesc *t) {
  return (size_t)t->numel * mlk_dtype_size(t->dtype);
}

static const char *str_or(const char *s, const char *dflt) { return s ? s : dflt; }

static mlk_status bad(const MlkModelDesc *d, const char *fmt, ...) MLK_PRINTF(2, 3);
static mlk_status bad(const MlkModelDesc *d, const char *fmt, ...) {
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return mlk_set_error(MLK_ERR_INVALID, "invalid model description '%s' (%s): %s",
                       str_or(d->name, "?"), str_or(d->source, "no source"), msg);
}

static const char *kind_name(MlkTensorKind k) {
  switch (k) {
  case MLK_TENSOR_PARAM: return "param";
  case MLK_TENSOR_INPUT: return "input";
  case MLK_TENSOR_OUTPUT: return "output";
  case MLK_TENSOR_TEMP: return "temp";
  }
  return "?";
}

/* Checks that operand `which` of op `o` is tensor `t` with dtype `dt` and at least `need` elements. */
static mlk_status check_operand(const MlkModelDesc *d, int o, const char *which, int t, MlkDType dt,
                                int64_t need) {
  const MlkOpDesc *op = &d->ops[o];
  if (t < 0 || t >= d->ntensors)
    return bad(d, "op %d '%s': %s is tensor %d, out of range (%d tensors)", o, op->name, which, t,
               d->ntensors);
  const MlkTensorDesc *td = &d->tensors[t];
  if (td->dtype != dt)
    return bad(d, "op %d '%s': %s '%s' is %s, expected %s", o, op->name, which, td->name,
               mlk_dtype_name(td->dtype), mlk_dtype_name(dt));
  if (td->numel < need)
    return bad(d, "op %d '%s': %s '%s' has %lld elements, the op needs %lld", o, op->name, which,
               td->name, (long long)td->numel, (long long)need);
  return MLK_OK;
}

static mlk_status validate_tensors(const MlkModelDesc *d) {
  for (int i = 0; i < d->ntensors; i++) {
    const MlkTensorDesc *t = &d->tensors[i];
    if (!t->name)
      return bad(d, "tensor %d has no name", i);
    if ((unsigned)t->dtype >= MLK_DTYPE_COUNT)
      return bad(d, "tensor %d '%s': dtype %d is not a valid MlkDType", i, t->name, (int)t->dtype);
    if ((unsigned)t->kind > MLK_TENSOR_TEMP)
      return bad(d, "tensor %d '%s': kind %d is not a valid MlkTensorKind", i, t->name, (int)t->kind);
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
    for (int j = 0; j < i; j++)
      if (d->tensors[j].name && !strcmp(d->tensors[j].name, t->name))
        return bad(d, "tensors %d and %d are both called '%s'", j, i, t->name);
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
    mlk_status st = check_operand(d, o, "output", op->out, MLK_F32, op->n);
    if (st)
      return st;
    MlkTensorKind ok = d->tensors[op->out].kind;
    if (ok == MLK_TENSOR_PARAM || ok == MLK_TENSOR_INPUT)
      return bad(d, "op %d '%s' writes %s '%s'", o, op->name, kind_name(ok),
                 d->tensors[op->out].name);
    if (op->kind == MLK_OP_MATVEC) {
      if (op->fn != MLK_FN_NONE && op->fn != MLK_FN_RELU && op->fn != MLK_FN_SILU)
        return bad(d, "op %d '%s': a matvec epilogue must be none, relu or silu, got fn %d", o,
                   op->name, (int)op->fn);
      if (op->k < 1 || op->k > MLK_MATVEC_MAX_K)
        return bad(d, "op %d '%s': k is %lld, must be in [1, %d]", o, op->name, (long long)op->k,
                   MLK_MATVEC_MAX_K);
      if (op->n > INT64_MAX / op->k)
        return bad(d, "op %d '%s': n * k overflows", o, op->name);
      if ((st = check_operand(d, o, "x", op->in[0], MLK_F32, op->k)) ||
          (st = check_operand(d, o, "W", op->in[1], MLK_BF16, op->n * op->k)))
        return st;
      if (op->in[2] != -1 && (st = check_operand(d, o, "residual", op->in[2], MLK_F32, op->n)))
        return st;
      /* Tasks write their rows while others still read x: in place would race. */
      if (op->out == op->in[0])
        return bad(d, "op %d '%s': output and x are the same tensor", o, op->name);
    } else if (op->kind == MLK_OP_ELTWISE) {
      int binary = op->fn == MLK_FN_ADD || op->fn == MLK_FN_MUL;
      if (!binary && op->fn != MLK_FN_RELU && op->fn != MLK_FN_SILU)
        return bad(d, "op %d '%s': an elementwise function must be relu, silu, add or mul, got fn %d",
                   o, op->name, (int)op->fn);
      if (op->k != 0)
        return bad(d, "op %d '%s': k is %lld, must be 0 for an elementwise op", o, op->name,
                   (long long)op->k);
      if ((st = check_operand(d, o, "a", op->in[0], MLK_F32, op->n)))
        return st;
      if (binary && (st = check_operand(d, o, "b", op->in[1], MLK_F32, op->n)))
        return st;
      if ((!binary && op->in[1] != -1) || op->in[2] != -1)
        return bad(d, "op %d '%s': unused operands must be -1, got in = {%d, %d, %d}", o, op->name,
                   op->in[0], op->in[1], op->in[2]);
    } else {
      return bad(d, "op %d '%s': kind %d is not a valid MlkOpKind", o, op->name, (int)op->kind);
    }
  }
  return MLK_OK;
}

/* Fills kernel_of[op] and checks the kernels partition the ops into runs of at most 256. */
static mlk_status validate_kernels(const MlkModelDesc *d, int *kernel_of) {
  for (int o = 0; o < d->nops; o++)
    kernel_of[o] = -1;
  for (int k = 0; k < d->nkernels; k++) {
    const MlkKernelDesc *kd = &d->kernels[k];
    if (!kd->name || !kd->entry)
      return bad(d, "kernel %d has no %s", k, kd->name ? "entry symbol" : "name");
    if (kd->nops < 1 || kd->nops > MLK_MAX_OPS_PER_KERNEL)
      return bad(d, "kernel %d '%s' has %d ops, must be in [1, %d]", k, kd->name, kd->nops,
                 MLK_MAX_OPS_PER_KERNEL);
    if (kd->first_op < 0 || kd->first_op > d->nops - kd->nops)
      return bad(d, "kernel %d '%s': ops [%d, %d) are out of range (%d ops)", k, kd->name,
                 kd->first_op, kd->first_op + kd->nops, d->nops);
    for (int o = kd->first_op; o < kd->first_op + kd->nops; o++) {
      if (kernel_of[o] >= 0)
        return bad(d, "op %d '%s' belongs to kernels %d and %d", o, d->ops[o].name, kernel_of[o], k);
      kernel_of[o] = k;
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
    if (e->n > d->tensors[e->tensor].numel)
      return bad(d, "event %d '%s': n is %lld, but tensor '%s' has %lld elements", i, e->name,
                 (long long)e->n, d->tensors[e->tensor].name, (long long)d->tensors[e->tensor].numel);
    /* Keep the index-map arithmetic (mlk_desc.h) far from overflow and start values in u32. */
    if (e->ptile > ((int64_t)1 << 40) || e->ctile > ((int64_t)1 << 40) ||
        (e->map == MLK_MAP_ALL ? (e->n - 1) / e->ptile + 1 : e->ctile / e->ptile + 2) > (1 << 30))
      return bad(d, "event %d '%s': ptile %lld and ctile %lld are out of proportion to n %lld", i,
                 e->name, (long long)e->ptile, (long long)e->ctile, (long long)e->n);
    if (e->map == MLK_MAP_ALL) {
      if (e->size != 1)
        return bad(d, "event %d '%s': an ALL event has 1 counter, size is %lld", i, e->name,
                   (long long)e->size);
    } else if (e->map == MLK_MAP_TILE) {
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
    } else {
      return bad(d, "event %d '%s': map %d is not a valid MlkEventMap", i, e->name, (int)e->map);
    }
    if (e->base < 0 || e->base > d->ncounters - e->size)
      return bad(d, "event %d '%s': counters [%lld, %lld) are outside the model's %lld counters", i,
                 e->name, (long long)e->base, (long long)(e->base + e->size), (long long)d->ncounters);
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

mlk_status mlk_desc_validate(const MlkModelDesc *d) {
  if (!d)
    return mlk_set_error(MLK_ERR_INVALID, "model description is NULL");
  if (d->abi != MLK_DESC_ABI)
    return bad(d, "generated for runtime ABI %d, this libmlkrt implements ABI %d: regenerate it with a matching mlkc",
               d->abi, MLK_DESC_ABI);
  if (d->ntensors < 0 || d->nops < 0 || d->nevents < 0 || d->nkernels < 0 || d->ncounters < 0)
    return bad(d, "negative count (%d tensors, %d ops, %d events, %d kernels, %lld counters)",
               d->ntensors, d->nops, d->nevents, d->nkernels, (long long)d->ncounters);
  if ((d->ntensors && !d->tensors) || (d->nops && !d->ops) || (d->nevents && !d->events) ||
      (d->nkernels && !d->kernels))
    return bad(d, "a table with a nonzero count is NULL");
  mlk_status st;
  if ((st = validate_tensors(d)) || (st = validate_ops(d)))
    return st;
  int *kernel_of = MLK_CALLOC((size_t)d->nops, sizeof *kernel_of, "op kernels");
  if (!kernel_of)
    return MLK_ERR_NOMEM;
  if (!(st = validate_kernels(d, kernel_of)))
    st = validate_events(d, kernel_of);
  free(kernel_of);
  return st;
}

/* ---- models ---- */

mlk_status mlk_model_create(mlk_backend *be, const MlkModelDesc *desc, mlk_model **out) {
  if (!be || !out)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_model_create: %s is NULL", be ? "out" : "backend");
  *out = NULL;
  mlk_status st = mlk_desc_validate(desc);
  if (st)
    return st;
  mlk_model *m = MLK_CALLOC(1, sizeof *m, "model");
  if (!m)
    return MLK_ERR_NOMEM;
  m->be = be;
  m->desc = desc;
  m->bytes = MLK_CALLOC((size_t)desc->ntensors, sizeof *m->bytes, "tensor sizes");
  m->was_set = m->bytes ? MLK_CALLOC((size_t)desc->ntensors, 1, "tensor flags") : NULL;
  m->runs = m->was_set ? MLK_CALLOC((size_t)desc->nkernels, sizeof *m->runs, "kernel epochs") : NULL;
  if (!m->runs) {
    free(m->was_set);
    free(m->bytes);
    free(m);
    return MLK_ERR_NOMEM;
  }
  for (int i = 0; i < desc->ntensors; i++)
    m->bytes[i] = mlk_tensor_bytes(&desc->tensors[i]);
  if ((st = be->ops->model_init(m))) {
    free(m->runs);
    free(m->was_set);
    free(m->bytes);
    free(m);
    return st;
  }
  *out = m;
  return MLK_OK;
}

void mlk_model_free(mlk_model *m) {
  if (!m)
    return;
  m->be->ops->model_fini(m);
  free(m->runs);
  free(m->was_set);
  free(m->bytes);
  free(m);
}

const MlkModelDesc *mlk_model_desc(const mlk_model *m) { return m ? m->desc : NULL; }

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

/* "tensor 'W1' is bf16[4096, 1024] (8388608 bytes), got 100 bytes" */
static mlk_status size_mismatch(const mlk_model *m, int tensor, size_t got) {
  const MlkTensorDesc *t = &m->desc->tensors[tensor];
  char shape[160];
  size_t len = 0;
  shape[0] = 0;
  for (int r = 0; r < t->rank && len < sizeof shape; r++)
    len += (size_t)snprintf(shape + len, sizeof shape - len, "%s%lld", r ? ", " : "",
                            (long long)t->shape[r]);
  return mlk_set_error(MLK_ERR_INVALID, "tensor '%s' is %s[%s] (%zu bytes), got %zu bytes", t->name,
                       mlk_dtype_name(t->dtype), shape, m->bytes[tensor], got);
}

mlk_status mlk_model_set_tensor(mlk_model *m, int tensor, const void *data, size_t bytes) {
  mlk_status st = check_tensor_index(m, tensor, "mlk_model_set_tensor");
  if (st)
    return st;
  const MlkTensorDesc *t = &m->desc->tensors[tensor];
  if (t->kind != MLK_TENSOR_PARAM && t->kind != MLK_TENSOR_INPUT)
    return mlk_set_error(MLK_ERR_INVALID, "tensor '%s' is %s %s: only params and inputs can be set",
                         t->name, t->kind == MLK_TENSOR_OUTPUT ? "an" : "a", kind_name(t->kind));
  if (bytes != m->bytes[tensor])
    return size_mismatch(m, tensor, bytes);
  if (!data)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_model_set_tensor: data for tensor '%s' is NULL", t->name);
  if ((st = m->be->ops->upload(m, tensor, data, bytes)))
    return st;
  m->was_set[tensor] = 1;
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
  if ((st = m->be->ops->fill(m, tensor, byte)))
    return st;
  /* A fill defines every byte, so a filled param or input counts as set. */
  m->was_set[tensor] = 1;
  return MLK_OK;
}

/* Zeroes the counters and restarts every kernel's epochs, so that the next run starts from a known
 * state after a run that stopped half-way. Keeps the current error message. */
static void reset_counters(mlk_model *m) {
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
 * Counts are for this run: the counters carry (epoch - 1) * start_value from earlier runs. */
static mlk_status deadlock_error(const mlk_model *m, int kernel, uint32_t epoch, int64_t timeout_ms,
                                 const MlkDevError *err) {
  const MlkModelDesc *d = m->desc;
  const MlkKernelDesc *k = &d->kernels[kernel];
  uint32_t op_local = err->task >> MLK_TASK_OP_SHIFT, task = err->task & MLK_TASK_INDEX_MASK;
  if (op_local >= (uint32_t)k->nops || err->event >= (uint32_t)d->nevents ||
      err->index >= (uint64_t)d->events[err->event].size)
    return mlk_set_error(MLK_ERR_DEADLOCK,
                         "megakernel '%s': a wait timed out after %lld ms, but the error record is "
                         "garbled (queue %u, task word 0x%08x, event %u, counter %u, expected %u, saw %u)",
                         k->name, (long long)timeout_ms, err->block, err->task, err->event, err->index,
                         err->expected, err->observed);
  const MlkOpDesc *op = &d->ops[k->first_op + (int)op_local];
  const MlkEventDesc *e = &d->events[err->event];
  uint32_t before = (epoch - 1u) * (uint32_t)mlk_event_start_value(e, err->index);
  return mlk_set_error(MLK_ERR_DEADLOCK,
                       "megakernel '%s': task %u of op '%s' (queue %u) waited on event '%s' counter [%u]: "
                       "expected %d notifies, saw %d after %lld ms",
                       k->name, task, op->name, err->block, e->name, err->index,
                       (int32_t)(err->expected - before), (int32_t)(err->observed - before),
                       (long long)timeout_ms);
}

mlk_status mlk_model_run(mlk_model *m, int kernel) { return mlk_model_run_timed(m, kernel, NULL); }

mlk_status mlk_model_run_timed(mlk_model *m, int kernel, double *ms) {
  if (!m)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_model_run: model is NULL");
  const MlkModelDesc *d = m->desc;
  if (kernel < 0 || kernel >= d->nkernels)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_model_run: kernel index %d out of range (model '%s' has %d kernels)",
                         kernel, d->name, d->nkernels);
  const MlkKernelDesc *k = &d->kernels[kernel];
  /* Only what this kernel reads must be set: a model's kernels may take different inputs. */
  for (int o = k->first_op; o < k->first_op + k->nops; o++)
    for (int j = 0; j < 3; j++) {
      int t = d->ops[o].in[j];
      if (t < 0 || m->was_set[t])
        continue;
      MlkTensorKind tk = d->tensors[t].kind;
      if (tk == MLK_TENSOR_PARAM || tk == MLK_TENSOR_INPUT)
        return mlk_set_error(MLK_ERR_INVALID, "%s '%s' was never set", kind_name(tk), d->tensors[t].name);
    }
  int64_t timeout_ms;
  mlk_status st = mlk_env_int("MLK_WAIT_TIMEOUT_MS", 1, 24 * 3600 * 1000, 2000, &timeout_ms);
  if (st)
    return st;
  /* Counters are never reset (mlk_desc.h): run number `epoch` waits for epoch * start_value. */
  uint32_t epoch = m->runs[kernel] + 1u;
  MlkDevError err;
  memset(&err, 0, sizeof err);
  st = m->be->ops->run(m, kernel, epoch, (uint64_t)timeout_ms * 1000000u, &err, ms);
  if (st == MLK_OK && err.flag)
    st = deadlock_error(m, kernel, epoch, timeout_ms, &err);
  if (st != MLK_OK) {
    /* A run that stopped part-way leaves the counters between epochs. */
    reset_counters(m);
    return st;
  }
  m->runs[kernel] = epoch;
  return MLK_OK;
}
