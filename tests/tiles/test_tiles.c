/* test_tiles.c: the device tiles (stdlib/tiles, compiled for the host) run in the block emulator
 * against their C references (stdlib/ref), on a machine without a GPU.
 *
 * Every case runs a block's sequence of tasks the way the megakernel's interpreter does: the
 * weight stream started on the block's stream list, then per task the loader's pump, the tile and
 * a block barrier, the stream drained at the end. The tiles take the same paths as on an sm_90a
 * GPU (the stream's bulk copies and mbarriers emulated, copies landing late and out of order), so
 * a change to a tile's indexing, its barriers, or the loader's agreement with the tile shows up
 * here first. What the emulator cannot show: the memory model (one OS thread runs every GPU
 * thread), timing, and the PTX the GPU compiler makes of it; the GPU differential tests cover
 * those.
 *
 *   RT_SEED=N test_tiles   exit 0 when every case agrees with the reference; the seed (unset or
 *                          0: from the clock) picks the data and every block's interleaving */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block_emu.h"
#include "mlk.h"
#include "mlk_desc.h"
#include "mlk_ref.h"
#include "mlk_tiles.h"
#include "rt_test.h"

/* The data: rt_test.h's seeded generator (RT_SEED, printed for replay); each block run's
 * interleaving is drawn from it too. */
static double urand(void) { return rt_uniform(1.0f); } /* [-1, 1) */
static uint16_t bf16_of(double v) { return mlk_f32_to_bf16((float)v); }
static float bf16_val(uint16_t h) { return mlk_bf16_to_f32(h); }
static void *xalloc(size_t bytes) {
  /* 64-byte aligned, so that a misalignment a case wants is the one it makes */
  void *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
  if (!p) {
    perror("test_tiles");
    exit(1);
  }
  return p;
}

static int cases;

/* ---- matvec: a block's queue of matvec tasks ---- */

typedef struct MvTask {
  /* the op */
  const float *x;
  const uint16_t *W, *norm_w, *bias;
  const float *res;
  float *out;
  int64_t n, k, batch;
  int fn;
  /* the task */
  int64_t row0, rows;
} MvTask;

typedef struct MvQueue {
  MvTask *t;
  int n;
  uint32_t qoff[4];
  uint64_t *list;
  int64_t rt[MLK_RT_COUNT(1)];
  int stream;
  uint32_t ahead; /* the stream's L2 look-ahead in bytes (MlkDevTune.stream_l2_ahead), 0: off */
} MvQueue;

static void mv_block(void *arg) {
  MvQueue *q = arg;
  mlk_stream_start(q->qoff, q->list, q->rt, q->stream);
  for (int i = 0; i < q->n; i++) {
    const MvTask *t = &q->t[i];
    mlk_stream_pump(); /* the interpreter pumps before a task's waits */
    __nvvm_barrier_sync(0); /* the waits' barrier (mlk_dev_task_wait): the pump's state is shared */
    mlk_tile_matvec(t->out, t->x, t->W, t->res, t->norm_w, t->bias, 1e-5f, t->n, t->k, t->row0,
                    t->rows, t->batch, t->fn);
    __nvvm_barrier_sync(0); /* mlk_dev_barrier */
  }
  mlk_stream_drain();
}

/* The block's stream list, as the runtime builds it: an entry per matvec task, then zeros. */
static void mv_list(MvQueue *q) {
  q->list = xalloc((size_t)(q->n + 1) * MLK_STREAM_ENTRY_WORDS * 8);
  for (int i = 0; i < q->n; i++) {
    const MvTask *t = &q->t[i];
    int64_t rows = t->row0 + t->rows > t->n ? t->n - t->row0 : t->rows;
    q->list[2 * i] = (uint64_t)(uintptr_t)(t->W + t->row0 * t->k);
    q->list[2 * i + 1] = MLK_STREAM_ENTRY(rows < 0 ? 0 : rows, t->k, t->batch > 1);
  }
  q->list[2 * q->n] = q->list[2 * q->n + 1] = 0;
  memset(q->qoff, 0, sizeof q->qoff);
  q->qoff[2] = 0; /* blocks = 1: the list of block 0 at qoff[blocks + 1] */
}

/* The bound on |device - reference| of one output: f32 sums in a different order, or the
 * tensor-core path's x in two bf16 halves (2^-15 of sum |w x|), of the gated product's factor. */
static double mv_tol(const MvTask *t, int64_t b, int64_t r) {
  const float *x = t->x + b * t->k;
  double ss = 0, mag = 0;
  for (int64_t i = 0; i < t->k; i++)
    ss += (double)x[i] * x[i];
  double rs = t->norm_w ? 1.0 / sqrt(ss / (double)t->k + 1e-5) : 1.0;
  for (int64_t i = 0; i < t->k; i++)
    mag += fabs((double)bf16_val(t->W[r * t->k + i]) * x[i] *
                (t->norm_w ? bf16_val(t->norm_w[i]) : 1.0)) *
           rs;
  double g = t->res ? fabs(t->res[b * t->n + r]) : 0.0;
  double tol = 6e-5 * mag + 1e-6;
  return t->fn == MLK_FN_MUL ? tol * (g > 1.0 ? g : 1.0) : tol + 1e-6 * g;
}

/* The L2 look-ahead's prefetches of the last run (none when it is off), against the block's
 * stream list: each inside a task the stream takes, in the list's order and disjoint (each byte
 * once); with a look-ahead of the whole list, exactly the bytes the first pump's copies (the
 * ring's first `slots` chunks) did not take. Returns 0, or 1 after saying what is wrong. */
static int mv_check_prefetches(const char *name, const MvQueue *q, uint32_t slots) {
  enum { MAX = 4096 };
  static const void *src[MAX];
  static uint32_t bytes[MAX];
  size_t n = emu_prefetches(src, bytes, MAX);
  if (n > MAX) {
    fprintf(stderr, "%s: %zu prefetches, more than the test logs\n", name, n);
    return 1;
  }
  if (!q->ahead || !q->stream) {
    if (n)
      fprintf(stderr, "%s: %zu prefetches with the look-ahead off\n", name, n);
    return n != 0;
  }
  int64_t batch = q->rt[MLK_RT_BATCH];
  uint64_t total = 0, first = 0, pos = 0, prefetched = 0;
  uint32_t chunks = 0;
  size_t i = 0; /* the next prefetch to place */
  for (const uint64_t *e = q->list; e[0]; e += MLK_STREAM_ENTRY_WORDS) {
    const uint16_t *W = (const uint16_t *)(uintptr_t)e[0];
    uint32_t rows = (uint32_t)(e[1] >> 32) & 0x7fffffffu, k = (uint32_t)e[1];
    int rpc = mlk_stream_rows_per_chunk(k);
    if (rows == 0 || rpc == 0 || !mlk_matvec_streamable(W, k, e[1] >> 63 ? batch : 1))
      continue;
    const uint8_t *lo = (const uint8_t *)W, *hi = lo + (size_t)rows * k * 2;
    for (uint32_t r = 0; r < rows; r += (uint32_t)rpc, chunks++)
      if (chunks < slots)
        first += (uint64_t)((rows - r < (uint32_t)rpc ? rows - r : (uint32_t)rpc)) * k * 2;
    for (; i < n && (const uint8_t *)src[i] >= lo && (const uint8_t *)src[i] < hi; i++) {
      uint64_t at = total + (uint64_t)((const uint8_t *)src[i] - lo);
      if ((const uint8_t *)src[i] + bytes[i] > hi || at < pos) {
        fprintf(stderr, "%s: prefetch %zu (%u bytes at stream offset %llu) %s\n", name, i, bytes[i],
                (unsigned long long)at, at < pos ? "goes back over bytes already prefetched"
                                                 : "runs past its task's weights");
        return 1;
      }
      pos = at + bytes[i], prefetched += bytes[i];
    }
    total += (uint64_t)rows * k * 2;
  }
  if (i < n) {
    fprintf(stderr, "%s: prefetch %zu (%u bytes) is outside the list's next streamed task\n", name, i,
            bytes[i]);
    return 1;
  }
  if (q->ahead >= total && prefetched != total - first) {
    fprintf(stderr, "%s: a look-ahead of the whole list prefetched %llu bytes, expected %llu (%llu "
            "streamed, %llu in the first pump's copies)\n", name, (unsigned long long)prefetched,
            (unsigned long long)(total - first), (unsigned long long)total, (unsigned long long)first);
    return 1;
  }
  if (total > first && prefetched == 0) {
    fprintf(stderr, "%s: a look-ahead of %u bytes prefetched nothing\n", name, q->ahead);
    return 1;
  }
  return 0;
}

