/* probe.c: runs the kernels of sync_probe.c (the synchronization steps of an op boundary, timed
 * one by one on the GPU) and prints what each costs, in nanoseconds.
 *
 *   sync_probe [PTX] [--json=FILE] [--quick] [--only=PROBE]
 *
 * PTX defaults to sync_probe.sm_90a.ptx next to the binary. Each probe runs with the rest of the
 * chip idle ("idle"), streaming a 1 GiB buffer with loads ("HBM": at full load, as during a
 * decode step's matvecs), or prefetching it into L2 at HBM's rate ("L2pf": as the weight stream's
 * L2 look-ahead, MLK_STREAM_L2_AHEAD, would while the chain of small ops runs). One
 * block per SM (each asks for 128 KiB of shared memory), launched cooperatively so that every
 * block is resident. Rows (median and 90th percentile over every block and iteration, in ns but
 * for the stream's rates):
 *   handoff   one-way time of a token between two SMs through a counter: the notify of one
 *             block and the poll of the other (round trips / 2), per variant
 *             and a row of 2048 values each way, counted or in flagged words, with the weight
 *             stream's copies in flight or not (handoff_row)
 *   fence     one fence.acq_rel.gpu of thread 0 with 0 to 4 bulk copies of 32 KiB in flight,
 *             issued by thread 0 or by another warp (after a barrier, or only raising a flag);
 *             and the copies' time to land
 *   stream    the weight stream's design alone (bulk copies through 1 to 4 slots of 32 KiB, every
 *             SM at once): the chip's and the median SM's rate, in GB/s; and with every ring
 *             filled by a loader warp of its own block or of its cluster peer on another SM,
 *             with a notify's fence timed meanwhile
 *   stage     a block reading a just-written 8 KiB row from L2 after its wait, to the barrier
 *   frag      a tensor-core matvec task's weight loads alone: its fragment pattern (windows of 4
 *             and 8 blocks), whole rows, the pattern after an L2 prefetch or with an L2 prefetch
 *             size on each load, GB/s
 * --only runs one probe (handoff, handoff_row, fence, fence_loader, fence_pair, fence_cluster,
 * fence_issuer, stream, stream_cross, stage or frag). --json appends one object per row. Needs a
 * GPU of compute capability 9.0 (the bulk copies); a missing GPU or driver is said so, with exit
 * status 77.
 */
#include <cuda.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK_CU(call)                                                                            \
  do {                                                                                            \
    CUresult r_ = (call);                                                                         \
    if (r_ != CUDA_SUCCESS) {                                                                     \
      const char *n_ = NULL;                                                                      \
      cuGetErrorName(r_, &n_);                                                                    \
      fprintf(stderr, "sync_probe: %s:%d: %s failed: %s\n", __FILE__, __LINE__, #call,            \
              n_ ? n_ : "unknown error");                                                         \
      exit(r_ == CUDA_ERROR_NO_DEVICE ? 77 : 1);                                                  \
    }                                                                                             \
  } while (0)

enum { DYN_SMEM = 128 + 4 * 32768, STREAM_WORDS_LOG2 = 26 /* 1 GiB of 16-byte words */ };
enum { H_BACKOFF = 1, H_RELEASE_RED = 2, H_BLOCK = 4 }; /* as sync_probe.c */
/* The background loads (sync_probe.c LOAD_*) and their names in the table. */
static const char *const kLoads[] = {"idle", "HBM", "L2pf"};

static CUmodule mod;
static int sms;
static CUdeviceptr d_buf, d_cnt, d_out, d_err, d_stop, d_data, d_rows;
static size_t out_words;
static FILE *json;

static int cmp_f64(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}
static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Median and 90th percentile of v[0..n), sorted in place. */
/* The samples of `rows` rows of `iters` each (h, row-major) past each row's first `skip` (the
 * warm-up), into v; v may be h itself (the copy only moves samples forward). Returns the count. */
static size_t gather(uint64_t *v, const uint64_t *h, uint32_t rows, uint32_t iters, uint32_t skip) {
  size_t m = 0;
  for (uint32_t r = 0; r < rows; r++)
    for (uint32_t it = skip; it < iters; it++)
      v[m++] = h[(size_t)r * iters + it];
  return m;
}

static void pcts(uint64_t *v, size_t n, double *p50, double *p90) {
  qsort(v, n, sizeof *v, cmp_u64);
  *p50 = n ? (double)v[n / 2] : 0;
  *p90 = n ? (double)v[n * 9 / 10] : 0;
}

/* A row of the table (and of --json): the median and 90th percentile, in `unit`. */
static void row(const char *probe, const char *what, const char *load, double p50, double p90,
                const char *unit) {
  printf("%-8s %-50s %-6s %9.0f %9.0f %s\n", probe, what, load, p50, p90, unit);
  if (json)
    fprintf(json, "{\"probe\": \"%s\", \"what\": \"%s\", \"load\": \"%s\", \"p50\": %.0f, "
                  "\"p90\": %.0f, \"unit\": \"%s\"}\n", probe, what, load, p50, p90, unit);
}

/* A fence row: the median and 90th percentile of `rows` rows of `iters` samples in h (ns) past
 * each row's first `skip`, gathered into v (which may be h). */
static void fence_row(uint64_t *v, const uint64_t *h, uint32_t rows, uint32_t iters, uint32_t skip,
                      const char *what) {
  double p50, p90;
  pcts(v, gather(v, h, rows, iters, skip), &p50, &p90);
  row("fence", what, "HBM", p50, p90, "ns");
}

/* The row under a fence row: the share of its samples (flags, `rows` of `iters`, past each row's
 * first `skip`; late is overwritten) whose copies landed after the fence ended. */
