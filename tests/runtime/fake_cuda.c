/* fake_cuda.c: a stand-in libcuda.so.1 so that gpu.c runs on machines without a GPU.
 *
 * The GPU backend loads the driver with dlopen, so a test can put this library first on
 * LD_LIBRARY_PATH and exercise every line of gpu.c: versioned symbol lookup, allocations, the
 * tensor table, queue upload, JIT error logs, launches and the error record. "Device memory" is
 * host memory. A launch emulates the two megakernels of gpu_kernels.c (same model, same
 * protocol, rt[MLK_RT_BATCH] rows) by stepping the blocks round-robin, each as far as its waits
 * allow; when no block can move, it writes the error record the way a timed-out device wait
 * would. It also checks the launch configuration and the kernel parameters (including the
 * run-time values), so a change in their order or types fails.
 *
 * The driver's linker "compiles" PTX to a fake cubin: the PTX text behind the marker
 * "FAKECUBIN\n" (NUL included); cuModuleLoadData takes only such images, so a cubin cache file
 * that reaches it damaged is refused like the real driver refuses a bad image.
 *
 * Knobs for tests: a PTX text containing "SYNTAX ERROR" fails to load (cuModuleLoadDataEx) or to
 * link (cuLinkAddData) with a JIT log; a single allocation of more than 1 GiB fails with
 * CUDA_ERROR_OUT_OF_MEMORY. fake_cuda_stats (found with dlsym) counts the module and linker calls
 * and sets the driver version, cubin refusals and a failing cuLinkCreate.
 */
#include <cuda.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fake_cuda.h"
#include "mlk_desc.h"

#define SMS 4

struct CUctx_st {
  int retained;
};
struct CUfunc_st {
  char entry[64];
  int max_dyn_smem; /* raised by cuFuncSetAttribute, as on the device (default 0 here) */
};
struct CUmod_st {
  char *ptx;
  struct CUfunc_st funcs[8];
  int nfuncs;
};

static struct CUctx_st the_ctx;
static CUcontext current;

/* Read and written by tests through dlsym(handle, "fake_cuda_stats") (fake_cuda.h). */
struct FakeCudaStats fake_cuda_stats = {.driver_version = 12080};

#define FAKE_CUBIN_MAGIC "FAKECUBIN\n"

CUresult cuGetErrorName(CUresult e, const char **s) {
  switch (e) {
  case CUDA_SUCCESS: *s = "CUDA_SUCCESS"; return CUDA_SUCCESS;
  case CUDA_ERROR_INVALID_VALUE: *s = "CUDA_ERROR_INVALID_VALUE"; return CUDA_SUCCESS;
  case CUDA_ERROR_OUT_OF_MEMORY: *s = "CUDA_ERROR_OUT_OF_MEMORY"; return CUDA_SUCCESS;
  case CUDA_ERROR_INVALID_PTX: *s = "CUDA_ERROR_INVALID_PTX"; return CUDA_SUCCESS;
  case CUDA_ERROR_NOT_FOUND: *s = "CUDA_ERROR_NOT_FOUND"; return CUDA_SUCCESS;
  case CUDA_ERROR_INVALID_CONTEXT: *s = "CUDA_ERROR_INVALID_CONTEXT"; return CUDA_SUCCESS;
  case CUDA_ERROR_INVALID_IMAGE: *s = "CUDA_ERROR_INVALID_IMAGE"; return CUDA_SUCCESS;
  case CUDA_ERROR_NOT_SUPPORTED: *s = "CUDA_ERROR_NOT_SUPPORTED"; return CUDA_SUCCESS;
  default: *s = NULL; return CUDA_ERROR_INVALID_VALUE;
  }
}

CUresult cuGetErrorString(CUresult e, const char **s) {
  switch (e) {
  case CUDA_SUCCESS: *s = "no error"; return CUDA_SUCCESS;
  case CUDA_ERROR_INVALID_VALUE: *s = "invalid argument"; return CUDA_SUCCESS;
  case CUDA_ERROR_OUT_OF_MEMORY: *s = "out of memory"; return CUDA_SUCCESS;
  case CUDA_ERROR_INVALID_PTX: *s = "a PTX JIT compilation failed"; return CUDA_SUCCESS;
  case CUDA_ERROR_NOT_FOUND: *s = "named symbol not found"; return CUDA_SUCCESS;
  case CUDA_ERROR_INVALID_CONTEXT: *s = "invalid device context"; return CUDA_SUCCESS;
  case CUDA_ERROR_INVALID_IMAGE: *s = "device kernel image is invalid"; return CUDA_SUCCESS;
  case CUDA_ERROR_NOT_SUPPORTED: *s = "operation not supported"; return CUDA_SUCCESS;
  default: *s = NULL; return CUDA_ERROR_INVALID_VALUE;
  }
}

