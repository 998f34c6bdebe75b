/* stream.c: the weight stream. A block's matvec weights flow into shared memory through a ring of
 * slots, copied by the bulk copy engine ahead of the tasks that read them.
 *
 * Weights depend on no event, so nothing stops a block from loading the weights of its next
 * matvec tasks while it waits for their inputs or runs other tiles. Thread 0 is the loader: it
 * reads the block's stream list (the matvec tasks of its queue, in order: their first weight row's
 * address, rows and k; the runtime builds it with the queues, mlk_desc.h MLK_STREAM_ENTRY) ahead of
 * the task being run, and for every task the stream takes (mlk_stream_takes) issues
 * `cp.async.bulk` copies of its weight rows, a chunk of whole rows per slot, each completing on
 * the slot's mbarrier, for as long as slots are free. One list entry per task, the next one's line
 * prefetched into L1: walking the queue and the op records instead cost the loader a chain of L2
 * round trips per task (~1 us each under a decode step's load), while the block's next release
 * barrier waited for it. The matvec tile of such a task takes its chunks in the same order
 * (mlk_stream_wait), and frees each slot when every thread is done with it (mlk_stream_release),
 * which lets the loader go on. Loader and tile agree on which tasks are streamed and how they are cut because both ask
 * the same functions, of values that do not change during a launch.
 *
 * A task's rows are consecutive, so its weights are one contiguous range, and a chunk of
 * floor(MLK_STREAM_SLOT_BYTES / (2 k)) rows is one copy. A task whose x does not fit the tile's
 * staging whole (batch 2 to 4, k large: mlk_matvec_stream_cols) goes in column blocks instead: a
 * chunk is one block of kc columns of every row, a copy a row, row r at r * kc in the slot. With n slots (the launch's choice), slot s
 * carries chunks s, s + n, ...; chunk c completes phase (c / n) & 1 of its slot's mbarrier.
 *
 * Launch-time knobs (mlk_desc.h MlkDevTune): with stream_l2_ahead > 0 (MLK_STREAM_L2_AHEAD, off
 * by default: it measured slower) the loader also prefetches that many bytes of the list's
 * coming weights, beyond what its copies have reached, into L2 (cp.async.bulk.prefetch): the ring
 * holds a few chunks, while a decode layer's chain of small ops leaves HBM idle long enough to
 * bring in much of the next matvecs' weights. And a tile may borrow the ring as scratch once the
 * stream will put nothing there again (mlk_stream_scratch: the tensor-core matvec's staging,
 * mma_stage_ring, on by default).
 *
 * Measured and not kept (docs/performance.md, tenth session): freeing a chunk warp by warp
 * instead of with a block barrier (slower at batch 1), and holding the loader to the running
 * task so that a task's notify fence, which waits for every bulk copy the SM has in flight, finds
 * none (the fence got cheaper, but the ring idled and the next task's weights came late: 7.6%
 * slower at batch 1); and (twenty-second session) only a task's last refills left to the next
 * task's start, the ring busy otherwise: 4.8% slower at batch 1 on the H200, 8.4% with 4 slots.
 *
 * Only sm_90 has the bulk copy engine: elsewhere (and in kernels with the dynamic schedule, whose
 * next task is not known ahead) the stream is off and matvec reads weights from global memory.
 */
#include "mlk_tiles.h"
#include "task.h"

/* The host build (the block emulator of tests/tiles) has a copy engine too, emulated. */
#if MLK_SM >= 90
#define STREAM_HW 1
#else
#define STREAM_HW 0
#endif

/* The stream's state, its slots' mbarriers and the ring, in dynamic shared memory (the launch of an
 * sm_90a kernel asks for MLK_STREAM_BYTES(slots) of it, runtime/gpu.c; the tiles' static scratch takes
 * the whole 48 KiB that static shared memory may have). */
extern MLK_SHARED uint8_t mlk_stream_mem[] __attribute__((aligned(128)));

/* A place in the block's stream list: a streamed task and its next row. */
typedef struct ListPos {
  const uint64_t *list; /* the list entry after the task */
  const uint16_t *src;  /* the task's next row (column blocks: its first row's next block) */
  uint32_t left;        /* its rows from there, or columns (0: find the next streamed task) */
  uint32_t k;           /* its k */
  uint32_t done;        /* 1 once the list's end was reached */
  uint32_t kc;          /* column blocks: columns a block (0: chunks of whole rows) */
  uint32_t rows;        /* column blocks: the task's rows */
} ListPos;

