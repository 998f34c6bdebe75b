/* gpu.c: the GPU backend: buffers, queues and launches over the CUDA driver API.
 *
 * The driver is loaded at run time (dlopen of libcuda.so.1) instead of linked, so that every
 * binary built against libmlkrt starts on a machine without a driver and falls back to the CPU
 * simulator with a readable reason. A model gets one device allocation per tensor (batched tensors
 * for batch_max rows, KV cache pools and page tables as model.c sized them), a table of their
 * addresses (the kernel's `bufs`), the event counters, one static queue per SM and kernel
 * (sched.c), the run-time values `rt` (batch, cache page counts), and an error record the kernel
 * fills when a wait passes its deadline. A run is one cooperative launch of the persistent
 * megakernel: cooperative because every block spins on counters other blocks increment, which is
 * only safe when all blocks are resident at once. Only the static schedule exists on the GPU: a
 * kernel compiled for the dynamic one is refused at model creation (the simulator runs it).
 * The PTX is compiled with the driver's linker and the cubin kept on disk (cubin_cache.c), keyed
 * by the PTX, the device and the driver, so that a later start loads it instead of compiling.
 */
#include "internal.h"
#include "task.h"

#ifdef MLK_HAVE_CUDA

#include <cuda.h>
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cuda.h #defines many API names to versioned symbols (cuMemAlloc -> cuMemAlloc_v2): stringizing
 * through a second macro expands the name first, so dlsym gets the symbol the header would link. */
#define MLK_CU_STR2(x) #x
#define MLK_CU_STR(x) MLK_CU_STR2(x)

#define MLK_CU_FUNCS(X)                                                                           \
  X(cuGetErrorName)                                                                               \
  X(cuGetErrorString)                                                                             \
  X(cuInit)                                                                                       \
  X(cuDriverGetVersion)                                                                           \
  X(cuDeviceGetCount)                                                                             \
  X(cuDeviceGet)                                                                                  \
  X(cuDeviceGetName)                                                                              \
  X(cuDeviceGetAttribute)                                                                         \
  X(cuDevicePrimaryCtxRetain)                                                                     \
  X(cuDevicePrimaryCtxRelease)                                                                    \
  X(cuCtxSetCurrent)                                                                              \
  X(cuCtxSynchronize)                                                                             \
  X(cuModuleLoadDataEx)                                                                           \
  X(cuModuleLoadData)                                                                             \
  X(cuLinkCreate)                                                                                 \
  X(cuLinkAddData)                                                                                \
  X(cuLinkComplete)                                                                               \
  X(cuLinkDestroy)                                                                                \
  X(cuModuleUnload)                                                                               \
  X(cuModuleGetFunction)                                                                          \
  X(cuModuleGetGlobal)                                                                            \
  X(cuOccupancyMaxActiveBlocksPerMultiprocessor)                                                  \
  X(cuFuncSetAttribute)                                                                           \
  X(cuMemAlloc)                                                                                   \
  X(cuMemFree)                                                                                    \
  X(cuMemcpyHtoD)                                                                                 \
  X(cuMemcpyDtoH)                                                                                 \
  X(cuMemcpyDtoD)                                                                                 \
  X(cuMemsetD8)                                                                                   \
  X(cuLaunchCooperativeKernel)                                                                    \
  X(cuEventCreate)                                                                                \
  X(cuEventDestroy)                                                                               \
  X(cuEventRecord)                                                                                \
  X(cuEventElapsedTime)                                                                           \
  X(cuDeviceCanAccessPeer)                                                                        \
  X(cuCtxEnablePeerAccess)

static struct {
#define MLK_CU_MEMBER(f) __typeof__(&f) f;
  MLK_CU_FUNCS(MLK_CU_MEMBER)
#undef MLK_CU_MEMBER
} cu;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static mlk_status load_status;
static char load_msg[1024];
/* The driver library's real file ("/usr/lib/.../libcuda.so.570.124.06", "" when unknown): part of
 * the cubin cache key, so that a driver update of the same CUDA version compiles again. */
static char driver_file[PATH_MAX];

/* "CUDA_ERROR_OUT_OF_MEMORY (out of memory)" */
static void describe(CUresult r, char *buf, size_t n) {
  const char *name = NULL, *str = NULL;
  if (!cu.cuGetErrorName || cu.cuGetErrorName(r, &name) != CUDA_SUCCESS)
    name = NULL;
  if (!cu.cuGetErrorString || cu.cuGetErrorString(r, &str) != CUDA_SUCCESS)
    str = NULL;
  if (name)
    snprintf(buf, n, "%s (%s)", name, str ? str : "no description");
  else
    snprintf(buf, n, "CUresult %d", (int)r);
}

/* "gpu.c:123: cuMemAlloc(8388608 bytes for 'W1') failed: CUDA_ERROR_OUT_OF_MEMORY (out of memory)" */
static mlk_status cu_fail(CUresult r, const char *file, int line, const char *fmt, ...) MLK_PRINTF(4, 5);
static mlk_status cu_fail(CUresult r, const char *file, int line, const char *fmt, ...) {
  char call[512], what[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(call, sizeof call, fmt, ap);
  va_end(ap);
  describe(r, what, sizeof what);
  mlk_status s = r == CUDA_ERROR_OUT_OF_MEMORY ? MLK_ERR_NOMEM
                 : r == CUDA_ERROR_NO_DEVICE   ? MLK_ERR_NO_GPU
                                               : MLK_ERR_CUDA;
  return mlk_set_error(s, "%s:%d: %s failed: %s", mlk_basename(file), line, call, what);
}
#define CU_FAIL(r, ...) cu_fail((r), __FILE__, __LINE__, __VA_ARGS__)

static void load_driver(void) {
  /* Never closed: contexts and modules live as long as the process may use them. */
  void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *why = dlerror();
    snprintf(load_msg, sizeof load_msg, "no GPU: libcuda.so.1 could not be loaded (%s:%d: dlopen: %s)",
             mlk_basename(__FILE__), __LINE__, why ? why : "unknown error");
    load_status = MLK_ERR_NO_GPU;
    return;
  }
#define MLK_CU_LOAD(f)                                                                            \
  if (!(cu.f = (__typeof__(cu.f))dlsym(h, MLK_CU_STR(f)))) {                                      \
    snprintf(load_msg, sizeof load_msg,                                                           \
             "no GPU: the CUDA driver is too old: libcuda.so.1 has no %s (%s:%d: dlsym)",         \
             MLK_CU_STR(f), mlk_basename(__FILE__), __LINE__);                                    \
    load_status = MLK_ERR_NO_GPU;                                                                 \
    return;                                                                                       \
  }
  MLK_CU_FUNCS(MLK_CU_LOAD)
#undef MLK_CU_LOAD
  Dl_info info;
  char real[PATH_MAX];
  if (dladdr((void *)cu.cuInit, &info) && info.dli_fname && realpath(info.dli_fname, real))
    snprintf(driver_file, sizeof driver_file, "%s", real);
  CUresult r = cu.cuInit(0);
  if (r != CUDA_SUCCESS) {
    char what[256];
    describe(r, what, sizeof what);
    snprintf(load_msg, sizeof load_msg, "no GPU: %s:%d: cuInit(0) failed: %s", mlk_basename(__FILE__),
             __LINE__, what);
    load_status = MLK_ERR_NO_GPU;
  }
}

