/* test_trace.c: the timeline trace of megakernel runs.
 *
 *   test_trace cpu|gpu [DIR]
 *
 * Runs the mlp example with tracing on and checks the records against the task graph: the ring
 * keeps the latest runs only; every task of a kept run appears exactly once, with start <= ready
 * <= end, on a block that exists, with a tile's phases (a streamed matvec's, on sm_90; none
 * elsewhere) in order between ready and end; a consumer's tile never starts before the tiles of the producers
 * whose notifies it waited for; the Chrome trace JSON has a tile slice per task and run and is
 * well formed at its ends; the summary names the ops; tracing off leaves nothing; MLK_TRACE writes
 * the file when the model is freed. Also prints the run time with tracing off and on. Files go to
 * DIR (default: the current directory). With "gpu" on a machine without one: SKIP, exit 77.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlp_check.h"

static int failed;

#define EXPECT(cond, ...)                                                                         \
  do {                                                                                            \
    if (!(cond)) {                                                                                \
      printf("FAIL: %s:%d: ", __FILE__, __LINE__);                                                \
      printf(__VA_ARGS__);                                                                        \
      printf("\n");                                                                               \
      failed++;                                                                                   \
    }                                                                                             \
  } while (0)

static char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)len + 1);
  if (s && fread(s, 1, (size_t)len, f) != (size_t)len) {
    free(s);
    s = NULL;
  }
  fclose(f);
  if (s) {
    s[len] = 0;
    *n = (size_t)len;
  }
  return s;
}

static size_t count(const char *hay, const char *needle) {
  size_t n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
    n++;
  return n;
}

/* A record's tile phases (MLK_TRACE_STAGED ..): none stamped, or all of them, in order between
 * READY and END. Returns 1 when stamped, 0 when not, -1 when malformed. */
static int phases_of(const uint64_t *r) {
  uint64_t prev = r[MLK_TRACE_READY];
  int stamped = 0;
  for (int p = 0; p < MLK_TRACE_PHASES; p++) {
    uint64_t at = r[MLK_TRACE_STAGED + p];
    stamped += at != 0;
    if (at && (at < prev || at > r[MLK_TRACE_END]))
      return -1;
    prev = at ? at : prev;
  }
  return stamped == 0 ? 0 : stamped == MLK_TRACE_PHASES ? 1 : -1;
}

static int64_t phased; /* records with tile phases, over the kept runs */

/* The records of one kept run against the kernel's task graph. */
static void check_run(const MlkModelDesc *d, const uint64_t *rec, int kernel, int64_t ntasks,
                      int blocks) {
  const MlkKernelDesc *k = &d->kernels[kernel];
  int64_t *slot_of = malloc((size_t)ntasks * sizeof *slot_of); /* by (first task of op + task) */
  int64_t *first = calloc((size_t)k->nops + 1, sizeof *first);
  if (!slot_of || !first) {
    EXPECT(0, "out of memory");
    free(slot_of);
    free(first);
    return;
  }
  for (int o = 0; o < k->nops; o++)
    first[o + 1] = first[o] + d->ops[k->first_op + o].ntasks;
  EXPECT(first[k->nops] == ntasks, "the run has %lld records, the kernel %lld tasks", (long long)ntasks,
         (long long)first[k->nops]);
  for (int64_t i = 0; i < ntasks; i++)
    slot_of[i] = -1;
  int bad = 0;
  for (int64_t s = 0; s < ntasks && bad < 5; s++) {
    const uint64_t *r = rec + s * MLK_TRACE_WORDS;
    MlkTaskWord word = r[MLK_TRACE_TASK];
    uint32_t op = MLK_TASK_OP(word), task = MLK_TASK_INDEX(word);
    int block = r[MLK_TRACE_BLOCK] < (uint64_t)blocks ? (int)r[MLK_TRACE_BLOCK] : blocks;
    int ok = op < (uint32_t)k->nops && task < d->ops[k->first_op + (int)op].ntasks && block < blocks &&
             r[MLK_TRACE_START] && r[MLK_TRACE_START] <= r[MLK_TRACE_READY] &&
             r[MLK_TRACE_READY] <= r[MLK_TRACE_END];
    int ph = phases_of(r);
    EXPECT(ph >= 0, "record %lld: tile phases %llu %llu %llu out of order or partial (ready %llu, end %llu)",
           (long long)s, (unsigned long long)r[MLK_TRACE_STAGED], (unsigned long long)r[MLK_TRACE_FIRST],
           (unsigned long long)r[MLK_TRACE_BODY], (unsigned long long)r[MLK_TRACE_READY],
           (unsigned long long)r[MLK_TRACE_END]);
    phased += ph > 0;
    /* a streamed task's summed chunk waits fall within its tile, the loader's pumps within it */
    EXPECT(r[MLK_TRACE_CHUNK_WAIT] <= r[MLK_TRACE_END] - r[MLK_TRACE_READY] &&
               r[MLK_TRACE_ISSUE] <= r[MLK_TRACE_END] - r[MLK_TRACE_START] &&
               (ph > 0 || r[MLK_TRACE_CHUNK_WAIT] == 0),
           "record %lld: chunk waits %llu ns, pumps %llu ns, for a task of %llu ns (%s phases)",
           (long long)s, (unsigned long long)r[MLK_TRACE_CHUNK_WAIT],
           (unsigned long long)r[MLK_TRACE_ISSUE],
           (unsigned long long)(r[MLK_TRACE_END] - r[MLK_TRACE_START]), ph > 0 ? "with" : "no");
    if (ok) {
      int64_t g = first[op] + task;
      ok = slot_of[g] < 0;
      slot_of[g] = s;
    }
    EXPECT(ok, "record %lld: block %d, word 0x%016llx, start %llu, ready %llu, end %llu", (long long)s, block,
           (unsigned long long)word, (unsigned long long)r[MLK_TRACE_START], (unsigned long long)r[MLK_TRACE_READY],
           (unsigned long long)r[MLK_TRACE_END]);
    bad += !ok;
  }
  for (int64_t g = 0; g < ntasks && !bad; g++)
    if (slot_of[g] < 0) {
      EXPECT(0, "task %lld of the kernel has no record", (long long)g);
      bad++;
    }
  /* causality: a consumer's tile starts after its producers' tiles started */
  int64_t edges = 0;
  for (int e = 0; e < d->nevents && !bad; e++) {
    const MlkEventDesc *ev = &d->events[e];
    int po = ev->producer - k->first_op, co = ev->consumer - k->first_op;
    if (po < 0 || po >= k->nops || co < 0 || co >= k->nops)
      continue;
    for (int64_t p = 0; p < d->ops[ev->producer].ntasks; p++) {
      int64_t lo, hi;
      mlk_event_notify_range(ev, p, &lo, &hi);
      const uint64_t *pr = rec + slot_of[first[po] + p] * MLK_TRACE_WORDS;
      for (int64_t c = 0; c < d->ops[ev->consumer].ntasks; c++) {
        int64_t idx = mlk_event_wait_index(ev, c);
        if (idx < lo || idx > hi)
          continue;
        const uint64_t *cr = rec + slot_of[first[co] + c] * MLK_TRACE_WORDS;
        edges++;
        if (cr[MLK_TRACE_READY] < pr[MLK_TRACE_READY] && bad < 5) {
          EXPECT(0, "event '%s': consumer task %lld was ready at %llu, before producer task %lld "
                    "started its tile at %llu", ev->name, (long long)c,
                 (unsigned long long)cr[MLK_TRACE_READY], (long long)p,
                 (unsigned long long)pr[MLK_TRACE_READY]);
          bad++;
        }
      }
    }
  }
  EXPECT(edges > 0, "no dependency was checked");
  free(slot_of);
  free(first);
}

