/* sampling.c: sampling settings per batch row and per sequence, and the sampling tensor.
 *
 * The sample ops of a model read their per-row parameters from one small tensor the runtime owns
 * (MLK_TENSOR_SAMPLING, f32 [rows, MLK_SAMPLE_PARAMS]: temperature, top_k, top_p, u). Before every
 * run of a kernel that samples, each row's settings and the next number of its random stream are
 * written there and uploaded (a few bytes a row); after a run that succeeded the rows' streams
 * advance. The settings live with the sequence bound to a row (kv.c keeps a sampler in each
 * sequence), or with the row in a model without sequences. Random numbers are counter-based: draw
 * i of seed s is a hash of (s, i), so a stream needs no state but its position and replays exactly.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* SplitMix64's finalizer: a bijection of 64-bit words that mixes every bit into every other. */
static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

float mlk_sampling_uniform(uint64_t seed, uint64_t draw) {
  uint64_t z = mix64(mix64(seed) + 0x9e3779b97f4a7c15u * (draw + 1));
  return (float)(z >> 40) * 0x1.0p-24f; /* 24 bits: exact in f32, below 1 */
}

MlkSampler mlk_sampler_make(const mlk_sampling *s) {
  MlkSampler r = {.set = *s};
  if (r.set.top_k == 0) /* as compiled: the rest does not matter, and the row says 0 */
    r.set.temperature = r.set.top_p = 0.0f;
  return r;
}

static const MlkOpDesc *first_sample_op(const MlkModelDesc *d) {
  for (int o = 0; o < d->nops; o++)
    if (d->ops[o].kind == MLK_OP_SAMPLE)
      return &d->ops[o];
  return NULL;
}

mlk_status mlk_sampling_create(mlk_model *m) {
  const MlkModelDesc *d = m->desc;
  m->sampling = -1;
  for (int t = 0; t < d->ntensors; t++)
    if (d->tensors[t].kind == MLK_TENSOR_SAMPLING)
      m->sampling = t;
  if (m->sampling < 0)
    return MLK_OK;
  if (!(m->samplers = MLK_CALLOC((size_t)m->batch_max, sizeof *m->samplers, "row samplers")) ||
      !(m->sampling_rows = MLK_CALLOC(m->cap[m->sampling], 1, "the sampling rows"))) {
    mlk_sampling_free(m);
    return MLK_ERR_NOMEM;
  }
  for (int64_t b = 0; b < m->batch_max; b++)
    m->samplers[b] = mlk_sampler_make(&(mlk_sampling){.seed = (uint64_t)b});
  return MLK_OK;
}

void mlk_sampling_free(mlk_model *m) {
  free(m->samplers);
  free(m->sampling_rows);
  m->samplers = NULL;
  m->sampling_rows = NULL;
}

mlk_status mlk_sampling_check(const mlk_model *m, const mlk_sampling *s, const char *fn) {
  if (!s)
    return mlk_set_error(MLK_ERR_INVALID, "%s: the settings are NULL", fn);
  if (m->sampling < 0)
    return mlk_set_error(MLK_ERR_INVALID, "%s: model '%s' has no sample op: its megakernels do not "
                         "sample", fn, m->desc->name);
  if (s->top_k == 0)
    return MLK_OK; /* as compiled: the op's keywords, checked with the description */
  if (s->top_k < 0 || s->top_k > MLK_SAMPLE_MAX_TOP_K)
    return mlk_set_error(MLK_ERR_INVALID, "%s: top_k is %d, must be in [1, %d] (0: as compiled)", fn,
                         (int)s->top_k, MLK_SAMPLE_MAX_TOP_K);
  if (!(s->temperature >= 0.0f) || !isfinite(s->temperature))
    return mlk_set_error(MLK_ERR_INVALID, "%s: temperature is %g, must be finite and >= 0 (0: greedy)",
                         fn, (double)s->temperature);
  if (!(s->top_p > 0.0f) || !(s->top_p <= 1.0f))
    return mlk_set_error(MLK_ERR_INVALID, "%s: top_p is %g, must be in (0, 1] (1: no cut)", fn,
                         (double)s->top_p);
  return MLK_OK;
}

