/* mlk_desc.h: the description of a compiled model that mlkc emits and libmlkrt runs.
 *
 * mlkc writes one `MlkModelDesc` per model into the generated `model.c`: the tensors (with dtype and
 * shape), the ops of each megakernel as task grids, the event tensors between them, and the PTX of
 * the persistent kernel. The runtime builds per-SM task queues from it, allocates the buffers and
 * runs it on the GPU or on the CPU simulator. The index maps of event tensors are defined once,
 * here, as inline functions: the CPU simulator calls them, and the compiler's code generator emits
 * the same arithmetic into the kernel (tests compare the two).
 *
 * Everything here is an ABI between generated code and the runtime: bump MLK_DESC_ABI on any change.
 */
#ifndef MLK_DESC_H
#define MLK_DESC_H

#include <stdint.h>

#define MLK_DESC_ABI 16

/* Threads per block of every generated megakernel. Tiles are written for this many threads. */
#define MLK_BLOCK_THREADS 256

/* The kernel entry of every generated megakernel (codegen.c builds it, gpu.c launches it):
 *
 *   void ENTRY(const MlkDevOp *ops, const MlkDevSync *syncs, u32 *counters, const u32 *qoff,
 *              const u64 *queue, u32 epoch, u64 timeout_ns, MlkDevError *err, const i64 *rt,
 *              u64 *trace)
 *
 * The kernel is an interpreter: `ops` holds one MlkDevOp record per op of the megakernel (built by
 * the runtime from the MlkOpDesc, with operand addresses resolved), `syncs` the waits and notifies
 * of those ops (each a copy of its event's index map, the records' wait and notify lists index
 * it). The generated code has one call site per op kind the megakernel uses, not one per op, so
 * its size, registers and compile time do not grow with the model. `rt` holds the run-time values
 * below, written by the runtime before each run; `trace` is NULL, or MLK_TRACE_WORDS u64 per task
 * of the kernel (below).
 *
 * Static schedule: block b walks queue[qoff[b] .. qoff[b+1]) (sched.c builds one queue per block).
 * Dynamic schedule: queue[0 .. qoff[1]) holds every task of the kernel in topological order (op by
 * op), and the blocks take them in that order from a shared ticket counter,
 * counters[MLK_TICKET_COUNTER(ncounters, kernel)]: a block that takes a task only waits on tasks
 * with earlier tickets, all taken by running blocks, so the schedule cannot deadlock. A run takes
 * ntasks + blocks tickets (each block takes one past the end), so run `epoch` numbers its tickets
 * from (epoch - 1) * (ntasks + blocks) and the counter, like the event counters, is never reset
 * between runs. */
#define MLK_TICKET_COUNTER(ncounters, kernel) ((ncounters) + (kernel))

/* The queue array a kernel gets has this many zero words after its last task: the static
 * schedule reads the words of the next two tasks ahead of time, past a queue's end too. */
#define MLK_QUEUE_PAD 2

/* The weight stream's lists (stdlib/tiles/stream.c), static schedule on the GPU: after the pad,
 * the queue array holds for each block b, at word qoff[blocks + 1 + b], an entry of
 * MLK_STREAM_ENTRY_WORDS words per matvec task of queue b, in queue order: the device address of
 * the task's first weight row, then MLK_STREAM_ENTRY(rows, k, batched) (the task's rows, the op's
 * k, whether it loops over the batch); then an entry of zeros. qoff has 2 * blocks + 2 words. The
 * block's loader reads the next task's weights from there, not from the queue and op records. */
#define MLK_STREAM_ENTRY_WORDS 2
#define MLK_STREAM_ENTRY(rows, k, batched)                                                         \
  (((uint64_t)(batched) << 63) | ((uint64_t)(uint32_t)(rows) << 32) | (uint64_t)(uint32_t)(k))

/* Launch-time tuning of the device tiles: knobs that let one build measure a design choice on
 * the GPU, several settings in one run, without a rebuild. The tiles (stdlib/tiles/tune.c) define
 * a constant `mlk_dev_tune` (MLK_DEV_TUNE_SYMBOL) of this type, initialized to
 * MLK_DEV_TUNE_DEFAULTS, which mlkc keeps visible in the module; after loading a module the GPU
 * backend writes it from the environment (runtime/gpu.c: MLK_POLL_BACKOFF_NS,
 * MLK_STREAM_L2_AHEAD, MLK_MMA_STAGE_RING, MLK_MATVEC_SPLIT_CAP). A module without the symbol runs with the defaults; a runtime that does not
 * write it leaves them: neither side needs the other's version, so adding the knob left the ABI
 * number alone. */
typedef struct MlkDevTune {
  uint32_t poll_backoff_ns; /* a wait's longest nanosleep between two polls; 0: poll without sleeping */
  uint32_t stream_l2_ahead; /* bytes of the block's coming stream weights (beyond what the ring's
                               copies have reached) prefetched into L2; 0: none */
  uint32_t mma_stage_ring;  /* 1: the tensor-core matvec stages x in the stream's ring when the
                               stream has nothing in it or coming (more columns a chunk); 0: not */
  uint32_t matvec_split_cap; /* split matvecs' groups of at most this many tasks (1: none split;
                                0: as compiled): measures the split on the GPU in one build */
} MlkDevTune;
#define MLK_DEV_TUNE_SYMBOL "mlk_dev_tune"
/* measured (docs/performance.md, tenth session): polling without back-off and the ring staging
 * paid at every batch; the L2 look-ahead did not. The split matvecs run as compiled (cap 0):
 * fifteenth session, H100, 27% off a step at batch 64, 5% at batch 16, batch 1 within 0.6%. */
#define MLK_DEV_TUNE_DEFAULTS {0u, 0u, 1u, 0u}
#define MLK_DEV_TUNE_MAX_BACKOFF_NS 100000u     /* 100 us: a longer sleep only delays the run */
#define MLK_DEV_TUNE_MAX_L2_AHEAD (16u << 20) /* per block: far beyond any L2 */

/* A task's trace record: MLK_TRACE_WORDS u64 at trace[slot * MLK_TRACE_WORDS], slot = the task's
 * position in the queue array (static) or its ticket (dynamic). Times are %globaltimer ns on the
 * GPU, CLOCK_MONOTONIC ns on the simulator. */
#define MLK_TRACE_WORDS 10
#define MLK_TRACE_START 0 /* the block took the task (before its waits) */
#define MLK_TRACE_READY 1 /* its waits were satisfied: the tile starts */
#define MLK_TRACE_END 2   /* tile and notifies done */
#define MLK_TRACE_BLOCK 3 /* the block (SM queue) that ran it */
#define MLK_TRACE_TASK 4  /* its task word */
/* The phases of a tile that stamps them (0: not stamped; today a matvec on the GPU): between READY
 * and END, in this order. */
#define MLK_TRACE_STAGED 5 /* its inputs are staged in shared memory */
#define MLK_TRACE_FIRST 6  /* streamed: its first weights are in shared memory (the first chunk's
                            * wait); tensor cores: its first round of row groups has its sums */
#define MLK_TRACE_BODY 7   /* its tile is done: what follows is the barrier and the notifies */
#define MLK_TRACE_PHASES 3 /* STAGED, FIRST, BODY */
/* Durations a streamed task sums up (ns, 0: none; GPU, sm_90, since ABI 12): */
#define MLK_TRACE_CHUNK_WAIT 8 /* thread 0's waits for its chunks' copies to land */
#define MLK_TRACE_ISSUE 9      /* the loader's pumps while it ran (copies of this and later tasks) */

