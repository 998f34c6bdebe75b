/* sim.c: the CPU simulator backend: the megakernel's protocol on the host.
 *
 * It exists so that a compiled model can be run and checked without a GPU, and so that the task
 * graph itself (queues, event index maps, start values) is tested on every machine. It simulates
 * `threads` SMs. Under the static schedule each walks the same queue the GPU block would
 * (sched.c), waits on the same event counters, computes its slice with the C reference tiles
 * (stdlib/ref) and notifies. Under the dynamic schedule they share one ready queue instead: a
 * task is pushed when the last counter it waits on completes.
 *
 * Two modes. Deterministic (the default): one host thread runs every SM, and a seeded scheduler
 * (PCT, see "the deterministic mode" below) picks at each step which runnable SM (or ready task)
 * runs its next task, whole; a seed replays exactly the same interleaving, a run whose SMs are all
 * blocked is reported the moment it happens, and a run can be explored under many schedules from
 * the same start (sim_run_explore). Threaded: a pthread per SM, acquire loads and release
 * increments on the counters, the OS choosing the interleaving (optional random delays before
 * tasks shake it); a run is stuck once every thread is blocked on a counter nothing can complete
 * any more (no deadline: see "the threaded mode" below). Either way a stuck run records the same
 * MlkDevError the GPU writes; the simulator reads a clock for traces and delays only.
 *
 * The dependency checker. Events are the compiler's claim of what each task needs; the checker
 * verifies the claim against the ops' semantics alone. For every task it knows which columns of
 * which tensors it reads and writes (MlkAccess, from the op kind, runtime/ops.c: a matvec reads
 * all k columns of x and writes its rows; attention reads its query heads, the cache columns of its kv heads in its
 * layer (layer l of a cache is the column space [l * kv_heads * head_dim, ...)) and the positions;
 * a split attention all query heads and the whole cache layer, its reduce the split records of
 * its kv heads; ...). Before a task computes (after its waits) it checks that
 *   - every task of an earlier op that writes a column it reads has finished in this run (RAW),
 *   - every task of an earlier op that reads a column it writes has finished (WAR: a later op
 *     must not overwrite what an earlier one still reads),
 *   - no task of another op writes a column it writes and has already started (double write).
 * Tasks stamp `started` and `done` with the run's serial number, so nothing is reset between
 * runs. Tensors no op of the kernel writes (params, inputs, outputs of other kernels) are always
 * ready. A violation fails the run with MLK_ERR_INVALID naming both tasks and the columns. The
 * checker only sees orders that actually happened: the deterministic scheduler searches them (a
 * new seed is a new schedule), and the drop_event hook (skip the waits on one event and hold its
 * producers back until nothing else can run, or threaded until a consumer task has been checked)
 * makes a given missing edge show up.
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
#include "task.h"

typedef struct SimBackend {
  int threads;    /* simulated SMs */
  uint64_t seed;
  mlk_sim_mode mode; /* deterministic or threaded, resolved */
  int pct_depth;  /* deterministic mode */
  int explore;    /* deterministic mode: schedules per run */
  int max_delay_us;
  mlk_sim_schedule schedule;
  int check;      /* the dependency checker is on */
  int drop_event; /* waits on this event are skipped (-1: none) */
} SimBackend;


/* A pair of accesses that may overlap: this op's access `mine` (a read index, or -1 for its write)
 * and access `theirs` (likewise) of op `op` (global index). */
typedef struct SimLink {
  int mine, op, theirs;
} SimLink;


typedef struct SimOp {
  int *waits, nwaits;       /* events it waits on as consumer (the dropped event left out) */
  int *notifies, nnotifies; /* events it notifies as producer */
  int delayed;              /* a producer of the dropped event: held back */
  int dropped_consumer;     /* a consumer of the dropped event */
  int kernel;
  int64_t first;            /* number of its task 0 among its kernel's tasks */
  MlkAccess reads[MLK_MAX_READS];
  int nreads;
  MlkAccess write;
  SimLink *raw, *war, *ww;  /* earlier writers of what it reads, earlier readers of what it
                               writes, other writers of what it writes */
  int nraw, nwar, nww;
} SimOp;

typedef struct SimKernel {
  MlkDevOp *recs;                  /* the op records (program.c), with host pointers */
  MlkDevSync *syncs;               /* their waits and notifies (the simulator reads the desc's) */
  uint32_t *qoff;                  /* static queues (sched.c) */
  MlkTaskWord *words;
  int64_t ntasks;
  _Atomic uint32_t *started, *done; /* checker: per task, the serial of the run that started or
                                       finished it */
  int32_t *pending;                /* dynamic: per task, wait counters not complete yet */
  MlkTaskWord *ready;              /* dynamic: the ready queue (task words) */
} SimKernel;

typedef struct SimModel {
  void **bufs;                /* per tensor */
  _Atomic uint32_t *counters; /* ncounters, then the split ops' arrival counters */
  int64_t ncounters;          /* all of them */
  void *scratch;              /* the split ops' partials (mlk_program_scratch_bytes) */
  SimKernel *kernels;
  SimOp *ops;                 /* per op (global index) */
  int *event_list;            /* storage of every waits/notifies list */
  int **waiters, *nwaiters;   /* per event: the ops that wait on it (dynamic schedule) */
  uint32_t serial;            /* runs started (stamps of the current run's tasks) */
  uint64_t *peers;            /* a rank of a world with in-kernel allreduces: its peer area
                                 (mlk_program_peer_words: the ranks' counter arrays, then each
                                 allreduce's table of the ranks' x, host addresses); else NULL */
  uint64_t timeout_ns;        /* with peers: how long the SMs may all wait on the other ranks
                                 (deterministic: from when they all began to wait; threaded: from
                                 the run's start) before the run is reported stuck */
  uint64_t deadline_ns;       /* threaded, with peers: the run's start + timeout_ns */
} SimModel;

/* Shared by the threads of one run. */
typedef struct SimRun {
  const mlk_model *m;
  const SimBackend *sb;
  SimModel *sm;
  SimKernel *sk;
  int kernel;
  uint32_t epoch, serial;
  int dynamic;
  int threaded;         /* a host thread per SM (else the deterministic mode, on this thread) */
  atomic_int abort;     /* set when the run fails: everyone stops */
  atomic_uint drop_checked; /* drop_event hook: the serial of this run once a consumer of the
                               dropped event passed the checker */
  atomic_int hold_grant;    /* threaded, static: 1 lets one held producer of the dropped event go
                               (nothing else could run); it takes the grant back to 0 */
  struct SimThread *threads;    /* threaded: every SM's thread */
  _Atomic uint64_t running;     /* threaded, static: transitions << 32 | threads running */
  atomic_uint err_flag; /* the first stuck wait wins the right to write err */
  MlkDevError err;
  atomic_int failed;    /* first checker (or index) failure wins the right to write fail_msg */
  mlk_status fail_st;
  char fail_msg[1024];
  /* dynamic schedule: the ready queue sk->ready[0 .. nready) and the counts (threaded: under mu) */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int64_t nready, ndone, nrunning;
  uint64_t rng;         /* pop order (threaded), the schedule (deterministic) */
  uint64_t *trace;      /* NULL, or a record per task, at slot (first of its op + task) */
} SimRun;

/* Threaded mode: what a host thread is doing (SimThread.state). */
enum { TH_RUNNING, TH_WAITING, TH_HELD, TH_DONE };

