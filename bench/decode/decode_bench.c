/* decode_bench.c: the mlkc side of bench/decode. Decode steps of a model compiled by mlkc
 * (examples/llama/llama.mlk for the H200 run, the tests' llama_tiny for the plumbing test) at a
 * list of (batch, context) points in one process, and the start of the process: the time from
 * its launch to the model ready (module loaded, every tensor allocated), with or without a cubin
 * cache hit.
 *
 *   decode_bench [--points=B:C,B:C,...] [--steps=N] [--min-steps=N] [--warmup=N]
 *                [--budget-ms=T] [--kv-context=N] [--kv-fill=BYTE] [--start-only]
 *                [--label=NAME] [--json=FILE]
 *
 * Method (docs/performance.md): random bf16 weights (values do not change the timing); the KV
 * caches filled with one non-zero byte pattern (--kv-fill, 0x3c: every bf16 element 0.0115), so
 * that a point at context C reads C cached positions per row without C decode steps to fill them
 * (a batch-64 step costs tens of ms). Every step of a point runs at position C in every row: it
 * reads positions 0..C and writes position C, the same work each step. Before every step: fresh
 * random tokens, every output poisoned (0xff: NaN in f32, -1 in i32); after it every output is
 * read back and checked (f32 finite, tokens in range), outside the timed region. Device time per
 * step with CUDA events around the launch (mlk_model_run_timed; wall time on the CPU
 * simulator); after `warmup` steps, `steps` timed ones, fewer when they would take more than
 * `budget-ms` (never fewer than `min-steps`); median, p10, p90.
 *
 * Start: the clock starts at DECODE_BENCH_T0_NS (CLOCK_MONOTONIC nanoseconds, set by the launcher
 * just before exec, bench/decode/run.sh), else at main(); it stops when mlk_model_create_opt
 * returns. The KV context is sized for the longest point (context + 1 positions) through
 * mlk_model_options.kv_context. The cubin cache is MLK_CACHE_DIR's (an empty directory gives a
 * cold start).
 *
 * Output: a line of text per record on stdout, and with --json one JSON object per line appended
 * to FILE: {"kind": "start", ...}, {"kind": "weights", ...}, {"kind": "point", ...} and
 * {"kind": "error", ...}. bench/decode/report.py reads them. Exit status 1 when anything failed.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mlk.h"

#ifndef BENCH_DESC
#define BENCH_DESC llama_desc
#endif
extern const MlkModelDesc BENCH_DESC;

#define MAX_POINTS 64
#define MAX_BATCH 4096

typedef struct Point {
  int batch, context;
} Point;

typedef struct Opts {
  Point points[MAX_POINTS];
  int npoints;
  int steps, min_steps, warmup; /* warmup -1: max(3, steps / 10) */
  double budget_ms;
  int64_t kv_context;           /* 0: the longest point's context + 1 */
  int kv_fill;
  int start_only;
  const char *label;
  const char *json;
} Opts;

static FILE *json_out;

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_u64(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Writes s as a JSON string. */
static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; s && *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      fprintf(f, "\\%c", c);
    else if (c < 0x20)
      fprintf(f, "\\u%04x", c);
    else
      fputc(c, f);
  }
  fputc('"', f);
}

/* An error record (JSON) and its line on stderr. */
static void report_error(const char *where, const Point *p) {
  if (p)
    fprintf(stderr, "decode_bench: %s (batch %d, context %d): %s\n", where, p->batch, p->context,
            mlk_last_error());
  else
    fprintf(stderr, "decode_bench: %s: %s\n", where, mlk_last_error());
  if (!json_out)
    return;
  fprintf(json_out, "{\"kind\": \"error\", \"where\": ");
  json_str(json_out, where);
  if (p)
    fprintf(json_out, ", \"batch\": %d, \"context\": %d", p->batch, p->context);
  fprintf(json_out, ", \"message\": ");
  json_str(json_out, mlk_last_error());
  fprintf(json_out, "}\n");
  fflush(json_out);
}

static int parse_int(const char *s, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi)
    return -1;
  *out = v;
  return 0;
}

/* "1:128,4:128,16:2048" */
static int parse_points(const char *s, Opts *o) {
  o->npoints = 0;
  while (*s) {
    char *end;
    long b = strtol(s, &end, 10);
    if (end == s || *end != ':')
      return -1;
    s = end + 1;
    long c = strtol(s, &end, 10);
    if (end == s || (*end && *end != ','))
      return -1;
    if (b < 1 || b > MAX_BATCH || c < 0 || c > (1L << 24) - 1 || o->npoints == MAX_POINTS)
      return -1;
    o->points[o->npoints++] = (Point){(int)b, (int)c};
    s = *end ? end + 1 : end;
  }
  return o->npoints ? 0 : -1;
}

