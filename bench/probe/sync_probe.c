/* sync_probe.c: device kernels that time, in isolation, the synchronization steps a megakernel
 * task pays between two ops of a decode step (compiled to PTX for sm_90a by clang at build time;
 * bench/probe/probe.c launches them and prints the table).
 *
 * A decode step of Llama-3.2-1B is ~9 dependent ops a layer, and the trace says each op boundary
 * costs several microseconds beyond its bytes: the producer's notify (a gpu-scope fence, then
 * relaxed reductions), the consumer's poll (acquire loads with a nanosleep back-off), and its
 * staging of the input row (one L2 round trip under the step's load). These kernels measure each
 * step with %globaltimer, with the rest of the chip idle, streaming HBM with loads, or issuing
 * L2 prefetches at HBM's rate, so that a design decision rests on a number rather than on a guess
 * from a whole step:
 *   - probe_handoff: two blocks on two SMs pass a token back and forth through a counter, the
 *     way a task notifies and the next op's task waits; the rest of the grid streams a buffer
 *     (or not). Variants: spin or the back-off of stdlib/tiles/sync.c; fence + relaxed reduction
 *     or one release reduction; a bare thread or the whole-block protocol (the block's threads
 *     write, barrier, notify; poll, barrier-and, read).
 *   - probe_handoff_row: the same two blocks pass a row of 2048 values each way, counted (barrier,
 *     release fence and reduction; acquire poll, barrier, loads) or flagged (each value in a
 *     64-bit word with the pass number beside it: no fence, no counter, every reader polls its
 *     own words), with or without the weight stream's bulk copies in flight on both SMs: what a
 *     task's end and the next task's input cost together, and whether a protocol without a fence
 *     escapes the copies' wait.
 *   - probe_fence: every block's thread 0 issues `copies` bulk copies of 32 KiB (or one larger
 *     one) into shared memory (HBM-bound: all blocks at once), then times one fence.acq_rel.gpu;
 *     does the fence wait for the copies in flight, per copy or per byte? `issuer` 32 has another
 *     warp issue them. With `mode` 1 the copies are a whole warp's 16-byte cp.async instead (the
 *     issuer's warp), each lane's completing on the slot's mbarrier: does a fence wait for another
 *     warp's cp.async in flight, as it waits for any bulk copy of the SM? With `mode` 2 the
 *     notify is one red.release.gpu instead of the fence and a relaxed reduction: does a release
 *     reduction wait for the copies too? With `mode` 3 the fence is the one-way fence.release.gpu
 *     (a notify needs release order only); with 4 the copies are L2 prefetches instead (the
 *     stream's deferred refills); with 5 a wait's acquire load is timed instead of the notify.
 *     probe_fence_pair: the
 *     same with the copies issued by the other block on the SM; probe_fence_cluster: issued by
 *     the other block of a two-block cluster into the fencing block's shared memory;
 *     probe_fence_issuer: the same copies, and the fence timed by the block that issued them
 *     (or by the receiver, with no cluster barrier between issue and fence); probe_fence_loader:
 *     issued by another warp of the block that raises a flag without (or with) release order,
 *     no barrier between the issue and the fence.
 *   - probe_stream: every block streams its share of a buffer through a ring of 32 KiB slots
 *     with bulk copies, as the weight stream does, and nothing else: the rate the design can
 *     reach per SM and over the chip, by slot count; with `mode` 1, warp 0's cp.async instead;
 *     on half the SMs (the most a single SM's copy engine gives); with `mode` 2 a slot is 16
 *     copies of 2 KiB from rows 4 KiB apart (a split slice's rows); probe_stream_cluster: each
 *     block's ring filled by the other block of a two-block cluster; probe_stream_cross: every
 *     block reads, its ring filled by a loader warp of its own or of its cluster peer, with a
 *     task end's notify timed while the stream runs.
 *   - probe_stage: every block reads a fresh 8 KiB input row (2048 f32, as a matvec task stages
 *     x) with 16-byte loads and a barrier; with half the blocks loading the memory system or none.
 *   - probe_frag: a tensor-core matvec task's weight loads alone (no MMAs, no x): every block
 *     reads its rows in the tile's fragment pattern with a window of 4 or 8 blocks a warp, or
 *     whole rows, or the pattern after a bulk L2 prefetch of the rows: is the pattern, the
 *     window or the loads' latency what holds the tile's MMA phase at ~13 GB/s an SM?
 * Every spin has a deadline: a probe that cannot complete records an error and returns.
 * The instructions are the tiles' own (mlk_tiles.h's memory-model and copy-engine helpers), so
 * the probe times exactly what the megakernel runs.
 */
#include <stdint.h>

#include "mlk_tiles.h"

typedef uint64_t u64;
typedef uint32_t u32;
typedef struct __attribute__((aligned(16))) uint4 {
  u32 x, y, z, w;
} uint4;
#define U4_T uint4

#define KERNEL __attribute__((nvptx_kernel))

enum { DEADLINE_NS = 2000000000u, SLOT_BYTES = 32768, MAX_COPIES = 4 };

/* The results: out[block * stride + i], nanoseconds; err[0] != 0 when a spin passed its
 * deadline. */

static inline u32 bid(void) { return __nvvm_read_ptx_sreg_ctaid_x(); }
static inline u32 nblocks(void) { return __nvvm_read_ptx_sreg_nctaid_x(); }