#define MLK_RT_BATCH 0                            /* rows of this run, batch_min..batch_max */
#define MLK_RT_ATTN_WHOLE 1                       /* 1: folded attentions take whole rows
                                                   * (mlk_attn_whole), 0: they split */
#define MLK_RT_PAGES_PER_SEQ(c) (2 + 2 * (c))     /* cache c: page-table columns */
#define MLK_RT_PAGES(c) (3 + 2 * (c))             /* cache c: physical pages in the pool */
#define MLK_RT_COUNT(ncaches) (2 + 2 * (ncaches))

/* A task word: the op's index within its megakernel in the high 32 bits, the task in the low 32.
 * Neither the number of ops of a megakernel nor of tasks of an op has a limit below 2^31. */
typedef uint64_t MlkTaskWord;
#define MLK_TASK_WORD(op, task) ((uint64_t)(uint32_t)(op) << 32 | (uint32_t)(task))
#define MLK_TASK_OP(word) ((uint32_t)((word) >> 32))
#define MLK_TASK_INDEX(word) ((uint32_t)(word))
#define MLK_MAX_TASKS_PER_OP INT32_MAX

/* What the end of a task completes (returned by the task's dispatch, stdlib/task.h, to the
 * interpreter's notify and to the simulator): tasks [first, first + count) of its op, whose
 * notifies it makes. (task, 1) for a task on its own; a split matvec's task leaves its group's
 * notifies to the group's last task to finish, (task, 0), which then completes them all. */
typedef uint64_t MlkTaskDone;
#define MLK_TASK_DONE(first, count) ((uint64_t)(uint32_t)(first) << 32 | (uint32_t)(count))
#define MLK_TASK_DONE_FIRST(d) ((uint32_t)((d) >> 32))
#define MLK_TASK_DONE_COUNT(d) ((uint32_t)(d))

/* Largest inner dimension a matvec tile stages in shared memory (f32 elements, 48 KiB). */
#define MLK_MATVEC_MAX_K 12288

/* The weight stream of sm_90 megakernels (stdlib/tiles/stream.c): a ring of slots in dynamic shared
 * memory that the bulk copy engine fills with matvec weight rows ahead of the tasks that read them.
 * A launch of an sm_90a kernel asks for MLK_STREAM_BYTES(slots) of dynamic shared memory, slots in
 * [0, MLK_STREAM_MAX_SLOTS] (0: the stream is off); the kernel reads the slot count off the size. */
#define MLK_STREAM_MAX_SLOTS 5 /* 5 slots, the header and the tiles' 48 KiB: 213 KiB of the 227 */
#define MLK_STREAM_DEFAULT_SLOTS 3 /* H200, batch 1: 1.686 ms against 1.700 with 4 (docs/performance.md) */
#define MLK_STREAM_SLOT_BYTES 32768
#define MLK_STREAM_HEADER 256 /* the stream's state and the slots' mbarriers, before the slots */
#define MLK_STREAM_BYTES(slots) (MLK_STREAM_HEADER + (slots) * MLK_STREAM_SLOT_BYTES)

/* Largest top_k of a sample op: its candidates are sorted in shared memory. */
#define MLK_SAMPLE_MAX_TOP_K 1024

/* A row of the sampling tensor (MLK_TENSOR_SAMPLING): what the sample ops of a model use for one
 * batch row in a run, written by the runtime before every run from the row's sampling settings
 * (mlk.h, mlk_sampling) and its random stream. f32 [rows, MLK_SAMPLE_PARAMS]. */
#define MLK_SAMPLE_TEMPERATURE 0 /* >= 0; 0: greedy (the first ranked logit) */
#define MLK_SAMPLE_TOP_K 1       /* 1..MLK_SAMPLE_MAX_TOP_K as a float; 0: this row samples with
                                    each op's own temperature, top_k and top_p (its keywords) */
#define MLK_SAMPLE_TOP_P 2       /* (0, 1] */
#define MLK_SAMPLE_U 3           /* the row's uniform random number of this run, in [0, 1) */
#define MLK_SAMPLE_PARAMS 4

/* ORDER: the dtype names table in compiler/sema.c and runtime/model.c mirror this enum. */
typedef enum MlkDType {
  MLK_F32,
  MLK_BF16,
  MLK_F16,
  MLK_I32,
  MLK_I8,
  MLK_U8,
  MLK_DTYPE_COUNT
} MlkDType;

typedef enum MlkTensorKind {
  MLK_TENSOR_PARAM,  /* weights: set by the application, read-only in kernels */
  MLK_TENSOR_INPUT,  /* set by the application before a run */
  MLK_TENSOR_OUTPUT, /* written by a megakernel, read back by the application */
  MLK_TENSOR_TEMP,   /* an intermediate between ops, lives on the device only */
  MLK_TENSOR_CACHE,  /* a paged KV pool, owned by the runtime (MlkCacheDesc says its geometry) */
  MLK_TENSOR_PAGES,  /* a cache's page table, i32 [batch_max, pages_per_seq], filled by the runtime */
  MLK_TENSOR_SAMPLING /* the sample ops' per-row parameters, f32 [batch_max, MLK_SAMPLE_PARAMS]
                         ([MLK_SAMPLE_PARAMS] without a batch dim), written by the runtime before
                         each run; at most one per model */
} MlkTensorKind;

#define MLK_MAX_RANK 4

typedef struct MlkTensorDesc {
  const char *name;             /* source name, used in every message about the tensor */
  MlkDType dtype;
  MlkTensorKind kind;
  int rank;
  int64_t shape[MLK_MAX_RANK];  /* row-major, shape[rank-1] is contiguous; a batched tensor has
                                   shape[0] = the model's batch_max */
  int64_t numel;                /* at batch_max; 0 for MLK_TENSOR_CACHE/PAGES (sized at create) */
  const char *from;             /* checkpoint binding (`from "..."`; the first name of a cat), or
                                   NULL: for messages; MlkModelDesc.bindings says what is loaded */
  int batched;                  /* 1: shape[0] is the dynamic batch dim: a run uses its first
                                   `batch` rows (row = numel / shape[0] elements) */
} MlkTensorDesc;

/* Every op tiles its output *columns* (the elements of one batch row) into tasks, and each task
 * loops over the run's `batch` rows itself. So task grids and counter start values never depend on
 * the batch size: one schedule serves every batch, and weights are read once per task for all
 * rows (decode is bound by weight bytes). Task t covers output columns [t*tile, min((t+1)*tile,
 * n)). Operands are MlkArgs: a tensor and an element offset into it (a layer's slice of a param,
 * a row range of a weight). Activations are f32 [batch, cols] with row stride cols. */