static void late_row(uint64_t *late, uint32_t rows, uint32_t iters, uint32_t skip) {
  size_t n = gather(late, late, rows, iters, skip), after = 0;
  for (size_t i = 0; i < n; i++)
    after += late[i] != 0;
  double pct = n ? 100.0 * (double)after / (double)n : 0;
  row("fence", "  of those, copies landed after the fence ended", "HBM", pct, pct, "%");
}

static void reset(void) {
  CHECK_CU(cuMemsetD8(d_cnt, 0, 32 * 1024 * 4));
  CHECK_CU(cuMemsetD8(d_out, 0, out_words * 8));
  CHECK_CU(cuMemsetD8(d_err, 0, 16));
  CHECK_CU(cuMemsetD8(d_stop, 0, 4));
}

/* Kernel `name` of the module, allowed `dyn` bytes of dynamic shared memory. */
static CUfunction kernel(const char *name, unsigned dyn) {
  CUfunction f;
  CHECK_CU(cuModuleGetFunction(&f, mod, name));
  CHECK_CU(cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, (int)dyn));
  return f;
}

/* Launches kernel `name` cooperatively (every block resident at once: the probes' blocks wait
 * for each other) with `dyn` bytes of dynamic shared memory, and checks its error words. */
static void launch_dyn(const char *name, int grid, unsigned dyn, void **args) {
  CUfunction f = kernel(name, dyn);
  CHECK_CU(cuLaunchCooperativeKernel(f, grid, 1, 1, 256, 1, 1, dyn, 0, args));
  CHECK_CU(cuCtxSynchronize());
  uint32_t err[3];
  CHECK_CU(cuMemcpyDtoH(err, d_err, sizeof err));
  if (err[0] || err[2]) {
    fprintf(stderr, "sync_probe: %s: %s\n", name,
            err[0] ? "a wait passed its 2 s deadline" : "a block read a stale row");
    exit(1);
  }
}

static void launch(const char *name, int grid, void **args) { launch_dyn(name, grid, DYN_SMEM, args); }

/* The hand-off probes' one table: every variant of kernel `name` (its arguments: the counters,
 * `data` (cleared before each run when data_bytes > 0), the results, the background `load`, the
 * iterations and the variant), `loads` background loads each, 3 or 7 runs of 200 or 2000 round
 * trips; a row per variant and load, the one-way time (half a round trip). A run whose reads saw
 * another pass's values stops the probe, naming what it read (`bad`). */
typedef struct HandoffVariant {
  unsigned variant;
  const char *what;
} HandoffVariant;
static void handoff_table(const char *name, CUdeviceptr data, size_t data_bytes,
                          const HandoffVariant *vs, size_t nv, unsigned loads, const char *bad,
                          int quick) {
  uint32_t iters = quick ? 200 : 2000;
  uint64_t words = (uint64_t)1 << STREAM_WORDS_LOG2;
  for (unsigned load = 0; load < loads; load++)
    for (size_t v = 0; v < nv; v++) {
      uint64_t rt[7];
      int runs = quick ? 3 : 7;
      for (int r = 0; r < runs; r++) {
        reset();
        if (data_bytes)
          CHECK_CU(cuMemsetD8(data, 0, data_bytes));
        unsigned variant = vs[v].variant;
        void *args[] = {&d_cnt, &data, &d_out, &d_err, &d_stop, &d_buf, &words, &load, &iters,
                        &variant};
        launch(name, load ? sms : 2, args);
        uint64_t o[2];
        CHECK_CU(cuMemcpyDtoH(o, d_out, sizeof o));
        if (o[1]) {
          fprintf(stderr, "sync_probe: %s: %llu %s\n", name, (unsigned long long)o[1], bad);
          exit(1);
        }
        rt[r] = o[0] / 2; /* a round trip is two hand-offs */
      }
      double p50, p90;
      pcts(rt, (size_t)runs, &p50, &p90);
      row("handoff", vs[v].what, kLoads[load], p50, p90, "ns");
    }
}

static void handoff(int quick) {
  static const HandoffVariant vs[] = {
      {0, "thread: spin, fence + red.relaxed"},
      {H_RELEASE_RED, "thread: spin, red.release"},
      {H_BACKOFF, "thread: back-off poll, fence + red.relaxed"},
      {H_BLOCK, "block: spin, barriers, fence + red"},
      {H_BLOCK | H_BACKOFF, "block: back-off poll, barriers, fence + red"},
  };
  handoff_table("probe_handoff", d_data, 0, vs, sizeof vs / sizeof *vs, 3,
                "reads saw another pass's data", quick);
}

/* The row hand-off (sync_probe.c probe_handoff_row): the one-way time of a 2048-value row, counted
 * or flagged, with and without the weight stream's copies in flight on the two SMs; the rows (two
 * of 2048 words of 8 bytes) cleared before each run, so that no word carries a pass number yet. */
static void handoff_row(int quick) {
  enum { ROW_FLAGGED = 1, ROW_STREAM = 2 }; /* as sync_probe.c */
  static const HandoffVariant vs[] = {
      {0, "row: counted (barrier, fence + red / poll, loads)"},
      {ROW_FLAGGED, "row: flagged words (no fence; each reader polls)"},
      {ROW_STREAM, "row: counted, bulk copies in flight"},
      {ROW_FLAGGED | ROW_STREAM, "row: flagged words, bulk copies in flight"},
  };
  handoff_table("probe_handoff_row", d_rows, 2 * 2048 * 8, vs, sizeof vs / sizeof *vs, 2,
                "values read were not the pass's", quick);
}

