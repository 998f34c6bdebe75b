/* mlk_tiles.h: device-side library of every megakernel, in freestanding C for nvptx64.
 *
 * clang compiles the .c files of stdlib/tiles (and stdlib/task.c) to LLVM bitcode at build time;
 * mlkc links that bitcode into each generated megakernel. The generated interpreter (codegen.c)
 * walks a block's task queue and, per task, reads the op's record (MlkDevOp) and calls:
 * mlk_task_prefetch, mlk_dev_task_wait, the op kind's mlk_task_<kind> (stdlib/task.c, which calls
 * the tile below), mlk_dev_barrier and mlk_dev_task_notify. All functions are called by every
 * thread of the block (MLK_BLOCK_THREADS), uniformly.
 *
 * Every tile may assume a block barrier right before and right after it (the skeleton's waits
 * and mlk_dev_barrier), so it need not end with one of its own.
 *
 * Memory-model contract: data written by earlier tasks in the same launch (activations) is read
 * with ordinary loads after mlk_dev_task_wait (an acquire by thread 0 plus a block barrier); only
 * weights, which no task writes, go through the non-coherent read-only path (ld.global.nc).
 * Each function here has a plain C reference in stdlib/ref/ with the same arguments.
 */
#ifndef MLK_TILES_H
#define MLK_TILES_H

#include <stdint.h>

#include "mlk_desc.h"

/* Shared memory is address space 3 on the GPU. The same files also compile for the host, where
 * tests/tiles runs them in a block emulator: there it is ordinary memory, and the emulator
 * supplies what the GPU's instructions do (declared at the end of this file). */
#if defined(__NVPTX__)
#define MLK_SHARED __attribute__((address_space(3)))
#else
#define MLK_SHARED
/* The block emulator's side (tests/tiles/block_emu.c): the NVVM builtins the tiles call, by their
 * names, and the instructions they write as inline PTX on the GPU. */
uint32_t __nvvm_read_ptx_sreg_tid_x(void);
uint32_t __nvvm_read_ptx_sreg_ctaid_x(void);
uint32_t __nvvm_read_ptx_sreg_nctaid_x(void);
void __nvvm_barrier_sync(uint32_t id);
int __nvvm_bar0_and(int pred);
float __nvvm_shfl_sync_bfly_f32(uint32_t mask, float v, uint32_t off, uint32_t c);
int __nvvm_shfl_sync_bfly_i32(uint32_t mask, int v, uint32_t off, uint32_t c);
float __nvvm_shfl_sync_up_f32(uint32_t mask, float v, uint32_t d, uint32_t c);
int __nvvm_shfl_sync_up_i32(uint32_t mask, int v, uint32_t d, uint32_t c);
int __nvvm_shfl_sync_idx_i32(uint32_t mask, int v, uint32_t lane, uint32_t c);
uint32_t __nvvm_match_any_sync_i32(uint32_t mask, int v);
void __nvvm_bar_warp_sync(uint32_t mask);
void __nvvm_nanosleep(uint32_t ns);
float __nvvm_ex2_approx_f(float v);
uint64_t mlk_emu_globaltimer(void);
/* A shared-window address (32 bits, as the GPU's) of p, and back. */
uint32_t mlk_emu_smem_addr(const void *p);
void *mlk_emu_smem_ptr(uint32_t a);
/* d[0..3] += A * B: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, every lane of a warp. */
void mlk_emu_mma_m16n8k16(float *d, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                          uint32_t b1);
/* The bulk copy engine and mbarriers (stream.c): the launch's dynamic shared memory size;
 * mbarrier.init; arrive.expect_tx; a cp.async.bulk that completes its bytes on `bar` later;
 * try_wait.parity until the phase of that parity has completed. */
uint32_t mlk_emu_dynamic_smem_size(void);
void mlk_emu_mbar_init(uint64_t *bar, uint32_t count);
void mlk_emu_mbar_expect_tx(uint64_t *bar, uint32_t bytes);
void mlk_emu_bulk_copy(void *dst, const void *src, uint32_t bytes, uint64_t *bar);
void mlk_emu_prefetch_l2(const void *src, uint32_t bytes);
void mlk_emu_mbar_wait(uint64_t *bar, uint32_t parity);
#endif

/* Device constants: the constant state space on the GPU, ordinary memory in the host build. */
#if defined(__NVPTX__)
#define MLK_CONSTANT __attribute__((address_space(4)))
#else
#define MLK_CONSTANT
#endif