static int parse_args(int argc, char **argv, Opts *o) {
  *o = (Opts){.steps = 50, .min_steps = 20, .warmup = -1, .budget_ms = 3000, .kv_fill = 0x3c};
  parse_points("1:128,4:128,16:128,64:128,1:2048,4:2048,16:2048,64:2048", o);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = strchr(a, '=');
    v = v ? v + 1 : "";
    long n = 0;
    int bad = 0;
    if (!strncmp(a, "--points=", 9))
      bad = parse_points(v, o);
    else if (!strncmp(a, "--steps=", 8))
      bad = parse_int(v, 1, 1000000, &n), o->steps = (int)n;
    else if (!strncmp(a, "--min-steps=", 12))
      bad = parse_int(v, 1, 1000000, &n), o->min_steps = (int)n;
    else if (!strncmp(a, "--warmup=", 9))
      bad = parse_int(v, 0, 1000000, &n), o->warmup = (int)n;
    else if (!strncmp(a, "--budget-ms=", 12))
      bad = parse_int(v, 1, 100000000, &n), o->budget_ms = (double)n;
    else if (!strncmp(a, "--kv-context=", 13))
      bad = parse_int(v, 1, 1L << 24, &n), o->kv_context = n;
    else if (!strncmp(a, "--kv-fill=", 10))
      bad = parse_int(v, 1, 255, &n), o->kv_fill = (int)n;
    else if (!strcmp(a, "--start-only"))
      o->start_only = 1;
    else if (!strncmp(a, "--label=", 8))
      o->label = v;
    else if (!strncmp(a, "--json=", 7))
      o->json = v;
    else
      bad = -1;
    if (bad) {
      fprintf(stderr, "decode_bench: bad argument '%s'\n", a);
      return -1;
    }
  }
  if (o->min_steps > o->steps)
    o->min_steps = o->steps;
  if (o->warmup < 0)
    o->warmup = o->steps / 10 > 3 ? o->steps / 10 : 3;
  return 0;
}

/* Random values for a param: norm weights (names with "ln" or "norm") 1 + 0.05 u, the embedding
 * u, the rest 0.03 u, u uniform in (-1, 1) in steps of 2^-15: each 16 random bits pick one of
 * 65536 values from a table (bf16 rounded to nearest even, or f32), four per 64-bit draw, so that
 * the 1.2 G weights of Llama-3.2-1B take seconds, not tens. Params of other dtypes: random bytes. */
static int fill_param(mlk_model *m, int t, void *buf) {
  const MlkTensorDesc *td = &mlk_model_desc(m)->tensors[t];
  float center = 0, scale = 0.03f;
  if (strstr(td->name, "ln") || strstr(td->name, "norm"))
    center = 1, scale = 0.05f;
  else if (strstr(td->name, "embed"))
    scale = 1.0f;
  static float table[65536];
  static uint16_t table_bf16[65536];
  for (int r = 0; r < 65536; r++) {
    table[r] = center + scale * (float)((r + 0.5) / 32768.0 - 1.0);
    table_bf16[r] = mlk_f32_to_bf16(table[r]);
  }
  size_t bytes = mlk_model_tensor_bytes(m, t), n = bytes / mlk_dtype_size(td->dtype);
  if (td->dtype == MLK_BF16 || td->dtype == MLK_F32) {
    for (size_t i = 0; i < n; i += 4) {
      uint64_t r = next_u64();
      for (size_t k = i; k < i + 4 && k < n; k++, r >>= 16) {
        if (td->dtype == MLK_BF16)
          ((uint16_t *)buf)[k] = table_bf16[r & 0xffff];
        else
          ((float *)buf)[k] = table[r & 0xffff];
      }
    }
  } else { /* other dtypes: random bytes */
    for (size_t i = 0; i < bytes; i++)
      ((uint8_t *)buf)[i] = (uint8_t)(next_u64() >> 56);
  }
  return mlk_model_set_tensor(m, t, buf, bytes) == MLK_OK ? 0 : -1;
}

