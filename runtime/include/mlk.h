/* mlk.h: the public C API of libmlkrt, the mlkc runtime.
 *
 * A tour. `mlkc mlp.mlk -o build/mlp` writes build/mlp.h and build/mlp.c: a typed API over this
 * one. An application uses it like this:
 *
 *     #include "mlp.h"                      // generated; includes mlk.h
 *
 *     mlk_backend *be;
 *     if (mlk_backend_create(MLK_BACKEND_AUTO, &be) != MLK_OK)   // GPU if present, else CPU sim
 *       die(mlk_last_error());
 *     printf("running on %s\n", mlk_backend_name(be));
 *
 *     mlp_model *m;
 *     mlp_create(be, &m);                   // allocates every tensor, loads the megakernel
 *     mlp_load(m, "ckpt/");                 // params bound with `from`: a safetensors checkpoint
 *     mlp_set_W1(m, w1_bf16);               // or params one by one: typed pointers, shapes in
 *                                           // the header
 *     mlp_set_x(m, x);                      // inputs
 *     mlp_forward(m);                       // one launch of the persistent megakernel `forward`
 *     mlp_get_y(m, y);                      // outputs
 *     mlp_free(m);
 *     mlk_backend_free(be);
 *
 * Every call returns an mlk_status; on failure mlk_last_error() says what went wrong, naming the
 * tensor, the CUDA call (with file:line) or the task and event of a wait that could not complete.
 *
 * Backends. The GPU backend uses the CUDA driver API, loaded at run time (libcuda.so.1), so the
 * same binary runs on a machine without a GPU and falls back to the CPU simulator, which runs the
 * very same task queues and event counters with C reference tiles: by default deterministically
 * (one host thread interleaves the simulated SMs in an order a seed chooses and replays), or on a
 * host thread per SM (mlk_sim_options.mode).
 *
 * Environment: MLK_BACKEND=gpu|cpu overrides MLK_BACKEND_AUTO; MLK_WAIT_TIMEOUT_MS sets the
 * deadline of a single wait on the GPU (default 2000; the simulator needs none: it sees when no
 * task can run any more); MLK_SIM_MODE, MLK_SIM_THREADS, MLK_SIM_SEED, MLK_SIM_PCT_DEPTH,
 * MLK_SIM_EXPLORE and MLK_SIM_CHECK tune the simulator; MLK_KV_CONTEXT sets the tokens per
 * sequence a paged KV cache holds (2048) and MLK_KV_PAGES the pages of its pool, where
 * mlk_model_options does not say.
 * MLK_CACHE_DIR is where the GPU backend keeps the cubins it JIT-compiled from the models' PTX
 * (default $XDG_CACHE_HOME/mlkc, else $HOME/.cache/mlkc; "off" disables the cache), so that only
 * the first start on a device and driver compiles (a model built with mlkc --cubin needs neither
 * on an sm_90 GPU; MLK_BUILTIN_CUBIN=0 ignores its cubin); MLK_DEBUG=1 reports each module load on
 * stderr.
 * MLK_TRACE=file.json records a timeline of each model's runs (the latest MLK_TRACE_RUNS, default
 * 8) and writes it, with a summary on stderr, when the model is freed (see "traces" below).
 */
#ifndef MLK_H
#define MLK_H

#include <stddef.h>
#include <stdint.h>

#include "mlk_desc.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mlk_status {
  MLK_OK = 0,
  MLK_ERR_INVALID,  /* bad argument: wrong tensor, size, kind or state */
  MLK_ERR_NO_GPU,   /* no CUDA driver or no device */
  MLK_ERR_CUDA,     /* a CUDA driver call failed */
  MLK_ERR_NOMEM,    /* host or device allocation failed */
  MLK_ERR_DEADLOCK, /* a wait passed its deadline: some event never reached its count */
  MLK_ERR_IO        /* a file could not be read or written */
} mlk_status;

/* The message of the last failed call on this thread (never NULL). */
const char *mlk_last_error(void);
const char *mlk_status_name(mlk_status s);

/* ---- backends ---- */

typedef struct mlk_backend mlk_backend;

typedef enum mlk_backend_kind {
  MLK_BACKEND_AUTO, /* the GPU when one is usable, else the CPU simulator (MLK_BACKEND overrides) */
  MLK_BACKEND_GPU,
  MLK_BACKEND_CPU
} mlk_backend_kind;