typedef struct StreamState {
  ListPos load;        /* loader: the next row to copy */
  int64_t batch;       /* the run's batch rows (rt), for the list's batched tasks */
  uint32_t rpc;        /* loader: rows per chunk of its task */
  uint32_t head;       /* chunks issued */
  uint32_t head_slot;  /* head % slots */
  uint32_t tail;       /* chunks the tiles have released */
  uint32_t tail_slot, tail_parity; /* tail % slots, (tail / slots) & 1: no division per chunk */
  uint32_t on, slots;
  uint64_t *trace;     /* thread 0: the trace record of the task being run, NULL untraced */
  /* The L2 look-ahead (MlkDevTune.stream_l2_ahead, 0: off): the next row to prefetch, and the
   * bytes copied and prefetched so far (mod 2^32), prefetched - copied <= ahead. */
  ListPos pf;
  uint32_t ahead, copied, prefetched;
} StreamState;

#define STATE_BYTES 192 /* the state, then the slots' mbarriers */
_Static_assert(sizeof(StreamState) <= STATE_BYTES &&
                   STATE_BYTES + 8 * MLK_STREAM_MAX_SLOTS <= MLK_STREAM_HEADER,
               "the stream's header holds its state and mbarriers");
#define st (*(MLK_SHARED StreamState *)mlk_stream_mem)
#define bars ((MLK_SHARED uint64_t *)(mlk_stream_mem + STATE_BYTES))
#define ring (mlk_stream_mem + MLK_STREAM_HEADER)