typedef struct GpuBackend {
  int ordinal;
  CUdevice dev;
  CUcontext ctx;
  int cc_major, cc_minor, sms;
  int driver_version; /* cuDriverGetVersion: 12080 for CUDA 12.8 */
  char name[200];     /* cuDeviceGetName */
} GpuBackend;

typedef struct GpuKernel {
  CUfunction f;
  CUdeviceptr ops;   /* MlkDevOp[nops]: the kernel's op records (program.c) */
  CUdeviceptr syncs; /* MlkDevSync[]: their waits and notifies */
  CUdeviceptr qoff, queue;
  CUdeviceptr trace; /* MLK_TRACE_WORDS u64 per task, allocated on the first traced run */
  int64_t ntasks;
} GpuKernel;

/* Tensors start at multiples of this in the arena (16-byte vector loads need 16; 256 keeps every
 * tensor on its own cache lines, as separate cuMemAlloc calls did). */
#define GPU_ARENA_ALIGN 256

typedef struct GpuModel {
  CUmodule module;
  CUdeviceptr arena; /* every tensor */
  CUdeviceptr *bufs; /* per tensor: an address in the arena */
  CUdeviceptr counters, err;
  CUdeviceptr scratch; /* the split matvecs' and folded attentions' (mlk_program_scratch_bytes), or 0 */
  CUdeviceptr rt;    /* i64 rt[MLK_RT_COUNT(ncaches)] */
  int64_t *rt_sent;  /* what rt holds on the device (uploaded when mlk_model.rt differs) */
  GpuKernel *kernels;
  unsigned dyn_smem; /* dynamic shared memory of a launch: the weight stream's ring on sm_90a */
  CUevent ev_start, ev_stop; /* created on the first timed run */
  CUdeviceptr peers; /* a rank of a world with in-kernel allreduces: its peer area, else 0 */
} GpuModel;

/* The words of a model's counter array: the event counters, a ticket per kernel, then the split
 * ops' arrival counters (mlk_program_arrivals: split matvecs, folded attentions). */
static int64_t gpu_counter_words(const MlkModelDesc *d) {
  return MLK_TICKET_COUNTER(d->ncounters, d->nkernels) + mlk_program_arrivals(d);
}

/* The address of the first arrival counter. */
static uint64_t gpu_arrive_addr(const mlk_model *m) {
  const GpuModel *gm = m->impl;
  return (uint64_t)gm->counters +
         (uint64_t)MLK_TICKET_COUNTER(m->desc->ncounters, m->desc->nkernels) * sizeof(uint32_t);
}

/* The calling thread may not be the one that created the backend: make its context current. */
static mlk_status use_context(const mlk_backend *be) {
  const GpuBackend *gb = be->impl;
  CUresult r = cu.cuCtxSetCurrent(gb->ctx);
  return r == CUDA_SUCCESS ? MLK_OK : CU_FAIL(r, "cuCtxSetCurrent(GPU %d)", gb->ordinal);
}

static void free_ptr(CUdeviceptr *p) {
  /* Teardown cannot report: a failure here leaves nothing for the caller to do. */
  if (*p)
    (void)cu.cuMemFree(*p);
  *p = 0;
}

static void gpu_model_fini(mlk_model *m) {
  GpuModel *gm = m->impl;
  if (!gm)
    return;
  const MlkModelDesc *d = m->desc;
  (void)use_context(m->be);
  free_ptr(&gm->arena);
  free_ptr(&gm->peers);
  if (gm->kernels)
    for (int k = 0; k < d->nkernels; k++) {
      free_ptr(&gm->kernels[k].ops);
      free_ptr(&gm->kernels[k].syncs);
      free_ptr(&gm->kernels[k].qoff);
      free_ptr(&gm->kernels[k].queue);
      free_ptr(&gm->kernels[k].trace);
    }
  free_ptr(&gm->counters);
  free_ptr(&gm->scratch);
  free_ptr(&gm->err);
  free_ptr(&gm->rt);
  if (gm->ev_start)
    (void)cu.cuEventDestroy(gm->ev_start);
  if (gm->ev_stop)
    (void)cu.cuEventDestroy(gm->ev_stop);
  if (gm->module)
    (void)cu.cuModuleUnload(gm->module);
  free(gm->bufs);
  free(gm->kernels);
  free(gm->rt_sent);
  free(gm);
  m->impl = NULL;
}

static mlk_status alloc_zeroed(CUdeviceptr *p, size_t bytes, const char *what) {
  CUresult r = cu.cuMemAlloc(p, bytes);
  if (r != CUDA_SUCCESS) {
    *p = 0;
    return CU_FAIL(r, "cuMemAlloc(%zu bytes for %s)", bytes, what);
  }
  r = cu.cuMemsetD8(*p, 0, bytes);
  return r == CUDA_SUCCESS ? MLK_OK : CU_FAIL(r, "cuMemsetD8(%zu bytes of %s)", bytes, what);
}

static mlk_status upload_array(CUdeviceptr *p, const void *src, size_t bytes, const char *what) {
  mlk_status st = alloc_zeroed(p, bytes, what);
  if (st)
    return st;
  CUresult r = cu.cuMemcpyHtoD(*p, src, bytes);
  return r == CUDA_SUCCESS ? MLK_OK : CU_FAIL(r, "cuMemcpyHtoD(%zu bytes to %s)", bytes, what);
}

enum { JIT_LOG_BYTES = 1 << 16, CACHE_PATH_BYTES = 4096 };

/* The cubin cache key: everything the compiled cubin depends on. */
static MlkHash module_key(const GpuBackend *gb, const char *arch, const char *ptx) {
  uint32_t format = mlk_cubin_cache_format();
  int32_t nums[3] = {gb->cc_major, gb->cc_minor, gb->driver_version};
  MlkHash h;
  mlk_hash_init(&h);
  mlk_hash_field(&h, &format, sizeof format);
  mlk_hash_field(&h, nums, sizeof nums);
  mlk_hash_field(&h, gb->name, strlen(gb->name));
  mlk_hash_field(&h, driver_file, strlen(driver_file));
  mlk_hash_field(&h, arch, strlen(arch));
  mlk_hash_field(&h, ptx, strlen(ptx));
  return h;
}

/* Appends "; <more>" to a model's load note. */
static void add_note(mlk_model *m, const char *more) {
  size_t n = strlen(m->load_note);
  snprintf(m->load_note + n, sizeof m->load_note - n, "; %s", more);
}