/* Whether the stream takes the task of list entry e (the loader's test): in chunks of whole rows,
 * or in column blocks. */
static int mv_entry_streamed(const uint64_t *e, const int64_t *rt) {
  uint32_t rows = (uint32_t)(e[1] >> 32) & 0x7fffffffu, k = (uint32_t)e[1];
  const uint16_t *W = (const uint16_t *)(uintptr_t)e[0];
  int64_t batch = e[1] >> 63 ? rt[MLK_RT_BATCH] : 1;
  return rows && ((mlk_stream_rows_per_chunk(k) && mlk_matvec_streamable(W, k, batch)) ||
                  mlk_matvec_stream_cols(W, k, rows, batch));
}

/* Whether the stream takes any of the queue's tasks (the loader's test, mlk_stream_takes, of the
 * list entry and the run's batch). */
static int mv_streams_any(const MvQueue *q) {
  for (const uint64_t *e = q->list; e[0]; e += MLK_STREAM_ENTRY_WORDS)
    if (mv_entry_streamed(e, q->rt))
      return 1;
  return 0;
}


/* The tensor-core matvec's staging in the stream's ring (MlkDevTune.mma_stage_ring), for the
 * cases run while set. */
static uint32_t mma_ring;

/* Runs the queue (stream on or off) and compares every output with mlk_ref_matvec run over the
 * same tasks: rows of no task must keep their bits (outputs are poisoned with NaN first). With
 * the stream on and taking none of the tasks, the ring must be written exactly when a
 * tensor-core task may stage x there (mma_ring). */
static void mv_check(const char *name, MvQueue *q) {
  cases++;
  mv_list(q);
  q->rt[MLK_RT_BATCH] = q->t[0].batch;
  /* the ops (distinct outputs) and their expected outputs: the reference over every task */
  float *outs[16], *want[16];
  const MvTask *first[16];
  int nops = 0;
  for (int i = 0; i < q->n; i++) {
    const MvTask *t = &q->t[i];
    int o = 0;
    while (o < nops && outs[o] != t->out)
      o++;
    if (o == nops) {
      size_t bytes = (size_t)(t->batch * t->n) * 4;
      outs[o] = t->out, first[o] = t, want[o] = xalloc(bytes);
      memcpy(want[o], t->out, bytes);
      nops++;
    }
    mlk_ref_matvec(want[o], t->x, t->W, t->res == t->out ? want[o] : t->res, t->norm_w, t->bias,
                   1e-5f, t->n, t->k, t->row0, t->rows, t->batch, t->fn);
  }
  emu_set_dynamic_smem(q->stream ? MLK_STREAM_BYTES(MLK_STREAM_DEFAULT_SLOTS) : 0);
  uint8_t *ring = mlk_stream_mem + MLK_STREAM_HEADER;
  const size_t ring_bytes = (size_t)MLK_STREAM_DEFAULT_SLOTS * MLK_STREAM_SLOT_BYTES;
  memset(ring, 0xa5, ring_bytes);
  /* the runtime's write after the module's load */
  mlk_dev_tune.stream_l2_ahead = q->ahead;
  mlk_dev_tune.mma_stage_ring = q->stream ? mma_ring : 0;
  emu_prefetches(NULL, NULL, 0);
  int rc = emu_block_run(mv_block, q, 0, 1, rt_next());
  mlk_dev_tune.stream_l2_ahead = 0, mlk_dev_tune.mma_stage_ring = 0;
  if (rc == 0 && q->stream && !mv_streams_any(q)) {
    int mma = 0, touched = 0;
    for (int i = 0; i < q->n; i++)
      mma |= q->t[i].batch >= 16 && (q->t[i].k & 7) == 0;
    for (size_t i = 0; i < ring_bytes && !touched; i++)
      touched = ring[i] != 0xa5;
    if (touched != (mma && mma_ring)) {
      fprintf(stderr, "%s: the ring was %s, though %s\n", name, touched ? "written" : "left alone",
              mma && mma_ring ? "its tensor-core tasks could stage x there"
                              : "nothing may use it");
      rc = -1;
    }
  }
  if (rc == 0 && emu_copies_in_flight()) {
    fprintf(stderr, "%s: %zu bulk copies still in flight after the drain\n", name,
            emu_copies_in_flight());
    rc = -1;
  }
  int bad = rc != 0;
  if (bad)
    fprintf(stderr, "%s: the block failed\n", name);
  for (int o = 0; o < nops && !bad; o++) {
    const MvTask *t = first[o];
    for (int64_t b = 0; b < t->batch && !bad; b++)
      for (int64_t r = 0; r < t->n && !bad; r++) {
        float got = t->out[b * t->n + r], w = want[o][b * t->n + r];
        double tol = mv_tol(t, b, r);
        if (!(fabs((double)got - w) <= tol) && memcmp(&got, &w, 4) != 0) {
          fprintf(stderr,
                  "%s: op %d (n %lld, k %lld, batch %lld, fn %d): out[%lld][%lld] = %.9g, "
                  "reference %.9g (tolerance %.3g)\n",
                  name, o, (long long)t->n, (long long)t->k, (long long)t->batch, t->fn,
                  (long long)b, (long long)r, got, w, tol);
          bad = 1;
        }
      }
  }
  if (!bad && rc == 0)
    bad = mv_check_prefetches(name, q, q->stream ? MLK_STREAM_DEFAULT_SLOTS : 0);
  for (int o = 0; o < nops; o++)
    free(want[o]);
  free(q->list);
  if (bad)
    rt_failures++;
}

typedef struct MvOp {
  float *x, *out, *res;
  uint16_t *W, *norm_w, *bias;
  int64_t n, k, batch;
  int fn;
} MvOp;

/* An op of n rows of k with random weights, inputs poisoned outputs; options: a norm, a bias, a
 * residual or gate (res_is_out: the output itself holds the residual). */
static MvOp mv_op(int64_t n, int64_t k, int64_t batch, int norm, int bias, int fn, int res,
                  int res_is_out) {
  MvOp o = {0};
  o.n = n, o.k = k, o.batch = batch, o.fn = fn;
  o.x = xalloc((size_t)(batch * k) * 4);
  o.out = xalloc((size_t)(batch * n) * 4);
  o.W = xalloc((size_t)(n * k) * 2);
  for (int64_t i = 0; i < batch * k; i++)
    o.x[i] = (float)(urand() * 2.0);
  for (int64_t i = 0; i < n * k; i++)
    o.W[i] = bf16_of(urand() * 0.1);
  if (norm) {
    o.norm_w = xalloc((size_t)k * 2);
    for (int64_t i = 0; i < k; i++)
      o.norm_w[i] = bf16_of(1.0 + 0.5 * urand());
  }
  if (bias) {
    o.bias = xalloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++)
      o.bias[i] = bf16_of(urand());
  }
  for (int64_t i = 0; i < batch * n; i++)
    o.out[i] = res_is_out ? (float)urand() : NAN;
  if (res && !res_is_out) {
    o.res = xalloc((size_t)(batch * n) * 4);
    for (int64_t i = 0; i < batch * n; i++)
      o.res[i] = (float)(urand() * 3.0);
  } else if (res)
    o.res = o.out;
  return o;
}

static void mv_free(MvOp *o) {
  free(o->x), free(o->out), free(o->W), free(o->norm_w), free(o->bias);
  if (o->res != o->out)
    free(o->res);
}

static MvTask mv_task(const MvOp *o, int64_t row0, int64_t rows) {
  MvTask t = {o->x, o->W, o->norm_w, o->bias, o->res, o->out, o->n, o->k, o->batch, o->fn,
              row0, rows};
  return t;
}