static inline void red_release(u32 *p) {
  __asm__ volatile("red.release.gpu.add.u32 [%0], 1;" ::"l"(p) : "memory");
}
static inline void st_volatile(u32 *p, u32 v) {
  __asm__ volatile("st.volatile.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
extern MLK_SHARED uint8_t probe_smem[] __attribute__((aligned(128)));

/* ---- background load of the blocks that do not measure, until *stop ----
 * LOAD_READ: every thread streams `words` (a power of two) 16-byte words of buf with loads, as
 * many as it can (HBM at full load, as a decode step's matvecs keep it); LOAD_PREFETCH: thread 0
 * prefetches 32 KiB of buf into L2 every microsecond (cp.async.bulk.prefetch.L2: ~33 GB/s a block,
 * the chip's HBM rate over its SMs, as the weight stream's L2 look-ahead issues them). */
enum { LOAD_NONE = 0, LOAD_READ = 1, LOAD_PREFETCH = 2 };

static void load_until(const uint4 *buf, u64 words, u32 load, const u32 *stop, u32 *sink, u32 part,
                       u32 parts) {
  u64 start = mlk_globaltimer();
  if (load == LOAD_PREFETCH) {
    if (mlk_tid() != 0)
      return;
    u64 pieces = words / (SLOT_BYTES / 16), next = start;
    for (u64 i = part; !mlk_ld_volatile(stop) && mlk_globaltimer() - start < DEADLINE_NS;
         i += parts) {
      while (mlk_globaltimer() < next)
        ;
      next += 1000;
      const uint4 *src = buf + (i % pieces) * (SLOT_BYTES / 16);
      mlk_prefetch_l2(src, SLOT_BYTES);
    }
    return;
  }
  if (load != LOAD_READ)
    return;
  u32 acc = 0;
  for (u64 base = (u64)part * 256; !mlk_ld_volatile(stop); base += (u64)parts * 256 * 8) {
    for (int j = 0; j < 8; j++) {
      u64 i = (base + (u64)j * parts * 256 + mlk_tid()) & (words - 1);
      uint4 v;
      __asm__ volatile("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];"
                       : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                       : "l"(buf + i));
      acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (mlk_globaltimer() - start > DEADLINE_NS)
      break;
  }
  if (acc == 0x9e3779b9u) /* keeps the loads; practically never true */
    sink[0] = acc;
}

/* ---- probe_handoff ---- */

enum {
  HANDOFF_BACKOFF = 1, /* poll as sync.c does: nanosleep 32 ns doubling to 256 ns */
  HANDOFF_RELEASE_RED = 2, /* one red.release instead of fence + red.relaxed */
  HANDOFF_BLOCK = 4, /* the block protocol: threads write, barrier, notify / poll, barrier, read */
};

/* Thread 0: waits until *c reaches target; returns 0 at the deadline (err set). */
static int wait_for(const u32 *c, u32 target, int backoff, u32 *err) {
  u32 ns = 32;
  u64 start = mlk_globaltimer();
  while ((int32_t)(mlk_ld_acquire(c) - target) < 0) {
    if (backoff) {
      __nvvm_nanosleep(ns);
      if (ns < 256)
        ns *= 2;
    }
    if (mlk_globaltimer() - start > DEADLINE_NS) {
      __atomic_store_n(err, 1u, __ATOMIC_RELAXED);
      return 0;
    }
  }
  return 1;
}

static void notify(u32 *c, int variant) {
  if (variant & HANDOFF_RELEASE_RED) {
    red_release(c);
  } else {
    mlk_fence_acq_rel_gpu();
    mlk_red_relaxed_gpu(c, 1);
  }
}

/* Blocks 0 and 1 pass the token `iters` times each way through counters cnt[0] (0 -> 1) and
 * cnt[32] (1 -> 0; another 128-byte line), each pass also carrying data[]: the block's threads
 * write it before the notify (HANDOFF_BLOCK) and the other block reads and checks it. Block 0
 * records the round trips' mean in out[0] and the last pass's check in out[1] (0: data as
 * written). Blocks from 2 on load the memory system (`load`) until block 0 is done. */
KERNEL void probe_handoff(u32 *cnt, u32 *data, u64 *out, u32 *err, u32 *stop, const uint4 *buf,
                          u64 words, u32 load, u32 iters, u32 variant) {
  u32 b = bid();
  if (b >= 2) {
    load_until(buf, words, load, stop, err + 1, b - 2, nblocks() - 2);
    return;
  }
  u32 *mine = b == 0 ? cnt : cnt + 32, *theirs = b == 0 ? cnt + 32 : cnt;
  int block = variant & HANDOFF_BLOCK, backoff = variant & HANDOFF_BACKOFF;
  u32 bad = 0;
  __nvvm_barrier_sync(0);
  u64 t0 = mlk_globaltimer();
  for (u32 it = 1; it <= iters; it++) {
    /* block 1 waits for pass it of block 0 first; block 0 sends first */
    if (b == 1 || it > 1) {
      int ok = mlk_tid() == 0 ? wait_for(theirs, b == 1 ? it : it - 1, backoff, err) : 1;
      if (block) {
        ok = __nvvm_bar0_and(ok);
        if (ok && mlk_ld_volatile(&data[mlk_tid()]) != (b == 1 ? it : it - 1) * 1000u + mlk_tid())
          bad++;
      } else {
        ok = __nvvm_bar0_and(ok);
      }
      if (!ok)
        break;
    }
    if (block) {
      data[mlk_tid()] = it * 1000u + mlk_tid();
      __nvvm_barrier_sync(0);
      if (mlk_tid() == 0)
        notify(mine, variant);
    } else if (mlk_tid() == 0) {
      data[0] = it;
      notify(mine, variant);
    }
  }
  /* block 0 waits for the last reply */
  if (b == 0) {
    int ok = mlk_tid() == 0 ? wait_for(theirs, iters, backoff, err) : 1;
    __nvvm_bar0_and(ok);
    u64 t1 = mlk_globaltimer();
    if (mlk_tid() == 0) {
      out[0] = (t1 - t0) / iters;
      st_volatile(stop, 1);
    }
  }
  if (bad)
    __atomic_fetch_add((u32 *)&out[1], bad, __ATOMIC_RELAXED);
}

/* ---- probe_fence ---- */

/* A task's notify, timed: a word of output stored, the fence (its ns returned, its end in *end
 * when asked), then the counter's relaxed reduction. The fence is fence.acq_rel.gpu, or with
 * `one_way` the release-only fence.release.gpu (a release pattern all the same: the fence, then a
 * strong write; a notify needs no acquire). */
static inline u64 timed_notify(u32 *counter, u32 word, u64 *end, int one_way) {
  counter[1] = word;
  u64 t0 = mlk_globaltimer();
  if (one_way)
    mlk_fence_release_gpu();
  else
    mlk_fence_acq_rel_gpu();
  u64 t1 = mlk_globaltimer();
  mlk_red_relaxed_gpu(counter, 1);
  if (end)
    *end = t1;
  return t1 - t0;
}

/* The same notify as one red.release.gpu (no fence): the time its thread spends on it. */
static inline u64 timed_notify_release(u32 *counter, u32 word) {
  counter[1] = word;
  u64 t0 = mlk_globaltimer();
  red_release(counter);
  return mlk_globaltimer() - t0;
}

/* A wait's last poll, timed: one ld.acquire.gpu of the counter, to the point where a branch on its
 * value has been taken (the counter never holds the value tested). */
static inline u64 timed_acquire(u32 *counter) {
  u64 t0 = mlk_globaltimer();
  u32 v = mlk_ld_acquire(counter);
  if (v == 0xfffffff0u)
    counter[2] = v;
  return mlk_globaltimer() - t0;
}

#define bars ((MLK_SHARED u64 *)probe_smem)
#define ring (probe_smem + 128)

/* ---- probe_handoff_row ---- */

/* An op boundary with its data: blocks 0 and 1 pass a row of 2048 values back and forth, the way
 * a matvec task's output becomes the next op's input, in one of two protocols:
 *   counted (0): the producer's threads store the row, meet at a barrier, and thread 0 notifies
 *     (the one-way release fence, then a relaxed reduction: the megakernel's notify); the
 *     consumer's thread 0 polls the counter with acquire loads, a barrier, then every thread
 *     reads the row;
 *   flagged (ROW_FLAGGED): every value travels in a 64-bit word with the pass number in its high
 *     half (single-copy atomic: a reader sees a word whole, old or new), stored relaxed at the
 *     GPU's scope; no barrier and no fence on the producer's side, and the consumer's threads
 *     poll their own words until each carries the pass, then a barrier.
 * With ROW_STREAM each of the two blocks also keeps the weight stream's copies in flight: warp
 * 7's first thread refills a ring of three 32 KiB slots with bulk copies from HBM as each lands,
 * all along (a megakernel SM's state at a task's end), so the counted notify's fence meets
 * them; warps 0-6 run the protocol either way. Blocks from 2 on load the memory system (`load`).
 * out[0] = the round trip's mean (ns), out[1] = values read that were not the pass's. */
enum { ROW_FLAGGED = 1, ROW_STREAM = 2, ROW_THREADS = 224, ROW_VALUES = 2048, ROW_SLOTS = 3 };

static inline void bar_row(void) {
  __asm__ volatile("bar.sync 1, %0;" ::"n"(ROW_THREADS) : "memory");
}
static inline void st_relaxed_v2u64(u64 *p, u64 a, u64 b) {
  __asm__ volatile("st.relaxed.gpu.global.v2.u64 [%0], {%1, %2};" ::"l"(p), "l"(a), "l"(b)
                   : "memory");
}
static inline void ld_relaxed_v2u64(const u64 *p, u64 *a, u64 *b) {
  __asm__ volatile("ld.relaxed.gpu.global.v2.u64 {%0, %1}, [%2];"
                   : "=l"(*a), "=l"(*b)
                   : "l"(p)
                   : "memory");
}
/* Warp 7's first thread: the ring's copies, refilled as they land, until *done. */
static void row_stream(const uint8_t *src, u64 chunks, u32 first, volatile MLK_SHARED u32 *done,
                       u32 *err) {
  u64 start = mlk_globaltimer();
  u32 c = 0;
  for (; !*done; c++) {
    u32 slot = c % ROW_SLOTS;
    if (c >= ROW_SLOTS)
      while (!mlk_mbar_test(&bars[slot], (c / ROW_SLOTS - 1) & 1))
        if (mlk_globaltimer() - start > DEADLINE_NS) {
          __atomic_store_n(err, 1u, __ATOMIC_RELAXED);
          return;
        }
    mlk_mbar_expect_tx(&bars[slot], SLOT_BYTES);
    mlk_bulk_copy(ring + slot * SLOT_BYTES, src + ((first + (u64)c) % chunks) * SLOT_BYTES,
                  SLOT_BYTES, &bars[slot]);
  }
  for (u32 d = c > ROW_SLOTS ? c - ROW_SLOTS : 0; d < c; d++) /* the last copies land */
    while (!mlk_mbar_test(&bars[d % ROW_SLOTS], (d / ROW_SLOTS) & 1))
      if (mlk_globaltimer() - start > DEADLINE_NS) {
        __atomic_store_n(err, 1u, __ATOMIC_RELAXED);
        return;
      }
}

/* The value of element i in pass p: below 2^24 for the probe's passes (<= 2000), so exact as a
 * float too (the counted row's values are floats, as a task's output). */
static inline u32 row_value(u32 p, u32 i) { return p * 4096u + i; }

/* Receives pass p: 1 when every thread saw it before the deadline; bad counts wrong values. */
static int row_receive(const u32 *theirs, const void *row, u32 p, int flagged, u32 *bad,
                       volatile MLK_SHARED u32 *okw, u32 *err) {
  u32 tid = mlk_tid();
  int ok = 1;
  if (flagged) {
    const u64 *w = (const u64 *)row;
    u64 start = mlk_globaltimer();
    for (u32 i = tid; i < ROW_VALUES / 2 && ok; i += ROW_THREADS) {
      u64 a, b;
      for (;;) {
        ld_relaxed_v2u64(w + 2 * i, &a, &b);
        if ((u32)(a >> 32) == p && (u32)(b >> 32) == p)
          break;
        if (mlk_globaltimer() - start > DEADLINE_NS) {
          __atomic_store_n(err, 1u, __ATOMIC_RELAXED);
          ok = 0;
          break;
        }
      }
      *bad += ((u32)a != row_value(p, 2 * i)) + ((u32)b != row_value(p, 2 * i + 1));
    }
    if (!ok)
      *okw = 0;
    bar_row();
    return *okw != 0;
  }
  if (tid == 0 && !wait_for(theirs, p, 0, err))
    *okw = 0;
  bar_row();
  if (!*okw)
    return 0;
  const float *r = (const float *)row; /* read at the L2, as a task stages x after its wait */
  for (u32 i = tid; i < ROW_VALUES / 4; i += ROW_THREADS) {
    mlk_f4 v = mlk_ld_cg_f4(r + 4 * i);
    *bad += (v.x != (float)row_value(p, 4 * i)) + (v.y != (float)row_value(p, 4 * i + 1)) +
            (v.z != (float)row_value(p, 4 * i + 2)) + (v.w != (float)row_value(p, 4 * i + 3));
  }
  return 1;
}

/* Sends pass p. */
static void row_send(u32 *mine, void *row, u32 p, int flagged) {
  u32 tid = mlk_tid();
  if (flagged) {
    u64 *w = (u64 *)row, hi = (u64)p << 32;
    for (u32 i = tid; i < ROW_VALUES / 2; i += ROW_THREADS)
      st_relaxed_v2u64(w + 2 * i, hi | row_value(p, 2 * i), hi | row_value(p, 2 * i + 1));
    return;
  }
  mlk_f4 *r = (mlk_f4 *)row;
  for (u32 i = tid; i < ROW_VALUES / 4; i += ROW_THREADS) {
    mlk_f4 v = {(float)row_value(p, 4 * i), (float)row_value(p, 4 * i + 1),
                (float)row_value(p, 4 * i + 2), (float)row_value(p, 4 * i + 3)};
    r[i] = v;
  }
  bar_row(); /* every thread's stores before thread 0's release */
  if (tid == 0) {
    mlk_fence_release_gpu();
    mlk_red_relaxed_gpu(mine, 1);
  }
}

KERNEL void probe_handoff_row(u32 *cnt, u64 *rows, u64 *out, u32 *err, u32 *stop,
                              const uint4 *buf, u64 words, u32 load, u32 iters, u32 variant) {
  u32 b = bid(), tid = mlk_tid();
  if (b >= 2) {
    load_until(buf, words, load, stop, err + 1, b - 2, nblocks() - 2);
    return;
  }
  volatile MLK_SHARED u32 *done = (volatile MLK_SHARED u32 *)(probe_smem + 64);
  volatile MLK_SHARED u32 *okw = (volatile MLK_SHARED u32 *)(probe_smem + 68);
  if (tid == 0) {
    for (u32 s = 0; s < ROW_SLOTS; s++)
      mlk_mbar_init(&bars[s], 1);
    mlk_fence_mbar_init();
    *done = 0;
    *okw = 1;
  }
  __nvvm_barrier_sync(0);
  if (tid >= ROW_THREADS) {
    if (tid == ROW_THREADS && (variant & ROW_STREAM))
      row_stream((const uint8_t *)buf, words * 16 / SLOT_BYTES, b * 4096u, done, err);
    return;
  }
  int flagged = variant & ROW_FLAGGED;
  u32 *mine = b == 0 ? cnt : cnt + 32, *theirs = b == 0 ? cnt + 32 : cnt;
  /* each direction's row: ROW_VALUES words of 8 bytes (the counted protocol uses half) */
  u64 *out_row = rows + (u64)b * ROW_VALUES, *in_row = rows + (u64)(b ^ 1u) * ROW_VALUES;
  u32 bad = 0;
  bar_row();
  u64 t0 = mlk_globaltimer();
  int ok = 1;
  for (u32 it = 1; it <= iters && ok; it++) {
    if (b == 1 || it > 1)
      ok = row_receive(theirs, in_row, b == 1 ? it : it - 1, flagged, &bad, okw, err);
    if (ok)
      row_send(mine, out_row, it, flagged);
  }
  if (b == 0 && ok) {
    row_receive(theirs, in_row, iters, flagged, &bad, okw, err);
    u64 t1 = mlk_globaltimer();
    if (tid == 0) {
      out[0] = (t1 - t0) / iters;
      st_volatile(stop, 1);
    }
  }
  if (b == 0 && !ok && tid == 0)
    st_volatile(stop, 1);
  if (tid == 0)
    *done = 1;
  if (bad)
    __atomic_fetch_add((u32 *)&out[1], bad, __ATOMIC_RELAXED);
}

/* `bytes` (a multiple of 512) from global src to shared dst by the calling warp, 16 bytes a lane
 * per cp.async (through L2 only), then each lane's arrive on bar once its own copies have landed:
 * bar expects 32 arrivals a phase. */
static inline void warp_copy(MLK_SHARED uint8_t *dst, const uint8_t *src, u32 bytes,
                             MLK_SHARED u64 *bar) {
  u32 lane = mlk_tid() & 31;
  for (u32 off = lane * 16; off < bytes; off += 512)
    __asm__ volatile("{\n\t.reg .u64 g;\n\tcvta.to.global.u64 g, %1;\n\t"
                     "cp.async.cg.shared.global [%0], [g], 16;\n\t}" ::"r"(mlk_smem_addr(dst + off)),
                     "l"(src + off)
                     : "memory");
  __asm__ volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" ::"r"(mlk_smem_addr(bar))
                   : "memory");
}

/* Every block, `iters` times: thread `issuer` (0, or 32: lane 0 of warp 1) issues `copies` bulk
 * copies of `size` bytes (copies * size <= MAX_COPIES * SLOT_BYTES) from buf (a different place
 * each time: HBM, not L2), a block barrier, then thread 0 stores a word, times one
 * fence.acq_rel.gpu, and relaxed-reduces a counter (the notify); then the copies are waited for.
 * out[block * iters + it] = the fence's ns; the copies' time from issue to landing goes to
 * out[nblocks * iters + block * iters + it]. Copies of several sizes for the same bytes say
 * whether the fence waits per copy or per byte. mode 0: bulk copies; 1: the issuer's warp copies
 * with cp.async, 16 bytes a lane; 2: bulk copies, and the notify is one red.release.gpu (timed)
 * instead of the fence and a relaxed reduction; 3: bulk copies, the fence a fence.release.gpu; 4:
 * L2 prefetches (cp.async.bulk.prefetch.L2) of the same bytes instead of copies, nothing lands in
 * shared memory (does the fence wait for prefetches in flight?); 5: bulk copies, and one
 * ld.acquire.gpu (a wait's poll) timed instead of the notify. */
KERNEL void probe_fence(const uint8_t *buf, u64 bytes, u64 *out, u32 *err, u32 *cnt, u32 iters,
                        u32 copies, u32 issuer, u32 size, u32 mode) {
  u32 b = bid(), nb = nblocks();
  if (mlk_tid() == 0) {
    for (u32 s = 0; s < MAX_COPIES; s++)
      mlk_mbar_init(&bars[s], mode == 1 ? 32 : 1);
    mlk_fence_mbar_init();
  }
  __nvvm_barrier_sync(0);
  u64 chunks = bytes / size;
  for (u32 it = 0; it < iters; it++) {
    u64 issued = 0;
    if (mlk_tid() == issuer)
      issued = mlk_globaltimer();
    if (mode == 1 ? mlk_tid() / 32 == issuer / 32 : mlk_tid() == issuer)
      for (u32 s = 0; s < copies; s++) {
        u64 c = ((u64)it * nb * MAX_COPIES + (u64)b * MAX_COPIES + s) % chunks;
        if (mode == 1) {
          warp_copy(ring + s * size, buf + c * size, size, &bars[s]);
          continue;
        }
        if (mode == 4) {
          mlk_prefetch_l2(buf + c * size, size);
          continue;
        }
        mlk_mbar_expect_tx(&bars[s], size);
        mlk_bulk_copy(ring + s * size, buf + c * size, size, &bars[s]);
      }
    __nvvm_barrier_sync(0);
    if (mlk_tid() == 0)
      out[(u64)b * iters + it] = mode == 2   ? timed_notify_release(&cnt[b * 32], it)
                                 : mode == 5 ? timed_acquire(&cnt[b * 32])
                                             : timed_notify(&cnt[b * 32], it, 0, mode == 3);
    int ok = 1;
    if (mlk_tid() == issuer) {
      u64 start = mlk_globaltimer();
      for (u32 s = 0; s < copies && ok && mode != 4; s++)
        while (ok && !mlk_mbar_test(&bars[s], it & 1))
          if (mlk_globaltimer() - start > DEADLINE_NS) {
            __atomic_store_n(err, 1u, __ATOMIC_RELAXED);
            ok = 0;
          }
      out[(u64)nb * iters + (u64)b * iters + it] = copies ? mlk_globaltimer() - issued : 0;
    }
    if (!__nvvm_bar0_and(ok))
      return;
  }
}

/* ---- probe_fence_loader ---- */

/* Does a fence wait for bulk copies that a warp it never synchronizes with has in flight? Every
 * block, `iters` times: thread 224 (warp 7, a loader warp's place) issues `copies` bulk copies of
 * 32 KiB into the block's shared memory, then raises a shared flag; thread 0 waits for the flag,
 * times one fence.acq_rel.gpu and its notify, and looks once whether the copies have all landed.
 * With `ordered` 0 the flag is a volatile store and load (the copies' issue is not ordered before
 * the fence: as a loader warp outside the compute threads' barriers would be); with 1 a release
 * store and an acquire load at the block's scope (ordered, as a barrier between issuer and fencer
 * would make it). out[b * iters + it] = the fence's ns; out[nb * iters + b * iters + it] = 1 when
 * the copies had not all landed when it ended. */
KERNEL void probe_fence_loader(const uint8_t *buf, u64 bytes, u64 *out, u32 *err, u32 *cnt,
                               u32 iters, u32 copies, u32 ordered) {
  u32 b = bid(), nb = nblocks(), tid = mlk_tid();
  MLK_SHARED u32 *flag = (MLK_SHARED u32 *)(probe_smem + 64);
  if (tid == 0) {
    for (u32 s = 0; s < MAX_COPIES; s++)
      mlk_mbar_init(&bars[s], 1);
    *flag = 0;
    mlk_fence_mbar_init();
  }
  __nvvm_barrier_sync(0);
  u64 chunks = bytes / SLOT_BYTES;
  int ok = 1;
  for (u32 it = 0; it < iters && ok; it++) {
    if (tid == 224) {
      for (u32 s = 0; s < copies; s++) {
        u64 c = ((u64)it * nb * MAX_COPIES + (u64)b * MAX_COPIES + s) % chunks;
        mlk_mbar_expect_tx(&bars[s], SLOT_BYTES);
        mlk_bulk_copy(ring + s * SLOT_BYTES, buf + c * SLOT_BYTES, SLOT_BYTES, &bars[s]);
      }
      if (ordered)
        __asm__ volatile("st.release.cta.shared::cta.u32 [%0], %1;" ::"r"(mlk_smem_addr(flag)),
                         "r"(it + 1)
                         : "memory");
      else
        *(volatile MLK_SHARED u32 *)flag = it + 1;
    }
    if (tid == 0) {
      u64 start = mlk_globaltimer();
      for (;;) {
        u32 v;
        if (ordered)
          __asm__ volatile("ld.acquire.cta.shared::cta.u32 %0, [%1];"
                           : "=r"(v)
                           : "r"(mlk_smem_addr(flag))
                           : "memory");
        else
          v = *(volatile MLK_SHARED u32 *)flag;
        if (v == it + 1)
          break;
        if (mlk_globaltimer() - start > DEADLINE_NS) {
          __atomic_store_n(err, 1u, __ATOMIC_RELAXED);
          ok = 0;
          break;
        }
      }
      out[(u64)b * iters + it] = timed_notify(&cnt[b * 32], it, 0, 0);
      int all = 1;
      for (u32 s = 0; s < copies; s++)
        all = all && mlk_mbar_test(&bars[s], it & 1);
      out[(u64)nb * iters + (u64)b * iters + it] = !all;
      for (u32 s = 0; s < copies && ok; s++)
        while (ok && !mlk_mbar_test(&bars[s], it & 1))
          if (mlk_globaltimer() - start > DEADLINE_NS) {
            __atomic_store_n(err, 1u, __ATOMIC_RELAXED);
            ok = 0;
          }
    }
    ok = __nvvm_bar0_and(ok); /* landed: the next copies may write the slots */
  }
}

/* ---- probe_fence_cluster ---- */

static inline u32 smid(void) {
  u32 v;
  __asm__ volatile("mov.u32 %0, %%smid;" : "=r"(v));
  return v;
}

static inline u32 cluster_rank(void) {
  u32 v;
  __asm__ volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(v));
  return v;
}
static inline void cluster_sync(void) {
  __asm__ volatile("barrier.cluster.arrive.release.aligned;\n\t"
                   "barrier.cluster.wait.acquire.aligned;" ::: "memory");
}
/* The shared-window address `a` of this CTA, in the cluster's CTA `rank`. */
static inline u32 cluster_addr(u32 a, u32 rank) {
  u32 r;
  __asm__ volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(rank));
  return r;
}

