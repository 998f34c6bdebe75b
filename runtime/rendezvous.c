/* rendezvous.c: where the ranks of a world in separate processes of one host meet: a shared file.
 *
 * A world whose ranks are processes (launched by mpirun, or by hand with MLK_WORLD_SIZE and
 * MLK_RANK) maps one file, MLK_RENDEZVOUS, into every process. Rank 0 makes it fresh (written
 * under a temporary name, renamed into place, so that no rank sees it half made, and marked open;
 * a file an earlier world left is marked closed, or full when that world died, and ignored) and
 * every rank joins it. It holds:
 *   - a barrier: each rank counts the barriers it reached; a rank waits until every rank's count
 *     reaches its own, so nothing is reset between barriers;
 *   - the failure of a rank: the first rank that fails writes its rank and message, and every rank
 *     waiting in a barrier, or arriving at one, fails with that message instead of waiting;
 *   - two sets of per-rank slots for the rows of a collective (world.c alternates them, so that a
 *     rank may write the next collective's rows while another still reads this one's);
 *   - a small blob that rank 0 publishes to the others (the NCCL unique id).
 * A rank that stops without a word (killed) is found by the others' deadline: the barrier names
 * the ranks that did not arrive. Atomics on the mapping are lock-free on every target this builds
 * for, so they work across processes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define RDV_MAGIC 0x6d6c6b7264763031ull /* "mlkrdv01" */
#define RDV_HEADER 4096                 /* the header, then the slots */
#define RDV_MAX_RANKS 256
enum { RDV_OPEN = 1, RDV_CLOSED = 2 };

typedef struct RdvHeader {
  uint64_t magic;
  uint32_t nranks, pad;
  uint64_t slot_floats;
  _Atomic uint32_t state;
  _Atomic uint32_t joined;
  _Atomic uint32_t failed;     /* 0, or the first failing rank + 1 */
  _Atomic uint32_t blob_ready;
  char why[1024];              /* the failing rank's message */
  uint8_t blob[MLK_RDV_BLOB];
  _Atomic uint64_t reached[RDV_MAX_RANKS]; /* barriers each rank reached */
} RdvHeader;
_Static_assert(sizeof(RdvHeader) <= RDV_HEADER, "the rendezvous header outgrew its page");

struct MlkRdv {
  RdvHeader *h;
  size_t bytes;
  int rank, n;
  uint64_t barriers;           /* this rank's */
  int64_t timeout_ms;
  char path[1024];
};

static void sleep_us(long us) {
  struct timespec ts = {0, us * 1000};
  nanosleep(&ts, NULL);
}

static size_t rdv_bytes(int n, size_t slot_floats) {
  return RDV_HEADER + 2 * (size_t)n * slot_floats * sizeof(float);
}

/* Rank 0: a fresh file at path, open, with this world's geometry. */
static mlk_status create_file(MlkRdv *r, size_t slot_floats) {
  char tmp[1100];
  snprintf(tmp, sizeof tmp, "%s.%ld.tmp", r->path, (long)getpid());
  int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0)
    return mlk_set_error(MLK_ERR_IO, "world rendezvous '%s': cannot create '%s': %s", r->path, tmp,
                         strerror(errno));
  if (ftruncate(fd, (off_t)r->bytes) != 0) {
    int e = errno;
    close(fd);
    unlink(tmp);
    return mlk_set_error(MLK_ERR_IO, "world rendezvous '%s': cannot size it to %zu bytes: %s",
                         r->path, r->bytes, strerror(e));
  }
  void *p = mmap(NULL, r->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) {
    unlink(tmp);
    return mlk_set_error(MLK_ERR_IO, "world rendezvous '%s': mmap: %s", r->path, strerror(errno));
  }
  r->h = p;
  atomic_store(&r->h->joined, 1); /* rank 0 */
  r->h->magic = RDV_MAGIC;
  r->h->nranks = (uint32_t)r->n;
  r->h->slot_floats = slot_floats;
  atomic_store(&r->h->state, RDV_OPEN);
  if (rename(tmp, r->path) != 0) {
    int e = errno;
    unlink(tmp);
    return mlk_set_error(MLK_ERR_IO, "world rendezvous '%s': cannot rename '%s' into place: %s",
                         r->path, tmp, strerror(e));
  }
  return MLK_OK;
}

/* Other ranks: the open file rank 0 made, once it is there (polled until the deadline). */
static mlk_status join_file(MlkRdv *r, size_t slot_floats) {
  double deadline = mlk_now_ms() + (double)r->timeout_ms;
  for (;;) {
    int fd = open(r->path, O_RDWR);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && (size_t)st.st_size == r->bytes) {
      void *p = mmap(NULL, r->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      close(fd);
      fd = -1;
      if (p != MAP_FAILED) {
        RdvHeader *h = p;
        /* ours: open, of this geometry, and not full already (a file an earlier world left open
         * when it died has every rank joined) */
        if (h->magic == RDV_MAGIC && h->nranks == (uint32_t)r->n &&
            h->slot_floats == slot_floats && atomic_load(&h->state) == RDV_OPEN &&
            atomic_fetch_add(&h->joined, 1) < (uint32_t)r->n) {
          r->h = h;
          return MLK_OK;
        }
        munmap(p, r->bytes); /* an earlier world's, or another geometry: wait for ours */
      }
    }
    if (fd >= 0)
      close(fd);
    if (mlk_now_ms() > deadline)
      return mlk_set_error(MLK_ERR_IO, "world rendezvous '%s': rank %d of %d found no open world "
                           "of %d ranks there within %lld ms (is rank 0 running, with the same "
                           "model and MLK_RENDEZVOUS?)", r->path, r->rank, r->n, r->n,
                           (long long)r->timeout_ms);
    sleep_us(2000);
  }
}