/* The launch-time knobs (mlk_desc.h MlkDevTune), defined in tune.c. */
extern MLK_CONSTANT MlkDevTune mlk_dev_tune;

/* The waits of task `task` of op `op` (its record `rec`, index `op` within the megakernel) before
 * its tile: for each of the record's waits (syncs[rec->wait0 .. + rec->nwaits)),
 * thread 0 polls the counter the event's index map gives with acquire loads and exponential
 * nanosleep back-off until it reaches epoch * start value (mod 2^32); past `timeout_ns` (from
 * %globaltimer) it records the failure in `err` (first failure wins) and gives up; it also gives
 * up as soon as another block has failed. Returns 1 in every thread when every dependency is
 * satisfied, else 0. Contains a block barrier. */
int mlk_dev_task_wait(const MlkDevOp *rec, const MlkDevSync *syncs, uint32_t *counters,
                      uint32_t op, uint32_t task, uint32_t epoch, uint64_t timeout_ns,
                      MlkDevError *err);

/* A hint: the record of the block's next task into this SM's L1 (the interpreter reads it a task
 * ahead: a record read from L2 costs each task several hundred ns before its first poll). */
void mlk_dev_prefetch_record(const MlkDevOp *rec);

/* Block barrier: every thread's writes of this task are done before thread 0 notifies. */
void mlk_dev_barrier(void);

/* Thread 0 adds 1 with release semantics to every counter the record's notifies
 * (syncs[rec->notify0 .. + rec->nnotifies)) and their index maps give, for each task `done`
 * names (MlkTaskDone: the task itself, none, or a split matvec's group); other threads do
 * nothing. */
void mlk_dev_task_notify(const MlkDevOp *rec, const MlkDevSync *syncs, uint32_t *counters,
                         MlkTaskDone done);

/* The GPU's nanosecond clock, and a hint that moves the line at p into this SM's L1 (sync.c and
 * stream.c use both). */
static inline uint64_t mlk_globaltimer(void) {
#if defined(__NVPTX__)
  uint64_t t;
  __asm__ volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
#else
  return mlk_emu_globaltimer();
#endif
}
static inline void mlk_prefetch_l1(const void *p) {
#if defined(__NVPTX__)
  __asm__ volatile("{\n\t.reg .u64 g;\n\tcvta.to.global.u64 g, %0;\n\tprefetch.global.L1 [g];\n\t}"
                   :
                   : "l"(p));
#else
  (void)p;
#endif
}

/* Trace records (mlk_desc.h MLK_TRACE_*), written by thread 0 when `trace` is not NULL: begin
 * stamps the start and who ran the task, stamp one field. With tracing off they cost one test. */
void mlk_dev_trace_begin(uint64_t *trace, uint32_t slot, uint64_t word);
void mlk_dev_trace_stamp(uint64_t *trace, uint32_t slot, uint32_t field);
/* A tile's phases (MLK_TRACE_STAGED ..): mlk_dev_trace_begin hands the task's record to the block
 * state (stream.c), and a tile calls mlk_dev_trace_phase(field) as it reaches each phase; thread 0
 * stamps it when the run is traced (sm_90, where the block state lives in shared memory). */
void mlk_stream_trace_task(uint64_t *rec);
void mlk_dev_trace_phase(uint32_t field);

/* Dynamic schedule: thread 0 takes the next ticket (atomic add on *ticket); every thread gets it.
 * Contains two block barriers. */
uint32_t mlk_dev_ticket(uint32_t *ticket);

/* The weight stream (stream.c): thread 0 of each block copies the weight rows of the block's
 * coming matvec tasks into a ring of shared-memory slots ahead of time. mlk_stream_start (every
 * kernel that has matvec ops, before its loop; `enabled` 0 turns the stream off, as the dynamic
 * schedule must) finds the block's stream list through qoff (mlk_desc.h); mlk_stream_pump (before each task's waits, and
 * after each slot is freed) issues copies while slots are free; mlk_stream_drain (at the kernel's
 * exit) waits for copies still in flight. A matvec task the stream takes (mlk_stream_takes, the
 * same answer for the loader and the tile) gets its rows in chunks of mlk_stream_rows_per_chunk(k)
 * rows, from the cursor mlk_stream_cursor() (read once, at the task's start, by every thread):
 * mlk_stream_wait(&c) returns the cursor's chunk's slot once it has landed,
 * mlk_stream_release(&c) frees it (a block barrier first) and moves the cursor on. All but mlk_stream_rows_per_chunk are called by every thread. */