/* One SLOT_BYTES bulk copy from global src into a cluster peer's shared memory at cluster address
 * dst, completing on the peer's mbarrier at cluster address bar (its expected bytes raised
 * first). */
static inline void peer_copy(u32 dst, const uint8_t *src, u32 bar) {
  __asm__ volatile("mbarrier.arrive.expect_tx.release.cluster.shared::cluster.b64 _, [%0], %1;"
                   ::"r"(bar), "r"((u32)SLOT_BYTES)
                   : "memory");
  __asm__ volatile("{\n\t.reg .u64 g;\n\tcvta.to.global.u64 g, %1;\n\t"
                   "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], "
                   "[g], %2, [%3];\n\t}" ::"r"(dst), "l"(src), "r"((u32)SLOT_BYTES), "r"(bar)
                   : "memory");
}

/* Clusters of two blocks: block rank 1 (the loader) issues `copies` bulk copies of 32 KiB into
 * block rank 0's shared memory, completing on rank 0's mbarriers; then rank 0's thread 0 times
 * one fence.acq_rel.gpu and its notify, as a task's end would, and waits for the copies. Does a
 * block's fence wait for bulk copies another block of its cluster issued into its memory (if not,
 * a loader block could feed a computing one whose notifies never wait for weights in flight)?
 * out[pair * iters + it] = the fence's ns; out[npairs * iters + block] = the block's SM. */