/* JIT-compiles `ptx` with the driver's linker, loads the cubin, and writes it to the cache file
 * `path` (NULL: the cache is off). m->load_note gets "compiled, ..." unless the caller set it. */
static mlk_status compile_module(mlk_model *m, GpuModel *gm, const char *ptx, const char *arch,
                                 const char *path, MlkHash key) {
  const MlkModelDesc *d = m->desc;
  char *elog = MLK_CALLOC(JIT_LOG_BYTES, 1, "JIT error log");
  char *ilog = elog ? MLK_CALLOC(JIT_LOG_BYTES, 1, "JIT info log") : NULL;
  if (!ilog) {
    free(elog);
    return MLK_ERR_NOMEM;
  }
  /* The values must live as long as the link state (the driver writes the log sizes back). */
  CUjit_option opts[] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
                         CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES};
  void *vals[] = {elog, (void *)(uintptr_t)JIT_LOG_BYTES, ilog, (void *)(uintptr_t)JIT_LOG_BYTES};
  CUlinkState link = NULL;
  void *cubin = NULL;
  size_t bytes = 0;
  const char *call = "cuLinkCreate";
  int loading = 0; /* the failed call is cuModuleLoadData of the linked cubin */
  CUresult r = cu.cuLinkCreate(4, opts, vals, &link);
  if (r != CUDA_SUCCESS)
    link = NULL;
  if (r == CUDA_SUCCESS) {
    call = "cuLinkAddData";
    r = cu.cuLinkAddData(link, CU_JIT_INPUT_PTX, (void *)ptx, strlen(ptx) + 1, d->name, 0, NULL, NULL);
  }
  if (r == CUDA_SUCCESS) {
    call = "cuLinkComplete";
    r = cu.cuLinkComplete(link, &cubin, &bytes);
  }
  elog[JIT_LOG_BYTES - 1] = ilog[JIT_LOG_BYTES - 1] = 0;
  if (r != CUDA_SUCCESS && !*elog && r != CUDA_ERROR_OUT_OF_MEMORY) {
    /* The linker failed with nothing in its error log: the linker, not the PTX (the JIT always
     * says which line is wrong). Load the PTX the way it was before the cache, uncached. */
    char what[256];
    describe(r, what, sizeof what);
    snprintf(m->load_note, sizeof m->load_note, "compiled, not cached: %s failed (%s), the PTX was "
             "loaded with cuModuleLoadDataEx", call, what);
    if (link)
      (void)cu.cuLinkDestroy(link);
    link = NULL;
    memset(elog, 0, JIT_LOG_BYTES);
    memset(ilog, 0, JIT_LOG_BYTES);
    vals[1] = vals[3] = (void *)(uintptr_t)JIT_LOG_BYTES;
    call = "cuModuleLoadDataEx";
    r = cu.cuModuleLoadDataEx(&gm->module, ptx, 4, opts, vals);
    elog[JIT_LOG_BYTES - 1] = ilog[JIT_LOG_BYTES - 1] = 0;
  } else if (r == CUDA_SUCCESS) {
    loading = 1;
    r = cu.cuModuleLoadData(&gm->module, cubin);
  }
  mlk_status st = MLK_OK;
  if (r != CUDA_SUCCESS) {
    gm->module = NULL;
    if (loading)
      st = CU_FAIL(r, "cuModuleLoadData(%zu-byte cubin compiled from the %s PTX of model '%s')", bytes,
                   arch, d->name);
    else
      st = CU_FAIL(r, "%s(%s PTX of model '%s', %zu bytes)", call, arch, d->name, strlen(ptx));
    /* The log is the only place that says which PTX line is wrong: report it in full. */
    if (*elog)
      mlk_set_error(st, "%s\nJIT error log:\n%s", mlk_last_error(), elog);
    if (*ilog)
      mlk_set_error(st, "%s\nJIT info log:\n%s", mlk_last_error(), ilog);
  } else {
    if (*ilog)
      mlk_debug("JIT info log of model '%s':\n%s", d->name, ilog);
    if (link && path) {
      /* Not being able to cache is no error: the model works, the next start compiles again. */
      char why[400];
      if (mlk_cubin_cache_write(path, key, cubin, bytes, why, sizeof why))
        snprintf(m->load_note, sizeof m->load_note, "compiled, not cached: %s", why);
      else
        snprintf(m->load_note, sizeof m->load_note, "compiled, cached in %s", path);
    }
  }
  if (link)
    (void)cu.cuLinkDestroy(link); /* after the write: it owns the cubin */
  free(elog);
  free(ilog);
  return st;
}

/* The PTX target a GPU of compute capability major.minor runs best: sm_90a PTX (wgmma, TMA, the
 * weight stream) runs on exactly sm_90; any other sm_80 or newer JITs the portable sm_80 PTX. */
static const char *best_ptx_arch(int major, int minor) {
  return major == 9 && minor == 0 ? "sm_90a" : major >= 8 ? "sm_80" : NULL;
}

/* Loads the megakernels' module: the cached cubin when there is a good one, else the PTX compiled
 * (and the cubin cached). Sets the model's load time, cache flag and note. */