static void fence(int quick) {
  uint32_t iters = quick ? 40 : 200, skip = iters / 10;
  uint64_t bytes = (uint64_t)16 << STREAM_WORDS_LOG2;
  uint64_t *h = malloc(2 * (size_t)sms * iters * sizeof *h), *v = malloc((size_t)sms * iters * sizeof *v);
  if (!h || !v) {
    fprintf(stderr, "sync_probe: out of host memory\n");
    exit(1);
  }
  /* copies of 32 KiB, then one copy of 64 and of 128 KiB (the bytes of 2 and 4 smaller ones) */
  static const struct { unsigned n, size; } copies[] = {
      {0, 32768}, {1, 32768}, {2, 32768}, {4, 32768}, {1, 65536}, {1, 131072}};
  /* mode 0: bulk copies by one thread; 1: a warp's cp.async, 16 bytes a lane; 2: bulk copies
   * by thread 0, the notify one red.release.gpu instead of the fence (its time the row's); 3: bulk
   * copies by thread 0, the fence a fence.release.gpu; 4: L2 prefetches by thread 0 instead of
   * copies; 5: bulk copies by thread 0, one ld.acquire.gpu timed instead of the notify */
  for (unsigned mode = 0; mode <= 5; mode++)
  for (int issuer = 0; issuer <= 32; issuer += 32)
    for (size_t c = 0; c < sizeof copies / sizeof *copies; c++) {
      if ((issuer || mode) && (copies[c].size != 32768 || (mode < 2 && !copies[c].n)))
        continue;
      if (mode >= 2 && issuer)
        continue;
      reset();
      unsigned n = copies[c].n, who = (unsigned)issuer, size = copies[c].size;
      void *args[] = {&d_buf, &bytes, &d_out, &d_err, &d_cnt, &iters, &n, &who, &size, &mode};
      launch("probe_fence", sms, args);
      CHECK_CU(cuMemcpyDtoH(h, d_out, 2 * (size_t)sms * iters * sizeof *h));
      for (int part = 0; part < (n && mode != 4 ? 2 : 1); part++) {
        size_t m = gather(v, h + (size_t)part * sms * iters, (uint32_t)sms, iters, skip);
        double p50, p90;
        pcts(v, m, &p50, &p90);
        char what[96];
        const char *how = mode == 1 ? "cp.async of warp" : mode == 4 ? "L2 prefetch, thread" : "bulk, thread";
        if (part == 0)
          snprintf(what, sizeof what, "%s, %u x %u KiB in flight (%s %d)",
                   mode == 2   ? "red.release.gpu"
                   : mode == 3 ? "fence.release.gpu"
                   : mode == 5 ? "ld.acquire.gpu"
                               : "fence.acq_rel.gpu",
                   n, size >> 10, how,
                   mode == 1 ? issuer / 32 : issuer);
        else
          snprintf(what, sizeof what, "%u %s copies of %u KiB: issue to landed", n,
                   mode == 1 ? "cp.async" : "bulk", size >> 10);
        row("fence", what, "HBM", p50, p90, "ns");
      }
    }
  free(h);
  free(v);
}

/* The fence with another warp's bulk copies in flight that are not ordered before it
 * (sync_probe.c probe_fence_loader: the issuer raises a flag with a volatile store) or are (a
 * release store): 1, 2 and 4 copies of 32 KiB, every SM at once; and how often the copies landed
 * after the fence ended (a fence that waits for them leaves none). */
static void fence_loader(int quick) {
  uint32_t iters = quick ? 40 : 200, skip = iters / 10;
  uint64_t bytes = (uint64_t)16 << STREAM_WORDS_LOG2;
  uint64_t *h = malloc(2 * (size_t)sms * iters * sizeof *h);
  if (!h || 2 * (size_t)sms * iters > out_words) {
    fprintf(stderr, "sync_probe: out of host memory (or of the output buffer)\n");
    exit(1);
  }
  for (unsigned ordered = 0; ordered <= 1; ordered++)
    for (unsigned n = 1; n <= 4; n *= 2) {
      reset();
      void *args[] = {&d_buf, &bytes, &d_out, &d_err, &d_cnt, &iters, &n, &ordered};
      launch("probe_fence_loader", sms, args);
      CHECK_CU(cuMemcpyDtoH(h, d_out, 2 * (size_t)sms * iters * sizeof *h));
      char what[96];
      snprintf(what, sizeof what, "fence.acq_rel.gpu, %u x 32 KiB of warp 7, %s", n,
               ordered ? "flag release/acquire" : "flag volatile");
      fence_row(h, h, (uint32_t)sms, iters, skip, what);
      late_row(h + (size_t)sms * iters, (uint32_t)sms, iters, skip);
    }
  free(h);
}

/* The fence in the SM's other block (sync_probe.c probe_fence_pair): two blocks a SM, the shared
 * memory each asks for leaving no room for a third. Rows: the notifier's fence with 0 to 2 copies
 * of 32 KiB in flight in the copier, and how often the copies landed after the fence ended. */