/* The op kinds, each defined once here: the enum, the names in messages and traces, the roles of
 * its operands in messages, and the per-kind dispatch of the device interpreter and of the
 * simulator (stdlib/task.c) all come from this table. What each kind computes:
 *
 * MATVEC: out[b, r] = fn(sum_k W[r, k] * xn[b, k] + bias[r]) (+ res[b, r]); W bf16 [n, k] at
 *   in[1]; x = in[0] f32 [b, k]; res = in[2] or none; xn = x, or with in[3] (bf16 [k]) set, the
 *   fused rmsnorm x * rsqrt(mean(x^2) + eps) * w; bias = in[4] (bf16 [n], the same for every row)
 *   or none (0). fn: NONE, RELU, SILU; or MUL, a gated product: out[b, r] = (sum_k W[r, k] *
 *   xn[b, k] + bias[r]) * in[2][b, r] (SwiGLU's silu(gate) * up).
 *   With split = S > 1, at a run's batch where it splits (mlk_matvec_splits_at), the tasks go
 *   in groups of S (mlk_matvec_group): together they compute the group's rows, each over a slice
 *   of k, and the group's last task to finish merges the slices' partial sums (in slice order,
 *   whatever the order they finished in) and writes the rows, then notifies for the whole group
 *   (MlkTaskDone). Same result up to rounding; x is read S times less (see docs/performance.md).
 * ELTWISE: out[b, i] = fn(a[b, i] + bias[i], c[b, i]) with a = in[0], c = in[1] (or none for
 *   RELU, SILU, NONE), bias = in[4] (bf16 [n], the same for every row) or none (0): `x + b` of a
 *   bf16 param vector b over f32 rows x is fn NONE with the bias.
 * GATHER: out[b, i] = (f32) table[ids[b], i]: ids = in[0] i32 [b], table = in[1] bf16 [rows, n].
 * RMSNORM: out[b, :] = x * rsqrt(mean(x^2) + eps) * w: x = in[0], w = in[1] bf16 [n]. One task
 *   (tile = n).
 * ROPE: rotary embedding of x = in[0] f32 [b, n] at positions in[1] i32 [b]: each head of head_dim
 *   columns rotates pairs (j, j + head_dim/2) by pos * inv_freq[j] (Llama 3 scaling when
 *   rope_factor > 1). tile is a multiple of head_dim.
 * KV_APPEND: writes keys in[0] and values in[1] (f32 [b, kv_heads*head_dim]) of layer `layer` at
 *   positions in[2] (i32 [b]) into the cache `out` (MLK_TENSOR_CACHE) through the page table
 *   in[3]. Columns are kv_heads*head_dim; tile = head_dim (a task per kv head). With theta > 0
 *   each key head is written rotated, as a ROPE with the op's rope attributes would rotate it (the
 *   compiler fuses a rope whose only reader is the append); theta 0: the keys as given.
 * ATTENTION: decode attention: for each row b and query head h, softmax(q K^T / sqrt(head_dim)) V
 *   over the positions 0..pos[b] of layer `layer` of cache in[1] (page table in[3]); q = in[0]
 *   f32 [b, heads*head_dim], pos = in[2]. Grouped query heads: head h reads kv head h / (heads /
 *   kv_heads). tile = h * (heads / kv_heads) * head_dim: a task per h kv heads (h = 1 unless
 *   `tile(head = h)`), n = heads * head_dim.
 *   With split = S > 1 (flash-decoding) the positions 0..pos[b] of each row are cut at run time
 *   into chunks (mlk_attn_chunk_len: about S / batch of them, at most S) that go round S slots in
 *   row order (mlk_attn_slot_chunk), a task per (h kv heads, slot), and `out` is not the
 *   attention but its partials: f32 [b, mlk_attn_part_cols(..)], for each kv head g and slot c a
 *   record at mlk_attn_part_offset(..) of `group` = heads / kv_heads query heads: the
 *   unnormalized sums o = sum_t exp(s_t - m) V[t] (group x head_dim), the maxima m = max_t s_t
 *   (group), the sums l = sum_t exp(s_t - m) (group); s_t = q . K[t] / sqrt(head_dim) in natural
 *   units, over the slot's chunk. A slot without a chunk of the row (or a row with pos < 0) has
 *   o = 0, m = -inf, l = 0. tile = h * group * (head_dim + 2) (one task's records), n =
 *   ceil(kv_heads / h) * S * tile; task t covers kv heads from (t / S) * h and slot t % S. An
 *   ATTN_REDUCE merges the slots.
 *   Or, with split = S > 1 and n = heads * head_dim (mlk_attn_folds), the merge is the op's own:
 *   `out` is the attention, tile = h * group * head_dim / S (a nominal share of its block's
 *   columns: kv_heads a multiple of h, h * group * head_dim of S), and task t writes its records
 *   into the op's scratch (MlkDevOp.scratch, the layout above, mlk_attn_scratch_bytes), then
 *   counts itself in at the block's arrival counter (MlkDevOp.arrive, the block's first task's);
 *   the last of the block's S tasks to arrive merges them as ATTN_REDUCE would and completes all
 *   S (their notifies), the others none. No reduce op, its tasks or its wait on the chain. At
 *   b >= S (every row one chunk) the task holding a row's chunk writes the row's attention into
 *   `out` itself (slot 0 the zeros of a row with pos < 0) and nothing is merged. In a launch with
 *   rt[MLK_RT_ATTN_WHOLE] set (short rows, mlk_attn_whole), slot 0 of each block attends every
 *   row whole and completes the block, and the other slots do nothing.
 * ARGMAX: out[b, 0] = argmax_i x[b, i] (i32; the first of equal maxima; NaN never wins; every
 *   value NaN: 0): x = in[0] f32 [b, k]. One task (split 0).
 *   With split = S >= 2 the row is cut into S chunks of mlk_argmax_chunk(k, S) columns (the last
 *   shorter, or empty), a task per chunk, and `out` is not the index but the partials: f32 [b, 2S],
 *   for chunk c at columns 2c and 2c + 1 the chunk's first largest non-NaN value and its index in
 *   the row (the bits of an i32 in an f32 slot; MLK_ARGMAX_NONE when the chunk has no non-NaN
 *   value): n = 2S, tile = 2. An ARGMAX_REDUCE picks among them.
 * ARGMAX_REDUCE: out[b, 0] = the index of the best of split = S partials of a split ARGMAX (in[0],
 *   f32 [b, 2S]): the largest value, the earliest chunk among equal ones, chunks without a value
 *   skipped (none at all: 0). The same index as the unsplit argmax. One task.
 * SAMPLE: out[b, 0] = a token drawn from x = in[0] (f32 [b, k] logits) with the parameters of row
 *   b of the model's sampling tensor in[1] (MLK_TENSOR_SAMPLING, at offset 0): its temperature,
 *   top_k, top_p and u, a uniform random number in [0, 1); a row whose top_k is 0 takes the op's
 *   own temperature, top_k and top_p (mlk_sample_row_params). One task. Per row:
 *    1. Rank the k logits by value, largest first, equal values by lower index; NaN ranks below
 *       -inf and -0 equals +0. The candidates c_0, c_1, ... are the first K = min(top_k, k).
 *    2. m = x[c_0]. If the temperature is 0 (greedy), or m is not finite (+inf, or every logit
 *       -inf or NaN): the result is c_0, the argmax.
 *    3. p_r = exp((x[c_r] - m) / temperature) (NaN logits: 0); C_r = p_0 + ... + p_r (f32).
 *    4. J = K - 1 if top_p >= 1, else the first r with C_r >= top_p * C_{K-1}.
 *    5. The result is c_r for the first r <= J with C_r > u * C_J, or c_J if there is none.
 *   Steps 1, 2 and 4 with top_p = 1 are exact; the sums of step 3 round differently on the
 *   device, so the device can differ from the reference when u * C_J or top_p * C_{K-1} lies
 *   within rounding (~1e-5 relative) of some C_r: mlk_ref_sample_row reports that margin.
 * ALLREDUCE: a sum over the ranks of a world inside the megakernel: out[b, i] = the sum over ranks
 *   r = 0, 1, ... (in that order) of rank r's x[b, i], x = in[0] (f32 [b, n]) on every rank. in[1]
 *   is not in the description (tensor -1): the runtime points the op record's in[1] at a table of
 *   `ranks` addresses, rank r's x (mlk_world_create). The op waits on its x's producer through an
 *   event whose notifies reach every rank (MlkEventDesc.ranks), so its task t starts once tile t
 *   of x is written on every rank. Elementwise tiles.
 * ATTN_REDUCE: the merge of a split attention's partials (in[0], the layout above, with this op's
 *   split, heads, kv_heads, head_dim and h): out[b, h, :] = sum_c exp(m_c - M) o_c /
 *   sum_c exp(m_c - M) l_c with M = max_c m_c over the S slots, and zeros where every slot is
 *   empty (pos < 0). out f32 [b, heads * head_dim]; tile = h * group * head_dim: a task per h kv
 *   heads, which waits on one MLK_MAP_TILE counter for the S producer tasks of its records.
 *
 * X(KIND, name, role of in[0], in[1], in[2], in[3], in[4]) ("" where the operand is unused).
 * ORDER: the numbering is the ABI; append new kinds at the end. */
