/* task.c: one task of an op record -> one call of its tile, for the device and for the simulator.
 *
 * Compiled by clang for nvptx64 into the tile bitcode (TILE(x) is the device tile mlk_tile_x) and
 * by the host compiler into libmlkrt (TILE(x) is the C reference mlk_ref_x, same arguments). Task
 * t of an op covers output columns [t * tile, min((t + 1) * tile, n)) (mlk_desc.h); the kinds
 * whose tasks are kv heads or chunks decode them here.
 */
#include "task.h"

#if defined(__NVPTX__)
#include "mlk_tiles.h"
#define TILE(name) mlk_tile_##name
/* Each kind's task is a function of its own on the device: ptxas then allocates its registers
 * alone, and the kernel loop keeps only a handful of values live across the call, so no kind's
 * tile pays for another's (inlined into one body they spilled). The generated kernel calls
 * mlk_task_<kind>_inline instead, from a function per code variant that has already set the
 * variant's fields to constants (codegen.c), so that the tile is compiled for them. */
#define TASK_FN __attribute__((noinline))
#define INLINE_FN __attribute__((always_inline))
#else
#include "mlk_ref.h"
#define TILE(name) mlk_ref_##name
#define TASK_FN
#define INLINE_FN
#endif

/* TASK(name) { body }: defines mlk_task_<name>_inline(op, task, rt), which runs the body, and
 * mlk_task_<name>, which calls it. The body may set *done (MlkTaskDone; by default the task
 * itself). */
#define TASK(name)                                                                                 \
  static INLINE_FN void task_body_##name(const MlkDevOp *op, int64_t task, const int64_t *rt,      \
                                         MlkTaskDone *done __attribute__((unused)));               \
  INLINE_FN MlkTaskDone mlk_task_##name##_inline(const MlkDevOp *op, int64_t task,                 \
                                                 const int64_t *rt) {                              \
    MlkTaskDone done = MLK_TASK_DONE(task, 1);                                                     \
    task_body_##name(op, task, rt, &done);                                                         \
    return done;                                                                                   \
  }                                                                                                \
  TASK_FN MlkTaskDone mlk_task_##name(const MlkDevOp *op, int64_t task, const int64_t *rt) {       \
    return mlk_task_##name##_inline(op, task, rt);                                                 \
  }                                                                                                \
  static INLINE_FN void task_body_##name(const MlkDevOp *op, int64_t task, const int64_t *rt,      \
                                         MlkTaskDone *done __attribute__((unused)))

#define PTR(type, addr) ((type *)(uintptr_t)(addr))

#define first_col mlk_task_first_col
#define col_count mlk_task_cols

/* ---- matvec: one row tile, or at a large batch a slice of k of its split group's rows ---- */

/* A split matvec's groups under the launch's cap on the device (MlkDevTune.matvec_split_cap: groups
 * no larger; the scratch fits any); as compiled in the simulator. */
static INLINE_FN int64_t capped_split(int64_t split) {
#if defined(__NVPTX__)
  if (mlk_dev_tune.matvec_split_cap && split > (int64_t)mlk_dev_tune.matvec_split_cap)
    split = mlk_dev_tune.matvec_split_cap;
#endif
  return split;
}

INLINE_FN int mlk_task_matvec_splits(int64_t split, int64_t k, int64_t ntasks, int64_t rows,
                                     int64_t task, int64_t min_rows) {
  if (!mlk_matvec_splits_at(split, k, rows)) /* no division where it cannot split */
    return 0;
#if defined(__NVPTX__)
  /* None where the weight stream takes any of the op's tasks in column blocks (the simulator,
   * which streams nothing, splits them: the same sums up to f32 rounding). The loader decides
   * per task by its rows, and a task it takes must not run in the split form, so the test is of
   * the op's smallest task (min_rows; column blocks take tasks of few rows): then every task of
   * the op runs whole, in column blocks or, if it has too many rows, from memory. */
  if (mlk_stream_on() && mlk_matvec_stream_cols(0, k, min_rows, rows))
    return 0;
#else
  (void)min_rows;
#endif
  int64_t first, members, slice;
  mlk_matvec_group(capped_split(split), k, ntasks, rows, task, &first, &members, &slice);
  return members > 1;
}

INLINE_FN MlkTaskDone mlk_task_matvec_split_inline(const MlkDevOp *op, int64_t task,
                                                   const int64_t *rt) {
  int64_t rows = mlk_task_rows(op, rt), first, members, slice;
  mlk_matvec_group(capped_split(op->split), op->k, op->ntasks, rows, task, &first, &members,
                   &slice);
  int64_t row0 = first_col(op, first), grows = mlk_min64(members * op->tile, op->n - row0);
  /* the tile takes scalars, never the record: were the caller's record (a code variant's
   * constant-folded copy) to escape into a call, it would live in local memory */
  int last = TILE(matvec_split)(
      PTR(float, op->out), PTR(const float, op->in[0]), PTR(const uint16_t, op->in[1]),
      PTR(const float, op->in[2]), PTR(const uint16_t, op->in[3]), PTR(const uint16_t, op->in[4]),
      op->eps, op->n, op->k, row0, grows, rows, (int)op->fn, op->split, first, members, slice,
      PTR(float, op->scratch), PTR(uint32_t, op->arrive) + first);
  return last ? MLK_TASK_DONE(first, members) : MLK_TASK_DONE(task, 0);
}