enum { PAIR_ROLE = 16384, PAIR_DYN = 100 << 10 }; /* as sync_probe.c; 2 x 100 KiB a SM, not 3 */
static void fence_pair(int quick) {
  uint32_t iters = quick ? 40 : 200, skip = iters / 10, nsm = (uint32_t)sms;
  uint64_t bytes = (uint64_t)16 << STREAM_WORDS_LOG2;
  CUfunction f = kernel("probe_fence_pair", PAIR_DYN);
  int per_sm = 0;
  CHECK_CU(cuOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, f, 256, PAIR_DYN));
  if (per_sm != 2) {
    printf("fence    (the pair rows need exactly 2 blocks a SM; %d fit: skipped)\n", per_sm);
    return;
  }
  uint64_t *h = malloc(2 * (size_t)sms * iters * sizeof *h), *v = malloc((size_t)sms * iters * sizeof *v);
  uint32_t *roles = malloc((size_t)sms * sizeof *roles);
  if (!h || !v || !roles) {
    fprintf(stderr, "sync_probe: out of host memory\n");
    exit(1);
  }
  for (unsigned n = 0; n <= 2; n++) {
    reset();
    void *args[] = {&d_buf, &bytes, &d_out, &d_err, &d_cnt, &iters, &n, &nsm};
    launch_dyn("probe_fence_pair", 2 * sms, PAIR_DYN, args);
    CHECK_CU(cuMemcpyDtoH(h, d_out, 2 * (size_t)sms * iters * sizeof *h));
    CHECK_CU(cuMemcpyDtoH(roles, d_cnt + PAIR_ROLE * 4, (size_t)sms * sizeof *roles));
    size_t m = 0, after = 0;
    for (int sm = 0; sm < sms; sm++) {
      if (roles[sm] != 2) /* not a pair (an SM id beyond the count): no rows */
        continue;
      for (uint32_t it = skip; it < iters; it++) {
        v[m++] = h[(size_t)sm * iters + it];
        after += h[(size_t)sms * iters + (size_t)sm * iters + it] != 0;
      }
    }
    if (m == 0) {
      printf("fence    (no SM ran a pair: skipped)\n");
      break;
    }
    double p50, p90;
    pcts(v, m, &p50, &p90);
    char what[96];
    snprintf(what, sizeof what, "fence.acq_rel.gpu, %u x 32 KiB in the SM's other block", n);
    row("fence", what, "HBM", p50, p90, "ns");
    if (n) {
      snprintf(what, sizeof what, "  of those, copies landed after the fence ended");
      double pct = 100.0 * (double)after / (double)m;
      row("fence", what, "HBM", pct, pct, "%");
    }
  }
  free(h);
  free(v);
  free(roles);
}

/* The configuration of a launch on `grid` blocks of 256 threads with `dyn` bytes of dynamic
 * shared memory, in clusters of two blocks when `cluster` (*at holds the cluster attribute). */
static CUlaunchConfig launch_config(unsigned grid, unsigned dyn, int cluster, CUlaunchAttribute *at) {
  memset(at, 0, sizeof *at);
  at->id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
  at->value.clusterDim.x = 2, at->value.clusterDim.y = 1, at->value.clusterDim.z = 1;
  CUlaunchConfig cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.gridDimX = grid, cfg.gridDimY = 1, cfg.gridDimZ = 1;
  cfg.blockDimX = 256, cfg.blockDimY = 1, cfg.blockDimZ = 1;
  cfg.sharedMemBytes = dyn, cfg.attrs = cluster ? at : NULL, cfg.numAttrs = cluster ? 1 : 0;
  return cfg;
}

/* Launches kernel f so (the caller checks the result: a GPU may refuse). */
static CUresult launch_ex(CUfunction f, unsigned grid, unsigned dyn, int cluster, void **args) {
  CUlaunchAttribute at;
  CUlaunchConfig cfg = launch_config(grid, dyn, cluster, &at);
  return cuLaunchKernelEx(&cfg, f, args, NULL);
}

/* The end of a launch of kernel `name`: a wait of the kernel's past its deadline ends the probe. */
static void finish(const char *name) {
  CHECK_CU(cuCtxSynchronize());
  uint32_t err = 0;
  CHECK_CU(cuMemcpyDtoH(&err, d_err, sizeof err));
  if (err) {
    fprintf(stderr, "sync_probe: %s: a wait passed its 2 s deadline\n", name);
    exit(1);
  }
}

/* launch_ex between two events, then the launch's end: its time in *ms. Returns the launch's
 * result (nothing ran unless CUDA_SUCCESS); a wait of the kernel's past its deadline ends the
 * probe with `name`. */
static CUresult timed_launch(CUfunction f, unsigned grid, unsigned dyn, int cluster, void **args,
                             CUevent e0, CUevent e1, const char *name, float *ms) {
  CHECK_CU(cuEventRecord(e0, 0));
  CUresult r = launch_ex(f, grid, dyn, cluster, args);
  if (r != CUDA_SUCCESS)
    return r;
  CHECK_CU(cuEventRecord(e1, 0));
  finish(name);
  CHECK_CU(cuEventElapsedTime(ms, e0, e1));
  return CUDA_SUCCESS;
}

/* A launch in clusters of two on `grid` blocks: 0 (a row saying so printed) when the GPU refused
 * it, else 1 once it ended. */
static int cluster_launch(CUfunction f, unsigned grid, unsigned dyn, void **args, const char *name) {
  CUresult r = launch_ex(f, grid, dyn, 1, args);
  if (r != CUDA_SUCCESS) {
    const char *e = NULL;
    cuGetErrorString(r, &e);
    printf("fence    (clusters of two could not be launched: %s; skipped)\n", e ? e : "?");
    return 0;
  }
  finish(name);
  return 1;
}

/* The fence of a block whose weights another block of its cluster copies in (sync_probe.c
 * probe_fence_cluster): clusters of two, 0 to 2 copies of 32 KiB in flight; and how many clusters
 * had both blocks on one SM (the hardware places them). */