KERNEL void probe_fence_cluster(const uint8_t *buf, u64 bytes, u64 *out, u32 *err, u32 *cnt,
                                u32 iters, u32 copies) {
  u32 rank = cluster_rank(), pair = bid() / 2, npairs = nblocks() / 2;
  if (mlk_tid() == 0 && rank == 0) {
    for (u32 s = 0; s < MAX_COPIES; s++)
      mlk_mbar_init(&bars[s], 1);
    mlk_fence_mbar_init(); /* release at cluster scope: the loader arrives on them */
  }
  cluster_sync();
  u64 chunks = bytes / SLOT_BYTES;
  u32 rbar = cluster_addr(mlk_smem_addr(bars), 0), rring = cluster_addr(mlk_smem_addr(ring), 0);
  for (u32 it = 0; it < iters; it++) {
    if (rank == 1 && mlk_tid() == 0)
      for (u32 s = 0; s < copies; s++) {
        u64 c = ((u64)it * npairs * MAX_COPIES + (u64)pair * MAX_COPIES + s) % chunks;
        peer_copy(rring + s * SLOT_BYTES, buf + c * SLOT_BYTES, rbar + 8 * s);
      }
    cluster_sync(); /* the copies are issued */
    if (rank == 0 && mlk_tid() == 0) {
      out[(u64)pair * iters + it] = timed_notify(&cnt[pair * 32], it, 0, 0);
      u64 start = mlk_globaltimer();
      for (u32 s = 0; s < copies; s++)
        while (!mlk_mbar_test(&bars[s], it & 1))
          if (mlk_globaltimer() - start > DEADLINE_NS) {
            __atomic_store_n(err, 1u, __ATOMIC_RELAXED);
            break;
          }
    }
    cluster_sync(); /* landed: the next copies may write the slots */
  }
  if (mlk_tid() == 0)
    out[(u64)npairs * iters + bid()] = smid();
}