/* One op cut into tasks of `rows` rows, all in one block's queue, stream on and off. */
static void mv_case(int64_t n, int64_t k, int64_t batch, int64_t rows, int norm, int bias, int fn,
                    int res, int res_is_out) {
  for (int stream = 1; stream >= 0; stream--) {
    MvOp o = mv_op(n, k, batch, norm, bias, fn, res, res_is_out);
    int nt = (int)((n + rows - 1) / rows);
    MvTask *ts = calloc((size_t)nt, sizeof *ts);
    for (int i = 0; i < nt; i++)
      ts[i] = mv_task(&o, i * rows, rows);
    MvQueue q = {ts, nt, {0}, 0, {0}, stream, 0};
    char name[160];
    snprintf(name, sizeof name,
             "matvec n %lld k %lld batch %lld rows %lld norm %d bias %d fn %d res %d%s stream %d",
             (long long)n, (long long)k, (long long)batch, (long long)rows, norm, bias, fn, res,
             res_is_out ? " (in place)" : "", stream);
    mv_check(name, &q);
    free(ts);
    mv_free(&o);
  }
}

/* A layer's matvecs in one block's queue: the loader crosses from task to task and from op to op
 * (k 2048 -> 8192 -> a k % 8 != 0 op it skips -> 2048), with tasks of one op apart. */
static void mv_mixed_queue(int64_t batch, uint32_t ahead) {
  MvOp a = mv_op(96, 2048, batch, 1, 0, MLK_FN_NONE, 0, 0);
  MvOp b = mv_op(40, 8192, batch, 0, 0, MLK_FN_NONE, 1, 1);
  MvOp c = mv_op(24, 100, batch, 0, 1, MLK_FN_SILU, 0, 0);
  MvOp d = mv_op(64, 2048, batch, 1, 1, MLK_FN_MUL, 1, 0);
  MvTask ts[] = {mv_task(&a, 0, 24),  mv_task(&b, 0, 16), mv_task(&a, 24, 40), mv_task(&c, 0, 24),
                 mv_task(&b, 16, 16), mv_task(&d, 0, 64), mv_task(&b, 32, 16), mv_task(&a, 64, 32)};
  for (int stream = 1; stream >= 0; stream--) {
    for (int i = 0; i < 4; i++) {
      MvOp *o = i == 0 ? &a : i == 1 ? &b : i == 2 ? &c : &d;
      for (int64_t j = 0; j < o->batch * o->n; j++)
        if (o->res != o->out)
          o->out[j] = NAN;
    }
    MvQueue q = {ts, (int)(sizeof ts / sizeof *ts), {0}, 0, {0}, stream, stream ? ahead : 0};
    char name[96];
    snprintf(name, sizeof name, "matvec mixed queue batch %lld stream %d l2 ahead %u",
             (long long)batch, stream, stream ? ahead : 0);
    mv_check(name, &q);
  }
  mv_free(&a), mv_free(&b), mv_free(&c), mv_free(&d);
}

/* Streamed tasks of one chunk after two tasks the stream does not take (k % 8 != 0): the loader
 * copies ahead across tasks it does not take, and the streamed tasks still find their chunks in
 * list order. */
static void mv_after_unstreamed(int64_t batch) {
  MvOp a = mv_op(48, 2048, batch, 1, 0, MLK_FN_NONE, 0, 0);
  MvOp c = mv_op(24, 100, batch, 0, 1, MLK_FN_SILU, 0, 0);
  MvTask ts[] = {mv_task(&a, 0, 24), mv_task(&c, 0, 12), mv_task(&c, 12, 12),
                 mv_task(&a, 24, 8), mv_task(&a, 32, 8), mv_task(&a, 40, 8)};
  MvQueue q = {ts, (int)(sizeof ts / sizeof *ts), {0}, 0, {0}, 1, 0};
  char name[96];
  snprintf(name, sizeof name, "matvec batch %lld, one-chunk tasks after unstreamed ones",
           (long long)batch);
  mv_check(name, &q);
  mv_free(&a), mv_free(&c);
}

/* A batch-16 run whose queue also has an unbatched op (one row: the stream takes its tasks):
 * its tensor-core tasks may stage x in the ring only once the loader is past the last streamed
 * task and every chunk was released. */
static void mv_unbatched_among_mma(void) {
  MvOp a = mv_op(96, 2048, 16, 1, 0, MLK_FN_NONE, 0, 0);
  MvOp u = mv_op(64, 2048, 1, 1, 1, MLK_FN_NONE, 0, 0);
  MvOp d = mv_op(40, 8192, 16, 0, 0, MLK_FN_NONE, 1, 1);
  MvTask ts[] = {mv_task(&a, 0, 32), mv_task(&u, 0, 32), mv_task(&d, 0, 16), mv_task(&a, 32, 32),
                 mv_task(&u, 32, 32), mv_task(&d, 16, 24), mv_task(&a, 64, 32)};
  MvQueue q = {ts, (int)(sizeof ts / sizeof *ts), {0}, 0, {0}, 1, 0};
  mv_check("matvec batch 16 with an unbatched streamed op, x staged in the ring", &q);
  mv_free(&a), mv_free(&u), mv_free(&d);
}

/* ---- split matvec: a group's slices of k, merged by the last task to arrive ---- */

typedef struct SplitRun {
  const MvOp *o;
  int64_t tile, split, ntasks;
  const int64_t *order; /* the tasks in the order the block runs them */
  float *scratch;
  uint32_t *arrive;
  int *merged; /* per task: its tile's answer (1: it merged its group) */
} SplitRun;

/* One block runs every task of the op, in s->order, as the interpreter would (task.c's matvec). */
static void split_block(void *arg) {
  SplitRun *s = arg;
  const MvOp *o = s->o;
  /* no stream (as the interpreter without one): the state an earlier run left in shared memory
   * must not take the tasks */
  int64_t rt[MLK_RT_COUNT(1)] = {0};
  rt[MLK_RT_BATCH] = o->batch;
  mlk_stream_start(NULL, NULL, rt, 0);
  for (int64_t i = 0; i < s->ntasks; i++) {
    int64_t t = s->order[i], first, members, slice;
    mlk_matvec_group(s->split, o->k, s->ntasks, o->batch, t, &first, &members, &slice);
    __nvvm_barrier_sync(0);
    int merged = 1;
    if (members <= 1) {
      int64_t rows = t * s->tile + s->tile <= o->n ? s->tile : o->n - t * s->tile;
      mlk_tile_matvec(o->out, o->x, o->W, o->res, o->norm_w, o->bias, 1e-5f, o->n, o->k,
                      t * s->tile, rows, o->batch, o->fn);
    } else {
      int64_t row0 = first * s->tile, rows = members * s->tile;
      if (row0 + rows > o->n)
        rows = o->n - row0;
      merged = mlk_tile_matvec_split(o->out, o->x, o->W, o->res, o->norm_w, o->bias, 1e-5f, o->n,
                                     o->k, row0, rows, o->batch, o->fn, s->split, first, members,
                                     slice, s->scratch, s->arrive + first);
    }
    if (mlk_tid() == 0)
      s->merged[t] = merged;
    __nvvm_barrier_sync(0);
  }
}

/* An op of n rows of k in tasks of `tile` rows with split `split`, run `runs` times in a random
 * order of its tasks each time (so a group's last task is any of its members): every output
 * within tolerance of mlk_ref_matvec over the op, the task that ran last in each group (and only
 * it) merging, every arrival counter back at 0; and the reference split (the simulator's tile),
 * run in the same order, within tolerance too. */
