/* block_emu.c: the block emulator (block_emu.h) and the GPU side the host-compiled tiles call
 * (the declarations at the top of stdlib/tiles/mlk_tiles.h). One OS thread; every GPU thread a
 * ucontext coroutine with its own stack. */
#include "block_emu.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#include "mlk_desc.h"

#ifndef __has_feature
#define __has_feature(x) 0
#endif
#if defined(__SANITIZE_ADDRESS__) || __has_feature(address_sanitizer)
#define EMU_ASAN 1
#include <sanitizer/common_interface_defs.h>
#else
#define EMU_ASAN 0
#endif

#define NT MLK_BLOCK_THREADS
#define NW (NT / 32)
#define STACK_BYTES (256 * 1024)
/* a run's scheduler steps, past which it has failed (emu_set_max_steps) */
static uint64_t max_steps = 50000000ull;

/* The stream's dynamic shared memory (stdlib/tiles/stream.c declares it extern). */
uint8_t mlk_stream_mem[EMU_DYNAMIC_SMEM_MAX] __attribute__((aligned(128)));
extern float mlk_tile_smem[]; /* stdlib/tiles/matvec.c */

typedef enum { T_RUN, T_BAR, T_WARP, T_MBAR, T_DONE } ThrState;
typedef enum { W_BFLY_F, W_BFLY_I, W_UP_F, W_UP_I, W_IDX_I, W_MATCH, W_MMA, W_SYNC } WarpOp;

typedef struct Thr {
  ucontext_t ctx;
  void *stack;
  ThrState st;
  /* the collective it waits in, and its operands and result */
  uint32_t bar_id;
  int pred;
  WarpOp op;
  uint32_t v, param;
  const void *site; /* the caller's return address: lanes must meet at the same call */
  uint32_t a[6];
  float d[4];
  uint64_t *mbar;
  uint32_t parity;
} Thr;

typedef struct Copy {
  uint8_t *dst;
  const uint8_t *src;
  uint32_t bytes;
  uint64_t *bar;
  uint64_t due; /* the scheduler step from which it may land */
} Copy;

static Thr thr[NT];
static ucontext_t sched_ctx;
static int cur = -1;
static void (*run_fn)(void *);
static void *run_arg;
static uint32_t run_ctaid, run_nctaid, dyn_smem;
static uint64_t rng, clock_ns, step;
static int failed;
static Copy copies[256];
static size_t ncopies;
#if EMU_ASAN
static void *fake_stack;
static const void *sched_stack_bottom;
static size_t sched_stack_size;
#endif

static uint64_t next_rand(void) { /* xorshift64* */
  rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
  return rng * 2685821657736338717ull;
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...) {
  if (!failed) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "block emulator: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
  }
  failed = 1;
}

/* ---- coroutine switches (annotated for AddressSanitizer, which must know whose stack is live) */

static void to_thread(int t) {
  cur = t;
#if EMU_ASAN
  __sanitizer_start_switch_fiber(&fake_stack, thr[t].stack, STACK_BYTES);
#endif
  swapcontext(&sched_ctx, &thr[t].ctx);
#if EMU_ASAN
  __sanitizer_finish_switch_fiber(fake_stack, 0, 0);
#endif
  cur = -1;
}

static void to_scheduler(void) {
  Thr *t = &thr[cur];
#if EMU_ASAN
  void *fs = 0;
  __sanitizer_start_switch_fiber(t->st == T_DONE ? 0 : &fs, sched_stack_bottom, sched_stack_size);
#endif
  swapcontext(&t->ctx, &sched_ctx);
#if EMU_ASAN
  __sanitizer_finish_switch_fiber(fs, 0, 0);
#endif
}

static void thread_main(void) {
#if EMU_ASAN
  __sanitizer_finish_switch_fiber(0, &sched_stack_bottom, &sched_stack_size);
#endif
  run_fn(run_arg);
  thr[cur].st = T_DONE;
  to_scheduler();
}

/* ---- collectives ---- */

static void try_barrier(void) {
  int at = 0, done = 0;
  for (int t = 0; t < NT; t++)
    at += thr[t].st == T_BAR, done += thr[t].st == T_DONE;
  if (at == 0 || at + done < NT)
    return;
  if (done) {
    fail("bar.sync: %d threads wait at a block barrier that %d exited without reaching", at, done);
    return;
  }
  int all = 1;
  for (int t = 0; t < NT; t++) {
    if (thr[t].bar_id != thr[0].bar_id)
      fail("bar.sync: threads meet at barriers %u and %u", thr[0].bar_id, thr[t].bar_id);
    all &= thr[t].pred != 0;
  }
  for (int t = 0; t < NT; t++)
    thr[t].st = T_RUN, thr[t].pred = all;
}