/* Bytes of the KV caches per cached position of one row (K and V of every layer). */
static double kv_bytes_per_token(const MlkModelDesc *d) {
  double b = 0;
  for (int c = 0; c < d->ncaches; c++) {
    const MlkCacheDesc *cd = &d->caches[c];
    b += 2.0 * (double)(cd->layers * cd->kv_heads * cd->head_dim) * (double)mlk_dtype_size(cd->dtype);
  }
  return b;
}

typedef struct Model {
  mlk_model *m;
  int tokens_t, pos_t;
  int outs[16], nouts;
  int64_t vocab;     /* token ids are in [0, vocab): the columns of the f32 output (logits) */
  void *host;        /* room for the largest output at batch_max */
} Model;

/* Checks every output after a step: f32 finite (the NaN poison overwritten), i32 in [0, vocab). */
static int check_outputs(Model *md, const Point *p) {
  const MlkModelDesc *d = mlk_model_desc(md->m);
  for (int i = 0; i < md->nouts; i++) {
    int t = md->outs[i];
    const MlkTensorDesc *td = &d->tensors[t];
    size_t bytes = mlk_model_tensor_bytes(md->m, t);
    if (mlk_model_get_tensor(md->m, t, md->host, bytes))
      return -1;
    size_t n = bytes / mlk_dtype_size(td->dtype);
    for (size_t k = 0; k < n; k++) {
      int ok = 1;
      if (td->dtype == MLK_F32)
        ok = isfinite(((float *)md->host)[k]);
      else if (td->dtype == MLK_I32)
        ok = ((int32_t *)md->host)[k] >= 0 && ((int32_t *)md->host)[k] < md->vocab;
      if (!ok) {
        fprintf(stderr, "decode_bench: FAIL: batch %d, context %d: output '%s' element %zu was not "
                "written or is out of range\n", p->batch, p->context, td->name, k);
        return -2;
      }
    }
  }
  return 0;
}

/* One decode step at point p: fresh tokens, outputs poisoned, the timed launch, outputs checked. */
static int step(Model *md, const Point *p, double *ms) {
  int32_t tokens[MAX_BATCH], pos[MAX_BATCH];
  for (int b = 0; b < p->batch; b++) {
    tokens[b] = (int32_t)(next_u64() % (uint64_t)md->vocab);
    pos[b] = p->context;
  }
  size_t ib = (size_t)p->batch * sizeof(int32_t);
  if (mlk_model_set_tensor(md->m, md->tokens_t, tokens, ib) ||
      mlk_model_set_tensor(md->m, md->pos_t, pos, ib))
    return -1;
  for (int i = 0; i < md->nouts; i++)
    if (mlk_model_fill_tensor(md->m, md->outs[i], 0xff))
      return -1;
  if (mlk_model_run_timed(md->m, 0, ms))
    return -1;
  return check_outputs(md, p);
}

static int run_point(Model *md, const Point *p, const Opts *o, double weight_bytes, double kv_tok) {
  if (mlk_model_set_batch(md->m, p->batch)) {
    report_error("mlk_model_set_batch", p);
    return -1;
  }
  double warm[64], *ms = malloc(sizeof(double) * (size_t)o->steps);
  int nw = o->warmup < 64 ? o->warmup : 64, rc = 0;
  if (!ms) {
    fprintf(stderr, "decode_bench: out of host memory\n");
    return -1;
  }
  for (int i = 0; i < o->warmup && !rc; i++) {
    double t;
    rc = step(md, p, &t);
    if (i < 64)
      warm[i] = t;
  }
  int steps = o->steps;
  if (!rc && nw > 0) {
    qsort(warm, (size_t)nw, sizeof *warm, cmp_double);
    double est = warm[nw / 2];
    if (est > 0 && o->budget_ms / est < steps)
      steps = (int)(o->budget_ms / est) > o->min_steps ? (int)(o->budget_ms / est) : o->min_steps;
  }
  for (int i = 0; i < steps && !rc; i++)
    rc = step(md, p, &ms[i]);
  if (rc) {
    if (rc == -1)
      report_error("decode step", p);
    else if (json_out) {
      fprintf(json_out, "{\"kind\": \"error\", \"where\": \"output check\", \"batch\": %d, \"context\": "
              "%d, \"message\": \"an output was not written or is out of range\"}\n", p->batch, p->context);
      fflush(json_out);
    }
    free(ms);
    return -1;
  }
  qsort(ms, (size_t)steps, sizeof *ms, cmp_double);
  double med = steps % 2 ? ms[steps / 2] : 0.5 * (ms[steps / 2 - 1] + ms[steps / 2]);
  double p10 = ms[steps / 10], p90 = ms[(steps * 9) / 10 < steps ? (steps * 9) / 10 : steps - 1];
  double sum = 0;
  for (int i = 0; i < steps; i++)
    sum += ms[i];
  double kv_bytes = kv_tok * p->context * p->batch;
  printf("batch %2d, context %5d: median %.4f ms, p10 %.4f, p90 %.4f, min %.4f over %d steps (%d "
         "warm-up); %.3f GB of weights + %.3f GB of KV\n", p->batch, p->context, med, p10, p90, ms[0],
         steps, o->warmup, weight_bytes / 1e9, kv_bytes / 1e9);
  if (json_out) {
    fprintf(json_out, "{\"kind\": \"point\", \"batch\": %d, \"context\": %d, \"steps\": %d, \"warmup\": %d, "
            "\"median_ms\": %.6f, \"p10_ms\": %.6f, \"p90_ms\": %.6f, \"min_ms\": %.6f, \"max_ms\": %.6f, "
            "\"mean_ms\": %.6f, \"weight_bytes\": %.0f, \"kv_bytes\": %.0f, \"checked\": true}\n",
            p->batch, p->context, steps, o->warmup, med, p10, p90, ms[0], ms[steps - 1], sum / steps,
            weight_bytes, kv_bytes);
    fflush(json_out);
  }
  free(ms);
  return 0;
}