CUresult cuInit(unsigned flags) { return flags ? CUDA_ERROR_INVALID_VALUE : CUDA_SUCCESS; }
CUresult cuDriverGetVersion(int *v) {
  *v = fake_cuda_stats.driver_version;
  return CUDA_SUCCESS;
}
CUresult cuDeviceGetCount(int *n) { *n = 1; return CUDA_SUCCESS; }
CUresult cuDeviceGet(CUdevice *d, int ordinal) {
  *d = ordinal;
  return ordinal == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}
CUresult cuDeviceGetName(char *name, int len, CUdevice d) {
  (void)d;
  snprintf(name, (size_t)len, "Fake GPU");
  return CUDA_SUCCESS;
}
CUresult cuDeviceGetAttribute(int *v, CUdevice_attribute a, CUdevice d) {
  (void)d;
  switch (a) {
  case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: *v = 9; return CUDA_SUCCESS;
  case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: *v = 0; return CUDA_SUCCESS;
  case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: *v = SMS; return CUDA_SUCCESS;
  case CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH: *v = 1; return CUDA_SUCCESS;
  default: return CUDA_ERROR_INVALID_VALUE;
  }
}
CUresult cuDevicePrimaryCtxRetain(CUcontext *c, CUdevice d) {
  (void)d;
  the_ctx.retained++;
  *c = &the_ctx;
  return CUDA_SUCCESS;
}
CUresult cuDevicePrimaryCtxRelease(CUdevice d) {
  (void)d;
  if (the_ctx.retained < 1)
    return CUDA_ERROR_INVALID_CONTEXT;
  the_ctx.retained--;
  return CUDA_SUCCESS;
}
CUresult cuCtxSetCurrent(CUcontext c) {
  current = c;
  return CUDA_SUCCESS;
}
CUresult cuCtxSynchronize(void) { return current ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT; }

static const char syntax_log[] = "ptxas application ptx input, line 3; fatal   : Parsing error near 'SYNTAX'";

/* The error log buffer among JIT options (NULL, 0 when there is none). */
static void find_log(unsigned n, const CUjit_option *opts, void **vals, char **log, size_t *size) {
  *log = NULL;
  *size = 0;
  for (unsigned i = 0; i < n; i++)
    if (opts[i] == CU_JIT_ERROR_LOG_BUFFER)
      *log = vals[i];
    else if (opts[i] == CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES)
      *size = (size_t)(uintptr_t)vals[i];
}