static float bf16(uint32_t h) {
  union { uint32_t u; float f; } c = {h << 16};
  return c.f;
}

/* mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 as the PTX ISA lays out its fragments:
 * lane = 4 g + t; a0 = A[g][2t..2t+1], a1 = A[g+8][2t..], a2 = A[g][2t+8..], a3 = A[g+8][2t+8..];
 * b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g]; d0, d1 = D[g][2t..2t+1], d2, d3 = D[g+8][2t..];
 * the lower k in a register's low 16 bits. */
static void warp_mma(Thr *w) {
  float A[16][16], B[16][8];
  for (int l = 0; l < 32; l++) {
    int g = l >> 2, t = l & 3;
    for (int e = 0; e < 2; e++) {
      A[g][2 * t + e] = bf16(w[l].a[0] >> (16 * e) & 0xffff);
      A[g + 8][2 * t + e] = bf16(w[l].a[1] >> (16 * e) & 0xffff);
      A[g][2 * t + 8 + e] = bf16(w[l].a[2] >> (16 * e) & 0xffff);
      A[g + 8][2 * t + 8 + e] = bf16(w[l].a[3] >> (16 * e) & 0xffff);
      B[2 * t + e][g] = bf16(w[l].a[4] >> (16 * e) & 0xffff);
      B[2 * t + 8 + e][g] = bf16(w[l].a[5] >> (16 * e) & 0xffff);
    }
  }
  for (int l = 0; l < 32; l++) {
    int g = l >> 2, t = l & 3;
    for (int e = 0; e < 4; e++) {
      int r = g + 8 * (e >> 1), c = 2 * t + (e & 1);
      float s = w[l].d[e]; /* products of bf16 values are exact in f32 */
      for (int kk = 0; kk < 16; kk++)
        s += A[r][kk] * B[kk][c];
      w[l].d[e] = s;
    }
  }
}

static void try_warp(int warp) {
  Thr *w = &thr[warp * 32];
  for (int l = 0; l < 32; l++)
    if (w[l].st != T_WARP)
      return;
  for (int l = 1; l < 32; l++)
    if (w[l].op != w[0].op || w[l].site != w[0].site) {
      fail("the lanes of warp %d meet at different warp-wide instructions (lanes 0 and %d)", warp,
           l);
      return;
    }
  uint32_t in[32], out[32];
  for (int l = 0; l < 32; l++)
    in[l] = w[l].v;
  for (int l = 0; l < 32; l++) {
    uint32_t p = w[l].param;
    switch (w[0].op) {
    case W_BFLY_F:
    case W_BFLY_I:
      out[l] = in[(l ^ p) & 31];
      break;
    case W_UP_F:
    case W_UP_I:
      out[l] = (uint32_t)l >= p ? in[l - p] : in[l];
      break;
    case W_IDX_I:
      out[l] = in[p & 31];
      break;
    case W_MATCH: {
      uint32_t m = 0;
      for (int j = 0; j < 32; j++)
        m |= (in[j] == in[l]) ? 1u << j : 0;
      out[l] = m;
      break;
    }
    case W_MMA:
    case W_SYNC:
      out[l] = in[l];
      break;
    }
  }
  if (w[0].op == W_MMA)
    warp_mma(w);
  for (int l = 0; l < 32; l++)
    w[l].v = out[l], w[l].st = T_RUN;
}

/* ---- mbarriers and the copy engine. An mbarrier's 8 bytes hold the completed phases, the
 * arrivals still expected in this phase and its initial count. */
typedef union MBarWord {
  uint64_t w;
  struct {
    uint16_t phase, pending, count, unused;
  } s;
} MBarWord;

/* The transaction bytes each barrier still expects (beside the word: they need more bits). */
static struct {
  uint64_t *bar;
  int64_t tx;
} txs[32];

static int64_t *tx_of(uint64_t *bar) {
  for (int i = 0; i < 32; i++)
    if (txs[i].bar == bar)
      return &txs[i].tx;
  for (int i = 0; i < 32; i++)
    if (!txs[i].bar) {
      txs[i].bar = bar, txs[i].tx = 0;
      return &txs[i].tx;
    }
  fail("mbarrier: more than 32 of them");
  return &txs[0].tx;
}

static void mbar_check_phase(uint64_t *bar) {
  MBarWord m = {*bar};
  int64_t *tx = tx_of(bar);
  if (m.s.pending == 0 && *tx == 0) {
    m.s.phase++;
    m.s.pending = m.s.count;
    *bar = m.w;
  }
}