/* A loader thread's loop: `chunks` chunks of 32 KiB from src into the ring at cluster address
 * rring (slot s at rring + s * SLOT_BYTES, completing on the full mbarrier at rfull + 8 s, as
 * peer_copy), chunk c into slot c % slots once its reader has freed the slot's previous chunk (an
 * arrive on this block's empty[slot]). */
static void load_ring(const uint8_t *src, u32 chunks, u32 slots, MLK_SHARED u64 *empty, u32 rfull,
                      u32 rring, u32 *err) {
  for (u32 c = 0; c < chunks; c++) {
    u32 slot = c % slots;
    if (c >= slots) {
      u64 start = mlk_globaltimer();
      while (!mlk_mbar_test(&empty[slot], (c / slots - 1) & 1))
        if (mlk_globaltimer() - start > DEADLINE_NS) {
          __atomic_store_n(err, 1u, __ATOMIC_RELAXED);
          break;
        }
    }
    peer_copy(rring + slot * SLOT_BYTES, src + (u64)c * SLOT_BYTES, rfull + 8 * slot);
  }
}

/* ---- probe_fence_issuer ---- */

/* Clusters of two: rank 1 issues `copies` bulk copies of 32 KiB into rank 0's shared memory
 * (completing on rank 0's mbarriers), then one of the two times a fence.acq_rel.gpu and its
 * notify: with `fencer` 1 the issuer itself, right after issuing (does a fence wait for copies
 * its block issued into another SM's memory?); with `fencer` 0 the receiver, once a plain store
 * of the issuer's into its shared memory says the copies are issued (probe_fence_cluster's
 * question again, without a cluster barrier's release between issue and fence, which might
 * itself wait for the copies). No cluster barrier between issue and fence either way.
 * out[pair * iters + it] = the fence's ns; out[P + pair * iters + it] = 1 when the copies had not
 * all landed when the fence ended (P = npairs * iters). */
KERNEL void probe_fence_issuer(const uint8_t *buf, u64 bytes, u64 *out, u32 *err, u32 *cnt,
                               u32 iters, u32 copies, u32 fencer) {
  u32 rank = cluster_rank(), pair = bid() / 2, npairs = nblocks() / 2;
  MLK_SHARED u32 *flag = (MLK_SHARED u32 *)(probe_smem + 64);
  MLK_SHARED u64 *fence_end = (MLK_SHARED u64 *)(probe_smem + 72);
  if (mlk_tid() == 0) {
    for (u32 s = 0; s < MAX_COPIES; s++)
      mlk_mbar_init(&bars[s], 1);
    *flag = 0, *fence_end = 0;
    mlk_fence_mbar_init();
  }
  cluster_sync();
  u64 chunks = bytes / SLOT_BYTES, P = (u64)npairs * iters;
  u32 rbar = cluster_addr(mlk_smem_addr(bars), 0), rring = cluster_addr(mlk_smem_addr(ring), 0);
  u32 rflag = cluster_addr(mlk_smem_addr(flag), 0), rend = cluster_addr(mlk_smem_addr(fence_end), 0);
  for (u32 it = 0; it < iters; it++) {
    if (rank == 1 && mlk_tid() == 0) {
      for (u32 s = 0; s < copies; s++) {
        u64 c = ((u64)it * npairs * MAX_COPIES + (u64)pair * MAX_COPIES + s) % chunks;
        peer_copy(rring + s * SLOT_BYTES, buf + c * SLOT_BYTES, rbar + 8 * s);
      }
      if (fencer == 1) {
        u64 end;
        out[(u64)pair * iters + it] = timed_notify(&cnt[pair * 32], it, &end, 0);
        __asm__ volatile("st.shared::cluster.u64 [%0], %1;" ::"r"(rend), "l"(end) : "memory");
      } else {
        __asm__ volatile("st.shared::cluster.u32 [%0], %1;" ::"r"(rflag), "r"(it + 1) : "memory");
      }
    }
    if (rank == 0 && mlk_tid() == 0) {
      u64 start = mlk_globaltimer(), landed = 0, end = 0;
      int ok = 1;
      if (fencer == 0) {
        while (ok && *(volatile MLK_SHARED u32 *)flag != it + 1)
          ok = mlk_globaltimer() - start < DEADLINE_NS;
        out[(u64)pair * iters + it] = timed_notify(&cnt[pair * 32], it, &end, 0);
        int all = 1;
        for (u32 s = 0; s < copies; s++)
          all = all && mlk_mbar_test(&bars[s], it & 1);
        out[P + (u64)pair * iters + it] = !all;
      }
      for (u32 s = 0; s < copies && ok; s++)
        while (ok && !mlk_mbar_test(&bars[s], it & 1))
          ok = mlk_globaltimer() - start < DEADLINE_NS;
      landed = mlk_globaltimer();
      if (fencer == 1) {
        while (ok && (end = *(volatile MLK_SHARED u64 *)fence_end) == 0)
          ok = mlk_globaltimer() - start < DEADLINE_NS;
        out[P + (u64)pair * iters + it] = copies && landed > end;
        *fence_end = 0;
      }
      if (!ok)
        __atomic_store_n(err, 1u, __ATOMIC_RELAXED);
    }
    cluster_sync(); /* landed and recorded: the next copies may write the slots */
  }
}

/* ---- probe_stream_cross ---- */

/* Every block of clusters of two streams its `per_block` bytes of buf through a ring of `slots`
 * slots of 32 KiB, as the weight stream does, but the copies are issued by a loader thread of
 * its own (thread 224: warp 7 is the loader, warps 0-6 read) and, with `peer` 1, by the loader of
 * the other block of its cluster on another SM (each SM's copy engine feeding the other's ring,
 * so that no SM has copies of its own in flight into its own memory); with `peer` 0 each
 * block's loader fills its own ring (the same instructions, addresses of its own rank). A slot's
 * "full" mbarrier is in the reading block (the copies complete on it), its "empty" one in the
 * loader's block (the reader's thread 0 arrives there once its warps have read the chunk). With
 * `fence`, the reader's thread 0 times a notify (fence.acq_rel.gpu and a relaxed reduction) after
 * every fourth chunk: the cost of a task's end while the stream runs, with the SM's own copies in
 * flight (peer 0) or only its copies into the peer (peer 1).
 * out[block] = the block's ns from its start to its last chunk read; out[nblocks + block * 64 + i]
 * its fence samples (up to 64). */