static void split_case(int64_t n, int64_t k, int64_t batch, int64_t tile, int64_t split, int norm,
                       int bias, int fn, int res, int res_is_out, int runs) {
  cases++;
  MvOp o = mv_op(n, k, batch, norm, bias, fn, res, res_is_out);
  int64_t ntasks = (n + tile - 1) / tile;
  size_t scratch_bytes = (size_t)mlk_matvec_scratch_bytes(split, n, k, ntasks, batch);
  float *scratch = xalloc(scratch_bytes ? scratch_bytes : 64), *want = xalloc((size_t)(batch * n) * 4);
  float *ref = xalloc((size_t)(batch * n) * 4), *in = xalloc((size_t)(batch * n) * 4);
  uint32_t *arrive = calloc((size_t)ntasks, sizeof *arrive);
  int64_t *order = calloc((size_t)ntasks, sizeof *order);
  int *merged = calloc((size_t)ntasks, sizeof *merged);
  memcpy(in, o.out, (size_t)(batch * n) * 4); /* the poison, or the residual in place */
  memcpy(want, in, (size_t)(batch * n) * 4);
  mlk_ref_matvec(want, o.x, o.W, o.res == o.out ? want : o.res, o.norm_w, o.bias, 1e-5f, n, k, 0, n,
                 batch, fn);
  char name[160];
  snprintf(name, sizeof name, "split matvec n %lld k %lld batch %lld tile %lld split %lld norm %d "
           "bias %d fn %d res %d%s", (long long)n, (long long)k, (long long)batch, (long long)tile,
           (long long)split, norm, bias, fn, res, res_is_out ? " (in place)" : "");
  int bad = 0;
  for (int run = 0; run < runs && !bad; run++) {
    for (int64_t i = 0; i < ntasks; i++)
      order[i] = i;
    for (int64_t i = ntasks - 1; i > 0; i--) { /* Fisher-Yates */
      int64_t j = (int64_t)(rt_next() % (uint64_t)(i + 1)), tmp = order[i];
      order[i] = order[j], order[j] = tmp;
    }
    memcpy(o.out, in, (size_t)(batch * n) * 4);
    memset(scratch, 0xff, scratch_bytes); /* NaN: a partial the merge reads unwritten shows */
    SplitRun sr = {&o, tile, split, ntasks, order, scratch, arrive, merged};
    if (emu_block_run(split_block, &sr, 0, 1, rt_next()) != 0) {
      fprintf(stderr, "%s: the block failed\n", name);
      bad = 1;
    }
    /* the reference tile, the same order */
    memcpy(ref, in, (size_t)(batch * n) * 4);
    for (int64_t i = 0; i < ntasks && !bad; i++) {
      int64_t t = order[i], first, members, slice;
      mlk_matvec_group(split, k, ntasks, batch, t, &first, &members, &slice);
      if (members <= 1) {
        mlk_ref_matvec(ref, o.x, o.W, o.res == o.out ? ref : o.res, o.norm_w, o.bias, 1e-5f, n, k,
                       t * tile, tile, batch, fn);
        continue;
      }
      int64_t row0 = first * tile, rows = members * tile < n - row0 ? members * tile : n - row0;
      mlk_ref_matvec_split(ref, o.x, o.W, o.res == o.out ? ref : o.res, o.norm_w, o.bias, 1e-5f, n,
                           k, row0, rows, batch, fn, split, first, members, slice, scratch,
                           arrive + first);
    }
    /* who merged: the last task of each group in the order (each task alone below the batch) */
    for (int64_t i = 0; i < ntasks && !bad; i++) {
      int64_t t = order[i], first, members, slice, later = 0;
      mlk_matvec_group(split, k, ntasks, batch, t, &first, &members, &slice);
      for (int64_t j = i + 1; j < ntasks; j++)
        later += order[j] >= first && order[j] < first + members;
      if (merged[t] != (later == 0)) {
        fprintf(stderr, "%s: run %d: task %lld (group from %lld) answered %d, expected %d\n", name,
                run, (long long)t, (long long)first, merged[t], later == 0);
        bad = 1;
      }
      if (arrive[t] != 0) {
        fprintf(stderr, "%s: run %d: arrival counter %lld is %u after the run\n", name, run,
                (long long)t, arrive[t]);
        bad = 1;
      }
    }
    MvTask whole = mv_task(&o, 0, n);
    for (int64_t b = 0; b < batch && !bad; b++)
      for (int64_t r = 0; r < n && !bad; r++) {
        double tol = mv_tol(&whole, b, r);
        float got = o.out[b * n + r], w = want[b * n + r], rf = ref[b * n + r];
        if (!(fabs((double)got - w) <= tol) || !(fabs((double)rf - w) <= tol)) {
          fprintf(stderr, "%s: run %d: out[%lld][%lld] = %.9g, reference split %.9g, expected "
                  "%.9g (tolerance %.3g)\n", name, run, (long long)b, (long long)r, got, rf, w, tol);
          bad = 1;
        }
      }
  }
  if (bad)
    rt_failures++;
  free(scratch), free(want), free(ref), free(in), free(arrive), free(order), free(merged);
  mv_free(&o);
}

/* Where a split matvec splits (mlk_matvec_splits_at): from 16 rows always, from 4 where x does not
 * fit whole; never without a split. */
static void split_rule(void) {
  static const struct { int64_t split, k, batch; int want; } c[] = {
      {8, 8192, 1, 0},  {8, 8192, 2, 0},  {8, 8192, 3, 0},  {8, 8192, 4, 1}, {4, 2048, 5, 0},
      {4, 2048, 6, 1},  {4, 2048, 15, 1}, {2, 64, 15, 0},   {2, 64, 16, 1},  {1, 8192, 64, 0},
      {0, 8192, 4, 0},  {2, 2048, 4, 0},  {2, 3008, 4, 0},  {2, 3009, 4, 1},
  };
  cases++;
  for (size_t i = 0; i < sizeof c / sizeof *c; i++)
    if (mlk_matvec_splits_at(c[i].split, c[i].k, c[i].batch) != c[i].want) {
      fprintf(stderr, "split rule: split %lld, k %lld, batch %lld: %d, expected %d\n",
              (long long)c[i].split, (long long)c[i].k, (long long)c[i].batch, !c[i].want,
              c[i].want);
      rt_failures++;
    }
}

static void test_split_matvec(void) {
  split_rule();
  /* q/k/v-like: a fused norm, groups of 4 tasks of 24 rows */
  split_case(96, 2048, 16, 24, 4, 1, 0, MLK_FN_NONE, 0, 0, 2);
  /* down-like: 8 slices of 1024, the residual in place (one run: it accumulates) */
  split_case(128, 8192, 64, 16, 8, 0, 0, MLK_FN_NONE, 1, 1, 1);
  /* a last group of 3 tasks and odd rows; k's last slice not a multiple of 32 */
  split_case(40, 520, 19, 16, 4, 1, 1, MLK_FN_SILU, 0, 0, 2);
  /* up-like: times the gate; batch past a pass of 64 rows (a slice's x staged in chunks, the
   * fused norm's sums of squares added chunk by chunk) */
  split_case(64, 2048, 100, 32, 2, 1, 1, MLK_FN_MUL, 1, 0, 2);
  /* groups of 160 rows with a fused norm: two rounds of row groups over the warps (the sums of
   * squares from the first round's staging only) */
  split_case(320, 1024, 16, 80, 2, 1, 0, MLK_FN_NONE, 0, 0, 2);
  /* below MLK_MATVEC_SPLIT_MIN_BATCH with x fitting whole (8 x 1024): every task alone, answering 1 */
  split_case(64, 1024, 8, 16, 4, 1, 0, MLK_FN_RELU, 1, 0, 1);
  /* below it with x too large to stage whole (mlk_matvec_x_fits): split all the same from batch 4,
   * the tensor-core slices at a batch under one 8-row MMA block: down-like at batch 4 and 5,
   * q/k/v-like (fused norm) at batch 6; at batch 2 alone */
  split_case(64, 8192, 4, 16, 8, 0, 0, MLK_FN_NONE, 1, 1, 1);
  split_case(32, 8192, 5, 16, 2, 0, 1, MLK_FN_NONE, 0, 0, 2);
  split_case(32, 8192, 2, 16, 2, 0, 1, MLK_FN_NONE, 0, 0, 1);
  split_case(48, 2048, 6, 24, 2, 1, 0, MLK_FN_NONE, 0, 0, 2);
  /* batch 5 over k 2048 fits: alone */
  split_case(48, 2048, 5, 24, 2, 1, 0, MLK_FN_NONE, 0, 0, 1);
}