/* The whole task: the split form where it applies, else the row tile. The kernel's code variants
 * make that choice themselves (codegen.c): their plain form has split folded to 0, so that the
 * split's code is in none of the tasks that do not split. */
TASK(matvec) {
  if (mlk_task_matvec_splits(op->split, op->k, op->ntasks, mlk_task_rows(op, rt), task,
                             op->n - (op->ntasks - 1) * op->tile)) {
    *done = mlk_task_matvec_split_inline(op, task, rt);
    return;
  }
  TILE(matvec)(PTR(float, op->out), PTR(const float, op->in[0]), PTR(const uint16_t, op->in[1]),
               PTR(const float, op->in[2]), PTR(const uint16_t, op->in[3]),
               PTR(const uint16_t, op->in[4]), op->eps, op->n, op->k, first_col(op, task),
               col_count(op, task), mlk_task_rows(op, rt), (int)op->fn);
}

TASK(eltwise) {
  TILE(eltwise)(PTR(float, op->out), PTR(const float, op->in[0]), PTR(const float, op->in[1]),
                PTR(const uint16_t, op->in[4]), op->n, first_col(op, task), col_count(op, task),
                mlk_task_rows(op, rt), (int)op->fn);
}

/* in[1]: the table of every rank's x (the runtime fills it). */
TASK(allreduce) {
  TILE(allreduce)(PTR(float, op->out), PTR(const uint64_t, op->in[1]), op->ranks, op->n,
                  first_col(op, task), col_count(op, task), mlk_task_rows(op, rt));
}

TASK(gather) {
  TILE(gather)(PTR(float, op->out), PTR(const int32_t, op->in[0]), PTR(const uint16_t, op->in[1]),
               op->n, first_col(op, task), col_count(op, task), mlk_task_rows(op, rt));
}

TASK(rmsnorm) {
  (void)task; /* one task covers the row */
  TILE(rmsnorm)(PTR(float, op->out), PTR(const float, op->in[0]), PTR(const uint16_t, op->in[1]),
                op->eps, op->n, mlk_task_rows(op, rt));
}

TASK(rope) {
  TILE(rope)(PTR(float, op->out), PTR(const float, op->in[0]), PTR(const int32_t, op->in[1]), op->n,
             op->head_dim, first_col(op, task), col_count(op, task), mlk_task_rows(op, rt),
             op->theta, op->rope_factor, op->rope_low_freq, op->rope_high_freq,
             op->rope_original_max_pos);
}

/* A task per kv head (tile = head_dim columns, or whole kv heads); theta > 0: keys rotated first. */
TASK(kv_append) {
  TILE(kv_append)(PTR(uint16_t, op->out), PTR(const float, op->in[0]), PTR(const float, op->in[1]),
                  PTR(const int32_t, op->in[2]), PTR(const int32_t, op->in[3]), op->kv_heads,
                  op->head_dim, op->page, rt[MLK_RT_PAGES_PER_SEQ(op->cache)],
                  rt[MLK_RT_PAGES(op->cache)], op->layer, first_col(op, task) / op->head_dim,
                  col_count(op, task) / op->head_dim, mlk_task_rows(op, rt), op->theta,
                  op->rope_factor, op->rope_low_freq, op->rope_high_freq, op->rope_original_max_pos);
}

/* Unsplit: the task's columns are whole kv heads of (heads / kv_heads) * head_dim. Split: task t
 * covers the kv heads of block t / split (kvh of them, fewer in the last) in chunk t % split.
 * Folded (mlk_attn_folds): the same task writes its records into the op's scratch, and the last
 * of its block's split tasks to arrive merges the block and completes them all; at batch >= split
 * (a chunk a row) the tasks write the rows' attention itself and none merges; in a launch of short
 * rows (rt[MLK_RT_ATTN_WHOLE]) the block's slot 0 attends the rows whole and completes the block,
 * and its other slots return at once. */