#define MLK_OP_KINDS(X)                                                                            \
  X(MATVEC, matvec, "x", "W", "residual", "norm weight", "bias")                                  \
  X(ELTWISE, eltwise, "a", "b", "", "", "bias")                                                    \
  X(GATHER, gather, "ids", "table", "", "", "")                                                    \
  X(RMSNORM, rmsnorm, "x", "weight", "", "", "")                                                   \
  X(ROPE, rope, "x", "positions", "", "", "")                                                      \
  X(KV_APPEND, kv_append, "keys", "values", "positions", "page table", "")                        \
  X(ATTENTION, attention, "q", "cache", "positions", "page table", "")                            \
  X(ARGMAX, argmax, "x", "", "", "", "")                                                           \
  X(SAMPLE, sample, "x", "sampling", "", "", "")                                                   \
  X(ATTN_REDUCE, attn_reduce, "partials", "", "", "", "")                                           \
  X(ALLREDUCE, allreduce, "x", "ranks' x", "", "", "")                                            \
  X(ARGMAX_REDUCE, argmax_reduce, "partials", "", "", "", "")

/* The operand slots of an op (MlkOpDesc.in, MlkDevOp.in). */
#define MLK_OP_INPUTS 5

typedef enum MlkOpKind {
#define MLK_X_ENUM(K, name, r0, r1, r2, r3, r4) MLK_OP_##K,
  MLK_OP_KINDS(MLK_X_ENUM)
#undef MLK_X_ENUM
} MlkOpKind;
#define MLK_X_ONE(K, name, r0, r1, r2, r3, r4) +1
#define MLK_OP_KIND_COUNT (0 MLK_OP_KINDS(MLK_X_ONE)) /* the number of kinds */
#define MLK_OP_LAST (MLK_OP_KIND_COUNT - 1)             /* the largest MlkOpKind */

/* Activation applied by a matvec epilogue, or the function of an elementwise op. */
typedef enum MlkFn {
  MLK_FN_NONE, /* matvec: no activation; eltwise: a copy */
  MLK_FN_RELU, /* relu(a) */
  MLK_FN_SILU, /* a * sigmoid(a) */
  MLK_FN_ADD,  /* a + c (elementwise only) */
  MLK_FN_MUL   /* a * c (elementwise); matvec: the sum times in[2] */
} MlkFn;

typedef struct MlkArg {
  int tensor;     /* index into MlkModelDesc.tensors, -1: none */
  int64_t offset; /* elements from the tensor's start */
} MlkArg;

/* The attributes of an op that only some kinds use (0 where a kind does not): one list, so that
 * the descriptor, the device record, the generated C and the dumps cannot forget one.
 * X(type, name, per_op, what): per_op 1 for the one attribute that may differ between the ops of
 * one code variant (the cache layer; see MlkKernelDesc), 0 for those its code takes as constants. */
#define MLK_OP_ATTRS(X)                                                                            \
  X(float, eps, 0, "rmsnorm, fused or not")                                                        \
  X(float, theta, 0, "rope; kv_append: its keys rotated when > 0")                                 \
  X(float, rope_factor, 0, "rope: Llama 3 frequency scaling when > 1")                             \
  X(float, rope_low_freq, 0, "rope: Llama 3 low frequency factor")                                 \
  X(float, rope_high_freq, 0, "rope: Llama 3 high frequency factor")                               \
  X(int64_t, rope_original_max_pos, 0, "rope: Llama 3 original context")                           \
  X(int64_t, heads, 0, "attention, attn_reduce, rope: query heads")                                \
  X(int64_t, kv_heads, 0, "attention, attn_reduce, kv_append: kv heads")                           \
  X(int64_t, head_dim, 0, "attention, attn_reduce, kv_append, rope: columns per head")             \
  X(int32_t, layer, 1, "attention, kv_append: the cache layer")                                    \
  X(int32_t, cache, 0, "attention, kv_append: index into MlkModelDesc.caches")                     \
  X(float, temperature, 0, "sample: >= 0 (0: greedy), for rows the runtime was given none")       \
  X(float, top_p, 0, "sample: in (0, 1], for rows the runtime was given none")                     \
  X(int64_t, top_k, 0, "sample: in [1, MLK_SAMPLE_MAX_TOP_K], for rows given none")                \
  X(int64_t, split, 0, "attention: chunks of a row's positions (0, 1: none; up to "                \
                    "MLK_ATTN_MAX_SPLIT); argmax: chunks of a row (0: none; 2 to "                 \
                    "MLK_ARGMAX_MAX_SPLIT); attn_reduce, argmax_reduce: the chunks they merge; "   \
                    "matvec: tasks a group that split k at large batch (0, 1: none; a power of "  \
                    "two up to MLK_MATVEC_MAX_SPLIT)")                                             \
  X(int64_t, min_chunk, 0, "split attention: fewest positions per chunk (mlk_attn_chunk_len)")    \
  X(int64_t, ranks, 0, "allreduce: the ranks summed (its table at in[1] has as many addresses)")

#define MLK_X_FIELD(type, name, per_op, what) type name;

typedef struct MlkOpDesc {
  const char *name;  /* e.g. "matvec@mlp.mlk:12" for messages and traces */
  MlkOpKind kind;
  MlkFn fn;
  MlkArg out;        /* the written tensor (KV_APPEND: the cache) */
  MlkArg in[MLK_OP_INPUTS]; /* see MlkOpKind */
  int64_t n;         /* output columns of one batch row (KV_APPEND: kv_heads*head_dim) */
  int64_t k;         /* matvec, argmax, sample: input columns; 0 otherwise */
  int64_t tile;      /* output columns per task */
  int64_t ntasks;    /* ceil(n / tile) */
  int batched;       /* 1: rows loop over the run's batch; 0: one row */
  /* The events this op waits on before each task and notifies after it: event indices at
   * MlkModelDesc.event_refs[wait0 .. wait0 + nwaits) and [notify0 .. notify0 + nnotifies). */
  int wait0, nwaits, notify0, nnotifies;
  /* The code that runs this op's tasks: variant `variant` of its kernel (MlkKernelDesc). */
  int variant;
  struct {
    MLK_OP_ATTRS(MLK_X_FIELD)
  };
} MlkOpDesc;

static inline int64_t mlk_min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* ---- split matvec: k cut over a group of tasks, merged by the last one ---- */

/* The most tasks a split matvec's group may have, the least batch from which a split matvec
 * always splits, and the least from which it splits where x does not fit whole (measured on the
 * H200, Llama-3.2-1B: 0.60x a step at batch 8, 0.94x at 4, but 1.13x at 2; fifteenth session). */
