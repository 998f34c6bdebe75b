/* trace.c: timelines of megakernel runs, exported as Chrome trace JSON with a printed summary.
 *
 * With tracing on, every run hands the backend a buffer of MLK_TRACE_WORDS u64 per task (mlk_desc.h):
 * the GPU kernel stamps %globaltimer when a block takes a task, when its waits are satisfied and
 * when it is done (a matvec also stamps its phases: inputs staged, first weights in (streamed)
 * or first sums done (tensor cores), tile done; exported as the tile slice's staged_us, first_us and body_us; and a task sums its
 * waits for streamed chunks and the loader's pumps: chunk_wait_us, issue_us), and the simulator
 * stamps the first three with CLOCK_MONOTONIC. The latest `max_runs`
 * runs are kept in a ring. The export shows one process per run and one thread per block (SM),
 * with a "wait" slice before each tile slice, so a trace viewer (chrome://tracing, Perfetto) shows
 * where each SM waited and on what. The summary splits the blocks' time into running tiles,
 * waiting and idle, and lists the time by op kind and the ops that kept the machine longest.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct TraceRun {
  int kernel;
  uint32_t epoch;
  int64_t batch;
  int64_t ntasks;
  uint64_t *rec; /* ntasks * MLK_TRACE_WORDS */
  size_t cap;    /* u64 allocated in rec */
} TraceRun;

struct MlkTrace {
  int max_runs;
  int nkept;      /* runs in the ring */
  int next;       /* slot the next run writes */
  int pending;    /* slot handed to the backend for the current run, -1: none */
  TraceRun *runs; /* max_runs */
  char *path;     /* MLK_TRACE: written at mlk_model_free */
};

static int64_t kernel_tasks(const MlkModelDesc *d, int kernel) {
  const MlkKernelDesc *k = &d->kernels[kernel];
  int64_t n = 0;
  for (int o = k->first_op; o < k->first_op + k->nops; o++)
    n += d->ops[o].ntasks;
  return n;
}

void mlk_trace_free(mlk_model *m) {
  MlkTrace *t = m->trace;
  if (!t)
    return;
  for (int i = 0; i < t->max_runs; i++)
    free(t->runs[i].rec);
  free(t->runs);
  free(t->path);
  free(t);
  m->trace = NULL;
}

mlk_status mlk_model_trace_enable(mlk_model *m, int max_runs) {
  if (!m)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_model_trace_enable: model is NULL");
  if (max_runs < 0 || max_runs > 100000)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_model_trace_enable: max_runs %d is outside 0..100000",
                         max_runs);
  char *path = m->trace ? m->trace->path : NULL;
  if (m->trace)
    m->trace->path = NULL;
  mlk_trace_free(m);
  if (max_runs == 0) {
    free(path);
    return MLK_OK;
  }
  MlkTrace *t = MLK_CALLOC(1, sizeof *t, "trace");
  if (!t || !(t->runs = MLK_CALLOC((size_t)max_runs, sizeof *t->runs, "trace runs"))) {
    free(t);
    free(path);
    return MLK_ERR_NOMEM;
  }
  t->max_runs = max_runs;
  t->pending = -1;
  t->path = path;
  m->trace = t;
  return MLK_OK;
}

int mlk_model_trace_runs(const mlk_model *m) { return m && m->trace ? m->trace->nkept : 0; }

static const struct TraceRun *kept(const MlkTrace *t, int i);

const uint64_t *mlk_model_trace_records(const mlk_model *m, int i, int *kernel, uint32_t *epoch,
                                        int64_t *ntasks) {
  if (!m || !m->trace || i < 0 || i >= m->trace->nkept) {
    mlk_set_error(MLK_ERR_INVALID, "mlk_model_trace_records: run %d is not kept (%d kept)", i,
                  mlk_model_trace_runs(m));
    return NULL;
  }
  const TraceRun *r = kept(m->trace, i);
  if (kernel)
    *kernel = r->kernel;
  if (epoch)
    *epoch = r->epoch;
  if (ntasks)
    *ntasks = r->ntasks;
  return r->rec;
}

