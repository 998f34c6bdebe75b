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
 * floor(MLK_STREAM_SLOT_BYTES / (2 k)) rows is one copy. With n slots (the launch's choice), slot s
 * carries chunks s, s + n, ...; chunk c completes phase (c / n) & 1 of its slot's mbarrier.
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

typedef struct StreamState {
  const uint64_t *list; /* loader: the block's stream list entry after the task it is loading */
  int64_t batch;        /* the run's batch rows (rt), for the list's batched tasks */
  const uint16_t *src; /* loader: the next row to copy of the task it is loading */
  uint32_t done;       /* loader: 1 once the list's end was reached */
  uint32_t left;       /* loader: rows of it still to copy (0: find the next streamed task) */
  uint32_t rpc, k;     /* loader: its rows per chunk and k */
  uint32_t head;       /* chunks issued */
  uint32_t head_slot;  /* head % slots */
  uint32_t tail;       /* chunks the tiles have released */
  uint32_t tail_slot, tail_parity; /* tail % slots, (tail / slots) & 1: no division per chunk */
  uint32_t on, slots;
  uint64_t *trace;     /* thread 0: the trace record of the task being run, NULL untraced */
} StreamState;

_Static_assert(sizeof(StreamState) <= 128 && 128 + 8 * MLK_STREAM_MAX_SLOTS <= MLK_STREAM_HEADER,
               "the stream's header holds its state and mbarriers");
#define st (*(MLK_SHARED StreamState *)mlk_stream_mem)
#define bars ((MLK_SHARED uint64_t *)(mlk_stream_mem + 128))
#define ring (mlk_stream_mem + MLK_STREAM_HEADER)

#if STREAM_HW
/* The copy engine's and the mbarriers' instructions, each once. */
static inline uint32_t dynamic_smem_size(void) {
#if defined(__NVPTX__)
  uint32_t dyn;
  __asm__("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dyn));
  return dyn;
#else
  return mlk_emu_dynamic_smem_size();
#endif
}

/* mbarrier.init of the slots' barriers (count 1: the loader's arrive), made visible to the copy
 * engine. */
static inline void mbar_init(MLK_SHARED uint64_t *bar) {
#if defined(__NVPTX__)
  __asm__ volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(mlk_smem_addr(bar)) : "memory");
#else
  mlk_emu_mbar_init(bar, 1);
#endif
}
static inline void fence_mbar_init(void) {
#if defined(__NVPTX__)
  __asm__ volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#endif
}

/* Orders the generic proxy's earlier accesses (ordinary loads of a slot) before the async
 * proxy's (the copy engine's writes into it). */
static inline void fence_proxy_async(void) {
#if defined(__NVPTX__)
  __asm__ volatile("fence.proxy.async.shared::cta;" ::: "memory");
#endif
}

/* The loader's arrive on `bar`, announcing `bytes` of copies that complete on it. */
static inline void mbar_expect_tx(MLK_SHARED uint64_t *bar, uint32_t bytes) {
#if defined(__NVPTX__)
  __asm__ volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;"
                   ::"r"(mlk_smem_addr(bar)), "r"(bytes)
                   : "memory");
#else
  mlk_emu_mbar_expect_tx(bar, bytes);
#endif
}

