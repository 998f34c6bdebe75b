/* internal.h: what the files of libmlkrt share and nothing outside the runtime should include.
 *
 * The runtime is split into a backend-independent front (model.c: validation, tensor bookkeeping,
 * batch, KV cache sizes, run-time values, epochs, error messages; kv.c: the KV page allocator and
 * sequences; ckpt.c: checkpoints) and two backends behind a small
 * vtable (gpu.c over the CUDA driver API, sim.c on host threads). Both backends run the same static
 * task queues (sched.c), so anything that is about the model rather than about the machine lives
 * in model.c and is shared. The simulator alone also has a dynamic schedule and the dependency
 * checker (sim.c).
 */
#ifndef MLK_INTERNAL_H
#define MLK_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "mlk.h"

#if defined(__GNUC__)
#define MLK_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define MLK_PRINTF(a, b)
#endif

/* ---- errors (status.c) ---- */

/* Sets this thread's last error message and returns `s`, so failures read `return mlk_set_error(...)`. */
mlk_status mlk_set_error(mlk_status s, const char *fmt, ...) MLK_PRINTF(2, 3);
mlk_status mlk_set_errorv(mlk_status s, const char *fmt, va_list ap) MLK_PRINTF(2, 0);
/* Same, with "file.c:123: " in front (the base name of `file`): for failed libc and CUDA calls. */
mlk_status mlk_set_error_at(mlk_status s, const char *file, int line, const char *fmt, ...)
    MLK_PRINTF(4, 5);
#define MLK_ERROR_AT(s, ...) mlk_set_error_at((s), __FILE__, __LINE__, __VA_ARGS__)
/* Puts `prefix` in front of the current last error (e.g. "no GPU: "); returns `s`. */
mlk_status mlk_prefix_error(mlk_status s, const char *prefix);
/* The base name of a path (no allocation): "runtime/gpu.c" -> "gpu.c". */
const char *mlk_basename(const char *path);

/* calloc that reports "file:line: calloc(n x size bytes for what) failed" and returns NULL. */
void *mlk_calloc_at(size_t n, size_t size, const char *what, const char *file, int line);
#define MLK_CALLOC(n, size, what) mlk_calloc_at((n), (size), (what), __FILE__, __LINE__)

/* Parses a decimal environment variable in [lo, hi]. Unset or empty: *out = dflt. Anything else
 * (garbage, out of range) is an MLK_ERR_INVALID naming the variable. */
mlk_status mlk_env_int(const char *name, int64_t lo, int64_t hi, int64_t dflt, int64_t *out);

/* MLK_DEBUG set (and not "0"): "mlk: <message>" on stderr, else nothing. */
void mlk_debug(const char *fmt, ...) MLK_PRINTF(1, 2);
/* CLOCK_MONOTONIC in milliseconds. */
double mlk_now_ms(void);

/* ---- the compiled-cubin cache (cubin_cache.c) ---- */

/* FNV-1a over 128 bits: init, then bytes or fields (a field is hashed with its length first). */
typedef struct MlkHash {
  uint64_t hi, lo;
} MlkHash;
void mlk_hash_init(MlkHash *h);
void mlk_hash_bytes(MlkHash *h, const void *data, size_t n);
void mlk_hash_field(MlkHash *h, const void *data, size_t n);
void mlk_hash_hex(MlkHash h, char out[33]); /* 32 lowercase hex digits, hi first */
/* The version of the file layout and of what the key covers: part of every key. */
uint32_t mlk_cubin_cache_format(void);
/* The cache file of `key` (<dir>/<32 hex digits>.cubin) into path: 1, or 0 with path "" and `why`
 * ("cache off (MLK_CACHE_DIR=off)", ...) when the cache is off. */
int mlk_cubin_cache_path(MlkHash key, char *path, size_t n, char *why, size_t wn);
/* 1: *data (malloc'd, NUL after the end) and *size hold the cubin of a file whose trailer matches
 * `key` and its checksum. 0: no usable file; `why` is "" when there is none, else says what was
 * wrong with it (a bad file is removed). */
int mlk_cubin_cache_read(const char *path, MlkHash key, void **data, size_t *size, char *why, size_t wn);
/* Removes a cache file the driver refused (errors ignored). */
void mlk_cubin_cache_remove(const char *path);
/* Writes the cubin with its trailer to a temporary file next to `path` and renames it over
 * `path`, creating missing directories (0755): 0, or -1 with `why` (nothing is left behind). */
