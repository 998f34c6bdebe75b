/* sim.c: the CPU simulator backend: the megakernel's protocol on host threads.
 *
 * It exists so that a compiled model can be run and checked without a GPU, and so that the task
 * graph itself (queues, event index maps, start values) is tested on every machine. Each of
 * `threads` pthreads plays one SM: it walks the same static queue the GPU block would (sched.c),
 * waits on the same event counters with acquire loads, computes its slice with the C reference
 * tiles (stdlib/ref) and notifies with release increments. Optional random delays before tasks
 * shake out missing dependencies (a consumer that does not wait reads poison). A wait that passes
 * its deadline records the same MlkDevError the GPU writes and stops every thread.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "mlk_ref.h"

typedef struct SimBackend {
  int threads;
  uint64_t seed;
  int max_delay_us;
} SimBackend;

/* The events an op waits on (as consumer) and notifies (as producer). */
typedef struct SimOpEvents {
  int *waits, nwaits;
  int *notifies, nnotifies;
} SimOpEvents;

typedef struct SimModel {
  void **bufs;                /* per tensor */
  _Atomic uint32_t *counters; /* ncounters */
  uint32_t **qoff, **words;   /* per kernel, from sched.c */
  SimOpEvents *ev;            /* per op (global index) */
  int *event_list;            /* storage of every waits/notifies list */
} SimModel;

/* Shared by the threads of one run. */
typedef struct SimRun {
  const mlk_model *m;
  const SimBackend *sb;
  const SimModel *sm;
  int kernel;
  uint32_t epoch;
  uint64_t timeout_ns;
  atomic_int abort;     /* set when any wait timed out: everyone stops */
  atomic_uint err_flag; /* first timed-out wait wins the right to write err */
  MlkDevError err;
} SimRun;

typedef struct SimThread {
  SimRun *run;
  int queue;
  uint64_t rng;
} SimThread;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(long ns) {
  struct timespec ts = {ns / 1000000000L, ns % 1000000000L};
  while (nanosleep(&ts, &ts) && errno == EINTR) {
  }
}