#define MLK_MATVEC_MAX_SPLIT 16
#define MLK_MATVEC_SPLIT_MIN_BATCH 16
#define MLK_MATVEC_SPLIT_MIN_BATCH_UNFIT 4

/* Whether a matvec task stages x of `batch` rows over k columns whole on the CUDA-core paths (rows
 * padded to 64 columns, plus 64 norm slots and 64 reduction slots, within MLK_MATVEC_MAX_K floats):
 * the weight stream's condition on x (stdlib/tiles/matvec.c, mlk_matvec_streamable). */
static inline int mlk_matvec_x_fits(int64_t k, int64_t batch) {
  return batch * ((k + 63) & ~(int64_t)63) + 128 <= MLK_MATVEC_MAX_K;
}

/* Whether a matvec with `split` (MlkOpDesc.split) > 1 splits in a run of `batch` rows: from
 * MLK_MATVEC_SPLIT_MIN_BATCH rows, and from MLK_MATVEC_SPLIT_MIN_BATCH_UNFIT where x does not fit
 * whole (no weight stream: the task would stage x in pieces and read its weights from memory;
 * Llama's down projection from batch 4, every projection from batch 6). */
static inline int mlk_matvec_splits_at(int64_t split, int64_t k, int64_t batch) {
  return split > 1 && (batch >= MLK_MATVEC_SPLIT_MIN_BATCH ||
                       (batch >= MLK_MATVEC_SPLIT_MIN_BATCH_UNFIT && !mlk_matvec_x_fits(k, batch)));
}

/* The group of task `task` of a matvec with `split`, k columns and `ntasks` tasks in a run of
 * `batch` rows: its first task, its tasks (the last group may have fewer) and this task's slice
 * of k (0 .. *members - 1). *members is 1 (no split: the task alone) where it does not split
 * (mlk_matvec_splits_at). */
static inline void mlk_matvec_group(int64_t split, int64_t k, int64_t ntasks, int64_t batch,
                                    int64_t task, int64_t *first, int64_t *members,
                                    int64_t *slice) {
  int64_t s = mlk_matvec_splits_at(split, k, batch) ? split : 1;
  *first = task / s * s;
  *members = mlk_min64(s, ntasks - *first);
  *slice = task - *first;
}

/* Columns [*k0, *k1) of k that slice j of `members` covers: equal slices, each but the last a
 * multiple of 32 columns (a tensor-core block). */
static inline void mlk_matvec_slice(int64_t k, int64_t members, int64_t j, int64_t *k0,
                                    int64_t *k1) {
  int64_t len = ((k + members - 1) / members + 31) & ~(int64_t)31;
  *k0 = mlk_min64(j * len, k);
  *k1 = mlk_min64(*k0 + len, k);
}

/* A split matvec's scratch, in f32 elements from MlkDevOp.scratch, in a run of `batch` rows:
 * slice j's partial sums of batch row b at (j * batch + b) * n + (output column), then (with a
 * fused norm) the sums of squares of x over task t's slice, row b, at split * batch * n + t *
 * batch + b. Its size at the model's batch_max, in bytes (0: not split). */
static inline int64_t mlk_matvec_ss_offset(int64_t split, int64_t n, int64_t batch, int64_t task) {
  return split * batch * n + task * batch;
}
static inline int64_t mlk_matvec_scratch_bytes(int64_t split, int64_t n, int64_t k, int64_t ntasks,
                                               int64_t batch_max) {
  if (!mlk_matvec_splits_at(split, k, batch_max)) /* nor at any smaller batch */
    return 0;
  return (mlk_matvec_ss_offset(split, n, batch_max, ntasks) * 4 + 255) & ~(int64_t)255;
}

/* ---- split argmax: the chunks of a row ---- */

/* The most chunks a split argmax may cut a row into, and the index of a chunk without a value. */
#define MLK_ARGMAX_MAX_SPLIT 1024
#define MLK_ARGMAX_NONE 0x7fffffff

/* Columns per chunk of a row of k columns cut into `split`: ceil(k / split) rounded up to a
 * multiple of 4 (16-byte loads), so chunk c covers [c * len, min((c + 1) * len, k)); the last
 * chunks may be empty. */
static inline int64_t mlk_argmax_chunk(int64_t k, int64_t split) {
  return ((k + split - 1) / split + 3) & ~(int64_t)3;
}

/* ---- split attention (flash-decoding): chunks and the layout of the partials ---- */

/* The most chunks an attention op may split a row's positions into. */
#define MLK_ATTN_MAX_SPLIT 32

/* Positions per chunk of a row that attends to positions 0..T-1, in a run of `batch` rows whose
 * chunks share the op's `split` slots (a task per slot and block of kv heads): a row takes about
 * split / batch chunks (at least one), so that at batch 1 a long context spreads over every slot
 * and at batch >= split each row is one chunk and the rows spread over the slots instead (a task
 * looping over every row of its one slot did the whole op's work in a few tasks at large batch:
 * 264 us of a 1077 us layer at batch 64 on the H100, docs/performance.md). Chunk c covers
 * [c * len, min((c + 1) * len, T)); len is at least `min_chunk` (MlkOpDesc.min_chunk; 0 or 1: no
 * minimum): a chunk costs a task's fixed overhead (waits, q, the merge of its warps), so a short
 * context should use few chunks while the other slots get empty records at once. Decided per run
 * at run time: task grids never depend on positions or the batch. */
static inline int64_t mlk_attn_chunk_len(int64_t T, int64_t split, int64_t min_chunk,
                                         int64_t batch) {
  if (T <= 0)
    return 0;
  /* 32-bit divisions (T is a count of int32 positions, split <= MLK_ATTN_MAX_SPLIT): the tiles
   * run this for every row, and a 64-bit division is a long subroutine on the device */
  uint32_t t = (uint32_t)T, s = (uint32_t)split;
  uint32_t per = batch >= split ? 1u : s / (batch > 1 ? (uint32_t)batch : 1u);
  uint32_t len = (t + per - 1) / per;
  return len < min_chunk ? min_chunk : len;
}

/* The chunks of such a row (0 when T <= 0): at most split. */
static inline int64_t mlk_attn_chunks(int64_t T, int64_t split, int64_t min_chunk, int64_t batch) {
  uint32_t len = (uint32_t)mlk_attn_chunk_len(T, split, min_chunk, batch);
  return len > 0 ? ((uint32_t)T - 1) / len + 1 : 0;
}

/* The chunk of a row that slot s (0 <= s < split) holds, or -1 (slot s gets an empty record):
 * the rows' chunks go round the slots in row order, row b's chunk c in slot (first + c) % split,
 * where first (0 <= first < split) is the number of chunks of rows 0 .. b-1 modulo split. So
 * every slot's task gets its share of the chunks at any batch. */
static inline int64_t mlk_attn_slot_chunk(int64_t first, int64_t chunks, int64_t split,
                                          int64_t s) {
  int64_t c = s >= first ? s - first : s + split - first;
  return c < chunks ? c : -1;
}

/* Floats of one (kv head, chunk) record: group x head_dim sums o, group maxima m, group sums l. */
static inline int64_t mlk_attn_part_rec(int64_t group, int64_t head_dim) {
  return group * (head_dim + 2);
}

/* Element offset, within a row of the partials, of the record of kv head g in chunk c, for tasks
 * of `kvh` kv heads: [kv head block g / kvh][chunk][kv head g % kvh][record]. So the S producer
 * tasks of a block write one contiguous range that the block's reduce task reads. */