static void test_matvec(void) {
  static const int64_t batches[] = {1, 2, 3, 4, 5, 8, 16, 19};
  for (size_t bi = 0; bi < sizeof batches / sizeof *batches; bi++) {
    int64_t b = batches[bi];
    mv_case(64, 2048, b, 64, 1, 0, MLK_FN_NONE, 0, 0); /* gate-like */
    mv_case(48, 2048, b, 16, 0, 1, MLK_FN_MUL, 1, 0);  /* up-like: times the gate */
    mv_case(20, 8192, b, 16, 0, 0, MLK_FN_NONE, 1, 1); /* down-like: residual in place */
    mv_case(37, 520, b, 8, 1, 1, MLK_FN_SILU, 0, 0);   /* odd rows, k % 64 != 0 */
    mv_case(9, 13, b, 4, 1, 0, MLK_FN_RELU, 1, 0);     /* k % 8 != 0: the scalar path */
    mv_case(64, 256, b, 64, 1, 1, MLK_FN_SILU, 1, 0);  /* 64 rows a chunk: no k split */
    /* odd rows a chunk (two-row units from batch 2: a unit without its second row), with a warp
     * a unit (15 rows a chunk of k 1032) and with k split over a unit's warps (5 of 8) */
    mv_case(37, 1032, b, 13, 1, 0, MLK_FN_NONE, 1, 0);
    mv_case(37, 2048, b, 5, 0, 1, MLK_FN_SILU, 0, 0);
    /* x too large to stage whole at batch 2-4: column blocks through the ring, with a norm, a
     * bias and the gated product, 12 rows (some warps one row), a last block of 8 columns; and 5
     * rows (idle warps) */
    mv_case(36, 8200, b, 12, 1, 1, MLK_FN_MUL, 1, 0);
    mv_case(5, 12288, b, 5, 1, 0, MLK_FN_SILU, 0, 0);
    mv_mixed_queue(b, 0);
  }
  /* one-chunk streamed tasks after tasks the stream does not take */
  mv_after_unstreamed(1);
  mv_after_unstreamed(2);
  /* the tensor-core path staging x in the stream's ring */
  mma_ring = 1;
  mv_case(64, 2048, 16, 64, 1, 0, MLK_FN_NONE, 0, 0);
  mv_case(48, 2048, 64, 16, 0, 1, MLK_FN_MUL, 1, 0);
  mv_case(20, 8192, 19, 16, 0, 0, MLK_FN_NONE, 1, 1);
  mv_case(37, 520, 16, 8, 1, 1, MLK_FN_SILU, 0, 0);
  /* a fused norm: every batch row of a 64-row pass, two passes (batch past 64), two rounds of row
   * groups (rows past 128) */
  mv_case(64, 2048, 64, 64, 1, 0, MLK_FN_NONE, 0, 0);
  mv_case(40, 1024, 100, 40, 1, 1, MLK_FN_SILU, 1, 0);
  mv_case(160, 520, 24, 160, 1, 0, MLK_FN_NONE, 0, 0);
  mv_mixed_queue(16, 0);
  mv_unbatched_among_mma();
  mma_ring = 0;
  /* the stream's L2 look-ahead: a part of the list ahead (48 KiB), and all of it */
  mv_mixed_queue(1, 48 << 10);
  mv_mixed_queue(4, MLK_DEV_TUNE_MAX_L2_AHEAD);
  mv_mixed_queue(2, 48 << 10);
  mv_case(130, 1024, 1, 33, 0, 0, MLK_FN_NONE, 0, 0); /* b1r4 / b1r2 / b1 row splits */
  mv_case(3, 12288 - 64, 1, 3, 1, 0, MLK_FN_NONE, 0, 0); /* the staging buffer's largest k */
}

/* ---- the other tiles: a task per block run, against the reference over the same tasks ---- */

typedef struct Call {
  void (*fn)(const struct Call *);
  const void *args;
} Call;
static void call_block(void *arg) {
  const Call *c = arg;
  c->fn(c);
}
/* Runs fn in one emulated block (no stream: dynamic shared memory 0). */
static int run_task(void (*fn)(const Call *), const void *args) {
  Call c = {fn, args};
  emu_set_dynamic_smem(0);
  return emu_block_run(call_block, &c, 0, 1, rt_next());
}

/* |got - want| <= rel * scale + abs for n floats (equal bits pass too: NaN, infinities). */
static int cmp_f32(const char *name, const float *got, const float *want, int64_t n, double scale,
                   double rel, double abs_tol) {
  for (int64_t i = 0; i < n; i++)
    if (!(fabs((double)got[i] - want[i]) <= rel * scale + abs_tol) &&
        memcmp(&got[i], &want[i], 4) != 0) {
      fprintf(stderr, "%s: element %lld = %.9g, reference %.9g\n", name, (long long)i, got[i],
              want[i]);
      return 1;
    }
  return 0;
}

/* The attention of one layer, as the decode step runs it: kv_append (keys rotated: the rope fused
 * into the append, with the Llama 3 scaling), then attention unsplit and split (+ its reduce). */
typedef struct AttnGeom {
  int64_t kv_heads, heads, head_dim, page, pages_per_seq, npages, layers, layer, batch;
  int32_t *pos, *pages;
  uint16_t *cache;
  float *q, *k, *v, *out, *part;
  int64_t split, min_chunk, kvh, head0, nheads, kvh0, nkvh, chunk;
} AttnGeom;

static void t_kv_append(const Call *c) {
  const AttnGeom *g = c->args;
  mlk_tile_kv_append(g->cache, g->k, g->v, g->pos, g->pages, g->kv_heads, g->head_dim, g->page,
                     g->pages_per_seq, g->npages, g->layer, g->head0, g->nheads, g->batch,
                     500000.0f, 32.0f, 1.0f, 4.0f, 8192);
}
static void t_attention(const Call *c) {
  const AttnGeom *g = c->args;
  mlk_tile_attention(g->out, g->q, g->cache, g->pos, g->pages, g->kv_heads, g->head_dim, g->page,
                     g->pages_per_seq, g->npages, g->layer, g->heads, g->kvh0, g->nkvh, g->batch);
}
static void t_attention_split(const Call *c) {
  const AttnGeom *g = c->args;
  mlk_tile_attention_split(g->part, g->q, g->cache, g->pos, g->pages, g->kv_heads, g->head_dim,
                           g->page, g->pages_per_seq, g->npages, g->layer, g->heads, g->kvh,
                           g->split, g->min_chunk, g->kvh0, g->nkvh, g->chunk, g->batch);
}
static int fold_merged; /* thread 0's result of the last t_attention_fold */
static void t_attention_fold(const Call *c) {
  const AttnGeom *g = c->args;
  int r = mlk_tile_attention_fold(g->out, g->part, g->q, g->cache, g->pos, g->pages, g->kv_heads,
                                  g->head_dim, g->page, g->pages_per_seq, g->npages, g->layer,
                                  g->heads, g->kvh, g->split, g->min_chunk, g->kvh0, g->nkvh,
                                  g->chunk, g->batch);
  if (mlk_tid() == 0)
    fold_merged = r;
}
static void t_attn_reduce(const Call *c) {
  const AttnGeom *g = c->args;
  mlk_tile_attn_reduce(g->out, g->part, g->kv_heads, g->head_dim, g->heads, g->kvh, g->split,
                       g->kvh0, g->nkvh, g->batch);
}