static void land_copy(size_t i) {
  Copy c = copies[i];
  copies[i] = copies[--ncopies];
  memcpy(c.dst, c.src, c.bytes);
  int64_t *tx = tx_of(c.bar);
  *tx -= c.bytes;
  if (*tx < 0)
    fail("cp.async.bulk: a copy completed %lld bytes more than its barrier expected",
         (long long)-*tx);
  mbar_check_phase(c.bar);
}

static int mbar_done(const Thr *t) {
  MBarWord m = {*t->mbar};
  return (m.s.phase & 1u) != t->parity;
}

/* ---- what the tiles call ---- */

static Thr *self(void) {
  if (cur < 0) {
    fprintf(stderr, "block emulator: a GPU instruction outside emu_block_run\n");
    abort();
  }
  return &thr[cur];
}

uint32_t __nvvm_read_ptx_sreg_tid_x(void) { return (uint32_t)(self() - thr); }
uint32_t __nvvm_read_ptx_sreg_ctaid_x(void) { return run_ctaid; }
uint32_t __nvvm_read_ptx_sreg_nctaid_x(void) { return run_nctaid; }

void __nvvm_barrier_sync(uint32_t id) {
  Thr *t = self();
  t->st = T_BAR, t->bar_id = id, t->pred = 1;
  try_barrier();
  if (t->st == T_BAR)
    to_scheduler();
}

int __nvvm_bar0_and(int pred) {
  Thr *t = self();
  t->st = T_BAR, t->bar_id = 0, t->pred = pred;
  try_barrier();
  if (t->st == T_BAR)
    to_scheduler();
  return t->pred;
}

static uint32_t warp_op(WarpOp op, uint32_t mask, uint32_t v, uint32_t param, const void *site) {
  Thr *t = self();
  if (mask != 0xffffffffu)
    fail("shfl/match: a partial warp mask (0x%x) is not emulated", mask);
  t->st = T_WARP, t->op = op, t->v = v, t->param = param, t->site = site;
  try_warp((int)(t - thr) / 32);
  if (t->st == T_WARP)
    to_scheduler();
  return t->v;
}

static uint32_t fbits(float f) {
  union { float f; uint32_t u; } c = {f};
  return c.u;
}
static float bitsf(uint32_t u) {
  union { uint32_t u; float f; } c = {u};
  return c.f;
}

static uint32_t ibits(int v) { return (uint32_t)v; }
static int bitsi(uint32_t u) { return (int)u; }

#define SITE __builtin_return_address(0)
/* The shuffles: T name(mask, v, lane parameter, clamp), the value through 32 bits. */
#define SHUFFLE(name, T, op, to_bits, from_bits)                                                   \
  T name(uint32_t mask, T v, uint32_t param, uint32_t c) {                                         \
    (void)c;                                                                                       \
    return from_bits(warp_op(op, mask, to_bits(v), param, SITE));                                  \
  }
SHUFFLE(__nvvm_shfl_sync_bfly_f32, float, W_BFLY_F, fbits, bitsf)
SHUFFLE(__nvvm_shfl_sync_bfly_i32, int, W_BFLY_I, ibits, bitsi)
SHUFFLE(__nvvm_shfl_sync_up_f32, float, W_UP_F, fbits, bitsf)
SHUFFLE(__nvvm_shfl_sync_up_i32, int, W_UP_I, ibits, bitsi)
SHUFFLE(__nvvm_shfl_sync_idx_i32, int, W_IDX_I, ibits, bitsi)
#undef SHUFFLE
uint32_t __nvvm_match_any_sync_i32(uint32_t mask, int v) {
  return warp_op(W_MATCH, mask, (uint32_t)v, 0, SITE);
}

/* bar.warp.sync: the warp's lanes meet (at the same call site, like a shuffle). */
void __nvvm_bar_warp_sync(uint32_t mask) { warp_op(W_SYNC, mask, 0, 0, SITE); }

void mlk_emu_mma_m16n8k16(float *d, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                          uint32_t b1) {
  Thr *t = self();
  t->a[0] = a0, t->a[1] = a1, t->a[2] = a2, t->a[3] = a3, t->a[4] = b0, t->a[5] = b1;
  memcpy(t->d, d, sizeof t->d);
  warp_op(W_MMA, 0xffffffffu, 0, 0, SITE);
  memcpy(d, t->d, sizeof t->d);
}