static inline int64_t mlk_attn_part_offset(int64_t kvh, int64_t split, int64_t rec, int64_t g,
                                           int64_t c) {
  return ((g / kvh) * split + c) * kvh * rec + (g % kvh) * rec;
}

/* Columns of a row of the partials: ceil(kv_heads / kvh) blocks of split * kvh records (the last
 * block may hold fewer kv heads; its unused records are never written nor read). */
static inline int64_t mlk_attn_part_cols(int64_t kv_heads, int64_t heads, int64_t head_dim,
                                         int64_t split, int64_t kvh) {
  return (kv_heads + kvh - 1) / kvh * split * kvh * mlk_attn_part_rec(heads / kv_heads, head_dim);
}

/* Whether an ATTENTION op with `split`, `n` output columns, `heads` and `head_dim` merges its own
 * chunks (the folded form above) rather than writing partials for an ATTN_REDUCE. */
static inline int mlk_attn_folds(int64_t split, int64_t n, int64_t heads, int64_t head_dim) {
  return split > 1 && n == heads * head_dim;
}

/* The positions a row at position `pos` attends to, 0..pos, at most the page table's reach
 * (pages_per_seq * page; the runtime rejects positions beyond it before a run): 0 or less, none.
 * The tiles, the reference and the runtime count them alike. */
static inline int64_t mlk_attn_positions(int32_t pos, int64_t pages_per_seq, int64_t page) {
  int64_t T = (int64_t)pos + 1;
  return T > pages_per_seq * page ? pages_per_seq * page : T;
}

/* A run of short rows takes a folded split attention whole: where `batch` rows attend to at most
 * `longest` positions each and batch * longest <= `limit` (the environment's
 * MLK_ATTN_WHOLE_POSITIONS, by default the constant below; 0: never), the runtime sets rt[MLK_RT_ATTN_WHOLE]
 * for the launch, and then each kv head block's slot-0 task attends every row whole, with the
 * unsplit code, and completes the block's S tasks, while the other S - 1 tasks do nothing at all:
 * no chunks, no records, no arrival and no merge. At short context a split costs more than it
 * saves (one task over Llama's 129 positions against chunks of 32 positions, their records, the
 * arrivals and the merge), and the split's task grid stays what long contexts and large batches
 * need. A launch-time choice, as positions change every step while the task grid does not.
 * Measured against the split (H100, docs/performance.md, twenty-seventh session): 1.5% faster a
 * step at batch 1 and 129 positions, 1.8% slower at 257, 3.8% at 384 and 2.0% at batch 2 x 129
 * (a build without the split, whose tasks run the same tile, was ~2.5% faster than this at each
 * of those points: not the split's events, measured; to find). So the limit sits between 129 and
 * 257, low. */
#define MLK_ATTN_WHOLE_POSITIONS 160
static inline int mlk_attn_whole(int64_t batch, int64_t longest, int64_t limit) {
  return batch >= 1 && longest >= 0 && batch * longest <= limit;
}

/* A folded split attention's scratch at the model's batch_max: its partials, batch_max rows of
 * mlk_attn_part_cols(..) f32 with kv head blocks of kvh = tile * split / (group * head_dim). */
static inline int64_t mlk_attn_scratch_bytes(int64_t kv_heads, int64_t heads, int64_t head_dim,
                                             int64_t split, int64_t tile, int64_t batch_max) {
  int64_t kvh = tile * split / (heads / kv_heads * head_dim);
  return (batch_max * mlk_attn_part_cols(kv_heads, heads, head_dim, split, kvh) * 4 + 255) &
         ~(int64_t)255;
}

/* ---- sampling: the parameters of one row ---- */

/* What a sample op uses for one batch row. */
typedef struct MlkSampleParams {
  float temperature; /* 0: greedy */
  float top_p;
  float u;
  int64_t top_k;     /* 1..MLK_SAMPLE_MAX_TOP_K */
} MlkSampleParams;

/* The parameters of a row of the sampling tensor (`row`: its MLK_SAMPLE_PARAMS floats), or the
 * op's own (`temperature`, `top_k`, `top_p`) where the row's top_k is 0. The device tile and the
 * reference both resolve rows here, and clamp so that no value takes them out of their buffers:
 * top_k to [1, MLK_SAMPLE_MAX_TOP_K] (NaN: 1), a temperature that is not > 0 (NaN included) is
 * greedy, a top_p that is not < 1 (NaN included) cuts nothing. The runtime only writes values
 * inside these ranges. */
static inline MlkSampleParams mlk_sample_row_params(const float *row, float temperature,
                                                    int64_t top_k, float top_p) {
  MlkSampleParams p = {temperature, top_p, row[MLK_SAMPLE_U], top_k};
  float rk = row[MLK_SAMPLE_TOP_K];
  if (rk != 0.0f) {
    p.temperature = row[MLK_SAMPLE_TEMPERATURE];
    p.top_p = row[MLK_SAMPLE_TOP_P];
    p.top_k = rk >= (float)MLK_SAMPLE_MAX_TOP_K ? MLK_SAMPLE_MAX_TOP_K : rk >= 1.0f ? (int64_t)rk : 1;
  }
  if (p.top_k < 1)
    p.top_k = 1;
  if (p.top_k > MLK_SAMPLE_MAX_TOP_K)
    p.top_k = MLK_SAMPLE_MAX_TOP_K;
  if (!(p.temperature > 0.0f))
    p.temperature = 0.0f;
  if (!(p.top_p < 1.0f))
    p.top_p = 1.0f;
  return p;
}

typedef enum MlkEventMap {
  /* One counter, which `count` notifies complete in each run: every task of each op that lists
   * the event among its notifies adds 1, every task of each op that lists it among its waits waits
   * for all of them. An inferred event of a consumer that needs the whole tensor (a matvec reading
   * its input vector) has one producer op and count = its tasks; an explicit event counter of the
   * language (`event done : [L]`, `wait(done[l])`, `notify(done[l + 1])`) is one such event per
   * counter that a clause names, with every op of the notifying statements counted. */
  MLK_MAP_ALL,
  /* One counter per consumer task. Consumer task j waits on counter j, which counts the producer
   * tiles overlapping elements [j*ctile, (j+1)*ctile); producer task i notifies every counter whose
   * consumer tile overlaps its elements [i*ptile, (i+1)*ptile). One producer op, one consumer op. */
  MLK_MAP_TILE
} MlkEventMap;

typedef struct MlkEventDesc {
  const char *name;  /* e.g. "h: matvec@mlp.mlk:12 -> matvec@mlp.mlk:13", "done[3]" */
  int producer;      /* op index (global in MlkModelDesc.ops); -1: an explicit event (several) */
  int consumer;      /* op index; -1: an explicit event */
  int tensor;        /* the tensor that carries the dependency; -1: an explicit event */
  MlkEventMap map;
  int64_t n;         /* MLK_MAP_TILE: columns of the dependency (the producer's output columns) */
  int64_t ptile;     /* MLK_MAP_TILE: producer elements per task */
  int64_t ctile;     /* MLK_MAP_TILE: consumer elements per task */
  int64_t count;     /* MLK_MAP_ALL: notifies per run (the tasks of the ops that notify it) */
  int64_t size;      /* number of counters */
  int64_t base;      /* first counter in the model's counter array */
  int64_t ranks;     /* 0 or 1: this rank's; R > 1: each notify reaches this counter on every rank
                        of the world (an in-kernel allreduce waits for every rank's tile), so a
                        run brings it R times its start value */
} MlkEventDesc;