static mlk_status load_module(mlk_model *m, GpuModel *gm) {
  const GpuBackend *gb = m->be->impl;
  const MlkModelDesc *d = m->desc;
  const char *ptx = NULL, *arch = NULL;
  /* the best target the model carries, else the portable one */
  if (!strcmp(m->be->ptx_arch, "sm_90a") && d->ptx_sm90a)
    ptx = d->ptx_sm90a, arch = "sm_90a";
  else if (gb->cc_major >= 8 && d->ptx_sm80)
    ptx = d->ptx_sm80, arch = "sm_80";
  /* the sm_90a kernels' weight stream (stdlib/tiles/stream.c) lives in dynamic shared memory: its
   * header always, and MLK_STREAM_SLOTS slots (0 turns the stream off) */
  int64_t slots = 0;
  mlk_status sst = mlk_env_int("MLK_STREAM_SLOTS", 0, MLK_STREAM_MAX_SLOTS, MLK_STREAM_DEFAULT_SLOTS, &slots);
  if (sst)
    return sst;
  gm->dyn_smem = ptx && arch[3] == '9' ? (unsigned)MLK_STREAM_BYTES(slots) : 0;
  if (!ptx)
    return mlk_set_error(MLK_ERR_INVALID, "model '%s' has no PTX this GPU can run: GPU %d is sm_%d%d, "
                         "the model carries %s%s%s", d->name, gb->ordinal, gb->cc_major, gb->cc_minor,
                         d->ptx_sm90a ? "sm_90a" : "", d->ptx_sm90a && d->ptx_sm80 ? " and " : "",
                         d->ptx_sm80 ? "sm_80" : (d->ptx_sm90a ? "" : "no PTX at all"));
  double t0 = mlk_now_ms();
  char *path = NULL; /* the cache file's, once the cache is consulted */
  mlk_status st = MLK_OK;
  m->cache_hit = 0;
  m->builtin_cubin = 0;
  /* A cubin that mlkc assembled from this PTX ahead of time (mlkc --cubin) needs no compile and no
   * cache; a driver that refuses it (older than the ptxas that wrote it) gets the PTX as without. */
  char refused[400] = "";
  int64_t builtin = 1;
  mlk_status bst = mlk_env_int("MLK_BUILTIN_CUBIN", 0, 1, 1, &builtin);
  if (bst)
    return bst;
  if (builtin && !strcmp(arch, "sm_90a") && d->cubin_sm90a && d->cubin_sm90a_bytes > 0) {
    CUresult r = cu.cuModuleLoadData(&gm->module, d->cubin_sm90a);
    if (r == CUDA_SUCCESS) {
      m->builtin_cubin = 1;
      snprintf(m->load_note, sizeof m->load_note, "built-in cubin (%lld bytes, compiled by mlkc --cubin)",
               (long long)d->cubin_sm90a_bytes);
      goto done;
    }
    gm->module = NULL;
    if (r == CUDA_ERROR_OUT_OF_MEMORY)
      return CU_FAIL(r, "cuModuleLoadData(%lld-byte built-in cubin of model '%s')",
                     (long long)d->cubin_sm90a_bytes, d->name);
    char what[256];
    describe(r, what, sizeof what);
    snprintf(refused, sizeof refused, "the driver refused the built-in cubin (cuModuleLoadData: %s)", what);
  }
  path = MLK_CALLOC(CACHE_PATH_BYTES, 1, "the cubin cache path");
  if (!path)
    return MLK_ERR_NOMEM;
  MlkHash key = module_key(gb, arch, ptx);
  char off[300], bad[400] = "";
  int cached = mlk_cubin_cache_path(key, path, CACHE_PATH_BYTES, off, sizeof off);
  if (cached) {
    void *image;
    size_t bytes;
    char why[300];
    if (mlk_cubin_cache_read(path, key, &image, &bytes, why, sizeof why)) {
      CUresult r = cu.cuModuleLoadData(&gm->module, image);
      free(image);
      if (r == CUDA_SUCCESS) {
        m->cache_hit = 1;
        snprintf(m->load_note, sizeof m->load_note, "cache hit: %s", path);
        goto done;
      }
      gm->module = NULL;
      if (r == CUDA_ERROR_OUT_OF_MEMORY) { /* compiling would not help, and the file is fine */
        st = CU_FAIL(r, "cuModuleLoadData(%zu-byte cached cubin '%s' of model '%s')", bytes, path, d->name);
        goto done;
      }
      /* Stale or damaged in a way the checksum cannot see: remove it, compile and write again. */
      char what[256];
      describe(r, what, sizeof what);
      snprintf(bad, sizeof bad, "the driver refused the cache file (cuModuleLoadData: %s), it was removed",
               what);
      mlk_cubin_cache_remove(path);
    } else if (*why) {
      snprintf(bad, sizeof bad, "the cache file was unusable (%s)", why);
    }
    snprintf(m->load_note, sizeof m->load_note, "compiled");
  } else {
    snprintf(m->load_note, sizeof m->load_note, "compiled, %s", off);
  }
  if ((st = compile_module(m, gm, ptx, arch, cached ? path : NULL, key)) == MLK_OK && *bad)
    add_note(m, bad);
done:
  if (st == MLK_OK && *refused)
    add_note(m, refused);
  m->load_ms = mlk_now_ms() - t0;
  if (st == MLK_OK)
    mlk_debug("model '%s': module load %.1f ms (%s)", d->name, m->load_ms, m->load_note);
  free(path);
  return st;
}

/* The tiles' launch-time knobs (mlk_desc.h MlkDevTune), from MLK_POLL_BACKOFF_NS,
 * MLK_STREAM_L2_AHEAD, MLK_MMA_STAGE_RING and MLK_MATVEC_SPLIT_CAP (unset: the defaults),
 * written into the loaded module's constant. A module
 * without it (PTX not from mlkc, such as the tests' hand-written kernels) has nothing to tune. */
static mlk_status write_tune(const mlk_model *m, GpuModel *gm) {
  MlkDevTune t = MLK_DEV_TUNE_DEFAULTS;
  int64_t backoff, ahead, ring, cap;
  mlk_status st;
  if ((st = mlk_env_int("MLK_POLL_BACKOFF_NS", 0, MLK_DEV_TUNE_MAX_BACKOFF_NS, t.poll_backoff_ns,
                        &backoff)) ||
      (st = mlk_env_int("MLK_STREAM_L2_AHEAD", 0, MLK_DEV_TUNE_MAX_L2_AHEAD, t.stream_l2_ahead, &ahead)) ||
      (st = mlk_env_int("MLK_MMA_STAGE_RING", 0, 1, t.mma_stage_ring, &ring)) ||
      (st = mlk_env_int("MLK_MATVEC_SPLIT_CAP", 0, MLK_MATVEC_MAX_SPLIT, t.matvec_split_cap, &cap)))
    return st;
  t.poll_backoff_ns = (uint32_t)backoff, t.stream_l2_ahead = (uint32_t)ahead;
  t.mma_stage_ring = (uint32_t)ring, t.matvec_split_cap = (uint32_t)cap;
  CUdeviceptr p;
  size_t bytes;
  CUresult r = cu.cuModuleGetGlobal(&p, &bytes, gm->module, MLK_DEV_TUNE_SYMBOL);
  if (r == CUDA_ERROR_NOT_FOUND)
    return MLK_OK;
  if (r != CUDA_SUCCESS)
    return CU_FAIL(r, "cuModuleGetGlobal('%s' of model '%s')", MLK_DEV_TUNE_SYMBOL, m->desc->name);
  if (bytes != sizeof t)
    return mlk_set_error(MLK_ERR_INVALID, "model '%s': its module's '%s' has %zu bytes, this libmlkrt's "
                         "MlkDevTune %zu (rebuild the model with this mlkc)", m->desc->name,
                         MLK_DEV_TUNE_SYMBOL, bytes, sizeof t);
  if ((r = cu.cuMemcpyHtoD(p, &t, sizeof t)) != CUDA_SUCCESS)
    return CU_FAIL(r, "cuMemcpyHtoD('%s' of model '%s')", MLK_DEV_TUNE_SYMBOL, m->desc->name);
  return MLK_OK;
}

/* The queue array of a kernel (mlk_desc.h): the task words, the pad, and each queue's weight-stream
 * list (MLK_STREAM_ENTRY_WORDS words per matvec task, then a zero entry); the queue offsets
 * extended by the lists' (2 * nqueues + 2 words). recs: the op records, with device addresses. */