/* One bulk copy of `bytes` (a multiple of 16) from global src to shared dst, completing on bar. */
static inline void bulk_copy(MLK_SHARED void *dst, const void *src, uint32_t bytes,
                             MLK_SHARED uint64_t *bar) {
#if defined(__NVPTX__)
  __asm__ volatile("{\n\t.reg .u64 g;\n\tcvta.to.global.u64 g, %1;\n\t"
                   "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [g], "
                   "%2, [%3];\n\t}" ::"r"(mlk_smem_addr(dst)),
                   "l"(src), "r"(bytes), "r"(mlk_smem_addr(bar))
                   : "memory");
#else
  mlk_emu_bulk_copy(dst, src, bytes, bar);
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

void mlk_stream_start(const uint32_t *qoff, const uint64_t *queue, const int64_t *rt, int enabled) {
#if STREAM_HW
  if (mlk_tid() == 0) {
    uint32_t blocks = __nvvm_read_ptx_sreg_nctaid_x(), b = __nvvm_read_ptx_sreg_ctaid_x();
    st.list = enabled ? queue + qoff[blocks + 1 + b] : 0, st.batch = rt[MLK_RT_BATCH];
    st.src = 0, st.done = !enabled, st.left = 0, st.rpc = 0, st.k = 0;
    st.head = 0, st.head_slot = 0, st.tail = 0, st.tail_slot = 0, st.tail_parity = 0;
    st.trace = 0;
    /* the launch sized the ring (runtime/gpu.c): at least the header on sm_90a */
    uint32_t dyn = dynamic_smem_size();
    uint32_t slots = dyn > MLK_STREAM_HEADER ? (dyn - MLK_STREAM_HEADER) / MLK_STREAM_SLOT_BYTES : 0;
    st.slots = slots < MLK_STREAM_MAX_SLOTS ? slots : MLK_STREAM_MAX_SLOTS;
    st.on = (uint32_t)enabled && st.slots > 0;
    for (uint32_t s = 0; s < st.slots; s++)
      mbar_init(&bars[s]);
    fence_mbar_init();
  }
  __nvvm_barrier_sync(0);
#else
  (void)qoff, (void)queue, (void)rt, (void)enabled;
#endif
}

#if STREAM_HW
/* Thread 0: the next task of the block's stream list that the stream takes (the same test as the
 * tile's, mlk_stream_takes, of the same values); makes it the loader's task (left = its rows), or
 * sets done at the list's end. Called when a task's last chunk has been issued. */
static void next_task(void) {
  for (;;) {
    const uint64_t *e = st.list;
    uint64_t addr = e[0], rk = e[1];
    if (addr == 0) {
      st.done = 1, st.left = 0;
      return;
    }
    st.list = e + MLK_STREAM_ENTRY_WORDS;
    mlk_prefetch_l1(st.list + MLK_STREAM_ENTRY_WORDS); /* the entry after the next one's line */
    const uint16_t *W = (const uint16_t *)(uintptr_t)addr;
    uint32_t rows = (uint32_t)(rk >> 32) & 0x7fffffffu, k = (uint32_t)rk;
    if (rows == 0 || !mlk_stream_takes(W, k, rk >> 63 ? st.batch : 1))
      continue;
    st.src = W;
    st.left = rows, st.rpc = (uint32_t)mlk_stream_rows_per_chunk(k), st.k = k;
    return;
  }
}

/* Thread 0: issues chunk copies while slots are free and the block's queue has streamed tasks. */
static void pump(void) {
  uint32_t head = st.head, slot = st.head_slot;
  const uint32_t tail = st.tail;
  int fenced = 0;
  while (head - tail < st.slots) {
    if (st.left == 0) {
      if (st.done)
        break;
      next_task();
      if (st.left == 0)
        break;
    }
    uint32_t nr = st.left < st.rpc ? st.left : st.rpc;
    uint32_t bytes = nr * st.k * 2;
    if (!fenced) /* the slots' last readers used ordinary loads; the copy engine writes next */
      fence_proxy_async();
    fenced = 1;
    mbar_expect_tx(&bars[slot], bytes);
    bulk_copy(ring + slot * MLK_STREAM_SLOT_BYTES, st.src, bytes, &bars[slot]);
    head++;
    slot = slot + 1 == st.slots ? 0 : slot + 1;
    st.src += nr * st.k;
    st.left -= nr;
  }
  st.head = head;
  st.head_slot = slot;
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
#if defined(__NVPTX__)
  __asm__ volatile("{\n\t.reg .pred p;\n\tWAIT_%=:\n\t"
                   "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n\t"
                   "@!p bra WAIT_%=;\n\t}" ::"r"(mlk_smem_addr(&bars[slot])),
                   "r"(parity)
                   : "memory");
#else
  mlk_emu_mbar_wait(&bars[slot], parity);
#endif
}
#endif

/* Only tasks the stream takes call these, and it takes none without STREAM_HW. */
MlkStreamCursor mlk_stream_cursor(void) {
#if STREAM_HW
  MlkStreamCursor c = {st.tail, st.tail_slot, st.tail_parity, st.slots};
#else
  MlkStreamCursor c = {0, 0, 0, 1};
#endif
  return c;
}

const MLK_SHARED uint16_t *mlk_stream_wait(const MlkStreamCursor *c) {
#if STREAM_HW
  wait_slot(c->slot, c->parity);
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