typedef enum mlk_sim_schedule {
  MLK_SIM_AS_COMPILED, /* each megakernel's own schedule (MlkKernelDesc.schedule) */
  MLK_SIM_STATIC,      /* per-SM queues built by the host, whatever was compiled */
  MLK_SIM_DYNAMIC      /* a shared ready queue: a task is ready when its last counter completes */
} mlk_sim_schedule;

/* How the simulator interleaves its simulated SMs (docs/runtime.md, "CPU simulator"). */
typedef enum mlk_sim_mode {
  MLK_SIM_MODE_DEFAULT,  /* MLK_SIM_MODE=deterministic|threaded, else deterministic */
  /* One host thread runs the SMs cooperatively: at each step a seeded scheduler (PCT, below)
   * picks which runnable SM runs its next task, whole (waits, checker, tile, notifies). The same
   * seed replays the same interleaving; a run whose SMs are all blocked is reported at once. */
  MLK_SIM_DETERMINISTIC,
  /* A host thread per SM, real concurrency: the OS picks the interleaving (with optional random
   * delays). For the memory ordering of the protocol itself. A stuck run is reported once every
   * thread is blocked on a counter nothing can complete (no deadline). */
  MLK_SIM_THREADED
} mlk_sim_mode;

typedef struct mlk_sim_options {
  int threads;       /* simulated SMs, one host thread each in the threaded mode (0:
                        MLK_SIM_THREADS or 8) */
  uint64_t seed;     /* seed of the schedule, the random delays and orders (0: MLK_SIM_SEED or 1) */
  int max_delay_us;  /* threaded mode: random delay before each task, 0..max (0: none) */
  mlk_sim_schedule schedule;
  int no_check;      /* 1: skip the dependency checker (on by default, MLK_SIM_CHECK=0 also) */
  int drop_event;    /* test hook: waits on this event index are skipped and its producers held
                        back, so the checker must report a missing dependency (0: none; event e
                        is given as e + 1) */
  mlk_sim_mode mode;
  /* Deterministic mode: the depth d of the PCT scheduler (random SM priorities, d - 1 priority
   * change points per run), in [1, 16] (0: MLK_SIM_PCT_DEPTH or 3). A missing dependency that
   * needs d ordering constraints to show is hit with probability >= 1 / (n * k^(d-1)) per run of
   * k tasks on n SMs (static schedule; dynamic: n = k, the tasks). */
  int pct_depth;
  /* Deterministic mode: schedules each run tries (0: MLK_SIM_EXPLORE or 1). Every schedule starts
   * from the state the run started from; the run fails at the first that the checker fails, that
   * gets stuck, or that leaves other values than the first (a race). With a per-run probability p
   * of hitting a bug (above), N schedules miss it with probability <= (1 - p)^N. */
  int explore;
} mlk_sim_options;

mlk_status mlk_backend_create(mlk_backend_kind kind, mlk_backend **out);
mlk_status mlk_backend_create_cpu(const mlk_sim_options *opt, mlk_backend **out);
/* The GPU backend on CUDA device `device` (0 .. mlk_gpu_count() - 1): a rank of a world each. */
mlk_status mlk_backend_create_gpu(int device, mlk_backend **out);
/* The CUDA devices the driver reports; 0 without a driver or a device. */
int mlk_gpu_count(void);
void mlk_backend_free(mlk_backend *be);
/* "GPU 0: NVIDIA H100 80GB HBM3 (sm_90, 132 SMs)" or "CPU simulator (8 threads, seed 1)". */
const char *mlk_backend_name(const mlk_backend *be);
int mlk_backend_is_gpu(const mlk_backend *be);
/* Why MLK_BACKEND_AUTO chose the CPU simulator ("no GPU: libcuda.so.1 not found ..."), else "". */
const char *mlk_backend_note(const mlk_backend *be);
/* The PTX target that the backend's GPU loads when a model carries it: "sm_90a" on an sm_90 GPU
 * (its kernels use TMA and the weight stream), "sm_80" on any other sm_80 or newer (the driver
 * JITs it); NULL for the simulator. A model compiled for one GPU needs only this one (mlk-run). */
const char *mlk_backend_ptx_arch(const mlk_backend *be);

/* ---- models ---- */

typedef struct mlk_model mlk_model;

/* Settings of a model, fixed at creation. A zero field takes its environment variable, else the
 * default (the runtime reads MLK_KV_* only there). */