mlk_status mlk_trace_from_env(mlk_model *m) {
  const char *path = getenv("MLK_TRACE");
  if (!path || !*path)
    return MLK_OK;
  int64_t runs;
  mlk_status st = mlk_env_int("MLK_TRACE_RUNS", 1, 100000, 8, &runs);
  if (st || (st = mlk_model_trace_enable(m, (int)runs)))
    return st;
  if (!(m->trace->path = strdup(path)))
    return MLK_ERROR_AT(MLK_ERR_NOMEM, "strdup(MLK_TRACE) failed");
  return MLK_OK;
}

uint64_t *mlk_trace_buffer(mlk_model *m, int kernel) {
  MlkTrace *t = m->trace;
  if (!t)
    return NULL;
  TraceRun *r = &t->runs[t->next];
  int64_t n = kernel_tasks(m->desc, kernel);
  size_t words = (size_t)(n ? n : 1) * MLK_TRACE_WORDS;
  if (r->cap < words) {
    uint64_t *p = realloc(r->rec, words * sizeof *p);
    if (!p)
      return NULL; /* a run without its trace, never a failed run */
    r->rec = p;
    r->cap = words;
  }
  memset(r->rec, 0, words * sizeof *r->rec);
  r->kernel = kernel;
  r->ntasks = n;
  r->batch = m->batch;
  t->pending = t->next;
  return r->rec;
}

void mlk_trace_commit(mlk_model *m, uint32_t epoch, int ok) {
  MlkTrace *t = m->trace;
  if (!t || t->pending < 0)
    return;
  if (ok) {
    t->runs[t->pending].epoch = epoch;
    t->next = (t->next + 1) % t->max_runs;
    if (t->nkept < t->max_runs)
      t->nkept++;
  }
  t->pending = -1;
}

/* The kept runs, oldest first: the i-th. */
static const TraceRun *kept(const MlkTrace *t, int i) {
  int first = (t->next - t->nkept + t->max_runs) % t->max_runs;
  return &t->runs[(first + i) % t->max_runs];
}

/* A record is complete when all three stamps were written (a run that failed is never kept, but
 * the export stays robust to a partial record). */
static int complete(const uint64_t *r) {
  return r[MLK_TRACE_START] && r[MLK_TRACE_READY] >= r[MLK_TRACE_START] &&
         r[MLK_TRACE_END] >= r[MLK_TRACE_READY];
}

static void run_bounds(const TraceRun *r, uint64_t *t0, uint64_t *t1, int *blocks) {
  *t0 = UINT64_MAX;
  *t1 = 0;
  *blocks = 0;
  for (int64_t i = 0; i < r->ntasks; i++) {
    const uint64_t *x = r->rec + i * MLK_TRACE_WORDS;
    if (!complete(x))
      continue;
    if (x[MLK_TRACE_START] < *t0)
      *t0 = x[MLK_TRACE_START];
    if (x[MLK_TRACE_END] > *t1)
      *t1 = x[MLK_TRACE_END];
    int b = x[MLK_TRACE_BLOCK] < INT32_MAX ? (int)x[MLK_TRACE_BLOCK] + 1 : 0;
    if (b > *blocks)
      *blocks = b;
  }
  if (*t0 > *t1)
    *t0 = *t1 = 0;
}

/* The op (global index) of a record, or -1 for a garbled word. */
static int record_op(const MlkModelDesc *d, const TraceRun *r, const uint64_t *x, int64_t *task) {
  const MlkKernelDesc *k = &d->kernels[r->kernel];
  MlkTaskWord word = x[MLK_TRACE_TASK];
  uint32_t o = MLK_TASK_OP(word);
  *task = MLK_TASK_INDEX(word);
  if (o >= (uint32_t)k->nops || *task >= d->ops[k->first_op + (int)o].ntasks)
    return -1;
  return k->first_op + (int)o;
}

static void json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      fprintf(f, "\\%c", ch);
    else if (ch < 0x20)
      fprintf(f, "\\u%04x", ch);
    else
      fputc(ch, f);
  }
  fputc('"', f);
}

/* Microseconds with nanosecond digits, as the trace format wants them. */
static void json_us(FILE *f, uint64_t ns) {
  fprintf(f, "%llu.%03llu", (unsigned long long)(ns / 1000), (unsigned long long)(ns % 1000));
}