static mlk_status queue_array(const MlkModelDesc *d, int k, const MlkDevOp *recs, const uint32_t *qoff,
                              const MlkTaskWord *words, int nqueues, uint64_t **array, size_t *nwords,
                              uint32_t **offsets) {
  const MlkKernelDesc *kd = &d->kernels[k];
  size_t ntasks = qoff[nqueues], entries = 0;
  for (size_t i = 0; i < ntasks; i++)
    entries += d->ops[kd->first_op + (int)MLK_TASK_OP(words[i])].kind == MLK_OP_MATVEC;
  size_t n = ntasks + MLK_QUEUE_PAD + (entries + (size_t)nqueues) * MLK_STREAM_ENTRY_WORDS;
  if (n > UINT32_MAX)
    return mlk_set_error(MLK_ERR_INVALID, "megakernel '%s': its queues and stream lists take %zu words, "
                         "more than u32 offsets reach", kd->name, n);
  uint64_t *a = MLK_CALLOC(n, sizeof *a, "task queues");
  uint32_t *off = a ? MLK_CALLOC(2 * (size_t)nqueues + 2, sizeof *off, "queue offsets") : NULL;
  if (!off) {
    free(a);
    return MLK_ERR_NOMEM;
  }
  memcpy(a, words, ntasks * sizeof *words);
  memcpy(off, qoff, ((size_t)nqueues + 1) * sizeof *off);
  size_t w = ntasks + MLK_QUEUE_PAD;
  for (int q = 0; q < nqueues; q++) {
    off[nqueues + 1 + q] = (uint32_t)w;
    for (uint32_t i = qoff[q]; i < qoff[q + 1]; i++) {
      const MlkDevOp *op = &recs[MLK_TASK_OP(words[i])];
      if (op->kind != MLK_OP_MATVEC)
        continue;
      int64_t t = MLK_TASK_INDEX(words[i]);
      a[w++] = op->in[1] + (uint64_t)(mlk_task_first_col(op, t) * op->k) * 2; /* bf16 rows */
      a[w++] = MLK_STREAM_ENTRY(mlk_task_cols(op, t), op->k, op->batched != 0);
    }
    w += MLK_STREAM_ENTRY_WORDS; /* the zero entry */
  }
  off[2 * nqueues + 1] = (uint32_t)w;
  *array = a;
  *nwords = n;
  *offsets = off;
  return MLK_OK;
}

static mlk_status gpu_model_init(mlk_model *m) {
  const GpuBackend *gb = m->be->impl;
  const MlkModelDesc *d = m->desc;
  mlk_status st = use_context(m->be);
  if (st)
    return st;
  GpuModel *gm = MLK_CALLOC(1, sizeof *gm, "GPU model");
  if (!gm)
    return MLK_ERR_NOMEM;
  m->impl = gm;
  st = MLK_ERR_NOMEM;
  size_t rt_bytes = (size_t)MLK_RT_COUNT(d->ncaches) * sizeof(int64_t);
  if (!(gm->bufs = MLK_CALLOC((size_t)d->ntensors, sizeof *gm->bufs, "tensor table")) ||
      !(gm->kernels = MLK_CALLOC((size_t)d->nkernels, sizeof *gm->kernels, "kernel table")) ||
      !(gm->rt_sent = MLK_CALLOC(rt_bytes, 1, "run-time values")))
    goto fail;
  size_t arena_bytes = 0, largest = 0;
  for (int i = 0; i < d->ntensors; i++) {
    arena_bytes = (arena_bytes + GPU_ARENA_ALIGN - 1) / GPU_ARENA_ALIGN * GPU_ARENA_ALIGN;
    gm->bufs[i] = (CUdeviceptr)arena_bytes; /* an offset until the arena exists */
    arena_bytes += m->cap[i];
    if (m->cap[i] > m->cap[largest])
      largest = (size_t)i;
  }
  {
    char what[300];
    snprintf(what, sizeof what, "the %d tensors of model '%s' (the largest: '%s', %zu bytes)",
             d->ntensors, d->name, d->ntensors ? d->tensors[largest].name : "-",
             d->ntensors ? m->cap[largest] : 0);
    if ((st = alloc_zeroed(&gm->arena, arena_bytes ? arena_bytes : 1, what)))
      goto fail;
  }
  for (int i = 0; i < d->ntensors; i++)
    gm->bufs[i] += gm->arena;
  /* the event counters, the kernels' tickets, then the split ops' arrival counters */
  int64_t scratch_bytes = mlk_program_scratch_bytes(d);
  if ((st = alloc_zeroed(&gm->counters, (size_t)(gpu_counter_words(d) + 1) * sizeof(uint32_t),
                         "the event counters")) ||
      (scratch_bytes && (st = alloc_zeroed(&gm->scratch, (size_t)scratch_bytes,
                                           "the split ops' partial sums"))) ||
      (st = alloc_zeroed(&gm->err, sizeof(MlkDevError), "the error record")) ||
      (st = upload_array(&gm->rt, m->rt, rt_bytes, "the run-time values")))
    goto fail;
  memcpy(gm->rt_sent, m->rt, rt_bytes);
  if (d->nkernels > 0 && ((st = load_module(m, gm)) || (st = write_tune(m, gm))))
    goto fail;
  for (int k = 0; k < d->nkernels; k++) {
    const MlkKernelDesc *kd = &d->kernels[k];
    GpuKernel *gk = &gm->kernels[k];
    CUresult r = cu.cuModuleGetFunction(&gk->f, gm->module, kd->entry);
    if (r != CUDA_SUCCESS) {
      st = CU_FAIL(r, "cuModuleGetFunction('%s' for megakernel '%s')", kd->entry, kd->name);
      goto fail;
    }
    if (gm->dyn_smem &&
        (r = cu.cuFuncSetAttribute(gk->f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                   (int)gm->dyn_smem)) != CUDA_SUCCESS) {
      st = CU_FAIL(r, "cuFuncSetAttribute(megakernel '%s', %u bytes of dynamic shared memory for "
                   "the weight stream)", kd->name, gm->dyn_smem);
      goto fail;
    }
    int blocks = 0;
    r = cu.cuOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, gk->f, MLK_BLOCK_THREADS, gm->dyn_smem);
    if (r != CUDA_SUCCESS) {
      st = CU_FAIL(r, "cuOccupancyMaxActiveBlocksPerMultiprocessor(megakernel '%s')", kd->name);
      goto fail;
    }
    if (blocks < 1) {
      st = mlk_set_error(MLK_ERR_CUDA, "megakernel '%s' cannot run on GPU %d: not one block of %d threads "
                         "fits on an SM (too many registers or too much shared memory)",
                         kd->name, gb->ordinal, MLK_BLOCK_THREADS);
      goto fail;
    }
    /* The dynamic schedule takes one queue, in topological order: the op-by-op order that
     * sched.c gives a single queue. */
    int nqueues = kd->schedule == MLK_SCHED_DYNAMIC ? 1 : gb->sms;
    uint32_t *qoff;
    MlkTaskWord *words;
    int64_t ntasks;
    if ((st = mlk_sched_build(d, k, nqueues, &qoff, &words, &ntasks)))
      goto fail;
    gk->ntasks = ntasks;
    char what[160];
    /* the op records, with every operand's device address */
    size_t nsyncs = (size_t)mlk_program_nsyncs(d, k);
    MlkDevOp *recs = MLK_CALLOC((size_t)kd->nops, sizeof *recs, "op records");
    MlkDevSync *syncs = MLK_CALLOC(nsyncs ? nsyncs : 1, sizeof *syncs, "op waits and notifies");
    uint64_t *addr = MLK_CALLOC((size_t)(d->ntensors ? d->ntensors : 1), sizeof *addr, "tensor addresses");
    if (!recs || !syncs || !addr) {
      free(recs);
      free(syncs);
      free(addr);
      free(qoff);
      free(words);
      st = MLK_ERR_NOMEM;
      goto fail;
    }
    for (int t = 0; t < d->ntensors; t++)
      addr[t] = (uint64_t)gm->bufs[t];
    mlk_program_kernel(d, k, addr, 0, gpu_arrive_addr(m), (uint64_t)gm->scratch, recs, syncs);
    free(addr);
    snprintf(what, sizeof what, "the op records of '%s'", kd->name);
    st = upload_array(&gk->ops, recs, (size_t)kd->nops * sizeof *recs, what);
    snprintf(what, sizeof what, "the waits and notifies of '%s'", kd->name);
    if (!st)
      st = upload_array(&gk->syncs, syncs, (nsyncs ? nsyncs : 1) * sizeof *syncs, what);
    free(syncs);
    if (st) {
      free(recs);
      free(qoff);
      free(words);
      goto fail;
    }
    uint64_t *array = NULL;
    uint32_t *offsets = NULL;
    size_t nwords = 0;
    st = queue_array(d, k, recs, qoff, words, nqueues, &array, &nwords, &offsets);
    free(recs);
    free(qoff);
    free(words);
    snprintf(what, sizeof what, "the queue offsets of '%s'", kd->name);
    if (!st)
      st = upload_array(&gk->qoff, offsets, (2 * (size_t)nqueues + 2) * sizeof *offsets, what);
    snprintf(what, sizeof what, "the task queues and weight-stream lists of '%s'", kd->name);
    if (!st)
      st = upload_array(&gk->queue, array, nwords * sizeof *array, what);
    free(array);
    free(offsets);
    if (st)
      goto fail;
  }
  return MLK_OK;