typedef struct mlk_model_options {
  int64_t kv_context; /* tokens a sequence may hold in the paged KV caches, in [1, 2^24]
                         (MLK_KV_CONTEXT, default 2048) */
  int64_t kv_pages;   /* pages in the pool of each KV cache, in [1, 2^31) (MLK_KV_PAGES, default
                         batch_max * ceil(kv_context / page): every row a whole context) */
  int rank;           /* the model's rank on its mesh axis: which slice of every sharded param
                         (`shard(axis, dim)`) the checkpoint loader loads, in [0, ranks) (MLK_RANK,
                         default 0) */
} mlk_model_options;

mlk_status mlk_model_create(mlk_backend *be, const MlkModelDesc *desc, mlk_model **out);
/* The same with options (NULL: as mlk_model_create). */
mlk_status mlk_model_create_opt(mlk_backend *be, const MlkModelDesc *desc,
                                const mlk_model_options *opt, mlk_model **out);
void mlk_model_free(mlk_model *m);
const MlkModelDesc *mlk_model_desc(const mlk_model *m);

/* Rows of the next runs of a model with a dynamic batch dim (MlkModelDesc.batch_name, between
 * batch_min and batch_max; the default is batch_min). Batched inputs and outputs then hold `batch`
 * rows: set_tensor/get_tensor expect exactly mlk_model_tensor_bytes. No recompile, no new queues:
 * task grids do not depend on the batch. */
mlk_status mlk_model_set_batch(mlk_model *m, int64_t batch);
int64_t mlk_model_batch(const mlk_model *m);
/* Bytes of tensor t at the current batch. */
size_t mlk_model_tensor_bytes(const mlk_model *m, int tensor);
/* Tokens per sequence the model's paged KV caches hold (mlk_model_options.kv_context, else
 * MLK_KV_CONTEXT, default 2048): positions must be in 0..context-1. 0 for a model without caches. */
int64_t mlk_model_kv_context(const mlk_model *m);

/* ---- sequences over the paged KV caches ----
 * Until the first mlk_seq_create, batch row b owns a fixed range of pages (as many as a whole
 * context; needs kv_pages >= batch_max * pages per sequence). From then on the runtime manages
 * the pool: each sequence holds a list of pages (its page table), allocated as tokens are
 * appended, and the rows of a run are whichever sequences mlk_model_set_seqs binds, of any lengths:
 * sequences join and leave the batch between runs without a recompile. mlk_seq_fork shares every
 * page of a sequence by reference count (a common prompt prefix is stored once); a page shared
 * by several sequences is copied, before a sequence appends into it, for that sequence alone. A
 * page returns to the pool when no sequence holds it. All caches of the model follow the same
 * page tables (they must have the same page size). Running out of pages is an MLK_ERR_NOMEM that
 * leaves the sequence as it was. Sequences belong to their model: free them before it, or
 * mlk_model_free frees what is left (handles then dangle). */
typedef struct mlk_seq mlk_seq;

/* A new empty sequence (switches the model to managed pages). */
mlk_status mlk_seq_create(mlk_model *m, mlk_seq **out);
/* Releases its pages and unbinds it from its row. NULL is ignored. */
void mlk_seq_free(mlk_seq *s);
/* A new sequence with the same tokens, sharing all of s's pages. */
mlk_status mlk_seq_fork(mlk_seq *s, mlk_seq **out);
/* Reserves positions length .. length + ntokens - 1 (ntokens >= 1): allocates the pages they need
 * and copies a shared page they fall into. A run's kv_append for this sequence's row must write
 * a position it reserved, and attention reads positions 0..pos[b], all reserved: the runtime
 * checks input positions against the row's length before each run. */
mlk_status mlk_seq_append(mlk_seq *s, int64_t ntokens);
/* Tokens reserved so far (the next position is this). */
int64_t mlk_seq_length(const mlk_seq *s);
/* Binds the rows of the next runs: row b is seqs[b] (of this model); sets the batch to n
 * (mlk_model_set_batch). Row order is free, and may change from one run to the next. A sequence
 * may take several consecutive rows, to go through several positions in one run (a prompt, or a
 * chunk of one: prefill): its rows must hold increasing positions, each writes its own and reads
 * every earlier one, and they draw consecutive random numbers, so one run over positions p..q
 * computes what q - p + 1 runs of a token each would. */
mlk_status mlk_model_set_seqs(mlk_model *m, mlk_seq *const *seqs, int64_t n);
/* Pages in each cache's pool, and how many no sequence holds (0 for a model without caches). */
int64_t mlk_model_kv_pages(const mlk_model *m);
int64_t mlk_model_kv_pages_free(const mlk_model *m);