enum { CLUSTER_DYN = 128 + 2 * 32768 }; /* two blocks may share an SM */
static void fence_cluster(int quick) {
  uint32_t iters = quick ? 40 : 200, skip = iters / 10, npairs = (uint32_t)sms;
  uint64_t bytes = (uint64_t)16 << STREAM_WORDS_LOG2;
  CUfunction f = kernel("probe_fence_cluster", CLUSTER_DYN);
  size_t words = (size_t)npairs * iters + 2 * (size_t)npairs;
  uint64_t *h = malloc(words * sizeof *h), *v = malloc((size_t)npairs * iters * sizeof *v);
  if (!h || !v || words > out_words) {
    fprintf(stderr, "sync_probe: out of host memory (or of the output buffer)\n");
    exit(1);
  }
  for (unsigned n = 0; n <= 2; n++) {
    reset();
    void *args[] = {&d_buf, &bytes, &d_out, &d_err, &d_cnt, &iters, &n};
    if (!cluster_launch(f, 2 * npairs, CLUSTER_DYN, args, "probe_fence_cluster"))
      break;
    CHECK_CU(cuMemcpyDtoH(h, d_out, words * sizeof *h));
    size_t m = gather(v, h, npairs, iters, skip), same = 0;
    for (uint32_t p = 0; p < npairs; p++) {
      const uint64_t *sm = h + (size_t)npairs * iters + 2 * (size_t)p;
      same += sm[0] == sm[1];
    }
    double p50, p90;
    pcts(v, m, &p50, &p90);
    char what[96];
    snprintf(what, sizeof what, "fence.acq_rel.gpu, %u x 32 KiB copied in by its cluster peer", n);
    row("fence", what, "HBM", p50, p90, "ns");
    if (n == 0) {
      double pct = 100.0 * (double)same / (double)npairs;
      row("fence", "  clusters with both blocks on one SM", "HBM", pct, pct, "%");
    }
  }
  free(h);
  free(v);
}

/* The fence of the block that issued bulk copies into its cluster peer's shared memory, and the
 * receiver's again with no cluster barrier between issue and fence (sync_probe.c
 * probe_fence_issuer): 0 to 2 copies of 32 KiB; and the share of fences that ended before the
 * copies had all landed (the fence did not wait for them). */
static void fence_issuer(int quick) {
  uint32_t iters = quick ? 40 : 200, skip = iters / 10, npairs = (uint32_t)sms;
  uint64_t bytes = (uint64_t)16 << STREAM_WORDS_LOG2;
  CUfunction f = kernel("probe_fence_issuer", CLUSTER_DYN);
  size_t words = 2 * (size_t)npairs * iters;
  uint64_t *h = malloc(words * sizeof *h), *v = malloc((size_t)npairs * iters * sizeof *v);
  if (!h || !v || words > out_words) {
    fprintf(stderr, "sync_probe: out of host memory (or of the output buffer)\n");
    exit(1);
  }
  for (unsigned fencer = 0; fencer <= 1; fencer++)
    for (unsigned n = 0; n <= 2; n++) {
      reset();
      void *args[] = {&d_buf, &bytes, &d_out, &d_err, &d_cnt, &iters, &n, &fencer};
      if (!cluster_launch(f, 2 * npairs, CLUSTER_DYN, args, "probe_fence_issuer"))
        goto done;
      CHECK_CU(cuMemcpyDtoH(h, d_out, words * sizeof *h));
      char what[96];
      snprintf(what, sizeof what, "fence.acq_rel.gpu, %u x 32 KiB %s", n,
               fencer ? "it issued into its cluster peer" : "its peer copies in, no barrier");
      fence_row(v, h, npairs, iters, skip, what);
      if (n)
        late_row(h + (size_t)npairs * iters, npairs, iters, skip);
    }
done:
  free(h);
  free(v);
}

/* Every SM reads a stream whose copies a loader warp issues: its own block's, or its cluster
 * peer's on another SM (sync_probe.c probe_stream_cross), 2 to 4 slots of 32 KiB; the chip's and
 * the median block's rate, and a notify's fence timed by the reader while the stream runs. How
 * many clusters of two can be resident at once is printed first (a megakernel in clusters needs
 * them all). */
