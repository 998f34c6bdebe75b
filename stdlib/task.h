/* task.h: the per-kind task dispatch, written once and compiled twice.
 *
 * stdlib/task.c turns one task of an op record (MlkDevOp, mlk_desc.h) into a call of the op's
 * tile: for nvptx64 into the device tile (mlk_tile_* of stdlib/tiles, linked into every
 * megakernel, where the interpreter's generated switch calls mlk_task_<kind>), for the host into
 * its C reference (mlk_ref_* of stdlib/ref, run by the CPU simulator through mlk_task_exec). So
 * how a task number becomes columns, kv heads or chunks, and which record field feeds which
 * argument, is decided in one place for both.
 *
 * Adding an op kind: a line in MLK_OP_KINDS (mlk_desc.h), its mlk_task_<kind> in task.c, its tile,
 * its reference, its validation and access pattern (runtime/ops.c), and its tests.
 */
#ifndef MLK_TASK_H
#define MLK_TASK_H

#include <stdint.h>

#include "mlk_desc.h"

/* mlk_task_<name>(op, task, rt): runs task `task` of op record `op` (of that kind) for the run's
 * rows; `rt` holds the run-time values (MLK_RT_*). Called by every thread of the block on the
 * device, by one host thread in the simulator. Returns the tasks whose notifies are now due
 * (MlkTaskDone, the same in every thread). mlk_task_<name>_inline is the same, to be inlined
 * where the caller has made some of the record's fields constants (the kernel's code variants). */
#define MLK_X_TASK_DECL(K, name, r0, r1, r2, r3, r4)                                                  \
  MlkTaskDone mlk_task_##name(const MlkDevOp *op, int64_t task, const int64_t *rt);               \
  MlkTaskDone mlk_task_##name##_inline(const MlkDevOp *op, int64_t task, const int64_t *rt);
MLK_OP_KINDS(MLK_X_TASK_DECL)
#undef MLK_X_TASK_DECL

/* A matvec's split form (mlk_desc.h MATVEC): whether task `task` of a matvec of `split`, k columns,
 * `ntasks` tasks, the smallest of them `min_rows` rows, runs in it in a run of `rows` rows (a split
 * record at a batch where it splits, mlk_matvec_splits_at, a group of more than one task after the
 * launch's cap, and on the GPU none of the op's tasks taken by the weight stream in column
 * blocks), and the task in that form: a slice
 * of k of its group's rows, merged by the group's last task to finish, which answers for the whole
 * group. mlk_task_matvec chooses between the forms itself; the kernel's code variants call the two
 * forms from separate functions, choosing with the variant's constants and the launch's batch,
 * read once (codegen.c): no load between a task's wait and its tile. */
int mlk_task_matvec_splits(int64_t split, int64_t k, int64_t ntasks, int64_t rows, int64_t task,
                           int64_t min_rows);
MlkTaskDone mlk_task_matvec_split_inline(const MlkDevOp *op, int64_t task, const int64_t *rt);

/* Any kind: the switch over MLK_OP_KINDS. */
MlkTaskDone mlk_task_exec(const MlkDevOp *op, int64_t task, const int64_t *rt);

/* Work a task may start before its waits, because it depends on no event: a matvec that the weight
 * stream does not take (stdlib/tiles/stream.c) hands its weight rows to the L2 prefetcher. A hint
 * with no result; nothing on the host. */
void mlk_task_prefetch(const MlkDevOp *op, int64_t task, const int64_t *rt);

/* Task t of an op covers output columns [t * tile, min((t + 1) * tile, n)) (mlk_desc.h). */
static inline int64_t mlk_task_first_col(const MlkDevOp *op, int64_t task) { return task * op->tile; }
static inline int64_t mlk_task_cols(const MlkDevOp *op, int64_t task) {
  int64_t left = op->n - task * op->tile;
  return op->tile < left ? op->tile : left;
}

/* The rows an op loops over in a run: the batch for a batched op, else 1. */
static inline int64_t mlk_task_rows(const MlkDevOp *op, const int64_t *rt) {
  return op->batched ? rt[MLK_RT_BATCH] : 1;
}

#endif /* MLK_TASK_H */