/* ---- sampling ----
 * A model whose megakernels hold a sample op (`sample(logits, ...)` in the source) draws each
 * row's token with that row's settings: temperature (0: greedy, the argmax), top-k, top-p and a
 * seed. They are run-time values: the runtime writes them, with each row's next random number,
 * into a small buffer the sample ops read (the sampling tensor) before every run, so they change
 * between steps without a recompile. Until set, a row samples as compiled (each sample op's own
 * keywords). The settings belong to the sequence bound to a row (they follow it from row to row,
 * a fork copies them with its stream) or, in a model without sequences, to the row itself.
 *
 * Random numbers: draw i of a seed's stream is mlk_sampling_uniform(seed, i); every successful run
 * that samples takes one draw per row. Setting a row or sequence's sampling restarts its stream
 * at draw 0, so the same seed, prompt and settings give the same tokens again, on the GPU and on
 * the simulator alike (up to the rounding of near ties, mlk_desc.h MLK_OP_SAMPLE). Defaults: the
 * seed of row b is b, that of a sequence the number of sequences the model created before it. */
typedef struct mlk_sampling {
  float temperature; /* >= 0 and finite; 0: greedy (top_k and top_p do not matter) */
  int32_t top_k;     /* the top_k most likely tokens are candidates, 1..MLK_SAMPLE_MAX_TOP_K (1024);
                        0: sample as compiled (temperature and top_p are then ignored) */
  float top_p;       /* then the smallest prefix of them whose probability reaches top_p, (0, 1];
                        1: no cut */
  uint64_t seed;     /* the random stream */
} mlk_sampling;

/* The sampling settings of row `row` (0..batch_max-1) of a model without sequences: used from its
 * next run on, its stream restarted. MLK_ERR_INVALID for a model that does not sample, a row out
 * of range, settings out of range, or a model whose rows are sequences (mlk_seq_set_sampling). */
mlk_status mlk_model_set_sampling(mlk_model *m, int64_t row, const mlk_sampling *s);
/* The same for a sequence, wherever it is bound. */
mlk_status mlk_seq_set_sampling(mlk_seq *seq, const mlk_sampling *s);
/* What the model samples with as compiled: its first sample op's temperature, top_k and top_p
 * (seed 0). MLK_ERR_INVALID for a model without a sample op. */
mlk_status mlk_model_sampling_default(const mlk_model *m, mlk_sampling *out);
/* Draw `draw` of the stream `seed`: a uniform number in [0, 1), a multiple of 2^-24. */
float mlk_sampling_uniform(uint64_t seed, uint64_t draw);

/* Index of the tensor called `name`, or -1. */
int mlk_model_find_tensor(const mlk_model *m, const char *name);
/* Copy a param or input in; `bytes` must equal the tensor's size exactly. */
mlk_status mlk_model_set_tensor(mlk_model *m, int tensor, const void *data, size_t bytes);
/* Copy any tensor out (outputs, and intermediates for debugging). */
mlk_status mlk_model_get_tensor(mlk_model *m, int tensor, void *data, size_t bytes);
/* Fill a tensor with a byte pattern (0xff gives NaN in f32 and bf16): tests poison outputs. */
mlk_status mlk_model_fill_tensor(mlk_model *m, int tensor, uint8_t byte);
/* Run megakernel `kernel` (index into desc->kernels) once and wait for it. Fails if a param or input
 * was never set, or with MLK_ERR_DEADLOCK naming the task and event if a wait timed out (GPU) or
 * could never complete (simulator). */
mlk_status mlk_model_run(mlk_model *m, int kernel);
/* The same, and *ms gets the run's elapsed time: on the GPU between CUDA events recorded around
 * the launch (device time, no host synchronization included), on the CPU simulator wall time. */
mlk_status mlk_model_run_timed(mlk_model *m, int kernel, double *ms);

/* ---- worlds: the ranks of a sharded model ----
 * A model compiled with a mesh of N > 1 ranks (`mesh tp = N`, or mlkc --mesh=tp=N) is N models,
 * one per rank, each holding its part of the sharded params (mlk_model_options.rank), and its
 * megakernels that all-reduce are cut at their collectives into segments (MlkKernelDesc). A world
 * holds the N models and runs such a megakernel: each segment on every rank at once (a host
 * thread per rank), then the collectives after it, summed in rank order so that every rank gets
 * the same bits in every run. Set params, inputs, batches and sequences on each rank's model
 * (mlk_world_model) as on any model; every rank must run the same batch. */