mlk_status mlk_model_set_sampling(mlk_model *m, int64_t row, const mlk_sampling *s) {
  const char *fn = "mlk_model_set_sampling";
  if (!m)
    return mlk_set_error(MLK_ERR_INVALID, "%s: model is NULL", fn);
  mlk_status st = mlk_sampling_check(m, s, fn);
  if (st)
    return st;
  if (row < 0 || row >= m->batch_max)
    return mlk_set_error(MLK_ERR_INVALID, "%s: row %lld is outside 0..%lld of model '%s'", fn,
                         (long long)row, (long long)(m->batch_max - 1), m->desc->name);
  if (mlk_kv_managed(m))
    return mlk_set_error(MLK_ERR_INVALID, "%s: the rows of model '%s' are sequences: set the "
                         "sampling of a sequence (mlk_seq_set_sampling)", fn, m->desc->name);
  m->samplers[row] = mlk_sampler_make(s);
  return MLK_OK;
}

mlk_status mlk_model_sampling_default(const mlk_model *m, mlk_sampling *out) {
  if (!m || !out)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_model_sampling_default: %s is NULL",
                         m ? "out" : "model");
  const MlkOpDesc *op = first_sample_op(m->desc);
  if (!op)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_model_sampling_default: model '%s' has no sample op",
                         m->desc->name);
  *out = (mlk_sampling){.temperature = op->temperature, .top_k = (int32_t)op->top_k,
                        .top_p = op->top_p};
  return MLK_OK;
}

/* The sampler of row b: its sequence's, else its own; *index is the row's place among its
 * sequence's rows. A sequence's rows in one run (a prompt chunk) take consecutive draws, so a
 * token after position p draws p whether the prompt went in one run or a token per run. */
static MlkSampler *row_sampler(mlk_model *m, int64_t b, int64_t *index) {
  MlkSampler *s = mlk_kv_row_sampler(m, b, index);
  return s ? s : &m->samplers[b];
}

mlk_status mlk_sampling_before_run(mlk_model *m, int kernel) {
  m->sampled_rows = 0;
  if (m->sampling < 0)
    return MLK_OK;
  const MlkModelDesc *d = m->desc;
  const MlkKernelDesc *k = &d->kernels[kernel];
  int samples = 0;
  for (int o = k->first_op; o < k->first_op + k->nops && !samples; o++)
    samples = d->ops[o].kind == MLK_OP_SAMPLE;
  if (!samples)
    return MLK_OK;
  int64_t rows = d->tensors[m->sampling].batched ? m->batch : 1;
  for (int64_t b = 0; b < rows; b++) {
    int64_t index;
    const MlkSampler *s = row_sampler(m, b, &index);
    float *r = m->sampling_rows + b * MLK_SAMPLE_PARAMS;
    r[MLK_SAMPLE_TEMPERATURE] = s->set.temperature;
    r[MLK_SAMPLE_TOP_K] = (float)s->set.top_k;
    r[MLK_SAMPLE_TOP_P] = s->set.top_p;
    r[MLK_SAMPLE_U] = mlk_sampling_uniform(s->set.seed, s->draws + (uint64_t)index);
  }
  mlk_status st = m->be->ops->upload(m, m->sampling, m->sampling_rows,
                                     (size_t)rows * MLK_SAMPLE_PARAMS * sizeof(float));
  if (st)
    return st;
  m->sampled_rows = rows;
  return MLK_OK;
}

void mlk_sampling_after_run(mlk_model *m) {
  for (int64_t b = 0; b < m->sampled_rows; b++) {
    int64_t index;
    row_sampler(m, b, &index)->draws++;
  }
  m->sampled_rows = 0;
}
