/* sync.c: event-tensor waits and notifies on the device, with the deadline watchdog.
 *
 * A counter is never reset: run number `epoch` waits for epoch * start_value (see mlk_desc.h).
 * notify is a release pattern (one release fence, then relaxed reductions on every counter the
 * task notifies; the one-way fence.release.gpu, which unlike fence.acq_rel.gpu leaves the SM's L1
 * valid: 1.9-2.2% off a batch-1 step, H100), wait an acquire poll: together with the block
 * barriers on both sides, every write of a producer task happens-before every read of a consumer
 * task. One fence for all of a task's
 * counters rather than a release reduction each (a Llama layer's output projection notifies 3
 * counters, its down projection 4): the cheaper form of the same ordering, though on the H200 it
 * measured no faster (docs/performance.md). An event
 * whose notifies reach every rank of a world (MlkDevSync.ranks > 1: an in-kernel allreduce's
 * operand) is notified on each rank's counter, and waited on, at system scope: the ranks are
 * other GPUs.
 */
#include "mlk_tiles.h"

extern MLK_SHARED float mlk_tile_smem[MLK_MATVEC_MAX_K] __attribute__((aligned(16)));

/* Thread 0 only. Returns 1 when the counter reached target, 0 on timeout or a failure elsewhere. */
static int poll(const uint32_t *counter, uint32_t target, uint64_t timeout_ns, MlkDevError *err,
                uint32_t op, uint32_t task, uint32_t event, uint32_t index, int sys) {
#define LD(p) (sys ? mlk_ld_acquire_sys(p) : mlk_ld_acquire(p))
  uint32_t v = LD(counter);
  if (mlk_counter_reached(v, target))
    return 1;
  uint64_t start = mlk_globaltimer();
  /* Exponential back-off from 32 ns to the knob's cap, or, with a cap of 0 (the default: a decode
   * step crosses ~130 op boundaries one after the other, and polling without sleeping measured
   * faster at every batch), polls without sleeping. */
  const uint32_t cap = mlk_dev_tune.poll_backoff_ns;
  uint32_t ns = cap < 32 ? cap : 32;
  for (;;) {
    if (ns) {
      __nvvm_nanosleep(ns);
      ns = 2 * ns < cap ? 2 * ns : cap;
    }
    v = LD(counter);
    if (mlk_counter_reached(v, target))
      return 1;
    if (mlk_ld_volatile(&err->flag))
      return 0;
    if (mlk_globaltimer() - start > timeout_ns) {
      if (__atomic_exchange_n(&err->flag, 1u, __ATOMIC_RELAXED) == 0) {
        err->block = __nvvm_read_ptx_sreg_ctaid_x();
        err->op = op;
        err->task = task;
        err->event = event;
        err->index = index;
        err->expected = target;
        err->observed = v;
      }
      return 0;
    }
  }
#undef LD
}

void mlk_dev_prefetch_record(const MlkDevOp *rec) {
  /* lane 0 of the second warp: thread 0 polls the counters meanwhile */
  if (mlk_tid() != 32)
    return;
  for (uint32_t off = 0; off < sizeof *rec; off += 128)
    mlk_prefetch_l1((const char *)rec + off);
}

int mlk_dev_task_wait(const MlkDevOp *rec, const MlkDevSync *syncs, uint32_t *counters,
                      uint32_t op, uint32_t task, uint32_t epoch, uint64_t timeout_ns,
                      MlkDevError *err) {
  int ok = 1;
  if (mlk_tid() == 0) {
    const MlkDevSync *w = mlk_dev_op_syncs(rec, syncs);
    uint32_t nw = rec->nwaits;
    for (uint32_t i = 0; i < nw && ok; i++) {
      const MlkDevSync *e = &w[i];
      int64_t idx = mlk_event_wait_index(e, task);
      uint32_t target = epoch * (uint32_t)mlk_event_start_value(e, idx);
      ok = poll(counters + e->base + idx, target, timeout_ns, err, op, task, e->event, (uint32_t)idx,
                e->ranks > 1);
    }
  }
  /* bar.red.and: a barrier that also tells every thread whether thread 0 succeeded. */
  return __nvvm_bar0_and(ok);
}

void mlk_dev_barrier(void) { __nvvm_barrier_sync(0); }