fail:
  gpu_model_fini(m);
  return st;
}

static mlk_status gpu_upload(mlk_model *m, int tensor, const void *src, size_t bytes) {
  mlk_status st = use_context(m->be);
  if (st)
    return st;
  GpuModel *gm = m->impl;
  CUresult r = cu.cuMemcpyHtoD(gm->bufs[tensor], src, bytes);
  return r == CUDA_SUCCESS ? MLK_OK
                           : CU_FAIL(r, "cuMemcpyHtoD(%zu bytes to '%s')", bytes, m->desc->tensors[tensor].name);
}

static mlk_status gpu_upload_range(mlk_model *m, int tensor, size_t offset, const void *src,
                                   size_t bytes) {
  mlk_status st = use_context(m->be);
  if (st)
    return st;
  GpuModel *gm = m->impl;
  CUresult r = cu.cuMemcpyHtoD(gm->bufs[tensor] + offset, src, bytes);
  return r == CUDA_SUCCESS ? MLK_OK
                           : CU_FAIL(r, "cuMemcpyHtoD(%zu bytes to '%s' at byte %zu)", bytes,
                                     m->desc->tensors[tensor].name, offset);
}

static mlk_status gpu_copy_range(mlk_model *m, int tensor, size_t dst, size_t src, size_t bytes) {
  mlk_status st = use_context(m->be);
  if (st)
    return st;
  GpuModel *gm = m->impl;
  CUresult r = cu.cuMemcpyDtoD(gm->bufs[tensor] + dst, gm->bufs[tensor] + src, bytes);
  return r == CUDA_SUCCESS ? MLK_OK
                           : CU_FAIL(r, "cuMemcpyDtoD(%zu bytes of '%s' from byte %zu to %zu)", bytes,
                                     m->desc->tensors[tensor].name, src, dst);
}

static mlk_status gpu_download(mlk_model *m, int tensor, void *dst, size_t bytes) {
  mlk_status st = use_context(m->be);
  if (st)
    return st;
  GpuModel *gm = m->impl;
  CUresult r = cu.cuMemcpyDtoH(dst, gm->bufs[tensor], bytes);
  return r == CUDA_SUCCESS ? MLK_OK
                           : CU_FAIL(r, "cuMemcpyDtoH(%zu bytes from '%s')", bytes, m->desc->tensors[tensor].name);
}

static mlk_status gpu_fill(mlk_model *m, int tensor, uint8_t byte) {
  mlk_status st = use_context(m->be);
  if (st)
    return st;
  GpuModel *gm = m->impl;
  CUresult r = cu.cuMemsetD8(gm->bufs[tensor], byte, m->bytes[tensor]);
  return r == CUDA_SUCCESS ? MLK_OK
                           : CU_FAIL(r, "cuMemsetD8(%zu bytes of '%s')", m->bytes[tensor], m->desc->tensors[tensor].name);
}

static mlk_status gpu_zero_counters(mlk_model *m) {
  mlk_status st = use_context(m->be);
  if (st)
    return st;
  GpuModel *gm = m->impl;
  /* the event counters, the kernels' tickets and the arrival counters */
  size_t bytes = (size_t)gpu_counter_words(m->desc) * sizeof(uint32_t);
  CUresult r = bytes ? cu.cuMemsetD8(gm->counters, 0, bytes) : CUDA_SUCCESS;
  return r == CUDA_SUCCESS ? MLK_OK : CU_FAIL(r, "cuMemsetD8(%zu bytes of the event counters)", bytes);
}