void mlk_stream_start(const uint32_t *qoff, const uint64_t *queue, const int64_t *rt, int enabled);
void mlk_stream_pump(void);
void mlk_stream_drain(void);
int mlk_stream_takes(const uint16_t *W, int64_t k, int64_t batch);
/* Column blocks: a task whose x does not fit the staging whole (mlk_matvec_stream_cols) gets its
 * `rows` weight rows in chunks of one block of kc columns each (row r of a chunk at r * kc
 * elements of its slot); the stream takes it so when this is kc > 0, the same answer for the
 * loader and the tile. mlk_stream_on: whether the launch streams at all. */
int mlk_stream_takes_cols(const uint16_t *W, int64_t k, int64_t rows, int64_t batch);
int mlk_stream_on(void);
int mlk_stream_rows_per_chunk(int64_t k);
/* A task's position in the ring: its next chunk, that chunk's slot and mbarrier phase parity, and
 * the ring's slots (counted forward, so that no thread divides per chunk). */
typedef struct MlkStreamCursor {
  uint32_t chunk, slot, parity, slots;
  uint64_t *trace; /* thread 0 of a traced run: the task's trace record (its chunk waits); else 0 */
} MlkStreamCursor;
MlkStreamCursor mlk_stream_cursor(void); /* every thread, once at a streamed task's start */
const MLK_SHARED uint16_t *mlk_stream_wait(const MlkStreamCursor *c);
void mlk_stream_release(MlkStreamCursor *c);
/* The ring as a tile's scratch, when the stream will put nothing there again in this launch (it
 * is off, or its loader is past the block's last streamed task and every chunk was released):
 * the ring, with *floats its size; else NULL and 0. Every thread of a tile gets the same answer
 * (the state it reads changes only in thread 0's pumps, before the task's wait barrier). */
MLK_SHARED float *mlk_stream_scratch(uint32_t *floats);
/* Whether the matvec tile can take weights from the stream for this shape: the vector path, one
 * pass over the batch with x staged in one piece (matvec.c). */
int mlk_matvec_streamable(const uint16_t *W, int64_t k, int64_t batch);
/* Whether (and how) the matvec tile can take weights from the stream in column blocks instead:
 * batch 2 to 4 rows whose x does not fit whole, tasks of at most 16 rows; the columns of a block
 * (a multiple of 64), or 0. W NULL: any 16-byte aligned W (the split decision, which has none). */
int mlk_matvec_stream_cols(const uint16_t *W, int64_t k, int64_t rows, int64_t batch);

/* The op tiles. Each is the device twin of the reference of the same name in stdlib/ref/mlk_ref.h
 * (mlk_ref_X <-> mlk_tile_X, same arguments, same results up to f32 rounding), computes the
 * output columns of one task for every batch row, and is called by all threads of the block.
 * Activations written earlier in the launch are read with ordinary loads; weights may use the
 * read-only path. */
void mlk_tile_matvec(float *out, const float *x, const uint16_t *W, const float *res,
                     const uint16_t *norm_w, const uint16_t *bias, float eps, int64_t n, int64_t k,
                     int64_t row0, int64_t rows, int64_t batch, int fn);
/* Slice `slice` of k (mlk_matvec_slice of `members`) of a split matvec's group (tasks first ..
 * first + members - 1, rows [row0, row0 + rows)): writes its partial sums (and, with a fused
 * norm, its sums of squares of x) into `scratch` (mlk_desc.h), then counts itself in at `arrive`;
 * the last of the group to arrive resets the counter, merges the slices in slice order, applies
 * the norm's scale and the epilogue and writes out. Returns 1 in that task (then its notifies are
 * the group's), 0 in the others. */
int mlk_tile_matvec_split(float *out, const float *x, const uint16_t *W, const float *res,
                          const uint16_t *norm_w, const uint16_t *bias, float eps, int64_t n,
                          int64_t k, int64_t row0, int64_t rows, int64_t batch, int fn,
                          int64_t split, int64_t first, int64_t members, int64_t slice,
                          float *scratch, uint32_t *arrive);