void __nvvm_nanosleep(uint32_t ns) {
  clock_ns += ns;
  to_scheduler(); /* stays runnable: others go first */
}

float __nvvm_ex2_approx_f(float v) { return exp2f(v); }

uint64_t mlk_emu_globaltimer(void) { return clock_ns += 32; }

/* Shared memory's window: offsets from the lower of the two shared arrays (both in this
 * program's data, well within 4 GiB of each other). */
static uintptr_t smem_origin(void) {
  uintptr_t a = (uintptr_t)mlk_tile_smem, b = (uintptr_t)mlk_stream_mem;
  return (a < b ? a : b) - 1024;
}
uint32_t mlk_emu_smem_addr(const void *p) {
  uintptr_t d = (uintptr_t)p - smem_origin();
  if (d >> 32) {
    fprintf(stderr, "block emulator: %p is not shared memory\n", p);
    abort();
  }
  return (uint32_t)d;
}
void *mlk_emu_smem_ptr(uint32_t a) { return (void *)(smem_origin() + a); }

uint32_t mlk_emu_dynamic_smem_size(void) { return dyn_smem; }

void mlk_emu_mbar_init(uint64_t *bar, uint32_t count) {
  MBarWord m = {0};
  m.s.pending = (uint16_t)count, m.s.count = (uint16_t)count;
  *bar = m.w;
  *tx_of(bar) = 0;
}

void mlk_emu_mbar_expect_tx(uint64_t *bar, uint32_t bytes) {
  MBarWord m = {*bar};
  if (m.s.count == 0 || m.s.pending == 0) {
    fail("mbarrier: an arrive on a barrier that is not initialized or expects no more arrivals");
    return;
  }
  m.s.pending--;
  *bar = m.w;
  *tx_of(bar) += bytes;
  mbar_check_phase(bar);
}

void mlk_emu_bulk_copy(void *dst, const void *src, uint32_t bytes, uint64_t *bar) {
  uint8_t *d = dst;
  if (bytes == 0 || bytes % 16 || (uintptr_t)dst % 16 || (uintptr_t)src % 16)
    fail("cp.async.bulk: %u bytes from %p to %p: sizes and addresses must be multiples of 16", bytes,
         src, dst);
  if (d < mlk_stream_mem || d + bytes > mlk_stream_mem + dyn_smem)
    fail("cp.async.bulk: %u bytes at offset %td, outside the dynamic shared memory (%u bytes)", bytes,
         d - mlk_stream_mem, dyn_smem);
  if (failed)
    return;
  for (size_t i = 0; i < ncopies; i++)
    if (d < copies[i].dst + copies[i].bytes && copies[i].dst < d + bytes)
      fail("cp.async.bulk: a copy into bytes another copy in flight writes (offset %td)",
           d - mlk_stream_mem);
  if (ncopies == sizeof copies / sizeof *copies) {
    fail("cp.async.bulk: more than %zu copies in flight", ncopies);
    return;
  }
  memset(d, 0xff, bytes); /* poison: a read before the copy lands sees NaN */
  /* it lands within a few thousand scheduler steps (a block barrier is ~256): sometimes before
   * the tile reaches its wait, sometimes long after */
  copies[ncopies++] = (Copy){d, src, bytes, bar, step + next_rand() % 4096};
}

/* A hint with no effect on memory; logged for the tests, checked like a copy's source. */
enum { MAX_PREFETCH_LOG = 4096 };
static struct {
  const void *src;
  uint32_t bytes;
} prefetch_log[MAX_PREFETCH_LOG];
static size_t nprefetch;

void mlk_emu_prefetch_l2(const void *src, uint32_t bytes) {
  if (bytes == 0 || bytes % 16 || (uintptr_t)src % 16)
    fail("cp.async.bulk.prefetch.L2: %u bytes at %p: sizes and addresses must be multiples of 16",
         bytes, src);
  if (nprefetch < MAX_PREFETCH_LOG)
    prefetch_log[nprefetch] = (__typeof__(prefetch_log[0])){src, bytes};
  nprefetch++;
}

size_t emu_prefetches(const void **src, uint32_t *bytes, size_t max) {
  size_t n = nprefetch;
  for (size_t i = 0; i < n && i < max && i < MAX_PREFETCH_LOG; i++)
    src[i] = prefetch_log[i].src, bytes[i] = prefetch_log[i].bytes;
  nprefetch = 0;
  return n;
}

void mlk_emu_mbar_wait(uint64_t *bar, uint32_t parity) {
  Thr *t = self();
  t->mbar = bar, t->parity = parity;
  if (mbar_done(t))
    return;
  t->st = T_MBAR;
  to_scheduler();
}