TASK(attention) {
  int64_t pps = rt[MLK_RT_PAGES_PER_SEQ(op->cache)], npages = rt[MLK_RT_PAGES(op->cache)];
  int64_t rows = mlk_task_rows(op, rt);
  if (mlk_attn_folds(op->split, op->n, op->heads, op->head_dim)) {
    int64_t kvh = op->tile * op->split / (op->heads / op->kv_heads * op->head_dim);
    int64_t first = task / op->split * op->split, kvh0 = task / op->split * kvh;
    if (rt[MLK_RT_ATTN_WHOLE]) {
      if (task != first) {
        *done = MLK_TASK_DONE(task, 0); /* slot 0 completes it */
        return;
      }
      TILE(attention)(PTR(float, op->out), PTR(const float, op->in[0]),
                      PTR(const uint16_t, op->in[1]), PTR(const int32_t, op->in[2]),
                      PTR(const int32_t, op->in[3]), op->kv_heads, op->head_dim, op->page, pps,
                      npages, op->layer, op->heads, kvh0, kvh, rows);
      *done = MLK_TASK_DONE(first, op->split);
      return;
    }
    float *part = PTR(float, op->scratch);
    int merge = TILE(attention_fold)(
        PTR(float, op->out), part, PTR(const float, op->in[0]), PTR(const uint16_t, op->in[1]),
        PTR(const int32_t, op->in[2]), PTR(const int32_t, op->in[3]), op->kv_heads, op->head_dim,
        op->page, pps, npages, op->layer, op->heads, kvh, op->split, op->min_chunk, kvh0, kvh,
        task % op->split, rows);
    if (!TILE(group_arrive)(PTR(uint32_t, op->arrive) + first, (uint32_t)op->split)) {
      *done = MLK_TASK_DONE(task, 0);
      return;
    }
    if (merge) /* partials (batch < split); at batch >= split the slots wrote the rows whole */
      TILE(attn_reduce)(PTR(float, op->out), part, op->kv_heads, op->head_dim, op->heads, kvh,
                        op->split, kvh0, kvh, rows);
    *done = MLK_TASK_DONE(first, op->split);
    return;
  }
  if (op->split <= 1) {
    int64_t per = op->heads / op->kv_heads * op->head_dim;
    TILE(attention)(PTR(float, op->out), PTR(const float, op->in[0]), PTR(const uint16_t, op->in[1]),
                    PTR(const int32_t, op->in[2]), PTR(const int32_t, op->in[3]), op->kv_heads,
                    op->head_dim, op->page, pps, npages, op->layer, op->heads,
                    first_col(op, task) / per, col_count(op, task) / per, rows);
    return;
  }
  int64_t kvh = op->tile / mlk_attn_part_rec(op->heads / op->kv_heads, op->head_dim);
  int64_t kvh0 = task / op->split * kvh;
  TILE(attention_split)(PTR(float, op->out), PTR(const float, op->in[0]),
                        PTR(const uint16_t, op->in[1]), PTR(const int32_t, op->in[2]),
                        PTR(const int32_t, op->in[3]), op->kv_heads, op->head_dim, op->page, pps,
                        npages, op->layer, op->heads, kvh, op->split, op->min_chunk, kvh0,
                        mlk_min64(kvh, op->kv_heads - kvh0), task % op->split, rows);
}

/* Unsplit: one task. Split: task c writes the partials of chunk c of every row. */
TASK(argmax) {
  if (op->split) {
    TILE(argmax_part)(PTR(float, op->out), PTR(const float, op->in[0]), op->k, op->split, task,
                      mlk_task_rows(op, rt));
    return;
  }
  TILE(argmax)(PTR(int32_t, op->out), PTR(const float, op->in[0]), op->k, mlk_task_rows(op, rt));
}

TASK(argmax_reduce) {
  (void)task; /* one task */
  TILE(argmax_reduce)(PTR(int32_t, op->out), PTR(const float, op->in[0]), op->split,
                      mlk_task_rows(op, rt));
}

/* One task; each row's parameters come from its row of the sampling tensor in[1] (or the op's
 * keywords, mlk_sample_row_params). */
TASK(sample) {
  (void)task;
  TILE(sample)(PTR(int32_t, op->out), PTR(const float, op->in[0]), PTR(const float, op->in[1]),
               op->k, op->temperature, op->top_k, op->top_p, mlk_task_rows(op, rt));
}

/* A task per kvh kv heads: tile = kvh * (heads / kv_heads) * head_dim. */
TASK(attn_reduce) {
  int64_t per = op->heads / op->kv_heads * op->head_dim;
  TILE(attn_reduce)(PTR(float, op->out), PTR(const float, op->in[0]), op->kv_heads, op->head_dim,
                    op->heads, op->tile / per, op->split, first_col(op, task) / per,
                    col_count(op, task) / per, mlk_task_rows(op, rt));
}

MlkTaskDone mlk_task_exec(const MlkDevOp *op, int64_t task, const int64_t *rt) {
  switch (op->kind) {
#define MLK_X_CASE(K, name, r0, r1, r2, r3, r4)                                                        \
  case MLK_OP_##K:                                                                                 \
    return mlk_task_##name(op, task, rt);
    MLK_OP_KINDS(MLK_X_CASE)
#undef MLK_X_CASE
  }
  return MLK_TASK_DONE(task, 1);
}

void mlk_task_prefetch(const MlkDevOp *op, int64_t task, const int64_t *rt) {
#if defined(__NVPTX__)
  if (op->kind == MLK_OP_MATVEC &&
      !mlk_stream_takes(PTR(const uint16_t, op->in[1]), op->k, mlk_task_rows(op, rt)) &&
      !mlk_stream_takes_cols(PTR(const uint16_t, op->in[1]), op->k, col_count(op, task),
                             mlk_task_rows(op, rt)))
    mlk_tile_matvec_prefetch(PTR(const uint16_t, op->in[1]), op->n, op->k, first_col(op, task),
                             op->tile, mlk_task_rows(op, rt));
#else
  (void)op, (void)task, (void)rt;
#endif
}