enum { CROSS_READERS = 224, CROSS_LOADER = 224, CROSS_FENCES = 64 };
KERNEL void probe_stream_cross(const uint8_t *buf, u64 per_block, u64 *out, u32 *err, u32 *cnt,
                               u32 slots, u32 peer, u32 fence) {
  u32 rank = cluster_rank(), b = bid(), nb = nblocks(), other = rank ^ 1u;
  MLK_SHARED u64 *full = bars, *empty = bars + MAX_COPIES;
  u32 tid = mlk_tid();
  if (tid == 0) {
    for (u32 s = 0; s < slots; s++) {
      mlk_mbar_init(&full[s], 1);
      mlk_mbar_init(&empty[s], 1);
    }
    mlk_fence_mbar_init();
  }
  cluster_sync();
  u32 chunks = (u32)(per_block / SLOT_BYTES);
  u64 t0 = mlk_globaltimer();
  if (tid == CROSS_LOADER) { /* fills the ring of block `dst_rank` with that block's range */
    u32 dst_rank = peer ? other : rank;
    u32 dst_block = peer ? (b ^ 1u) : b;
    const uint8_t *src = buf + (u64)dst_block * per_block;
    u32 rfull = cluster_addr(mlk_smem_addr(full), dst_rank);
    u32 rring = cluster_addr(mlk_smem_addr(ring), dst_rank);
    load_ring(src, chunks, slots, empty, rfull, rring, err);
  } else if (tid < CROSS_READERS) {
    u32 rempty = cluster_addr(mlk_smem_addr(empty), peer ? other : rank);
    u32 acc = 0, nf = 0;
    int ok = 1;
    for (u32 c = 0; c < chunks; c++) {
      u32 slot = c % slots;
      u64 start = mlk_globaltimer();
      while (ok && !mlk_mbar_test(&full[slot], (c / slots) & 1))
        if (mlk_globaltimer() - start > DEADLINE_NS) {
          __atomic_store_n(err, 1u, __ATOMIC_RELAXED);
          ok = 0;
        }
      const MLK_SHARED uint4 *chunk = (const MLK_SHARED uint4 *)(ring + slot * SLOT_BYTES);
      for (u32 i = tid; i < SLOT_BYTES / 16; i += CROSS_READERS) {
        uint4 v = chunk[i];
        acc += v.x ^ v.w;
      }
      __asm__ volatile("bar.sync 1, %0;" ::"n"(CROSS_READERS) : "memory");
      if (tid == 0) {
        __asm__ volatile("mbarrier.arrive.release.cluster.shared::cluster.b64 _, [%0];"
                         ::"r"(rempty + 8 * slot)
                         : "memory");
        if (fence && (c & 3) == 3 && nf < CROSS_FENCES)
          out[nb + (u64)b * CROSS_FENCES + nf++] = timed_notify(&cnt[(b & 1023) * 32], c, 0, 0);
      }
    }
    if (tid == 0)
      out[b] = mlk_globaltimer() - t0;
    if (acc == 0x9e3779b9u) /* keeps the reads; practically never true */
      err[1] = acc;
  }
  cluster_sync(); /* no block leaves while copies or arrivals may still target it */
}

/* ---- probe_fence_pair ---- */

/* Two blocks on every SM (the launch's shared memory allows no third): the first to arrive on an
 * SM (an atomic on cnt[PAIR_ROLE + smid]) is the copier, the second the notifier. `iters` times:
 * the copier's thread 0 issues `copies` bulk copies of 32 KiB and raises its SM's flag; the
 * notifier's thread 0 waits for the flag, times one fence.acq_rel.gpu, and acknowledges; the
 * copier waits for its copies and the acknowledgement. Does a block's fence wait for the copies
 * of another block on its SM (if not, a megakernel could notify from a block that streams
 * nothing)? out[smid * iters + it] = the notifier's fence ns; out[nsm * iters + smid * iters + it]
 * = 1 when the copies landed after that fence ended (the fence did not wait for them), else 0. */
enum { PAIR_ROLE = 16384, PAIR_FLAG = 17408, PAIR_ACK = 18432, PAIR_END = 19456 };
KERNEL void probe_fence_pair(const uint8_t *buf, u64 bytes, u64 *out, u32 *err, u32 *cnt,
                             u32 iters, u32 copies, u32 nsm) {
  MLK_SHARED u32 *role = (MLK_SHARED u32 *)(probe_smem + 64);
  u32 sm = smid();
  if (mlk_tid() == 0) {
    for (u32 s = 0; s < MAX_COPIES; s++)
      mlk_mbar_init(&bars[s], 1);
    mlk_fence_mbar_init();
    *role = sm < nsm && sm < 1024 ? __atomic_fetch_add(&cnt[PAIR_ROLE + sm], 1u, __ATOMIC_RELAXED) : 2;
  }
  __nvvm_barrier_sync(0);
  u32 r = *role;
  u64 chunks = bytes / SLOT_BYTES;
  int ok = 1;
  for (u32 it = 0; it < iters && ok; it++) {
    if (mlk_tid() == 0 && r == 0) { /* the copier */
      for (u32 s = 0; s < copies; s++) {
        u64 c = ((u64)it * nsm * MAX_COPIES + (u64)sm * MAX_COPIES + s) % chunks;
        mlk_mbar_expect_tx(&bars[s], SLOT_BYTES);
        mlk_bulk_copy(ring + s * SLOT_BYTES, buf + c * SLOT_BYTES, SLOT_BYTES, &bars[s]);
      }
      st_volatile(&cnt[PAIR_FLAG + sm], it + 1);
      u64 start = mlk_globaltimer(), landed = start;
      for (u32 s = 0; s < copies && ok; s++)
        while (ok && !mlk_mbar_test(&bars[s], it & 1))
          if (mlk_globaltimer() - start > DEADLINE_NS)
            ok = 0;
      landed = mlk_globaltimer();
      while (ok && mlk_ld_acquire(&cnt[PAIR_ACK + sm]) != it + 1)
        if (mlk_globaltimer() - start > DEADLINE_NS)
          ok = 0;
      /* the notifier's fence end, written before its acknowledgement */
      u64 fence_end = ((u64)mlk_ld_volatile(&cnt[PAIR_END + 2 * sm + 1]) << 32) |
                      mlk_ld_volatile(&cnt[PAIR_END + 2 * sm]);
      out[(u64)nsm * iters + (u64)sm * iters + it] = copies && landed > fence_end;
    } else if (mlk_tid() == 0 && r == 1) { /* the notifier */
      u64 start = mlk_globaltimer();
      while (ok && mlk_ld_volatile(&cnt[PAIR_FLAG + sm]) != it + 1)
        if (mlk_globaltimer() - start > DEADLINE_NS)
          ok = 0;
      u64 t1;
      out[(u64)sm * iters + it] = timed_notify(&cnt[sm * 32], it, &t1, 0);
      st_volatile(&cnt[PAIR_END + 2 * sm], (u32)t1);
      st_volatile(&cnt[PAIR_END + 2 * sm + 1], (u32)(t1 >> 32));
      mlk_fence_acq_rel_gpu(); /* the fence's end before the acknowledgement */
      st_volatile(&cnt[PAIR_ACK + sm], it + 1);
    }
    if (!ok)
      __atomic_store_n(err, 1u, __ATOMIC_RELAXED);
    ok = __nvvm_bar0_and(ok);
  }
}

/* ---- probe_stream ---- */

/* Every thread: waits for the chunk in ring slot `slot` to land (bar's phase `parity`; 0 with
 * err[0] set once the wait passes its deadline), then reads it with 16-byte shared loads, folded
 * into *acc (so that the reads stay). */