/* Positions a row's page table reaches: 128 (pages of `page` positions, 128 / page a row). */
static void attention_case_paged(int64_t kv_heads, int64_t heads, int64_t head_dim, int64_t batch,
                                 const int32_t *pos, int64_t split, int64_t kvh, int64_t page) {
  cases++;
  char name[160];
  snprintf(name, sizeof name,
           "attention kv_heads %lld heads %lld head_dim %lld batch %lld split %lld page %lld",
           (long long)kv_heads, (long long)heads, (long long)head_dim, (long long)batch,
           (long long)split, (long long)page);
  AttnGeom g = {0};
  g.kv_heads = kv_heads, g.heads = heads, g.head_dim = head_dim, g.page = page;
  g.pages_per_seq = 128 / page, g.npages = 3 * g.pages_per_seq + 2, g.layers = 2, g.layer = 1;
  g.batch = batch;
  g.split = split, g.min_chunk = 16, g.kvh = kvh;
  int64_t pool = g.layers * g.npages * 2 * kv_heads * g.page * head_dim;
  int64_t qn = batch * heads * head_dim, kn = batch * kv_heads * head_dim;
  g.pos = xalloc((size_t)batch * 4);
  g.pages = xalloc((size_t)(batch * g.pages_per_seq) * 4);
  g.cache = xalloc((size_t)pool * 2);
  uint16_t *want_cache = xalloc((size_t)pool * 2);
  g.q = xalloc((size_t)qn * 4), g.k = xalloc((size_t)kn * 4), g.v = xalloc((size_t)kn * 4);
  g.out = xalloc((size_t)qn * 4);
  float *want = xalloc((size_t)qn * 4);
  memcpy(g.pos, pos, (size_t)batch * 4);
  for (int64_t i = 0; i < batch * g.pages_per_seq; i++) /* a permuted page table */
    g.pages[i] = (int32_t)((i * 7 + 3) % g.npages);
  for (int64_t i = 0; i < pool; i++)
    g.cache[i] = bf16_of(urand());
  for (int64_t i = 0; i < qn; i++)
    g.q[i] = (float)(urand() * 2.0);
  for (int64_t i = 0; i < kn; i++)
    g.k[i] = (float)(urand() * 2.0), g.v[i] = (float)urand();
  memcpy(want_cache, g.cache, (size_t)pool * 2);
  int bad = 0;
  /* the append: a task per kv head */
  for (int64_t h = 0; h < kv_heads && !bad; h++) {
    g.head0 = h, g.nheads = 1;
    bad |= run_task(t_kv_append, &g) != 0;
    mlk_ref_kv_append(want_cache, g.k, g.v, g.pos, g.pages, kv_heads, head_dim, g.page,
                      g.pages_per_seq, g.npages, g.layer, h, 1, batch, 500000.0f, 32.0f, 1.0f,
                      4.0f, 8192);
  }
  for (int64_t i = 0; i < pool && !bad; i++) /* rotations in f32 round alike or one step apart */
    if (g.cache[i] != want_cache[i] && abs((int)g.cache[i] - (int)want_cache[i]) > 1) {
      fprintf(stderr, "%s: kv_append: cache[%lld] = 0x%04x, reference 0x%04x\n", name,
              (long long)i, g.cache[i], want_cache[i]);
      bad = 1;
    }
  memcpy(g.cache, want_cache, (size_t)pool * 2); /* attention reads the reference's cache */
  /* unsplit: a task per kv head */
  for (int64_t i = 0; i < qn; i++)
    g.out[i] = want[i] = NAN;
  for (int64_t h = 0; h < kv_heads && !bad; h++) {
    g.kvh0 = h, g.nkvh = 1;
    bad |= run_task(t_attention, &g) != 0;
    mlk_ref_attention(want, g.q, g.cache, g.pos, g.pages, kv_heads, head_dim, g.page,
                      g.pages_per_seq, g.npages, g.layer, heads, h, 1, batch);
  }
  if (!bad)
    bad = cmp_f32(name, g.out, want, qn, 1.0, 2e-5, 1e-6);
  /* split: a task per (kvh kv heads, chunk), then a reduce task per kvh kv heads */
  int64_t pcols = mlk_attn_part_cols(kv_heads, heads, head_dim, split, kvh);
  g.part = xalloc((size_t)(batch * pcols) * 4);
  float *want_part = xalloc((size_t)(batch * pcols) * 4);
  for (int64_t i = 0; i < batch * pcols; i++)
    g.part[i] = want_part[i] = NAN;
  for (int64_t i = 0; i < qn; i++)
    g.out[i] = want[i] = NAN;
  for (int64_t h = 0; h < kv_heads && !bad; h += kvh)
    for (int64_t c = 0; c < split && !bad; c++) {
      g.kvh0 = h, g.nkvh = kv_heads - h < kvh ? kv_heads - h : kvh, g.chunk = c;
      bad |= run_task(t_attention_split, &g) != 0;
      mlk_ref_attention_split(want_part, g.q, g.cache, g.pos, g.pages, kv_heads, head_dim, g.page,
                              g.pages_per_seq, g.npages, g.layer, heads, kvh, split, g.min_chunk,
                              h, g.nkvh, c, batch);
    }
  if (!bad) { /* the records slot by slot: which chunk each slot holds, and its sums */
    double big = 1.0;
    for (int64_t i = 0; i < batch * pcols; i++)
      if (isfinite(want_part[i]) && fabs(want_part[i]) > big)
        big = fabs(want_part[i]);
    char pname[160];
    snprintf(pname, sizeof pname, "%s: partials", name);
    bad = cmp_f32(pname, g.part, want_part, batch * pcols, big, 2e-5, 1e-6);
  }
  for (int64_t h = 0; h < kv_heads && !bad; h += kvh) {
    g.kvh0 = h, g.nkvh = kv_heads - h < kvh ? kv_heads - h : kvh;
    bad |= run_task(t_attn_reduce, &g) != 0;
    mlk_ref_attn_reduce(want, want_part, kv_heads, head_dim, heads, kvh, split, h, g.nkvh, batch);
  }
  if (!bad)
    bad = cmp_f32(name, g.out, want, qn, 1.0, 2e-5, 1e-6);
  /* the merge in the attention's own tasks: every (kv head block, slot) task, then, where they
   * wrote partials (a row of more than one chunk), the block's merge; else the rows themselves */
  for (int64_t i = 0; i < batch * pcols; i++)
    g.part[i] = want_part[i] = NAN;
  for (int64_t i = 0; i < qn; i++)
    g.out[i] = want[i] = NAN;
  for (int64_t h = 0; h < kv_heads && !bad; h += kvh) {
    int merged = -1; /* slot 0's answer: every slot must give the same */
    g.kvh0 = h, g.nkvh = kv_heads - h < kvh ? kv_heads - h : kvh;
    for (int64_t c = 0; c < split && !bad; c++) {
      g.chunk = c;
      bad |= run_task(t_attention_fold, &g) != 0;
      int wm = mlk_ref_attention_fold(want, want_part, g.q, g.cache, g.pos, g.pages, kv_heads,
                                      head_dim, g.page, g.pages_per_seq, g.npages, g.layer, heads,
                                      kvh, split, g.min_chunk, h, g.nkvh, c, batch);
      if ((merged >= 0 && fold_merged != merged) || fold_merged != wm) {
        fprintf(stderr, "%s: fold: slot %lld merges %d, slot 0 %d, the reference %d\n", name,
                (long long)c, fold_merged, merged, wm);
        bad = 1;
      }
      merged = fold_merged;
    }
    if (!bad && merged) {
      bad |= run_task(t_attn_reduce, &g) != 0;
      mlk_ref_attn_reduce(want, want_part, kv_heads, head_dim, heads, kvh, split, h, g.nkvh, batch);
    }
  }
  if (!bad) {
    char fname[200];
    snprintf(fname, sizeof fname, "%s: folded", name);
    bad = cmp_f32(fname, g.out, want, qn, 1.0, 2e-5, 1e-6);
  }
  free(g.pos), free(g.pages), free(g.cache), free(want_cache), free(g.q), free(g.k), free(g.v);
  free(g.out), free(want), free(g.part), free(want_part);
  if (bad)
    rt_failures++;
}

static void attention_case(int64_t kv_heads, int64_t heads, int64_t head_dim, int64_t batch,
                           const int32_t *pos, int64_t split, int64_t kvh) {
  attention_case_paged(kv_heads, heads, head_dim, batch, pos, split, kvh, 16);
}