int mlk_cubin_cache_write(const char *path, MlkHash key, const void *data, size_t size, char *why,
                          size_t wn);

/* ---- the interpreter's records (program.c) ---- */

/* The number of waits and notifies of the ops of kernel `kernel`: its MlkDevSync records. */
int64_t mlk_program_nsyncs(const MlkModelDesc *d, int kernel);
/* The op records of kernel `kernel` of the validated `d` into out[0 .. nops) and their waits and
 * notifies into syncs[0 .. mlk_program_nsyncs): addr[t] is the address of tensor t on the backend
 * (device addresses, or host pointers as integers). `arrive` is the address of the model's
 * arrival counters (mlk_program_arrivals u32, zeroed with the event counters), `scratch` of its
 * split matvecs' scratch (mlk_program_scratch_bytes): each split matvec of the model gets its
 * part of both, in op order (MlkDevOp.arrive, .scratch). */
void mlk_program_kernel(const MlkModelDesc *d, int kernel, const uint64_t *addr, uint64_t peers,
                        uint64_t arrive, uint64_t scratch, MlkDevOp *out, MlkDevSync *syncs);
/* The arrival counters and scratch bytes the split matvecs of `d` need (0 for a model without). */
int64_t mlk_program_arrivals(const MlkModelDesc *d);
int64_t mlk_program_scratch_bytes(const MlkModelDesc *d);
/* The peer area of a model with in-kernel allreduces (u64 words, 0 for a model without): the
 * address of each rank's counter array (ranks words), then for each allreduce op of the model, in
 * op order, the address of each rank's x (ranks words each). A world fills it
 * (MlkBackendOps.set_peers); `peers` above is its address on the backend, 0 until then. */
int64_t mlk_program_peer_words(const MlkModelDesc *d);

/* ---- checkpoints (ckpt.c) ---- */

/* The dtypes of safetensors. ORDER: the table in ckpt.c mirrors this enum. */
typedef enum MlkStDType {
  MLK_ST_BOOL, MLK_ST_U8, MLK_ST_I8, MLK_ST_I16, MLK_ST_U16, MLK_ST_F16, MLK_ST_BF16, MLK_ST_I32,
  MLK_ST_U32, MLK_ST_F32, MLK_ST_F64, MLK_ST_I64, MLK_ST_U64, MLK_ST_F8_E4M3, MLK_ST_F8_E5M2,
  MLK_ST_DTYPE_COUNT
} MlkStDType;

#define MLK_ST_MAX_RANK 8

/* A tensor of a safetensors header, checked: numel(shape) * dtype size == end - begin. */
typedef struct MlkStTensor {
  char *name;
  MlkStDType dtype;
  int rank;
  int64_t shape[MLK_ST_MAX_RANK];
  uint64_t begin, end; /* bytes of the data section */
  int file;            /* which file of the checkpoint holds it */
} MlkStTensor;

/* The header of one safetensors file: its tensors tile the data section exactly (no overlap, no
 * gap), which is bytes [data_start, data_start + data_bytes) of the file. */
typedef struct MlkStHeader {
  MlkStTensor *tensors; /* in header order */
  int64_t ntensors;
  uint64_t data_start, data_bytes;
} MlkStHeader;

/* Parses and checks the header of the safetensors file whose `size` bytes are at `file` (mapped);
 * `path` is for messages. On failure *out is empty and the error names the file and tensor. */
mlk_status mlk_st_parse(const uint8_t *file, uint64_t size, const char *path, MlkStHeader *out);
void mlk_st_header_free(MlkStHeader *h);

/* A model.safetensors.index.json: tensor names[i] is in file shards[shard_of[i]] (names relative
 * to the index's directory, never absolute or through ".."). */
typedef struct MlkStIndex {
  char **names;
  int *shard_of;
  int64_t n;
  char **shards; /* distinct, in first-seen order */
  int nshards;
} MlkStIndex;
mlk_status mlk_st_parse_index(const char *json, size_t len, const char *path, MlkStIndex *out);
void mlk_st_index_free(MlkStIndex *ix);

/* ---- static scheduling (sched.c) ---- */