static void stream_cross(int quick) {
  CUfunction f = kernel("probe_stream_cross", DYN_SMEM);
  CHECK_CU(cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED, 1));
  CUlaunchAttribute at;
  CUlaunchConfig cfg = launch_config((unsigned)sms & ~1u, DYN_SMEM, 1, &at);
  int clusters = 0;
  CUresult oc = cuOccupancyMaxActiveClusters(&clusters, f, &cfg);
  row("cluster", "clusters of two resident at once (one block a SM)", "alone",
      oc == CUDA_SUCCESS ? clusters : -1, oc == CUDA_SUCCESS ? clusters : -1, "clusters");
  unsigned grid = (unsigned)sms & ~1u;
  if (oc == CUDA_SUCCESS && (unsigned)clusters * 2 < grid)
    grid = (unsigned)clusters * 2; /* every block resident: the chip's rate means what it says */
  uint64_t per = ((uint64_t)16 << STREAM_WORDS_LOG2) / grid / 32768 * 32768;
  uint64_t *h = malloc((grid + (size_t)grid * 64) * sizeof *h);
  if (!h || grid + (size_t)grid * 64 > out_words) {
    fprintf(stderr, "sync_probe: out of host memory (or of the output buffer)\n");
    exit(1);
  }
  CUevent e0, e1;
  CHECK_CU(cuEventCreate(&e0, CU_EVENT_DEFAULT));
  CHECK_CU(cuEventCreate(&e1, CU_EVENT_DEFAULT));
  for (unsigned peer = 0; peer <= 1; peer++)
    for (unsigned slots = 2; slots <= 4; slots++) {
      int runs = quick ? 3 : 9;
      uint64_t chip[9], block[9], fences[9];
      for (int r = 0; r < runs; r++) {
        reset();
        unsigned fence = 1;
        void *args[] = {&d_buf, &per, &d_out, &d_err, &d_cnt, &slots, &peer, &fence};
        float ms = 0;
        CUresult lr = timed_launch(f, grid, DYN_SMEM, 1, args, e0, e1, "probe_stream_cross", &ms);
        if (lr != CUDA_SUCCESS) {
          const char *e = NULL;
          cuGetErrorString(lr, &e);
          printf("stream   (the cross-fed stream could not be launched: %s; skipped)\n", e ? e : "?");
          goto done;
        }
        CHECK_CU(cuMemcpyDtoH(h, d_out, (grid + (size_t)grid * 64) * sizeof *h));
        double p50, p90;
        chip[r] = (uint64_t)((double)per * grid / (ms * 1e-3) / 1e6);
        pcts(h, grid, &p50, &p90);
        block[r] = (uint64_t)((double)per / (p50 * 1e-9) / 1e6);
        size_t m = 0;
        uint64_t *fv = h + grid;
        for (size_t i = 0; i < (size_t)grid * 64; i++)
          if (fv[i])
            fv[m++] = fv[i];
        pcts(fv, m, &p50, &p90);
        fences[r] = (uint64_t)p50;
      }
      double c50, c90, b50, b90, f50, f90;
      pcts(chip, (size_t)runs, &c50, &c90);
      pcts(block, (size_t)runs, &b50, &b90);
      pcts(fences, (size_t)runs, &f50, &f90);
      const char *how = peer ? "copies from the cluster peer's loader" : "copies from its own loader warp";
      char what[96];
      snprintf(what, sizeof what, "%u slots (%s), the chip", slots, how);
      row("stream", what, "alone", c50 / 1e3, c90 / 1e3, "GB/s");
      snprintf(what, sizeof what, "%u slots (%s), the median SM", slots, how);
      row("stream", what, "alone", b50 / 1e3, b90 / 1e3, "GB/s");
      snprintf(what, sizeof what, "  a reader's notify fence meanwhile (median of runs' medians)");
      row("stream", what, "alone", f50, f90, "ns");
    }
done:
  CHECK_CU(cuEventDestroy(e0));
  CHECK_CU(cuEventDestroy(e1));
  free(h);
}

/* A chip-wide stream launch (probe_stream on `grid` blocks, or probe_stream_cluster on `grid`
 * blocks in clusters of two, every second block reading): `bytes` per reading block; the chip's
 * rate and the median reading block's, in MB/s. Returns 0 when the launch was refused. */
static int stream_run(CUfunction f, int cluster, unsigned grid, uint64_t bytes, unsigned slots,
                      unsigned mode, uint64_t *chip, uint64_t *block, uint64_t *h, CUevent e0,
                      CUevent e1) {
  reset();
  unsigned readers = cluster ? grid / 2 : grid;
  void *args[] = {&d_buf, &bytes, &d_out, &d_err, &slots, &mode}; /* the cluster kernel: 5 */
  float ms = 0;
  if (timed_launch(f, grid, DYN_SMEM, cluster, args, e0, e1, "a stream launch", &ms) != CUDA_SUCCESS)
    return 0;
  CHECK_CU(cuMemcpyDtoH(h, d_out, (size_t)readers * sizeof *h));
  double p50, p90;
  pcts(h, (size_t)readers, &p50, &p90);
  *chip = (uint64_t)((double)bytes * readers / (ms * 1e-3) / 1e6);
  *block = (uint64_t)((double)bytes / (p50 * 1e-9) / 1e6);
  return 1;
}

/* The weight stream's design alone, and fed from elsewhere. Every SM streams its share of the
 * 1 GiB buffer through 1 to 4 slots, filled by thread 0's bulk copies or by warp 0's cp.async;
 * then half the SMs stream (how much one SM's copy engine gives), and each reading block's ring
 * is filled by its cluster peer on another SM. Rows: the chip's rate (bytes over the launch's
 * CUDA-event time) and the median reading block's. */