static void test_attention(void) {
  static const int32_t pos1[] = {100}, pos3[] = {0, 37, 127}, pos4[] = {-1, 15, 16, 64};
  attention_case(2, 8, 64, 1, pos1, 4, 1);
  attention_case(2, 8, 64, 3, pos3, 4, 1);
  attention_case(8, 32, 64, 1, pos1, 8, 2);    /* Llama-3.2-1B's heads */
  attention_case(3, 12, 128, 4, pos4, 3, 2);   /* a ragged last block of kv heads */
  attention_case(1, 1, 32, 3, pos3, 2, 1);
  /* more rows than a row's share of the slots: 3 chunks a row at batch 5 of split 16, one a row
   * going round 8 slots at batch 20 (empty rows, a row past the page table's reach) */
  static const int32_t pos5[] = {127, 0, 60, -1, 99};
  int32_t pos20[20];
  for (int i = 0; i < 20; i++)
    pos20[i] = i == 7 ? -1 : i == 11 ? 500 : (int32_t)((i * 37 + 5) % 128);
  attention_case(2, 8, 64, 5, pos5, 16, 1);
  attention_case(8, 32, 64, 20, pos20, 8, 2);
  /* many groups of rows: the split's table takes 32 rows at a time (a lane a row), so batch 300
   * is nine full groups and a ragged tenth, the slots' rotation carried from group to group
   * (empty rows make the carry differ from 32 mod 4 = 0 in some groups) */
  int32_t pos300[300];
  for (int i = 0; i < 300; i++)
    pos300[i] = i % 50 == 3 ? -1 : (int32_t)((i * 53 + 11) % 128);
  attention_case(1, 2, 32, 300, pos300, 4, 1);
  /* pages shorter than a step's positions (a query head a pass: 8 a lane; four: 2), whose page
   * table entries a step takes position by position, and pages of 4 that a step of 2 crosses */
  attention_case_paged(1, 1, 32, 3, pos3, 2, 1, 4);
  attention_case_paged(2, 8, 64, 5, pos5, 16, 1, 1);
  attention_case_paged(2, 8, 64, 5, pos5, 16, 1, 4);
}

/* ---- the element-wise, norm, rope, gather, allreduce, argmax and sample tiles ---- */

typedef struct Misc {
  float *out, *x, *c, *want, *params;
  const uint16_t *w, *bias;
  const int32_t *ids, *pos;
  const uint64_t *xs;
  int32_t *iout;
  float *part;
  int64_t n, k, c0, count, batch, head_dim, ranks, split, chunk, top_k;
  int fn;
  float temperature, top_p;
} Misc;

static void t_eltwise(const Call *c) {
  const Misc *m = c->args;
  mlk_tile_eltwise(m->out, m->x, m->c, m->bias, m->n, m->c0, m->count, m->batch, m->fn);
}
static void t_rmsnorm(const Call *c) {
  const Misc *m = c->args;
  mlk_tile_rmsnorm(m->out, m->x, m->w, 1e-5f, m->n, m->batch);
}
static void t_rope(const Call *c) {
  const Misc *m = c->args;
  mlk_tile_rope(m->out, m->x, m->pos, m->n, m->head_dim, m->c0, m->count, m->batch, 500000.0f,
                32.0f, 1.0f, 4.0f, 8192);
}
static void t_gather(const Call *c) {
  const Misc *m = c->args;
  mlk_tile_gather(m->out, m->ids, m->w, m->n, m->c0, m->count, m->batch);
}
static void t_allreduce(const Call *c) {
  const Misc *m = c->args;
  mlk_tile_allreduce(m->out, m->xs, m->ranks, m->n, m->c0, m->count, m->batch);
}
static void t_argmax(const Call *c) {
  const Misc *m = c->args;
  mlk_tile_argmax(m->iout, m->x, m->k, m->batch);
}
static void t_argmax_part(const Call *c) {
  const Misc *m = c->args;
  mlk_tile_argmax_part(m->part, m->x, m->k, m->split, m->chunk, m->batch);
}
static void t_argmax_reduce(const Call *c) {
  const Misc *m = c->args;
  mlk_tile_argmax_reduce(m->iout, m->part, m->split, m->batch);
}
static void t_sample(const Call *c) {
  const Misc *m = c->args;
  mlk_tile_sample(m->iout, m->x, m->params, m->k, m->temperature, m->top_k, m->top_p, m->batch);
}

static float *frand(int64_t n, double scale) {
  float *v = xalloc((size_t)n * 4);
  for (int64_t i = 0; i < n; i++)
    v[i] = (float)(urand() * scale);
  return v;
}
static float *fpoison(int64_t n) {
  float *v = xalloc((size_t)n * 4);
  for (int64_t i = 0; i < n; i++)
    v[i] = NAN;
  return v;
}
static uint16_t *brand(int64_t n, double center, double scale) {
  uint16_t *v = xalloc((size_t)n * 2);
  for (int64_t i = 0; i < n; i++)
    v[i] = bf16_of(center + urand() * scale);
  return v;
}

/* Tasks of `per` columns over n, each in its own block run, against the reference's same tasks. */
static int column_tasks(Misc *m, void (*dev)(const Call *), void (*ref)(const Misc *), int64_t per) {
  int bad = 0;
  for (int64_t c0 = 0; c0 < m->n && !bad; c0 += per) {
    m->c0 = c0, m->count = m->n - c0 < per ? m->n - c0 : per;
    bad |= run_task(dev, m) != 0;
    ref(m);
  }
  return bad;
}
static void r_eltwise(const Misc *m) {
  mlk_ref_eltwise(m->want, m->x, m->c, m->bias, m->n, m->c0, m->count, m->batch, m->fn);
}
static void r_rope(const Misc *m) {
  mlk_ref_rope(m->want, m->x, m->pos, m->n, m->head_dim, m->c0, m->count, m->batch, 500000.0f,
               32.0f, 1.0f, 4.0f, 8192);
}
static void r_gather(const Misc *m) {
  mlk_ref_gather(m->want, m->ids, m->w, m->n, m->c0, m->count, m->batch);
}
static void r_allreduce(const Misc *m) {
  mlk_ref_allreduce(m->want, m->xs, m->ranks, m->n, m->c0, m->count, m->batch);
}

static void misc_done(const char *name, int bad) {
  cases++;
  if (bad) {
    fprintf(stderr, "%s: failed\n", name);
    rt_failures++;
  }
}

/* The L2 prefetch the skeleton issues before a matvec task's waits: the task's rows as one byte
 * range in 32 KiB requests, at most MLK_MATVEC_PREFETCH_BYTES of it, and none at a batch the
 * tensor-core path runs (>= 16). */
typedef struct PfCase {
  const uint16_t *W;
  int64_t n, k, row0, rows, batch;
} PfCase;
static void pf_block(void *arg) {
  const PfCase *c = arg;
  mlk_tile_matvec_prefetch(c->W, c->n, c->k, c->row0, c->rows, c->batch);
}
static void test_matvec_prefetch(void) {
  static const int64_t cases_[][4] = {/* rows, row0, batch, bytes expected */
                                      {64, 8, 1, 64 * 2048 * 2},
                                      {24, 0, 8, 24 * 2048 * 2},
                                      {200, 0, 4, MLK_MATVEC_PREFETCH_BYTES},
                                      {64, 8, 16, 0},
                                      {64, 8, 64, 0},
                                      {64, 250, 1, 6 * 2048 * 2}}; /* the last rows of W */
  const int64_t n = 256, k = 2048;
  uint16_t *W = xalloc((size_t)(n * k) * 2);
  emu_set_dynamic_smem(0);
  for (size_t i = 0; i < sizeof cases_ / sizeof *cases_; i++) {
    PfCase c = {W, n, k, cases_[i][1], cases_[i][0], cases_[i][2]};
    enum { MAX = 64 };
    const void *src[MAX];
    uint32_t bytes[MAX];
    cases++;
    emu_prefetches(NULL, NULL, 0);
    int bad = emu_block_run(pf_block, &c, 0, 1, rt_next()) != 0;
    size_t np = emu_prefetches(src, bytes, MAX);
    const char *at = (const char *)(W + c.row0 * k);
    int64_t total = 0;
    for (size_t j = 0; j < np && j < MAX && !bad; j++) {
      bad = (const char *)src[j] != at + total || bytes[j] > 32768;
      total += bytes[j];
    }
    if (bad || total != cases_[i][3]) {
      fprintf(stderr, "matvec prefetch rows %lld from %lld batch %lld: %zu requests, %lld bytes%s "
              "(want %lld bytes from the first row on)\n", (long long)c.rows, (long long)c.row0,
              (long long)c.batch, np, (long long)total, bad ? ", not one range" : "",
              (long long)cases_[i][3]);
      rt_failures++;
    }
  }
  free(W);
}