typedef struct mlk_world mlk_world;

typedef struct mlk_world_options {
  int nranks;                    /* must be the model's MlkModelDesc.ranks */
  mlk_backend *const *backends;  /* the backend of each rank this process holds (nranks, or 1 in
                                    a world of processes; one may serve several ranks on the
                                    simulator); NULL: one CPU simulator backend with default
                                    options, made for the world */
  const mlk_model_options *model; /* each rank's model options (NULL: defaults); the world sets
                                    .rank */
  /* A world of processes, a rank each (launched by mpirun, or by hand): this process holds rank
   * `rank` only, and the ranks of one host meet in the file `rendezvous` (a path every rank can
   * open; rank 0 makes it). NULL: every rank in this process. */
  const char *rendezvous;
  int rank;
} mlk_world_options;

/* A world of processes from the environment: the world size and this process's rank from
 * MLK_WORLD_SIZE and MLK_RANK, or from mpirun's OMPI_COMM_WORLD_SIZE and OMPI_COMM_WORLD_RANK; the
 * rendezvous from MLK_RENDEZVOUS, else (under mpirun) a file under /tmp named after the job. Sets
 * o->nranks, o->rank and o->rendezvous and returns 1 when the environment says this process is one
 * rank of several, 0 when it says nothing (o untouched), MLK_ERR_INVALID-like -1 with the last
 * error set when what it says is wrong. */
int mlk_world_options_from_env(mlk_world_options *o);

mlk_status mlk_world_create(const MlkModelDesc *desc, const mlk_world_options *opt, mlk_world **out);
void mlk_world_free(mlk_world *w);
int mlk_world_size(const mlk_world *w);
/* Rank r's model (NULL when r is out of range, or another process's rank): set its tensors,
 * batch and sequences. */
mlk_model *mlk_world_model(mlk_world *w, int rank);
/* Runs megakernel `kernel` (its first segment's index, as the generated M_<name>_world passes)
 * on every rank and waits for all of them. A rank that fails stops the run on every rank after
 * the segment in progress; the message names the rank. A megakernel without collectives runs on
 * every rank the same way. */
mlk_status mlk_world_run(mlk_world *w, int kernel);
/* The same, and *ms gets the run's wall time on the host. */
mlk_status mlk_world_run_timed(mlk_world *w, int kernel, double *ms);
/* What sums the collectives: "host" (each rank's rows through the host, added in rank order: the
 * simulator's, and a world NCCL cannot serve) or "NCCL x.y.z" (ranks on distinct GPUs of this
 * process). MLK_COMM=host|nccl chooses at mlk_world_create; unset, NCCL where it can serve. */
const char *mlk_world_comm(const mlk_world *w);
/* In a world of processes: tells the other ranks that this one stops (they fail at their next
 * collective with `why`, instead of waiting for it until their deadline). Nothing otherwise. */
void mlk_world_abort(mlk_world *w, const char *why);

/* How mlk_model_create loaded the model's megakernels on the GPU. A model compiled with
 * `mlkc --cubin` carries its sm_90a PTX assembled ahead of time, which an sm_90 GPU loads as it is
 * (MLK_BUILTIN_CUBIN=0 ignores it; a driver that refuses it gets the PTX, and the note says so).
 * Otherwise the PTX is JIT-compiled to a cubin once per PTX, device and driver, and the cubin kept
 * in the cache directory (MLK_CACHE_DIR, see the top comment): a later start loads it (a cache
 * hit) instead of compiling again. A cache that is off, unreadable or unwritable never fails a
 * model, it only costs the compile. On the CPU simulator, and for a model without kernels: 0, 0,
 * 0 and "". */
/* Wall time of the load in milliseconds: key hash, cache lookup, compile or load, cache write. */
double mlk_model_load_ms(const mlk_model *m);
/* 1 when the module was loaded from the cubin cache, else 0. */
int mlk_model_cache_hit(const mlk_model *m);
/* 1 when the module is the model's built-in cubin (mlkc --cubin), else 0. */
int mlk_model_builtin_cubin(const mlk_model *m);
/* What happened, for logs: "built-in cubin (<n> bytes, ...)", "cache hit: <file>", "compiled,
 * cached in <file>", "compiled, cache off (MLK_CACHE_DIR=off)" or "compiled, not cached:
 * <reason>"; a cache file that was bad (corrupt, truncated, refused by the driver) and replaced,
 * or a built-in cubin the driver refused, is mentioned after "; ". */