mlk_status mlk_model_trace_write(const mlk_model *m, const char *path) {
  if (!m || !path)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_model_trace_write: %s is NULL", m ? "path" : "model");
  const MlkTrace *t = m->trace;
  if (!t)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_model_trace_write: tracing is off for model '%s' "
                         "(mlk_model_trace_enable or MLK_TRACE=file.json)", m->desc->name);
  FILE *f = fopen(path, "w");
  if (!f)
    return MLK_ERROR_AT(MLK_ERR_IO, "cannot write the trace '%s': %s", path, strerror(errno));
  const MlkModelDesc *d = m->desc;
  fprintf(f, "{\"displayTimeUnit\": \"ns\", \"otherData\": {\"model\": ");
  json_string(f, d->name);
  fprintf(f, ", \"backend\": ");
  json_string(f, mlk_backend_name(m->be));
  fprintf(f, "},\n\"traceEvents\": [\n");
  const char *sep = "";
  for (int i = 0; i < t->nkept; i++) {
    const TraceRun *r = kept(t, i);
    uint64_t t0, t1;
    int blocks;
    run_bounds(r, &t0, &t1, &blocks);
    int pid = i + 1;
    char pname[256];
    snprintf(pname, sizeof pname, "run %u of %s (batch %lld, %.3f ms)", r->epoch,
             d->kernels[r->kernel].name, (long long)r->batch, (double)(t1 - t0) * 1e-6);
    fprintf(f, "%s{\"ph\": \"M\", \"name\": \"process_name\", \"pid\": %d, \"args\": {\"name\": ", sep,
            pid);
    json_string(f, pname);
    fprintf(f, "}},\n{\"ph\": \"M\", \"name\": \"process_sort_index\", \"pid\": %d, \"args\": "
               "{\"sort_index\": %d}}",
            pid, pid);
    sep = ",\n";
    for (int b = 0; b < blocks; b++)
      fprintf(f, ",\n{\"ph\": \"M\", \"name\": \"thread_name\", \"pid\": %d, \"tid\": %d, \"args\": "
                 "{\"name\": \"%s %d\"}}",
              pid, b, mlk_backend_is_gpu(m->be) ? "SM block" : "sim thread", b);
    for (int64_t j = 0; j < r->ntasks; j++) {
      const uint64_t *x = r->rec + j * MLK_TRACE_WORDS;
      int64_t task;
      int o;
      if (!complete(x) || (o = record_op(d, r, x, &task)) < 0)
        continue;
      const MlkOpDesc *op = &d->ops[o];
      int b = (int)x[MLK_TRACE_BLOCK];
      uint64_t s = x[MLK_TRACE_START] - t0, rd = x[MLK_TRACE_READY] - t0, e = x[MLK_TRACE_END] - t0;
      if (rd > s) {
        fprintf(f, ",\n{\"ph\": \"X\", \"name\": \"wait\", \"cat\": \"wait\", \"pid\": %d, \"tid\": %d, "
                   "\"ts\": ", pid, b);
        json_us(f, s);
        fprintf(f, ", \"dur\": ");
        json_us(f, rd - s);
        fprintf(f, ", \"args\": {\"for\": ");
        json_string(f, op->name);
        fprintf(f, ", \"task\": %lld}}", (long long)task);
      }
      fprintf(f, ",\n{\"ph\": \"X\", \"name\": ");
      json_string(f, op->name);
      fprintf(f, ", \"cat\": \"%s\", \"pid\": %d, \"tid\": %d, \"ts\": ", mlk_op_kind_name(op->kind),
              pid, b);
      json_us(f, rd);
      fprintf(f, ", \"dur\": ");
      json_us(f, e - rd);
      fprintf(f, ", \"args\": {\"task\": %lld, \"of\": %lld, \"wait_us\": ", (long long)task,
              (long long)op->ntasks);
      json_us(f, rd - s);
      /* a tile's phases, from its start (READY), when it stamped them in order */
      static const char *const phase[MLK_TRACE_PHASES] = {"staged_us", "first_us", "body_us"};
      uint64_t prev = x[MLK_TRACE_READY];
      for (int ph = 0; ph < MLK_TRACE_PHASES; ph++) {
        uint64_t at = x[MLK_TRACE_STAGED + ph];
        if (!at || at < prev || at > x[MLK_TRACE_END])
          break;
        fprintf(f, ", \"%s\": ", phase[ph]);
        json_us(f, at - x[MLK_TRACE_READY]);
        prev = at;
      }
      /* a streamed task's summed waits for its chunks and the loader's pumps, when stamped */
      if (x[MLK_TRACE_CHUNK_WAIT] || x[MLK_TRACE_ISSUE]) {
        fprintf(f, ", \"chunk_wait_us\": ");
        json_us(f, x[MLK_TRACE_CHUNK_WAIT]);
        fprintf(f, ", \"issue_us\": ");
        json_us(f, x[MLK_TRACE_ISSUE]);
      }
      fprintf(f, "}}");
    }
  }
  fprintf(f, "\n]}\n");
  int bad = ferror(f);
  if (fclose(f) || bad)
    return MLK_ERROR_AT(MLK_ERR_IO, "writing the trace '%s' failed", path);
  return MLK_OK;
}