static void test_misc(void) {
  static const int64_t batches[] = {1, 3};
  for (size_t bi = 0; bi < 2; bi++) {
    int64_t B = batches[bi], n = 1000;
    char name[96];
    /* eltwise: every function, with and without a bias */
    for (int fn = MLK_FN_NONE; fn <= MLK_FN_MUL; fn++) {
      Misc m = {0};
      m.n = n, m.batch = B, m.fn = fn;
      m.x = frand(B * n, 4.0), m.c = fn >= MLK_FN_ADD ? frand(B * n, 2.0) : 0;
      m.bias = fn == MLK_FN_SILU ? brand(n, 0.0, 1.0) : 0;
      m.out = fpoison(B * n), m.want = fpoison(B * n);
      int bad = column_tasks(&m, t_eltwise, r_eltwise, 384);
      snprintf(name, sizeof name, "eltwise fn %d batch %lld", fn, (long long)B);
      misc_done(name, bad || cmp_f32(name, m.out, m.want, B * n, 1.0, 1e-6, 1e-6));
      free(m.x), free(m.c), free((void *)m.bias), free(m.out), free(m.want);
    }
    /* rmsnorm: one task, all columns */
    {
      Misc m = {0};
      m.n = 2048 + 40, m.batch = B, m.x = frand(B * m.n, 3.0), m.w = brand(m.n, 1.0, 0.5);
      m.out = fpoison(B * m.n), m.want = fpoison(B * m.n);
      int bad = run_task(t_rmsnorm, &m) != 0;
      mlk_ref_rmsnorm(m.want, m.x, m.w, 1e-5f, m.n, B);
      snprintf(name, sizeof name, "rmsnorm batch %lld", (long long)B);
      misc_done(name, bad || cmp_f32(name, m.out, m.want, B * m.n, 1.0, 1e-5, 1e-6));
      free(m.x), free((void *)m.w), free(m.out), free(m.want);
    }
    /* rope: tasks of whole heads, Llama 3 scaling, positions 0 to past the original context */
    {
      static const int32_t pos[] = {0, 4097, 9000};
      Misc m = {0};
      m.n = 12 * 64, m.head_dim = 64, m.batch = B, m.pos = pos;
      m.x = frand(B * m.n, 2.0), m.out = fpoison(B * m.n), m.want = fpoison(B * m.n);
      int bad = column_tasks(&m, t_rope, r_rope, 5 * 64);
      snprintf(name, sizeof name, "rope batch %lld", (long long)B);
      misc_done(name, bad || cmp_f32(name, m.out, m.want, B * m.n, 1.0, 2e-5, 2e-6));
      free(m.x), free(m.out), free(m.want);
    }
    /* gather: rows of a bf16 table */
    {
      static const int32_t ids[] = {5, 0, 63};
      Misc m = {0};
      m.n = 520, m.batch = B, m.ids = ids, m.w = brand(64 * m.n, 0.0, 1.0);
      m.out = fpoison(B * m.n), m.want = fpoison(B * m.n);
      int bad = column_tasks(&m, t_gather, r_gather, 200);
      snprintf(name, sizeof name, "gather batch %lld", (long long)B);
      misc_done(name, bad || cmp_f32(name, m.out, m.want, B * m.n, 0.0, 0.0, 0.0));
      free((void *)m.w), free(m.out), free(m.want);
    }
    /* allreduce: three ranks' rows, summed in rank order (bit for bit) */
    {
      Misc m = {0};
      float *r[3];
      uint64_t xs[3];
      m.n = 700, m.batch = B, m.ranks = 3;
      for (int i = 0; i < 3; i++)
        r[i] = frand(B * m.n, 1.0), xs[i] = (uint64_t)(uintptr_t)r[i];
      m.xs = xs, m.out = fpoison(B * m.n), m.want = fpoison(B * m.n);
      int bad = column_tasks(&m, t_allreduce, r_allreduce, 256);
      snprintf(name, sizeof name, "allreduce batch %lld", (long long)B);
      misc_done(name, bad || cmp_f32(name, m.out, m.want, B * m.n, 0.0, 0.0, 0.0));
      for (int i = 0; i < 3; i++)
        free(r[i]);
      free(m.out), free(m.want);
    }
    /* argmax, whole and split (ties: the first index; a NaN never wins) */
    {
      Misc m = {0};
      int32_t got[3], want[3], got_split[3];
      m.k = 50000 + 7, m.batch = B, m.x = frand(B * m.k, 10.0);
      m.x[17] = m.x[m.k - 3] = 20.0f; /* a tie in row 0 */
      m.x[100] = NAN;
      m.iout = got;
      int bad = run_task(t_argmax, &m) != 0;
      mlk_ref_argmax(want, m.x, m.k, B);
      m.split = 6;
      m.part = fpoison(B * 2 * m.split);
      for (m.chunk = 0; m.chunk < m.split && !bad; m.chunk++)
        bad |= run_task(t_argmax_part, &m) != 0;
      m.iout = got_split;
      bad |= run_task(t_argmax_reduce, &m) != 0;
      for (int64_t b = 0; b < B; b++)
        bad |= got[b] != want[b] || got_split[b] != want[b];
      snprintf(name, sizeof name, "argmax batch %lld", (long long)B);
      if (bad)
        fprintf(stderr, "%s: %d / %d (split), reference %d\n", name, got[0], got_split[0], want[0]);
      misc_done(name, bad);
      free(m.x), free(m.part);
    }
    /* sample: greedy, top-k, top-p rows; a token may differ only at a reported near tie */
    {
      Misc m = {0};
      int32_t got[3];
      m.k = 32000 + 5, m.batch = B, m.x = frand(B * m.k, 6.0);
      m.params = xalloc((size_t)(B * MLK_SAMPLE_PARAMS) * 4);
      for (int64_t b = 0; b < B; b++) {
        float *p = m.params + b * MLK_SAMPLE_PARAMS;
        p[MLK_SAMPLE_TEMPERATURE] = b == 0 ? 0.8f : b == 1 ? 0.0f : 1.3f;
        p[MLK_SAMPLE_TOP_K] = b == 0 ? 40.0f : b == 1 ? 1.0f : 1000.0f;
        p[MLK_SAMPLE_TOP_P] = b == 2 ? 0.9f : 1.0f;
        p[MLK_SAMPLE_U] = (float)(0.5 + 0.49 * urand());
      }
      m.temperature = 1.0f, m.top_k = 50, m.top_p = 1.0f, m.iout = got;
      int bad = run_task(t_sample, &m) != 0;
      for (int64_t b = 0; b < B && !bad; b++) {
        MlkSampleParams p = mlk_sample_row_params(m.params + b * MLK_SAMPLE_PARAMS, m.temperature,
                                                  m.top_k, m.top_p);
        double margin = 0;
        int32_t want = mlk_ref_sample_row(m.x + b * m.k, p.u, m.k, p.temperature, p.top_k,
                                          p.top_p, &margin);
        if (got[b] != want && margin > 1e-5) {
          fprintf(stderr, "sample row %lld: token %d, reference %d (margin %.3g)\n", (long long)b,
                  got[b], want, margin);
          bad = 1;
        }
      }
      snprintf(name, sizeof name, "sample batch %lld", (long long)B);
      misc_done(name, bad);
      free(m.x), free(m.params);
    }
  }
}

/* The emulator itself: a thread that polls a flag no thread sets (a nanosleep each round, as the
 * tiles' waits do) stays runnable forever; the run must fail at the step limit, not hang. */
static volatile int never;
static void spin_block(void *arg) {
  (void)arg;
  if (mlk_tid() == 0)
    while (!never)
      __nvvm_nanosleep(64);
}
static void test_emulator_spin(void) {
  cases++;
  fprintf(stderr, "(an emulator run that must fail, as a spin that never ends:)\n");
  emu_set_max_steps(1000000); /* the default's 50 million would take half a minute here */
  int rc = emu_block_run(spin_block, NULL, 0, 1, rt_next());
  emu_set_max_steps(0);
  if (rc == 0) {
    fprintf(stderr, "block emulator: a spin that never ends was not reported\n");
    rt_failures++;
  }
}

int main(void) {
  rt_watchdog(600);
  rt_seed();
  test_matvec();
  test_matvec_prefetch();
  test_split_matvec();
  test_attention();
  test_misc();
  test_emulator_spin();
  printf("%d of %d cases agree with the reference\n", cases - rt_failures, cases);
  return rt_finish("test_tiles");
}