static void stream(int quick) {
  static const struct {
    int cluster, half;
    unsigned mode, slots0;
    const char *how, *reader;
  } cfgs[] = {
      {0, 0, 0, 1, "bulk copies", "SM"},
      {0, 0, 1, 1, "warp 0's cp.async", "SM"},
      {0, 0, 2, 2, "16 rows of 2 KiB, 4 KiB apart", "SM"},
      {0, 1, 0, 2, "bulk, half the SMs", "reader"},
      {1, 1, 0, 2, "fed by a cluster peer", "reader"},
  };
  uint64_t *h = malloc((size_t)sms * sizeof *h);
  if (!h) {
    fprintf(stderr, "sync_probe: out of host memory\n");
    exit(1);
  }
  CUevent e0, e1;
  CHECK_CU(cuEventCreate(&e0, CU_EVENT_DEFAULT));
  CHECK_CU(cuEventCreate(&e1, CU_EVENT_DEFAULT));
  CUfunction fs = kernel("probe_stream", DYN_SMEM), fc = kernel("probe_stream_cluster", DYN_SMEM);
  for (size_t i = 0; i < sizeof cfgs / sizeof *cfgs; i++) {
    /* the readers, and the buffer shared out between them in whole slots (~8 MiB a block on
     * 132 SMs) */
    unsigned readers = cfgs[i].half ? (unsigned)sms / 2 & ~1u : (unsigned)sms;
    uint64_t per = ((uint64_t)16 << STREAM_WORDS_LOG2) / readers / 32768 * 32768;
    int refused = 0;
    for (unsigned slots = cfgs[i].slots0; slots <= 4 && !refused; slots++) {
      int runs = quick ? 3 : 11;
      uint64_t chip[11], block[11];
      for (int r = 0; r < runs && !refused; r++)
        refused = !stream_run(cfgs[i].cluster ? fc : fs, cfgs[i].cluster,
                              cfgs[i].cluster ? 2 * readers : readers, per, slots, cfgs[i].mode,
                              &chip[r], &block[r], h, e0, e1);
      if (refused) {
        printf("stream   (%s: the launch was refused; skipped)\n", cfgs[i].how);
        break;
      }
      double c50, c90, b50, b90;
      pcts(chip, (size_t)runs, &c50, &c90);
      pcts(block, (size_t)runs, &b50, &b90);
      if (cfgs[i].mode == 2) /* half of each chunk's span is copied */
        c50 /= 2, c90 /= 2, b50 /= 2, b90 /= 2;
      char what[96];
      snprintf(what, sizeof what, "%u slots of 32 KiB (%s), the chip", slots, cfgs[i].how);
      row("stream", what, "alone", c50 / 1e3, c90 / 1e3, "GB/s");
      snprintf(what, sizeof what, "%u slots of 32 KiB (%s), the median %s", slots, cfgs[i].how,
               cfgs[i].reader);
      row("stream", what, "alone", b50 / 1e3, b90 / 1e3, "GB/s");
    }
  }
  CHECK_CU(cuEventDestroy(e0));
  CHECK_CU(cuEventDestroy(e1));
  free(h);
}

static void stage(int quick) {
  uint32_t iters = quick ? 40 : 200, skip = iters / 10;
  uint64_t words = (uint64_t)1 << STREAM_WORDS_LOG2;
  uint64_t *h = malloc((size_t)sms * iters * sizeof *h);
  if (!h) {
    fprintf(stderr, "sync_probe: out of host memory\n");
    exit(1);
  }
  for (unsigned load = 0; load < 3; load++) {
    reset();
    uint32_t measuring = load ? (uint32_t)sms / 2 : (uint32_t)sms;
    void *args[] = {&d_rows, &d_cnt, &d_out, &d_err, &d_stop, &d_buf, &words, &load, &iters,
                    &measuring};
    launch("probe_stage", sms, args);
    CHECK_CU(cuMemcpyDtoH(h, d_out, (size_t)sms * iters * sizeof *h));
    size_t m = gather(h, h, measuring, iters, skip);
    double p50, p90;
    pcts(h, m, &p50, &p90);
    char what[96];
    snprintf(what, sizeof what, "8 KiB row from L2 + barrier (%u blocks)", measuring);
    row("stage", what, kLoads[load], p50, p90, "ns");
  }
  free(h);
}

/* A tensor-core matvec task's weight loads alone (sync_probe.c probe_frag): every SM reads 128
 * rows x 1024 columns of a bf16 matrix of row stride 2048 (the gate projection's split slice at
 * batch 16: 256 KiB a task, 32 MiB over 128 SMs), each launch from another region of the
 * buffer (64 MiB apart: not in L2). Rows: the median block's rate and the chip's (bytes over the launch's
 * CUDA-event time), by mode. */
static void frag(int quick) {
  static const char *const how[] = {"tile pattern, window 4", "tile pattern, window 8",
                                    "whole rows, 4 KiB in flight a warp",
                                    "tile pattern, window 4, rows prefetched to L2 first",
                                    "tile pattern, window 4, loads .L2::256B",
                                    "tile pattern, window 4, loads .L2::128B"};
  uint64_t k = 2048, region = (uint64_t)64 << 20; /* 128 blocks x 128 rows of 4 KiB */
  uint32_t cols = 1024, rows = 128, launches = quick ? 4 : 16;
  uint64_t buf_bytes = (uint64_t)16 << STREAM_WORDS_LOG2, regions = buf_bytes / region;
  int grid = sms < 128 ? sms : 128;
  uint64_t *h = malloc((size_t)sms * sizeof *h);
  double *bl = malloc(launches * sizeof *bl), *ch = malloc(launches * sizeof *ch);
  if (!h || !bl || !ch) {
    fprintf(stderr, "sync_probe: out of host memory\n");
    exit(1);
  }
  CUevent e0, e1;
  CHECK_CU(cuEventCreate(&e0, 0));
  CHECK_CU(cuEventCreate(&e1, 0));
  CUfunction f;
  CHECK_CU(cuModuleGetFunction(&f, mod, "probe_frag"));
  static unsigned next_region;
  for (uint32_t mode = 0; mode < 6; mode++) {
    for (uint32_t l = 0; l < launches; l++) {
      CUdeviceptr w = d_buf + (next_region++ % regions) * region;
      void *args[] = {&w, &k, &cols, &rows, &mode, &d_out, &d_data};
      CHECK_CU(cuEventRecord(e0, 0));
      CHECK_CU(cuLaunchKernel(f, (unsigned)grid, 1, 1, 256, 1, 1, 0, 0, args, NULL));
      CHECK_CU(cuEventRecord(e1, 0));
      CHECK_CU(cuCtxSynchronize());
      float ms = 0;
      CHECK_CU(cuEventElapsedTime(&ms, e0, e1));
      CHECK_CU(cuMemcpyDtoH(h, d_out, (size_t)grid * sizeof *h));
      double p50, p90;
      pcts(h, (size_t)grid, &p50, &p90);
      double bytes = (double)rows * cols * 2;
      bl[l] = bytes / p50; /* GB/s: bytes per ns */
      ch[l] = bytes * grid / (ms * 1e6);
    }
    qsort(bl, launches, sizeof *bl, cmp_f64);
    qsort(ch, launches, sizeof *ch, cmp_f64);
    char what[96];
    snprintf(what, sizeof what, "%s, the median block", how[mode]);
    row("frag", what, "alone", bl[launches / 2], bl[launches * 9 / 10], "GB/s");
    snprintf(what, sizeof what, "%s, the chip", how[mode]);
    row("frag", what, "alone", ch[launches / 2], ch[launches * 9 / 10], "GB/s");
  }
  CHECK_CU(cuEventDestroy(e0));
  CHECK_CU(cuEventDestroy(e1));
  free(h), free(bl), free(ch);
}