/* The estimated cost of one task of op `op` covering `cols` output columns, for one batch row: the
 * bytes it moves (weights dominate decode), plus a fixed cost for its waits and notifies (ops.c). */
int64_t mlk_sched_task_cost(const MlkOpDesc *op, int64_t cols);
/* Builds the task queues of kernel `kernel` of `d` for `nqueues` queues: *qoff gets nqueues + 1
 * offsets into *words, which gets one task word per task of the kernel. Queue q is
 * words[qoff[q] .. qoff[q+1]). Both arrays come from malloc; the caller frees them. *ntasks (may be
 * NULL) gets the total task count. `d` must have been validated (mlk_desc_validate). */
mlk_status mlk_sched_build(const MlkModelDesc *d, int kernel, int nqueues, uint32_t **qoff,
                           MlkTaskWord **words, int64_t *ntasks);

/* ---- model descriptions (model.c) ---- */

/* Checks everything the runtime and the generated kernels rely on; the message says what is wrong. */
mlk_status mlk_desc_validate(const MlkModelDesc *d);
/* MLK_ERR_INVALID with "invalid model description 'NAME' (SOURCE): <message>". */
mlk_status mlk_desc_invalid(const MlkModelDesc *d, const char *fmt, ...) MLK_PRINTF(2, 3);

/* The largest layer count, kv heads, head_dim and page of a cache (and kv heads and query heads
 * per kv head of an attention): far beyond any model, small enough that products of a few of
 * them stay far from overflow. */
#define MLK_MAX_CACHE_DIM 65536

/* ---- op kinds (ops.c): the host's knowledge of each, one section per kind ---- */

/* Op `o` of `d` against its kind's rules (operands, sizes, attributes); the tensors and caches of
 * `d` must have been validated. */
mlk_status mlk_op_validate(const MlkModelDesc *d, int o);
/* The columns (in mlk_tensor_cols terms) of one operand that the tasks of an op read or write:
 * task t covers [base + t * step, min(base + t * step + width, end)); step 0: every task covers
 * the same range. Tiled accesses have width == step. */
typedef struct MlkAccess {
  int tensor;
  int64_t base, step, width, end;
} MlkAccess;
#define MLK_MAX_READS MLK_OP_INPUTS
/* What each task of validated op `o` reads (reads[0 .. *nreads)) and writes; page tables are left
 * out (no op writes them). The simulator's dependency checker holds the events to these. */
void mlk_op_accesses(const MlkModelDesc *d, int o, MlkAccess reads[MLK_MAX_READS], int *nreads,
                     MlkAccess *write);
/* Bytes of tensor `t` as described (numel * dtype size: at batch_max; 0 for caches and page
 * tables, which are sized at model creation: see mlk_model.cap). */
size_t mlk_tensor_bytes(const MlkTensorDesc *t);
/* "matvec", "eltwise", ..., "attn_reduce" (the names ops have in messages and traces). */
const char *mlk_op_kind_name(MlkOpKind k);
/* "param", "input", "output", "temp", "KV cache pool", "KV cache page table". */
const char *mlk_tensor_kind_name(MlkTensorKind k);
/* Columns of tensor `t` of a validated desc: the elements of one batch row of a batched tensor,
 * all elements of any other; a cache pool has layers * kv_heads * head_dim (layer l is columns
 * [l * kv_heads * head_dim, ...)), a page table 0. Ops' tasks and events index these columns. */
int64_t mlk_tensor_cols(const MlkModelDesc *d, int t);
/* The cache whose pool or page table is tensor `t`, or -1. */
int mlk_cache_of_tensor(const MlkModelDesc *d, int t);
/* Rows an op loops over in a run at `batch`: the batch for a batched op, else 1. */
static inline int64_t mlk_op_rows(const MlkOpDesc *op, int64_t batch) {
  return op->batched ? batch : 1;
}

/* ---- backends ---- */

/* What a backend provides. Every function sets the last error on failure. `run` executes one
 * launch of kernel `kernel` with the given epoch and per-wait timeout; when a wait timed out it
 * still returns MLK_OK but with err->flag set (the front builds the deadlock message, the same for
 * every backend); any other failure is returned as a status. Buffers are allocated with
 * mlk_model.cap bytes; upload/download/fill move mlk_model.bytes (the current batch's rows, a
 * prefix of the buffer). `run` reads the run-time values from mlk_model.rt. */
