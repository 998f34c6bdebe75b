/* nccl.c: the sums of a world's collectives on GPUs, through NCCL.
 *
 * A world whose ranks are GPUs of one process (a distinct device each) sums its collectives with
 * ncclAllReduce between the segments of a megakernel: a communicator per rank from
 * ncclCommInitAll, one group of one all-reduce per rank, enqueued on each device's default stream,
 * which the megakernels' launches also use, so the next segment starts after the sum without a
 * host synchronization. Like the driver (gpu.c), libnccl.so.2 is loaded at run time: a binary
 * starts without it, and a world without it sums on the host (world.c). NVLink multicast (NVLS)
 * stays off: NCCL_NVLS_ENABLE=0 is set before NCCL reads its environment, unless the environment
 * already sets it.
 */
#include "internal.h"

#if defined(MLK_HAVE_CUDA) && defined(MLK_HAVE_NCCL)

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nccl.h>

#define MLK_NCCL_FUNCS(X)                                                                          \
  X(ncclGetVersion)                                                                                \
  X(ncclGetErrorString)                                                                            \
  X(ncclCommInitAll)                                                                               \
  X(ncclCommInitRank)                                                                              \
  X(ncclGetUniqueId)                                                                               \
  X(ncclCommDestroy)                                                                               \
  X(ncclAllReduce)                                                                                 \
  X(ncclGroupStart)                                                                                \
  X(ncclGroupEnd)

static struct {
#define X(f) __typeof__(&f) f;
  MLK_NCCL_FUNCS(X)
#undef X
} nc;
static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static char load_msg[512];
static int loaded;

static void load(void) {
  const char *lib = getenv("MLK_NCCL_LIB");
  lib = lib && *lib ? lib : "libnccl.so.2";
  /* before NCCL reads its environment: multicast off unless the user chose */
  setenv("NCCL_NVLS_ENABLE", "0", 0);
  void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    snprintf(load_msg, sizeof load_msg, "%s could not be loaded (dlopen: %s)", lib, dlerror());
    return;
  }
