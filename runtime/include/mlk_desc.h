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

#define MLK_DESC_ABI 3

/* Threads per block of every generated megakernel. Tiles are written for this many threads. */
#define MLK_BLOCK_THREADS 256

/* The kernel entry of every generated megakernel (codegen.c builds it, gpu.c launches it):
 *
 *   void ENTRY(u64 *bufs, u32 *counters, const u32 *qoff, const u32 *queue, u32 epoch,
 *              u64 timeout_ns, MlkDevError *err, const i64 *rt, u64 *trace)
 *
 * bufs[t] is the device address of tensor t; `rt` the run-time values below, written by the
 * runtime before each run; `trace` NULL, or MLK_TRACE_WORDS u64 per task of the kernel (below).
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

/* A task's trace record: MLK_TRACE_WORDS u64 at trace[slot * MLK_TRACE_WORDS], slot = the task's
 * position in the queue array (static) or its ticket (dynamic). Times are %globaltimer ns on the
 * GPU, CLOCK_MONOTONIC ns on the simulator. */
#define MLK_TRACE_WORDS 4
#define MLK_TRACE_START 0 /* the block took the task (before its waits) */
#define MLK_TRACE_READY 1 /* its waits were satisfied: the tile starts */
#define MLK_TRACE_END 2   /* tile and notifies done */
#define MLK_TRACE_WHO 3   /* block << 32 | task word */

#define MLK_RT_BATCH 0                            /* rows of this run, batch_min..batch_max */
#define MLK_RT_PAGES_PER_SEQ(c) (1 + 2 * (c))     /* cache c: page-table columns */
#define MLK_RT_PAGES(c) (2 + 2 * (c))             /* cache c: physical pages in the pool */
#define MLK_RT_COUNT(ncaches) (1 + 2 * (ncaches))

/* A task word: op index within its megakernel in the top 8 bits, task index in the low 24. */
#define MLK_TASK_OP_SHIFT 24
#define MLK_TASK_INDEX_MASK 0xffffffu
#define MLK_MAX_TASKS_PER_OP (1 << 24)
#define MLK_MAX_OPS_PER_KERNEL 256

/* Largest inner dimension a matvec tile stages in shared memory (f32 elements, 48 KiB). */
#define MLK_MATVEC_MAX_K 12288