/* Random weights, the KV caches filled, then every point. 0, or 1 when anything failed. */
static int run_points(mlk_model *m, const Opts *o, int gpu) {
  const MlkModelDesc *d = mlk_model_desc(m);
  Model md = {.m = m, .tokens_t = mlk_model_find_tensor(m, "tokens"),
              .pos_t = mlk_model_find_tensor(m, "pos")};
  size_t max_param = 0, max_out = 0;
  double weight_bytes = 0, kv_tok = kv_bytes_per_token(d);
  for (int t = 0; t < d->ntensors; t++) {
    const MlkTensorDesc *td = &d->tensors[t];
    size_t bytes = (size_t)td->numel * mlk_dtype_size(td->dtype);
    if (td->kind == MLK_TENSOR_PARAM) {
      weight_bytes += (double)bytes;
      max_param = bytes > max_param ? bytes : max_param;
    } else if (td->kind == MLK_TENSOR_OUTPUT && md.nouts < 16) {
      md.outs[md.nouts++] = t;
      max_out = bytes > max_out ? bytes : max_out;
      if (td->dtype == MLK_F32 && td->batched && td->rank == 2)
        md.vocab = td->shape[1];
    }
  }
  if (md.tokens_t < 0 || md.pos_t < 0 || md.vocab < 1) {
    fprintf(stderr, "decode_bench: model '%s' needs inputs 'tokens' and 'pos' and an f32 output [B, V]\n",
            d->name);
    return 1;
  }
  void *buf = malloc(max_param ? max_param : 1);
  md.host = malloc(max_out ? max_out : 1);
  int failed = 0;
  if (!buf || !md.host) {
    fprintf(stderr, "decode_bench: out of host memory\n");
    failed = 1;
  }
  /* Weights, generated then uploaded param by param through one host buffer. */
  double t_w = now_ms();
  for (int t = 0; t < d->ntensors && !failed; t++)
    if (d->tensors[t].kind == MLK_TENSOR_PARAM && fill_param(m, t, buf)) {
      report_error("mlk_model_set_tensor", NULL);
      failed = 1;
    }
  free(buf);
  /* The caches: one byte pattern everywhere (see the top comment). */
  for (int c = 0; c < d->ncaches && !failed; c++)
    if (mlk_model_fill_tensor(m, d->caches[c].tensor, (uint8_t)o->kv_fill)) {
      report_error("mlk_model_fill_tensor (KV cache)", NULL);
      failed = 1;
    }
  if (!failed) {
    double setup_ms = now_ms() - t_w;
    printf("weights: %.3f GB, random, generated and uploaded in %.0f ms; KV caches filled with 0x%02x\n",
           weight_bytes / 1e9, setup_ms, o->kv_fill);
    if (json_out) {
      fprintf(json_out, "{\"kind\": \"weights\", \"bytes\": %.0f, \"setup_ms\": %.1f, "
              "\"kv_bytes_per_token\": %.0f, \"kv_fill\": %d, \"device_time\": %s}\n", weight_bytes,
              setup_ms, kv_tok, o->kv_fill, gpu ? "true" : "false");
      fflush(json_out);
    }
    for (int i = 0; i < o->npoints; i++)
      if (run_point(&md, &o->points[i], o, weight_bytes, kv_tok))
        failed = 1;
  }
  free(md.host);
  return failed;
}