static CUresult new_module(CUmodule *mod, const char *ptx) {
  *mod = calloc(1, sizeof **mod);
  if (!*mod || !((*mod)->ptx = strdup(ptx))) {
    free(*mod);
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  return CUDA_SUCCESS;
}

CUresult cuModuleLoadDataEx(CUmodule *mod, const void *image, unsigned n, CUjit_option *opts, void **vals) {
  fake_cuda_stats.load_data_ex++;
  if (!current)
    return CUDA_ERROR_INVALID_CONTEXT;
  const char *ptx = image;
  if (strstr(ptx, "SYNTAX ERROR")) {
    char *log;
    size_t size;
    find_log(n, opts, vals, &log, &size);
    if (log)
      snprintf(log, size, "%s", syntax_log);
    return CUDA_ERROR_INVALID_PTX;
  }
  return new_module(mod, ptx);
}

/* A cubin: the marker, then the PTX text with its NUL. */
CUresult cuModuleLoadData(CUmodule *mod, const void *image) {
  fake_cuda_stats.load_data++;
  if (!current)
    return CUDA_ERROR_INVALID_CONTEXT;
  if (fake_cuda_stats.reject_cubins > 0) {
    fake_cuda_stats.reject_cubins--;
    return CUDA_ERROR_INVALID_IMAGE;
  }
  if (!image || strncmp(image, FAKE_CUBIN_MAGIC, strlen(FAKE_CUBIN_MAGIC)))
    return CUDA_ERROR_INVALID_IMAGE;
  return new_module(mod, (const char *)image + strlen(FAKE_CUBIN_MAGIC));
}

/* The linker: one PTX input, "compiled" at cuLinkAddData like the real JIT does. */
struct CUlinkState_st {
  char *log;
  size_t log_size;
  char *cubin;
  size_t cubin_size;
};

CUresult cuLinkCreate(unsigned n, CUjit_option *opts, void **vals, CUlinkState *state) {
  fake_cuda_stats.link_create++;
  if (!current)
    return CUDA_ERROR_INVALID_CONTEXT;
  if (fake_cuda_stats.fail_link)
    return CUDA_ERROR_NOT_SUPPORTED;
  struct CUlinkState_st *ls = calloc(1, sizeof *ls);
  if (!ls)
    return CUDA_ERROR_OUT_OF_MEMORY;
  find_log(n, opts, vals, &ls->log, &ls->log_size);
  fake_cuda_stats.link_live++;
  *state = ls;
  return CUDA_SUCCESS;
}
CUresult cuLinkAddData(CUlinkState ls, CUjitInputType type, void *data, size_t size, const char *name,
                       unsigned n, CUjit_option *opts, void **vals) {
  (void)name, (void)opts, (void)vals;
  fake_cuda_stats.link_add++;
  /* PTX must be NUL-terminated, its size counting the NUL; one input per link here. */
  if (!ls || type != CU_JIT_INPUT_PTX || !data || size == 0 || strlen(data) + 1 != size || n || ls->cubin) {
    fprintf(stderr, "fake libcuda: bad cuLinkAddData (type %d, %zu bytes, %u options)\n", (int)type, size, n);
    return CUDA_ERROR_INVALID_VALUE;
  }
  if (strstr(data, "SYNTAX ERROR")) {
    if (ls->log)
      snprintf(ls->log, ls->log_size, "%s", syntax_log);
    return CUDA_ERROR_INVALID_PTX;
  }
  size_t m = strlen(FAKE_CUBIN_MAGIC);
  if (!(ls->cubin = malloc(m + size)))
    return CUDA_ERROR_OUT_OF_MEMORY;
  memcpy(ls->cubin, FAKE_CUBIN_MAGIC, m);
  memcpy(ls->cubin + m, data, size);
  ls->cubin_size = m + size;
  return CUDA_SUCCESS;
}
CUresult cuLinkComplete(CUlinkState ls, void **cubin, size_t *size) {
  fake_cuda_stats.link_complete++;
  if (!ls || !ls->cubin)
    return CUDA_ERROR_INVALID_VALUE;
  *cubin = ls->cubin;
  *size = ls->cubin_size;
  return CUDA_SUCCESS;
}
CUresult cuLinkDestroy(CUlinkState ls) {
  fake_cuda_stats.link_destroy++;
  if (!ls)
    return CUDA_ERROR_INVALID_VALUE;
  fake_cuda_stats.link_live--;
  free(ls->cubin);
  free(ls);
  return CUDA_SUCCESS;
}

CUresult cuModuleUnload(CUmodule mod) {
  fake_cuda_stats.unload++;
  free(mod->ptx);
  free(mod);
  return CUDA_SUCCESS;
}
CUresult cuModuleGetFunction(CUfunction *f, CUmodule mod, const char *name) {
  /* Entries are listed in the fake PTX as "entry NAME;" lines. */
  char key[80];
  snprintf(key, sizeof key, "entry %s;", name);
  if (!strstr(mod->ptx, key))
    return CUDA_ERROR_NOT_FOUND;
  if (mod->nfuncs == 8)
    return CUDA_ERROR_OUT_OF_MEMORY;
  *f = &mod->funcs[mod->nfuncs++];
  snprintf((*f)->entry, sizeof (*f)->entry, "%s", name);
  return CUDA_SUCCESS;
}
/* Globals are listed in the fake PTX as "const NAME;" lines; only the tiles' knobs are known. */
CUresult cuModuleGetGlobal(CUdeviceptr *ptr, size_t *bytes, CUmodule mod, const char *name) {
  char key[80];
  snprintf(key, sizeof key, "const %s;", name);
  if (!strcmp(name, MLK_DEV_TUNE_SYMBOL))
    fake_cuda_stats.tune_lookups++;
  if (!strstr(mod->ptx, key) || strcmp(name, MLK_DEV_TUNE_SYMBOL))
    return CUDA_ERROR_NOT_FOUND;
  *ptr = (CUdeviceptr)(uintptr_t)&fake_cuda_stats.tune;
  *bytes = sizeof fake_cuda_stats.tune;
  return CUDA_SUCCESS;
}
/* An H100-like SM: 227 KiB of shared memory a block may opt in to, beyond what the function's
 * dynamic limit allows only after cuFuncSetAttribute. */
#define FAKE_SMEM_OPTIN (227 * 1024)
CUresult cuFuncSetAttribute(CUfunction f, CUfunction_attribute a, int v) {
  if (a != CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES || v < 0 || v > FAKE_SMEM_OPTIN)
    return CUDA_ERROR_INVALID_VALUE;
  f->max_dyn_smem = v;
  return CUDA_SUCCESS;
}
CUresult cuOccupancyMaxActiveBlocksPerMultiprocessor(int *n, CUfunction f, int block, size_t smem) {
  *n = block == MLK_BLOCK_THREADS && smem <= (size_t)f->max_dyn_smem ? 1 : 0;
  return CUDA_SUCCESS;
}

CUresult cuMemAlloc(CUdeviceptr *p, size_t bytes) {
  if (!current)
    return CUDA_ERROR_INVALID_CONTEXT;
  if (bytes == 0)
    return CUDA_ERROR_INVALID_VALUE;
  if (bytes > ((size_t)1 << 30))
    return CUDA_ERROR_OUT_OF_MEMORY;
  /* Uninitialized like device memory: the runtime must zero what it relies on. */
  void *m = malloc(bytes);
  if (!m)
    return CUDA_ERROR_OUT_OF_MEMORY;
  memset(m, 0xa5, bytes);
  *p = (CUdeviceptr)(uintptr_t)m;
  return CUDA_SUCCESS;
}
CUresult cuMemFree(CUdeviceptr p) {
  free((void *)(uintptr_t)p);
  return CUDA_SUCCESS;
}
CUresult cuMemcpyHtoD(CUdeviceptr dst, const void *src, size_t n) {
  memcpy((void *)(uintptr_t)dst, src, n);
  return CUDA_SUCCESS;
}
CUresult cuMemcpyDtoH(void *dst, CUdeviceptr src, size_t n) {
  memcpy(dst, (const void *)(uintptr_t)src, n);
  return CUDA_SUCCESS;
}
CUresult cuMemcpyDtoD(CUdeviceptr dst, CUdeviceptr src, size_t n) {
  memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, n);
  return CUDA_SUCCESS;
}
CUresult cuMemsetD8(CUdeviceptr dst, unsigned char c, size_t n) {
  memset((void *)(uintptr_t)dst, c, n);
  return CUDA_SUCCESS;
}