/* Largest top_k of a sample op: its candidates are sorted in shared memory. */
#define MLK_SAMPLE_MAX_TOP_K 1024

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
  MLK_TENSOR_PAGES   /* a cache's page table, i32 [batch_max, pages_per_seq], filled by the runtime */
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
typedef enum MlkOpKind {
  /* out[b, r] = fn(sum_k W[r, k] * xn[b, k]) (+ res[b, r]); W bf16 [n, k] at in[1];
   * x = in[0] f32 [b, k]; res = in[2] or none; xn = x, or with in[3] (bf16 [k]) set, the fused
   * rmsnorm x * rsqrt(mean(x^2) + eps) * w. fn: NONE, RELU, SILU; or MUL, a gated product:
   * out[b, r] = (sum_k W[r, k] * xn[b, k]) * in[2][b, r] (SwiGLU's silu(gate) * up). */
  MLK_OP_MATVEC,
  /* out[b, i] = fn(a[b, i], c[b, i]) with a = in[0], c = in[1] (or none for RELU, SILU, NONE). */
  MLK_OP_ELTWISE,
  /* out[b, i] = (f32) table[ids[b], i]: ids = in[0] i32 [b], table = in[1] bf16 [rows, n]. */
  MLK_OP_GATHER,
  /* out[b, :] = x * rsqrt(mean(x^2) + eps) * w: x = in[0], w = in[1] bf16 [n]. One task (tile = n). */
  MLK_OP_RMSNORM,
  /* Rotary embedding of x = in[0] f32 [b, n] at positions in[1] i32 [b]: each head of head_dim
   * columns rotates pairs (j, j + head_dim/2) by pos * inv_freq[j] (Llama 3 scaling when
   * rope_factor > 1). tile is a multiple of head_dim. */
  MLK_OP_ROPE,
  /* Writes keys in[0] and values in[1] (f32 [b, kv_heads*head_dim]) of layer `layer` at positions
   * in[2] (i32 [b]) into the cache `out` (MLK_TENSOR_CACHE) through the page table in[3].
   * Columns are kv_heads*head_dim; tile = head_dim (a task per kv head). */
  MLK_OP_KV_APPEND,
  /* Decode attention: for each row b and query head h, softmax(q K^T / sqrt(head_dim)) V over the
   * positions 0..pos[b] of layer `layer` of cache in[1] (page table in[3]); q = in[0] f32
   * [b, heads*head_dim], pos = in[2]. Grouped query heads: head h reads kv head h / (heads /
   * kv_heads). tile = h * (heads / kv_heads) * head_dim: a task per h kv heads (h = 1 unless
   * `tile(head = h)`), n = heads * head_dim.
   * With split = S > 1 (flash-decoding) the positions 0..pos[b] of each row are cut at run time
   * into S chunks (mlk_attn_chunk_len), a task per (h kv heads, chunk), and `out` is not the
   * attention but its partials: f32 [b, mlk_attn_part_cols(..)], for each kv head g and chunk c a
   * record at mlk_attn_part_offset(..) of `group` = heads / kv_heads query heads: the unnormalized
   * sums o = sum_t exp(s_t - m) V[t] (group x head_dim), the maxima m = max_t s_t (group), the
   * sums l = sum_t exp(s_t - m) (group); s_t = q . K[t] / sqrt(head_dim) in natural units. An
   * empty chunk (or a row with pos < 0) has o = 0, m = -inf, l = 0. tile = h * group *
   * (head_dim + 2) (one task's records), n = ceil(kv_heads / h) * S * tile; task t covers kv
   * heads from (t / S) * h and chunk t % S. An MLK_OP_ATTN_REDUCE merges the chunks. */
  MLK_OP_ATTENTION,
  /* out[b, 0] = argmax_i x[b, i] (i32; the first of equal maxima): x = in[0] f32 [b, k]. One task. */
  MLK_OP_ARGMAX,
  /* out[b, 0] = a token drawn from x = in[0] (f32 [b, k] logits) with u = in[1] (f32 [b], the
   * application's uniform random numbers in [0, 1)). One task. Per row:
   *  1. Rank the k logits by value, largest first, equal values by lower index; NaN ranks below
   *     -inf and -0 equals +0. The candidates c_0, c_1, ... are the first K = min(top_k, k).
   *  2. m = x[c_0]. If m is not finite (+inf, or every logit -inf or NaN): the result is c_0.
   *  3. p_r = exp((x[c_r] - m) / temperature) (NaN logits: 0); C_r = p_0 + ... + p_r (f32).
   *  4. J = K - 1 if top_p >= 1, else the first r with C_r >= top_p * C_{K-1}.
   *  5. The result is c_r for the first r <= J with C_r > u * C_J, or c_J if there is none.
   * Steps 1, 2 and 4 with top_p = 1 are exact; the sums of step 3 round differently on the
   * device, so the device can differ from the reference when u * C_J or top_p * C_{K-1} lies
   * within rounding (~1e-5 relative) of some C_r: mlk_ref_sample_row reports that margin. */
  MLK_OP_SAMPLE,
  /* The merge of a split attention's partials (in[0], the layout above, with this op's split,
   * heads, kv_heads, head_dim and h): out[b, h, :] = sum_c exp(m_c - M) o_c / sum_c exp(m_c - M)
   * l_c with M = max_c m_c over the S chunks, and zeros where every chunk is empty (pos < 0).
   * out f32 [b, heads * head_dim]; tile = h * group * head_dim: a task per h kv heads, which
   * waits on one MLK_MAP_TILE counter for the S producer tasks of its records. */
  MLK_OP_ATTN_REDUCE
} MlkOpKind;
#define MLK_OP_LAST MLK_OP_ATTN_REDUCE /* the largest MlkOpKind */

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

typedef struct MlkOpDesc {
  const char *name;  /* e.g. "matvec@mlp.mlk:12" for messages and traces */
  MlkOpKind kind;
  MlkFn fn;
  MlkArg out;        /* the written tensor (KV_APPEND: the cache) */
  MlkArg in[4];      /* see MlkOpKind */
  int64_t n;         /* output columns of one batch row (KV_APPEND: kv_heads*head_dim) */
  int64_t k;         /* matvec, argmax, sample: input columns; 0 otherwise */
  int64_t tile;      /* output columns per task */
  int64_t ntasks;    /* ceil(n / tile) */
  int batched;       /* 1: rows loop over the run's batch; 0: one row */
  float eps;         /* rmsnorm, fused or not */
  /* rope */
  float theta, rope_factor, rope_low_freq, rope_high_freq;
  int64_t rope_original_max_pos;
  /* attention, kv append, rope */
  int64_t heads, kv_heads, head_dim;
  int layer;         /* attention, kv append: the cache layer */
  int cache;         /* attention, kv append: index into MlkModelDesc.caches */
  /* sample: temperature > 0, 1 <= top_k <= MLK_SAMPLE_MAX_TOP_K, 0 < top_p <= 1 */
  float temperature, top_p;
  int64_t top_k;
  int64_t split;     /* attention: chunks of the positions of a row (0 or 1: not split, up to
                        MLK_ATTN_MAX_SPLIT); attn_reduce: the chunks it merges; 0 otherwise */
  int64_t min_chunk; /* split attention: fewest positions per chunk (mlk_attn_chunk_len; 0 or 1:
                        none); 0 otherwise */
} MlkOpDesc;

/* ---- split attention (flash-decoding): chunks and the layout of the partials ---- */