#if STREAM_HW
static inline uint32_t dynamic_smem_size(void) {
#if defined(__NVPTX__)
  uint32_t dyn;
  __asm__("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dyn));
  return dyn;
#else
  return mlk_emu_dynamic_smem_size();
#endif
}
#endif

int mlk_stream_rows_per_chunk(int64_t k) {
  return k > 0 && 2 * k <= MLK_STREAM_SLOT_BYTES ? (int)(MLK_STREAM_SLOT_BYTES / (2 * k)) : 0;
}

int mlk_stream_takes(const uint16_t *W, int64_t k, int64_t batch) {
#if STREAM_HW
  return st.on && mlk_matvec_streamable(W, k, batch) && mlk_stream_rows_per_chunk(k) > 0;
#else
  (void)W, (void)k, (void)batch; /* no dynamic shared memory to hold the state */
  return 0;
#endif
}

int mlk_stream_takes_cols(const uint16_t *W, int64_t k, int64_t rows, int64_t batch) {
#if STREAM_HW
  return st.on ? mlk_matvec_stream_cols(W, k, rows, batch) : 0;
#else
  (void)W, (void)k, (void)rows, (void)batch;
  return 0;
#endif
}

int mlk_stream_on(void) {
#if STREAM_HW
  return (int)st.on;
#else
  return 0;
#endif
}

void mlk_stream_start(const uint32_t *qoff, const uint64_t *queue, const int64_t *rt, int enabled) {
#if STREAM_HW
  if (mlk_tid() == 0) {
    uint32_t blocks = __nvvm_read_ptx_sreg_nctaid_x(), b = __nvvm_read_ptx_sreg_ctaid_x();
    st.load.list = enabled ? queue + qoff[blocks + 1 + b] : 0, st.batch = rt[MLK_RT_BATCH];
    st.load.src = 0, st.load.done = !enabled, st.load.left = 0, st.load.k = 0, st.rpc = 0;
    st.load.kc = 0, st.load.rows = 0;
    st.head = 0, st.head_slot = 0, st.tail = 0, st.tail_slot = 0, st.tail_parity = 0;
    st.trace = 0;
    st.pf = st.load, st.copied = 0, st.prefetched = 0;
    st.ahead = enabled ? mlk_dev_tune.stream_l2_ahead : 0;
    /* the launch sized the ring (runtime/gpu.c): at least the header on sm_90a */
    uint32_t dyn = dynamic_smem_size();
    uint32_t slots = dyn > MLK_STREAM_HEADER ? (dyn - MLK_STREAM_HEADER) / MLK_STREAM_SLOT_BYTES : 0;
    st.slots = slots < MLK_STREAM_MAX_SLOTS ? slots : MLK_STREAM_MAX_SLOTS;
    st.on = (uint32_t)enabled && st.slots > 0;
    for (uint32_t s = 0; s < st.slots; s++)
      mlk_mbar_init(&bars[s], 1);
    mlk_fence_mbar_init();
  }
  __nvvm_barrier_sync(0);
#else
  (void)qoff, (void)queue, (void)rt, (void)enabled;
#endif
}

#if STREAM_HW
/* The pumping thread (thread 0): moves p to the next task of the block's stream list that the stream takes (the same
 * test as the tile's, mlk_stream_takes, of the same values): p->left = its rows, or p->done at the
 * list's end. The loader calls it when a task's last chunk has been issued, the L2 look-ahead
 * when its prefetches reach a task's end. */
static void next_task(MLK_SHARED ListPos *p) {
  for (;;) {
    const uint64_t *e = p->list;
    uint64_t addr = e[0], rk = e[1];
    if (addr == 0) {
      p->done = 1, p->left = 0;
      return;
    }
    p->list = e + MLK_STREAM_ENTRY_WORDS;
    mlk_prefetch_l1(p->list + MLK_STREAM_ENTRY_WORDS); /* the entry after the next one's line */
    const uint16_t *W = (const uint16_t *)(uintptr_t)addr;
    uint32_t rows = (uint32_t)(rk >> 32) & 0x7fffffffu, k = (uint32_t)rk, kc = 0;
    int64_t batch = rk >> 63 ? st.batch : 1;
    if (rows == 0)
      continue;
    if (!mlk_stream_takes(W, k, batch) && !(kc = (uint32_t)mlk_stream_takes_cols(W, k, rows, batch)))
      continue;
    p->src = W, p->k = k, p->kc = kc, p->rows = rows, p->left = kc ? k : rows;
    return;
  }
}

/* The pumping thread: whether p is on a task with rows left, moving it to the next streamed task
 * when it has none (and the list has not ended). */
static int on_task(MLK_SHARED ListPos *p) {
  if (p->left == 0 && !p->done)
    next_task(p);
  return p->left != 0;
}

/* The pumping thread: prefetches into L2 the block's coming stream weights, from where the copies
 * have reached to st.ahead bytes beyond, a slot's worth of rows at a time, so that HBM works while
 * the block waits (a decode layer's attention chain leaves it idle for tens of microseconds) and
 * the copies later come from L2. When the copies have caught up with it, it starts again from the
 * loader's place. */
static void prefetch_ahead(void) {
  if ((int32_t)(st.prefetched - st.copied) <= 0) {
    st.pf = st.load;
    st.prefetched = st.copied;
  }
  while (st.prefetched - st.copied < st.ahead) {
    if (!on_task(&st.pf))
      return;
    if (st.pf.kc) { /* column blocks: not prefetched, counted as if, so that the two stay in step */
      st.prefetched += st.pf.rows * st.pf.left * 2;
      st.pf.left = 0;
      continue;
    }
    uint32_t rpc = (uint32_t)mlk_stream_rows_per_chunk(st.pf.k);
    uint32_t nr = st.pf.left < rpc ? st.pf.left : rpc, bytes = nr * st.pf.k * 2;
    mlk_prefetch_l2(st.pf.src, bytes);
    st.pf.src += nr * st.pf.k;
    st.pf.left -= nr;
    st.prefetched += bytes;
  }
}

/* The pumping thread: issues chunk copies while slots are free and the block's queue has streamed
 * tasks; then the L2 look-ahead, when it is on. */
static void pump(void) {
  uint64_t *rec = st.trace; /* traced: the pumps' time goes to the running task's record */
  uint64_t t0 = rec ? mlk_globaltimer() : 0;
  uint32_t head = st.head, slot = st.head_slot;
  const uint32_t tail = st.tail;
  int fenced = 0;
  while (head - tail < st.slots) {
    if (st.load.left == 0) {
      if (!on_task(&st.load))
        break;
      st.rpc = (uint32_t)mlk_stream_rows_per_chunk(st.load.k);
    }
    if (!fenced) /* the slots' last readers used ordinary loads; the copy engine writes next */
      mlk_fence_proxy_async();
    fenced = 1;
    MLK_SHARED uint8_t *dst = ring + slot * MLK_STREAM_SLOT_BYTES;
    uint32_t bytes;
    if (st.load.kc) { /* one column block of every row: a copy a row, rows kc apart */
      uint32_t kn = st.load.left < st.load.kc ? st.load.left : st.load.kc;
      bytes = st.load.rows * kn * 2;
      mlk_mbar_expect_tx(&bars[slot], bytes);
      for (uint32_t r = 0; r < st.load.rows; r++)
        mlk_bulk_copy(dst + r * st.load.kc * 2, st.load.src + r * st.load.k, kn * 2, &bars[slot]);
      st.load.src += kn;
      st.load.left -= kn;
    } else {
      uint32_t nr = st.load.left < st.rpc ? st.load.left : st.rpc;
      bytes = nr * st.load.k * 2;
      mlk_mbar_expect_tx(&bars[slot], bytes);
      mlk_bulk_copy(dst, st.load.src, bytes, &bars[slot]);
      st.load.src += nr * st.load.k;
      st.load.left -= nr;
    }
    head++;
    slot = slot + 1 == st.slots ? 0 : slot + 1;
    st.copied += bytes;
  }
  st.head = head;
  st.head_slot = slot;
  if (st.ahead)
    prefetch_ahead();
  if (rec)
    rec[MLK_TRACE_ISSUE] += mlk_globaltimer() - t0;
}
#endif

void mlk_stream_pump(void) {
#if STREAM_HW
  if (mlk_tid() == 0 && st.on)
    pump();
#endif
}

#if STREAM_HW
static inline void wait_slot(uint32_t slot, uint32_t parity) {
  mlk_mbar_wait(&bars[slot], parity);
}
#endif

/* Only tasks the stream takes call these, and it takes none without STREAM_HW. */
MlkStreamCursor mlk_stream_cursor(void) {
#if STREAM_HW
  /* the trace record read once a task, not before every chunk's wait (a shared load there cost
   * batch 1 ~1.6%, docs/performance.md) */
  MlkStreamCursor c = {st.tail, st.tail_slot, st.tail_parity, st.slots,
                       mlk_tid() == 0 ? st.trace : 0};
#else
  MlkStreamCursor c = {0, 0, 0, 1, 0};
#endif
  return c;
}

const MLK_SHARED uint16_t *mlk_stream_wait(const MlkStreamCursor *c) {
#if STREAM_HW
  uint64_t *rec = c->trace; /* traced: thread 0 sums its waits */
  uint64_t t0 = rec ? mlk_globaltimer() : 0;
  wait_slot(c->slot, c->parity);
  if (rec)
    rec[MLK_TRACE_CHUNK_WAIT] += mlk_globaltimer() - t0;
  return (const MLK_SHARED uint16_t *)(ring + c->slot * MLK_STREAM_SLOT_BYTES);
#else
  (void)c;
  return 0;
#endif
}

void mlk_stream_release(MlkStreamCursor *c) {
  c->chunk++;
  if (++c->slot == c->slots) {
    c->slot = 0;
    c->parity ^= 1u;
  }
#if STREAM_HW
  __nvvm_barrier_sync(0); /* every thread is done with the chunk */
  if (mlk_tid() == 0) {
    /* read by the next task, after the barriers between tasks */
    st.tail = c->chunk, st.tail_slot = c->slot, st.tail_parity = c->parity;
    if (st.on)
      pump();
  }
#endif
}

MLK_SHARED float *mlk_stream_scratch(uint32_t *floats) {
#if STREAM_HW
  /* off for the launch, or past its last copy with every chunk released: no copy lands here again */
  if (st.slots && (!st.on || (st.load.done && st.head == st.tail))) {
    *floats = st.slots * (MLK_STREAM_SLOT_BYTES / 4);
    return (MLK_SHARED float *)ring;
  }
#endif
  *floats = 0;
  return 0;
}

void mlk_stream_trace_task(uint64_t *rec) {
#if STREAM_HW
  st.trace = rec; /* thread 0, from mlk_dev_trace_begin */
#else
  (void)rec;
#endif
}

void mlk_dev_trace_phase(uint32_t field) {
#if STREAM_HW
  if (mlk_tid() == 0 && st.trace)
    st.trace[field] = mlk_globaltimer();
#else
  (void)field;
#endif
}

void mlk_stream_drain(void) {
#if STREAM_HW
  __nvvm_barrier_sync(0);
  if (st.on)
    for (uint32_t c = st.tail; c != st.head; c++)
      wait_slot(c % st.slots, (c / st.slots) & 1);
#endif
}