static int read_chunk(MLK_SHARED u64 *bar, u32 parity, u32 slot, u32 *acc, u32 *err) {
  u64 start = mlk_globaltimer();
  while (!mlk_mbar_test(bar, parity))
    if (mlk_globaltimer() - start > DEADLINE_NS) {
      __atomic_store_n(err, 1u, __ATOMIC_RELAXED);
      return 0;
    }
  const MLK_SHARED uint4 *chunk = (const MLK_SHARED uint4 *)(ring + slot * SLOT_BYTES);
  for (u32 i = mlk_tid(); i < SLOT_BYTES / 16; i += 256) {
    uint4 v = chunk[i];
    *acc += v.x ^ v.w;
  }
  return 1;
}

/* What the weight stream's design can move, with nothing else in the way: every block streams
 * `per_block` bytes of buf (its own range) through a ring of `slots` slots of 32 KiB, as
 * stream.c does: thread 0 keeps every free slot's copy in flight, every thread reads each landed
 * chunk (16-byte shared loads, summed), a block barrier frees it and thread 0 refills it.
 * out[block] = the block's ns from its first copy to its last chunk read. */
/* mode 2: a slot is 16 copies of 2 KiB, rows 4 KiB apart (a split slice's half of each row, as
 * a streamed tensor-core task would copy its rows): chunk c covers 64 KiB of buf, half copied. */
static void slot_rows(MLK_SHARED uint8_t *dst, const uint8_t *src, MLK_SHARED uint64_t *bar) {
  mlk_mbar_expect_tx(bar, SLOT_BYTES);
  for (u32 r = 0; r < 16; r++)
    mlk_bulk_copy(dst + r * 2048, src + (u64)r * 4096, 2048, bar);
}

KERNEL void probe_stream(const uint8_t *buf, u64 per_block, u64 *out, u32 *err, u32 slots,
                         u32 mode) {
  u32 b = bid();
  const uint8_t *src = buf + (u64)b * per_block;
  u32 span = mode == 2 ? 2 * SLOT_BYTES : SLOT_BYTES; /* bytes of buf a chunk */
  u32 chunks = (u32)(per_block / span);
  if (mlk_tid() == 0) {
    for (u32 s = 0; s < slots; s++)
      mlk_mbar_init(&bars[s], mode == 1 ? 32 : 1);
    mlk_fence_mbar_init();
  }
  __nvvm_barrier_sync(0);
  u64 t0 = mlk_globaltimer();
  if (mode == 1 && mlk_tid() < 32)
    for (u32 c = 0; c < slots && c < chunks; c++)
      warp_copy(ring + c * SLOT_BYTES, src + (u64)c * SLOT_BYTES, SLOT_BYTES, &bars[c]);
  if (mode == 2 && mlk_tid() == 0)
    for (u32 c = 0; c < slots && c < chunks; c++)
      slot_rows(ring + c * SLOT_BYTES, src + (u64)c * span, &bars[c]);
  if (!mode && mlk_tid() == 0)
    for (u32 c = 0; c < slots && c < chunks; c++) {
      mlk_mbar_expect_tx(&bars[c], SLOT_BYTES);
      mlk_bulk_copy(ring + c * SLOT_BYTES, src + (u64)c * SLOT_BYTES, SLOT_BYTES, &bars[c]);
    }
  u32 acc = 0;
  int ok = 1;
  for (u32 c = 0; c < chunks; c++) {
    u32 slot = c % slots;
    ok = ok && read_chunk(&bars[slot], (c / slots) & 1, slot, &acc, err);
    if (!__nvvm_bar0_and(ok))
      return;
    u32 next = c + slots;
    if (mode == 1 && mlk_tid() < 32 && next < chunks)
      warp_copy(ring + slot * SLOT_BYTES, src + (u64)next * SLOT_BYTES, SLOT_BYTES, &bars[slot]);
    if (mode == 2 && mlk_tid() == 0 && next < chunks) {
      mlk_fence_proxy_async();
      slot_rows(ring + slot * SLOT_BYTES, src + (u64)next * span, &bars[slot]);
    }
    if (!mode && mlk_tid() == 0 && next < chunks) {
      mlk_fence_proxy_async();
      mlk_mbar_expect_tx(&bars[slot], SLOT_BYTES);
      mlk_bulk_copy(ring + slot * SLOT_BYTES, src + (u64)next * SLOT_BYTES, SLOT_BYTES,
                    &bars[slot]);
    }
  }
  u64 t1 = mlk_globaltimer();
  if (mlk_tid() == 0)
    out[b] = t1 - t0;
  if (acc == 0x9e3779b9u) /* keeps the reads; practically never true */
    err[1] = acc;
}

/* ---- probe_stream_cluster ---- */

/* Clusters of two: block rank 1 (the loader) streams the pair's `per_pair` bytes of buf into
 * block rank 0's ring of `slots` slots, as stream.c's loader would from a block of its own: the
 * slots' "full" mbarriers in rank 0 (the copies complete on them), their "empty" mbarriers in
 * rank 1 (rank 0's thread 0 arrives there once its threads have read a chunk). Rank 0 reads
 * every chunk as probe_stream does. out[pair] = rank 0's ns from the start to its last chunk.
 * The rate a computing block gets when another SM's copy engine feeds it. */
KERNEL void probe_stream_cluster(const uint8_t *buf, u64 per_pair, u64 *out, u32 *err,
                                 u32 slots) {
  u32 rank = cluster_rank(), pair = bid() / 2;
  MLK_SHARED u64 *full = bars, *empty = bars + MAX_COPIES;
  if (mlk_tid() == 0) {
    for (u32 s = 0; s < slots; s++)
      mlk_mbar_init(rank == 0 ? &full[s] : &empty[s], 1);
    mlk_fence_mbar_init();
  }
  cluster_sync();
  const uint8_t *src = buf + (u64)pair * per_pair;
  u32 chunks = (u32)(per_pair / SLOT_BYTES);
  u64 t0 = mlk_globaltimer();
  if (rank == 1 && mlk_tid() == 0) { /* the loader */
    u32 rfull = cluster_addr(mlk_smem_addr(full), 0), rring = cluster_addr(mlk_smem_addr(ring), 0);
    load_ring(src, chunks, slots, empty, rfull, rring, err);
  }
  if (rank == 0) { /* the reader */
    u32 rempty = cluster_addr(mlk_smem_addr(empty), 1);
    u32 acc = 0;
    int ok = 1;
    for (u32 c = 0; c < chunks; c++) {
      u32 slot = c % slots;
      ok = ok && read_chunk(&full[slot], (c / slots) & 1, slot, &acc, err);
      ok = __nvvm_bar0_and(ok);
      if (mlk_tid() == 0) /* the chunk is read: the loader may refill its slot */
        __asm__ volatile("mbarrier.arrive.release.cluster.shared::cluster.b64 _, [%0];"
                         ::"r"(rempty + 8 * slot)
                         : "memory");
    }
    if (mlk_tid() == 0)
      out[pair] = mlk_globaltimer() - t0;
    if (acc == 0x9e3779b9u) /* keeps the reads; practically never true */
      err[1] = acc;
  }
  cluster_sync(); /* the loader's barriers stay until the reader's last arrive */
}

/* ---- probe_stage ---- */

/* Blocks below `measuring` (all when it is nblocks), `iters` times: block b writes 2048 new f32
 * values into the row of block b - 1 (wrapping; once that block has read the previous ones) and
 * notifies it; its thread 0 waits for its own row's notify, then the block reads the row with
 * 16-byte loads into shared memory and meets at a barrier: out[b * iters + it] = the read and
 * barrier's ns, as a matvec task stages x after its wait. The other blocks load the memory
 * system (`load`) until every measuring block is done. Counters: cnt[32 b] the row's notifies,
 * cnt[32 (256 + b)] its reads, cnt[32 * 512] the blocks done. */
