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

#define MLK_DESC_ABI 1

/* Threads per block of every generated megakernel. Tiles are written for this many threads. */
#define MLK_BLOCK_THREADS 256

/* A task word: op index within its megakernel in the top 8 bits, task index in the low 24. */
#define MLK_TASK_OP_SHIFT 24
#define MLK_TASK_INDEX_MASK 0xffffffu
#define MLK_MAX_TASKS_PER_OP (1 << 24)
#define MLK_MAX_OPS_PER_KERNEL 256

/* Largest inner dimension a matvec tile stages in shared memory (f32 elements, 48 KiB). */
#define MLK_MATVEC_MAX_K 12288

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
  MLK_TENSOR_TEMP    /* an intermediate between ops, lives on the device only */
} MlkTensorKind;

#define MLK_MAX_RANK 4

typedef struct MlkTensorDesc {
  const char *name;             /* source name, used in every message about the tensor */
  MlkDType dtype;
  MlkTensorKind kind;
  int rank;
  int64_t shape[MLK_MAX_RANK];  /* row-major, shape[rank-1] is contiguous */
  int64_t numel;
  const char *from;             /* checkpoint binding (`from "..."`), or NULL */
} MlkTensorDesc;

typedef enum MlkOpKind {
  /* out[n] = act(sum_k W[n,k] * x[k]) (+ res[n]); W bf16 [N,K], x/out/res f32.
   * Task t computes rows [t*tile, min((t+1)*tile, N)). */
  MLK_OP_MATVEC,
  /* out[i] = f(a[i], b[i]) over f32 vectors of length N; task t covers elements [t*tile, ...). */
  MLK_OP_ELTWISE
} MlkOpKind;

/* Activation applied by a matvec epilogue, or the function of an elementwise op. */
typedef enum MlkFn {
  MLK_FN_NONE, /* matvec only: no activation */
  MLK_FN_RELU, /* relu(a) */
  MLK_FN_SILU, /* a * sigmoid(a) */
  MLK_FN_ADD,  /* a + b (elementwise only) */
  MLK_FN_MUL   /* a * b (elementwise only) */
} MlkFn;

typedef struct MlkOpDesc {
  const char *name;  /* e.g. "matvec@mlp.mlk:12" for messages and traces */
  MlkOpKind kind;
  MlkFn fn;
  int out;           /* tensor index of the output */
  int in[3];         /* matvec: x, W, residual (-1: none); eltwise: a, b (-1: none), -1 */
  int64_t n;         /* output length */
  int64_t k;         /* matvec inner dimension, 0 otherwise */
  int64_t tile;      /* output elements per task */
  int64_t ntasks;    /* ceil(n / tile) */
} MlkOpDesc;

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
  int64_t n;         /* elements of the tensor */
  int64_t ptile;     /* producer elements per task */
  int64_t ctile;     /* consumer elements per task */
  int64_t size;      /* number of counters */
  int64_t base;      /* first counter in the model's counter array */
} MlkEventDesc;

typedef struct MlkKernelDesc {
  const char *name;  /* megakernel name in the source, e.g. "forward" */
  const char *entry; /* PTX entry symbol */
  int first_op;      /* ops [first_op, first_op + nops) belong to this kernel, in topological order */
  int nops;
} MlkKernelDesc;

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
  const char *ptx_sm90a;        /* PTX for sm_90a, NUL-terminated, or NULL */
  const char *ptx_sm80;         /* portable PTX for sm_80 and newer, or NULL */
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