/* ---- the emulated megakernels (see gpu_kernels.c) ---- */

enum { N = 1000, TILE0 = 64, TILE1 = 100, BMAX = 3 };

CUresult cuLaunchCooperativeKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                                   unsigned by, unsigned bz, unsigned smem, CUstream stream,
                                   void **params) {
  /* both entries run the model their records describe; dynamic shared memory (an sm_90a launch's
   * weight stream) only up to the function's limit */
  if (!current)
    return CUDA_ERROR_INVALID_CONTEXT;
  if (gx != SMS || gy != 1 || gz != 1 || bx != MLK_BLOCK_THREADS || by != 1 || bz != 1 ||
      (int)smem > f->max_dyn_smem || stream) {
    fprintf(stderr, "fake libcuda: bad launch configuration\n");
    return CUDA_ERROR_INVALID_VALUE;
  }
  /* the entry's parameters (mlk_desc.h) */
  const MlkDevOp *ops = (const MlkDevOp *)(uintptr_t)*(CUdeviceptr *)params[0];
  const MlkDevSync *syncs = (const MlkDevSync *)(uintptr_t)*(CUdeviceptr *)params[1];
  uint32_t *counters = (uint32_t *)(uintptr_t)*(CUdeviceptr *)params[2];
  const uint32_t *qoff = (const uint32_t *)(uintptr_t)*(CUdeviceptr *)params[3];
  const MlkTaskWord *queue = (const MlkTaskWord *)(uintptr_t)*(CUdeviceptr *)params[4];
  uint32_t epoch = *(uint32_t *)params[5];
  uint64_t timeout_ns = *(uint64_t *)params[6];
  MlkDevError *err = (MlkDevError *)(uintptr_t)*(CUdeviceptr *)params[7];
  const int64_t *rt = (const int64_t *)(uintptr_t)*(CUdeviceptr *)params[8];
  int64_t rows = rt ? rt[MLK_RT_BATCH] : 0;
  if (epoch == 0 || timeout_ns < 1000000 || err->flag || rows < 1 || rows > BMAX) {
    fprintf(stderr, "fake libcuda: bad parameters (epoch %u, timeout %llu ns, error flag %u, batch %lld)\n",
            epoch, (unsigned long long)timeout_ns, err->flag, (long long)rows);
    return CUDA_ERROR_INVALID_VALUE;
  }
  /* op 1 waits on, op 0 notifies the one event, as the records' lists say */
  if (ops[1].nwaits != 1 || ops[0].nnotifies != 1 || syncs[ops[1].wait0].event != 0 ||
      memcmp(&syncs[ops[1].wait0], &syncs[ops[0].notify0], sizeof *syncs)) {
    fprintf(stderr, "fake libcuda: bad waits and notifies in the op records\n");
    return CUDA_ERROR_INVALID_VALUE;
  }
  const MlkDevSync e = syncs[ops[1].wait0];
  const float *a = (const float *)(uintptr_t)ops[0].in[0];
  float *u = (float *)(uintptr_t)ops[0].out, *v = (float *)(uintptr_t)ops[1].out;
  uint32_t head[SMS];
  for (int b = 0; b < SMS; b++)
    head[b] = qoff[b];
  for (;;) {
    int progress = 0, left = 0;
    for (int b = 0; b < SMS; b++) {
      for (; head[b] < qoff[b + 1]; head[b]++) {
        MlkTaskWord w = queue[head[b]];
        uint32_t op = MLK_TASK_OP(w), t = MLK_TASK_INDEX(w);
        if (op == 1) {
          int64_t idx = mlk_event_wait_index(&e, t);
          if (!mlk_counter_reached(counters[e.base + idx], epoch * (uint32_t)mlk_event_start_value(&e, idx)))
            break;
          for (int64_t r = 0; r < rows; r++)
            for (uint32_t j = t * TILE1; j < (t + 1) * TILE1 && j < N; j++)
              v[r * N + j] = u[r * N + j] + a[r * N + j];
        } else {
          for (int64_t r = 0; r < rows; r++)
            for (uint32_t j = t * TILE0; j < (t + 1) * TILE0 && j < N; j++)
              u[r * N + j] = a[r * N + j] < 0.0f ? 0.0f : a[r * N + j];
          int64_t lo, hi;
          mlk_event_notify_range(&e, t, &lo, &hi);
          for (int64_t c = lo; c <= hi; c++)
            counters[e.base + c]++;
        }
        progress = 1;
      }
      left += head[b] < qoff[b + 1];
    }
    if (!left)
      return CUDA_SUCCESS;
    if (!progress)
      break;
  }
  /* Stuck: the first blocked block reports, as its wait would after timeout_ns. */
  for (int b = 0; b < SMS; b++)
    if (head[b] < qoff[b + 1]) {
      MlkTaskWord w = queue[head[b]];
      uint32_t t = MLK_TASK_INDEX(w);
      int64_t idx = mlk_event_wait_index(&e, t);
      *err = (MlkDevError){1, (uint32_t)b, MLK_TASK_OP(w), t, 0, (uint32_t)idx,
                           epoch * (uint32_t)mlk_event_start_value(&e, idx), counters[e.base + idx]};
      break;
    }
  return CUDA_SUCCESS;
}