/* Every probe, in the table's order (--only picks one by name). */
static const struct {
  const char *name;
  void (*run)(int quick);
} probes[] = {
    {"handoff", handoff},           {"handoff_row", handoff_row},   {"fence", fence},
    {"fence_loader", fence_loader}, {"fence_pair", fence_pair},     {"fence_cluster", fence_cluster},
    {"fence_issuer", fence_issuer}, {"stream", stream},             {"stream_cross", stream_cross},
    {"stage", stage},               {"frag", frag},
};

int main(int argc, char **argv) {
  const char *ptx_path = NULL, *json_path = NULL;
  const char *only = NULL;
  int quick = 0;
  for (int i = 1; i < argc; i++) {
    if (!strncmp(argv[i], "--json=", 7))
      json_path = argv[i] + 7;
    else if (!strncmp(argv[i], "--only=", 7))
      only = argv[i] + 7;
    else if (!strcmp(argv[i], "--quick"))
      quick = 1;
    else if (argv[i][0] == '-') {
      fprintf(stderr, "usage: sync_probe [PTX] [--json=FILE] [--quick] [--only=PROBE]\n");
      return 2;
    } else
      ptx_path = argv[i];
  }
  if (only) {
    size_t i = 0;
    while (i < sizeof probes / sizeof *probes && strcmp(only, probes[i].name))
      i++;
    if (i == sizeof probes / sizeof *probes) {
      fprintf(stderr, "sync_probe: no probe named '%s'\n", only);
      return 2;
    }
  }
  char def[4096];
  if (!ptx_path) {
    ssize_t n = readlink("/proc/self/exe", def, sizeof def - 32);
    if (n <= 0) {
      fprintf(stderr, "sync_probe: no PTX path given and /proc/self/exe unreadable\n");
      return 2;
    }
    def[n] = 0;
    char *slash = strrchr(def, '/');
    strcpy(slash ? slash + 1 : def, "sync_probe.sm_90a.ptx");
    ptx_path = def;
  }
  FILE *f = fopen(ptx_path, "rb");
  if (!f) {
    fprintf(stderr, "sync_probe: cannot open the probe's PTX '%s'\n", ptx_path);
    return 2;
  }
  static char ptx[1 << 20];
  size_t len = fread(ptx, 1, sizeof ptx - 1, f);
  fclose(f);
  ptx[len] = 0;

  CUresult r = cuInit(0);
  int count = 0;
  if (r == CUDA_SUCCESS)
    r = cuDeviceGetCount(&count);
  if (r != CUDA_SUCCESS || count == 0) {
    const char *n = NULL;
    if (r != CUDA_SUCCESS)
      cuGetErrorName(r, &n);
    printf("SKIP: no GPU (%s)\n", r != CUDA_SUCCESS ? (n ? n : "cuInit failed") : "no device");
    return 77;
  }
  CUdevice dev;
  CUcontext ctx;
  CHECK_CU(cuDeviceGet(&dev, 0));
  int major = 0;
  char name[256];
  CHECK_CU(cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev));
  CHECK_CU(cuDeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev));
  CHECK_CU(cuDeviceGetName(name, sizeof name, dev));
  if (major != 9) {
    printf("SKIP: %s is compute capability %d.x; the probe's PTX is for sm_90a\n", name, major);
    return 77;
  }
  CHECK_CU(cuDevicePrimaryCtxRetain(&ctx, dev));
  CHECK_CU(cuCtxSetCurrent(ctx));
  CHECK_CU(cuModuleLoadData(&mod, ptx));
  size_t buf_bytes = (size_t)16 << STREAM_WORDS_LOG2;
  out_words = 2 * (size_t)sms * 200;
  CHECK_CU(cuMemAlloc(&d_buf, buf_bytes));
  CHECK_CU(cuMemsetD8(d_buf, 0x5a, buf_bytes));
  CHECK_CU(cuMemAlloc(&d_cnt, 32 * 1024 * 4));
  CHECK_CU(cuMemAlloc(&d_out, out_words * 8));
  CHECK_CU(cuMemAlloc(&d_err, 16));
  CHECK_CU(cuMemAlloc(&d_stop, 4));
  CHECK_CU(cuMemAlloc(&d_data, 256 * 4));
  CHECK_CU(cuMemAlloc(&d_rows, (size_t)sms * 2048 * 4));
  if (json_path && !(json = fopen(json_path, "a"))) {
    fprintf(stderr, "sync_probe: cannot open '%s' for appending\n", json_path);
    return 2;
  }
  printf("%s, %d SMs; median and 90th percentile\n", name, sms);
  printf("%-8s %-50s %-6s %9s %9s %s\n", "probe", "what", "load", "p50", "p90", "unit");
  for (size_t i = 0; i < sizeof probes / sizeof *probes; i++)
    if (!only || !strcmp(only, probes[i].name))
      probes[i].run(quick);
  if (json)
    fclose(json);
  return 0;
}