const char *mlk_model_load_note(const mlk_model *m);

/* ---- checkpoints ----
 * Params declared with `from` (mlkc expands them into MlkModelDesc.bindings) load from a Hugging
 * Face checkpoint in the safetensors format, as published: one model.safetensors, or shards listed
 * by model.safetensors.index.json. The files are memory-mapped and uploaded piece by piece without
 * a copy of the whole checkpoint on the host; BF16 tensors go as they are, F16 and F32 ones are
 * converted to the param's dtype (bf16 or f32, rounding to nearest even) on the way. Every file is
 * checked completely first (header length, JSON, dtypes, shapes, offsets in bounds without overlaps
 * or gaps, no duplicate names, the index against the shards), then every binding (the tensor is
 * there, its dtype loads into the param, its shape is exactly the one the model expects), and a
 * tensor of the checkpoint that no param binds is refused too (a model would silently ignore an
 * untied lm_head.weight or extra layers): a bad checkpoint changes no param and the message names
 * the file and the tensor. MLK_ERR_IO: a file cannot be opened, read or mapped; MLK_ERR_INVALID:
 * anything wrong in one. Params without bindings are left for mlk_model_set_tensor.
 *
 * config.json: the static dims the model was compiled with are checked against the checkpoint's
 * config (keys of the Llama family): num_hidden_layers against its KV caches, num_attention_heads,
 * num_key_value_heads and head_dim against its attention ops and caches, hidden_size and
 * vocab_size against its embedding gather, rms_norm_eps against every rmsnorm (fused or not),
 * rope_theta and rope_scaling (none or llama3: factor, low and high freq factors, original max
 * positions) against every rope op. A key the config lacks, or that nothing in the model fixes,
 * is not checked: "config 'ckpt/config.json': num_key_value_heads is 8, but model 'llama' has 2
 * (cache 'kv')". */
typedef struct mlk_load_options {
  const char *config;   /* a Hugging Face config.json to check the model against (below); NULL:
                           the config.json next to the checkpoint, when there is one; "": none */
  int allow_unused;     /* 1: skip checkpoint tensors that no param binds (0: refuse them) */
  size_t staging_bytes; /* host buffer for dtype conversions (0: 4 MiB; at least 8) */
} mlk_load_options;

/* `path`: a .safetensors file, a model.safetensors.index.json, or a directory holding either
 * (the index first). `opt` may be NULL (all defaults). */
mlk_status mlk_model_load_checkpoint(mlk_model *m, const char *path, const mlk_load_options *opt);

/* ---- traces ----
 * A timeline of runs: for every task, when its block took it, when its waits were satisfied and
 * when it was done (%globaltimer on the GPU, the host clock on the simulator). Off by default;
 * off, the megakernel only tests one pointer per task. */

/* Record the latest `max_runs` runs of every kernel from now on (0: stop and drop the records). */
mlk_status mlk_model_trace_enable(mlk_model *m, int max_runs);
/* Runs recorded and kept. */
int mlk_model_trace_runs(const mlk_model *m);
/* The records of kept run i (0: the oldest): MLK_TRACE_WORDS u64 per task (mlk_desc.h MLK_TRACE_*),
 * with its kernel, epoch (run number) and task count; NULL when run i is not kept. Valid until the
 * next run or mlk_model_trace_enable. */
const uint64_t *mlk_model_trace_records(const mlk_model *m, int i, int *kernel, uint32_t *epoch,
                                        int64_t *ntasks);
/* Writes the kept runs as Chrome trace event JSON (chrome://tracing, ui.perfetto.dev): a process per
 * run, a thread per block (SM), a "wait" slice before each tile's slice. */
mlk_status mlk_model_trace_write(const mlk_model *m, const char *path);
/* A text summary of the kept runs (malloc'd; the caller frees it), or NULL (see mlk_last_error):
 * span of a run, the blocks' time split into running tiles / waiting / idle, time by op kind and
 * the ten ops with the most running time. */
char *mlk_model_trace_summary(const mlk_model *m);

/* ---- helpers ---- */

size_t mlk_dtype_size(MlkDType t);
const char *mlk_dtype_name(MlkDType t);
uint16_t mlk_f32_to_bf16(float f); /* round to nearest even; NaN stays NaN */
float mlk_bf16_to_f32(uint16_t h);

#ifdef __cplusplus
}
#endif

#endif /* MLK_H */