/* Weights do not depend on any event: the skeleton calls this before a matvec task's waits, so
 * that the task's weight rows (up to MLK_MATVEC_PREFETCH_BYTES of them) stream into L2 while the
 * block waits for the previous layer; none on the tensor-core path (batch rows >= 16), where they
 * slowed the staging of x. A hint: no result, no ordering. */
#define MLK_MATVEC_PREFETCH_BYTES (256 * 1024)
void mlk_tile_matvec_prefetch(const uint16_t *W, int64_t n, int64_t k, int64_t row0, int64_t rows,
                              int64_t batch);
void mlk_tile_eltwise(float *out, const float *a, const float *c, const uint16_t *bias,
                      int64_t n, int64_t c0, int64_t count, int64_t batch, int fn);
void mlk_tile_gather(float *out, const int32_t *ids, const uint16_t *table, int64_t n, int64_t c0,
                     int64_t count, int64_t batch);
/* The sum over the ranks, in rank order, of each rank's x (xs[r]: an address in rank r's memory,
 * read at system scope: another GPU wrote it). */
void mlk_tile_allreduce(float *out, const uint64_t *xs, int64_t ranks, int64_t n, int64_t c0,
                        int64_t count, int64_t batch);
void mlk_tile_rmsnorm(float *out, const float *x, const uint16_t *w, float eps, int64_t n,
                      int64_t batch);
void mlk_tile_rope(float *out, const float *x, const int32_t *pos, int64_t n, int64_t head_dim,
                   int64_t c0, int64_t count, int64_t batch, float theta, float factor,
                   float low_freq_factor, float high_freq_factor, int64_t original_max_pos);
void mlk_tile_kv_append(uint16_t *cache, const float *k, const float *v, const int32_t *pos,
                        const int32_t *pages, int64_t kv_heads, int64_t head_dim, int64_t page,
                        int64_t pages_per_seq, int64_t npages, int64_t layer, int64_t head0,
                        int64_t nheads, int64_t batch, float theta, float factor,
                        float low_freq_factor, float high_freq_factor, int64_t original_max_pos);
/* rope.c, for tiles that rotate what they read (kv_append's keys): mlk_rope_freqs puts the inverse
 * frequencies of a head's half pairs into the tiles' shared buffer (every thread calls it; it ends
 * with a barrier) and returns 1, or returns 0 when they do not fit (head_dim / 2 >
 * MLK_MATVEC_MAX_K); mlk_rope_elem is element d of the rotated head x (head_dim = 2 * half
 * floats) at position pos, bit for bit what mlk_tile_rope writes there. */
int mlk_rope_freqs(int64_t head_dim, float theta, float factor, float low_freq_factor,
                   float high_freq_factor, int64_t original_max_pos);
float mlk_rope_elem(const float *x, uint32_t d, uint32_t half, int32_t pos, int tab, int64_t head_dim,
                    float theta, float factor, float low_freq_factor, float high_freq_factor,
                    int64_t original_max_pos);
void mlk_tile_attention(float *out, const float *q, const uint16_t *cache, const int32_t *pos,
                        const int32_t *pages, int64_t kv_heads, int64_t head_dim, int64_t page,
                        int64_t pages_per_seq, int64_t npages, int64_t layer, int64_t heads,
                        int64_t kvh0, int64_t nkvh, int64_t batch);
void mlk_tile_attention_split(float *part, const float *q, const uint16_t *cache,
                              const int32_t *pos, const int32_t *pages, int64_t kv_heads,
                              int64_t head_dim, int64_t page, int64_t pages_per_seq,
                              int64_t npages, int64_t layer, int64_t heads, int64_t kvh,
                              int64_t split, int64_t min_chunk, int64_t kvh0, int64_t nkvh,
                              int64_t chunk,
                              int64_t batch);
int mlk_tile_attention_fold(float *out, float *part, const float *q, const uint16_t *cache,
                            const int32_t *pos, const int32_t *pages, int64_t kv_heads,
                            int64_t head_dim, int64_t page, int64_t pages_per_seq,
                            int64_t npages, int64_t layer, int64_t heads, int64_t kvh,
                            int64_t split, int64_t min_chunk, int64_t kvh0, int64_t nkvh,
                            int64_t chunk, int64_t batch);
void mlk_tile_attn_reduce(float *out, const float *part, int64_t kv_heads, int64_t head_dim,
                          int64_t heads, int64_t kvh, int64_t split, int64_t kvh0, int64_t nkvh,
                          int64_t batch);