int main(int argc, char **argv) {
  int gpu = argc > 1 && !strcmp(argv[1], "gpu");
  const char *dir = argc > 2 ? argv[2] : ".";
  mlk_backend *be;
  mlk_sim_options so = {.threads = 6, .max_delay_us = 20, .mode = MLK_SIM_THREADED};
  mlk_status st = gpu ? mlk_backend_create(MLK_BACKEND_GPU, &be) : mlk_backend_create_cpu(&so, &be);
  if (st == MLK_ERR_NO_GPU) {
    printf("SKIP: %s\n", mlk_last_error());
    return 77;
  }
  if (st != MLK_OK) {
    printf("FAIL: %s\n", mlk_last_error());
    return 1;
  }
  printf("backend: %s\n", mlk_backend_name(be));
  int blocks = gpu ? 1024 : so.threads; /* the GPU's SM count is not in the API: a loose bound */
  const MlkModelDesc *d = &mlp_desc;
  mlk_model *m;
  if (mlk_model_create(be, d, &m) != MLK_OK) {
    printf("FAIL: create: %s\n", mlk_last_error());
    return 1;
  }
  for (int t = 0; t < d->ntensors; t++)
    if (d->tensors[t].kind == MLK_TENSOR_PARAM || d->tensors[t].kind == MLK_TENSOR_INPUT)
      mlk_model_fill_tensor(m, t, 0x3c); /* small finite bf16 and f32 values */

  /* off: nothing recorded, the summary says why */
  double off_ms = 0, on_ms = 0, ms;
  for (int i = 0; i < 5; i++) {
    EXPECT(mlk_model_run_timed(m, 0, &ms) == MLK_OK, "run: %s", mlk_last_error());
    off_ms = i == 0 || ms < off_ms ? ms : off_ms;
  }
  EXPECT(mlk_model_trace_runs(m) == 0, "%d runs recorded with tracing off", mlk_model_trace_runs(m));
  EXPECT(mlk_model_trace_summary(m) == NULL && strstr(mlk_last_error(), "tracing is off"),
         "summary with tracing off: %s", mlk_last_error());

  /* on: 3 runs, 2 kept */
  EXPECT(mlk_model_trace_enable(m, 2) == MLK_OK, "enable: %s", mlk_last_error());
  for (int i = 0; i < 3; i++) {
    EXPECT(mlk_model_run_timed(m, 0, &ms) == MLK_OK, "run: %s", mlk_last_error());
    on_ms = i == 0 || ms < on_ms ? ms : on_ms;
  }
  EXPECT(mlk_model_trace_runs(m) == 2, "%d runs kept, expected 2", mlk_model_trace_runs(m));
  uint32_t prev = 0;
  for (int i = 0; i < mlk_model_trace_runs(m); i++) {
    int kernel;
    uint32_t epoch;
    int64_t ntasks;
    const uint64_t *rec = mlk_model_trace_records(m, i, &kernel, &epoch, &ntasks);
    EXPECT(rec && kernel == 0 && epoch > prev, "run %d: kernel %d epoch %u", i, kernel, epoch);
    prev = epoch;
    if (rec)
      check_run(d, rec, kernel, ntasks, blocks);
  }
  EXPECT(mlk_model_trace_records(m, 2, NULL, NULL, NULL) == NULL, "run 2 of 2 kept returned records");
  /* sm_90: the mlp's matvecs take their weights from the stream and stamp their phases; the
   * simulator and older GPUs stamp none */
  int hopper = gpu && strstr(mlk_backend_name(be), "(sm_9");
  EXPECT(hopper ? phased > 0 : phased == 0, "%lld records with tile phases on %s", (long long)phased,
         mlk_backend_name(be));
  printf("%lld records with tile phases\n", (long long)phased);

  char path[1024];
  snprintf(path, sizeof path, "%s/trace_%s.json", dir, gpu ? "gpu" : "cpu");
  EXPECT(mlk_model_trace_write(m, path) == MLK_OK, "write: %s", mlk_last_error());
  size_t n = 0;
  char *json = slurp(path, &n);
  EXPECT(json != NULL, "cannot read %s back", path);
  if (json) {
    int64_t tasks = d->ops[0].ntasks + d->ops[1].ntasks;
    EXPECT(!strncmp(json, "{\"displayTimeUnit\": \"ns\"", 24) && n > 4 && !strcmp(json + n - 4, "\n]}\n"),
           "%s is not one JSON object", path);
    EXPECT(count(json, "\"wait_us\": ") == (size_t)(2 * tasks), "%zu tile slices, expected %lld",
           count(json, "\"wait_us\": "), (long long)(2 * tasks));
    EXPECT(count(json, "\"cat\": \"matvec\"") == (size_t)(2 * tasks), "matvec slices");
    EXPECT(count(json, "\"body_us\": ") == (size_t)phased, "%zu slices with tile phases, %lld records",
           count(json, "\"body_us\": "), (long long)phased);
    EXPECT(count(json, "\"name\": \"process_name\"") == 2, "two processes (runs)");
    free(json);
  }
  char *sum = mlk_model_trace_summary(m);
  EXPECT(sum && strstr(sum, "running tiles") && strstr(sum, "matvec_relu@mlp.mlk:18") &&
             strstr(sum, "2 runs kept"),
         "summary: %s", sum ? sum : mlk_last_error());
  if (sum)
    printf("%s", sum);
  free(sum);
  EXPECT(mlk_model_trace_enable(m, 0) == MLK_OK && mlk_model_trace_runs(m) == 0, "disable");
  EXPECT(mlk_model_trace_enable(m, -1) == MLK_ERR_INVALID, "max_runs -1 accepted");
  mlk_model_free(m);

  /* MLK_TRACE: written when the model is freed */
  snprintf(path, sizeof path, "%s/trace_env_%s.json", dir, gpu ? "gpu" : "cpu");
  remove(path);
  setenv("MLK_TRACE", path, 1);
  setenv("MLK_TRACE_RUNS", "1", 1);
  if (mlk_model_create(be, d, &m) == MLK_OK) {
    for (int t = 0; t < d->ntensors; t++)
      if (d->tensors[t].kind == MLK_TENSOR_PARAM || d->tensors[t].kind == MLK_TENSOR_INPUT)
        mlk_model_fill_tensor(m, t, 0x3c);
    EXPECT(mlk_model_run(m, 0) == MLK_OK && mlk_model_run(m, 0) == MLK_OK, "run: %s", mlk_last_error());
    EXPECT(mlk_model_trace_runs(m) == 1, "MLK_TRACE_RUNS=1 kept %d", mlk_model_trace_runs(m));
    mlk_model_free(m);
    json = slurp(path, &n);
    EXPECT(json && count(json, "\"name\": \"process_name\"") == 1, "MLK_TRACE wrote no trace to %s",
           path);
    free(json);
  } else {
    EXPECT(0, "create with MLK_TRACE: %s", mlk_last_error());
  }
  setenv("MLK_TRACE_RUNS", "zero", 1);
  EXPECT(mlk_model_create(be, d, &m) == MLK_ERR_INVALID && strstr(mlk_last_error(), "MLK_TRACE_RUNS"),
         "MLK_TRACE_RUNS=zero: %s", mlk_last_error());
  unsetenv("MLK_TRACE");
  unsetenv("MLK_TRACE_RUNS");

  printf("fastest run: %.4f ms with tracing off, %.4f ms on\n", off_ms, on_ms);
  mlk_backend_free(be);
  printf("%s\n", failed ? "FAIL" : "ok");
  return failed != 0;
}