static uint64_t xorshift(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

/* Waits until `c` reaches `target`. Returns 0 when it did, -1 when this run is aborted (by this
 * wait's deadline or another thread's). */
static int wait_counter(SimThread *th, _Atomic uint32_t *c, uint32_t target, uint32_t word, int event,
                        int64_t index) {
  SimRun *run = th->run;
  uint32_t v = atomic_load_explicit(c, memory_order_acquire);
  if (mlk_counter_reached(v, target))
    return 0;
  uint64_t deadline = now_ns() + run->timeout_ns;
  for (unsigned spin = 0;; spin++) {
    if (atomic_load_explicit(&run->abort, memory_order_relaxed))
      return -1;
    /* Yield first (the producer is usually running), then sleep a little so that an
     * oversubscribed machine is not burnt by spinning threads. */
    if (spin < 64)
      sched_yield();
    else
      sleep_ns(spin < 1024 ? 2000 : 50000);
    v = atomic_load_explicit(c, memory_order_acquire);
    if (mlk_counter_reached(v, target))
      return 0;
    if (now_ns() >= deadline)
      break;
  }
  if (atomic_exchange_explicit(&run->err_flag, 1u, memory_order_acq_rel) == 0) {
    run->err.flag = 1;
    run->err.block = (uint32_t)th->queue;
    run->err.task = word;
    run->err.event = (uint32_t)event;
    run->err.index = (uint32_t)index;
    run->err.expected = target;
    run->err.observed = v;
  }
  atomic_store_explicit(&run->abort, 1, memory_order_relaxed);
  return -1;
}

static void run_tile(const SimModel *sm, const MlkOpDesc *op, int64_t task) {
  int64_t i0 = task * op->tile, count = mlk_min64(op->tile, op->n - i0);
  float *out = sm->bufs[op->out];
  if (op->kind == MLK_OP_MATVEC) {
    const float *res = op->in[2] >= 0 ? sm->bufs[op->in[2]] : NULL;
    mlk_ref_matvec(out, sm->bufs[op->in[0]], sm->bufs[op->in[1]], res, op->n, op->k, i0, count,
                   (int)op->fn);
  } else {
    const float *b = op->in[1] >= 0 ? sm->bufs[op->in[1]] : NULL;
    mlk_ref_eltwise(out, sm->bufs[op->in[0]], b, i0, count, (int)op->fn);
  }
}

static void *sim_thread(void *arg) {
  SimThread *th = arg;
  SimRun *run = th->run;
  const mlk_model *m = run->m;
  const MlkModelDesc *d = m->desc;
  const SimModel *sm = run->sm;
  const MlkKernelDesc *k = &d->kernels[run->kernel];
  const uint32_t *qoff = sm->qoff[run->kernel], *words = sm->words[run->kernel];
  for (uint32_t i = qoff[th->queue]; i < qoff[th->queue + 1]; i++) {
    if (atomic_load_explicit(&run->abort, memory_order_relaxed))
      return NULL;
    uint32_t word = words[i];
    int o = k->first_op + (int)(word >> MLK_TASK_OP_SHIFT);
    int64_t task = word & MLK_TASK_INDEX_MASK;
    const MlkOpDesc *op = &d->ops[o];
    if (run->sb->max_delay_us > 0)
      sleep_ns((long)(xorshift(&th->rng) % ((uint64_t)run->sb->max_delay_us + 1)) * 1000);
    const SimOpEvents *oe = &sm->ev[o];
    for (int w = 0; w < oe->nwaits; w++) {
      const MlkEventDesc *e = &d->events[oe->waits[w]];
      int64_t idx = mlk_event_wait_index(e, task);
      uint32_t target = run->epoch * (uint32_t)mlk_event_start_value(e, idx);
      if (wait_counter(th, &sm->counters[e->base + idx], target, word, oe->waits[w], idx))
        return NULL;
    }
    run_tile(sm, op, task);
    for (int n = 0; n < oe->nnotifies; n++) {
      const MlkEventDesc *e = &d->events[oe->notifies[n]];
      int64_t lo, hi;
      mlk_event_notify_range(e, task, &lo, &hi);
      /* Validation keeps ranges inside the event; the clamp keeps a stray one from writing into
       * another event's counters. */
      if (hi >= e->size)
        hi = e->size - 1;
      for (int64_t c = lo; c <= hi; c++)
        atomic_fetch_add_explicit(&sm->counters[e->base + c], 1u, memory_order_release);
    }
  }
  return NULL;
}

/* ---- vtable ---- */

static double sim_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static mlk_status sim_run_inner(mlk_model *m, int kernel, uint32_t epoch, uint64_t timeout_ns,
                                MlkDevError *err);

static mlk_status sim_run(mlk_model *m, int kernel, uint32_t epoch, uint64_t timeout_ns,
                          MlkDevError *err, double *ms) {
  double t0 = ms ? sim_now_ms() : 0;
  mlk_status st = sim_run_inner(m, kernel, epoch, timeout_ns, err);
  if (ms)
    *ms = sim_now_ms() - t0;
  return st;
}

static mlk_status sim_run_inner(mlk_model *m, int kernel, uint32_t epoch, uint64_t timeout_ns,
                                MlkDevError *err) {
  const SimBackend *sb = m->be->impl;
  SimRun run = {.m = m, .sb = sb, .sm = m->impl, .kernel = kernel, .epoch = epoch,
                .timeout_ns = timeout_ns};
  atomic_init(&run.abort, 0);
  atomic_init(&run.err_flag, 0u);
  SimThread *th = MLK_CALLOC((size_t)sb->threads, sizeof *th, "simulator threads");
  pthread_t *tid = th ? MLK_CALLOC((size_t)sb->threads, sizeof *tid, "simulator thread ids") : NULL;
  if (!tid) {
    free(th);
    return MLK_ERR_NOMEM;
  }
  mlk_status st = MLK_OK;
  int started = 0;
  for (int q = 0; q < sb->threads; q++) {
    th[q].run = &run;
    th[q].queue = q;
    /* Reproducible per (seed, queue, epoch), different across runs so that epochs see new orders. */
    th[q].rng = (sb->seed ^ ((uint64_t)(q + 1) * 0x9e3779b97f4a7c15u) ^ ((uint64_t)epoch << 40)) | 1u;
    int rc = pthread_create(&tid[q], NULL, sim_thread, &th[q]);
    if (rc) {
      st = MLK_ERROR_AT(MLK_ERR_NOMEM, "pthread_create(simulator thread %d of %d) failed: %s", q,
                        sb->threads, strerror(rc));
      atomic_store(&run.abort, 1);
      break;
    }
    started++;
  }
  for (int q = 0; q < started; q++) {
    int rc = pthread_join(tid[q], NULL);
    if (rc && st == MLK_OK)
      st = MLK_ERROR_AT(MLK_ERR_INVALID, "pthread_join(simulator thread %d) failed: %s", q, strerror(rc));
  }
  free(tid);
  free(th);
  if (st == MLK_OK && atomic_load(&run.err_flag))
    *err = run.err;
  return st;
}

static mlk_status sim_upload(mlk_model *m, int tensor, const void *src, size_t bytes) {
  SimModel *sm = m->impl;
  memcpy(sm->bufs[tensor], src, bytes);
  return MLK_OK;
}

static mlk_status sim_download(mlk_model *m, int tensor, void *dst, size_t bytes) {
  SimModel *sm = m->impl;
  memcpy(dst, sm->bufs[tensor], bytes);
  return MLK_OK;
}

static mlk_status sim_fill(mlk_model *m, int tensor, uint8_t byte) {
  SimModel *sm = m->impl;
  memset(sm->bufs[tensor], byte, m->bytes[tensor]);
  return MLK_OK;
}

static mlk_status sim_zero_counters(mlk_model *m) {
  SimModel *sm = m->impl;
  for (int64_t i = 0; i < m->desc->ncounters; i++)
    atomic_store_explicit(&sm->counters[i], 0u, memory_order_relaxed);
  return MLK_OK;
}

static void sim_model_fini(mlk_model *m) {
  SimModel *sm = m->impl;
  if (!sm)
    return;
  const MlkModelDesc *d = m->desc;
  if (sm->bufs)
    for (int i = 0; i < d->ntensors; i++)
      free(sm->bufs[i]);
  if (sm->qoff)
    for (int k = 0; k < d->nkernels; k++) {
      free(sm->qoff[k]);
      free(sm->words[k]);
    }
  free(sm->bufs);
  free((void *)sm->counters);
  free(sm->qoff);
  free(sm->words);
  free(sm->ev);
  free(sm->event_list);
  free(sm);
  m->impl = NULL;
}

static mlk_status sim_model_init(mlk_model *m) {
  const MlkModelDesc *d = m->desc;
  const SimBackend *sb = m->be->impl;
  SimModel *sm = MLK_CALLOC(1, sizeof *sm, "simulator model");
  if (!sm)
    return MLK_ERR_NOMEM;
  m->impl = sm;
  mlk_status st = MLK_ERR_NOMEM;
  if (!(sm->bufs = MLK_CALLOC((size_t)d->ntensors, sizeof *sm->bufs, "tensor table")))
    goto fail;
  for (int i = 0; i < d->ntensors; i++) {
    char what[160];
    snprintf(what, sizeof what, "tensor '%s'", d->tensors[i].name);
    /* Tensors are f32 or narrower: calloc's alignment suits every dtype. */
    if (!(sm->bufs[i] = MLK_CALLOC(m->bytes[i], 1, what)))
      goto fail;
  }
  if (!(sm->counters = MLK_CALLOC((size_t)d->ncounters, sizeof *sm->counters, "event counters")))
    goto fail;
  for (int64_t i = 0; i < d->ncounters; i++)
    atomic_init(&sm->counters[i], 0u);
  if (!(sm->ev = MLK_CALLOC((size_t)d->nops, sizeof *sm->ev, "op events")) ||
      !(sm->event_list = MLK_CALLOC((size_t)d->nevents * 2, sizeof *sm->event_list, "event lists")))
    goto fail;
  /* Two passes: count, then carve each op's lists out of event_list. */
  for (int i = 0; i < d->nevents; i++) {
    sm->ev[d->events[i].consumer].nwaits++;
    sm->ev[d->events[i].producer].nnotifies++;
  }
  int *next = sm->event_list;
  for (int o = 0; o < d->nops; o++) {
    sm->ev[o].waits = next;
    next += sm->ev[o].nwaits;
    sm->ev[o].notifies = next;
    next += sm->ev[o].nnotifies;
    sm->ev[o].nwaits = sm->ev[o].nnotifies = 0;
  }
  for (int i = 0; i < d->nevents; i++) {
    SimOpEvents *c = &sm->ev[d->events[i].consumer], *p = &sm->ev[d->events[i].producer];
    c->waits[c->nwaits++] = i;
    p->notifies[p->nnotifies++] = i;
  }
  if (!(sm->qoff = MLK_CALLOC((size_t)d->nkernels, sizeof *sm->qoff, "queue table")) ||
      !(sm->words = MLK_CALLOC((size_t)d->nkernels, sizeof *sm->words, "queue table")))
    goto fail;
  for (int k = 0; k < d->nkernels; k++)
    if ((st = mlk_sched_build(d, k, sb->threads, &sm->qoff[k], &sm->words[k], NULL)))
      goto fail;
  return MLK_OK;
fail:
  sim_model_fini(m);
  return st;
}

static void sim_backend_free(mlk_backend *be) { free(be->impl); }

static const MlkBackendOps sim_ops = {
    .backend_free = sim_backend_free,
    .model_init = sim_model_init,
    .model_fini = sim_model_fini,
    .upload = sim_upload,
    .download = sim_download,
    .fill = sim_fill,
    .zero_counters = sim_zero_counters,
    .run = sim_run,
};

mlk_status mlk_sim_backend_create(const mlk_sim_options *opt, mlk_backend **out) {
  mlk_sim_options o = {0, 0, 0};
  if (opt)
    o = *opt;
  if (o.threads < 0 || o.threads > 4096)
    return mlk_set_error(MLK_ERR_INVALID, "simulator threads must be in [1, 4096] (0: default), got %d",
                         o.threads);
  if (o.max_delay_us < 0 || o.max_delay_us > 1000000)
    return mlk_set_error(MLK_ERR_INVALID, "simulator max_delay_us must be in [0, 1000000], got %d",
                         o.max_delay_us);
  int64_t v;
  mlk_status st;
  if (o.threads == 0) {
    if ((st = mlk_env_int("MLK_SIM_THREADS", 1, 4096, 8, &v)))
      return st;
    o.threads = (int)v;
  }
  if (o.seed == 0) {
    /* 0 means "default" in mlk_sim_options, so the environment cannot ask for it either. */
    if ((st = mlk_env_int("MLK_SIM_SEED", 1, INT64_MAX, 1, &v)))
      return st;
    o.seed = (uint64_t)v;
  }
  mlk_backend *be = MLK_CALLOC(1, sizeof *be, "backend");
  SimBackend *sb = be ? MLK_CALLOC(1, sizeof *sb, "simulator backend") : NULL;
  if (!sb) {
    free(be);
    return MLK_ERR_NOMEM;
  }
  sb->threads = o.threads;
  sb->seed = o.seed;
  sb->max_delay_us = o.max_delay_us;
  be->ops = &sim_ops;
  be->is_gpu = 0;
  be->impl = sb;
  if (o.max_delay_us)
    snprintf(be->name, sizeof be->name, "CPU simulator (%d threads, seed %llu, delays up to %d us)",
             o.threads, (unsigned long long)o.seed, o.max_delay_us);
  else
    snprintf(be->name, sizeof be->name, "CPU simulator (%d threads, seed %llu)", o.threads,
             (unsigned long long)o.seed);
  *out = be;
  return MLK_OK;
}