void mlk_tile_argmax(int32_t *out, const float *x, int64_t k, int64_t batch);
void mlk_tile_argmax_part(float *part, const float *x, int64_t k, int64_t split, int64_t chunk,
                          int64_t batch);
void mlk_tile_argmax_reduce(int32_t *out, const float *part, int64_t split, int64_t batch);
void mlk_tile_sample(int32_t *out, const float *x, const float *params, int64_t k,
                     float temperature, int64_t top_k, float top_p, int64_t batch);

/* ---- small device helpers shared by the tiles ---- */

static inline uint32_t mlk_tid(void) { return __nvvm_read_ptx_sreg_tid_x(); }

/* The thread index re-read where it is used: values derived from it then stay inside the code
 * that uses them instead of being hoisted to the top of the kernel, all live at once. */
static inline uint32_t mlk_tid_here(void) {
#if defined(__NVPTX__)
  uint32_t t;
  __asm__ volatile("mov.u32 %0, %%tid.x;" : "=r"(t));
  return t;
#else
  return mlk_tid();
#endif
}

/* Inclusive prefix sum of v over the lanes of the warp, in lane order (every lane calls it). */
static inline uint32_t mlk_warp_scan_u32(uint32_t v) {
  uint32_t lane = mlk_tid_here() & 31;
  for (uint32_t d = 1; d < 32; d <<= 1) {
    uint32_t o = (uint32_t)__nvvm_shfl_sync_up_i32(0xffffffffu, (int)v, d, 0);
    if (lane >= d)
      v += o;
  }
  return v;
}

/* v of lane `src` of the warp (every lane calls it). */
static inline uint32_t mlk_warp_read_u32(uint32_t v, uint32_t src) {
  return (uint32_t)__nvvm_shfl_sync_idx_i32(0xffffffffu, (int)v, src, 0x1f);
}

/* Inclusive prefix sum of v over the block's threads, in thread order (every thread calls it, in
 * uniform control flow): shuffles within each warp, then the warps' totals through `ws` (one word
 * a warp of shared memory), which keep them afterwards: the block's total is their sum. One
 * barrier; ws must not be written again until every thread has read what it needs. */
typedef uint32_t __attribute__((may_alias)) mlk_scan_word; /* tiles reuse shared words as f32 */
static inline uint32_t mlk_block_scan_u32(uint32_t v, MLK_SHARED mlk_scan_word *ws) {
  uint32_t tid = mlk_tid_here(), lane = tid & 31, warp = tid >> 5;
  v = mlk_warp_scan_u32(v);
  if (lane == 31)
    ws[warp] = v;
  __nvvm_barrier_sync(0);
  for (uint32_t i = 0; i < warp; i++)
    v += ws[i];
  return v;
}

/* The 32-bit shared-window address of a shared-memory object (what PTX's shared instructions take). */
static inline uint32_t mlk_smem_addr(const volatile MLK_SHARED void *p) {
#if defined(__NVPTX__)
  return (uint32_t)(uintptr_t)p;
#else
  return mlk_emu_smem_addr((const void *)p);
#endif
}

/* ---- the memory-model and copy-engine instructions, each written once (the tiles use them, and
 * bench/probe times them as they are); the host build runs the copy engine's in the emulator ---- */

#if defined(__NVPTX__)
/* Loads for polling a counter another SM writes: acquire at the GPU's or the system's scope, or
 * volatile (no ordering: a flag). */