typedef enum MlkSchedule {
  MLK_SCHED_STATIC,  /* per-SM queues built by the host */
  MLK_SCHED_DYNAMIC  /* a ready queue: a task is pushed when its last counter completes */
} MlkSchedule;

/* A megakernel's code holds one call site per *variant*: a class of its ops that agree on
 * everything but their operands' addresses, their cache layer and their waits and notifies
 * (mlk_op_same_variant), compiled with those shared fields as constants. A model's depth adds ops,
 * not variants (Llama: the same dozen whatever its layer count). variant_ops[v] is an op of
 * variant v (global index); every op names its variant in MlkOpDesc.variant. nvariants 0: the
 * kernel's code reads every field from the op records (every op's variant is then 0). */
/* A megakernel that all-reduces over several ranks is cut at its collectives into segments, each
 * a kernel of its own: kernels k .. k + nsegments - 1 are segments 0 .. nsegments - 1 of the source
 * megakernel named by kernel k, and the collectives (MlkCollectiveDesc) that run after segment s
 * name kernel k + s. A run of the megakernel is a run of each segment on every rank in turn, each
 * followed by its collectives (mlk_world_run). A kernel that was not cut is segment 0 of 1. */
typedef struct MlkKernelDesc {
  const char *name;  /* megakernel name in the source, e.g. "forward"; "forward.2" for segment 2 */
  const char *entry; /* PTX entry symbol */
  int first_op;      /* ops [first_op, first_op + nops) belong to this kernel, in topological order */
  int nops;
  MlkSchedule schedule;
  const int *variant_ops;
  int nvariants;
  int segment, nsegments;
} MlkKernelDesc;

/* A collective between the ranks of a sharded model (`mesh tp = N`, N > 1), run between two
 * segments of a megakernel. MLK_COLL_ALLREDUCE: on every rank, out[b, i] = sum over the ranks r,
 * in rank order, of in[b, i] on rank r, for the run's `batch` rows (batched) or one row, of n f32
 * columns: `allreduce(tp, x)` of the source. in is written by ops of segments up to `after`, out
 * read only by later segments (the runtime checks both). */
typedef enum MlkCollectiveKind { MLK_COLL_ALLREDUCE } MlkCollectiveKind;

typedef struct MlkCollectiveDesc {
  const char *name;  /* "allreduce@nn.mlk:37[l=0]", for messages */
  MlkCollectiveKind kind;
  MlkArg in, out;    /* f32 tensors, row stride n */
  int64_t n;         /* columns of a row */
  int batched;
  int64_t ranks;     /* the ranks of its mesh axis (MlkModelDesc.ranks) */
  int after;         /* the kernel (segment) it runs after */
} MlkCollectiveDesc;

/* A paged KV cache: `cache kv : paged_kv(bf16, L, KVH, HD, page = P)`. The runtime sizes it at
 * model creation for `context` tokens per sequence (MLK_KV_CONTEXT, default 2048), allocates the
 * pool tensor and fills the page table (sequence b owns pages b*pages_per_seq ...; sharing and
 * freeing pages is the runtime's business, the kernels only follow the table). Pool layout, in
 * elements of `dtype`: [layers][pages][2 (K, V)][kv_heads][page][head_dim]. */
typedef struct MlkCacheDesc {
  const char *name;
  int tensor;        /* the pool (MLK_TENSOR_CACHE) */
  int pages_tensor;  /* the page table (MLK_TENSOR_PAGES) */
  MlkDType dtype;    /* bf16, f16 or f32 */
  int64_t layers, kv_heads, head_dim, page;
} MlkCacheDesc;

/* Element offset of (layer, physical page, kv (0: K, 1: V), head, slot) in a cache pool. */
static inline int64_t mlk_cache_offset(const MlkCacheDesc *c, int64_t pages, int64_t layer,
                                       int64_t page, int kv, int64_t head, int64_t slot) {
  return ((((layer * pages + page) * 2 + kv) * c->kv_heads + head) * c->page + slot) * c->head_dim;
}

/* Where one checkpoint tensor goes: its numel(shape) elements fill elements [offset, offset +
 * numel) of param `tensor`, in row-major order. mlkc expands each param's `from` binding into these
 * (docs/language.md, "Declarations"): `from "a.{l}.w"` on a param [L, ...] into one binding per
 * layer l, at offset l * (the elements of a layer), shaped like a layer; `cat(...)` into its names
 * in order, each alternative of a `{a,b}` in order, as consecutive row ranges of each layer (of
 * the whole param without `{l}`): the q, k and v rows of each layer of a fused wqkv. The table is
 * sorted by tensor, then offset; the bindings of a param do not overlap and cover it exactly (the
 * runtime checks), and a param without any is not loaded from checkpoints. */
typedef struct MlkBinding {
  int tensor;                   /* the param (index into MlkModelDesc.tensors) */
  const char *name;             /* the checkpoint tensor, placeholders expanded:
                                   "model.layers.3.self_attn.k_proj.weight" */
  int64_t offset;               /* first element of the param it fills */
  int rank;
  int64_t shape[MLK_MAX_RANK];  /* the shape the checkpoint tensor must have, exactly */
  /* A sharded param (`shard(axis, dim)` over an axis of shard_ways > 1 ranks) holds one rank's
   * slice: dimension shard_dim of the checkpoint tensor cut into shard_ways equal parts, of which
   * the model's rank (mlk_model_options.rank) loads part `rank`, its elements in order. shard_ways
   * 0 or 1: the whole tensor. */
  int shard_dim;
  int64_t shard_ways;
} MlkBinding;

typedef struct MlkModelDesc {
  int abi;                      /* MLK_DESC_ABI at generation time */
  const char *name;             /* model name */
  const char *source;           /* path of the .mlk file it came from */
  const MlkTensorDesc *tensors;
  int ntensors;
  const MlkOpDesc *ops;
  int nops;
  const MlkEventDesc *events;
  int nevents;
  const int *event_refs;        /* the ops' wait and notify lists (MlkOpDesc.wait0, ...) */
  int nevent_refs;
  int64_t ncounters;            /* sum of event sizes */
  const MlkKernelDesc *kernels;
  int nkernels;
  const MlkCacheDesc *caches;
  int ncaches;
  const char *batch_name;       /* the dynamic batch dim ("B"), or NULL: every run has 1 row */
  int64_t batch_min, batch_max;
  const char *ptx_sm90a;        /* PTX for sm_90a, NUL-terminated, or NULL */
  const char *ptx_sm80;         /* portable PTX for sm_80 and newer, or NULL */
  const MlkBinding *bindings;   /* checkpoint tensors of the params (mlk_model_load_checkpoint) */
  int nbindings;
  int64_t ranks;                /* ranks of the model's mesh (`mesh tp = N`: N); 1: not sharded.
                                   A model of several ranks holds rank mlk_model_options.rank's
                                   part of each sharded param (MlkBinding) */
  const MlkCollectiveDesc *collectives; /* in run order */
  int ncollectives;
  const unsigned char *cubin_sm90a; /* ptx_sm90a assembled ahead of time (mlkc --cubin), or NULL:
                                       an sm_90 GPU loads it instead of compiling the PTX */
  int64_t cubin_sm90a_bytes;
} MlkModelDesc;

/* The error record a megakernel writes when a wait passes its deadline (device layout, 8 words).
 * `flag` is set last-writer-loses with an atomic exchange: only the first failing wait is kept. */