/* One notify of counters [lo, hi] of event `e` (thread 0, after the fence). */
static void notify_counters(const MlkDevSync *e, uint32_t *counters, int64_t lo, int64_t hi) {
  if (e->ranks > 1) { /* this counter on every rank */
    const uint64_t *peers = (const uint64_t *)(uintptr_t)e->peers;
    for (int64_t r = 0; r < e->ranks; r++)
      for (int64_t c = lo; c <= hi; c++)
        __asm__ volatile("red.relaxed.sys.add.u32 [%0], 1;"
                         :
                         : "l"((uint32_t *)(uintptr_t)peers[r] + e->base + c)
                         : "memory");
    return;
  }
  for (int64_t c = lo; c <= hi; c++)
    mlk_red_relaxed_gpu(counters + e->base + c, 1);
}

void mlk_dev_task_notify(const MlkDevOp *rec, const MlkDevSync *syncs, uint32_t *counters,
                         MlkTaskDone done) {
  if (mlk_tid() != 0)
    return;
  const MlkDevSync *s = mlk_dev_op_syncs(rec, syncs) + rec->nwaits;
  uint32_t nn = rec->nnotifies, t0 = MLK_TASK_DONE_FIRST(done), t1 = t0 + MLK_TASK_DONE_COUNT(done);
  if (nn == 0 || t0 == t1) /* nothing, or a split matvec's task whose group another ends */
    return;
  /* the fence's scope: the system when a counter lives on other GPUs too */
  int sys = 0;
  for (uint32_t i = 0; i < nn; i++)
    sys |= s[i].ranks > 1;
  if (sys)
    __asm__ volatile("fence.acq_rel.sys;" ::: "memory");
  else
    mlk_fence_release_gpu();
  for (uint32_t i = 0; i < nn; i++) {
    /* An ALL event's one counter takes the range's task count in one reduction: no index map, no
     * loop. This code runs after the fence, on the decode chain at every op boundary, and most
     * events between matvecs are ALL: the range walk it replaces cost a batch-1 step 2-3% (H100,
     * docs/performance.md, twenty-eighth session). */
    if (s[i].map == MLK_MAP_ALL && s[i].ranks <= 1) {
      mlk_red_relaxed_gpu(counters + s[i].base, t1 - t0);
      continue;
    }
    for (uint32_t t = t0; t < t1; t++) {
      int64_t lo, hi;
      mlk_event_notify_range(&s[i], t, &lo, &hi);
      notify_counters(&s[i], counters, lo, hi);
    }
  }
}

/* ---- timeline trace (MLK_TRACE): thread 0 stamps %globaltimer into the task's record ---- */

void mlk_dev_trace_begin(uint64_t *trace, uint32_t slot, uint64_t word) {
  if (!trace || mlk_tid() != 0)
    return;
  uint64_t *r = trace + (uint64_t)slot * MLK_TRACE_WORDS;
  r[MLK_TRACE_START] = mlk_globaltimer();
  r[MLK_TRACE_BLOCK] = __nvvm_read_ptx_sreg_ctaid_x();
  r[MLK_TRACE_TASK] = word;
  mlk_stream_trace_task(r);
}

void mlk_dev_trace_stamp(uint64_t *trace, uint32_t slot, uint32_t field) {
  if (trace && mlk_tid() == 0)
    trace[(uint64_t)slot * MLK_TRACE_WORDS + field] = mlk_globaltimer();
}

/* ---- dynamic schedule: the next ticket of a shared counter, the same in every thread ---- */

uint32_t mlk_dev_ticket(uint32_t *ticket) {
  /* The last word of the tiles' shared buffer carries the ticket to the other threads: the
   * previous task's tile is done with it (the skeleton's barrier after every tile), and the second
   * barrier keeps the next tile from overwriting it before every thread has read it. */
  MLK_SHARED uint32_t *slot = (MLK_SHARED uint32_t *)&mlk_tile_smem[MLK_MATVEC_MAX_K - 1];
  if (mlk_tid() == 0)
    *slot = __atomic_fetch_add(ticket, 1u, __ATOMIC_RELAXED);
  __nvvm_barrier_sync(0);
  uint32_t t = *slot;
  __nvvm_barrier_sync(0);
  return t;
}