static mlk_status gpu_run(mlk_model *m, int kernel, uint32_t epoch, uint64_t timeout_ns,
                          MlkDevError *err, double *ms, uint64_t *trace) {
  mlk_status st = use_context(m->be);
  if (st)
    return st;
  const GpuBackend *gb = m->be->impl;
  GpuModel *gm = m->impl;
  GpuKernel *gk = &gm->kernels[kernel];
  const char *name = m->desc->kernels[kernel].name;
  CUresult r;
  /* The run-time values change with mlk_model_set_batch: written before a launch that needs them. */
  size_t rt_bytes = (size_t)MLK_RT_COUNT(m->desc->ncaches) * sizeof(int64_t);
  if (memcmp(gm->rt_sent, m->rt, rt_bytes)) {
    if ((r = cu.cuMemcpyHtoD(gm->rt, m->rt, rt_bytes)) != CUDA_SUCCESS)
      return CU_FAIL(r, "cuMemcpyHtoD(%zu bytes to the run-time values of megakernel '%s')", rt_bytes,
                     name);
    memcpy(gm->rt_sent, m->rt, rt_bytes);
  }
  size_t trace_bytes = (size_t)(gk->ntasks ? gk->ntasks : 1) * MLK_TRACE_WORDS * sizeof(uint64_t);
  if (trace && !gk->trace) {
    char what[200];
    snprintf(what, sizeof what, "the trace records of megakernel '%s'", name);
    if ((st = alloc_zeroed(&gk->trace, trace_bytes, what)))
      return st;
  }
  if (trace && (r = cu.cuMemsetD8(gk->trace, 0, trace_bytes)) != CUDA_SUCCESS)
    return CU_FAIL(r, "cuMemsetD8(%zu bytes of the trace records of '%s')", trace_bytes, name);
  /* The kernel signature every generated megakernel has (mlk_desc.h):
   * (const MlkDevOp *ops, const MlkDevSync *syncs, u32 *counters, const u32 *qoff,
   *  const u64 *queue, u32 epoch, u64 timeout_ns, MlkDevError *err, const i64 *rt, u64 *trace) */
  CUdeviceptr ops = gk->ops, syncs = gk->syncs, counters = gm->counters, qoff = gk->qoff,
              queue = gk->queue, errp = gm->err, rtp = gm->rt, tracep = trace ? gk->trace : 0;
  uint32_t ep = epoch;
  uint64_t tmo = timeout_ns;
  void *args[] = {&ops, &syncs, &counters, &qoff, &queue, &ep, &tmo, &errp, &rtp, &tracep};
  if (ms && !gm->ev_start) {
    if ((r = cu.cuEventCreate(&gm->ev_start, CU_EVENT_DEFAULT)) != CUDA_SUCCESS ||
        (r = cu.cuEventCreate(&gm->ev_stop, CU_EVENT_DEFAULT)) != CUDA_SUCCESS)
      return CU_FAIL(r, "cuEventCreate(timing of megakernel '%s')", name);
  }
  if (ms && (r = cu.cuEventRecord(gm->ev_start, NULL)) != CUDA_SUCCESS)
    return CU_FAIL(r, "cuEventRecord(before megakernel '%s')", name);
  r = cu.cuLaunchCooperativeKernel(gk->f, (unsigned)gb->sms, 1, 1, MLK_BLOCK_THREADS, 1, 1,
                                   gm->dyn_smem, NULL, args);
  if (r != CUDA_SUCCESS)
    return CU_FAIL(r, "cuLaunchCooperativeKernel(megakernel '%s', %d blocks of %d threads)", name,
                   gb->sms, MLK_BLOCK_THREADS);
  if (ms && (r = cu.cuEventRecord(gm->ev_stop, NULL)) != CUDA_SUCCESS)
    return CU_FAIL(r, "cuEventRecord(after megakernel '%s')", name);
  if ((r = cu.cuCtxSynchronize()) != CUDA_SUCCESS)
    return CU_FAIL(r, "cuCtxSynchronize(after megakernel '%s')", name);
  if (ms) {
    float f = 0;
    if ((r = cu.cuEventElapsedTime(&f, gm->ev_start, gm->ev_stop)) != CUDA_SUCCESS)
      return CU_FAIL(r, "cuEventElapsedTime(megakernel '%s')", name);
    *ms = f;
  }
  if ((r = cu.cuMemcpyDtoH(err, gm->err, sizeof *err)) != CUDA_SUCCESS)
    return CU_FAIL(r, "cuMemcpyDtoH(the error record of megakernel '%s')", name);
  if (trace && (r = cu.cuMemcpyDtoH(trace, gk->trace, trace_bytes)) != CUDA_SUCCESS)
    return CU_FAIL(r, "cuMemcpyDtoH(%zu bytes of the trace records of '%s')", trace_bytes, name);
  if (err->flag && (r = cu.cuMemsetD8(gm->err, 0, sizeof *err)) != CUDA_SUCCESS)
    return CU_FAIL(r, "cuMemsetD8(the error record of megakernel '%s')", name);
  return MLK_OK;
}

static uint64_t gpu_tensor_addr(mlk_model *m, int tensor) {
  return (uint64_t)((GpuModel *)m->impl)->bufs[tensor];
}

mlk_status mlk_gpu_enable_peer(mlk_backend *from, mlk_backend *to) {
  const GpuBackend *a = from->impl, *b = to->impl;
  if (a->dev == b->dev)
    return MLK_OK;
  int can = 0;
  CUresult r = cu.cuDeviceCanAccessPeer(&can, a->dev, b->dev);
  if (r != CUDA_SUCCESS)
    return CU_FAIL(r, "cuDeviceCanAccessPeer(GPU %d, GPU %d)", a->ordinal, b->ordinal);
  if (!can)
    return mlk_set_error(MLK_ERR_INVALID, "GPU %d cannot access GPU %d's memory (no peer access): "
                         "the in-kernel allreduce needs it; compile with --collectives=cut",
                         a->ordinal, b->ordinal);
  mlk_status st = use_context(from);
  if (st)
    return st;
  r = cu.cuCtxEnablePeerAccess(b->ctx, 0);
  if (r != CUDA_SUCCESS && r != CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED)
    return CU_FAIL(r, "cuCtxEnablePeerAccess(GPU %d to GPU %d)", a->ordinal, b->ordinal);
  return MLK_OK;
}

static uint64_t gpu_counters_addr(mlk_model *m) { return (uint64_t)((GpuModel *)m->impl)->counters; }

/* The peer area in device memory, and every kernel's op records and syncs rebuilt and uploaded
 * again to point into it. The other ranks' addresses in it are their devices' (unified
 * addressing): the world enabled peer access between the contexts first. */
static mlk_status gpu_set_peers(mlk_model *m, const uint64_t *words, size_t n) {
  mlk_status st = use_context(m->be);
  if (st)
    return st;
  GpuModel *gm = m->impl;
  const MlkModelDesc *d = m->desc;
  free_ptr(&gm->peers);
  if ((st = upload_array(&gm->peers, words, (n ? n : 1) * sizeof *words, "the peer area")))
    return st;
  uint64_t *addr = MLK_CALLOC((size_t)(d->ntensors ? d->ntensors : 1), sizeof *addr, "tensor addresses");
  if (!addr)
    return MLK_ERR_NOMEM;
  for (int t = 0; t < d->ntensors; t++)
    addr[t] = (uint64_t)gm->bufs[t];
  for (int k = 0; k < d->nkernels && !st; k++) {
    const MlkKernelDesc *kd = &d->kernels[k];
    size_t nsyncs = (size_t)mlk_program_nsyncs(d, k);
    MlkDevOp *recs = MLK_CALLOC((size_t)kd->nops, sizeof *recs, "op records");
    MlkDevSync *syncs = MLK_CALLOC(nsyncs ? nsyncs : 1, sizeof *syncs, "op waits and notifies");
    if (!recs || !syncs) {
      st = MLK_ERR_NOMEM;
    } else {
      mlk_program_kernel(d, k, addr, (uint64_t)gm->peers, gpu_arrive_addr(m), (uint64_t)gm->scratch,
                         recs, syncs);
      CUresult r = cu.cuMemcpyHtoD(gm->kernels[k].ops, recs, (size_t)kd->nops * sizeof *recs);
      if (r == CUDA_SUCCESS && nsyncs)
        r = cu.cuMemcpyHtoD(gm->kernels[k].syncs, syncs, nsyncs * sizeof *syncs);
      if (r != CUDA_SUCCESS)
        st = CU_FAIL(r, "cuMemcpyHtoD(the op records of '%s' with the peer area)", kd->name);
    }
    free(recs);
    free(syncs);
  }
  free(addr);
  return st;
}