typedef struct MlkBackendOps {
  void (*backend_free)(mlk_backend *be);
  mlk_status (*model_init)(mlk_model *m);
  void (*model_fini)(mlk_model *m);
  mlk_status (*upload)(mlk_model *m, int tensor, const void *src, size_t bytes);
  /* `bytes` from `src` into tensor `tensor` at byte `offset` (offset + bytes <= cap): the
   * checkpoint loader fills a param piece by piece, straight from the mapped file. */
  mlk_status (*upload_range)(mlk_model *m, int tensor, size_t offset, const void *src, size_t bytes);
  /* `bytes` of tensor `tensor` from byte `src` to byte `dst` (the KV page allocator copies a
   * shared page before a sequence writes into it). */
  mlk_status (*copy_range)(mlk_model *m, int tensor, size_t dst, size_t src, size_t bytes);
  mlk_status (*download)(mlk_model *m, int tensor, void *dst, size_t bytes);
  mlk_status (*fill)(mlk_model *m, int tensor, uint8_t byte);
  mlk_status (*zero_counters)(mlk_model *m);
  mlk_status (*run)(mlk_model *m, int kernel, uint32_t epoch, uint64_t timeout_ns,
                    MlkDevError *err, double *ms,   /* ms: elapsed time of the run when not NULL */
                    uint64_t *trace);               /* NULL, or MLK_TRACE_WORDS u64 per task to
                                                       fill (mlk_desc.h) */
  /* The address of tensor `tensor`'s buffer: a device address on the GPU (what a communication
   * library is given), a host pointer as an integer on the simulator. */
  uint64_t (*tensor_addr)(mlk_model *m, int tensor);
  /* The address of the model's event counters (as tensor_addr's). */
  uint64_t (*counters_addr)(mlk_model *m);
  /* A world with in-kernel allreduces: the model's peer area (mlk_program_peer_words, n words)
   * copied to the backend, and its op records rebuilt to point into it. */
  mlk_status (*set_peers)(mlk_model *m, const uint64_t *words, size_t n);
} MlkBackendOps;

/* MlkDevError.block of a task the simulator's dynamic schedule never made ready (no queue). */
#define MLK_DEV_BLOCK_READY_QUEUE 0xffffffffu

struct mlk_backend {
  const MlkBackendOps *ops;
  int is_gpu;
  int stall_exact; /* 1: a deadlock is reported when no task can run any more (the simulator knows
                      it), not when a wait passes its deadline */
  char name[256];
  char note[1024]; /* why MLK_BACKEND_AUTO fell back to the simulator, else "" */
  const char *ptx_arch; /* the PTX target the GPU runs best (mlk_backend_ptx_arch), else NULL */
  int device;      /* the GPU's ordinal (CUDA device number); -1 on the simulator */
  void *impl;      /* the backend's own state */
};

struct mlk_model {
  mlk_backend *be;
  const MlkModelDesc *desc; /* not copied: generated descs are static */
  size_t *bytes;            /* per tensor: bytes at the current batch (what set/get/fill move) */
  size_t *cap;              /* per tensor: bytes allocated (batch_max rows; caches as sized) */
  int64_t *rows_set;        /* per tensor: rows the last set/fill defined, or for an output the
                               last run that writes it (0: never, or that run failed) */
  uint32_t *runs;           /* per kernel: runs completed since the counters were last zeroed */
  int64_t batch;            /* rows of the next run (batch_min..batch_max; 1 without a batch dim) */
  int64_t batch_min, batch_max;
  int rank;                 /* mlk_model_options.rank: the slice of sharded params it loads */
  int64_t context;          /* tokens per sequence of every KV cache (0: the model has none) */
  int64_t *rt;              /* MLK_RT_COUNT(ncaches) run-time values (mlk_desc.h) */
  int64_t attn_whole_limit; /* mlk_attn_whole's limit (MLK_ATTN_WHOLE_POSITIONS; 0: never) */
  void **shadow;            /* per tensor: host copy of an i32 input or output that indexes a cache
                               (positions) or a table (gather ids), checked before each run; else
                               NULL (an output's is downloaded before a run of a kernel that
                               reads it and does not write it) */
  void *impl;               /* the backend's per-model state */
  /* How the backend loaded the megakernels (GPU only; zero and "" elsewhere): mlk.h reports them. */
  double load_ms;           /* wall time of key, cache lookup, compile or load, and cache write */
  int cache_hit;            /* 1: the module came from the cubin cache */
  int builtin_cubin;        /* 1: the module is the desc's built-in cubin (mlkc --cubin) */
  char load_note[512];      /* "cache hit: <path>", "compiled, cached in <path>", ... */
  struct MlkTrace *trace;   /* timeline recording (trace.c), NULL when off */
  struct MlkKv *kv;         /* the KV page allocator (kv.c), NULL without caches */
  int sampling;             /* the sampling tensor (MLK_TENSOR_SAMPLING), or -1 */
  struct MlkSampler *samplers; /* per batch row (batch_max): its sampling settings and random
                               stream, used while no sequence is bound to it (sampling.c) */
  float *sampling_rows;     /* host copy of the sampling tensor's rows, written before each run */
  int64_t sampled_rows;     /* rows whose draws the run in progress uses (0: none) */
};