typedef struct MlkDevError {
  uint32_t flag;      /* 0: no error; 1: a wait timed out */
  uint32_t block;     /* the block (SM queue) that timed out */
  uint32_t op;        /* its op, within the megakernel */
  uint32_t task;      /* its task within the op */
  uint32_t event;     /* event index within the model */
  uint32_t index;     /* counter index within the event tensor */
  uint32_t expected;  /* the counter value it waited for */
  uint32_t observed;  /* the last value it read */
} MlkDevError;

/* ---- the records the interpreter reads (built by the runtime from the descriptor) ---- */

/* One wait or notify of an op as the interpreter reads it: its event's index map. */
typedef struct MlkDevSync {
  uint32_t event;     /* index in MlkModelDesc.events (for the error record) */
  uint32_t map;       /* MlkEventMap */
  int64_t base, n, ptile, ctile, count;
  int64_t ranks;      /* MlkEventDesc.ranks */
  uint64_t peers;     /* ranks > 1: the address of a table of `ranks` addresses, each rank's counter
                         array, where a notify goes (the runtime fills it) */
} MlkDevSync;

/* The waits and notifies an op record holds itself; an op with more has them in the kernel's
 * MlkDevSync array. */
#define MLK_DEV_INLINE_SYNCS 6

/* One op of a megakernel as the device interpreter (and the simulator) reads it: the MlkOpDesc
 * with its operands resolved to addresses (device addresses on the GPU, host pointers in the
 * simulator; 0: none), the geometry of its cache and its waits and notifies: everything a task
 * needs in a few consecutive cache lines, which the kernel prefetches a task ahead. */
typedef struct MlkDevOp {
  uint32_t kind;      /* MlkOpKind */
  uint32_t fn;        /* MlkFn */
  /* its waits, then its notifies: sync[0 .. nwaits + nnotifies) when there are at most
   * MLK_DEV_INLINE_SYNCS of them, else the kernel's syncs[wait0 ..] (notify0 = wait0 + nwaits) */
  uint32_t wait0, nwaits, notify0, nnotifies;
  int32_t batched;
  uint32_t variant;   /* MlkOpDesc.variant: the kernel's switch goes by it */
  int64_t n, k, tile, ntasks;
  uint64_t out, in[MLK_OP_INPUTS];
  int64_t page;       /* attention, kv_append: positions per page of the cache */
  /* a split matvec (MlkOpDesc.split > 1) or folded split attention (mlk_attn_folds): its groups'
   * arrival counters (u32, one per task, in the model's counter array after the tickets, zeroed
   * with the event counters) and its scratch (mlk_matvec_scratch_bytes at the model's
   * batch_max: partial sums and sums of squares; mlk_attn_scratch_bytes: the partials); 0 for
   * every other op */
  uint64_t arrive, scratch;
  struct {
    MLK_OP_ATTRS(MLK_X_FIELD)
  };
  MlkDevSync sync[MLK_DEV_INLINE_SYNCS];
} MlkDevOp;

/* The waits and then the notifies of record `rec`, in it or in the kernel's `syncs`. */
static inline const MlkDevSync *mlk_dev_op_syncs(const MlkDevOp *rec, const MlkDevSync *syncs) {
  return rec->nwaits + rec->nnotifies <= MLK_DEV_INLINE_SYNCS ? rec->sync : syncs + rec->wait0;
}

/* ---- code variants ---- */

/* Whether ops a and b can run as one variant of their kernel's code (MlkKernelDesc): equal in
 * every field but the operands' tensors and offsets (only whether each is present counts), the
 * cache layer, the wait and notify lists, the variant and the name. */
static inline int mlk_op_same_variant(const MlkOpDesc *a, const MlkOpDesc *b) {
  if (a->kind != b->kind || a->fn != b->fn || a->n != b->n || a->k != b->k || a->tile != b->tile ||
      a->ntasks != b->ntasks || a->batched != b->batched || (a->out.tensor >= 0) != (b->out.tensor >= 0))
    return 0;
  for (int i = 0; i < MLK_OP_INPUTS; i++)
    if ((a->in[i].tensor >= 0) != (b->in[i].tensor >= 0))
      return 0;
#define MLK_X_SAME(type, name, per_op, what)                                                       \
  if (!(per_op) && a->name != b->name)                                                             \
    return 0;
  MLK_OP_ATTRS(MLK_X_SAME)
#undef MLK_X_SAME
  return 1;
}

/* ---- index maps (the same arithmetic is generated into every megakernel) ---- */

/* The index maps below take MlkEventDesc and MlkDevSync alike (the fields they read have the same
 * names): the simulator calls them on the one, the device interpreter on the other. */

/* Counter a consumer task waits on. */
#define mlk_event_wait_index(e, task) ((e)->map == MLK_MAP_ALL ? (int64_t)0 : (int64_t)(task))

/* The arithmetic of the two tile maps below is in 32 bits: a model's events have n, ptile and
 * ctile below 2^31 (mlk_model_create refuses others), so a tile's first and last elements fit a
 * u32, and the device computes them on a task's wait and notify path, thread 0's alone and on the
 * decode chain, where a 64-bit division is a call of ~70 instructions and a 32-bit one ~20. Tiles
 * of one size on both sides (a producer tile is its consumer's) need no division at all. Against
 * the 64-bit form: 1.2% off a batch-1 step (H100, docs/performance.md, twenty-eighth session). */

/* Notifies counter `idx` receives in one run: MLK_MAP_ALL its count, MLK_MAP_TILE the number of
 * producer tiles overlapping it. */
static inline int64_t mlk_event_start_value_of(int map, int64_t n, int64_t ptile, int64_t ctile,
                                               int64_t count, int64_t idx) {
  if (map == MLK_MAP_ALL)
    return count;
  if (ptile == ctile)
    return 1;
  uint32_t start = (uint32_t)idx * (uint32_t)ctile, un = (uint32_t)n, up = (uint32_t)ptile;
  uint32_t end = un - start < (uint32_t)ctile ? un : start + (uint32_t)ctile;
  return (int64_t)((end - 1) / up - start / up + 1);
}
#define mlk_event_start_value(e, idx)                                                              \
  (mlk_event_start_value_of((e)->map, (e)->n, (e)->ptile, (e)->ctile, (e)->count, (idx)) *         \
   ((e)->ranks > 1 ? (e)->ranks : 1))

/* Counters [*lo, *hi] that producer task `task` notifies. */
static inline void mlk_event_notify_range_of(int map, int64_t n, int64_t ptile, int64_t ctile,
                                             int64_t task, int64_t *lo, int64_t *hi) {
  if (map == MLK_MAP_ALL) {
    *lo = *hi = 0;
    return;
  }
  if (ptile == ctile) {
    *lo = *hi = task;
    return;
  }
  uint32_t start = (uint32_t)task * (uint32_t)ptile, un = (uint32_t)n, uc = (uint32_t)ctile;
  uint32_t end = un - start < (uint32_t)ptile ? un : start + (uint32_t)ptile;
  *lo = (int64_t)(start / uc);
  *hi = (int64_t)((end - 1) / uc);
}
#define mlk_event_notify_range(e, task, lo, hi)                                                    \
  mlk_event_notify_range_of((e)->map, (e)->n, (e)->ptile, (e)->ctile, (task), (lo), (hi))

/* Counters are never reset: run number `epoch` (1, 2, ...) waits until a counter has reached
 * epoch * start_value, compared modulo 2^32 so that wrapping is harmless. */
static inline int mlk_counter_reached(uint32_t observed, uint32_t target) {
  return (int32_t)(observed - target) >= 0;
}

#endif /* MLK_DESC_H */