static void gpu_backend_free(mlk_backend *be) {
  GpuBackend *gb = be->impl;
  if (gb && gb->ctx)
    (void)cu.cuDevicePrimaryCtxRelease(gb->dev);
  free(gb);
}

static const MlkBackendOps gpu_ops = {
    .backend_free = gpu_backend_free,
    .model_init = gpu_model_init,
    .model_fini = gpu_model_fini,
    .upload = gpu_upload,
    .upload_range = gpu_upload_range,
    .copy_range = gpu_copy_range,
    .download = gpu_download,
    .fill = gpu_fill,
    .zero_counters = gpu_zero_counters,
    .run = gpu_run,
    .tensor_addr = gpu_tensor_addr,
    .counters_addr = gpu_counters_addr,
    .set_peers = gpu_set_peers,
};

/* Everything that makes the GPU unusable is reported as MLK_ERR_NO_GPU "no GPU: ...", so that
 * MLK_BACKEND_AUTO can fall back and keep the reason as its note. */
static mlk_status no_gpu(mlk_status st) {
  if (st == MLK_ERR_NOMEM)
    return st;
  if (strncmp(mlk_last_error(), "no GPU: ", 8))
    mlk_prefix_error(st, "no GPU: ");
  return MLK_ERR_NO_GPU;
}

int mlk_gpu_count(void) {
  pthread_once(&load_once, load_driver);
  int count = 0;
  if (load_status || cu.cuDeviceGetCount(&count) != CUDA_SUCCESS)
    return 0;
  return count;
}

mlk_status mlk_gpu_backend_create(int device, mlk_backend **out) {
  *out = NULL;
  pthread_once(&load_once, load_driver);
  if (load_status)
    return mlk_set_error(load_status, "%s", load_msg);
  GpuBackend *gb = MLK_CALLOC(1, sizeof *gb, "GPU backend");
  if (!gb)
    return MLK_ERR_NOMEM;
  gb->ordinal = device;
  mlk_status st;
  int count = 0;
  char *name = gb->name;
  CUresult r = cu.cuDeviceGetCount(&count);
  if (r != CUDA_SUCCESS) {
    st = no_gpu(CU_FAIL(r, "cuDeviceGetCount"));
    goto fail;
  }
  if (count < 1 || device < 0 || device >= count) {
    st = mlk_set_error(MLK_ERR_NO_GPU, "no GPU: the CUDA driver reports %d devices, device %d was asked for",
                       count, device);
    goto fail;
  }
  int coop = 0;
  if ((r = cu.cuDeviceGet(&gb->dev, device)) ||
      (r = cu.cuDeviceGetName(name, (int)sizeof gb->name, gb->dev)) ||
      (r = cu.cuDeviceGetAttribute(&gb->cc_major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, gb->dev)) ||
      (r = cu.cuDeviceGetAttribute(&gb->cc_minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, gb->dev)) ||
      (r = cu.cuDeviceGetAttribute(&gb->sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, gb->dev)) ||
      (r = cu.cuDeviceGetAttribute(&coop, CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH, gb->dev)) ||
      (r = cu.cuDriverGetVersion(&gb->driver_version))) {
    st = no_gpu(CU_FAIL(r, "querying GPU %d (cuDeviceGet/cuDeviceGetName/cuDeviceGetAttribute/"
                        "cuDriverGetVersion)", device));
    goto fail;
  }
  if (gb->cc_major < 8) {
    st = mlk_set_error(MLK_ERR_NO_GPU, "no GPU: GPU %d (%s) is sm_%d%d, megakernels need sm_80 or newer",
                       device, name, gb->cc_major, gb->cc_minor);
    goto fail;
  }
  if (!coop || gb->sms < 1) {
    st = mlk_set_error(MLK_ERR_NO_GPU, "no GPU: GPU %d (%s) does not support cooperative launches", device,
                       name);
    goto fail;
  }
  if ((r = cu.cuDevicePrimaryCtxRetain(&gb->ctx, gb->dev)) != CUDA_SUCCESS) {
    gb->ctx = NULL;
    st = no_gpu(CU_FAIL(r, "cuDevicePrimaryCtxRetain(GPU %d)", device));
    goto fail;
  }
  if ((r = cu.cuCtxSetCurrent(gb->ctx)) != CUDA_SUCCESS) {
    st = no_gpu(CU_FAIL(r, "cuCtxSetCurrent(GPU %d)", device));
    (void)cu.cuDevicePrimaryCtxRelease(gb->dev);
    goto fail;
  }
  mlk_backend *be = MLK_CALLOC(1, sizeof *be, "backend");
  if (!be) {
    (void)cu.cuDevicePrimaryCtxRelease(gb->dev);
    st = MLK_ERR_NOMEM;
    goto fail;
  }
  be->ops = &gpu_ops;
  be->is_gpu = 1;
  be->device = device;
  be->ptx_arch = best_ptx_arch(gb->cc_major, gb->cc_minor);
  be->impl = gb;
  snprintf(be->name, sizeof be->name, "GPU %d: %s (sm_%d%d, %d SMs)", device, name, gb->cc_major,
           gb->cc_minor, gb->sms);
  *out = be;
  return MLK_OK;
fail:
  free(gb);
  return st;
}

#else /* !MLK_HAVE_CUDA */

int mlk_gpu_count(void) { return 0; }

mlk_status mlk_gpu_enable_peer(mlk_backend *from, mlk_backend *to) {
  (void)from, (void)to;
  return mlk_set_error(MLK_ERR_NO_GPU, "no GPU: libmlkrt was built without the CUDA toolkit");
}

mlk_status mlk_gpu_backend_create(int device, mlk_backend **out) {
  (void)device;
  *out = NULL;
  return mlk_set_error(MLK_ERR_NO_GPU,
                       "no GPU: libmlkrt was built without the CUDA toolkit (cuda.h was not found)");
}

#endif /* MLK_HAVE_CUDA */