KERNEL void probe_stage(float *rows, u32 *cnt, u64 *out, u32 *err, u32 *stop, const uint4 *buf,
                        u64 words, u32 load, u32 iters, u32 measuring) {
  u32 b = bid();
  if (b >= measuring) {
    load_until(buf, words, load, stop, err + 1, b - measuring, nblocks() - measuring);
    return;
  }
  MLK_SHARED float *x = (MLK_SHARED float *)probe_smem;
  u32 reader = (b + measuring - 1) % measuring; /* the block whose row this block writes */
  float *mine = rows + (u64)b * 2048, *next = rows + (u64)reader * 2048;
  for (u32 it = 1; it <= iters; it++) {
    /* the reader is done with the previous values: write the next ones, then tell it */
    int ok = mlk_tid() == 0 && it > 1 ? wait_for(&cnt[32 * (256 + reader)], it - 1, 1, err) : 1;
    if (!__nvvm_bar0_and(ok))
      break;
    for (u32 i = mlk_tid(); i < 2048; i += 256)
      next[i] = (float)(it * 4096 + i);
    __nvvm_barrier_sync(0);
    if (mlk_tid() == 0)
      notify(&cnt[32 * reader], 0);
    ok = mlk_tid() == 0 ? wait_for(&cnt[32 * b], it, 1, err) : 1;
    if (!__nvvm_bar0_and(ok))
      break;
    u64 t0 = mlk_globaltimer();
    const uint4 *src = (const uint4 *)mine;
    for (u32 i = mlk_tid(); i < 512; i += 256) {
      uint4 v;
      __asm__ volatile("ld.global.v4.u32 {%0, %1, %2, %3}, [%4];"
                       : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                       : "l"(src + i)
                       : "memory");
      ((MLK_SHARED uint4 *)x)[i] = v;
    }
    __nvvm_barrier_sync(0);
    u64 t1 = mlk_globaltimer();
    if (mlk_tid() == 0)
      out[(u64)b * iters + it - 1] = t1 - t0;
    if (x[mlk_tid()] != (float)(it * 4096 + mlk_tid()))
      __atomic_store_n(err + 2, 1u, __ATOMIC_RELAXED); /* a stale row: the ordering failed */
    __nvvm_barrier_sync(0);
    if (mlk_tid() == 0)
      notify(&cnt[32 * (256 + b)], 0);
  }
  /* the last block to finish stops the streaming blocks */
  if (mlk_tid() == 0 && __atomic_fetch_add(&cnt[32 * 512], 1u, __ATOMIC_ACQ_REL) == measuring - 1)
    st_volatile(stop, 1);
}

/* ---- probe_frag ----
 * Block b reads rows [b * rows, (b + 1) * rows) x columns [0, cols) of a bf16 matrix of row stride
 * k at W (each launch another region of the buffer, so that L2 holds none of it), its 8 warps a
 * group of 16 rows each at a time. mode 0 / 1: the tensor-core tile's pattern (matvec.c
 * mma_chunk: lane (g, t) loads 16 bytes of rows g and g + 8 at column 32 j + 8 t for block j),
 * a window of 4 / 8 blocks in flight a warp, each block's words used (xor) before its slot is
 * refilled; mode 2: whole rows (frag_rows: the same bytes in flight, 512 contiguous bytes a
 * load instruction instead of 16 rows' 64); mode 3: mode 0 after thread r's bulk prefetch of row r into L2 (the rows
 * prefetched at once, then the pattern's loads). out[b] = ns from the block's start to the
 * barrier after its last load; sink[b] the xor (so the loads stay). */
/* The tile's weight load (matvec.c ld_weights), and the same asking L2 to fetch the 256 or 128
 * bytes around it (the .L2::256B / 128B prefetch size): a row's next blocks then come from L2. */
#define FRAG_LD_FN(name, size)                                                                     \
  static inline U4_T name(const uint16_t *p) {                                                     \
    U4_T r;                                                                                        \
    __asm__("{\n\t.reg .u64 g;\n\tcvta.to.global.u64 g, %4;\n\t"                                 \
            "ld.global.nc" size ".v4.u32 {%0, %1, %2, %3}, [g];\n\t}"                              \
            : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)                                           \
            : "l"(p));                                                                             \
    return r;                                                                                      \
  }
FRAG_LD_FN(frag_ld, "")
FRAG_LD_FN(frag_ld256, ".L2::256B")
FRAG_LD_FN(frag_ld128, ".L2::128B")
#define FRAG_LD(p) (HINT == 2 ? frag_ld256(p) : HINT == 1 ? frag_ld128(p) : frag_ld(p))

static inline __attribute__((always_inline)) u32 frag_group(const uint16_t *W, u64 k, u32 cols,
                                                            u64 r0, int UB, int HINT) {
  u32 lane = mlk_tid() & 31, g = lane >> 2, t = lane & 3, nblk = cols / 32, acc = 0;
  const uint16_t *w0 = W + (r0 + g) * k + 8 * t, *w1 = w0 + 8 * k;
  U4_T a[8][2];
#pragma unroll
  for (int u = 0; u < UB; u++)
    if ((u32)u < nblk)
      a[u][0] = FRAG_LD(w0 + 32 * u), a[u][1] = FRAG_LD(w1 + 32 * u);
  for (u32 j0 = 0; j0 < nblk; j0 += (u32)UB)
#pragma unroll
    for (int u = 0; u < UB; u++) {
      u32 j = j0 + (u32)u, nx = j + (u32)UB;
      if (j < nblk) {
        acc ^= a[u][0].x ^ a[u][0].w ^ a[u][1].y ^ a[u][1].z;
        if (nx < nblk)
          a[u][0] = FRAG_LD(w0 + 32 * nx), a[u][1] = FRAG_LD(w1 + 32 * nx);
      }
    }
  return acc;
}

/* The same 16 rows as whole rows: chunk c is 512 contiguous bytes (row c / parts, part c % parts
 * of the row's cols), a 16-byte load a lane; 8 chunks in flight a warp (4 KiB, as 4 blocks of the
 * pattern). */
static inline __attribute__((always_inline)) u32 frag_rows(const uint16_t *W, u64 k, u32 cols,
                                                           u64 r0) {
  u32 lane = mlk_tid() & 31, parts = cols / 256, n = 16 * parts, acc = 0;
  U4_T a[8];
#define FRAG_CHUNK(c) (W + (r0 + (c) / parts) * k + ((c) % parts) * 256 + 8 * lane)
#pragma unroll
  for (u32 u = 0; u < 8; u++)
    if (u < n)
      a[u] = frag_ld(FRAG_CHUNK(u));
  for (u32 j0 = 0; j0 < n; j0 += 8)
#pragma unroll
    for (u32 u = 0; u < 8; u++) {
      u32 j = j0 + u, nx = j + 8;
      if (j < n) {
        acc ^= a[u].x ^ a[u].w;
        if (nx < n)
          a[u] = frag_ld(FRAG_CHUNK(nx));
      }
    }
#undef FRAG_CHUNK
  return acc;
}

KERNEL void probe_frag(const uint16_t *W, u64 k, u32 cols, u32 rows, u32 mode, u64 *out,
                       u32 *sink) {
  u32 b = bid(), tid = mlk_tid(), warp = tid >> 5, acc = 0;
  u64 row0 = (u64)b * rows;
  __nvvm_barrier_sync(0);
  u64 start = mlk_globaltimer();
  if (mode == 3)
    for (u32 r = tid; r < rows; r += MLK_BLOCK_THREADS)
      mlk_prefetch_l2(W + (row0 + r) * k, 2 * cols);
  for (u32 r0 = 16 * warp; r0 < rows; r0 += 16 * (MLK_BLOCK_THREADS / 32)) {
    if (mode == 1)
      acc ^= frag_group(W, k, cols, row0 + r0, 8, 0);
    else if (mode == 2)
      acc ^= frag_rows(W, k, cols, row0 + r0);
    else if (mode == 4)
      acc ^= frag_group(W, k, cols, row0 + r0, 4, 2);
    else if (mode == 5)
      acc ^= frag_group(W, k, cols, row0 + r0, 4, 1);
    else
      acc ^= frag_group(W, k, cols, row0 + r0, 4, 0);
  }
  __nvvm_barrier_sync(0);
  if (tid == 0)
    out[b] = mlk_globaltimer() - start;
  if (acc == 0x9e3779b9u) /* practically never: keeps the loads */
    sink[b] = acc;
}