/* One launch of kernel `kernel` (a segment of a cut megakernel too) with every check of
 * mlk_model_run; `ms` as mlk_model_run_timed's. mlk_world_run runs segments with it. */
mlk_status mlk_model_run_kernel(mlk_model *m, int kernel, double *ms);
/* Zeroes the model's event counters and run counts (after a failed run), keeping the last error. */
void mlk_model_reset_counters(mlk_model *m);

/* ---- paged KV caches (kv.c) ---- */

/* After the backend allocated the caches (pools of rt[MLK_RT_PAGES(c)] pages): the page allocator,
 * and the page tables of the fixed layout (row b owns pages b * pages_per_seq ...) when the pools
 * hold it. */
mlk_status mlk_kv_create(mlk_model *m);
void mlk_kv_free(mlk_model *m);
/* Before a run of `kernel`: with sequences, every row of the batch bound to one and the input
 * positions of cache ops inside their row's sequence, and the page tables uploaded if they
 * changed; without, that the pools hold the fixed layout. */
mlk_status mlk_kv_before_run(mlk_model *m, int kernel);
/* The allocator's invariants, recounted from the sequences (tests): every page's reference count
 * is the number of sequences holding it, the free pages are exactly those of count 0, each once,
 * and each sequence holds ceil(length / page) pages. */
mlk_status mlk_kv_check(const mlk_model *m);

/* ---- sampling (sampling.c) ---- */

/* The sampling settings of a batch row or of a sequence, and its random stream. */
typedef struct MlkSampler {
  mlk_sampling set;  /* top_k 0: as compiled (each sample op's keywords) */
  uint64_t draws;    /* random numbers taken from set.seed's stream so far */
} MlkSampler;

/* A sampler with settings `s` (checked), its stream at draw 0. */
MlkSampler mlk_sampler_make(const mlk_sampling *s);
/* At model creation: the sampling tensor, and each row's sampler (row b's seed is b). */
mlk_status mlk_sampling_create(mlk_model *m);
void mlk_sampling_free(mlk_model *m);
/* Before a run of `kernel` (after every other check): when the kernel samples, each row's
 * parameters and its next random number into the sampling tensor. After a run that succeeded, the
 * rows' streams advance by the draw they used (a failed run takes none). */
mlk_status mlk_sampling_before_run(mlk_model *m, int kernel);
void mlk_sampling_after_run(mlk_model *m);
/* The settings of `s` (checked: MLK_ERR_INVALID naming `fn` and the field that is wrong). */
mlk_status mlk_sampling_check(const mlk_model *m, const mlk_sampling *s, const char *fn);

/* The sampler of row `row` when a sequence is bound to it (managed pages), else NULL (kv.c);
 * *index is the row's place among its sequence's rows (0 unless the sequence has several). */
MlkSampler *mlk_kv_row_sampler(mlk_model *m, int64_t row, int64_t *index);
/* Whether the model's rows are sequences (the first mlk_seq_create switched it). */
int mlk_kv_managed(const mlk_model *m);

/* ---- traces (trace.c) ---- */