/* The most chunks an attention op may split a row's positions into. */
#define MLK_ATTN_MAX_SPLIT 32

/* Positions per chunk of a row that attends to positions 0..T-1 in `split` chunks: chunk c covers
 * [c * len, min((c + 1) * len, T)), so the last chunks may be short or empty. len is at least
 * `min_chunk` (MlkOpDesc.min_chunk; 0 or 1: no minimum): a chunk costs a task's fixed overhead
 * (waits, q, the merge of its warps), so a short context should use few chunks while the other
 * tasks write empty records at once. Decided per row at run time: task grids never depend on
 * positions. */
static inline int64_t mlk_attn_chunk_len(int64_t T, int64_t split, int64_t min_chunk) {
  if (T <= 0)
    return 0;
  int64_t len = (T + split - 1) / split;
  return len < min_chunk ? min_chunk : len;
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

typedef enum MlkEventMap {
  /* One counter. Every producer task notifies it, every consumer task waits for all producers:
   * the consumer needs the whole tensor (a matvec reading its input vector). */
  MLK_MAP_ALL,
  /* One counter per consumer task. Consumer task j waits on counter j, which counts the producer
   * tiles overlapping elements [j*ctile, (j+1)*ctile); producer task i notifies every counter whose
   * consumer tile overlaps its elements [i*ptile, (i+1)*ptile). */
  MLK_MAP_TILE
} MlkEventMap;

typedef struct MlkEventDesc {
  const char *name;  /* e.g. "h: matvec@mlp.mlk:12 -> matvec@mlp.mlk:13" */
  int producer;      /* op index (global in MlkModelDesc.ops) */
  int consumer;      /* op index */
  int tensor;        /* the tensor that carries the dependency */
  MlkEventMap map;
  int64_t n;         /* columns of the dependency (the producer's output columns) */
  int64_t ptile;     /* producer elements per task */
  int64_t ctile;     /* consumer elements per task */
  int64_t size;      /* number of counters */
  int64_t base;      /* first counter in the model's counter array */
} MlkEventDesc;

typedef enum MlkSchedule {
  MLK_SCHED_STATIC,  /* per-SM queues built by the host */
  MLK_SCHED_DYNAMIC  /* a ready queue: a task is pushed when its last counter completes */
} MlkSchedule;

typedef struct MlkKernelDesc {
  const char *name;  /* megakernel name in the source, e.g. "forward" */
  const char *entry; /* PTX entry symbol */
  int first_op;      /* ops [first_op, first_op + nops) belong to this kernel, in topological order */
  int nops;
  MlkSchedule schedule;
} MlkKernelDesc;

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
} MlkModelDesc;

/* The error record a megakernel writes when a wait passes its deadline (device layout, 8 words).
 * `flag` is set last-writer-loses with an atomic exchange: only the first failing wait is kept. */
typedef struct MlkDevError {
  uint32_t flag;      /* 0: no error; 1: a wait timed out */
  uint32_t block;     /* the block (SM queue) that timed out */
  uint32_t task;      /* its task word */
  uint32_t event;     /* event index within the model */
  uint32_t index;     /* counter index within the event tensor */
  uint32_t expected;  /* the counter value it waited for */
  uint32_t observed;  /* the last value it read */
  uint32_t pad;
} MlkDevError;

/* ---- index maps (the same arithmetic is generated into every megakernel) ---- */

static inline int64_t mlk_min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Counter a consumer task waits on. */
static inline int64_t mlk_event_wait_index(const MlkEventDesc *e, int64_t task) {
  return e->map == MLK_MAP_ALL ? 0 : task;
}

/* Notifies counter `idx` receives in one run: the number of producer tiles overlapping it. */
static inline int64_t mlk_event_start_value(const MlkEventDesc *e, int64_t idx) {
  if (e->map == MLK_MAP_ALL)
    return (e->n + e->ptile - 1) / e->ptile;
  int64_t start = idx * e->ctile;
  int64_t end = mlk_min64(start + e->ctile, e->n);
  return (end - 1) / e->ptile - start / e->ptile + 1;
}

/* Counters [*lo, *hi] that producer task `task` notifies. */
static inline void mlk_event_notify_range(const MlkEventDesc *e, int64_t task, int64_t *lo,
                                          int64_t *hi) {
  if (e->map == MLK_MAP_ALL) {
    *lo = *hi = 0;
    return;
  }
  int64_t start = task * e->ptile;
  int64_t end = mlk_min64(start + e->ptile, e->n);
  *lo = start / e->ctile;
  *hi = (end - 1) / e->ctile;
}

/* Counters are never reset: run number `epoch` (1, 2, ...) waits until a counter has reached
 * epoch * start_value, compared modulo 2^32 so that wrapping is harmless. */
static inline int mlk_counter_reached(uint32_t observed, uint32_t target) {
  return (int32_t)(observed - target) >= 0;
}

#endif /* MLK_DESC_H */