mlk_status mlk_rdv_open(const char *path, int rank, int nranks, size_t slot_floats, MlkRdv **out) {
  *out = NULL;
  if (!path || !*path)
    return mlk_set_error(MLK_ERR_INVALID, "a world of processes needs a rendezvous file "
                         "(MLK_RENDEZVOUS, a path every rank can open)");
  if (nranks < 1 || nranks > RDV_MAX_RANKS || rank < 0 || rank >= nranks)
    return mlk_set_error(MLK_ERR_INVALID, "world rendezvous '%s': rank %d of %d (1..%d ranks)",
                         path, rank, nranks, RDV_MAX_RANKS);
  MlkRdv *r = MLK_CALLOC(1, sizeof *r, "rendezvous");
  if (!r)
    return MLK_ERR_NOMEM;
  r->rank = rank;
  r->n = nranks;
  r->bytes = rdv_bytes(nranks, slot_floats);
  snprintf(r->path, sizeof r->path, "%s", path);
  mlk_status st = mlk_env_int("MLK_WORLD_TIMEOUT_MS", 1, 24 * 3600 * 1000, 300000, &r->timeout_ms);
  if (!st)
    st = rank == 0 ? create_file(r, slot_floats) : join_file(r, slot_floats);
  if (!st)
    st = mlk_rdv_barrier(r, "joining the world");
  if (st) {
    mlk_rdv_close(r);
    return st;
  }
  *out = r;
  return MLK_OK;
}

void mlk_rdv_close(MlkRdv *r) {
  if (!r)
    return;
  if (r->h) {
    if (r->rank == 0) { /* the file stays for a later world to replace; marked, so none joins it */
      atomic_store(&r->h->state, RDV_CLOSED);
      unlink(r->path);
    }
    munmap(r->h, r->bytes);
  }
  free(r);
}

float *mlk_rdv_slot(MlkRdv *r, int parity, int rank) {
  return (float *)((char *)r->h + RDV_HEADER) + ((size_t)parity * r->n + (size_t)rank) * r->h->slot_floats;
}

void mlk_rdv_fail(MlkRdv *r, const char *msg) {
  uint32_t none = 0;
  if (r && r->h && atomic_compare_exchange_strong(&r->h->failed, &none, (uint32_t)r->rank + 1)) {
    snprintf(r->h->why, sizeof r->h->why, "%s", msg);
    atomic_thread_fence(memory_order_release);
  }
}

/* The error of a failed world, as this rank reports it. */
static mlk_status failed_error(MlkRdv *r, uint32_t f, const char *what) {
  atomic_thread_fence(memory_order_acquire);
  if ((int)f - 1 == r->rank)
    return mlk_set_error(MLK_ERR_INVALID, "rank %d of %d failed before %s: %s", r->rank, r->n,
                         what, r->h->why);
  return mlk_set_error(MLK_ERR_INVALID, "rank %d of %d stopped at %s: rank %u failed: %s", r->rank,
                       r->n, what, f - 1, r->h->why);
}

mlk_status mlk_rdv_barrier(MlkRdv *r, const char *what) {
  uint64_t mine = ++r->barriers;
  atomic_store_explicit(&r->h->reached[r->rank], mine, memory_order_release);
  double deadline = mlk_now_ms() + (double)r->timeout_ms;
  for (long spins = 0;; spins++) {
    /* a barrier every rank reached is passed, whatever a rank did after it (so a rank that fails
     * later is met at the next barrier, the same one in every run) */
    int all = 1;
    for (int q = 0; q < r->n && all; q++)
      all = atomic_load_explicit(&r->h->reached[q], memory_order_acquire) >= mine;
    if (all)
      return MLK_OK;
    uint32_t f = atomic_load(&r->h->failed);
    if (f)
      return failed_error(r, f, what);
    if (mlk_now_ms() > deadline) {
      char missing[512] = "";
      size_t len = 0;
      for (int q = 0; q < r->n && len < sizeof missing - 16; q++)
        if (atomic_load(&r->h->reached[q]) < mine)
          len += (size_t)snprintf(missing + len, sizeof missing - len, "%s%d", len ? ", " : "", q);
      mlk_status st = mlk_set_error(MLK_ERR_DEADLOCK, "rank %d of %d waited %lld ms at %s for "
                                    "rank(s) %s, which did not arrive (stopped or stuck; "
                                    "MLK_WORLD_TIMEOUT_MS)", r->rank, r->n,
                                    (long long)r->timeout_ms, what, missing);
      mlk_rdv_fail(r, mlk_last_error());
      return st;
    }
    if (spins > 1000)
      sleep_us(spins > 100000 ? 1000 : 50);
  }
}

mlk_status mlk_rdv_publish(MlkRdv *r, void *blob, size_t n) {
  if (r->rank == 0) {
    memcpy(r->h->blob, blob, n < MLK_RDV_BLOB ? n : MLK_RDV_BLOB);
    atomic_store_explicit(&r->h->blob_ready, 1, memory_order_release);
  }
  mlk_status st = mlk_rdv_barrier(r, "the exchange of the communicator's id");
  if (!st && r->rank != 0) {
    if (!atomic_load_explicit(&r->h->blob_ready, memory_order_acquire))
      return mlk_set_error(MLK_ERR_INVALID, "world rendezvous '%s': rank 0 published nothing",
                           r->path);
    memcpy(blob, r->h->blob, n < MLK_RDV_BLOB ? n : MLK_RDV_BLOB);
  }
  return st;
}