typedef struct SimThread {
  SimRun *run;
  int queue;
  uint64_t rng;
  atomic_int state;
  /* while TH_WAITING: the task word, and the event and counter index it waits on */
  _Atomic uint64_t wait_word;
  atomic_int wait_event;
  _Atomic int64_t wait_index;
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

/* splitmix64's finalizer: seeds from small numbers (seed 1, run 2) become well-mixed states. */
static uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15u;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

static uint64_t xorshift(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

/* Task words (mlk_desc.h) are decoded and encoded here only: word_op_index and task_word. */

/* The op (global index) of task word `word` of this run's kernel, and in *task its task index. */
static int word_op_index(const SimRun *run, MlkTaskWord word, int64_t *task) {
  *task = MLK_TASK_INDEX(word);
  return run->m->desc->kernels[run->kernel].first_op + (int)MLK_TASK_OP(word);
}

/* The task word of task `t` of op `o` (global index) of this run's kernel. */
static MlkTaskWord task_word(const SimRun *run, int o, int64_t t) {
  return MLK_TASK_WORD(o - run->m->desc->kernels[run->kernel].first_op, t);
}

static const SimOp *word_op(const SimRun *run, MlkTaskWord word, int64_t *task) {
  return &run->sm->ops[word_op_index(run, word, task)];
}

/* The task's number among its kernel's tasks (topological order). */
static int64_t word_global(const SimRun *run, MlkTaskWord word) {
  int64_t t;
  return word_op(run, word, &t)->first + t;
}

/* Stops every thread of the run (waking those blocked on the ready queue). */
static void sim_abort(SimRun *run) {
  atomic_store(&run->abort, 1);
  if (run->dynamic) {
    pthread_mutex_lock(&run->mu);
    pthread_cond_broadcast(&run->cv);
    pthread_mutex_unlock(&run->mu);
  }
}

/* Fails the run with `st` and a message (the first failure is kept) and stops it. */
static void sim_fail(SimRun *run, mlk_status st, const char *fmt, ...) MLK_PRINTF(3, 4);
static void sim_fail(SimRun *run, mlk_status st, const char *fmt, ...) {
  if (atomic_exchange(&run->failed, 1) == 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(run->fail_msg, sizeof run->fail_msg, fmt, ap);
    va_end(ap);
    run->fail_st = st;
  }
  sim_abort(run);
}

/* ---- the threaded mode: blocking without deadlines ----
 *
 * A host thread is running, blocked (waiting on a counter, or held back by drop_event) or done.
 * The run keeps, in one atomic word, how many threads are running and how many times a thread
 * went from running to not or back (transitions << 32 | running). A blocked thread that sees no
 * thread running checks whether the run is stuck: no waiting thread's counter has reached its
 * target, and the word did not change while it looked. Only running threads notify, and the
 * notifies of a thread precede its transition, so the counters it read were final and no thread
 * can ever run again. Then one held producer is let go, or, with none held, the run fails as a
 * timed-out wait would: the waiting task with the smallest task number (where a stuck static run stops does
 * not depend on the interleaving, so this is the task the deterministic mode reports). No
 * deadline is involved, however slow or loaded the machine.
 */
#define SIM_TRANSITION ((uint64_t)1 << 32)

static void th_block(SimThread *th, int state) {
  atomic_store(&th->state, state);
  atomic_fetch_add(&th->run->running, SIM_TRANSITION - 1);
}

static void th_wake(SimThread *th) {
  /* Counted as running before it stops counting as blocked: a detector never sees it neither. */
  atomic_fetch_add(&th->run->running, SIM_TRANSITION + 1);
  atomic_store(&th->state, TH_RUNNING);
}

static void th_done(SimThread *th) {
  atomic_store(&th->state, TH_DONE);
  atomic_fetch_add(&th->run->running, SIM_TRANSITION - 1);
}

/* Called by a blocked thread: when the run is stuck for good, lets the held producers go or
 * records the stuck wait and stops the run. */
static void check_stuck(SimRun *run) {
  const MlkModelDesc *d = run->m->desc;
  uint64_t s = atomic_load(&run->running);
  if ((uint32_t)s != 0)
    return;
  if (run->sm->peers && now_ns() < run->sm->deadline_ns)
    return; /* the other ranks of a world may still complete a counter */
  int held = 0;
  const SimThread *low = NULL;
  int64_t low_g = INT64_MAX;
  for (int q = 0; q < run->sb->threads; q++) {
    const SimThread *t = &run->threads[q];
    int st = atomic_load(&t->state);
    if (st == TH_HELD)
      held = 1;
    if (st != TH_WAITING)
      continue;
    const MlkEventDesc *e = &d->events[atomic_load_explicit(&t->wait_event, memory_order_relaxed)];
    int64_t idx = atomic_load_explicit(&t->wait_index, memory_order_relaxed);
    uint32_t target = run->epoch * (uint32_t)mlk_event_start_value(e, idx);
    if (mlk_counter_reached(atomic_load(&run->sm->counters[e->base + idx]), target))
      return; /* it will wake */
    int64_t g = word_global(run, atomic_load_explicit(&t->wait_word, memory_order_relaxed));
    if (g < low_g) {
      low_g = g;
      low = t;
    }
  }
  if (atomic_load(&run->running) != s)
    return; /* someone moved while we looked */
  if (held) {
    int none = 0;
    atomic_compare_exchange_strong(&run->hold_grant, &none, 1);
    return;
  }
  if (!low)
    return; /* (not reached: the caller itself waits, or is held and returned above) */
  if (atomic_exchange(&run->err_flag, 1u) == 0) {
    int ev = atomic_load_explicit(&low->wait_event, memory_order_relaxed);
    int64_t idx = atomic_load_explicit(&low->wait_index, memory_order_relaxed);
    const MlkEventDesc *e = &d->events[ev];
    MlkTaskWord w = atomic_load_explicit(&low->wait_word, memory_order_relaxed);
    run->err = (MlkDevError){1, (uint32_t)low->queue, MLK_TASK_OP(w), MLK_TASK_INDEX(w), (uint32_t)ev,
                             (uint32_t)idx, run->epoch * (uint32_t)mlk_event_start_value(e, idx),
                             atomic_load(&run->sm->counters[e->base + idx])};
  }
  sim_abort(run);
}

/* Yields first (the producer is usually running), then sleeps a little so that an oversubscribed
 * machine is not burnt by spinning threads, looking whether the run is stuck meanwhile. */
static void blocked_pause(SimRun *run, unsigned spin) {
  if (spin < 64) {
    sched_yield();
    return;
  }
  check_stuck(run);
  sleep_ns(spin < 1024 ? 2000 : 50000);
}

/* Waits until counter `index` of event `event` reaches this run's target. Returns 0 when it did,
 * -1 when the run was aborted (stuck, or failed elsewhere). */
static int wait_counter(SimThread *th, MlkTaskWord word, int event, int64_t index) {
  SimRun *run = th->run;
  const MlkEventDesc *e = &run->m->desc->events[event];
  _Atomic uint32_t *c = &run->sm->counters[e->base + index];
  uint32_t target = run->epoch * (uint32_t)mlk_event_start_value(e, index);
  if (mlk_counter_reached(atomic_load_explicit(c, memory_order_acquire), target))
    return 0;
  atomic_store_explicit(&th->wait_word, word, memory_order_relaxed);
  atomic_store_explicit(&th->wait_event, event, memory_order_relaxed);
  atomic_store_explicit(&th->wait_index, index, memory_order_relaxed);
  th_block(th, TH_WAITING);
  for (unsigned spin = 0;; spin++) {
    if (atomic_load_explicit(&run->abort, memory_order_relaxed))
      return -1;
    if (mlk_counter_reached(atomic_load_explicit(c, memory_order_acquire), target)) {
      th_wake(th);
      return 0;
    }
    blocked_pause(run, spin);
  }
}

/* drop_event, static schedule: holds a producer of the dropped event until a consumer of it has
 * passed the checker in this run, or nothing else can run (then the held producers go one at a
 * time, so that a queue that gets past its producers finds the others' still held). Returns -1
 * when the run was aborted. */
static int hold_producer(SimThread *th) {
  SimRun *run = th->run;
  th_block(th, TH_HELD);
  for (unsigned spin = 0;; spin++) {
    if (atomic_load_explicit(&run->abort, memory_order_relaxed))
      return -1;
    int granted = 1;
    if (atomic_load(&run->drop_checked) == run->serial ||
        atomic_compare_exchange_strong(&run->hold_grant, &granted, 0)) {
      th_wake(th);
      return 0;
    }
    blocked_pause(run, spin);
  }
}

/* ---- operands and tiles ---- */

/* The address of an operand (its tensor at its element offset), or NULL for none. */
static void *arg_ptr(const SimModel *sm, const MlkModelDesc *d, MlkArg a) {
  if (a.tensor < 0)
    return NULL;
  return (char *)sm->bufs[a.tensor] + (size_t)a.offset * mlk_dtype_size(d->tensors[a.tensor].dtype);
}

/* Checks that `rows` i32 values at `v` are in [0, lim) before a tile uses them as indices. Inputs
 * were checked before the run (model.c); this catches values computed by ops (or read too early,
 * when a dependency is missing), so that the references never index out of their buffers. */
static int check_indices(SimRun *run, const MlkOpDesc *op, int64_t task, MlkArg a, int64_t rows,
                         int64_t lim, const char *what) {
  const int32_t *v = arg_ptr(run->sm, run->m->desc, a);
  for (int64_t b = 0; b < rows; b++)
    if (v[b] < 0 || v[b] >= lim) {
      sim_fail(run, MLK_ERR_INVALID, "megakernel '%s': task %lld of op '%s' read %d in row %lld of '%s', "
               "outside %s", run->m->desc->kernels[run->kernel].name, (long long)task, op->name, v[b],
               (long long)b, run->m->desc->tensors[a.tensor].name, what);
      return -1;
    }
  return 0;
}

/* Checks that the page table gives every row's positions 0..pos[b] a page of the pool (with
 * sequences, the entries past a sequence's pages are -1), so that the references never index out
 * of the pool. */
static int check_pages(SimRun *run, const MlkOpDesc *op, int64_t task, int64_t rows, int64_t pps,
                       int64_t npages, int64_t page) {
  const MlkModelDesc *d = run->m->desc;
  const int32_t *pos = arg_ptr(run->sm, d, op->in[2]), *table = arg_ptr(run->sm, d, op->in[3]);
  for (int64_t b = 0; b < rows; b++)
    for (int64_t j = 0; j <= pos[b] / page; j++)
      if (table[b * pps + j] < 0 || table[b * pps + j] >= npages) {
        sim_fail(run, MLK_ERR_INVALID, "megakernel '%s': task %lld of op '%s': row %lld at position %d "
                 "needs page %lld of its sequence, the page table says %d (the pool has %lld pages)",
                 d->kernels[run->kernel].name, (long long)task, op->name, (long long)b, pos[b],
                 (long long)j, table[b * pps + j], (long long)npages);
        return -1;
      }
  return 0;
}

/* Computes task `task` of op `o` for the run's rows with the reference tiles, through the same
 * per-kind dispatch the device runs (stdlib/task.c), after checking the indices it will follow. */
static int run_tile(SimRun *run, int o, int64_t task, MlkTaskDone *done) {
  const mlk_model *m = run->m;
  const MlkModelDesc *d = m->desc;
  const MlkOpDesc *op = &d->ops[o];
  int64_t rows = mlk_op_rows(op, m->batch);
  char what[256];
  if (op->kind == MLK_OP_GATHER) {
    const MlkTensorDesc *table = &d->tensors[op->in[1].tensor];
    int64_t trows = (table->numel - op->in[1].offset) / op->n;
    snprintf(what, sizeof what, "the %lld rows of table '%s'", (long long)trows, table->name);
    if (check_indices(run, op, task, op->in[0], rows, trows, what))
      return -1;
  } else if (op->kind == MLK_OP_KV_APPEND || op->kind == MLK_OP_ATTENTION) {
    snprintf(what, sizeof what, "the positions 0..%lld of KV cache '%s'", (long long)(m->context - 1),
             d->caches[op->cache].name);
    if (check_indices(run, op, task, op->in[2], rows, m->context, what))
      return -1;
    int64_t pps = m->rt[MLK_RT_PAGES_PER_SEQ(op->cache)], npages = m->rt[MLK_RT_PAGES(op->cache)];
    if (check_pages(run, op, task, rows, pps, npages, d->caches[op->cache].page))
      return -1;
  }
  *done = mlk_task_exec(&run->sk->recs[o - d->kernels[run->kernel].first_op], task, m->rt);
  return 0;
}

/* ---- the dependency checker ---- */

static void acc_range(const MlkAccess *a, int64_t t, int64_t *lo, int64_t *hi) {
  *lo = a->base + t * a->step;
  *hi = mlk_min64(*lo + a->width, a->end);
}

/* The tasks [*t0, *t1] of an op with `ntasks` tasks whose access `a` can overlap [lo, hi). */
static void acc_tasks(const MlkAccess *a, int64_t ntasks, int64_t lo, int64_t hi, int64_t *t0,
                      int64_t *t1) {
  if (a->step == 0) {
    *t0 = 0;
    *t1 = ntasks - 1;
    return;
  }
  *t0 = lo <= a->base ? 0 : (lo - a->base) / a->step;
  *t1 = hi - 1 < a->base ? -1 : (hi - 1 - a->base) / a->step;
  if (*t1 > ntasks - 1)
    *t1 = ntasks - 1;
}

/* Whether any task's access a can overlap any task's access b. */
static int may_overlap(const MlkAccess *a, const MlkAccess *b) {
  return a->tensor == b->tensor && a->base < b->end && b->base < a->end;
}

/* "columns [64, 128) of 'q'", or "columns [16, 32) of layer 1 of KV cache 'kv'". */
static void describe_cols(char *buf, size_t size, const MlkModelDesc *d, int tensor, int64_t lo,
                          int64_t hi) {
  const MlkTensorDesc *t = &d->tensors[tensor];
  int c = t->kind == MLK_TENSOR_CACHE ? mlk_cache_of_tensor(d, tensor) : -1;
  if (c >= 0) {
    int64_t lc = d->caches[c].kv_heads * d->caches[c].head_dim, layer = lo / lc;
    snprintf(buf, size, "columns [%lld, %lld) of layer %lld of KV cache '%s'",
             (long long)(lo - layer * lc), (long long)(hi - layer * lc), (long long)layer,
             d->caches[c].name);
  } else {
    snprintf(buf, size, "columns [%lld, %lld) of '%s'", (long long)lo, (long long)hi, t->name);
  }
}

/* Kinds of conflict the checker reports. */
enum { CONFLICT_RAW, CONFLICT_WAR, CONFLICT_WW };

/* Checks task `t` of op `o` against the tasks of the other side of each link. Returns -1 (with
 * the run failed) on the first violation. */
static int check_links(SimRun *run, int o, int64_t t, const SimLink *links, int nlinks, int kind) {
  const MlkModelDesc *d = run->m->desc;
  const SimModel *sm = run->sm;
  const SimOp *so = &sm->ops[o];
  const SimKernel *sk = run->sk;
  for (int i = 0; i < nlinks; i++) {
    const SimLink *l = &links[i];
    const MlkAccess *mine = l->mine < 0 ? &so->write : &so->reads[l->mine];
    const SimOp *other = &sm->ops[l->op];
    const MlkAccess *theirs = l->theirs < 0 ? &other->write : &other->reads[l->theirs];
    int64_t lo, hi, t0, t1;
    acc_range(mine, t, &lo, &hi);
    acc_tasks(theirs, d->ops[l->op].ntasks, lo, hi, &t0, &t1);
    for (int64_t t2 = t0; t2 <= t1; t2++) {
      int64_t lo2, hi2;
      acc_range(theirs, t2, &lo2, &hi2);
      lo2 = lo2 > lo ? lo2 : lo;
      hi2 = mlk_min64(hi2, hi);
      if (lo2 >= hi2)
        continue;
      int64_t g2 = other->first + t2;
      int ok = kind == CONFLICT_WW ? atomic_load(&sk->started[g2]) != run->serial
                                   : atomic_load_explicit(&sk->done[g2], memory_order_acquire) == run->serial;
      if (ok)
        continue;
      char cols[256];
      describe_cols(cols, sizeof cols, d, mine->tensor, lo2, hi2);
      const char *kname = d->kernels[run->kernel].name;
      if (kind == CONFLICT_RAW)
        sim_fail(run, MLK_ERR_INVALID, "missing dependency in megakernel '%s': task %lld of op '%s' "
                 "read %s before task %lld of op '%s' wrote them", kname, (long long)t,
                 d->ops[o].name, cols, (long long)t2, d->ops[l->op].name);
      else if (kind == CONFLICT_WAR)
        sim_fail(run, MLK_ERR_INVALID, "missing dependency in megakernel '%s': task %lld of op '%s' "
                 "wrote %s before task %lld of op '%s', an earlier op that reads them, finished",
                 kname, (long long)t, d->ops[o].name, cols, (long long)t2, d->ops[l->op].name);
      else
        sim_fail(run, MLK_ERR_INVALID, "double write in megakernel '%s': task %lld of op '%s' writes "
                 "%s, which task %lld of op '%s' also writes in the same run", kname, (long long)t,
                 d->ops[o].name, cols, (long long)t2, d->ops[l->op].name);
      return -1;
    }
  }
  return 0;
}

static int check_task(SimRun *run, int o, int64_t t) {
  const SimOp *so = &run->sm->ops[o];
  /* Stamp first, then look (both sequentially consistent): of two overlapping writers, at least
   * the second to stamp sees the first. */
  atomic_store(&run->sk->started[so->first + t], run->serial);
  if (check_links(run, o, t, so->ww, so->nww, CONFLICT_WW) ||
      check_links(run, o, t, so->raw, so->nraw, CONFLICT_RAW) ||
      check_links(run, o, t, so->war, so->nwar, CONFLICT_WAR))
    return -1;
  return 0;
}

/* Appends a link to a growing array; returns -1 when out of memory. */
static int add_link(SimLink **v, int *n, SimLink l) {
  SimLink *p = realloc(*v, (size_t)(*n + 1) * sizeof *p);
  if (!p)
    return -1;
  p[(*n)++] = l;
  *v = p;
  return 0;
}

/* The checker's links between the ops of kernel k. */
static mlk_status build_links(const MlkModelDesc *d, SimModel *sm, int k) {
  const MlkKernelDesc *kd = &d->kernels[k];
  for (int o = kd->first_op; o < kd->first_op + kd->nops; o++) {
    SimOp *so = &sm->ops[o];
    for (int o2 = kd->first_op; o2 < kd->first_op + kd->nops; o2++) {
      if (o2 == o)
        continue;
      SimOp *s2 = &sm->ops[o2];
      int fail = 0;
      if (may_overlap(&so->write, &s2->write))
        fail |= add_link(&so->ww, &so->nww, (SimLink){-1, o2, -1});
      if (o2 < o) {
        for (int r = 0; r < so->nreads; r++)
          if (may_overlap(&so->reads[r], &s2->write))
            fail |= add_link(&so->raw, &so->nraw, (SimLink){r, o2, -1});
        for (int r = 0; r < s2->nreads; r++)
          if (may_overlap(&so->write, &s2->reads[r]))
            fail |= add_link(&so->war, &so->nwar, (SimLink){-1, o2, r});
      }
      if (fail)
        return MLK_ERROR_AT(MLK_ERR_NOMEM, "realloc(dependency checker links of op '%s') failed",
                            d->ops[o].name);
    }
  }
  return MLK_OK;
}

/* ---- tasks ---- */

/* Appends the tasks that wait on counter `idx` of event `ei`, which just completed, to the ready
 * queue once every counter they wait on is complete: task idx of its consumer (TILE), or every
 * task of every op that waits on it (ALL). */
static void push_consumers(SimRun *run, int ei, int64_t idx) {
  const MlkModelDesc *d = run->m->desc;
  const MlkEventDesc *e = &d->events[ei];
  SimKernel *sk = run->sk;
  if (run->threaded)
    pthread_mutex_lock(&run->mu);
  int64_t pushed = 0;
  for (int w = 0; w < run->sm->nwaiters[ei]; w++) {
    int c = run->sm->waiters[ei][w];
    const SimOp *co = &run->sm->ops[c];
    int64_t t0 = e->map == MLK_MAP_ALL ? 0 : idx;
    int64_t t1 = e->map == MLK_MAP_ALL ? d->ops[c].ntasks - 1 : idx;
    for (int64_t t = t0; t <= t1; t++)
      if (--sk->pending[co->first + t] == 0) {
        sk->ready[run->nready++] = task_word(run, c, t);
        pushed++;
      }
  }
  if (run->threaded) {
    /* A waiter per new task (not all of them for each: on a loaded machine every needless wakeup
     * costs a time slice). */
    if (pushed >= run->sb->threads)
      pthread_cond_broadcast(&run->cv);
    else
      for (int64_t i = 0; i < pushed; i++)
        pthread_cond_signal(&run->cv);
    pthread_mutex_unlock(&run->mu);
  }
}

/* The notifies of task `task` on event `ei`: each counter of its range (and, under the dynamic
 * schedule, the consumers the counters it completes make ready). */
static void notify_task(SimRun *run, int ei, int64_t task) {
  const MlkModelDesc *d = run->m->desc;
  SimModel *sm = run->sm;
  const MlkEventDesc *e = &d->events[ei];
  int64_t lo, hi;
  mlk_event_notify_range(e, task, &lo, &hi);
  /* Validation keeps ranges inside the event; the clamp keeps a stray one from writing into
   * another event's counters. */
  if (hi >= e->size)
    hi = e->size - 1;
  for (int64_t c = lo; c <= hi; c++) {
    if (e->ranks > 1 && sm->peers) { /* to this counter on every rank (in-kernel allreduce) */
      for (int64_t r = 0; r < e->ranks; r++)
        atomic_fetch_add_explicit((_Atomic uint32_t *)(uintptr_t)sm->peers[r] + e->base + c, 1u,
                                  memory_order_release);
      continue;
    }
    uint32_t old = atomic_fetch_add_explicit(&sm->counters[e->base + c], 1u, memory_order_release);
    /* The notify that completes the counter for this run makes its consumers ready. */
    if (run->dynamic && ei != run->sb->drop_event &&
        old + 1u == run->epoch * (uint32_t)mlk_event_start_value(e, c))
      push_consumers(run, ei, c);
  }
}

/* The part of a task that follows its waits: the checker, the tile, the notifies (and, under the
 * dynamic schedule, the consumers they make ready). `sm_index` is the simulated SM that runs it
 * (trace records). Returns -1 when the run failed. */
static int exec_task(SimRun *run, int sm_index, MlkTaskWord word, uint64_t *rec) {
  SimModel *sm = run->sm;
  int64_t task;
  int o = word_op_index(run, word, &task);
  const SimOp *so = &sm->ops[o];
  if (rec) {
    rec[MLK_TRACE_READY] = now_ns();
    rec[MLK_TRACE_BLOCK] = (uint64_t)(uint32_t)sm_index;
    rec[MLK_TRACE_TASK] = word;
  }
  if (run->sb->check && check_task(run, o, task))
    return -1;
  if (so->dropped_consumer)
    atomic_store(&run->drop_checked, run->serial);
  MlkTaskDone span;
  if (run_tile(run, o, task, &span))
    return -1;
  /* The tasks whose work is now complete (MlkTaskDone): this one, none (a split matvec's task
   * that left its group's end to another) or its whole group (the one that merged it). */
  int64_t t0 = MLK_TASK_DONE_FIRST(span), t1 = t0 + MLK_TASK_DONE_COUNT(span);
  if (run->sb->check)
    for (int64_t t = t0; t < t1; t++)
      atomic_store_explicit(&run->sk->done[so->first + t], run->serial, memory_order_release);
  for (int n = 0; n < so->nnotifies; n++)
    for (int64_t t = t0; t < t1; t++)
      notify_task(run, so->notifies[n], t);
  if (rec)
    rec[MLK_TRACE_END] = now_ns();
  return 0;
}


/* The trace record of task `word` of this run, or NULL when the run is not traced. */
static uint64_t *task_record(const SimRun *run, MlkTaskWord word) {
  if (!run->trace)
    return NULL;
  int64_t task;
  const SimOp *so = word_op(run, word, &task);
  return run->trace + (so->first + task) * MLK_TRACE_WORDS;
}

/* Runs one task on a host thread (threaded mode): its random delay, its waits and the drop_event
 * hold (static schedule), then exec_task. Returns -1 when the run was aborted. */
static int run_task(SimThread *th, MlkTaskWord word) {
  SimRun *run = th->run;
  const MlkModelDesc *d = run->m->desc;
  int64_t task;
  const SimOp *so = word_op(run, word, &task);
  uint64_t *rec = task_record(run, word);
  if (rec)
    rec[MLK_TRACE_START] = now_ns();
  if (run->sb->max_delay_us > 0)
    sleep_ns((long)(xorshift(&th->rng) % ((uint64_t)run->sb->max_delay_us + 1)) * 1000);
  if (run->dynamic) /* ready by construction; held producers are taken last (dynamic_pick) */
    return exec_task(run, th->queue, word, rec);
  for (int w = 0; w < so->nwaits; w++) {
    const MlkEventDesc *e = &d->events[so->waits[w]];
    if (wait_counter(th, word, so->waits[w], mlk_event_wait_index(e, task)))
      return -1;
  }
  if (so->delayed && hold_producer(th))
    return -1;
  return exec_task(run, th->queue, word, rec);
}

static void *static_worker(void *arg) {
  SimThread *th = arg;
  SimRun *run = th->run;
  const SimKernel *sk = run->sk;
  for (uint32_t i = sk->qoff[th->queue]; i < sk->qoff[th->queue + 1]; i++) {
    if (atomic_load_explicit(&run->abort, memory_order_relaxed))
      return NULL;
    if (run_task(th, sk->words[i]))
      return NULL;
  }
  th_done(th);
  return NULL;
}

/* Dynamic schedule, no task ready and none running (threaded: under run->mu): record, as a
 * timed-out wait would, the first task that never became ready and a counter it still lacks. */
static void report_stall(SimRun *run) {
  const MlkModelDesc *d = run->m->desc;
  const MlkKernelDesc *k = &d->kernels[run->kernel];
  const SimModel *sm = run->sm;
  for (int o = k->first_op; o < k->first_op + k->nops; o++) {
    const SimOp *so = &sm->ops[o];
    for (int64_t t = 0; t < d->ops[o].ntasks; t++) {
      if (run->sk->pending[so->first + t] <= 0)
        continue;
      int ei = so->waits[0];
      int64_t idx = 0;
      uint32_t target = 0, seen = 0;
      for (int w = 0; w < so->nwaits; w++) {
        const MlkEventDesc *e = &d->events[so->waits[w]];
        idx = mlk_event_wait_index(e, t);
        target = run->epoch * (uint32_t)mlk_event_start_value(e, idx);
        seen = atomic_load(&sm->counters[e->base + idx]);
        ei = so->waits[w];
        if (!mlk_counter_reached(seen, target))
          break;
      }
      if (atomic_exchange(&run->err_flag, 1u) == 0)
        run->err = (MlkDevError){1, MLK_DEV_BLOCK_READY_QUEUE, (uint32_t)(o - k->first_op),
                                 (uint32_t)t, (uint32_t)ei, (uint32_t)idx, target, seen};
      return;
    }
  }
}

/* Threaded, dynamic, under run->mu: the index in the ready queue of the task to take now, or -1.
 * A random ready task (every order the dependencies allow can happen), but a producer of the
 * dropped event only when no other task is ready and none is running (then nothing else can make
 * one ready). */
static int64_t dynamic_pick(SimRun *run) {
  const SimKernel *sk = run->sk;
  if (run->nready == 0)
    return -1;
  if (run->sb->drop_event < 0)
    return (int64_t)(xorshift(&run->rng) % (uint64_t)run->nready);
  int64_t free_tasks = 0, t;
  for (int64_t i = 0; i < run->nready; i++)
    free_tasks += !word_op(run, sk->ready[i], &t)->delayed;
  if (free_tasks == 0)
    return run->nrunning ? -1 : (int64_t)(xorshift(&run->rng) % (uint64_t)run->nready);
  int64_t k = (int64_t)(xorshift(&run->rng) % (uint64_t)free_tasks);
  for (int64_t i = 0;; i++)
    if (!word_op(run, sk->ready[i], &t)->delayed && k-- == 0)
      return i;
}

static void *dynamic_worker(void *arg) {
  SimThread *th = arg;
  SimRun *run = th->run;
  SimKernel *sk = run->sk;
  pthread_mutex_lock(&run->mu);
  while (!atomic_load(&run->abort) && run->ndone < sk->ntasks) {
    int64_t i = dynamic_pick(run);
    if (i >= 0) {
      MlkTaskWord word = sk->ready[i];
      sk->ready[i] = sk->ready[--run->nready];
      run->nrunning++;
      pthread_mutex_unlock(&run->mu);
      int failed = run_task(th, word);
      pthread_mutex_lock(&run->mu);
      run->nrunning--;
      run->ndone++;
      /* Waiters wait for pushes (push_consumers wakes them) or the end. When this was the last
       * running task, this thread itself sees next what can still run (a held task) or that
       * nothing can. */
      if (run->ndone == sk->ntasks)
        pthread_cond_broadcast(&run->cv);
      if (failed)
        break;
      continue;
    }
    /* Only a running task can make another ready: none, and nothing to take, is stuck. */
    if (run->nrunning == 0) {
      report_stall(run);
      atomic_store(&run->abort, 1);
      pthread_cond_broadcast(&run->cv);
      break;
    }
    pthread_cond_wait(&run->cv, &run->mu);
  }
  pthread_mutex_unlock(&run->mu);
  return NULL;
}

/* Fills the ready queue with every task that waits on nothing, and the pending counts. */
static void dynamic_init(SimRun *run) {
  const MlkModelDesc *d = run->m->desc;
  const MlkKernelDesc *k = &d->kernels[run->kernel];
  SimKernel *sk = run->sk;
  run->nready = run->ndone = 0;
  for (int o = k->first_op; o < k->first_op + k->nops; o++) {
    const SimOp *so = &run->sm->ops[o];
    for (int64_t t = 0; t < d->ops[o].ntasks; t++) {
      sk->pending[so->first + t] = so->nwaits;
      if (so->nwaits == 0)
        sk->ready[run->nready++] = task_word(run, o, t);
    }
  }
}

/* ---- the deterministic mode ----
 *
 * One host thread plays every SM. At each step the scheduler picks one runnable choice and runs
 * that task whole (exec_task): under the static schedule a choice is an SM whose next task has all
 * its waits met, under the dynamic one a ready task. Since a task's waits, check, tile and
 * notifies happen in one step, the checker sees every order of whole tasks that the events allow,
 * and a seed replays exactly the same one.
 *
 * Which choice: PCT (probabilistic concurrency testing, Burckhardt et al., ASPLOS 2010) over the
 * threads of the schedule, the SMs (static) or the tasks, each a thread of one step (dynamic).
 * With n threads, k steps (the kernel's tasks) and depth d: the threads get the priorities d ..
 * d + n - 1 in a random order, change steps k_1 .. k_{d-1} are drawn from [1, k], and each step
 * runs the runnable thread of highest priority, except that at step k_i that thread first drops to
 * priority i. A missing dependency that shows under d ordering constraints is then hit with
 * probability >= 1 / (n * k^(d-1)) per run. The producers of a dropped event (drop_event) run only
 * when nothing else can, so that its consumers go first wherever the queues let them. No choice
 * while tasks remain: the run is stuck, and is reported at once with the record a timed-out wait
 * would write.
 */
enum { SIM_MAX_PCT_DEPTH = 16, SIM_DEFAULT_PCT_DEPTH = 3, SIM_MAX_EXPLORE = 1000000 };

typedef struct SimPct {
  int64_t *prio;                         /* per thread */
  int64_t change[SIM_MAX_PCT_DEPTH - 1]; /* change step k_i is change[i - 1] */
  int nchange;
} SimPct;

/* Random priorities for n threads and the change steps of a run of k steps. */
static int pct_init(SimRun *run, SimPct *p, int64_t n, int64_t k) {
  int d = run->sb->pct_depth;
  if (!(p->prio = MLK_CALLOC((size_t)n, sizeof *p->prio, "scheduler priorities")))
    return -1;
  for (int64_t i = 0; i < n; i++)
    p->prio[i] = d + i;
  for (int64_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
    int64_t j = (int64_t)(xorshift(&run->rng) % (uint64_t)(i + 1)), x = p->prio[i];
    p->prio[i] = p->prio[j];
    p->prio[j] = x;
  }
  p->nchange = 0;
  while (p->nchange < d - 1 && p->nchange < k) {
    int64_t c = 1 + (int64_t)(xorshift(&run->rng) % (uint64_t)k);
    int dup = 0;
    for (int i = 0; i < p->nchange; i++)
      dup |= p->change[i] == c;
    if (!dup)
      p->change[p->nchange++] = c;
  }
  return 0;
}

/* The priority a thread drops to at `step` (i for change step k_i), or 0 when it is none. */
static int64_t pct_change_at(const SimPct *p, int64_t step) {
  for (int i = 0; i < p->nchange; i++)
    if (p->change[i] == step)
      return i + 1;
  return 0;
}

/* Whether every counter task `t` of op `o` waits on has reached this run's target. */
static int waits_met(const SimRun *run, const SimOp *so, int64_t t) {
  const MlkModelDesc *d = run->m->desc;
  for (int w = 0; w < so->nwaits; w++) {
    const MlkEventDesc *e = &d->events[so->waits[w]];
    int64_t idx = mlk_event_wait_index(e, t);
    uint32_t v = atomic_load_explicit(&run->sm->counters[e->base + idx], memory_order_relaxed);
    if (!mlk_counter_reached(v, run->epoch * (uint32_t)mlk_event_start_value(e, idx)))
      return 0;
  }
  return 1;
}

/* Static, drop_event: how many producers of the dropped event SM q must still run before it
 * reaches its next consumer of that event (INT64_MAX: none is left in its queue). */
static int64_t held_ahead(const SimRun *run, const uint32_t *cur, int q) {
  const SimKernel *sk = run->sk;
  int64_t n = 0;
  for (uint32_t i = cur[q]; i < sk->qoff[q + 1]; i++) {
    int64_t t;
    const SimOp *so = word_op(run, sk->words[i], &t);
    if (so->dropped_consumer)
      return n;
    n += so->delayed;
  }
  return INT64_MAX;
}

/* Static: the SM to run next, or -1 when none can run: of the SMs whose head task has all its
 * waits met, the one of highest priority whose head is no producer of the dropped event; else the
 * SM that such producers keep from its next consumer the least (releasing as few producers as
 * possible before a consumer runs), by priority among equals. */
static int det_pick_sm(const SimRun *run, const SimPct *p, const uint32_t *cur) {
  const SimKernel *sk = run->sk;
  int best = -1, held = -1;
  int64_t held_n = 0;
  for (int q = 0; q < run->sb->threads; q++) {
    if (cur[q] >= sk->qoff[q + 1])
      continue;
    int64_t t;
    const SimOp *so = word_op(run, sk->words[cur[q]], &t);
    if (!waits_met(run, so, t))
      continue;
    if (!so->delayed) {
      if (best < 0 || p->prio[q] > p->prio[best])
        best = q;
      continue;
    }
    int64_t n = held_ahead(run, cur, q);
    if (held < 0 || n < held_n || (n == held_n && p->prio[q] > p->prio[held])) {
      held = q;
      held_n = n;
    }
  }
  return best >= 0 ? best : held;
}

/* Static: the run is stuck. Records, as a timed-out wait would, the blocked queue head with the
 * smallest task number (every producer it lacks comes later in the kernel's order, or never) and
 * its first counter that is short. */
static void det_report_static(SimRun *run, const uint32_t *cur) {
  const MlkModelDesc *d = run->m->desc;
  const SimKernel *sk = run->sk;
  int bq = -1;
  int64_t bg = INT64_MAX;
  for (int q = 0; q < run->sb->threads; q++) {
    if (cur[q] >= sk->qoff[q + 1])
      continue;
    int64_t t;
    const SimOp *so = word_op(run, sk->words[cur[q]], &t);
    if (so->first + t < bg) {
      bg = so->first + t;
      bq = q;
    }
  }
  MlkTaskWord word = sk->words[cur[bq]];
  int64_t t;
  const SimOp *so = word_op(run, word, &t);
  for (int w = 0; w < so->nwaits; w++) {
    const MlkEventDesc *e = &d->events[so->waits[w]];
    int64_t idx = mlk_event_wait_index(e, t);
    uint32_t target = run->epoch * (uint32_t)mlk_event_start_value(e, idx);
    uint32_t seen = atomic_load(&run->sm->counters[e->base + idx]);
    if (!mlk_counter_reached(seen, target)) {
      atomic_store(&run->err_flag, 1u);
      run->err = (MlkDevError){1, (uint32_t)bq, MLK_TASK_OP(word), MLK_TASK_INDEX(word),
                               (uint32_t)so->waits[w], (uint32_t)idx, target, seen};
      return;
    }
  }
}

static mlk_status det_static(SimRun *run, SimPct *p) {
  const SimKernel *sk = run->sk;
  uint32_t *cur = MLK_CALLOC((size_t)run->sb->threads, sizeof *cur, "queue cursors");
  if (!cur)
    return MLK_ERR_NOMEM;
  for (int q = 0; q < run->sb->threads; q++)
    cur[q] = sk->qoff[q];
  uint64_t stalled = 0; /* with peers: when every SM began to wait on the other ranks, 0: none */
  for (int64_t step = 1;; step++) {
    int q = det_pick_sm(run, p, cur);
    int64_t drop = q >= 0 ? pct_change_at(p, step) : 0;
    if (drop) {
      p->prio[q] = drop;
      q = det_pick_sm(run, p, cur);
    }
    if (q < 0) {
      int left = 0;
      for (int i = 0; i < run->sb->threads; i++)
        left |= cur[i] < sk->qoff[i + 1];
      /* the other ranks of a world may still complete a counter: wait for them, to a deadline */
      if (left && run->sm->peers) {
        uint64_t now = now_ns();
        if (!stalled)
          stalled = now;
        if (now - stalled < run->sm->timeout_ns) {
          sleep_ns(20000);
          step--;
          continue;
        }
      }
      if (left)
        det_report_static(run, cur);
      break;
    }
    stalled = 0;
    MlkTaskWord word = sk->words[cur[q]++];
    uint64_t *rec = task_record(run, word);
    if (rec)
      rec[MLK_TRACE_START] = now_ns();
    if (exec_task(run, q, word, rec))
      break;
  }
  free(cur);
  return MLK_OK;
}

/* Dynamic: the index in the ready queue of the task to run next (highest priority, producers of
 * the dropped event last), or -1 when none is ready. */
static int64_t det_pick_ready(const SimRun *run, const SimPct *p) {
  int64_t best = -1, held = -1, bp = 0, hp = 0;
  for (int64_t i = 0; i < run->nready; i++) {
    int64_t t;
    const SimOp *so = word_op(run, run->sk->ready[i], &t);
    int64_t pr = p->prio[so->first + t];
    if (so->delayed ? held < 0 || pr > hp : best < 0 || pr > bp) {
      if (so->delayed) {
        held = i;
        hp = pr;
      } else {
        best = i;
        bp = pr;
      }
    }
  }
  return best >= 0 ? best : held;
}

static mlk_status det_dynamic(SimRun *run, SimPct *p) {
  SimKernel *sk = run->sk;
  for (int64_t step = 1;; step++) {
    int64_t i = det_pick_ready(run, p);
    int64_t drop = i >= 0 ? pct_change_at(p, step) : 0;
    if (drop) {
      int64_t t;
      const SimOp *so = word_op(run, sk->ready[i], &t);
      p->prio[so->first + t] = drop;
      i = det_pick_ready(run, p);
    }
    if (i < 0) {
      if (run->ndone < sk->ntasks)
        report_stall(run);
      break;
    }
    MlkTaskWord word = sk->ready[i];
    sk->ready[i] = sk->ready[--run->nready];
    uint64_t *rec = task_record(run, word);
    if (rec)
      rec[MLK_TRACE_START] = now_ns();
    /* SMs are interchangeable here: the trace spreads the steps over them. */
    if (exec_task(run, (int)((step - 1) % run->sb->threads), word, rec))
      break;
    run->ndone++;
  }
  return MLK_OK;
}

/* Runs the kernel on this thread, the SMs interleaved by the seeded PCT scheduler. */
static mlk_status det_run(SimRun *run) {
  SimPct p;
  int64_t n = run->dynamic ? run->sk->ntasks : run->sb->threads;
  if (pct_init(run, &p, n, run->sk->ntasks))
    return MLK_ERR_NOMEM;
  mlk_status st = run->dynamic ? det_dynamic(run, &p) : det_static(run, &p);
  free(p.prio);
  return st;
}

/* ---- vtable ---- */

static double sim_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static mlk_status sim_run_inner(mlk_model *m, int kernel, uint32_t epoch, MlkDevError *err,
                                uint64_t *trace);

/* No deadline: the simulator sees a stuck run as such (timeout_ns is the GPU's). */
static mlk_status sim_run(mlk_model *m, int kernel, uint32_t epoch, uint64_t timeout_ns,
                          MlkDevError *err, double *ms, uint64_t *trace) {
  SimModel *sm = m->impl;
  if (sm->peers) {
    /* a rank of a world with in-kernel allreduces: other ranks complete some of its counters, so
     * a run that waits is stuck only at the deadline; the dynamic schedule makes tasks ready
     * from local notifies, and exploration replays one rank alone: neither can serve */
    const SimBackend *sb = m->be->impl;
    if (sb->explore > 1 || sb->schedule == MLK_SIM_DYNAMIC ||
        (sb->schedule == MLK_SIM_AS_COMPILED && m->desc->kernels[kernel].schedule == MLK_SCHED_DYNAMIC))
      return mlk_set_error(MLK_ERR_INVALID, "megakernel '%s' of model '%s' all-reduces inside the "
                           "megakernel: the simulator runs it with the static schedule and one "
                           "schedule per run", m->desc->kernels[kernel].name, m->desc->name);
    sm->timeout_ns = timeout_ns;
    sm->deadline_ns = now_ns() + timeout_ns;
  }
  double t0 = ms ? sim_now_ms() : 0;
  mlk_status st = sim_run_inner(m, kernel, epoch, err, trace);
  if (ms)
    *ms = sim_now_ms() - t0;
  return st;
}

static mlk_status init_sync(SimRun *run) {
  pthread_condattr_t ca;
  int rc = pthread_condattr_init(&ca);
  if (!rc && !(rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC)))
    rc = pthread_cond_init(&run->cv, &ca);
  pthread_condattr_destroy(&ca);
  if (rc)
    return MLK_ERROR_AT(MLK_ERR_NOMEM, "pthread_cond_init(ready queue) failed: %s", strerror(rc));
  if ((rc = pthread_mutex_init(&run->mu, NULL))) {
    pthread_cond_destroy(&run->cv);
    return MLK_ERROR_AT(MLK_ERR_NOMEM, "pthread_mutex_init(ready queue) failed: %s", strerror(rc));
  }
  return MLK_OK;
}

/* Runs the kernel on a host thread per SM. */
static mlk_status threaded_run(SimRun *run) {
  const SimBackend *sb = run->sb;
  mlk_status st = MLK_OK;
  if (run->dynamic && (st = init_sync(run)))
    return st;
  SimThread *th = MLK_CALLOC((size_t)sb->threads, sizeof *th, "simulator threads");
  pthread_t *tid = th ? MLK_CALLOC((size_t)sb->threads, sizeof *tid, "simulator thread ids") : NULL;
  if (!tid)
    st = MLK_ERR_NOMEM;
  /* Every thread counts as running from the start, so that none looks stuck before all began. */
  for (int q = 0; q < sb->threads && st == MLK_OK; q++) {
    th[q].run = run;
    th[q].queue = q;
    /* Reproducible per (seed, queue, epoch), different across runs so that epochs see new orders. */
    th[q].rng =
        (sb->seed ^ ((uint64_t)(q + 1) * 0x9e3779b97f4a7c15u) ^ ((uint64_t)run->epoch << 40)) | 1u;
    atomic_init(&th[q].state, TH_RUNNING);
    atomic_init(&th[q].wait_word, 0u);
    atomic_init(&th[q].wait_event, 0);
    atomic_init(&th[q].wait_index, 0);
  }
  run->threads = th;
  atomic_init(&run->running, (uint64_t)sb->threads);
  int started = 0;
  for (int q = 0; q < sb->threads && st == MLK_OK; q++) {
    int rc = pthread_create(&tid[q], NULL, run->dynamic ? dynamic_worker : static_worker, &th[q]);
    if (rc) {
      st = MLK_ERROR_AT(MLK_ERR_NOMEM, "pthread_create(simulator thread %d of %d) failed: %s", q,
                        sb->threads, strerror(rc));
      sim_abort(run);
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
  if (run->dynamic) {
    pthread_mutex_destroy(&run->mu);
    pthread_cond_destroy(&run->cv);
  }
  return st;
}

/* One run of the kernel under one schedule. */
static mlk_status sim_run_once(mlk_model *m, int kernel, uint32_t epoch, MlkDevError *err,
                               uint64_t *trace) {
  const SimBackend *sb = m->be->impl;
  SimModel *sm = m->impl;
  if (++sm->serial == 0) /* 0 is what the stamps start as */
    sm->serial = 1;
  SimRun *run = MLK_CALLOC(1, sizeof *run, "simulator run");
  if (!run)
    return MLK_ERR_NOMEM;
  *run = (SimRun){.m = m, .sb = sb, .sm = sm, .sk = &sm->kernels[kernel], .kernel = kernel,
                  .epoch = epoch, .serial = sm->serial, .trace = trace};
  mlk_sim_schedule sched = sb->schedule;
  if (sched == MLK_SIM_AS_COMPILED)
    sched = m->desc->kernels[kernel].schedule == MLK_SCHED_DYNAMIC ? MLK_SIM_DYNAMIC : MLK_SIM_STATIC;
  run->dynamic = sched == MLK_SIM_DYNAMIC;
  run->threaded = sb->mode == MLK_SIM_THREADED;
  atomic_init(&run->abort, 0);
  atomic_init(&run->drop_checked, 0u);
  atomic_init(&run->hold_grant, 0);
  atomic_init(&run->err_flag, 0u);
  atomic_init(&run->failed, 0);
  /* The pop order (threaded, dynamic) or the whole schedule (deterministic): reproducible per
   * (seed, run serial), different from run to run. */
  run->rng = mix64(sb->seed ^ mix64(run->serial)) | 1u;
  if (run->dynamic)
    dynamic_init(run);
  mlk_status st = run->threaded ? threaded_run(run) : det_run(run);
  /* A checker failure is the cause of whatever else went wrong after it. */
  if (st == MLK_OK && atomic_load(&run->failed))
    st = mlk_set_error(run->fail_st, "%s", run->fail_msg);
  else if (st == MLK_OK && atomic_load(&run->err_flag))
    *err = run->err;
  free(run);
  return st;
}

/* The model's state a run starts from: every buffer and counter (exploration). */
typedef struct SimSnapshot {
  char *bytes;   /* the buffers, one after the other (mlk_model.cap bytes each) */
  uint32_t *counters;
} SimSnapshot;

static mlk_status snapshot_take(const mlk_model *m, SimSnapshot *s) {
  const SimModel *sm = m->impl;
  size_t total = 0;
  for (int i = 0; i < m->desc->ntensors; i++)
    total += m->cap[i];
  s->bytes = MLK_CALLOC(total ? total : 1, 1, "exploration snapshot");
  s->counters = s->bytes ? MLK_CALLOC((size_t)m->desc->ncounters + 1, sizeof *s->counters,
                                      "exploration snapshot") : NULL;
  if (!s->counters) {
    free(s->bytes);
    return MLK_ERR_NOMEM;
  }
  size_t off = 0;
  for (int i = 0; i < m->desc->ntensors; off += m->cap[i], i++)
    memcpy(s->bytes + off, sm->bufs[i], m->cap[i]);
  for (int64_t c = 0; c < m->desc->ncounters; c++)
    s->counters[c] = atomic_load_explicit(&sm->counters[c], memory_order_relaxed);
  return MLK_OK;
}

static void snapshot_restore(mlk_model *m, const SimSnapshot *s) {
  SimModel *sm = m->impl;
  size_t off = 0;
  for (int i = 0; i < m->desc->ntensors; off += m->cap[i], i++)
    memcpy(sm->bufs[i], s->bytes + off, m->cap[i]);
  for (int64_t c = 0; c < m->desc->ncounters; c++)
    atomic_store_explicit(&sm->counters[c], s->counters[c], memory_order_relaxed);
}

static void snapshot_free(SimSnapshot *s) {
  free(s->bytes);
  free(s->counters);
}

/* Fails (MLK_ERR_INVALID) when the buffers differ from `first`, the values schedule 0 left. */
static mlk_status compare_schedules(const mlk_model *m, int kernel, const SimSnapshot *first,
                                    int schedule, int nschedules) {
  const SimModel *sm = m->impl;
  const MlkModelDesc *d = m->desc;
  size_t off = 0;
  for (int i = 0; i < d->ntensors; off += m->cap[i], i++) {
    const unsigned char *a = (const unsigned char *)first->bytes + off, *b = sm->bufs[i];
    if (!memcmp(a, b, m->cap[i]))
      continue;
    size_t es = mlk_dtype_size(d->tensors[i].dtype), e = 0;
    while (!memcmp(a + e * es, b + e * es, es))
      e++;
    return mlk_set_error(MLK_ERR_INVALID, "race in megakernel '%s': schedules 1 and %d of %d left "
                         "different values in '%s' (element %zu): an order the events allow changes "
                         "the result, so a dependency is missing", d->kernels[kernel].name,
                         schedule + 1, nschedules, d->tensors[i].name, e);
  }
  return MLK_OK;
}

/* The deterministic mode's exploration: the same run under `explore` schedules (each a new serial,
 * so a new interleaving), every one from the state the run started from, stopping at the first that
 * fails (the checker, a stuck run) or leaves other values than the first (a race the checker did not
 * model, or with the checker off). The model is left as the last schedule left it. */
static mlk_status sim_run_explore(mlk_model *m, int kernel, uint32_t epoch, MlkDevError *err,
                                  uint64_t *trace, int explore) {
  SimSnapshot start, first;
  mlk_status st = snapshot_take(m, &start);
  if (st)
    return st;
  memset(&first, 0, sizeof first);
  for (int i = 0; i < explore && st == MLK_OK && !err->flag; i++) {
    if (i > 0)
      snapshot_restore(m, &start);
    st = sim_run_once(m, kernel, epoch, err, trace);
    if (st == MLK_ERR_INVALID)
      st = mlk_set_error(st, "%s (schedule %d of %d explored in this run)", mlk_last_error(), i + 1,
                         explore);
    else if (st == MLK_OK && !err->flag)
      st = i == 0 ? snapshot_take(m, &first) : compare_schedules(m, kernel, &first, i, explore);
  }
  snapshot_free(&start);
  snapshot_free(&first);
  return st;
}

static mlk_status sim_run_inner(mlk_model *m, int kernel, uint32_t epoch, MlkDevError *err,
                                uint64_t *trace) {
  const SimBackend *sb = m->be->impl;
  if (sb->explore > 1)
    return sim_run_explore(m, kernel, epoch, err, trace, sb->explore);
  return sim_run_once(m, kernel, epoch, err, trace);
}

static mlk_status sim_upload(mlk_model *m, int tensor, const void *src, size_t bytes) {
  SimModel *sm = m->impl;
  memcpy(sm->bufs[tensor], src, bytes);
  return MLK_OK;
}

static mlk_status sim_upload_range(mlk_model *m, int tensor, size_t offset, const void *src,
                                   size_t bytes) {
  SimModel *sm = m->impl;
  memcpy((char *)sm->bufs[tensor] + offset, src, bytes);
  return MLK_OK;
}

static mlk_status sim_copy_range(mlk_model *m, int tensor, size_t dst, size_t src, size_t bytes) {
  SimModel *sm = m->impl;
  memmove((char *)sm->bufs[tensor] + dst, (char *)sm->bufs[tensor] + src, bytes);
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
  for (int64_t i = 0; i < sm->ncounters; i++)
    atomic_store_explicit(&sm->counters[i], 0u, memory_order_relaxed);
  return MLK_OK;
}

/* The address of the first arrival counter: after the event counters (the simulator has no
 * tickets). */
static uint64_t sim_arrive_addr(const SimModel *sm, const MlkModelDesc *d) {
  return (uint64_t)(uintptr_t)(sm->counters + d->ncounters);
}

static void sim_model_fini(mlk_model *m) {
  SimModel *sm = m->impl;
  if (!sm)
    return;
  const MlkModelDesc *d = m->desc;
  if (sm->bufs)
    for (int i = 0; i < d->ntensors; i++)
      free(sm->bufs[i]);
  if (sm->kernels)
    for (int k = 0; k < d->nkernels; k++) {
      SimKernel *sk = &sm->kernels[k];
      free(sk->recs);
      free(sk->syncs);
      free(sk->qoff);
      free(sk->words);
      free((void *)sk->started);
      free((void *)sk->done);
      free(sk->pending);
      free(sk->ready);
    }
  if (sm->ops)
    for (int o = 0; o < d->nops; o++) {
      free(sm->ops[o].raw);
      free(sm->ops[o].war);
      free(sm->ops[o].ww);
    }
  free(sm->bufs);
  free((void *)sm->counters);
  free(sm->scratch);
  free(sm->peers);
  free(sm->kernels);
  free(sm->ops);
  free(sm->event_list);
  if (sm->waiters)
    for (int i = 0; i < d->nevents; i++)
      free(sm->waiters[i]);
  free(sm->waiters);
  free(sm->nwaiters);
  free(sm);
  m->impl = NULL;
}

/* Every op's lists of the events it waits on and notifies (SimOp.waits, .notifies, carved out of
 * sm->event_list: copies of the desc's own lists, MlkOpDesc.wait0, ...), and each event's
 * waiting ops (sm->waiters): everything else in the simulator, both modes and the stall reports,
 * reads the events of an op through these lists. The dropped event (`drop`, -1: none) is left out
 * of its consumers' waits and marks its notifiers and waiters. Returns -1 when out of memory. */
static int build_op_events(const MlkModelDesc *d, SimModel *sm, int drop) {
  int *next = sm->event_list;
  for (int o = 0; o < d->nops; o++) {
    const MlkOpDesc *op = &d->ops[o];
    SimOp *so = &sm->ops[o];
    so->waits = next;
    for (int r = op->wait0; r < op->wait0 + op->nwaits; r++) {
      int ev = d->event_refs[r];
      if (ev == drop)
        so->dropped_consumer = 1;
      else
        so->waits[so->nwaits++] = ev;
      sm->nwaiters[ev]++;
    }
    next += so->nwaits;
    so->notifies = next;
    for (int r = op->notify0; r < op->notify0 + op->nnotifies; r++) {
      int ev = d->event_refs[r];
      if (ev == drop)
        so->delayed = 1;
      so->notifies[so->nnotifies++] = ev;
    }
    next += so->nnotifies;
  }
  for (int i = 0; i < d->nevents; i++) {
    if (!(sm->waiters[i] = MLK_CALLOC((size_t)(sm->nwaiters[i] ? sm->nwaiters[i] : 1),
                                      sizeof *sm->waiters[i], "event waiters")))
      return -1;
    sm->nwaiters[i] = 0;
  }
  for (int o = 0; o < d->nops; o++)
    for (int r = d->ops[o].wait0; r < d->ops[o].wait0 + d->ops[o].nwaits; r++) {
      int ev = d->event_refs[r];
      if (ev != drop)
        sm->waiters[ev][sm->nwaiters[ev]++] = o;
    }
  return 0;
}

static mlk_status sim_model_init(mlk_model *m) {
  const MlkModelDesc *d = m->desc;
  const SimBackend *sb = m->be->impl;
  if (sb->drop_event >= d->nevents)
    return mlk_set_error(MLK_ERR_INVALID, "simulator option drop_event = %d (event %d) is out of range: "
                         "model '%s' has %d events", sb->drop_event + 1, sb->drop_event, d->name,
                         d->nevents);
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
    if (!(sm->bufs[i] = MLK_CALLOC(m->cap[i], 1, what)))
      goto fail;
  }
  sm->ncounters = d->ncounters + mlk_program_arrivals(d);
  if (!(sm->counters = MLK_CALLOC((size_t)sm->ncounters + 1, sizeof *sm->counters, "event counters")))
    goto fail;
  for (int64_t i = 0; i < sm->ncounters; i++)
    atomic_init(&sm->counters[i], 0u);
  int64_t scratch_bytes = mlk_program_scratch_bytes(d);
  if (scratch_bytes && !(sm->scratch = MLK_CALLOC((size_t)scratch_bytes, 1, "split op partials")))
    goto fail;
  /* the ops' lists may share entries of event_refs: room for each op's own copy */
  size_t nrefs = 0, nev = (size_t)(d->nevents ? d->nevents : 1);
  for (int o = 0; o < d->nops; o++)
    nrefs += (size_t)d->ops[o].nwaits + (size_t)d->ops[o].nnotifies;
  if (!(sm->ops = MLK_CALLOC((size_t)d->nops, sizeof *sm->ops, "op events")) ||
      !(sm->event_list = MLK_CALLOC(nrefs ? nrefs : 1, sizeof *sm->event_list, "event lists")) ||
      !(sm->waiters = MLK_CALLOC(nev, sizeof *sm->waiters, "event waiters")) ||
      !(sm->nwaiters = MLK_CALLOC(nev, sizeof *sm->nwaiters, "event waiter counts")) ||
      build_op_events(d, sm, sb->drop_event))
    goto fail;
  for (int o = 0; o < d->nops; o++)
    mlk_op_accesses(d, o, sm->ops[o].reads, &sm->ops[o].nreads, &sm->ops[o].write);
  if (!(sm->kernels = MLK_CALLOC((size_t)d->nkernels, sizeof *sm->kernels, "kernel table")))
    goto fail;
  for (int k = 0; k < d->nkernels; k++) {
    const MlkKernelDesc *kd = &d->kernels[k];
    SimKernel *sk = &sm->kernels[k];
    if ((st = mlk_sched_build(d, k, sb->threads, &sk->qoff, &sk->words, &sk->ntasks)))
      goto fail;
    st = MLK_ERR_NOMEM;
    size_t nsyncs = (size_t)mlk_program_nsyncs(d, k);
    uint64_t *addr = MLK_CALLOC((size_t)(d->ntensors ? d->ntensors : 1), sizeof *addr, "tensor addresses");
    if (!addr || !(sk->recs = MLK_CALLOC((size_t)kd->nops, sizeof *sk->recs, "op records")) ||
        !(sk->syncs = MLK_CALLOC(nsyncs ? nsyncs : 1, sizeof *sk->syncs, "op waits and notifies"))) {
      free(addr);
      goto fail;
    }
    for (int t = 0; t < d->ntensors; t++)
      addr[t] = (uint64_t)(uintptr_t)sm->bufs[t];
    mlk_program_kernel(d, k, addr, 0, sim_arrive_addr(sm, d), (uint64_t)(uintptr_t)sm->scratch,
                       sk->recs, sk->syncs);
    free(addr);
    int64_t first = 0;
    for (int o = kd->first_op; o < kd->first_op + kd->nops; o++) {
      sm->ops[o].kernel = k;
      sm->ops[o].first = first;
      first += d->ops[o].ntasks;
    }
    size_t n = (size_t)sk->ntasks;
    st = MLK_ERR_NOMEM;
    if (!(sk->started = MLK_CALLOC(n, sizeof *sk->started, "checker stamps")) ||
        !(sk->done = MLK_CALLOC(n, sizeof *sk->done, "checker stamps")) ||
        !(sk->pending = MLK_CALLOC(n, sizeof *sk->pending, "ready counts")) ||
        !(sk->ready = MLK_CALLOC(n, sizeof *sk->ready, "ready queue")))
      goto fail;
    for (size_t i = 0; i < n; i++) {
      atomic_init(&sk->started[i], 0u);
      atomic_init(&sk->done[i], 0u);
    }
    if (sb->check && (st = build_links(d, sm, k)))
      goto fail;
  }
  return MLK_OK;
fail:
  sim_model_fini(m);
  return st;
}

static void sim_backend_free(mlk_backend *be) { free(be->impl); }

static uint64_t sim_tensor_addr(mlk_model *m, int tensor) {
  return (uint64_t)(uintptr_t)((SimModel *)m->impl)->bufs[tensor];
}

static uint64_t sim_counters_addr(mlk_model *m) {
  return (uint64_t)(uintptr_t)((SimModel *)m->impl)->counters;
}

/* The peer area (host addresses), and the records rebuilt to point into it. */
static mlk_status sim_set_peers(mlk_model *m, const uint64_t *words, size_t n) {
  SimModel *sm = m->impl;
  const MlkModelDesc *d = m->desc;
  uint64_t *p = MLK_CALLOC(n ? n : 1, sizeof *p, "peer area");
  uint64_t *addr = MLK_CALLOC((size_t)(d->ntensors ? d->ntensors : 1), sizeof *addr, "tensor addresses");
  if (!p || !addr) {
    free(p);
    free(addr);
    return MLK_ERR_NOMEM;
  }
  memcpy(p, words, n * sizeof *p);
  free(sm->peers);
  sm->peers = p;
  for (int t = 0; t < d->ntensors; t++)
    addr[t] = (uint64_t)(uintptr_t)sm->bufs[t];
  for (int k = 0; k < d->nkernels; k++)
    mlk_program_kernel(d, k, addr, (uint64_t)(uintptr_t)p, sim_arrive_addr(sm, d),
                       (uint64_t)(uintptr_t)sm->scratch, sm->kernels[k].recs, sm->kernels[k].syncs);
  free(addr);
  return MLK_OK;
}

static const MlkBackendOps sim_ops = {
    .backend_free = sim_backend_free,
    .model_init = sim_model_init,
    .model_fini = sim_model_fini,
    .upload = sim_upload,
    .upload_range = sim_upload_range,
    .copy_range = sim_copy_range,
    .download = sim_download,
    .fill = sim_fill,
    .zero_counters = sim_zero_counters,
    .run = sim_run,
    .tensor_addr = sim_tensor_addr,
    .counters_addr = sim_counters_addr,
    .set_peers = sim_set_peers,
};

/* MLK_SIM_MODE: deterministic or threaded (unset or empty: deterministic). */
static mlk_status env_mode(mlk_sim_mode *mode) {
  const char *v = getenv("MLK_SIM_MODE");
  if (!v || !*v || !strcmp(v, "deterministic"))
    *mode = MLK_SIM_DETERMINISTIC;
  else if (!strcmp(v, "threaded"))
    *mode = MLK_SIM_THREADED;
  else
    return mlk_set_error(MLK_ERR_INVALID, "environment variable MLK_SIM_MODE='%s' is not deterministic "
                         "or threaded", v);
  return MLK_OK;
}

mlk_status mlk_sim_backend_create(const mlk_sim_options *opt, mlk_backend **out) {
  mlk_sim_options o;
  memset(&o, 0, sizeof o);
  if (opt)
    o = *opt;
  if (o.threads < 0 || o.threads > 4096)
    return mlk_set_error(MLK_ERR_INVALID, "simulator threads must be in [1, 4096] (0: default), got %d",
                         o.threads);
  if (o.max_delay_us < 0 || o.max_delay_us > 1000000)
    return mlk_set_error(MLK_ERR_INVALID, "simulator max_delay_us must be in [0, 1000000], got %d",
                         o.max_delay_us);
  if ((unsigned)o.schedule > MLK_SIM_DYNAMIC)
    return mlk_set_error(MLK_ERR_INVALID, "simulator schedule %d is not as compiled (0), static (1) or "
                         "dynamic (2)", (int)o.schedule);
  if (o.drop_event < 0)
    return mlk_set_error(MLK_ERR_INVALID, "simulator drop_event must be >= 0 (event e is e + 1, 0: none), "
                         "got %d", o.drop_event);
  if ((unsigned)o.mode > MLK_SIM_THREADED)
    return mlk_set_error(MLK_ERR_INVALID, "simulator mode %d is not default (0), deterministic (1) or "
                         "threaded (2)", (int)o.mode);
  if (o.pct_depth < 0 || o.pct_depth > SIM_MAX_PCT_DEPTH)
    return mlk_set_error(MLK_ERR_INVALID, "simulator pct_depth must be in [1, %d] (0: default), got %d",
                         SIM_MAX_PCT_DEPTH, o.pct_depth);
  if (o.explore < 0 || o.explore > SIM_MAX_EXPLORE)
    return mlk_set_error(MLK_ERR_INVALID, "simulator explore must be in [1, %d] (0: default), got %d",
                         SIM_MAX_EXPLORE, o.explore);
  int64_t v;
  mlk_status st;
  if (o.mode == MLK_SIM_MODE_DEFAULT && (st = env_mode(&o.mode)))
    return st;
  /* Delays reorder real threads; the deterministic mode's order is its scheduler's alone. */
  if (o.max_delay_us && o.mode != MLK_SIM_THREADED)
    return mlk_set_error(MLK_ERR_INVALID, "simulator max_delay_us = %d: random delays apply to the "
                         "threaded mode only (mode = MLK_SIM_THREADED or MLK_SIM_MODE=threaded)",
                         o.max_delay_us);
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
  if (o.pct_depth == 0) {
    if ((st = mlk_env_int("MLK_SIM_PCT_DEPTH", 1, SIM_MAX_PCT_DEPTH, SIM_DEFAULT_PCT_DEPTH, &v)))
      return st;
    o.pct_depth = (int)v;
  }
  if (o.explore == 0) {
    if ((st = mlk_env_int("MLK_SIM_EXPLORE", 1, SIM_MAX_EXPLORE, 1, &v)))
      return st;
    o.explore = (int)v;
  }
  /* Threads cannot be rewound to replay a run from its start. */
  if (o.explore > 1 && o.mode != MLK_SIM_DETERMINISTIC)
    return mlk_set_error(MLK_ERR_INVALID, "simulator explore = %d: exploring schedules needs the "
                         "deterministic mode", o.explore);
  int check = !o.no_check;
  if (check) {
    if ((st = mlk_env_int("MLK_SIM_CHECK", 0, 1, 1, &v)))
      return st;
    check = (int)v;
  }
  mlk_backend *be = MLK_CALLOC(1, sizeof *be, "backend");
  SimBackend *sb = be ? MLK_CALLOC(1, sizeof *sb, "simulator backend") : NULL;
  if (!sb) {
    free(be);
    return MLK_ERR_NOMEM;
  }
  int det = o.mode == MLK_SIM_DETERMINISTIC;
  sb->threads = o.threads;
  sb->seed = o.seed;
  sb->mode = o.mode;
  sb->pct_depth = o.pct_depth;
  sb->explore = o.explore;
  sb->max_delay_us = o.max_delay_us;
  sb->schedule = o.schedule;
  sb->check = check;
  sb->drop_event = o.drop_event - 1;
  be->ops = &sim_ops;
  be->is_gpu = 0;
  be->device = -1;
  be->impl = sb;
  /* Both modes see a stuck run as such, with no deadline. */
  be->stall_exact = 1;
  /* "CPU simulator (8 SMs, deterministic, seed 1)" or "CPU simulator (8 threads, seed 1)", with
   * whatever is not a default after the seed. */
  size_t len = (size_t)snprintf(be->name, sizeof be->name, "CPU simulator (%d %s, seed %llu",
                                o.threads, det ? "SMs, deterministic" : "threads",
                                (unsigned long long)o.seed);
  if (det && o.pct_depth != SIM_DEFAULT_PCT_DEPTH && len < sizeof be->name)
    len += (size_t)snprintf(be->name + len, sizeof be->name - len, ", PCT depth %d", o.pct_depth);
  if (o.explore > 1 && len < sizeof be->name)
    len += (size_t)snprintf(be->name + len, sizeof be->name - len, ", %d schedules per run",
                            o.explore);
  if (o.max_delay_us && len < sizeof be->name)
    len += (size_t)snprintf(be->name + len, sizeof be->name - len, ", delays up to %d us",
                            o.max_delay_us);
  if (o.schedule != MLK_SIM_AS_COMPILED && len < sizeof be->name)
    len += (size_t)snprintf(be->name + len, sizeof be->name - len, ", %s schedule",
                            o.schedule == MLK_SIM_STATIC ? "static" : "dynamic");
  if (!check && len < sizeof be->name)
    len += (size_t)snprintf(be->name + len, sizeof be->name - len, ", checker off");
  if (o.drop_event && len < sizeof be->name)
    len += (size_t)snprintf(be->name + len, sizeof be->name - len, ", dropping event %d",
                            o.drop_event - 1);
  if (len < sizeof be->name)
    snprintf(be->name + len, sizeof be->name - len, ")");
  *out = be;
  return MLK_OK;
}
