/* gpu_kernels.c: two tiny hand-written megakernels for test_gpu, compiled to PTX by clang
 * (--target=nvptx64-nvidia-cuda) at build time.
 *
 * They let the GPU backend be tested without the compiler: same launch signature and protocol as
 * generated megakernels (op records with resolved operand addresses, event records, static queue
 * of 64-bit task words per block, acquire-wait on event counters with a %globaltimer deadline,
 * MlkDevError on timeout, release-notify, the run-time values `rt`), for one fixed model with a
 * batch dim:
 *     u = relu(a)   (op 0, tile 64)      TILE event u: op 0 -> op 1
 *     v = u + a     (op 1, tile 100)     over 1000 f32 columns, for rt[MLK_RT_BATCH] rows
 * The bad model's descriptor says the producer tile is 32, so counters of elements past 512 never
 * complete and the run must report a deadlock.
 * The index maps are the inline functions of mlk_desc.h, compiled for the device as-is; the timer,
 * thread index and polling loads are the tiles' (stdlib/tiles/mlk_tiles.h).
 */
#include "mlk_tiles.h" /* the tiles' timer, thread index and polling loads */

#define N 1000
#define TILE0 64
#define TILE1 100

typedef unsigned long long u64;
typedef unsigned int u32;

static inline u32 bid(void) { return __nvvm_read_ptx_sreg_ctaid_x(); }

static inline void notify_release(u32 *p) {
  __asm__ volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(p) : "memory");
}

static inline float relu(float x) { return x < 0.0f ? 0.0f : x; }

static inline __attribute__((always_inline)) void body(const MlkDevOp *ops,
                                                       const MlkDevSync *syncs, u32 *counters,
                                                       const u32 *qoff, const u64 *queue, u32 epoch,
                                                       u64 timeout_ns, MlkDevError *err,
                                                       const long long *rt) {
  const long long rows = rt[MLK_RT_BATCH];
  const MlkDevSync *e = &syncs[ops[1].wait0]; /* the one event: op 1 waits on it, op 0 notifies it */
  const float *a = (const float *)ops[0].in[0];
  float *u = (float *)ops[0].out, *v = (float *)ops[1].out;
  for (u32 i = qoff[bid()]; i < qoff[bid() + 1]; i++) {
    u64 word = queue[i];
    u32 op = MLK_TASK_OP(word), t = MLK_TASK_INDEX(word);
    int failed = 0;
    if (op == 1 && mlk_tid() == 0) {
      long long idx = mlk_event_wait_index(e, t);
      u32 target = epoch * (u32)mlk_event_start_value(e, idx);
      u32 *c = counters + e->base + idx;
      u64 start = mlk_globaltimer();
      u32 seen;
      while (!mlk_counter_reached(seen = mlk_ld_acquire(c), target)) {
        if (mlk_ld_volatile(&err->flag)) { /* another block already gave up */
          failed = 1;
          break;
        }
        if (mlk_globaltimer() - start > timeout_ns) {
          if (__nvvm_atom_xchg_gen_i((int *)&err->flag, 1) == 0) {
            err->block = bid();
            err->op = op;
            err->task = t;
            err->event = 0;
            err->index = (u32)idx;
            err->expected = target;
            err->observed = seen;
          }
          failed = 1;
          break;
        }
        __asm__ volatile("nanosleep.u32 256;");
      }
    }
    if (__nvvm_bar0_or(failed))
      return;
    /* Each task covers its columns of every row of the run (row stride N). */
    for (long long b = 0; b < rows; b++) {
      if (op == 0) {
        for (u32 j = t * TILE0 + mlk_tid(); j < (t + 1) * TILE0 && j < N; j += MLK_BLOCK_THREADS)
          u[b * N + j] = relu(a[b * N + j]);
      } else {
        for (u32 j = t * TILE1 + mlk_tid(); j < (t + 1) * TILE1 && j < N; j += MLK_BLOCK_THREADS)
          v[b * N + j] = u[b * N + j] + a[b * N + j];
      }
    }
    /* Every thread's stores happen before thread 0's release through the barrier. */
    __nvvm_bar_sync(0);
    if (op == 0 && mlk_tid() == 0) {
      __nvvm_membar_gl();
      long long lo, hi;
      mlk_event_notify_range(e, t, &lo, &hi);
      for (long long c = lo; c <= hi; c++)
        notify_release(counters + e->base + c);
    }
  }
}

/* The signature of every generated megakernel (mlk_desc.h). The event comes from the records:
 * the bad model's descriptor claims producer tiles of 32. */
#define ENTRY(name)                                                                                \
  __attribute__((nvptx_kernel)) void name(const MlkDevOp *ops, const MlkDevSync *syncs,           \
                                          u32 *counters, const u32 *qoff, const u64 *queue,        \
                                          u32 epoch, u64 timeout_ns, MlkDevError *err,             \
                                          const long long *rt, u64 *trace) {                       \
    (void)trace;                                                                                   \
    body(ops, syncs, counters, qoff, queue, epoch, timeout_ns, err, rt);                           \
  }

ENTRY(mlk_test_fwd)
ENTRY(mlk_test_fwd_bad)