int main(int argc, char **argv) {
  double t_main = now_ms();
  Opts o;
  if (parse_args(argc, argv, &o))
    return 2;
  /* The launcher's clock reading, when it is a sane one (in the past, within a minute). */
  double t0 = t_main;
  const char *t0_env = getenv("DECODE_BENCH_T0_NS");
  int t0_from_launcher = 0;
  if (t0_env && *t0_env) {
    double v = strtod(t0_env, NULL) * 1e-6;
    if (v > 0 && v <= t_main && t_main - v < 60e3)
      t0 = v, t0_from_launcher = 1;
  }
  if (o.json && !(json_out = fopen(o.json, "a"))) {
    fprintf(stderr, "decode_bench: cannot open '%s': %s\n", o.json, strerror(errno));
    return 2;
  }
  const MlkModelDesc *d = &BENCH_DESC;
  int64_t kv_context = o.kv_context;
  for (int i = 0; i < o.npoints; i++) {
    if (o.points[i].batch < d->batch_min || o.points[i].batch > d->batch_max) {
      fprintf(stderr, "decode_bench: batch %d is outside %lld..%lld, the batches of model '%s'\n",
              o.points[i].batch, (long long)d->batch_min, (long long)d->batch_max, d->name);
      return 2;
    }
    if (!o.kv_context && o.points[i].context + 1 > kv_context)
      kv_context = o.points[i].context + 1;
    if (o.kv_context && o.points[i].context + 1 > o.kv_context) {
      fprintf(stderr, "decode_bench: context %d needs --kv-context of at least %d\n", o.points[i].context,
              o.points[i].context + 1);
      return 2;
    }
  }

  mlk_backend *be;
  if (mlk_backend_create(MLK_BACKEND_AUTO, &be)) {
    report_error("mlk_backend_create", NULL);
    return 1;
  }
  double t_backend = now_ms();
  mlk_model_options mo = {.kv_context = kv_context};
  mlk_model *m;
  if (mlk_model_create_opt(be, d, &mo, &m)) {
    report_error("mlk_model_create_opt", NULL);
    mlk_backend_free(be);
    return 1;
  }
  double t_ready = now_ms();
  int gpu = mlk_backend_is_gpu(be);
  printf("backend: %s%s%s\n", mlk_backend_name(be), *mlk_backend_note(be) ? "; " : "", mlk_backend_note(be));
  printf("start (%s): %.1f ms from %s to the model ready: backend %.1f ms, model %.1f ms (module load "
         "%.1f ms, %s); KV context %lld, %lld pages\n", o.label ? o.label : "-", t_ready - t0,
         t0_from_launcher ? "the launch" : "main()", t_backend - t_main, t_ready - t_backend,
         mlk_model_load_ms(m), mlk_model_load_note(m), (long long)mlk_model_kv_context(m),
         (long long)mlk_model_kv_pages(m));
  if (json_out) {
    fprintf(json_out, "{\"kind\": \"start\", \"label\": ");
    json_str(json_out, o.label ? o.label : "");
    fprintf(json_out, ", \"model\": ");
    json_str(json_out, d->name);
    fprintf(json_out, ", \"backend\": ");
    json_str(json_out, mlk_backend_name(be));
    fprintf(json_out, ", \"gpu\": %s, \"start_ms\": %.3f, \"t0\": \"%s\", \"before_main_ms\": %.3f, "
            "\"backend_ms\": %.3f, \"create_ms\": %.3f, \"load_ms\": %.3f, \"cache_hit\": %d, "
            "\"builtin_cubin\": %d, \"load_note\": ",
            gpu ? "true" : "false", t_ready - t0, t0_from_launcher ? "launch" : "main", t_main - t0,
            t_backend - t_main, t_ready - t_backend, mlk_model_load_ms(m), mlk_model_cache_hit(m),
            mlk_model_builtin_cubin(m));
    json_str(json_out, mlk_model_load_note(m));
    fprintf(json_out, ", \"kv_context\": %lld, \"kv_pages\": %lld}\n", (long long)mlk_model_kv_context(m),
            (long long)mlk_model_kv_pages(m));
    fflush(json_out);
  }
  int failed = o.start_only ? 0 : run_points(m, &o, gpu);
  mlk_model_free(m);
  mlk_backend_free(be);
  if (json_out)
    fclose(json_out);
  return failed;
}