/* ---- the summary ---- */

typedef struct OpSum {
  double run_ns, wait_ns;
  uint64_t first, last; /* window of the op in the run: first tile start .. last task end */
  double window_ns;
  int64_t tasks;
} OpSum;

typedef struct Buf {
  char *s;
  size_t len, cap;
  int oom;
} Buf;

static void bprintf(Buf *b, const char *fmt, ...) MLK_PRINTF(2, 3);
static void bprintf(Buf *b, const char *fmt, ...) {
  if (b->oom)
    return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->oom = 1;
      return;
    }
    if (b->s && b->len + (size_t)n < b->cap) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = (b->cap ? b->cap * 2 : 4096) + (size_t)n;
    char *p = realloc(b->s, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->s = p;
    b->cap = cap;
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static const OpSum *g_sort_ops; /* qsort has no context argument in C11 */
static int cmp_op_run(const void *a, const void *b) {
  double x = g_sort_ops[*(const int *)a].run_ns, y = g_sort_ops[*(const int *)b].run_ns;
  return x > y ? -1 : x < y;
}

char *mlk_model_trace_summary(const mlk_model *m) {
  if (!m || !m->trace || m->trace->nkept == 0) {
    mlk_set_error(MLK_ERR_INVALID, "mlk_model_trace_summary: no traced run%s",
                  m && !m->trace ? " (tracing is off)" : "");
    return NULL;
  }
  const MlkTrace *t = m->trace;
  const MlkModelDesc *d = m->desc;
  Buf b = {0};
  /* Summaries are per kernel: a model's kernels are different programs. */
  for (int k = 0; k < d->nkernels; k++) {
    const MlkKernelDesc *kd = &d->kernels[k];
    int nruns = 0, blocks = 0;
    for (int i = 0; i < t->nkept; i++)
      nruns += kept(t, i)->kernel == k;
    if (!nruns)
      continue;
    OpSum *ops = calloc((size_t)kd->nops, sizeof *ops);
    double *spans = calloc((size_t)nruns, sizeof *spans);
    int *order = calloc((size_t)kd->nops, sizeof *order);
    if (!ops || !spans || !order) {
      free(ops);
      free(spans);
      free(order);
      b.oom = 1;
      break;
    }
    double run_ns = 0, wait_ns = 0, block_ns = 0;
    int64_t ntasks = 0;
    int r_i = 0;
    for (int i = 0; i < t->nkept; i++) {
      const TraceRun *r = kept(t, i);
      if (r->kernel != k)
        continue;
      uint64_t t0, t1;
      int nb;
      run_bounds(r, &t0, &t1, &nb);
      if (nb > blocks)
        blocks = nb;
      spans[r_i++] = (double)(t1 - t0);
      ntasks = r->ntasks;
      for (int o = 0; o < kd->nops; o++)
        ops[o].first = UINT64_MAX, ops[o].last = 0;
      for (int64_t j = 0; j < r->ntasks; j++) {
        const uint64_t *x = r->rec + j * MLK_TRACE_WORDS;
        int64_t task;
        int o;
        if (!complete(x) || (o = record_op(d, r, x, &task)) < 0)
          continue;
        OpSum *s = &ops[o - kd->first_op];
        s->run_ns += (double)(x[MLK_TRACE_END] - x[MLK_TRACE_READY]);
        s->wait_ns += (double)(x[MLK_TRACE_READY] - x[MLK_TRACE_START]);
        s->tasks++;
        if (x[MLK_TRACE_READY] < s->first)
          s->first = x[MLK_TRACE_READY];
        if (x[MLK_TRACE_END] > s->last)
          s->last = x[MLK_TRACE_END];
      }
      for (int o = 0; o < kd->nops; o++)
        if (ops[o].last >= ops[o].first && ops[o].last)
          ops[o].window_ns += (double)(ops[o].last - ops[o].first);
    }
    for (int o = 0; o < kd->nops; o++) {
      run_ns += ops[o].run_ns;
      wait_ns += ops[o].wait_ns;
    }
    double span_sum = 0;
    for (int i = 0; i < nruns; i++)
      span_sum += spans[i];
    block_ns = span_sum * blocks;
    qsort(spans, (size_t)nruns, sizeof *spans, cmp_double);
    double pct_run = block_ns > 0 ? 100.0 * run_ns / block_ns : 0;
    double pct_wait = block_ns > 0 ? 100.0 * wait_ns / block_ns : 0;
    bprintf(&b, "trace of model '%s', megakernel '%s' on %s: %d run%s kept, %d blocks, %lld tasks a run\n",
            d->name, kd->name, mlk_backend_name(m->be), nruns, nruns == 1 ? "" : "s", blocks,
            (long long)ntasks);
    bprintf(&b, "  span (first task taken .. last task done): median %.3f ms, min %.3f, max %.3f\n",
            spans[nruns / 2] * 1e-6, spans[0] * 1e-6, spans[nruns - 1] * 1e-6);
    bprintf(&b, "  blocks' time: %.1f%% running tiles, %.1f%% waiting on events, %.1f%% idle "
                "(between tasks, or done with their queue)\n",
            pct_run, pct_wait, 100.0 - pct_run - pct_wait < 0 ? 0.0 : 100.0 - pct_run - pct_wait);
    /* by kind */
    bprintf(&b, "  %-10s %6s %12s %12s %12s   (per run; run/wait summed over blocks)\n", "op kind",
            "ops", "tasks", "run us", "wait us");
    for (int kind = 0; kind <= MLK_OP_LAST; kind++) {
      double rn = 0, wn = 0;
      int64_t tasks = 0;
      int nops = 0;
      for (int o = 0; o < kd->nops; o++)
        if ((int)d->ops[kd->first_op + o].kind == kind) {
          rn += ops[o].run_ns;
          wn += ops[o].wait_ns;
          tasks += ops[o].tasks;
          nops++;
        }
      if (nops)
        bprintf(&b, "  %-10s %6d %12lld %12.1f %12.1f\n", mlk_op_kind_name((MlkOpKind)kind), nops,
                (long long)(tasks / nruns), rn / nruns * 1e-3, wn / nruns * 1e-3);
    }
    for (int o = 0; o < kd->nops; o++)
      order[o] = o;
    g_sort_ops = ops;
    qsort(order, (size_t)kd->nops, sizeof *order, cmp_op_run);
    int top = kd->nops < 10 ? kd->nops : 10;
    bprintf(&b, "  top %d ops by running time (per run): %-28s %7s %10s %10s %10s\n", top, "", "tasks",
            "run us", "wait us", "window us");
    for (int i = 0; i < top; i++) {
      const OpSum *s = &ops[order[i]];
      bprintf(&b, "    %-63s %7lld %10.1f %10.1f %10.1f\n", d->ops[kd->first_op + order[i]].name,
              (long long)(s->tasks / nruns), s->run_ns / nruns * 1e-3, s->wait_ns / nruns * 1e-3,
              s->window_ns / nruns * 1e-3);
    }
    free(ops);
    free(spans);
    free(order);
  }
  if (b.oom) {
    free(b.s);
    MLK_ERROR_AT(MLK_ERR_NOMEM, "out of memory formatting the trace summary");
    return NULL;
  }
  return b.s;
}

void mlk_trace_at_free(mlk_model *m) {
  MlkTrace *t = m->trace;
  if (!t || !t->path)
    return;
  if (t->nkept == 0) {
    fprintf(stderr, "mlk: MLK_TRACE: model '%s' ran no megakernel, no trace written\n", m->desc->name);
    return;
  }
  if (mlk_model_trace_write(m, t->path) != MLK_OK) {
    fprintf(stderr, "mlk: MLK_TRACE: %s\n", mlk_last_error());
    return;
  }
  char *s = mlk_model_trace_summary(m);
  fprintf(stderr, "mlk: wrote the trace of %d run%s to %s\n%s", t->nkept, t->nkept == 1 ? "" : "s",
          t->path, s ? s : "");
  free(s);
}