/* Events: the fake records the host clock; elapsed time is what passed between the records. */
static double fake_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}
CUresult cuEventCreate(CUevent *e, unsigned flags) {
  (void)flags;
  double *t = calloc(1, sizeof *t);
  if (!t)
    return CUDA_ERROR_OUT_OF_MEMORY;
  *e = (CUevent)t;
  return current ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT;
}
CUresult cuEventDestroy(CUevent e) {
  free(e);
  return CUDA_SUCCESS;
}
CUresult cuEventRecord(CUevent e, CUstream s) {
  if (!e || s)
    return CUDA_ERROR_INVALID_VALUE;
  *(double *)e = fake_now_ms();
  return CUDA_SUCCESS;
}
CUresult cuEventElapsedTime(float *ms, CUevent a, CUevent b) {
  if (!a || !b)
    return CUDA_ERROR_INVALID_HANDLE;
  *ms = (float)(*(double *)b - *(double *)a);
  return CUDA_SUCCESS;
}

/* Peer access: one fake device, so never needed; the runtime looks both up. */
CUresult cuDeviceCanAccessPeer(int *can, CUdevice a, CUdevice b) {
  (void)a, (void)b;
  *can = 0;
  return CUDA_SUCCESS;
}
CUresult cuCtxEnablePeerAccess(CUcontext peer, unsigned flags) {
  (void)peer, (void)flags;
  return CUDA_ERROR_INVALID_VALUE;
}