typedef struct MlkTrace MlkTrace;
/* MLK_TRACE=path (and MLK_TRACE_RUNS) at model creation: tracing on, written at mlk_model_free. */
mlk_status mlk_trace_from_env(mlk_model *m);
/* The record buffer for the next run of `kernel` (zeroed), or NULL when tracing is off. */
uint64_t *mlk_trace_buffer(mlk_model *m, int kernel);
/* After the run: keep the records (ok) or drop them. */
void mlk_trace_commit(mlk_model *m, uint32_t epoch, int ok);
/* At mlk_model_free: writes MLK_TRACE's file and prints the summary; then mlk_trace_free. */
void mlk_trace_at_free(mlk_model *m);
void mlk_trace_free(mlk_model *m);

/* ---- world rendezvous (rendezvous.c): the ranks of a world in processes of one host ---- */

typedef struct MlkRdv MlkRdv;
#define MLK_RDV_BLOB 256
/* Rank `rank` of `nranks` joins the file at `path` (rank 0 makes it fresh), with two sets of
 * per-rank slots of slot_floats floats; waits until every rank joined (MLK_WORLD_TIMEOUT_MS,
 * default 300000: then an error naming the ranks missing). */
mlk_status mlk_rdv_open(const char *path, int rank, int nranks, size_t slot_floats, MlkRdv **out);
void mlk_rdv_close(MlkRdv *r);
/* Rank `rank`'s slot of set `parity` (0 or 1). */
float *mlk_rdv_slot(MlkRdv *r, int parity, int rank);
/* Waits until every rank reached as many barriers as this one. A failed rank (mlk_rdv_fail) makes
 * it fail with that rank's message; the deadline with the ranks that did not arrive. `what` names
 * the point in messages ("collective 'allreduce@nn.mlk:36[l=0]'"). */
mlk_status mlk_rdv_barrier(MlkRdv *r, const char *what);
/* Marks the world failed by this rank, with its message (the first failure is kept). */
void mlk_rdv_fail(MlkRdv *r, const char *msg);
/* Rank 0's n bytes at blob (n <= MLK_RDV_BLOB) into every other rank's blob; a barrier. */
mlk_status mlk_rdv_publish(MlkRdv *r, void *blob, size_t n);

/* ---- NCCL (nccl.c): the sums of a world's collectives on GPUs ---- */

/* Communicators over the GPUs of one process, a rank each (ncclCommInitAll). NCCL is loaded at
 * run time (libnccl.so.2, or $MLK_NCCL_LIB), so binaries start without it; NVLink multicast stays
 * off (NCCL_NVLS_ENABLE=0 unless the environment says otherwise). */
typedef struct MlkNccl MlkNccl;
/* n ranks on the distinct CUDA devices devs[0..n). MLK_ERR_NO_GPU with the reason when NCCL cannot
 * be loaded or was not built in, MLK_ERR_INVALID for devices that repeat. */
mlk_status mlk_nccl_create(const int *devs, int n, MlkNccl **out);
/* One rank of a world of processes: rank `rank` of `nranks` on CUDA device `dev`
 * (ncclCommInitRank), rank 0's unique id passed to the others through the rendezvous. The
 * communicator then holds one rank (mlk_nccl_allreduce takes one address each). */
mlk_status mlk_nccl_create_rank(int rank, int nranks, int dev, MlkRdv *rdv, MlkNccl **out);
void mlk_nccl_free(MlkNccl *c);
/* "NCCL 2.28.9" */
const char *mlk_nccl_name(const MlkNccl *c);
/* On every rank r of the communicator (all of them, or this process's one): count f32 at device
 * address recv[r] = the sum over ranks of those at send[r], enqueued on each device's default
 * stream as one group (the launches that follow on that stream run after it). */
mlk_status mlk_nccl_allreduce(MlkNccl *c, const uint64_t *send, const uint64_t *recv, size_t count);

/* Backend constructors (gpu.c, sim.c); mlk_backend_create in model.c picks one. */
mlk_status mlk_gpu_backend_create(int device, mlk_backend **out);
/* GPU backend `from`'s context may read and write `to`'s device memory (peer access; nothing to do
 * on one device). MLK_ERR_INVALID where the GPUs cannot. */
mlk_status mlk_gpu_enable_peer(mlk_backend *from, mlk_backend *to);
mlk_status mlk_sim_backend_create(const mlk_sim_options *opt, mlk_backend **out);

#endif /* MLK_INTERNAL_H */