#define X(f)                                                                                       \
  if (!(*(void **)&nc.f = dlsym(h, #f))) {                                                         \
    snprintf(load_msg, sizeof load_msg, "%s has no %s", lib, #f);                                  \
    return;                                                                                        \
  }
  MLK_NCCL_FUNCS(X)
#undef X
  loaded = 1;
}

struct MlkNccl {
  int n;
  ncclComm_t *comms;
  char name[64];
};

static mlk_status nccl_fail(ncclResult_t r, const char *call) {
  return mlk_set_error(MLK_ERR_CUDA, "%s failed: %s (ncclResult %d)", call,
                       nc.ncclGetErrorString ? nc.ncclGetErrorString(r) : "?", (int)r);
}

mlk_status mlk_nccl_create(const int *devs, int n, MlkNccl **out) {
  *out = NULL;
  if (n < 1)
    return mlk_set_error(MLK_ERR_INVALID, "NCCL: %d ranks", n);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < i; j++)
      if (devs[i] == devs[j])
        return mlk_set_error(MLK_ERR_INVALID, "NCCL: ranks %d and %d are both on GPU %d (a "
                             "communicator needs a GPU per rank)", j, i, devs[i]);
  pthread_once(&load_once, load);
  if (!loaded)
    return mlk_set_error(MLK_ERR_NO_GPU, "no NCCL: %s", load_msg);
  MlkNccl *c = MLK_CALLOC(1, sizeof *c, "NCCL");
  if (!c)
    return MLK_ERR_NOMEM;
  c->n = n;
  c->comms = MLK_CALLOC((size_t)n, sizeof *c->comms, "NCCL communicators");
  if (!c->comms) {
    free(c);
    return MLK_ERR_NOMEM;
  }
  int v = 0;
  nc.ncclGetVersion(&v);
  snprintf(c->name, sizeof c->name, "NCCL %d.%d.%d", v / 10000, v / 100 % 100, v % 100);
  ncclResult_t r = nc.ncclCommInitAll(c->comms, n, devs);
  if (r != ncclSuccess) {
    free(c->comms);
    free(c);
    return nccl_fail(r, "ncclCommInitAll");
  }
  *out = c;
  return MLK_OK;
}

mlk_status mlk_nccl_create_rank(int rank, int nranks, int dev, MlkRdv *rdv, MlkNccl **out) {
  *out = NULL;
  pthread_once(&load_once, load);
  /* every rank says whether it has NCCL (in its first slot), so that all use it or none: a rank
   * without it must not leave the others waiting in ncclCommInitRank */
  mlk_rdv_slot(rdv, 0, rank)[0] = loaded && dev >= 0 ? 1.0f : 0.0f;
  mlk_status st = mlk_rdv_barrier(rdv, "the choice of the communicator");
  if (st)
    return st;
  for (int q = 0; q < nranks; q++)
    if (mlk_rdv_slot(rdv, 0, q)[0] != 1.0f)
      return mlk_set_error(MLK_ERR_NO_GPU, "rank %d has no NCCL or no GPU%s%s", q,
                           q == rank && dev >= 0 ? ": " : "", q == rank && dev >= 0 ? load_msg : "");
  char ok[MLK_RDV_BLOB] = {0};
  ncclUniqueId id;
  _Static_assert(sizeof id + 1 <= MLK_RDV_BLOB, "ncclUniqueId outgrew the rendezvous blob");
  if (rank == 0) {
    ncclResult_t r = loaded ? nc.ncclGetUniqueId(&id) : ncclSystemError;
    ok[0] = loaded && r == ncclSuccess;
    if (ok[0])
      memcpy(ok + 1, &id, sizeof id);
  }
  if ((st = mlk_rdv_publish(rdv, ok, 1 + sizeof id)))
    return st;
  if (!ok[0])
    return mlk_set_error(MLK_ERR_NO_GPU, "no NCCL: rank 0 could not make a communicator id");
  memcpy(&id, ok + 1, sizeof id);
  MlkNccl *c = MLK_CALLOC(1, sizeof *c, "NCCL");
  if (!c)
    return MLK_ERR_NOMEM;
  c->n = 1;
  if (!(c->comms = MLK_CALLOC(1, sizeof *c->comms, "NCCL communicator"))) {
    free(c);
    return MLK_ERR_NOMEM;
  }
  int v = 0;
  nc.ncclGetVersion(&v);
  snprintf(c->name, sizeof c->name, "NCCL %d.%d.%d", v / 10000, v / 100 % 100, v % 100);
  /* the rank's context (device dev) is current on this thread: NCCL takes its device */
  ncclResult_t r = nc.ncclCommInitRank(&c->comms[0], nranks, id, rank);
  if (r != ncclSuccess) {
    free(c->comms);
    free(c);
    return nccl_fail(r, "ncclCommInitRank");
  }
  *out = c;
  return MLK_OK;
}

void mlk_nccl_free(MlkNccl *c) {
  if (!c)
    return;
  for (int i = 0; i < c->n; i++)
    if (c->comms[i])
      (void)nc.ncclCommDestroy(c->comms[i]);
  free(c->comms);
  free(c);
}

const char *mlk_nccl_name(const MlkNccl *c) { return c ? c->name : ""; }

mlk_status mlk_nccl_allreduce(MlkNccl *c, const uint64_t *send, const uint64_t *recv, size_t count) {
  ncclResult_t r = nc.ncclGroupStart();
  if (r != ncclSuccess)
    return nccl_fail(r, "ncclGroupStart");
  ncclResult_t first = ncclSuccess;
  for (int i = 0; i < c->n; i++) {
    r = nc.ncclAllReduce((const void *)(uintptr_t)send[i], (void *)(uintptr_t)recv[i], count,
                         ncclFloat32, ncclSum, c->comms[i], NULL);
    if (r != ncclSuccess && first == ncclSuccess)
      first = r;
  }
  r = nc.ncclGroupEnd();
  if (first != ncclSuccess)
    return nccl_fail(first, "ncclAllReduce");
  return r == ncclSuccess ? MLK_OK : nccl_fail(r, "ncclGroupEnd");
}

#else /* built without the CUDA toolkit's nccl.h */

struct MlkNccl {
  int unused;
};

mlk_status mlk_nccl_create(const int *devs, int n, MlkNccl **out) {
  (void)devs, (void)n;
  *out = NULL;
  return mlk_set_error(MLK_ERR_NO_GPU, "no NCCL: libmlkrt was built without nccl.h");
}
mlk_status mlk_nccl_create_rank(int rank, int nranks, int dev, MlkRdv *rdv, MlkNccl **out) {
  (void)nranks, (void)dev;
  *out = NULL;
  /* tell the other ranks, which may have NCCL, that this world sums on the host */
  mlk_rdv_slot(rdv, 0, rank)[0] = 0.0f;
  mlk_status st = mlk_rdv_barrier(rdv, "the choice of the communicator");
  return st ? st : mlk_set_error(MLK_ERR_NO_GPU, "no NCCL: libmlkrt was built without nccl.h");
}
void mlk_nccl_free(MlkNccl *c) { (void)c; }
const char *mlk_nccl_name(const MlkNccl *c) {
  (void)c;
  return "";
}
mlk_status mlk_nccl_allreduce(MlkNccl *c, const uint64_t *send, const uint64_t *recv, size_t count) {
  (void)c, (void)send, (void)recv, (void)count;
  return mlk_set_error(MLK_ERR_NO_GPU, "no NCCL: libmlkrt was built without nccl.h");
}

#endif