/* ---- the scheduler ---- */

void emu_set_max_steps(uint64_t steps) { max_steps = steps ? steps : 50000000ull; }

void emu_set_dynamic_smem(uint32_t bytes) {
  dyn_smem = bytes <= EMU_DYNAMIC_SMEM_MAX ? bytes : EMU_DYNAMIC_SMEM_MAX;
}

size_t emu_copies_in_flight(void) { return ncopies; }

static const char *state_name(ThrState s) {
  static const char *n[] = {"running", "at a block barrier", "in a warp-wide instruction",
                            "waiting on an mbarrier", "exited"};
  return n[s];
}

int emu_block_run(void (*fn)(void *), void *arg, uint32_t ctaid, uint32_t nctaid, uint64_t seed) {
  run_fn = fn, run_arg = arg, run_ctaid = ctaid, run_nctaid = nctaid;
  rng = seed * 0x9e3779b97f4a7c15ull + 1;
  failed = 0;
  memset(txs, 0, sizeof txs); /* a block initializes its barriers before it uses them */
  for (int t = 0; t < NT; t++) {
    if (!thr[t].stack) {
      thr[t].stack = mmap(0, STACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (thr[t].stack == MAP_FAILED) {
        perror("block emulator: mmap");
        exit(1);
      }
    }
    getcontext(&thr[t].ctx);
    thr[t].ctx.uc_stack.ss_sp = thr[t].stack;
    thr[t].ctx.uc_stack.ss_size = STACK_BYTES;
    thr[t].ctx.uc_link = 0;
    makecontext(&thr[t].ctx, thread_main, 0);
    thr[t].st = T_RUN;
  }
  /* Half the runs pick any runnable thread at random; the other half rank the warps at random
   * and run the first-ranked warp that can run (a rank changes now and then), so that some warps
   * race ahead to the next barrier while others lag: a read that misses its barrier then sees
   * what the lagging warps have not written yet. */
  const uint64_t start = step;
  int ranked = (int)(next_rand() & 1);
  uint32_t rank[NW];
  for (int w = 0; w < NW; w++)
    rank[w] = (uint32_t)next_rand();
  int runnable[NT];
  while (!failed) {
    int n = 0, best = -1;
    for (int t = 0; t < NT; t++) {
      if (thr[t].st == T_MBAR && mbar_done(&thr[t]))
        thr[t].st = T_RUN;
      if (thr[t].st != T_RUN)
        continue;
      if (ranked && best >= 0 && rank[t / 32] != rank[best / 32]) {
        if (rank[t / 32] < rank[best / 32])
          continue;
        n = 0; /* a higher-ranked warp: only its threads */
      }
      best = t;
      runnable[n++] = t;
    }
    if (ranked && next_rand() % 64 == 0)
      rank[next_rand() % NW] = (uint32_t)next_rand();
    /* copies land when due, and the earliest one whenever nothing else can move */
    size_t first = 0;
    for (size_t i = 1; i < ncopies; i++)
      first = copies[i].due < copies[first].due ? i : first;
    if (ncopies && (n == 0 || copies[first].due <= step)) {
      land_copy(first);
      continue;
    }
    if (n == 0)
      break;
    if (++step - start > max_steps) { /* the longest run of the tests takes ~5 million */
      fail("the block ran past %llu scheduler steps: a spin that never ends?",
           (unsigned long long)max_steps);
      break;
    }
    to_thread(runnable[next_rand() % (uint64_t)n]);
  }
  int stuck = 0;
  for (int t = 0; t < NT; t++)
    stuck += thr[t].st != T_DONE;
  if (stuck && !failed) {
    int t0 = 0;
    while (thr[t0].st == T_DONE)
      t0++;
    fprintf(stderr, "block emulator: deadlock: %d threads cannot go on (thread %d is %s)\n", stuck,
            t0, state_name(thr[t0].st));
    for (int t = 0; t < NT; t += 32) /* each warp's lane 0: what it waits for */
      if (thr[t].st == T_MBAR) {
        MBarWord m = {*thr[t].mbar};
        fprintf(stderr, "  warp %d: the mbarrier at %p (phase %u, %u arrivals pending), parity %u\n",
                t / 32, (void *)thr[t].mbar, m.s.phase, m.s.pending, thr[t].parity);
      } else if (thr[t].st != T_DONE) {
        fprintf(stderr, "  warp %d: %s\n", t / 32, state_name(thr[t].st));
      }
    failed = 1;
  }
  return failed ? -1 : 0;
}