static inline uint32_t mlk_ld_acquire(const uint32_t *p) {
  uint32_t v;
  __asm__ volatile("ld.acquire.gpu.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
static inline uint32_t mlk_ld_acquire_sys(const uint32_t *p) {
  uint32_t v;
  __asm__ volatile("ld.acquire.sys.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
static inline uint32_t mlk_ld_volatile(const uint32_t *p) {
  uint32_t v;
  __asm__ volatile("ld.volatile.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
/* Fences at the GPU's scope. fence.acq_rel.gpu compiles (ptxas 13, sm_90a) to MEMBAR.ALL.GPU and
 * an invalidation of the SM's L1 (CCTL.IVALL); the one-way fence.release.gpu is the MEMBAR alone.
 * Both wait for the SM's bulk copies in flight (~1 us a 32 KiB copy under load; the probe,
 * docs/performance.md, twenty-fourth session), but only the first empties the L1 of what the next
 * tasks read. A notify is a release pattern (the release fence, then relaxed reductions on the
 * counters): it needs no acquire half. The portable sm_80 PTX (ISA 7.0, which predates the one-way
 * fences; no bulk copies there) keeps fence.acq_rel.gpu. */
static inline void mlk_fence_acq_rel_gpu(void) {
  __asm__ volatile("fence.acq_rel.gpu;" ::: "memory");
}
static inline void mlk_fence_release_gpu(void) {
#if MLK_SM >= 90
  __asm__ volatile("fence.release.gpu;" ::: "memory");
#else
  mlk_fence_acq_rel_gpu();
#endif
}
static inline void mlk_red_relaxed_gpu(uint32_t *p, uint32_t v) {
  __asm__ volatile("red.relaxed.gpu.add.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
#endif

typedef float mlk_f4 __attribute__((ext_vector_type(4))); /* 16 bytes, 16-byte aligned */

/* A split matvec task's arrival at its group's counter (thread 0, after a block barrier): adds 1
 * and returns the new count, with release order for the block's writes before it and acquire
 * order for the writes of the tasks that arrived earlier. */
static inline uint32_t mlk_arrive_gpu(uint32_t *p) {
#if defined(__NVPTX__)
  uint32_t v;
  __asm__ volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], 1;" : "=r"(v) : "l"(p) : "memory");
  return v + 1;
#else
  return __atomic_add_fetch(p, 1u, __ATOMIC_ACQ_REL);
#endif
}

/* A task's arrival at its group's counter (every thread of the block, after its writes): a
 * barrier, then thread 0 counts the task in (mlk_arrive_gpu); the last of `members` puts the
 * counter back to 0 for the next run. Returns 1 in every thread of the last one's block, which
 * then sees the group's writes: a split matvec's slices, a folded split attention's chunks. */
static inline int mlk_tile_group_arrive(uint32_t *arrive, uint32_t members) {
  __nvvm_barrier_sync(0); /* every thread's writes are done */
  uint32_t last = 0;
  if (mlk_tid_here() == 0) {
    last = mlk_arrive_gpu(arrive) == members;
    if (last)
      *arrive = 0; /* every member has arrived: no one else touches it in this run */
  }
  /* a barrier that also tells every thread whether thread 0's task is the last */
  return !__nvvm_bar0_and(!last);
}

/* 16 bytes another SM wrote in this launch, read at the L2 (never from a line this SM's L1 may
 * hold from before): a split matvec's partial sums. */
static inline mlk_f4 mlk_ld_cg_f4(const float *p) {
#if defined(__NVPTX__)
  mlk_f4 v;
  __asm__ volatile("ld.global.cg.v4.f32 {%0, %1, %2, %3}, [%4];"
                   : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
                   : "l"(p)
                   : "memory");
  return v;
#else
  return *(const mlk_f4 *)p;
#endif
}
static inline float mlk_ld_cg(const float *p) {
#if defined(__NVPTX__)
  float v;
  __asm__ volatile("ld.global.cg.f32 %0, [%1];" : "=f"(v) : "l"(p) : "memory");
  return v;
#else
  return *p;
#endif
}

/* mbarrier.init with `count` expected arrivals; then, once a thread initialized its block's
 * barriers, mlk_fence_mbar_init makes them visible to the copy engine. */
static inline void mlk_mbar_init(MLK_SHARED uint64_t *bar, uint32_t count) {
#if defined(__NVPTX__)
  __asm__ volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(mlk_smem_addr(bar)), "r"(count)
                   : "memory");
#else
  mlk_emu_mbar_init(bar, count);
#endif
}
static inline void mlk_fence_mbar_init(void) {
#if defined(__NVPTX__)
  __asm__ volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#endif
}

/* Orders the generic proxy's earlier accesses (ordinary loads of a buffer) before the async
 * proxy's (the copy engine's writes into it). */
static inline void mlk_fence_proxy_async(void) {
#if defined(__NVPTX__)
  __asm__ volatile("fence.proxy.async.shared::cta;" ::: "memory");
#endif
}

/* An arrive on `bar` announcing `bytes` of copies that complete on it. */
static inline void mlk_mbar_expect_tx(MLK_SHARED uint64_t *bar, uint32_t bytes) {
#if defined(__NVPTX__)
  __asm__ volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;"
                   ::"r"(mlk_smem_addr(bar)), "r"(bytes)
                   : "memory");
#else
  mlk_emu_mbar_expect_tx(bar, bytes);
#endif
}

/* One bulk copy (sm_90) of `bytes` (a multiple of 16) from global src to shared dst, completing on
 * bar. The source lines are the first L2 gives up (an evict_first policy): the stream's weights
 * are read once a step, and a step's weights (2.5 GB for Llama-3.2-1B) pass through an L2 of
 * 50 MB many times over; with the default policy they push out what is read again soon (the
 * activations a task stages, the residual, the norms' weights, the KV cache). */
static inline void mlk_bulk_copy(MLK_SHARED void *dst, const void *src, uint32_t bytes,
                                 MLK_SHARED uint64_t *bar) {
#if defined(__NVPTX__)
  __asm__ volatile("{\n\t.reg .u64 g, pol;\n\tcvta.to.global.u64 g, %1;\n\t"
                   "createpolicy.fractional.L2::evict_first.b64 pol, 1.0;\n\t"
                   "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint"
                   " [%0], [g], %2, [%3], pol;\n\t}" ::"r"(mlk_smem_addr(dst)),
                   "l"(src), "r"(bytes), "r"(mlk_smem_addr(bar))
                   : "memory");
#else
  mlk_emu_bulk_copy(dst, src, bytes, bar);
#endif
}

/* A hint (sm_90): `bytes` (a multiple of 16) from global src into L2, for a copy that comes
 * later. */
static inline void mlk_prefetch_l2(const void *src, uint32_t bytes) {
#if defined(__NVPTX__)
  __asm__ volatile("{\n\t.reg .u64 g;\n\tcvta.to.global.u64 g, %0;\n\t"
                   "cp.async.bulk.prefetch.L2.global [g], %1;\n\t}" ::"l"(src),
                   "r"(bytes)
                   : "memory");
#else
  mlk_emu_prefetch_l2(src, bytes);
#endif
}

/* Waits until the phase of `bar` with this parity has completed (the copies that complete on it
 * have landed); mlk_mbar_test is one look, 1 when it has. */
static inline void mlk_mbar_wait(MLK_SHARED uint64_t *bar, uint32_t parity) {
#if defined(__NVPTX__)
  __asm__ volatile("{\n\t.reg .pred p;\n\tWAIT_%=:\n\t"
                   "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n\t"
                   "@!p bra WAIT_%=;\n\t}" ::"r"(mlk_smem_addr(bar)),
                   "r"(parity)
                   : "memory");
#else
  mlk_emu_mbar_wait(bar, parity);
#endif
}
#if defined(__NVPTX__)
static inline int mlk_mbar_test(MLK_SHARED uint64_t *bar, uint32_t parity) {
  uint32_t done;
  __asm__ volatile("{\n\t.reg .pred p;\n\tmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n\t"
                   "selp.u32 %0, 1, 0, p;\n\t}"
                   : "=r"(done)
                   : "r"(mlk_smem_addr(bar)), "r"(parity)
                   : "memory");
  return (int)done;
}
#endif

/* One bf16 weight through the read-only path (weights never change during a launch). */
static inline uint32_t mlk_ld_weight16(const uint16_t *p) {
#if defined(__NVPTX__)
  uint16_t h;
  __asm__("{\n\t.reg .u64 g;\n\tcvta.to.global.u64 g, %1;\n\tld.global.nc.u16 %0, [g];\n\t}"
          : "=h"(h)
          : "l"(p));
  return h;
#else
  return *p;
#endif
}

static inline float mlk_bf16_lo(uint32_t w) {
  union { uint32_t u; float f; } c = {w << 16};
  return c.f;
}
static inline float mlk_bf16_hi(uint32_t w) {
  union { uint32_t u; float f; } c = {w & 0xffff0000u};
  return c.f;
}

static inline float mlk_dev_exp(float v) { return __nvvm_ex2_approx_f(v * 1.4426950408889634f); }

static inline float mlk_dev_act(float v, int fn) {
  if (fn == MLK_FN_RELU)
    return v < 0.0f ? 0.0f : v; /* NaN passes through, as in the reference */
  if (fn == MLK_FN_SILU)
    return v / (1.0f + mlk_dev_exp(-v));
  return v;
}

#endif /* MLK_TILES_H */
